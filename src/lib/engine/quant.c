/* Number formats and the portable scalar kernels, plus the CPU dispatch.
 *
 * Block layouts and reference quantizers follow ggml (ggml-quants.c) so
 * files and activations match llama.cpp byte for byte; the dot products
 * follow ggml's vec_dot_* semantics (integer sums inside a block, one float
 * multiply-add per block).  The ISA files (quant_avx2.c, quant_avx512.c,
 * quant_avx512vnni.c) override entries of the kernel table. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "quant_impl.h"

/* ---- scalar conversions ------------------------------------------------ */

static inline uint32_t f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static inline float u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

float veil_fp16_to_fp32(uint16_t h)
{
	uint32_t s = (uint32_t)(h & 0x8000) << 16;
	uint32_t e = (h >> 10) & 0x1f;
	uint32_t m = h & 0x3ff;

	if (e == 0) {
		if (m == 0)
			return u2f(s);
		/* subnormal: normalise into an fp32 normal */
		e = 127 - 15 + 1;
		while (!(m & 0x400)) {
			m <<= 1;
			e--;
		}
		m &= 0x3ff;
		return u2f(s | (e << 23) | (m << 13));
	}
	if (e == 31) /* Inf, or NaN made quiet (as VCVTPH2PS does) */
		return u2f(s | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0));
	return u2f(s | ((e + 112) << 23) | (m << 13));
}

uint16_t veil_fp32_to_fp16(float f)
{
	uint32_t u = f2u(f);
	uint32_t s = (u >> 16) & 0x8000;
	uint32_t a = u & 0x7fffffff;

	if (a > 0x7f800000u) /* NaN: quiet, payload truncated (as VCVTPS2PH) */
		return (uint16_t)(s | 0x7e00 | ((a >> 13) & 0x3ff));
	if (a >= 0x477ff000u) /* >= 65520 rounds to Inf */
		return (uint16_t)(s | 0x7c00);
	if (a >= 0x38800000u) { /* fp16 normal range */
		uint32_t r = (a + 0xfff + ((a >> 13) & 1)) >> 13;
		return (uint16_t)(s | (r - (112u << 10)));
	}
	if (a <= 0x33000000u) /* <= 2^-25 rounds (to even) to zero */
		return (uint16_t)s;
	/* fp16 subnormal: round(value * 2^24) to nearest even */
	uint32_t e = a >> 23;
	uint32_t m = (a & 0x7fffff) | 0x800000;
	uint32_t shift = 126 - e; /* 14..24 */
	uint32_t q = m >> shift;
	uint32_t rem = m & ((1u << shift) - 1);
	uint32_t half = 1u << (shift - 1);
	if (rem > half || (rem == half && (q & 1)))
		q++;
	return (uint16_t)(s | q);
}

float veil_bf16_to_fp32(uint16_t h)
{
	return u2f((uint32_t)h << 16);
}

uint16_t veil_fp32_to_bf16(float f)
{
	uint32_t u = f2u(f);

	if ((u & 0x7fffffff) > 0x7f800000u) /* NaN: force quiet */
		return (uint16_t)((u >> 16) | 64);
	return (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

/* ---- block geometry (local: the engine must not depend on the parser) -- */

static size_t blk_elems(enum veil_dtype t)
{
	switch (t) {
	case VEIL_DT_F32:
	case VEIL_DT_F16:
	case VEIL_DT_BF16:
		return 1;
	case VEIL_DT_Q8_0:
	case VEIL_DT_Q4_0:
		return 32;
	case VEIL_DT_Q4_K:
	case VEIL_DT_Q6_K:
	case VEIL_DT_Q8_K:
		return VEIL_QK_K;
	default:
		return 0;
	}
}

/* ---- scalar dots (one weight row against one activation row) ----------- */

static float dot_f32(int K, const void *w, const void *x)
{
	const float *a = w, *b = x;
	float s = 0;
	for (int i = 0; i < K; i++)
		s += a[i] * b[i];
	return s;
}

static float dot_f16(int K, const void *w, const void *x)
{
	const uint16_t *a = w, *b = x;
	float s = 0;
	for (int i = 0; i < K; i++)
		s += veil_fp16_to_fp32(a[i]) * veil_fp16_to_fp32(b[i]);
	return s;
}

static float dot_bf16(int K, const void *w, const void *x)
{
	const uint16_t *a = w, *b = x;
	float s = 0;
	for (int i = 0; i < K; i++)
		s += veil_bf16_to_fp32(a[i]) * veil_bf16_to_fp32(b[i]);
	return s;
}

static float dot_q8_0(int K, const void *w, const void *x)
{
	const struct veil_block_q8_0 *a = w, *b = x;
	float s = 0;
	for (int i = 0; i < K / VEIL_QK8_0; i++) {
		int32_t si = 0;
		for (int j = 0; j < VEIL_QK8_0; j++)
			si += a[i].qs[j] * b[i].qs[j];
		s += (float)si * (veil_fp16_to_fp32(a[i].d) *
				  veil_fp16_to_fp32(b[i].d));
	}
	return s;
}

static float dot_q4_0(int K, const void *w, const void *x)
{
	const struct veil_block_q4_0 *a = w;
	const struct veil_block_q8_0 *b = x;
	float s = 0;
	for (int i = 0; i < K / VEIL_QK4_0; i++) {
		int32_t si = 0;
		for (int j = 0; j < VEIL_QK4_0 / 2; j++) {
			int v0 = (a[i].qs[j] & 0x0f) - 8;
			int v1 = (a[i].qs[j] >> 4) - 8;
			si += v0 * b[i].qs[j] + v1 * b[i].qs[j + VEIL_QK4_0 / 2];
		}
		s += (float)si * (veil_fp16_to_fp32(a[i].d) *
				  veil_fp16_to_fp32(b[i].d));
	}
	return s;
}

/* ggml get_scale_min_k4: 8 pairs of 6-bit (scale, min) packed in 12 bytes. */
static inline void q4k_scale_min(int j, const uint8_t *q, uint8_t *sc,
				 uint8_t *m)
{
	if (j < 4) {
		*sc = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
		*m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
	}
}

static float dot_q4_K(int K, const void *w, const void *x)
{
	const struct veil_block_q4_K *a = w;
	const struct veil_block_q8_K *b = x;
	float s = 0;
	for (int i = 0; i < K / VEIL_QK_K; i++) {
		const uint8_t *q4 = a[i].qs;
		const int8_t *q8 = b[i].qs;
		int32_t sumq = 0, summ = 0;
		for (int j = 0; j < 4; j++) { /* 64 elements per step */
			uint8_t sc0, m0, sc1, m1;
			q4k_scale_min(2 * j, a[i].scales, &sc0, &m0);
			q4k_scale_min(2 * j + 1, a[i].scales, &sc1, &m1);
			int32_t s0 = 0, s1 = 0;
			for (int l = 0; l < 32; l++) {
				s0 += (q4[l] & 0x0f) * q8[l];
				s1 += (q4[l] >> 4) * q8[l + 32];
			}
			sumq += sc0 * s0 + sc1 * s1;
			summ += m0 * (b[i].bsums[4 * j] + b[i].bsums[4 * j + 1]) +
				m1 * (b[i].bsums[4 * j + 2] + b[i].bsums[4 * j + 3]);
			q4 += 32;
			q8 += 64;
		}
		float d = veil_fp16_to_fp32(a[i].d) * b[i].d;
		float dmin = veil_fp16_to_fp32(a[i].dmin) * b[i].d;
		s += d * (float)sumq - dmin * (float)summ;
	}
	return s;
}

static float dot_q6_K(int K, const void *w, const void *x)
{
	const struct veil_block_q6_K *a = w;
	const struct veil_block_q8_K *b = x;
	float s = 0;
	for (int i = 0; i < K / VEIL_QK_K; i++) {
		const uint8_t *ql = a[i].ql, *qh = a[i].qh;
		const int8_t *sc = a[i].scales, *q8 = b[i].qs;
		int32_t sumi = 0;
		for (int n = 0; n < 2; n++) { /* 128 elements per step */
			int32_t g[8] = {0};
			for (int l = 0; l < 32; l++) {
				int is = l / 16;
				int v1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) - 32;
				int v2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
				int v3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				int v4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
				g[is + 0] += v1 * q8[l];
				g[is + 2] += v2 * q8[l + 32];
				g[is + 4] += v3 * q8[l + 64];
				g[is + 6] += v4 * q8[l + 96];
			}
			for (int k = 0; k < 8; k++)
				sumi += sc[k] * g[k];
			ql += 64;
			qh += 32;
			sc += 8;
			q8 += 128;
		}
		s += veil_fp16_to_fp32(a[i].d) * b[i].d * (float)sumi;
	}
	return s;
}

typedef float (*dot_fn)(int K, const void *w, const void *x);

static void gemm_scalar(dot_fn dot, int K, const void *w, size_t w_stride,
			int r0, int r1, const void *x, size_t x_stride, int nb,
			float *y, size_t ldy)
{
	const uint8_t *wb = w, *xb = x;
	for (int b = 0; b < nb; b++)
		for (int r = r0; r < r1; r++)
			y[(size_t)b * ldy + r] = dot(K, wb + (size_t)r * w_stride,
						     xb + (size_t)b * x_stride);
}

#define SCALAR_GEMM(name, dot)                                                 \
	static void name(int K, const void *w, size_t ws, int r0, int r1,      \
			 const void *x, size_t xs, int nb, float *y, size_t ldy) \
	{                                                                      \
		gemm_scalar(dot, K, w, ws, r0, r1, x, xs, nb, y, ldy);         \
	}
SCALAR_GEMM(gemm_f32, dot_f32)
SCALAR_GEMM(gemm_f16, dot_f16)
SCALAR_GEMM(gemm_bf16, dot_bf16)
SCALAR_GEMM(gemm_q8_0, dot_q8_0)
SCALAR_GEMM(gemm_q4_0, dot_q4_0)
SCALAR_GEMM(gemm_q4_K, dot_q4_K)
SCALAR_GEMM(gemm_q6_K, dot_q6_K)

/* ---- packed Q8_0 / Q4_0 (layout: include/veil/quant.h) ------------------ */

/* Weight element e (0..31) of block b of row r, and the row's block scale. */
static inline int packed_q(enum veil_dtype t, const struct veil_pack_geom *g,
			   const uint8_t *grp, int lane, int b, int e)
{
	const uint8_t *q = grp + (size_t)b * g->qbytes;
	if (t == VEIL_DT_Q8_0)
		return (int8_t)(q[(e / 4) * 64 + lane * 4 + e % 4] ^ 0x80);
	const int c = (e % 16) / 4;
	const uint8_t v = q[c * 64 + lane * 4 + e % 4];
	return (e < 16 ? (v & 0x0f) : (v >> 4)) - 8;
}

static inline uint16_t packed_d(const struct veil_pack_geom *g,
				const uint8_t *grp, int lane, int b)
{
	uint16_t d;
	memcpy(&d, grp + g->off_d + (size_t)b * 32 + (size_t)lane * 2, 2);
	return d;
}

/* The same sums in the same order as dot_q8_0 / dot_q4_0, so packed and
 * plain weights give bit-identical results on this path. */
static void gemm_packed_scalar(enum veil_dtype t, int K, const void *w,
			       int r0, int r1, const void *x, size_t xs,
			       int nb, float *y, size_t ldy)
{
	const struct veil_pack_geom g = veil_pack_geom_of(t, K);
	for (int a = 0; a < nb; a++) {
		const struct veil_block_q8_0 *xb =
			(const void *)((const uint8_t *)x + (size_t)a * xs);
		for (int r = r0; r < r1; r++) {
			const uint8_t *grp = (const uint8_t *)w +
					     (size_t)(r / VEIL_PACK_ROWS) * g.group;
			const int lane = r % VEIL_PACK_ROWS;
			float s = 0;
			for (int b = 0; b < g.nblk; b++) {
				int32_t si = 0;
				for (int e = 0; e < 32; e++)
					si += packed_q(t, &g, grp, lane, b, e) * xb[b].qs[e];
				s += (float)si * (veil_fp16_to_fp32(packed_d(&g, grp, lane, b)) *
						  veil_fp16_to_fp32(xb[b].d));
			}
			y[(size_t)a * ldy + r] = s;
		}
	}
}

static void gemm_packed_q8_0(int K, const void *w, size_t ws, int r0, int r1,
			     const void *x, size_t xs, int nb, float *y,
			     size_t ldy)
{
	(void)ws;
	gemm_packed_scalar(VEIL_DT_Q8_0, K, w, r0, r1, x, xs, nb, y, ldy);
}

static void gemm_packed_q4_0(int K, const void *w, size_t ws, int r0, int r1,
			     const void *x, size_t xs, int nb, float *y,
			     size_t ldy)
{
	(void)ws;
	gemm_packed_scalar(VEIL_DT_Q4_0, K, w, r0, r1, x, xs, nb, y, ldy);
}

/* ---- scalar vector helpers -------------------------------------------- */

static void s_f32_to_f16_row(const float *x, uint16_t *y, int n)
{
	for (int i = 0; i < n; i++)
		y[i] = veil_fp32_to_fp16(x[i]);
}

static void s_f16_to_f32_row(const uint16_t *x, float *y, int n)
{
	for (int i = 0; i < n; i++)
		y[i] = veil_fp16_to_fp32(x[i]);
}

static void s_vec_mad_f16(float *y, const uint16_t *v, float a, int n)
{
	for (int i = 0; i < n; i++)
		y[i] += a * veil_fp16_to_fp32(v[i]);
}

static float s_vec_dot_f16(const uint16_t *x, const uint16_t *v, int n)
{
	return dot_f16(n, x, v);
}

static float s_vec_dot_f32(const float *x, const float *v, int n)
{
	return dot_f32(n, x, v);
}

/* ---- reference quantizers (ggml's *_ref rounding) ---------------------- */

/* ggml quantize_row_q8_0_ref */
static void s_quantize_q8_0(const float *x, struct veil_block_q8_0 *y,
			    int64_t n)
{
	for (int64_t i = 0; i < n / VEIL_QK8_0; i++) {
		const float *xb = x + i * VEIL_QK8_0;
		float amax = 0;
		for (int j = 0; j < VEIL_QK8_0; j++)
			amax = fmaxf(amax, fabsf(xb[j]));
		const float d = amax / 127.0f;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = veil_fp32_to_fp16(d);
		/* a NaN or an infinity (a NaN / Inf activation, which a model
		 * file's weights can make, or id = inf for a block of tiny
		 * values) is 0, as the SIMD paths' low byte of INT_MIN,
		 * instead of an undefined cast */
		for (int j = 0; j < VEIL_QK8_0; j++) {
			const float r = roundf(xb[j] * id);

			y[i].qs[j] = fabsf(r) <= 127.0f ? (int8_t)r : 0;
		}
	}
}

/* ggml quantize_row_q4_0_ref */
static void quantize_q4_0(const float *x, struct veil_block_q4_0 *y,
			  int64_t n)
{
	for (int64_t i = 0; i < n / VEIL_QK4_0; i++) {
		const float *xb = x + i * VEIL_QK4_0;
		float amax = 0, max = 0;
		for (int j = 0; j < VEIL_QK4_0; j++) {
			if (amax < fabsf(xb[j])) {
				amax = fabsf(xb[j]);
				max = xb[j];
			}
		}
		const float d = max / -8.0f;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = veil_fp32_to_fp16(d);
		for (int j = 0; j < VEIL_QK4_0 / 2; j++) {
			/* as ggml for finite values (min(15, trunc)); clamped
			 * before the cast, so a NaN weight is not undefined */
			int q0 = (int)fmaxf(0.0f, fminf(15.0f, xb[j] * id + 8.5f));
			int q1 = (int)fmaxf(0.0f, fminf(15.0f, xb[j + VEIL_QK4_0 / 2] * id + 8.5f));
			y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
		}
	}
}

/* ggml nearest_int: round to nearest even via the 1.5*2^23 trick
 * (valid for |f| < 2^22). */
static inline int nearest_int(float f)
{
	float v = f + 12582912.0f;
	return (int)(f2u(v) & 0x007fffff) - 0x00400000;
}

/* ggml quantize_row_q8_K_ref */
static void quantize_q8_K(const float *x, struct veil_block_q8_K *y,
			  int64_t n)
{
	for (int64_t i = 0; i < n / VEIL_QK_K; i++) {
		const float *xb = x + i * VEIL_QK_K;
		float amax = 0, max = 0;
		for (int j = 0; j < VEIL_QK_K; j++) {
			if (fabsf(xb[j]) > amax) {
				amax = fabsf(xb[j]);
				max = xb[j];
			}
		}
		if (amax == 0.0f) {
			memset(&y[i], 0, sizeof(y[i]));
			continue;
		}
		const float iscale = -127.0f / max;
		for (int j = 0; j < VEIL_QK_K; j++) {
			int v = nearest_int(iscale * xb[j]);
			y[i].qs[j] = (int8_t)VEIL_MIN(127, v);
		}
		for (int j = 0; j < VEIL_QK_K / 16; j++) {
			int s = 0;
			for (int k = 0; k < 16; k++)
				s += y[i].qs[j * 16 + k];
			y[i].bsums[j] = (int16_t)s;
		}
		y[i].d = 1.0f / iscale;
	}
}

/* ---- per-thread scratch ------------------------------------------------ */

static _Thread_local void *t_scratch;
static _Thread_local size_t t_scratch_cap;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

/* The key's destructor frees a thread's scratch when the thread exits, so
 * pool workers and engine threads leave nothing behind. */
static void scratch_free(void *p)
{
	free(p);
}

static void scratch_key_init(void)
{
	pthread_key_create(&scratch_key, scratch_free);
}

void *veil_quant_scratch(size_t n)
{
	if (n > t_scratch_cap) {
		pthread_once(&scratch_once, scratch_key_init);
		free(t_scratch);
		t_scratch_cap = 0;
		t_scratch = aligned_alloc(64, (n + 63) & ~(size_t)63);
		pthread_setspecific(scratch_key, t_scratch);
		if (!t_scratch) {
			VEIL_ERROR("quant", "out of memory for %zu bytes of scratch", n);
			abort();
		}
		t_scratch_cap = n;
	}
	return t_scratch;
}

/* ---- dispatch ---------------------------------------------------------- */

static struct veil_quant_kern g_tab[3];     /* one table per path */
static bool g_have[3];
static bool g_vnni;
static enum veil_isa g_best = VEIL_ISA_SCALAR;
static _Atomic(const struct veil_quant_kern *) g_k;
static _Atomic int g_active = VEIL_ISA_SCALAR;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static char g_avail[64];

static void fill_scalar(struct veil_quant_kern *k)
{
	memset(k, 0, sizeof(*k));
	k->gemm[VEIL_DT_F32] = gemm_f32;
	k->gemm[VEIL_DT_F16] = gemm_f16;
	k->gemm[VEIL_DT_BF16] = gemm_bf16;
	k->gemm[VEIL_DT_Q8_0] = gemm_q8_0;
	k->gemm[VEIL_DT_Q4_0] = gemm_q4_0;
	k->gemm[VEIL_DT_Q4_K] = gemm_q4_K;
	k->gemm[VEIL_DT_Q6_K] = gemm_q6_K;
	k->f32_to_f16_row = s_f32_to_f16_row;
	k->f16_to_f32_row = s_f16_to_f32_row;
	k->vec_mad_f16 = s_vec_mad_f16;
	k->vec_dot_f16 = s_vec_dot_f16;
	k->vec_dot_f32 = s_vec_dot_f32;
	k->quantize_q8_0 = s_quantize_q8_0;
	k->gemm_packed[VEIL_DT_Q8_0] = gemm_packed_q8_0;
	k->gemm_packed[VEIL_DT_Q4_0] = gemm_packed_q4_0;
}

/* CPUID leaf 1 ECX: FMA bit 12, OSXSAVE 27, AVX 28, F16C 29.  Leaf 7 EBX:
 * AVX2 5, AVX512F 16, DQ 17, BW 30, VL 31; ECX: VNNI 11.  XCR0 must show the
 * OS saves YMM (bits 1-2) and ZMM/opmask state (bits 5-7).  Done by hand
 * because clang 14's __builtin_cpu_supports lacks "f16c". */
static void cpuid(unsigned leaf, unsigned sub, unsigned r[4])
{
	__asm__ volatile("cpuid"
			 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

static void detect(void)
{
	unsigned l0[4], l1[4], l7[4] = {0, 0, 0, 0};
	uint64_t xcr0 = 0;
	bool os_avx, os_avx512, avx2, avx512;

	cpuid(0, 0, l0);
	cpuid(1, 0, l1);
	if (l0[0] >= 7)
		cpuid(7, 0, l7);
	if (l1[2] & (1u << 27)) {
		unsigned lo, hi;

		__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
		xcr0 = (uint64_t)hi << 32 | lo;
	}
	os_avx = (xcr0 & 0x6) == 0x6;
	os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
	avx2 = os_avx && (l1[2] & (1u << 28)) && (l1[2] & (1u << 12)) &&
	       (l1[2] & (1u << 29)) && (l7[1] & (1u << 5));
	avx512 = avx2 && os_avx512 && (l7[1] & (1u << 16)) &&
		 (l7[1] & (1u << 17)) && (l7[1] & (1u << 30)) &&
		 (l7[1] & (1u << 31));
	g_vnni = avx512 && (l7[2] & (1u << 11));

	fill_scalar(&g_tab[VEIL_ISA_SCALAR]);
	g_have[VEIL_ISA_SCALAR] = true;
	strcpy(g_avail, "scalar");
	if (avx2) {
		g_tab[VEIL_ISA_AVX2] = g_tab[VEIL_ISA_SCALAR];
		veil_quant_fill_avx2(&g_tab[VEIL_ISA_AVX2]);
		g_have[VEIL_ISA_AVX2] = true;
		g_best = VEIL_ISA_AVX2;
		strcat(g_avail, ",avx2");
	}
	if (avx512) {
		g_tab[VEIL_ISA_AVX512] = g_tab[VEIL_ISA_AVX2];
		veil_quant_fill_avx512(&g_tab[VEIL_ISA_AVX512]);
		if (g_vnni)
			veil_quant_fill_avx512vnni(&g_tab[VEIL_ISA_AVX512]);
		g_have[VEIL_ISA_AVX512] = true;
		g_best = VEIL_ISA_AVX512;
		strcat(g_avail, ",avx512");
		if (g_vnni)
			strcat(g_avail, ",avx512vnni");
	}

	enum veil_isa use = g_best;
	const char *env = getenv("VEIL_ISA");
	if (env && *env) {
		int found = -1;
		for (int i = 0; i < 3; i++)
			if (strcmp(env, veil_isa_name((enum veil_isa)i)) == 0)
				found = i;
		if (found >= 0 && g_have[found])
			use = (enum veil_isa)found;
		else
			VEIL_WARN("quant", "VEIL_ISA=%s is %s here; using %s", env,
				  found < 0 ? "unknown" : "not supported",
				  veil_isa_name(use));
	}
	atomic_store(&g_active, (int)use);
	atomic_store(&g_k, &g_tab[use]);
}

void veil_quant_init(void)
{
	pthread_once(&g_once, detect);
}

static inline const struct veil_quant_kern *kern(void)
{
	const struct veil_quant_kern *k =
		atomic_load_explicit(&g_k, memory_order_acquire);
	if (__builtin_expect(k == NULL, 0)) {
		veil_quant_init();
		k = atomic_load_explicit(&g_k, memory_order_acquire);
	}
	return k;
}

enum veil_isa veil_isa_best(void)
{
	veil_quant_init();
	return g_best;
}

enum veil_isa veil_isa_active(void)
{
	veil_quant_init();
	return (enum veil_isa)atomic_load(&g_active);
}

int veil_isa_force(enum veil_isa isa)
{
	veil_quant_init();
	if ((int)isa < 0 || (int)isa > 2 || !g_have[isa])
		return VEIL_ENOTSUP;
	atomic_store(&g_active, (int)isa);
	atomic_store(&g_k, &g_tab[isa]);
	return 0;
}

const char *veil_isa_name(enum veil_isa isa)
{
	switch (isa) {
	case VEIL_ISA_SCALAR:
		return "scalar";
	case VEIL_ISA_AVX2:
		return "avx2";
	case VEIL_ISA_AVX512:
		return "avx512";
	}
	return "?";
}

const char *veil_isa_available(void)
{
	veil_quant_init();
	return g_avail;
}

/* ---- public row functions ---------------------------------------------- */

enum veil_dtype veil_quant_act_type(enum veil_dtype w)
{
	switch (w) {
	case VEIL_DT_F16:
		return VEIL_DT_F16;
	case VEIL_DT_BF16:
		return VEIL_DT_BF16;
	case VEIL_DT_Q8_0:
	case VEIL_DT_Q4_0:
		return VEIL_DT_Q8_0;
	case VEIL_DT_Q4_K:
	case VEIL_DT_Q6_K:
		return VEIL_DT_Q8_K;
	default:
		return VEIL_DT_F32;
	}
}

static int check_n(enum veil_dtype t, int64_t n)
{
	size_t be = blk_elems(t);
	if (be == 0)
		return veil_errf(VEIL_ENOTSUP, "quant: type %d not supported",
				 (int)t);
	if (n < 0 || n % (int64_t)be != 0)
		return veil_errf(VEIL_EINVAL,
				 "quant: %lld elements is not a multiple of %zu",
				 (long long)n, be);
	return 0;
}

static void deq_q4_K(const struct veil_block_q4_K *x, float *y, int64_t n)
{
	for (int64_t i = 0; i < n / VEIL_QK_K; i++) {
		const float d = veil_fp16_to_fp32(x[i].d);
		const float dmin = veil_fp16_to_fp32(x[i].dmin);
		const uint8_t *q = x[i].qs;
		for (int j = 0; j < 4; j++) {
			uint8_t sc0, m0, sc1, m1;
			q4k_scale_min(2 * j, x[i].scales, &sc0, &m0);
			q4k_scale_min(2 * j + 1, x[i].scales, &sc1, &m1);
			const float d1 = d * sc0, mm1 = dmin * m0;
			const float d2 = d * sc1, mm2 = dmin * m1;
			for (int l = 0; l < 32; l++)
				*y++ = d1 * (q[l] & 0xf) - mm1;
			for (int l = 0; l < 32; l++)
				*y++ = d2 * (q[l] >> 4) - mm2;
			q += 32;
		}
	}
}

static void deq_q6_K(const struct veil_block_q6_K *x, float *y, int64_t n)
{
	for (int64_t i = 0; i < n / VEIL_QK_K; i++) {
		const float d = veil_fp16_to_fp32(x[i].d);
		const uint8_t *ql = x[i].ql, *qh = x[i].qh;
		const int8_t *sc = x[i].scales;
		for (int k = 0; k < 2; k++) {
			for (int l = 0; l < 32; l++) {
				int is = l / 16;
				int v1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) - 32;
				int v2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
				int v3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				int v4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
				y[l] = d * sc[is + 0] * v1;
				y[l + 32] = d * sc[is + 2] * v2;
				y[l + 64] = d * sc[is + 4] * v3;
				y[l + 96] = d * sc[is + 6] * v4;
			}
			y += 128;
			ql += 64;
			qh += 32;
			sc += 8;
		}
	}
}

int veil_dequantize_row(enum veil_dtype t, const void *src, float *dst,
			int64_t n)
{
	int rc;
	if ((rc = check_n(t, n)) < 0)
		return rc;
	switch (t) {
	case VEIL_DT_F32:
		memmove(dst, src, (size_t)n * sizeof(float));
		break;
	case VEIL_DT_F16:
		for (int64_t i = 0; i < n; i += 1 << 30)
			kern()->f16_to_f32_row((const uint16_t *)src + i, dst + i,
					       (int)VEIL_MIN(n - i, 1 << 30));
		break;
	case VEIL_DT_BF16: {
		const uint16_t *s = src;
		for (int64_t i = 0; i < n; i++)
			dst[i] = veil_bf16_to_fp32(s[i]);
		break;
	}
	case VEIL_DT_Q8_0: {
		const struct veil_block_q8_0 *b = src;
		for (int64_t i = 0; i < n / VEIL_QK8_0; i++) {
			const float d = veil_fp16_to_fp32(b[i].d);
			for (int j = 0; j < VEIL_QK8_0; j++)
				dst[i * VEIL_QK8_0 + j] = d * b[i].qs[j];
		}
		break;
	}
	case VEIL_DT_Q4_0: {
		const struct veil_block_q4_0 *b = src;
		for (int64_t i = 0; i < n / VEIL_QK4_0; i++) {
			const float d = veil_fp16_to_fp32(b[i].d);
			float *o = dst + i * VEIL_QK4_0;
			for (int j = 0; j < VEIL_QK4_0 / 2; j++) {
				o[j] = d * ((b[i].qs[j] & 0xf) - 8);
				o[j + VEIL_QK4_0 / 2] = d * ((b[i].qs[j] >> 4) - 8);
			}
		}
		break;
	}
	case VEIL_DT_Q4_K:
		deq_q4_K(src, dst, n);
		break;
	case VEIL_DT_Q6_K:
		deq_q6_K(src, dst, n);
		break;
	case VEIL_DT_Q8_K: {
		const struct veil_block_q8_K *b = src;
		for (int64_t i = 0; i < n / VEIL_QK_K; i++)
			for (int j = 0; j < VEIL_QK_K; j++)
				dst[i * VEIL_QK_K + j] = b[i].d * b[i].qs[j];
		break;
	}
	default:
		return VEIL_ENOTSUP;
	}
	return 0;
}

int veil_quantize_row(enum veil_dtype t, const float *src, void *dst,
		      int64_t n)
{
	int rc;
	if ((rc = check_n(t, n)) < 0)
		return rc;
	switch (t) {
	case VEIL_DT_F32:
		memmove(dst, src, (size_t)n * sizeof(float));
		break;
	case VEIL_DT_F16:
		for (int64_t i = 0; i < n; i += 1 << 30)
			kern()->f32_to_f16_row(src + i, (uint16_t *)dst + i,
					       (int)VEIL_MIN(n - i, 1 << 30));
		break;
	case VEIL_DT_BF16: {
		uint16_t *d = dst;
		for (int64_t i = 0; i < n; i++)
			d[i] = veil_fp32_to_bf16(src[i]);
		break;
	}
	case VEIL_DT_Q8_0:
		kern()->quantize_q8_0(src, dst, n);
		break;
	case VEIL_DT_Q4_0:
		quantize_q4_0(src, dst, n);
		break;
	case VEIL_DT_Q8_K:
		quantize_q8_K(src, dst, n);
		break;
	case VEIL_DT_Q4_K:
		veil_quantize_q4_K_ref(src, dst, n);
		break;
	case VEIL_DT_Q6_K:
		veil_quantize_q6_K_ref(src, dst, n);
		break;
	default:
		return VEIL_ENOTSUP;
	}
	return 0;
}

/* ---- the matrix kernel and vector helpers ------------------------------ */

void veil_gemm(enum veil_dtype wtype, int K, const void *w, size_t w_stride,
	       int r0, int r1, const void *x, size_t x_stride, int nb,
	       float *y, size_t ldy)
{
	if (r1 <= r0 || nb <= 0 || (int)wtype < 0 || wtype >= VEIL_DT_COUNT)
		return;
	veil_gemm_fn f = kern()->gemm[wtype];
	if (f) {
		f(K, w, w_stride, r0, r1, x, x_stride, nb, y, ldy);
		return;
	}
	/* no kernel for this type (callers check types at load): make the
	 * misuse visible rather than leave stale numbers */
	for (int b = 0; b < nb; b++)
		for (int r = r0; r < r1; r++)
			y[(size_t)b * ldy + r] = NAN;
}

static bool packable(enum veil_dtype t, int K, int rows)
{
	return (t == VEIL_DT_Q8_0 || t == VEIL_DT_Q4_0) && K > 0 && K % 32 == 0 &&
	       rows > 0 && rows % VEIL_PACK_ROWS == 0;
}

bool veil_pack_worthwhile(enum veil_dtype t, int K, int rows)
{
	return packable(t, K, rows) && kern()->pack_fast[t];
}

size_t veil_pack_bytes(enum veil_dtype t, int K, int rows)
{
	if (!packable(t, K, rows))
		return 0;
	return veil_pack_geom_of(t, K).group * (size_t)(rows / VEIL_PACK_ROWS);
}

int veil_pack_rows(enum veil_dtype t, int K, const void *w, size_t w_stride,
		   int rows, void *dst)
{
	if (!packable(t, K, rows))
		return veil_errf(VEIL_EINVAL, "pack: %s matrix of %d x %d cannot be "
				 "packed", veil_dtype_name(t), rows, K);
	const struct veil_pack_geom g = veil_pack_geom_of(t, K);
	const size_t bb = t == VEIL_DT_Q8_0 ? sizeof(struct veil_block_q8_0)
					    : sizeof(struct veil_block_q4_0);
	for (int gi = 0; gi < rows / VEIL_PACK_ROWS; gi++) {
		uint8_t *grp = (uint8_t *)dst + (size_t)gi * g.group;
		memset(grp + g.off_d + (size_t)g.nblk * 32, 0,
		       g.group - g.off_d - (size_t)g.nblk * 32);
		for (int l = 0; l < VEIL_PACK_ROWS; l++) {
			const uint8_t *row = (const uint8_t *)w +
				(size_t)(gi * VEIL_PACK_ROWS + l) * w_stride;
			for (int b = 0; b < g.nblk; b++) {
				const uint8_t *blk = row + (size_t)b * bb;
				uint8_t *q = grp + (size_t)b * g.qbytes + (size_t)l * 4;
				/* both block types: fp16 d, then the quant bytes */
				memcpy(grp + g.off_d + (size_t)b * 32 + (size_t)l * 2, blk, 2);
				for (size_t c = 0; c < g.qbytes / 64; c++)
					for (int e = 0; e < 4; e++)
						q[c * 64 + (size_t)e] = t == VEIL_DT_Q8_0
							? (uint8_t)(blk[2 + c * 4 + (size_t)e] ^ 0x80)
							: blk[2 + c * 4 + (size_t)e];
			}
		}
	}
	return 0;
}

void veil_packed_row_f32(enum veil_dtype t, int K, const void *wp, int r,
			 float *dst)
{
	const struct veil_pack_geom g = veil_pack_geom_of(t, K);
	const uint8_t *grp = (const uint8_t *)wp +
			     (size_t)(r / VEIL_PACK_ROWS) * g.group;
	const int lane = r % VEIL_PACK_ROWS;
	for (int b = 0; b < g.nblk; b++) {
		const float d = veil_fp16_to_fp32(packed_d(&g, grp, lane, b));
		for (int e = 0; e < 32; e++)
			dst[b * 32 + e] = d * (float)packed_q(t, &g, grp, lane, b, e);
	}
}

void veil_gemm_packed(enum veil_dtype wtype, int K, const void *wp, int r0,
		      int r1, const void *x, size_t x_stride, int nb, float *y,
		      size_t ldy)
{
	if (r1 <= r0 || nb <= 0 || (int)wtype < 0 || wtype >= VEIL_DT_COUNT)
		return;
	veil_gemm_fn f = kern()->gemm_packed[wtype];
	if (f) {
		f(K, wp, 0, r0, r1, x, x_stride, nb, y, ldy);
		return;
	}
	for (int b = 0; b < nb; b++)
		for (int r = r0; r < r1; r++)
			y[(size_t)b * ldy + r] = NAN;
}

void veil_f32_to_f16_row(const float *x, uint16_t *y, int n)
{
	kern()->f32_to_f16_row(x, y, n);
}

void veil_f16_to_f32_row(const uint16_t *x, float *y, int n)
{
	kern()->f16_to_f32_row(x, y, n);
}

void veil_vec_mad_f16(float *y, const uint16_t *v, float a, int n)
{
	kern()->vec_mad_f16(y, v, a, n);
}

float veil_vec_dot_f16(const uint16_t *x, const uint16_t *v, int n)
{
	return kern()->vec_dot_f16(x, v, n);
}

float veil_vec_dot_f32(const float *x, const float *v, int n)
{
	return kern()->vec_dot_f32(x, v, n);
}
