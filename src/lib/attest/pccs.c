/* Collateral from a PCCS / Intel PCS v4 API into the dcap-qvl JSON layout,
 * with an on-disk cache.  See include/veil/pccs.h for the URL scheme. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/x509.h>

#include "veil/base.h"
#include "veil/pccs.h"
#include "veil/tdx.h"
#include "veil/x509.h"

#define MOD "pccs"
#define HEADERS_MAX (64u * 1024u)
#define URL_MAX 2048
#define INTEL_PCS_HOST "api.trustedservices.intel.com"
#define INTEL_ROOT_CRL_URL \
	"https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"

#ifndef VEIL_VERSION
#define VEIL_VERSION "0"
#endif

/* ---- HTTP GET (libcurl easy) ------------------------------------------- */

struct resp {
	struct veil_buf body;
	struct veil_buf head; /* the final response's header lines */
	bool body_over;
	bool head_over;
	int status;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
	struct resp *r = arg;
	size_t n = sz * nm;

	if (veil_buf_append(&r->body, p, n) < 0) {
		r->body_over = true;
		return 0; /* aborts the transfer (CURLE_WRITE_ERROR) */
	}
	return n;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *arg)
{
	struct resp *r = arg;
	size_t n = sz * nm;

	/* A new status line (after 100 Continue or a proxy's 200): keep only
	 * the headers of the final response. */
	if (n >= 5 && !memcmp(p, "HTTP/", 5))
		veil_buf_reset(&r->head);
	if (veil_buf_append(&r->head, p, n) < 0) {
		r->head_over = true;
		return 0;
	}
	return n;
}

/* The value of header `name` (case-insensitive) of the final response,
 * trimmed, as a pointer into r->head and a length; false when absent. */
static bool resp_header(const struct resp *r, const char *name,
			const char **v, size_t *vlen)
{
	const char *p = (const char *)r->head.data;
	const char *end = p ? p + r->head.len : NULL;
	size_t nl = strlen(name);

	while (p && p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *le = eol ? eol : end;

		if ((size_t)(le - p) > nl && p[nl] == ':' &&
		    !strncasecmp(p, name, nl)) {
			const char *s = p + nl + 1, *e = le;

			while (s < e && (*s == ' ' || *s == '\t'))
				s++;
			while (e > s && (e[-1] == '\r' || e[-1] == ' ' ||
					 e[-1] == '\t'))
				e--;
			*v = s;
			*vlen = (size_t)(e - s);
			return true;
		}
		p = eol ? eol + 1 : end;
	}
	return false;
}

/* A short printable rendering of the PCS "Error-Message" header, for the
 * error detail ("" when absent). */
static void resp_error_message(const struct resp *r, char *out, size_t cap)
{
	const char *v;
	size_t vl, j = 0;

	out[0] = 0;
	if (!resp_header(r, "Error-Message", &v, &vl) &&
	    !resp_header(r, "Error-Code", &v, &vl))
		return;
	if (cap < 8)
		return;
	memcpy(out, " (", 2);
	j = 2;
	for (size_t i = 0; i < vl && j + 2 < cap && i < 120; i++)
		out[j++] = isprint((unsigned char)v[i]) ? v[i] : '?';
	out[j++] = ')';
	out[j] = 0;
}

static void resp_free(struct resp *r)
{
	veil_buf_free(&r->body);
	veil_buf_free(&r->head);
}

/* GETs `url` into r (r->body capped at the response cap).  Succeeds only
 * on a complete 200 response. */
static int http_get(const struct veil_pccs_opts *o, const char *url,
		    struct resp *r)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	char emsg[160];
	size_t cap = o->max_response ? o->max_response : VEIL_PCCS_MAX_RESPONSE;
	CURL *h = NULL;
	CURLcode cc;
	long status = 0;
	int rc;

	r->body = (struct veil_buf)VEIL_BUF_INIT(cap);
	r->head = (struct veil_buf)VEIL_BUF_INIT(HEADERS_MAX);
	r->body_over = r->head_over = false;
	r->status = 0;

	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return veil_errf(VEIL_EINTERNAL, "curl_global_init failed");
	if (!(h = curl_easy_init()))
		return veil_errf(VEIL_ENOMEM, "curl_easy_init failed");

	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS,
			 (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
			 (long)(o->timeout_ms ? o->timeout_ms : 30000));
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(o->connect_timeout_ms ? o->connect_timeout_ms
						      : 10000));
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cap);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "veil/" VEIL_VERSION);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (o->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file);

	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	r->status = (int)status;

	if (r->body_over || cc == CURLE_FILESIZE_EXCEEDED) {
		rc = veil_errf(VEIL_ERANGE,
			       "GET %s: HTTP %ld response body over %zu bytes",
			       url, status, cap);
		goto out;
	}
	if (r->head_over) {
		rc = veil_errf(VEIL_ERANGE,
			       "GET %s: response headers over %u bytes", url,
			       HEADERS_MAX);
		goto out;
	}
	if (cc == CURLE_OPERATION_TIMEDOUT) {
		rc = veil_errf(VEIL_ETIMEDOUT, "GET %s: timed out: %s", url,
			       errbuf[0] ? errbuf : curl_easy_strerror(cc));
		goto out;
	}
	if (cc != CURLE_OK) {
		rc = veil_errf(VEIL_EIO, "GET %s: %s%s%s (HTTP status %ld)",
			       url, curl_easy_strerror(cc),
			       errbuf[0] ? ": " : "", errbuf, status);
		goto out;
	}
	if (status != 200) {
		resp_error_message(r, emsg, sizeof(emsg));
		rc = veil_errf(status == 404 ? VEIL_ENOENT : VEIL_EIO,
			       "GET %s: HTTP %ld%s", url, status, emsg);
		goto out;
	}
	rc = 0;
out:
	curl_easy_cleanup(h);
	return rc;
}

/* ---- response pieces ------------------------------------------------------ */

/* Percent-decodes a header value ('+' stays '+': base64 uses it). */
static int url_decode(const char *url, const char *hname, const char *s,
		      size_t n, struct veil_buf *out)
{
	int rc;

	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)s[i];

		if (c == '%') {
			uint8_t b;
			size_t bl;

			if (n - i < 3 || veil_hex_decode(s + i + 1, 2, &b, 1, &bl) < 0)
				return veil_errf(VEIL_EFORMAT,
						 "GET %s: header %s: bad percent escape at offset %zu",
						 url, hname, i);
			c = b;
			i += 2;
		}
		if ((rc = veil_buf_append(out, &c, 1)) < 0)
			return rc;
	}
	return 0;
}

/* The issuer chain from the first present header of `names`, decoded and
 * checked to be a PEM chain. */
static int issuer_chain(const char *url, const struct resp *r,
			const char *const *names, struct veil_buf *out)
{
	STACK_OF(X509) *chain = NULL;
	const char *v = NULL, *name = NULL;
	size_t vl = 0;
	int rc;

	for (size_t i = 0; names[i]; i++)
		if (resp_header(r, names[i], &v, &vl)) {
			name = names[i];
			break;
		}
	if (!name || !vl)
		return veil_errf(VEIL_EFORMAT,
				 "GET %s: HTTP %d without the %s header", url,
				 r->status, names[0]);
	if ((rc = url_decode(url, name, v, vl, out)) < 0)
		return rc;
	if ((rc = veil_x509_pem_chain_parse(out->data, out->len, &chain)) < 0) {
		char why[256];

		/* a copy: veil_errf writes the buffer veil_err_detail() reads */
		snprintf(why, sizeof(why), "%s", veil_err_detail());
		return veil_errf(rc, "GET %s: header %s is not a PEM chain: %s",
				 url, name, why);
	}
	sk_X509_pop_free(chain, X509_free);
	return 0;
}

static size_t skip_ws(const uint8_t *p, size_t n, size_t i)
{
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' ||
			 p[i] == '\n'))
		i++;
	return i;
}

/* p[i] is '"': returns the index after the closing quote, or n. */
static size_t skip_string(const uint8_t *p, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		if (p[i] == '\\')
			i++;
		else if (p[i] == '"')
			return i + 1;
	}
	return n;
}

/* The end of the JSON value starting at p[i] (already validated JSON). */
static size_t skip_value(const uint8_t *p, size_t n, size_t i)
{
	size_t depth = 0;

	if (i >= n)
		return n;
	if (p[i] == '"')
		return skip_string(p, n, i);
	if (p[i] != '{' && p[i] != '[') {
		while (i < n && !strchr(",}] \t\r\n", p[i]))
			i++;
		return i;
	}
	while (i < n) {
		if (p[i] == '"') {
			i = skip_string(p, n, i);
			continue;
		}
		if (p[i] == '{' || p[i] == '[')
			depth++;
		else if (p[i] == '}' || p[i] == ']') {
			if (--depth == 0)
				return i + 1;
		}
		i++;
	}
	return n;
}

/* Finds the raw bytes of the top-level member `key` of the JSON object in
 * p[0..n).  The caller has validated p as JSON. */
static bool raw_member(const uint8_t *p, size_t n, const char *key,
		       size_t *off, size_t *len)
{
	size_t kl = strlen(key);
	size_t i = skip_ws(p, n, 0);

	if (i >= n || p[i] != '{')
		return false;
	i++;
	for (;;) {
		size_t ks, ke, vs, ve;

		i = skip_ws(p, n, i);
		if (i >= n || p[i] != '"')
			return false;
		ks = i + 1;
		i = skip_string(p, n, i);
		if (i >= n)
			return false;
		ke = i - 1;
		i = skip_ws(p, n, i);
		if (i >= n || p[i] != ':')
			return false;
		vs = skip_ws(p, n, i + 1);
		ve = skip_value(p, n, vs);
		if (ve > n || ve <= vs)
			return false;
		if (ke - ks == kl && !memcmp(p + ks, key, kl)) {
			*off = vs;
			*len = ve - vs;
			return true;
		}
		i = skip_ws(p, n, ve);
		if (i >= n || p[i] != ',')
			return false;
		i++;
	}
}

/* A signed PCS body {"<key>":{...},"signature":"<hex>"}: the exact bytes of
 * the <key> value into *raw, the signature (128 hex digits) into sig. */
static int signed_body(const char *url, const struct resp *r, const char *key,
		       struct veil_buf *raw, char sig[129])
{
	const uint8_t *p = r->body.data;
	size_t n = r->body.len, off = 0, len = 0;
	json_error_t je;
	json_t *root = NULL, *val, *sub = NULL;
	const char *s;
	uint8_t tmp[64];
	size_t tl;
	int rc;

	if (!p || !n)
		return veil_errf(VEIL_EFORMAT, "GET %s: HTTP %d with an empty body",
				 url, r->status);
	root = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &je);
	if (!root || !json_is_object(root)) {
		rc = veil_errf(VEIL_EFORMAT, "GET %s: body is not a JSON object: %s",
			       url, root ? "not an object" : je.text);
		goto out;
	}
	val = json_object_get(root, key);
	if (!json_is_object(val)) {
		rc = veil_errf(VEIL_EFORMAT, "GET %s: body has no \"%s\" object",
			       url, key);
		goto out;
	}
	s = json_string_value(json_object_get(root, "signature"));
	if (!s || strlen(s) != 128 ||
	    veil_hex_decode(s, 128, tmp, sizeof(tmp), &tl) < 0) {
		rc = veil_errf(VEIL_EFORMAT,
			       "GET %s: \"signature\" is not 128 hex digits (r||s)",
			       url);
		goto out;
	}
	/* The signature covers the value's exact bytes: cut them out of the
	 * body and check they are the value jansson saw. */
	if (!raw_member(p, n, key, &off, &len) ||
	    !(sub = json_loadb((const char *)p + off, len, JSON_REJECT_DUPLICATES,
			       &je)) ||
	    !json_equal(sub, val)) {
		rc = veil_errf(VEIL_EFORMAT,
			       "GET %s: cannot locate the raw \"%s\" value", url,
			       key);
		goto out;
	}
	if ((rc = veil_buf_append(raw, p + off, len)) < 0)
		goto out;
	memcpy(sig, s, 129);
	rc = 0;
out:
	json_decref(sub);
	json_decref(root);
	return rc;
}

/* A CRL body: DER, or hex text of DER (PCCS v3 style).  Appends lower-case
 * hex of the DER to `hex`. */
static int crl_body(const char *url, const struct resp *r,
		    struct veil_buf *hex)
{
	const uint8_t *p = r->body.data;
	size_t n = r->body.len;
	uint8_t *der = NULL;
	size_t dl = 0, hl;
	X509_CRL *crl = NULL;
	int rc;

	if (!p || !n)
		return veil_errf(VEIL_EFORMAT, "GET %s: HTTP %d with an empty body",
				 url, r->status);
	if (p[0] == 0x30) {
		der = malloc(n);
		if (!der)
			return VEIL_ENOMEM;
		memcpy(der, p, n);
		dl = n;
	} else {
		size_t e = n;

		while (e && isspace(p[e - 1]))
			e--;
		der = malloc(e / 2 + 1);
		if (!der)
			return VEIL_ENOMEM;
		if (veil_hex_decode((const char *)p, e, der, e / 2 + 1, &dl) < 0) {
			rc = veil_errf(VEIL_EFORMAT,
				       "GET %s: body is neither DER nor hex", url);
			goto out;
		}
	}
	if ((rc = veil_x509_crl_der_parse(der, dl, &crl)) < 0) {
		rc = veil_errf(rc, "GET %s: body is not a DER CRL (%zu bytes)", url,
			       dl);
		goto out;
	}
	if (veil_mul_ovf(dl, 2, &hl) || veil_add_ovf(hl, 1, &hl)) {
		rc = VEIL_EOVERFLOW;
		goto out;
	}
	if ((rc = veil_buf_reserve(hex, hl)) < 0)
		goto out;
	veil_hex_encode(der, dl, (char *)hex->data + hex->len, hl);
	hex->len += hl - 1;
	rc = 0;
out:
	X509_CRL_free(crl);
	free(der);
	return rc;
}

/* ---- collateral facts (freshness, FMSPC) ----------------------------------- */

struct facts {
	int64_t next_update;
	char fmspc[13]; /* tcbInfo.fmspc, upper-case; "" when absent */
};

static int json_next_update(const char *what, const char *text,
			    int64_t *out, json_t **obj)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	const char *s;

	if (!json_is_object(j)) {
		json_decref(j);
		return veil_errf(VEIL_EFORMAT, "%s: not a JSON object", what);
	}
	s = json_string_value(json_object_get(j, "nextUpdate"));
	if (!s || veil_x509_iso8601_parse(s, strlen(s), out) < 0) {
		json_decref(j);
		return veil_errf(VEIL_EFORMAT, "%s: nextUpdate missing or malformed",
				 what);
	}
	*obj = j;
	return 0;
}

static int crl_next_update(const char *what, const char *hex, int64_t *out)
{
	size_t hl = strlen(hex), dl;
	uint8_t *der = malloc(hl / 2 + 1);
	X509_CRL *crl = NULL;
	const ASN1_TIME *t;
	int rc;

	if (!der)
		return VEIL_ENOMEM;
	if (veil_hex_decode(hex, hl, der, hl / 2 + 1, &dl) < 0 ||
	    veil_x509_crl_der_parse(der, dl, &crl) < 0) {
		rc = veil_errf(VEIL_EFORMAT, "%s: not a hex DER CRL", what);
		goto out;
	}
	if (!(t = X509_CRL_get0_nextUpdate(crl)) ||
	    veil_x509_time_unix(t, out) < 0) {
		rc = veil_errf(VEIL_EFORMAT, "%s: nextUpdate missing or malformed",
			       what);
		goto out;
	}
	rc = 0;
out:
	X509_CRL_free(crl);
	free(der);
	return rc;
}

static int collateral_facts(const uint8_t *p, size_t n, struct facts *f)
{
	static const char *const crls[] = {"root_ca_crl", "pck_crl"};
	static const char *const docs[] = {"tcb_info", "qe_identity"};
	json_error_t je;
	json_t *root = json_loadb((const char *)p, n, 0, &je);
	json_t *doc = NULL;
	int64_t t, min = INT64_MAX;
	int rc = 0;

	memset(f, 0, sizeof(*f));
	if (!json_is_object(root)) {
		rc = veil_errf(VEIL_EFORMAT, "collateral: not a JSON object");
		goto out;
	}
	for (size_t i = 0; i < 2; i++) {
		const char *s = json_string_value(json_object_get(root, docs[i]));

		if (!s) {
			rc = veil_errf(VEIL_EFORMAT, "collateral: %s missing", docs[i]);
			goto out;
		}
		if ((rc = json_next_update(docs[i], s, &t, &doc)) < 0)
			goto out;
		if (i == 0) {
			const char *fm = json_string_value(json_object_get(doc, "fmspc"));

			if (fm && strlen(fm) == 12)
				for (size_t k = 0; k < 12; k++)
					f->fmspc[k] = (char)toupper((unsigned char)fm[k]);
		}
		json_decref(doc);
		doc = NULL;
		min = VEIL_MIN(min, t);
	}
	for (size_t i = 0; i < 2; i++) {
		const char *s = json_string_value(json_object_get(root, crls[i]));

		if (!s) {
			rc = veil_errf(VEIL_EFORMAT, "collateral: %s missing", crls[i]);
			goto out;
		}
		if ((rc = crl_next_update(crls[i], s, &t)) < 0)
			goto out;
		min = VEIL_MIN(min, t);
	}
	f->next_update = min;
out:
	json_decref(root);
	return rc;
}

int veil_pccs_collateral_next_update(const uint8_t *p, size_t n, int64_t *out)
{
	struct facts f;
	int rc;

	if (!p || !out)
		return VEIL_EINVAL;
	if ((rc = collateral_facts(p, n, &f)) < 0)
		return rc;
	*out = f.next_update;
	return 0;
}

/* ---- cache --------------------------------------------------------------- */

static const char *tee_name(enum veil_pccs_tee tee)
{
	return tee == VEIL_PCCS_SGX ? "sgx" : "tdx";
}

static int check_args(const struct veil_pccs_opts *o, const uint8_t *fmspc,
		      const char *ca, enum veil_pccs_tee tee)
{
	if (!o || !fmspc || !ca)
		return veil_errf(VEIL_EINVAL, "pccs: missing argument");
	if (strcmp(ca, "processor") && strcmp(ca, "platform"))
		return veil_errf(VEIL_EINVAL,
				 "pccs: ca must be \"processor\" or \"platform\"");
	if (tee != VEIL_PCCS_TDX && tee != VEIL_PCCS_SGX)
		return veil_errf(VEIL_EINVAL, "pccs: unknown TEE %d", (int)tee);
	return 0;
}

int veil_pccs_cache_path(const struct veil_pccs_opts *o, const uint8_t fmspc[6],
			 const char *ca, enum veil_pccs_tee tee, char *out,
			 size_t cap)
{
	char hex[13];
	int rc, k;

	if ((rc = check_args(o, fmspc, ca, tee)) < 0)
		return rc;
	if (!o->cache_dir || !*o->cache_dir || !out)
		return veil_errf(VEIL_EINVAL, "pccs: no cache directory");
	veil_hex_encode(fmspc, 6, hex, sizeof(hex));
	k = snprintf(out, cap, "%s/%s-%s-%s.json", o->cache_dir, tee_name(tee),
		     hex, ca);
	if (k < 0 || (size_t)k >= cap)
		return veil_errf(VEIL_ERANGE, "pccs: cache path too long");
	return 0;
}

/* Writes `p` to `path` atomically: temporary file beside it, fsync,
 * rename, fsync of the directory. */
static int write_atomic(const char *dir, const char *path, const uint8_t *p,
			size_t n)
{
	char tmp[4096];
	int fd = -1, dfd, rc;
	size_t done = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
		return veil_errf(VEIL_ERANGE, "pccs: cache path too long");
	if ((fd = mkstemp(tmp)) < 0)
		return veil_errf(VEIL_EIO, "pccs: cache %s: cannot create a file: %s",
				 dir, strerror(errno));
	while (done < n) {
		ssize_t w = write(fd, p + done, n - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = veil_errf(VEIL_EIO, "pccs: cache %s: write: %s", tmp,
				       strerror(errno));
			goto fail;
		}
		done += (size_t)w;
	}
	if (fchmod(fd, 0644) < 0 || fsync(fd) < 0) {
		rc = veil_errf(VEIL_EIO, "pccs: cache %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = veil_errf(VEIL_EIO, "pccs: cache %s: close: %s", tmp,
			       strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = veil_errf(VEIL_EIO, "pccs: cache %s: rename: %s", path,
			       strerror(errno));
		goto fail;
	}
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return rc;
}

int veil_pccs_cache_write(const struct veil_pccs_opts *o, const uint8_t fmspc[6],
			  const char *ca, enum veil_pccs_tee tee, const uint8_t *p,
			  size_t n)
{
	char path[4096];
	int rc;

	if (!o || !o->cache_dir || !*o->cache_dir || (!p && n))
		return veil_errf(VEIL_EINVAL, "pccs: no cache directory");
	if ((rc = veil_pccs_cache_path(o, fmspc, ca, tee, path, sizeof(path))) < 0)
		return rc;
	return write_atomic(o->cache_dir, path, p, n);
}

/* ---- fetch ----------------------------------------------------------------- */

static int make_url(char *out, const char *base, const char *fmt, ...)
	VEIL_PRINTF(3, 4);

static int make_url(char *out, const char *base, const char *fmt, ...)
{
	size_t bl = strlen(base);
	va_list ap;
	int k;

	while (bl && base[bl - 1] == '/')
		bl--;
	if (bl >= URL_MAX)
		return veil_errf(VEIL_ERANGE, "pccs: base URL too long");
	memcpy(out, base, bl);
	va_start(ap, fmt);
	k = vsnprintf(out + bl, URL_MAX - bl, fmt, ap);
	va_end(ap);
	if (k < 0 || (size_t)k >= URL_MAX - bl)
		return veil_errf(VEIL_ERANGE, "pccs: URL too long");
	return 0;
}

static bool is_intel_pcs(const char *base)
{
	const char *h = strstr(base, "://");

	h = h ? h + 3 : base;
	return !strncasecmp(h, INTEL_PCS_HOST, strlen(INTEL_PCS_HOST)) &&
	       strchr("/:", h[strlen(INTEL_PCS_HOST)]);
}

/* Fetches the four pieces and assembles the JSON into *out. */
static int fetch_remote(const struct veil_pccs_opts *o, const char *fmspc_hex,
			const char *ca, enum veil_pccs_tee tee,
			struct veil_buf *out)
{
	static const char *const h_tcb[] = {"TCB-Info-Issuer-Chain",
					    "SGX-TCB-Info-Issuer-Chain", NULL};
	static const char *const h_qe[] = {"SGX-Enclave-Identity-Issuer-Chain",
					   "Enclave-Identity-Issuer-Chain", NULL};
	static const char *const h_crl[] = {"SGX-PCK-CRL-Issuer-Chain", NULL};
	const char *tn = tee_name(tee);
	char url[URL_MAX], tcb_sig[129], qe_sig[129];
	struct veil_buf tcb = VEIL_BUF_INIT(VEIL_PCCS_MAX_RESPONSE * 2);
	struct veil_buf qe = VEIL_BUF_INIT(VEIL_PCCS_MAX_RESPONSE * 2);
	struct veil_buf tcb_chain = VEIL_BUF_INIT(HEADERS_MAX);
	struct veil_buf qe_chain = VEIL_BUF_INIT(HEADERS_MAX);
	struct veil_buf crl_chain = VEIL_BUF_INIT(HEADERS_MAX);
	struct veil_buf pck_crl = VEIL_BUF_INIT(VEIL_PCCS_MAX_RESPONSE * 4);
	struct veil_buf root_crl = VEIL_BUF_INIT(VEIL_PCCS_MAX_RESPONSE * 4);
	struct resp r = {0};
	json_t *j = NULL, *tj = NULL;
	json_error_t je;
	char *dump = NULL;
	const char *fm, *id;
	int rc;

	/* TCB info */
	if ((rc = make_url(url, o->base_url, "/%s/certification/v4/tcb?fmspc=%s",
			   tn, fmspc_hex)) < 0 ||
	    (rc = http_get(o, url, &r)) < 0 ||
	    (rc = signed_body(url, &r, "tcbInfo", &tcb, tcb_sig)) < 0 ||
	    (rc = issuer_chain(url, &r, h_tcb, &tcb_chain)) < 0)
		goto out;
	resp_free(&r);
	tj = json_loadb((const char *)tcb.data, tcb.len, 0, &je);
	fm = json_string_value(json_object_get(tj, "fmspc"));
	if (!fm || strcasecmp(fm, fmspc_hex)) {
		rc = veil_errf(VEIL_EFORMAT,
			       "GET %s: tcbInfo.fmspc %s is not the FMSPC asked for",
			       url, fm ? fm : "(missing)");
		goto out;
	}
	id = json_string_value(json_object_get(tj, "id"));
	if (id && strcasecmp(id, tn)) {
		rc = veil_errf(VEIL_EFORMAT, "GET %s: tcbInfo.id \"%s\" is not %s",
			       url, id, tee == VEIL_PCCS_TDX ? "TDX" : "SGX");
		goto out;
	}

	/* QE identity */
	if ((rc = make_url(url, o->base_url, "/%s/certification/v4/qe/identity",
			   tn)) < 0 ||
	    (rc = http_get(o, url, &r)) < 0 ||
	    (rc = signed_body(url, &r, "enclaveIdentity", &qe, qe_sig)) < 0 ||
	    (rc = issuer_chain(url, &r, h_qe, &qe_chain)) < 0)
		goto out;
	resp_free(&r);

	/* PCK CRL */
	if ((rc = make_url(url, o->base_url,
			   "/sgx/certification/v4/pckcrl?ca=%s&encoding=der",
			   ca)) < 0 ||
	    (rc = http_get(o, url, &r)) < 0 ||
	    (rc = crl_body(url, &r, &pck_crl)) < 0 ||
	    (rc = issuer_chain(url, &r, h_crl, &crl_chain)) < 0)
		goto out;
	resp_free(&r);

	/* Root CA CRL */
	if (o->root_ca_crl_url) {
		if (strlen(o->root_ca_crl_url) >= URL_MAX) {
			rc = veil_errf(VEIL_ERANGE, "pccs: root CA CRL URL too long");
			goto out;
		}
		strcpy(url, o->root_ca_crl_url);
	} else if (is_intel_pcs(o->base_url)) {
		strcpy(url, INTEL_ROOT_CRL_URL);
	} else if ((rc = make_url(url, o->base_url,
				  "/sgx/certification/v4/rootcacrl")) < 0) {
		goto out;
	}
	if ((rc = http_get(o, url, &r)) < 0 ||
	    (rc = crl_body(url, &r, &root_crl)) < 0)
		goto out;
	resp_free(&r);

	j = json_pack("{s:s%, s:s%, s:s%, s:s%, s:s%, s:s, s:s%, s:s%, s:s}",
		      "pck_crl_issuer_chain", (const char *)crl_chain.data, crl_chain.len,
		      "root_ca_crl", (const char *)root_crl.data, root_crl.len,
		      "pck_crl", (const char *)pck_crl.data, pck_crl.len,
		      "tcb_info_issuer_chain", (const char *)tcb_chain.data, tcb_chain.len,
		      "tcb_info", (const char *)tcb.data, tcb.len,
		      "tcb_info_signature", tcb_sig,
		      "qe_identity_issuer_chain", (const char *)qe_chain.data, qe_chain.len,
		      "qe_identity", (const char *)qe.data, qe.len,
		      "qe_identity_signature", qe_sig);
	if (!j || !(dump = json_dumps(j, JSON_PRESERVE_ORDER | JSON_INDENT(1)))) {
		rc = veil_errf(VEIL_ENOMEM, "pccs: cannot build the collateral JSON");
		goto out;
	}
	rc = veil_buf_append_str(out, dump);
out:
	free(dump);
	json_decref(j);
	json_decref(tj);
	resp_free(&r);
	veil_buf_free(&tcb);
	veil_buf_free(&qe);
	veil_buf_free(&tcb_chain);
	veil_buf_free(&qe_chain);
	veil_buf_free(&crl_chain);
	veil_buf_free(&pck_crl);
	veil_buf_free(&root_crl);
	return rc;
}

int veil_pccs_fetch(const struct veil_pccs_opts *o, const uint8_t fmspc[6],
		    const char *ca, enum veil_pccs_tee tee,
		    struct veil_buf *collateral_json)
{
	struct veil_buf doc = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	struct veil_tdx_collateral *c = NULL;
	struct facts f;
	char path[4096], hex[13];
	int64_t now;
	bool have_path = false;
	int rc;

	if ((rc = check_args(o, fmspc, ca, tee)) < 0)
		return rc;
	if (!collateral_json)
		return veil_errf(VEIL_EINVAL, "pccs: missing output buffer");
	if (!o->cache_only && (!o->base_url || !*o->base_url))
		return veil_errf(VEIL_EINVAL, "pccs: no base URL");
	veil_hex_encode(fmspc, 6, hex, sizeof(hex));
	for (size_t i = 0; i < 12; i++)
		hex[i] = (char)toupper((unsigned char)hex[i]);
	now = o->now ? o->now : (int64_t)(veil_wall_ms() / 1000);

	if (o->cache_dir && *o->cache_dir) {
		if ((rc = veil_pccs_cache_path(o, fmspc, ca, tee, path,
					       sizeof(path))) < 0)
			return rc;
		have_path = true;
		rc = veil_buf_read_file(&doc, path);
		if (rc == 0 && collateral_facts(doc.data, doc.len, &f) == 0 &&
		    !strcmp(f.fmspc, hex) && f.next_update > now) {
			VEIL_DEBUG(MOD, "collateral %s-%s-%s from the cache",
				   tee_name(tee), hex, ca);
			goto done;
		}
		if (rc == 0 && !o->quiet)
			VEIL_INFO(MOD, "cached collateral %s is stale or unusable; refetching",
				  path);
		veil_buf_reset(&doc);
	}
	if (o->cache_only) {
		rc = veil_errf(have_path ? VEIL_EAGAIN : VEIL_ENOENT,
			       "pccs: no fresh cached collateral for %s FMSPC %s ca %s%s%s",
			       tee_name(tee), hex, ca, have_path ? " in " : "",
			       have_path ? path : "");
		goto out;
	}
	if ((rc = fetch_remote(o, hex, ca, tee, &doc)) < 0)
		goto out;
	/* What goes into the cache must be readable by the verifier. */
	if ((rc = veil_tdx_collateral_parse(doc.data, doc.len, &c)) < 0) {
		char why[384];

		snprintf(why, sizeof(why), "%s", veil_err_detail()); /* see issuer_chain */
		rc = veil_errf(rc, "pccs: fetched collateral does not parse: %s", why);
		goto out;
	}
	if ((rc = collateral_facts(doc.data, doc.len, &f)) < 0)
		goto out;
	if (strcmp(f.fmspc, hex)) {
		/* a misconfigured server: kept, it would replace good collateral */
		rc = veil_errf(VEIL_EFORMAT, "pccs: %s answered collateral for FMSPC %s, not %s",
			       o->base_url, f.fmspc[0] ? f.fmspc : "(none)", hex);
		goto out;
	}
	if (f.next_update <= now) {
		/* returned (the caller judges it), never cached over a file
		 * that may still be fresh for a restart */
		if (o->quiet)
			VEIL_DEBUG(MOD, "collateral for %s FMSPC %s from %s is already past its "
				   "nextUpdate", tee_name(tee), hex, o->base_url);
		else
			VEIL_WARN(MOD, "collateral for %s FMSPC %s from %s is already past its "
				  "nextUpdate", tee_name(tee), hex, o->base_url);
	} else if (have_path && write_atomic(o->cache_dir, path, doc.data, doc.len) < 0) {
		/* the collateral is good: an unwritable cache only costs a
		 * fetch next time */
		VEIL_WARN(MOD, "collateral not cached: %s", veil_err_detail());
	}
done:
	rc = veil_buf_append(collateral_json, doc.data, doc.len);
out:
	veil_tdx_collateral_free(c);
	veil_buf_free(&doc);
	return rc;
}

/* ---- what a quote needs ----------------------------------------------------- */

/* Intel SGX PCK Certificate and CRL Profile §1.3.5: the SGX extension
 * (1.2.840.113741.1.13.1) is a SEQUENCE of SEQUENCE { OID, value }; FMSPC is
 * member .4, an OCTET STRING of 6 bytes. */
#define OID_SGX_EXT "1.2.840.113741.1.13.1"
#define OID_SGX_FMSPC "1.2.840.113741.1.13.1.4"

static int pck_fmspc(X509 *leaf, uint8_t fmspc[6])
{
	ASN1_OBJECT *ext_oid = OBJ_txt2obj(OID_SGX_EXT, 1);
	ASN1_OBJECT *fm_oid = OBJ_txt2obj(OID_SGX_FMSPC, 1);
	STACK_OF(ASN1_TYPE) *seq = NULL;
	const ASN1_OCTET_STRING *os;
	const unsigned char *p;
	X509_EXTENSION *ext;
	int idx, rc = VEIL_EFORMAT;

	if (!ext_oid || !fm_oid) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if ((idx = X509_get_ext_by_OBJ(leaf, ext_oid, -1)) < 0 ||
	    !(ext = X509_get_ext(leaf, idx)) ||
	    !(os = X509_EXTENSION_get_data(ext))) {
		rc = veil_errf(VEIL_EFORMAT, "PCK certificate: no SGX extension");
		goto out;
	}
	p = ASN1_STRING_get0_data(os);
	if (!(seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, ASN1_STRING_length(os))))
		goto bad;
	for (int i = 0; i < sk_ASN1_TYPE_num(seq); i++) {
		ASN1_TYPE *t = sk_ASN1_TYPE_value(seq, i);
		STACK_OF(ASN1_TYPE) *kv;
		ASN1_TYPE *k, *v;
		const unsigned char *q;
		bool hit = false;

		if (t->type != V_ASN1_SEQUENCE)
			continue;
		q = t->value.sequence->data;
		if (!(kv = d2i_ASN1_SEQUENCE_ANY(NULL, &q, t->value.sequence->length)))
			goto bad;
		if (sk_ASN1_TYPE_num(kv) == 2 &&
		    (k = sk_ASN1_TYPE_value(kv, 0))->type == V_ASN1_OBJECT &&
		    !OBJ_cmp(k->value.object, fm_oid)) {
			v = sk_ASN1_TYPE_value(kv, 1);
			if (v->type == V_ASN1_OCTET_STRING &&
			    ASN1_STRING_length(v->value.octet_string) == 6) {
				memcpy(fmspc, ASN1_STRING_get0_data(v->value.octet_string), 6);
				hit = true;
			}
		}
		sk_ASN1_TYPE_pop_free(kv, ASN1_TYPE_free);
		if (hit) {
			rc = 0;
			goto out;
		}
	}
bad:
	rc = veil_errf(VEIL_EFORMAT, "PCK certificate: SGX extension has no 6-byte FMSPC");
out:
	sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
	ASN1_OBJECT_free(ext_oid);
	ASN1_OBJECT_free(fm_oid);
	return rc;
}

int veil_pccs_quote_target(const uint8_t *quote, size_t n, uint8_t fmspc[6],
			   const char **ca, enum veil_pccs_tee *tee)
{
	struct veil_tdx_quote q;
	STACK_OF(X509) *chain = NULL;
	char cn[128];
	const char *c;
	uint8_t fm[6];
	int rc;

	if (!quote || !fmspc || !ca || !tee)
		return VEIL_EINVAL;
	if ((rc = veil_tdx_quote_parse(quote, n, &q)) < 0)
		return rc;
	if (q.pck_cert_type != 5)
		return veil_errf(VEIL_ENOTSUP,
				 "quote: certification data type %u (only 5, a PEM PCK chain)",
				 q.pck_cert_type);
	if ((rc = veil_x509_pem_chain_parse(q.pck_data, q.pck_data_len, &chain)) < 0) {
		char why[384];

		snprintf(why, sizeof(why), "%s", veil_err_detail()); /* see issuer_chain */
		return veil_errf(rc, "quote: PCK chain: %s", why);
	}
	if (X509_NAME_get_text_by_NID(X509_get_issuer_name(sk_X509_value(chain, 0)),
				      NID_commonName, cn, sizeof(cn)) < 0) {
		rc = veil_errf(VEIL_EFORMAT, "PCK certificate: issuer has no CN");
		goto out;
	}
	/* veil's sim TEE (src/lib/attest/gen/sim.c) issues its PCK
	 * certificates under the same names with its own prefix: what to
	 * fetch for a sim quote is then found as for a real one (a PCCS
	 * serving the sim's collateral, in tests and demos); whether the
	 * collateral is Intel's is for veil_tdx_verify() to say */
	if (!strcmp(cn, "Intel SGX PCK Processor CA") ||
	    !strcmp(cn, "veil SIMULATED SGX PCK Processor CA"))
		c = "processor";
	else if (!strcmp(cn, "Intel SGX PCK Platform CA") ||
		 !strcmp(cn, "veil SIMULATED SGX PCK Platform CA"))
		c = "platform";
	else {
		rc = veil_errf(VEIL_EFORMAT, "PCK certificate: unknown issuer \"%.64s\"",
			       cn);
		goto out;
	}
	if ((rc = pck_fmspc(sk_X509_value(chain, 0), fm)) < 0)
		goto out;
	memcpy(fmspc, fm, 6);
	*ca = c;
	*tee = q.header.tee_type == VEIL_TDX_TEE_TDX ? VEIL_PCCS_TDX : VEIL_PCCS_SGX;
	rc = 0;
out:
	sk_X509_pop_free(chain, X509_free);
	return rc;
}
