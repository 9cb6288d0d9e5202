/* Unit tests of the public-key set encoding (report_data binding): the
 * worked example of docs/protocol.md recomputed from its keys, round trips,
 * and every rejection rule of the parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "veil/base.h"
#include "veil/keyset.h"
#include "veil/sign.h"

/* The worked example in docs/protocol.md, "Public-key set (report_data
 * binding)": keys from public test vectors (RFC 8032 TEST 1 seed, the
 * web3.js docs secp256k1 key, RFC 7748 §6.1 Alice's X25519 public key, and
 * as TLS SPKI the DER SubjectPublicKeyInfo of the Ed25519 key). */
static const char EXAMPLE_HEX[] =
	"7665696c2d6b6579732f310000010020"
	"d75a980182b10ab7d54bfed3c964073a"
	"0ee172f3daa62325af021a68f707511a"
	"00020041044e3b81af9c2234cad09d67"
	"9ce6035ed1392347ce64ce405f5dcd36"
	"228a25de6e47fd35c4215d1edf53e6f8"
	"3de344615ce719bdb0fd878f6ed76f06"
	"dd277956de000300142c7536e3605d9c"
	"16a7a3d7b1898e529396a65c23000400"
	"208520f0098930a754748b7ddcb43ef7"
	"5a0dbf3a0d26381af4eba4a98eaa9b4e"
	"6a0005002006e3fd8fda29bb60ab5955"
	"7de61edb0aecdb231134be30e75b455f"
	"8e1b792fa9";
static const char EXAMPLE_SHA256[] =
	"a60fe6cdd08085872a3745aab8ec8081e78387e1e498addd4d540823b35cdf09";
#define EXAMPLE_LEN 213

static void unhex(const char *s, uint8_t *out, size_t n)
{
	size_t got;

	assert_int_equal(veil_hex_decode(s, 2 * n, out, n, &got), 0);
	assert_int_equal(got, n);
}

static void example_keyset(struct veil_keyset *ks)
{
	struct veil_ed25519_key *ek = NULL;
	struct veil_secp256k1_key *sk = NULL;
	uint8_t seed[32], priv[32], pub[65], spki[44];
	unsigned int l = 32;

	memset(ks, 0, sizeof(*ks));
	unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", seed, 32);
	assert_int_equal(veil_ed25519_key_from_seed(seed, &ek), 0);
	veil_ed25519_public(ek, ks->ed25519);
	ks->present |= VEIL_KEYSET_HAS(VEIL_KEY_ED25519);
	unhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318", priv, 32);
	assert_int_equal(veil_secp256k1_key_from_private(priv, &sk), 0);
	veil_secp256k1_public(sk, pub);
	assert_int_equal(veil_keyset_set_secp256k1(ks, pub), 0);
	unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
	      ks->x25519_hpke, 32);
	ks->present |= VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE);
	/* RFC 8410 SPKI of an Ed25519 key: fixed 12-byte prefix + key. */
	unhex("302a300506032b6570032100", spki, 12);
	memcpy(spki + 12, ks->ed25519, 32);
	assert_int_equal(EVP_Digest(spki, sizeof(spki), ks->tls_spki_sha256, &l,
				    EVP_sha256(), NULL), 1);
	ks->present |= VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256);
	veil_ed25519_key_free(ek);
	veil_secp256k1_key_free(sk);
}

static void example_bytes(uint8_t out[EXAMPLE_LEN])
{
	unhex(EXAMPLE_HEX, out, EXAMPLE_LEN);
}

static void test_worked_example_encoding_and_digest(void **state)
{
	struct veil_keyset ks;
	uint8_t enc[VEIL_KEYSET_MAX], want[EXAMPLE_LEN], d[32], rd[64], nonce[32];
	char hex[65];
	size_t n = 0;

	(void)state;
	example_keyset(&ks);
	assert_true(ks.present == VEIL_KEYSET_NODE);
	assert_int_equal(veil_keyset_encode(&ks, enc, sizeof(enc), &n), 0);
	assert_int_equal(n, EXAMPLE_LEN);
	example_bytes(want);
	assert_memory_equal(enc, want, EXAMPLE_LEN);
	assert_int_equal(veil_keyset_digest(enc, n, d), 0);
	veil_hex_encode(d, 32, hex, sizeof(hex));
	assert_string_equal(hex, EXAMPLE_SHA256);
	for (int i = 0; i < 32; i++)
		nonce[i] = (uint8_t)i;
	assert_int_equal(veil_keyset_report_data(enc, n, nonce, rd), 0);
	assert_memory_equal(rd, d, 32);
	assert_memory_equal(rd + 32, nonce, 32);
	assert_int_equal(veil_keyset_check_report_data(enc, n, nonce, rd), 0);
	rd[63] ^= 1;
	assert_int_equal(veil_keyset_check_report_data(enc, n, nonce, rd), VEIL_EBADMSG);
	assert_non_null(strstr(veil_err_detail(), "nonce"));
	rd[63] ^= 1;
	rd[0] ^= 1;
	assert_int_equal(veil_keyset_check_report_data(enc, n, nonce, rd), VEIL_EBADMSG);
	assert_non_null(strstr(veil_err_detail(), "SHA-256"));
}

/* docs/protocol.md must show the same bytes and digest the code makes. */
static void test_docs_show_the_worked_example(void **state)
{
	struct veil_buf b = VEIL_BUF_INIT(1 << 22);
	const char *sec, *fence, *end;
	char hex[2 * EXAMPLE_LEN + 1];
	size_t h = 0;

	(void)state;
	if (veil_buf_read_file(&b, "docs/protocol.md") < 0 ||
	    !(sec = strstr((char *)b.data, "## Public-key set (report_data binding)"))) {
		fprintf(stderr, "test_keyset: SKIP: docs/protocol.md has no "
			"\"## Public-key set (report_data binding)\" section yet\n");
		veil_buf_free(&b);
		skip();
	}
	/* The first fenced block after "Worked example" is the encoding. */
	sec = strstr(sec, "Worked example");
	assert_non_null(sec);
	fence = strstr(sec, "```");
	assert_non_null(fence);
	fence = strchr(fence, '\n');
	assert_non_null(fence);
	end = strstr(fence, "```");
	assert_non_null(end);
	for (const char *c = fence; c < end; c++) {
		if (isxdigit((unsigned char)*c)) {
			assert_true(h < sizeof(hex) - 1);
			hex[h++] = (char)tolower((unsigned char)*c);
		}
	}
	hex[h] = '\0';
	assert_string_equal(hex, EXAMPLE_HEX);
	assert_non_null(strstr(end, EXAMPLE_SHA256));
	veil_buf_free(&b);
}

static void test_parse_round_trips_the_example(void **state)
{
	struct veil_keyset ks, want;
	uint8_t in[EXAMPLE_LEN], out[VEIL_KEYSET_MAX];
	size_t n = 0;

	(void)state;
	example_bytes(in);
	example_keyset(&want);
	assert_int_equal(veil_keyset_parse(in, sizeof(in), &ks), 0);
	assert_true(ks.present == want.present);
	assert_memory_equal(&ks, &want, sizeof(ks));
	assert_int_equal(veil_keyset_encode(&ks, out, sizeof(out), &n), 0);
	assert_int_equal(n, sizeof(in));
	assert_memory_equal(out, in, n);
}

static void test_subset_encodes_and_parses(void **state)
{
	struct veil_keyset ks = {0}, back;
	uint8_t out[VEIL_KEYSET_MAX];
	size_t n = 0;

	(void)state;
	memset(ks.ed25519, 0xab, 32);
	ks.present = VEIL_KEYSET_HAS(VEIL_KEY_ED25519);
	assert_int_equal(veil_keyset_encode(&ks, out, sizeof(out), &n), 0);
	assert_int_equal(n, 12 + 4 + 32);
	assert_int_equal(veil_keyset_parse(out, n, &back), 0);
	assert_true(back.present == ks.present);
	assert_int_equal(veil_keyset_encode(&ks, out, n - 1, &n), VEIL_ERANGE);
	ks.present = 0;
	assert_int_equal(veil_keyset_encode(&ks, out, sizeof(out), &n), VEIL_EINVAL);
}

static void test_every_truncation_is_rejected(void **state)
{
	uint8_t in[EXAMPLE_LEN];
	struct veil_keyset ks;

	(void)state;
	example_bytes(in);
	for (size_t n = 0; n < sizeof(in); n++) {
		int rc = veil_keyset_parse(in, n, &ks);

		/* Cutting exactly between entries leaves a valid prefix unless it
		 * separates the secp256k1 key from its address. */
		if (n == 12 + 36 || n == 12 + 36 + 69 + 24 || n == 12 + 36 + 69 + 24 + 36)
			assert_int_equal(rc, 0);
		else if (rc != VEIL_EFORMAT)
			fail_msg("truncation to %zu bytes: rc %d", n, rc);
	}
}

/* Builds magic + one crafted entry list and expects rc, with the detail
 * naming `needle`. */
static void expect_reject(const uint8_t *body, size_t n, int rc, const char *needle)
{
	uint8_t buf[VEIL_KEYSET_MAX + 16];
	struct veil_keyset ks;

	memcpy(buf, VEIL_KEYSET_MAGIC, VEIL_KEYSET_MAGIC_LEN);
	memcpy(buf + VEIL_KEYSET_MAGIC_LEN, body, n);
	assert_int_equal(veil_keyset_parse(buf, VEIL_KEYSET_MAGIC_LEN + n, &ks), rc);
	if (!strstr(veil_err_detail(), needle))
		fail_msg("detail \"%s\" does not mention \"%s\"", veil_err_detail(), needle);
}

static void test_parser_rejects_each_rule(void **state)
{
	uint8_t e[80] = {0, 1, 0, 32}; /* one ed25519 entry */
	uint8_t two[72] = {0, 1, 0, 32};
	uint8_t in[EXAMPLE_LEN];
	struct veil_keyset ks;

	(void)state;
	/* header only: no entries */
	expect_reject(e, 0, VEIL_EFORMAT, "no entries");
	/* wrong length for a known type */
	e[3] = 31;
	expect_reject(e, 4 + 31, VEIL_EFORMAT, "length 31");
	e[3] = 32;
	/* value longer than what remains */
	expect_reject(e, 4 + 10, VEIL_EFORMAT, "exceeds remaining");
	/* unknown type */
	e[1] = 9;
	expect_reject(e, 4 + 32, VEIL_ENOTSUP, "unknown entry type 9");
	e[1] = 0;
	expect_reject(e, 4 + 32, VEIL_ENOTSUP, "unknown entry type 0");
	e[0] = 1; /* type 0x0101 */
	e[1] = 1;
	expect_reject(e, 4 + 32, VEIL_ENOTSUP, "unknown entry type 257");
	e[0] = 0;
	/* trailing partial header */
	expect_reject(e, 4 + 32 + 3, VEIL_EFORMAT, "4 bytes needed");
	/* duplicate */
	memcpy(two + 36, two, 4);
	expect_reject(two, 72, VEIL_EFORMAT, "ascending");
	/* wrong order: x25519 (4) then ed25519 (1) */
	two[1] = 4;
	expect_reject(two, 72, VEIL_EFORMAT, "ascending");
	/* address without its key */
	memset(e, 0, sizeof(e));
	e[1] = 3;
	e[3] = 20;
	expect_reject(e, 24, VEIL_EFORMAT, "together");

	example_bytes(in);
	/* address that does not belong to the key */
	in[12 + 36 + 69 + 4] ^= 1;
	assert_int_equal(veil_keyset_parse(in, sizeof(in), &ks), VEIL_EFORMAT);
	assert_non_null(strstr(veil_err_detail(), "not the address"));
	in[12 + 36 + 69 + 4] ^= 1;
	/* secp256k1 key off the curve (address made to match) */
	in[12 + 36 + 4 + 64] ^= 1;
	{
		uint8_t a[20];

		veil_secp256k1_pub_to_address(in + 12 + 36 + 4, a);
		memcpy(in + 12 + 36 + 69 + 4, a, 20);
	}
	assert_int_equal(veil_keyset_parse(in, sizeof(in), &ks), VEIL_EFORMAT);
	assert_non_null(strstr(veil_err_detail(), "curve"));
	example_bytes(in);
	/* compressed-key prefix */
	in[12 + 36 + 4] = 0x02;
	assert_int_equal(veil_keyset_parse(in, sizeof(in), &ks), VEIL_EFORMAT);
	example_bytes(in);
	/* magic and version */
	in[0] = 'V';
	assert_int_equal(veil_keyset_parse(in, sizeof(in), &ks), VEIL_EFORMAT);
	example_bytes(in);
	in[10] = '2';
	assert_int_equal(veil_keyset_parse(in, sizeof(in), &ks), VEIL_ENOTSUP);
	example_bytes(in);
	in[11] = 'x'; /* the NUL is part of the magic */
	assert_int_equal(veil_keyset_parse(in, sizeof(in), &ks), VEIL_ENOTSUP);
}

/* One set of keys, one encoding: an X25519 key at or above 2^255 - 19 is
 * another spelling of a key below it; and a key of small order can never
 * be sealed to.  Both are refused. */
static void test_x25519_key_must_be_canonical_and_not_small_order(void **state)
{
	static const struct {
		const char *why;
		uint8_t top, rest, low; /* byte 31, bytes 1..30, byte 0 */
		const char *err;
	} bad[] = {
		{"p", 0x7f, 0xff, 0xed, "not canonical"},
		{"p + 1", 0x7f, 0xff, 0xee, "not canonical"},
		{"2^255 - 1", 0x7f, 0xff, 0xff, "not canonical"},
		{"the top bit", 0xff, 0x00, 0x09, "not canonical"},
		{"0", 0x00, 0x00, 0x00, "small order"},
		{"1", 0x00, 0x00, 0x01, "small order"},
		{"p - 1", 0x7f, 0xff, 0xec, "small order"},
	};
	struct veil_keyset ks, back;
	uint8_t out[VEIL_KEYSET_MAX];
	size_t n = 0;

	(void)state;
	example_keyset(&ks);
	assert_int_equal(veil_keyset_encode(&ks, out, sizeof(out), &n), 0);
	assert_int_equal(veil_keyset_parse(out, n, &back), 0);
	for (size_t i = 0; i < VEIL_ARRAY_LEN(bad); i++) {
		ks.x25519_hpke[0] = bad[i].low;
		memset(ks.x25519_hpke + 1, bad[i].rest, 30);
		ks.x25519_hpke[31] = bad[i].top;
		assert_int_equal(veil_keyset_encode(&ks, out, sizeof(out), &n), 0);
		if (veil_keyset_parse(out, n, &back) != VEIL_EFORMAT ||
		    !strstr(veil_err_detail(), bad[i].err))
			fail_msg("x25519 key %s: not refused as %s (%s)", bad[i].why, bad[i].err,
				 veil_err_detail());
	}
	/* the example's key with its top bit set: the same key, spelled twice */
	example_keyset(&ks);
	ks.x25519_hpke[31] |= 0x80;
	assert_int_equal(veil_keyset_encode(&ks, out, sizeof(out), &n), 0);
	assert_int_equal(veil_keyset_parse(out, n, &back), VEIL_EFORMAT);
}

static void test_encode_refuses_mismatched_address(void **state)
{
	struct veil_keyset ks;
	uint8_t out[VEIL_KEYSET_MAX];
	size_t n;

	(void)state;
	example_keyset(&ks);
	ks.eth_address[0] ^= 1;
	assert_int_equal(veil_keyset_encode(&ks, out, sizeof(out), &n), VEIL_EINVAL);
	example_keyset(&ks);
	ks.present &= ~VEIL_KEYSET_HAS(VEIL_KEY_ETH_ADDRESS);
	assert_int_equal(veil_keyset_encode(&ks, out, sizeof(out), &n), VEIL_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_worked_example_encoding_and_digest),
		cmocka_unit_test(test_docs_show_the_worked_example),
		cmocka_unit_test(test_parse_round_trips_the_example),
		cmocka_unit_test(test_subset_encodes_and_parses),
		cmocka_unit_test(test_every_truncation_is_rejected),
		cmocka_unit_test(test_parser_rejects_each_rule),
		cmocka_unit_test(test_encode_refuses_mismatched_address),
		cmocka_unit_test(test_x25519_key_must_be_canonical_and_not_small_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
