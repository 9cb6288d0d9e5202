/* Signature benchmarks, each against OpenSSL 3.0's EVP interface doing the
 * same operation, measured in the same run (veil's backends are libsodium
 * and libsecp256k1; OpenSSL is the reference):
 *   ed25519_sign        veil (libsodium) vs EVP_DigestSign with a ready key
 *   ed25519_verify      veil from the raw 32-byte public key vs EVP doing
 *                       the same work (key import + EVP_DigestVerify)
 *   ed25519_verify_vs_cached_ctx
 *                       veil as above vs EVP with the key imported and the
 *                       context set up once, copied per verification (what
 *                       src/gateway/relay.c does): OpenSSL's best case
 *   eip191_sign         veil personal_sign (Keccak + RFC 6979 + recovery
 *                       id) vs the EIP-191 Keccak hash + EVP ECDSA sign on
 *                       secp256k1 (random nonce: 3.0 has no RFC 6979)
 *   eip191_recover      veil ecrecover + address vs EVP ECDSA verify on
 *                       secp256k1 (OpenSSL has no recovery; verify is the
 *                       same double scalar multiplication class)
 *   secp256k1_verify    veil verify_hash vs EVP ECDSA verify, same digest
 *   keccak256_1k        veil Keccak-256 vs OpenSSL SHA3-256 (same
 *                       permutation, other padding), 1 KiB inputs
 * Output: BENCH|<figure>|<ours>|<unit>|<reference>|<ratio>.  For us/op,
 * ratio = reference / ours (the speed-up; higher is better); for MB/s,
 * ratio = ours / reference.  Both are higher-is-better. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "veil/base.h"
#include "veil/keccak.h"
#include "veil/sign.h"

#define MIN_NS 200000000ull /* each timed round runs at least 0.2 s */

typedef int (*op_fn)(void *arg);

/* ops/s of one timed round. */
static double round_rate(op_fn fn, void *arg)
{
	uint64_t t0 = veil_now_ns(), dt;
	unsigned long n = 0;

	do {
		for (int i = 0; i < 16; i++)
			if (fn(arg) != 0) {
				fprintf(stderr, "sign_bench: operation failed\n");
				exit(1);
			}
		n += 16;
		dt = veil_now_ns() - t0;
	} while (dt < MIN_NS);
	return n * 1e9 / (double)dt;
}

/* Best of 5 rounds each, ours and the reference alternating so that load
 * from other processes hits both alike. */
static void rates(op_fn ours, op_fn ref, void *arg, double *r_ours, double *r_ref)
{
	*r_ours = *r_ref = 0;
	for (int round = 0; round < 5; round++) {
		*r_ours = VEIL_MAX(*r_ours, round_rate(ours, arg));
		*r_ref = VEIL_MAX(*r_ref, round_rate(ref, arg));
	}
}

/* From best rates (ops/s) to microseconds per operation. */
static void report_us(const char *fig, double r_ours, double r_ref)
{
	double ours = 1e6 / r_ours, ref = 1e6 / r_ref;

	printf("BENCH|%s|%.1f|us/op|%.1f|%.2f\n", fig, ours, ref, ref / ours);
	fflush(stdout);
}

static void report_mbs(const char *fig, double ours, double ref)
{
	printf("BENCH|%s|%.0f|MB/s|%.0f|%.2f\n", fig, ours, ref, ours / ref);
	fflush(stdout);
}

static const uint8_t MSG[64] = "veil receipt: model:sha256(req):sha256(resp) -- 64 byte message";

/* ---- Ed25519 ------------------------------------------------------------------ */

struct ed {
	struct veil_ed25519_key *key;
	EVP_PKEY *pkey;
	EVP_MD_CTX *vctx; /* verify context set up once (cached reference) */
	uint8_t pub[32];
	uint8_t sig[64];
};

static int ed_sign_ours(void *a)
{
	struct ed *e = a;

	return veil_ed25519_sign(e->key, MSG, sizeof(MSG), e->sig);
}

static int ed_sign_ref(void *a)
{
	struct ed *e = a;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	size_t len = 64;
	int ok = c && EVP_DigestSignInit(c, NULL, NULL, NULL, e->pkey) == 1 &&
		 EVP_DigestSign(c, e->sig, &len, MSG, sizeof(MSG)) == 1;

	EVP_MD_CTX_free(c);
	return ok ? 0 : -1;
}

static int ed_verify_ours(void *a)
{
	struct ed *e = a;

	return veil_ed25519_verify(e->pub, MSG, sizeof(MSG), e->sig);
}

/* The same work: decode the 32-byte public key, verify. */
static int ed_verify_ref(void *a)
{
	struct ed *e = a;
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, e->pub, 32);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = pk && c && EVP_DigestVerifyInit(c, NULL, NULL, NULL, pk) == 1 &&
		 EVP_DigestVerify(c, e->sig, 64, MSG, sizeof(MSG)) == 1;

	EVP_MD_CTX_free(c);
	EVP_PKEY_free(pk);
	return ok ? 0 : -1;
}

/* OpenSSL's best case: no key import, no algorithm fetch per call. */
static int ed_verify_ref_cached(void *a)
{
	struct ed *e = a;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = c && EVP_MD_CTX_copy_ex(c, e->vctx) == 1 &&
		 EVP_DigestVerify(c, e->sig, 64, MSG, sizeof(MSG)) == 1;

	EVP_MD_CTX_free(c);
	return ok ? 0 : -1;
}

/* ---- secp256k1 ----------------------------------------------------------------- */

struct ec {
	struct veil_secp256k1_key *key;
	uint8_t addr[20];
	uint8_t pub[65];
	uint8_t sig[65];
	EVP_PKEY *pkey;
	uint8_t hash[32];
	uint8_t der[80];
	size_t derlen;
};

static int ec_sign_ours(void *a)
{
	struct ec *e = a;

	return veil_eip191_sign(e->key, MSG, sizeof(MSG), VEIL_SECP256K1_RFC6979, e->sig);
}

/* The same work: EIP-191 hash, then ECDSA over it. */
static int ec_sign_ref(void *a)
{
	struct ec *e = a;
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(e->pkey, NULL);
	size_t len = sizeof(e->der);
	int ok;

	veil_eip191_hash(MSG, sizeof(MSG), e->hash);
	ok = c && EVP_PKEY_sign_init(c) == 1 &&
		 EVP_PKEY_sign(c, e->der, &len, e->hash, 32) == 1;

	e->derlen = len;
	EVP_PKEY_CTX_free(c);
	return ok ? 0 : -1;
}

static int ec_recover_ours(void *a)
{
	struct ec *e = a;
	uint8_t addr[20];
	int rc = veil_eip191_recover(MSG, sizeof(MSG), e->sig, addr, NULL);

	return rc ? rc : memcmp(addr, e->addr, 20) != 0;
}

static int ec_verify_ours(void *a)
{
	struct ec *e = a;

	return veil_secp256k1_verify_hash(e->pub, e->hash, e->sig);
}

static int ec_verify_ref(void *a)
{
	struct ec *e = a;
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(e->pkey, NULL);
	int ok = c && EVP_PKEY_verify_init(c) == 1 &&
		 EVP_PKEY_verify(c, e->der, e->derlen, e->hash, 32) == 1;

	EVP_PKEY_CTX_free(c);
	return ok ? 0 : -1;
}

/* ---- Keccak ------------------------------------------------------------------- */

static uint8_t kbuf[1024];

static int keccak_ours(void *a)
{
	uint8_t d[32];

	(void)a;
	veil_keccak256(kbuf, sizeof(kbuf), d);
	kbuf[0] ^= d[0];
	return 0;
}

static int sha3_ref(void *a)
{
	uint8_t d[32];
	unsigned int len = 32;

	(void)a;
	if (EVP_Digest(kbuf, sizeof(kbuf), d, &len, EVP_sha3_256(), NULL) != 1)
		return -1;
	kbuf[0] ^= d[0];
	return 0;
}

int main(void)
{
	struct ed e = {0};
	struct ec k = {0};
	uint8_t seed[32] = {1, 2, 3}, priv[32] = {4, 5, 6};
	double ours, ref;
	int rc = 1;

	printf("# sign_bench: 64-byte messages; ours = libsodium / libsecp256k1 via "
	       "veil; reference = OpenSSL %s EVP in this run\n",
	       OpenSSL_version(OPENSSL_VERSION_STRING));
	if (veil_ed25519_key_from_seed(seed, &e.key) < 0 ||
	    !(e.pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32)))
		goto out;
	veil_ed25519_public(e.key, e.pub);
	rates(ed_sign_ours, ed_sign_ref, &e, &ours, &ref);
	report_us("ed25519_sign", ours, ref);
	rates(ed_verify_ours, ed_verify_ref, &e, &ours, &ref);
	report_us("ed25519_verify", ours, ref);
	{
		EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, e.pub, 32);

		e.vctx = pk ? EVP_MD_CTX_new() : NULL;
		if (!e.vctx || EVP_DigestVerifyInit(e.vctx, NULL, NULL, NULL, pk) != 1) {
			EVP_PKEY_free(pk);
			goto out;
		}
		EVP_PKEY_free(pk); /* the context keeps its own reference */
	}
	rates(ed_verify_ours, ed_verify_ref_cached, &e, &ours, &ref);
	report_us("ed25519_verify_vs_cached_ctx", ours, ref);

	/* A fixed key: the same figures each run, and an OpenSSL key with the
	 * same scalar. */
	{
		OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
		OSSL_PARAM *params = NULL;
		EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
		BIGNUM *d = BN_bin2bn(priv, 32, NULL);
		int ok;

		if (veil_secp256k1_key_from_private(priv, &k.key) < 0)
			goto out;
		veil_secp256k1_public(k.key, k.pub);
		ok = bld && pc && d &&
		     OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
						     "secp256k1", 0) &&
		     OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) &&
		     OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, k.pub, 65) &&
		     (params = OSSL_PARAM_BLD_to_param(bld)) &&
		     EVP_PKEY_fromdata_init(pc) == 1 &&
		     EVP_PKEY_fromdata(pc, &k.pkey, EVP_PKEY_KEYPAIR, params) == 1;
		OSSL_PARAM_free(params);
		OSSL_PARAM_BLD_free(bld);
		EVP_PKEY_CTX_free(pc);
		BN_clear_free(d);
		if (!ok)
			goto out;
	}
	veil_secp256k1_address(k.key, k.addr);
	veil_eip191_hash(MSG, sizeof(MSG), k.hash);
	rates(ec_sign_ours, ec_sign_ref, &k, &ours, &ref);
	report_us("eip191_sign", ours, ref);
	rates(ec_recover_ours, ec_verify_ref, &k, &ours, &ref);
	report_us("eip191_recover", ours, ref);
	rates(ec_verify_ours, ec_verify_ref, &k, &ours, &ref);
	report_us("secp256k1_verify", ours, ref);

	rates(keccak_ours, sha3_ref, NULL, &ours, &ref);
	report_mbs("keccak256_1k", ours * sizeof(kbuf) / 1e6, ref * sizeof(kbuf) / 1e6);
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "sign_bench: setup failed\n");
	veil_ed25519_key_free(e.key);
	EVP_PKEY_free(e.pkey);
	EVP_MD_CTX_free(e.vctx);
	veil_secp256k1_key_free(k.key);
	EVP_PKEY_free(k.pkey);
	return rc;
}
