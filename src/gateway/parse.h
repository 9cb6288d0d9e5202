/* veil-gateway: the parsers of outside input that need no gateway state —
 * the --nodes file, admin API bodies, query times, the X-Veil-Receipt
 * header, and the raw SSE framing of a relayed stream (with receipt
 * extraction).  Pure functions over (pointer, length): the unit tests
 * (tests/unit/test_gateway_parse.c) and the fuzz harnesses
 * (tests/fuzz/fuzz_gateway_*.c) compile this file directly.
 *
 * Every function returns 0 or a negative VEIL_E* code with a detail
 * (veil_errf) naming the field; out-params are written only on success. */
#ifndef VEIL_GATEWAY_PARSE_H
#define VEIL_GATEWAY_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "veil/base.h"
#include "veil/store.h"

#define GW_NODES_FILE_MAX (1u << 20)  /* --nodes file bytes */
#define GW_NODES_MAX 1024             /* nodes in one gateway */
#define GW_NODE_ID_MAX 64             /* our ids: [A-Za-z0-9._-]{1,64} */
#define GW_ADMIN_BODY_MAX (64u * 1024)

struct gw_node_spec {
	char id[GW_NODE_ID_MAX + 1];   /* "" when the caller gave none */
	char url[VEIL_STORE_URL_MAX + 1]; /* scheme://host[:port], no trailing / */
	char model[VEIL_STORE_MODEL_MAX + 1];
	bool https;
};

/* Checks a node base URL: "http://" or "https://", a host (name, IPv4 or
 * [IPv6]), an optional port 1..65535, optionally one trailing "/" (dropped
 * into `out`), nothing else (no user info, path, query or fragment: the
 * gateway appends the API paths itself).  `out` gets the normalised URL
 * (cap >= VEIL_STORE_URL_MAX + 1). */
int gw_url_check(const char *url, size_t len, char *out, size_t cap,
		 bool *https);

/* A node id given by an operator: 1..GW_NODE_ID_MAX of [A-Za-z0-9._-]. */
bool gw_node_id_valid(const char *id);

/* A model name (veil_model_name_ok) of at most VEIL_STORE_MODEL_MAX bytes
 * (it travels in headers and logs). */
bool gw_model_valid(const char *m, size_t len);

/* The default id of a node: "n-" + the first 12 hex of SHA-256(url). */
void gw_node_default_id(const char *url, char out[GW_NODE_ID_MAX + 1]);

/* One node object {"url": "...", "model": "...", "id"?: "..."}; other keys
 * are refused (a typo must not go unnoticed). */
int gw_parse_node_body(const uint8_t *p, size_t n, struct gw_node_spec *out);

/* The --nodes file: a JSON array (at most GW_NODES_MAX) of node objects as
 * above.  Ids default to gw_node_default_id(); two entries with one id are
 * refused.  *out is one malloc'd array (free()); NULL with *count 0 for []. */
int gw_parse_nodes(const uint8_t *p, size_t n, struct gw_node_spec **out,
		   size_t *count);

/* POST /admin/keys: {"name": "...", "limits"?: {"requests_per_min"?,
 * "tokens_per_min"?, "quota_tokens"?}} (integers >= 0, 0 = unlimited; a
 * field left out is 0).  Also POST /admin/keys/{id}/limits bodies (the
 * limits object alone, when name is NULL): there a field left out is -1,
 * "not given" (the key keeps its current value for it). */
int gw_parse_key_body(const uint8_t *p, size_t n, char *name, size_t name_cap,
		      struct veil_store_limits *lim, bool *has_limits);

/* A time bound from a query (?from= / ?to=): unix seconds, 0..2^40.
 * *ms gets milliseconds. */
int gw_parse_time(const char *s, int64_t *ms);

/* X-Veil-Receipt: base64url (padding optional) of the receipt JSON; the
 * decoded bytes (at most VEIL_STORE_RECEIPT_MAX) are appended to `out`. */
int gw_receipt_from_header(const char *v, size_t len, struct veil_buf *out);

/* ---- receipts: the canonical form, without a JSON library -----------------
 * veil_receipt_parse (two jansson parses and a Keccak for the address
 * checksum) was the largest cost per request after the signature itself.
 * A veil-node writes every receipt in one canonical form: keys sorted, no
 * white space, the payload's only escapes \" (src/node/receipt.c:
 * json_dumps with JSON_COMPACT | JSON_SORT_KEYS), e.g.
 *   {"payload":"{\"created\":1,\"ed25519_public_key\":\"<64 hex>\",
 *    \"id\":\"..\",\"model\":\"..\",\"model_sha256\":\"<64 hex or empty>\",
 *    \"request_sha256\":..,\"response_sha256\":..,\"signing_address\":\"0x..\",
 *    \"usage\":{\"completion_tokens\":1,\"prompt_tokens\":2,\"total_tokens\":3},
 *    \"version\":\"veil-receipt/1\"}",
 *   "signature_ecdsa":"0x<130 hex>","signature_ed25519":"<128 hex>"
 *   [,"text_signature_ecdsa":"0x<130 hex>","text_signature_ed25519":"<128 hex>"]}
 * gw_receipt_fast reads exactly that form (printable ASCII only, integers
 * of at most 18 digits without leading zeros, names as veil_receipt_parse
 * allows them minus quotes, `signing_address` spelled as `expect_address`)
 * without allocating.  It is a strict subset of veil_receipt_parse: what it
 * accepts, veil_receipt_parse accepts with the same values (the fuzz
 * harness tests/fuzz/fuzz_gateway_receipt.c checks exactly that); anything
 * else returns 1 and the caller falls back to veil_receipt_parse, so a
 * receipt in another valid spelling is judged as before. */
#define GW_RECEIPT_PAYLOAD_MAX 1024   /* a canonical payload is < 800 bytes */

struct gw_receipt_lite {
	char payload[GW_RECEIPT_PAYLOAD_MAX + 1]; /* the signed text, NUL-ended */
	size_t payload_len;
	uint8_t sig_ed25519[64];
	uint8_t sig_ecdsa[65];                     /* r || s || v (EIP-191) */
	uint8_t ed25519_public_key[32];
	uint8_t request_sha256[32], response_sha256[32];
	char id[129], model[129];
	int64_t prompt_tokens, completion_tokens, total_tokens, created;
};

/* 0: parsed into *out; 1: not the canonical form (use veil_receipt_parse).
 * expect_address: the "0x" + 40 hex text the payload's signing_address must
 * be byte for byte (the attested address, veil_eth_address_format). */
int gw_receipt_fast(const uint8_t *p, size_t n, const char *expect_address,
		    struct gw_receipt_lite *out);

/* ---- SSE framing of a relayed stream --------------------------------------
 * The gateway passes a node's stream through byte for byte, but it must
 * know where events end (to hold back the final [DONE] until the usage
 * record is durable, to find the receipt and to hash exactly the bytes
 * before it).  The framer cuts the byte stream into raw events: everything
 * up to and including the blank line that ends an event (LF LF, CR LF CR LF,
 * CR CR and mixes, as the WHATWG grammar allows).  Bytes are never changed. */

struct gw_framer {
	struct veil_buf ev;  /* bytes of the unfinished event */
	size_t scanned;      /* bytes of ev already scanned */
	int nl;              /* line ends seen in a row (0, 1 or 2) */
	bool cr;             /* the last byte was CR */
	bool failed;
};

/* Called with each whole raw event; a non-zero return stops the feed and
 * is returned by gw_framer_feed. */
typedef int (*gw_framer_fn)(void *arg, const uint8_t *raw, size_t n);

void gw_framer_init(struct gw_framer *f, size_t max_event);
/* VEIL_ERANGE when one event passes max_event (the framer is then failed). */
int gw_framer_feed(struct gw_framer *f, const uint8_t *p, size_t n,
		   gw_framer_fn cb, void *arg);
/* Bytes of an unfinished event (a stream that ended there was cut). */
size_t gw_framer_pending(const struct gw_framer *f);
void gw_framer_free(struct gw_framer *f);

enum gw_ev_kind {
	GW_EV_DATA = 0,    /* an ordinary event (a chunk, sealed or not) */
	GW_EV_DONE = 1,    /* data: [DONE] */
	GW_EV_RECEIPT = 2, /* the node's receipt */
	GW_EV_ERROR = 3,   /* event: error */
	GW_EV_OTHER = 4,   /* comments, retry, empty events */
};

/* Classifies one raw event.  A receipt is `event: veil.receipt` whose data
 * is the receipt object (sealed streams), or a default event whose data is
 * a JSON object with "object": "veil.receipt" and the receipt object under
 * "veil_receipt" (plaintext streams); for those the receipt object's JSON
 * text is appended to `receipt` (may be NULL).  Malformed lines make an
 * event GW_EV_DATA, never an error: the gateway relays what it does not
 * understand and lets the client judge. */
int gw_sse_classify(const uint8_t *raw, size_t n, enum gw_ev_kind *kind,
		    struct veil_buf *receipt);

/* The prefix-affinity key of a plaintext body: SHA-256 of the JSON text
 * of the first two "messages" (chat) or the first 512 bytes of "prompt"
 * (completions).  false when the body has neither (no affinity). */
bool gw_affinity_key(const uint8_t *body, size_t n, uint8_t out[32]);

#endif
