/* veil model quantize IN OUT TYPE [--pure] [-t N]
 *
 * Reproduces llama-quantize (llama.cpp c392e509, Feb 2025, no importance
 * matrix) byte for byte for the types veil runs:
 *   - metadata: every key copied in order, except that general.file_type and
 *     general.quantization_version are removed and re-added at the end
 *     (gguf_set_val_* in ggml's C++ gguf removes a key and appends it);
 *     split.* keys are dropped;
 *   - tensors in the model loader's order (llama_model_loader's
 *     weight_name_comparer: tensors outside "blk.N." first, then by layer
 *     number, ties by name);
 *   - which tensors are quantized and to what: llama_model_quantize_impl and
 *     llama_tensor_get_type (src/llama-quant.cpp) for the ftypes below;
 *   - the numbers: each row converted to F32 and quantized with ggml's
 *     reference quantizers (veil_quantize_row).
 * Rows are split across threads; rows are independent, so the output does
 * not depend on the thread count. */
#include "cli.h"
#include "quantize.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "veil/base.h"
#include "veil/gguf.h"
#include "veil/quant.h"

#define GGML_QNT_VERSION 2u

/* llama_ftype values (llama.h); they are what general.file_type holds. */
enum {
	FTYPE_MOSTLY_F16 = 1,
	FTYPE_MOSTLY_Q4_0 = 2,
	FTYPE_MOSTLY_Q8_0 = 7,
	FTYPE_MOSTLY_Q4_K_M = 15,
	FTYPE_MOSTLY_Q6_K = 18,
};

int veil_cli_quantize_type_parse(const char *s)
{
	static const struct {
		const char *name;
		enum veil_dtype t;
	} names[] = {
		{"f16", VEIL_DT_F16},   {"q8_0", VEIL_DT_Q8_0},
		{"q4_0", VEIL_DT_Q4_0}, {"q4_k", VEIL_DT_Q4_K},
		{"q6_k", VEIL_DT_Q6_K},
	};

	for (size_t i = 0; i < VEIL_ARRAY_LEN(names); i++)
		if (!strcasecmp(s, names[i].name))
			return (int)names[i].t;
	return -1;
}

static uint32_t ftype_of(enum veil_dtype t)
{
	switch (t) {
	case VEIL_DT_F16: return FTYPE_MOSTLY_F16;
	case VEIL_DT_Q4_0: return FTYPE_MOSTLY_Q4_0;
	case VEIL_DT_Q8_0: return FTYPE_MOSTLY_Q8_0;
	case VEIL_DT_Q4_K: return FTYPE_MOSTLY_Q4_K_M;
	case VEIL_DT_Q6_K: return FTYPE_MOSTLY_Q6_K;
	default: return 0;
	}
}

static bool is_quantized(enum veil_dtype t)
{
	return t != VEIL_DT_F32 && t != VEIL_DT_F16 && t != VEIL_DT_BF16;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !memcmp(s + n - m, suffix, m);
}

/* ---- tensor order --------------------------------------------------------- */

static int layer_of(const char *name)
{
	int l = -1;

	if (sscanf(name, "blk.%d.", &l) != 1)
		l = -1;
	return l;
}

static int cmp_weight_names(const void *pa, const void *pb)
{
	const struct veil_gguf_tensor *a = *(const struct veil_gguf_tensor *const *)pa;
	const struct veil_gguf_tensor *b = *(const struct veil_gguf_tensor *const *)pb;
	int la = layer_of(a->name), lb = layer_of(b->name);

	if (la != lb)
		return la < lb ? -1 : 1;
	return strcmp(a->name, b->name);
}

/* ---- type choice (llama_tensor_get_type, the ftypes veil supports) ------- */

struct qz_state {
	uint32_t ftype;
	bool has_output;
	int n_attention_wv, i_attention_wv;
	int n_ffn_down, i_ffn_down;
};

/* llama-quant.cpp use_more_bits(): first and last eighth, and every third
 * layer in between. */
static bool use_more_bits(int i_layer, int n_layers)
{
	return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 ||
	       (i_layer - n_layers / 8) % 3 == 2;
}

/* A row that does not split into blocks of `want`: the tensor stays F16. */
static void warn_f16(const struct veil_gguf_tensor *t, enum veil_dtype want)
{
	fprintf(stderr,
		"veil: warning: tensor %s: row length %llu is not a multiple of "
		"the %s block size (%zu); kept as f16 (llama-quantize refuses "
		"this model)\n",
		t->name, (unsigned long long)t->ne[0], veil_dtype_name(want),
		veil_dtype_block_elems(want));
}

static int get_type(struct qz_state *qs, const struct veil_gguf_tensor *t,
		    enum veil_dtype def, enum veil_dtype *out)
{
	enum veil_dtype nt = def;
	const char *name = t->name;

	if (!strcmp(name, "output.weight") ||
	    (!qs->has_output && !strcmp(name, "token_embd.weight"))) {
		/* the output projection (or the tied embedding) gets more bits */
		if (t->ne[0] % VEIL_QK_K != 0)
			nt = VEIL_DT_Q8_0;
		else if (nt != VEIL_DT_Q8_0)
			nt = VEIL_DT_Q6_K;
	} else if (strstr(name, "attn_v.weight")) {
		if (qs->ftype == FTYPE_MOSTLY_Q4_K_M &&
		    use_more_bits(qs->i_attention_wv, qs->n_attention_wv))
			nt = VEIL_DT_Q6_K;
		qs->i_attention_wv++;
	} else if (strstr(name, "ffn_down")) {
		if (qs->ftype == FTYPE_MOSTLY_Q4_K_M &&
		    use_more_bits(qs->i_ffn_down, qs->n_ffn_down))
			nt = VEIL_DT_Q6_K;
		qs->i_ffn_down++;
	}

	/* rows that do not split into blocks: llama.cpp's fallbacks */
	size_t be = veil_dtype_block_elems(nt);
	if (be == 0 || t->ne[0] % be != 0) {
		switch (nt) {
		case VEIL_DT_Q6_K:
			nt = VEIL_DT_Q8_0;
			break;
		case VEIL_DT_Q4_K:
			return veil_errf(VEIL_ENOTSUP,
					 "tensor %s: row length %llu is not a "
					 "multiple of 256; llama.cpp falls back to "
					 "Q5_0 there, which veil does not support "
					 "(use --pure with q4_0/q8_0)",
					 name, (unsigned long long)t->ne[0]);
		default:
			/* llama-quantize refuses such a file; veil keeps the
			 * tensor as F16, llama.cpp's own last resort */
			nt = VEIL_DT_F16;
			warn_f16(t, def);
			break;
		}
		if (t->ne[0] % VEIL_QK8_0 != 0)
			nt = VEIL_DT_F16;
	}
	*out = nt;
	return 0;
}

/* llama_model_quantize_impl: which tensors are quantized at all. */
static bool wants_quantize(const struct veil_gguf_tensor *t)
{
	const char *n = t->name;

	return ends_with(n, "weight") && t->n_dims >= 2 &&
	       !strstr(n, "_norm.weight") && !strstr(n, "ffn_gate_inp.weight") &&
	       strcmp(n, "position_embd.weight") != 0 &&
	       strcmp(n, "token_types.weight") != 0 &&
	       !strstr(n, "ssm_conv1d.weight") && !strstr(n, "ssm_x.weight") &&
	       !strstr(n, "ssm_dt.weight") && !strstr(n, "attn_rel_b.weight");
}

/* ---- row conversion, threaded --------------------------------------------- */

struct qz_job {
	const struct veil_gguf_tensor *t;
	enum veil_dtype out_type;
	size_t in_row_bytes, out_row_bytes;
	uint8_t *dst;
	int64_t r0, r1;
	int rc;
};

static void *qz_worker(void *arg)
{
	struct qz_job *j = arg;
	int64_t ne0 = (int64_t)j->t->ne[0];
	float *row = malloc((size_t)ne0 * sizeof(float));

	if (!row) {
		j->rc = VEIL_ENOMEM;
		return NULL;
	}
	j->rc = 0;
	for (int64_t r = j->r0; r < j->r1 && j->rc == 0; r++) {
		const uint8_t *src = j->t->data + (size_t)r * j->in_row_bytes;
		j->rc = veil_dequantize_row(j->t->type, src, row, ne0);
		if (j->rc == 0)
			j->rc = veil_quantize_row(j->out_type, row,
						  j->dst + (size_t)r * j->out_row_bytes,
						  ne0);
	}
	free(row);
	return NULL;
}

static int convert_tensor(const struct veil_gguf_tensor *t, enum veil_dtype out,
			  uint8_t *dst, int threads)
{
	struct qz_job jobs[64];
	pthread_t tid[64];
	size_t in_rb, out_rb;
	int64_t nrows = 1;
	int rc;

	for (uint32_t d = 1; d < t->n_dims; d++)
		nrows *= (int64_t)t->ne[d];
	if ((rc = veil_dtype_row_bytes(t->type, t->ne[0], &in_rb)) < 0 ||
	    (rc = veil_dtype_row_bytes(out, t->ne[0], &out_rb)) < 0)
		return veil_errf(rc, "tensor %s: cannot convert %s rows of %llu to %s",
				 t->name, veil_dtype_name(t->type),
				 (unsigned long long)t->ne[0], veil_dtype_name(out));

	int n = threads < 1 ? 1 : (threads > 64 ? 64 : threads);
	/* not worth a thread for a few thousand elements */
	int64_t min_rows = VEIL_MAX(1, 16384 / (int64_t)t->ne[0]);
	while (n > 1 && nrows / n < min_rows)
		n--;

	int started = 0;
	for (int i = 0; i < n; i++) {
		jobs[i] = (struct qz_job){.t = t, .out_type = out,
					  .in_row_bytes = in_rb,
					  .out_row_bytes = out_rb, .dst = dst,
					  .r0 = nrows * i / n,
					  .r1 = nrows * (i + 1) / n, .rc = 0};
		if (i == 0)
			continue; /* the calling thread takes the first share */
		if (pthread_create(&tid[i], NULL, qz_worker, &jobs[i]) != 0) {
			jobs[i].rc = VEIL_ENOMEM;
			break;
		}
		started = i;
	}
	qz_worker(&jobs[0]);
	rc = jobs[0].rc;
	for (int i = 1; i <= started; i++) {
		pthread_join(tid[i], NULL);
		if (rc == 0)
			rc = jobs[i].rc;
	}
	if (rc == 0 && started != n - 1)
		rc = jobs[started + 1].rc;
	if (rc < 0)
		return veil_errf(rc, "tensor %s: conversion to %s failed", t->name,
				 veil_dtype_name(out));
	return 0;
}

/* ---- the file ------------------------------------------------------------- */

static bool skip_key(const struct veil_gguf_kv *kv)
{
	static const char *const drop[] = {
		"general.file_type", "general.quantization_version",
		"split.no", "split.count", "split.tensors.count",
	};

	for (size_t i = 0; i < VEIL_ARRAY_LEN(drop); i++)
		if (kv->key.len == strlen(drop[i]) &&
		    !memcmp(kv->key.p, drop[i], kv->key.len))
			return true;
	return false;
}

static uint32_t block_count(const struct veil_gguf *g, size_t n_ffn_down)
{
	struct veil_gguf_str arch;
	char key[128];
	uint32_t n;

	if (veil_gguf_get_str(g, "general.architecture", &arch) == 0 &&
	    arch.len < 64) {
		snprintf(key, sizeof(key), "%.*s.block_count", (int)arch.len,
			 arch.p);
		if (veil_gguf_get_u32(g, key, &n) == 0)
			return n;
	}
	return (uint32_t)n_ffn_down;
}

int veil_cli_quantize_file(const char *in_path, const char *out_path,
			   const struct veil_qz_opts *o)
{
	struct veil_gguf *g = NULL;
	struct veil_gguf_writer *w = NULL;
	const struct veil_gguf_tensor **order = NULL;
	enum veil_dtype *types = NULL;
	uint8_t *buf = NULL;
	size_t buf_cap = 0;
	FILE *f = NULL;
	char *tmp = NULL;
	int threads = o->threads > 0 ? o->threads : veil_cpu_count();
	uint64_t t0 = veil_now_ns();
	size_t in_bytes = 0, out_bytes = 0;
	int rc;

	uint32_t ftype = ftype_of(o->type);
	if (ftype == 0)
		return veil_errf(VEIL_EINVAL, "quantize: unsupported target type %s",
				 veil_dtype_name(o->type));
	if ((rc = veil_gguf_open(in_path, &g)) < 0)
		goto out;

	size_t nt = veil_gguf_n_tensors(g);
	order = calloc(nt ? nt : 1, sizeof(*order));
	types = calloc(nt ? nt : 1, sizeof(*types));
	if (!order || !types) {
		rc = VEIL_ENOMEM;
		goto out;
	}

	struct qz_state qs = {.ftype = ftype};
	size_t n_ffn_down = 0;
	for (size_t i = 0; i < nt; i++) {
		order[i] = veil_gguf_tensor_at(g, i);
		const char *name = order[i]->name;
		if (strstr(name, "attn_v.weight") || strstr(name, "attn_qkv.weight") ||
		    strstr(name, "attn_kv_b.weight"))
			qs.n_attention_wv++;
		else if (!strcmp(name, "output.weight"))
			qs.has_output = true;
		if (strstr(name, "ffn_down"))
			n_ffn_down++;
	}
	qs.n_ffn_down = (int)block_count(g, n_ffn_down);
	qsort(order, nt, sizeof(*order), cmp_weight_names);

	/* decide every tensor's type before writing anything */
	for (size_t i = 0; i < nt; i++) {
		const struct veil_gguf_tensor *t = order[i];
		enum veil_dtype nt_ = t->type;
		if (wants_quantize(t)) {
			nt_ = o->type;
			if (!o->pure && is_quantized(o->type) &&
			    (rc = get_type(&qs, t, o->type, &nt_)) < 0)
				goto out;
			if (o->pure && t->ne[0] % veil_dtype_block_elems(nt_) != 0) {
				warn_f16(t, nt_);
				nt_ = VEIL_DT_F16;
			}
			if (nt_ != t->type && is_quantized(t->type)) {
				rc = veil_errf(VEIL_ENOTSUP,
					       "tensor %s is already %s; requantizing "
					       "is not supported (start from F16/F32)",
					       t->name, veil_dtype_name(t->type));
				goto out;
			}
		}
		types[i] = nt_;
	}

	if ((rc = veil_gguf_writer_new(&w, veil_gguf_alignment(g))) < 0)
		goto out;
	for (size_t i = 0; i < veil_gguf_n_kv(g); i++) {
		const struct veil_gguf_kv *kv = veil_gguf_kv_at(g, i);
		if (!skip_key(kv) && (rc = veil_gguf_w_copy_kv(w, kv)) < 0)
			goto out;
	}
	if ((rc = veil_gguf_w_u32(w, "general.quantization_version",
				  GGML_QNT_VERSION)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "general.file_type", ftype)) < 0)
		goto out;
	for (size_t i = 0; i < nt; i++)
		if ((rc = veil_gguf_w_tensor(w, order[i]->name, types[i],
					     order[i]->n_dims, order[i]->ne)) < 0)
			goto out;

	size_t plen = strlen(out_path);
	tmp = malloc(plen + 5);
	if (!tmp) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	memcpy(tmp, out_path, plen);
	memcpy(tmp + plen, ".tmp", 5);
	f = fopen(tmp, "wb");
	if (!f) {
		rc = veil_errf(VEIL_EIO, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	setvbuf(f, NULL, _IOFBF, 1 << 20);
	if ((rc = veil_gguf_w_header(w, f)) < 0)
		goto out;

	for (size_t i = 0; i < nt; i++) {
		const struct veil_gguf_tensor *t = order[i];
		const void *data = t->data;
		size_t size = t->size;

		in_bytes += t->size;
		if (types[i] != t->type) {
			size_t rb;
			if ((rc = veil_dtype_row_bytes(types[i], t->ne[0], &rb)) < 0)
				goto out;
			uint64_t rows = 1;
			for (uint32_t d = 1; d < t->n_dims; d++)
				rows *= t->ne[d];
			if (veil_mul_ovf(rb, (size_t)rows, &size)) {
				rc = veil_errf(VEIL_EOVERFLOW, "tensor %s: size", t->name);
				goto out;
			}
			if (size > buf_cap) {
				uint8_t *nb = realloc(buf, size);
				if (!nb) {
					rc = VEIL_ENOMEM;
					goto out;
				}
				buf = nb;
				buf_cap = size;
			}
			if ((rc = convert_tensor(t, types[i], buf, threads)) < 0)
				goto out;
			data = buf;
		}
		out_bytes += size;
		if ((rc = veil_gguf_w_data(w, f, data, size)) < 0)
			goto out;
	}
	if (fflush(f) != 0 || ferror(f)) {
		rc = veil_errf(VEIL_EIO, "%s: write failed", tmp);
		goto out;
	}
	if (fclose(f) != 0) {
		f = NULL;
		rc = veil_errf(VEIL_EIO, "%s: close failed", tmp);
		goto out;
	}
	f = NULL;
	if (rename(tmp, out_path) != 0) {
		rc = veil_errf(VEIL_EIO, "rename to %s: %s", out_path,
			       strerror(errno));
		goto out;
	}
	if (!o->quiet)
		fprintf(stderr,
			"veil: quantized %zu tensors to %s%s: %.1f MiB -> %.1f MiB "
			"in %.2f s (%d threads)\n",
			nt, veil_dtype_name(o->type), o->pure ? " (pure)" : "",
			(double)in_bytes / 1048576.0, (double)out_bytes / 1048576.0,
			(double)(veil_now_ns() - t0) / 1e9, threads);
	rc = 0;
out:
	if (f) {
		fclose(f);
		unlink(tmp);
	}
	free(tmp);
	free(buf);
	free(types);
	free(order);
	veil_gguf_writer_free(w);
	veil_gguf_close(g);
	return rc;
}

/* ---- the subcommand -------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: veil model quantize IN.gguf OUT.gguf TYPE [--pure] [-t N] [-q]\n"
		"\n"
		"Converts a model's weights as llama-quantize does (same file, byte\n"
		"for byte, for q8_0 and q4_0 from an F16/F32 model).\n"
		"\n"
		"  TYPE        q8_0 | q4_0 | f16 | q6_k | q4_k (q4_k is llama.cpp's\n"
		"              Q4_K_M mix; it needs rows that are multiples of 256)\n"
		"  --pure      quantize every 2-D weight to TYPE (by default the\n"
		"              output / tied embedding gets Q6_K, or Q8_0 when its\n"
		"              rows are not a multiple of 256)\n"
		"  -t N        threads (default: one per CPU); the output does not\n"
		"              depend on it\n"
		"  -q          no summary line\n"
		"\n"
		"Norms and other 1-D tensors are kept.  A weight whose rows do not\n"
		"split into blocks of TYPE stays f16 (llama-quantize refuses such\n"
		"models, e.g. stories260K with its 172-wide ffn_down).\n");
}

int veil_cli_model_quantize(int argc, char **argv)
{
	const char *pos[3] = {NULL, NULL, NULL};
	int npos = 0;
	struct veil_qz_opts o = {.type = VEIL_DT_COUNT};

	if (veil_cli_wants_help(argc, argv)) {
		usage(stdout);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--pure")) {
			o.pure = true;
		} else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
			o.quiet = true;
		} else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
			char *end;
			if (i + 1 >= argc) {
				fprintf(stderr, "veil model quantize: %s needs a number\n", a);
				return 2;
			}
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 1 || v > 64) {
				fprintf(stderr, "veil model quantize: bad thread count '%s' "
					"(1..64)\n", argv[i]);
				return 2;
			}
			o.threads = (int)v;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "veil model quantize: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		} else if (npos < 3) {
			pos[npos++] = a;
		} else {
			fprintf(stderr, "veil model quantize: unexpected argument '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (npos < 3) {
		fprintf(stderr, "veil model quantize: expected IN OUT TYPE, got %d "
			"argument%s\n", npos, npos == 1 ? "" : "s");
		usage(stderr);
		return 2;
	}
	int t = veil_cli_quantize_type_parse(pos[2]);
	if (t < 0) {
		fprintf(stderr, "veil model quantize: unknown type '%s' (expected "
			"q8_0, q4_0, f16, q6_k or q4_k)\n", pos[2]);
		return 2;
	}
	o.type = (enum veil_dtype)t;
	if (!strcmp(pos[0], pos[1])) {
		fprintf(stderr, "veil model quantize: IN and OUT are the same file\n");
		return 2;
	}
	veil_quant_init();
	int rc = veil_cli_quantize_file(pos[0], pos[1], &o);
	if (rc < 0) {
		veil_cli_error("quantize", rc);
		return 1;
	}
	return 0;
}
