/* libFuzzer harness for the SSE parser: the input is fed in pieces whose
 * sizes come from the first byte, so split CR/LF and split BOMs are covered;
 * every dispatched event must be NUL-terminated at its length and within the
 * caps. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/http.h"

static int on_event(void *arg, const char *event, const char *data, size_t len,
		    const char *id)
{
	size_t *count = arg;

	if (strlen(event) >= 64 || strlen(id) >= 128 || data[len] != 0 ||
	    len > 4096)
		abort();
	(*count)++;
	return *count > 100000 ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	struct veil_http_sse_parser ps;
	size_t count = 0, step, i;
	int rc = 0;

	if (n == 0)
		return 0;
	step = (size_t)(p[0] % 17) + 1;
	p++;
	n--;
	veil_http_sse_init(&ps, 512, 4096, on_event, &count);
	for (i = 0; i < n && rc == 0; i += step)
		rc = veil_http_sse_feed(&ps, p + i, n - i < step ? n - i : step);
	(void)veil_http_sse_truncated(&ps);
	veil_http_sse_free(&ps);
	return 0;
}
