/* AVX-512 element-wise kernels of the forward pass; see ops.h and
 * ops_avx2.c (same exp: degree-7 Taylor after reduction by ln 2; scalef
 * applies 2^n with correct overflow to inf and underflow to 0). */
#include <float.h>
#include <immintrin.h>
#include <math.h>

#include "ops.h"

#define AI __attribute__((always_inline)) static inline

AI __m512 exp16(__m512 x)
{
	__m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-110.0f)),
				  _mm512_set1_ps(90.0f));
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504f)),
					_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), xc);
	__m512 p;

	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
	p = _mm512_set1_ps(1.98412698e-4f);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.38888889e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.33333333e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.16666667e-2f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.66666667e-1f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	return _mm512_scalef_ps(p, n);
}

static void softmax_avx512(float *s, int n, float scale)
{
	const __m512 sc = _mm512_set1_ps(scale);
	__m512 vm = _mm512_set1_ps(-INFINITY);
	double sum = 0.0;
	float mx;
	int i = 0;

	for (; i < n; i += 16) {
		__mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
		__m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + i), sc);

		_mm512_mask_storeu_ps(s + i, m, v);
		vm = _mm512_mask_max_ps(vm, m, vm, v);
	}
	mx = _mm512_reduce_max_ps(vm);
	{
		const __m512 vmx = _mm512_set1_ps(mx);

		for (i = 0; i < n; i += 16) {
			__mmask16 m = n - i >= 16 ? (__mmask16)0xffff
						  : (__mmask16)((1u << (n - i)) - 1);
			__m512 v = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), vmx));

			v = _mm512_maskz_mov_ps(m, v);
			_mm512_mask_storeu_ps(s + i, m, v);
			sum += (double)_mm512_reduce_add_ps(v);
		}
	}
	{
		const __m512 vi = _mm512_set1_ps((float)(1.0 / sum));

		for (i = 0; i < n; i += 16) {
			__mmask16 m = n - i >= 16 ? (__mmask16)0xffff
						  : (__mmask16)((1u << (n - i)) - 1);

			_mm512_mask_storeu_ps(s + i, m,
					      _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + i), vi));
		}
	}
}

static void silu_mul_avx512(float *g, const float *u, int n)
{
	const __m512 one = _mm512_set1_ps(1.0f);

	for (int i = 0; i < n; i += 16) {
		__mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
		__m512 x = _mm512_maskz_loadu_ps(m, g + i);
		__m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));

		x = _mm512_div_ps(x, _mm512_add_ps(one, e));
		_mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(x, _mm512_maskz_loadu_ps(m, u + i)));
	}
}

static double sumsq_avx512(const float *x, int n)
{
	__m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();

	for (int i = 0; i < n; i += 16) {
		__mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
		__m512 v = _mm512_maskz_loadu_ps(m, x + i);

		v = _mm512_mul_ps(v, v);
		a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
		a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
	}
	return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}

/* T tokens x 64 positions per block; the key block stays in L1 across the
 * token groups.  `full`: all 64 positions are inside n, so the loads need
 * no mask (masked loads are slow on AMD cores). */
AI void qk_block16(const int T, const bool full, const float *q, int hd,
		   const uint16_t *kt, size_t kts, int j, int n, float *s,
		   size_t lds)
{
	__m512 acc[4][4];
	__mmask16 m[4];

	for (int v = 0; v < 4; v++) {
		int left = n - j - 16 * v;

		m[v] = left >= 16 ? (__mmask16)0xffff
				  : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
	}
#pragma GCC unroll 4
	for (int t = 0; t < T; t++)
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			acc[t][v] = _mm512_setzero_ps();
	for (int d = 0; d < hd; d++) {
		const uint16_t *kr = kt + (size_t)d * kts + j;
		__m512 kv[4];

		/* rows are a stride apart (one stream each): fetch ahead */
		_mm_prefetch((const char *)(kr + 8 * kts), _MM_HINT_T0);
		_mm_prefetch((const char *)(kr + 8 * kts) + 64, _MM_HINT_T0);

#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			kv[v] = _mm512_cvtph_ps(full ? _mm256_loadu_si256((const void *)(kr + 16 * v))
						     : _mm256_maskz_loadu_epi16(m[v], kr + 16 * v));
#pragma GCC unroll 4
		for (int t = 0; t < T; t++) {
			const __m512 qb = _mm512_set1_ps(q[(size_t)t * hd + d]);

#pragma GCC unroll 4
			for (int v = 0; v < 4; v++)
				acc[t][v] = _mm512_fmadd_ps(qb, kv[v], acc[t][v]);
		}
	}
#pragma GCC unroll 4
	for (int t = 0; t < T; t++)
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			_mm512_mask_storeu_ps(s + (size_t)t * lds + j + 16 * v, m[v], acc[t][v]);
}

#define QKB(T) (full ? qk_block16(T, true, qt, hd, kt, kts, j, n, st, lds) \
		     : qk_block16(T, false, qt, hd, kt, kts, j, n, st, lds))

static void qk_avx512(const float *q, int nt, int hd, const uint16_t *kt,
		      size_t kts, int n, float *s, size_t lds)
{
	for (int j = 0; j < n; j += 64) {
		const bool full = n - j >= 64;

		for (int t = 0; t < nt; t += 4) {
			const float *qt = q + (size_t)t * hd;
			float *st = s + (size_t)t * lds;

			switch (nt - t) {
			case 1:
				QKB(1);
				break;
			case 2:
				QKB(2);
				break;
			case 3:
				QKB(3);
				break;
			default:
				QKB(4);
				break;
			}
		}
	}
}

#undef QKB

/* The sampler's greedy argmax in two passes (ops.h says what it returns;
 * a 49k-logit row per sequence and step: at 64 sequences the sampler's
 * one-pass scan was about 2% of a step's CPU).  Pass one takes the maximum:
 * min(FLT_MAX, v) maps +inf to FLT_MAX and keeps a NaN (vminps returns its
 * second operand when one is NaN), and max(v, m) keeps the accumulator
 * when v is NaN, so NaN never wins.  Pass two returns the first index
 * whose clamped value equals that maximum (ordered compare: never a NaN):
 * the lowest index among equal maxima, -0 and +0 equal.  The row is in
 * cache after pass one. */
static int32_t argmax_avx512(const float *l, size_t n)
{
	const __m512 big = _mm512_set1_ps(FLT_MAX);
	__m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0, vmx;
	float mx;
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		m0 = _mm512_max_ps(_mm512_min_ps(big, _mm512_loadu_ps(l + i)), m0);
		m1 = _mm512_max_ps(_mm512_min_ps(big, _mm512_loadu_ps(l + i + 16)), m1);
	}
	for (; i + 16 <= n; i += 16)
		m0 = _mm512_max_ps(_mm512_min_ps(big, _mm512_loadu_ps(l + i)), m0);
	mx = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
	for (; i < n; i++)
		if (veil_ops_clamp_inf(l[i]) > mx)
			mx = veil_ops_clamp_inf(l[i]);
	if (mx == -INFINITY)
		return -1;
	vmx = _mm512_set1_ps(mx);
	for (i = 0; i + 16 <= n; i += 16) {
		__mmask16 k = _mm512_cmp_ps_mask(_mm512_min_ps(big, _mm512_loadu_ps(l + i)),
						 vmx, _CMP_EQ_OQ);

		if (k)
			return (int32_t)(i + (size_t)__builtin_ctz(k));
	}
	return veil_ops_argmax_tail(l, i, n, mx);
}

void veil_ops_fill_avx512(struct veil_ops *o)
{
	o->softmax = softmax_avx512;
	o->silu_mul = silu_mul_avx512;
	o->sumsq = sumsq_avx512;
	o->qk = qk_avx512;
	o->argmax = argmax_avx512;
}
