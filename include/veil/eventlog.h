/* veil event log: a model of a TDX measurement log, parsers for the dstack /
 * NEAR AI JSON log and for the TCG2 crypto-agile binary log (CCEL), RTMR
 * replay, dstack runtime-event checks, named-event extraction for policy,
 * and the encoder + extend API the node uses for its own runtime events.
 *
 * Index mapping.  An event's `imr` is 0..3 and means RTMR0..RTMR3, exactly
 * as the "imr" field of dstack's and NEAR AI's JSON.  The binary CCEL log
 * (TDX GHCI / UEFI CC measurement) numbers measurement registers from 1:
 * MR index 0 = MRTD, 1..4 = RTMR0..3.  The binary parser maps 1..4 to imr
 * 0..3, counts (and drops) MR-index-0 events, as dstack does, because MRTD
 * is not extended by the guest and is compared directly with the quote.
 *
 * Replay (TDX module ABI, TDG.MR.RTMR.EXTEND): every RTMR starts as 48 zero
 * bytes and RTMR[imr] = SHA-384(RTMR[imr] || digest) for each event in log
 * order.
 *
 * Runtime events (dstack "v1", event_type VEIL_EVLOG_RUNTIME_EVENT_TYPE,
 * always RTMR3): digest = SHA-384(u32le(0x08000001) || ":" || name || ":" ||
 * payload).  veil's node measures three things this way, with the raw
 * 48-byte SHA-384 of the thing as payload (so the JSON "event_payload" is
 * its 96-char hex), then names its model file's SHA-256:
 *   "veil-node-binary"  the node executable
 *   "veil-node-config"  its canonical configuration
 *   "veil-model"        the model file
 *   "veil-model-sha256" the model file's SHA-256 (32-byte payload; when the
 *                       node has a local model file)
 * (a gateway: "veil-gateway-binary", "veil-gateway-config").
 *
 * veil's own JSON event log has exactly dstack's shape, so one parser and
 * one replay serve both:
 *   [{"imr":3,"event_type":134217729,"digest":"<96 hex>",
 *     "event":"veil-model","event_payload":"<hex>"}, ...]
 *
 * Ownership: a struct veil_evlog owns its events and their strings; release
 * with veil_evlog_free().  Functions return 0 or a negative VEIL_E* code and
 * record a detail naming the field at fault (veil_err_detail()). */
#ifndef VEIL_EVENTLOG_H
#define VEIL_EVENTLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "veil/base.h"

struct json_t; /* jansson's json_t */

#define VEIL_EVLOG_DIGEST_LEN 48
#define VEIL_EVLOG_NUM_RTMR 4
#define VEIL_EVLOG_RUNTIME_EVENT_TYPE 0x08000001u
#define VEIL_EVLOG_EV_NO_ACTION 0x00000003u   /* TCG: never extended */

/* Caps: a log with more events, a longer name or payload, or a larger
 * encoded form is refused with VEIL_ERANGE. */
#define VEIL_EVLOG_MAX_EVENTS 4096
#define VEIL_EVLOG_MAX_NAME 255
#define VEIL_EVLOG_MAX_PAYLOAD (1u << 20)
#define VEIL_EVLOG_MAX_INPUT (16u << 20)

/* veil's runtime event names. */
#define VEIL_EVLOG_NODE_BINARY "veil-node-binary"
#define VEIL_EVLOG_NODE_CONFIG "veil-node-config"
#define VEIL_EVLOG_MODEL "veil-model"
/* The model file's SHA-256 (32-byte payload), measured after veil-model:
 * it binds the report's model.sha256 (what receipts and model_sha256 pins
 * name) to the quote. */
#define VEIL_EVLOG_MODEL_SHA256 "veil-model-sha256"
#define VEIL_EVLOG_MODEL_SHA256_LEN 32

struct veil_evlog_event {
	uint32_t imr;        /* 0..3 = RTMR0..3 */
	uint32_t event_type;
	uint8_t digest[VEIL_EVLOG_DIGEST_LEN];
	char *name;          /* NUL-terminated; "" for boot-time events */
	uint8_t *payload;    /* payload_len bytes (NULL when 0) */
	size_t payload_len;
};

struct veil_evlog {
	struct veil_evlog_event *ev;
	size_t n;
	size_t cap;
};

#define VEIL_EVLOG_INIT {NULL, 0, 0}

void veil_evlog_init(struct veil_evlog *log);
/* Frees every event and the array; the log is left empty and reusable. */
void veil_evlog_free(struct veil_evlog *log);

/* Appends a copy of one event.  imr must be 0..3, name at most
 * VEIL_EVLOG_MAX_NAME bytes (NULL means ""), payload at most
 * VEIL_EVLOG_MAX_PAYLOAD. */
int veil_evlog_append(struct veil_evlog *log, uint32_t imr, uint32_t event_type,
		      const uint8_t digest[VEIL_EVLOG_DIGEST_LEN],
		      const char *name, const uint8_t *payload, size_t payload_len);

/* ---- parsers ------------------------------------------------------------ */

/* Parses a dstack / NEAR AI / veil JSON event log: an array (at most
 * VEIL_EVLOG_MAX_EVENTS) of objects with all of "imr" (integer 0..3),
 * "event_type" (integer 0..2^32-1), "digest" (96 hex chars), "event"
 * (string, no NUL) and "event_payload" (even-length hex).  Other keys are
 * ignored; duplicate keys are refused.  On success *out holds the new log
 * (the caller frees it); on failure *out is untouched.  VEIL_EFORMAT or
 * VEIL_ERANGE with a detail such as "event 4: imr 4 out of range 0..3". */
int veil_evlog_parse_json(const uint8_t *p, size_t n, struct veil_evlog *out);
/* The same, from an already parsed jansson array (e.g. a field of a report). */
int veil_evlog_from_json(const struct json_t *arr, struct veil_evlog *out);

/* What the binary parser saw besides the events it returns. */
struct veil_evlog_tcg_info {
	uint8_t spec_major, spec_minor, spec_errata, uintn_size;
	uint32_t num_algs;            /* in the Spec ID event */
	size_t skipped_mrtd;          /* MR index 0 events (dropped) */
	size_t skipped_no_action;     /* EV_NO_ACTION events (dropped) */
	size_t consumed;              /* bytes up to the end of the last event */
};

/* Parses a TCG2 crypto-agile binary event log (TCG PC Client Platform
 * Firmware Profile §10.2: one TCG_PCR_EVENT carrying the "Spec ID Event03"
 * header, then TCG_PCR_EVENT2 records), as found in the TDX CCEL area.
 * Digest sizes come from the Spec ID event's algorithm table; every event
 * must carry a SHA-384 digest (TPM_ALG_SHA384 = 0x000C), which becomes the
 * event's digest.  The log ends at the end of input, at a record whose MR
 * index is 0xFFFFFFFF, or where only 0x00 / 0xFF filler remains (the
 * unused tail of the ACPI log area).  Runtime events (type 0x08000001)
 * carry "name:payload" as event data and get name and payload split out;
 * other events get name "" and the event data as payload.  `info` may be
 * NULL.  Out-params are written only on success. */
int veil_evlog_parse_tcg(const uint8_t *p, size_t n, struct veil_evlog *out,
			 struct veil_evlog_tcg_info *info);

/* ACPI "CCEL" table (UEFI 2.10 / ACPI 6.5 §5.2.34): where the firmware put
 * the binary log.  Checks signature, length and checksum. */
struct veil_evlog_ccel_table {
	uint8_t cc_type;     /* 2 = TDX */
	uint8_t cc_subtype;
	uint64_t laml;       /* log area minimum length */
	uint64_t lasa;       /* log area start address */
};
int veil_evlog_ccel_table_parse(const uint8_t *p, size_t n,
				struct veil_evlog_ccel_table *out);

/* ---- encoders ----------------------------------------------------------- */

/* Appends the compact JSON form (dstack key order: imr, event_type, digest,
 * event, event_payload) to `out`.  Parsing it gives back the same log. */
int veil_evlog_encode_json(const struct veil_evlog *log, struct veil_buf *out);
/* A new jansson array for embedding in a larger document; NULL on failure.
 * The caller owns the reference. */
struct json_t *veil_evlog_to_json(const struct veil_evlog *log);

/* Appends a TCG2 crypto-agile binary log (Spec ID header with SHA-384 only,
 * MR index = imr + 1, runtime events as "name:payload") to `out`.  A runtime
 * event whose name contains ':' cannot be encoded (VEIL_EINVAL).
 * veil_evlog_parse_tcg() of the result gives back the same log. */
int veil_evlog_encode_tcg(const struct veil_evlog *log, struct veil_buf *out);

/* ---- runtime events (the node side) ------------------------------------ */

/* The dstack v1 runtime-event digest over name and payload (any name; a
 * verifier recomputes it for whatever the log says). */
int veil_evlog_runtime_digest(const char *name, const uint8_t *payload,
			      size_t payload_len,
			      uint8_t out[VEIL_EVLOG_DIGEST_LEN]);

/* Appends a runtime event (RTMR3, type 0x08000001) and writes the digest
 * the caller must extend RTMR3 with (configfs-tsm / TDG.MR.RTMR.EXTEND).
 * The name must be 1..VEIL_EVLOG_MAX_NAME bytes of printable ASCII without
 * ':' (so the binary "name:payload" form stays unambiguous). */
int veil_evlog_extend_runtime(struct veil_evlog *log, const char *name,
			      const uint8_t *payload, size_t payload_len,
			      uint8_t out_digest48[VEIL_EVLOG_DIGEST_LEN]);

/* ---- verification ------------------------------------------------------- */

/* Replays the log from zero RTMRs into rtmr[0..3].  Every event in the
 * model is extended (the binary parser already dropped EV_NO_ACTION). */
void veil_evlog_replay(const struct veil_evlog *log,
		       uint8_t rtmr[VEIL_EVLOG_NUM_RTMR][VEIL_EVLOG_DIGEST_LEN]);

/* Replays the log and compares with the quote's RTMR0..3.  *mismatch_mask
 * (bit i = RTMRi differs) is written in every case, so a caller can report
 * which register failed.  Returns 0 when all four match, VEIL_EBADMSG
 * ("event log replay: RTMR1, RTMR3 differ from the quote") otherwise. */
int veil_evlog_check_rtmrs(const struct veil_evlog *log,
			   const uint8_t quote_rtmr[VEIL_EVLOG_NUM_RTMR][VEIL_EVLOG_DIGEST_LEN],
			   unsigned *mismatch_mask);

/* Checks every runtime event: it sits in RTMR3, its name has no ':' and its
 * digest equals the formula over its name and payload; and RTMR3 holds
 * nothing else (the replay does not bind an event's type, so a relabelled
 * runtime event would otherwise drop out of the claims unnoticed).  VEIL_EBADMSG names the first event
 * that fails ("event 22 (compose-hash): digest does not match ..."). */
int veil_evlog_check_runtime(const struct veil_evlog *log);

/* The single runtime event named `name`: VEIL_ENOENT when there is none,
 * VEIL_EFORMAT when there are several (a policy must not guess which). */
int veil_evlog_find_runtime(const struct veil_evlog *log, const char *name,
			    const struct veil_evlog_event **out);

/* A named payload; p points into the log (valid while it lives). */
struct veil_evlog_value {
	bool present;
	const uint8_t *p;
	size_t len;
};

/* The runtime events a policy looks at.  dstack: compose-hash (SHA-256 of
 * app-compose.json), app-id, instance-id, os-image-hash, key-provider (JSON
 * text); veil: the node's three 48-byte measurements (its model SHA-256
 * event is read by veil_evlog_find_runtime). */
struct veil_evlog_claims {
	struct veil_evlog_value compose_hash;
	struct veil_evlog_value app_id;
	struct veil_evlog_value instance_id;
	struct veil_evlog_value os_image_hash;
	struct veil_evlog_value key_provider;
	struct veil_evlog_value node_binary;
	struct veil_evlog_value node_config;
	struct veil_evlog_value model;
};

/* Fills `out` from the log.  Absent events are left !present; a duplicated
 * one, or a veil measurement whose payload is not 48 bytes, is VEIL_EFORMAT.
 * Call veil_evlog_check_runtime() and veil_evlog_check_rtmrs() first: the
 * claims are only as good as the replay. */
int veil_evlog_claims(const struct veil_evlog *log, struct veil_evlog_claims *out);

#endif
