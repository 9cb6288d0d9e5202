/* libFuzzer harness for the TCB info / QE identity side of veil_tdx_verify:
 * the nested JSON of the collateral (tcbLevels, sgx/tdx TCB components,
 * pcesvn, tcbStatus, advisoryIDs, tdxModule / tdxModuleIdentities, QE
 * identity masks and levels, dates) and the TCB status evaluation against a
 * correctly signed quote.  Mutated documents never carry a valid signature,
 * so the harness signs them: at start it makes the simulated Intel-shaped
 * DCAP PKI of src/lib/attest/gen/sim.c and a signed TDX v4 quote; for each
 * input it signs the documents with the sim TCB signing key, puts them into
 * the sim collateral, parses it (veil_tdx_collateral_parse) and verifies the
 * quote with it.
 *
 * Input: the TCB info JSON, optionally followed by a line "--" and the QE
 * identity JSON (else the sim's own).  Placeholders: @ISSUE@ and @NEXT@
 * become the sim collateral's issueDate and nextUpdate (the quote is
 * verified an hour after it was made).  Seeds
 * (tests/fuzz/corpus/fuzz_tdx_tcbinfo/) are the sim's documents with
 * them.  Each run verifies fresh collateral (its chains and CRLs too), so
 * expect a few hundred runs per second.  Oracles: the verdict agrees with
 * the return code; an accepted quote has a status and is never "Revoked". */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "veil/base.h"
#include "veil/tdx.h"
#include "../../src/lib/attest/gen/gen_internal.h"

#define MAX_IN (64u << 10)

static struct sim_tee *sim;
static json_t *col_tmpl;
static uint8_t *quote;
static size_t quote_len;
static char issue[40], next_up[40];
static int64_t now;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void date_of(const char *doc, const char *key, char *out, size_t cap)
{
	json_t *j = json_loads(doc, 0, NULL);
	const char *s = json_string_value(json_object_get(j, key));

	if (!s || strlen(s) >= cap)
		abort();
	strcpy(out, s);
	json_decref(j);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint8_t rd[64] = {1}, rtmr[4][48] = {{0}};

	(void)argc;
	(void)argv;
	veil_log_setup(VEIL_LOG_OFF, false, stderr);
	if (sim_tee_open(NULL, &sim) < 0 ||
	    sim_tee_quote(sim, rd, (const uint8_t(*)[48])rtmr, &quote, &quote_len) < 0 ||
	    !(col_tmpl = json_loads(sim->collateral, 0, NULL)))
		abort();
	date_of(json_string_value(json_object_get(col_tmpl, "tcb_info")), "issueDate", issue,
		sizeof(issue));
	date_of(json_string_value(json_object_get(col_tmpl, "tcb_info")), "nextUpdate", next_up,
		sizeof(next_up));
	now = sim->collateral_at + 3600;
	return 0;
}

/* p[0..n) with @ISSUE@ / @NEXT@ replaced, NUL-terminated, into b. */
static int expand(const uint8_t *p, size_t n, struct veil_buf *b)
{
	for (size_t i = 0; i < n;) {
		if (p[i] == '@' && n - i >= 7 && !memcmp(p + i, "@ISSUE@", 7)) {
			if (veil_buf_append_str(b, issue) < 0)
				return -1;
			i += 7;
		} else if (p[i] == '@' && n - i >= 6 && !memcmp(p + i, "@NEXT@", 6)) {
			if (veil_buf_append_str(b, next_up) < 0)
				return -1;
			i += 6;
		} else {
			if (veil_buf_append(b, p + i, 1) < 0)
				return -1;
			i++;
		}
	}
	return 0;
}

/* Puts doc (and its signature by the sim TCB signing key) into col. */
static int put_signed(json_t *col, const char *key, const char *sig_key, const struct veil_buf *doc)
{
	uint8_t sig[64];
	char hex[129];

	/* jansson refuses strings with NUL or invalid UTF-8: so would a parser */
	if (memchr(doc->data, 0, doc->len))
		return -1;
	if (gen_ecdsa_sign_rs(sim->tcb_key, EVP_sha256(), doc->data, doc->len, sig, 32) < 0)
		abort();
	veil_hex_encode(sig, 64, hex, sizeof(hex));
	if (json_object_set_new(col, key, json_stringn((const char *)doc->data, doc->len)) < 0 ||
	    json_object_set_new(col, sig_key, json_string(hex)) < 0)
		return -1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_buf tcb = VEIL_BUF_INIT(1u << 20), qe = VEIL_BUF_INIT(1u << 20);
	struct veil_tdx_collateral *c = NULL;
	struct veil_tdx_verdict v;
	const uint8_t *sep;
	json_t *col = NULL, *vj = NULL;
	char *txt = NULL;
	int rc;

	if (size > MAX_IN)
		return 0;
	sep = memmem(data, size, "\n--\n", 4);
	if (expand(data, sep ? (size_t)(sep - data) : size, &tcb) < 0 ||
	    (sep && expand(sep + 4, size - (size_t)(sep + 4 - data), &qe) < 0) || tcb.len == 0)
		goto out;
	col = json_deep_copy(col_tmpl);
	if (!col || put_signed(col, "tcb_info", "tcb_info_signature", &tcb) < 0 ||
	    (qe.len && put_signed(col, "qe_identity", "qe_identity_signature", &qe) < 0))
		goto out;
	if (!(txt = json_dumps(col, JSON_COMPACT)))
		goto out;
	if (veil_tdx_collateral_parse((const uint8_t *)txt, strlen(txt), &c) < 0)
		goto out;
	rc = veil_tdx_verify(quote, quote_len, c, now, sim->root_der, sim->root_der_len, &v);
	if ((rc == 0) != v.ok)
		abort();
	if (v.ok && (!v.status[0] || !strcmp(v.status, "Revoked")))
		abort();
	if (veil_tdx_verdict_json(&v, &vj) < 0 || !vj)
		abort();
out:
	json_decref(vj);
	veil_tdx_collateral_free(c);
	free(txt);
	json_decref(col);
	veil_buf_free(&tcb);
	veil_buf_free(&qe);
	return 0;
}
