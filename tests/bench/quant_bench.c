/* Kernel benchmark for veil_gemm, one thread.
 *
 *   quant_bench [isa]      isa: scalar|avx2|avx512 (default: best)
 *
 * Prints "name value unit" lines:
 *   mem_read_bw           sequential read of a 1 GiB buffer (AVX2 loads
 *                         where the CPU has them, else plain C)
 *   gemm_<type>_<M>x<K>_nb1   weight bytes streamed per second (decode)
 *   gemm_<type>_<M>x<K>_nb64  arithmetic rate, 2*M*K*nb per second (prefill)
 * Decode is memory-bound, so nb1 GB/s is to be read against mem_read_bw. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/quant.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 32);
}

static float frand(void)
{
	return (float)rnd() / 4294967296.0f * 2.0f - 1.0f;
}

static size_t row_bytes(enum veil_dtype t, int K)
{
	switch (t) {
	case VEIL_DT_F32: return (size_t)K * 4;
	case VEIL_DT_F16:
	case VEIL_DT_BF16: return (size_t)K * 2;
	case VEIL_DT_Q8_0: return (size_t)K / 32 * sizeof(struct veil_block_q8_0);
	case VEIL_DT_Q4_0: return (size_t)K / 32 * sizeof(struct veil_block_q4_0);
	case VEIL_DT_Q4_K: return (size_t)K / 256 * sizeof(struct veil_block_q4_K);
	case VEIL_DT_Q6_K: return (size_t)K / 256 * sizeof(struct veil_block_q6_K);
	case VEIL_DT_Q8_K: return (size_t)K / 256 * sizeof(struct veil_block_q8_K);
	default: return 0;
	}
}

static double secs(void)
{
	return (double)veil_now_ns() * 1e-9;
}

/* Sum of 64-bit words, 8 independent lanes so the loads overlap. */
static uint64_t sum_plain(const uint64_t *p, size_t nw)
{
	uint64_t s[8] = {0};
	for (size_t i = 0; i < nw; i += 8)
		for (int k = 0; k < 8; k++)
			s[k] += p[i + k];
	return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

/* The same with 256-bit loads, four accumulators (the baseline SSE2 build
 * of sum_plain cannot keep enough loads in flight to saturate DRAM). */
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p,
							  size_t nw)
{
	__m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
	for (size_t i = 0; i < nw; i += 16) {
		a = _mm256_add_epi64(a, _mm256_load_si256((const void *)(p + i)));
		b = _mm256_add_epi64(b, _mm256_load_si256((const void *)(p + i + 4)));
		c = _mm256_add_epi64(c, _mm256_load_si256((const void *)(p + i + 8)));
		d = _mm256_add_epi64(d, _mm256_load_si256((const void *)(p + i + 12)));
	}
	a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
	uint64_t t[4];
	_mm256_storeu_si256((void *)t, a);
	return t[0] + t[1] + t[2] + t[3];
}

/* Single-thread sequential read bandwidth over 1 GiB, best of 3. */
static void bench_mem(void)
{
	size_t n = (size_t)1 << 30, nw = n / 8;
	uint64_t *p = aligned_alloc(64, n);
	if (!p) {
		printf("mem_read_bw skipped (no 1 GiB)\n");
		return;
	}
	for (size_t i = 0; i < nw; i++)
		p[i] = i;
	const bool avx2 = __builtin_cpu_supports("avx2");
	double best = 0;
	uint64_t sink = 0;
	for (int rep = 0; rep < 3; rep++) {
		double t0 = secs();
		sink += avx2 ? sum_avx2(p, nw) : sum_plain(p, nw);
		double dt = secs() - t0;
		if (n / dt > best)
			best = n / dt;
	}
	printf("mem_read_bw %.2f GB/s\n", best / 1e9);
	if (sink == 42)
		printf("#\n");
	free(p);
}

static void bench_gemm(enum veil_dtype t, int M, int K)
{
	enum veil_dtype at = veil_quant_act_type(t);
	size_t wrb = row_bytes(t, K), xrb = row_bytes(at, K);
	const int nbmax = 64;
	uint8_t *w = malloc(wrb * (size_t)M);
	uint8_t *x = malloc(xrb * nbmax);
	float *wf = malloc(sizeof(float) * (size_t)K);
	float *y = malloc(sizeof(float) * (size_t)M * nbmax);
	if (!w || !x || !wf || !y) {
		printf("gemm_%s skipped (no memory)\n", veil_dtype_name(t));
		goto out;
	}
	/* a few distinct quantized rows, copied: realistic bytes, fast setup */
	for (int r = 0; r < M; r++) {
		if (r < 16) {
			for (int i = 0; i < K; i++)
				wf[i] = frand();
			veil_quantize_row(t, wf, w + (size_t)r * wrb, K);
		} else {
			memcpy(w + (size_t)r * wrb, w + (size_t)(r % 16) * wrb, wrb);
		}
	}
	for (int b = 0; b < nbmax; b++) {
		for (int i = 0; i < K; i++)
			wf[i] = frand();
		veil_quantize_row(at, wf, x + (size_t)b * xrb, K);
	}

	double best = 1e30;
	for (int rep = 0; rep < 20; rep++) {
		double t0 = secs();
		veil_gemm(t, K, w, wrb, 0, M, x, xrb, 1, y, (size_t)M);
		double dt = secs() - t0;
		if (dt < best)
			best = dt;
	}
	printf("gemm_%s_%dx%d_nb1 %.2f GB/s\n", veil_dtype_name(t), M, K,
	       (double)wrb * M / best / 1e9);

	best = 1e30;
	for (int rep = 0; rep < 3; rep++) {
		double t0 = secs();
		veil_gemm(t, K, w, wrb, 0, M, x, xrb, nbmax, y, (size_t)M);
		double dt = secs() - t0;
		if (dt < best)
			best = dt;
	}
	printf("gemm_%s_%dx%d_nb%d %.2f GFLOP/s\n", veil_dtype_name(t), M, K,
	       nbmax, 2.0 * M * K * nbmax / best / 1e9);
out:
	free(w);
	free(x);
	free(wf);
	free(y);
}

int main(int argc, char **argv)
{
	veil_quant_init();
	if (argc > 1) {
		enum veil_isa isa = VEIL_ISA_SCALAR;
		if (!strcmp(argv[1], "avx2"))
			isa = VEIL_ISA_AVX2;
		else if (!strcmp(argv[1], "avx512"))
			isa = VEIL_ISA_AVX512;
		if (veil_isa_force(isa) < 0) {
			fprintf(stderr, "quant_bench: %s not available here\n",
				argv[1]);
			return 1;
		}
	}
	printf("isa %s (available: %s)\n", veil_isa_name(veil_isa_active()),
	       veil_isa_available());
	bench_mem();
	bench_gemm(VEIL_DT_Q8_0, 49152, 576);
	bench_gemm(VEIL_DT_Q4_0, 8192, 2048);
	bench_gemm(VEIL_DT_Q8_0, 1536, 576);
	bench_gemm(VEIL_DT_F16, 8192, 2048);
	bench_gemm(VEIL_DT_F32, 4096, 2048);
	bench_gemm(VEIL_DT_BF16, 8192, 2048);
	bench_gemm(VEIL_DT_Q4_K, 8192, 2048);
	bench_gemm(VEIL_DT_Q6_K, 8192, 2048);
	return 0;
}
