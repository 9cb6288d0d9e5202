/* libFuzzer harness for veil_nvgpu_verify_list (include/veil/nvgpu.h): the
 * NRAS-shaped JSON list of GPU evidence (array, {"evidence_list"} object,
 * or {"nvidia_payload": "<that as a string>"}), base64 / hex-text evidence,
 * base64 PEM chains, per-entry and top-level nonces.
 *
 * So that mutations reach the signature, chain and FWID checks, the harness
 * makes a simulated NVIDIA-shaped device chain and two signed evidences at
 * start (sim_tee, src/lib/attest/gen/sim.c; its device root is the trust
 * anchor) and substitutes these placeholders in the input before parsing:
 *   @EV0@ @EV1@  base64 of GPU 0 / GPU 1 evidence (raw bytes)
 *   @EVH@        base64 of GPU 0 evidence as hex text
 *   @CERT@       base64 of the device chain PEM (leaf first)
 *   @NONCE@      the nonce both evidences carry, 64 hex digits
 * Seeds (tests/fuzz/corpus/fuzz_nvgpu_list/) are hand-written JSON using
 * them.  Oracle: a list that verifies has every entry's signature, chain and
 * FWID checked and good, and its count within 1..64. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "veil/base.h"
#include "veil/nvgpu.h"
#include "../../src/lib/attest/gen/gen_internal.h"

#define MAX_IN (64u << 10)

static struct sim_tee *sim;
static struct {
	const char *name;
	char *val;
	size_t len;
} subs[5];

static char *b64_of(const uint8_t *p, size_t n, size_t *len)
{
	size_t cap = veil_b64_encoded_len(n, 0) + 1;
	char *out = malloc(cap);

	if (!out || veil_b64_encode(p, n, 0, out, cap) < 0)
		abort();
	*len = strlen(out);
	return out;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input with every placeholder replaced (at most 16 replacements, so
 * the output stays small), into b. */
static int expand(const uint8_t *p, size_t n, struct veil_buf *b)
{
	size_t done = 0;

	for (size_t i = 0; i < n;) {
		bool matched = false;

		for (size_t k = 0; p[i] == '@' && done < 16 && k < VEIL_ARRAY_LEN(subs); k++) {
			size_t nl = strlen(subs[k].name);

			if (n - i >= nl && !memcmp(p + i, subs[k].name, nl)) {
				if (veil_buf_append(b, subs[k].val, subs[k].len) < 0)
					return -1;
				i += nl;
				done++;
				matched = true;
				break;
			}
		}
		if (matched)
			continue;
		if (veil_buf_append(b, p + i, 1) < 0)
			return -1;
		i++;
	}
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint8_t nonce[VEIL_NVGPU_NONCE_LEN], *ev[2] = {NULL, NULL};
	size_t ev_len[2];
	char *hex;

	(void)argc;
	(void)argv;
	for (size_t i = 0; i < sizeof(nonce); i++)
		nonce[i] = (uint8_t)(0xA0 + i);
	if (sim_tee_open(NULL, &sim) < 0)
		abort();
	for (unsigned i = 0; i < 2; i++)
		if (sim_tee_gpu_evidence(sim, i, nonce, &ev[i], &ev_len[i]) < 0)
			abort();
	subs[0].name = "@EV0@";
	subs[0].val = b64_of(ev[0], ev_len[0], &subs[0].len);
	subs[1].name = "@EV1@";
	subs[1].val = b64_of(ev[1], ev_len[1], &subs[1].len);
	if (!(hex = malloc(ev_len[0] * 2 + 1)) ||
	    veil_hex_encode(ev[0], ev_len[0], hex, ev_len[0] * 2 + 1) < 0)
		abort();
	subs[2].name = "@EVH@";
	subs[2].val = b64_of((const uint8_t *)hex, ev_len[0] * 2, &subs[2].len);
	subs[3].name = "@CERT@";
	subs[3].val = b64_of((const uint8_t *)sim->nv_chain_pem,
			     strlen(sim->nv_chain_pem), &subs[3].len);
	subs[4].name = "@NONCE@";
	if (!(subs[4].val = malloc(2 * sizeof(nonce) + 1)) ||
	    veil_hex_encode(nonce, sizeof(nonce), subs[4].val, 2 * sizeof(nonce) + 1) < 0)
		abort();
	subs[4].len = 2 * sizeof(nonce);
	free(hex);
	free(ev[0]);
	free(ev[1]);
	/* The harness is useless if a well-formed list does not verify. */
	{
		static const char ok[] = "{\"nonce\":\"@NONCE@\",\"evidence_list\":["
					 "{\"evidence\":\"@EV0@\",\"certificate\":\"@CERT@\"},"
					 "{\"evidence\":\"@EVH@\",\"certificate\":\"@CERT@\"}]}";
		struct veil_buf b = VEIL_BUF_INIT(1u << 20);
		struct veil_nvgpu_opts o = {0};
		struct veil_nvgpu_result *res = NULL;
		size_t count = 0;

		o.root_der = sim->nv_root_der;
		o.root_der_len = sim->nv_root_der_len;
		if (expand((const uint8_t *)ok, sizeof(ok) - 1, &b) < 0 ||
		    veil_nvgpu_verify_list((const char *)b.data, b.len, &o, &res, &count) != 0 ||
		    count != 2)
			abort();
		free(res);
		veil_buf_free(&b);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_buf in = VEIL_BUF_INIT(1u << 20);
	struct veil_nvgpu_opts o = {0};
	struct veil_nvgpu_result *res = NULL;
	size_t count = 0;
	char *copy;
	int rc;

	if (size > MAX_IN || expand(data, size, &in) < 0) {
		veil_buf_free(&in);
		return 0;
	}
	/* An exact-size copy: ASan catches a read past the text. */
	if (!(copy = malloc(in.len ? in.len : 1)))
		abort();
	if (in.len)
		memcpy(copy, in.data, in.len);
	o.root_der = sim->nv_root_der;
	o.root_der_len = sim->nv_root_der_len;
	rc = veil_nvgpu_verify_list(copy, in.len, &o, &res, &count);
	if (res && (count == 0 || count > 64))
		abort();
	if (rc == 0) {
		if (!res)
			abort();
		for (size_t i = 0; i < count; i++)
			if (!res[i].parsed || !res[i].signature_ok || !res[i].chain_ok ||
			    !res[i].fwid_ok)
				abort();
	}
	for (size_t i = 0; res && i < count; i++) {
		json_t *j = veil_nvgpu_verdict_json(&res[i], rc);
		json_t *c = veil_nvgpu_claims_json(&res[i]);

		if (!j || !c)
			abort();
		json_decref(j);
		json_decref(c);
	}
	free(res);
	free(copy);
	veil_buf_free(&in);
	return 0;
}
