/* Unit tests of the event log (include/veil/eventlog.h).
 *
 * The NEAR AI / dstack sample (event_log.json + quote.bin + app_compose.json
 * + info.json) comes from $VEIL_SHARED/vectors/nearai (default ../shared,
 * tests run from the repository root); those tests are skipped with a
 * message when it is absent.  Binary TCG logs are built here, and every
 * parse runs over a heap copy of exactly the input size so that an
 * over-read shows up under ASan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "veil/base.h"
#include "veil/eventlog.h"

/* ---- helpers ----------------------------------------------------------- */

static const char *shared_dir(void)
{
	const char *s = getenv("VEIL_SHARED");

	return s && *s ? s : "../shared";
}

/* Reads $VEIL_SHARED/rel into b; false (and a message) when absent. */
static bool read_shared(const char *rel, struct veil_buf *b)
{
	char path[1024];
	int k = snprintf(path, sizeof(path), "%s/%s", shared_dir(), rel);

	assert_true(k > 0 && (size_t)k < sizeof(path));
	if (access(path, R_OK) != 0) {
		fprintf(stderr,
			"test_eventlog: %s not found (set VEIL_SHARED to the shared "
			"folder); skipping\n", path);
		return false;
	}
	assert_int_equal(veil_buf_read_file(b, path), 0);
	return true;
}

/* Loads nearai/event_log.json or skips the test. */
static void load_nearai_log(struct veil_evlog *log)
{
	struct veil_buf b = VEIL_BUF_INIT(1 << 20);

	if (!read_shared("vectors/nearai/event_log.json", &b))
		skip();
	assert_int_equal(b.len, 7170);
	assert_int_equal(veil_evlog_parse_json(b.data, b.len, log), 0);
	veil_buf_free(&b);
}

/* TDX quote v4: 48-byte header, then the TD report body: tee_tcb_svn 16,
 * mrseam 48, mrsignerseam 48, seam_attributes 8, td_attributes 8, xfam 8,
 * mrtd 48, mr_config_id 48, mr_owner 48, mr_owner_config 48, rtmr0..3. */
#define QUOTE_RTMR0_OFF (48 + 16 + 48 + 48 + 8 + 8 + 8 + 48 + 48 + 48 + 48)

static void load_nearai_rtmrs(uint8_t rtmr[4][48])
{
	struct veil_buf b = VEIL_BUF_INIT(1 << 20);

	if (!read_shared("vectors/nearai/quote.bin", &b))
		skip();
	assert_int_equal(b.len, 5010);
	assert_int_equal(b.data[0] | (b.data[1] << 8), 4); /* version */
	for (int i = 0; i < 4; i++)
		memcpy(rtmr[i], b.data + QUOTE_RTMR0_OFF + 48 * i, 48);
	veil_buf_free(&b);
}

/* Parses a copy of exactly n bytes (ASan sees any over-read). */
static int parse_json_copy(const void *p, size_t n, struct veil_evlog *out)
{
	uint8_t *c = malloc(n ? n : 1);
	int rc;

	assert_non_null(c);
	memcpy(c, p, n);
	rc = veil_evlog_parse_json(c, n, out);
	free(c);
	return rc;
}

static int parse_tcg_copy(const uint8_t *p, size_t n, struct veil_evlog *out,
			  struct veil_evlog_tcg_info *info)
{
	uint8_t *c = malloc(n ? n : 1);
	int rc;

	assert_non_null(c);
	if (n)
		memcpy(c, p, n);
	rc = veil_evlog_parse_tcg(n ? c : NULL, n, out, info);
	free(c);
	return rc;
}

static void assert_same_log(const struct veil_evlog *a, const struct veil_evlog *b)
{
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		assert_int_equal(a->ev[i].imr, b->ev[i].imr);
		assert_int_equal(a->ev[i].event_type, b->ev[i].event_type);
		assert_memory_equal(a->ev[i].digest, b->ev[i].digest, 48);
		assert_string_equal(a->ev[i].name, b->ev[i].name);
		assert_int_equal(a->ev[i].payload_len, b->ev[i].payload_len);
		if (a->ev[i].payload_len)
			assert_memory_equal(a->ev[i].payload, b->ev[i].payload,
					    a->ev[i].payload_len);
	}
}

static void sha384_str(const char *s, uint8_t out[48])
{
	SHA384((const uint8_t *)s, strlen(s), out);
}

/* ---- NEAR AI / dstack sample ------------------------------------------ */

static void test_nearai_log_replays_to_quote_rtmrs(void **state)
{
	struct veil_evlog log = VEIL_EVLOG_INIT;
	uint8_t q[4][48];
	size_t per[4] = {0};
	unsigned mask = 99;

	(void)state;
	load_nearai_log(&log);
	load_nearai_rtmrs(q);
	assert_int_equal(log.n, 29);
	for (size_t i = 0; i < log.n; i++)
		per[log.ev[i].imr]++;
	assert_int_equal(per[0], 13);
	assert_int_equal(per[1], 5);
	assert_int_equal(per[2], 2);
	assert_int_equal(per[3], 9);
	assert_int_equal(veil_evlog_check_rtmrs(&log, (const uint8_t(*)[48])q, &mask), 0);
	assert_int_equal(mask, 0);
	veil_evlog_free(&log);
}

static void test_nearai_runtime_event_digests_match_dstack_formula(void **state)
{
	static const char *const names[] = {
		"system-preparing", "app-id", "compose-hash", "instance-id", "boot-mr-done",
		"mr-kms", "os-image-hash", "key-provider", "system-ready"};
	struct veil_evlog log = VEIL_EVLOG_INIT;
	size_t k = 0;

	(void)state;
	load_nearai_log(&log);
	assert_int_equal(veil_evlog_check_runtime(&log), 0);
	for (size_t i = 0; i < log.n; i++) {
		const struct veil_evlog_event *e = &log.ev[i];
		uint8_t d[48];

		if (e->event_type != VEIL_EVLOG_RUNTIME_EVENT_TYPE)
			continue;
		assert_true(k < VEIL_ARRAY_LEN(names));
		assert_string_equal(e->name, names[k++]);
		assert_int_equal(e->imr, 3);
		assert_int_equal(veil_evlog_runtime_digest(e->name, e->payload,
							   e->payload_len, d), 0);
		assert_memory_equal(d, e->digest, 48);
	}
	assert_int_equal(k, 9);
	veil_evlog_free(&log);
}

static void test_nearai_claims_match_app_compose_and_info(void **state)
{
	struct veil_evlog log = VEIL_EVLOG_INIT;
	struct veil_evlog_claims c;
	struct veil_buf compose = VEIL_BUF_INIT(1 << 20), info = VEIL_BUF_INIT(1 << 20);
	uint8_t h[32], want[64];
	json_t *root;
	size_t got;

	(void)state;
	load_nearai_log(&log);
	if (!read_shared("vectors/nearai/app_compose.json", &compose) ||
	    !read_shared("vectors/nearai/info.json", &info))
		skip();
	assert_int_equal(veil_evlog_claims(&log, &c), 0);

	/* compose-hash event == sha256(app_compose.json bytes) */
	SHA256(compose.data, compose.len, h);
	assert_true(c.compose_hash.present);
	assert_int_equal(c.compose_hash.len, 32);
	assert_memory_equal(c.compose_hash.p, h, 32);

	root = json_loadb((const char *)info.data, info.len, 0, NULL);
	assert_non_null(root);
	{
		static const struct {
			const char *key;
			size_t off;
		} f[] = {
			{"app_id", offsetof(struct veil_evlog_claims, app_id)},
			{"instance_id", offsetof(struct veil_evlog_claims, instance_id)},
			{"os_image_hash", offsetof(struct veil_evlog_claims, os_image_hash)},
		};
		for (size_t i = 0; i < VEIL_ARRAY_LEN(f); i++) {
			const struct veil_evlog_value *v =
				(const void *)((const char *)&c + f[i].off);
			const char *hex = json_string_value(json_object_get(root, f[i].key));

			assert_non_null(hex);
			assert_int_equal(veil_hex_decode(hex, strlen(hex), want, sizeof(want),
							 &got), 0);
			assert_true(v->present);
			assert_int_equal(v->len, got);
			assert_memory_equal(v->p, want, got);
		}
	}
	/* key-provider payload is the UTF-8 of info.key_provider_info */
	{
		const char *kp = json_string_value(json_object_get(root, "key_provider_info"));

		assert_non_null(kp);
		assert_true(c.key_provider.present);
		assert_int_equal(c.key_provider.len, strlen(kp));
		assert_memory_equal(c.key_provider.p, kp, strlen(kp));
	}
	assert_false(c.node_binary.present);
	assert_false(c.node_config.present);
	assert_false(c.model.present);
	json_decref(root);
	veil_buf_free(&compose);
	veil_buf_free(&info);
	veil_evlog_free(&log);
}

static void test_nearai_flipped_digest_byte_breaks_only_its_rtmr(void **state)
{
	struct veil_evlog log = VEIL_EVLOG_INIT;
	uint8_t q[4][48];
	bool seen[4] = {false};

	(void)state;
	load_nearai_log(&log);
	load_nearai_rtmrs(q);
	for (size_t i = 0; i < log.n; i++) {
		struct veil_evlog_event *e = &log.ev[i];
		unsigned mask = 0;
		char want[16];

		if (seen[e->imr] && i % 3)
			continue; /* first event of each RTMR plus every third one */
		seen[e->imr] = true;
		e->digest[i % 48] ^= 0x01;
		assert_int_equal(veil_evlog_check_rtmrs(&log, (const uint8_t(*)[48])q, &mask),
				 VEIL_EBADMSG);
		assert_int_equal(mask, 1u << e->imr);
		snprintf(want, sizeof(want), "RTMR%u differs", e->imr);
		assert_non_null(strstr(veil_err_detail(), want));
		e->digest[i % 48] ^= 0x01;
		assert_int_equal(veil_evlog_check_rtmrs(&log, (const uint8_t(*)[48])q, &mask), 0);
		assert_int_equal(mask, 0);
	}
	assert_true(seen[0] && seen[1] && seen[2] && seen[3]);
	veil_evlog_free(&log);
}

static void test_nearai_tampered_runtime_event_is_named(void **state)
{
	struct veil_evlog log = VEIL_EVLOG_INIT;
	const struct veil_evlog_event *ce;
	struct veil_evlog_event *e;

	(void)state;
	load_nearai_log(&log);
	assert_int_equal(veil_evlog_find_runtime(&log, "compose-hash", &ce), 0);
	e = &log.ev[ce - log.ev];
	e->payload[0] ^= 0x80;
	assert_int_equal(veil_evlog_check_runtime(&log), VEIL_EBADMSG);
	assert_non_null(strstr(veil_err_detail(), "(compose-hash): digest does not match"));
	e->payload[0] ^= 0x80;
	assert_int_equal(veil_evlog_check_runtime(&log), 0);
	e->imr = 2;
	assert_int_equal(veil_evlog_check_runtime(&log), VEIL_EBADMSG);
	assert_non_null(strstr(veil_err_detail(), "runtime event in RTMR2, expected RTMR3"));
	e->imr = 3;
	/* relabelled: the replay still matches, the event would leave the
	 * claims (found by review) */
	e->event_type = 0x08000002;
	assert_int_equal(veil_evlog_check_runtime(&log), VEIL_EBADMSG);
	assert_non_null(strstr(veil_err_detail(), "type 0x08000002 in RTMR3"));
	assert_int_equal(veil_evlog_find_runtime(&log, "compose-hash", &ce), VEIL_ENOENT);
	e->event_type = VEIL_EVLOG_RUNTIME_EVENT_TYPE;
	assert_int_equal(veil_evlog_check_runtime(&log), 0);
	veil_evlog_free(&log);
}

static void test_nearai_json_reencodes_byte_for_byte(void **state)
{
	struct veil_evlog log = VEIL_EVLOG_INIT, again = VEIL_EVLOG_INIT;
	struct veil_buf orig = VEIL_BUF_INIT(1 << 20), enc = VEIL_BUF_INIT(1 << 20);
	struct veil_buf bin = VEIL_BUF_INIT(1 << 20);
	struct veil_evlog_tcg_info info;

	(void)state;
	if (!read_shared("vectors/nearai/event_log.json", &orig))
		skip();
	load_nearai_log(&log);
	assert_int_equal(veil_evlog_encode_json(&log, &enc), 0);
	assert_int_equal(enc.len, orig.len);
	assert_memory_equal(enc.data, orig.data, orig.len);
	/* and through the binary form (boot events keep their payload bytes) */
	assert_int_equal(veil_evlog_encode_tcg(&log, &bin), 0);
	assert_int_equal(parse_tcg_copy(bin.data, bin.len, &again, &info), 0);
	assert_int_equal(info.consumed, bin.len);
	assert_same_log(&log, &again);
	veil_evlog_free(&again);
	veil_evlog_free(&log);
	veil_buf_free(&orig);
	veil_buf_free(&enc);
	veil_buf_free(&bin);
}

/* ---- JSON rejections ---------------------------------------------------- */

#define D96 "2e070cda358b5aa00f27cca25c47381bb564f4be3a84d059805a73cbbde764ed8341f7e09915b5e7b370f9c08a743fbd"

static void test_json_rejects_malformed_logs_with_named_field(void **state)
{
	static const struct {
		const char *json;
		int rc;
		const char *detail;
	} cases[] = {
		{"", VEIL_EFORMAT, "invalid JSON"},
		{"[{", VEIL_EFORMAT, "invalid JSON"},
		{"[] x", VEIL_EFORMAT, "invalid JSON"},
		{"{}", VEIL_EFORMAT, "not a JSON array"},
		{"[1]", VEIL_EFORMAT, "event 0: not a JSON object"},
		{"[{\"event_type\":1,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "event 0: missing field \"imr\""},
		{"[{\"imr\":0,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "missing field \"event_type\""},
		{"[{\"imr\":0,\"event_type\":1,\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "missing field \"digest\""},
		{"[{\"imr\":0,\"event_type\":1,\"digest\":\"" D96 "\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "missing field \"event\""},
		{"[{\"imr\":0,\"event_type\":1,\"digest\":\"" D96 "\",\"event\":\"\"}]",
		 VEIL_EFORMAT, "missing field \"event_payload\""},
		{"[{\"imr\":\"0\",\"event_type\":1,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "\"imr\" is not an integer"},
		{"[{\"imr\":0.0,\"event_type\":1,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "\"imr\" is not an integer"},
		{"[{\"imr\":4,\"event_type\":1,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "event 0: imr 4 out of range 0..3"},
		{"[{\"imr\":-1,\"event_type\":1,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "imr -1 out of range"},
		{"[{\"imr\":0,\"event_type\":-1,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "event_type -1 out of range"},
		{"[{\"imr\":0,\"event_type\":4294967296,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "event_type 4294967296 out of range"},
		{"[{\"imr\":0,\"event_type\":\"1\",\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "\"event_type\" is not an integer"},
		{"[{\"imr\":0,\"event_type\":1,\"digest\":7,\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "\"digest\" is not a string"},
		{"[{\"imr\":0,\"event_type\":1,\"digest\":\"00ff\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "digest has 4 hex chars, expected 96"},
		{"[{\"imr\":0,\"event_type\":1,\"digest\":\"zz" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "digest has 98 hex chars"},
		{"[{\"imr\":0,\"event_type\":1,\"digest\":\"zz070cda358b5aa00f27cca25c47381bb564f4be3a84d059805a73cbbde764ed8341f7e09915b5e7b370f9c08a743fbd\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "digest is not valid hex"},
		{"[{\"imr\":0,\"event_type\":1,\"digest\":\"" D96 "\",\"event\":null,\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "\"event\" is not a string"},
		{"[{\"imr\":0,\"event_type\":1,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":[]}]",
		 VEIL_EFORMAT, "\"event_payload\" is not a string"},
		{"[{\"imr\":0,\"event_type\":1,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"abc\"}]",
		 VEIL_EFORMAT, "odd hex length 3"},
		{"[{\"imr\":0,\"event_type\":1,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"0g\"}]",
		 VEIL_EFORMAT, "event_payload is not valid hex"},
		{"[{\"imr\":0,\"imr\":1,\"event_type\":1,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "duplicate"},
		{"[{\"imr\":0,\"event_type\":1,\"digest\":\"" D96 "\",\"event\":\"a\\u0000b\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "invalid JSON"},
		{"[{\"imr\":3,\"event_type\":1,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"},"
		 "{\"imr\":9,\"event_type\":1,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
		 VEIL_EFORMAT, "event 1: imr 9 out of range"},
	};
	struct veil_evlog sentinel = {(void *)0x1, 7, 7};

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(cases); i++) {
		struct veil_evlog out = sentinel;
		int rc = parse_json_copy(cases[i].json, strlen(cases[i].json), &out);

		if (rc != cases[i].rc || !strstr(veil_err_detail(), cases[i].detail))
			fail_msg("case %zu: rc %d detail \"%s\", want %d \"%s\"", i, rc,
				 veil_err_detail(), cases[i].rc, cases[i].detail);
		assert_memory_equal(&out, &sentinel, sizeof(out)); /* untouched */
	}
}

static void test_json_rejects_long_name_huge_array_and_huge_input(void **state)
{
	struct veil_buf b = VEIL_BUF_INIT(32u << 20);
	struct veil_evlog out = VEIL_EVLOG_INIT;
	char name[300];
	uint8_t *big;

	(void)state;
	memset(name, 'a', 256);
	name[256] = '\0';
	assert_int_equal(veil_buf_appendf(&b, "[{\"imr\":0,\"event_type\":1,\"digest\":\"%s\","
					  "\"event\":\"%s\",\"event_payload\":\"\"}]", D96, name), 0);
	assert_int_equal(parse_json_copy(b.data, b.len, &out), VEIL_ERANGE);
	assert_non_null(strstr(veil_err_detail(), "event name length 256 exceeds 255"));

	veil_buf_reset(&b);
	veil_buf_append_str(&b, "[0");
	for (int i = 0; i < VEIL_EVLOG_MAX_EVENTS; i++)
		veil_buf_append_str(&b, ",0");
	veil_buf_append_str(&b, "]");
	assert_int_equal(parse_json_copy(b.data, b.len, &out), VEIL_ERANGE);
	assert_non_null(strstr(veil_err_detail(), "4097 events exceed the cap"));

	big = malloc(VEIL_EVLOG_MAX_INPUT + 1u);
	assert_non_null(big);
	memset(big, ' ', VEIL_EVLOG_MAX_INPUT + 1u);
	assert_int_equal(veil_evlog_parse_json(big, VEIL_EVLOG_MAX_INPUT + 1u, &out),
			 VEIL_ERANGE);
	free(big);
	assert_null(out.ev);
	veil_buf_free(&b);
}

static void test_json_accepts_empty_log_and_ignores_unknown_keys(void **state)
{
	static const char j[] =
		"[{\"imr\":2,\"event_type\":6,\"digest\":\"" D96 "\",\"event\":\"\","
		"\"event_payload\":\"00ff\",\"note\":{\"x\":1}}]";
	struct veil_evlog out = VEIL_EVLOG_INIT;

	(void)state;
	assert_int_equal(parse_json_copy("[]", 2, &out), 0);
	assert_int_equal(out.n, 0);
	assert_int_equal(parse_json_copy(j, strlen(j), &out), 0);
	assert_int_equal(out.n, 1);
	assert_int_equal(out.ev[0].imr, 2);
	assert_int_equal(out.ev[0].event_type, 6);
	assert_int_equal(out.ev[0].payload_len, 2);
	assert_int_equal(out.ev[0].payload[1], 0xff);
	veil_evlog_free(&out);
}

/* ---- binary TCG log ------------------------------------------------------ */

/* A log with boot-time events in RTMR0..2 and runtime events in RTMR3. */
static void build_mixed_log(struct veil_evlog *log)
{
	uint8_t d[48], pl[300];

	for (size_t i = 0; i < sizeof(pl); i++)
		pl[i] = (uint8_t)(i * 7);
	for (uint32_t i = 0; i < 6; i++) {
		memset(d, (int)(0x10 + i), sizeof(d));
		assert_int_equal(veil_evlog_append(log, i % 3, i == 5 ? 4 : 0x80000001u + i,
						   d, NULL, pl, (i * 37) % 300), 0);
	}
	assert_int_equal(veil_evlog_extend_runtime(log, "system-preparing", NULL, 0, d), 0);
	assert_int_equal(veil_evlog_extend_runtime(log, "app-id", pl, 20, d), 0);
	assert_int_equal(veil_evlog_extend_runtime(log, "key-provider", pl, 300, d), 0);
}

static void test_tcg_round_trip_keeps_every_field(void **state)
{
	struct veil_evlog log = VEIL_EVLOG_INIT, back = VEIL_EVLOG_INIT;
	struct veil_buf bin = VEIL_BUF_INIT(1 << 20);
	struct veil_evlog_tcg_info info;
	uint8_t r1[4][48], r2[4][48];

	(void)state;
	build_mixed_log(&log);
	assert_int_equal(veil_evlog_encode_tcg(&log, &bin), 0);
	assert_int_equal(parse_tcg_copy(bin.data, bin.len, &back, &info), 0);
	assert_same_log(&log, &back);
	assert_int_equal(info.spec_major, 2);
	assert_int_equal(info.num_algs, 1);
	assert_int_equal(info.skipped_mrtd, 0);
	assert_int_equal(info.skipped_no_action, 0);
	assert_int_equal(info.consumed, bin.len);
	veil_evlog_replay(&log, r1);
	veil_evlog_replay(&back, r2);
	assert_memory_equal(r1, r2, sizeof(r1));
	assert_int_equal(veil_evlog_check_runtime(&back), 0);
	veil_evlog_free(&back);

	/* the unused tail of the ACPI log area: 0xFF filler or a terminator */
	for (int k = 0; k < 64; k++)
		veil_buf_append(&bin, "\xff", 1);
	assert_int_equal(parse_tcg_copy(bin.data, bin.len, &back, &info), 0);
	assert_same_log(&log, &back);
	assert_int_equal(info.consumed, bin.len - 64);
	veil_evlog_free(&back);
	veil_evlog_free(&log);
	veil_buf_free(&bin);
}

static void test_tcg_truncation_at_every_prefix_fails_cleanly(void **state)
{
	struct veil_evlog log = VEIL_EVLOG_INIT, part = VEIL_EVLOG_INIT;
	struct veil_buf bin = VEIL_BUF_INIT(1 << 20), tmp = VEIL_BUF_INIT(1 << 20);
	size_t bound[16], nb = 0;

	(void)state;
	build_mixed_log(&log);
	assert_int_equal(veil_evlog_encode_tcg(&log, &bin), 0);
	/* Record boundaries: the encoding of the first j events is a prefix. */
	for (size_t j = 0; j <= log.n; j++) {
		struct veil_evlog first = {log.ev, j, j};

		veil_buf_reset(&tmp);
		assert_int_equal(veil_evlog_encode_tcg(&first, &tmp), 0);
		assert_memory_equal(tmp.data, bin.data, tmp.len);
		bound[nb++] = tmp.len;
	}
	assert_int_equal(bound[nb - 1], bin.len);
	for (size_t k = 0; k < bin.len; k++) {
		struct veil_evlog_tcg_info info;
		size_t j;
		int rc = parse_tcg_copy(bin.data, k, &part, &info);

		for (j = 0; j < nb && bound[j] != k; j++)
			;
		if (j < nb) {
			if (rc != 0)
				fail_msg("prefix %zu (boundary %zu) failed: %s", k, j,
					 veil_err_detail());
			assert_int_equal(part.n, j);
			veil_evlog_free(&part);
		} else {
			if (rc != VEIL_EFORMAT)
				fail_msg("prefix %zu: rc %d, want VEIL_EFORMAT", k, rc);
			assert_true(strstr(veil_err_detail(), "TCG") != NULL);
			assert_null(part.ev);
		}
	}
	veil_evlog_free(&log);
	veil_buf_free(&bin);
	veil_buf_free(&tmp);
}

/* A byte builder for hand-made binary logs (little-endian). */
struct bb {
	uint8_t d[4096];
	size_t n;
};

static void b_bytes(struct bb *b, const void *p, size_t n)
{
	assert_true(b->n + n <= sizeof(b->d));
	memcpy(b->d + b->n, p, n);
	b->n += n;
}

static void b_u8(struct bb *b, uint8_t v)
{
	b_bytes(b, &v, 1);
}

static void b_u16(struct bb *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};

	b_bytes(b, x, 2);
}

static void b_u32(struct bb *b, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			(uint8_t)(v >> 24)};

	b_bytes(b, x, 4);
}

static void b_fill(struct bb *b, uint8_t v, size_t n)
{
	assert_true(b->n + n <= sizeof(b->d));
	memset(b->d + b->n, v, n);
	b->n += n;
}

/* Header: Spec ID Event03 with the given banks (id, size) and 3 bytes of
 * vendor info. */
static void b_header(struct bb *b, const uint16_t (*algs)[2], uint32_t nalgs,
		     uint32_t type, const char *sig)
{
	b_u32(b, 0);
	b_u32(b, type);
	b_fill(b, 0, 20);
	b_u32(b, 16 + 4 + 4 + 4 + 4 * nalgs + 1 + 3);
	b_bytes(b, sig, 16);
	b_u32(b, 0);          /* platformClass */
	b_u8(b, 0);           /* minor */
	b_u8(b, 2);           /* major */
	b_u8(b, 0);           /* errata */
	b_u8(b, 2);           /* uintnSize */
	b_u32(b, nalgs);
	for (uint32_t i = 0; i < nalgs; i++) {
		b_u16(b, algs[i][0]);
		b_u16(b, algs[i][1]);
	}
	b_u8(b, 3);
	b_bytes(b, "vnd", 3);
}

static const uint16_t TWO_BANKS[2][2] = {{0x000b, 32}, {0x000c, 48}};

/* An event with SHA-256 (fill a) and SHA-384 (fill c) digests. */
static void b_event2(struct bb *b, uint32_t mr, uint32_t type, uint8_t c,
		     const void *data, uint32_t len, bool sha384_first)
{
	b_u32(b, mr);
	b_u32(b, type);
	b_u32(b, 2);
	if (sha384_first) {
		b_u16(b, 0x000c);
		b_fill(b, c, 48);
	}
	b_u16(b, 0x000b);
	b_fill(b, 0xaa, 32);
	if (!sha384_first) {
		b_u16(b, 0x000c);
		b_fill(b, c, 48);
	}
	b_u32(b, len);
	b_bytes(b, data, len);
}

static void test_tcg_multi_bank_log_maps_mr_index_and_skips_mrtd_and_no_action(void **state)
{
	struct bb b = {.n = 0};
	struct veil_evlog log = VEIL_EVLOG_INIT;
	struct veil_evlog_tcg_info info;
	uint8_t want[48];

	(void)state;
	b_header(&b, TWO_BANKS, 2, 3, "Spec ID Event03");
	b_event2(&b, 0, 0x8, 0x01, "mrtd", 4, false);         /* MRTD: dropped */
	b_event2(&b, 1, 3, 0x02, "StartupLocality", 15, true); /* EV_NO_ACTION */
	b_event2(&b, 1, 4, 0x03, "\0\0\0\0", 4, true);         /* RTMR0 separator */
	b_event2(&b, 3, 0x80000001, 0x04, "var", 3, false);    /* RTMR2 */
	b_event2(&b, 4, VEIL_EVLOG_RUNTIME_EVENT_TYPE, 0x05, "app-id:\x01\x02", 9, false);
	b_u32(&b, 0xffffffffu);                                /* terminator */
	b_fill(&b, 0x5a, 7);                                   /* ignored after it */
	assert_int_equal(parse_tcg_copy(b.d, b.n, &log, &info), 0);
	assert_int_equal(info.num_algs, 2);
	assert_int_equal(info.skipped_mrtd, 1);
	assert_int_equal(info.skipped_no_action, 1);
	assert_int_equal(info.consumed, b.n - 11);
	assert_int_equal(log.n, 3);
	memset(want, 0x03, 48);
	assert_int_equal(log.ev[0].imr, 0);
	assert_int_equal(log.ev[0].event_type, 4);
	assert_memory_equal(log.ev[0].digest, want, 48);
	assert_string_equal(log.ev[0].name, "");
	assert_int_equal(log.ev[0].payload_len, 4);
	assert_int_equal(log.ev[1].imr, 2);
	assert_int_equal(log.ev[1].payload_len, 3);
	assert_int_equal(log.ev[2].imr, 3);
	assert_string_equal(log.ev[2].name, "app-id");
	assert_int_equal(log.ev[2].payload_len, 2);
	assert_int_equal(log.ev[2].payload[1], 0x02);
	veil_evlog_free(&log);

	/* zero filler instead of a terminator also ends the log */
	b.n -= 11;
	b_fill(&b, 0, 100);
	assert_int_equal(parse_tcg_copy(b.d, b.n, &log, &info), 0);
	assert_int_equal(log.n, 3);
	veil_evlog_free(&log);
}

static void test_tcg_rejects_bad_fields_with_named_error(void **state)
{
	static const uint16_t ONLY256[1][2] = {{0x000b, 32}};
	static const uint16_t BAD384[1][2] = {{0x000c, 32}};
	static const uint16_t DUP[2][2] = {{0x000c, 48}, {0x000c, 48}};
	struct veil_evlog log = VEIL_EVLOG_INIT;
	struct bb b;
	struct {
		int rc;
		const char *detail;
	} want;

#define CHECK(rc_, detail_)                                                        \
	do {                                                                       \
		want.rc = (rc_);                                                   \
		want.detail = (detail_);                                           \
		int got_ = parse_tcg_copy(b.d, b.n, &log, NULL);                   \
		if (got_ != want.rc || !strstr(veil_err_detail(), want.detail))    \
			fail_msg("line %d: rc %d detail \"%s\", want %d \"%s\"",   \
				 __LINE__, got_, veil_err_detail(), want.rc,       \
				 want.detail);                                     \
		assert_null(log.ev);                                               \
	} while (0)

	(void)state;
	b.n = 0;
	CHECK(VEIL_EFORMAT, "shorter than the 32-byte");
	b.n = 0;
	b_header(&b, TWO_BANKS, 2, 4, "Spec ID Event03");
	CHECK(VEIL_EFORMAT, "expected EV_NO_ACTION");
	b.n = 0;
	b_header(&b, TWO_BANKS, 2, 3, "Spec ID Event02");
	CHECK(VEIL_EFORMAT, "no \"Spec ID Event03\" signature");
	b.n = 0;
	b_header(&b, ONLY256, 1, 3, "Spec ID Event03");
	CHECK(VEIL_ENOTSUP, "no SHA-384 bank");
	b.n = 0;
	b_header(&b, BAD384, 1, 3, "Spec ID Event03");
	CHECK(VEIL_EFORMAT, "SHA-384 digest size 32");
	b.n = 0;
	b_header(&b, DUP, 2, 3, "Spec ID Event03");
	CHECK(VEIL_EFORMAT, "listed twice");
	b.n = 0;
	b_header(&b, TWO_BANKS, 0, 3, "Spec ID Event03");
	CHECK(VEIL_EFORMAT, "0 digest algorithms");

	b.n = 0; /* header event size larger than the input */
	b_header(&b, TWO_BANKS, 2, 3, "Spec ID Event03");
	b.d[28] = 0xff;
	CHECK(VEIL_EFORMAT, "event size 255 exceeds remaining");

	b.n = 0;
	b_header(&b, TWO_BANKS, 2, 3, "Spec ID Event03");
	b_event2(&b, 5, 4, 1, "x", 1, true);
	CHECK(VEIL_EFORMAT, "TCG record 0 at offset 72: MR index 5 out of range 0..4");

	b.n = 0;
	b_header(&b, TWO_BANKS, 2, 3, "Spec ID Event03");
	b_u32(&b, 1);
	b_u32(&b, 4);
	b_u32(&b, 0);
	b_u32(&b, 0);
	CHECK(VEIL_EFORMAT, "0 digests, expected 1..2");

	b.n = 0;
	b_header(&b, TWO_BANKS, 2, 3, "Spec ID Event03");
	b_u32(&b, 1);
	b_u32(&b, 4);
	b_u32(&b, 1);
	b_u16(&b, 0x0004); /* SHA-1: not in this log's table */
	b_fill(&b, 0, 20);
	b_u32(&b, 0);
	CHECK(VEIL_EFORMAT, "digest algorithm 0x0004 not in the Spec ID table");

	b.n = 0; /* only a SHA-256 digest in an extended event */
	b_header(&b, TWO_BANKS, 2, 3, "Spec ID Event03");
	b_u32(&b, 1);
	b_u32(&b, 4);
	b_u32(&b, 1);
	b_u16(&b, 0x000b);
	b_fill(&b, 0, 32);
	b_u32(&b, 0);
	CHECK(VEIL_EFORMAT, "no SHA-384 digest");

	b.n = 0;
	b_header(&b, TWO_BANKS, 2, 3, "Spec ID Event03");
	b_u32(&b, 1);
	b_u32(&b, 4);
	b_u32(&b, 2);
	b_u16(&b, 0x000c);
	b_fill(&b, 0, 48);
	b_u16(&b, 0x000c);
	b_fill(&b, 0, 48);
	b_u32(&b, 0);
	CHECK(VEIL_EFORMAT, "two SHA-384 digests");

	b.n = 0;
	b_header(&b, TWO_BANKS, 2, 3, "Spec ID Event03");
	b_event2(&b, 1, 4, 1, "abcd", 4, true);
	b.d[b.n - 8] = 0x40; /* event size 0x40000004 */
	b.d[b.n - 5] = 0x40;
	CHECK(VEIL_EFORMAT, "exceeds remaining 4");

	b.n = 0;
	b_header(&b, TWO_BANKS, 2, 3, "Spec ID Event03");
	b_event2(&b, 4, VEIL_EVLOG_RUNTIME_EVENT_TYPE, 1, "no-separator", 12, true);
	CHECK(VEIL_EFORMAT, "no \"name:payload\" separator");
#undef CHECK
}

static void test_ccel_table_real_vector_parses_and_checksum_is_checked(void **state)
{
	struct veil_buf b = VEIL_BUF_INIT(4096);
	struct veil_evlog_ccel_table t;

	(void)state;
	if (!read_shared("vectors/attest/tdx/go-tdx-guest/ccel_table.dat", &b))
		skip();
	assert_int_equal(veil_evlog_ccel_table_parse(b.data, b.len, &t), 0);
	assert_int_equal(t.cc_type, 2);
	assert_int_equal(t.cc_subtype, 0);
	assert_int_equal(t.laml, 0x40000);
	assert_int_equal(t.lasa, 0xbedbf000u);
	b.data[50] ^= 1;
	assert_int_equal(veil_evlog_ccel_table_parse(b.data, b.len, &t), VEIL_EFORMAT);
	assert_non_null(strstr(veil_err_detail(), "checksum"));
	b.data[50] ^= 1;
	assert_int_equal(veil_evlog_ccel_table_parse(b.data, 55, &t), VEIL_EFORMAT);
	b.data[0] = 'X';
	assert_int_equal(veil_evlog_ccel_table_parse(b.data, b.len, &t), VEIL_EFORMAT);
	veil_buf_free(&b);
}

/* ---- veil's own runtime events ----------------------------------------- */

static void test_veil_events_round_trip_and_replay_to_extended_rtmr3(void **state)
{
	struct veil_evlog log = VEIL_EVLOG_INIT, back = VEIL_EVLOG_INIT;
	struct veil_buf js = VEIL_BUF_INIT(1 << 20);
	struct veil_evlog_claims c;
	uint8_t hb[48], hc[48], hm[48], d[3][48], r[4][48], want3[48] = {0}, pre[96];
	uint8_t manual[48];
	static const uint8_t type_le[4] = {0x01, 0x00, 0x00, 0x08};
	uint8_t q[4][48];
	unsigned mask;

	(void)state;
	sha384_str("node binary bytes", hb);
	sha384_str("{\"config\":1}", hc);
	sha384_str("model file bytes", hm);
	assert_int_equal(veil_evlog_extend_runtime(&log, VEIL_EVLOG_NODE_BINARY, hb, 48, d[0]), 0);
	assert_int_equal(veil_evlog_extend_runtime(&log, VEIL_EVLOG_NODE_CONFIG, hc, 48, d[1]), 0);
	assert_int_equal(veil_evlog_extend_runtime(&log, VEIL_EVLOG_MODEL, hm, 48, d[2]), 0);

	/* digest = SHA384(u32le(0x08000001) || ":" || name || ":" || payload) */
	{
		uint8_t buf[4 + 1 + 16 + 1 + 48];
		size_t k = 0;

		memcpy(buf, type_le, 4);
		k = 4;
		buf[k++] = ':';
		memcpy(buf + k, "veil-node-binary", 16);
		k += 16;
		buf[k++] = ':';
		memcpy(buf + k, hb, 48);
		k += 48;
		SHA384(buf, k, manual);
		assert_memory_equal(manual, d[0], 48);
	}
	/* RTMR3 = extend(extend(extend(0, d0), d1), d2) */
	for (int i = 0; i < 3; i++) {
		memcpy(pre, want3, 48);
		memcpy(pre + 48, d[i], 48);
		SHA384(pre, 96, want3);
	}
	veil_evlog_replay(&log, r);
	assert_memory_equal(r[3], want3, 48);
	memset(q, 0, sizeof(q));
	memcpy(q[3], want3, 48);
	assert_int_equal(veil_evlog_check_rtmrs(&log, (const uint8_t(*)[48])q, &mask), 0);

	/* JSON round trip: same shape as dstack, parses back identically */
	assert_int_equal(veil_evlog_encode_json(&log, &js), 0);
	assert_non_null(strstr((const char *)js.data,
			       "{\"imr\":3,\"event_type\":134217729,\"digest\":\""));
	assert_non_null(strstr((const char *)js.data, "\"event\":\"veil-model\""));
	assert_int_equal(parse_json_copy(js.data, js.len, &back), 0);
	assert_same_log(&log, &back);
	assert_int_equal(veil_evlog_check_runtime(&back), 0);
	assert_int_equal(veil_evlog_claims(&back, &c), 0);
	assert_true(c.node_binary.present && c.node_config.present && c.model.present);
	assert_memory_equal(c.node_binary.p, hb, 48);
	assert_memory_equal(c.node_config.p, hc, 48);
	assert_memory_equal(c.model.p, hm, 48);
	assert_false(c.compose_hash.present);
	veil_evlog_free(&back);
	veil_evlog_free(&log);
	veil_buf_free(&js);
}

static void test_veil_extend_rejects_bad_names_and_claims_reject_ambiguity(void **state)
{
	struct veil_evlog log = VEIL_EVLOG_INIT;
	const struct veil_evlog_event *e;
	struct veil_evlog_claims c;
	uint8_t h[48] = {0}, d[48];

	(void)state;
	assert_int_equal(veil_evlog_extend_runtime(&log, "", h, 48, d), VEIL_EINVAL);
	assert_int_equal(veil_evlog_extend_runtime(&log, "a:b", h, 48, d), VEIL_EINVAL);
	assert_int_equal(veil_evlog_extend_runtime(&log, "sp ace", h, 48, d), VEIL_EINVAL);
	assert_int_equal(log.n, 0);
	assert_int_equal(veil_evlog_find_runtime(&log, VEIL_EVLOG_MODEL, &e), VEIL_ENOENT);

	assert_int_equal(veil_evlog_extend_runtime(&log, VEIL_EVLOG_MODEL, h, 48, d), 0);
	assert_int_equal(veil_evlog_find_runtime(&log, VEIL_EVLOG_MODEL, &e), 0);
	assert_ptr_equal(e, &log.ev[0]);
	assert_int_equal(veil_evlog_extend_runtime(&log, VEIL_EVLOG_MODEL, h, 48, d), 0);
	assert_int_equal(veil_evlog_claims(&log, &c), VEIL_EFORMAT);
	assert_non_null(strstr(veil_err_detail(), "\"veil-model\" appears more than once"));
	veil_evlog_free(&log);

	assert_int_equal(veil_evlog_extend_runtime(&log, VEIL_EVLOG_NODE_BINARY, h, 32, d), 0);
	assert_int_equal(veil_evlog_claims(&log, &c), VEIL_EFORMAT);
	assert_non_null(strstr(veil_err_detail(), "payload of 32 bytes, expected 48"));
	veil_evlog_free(&log);

	/* the cap on events */
	for (int i = 0; i < VEIL_EVLOG_MAX_EVENTS; i++)
		assert_int_equal(veil_evlog_append(&log, 0, 1, h, NULL, NULL, 0), 0);
	assert_int_equal(veil_evlog_append(&log, 0, 1, h, NULL, NULL, 0), VEIL_ERANGE);
	assert_int_equal(veil_evlog_append(&log, 4, 1, h, NULL, NULL, 0), VEIL_EINVAL);
	veil_evlog_free(&log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nearai_log_replays_to_quote_rtmrs),
		cmocka_unit_test(test_nearai_runtime_event_digests_match_dstack_formula),
		cmocka_unit_test(test_nearai_claims_match_app_compose_and_info),
		cmocka_unit_test(test_nearai_flipped_digest_byte_breaks_only_its_rtmr),
		cmocka_unit_test(test_nearai_tampered_runtime_event_is_named),
		cmocka_unit_test(test_nearai_json_reencodes_byte_for_byte),
		cmocka_unit_test(test_json_rejects_malformed_logs_with_named_field),
		cmocka_unit_test(test_json_rejects_long_name_huge_array_and_huge_input),
		cmocka_unit_test(test_json_accepts_empty_log_and_ignores_unknown_keys),
		cmocka_unit_test(test_tcg_round_trip_keeps_every_field),
		cmocka_unit_test(test_tcg_truncation_at_every_prefix_fails_cleanly),
		cmocka_unit_test(test_tcg_multi_bank_log_maps_mr_index_and_skips_mrtd_and_no_action),
		cmocka_unit_test(test_tcg_rejects_bad_fields_with_named_error),
		cmocka_unit_test(test_ccel_table_real_vector_parses_and_checksum_is_checked),
		cmocka_unit_test(test_veil_events_round_trip_and_replay_to_extended_rtmr3),
		cmocka_unit_test(test_veil_extend_rejects_bad_names_and_claims_reject_ambiguity),
	};

	return cmocka_run_group_tests_name("eventlog", tests, NULL, NULL);
}
