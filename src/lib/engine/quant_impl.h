/* Private to the quant module (quant.c and its ISA files): the kernel table
 * that veil_quant_init() fills and every public kernel call goes through.
 *
 * quant.c fills the table with the portable scalar kernels first; an ISA
 * file's fill function then overwrites the entries it implements, so a path
 * that lacks a kernel falls back to the scalar one.  Layers stack:
 * scalar <- avx2 <- avx512 <- avx512vnni. */
#ifndef VEIL_QUANT_IMPL_H
#define VEIL_QUANT_IMPL_H

#include "veil/quant.h"

/* y[b * ldy + r] = dot(W_r, X_b), r in [r0, r1), b in [0, nb); see
 * veil_gemm().  K is a multiple of the weight type's block size. */
typedef void (*veil_gemm_fn)(int K, const void *w, size_t w_stride, int r0,
			     int r1, const void *x, size_t x_stride, int nb,
			     float *y, size_t ldy);

struct veil_quant_kern {
	veil_gemm_fn gemm[VEIL_DT_COUNT];
	void (*f32_to_f16_row)(const float *x, uint16_t *y, int n);
	void (*f16_to_f32_row)(const uint16_t *x, float *y, int n);
	void (*vec_mad_f16)(float *y, const uint16_t *v, float a, int n);
	float (*vec_dot_f16)(const uint16_t *x, const uint16_t *v, int n);
	float (*vec_dot_f32)(const float *x, const float *v, int n);
	/* Activation quantizers: must produce the same bytes as the scalar
	 * reference (files and logits must not depend on the CPU). */
	void (*quantize_q8_0)(const float *x, struct veil_block_q8_0 *y, int64_t n);
	/* Packed Q8_0 / Q4_0 weights (see veil_pack_rows); the scalar path
	 * has them all, pack_fast[t] says a path has a fast one. */
	veil_gemm_fn gemm_packed[VEIL_DT_COUNT];
	bool pack_fast[VEIL_DT_COUNT];
};

/* Geometry of a packed matrix (include/veil/quant.h): per 16-row group,
 * nblk blocks of `qbytes` interleaved quant bytes, then nblk x 16 fp16
 * scales, the group padded to 64 bytes. */
struct veil_pack_geom {
	int nblk;
	size_t qbytes;   /* quant bytes of one block of 16 rows */
	size_t off_d;    /* scales, from the group's start */
	size_t group;    /* bytes per group */
};

static inline struct veil_pack_geom veil_pack_geom_of(enum veil_dtype t, int K)
{
	struct veil_pack_geom g;
	g.nblk = K / 32;
	g.qbytes = t == VEIL_DT_Q8_0 ? 512 : 256;
	g.off_d = (size_t)g.nblk * g.qbytes;
	g.group = (g.off_d + (size_t)g.nblk * 32 + 63) & ~(size_t)63;
	return g;
}

void veil_quant_fill_avx2(struct veil_quant_kern *k);
void veil_quant_fill_avx512(struct veil_quant_kern *k);
void veil_quant_fill_avx512vnni(struct veil_quant_kern *k);

/* Per-thread, grow-only, 64-byte aligned scratch for a kernel call (kernels
 * repack activation rows there).  Kept for the thread's lifetime; aborts
 * when memory runs out, since the kernels cannot report errors. */
void *veil_quant_scratch(size_t n);

/* fp16 of the scalar path, for the ISA files' tails. */
static inline float veil_q_h2f(uint16_t h)
{
	return veil_fp16_to_fp32(h);
}

#endif
