/* Parsers of what veil-proxy receives from the gateway (or a node): the
 * attestation document, the sealed event stream, error bodies.  Outside
 * input, so every length is capped and every shape checked; fuzzed by
 * tests/fuzz/fuzz_proxy_doc.c and tests/fuzz/fuzz_proxy_stream.c. */
#include <string.h>

#include "veil/seal.h"

#include "proxy.h"

/* ---- attestation document ------------------------------------------------ */

static int copy_name(json_t *v, const char *what, char *out, bool optional)
{
	const char *s;
	size_t len;

	out[0] = '\0';
	if (!v && optional)
		return 0;
	if (!json_is_string(v))
		return veil_errf(VEIL_EFORMAT, "attestation document: %s is not a string", what);
	s = json_string_value(v);
	len = json_string_length(v);
	if (len == 0 || len >= PROXY_NAME_MAX)
		return veil_errf(VEIL_EFORMAT, "attestation document: %s has length %zu "
				 "(1..%d)", what, len, PROXY_NAME_MAX - 1);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return veil_errf(VEIL_EFORMAT, "attestation document: %s holds a "
					 "byte outside printable ASCII", what);
	memcpy(out, s, len + 1);
	return 0;
}

static int take_report(json_t *r, const char *what, struct proxy_doc_report *out)
{
	json_t *v = json_object_get(r, "version"), *m;
	int rc;

	if (!json_is_object(r))
		return veil_errf(VEIL_EFORMAT, "attestation document: %s is not an object", what);
	if (!json_is_string(v) || strcmp(json_string_value(v), "veil-report/1"))
		return veil_errf(VEIL_ENOTSUP, "attestation document: %s is not a veil-report/1", what);
	m = json_object_get(r, "model");
	if (json_is_object(m)) {
		json_t *s = json_object_get(m, "sha256");

		if (out->model[0] == '\0' && json_object_get(m, "name") &&
		    (rc = copy_name(json_object_get(m, "name"), "report model.name",
				    out->model, false)) < 0)
			return rc;
		if (json_is_string(s) && json_string_length(s) == 64) {
			const char *h = json_string_value(s);
			size_t i;

			for (i = 0; i < 64; i++)
				if (!strchr("0123456789abcdef", h[i]) || !h[i])
					break;
			if (i == 64)
				memcpy(out->model_sha256, h, 65);
		}
	} else if (m && !json_is_null(m)) {
		return veil_errf(VEIL_EFORMAT, "attestation document: %s model is not an object", what);
	}
	/* The canonical text is what gets verified, hashed and logged, so the
	 * receipts log can name a report by the hash of exactly these bytes. */
	if (!(out->text = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS)))
		return VEIL_ENOMEM;
	out->text_len = strlen(out->text);
	out->report = json_incref(r);
	return 0;
}

void proxy_doc_free(struct proxy_doc *d)
{
	if (!d)
		return;
	json_decref(d->gw.report);
	free(d->gw.text);
	for (size_t i = 0; i < d->n_nodes; i++) {
		json_decref(d->nodes[i].report);
		free(d->nodes[i].text);
	}
	free(d->nodes);
	memset(d, 0, sizeof(*d));
}

int proxy_doc_parse(const uint8_t *p, size_t n, struct proxy_doc *out)
{
	struct proxy_doc d = {0};
	json_error_t jerr;
	json_t *root = NULL, *v, *nodes;
	const char *ver;
	int rc = VEIL_EFORMAT;

	if (n > PROXY_DOC_MAX)
		return veil_errf(VEIL_ERANGE, "attestation document: %zu bytes (max %u)",
				 n, PROXY_DOC_MAX);
	root = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root)) {
		rc = veil_errf(VEIL_EFORMAT, "attestation document: not a JSON object (%s)",
			       root ? "another JSON value" : jerr.text);
		goto out;
	}
	v = json_object_get(root, "version");
	if (!json_is_string(v)) {
		rc = veil_errf(VEIL_EFORMAT, "attestation document: no version");
		goto out;
	}
	ver = json_string_value(v);
	if (!strcmp(ver, "veil-report/1")) {
		/* A node answered directly: it is the one node. */
		if (!(d.nodes = calloc(1, sizeof(*d.nodes)))) {
			rc = VEIL_ENOMEM;
			goto out;
		}
		d.n_nodes = 1;
		snprintf(d.nodes[0].id, sizeof(d.nodes[0].id), "node");
		if ((rc = take_report(root, "the report", &d.nodes[0])) < 0)
			goto out;
	} else if (!strcmp(ver, "veil-gateway-report/1")) {
		d.gateway = true;
		if ((rc = take_report(json_object_get(root, "gateway"), "gateway",
				      &d.gw)) < 0)
			goto out;
		d.gw.model[0] = '\0';
		nodes = json_object_get(root, "nodes");
		if (!json_is_array(nodes)) {
			rc = veil_errf(VEIL_EFORMAT, "attestation document: nodes is not an array");
			goto out;
		}
		if (json_array_size(nodes) > PROXY_MAX_NODES) {
			rc = veil_errf(VEIL_ERANGE, "attestation document: %zu nodes (max %d)",
				       json_array_size(nodes), PROXY_MAX_NODES);
			goto out;
		}
		if (json_array_size(nodes) &&
		    !(d.nodes = calloc(json_array_size(nodes), sizeof(*d.nodes)))) {
			rc = VEIL_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < json_array_size(nodes); i++) {
			json_t *e = json_array_get(nodes, i);
			struct proxy_doc_report *r = &d.nodes[i];
			char what[48];

			d.n_nodes = i + 1;
			snprintf(what, sizeof(what), "nodes[%zu]", i);
			if (!json_is_object(e)) {
				rc = veil_errf(VEIL_EFORMAT, "attestation document: %s is not an object",
					       what);
				goto out;
			}
			if ((rc = copy_name(json_object_get(e, "id"), "node id", r->id, false)) < 0 ||
			    (rc = copy_name(json_object_get(e, "model"), "node model", r->model,
					    true)) < 0 ||
			    (rc = take_report(json_object_get(e, "report"), what, r)) < 0)
				goto out;
		}
	} else {
		rc = veil_errf(VEIL_ENOTSUP, "attestation document: version '%.40s' is "
			       "neither veil-gateway-report/1 nor veil-report/1", ver);
		goto out;
	}
	*out = d;
	memset(&d, 0, sizeof(d));
	rc = 0;
out:
	proxy_doc_free(&d);
	json_decref(root);
	return rc;
}

/* ---- sealed event stream ---------------------------------------------------- */

void proxy_sealed_init(struct proxy_sealed_stream *s, size_t max_line,
		       int (*chunk)(void *, const char *, size_t),
		       int (*receipt)(void *, const char *, size_t),
		       void (*hash)(void *, const uint8_t *, size_t), void *arg)
{
	memset(s, 0, sizeof(*s));
	s->line = (struct veil_buf)VEIL_BUF_INIT(max_line);
	s->ev = (struct veil_buf)VEIL_BUF_INIT(max_line);
	s->phase = PS_CHUNK_DATA;
	s->chunk = chunk;
	s->receipt = receipt;
	s->hash = hash;
	s->arg = arg;
}

void proxy_sealed_free(struct proxy_sealed_stream *s)
{
	veil_buf_free(&s->line);
	veil_buf_free(&s->ev);
}

bool proxy_sealed_final_seen(const struct proxy_sealed_stream *s)
{
	return s->phase >= PS_RCPT_EVENT;
}

static const char *phase_name(enum proxy_sealed_phase p)
{
	switch (p) {
	case PS_CHUNK_DATA: return "a sealed chunk or the final one";
	case PS_CHUNK_BLANK: return "the end of a sealed chunk's event";
	case PS_RCPT_EVENT: return "the receipt event";
	case PS_RCPT_DATA: return "the receipt";
	case PS_RCPT_BLANK: return "the end of the receipt event";
	case PS_DONE_DATA: return "data: [DONE]";
	case PS_DONE_BLANK: return "the end of [DONE]";
	default: return "nothing";
	}
}

static bool has_prefix(const struct veil_buf *b, const char *pfx)
{
	size_t n = strlen(pfx);

	return b->len >= n && !memcmp(b->data, pfx, n);
}

static bool is_line(const struct veil_buf *b, const char *s)
{
	return b->len == strlen(s) && (!b->len || !memcmp(b->data, s, b->len));
}

/* One complete line (without its "\n"). */
static int sealed_line(struct proxy_sealed_stream *s)
{
	struct veil_buf *l = &s->line;
	int rc;

	switch (s->phase) {
	case PS_CHUNK_DATA:
	case PS_RCPT_DATA:
		if (!has_prefix(l, "data: ") || l->len == 6)
			break;
		veil_buf_reset(&s->ev);
		if ((rc = veil_buf_append(&s->ev, l->data + 6, l->len - 6)) < 0)
			return rc;
		s->phase = s->phase == PS_CHUNK_DATA ? PS_CHUNK_BLANK : PS_RCPT_BLANK;
		return 0;
	case PS_CHUNK_BLANK:
		if (l->len)
			break;
		rc = s->chunk(s->arg, (const char *)s->ev.data, s->ev.len);
		if (rc < 0)
			return rc;
		s->phase = rc > 0 ? PS_RCPT_EVENT : PS_CHUNK_DATA;
		return 0;
	case PS_RCPT_EVENT:
		if (!is_line(l, "event: veil.receipt"))
			break;
		s->phase = PS_RCPT_DATA;
		return 0;
	case PS_RCPT_BLANK:
		if (l->len)
			break;
		if ((rc = s->receipt(s->arg, (const char *)s->ev.data, s->ev.len)) < 0)
			return rc;
		s->phase = PS_DONE_DATA;
		return 0;
	case PS_DONE_DATA:
		if (!is_line(l, "data: [DONE]"))
			break;
		s->phase = PS_DONE_BLANK;
		return 0;
	case PS_DONE_BLANK:
		if (l->len)
			break;
		s->phase = PS_END;
		return 0;
	default:
		break;
	}
	return veil_errf(VEIL_EFORMAT, "sealed stream: unexpected line where %s was due",
			 phase_name(s->phase));
}

int proxy_sealed_feed(struct proxy_sealed_stream *s, const uint8_t *p, size_t n)
{
	size_t i = 0;
	int rc;

	if (s->error)
		return s->error;
	while (i < n) {
		const uint8_t *nl = memchr(p + i, '\n', n - i);
		size_t take = nl ? (size_t)(nl - (p + i)) : n - i;

		if (s->phase == PS_END) {
			rc = veil_errf(VEIL_EFORMAT, "sealed stream: bytes after [DONE]");
			goto fail;
		}
		if ((rc = veil_buf_append(&s->line, p + i, take)) < 0) {
			rc = veil_errf(VEIL_ERANGE, "sealed stream: a line over %zu bytes",
				       s->line.max);
			goto fail;
		}
		i += take;
		if (!nl)
			break;
		i++; /* the "\n" */
		/* The receipt covers every byte up to the end of the final
		 * chunk's event: each line read while chunks are due. */
		if (s->phase <= PS_CHUNK_BLANK && s->hash) {
			if (s->line.len)
				s->hash(s->arg, s->line.data, s->line.len);
			s->hash(s->arg, (const uint8_t *)"\n", 1);
		}
		if (memchr(s->line.data ? s->line.data : (uint8_t *)"", '\r', s->line.len)) {
			rc = veil_errf(VEIL_EFORMAT, "sealed stream: CR in a line");
			goto fail;
		}
		rc = sealed_line(s);
		veil_buf_reset(&s->line);
		if (rc < 0)
			goto fail;
	}
	return 0;
fail:
	s->error = rc;
	return rc;
}

int proxy_sealed_end(struct proxy_sealed_stream *s)
{
	if (s->error)
		return s->error;
	if (s->phase != PS_END || s->line.len)
		return veil_errf(VEIL_EBADMSG, "sealed stream truncated: it ended where %s "
				 "was due", phase_name(s->phase));
	return 0;
}

/* A sealed chunk's base64, capped at the largest chunk veil-seal/1 allows
 * (the generic decoder is table-driven: this runs on every sealed event). */
int proxy_b64_chunk(const char *b64, size_t len, uint8_t *out, size_t cap,
		    size_t *out_len)
{
	size_t need = veil_b64_encoded_len(VEIL_SEAL_RESPONSE_NONCE_LEN + VEIL_SEAL_MAX_CHUNK +
					   VEIL_SEAL_CHUNK_OVERHEAD, 0); /* the first event's */

	if (len > need)
		return veil_errf(VEIL_ERANGE, "sealed chunk: %zu base64 characters (max %zu)",
				 len, need);
	return veil_b64_decode(b64, len, 0, out, cap, out_len);
}

/* ---- error bodies --------------------------------------------------------- */

static void copy_printable(json_t *v, char *out, size_t cap)
{
	const char *s = json_is_string(v) ? json_string_value(v) : "";
	size_t len = json_is_string(v) ? json_string_length(v) : 0, i;

	if (!cap)
		return;
	for (i = 0; i < len && i + 1 < cap; i++)
		out[i] = (s[i] >= 0x20 && s[i] <= 0x7e) ? s[i] : '?';
	out[i] = '\0';
}

void proxy_error_parse(const uint8_t *p, size_t n, char *code, size_t ccap,
		       char *msg, size_t mcap)
{
	json_t *root = n <= (1u << 20) ? json_loadb((const char *)p, n, 0, NULL) : NULL;
	json_t *e = json_object_get(root, "error");

	copy_printable(json_object_get(e, "code"), code, ccap);
	copy_printable(json_object_get(e, "message"), msg, mcap);
	json_decref(root);
}
