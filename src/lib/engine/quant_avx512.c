/* AVX-512 (F/BW/VL/DQ) kernels for the float weight types, the vector
 * helpers and the Q8_0 activation quantizer (bytes equal to the scalar
 * reference's).  Quantized types keep the AVX2 kernels here; on CPUs with
 * VNNI quant_avx512vnni.c replaces Q8_0 and Q4_0 and adds packed ones.
 *
 * Float types convert the activation rows to F32 once per call (exact) and
 * accumulate in F32 with FMA, 4 weight rows x up to 4 activation rows per
 * tile; K tails use masked loads, so any K works. */
#include <immintrin.h>
#include <string.h>

#include "quant_impl.h"

#define AI __attribute__((always_inline)) static inline

enum { FT_F32 = 0, FT_F16 = 1, FT_BF16 = 2 };

/* 16 elements from k; masked loads (only for K tails: they are slow on
 * some cores) when m is not all ones. */
AI __m512 fload(const int ft, const uint8_t *row, int k, __mmask16 m,
		const bool full)
{
	if (ft == FT_F32)
		return full ? _mm512_loadu_ps((const float *)row + k)
			    : _mm512_maskz_loadu_ps(m, (const float *)row + k);
	__m256i h = full ? _mm256_loadu_si256((const void *)((const uint16_t *)row + k))
			 : _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + k);
	if (ft == FT_F16)
		return _mm512_cvtph_ps(h);
	return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AI void ftile(const int ft, const int R, const int A, int K, const uint8_t *w,
	      size_t ws, const float *xf, size_t xfs, float *y, size_t ldy)
{
	__m512 acc[4][4];
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
#pragma GCC unroll 4
		for (int a = 0; a < A; a++)
			acc[r][a] = _mm512_setzero_ps();
	for (int k = 0; k < K; k += 16) {
		const bool full = K - k >= 16;
		const __mmask16 m = full ? (__mmask16)0xffff
					 : (__mmask16)((1u << (K - k)) - 1);
		__m512 wv[4];
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
			wv[r] = full ? fload(ft, w + (size_t)r * ws, k, m, true)
				     : fload(ft, w + (size_t)r * ws, k, m, false);
#pragma GCC unroll 4
		for (int a = 0; a < A; a++) {
			/* xf rows are padded to a multiple of 16 with zeros */
			const __m512 xv = _mm512_load_ps(xf + (size_t)a * xfs + k);
#pragma GCC unroll 4
			for (int r = 0; r < R; r++)
				acc[r][a] = _mm512_fmadd_ps(wv[r], xv, acc[r][a]);
		}
	}
#pragma GCC unroll 4
	for (int a = 0; a < A; a++)
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
			y[(size_t)a * ldy + r] = _mm512_reduce_add_ps(acc[r][a]);
}

#define FT(R, A) ftile(ft, R, A, K, wr, ws, xa, xfs, yo, ldy)
#define FT_ROWS(A)                                  \
	switch (R) {                                \
	case 4: FT(4, A); break;                    \
	case 3: FT(3, A); break;                    \
	case 2: FT(2, A); break;                    \
	default: FT(1, A); break;                   \
	}

AI void gemm_f(const int ft, int K, const void *w, size_t ws, int r0, int r1,
	       const void *x, size_t xs, int nb, float *y, size_t ldy)
{
	const size_t xfs = ((size_t)K + 15) & ~(size_t)15;
	float *xf = veil_quant_scratch(sizeof(float) * xfs * (size_t)nb);
	for (int a = 0; a < nb; a++) {
		const uint8_t *xr = (const uint8_t *)x + (size_t)a * xs;
		for (int k = 0; k < K; k += 16) {
			const __mmask16 m = K - k >= 16 ? (__mmask16)0xffff
							: (__mmask16)((1u << (K - k)) - 1);
			_mm512_store_ps(xf + (size_t)a * xfs + k,
					K - k >= 16 ? fload(ft, xr, k, m, true)
						    : fload(ft, xr, k, m, false));
		}
	}
	/* activation rows per pass over the weights: their F32 rows should
	 * stay in L2 (about 512 KiB) while a 4-row weight tile sweeps them */
	const int ablk = (int)VEIL_MAX(4, VEIL_MIN(64, ((512u << 10) / (xfs * 4)) & ~(size_t)3));
	for (int a0 = 0; a0 < nb; a0 += ablk) {
		const int a1 = VEIL_MIN(nb, a0 + ablk);
		for (int r = r0; r < r1; r += 4) {
			const int R = VEIL_MIN(4, r1 - r);
			const uint8_t *wr = (const uint8_t *)w + (size_t)r * ws;
			for (int a = a0; a < a1;) {
				const float *xa = xf + (size_t)a * xfs;
				float *yo = y + (size_t)a * ldy + r;
				const int A = VEIL_MIN(4, a1 - a);
				if (A == 4) {
					FT_ROWS(4);
				} else if (A == 3) {
					FT_ROWS(3);
				} else if (A == 2) {
					FT_ROWS(2);
				} else {
					FT_ROWS(1);
				}
				a += A;
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

AI __mmask16 tailmask(int left)
{
	return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

/* VCVTPS2PH with round-to-nearest-even equals veil_fp32_to_fp16 bit for bit
 * (NaNs included; tests/unit/test_quant.c checks it). */
static void f32_to_f16_row(const float *x, uint16_t *y, int n)
{
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm256_storeu_si256((void *)(y + i), _mm512_cvtps_ph(
			_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
	for (; i < n; i += 16) {
		const __mmask16 m = tailmask(n - i);
		_mm256_mask_storeu_epi16(y + i, m, _mm512_cvtps_ph(
			_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT));
	}
}

static void f16_to_f32_row(const uint16_t *x, float *y, int n)
{
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, _mm512_cvtph_ps(
			_mm256_loadu_si256((const void *)(x + i))));
	for (; i < n; i += 16) {
		const __mmask16 m = tailmask(n - i);
		_mm512_mask_storeu_ps(y + i, m, _mm512_cvtph_ps(
			_mm256_maskz_loadu_epi16(m, x + i)));
	}
}

static void vec_mad_f16(float *y, const uint16_t *v, float a, int n)
{
	const __m512 va = _mm512_set1_ps(a);
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512 h = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(v + i)));
		_mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, h, _mm512_loadu_ps(y + i)));
	}
	for (; i < n; i += 16) {
		const __mmask16 m = tailmask(n - i);
		__m512 h = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, v + i));
		_mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(
			va, h, _mm512_maskz_loadu_ps(m, y + i)));
	}
}

static float vec_dot_f16(const uint16_t *x, const uint16_t *v, int n)
{
	__m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
	int i = 0;
	for (; i + 32 <= n; i += 32) {
		s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const void *)(x + i))),
				     _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(v + i))), s0);
		s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const void *)(x + i + 16))),
				     _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(v + i + 16))), s1);
	}
	for (; i < n; i += 16) {
		const __mmask16 m = tailmask(n - i);
		s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)),
				     _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, v + i)), s0);
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static float vec_dot_f32(const float *x, const float *v, int n)
{
	__m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
	int i = 0;
	for (; i + 32 <= n; i += 32) {
		s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(v + i), s0);
		s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(v + i + 16), s1);
	}
	for (; i < n; i += 16) {
		const __mmask16 m = tailmask(n - i);
		s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i),
				     _mm512_maskz_loadu_ps(m, v + i), s0);
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* ---- activation quantizer ----------------------------------------------- */

/* roundf (half away from zero) of float lanes, exactly: t = trunc(v) and
 * r = v - t are exact, and trunc(2r) is +-1 just when |r| >= 0.5.  A NaN or
 * infinite v stays NaN, which VCVTPS2DQ turns into 0x80000000 as the scalar
 * path's cvttss2si does. */
AI __m512 round_away(__m512 v)
{
#define TZ (_MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)
	const __m512 t = _mm512_roundscale_ps(v, TZ);
	const __m512 r = _mm512_sub_ps(v, t);
	return _mm512_add_ps(t, _mm512_roundscale_ps(_mm512_add_ps(r, r), TZ));
#undef TZ
}

/* ggml quantize_row_q8_0, byte for byte equal to the scalar reference:
 * the max ignores NaNs as fmaxf does (VMAXPS returns its second operand
 * when either is NaN, and the running max is never NaN), d and 1/d are the
 * same IEEE operations, VCVTPS2PH rounds as veil_fp32_to_fp16, and the
 * int8 is the low byte of the int32 (VPMOVDB truncates, like the scalar
 * (int8_t) cast). */
static void quantize_q8_0(const float *x, struct veil_block_q8_0 *y, int64_t n)
{
	const __m512 absm = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
	for (int64_t i = 0; i < n / VEIL_QK8_0; i++) {
		const __m512 a = _mm512_loadu_ps(x + i * VEIL_QK8_0);
		const __m512 b = _mm512_loadu_ps(x + i * VEIL_QK8_0 + 16);
		__m512 m = _mm512_max_ps(_mm512_and_ps(a, absm), _mm512_setzero_ps());
		m = _mm512_max_ps(_mm512_and_ps(b, absm), m);
		const float amax = _mm512_reduce_max_ps(m);
		const float d = amax / 127.0f;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		const __m512 vid = _mm512_set1_ps(id);
		y[i].d = (uint16_t)_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
		const __m512i qa = _mm512_cvtps_epi32(round_away(_mm512_mul_ps(a, vid)));
		const __m512i qb = _mm512_cvtps_epi32(round_away(_mm512_mul_ps(b, vid)));
		_mm_storeu_si128((void *)y[i].qs, _mm512_cvtepi32_epi8(qa));
		_mm_storeu_si128((void *)(y[i].qs + 16), _mm512_cvtepi32_epi8(qb));
	}
}

void veil_quant_fill_avx512(struct veil_quant_kern *k)
{
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
