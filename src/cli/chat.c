/* veil chat: one chat through a local veil-proxy, and what was verified.
 *
 *   veil chat [--proxy URL] [--model M] [--max-tokens N] TEXT...
 *
 * Prints the answer, then one line: the TEE and TCB status of the node that
 * answered, the model and its SHA-256, and the receipt.  Nothing of an
 * answer that does not verify is printed.  The proxy answers
 * only after it has checked the node's receipt (X-Veil-Verified: receipt);
 * veil chat then checks the receipt's two signatures itself against the
 * node keys that the proxy attested (GET /veil/status), and that the
 * receipt names the attested model hash.  Exit 0 verified, 1 not (or no
 * answer), 2 usage. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli.h"
#include "veil/base.h"
#include "veil/keyset.h"
#include "veil/receipt.h"
#include "veil/sign.h"

#define CHAT_DEFAULT_PROXY "http://127.0.0.1:8080"
#define CHAT_MAX_BODY (16u << 20)
#define CHAT_MAX_HDR 8192
#define CHAT_TIMEOUT_MS 120000L
#define CHAT_URL_MAX 512

struct hdrs {
	char verified[32];
	char node[128];
	char model_sha256[80];
	char receipt_id[160];
	char warning[256];
	struct veil_buf receipt_b64;   /* X-Veil-Receipt */
};

struct fetch {
	struct veil_buf body;
	struct hdrs h;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: veil chat [--proxy URL] [--model M] [--max-tokens N] TEXT...\n"
		"\n"
		"Sends TEXT as one user message through a veil-proxy (veil up prints its URL),\n"
		"prints the answer and one line of verification: the TEE and TCB status of the\n"
		"node that answered, the model and its SHA-256, and whether the answer's signed\n"
		"receipt verified against the node's attested keys.\n"
		"\n"
		"  --proxy URL       default $VEIL_PROXY, else " CHAT_DEFAULT_PROXY "\n"
		"                    (with or without /v1)\n"
		"  --model M         default: the first model the proxy lists\n"
		"  --max-tokens N    default 200\n"
		"Exit status: 0 answered and verified, 1 not verified or failed, 2 usage.\n");
}

static size_t body_cb(char *p, size_t sz, size_t n, void *arg)
{
	struct fetch *f = arg;

	return veil_buf_append(&f->body, p, sz * n) == 0 ? sz * n : 0;
}

static void copy_val(char *dst, size_t cap, const char *v, size_t len)
{
	while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
		len--;
	while (len && *v == ' ') {
		v++;
		len--;
	}
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, v, len);
	dst[len] = '\0';
}

static size_t header_cb(char *p, size_t sz, size_t n, void *arg)
{
	struct fetch *f = arg;
	size_t len = sz * n;
	const char *colon = memchr(p, ':', len);
	static const struct {
		const char *name;
		size_t off, cap;
	} known[] = {
		{"X-Veil-Verified", offsetof(struct hdrs, verified), sizeof(((struct hdrs *)0)->verified)},
		{"X-Veil-Node", offsetof(struct hdrs, node), sizeof(((struct hdrs *)0)->node)},
		{"X-Veil-Model-Sha256", offsetof(struct hdrs, model_sha256),
		 sizeof(((struct hdrs *)0)->model_sha256)},
		{"X-Veil-Receipt-Id", offsetof(struct hdrs, receipt_id),
		 sizeof(((struct hdrs *)0)->receipt_id)},
		{"X-Veil-Warning", offsetof(struct hdrs, warning), sizeof(((struct hdrs *)0)->warning)},
	};
	size_t nlen;

	if (!colon)
		return len;
	nlen = (size_t)(colon - p);
	if (nlen == strlen("X-Veil-Receipt") && !strncasecmp(p, "X-Veil-Receipt", nlen)) {
		char *v = (char *)colon + 1;
		size_t vl = len - nlen - 1;

		while (vl && *v == ' ') {
			v++;
			vl--;
		}
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
			vl--;
		veil_buf_reset(&f->h.receipt_b64);
		if (veil_buf_append(&f->h.receipt_b64, v, vl) < 0)
			veil_buf_reset(&f->h.receipt_b64); /* too large: treated as absent */
		return len;
	}
	for (size_t i = 0; i < VEIL_ARRAY_LEN(known); i++)
		if (nlen == strlen(known[i].name) && !strncasecmp(p, known[i].name, nlen))
			copy_val((char *)&f->h + known[i].off, known[i].cap, colon + 1,
				 len - nlen - 1);
	return len;
}

/* GET or POST (body != NULL) over plain HTTP to the local proxy.  Returns
 * the HTTP status, or -1 when no answer came (message on stderr). */
static long do_fetch(const char *url, const char *body, struct fetch *f)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	long code = -1;
	CURLcode cc;

	if (!c)
		return -1;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, CHAT_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, f);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	if (body) {
		h = curl_slist_append(h, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	}
	cc = curl_easy_perform(c);
	if (cc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	else
		fprintf(stderr, "veil chat: %s: %s\n", url, curl_easy_strerror(cc));
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return code;
}

static void fetch_init(struct fetch *f, bool secret)
{
	memset(f, 0, sizeof(*f));
	f->body = (struct veil_buf)VEIL_BUF_INIT(CHAT_MAX_BODY);
	f->body.secret = secret; /* the answer */
	f->h.receipt_b64 = (struct veil_buf)VEIL_BUF_INIT(128u << 10);
}

static void fetch_free(struct fetch *f)
{
	veil_buf_free(&f->body);
	veil_buf_free(&f->h.receipt_b64);
}

/* "message" of an OpenAI error body, or the status. */
static void print_error(const char *what, long code, const struct fetch *f)
{
	json_t *j = f->body.len ? json_loadb((const char *)f->body.data, f->body.len, 0, NULL)
				: NULL;
	json_t *e = json_object_get(j, "error");
	const char *m = json_string_value(json_object_get(e, "message"));
	const char *k = json_string_value(json_object_get(e, "code"));

	fprintf(stderr, "veil chat: %s: HTTP %ld%s%s%s%s\n", what, code, k ? " " : "",
		k ? k : "", m ? ": " : "", m ? m : "");
	json_decref(j);
}

/* base: "http://h:p" without a trailing "/" or "/v1". */
static int normalize(const char *proxy, char *base, size_t cap)
{
	size_t n = strlen(proxy);

	if (strncmp(proxy, "http://", 7) && strncmp(proxy, "https://", 8)) {
		fprintf(stderr, "veil chat: --proxy must be an http(s):// URL\n");
		return -1;
	}
	while (n && proxy[n - 1] == '/')
		n--;
	if (n >= 3 && !strncmp(proxy + n - 3, "/v1", 3))
		n -= 3;
	if (n + 32 >= cap) {
		fprintf(stderr, "veil chat: --proxy URL too long\n");
		return -1;
	}
	memcpy(base, proxy, n);
	base[n] = '\0';
	return 0;
}

static int first_model(const char *base, char *out, size_t cap)
{
	char url[CHAT_URL_MAX + 32];
	struct fetch f;
	long code;
	json_t *j = NULL;
	const char *id;
	int rc = -1;

	fetch_init(&f, false);
	snprintf(url, sizeof(url), "%s/v1/models", base);
	code = do_fetch(url, NULL, &f);
	if (code != 200) {
		if (code > 0)
			print_error("GET /v1/models", code, &f);
		goto out;
	}
	j = json_loadb((const char *)f.body.data, f.body.len, 0, NULL);
	id = json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id"));
	if (!id || strlen(id) >= cap) {
		fprintf(stderr, "veil chat: the proxy lists no model\n");
		goto out;
	}
	snprintf(out, cap, "%s", id);
	rc = 0;
out:
	json_decref(j);
	fetch_free(&f);
	return rc;
}

static void print_indented(const char *indent, const char *s)
{
	if (!*indent) {
		fputs(s, stdout);
		if (!*s || s[strlen(s) - 1] != '\n')
			fputc('\n', stdout);
		return;
	}
	while (*s) {
		const char *e = strchr(s, '\n');
		int len = e ? (int)(e - s) : (int)strlen(s);

		printf("%s%.*s\n", indent, len, s);
		if (!e)
			break;
		s = e + 1;
	}
}

static bool hex_field(json_t *o, const char *key, uint8_t *out, size_t n)
{
	const char *s = json_string_value(json_object_get(o, key));
	size_t got = 0;

	if (s && !strncmp(s, "0x", 2))
		s += 2;
	return s && strlen(s) == 2 * n && veil_hex_decode(s, 2 * n, out, n, &got) == 0 &&
	       got == n;
}

/* The attested node (from the proxy's /veil/status) that answered. */
static json_t *find_node(json_t *status, const char *id)
{
	json_t *nodes = json_object_get(status, "nodes");

	for (size_t i = 0; i < json_array_size(nodes); i++) {
		json_t *n = json_array_get(nodes, i);
		const char *nid = json_string_value(json_object_get(n, "id"));

		if (nid && !strcmp(nid, id))
			return n;
	}
	return NULL;
}

int veil_cli_chat_run(const char *proxy, const char *model, const char *text,
		      int max_tokens, const char *indent)
{
	char base[CHAT_URL_MAX], url[CHAT_URL_MAX + 32], mname[256];
	struct fetch f, s;
	struct veil_buf rj = VEIL_BUF_INIT(128u << 10);
	struct veil_receipt rc = {0};
	struct veil_keyset keys = {0};
	json_t *req = NULL, *ans = NULL, *status = NULL, *node;
	char *body = NULL;
	const char *content, *tee, *tcb, *msha;
	char addr[VEIL_ETH_ADDRESS_STR_LEN], rsha[65];
	bool sim;
	long code;
	int ret = 1, r;
	size_t got = 0;

	fetch_init(&f, true);
	fetch_init(&s, false);
	if (normalize(proxy, base, sizeof(base)) < 0)
		goto out;
	if (!model || !*model) {
		if (first_model(base, mname, sizeof(mname)) < 0)
			goto out;
		model = mname;
	}
	req = json_pack("{s:s, s:[{s:s, s:s}], s:i}", "model", model, "messages", "role",
			"user", "content", text, "max_tokens", max_tokens);
	if (!req || !(body = json_dumps(req, JSON_COMPACT)))
		goto out;
	snprintf(url, sizeof(url), "%s/v1/chat/completions", base);
	code = do_fetch(url, body, &f);
	if (code != 200) {
		if (code > 0)
			print_error("POST /v1/chat/completions", code, &f);
		goto out;
	}
	ans = json_loadb((const char *)f.body.data, f.body.len, 0, NULL);
	content = json_string_value(json_object_get(
		json_object_get(json_array_get(json_object_get(ans, "choices"), 0), "message"),
		"content"));
	if (!content) {
		fprintf(stderr, "veil chat: the answer has no choices[0].message.content\n");
		goto out;
	}

	/* what the proxy says it verified; the answer is shown only once all
	 * of it checks out */
	if (strcmp(f.h.verified, "receipt")) {
		fprintf(stderr, "veil chat: NOT verified: the proxy did not say it verified the "
			"receipt (X-Veil-Verified: %s)\n", f.h.verified[0] ? f.h.verified : "absent");
		goto out;
	}
	snprintf(url, sizeof(url), "%s/veil/status", base);
	code = do_fetch(url, NULL, &s);
	if (code != 200 ||
	    !(status = json_loadb((const char *)s.body.data, s.body.len, 0, NULL))) {
		fprintf(stderr, "veil chat: NOT verified: GET /veil/status: HTTP %ld\n", code);
		goto out;
	}
	if (!(node = find_node(status, f.h.node)) ||
	    !json_is_true(json_object_get(node, "ok"))) {
		fprintf(stderr, "veil chat: NOT verified: node '%s' is not among the proxy's "
			"verified nodes\n", f.h.node);
		goto out;
	}
	tee = json_string_value(json_object_get(node, "tee"));
	tcb = json_string_value(json_object_get(node, "tcb_status"));
	msha = json_string_value(json_object_get(node, "model_sha256"));
	sim = json_is_true(json_object_get(node, "sim"));

	/* the receipt, checked here too: both signatures against the keys the
	 * node's attestation report bound */
	if (!f.h.receipt_b64.len ||
	    veil_buf_reserve(&rj, f.h.receipt_b64.len) < 0 ||
	    veil_b64_decode((const char *)f.h.receipt_b64.data, f.h.receipt_b64.len,
			    VEIL_B64_URL | VEIL_B64_NOPAD, rj.data, rj.cap, &got) < 0) {
		fprintf(stderr, "veil chat: NOT verified: no readable X-Veil-Receipt\n");
		goto out;
	}
	rj.len = got;
	if ((r = veil_receipt_parse(rj.data, rj.len, &rc)) < 0) {
		veil_cli_error("NOT verified: receipt", r);
		goto out;
	}
	if (!hex_field(node, "ed25519", keys.ed25519, 32) ||
	    !hex_field(node, "eth_address", keys.eth_address, 20)) {
		fprintf(stderr, "veil chat: NOT verified: /veil/status shows no keys for node %s\n",
			f.h.node);
		goto out;
	}
	keys.present = VEIL_KEYSET_HAS(VEIL_KEY_ED25519) | VEIL_KEYSET_HAS(VEIL_KEY_ETH_ADDRESS);
	if ((r = veil_receipt_verify(&rc, &keys)) < 0) {
		veil_cli_error("NOT verified: receipt signatures", r);
		goto out;
	}
	if (rc.has_model_sha256)
		veil_hex_encode(rc.model_sha256, 32, rsha, sizeof(rsha));
	else
		rsha[0] = '\0';
	if (!msha || !*msha || strcmp(rsha, msha) || strcmp(rc.model, model)) {
		fprintf(stderr, "veil chat: NOT verified: the receipt names model %s sha256 %s; "
			"the attested node serves %s sha256 %s\n", rc.model,
			rsha[0] ? rsha : "(none)", model, msha ? msha : "(none)");
		goto out;
	}
	veil_eth_address_format(rc.eth_address, addr);
	print_indented(indent, content);
	printf("%sverified: TEE %s%s | TCB %s | model %s sha256 %s | receipt %s signed by %s "
	       "(Ed25519 + ECDSA) verified\n",
	       indent, tee ? tee : "?", sim ? " (SIMULATED: proves nothing about hardware)" : "",
	       tcb ? tcb : "unknown", rc.model, rsha, rc.id, addr);
	ret = 0;
out:
	fflush(stdout);
	veil_receipt_free(&rc);
	veil_buf_free(&rj);
	json_decref(req);
	json_decref(ans);
	json_decref(status);
	if (body) {
		veil_wipe(body, strlen(body)); /* the prompt */
		free(body);
	}
	fetch_free(&f);
	fetch_free(&s);
	return ret;
}

int veil_cli_chat(int argc, char **argv)
{
	const char *proxy = getenv("VEIL_PROXY"), *model = NULL;
	struct veil_buf text = VEIL_BUF_SECRET_INIT(1u << 20);
	int max_tokens = 200, ret;

	if (!proxy || !*proxy)
		proxy = CHAT_DEFAULT_PROXY;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			veil_buf_free(&text);
			return 0;
		}
		if (!strcmp(a, "--")) {
			for (i++; i < argc; i++)
				if ((text.len && veil_buf_append(&text, " ", 1) < 0) ||
				    veil_buf_append_str(&text, argv[i]) < 0)
					goto toolong;
			break;
		}
		if (!strcmp(a, "--proxy") || !strcmp(a, "--model") || !strcmp(a, "--max-tokens")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "veil chat: %s needs a value\n", a);
				goto bad;
			}
			if (!strcmp(a, "--proxy")) {
				proxy = argv[++i];
			} else if (!strcmp(a, "--model")) {
				model = argv[++i];
			} else {
				char *end;
				long v = strtol(argv[++i], &end, 10);

				if (!*argv[i] || *end || v < 1 || v > 1000000) {
					fprintf(stderr, "veil chat: --max-tokens must be 1..1000000\n");
					goto bad;
				}
				max_tokens = (int)v;
			}
			continue;
		}
		if (a[0] == '-' && a[1]) {
			fprintf(stderr, "veil chat: unknown option %s\n", a);
			goto bad;
		}
		if ((text.len && veil_buf_append(&text, " ", 1) < 0) ||
		    veil_buf_append_str(&text, a) < 0)
			goto toolong;
	}
	if (!text.len) {
		fprintf(stderr, "veil chat: no TEXT given\n");
		goto bad;
	}
	ret = veil_cli_chat_run(proxy, model, (const char *)text.data, max_tokens, "");
	veil_buf_free(&text);
	return ret;
toolong:
	fprintf(stderr, "veil chat: TEXT is over 1 MiB\n");
bad:
	usage(stderr);
	veil_buf_free(&text);
	return 2;
}
