/* libFuzzer harness for what veil-gateway reads in a relayed answer
 * (src/gateway/parse.c, compiled in): the raw SSE framer, fed in pieces
 * whose size comes from byte 0, must hand back exactly the input bytes, in
 * order, as whole events plus what is pending, and agree with a feed of the
 * whole input at once; every event is classified (receipt extraction
 * included); and the X-Veil-Receipt header decoder runs on the same bytes. */
#include <stdlib.h>
#include <string.h>

#include "../../src/gateway/parse.c"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			abort();                                               \
	} while (0)

struct acc {
	struct veil_buf all;
	size_t events;
};

static int on_event(void *arg, const uint8_t *raw, size_t n)
{
	struct acc *a = arg;
	struct veil_buf r = VEIL_BUF_INIT(VEIL_STORE_RECEIPT_MAX);
	enum gw_ev_kind k;

	CHECK(n > 0);
	CHECK(veil_buf_append(&a->all, raw, n) == 0);
	if (gw_sse_classify(raw, n, &k, &r) == 0) {
		CHECK(k <= GW_EV_OTHER);
		CHECK(k == GW_EV_RECEIPT || r.len == 0);
	}
	veil_buf_free(&r);
	a->events++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	struct gw_framer f1, f2;
	struct acc a1 = {VEIL_BUF_INIT(1 << 20), 0}, a2 = {VEIL_BUF_INIT(1 << 20), 0};
	struct veil_buf hdr = VEIL_BUF_INIT(VEIL_STORE_RECEIPT_MAX);
	size_t step, i;
	int r1 = 0, r2;

	if (n == 0 || n > (64u << 10))
		return 0;
	step = (size_t)(p[0] % 23) + 1;
	p++;
	n--;
	gw_framer_init(&f1, 4096);
	gw_framer_init(&f2, 4096);
	for (i = 0; i < n && r1 == 0; i += step)
		r1 = gw_framer_feed(&f1, p + i, VEIL_MIN(step, n - i), on_event, &a1);
	r2 = gw_framer_feed(&f2, p, n, on_event, &a2);
	CHECK((r1 == 0) == (r2 == 0));
	if (r1 == 0) {
		/* nothing lost, nothing changed, same cuts */
		CHECK(a1.all.len + gw_framer_pending(&f1) == n);
		CHECK(a1.all.len == 0 || !memcmp(a1.all.data, p, a1.all.len));
		CHECK(a2.all.len + gw_framer_pending(&f2) == n);
		CHECK(a1.events == a2.events);
	}
	gw_receipt_from_header((const char *)p, n, &hdr);
	veil_buf_free(&hdr);
	gw_framer_free(&f1);
	gw_framer_free(&f2);
	veil_buf_free(&a1.all);
	veil_buf_free(&a2.all);
	return 0;
}
