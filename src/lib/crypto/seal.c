/* Sealed request and response bodies, veil-seal/1 (docs/protocol.md,
 * "Sealed bodies (veil-seal/1)"). */
#include "veil/seal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "veil/digest.h"

#define TYPE_REQUEST 0x01
#define TYPE_RESPONSE 0x02
#define PREFIX_LEN 20 /* magic .. key id: the response's associated data */
#define BUF_LEN (VEIL_SEAL_CHUNK_OVERHEAD + VEIL_SEAL_MAX_CHUNK)

/* IN_NONCE: a client's response starts with the node's response nonce. */
enum in_state { IN_HEADER, IN_NONCE, IN_CHUNK_HEAD, IN_CHUNK_BODY, IN_DONE };

struct veil_seal {
	bool client;
	int err;              /* sticky failure of the incoming side */
	enum in_state state;
	uint8_t hdr[VEIL_SEAL_HEADER_LEN];  /* the request header */
	uint8_t resp_prefix[PREFIX_LEN];    /* the response's AAD prefix */
	uint8_t key_id[VEIL_SEAL_KEY_ID_LEN];
	struct veil_hpke_ctx *req;   /* client: sender; node: receiver */
	struct veil_hpke_ctx *resp;  /* client: receiver; node: sender; NULL
				      * until the response nonce is known */
	bool resp_nonce_set;         /* node: a test fixed resp_nonce */
	uint8_t resp_nonce[VEIL_SEAL_RESPONSE_NONCE_LEN]; /* node's, public */
	uint32_t out_chunks, in_chunks;
	bool out_final;
	struct veil_hpke_keypair node; /* node side only */
	uint8_t *buf;                  /* one incoming chunk (feed) */
	size_t have, need;
	size_t buf_hi;                 /* bytes of buf ever written: what free wipes */
};

static const uint8_t MAGIC[4] = {'V', 'E', 'I', 'L'};

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static unsigned get16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Every exchange needs its node key's id (a client: the node it seals to; a
 * node: its own key), and a process uses one or a few keys: each thread
 * keeps the last key and its id.  With cold caches EVP_Digest (an implicit
 * SHA-256 fetch, a digest context) took ~4-10 us of a node's ~60 us setup;
 * the comparison takes nanoseconds.  Both are public. */
static _Thread_local struct {
	bool set;
	uint8_t pub[VEIL_HPKE_NPK];
	uint8_t id[VEIL_SEAL_KEY_ID_LEN];
} t_key_id;

int veil_seal_key_id(const uint8_t pub[VEIL_HPKE_NPK],
		     uint8_t id[VEIL_SEAL_KEY_ID_LEN])
{
	uint8_t h[32];
	unsigned n = 0;

	if (!pub || !id)
		return veil_errf(VEIL_EINVAL, "veil-seal: NULL key");
	if (t_key_id.set && !memcmp(t_key_id.pub, pub, VEIL_HPKE_NPK)) {
		memcpy(id, t_key_id.id, VEIL_SEAL_KEY_ID_LEN);
		return 0;
	}
	if (EVP_Digest(pub, VEIL_HPKE_NPK, h, &n, EVP_sha256(), NULL) <= 0 || n != 32)
		return veil_errf(VEIL_EINTERNAL, "veil-seal: SHA-256 failed");
	memcpy(id, h, VEIL_SEAL_KEY_ID_LEN);
	memcpy(t_key_id.pub, pub, VEIL_HPKE_NPK);
	memcpy(t_key_id.id, h, VEIL_SEAL_KEY_ID_LEN);
	t_key_id.set = true;
	return 0;
}

/* magic, version, type, suite, key id: the first 20 bytes of a request
 * header; with type 0x02 the response's associated data prefix. */
static void write_prefix(uint8_t *p, uint8_t type, const uint8_t *key_id)
{
	memcpy(p, MAGIC, 4);
	p[4] = VEIL_SEAL_VERSION;
	p[5] = type;
	put16(p + 6, VEIL_HPKE_KEM_X25519_SHA256);
	put16(p + 8, VEIL_HPKE_KDF_HKDF_SHA256);
	put16(p + 10, VEIL_HPKE_AES256GCM);
	memcpy(p + 12, key_id, VEIL_SEAL_KEY_ID_LEN);
}

int veil_seal_peek_key_id(const uint8_t *p, size_t n,
			  uint8_t id[VEIL_SEAL_KEY_ID_LEN])
{
	if (!p || !id)
		return veil_errf(VEIL_EINVAL, "veil-seal: NULL argument");
	if (n < PREFIX_LEN)
		return veil_errf(VEIL_EFORMAT, "veil-seal header: %zu bytes, need %d",
				 n, PREFIX_LEN);
	if (memcmp(p, MAGIC, 4))
		return veil_errf(VEIL_EFORMAT, "veil-seal header: bad magic (not \"VEIL\")");
	if (p[4] != VEIL_SEAL_VERSION)
		return veil_errf(VEIL_ENOTSUP, "veil-seal header: version %u (this is 1)", p[4]);
	if (p[5] != TYPE_REQUEST)
		return veil_errf(VEIL_EFORMAT, "veil-seal header: type 0x%02x is not a request",
				 p[5]);
	if (get16(p + 6) != VEIL_HPKE_KEM_X25519_SHA256 ||
	    get16(p + 8) != VEIL_HPKE_KDF_HKDF_SHA256 ||
	    get16(p + 10) != VEIL_HPKE_AES256GCM)
		return veil_errf(VEIL_ENOTSUP, "veil-seal header: suite 0x%04x/0x%04x/0x%04x "
				 "(want 0x0020/0x0001/0x0002)", get16(p + 6),
				 get16(p + 8), get16(p + 10));
	memcpy(id, p + 12, VEIL_SEAL_KEY_ID_LEN);
	return 0;
}

static const struct veil_hpke_opts *seal_opts(void)
{
	static const struct veil_hpke_opts o = {
		.mode = VEIL_HPKE_MODE_BASE,
		.aead = VEIL_HPKE_AES256GCM,
		.info = (const uint8_t *)VEIL_SEAL_INFO,
		.info_len = sizeof(VEIL_SEAL_INFO) - 1,
	};
	return &o;
}

/* The response context, as Oblivious HTTP derives it (RFC 9458 §4.4):
 *   secret = Export("veil-seal/1 response", 32)
 *   prk    = HKDF-Extract(salt = enc || response_nonce, IKM = secret)
 *   key    = HKDF-Expand(prk, "key", 32)
 *   nonce  = HKDF-Expand(prk, "nonce", 12)
 * The node draws response_nonce afresh for every response, so a request
 * replayed to it (by a gateway, or an HTTP client retrying a POST) is
 * answered under a new key: never two answers under one (key, nonce). */
static int derive_response(struct veil_seal *s,
			   const uint8_t nonce[VEIL_SEAL_RESPONSE_NONCE_LEN])
{
	uint8_t secret[32], salt[VEIL_HPKE_NENC + VEIL_SEAL_RESPONSE_NONCE_LEN];
	uint8_t prk[32], key[32], bn[VEIL_HPKE_NN];
	EVP_MD_CTX *mc;
	int rc;

	if (s->resp)
		return veil_errf(VEIL_EINTERNAL, "veil-seal: response keys derived twice");
	if (!(mc = EVP_MD_CTX_new()))
		return veil_errf(VEIL_ENOMEM, "veil-seal: digest context allocation failed");
	memcpy(salt, s->hdr + PREFIX_LEN, VEIL_HPKE_NENC);
	memcpy(salt + VEIL_HPKE_NENC, nonce, VEIL_SEAL_RESPONSE_NONCE_LEN);
	if ((rc = veil_hpke_ctx_export(s->req, (const uint8_t *)VEIL_SEAL_EXPORT_LABEL,
				       sizeof(VEIL_SEAL_EXPORT_LABEL) - 1, secret,
				       sizeof(secret))) < 0 ||
	    (rc = veil_hkdf_sha256_extract(mc, salt, sizeof(salt), secret, sizeof(secret),
					   prk)) < 0 ||
	    (rc = veil_hkdf_sha256_expand(mc, prk, (const uint8_t *)"key", 3, key,
					  sizeof(key))) < 0 ||
	    (rc = veil_hkdf_sha256_expand(mc, prk, (const uint8_t *)"nonce", 5, bn,
					  VEIL_HPKE_NN)) < 0)
		goto out;
	rc = veil_hpke_ctx_new_raw(VEIL_HPKE_AES256GCM, !s->client, key, sizeof(key), bn,
				   &s->resp);
out:
	EVP_MD_CTX_free(mc);
	veil_wipe(secret, sizeof(secret));
	veil_wipe(prk, sizeof(prk));
	veil_wipe(key, sizeof(key));
	veil_wipe(bn, sizeof(bn));
	return rc;
}

int veil_seal_set_response_nonce(struct veil_seal *s,
				 const uint8_t nonce[VEIL_SEAL_RESPONSE_NONCE_LEN])
{
	if (!s || !nonce)
		return veil_errf(VEIL_EINVAL, "veil-seal: NULL argument");
	if (s->client || s->resp || s->out_chunks)
		return veil_errf(VEIL_EINVAL, "veil-seal: a response nonce is set by a node "
				 "before its first response chunk");
	memcpy(s->resp_nonce, nonce, VEIL_SEAL_RESPONSE_NONCE_LEN);
	s->resp_nonce_set = true;
	return 0;
}

/* Bytes a node writes before its next response chunk: the response nonce
 * before the first one, nothing otherwise (and nothing on a client). */
static size_t out_extra(const struct veil_seal *s)
{
	return !s->client && s->out_chunks == 0 ? VEIL_SEAL_RESPONSE_NONCE_LEN : 0;
}

void veil_seal_free(struct veil_seal *s)
{
	if (!s)
		return;
	veil_hpke_ctx_free(s->req);
	veil_hpke_ctx_free(s->resp);
	if (s->buf) {
		/* Not all BUF_LEN: a node feeds every request's 52-byte header
		 * through buf, and wiping 64 KiB took ~2 us hot (and touched
		 * 1000 cache lines cold) of a ~35 us setup. */
		veil_wipe(s->buf, s->buf_hi);
		free(s->buf);
	}
	veil_wipe(s, sizeof(*s));
	free(s);
}

int veil_seal_client_new(const uint8_t node_pub[VEIL_HPKE_NPK],
			 const uint8_t *eph_ikm, size_t eph_ikm_len,
			 uint8_t header[VEIL_SEAL_HEADER_LEN],
			 struct veil_seal **out)
{
	struct veil_hpke_opts o = *seal_opts();
	struct veil_hpke_keypair eph;
	struct veil_seal *s;
	uint8_t enc[VEIL_HPKE_NENC];
	int rc;

	if (!node_pub || !header || !out)
		return veil_errf(VEIL_EINVAL, "veil-seal: NULL argument");
	if (!(s = calloc(1, sizeof(*s))))
		return veil_errf(VEIL_ENOMEM, "veil-seal: allocation failed");
	s->client = true;
	s->state = IN_NONCE;
	if (eph_ikm) {
		if ((rc = veil_hpke_derive_keypair(eph_ikm, eph_ikm_len, &eph)) < 0)
			goto fail;
		o.eph = &eph;
	}
	if ((rc = veil_seal_key_id(node_pub, s->key_id)) < 0 ||
	    (rc = veil_hpke_setup_sender(&o, node_pub, enc, &s->req)) < 0)
		goto fail;
	write_prefix(s->hdr, TYPE_REQUEST, s->key_id);
	memcpy(s->hdr + PREFIX_LEN, enc, VEIL_HPKE_NENC);
	write_prefix(s->resp_prefix, TYPE_RESPONSE, s->key_id);
	memcpy(header, s->hdr, VEIL_SEAL_HEADER_LEN);
	*out = s;
	s = NULL;
fail:
	veil_hpke_keypair_wipe(&eph);
	veil_seal_free(s);
	return rc;
}

int veil_seal_node_new(const struct veil_hpke_keypair *node,
		       struct veil_seal **out)
{
	struct veil_seal *s;
	int rc;

	if (!node || !out)
		return veil_errf(VEIL_EINVAL, "veil-seal: NULL argument");
	if (!(s = calloc(1, sizeof(*s))))
		return veil_errf(VEIL_ENOMEM, "veil-seal: allocation failed");
	s->node = *node;
	s->state = IN_HEADER;
	if ((rc = veil_seal_key_id(node->pub, s->key_id)) < 0) {
		veil_seal_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

/* Node: checks the request header and sets up the request context (the
 * response's keys wait for its nonce: the first response chunk). */
static int accept_header(struct veil_seal *s, const uint8_t *h)
{
	uint8_t id[VEIL_SEAL_KEY_ID_LEN];
	int rc;

	if ((rc = veil_seal_peek_key_id(h, VEIL_SEAL_HEADER_LEN, id)) < 0)
		return rc;
	if (CRYPTO_memcmp(id, s->key_id, VEIL_SEAL_KEY_ID_LEN))
		return veil_errf(VEIL_ENOENT, "veil-seal header: key id is not this node's HPKE key");
	if ((rc = veil_hpke_setup_receiver(seal_opts(), &s->node, h + PREFIX_LEN,
					   &s->req)) < 0)
		return rc == VEIL_EBADMSG ? veil_errf(VEIL_EBADMSG,
						      "veil-seal header: enc is not a usable X25519 key")
					  : rc;
	memcpy(s->hdr, h, VEIL_SEAL_HEADER_LEN);
	veil_hpke_keypair_wipe(&s->node); /* one request per exchange */
	write_prefix(s->resp_prefix, TYPE_RESPONSE, s->key_id);
	return 0;
}

int veil_seal_chunk(struct veil_seal *s, const uint8_t *pt, size_t len,
		    bool final, uint8_t *out, size_t cap, size_t *out_len)
{
	uint8_t aad[VEIL_SEAL_HEADER_LEN + 1];
	struct veil_hpke_ctx *c;
	size_t plen, n, extra;
	uint8_t *dst;
	int rc;

	if (!s || !out || !out_len || (len && !pt))
		return veil_errf(VEIL_EINVAL, "veil-seal: NULL argument");
	if (s->out_final)
		return veil_errf(VEIL_EINVAL, "veil-seal: the final chunk was already sealed");
	if (!s->client && s->state != IN_DONE)
		return veil_errf(VEIL_EINVAL, "veil-seal: response before the whole request opened");
	if (len > VEIL_SEAL_MAX_CHUNK)
		return veil_errf(VEIL_ERANGE, "veil-seal: chunk of %zu bytes exceeds %u",
				 len, VEIL_SEAL_MAX_CHUNK);
	if (len == 0 && !final)
		return veil_errf(VEIL_EINVAL, "veil-seal: only the final chunk may be empty");
	if (s->out_chunks >= VEIL_SEAL_MAX_CHUNKS)
		return veil_errf(VEIL_ERANGE, "veil-seal: more than %u chunks", VEIL_SEAL_MAX_CHUNKS);
	extra = out_extra(s);
	if (cap < extra + len + VEIL_SEAL_CHUNK_OVERHEAD)
		return veil_errf(VEIL_ERANGE, "veil-seal: output of %zu bytes, need %zu",
				 cap, extra + len + VEIL_SEAL_CHUNK_OVERHEAD);
	if (extra && !s->resp) {
		if (!s->resp_nonce_set &&
		    (rc = veil_random(s->resp_nonce, VEIL_SEAL_RESPONSE_NONCE_LEN)) < 0)
			return rc;
		if ((rc = derive_response(s, s->resp_nonce)) < 0)
			return rc;
	}
	/* In place (pt == out + 5) the first response chunk's plaintext moves
	 * past the nonce first: EVP allows exact in-place only, and the nonce
	 * would overwrite it. */
	dst = out + extra + VEIL_SEAL_CHUNK_HEAD;
	if (len && pt != dst && (uintptr_t)pt < (uintptr_t)(out + cap) &&
	    (uintptr_t)(pt + len) > (uintptr_t)out) {
		memmove(dst, pt, len);
		pt = dst;
	}
	if (extra)
		memcpy(out, s->resp_nonce, extra);
	out += extra;
	if (s->client) {
		c = s->req;
		memcpy(aad, s->hdr, VEIL_SEAL_HEADER_LEN);
		plen = VEIL_SEAL_HEADER_LEN;
	} else {
		c = s->resp;
		memcpy(aad, s->resp_prefix, PREFIX_LEN);
		plen = PREFIX_LEN;
	}
	aad[plen] = final ? VEIL_SEAL_FLAG_FINAL : 0;
	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
	out[4] = aad[plen];
	if ((rc = veil_hpke_ctx_seal(c, aad, plen + 1, pt, len, out + VEIL_SEAL_CHUNK_HEAD,
				     cap - extra - VEIL_SEAL_CHUNK_HEAD, &n)) < 0)
		return rc;
	s->out_chunks++;
	s->out_final = final;
	*out_len = extra + n + VEIL_SEAL_CHUNK_HEAD;
	return 0;
}

int veil_seal_body(struct veil_seal *s, const uint8_t *pt, size_t len,
		   struct veil_buf *out)
{
	size_t off = 0, n, w;
	int rc;

	if (!s || !out || (len && !pt))
		return veil_errf(VEIL_EINVAL, "veil-seal: NULL argument");
	/* All of it at once: one allocation, not a copy at every doubling
	 * (and a body over the buffer's cap fails before any chunk is sealed). */
	n = len / VEIL_SEAL_MAX_CHUNK + 1;
	if (len > SIZE_MAX - n * VEIL_SEAL_CHUNK_OVERHEAD - VEIL_SEAL_RESPONSE_NONCE_LEN)
		return veil_errf(VEIL_EOVERFLOW, "veil-seal: body of %zu bytes", len);
	if ((rc = veil_buf_reserve(out, out_extra(s) + len +
				   n * VEIL_SEAL_CHUNK_OVERHEAD)) < 0)
		return rc;
	do {
		size_t extra = out_extra(s);
		bool final;

		n = VEIL_MIN(len - off, (size_t)VEIL_SEAL_MAX_CHUNK);
		final = off + n == len;
		if ((rc = veil_buf_reserve(out, extra + n + VEIL_SEAL_CHUNK_OVERHEAD)) < 0 ||
		    (rc = veil_seal_chunk(s, pt + off, n, final, out->data + out->len,
					  extra + n + VEIL_SEAL_CHUNK_OVERHEAD, &w)) < 0)
			return rc;
		out->len += w;
		out->data[out->len] = '\0';
		off += n;
	} while (off < len);
	return 0;
}

static int fail(struct veil_seal *s, int rc)
{
	s->err = rc;
	return rc;
}

static int sticky(const struct veil_seal *s)
{
	return veil_errf(s->err, "veil-seal: the stream already failed (%s)",
			 veil_strerror(s->err));
}

/* Checks the 5-byte framing; returns the plaintext length or an error. */
static long parse_chunk_head(const uint8_t *p, bool *final)
{
	uint32_t len = get32(p);

	if (p[4] & ~VEIL_SEAL_FLAG_FINAL)
		return veil_errf(VEIL_EFORMAT, "veil-seal chunk: unknown flags 0x%02x", p[4]);
	if (len > VEIL_SEAL_MAX_CHUNK)
		return veil_errf(VEIL_EFORMAT, "veil-seal chunk: length %u exceeds %u",
				 len, VEIL_SEAL_MAX_CHUNK);
	if (len == 0 && !(p[4] & VEIL_SEAL_FLAG_FINAL))
		return veil_errf(VEIL_EFORMAT, "veil-seal chunk: empty chunk that is not final");
	*final = p[4] & VEIL_SEAL_FLAG_FINAL;
	return (long)len;
}

/* Opens the whole chunk frame[0..len) (framing, ciphertext, tag), writing
 * its plaintext to `pt`: either frame + VEIL_SEAL_CHUNK_HEAD (in place) or a
 * buffer apart from the frame of at least len - VEIL_SEAL_CHUNK_OVERHEAD
 * bytes (EVP allows no other overlap). */
static int open_frame(struct veil_seal *s, const uint8_t *frame, size_t len,
		      uint8_t *pt, size_t *out_len, bool *is_final)
{
	uint8_t aad[VEIL_SEAL_HEADER_LEN + 1];
	struct veil_hpke_ctx *c;
	size_t plen, n;
	bool final;
	long clen;
	int rc;

	if (s->state == IN_DONE)
		return veil_errf(VEIL_EFORMAT, "veil-seal: data after the final chunk");
	if (len < VEIL_SEAL_CHUNK_OVERHEAD)
		return veil_errf(VEIL_EFORMAT, "veil-seal chunk: %zu bytes, shorter than %d",
				 len, VEIL_SEAL_CHUNK_OVERHEAD);
	if ((clen = parse_chunk_head(frame, &final)) < 0)
		return (int)clen;
	if ((size_t)clen + VEIL_SEAL_CHUNK_OVERHEAD != len)
		return veil_errf(VEIL_EFORMAT, "veil-seal chunk: length %ld does not match "
				 "the %zu-byte frame", clen, len);
	if (s->in_chunks >= VEIL_SEAL_MAX_CHUNKS)
		return veil_errf(VEIL_ERANGE, "veil-seal: more than %u chunks", VEIL_SEAL_MAX_CHUNKS);
	if (s->client) {
		c = s->resp;
		memcpy(aad, s->resp_prefix, PREFIX_LEN);
		plen = PREFIX_LEN;
	} else {
		c = s->req;
		memcpy(aad, s->hdr, VEIL_SEAL_HEADER_LEN);
		plen = VEIL_SEAL_HEADER_LEN;
	}
	aad[plen] = frame[4];
	rc = veil_hpke_ctx_open(c, aad, plen + 1, frame + VEIL_SEAL_CHUNK_HEAD,
				len - VEIL_SEAL_CHUNK_HEAD, pt,
				len - VEIL_SEAL_CHUNK_OVERHEAD, &n);
	if (rc < 0)
		return rc == VEIL_EBADMSG
			       ? veil_errf(VEIL_EBADMSG, "veil-seal: chunk %u does not authenticate "
					   "(tampered, reordered, replayed or another key)",
					   s->in_chunks)
			       : rc;
	s->in_chunks++;
	if (final)
		s->state = IN_DONE;
	*out_len = n;
	*is_final = final;
	return 0;
}

static int check_incoming(const struct veil_seal *s)
{
	if (s->client && !s->out_final)
		return veil_errf(VEIL_EINVAL, "veil-seal: response before the request was sealed");
	return 0;
}

int veil_seal_open_chunk(struct veil_seal *s, uint8_t *buf, size_t len,
			 size_t *out_len, bool *is_final)
{
	size_t skip = 0;
	int rc;

	if (!s || !buf || !out_len || !is_final)
		return veil_errf(VEIL_EINVAL, "veil-seal: NULL argument");
	if (s->err)
		return sticky(s);
	if ((rc = check_incoming(s)) < 0)
		return rc;
	if (s->state == IN_HEADER)
		return veil_errf(VEIL_EINVAL, "veil-seal: chunk before the request header");
	if (s->have)
		return veil_errf(VEIL_EINVAL, "veil-seal: chunk while a fed chunk is partial");
	if (s->state == IN_NONCE) {
		/* A client's first response chunk: response_nonce || chunk. */
		if (len < VEIL_SEAL_RESPONSE_NONCE_LEN + VEIL_SEAL_CHUNK_OVERHEAD)
			return fail(s, veil_errf(VEIL_EFORMAT, "veil-seal: first response chunk "
						 "of %zu bytes, shorter than its nonce and "
						 "framing (%d)", len,
						 VEIL_SEAL_RESPONSE_NONCE_LEN +
							 VEIL_SEAL_CHUNK_OVERHEAD));
		if ((rc = derive_response(s, buf)) < 0)
			return fail(s, rc);
		s->state = IN_CHUNK_HEAD;
		skip = VEIL_SEAL_RESPONSE_NONCE_LEN;
	}
	/* Decrypt where the ciphertext is (EVP allows exact in-place only),
	 * then move the plaintext to the front. */
	if ((rc = open_frame(s, buf + skip, len - skip, buf + skip + VEIL_SEAL_CHUNK_HEAD,
			     out_len, is_final)) < 0)
		return fail(s, rc);
	memmove(buf, buf + skip + VEIL_SEAL_CHUNK_HEAD, *out_len);
	/* the move leaves the plaintext's last bytes behind it */
	veil_wipe(buf + *out_len, skip + VEIL_SEAL_CHUNK_HEAD);
	return 0;
}

int veil_seal_feed(struct veil_seal *s, const uint8_t *p, size_t n,
		   veil_seal_emit_fn emit, void *arg)
{
	int rc;

	if (!s || (n && !p))
		return veil_errf(VEIL_EINVAL, "veil-seal: NULL argument");
	if (s->err)
		return sticky(s);
	if ((rc = check_incoming(s)) < 0)
		return rc;
	if (!s->buf && n) {
		if (!(s->buf = malloc(BUF_LEN)))
			return veil_errf(VEIL_ENOMEM, "veil-seal: allocation failed");
		s->have = 0;
		s->need = s->state == IN_HEADER  ? VEIL_SEAL_HEADER_LEN
			  : s->state == IN_NONCE ? VEIL_SEAL_RESPONSE_NONCE_LEN
						 : VEIL_SEAL_CHUNK_HEAD;
	}
	while (n > 0) {
		size_t take;

		if (s->state == IN_DONE)
			return fail(s, veil_errf(VEIL_EFORMAT, "veil-seal: %zu bytes after the "
						 "final chunk", n));
		if (s->state == IN_CHUNK_HEAD && s->have == 0 && n >= VEIL_SEAL_CHUNK_HEAD) {
			/* A whole chunk in the input: open it straight from there
			 * into s->buf, sparing the copy in and the move out. */
			bool final;
			long clen = parse_chunk_head(p, &final);
			size_t whole, len;

			if (clen < 0)
				return fail(s, (int)clen);
			whole = (size_t)clen + VEIL_SEAL_CHUNK_OVERHEAD;
			if (n >= whole) {
				s->buf_hi = VEIL_MAX(s->buf_hi, (size_t)clen);
				if ((rc = open_frame(s, p, whole, s->buf, &len, &final)) < 0)
					return fail(s, rc);
				p += whole;
				n -= whole;
				rc = emit ? emit(arg, s->buf, len, final) : 0;
				veil_wipe(s->buf, len);
				if (rc)
					return fail(s, rc < 0 ? rc : VEIL_ECANCELED);
				continue;
			}
		}
		take = VEIL_MIN(n, s->need - s->have);
		memcpy(s->buf + s->have, p, take);
		s->have += take;
		s->buf_hi = VEIL_MAX(s->buf_hi, s->have);
		p += take;
		n -= take;
		if (s->have < s->need)
			break;
		if (s->state == IN_HEADER) {
			if ((rc = accept_header(s, s->buf)) < 0)
				return fail(s, rc);
			s->state = IN_CHUNK_HEAD;
			s->have = 0;
			s->need = VEIL_SEAL_CHUNK_HEAD;
		} else if (s->state == IN_NONCE) {
			if ((rc = derive_response(s, s->buf)) < 0)
				return fail(s, rc);
			s->state = IN_CHUNK_HEAD;
			s->have = 0;
			s->need = VEIL_SEAL_CHUNK_HEAD;
		} else if (s->state == IN_CHUNK_HEAD) {
			bool final;
			long clen = parse_chunk_head(s->buf, &final);

			if (clen < 0)
				return fail(s, (int)clen);
			s->need = (size_t)clen + VEIL_SEAL_CHUNK_OVERHEAD;
			s->state = IN_CHUNK_BODY;
		} else {
			size_t whole = s->need, len;
			bool final;

			s->have = 0;
			s->need = VEIL_SEAL_CHUNK_HEAD;
			s->state = IN_CHUNK_HEAD;
			if ((rc = open_frame(s, s->buf, whole, s->buf + VEIL_SEAL_CHUNK_HEAD,
					      &len, &final)) < 0)
				return fail(s, rc);
			memmove(s->buf, s->buf + VEIL_SEAL_CHUNK_HEAD, len);
			rc = emit ? emit(arg, s->buf, len, final) : 0;
			/* with the bytes the move left behind it */
			veil_wipe(s->buf, len + VEIL_SEAL_CHUNK_HEAD);
			if (rc)
				return fail(s, rc < 0 ? rc : VEIL_ECANCELED);
		}
	}
	return 0;
}

int veil_seal_finish(struct veil_seal *s)
{
	if (!s)
		return veil_errf(VEIL_EINVAL, "veil-seal: NULL argument");
	if (s->err)
		return sticky(s);
	if (s->state != IN_DONE)
		return fail(s, veil_errf(VEIL_EBADMSG, "veil-seal: truncated: the body ended "
					 "before its final chunk (%u chunks opened)",
					 s->in_chunks));
	return 0;
}

static int append_emit(void *arg, const uint8_t *pt, size_t len, bool final)
{
	(void)final;
	return veil_buf_append(arg, pt, len);
}

int veil_seal_open_body(struct veil_seal *s, const uint8_t *body, size_t len,
			struct veil_buf *out)
{
	size_t start;
	int rc;

	if (!s || !out || (len && !body))
		return veil_errf(VEIL_EINVAL, "veil-seal: NULL argument");
	start = out->len;
	/* The plaintext is shorter than the body: reserve it once (a secret
	 * buffer copies and wipes at every growth).  Best effort: a body longer
	 * than the cap may still open to a plaintext within it. */
	if (len <= out->max - VEIL_MIN(out->max, out->len))
		(void)veil_buf_reserve(out, len);
	if ((rc = veil_seal_feed(s, body, len, append_emit, out)) < 0 ||
	    (rc = veil_seal_finish(s)) < 0) {
		veil_wipe(out->data + start, out->len - start);
		out->len = start;
		if (out->data)
			out->data[start] = '\0';
	}
	return rc;
}

int veil_seal_request(const uint8_t node_pub[VEIL_HPKE_NPK], const uint8_t *pt,
		      size_t len, struct veil_buf *out, struct veil_seal **out_s)
{
	uint8_t hdr[VEIL_SEAL_HEADER_LEN];
	struct veil_seal *s = NULL;
	size_t start;
	int rc;

	if (!out || !out_s)
		return veil_errf(VEIL_EINVAL, "veil-seal: NULL argument");
	start = out->len;
	if ((rc = veil_seal_client_new(node_pub, NULL, 0, hdr, &s)) < 0)
		return rc;
	if ((rc = veil_buf_append(out, hdr, sizeof(hdr))) < 0 ||
	    (rc = veil_seal_body(s, pt, len, out)) < 0) {
		out->len = start;
		if (out->data)
			out->data[start] = '\0';
		veil_seal_free(s);
		return rc;
	}
	*out_s = s;
	return 0;
}
