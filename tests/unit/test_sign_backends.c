/* Unit tests of the sign module's backends (libsecp256k1, libsodium)
 * against OpenSSL 3.0, which stays linked as an independent check:
 *   - 1000 random keys/messages each way: our signatures verify under
 *     OpenSSL's EVP, OpenSSL's verify under ours (Ed25519 and secp256k1);
 *   - our RFC 6979 nonces equal an independent RFC 6979 written here on
 *     OpenSSL's HMAC and EC arithmetic, including digests >= n;
 *   - the edges a backend swap could get wrong: high s refused by verify and
 *     by recover, recovery ids 2/3, the s = n/2 boundary, hybrid and
 *     off-curve public keys, RANDOM nonces, Ed25519's stricter checks;
 *   - the shared backend contexts used from several threads at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>

#include "veil/base.h"
#include "veil/sign.h"

#define ITER 1000

static const char N_HEX[] =
	"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141";
static const char HALF_N_HEX[] =
	"7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0";
static const char P_MINUS_N_HEX[] = "14551231950B75FC4402DA1722FC9BAEE";

static BIGNUM *bn_hex(const char *hex)
{
	BIGNUM *b = NULL;

	assert_true(BN_hex2bn(&b, hex) > 0);
	return b;
}

static void bn_to32(const BIGNUM *b, uint8_t out[32])
{
	assert_int_equal(BN_bn2binpad(b, out, 32), 32);
}

static void rnd(void *p, size_t n)
{
	assert_int_equal(veil_random(p, n), 0);
}

/* ---- OpenSSL secp256k1 helpers ----------------------------------------------- */

static EC_GROUP *k1_group(void)
{
	EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_secp256k1);

	assert_non_null(g);
	return g;
}

/* pub = d*G computed by OpenSSL, uncompressed. */
static void ossl_k1_pub(const uint8_t priv[32], uint8_t pub[65])
{
	EC_GROUP *g = k1_group();
	EC_POINT *q = EC_POINT_new(g);
	BIGNUM *d = BN_bin2bn(priv, 32, NULL);

	assert_non_null(q);
	assert_non_null(d);
	assert_int_equal(EC_POINT_mul(g, q, d, NULL, NULL, NULL), 1);
	assert_int_equal(EC_POINT_point2oct(g, q, POINT_CONVERSION_UNCOMPRESSED, pub, 65,
					    NULL), 65);
	BN_clear_free(d);
	EC_POINT_free(q);
	EC_GROUP_free(g);
}

/* An EVP key on secp256k1: public only (priv NULL) or a key pair. */
static EVP_PKEY *ossl_k1_pkey(const uint8_t pub[65], const uint8_t *priv)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	OSSL_PARAM *params = NULL;
	BIGNUM *d = priv ? BN_bin2bn(priv, 32, NULL) : NULL;
	EVP_PKEY *pk = NULL;

	assert_non_null(bld);
	assert_non_null(pc);
	assert_true(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
						    "secp256k1", 0));
	assert_true(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 65));
	if (d)
		assert_true(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d));
	assert_non_null(params = OSSL_PARAM_BLD_to_param(bld));
	assert_int_equal(EVP_PKEY_fromdata_init(pc), 1);
	assert_int_equal(EVP_PKEY_fromdata(pc, &pk, d ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
					   params), 1);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(pc);
	BN_clear_free(d);
	return pk;
}

/* 1 when OpenSSL's ECDSA verify accepts r||s over the 32-byte digest. */
static int ossl_k1_verify(EVP_PKEY *pk, const uint8_t hash[32], const uint8_t rs[64])
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(rs, 32, NULL), *s = BN_bin2bn(rs + 32, 32, NULL);
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pk, NULL);
	unsigned char *der = NULL;
	int derlen, ok;

	assert_non_null(sig);
	assert_true(r && s && ECDSA_SIG_set0(sig, r, s));
	assert_true((derlen = i2d_ECDSA_SIG(sig, &der)) > 0);
	assert_non_null(c);
	assert_int_equal(EVP_PKEY_verify_init(c), 1);
	ok = EVP_PKEY_verify(c, der, (size_t)derlen, hash, 32) == 1;
	ERR_clear_error();
	EVP_PKEY_CTX_free(c);
	OPENSSL_free(der);
	ECDSA_SIG_free(sig);
	return ok;
}

/* OpenSSL's ECDSA sign (random k, s in either half) -> r||s. */
static void ossl_k1_sign(EVP_PKEY *pk, const uint8_t hash[32], uint8_t rs[64])
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pk, NULL);
	unsigned char der[80];
	const unsigned char *p = der;
	size_t len = sizeof(der);
	ECDSA_SIG *sig;

	assert_non_null(c);
	assert_int_equal(EVP_PKEY_sign_init(c), 1);
	assert_int_equal(EVP_PKEY_sign(c, der, &len, hash, 32), 1);
	assert_non_null(sig = d2i_ECDSA_SIG(NULL, &p, (long)len));
	bn_to32(ECDSA_SIG_get0_r(sig), rs);
	bn_to32(ECDSA_SIG_get0_s(sig), rs + 32);
	ECDSA_SIG_free(sig);
	EVP_PKEY_CTX_free(c);
}

/* A fresh valid private key and our key for it. */
static struct veil_secp256k1_key *rand_k1(uint8_t priv[32])
{
	struct veil_secp256k1_key *k = NULL;

	do
		rnd(priv, 32);
	while (veil_secp256k1_key_from_private(priv, &k) != 0);
	return k;
}

/* s := n - s (the malleated twin). */
static void negate_s(uint8_t rs[64])
{
	BIGNUM *n = bn_hex(N_HEX), *s = BN_bin2bn(rs + 32, 32, NULL);

	assert_non_null(s);
	assert_int_equal(BN_sub(s, n, s), 1);
	bn_to32(s, rs + 32);
	BN_free(s);
	BN_free(n);
}

static bool s_is_low(const uint8_t rs[64])
{
	uint8_t half[32];
	BIGNUM *h = bn_hex(HALF_N_HEX);

	bn_to32(h, half);
	BN_free(h);
	return memcmp(rs + 32, half, 32) <= 0;
}

/* ---- secp256k1 against OpenSSL ------------------------------------------------ */

static void test_secp256k1_our_signatures_verify_under_openssl(void **state)
{
	(void)state;
	for (int i = 0; i < ITER; i++) {
		uint8_t priv[32], pub[65], opub[65], msg[100], sig[65], h[32], q[65];
		struct veil_secp256k1_key *k = rand_k1(priv);
		size_t n = (size_t)i % sizeof(msg);
		EVP_PKEY *pk;

		/* Key derivation agrees with OpenSSL's d*G. */
		veil_secp256k1_public(k, pub);
		ossl_k1_pub(priv, opub);
		assert_memory_equal(pub, opub, 65);
		pk = ossl_k1_pkey(pub, NULL);
		rnd(msg, n);
		assert_int_equal(veil_eip191_sign(k, msg, n,
						  i % 2 ? VEIL_SECP256K1_RANDOM : VEIL_SECP256K1_RFC6979,
						  sig), 0);
		assert_true(s_is_low(sig));
		assert_true(sig[64] == 27 || sig[64] == 28);
		veil_eip191_hash(msg, n, h);
		if (!ossl_k1_verify(pk, h, sig))
			fail_msg("iteration %d: OpenSSL rejects our signature", i);
		assert_int_equal(veil_secp256k1_verify_hash(pub, h, sig), 0);
		assert_int_equal(veil_secp256k1_recover(h, sig, sig[64] - 27, q), 0);
		assert_memory_equal(q, pub, 65);
		h[i % 32] ^= 0x10; /* another digest: both refuse */
		assert_false(ossl_k1_verify(pk, h, sig));
		assert_int_equal(veil_secp256k1_verify_hash(pub, h, sig), VEIL_EBADMSG);
		EVP_PKEY_free(pk);
		veil_secp256k1_key_free(k);
	}
}

static void test_secp256k1_openssl_signatures_verify_here(void **state)
{
	int high = 0;

	(void)state;
	for (int i = 0; i < ITER; i++) {
		uint8_t priv[32], pub[65], h[32], rs[64], q0[65], q1[65];
		struct veil_secp256k1_key *k = rand_k1(priv);
		EVP_PKEY *pk;
		int r0, r1;

		veil_secp256k1_public(k, pub);
		pk = ossl_k1_pkey(pub, priv);
		rnd(h, 32);
		ossl_k1_sign(pk, h, rs);
		if (!s_is_low(rs)) {
			/* OpenSSL does not normalise: its high-s half is
			 * refused here (EIP-2), its twin accepted. */
			high++;
			assert_int_equal(veil_secp256k1_verify_hash(pub, h, rs), VEIL_EBADMSG);
			assert_non_null(strstr(veil_err_detail(), "high"));
			negate_s(rs);
		}
		assert_int_equal(veil_secp256k1_verify_hash(pub, h, rs), 0);
		/* Exactly one of recid 0/1 gives the signer back. */
		r0 = veil_secp256k1_recover(h, rs, 0, q0);
		r1 = veil_secp256k1_recover(h, rs, 1, q1);
		assert_int_equal((r0 == 0 && !memcmp(q0, pub, 65)) +
					 (r1 == 0 && !memcmp(q1, pub, 65)),
				 1);
		rs[i % 64] ^= 0x01;
		assert_int_not_equal(veil_secp256k1_verify_hash(pub, h, rs), 0);
		EVP_PKEY_free(pk);
		veil_secp256k1_key_free(k);
	}
	/* Half of OpenSSL's signatures are high-s: the branch above ran. */
	assert_in_range(high, ITER / 4, 3 * ITER / 4);
}

/* ---- an independent RFC 6979 (§3.2, HMAC-SHA256) on OpenSSL ----------------- */

static void hmac(const uint8_t key[32], const uint8_t *d, size_t n, uint8_t out[32])
{
	unsigned int len = 32;

	assert_non_null(HMAC(EVP_sha256(), key, 32, d, n, out, &len));
}

/* The low-s signature and recid RFC 6979 + SEC 1 give for (d, h1). */
static void oracle_sign(const uint8_t priv[32], const uint8_t h1[32], uint8_t rs[64],
			int *recid)
{
	EC_GROUP *g = k1_group();
	EC_POINT *R = EC_POINT_new(g);
	BN_CTX *ctx = BN_CTX_new();
	BIGNUM *n = bn_hex(N_HEX), *half = bn_hex(HALF_N_HEX);
	BIGNUM *d = BN_bin2bn(priv, 32, NULL), *e = BN_bin2bn(h1, 32, NULL);
	BIGNUM *k = BN_new(), *x = BN_new(), *y = BN_new(), *r = BN_new(), *s = BN_new();
	uint8_t K[32], V[32], buf[97];
	int id;

	assert_true(R && ctx && d && e && k && x && y && r && s);
	/* bits2octets(h1) = int2octets(h1 mod n). */
	assert_int_equal(BN_nnmod(e, e, n, ctx), 1);
	memset(V, 0x01, 32);
	memset(K, 0x00, 32);
	memcpy(buf + 33, priv, 32);
	bn_to32(e, buf + 65);
	for (uint8_t tag = 0; tag <= 1; tag++) {
		memcpy(buf, V, 32);
		buf[32] = tag;
		hmac(K, buf, sizeof(buf), K);
		hmac(K, V, 32, V);
	}
	for (int attempt = 0;; attempt++) {
		assert_true(attempt < 4);
		if (attempt > 0) {
			memcpy(buf, V, 32);
			buf[32] = 0x00;
			hmac(K, buf, 33, K);
			hmac(K, V, 32, V);
		}
		hmac(K, V, 32, V);
		assert_non_null(BN_bin2bn(V, 32, k));
		if (BN_is_zero(k) || BN_cmp(k, n) >= 0)
			continue;
		assert_int_equal(EC_POINT_mul(g, R, k, NULL, NULL, ctx), 1);
		assert_int_equal(EC_POINT_get_affine_coordinates(g, R, x, y, ctx), 1);
		assert_int_equal(BN_nnmod(r, x, n, ctx), 1);
		id = (BN_is_odd(y) ? 1 : 0) | (BN_cmp(x, n) >= 0 ? 2 : 0);
		/* s = k^-1 (e + r d) mod n */
		assert_int_equal(BN_mod_mul(s, r, d, n, ctx), 1);
		assert_int_equal(BN_mod_add(s, s, e, n, ctx), 1);
		assert_non_null(BN_mod_inverse(k, k, n, ctx));
		assert_int_equal(BN_mod_mul(s, s, k, n, ctx), 1);
		if (BN_is_zero(r) || BN_is_zero(s))
			continue;
		if (BN_cmp(s, half) > 0) {
			assert_int_equal(BN_sub(s, n, s), 1);
			id ^= 1;
		}
		break;
	}
	bn_to32(r, rs);
	bn_to32(s, rs + 32);
	*recid = id;
	BN_free(n);
	BN_free(half);
	BN_clear_free(d);
	BN_free(e);
	BN_clear_free(k);
	BN_free(x);
	BN_free(y);
	BN_free(r);
	BN_free(s);
	BN_CTX_free(ctx);
	EC_POINT_free(R);
	EC_GROUP_free(g);
}

static void check_against_oracle(const struct veil_secp256k1_key *k, const uint8_t priv[32],
				 const uint8_t h[32])
{
	uint8_t ours[64], want[64];
	int id_ours, id_want;

	assert_int_equal(veil_secp256k1_sign_hash(k, h, VEIL_SECP256K1_RFC6979, ours, &id_ours), 0);
	oracle_sign(priv, h, want, &id_want);
	assert_memory_equal(ours, want, 64);
	assert_int_equal(id_ours, id_want);
}

static void test_secp256k1_rfc6979_matches_independent_oracle(void **state)
{
	/* Digests at and beyond n take the bits2octets reduction (h1 mod n)
	 * that random digests almost never reach. */
	static const char *edge[] = {
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0000000000000000000000000000000000000000000000000000000000000001",
		"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140",
		"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
		"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364142",
		"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
	};

	(void)state;
	for (int i = 0; i < 200; i++) {
		uint8_t priv[32], h[32];
		struct veil_secp256k1_key *k = rand_k1(priv);

		rnd(h, 32);
		check_against_oracle(k, priv, h);
		for (size_t j = 0; j < VEIL_ARRAY_LEN(edge) && i < 8; j++) {
			BIGNUM *b = bn_hex(edge[j]);

			bn_to32(b, h);
			BN_free(b);
			check_against_oracle(k, priv, h);
		}
		veil_secp256k1_key_free(k);
	}
}

/* ---- edges ------------------------------------------------------------------------ */

/* libsecp256k1's recover alone would accept (r, n - s): the twin must be
 * refused for every recid, with the reason, and by verify too. */
static void test_secp256k1_high_s_refused_by_verify_and_recover(void **state)
{
	(void)state;
	for (int i = 0; i < 32; i++) {
		uint8_t priv[32], pub[65], h[32], rs[64], q[65];
		struct veil_secp256k1_key *k = rand_k1(priv);
		int recid;

		veil_secp256k1_public(k, pub);
		rnd(h, 32);
		assert_int_equal(veil_secp256k1_sign_hash(k, h, VEIL_SECP256K1_RFC6979, rs, &recid), 0);
		assert_in_range(recid, 0, 1);
		negate_s(rs);
		for (int id = 0; id < 4; id++) {
			memset(q, 0xaa, sizeof(q));
			assert_int_equal(veil_secp256k1_recover(h, rs, id, q), VEIL_EBADMSG);
			assert_non_null(strstr(veil_err_detail(), "high"));
			assert_int_equal(q[0], 0xaa); /* out-param untouched */
		}
		assert_int_equal(veil_secp256k1_verify_hash(pub, h, rs), VEIL_EBADMSG);
		assert_non_null(strstr(veil_err_detail(), "high"));
		/* ...while OpenSSL accepts it: it is a valid ECDSA signature. */
		{
			EVP_PKEY *pk = ossl_k1_pkey(pub, NULL);

			assert_true(ossl_k1_verify(pk, h, rs));
			EVP_PKEY_free(pk);
		}
		veil_secp256k1_key_free(k);
	}
}

/* Finds the smallest r >= start for which r + n is the x coordinate of a
 * point (so recid 2/3 can name it). */
static void small_r_with_overflow_point(unsigned start, uint8_t r32[32])
{
	EC_GROUP *g = k1_group();
	EC_POINT *R = EC_POINT_new(g);
	BIGNUM *n = bn_hex(N_HEX), *x = BN_new();

	assert_true(R && x);
	for (unsigned r = start;; r++) {
		assert_true(r < start + 200);
		assert_int_equal(BN_set_word(x, r), 1);
		assert_int_equal(BN_add(x, x, n), 1);
		if (EC_POINT_set_compressed_coordinates(g, R, x, 0, NULL) == 1) {
			assert_int_equal(BN_set_word(x, r), 1);
			bn_to32(x, r32);
			break;
		}
		ERR_clear_error();
	}
	BN_free(x);
	BN_free(n);
	EC_POINT_free(R);
	EC_GROUP_free(g);
}

/* Q = r^-1 (s R - e G) with R = (r + n, parity), computed by OpenSSL. */
static void oracle_recover_overflow(const uint8_t rs[64], const uint8_t h[32], int parity,
				    uint8_t pub[65])
{
	EC_GROUP *g = k1_group();
	EC_POINT *R = EC_POINT_new(g), *Q = EC_POINT_new(g);
	BN_CTX *ctx = BN_CTX_new();
	BIGNUM *n = bn_hex(N_HEX), *r = BN_bin2bn(rs, 32, NULL), *s = BN_bin2bn(rs + 32, 32, NULL);
	BIGNUM *e = BN_bin2bn(h, 32, NULL), *x = BN_new(), *u1 = BN_new(), *u2 = BN_new();

	assert_true(R && Q && ctx && r && s && e && x && u1 && u2);
	assert_int_equal(BN_add(x, r, n), 1);
	assert_int_equal(EC_POINT_set_compressed_coordinates(g, R, x, parity, ctx), 1);
	assert_int_equal(BN_nnmod(e, e, n, ctx), 1);
	assert_non_null(BN_mod_inverse(r, r, n, ctx));
	assert_int_equal(BN_mod_sub(u1, n, e, n, ctx), 1);
	assert_int_equal(BN_mod_mul(u1, u1, r, n, ctx), 1);
	assert_int_equal(BN_mod_mul(u2, s, r, n, ctx), 1);
	assert_int_equal(EC_POINT_mul(g, Q, u1, R, u2, ctx), 1);
	assert_int_equal(EC_POINT_point2oct(g, Q, POINT_CONVERSION_UNCOMPRESSED, pub, 65, ctx),
			 65);
	BN_free(n);
	BN_free(r);
	BN_free(s);
	BN_free(e);
	BN_free(x);
	BN_free(u1);
	BN_free(u2);
	BN_CTX_free(ctx);
	EC_POINT_free(R);
	EC_POINT_free(Q);
	EC_GROUP_free(g);
}

static void test_secp256k1_recid_2_and_3(void **state)
{
	struct veil_secp256k1_key *k = NULL;
	uint8_t priv[32], h[32], rs[64], q[65], q2[65], q3[65], want[65], pmn[32];
	BIGNUM *b = bn_hex(P_MINUS_N_HEX);
	int recid;

	(void)state;
	bn_to32(b, pmn);
	BN_free(b);
	/* A real signature's r is >= p - n (all but ~2^-127 of them): recid
	 * 2/3 would put R.x beyond the field. */
	k = rand_k1(priv);
	rnd(h, 32);
	assert_int_equal(veil_secp256k1_sign_hash(k, h, VEIL_SECP256K1_RANDOM, rs, &recid), 0);
	assert_true(memcmp(rs, pmn, 32) >= 0);
	for (int id = 2; id < 4; id++) {
		assert_int_equal(veil_secp256k1_recover(h, rs, id, q), VEIL_EBADMSG);
		assert_non_null(strstr(veil_err_detail(), "beyond the field"));
	}
	assert_int_equal(veil_secp256k1_recover(h, rs, -1, q), VEIL_EBADMSG);
	assert_int_equal(veil_secp256k1_recover(h, rs, 4, q), VEIL_EBADMSG);
	veil_secp256k1_key_free(k);

	/* A small r whose R.x = r + n is on the curve: recid 2 and 3 recover
	 * the two keys OpenSSL computes, and (r, s) verifies under each, here
	 * and under OpenSSL. */
	for (unsigned start = 1, found = 0; found < 4; found++) {
		small_r_with_overflow_point(start, rs);
		start = rs[31] + 1u;
		rnd(rs + 32, 32);
		rs[32] &= 0x3f; /* low s */
		rnd(h, 32);
		assert_int_equal(veil_secp256k1_recover(h, rs, 2, q2), 0);
		assert_int_equal(veil_secp256k1_recover(h, rs, 3, q3), 0);
		assert_memory_not_equal(q2, q3, 65);
		oracle_recover_overflow(rs, h, 0, want);
		assert_memory_equal(q2, want, 65);
		oracle_recover_overflow(rs, h, 1, want);
		assert_memory_equal(q3, want, 65);
		for (int j = 0; j < 2; j++) {
			const uint8_t *pub = j ? q3 : q2;
			EVP_PKEY *pk = ossl_k1_pkey(pub, NULL);

			assert_int_equal(veil_secp256k1_verify_hash(pub, h, rs), 0);
			assert_true(ossl_k1_verify(pk, h, rs));
			EVP_PKEY_free(pk);
		}
	}
}

/* s = floor(n/2) is the largest low s, n/2 + 1 the smallest high one. */
static void test_secp256k1_low_s_boundary(void **state)
{
	uint8_t rs[64], h[32], q[65];
	BIGNUM *half = bn_hex(HALF_N_HEX);

	(void)state;
	small_r_with_overflow_point(1, rs); /* any r with a point will do */
	bn_to32(half, rs + 32);
	memset(h, 0x5a, sizeof(h));
	assert_int_equal(veil_secp256k1_recover(h, rs, 2, q), 0);
	assert_int_equal(veil_secp256k1_verify_hash(q, h, rs), 0);
	assert_int_equal(BN_add_word(half, 1), 1);
	bn_to32(half, rs + 32);
	assert_int_equal(veil_secp256k1_recover(h, rs, 2, q), VEIL_EBADMSG);
	assert_int_equal(veil_secp256k1_verify_hash(q, h, rs), VEIL_EBADMSG);
	BN_free(half);
}

static void test_secp256k1_out_of_range_r_s(void **state)
{
	struct veil_secp256k1_key *k = NULL;
	uint8_t priv[32], pub[65], h[32], rs[64], bad[64], q[65], n[32];
	BIGNUM *b = bn_hex(N_HEX);
	int recid;

	(void)state;
	bn_to32(b, n);
	BN_free(b);
	k = rand_k1(priv);
	veil_secp256k1_public(k, pub);
	rnd(h, 32);
	assert_int_equal(veil_secp256k1_sign_hash(k, h, VEIL_SECP256K1_RFC6979, rs, &recid), 0);
	for (int field = 0; field < 2; field++) {
		const uint8_t *vals[] = {(const uint8_t[32]){0}, n};

		for (size_t v = 0; v < 2; v++) {
			memcpy(bad, rs, 64);
			memcpy(bad + 32 * field, vals[v], 32);
			assert_int_equal(veil_secp256k1_verify_hash(pub, h, bad), VEIL_EBADMSG);
			assert_non_null(strstr(veil_err_detail(), "out of range"));
			assert_int_equal(veil_secp256k1_recover(h, bad, recid, q), VEIL_EBADMSG);
			assert_non_null(strstr(veil_err_detail(), "out of range"));
		}
	}
	veil_secp256k1_key_free(k);
}

static void test_secp256k1_random_nonces_differ_from_rfc6979(void **state)
{
	struct veil_secp256k1_key *k = NULL;
	uint8_t priv[32], pub[65], h[32], det[64], det2[64], r[64][32], rs[64], q[65];
	int id, id2;

	(void)state;
	k = rand_k1(priv);
	veil_secp256k1_public(k, pub);
	rnd(h, 32);
	assert_int_equal(veil_secp256k1_sign_hash(k, h, VEIL_SECP256K1_RFC6979, det, &id), 0);
	assert_int_equal(veil_secp256k1_sign_hash(k, h, VEIL_SECP256K1_RFC6979, det2, &id2), 0);
	assert_memory_equal(det, det2, 64);
	assert_int_equal(id, id2);
	for (int i = 0; i < 64; i++) {
		assert_int_equal(veil_secp256k1_sign_hash(k, h, VEIL_SECP256K1_RANDOM, rs, &id), 0);
		assert_memory_not_equal(rs, det, 32);
		for (int j = 0; j < i; j++)
			assert_memory_not_equal(rs, r[j], 32);
		memcpy(r[i], rs, 32);
		assert_true(s_is_low(rs));
		assert_int_equal(veil_secp256k1_verify_hash(pub, h, rs), 0);
		assert_int_equal(veil_secp256k1_recover(h, rs, id, q), 0);
		assert_memory_equal(q, pub, 65);
	}
	assert_int_equal(veil_secp256k1_sign_hash(k, h, (enum veil_secp256k1_nonce)7, rs, &id),
			 VEIL_EINVAL);
	veil_secp256k1_key_free(k);
}

/* libsecp256k1 parses the 0x06/0x07 "hybrid" encodings; sign.h takes
 * 0x04 only.  Coordinates >= p and off-curve points are refused. */
static void test_secp256k1_public_key_encodings(void **state)
{
	struct veil_secp256k1_key *k = NULL;
	uint8_t priv[32], pub[65], h[32], rs[64], bad[65];
	int recid;

	(void)state;
	k = rand_k1(priv);
	veil_secp256k1_public(k, pub);
	rnd(h, 32);
	assert_int_equal(veil_secp256k1_sign_hash(k, h, VEIL_SECP256K1_RFC6979, rs, &recid), 0);
	assert_int_equal(veil_secp256k1_pub_check(pub), 0);
	memcpy(bad, pub, 65);
	bad[0] = (pub[64] & 1) ? 0x07 : 0x06; /* a valid hybrid encoding */
	assert_int_equal(veil_secp256k1_pub_check(bad), VEIL_EFORMAT);
	assert_int_equal(veil_secp256k1_verify_hash(bad, h, rs), VEIL_EBADMSG);
	bad[0] = 0x02;
	assert_int_equal(veil_secp256k1_pub_check(bad), VEIL_EFORMAT);
	memset(bad, 0, 65);
	bad[0] = 0x04; /* "infinity" as zeros is not a point */
	assert_int_equal(veil_secp256k1_pub_check(bad), VEIL_EFORMAT);
	assert_int_equal(veil_secp256k1_verify_hash(bad, h, rs), VEIL_EBADMSG);
	memset(bad + 1, 0xff, 32); /* x >= p */
	assert_int_equal(veil_secp256k1_pub_check(bad), VEIL_EFORMAT);
	memcpy(bad, pub, 65);
	bad[40] ^= 0x04; /* off the curve */
	assert_int_equal(veil_secp256k1_pub_check(bad), VEIL_EFORMAT);
	assert_int_equal(veil_secp256k1_verify_hash(bad, h, rs), VEIL_EBADMSG);
	veil_secp256k1_key_free(k);
}

/* ---- Ed25519 against OpenSSL ----------------------------------------------------- */

static int ossl_ed_verify(const uint8_t pub[32], const void *msg, size_t n,
			  const uint8_t sig[64])
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = pk && c && EVP_DigestVerifyInit(c, NULL, NULL, NULL, pk) == 1 &&
		 EVP_DigestVerify(c, sig, 64, msg, n) == 1;

	ERR_clear_error();
	EVP_MD_CTX_free(c);
	EVP_PKEY_free(pk);
	return ok;
}

static void ossl_ed_sign(const uint8_t seed[32], const void *msg, size_t n, uint8_t sig[64],
			 uint8_t pub[32])
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	size_t len = 64, plen = 32;

	assert_true(pk && c);
	assert_int_equal(EVP_DigestSignInit(c, NULL, NULL, NULL, pk), 1);
	assert_int_equal(EVP_DigestSign(c, sig, &len, msg, n), 1);
	assert_int_equal(EVP_PKEY_get_raw_public_key(pk, pub, &plen), 1);
	EVP_MD_CTX_free(c);
	EVP_PKEY_free(pk);
}

static void test_ed25519_cross_checks_with_openssl(void **state)
{
	(void)state;
	for (int i = 0; i < ITER; i++) {
		uint8_t seed[32], pub[32], opub[32], msg[300], sig[64], osig[64];
		struct veil_ed25519_key *k = NULL;
		size_t n = (size_t)(i * 7) % sizeof(msg);

		rnd(seed, 32);
		rnd(msg, n);
		assert_int_equal(veil_ed25519_key_from_seed(seed, &k), 0);
		veil_ed25519_public(k, pub);
		assert_int_equal(veil_ed25519_sign(k, msg, n, sig), 0);
		ossl_ed_sign(seed, msg, n, osig, opub);
		assert_memory_equal(pub, opub, 32);
		/* RFC 8032 signing is deterministic: the same bytes. */
		assert_memory_equal(sig, osig, 64);
		if (!ossl_ed_verify(pub, msg, n, sig))
			fail_msg("iteration %d: OpenSSL rejects our Ed25519 signature", i);
		assert_int_equal(veil_ed25519_verify(opub, msg, n, osig), 0);
		osig[i % 64] ^= (uint8_t)(1u << (i % 8));
		assert_int_equal(veil_ed25519_verify(opub, msg, n, osig), VEIL_EBADMSG);
		assert_false(ossl_ed_verify(pub, msg, n, osig));
		veil_ed25519_key_free(k);
	}
}

static const char L_HEX[] = "1000000000000000000000000000000014DEF9DEA2F79CD65812631A5CF5D3ED";

/* S + L: same value mod L, non-canonical encoding; OpenSSL refuses it too. */
static void test_ed25519_rejects_noncanonical_s(void **state)
{
	struct veil_ed25519_key *k = NULL;
	uint8_t pub[32], sig[64];
	BIGNUM *s = NULL, *l = bn_hex(L_HEX);

	(void)state;
	assert_int_equal(veil_ed25519_key_generate(&k), 0);
	veil_ed25519_public(k, pub);
	assert_int_equal(veil_ed25519_sign(k, "m", 1, sig), 0);
	assert_non_null(s = BN_lebin2bn(sig + 32, 32, NULL));
	assert_int_equal(BN_add(s, s, l), 1);
	assert_int_equal(BN_bn2lebinpad(s, sig + 32, 32), 32);
	assert_int_equal(veil_ed25519_verify(pub, "m", 1, sig), VEIL_EBADMSG);
	assert_false(ossl_ed_verify(pub, "m", 1, sig));
	BN_free(s);
	BN_free(l);
	veil_ed25519_key_free(k);
}

/* The identity as public key and as R, with S = 0: [0]B = R + [k]A holds
 * for every message, so RFC 8032's equation (and OpenSSL 3.0) accept it.
 * libsodium refuses small-order keys: a "signature" by nobody. */
static void test_ed25519_rejects_small_order_public_key(void **state)
{
	uint8_t pub[32] = {1}, sig[64] = {1};

	(void)state;
	assert_true(ossl_ed_verify(pub, "anything", 8, sig)); /* the equation holds */
	assert_int_equal(veil_ed25519_verify(pub, "anything", 8, sig), VEIL_EBADMSG);
	/* A public key whose y is not canonical (y = p) or not on the curve. */
	memset(pub, 0xff, 32);
	pub[0] = 0xed;
	pub[31] = 0x7f;
	assert_int_equal(veil_ed25519_verify(pub, "anything", 8, sig), VEIL_EBADMSG);
	memset(pub, 0, 32);
	pub[0] = 2; /* y = 2: x^2 = (y^2 - 1) / (d y^2 + 1) has no root */
	assert_int_equal(veil_ed25519_verify(pub, "anything", 8, sig), VEIL_EBADMSG);
}

/* A valid signature with R = identity (nonce r = 0): S = k*a mod L.  The
 * RFC 8032 equation holds and OpenSSL accepts it; libsodium refuses a
 * small-order R. */
static void test_ed25519_rejects_small_order_r(void **state)
{
	struct veil_ed25519_key *key = NULL;
	struct veil_secret seed = {0};
	uint8_t pub[32], h[64], sig[64] = {1}, hk[64];
	unsigned int len = 64;
	BN_CTX *ctx = BN_CTX_new();
	BIGNUM *a, *kk, *l = bn_hex(L_HEX);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	static const char msg[] = "small-order R";

	(void)state;
	assert_true(ctx && md);
	assert_int_equal(veil_ed25519_key_generate(&key), 0);
	veil_ed25519_public(key, pub);
	assert_int_equal(veil_ed25519_export_seed(key, &seed), 0);
	/* RFC 8032 §5.1.5: a = clamp(SHA-512(seed)[0..32]), little-endian. */
	assert_int_equal(EVP_Digest(seed.bytes, 32, h, &len, EVP_sha512(), NULL), 1);
	h[0] &= 248;
	h[31] &= 127;
	h[31] |= 64;
	assert_non_null(a = BN_lebin2bn(h, 32, NULL));
	/* k = SHA-512(R || A || M) mod L. */
	assert_int_equal(EVP_DigestInit_ex(md, EVP_sha512(), NULL), 1);
	assert_int_equal(EVP_DigestUpdate(md, sig, 32), 1);
	assert_int_equal(EVP_DigestUpdate(md, pub, 32), 1);
	assert_int_equal(EVP_DigestUpdate(md, msg, strlen(msg)), 1);
	assert_int_equal(EVP_DigestFinal_ex(md, hk, &len), 1);
	assert_non_null(kk = BN_lebin2bn(hk, 64, NULL));
	assert_int_equal(BN_mod_mul(kk, kk, a, l, ctx), 1);
	assert_int_equal(BN_bn2lebinpad(kk, sig + 32, 32), 32);
	assert_true(ossl_ed_verify(pub, msg, strlen(msg), sig)); /* the equation holds */
	assert_int_equal(veil_ed25519_verify(pub, msg, strlen(msg), sig), VEIL_EBADMSG);
	veil_wipe(h, sizeof(h));
	BN_clear_free(a);
	BN_clear_free(kk);
	BN_free(l);
	BN_CTX_free(ctx);
	EVP_MD_CTX_free(md);
	veil_secret_free(&seed);
	veil_ed25519_key_free(key);
}

static void test_ed25519_empty_and_null_message(void **state)
{
	struct veil_ed25519_key *k = NULL;
	uint8_t pub[32], a[64], b[64];

	(void)state;
	assert_int_equal(veil_ed25519_key_generate(&k), 0);
	veil_ed25519_public(k, pub);
	assert_int_equal(veil_ed25519_sign(k, NULL, 0, a), 0);
	assert_int_equal(veil_ed25519_sign(k, "", 0, b), 0);
	assert_memory_equal(a, b, 64);
	assert_int_equal(veil_ed25519_verify(pub, NULL, 0, a), 0);
	assert_true(ossl_ed_verify(pub, "", 0, a));
	veil_ed25519_key_free(k);
}

/* ---- threads ------------------------------------------------------------------------ */

#define THREADS 4
#define PER_THREAD 100

struct worker {
	const uint8_t *priv, *seed; /* the same key material for every thread */
	uint8_t k1[PER_THREAD][65];
	uint8_t ed[PER_THREAD][64];
	int bad;
};

/* Each thread makes its own key objects from the shared key material (so
 * the first calls race on the backends' one-time setup), then signs,
 * verifies and recovers through the shared backend contexts. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct veil_secp256k1_key *k1 = NULL;
	struct veil_ed25519_key *ed = NULL;
	uint8_t k1_pub[65], ed_pub[32];

	if (veil_ed25519_key_from_seed(w->seed, &ed) ||
	    veil_secp256k1_key_from_private(w->priv, &k1)) {
		w->bad++;
		goto out;
	}
	veil_secp256k1_public(k1, k1_pub);
	veil_ed25519_public(ed, ed_pub);
	for (int i = 0; i < PER_THREAD; i++) {
		uint8_t msg[4] = {(uint8_t)i, 1, 2, 3}, sig[65], addr[20], pub[65];

		if (veil_eip191_sign(k1, msg, sizeof(msg), VEIL_SECP256K1_RFC6979, w->k1[i]) ||
		    veil_eip191_recover(msg, sizeof(msg), w->k1[i], addr, pub) ||
		    memcmp(pub, k1_pub, 65) ||
		    veil_eip191_sign(k1, msg, sizeof(msg), VEIL_SECP256K1_RANDOM, sig) ||
		    veil_eip191_recover(msg, sizeof(msg), sig, addr, pub) ||
		    memcmp(pub, k1_pub, 65) ||
		    veil_ed25519_sign(ed, msg, sizeof(msg), w->ed[i]) ||
		    veil_ed25519_verify(ed_pub, msg, sizeof(msg), w->ed[i]))
			w->bad++;
	}
out:
	veil_secp256k1_key_free(k1);
	veil_ed25519_key_free(ed);
	return NULL;
}

/* The threads' deterministic signatures equal each other and the ones
 * made single-threaded afterwards. */
static void test_backends_are_safe_from_many_threads(void **state)
{
	struct worker *w = calloc(THREADS, sizeof(*w));
	struct veil_secp256k1_key *k1 = NULL;
	struct veil_ed25519_key *ed = NULL;
	uint8_t priv[32], seed[32];
	pthread_t t[THREADS];

	(void)state;
	assert_non_null(w);
	/* Not rand_k1: that would set the backends up on this thread. */
	rnd(priv, 32);
	priv[0] &= 0x7f; /* < n */
	priv[31] |= 1;   /* > 0 */
	rnd(seed, 32);
	for (int i = 0; i < THREADS; i++) {
		w[i].priv = priv;
		w[i].seed = seed;
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].bad, 0);
	}
	assert_int_equal(veil_secp256k1_key_from_private(priv, &k1), 0);
	assert_int_equal(veil_ed25519_key_from_seed(seed, &ed), 0);
	for (int i = 0; i < PER_THREAD; i++) {
		uint8_t msg[4] = {(uint8_t)i, 1, 2, 3}, sig[65], esig[64];

		assert_int_equal(veil_eip191_sign(k1, msg, sizeof(msg), VEIL_SECP256K1_RFC6979,
						  sig), 0);
		assert_int_equal(veil_ed25519_sign(ed, msg, sizeof(msg), esig), 0);
		for (int j = 0; j < THREADS; j++) {
			assert_memory_equal(w[j].k1[i], sig, 65);
			assert_memory_equal(w[j].ed[i], esig, 64);
		}
	}
	veil_secp256k1_key_free(k1);
	veil_ed25519_key_free(ed);
	veil_wipe(priv, sizeof(priv));
	free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		/* First: the backends' one-time setup runs under contention. */
		cmocka_unit_test(test_backends_are_safe_from_many_threads),
		cmocka_unit_test(test_secp256k1_our_signatures_verify_under_openssl),
		cmocka_unit_test(test_secp256k1_openssl_signatures_verify_here),
		cmocka_unit_test(test_secp256k1_rfc6979_matches_independent_oracle),
		cmocka_unit_test(test_secp256k1_high_s_refused_by_verify_and_recover),
		cmocka_unit_test(test_secp256k1_recid_2_and_3),
		cmocka_unit_test(test_secp256k1_low_s_boundary),
		cmocka_unit_test(test_secp256k1_out_of_range_r_s),
		cmocka_unit_test(test_secp256k1_random_nonces_differ_from_rfc6979),
		cmocka_unit_test(test_secp256k1_public_key_encodings),
		cmocka_unit_test(test_ed25519_cross_checks_with_openssl),
		cmocka_unit_test(test_ed25519_rejects_noncanonical_s),
		cmocka_unit_test(test_ed25519_rejects_small_order_public_key),
		cmocka_unit_test(test_ed25519_rejects_small_order_r),
		cmocka_unit_test(test_ed25519_empty_and_null_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
