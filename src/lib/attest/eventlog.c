/* TDX event log: model, dstack JSON and TCG2 binary parsers, encoders, RTMR
 * replay and runtime-event checks.  See include/veil/eventlog.h. */
#include "veil/eventlog.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define TPM_ALG_SHA384 0x000Cu
#define TCG_MAX_ALGS 16u
#define TCG_SPEC_ID_SIG "Spec ID Event03"  /* 15 chars + NUL = 16 bytes */

/* ---- model ------------------------------------------------------------ */

void veil_evlog_init(struct veil_evlog *log)
{
	log->ev = NULL;
	log->n = 0;
	log->cap = 0;
}

void veil_evlog_free(struct veil_evlog *log)
{
	if (!log)
		return;
	for (size_t i = 0; i < log->n; i++) {
		free(log->ev[i].name);
		free(log->ev[i].payload);
	}
	free(log->ev);
	veil_evlog_init(log);
}

/* Appends and takes ownership of name/payload (freed here on failure). */
static int append_owned(struct veil_evlog *log, uint32_t imr, uint32_t type,
			const uint8_t digest[VEIL_EVLOG_DIGEST_LEN], char *name,
			uint8_t *payload, size_t payload_len)
{
	struct veil_evlog_event *e;

	if (log->n >= VEIL_EVLOG_MAX_EVENTS) {
		free(name);
		free(payload);
		return veil_errf(VEIL_ERANGE, "event log: more than %d events",
				 VEIL_EVLOG_MAX_EVENTS);
	}
	if (log->n == log->cap) {
		size_t ncap = log->cap ? log->cap * 2 : 32;
		struct veil_evlog_event *nev;

		if (ncap > VEIL_EVLOG_MAX_EVENTS)
			ncap = VEIL_EVLOG_MAX_EVENTS;
		nev = realloc(log->ev, ncap * sizeof(*nev));
		if (!nev) {
			free(name);
			free(payload);
			return VEIL_ENOMEM;
		}
		log->ev = nev;
		log->cap = ncap;
	}
	e = &log->ev[log->n++];
	e->imr = imr;
	e->event_type = type;
	memcpy(e->digest, digest, VEIL_EVLOG_DIGEST_LEN);
	e->name = name;
	e->payload = payload;
	e->payload_len = payload_len;
	return 0;
}

static char *dup_name(const char *s, size_t len)
{
	char *r = malloc(len + 1);

	if (!r)
		return NULL;
	if (len)
		memcpy(r, s, len);
	r[len] = '\0';
	return r;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
	uint8_t *r;

	if (n == 0)
		return NULL;
	r = malloc(n);
	if (r)
		memcpy(r, p, n);
	return r;
}

int veil_evlog_append(struct veil_evlog *log, uint32_t imr, uint32_t event_type,
		      const uint8_t digest[VEIL_EVLOG_DIGEST_LEN],
		      const char *name, const uint8_t *payload, size_t payload_len)
{
	size_t nlen;
	char *nm;
	uint8_t *pl = NULL;

	if (!log || !digest || (payload_len && !payload))
		return veil_errf(VEIL_EINVAL, "event log append: NULL argument");
	if (imr >= VEIL_EVLOG_NUM_RTMR)
		return veil_errf(VEIL_EINVAL, "event log append: imr %u out of range 0..3",
				 imr);
	if (!name)
		name = "";
	nlen = strlen(name);
	if (nlen > VEIL_EVLOG_MAX_NAME)
		return veil_errf(VEIL_ERANGE, "event log append: name length %zu exceeds %d",
				 nlen, VEIL_EVLOG_MAX_NAME);
	if (payload_len > VEIL_EVLOG_MAX_PAYLOAD)
		return veil_errf(VEIL_ERANGE, "event log append: payload length %zu exceeds %u",
				 payload_len, VEIL_EVLOG_MAX_PAYLOAD);
	if (!(nm = dup_name(name, nlen)))
		return VEIL_ENOMEM;
	if (payload_len && !(pl = dup_bytes(payload, payload_len))) {
		free(nm);
		return VEIL_ENOMEM;
	}
	return append_owned(log, imr, event_type, digest, nm, pl, payload_len);
}

/* ---- runtime digest --------------------------------------------------- */

int veil_evlog_runtime_digest(const char *name, const uint8_t *payload,
			      size_t payload_len, uint8_t out[VEIL_EVLOG_DIGEST_LEN])
{
	static const uint8_t type_le[4] = {0x01, 0x00, 0x00, 0x08};
	EVP_MD_CTX *c;
	int ok;

	if (!name || !out || (payload_len && !payload))
		return veil_errf(VEIL_EINVAL, "runtime digest: NULL argument");
	if (!(c = EVP_MD_CTX_new()))
		return VEIL_ENOMEM;
	/* dstack cc-eventlog runtime_events.rs, v1: SHA384(u32le(event_type) ||
	 * ":" || event || ":" || payload). */
	ok = EVP_DigestInit_ex(c, EVP_sha384(), NULL) == 1 &&
	     EVP_DigestUpdate(c, type_le, 4) == 1 && EVP_DigestUpdate(c, ":", 1) == 1 &&
	     EVP_DigestUpdate(c, name, strlen(name)) == 1 &&
	     EVP_DigestUpdate(c, ":", 1) == 1 &&
	     (payload_len == 0 || EVP_DigestUpdate(c, payload, payload_len) == 1) &&
	     EVP_DigestFinal_ex(c, out, NULL) == 1;
	EVP_MD_CTX_free(c);
	return ok ? 0 : veil_errf(VEIL_EINTERNAL, "runtime digest: SHA-384 failed");
}

static bool name_ok_for_extend(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > VEIL_EVLOG_MAX_NAME)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x21 || c > 0x7e || c == ':')
			return false;
	}
	return true;
}

int veil_evlog_extend_runtime(struct veil_evlog *log, const char *name,
			      const uint8_t *payload, size_t payload_len,
			      uint8_t out_digest48[VEIL_EVLOG_DIGEST_LEN])
{
	uint8_t d[VEIL_EVLOG_DIGEST_LEN];
	int rc;

	if (!log || !name || !out_digest48 || (payload_len && !payload))
		return veil_errf(VEIL_EINVAL, "extend runtime: NULL argument");
	if (!name_ok_for_extend(name))
		return veil_errf(VEIL_EINVAL,
				 "extend runtime: event name must be 1..%d printable ASCII "
				 "characters without ':'", VEIL_EVLOG_MAX_NAME);
	if ((rc = veil_evlog_runtime_digest(name, payload, payload_len, d)) < 0)
		return rc;
	if ((rc = veil_evlog_append(log, 3, VEIL_EVLOG_RUNTIME_EVENT_TYPE, d, name,
				    payload, payload_len)) < 0)
		return rc;
	memcpy(out_digest48, d, sizeof(d));
	return 0;
}

/* ---- JSON parser ------------------------------------------------------- */

static int json_event(const json_t *o, size_t i, struct veil_evlog *log)
{
	const json_t *jimr, *jtype, *jdig, *jname, *jpl;
	json_int_t imr, type;
	uint8_t digest[VEIL_EVLOG_DIGEST_LEN];
	const char *s;
	size_t len, got;
	char *name = NULL;
	uint8_t *pl = NULL;
	int rc;

	if (!json_is_object(o))
		return veil_errf(VEIL_EFORMAT, "event %zu: not a JSON object", i);
	jimr = json_object_get(o, "imr");
	jtype = json_object_get(o, "event_type");
	jdig = json_object_get(o, "digest");
	jname = json_object_get(o, "event");
	jpl = json_object_get(o, "event_payload");
	if (!jimr || !jtype || !jdig || !jname || !jpl)
		return veil_errf(VEIL_EFORMAT, "event %zu: missing field \"%s\"", i,
				 !jimr ? "imr" : !jtype ? "event_type" :
				 !jdig ? "digest" : !jname ? "event" : "event_payload");
	if (!json_is_integer(jimr))
		return veil_errf(VEIL_EFORMAT, "event %zu: \"imr\" is not an integer", i);
	imr = json_integer_value(jimr);
	if (imr < 0 || imr >= VEIL_EVLOG_NUM_RTMR)
		return veil_errf(VEIL_EFORMAT, "event %zu: imr %lld out of range 0..3", i,
				 (long long)imr);
	if (!json_is_integer(jtype))
		return veil_errf(VEIL_EFORMAT, "event %zu: \"event_type\" is not an integer",
				 i);
	type = json_integer_value(jtype);
	if (type < 0 || type > (json_int_t)UINT32_MAX)
		return veil_errf(VEIL_EFORMAT,
				 "event %zu: event_type %lld out of range 0..2^32-1", i,
				 (long long)type);
	if (!json_is_string(jdig))
		return veil_errf(VEIL_EFORMAT, "event %zu: \"digest\" is not a string", i);
	s = json_string_value(jdig);
	len = json_string_length(jdig);
	if (len != 2 * VEIL_EVLOG_DIGEST_LEN)
		return veil_errf(VEIL_EFORMAT,
				 "event %zu: digest has %zu hex chars, expected %d", i, len,
				 2 * VEIL_EVLOG_DIGEST_LEN);
	if (veil_hex_decode(s, len, digest, sizeof(digest), &got) < 0 ||
	    got != VEIL_EVLOG_DIGEST_LEN)
		return veil_errf(VEIL_EFORMAT, "event %zu: digest is not valid hex", i);
	if (!json_is_string(jname))
		return veil_errf(VEIL_EFORMAT, "event %zu: \"event\" is not a string", i);
	len = json_string_length(jname);
	if (len > VEIL_EVLOG_MAX_NAME)
		return veil_errf(VEIL_ERANGE, "event %zu: event name length %zu exceeds %d",
				 i, len, VEIL_EVLOG_MAX_NAME);
	if (!json_is_string(jpl))
		return veil_errf(VEIL_EFORMAT, "event %zu: \"event_payload\" is not a string",
				 i);
	s = json_string_value(jpl);
	len = json_string_length(jpl);
	if (len / 2 > VEIL_EVLOG_MAX_PAYLOAD)
		return veil_errf(VEIL_ERANGE, "event %zu: payload of %zu bytes exceeds %u", i,
				 len / 2, VEIL_EVLOG_MAX_PAYLOAD);
	if (len % 2)
		return veil_errf(VEIL_EFORMAT, "event %zu: event_payload has odd hex length %zu",
				 i, len);
	if (len) {
		if (!(pl = malloc(len / 2)))
			return VEIL_ENOMEM;
		if (veil_hex_decode(s, len, pl, len / 2, &got) < 0 || got != len / 2) {
			free(pl);
			return veil_errf(VEIL_EFORMAT, "event %zu: event_payload is not valid hex",
					 i);
		}
	}
	if (!(name = dup_name(json_string_value(jname), json_string_length(jname)))) {
		free(pl);
		return VEIL_ENOMEM;
	}
	rc = append_owned(log, (uint32_t)imr, (uint32_t)type, digest, name, pl, len / 2);
	return rc;
}

int veil_evlog_from_json(const struct json_t *arr, struct veil_evlog *out)
{
	struct veil_evlog log = VEIL_EVLOG_INIT;
	size_t n;
	int rc = 0;

	if (!arr || !out)
		return veil_errf(VEIL_EINVAL, "event log: NULL argument");
	if (!json_is_array(arr))
		return veil_errf(VEIL_EFORMAT, "event log: top level is not a JSON array");
	n = json_array_size(arr);
	if (n > VEIL_EVLOG_MAX_EVENTS)
		return veil_errf(VEIL_ERANGE, "event log: %zu events exceed the cap of %d", n,
				 VEIL_EVLOG_MAX_EVENTS);
	for (size_t i = 0; i < n; i++)
		if ((rc = json_event(json_array_get(arr, i), i, &log)) < 0)
			goto out;
	*out = log;
	veil_evlog_init(&log);
out:
	veil_evlog_free(&log);
	return rc;
}

int veil_evlog_parse_json(const uint8_t *p, size_t n, struct veil_evlog *out)
{
	json_error_t err;
	json_t *root;
	int rc;

	if ((!p && n) || !out)
		return veil_errf(VEIL_EINVAL, "event log: NULL argument");
	if (n > VEIL_EVLOG_MAX_INPUT)
		return veil_errf(VEIL_ERANGE, "event log: %zu bytes exceed the cap of %u", n,
				 VEIL_EVLOG_MAX_INPUT);
	root = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES,
			  &err);
	if (!root)
		return veil_errf(VEIL_EFORMAT, "event log: invalid JSON at line %d column %d: %s",
				 err.line, err.column, err.text);
	rc = veil_evlog_from_json(root, out);
	json_decref(root);
	return rc;
}

/* ---- JSON encoder ------------------------------------------------------ */

static json_t *event_to_json(const struct veil_evlog_event *e, size_t i)
{
	json_t *o = json_object();
	char dig[2 * VEIL_EVLOG_DIGEST_LEN + 1];
	char *plhex = NULL;
	json_t *jname = NULL;

	if (!o)
		return NULL;
	plhex = malloc(2 * e->payload_len + 1);
	if (!plhex)
		goto fail;
	if (veil_hex_encode(e->digest, VEIL_EVLOG_DIGEST_LEN, dig, sizeof(dig)) < 0 ||
	    veil_hex_encode(e->payload, e->payload_len, plhex, 2 * e->payload_len + 1) < 0)
		goto fail;
	if (!(jname = json_string(e->name))) {
		veil_errf(VEIL_EFORMAT, "event %zu: name is not valid UTF-8", i);
		goto fail;
	}
	if (json_object_set_new(o, "imr", json_integer(e->imr)) < 0 ||
	    json_object_set_new(o, "event_type", json_integer(e->event_type)) < 0 ||
	    json_object_set_new(o, "digest", json_string(dig)) < 0 ||
	    json_object_set(o, "event", jname) < 0 ||
	    json_object_set_new(o, "event_payload", json_string(plhex)) < 0)
		goto fail;
	json_decref(jname);
	free(plhex);
	return o;
fail:
	json_decref(jname);
	free(plhex);
	json_decref(o);
	return NULL;
}

struct json_t *veil_evlog_to_json(const struct veil_evlog *log)
{
	json_t *arr;

	if (!log)
		return NULL;
	if (!(arr = json_array()))
		return NULL;
	for (size_t i = 0; i < log->n; i++) {
		json_t *o = event_to_json(&log->ev[i], i);

		if (!o || json_array_append_new(arr, o) < 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

int veil_evlog_encode_json(const struct veil_evlog *log, struct veil_buf *out)
{
	json_t *arr;
	char *s;
	int rc;

	if (!log || !out)
		return veil_errf(VEIL_EINVAL, "event log encode: NULL argument");
	veil_err_clear();
	if (!(arr = veil_evlog_to_json(log)))
		return *veil_err_detail() ? VEIL_EFORMAT : VEIL_ENOMEM;
	s = json_dumps(arr, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(arr);
	if (!s)
		return VEIL_ENOMEM;
	rc = veil_buf_append_str(out, s);
	free(s);
	return rc;
}

/* ---- TCG2 binary parser ------------------------------------------------ */

struct rd {
	const uint8_t *p;
	size_t n;
	size_t off;
};

static bool rd_u8(struct rd *r, uint8_t *v)
{
	if (r->n - r->off < 1)
		return false;
	*v = r->p[r->off++];
	return true;
}

static bool rd_u16(struct rd *r, uint16_t *v)
{
	if (r->n - r->off < 2)
		return false;
	*v = (uint16_t)(r->p[r->off] | (r->p[r->off + 1] << 8));
	r->off += 2;
	return true;
}

static bool rd_u32(struct rd *r, uint32_t *v)
{
	const uint8_t *q = r->p + r->off;

	if (r->n - r->off < 4)
		return false;
	*v = (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) |
	     ((uint32_t)q[3] << 24);
	r->off += 4;
	return true;
}

static bool rd_skip(struct rd *r, size_t k)
{
	if (r->n - r->off < k)
		return false;
	r->off += k;
	return true;
}

static bool only_filler(const uint8_t *p, size_t n)
{
	uint8_t f = p[0];

	if (f != 0x00 && f != 0xff)
		return false;
	for (size_t i = 1; i < n; i++)
		if (p[i] != f)
			return false;
	return true;
}

struct alg {
	uint16_t id;
	uint16_t size;
};

/* TCG PC Client PFP §10.2.1: TCG_PCR_EVENT carrying TCG_EfiSpecIdEvent. */
static int tcg_header(struct rd *r, struct alg *algs, uint32_t *nalgs,
		      struct veil_evlog_tcg_info *info)
{
	uint32_t pcr, type, esize, num;
	uint8_t vsize;
	struct rd ev;
	bool have384 = false;

	if (!rd_u32(r, &pcr) || !rd_u32(r, &type) || !rd_skip(r, 20) || !rd_u32(r, &esize))
		return veil_errf(VEIL_EFORMAT,
				 "TCG log header: %zu bytes, shorter than the 32-byte "
				 "TCG_PCR_EVENT header", r->n);
	if (type != VEIL_EVLOG_EV_NO_ACTION)
		return veil_errf(VEIL_EFORMAT,
				 "TCG log header: event type 0x%08x, expected EV_NO_ACTION "
				 "(not a crypto-agile log)", type);
	if (esize > r->n - r->off)
		return veil_errf(VEIL_EFORMAT,
				 "TCG log header: event size %u exceeds remaining %zu", esize,
				 r->n - r->off);
	ev.p = r->p + r->off;
	ev.n = esize;
	ev.off = 0;
	r->off += esize;
	if (ev.n < 24 || memcmp(ev.p, TCG_SPEC_ID_SIG, 16) != 0)
		return veil_errf(VEIL_EFORMAT,
				 "TCG log header: no \"Spec ID Event03\" signature");
	ev.off = 20; /* signature, platformClass */
	if (!rd_u8(&ev, &info->spec_minor) || !rd_u8(&ev, &info->spec_major) ||
	    !rd_u8(&ev, &info->spec_errata) || !rd_u8(&ev, &info->uintn_size) ||
	    !rd_u32(&ev, &num))
		return veil_errf(VEIL_EFORMAT, "TCG log header: Spec ID event truncated");
	if (info->spec_major != 2)
		return veil_errf(VEIL_ENOTSUP, "TCG log header: spec version %u.%u, expected 2.x",
				 info->spec_major, info->spec_minor);
	if (num == 0 || num > TCG_MAX_ALGS)
		return veil_errf(VEIL_EFORMAT,
				 "TCG log header: %u digest algorithms, expected 1..%u", num,
				 TCG_MAX_ALGS);
	for (uint32_t i = 0; i < num; i++) {
		if (!rd_u16(&ev, &algs[i].id) || !rd_u16(&ev, &algs[i].size))
			return veil_errf(VEIL_EFORMAT,
					 "TCG log header: algorithm table entry %u truncated", i);
		for (uint32_t j = 0; j < i; j++)
			if (algs[j].id == algs[i].id)
				return veil_errf(VEIL_EFORMAT,
						 "TCG log header: algorithm 0x%04x listed twice",
						 algs[i].id);
		if (algs[i].size == 0)
			return veil_errf(VEIL_EFORMAT,
					 "TCG log header: algorithm 0x%04x has digest size 0",
					 algs[i].id);
		if (algs[i].id == TPM_ALG_SHA384) {
			if (algs[i].size != VEIL_EVLOG_DIGEST_LEN)
				return veil_errf(VEIL_EFORMAT,
						 "TCG log header: SHA-384 digest size %u, expected 48",
						 algs[i].size);
			have384 = true;
		}
	}
	if (!have384)
		return veil_errf(VEIL_ENOTSUP, "TCG log header: no SHA-384 bank in the log");
	if (!rd_u8(&ev, &vsize) || !rd_skip(&ev, vsize))
		return veil_errf(VEIL_EFORMAT, "TCG log header: vendor info truncated");
	*nalgs = num;
	info->num_algs = num;
	(void)pcr;
	return 0;
}

/* TCG PC Client PFP §10.2.2: TCG_PCR_EVENT2. */
static int tcg_event(struct rd *r, size_t rec, const struct alg *algs, uint32_t nalgs,
		     struct veil_evlog *log, struct veil_evlog_tcg_info *info)
{
	size_t start = r->off;
	uint32_t pcr, type, count, esize;
	uint8_t digest[VEIL_EVLOG_DIGEST_LEN];
	bool have384 = false;
	const uint8_t *data;
	char *name = NULL;
	uint8_t *pl = NULL;
	size_t pl_len;

	if (!rd_u32(r, &pcr) || !rd_u32(r, &type) || !rd_u32(r, &count))
		return veil_errf(VEIL_EFORMAT, "TCG record %zu at offset %zu: header truncated",
				 rec, start);
	if (pcr > VEIL_EVLOG_NUM_RTMR)
		return veil_errf(VEIL_EFORMAT,
				 "TCG record %zu at offset %zu: MR index %u out of range 0..4",
				 rec, start, pcr);
	if (count == 0 || count > nalgs)
		return veil_errf(VEIL_EFORMAT,
				 "TCG record %zu at offset %zu: %u digests, expected 1..%u", rec,
				 start, count, nalgs);
	for (uint32_t i = 0; i < count; i++) {
		uint16_t id;
		uint32_t k;

		if (!rd_u16(r, &id))
			return veil_errf(VEIL_EFORMAT,
					 "TCG record %zu at offset %zu: digest %u truncated", rec,
					 start, i);
		for (k = 0; k < nalgs && algs[k].id != id; k++)
			;
		if (k == nalgs)
			return veil_errf(VEIL_EFORMAT,
					 "TCG record %zu at offset %zu: digest algorithm 0x%04x "
					 "not in the Spec ID table", rec, start, id);
		if (algs[k].size > r->n - r->off)
			return veil_errf(VEIL_EFORMAT,
					 "TCG record %zu at offset %zu: digest length %u exceeds "
					 "remaining %zu", rec, start, algs[k].size, r->n - r->off);
		if (id == TPM_ALG_SHA384) {
			if (have384)
				return veil_errf(VEIL_EFORMAT,
						 "TCG record %zu at offset %zu: two SHA-384 digests",
						 rec, start);
			memcpy(digest, r->p + r->off, VEIL_EVLOG_DIGEST_LEN);
			have384 = true;
		}
		r->off += algs[k].size;
	}
	if (!rd_u32(r, &esize))
		return veil_errf(VEIL_EFORMAT,
				 "TCG record %zu at offset %zu: event size truncated", rec, start);
	if (esize > r->n - r->off)
		return veil_errf(VEIL_EFORMAT,
				 "TCG record %zu at offset %zu: event size %u exceeds remaining %zu",
				 rec, start, esize, r->n - r->off);
	if (esize > VEIL_EVLOG_MAX_PAYLOAD)
		return veil_errf(VEIL_ERANGE,
				 "TCG record %zu at offset %zu: event size %u exceeds %u", rec,
				 start, esize, VEIL_EVLOG_MAX_PAYLOAD);
	data = r->p + r->off;
	r->off += esize;

	if (type == VEIL_EVLOG_EV_NO_ACTION) {
		info->skipped_no_action++;
		return 0;
	}
	if (pcr == 0) {
		info->skipped_mrtd++;
		return 0;
	}
	if (!have384)
		return veil_errf(VEIL_EFORMAT, "TCG record %zu at offset %zu: no SHA-384 digest",
				 rec, start);
	if (type == VEIL_EVLOG_RUNTIME_EVENT_TYPE) {
		const uint8_t *colon = memchr(data, ':', esize);
		size_t nlen;

		if (!colon)
			return veil_errf(VEIL_EFORMAT,
					 "TCG record %zu at offset %zu: runtime event data has no "
					 "\"name:payload\" separator", rec, start);
		nlen = (size_t)(colon - data);
		if (nlen > VEIL_EVLOG_MAX_NAME || memchr(data, '\0', nlen))
			return veil_errf(VEIL_EFORMAT,
					 "TCG record %zu at offset %zu: bad runtime event name", rec,
					 start);
		if (!(name = dup_name((const char *)data, nlen)))
			return VEIL_ENOMEM;
		pl_len = esize - nlen - 1;
		data = colon + 1;
	} else {
		if (!(name = dup_name("", 0)))
			return VEIL_ENOMEM;
		pl_len = esize;
	}
	if (pl_len && !(pl = dup_bytes(data, pl_len))) {
		free(name);
		return VEIL_ENOMEM;
	}
	return append_owned(log, pcr - 1, type, digest, name, pl, pl_len);
}

int veil_evlog_parse_tcg(const uint8_t *p, size_t n, struct veil_evlog *out,
			 struct veil_evlog_tcg_info *info)
{
	struct veil_evlog log = VEIL_EVLOG_INIT;
	struct veil_evlog_tcg_info inf;
	struct alg algs[TCG_MAX_ALGS];
	uint32_t nalgs = 0;
	struct rd r;
	size_t rec = 0;
	int rc;

	if ((!p && n) || !out)
		return veil_errf(VEIL_EINVAL, "TCG log: NULL argument");
	if (n > VEIL_EVLOG_MAX_INPUT)
		return veil_errf(VEIL_ERANGE, "TCG log: %zu bytes exceed the cap of %u", n,
				 VEIL_EVLOG_MAX_INPUT);
	memset(&inf, 0, sizeof(inf));
	r.p = p;
	r.n = n;
	r.off = 0;
	if ((rc = tcg_header(&r, algs, &nalgs, &inf)) < 0)
		goto out;
	inf.consumed = r.off;
	while (r.off < r.n) {
		const uint8_t *q = r.p + r.off;
		size_t left = r.n - r.off;

		if (left >= 4 && q[0] == 0xff && q[1] == 0xff && q[2] == 0xff && q[3] == 0xff)
			break;
		if (only_filler(q, left))
			break;
		if (rec >= (size_t)VEIL_EVLOG_MAX_EVENTS * 4) {
			rc = veil_errf(VEIL_ERANGE, "TCG log: more than %d records",
				       VEIL_EVLOG_MAX_EVENTS * 4);
			goto out;
		}
		if ((rc = tcg_event(&r, rec, algs, nalgs, &log, &inf)) < 0)
			goto out;
		rec++;
		inf.consumed = r.off;
	}
	*out = log;
	veil_evlog_init(&log);
	if (info)
		*info = inf;
	rc = 0;
out:
	veil_evlog_free(&log);
	return rc;
}

/* ---- TCG2 binary encoder ----------------------------------------------- */

static int put_u32(struct veil_buf *b, uint32_t v)
{
	uint8_t q[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			(uint8_t)(v >> 24)};

	return veil_buf_append(b, q, 4);
}

int veil_evlog_encode_tcg(const struct veil_evlog *log, struct veil_buf *out)
{
	/* TCG_EfiSpecIdEvent: signature, platformClass 0, spec 2.0 errata 0,
	 * uintnSize 2 (UINT64), one algorithm (SHA-384, 48), no vendor info. */
	static const uint8_t spec_id[] = {
		'S', 'p', 'e', 'c', ' ', 'I', 'D', ' ', 'E', 'v', 'e', 'n', 't', '0', '3', 0,
		0, 0, 0, 0, 0, 2, 0, 2, 1, 0, 0, 0, 0x0c, 0x00, 48, 0x00, 0};
	static const uint8_t zero20[20];
	size_t start;
	int rc;

	if (!log || !out)
		return veil_errf(VEIL_EINVAL, "TCG encode: NULL argument");
	start = out->len;
	if ((rc = put_u32(out, 0)) < 0 || (rc = put_u32(out, VEIL_EVLOG_EV_NO_ACTION)) < 0 ||
	    (rc = veil_buf_append(out, zero20, 20)) < 0 ||
	    (rc = put_u32(out, sizeof(spec_id))) < 0 ||
	    (rc = veil_buf_append(out, spec_id, sizeof(spec_id))) < 0)
		goto fail;
	for (size_t i = 0; i < log->n; i++) {
		const struct veil_evlog_event *e = &log->ev[i];
		bool rt = e->event_type == VEIL_EVLOG_RUNTIME_EVENT_TYPE;
		size_t nlen = rt ? strlen(e->name) : 0, esize;

		if (e->imr >= VEIL_EVLOG_NUM_RTMR) {
			rc = veil_errf(VEIL_EINVAL, "TCG encode: event %zu: imr %u", i, e->imr);
			goto fail;
		}
		if (e->event_type == VEIL_EVLOG_EV_NO_ACTION) {
			rc = veil_errf(VEIL_EINVAL,
				       "TCG encode: event %zu: EV_NO_ACTION would not be replayed",
				       i);
			goto fail;
		}
		if (rt && strchr(e->name, ':')) {
			rc = veil_errf(VEIL_EINVAL,
				       "TCG encode: event %zu: runtime event name contains ':'", i);
			goto fail;
		}
		esize = e->payload_len + (rt ? nlen + 1 : 0);
		if (esize > VEIL_EVLOG_MAX_PAYLOAD) {
			rc = veil_errf(VEIL_ERANGE, "TCG encode: event %zu: %zu bytes of data",
				       i, esize);
			goto fail;
		}
		if ((rc = put_u32(out, e->imr + 1)) < 0 ||
		    (rc = put_u32(out, e->event_type)) < 0 || (rc = put_u32(out, 1)) < 0 ||
		    (rc = veil_buf_append(out, (const uint8_t[]){0x0c, 0x00}, 2)) < 0 ||
		    (rc = veil_buf_append(out, e->digest, VEIL_EVLOG_DIGEST_LEN)) < 0 ||
		    (rc = put_u32(out, (uint32_t)esize)) < 0)
			goto fail;
		if (rt && ((rc = veil_buf_append(out, e->name, nlen)) < 0 ||
			   (rc = veil_buf_append(out, ":", 1)) < 0))
			goto fail;
		if (e->payload_len &&
		    (rc = veil_buf_append(out, e->payload, e->payload_len)) < 0)
			goto fail;
	}
	return 0;
fail:
	/* leave `out` as it was */
	out->len = start;
	if (out->data)
		out->data[start] = '\0';
	return rc;
}

/* ---- ACPI CCEL table --------------------------------------------------- */

static uint64_t le64(const uint8_t *q)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | q[i];
	return v;
}

int veil_evlog_ccel_table_parse(const uint8_t *p, size_t n,
				struct veil_evlog_ccel_table *out)
{
	uint32_t len;
	uint8_t sum = 0;

	if ((!p && n) || !out)
		return veil_errf(VEIL_EINVAL, "CCEL table: NULL argument");
	if (n < 56)
		return veil_errf(VEIL_EFORMAT, "CCEL table: %zu bytes, expected at least 56", n);
	if (memcmp(p, "CCEL", 4) != 0)
		return veil_errf(VEIL_EFORMAT, "CCEL table: signature is not \"CCEL\"");
	len = (uint32_t)p[4] | ((uint32_t)p[5] << 8) | ((uint32_t)p[6] << 16) |
	      ((uint32_t)p[7] << 24);
	if (len < 56 || len > n)
		return veil_errf(VEIL_EFORMAT, "CCEL table: length %u, have %zu (minimum 56)",
				 len, n);
	for (uint32_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	if (sum != 0)
		return veil_errf(VEIL_EFORMAT, "CCEL table: checksum does not sum to zero");
	out->cc_type = p[36];
	out->cc_subtype = p[37];
	out->laml = le64(p + 40);
	out->lasa = le64(p + 48);
	return 0;
}

/* ---- verification ------------------------------------------------------ */

void veil_evlog_replay(const struct veil_evlog *log,
		       uint8_t rtmr[VEIL_EVLOG_NUM_RTMR][VEIL_EVLOG_DIGEST_LEN])
{
	uint8_t buf[2 * VEIL_EVLOG_DIGEST_LEN];

	memset(rtmr, 0, VEIL_EVLOG_NUM_RTMR * VEIL_EVLOG_DIGEST_LEN);
	for (size_t i = 0; log && i < log->n; i++) {
		const struct veil_evlog_event *e = &log->ev[i];

		if (e->imr >= VEIL_EVLOG_NUM_RTMR)
			continue; /* cannot happen: every constructor checks */
		memcpy(buf, rtmr[e->imr], VEIL_EVLOG_DIGEST_LEN);
		memcpy(buf + VEIL_EVLOG_DIGEST_LEN, e->digest, VEIL_EVLOG_DIGEST_LEN);
		SHA384(buf, sizeof(buf), rtmr[e->imr]);
	}
}

int veil_evlog_check_rtmrs(const struct veil_evlog *log,
			   const uint8_t quote_rtmr[VEIL_EVLOG_NUM_RTMR][VEIL_EVLOG_DIGEST_LEN],
			   unsigned *mismatch_mask)
{
	uint8_t r[VEIL_EVLOG_NUM_RTMR][VEIL_EVLOG_DIGEST_LEN];
	char which[64] = "";
	unsigned mask = 0;
	size_t w = 0;

	if (!log || !quote_rtmr || !mismatch_mask)
		return veil_errf(VEIL_EINVAL, "RTMR check: NULL argument");
	veil_evlog_replay(log, r);
	for (unsigned i = 0; i < VEIL_EVLOG_NUM_RTMR; i++) {
		if (memcmp(r[i], quote_rtmr[i], VEIL_EVLOG_DIGEST_LEN) != 0) {
			mask |= 1u << i;
			w += (size_t)snprintf(which + w, sizeof(which) - w, "%sRTMR%u",
					      w ? ", " : "", i);
		}
	}
	*mismatch_mask = mask;
	if (mask)
		return veil_errf(VEIL_EBADMSG, "event log replay: %s %s from the quote", which,
				 (mask & (mask - 1)) ? "differ" : "differs");
	return 0;
}

int veil_evlog_check_runtime(const struct veil_evlog *log)
{
	uint8_t d[VEIL_EVLOG_DIGEST_LEN];
	int rc;

	if (!log)
		return veil_errf(VEIL_EINVAL, "runtime check: NULL argument");
	for (size_t i = 0; i < log->n; i++) {
		const struct veil_evlog_event *e = &log->ev[i];

		/* The replay binds an event's digest, not its type, and only a
		 * runtime event's digest binds its name and payload: relabelled,
		 * a measurement (the model's hash, say) would drop out of the
		 * claims while RTMR3 still replays. */
		if (e->imr == 3 && e->event_type != VEIL_EVLOG_RUNTIME_EVENT_TYPE)
			return veil_errf(VEIL_EBADMSG,
					 "event %zu: type 0x%08x in RTMR3, which holds only runtime "
					 "events (0x%08x)", i, e->event_type,
					 VEIL_EVLOG_RUNTIME_EVENT_TYPE);
		if (e->event_type != VEIL_EVLOG_RUNTIME_EVENT_TYPE)
			continue;
		if (e->imr != 3)
			return veil_errf(VEIL_EBADMSG,
					 "event %zu (%s): runtime event in RTMR%u, expected RTMR3",
					 i, e->name, e->imr);
		/* type:name:payload splits at the first ':' only if the name
		 * has none */
		if (strchr(e->name, ':'))
			return veil_errf(VEIL_EBADMSG, "event %zu: runtime event name contains ':'",
					 i);
		if ((rc = veil_evlog_runtime_digest(e->name, e->payload, e->payload_len, d)) < 0)
			return rc;
		if (memcmp(d, e->digest, sizeof(d)) != 0)
			return veil_errf(VEIL_EBADMSG,
					 "event %zu (%s): digest does not match "
					 "SHA384(type:name:payload)", i, e->name);
	}
	return 0;
}

int veil_evlog_find_runtime(const struct veil_evlog *log, const char *name,
			    const struct veil_evlog_event **out)
{
	const struct veil_evlog_event *found = NULL;

	if (!log || !name || !out)
		return veil_errf(VEIL_EINVAL, "find event: NULL argument");
	for (size_t i = 0; i < log->n; i++) {
		const struct veil_evlog_event *e = &log->ev[i];

		if (e->event_type != VEIL_EVLOG_RUNTIME_EVENT_TYPE || strcmp(e->name, name))
			continue;
		if (found)
			return veil_errf(VEIL_EFORMAT, "event log: runtime event \"%s\" appears "
					 "more than once", name);
		found = e;
	}
	if (!found)
		return veil_errf(VEIL_ENOENT, "event log: no runtime event \"%s\"", name);
	*out = found;
	return 0;
}

int veil_evlog_claims(const struct veil_evlog *log, struct veil_evlog_claims *out)
{
	struct veil_evlog_claims c;
	const struct {
		const char *name;
		struct veil_evlog_value *v;
		size_t need; /* 0: any length */
	} map[] = {
		{"compose-hash", &c.compose_hash, 0},
		{"app-id", &c.app_id, 0},
		{"instance-id", &c.instance_id, 0},
		{"os-image-hash", &c.os_image_hash, 0},
		{"key-provider", &c.key_provider, 0},
		{VEIL_EVLOG_NODE_BINARY, &c.node_binary, VEIL_EVLOG_DIGEST_LEN},
		{VEIL_EVLOG_NODE_CONFIG, &c.node_config, VEIL_EVLOG_DIGEST_LEN},
		{VEIL_EVLOG_MODEL, &c.model, VEIL_EVLOG_DIGEST_LEN},
	};

	if (!log || !out)
		return veil_errf(VEIL_EINVAL, "claims: NULL argument");
	memset(&c, 0, sizeof(c));
	for (size_t k = 0; k < VEIL_ARRAY_LEN(map); k++) {
		const struct veil_evlog_event *e;
		int rc = veil_evlog_find_runtime(log, map[k].name, &e);

		if (rc == VEIL_ENOENT)
			continue;
		if (rc < 0)
			return rc;
		if (map[k].need && e->payload_len != map[k].need)
			return veil_errf(VEIL_EFORMAT,
					 "event \"%s\": payload of %zu bytes, expected %zu",
					 map[k].name, e->payload_len, map[k].need);
		map[k].v->present = true;
		map[k].v->p = e->payload;
		map[k].v->len = e->payload_len;
	}
	veil_err_clear();
	*out = c;
	return 0;
}
