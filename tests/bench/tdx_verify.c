/* tdx_verify: verify one DCAP quote (TDX or SGX) with collateral at a time,
 * and print the verdict as one JSON line; or time it.
 *
 *   tdx_verify QUOTE COLLATERAL.json TIME [--root ROOT.der]
 *       QUOTE raw or hex text; TIME unix seconds or YYYY-MM-DDTHH:MM:SSZ.
 *       Prints veil_tdx_verdict_json() plus "now"; exit 0 accepted,
 *       1 rejected, 2 usage or I/O error.
 *   tdx_verify QUOTE COLLATERAL.json TIME --bench N [--ref-us US]
 *       Median microseconds of N full verifications (quote parse, every
 *       signature, chain, CRL and TCB check) with the collateral already
 *       parsed in memory:
 *       BENCH|tdx full verify (collateral in memory)|<us>|us/quote|<ref>|<ratio>
 *       <ref> is --ref-us (e.g. the dcap-qvl figure the bench driver measured)
 *       and <ratio> = ref/ours (higher is better); both "-" without it.
 * Used by tests/integration/test_dcap_oracle.sh and scripts/bench.sh. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/tdx.h"
#include "veil/x509.h"

static int usage(void)
{
	fprintf(stderr, "usage: tdx_verify QUOTE COLLATERAL.json TIME [--root ROOT.der] "
			"[--bench N [--ref-us US]]\n");
	return 2;
}

static int parse_time(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (*s >= '0' && *s <= '9' && !strchr(s, '-')) {
		errno = 0;
		v = strtoll(s, &end, 10);
		if (errno || *end)
			return VEIL_EFORMAT;
		*out = v;
		return 0;
	}
	return veil_x509_iso8601_parse(s, strlen(s), out);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const char *pos[3];
	const char *root_path = NULL, *ref = NULL;
	struct veil_buf rootb = VEIL_BUF_INIT(1u << 16);
	struct veil_tdx_collateral *c = NULL;
	struct veil_tdx_verdict v;
	uint8_t *quote = NULL;
	size_t qlen = 0;
	long bench = 0;
	int64_t now;
	int npos = 0, rc, ret = 2;
	json_t *j = NULL;
	char *line = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--root") && i + 1 < argc)
			root_path = argv[++i];
		else if (!strcmp(argv[i], "--bench") && i + 1 < argc)
			bench = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--ref-us") && i + 1 < argc)
			ref = argv[++i];
		else if (npos < 3 && argv[i][0] != '-')
			pos[npos++] = argv[i];
		else
			return usage();
	}
	if (npos != 3 || bench < 0 || bench > 10000000)
		return usage();
	if (parse_time(pos[2], &now) < 0) {
		fprintf(stderr, "tdx_verify: bad TIME %s\n", pos[2]);
		return 2;
	}
	if ((rc = veil_tdx_quote_load(pos[0], &quote, &qlen)) < 0) {
		fprintf(stderr, "tdx_verify: %s: %s %s\n", pos[0], veil_strerror(rc), veil_err_detail());
		goto out;
	}
	if ((rc = veil_tdx_collateral_load(pos[1], &c)) < 0) {
		fprintf(stderr, "tdx_verify: %s: %s %s\n", pos[1], veil_strerror(rc), veil_err_detail());
		goto out;
	}
	if (root_path && (rc = veil_buf_read_file(&rootb, root_path)) < 0) {
		fprintf(stderr, "tdx_verify: %s: %s\n", root_path, veil_strerror(rc));
		goto out;
	}
	if (bench > 0) {
		uint64_t *t = calloc((size_t)bench, sizeof(*t));

		if (!t)
			goto out;
		for (long i = 0; i < bench / 10 + 1; i++) /* warm-up */
			veil_tdx_verify(quote, qlen, c, now, rootb.data, rootb.len, &v);
		for (long i = 0; i < bench; i++) {
			uint64_t t0 = veil_now_ns();

			veil_tdx_verify(quote, qlen, c, now, rootb.data, rootb.len, &v);
			t[i] = veil_now_ns() - t0;
		}
		qsort(t, (size_t)bench, sizeof(*t), cmp_u64);
		{
			double us = (double)t[bench / 2] / 1000.0;

			if (ref)
				printf("BENCH|tdx full verify (collateral in memory)|%.1f|us/quote|%s|%.2f\n",
				       us, ref, strtod(ref, NULL) / us);
			else
				printf("BENCH|tdx full verify (collateral in memory)|%.1f|us/quote|-|-\n", us);
		}
		free(t);
		ret = v.ok ? 0 : 1;
		goto out;
	}
	veil_tdx_verify(quote, qlen, c, now, rootb.data, rootb.len, &v);
	if (veil_tdx_verdict_json(&v, &j) < 0 ||
	    json_object_set_new(j, "now", json_integer(now)) < 0 ||
	    !(line = json_dumps(j, JSON_COMPACT)))
		goto out;
	printf("%s\n", line);
	ret = v.ok ? 0 : 1;
out:
	free(line);
	json_decref(j);
	veil_tdx_collateral_free(c);
	veil_buf_free(&rootb);
	free(quote);
	return ret;
}
