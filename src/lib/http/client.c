/* HTTP client: libcurl's multi interface driven by a libevent loop
 * (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION, as in curl's hiperfifo
 * example), streaming callbacks with pause/resume, SPKI pinning. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "veil/http.h"

#define MOD "http"

/* Easy handles kept for the next calls (curl_easy_init + cleanup cost
 * ~0.2 us more than curl_easy_reset here: small, but free to save).  A
 * handle is reset (every option, pointer and callback cleared) as soon as
 * its call ends, so nothing of a call survives into the next. */
#define SPARE_EASY 16

struct veil_http_client {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	struct veil_http_call *calls;
	CURL *spare[SPARE_EASY];
	size_t n_spare;
	bool in_action;
	bool in_timer; /* timer_event_cb runs */
};

struct veil_http_call {
	struct veil_http_call *prev, *next;
	struct veil_http_client *cl;
	CURL *easy;
	struct curl_slist *hdrs;
	struct veil_http_request rq; /* callbacks and options (no pointers kept
				      * except those documented) */
	uint8_t pin[32];
	bool has_pin, head_done, paused;
	int abort_rc;
	int status;
	struct veil_buf body;
	struct veil_buf resp_hdrs; /* "name: value\0" records of the final head */
	char errbuf[CURL_ERROR_SIZE];
	char pin_str[64];
};

struct sockinfo {
	struct event *ev;
	struct veil_http_client *cl;
	curl_socket_t fd;
	int what; /* the CURL_POLL_* the event is registered for */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- multi <-> libevent ------------------------------------------------- */

static void finish_call(struct veil_http_call *call, CURLcode res);

static void check_done(struct veil_http_client *cl)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(cl->multi, &left)) != NULL) {
		struct veil_http_call *call = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
				  (char **)&call);
		if (call)
			finish_call(call, msg->data.result);
	}
}

static void socket_action(struct veil_http_client *cl, curl_socket_t fd,
			  int flags)
{
	int running;

	cl->in_action = true;
	curl_multi_socket_action(cl->multi, fd, flags, &running);
	cl->in_action = false;
	check_done(cl);
}

static void sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct veil_http_client *cl = arg;
	int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) |
		    (what & EV_WRITE ? CURL_CSELECT_OUT : 0);

	socket_action(cl, fd, flags);
}

static void timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct veil_http_client *cl = arg;

	(void)fd;
	(void)what;
	cl->in_timer = true;
	socket_action(cl, CURL_SOCKET_TIMEOUT, 0);
	cl->in_timer = false;
}

static int multi_timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
	struct veil_http_client *cl = arg;
	struct timeval tv;

	(void)multi;
	if (timeout_ms < 0) {
		evtimer_del(cl->timer);
		return 0;
	}
	/* 0 means "now": not from here (this runs inside curl), but in this
	 * very pass of the loop, after the callback running now, rather than
	 * after one more epoll_wait (a timer of 0 would wait for the next
	 * turn, and run after that turn's I/O callbacks).  A non-persistent
	 * event made active leaves the timer heap before its callback.  Asked
	 * again from that very callback: the next turn, so that curl asking
	 * "now" over and over cannot keep the loop from its I/O. */
	if (timeout_ms == 0 && !cl->in_timer) {
		event_active(cl->timer, EV_TIMEOUT, 0);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(cl->timer, &tv);
	return 0;
}

static int multi_sock_cb(CURL *easy, curl_socket_t fd, int what, void *arg,
			 void *sockp)
{
	struct veil_http_client *cl = arg;
	struct sockinfo *si = sockp;
	short kind;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (si) {
			event_free(si->ev);
			free(si);
			curl_multi_assign(cl->multi, fd, NULL);
		}
		return 0;
	}
	kind = (short)(EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) |
		       (what & CURL_POLL_OUT ? EV_WRITE : 0));
	if (!si) {
		if (!(si = calloc(1, sizeof(*si))))
			return -1;
		if (!(si->ev = event_new(cl->base, fd, kind, sock_event_cb, cl))) {
			free(si);
			return -1;
		}
		si->cl = cl;
		si->fd = fd;
		curl_multi_assign(cl->multi, fd, si);
	} else if (si->what == what) {
		return 0; /* already waiting for that: no epoll_ctl */
	} else {
		event_del(si->ev);
		event_assign(si->ev, cl->base, fd, kind, sock_event_cb, cl);
	}
	si->what = what;
	if (event_add(si->ev, NULL) < 0)
		return -1;
	return 0;
}

int veil_http_client_new(struct event_base *base,
			 struct veil_http_client **out)
{
	struct veil_http_client *cl;

	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return veil_errf(VEIL_EINTERNAL, "curl_global_init failed");
	if (!base || !out)
		return VEIL_EINVAL;
	if (!(cl = calloc(1, sizeof(*cl))))
		return VEIL_ENOMEM;
	cl->base = base;
	cl->multi = curl_multi_init();
	cl->timer = evtimer_new(base, timer_event_cb, cl);
	if (!cl->multi || !cl->timer) {
		veil_http_client_free(cl);
		return VEIL_ENOMEM;
	}
	curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, multi_sock_cb);
	curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
	curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, multi_timer_cb);
	curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
	/* curl's default cache keeps 4x the transfers running: after a burst
	 * of streams ends, the next burst would redo TLS handshakes with the
	 * same peer.  128 idle connections (~50 KiB each) is a few MiB. */
	curl_multi_setopt(cl->multi, CURLMOPT_MAXCONNECTS, 128L);
	*out = cl;
	return 0;
}

static void call_free(struct veil_http_call *call)
{
	struct veil_http_client *cl = call->cl;

	if (call->prev)
		call->prev->next = call->next;
	else if (cl->calls == call)
		cl->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	if (call->easy) {
		curl_multi_remove_handle(cl->multi, call->easy);
		if (cl->n_spare < SPARE_EASY) {
			/* clears every option: URL, headers list, body copy,
			 * callbacks and their data, private pointer, error
			 * buffer, pin, SSL_CTX function */
			curl_easy_reset(call->easy);
			cl->spare[cl->n_spare++] = call->easy;
		} else {
			curl_easy_cleanup(call->easy);
		}
	}
	curl_slist_free_all(call->hdrs);
	veil_buf_free(&call->body);
	veil_buf_free(&call->resp_hdrs);
	free(call);
}

void veil_http_client_free(struct veil_http_client *cl)
{
	if (!cl)
		return;
	while (cl->calls)
		call_free(cl->calls);
	while (cl->n_spare)
		curl_easy_cleanup(cl->spare[--cl->n_spare]);
	if (cl->multi)
		curl_multi_cleanup(cl->multi);
	if (cl->timer)
		event_free(cl->timer);
	free(cl);
}

/* ---- callbacks from curl ----------------------------------------------- */

static int map_curl(CURLcode res)
{
	switch (res) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return VEIL_ETIMEDOUT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_CACERT_BADFILE:
		return VEIL_EBADMSG;
	case CURLE_SSL_CONNECT_ERROR:
		return VEIL_EBADMSG; /* includes a refused certificate */
	case CURLE_OUT_OF_MEMORY:
		return VEIL_ENOMEM;
	case CURLE_ABORTED_BY_CALLBACK:
		return VEIL_ECANCELED;
	default:
		return VEIL_EIO;
	}
}

static void finish_call(struct veil_http_call *call, CURLcode res)
{
	long status = 0;
	int rc = call->abort_rc ? call->abort_rc : map_curl(res);

	curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
	if (rc && !call->abort_rc)
		veil_errf(rc, "http request failed: %s",
			  call->errbuf[0] ? call->errbuf
					  : curl_easy_strerror(res));
	if (rc == 0 && !call->head_done && call->rq.on_head) {
		call->head_done = true;
		call->rq.on_head(call->rq.arg, call, (int)status);
	}
	if (call->rq.on_done)
		call->rq.on_done(call->rq.arg, rc, (int)status,
				 call->body.data ? call->body.data
						 : (const uint8_t *)"",
				 call->body.len);
	call_free(call);
}

static size_t header_cb(char *p, size_t size, size_t n, void *arg)
{
	struct veil_http_call *call = arg;
	size_t len = size * n, l = len;
	long status = 0;

	while (l && (p[l - 1] == '\n' || p[l - 1] == '\r'))
		l--;
	if (l >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		/* a new head (after 100 Continue, say): start over */
		veil_buf_reset(&call->resp_hdrs);
		return len;
	}
	if (l == 0) {
		curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 200 && !call->head_done) {
			call->head_done = true;
			call->status = (int)status;
			if (call->rq.on_head)
				call->rq.on_head(call->rq.arg, call,
						 (int)status);
		}
		return len;
	}
	if (veil_buf_append(&call->resp_hdrs, p, l) < 0 ||
	    veil_buf_append(&call->resp_hdrs, "", 1) < 0) {
		call->abort_rc = veil_errf(VEIL_ERANGE,
					   "response headers over %zu bytes",
					   call->resp_hdrs.max);
		return 0;
	}
	return len;
}

static size_t write_cb(char *p, size_t size, size_t n, void *arg)
{
	struct veil_http_call *call = arg;
	size_t len = size * n;
	int rc;

	if (call->rq.on_data) {
		rc = call->rq.on_data(call->rq.arg, call, (const uint8_t *)p,
				      len);
		if (rc == VEIL_HTTP_PAUSE) {
			call->paused = true;
			return CURL_WRITEFUNC_PAUSE;
		}
		if (rc < 0) {
			call->abort_rc = rc;
			return 0;
		}
		return len;
	}
	if (veil_buf_append(&call->body, p, len) < 0) {
		call->abort_rc = veil_errf(VEIL_ERANGE,
					   "response body over %zu bytes",
					   call->body.max);
		return 0;
	}
	return len;
}

/* The handshake-time check: replaces chain verification when a pin is set
 * (the pin is the identity), then runs the caller's own check. */
static int cert_verify_cb(X509_STORE_CTX *xs, void *arg)
{
	struct veil_http_call *call = arg;
	X509 *leaf = X509_STORE_CTX_get0_cert(xs);
	uint8_t h[32];

	if (!leaf)
		return 0;
	if (call->has_pin) {
		if (veil_http_spki_sha256_cert(leaf, h) < 0 ||
		    CRYPTO_memcmp(h, call->pin, 32) != 0) {
			X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
			return 0;
		}
	} else if (X509_verify_cert(xs) != 1) {
		return 0;
	}
	if (call->rq.verify && call->rq.verify(call->rq.arg, leaf) != 1) {
		X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	return 1;
}

static CURLcode ssl_ctx_cb(CURL *easy, void *sslctx, void *arg)
{
	struct veil_http_call *call = arg;
	SSL_CTX *ctx = sslctx;

	(void)easy;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* a renegotiation would re-run the verify callback later, with a
	 * connection that may outlive this call */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	if (call->has_pin || call->rq.verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_cert_verify_callback(ctx, cert_verify_cb, call);
	}
	return CURLE_OK;
}

/* ---- starting and steering calls --------------------------------------- */

int veil_http_client_start(struct veil_http_client *cl,
			   const struct veil_http_request *rq,
			   struct veil_http_call **out)
{
	struct veil_http_call *call;
	const char *method;
	size_t i;
	int rc = VEIL_ENOMEM;

	if (!cl || !rq || !rq->url || (rq->body_len && !rq->body))
		return veil_errf(VEIL_EINVAL, "http request: bad arguments");
	if (strncasecmp(rq->url, "http://", 7) != 0 &&
	    strncasecmp(rq->url, "https://", 8) != 0)
		return veil_errf(VEIL_EINVAL, "http request: only http(s) URLs");
	if (!(call = calloc(1, sizeof(*call))))
		return VEIL_ENOMEM;
	call->cl = cl;
	call->rq = *rq;
	call->rq.url = NULL; /* not kept: curl copies strings */
	call->rq.headers = NULL;
	call->rq.body = NULL;
	call->rq.pin_spki_sha256 = NULL;
	call->rq.ca_file = NULL;
	call->rq.method = NULL;
	call->body.max = rq->max_response ? rq->max_response : 16u << 20;
	call->resp_hdrs.max = rq->max_response_headers
				      ? rq->max_response_headers
				      : 64u << 10;
	if (rq->pin_spki_sha256) {
		char b64[48];

		memcpy(call->pin, rq->pin_spki_sha256, 32);
		call->has_pin = true;
		veil_b64_encode(call->pin, 32, 0, b64, sizeof(b64));
		snprintf(call->pin_str, sizeof(call->pin_str), "sha256//%s",
			 b64);
	}
	if (cl->n_spare)
		call->easy = cl->spare[--cl->n_spare]; /* reset when put back */
	else if (!(call->easy = curl_easy_init()))
		goto fail;
	for (i = 0; rq->headers && rq->headers[i]; i++) {
		struct curl_slist *n = curl_slist_append(call->hdrs,
							 rq->headers[i]);
		if (!n)
			goto fail;
		call->hdrs = n;
	}
	method = rq->method ? rq->method : rq->body ? "POST" : "GET";
	CURL *e = call->easy;
	curl_easy_setopt(e, CURLOPT_URL, rq->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, call);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
			 (long)(rq->timeout_ms ? rq->timeout_ms : 60000));
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(rq->connect_timeout_ms ? rq->connect_timeout_ms
						       : 10000));
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL);
	if (call->hdrs)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->hdrs);
	if (strcmp(method, "GET") != 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	if (rq->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)rq->body_len);
		curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, rq->body);
	}
	/* No TLS session resumption: a resumed handshake carries no
	 * certificate, so the pin and verify hooks (cert_verify_cb) would not
	 * run on that new connection.  Each new connection is checked whole. */
	curl_easy_setopt(e, CURLOPT_SSL_SESSIONID_CACHE, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
	curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, call);
	if (call->has_pin) {
		/* The handshake callback decides; curl's CA and host checks
		 * would refuse a self-signed attested key.  The pin is also
		 * handed to curl, so connection and session reuse only ever
		 * match a connection made under the same pin. */
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
		curl_easy_setopt(e, CURLOPT_PINNEDPUBLICKEY, call->pin_str);
	} else if (rq->ca_file) {
		curl_easy_setopt(e, CURLOPT_CAINFO, rq->ca_file);
	}
	if (rq->verify) /* a connection checked by another hook: not reused */
		curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
	if (curl_multi_add_handle(cl->multi, e) != CURLM_OK) {
		rc = veil_errf(VEIL_EINTERNAL, "curl_multi_add_handle failed");
		goto fail;
	}
	call->next = cl->calls;
	if (cl->calls)
		cl->calls->prev = call;
	cl->calls = call;
	if (out)
		*out = call;
	return 0;
fail:
	if (call->easy)
		curl_easy_cleanup(call->easy);
	call->easy = NULL;
	curl_slist_free_all(call->hdrs);
	free(call);
	return rc;
}

void veil_http_call_pause(struct veil_http_call *call)
{
	if (call && !call->paused) {
		call->paused = true;
		curl_easy_pause(call->easy, CURLPAUSE_RECV);
	}
}

void veil_http_call_resume(struct veil_http_call *call)
{
	if (call && call->paused) {
		call->paused = false;
		/* may deliver buffered data to on_data right here */
		curl_easy_pause(call->easy, CURLPAUSE_CONT);
	}
}

void veil_http_call_cancel(struct veil_http_call *call)
{
	if (call)
		call_free(call);
}

const char *veil_http_call_header(struct veil_http_call *call,
				  const char *name)
{
	const char *p = (const char *)call->resp_hdrs.data;
	const char *end = p + call->resp_hdrs.len;
	size_t nl = strlen(name);

	while (p && p < end) {
		size_t l = strlen(p);

		if (l > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
			const char *v = p + nl + 1;

			while (*v == ' ' || *v == '\t')
				v++;
			return v;
		}
		p += l + 1;
	}
	return NULL;
}

/* ---- synchronous helper ------------------------------------------------ */

struct fetch_state {
	struct event_base *base;
	struct veil_buf *body;
	int rc, status;
	bool done;
};

static void fetch_done(void *arg, int rc, int status, const uint8_t *body,
		       size_t len)
{
	struct fetch_state *fs = arg;

	fs->rc = rc;
	fs->status = status;
	fs->done = true;
	if (rc == 0 && fs->body && len &&
	    (fs->rc = veil_buf_append(fs->body, body, len)) < 0)
		veil_errf(fs->rc, "response body over %zu bytes",
			  fs->body->max);
	event_base_loopbreak(fs->base);
}

int veil_http_fetch(const struct veil_http_request *rq, int *status,
		    struct veil_buf *body)
{
	struct fetch_state fs = {0};
	struct veil_http_request r;
	struct veil_http_client *cl = NULL;
	int rc;

	if (!rq)
		return VEIL_EINVAL;
	r = *rq;
	r.on_head = NULL;
	r.on_data = NULL;
	r.on_done = fetch_done;
	r.arg = &fs;
	if (body && body->max && !r.max_response)
		r.max_response = body->max > body->len ? body->max - body->len
						       : 1;
	fs.body = body;
	if (!(fs.base = event_base_new()))
		return VEIL_ENOMEM;
	if ((rc = veil_http_client_new(fs.base, &cl)) < 0)
		goto out;
	if ((rc = veil_http_client_start(cl, &r, NULL)) < 0)
		goto out;
	while (!fs.done)
		if (event_base_dispatch(fs.base) < 0)
			break;
	rc = fs.done ? fs.rc : VEIL_EINTERNAL;
	if (rc == 0 && status)
		*status = fs.status;
out:
	veil_http_client_free(cl);
	event_base_free(fs.base);
	return rc;
}
