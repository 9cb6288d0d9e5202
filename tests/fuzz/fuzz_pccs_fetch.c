/* libFuzzer harness for the PCS / PCCS response scanners of
 * src/lib/attest/pccs.c (static, so driven through veil_pccs_fetch): header
 * lookup, URL-decoding of issuer-chain headers, the raw-member JSON scanner
 * that cuts the signed tcbInfo / enclaveIdentity bytes out of a body, the
 * signature field, DER-or-hex CRL bodies, the Error-Message rendering of a
 * non-200 status, and the assembled collateral's parse and freshness scan.
 *
 * A server thread on 127.0.0.1 (ephemeral port, started once) answers the
 * four GETs of one fetch from the input, which is up to four sections
 * separated by a line "--" (TCB info, QE identity, PCK CRL, root CA CRL, in
 * request order).  A section is header lines ("Name: value"), an empty
 * line, then the body (raw bytes); a "Status: N" header line sets the status
 * (default 200).  Missing sections answer 404.  Each run costs up to four
 * loopback connections, so expect hundreds of runs per second, not
 * thousands.  Oracle: a fetch that succeeds appends collateral that
 * veil_tdx_collateral_parse accepts (pccs.c checks this itself) and whose
 * tcb_info names the FMSPC asked for. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "veil/base.h"
#include "veil/pccs.h"

#define MAX_IN (256u << 10)
#define N_SEC 4

static const uint8_t FMSPC[6] = {0xB0, 0xC0, 0x6F, 0x00, 0x00, 0x00};

static int lfd = -1;
static char base_url[64];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
/* The current run's sections (guarded by mu; the fetch is synchronous). */
static const uint8_t *sec_p[N_SEC];
static size_t sec_n[N_SEC];
static size_t n_sec;

static void send_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		b += w;
		n -= (size_t)w;
	}
}

/* Which of the four requests a request line is. */
static int which(const char *req)
{
	if (strstr(req, "/certification/v4/tcb?"))
		return 0;
	if (strstr(req, "/certification/v4/qe/identity"))
		return 1;
	if (strstr(req, "/certification/v4/pckcrl?"))
		return 2;
	if (strstr(req, "/certification/v4/rootcacrl"))
		return 3;
	return -1;
}

static void answer(int fd, int k)
{
	struct veil_buf out = VEIL_BUF_INIT(2 * MAX_IN + 4096);
	const uint8_t *p, *end, *body;
	int status = 200;

	pthread_mutex_lock(&mu);
	if (k < 0 || (size_t)k >= n_sec) {
		veil_buf_append_str(&out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
				    "Connection: close\r\n\r\n");
		goto send;
	}
	p = sec_p[k];
	end = p + sec_n[k];
	/* headers: lines up to an empty one */
	body = end;
	for (const uint8_t *q = p; q < end;) {
		const uint8_t *nl = memchr(q, '\n', (size_t)(end - q));

		if (nl == q) {
			body = nl + 1;
			break;
		}
		if (!nl)
			break;
		q = nl + 1;
	}
	for (const uint8_t *q = p; q < body && q < end;) {
		const uint8_t *nl = memchr(q, '\n', (size_t)(end - q));
		size_t ll = (size_t)((nl ? nl : end) - q);

		if (ll > 7 && !strncasecmp((const char *)q, "Status:", 7)) {
			status = 0;
			for (size_t i = 7; i < ll && i < 12; i++)
				if (q[i] >= '0' && q[i] <= '9')
					status = status * 10 + (q[i] - '0');
			if (status < 100 || status > 599)
				status = 200;
		}
		q = nl ? nl + 1 : end;
	}
	veil_buf_appendf(&out, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n",
			 status, (size_t)(end - body));
	for (const uint8_t *q = p; q < body && q < end;) {
		const uint8_t *nl = memchr(q, '\n', (size_t)(end - q));
		size_t ll = (size_t)((nl ? nl : end) - q);

		if (ll && !(ll > 7 && !strncasecmp((const char *)q, "Status:", 7))) {
			veil_buf_append(&out, q, ll);
			veil_buf_append(&out, "\r\n", 2);
		}
		q = nl ? nl + 1 : end;
	}
	veil_buf_append(&out, "\r\n", 2);
	veil_buf_append(&out, body, (size_t)(end - body));
send:
	pthread_mutex_unlock(&mu);
	send_all(fd, out.data, out.len);
	veil_buf_free(&out);
}

static void *serve(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		char req[4096];
		size_t got = 0;

		if (fd < 0)
			continue;
		/* the request line and headers (curl sends no body) */
		while (got < sizeof(req) - 1) {
			ssize_t r = recv(fd, req + got, sizeof(req) - 1 - got, 0);

			if (r <= 0)
				break;
			got += (size_t)r;
			req[got] = 0;
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		req[got] = 0;
		answer(fd, which(req));
		shutdown(fd, SHUT_WR);
		close(fd);
	}
	return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_in a = {0};
	socklen_t al = sizeof(a);
	pthread_t th;

	(void)argc;
	(void)argv;
	veil_log_setup(VEIL_LOG_OFF, false, stderr);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 16) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0)
		abort();
	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%u", ntohs(a.sin_port));
	if (pthread_create(&th, NULL, serve, NULL))
		abort();
	pthread_detach(th);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_pccs_opts o = {0};
	struct veil_buf col = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	static const char sep[] = "\n--\n";
	size_t at = 0;
	int rc;

	if (size > MAX_IN)
		return 0;
	pthread_mutex_lock(&mu);
	n_sec = 0;
	while (n_sec < N_SEC) {
		const uint8_t *s = memmem(data + at, size - at, sep, sizeof(sep) - 1);
		size_t end = s ? (size_t)(s - data) : size;

		sec_p[n_sec] = data + at;
		sec_n[n_sec] = end - at;
		n_sec++;
		if (!s)
			break;
		at = end + sizeof(sep) - 1;
	}
	pthread_mutex_unlock(&mu);

	o.base_url = base_url;
	/* four requests must fit the runner's 10 s per input */
	o.timeout_ms = 2000;
	o.connect_timeout_ms = 500;
	o.now = 1735689600; /* 2025-01-01, inside the seeds' validity */
	rc = veil_pccs_fetch(&o, FMSPC, "processor", VEIL_PCCS_TDX, &col);
	if (rc == 0) {
		json_t *j = json_loadb((const char *)col.data, col.len, 0, NULL);
		const char *ti = json_string_value(json_object_get(j, "tcb_info"));
		json_t *t = ti ? json_loads(ti, 0, NULL) : NULL;
		const char *fm = json_string_value(json_object_get(t, "fmspc"));

		if (!fm || strcasecmp(fm, "B0C06F000000"))
			abort();
		json_decref(t);
		json_decref(j);
	}
	/* data is the fuzzer's until we return: a late request gets a 404 */
	pthread_mutex_lock(&mu);
	n_sec = 0;
	pthread_mutex_unlock(&mu);
	veil_buf_free(&col);
	return 0;
}
