/* Parsers of outside input for veil-gateway (see parse.h). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "veil/digest.h"
#include "veil/receipt.h"

#include "parse.h"

/* ---- URLs, ids, names ----------------------------------------------------- */

int gw_url_check(const char *url, size_t len, char *out, size_t cap,
		 bool *https)
{
	size_t i, host_start, host_end, end = len;
	bool tls;

	if (!url || len == 0 || len > VEIL_STORE_URL_MAX)
		return veil_errf(VEIL_EINVAL, "url: must be 1..%d bytes",
				 VEIL_STORE_URL_MAX);
	for (i = 0; i < len; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
			return veil_errf(VEIL_EINVAL,
					 "url: control character or space at %zu", i);
	if (len >= 8 && !strncmp(url, "https://", 8)) {
		tls = true;
		host_start = 8;
	} else if (len >= 7 && !strncmp(url, "http://", 7)) {
		tls = false;
		host_start = 7;
	} else {
		return veil_errf(VEIL_EINVAL, "url: must start with http:// or https://");
	}
	if (end > host_start && url[end - 1] == '/')
		end--;
	if (end == host_start)
		return veil_errf(VEIL_EINVAL, "url: no host");
	i = host_start;
	if (url[i] == '[') {
		/* [IPv6] */
		while (i < end && url[i] != ']') {
			if (i > host_start && !isxdigit((unsigned char)url[i]) &&
			    url[i] != ':' && url[i] != '.')
				return veil_errf(VEIL_EINVAL, "url: bad IPv6 literal");
			i++;
		}
		if (i >= end || i == host_start + 1)
			return veil_errf(VEIL_EINVAL, "url: unterminated IPv6 literal");
		i++;
	} else {
		while (i < end && (isalnum((unsigned char)url[i]) || url[i] == '-' ||
				   url[i] == '.' || url[i] == '_'))
			i++;
		if (i == host_start)
			return veil_errf(VEIL_EINVAL, "url: bad host");
	}
	host_end = i;
	if (i < end && url[i] == ':') {
		long port = 0;
		size_t d = 0;

		for (i++; i < end && isdigit((unsigned char)url[i]); i++, d++) {
			port = port * 10 + (url[i] - '0');
			if (port > 65535)
				break;
		}
		if (d == 0 || port < 1 || port > 65535)
			return veil_errf(VEIL_EINVAL, "url: bad port");
	}
	(void)host_end;
	if (i != end)
		return veil_errf(VEIL_EINVAL,
				 "url: only scheme://host[:port] (no path, query or user info)");
	if (end + 1 > cap)
		return veil_errf(VEIL_ERANGE, "url: too long");
	memcpy(out, url, end);
	out[end] = '\0';
	*https = tls;
	return 0;
}

bool gw_node_id_valid(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	if (n < 1 || n > GW_NODE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '.' && id[i] != '_' &&
		    id[i] != '-')
			return false;
	return true;
}

bool gw_model_valid(const char *m, size_t len)
{
	if (!m || len < 1 || len > VEIL_STORE_MODEL_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)m[i];

		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
			return false;
	}
	return true;
}

void gw_node_default_id(const char *url, char out[GW_NODE_ID_MAX + 1])
{
	uint8_t h[32];
	char hex[65];

	veil_digest_sha256(url, strlen(url), h);
	veil_hex_encode(h, sizeof(h), hex, sizeof(hex));
	snprintf(out, GW_NODE_ID_MAX + 1, "n-%.12s", hex);
}

/* ---- node objects ------------------------------------------------------------ */

static int node_from_json(json_t *o, const char *where, struct gw_node_spec *out)
{
	struct gw_node_spec s;
	const char *k;
	json_t *v, *url, *model, *id;
	int rc;

	memset(&s, 0, sizeof(s));
	if (!json_is_object(o))
		return veil_errf(VEIL_EFORMAT, "%s: must be an object", where);
	json_object_foreach(o, k, v) {
		if (strcmp(k, "url") && strcmp(k, "model") && strcmp(k, "id"))
			return veil_errf(VEIL_EFORMAT, "%s: unknown key (only url, model, id)",
					 where);
	}
	url = json_object_get(o, "url");
	model = json_object_get(o, "model");
	id = json_object_get(o, "id");
	if (!json_is_string(url))
		return veil_errf(VEIL_EFORMAT, "%s: 'url' must be a string", where);
	if ((rc = gw_url_check(json_string_value(url), json_string_length(url), s.url,
			       sizeof(s.url), &s.https)) < 0) {
		char d[256];

		snprintf(d, sizeof(d), "%s", veil_err_detail());
		return veil_errf(rc, "%s: %s", where, d);
	}
	if (!json_is_string(model) ||
	    !gw_model_valid(json_string_value(model), json_string_length(model)) ||
	    strlen(json_string_value(model)) != json_string_length(model))
		return veil_errf(VEIL_EFORMAT,
				 "%s: 'model' must be 1..%d printable characters", where,
				 VEIL_STORE_MODEL_MAX);
	memcpy(s.model, json_string_value(model), json_string_length(model));
	if (id && !json_is_null(id)) {
		if (!json_is_string(id) || !gw_node_id_valid(json_string_value(id)) ||
		    strlen(json_string_value(id)) != json_string_length(id))
			return veil_errf(VEIL_EFORMAT,
					 "%s: 'id' must be 1..%d of [A-Za-z0-9._-]", where,
					 GW_NODE_ID_MAX);
		memcpy(s.id, json_string_value(id), json_string_length(id));
	}
	*out = s;
	return 0;
}

int gw_parse_node_body(const uint8_t *p, size_t n, struct gw_node_spec *out)
{
	json_error_t e;
	json_t *o;
	int rc;

	if (n > GW_ADMIN_BODY_MAX)
		return veil_errf(VEIL_ERANGE, "body: over %u bytes", GW_ADMIN_BODY_MAX);
	if (!(o = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &e)))
		return veil_errf(VEIL_EFORMAT, "body: not JSON (line %d: %s)", e.line,
				 e.text);
	rc = node_from_json(o, "node", out);
	json_decref(o);
	return rc;
}

int gw_parse_nodes(const uint8_t *p, size_t n, struct gw_node_spec **out,
		   size_t *count)
{
	json_error_t e;
	json_t *a, *v;
	struct gw_node_spec *s = NULL;
	size_t i, k, m;
	int rc = 0;

	if (n > GW_NODES_FILE_MAX)
		return veil_errf(VEIL_ERANGE, "nodes file: over %u bytes", GW_NODES_FILE_MAX);
	if (!(a = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &e)))
		return veil_errf(VEIL_EFORMAT, "nodes file: not JSON (line %d: %s)", e.line,
				 e.text);
	if (!json_is_array(a)) {
		rc = veil_errf(VEIL_EFORMAT, "nodes file: must be a JSON array");
		goto out;
	}
	m = json_array_size(a);
	if (m > GW_NODES_MAX) {
		rc = veil_errf(VEIL_ERANGE, "nodes file: more than %d nodes", GW_NODES_MAX);
		goto out;
	}
	if (m && !(s = calloc(m, sizeof(*s)))) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	json_array_foreach(a, i, v) {
		char where[32];

		snprintf(where, sizeof(where), "nodes[%zu]", i);
		if ((rc = node_from_json(v, where, &s[i])) < 0)
			goto out;
		if (!s[i].id[0])
			gw_node_default_id(s[i].url, s[i].id);
		for (k = 0; k < i; k++)
			if (!strcmp(s[k].id, s[i].id)) {
				rc = veil_errf(VEIL_EFORMAT,
					       "nodes[%zu]: id '%s' repeats nodes[%zu]", i,
					       s[i].id, k);
				goto out;
			}
	}
	*out = s;
	*count = m;
	s = NULL;
out:
	free(s);
	json_decref(a);
	return rc;
}

/* ---- keys ------------------------------------------------------------------------ */

static int limits_from_json(json_t *o, struct veil_store_limits *lim)
{
	static const char *const names[] = {"requests_per_min", "tokens_per_min",
					    "quota_tokens"};
	int64_t *dst[] = {&lim->requests_per_min, &lim->tokens_per_min,
			  &lim->quota_tokens};
	const char *k;
	json_t *v;

	if (!json_is_object(o))
		return veil_errf(VEIL_EFORMAT, "limits: must be an object");
	json_object_foreach(o, k, v) {
		size_t i;

		for (i = 0; i < VEIL_ARRAY_LEN(names); i++)
			if (!strcmp(k, names[i]))
				break;
		if (i == VEIL_ARRAY_LEN(names))
			return veil_errf(VEIL_EFORMAT,
					 "limits: unknown key (requests_per_min, "
					 "tokens_per_min, quota_tokens)");
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > VEIL_STORE_TOKENS_MAX)
			return veil_errf(VEIL_EFORMAT, "limits.%s: must be an integer >= 0",
					 names[i]);
		*dst[i] = json_integer_value(v);
	}
	return 0;
}

int gw_parse_key_body(const uint8_t *p, size_t n, char *name, size_t name_cap,
		      struct veil_store_limits *lim, bool *has_limits)
{
	struct veil_store_limits l = {0, 0, 0};
	json_error_t e;
	json_t *o, *v;
	const char *k;
	bool hl = false;
	int rc = 0;

	if (n > GW_ADMIN_BODY_MAX)
		return veil_errf(VEIL_ERANGE, "body: over %u bytes", GW_ADMIN_BODY_MAX);
	if (!(o = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &e)))
		return veil_errf(VEIL_EFORMAT, "body: not JSON (line %d: %s)", e.line,
				 e.text);
	if (!json_is_object(o)) {
		rc = veil_errf(VEIL_EFORMAT, "body: must be an object");
		goto out;
	}
	if (!name) {
		/* the limits object alone */
		if ((rc = limits_from_json(o, &l)) < 0)
			goto out;
		hl = true;
		goto done;
	}
	json_object_foreach(o, k, v) {
		if (strcmp(k, "name") && strcmp(k, "limits")) {
			rc = veil_errf(VEIL_EFORMAT, "body: unknown key (only name, limits)");
			goto out;
		}
	}
	v = json_object_get(o, "name");
	if (!json_is_string(v) || json_string_length(v) < 1 ||
	    json_string_length(v) > VEIL_STORE_NAME_MAX ||
	    strlen(json_string_value(v)) != json_string_length(v) ||
	    json_string_length(v) + 1 > name_cap) {
		rc = veil_errf(VEIL_EFORMAT, "name: must be 1..%d characters",
			       VEIL_STORE_NAME_MAX);
		goto out;
	}
	for (size_t i = 0; i < json_string_length(v); i++)
		if ((unsigned char)json_string_value(v)[i] < 0x20 ||
		    json_string_value(v)[i] == 0x7f) {
			rc = veil_errf(VEIL_EFORMAT, "name: control character");
			goto out;
		}
	if ((v = json_object_get(o, "limits")) && !json_is_null(v)) {
		if ((rc = limits_from_json(v, &l)) < 0)
			goto out;
		hl = true;
	}
	memcpy(name, json_string_value(json_object_get(o, "name")),
	       json_string_length(json_object_get(o, "name")) + 1);
done:
	*lim = l;
	*has_limits = hl;
out:
	json_decref(o);
	return rc;
}

int gw_parse_time(const char *s, int64_t *ms)
{
	int64_t v = 0;
	size_t i;

	if (!s || !*s)
		return veil_errf(VEIL_EINVAL, "time: empty (unix seconds expected)");
	for (i = 0; s[i]; i++) {
		if (!isdigit((unsigned char)s[i]) || i >= 13)
			return veil_errf(VEIL_EINVAL, "time: unix seconds expected");
		v = v * 10 + (s[i] - '0');
	}
	if (v > ((int64_t)1 << 40))
		return veil_errf(VEIL_ERANGE, "time: out of range");
	*ms = v * 1000;
	return 0;
}

int gw_receipt_from_header(const char *v, size_t len, struct veil_buf *out)
{
	size_t pad = 0, nd, got;
	int rc;

	if (len == 0)
		return veil_errf(VEIL_EFORMAT, "X-Veil-Receipt: empty");
	while (pad < 2 && len > pad && v[len - 1 - pad] == '=')
		pad++;
	nd = len - pad;
	got = nd / 4 * 3 + (nd % 4 ? nd % 4 - 1 : 0);
	if (got > VEIL_STORE_RECEIPT_MAX)
		return veil_errf(VEIL_ERANGE, "X-Veil-Receipt: over %u bytes",
				 VEIL_STORE_RECEIPT_MAX);
	if ((rc = veil_buf_reserve(out, got)) < 0)
		return rc;
	/* straight into the buffer; on failure nothing is appended */
	if (veil_b64_decode(v, len, VEIL_B64_URL | VEIL_B64_NOPAD, out->data + out->len, got,
			    &got) < 0) {
		out->data[out->len] = '\0';
		return veil_errf(VEIL_EFORMAT, "X-Veil-Receipt: not base64url");
	}
	out->len += got;
	out->data[out->len] = '\0';
	return 0;
}

/* ---- receipts: the canonical form ---------------------------------------------- */

struct rcur {
	const char *p, *end;
};

/* The literal `lit` next; advances past it. */
static bool rc_lit(struct rcur *c, const char *lit, size_t n)
{
	if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n))
		return false;
	c->p += n;
	return true;
}
#define RC_LIT(c, s) rc_lit((c), (s), sizeof(s) - 1)

/* Exactly 2 * want (at most 130) hex digits, either case, then a quote;
 * out NULL: checked, not kept. */
static bool rc_hex(struct rcur *c, uint8_t *out, size_t want)
{
	uint8_t scratch[65];
	size_t got;

	if (want > sizeof(scratch) || (size_t)(c->end - c->p) < 2 * want + 1 ||
	    c->p[2 * want] != '"' ||
	    veil_hex_decode(c->p, 2 * want, out ? out : scratch, want, &got) < 0)
		return false;
	c->p += 2 * want + 1;
	return true;
}

/* A non-negative integer as JSON writes it (no sign, no leading zero, no
 * fraction or exponent), at most 18 digits so that it fits int64_t. */
static bool rc_int(struct rcur *c, int64_t *out)
{
	int64_t v = 0;
	size_t k = 0;

	while (c->p + k < c->end && c->p[k] >= '0' && c->p[k] <= '9') {
		if (k == 18)
			return false;
		v = v * 10 + (c->p[k] - '0');
		k++;
	}
	if (k == 0 || (k > 1 && c->p[0] == '0'))
		return false;
	c->p += k;
	*out = v;
	return true;
}

/* A name up to its closing quote: 1..128 printable ASCII bytes (no quote;
 * backslashes cannot occur, see gw_receipt_fast); an id has no spaces
 * either (veil_receipt_parse's name_field rules). */
static bool rc_name(struct rcur *c, bool id, char out[129])
{
	size_t k = 0;

	while (c->p + k < c->end && c->p[k] != '"') {
		unsigned char ch = (unsigned char)c->p[k];

		if (k == 128 || ch < 0x20 || ch > 0x7e || (id && ch == ' '))
			return false;
		out[k++] = (char)ch;
	}
	if (k == 0 || c->p + k == c->end)
		return false;
	out[k] = '\0';
	c->p += k + 1;
	return true;
}

int gw_receipt_fast(const uint8_t *p, size_t n, const char *expect_address,
		    struct gw_receipt_lite *out)
{
	struct rcur c = {(const char *)p, (const char *)p + n};
	size_t k = 0, al = expect_address ? strlen(expect_address) : 0;

	if (!p || !out || al != 42 || expect_address[0] != '0' || expect_address[1] != 'x')
		return 1;
	for (size_t i = 2; i < al; i++)
		if (!isxdigit((unsigned char)expect_address[i]))
			return 1;
	/* the object: the payload string first (only \" escapes, printable
	 * ASCII, no backslash left once unescaped) */
	if (!RC_LIT(&c, "{\"payload\":\""))
		return 1;
	for (;;) {
		unsigned char ch;

		if (c.p == c.end)
			return 1;
		ch = (unsigned char)*c.p++;
		if (ch == '"')
			break;
		if (ch == '\\') {
			if (c.p == c.end || *c.p != '"')
				return 1;
			ch = (unsigned char)*c.p++;
		} else if (ch < 0x20 || ch > 0x7e) {
			return 1;
		}
		if (k == GW_RECEIPT_PAYLOAD_MAX)
			return 1;
		out->payload[k++] = (char)ch;
	}
	out->payload[k] = '\0';
	out->payload_len = k;
	if (!RC_LIT(&c, ",\"signature_ecdsa\":\"0x") || !rc_hex(&c, out->sig_ecdsa, 65) ||
	    !RC_LIT(&c, ",\"signature_ed25519\":\"") || !rc_hex(&c, out->sig_ed25519, 64))
		return 1;
	if (RC_LIT(&c, ",\"text_signature_ecdsa\":\"0x") &&
	    (!rc_hex(&c, NULL, 65) || !RC_LIT(&c, ",\"text_signature_ed25519\":\"") ||
	     !rc_hex(&c, NULL, 64)))
		return 1;
	if (!RC_LIT(&c, "}") || c.p != c.end)
		return 1;

	/* the payload */
	c.p = out->payload;
	c.end = out->payload + k;
	if (!RC_LIT(&c, "{\"created\":") || !rc_int(&c, &out->created) ||
	    !RC_LIT(&c, ",\"ed25519_public_key\":\"") ||
	    !rc_hex(&c, out->ed25519_public_key, 32) || !RC_LIT(&c, ",\"id\":\"") ||
	    !rc_name(&c, true, out->id) || !RC_LIT(&c, ",\"model\":\"") ||
	    !rc_name(&c, false, out->model) || !RC_LIT(&c, ",\"model_sha256\":\""))
		return 1;
	if (!RC_LIT(&c, "\"") && !rc_hex(&c, NULL, 32))
		return 1;
	if (!RC_LIT(&c, ",\"request_sha256\":\"") || !rc_hex(&c, out->request_sha256, 32) ||
	    !RC_LIT(&c, ",\"response_sha256\":\"") || !rc_hex(&c, out->response_sha256, 32) ||
	    !RC_LIT(&c, ",\"signing_address\":\"") || !rc_lit(&c, expect_address, al) ||
	    !RC_LIT(&c, "\",\"usage\":{\"completion_tokens\":") ||
	    !rc_int(&c, &out->completion_tokens) || !RC_LIT(&c, ",\"prompt_tokens\":") ||
	    !rc_int(&c, &out->prompt_tokens) || !RC_LIT(&c, ",\"total_tokens\":") ||
	    !rc_int(&c, &out->total_tokens) ||
	    !RC_LIT(&c, "},\"version\":\"" VEIL_RECEIPT_VERSION "\"}") || c.p != c.end)
		return 1;
	if (out->total_tokens != out->prompt_tokens + out->completion_tokens)
		return 1;
	return 0;
}

/* ---- SSE framing ---------------------------------------------------------------- */

void gw_framer_init(struct gw_framer *f, size_t max_event)
{
	memset(f, 0, sizeof(*f));
	f->ev = (struct veil_buf)VEIL_BUF_INIT(max_event ? max_event : (1u << 20));
}

void gw_framer_free(struct gw_framer *f)
{
	veil_buf_free(&f->ev);
}

size_t gw_framer_pending(const struct gw_framer *f)
{
	return f->ev.len;
}

int gw_framer_feed(struct gw_framer *f, const uint8_t *p, size_t n,
		   gw_framer_fn cb, void *arg)
{
	size_t i = 0, start = 0;
	int rc;

	if (f->failed)
		return VEIL_ERANGE;
	/* Scan for the blank line.  A line ends with LF, CR or CR LF; an event
	 * ends at the second line end in a row. */
	while (i < n) {
		uint8_t c = p[i++];

		if (c == '\n' && f->cr) {
			/* the LF of a CR LF: already counted */
			f->cr = false;
		} else if (c == '\r' || c == '\n') {
			f->cr = c == '\r';
			f->nl++;
		} else {
			f->cr = false;
			f->nl = 0;
		}
		if (f->nl == 2) {
			/* A CR ending the event may be followed by the LF of
			 * its CR LF: keep it with this event. */
			if (f->cr && i < n && p[i] == '\n') {
				i++;
				f->cr = false;
			}
			f->nl = 0;
			if (f->ev.len) {
				if (veil_buf_append(&f->ev, p + start, i - start) < 0)
					goto range;
				rc = cb(arg, f->ev.data, f->ev.len);
				veil_buf_reset(&f->ev);
			} else {
				if (i - start > f->ev.max)
					goto range;
				rc = cb(arg, p + start, i - start);
			}
			start = i;
			if (rc)
				return rc;
		}
	}
	if (start < n && veil_buf_append(&f->ev, p + start, n - start) < 0)
		goto range;
	return 0;
range:
	f->failed = true;
	return veil_errf(VEIL_ERANGE, "stream: one event over %zu bytes", f->ev.max);
}

/* The LF of a CR LF pair that ended an event, when the CR came last in a
 * piece, arrives at the start of the next piece and is relayed with the
 * next event; classification skips blank lines, so it changes nothing. */

int gw_sse_classify(const uint8_t *raw, size_t n, enum gw_ev_kind *kind,
		    struct veil_buf *receipt)
{
	struct veil_buf data = VEIL_BUF_INIT(n + 1);
	char event[64] = "";
	bool any_data = false, any_field = false;
	size_t i = 0;
	enum gw_ev_kind k = GW_EV_DATA;
	int rc = 0;

	/* Fast path for the bulk of a stream (one chunk per token): data
	 * lines only (no event field, no CR line ends), not [DONE], no
	 * "veil.receipt" anywhere: an ordinary event, no copy made. */
	if (n > 7 && !memcmp(raw, "data: ", 6) && raw[6] != '[' && !memchr(raw, '\r', n) &&
	    !memmem(raw, n, "\nevent", 6) && !memmem(raw, n, "veil.receipt", 12)) {
		*kind = GW_EV_DATA;
		veil_buf_free(&data);
		return 0;
	}
	while (i < n) {
		size_t ls = i, le, colon;
		const uint8_t *vp;
		size_t vl, fl;

		while (i < n && raw[i] != '\n' && raw[i] != '\r')
			i++;
		le = i;
		if (i < n && raw[i] == '\r')
			i++;
		if (i < n && raw[i] == '\n' && (i == le || raw[i - 1] == '\r'))
			i++;
		if (le == ls)
			continue; /* blank line */
		if (raw[ls] == ':')
			continue; /* comment */
		for (colon = ls; colon < le && raw[colon] != ':'; colon++)
			;
		fl = colon - ls;
		if (colon < le) {
			vp = raw + colon + 1;
			vl = le - colon - 1;
			if (vl && *vp == ' ') {
				vp++;
				vl--;
			}
		} else {
			vp = raw + le;
			vl = 0;
		}
		if (fl == 4 && !memcmp(raw + ls, "data", 4)) {
			if (any_data && veil_buf_append(&data, "\n", 1) < 0)
				goto out;
			if (veil_buf_append(&data, vp, vl) < 0)
				goto out;
			any_data = true;
			any_field = true;
		} else if (fl == 5 && !memcmp(raw + ls, "event", 5)) {
			size_t c = VEIL_MIN(vl, sizeof(event) - 1);

			memcpy(event, vp, c);
			event[c] = '\0';
			any_field = true;
		} else {
			any_field = true;
		}
	}
	if (!any_data) {
		k = any_field && !strcmp(event, "error") ? GW_EV_ERROR : GW_EV_OTHER;
		goto done;
	}
	if (!strcmp(event, "veil.receipt")) {
		k = GW_EV_RECEIPT;
		if (receipt && (rc = veil_buf_append(receipt, data.data, data.len)) < 0)
			goto out;
		goto done;
	}
	if (!strcmp(event, "error")) {
		k = GW_EV_ERROR;
		goto done;
	}
	if (event[0] && strcmp(event, "message"))
		goto done; /* another named event: data */
	if (data.len == 6 && !memcmp(data.data, "[DONE]", 6)) {
		k = GW_EV_DONE;
		goto done;
	}
	/* Cheap test first: only a chunk naming veil.receipt is parsed. */
	if (data.len > 2 && data.data[0] == '{' &&
	    memmem(data.data, data.len, "\"veil.receipt\"", 14)) {
		json_t *o = json_loadb((const char *)data.data, data.len, 0, NULL);
		json_t *obj = json_object_get(o, "object");
		json_t *r = json_object_get(o, "veil_receipt");

		if (json_is_string(obj) && !strcmp(json_string_value(obj), "veil.receipt") &&
		    json_is_object(r)) {
			char *s = json_dumps(r, JSON_COMPACT);

			k = GW_EV_RECEIPT;
			if (!s)
				rc = VEIL_ENOMEM;
			else if (receipt)
				rc = veil_buf_append(receipt, s, strlen(s));
			free(s);
		}
		json_decref(o);
		if (rc < 0)
			goto out;
	}
done:
	*kind = k;
	rc = 0;
out:
	veil_buf_free(&data);
	return rc;
}

/* ---- prefix affinity -------------------------------------------------------------- */

bool gw_affinity_key(const uint8_t *body, size_t n, uint8_t out[32])
{
	json_t *o = json_loadb((const char *)body, n, 0, NULL);
	json_t *m, *pr;
	bool ok = false;

	if (!json_is_object(o))
		goto out;
	if ((m = json_object_get(o, "messages")) && json_is_array(m) &&
	    json_array_size(m) > 0) {
		json_t *first = json_array();
		char *s;

		for (size_t i = 0; i < json_array_size(m) && i < 2; i++)
			json_array_append(first, json_array_get(m, i));
		s = json_dumps(first, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(first);
		if (s) {
			veil_digest_sha256(s, strlen(s), out);
			veil_wipe(s, strlen(s));
			free(s);
			ok = true;
		}
	} else if ((pr = json_object_get(o, "prompt")) && json_is_string(pr)) {
		veil_digest_sha256(json_string_value(pr), VEIL_MIN(json_string_length(pr), 512), out);
		ok = true;
	}
out:
	json_decref(o);
	return ok;
}

/* ---- HTTP/1.1 answers of nodes ---------------------------------------------------- */

void gw_resp_init(struct gw_resp *r, uint64_t max_body)
{
	memset(r, 0, sizeof(*r));
	r->st = GW_RESP_HEAD;
	r->head = (struct veil_buf)VEIL_BUF_INIT(GW_RESP_HEAD_MAX);
	r->max_body = max_body;
}

void gw_resp_free(struct gw_resp *r)
{
	veil_buf_free(&r->head);
}

static bool resp_tchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A field value byte: VCHAR, SP, HTAB or obs-text (RFC 9110 5.5). */
static bool resp_vchar(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int resp_bad(struct gw_resp *r, const char *why)
{
	r->st = GW_RESP_DONE;
	r->head_done = false;
	r->keep_alive = false;
	return veil_errf(VEIL_EBADMSG, "node answer: %s", why);
}

/* Cuts the next line (LF, or CR LF) out of head text s[*pos..len), NUL
 * terminated in place; NULL at the end.  A bare CR inside a line is
 * refused by the callers' byte checks. */
static char *resp_line(char *s, size_t len, size_t *pos)
{
	char *l = s + *pos, *nl;

	if (*pos >= len)
		return NULL;
	nl = memchr(l, '\n', len - *pos);
	if (!nl)
		nl = s + len;
	*pos = (size_t)(nl - s) + 1;
	if (nl > l && nl[-1] == '\r')
		nl--;
	*nl = '\0';
	return l;
}

/* Parses the complete head in r->head; sets the framing. */
static int resp_head_parse(struct gw_resp *r)
{
	char *s = (char *)r->head.data, *l, *v, *e;
	size_t pos = 0, len = r->head.len, i;
	bool http10, has_cl = false, chunked = false, close = false, ka = false;
	uint64_t cl = 0;
	int status;

	r->nhdr = 0;
	l = resp_line(s, len, &pos);
	/* HTTP/1.x SP 3DIGIT [SP reason] */
	if (!l || strncmp(l, "HTTP/1.", 7) || (l[7] != '0' && l[7] != '1') || l[8] != ' ' ||
	    !isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) ||
	    !isdigit((unsigned char)l[11]) || (l[12] && l[12] != ' '))
		return resp_bad(r, "malformed status line");
	for (e = l + 12; *e; e++)
		if (!resp_vchar((unsigned char)*e))
			return resp_bad(r, "control character in the status line");
	http10 = l[7] == '0';
	status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	if (status < 100)
		return resp_bad(r, "malformed status code");
	while ((l = resp_line(s, len, &pos)) && *l) {
		char *colon = strchr(l, ':');

		if (*l == ' ' || *l == '\t')
			return resp_bad(r, "obsolete line folding");
		if (!colon || colon == l)
			return resp_bad(r, "malformed header field");
		for (e = l; e < colon; e++)
			if (!resp_tchar((unsigned char)*e))
				return resp_bad(r, "malformed header field name");
		*colon = '\0';
		for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
			;
		e = v + strlen(v);
		while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		for (char *q = v; q < e; q++)
			if (!resp_vchar((unsigned char)*q))
				return resp_bad(r, "control character in a header field");
		if (r->nhdr == GW_RESP_HEADERS_MAX)
			return resp_bad(r, "too many header fields");
		r->hdr[r->nhdr][0] = (uint32_t)(l - s);
		r->hdr[r->nhdr][1] = (uint32_t)(v - s);
		r->nhdr++;
		if (!strcasecmp(l, "Content-Length")) {
			size_t d = strlen(v);

			if (has_cl || d == 0 || d > 18)
				return resp_bad(r, "bad or repeated Content-Length");
			cl = 0;
			for (i = 0; i < d; i++) {
				if (!isdigit((unsigned char)v[i]))
					return resp_bad(r, "bad Content-Length");
				cl = cl * 10 + (uint64_t)(v[i] - '0');
			}
			has_cl = true;
		} else if (!strcasecmp(l, "Transfer-Encoding")) {
			if (chunked || http10 || strcasecmp(v, "chunked"))
				return resp_bad(r, "Transfer-Encoding other than one \"chunked\"");
			chunked = true;
		} else if (!strcasecmp(l, "Connection")) {
			for (const char *t = v; *t;) {
				size_t tl;

				while (*t == ' ' || *t == '\t' || *t == ',')
					t++;
				tl = strcspn(t, " \t,");
				if (tl == 5 && !strncasecmp(t, "close", 5))
					close = true;
				else if (tl == 10 && !strncasecmp(t, "keep-alive", 10))
					ka = true;
				t += tl;
			}
		}
	}
	if (has_cl && chunked)
		return resp_bad(r, "both Content-Length and Transfer-Encoding");
	r->status = status;
	if (status == 101)
		return resp_bad(r, "unexpected protocol switch");
	if (status < 200) {
		/* an interim answer (100 Continue, 103): the final one follows */
		veil_buf_reset(&r->head);
		r->nhdr = 0;
		return 0;
	}
	r->head_done = true;
	r->keep_alive = !close && (!http10 || ka);
	if (status == 204 || status == 304) {
		r->st = GW_RESP_DONE;
	} else if (chunked) {
		r->st = GW_RESP_CHUNK_SIZE;
	} else if (has_cl) {
		if (cl > r->max_body) {
			r->st = GW_RESP_DONE;
			r->keep_alive = false;
			return veil_errf(VEIL_ERANGE, "node answer: body over %llu bytes",
					 (unsigned long long)r->max_body);
		}
		r->left = cl;
		r->st = cl ? GW_RESP_BODY_CL : GW_RESP_DONE;
	} else {
		r->st = GW_RESP_BODY_EOF;
		r->keep_alive = false;
	}
	return 0;
}

/* Body bytes so far + n within the cap. */
static int resp_count(struct gw_resp *r, uint64_t n)
{
	if (n > r->max_body - r->body) {
		r->st = GW_RESP_DONE;
		r->keep_alive = false;
		return veil_errf(VEIL_ERANGE, "node answer: body over %llu bytes",
				 (unsigned long long)r->max_body);
	}
	r->body += n;
	return 0;
}

/* One line of the chunked framing, complete in r->line. */
static int resp_chunk_line(struct gw_resp *r)
{
	const char *l = r->line;
	size_t n = r->line_len, i;
	uint64_t v = 0;

	if (n && l[n - 1] == '\r')
		n--;
	for (i = 0; i < n; i++)
		if (l[i] == '\r' || l[i] == '\0')
			return resp_bad(r, "control character in the chunked framing");
	switch (r->st) {
	case GW_RESP_CHUNK_SIZE:
		for (i = 0; i < n && isxdigit((unsigned char)l[i]); i++) {
			if (v >> 60)
				return resp_bad(r, "chunk size too large");
			v = v * 16 + (uint64_t)(isdigit((unsigned char)l[i])
							? l[i] - '0'
							: (tolower((unsigned char)l[i]) - 'a' + 10));
		}
		/* only extensions (";...") or whitespace may follow */
		if (i == 0 || (i < n && l[i] != ';' && l[i] != ' ' && l[i] != '\t'))
			return resp_bad(r, "malformed chunk size");
		if (v && resp_count(r, v) < 0)
			return VEIL_ERANGE;
		r->left = v;
		r->st = v ? GW_RESP_CHUNK_DATA : GW_RESP_TRAILER;
		break;
	case GW_RESP_CHUNK_END:
		if (n)
			return resp_bad(r, "chunk data longer than its size");
		r->st = GW_RESP_CHUNK_SIZE;
		break;
	default: /* GW_RESP_TRAILER: fields skipped */
		r->trailer += n + 2;
		if (r->trailer > GW_RESP_HEAD_MAX)
			return resp_bad(r, "trailer fields too large");
		if (!n)
			r->st = GW_RESP_DONE;
		break;
	}
	return 0;
}

int gw_resp_step(struct gw_resp *r, const uint8_t *p, size_t n, size_t *used,
		 size_t *data)
{
	const uint8_t *nl;
	size_t k;
	int rc;

	*used = *data = 0;
	if (n == 0)
		return 0;
	switch (r->st) {
	case GW_RESP_HEAD: {
		size_t hl = r->head.len, end = 0, j;
		int b1, b2;

		/* the blank line that ends the head: an LF after LF or after
		 * LF CR, looking back into the bytes already kept when the
		 * end is split across pieces */
		for (nl = p; (nl = memchr(nl, '\n', n - (size_t)(nl - p))) != NULL; nl++) {
			j = (size_t)(nl - p);
			b1 = j >= 1 ? p[j - 1] : hl >= 1 ? r->head.data[hl - 1] : -1;
			b2 = j >= 2 ? p[j - 2] : hl + j >= 2 ? r->head.data[hl + j - 2] : -1;
			if (b1 == '\n' || (b1 == '\r' && b2 == '\n')) {
				end = j + 1;
				break;
			}
		}
		k = end ? end : n;
		if (k > GW_RESP_HEAD_MAX - hl) {
			r->st = GW_RESP_DONE;
			return veil_errf(VEIL_ERANGE, "node answer: head over %u bytes",
					 GW_RESP_HEAD_MAX);
		}
		if ((rc = veil_buf_append(&r->head, p, k)) < 0) {
			r->st = GW_RESP_DONE;
			return rc;
		}
		*used = k;
		return end ? resp_head_parse(r) : 0;
	}
	case GW_RESP_BODY_CL:
	case GW_RESP_CHUNK_DATA:
		k = (size_t)VEIL_MIN((uint64_t)n, r->left);
		if (r->st == GW_RESP_BODY_CL && (rc = resp_count(r, k)) < 0)
			return rc;
		r->left -= k;
		if (!r->left)
			r->st = r->st == GW_RESP_BODY_CL ? GW_RESP_DONE : GW_RESP_CHUNK_END;
		*used = *data = k;
		return 0;
	case GW_RESP_BODY_EOF:
		if ((rc = resp_count(r, n)) < 0)
			return rc;
		*used = *data = n;
		return 0;
	case GW_RESP_CHUNK_SIZE:
	case GW_RESP_CHUNK_END:
	case GW_RESP_TRAILER:
		nl = memchr(p, '\n', n);
		k = nl ? (size_t)(nl - p) : n;
		if (r->line_len + k > GW_RESP_LINE_MAX)
			return resp_bad(r, "chunk framing line too long");
		memcpy(r->line + r->line_len, p, k);
		r->line_len += k;
		if (!nl) {
			*used = n;
			return 0;
		}
		*used = k + 1;
		r->line[r->line_len] = '\0';
		rc = resp_chunk_line(r);
		r->line_len = 0;
		return rc;
	case GW_RESP_DONE:
		return 0;
	}
	return 0;
}

int gw_resp_eof(struct gw_resp *r)
{
	if (r->st == GW_RESP_BODY_EOF)
		r->st = GW_RESP_DONE;
	else if (r->st != GW_RESP_DONE)
		return veil_errf(VEIL_EIO, "node answer: the connection closed mid-answer");
	return 0;
}

const char *gw_resp_header(const struct gw_resp *r, const char *name)
{
	if (!r->head_done)
		return NULL;
	for (size_t i = 0; i < r->nhdr; i++)
		if (!strcasecmp((const char *)r->head.data + r->hdr[i][0], name))
			return (const char *)r->head.data + r->hdr[i][1];
	return NULL;
}
