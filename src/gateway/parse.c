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
	return veil_model_name_ok(m, len, VEIL_STORE_MODEL_MAX);
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
		/* the limits object alone (POST /admin/keys/{id}/limits): a
		 * field left out stays -1, "not given", so the handler keeps
		 * the key's current value for it instead of lifting it */
		l.requests_per_min = l.tokens_per_min = l.quota_tokens = -1;
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
