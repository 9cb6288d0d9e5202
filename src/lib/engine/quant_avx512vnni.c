/* AVX-512 VNNI kernels: Q8_0 x Q8_0, Q4_0 x Q8_0 (weights in place and
 * packed, see below), Q4_K and Q6_K x Q8_K.
 *
 * VPDPBUSD multiplies unsigned by signed bytes, so weights are made
 * unsigned by a bias: Q8_0 weights w become w ^ 0x80 = w + 128, Q4_0 nibbles
 * are used as stored (q = w + 8).  The bias times the block's activation sum
 * is subtracted exactly, in int32, by seeding the accumulator with
 * -bias * sum(x_block) (precomputed per activation row), so each block's
 * integer dot is exact and then scaled by d_w * d_x in F32, as ggml does.
 *
 * Activations are first repacked (once per call) into 64-byte-aligned pairs
 * of blocks: quants contiguous, the seeds, the scales expanded per lane.
 * Weights are read in place, two 32-element blocks per ZMM, for up to 4
 * weight rows x 4 activation rows per pass (each loaded weight pair is used
 * A times, each activation pair R times).  Scales come out of the same loads
 * by word permutes: gathers, broadcasts and masked loads all measured slower
 * on Zen 5.  Decode (nb = 1) prefetches rows ahead.
 *
 * Measured on one Zen 5 core (L2-resident, nb = 1): Q8_0 about 60-65 GB/s of
 * weights, Q4_0 about 40 GB/s; nb = 64: 190-235 GFLOP/s.  The packed
 * kernels: Q8_0 about 90 GB/s, Q4_0 about 80 GB/s; nb >= 8: 500-600
 * GFLOP/s. */
#include <immintrin.h>
#include <string.h>

#include "quant_impl.h"

#define AI __attribute__((always_inline)) static inline

enum { WT_Q8_0 = 0, WT_Q4_0 = 1 };

/* Per activation row, npair = ceil(nblk / 2) pairs (a lone last block is
 * padded with zeros):
 *   xq  [npair][64] int8   activation quants
 *   ci  [npair][16] int32  seed: -bias*sum in lanes 0 and 8
 *   dxe [npair][16] float  d_x of the pair's blocks, 8 lanes each */
struct xlay {
	int nblk, npair;
	size_t off_ci, off_dxe, stride;
};

static struct xlay xlay_of(int K)
{
	struct xlay l;
	l.nblk = K / 32;
	l.npair = (l.nblk + 1) / 2;
	l.off_ci = (size_t)l.npair * 64;
	l.off_dxe = l.off_ci + (size_t)l.npair * 64;
	l.stride = l.off_dxe + (size_t)l.npair * 64;
	return l;
}

static void pack_x(const struct xlay *l, int bias, const void *x,
		   size_t x_stride, int nb, uint8_t *out)
{
	for (int a = 0; a < nb; a++) {
		const struct veil_block_q8_0 *xb =
			(const void *)((const uint8_t *)x + (size_t)a * x_stride);
		uint8_t *o = out + (size_t)a * l->stride;
		memset(o, 0, l->stride);
		int8_t *xq = (int8_t *)o;
		int32_t *ci = (int32_t *)(o + l->off_ci);
		float *dxe = (float *)(o + l->off_dxe);
		for (int b = 0; b < l->nblk; b++) {
			__m256i q = _mm256_loadu_si256((const void *)xb[b].qs);
			_mm256_storeu_si256((void *)(xq + (size_t)b * 32), q);
			__m256i s16 = _mm256_madd_epi16(
				_mm256_maddubs_epi16(_mm256_set1_epi8(1), q),
				_mm256_set1_epi16(1));
			__m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s16),
						   _mm256_extracti128_si256(s16, 1));
			s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
			s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
			int sum = _mm_cvtsi128_si32(s4);
			float d = veil_q_h2f(xb[b].d);
			ci[(b / 2) * 16 + (b & 1) * 8] = -bias * sum;
			for (int k = 0; k < 8; k++)
				dxe[(b / 2) * 16 + (b & 1) * 8 + k] = d;
		}
	}
}

/* Word indices for VPERMW.  A Q4_0 pair is 36 bytes = 18 words: d_j is
 * word 0, qs_j words 1-8, d_j1 word 9, qs_j1 words 10-17.  A Q8_0 pair is
 * 68 bytes: d_j word 0, d_j1 word 17. */
static const uint16_t g_q4_qidx[32] __attribute__((aligned(64))) = {
	1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
	10, 11, 12, 13, 14, 15, 16, 17, 10, 11, 12, 13, 14, 15, 16, 17,
};
static const uint16_t g_q4_didx[32] __attribute__((aligned(64))) = {
	0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9,
};
static const uint16_t g_q8_didx[32] __attribute__((aligned(64))) = {
	0, 0, 0, 0, 0, 0, 0, 0, 17, 17, 17, 17, 17, 17, 17, 17,
};

/* A pair of weight blocks (or one, the rest zero): *wv = the 64 quants as
 * unsigned bytes w + bias in activation order, *dw = d_j in lanes 0-7 and
 * d_j1 in lanes 8-15.  Scales come out of the same load as the quants
 * (word permutes), which beats gathers and broadcasts. */
AI void load_wd(const int wt, const uint8_t *blk, const bool two,
		const bool last, __m512i *wv, __m512 *dw)
{
	if (wt == WT_Q8_0) {
		const uint8_t *q = blk + 2;
		__m512i v, z;
		if (two) {
			v = _mm512_inserti64x4(
				_mm512_castsi256_si512(_mm256_loadu_si256((const void *)q)),
				_mm256_loadu_si256((const void *)(q + 34)), 1);
			z = _mm512_loadu_si512(blk); /* inside the 68-byte pair */
		} else {
			v = _mm512_zextsi256_si512(_mm256_loadu_si256((const void *)q));
			z = _mm512_maskz_loadu_epi16(0x1, blk);
		}
		*wv = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
		z = _mm512_permutexvar_epi16(_mm512_load_si512(g_q8_didx), z);
		*dw = _mm512_cvtph_ps(_mm512_castsi512_si256(z));
	} else {
		/* 64 bytes cover this pair and part of the next; near the end
		 * of the row the load is masked so as not to read past the
		 * matrix (masked loads are slow on AMD, so only there) */
		__m512i z = last ? _mm512_maskz_loadu_epi16(two ? 0x3ffff : 0x1ff, blk)
				 : _mm512_loadu_si512(blk);
		__m512i q = _mm512_permutexvar_epi16(_mm512_load_si512(g_q4_qidx), z);
		/* odd 128-bit lanes take the high nibbles */
		q = _mm512_srlv_epi64(q, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0));
		*wv = _mm512_and_si512(q, _mm512_set1_epi8(0x0f));
		z = _mm512_permutexvar_epi16(_mm512_load_si512(g_q4_didx), z);
		*dw = _mm512_cvtph_ps(_mm512_castsi512_si256(z));
	}
}

/* R weight rows x A activation rows; y points at y[a0 * ldy + r0].  With
 * pf > 0 each weight line is prefetched pf bytes ahead (decode). */
AI void tile(const int wt, const int R, const int A, const struct xlay *l,
	     const uint8_t *w, size_t ws, const uint8_t *xp, float *y,
	     size_t ldy, size_t pf)
{
	const int bb = wt == WT_Q8_0 ? 34 : 18;
	const int npair = (l->nblk + 1) / 2;
	__m512 acc[4][4];
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
#pragma GCC unroll 4
		for (int a = 0; a < A; a++)
			acc[r][a] = _mm512_setzero_ps();

	for (int p = 0; p < npair; p++) {
		const bool two = 2 * p + 1 < l->nblk;
		__m512i wv[4];
		__m512 dw[4];
#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			const uint8_t *blk = w + (size_t)r * ws + (size_t)(2 * p) * bb;
			if (pf) {
				/* a Q8_0 pair is 68 bytes: two lines may start in it */
				_mm_prefetch((const char *)blk + pf, _MM_HINT_T0);
				if (wt == WT_Q8_0)
					_mm_prefetch((const char *)blk + pf + 64, _MM_HINT_T0);
			}
			if ((size_t)(2 * p) * bb + 64 <= (size_t)l->nblk * bb)
				load_wd(wt, blk, true, false, &wv[r], &dw[r]);
			else if (two)
				load_wd(wt, blk, true, true, &wv[r], &dw[r]);
			else
				load_wd(wt, blk, false, true, &wv[r], &dw[r]);
		}
#pragma GCC unroll 4
		for (int a = 0; a < A; a++) {
			const uint8_t *xa = xp + (size_t)a * l->stride;
			const __m512i xv = _mm512_load_si512(xa + (size_t)p * 64);
			const __m512i ci = _mm512_load_si512(xa + l->off_ci + (size_t)p * 64);
			const __m512 dxe = _mm512_load_ps((const float *)(xa + l->off_dxe) + (size_t)p * 16);
#pragma GCC unroll 4
			for (int r = 0; r < R; r++) {
				__m512i dp = _mm512_dpbusd_epi32(ci, wv[r], xv);
				acc[r][a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp),
							    _mm512_mul_ps(dw[r], dxe),
							    acc[r][a]);
			}
		}
	}
#pragma GCC unroll 4
	for (int a = 0; a < A; a++)
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
			y[(size_t)a * ldy + r] = _mm512_reduce_add_ps(acc[r][a]);
}

#define TILE_CASES(wt, A)                                                     \
	switch (R) {                                                          \
	case 4: tile(wt, 4, A, &l, wr, ws, xa, yo, ldy, pf); break;           \
	case 3: tile(wt, 3, A, &l, wr, ws, xa, yo, ldy, pf); break;           \
	case 2: tile(wt, 2, A, &l, wr, ws, xa, yo, ldy, pf); break;           \
	default: tile(wt, 1, A, &l, wr, ws, xa, yo, ldy, pf); break;          \
	}

AI void gemm_q(const int wt, int K, const void *w, size_t ws, int r0, int r1,
	       const void *x, size_t xs, int nb, float *y, size_t ldy)
{
	const struct xlay l = xlay_of(K);
	uint8_t *xp = veil_quant_scratch(l.stride * (size_t)nb);
	pack_x(&l, wt == WT_Q8_0 ? 128 : 8, x, xs, nb, xp);
	/* Decode streams the weights once from DRAM: the four rows of a tile
	 * are four short interleaved streams the hardware prefetcher follows
	 * poorly, so prefetch the same place whole rows (>= 6 KiB) ahead.
	 * Measured on Zen 5: Q4_0 2048-wide rows from DRAM 11 -> 21 GB/s. */
	const size_t pf = nb == 1 ? VEIL_MAX(4, (6144 + ws - 1) / ws) * ws : 0;

	/* activation rows per pass over the weights: their packed rows should
	 * stay in L2 (about 512 KiB) while a 4-row weight tile sweeps them */
	const int ablk = (int)VEIL_MAX(4, VEIL_MIN(64, ((512u << 10) / l.stride) & ~3u));
	for (int a0 = 0; a0 < nb; a0 += ablk) {
		const int a1 = VEIL_MIN(nb, a0 + ablk);
		for (int r = r0; r < r1; r += 4) {
			const int R = VEIL_MIN(4, r1 - r);
			const uint8_t *wr = (const uint8_t *)w + (size_t)r * ws;
			for (int a = a0; a < a1;) {
				const uint8_t *xa = xp + (size_t)a * l.stride;
				float *yo = y + (size_t)a * ldy + r;
				const int A = VEIL_MIN(4, a1 - a);
				if (A == 4) {
					TILE_CASES(wt, 4);
				} else if (A == 3) {
					TILE_CASES(wt, 3);
				} else if (A == 2) {
					TILE_CASES(wt, 2);
				} else {
					TILE_CASES(wt, 1);
				}
				a += A;
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

/* ---- packed Q8_0 and Q4_0 (layout: include/veil/quant.h) ---------------
 *
 * One 32-bit lane per weight row: a group's block is 8 operands of 16 rows x
 * 4 bytes, and operand k pairs with activation bytes 4k..4k+3 (Q4_0: the
 * low nibbles of chunk c are elements 4c.., the high nibbles 16+4c.., which
 * is operand c + 4), broadcast from the activation block as stored.  So
 * one VPDPBUSD advances 16 rows by 4 elements, with no permutes, no
 * horizontal sums (a tile's 16 results are one store) and one weight
 * expansion shared by up to 8 activation rows.  The bias of the unsigned
 * weights (Q8_0: +128, Q4_0: +8) is taken out exactly by seeding each
 * block's sum with -bias * sum(x_block).  Each block's integer dot is
 * exact and then scaled by d_w * d_x in F32, as ggml does. */

/* Prefetch distance of the weight stream (one sequential stream per
 * thread), done by the first tile over each group.  Measured on Zen 5 with
 * the packed copy on huge pages, from DRAM: nb = 1 Q4_0 about 20 -> 27
 * GB/s, nb = 8 Q8_0 8 -> 28 GB/s. */
#define PACK_PF 8192

/* Per activation row, per block: the seed and d_x as F32. */
static void packed_prep(int bias, int nblk, const void *x, size_t xs, int nb,
			int32_t *seed, float *dx)
{
	for (int a = 0; a < nb; a++) {
		const struct veil_block_q8_0 *xb =
			(const void *)((const uint8_t *)x + (size_t)a * xs);
		for (int b = 0; b < nblk; b++) {
			const __m256i q = _mm256_loadu_si256((const void *)xb[b].qs);
			/* sum of 32 signed bytes: |x| <= 128 keeps the pair sums exact */
			const __m256i s16 = _mm256_madd_epi16(
				_mm256_maddubs_epi16(_mm256_set1_epi8(1), q),
				_mm256_set1_epi16(1));
			__m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s16),
						   _mm256_extracti128_si256(s16, 1));
			s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
			s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
			seed[(size_t)a * nblk + b] = -bias * _mm_cvtsi128_si32(s4);
			dx[(size_t)a * nblk + b] = _cvtsh_ss(xb[b].d);
		}
	}
}

AI __m512i bcast32(const uint8_t *p)
{
	int32_t v;
	memcpy(&v, p, 4);
	return _mm512_set1_epi32(v);
}

/* One 16-row group x A activation rows; y points at y[a0 * ldy + r]. */
AI void ptile(const int wt, const int A, const struct veil_pack_geom *g,
	      const uint8_t *grp, const uint8_t *x, size_t xs,
	      const int32_t *seed, const float *dx, float *y, size_t ldy,
	      const bool pf)
{
	const __m512i m4 = _mm512_set1_epi8(0x0f);
	__m512 acc[8];
#pragma GCC unroll 8
	for (int a = 0; a < A; a++)
		acc[a] = _mm512_setzero_ps();
	for (int b = 0; b < g->nblk; b++) {
		const uint8_t *q = grp + (size_t)b * g->qbytes;
		__m512i wv[8];
		if (pf) /* the first tile over this group streams it in */
			for (size_t o = 0; o < g->qbytes; o += 64)
				_mm_prefetch((const char *)q + PACK_PF + o, _MM_HINT_T0);
		if (wt == WT_Q8_0) {
#pragma GCC unroll 8
			for (int k = 0; k < 8; k++)
				wv[k] = _mm512_load_si512(q + 64 * k);
		} else {
#pragma GCC unroll 4
			for (int c = 0; c < 4; c++) {
				const __m512i v = _mm512_load_si512(q + 64 * c);
				wv[c] = _mm512_and_si512(v, m4);
				wv[c + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
			}
		}
		const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(
			(const void *)(grp + g->off_d + (size_t)b * 32)));
#pragma GCC unroll 8
		for (int a = 0; a < A; a++) {
			const uint8_t *xq = x + (size_t)a * xs + (size_t)b * 34 + 2;
			/* two chains, to halve the VPDPBUSD latency per block */
			__m512i s0 = _mm512_set1_epi32(seed[(size_t)a * g->nblk + b]);
			__m512i s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
			for (int k = 0; k < 8; k += 2) {
				s0 = _mm512_dpbusd_epi32(s0, wv[k], bcast32(xq + 4 * k));
				s1 = _mm512_dpbusd_epi32(s1, wv[k + 1], bcast32(xq + 4 * k + 4));
			}
			const __m512 d = _mm512_mul_ps(
				dw, _mm512_set1_ps(dx[(size_t)a * g->nblk + b]));
			acc[a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)),
						 d, acc[a]);
		}
	}
#pragma GCC unroll 8
	for (int a = 0; a < A; a++)
		_mm512_storeu_ps(y + (size_t)a * ldy, acc[a]);
}

#define PT(A) ptile(wt, A, &g, grp, xa, xs, sa, da, yo, ldy, a == a0)

AI void gemm_packed(const int wt, int K, const void *w, int r0, int r1,
		    const void *x, size_t xs, int nb, float *y, size_t ldy)
{
	const struct veil_pack_geom g = veil_pack_geom_of(
		wt == WT_Q8_0 ? VEIL_DT_Q8_0 : VEIL_DT_Q4_0, K);
	int32_t *seed = veil_quant_scratch((sizeof(int32_t) + sizeof(float)) *
					   (size_t)g.nblk * (size_t)nb);
	float *dx = (float *)(seed + (size_t)g.nblk * nb);
	packed_prep(wt == WT_Q8_0 ? 128 : 8, g.nblk, x, xs, nb, seed, dx);
	/* activation rows per pass over the weights: they should stay in L2
	 * while the row groups of this call sweep them */
	const int ablk = (int)VEIL_MAX(8, VEIL_MIN(512, ((256u << 10) / xs) & ~(size_t)7));
	for (int a0 = 0; a0 < nb; a0 += ablk) {
		const int a1 = VEIL_MIN(nb, a0 + ablk);
		for (int r = r0; r < r1; r += VEIL_PACK_ROWS) {
			const uint8_t *grp = (const uint8_t *)w +
					     (size_t)(r / VEIL_PACK_ROWS) * g.group;
			for (int a = a0; a < a1; a += 8) {
				const uint8_t *xa = (const uint8_t *)x + (size_t)a * xs;
				const int32_t *sa = seed + (size_t)a * g.nblk;
				const float *da = dx + (size_t)a * g.nblk;
				float *yo = y + (size_t)a * ldy + r;
				switch (VEIL_MIN(8, a1 - a)) {
				case 8: PT(8); break;
				case 7: PT(7); break;
				case 6: PT(6); break;
				case 5: PT(5); break;
				case 4: PT(4); break;
				case 3: PT(3); break;
				case 2: PT(2); break;
				default: PT(1); break;
				}
			}
		}
	}
}

static void gemm_packed_q8_0(int K, const void *w, size_t ws, int r0, int r1,
			     const void *x, size_t xs, int nb, float *y,
			     size_t ldy)
{
	(void)ws;
	gemm_packed(WT_Q8_0, K, w, r0, r1, x, xs, nb, y, ldy);
}

static void gemm_packed_q4_0(int K, const void *w, size_t ws, int r0, int r1,
			     const void *x, size_t xs, int nb, float *y,
			     size_t ldy)
{
	(void)ws;
	gemm_packed(WT_Q4_0, K, w, r0, r1, x, xs, nb, y, ldy);
}

/* ---- Q4_K and Q6_K (x Q8_K) --------------------------------------------
 *
 * VPMADDUBSW (unsigned quants x signed activations; pair sums at most
 * 2*15*127 or 2*63*127, no saturation) then VPDPWSSD with the sub-block
 * scales as int16: the super-block's integer sum is exact, then one float
 * multiply-add, as ggml's vec_dot_q4_K_q8_K / q6_K_q8_K.  A weight row is
 * unpacked once for up to 4 activation rows (measured on one Zen 5 core,
 * nb = 64: Q4_K 75 -> 135 GFLOP/s, Q6_K 90 -> 160). */

/* ggml's 12-byte Q4_K scale packing -> 8 scales and 8 mins, one byte each. */
AI void q4k_unpack(const uint8_t *p, uint64_t *sc, uint64_t *mn)
{
	uint32_t u[3], o[4];
	memcpy(u, p, 12);
	const uint32_t m1 = 0x3f3f3f3f, m2 = 0x0f0f0f0f, m3 = 0x03030303;
	o[0] = u[0] & m1;
	o[1] = (u[2] & m2) | (((u[0] >> 6) & m3) << 4);
	o[2] = u[1] & m1;
	o[3] = ((u[2] >> 4) & m2) | (((u[1] >> 6) & m3) << 4);
	*sc = (uint64_t)o[0] | (uint64_t)o[1] << 32;
	*mn = (uint64_t)o[2] | (uint64_t)o[3] << 32;
}

#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
#define R8(v) v, v, v, v, v, v, v, v
/* int16 lane -> scale index.  Q4_K: 64 quant bytes hold, in low nibbles,
 * sub-blocks 2j and 2j+2 (32 elements = 16 lanes each), in high nibbles
 * 2j+1 and 2j+3.  Q6_K: 64 elements = 4 groups of 16 (8 lanes each). */
static const uint16_t g_k4_idx[4][32] __attribute__((aligned(64))) = {
	{R16(0), R16(2)}, {R16(1), R16(3)}, {R16(4), R16(6)}, {R16(5), R16(7)},
};
static const uint16_t g_k6_idx[4][32] __attribute__((aligned(64))) = {
	{R8(0), R8(1), R8(2), R8(3)}, {R8(4), R8(5), R8(6), R8(7)},
	{R8(8), R8(9), R8(10), R8(11)}, {R8(12), R8(13), R8(14), R8(15)},
};
#undef R16
#undef R8

AI __m512i cat256(const int8_t *lo, const int8_t *hi)
{
	return _mm512_inserti64x4(
		_mm512_castsi256_si512(_mm256_loadu_si256((const void *)lo)),
		_mm256_loadu_si256((const void *)hi), 1);
}

/* One weight row against A activation rows (b[0..A), xs bytes apart): the
 * weight side (scales, nibbles, scale permutes) is unpacked once per
 * super-block and used A times; each activation row's arithmetic is the
 * single-row dot's, in the same order, so results do not depend on A. */
AI void dot_q4_K(const int A, int K, const struct veil_block_q4_K *a,
		 const uint8_t *xb, size_t xs, float *out)
{
	__m512 acc[4];
	float accm[4];
	const __m512i m4 = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 4
	for (int k = 0; k < A; k++) {
		acc[k] = _mm512_setzero_ps();
		accm[k] = 0;
	}
	for (int i = 0; i < K / VEIL_QK_K; i++) {
		uint64_t sc8, mn8;
		q4k_unpack(a[i].scales, &sc8, &mn8);
		const __m128i mn16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn8));
		const __m512i sc16 = _mm512_castsi128_si512(
			_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
		const float da = veil_q_h2f(a[i].d), dmina = veil_q_h2f(a[i].dmin);
		__m512i sumi[4];
		int32_t summ[4];
#pragma GCC unroll 4
		for (int k = 0; k < A; k++) {
			const struct veil_block_q8_K *b = (const void *)(xb + (size_t)k * xs);
			/* sum_j m_j * (activation sum over sub-block j) */
			const __m128i bs = _mm_hadd_epi16(
				_mm_loadu_si128((const void *)b[i].bsums),
				_mm_loadu_si128((const void *)(b[i].bsums + 8)));
			__m128i pm = _mm_madd_epi16(mn16, bs);
			pm = _mm_add_epi32(pm, _mm_shuffle_epi32(pm, 0x4e));
			pm = _mm_add_epi32(pm, _mm_shuffle_epi32(pm, 0xb1));
			summ[k] = _mm_cvtsi128_si32(pm);
			sumi[k] = _mm512_setzero_si512();
		}
		for (int h = 0; h < 2; h++) { /* 128 elements */
			const __m512i q = _mm512_loadu_si512(a[i].qs + 64 * h);
			const __m512i lo = _mm512_and_si512(q, m4);
			const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
			const __m512i s0 = _mm512_permutexvar_epi16(
				_mm512_load_si512(g_k4_idx[2 * h]), sc16);
			const __m512i s1 = _mm512_permutexvar_epi16(
				_mm512_load_si512(g_k4_idx[2 * h + 1]), sc16);
#pragma GCC unroll 4
			for (int k = 0; k < A; k++) {
				const struct veil_block_q8_K *b =
					(const void *)(xb + (size_t)k * xs);
				const int8_t *q8 = b[i].qs + 128 * h;
				sumi[k] = _mm512_dpwssd_epi32(sumi[k], _mm512_maddubs_epi16(
					lo, cat256(q8, q8 + 64)), s0);
				sumi[k] = _mm512_dpwssd_epi32(sumi[k], _mm512_maddubs_epi16(
					hi, cat256(q8 + 32, q8 + 96)), s1);
			}
		}
#pragma GCC unroll 4
		for (int k = 0; k < A; k++) {
			const struct veil_block_q8_K *b = (const void *)(xb + (size_t)k * xs);
			const float d = da * b[i].d, dmin = dmina * b[i].d;
			acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi[k]),
						 acc[k]);
			accm[k] += dmin * (float)summ[k];
		}
	}
#pragma GCC unroll 4
	for (int k = 0; k < A; k++)
		out[k] = _mm512_reduce_add_ps(acc[k]) - accm[k];
}

/* As dot_q4_K, for Q6_K. */
AI void dot_q6_K(const int A, int K, const struct veil_block_q6_K *a,
		 const uint8_t *xb, size_t xs, float *out)
{
	__m512 acc[4];
	const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
	const __m512i shl = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4);
	const __m512i shr = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
#pragma GCC unroll 4
	for (int k = 0; k < A; k++)
		acc[k] = _mm512_setzero_ps();
	for (int i = 0; i < K / VEIL_QK_K; i++) {
		const __m256i sc = _mm256_cvtepi8_epi16(
			_mm_loadu_si128((const void *)a[i].scales));
		const __m512i sc16 = _mm512_castsi256_si512(sc);
		const float da = veil_q_h2f(a[i].d);
		__m512i sumi[4];
#pragma GCC unroll 4
		for (int k = 0; k < A; k++) {
			const struct veil_block_q8_K *b = (const void *)(xb + (size_t)k * xs);
			/* the -32 offset, exactly: 32 * sum_g sc_g * (16-sum of x)_g */
			const __m256i corr = _mm256_madd_epi16(
				sc, _mm256_loadu_si256((const void *)b[i].bsums));
			sumi[k] = _mm512_zextsi256_si512(_mm256_sub_epi32(
				_mm256_setzero_si256(), _mm256_slli_epi32(corr, 5)));
		}
		for (int n = 0; n < 2; n++) { /* 128 elements */
			const __m512i l = _mm512_loadu_si512(a[i].ql + 64 * n);
			const __m512i h = _mm512_broadcast_i64x4(
				_mm256_loadu_si256((const void *)(a[i].qh + 32 * n)));
			/* elements 0-63: low nibbles | qh bits 0-1 (then 2-3) */
			const __m512i qa = _mm512_or_si512(
				_mm512_and_si512(l, m4),
				_mm512_and_si512(_mm512_sllv_epi64(h, shl), m30));
			/* elements 64-127: high nibbles | qh bits 4-5 (then 6-7) */
			const __m512i qb = _mm512_or_si512(
				_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
				_mm512_and_si512(_mm512_srlv_epi64(h, shr), m30));
			const __m512i sa = _mm512_permutexvar_epi16(
				_mm512_load_si512(g_k6_idx[2 * n]), sc16);
			const __m512i sb = _mm512_permutexvar_epi16(
				_mm512_load_si512(g_k6_idx[2 * n + 1]), sc16);
#pragma GCC unroll 4
			for (int k = 0; k < A; k++) {
				const struct veil_block_q8_K *b =
					(const void *)(xb + (size_t)k * xs);
				const int8_t *q8 = b[i].qs + 128 * n;
				sumi[k] = _mm512_dpwssd_epi32(sumi[k], _mm512_maddubs_epi16(
					qa, _mm512_loadu_si512(q8)), sa);
				sumi[k] = _mm512_dpwssd_epi32(sumi[k], _mm512_maddubs_epi16(
					qb, _mm512_loadu_si512(q8 + 64)), sb);
			}
		}
#pragma GCC unroll 4
		for (int k = 0; k < A; k++) {
			const struct veil_block_q8_K *b = (const void *)(xb + (size_t)k * xs);
			const float d = da * b[i].d;
			acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi[k]),
						 acc[k]);
		}
	}
#pragma GCC unroll 4
	for (int k = 0; k < A; k++)
		out[k] = _mm512_reduce_add_ps(acc[k]);
}

/* Up to 4 activation rows per weight row: prefill unpacks each weight
 * super-block once per 4 rows instead of once per row. */
#define KQ_GEMM(name, dot, blk)                                                \
	static void name(int K, const void *w, size_t ws, int r0, int r1,      \
			 const void *x, size_t xs, int nb, float *y, size_t ldy) \
	{                                                                      \
		for (int b = 0; b < nb; b += 4) {                              \
			const uint8_t *xb = (const uint8_t *)x + (size_t)b * xs;   \
			const int A = VEIL_MIN(4, nb - b);                     \
			for (int r = r0; r < r1; r++) {                        \
				const blk *wr = (const void *)((const uint8_t *)w + \
							       (size_t)r * ws); \
				float o[4];                                    \
				switch (A) {                                   \
				case 4: dot(4, K, wr, xb, xs, o); break;       \
				case 3: dot(3, K, wr, xb, xs, o); break;       \
				case 2: dot(2, K, wr, xb, xs, o); break;       \
				default: dot(1, K, wr, xb, xs, o); break;      \
				}                                              \
				for (int k = 0; k < A; k++)                    \
					y[(size_t)(b + k) * ldy + r] = o[k];   \
			}                                                      \
		}                                                              \
	}
KQ_GEMM(gemm_q4_K, dot_q4_K, struct veil_block_q4_K)
KQ_GEMM(gemm_q6_K, dot_q6_K, struct veil_block_q6_K)
#undef KQ_GEMM

void veil_quant_fill_avx512vnni(struct veil_quant_kern *k)
{
	k->gemm[VEIL_DT_Q8_0] = gemm_q8_0;
	k->gemm[VEIL_DT_Q4_0] = gemm_q4_0;
	k->gemm[VEIL_DT_Q4_K] = gemm_q4_K;
	k->gemm[VEIL_DT_Q6_K] = gemm_q6_K;
	k->gemm_packed[VEIL_DT_Q8_0] = gemm_packed_q8_0;
	k->gemm_packed[VEIL_DT_Q4_0] = gemm_packed_q4_0;
	k->pack_fast[VEIL_DT_Q8_0] = true;
	k->pack_fast[VEIL_DT_Q4_0] = true;
}
