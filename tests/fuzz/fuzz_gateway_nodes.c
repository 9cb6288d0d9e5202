/* libFuzzer harness for veil-gateway's --nodes file parser
 * (gw_parse_nodes, src/gateway/parse.c, compiled in).  Every node it
 * accepts must be what the gateway relies on: a normalised http(s) base URL
 * that passes gw_url_check again unchanged, a valid id, a valid model name,
 * ids unique. */
#include <stdlib.h>
#include <string.h>

#include "../../src/gateway/parse.c"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			abort();                                               \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	struct gw_node_spec *v = NULL;
	size_t count = 0;

	if (gw_parse_nodes(p, n, &v, &count) < 0) {
		CHECK(v == NULL);
		return 0;
	}
	CHECK(count <= GW_NODES_MAX);
	for (size_t i = 0; i < count; i++) {
		char again[VEIL_STORE_URL_MAX + 1];
		bool https;

		CHECK(gw_node_id_valid(v[i].id));
		CHECK(gw_model_valid(v[i].model, strlen(v[i].model)));
		CHECK(gw_url_check(v[i].url, strlen(v[i].url), again, sizeof(again), &https) == 0);
		CHECK(!strcmp(again, v[i].url) && https == v[i].https);
		for (size_t k = 0; k < i; k++)
			CHECK(strcmp(v[k].id, v[i].id) != 0);
	}
	free(v);
	return 0;
}
