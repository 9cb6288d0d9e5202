/* libFuzzer harness that reaches the whole of veil_tdx_verify (signatures,
 * PCK chain and CRLs, TCB info / QE identity matching, TDX module identity,
 * policy), which fuzz_tdx_quote cannot: random bytes never carry a valid
 * signature.  At start it makes the simulated Intel-shaped DCAP PKI of
 * src/lib/attest/gen/sim.c (throwaway root, PCK CA, PCK leaf, TCB signer,
 * attestation key; collateral signed by them), a correctly signed TDX v4
 * quote, and checks that the template verifies.  The input then edits a copy
 * of that quote:
 *   byte 0: flags: bit 0 re-sign header+body with the attestation key after
 *           editing, bit 1 recompute the QE report data (SHA-256 of
 *           attestation key || QE auth data) and re-sign the QE report with
 *           the PCK key, bit 2 verify 40 days later (collateral expired);
 *   then records {op u8, offset u16 LE, len u8, data[len]}: op % 3 = 0
 *   overwrite, 1 insert, 2 delete len bytes at offset % (length + 1); at
 *   most 32 records, the quote never grows past template + 8 KiB.
 * Re-signing lets edits of signed fields (TEE_TCB_SVN, attributes, QE
 * report fields, lengths) reach the TCB and policy code.  Oracles: without
 * re-signing, an accepted quote has exactly the template's signed bytes;
 * an accepted quote always parses, has the verdict's report data and a
 * TD_ATTRIBUTES debug bit of 0. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "veil/base.h"
#include "veil/tdx.h"
#include "../../src/lib/attest/gen/gen_internal.h"

#define GROW (8u << 10)

static struct sim_tee *sim;
static struct veil_tdx_collateral *col;
static uint8_t *tmpl;
static size_t tmpl_len;
static struct veil_tdx_quote tq;
static int64_t now;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint8_t rd[64], rtmr[4][48];
	struct veil_tdx_verdict v;

	(void)argc;
	(void)argv;
	veil_log_setup(VEIL_LOG_OFF, false, stderr);
	for (size_t i = 0; i < sizeof(rd); i++)
		rd[i] = (uint8_t)i;
	memset(rtmr, 0x5A, sizeof(rtmr));
	if (sim_tee_open(NULL, &sim) < 0 ||
	    sim_tee_quote(sim, rd, (const uint8_t(*)[48])rtmr, &tmpl, &tmpl_len) < 0 ||
	    veil_tdx_collateral_parse((const uint8_t *)sim->collateral,
				      strlen(sim->collateral), &col) < 0 ||
	    veil_tdx_quote_parse(tmpl, tmpl_len, &tq) < 0)
		abort();
	now = sim->collateral_at + 3600;
	/* The harness is useless if the template does not verify. */
	if (veil_tdx_verify(tmpl, tmpl_len, col, now, sim->root_der, sim->root_der_len, &v) < 0 ||
	    !v.ok)
		abort();
	return 0;
}

/* Applies the edit records of data[0..size) to q (length *n, capacity cap). */
static void apply(uint8_t *q, size_t *n, size_t cap, const uint8_t *data, size_t size)
{
	size_t i = 0;

	for (int rec = 0; rec < 32 && size - i >= 4; rec++) {
		uint8_t op = data[i] % 3;
		size_t off = ((size_t)data[i + 1] | (size_t)data[i + 2] << 8) % (*n + 1);
		size_t len = data[i + 3];

		i += 4;
		if (op == 2) {
			len = VEIL_MIN(len, *n - off);
			memmove(q + off, q + off + len, *n - off - len);
			*n -= len;
			continue;
		}
		len = VEIL_MIN(len, size - i);
		if (op == 0) {
			len = VEIL_MIN(len, *n - off);
			memcpy(q + off, data + i, len);
		} else {
			len = VEIL_MIN(len, cap - *n);
			memmove(q + off + len, q + off, *n - off);
			memcpy(q + off, data + i, len);
			*n += len;
		}
		i += len;
	}
}

/* Writable twin of a pointer the parser returned into q. */
static uint8_t *w(uint8_t *q, const uint8_t *p)
{
	return q + (p - (const uint8_t *)q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_tdx_verdict v;
	struct veil_tdx_quote pq;
	uint8_t flags = size ? data[0] : 0, *buf, *q;
	size_t n = tmpl_len, cap = tmpl_len + GROW;
	bool parsed;
	int rc;

	if (size > 64u << 10)
		return 0;
	if (!(buf = malloc(cap)))
		abort();
	memcpy(buf, tmpl, tmpl_len);
	if (size)
		apply(buf, &n, cap, data + 1, size - 1);
	/* An exact-size copy, so ASan sees reads past the quote. */
	if (!(q = malloc(n ? n : 1)))
		abort();
	memcpy(q, buf, n);
	free(buf);

	parsed = veil_tdx_quote_parse(q, n, &pq) == 0;
	if (parsed && (flags & 2) && pq.qe_auth_len <= 4096) {
		uint8_t *cat = malloc(64 + (size_t)pq.qe_auth_len);

		if (!cat)
			abort();
		memcpy(cat, pq.attest_key, 64);
		memcpy(cat + 64, pq.qe_auth, pq.qe_auth_len);
		SHA256(cat, 64 + (size_t)pq.qe_auth_len, w(q, pq.qe_report) + 320);
		memset(w(q, pq.qe_report) + 352, 0, 32);
		free(cat);
		if (gen_ecdsa_sign_rs(sim->pck_key, EVP_sha256(), pq.qe_report, 384,
				      w(q, pq.qe_report_sig), 32) < 0)
			abort();
	}
	if (parsed && (flags & 1) &&
	    gen_ecdsa_sign_rs(sim->att_key, EVP_sha256(), pq.signed_data, pq.signed_len,
			      w(q, pq.signature), 32) < 0)
		abort();

	rc = veil_tdx_verify(q, n, col, (flags & 4) ? now + 40 * 86400 : now, sim->root_der,
			     sim->root_der_len, &v);
	if ((rc == 0) != v.ok)
		abort();
	{
		json_t *j = NULL;

		if (veil_tdx_verdict_json(&v, &j) < 0 || !j)
			abort();
		json_decref(j);
	}
	if (v.ok) {
		if (veil_tdx_quote_parse(q, n, &pq) < 0)
			abort();
		if (!(flags & 1) &&
		    (pq.signed_len != tq.signed_len || memcmp(pq.signed_data, tq.signed_data, tq.signed_len)))
			abort();
		if (pq.body_type != VEIL_TDX_BODY_SGX &&
		    (memcmp(v.report_data, pq.td.report_data, 64) || (pq.td.td_attributes[0] & 1)))
			abort();
	}
	free(q);
	return 0;
}
