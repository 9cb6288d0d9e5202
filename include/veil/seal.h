/* veil seal: sealed request and response bodies, "veil-seal/1".
 *
 * The byte layout is specified in docs/protocol.md, "Sealed bodies
 * (veil-seal/1)".  In short: the client seals the request body to the node's
 * HPKE key (base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM,
 * info "veil-seal/1") as a 52-byte header followed by chunks.  The node
 * starts its response with a fresh random 32-byte response nonce; the
 * response key and base nonce come from the request context's exporter,
 * enc and that nonce (as in Oblivious HTTP, RFC 9458 §4.4), so a replayed
 * request is answered under new keys; every response chunk (one per SSE
 * event when streaming, the first event also carrying the nonce) is sealed
 * with nonce = base_nonce XOR counter.  Each chunk is framed as u32 length, a flags byte
 * (final or not) and ciphertext || tag; the header (protocol version, suite,
 * key id, enc) and the flags byte are the AEAD's associated data.
 *
 * One struct veil_seal holds one exchange (one request, its response) on one
 * side: a client seals the request and opens the response, a node opens the
 * request and seals the response.  Incoming data is opened chunk by chunk
 * with memory bounded by one chunk; plaintext is released only once its
 * chunk authenticates, and a body is complete only when its final chunk has
 * opened (veil_seal_finish).  Any failure on the incoming side is sticky:
 * the exchange is dead and every later call fails with the same code.
 * Threads: one exchange is used by one thread at a time; different
 * exchanges (with the same node key or not) may be opened and sealed on
 * several threads at once (test_seal checks it).
 *
 * Errors: VEIL_EFORMAT malformed framing or header (also data after the
 * final chunk); VEIL_ENOTSUP another version or suite; VEIL_ENOENT the key id
 * is not the node's; VEIL_EBADMSG a chunk does not authenticate (tampered,
 * reordered, duplicated, from another exchange) or the body ended before its
 * final chunk; VEIL_ERANGE a limit was passed; VEIL_EINVAL misuse (wrong side,
 * wrong order). */
#ifndef VEIL_SEAL_H
#define VEIL_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "veil/base.h"
#include "veil/hpke.h"

#define VEIL_SEAL_INFO "veil-seal/1"          /* HPKE info */
#define VEIL_SEAL_EXPORT_LABEL "veil-seal/1 response" /* exporter context */
#define VEIL_SEAL_VERSION 1
#define VEIL_SEAL_KEY_ID_LEN 8     /* SHA-256(node HPKE public key)[0:8] */
#define VEIL_SEAL_HEADER_LEN 52    /* request header */
#define VEIL_SEAL_CHUNK_HEAD 5     /* u32 length + flags */
#define VEIL_SEAL_CHUNK_OVERHEAD (VEIL_SEAL_CHUNK_HEAD + VEIL_HPKE_NT)
#define VEIL_SEAL_MAX_CHUNK 65536u /* plaintext bytes per chunk */
/* Random bytes the node sends in clear before its first response chunk;
 * a buffer for the first response chunk needs them beyond
 * VEIL_SEAL_CHUNK_OVERHEAD. */
#define VEIL_SEAL_RESPONSE_NONCE_LEN 32
#define VEIL_SEAL_MAX_CHUNKS (1u << 24) /* chunks per direction */
#define VEIL_SEAL_FLAG_FINAL 0x01

struct veil_seal;

/* Called by veil_seal_feed for each chunk that opened: `pt` (len bytes,
 * possibly 0) is valid only during the call and is wiped after it.  A
 * non-zero return stops the stream with that code (sticky). */
typedef int (*veil_seal_emit_fn)(void *arg, const uint8_t *pt, size_t len,
				 bool final);

/* key_id = SHA-256(pub)[0:8]. */
int veil_seal_key_id(const uint8_t pub[VEIL_HPKE_NPK],
		     uint8_t id[VEIL_SEAL_KEY_ID_LEN]);

/* Reads the key id from the first bytes of a request body, so a node with
 * several keys can choose one; checks magic, version and suite. */
int veil_seal_peek_key_id(const uint8_t *p, size_t n,
			  uint8_t id[VEIL_SEAL_KEY_ID_LEN]);

/* Client: starts an exchange with the node whose HPKE public key is
 * `node_pub`; writes the request header (send it first).  `eph_ikm` NULL
 * draws a fresh ephemeral key (production); otherwise the ephemeral key is
 * DeriveKeyPair(eph_ikm) (tests, the worked example).  Free with
 * veil_seal_free(). */
int veil_seal_client_new(const uint8_t node_pub[VEIL_HPKE_NPK],
			 const uint8_t *eph_ikm, size_t eph_ikm_len,
			 uint8_t header[VEIL_SEAL_HEADER_LEN],
			 struct veil_seal **out);

/* Node: prepares to receive one request under `node` (copied; the copy is
 * wiped on free).  The request header arrives through veil_seal_feed. */
int veil_seal_node_new(const struct veil_hpke_keypair *node,
		       struct veil_seal **out);

/* Wipes every key and frees; NULL is fine. */
void veil_seal_free(struct veil_seal *s);

/* Seals one outgoing chunk (client: request, node: response) of `len`
 * bytes (at most VEIL_SEAL_MAX_CHUNK; 0 only when final) into `out`, which
 * receives len + VEIL_SEAL_CHUNK_OVERHEAD bytes, and a node's first
 * response chunk VEIL_SEAL_RESPONSE_NONCE_LEN more (the response nonce,
 * then the chunk): `cap` must allow them.  out + VEIL_SEAL_CHUNK_HEAD may
 * equal pt (in place; on the node's first chunk the plaintext is moved
 * forward within `out` first).  After the final chunk nothing more can be
 * sealed.  A node seals its response only after the request's final chunk
 * opened; its first chunk draws the response nonce (veil_random). */
int veil_seal_chunk(struct veil_seal *s, const uint8_t *pt, size_t len,
		    bool final, uint8_t *out, size_t cap, size_t *out_len);

/* Seals a whole outgoing body as chunks of up to VEIL_SEAL_MAX_CHUNK bytes,
 * the last one final (an empty body is one empty final chunk), appending
 * them to `out` (a node's response: after the response nonce).  A client appends the header itself (it got it from
 * veil_seal_client_new). */
int veil_seal_body(struct veil_seal *s, const uint8_t *pt, size_t len,
		   struct veil_buf *out);

/* Opens one whole incoming chunk in place (for example one SSE event).
 * `buf` holds `len` bytes: the 5-byte framing, ciphertext and tag; on
 * success the first *out_len bytes are plaintext and *is_final says whether
 * it was the last chunk.  A client's first response chunk is the response
 * nonce followed by the framed chunk (the first SSE event's bytes); its
 * plaintext too is returned at buf[0].  The exchange keeps the counter; a chunk out of
 * order fails with VEIL_EBADMSG and leaves the exchange unusable (a stream
 * that lost a chunk must not go on).  A node must have received the request
 * header through veil_seal_feed first. */
int veil_seal_open_chunk(struct veil_seal *s, uint8_t *buf, size_t len,
			 size_t *out_len, bool *is_final);

/* Feeds `n` bytes of the incoming stream, split anywhere (node: the request
 * header and chunks; client: the response nonce and chunks).  Calls `emit` once per
 * chunk as soon as it authenticates.  Buffers at most one chunk. */
int veil_seal_feed(struct veil_seal *s, const uint8_t *p, size_t n,
		   veil_seal_emit_fn emit, void *arg);

/* The incoming stream has ended: 0 when its final chunk opened and nothing
 * is left over; VEIL_EBADMSG (truncated) otherwise. */
int veil_seal_finish(struct veil_seal *s);

/* Opens a whole incoming body (feed + finish), appending its plaintext to
 * `out` (make it VEIL_BUF_SECRET_INIT: it holds user content).  On failure
 * `out` is reset: a body that does not open gives no plaintext. */
int veil_seal_open_body(struct veil_seal *s, const uint8_t *body, size_t len,
			struct veil_buf *out);

/* Tests only (the worked example): the node's response nonce is `nonce`
 * instead of fresh random bytes.  Before the first response chunk; never
 * call it in production, where a fixed nonce brings back the replay flaw
 * the nonce exists to close. */
int veil_seal_set_response_nonce(struct veil_seal *s,
				 const uint8_t nonce[VEIL_SEAL_RESPONSE_NONCE_LEN]);

/* Whole-message helpers for the client.  veil_seal_request: new exchange,
 * header and chunks of `pt` appended to `out`; *out_s (caller frees) then
 * opens the response. */
int veil_seal_request(const uint8_t node_pub[VEIL_HPKE_NPK], const uint8_t *pt,
		      size_t len, struct veil_buf *out, struct veil_seal **out_s);

#endif
