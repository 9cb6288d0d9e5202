/* Unit tests of the receipt module (include/veil/receipt.h): receipts made
 * here exactly as veil-node makes them (payload sorted and compact, signed
 * with Ed25519 and EIP-191 by fresh keys; with and without NEAR AI text
 * signatures) parse and verify against the key set that binds those keys;
 * every tampered field, signature, or key mismatch fails; the Ed25519-only
 * check (veil_receipt_verify_ed25519) catches all of that but the ECDSA
 * signatures, which it leaves to the full check; the parser refuses
 * malformed objects with a detail; the canonical report hash of the
 * receipts log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "veil/base.h"
#include "veil/keyset.h"
#include "veil/receipt.h"
#include "veil/sign.h"

struct signer {
	struct veil_ed25519_key *ed;
	struct veil_secp256k1_key *k1;
	struct veil_keyset ks;     /* what an attestation report would bind */
	char ed_hex[65];
	char addr[VEIL_ETH_ADDRESS_STR_LEN];
};

static void signer_new(struct signer *s)
{
	uint8_t pub[65];

	memset(s, 0, sizeof(*s));
	assert_int_equal(veil_ed25519_key_generate(&s->ed), 0);
	assert_int_equal(veil_secp256k1_key_generate(&s->k1), 0);
	veil_ed25519_public(s->ed, s->ks.ed25519);
	s->ks.present |= VEIL_KEYSET_HAS(VEIL_KEY_ED25519);
	veil_secp256k1_public(s->k1, pub);
	assert_int_equal(veil_keyset_set_secp256k1(&s->ks, pub), 0);
	veil_hex_encode(s->ks.ed25519, 32, s->ed_hex, sizeof(s->ed_hex));
	veil_eth_address_format(s->ks.eth_address, s->addr);
}

static void signer_free(struct signer *s)
{
	veil_ed25519_key_free(s->ed);
	veil_secp256k1_key_free(s->k1);
}

static void sign_pair(const struct signer *s, const char *msg, char ed[129], char ec[133])
{
	uint8_t es[64], ks[65];

	assert_int_equal(veil_ed25519_sign(s->ed, msg, strlen(msg), es), 0);
	assert_int_equal(veil_eip191_sign(s->k1, msg, strlen(msg), VEIL_SECP256K1_RFC6979, ks), 0);
	veil_hex_encode(es, 64, ed, 129);
	ec[0] = '0';
	ec[1] = 'x';
	veil_hex_encode(ks, 65, ec + 2, 131);
}

static const char REQ_HEX[] = "2d9f0fbf5014cb578cbfcc5b8826337df6fa9fe76bf712013dca252da136b992";
static const char RESP_HEX[] = "cdb6e9d2c1f5e8b7a6f3e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9";
static const char MODEL_HEX[] = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d";

/* The payload object as veil-node fills it. */
static json_t *payload_obj(const struct signer *s)
{
	json_t *p = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:I, s:I, s:I}, s:I, s:s, s:s}",
			      "version", "veil-receipt/1", "id", "chatcmpl-0123456789abcdef",
			      "model", "stories260K", "model_sha256", MODEL_HEX,
			      "request_sha256", REQ_HEX, "response_sha256", RESP_HEX, "usage",
			      "prompt_tokens", (json_int_t)16, "completion_tokens", (json_int_t)8,
			      "total_tokens", (json_int_t)24, "created", (json_int_t)1700000000,
			      "signing_address", s->addr, "ed25519_public_key", s->ed_hex);

	assert_non_null(p);
	return p;
}

/* The receipt object text: payload signed by `s` (text signatures too when
 * text_sigs). */
static char *make_receipt_from(const struct signer *s, json_t *payload, bool text_sigs)
{
	char ed[129], ec[133], ted[129], tec[133], text[400];
	char *ptxt = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS), *out;
	json_t *r;

	assert_non_null(ptxt);
	sign_pair(s, ptxt, ed, ec);
	r = json_pack("{s:s, s:s, s:s}", "payload", ptxt, "signature_ed25519", ed,
		      "signature_ecdsa", ec);
	assert_non_null(r);
	if (text_sigs) {
		snprintf(text, sizeof(text), "%s:%s:%s",
			 json_string_value(json_object_get(payload, "model")),
			 json_string_value(json_object_get(payload, "request_sha256")),
			 json_string_value(json_object_get(payload, "response_sha256")));
		sign_pair(s, text, ted, tec);
		json_object_set_new(r, "text_signature_ed25519", json_string(ted));
		json_object_set_new(r, "text_signature_ecdsa", json_string(tec));
	}
	out = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
	assert_non_null(out);
	json_decref(r);
	free(ptxt);
	return out;
}

static char *make_receipt(const struct signer *s, bool text_sigs)
{
	json_t *p = payload_obj(s);
	char *out = make_receipt_from(s, p, text_sigs);

	json_decref(p);
	return out;
}

/* parse + verify of a receipt text against keys; returns verify's code
 * (parse must succeed). */
static int parse_verify(const char *txt, const struct veil_keyset *ks)
{
	struct veil_receipt r;
	int rc;

	assert_int_equal(veil_receipt_parse((const uint8_t *)txt, strlen(txt), &r), 0);
	rc = veil_receipt_verify(&r, ks);
	veil_receipt_free(&r);
	return rc;
}

static int parse_only(const char *txt)
{
	struct veil_receipt r;
	int rc = veil_receipt_parse((const uint8_t *)txt, strlen(txt), &r);

	if (rc == 0)
		veil_receipt_free(&r);
	return rc;
}

/* ---- good receipts -------------------------------------------------------- */

static void test_receipt_without_text_signatures_parses_and_verifies(void **state)
{
	struct signer s;
	struct veil_receipt r;
	char *txt, text[VEIL_RECEIPT_TEXT_MAX], want[400];
	uint8_t req[32];
	size_t got;

	(void)state;
	signer_new(&s);
	txt = make_receipt(&s, false);
	assert_int_equal(veil_receipt_parse((const uint8_t *)txt, strlen(txt), &r), 0);
	assert_string_equal(r.id, "chatcmpl-0123456789abcdef");
	assert_string_equal(r.model, "stories260K");
	assert_true(r.has_model_sha256);
	assert_false(r.has_text_sigs);
	assert_int_equal(r.prompt_tokens, 16);
	assert_int_equal(r.completion_tokens, 8);
	assert_int_equal(r.total_tokens, 24);
	assert_int_equal(r.created, 1700000000);
	assert_int_equal(veil_hex_decode(REQ_HEX, 64, req, 32, &got), 0);
	assert_memory_equal(r.request_sha256, req, 32);
	assert_memory_equal(r.eth_address, s.ks.eth_address, 20);
	assert_memory_equal(r.ed25519_public_key, s.ks.ed25519, 32);
	assert_string_equal(r.json, txt);
	assert_int_equal(veil_receipt_verify(&r, &s.ks), 0);
	/* NEAR AI's text */
	snprintf(want, sizeof(want), "stories260K:%s:%s", REQ_HEX, RESP_HEX);
	assert_int_equal(veil_receipt_text(&r, text, sizeof(text)), (int)strlen(want));
	assert_string_equal(text, want);
	assert_int_equal(veil_receipt_text(&r, text, 100), VEIL_EINVAL);
	veil_receipt_free(&r);
	assert_null(r.json);
	free(txt);
	signer_free(&s);
}

static void test_receipt_with_text_signatures_verifies_both(void **state)
{
	struct signer s;
	struct veil_receipt r;
	char *txt;

	(void)state;
	signer_new(&s);
	txt = make_receipt(&s, true);
	assert_int_equal(veil_receipt_parse((const uint8_t *)txt, strlen(txt), &r), 0);
	assert_true(r.has_text_sigs);
	assert_int_equal(veil_receipt_verify(&r, &s.ks), 0);
	veil_receipt_free(&r);
	free(txt);
	signer_free(&s);
}

static void test_receipt_with_empty_model_sha256_is_upstream_mode(void **state)
{
	struct signer s;
	struct veil_receipt r;
	json_t *p;
	char *txt;

	(void)state;
	signer_new(&s);
	p = payload_obj(&s);
	json_object_set_new(p, "model_sha256", json_string(""));
	txt = make_receipt_from(&s, p, true);
	assert_int_equal(veil_receipt_parse((const uint8_t *)txt, strlen(txt), &r), 0);
	assert_false(r.has_model_sha256);
	assert_int_equal(veil_receipt_verify(&r, &s.ks), 0);
	veil_receipt_free(&r);
	free(txt);
	json_decref(p);
	signer_free(&s);
}

/* ---- tampering --------------------------------------------------------------- */

/* Every payload field changed after signing: the signatures no longer
 * cover it (or, for the key fields, they no longer name the attested
 * keys). */
static void test_every_tampered_payload_field_fails(void **state)
{
	static const struct {
		const char *key, *sub;
		json_int_t ival;
		const char *sval;
	} edits[] = {
		{"id", NULL, 0, "chatcmpl-other"},
		{"model", NULL, 0, "other-model"},
		{"model_sha256", NULL, 0, "370cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"},
		{"model_sha256", NULL, 0, ""},
		{"request_sha256", NULL, 0, "3d9f0fbf5014cb578cbfcc5b8826337df6fa9fe76bf712013dca252da136b992"},
		{"response_sha256", NULL, 0, "ddb6e9d2c1f5e8b7a6f3e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9"},
		{"usage", "prompt_tokens", 15, NULL},
		{"usage", "completion_tokens", 7, NULL},
		{"created", NULL, 1700000001, NULL},
	};
	struct signer s;
	char *good;
	json_t *orig;

	(void)state;
	signer_new(&s);
	good = make_receipt(&s, true);
	orig = json_loads(good, 0, NULL);
	assert_non_null(orig);
	for (size_t i = 0; i < VEIL_ARRAY_LEN(edits); i++) {
		json_t *r = json_deep_copy(orig);
		json_t *p = json_loads(json_string_value(json_object_get(r, "payload")), 0, NULL);
		char *ptxt, *txt;

		assert_non_null(p);
		if (edits[i].sub) {
			json_t *u = json_object_get(p, edits[i].key);
			json_int_t t;

			json_object_set_new(u, edits[i].sub, json_integer(edits[i].ival));
			t = json_integer_value(json_object_get(u, "prompt_tokens")) +
			    json_integer_value(json_object_get(u, "completion_tokens"));
			json_object_set_new(u, "total_tokens", json_integer(t));
		} else if (edits[i].sval) {
			json_object_set_new(p, edits[i].key, json_string(edits[i].sval));
		} else {
			json_object_set_new(p, edits[i].key, json_integer(edits[i].ival));
		}
		ptxt = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
		json_object_set_new(r, "payload", json_string(ptxt));
		txt = json_dumps(r, JSON_COMPACT);
		assert_int_equal(parse_verify(txt, &s.ks), VEIL_EBADMSG);
		assert_non_null(strstr(veil_err_detail(), "payload"));
		free(txt);
		free(ptxt);
		json_decref(p);
		json_decref(r);
	}
	/* the same payload re-serialized with spaces: the bytes signed are
	 * what counts */
	{
		json_t *r = json_deep_copy(orig);
		json_t *p = json_loads(json_string_value(json_object_get(r, "payload")), 0, NULL);
		char *ptxt = json_dumps(p, JSON_SORT_KEYS), *txt;

		assert_non_null(ptxt);
		json_object_set_new(r, "payload", json_string(ptxt));
		txt = json_dumps(r, JSON_COMPACT);
		assert_int_equal(parse_verify(txt, &s.ks), VEIL_EBADMSG);
		free(txt);
		free(ptxt);
		json_decref(p);
		json_decref(r);
	}
	json_decref(orig);
	free(good);
	signer_free(&s);
}

/* Flips one hex digit of a signature field. */
static char *flip_field(const char *good, const char *key, size_t at)
{
	json_t *r = json_loads(good, 0, NULL);
	char *v, *txt;

	assert_non_null(r);
	v = strdup(json_string_value(json_object_get(r, key)));
	assert_non_null(v);
	v[at] = v[at] == '0' ? '1' : '0';
	json_object_set_new(r, key, json_string(v));
	txt = json_dumps(r, JSON_COMPACT);
	free(v);
	json_decref(r);
	return txt;
}

static void test_every_tampered_signature_fails(void **state)
{
	static const struct {
		const char *key;
		size_t at;
	} flips[] = {
		{"signature_ed25519", 0}, {"signature_ed25519", 127},
		{"signature_ecdsa", 2}, {"signature_ecdsa", 100},
		{"text_signature_ed25519", 5}, {"text_signature_ed25519", 126},
		{"text_signature_ecdsa", 3}, {"text_signature_ecdsa", 64},
	};
	struct signer s;
	char *good;

	(void)state;
	signer_new(&s);
	good = make_receipt(&s, true);
	assert_int_equal(parse_verify(good, &s.ks), 0);
	for (size_t i = 0; i < VEIL_ARRAY_LEN(flips); i++) {
		char *bad = flip_field(good, flips[i].key, flips[i].at);
		struct veil_receipt r;
		int rc = veil_receipt_parse((const uint8_t *)bad, strlen(bad), &r);

		/* a flipped v byte can make the ECDSA signature unparseable */
		if (rc == 0) {
			rc = veil_receipt_verify(&r, &s.ks);
			veil_receipt_free(&r);
		}
		assert_true(rc == VEIL_EBADMSG || rc == VEIL_EFORMAT);
		free(bad);
	}
	/* text signatures swapped with the payload's */
	{
		json_t *r = json_loads(good, 0, NULL);
		json_t *a = json_incref(json_object_get(r, "signature_ed25519"));
		char *txt;

		json_object_set(r, "signature_ed25519", json_object_get(r, "text_signature_ed25519"));
		json_object_set_new(r, "text_signature_ed25519", a);
		txt = json_dumps(r, JSON_COMPACT);
		assert_int_equal(parse_verify(txt, &s.ks), VEIL_EBADMSG);
		free(txt);
		json_decref(r);
	}
	free(good);
	signer_free(&s);
}

static void test_receipt_by_other_keys_fails_against_attested_keys(void **state)
{
	struct signer s, other;
	struct veil_keyset mixed;
	char *txt;

	(void)state;
	signer_new(&s);
	signer_new(&other);
	/* signed by `other`, which names its own keys: verifies against its
	 * keys, not against the attested ones */
	txt = make_receipt(&other, true);
	assert_int_equal(parse_verify(txt, &other.ks), 0);
	assert_int_equal(parse_verify(txt, &s.ks), VEIL_EBADMSG);
	free(txt);
	/* a payload naming the attested keys but signed by other keys */
	{
		json_t *p = payload_obj(&s);

		txt = make_receipt_from(&other, p, false);
		assert_int_equal(parse_verify(txt, &s.ks), VEIL_EBADMSG);
		assert_non_null(strstr(veil_err_detail(), "signature"));
		free(txt);
		json_decref(p);
	}
	/* attested Ed25519 key right, Ethereum address wrong (and vice versa) */
	txt = make_receipt(&s, true);
	mixed = s.ks;
	memcpy(mixed.eth_address, other.ks.eth_address, 20);
	assert_int_equal(parse_verify(txt, &mixed), VEIL_EBADMSG);
	assert_non_null(strstr(veil_err_detail(), "signing_address"));
	mixed = s.ks;
	memcpy(mixed.ed25519, other.ks.ed25519, 32);
	assert_int_equal(parse_verify(txt, &mixed), VEIL_EBADMSG);
	assert_non_null(strstr(veil_err_detail(), "ed25519_public_key"));
	/* a key set without signing keys cannot vouch for anything */
	memset(&mixed, 0, sizeof(mixed));
	assert_int_equal(parse_verify(txt, &mixed), VEIL_EINVAL);
	free(txt);
	signer_free(&s);
	signer_free(&other);
}

/* ---- the Ed25519-only check (veil-proxy's hot path) ----------------------------- */

static int parse_verify_ed(const char *txt, const struct veil_keyset *ks)
{
	struct veil_receipt r;
	int rc;

	assert_int_equal(veil_receipt_parse((const uint8_t *)txt, strlen(txt), &r), 0);
	rc = veil_receipt_verify_ed25519(&r, ks);
	veil_receipt_free(&r);
	return rc;
}

/* Checks exactly the Ed25519 half: every Ed25519 signature, payload field
 * and key binding still counts; the ECDSA signatures are not looked at
 * (the full check, veil_receipt_verify, still catches them). */
static void test_ed25519_only_check(void **state)
{
	struct signer s, other;
	struct veil_keyset mixed;
	char *good, *bad, *txt;

	(void)state;
	signer_new(&s);
	signer_new(&other);
	good = make_receipt(&s, true);
	assert_int_equal(parse_verify_ed(good, &s.ks), 0);
	txt = make_receipt(&s, false);
	assert_int_equal(parse_verify_ed(txt, &s.ks), 0);
	free(txt);
	/* a broken ECDSA signature: not this check's business, the full one's */
	bad = flip_field(good, "signature_ecdsa", 10);
	assert_int_equal(parse_verify_ed(bad, &s.ks), 0);
	assert_int_equal(parse_verify(bad, &s.ks), VEIL_EBADMSG);
	free(bad);
	bad = flip_field(good, "text_signature_ecdsa", 20);
	assert_int_equal(parse_verify_ed(bad, &s.ks), 0);
	assert_int_equal(parse_verify(bad, &s.ks), VEIL_EBADMSG);
	free(bad);
	/* a broken Ed25519 signature, payload or text */
	bad = flip_field(good, "signature_ed25519", 7);
	assert_int_equal(parse_verify_ed(bad, &s.ks), VEIL_EBADMSG);
	assert_non_null(strstr(veil_err_detail(), "payload Ed25519"));
	free(bad);
	bad = flip_field(good, "text_signature_ed25519", 100);
	assert_int_equal(parse_verify_ed(bad, &s.ks), VEIL_EBADMSG);
	assert_non_null(strstr(veil_err_detail(), "text Ed25519"));
	free(bad);
	/* a payload field changed after signing */
	{
		json_t *r = json_loads(good, 0, NULL);
		json_t *p = json_loads(json_string_value(json_object_get(r, "payload")), 0, NULL);
		char *ptxt;

		assert_non_null(p);
		json_object_set_new(p, "response_sha256", json_string(REQ_HEX));
		ptxt = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
		json_object_set_new(r, "payload", json_string(ptxt));
		txt = json_dumps(r, JSON_COMPACT);
		assert_int_equal(parse_verify_ed(txt, &s.ks), VEIL_EBADMSG);
		free(txt);
		free(ptxt);
		json_decref(p);
		json_decref(r);
	}
	/* other keys: signed by them and naming them, or naming the attested
	 * keys but signed by others */
	txt = make_receipt(&other, true);
	assert_int_equal(parse_verify_ed(txt, &other.ks), 0);
	assert_int_equal(parse_verify_ed(txt, &s.ks), VEIL_EBADMSG);
	free(txt);
	{
		json_t *p = payload_obj(&s);

		txt = make_receipt_from(&other, p, true);
		assert_int_equal(parse_verify_ed(txt, &s.ks), VEIL_EBADMSG);
		assert_non_null(strstr(veil_err_detail(), "Ed25519 signature"));
		free(txt);
		json_decref(p);
	}
	/* the payload's signing_address must still be the attested one (free
	 * to check, and signed by the Ed25519 signature) */
	mixed = s.ks;
	memcpy(mixed.eth_address, other.ks.eth_address, 20);
	assert_int_equal(parse_verify_ed(good, &mixed), VEIL_EBADMSG);
	assert_non_null(strstr(veil_err_detail(), "signing_address"));
	mixed = s.ks;
	memcpy(mixed.ed25519, other.ks.ed25519, 32);
	assert_int_equal(parse_verify_ed(good, &mixed), VEIL_EBADMSG);
	assert_non_null(strstr(veil_err_detail(), "ed25519_public_key"));
	/* a key set with the Ed25519 key alone is enough; none is not */
	memset(&mixed, 0, sizeof(mixed));
	memcpy(mixed.ed25519, s.ks.ed25519, 32);
	mixed.present = VEIL_KEYSET_HAS(VEIL_KEY_ED25519);
	assert_int_equal(parse_verify_ed(good, &mixed), 0);
	assert_int_equal(parse_verify(good, &mixed), VEIL_EINVAL);
	memset(&mixed, 0, sizeof(mixed));
	assert_int_equal(parse_verify_ed(good, &mixed), VEIL_EINVAL);
	assert_int_equal(veil_receipt_verify_ed25519(NULL, &s.ks), VEIL_EINVAL);
	free(good);
	signer_free(&s);
	signer_free(&other);
}

/* ---- malformed ----------------------------------------------------------------- */

/* good receipt with one outer change */
static char *outer_edit(const char *good, const char *key, json_t *val)
{
	json_t *r = json_loads(good, 0, NULL);
	char *txt;

	if (val)
		json_object_set_new(r, key, val);
	else
		json_object_del(r, key);
	txt = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	return txt;
}

/* good receipt with one payload change, re-signed (so only the parser can
 * object) */
static int payload_edit_rc(const struct signer *s, const char *key, json_t *val)
{
	json_t *p = payload_obj(s);
	char *txt;
	int rc;

	if (val)
		json_object_set_new(p, key, val);
	else
		json_object_del(p, key);
	txt = make_receipt_from(s, p, false);
	rc = parse_only(txt);
	free(txt);
	json_decref(p);
	return rc;
}

static void test_parser_refuses_malformed_receipts(void **state)
{
	struct signer s;
	char *good, *t;
	struct veil_receipt r;

	(void)state;
	signer_new(&s);
	good = make_receipt(&s, true);
	assert_int_equal(parse_only(good), 0);
	/* outer object */
	assert_int_equal(parse_only("[]"), VEIL_EFORMAT);
	assert_int_equal(parse_only("{\"payload\":"), VEIL_EFORMAT);
	assert_int_equal(parse_only(""), VEIL_EFORMAT);
	t = outer_edit(good, "extra", json_true());
	assert_int_equal(parse_only(t), VEIL_EFORMAT);
	assert_non_null(strstr(veil_err_detail(), "unknown key"));
	free(t);
	t = outer_edit(good, "text_signature_ecdsa", NULL);
	assert_int_equal(parse_only(t), VEIL_EFORMAT);
	assert_non_null(strstr(veil_err_detail(), "only one"));
	free(t);
	t = outer_edit(good, "signature_ed25519", json_string("abcd"));
	assert_int_equal(parse_only(t), VEIL_EFORMAT);
	assert_non_null(strstr(veil_err_detail(), "signature_ed25519"));
	free(t);
	t = outer_edit(good, "signature_ecdsa", NULL);
	assert_int_equal(parse_only(t), VEIL_EFORMAT);
	free(t);
	t = outer_edit(good, "payload", json_integer(3));
	assert_int_equal(parse_only(t), VEIL_EFORMAT);
	free(t);
	t = outer_edit(good, "payload", json_stringn("{\"a\":1}\0x", 9));
	assert_int_equal(parse_only(t), VEIL_EFORMAT); /* jansson refuses \u0000 */
	free(t);
	/* duplicate keys */
	assert_int_equal(parse_only("{\"payload\":\"{}\",\"payload\":\"{}\"}"), VEIL_EFORMAT);
	/* payload fields */
	assert_int_equal(payload_edit_rc(&s, "version", json_string("veil-receipt/2")),
			 VEIL_ENOTSUP);
	assert_int_equal(payload_edit_rc(&s, "id", NULL), VEIL_EFORMAT);
	assert_int_equal(payload_edit_rc(&s, "id", json_string("has space")), VEIL_EFORMAT);
	assert_int_equal(payload_edit_rc(&s, "id", json_string("")), VEIL_EFORMAT);
	{
		char longname[200];

		memset(longname, 'a', sizeof(longname) - 1);
		longname[sizeof(longname) - 1] = 0;
		assert_int_equal(payload_edit_rc(&s, "model", json_string(longname)),
				 VEIL_EFORMAT);
	}
	assert_int_equal(payload_edit_rc(&s, "model", json_string("a\nb")), VEIL_EFORMAT);
	assert_int_equal(payload_edit_rc(&s, "model_sha256", json_string("abc")), VEIL_EFORMAT);
	assert_int_equal(payload_edit_rc(&s, "request_sha256", NULL), VEIL_EFORMAT);
	assert_int_equal(payload_edit_rc(&s, "response_sha256", json_integer(1)), VEIL_EFORMAT);
	assert_int_equal(payload_edit_rc(&s, "created", json_string("now")), VEIL_EFORMAT);
	assert_int_equal(payload_edit_rc(&s, "created", json_integer(-1)), VEIL_EFORMAT);
	assert_int_equal(payload_edit_rc(&s, "signing_address", json_string("0x1234")),
			 VEIL_EFORMAT);
	assert_int_equal(payload_edit_rc(&s, "ed25519_public_key", json_string("00")),
			 VEIL_EFORMAT);
	assert_int_equal(payload_edit_rc(&s, "usage", json_pack("{s:i, s:i, s:i}",
								"prompt_tokens", 1,
								"completion_tokens", 2,
								"total_tokens", 4)),
			 VEIL_EFORMAT);
	assert_non_null(strstr(veil_err_detail(), "total_tokens"));
	assert_int_equal(payload_edit_rc(&s, "usage", json_pack("{s:i, s:i, s:i, s:i}",
								"prompt_tokens", 1,
								"completion_tokens", 2,
								"total_tokens", 3, "cached", 0)),
			 VEIL_EFORMAT);
	assert_int_equal(payload_edit_rc(&s, "extra", json_true()), VEIL_EFORMAT);
	assert_non_null(strstr(veil_err_detail(), "unknown key"));
	/* size cap */
	{
		size_t n = VEIL_RECEIPT_MAX + 1;
		uint8_t *big = malloc(n);

		assert_non_null(big);
		memset(big, ' ', n);
		assert_int_equal(veil_receipt_parse(big, n, &r), VEIL_ERANGE);
		free(big);
	}
	free(good);
	signer_free(&s);
}

static void test_receipts_report_sha256_is_of_the_canonical_form(void **state)
{
	json_t *a = json_loads("{\"b\": 1, \"a\": [\"x\", {\"d\": \"\\n\", \"c\": true}]}", 0, NULL);
	json_t *b = json_loads("{\"a\":[\"x\",{\"c\":true,\"d\":\"\\n\"}],\"b\":1}", 0, NULL);
	const char *canon = "{\"a\":[\"x\",{\"c\":true,\"d\":\"\\n\"}],\"b\":1}";
	uint8_t ha[32], hb[32], want[32];

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(veil_receipts_report_sha256(a, ha), 0);
	assert_int_equal(veil_receipts_report_sha256(b, hb), 0);
	SHA256((const uint8_t *)canon, strlen(canon), want);
	assert_memory_equal(ha, want, 32);
	assert_memory_equal(hb, want, 32);
	json_object_set_new(b, "b", json_integer(2));
	assert_int_equal(veil_receipts_report_sha256(b, hb), 0);
	assert_memory_not_equal(ha, hb, 32);
	assert_int_equal(veil_receipts_report_sha256(NULL, ha), VEIL_EINVAL);
	json_decref(a);
	json_decref(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_receipt_without_text_signatures_parses_and_verifies),
		cmocka_unit_test(test_receipt_with_text_signatures_verifies_both),
		cmocka_unit_test(test_receipt_with_empty_model_sha256_is_upstream_mode),
		cmocka_unit_test(test_every_tampered_payload_field_fails),
		cmocka_unit_test(test_every_tampered_signature_fails),
		cmocka_unit_test(test_receipt_by_other_keys_fails_against_attested_keys),
		cmocka_unit_test(test_ed25519_only_check),
		cmocka_unit_test(test_parser_refuses_malformed_receipts),
		cmocka_unit_test(test_receipts_report_sha256_is_of_the_canonical_form),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
