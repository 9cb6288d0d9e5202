/* Attestation verification benchmarks: median wall time of one complete
 * verification (parse, certificate chain to the pinned root, signature,
 * claims), on real evidence:
 *   snp_verify   SEV-SNP report + VCEK -> ASK -> ARK (Milan)
 *   spdm_verify  NVIDIA SPDM GET_MEASUREMENTS evidence + 5-certificate chain
 * Usage: attest_bench [SNP_REPORT VCEK_DER SPDM_HEX_TXT CHAIN_PEM]
 * (default: the trustee SNP report and the nvtrust Hopper report under
 * $VEIL_SHARED, default ../shared).  No reference implementation runs in
 * the same process, so the reference and ratio columns are "-".  Each
 * figure is reported as wall time and as this thread's CPU time (the
 * latter is steadier on a loaded machine).
 * Output: BENCH|<figure>|<median>|us|-|- */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "veil/base.h"
#include "veil/nvgpu.h"
#include "veil/snp.h"

#define ROUNDS 301

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void print_median(const char *fig, uint64_t *t)
{
	qsort(t, ROUNDS, sizeof(t[0]), cmp_u64);
	printf("BENCH|%s|%.1f|us|-|-\n", fig, t[ROUNDS / 2] / 1e3);
	fflush(stdout);
}

static void load(const char *path, struct veil_buf *b)
{
	if (veil_buf_read_file(b, path) < 0) {
		fprintf(stderr, "attest_bench: cannot read %s\n", path);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	const char *root = getenv("VEIL_SHARED");
	char paths[4][4096];
	static const char *def[4] = {
		"vectors/attest/sev-snp/trustee/test-report.bin",
		"vectors/attest/sev-snp/trustee/test-vcek.der",
		"vectors/attest/nvidia/nvtrust/hopperAttestationReport.txt",
		"vectors/attest/nvidia/nvtrust/hopperCertChain.txt",
	};
	struct veil_buf rep = VEIL_BUF_INIT(1 << 20), vcek = VEIL_BUF_INIT(1 << 20);
	struct veil_buf hex = VEIL_BUF_INIT(1 << 21), ev = VEIL_BUF_INIT(1 << 20);
	struct veil_buf pem = VEIL_BUF_INIT(1 << 20);
	struct veil_snp_opts so = {.now = 1751328000}; /* 2025-07-01, inside every validity */
	struct veil_snp_result sr;
	struct veil_nvgpu_result *nr = malloc(sizeof(*nr));
	uint64_t t[ROUNDS], c[ROUNDS];

	if (argc != 1 && argc != 5) {
		fprintf(stderr, "usage: attest_bench [SNP_REPORT VCEK SPDM_HEX CHAIN_PEM]\n");
		return 2;
	}
	for (int i = 0; i < 4; i++) {
		if (argc == 5)
			snprintf(paths[i], sizeof(paths[i]), "%s", argv[i + 1]);
		else
			snprintf(paths[i], sizeof(paths[i]), "%s/%s", root && *root ? root : "../shared",
				 def[i]);
	}
	load(paths[0], &rep);
	load(paths[1], &vcek);
	load(paths[2], &hex);
	load(paths[3], &pem);
	if (!nr || veil_hex_text_decode((const char *)hex.data, hex.len, &ev) < 0) {
		fprintf(stderr, "attest_bench: %s is not hex evidence\n", paths[2]);
		return 1;
	}

	for (int i = 0; i < ROUNDS; i++) {
		uint64_t t0 = veil_now_ns(), c0 = cpu_ns();
		int rc = veil_snp_verify(rep.data, rep.len, vcek.data, vcek.len, &so, &sr);

		c[i] = cpu_ns() - c0;
		t[i] = veil_now_ns() - t0;
		if (rc != 0) {
			fprintf(stderr, "attest_bench: SNP verify failed: %s\n", sr.error);
			return 1;
		}
	}
	print_median("snp_verify", t);
	print_median("snp_verify_cpu", c);

	for (int i = 0; i < ROUNDS; i++) {
		uint64_t t0 = veil_now_ns(), c0 = cpu_ns();
		int rc = veil_nvgpu_verify(ev.data, ev.len, (const char *)pem.data, pem.len, NULL, nr);

		c[i] = cpu_ns() - c0;
		t[i] = veil_now_ns() - t0;
		if (rc != 0) {
			fprintf(stderr, "attest_bench: SPDM verify failed: %s\n", nr->error);
			return 1;
		}
	}
	print_median("spdm_verify", t);
	print_median("spdm_verify_cpu", c);

	free(nr);
	veil_buf_free(&rep);
	veil_buf_free(&vcek);
	veil_buf_free(&hex);
	veil_buf_free(&ev);
	veil_buf_free(&pem);
	return 0;
}
