/* AVX2 + FMA + F16C kernels.
 *
 * Quantized types use ggml's sign trick: VPMADDUBSW multiplies unsigned by
 * signed bytes, so |w| is dotted with x carrying w's sign, then VPMADDWD sums
 * pairs into int32.  |w| <= 127 and |x| <= 127 keep the int16 pair sums
 * below 32767 (no saturation), so each block's integer dot is exact.
 *
 * Float types (F32, F16, BF16) convert the activation rows to F32 once per
 * call (exact for all three) and accumulate products in F32 with FMA.
 *
 * Tiles of 4 weight rows x 1 or 2 activation rows: each loaded weight block
 * is used for every activation row of the tile (prefill), and four rows are
 * streamed at once (decode).  The Q8_0 activation quantizer is vectorized
 * but produces the scalar reference's bytes exactly (see quantize_q8_0);
 * the other quantizers are not overridden, so bytes never depend on the
 * CPU. */
#include <immintrin.h>
#include <string.h>

#include "quant_impl.h"

#define AI __attribute__((always_inline)) static inline

static inline float h2f(uint16_t h)
{
	return _cvtsh_ss(h);
}

AI float hsum8(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* ---- Q8_0 and Q4_0 ------------------------------------------------------ */

enum { WT_Q8_0 = 0, WT_Q4_0 = 1 };

/* The 32 quants of a weight block as signed bytes in activation order. */
AI __m256i wq(const int wt, const uint8_t *blk)
{
	if (wt == WT_Q8_0)
		return _mm256_loadu_si256((const void *)(blk + 2));
	__m128i t = _mm_loadu_si128((const void *)(blk + 2));
	__m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(t),
					    _mm_srli_epi16(t, 4), 1);
	v = _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
	return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
}

AI __m256 dot_blk(__m256i aw, __m256i w, __m256i x)
{
	__m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w));
	return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* pf > 0: prefetch each weight line pf bytes ahead (decode; see
 * quant_avx512vnni.c for why). */
AI void qtile(const int wt, const int R, const int A, int nblk,
	      const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
	      float *y, size_t ldy, size_t pf)
{
	const int bb = wt == WT_Q8_0 ? 34 : 18;
	__m256 acc[4][2];
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
#pragma GCC unroll 2
		for (int a = 0; a < A; a++)
			acc[r][a] = _mm256_setzero_ps();
	for (int b = 0; b < nblk; b++) {
		__m256i wv[4], aw[4];
		float dw[4];
#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			const uint8_t *blk = w + (size_t)r * ws + (size_t)b * bb;
			if (pf)
				_mm_prefetch((const char *)blk + pf, _MM_HINT_T0);
			uint16_t d;
			memcpy(&d, blk, 2);
			dw[r] = h2f(d);
			wv[r] = wq(wt, blk);
			aw[r] = _mm256_sign_epi8(wv[r], wv[r]);
		}
#pragma GCC unroll 2
		for (int a = 0; a < A; a++) {
			const struct veil_block_q8_0 *xb =
				(const void *)(x + (size_t)a * xs + (size_t)b * 34);
			const __m256i xv = _mm256_loadu_si256((const void *)xb->qs);
			const float dx = h2f(xb->d);
#pragma GCC unroll 4
			for (int r = 0; r < R; r++)
				acc[r][a] = _mm256_fmadd_ps(dot_blk(aw[r], wv[r], xv),
							    _mm256_set1_ps(dw[r] * dx),
							    acc[r][a]);
		}
	}
#pragma GCC unroll 2
	for (int a = 0; a < A; a++)
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
			y[(size_t)a * ldy + r] = hsum8(acc[r][a]);
}

#define QT(wt, R, A) qtile(wt, R, A, nblk, wr, ws, xa, xs, yo, ldy, pf)

AI void gemm_q(const int wt, int K, const void *w, size_t ws, int r0, int r1,
	       const void *x, size_t xs, int nb, float *y, size_t ldy)
{
	const int nblk = K / 32;
	const size_t pf = nb == 1 ? VEIL_MAX(4, (6144 + ws - 1) / ws) * ws : 0;
	for (int r = r0; r < r1; r += 4) {
		const int R = VEIL_MIN(4, r1 - r);
		const uint8_t *wr = (const uint8_t *)w + (size_t)r * ws;
		for (int a = 0; a < nb; a += 2) {
			const uint8_t *xa = (const uint8_t *)x + (size_t)a * xs;
			float *yo = y + (size_t)a * ldy + r;
			if (nb - a >= 2) {
				switch (R) {
				case 4: QT(wt, 4, 2); break;
				case 3: QT(wt, 3, 2); break;
				case 2: QT(wt, 2, 2); break;
				default: QT(wt, 1, 2); break;
				}
			} else {
				switch (R) {
				case 4: QT(wt, 4, 1); break;
				case 3: QT(wt, 3, 1); break;
				case 2: QT(wt, 2, 1); break;
				default: QT(wt, 1, 1); break;
				}
			}
		}
	}
}

static void gemm_q8_0(int K, const void *w, size_t ws, int r0, int r1,
		      const void *x, size_t xs, int nb, float *y, size_t ldy)
{
	gemm_q(WT_Q8_0, K, w, ws, r0, r1, x, xs, nb, y, ldy);
}

static void gemm_q4_0(int K, const void *w, size_t ws, int r0, int r1,
		      const void *x, size_t xs, int nb, float *y, size_t ldy)
{
	gemm_q(WT_Q4_0, K, w, ws, r0, r1, x, xs, nb, y, ldy);
}

/* ---- Q4_K and Q6_K (x Q8_K) -------------------------------------------- */

/* Unpacks Q4_K's 12 scale bytes into 8 scales and 8 mins (ggml
 * get_scale_min_k4). */
static inline void q4k_scales(const uint8_t *q, int16_t *sc, int16_t *mn)
{
	for (int j = 0; j < 4; j++) {
		sc[j] = q[j] & 63;
		mn[j] = q[j + 4] & 63;
		sc[j + 4] = (int16_t)((q[j + 8] & 0x0f) | ((q[j] >> 6) << 4));
		mn[j + 4] = (int16_t)((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
	}
}

AI int32_t hsum_i32x8(__m256i v)
{
	__m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
	return _mm_cvtsi128_si32(s);
}

/* ggml vec_dot_q4_K_q8_K: d * sum_j sc_j (q . x)_j - dmin * sum_j m_j sum(x)_j
 * with the integer parts exact. */
static float dot_q4_K(int K, const struct veil_block_q4_K *a,
		      const struct veil_block_q8_K *b)
{
	__m256 acc = _mm256_setzero_ps();
	float accm = 0;
	for (int i = 0; i < K / VEIL_QK_K; i++) {
		int16_t sc[8], mn[8];
		q4k_scales(a[i].scales, sc, mn);
		const __m128i bs = _mm_hadd_epi16(
			_mm_loadu_si128((const void *)b[i].bsums),
			_mm_loadu_si128((const void *)(b[i].bsums + 8)));
		__m128i pm = _mm_madd_epi16(_mm_loadu_si128((const void *)mn), bs);
		pm = _mm_add_epi32(pm, _mm_shuffle_epi32(pm, 0x4e));
		pm = _mm_add_epi32(pm, _mm_shuffle_epi32(pm, 0xb1));
		const int32_t summ = _mm_cvtsi128_si32(pm);
		__m256i sumi = _mm256_setzero_si256();
		for (int j = 0; j < 4; j++) {
			const __m256i q4 = _mm256_loadu_si256((const void *)(a[i].qs + 32 * j));
			const __m256i lo = _mm256_and_si256(q4, _mm256_set1_epi8(0x0f));
			const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4),
							    _mm256_set1_epi8(0x0f));
			const __m256i x0 = _mm256_loadu_si256((const void *)(b[i].qs + 64 * j));
			const __m256i x1 = _mm256_loadu_si256((const void *)(b[i].qs + 64 * j + 32));
			__m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0),
						       _mm256_set1_epi16(sc[2 * j]));
			__m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1),
						       _mm256_set1_epi16(sc[2 * j + 1]));
			sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
		}
		const float d = h2f(a[i].d) * b[i].d;
		const float dmin = h2f(a[i].dmin) * b[i].d;
		acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
		accm += dmin * (float)summ;
	}
	return hsum8(acc) - accm;
}

/* ggml vec_dot_q6_K_q8_K: d * sum_g sc_g ((q - 32) . x)_g, the -32 taken
 * out exactly through the activation's 16-element sums. */
static float dot_q6_K(int K, const struct veil_block_q6_K *a,
		      const struct veil_block_q8_K *b)
{
	float acc = 0;
	const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
	for (int i = 0; i < K / VEIL_QK_K; i++) {
		const uint8_t *ql = a[i].ql, *qh = a[i].qh;
		const int8_t *q8 = b[i].qs;
		const __m256i sc16 = _mm256_cvtepi8_epi16(
			_mm_loadu_si128((const void *)a[i].scales));
		const int32_t corr = hsum_i32x8(_mm256_madd_epi16(
			sc16, _mm256_loadu_si256((const void *)b[i].bsums)));
		__m256i sumi = _mm256_setzero_si256();
		for (int n = 0; n < 2; n++) {
			const __m256i l0 = _mm256_loadu_si256((const void *)ql);
			const __m256i l1 = _mm256_loadu_si256((const void *)(ql + 32));
			const __m256i h = _mm256_loadu_si256((const void *)qh);
			__m256i q[4];
			q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
					       _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
			q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
					       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
			q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
					       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
			q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
					       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
			for (int k = 0; k < 4; k++) {
				const int8_t *s = a[i].scales + 8 * n + 2 * k;
				const __m256i scv = _mm256_setr_epi16(
					s[0], s[0], s[0], s[0], s[0], s[0], s[0], s[0],
					s[1], s[1], s[1], s[1], s[1], s[1], s[1], s[1]);
				const __m256i xv = _mm256_loadu_si256((const void *)(q8 + 32 * k));
				sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(
					_mm256_maddubs_epi16(q[k], xv), scv));
			}
			ql += 64;
			qh += 32;
			q8 += 128;
		}
		const int32_t tot = hsum_i32x8(sumi) - 32 * corr;
		acc += h2f(a[i].d) * b[i].d * (float)tot;
	}
	return acc;
}

static void gemm_q4_K(int K, const void *w, size_t ws, int r0, int r1,
		      const void *x, size_t xs, int nb, float *y, size_t ldy)
{
	for (int b = 0; b < nb; b++)
		for (int r = r0; r < r1; r++)
			y[(size_t)b * ldy + r] = dot_q4_K(
				K, (const void *)((const uint8_t *)w + (size_t)r * ws),
				(const void *)((const uint8_t *)x + (size_t)b * xs));
}

static void gemm_q6_K(int K, const void *w, size_t ws, int r0, int r1,
		      const void *x, size_t xs, int nb, float *y, size_t ldy)
{
	for (int b = 0; b < nb; b++)
		for (int r = r0; r < r1; r++)
			y[(size_t)b * ldy + r] = dot_q6_K(
				K, (const void *)((const uint8_t *)w + (size_t)r * ws),
				(const void *)((const uint8_t *)x + (size_t)b * xs));
}

/* ---- F32, F16, BF16 ----------------------------------------------------- */

enum { FT_F32 = 0, FT_F16 = 1, FT_BF16 = 2 };

AI __m256 fload(const int ft, const uint8_t *row, int k)
{
	if (ft == FT_F32)
		return _mm256_loadu_ps((const float *)row + k);
	__m128i h = _mm_loadu_si128((const void *)((const uint16_t *)row + k));
	if (ft == FT_F16)
		return _mm256_cvtph_ps(h);
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AI float fscalar(const int ft, const uint8_t *row, int k)
{
	if (ft == FT_F32)
		return ((const float *)row)[k];
	uint16_t h = ((const uint16_t *)row)[k];
	return ft == FT_F16 ? h2f(h) : veil_bf16_to_fp32(h);
}

/* xf: A activation rows of K floats, K floats apart. */
AI void ftile(const int ft, const int R, const int A, int K, const uint8_t *w,
	      size_t ws, const float *xf, float *y, size_t ldy)
{
	__m256 acc[4][2];
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
#pragma GCC unroll 2
		for (int a = 0; a < A; a++)
			acc[r][a] = _mm256_setzero_ps();
	int k = 0;
	for (; k + 8 <= K; k += 8) {
		__m256 wv[4];
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
			wv[r] = fload(ft, w + (size_t)r * ws, k);
#pragma GCC unroll 2
		for (int a = 0; a < A; a++) {
			const __m256 xv = _mm256_loadu_ps(xf + (size_t)a * K + k);
#pragma GCC unroll 4
			for (int r = 0; r < R; r++)
				acc[r][a] = _mm256_fmadd_ps(wv[r], xv, acc[r][a]);
		}
	}
	if (k < K) {
		/* the last K % 8 through the same lanes, zero-padded: an
		 * element's lane does not depend on K (attention's K is where
		 * the tile ends, which the batch decides) */
		__m256 wv[4];

		for (int r = 0; r < R; r++) {
			float t[8] = {0};

			for (int kk = k; kk < K; kk++)
				t[kk - k] = fscalar(ft, w + (size_t)r * ws, kk);
			wv[r] = _mm256_loadu_ps(t);
		}
		for (int a = 0; a < A; a++) {
			float t[8] = {0};

			for (int kk = k; kk < K; kk++)
				t[kk - k] = xf[(size_t)a * K + kk];
			const __m256 xv = _mm256_loadu_ps(t);

			for (int r = 0; r < R; r++)
				acc[r][a] = _mm256_fmadd_ps(wv[r], xv, acc[r][a]);
		}
	}
#pragma GCC unroll 2
	for (int a = 0; a < A; a++)
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
			y[(size_t)a * ldy + r] = hsum8(acc[r][a]);
}

#define FT(ft, R, A) ftile(ft, R, A, K, wr, ws, xa, yo, ldy)

AI void gemm_f(const int ft, int K, const void *w, size_t ws, int r0, int r1,
	       const void *x, size_t xs, int nb, float *y, size_t ldy)
{
	float *xf = veil_quant_scratch(sizeof(float) * (size_t)K * (size_t)nb);
	for (int a = 0; a < nb; a++) {
		const uint8_t *xr = (const uint8_t *)x + (size_t)a * xs;
		float *o = xf + (size_t)a * K;
		if (ft == FT_F32) {
			memcpy(o, xr, sizeof(float) * (size_t)K);
			continue;
		}
		int k = 0;
		for (; k + 8 <= K; k += 8)
			_mm256_storeu_ps(o + k, fload(ft, xr, k));
		for (; k < K; k++)
			o[k] = fscalar(ft, xr, k);
	}
	for (int r = r0; r < r1; r += 4) {
		const int R = VEIL_MIN(4, r1 - r);
		const uint8_t *wr = (const uint8_t *)w + (size_t)r * ws;
		for (int a = 0; a < nb; a += 2) {
			const float *xa = xf + (size_t)a * K;
			float *yo = y + (size_t)a * ldy + r;
			if (nb - a >= 2) {
				switch (R) {
				case 4: FT(ft, 4, 2); break;
				case 3: FT(ft, 3, 2); break;
				case 2: FT(ft, 2, 2); break;
				default: FT(ft, 1, 2); break;
				}
			} else {
				switch (R) {
				case 4: FT(ft, 4, 1); break;
				case 3: FT(ft, 3, 1); break;
				case 2: FT(ft, 2, 1); break;
				default: FT(ft, 1, 1); break;
				}
			}
		}
	}
}

static void gemm_f32(int K, const void *w, size_t ws, int r0, int r1,
		     const void *x, size_t xs, int nb, float *y, size_t ldy)
{
	gemm_f(FT_F32, K, w, ws, r0, r1, x, xs, nb, y, ldy);
}

static void gemm_f16(int K, const void *w, size_t ws, int r0, int r1,
		     const void *x, size_t xs, int nb, float *y, size_t ldy)
{
	gemm_f(FT_F16, K, w, ws, r0, r1, x, xs, nb, y, ldy);
}

static void gemm_bf16(int K, const void *w, size_t ws, int r0, int r1,
		      const void *x, size_t xs, int nb, float *y, size_t ldy)
{
	gemm_f(FT_BF16, K, w, ws, r0, r1, x, xs, nb, y, ldy);
}

/* ---- vector helpers ----------------------------------------------------- */

/* VCVTPS2PH with round-to-nearest-even equals veil_fp32_to_fp16 bit for bit
 * (NaNs included; tests/unit/test_quant.c checks it). */
static void f32_to_f16_row(const float *x, uint16_t *y, int n)
{
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((void *)(y + i),
				 _mm256_cvtps_ph(_mm256_loadu_ps(x + i),
						 _MM_FROUND_TO_NEAREST_INT));
	for (; i < n; i++)
		y[i] = veil_fp32_to_fp16(x[i]);
}

static void f16_to_f32_row(const uint16_t *x, float *y, int n)
{
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(
			_mm_loadu_si128((const void *)(x + i))));
	for (; i < n; i++)
		y[i] = h2f(x[i]);
}

static void vec_mad_f16(float *y, const uint16_t *v, float a, int n)
{
	const __m256 va = _mm256_set1_ps(a);
	int i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 h = _mm256_cvtph_ps(_mm_loadu_si128((const void *)(v + i)));
		_mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, h, _mm256_loadu_ps(y + i)));
	}
	for (; i < n; i++)
		y[i] += a * h2f(v[i]);
}

static float vec_dot_f16(const uint16_t *x, const uint16_t *v, int n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const void *)(x + i))),
				     _mm256_cvtph_ps(_mm_loadu_si128((const void *)(v + i))), s0);
		s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const void *)(x + i + 8))),
				     _mm256_cvtph_ps(_mm_loadu_si128((const void *)(v + i + 8))), s1);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const void *)(x + i))),
				     _mm256_cvtph_ps(_mm_loadu_si128((const void *)(v + i))), s0);
	float s = hsum8(_mm256_add_ps(s0, s1));
	for (; i < n; i++)
		s += h2f(x[i]) * h2f(v[i]);
	return s;
}

static float vec_dot_f32(const float *x, const float *v, int n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(v + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(v + i + 8), s1);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(v + i), s0);
	float s = hsum8(_mm256_add_ps(s0, s1));
	for (; i < n; i++)
		s += x[i] * v[i];
	return s;
}

/* ---- activation quantizer ----------------------------------------------- */

/* roundf (half away from zero), exactly: t = trunc(v) and r = v - t are
 * exact, and trunc(2r) is +-1 just when |r| >= 0.5.  NaN and infinities
 * stay NaN, which VCVTPS2DQ turns into 0x80000000 as cvttss2si does. */
AI __m256 round_away(__m256 v)
{
	const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
	const __m256 r = _mm256_sub_ps(v, t);
	return _mm256_add_ps(t, _mm256_round_ps(_mm256_add_ps(r, r),
						_MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
}

/* ggml quantize_row_q8_0, byte for byte equal to the scalar reference:
 * the max ignores NaNs as fmaxf does (VMAXPS returns its second operand
 * when either is NaN, and the running max is never NaN), d and 1/d are the
 * same IEEE operations, VCVTPS2PH rounds as veil_fp32_to_fp16, and each
 * int8 is the low byte of the int32 (a byte shuffle, not a saturating
 * pack, as the scalar (int8_t) cast). */
static void quantize_q8_0(const float *x, struct veil_block_q8_0 *y, int64_t n)
{
	const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	/* low byte of each int32 lane into bytes 0-3 of each 128-bit half */
	const __m256i lob = _mm256_setr_epi8(
		0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
		0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
	for (int64_t i = 0; i < n / VEIL_QK8_0; i++) {
		const float *xb = x + i * VEIL_QK8_0;
		__m256 v[4];
		__m256 m = _mm256_setzero_ps();
		for (int k = 0; k < 4; k++) {
			v[k] = _mm256_loadu_ps(xb + 8 * k);
			m = _mm256_max_ps(_mm256_and_ps(v[k], absm), m);
		}
		__m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
		h = _mm_max_ps(h, _mm_movehl_ps(h, h));
		h = _mm_max_ss(h, _mm_movehdup_ps(h));
		const float amax = _mm_cvtss_f32(h);
		const float d = amax / 127.0f;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		const __m256 vid = _mm256_set1_ps(id);
		y[i].d = (uint16_t)_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
		__m256i q[4];
		for (int k = 0; k < 4; k++)
			q[k] = _mm256_shuffle_epi8(_mm256_cvtps_epi32(round_away(
				_mm256_mul_ps(v[k], vid))), lob);
		/* 32-bit groups: q0 lo, q0 hi, q1 lo, q1 hi, ... -> in order */
		const __m256i q01 = _mm256_unpacklo_epi32(q[0], q[1]);
		const __m256i q23 = _mm256_unpacklo_epi32(q[2], q[3]);
		const __m256i all = _mm256_unpacklo_epi64(q01, q23);
		_mm256_storeu_si256((void *)y[i].qs, _mm256_permutevar8x32_epi32(
			all, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
	}
}

void veil_quant_fill_avx2(struct veil_quant_kern *k)
{
	k->gemm[VEIL_DT_Q8_0] = gemm_q8_0;
	k->gemm[VEIL_DT_Q4_0] = gemm_q4_0;
	k->gemm[VEIL_DT_Q4_K] = gemm_q4_K;
	k->gemm[VEIL_DT_Q6_K] = gemm_q6_K;
	k->gemm[VEIL_DT_F32] = gemm_f32;
	k->gemm[VEIL_DT_F16] = gemm_f16;
	k->gemm[VEIL_DT_BF16] = gemm_bf16;
	k->f32_to_f16_row = f32_to_f16_row;
	k->f16_to_f32_row = f16_to_f32_row;
	k->vec_mad_f16 = vec_mad_f16;
	k->vec_dot_f16 = vec_dot_f16;
	k->vec_dot_f32 = vec_dot_f32;
	k->quantize_q8_0 = quantize_q8_0;
}
