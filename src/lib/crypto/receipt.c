/* veil receipt: parsing and verification of veil-receipt/1 objects
 * (include/veil/receipt.h, docs/protocol.md "Receipts"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "veil/base.h"
#include "veil/keyset.h"
#include "veil/receipt.h"
#include "veil/sign.h"

#define NAME_MAX_LEN 128 /* id and model: char[129] in the struct */

/* Exactly `want` bytes as hex (an optional "0x" only where allow_0x). */
static int hex_field(json_t *o, const char *where, const char *key, bool allow_0x,
		     uint8_t *out, size_t want)
{
	json_t *s = json_object_get(o, key);
	const char *p;
	size_t n, got;

	if (!json_is_string(s))
		return veil_errf(VEIL_EFORMAT, "%s: \"%s\" missing or not a string", where, key);
	p = json_string_value(s);
	n = json_string_length(s);
	if (allow_0x && n >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		p += 2;
		n -= 2;
	}
	if (n != 2 * want || veil_hex_decode(p, n, out, want, &got) < 0 || got != want)
		return veil_errf(VEIL_EFORMAT, "%s: \"%s\" is not %zu bytes of hex", where, key,
				 want);
	return 0;
}

/* A name copied into out[NAME_MAX_LEN + 1]: 1..128 bytes, no control
 * characters (it ends up in NEAR AI's "model:req:resp" text and in logs of
 * ids).  `id` additionally must be printable ASCII without spaces. */
static int name_field(json_t *o, const char *key, bool id, char *out)
{
	json_t *s = json_object_get(o, key);
	const char *p;
	size_t n;

	if (!json_is_string(s))
		return veil_errf(VEIL_EFORMAT, "receipt payload: \"%s\" missing or not a string",
				 key);
	p = json_string_value(s);
	n = json_string_length(s);
	if (n == 0 || n > NAME_MAX_LEN)
		return veil_errf(VEIL_EFORMAT, "receipt payload: \"%s\" must be 1..%d bytes", key,
				 NAME_MAX_LEN);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c < 0x20 || c == 0x7f || (id && (c == ' ' || c > 0x7e)))
			return veil_errf(VEIL_EFORMAT, "receipt payload: \"%s\" has a character "
					 "that is not allowed (byte %zu)", key, i);
	}
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

static int int_field(json_t *o, const char *where, const char *key, int64_t *out)
{
	json_t *x = json_object_get(o, key);

	if (!json_is_integer(x) || json_integer_value(x) < 0)
		return veil_errf(VEIL_EFORMAT, "%s: \"%s\" missing or not a non-negative integer",
				 where, key);
	*out = (int64_t)json_integer_value(x);
	return 0;
}

/* Refuses keys outside `allowed` (NULL-terminated): a field a verifier does
 * not know is a field it cannot vouch for. */
static int only_keys(json_t *o, const char *where, const char *const *allowed)
{
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v) {
		size_t i = 0;

		while (allowed[i] && strcmp(allowed[i], k))
			i++;
		if (!allowed[i])
			return veil_errf(VEIL_EFORMAT, "%s: unknown key \"%.64s\"", where, k);
	}
	return 0;
}

static int parse_payload(const char *text, size_t n, struct veil_receipt *r)
{
	static const char *const keys[] = {"version", "id", "model", "model_sha256",
					   "request_sha256", "response_sha256", "usage",
					   "created", "signing_address", "ed25519_public_key",
					   NULL};
	static const char *const ukeys[] = {"prompt_tokens", "completion_tokens",
					    "total_tokens", NULL};
	const char *W = "receipt payload";
	json_error_t e;
	json_t *p, *x, *u;
	int rc;

	p = json_loadb(text, n, JSON_REJECT_DUPLICATES, &e);
	if (!p)
		return veil_errf(VEIL_EFORMAT, "receipt payload: JSON error at column %d: %s",
				 e.column, e.text);
	if (!json_is_object(p)) {
		rc = veil_errf(VEIL_EFORMAT, "receipt payload: not a JSON object");
		goto out;
	}
	x = json_object_get(p, "version");
	if (!json_is_string(x)) {
		rc = veil_errf(VEIL_EFORMAT, "receipt payload: \"version\" missing");
		goto out;
	}
	if (strcmp(json_string_value(x), VEIL_RECEIPT_VERSION)) {
		rc = veil_errf(VEIL_ENOTSUP, "receipt payload: version \"%.40s\" (only %s)",
			       json_string_value(x), VEIL_RECEIPT_VERSION);
		goto out;
	}
	if ((rc = only_keys(p, W, keys)) < 0 || (rc = name_field(p, "id", true, r->id)) < 0 ||
	    (rc = name_field(p, "model", false, r->model)) < 0)
		goto out;
	x = json_object_get(p, "model_sha256");
	if (json_is_string(x) && json_string_length(x) == 0) {
		r->has_model_sha256 = false; /* upstream mode without a model file */
	} else {
		if ((rc = hex_field(p, W, "model_sha256", false, r->model_sha256, 32)) < 0)
			goto out;
		r->has_model_sha256 = true;
	}
	if ((rc = hex_field(p, W, "request_sha256", false, r->request_sha256, 32)) < 0 ||
	    (rc = hex_field(p, W, "response_sha256", false, r->response_sha256, 32)) < 0 ||
	    (rc = hex_field(p, W, "ed25519_public_key", false, r->ed25519_public_key, 32)) < 0 ||
	    (rc = int_field(p, W, "created", &r->created)) < 0)
		goto out;
	x = json_object_get(p, "signing_address");
	if (!json_is_string(x) || veil_eth_address_parse(json_string_value(x), r->eth_address) < 0) {
		rc = veil_errf(VEIL_EFORMAT, "receipt payload: \"signing_address\" is not an "
			       "Ethereum address");
		goto out;
	}
	u = json_object_get(p, "usage");
	if (!json_is_object(u)) {
		rc = veil_errf(VEIL_EFORMAT, "receipt payload: \"usage\" missing or not an object");
		goto out;
	}
	if ((rc = only_keys(u, "receipt usage", ukeys)) < 0 ||
	    (rc = int_field(u, "receipt usage", "prompt_tokens", &r->prompt_tokens)) < 0 ||
	    (rc = int_field(u, "receipt usage", "completion_tokens", &r->completion_tokens)) < 0 ||
	    (rc = int_field(u, "receipt usage", "total_tokens", &r->total_tokens)) < 0)
		goto out;
	/* the sum cannot overflow: json integers are int64 and both are >= 0,
	 * but check rather than rely on the range */
	if (r->prompt_tokens > INT64_MAX - r->completion_tokens ||
	    r->total_tokens != r->prompt_tokens + r->completion_tokens) {
		rc = veil_errf(VEIL_EFORMAT, "receipt usage: total_tokens is not prompt_tokens + "
			       "completion_tokens");
		goto out;
	}
	rc = 0;
out:
	json_decref(p);
	return rc;
}

int veil_receipt_parse(const uint8_t *json, size_t n, struct veil_receipt *out)
{
	static const char *const keys[] = {"payload", "signature_ed25519", "signature_ecdsa",
					   "text_signature_ed25519", "text_signature_ecdsa",
					   NULL};
	const char *W = "receipt";
	struct veil_receipt r;
	json_error_t e;
	json_t *o = NULL, *pl, *t1, *t2;
	int rc;

	if (!out || (!json && n))
		return veil_errf(VEIL_EINVAL, "receipt: bad arguments");
	memset(&r, 0, sizeof(r));
	if (n > VEIL_RECEIPT_MAX)
		return veil_errf(VEIL_ERANGE, "receipt: %zu bytes, more than %u", n,
				 VEIL_RECEIPT_MAX);
	o = json_loadb((const char *)json, n, JSON_REJECT_DUPLICATES, &e);
	if (!o)
		return veil_errf(VEIL_EFORMAT, "receipt: JSON error at column %d: %s", e.column,
				 e.text);
	if (!json_is_object(o)) {
		rc = veil_errf(VEIL_EFORMAT, "receipt: not a JSON object");
		goto out;
	}
	if ((rc = only_keys(o, W, keys)) < 0)
		goto out;
	pl = json_object_get(o, "payload");
	if (!json_is_string(pl)) {
		rc = veil_errf(VEIL_EFORMAT, "receipt: \"payload\" missing or not a string");
		goto out;
	}
	/* signed bytes are the string as a C string: an embedded NUL would make
	 * what is signed and what is parsed differ */
	if (strlen(json_string_value(pl)) != json_string_length(pl)) {
		rc = veil_errf(VEIL_EFORMAT, "receipt: \"payload\" holds a NUL character");
		goto out;
	}
	if ((rc = hex_field(o, W, "signature_ed25519", false, r.sig_ed25519, 64)) < 0 ||
	    (rc = hex_field(o, W, "signature_ecdsa", true, r.sig_ecdsa, 65)) < 0)
		goto out;
	t1 = json_object_get(o, "text_signature_ed25519");
	t2 = json_object_get(o, "text_signature_ecdsa");
	if (!t1 != !t2) {
		rc = veil_errf(VEIL_EFORMAT, "receipt: only one of text_signature_ed25519 and "
			       "text_signature_ecdsa");
		goto out;
	}
	if (t1) {
		if ((rc = hex_field(o, W, "text_signature_ed25519", false, r.text_sig_ed25519,
				    64)) < 0 ||
		    (rc = hex_field(o, W, "text_signature_ecdsa", true, r.text_sig_ecdsa, 65)) < 0)
			goto out;
		r.has_text_sigs = true;
	}
	if ((rc = parse_payload(json_string_value(pl), json_string_length(pl), &r)) < 0)
		goto out;
	rc = VEIL_ENOMEM;
	r.payload = strdup(json_string_value(pl));
	r.json = malloc(n + 1);
	if (!r.payload || !r.json)
		goto out;
	if (n)
		memcpy(r.json, json, n);
	r.json[n] = '\0';
	*out = r;
	memset(&r, 0, sizeof(r));
	rc = 0;
out:
	veil_receipt_free(&r);
	json_decref(o);
	return rc;
}

int veil_receipt_text(const struct veil_receipt *r, char *out, size_t cap)
{
	char rq[65], rs[65];
	int n;

	if (!r || !out || cap < VEIL_RECEIPT_TEXT_MAX)
		return veil_errf(VEIL_EINVAL, "receipt text: bad arguments");
	veil_hex_encode(r->request_sha256, 32, rq, sizeof(rq));
	veil_hex_encode(r->response_sha256, 32, rs, sizeof(rs));
	n = snprintf(out, cap, "%s:%s:%s", r->model, rq, rs);
	if (n < 0 || (size_t)n >= cap)
		return veil_errf(VEIL_ERANGE, "receipt text: longer than %zu bytes", cap);
	return n;
}

/* Ed25519 under the attested key and, unless ed_only, EIP-191 by the
 * attested address. */
static int check_pair(const struct veil_keyset *keys, const char *what, const char *msg,
		      size_t n, const uint8_t ed[64], const uint8_t ec[65], bool ed_only)
{
	if (veil_ed25519_verify(keys->ed25519, msg, n, ed) < 0)
		return veil_errf(VEIL_EBADMSG, "receipt: %s Ed25519 signature does not verify "
				 "under the attested key", what);
	if (!ed_only && veil_eip191_verify(msg, n, ec, keys->eth_address) < 0)
		return veil_errf(VEIL_EBADMSG, "receipt: %s ECDSA (EIP-191) signature does not "
				 "recover the attested address", what);
	return 0;
}

/* Both verifiers: the payload must name the attested keys (the address
 * only where the key set has one, for ed_only), then the signatures. */
static int verify(const struct veil_receipt *r, const struct veil_keyset *keys, bool ed_only)
{
	char text[VEIL_RECEIPT_TEXT_MAX];
	bool has_eth;
	int rc, n;

	if (!r || !r->payload || !keys)
		return veil_errf(VEIL_EINVAL, "receipt verify: bad arguments");
	has_eth = keys->present & VEIL_KEYSET_HAS(VEIL_KEY_ETH_ADDRESS);
	if (!(keys->present & VEIL_KEYSET_HAS(VEIL_KEY_ED25519)) || (!ed_only && !has_eth))
		return veil_errf(VEIL_EINVAL, "receipt verify: the attested key set has no "
				 "Ed25519 key%s", ed_only ? "" : " or Ethereum address");
	if (memcmp(r->ed25519_public_key, keys->ed25519, 32))
		return veil_errf(VEIL_EBADMSG, "receipt: ed25519_public_key is not the attested "
				 "Ed25519 key");
	if (has_eth && memcmp(r->eth_address, keys->eth_address, 20))
		return veil_errf(VEIL_EBADMSG, "receipt: signing_address is not the attested "
				 "Ethereum address");
	if ((rc = check_pair(keys, "payload", r->payload, strlen(r->payload), r->sig_ed25519,
			     r->sig_ecdsa, ed_only)) < 0)
		return rc;
	if (!r->has_text_sigs)
		return 0;
	if ((n = veil_receipt_text(r, text, sizeof(text))) < 0)
		return n;
	return check_pair(keys, "text", text, (size_t)n, r->text_sig_ed25519, r->text_sig_ecdsa,
			  ed_only);
}

int veil_receipt_verify(const struct veil_receipt *r, const struct veil_keyset *keys)
{
	return verify(r, keys, false);
}

int veil_receipt_verify_ed25519(const struct veil_receipt *r, const struct veil_keyset *keys)
{
	return verify(r, keys, true);
}

void veil_receipt_free(struct veil_receipt *r)
{
	if (!r)
		return;
	free(r->json);
	free(r->payload);
	memset(r, 0, sizeof(*r));
}

int veil_receipts_report_sha256(const json_t *report, uint8_t out[32])
{
	char *txt;

	if (!report || !out)
		return veil_errf(VEIL_EINVAL, "report sha256: bad arguments");
	txt = json_dumps(report, JSON_COMPACT | JSON_SORT_KEYS);
	if (!txt)
		return VEIL_ENOMEM;
	SHA256((const uint8_t *)txt, strlen(txt), out);
	free(txt);
	return 0;
}
