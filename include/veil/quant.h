/* Tensor number formats and the hot kernels of the engine.
 *
 * Block layouts are ggml's, byte for byte (they are what GGUF files hold).
 * Kernels exist in three builds: portable scalar C, AVX2+FMA+F16C and
 * AVX-512 (F/BW/VL/DQ, with VNNI where the CPU has it), each compiled in its
 * own translation unit; veil_quant_init() picks one by CPUID once, and every
 * kernel call goes through that choice.  All paths compute the same result
 * within the tolerances stated in tests/unit/test_quant.c.
 *
 * Numerics follow llama.cpp's CPU backend so logits can be compared with it:
 * the activation row is converted to the weight's "activation type" first
 * (F16 weights -> F16 activations, Q8_0/Q4_0 -> Q8_0, Q4_K/Q6_K -> Q8_K,
 * F32 -> F32, BF16 -> BF16) and then dotted. */
#ifndef VEIL_QUANT_H
#define VEIL_QUANT_H

#include "veil/base.h"
#include "veil/gguf.h"

#define VEIL_QK8_0 32
#define VEIL_QK4_0 32
#define VEIL_QK_K 256

struct veil_block_q8_0 {
	uint16_t d;          /* fp16 scale */
	int8_t qs[VEIL_QK8_0];
};

struct veil_block_q4_0 {
	uint16_t d;          /* fp16 scale */
	uint8_t qs[VEIL_QK4_0 / 2]; /* low nibbles: elems 0..15, high: 16..31 */
};

struct veil_block_q4_K {
	uint16_t d;          /* fp16 super-block scale for scales */
	uint16_t dmin;       /* fp16 super-block scale for mins */
	uint8_t scales[12];  /* 8 x (6-bit scale, 6-bit min) */
	uint8_t qs[VEIL_QK_K / 2];
};

struct veil_block_q6_K {
	uint8_t ql[VEIL_QK_K / 2];
	uint8_t qh[VEIL_QK_K / 4];
	int8_t scales[VEIL_QK_K / 16];
	uint16_t d;          /* fp16 */
};

struct veil_block_q8_K {
	float d;
	int8_t qs[VEIL_QK_K];
	int16_t bsums[VEIL_QK_K / 16];
};

/* ---- scalar conversions (exact, IEEE round-to-nearest-even) ------------ */

float veil_fp16_to_fp32(uint16_t h);
uint16_t veil_fp32_to_fp16(float f);
float veil_bf16_to_fp32(uint16_t h);
uint16_t veil_fp32_to_bf16(float f);  /* round-to-nearest-even, as ggml */

/* ---- CPU dispatch ------------------------------------------------------ */

enum veil_isa {
	VEIL_ISA_SCALAR = 0,
	VEIL_ISA_AVX2 = 1,    /* AVX2 + FMA + F16C */
	VEIL_ISA_AVX512 = 2,  /* AVX-512 F/BW/VL/DQ (+VNNI when present) */
};

/* Detects the CPU once (idempotent, thread-safe) and selects the best path,
 * or the one named by $VEIL_ISA (scalar|avx2|avx512) if the CPU has it. */
void veil_quant_init(void);
enum veil_isa veil_isa_best(void);    /* best the CPU supports */
enum veil_isa veil_isa_active(void);  /* the one in use */
/* Selects a path (tests use it to check every path); VEIL_ENOTSUP when the
 * CPU lacks it.  Not thread-safe against running kernels. */
int veil_isa_force(enum veil_isa isa);
const char *veil_isa_name(enum veil_isa isa);
/* Comma-separated list of compiled-in paths the CPU can run, best last,
 * e.g. "scalar,avx2,avx512,avx512vnni". */
const char *veil_isa_available(void);

/* ---- rows: conversion, quantization ------------------------------------ */

/* The format activations take before a dot with weights of type w. */
enum veil_dtype veil_quant_act_type(enum veil_dtype w);

/* Dequantizes n elements (a multiple of the block size) to F32.  Supports
 * F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, Q8_K. */
int veil_dequantize_row(enum veil_dtype t, const void *src, float *dst, int64_t n);

/* Quantizes n F32 elements (a multiple of the block size) into t, with
 * ggml's reference rounding so files match llama.cpp's quantizer.
 * Supports F32, F16, BF16, Q8_0, Q4_0, Q8_K, Q4_K, Q6_K. */
int veil_quantize_row(enum veil_dtype t, const float *src, void *dst, int64_t n);

/* Reference K-quant quantizers (ggml's quantize_row_q4_K_ref /
 * quantize_row_q6_K_ref algorithms, reimplemented), n a multiple of 256.
 * Implemented in src/lib/engine/quant_kquant.c; veil_quantize_row calls
 * them. */
void veil_quantize_q4_K_ref(const float *src, struct veil_block_q4_K *dst, int64_t n);
void veil_quantize_q6_K_ref(const float *src, struct veil_block_q6_K *dst, int64_t n);

/* ---- the matrix kernel ------------------------------------------------- */

/* y[b * ldy + r] = dot(W_r, X_b) for rows r in [r0, r1) and b in [0, nb).
 * W: rows of K elements of type wtype, w_stride bytes apart.
 * X: nb rows of K elements already in veil_quant_act_type(wtype),
 *    x_stride bytes apart.  K must be a multiple of the block size.
 * Single-threaded; callers split rows across threads. */
void veil_gemm(enum veil_dtype wtype, int K, const void *w, size_t w_stride,
	       int r0, int r1, const void *x, size_t x_stride, int nb,
	       float *y, size_t ldy);

/* ---- packed weights ----------------------------------------------------
 *
 * Q8_0 and Q4_0 matrices can be repacked once, at model load, into a layout
 * made for the VNNI kernels: rows in groups of VEIL_PACK_ROWS, and within a
 * group, block by block, the 16 rows' quants interleaved four bytes at a
 * time (one row per 32-bit lane, so one VPDPBUSD advances 16 rows by four
 * elements) and their 16 scales side by side.  A group is
 *   quants [nblk][chunks][16 rows][4 bytes]   (Q8_0: 8 chunks of w ^ 0x80;
 *                                              Q4_0: 4 chunks, bytes as
 *                                              stored: low nibbles are
 *                                              elements 4c..4c+3, high
 *                                              nibbles 16+4c..16+4c+3)
 *   scales [nblk][16] fp16
 * padded to 64 bytes, so groups start 64-byte aligned.  The packed matrix
 * has the same number of bytes as the blocks (plus that padding), and every
 * path has a kernel for it, so results never depend on whether weights were
 * packed beyond float rounding order (the integer sum of each block is
 * exact either way). */
#define VEIL_PACK_ROWS 16

/* True when the active path has fast kernels for packed weights of type t
 * and a matrix of `rows` rows of K elements can be packed (rows a multiple
 * of VEIL_PACK_ROWS, K of the block size).  Packing where this is false
 * still works, only slower. */
bool veil_pack_worthwhile(enum veil_dtype t, int K, int rows);
/* Bytes of the packed form of `rows` rows (a multiple of VEIL_PACK_ROWS). */
size_t veil_pack_bytes(enum veil_dtype t, int K, int rows);
/* Packs rows [0, rows) of w (rows w_stride bytes apart) into dst (64-byte
 * aligned, veil_pack_bytes() long).  Q8_0 and Q4_0 only; VEIL_EINVAL for
 * another type or a row count that is not a multiple of VEIL_PACK_ROWS. */
int veil_pack_rows(enum veil_dtype t, int K, const void *w, size_t w_stride,
		   int rows, void *dst);
/* Row r of a packed matrix, dequantized to K floats (embedding lookup). */
void veil_packed_row_f32(enum veil_dtype t, int K, const void *wp, int r,
			 float *dst);
/* As veil_gemm() over packed weights wp; r0 must be a multiple of
 * VEIL_PACK_ROWS and r1 one too or the packed matrix's row count. */
void veil_gemm_packed(enum veil_dtype wtype, int K, const void *wp, int r0,
		      int r1, const void *x, size_t x_stride, int nb, float *y,
		      size_t ldy);

/* ---- small vector helpers used by attention ----------------------------- */

void veil_f32_to_f16_row(const float *x, uint16_t *y, int n);
void veil_f16_to_f32_row(const uint16_t *x, float *y, int n);
/* y[i] += a * f16(v[i]) */
void veil_vec_mad_f16(float *y, const uint16_t *v, float a, int n);
/* sum x[i] * f16(v[i]) with x already rounded to f16 by the caller if
 * llama.cpp numerics are wanted. */
float veil_vec_dot_f16(const uint16_t *x, const uint16_t *v, int n);
float veil_vec_dot_f32(const float *x, const float *v, int n);

#endif
