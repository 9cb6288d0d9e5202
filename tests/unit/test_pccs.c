/* Unit tests of collateral fetching and caching (include/veil/pccs.h).
 *
 * A real HTTP server on 127.0.0.1 (ephemeral port, a plain socket server in
 * a thread) serves the pieces of one real collateral file,
 * $VEIL_SHARED/vectors/attest/tdx/dcap-qvl/tdx_quote_collateral.json (default
 * ../shared), split into Intel PCS v4-shaped responses: JSON bodies with the
 * signed value and its signature, URL-encoded issuer chains in headers, DER
 * CRLs.  Nothing here reaches the network. */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "veil/attester.h"
#include "veil/base.h"
#include "veil/keyset.h"
#include "veil/pccs.h"
#include "veil/tdx.h"
#include "veil/x509.h"

#define COLL_REL "attest/tdx/dcap-qvl/tdx_quote_collateral.json"
#define QUOTE_REL "attest/tdx/dcap-qvl/tdx_quote"

static const uint8_t FMSPC[6] = {0xb0, 0xc0, 0x6f, 0x00, 0x00, 0x00};

/* ---- fixture files ---------------------------------------------------- */

static const char *shared_dir(void)
{
	const char *s = getenv("VEIL_SHARED");

	return s && *s ? s : "../shared";
}

static bool vec(const char *rel, char *out, size_t cap)
{
	FILE *f;

	snprintf(out, cap, "%s/vectors/%s", shared_dir(), rel);
	f = fopen(out, "rb");
	if (!f)
		return false;
	fclose(f);
	return true;
}

static int64_t t_iso(const char *s)
{
	int64_t t = 0;

	assert_int_equal(veil_x509_iso8601_parse(s, strlen(s), &t), 0);
	return t;
}

/* ---- the server ---------------------------------------------------------- */

enum fault {
	F_NONE = 0,
	F_STATUS,    /* reply `status` */
	F_TRUNCATE,  /* Content-Length larger than what is sent, then close */
	F_OVERSIZE,  /* a 2 MiB body */
	F_NO_HEADER, /* leave out the issuer-chain header */
};

struct route {
	const char *path;        /* without the query */
	char *body;
	size_t body_len;
	const char *hname;       /* issuer chain header, NULL for none */
	char *hval;              /* URL-encoded */
	enum fault fault;
	int status;
};

enum { R_TCB, R_QE, R_PCKCRL, R_ROOTCRL, R_COUNT };

struct server {
	int lfd;
	int stop[2];
	uint16_t port;
	pthread_t th;
	pthread_mutex_t mu;
	struct route routes[R_COUNT];
	unsigned requests;
	char last_target[512];
};

static struct server g_srv;
static json_t *g_coll;      /* the original collateral file */
static char g_coll_path[1024];
static char g_quote_path[1024];

static char *url_encode(const char *s)
{
	size_t n = strlen(s);
	char *o = malloc(3 * n + 1), *q = o;

	assert_non_null(o);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || strchr("-_.~", c))
			*q++ = (char)c;
		else
			q += sprintf(q, "%%%02X", c);
	}
	*q = 0;
	return o;
}

static char *dupstr(const char *s)
{
	char *d = strdup(s);

	assert_non_null(d);
	return d;
}

static void hex_body(struct route *r, const char *hex)
{
	size_t n = strlen(hex), ol;

	r->body = malloc(n / 2 + 1);
	assert_non_null(r->body);
	assert_int_equal(veil_hex_decode(hex, n, (uint8_t *)r->body, n / 2 + 1, &ol), 0);
	r->body_len = ol;
}

static const char *cget(const char *k)
{
	const char *s = json_string_value(json_object_get(g_coll, k));

	assert_non_null(s);
	return s;
}

static void signed_route(struct route *r, const char *path, const char *key,
			 const char *raw, const char *sig, const char *hname,
			 const char *chain, bool odd_layout)
{
	size_t n = strlen(raw) + strlen(sig) + 64;

	r->path = path;
	r->body = malloc(n);
	assert_non_null(r->body);
	/* odd_layout: signature first, whitespace around the value (the raw
	 * bytes must still be cut out exactly). */
	if (odd_layout)
		snprintf(r->body, n, " {\"signature\" : \"%s\" ,\n \"%s\"\t:  %s \n}\n",
			 sig, key, raw);
	else
		snprintf(r->body, n, "{\"%s\":%s,\"signature\":\"%s\"}", key, raw, sig);
	r->body_len = strlen(r->body);
	r->hname = hname;
	r->hval = url_encode(chain);
}

static void routes_free(void)
{
	for (size_t i = 0; i < R_COUNT; i++) {
		free(g_srv.routes[i].body);
		free(g_srv.routes[i].hval);
	}
	memset(g_srv.routes, 0, sizeof(g_srv.routes));
}

/* (Re)builds the four PCS-shaped responses from the collateral file. */
static void routes_setup(bool odd_layout)
{
	struct route *r = g_srv.routes;

	pthread_mutex_lock(&g_srv.mu);
	routes_free();
	signed_route(&r[R_TCB], "/tdx/certification/v4/tcb", "tcbInfo",
		     cget("tcb_info"), cget("tcb_info_signature"),
		     "TCB-Info-Issuer-Chain", cget("tcb_info_issuer_chain"),
		     odd_layout);
	signed_route(&r[R_QE], "/tdx/certification/v4/qe/identity",
		     "enclaveIdentity", cget("qe_identity"),
		     cget("qe_identity_signature"),
		     "SGX-Enclave-Identity-Issuer-Chain",
		     cget("qe_identity_issuer_chain"), odd_layout);
	r[R_PCKCRL].path = "/sgx/certification/v4/pckcrl";
	hex_body(&r[R_PCKCRL], cget("pck_crl"));
	r[R_PCKCRL].hname = "SGX-PCK-CRL-Issuer-Chain";
	r[R_PCKCRL].hval = url_encode(cget("pck_crl_issuer_chain"));
	r[R_ROOTCRL].path = "/sgx/certification/v4/rootcacrl";
	if (odd_layout) { /* PCCS v3 style: hex text */
		r[R_ROOTCRL].body = dupstr(cget("root_ca_crl"));
		r[R_ROOTCRL].body_len = strlen(r[R_ROOTCRL].body);
	} else {
		hex_body(&r[R_ROOTCRL], cget("root_ca_crl"));
	}
	g_srv.requests = 0;
	pthread_mutex_unlock(&g_srv.mu);
}

static void set_fault(int route, enum fault f, int status)
{
	pthread_mutex_lock(&g_srv.mu);
	for (size_t i = 0; i < R_COUNT; i++)
		g_srv.routes[i].fault = F_NONE;
	if (route >= 0) {
		g_srv.routes[route].fault = f;
		g_srv.routes[route].status = status;
	}
	pthread_mutex_unlock(&g_srv.mu);
}

static unsigned requests(void)
{
	unsigned n;

	pthread_mutex_lock(&g_srv.mu);
	n = g_srv.requests;
	pthread_mutex_unlock(&g_srv.mu);
	return n;
}

static void send_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		c += w;
		n -= (size_t)w;
	}
}

static void serve_one(int fd)
{
	char req[8192], path[512], head[65536];
	size_t got = 0;
	struct route *r = NULL;
	char *q;
	int hl;

	for (;;) {
		ssize_t k;

		if (got + 1 >= sizeof(req))
			return;
		k = recv(fd, req + got, sizeof(req) - 1 - got, 0);
		if (k <= 0)
			return;
		got += (size_t)k;
		req[got] = 0;
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	if (sscanf(req, "GET %511s HTTP/1.1", path) != 1)
		return;
	pthread_mutex_lock(&g_srv.mu);
	g_srv.requests++;
	snprintf(g_srv.last_target, sizeof(g_srv.last_target), "%s", path);
	if ((q = strchr(path, '?')))
		*q = 0;
	for (size_t i = 0; i < R_COUNT; i++)
		if (!strcmp(g_srv.routes[i].path, path))
			r = &g_srv.routes[i];
	if (!r) {
		static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
					 "Connection: close\r\n\r\n";
		send_all(fd, nf, sizeof(nf) - 1);
	} else if (r->fault == F_STATUS) {
		hl = snprintf(head, sizeof(head),
			      "HTTP/1.1 %d Oops\r\nContent-Length: 0\r\n"
			      "Error-Code: TestError\r\nError-Message: injected failure\r\n"
			      "Connection: close\r\n\r\n", r->status);
		send_all(fd, head, (size_t)hl);
	} else if (r->fault == F_OVERSIZE) {
		size_t n = 2u << 20;
		char *big = malloc(n);

		if (big) {
			memset(big, ' ', n);
			hl = snprintf(head, sizeof(head),
				      "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
				      "%s: %s\r\nConnection: close\r\n\r\n", n,
				      r->hname ? r->hname : "X-None", r->hval ? r->hval : "");
			send_all(fd, head, (size_t)hl);
			send_all(fd, big, n);
			free(big);
		}
	} else {
		bool trunc = r->fault == F_TRUNCATE;
		bool with_h = r->hname && r->fault != F_NO_HEADER;

		hl = snprintf(head, sizeof(head),
			      "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
			      "Content-Type: application/octet-stream\r\n"
			      "%s%s%s%sConnection: close\r\n\r\n", r->body_len,
			      with_h ? r->hname : "", with_h ? ": " : "",
			      with_h ? r->hval : "", with_h ? "\r\n" : "");
		send_all(fd, head, (size_t)hl);
		send_all(fd, r->body, trunc ? r->body_len / 2 : r->body_len);
	}
	pthread_mutex_unlock(&g_srv.mu);
}

static void *server_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[2] = {{g_srv.lfd, POLLIN, 0}, {g_srv.stop[0], POLLIN, 0}};
		int fd;

		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			return NULL;
		if (!(p[0].revents & POLLIN))
			continue;
		fd = accept(g_srv.lfd, NULL, NULL);
		if (fd < 0)
			continue;
		serve_one(fd);
		shutdown(fd, SHUT_WR);
		close(fd);
	}
}

/* ---- fixtures ------------------------------------------------------------- */

static int group_setup(void **state)
{
	struct sockaddr_in a = {0};
	socklen_t al = sizeof(a);
	json_error_t je;

	(void)state;
	if (!vec(COLL_REL, g_coll_path, sizeof(g_coll_path)) ||
	    !vec(QUOTE_REL, g_quote_path, sizeof(g_quote_path))) {
		fprintf(stderr, "test_pccs: %s not found (set VEIL_SHARED)\n",
			g_coll_path);
		return 0; /* each test skips */
	}
	g_coll = json_load_file(g_coll_path, 0, &je);
	if (!g_coll)
		return -1;
	pthread_mutex_init(&g_srv.mu, NULL);
	g_srv.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (g_srv.lfd < 0 || bind(g_srv.lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(g_srv.lfd, 16) < 0 ||
	    getsockname(g_srv.lfd, (struct sockaddr *)&a, &al) < 0 ||
	    pipe(g_srv.stop) < 0)
		return -1;
	g_srv.port = ntohs(a.sin_port);
	if (pthread_create(&g_srv.th, NULL, server_main, NULL))
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (!g_coll)
		return 0;
	if (write(g_srv.stop[1], "x", 1) == 1)
		pthread_join(g_srv.th, NULL);
	close(g_srv.lfd);
	close(g_srv.stop[0]);
	close(g_srv.stop[1]);
	routes_free();
	json_decref(g_coll);
	g_coll = NULL;
	return 0;
}

struct ctx {
	char dir[256];
	char base[64];
	struct veil_pccs_opts o;
};

static struct ctx g_ctx;

static int test_setup(void **state)
{
	(void)state;
	if (!g_coll)
		return 0;
	routes_setup(false);
	memset(&g_ctx, 0, sizeof(g_ctx));
	snprintf(g_ctx.dir, sizeof(g_ctx.dir), "/tmp/veil-pccs-test.XXXXXX");
	if (!mkdtemp(g_ctx.dir))
		return -1;
	snprintf(g_ctx.base, sizeof(g_ctx.base), "http://127.0.0.1:%u", g_srv.port);
	g_ctx.o.base_url = g_ctx.base;
	g_ctx.o.cache_dir = g_ctx.dir;
	g_ctx.o.now = t_iso("2025-07-01T00:00:00Z");
	g_ctx.o.timeout_ms = 5000;
	return 0;
}

static int test_teardown(void **state)
{
	DIR *d;
	struct dirent *e;
	char p[600];

	(void)state;
	if (!g_coll)
		return 0;
	if ((d = opendir(g_ctx.dir))) {
		while ((e = readdir(d)))
			if (e->d_name[0] != '.') {
				snprintf(p, sizeof(p), "%s/%s", g_ctx.dir, e->d_name);
				unlink(p);
			}
		closedir(d);
	}
	rmdir(g_ctx.dir);
	return 0;
}

#define NEED_VECTORS()                                                        \
	do {                                                                  \
		if (!g_coll)                                                  \
			skip();                                               \
	} while (0)

static size_t dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void read_file(const char *path, struct veil_buf *b)
{
	veil_buf_reset(b);
	assert_int_equal(veil_buf_read_file(b, path), 0);
}

static void cache_path(char *out, size_t cap)
{
	assert_int_equal(veil_pccs_cache_path(&g_ctx.o, FMSPC, "platform",
					      VEIL_PCCS_TDX, out, cap), 0);
}

/* Verifies the quote with collateral bytes; returns the status string. */
static void verify_with(const uint8_t *p, size_t n, const char *at,
			struct veil_tdx_verdict *v)
{
	struct veil_tdx_collateral *c = NULL;
	uint8_t *q = NULL;
	size_t qn = 0;

	if (veil_tdx_collateral_parse(p, n, &c) != 0)
		fail_msg("collateral parse: %s", veil_err_detail());
	assert_int_equal(veil_tdx_quote_load(g_quote_path, &q, &qn), 0);
	veil_tdx_verify(q, qn, c, t_iso(at), NULL, 0, v);
	free(q);
	veil_tdx_collateral_free(c);
}

static void fetch_ok(struct veil_buf *out)
{
	int rc = veil_pccs_fetch(&g_ctx.o, FMSPC, "platform", VEIL_PCCS_TDX, out);

	if (rc != 0)
		fail_msg("veil_pccs_fetch: %s: %s", veil_strerror(rc), veil_err_detail());
}

/* ---- tests --------------------------------------------------------------- */

static void test_fetch_assembles_collateral_that_verifies_uptodate(void **state)
{
	struct veil_buf out = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	struct veil_buf orig = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	struct veil_tdx_verdict v1, v2;
	json_error_t je;
	json_t *j;
	const char *k;
	json_t *val;

	(void)state;
	NEED_VECTORS();
	fetch_ok(&out);
	assert_int_equal(requests(), 4);

	/* Every field the verifier reads is exactly the original's. */
	j = json_loadb((const char *)out.data, out.len, 0, &je);
	assert_non_null(j);
	json_object_foreach(g_coll, k, val)
		if (!json_equal(json_object_get(j, k), val))
			fail_msg("field %s differs from the original file", k);
	json_decref(j);

	verify_with(out.data, out.len, "2025-07-01T00:00:00Z", &v1);
	read_file(g_coll_path, &orig);
	verify_with(orig.data, orig.len, "2025-07-01T00:00:00Z", &v2);
	assert_true(v1.ok);
	assert_string_equal(v1.status, "UpToDate");
	assert_true(v2.ok);
	assert_string_equal(v1.status, v2.status);
	assert_int_equal(v1.n_advisories, v2.n_advisories);
	veil_buf_free(&out);
	veil_buf_free(&orig);
}

static void test_fetch_asks_for_fmspc_and_ca_in_the_url(void **state)
{
	struct veil_buf out = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	char last[512];

	(void)state;
	NEED_VECTORS();
	g_ctx.o.cache_dir = NULL;
	/* The root CA CRL is fetched last; check the TCB request by making
	 * it the only one. */
	set_fault(R_QE, F_STATUS, 500);
	assert_int_not_equal(veil_pccs_fetch(&g_ctx.o, FMSPC, "platform",
					     VEIL_PCCS_TDX, &out), 0);
	assert_int_equal(requests(), 2);
	set_fault(R_PCKCRL, F_STATUS, 500);
	assert_int_not_equal(veil_pccs_fetch(&g_ctx.o, FMSPC, "platform",
					     VEIL_PCCS_TDX, &out), 0);
	pthread_mutex_lock(&g_srv.mu);
	snprintf(last, sizeof(last), "%s", g_srv.last_target);
	pthread_mutex_unlock(&g_srv.mu);
	assert_string_equal(last, "/sgx/certification/v4/pckcrl?ca=platform&encoding=der");
	set_fault(-1, F_NONE, 0);
	fetch_ok(&out);
	pthread_mutex_lock(&g_srv.mu);
	snprintf(last, sizeof(last), "%s", g_srv.last_target);
	pthread_mutex_unlock(&g_srv.mu);
	assert_string_equal(last, "/sgx/certification/v4/rootcacrl");
	veil_buf_free(&out);
}

static void test_raw_tcbinfo_bytes_preserved_in_odd_layout(void **state)
{
	struct veil_buf out = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	struct veil_tdx_verdict v;
	json_error_t je;
	json_t *j;

	(void)state;
	NEED_VECTORS();
	routes_setup(true); /* signature first, whitespace, hex root CRL */
	fetch_ok(&out);
	j = json_loadb((const char *)out.data, out.len, 0, &je);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "tcb_info")),
			    cget("tcb_info"));
	assert_string_equal(json_string_value(json_object_get(j, "qe_identity")),
			    cget("qe_identity"));
	assert_string_equal(json_string_value(json_object_get(j, "root_ca_crl")),
			    cget("root_ca_crl"));
	json_decref(j);
	verify_with(out.data, out.len, "2025-07-01T00:00:00Z", &v);
	assert_true(v.ok);
	assert_string_equal(v.status, "UpToDate");
	veil_buf_free(&out);
}

static void test_second_fetch_is_served_from_cache(void **state)
{
	struct veil_buf a = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	struct veil_buf b = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	struct veil_tdx_collateral *c = NULL;
	char path[600];

	(void)state;
	NEED_VECTORS();
	fetch_ok(&a);
	assert_int_equal(requests(), 4);
	fetch_ok(&b);
	assert_int_equal(requests(), 4);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);

	/* The cache file is the dcap-qvl layout (what --collateral reads),
	 * and the only file in the directory (no temporary left). */
	cache_path(path, sizeof(path));
	assert_non_null(strstr(path, "/tdx-b0c06f000000-platform.json"));
	assert_int_equal(veil_tdx_collateral_load(path, &c), 0);
	veil_tdx_collateral_free(c);
	assert_int_equal(dir_entries(g_ctx.dir), 1);

	/* cache_only serves it without the server. */
	g_ctx.o.cache_only = true;
	veil_buf_reset(&b);
	fetch_ok(&b);
	assert_int_equal(requests(), 4);
	veil_buf_free(&a);
	veil_buf_free(&b);
}

static void test_stale_cache_is_refetched(void **state)
{
	struct veil_buf a = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	char path[600];
	int64_t nu = 0;
	struct stat st;

	(void)state;
	NEED_VECTORS();
	fetch_ok(&a);
	assert_int_equal(requests(), 4);
	assert_int_equal(veil_pccs_collateral_next_update(a.data, a.len, &nu), 0);
	/* The earliest nextUpdate of this collateral: TCB info, 2025-07-19. */
	assert_true(nu > g_ctx.o.now);
	assert_true(nu <= t_iso("2025-07-19T10:16:03Z"));

	/* A second before it: still cached.  At it: refetched. */
	g_ctx.o.now = nu - 1;
	fetch_ok(&a);
	assert_int_equal(requests(), 4);

	/* Make the cache file recognisable, to see it rewritten. */
	cache_path(path, sizeof(path));
	assert_int_equal(truncate(path, 10), 0);
	g_ctx.o.now = t_iso("2025-07-01T00:00:00Z");
	fetch_ok(&a); /* unusable (truncated) cache: refetched */
	assert_int_equal(requests(), 8);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size > 10);

	g_ctx.o.now = nu;
	fetch_ok(&a);
	assert_int_equal(requests(), 12);
	g_ctx.o.cache_only = true;
	assert_int_equal(veil_pccs_fetch(&g_ctx.o, FMSPC, "platform", VEIL_PCCS_TDX, &a),
			 VEIL_EAGAIN);
	veil_buf_free(&a);
}

struct fault_case {
	int route;
	enum fault f;
	int status;
	int rc;
	const char *detail1, *detail2;
};

static void test_server_errors_are_clear_and_leave_cache_untouched(void **state)
{
	static const struct fault_case cases[] = {
		{R_TCB, F_STATUS, 404, VEIL_ENOENT, "/tdx/certification/v4/tcb?fmspc=B0C06F000000", "HTTP 404"},
		{R_QE, F_STATUS, 500, VEIL_EIO, "/tdx/certification/v4/qe/identity", "HTTP 500"},
		{R_ROOTCRL, F_STATUS, 503, VEIL_EIO, "/sgx/certification/v4/rootcacrl", "injected failure"},
		{R_PCKCRL, F_TRUNCATE, 0, VEIL_EIO, "/sgx/certification/v4/pckcrl", "partial"},
		{R_TCB, F_TRUNCATE, 0, VEIL_EIO, "/tdx/certification/v4/tcb", "partial"},
		{R_TCB, F_OVERSIZE, 0, VEIL_ERANGE, "/tdx/certification/v4/tcb", "over 1048576 bytes"},
		{R_QE, F_NO_HEADER, 0, VEIL_EFORMAT, "qe/identity", "SGX-Enclave-Identity-Issuer-Chain"},
		{R_TCB, F_NO_HEADER, 0, VEIL_EFORMAT, "/tdx/certification/v4/tcb", "TCB-Info-Issuer-Chain"},
		{R_PCKCRL, F_NO_HEADER, 0, VEIL_EFORMAT, "pckcrl", "SGX-PCK-CRL-Issuer-Chain"},
	};
	struct veil_buf before = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	struct veil_buf now = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	struct veil_buf out = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	char path[600];
	int64_t nu = 0;

	(void)state;
	NEED_VECTORS();
	fetch_ok(&out);
	cache_path(path, sizeof(path));
	read_file(path, &before);
	assert_int_equal(veil_pccs_collateral_next_update(before.data, before.len, &nu), 0);
	veil_buf_reset(&out);
	g_ctx.o.now = nu + 1; /* stale: every fetch goes to the server */

	for (size_t i = 0; i < VEIL_ARRAY_LEN(cases); i++) {
		const struct fault_case *fc = &cases[i];
		unsigned n0 = requests();
		int rc;

		set_fault(fc->route, fc->f, fc->status);
		rc = veil_pccs_fetch(&g_ctx.o, FMSPC, "platform", VEIL_PCCS_TDX, &out);
		if (rc != fc->rc)
			fail_msg("case %zu: rc %d (%s), want %d", i, rc,
				 veil_err_detail(), fc->rc);
		assert_true(requests() > n0);
		if (!strstr(veil_err_detail(), fc->detail1) ||
		    !strstr(veil_err_detail(), fc->detail2) ||
		    !strstr(veil_err_detail(), g_ctx.base))
			fail_msg("case %zu: detail \"%s\" lacks \"%s\"/\"%s\"", i,
				 veil_err_detail(), fc->detail1, fc->detail2);
		assert_int_equal(out.len, 0);
		read_file(path, &now);
		assert_int_equal(now.len, before.len);
		assert_memory_equal(now.data, before.data, before.len);
		assert_int_equal(dir_entries(g_ctx.dir), 1);
	}
	set_fault(-1, F_NONE, 0);
	veil_buf_free(&before);
	veil_buf_free(&now);
	veil_buf_free(&out);
}

static void test_smaller_response_cap_is_enforced(void **state)
{
	struct veil_buf out = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);

	(void)state;
	NEED_VECTORS();
	g_ctx.o.max_response = 1024; /* the TCB info body is ~3 KB */
	assert_int_equal(veil_pccs_fetch(&g_ctx.o, FMSPC, "platform", VEIL_PCCS_TDX, &out),
			 VEIL_ERANGE);
	assert_non_null(strstr(veil_err_detail(), "over 1024 bytes"));
	assert_int_equal(out.len, 0);
	assert_int_equal(dir_entries(g_ctx.dir), 0);
	veil_buf_free(&out);
}

static void test_wrong_fmspc_in_tcbinfo_is_rejected(void **state)
{
	static const uint8_t other[6] = {0x00, 0x90, 0x6e, 0xd5, 0x00, 0x00};
	struct veil_buf out = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);

	(void)state;
	NEED_VECTORS();
	/* The test server answers every FMSPC with B0C06F000000's TCB info. */
	assert_int_equal(veil_pccs_fetch(&g_ctx.o, other, "platform", VEIL_PCCS_TDX, &out),
			 VEIL_EFORMAT);
	assert_non_null(strstr(veil_err_detail(), "fmspc"));
	assert_int_equal(dir_entries(g_ctx.dir), 0);
	veil_buf_free(&out);
}

static void test_quote_target_then_fetch_verifies(void **state)
{
	struct veil_buf out = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	struct veil_tdx_verdict v;
	enum veil_pccs_tee tee = VEIL_PCCS_SGX;
	const char *ca = NULL;
	uint8_t fm[6] = {0}, *q = NULL;
	size_t qn = 0;

	(void)state;
	NEED_VECTORS();
	/* The CLI flow: what to fetch comes from the quote's PCK leaf. */
	assert_int_equal(veil_tdx_quote_load(g_quote_path, &q, &qn), 0);
	assert_int_equal(veil_pccs_quote_target(q, qn, fm, &ca, &tee), 0);
	assert_memory_equal(fm, FMSPC, 6);
	assert_string_equal(ca, "platform");
	assert_int_equal(tee, VEIL_PCCS_TDX);
	/* A truncated quote is refused. */
	assert_int_equal(veil_pccs_quote_target(q, 100, fm, &ca, &tee), VEIL_EFORMAT);
	free(q);
	assert_int_equal(veil_pccs_fetch(&g_ctx.o, fm, ca, tee, &out), 0);
	verify_with(out.data, out.len, "2025-07-01T00:00:00Z", &v);
	assert_true(v.ok);
	assert_string_equal(v.status, "UpToDate");
	veil_buf_free(&out);
}

/* A PCK chain that does not parse: the detail is the prefix once, then the
 * parser's own detail, whole (veil_errf must not read the buffer it writes:
 * formatting veil_err_detail() into itself repeated or garbled it). */
static void test_quote_target_bad_pck_chain_detail_is_whole(void **state)
{
	struct veil_tdx_quote q;
	STACK_OF(X509) *chain = NULL;
	enum veil_pccs_tee tee;
	const char *ca = NULL;
	uint8_t fm[6], *qb = NULL, *at;
	size_t qn = 0;
	char inner[512], want[600];

	(void)state;
	NEED_VECTORS();
	assert_int_equal(veil_tdx_quote_load(g_quote_path, &qb, &qn), 0);
	assert_int_equal(veil_tdx_quote_parse(qb, qn, &q), 0);
	assert_int_equal(q.pck_cert_type, 5);
	/* "BEGIN CERTIFICATE" -> "BEGIN XERTIFICATE" in the quote's chain */
	at = memmem(q.pck_data, q.pck_data_len, "BEGIN CERTIFICATE", 17);
	assert_non_null(at);
	at[6] = 'X';
	assert_int_equal(veil_tdx_quote_parse(qb, qn, &q), 0);
	assert_true(veil_x509_pem_chain_parse(q.pck_data, q.pck_data_len, &chain) < 0);
	snprintf(inner, sizeof(inner), "%s", veil_err_detail());
	assert_true(strlen(inner) > 10);
	snprintf(want, sizeof(want), "quote: PCK chain: %s", inner);
	assert_true(veil_pccs_quote_target(qb, qn, fm, &ca, &tee) < 0);
	assert_string_equal(veil_err_detail(), want);
	free(qb);
}

/* The sim TEE's quotes name its own PCK CA ("veil SIMULATED SGX PCK
 * Platform CA"): what to fetch is found as for Intel's, the sim's FMSPC
 * (the one in its TCB info) and the platform CA. */
static void test_quote_target_takes_the_sim_pck_issuer(void **state)
{
	struct veil_attester_opts ao = {0};
	struct veil_attester *a = NULL;
	struct veil_keyset k = {0};
	uint8_t nonce[32] = {1}, ks[VEIL_KEYSET_MAX], fm[6], *q = NULL, tfm[6];
	const char *qhex, *ca = NULL, *tfmhex;
	enum veil_pccs_tee tee = VEIL_PCCS_SGX;
	json_t *r = NULL, *ti;
	size_t qn = 0, got = 0, kn = 0;

	(void)state;
	ao.tee = "sim";
	ao.no_gpu = true;
	memset(k.ed25519, 7, sizeof(k.ed25519));
	k.present = VEIL_KEYSET_HAS(VEIL_KEY_ED25519);
	assert_int_equal(veil_keyset_encode(&k, ks, sizeof(ks), &kn), 0);
	assert_int_equal(veil_attester_open(&ao, &a), 0);
	if (veil_attester_report(a, ks, kn, nonce, NULL, &r) != 0)
		fail_msg("sim report: %s", veil_err_detail());
	qhex = json_string_value(json_object_get(r, "quote"));
	assert_non_null(qhex);
	q = malloc(strlen(qhex) / 2 + 1);
	assert_non_null(q);
	assert_int_equal(veil_hex_decode(qhex, strlen(qhex), q, strlen(qhex) / 2 + 1, &qn), 0);
	if (veil_pccs_quote_target(q, qn, fm, &ca, &tee) != 0)
		fail_msg("sim quote: %s", veil_err_detail());
	assert_string_equal(ca, "platform");
	assert_int_equal(tee, VEIL_PCCS_TDX);
	ti = json_loads(json_string_value(json_object_get(json_object_get(r, "collateral"),
							  "tcb_info")), 0, NULL);
	tfmhex = json_string_value(json_object_get(ti, "fmspc"));
	assert_non_null(tfmhex);
	assert_int_equal(veil_hex_decode(tfmhex, strlen(tfmhex), tfm, sizeof(tfm), &got), 0);
	assert_int_equal(got, 6);
	assert_memory_equal(fm, tfm, 6);
	json_decref(ti);
	json_decref(r);
	free(q);
	veil_attester_free(a);
}

/* The background fetcher (veil-node's and veil-gateway's --pccs): the
 * fixture's collateral is long past its nextUpdate, so every fetch fails;
 * reports then carry none (not even one the attester put in), the
 * failures are counted, and stop returns at once. */
static void test_fetcher_refuses_collateral_past_next_update(void **state)
{
	struct veil_pccs_fetcher_opts fo = {0};
	struct veil_pccs_fetcher *f = NULL;
	struct veil_buf m = VEIL_BUF_INIT(1 << 16);
	uint64_t fails = 0, stamp = 7;
	int64_t left = 1;
	json_t *r;
	uint64_t t0;

	(void)state;
	NEED_VECTORS();
	/* NULL: no fetcher, everything a no-op */
	r = json_pack("{s:{}}", "collateral");
	assert_int_equal(veil_pccs_fetcher_apply(NULL, r, &stamp), 0);
	assert_int_equal(stamp, 0);
	assert_non_null(json_object_get(r, "collateral"));
	assert_int_equal(veil_pccs_fetcher_stamp(NULL), 0);
	veil_pccs_fetcher_stop(NULL);
	assert_null(veil_pccs_fetcher_base("none", "tdx", NULL));
	assert_string_equal(veil_pccs_fetcher_base(NULL, "tdx", NULL), VEIL_PCCS_DEFAULT_URL);
	assert_null(veil_pccs_fetcher_base(NULL, "sim", NULL));
	assert_null(veil_pccs_fetcher_base("http://x", "sev-snp", NULL));
	assert_string_equal(veil_pccs_fetcher_base("http://x", "sim", NULL), "http://x");

	fo.base_url = g_ctx.base;
	memcpy(fo.fmspc, FMSPC, 6);
	fo.ca = "platform";
	fo.tee = VEIL_PCCS_TDX;
	assert_int_equal(veil_pccs_fetcher_start(&fo, &f), 0);
	assert_non_null(f);
	for (int i = 0; i < 100 && fails == 0; i++) {
		usleep(50000);
		veil_pccs_fetcher_stats(f, &fails, &left);
	}
	assert_int_equal(fails, 1);
	assert_int_equal(left, 0);
	assert_int_equal(requests(), 4); /* it was fetched, then refused */
	assert_int_equal(veil_pccs_fetcher_stamp(f), 0);
	assert_null(veil_pccs_fetcher_text(f, &stamp));
	assert_int_equal(veil_pccs_fetcher_apply(f, r, &stamp), 0);
	assert_null(json_object_get(r, "collateral"));
	veil_pccs_fetcher_metrics(f, "veil_x", &m);
	assert_int_equal(veil_buf_append(&m, "", 1), 0);
	assert_non_null(strstr((char *)m.data, "\nveil_x_collateral_fetch_failures_total 1\n"));
	assert_non_null(strstr((char *)m.data, "\nveil_x_collateral_next_update_seconds 0\n"));
	t0 = veil_wall_ms();
	veil_pccs_fetcher_stop(f); /* waiting 30 s for the retry: woken */
	assert_true(veil_wall_ms() - t0 < 1000);
	veil_buf_free(&m);
	json_decref(r);
}

static void test_bad_arguments_are_einval(void **state)
{
	struct veil_buf out = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	struct veil_pccs_opts o = {0};
	char path[64];

	(void)state;
	assert_int_equal(veil_pccs_fetch(NULL, FMSPC, "platform", VEIL_PCCS_TDX, &out),
			 VEIL_EINVAL);
	assert_int_equal(veil_pccs_fetch(&o, FMSPC, "platform", VEIL_PCCS_TDX, &out),
			 VEIL_EINVAL); /* no base URL */
	o.base_url = "http://127.0.0.1:1";
	assert_int_equal(veil_pccs_fetch(&o, FMSPC, "intermediate", VEIL_PCCS_TDX, &out),
			 VEIL_EINVAL);
	assert_int_equal(veil_pccs_fetch(&o, FMSPC, "platform", (enum veil_pccs_tee)7, &out),
			 VEIL_EINVAL);
	assert_int_equal(veil_pccs_cache_path(&o, FMSPC, "platform", VEIL_PCCS_SGX,
					      path, sizeof(path)), VEIL_EINVAL);
	o.cache_dir = "/x";
	assert_int_equal(veil_pccs_cache_path(&o, FMSPC, "processor", VEIL_PCCS_SGX,
					      path, sizeof(path)), 0);
	assert_string_equal(path, "/x/sgx-b0c06f000000-processor.json");
	assert_int_equal(veil_pccs_cache_path(&o, FMSPC, "processor", VEIL_PCCS_SGX,
					      path, 10), VEIL_ERANGE);
	assert_int_equal(out.len, 0);
}

static void test_refused_connection_names_the_url(void **state)
{
	struct veil_buf out = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	struct veil_pccs_opts o = {0};
	struct sockaddr_in a = {0};
	socklen_t al = sizeof(a);
	char base[64];
	int fd;

	(void)state;
	/* A port that was just free: bound then closed, nothing listens. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd);
	snprintf(base, sizeof(base), "http://127.0.0.1:%u/", ntohs(a.sin_port));
	o.base_url = base;
	o.timeout_ms = 2000;
	assert_int_equal(veil_pccs_fetch(&o, FMSPC, "processor", VEIL_PCCS_SGX, &out),
			 VEIL_EIO);
	assert_non_null(strstr(veil_err_detail(), "/sgx/certification/v4/tcb?fmspc=B0C06F000000"));
	assert_int_equal(out.len, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)
		T(test_fetch_assembles_collateral_that_verifies_uptodate),
		T(test_fetch_asks_for_fmspc_and_ca_in_the_url),
		T(test_raw_tcbinfo_bytes_preserved_in_odd_layout),
		T(test_second_fetch_is_served_from_cache),
		T(test_stale_cache_is_refetched),
		T(test_server_errors_are_clear_and_leave_cache_untouched),
		T(test_smaller_response_cap_is_enforced),
		T(test_wrong_fmspc_in_tcbinfo_is_rejected),
		T(test_quote_target_then_fetch_verifies),
		T(test_quote_target_bad_pck_chain_detail_is_whole),
		T(test_quote_target_takes_the_sim_pck_issuer),
		T(test_fetcher_refuses_collateral_past_next_update),
		T(test_bad_arguments_are_einval),
		T(test_refused_connection_names_the_url),
#undef T
	};

	veil_log_setup(VEIL_LOG_ERROR, false, stderr);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
