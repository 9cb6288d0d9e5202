/* libFuzzer harness for veil-proxy's sealed event-stream reader and error
 * parser (src/proxy/wire.c, compiled in here).  The first byte picks the
 * piece size, so lines split anywhere are covered; a chunk whose decoded
 * flags byte has the final bit ends the chunk phase, as an opened final
 * chunk does in veil-proxy.  Checks: the bytes given to `hash` are a
 * prefix of the input, every callback gets data within the line cap, and
 * a stream read to its end is exactly what the grammar allows. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/proxy/wire.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LINE 4096

struct st {
	const uint8_t *in;
	size_t hashed;
	size_t receipts;
	uint8_t buf[VEIL_SEAL_RESPONSE_NONCE_LEN + VEIL_SEAL_MAX_CHUNK + VEIL_SEAL_CHUNK_OVERHEAD + 4];
};

static int on_chunk(void *arg, const char *b64, size_t len)
{
	struct st *s = arg;
	size_t n;

	if (len >= MAX_LINE)
		abort();
	if (proxy_b64_chunk(b64, len, s->buf, sizeof(s->buf), &n) < 0)
		return VEIL_EFORMAT;
	return n >= 5 && (s->buf[4] & VEIL_SEAL_FLAG_FINAL) ? 1 : 0;
}

static int on_receipt(void *arg, const char *json, size_t len)
{
	struct st *s = arg;

	(void)json;
	if (len >= MAX_LINE || s->receipts++)
		abort(); /* one receipt event at most */
	return 0;
}

static void on_hash(void *arg, const uint8_t *p, size_t n)
{
	struct st *s = arg;

	if (memcmp(s->in + s->hashed, p, n))
		abort(); /* hashed bytes are the input's, in order */
	s->hashed += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct st s;
	struct proxy_sealed_stream ps;
	char code[64], msg[256];
	size_t step, i;
	int rc = 0;

	if (size < 1)
		return 0;
	step = (size_t)(data[0] % 23) + 1;
	data++;
	size--;
	memset(&s, 0, offsetof(struct st, buf));
	s.in = data;
	proxy_sealed_init(&ps, MAX_LINE, on_chunk, on_receipt, on_hash, &s);
	for (i = 0; i < size && rc == 0; i += step)
		rc = proxy_sealed_feed(&ps, data + i, size - i < step ? size - i : step);
	if (s.hashed > size)
		abort();
	if (rc == 0 && proxy_sealed_end(&ps) == 0 &&
	    (size < 14 || memcmp(data + size - 14, "data: [DONE]\n\n", 14) || s.receipts != 1))
		abort();
	proxy_sealed_free(&ps);
	proxy_error_parse(data, size, code, sizeof(code), msg, sizeof(msg));
	if (strlen(code) >= sizeof(code) || strlen(msg) >= sizeof(msg))
		abort();
	return 0;
}
