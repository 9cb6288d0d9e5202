/* libFuzzer harness for the hconn response parser (veil_hconn_resp_*,
 * src/lib/http/hconn_resp.c; veil-gateway and veil-proxy read their
 * upstream answers with it): the input after byte 0 is fed in pieces whose
 * size comes from byte 0, and again whole; both must agree (error or not,
 * status, body bytes, how much was consumed, the end state), the body must
 * be a run of input bytes in order and never pass the cap, and header
 * lookups must stay inside the head. */
#include <stdlib.h>
#include <string.h>

#include "veil/hconn.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			abort();                                               \
	} while (0)

#define CAP 4096

struct run {
	struct veil_hconn_resp r;
	struct veil_buf body;
	size_t used;
	int rc;
};

static void run(struct run *x, const uint8_t *p, size_t n, size_t step)
{
	size_t off = 0;

	veil_hconn_resp_init(&x->r, CAP);
	x->body = (struct veil_buf)VEIL_BUF_INIT(1 << 20);
	x->rc = 0;
	while (off < n && x->r.st != VEIL_HCONN_RESP_DONE) {
		size_t k = VEIL_MIN(step, n - off), used, data;

		x->rc = veil_hconn_resp_step(&x->r, p + off, k, &used, &data);
		if (x->rc < 0)
			break;
		CHECK(used <= k);
		CHECK(data == 0 || data == used);
		CHECK(used > 0 || x->r.st == VEIL_HCONN_RESP_DONE);
		if (data)
			CHECK(veil_buf_append(&x->body, p + off, data) == 0);
		off += used;
	}
	x->used = off;
	if (x->rc == 0 && x->r.st != VEIL_HCONN_RESP_DONE)
		x->rc = veil_hconn_resp_eof(&x->r) < 0 ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	struct run a, b;
	size_t step;

	if (n == 0 || n > (256u << 10))
		return 0;
	step = (size_t)(p[0] % 31) + 1;
	p++;
	n--;
	run(&a, p, n, step);
	run(&b, p, n, n ? n : 1);
	CHECK((a.rc == 0) == (b.rc == 0));
	if (a.rc == 0) {
		CHECK(a.r.head_done && b.r.head_done);
		CHECK(a.r.status == b.r.status && a.r.status >= 200 && a.r.status <= 999);
		CHECK(a.r.keep_alive == b.r.keep_alive);
		CHECK(a.used == b.used);
		CHECK(a.body.len == b.body.len && a.body.len <= CAP);
		CHECK(a.body.len == 0 || !memcmp(a.body.data, b.body.data, a.body.len));
		/* lookups land inside the head, NUL-terminated */
		for (size_t i = 0; i < a.r.nhdr; i++) {
			const char *nm = (const char *)a.r.head.data + a.r.hdr[i][0];
			const char *v = veil_hconn_resp_header(&a.r, nm);

			CHECK(v && v >= (const char *)a.r.head.data &&
			      v < (const char *)a.r.head.data + a.r.head.len);
		}
		CHECK(!veil_hconn_resp_header(&a.r, "no such field"));
	}
	veil_hconn_resp_free(&a.r);
	veil_hconn_resp_free(&b.r);
	veil_buf_free(&a.body);
	veil_buf_free(&b.body);
	return 0;
}
