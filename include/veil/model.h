/* Llama-family transformer inference on the CPU.
 *
 * A model (struct veil_model) is the parsed GGUF plus pointers to its
 * weights, used in place from the read-only mapping (or, loaded with
 * veil_model_load_private, from a private anonymous copy), except that on CPUs
 * with AVX-512 VNNI the Q8_0 and Q4_0 matrices are repacked at load into
 * the packed layout of include/veil/quant.h (anonymous memory on huge
 * pages; the file's pages are dropped as they are consumed, so the model is
 * held once, not twice; VEIL_PACK=0 turns this off).  Norm vectors and
 * biases are converted to F32.  So the resident memory of an engine is
 * about the file, the touched part of the KV cache (on huge pages, so
 * touched 2 MiB at a time) and some MiB of scratch.  A model is immutable
 * after loading and can be shared by several contexts and threads.
 *
 * Architectures: "llama" (Llama 2/3.x, TinyLlama, SmolLM/SmolLM2, Mistral:
 * RMSNorm, SwiGLU, normal RoPE on adjacent pairs, GQA, optional output.weight
 * (tied to token_embd.weight when absent), Llama-3 rope scaling through
 * rope_freqs.weight, linear rope scaling through {arch}.rope.scaling.*) and
 * "qwen2" (as llama plus Q/K/V biases and NEOX RoPE on halves).  Weight types
 * F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K.
 *
 * Numerics follow llama.cpp's CPU backend (non-flash attention): activations
 * are converted to veil_quant_act_type(weight type) before every matmul,
 * the KV cache is F16, Q is rounded to F16 before Q.K, softmax probabilities
 * are rounded to F16 before P.V, RMSNorm sums in double.
 *
 * A context (struct veil_ctx) holds the KV cache of n_seq independent
 * sequences (n_ctx positions each, F16, K and V both stored transposed so
 * attention runs as small matmuls) and the scratch memory of one forward
 * pass of up to n_batch tokens, all allocated up front (no allocation per
 * step).  It is used by one thread at a time; that thread takes part in the
 * pool's work.  Matmuls are split by weight rows (equal shares of 16-row
 * groups) across the pool, attention by (run of tokens of one sequence,
 * the query heads of one KV head); jobs too small to pay for a hand-off run
 * on the calling thread.  Results do not depend on the number of threads. */
#ifndef VEIL_MODEL_H
#define VEIL_MODEL_H

#include "veil/base.h"
#include "veil/gguf.h"
#include "veil/pool.h"

enum veil_arch {
	VEIL_ARCH_LLAMA = 1,
	VEIL_ARCH_QWEN2 = 2,
};

struct veil_model_hparams {
	enum veil_arch arch;
	int32_t n_vocab;
	int32_t n_ctx_train;    /* {arch}.context_length */
	int32_t n_embd;
	int32_t n_layer;
	int32_t n_head;
	int32_t n_head_kv;
	int32_t head_dim;       /* n_embd / n_head */
	int32_t n_ff;
	int32_t n_rot;          /* rope.dimension_count, default head_dim */
	bool rope_neox;         /* rotate halves (qwen2) instead of pairs */
	float rope_freq_base;   /* default 10000 */
	float rope_freq_scale;  /* 1 / linear scaling factor, default 1 */
	bool rope_freq_factors; /* rope_freqs.weight present (Llama 3) */
	float rms_eps;
	bool has_qkv_bias;
	bool tied_output;       /* output = token_embd */
};

struct veil_model;

/* Maps and checks path: architecture, hyper-parameters, the presence, type
 * and shape of every tensor.  VEIL_ENOTSUP (detail names it) for another
 * architecture or an unsupported tensor type; VEIL_EFORMAT for a missing
 * or misshapen tensor. */
int veil_model_load(const char *path, struct veil_model **out);
/* As veil_model_load() over veil_gguf_open_private(): the weights are a
 * private anonymous copy read once, and *dg (may be NULL) the SHA-256 and
 * SHA-384 of exactly those bytes.  For servers whose answers are attested
 * (veil-node); the `veil model ...` tools keep the file mapping. */
int veil_model_load_private(const char *path, struct veil_gguf_digests *dg,
			    struct veil_model **out);
/* As above over an already opened file; the model takes ownership of g
 * (closed by veil_model_free, also on failure). */
int veil_model_from_gguf(struct veil_gguf *g, struct veil_model **out);
void veil_model_free(struct veil_model *m);

const struct veil_model_hparams *veil_model_hparams(const struct veil_model *m);
const struct veil_gguf *veil_model_gguf(const struct veil_model *m);
/* "llama" or "qwen2". */
const char *veil_arch_name(enum veil_arch a);
/* Bytes of the whole file. */
size_t veil_model_file_bytes(const struct veil_model *m);
/* Weight bytes read to compute one token (every matrix of every layer plus
 * the output matrix and one embedding row): the memory traffic of decode. */
size_t veil_model_weight_bytes_per_token(const struct veil_model *m);
/* Number of parameters (elements of every tensor). */
uint64_t veil_model_n_params(const struct veil_model *m);
/* The type most matrices have (for display). */
enum veil_dtype veil_model_main_type(const struct veil_model *m);

/* ---- contexts: KV cache + forward pass --------------------------------- */

struct veil_ctx_params {
	int32_t n_ctx;     /* positions per sequence; 0 = min(n_ctx_train, 4096) */
	int32_t n_seq;     /* sequences (slots); 0 = 1 */
	int32_t n_batch;   /* most tokens per veil_ctx_decode; 0 = 512 */
	int32_t n_outputs; /* most logits rows per decode; 0 = n_seq */
	int32_t n_threads; /* threads of the context's own pool; 0 = all cores */
	struct veil_pool *pool; /* use this pool instead (not owned) */
	bool populate;     /* make the whole KV cache resident now (servers) */
};

void veil_ctx_params_default(struct veil_ctx_params *p);

struct veil_ctx;

/* The KV cache is reserved (not touched) up front: pages become resident as
 * positions are written, unless p->populate asks for all of them now
 * (VEIL_ENOMEM when the kernel refuses; under memory pressure its OOM
 * killer may act first: either way a server fails at start instead of
 * mid-answer).  The model must outlive the context. */
int veil_ctx_new(const struct veil_model *m, const struct veil_ctx_params *p,
		 struct veil_ctx **out);
void veil_ctx_free(struct veil_ctx *c);

int32_t veil_ctx_n_ctx(const struct veil_ctx *c);
int32_t veil_ctx_n_seq(const struct veil_ctx *c);
int32_t veil_ctx_n_batch(const struct veil_ctx *c);
int veil_ctx_n_threads(const struct veil_ctx *c);
/* Bytes of the KV cache at full capacity (all sequences). */
size_t veil_ctx_kv_bytes(const struct veil_ctx *c);

/* One forward step.  Token i has id token[i], position pos[i] and sequence
 * seq[i]; it attends to positions 0..pos[i] of its sequence's cache, which
 * must hold the earlier positions (from earlier steps or earlier tokens of
 * this batch: every token's K/V is stored before attention runs).  A
 * sequence's cache is indexed by position, so restarting a sequence is just
 * feeding position 0 again.  logits[i] asks for token i's logits (NULL:
 * only the last token's). */
struct veil_batch {
	int32_t n;
	const int32_t *token;
	const int32_t *pos;
	const int32_t *seq;
	const bool *logits;
};

/* VEIL_EINVAL for an id, position or sequence out of range, or more tokens
 * than n_batch or more logits rows than n_outputs. */
int veil_ctx_decode(struct veil_ctx *c, const struct veil_batch *b);

/* Logits (n_vocab floats) of the i-th token that asked for them in the last
 * decode, in batch order; NULL when out of range.  Writable: samplers may
 * modify them in place.  Valid until the next decode. */
float *veil_ctx_logits(struct veil_ctx *c, int32_t i);
int32_t veil_ctx_n_logits(const struct veil_ctx *c);

#endif
