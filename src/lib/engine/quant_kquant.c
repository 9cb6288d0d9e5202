/* Reference K-quant quantizers: Q4_K and Q6_K, bit-identical to ggml's
 * quantize_row_q4_K_ref / quantize_row_q6_K_ref (used by llama-quantize when
 * no importance matrix is given), so files we write match llama.cpp's.
 *
 * Bit-exactness depends on doing the same float operations in the same
 * order: every sum below accumulates left to right in float, products are
 * evaluated as written ((w * x) * l, not w * (x * l)), and nothing is fused
 * (the library is built as ISO C, where GCC does not contract a*b+c).
 * The search constants (rmin, rdelta, nstep, the +-0.9 scale sweep) are part
 * of the format's de-facto definition; changing any of them changes files. */
#include "veil/quant.h"

#include <math.h>
#include <string.h>

/* ggml's GROUP_MAX_EPS: a group whose largest magnitude is below this is
 * treated as all zero. */
#define KQ_GROUP_MAX_EPS 1e-15f

/* Round to nearest, ties to even, by the 1.5 * 2^23 trick; valid for
 * |f| <= 2^22 - 1, which every caller guarantees (scaled values are bounded
 * by the quant range).  The trick, not lrintf, is what ggml does, and the two
 * agree in that range under the default rounding mode. */
static inline int kq_nearest_int(float f)
{
	float v = f + 12582912.f;
	int32_t i;

	memcpy(&i, &v, sizeof(i));
	return (i & 0x007fffff) - 0x00400000;
}

static inline int kq_clamp(int v, int lo, int hi)
{
	return v < lo ? lo : (v > hi ? hi : v);
}

/* Symmetric quantization of n values to [-nmax, nmax-1] (stored with +nmax
 * offset in L), weighted by x^2 (ggml's rmse_type 1, no importance matrix),
 * searching 18 nearby scales for the one with the best weighted fit.
 * Returns the scale. */
static float kq_make_qx_quants(int n, int nmax, const float *x, int8_t *L)
{
	float max = 0, amax = 0;

	for (int i = 0; i < n; i++) {
		float ax = fabsf(x[i]);
		if (ax > amax) {
			amax = ax;
			max = x[i];
		}
	}
	if (amax < KQ_GROUP_MAX_EPS) {
		for (int i = 0; i < n; i++)
			L[i] = 0;
		return 0.f;
	}

	float iscale = (float)-nmax / max;
	float sumlx = 0, suml2 = 0;
	for (int i = 0; i < n; i++) {
		int l = kq_clamp(kq_nearest_int(iscale * x[i]), -nmax, nmax - 1);
		L[i] = (int8_t)(l + nmax);
		float w = x[i] * x[i];
		sumlx += w * x[i] * (float)l;
		suml2 += w * (float)l * (float)l;
	}
	float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
	float best = scale * sumlx;

	for (int is = -9; is <= 9; is++) {
		if (is == 0)
			continue;
		iscale = -((float)nmax + 0.1f * (float)is) / max;
		sumlx = 0;
		suml2 = 0;
		for (int i = 0; i < n; i++) {
			int l = kq_clamp(kq_nearest_int(iscale * x[i]), -nmax,
					 nmax - 1);
			float w = x[i] * x[i];
			sumlx += w * x[i] * (float)l;
			suml2 += w * (float)l * (float)l;
		}
		if (suml2 > 0 && sumlx * sumlx > best * suml2) {
			for (int i = 0; i < n; i++) {
				int l = kq_clamp(kq_nearest_int(iscale * x[i]),
						 -nmax, nmax - 1);
				L[i] = (int8_t)(l + nmax);
			}
			scale = sumlx / suml2;
			best = scale * sumlx;
		}
	}
	return scale;
}

/* Asymmetric quantization of n values to [0, nmax] with scale and min
 * (x ~ scale * L - the_min), minimizing the weighted squared error over
 * nstep+1 candidate scales around nmax / (max - min).  Returns the scale and
 * writes the (non-negative) min to *the_min.  Laux is scratch of n bytes. */
static float kq_make_qkx2_quants(int n, int nmax, const float *x,
				 const float *weights, uint8_t *L,
				 float *the_min, uint8_t *Laux, float rmin,
				 float rdelta, int nstep)
{
	float min = x[0], max = x[0];
	float sum_w = weights[0];
	float sum_x = sum_w * x[0];

	for (int i = 1; i < n; i++) {
		if (x[i] < min)
			min = x[i];
		if (x[i] > max)
			max = x[i];
		float w = weights[i];
		sum_w += w;
		sum_x += w * x[i];
	}
	if (min > 0)
		min = 0;
	if (max == min) {
		for (int i = 0; i < n; i++)
			L[i] = 0;
		*the_min = -min;
		return 0.f;
	}

	float iscale = (float)nmax / (max - min);
	float scale = 1 / iscale;
	float best_error = 0;
	for (int i = 0; i < n; i++) {
		int l = kq_nearest_int(iscale * (x[i] - min));
		L[i] = (uint8_t)kq_clamp(l, 0, nmax);
		float diff = scale * (float)L[i] + min - x[i];
		best_error += weights[i] * (diff * diff);
	}
	if (nstep < 1) {
		*the_min = -min;
		return scale;
	}

	for (int is = 0; is <= nstep; is++) {
		iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
		float sum_l = 0, sum_l2 = 0, sum_xl = 0;
		for (int i = 0; i < n; i++) {
			int l = kq_clamp(kq_nearest_int(iscale * (x[i] - min)),
					 0, nmax);
			Laux[i] = (uint8_t)l;
			float w = weights[i];
			sum_l += w * (float)l;
			sum_l2 += w * (float)l * (float)l;
			sum_xl += w * (float)l * x[i];
		}
		float D = sum_w * sum_l2 - sum_l * sum_l;
		if (D > 0) {
			float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
			float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
			if (this_min > 0) {
				this_min = 0;
				this_scale = sum_xl / sum_l2;
			}
			float cur_error = 0;
			for (int i = 0; i < n; i++) {
				float diff = this_scale * (float)Laux[i] +
					     this_min - x[i];
				cur_error += weights[i] * (diff * diff);
			}
			if (cur_error < best_error) {
				memcpy(L, Laux, (size_t)n);
				best_error = cur_error;
				scale = this_scale;
				min = this_min;
			}
		}
	}
	*the_min = -min;
	return scale;
}

/* Q4_K packs eight 6-bit (scale, min) pairs into 12 bytes: pairs 0..3 in the
 * low 6 bits of bytes 0..3 / 4..7, pairs 4..7 as nibbles in bytes 8..11 with
 * their top two bits in the high bits of bytes 0..7. */
static void kq_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
	if (j < 4) {
		*d = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
		*m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
	}
}

void veil_quantize_q4_K_ref(const float *x, struct veil_block_q4_K *y, int64_t k)
{
	const int64_t nb = k / VEIL_QK_K;
	uint8_t L[VEIL_QK_K];
	uint8_t Laux[32];
	float weights[32];
	float mins[VEIL_QK_K / 32];
	float scales[VEIL_QK_K / 32];

	for (int64_t i = 0; i < nb; i++) {
		float max_scale = 0, max_min = 0;

		for (int j = 0; j < VEIL_QK_K / 32; j++) {
			const float *xb = x + 32 * j;
			float sum_x2 = 0;
			for (int l = 0; l < 32; l++)
				sum_x2 += xb[l] * xb[l];
			float av_x = sqrtf(sum_x2 / 32);
			for (int l = 0; l < 32; l++)
				weights[l] = av_x + fabsf(xb[l]);
			scales[j] = kq_make_qkx2_quants(32, 15, xb, weights,
							L + 32 * j, &mins[j],
							Laux, -1.f, 0.1f, 20);
			if (scales[j] > max_scale)
				max_scale = scales[j];
			if (mins[j] > max_min)
				max_min = mins[j];
		}

		float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
		float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
		for (int j = 0; j < VEIL_QK_K / 32; j++) {
			/* ggml stores the int in a uint8_t before clamping */
			uint8_t ls = (uint8_t)kq_nearest_int(inv_scale * scales[j]);
			uint8_t lm = (uint8_t)kq_nearest_int(inv_min * mins[j]);
			ls = ls > 63 ? 63 : ls;
			lm = lm > 63 ? 63 : lm;
			if (j < 4) {
				y[i].scales[j] = ls;
				y[i].scales[j + 4] = lm;
			} else {
				y[i].scales[j + 4] =
					(uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
				y[i].scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
				y[i].scales[j - 0] |= (uint8_t)((lm >> 4) << 6);
			}
		}
		y[i].d = veil_fp32_to_fp16(max_scale / 63.f);
		y[i].dmin = veil_fp32_to_fp16(max_min / 63.f);

		for (int j = 0; j < VEIL_QK_K / 32; j++) {
			uint8_t sc, m;
			kq_get_scale_min_k4(j, y[i].scales, &sc, &m);
			const float d = veil_fp16_to_fp32(y[i].d) * (float)sc;
			if (d == 0)
				continue;
			const float dm = veil_fp16_to_fp32(y[i].dmin) * (float)m;
			for (int ii = 0; ii < 32; ii++) {
				int l = kq_nearest_int((x[32 * j + ii] + dm) / d);
				L[32 * j + ii] = (uint8_t)kq_clamp(l, 0, 15);
			}
		}

		uint8_t *q = y[i].qs;
		for (int j = 0; j < VEIL_QK_K; j += 64) {
			for (int l = 0; l < 32; l++)
				q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
			q += 32;
		}
		x += VEIL_QK_K;
	}
}

void veil_quantize_q6_K_ref(const float *x, struct veil_block_q6_K *y, int64_t k)
{
	const int64_t nb = k / VEIL_QK_K;
	int8_t L[VEIL_QK_K];
	float scales[VEIL_QK_K / 16];

	for (int64_t i = 0; i < nb; i++) {
		float max_scale = 0, max_abs_scale = 0;

		for (int ib = 0; ib < VEIL_QK_K / 16; ib++) {
			const float scale =
				kq_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
			scales[ib] = scale;
			const float abs_scale = fabsf(scale);
			if (abs_scale > max_abs_scale) {
				max_abs_scale = abs_scale;
				max_scale = scale;
			}
		}

		if (max_abs_scale < KQ_GROUP_MAX_EPS) {
			memset(&y[i], 0, sizeof(y[i]));
			y[i].d = veil_fp32_to_fp16(0.f);
			x += VEIL_QK_K;
			continue;
		}

		float iscale = -128.f / max_scale;
		y[i].d = veil_fp32_to_fp16(1 / iscale);
		for (int ib = 0; ib < VEIL_QK_K / 16; ib++) {
			int s = kq_nearest_int(iscale * scales[ib]);
			y[i].scales[ib] = (int8_t)(s > 127 ? 127 : s);
		}

		for (int j = 0; j < VEIL_QK_K / 16; j++) {
			float d = veil_fp16_to_fp32(y[i].d) * (float)y[i].scales[j];
			if (d == 0)
				continue;
			for (int ii = 0; ii < 16; ii++) {
				int l = kq_nearest_int(x[16 * j + ii] / d);
				L[16 * j + ii] = (int8_t)(kq_clamp(l, -32, 31) + 32);
			}
		}

		uint8_t *ql = y[i].ql;
		uint8_t *qh = y[i].qh;
		for (int j = 0; j < VEIL_QK_K; j += 128) {
			for (int l = 0; l < 32; l++) {
				const uint8_t q1 = L[j + l + 0] & 0xF;
				const uint8_t q2 = L[j + l + 32] & 0xF;
				const uint8_t q3 = L[j + l + 64] & 0xF;
				const uint8_t q4 = L[j + l + 96] & 0xF;
				ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
				ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
				qh[l] = (uint8_t)((L[j + l] >> 4) |
						  ((L[j + l + 32] >> 4) << 2) |
						  ((L[j + l + 64] >> 4) << 4) |
						  ((L[j + l + 96] >> 4) << 6));
			}
			ql += 64;
			qh += 32;
		}
		x += VEIL_QK_K;
	}
}
