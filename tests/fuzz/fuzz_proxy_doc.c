/* libFuzzer harness for veil-proxy's attestation-document parser
 * (proxy_doc_parse in src/proxy/wire.c, compiled in here: the programs'
 * objects are not in the fuzz link).  Whatever the input, a parse that
 * succeeds must give nodes within the cap, names within their buffers and
 * canonical texts that are exactly text_len bytes of valid JSON objects. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/proxy/wire.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_report(const struct proxy_doc_report *r)
{
	json_t *back;

	if (!r->text || strlen(r->text) != r->text_len || !json_is_object(r->report) ||
	    strlen(r->id) >= PROXY_NAME_MAX || strlen(r->model) >= PROXY_NAME_MAX ||
	    (r->model_sha256[0] && strlen(r->model_sha256) != 64))
		abort();
	back = json_loadb(r->text, r->text_len, 0, NULL);
	if (!json_is_object(back) || !json_equal(back, r->report))
		abort();
	json_decref(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_doc d;

	if (proxy_doc_parse(data, size, &d) < 0)
		return 0;
	if (d.n_nodes > PROXY_MAX_NODES || (!d.gateway && d.n_nodes != 1))
		abort();
	if (d.gateway)
		check_report(&d.gw);
	for (size_t i = 0; i < d.n_nodes; i++)
		check_report(&d.nodes[i]);
	proxy_doc_free(&d);
	return 0;
}
