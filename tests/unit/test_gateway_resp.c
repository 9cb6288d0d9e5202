/* Unit tests of the parser veil-gateway reads its nodes' answers with
 * (gw_resp_*, src/gateway/parse.c, compiled in): framing by Content-Length,
 * chunked coding and connection close, each fed whole and cut at every
 * byte; interim 1xx heads; keep-alive; header lookup; and the refusals
 * (request smuggling shapes, malformed heads, caps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/gateway/parse.c"

/* Feeds p[0..n) in pieces of `piece` bytes (0: whole); body bytes are
 * appended to `body`.  Returns the first error, else 0; *consumed gets
 * the bytes taken (those after a complete answer are not). */
static int feed(struct gw_resp *r, const char *p, size_t n, size_t piece,
		struct veil_buf *body, size_t *consumed)
{
	size_t off = 0;

	while (off < n && r->st != GW_RESP_DONE) {
		size_t k = piece ? VEIL_MIN(piece, n - off) : n - off, used, data;
		int rc = gw_resp_step(r, (const uint8_t *)p + off, k, &used, &data);

		if (rc < 0)
			return rc;
		if (data)
			assert_int_equal(veil_buf_append(body, p + off, data), 0);
		/* progress whenever there is input and the answer is not done */
		assert_true(used > 0 || r->st == GW_RESP_DONE);
		off += used;
	}
	if (consumed)
		*consumed = off;
	return 0;
}

/* Every split of `in` gives `want_body`, status and keep-alive. */
static void check_all_splits(const char *in, int status, const char *want_body,
			     bool keep_alive, enum gw_resp_state end)
{
	size_t n = strlen(in);

	for (size_t piece = 0; piece <= n; piece++) {
		struct gw_resp r;
		struct veil_buf body = VEIL_BUF_INIT(1 << 20);
		size_t used = 0;

		gw_resp_init(&r, 1 << 20);
		assert_int_equal(feed(&r, in, n, piece, &body, &used), 0);
		assert_true(r.head_done);
		assert_int_equal(r.status, status);
		assert_int_equal(r.st, end);
		if (end == GW_RESP_BODY_EOF) {
			assert_int_equal(gw_resp_eof(&r), 0);
			assert_int_equal(r.st, GW_RESP_DONE);
		}
		assert_int_equal(body.len, strlen(want_body));
		assert_memory_equal(body.len ? (const char *)body.data : "", want_body, body.len);
		assert_int_equal(r.keep_alive, keep_alive);
		veil_buf_free(&body);
		gw_resp_free(&r);
	}
}

static void test_content_length(void **st)
{
	(void)st;
	check_all_splits("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Content-Length: 11\r\n\r\n{\"a\":\"bcd\"}",
			 200, "{\"a\":\"bcd\"}", true, GW_RESP_DONE);
	/* bare LF line ends, no reason phrase */
	check_all_splits("HTTP/1.1 503\nContent-Length: 2\n\nno", 503, "no", true, GW_RESP_DONE);
	/* an empty body */
	check_all_splits("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, "", true,
			 GW_RESP_DONE);
}

static void test_chunked(void **st)
{
	(void)st;
	check_all_splits("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
			 "Content-Type: text/event-stream\r\n\r\n"
			 "6\r\ndata: \r\n3;ext=1\r\nabc\r\nA \r\n0123456789\r\n"
			 "0\r\nX-Trailer: 1\r\n\r\n",
			 200, "data: abc0123456789", true, GW_RESP_DONE);
	check_all_splits("HTTP/1.1 200 OK\ntransfer-encoding: Chunked\n\n1\nx\n0\n\n", 200, "x",
			 true, GW_RESP_DONE);
}

static void test_until_close_and_interim(void **st)
{
	(void)st;
	check_all_splits("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", 200,
			 "all of it", false, GW_RESP_BODY_EOF);
	check_all_splits("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\n"
			 "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
			 200, "z", true, GW_RESP_DONE);
	check_all_splits("HTTP/1.1 204 No Content\r\n\r\n", 204, "", true, GW_RESP_DONE);
}

static void test_keep_alive_rules(void **st)
{
	(void)st;
	check_all_splits("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\n"
			 "Content-Length: 1\r\n\r\na", 200, "a", false, GW_RESP_DONE);
	check_all_splits("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na", 200, "a", false,
			 GW_RESP_DONE);
	check_all_splits("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\na",
			 200, "a", true, GW_RESP_DONE);
}

static void test_headers_and_leftover(void **st)
{
	static const char in[] = "HTTP/1.1 200 OK\r\nX-Veil-Receipt:   abc  \r\n"
				 "x-veil-receipt: second\r\nContent-Length: 2\r\n\r\nokEXTRA";
	struct gw_resp r;
	struct veil_buf body = VEIL_BUF_INIT(64);
	size_t used;

	(void)st;
	gw_resp_init(&r, 1024);
	assert_null(gw_resp_header(&r, "X-Veil-Receipt"));
	assert_int_equal(feed(&r, in, strlen(in), 0, &body, &used), 0);
	assert_int_equal(r.st, GW_RESP_DONE);
	/* the bytes after the answer are left for the caller */
	assert_int_equal(used, strlen(in) - 5);
	assert_string_equal(gw_resp_header(&r, "x-VEIL-receipt"), "abc");
	assert_string_equal(gw_resp_header(&r, "content-length"), "2");
	assert_null(gw_resp_header(&r, "Content-Type"));
	assert_string_equal((const char *)body.data, "ok");
	veil_buf_free(&body);
	gw_resp_free(&r);
}

static void test_refusals(void **st)
{
	static const char *const bad[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"HTTP/1.1 099 x\r\n\r\n",
		"HTTP/1.1 101 Switching\r\n\r\n",
		"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1x\r\n",
		"\r\n\r\n",
	};

	(void)st;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(bad); i++) {
		for (size_t piece = 0; piece < 3; piece++) {
			struct gw_resp r;
			struct veil_buf body = VEIL_BUF_INIT(1 << 20);

			gw_resp_init(&r, 1 << 20);
			if (feed(&r, bad[i], strlen(bad[i]), piece, &body, NULL) == 0) {
				print_error("accepted: %s (piece %zu)\n", bad[i], piece);
				fail();
			}
			veil_buf_free(&body);
			gw_resp_free(&r);
		}
	}
}

static void test_caps(void **st)
{
	struct gw_resp r;
	struct veil_buf body = VEIL_BUF_INIT(1 << 20);
	struct veil_buf big = VEIL_BUF_INIT(GW_RESP_HEAD_MAX * 2);
	static const char cl[] = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
	static const char ck[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				 "6\r\n012345\r\n6\r\n012345\r\n0\r\n\r\n";
	static const char eof[] = "HTTP/1.1 200 OK\r\n\r\n0123456789x";

	(void)st;
	/* body caps: declared, chunked, until close */
	gw_resp_init(&r, 10);
	assert_int_equal(feed(&r, cl, strlen(cl), 0, &body, NULL), VEIL_ERANGE);
	gw_resp_free(&r);
	gw_resp_init(&r, 10);
	assert_int_equal(feed(&r, ck, strlen(ck), 0, &body, NULL), VEIL_ERANGE);
	gw_resp_free(&r);
	gw_resp_init(&r, 10);
	assert_int_equal(feed(&r, eof, strlen(eof), 0, &body, NULL), VEIL_ERANGE);
	gw_resp_free(&r);
	/* a head over GW_RESP_HEAD_MAX, whole or in pieces */
	assert_int_equal(veil_buf_append_str(&big, "HTTP/1.1 200 OK\r\nX: "), 0);
	while (big.len < GW_RESP_HEAD_MAX + 10)
		assert_int_equal(veil_buf_append_str(&big, "aaaaaaaaaaaaaaaa"), 0);
	for (size_t piece = 0; piece <= 4096; piece += 4096) {
		gw_resp_init(&r, 10);
		assert_int_equal(feed(&r, (const char *)big.data, big.len, piece, &body, NULL),
				 VEIL_ERANGE);
		gw_resp_free(&r);
	}
	/* a head just under the cap, followed at once by its body */
	veil_buf_reset(&big);
	assert_int_equal(veil_buf_append_str(&big, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: "), 0);
	while (big.len < GW_RESP_HEAD_MAX - 16)
		assert_int_equal(veil_buf_append_str(&big, "a"), 0);
	assert_int_equal(veil_buf_append_str(&big, "\r\n\r\nabc"), 0);
	gw_resp_init(&r, 10);
	veil_buf_reset(&body);
	assert_int_equal(feed(&r, (const char *)big.data, big.len, 0, &body, NULL), 0);
	assert_int_equal(r.st, GW_RESP_DONE);
	assert_string_equal((const char *)body.data, "abc");
	gw_resp_free(&r);
	veil_buf_free(&big);
	veil_buf_free(&body);
}

static void test_eof_mid_answer(void **st)
{
	static const char *const cut[] = {
		"HTTP/1.1 200 OK\r\nContent-Le",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
	};

	(void)st;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(cut); i++) {
		struct gw_resp r;
		struct veil_buf body = VEIL_BUF_INIT(64);

		gw_resp_init(&r, 1024);
		assert_int_equal(feed(&r, cut[i], strlen(cut[i]), 0, &body, NULL), 0);
		assert_int_equal(gw_resp_eof(&r), VEIL_EIO);
		veil_buf_free(&body);
		gw_resp_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content_length),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_until_close_and_interim),
		cmocka_unit_test(test_keep_alive_rules),
		cmocka_unit_test(test_headers_and_leftover),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_eof_mid_answer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
