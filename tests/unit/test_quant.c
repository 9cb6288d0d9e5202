/* Unit tests of the number formats and kernels (include/veil/quant.h).
 *
 * Every kernel test runs on every path the CPU has (scalar, AVX2, AVX-512;
 * the AVX-512 path includes the VNNI kernels where the CPU has VNNI) by
 * veil_isa_force, and restores the best path afterwards.
 *
 * Tolerances for veil_gemm (see check_gemm): the reference is computed in
 * double from dequantize(W) and dequantize(X) - exactly the numbers the
 * kernel sees - so the only error is the kernel's F32 arithmetic.  Integer
 * block dots are exact in every path; each float operation (scale products,
 * int->float of sums below 2^24, the running sum) adds at most one rounding
 * u = 2^-24 relative to a partial sum bounded by S = sum_i |w_i||x_i|.  The
 * classic bound for a sum of n terms is then about n*u*S; we allow
 * 4*(K+8)*u*S, a few times the worst case for any summation order (paths
 * differ in order).  A wrong scale or a dropped block errs by about S/nblk,
 * orders of magnitude above that.  For Q4_K the kernel sums d*sc*q and
 * dmin*m separately, which may cancel, so S also counts |dmin*m*x|. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "veil/quant.h"

/* ---- helpers ----------------------------------------------------------- */

static uint64_t g_rng = 0x243f6a8885a308d3ull;

static uint32_t rnd32(void)
{
	g_rng ^= g_rng << 13;
	g_rng ^= g_rng >> 7;
	g_rng ^= g_rng << 17;
	return (uint32_t)(g_rng >> 32);
}

/* uniform in [-1, 1) */
static float frand(void)
{
	return (float)((double)rnd32() / 2147483648.0 - 1.0);
}

static uint32_t f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static float u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static const enum veil_isa all_isas[] = {VEIL_ISA_SCALAR, VEIL_ISA_AVX2,
					 VEIL_ISA_AVX512};

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

/* Slow fp16 decoder from the definition (IEEE 754 binary16). */
static double ref_h2d(uint16_t h)
{
	int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
	double v;
	if (e == 0)
		v = ldexp(m, -24);
	else if (e == 31)
		v = m ? NAN : INFINITY;
	else
		v = ldexp(1024 + m, e - 25);
	return s ? -v : v;
}

/* Slow round-to-nearest-even fp32 -> fp16: the bracketing pair among the
 * ordered positive codes, ties to the even code; 0x7c00 stands for 65536 as
 * IEEE's overflow rule has it. */
static uint16_t ref_f2h(float f)
{
	uint32_t u = f2u(f);
	uint16_t s = (uint16_t)((u >> 16) & 0x8000);
	if (isnan(f))
		return (uint16_t)(s | 0x7e00 | ((u >> 13) & 0x3ff));
	double a = fabs((double)f);
	if (a >= 65520.0)
		return (uint16_t)(s | 0x7c00);
	int lo = 0, hi = 0x7c00; /* value(lo) <= a < value(hi) */
	while (hi - lo > 1) {
		int mid = (lo + hi) / 2;
		if (ref_h2d((uint16_t)mid) <= a)
			lo = mid;
		else
			hi = mid;
	}
	double vl = ref_h2d((uint16_t)lo);
	double vh = hi == 0x7c00 ? 65536.0 : ref_h2d((uint16_t)hi);
	int pick;
	if (a - vl < vh - a)
		pick = lo;
	else if (a - vl > vh - a)
		pick = hi;
	else
		pick = (lo & 1) ? hi : lo;
	return (uint16_t)(s | pick);
}

static uint16_t ref_f2bf(float f)
{
	uint32_t u = f2u(f);
	if (isnan(f))
		return (uint16_t)((u >> 16) | 0x40);
	uint32_t h = u >> 16, rem = u & 0xffff;
	if (rem > 0x8000 || (rem == 0x8000 && (h & 1)))
		h++;
	return (uint16_t)h;
}

/* ---- conversions -------------------------------------------------------- */

static void test_fp16_to_fp32_is_exact_for_all_65536_values(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = veil_fp16_to_fp32((uint16_t)h);
		double r = ref_h2d((uint16_t)h);
		if (isnan(r)) {
			/* NaN stays NaN, sign and payload kept, made quiet */
			uint32_t want = ((h & 0x8000) << 16) | 0x7fc00000u |
					((h & 0x3ff) << 13);
			assert_int_equal(f2u(f), want);
		} else {
			assert_true((double)f == r);
			assert_int_equal(f2u(f) >> 31, h >> 15); /* -0 too */
		}
	}
}

static void test_fp32_to_fp16_round_trips_every_fp16_value(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
			continue; /* NaNs: checked elsewhere */
		assert_int_equal(veil_fp32_to_fp16(veil_fp16_to_fp32((uint16_t)h)), h);
	}
}

/* Inputs that stress rounding: every midpoint between adjacent fp16 values
 * (exact in fp32), one fp32 ulp either side, and random floats over the
 * whole exponent range including overflow, subnormals, NaN and Inf. */
static float *rounding_inputs(size_t *n)
{
	size_t cap = 65536 * 3 * 2 + 200000, k = 0;
	float *v = malloc(cap * sizeof(float));
	assert_non_null(v);
	for (uint32_t h = 0; h < 0x7c00; h++) {
		double mid = (ref_h2d((uint16_t)h) +
			      (h + 1 == 0x7c00 ? 65536.0 : ref_h2d((uint16_t)(h + 1)))) / 2;
		float m = (float)mid;
		assert_true((double)m == mid);
		float c[3] = {m, nextafterf(m, 0), nextafterf(m, INFINITY)};
		for (int i = 0; i < 3; i++) {
			v[k++] = c[i];
			v[k++] = -c[i];
		}
	}
	for (int i = 0; i < 200000; i++) {
		uint32_t u = rnd32();
		if (i & 1) /* bias towards the fp16 range: exponent 100..150 */
			u = (u & 0x807fffff) | ((100u + rnd32() % 51) << 23);
		v[k++] = u2f(u);
	}
	*n = k;
	return v;
}

static void test_fp32_to_fp16_rounds_to_nearest_even_like_reference(void **state)
{
	(void)state;
	size_t n;
	float *v = rounding_inputs(&n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(veil_fp32_to_fp16(v[i]), ref_f2h(v[i]));
	assert_int_equal(veil_fp32_to_fp16(INFINITY), 0x7c00);
	assert_int_equal(veil_fp32_to_fp16(-INFINITY), 0xfc00);
	assert_int_equal(veil_fp32_to_fp16(65504.0f), 0x7bff);
	assert_int_equal(veil_fp32_to_fp16(65519.99f), 0x7bff);
	assert_int_equal(veil_fp32_to_fp16(65520.0f), 0x7c00);
	assert_int_equal(veil_fp32_to_fp16(-0.0f), 0x8000);
	assert_int_equal(veil_fp32_to_fp16(ldexpf(1, -25)), 0x0000);  /* tie -> even 0 */
	assert_int_equal(veil_fp32_to_fp16(ldexpf(3, -25)), 0x0002);  /* 1.5 ulp -> 2 */
	assert_int_equal(veil_fp32_to_fp16(ldexpf(1, -24)), 0x0001);
	free(v);
}

static void test_bf16_conversions_round_to_nearest_even_and_quiet_nans(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++)
		assert_int_equal(f2u(veil_bf16_to_fp32((uint16_t)h)), h << 16);
	size_t n;
	float *v = rounding_inputs(&n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(veil_fp32_to_bf16(v[i]), ref_f2bf(v[i]));
	assert_int_equal(veil_fp32_to_bf16(u2f(0x3f808000)), 0x3f80); /* tie, even */
	assert_int_equal(veil_fp32_to_bf16(u2f(0x3f818000)), 0x3f82); /* tie, up */
	assert_int_equal(veil_fp32_to_bf16(u2f(0x7f800001)), 0x7fc0); /* sNaN quiet */
	free(v);
}

static void test_row_conversions_match_scalar_bits_on_every_path(void **state)
{
	(void)state;
	size_t n;
	float *v = rounding_inputs(&n);
	uint16_t *want = malloc(n * 2), *got = malloc(n * 2);
	float *back = malloc(n * 4);
	assert_non_null(want);
	assert_non_null(got);
	assert_non_null(back);
	for (size_t i = 0; i < n; i++)
		want[i] = veil_fp32_to_fp16(v[i]);
	static const int lens[] = {1, 7, 8, 15, 16, 17, 31, 33, 100};
	for (size_t p = 0; p < VEIL_ARRAY_LEN(all_isas); p++) {
		if (veil_isa_force(all_isas[p]) < 0)
			continue;
		memset(got, 0, n * 2);
		veil_f32_to_f16_row(v, got, (int)n);
		assert_memory_equal(got, want, n * 2);
		/* odd lengths and offsets: tails must be exact and in bounds */
		for (size_t l = 0; l < VEIL_ARRAY_LEN(lens); l++) {
			uint16_t buf[128];
			memset(buf, 0xaa, sizeof(buf));
			veil_f32_to_f16_row(v + 3, buf + 1, lens[l]);
			assert_memory_equal(buf + 1, want + 3, (size_t)lens[l] * 2);
			assert_int_equal(buf[0], 0xaaaa);
			assert_int_equal(buf[1 + lens[l]], 0xaaaa);
		}
		veil_f16_to_f32_row(want, back, (int)n);
		for (size_t i = 0; i < n; i++) {
			float r = veil_fp16_to_fp32(want[i]);
			assert_int_equal(f2u(back[i]), f2u(r));
		}
	}
	veil_isa_force(veil_isa_best());
	free(v);
	free(want);
	free(got);
	free(back);
}

/* ---- quantizers on hand-checked blocks ---------------------------------- */

static void test_quantize_q8_0_matches_hand_checked_bytes(void **state)
{
	(void)state;
	float x[96] = {0};
	/* block 0: amax 127 -> d = 1 (fp16 0x3c00), q = x */
	for (int j = 0; j < 32; j++)
		x[j] = (float)(j * 8 - 127 < -127 ? -127 : j * 8 - 127);
	x[31] = 127;
	/* block 1: amax 63.5 -> d = 0.5 (0x3800), id = 2, q = roundf(2x):
	 * ties go away from zero as in ggml's reference (roundf) */
	x[32] = 63.5f;  /* 127 */
	x[33] = 1.25f;  /* 2.5 -> 3 */
	x[34] = -1.25f; /* -2.5 -> -3 */
	x[35] = 0.75f;  /* 1.5 -> 2 */
	x[36] = -0.25f; /* -0.5 -> -1 */
	x[37] = -63.5f; /* -127 */
	/* block 2: all zero -> d = 0, q = 0 */
	struct veil_block_q8_0 b[3];
	for (size_t p = 0; p < VEIL_ARRAY_LEN(all_isas); p++) {
		if (veil_isa_force(all_isas[p]) < 0)
			continue;
		memset(b, 0x55, sizeof(b));
		assert_int_equal(veil_quantize_row(VEIL_DT_Q8_0, x, b, 96), 0);
		assert_int_equal(b[0].d, 0x3c00);
		for (int j = 0; j < 32; j++)
			assert_int_equal(b[0].qs[j], (int)x[j]);
		assert_int_equal(b[1].d, 0x3800);
		static const int8_t want1[6] = {127, 3, -3, 2, -1, -127};
		for (int j = 0; j < 6; j++)
			assert_int_equal(b[1].qs[j], want1[j]);
		for (int j = 6; j < 32; j++)
			assert_int_equal(b[1].qs[j], 0);
		assert_int_equal(b[2].d, 0);
		for (int j = 0; j < 32; j++)
			assert_int_equal(b[2].qs[j], 0);
	}
	veil_isa_force(veil_isa_best());
}

static void test_quantize_q4_0_matches_hand_checked_bytes(void **state)
{
	(void)state;
	float x[64] = {0};
	/* block 0: the signed max is -8 -> d = -8 / -8 = 1 (0x3c00);
	 * q = MIN(15, (int)(x + 8.5)) */
	x[0] = -8;     /* 0.5 -> 0 */
	x[1] = 7;      /* 15.5 -> 15 */
	x[2] = 7.4f;   /* 15.9 -> 15 */
	x[3] = -0.5f;  /* 8.0 -> 8 */
	x[4] = -0.6f;  /* 7.9 -> 7 */
	x[16] = 3;     /* 11.5 -> 11 */
	x[17] = -7.9f; /* 0.6 -> 0 */
	/* block 1: the signed max is +8 -> d = -1 (0xbc00), id = -1 */
	x[32] = 8;     /* -8 + 8.5 -> 0 */
	x[33] = -7;    /* 15.5 -> 15 */
	x[34] = -8;    /* 16.5 -> 16, clamped to 15 */
	x[48] = 1;     /* 7.5 -> 7 */
	struct veil_block_q4_0 b[2];
	assert_int_equal(veil_quantize_row(VEIL_DT_Q4_0, x, b, 64), 0);
	assert_int_equal(b[0].d, 0x3c00);
	static const uint8_t want0[16] = {
		0x00 | 0xb0, 0x0f | 0x00, 0x0f | 0x80, 0x08 | 0x80, 0x07 | 0x80,
		0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88};
	assert_memory_equal(b[0].qs, want0, 16);
	assert_int_equal(b[1].d, 0xbc00);
	static const uint8_t want1[16] = {
		0x00 | 0x70, 0x0f | 0x80, 0x0f | 0x80, 0x88, 0x88, 0x88, 0x88, 0x88,
		0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88};
	assert_memory_equal(b[1].qs, want1, 16);
}

static void test_quantize_q8_K_matches_hand_checked_block(void **state)
{
	(void)state;
	float x[256] = {0};
	/* the signed max is -127 -> iscale = -127 / -127 = 1, d = 1;
	 * q = nearest_int (ties to even) */
	x[0] = -127;
	x[1] = 2.5f;  /* 2 */
	x[2] = 3.5f;  /* 4 */
	x[3] = -2.5f; /* -2 */
	x[16] = 5;
	x[255] = 1.4f; /* 1 */
	struct veil_block_q8_K b;
	assert_int_equal(veil_quantize_row(VEIL_DT_Q8_K, x, &b, 256), 0);
	assert_true(b.d == 1.0f);
	assert_int_equal(b.qs[0], -127);
	assert_int_equal(b.qs[1], 2);
	assert_int_equal(b.qs[2], 4);
	assert_int_equal(b.qs[3], -2);
	assert_int_equal(b.qs[16], 5);
	assert_int_equal(b.qs[255], 1);
	assert_int_equal(b.bsums[0], -127 + 2 + 4 - 2);
	assert_int_equal(b.bsums[1], 5);
	assert_int_equal(b.bsums[15], 1);
	/* a positive max gives a negative scale (ggml's -127/max) */
	x[0] = 127;
	assert_int_equal(veil_quantize_row(VEIL_DT_Q8_K, x, &b, 256), 0);
	assert_true(b.d == -1.0f);
	assert_int_equal(b.qs[0], -127);
	assert_int_equal(b.qs[16], -5);
}

/* ---- quantize -> dequantize error bounds -------------------------------- */

static void test_quantize_dequantize_error_within_format_bounds(void **state)
{
	(void)state;
	const int n = 4096;
	float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
	uint8_t *q = malloc(row_bytes(VEIL_DT_F32, n));
	assert_non_null(x);
	assert_non_null(y);
	assert_non_null(q);
	for (int i = 0; i < n; i++) /* magnitudes vary per block */
		x[i] = frand() * (float)(1 + (i / 256) % 7) * 0.37f;

	static const enum veil_dtype ts[] = {
		VEIL_DT_F32, VEIL_DT_F16, VEIL_DT_BF16, VEIL_DT_Q8_0,
		VEIL_DT_Q4_0, VEIL_DT_Q8_K, VEIL_DT_Q4_K, VEIL_DT_Q6_K};
	for (size_t t = 0; t < VEIL_ARRAY_LEN(ts); t++) {
		assert_int_equal(veil_quantize_row(ts[t], x, q, n), 0);
		assert_int_equal(veil_dequantize_row(ts[t], q, y, n), 0);
		for (int b0 = 0; b0 < n; b0 += 256) {
			float amax = 0;
			for (int i = b0; i < b0 + 256; i++)
				amax = fmaxf(amax, fabsf(x[i]));
			for (int i = b0; i < b0 + 256; i++) {
				/* per-element bound from each format's step */
				float am32 = 0;
				for (int j = i / 32 * 32; j < i / 32 * 32 + 32; j++)
					am32 = fmaxf(am32, fabsf(x[j]));
				double bound;
				switch (ts[t]) {
				case VEIL_DT_F32: bound = 0; break;
				case VEIL_DT_F16: bound = fabsf(x[i]) * 0x1p-11 + 0x1p-25; break;
				case VEIL_DT_BF16: bound = fabsf(x[i]) * 0x1p-8; break;
				/* d = amax/127, half a step, plus fp16 rounding of d
				 * (relative 2^-11) times |q| <= 127 */
				case VEIL_DT_Q8_0: bound = am32 / 127 * (0.5 + 127 * 0x1p-11) * 1.0001; break;
				/* |d| = amax/8; clamping at 15 can cost a whole step */
				case VEIL_DT_Q4_0: bound = am32 / 8 * (1 + 16 * 0x1p-11) * 1.0001; break;
				case VEIL_DT_Q8_K: bound = amax / 127 * 0.5001; break;
				/* K-quants: loose bounds (the step is per sub-block
				 * range / 15 or / 63 with 6-/8-bit scales) */
				case VEIL_DT_Q4_K: bound = amax * 0.15; break;
				default: bound = amax * 0.05; break;
				}
				if (!(fabs((double)x[i] - y[i]) <= bound))
					fail_msg("%s element %d: %g -> %g (bound %g)",
						 veil_dtype_name(ts[t]), i, x[i], y[i], bound);
			}
		}
	}
	free(x);
	free(y);
	free(q);
}

static void test_quantize_row_bytes_are_identical_on_every_path(void **state)
{
	(void)state;
	const int n = 1024;
	float *x = malloc(sizeof(float) * n);
	uint8_t *want = malloc(row_bytes(VEIL_DT_F32, n));
	uint8_t *got = malloc(row_bytes(VEIL_DT_F32, n));
	assert_non_null(x);
	assert_non_null(want);
	assert_non_null(got);
	for (int i = 0; i < n; i++)
		x[i] = frand() * 3;
	x[5] = 0.5f * 3 / 127 * 41; /* lands on ties in some blocks */
	static const enum veil_dtype ts[] = {
		VEIL_DT_F16, VEIL_DT_BF16, VEIL_DT_Q8_0, VEIL_DT_Q4_0,
		VEIL_DT_Q8_K, VEIL_DT_Q4_K, VEIL_DT_Q6_K};
	for (size_t t = 0; t < VEIL_ARRAY_LEN(ts); t++) {
		size_t rb = row_bytes(ts[t], n);
		veil_isa_force(VEIL_ISA_SCALAR);
		assert_int_equal(veil_quantize_row(ts[t], x, want, n), 0);
		for (size_t p = 1; p < VEIL_ARRAY_LEN(all_isas); p++) {
			if (veil_isa_force(all_isas[p]) < 0)
				continue;
			memset(got, 0, rb);
			assert_int_equal(veil_quantize_row(ts[t], x, got, n), 0);
			assert_memory_equal(got, want, rb);
		}
	}
	veil_isa_force(veil_isa_best());
	free(x);
	free(want);
	free(got);
}

/* The vectorized Q8_0 activation quantizers must give the scalar
 * reference's bytes (roundf ties away from zero, fp16 scale) on ties at
 * many scales, signed zeros, subnormals, huge values and blocks whose
 * scale underflows fp16. */
static void test_quantize_q8_0_simd_bytes_equal_scalar_on_edge_values(void **state)
{
	(void)state;
	const int nblk = 256, n = nblk * 32;
	float *x = malloc(sizeof(float) * n);
	struct veil_block_q8_0 *want = malloc(sizeof(*want) * nblk);
	struct veil_block_q8_0 *got = malloc(sizeof(*got) * nblk);
	assert_true(x && want && got);
	for (int b = 0; b < nblk; b++) {
		float *xb = x + b * 32;
		/* amax 127 * 2^e makes d = 2^e and id exact: x = (k + 0.5) * 2^e
		 * lands exactly on ties */
		const float sc = ldexpf(1.0f, (b % 40) - 20);
		for (int j = 0; j < 32; j++) {
			switch (b % 8) {
			case 0: case 1: case 2:
				xb[j] = ((float)(int)(rnd32() % 254) - 126.5f) * sc;
				break;
			case 3: /* random, wide dynamic range */
				xb[j] = frand() * ldexpf(1.0f, (int)(rnd32() % 60) - 30);
				break;
			case 4: /* signed zeros and subnormals */
				xb[j] = (j & 1) ? -0.0f : u2f(rnd32() & 0x807fffffu);
				break;
			case 5: /* huge: d = amax / 127 overflows fp16 */
				xb[j] = frand() * 3e38f;
				break;
			case 6: /* tiny: d underflows fp16 to a subnormal or zero */
				xb[j] = frand() * 1e-6f;
				break;
			default:
				xb[j] = frand() * 7;
				break;
			}
		}
		if (b % 8 < 3)
			xb[b % 32] = (b & 1) ? 127 * sc : -127 * sc;
	}
	/* NaN / Inf activations (a model's weights can make them): defined
	 * bytes, the same on every path (the scalar cast of a NaN was
	 * undefined: UBSan in the asan suite) */
	x[7 * 32 + 3] = NAN;
	x[15 * 32 + 5] = INFINITY;
	x[23 * 32] = -INFINITY;
	x[23 * 32 + 1] = NAN;
	/* a block so small that 1/d is infinite: x * id is +-inf */
	for (int j = 0; j < 32; j++)
		x[31 * 32 + j] = (float)(j - 16) * 1e-38f;
	veil_isa_force(VEIL_ISA_SCALAR);
	{
		struct veil_block_q4_0 *q4 = malloc(sizeof(*q4) * nblk);

		assert_non_null(q4);
		assert_int_equal(veil_quantize_row(VEIL_DT_Q4_0, x, q4, n), 0);
		free(q4);
	}
	assert_int_equal(veil_quantize_row(VEIL_DT_Q8_0, x, want, n), 0);
	assert_int_equal(want[7].qs[3], 0); /* the NaN lane */
	for (size_t p = 1; p < VEIL_ARRAY_LEN(all_isas); p++) {
		if (veil_isa_force(all_isas[p]) < 0)
			continue;
		memset(got, 0x55, sizeof(*got) * nblk);
		assert_int_equal(veil_quantize_row(VEIL_DT_Q8_0, x, got, n), 0);
		for (int b = 0; b < nblk; b++)
			if (memcmp(&got[b], &want[b], sizeof(*got)))
				fail_msg("%s: block %d differs from scalar",
					 veil_isa_name(all_isas[p]), b);
	}
	veil_isa_force(veil_isa_best());
	free(x);
	free(want);
	free(got);
}

static void test_rows_reject_partial_blocks_and_unsupported_types(void **state)
{
	(void)state;
	float x[64] = {0}, y[64];
	uint8_t q[512];
	assert_int_equal(veil_quantize_row(VEIL_DT_Q8_0, x, q, 33), VEIL_EINVAL);
	assert_int_equal(veil_dequantize_row(VEIL_DT_Q4_0, q, y, 48), VEIL_EINVAL);
	assert_int_equal(veil_quantize_row(VEIL_DT_Q4_K, x, q, 64), VEIL_EINVAL);
	assert_int_equal(veil_quantize_row(VEIL_DT_Q5_0, x, q, 32), VEIL_ENOTSUP);
	assert_int_equal(veil_dequantize_row(VEIL_DT_Q2_K, q, y, 256), VEIL_ENOTSUP);
	assert_int_equal(veil_quantize_row(VEIL_DT_F16, x, q, 7), 0);
	/* a weight type without a kernel yields NaN, not stale numbers */
	float yy[2] = {1, 1};
	memset(q, 0, sizeof(q));
	veil_gemm(VEIL_DT_Q5_0, 32, q, 22, 0, 2, q, 34, 1, yy, 2);
	assert_true(isnan(yy[0]) && isnan(yy[1]));
}

static void test_activation_types_follow_llama_cpp(void **state)
{
	(void)state;
	assert_int_equal(veil_quant_act_type(VEIL_DT_F32), VEIL_DT_F32);
	assert_int_equal(veil_quant_act_type(VEIL_DT_F16), VEIL_DT_F16);
	assert_int_equal(veil_quant_act_type(VEIL_DT_BF16), VEIL_DT_BF16);
	assert_int_equal(veil_quant_act_type(VEIL_DT_Q8_0), VEIL_DT_Q8_0);
	assert_int_equal(veil_quant_act_type(VEIL_DT_Q4_0), VEIL_DT_Q8_0);
	assert_int_equal(veil_quant_act_type(VEIL_DT_Q4_K), VEIL_DT_Q8_K);
	assert_int_equal(veil_quant_act_type(VEIL_DT_Q6_K), VEIL_DT_Q8_K);
}

/* ---- dispatch ------------------------------------------------------------ */

static void test_isa_dispatch_lists_and_forces_available_paths(void **state)
{
	(void)state;
	veil_quant_init();
	const char *av = veil_isa_available();
	assert_non_null(av);
	assert_memory_equal(av, "scalar", 6);
	enum veil_isa best = veil_isa_best();
	for (size_t p = 0; p < VEIL_ARRAY_LEN(all_isas); p++) {
		enum veil_isa isa = all_isas[p];
		bool listed = strstr(av, veil_isa_name(isa)) != NULL;
		int rc = veil_isa_force(isa);
		assert_int_equal(rc == 0, listed);
		assert_int_equal(rc == 0, isa <= best);
		if (rc == 0)
			assert_int_equal(veil_isa_active(), isa);
	}
	assert_int_equal(veil_isa_force((enum veil_isa)7), VEIL_ENOTSUP);
	assert_int_equal(veil_isa_force(best), 0);
	assert_int_equal(veil_isa_active(), best);
	assert_string_equal(veil_isa_name(VEIL_ISA_AVX512), "avx512");
}

/* ---- gemm against a double-precision reference --------------------------- */

/* Random but well-formed weight rows.  K-quant blocks are random bytes with
 * moderate fp16 scales (independent of the quantizer); the others come from
 * quantizing random floats. */
static void fill_weights(enum veil_dtype t, int K, int rows, uint8_t *w,
			 size_t ws)
{
	float *f = malloc(sizeof(float) * (size_t)K);
	assert_non_null(f);
	for (int r = 0; r < rows; r++) {
		uint8_t *row = w + (size_t)r * ws;
		if (t == VEIL_DT_Q4_K || t == VEIL_DT_Q6_K) {
			size_t rb = row_bytes(t, K);
			for (size_t i = 0; i < rb; i++)
				row[i] = (uint8_t)rnd32();
			for (int b = 0; b < K / 256; b++) {
				uint16_t d = veil_fp32_to_fp16(0.001f + 0.01f * (frand() + 1));
				uint16_t dm = veil_fp32_to_fp16(0.001f + 0.01f * (frand() + 1));
				if (t == VEIL_DT_Q4_K) {
					struct veil_block_q4_K *bk = (void *)row;
					bk[b].d = d;
					bk[b].dmin = dm;
				} else {
					struct veil_block_q6_K *bk = (void *)row;
					bk[b].d = d;
				}
			}
			continue;
		}
		for (int i = 0; i < K; i++)
			f[i] = frand() * (1 + (float)(i % 5));
		assert_int_equal(veil_quantize_row(t, f, row, K), 0);
	}
	free(f);
}

/* For Q4_K: the per-element -dmin*m part (dequantize with q = 0). */
static void q4k_min_part(const uint8_t *row, int K, float *out)
{
	size_t nbk = (size_t)K / 256;
	struct veil_block_q4_K *c = malloc(nbk * sizeof(*c));
	assert_non_null(c);
	memcpy(c, row, nbk * sizeof(*c));
	for (size_t b = 0; b < nbk; b++)
		memset(c[b].qs, 0, sizeof(c[b].qs));
	assert_int_equal(veil_dequantize_row(VEIL_DT_Q4_K, c, out, K), 0);
	free(c);
}

static void check_gemm(enum veil_dtype t, int K, int rows, int nb)
{
	const enum veil_dtype at = veil_quant_act_type(t);
	const int r0 = rows > 2 ? 2 : 0, r1 = rows; /* a row range, not 0.. */
	const size_t ws = row_bytes(t, K) + 64;   /* padded strides */
	const size_t xs = row_bytes(at, K) + 32;
	const size_t ldy = (size_t)rows + 3;
	uint8_t *w = calloc((size_t)rows, ws);
	uint8_t *x = calloc((size_t)nb, xs);
	float *wf = malloc(sizeof(float) * (size_t)K * rows);
	float *wm = malloc(sizeof(float) * (size_t)K * rows);
	float *xf = malloc(sizeof(float) * (size_t)K * nb);
	float *y = malloc(sizeof(float) * ldy * nb);
	double *ref = malloc(sizeof(double) * ldy * nb);
	double *tol = malloc(sizeof(double) * ldy * nb);
	assert_true(w && x && wf && wm && xf && y && ref && tol);

	fill_weights(t, K, rows, w, ws);
	for (int b = 0; b < nb; b++) {
		for (int i = 0; i < K; i++)
			xf[(size_t)b * K + i] = frand() * (1 + (float)((i + b) % 3));
		assert_int_equal(veil_quantize_row(at, xf + (size_t)b * K,
						   x + (size_t)b * xs, K), 0);
		assert_int_equal(veil_dequantize_row(at, x + (size_t)b * xs,
						     xf + (size_t)b * K, K), 0);
	}
	for (int r = 0; r < rows; r++) {
		assert_int_equal(veil_dequantize_row(t, w + (size_t)r * ws,
						     wf + (size_t)r * K, K), 0);
		if (t == VEIL_DT_Q4_K)
			q4k_min_part(w + (size_t)r * ws, K, wm + (size_t)r * K);
		else
			memset(wm + (size_t)r * K, 0, sizeof(float) * (size_t)K);
	}
	for (int b = 0; b < nb; b++) {
		for (int r = r0; r < r1; r++) {
			double s = 0, sa = 0;
			for (int i = 0; i < K; i++) {
				double wv = wf[(size_t)r * K + i];
				double xv = xf[(size_t)b * K + i];
				s += wv * xv;
				sa += (fabs(wv) + fabs((double)wm[(size_t)r * K + i])) * fabs(xv);
			}
			ref[(size_t)b * ldy + r] = s;
			tol[(size_t)b * ldy + r] = 4.0 * (K + 8) * 0x1p-24 * sa + 1e-30;
		}
	}
	for (size_t p = 0; p < VEIL_ARRAY_LEN(all_isas); p++) {
		if (veil_isa_force(all_isas[p]) < 0)
			continue;
		for (size_t i = 0; i < ldy * nb; i++)
			y[i] = -12345.0f; /* sentinel: untouched outside rows */
		veil_gemm(t, K, w, ws, r0, r1, x, xs, nb, y, ldy);
		for (int b = 0; b < nb; b++) {
			for (size_t r = 0; r < ldy; r++) {
				size_t i = (size_t)b * ldy + r;
				if ((int)r < r0 || (int)r >= r1) {
					assert_true(y[i] == -12345.0f);
					continue;
				}
				double err = fabs((double)y[i] - ref[i]);
				if (!(err <= tol[i]))
					fail_msg("%s on %s K=%d rows=%d nb=%d: y[%d][%zu] = %.9g, "
						 "want %.9g (err %.3g > tol %.3g)",
						 veil_dtype_name(t), veil_isa_name(all_isas[p]),
						 K, rows, nb, b, r, y[i], ref[i], err, tol[i]);
			}
		}
	}
	veil_isa_force(veil_isa_best());
	free(w);
	free(x);
	free(wf);
	free(wm);
	free(xf);
	free(y);
	free(ref);
	free(tol);
}

static void gemm_shapes(enum veil_dtype t, const int *Ks, size_t nK)
{
	static const int rows[] = {1, 3, 7, 17};
	static const int nbs[] = {1, 2, 3, 5, 9, 33};
	for (size_t k = 0; k < nK; k++)
		for (size_t r = 0; r < VEIL_ARRAY_LEN(rows); r++)
			for (size_t b = 0; b < VEIL_ARRAY_LEN(nbs); b++)
				check_gemm(t, Ks[k], rows[r], nbs[b]);
}

static const int k32[] = {32, 96, 288, 576, 1056};
static const int kf[] = {1, 7, 16, 33, 100, 576};
static const int kk[] = {256, 768};

static void test_gemm_q8_0_matches_reference_on_every_path(void **state)
{
	(void)state;
	gemm_shapes(VEIL_DT_Q8_0, k32, VEIL_ARRAY_LEN(k32));
}

static void test_gemm_q4_0_matches_reference_on_every_path(void **state)
{
	(void)state;
	gemm_shapes(VEIL_DT_Q4_0, k32, VEIL_ARRAY_LEN(k32));
}

static void test_gemm_f32_matches_reference_on_every_path(void **state)
{
	(void)state;
	gemm_shapes(VEIL_DT_F32, kf, VEIL_ARRAY_LEN(kf));
}

static void test_gemm_f16_matches_reference_on_every_path(void **state)
{
	(void)state;
	gemm_shapes(VEIL_DT_F16, kf, VEIL_ARRAY_LEN(kf));
}

static void test_gemm_bf16_matches_reference_on_every_path(void **state)
{
	(void)state;
	gemm_shapes(VEIL_DT_BF16, kf, VEIL_ARRAY_LEN(kf));
}

static void test_gemm_q4_K_matches_reference_on_every_path(void **state)
{
	(void)state;
	gemm_shapes(VEIL_DT_Q4_K, kk, VEIL_ARRAY_LEN(kk));
}

static void test_gemm_q6_K_matches_reference_on_every_path(void **state)
{
	(void)state;
	gemm_shapes(VEIL_DT_Q6_K, kk, VEIL_ARRAY_LEN(kk));
}

/* Extreme but legal blocks: all quants at their limits (|q| = 127 with the
 * activations at -127 or 127) must not overflow or saturate any path. */
/* Packed weights: every path's packed kernel matches the float reference
 * (same tolerance as check_gemm) on row ranges that start at a group, and
 * on the scalar path equals the plain scalar kernel bit for bit; a packed
 * row dequantizes to the plain row. */
static void check_gemm_packed(enum veil_dtype t, int K, int rows, int nb)
{
	const size_t ws = row_bytes(t, K), xs = row_bytes(VEIL_DT_Q8_0, K) + 2;
	const size_t pb = veil_pack_bytes(t, K, rows);
	uint8_t *w = malloc(ws * (size_t)rows);
	uint8_t *wp = aligned_alloc(64, (pb + 63) & ~(size_t)63);
	uint8_t *x = calloc((size_t)nb, xs);
	float *xf = malloc(sizeof(float) * (size_t)K * nb);
	float *wf = malloc(sizeof(float) * (size_t)K);
	float *wg = malloc(sizeof(float) * (size_t)K);
	float *y = malloc(sizeof(float) * (size_t)rows * nb);
	float *y0 = malloc(sizeof(float) * (size_t)rows * nb);
	double *ref = malloc(sizeof(double) * (size_t)rows * nb);
	double *tol = malloc(sizeof(double) * (size_t)rows * nb);
	assert_true(pb > 0 && w && wp && x && xf && wf && wg && y && y0 && ref && tol);

	fill_weights(t, K, rows, w, ws);
	if (t == VEIL_DT_Q8_0) /* raw bytes too: -128 is a valid weight */
		for (int b = 0; b < K / 32; b++)
			for (int j = 0; j < 32; j++)
				((struct veil_block_q8_0 *)(void *)(w + ws))[b].qs[j] =
					(int8_t)(j % 2 ? -128 : 127 - (int)(rnd32() % 8));
	assert_int_equal(veil_pack_rows(t, K, w, ws, rows, wp), 0);
	for (int a = 0; a < nb; a++) {
		for (int i = 0; i < K; i++)
			xf[(size_t)a * K + i] = frand() * (1 + (float)((i + a) % 3));
		if (a == 1)
			for (int i = 0; i < K; i++) /* extreme activations */
				xf[(size_t)a * K + i] = i % 2 ? -1.0f : 1.0f;
		assert_int_equal(veil_quantize_row(VEIL_DT_Q8_0, xf + (size_t)a * K,
						   x + (size_t)a * xs, K), 0);
		assert_int_equal(veil_dequantize_row(VEIL_DT_Q8_0, x + (size_t)a * xs,
						     xf + (size_t)a * K, K), 0);
	}
	for (int r = 0; r < rows; r++) {
		assert_int_equal(veil_dequantize_row(t, w + (size_t)r * ws, wf, K), 0);
		veil_packed_row_f32(t, K, wp, r, wg);
		assert_memory_equal(wf, wg, sizeof(float) * (size_t)K);
		for (int a = 0; a < nb; a++) {
			double sum = 0, sa = 0;
			for (int i = 0; i < K; i++) {
				sum += (double)wf[i] * xf[(size_t)a * K + i];
				sa += fabs((double)wf[i] * xf[(size_t)a * K + i]);
			}
			ref[(size_t)a * rows + r] = sum;
			tol[(size_t)a * rows + r] = 4.0 * (K + 8) * 0x1p-24 * sa + 1e-30;
		}
	}
	veil_isa_force(VEIL_ISA_SCALAR);
	veil_gemm(t, K, w, ws, 0, rows, x, xs, nb, y0, (size_t)rows);
	for (size_t p = 0; p < VEIL_ARRAY_LEN(all_isas); p++) {
		if (veil_isa_force(all_isas[p]) < 0)
			continue;
		for (int r0 = 0; r0 < rows; r0 += rows > 16 ? 16 : rows) {
			for (size_t i = 0; i < (size_t)rows * nb; i++)
				y[i] = -12345.0f;
			veil_gemm_packed(t, K, wp, r0, rows, x, xs, nb, y, (size_t)rows);
			for (int a = 0; a < nb; a++) {
				for (int r = 0; r < rows; r++) {
					const size_t i = (size_t)a * rows + r;
					if (r < r0) {
						assert_true(y[i] == -12345.0f);
						continue;
					}
					if (all_isas[p] == VEIL_ISA_SCALAR && y[i] != y0[i])
						fail_msg("packed scalar %s K=%d: y[%d][%d] = %.9g, "
							 "plain %.9g", veil_dtype_name(t), K, a, r,
							 y[i], y0[i]);
					if (!(fabs((double)y[i] - ref[i]) <= tol[i]))
						fail_msg("packed %s on %s K=%d rows=%d nb=%d: "
							 "y[%d][%d] = %.9g, want %.9g",
							 veil_dtype_name(t), veil_isa_name(all_isas[p]),
							 K, rows, nb, a, r, y[i], ref[i]);
				}
			}
		}
	}
	veil_isa_force(veil_isa_best());
	free(w);
	free(wp);
	free(x);
	free(xf);
	free(wf);
	free(wg);
	free(y);
	free(y0);
	free(ref);
	free(tol);
}

static void test_gemm_packed_matches_reference_on_every_path(void **state)
{
	(void)state;
	static const int ks[] = {32, 96, 576, 1056};
	static const int rows[] = {16, 48};
	static const int nbs[] = {1, 2, 3, 8, 9, 17};
	static const enum veil_dtype ts[] = {VEIL_DT_Q8_0, VEIL_DT_Q4_0};
	for (size_t t = 0; t < VEIL_ARRAY_LEN(ts); t++)
		for (size_t k = 0; k < VEIL_ARRAY_LEN(ks); k++)
			for (size_t r = 0; r < VEIL_ARRAY_LEN(rows); r++)
				for (size_t b = 0; b < VEIL_ARRAY_LEN(nbs); b++)
					check_gemm_packed(ts[t], ks[k], rows[r], nbs[b]);
}

static void test_pack_rejects_partial_groups_and_other_types(void **state)
{
	(void)state;
	uint8_t w[34 * 17], dst[64 * 64] __attribute__((aligned(64)));
	memset(w, 0, sizeof(w));
	assert_int_equal(veil_pack_bytes(VEIL_DT_Q8_0, 32, 17), 0);
	assert_int_equal(veil_pack_rows(VEIL_DT_Q8_0, 32, w, 34, 17, dst), VEIL_EINVAL);
	assert_int_equal(veil_pack_rows(VEIL_DT_F16, 32, w, 64, 16, dst), VEIL_EINVAL);
	assert_false(veil_pack_worthwhile(VEIL_DT_Q4_K, 256, 16));
	assert_true(veil_pack_bytes(VEIL_DT_Q8_0, 32, 16) % 64 == 0);
	assert_true(veil_pack_bytes(VEIL_DT_Q8_0, 32, 16) >= 16 * 34);
}

static void test_gemm_q8_0_extreme_quants_do_not_saturate(void **state)
{
	(void)state;
	const int K = 256, rows = 5;
	struct veil_block_q8_0 w[5 * 8], x[2 * 8];
	for (int i = 0; i < rows * 8; i++) {
		w[i].d = 0x3c00;
		for (int j = 0; j < 32; j++)
			w[i].qs[j] = (int8_t)((i + j) % 3 == 0 ? -127 : 127);
	}
	for (int i = 0; i < 16; i++) {
		x[i].d = 0x3c00;
		for (int j = 0; j < 32; j++)
			x[i].qs[j] = (int8_t)(i < 8 ? 127 : -127);
	}
	for (size_t p = 0; p < VEIL_ARRAY_LEN(all_isas); p++) {
		if (veil_isa_force(all_isas[p]) < 0)
			continue;
		float y[2 * 5];
		veil_gemm(VEIL_DT_Q8_0, K, w, 8 * sizeof(w[0]), 0, rows, x,
			  8 * sizeof(x[0]), 2, y, rows);
		for (int r = 0; r < rows; r++) {
			long s = 0;
			for (int b = 0; b < 8; b++)
				for (int j = 0; j < 32; j++)
					s += w[r * 8 + b].qs[j] * 127L;
			assert_true(y[r] == (float)s);
			assert_true(y[rows + r] == (float)-s);
		}
	}
	veil_isa_force(veil_isa_best());
}

/* Weights and activations in buffers of exactly their size, rows packed
 * without padding and an odd number of blocks per row: no path may read past
 * the end (under ASan an over-read fails here; without it the result is
 * still checked against the scalar path). */
static void test_gemm_reads_nothing_past_exact_sized_buffers(void **state)
{
	(void)state;
	static const enum veil_dtype ts[] = {
		VEIL_DT_F32, VEIL_DT_F16, VEIL_DT_BF16, VEIL_DT_Q8_0,
		VEIL_DT_Q4_0, VEIL_DT_Q4_K, VEIL_DT_Q6_K};
	for (size_t t = 0; t < VEIL_ARRAY_LEN(ts); t++) {
		const bool kq = ts[t] == VEIL_DT_Q4_K || ts[t] == VEIL_DT_Q6_K;
		const int K = kq ? 768 : 96, rows = 5, nb = 3;
		const enum veil_dtype at = veil_quant_act_type(ts[t]);
		const size_t ws = row_bytes(ts[t], K), xs = row_bytes(at, K);
		uint8_t *w = malloc(ws * rows), *x = malloc(xs * nb);
		float *xf = malloc(sizeof(float) * K);
		float y0[15], y1[15];
		assert_true(w && x && xf);
		fill_weights(ts[t], K, rows, w, ws);
		for (int b = 0; b < nb; b++) {
			for (int i = 0; i < K; i++)
				xf[i] = frand();
			assert_int_equal(veil_quantize_row(at, xf, x + (size_t)b * xs, K), 0);
		}
		veil_isa_force(VEIL_ISA_SCALAR);
		veil_gemm(ts[t], K, w, ws, 0, rows, x, xs, nb, y0, rows);
		for (size_t p = 1; p < VEIL_ARRAY_LEN(all_isas); p++) {
			if (veil_isa_force(all_isas[p]) < 0)
				continue;
			veil_gemm(ts[t], K, w, ws, 0, rows, x, xs, nb, y1, rows);
			for (int i = 0; i < rows * nb; i++) {
				assert_true(fabs((double)y1[i] - y0[i]) <=
					    1e-4 * (fabs((double)y0[i]) + 1));
			}
		}
		free(w);
		free(x);
		free(xf);
	}
	veil_isa_force(veil_isa_best());
}

/* ---- vector helpers ------------------------------------------------------ */

static void test_vec_helpers_match_reference_on_every_path(void **state)
{
	(void)state;
	static const int lens[] = {1, 7, 8, 16, 17, 31, 33, 64, 100, 129};
	uint16_t a[129], v[129];
	float xf[129], yv[129], y0[129];
	for (int i = 0; i < 129; i++) {
		a[i] = veil_fp32_to_fp16(frand() * 4);
		v[i] = veil_fp32_to_fp16(frand() * 4);
		xf[i] = frand() * 4;
		y0[i] = frand();
	}
	for (size_t p = 0; p < VEIL_ARRAY_LEN(all_isas); p++) {
		if (veil_isa_force(all_isas[p]) < 0)
			continue;
		for (size_t l = 0; l < VEIL_ARRAY_LEN(lens); l++) {
			int n = lens[l];
			double s16 = 0, a16 = 0, s32 = 0, a32 = 0;
			for (int i = 0; i < n; i++) {
				double p16 = (double)veil_fp16_to_fp32(a[i]) * veil_fp16_to_fp32(v[i]);
				double p32 = (double)xf[i] * y0[i];
				s16 += p16;
				a16 += fabs(p16);
				s32 += p32;
				a32 += fabs(p32);
			}
			/* same summation-error argument as for gemm */
			assert_true(fabs(veil_vec_dot_f16(a, v, n) - s16) <= 4.0 * (n + 8) * 0x1p-24 * a16);
			assert_true(fabs(veil_vec_dot_f32(xf, y0, n) - s32) <= 4.0 * (n + 8) * 0x1p-24 * a32);
			/* y += a*v: one fused or two roundings per element */
			memcpy(yv, y0, sizeof(yv));
			veil_vec_mad_f16(yv, v, 0.75f, n);
			for (int i = 0; i < 129; i++) {
				double want = i < n ? (double)y0[i] + 0.75 * veil_fp16_to_fp32(v[i])
						    : (double)y0[i];
				assert_true(fabs(yv[i] - want) <= 0x1p-22 * (fabs(y0[i]) + 3 + fabs(want)));
				if (i >= n)
					assert_true(yv[i] == y0[i]);
			}
		}
	}
	veil_isa_force(veil_isa_best());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fp16_to_fp32_is_exact_for_all_65536_values),
		cmocka_unit_test(test_fp32_to_fp16_round_trips_every_fp16_value),
		cmocka_unit_test(test_fp32_to_fp16_rounds_to_nearest_even_like_reference),
		cmocka_unit_test(test_bf16_conversions_round_to_nearest_even_and_quiet_nans),
		cmocka_unit_test(test_row_conversions_match_scalar_bits_on_every_path),
		cmocka_unit_test(test_quantize_q8_0_matches_hand_checked_bytes),
		cmocka_unit_test(test_quantize_q4_0_matches_hand_checked_bytes),
		cmocka_unit_test(test_quantize_q8_K_matches_hand_checked_block),
		cmocka_unit_test(test_quantize_dequantize_error_within_format_bounds),
		cmocka_unit_test(test_quantize_row_bytes_are_identical_on_every_path),
		cmocka_unit_test(test_quantize_q8_0_simd_bytes_equal_scalar_on_edge_values),
		cmocka_unit_test(test_rows_reject_partial_blocks_and_unsupported_types),
		cmocka_unit_test(test_activation_types_follow_llama_cpp),
		cmocka_unit_test(test_isa_dispatch_lists_and_forces_available_paths),
		cmocka_unit_test(test_gemm_q8_0_matches_reference_on_every_path),
		cmocka_unit_test(test_gemm_q4_0_matches_reference_on_every_path),
		cmocka_unit_test(test_gemm_f32_matches_reference_on_every_path),
		cmocka_unit_test(test_gemm_f16_matches_reference_on_every_path),
		cmocka_unit_test(test_gemm_bf16_matches_reference_on_every_path),
		cmocka_unit_test(test_gemm_q4_K_matches_reference_on_every_path),
		cmocka_unit_test(test_gemm_q6_K_matches_reference_on_every_path),
		cmocka_unit_test(test_gemm_packed_matches_reference_on_every_path),
		cmocka_unit_test(test_pack_rejects_partial_groups_and_other_types),
		cmocka_unit_test(test_gemm_q8_0_extreme_quants_do_not_saturate),
		cmocka_unit_test(test_gemm_reads_nothing_past_exact_sized_buffers),
		cmocka_unit_test(test_vec_helpers_match_reference_on_every_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
