/* libFuzzer harness for the forward pass (veil_ctx_new + veil_ctx_decode)
 * over the model shapes the loader accepts: fuzz_model only loads.
 *
 * The input is not a GGUF but a small description of one (decode_spec;
 * missing bytes read as 0): architecture (llama, qwen2), 1-2 layers,
 * embedding width, heads / KV heads (GQA 1-4), head size (an explicit
 * key_length decouples it from the width), FFN width, vocabulary, context
 * length, rope (dimension count, base, linear scaling by either key,
 * scaling type, Llama-3 frequency factors), RMS epsilon, tied or separate
 * output matrix, general.alignment, each matrix's type (F32, F16, BF16,
 * Q8_0, Q4_0, Q4_K, Q6_K: every type model.c takes) and the norm vectors'
 * (F32, F16, BF16).  A type whose block does not divide its matrix's row
 * falls back to one that does, unless the "strict" bit lets the loader see
 * it.  Weights come from a PRNG seeded from the input, in one of three
 * modes: small (|w| <= 1 / fan-in, norms in [0.5, 1.5], so every
 * intermediate stays far inside F16 range and the logits must be finite),
 * large (activations may overflow F16) or raw (random bytes: NaN, Inf, any
 * block scale).  Quantized blocks are written directly (random quants under
 * a bounded scale; see synth_blocks).  The file is written with the GGUF
 * writer into memory, parsed from a 64-byte aligned copy and loaded with
 * veil_model_from_gguf, as fuzz_model does.
 *
 * What runs: one or two sequences of 1-8 prompt tokens (up to 40 with the
 * "long" bit: two 32-token attention tiles) whose ids come from the input,
 * prefilled in one batch (sequence-major, interleaved, or positions
 * descending; logits for an input-chosen subset of tokens plus the last of
 * each sequence), then 0-2 decode steps of one token per sequence: run A,
 * on the dispatched kernels (the best the CPU has) and a 2-thread pool.
 * Run B recomputes every sequence alone, its prompt in chunks of 1-8
 * tokens (prefill continuing a cache), on the scalar or the AVX2 kernels
 * (an input bit; veil_isa_force, which switches the element-wise ops too)
 * and a 1-thread pool.  Matrices are packed for the VNNI kernels when the
 * CPU has them unless the VEIL_PACK=0 bit is set, so B covers the packed
 * and the in-place kernels of each path.  In small mode every logit of both
 * runs must be finite and every row of A must match B's within TOLERANCE
 * (relative to B's largest logit).  Large and raw weights check only that
 * nothing trips ASan / UBSan (and run B on AVX2: see the note in
 * LLVMFuzzerTestOneInput).  Finally a token at position n_ctx and an id
 * past the vocabulary must be refused with VEIL_EINVAL.
 *
 * Each run stays cheap: every dimension is at most 256 (qd, kvd included),
 * and a description whose multiply-adds over both runs exceed MAX_WORK is
 * skipped, so an input takes 1-40 ms under ASan (about 100-150 runs/s).
 * FUZZ_FORWARD_DIFF=1 in the environment prints each description and the
 * A/B difference of each row (for tuning TOLERANCE).
 * Seeds: tests/fuzz/corpus/fuzz_forward/ (both architectures, every weight
 * type, mixed types, rope variants, GQA, long and descending prompts, two
 * sequences, a context shorter than the prompt, large and raw weights). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/gguf.h"
#include "veil/model.h"
#include "veil/pool.h"
#include "veil/quant.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DIM 256
#define MAX_LAYERS 2
#define MAX_PROMPT 40
#define MAX_STEPS 2
#define MAX_POS (MAX_PROMPT + MAX_STEPS)
/* multiply-adds of both runs together (matmuls and attention) */
#define MAX_WORK (3u << 20)
#define N_MATS (2 + 7 * MAX_LAYERS)

static struct veil_pool *g_pool2, *g_pool1;
static enum veil_isa g_best;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	veil_log_setup(VEIL_LOG_OFF, false, stderr);
	veil_quant_init();
	g_best = veil_isa_best();
	if (veil_pool_new(2, &g_pool2) < 0 || veil_pool_new(1, &g_pool1) < 0)
		abort();
	return 0;
}

/* ---- the description ---------------------------------------------------- */

struct rd {
	const uint8_t *p;
	size_t n, i;
};

static uint8_t rd8(struct rd *r)
{
	return r->i < r->n ? r->p[r->i++] : 0;
}

enum wmode { W_SMALL, W_LARGE, W_RAW };

struct spec {
	bool qwen2, tied, rope_ff, strict, no_pack, two_seq, long_prompt;
	bool scale_alt_key;         /* rope.scale_linear instead of scaling.factor */
	enum wmode wmode;
	int order;                  /* batch A: 0 seq-major, 1 interleaved, 2 descending */
	enum veil_isa isa_b;
	uint32_t align;             /* 0: default (no general.alignment key) */
	int32_t n_layer, E, n_head, n_head_kv, hd, F, V, n_ctx_train, n_rot;
	bool key_len, rot_key, ctx_key;
	float base, scale, eps;     /* scale 0: no scaling key */
	int stype;                  /* 0 none, 1 "linear", 2 "none", 3 "yarn" */
	enum veil_dtype mt[N_MATS]; /* token_embd, output, then 7 per layer */
	enum veil_dtype vt[3];      /* vector types: [0] output norm, rope factors, V bias;
				     * [1] attn norms, Q bias; [2] FFN norms, K bias */
	uint64_t seed;
	int S, P[2], D, chunk;
	int32_t ptok[2][MAX_PROMPT], dtok[2][MAX_STEPS];
	bool plog[2][MAX_PROMPT];
};

static const enum veil_dtype k_types[8] = {
	VEIL_DT_F32, VEIL_DT_F16, VEIL_DT_BF16, VEIL_DT_Q8_0,
	VEIL_DT_Q4_0, VEIL_DT_Q4_K, VEIL_DT_Q6_K, VEIL_DT_Q8_0,
};

static bool type_fits(enum veil_dtype t, int32_t k)
{
	size_t be = veil_dtype_block_elems(t);

	return be && k % (int32_t)be == 0;
}

/* The type of a matrix of `k` inputs from one byte: a type whose block does
 * not divide k becomes Q8_0 when that fits, else F32 / F16 / BF16. */
static enum veil_dtype pick_type(uint8_t b, int32_t k, bool strict)
{
	enum veil_dtype t = k_types[b & 7];
	static const enum veil_dtype fb[3] = {VEIL_DT_F32, VEIL_DT_F16, VEIL_DT_BF16};

	if (strict || type_fits(t, k))
		return t;
	if (type_fits(VEIL_DT_Q8_0, k) && (b & 8))
		return VEIL_DT_Q8_0;
	return fb[(b >> 4) % 3];
}

static void decode_spec(struct spec *s, const uint8_t *data, size_t size)
{
	static const float bases[8] = {10000.0f, 500000.0f, 1000000.0f, 100.0f,
				       2.0f, 1.0f, 0.001f, 1e30f};
	static const float scales[8] = {0.0f, 2.0f, 4.0f, 8.0f, 0.5f, 1.0f, 32.0f, 1e-6f};
	static const float epss[8] = {1e-5f, 1e-6f, 1e-12f, 1.0f, 0.1f, 1e-30f,
				      1e-3f, 1e-45f};
	struct rd r = {data, size, 0};
	uint8_t f0 = rd8(&r), f1 = rd8(&r), f2 = rd8(&r), b;
	int32_t qd;

	memset(s, 0, sizeof(*s));
	s->qwen2 = f0 & 1;
	s->n_layer = 1 + ((f0 >> 1) & 1);
	s->tied = f0 & 4;
	s->rope_ff = f0 & 8;
	s->key_len = f0 & 16;
	s->rot_key = f0 & 32;
	s->strict = f0 & 64;
	s->no_pack = f0 & 128;
	s->wmode = (f1 & 3) == 3 ? W_RAW : (f1 & 3) == 2 ? W_LARGE : W_SMALL;
	s->two_seq = f1 & 4;
	s->long_prompt = f1 & 8;
	s->align = (f1 >> 4) & 3 ? 32u << ((f1 >> 4) & 3) : 0;
	s->scale_alt_key = f1 & 64;
	s->isa_b = f1 & 128 ? VEIL_ISA_AVX2 : VEIL_ISA_SCALAR;
	s->order = (f2 & 3) % 3;
	s->stype = (f2 >> 2) & 3;
	s->ctx_key = !(f2 & 16);

	s->n_head_kv = 1 + rd8(&r) % 8;
	s->n_head = s->n_head_kv * (1 + rd8(&r) % 4);
	s->hd = 1 + rd8(&r) % 64;
	if (s->hd % 2 && !s->strict)
		s->hd++;
	/* keep qd = n_head * head_dim within MAX_DIM */
	if (s->n_head * s->hd > MAX_DIM)
		s->hd = VEIL_MAX(1, (MAX_DIM / s->n_head) & ~1);
	qd = s->n_head * s->hd;
	b = rd8(&r);
	s->E = s->key_len ? 1 + b : qd;
	s->F = 1 + rd8(&r);
	s->V = 1 + rd8(&r);
	b = rd8(&r);
	s->n_ctx_train = b ? b : 4096;
	b = rd8(&r);
	s->n_rot = s->hd;
	if (s->rot_key)
		s->n_rot = s->strict ? b : 2 * (1 + b % VEIL_MAX(1, s->hd / 2));
	b = rd8(&r);
	s->base = bases[b & 7];
	if (b & 8)
		s->base *= 1.0f + (float)(b >> 4) / 16.0f;
	b = rd8(&r);
	s->scale = scales[b & 7];
	s->eps = epss[rd8(&r) & 7];

	for (int i = 0; i < 2 + 7 * s->n_layer; i++) {
		/* inputs of each matrix: embeddings / output: E; per layer:
		 * q k v E, o qd, gate up E, down F */
		static const int which[7] = {0, 0, 0, 1, 0, 0, 2};
		int32_t k = i < 2 ? s->E : which[(i - 2) % 7] == 1 ? qd
				     : which[(i - 2) % 7] == 2 ? s->F : s->E;

		s->mt[i] = pick_type(rd8(&r), k, s->strict);
	}
	b = rd8(&r);
	for (int i = 0; i < 3; i++, b /= 3)
		s->vt[i] = k_types[b % 3];

	for (int i = 0; i < 4; i++)
		s->seed = s->seed << 8 | rd8(&r);
	s->S = s->two_seq ? 2 : 1;
	b = rd8(&r);
	s->D = (b & 3) % (MAX_STEPS + 1);
	s->chunk = 1 + (b >> 2) % 8;
	for (int q = 0; q < s->S; q++) {
		b = rd8(&r);
		s->P[q] = s->long_prompt ? 1 + b % MAX_PROMPT : 1 + b % 8;
		b = rd8(&r); /* logits wanted: bit i for token i (repeating) */
		for (int i = 0; i < s->P[q]; i++)
			s->plog[q][i] = (b >> (i % 8)) & 1;
		s->plog[q][s->P[q] - 1] = true;
	}
	for (int q = 0; q < s->S; q++) {
		for (int i = 0; i < s->P[q]; i++)
			s->ptok[q][i] = rd8(&r);
		for (int i = 0; i < s->D; i++)
			s->dtok[q][i] = rd8(&r);
	}
}

/* ---- the model file ----------------------------------------------------- */

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* uniform in [lo, hi) */
static float unif(uint64_t *x, float lo, float hi)
{
	return lo + (hi - lo) * (float)(splitmix(x) >> 40) / (float)(1u << 24);
}

struct tdesc {
	char name[64];
	enum veil_dtype type;
	uint32_t n_dims;
	uint64_t ne[2];
	int kind; /* 0 matrix, 1 embedding, 2 norm, 3 bias, 4 rope factors */
};

static int add_t(struct tdesc *t, int n, const char *name, enum veil_dtype type,
		 int64_t ne0, int64_t ne1, int kind)
{
	snprintf(t[n].name, sizeof(t[n].name), "%s", name);
	t[n].type = type;
	t[n].n_dims = ne1 ? 2 : 1;
	t[n].ne[0] = (uint64_t)ne0;
	t[n].ne[1] = ne1 ? (uint64_t)ne1 : 1;
	t[n].kind = kind;
	return n + 1;
}

/* The bound on |value| of a tensor's elements in small mode: 1 / fan-in
 * for matrices keeps every activation bounded (see the header). */
static float bound(const struct spec *s, const struct tdesc *t)
{
	switch (t->kind) {
	case 0:
		return s->wmode == W_LARGE ? 8.0f / sqrtf((float)t->ne[0])
					   : 1.0f / (float)t->ne[0];
	case 1:
		return s->wmode == W_LARGE ? 64.0f : 1.0f;
	default:
		return s->wmode == W_LARGE ? 16.0f : 1.0f;
	}
}

/* Quantized blocks are written directly, random quants under a random
 * scale small enough for the block's values to stay within b (a reference
 * quantizer, K-quants above all, would cost more than the forward pass):
 * Q8_0 |d q| <= 128 |d|, Q4_0 8 |d|, Q4_K 63 (15 |d| + |dmin|), Q6_K
 * 128 * 32 |d|. */
static void synth_blocks(enum veil_dtype t, uint8_t *d, size_t len, float b,
			 uint64_t *rng)
{
	size_t bb = veil_dtype_block_bytes(t);

	for (size_t i = 0; i < len; i++)
		d[i] = (uint8_t)splitmix(rng);
	for (size_t o = 0; o + bb <= len; o += bb) {
		uint16_t h[2];
		size_t at = 0;
		int nh = 1;

		switch (t) {
		case VEIL_DT_Q8_0:
			h[0] = veil_fp32_to_fp16(unif(rng, -b, b) / 128.0f);
			break;
		case VEIL_DT_Q4_0:
			h[0] = veil_fp32_to_fp16(unif(rng, -b, b) / 8.0f);
			break;
		case VEIL_DT_Q4_K:
			h[0] = veil_fp32_to_fp16(unif(rng, -b, b) / (2 * 63 * 15));
			h[1] = veil_fp32_to_fp16(unif(rng, -b, b) / (2 * 63));
			nh = 2;
			break;
		case VEIL_DT_Q6_K:
			h[0] = veil_fp32_to_fp16(unif(rng, -b, b) / (128 * 32));
			at = bb - 2;
			break;
		default:
			return;
		}
		memcpy(d + o + at, h, (size_t)nh * sizeof(uint16_t));
	}
}

/* Tensor data per the weight mode; NULL when the type cannot size the row
 * (strict mode: the loader would refuse it too). */
static void *make_data(const struct spec *s, const struct tdesc *t, uint64_t *rng,
		       size_t *len)
{
	uint64_t n = t->ne[0] * t->ne[1];
	float b = bound(s, t);
	size_t rb = 0;
	float *f = NULL;
	uint8_t *d;

	if (veil_dtype_row_bytes(t->type, t->ne[0], &rb) < 0)
		return NULL;
	*len = rb * t->ne[1];
	if (!(d = malloc(*len ? *len : 1)))
		abort();
	if (s->wmode == W_RAW) {
		for (size_t i = 0; i < *len; i++)
			d[i] = (uint8_t)splitmix(rng);
		return d;
	}
	if (t->type != VEIL_DT_F32 && t->type != VEIL_DT_F16 && t->type != VEIL_DT_BF16) {
		synth_blocks(t->type, d, *len, b, rng);
		return d;
	}
	if (!(f = malloc(n * sizeof(float))))
		abort();
	for (uint64_t i = 0; i < n; i++) {
		if (t->kind == 2 && s->wmode == W_SMALL) /* norms */
			f[i] = unif(rng, 0.5f, 1.5f);
		else if (t->kind == 4) /* Llama 3 has factors 1..8 */
			f[i] = unif(rng, 1.0f, 8.0f);
		else
			f[i] = unif(rng, -b, b);
	}
	if (veil_quantize_row(t->type, f, d, (int64_t)n) < 0)
		abort();
	free(f);
	return d;
}

/* Writes the GGUF of s into a 64-byte aligned buffer (*base to free,
 * *file its start, *len its size); false when the writer refuses. */
static bool build_file(const struct spec *s, void **base, uint8_t **file, size_t *len)
{
	static const char *const ln[7] = {"attn_q", "attn_k", "attn_v", "attn_output",
					  "ffn_gate", "ffn_up", "ffn_down"};
	const char *arch = s->qwen2 ? "qwen2" : "llama";
	int32_t qd = s->n_head * s->hd, kvd = s->n_head_kv * s->hd;
	struct tdesc t[N_MATS + 3 + 5 * MAX_LAYERS];
	struct veil_gguf_writer *w = NULL;
	char key[96], *buf = NULL;
	size_t blen = 0;
	uint64_t rng = s->seed;
	bool ok = false;
	FILE *f = NULL;
	int n = 0;

	n = add_t(t, n, "token_embd.weight", s->mt[0], s->E, s->V, 1);
	n = add_t(t, n, "output_norm.weight", s->vt[0], s->E, 0, 2);
	if (!s->tied)
		n = add_t(t, n, "output.weight", s->mt[1], s->E, s->V, 0);
	if (s->rope_ff)
		n = add_t(t, n, "rope_freqs.weight", s->vt[0], s->n_rot / 2, 0, 4);
	for (int l = 0; l < s->n_layer; l++) {
		int32_t in[7] = {s->E, s->E, s->E, qd, s->E, s->E, s->F};
		int32_t out[7] = {qd, kvd, kvd, s->E, s->F, s->F, s->E};
		char nm[64];

		snprintf(nm, sizeof(nm), "blk.%d.attn_norm.weight", l);
		n = add_t(t, n, nm, s->vt[1], s->E, 0, 2);
		snprintf(nm, sizeof(nm), "blk.%d.ffn_norm.weight", l);
		n = add_t(t, n, nm, s->vt[2], s->E, 0, 2);
		for (int j = 0; j < 7; j++) {
			snprintf(nm, sizeof(nm), "blk.%d.%s.weight", l, ln[j]);
			n = add_t(t, n, nm, s->mt[2 + 7 * l + j], in[j], out[j], 0);
		}
		if (s->qwen2) {
			snprintf(nm, sizeof(nm), "blk.%d.attn_q.bias", l);
			n = add_t(t, n, nm, s->vt[1], qd, 0, 3);
			snprintf(nm, sizeof(nm), "blk.%d.attn_k.bias", l);
			n = add_t(t, n, nm, s->vt[2], kvd, 0, 3);
			snprintf(nm, sizeof(nm), "blk.%d.attn_v.bias", l);
			n = add_t(t, n, nm, s->vt[0], kvd, 0, 3);
		}
	}

	if (veil_gguf_writer_new(&w, s->align) < 0 || !(f = open_memstream(&buf, &blen)))
		goto out;
#define KEY(sfx) (snprintf(key, sizeof(key), "%s.%s", arch, sfx), key)
	if (veil_gguf_w_str(w, "general.architecture", arch, strlen(arch)) < 0 ||
	    veil_gguf_w_u32(w, KEY("block_count"), (uint32_t)s->n_layer) < 0 ||
	    veil_gguf_w_u32(w, KEY("embedding_length"), (uint32_t)s->E) < 0 ||
	    veil_gguf_w_u32(w, KEY("feed_forward_length"), (uint32_t)s->F) < 0 ||
	    veil_gguf_w_u32(w, KEY("attention.head_count"), (uint32_t)s->n_head) < 0 ||
	    veil_gguf_w_u32(w, KEY("attention.head_count_kv"), (uint32_t)s->n_head_kv) < 0 ||
	    veil_gguf_w_f32(w, KEY("attention.layer_norm_rms_epsilon"), s->eps) < 0 ||
	    veil_gguf_w_f32(w, KEY("rope.freq_base"), s->base) < 0)
		goto out;
	if (s->ctx_key && veil_gguf_w_u32(w, KEY("context_length"),
					  (uint32_t)s->n_ctx_train) < 0)
		goto out;
	if (s->key_len && (veil_gguf_w_u32(w, KEY("attention.key_length"), (uint32_t)s->hd) < 0 ||
			   veil_gguf_w_u32(w, KEY("attention.value_length"), (uint32_t)s->hd) < 0))
		goto out;
	if (s->rot_key && veil_gguf_w_u32(w, KEY("rope.dimension_count"),
					  (uint32_t)s->n_rot) < 0)
		goto out;
	if (s->scale != 0.0f &&
	    veil_gguf_w_f32(w, KEY(s->scale_alt_key ? "rope.scale_linear" : "rope.scaling.factor"),
			    s->scale) < 0)
		goto out;
	if (s->stype) {
		static const char *const st[4] = {"", "linear", "none", "yarn"};

		if (veil_gguf_w_str(w, KEY("rope.scaling.type"), st[s->stype],
				    strlen(st[s->stype])) < 0)
			goto out;
	}
#undef KEY
	for (int i = 0; i < n; i++)
		if (veil_gguf_w_tensor(w, t[i].name, t[i].type, t[i].n_dims, t[i].ne) < 0)
			goto out;
	if (veil_gguf_w_header(w, f) < 0)
		goto out;
	for (int i = 0; i < n; i++) {
		size_t dl = 0;
		void *d = make_data(s, &t[i], &rng, &dl);
		int rc;

		if (!d)
			goto out;
		rc = veil_gguf_w_data(w, f, d, dl);
		free(d);
		if (rc < 0)
			goto out;
	}
	if (fflush(f) != 0)
		goto out;
	/* 64-byte aligned (as a mapping's tensors are), ending exactly at len */
	if (posix_memalign(base, 4096, blen + 64 + 1))
		abort();
	*file = (uint8_t *)*base + 64;
	memcpy(*file, buf, blen);
	*len = blen;
	ok = true;
out:
	if (f)
		fclose(f);
	free(buf);
	veil_gguf_writer_free(w);
	return ok;
}

/* ---- the runs ----------------------------------------------------------- */

/* Logits of (sequence, position), filled by run_b; V <= MAX_DIM. */
struct rows {
	float l[2][MAX_POS][MAX_DIM];
	bool have[2][MAX_POS];
	double amax;  /* largest |logit| of the run */
};

static struct rows g_b;

static int32_t tok_at(const struct spec *s, int q, int pos)
{
	return (pos < s->P[q] ? s->ptok[q][pos] : s->dtok[q][pos - s->P[q]]) % s->V;
}

/* Largest difference allowed between A and B, relative to the largest
 * logit of B's run: a different summation order changes a float in its
 * last bits, and then a rounding to F16 (KV cache, Q, probabilities, F16
 * activations), BF16 or a Q8 quantum may go the other way and travel
 * through RMS norms to the logits.  Measured over the corpus the ratio
 * stays under 1e-3 (7e-4 worst, degenerate 2-wide heads); a kernel that
 * drops, repeats or misplaces elements or rows is off by far more. */
#define TOLERANCE 1e-2

static void check_row(const struct spec *s, const float *a, int q, int pos)
{
	const float *b = g_b.l[q][pos];
	double d = 0;
	bool fin = true;

	if (!g_b.have[q][pos])
		abort(); /* run B computes every position */
	for (int i = 0; i < s->V; i++) {
		fin &= isfinite(a[i]) && isfinite(b[i]);
		d = fmax(d, fabs((double)a[i] - (double)b[i]));
	}
	if (s->wmode != W_SMALL)
		return;
	if (!fin) {
		fprintf(stderr, "fuzz_forward: non-finite logit (seq %d, pos %d) from "
			"bounded weights\n", q, pos);
		abort();
	}
	if (getenv("FUZZ_FORWARD_DIFF"))
		fprintf(stderr, "diff %.3g amax %.3g rel %.3g\n", d, g_b.amax,
			d / fmax(g_b.amax, 1e-30));
	if (d > TOLERANCE * g_b.amax + 1e-6) {
		fprintf(stderr, "fuzz_forward: seq %d pos %d: %s vs %s logits differ by %.3g "
			"(max |logit| %.3g)\n", q, pos, veil_isa_name(g_best),
			veil_isa_name(s->isa_b), d, g_b.amax);
		abort();
	}
}

static int ctx_for(const struct veil_model *m, int32_t n_seq, int32_t n_batch,
		   int32_t n_out, struct veil_pool *pool, struct veil_ctx **c)
{
	struct veil_ctx_params cp;

	veil_ctx_params_default(&cp);
	cp.n_seq = n_seq;
	cp.n_batch = n_batch;
	cp.n_outputs = n_out;
	cp.pool = pool;
	return veil_ctx_new(m, &cp, c);
}

static int decode(struct veil_ctx *c, int n, const int32_t *tok, const int32_t *pos,
		  const int32_t *seq, const bool *lg)
{
	struct veil_batch b = {n, tok, pos, seq, lg};

	return veil_ctx_decode(c, &b);
}

/* Every sequence alone, its prompt in chunks; logits of every token. */
static void run_b(const struct spec *s, const struct veil_model *m)
{
	int32_t tok[8], pos[8], seq[8];
	bool lg[8];
	struct veil_ctx *c = NULL;

	memset(g_b.have, 0, sizeof(g_b.have));
	g_b.amax = 0;
	if (ctx_for(m, s->S, s->chunk, s->chunk, g_pool1, &c) < 0)
		abort();
	for (int q = s->S - 1; q >= 0; q--) {
		int total = s->P[q] + s->D;

		for (int p0 = 0; p0 < total;) {
			/* prompt in chunks, then one decode token at a time */
			int n = p0 < s->P[q] ? VEIL_MIN(s->chunk, s->P[q] - p0) : 1;

			for (int i = 0; i < n; i++) {
				tok[i] = tok_at(s, q, p0 + i);
				pos[i] = p0 + i;
				seq[i] = q;
				lg[i] = true;
			}
			if (decode(c, n, tok, pos, seq, lg) < 0 || veil_ctx_n_logits(c) != n)
				abort();
			for (int i = 0; i < n; i++) {
				memcpy(g_b.l[q][p0 + i], veil_ctx_logits(c, i),
				       (size_t)s->V * sizeof(float));
				g_b.have[q][p0 + i] = true;
				for (int v = 0; v < s->V; v++)
					g_b.amax = fmax(g_b.amax, fabs((double)g_b.l[q][p0 + i][v]));
			}
			p0 += n;
		}
	}
	veil_ctx_free(c);
}

/* Both prompts in one batch, then decode steps of one token per sequence;
 * every logits row is checked against run B's. */
static void run_a(const struct spec *s, const struct veil_model *m)
{
	int32_t tok[2 * MAX_PROMPT], pos[2 * MAX_PROMPT], seq[2 * MAX_PROMPT];
	bool lg[2 * MAX_PROMPT];
	int n = 0, n_out = 0, k = 0;
	struct veil_ctx *c = NULL;

	for (int q = 0; q < s->S; q++)
		for (int i = 0; i < s->P[q]; i++)
			n_out += s->plog[q][i];
	if (ctx_for(m, s->S, s->P[0] + (s->S > 1 ? s->P[1] : 0), VEIL_MAX(n_out, s->S),
		    g_pool2, &c) < 0)
		abort();
	if (s->order == 1) { /* interleaved by position */
		for (int i = 0; i < MAX_PROMPT; i++)
			for (int q = 0; q < s->S; q++)
				if (i < s->P[q]) {
					tok[n] = tok_at(s, q, i);
					pos[n] = i;
					seq[n] = q;
					lg[n++] = s->plog[q][i];
				}
	} else {
		for (int q = 0; q < s->S; q++)
			for (int j = 0; j < s->P[q]; j++) {
				int i = s->order == 2 ? s->P[q] - 1 - j : j;

				tok[n] = tok_at(s, q, i);
				pos[n] = i;
				seq[n] = q;
				lg[n++] = s->plog[q][i];
			}
	}
	if (decode(c, n, tok, pos, seq, lg) < 0 || veil_ctx_n_logits(c) != n_out)
		abort();
	for (int i = 0; i < n; i++)
		if (lg[i])
			check_row(s, veil_ctx_logits(c, k++), seq[i], pos[i]);
	for (int d = 0; d < s->D; d++) {
		for (int q = 0; q < s->S; q++) {
			pos[q] = s->P[q] + d;
			tok[q] = tok_at(s, q, pos[q]);
			seq[q] = q;
			lg[q] = true;
		}
		/* one sequence: NULL asks for the last token's logits */
		if (decode(c, s->S, tok, pos, seq, s->S == 1 ? NULL : lg) < 0 ||
		    veil_ctx_n_logits(c) != s->S)
			abort();
		for (int q = 0; q < s->S; q++)
			check_row(s, veil_ctx_logits(c, q), q, pos[q]);
	}
	/* out of range: refused before any work */
	tok[0] = 0;
	pos[0] = veil_ctx_n_ctx(c);
	seq[0] = 0;
	if (decode(c, 1, tok, pos, seq, NULL) != VEIL_EINVAL)
		abort();
	tok[0] = s->V;
	pos[0] = 0;
	if (decode(c, 1, tok, pos, seq, NULL) != VEIL_EINVAL)
		abort();
	veil_ctx_free(c);
}

/* Multiply-adds of both runs (matmuls per token, attention per pair). */
static double work(const struct spec *s)
{
	double qd = (double)s->n_head * s->hd, kvd = (double)s->n_head_kv * s->hd;
	double per_tok = s->n_layer * ((double)s->E * (qd + 2 * kvd) + qd * s->E +
				       3.0 * s->E * s->F) + (double)s->E * s->V;
	double toks = 0, pairs = 0;

	for (int q = 0; q < s->S; q++) {
		double t = s->P[q] + s->D;

		toks += t;
		pairs += t * t;
	}
	/* run B asks for logits of every token */
	return 2 * (toks * per_tok + pairs * qd * s->n_layer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spec s;
	struct veil_gguf *g = NULL;
	struct veil_model *m = NULL;
	void *base = NULL;
	uint8_t *file = NULL;
	size_t len = 0;
	int32_t n_ctx;

	if (size > 4096)
		return 0;
	decode_spec(&s, data, size);
	if (work(&s) > MAX_WORK) {
		if (getenv("FUZZ_FORWARD_DIFF"))
			fprintf(stderr, "skipped: %.0f multiply-adds\n", work(&s));
		return 0;
	}
	if (!build_file(&s, &base, &file, &len))
		goto out;
	if (veil_gguf_parse(file, len, &g) < 0)
		abort(); /* the writer's own output */
	if (s.no_pack)
		setenv("VEIL_PACK", "0", 1);
	else
		unsetenv("VEIL_PACK");
	veil_isa_force(g_best); /* packing follows the active path */
	if (veil_model_from_gguf(g, &m) < 0) {
		if (getenv("FUZZ_FORWARD_DIFF"))
			fprintf(stderr, "refused: %s\n", veil_err_detail());
		goto out; /* takes g */
	}
	if (getenv("FUZZ_FORWARD_DIFF"))
		fprintf(stderr, "loaded %s L%d E%d H%d/%d hd%d F%d V%d rot%d S%d "
			"P%d,%d D%d mode%d types %s %s %s\n", s.qwen2 ? "qwen2" : "llama",
			s.n_layer, s.E, s.n_head, s.n_head_kv, s.hd, s.F, s.V, s.n_rot, s.S,
			s.P[0], s.P[1], s.D, s.wmode, veil_dtype_name(s.mt[0]),
			veil_dtype_name(s.mt[2]), veil_dtype_name(s.mt[8]));
	n_ctx = VEIL_MIN(veil_model_hparams(m)->n_ctx_train, 4096);
	/* positions past the context: fewer tokens (refusal checked in run_a) */
	for (int q = 0; q < s.S; q++) {
		s.P[q] = VEIL_MIN(s.P[q], n_ctx);
		s.plog[q][s.P[q] - 1] = true;
	}
	s.D = VEIL_MIN(s.D, n_ctx - VEIL_MAX(s.P[0], s.S > 1 ? s.P[1] : 0));
	if (veil_isa_force(s.isa_b) < 0) {
		s.isa_b = VEIL_ISA_SCALAR;
		veil_isa_force(s.isa_b);
	}
	run_b(&s, m);
	veil_isa_force(g_best);
	run_a(&s, m);
	veil_model_free(m);
out:
	veil_isa_force(g_best);
	free(base);
	return 0;
}
