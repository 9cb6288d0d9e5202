/* AVX2 + FMA element-wise kernels of the forward pass; see ops.h.
 *
 * exp: n = round(x / ln 2), r = x - n ln 2 (two-part ln 2), e^r by its
 * degree-7 Taylor polynomial (|r| <= 0.347: truncation < 1e-8 relative),
 * times 2^n built in the exponent field in two halves so n = 128 does not
 * overflow early.  Results below FLT_MIN flush to 0, above FLT_MAX are inf. */
#include <float.h>
#include <immintrin.h>
#include <math.h>

#include "ops.h"

#define AI __attribute__((always_inline)) static inline

AI __m256 exp8(__m256 x)
{
	const __m256 lo = _mm256_set1_ps(-87.3365447f), hi = _mm256_set1_ps(88.7228394f);
	__m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
	__m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504f)),
				   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), xc);
	__m256 p;
	__m256i ni, n1, n2;
	__m256 res;

	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
	p = _mm256_set1_ps(1.98412698e-4f);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.38888889e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.33333333e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.16666667e-2f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.66666667e-1f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
	ni = _mm256_cvtps_epi32(n);
	n1 = _mm256_srai_epi32(ni, 1);
	n2 = _mm256_sub_epi32(ni, n1);
	n1 = _mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23);
	n2 = _mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23);
	res = _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(n1)),
			    _mm256_castsi256_ps(n2));
	res = _mm256_blendv_ps(res, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
	res = _mm256_blendv_ps(res, _mm256_set1_ps(INFINITY),
			       _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
	return res;
}

AI float hsum8(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

AI float hmax8(__m256 v)
{
	__m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	s = _mm_max_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

static void softmax_avx2(float *s, int n, float scale)
{
	const __m256 sc = _mm256_set1_ps(scale);
	__m256 vm = _mm256_set1_ps(-INFINITY);
	float mx;
	double sum = 0.0;
	int i = 0;

	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + i), sc);

		_mm256_storeu_ps(s + i, v);
		vm = _mm256_max_ps(vm, v);
	}
	mx = hmax8(vm);
	for (; i < n; i++) {
		s[i] *= scale;
		mx = s[i] > mx ? s[i] : mx;
	}
	{
		const __m256 vmx = _mm256_set1_ps(mx);

		for (i = 0; i + 8 <= n; i += 8) {
			__m256 v = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), vmx));

			_mm256_storeu_ps(s + i, v);
			sum += (double)hsum8(v);
		}
	}
	for (; i < n; i++) {
		s[i] = expf(s[i] - mx);
		sum += (double)s[i];
	}
	{
		const float inv = (float)(1.0 / sum);
		const __m256 vi = _mm256_set1_ps(inv);

		for (i = 0; i + 8 <= n; i += 8)
			_mm256_storeu_ps(s + i, _mm256_mul_ps(_mm256_loadu_ps(s + i), vi));
		for (; i < n; i++)
			s[i] *= inv;
	}
}

static void silu_mul_avx2(float *g, const float *u, int n)
{
	const __m256 one = _mm256_set1_ps(1.0f);
	int i = 0;

	for (; i + 8 <= n; i += 8) {
		__m256 x = _mm256_loadu_ps(g + i);
		__m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));

		x = _mm256_div_ps(x, _mm256_add_ps(one, e));
		_mm256_storeu_ps(g + i, _mm256_mul_ps(x, _mm256_loadu_ps(u + i)));
	}
	for (; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static double sumsq_avx2(const float *x, int n)
{
	__m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
	double sum;
	int i = 0;

	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);

		v = _mm256_mul_ps(v, v);
		a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
		a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
	}
	a0 = _mm256_add_pd(a0, a1);
	{
		__m128d h = _mm_add_pd(_mm256_castpd256_pd128(a0), _mm256_extractf128_pd(a0, 1));

		sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
	}
	for (; i < n; i++)
		sum += (double)(x[i] * x[i]);
	return sum;
}

/* T tokens x 32 positions per block. */
AI void qk_block8(const int T, const float *q, int hd, const uint16_t *kt,
		  size_t kts, int j, int n, float *s, size_t lds)
{
	__m256 acc[2][4];
	float tmp[8];

#pragma GCC unroll 2
	for (int t = 0; t < T; t++)
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			acc[t][v] = _mm256_setzero_ps();
	if (n - j >= 32) {
		for (int d = 0; d < hd; d++) {
			const uint16_t *kr = kt + (size_t)d * kts + j;
			__m256 kv[4];

#pragma GCC unroll 4
			for (int v = 0; v < 4; v++)
				kv[v] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kr + 8 * v)));
#pragma GCC unroll 2
			for (int t = 0; t < T; t++) {
				const __m256 qb = _mm256_set1_ps(q[(size_t)t * hd + d]);

#pragma GCC unroll 4
				for (int v = 0; v < 4; v++)
					acc[t][v] = _mm256_fmadd_ps(qb, kv[v], acc[t][v]);
			}
		}
#pragma GCC unroll 2
		for (int t = 0; t < T; t++)
#pragma GCC unroll 4
			for (int v = 0; v < 4; v++)
				_mm256_storeu_ps(s + (size_t)t * lds + j + 8 * v, acc[t][v]);
		return;
	}
	/* tail: fewer than 32 positions, 8 at a time in zero-padded lanes
	 * with the full block's fused multiply-adds, so a position's score
	 * does not depend on where a tile ends (batch composition) */
	for (int t = 0; t < T; t++) {
		float *st = s + (size_t)t * lds;

		for (int jj = j; jj < n; jj += 8) {
			int w = n - jj < 8 ? n - jj : 8;
			__m256 a = _mm256_setzero_ps();

			for (int d = 0; d < hd; d++) {
				const uint16_t *kr = kt + (size_t)d * kts + jj;
				uint16_t h[8] = {0};

				for (int i = 0; i < w; i++)
					h[i] = kr[i];
				a = _mm256_fmadd_ps(_mm256_set1_ps(q[(size_t)t * hd + d]),
						    _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)), a);
			}
			_mm256_storeu_ps(tmp, a);
			for (int i = 0; i < w; i++)
				st[jj + i] = tmp[i];
		}
	}
}

static void qk_avx2(const float *q, int nt, int hd, const uint16_t *kt,
		    size_t kts, int n, float *s, size_t lds)
{
	for (int j = 0; j < n; j += 32)
		for (int t = 0; t < nt; t += 2) {
			const float *qt = q + (size_t)t * hd;
			float *st = s + (size_t)t * lds;

			if (nt - t == 1)
				qk_block8(1, qt, hd, kt, kts, j, n, st, lds);
			else
				qk_block8(2, qt, hd, kt, kts, j, n, st, lds);
		}
}

/* The sampler's greedy argmax in two passes (ops.h says what it returns;
 * a 49k-logit row per sequence and step: at 64 sequences the sampler's
 * one-pass scan was about 2% of a step's CPU).  Pass one takes the maximum:
 * min(FLT_MAX, v) maps +inf to FLT_MAX and keeps a NaN (vminps returns its
 * second operand when one is NaN), and max(v, m) keeps the accumulator
 * when v is NaN, so NaN never wins.  Pass two returns the first index
 * whose clamped value equals that maximum (ordered compare: never a NaN):
 * the lowest index among equal maxima, -0 and +0 equal.  The row is in
 * cache after pass one. */
static int32_t argmax_avx2(const float *l, size_t n)
{
	const __m256 big = _mm256_set1_ps(FLT_MAX);
	__m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, vmx;
	__m128 h;
	float mx;
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		m0 = _mm256_max_ps(_mm256_min_ps(big, _mm256_loadu_ps(l + i)), m0);
		m1 = _mm256_max_ps(_mm256_min_ps(big, _mm256_loadu_ps(l + i + 8)), m1);
	}
	for (; i + 8 <= n; i += 8)
		m0 = _mm256_max_ps(_mm256_min_ps(big, _mm256_loadu_ps(l + i)), m0);
	m0 = _mm256_max_ps(m0, m1);
	h = _mm_max_ps(_mm256_castps256_ps128(m0), _mm256_extractf128_ps(m0, 1));
	h = _mm_max_ps(h, _mm_movehl_ps(h, h));
	h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
	mx = _mm_cvtss_f32(h);
	for (; i < n; i++)
		if (veil_ops_clamp_inf(l[i]) > mx)
			mx = veil_ops_clamp_inf(l[i]);
	if (mx == -INFINITY)
		return -1;
	vmx = _mm256_set1_ps(mx);
	for (i = 0; i + 8 <= n; i += 8) {
		int k = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_min_ps(big, _mm256_loadu_ps(l + i)),
							 vmx, _CMP_EQ_OQ));

		if (k)
			return (int32_t)(i + (size_t)__builtin_ctz((unsigned)k));
	}
	return veil_ops_argmax_tail(l, i, n, mx);
}

void veil_ops_fill_avx2(struct veil_ops *o)
{
	o->softmax = softmax_avx2;
	o->silu_mul = silu_mul_avx2;
	o->sumsq = sumsq_avx2;
	o->qk = qk_avx2;
	o->argmax = argmax_avx2;
}
