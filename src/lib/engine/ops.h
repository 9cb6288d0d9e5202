/* Private to the engine: element-wise kernels of the forward pass (softmax,
 * SiLU-gate, sum of squares) in a portable build and, in ops_avx2.c /
 * ops_avx512.c, vectorized builds, with the sampler's greedy argmax
 * (vectorized builds only).  The choice follows the quant module's active
 * path (veil_isa_active()), so forcing a path in tests covers these too.  The vector exp is accurate to about 1 ulp; llama.cpp's
 * vector exp differs from libm's by as much, so logits agree within noise. */
#ifndef VEIL_OPS_H
#define VEIL_OPS_H

#include <float.h>
#include <math.h>

#include "veil/base.h"

struct veil_ops {
	/* s[0..n) = softmax(s * scale), in place (ggml_soft_max_ext without
	 * mask: max, exp(x - max), sum in double, multiply by 1/sum). */
	void (*softmax)(float *s, int n, float scale);
	/* g[i] = silu(g[i]) * u[i]; silu(x) = x / (1 + exp(-x)). */
	void (*silu_mul)(float *g, const float *u, int n);
	/* sum of x[i]^2, each square rounded to float, summed in double. */
	double (*sumsq)(const float *x, int n);
	/* Attention scores against a transposed F16 key cache:
	 * s[t * lds + j] = sum_d q[t * hd + d] * kt[d * kts + j]
	 * for t < nt, j < n.  q holds values already rounded to F16 (so each
	 * product is exact in F32, as in llama.cpp's F16 dot). */
	void (*qk)(const float *q, int nt, int hd, const uint16_t *kt, size_t kts,
		   int n, float *s, size_t lds);
	/* The sampler's greedy pick: index of the first maximum of l[0..n)
	 * (NaN never wins, +inf counts as FLT_MAX, ties -> lowest index), -1
	 * when every value is -inf or NaN.  NULL on the portable path, where
	 * the sampler's own one-pass scan serves. */
	int32_t (*argmax)(const float *l, size_t n);
};

/* For the argmax kernels: +inf as FLT_MAX, and the scalar end of their
 * second pass (the first index in [i, n) whose clamped value is mx). */
static inline float veil_ops_clamp_inf(float v)
{
	return v == INFINITY ? FLT_MAX : v;
}

static inline int32_t veil_ops_argmax_tail(const float *l, size_t i, size_t n, float mx)
{
	for (; i < n; i++)
		if (veil_ops_clamp_inf(l[i]) == mx)
			return (int32_t)i;
	return -1;
}

const struct veil_ops *veil_ops_get(void);

void veil_ops_fill_avx2(struct veil_ops *o);
void veil_ops_fill_avx512(struct veil_ops *o);

#endif
