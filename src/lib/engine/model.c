/* Llama-family model loading and the batched forward pass.
 * See include/veil/model.h for the contract and the numerics. */
#include "veil/model.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "veil/quant.h"

#include "ops.h"

#define MOD "model"

/* Tokens of one sequence whose attention is computed together (Q.K and P.V
 * become small matmuls over the tile). */
#define ATTN_TILE 32
/* The FFN runs over at most this many tokens at a time: its two F32
 * intermediates (n_ff wide) are the largest scratch of a long batch (32 MiB
 * for 512 tokens of a 1B model), and prefill, compute-bound, loses little
 * by reading the FFN weights once per slice. */
#define FFN_SLICE 256
#define MAX_MATS 3
/* Below this many multiply-adds a job runs on the calling thread: handing
 * it to the pool would cost more than it saves. */
#define INLINE_WORK 32768

/* ---- model ------------------------------------------------------------- */

/* A weight matrix: `out` rows of `in` elements, used in place from the
 * file, or (packed) repacked for the VNNI kernels (veil_pack_rows). */
struct wmat {
	const uint8_t *data;
	enum veil_dtype type;
	int32_t in;
	int32_t out;
	size_t row_bytes;   /* of the file's rows (packed or not) */
	bool packed;
};

struct layer {
	struct wmat wq, wk, wv, wo, gate, up, down;
	const float *attn_norm, *ffn_norm;
	const float *bq, *bk, *bv; /* qwen2 only */
};

struct veil_model {
	struct veil_gguf *g;
	struct veil_model_hparams hp;
	struct wmat tok_embd;
	struct wmat output;
	const float *out_norm;
	const float *rope_ff;   /* n_rot / 2 frequency factors, or NULL */
	struct layer *layers;
	float *vecs;            /* owned F32 copies of norms, biases, factors */
	uint8_t *pack;          /* anonymous mapping of the packed matrices */
	size_t pack_len;
	size_t vecs_used, vecs_cap;
	size_t weight_bytes;
	uint64_t n_params;
};

const char *veil_arch_name(enum veil_arch a)
{
	switch (a) {
	case VEIL_ARCH_LLAMA:
		return "llama";
	case VEIL_ARCH_QWEN2:
		return "qwen2";
	}
	return "?";
}

static bool matmul_type_ok(enum veil_dtype t)
{
	switch (t) {
	case VEIL_DT_F32:
	case VEIL_DT_F16:
	case VEIL_DT_BF16:
	case VEIL_DT_Q8_0:
	case VEIL_DT_Q4_0:
	case VEIL_DT_Q4_K:
	case VEIL_DT_Q6_K:
		return true;
	default:
		return false;
	}
}

static int get_mat(const struct veil_gguf *g, const char *name, int32_t in,
		   int32_t out, bool optional, struct wmat *w)
{
	const struct veil_gguf_tensor *t = veil_gguf_tensor(g, name);
	size_t rb;
	int rc;

	if (!t) {
		if (optional)
			return VEIL_ENOENT;
		return veil_errf(VEIL_EFORMAT, "tensor %s: missing", name);
	}
	if (!matmul_type_ok(t->type))
		return veil_errf(VEIL_ENOTSUP, "tensor %s: type %s not supported",
				 name, veil_dtype_name(t->type));
	if (t->n_dims != 2 || t->ne[0] != (uint64_t)in ||
	    t->ne[1] != (uint64_t)out)
		return veil_errf(VEIL_EFORMAT,
				 "tensor %s: shape [%llu, %llu], expected [%d, %d]",
				 name, (unsigned long long)t->ne[0],
				 (unsigned long long)t->ne[1], in, out);
	if ((rc = veil_dtype_row_bytes(t->type, t->ne[0], &rb)) < 0)
		return veil_errf(rc, "tensor %s: row of %d is not whole blocks of %s",
				 name, in, veil_dtype_name(t->type));
	w->data = t->data;
	w->type = t->type;
	w->in = in;
	w->out = out;
	w->row_bytes = rb;
	return 0;
}

/* Copies a small vector tensor (norm weight, bias) to F32. */
static int get_vec(struct veil_model *m, const char *name, int32_t n,
		   bool optional, const float **out)
{
	const struct veil_gguf_tensor *t = veil_gguf_tensor(m->g, name);
	float *dst;
	int rc;

	if (!t) {
		if (optional)
			return VEIL_ENOENT;
		return veil_errf(VEIL_EFORMAT, "tensor %s: missing", name);
	}
	if (t->ne[0] != (uint64_t)n || t->ne[1] != 1 || t->ne[2] != 1 ||
	    t->ne[3] != 1)
		return veil_errf(VEIL_EFORMAT, "tensor %s: %llu elements, expected %d",
				 name, (unsigned long long)t->ne[0], n);
	if (t->type != VEIL_DT_F32 && t->type != VEIL_DT_F16 &&
	    t->type != VEIL_DT_BF16)
		return veil_errf(VEIL_ENOTSUP, "tensor %s: type %s not supported",
				 name, veil_dtype_name(t->type));
	if (m->vecs_used + (size_t)n > m->vecs_cap)
		return veil_errf(VEIL_EINTERNAL, "tensor %s: vector arena full", name);
	dst = m->vecs + m->vecs_used;
	if ((rc = veil_dequantize_row(t->type, t->data, dst, n)) < 0)
		return veil_errf(rc, "tensor %s: cannot convert", name);
	m->vecs_used += (size_t)n;
	*out = dst;
	return 0;
}

static int hp_u32(const struct veil_gguf *g, const char *arch, const char *sfx,
		  bool required, int32_t *out)
{
	char key[128];
	uint32_t v;
	int rc;

	snprintf(key, sizeof(key), "%s.%s", arch, sfx);
	rc = veil_gguf_get_u32(g, key, &v);
	if (rc == VEIL_ENOENT && !required)
		return 0;
	if (rc == VEIL_ENOENT)
		return veil_errf(VEIL_EFORMAT, "key %s: missing", key);
	if (rc < 0)
		return rc;
	if (v == 0 || v > (1u << 30))
		return veil_errf(VEIL_EFORMAT, "key %s: value %u out of range", key, v);
	*out = (int32_t)v;
	return 0;
}

static int hp_f32(const struct veil_gguf *g, const char *arch, const char *sfx,
		  float *out)
{
	char key[128];
	float v;
	int rc;

	snprintf(key, sizeof(key), "%s.%s", arch, sfx);
	rc = veil_gguf_get_f32(g, key, &v);
	if (rc == VEIL_ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	if (!isfinite(v))
		return veil_errf(VEIL_EFORMAT, "key %s: not finite", key);
	*out = v;
	return 0;
}

static int load_hparams(struct veil_model *m)
{
	struct veil_model_hparams *hp = &m->hp;
	const struct veil_gguf *g = m->g;
	struct veil_gguf_str s;
	char arch[32];
	int32_t key_len = 0, val_len = 0;
	float scale = 0.0f;
	int rc;

	if (veil_gguf_get_str(g, "general.architecture", &s) < 0)
		return veil_errf(VEIL_EFORMAT, "key general.architecture: missing");
	if (s.len == 5 && !memcmp(s.p, "llama", 5))
		hp->arch = VEIL_ARCH_LLAMA;
	else if (s.len == 5 && !memcmp(s.p, "qwen2", 5))
		hp->arch = VEIL_ARCH_QWEN2;
	else
		return veil_errf(VEIL_ENOTSUP, "architecture '%.*s' not supported "
				 "(llama, qwen2)", (int)VEIL_MIN(s.len, 64), s.p);
	snprintf(arch, sizeof(arch), "%s", veil_arch_name(hp->arch));
	hp->n_ctx_train = 4096;
	hp->rope_freq_base = 10000.0f;
	hp->rope_freq_scale = 1.0f;
	hp->rms_eps = 1e-5f;
	if ((rc = hp_u32(g, arch, "block_count", true, &hp->n_layer)) < 0 ||
	    (rc = hp_u32(g, arch, "embedding_length", true, &hp->n_embd)) < 0 ||
	    (rc = hp_u32(g, arch, "feed_forward_length", true, &hp->n_ff)) < 0 ||
	    (rc = hp_u32(g, arch, "attention.head_count", true, &hp->n_head)) < 0 ||
	    (rc = hp_u32(g, arch, "context_length", false, &hp->n_ctx_train)) < 0)
		return rc;
	hp->n_head_kv = hp->n_head;
	if ((rc = hp_u32(g, arch, "attention.head_count_kv", false,
			 &hp->n_head_kv)) < 0 ||
	    (rc = hp_u32(g, arch, "attention.key_length", false, &key_len)) < 0 ||
	    (rc = hp_u32(g, arch, "attention.value_length", false, &val_len)) < 0 ||
	    (rc = hp_f32(g, arch, "attention.layer_norm_rms_epsilon",
			 &hp->rms_eps)) < 0 ||
	    (rc = hp_f32(g, arch, "rope.freq_base", &hp->rope_freq_base)) < 0 ||
	    (rc = hp_f32(g, arch, "rope.scaling.factor", &scale)) < 0)
		return rc;
	if (scale == 0.0f && (rc = hp_f32(g, arch, "rope.scale_linear", &scale)) < 0)
		return rc;
	if (scale < 0.0f)
		return veil_errf(VEIL_EFORMAT, "key %s.rope.scaling.factor: negative", arch);
	hp->rope_freq_scale = scale == 0.0f ? 1.0f : 1.0f / scale;
	{
		char key[128];
		struct veil_gguf_str st;

		snprintf(key, sizeof(key), "%s.rope.scaling.type", arch);
		if (veil_gguf_get_str(g, key, &st) == 0 &&
		    !(st.len == 4 && !memcmp(st.p, "none", 4)) &&
		    !(st.len == 6 && !memcmp(st.p, "linear", 6)))
			return veil_errf(VEIL_ENOTSUP, "rope scaling '%.*s' not supported",
					 (int)VEIL_MIN(st.len, 32), st.p);
		if (veil_gguf_get_str(g, key, &st) == 0 && st.len == 4)
			hp->rope_freq_scale = 1.0f;
	}
	if (hp->n_head_kv > hp->n_head || hp->n_head % hp->n_head_kv)
		return veil_errf(VEIL_EFORMAT, "%d heads not a multiple of %d KV heads",
				 hp->n_head, hp->n_head_kv);
	if (!key_len) {
		if (hp->n_embd % hp->n_head)
			return veil_errf(VEIL_EFORMAT, "embedding %d not divisible by "
					 "%d heads", hp->n_embd, hp->n_head);
		key_len = hp->n_embd / hp->n_head;
	}
	if (val_len && val_len != key_len)
		return veil_errf(VEIL_ENOTSUP, "key_length %d != value_length %d",
				 key_len, val_len);
	hp->head_dim = key_len;
	hp->n_rot = hp->head_dim;
	if ((rc = hp_u32(g, arch, "rope.dimension_count", false, &hp->n_rot)) < 0)
		return rc;
	if (hp->n_rot > hp->head_dim || hp->n_rot % 2)
		return veil_errf(VEIL_EFORMAT, "rope dimension %d invalid for head %d",
				 hp->n_rot, hp->head_dim);
	if (hp->head_dim > 1024 || hp->n_head > 1024)
		return veil_errf(VEIL_ERANGE, "head_dim %d / heads %d too large",
				 hp->head_dim, hp->n_head);
	if (!(hp->rms_eps > 0.0f) || !(hp->rope_freq_base > 0.0f))
		return veil_errf(VEIL_EFORMAT, "rms epsilon / rope base must be > 0");
	hp->rope_neox = hp->arch == VEIL_ARCH_QWEN2;
	hp->has_qkv_bias = hp->arch == VEIL_ARCH_QWEN2;
	return 0;
}

static size_t mat_bytes(const struct wmat *w)
{
	return w->row_bytes * (size_t)w->out;
}

static int load_tensors(struct veil_model *m)
{
	struct veil_model_hparams *hp = &m->hp;
	const struct veil_gguf_tensor *te = veil_gguf_tensor(m->g, "token_embd.weight");
	int32_t E = hp->n_embd, F = hp->n_ff, qd = hp->n_head * hp->head_dim,
		kvd = hp->n_head_kv * hp->head_dim;
	char name[96];
	int rc;

	if (!te || te->n_dims != 2 || te->ne[1] == 0 || te->ne[1] > (1u << 24))
		return veil_errf(VEIL_EFORMAT, "tensor token_embd.weight: missing or "
				 "misshapen");
	hp->n_vocab = (int32_t)te->ne[1];
	if ((rc = get_mat(m->g, "token_embd.weight", E, hp->n_vocab, false,
			  &m->tok_embd)) < 0)
		return rc;
	rc = get_mat(m->g, "output.weight", E, hp->n_vocab, true, &m->output);
	if (rc == VEIL_ENOENT) {
		m->output = m->tok_embd;
		hp->tied_output = true;
	} else if (rc < 0) {
		return rc;
	}
	/* a layer is at least 9 tensors (2 norms, 4 attention, 3 FFN): a
	 * header claiming more layers than the file can hold would otherwise
	 * size the buffers below (a 1 KB file could ask for gigabytes) */
	if ((uint64_t)hp->n_layer * 9 > veil_gguf_n_tensors(m->g))
		return veil_errf(VEIL_EFORMAT, "block_count %d: the file has only %zu tensors",
				 (int)hp->n_layer, veil_gguf_n_tensors(m->g));
	/* every vector: 2 norms + 3 biases per layer, output norm, rope factors */
	m->vecs_cap = (size_t)hp->n_layer * (2 * (size_t)E + (size_t)qd + 2 * (size_t)kvd) +
		      (size_t)E + (size_t)hp->n_rot;
	if (!(m->vecs = malloc(m->vecs_cap * sizeof(float))))
		return VEIL_ENOMEM;
	if (!(m->layers = calloc((size_t)hp->n_layer, sizeof(*m->layers))))
		return VEIL_ENOMEM;
	if ((rc = get_vec(m, "output_norm.weight", E, false, &m->out_norm)) < 0)
		return rc;
	rc = get_vec(m, "rope_freqs.weight", hp->n_rot / 2, true, &m->rope_ff);
	if (rc == VEIL_ENOENT)
		m->rope_ff = NULL;
	else if (rc < 0)
		return rc;
	hp->rope_freq_factors = m->rope_ff != NULL;
	m->weight_bytes = mat_bytes(&m->output) + m->tok_embd.row_bytes;
	for (int32_t i = 0; i < hp->n_layer; i++) {
		struct layer *L = &m->layers[i];
		struct {
			const char *sfx;
			struct wmat *w;
			int32_t in, out;
		} mats[] = {
			{"attn_q", &L->wq, E, qd},       {"attn_k", &L->wk, E, kvd},
			{"attn_v", &L->wv, E, kvd},      {"attn_output", &L->wo, qd, E},
			{"ffn_gate", &L->gate, E, F},    {"ffn_up", &L->up, E, F},
			{"ffn_down", &L->down, F, E},
		};
		for (size_t j = 0; j < VEIL_ARRAY_LEN(mats); j++) {
			snprintf(name, sizeof(name), "blk.%d.%s.weight", i, mats[j].sfx);
			if ((rc = get_mat(m->g, name, mats[j].in, mats[j].out, false,
					  mats[j].w)) < 0)
				return rc;
			m->weight_bytes += mat_bytes(mats[j].w);
		}
		snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", i);
		if ((rc = get_vec(m, name, E, false, &L->attn_norm)) < 0)
			return rc;
		snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", i);
		if ((rc = get_vec(m, name, E, false, &L->ffn_norm)) < 0)
			return rc;
		if (hp->has_qkv_bias) {
			snprintf(name, sizeof(name), "blk.%d.attn_q.bias", i);
			if ((rc = get_vec(m, name, qd, false, &L->bq)) < 0)
				return rc;
			snprintf(name, sizeof(name), "blk.%d.attn_k.bias", i);
			if ((rc = get_vec(m, name, kvd, false, &L->bk)) < 0)
				return rc;
			snprintf(name, sizeof(name), "blk.%d.attn_v.bias", i);
			if ((rc = get_vec(m, name, kvd, false, &L->bv)) < 0)
				return rc;
		}
	}
	for (size_t i = 0; i < veil_gguf_n_tensors(m->g); i++) {
		const struct veil_gguf_tensor *t = veil_gguf_tensor_at(m->g, i);
		uint64_t ne = 1;

		for (uint32_t d = 0; d < t->n_dims; d++)
			ne *= t->ne[d];
		m->n_params += ne;
	}
	return 0;
}

/* Drops the whole pages of [lo, hi) from this process's memory.  Only for
 * our own mapping of the model (the read-only file mapping, or the private
 * anonymous copy of veil_gguf_open_private()) and only for bytes nothing
 * reads again (a packed matrix's source): a later read would fault them
 * back from the file, or read zeros from the anonymous copy. */
static void drop_pages(const uint8_t *lo, const uint8_t *hi)
{
	long pg = sysconf(_SC_PAGESIZE);
	uintptr_t a, b;

	if (pg <= 0)
		return;
	a = ((uintptr_t)lo + (uintptr_t)pg - 1) & ~(uintptr_t)(pg - 1);
	b = (uintptr_t)hi & ~(uintptr_t)(pg - 1);
	if (a < b)
		madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Repacks the Q8_0 / Q4_0 matrices used in matmuls into the layout of the
 * VNNI kernels (include/veil/quant.h), when the active path has them:
 * 2-3x their arithmetic rate, and one sequential stream per thread in
 * decode.  The copies live in one anonymous mapping on huge pages (fewer
 * TLB misses while streaming).  With `drop_src` (the file is mapped) the
 * file's pages are dropped as they are consumed, slice by slice, so the
 * resident size stays about one model, never two.  A tied embedding is
 * packed too and looked up with veil_packed_row_f32.  VEIL_PACK=0 keeps
 * every matrix in place (for comparisons). */
#define PACK_SLICE (4u << 20)

static int pack_weights(struct veil_model *m, bool drop_src)
{
	const struct veil_model_hparams *hp = &m->hp;
	const char *env = getenv("VEIL_PACK");
	struct wmat **list;
	size_t n = 0, total = 0, off = 0;

	if (env && !strcmp(env, "0"))
		return 0;
	if (!(list = calloc((size_t)hp->n_layer * 7 + 1, sizeof(*list))))
		return VEIL_ENOMEM;
	list[n++] = hp->tied_output ? &m->tok_embd : &m->output;
	for (int32_t i = 0; i < hp->n_layer; i++) {
		struct layer *L = &m->layers[i];
		struct wmat *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate,
				     &L->up, &L->down};

		for (size_t j = 0; j < VEIL_ARRAY_LEN(ws); j++)
			list[n++] = ws[j];
	}
	for (size_t i = 0; i < n; i++)
		if (veil_pack_worthwhile(list[i]->type, list[i]->in, list[i]->out))
			total += veil_pack_bytes(list[i]->type, list[i]->in, list[i]->out);
	if (total == 0)
		goto out;
	m->pack = mmap(NULL, total, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m->pack == MAP_FAILED) {
		/* not fatal: the matrices work in place, only slower */
		VEIL_WARN(MOD, "no memory to pack %zu bytes of weights; using "
			  "them in place", total);
		m->pack = NULL;
		goto out;
	}
	m->pack_len = total;
	madvise(m->pack, total, MADV_HUGEPAGE);
	for (size_t i = 0; i < n; i++) {
		struct wmat *w = list[i];
		size_t pb;
		int rows;

		if (!veil_pack_worthwhile(w->type, w->in, w->out))
			continue;
		pb = veil_pack_bytes(w->type, w->in, w->out);
		/* whole 16-row groups of about PACK_SLICE bytes at a time */
		rows = (int)VEIL_MAX(VEIL_PACK_ROWS, PACK_SLICE / w->row_bytes /
				     VEIL_PACK_ROWS * VEIL_PACK_ROWS);
		for (int r = 0; r < w->out; r += rows) {
			int nr = VEIL_MIN(rows, w->out - r);

			veil_pack_rows(w->type, w->in, w->data + (size_t)r * w->row_bytes,
				       w->row_bytes, nr,
				       m->pack + off + veil_pack_bytes(w->type, w->in, r));
			if (drop_src)
				drop_pages(w->data + (size_t)r * w->row_bytes,
					   w->data + (size_t)(r + nr) * w->row_bytes);
		}
		w->data = m->pack + off;
		w->packed = true;
		off += pb;
	}
	if (hp->tied_output)
		m->output = m->tok_embd;
	VEIL_DEBUG(MOD, "packed %zu bytes of weights", total);
out:
	free(list);
	return 0;
}

static int model_init(struct veil_gguf *g, bool file_mapped,
		      struct veil_model **out)
{
	struct veil_model *m = calloc(1, sizeof(*m));
	int rc;

	if (!m) {
		veil_gguf_close(g);
		return VEIL_ENOMEM;
	}
	veil_quant_init();
	m->g = g;
	if ((rc = load_hparams(m)) < 0 || (rc = load_tensors(m)) < 0) {
		veil_model_free(m);
		return rc;
	}
	{
		/* start paging the weights in now rather than on the first token */
		uintptr_t p = (uintptr_t)veil_gguf_file_data(g);
		long pg = sysconf(_SC_PAGESIZE);

		if (pg > 0 && p % (uintptr_t)pg == 0)
			madvise((void *)p, veil_gguf_file_size(g), MADV_WILLNEED);
		else
			file_mapped = false;
	}
	if ((rc = pack_weights(m, file_mapped)) < 0) {
		veil_model_free(m);
		return rc;
	}
	VEIL_DEBUG(MOD, "loaded %s: %d layers, embd %d, heads %d/%d, ff %d, vocab %d",
		   veil_arch_name(m->hp.arch), m->hp.n_layer, m->hp.n_embd,
		   m->hp.n_head, m->hp.n_head_kv, m->hp.n_ff, m->hp.n_vocab);
	*out = m;
	return 0;
}

/* The caller's gguf may live in memory it owns: its pages are never
 * dropped (packed matrices are then held twice). */
int veil_model_from_gguf(struct veil_gguf *g, struct veil_model **out)
{
	return model_init(g, false, out);
}

int veil_model_load(const char *path, struct veil_model **out)
{
	struct veil_gguf *g;
	int rc;

	if ((rc = veil_gguf_open(path, &g)) < 0)
		return rc;
	return model_init(g, true, out);
}

int veil_model_load_private(const char *path, struct veil_gguf_digests *dg,
			    struct veil_model **out)
{
	struct veil_gguf *g;
	int rc;

	if ((rc = veil_gguf_open_private(path, dg, &g)) < 0)
		return rc;
	/* the copy is ours: packed sources are dropped as from the file */
	return model_init(g, true, out);
}

void veil_model_free(struct veil_model *m)
{
	if (!m)
		return;
	if (m->pack)
		munmap(m->pack, m->pack_len);
	free(m->layers);
	free(m->vecs);
	veil_gguf_close(m->g);
	free(m);
}

const struct veil_model_hparams *veil_model_hparams(const struct veil_model *m)
{
	return &m->hp;
}

const struct veil_gguf *veil_model_gguf(const struct veil_model *m)
{
	return m->g;
}

size_t veil_model_file_bytes(const struct veil_model *m)
{
	return veil_gguf_file_size(m->g);
}

size_t veil_model_weight_bytes_per_token(const struct veil_model *m)
{
	return m->weight_bytes;
}

uint64_t veil_model_n_params(const struct veil_model *m)
{
	return m->n_params;
}

enum veil_dtype veil_model_main_type(const struct veil_model *m)
{
	return m->layers[0].gate.type;
}

/* ---- context ----------------------------------------------------------- */

struct tile {
	int32_t t0;   /* first batch index */
	int32_t n;    /* tokens */
	int32_t seq;
	int32_t pos0;
};

struct thr_scratch {
	float *qf;      /* [ATTN_TILE][head_dim], rounded to F16 */
	float *s;       /* [ATTN_TILE][n_ctx] scores */
	uint16_t *p16;  /* [ATTN_TILE][n_ctx] probabilities */
	float *o;       /* [ATTN_TILE][head_dim] */
	uint16_t *v16;  /* [n_head_kv * head_dim] */
};

struct veil_ctx {
	const struct veil_model *m;
	struct veil_pool *pool;
	bool own_pool;
	int n_thr;
	int32_t n_ctx, n_seq, n_batch, n_out_max;
	int32_t qd, kvd;

	/* Both caches are transposed, [layer][seq][kvd][kvs] with position
	 * contiguous: Q.K^T then runs as rank-1 updates over positions (no
	 * horizontal sums) and P.V as dots along positions, like llama.cpp's
	 * V^T.  kvs (row stride) is n_ctx padded to an odd multiple of 32
	 * elements so that rows do not alias in the caches. */
	uint16_t *kv;        /* mmap: K^T then V^T */
	size_t kv_bytes;
	size_t kvs;
	uint16_t *kc;        /* K^T */
	uint16_t *vt;        /* V^T */

	float *x;            /* [n_batch][E] residual stream */
	float *xb;           /* [n_batch][max(E, qd)] */
	float *tmp;          /* [n_batch][E] */
	float *q, *k, *v;    /* [n_batch][qd], [n_batch][kvd] x2 */
	float *fg, *fu;      /* [n_batch][F] */
	uint8_t *act;        /* converted activations */
	float *rope;         /* [n_batch][n_rot] cos/sin pairs */
	float *logits;       /* [n_out_max][n_vocab] */
	int32_t *out_idx;    /* batch index of each output row */
	struct tile *tiles;
	struct thr_scratch *ts;
	int32_t n_logits;

	/* current step */
	const struct veil_ops *ops;
	const struct veil_batch *b;
	int32_t il;          /* layer */
	int32_t n_tiles;
	int32_t attn_gsz;    /* query heads of one KV head taken together */
	int64_t attn_work;   /* multiply-adds of one layer's attention */
};

void veil_ctx_params_default(struct veil_ctx_params *p)
{
	*p = (struct veil_ctx_params){0};
}

static void *xalloc(size_t n)
{
	void *p;

	n = (n + 63) / 64 * 64;
	if (n == 0)
		n = 64;
	p = aligned_alloc(64, n);
	return p;
}

void veil_ctx_free(struct veil_ctx *c)
{
	if (!c)
		return;
	if (c->kv)
		munmap(c->kv, c->kv_bytes);
	free(c->x);
	free(c->xb);
	free(c->tmp);
	free(c->q);
	free(c->k);
	free(c->v);
	free(c->fg);
	free(c->fu);
	free(c->act);
	free(c->rope);
	free(c->logits);
	free(c->out_idx);
	free(c->tiles);
	if (c->ts) {
		for (int i = 0; i < c->n_thr; i++) {
			free(c->ts[i].qf);
			free(c->ts[i].s);
			free(c->ts[i].p16);
			free(c->ts[i].o);
			free(c->ts[i].v16);
		}
		free(c->ts);
	}
	if (c->own_pool)
		veil_pool_free(c->pool);
	free(c);
}

/* The first write to a fresh page costs the kernel's zeroing and, under a
 * hypervisor, the host's backing of the page; in a confidential VM also
 * its acceptance (TDX page accept, SNP PVALIDATE).  Left to the first
 * requests, that made a node's first burst of 64 streams take 4.3 s to its
 * last first token against 0.12 s later (SmolLM2-135M, 2 cores, 2/3 of
 * its time in clear_page).  Paid here, it is paid before the server says
 * it is ready. */
static int kv_populate(struct veil_ctx *c)
{
	volatile uint8_t *b = (volatile uint8_t *)c->kv;

	if (madvise(c->kv, c->kv_bytes, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL) /* EINVAL: a kernel before 5.14 */
		return veil_errf(VEIL_ENOMEM, "context: cannot make %zu bytes of KV cache "
				 "resident: %s", c->kv_bytes, strerror(errno));
	for (size_t o = 0; o < c->kv_bytes; o += 4096)
		b[o] = 0;
	return 0;
}

static inline size_t act_row_bytes(enum veil_dtype at, int K)
{
	size_t rb = 0;

	veil_dtype_row_bytes(at, (uint64_t)K, &rb);
	return rb;
}

int veil_ctx_new(const struct veil_model *m, const struct veil_ctx_params *p,
		 struct veil_ctx **out)
{
	const struct veil_model_hparams *hp = &m->hp;
	struct veil_ctx *c = calloc(1, sizeof(*c));
	size_t B, E = (size_t)hp->n_embd, F = (size_t)hp->n_ff, kvn, act_rb = 64;
	int rc = 0;

	if (!c)
		return VEIL_ENOMEM;
	c->m = m;
	c->n_ctx = p->n_ctx > 0 ? p->n_ctx : VEIL_MIN(hp->n_ctx_train, 4096);
	c->n_seq = p->n_seq > 0 ? p->n_seq : 1;
	c->n_batch = p->n_batch > 0 ? p->n_batch : 512;
	c->n_out_max = p->n_outputs > 0 ? p->n_outputs : c->n_seq;
	c->qd = hp->n_head * hp->head_dim;
	c->kvd = hp->n_head_kv * hp->head_dim;
	if (c->n_ctx > (1 << 20) || c->n_seq > 4096 || c->n_batch > 65536 ||
	    c->n_out_max > c->n_batch) {
		rc = veil_errf(VEIL_EINVAL, "context: n_ctx %d / n_seq %d / n_batch %d"
			       " / n_outputs %d out of range", c->n_ctx, c->n_seq,
			       c->n_batch, c->n_out_max);
		goto fail;
	}
	if (p->pool) {
		c->pool = p->pool;
	} else {
		if ((rc = veil_pool_new(p->n_threads, &c->pool)) < 0)
			goto fail;
		c->own_pool = true;
	}
	c->n_thr = veil_pool_size(c->pool);

	/* KV cache: reserved, pages materialise when written */
	c->kvs = ((size_t)c->n_ctx + 63) / 64 * 64 + 32;
	if (veil_mul_ovf((size_t)hp->n_layer, (size_t)c->n_seq, &kvn) ||
	    veil_mul_ovf(kvn, c->kvs, &kvn) || veil_mul_ovf(kvn, (size_t)c->kvd, &kvn) ||
	    veil_mul_ovf(kvn, 2 * sizeof(uint16_t), &c->kv_bytes)) {
		rc = veil_errf(VEIL_ERANGE, "context: the KV cache size overflows (%u layers, "
			       "%d sequences, %d positions)", (unsigned)hp->n_layer, (int)c->n_seq,
			       (int)c->n_ctx);
		goto fail;
	}
	c->kv = mmap(NULL, c->kv_bytes, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (c->kv == MAP_FAILED) {
		c->kv = NULL;
		rc = veil_errf(VEIL_ENOMEM, "context: cannot reserve %zu bytes of KV cache",
			       c->kv_bytes);
		goto fail;
	}
	/* Attention reads, per KV head, head_dim rows of the transposed caches
	 * a row stride apart: on 4 KiB pages nearly every row is its own TLB
	 * entry.  Huge pages cut the walks (measured on Zen 5, 8 SmolLM2
	 * sequences decoding: about +10%); the cost is that the cache becomes
	 * resident 2 MiB at a time (within its reserved size; with positions
	 * contiguous, the first position of a sequence touches most of its 4
	 * KiB pages anyway). */
	madvise(c->kv, c->kv_bytes, MADV_HUGEPAGE);
	if (p->populate && (rc = kv_populate(c)) < 0)
		goto fail;
	c->kc = c->kv;
	c->vt = c->kv + kvn;

	B = (size_t)c->n_batch;
	/* the widest converted activation row any matrix reads (F32
	 * activations are read in place, never converted: matmuls(),
	 * norm_fn(), swiglu_fn()); Q8_0 rows take 1.06 bytes per element,
	 * F16 2, so this is sized by the model, not the worst type */
	for (int32_t i = 0; i <= hp->n_layer; i++) {
		const struct layer *L = &m->layers[VEIL_MIN(i, hp->n_layer - 1)];
		const struct wmat *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo,
					   &L->gate, &L->up, &L->down};

		for (size_t j = 0; j < VEIL_ARRAY_LEN(ws); j++) {
			const struct wmat *w = i == hp->n_layer ? &m->output : ws[j];
			enum veil_dtype at = veil_quant_act_type(w->type);

			if (at != VEIL_DT_F32)
				act_rb = VEIL_MAX(act_rb, act_row_bytes(at, w->in));
		}
	}
	c->x = xalloc(B * E * sizeof(float));
	c->xb = xalloc(B * VEIL_MAX(E, (size_t)c->qd) * sizeof(float));
	c->tmp = xalloc(B * E * sizeof(float));
	c->q = xalloc(B * (size_t)c->qd * sizeof(float));
	c->k = xalloc(B * (size_t)c->kvd * sizeof(float));
	c->v = xalloc(B * (size_t)c->kvd * sizeof(float));
	c->fg = xalloc(VEIL_MIN(B, FFN_SLICE) * F * sizeof(float));
	c->fu = xalloc(VEIL_MIN(B, FFN_SLICE) * F * sizeof(float));
	c->act = xalloc(B * act_rb);
	c->rope = xalloc(B * (size_t)hp->n_rot * sizeof(float));
	c->logits = xalloc((size_t)c->n_out_max * (size_t)hp->n_vocab * sizeof(float));
	c->out_idx = xalloc(B * sizeof(int32_t));
	c->tiles = xalloc(B * sizeof(struct tile));
	c->ts = calloc((size_t)c->n_thr, sizeof(*c->ts));
	if (!c->x || !c->xb || !c->tmp || !c->q || !c->k || !c->v || !c->fg ||
	    !c->fu || !c->act || !c->rope || !c->logits || !c->out_idx ||
	    !c->tiles || !c->ts) {
		rc = VEIL_ENOMEM;
		goto fail;
	}
	for (int i = 0; i < c->n_thr; i++) {
		struct thr_scratch *t = &c->ts[i];
		size_t hd = (size_t)hp->head_dim, nc = (size_t)c->n_ctx;

		t->qf = xalloc(ATTN_TILE * hd * sizeof(float));
		t->s = xalloc(ATTN_TILE * nc * sizeof(float));
		t->p16 = xalloc(ATTN_TILE * nc * sizeof(uint16_t));
		t->o = xalloc(ATTN_TILE * hd * sizeof(float));
		t->v16 = xalloc((size_t)c->kvd * sizeof(uint16_t));
		if (!t->qf || !t->s || !t->p16 || !t->o || !t->v16) {
			rc = VEIL_ENOMEM;
			goto fail;
		}
	}
	*out = c;
	return 0;
fail:
	veil_ctx_free(c);
	return rc;
}

int32_t veil_ctx_n_ctx(const struct veil_ctx *c)
{
	return c->n_ctx;
}

int32_t veil_ctx_n_seq(const struct veil_ctx *c)
{
	return c->n_seq;
}

int32_t veil_ctx_n_batch(const struct veil_ctx *c)
{
	return c->n_batch;
}

int veil_ctx_n_threads(const struct veil_ctx *c)
{
	return c->n_thr;
}

size_t veil_ctx_kv_bytes(const struct veil_ctx *c)
{
	return c->kv_bytes;
}

float *veil_ctx_logits(struct veil_ctx *c, int32_t i)
{
	if (i < 0 || i >= c->n_logits)
		return NULL;
	return c->logits + (size_t)i * (size_t)c->m->hp.n_vocab;
}

int32_t veil_ctx_n_logits(const struct veil_ctx *c)
{
	return c->n_logits;
}

/* ---- forward pass: helpers --------------------------------------------- */

/* src row -> activation row of type at (F32: plain copy is not needed, the
 * matmul reads src directly). */
static inline void to_act(enum veil_dtype at, const float *src, uint8_t *dst, int K)
{
	if (at == VEIL_DT_F16)
		veil_f32_to_f16_row(src, (uint16_t *)dst, K);
	else
		veil_quantize_row(at, src, dst, K);
}

/* llama.cpp ggml_rms_norm (sum in double) followed by ggml_mul by w. */
static void rms_norm(const struct veil_ops *ops, const float *x, const float *w,
		     float *y, int n, float eps)
{
	double sum = ops->sumsq(x, n);
	float scale;

	scale = 1.0f / sqrtf((float)(sum / n) + eps);
	for (int i = 0; i < n; i++)
		y[i] = (x[i] * scale) * w[i];
}

/* Runs a per-token pass inline when the batch is small (thread hand-off
 * costs more than the work) and on the pool otherwise. */
static void run_tokens(struct veil_ctx *c, int32_t n, veil_pool_fn fn, void *arg)
{
	if (n < 4 || c->n_thr == 1) {
		fn(arg, 0, n, 0);
		return;
	}
	veil_pool_for(c->pool, n, VEIL_MAX(1, n / (c->n_thr * 4)), fn, arg);
}

/* ---- matmuls ----------------------------------------------------------- */

struct mm_job {
	int n_m;
	const struct wmat *w[MAX_MATS];
	float *y[MAX_MATS];
	/* 16-row groups of the matrices laid end to end: matrix i owns
	 * groups [first_group[i], first_group[i + 1]) */
	int64_t first_group[MAX_MATS + 1];
	int64_t n_chunks;
	int K;
	const void *x;
	size_t x_stride;
	int nb;
};

/* Chunk ch is an equal share of all the job's row groups, which may span
 * the end of one matrix and the start of the next: equal chunks keep both
 * threads busy to the end of the job (a remainder chunk per matrix would
 * leave one waiting). */
static void mm_fn(void *arg, int64_t b, int64_t e, int tid)
{
	const struct mm_job *j = arg;
	const int64_t G = j->first_group[j->n_m];

	(void)tid;
	for (int64_t ch = b; ch < e; ch++) {
		int64_t g0 = ch * G / j->n_chunks, g1 = (ch + 1) * G / j->n_chunks;

		for (int i = 0; i < j->n_m; i++) {
			const struct wmat *w = j->w[i];
			int64_t lo = VEIL_MAX(g0, j->first_group[i]);
			int64_t hi = VEIL_MIN(g1, j->first_group[i + 1]);
			int r0, r1;

			if (lo >= hi)
				continue;
			r0 = (int)(lo - j->first_group[i]) * 16;
			r1 = (int)VEIL_MIN((hi - j->first_group[i]) * 16, (int64_t)w->out);
			if (w->packed) /* chunks are whole 16-row groups */
				veil_gemm_packed(w->type, j->K, w->data, r0, r1, j->x,
						 j->x_stride, j->nb, j->y[i], (size_t)w->out);
			else
				veil_gemm(w->type, j->K, w->data, w->row_bytes, r0, r1,
					  j->x, j->x_stride, j->nb, j->y[i], (size_t)w->out);
		}
	}
}

struct conv_arg {
	const float *src;
	uint8_t *dst;
	enum veil_dtype at;
	int K;
	size_t stride;
};

static void conv_fn(void *arg, int64_t b, int64_t e, int tid)
{
	const struct conv_arg *a = arg;

	(void)tid;
	for (int64_t t = b; t < e; t++)
		to_act(a->at, a->src + t * a->K, a->dst + t * a->stride, a->K);
}

/* y_i = W_i . src for each matrix (all with `K` inputs), over n tokens.
 * src rows are K floats; when `ready` is the activation type of w[0] the
 * caller already converted src into c->act. */
static void matmuls(struct veil_ctx *c, const float *src, int K, int32_t n,
		    const struct wmat *const *w, float *const *y, int n_m,
		    enum veil_dtype ready)
{
	bool done[MAX_MATS] = {false};

	for (int g = 0; g < n_m; g++) {
		struct mm_job j = {.K = K, .nb = n};
		enum veil_dtype at;
		int64_t total_rows = 0, nch;

		if (done[g])
			continue;
		at = veil_quant_act_type(w[g]->type);
		for (int i = g; i < n_m; i++) {
			if (done[i] || veil_quant_act_type(w[i]->type) != at)
				continue;
			done[i] = true;
			j.w[j.n_m] = w[i];
			j.y[j.n_m] = y[i];
			j.n_m++;
			total_rows += w[i]->out;
		}
		if (at == VEIL_DT_F32) {
			j.x = src;
			j.x_stride = (size_t)K * sizeof(float);
		} else {
			struct conv_arg ca = {src, c->act, at, K, act_row_bytes(at, K)};

			if (at != ready)
				run_tokens(c, n, conv_fn, &ca);
			ready = VEIL_DT_COUNT; /* c->act is overwritten from here on */
			j.x = c->act;
			j.x_stride = ca.stride;
		}
		/* ~8 chunks per thread for balance, but in decode (up to 16
		 * tokens: memory-bound) 2: longer sequential streams and fewer
		 * hand-offs (measured on Zen 5, 2 threads, SmolLM2 Q8_0 tg128:
		 * one sequence about +12%, 8 in parallel about +30%); never
		 * chunks under 16 rows */
		for (int i = 0; i < j.n_m; i++)
			j.first_group[i + 1] = j.first_group[i] + (j.w[i]->out + 15) / 16;
		j.n_chunks = c->n_thr == 1 ? 1 : (int64_t)c->n_thr * (n <= 16 ? 2 : 8);
		j.n_chunks = VEIL_MIN(j.n_chunks, j.first_group[j.n_m]);
		nch = j.n_chunks;
		if ((int64_t)total_rows * K * n < INLINE_WORK)
			mm_fn(&j, 0, nch, 0);
		else
			veil_pool_for(c->pool, nch, 1, mm_fn, &j);
	}
}

/* ---- per-token passes -------------------------------------------------- */

/* x += add (optional); xb = rmsnorm(x) * w; act = xb in type `at`. */
struct norm_arg {
	struct veil_ctx *c;
	const float *add;
	const float *w;
	enum veil_dtype at;
};

static void norm_fn(void *arg, int64_t b, int64_t e, int tid)
{
	const struct norm_arg *a = arg;
	struct veil_ctx *c = a->c;
	int E = c->m->hp.n_embd;
	size_t rb = act_row_bytes(a->at, E);

	(void)tid;
	for (int64_t t = b; t < e; t++) {
		float *x = c->x + t * E, *xb = c->xb + t * E;

		if (a->add) {
			const float *d = a->add + t * E;

			for (int i = 0; i < E; i++)
				x[i] += d[i];
		}
		if (!a->w)
			continue;
		rms_norm(c->ops, x, a->w, xb, E, c->m->hp.rms_eps);
		if (a->at != VEIL_DT_F32)
			to_act(a->at, xb, c->act + t * rb, E);
	}
}

static void rope_apply(float *v, const float *cs, int n_rot, bool neox)
{
	if (neox) {
		int half = n_rot / 2;

		for (int i = 0; i < half; i++) {
			float x0 = v[i], x1 = v[i + half];
			float co = cs[2 * i], si = cs[2 * i + 1];

			v[i] = x0 * co - x1 * si;
			v[i + half] = x0 * si + x1 * co;
		}
	} else {
		for (int i = 0; i < n_rot; i += 2) {
			float x0 = v[i], x1 = v[i + 1];
			float co = cs[i], si = cs[i + 1];

			v[i] = x0 * co - x1 * si;
			v[i + 1] = x0 * si + x1 * co;
		}
	}
}

/* Bias, RoPE, and storing K / V of every token into its sequence's cache. */
static void qkv_post_fn(void *arg, int64_t b, int64_t e, int tid)
{
	struct veil_ctx *c = arg;
	const struct veil_model_hparams *hp = &c->m->hp;
	const struct layer *L = &c->m->layers[c->il];
	int hd = hp->head_dim, qd = c->qd, kvd = c->kvd;
	size_t ks = c->kvs;
	uint16_t *h16 = c->ts[tid].v16;

	for (int64_t t = b; t < e; t++) {
		float *q = c->q + t * qd, *k = c->k + t * kvd, *v = c->v + t * kvd;
		const float *cs = c->rope + t * hp->n_rot;
		int32_t s = c->b->seq[t], pos = c->b->pos[t];
		size_t base = ((size_t)c->il * (size_t)c->n_seq + (size_t)s) *
			      (size_t)kvd * ks + (size_t)pos;
		uint16_t *kt = c->kc + base, *vt = c->vt + base;

		if (L->bq) {
			for (int i = 0; i < qd; i++)
				q[i] += L->bq[i];
			for (int i = 0; i < kvd; i++) {
				k[i] += L->bk[i];
				v[i] += L->bv[i];
			}
		}
		for (int h = 0; h < hp->n_head; h++)
			rope_apply(q + h * hd, cs, hp->n_rot, hp->rope_neox);
		for (int h = 0; h < hp->n_head_kv; h++)
			rope_apply(k + h * hd, cs, hp->n_rot, hp->rope_neox);
		veil_f32_to_f16_row(k, h16, kvd);
		for (int i = 0; i < kvd; i++)
			kt[(size_t)i * ks] = h16[i];
		veil_f32_to_f16_row(v, h16, kvd);
		for (int i = 0; i < kvd; i++)
			vt[(size_t)i * ks] = h16[i];
	}
}

/* Attention of one tile of tokens (same sequence, consecutive positions)
 * for attn_gsz query heads that share one KV head: S = Q.K^T over
 * positions 0..last, causal softmax, O = P.V, with the heads' rows stacked
 * (row g * n + t is head h0 + g, token t) so that K and V are read once for
 * all of them.  Each row is computed exactly as alone.  Work items are
 * (tile, group of heads). */
static void attn_fn(void *arg, int64_t b, int64_t e, int tid)
{
	struct veil_ctx *c = arg;
	const struct veil_model_hparams *hp = &c->m->hp;
	struct thr_scratch *ts = &c->ts[tid];
	int hd = hp->head_dim, qd = c->qd, kvd = c->kvd;
	int n_gqa = hp->n_head / hp->n_head_kv, gsz = c->attn_gsz;
	int n_grp = hp->n_head / gsz;
	size_t ks = c->kvs;
	float scale = 1.0f / sqrtf((float)hd);

	for (int64_t it = b; it < e; it++) {
		const struct tile *tl = &c->tiles[it / n_grp];
		int h0 = (int)(it % n_grp) * gsz, kvh = h0 / n_gqa;
		size_t base = (((size_t)c->il * (size_t)c->n_seq + (size_t)tl->seq) *
				       (size_t)kvd + (size_t)kvh * hd) * ks;
		const uint16_t *kt = c->kc + base, *vt = c->vt + base;
		int n = tl->n, n_kv = tl->pos0 + tl->n, rows = gsz * n;

		/* llama.cpp rounds Q to F16 for the F16 K cache */
		for (int i = 0; i < rows; i++) {
			float *qf = ts->qf + (size_t)i * hd;
			int g = i / n, t = i % n;

			veil_f32_to_f16_row(c->q + (size_t)(tl->t0 + t) * qd + (h0 + g) * hd,
					    (uint16_t *)ts->o, hd);
			veil_f16_to_f32_row((const uint16_t *)ts->o, qf, hd);
		}
		c->ops->qk(ts->qf, rows, hd, kt, ks, n_kv, ts->s, (size_t)n_kv);
		for (int i = 0; i < rows; i++) {
			float *s = ts->s + (size_t)i * n_kv;
			uint16_t *p = ts->p16 + (size_t)i * n_kv;
			int nv = tl->pos0 + i % n + 1;

			c->ops->softmax(s, nv, scale);
			veil_f32_to_f16_row(s, p, nv);
			if (n_kv > nv)
				memset(p + nv, 0, (size_t)(n_kv - nv) * sizeof(uint16_t));
		}
		veil_gemm(VEIL_DT_F16, n_kv, vt, ks * sizeof(uint16_t), 0, hd, ts->p16,
			  (size_t)n_kv * sizeof(uint16_t), rows, ts->o, (size_t)hd);
		for (int i = 0; i < rows; i++)
			memcpy(c->xb + (size_t)(tl->t0 + i % n) * qd + (h0 + i / n) * hd,
			       ts->o + (size_t)i * hd, (size_t)hd * sizeof(float));
	}
}

/* g = silu(g) * u, then act = g in type `at`. */
struct swiglu_arg {
	struct veil_ctx *c;
	enum veil_dtype at;
};

static void swiglu_fn(void *arg, int64_t b, int64_t e, int tid)
{
	const struct swiglu_arg *a = arg;
	struct veil_ctx *c = a->c;
	int F = c->m->hp.n_ff;
	size_t rb = act_row_bytes(a->at, F);

	(void)tid;
	for (int64_t t = b; t < e; t++) {
		float *g = c->fg + t * F;
		const float *u = c->fu + t * F;

		c->ops->silu_mul(g, u, F);
		if (a->at != VEIL_DT_F32)
			to_act(a->at, g, c->act + t * rb, F);
	}
}

/* ---- forward pass ------------------------------------------------------ */

static void rope_cache(struct veil_ctx *c, int32_t n)
{
	const struct veil_model_hparams *hp = &c->m->hp;
	float theta_scale = powf(hp->rope_freq_base, -2.0f / (float)hp->n_rot);

	/* ggml_rope_cache_init: theta = pos * theta_scale^i, computed by
	 * repeated multiplication in float, divided by the frequency factor,
	 * times freq_scale (linear scaling); no YaRN. */
	for (int32_t t = 0; t < n; t++) {
		float *cs = c->rope + (size_t)t * hp->n_rot;
		float theta = (float)c->b->pos[t];

		for (int i = 0; i < hp->n_rot; i += 2) {
			float ff = c->m->rope_ff ? c->m->rope_ff[i / 2] : 1.0f;
			float th = hp->rope_freq_scale * (theta / ff);

			cs[i] = cosf(th);
			cs[i + 1] = sinf(th);
			theta *= theta_scale;
		}
	}
}

static void make_tiles(struct veil_ctx *c, int32_t n)
{
	const struct veil_batch *b = c->b;
	int32_t nt = 0;

	for (int32_t i = 0; i < n; i++) {
		struct tile *tl = nt ? &c->tiles[nt - 1] : NULL;

		if (tl && tl->seq == b->seq[i] && tl->n < ATTN_TILE &&
		    b->pos[i] == tl->pos0 + tl->n) {
			tl->n++;
			continue;
		}
		c->tiles[nt++] = (struct tile){i, 1, b->seq[i], b->pos[i]};
	}
	c->n_tiles = nt;
	/* as many query heads of a KV head per work item as fit the
	 * ATTN_TILE rows of the scratch (decode: all of them) */
	{
		int32_t n_gqa = c->m->hp.n_head / c->m->hp.n_head_kv, tmax = 1;

		for (int32_t i = 0; i < nt; i++)
			tmax = VEIL_MAX(tmax, c->tiles[i].n);
		c->attn_gsz = 1;
		for (int32_t g = 1; g <= n_gqa; g++)
			if (n_gqa % g == 0 && g * tmax <= ATTN_TILE)
				c->attn_gsz = g;
	}
	c->attn_work = 0;
	for (int32_t i = 0; i < nt; i++)
		c->attn_work += 2 * (int64_t)c->tiles[i].n *
				(c->tiles[i].pos0 + c->tiles[i].n) *
				c->m->hp.head_dim * c->m->hp.n_head;
}

static int check_batch(struct veil_ctx *c, const struct veil_batch *b,
		       int32_t *n_out)
{
	const struct veil_model_hparams *hp = &c->m->hp;
	int32_t no = 0;

	if (!b || b->n < 1 || b->n > c->n_batch || !b->token || !b->pos || !b->seq)
		return veil_errf(VEIL_EINVAL, "decode: batch of %d tokens (max %d)",
				 b ? b->n : 0, c->n_batch);
	for (int32_t i = 0; i < b->n; i++) {
		if (b->token[i] < 0 || b->token[i] >= hp->n_vocab)
			return veil_errf(VEIL_EINVAL, "decode: token %d out of range",
					 b->token[i]);
		if (b->pos[i] < 0 || b->pos[i] >= c->n_ctx)
			return veil_errf(VEIL_EINVAL, "decode: position %d outside the "
					 "context of %d", b->pos[i], c->n_ctx);
		if (b->seq[i] < 0 || b->seq[i] >= c->n_seq)
			return veil_errf(VEIL_EINVAL, "decode: sequence %d out of range",
					 b->seq[i]);
		if (b->logits ? b->logits[i] : i == b->n - 1) {
			if (no >= c->n_out_max)
				return veil_errf(VEIL_EINVAL, "decode: more than %d logits rows",
						 c->n_out_max);
			c->out_idx[no++] = i;
		}
	}
	*n_out = no;
	return 0;
}

int veil_ctx_decode(struct veil_ctx *c, const struct veil_batch *b)
{
	const struct veil_model *m = c->m;
	const struct veil_model_hparams *hp = &m->hp;
	int32_t n, n_out = 0, E = hp->n_embd;
	enum veil_dtype ready;
	int rc;

	c->n_logits = 0;
	if ((rc = check_batch(c, b, &n_out)) < 0)
		return rc;
	c->ops = veil_ops_get();
	n = b->n;
	c->b = b;
	for (int32_t t = 0; t < n; t++) {
		if (m->tok_embd.packed)
			veil_packed_row_f32(m->tok_embd.type, E, m->tok_embd.data,
					    b->token[t], c->x + (size_t)t * E);
		else
			veil_dequantize_row(m->tok_embd.type,
					    m->tok_embd.data + (size_t)b->token[t] *
								       m->tok_embd.row_bytes,
					    c->x + (size_t)t * E, E);
	}
	rope_cache(c, n);
	make_tiles(c, n);

	for (int32_t il = 0; il < hp->n_layer; il++) {
		const struct layer *L = &m->layers[il];
		const struct wmat *qkv[3] = {&L->wq, &L->wk, &L->wv};
		float *qkv_y[3] = {c->q, c->k, c->v};
		const struct wmat *gu[2] = {&L->gate, &L->up};
		float *gu_y[2] = {c->fg, c->fu};
		const struct wmat *wo = &L->wo, *down = &L->down;
		struct norm_arg na;
		struct swiglu_arg sa;

		c->il = il;
		/* attention block: x (+= previous FFN output) -> norm -> QKV */
		ready = veil_quant_act_type(L->wq.type);
		na = (struct norm_arg){c, il ? c->tmp : NULL, L->attn_norm, ready};
		run_tokens(c, n, norm_fn, &na);
		matmuls(c, c->xb, E, n, qkv, qkv_y, 3, ready);
		run_tokens(c, n, qkv_post_fn, c);
		if (c->attn_work < INLINE_WORK)
			attn_fn(c, 0, (int64_t)c->n_tiles * (hp->n_head / c->attn_gsz), 0);
		else
			veil_pool_for(c->pool, (int64_t)c->n_tiles * (hp->n_head / c->attn_gsz),
				      1, attn_fn, c);
		matmuls(c, c->xb, c->qd, n, &wo, &c->tmp, 1, VEIL_DT_COUNT);

		if (il == hp->n_layer - 1) {
			/* only the tokens whose logits are wanted go on */
			na = (struct norm_arg){c, c->tmp, NULL, VEIL_DT_F32};
			run_tokens(c, n, norm_fn, &na);
			for (int32_t i = 0; i < n_out; i++)
				if (c->out_idx[i] != i)
					memcpy(c->x + (size_t)i * E,
					       c->x + (size_t)c->out_idx[i] * E,
					       (size_t)E * sizeof(float));
			n = n_out;
			if (n == 0)
				break;
			ready = veil_quant_act_type(L->gate.type);
			na = (struct norm_arg){c, NULL, L->ffn_norm, ready};
		} else {
			ready = veil_quant_act_type(L->gate.type);
			na = (struct norm_arg){c, c->tmp, L->ffn_norm, ready};
		}
		if (n > FFN_SLICE) /* each slice converts its own rows */
			na.at = ready = VEIL_DT_F32;
		run_tokens(c, n, norm_fn, &na);
		for (int32_t t0 = 0; t0 < n; t0 += FFN_SLICE) {
			int32_t nt = VEIL_MIN(FFN_SLICE, n - t0);
			float *dy = c->tmp + (size_t)t0 * E;

			matmuls(c, c->xb + (size_t)t0 * E, E, nt, gu, gu_y, 2,
				n > FFN_SLICE ? VEIL_DT_COUNT : ready);
			sa = (struct swiglu_arg){c, veil_quant_act_type(down->type)};
			run_tokens(c, nt, swiglu_fn, &sa);
			matmuls(c, c->fg, hp->n_ff, nt, &down, &dy, 1,
				veil_quant_act_type(down->type));
		}
	}
	if (n_out > 0) {
		const struct wmat *ow = &m->output;
		struct norm_arg na;

		ready = veil_quant_act_type(ow->type);
		na = (struct norm_arg){c, c->tmp, m->out_norm, ready};
		run_tokens(c, n_out, norm_fn, &na);
		matmuls(c, c->xb, E, n_out, &ow, &c->logits, 1, ready);
	}
	c->n_logits = n_out;
	c->b = NULL;
	return 0;
}
