/* Unit tests of the sign module: Ed25519 against the RFC 8032 vectors,
 * secp256k1 / EIP-191 against eip191-personal-sign.json (both in
 * $VEIL_SHARED/vectors/sign/, VEIL_SHARED defaulting to ../shared; tests run
 * from the repository root), plus the rejection paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/evp.h>

#include "veil/base.h"
#include "veil/sign.h"

static json_t *load_vectors(const char *rel)
{
	const char *root = getenv("VEIL_SHARED");
	char path[4096];
	json_error_t err;
	json_t *j;

	snprintf(path, sizeof(path), "%s/%s", root && *root ? root : "../shared", rel);
	j = json_load_file(path, 0, &err);
	if (!j)
		fprintf(stderr, "test_sign: SKIP: %s not readable (%s); set VEIL_SHARED "
			"to the shared data directory\n", path, err.text);
	return j;
}

static const char *str(json_t *v, const char *key)
{
	const char *s = json_string_value(json_object_get(v, key));

	if (!s)
		fail_msg("vector field \"%s\" missing", key);
	return s;
}

/* Decodes hex with an optional 0x into a malloc'd buffer. */
static uint8_t *unhex(const char *s, size_t *n)
{
	size_t len;
	uint8_t *out;

	if (s[0] == '0' && s[1] == 'x')
		s += 2;
	len = strlen(s);
	out = malloc(len / 2 + 1);
	assert_non_null(out);
	assert_int_equal(veil_hex_decode(s, len, out, len / 2 + 1, n), 0);
	return out;
}

static void unhex_exact(const char *s, uint8_t *out, size_t want)
{
	size_t n;
	uint8_t *b = unhex(s, &n);

	assert_int_equal(n, want);
	memcpy(out, b, n);
	free(b);
}

/* Decimal integer string -> 32-byte big-endian. */
static void dec32(const char *dec, uint8_t out[32])
{
	BIGNUM *b = NULL;

	assert_true(BN_dec2bn(&b, dec) > 0);
	assert_int_equal(BN_bn2binpad(b, out, 32), 32);
	BN_free(b);
}

/* ---- Ed25519 ----------------------------------------------------------------- */

static void test_ed25519_rfc8032_vectors_sign_and_verify(void **state)
{
	json_t *j = load_vectors("vectors/sign/ed25519-rfc8032.json"), *v;
	size_t i, count = 0;

	(void)state;
	if (!j)
		skip();
	json_array_foreach(json_object_get(j, "vectors"), i, v) {
		uint8_t seed[32], pub[32], want_pub[32], sig[64], want_sig[64];
		struct veil_ed25519_key *k = NULL;
		size_t mlen;
		uint8_t *msg = unhex(str(v, "message"), &mlen);

		unhex_exact(str(v, "secret_key"), seed, 32);
		unhex_exact(str(v, "public_key"), want_pub, 32);
		unhex_exact(str(v, "signature"), want_sig, 64);
		assert_int_equal(veil_ed25519_key_from_seed(seed, &k), 0);
		veil_ed25519_public(k, pub);
		assert_memory_equal(pub, want_pub, 32);
		assert_int_equal(veil_ed25519_sign(k, msg, mlen, sig), 0);
		if (memcmp(sig, want_sig, 64) != 0)
			fail_msg("%s: signature differs", str(v, "name"));
		assert_int_equal(veil_ed25519_verify(want_pub, msg, mlen, want_sig), 0);
		/* Any flipped bit in the signature or message must fail. */
		want_sig[i % 64] ^= 0x01;
		assert_int_equal(veil_ed25519_verify(want_pub, msg, mlen, want_sig),
				 VEIL_EBADMSG);
		want_sig[i % 64] ^= 0x01;
		if (mlen > 0) {
			msg[0] ^= 0x80;
			assert_int_equal(veil_ed25519_verify(want_pub, msg, mlen, want_sig),
					 VEIL_EBADMSG);
		}
		veil_ed25519_key_free(k);
		free(msg);
		count++;
	}
	assert_int_equal(count, 5);
	json_decref(j);
}

static void test_ed25519_generated_key_round_trips_through_seed(void **state)
{
	struct veil_ed25519_key *a = NULL, *b = NULL;
	struct veil_secret seed = {0};
	uint8_t pa[32], pb[32], sig[64];

	(void)state;
	assert_int_equal(veil_ed25519_key_generate(&a), 0);
	assert_int_equal(veil_ed25519_export_seed(a, &seed), 0);
	assert_int_equal(seed.len, 32);
	assert_int_equal(veil_ed25519_key_from_seed(seed.bytes, &b), 0);
	veil_ed25519_public(a, pa);
	veil_ed25519_public(b, pb);
	assert_memory_equal(pa, pb, 32);
	assert_int_equal(veil_ed25519_sign(a, "hello", 5, sig), 0);
	assert_int_equal(veil_ed25519_verify(pb, "hello", 5, sig), 0);
	assert_int_equal(veil_ed25519_verify(pb, "hellp", 5, sig), VEIL_EBADMSG);
	veil_secret_free(&seed);
	veil_ed25519_key_free(a);
	veil_ed25519_key_free(b);
}

static void test_ed25519_rejects_signature_under_other_key(void **state)
{
	struct veil_ed25519_key *a = NULL, *b = NULL;
	uint8_t pb[32], sig[64];

	(void)state;
	assert_int_equal(veil_ed25519_key_generate(&a), 0);
	assert_int_equal(veil_ed25519_key_generate(&b), 0);
	veil_ed25519_public(b, pb);
	assert_int_equal(veil_ed25519_sign(a, "m", 1, sig), 0);
	assert_int_equal(veil_ed25519_verify(pb, "m", 1, sig), VEIL_EBADMSG);
	veil_ed25519_key_free(a);
	veil_ed25519_key_free(b);
}

/* ---- EIP-191 / secp256k1 ---------------------------------------------------- */

static void check_hash(json_t *v, const char *msg)
{
	uint8_t h[32], want[32];

	unhex_exact(str(v, "message_hash"), want, 32);
	veil_eip191_hash(msg, strlen(msg), h);
	assert_memory_equal(h, want, 32);
}

/* The 65-byte signature equals r || s || v assembled from the decimal
 * fields, so the vector is self-consistent. */
static void check_rsv_fields(json_t *v, const uint8_t sig[65])
{
	uint8_t r[32], s[32];

	dec32(str(v, "r"), r);
	dec32(str(v, "s"), s);
	assert_memory_equal(sig, r, 32);
	assert_memory_equal(sig + 32, s, 32);
	assert_int_equal(sig[64], json_integer_value(json_object_get(v, "v")));
}

static void check_recover(json_t *v, const char *msg, const uint8_t sig[65])
{
	uint8_t addr[20], want[20];
	char txt[VEIL_ETH_ADDRESS_STR_LEN];

	assert_int_equal(veil_eth_address_parse(str(v, "address"), want), 0);
	assert_int_equal(veil_eip191_recover(msg, strlen(msg), sig, addr, NULL), 0);
	assert_memory_equal(addr, want, 20);
	veil_eth_address_format(addr, txt);
	assert_string_equal(txt, str(v, "address")); /* EIP-55 casing exact */
	assert_int_equal(veil_eip191_verify(msg, strlen(msg), sig, want), 0);
}

static void test_eip191_vectors(void **state)
{
	json_t *j = load_vectors("vectors/sign/eip191-personal-sign.json"), *v;
	size_t i, nsign = 0, nrecover = 0, nhash = 0;

	(void)state;
	if (!j)
		skip();
	json_array_foreach(json_object_get(j, "vectors"), i, v) {
		const char *kind = str(v, "kind");
		const char *msg = str(v, "message_utf8");
		uint8_t sig[65], mine[65], priv[32], addr[20], want_addr[20];
		struct veil_secp256k1_key *k = NULL;
		char txt[VEIL_ETH_ADDRESS_STR_LEN];

		check_hash(v, msg);
		if (!strcmp(kind, "hash")) {
			nhash++;
			continue;
		}
		unhex_exact(str(v, "signature"), sig, 65);
		check_rsv_fields(v, sig);
		check_recover(v, msg, sig);
		if (!strcmp(kind, "recover")) {
			nrecover++;
			continue;
		}
		assert_string_equal(kind, "sign");
		unhex_exact(str(v, "private_key"), priv, 32);
		assert_int_equal(veil_secp256k1_key_from_private(priv, &k), 0);
		veil_secp256k1_address(k, addr);
		assert_int_equal(veil_eth_address_parse(str(v, "address"), want_addr), 0);
		assert_memory_equal(addr, want_addr, 20);
		veil_eth_address_format(addr, txt);
		assert_string_equal(txt, str(v, "address"));
		assert_int_equal(veil_eip191_sign(k, msg, strlen(msg),
						  VEIL_SECP256K1_RFC6979, mine), 0);
		if (memcmp(mine, sig, 65) != 0) {
			char got[131];

			veil_hex_encode(mine, 65, got, sizeof(got));
			fail_msg("sign vector %zu: got 0x%s want %s", i, got, str(v, "signature"));
		}
		veil_secp256k1_key_free(k);
		nsign++;
	}
	assert_int_equal(nsign, 3);
	assert_int_equal(nrecover, 1);
	assert_int_equal(nhash, 2);
	json_decref(j);
}

/* The NEAR AI signing text is "<sha256(req) hex>:<sha256(resp) hex>". */
static void test_eip191_near_vector_message_is_hash_pair(void **state)
{
	json_t *j = load_vectors("vectors/sign/eip191-personal-sign.json"), *v;
	size_t i, found = 0;

	(void)state;
	if (!j)
		skip();
	json_array_foreach(json_object_get(j, "vectors"), i, v) {
		const char *req = json_string_value(json_object_get(v, "request_body_utf8"));
		const char *resp = json_string_value(json_object_get(v, "response_body_utf8"));
		uint8_t hq[32], hr[32];
		char text[130], a[65], b[65];
		unsigned int l = 32;

		if (!req || !resp)
			continue;
		assert_int_equal(EVP_Digest(req, strlen(req), hq, &l, EVP_sha256(), NULL), 1);
		assert_int_equal(EVP_Digest(resp, strlen(resp), hr, &l, EVP_sha256(), NULL), 1);
		veil_hex_encode(hq, 32, a, sizeof(a));
		veil_hex_encode(hr, 32, b, sizeof(b));
		snprintf(text, sizeof(text), "%s:%s", a, b);
		assert_string_equal(text, str(v, "message_utf8"));
		assert_int_equal(strlen(text), 129);
		found++;
	}
	assert_int_equal(found, 1);
	json_decref(j);
}

/* Fixed key (web3.js docs example key, test-only). */
static struct veil_secp256k1_key *web3_key(void)
{
	static const char *hex = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
	struct veil_secp256k1_key *k = NULL;
	uint8_t priv[32];

	unhex_exact(hex, priv, 32);
	assert_int_equal(veil_secp256k1_key_from_private(priv, &k), 0);
	return k;
}

static void test_eip191_sign_known_vector_without_shared(void **state)
{
	struct veil_secp256k1_key *k = web3_key();
	uint8_t sig[65], want[65];
	char txt[VEIL_ETH_ADDRESS_STR_LEN];
	uint8_t addr[20];

	(void)state;
	unhex_exact("b91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd"
		    "6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c",
		    want, 65);
	assert_int_equal(veil_eip191_sign(k, "Some data", 9, VEIL_SECP256K1_RFC6979, sig), 0);
	assert_memory_equal(sig, want, 65);
	veil_secp256k1_address(k, addr);
	veil_eth_address_format(addr, txt);
	assert_string_equal(txt, "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
	veil_secp256k1_key_free(k);
}

static void test_random_nonce_signatures_differ_and_verify(void **state)
{
	struct veil_secp256k1_key *k = NULL;
	uint8_t a[65], b[65], addr[20], got[20], pub[65], rpub[65], h[32];
	uint8_t half[32];

	(void)state;
	/* n/2 = 7FFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF 5D576E73 57A4501D DFE92F46 681B20A0 */
	unhex_exact("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0",
		    half, 32);
	assert_int_equal(veil_secp256k1_key_generate(&k), 0);
	veil_secp256k1_address(k, addr);
	veil_secp256k1_public(k, pub);
	for (int i = 0; i < 16; i++) {
		assert_int_equal(veil_eip191_sign(k, "msg", 3, VEIL_SECP256K1_RANDOM, a), 0);
		assert_int_equal(veil_eip191_sign(k, "msg", 3, VEIL_SECP256K1_RANDOM, b), 0);
		assert_memory_not_equal(a, b, 64);
		assert_true(memcmp(a + 32, half, 32) <= 0); /* low-s */
		assert_true(a[64] == 27 || a[64] == 28);
		assert_int_equal(veil_eip191_recover("msg", 3, a, got, rpub), 0);
		assert_memory_equal(got, addr, 20);
		assert_memory_equal(rpub, pub, 65);
		veil_eip191_hash("msg", 3, h);
		assert_int_equal(veil_secp256k1_verify_hash(pub, h, a), 0);
		assert_int_equal(veil_eip191_verify("msg", 3, b, addr), 0);
		assert_int_equal(veil_eip191_verify("msh", 3, b, addr), VEIL_EBADMSG);
	}
	veil_secp256k1_key_free(k);
}

static void test_deterministic_signature_is_stable(void **state)
{
	struct veil_secp256k1_key *k = web3_key();
	uint8_t a[65], b[65];

	(void)state;
	assert_int_equal(veil_eip191_sign(k, "x", 1, VEIL_SECP256K1_RFC6979, a), 0);
	assert_int_equal(veil_eip191_sign(k, "x", 1, VEIL_SECP256K1_RFC6979, b), 0);
	assert_memory_equal(a, b, 65);
	veil_secp256k1_key_free(k);
}

/* (r, n - s) with the flipped v is the malleated twin of a valid
 * signature; it must be refused, not recovered. */
static void test_high_s_twin_is_rejected(void **state)
{
	struct veil_secp256k1_key *k = web3_key();
	uint8_t sig[65], addr[20], pub[65], h[32];
	BIGNUM *s = NULL, *n = NULL;

	(void)state;
	assert_int_equal(veil_eip191_sign(k, "m", 1, VEIL_SECP256K1_RFC6979, sig), 0);
	veil_secp256k1_public(k, pub);
	assert_true(BN_hex2bn(&n, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141") > 0);
	s = BN_bin2bn(sig + 32, 32, NULL);
	assert_non_null(s);
	assert_int_equal(BN_sub(s, n, s), 1);
	assert_int_equal(BN_bn2binpad(s, sig + 32, 32), 32);
	sig[64] = sig[64] == 27 ? 28 : 27;
	assert_int_equal(veil_eip191_recover("m", 1, sig, addr, NULL), VEIL_EBADMSG);
	assert_non_null(strstr(veil_err_detail(), "high"));
	veil_eip191_hash("m", 1, h);
	assert_int_equal(veil_secp256k1_verify_hash(pub, h, sig), VEIL_EBADMSG);
	BN_free(s);
	BN_free(n);
	veil_secp256k1_key_free(k);
}

static void test_recover_rejects_bad_v_and_zero_r(void **state)
{
	struct veil_secp256k1_key *k = web3_key();
	uint8_t sig[65], addr[20];

	(void)state;
	assert_int_equal(veil_eip191_sign(k, "m", 1, VEIL_SECP256K1_RFC6979, sig), 0);
	sig[64] = 29;
	assert_int_equal(veil_eip191_recover("m", 1, sig, addr, NULL), VEIL_EBADMSG);
	sig[64] = 27;
	memset(sig, 0, 32);
	assert_int_equal(veil_eip191_recover("m", 1, sig, addr, NULL), VEIL_EBADMSG);
	memset(sig, 0xff, 32); /* r >= n */
	assert_int_equal(veil_eip191_recover("m", 1, sig, addr, NULL), VEIL_EBADMSG);
	veil_secp256k1_key_free(k);
}

static void test_private_key_range_is_checked(void **state)
{
	struct veil_secp256k1_key *k = NULL;
	uint8_t z[32] = {0}, n[32];

	(void)state;
	assert_int_equal(veil_secp256k1_key_from_private(z, &k), VEIL_EINVAL);
	unhex_exact("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", n, 32);
	assert_int_equal(veil_secp256k1_key_from_private(n, &k), VEIL_EINVAL);
	n[31] = 0x40; /* n - 1 is the largest valid key */
	assert_int_equal(veil_secp256k1_key_from_private(n, &k), 0);
	veil_secp256k1_key_free(k);
}

static void test_private_key_exports_and_reimports(void **state)
{
	struct veil_secp256k1_key *a = NULL, *b = NULL;
	struct veil_secret s = {0};
	uint8_t pa[65], pb[65];

	(void)state;
	assert_int_equal(veil_secp256k1_key_generate(&a), 0);
	assert_int_equal(veil_secp256k1_export_private(a, &s), 0);
	assert_int_equal(veil_secp256k1_key_from_private(s.bytes, &b), 0);
	veil_secp256k1_public(a, pa);
	veil_secp256k1_public(b, pb);
	assert_memory_equal(pa, pb, 65);
	assert_int_equal(veil_secp256k1_pub_check(pa), 0);
	pa[64] ^= 1; /* off the curve */
	assert_int_equal(veil_secp256k1_pub_check(pa), VEIL_EFORMAT);
	veil_secret_free(&s);
	veil_secp256k1_key_free(a);
	veil_secp256k1_key_free(b);
}

/* EIP-55 examples from the EIP itself. */
static void test_eip55_checksum_examples(void **state)
{
	static const char *ex[] = {
		"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
		"0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
		"0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
		"0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
	};
	uint8_t a[20];
	char out[VEIL_ETH_ADDRESS_STR_LEN], bad[VEIL_ETH_ADDRESS_STR_LEN];

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(ex); i++) {
		assert_int_equal(veil_eth_address_parse(ex[i], a), 0);
		veil_eth_address_format(a, out);
		assert_string_equal(out, ex[i]);
	}
	/* All-lower is accepted without a checksum; one wrong case is not. */
	assert_int_equal(veil_eth_address_parse("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", a), 0);
	strcpy(bad, ex[0]);
	bad[4] = 'a'; /* "0x5aA...": 'A' -> 'a' */
	assert_int_equal(veil_eth_address_parse(bad, a), VEIL_EFORMAT);
	assert_int_equal(veil_eth_address_parse("0x1234", a), VEIL_EFORMAT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ed25519_rfc8032_vectors_sign_and_verify),
		cmocka_unit_test(test_ed25519_generated_key_round_trips_through_seed),
		cmocka_unit_test(test_ed25519_rejects_signature_under_other_key),
		cmocka_unit_test(test_eip191_vectors),
		cmocka_unit_test(test_eip191_near_vector_message_is_hash_pair),
		cmocka_unit_test(test_eip191_sign_known_vector_without_shared),
		cmocka_unit_test(test_random_nonce_signatures_differ_and_verify),
		cmocka_unit_test(test_deterministic_signature_is_stable),
		cmocka_unit_test(test_high_s_twin_is_rejected),
		cmocka_unit_test(test_recover_rejects_bad_v_and_zero_r),
		cmocka_unit_test(test_private_key_range_is_checked),
		cmocka_unit_test(test_private_key_exports_and_reimports),
		cmocka_unit_test(test_eip55_checksum_examples),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
