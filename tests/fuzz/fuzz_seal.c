/* Fuzzes the veil-seal/1 receive path with fixed keys.  Byte 0 picks the
 * side (bit 7: node receiving a request, else client receiving a response:
 * the 32-byte response nonce, then chunks) and the piece size (bits 0-6) in
 * which the rest is fed.  The outcome must not depend on how the stream is
 * split, and opened plaintext never exceeds the input.  On the client side
 * the rest is also opened as one SSE event (veil_seal_open_chunk: nonce and
 * first chunk), which must agree with the fed stream. */
#include <stdlib.h>
#include <string.h>

#include "veil/seal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The worked example's keys (docs/protocol.md). */
static const char IKM_NODE[] = "veil-seal/1 example node key ikm";
static const char IKM_EPH[] = "veil-seal/1 example client ephem";

struct count {
	size_t bytes;
	int finals;
};

static int count_emit(void *arg, const uint8_t *pt, size_t len, bool final)
{
	struct count *c = arg;

	(void)pt;
	c->bytes += len;
	c->finals += final;
	return 0;
}

/* A fresh exchange on the receiving side. */
static struct veil_seal *receiver(const struct veil_hpke_keypair *kp, bool node)
{
	struct veil_seal *s = NULL;
	uint8_t hdr[VEIL_SEAL_HEADER_LEN], fin[VEIL_SEAL_CHUNK_OVERHEAD];
	size_t w;

	if (node) {
		if (veil_seal_node_new(kp, &s) < 0)
			abort();
		return s;
	}
	/* a client that sent the example request's ephemeral key and an empty
	 * body, now waiting for the response */
	if (veil_seal_client_new(kp->pub, (const uint8_t *)IKM_EPH, 32, hdr, &s) < 0 ||
	    veil_seal_chunk(s, NULL, 0, true, fin, sizeof(fin), &w) < 0)
		abort();
	return s;
}

static int run(const struct veil_hpke_keypair *kp, bool node, const uint8_t *p,
	       size_t n, size_t piece, struct count *c)
{
	struct veil_seal *s = receiver(kp, node);
	int rc = 0;

	for (size_t off = 0; off < n && rc == 0; off += piece)
		rc = veil_seal_feed(s, p + off, n - off < piece ? n - off : piece,
				    count_emit, c);
	if (rc == 0)
		rc = veil_seal_finish(s);
	veil_seal_free(s);
	return rc;
}

/* The input as a client's first (and only) event: when it opens, feeding
 * the same bytes must give the same plaintext length and, for a final
 * chunk, a complete stream (rc 0), else a truncated one. */
static void one_event(const struct veil_hpke_keypair *kp, const uint8_t *p, size_t n,
		      int fed_rc, const struct count *fed)
{
	struct veil_seal *s = receiver(kp, false);
	uint8_t *buf = malloc(n ? n : 1);
	size_t pl;
	bool fin;

	if (!buf)
		abort();
	memcpy(buf, p, n);
	if (veil_seal_open_chunk(s, buf, n, &pl, &fin) == 0) {
		if (pl > n || pl != fed->bytes || (fin ? fed_rc != 0 : fed_rc != VEIL_EBADMSG))
			abort();
		if (veil_seal_finish(s) != (fin ? 0 : VEIL_EBADMSG))
			abort();
	}
	free(buf);
	veil_seal_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct veil_hpke_keypair kp;
	static bool init;
	struct count whole = {0}, split = {0};
	bool node;
	size_t piece;
	int a, b;

	if (!init) {
		if (veil_hpke_derive_keypair((const uint8_t *)IKM_NODE, 32, &kp) < 0)
			abort();
		init = true;
	}
	if (size < 1 || size > (1u << 20))
		return 0;
	node = data[0] & 0x80;
	piece = (data[0] & 0x7f) + 1u;
	data++;
	size--;
	a = run(&kp, node, data, size, size ? size : 1, &whole);
	b = run(&kp, node, data, size, piece, &split);
	if (a != b || whole.bytes != split.bytes)
		abort();
	if (whole.bytes > size || whole.finals > 1 || (a == 0 && whole.finals != 1))
		abort();
	if (!node)
		one_event(&kp, data, size, a, &whole);
	return 0;
}
