/* Portable element-wise kernels and the path selection; see ops.h. */
#include "ops.h"

#include <math.h>
#include <pthread.h>

#include "veil/quant.h"

static void softmax_c(float *s, int n, float scale)
{
	float mx = -INFINITY, inv;
	double sum = 0.0;

	for (int j = 0; j < n; j++) {
		s[j] *= scale;
		mx = s[j] > mx ? s[j] : mx;
	}
	for (int j = 0; j < n; j++) {
		s[j] = expf(s[j] - mx);
		sum += (double)s[j];
	}
	inv = (float)(1.0 / sum);
	for (int j = 0; j < n; j++)
		s[j] *= inv;
}

static void silu_mul_c(float *g, const float *u, int n)
{
	for (int i = 0; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static double sumsq_c(const float *x, int n)
{
	double sum = 0.0;

	for (int i = 0; i < n; i++)
		sum += (double)(x[i] * x[i]);
	return sum;
}

static void qk_c(const float *q, int nt, int hd, const uint16_t *kt, size_t kts,
		 int n, float *s, size_t lds)
{
	for (int t = 0; t < nt; t++) {
		float *st = s + (size_t)t * lds;

		for (int j = 0; j < n; j++)
			st[j] = 0.0f;
		for (int d = 0; d < hd; d++) {
			const uint16_t *kr = kt + (size_t)d * kts;
			float qd = q[(size_t)t * hd + d];

			for (int j = 0; j < n; j++)
				st[j] += qd * veil_fp16_to_fp32(kr[j]);
		}
	}
}

static struct veil_ops g_ops[3];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_ops(void)
{
	for (int i = 0; i < 3; i++)
		g_ops[i] = (struct veil_ops){softmax_c, silu_mul_c, sumsq_c, qk_c, NULL};
	g_ops[VEIL_ISA_AVX512] = g_ops[VEIL_ISA_AVX2];
	veil_ops_fill_avx2(&g_ops[VEIL_ISA_AVX2]);
	veil_ops_fill_avx2(&g_ops[VEIL_ISA_AVX512]);
	veil_ops_fill_avx512(&g_ops[VEIL_ISA_AVX512]);
}

const struct veil_ops *veil_ops_get(void)
{
	enum veil_isa isa;

	pthread_once(&g_once, init_ops);
	isa = veil_isa_active();
	if ((int)isa < 0 || (int)isa > 2)
		isa = VEIL_ISA_SCALAR;
	return &g_ops[isa];
}
