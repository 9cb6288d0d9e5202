/* Unit tests of the base module. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "veil/base.h"

static void test_strerror_names_every_code(void **state)
{
	(void)state;
	for (int rc = 0; rc >= VEIL_EINTERNAL; rc--)
		assert_string_not_equal(veil_strerror(rc), "unknown error");
	assert_string_equal(veil_strerror(-999), "unknown error");
}

static void test_errf_returns_code_and_keeps_detail(void **state)
{
	(void)state;
	assert_int_equal(veil_errf(VEIL_EFORMAT, "key %s: bad", "x.y"), VEIL_EFORMAT);
	assert_string_equal(veil_err_detail(), "key x.y: bad");
	veil_err_clear();
	assert_string_equal(veil_err_detail(), "");
}

static void test_buf_refuses_to_grow_past_cap(void **state)
{
	struct veil_buf b = VEIL_BUF_INIT(10);

	(void)state;
	assert_int_equal(veil_buf_append(&b, "0123456789", 10), 0);
	assert_int_equal(b.len, 10);
	assert_string_equal((char *)b.data, "0123456789");
	assert_int_equal(veil_buf_append(&b, "a", 1), VEIL_ERANGE);
	assert_int_equal(b.len, 10); /* nothing lost, nothing added */
	veil_buf_free(&b);
	assert_null(b.data);
}

static void test_buf_appendf_formats_and_terminates(void **state)
{
	struct veil_buf b = VEIL_BUF_INIT(1 << 20);

	(void)state;
	for (int i = 0; i < 1000; i++)
		assert_int_equal(veil_buf_appendf(&b, "%d,", i), 0);
	assert_int_equal(b.len, strlen((char *)b.data));
	assert_memory_equal(b.data, "0,1,2,", 6);
	assert_int_equal(veil_buf_appendf(&b, "%s", ""), 0);
	veil_buf_free(&b);
}

static void test_buf_appendf_respects_cap(void **state)
{
	struct veil_buf b = VEIL_BUF_INIT(8);

	(void)state;
	assert_int_equal(veil_buf_appendf(&b, "%s", "123456789"), VEIL_ERANGE);
	assert_int_equal(b.len, 0);
	veil_buf_free(&b);
}

static void test_buf_secret_reset_wipes(void **state)
{
	struct veil_buf b = VEIL_BUF_SECRET_INIT(64);

	(void)state;
	assert_int_equal(veil_buf_append(&b, "topsecret", 9), 0);
	veil_buf_reset(&b);
	assert_int_equal(b.len, 0);
	for (size_t i = 0; i < b.cap; i++)
		assert_int_equal(b.data[i], 0);
	veil_buf_free(&b);
}

static void test_buf_steal_transfers_ownership(void **state)
{
	struct veil_buf b = VEIL_BUF_INIT(64);
	size_t n;
	uint8_t *p;

	(void)state;
	assert_int_equal(veil_buf_append_str(&b, "abc"), 0);
	p = veil_buf_steal(&b, &n);
	assert_int_equal(n, 3);
	assert_null(b.data);
	free(p);
}

static void test_buf_read_file_enforces_cap(void **state)
{
	char path[] = "/tmp/veil-test-XXXXXX";
	int fd = mkstemp(path);
	struct veil_buf small = VEIL_BUF_INIT(99), big = VEIL_BUF_INIT(100);
	char data[100];

	(void)state;
	assert_true(fd >= 0);
	memset(data, 'x', sizeof(data));
	assert_int_equal(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
	close(fd);
	assert_int_equal(veil_buf_read_file(&small, path), VEIL_ERANGE);
	assert_int_equal(veil_buf_read_file(&big, path), 0);
	assert_int_equal(big.len, 100);
	assert_int_equal(veil_buf_read_file(&big, "/nonexistent/veil"), VEIL_ENOENT);
	unlink(path);
	veil_buf_free(&small);
	veil_buf_free(&big);
}

static void test_hex_round_trip_and_errors(void **state)
{
	uint8_t in[] = {0x00, 0x01, 0xab, 0xff}, out[4];
	char hex[9];
	size_t n;

	(void)state;
	assert_int_equal(veil_hex_encode(in, 4, hex, sizeof(hex)), 0);
	assert_string_equal(hex, "0001abff");
	assert_int_equal(veil_hex_encode(in, 4, hex, 8), VEIL_ERANGE);
	assert_int_equal(veil_hex_decode("0001ABff", 8, out, sizeof(out), &n), 0);
	assert_int_equal(n, 4);
	assert_memory_equal(in, out, 4);
	assert_int_equal(veil_hex_decode("abc", 3, out, sizeof(out), &n), VEIL_EFORMAT);
	assert_int_equal(veil_hex_decode("zz", 2, out, sizeof(out), &n), VEIL_EFORMAT);
	assert_int_equal(veil_hex_decode("0011223344", 10, out, 4, &n), VEIL_ERANGE);
}

/* The table-driven decoder against plain comparisons, on every pair of
 * bytes: the value of each good pair, a refusal for every other (and the
 * position of the first bad character in the message). */
static int ref_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void test_hex_decode_matches_comparisons_on_every_pair(void **state)
{
	(void)state;
	for (int a = 0; a < 256; a++) {
		for (int b = 0; b < 256; b++) {
			char s[4] = {'0', '0', (char)a, (char)b};
			int ha = ref_hexval(a), hb = ref_hexval(b);
			uint8_t out[2];
			size_t n = 0;
			int rc = veil_hex_decode(s, 4, out, sizeof(out), &n);

			if (ha < 0 || hb < 0) {
				assert_int_equal(rc, VEIL_EFORMAT);
				assert_non_null(strstr(veil_err_detail(), ha < 0 ? "at 2" : "at 3"));
			} else {
				assert_int_equal(rc, 0);
				assert_int_equal(n, 2);
				assert_int_equal(out[0], 0);
				assert_int_equal(out[1], ha << 4 | hb);
			}
		}
	}
}

static void test_hex_text_accepts_0x_and_whitespace_and_refuses_garbage(void **state)
{
	struct veil_buf b = VEIL_BUF_INIT(16), small = VEIL_BUF_INIT(1);

	(void)state;
	assert_int_equal(veil_hex_text_decode(" \n0xAB cd\n\tef\n", 14, &b), 0);
	assert_int_equal(b.len, 3);
	assert_memory_equal(b.data, "\xab\xcd\xef", 3);
	assert_int_equal(veil_hex_text_decode("abc", 3, &b), VEIL_EFORMAT);
	assert_int_equal(veil_hex_text_decode("ab zz", 5, &b), VEIL_EFORMAT);
	assert_int_equal(b.len, 3); /* a failed decode leaves out as it was */
	assert_int_equal(veil_hex_text_decode("  \n", 3, &b), 0);
	assert_int_equal(b.len, 3);
	assert_int_equal(veil_hex_text_decode("0102", 4, &small), VEIL_ERANGE);
	assert_int_equal(small.len, 0);
	veil_buf_free(&b);
	veil_buf_free(&small);
}

/* RFC 4648 §10 test vectors. */
static void test_base64_rfc4648_vectors(void **state)
{
	static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	char out[16];
	uint8_t dec[16];
	size_t n;

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(plain); i++) {
		assert_int_equal(veil_b64_encode((const uint8_t *)plain[i], strlen(plain[i]),
						 0, out, sizeof(out)), 0);
		assert_string_equal(out, enc[i]);
		assert_int_equal(veil_b64_decode(enc[i], strlen(enc[i]), 0, dec,
						 sizeof(dec), &n), 0);
		assert_int_equal(n, strlen(plain[i]));
		assert_memory_equal(dec, plain[i], n);
	}
}

static void test_base64_url_nopad_and_rejects_garbage(void **state)
{
	uint8_t in[] = {0xfb, 0xff}, dec[8];
	char out[8];
	size_t n;

	(void)state;
	assert_int_equal(veil_b64_encode(in, 2, VEIL_B64_URL | VEIL_B64_NOPAD, out, sizeof(out)), 0);
	assert_string_equal(out, "-_8");
	assert_int_equal(veil_b64_decode("-_8", 3, VEIL_B64_URL | VEIL_B64_NOPAD, dec, sizeof(dec), &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(dec, in, 2);
	assert_int_equal(veil_b64_decode("Zm9", 3, 0, dec, sizeof(dec), &n), VEIL_EFORMAT);
	assert_int_equal(veil_b64_decode("Zm9*", 4, 0, dec, sizeof(dec), &n), VEIL_EFORMAT);
	assert_int_equal(veil_b64_decode("Zh==", 4, 0, dec, sizeof(dec), &n), VEIL_EFORMAT);
	assert_int_equal(veil_b64_decode("Z===", 4, 0, dec, sizeof(dec), &n), VEIL_EFORMAT);
	assert_int_equal(veil_b64_decode("Zm9vYmFy", 8, 0, dec, 5, &n), VEIL_ERANGE);
}

/* The decoder before it became table-driven: a bit at a time, one
 * branchy lookup per character.  The reference the table must agree with. */
static int ref_b64val(char c, bool url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

static int ref_b64_decode(const char *s, size_t len, unsigned flags, uint8_t *out,
			  size_t outcap, size_t *outlen)
{
	bool url = flags & VEIL_B64_URL;
	size_t pad = 0, o = 0, ndata;
	uint32_t acc = 0;
	int bits = 0;

	while (pad < 2 && len > pad && s[len - 1 - pad] == '=')
		pad++;
	if ((pad && len % 4) || (!pad && !(flags & VEIL_B64_NOPAD) && len % 4))
		return VEIL_EFORMAT;
	ndata = len - pad;
	if (ndata % 4 == 1)
		return VEIL_EFORMAT;
	if (outcap < ndata / 4 * 3 + (ndata % 4 ? ndata % 4 - 1 : 0))
		return VEIL_ERANGE;
	for (size_t i = 0; i < ndata; i++) {
		int v = ref_b64val(s[i], url);

		if (v < 0)
			return VEIL_EFORMAT;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	if (bits && (acc & ((1u << bits) - 1)))
		return VEIL_EFORMAT;
	*outlen = o;
	return 0;
}

/* Every string up to 5 characters over an alphabet with the edge cases
 * (both alphabets' 62/63, padding, a space, bytes >= 0x80), under every
 * flag, then random longer ones: same verdict, same bytes. */
static void test_base64_decode_agrees_with_bitwise_reference(void **state)
{
	static const char alpha[] = "AQgw_-=+/9z \xff";
	const size_t na = sizeof(alpha) - 1;
	uint8_t a[96], b[96];
	char s[128];
	size_t total = 1, accepted = 0;

	(void)state;
	for (size_t len = 0; len <= 5; len++, total *= na) {
		for (size_t k = 0; k < total; k++) {
			size_t x = k;

			for (size_t i = 0; i < len; i++, x /= na)
				s[i] = alpha[x % na];
			for (unsigned fl = 0; fl < 4; fl++) {
				size_t na_out = 0, nb_out = 0;
				int ra = veil_b64_decode(s, len, fl, a, sizeof(a), &na_out);
				int rb = ref_b64_decode(s, len, fl, b, sizeof(b), &nb_out);

				assert_int_equal(ra, rb);
				if (ra == 0) {
					accepted++;
					assert_int_equal(na_out, nb_out);
					assert_memory_equal(a, b, na_out);
				}
			}
		}
	}
	assert_true(accepted > 1000);
	for (int r = 0; r < 20000; r++) {
		uint8_t raw[90], pick;
		size_t len, na_out = 0, nb_out = 0;
		unsigned fl = (unsigned)r & 3;

		assert_int_equal(veil_random(raw, sizeof(raw)), 0);
		len = raw[0] % 90;
		assert_int_equal(veil_b64_encode(raw, len, fl, s, sizeof(s)), 0);
		len = strlen(s);
		pick = raw[1];
		if (len && pick < 96) /* sometimes one character spoiled */
			s[pick % len] = alpha[raw[2] % na];
		if (len && pick >= 96 && pick < 128)
			len--; /* sometimes one short */
		assert_int_equal(veil_b64_decode(s, len, fl, a, sizeof(a), &na_out),
				 ref_b64_decode(s, len, fl, b, sizeof(b), &nb_out));
		assert_int_equal(na_out, nb_out);
		assert_memory_equal(a, b, na_out);
	}
	/* the first bad character is named */
	assert_int_equal(veil_b64_decode("AAAAAA*A", 8, 0, a, sizeof(a), &total), VEIL_EFORMAT);
	assert_non_null(strstr(veil_err_detail(), "at 6"));
}

static void test_random_fills_and_differs(void **state)
{
	uint8_t a[64] = {0}, b[64] = {0};

	(void)state;
	assert_int_equal(veil_random(a, sizeof(a)), 0);
	assert_int_equal(veil_random(b, sizeof(b)), 0);
	assert_memory_not_equal(a, b, sizeof(a));
}

static void test_wipe_and_secret_free(void **state)
{
	struct veil_secret s = {0};
	uint8_t x[16];

	(void)state;
	memset(x, 0xaa, sizeof(x));
	veil_wipe(x, sizeof(x));
	for (size_t i = 0; i < sizeof(x); i++)
		assert_int_equal(x[i], 0);
	assert_int_equal(veil_secret_alloc(&s, 32), 0);
	assert_int_equal(s.len, 32);
	veil_secret_free(&s);
	assert_null(s.bytes);
	veil_secret_free(&s); /* twice is safe */
}

static void test_monotonic_time_advances(void **state)
{
	uint64_t a = veil_now_ns(), b;

	(void)state;
	usleep(1000);
	b = veil_now_ns();
	assert_true(b - a >= 1000000);
	assert_true(veil_wall_ms() > 1600000000000ull);
}

/* An unbuffered stream, as stderr is, counting the writes it is given. */
static ssize_t count_write(void *c, const char *buf, size_t n)
{
	(void)buf;
	(*(int *)c)++;
	return (ssize_t)n;
}

/* One event, one write: on unbuffered stderr a write per character was a
 * system call per character (~100 per line, on every request's path). */
static void test_log_line_is_one_write(void **state)
{
	cookie_io_functions_t io = {.write = count_write};
	int writes = 0;
	FILE *f = fopencookie(&writes, "w", io);

	(void)state;
	assert_non_null(f);
	assert_int_equal(setvbuf(f, NULL, _IONBF, 0), 0);
	for (int json = 0; json < 2; json++) {
		writes = 0;
		veil_log_setup(VEIL_LOG_INFO, json, f);
		VEIL_INFO("test", "a line of %d words, a quote \" and a\nnewline", 12);
		assert_int_equal(writes, 1);
	}
	veil_log_setup(VEIL_LOG_INFO, false, NULL);
	fclose(f);
}

static void test_log_json_lines_escape_and_filter(void **state)
{
	char *mem = NULL;
	size_t memlen = 0;
	FILE *f = open_memstream(&mem, &memlen);

	(void)state;
	assert_non_null(f);
	veil_log_setup(VEIL_LOG_INFO, true, f);
	VEIL_DEBUG("test", "hidden %d", 1);
	VEIL_INFO("test", "quote \" and\nnewline");
	fflush(f);
	assert_null(strstr(mem, "hidden"));
	assert_non_null(strstr(mem, "\"level\":\"info\""));
	assert_non_null(strstr(mem, "\"msg\":\"quote \\\" and\\nnewline\""));
	assert_int_equal(mem[memlen - 1], '\n');
	veil_log_setup(VEIL_LOG_INFO, false, NULL);
	fclose(f);
	free(mem);
	/* text: a message quoting a peer cannot forge a line of its own */
	mem = NULL;
	memlen = 0;
	assert_non_null(f = open_memstream(&mem, &memlen));
	veil_log_setup(VEIL_LOG_INFO, false, f);
	VEIL_WARN("test", "peer said: %s", "busy\n2026-01-01T00:00:00.000Z info  proxy: verified\r\x7f");
	fflush(f);
	assert_non_null(strstr(mem, "peer said: busy\\x0a2026-01-01T00:00:00.000Z info  proxy: "
				    "verified\\x0d\\x7f\n"));
	assert_ptr_equal(strchr(mem, '\n'), mem + memlen - 1);
	veil_log_setup(VEIL_LOG_INFO, false, NULL);
	fclose(f);
	free(mem);
	assert_int_equal(veil_log_level_parse("warn"), VEIL_LOG_WARN);
	assert_int_equal(veil_log_level_parse("loud"), -1);
}

static void test_checked_arithmetic_detects_overflow(void **state)
{
	size_t r;

	(void)state;
	assert_true(veil_add_ovf(SIZE_MAX, 1, &r));
	assert_false(veil_add_ovf(1, 2, &r));
	assert_int_equal(r, 3);
	assert_true(veil_mul_ovf(SIZE_MAX / 2 + 1, 2, &r));
	assert_true(veil_cpu_count() >= 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strerror_names_every_code),
		cmocka_unit_test(test_errf_returns_code_and_keeps_detail),
		cmocka_unit_test(test_buf_refuses_to_grow_past_cap),
		cmocka_unit_test(test_buf_appendf_formats_and_terminates),
		cmocka_unit_test(test_buf_appendf_respects_cap),
		cmocka_unit_test(test_buf_secret_reset_wipes),
		cmocka_unit_test(test_buf_steal_transfers_ownership),
		cmocka_unit_test(test_buf_read_file_enforces_cap),
		cmocka_unit_test(test_hex_round_trip_and_errors),
		cmocka_unit_test(test_hex_decode_matches_comparisons_on_every_pair),
		cmocka_unit_test(test_hex_text_accepts_0x_and_whitespace_and_refuses_garbage),
		cmocka_unit_test(test_base64_rfc4648_vectors),
		cmocka_unit_test(test_base64_url_nopad_and_rejects_garbage),
		cmocka_unit_test(test_base64_decode_agrees_with_bitwise_reference),
		cmocka_unit_test(test_random_fills_and_differs),
		cmocka_unit_test(test_wipe_and_secret_free),
		cmocka_unit_test(test_monotonic_time_advances),
		cmocka_unit_test(test_log_json_lines_escape_and_filter),
		cmocka_unit_test(test_log_line_is_one_write),
		cmocka_unit_test(test_checked_arithmetic_detects_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
