/* Unit tests of veil-gateway's parsers (src/gateway/parse.c, compiled in
 * here: the gateway is a program, not a library): node URLs and ids, the
 * --nodes file, admin bodies, query times, the X-Veil-Receipt header, the
 * raw SSE framer (bytes never changed, events cut at any split), the
 * classification that finds receipts and [DONE] in a relayed stream, and
 * the canonical receipt reader (gw_receipt_fast: a strict subset of
 * veil_receipt_parse, checked against it on every one-byte change of a
 * node's receipt). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/receipt.h"
#include "veil/sign.h"

#include "../../src/gateway/parse.c"

static void test_url_check_accepts_base_urls(void **st)
{
	char out[VEIL_STORE_URL_MAX + 1];
	bool https;

	(void)st;
	assert_int_equal(gw_url_check("https://127.0.0.1:8443", 22, out, sizeof(out), &https), 0);
	assert_true(https);
	assert_string_equal(out, "https://127.0.0.1:8443");
	assert_int_equal(gw_url_check("http://node-1.example:80/", 25, out, sizeof(out), &https), 0);
	assert_false(https);
	assert_string_equal(out, "http://node-1.example:80");
	assert_int_equal(gw_url_check("https://[::1]:9", 15, out, sizeof(out), &https), 0);
	assert_string_equal(out, "https://[::1]:9");
	assert_int_equal(gw_url_check("https://host", 12, out, sizeof(out), &https), 0);
}

static void test_url_check_refuses_everything_else(void **st)
{
	static const char *const bad[] = {
		"", "ftp://x", "https://", "https:///", "https://a:0", "https://a:65536",
		"https://a:", "https://a/v1", "https://u@a", "https://a?x=1", "https://a#f",
		"https://a b", "http://[::1", "http://[]:1", "https://a:1/x/", "https://a\n",
	};
	char out[VEIL_STORE_URL_MAX + 1];
	bool https = false;

	(void)st;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(bad); i++) {
		memset(out, 'Z', sizeof(out));
		assert_int_not_equal(gw_url_check(bad[i], strlen(bad[i]), out, sizeof(out), &https), 0);
		assert_int_equal(out[0], 'Z'); /* untouched on failure */
	}
}

static void test_ids_and_models(void **st)
{
	char id[GW_NODE_ID_MAX + 1];
	char longid[GW_NODE_ID_MAX + 2];

	(void)st;
	assert_true(gw_node_id_valid("node-a_1.x"));
	assert_false(gw_node_id_valid(""));
	assert_false(gw_node_id_valid("a/b"));
	assert_false(gw_node_id_valid("a b"));
	memset(longid, 'a', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	assert_false(gw_node_id_valid(longid));
	assert_true(gw_model_valid("stories260K", 11));
	assert_false(gw_model_valid("a b", 3));
	assert_false(gw_model_valid("a\"b", 3));
	assert_false(gw_model_valid("", 0));
	gw_node_default_id("https://127.0.0.1:1", id);
	assert_int_equal(strlen(id), 14);
	assert_memory_equal(id, "n-", 2);
	assert_true(gw_node_id_valid(id));
}

static int parse_nodes(const char *s, struct gw_node_spec **v, size_t *n)
{
	return gw_parse_nodes((const uint8_t *)s, strlen(s), v, n);
}

static void test_nodes_file(void **st)
{
	struct gw_node_spec *v = NULL;
	size_t n = 0;

	(void)st;
	assert_int_equal(parse_nodes("[{\"url\":\"https://a:1/\",\"model\":\"m\"},"
				     "{\"url\":\"http://b:2\",\"model\":\"m2\",\"id\":\"bee\"}]",
				     &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].url, "https://a:1");
	assert_true(v[0].https);
	assert_memory_equal(v[0].id, "n-", 2);
	assert_string_equal(v[1].id, "bee");
	assert_false(v[1].https);
	assert_string_equal(v[1].model, "m2");
	free(v);
	assert_int_equal(parse_nodes("[]", &v, &n), 0);
	assert_int_equal(n, 0);
	assert_null(v);
}

static void test_nodes_file_refusals_name_the_entry(void **st)
{
	static const char *const bad[] = {
		"{}",
		"[{\"url\":\"https://a\"}]",
		"[{\"model\":\"m\"}]",
		"[{\"url\":\"https://a\",\"model\":\"m\",\"weight\":2}]",
		"[{\"url\":\"https://a\",\"model\":\"m\",\"id\":\"x\"},{\"url\":\"https://b\",\"model\":\"m\",\"id\":\"x\"}]",
		"[{\"url\":\"https://a\",\"model\":\"m\",\"id\":\"a/b\"}]",
		"[{\"url\":\"https://a\",\"model\":\"m\\u0000x\"}]",
		"[{\"url\":\"https://a\",\"url\":\"https://b\",\"model\":\"m\"}]",
		"[1]",
		"[",
	};
	struct gw_node_spec *v = NULL;
	size_t n = 0;

	(void)st;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(bad); i++) {
		assert_true(parse_nodes(bad[i], &v, &n) < 0);
		assert_null(v);
	}
	assert_true(parse_nodes("[{\"url\":\"https://a\",\"model\":\"m\"},{\"url\":\"ftp://b\",\"model\":\"m\"}]",
				&v, &n) < 0);
	assert_non_null(strstr(veil_err_detail(), "nodes[1]"));
	assert_non_null(strstr(veil_err_detail(), "url"));
}

static void test_key_body(void **st)
{
	char name[VEIL_STORE_NAME_MAX + 1];
	struct veil_store_limits l;
	bool hl;
	const char *ok = "{\"name\":\"team a\",\"limits\":{\"requests_per_min\":5,\"quota_tokens\":100}}";
	const char *lim = "{\"tokens_per_min\":7}";

	(void)st;
	assert_int_equal(gw_parse_key_body((const uint8_t *)ok, strlen(ok), name, sizeof(name),
					   &l, &hl), 0);
	assert_string_equal(name, "team a");
	assert_true(hl);
	assert_int_equal(l.requests_per_min, 5);
	assert_int_equal(l.tokens_per_min, 0);
	assert_int_equal(l.quota_tokens, 100);
	assert_int_equal(gw_parse_key_body((const uint8_t *)lim, strlen(lim), NULL, 0, &l, &hl), 0);
	assert_int_equal(l.tokens_per_min, 7);
	static const char *const bad[] = {
		"{}", "{\"name\":\"\"}", "{\"name\":1}", "{\"name\":\"a\",\"x\":1}",
		"{\"name\":\"a\",\"limits\":{\"rpm\":1}}", "{\"name\":\"a\",\"limits\":{\"requests_per_min\":-1}}",
		"{\"name\":\"a\\n\"}", "[]", "",
	};
	for (size_t i = 0; i < VEIL_ARRAY_LEN(bad); i++)
		assert_true(gw_parse_key_body((const uint8_t *)bad[i], strlen(bad[i]), name,
					      sizeof(name), &l, &hl) < 0);
}

static void test_times(void **st)
{
	int64_t ms = 0;

	(void)st;
	assert_int_equal(gw_parse_time("1700000000", &ms), 0);
	assert_true(ms == 1700000000000LL);
	assert_int_equal(gw_parse_time("0", &ms), 0);
	assert_true(gw_parse_time("", &ms) < 0);
	assert_true(gw_parse_time("-1", &ms) < 0);
	assert_true(gw_parse_time("12a", &ms) < 0);
	assert_true(gw_parse_time("99999999999999999999", &ms) < 0);
}

static void test_receipt_header(void **st)
{
	struct veil_buf b = VEIL_BUF_INIT(VEIL_STORE_RECEIPT_MAX);

	(void)st;
	/* base64url("{\"a\":1}") without padding */
	assert_int_equal(gw_receipt_from_header("eyJhIjoxfQ", 10, &b), 0);
	assert_int_equal(b.len, 7);
	assert_memory_equal(b.data, "{\"a\":1}", 7);
	veil_buf_reset(&b);
	assert_true(gw_receipt_from_header("ey+/", 4, &b) < 0);
	assert_true(gw_receipt_from_header("", 0, &b) < 0);
	veil_buf_free(&b);
}

/* The header's own decoder takes exactly what veil_b64_decode (base64url,
 * padding optional) takes, with the same bytes: every string of up to 5
 * characters over an alphabet with its edge cases, and longer ones. */
static void test_receipt_header_decodes_as_the_library(void **st)
{
	static const char alpha[] = "AQgw_-=+/9z ";
	const size_t na = sizeof(alpha) - 1;
	struct veil_buf b = VEIL_BUF_INIT(VEIL_STORE_RECEIPT_MAX);
	uint8_t ref[64];
	char s[64];
	size_t total = 1, ok = 0;

	(void)st;
	for (size_t len = 1; len <= 5; len++) {
		total *= na;
		for (size_t k = 0; k < total; k++) {
			size_t x = k, got = 0;
			int want, have;

			for (size_t i = 0; i < len; i++, x /= na)
				s[i] = alpha[x % na];
			want = veil_b64_decode(s, len, VEIL_B64_URL | VEIL_B64_NOPAD, ref,
					       sizeof(ref), &got);
			veil_buf_reset(&b);
			assert_int_equal(veil_buf_append(&b, "p", 1), 0);
			have = gw_receipt_from_header(s, len, &b);
			assert_int_equal(want == 0, have == 0);
			if (have == 0) {
				ok++;
				assert_int_equal(b.len, 1 + got);
				assert_memory_equal(b.data + 1, ref, got);
			} else {
				assert_int_equal(b.len, 1); /* nothing appended */
			}
		}
	}
	assert_true(ok > 1000);
	veil_buf_reset(&b);
	assert_int_equal(gw_receipt_from_header("eyJhIjoxfQ==", 12, &b), 0);
	assert_memory_equal(b.data, "{\"a\":1}", 7);
	veil_buf_free(&b);
}

/* ---- the framer --------------------------------------------------------------- */

struct collect {
	struct veil_buf all;   /* concatenation of the events */
	int n;
	char kinds[64];
};

static int collect_cb(void *arg, const uint8_t *raw, size_t n)
{
	struct collect *c = arg;
	enum gw_ev_kind k;

	veil_buf_append(&c->all, raw, n);
	if (gw_sse_classify(raw, n, &k, NULL) == 0 && c->n < 63)
		c->kinds[c->n] = "DNREO"[k]; /* Data, doNe, Receipt, Error, Other */
	c->n++;
	return 0;
}

static const char STREAM[] =
	": keep-alive\n\n"
	"data: {\"id\":\"x\",\"choices\":[]}\n\n"
	"event: error\r\ndata: {\"error\":{}}\r\n\r\n"
	"data: a\rdata: b\r\r"
	"data: {\"id\":\"x\",\"object\":\"veil.receipt\",\"veil_receipt\":{\"payload\":\"p\"}}\n\n"
	"data: [DONE]\n\n";

static void test_framer_cuts_events_at_any_split(void **st)
{
	size_t len = strlen(STREAM);

	(void)st;
	for (size_t step = 1; step <= len; step++) {
		struct gw_framer f;
		struct collect c = {VEIL_BUF_INIT(1 << 16), 0, {0}};

		gw_framer_init(&f, 4096);
		for (size_t i = 0; i < len; i += step)
			assert_int_equal(gw_framer_feed(&f, (const uint8_t *)STREAM + i,
							VEIL_MIN(step, len - i), collect_cb, &c), 0);
		assert_int_equal(gw_framer_pending(&f), 0);
		/* bytes never change, nothing is lost */
		assert_int_equal(c.all.len, len);
		assert_memory_equal(c.all.data, STREAM, len);
		assert_int_equal(c.n, 6);
		assert_string_equal(c.kinds, "ODEDRN");
		gw_framer_free(&f);
		veil_buf_free(&c.all);
	}
}

static void test_framer_keeps_an_unfinished_event_and_caps_size(void **st)
{
	struct gw_framer f;
	struct collect c = {VEIL_BUF_INIT(1 << 16), 0, {0}};
	char big[300];

	(void)st;
	gw_framer_init(&f, 256);
	assert_int_equal(gw_framer_feed(&f, (const uint8_t *)"data: x\n\ndata: y\n", 17,
					collect_cb, &c), 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(gw_framer_pending(&f), 8); /* a cut stream shows this */
	memset(big, 'a', sizeof(big));
	assert_int_equal(gw_framer_feed(&f, (const uint8_t *)big, sizeof(big), collect_cb, &c),
			 VEIL_ERANGE);
	assert_int_equal(gw_framer_feed(&f, (const uint8_t *)"\n\n", 2, collect_cb, &c),
			 VEIL_ERANGE); /* failed stays failed */
	gw_framer_free(&f);
	veil_buf_free(&c.all);
}

static void test_classify_finds_receipts(void **st)
{
	struct veil_buf r = VEIL_BUF_INIT(4096);
	enum gw_ev_kind k;
	const char *sealed = "event: veil.receipt\ndata: {\"payload\":\"x\"}\n\n";
	const char *plain = "data: {\"id\":\"c\",\"object\":\"veil.receipt\",\"choices\":[],"
			    "\"veil_receipt\":{\"payload\":\"y\"}}\n\n";
	const char *content = "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"veil.receipt\\\"\"}}]}\n\n";
	const char *nested = "data: {\"x\":{\"object\":\"veil.receipt\"},\"veil_receipt\":{}}\n\n";

	(void)st;
	assert_int_equal(gw_sse_classify((const uint8_t *)sealed, strlen(sealed), &k, &r), 0);
	assert_int_equal(k, GW_EV_RECEIPT);
	assert_int_equal(r.len, strlen("{\"payload\":\"x\"}"));
	assert_memory_equal(r.data, "{\"payload\":\"x\"}", r.len);
	veil_buf_reset(&r);
	assert_int_equal(gw_sse_classify((const uint8_t *)plain, strlen(plain), &k, &r), 0);
	assert_int_equal(k, GW_EV_RECEIPT);
	assert_memory_equal(r.data, "{\"payload\":\"y\"}", r.len);
	veil_buf_reset(&r);
	/* a model that writes "veil.receipt" makes no receipt */
	assert_int_equal(gw_sse_classify((const uint8_t *)content, strlen(content), &k, &r), 0);
	assert_int_equal(k, GW_EV_DATA);
	assert_int_equal(gw_sse_classify((const uint8_t *)nested, strlen(nested), &k, &r), 0);
	assert_int_equal(k, GW_EV_DATA);
	assert_int_equal(r.len, 0);
	assert_int_equal(gw_sse_classify((const uint8_t *)"data:[DONE]\n\n", 13, &k, NULL), 0);
	assert_int_equal(k, GW_EV_DONE);
	assert_int_equal(gw_sse_classify((const uint8_t *)"data: [DONE] \n\n", 15, &k, NULL), 0);
	assert_int_equal(k, GW_EV_DATA);
	veil_buf_free(&r);
}

static void test_affinity_key(void **st)
{
	uint8_t a[32], b[32], c[32];
	const char *t1 = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
			 "{\"role\":\"user\",\"content\":\"q1\"}],\"max_tokens\":5}";
	const char *t2 = "{\"messages\":[{\"content\":\"s\",\"role\":\"system\"},"
			 "{\"role\":\"user\",\"content\":\"q1\"},{\"role\":\"assistant\",\"content\":\"a\"},"
			 "{\"role\":\"user\",\"content\":\"q2\"}],\"model\":\"m\"}";
	const char *t3 = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
			 "{\"role\":\"user\",\"content\":\"other\"}]}";

	(void)st;
	assert_true(gw_affinity_key((const uint8_t *)t1, strlen(t1), a));
	assert_true(gw_affinity_key((const uint8_t *)t2, strlen(t2), b));
	assert_true(gw_affinity_key((const uint8_t *)t3, strlen(t3), c));
	/* the same conversation, later turn: same key */
	assert_memory_equal(a, b, 32);
	assert_memory_not_equal(a, c, 32);
	assert_false(gw_affinity_key((const uint8_t *)"{}", 2, a));
	assert_false(gw_affinity_key((const uint8_t *)"nope", 4, a));
}

/* ---- the canonical receipt reader ------------------------------------------------ */

static const uint8_t RC_ADDR[20] = {0x16, 0x29, 0x69, 0xa1, 0x53, 0xf1, 0x69, 0x68, 0xae, 0x92,
				    0x9e, 0x9c, 0x5c, 0xb9, 0xb6, 0x81, 0xf7, 0xc6, 0xf5, 0x59};

/* A receipt as a veil-node writes it (keys sorted, no spaces), with the
 * given id, model, model_sha256, tokens and text signatures or not. */
static size_t rc_make(char *out, size_t cap, const char *id, const char *model, bool msha,
		      long pt, long ct, bool text)
{
	char addr[VEIL_ETH_ADDRESS_STR_LEN];
	const char *h64 = "67981fda3d02eaca2c9c99ccb716946705df99d10ca7783f864b966cf4808e83";
	const char *s128 = "a053055c8b6140ff2c5b9b18071bce30229b7ead382cdfa99e420a56e9eff76b"
			   "aaf16eb244c5a3edb8ad2eb02f6e2d30cd6284fc19ed26ee760e6209b584e400";
	const char *e130 = "0x359db016d131f10bc445e51e8f6f74c707e3b4ce0554b29b6340e17cb706e35a"
			   "14c8f0a068dcd9f4e0f190673129f00787ccb20904eeb776e384a9fd541917a81b";
	int n;

	veil_eth_address_format(RC_ADDR, addr);
	n = snprintf(out, cap,
		     "{\"payload\":\"{\\\"created\\\":1795273303,\\\"ed25519_public_key\\\":\\\"%s\\\","
		     "\\\"id\\\":\\\"%s\\\",\\\"model\\\":\\\"%s\\\",\\\"model_sha256\\\":\\\"%s\\\","
		     "\\\"request_sha256\\\":\\\"0240ae43a699f6e4230c3e717faec03942154e9a2f126e758eabef5e537a0563\\\","
		     "\\\"response_sha256\\\":\\\"67492070fe58519e16591690ca4eef63f1bbb6977c8f833359c6e7edfa3f67f9\\\","
		     "\\\"signing_address\\\":\\\"%s\\\",\\\"usage\\\":{\\\"completion_tokens\\\":%ld,"
		     "\\\"prompt_tokens\\\":%ld,\\\"total_tokens\\\":%ld},\\\"version\\\":\\\"veil-receipt/1\\\"}\","
		     "\"signature_ecdsa\":\"%s\",\"signature_ed25519\":\"%s\"%s%s%s%s%s}",
		     h64, id, model, msha ? h64 : "", addr, ct, pt, pt + ct, e130, s128,
		     text ? ",\"text_signature_ecdsa\":\"" : "", text ? e130 : "",
		     text ? "\",\"text_signature_ed25519\":\"" : "", text ? s128 : "", text ? "\"" : "");
	assert_true(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

/* What the fast reader accepted, veil_receipt_parse accepts with the same
 * values; returns gw_receipt_fast's verdict. */
static int rc_agree(const uint8_t *p, size_t n, const char *expect)
{
	static struct gw_receipt_lite l;
	struct veil_receipt r;
	uint8_t a[20];
	int fast = gw_receipt_fast(p, n, expect, &l);

	if (fast != 0)
		return fast;
	assert_int_equal(veil_receipt_parse(p, n, &r), 0);
	assert_int_equal(strlen(r.payload), l.payload_len);
	assert_memory_equal(r.payload, l.payload, l.payload_len);
	assert_memory_equal(r.sig_ed25519, l.sig_ed25519, 64);
	assert_memory_equal(r.ed25519_public_key, l.ed25519_public_key, 32);
	assert_memory_equal(r.request_sha256, l.request_sha256, 32);
	assert_memory_equal(r.response_sha256, l.response_sha256, 32);
	assert_string_equal(r.id, l.id);
	assert_string_equal(r.model, l.model);
	assert_int_equal(r.prompt_tokens, l.prompt_tokens);
	assert_int_equal(r.completion_tokens, l.completion_tokens);
	assert_int_equal(r.total_tokens, l.total_tokens);
	assert_int_equal(r.created, l.created);
	assert_int_equal(veil_eth_address_parse(expect, a), 0);
	assert_memory_equal(r.eth_address, a, 20);
	veil_receipt_free(&r);
	return 0;
}

static void test_receipt_fast_reads_node_receipts(void **st)
{
	static char b[4096];
	char addr[VEIL_ETH_ADDRESS_STR_LEN], lower[VEIL_ETH_ADDRESS_STR_LEN];
	char id128[129], model128[129];
	size_t n;

	(void)st;
	veil_eth_address_format(RC_ADDR, addr);
	n = rc_make(b, sizeof(b), "chatcmpl-9f8d92d9c2aade3713b91f92", "stories260K", true, 17, 1,
		    true);
	assert_int_equal(rc_agree((const uint8_t *)b, n, addr), 0);
	n = rc_make(b, sizeof(b), "c", "m", false, 0, 0, false);
	assert_int_equal(rc_agree((const uint8_t *)b, n, addr), 0);
	memset(id128, 'i', 128);
	id128[128] = '\0';
	memset(model128, 'm', 128);
	model128[128] = '\0';
	model128[5] = ' '; /* a model name may hold a space, an id may not */
	n = rc_make(b, sizeof(b), id128, model128, true, 123456789012345678L, 1, true);
	assert_int_equal(rc_agree((const uint8_t *)b, n, addr), 0);
	/* the same address spelled otherwise: not the canonical form (the
	 * full parser takes it) */
	n = rc_make(b, sizeof(b), "c", "m", true, 1, 1, true);
	for (size_t i = 0; addr[i]; i++)
		lower[i] = (char)tolower((unsigned char)addr[i]);
	lower[42] = '\0';
	assert_int_equal(rc_agree((const uint8_t *)b, n, lower), 1);
	assert_int_equal(rc_agree((const uint8_t *)b, n, "0x12"), 1);
	assert_int_equal(rc_agree((const uint8_t *)b, n, NULL), 1);
}

static void test_receipt_fast_leaves_other_spellings_to_the_full_parser(void **st)
{
	static char b[4096], t[4200];
	char addr[VEIL_ETH_ADDRESS_STR_LEN], id129[130];
	size_t n;
	char *k;

	(void)st;
	veil_eth_address_format(RC_ADDR, addr);
	/* white space, another key order, other escapes: valid, not canonical */
	n = rc_make(b, sizeof(b), "c", "m", true, 1, 2, true);
	snprintf(t, sizeof(t), "%s ", b);
	assert_int_equal(rc_agree((const uint8_t *)t, n + 1, addr), 1);
	{
		struct veil_receipt r;

		assert_int_equal(veil_receipt_parse((const uint8_t *)t, n + 1, &r), 0);
		veil_receipt_free(&r);
	}
	snprintf(t, sizeof(t), "{\"signature_ed25519\":%s", strstr(b, ",\"signature_ed25519\":") + 21);
	assert_int_equal(rc_agree((const uint8_t *)t, strlen(t), addr), 1);
	n = rc_make(b, sizeof(b), "c", "a\\\\/b", true, 1, 2, true); /* "a\/b" */
	assert_int_equal(rc_agree((const uint8_t *)b, n, addr), 1);
	n = rc_make(b, sizeof(b), "c", "caf\\\\u00e9", true, 1, 2, true);
	assert_int_equal(rc_agree((const uint8_t *)b, n, addr), 1);
	/* out of range or malformed: refused by both */
	n = rc_make(b, sizeof(b), "c", "m", true, 1234567890123456789L, 1, true);
	assert_int_equal(rc_agree((const uint8_t *)b, n, addr), 1);
	memset(id129, 'i', 129);
	id129[129] = '\0';
	n = rc_make(b, sizeof(b), id129, "m", true, 1, 2, true);
	assert_int_equal(rc_agree((const uint8_t *)b, n, addr), 1);
	n = rc_make(b, sizeof(b), "a b", "m", true, 1, 2, true);
	assert_int_equal(rc_agree((const uint8_t *)b, n, addr), 1);
	n = rc_make(b, sizeof(b), "c", "m", true, 1, 2, true);
	k = strstr(b, "total_tokens\\\":3");
	assert_non_null(k);
	k[15] = '4'; /* total != prompt + completion */
	assert_int_equal(rc_agree((const uint8_t *)b, n, addr), 1);
	k[15] = '3';
	k = strstr(b, "created\\\":1");
	k[10] = '0'; /* a leading zero */
	assert_int_equal(rc_agree((const uint8_t *)b, n, addr), 1);
}

/* Every one-byte change of a node's receipt: whatever the fast reader
 * still accepts, the full parser accepts alike. */
static void test_receipt_fast_is_a_subset_of_the_full_parser(void **st)
{
	static const char subst[] = {'0', 'A', 'f', ' ', '"', '\\', '}', ',', '1', 'x', '\x7f', 'g'};
	static char b[4096];
	char addr[VEIL_ETH_ADDRESS_STR_LEN];
	size_t n, accepted = 0;

	(void)st;
	veil_eth_address_format(RC_ADDR, addr);
	n = rc_make(b, sizeof(b), "chatcmpl-1", "stories260K", true, 17, 1, true);
	for (size_t i = 0; i < n; i++) {
		char orig = b[i];

		for (size_t s = 0; s < sizeof(subst); s++) {
			if (subst[s] == orig)
				continue;
			b[i] = subst[s];
			accepted += rc_agree((const uint8_t *)b, n, addr) == 0;
		}
		b[i] = orig;
		/* and cut short here */
		assert_int_equal(rc_agree((const uint8_t *)b, i, addr), 1);
	}
	/* hex digits, names and counts still vary within the form */
	assert_true(accepted > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_check_accepts_base_urls),
		cmocka_unit_test(test_url_check_refuses_everything_else),
		cmocka_unit_test(test_ids_and_models),
		cmocka_unit_test(test_nodes_file),
		cmocka_unit_test(test_nodes_file_refusals_name_the_entry),
		cmocka_unit_test(test_key_body),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_receipt_header),
		cmocka_unit_test(test_receipt_header_decodes_as_the_library),
		cmocka_unit_test(test_framer_cuts_events_at_any_split),
		cmocka_unit_test(test_framer_keeps_an_unfinished_event_and_caps_size),
		cmocka_unit_test(test_classify_finds_receipts),
		cmocka_unit_test(test_affinity_key),
		cmocka_unit_test(test_receipt_fast_reads_node_receipts),
		cmocka_unit_test(test_receipt_fast_leaves_other_spellings_to_the_full_parser),
		cmocka_unit_test(test_receipt_fast_is_a_subset_of_the_full_parser),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
