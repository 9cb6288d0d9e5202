/* libFuzzer harness for the event log parsers.  The first input byte picks
 * the parser (mod 3): 0 = JSON (veil_evlog_parse_json), 1 = TCG2 binary log
 * (veil_evlog_parse_tcg), 2 = ACPI CCEL table; the rest is its input.
 * Whatever parses must survive replay and the runtime/claims checks, and
 * must re-encode to a log that parses back to the same events. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/eventlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_or_abort(const struct veil_evlog *a, const struct veil_evlog *b)
{
	if (a->n != b->n)
		abort();
	for (size_t i = 0; i < a->n; i++) {
		const struct veil_evlog_event *x = &a->ev[i], *y = &b->ev[i];

		if (x->imr != y->imr || x->event_type != y->event_type ||
		    memcmp(x->digest, y->digest, sizeof(x->digest)) != 0 ||
		    strcmp(x->name, y->name) != 0 || x->payload_len != y->payload_len ||
		    (x->payload_len && memcmp(x->payload, y->payload, x->payload_len) != 0))
			abort();
	}
}

static void exercise(const struct veil_evlog *log)
{
	uint8_t r[VEIL_EVLOG_NUM_RTMR][VEIL_EVLOG_DIGEST_LEN];
	struct veil_evlog_claims c;
	unsigned mask;

	veil_evlog_replay(log, r);
	if (veil_evlog_check_rtmrs(log, (const uint8_t(*)[VEIL_EVLOG_DIGEST_LEN])r, &mask) != 0 ||
	    mask != 0)
		abort();
	(void)veil_evlog_check_runtime(log);
	(void)veil_evlog_claims(log, &c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_evlog log = VEIL_EVLOG_INIT, back = VEIL_EVLOG_INIT;
	struct veil_buf enc = VEIL_BUF_INIT(64u << 20);
	struct veil_evlog_ccel_table t;
	struct veil_evlog_tcg_info info;

	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		if (veil_evlog_parse_json(data + 1, size - 1, &log) != 0)
			break;
		exercise(&log);
		if (veil_evlog_encode_json(&log, &enc) != 0 ||
		    veil_evlog_parse_json(enc.data, enc.len, &back) != 0)
			abort();
		same_or_abort(&log, &back);
		break;
	case 1:
		if (veil_evlog_parse_tcg(data + 1, size - 1, &log, &info) != 0)
			break;
		if (info.consumed > size - 1)
			abort();
		exercise(&log);
		if (veil_evlog_encode_tcg(&log, &enc) != 0 ||
		    veil_evlog_parse_tcg(enc.data, enc.len, &back, NULL) != 0)
			abort();
		same_or_abort(&log, &back);
		break;
	default:
		(void)veil_evlog_ccel_table_parse(data + 1, size - 1, &t);
		break;
	}
	veil_evlog_free(&log);
	veil_evlog_free(&back);
	veil_buf_free(&enc);
	return 0;
}
