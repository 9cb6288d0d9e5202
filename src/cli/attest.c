/* veil attest: evidence from the generators, for tests and demos.
 *
 *   veil attest sim-report --nonce HEX [--state-dir D] [--gpus N]
 *                          [--model FILE] [--config TEXT]
 *
 * Prints a veil-report/1 document from the SIMULATED TEE: ephemeral keys
 * (Ed25519, secp256k1, X25519; a random TLS SPKI hash), runtime events for
 * this binary, the configuration text and (with --model) the model file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cli.h"
#include "veil/attester.h"
#include "veil/base.h"
#include "veil/hpke.h"
#include "veil/keyset.h"
#include "veil/report.h"
#include "veil/sign.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: veil attest sim-report --nonce HEX [--state-dir D] [--gpus N]\n"
		"                              [--model FILE] [--config TEXT]\n"
		"\n"
		"Prints a veil attestation report (veil-report/1) from the SIMULATED TEE,\n"
		"for tests and demos; verify it with 'veil verify FILE --allow-sim --nonce HEX'.\n"
		"  --nonce HEX      the verifier's 32-byte nonce (64 hex chars)\n"
		"  --state-dir D    keep the simulated chain in D/sim-tee.pem (else in memory)\n"
		"  --gpus N         simulated GPUs (0..8, default 1)\n"
		"  --model FILE     measure this file as the model (veil-model and\n"
		"                   veil-model-sha256 events; model.name is its base name)\n"
		"  --config TEXT    measure TEXT as the node configuration (default \"{}\")\n");
}

/* SHA-384 of a file, streamed. */
static int file_digest(const char *path, const EVP_MD *md, uint8_t *out)
{
	FILE *f = fopen(path, "rb");
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	uint8_t buf[65536];
	size_t n;
	int rc = VEIL_EIO;

	if (!f || !c || EVP_DigestInit_ex(c, md, NULL) != 1)
		goto out;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		if (EVP_DigestUpdate(c, buf, n) != 1)
			goto out;
	if (ferror(f) || EVP_DigestFinal_ex(c, out, NULL) != 1)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		rc = veil_errf(VEIL_EIO, "cannot hash %s", path);
	EVP_MD_CTX_free(c);
	if (f)
		fclose(f);
	return rc;
}

static int ephemeral_keyset(uint8_t *enc, size_t cap, size_t *len)
{
	struct veil_ed25519_key *ed = NULL;
	struct veil_secp256k1_key *k1 = NULL;
	struct veil_hpke_keypair kp;
	struct veil_keyset ks;
	uint8_t pub[65];
	int rc;

	memset(&ks, 0, sizeof(ks));
	if ((rc = veil_ed25519_key_generate(&ed)) < 0 || (rc = veil_secp256k1_key_generate(&k1)) < 0 ||
	    (rc = veil_hpke_keygen(&kp)) < 0)
		goto out;
	veil_ed25519_public(ed, ks.ed25519);
	ks.present |= VEIL_KEYSET_HAS(VEIL_KEY_ED25519);
	veil_secp256k1_public(k1, pub);
	if ((rc = veil_keyset_set_secp256k1(&ks, pub)) < 0)
		goto out;
	memcpy(ks.x25519_hpke, kp.pub, 32);
	ks.present |= VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE);
	if ((rc = veil_random(ks.tls_spki_sha256, 32)) < 0)
		goto out;
	ks.present |= VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256);
	rc = veil_keyset_encode(&ks, enc, cap, len);
out:
	veil_hpke_keypair_wipe(&kp);
	veil_ed25519_key_free(ed);
	veil_secp256k1_key_free(k1);
	return rc;
}

static int sim_report(int argc, char **argv)
{
	const char *nonce_hex = NULL, *state = NULL, *model = NULL, *config = "{}";
	struct veil_attester_opts ao;
	struct veil_attester *a = NULL;
	uint8_t nonce[32], enc[VEIL_KEYSET_MAX], h[48];
	size_t enc_len = 0, got;
	json_t *r = NULL;
	struct veil_report_extra x = {NULL, NULL};
	char *txt, sha_hex[65];
	int gpus = 1, rc;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "veil attest sim-report: %s needs a value\n", arg);
			return 2;
		}
		if (!strcmp(arg, "--nonce"))
			nonce_hex = argv[++i];
		else if (!strcmp(arg, "--state-dir"))
			state = argv[++i];
		else if (!strcmp(arg, "--model"))
			model = argv[++i];
		else if (!strcmp(arg, "--config"))
			config = argv[++i];
		else if (!strcmp(arg, "--gpus")) {
			const char *v = argv[++i];
			char *end;
			long g;

			/* strict: "two" or "" must not quietly mean 0 GPUs */
			errno = 0;
			g = strtol(v, &end, 10);
			if (errno || end == v || *end || g < 0 || g > VEIL_ATTESTER_MAX_GPUS) {
				fprintf(stderr, "veil attest sim-report: --gpus must be 0..%d, not "
					"'%s'\n", VEIL_ATTESTER_MAX_GPUS, v);
				return 2;
			}
			gpus = (int)g;
		} else {
			fprintf(stderr, "veil attest sim-report: unknown option %s\n", arg);
			usage(stderr);
			return 2;
		}
	}
	if (!nonce_hex || strlen(nonce_hex) != 64 ||
	    veil_hex_decode(nonce_hex, 64, nonce, 32, &got) < 0) {
		fprintf(stderr, "veil attest sim-report: --nonce must be 64 hex characters\n");
		return 2;
	}
	if (gpus < 0 || gpus > VEIL_ATTESTER_MAX_GPUS) {
		fprintf(stderr, "veil attest sim-report: --gpus must be 0..%d\n", VEIL_ATTESTER_MAX_GPUS);
		return 2;
	}
	memset(&ao, 0, sizeof(ao));
	ao.tee = "sim";
	ao.state_dir = state;
	ao.sim_gpus = gpus;
	if ((rc = veil_attester_open(&ao, &a)) < 0) {
		veil_cli_error("simulated TEE", rc);
		return 1;
	}
	if ((rc = file_digest("/proc/self/exe", EVP_sha384(), h)) < 0 ||
	    (rc = veil_attester_extend(a, VEIL_EVLOG_NODE_BINARY, h, 48)) < 0)
		goto fail;
	if (!EVP_Digest(config, strlen(config), h, NULL, EVP_sha384(), NULL)) {
		rc = VEIL_EINTERNAL;
		goto fail;
	}
	if ((rc = veil_attester_extend(a, VEIL_EVLOG_NODE_CONFIG, h, 48)) < 0)
		goto fail;
	/* like veil-node: the SHA-384 and then the SHA-256 (which the
	 * report's model.sha256 names) of the model file */
	if (model && ((rc = file_digest(model, EVP_sha384(), h)) < 0 ||
		      (rc = veil_attester_extend(a, VEIL_EVLOG_MODEL, h, 48)) < 0 ||
		      (rc = file_digest(model, EVP_sha256(), h)) < 0 ||
		      (rc = veil_attester_extend(a, VEIL_EVLOG_MODEL_SHA256, h, 32)) < 0))
		goto fail;
	if (model) {
		const char *base = strrchr(model, '/');

		veil_hex_encode(h, 32, sha_hex, sizeof(sha_hex));
		x.model = base ? base + 1 : model;
		x.model_sha256 = sha_hex;
	}
	if ((rc = ephemeral_keyset(enc, sizeof(enc), &enc_len)) < 0 ||
	    (rc = veil_attester_report(a, enc, enc_len, nonce, model ? &x : NULL, &r)) < 0)
		goto fail;
	txt = json_dumps(r, JSON_INDENT(1));
	if (!txt) {
		rc = VEIL_ENOMEM;
		goto fail;
	}
	printf("%s\n", txt);
	free(txt);
	json_decref(r);
	veil_attester_free(a);
	return 0;
fail:
	veil_cli_error("sim-report", rc);
	json_decref(r);
	veil_attester_free(a);
	return 1;
}

int veil_cli_attest(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "sim-report"))
		return sim_report(argc - 1, argv + 1);
	fprintf(stderr, "veil attest: unknown subcommand '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
