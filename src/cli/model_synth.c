/* veil model synth: a synthetic llama-architecture GGUF with real shapes, the
 * real SmolLM2 tokenizer and deterministic pseudo-random weights.
 *
 * A C reimplementation of ../shared/tools/synth_gguf.py: for the same preset,
 * tokenizer and seed, `--type f16` (and f32) writes the byte-identical file.
 * The weights are SHAKE-256("<seed>/<tensor name>") output read as
 * little-endian F16, with the high byte of each value mapped through a
 * 256-entry table so that the values follow a piecewise-uniform
 * approximation of N(0, 0.02); RMS-norm weights are 1.0 (F32); embeddings
 * are tied.  q8_0/q4_0 write the F16 model to a temporary file and quantize
 * it exactly as `veil model quantize` does.  Nothing here is a trained
 * model: it generates gibberish, and exists for loaders, kernels and
 * benchmarks at realistic sizes. */
#include "cli.h"
#include "quantize.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "veil/base.h"
#include "veil/gguf.h"
#include "veil/quant.h"

#define SYNTH_STD 0.02
#define SYNTH_SEED "synth-gguf-v1"
#define SYNTH_ALIGN 32u

/* llama_ftype of an unquantized file */
#define FTYPE_ALL_F32 0u
#define FTYPE_MOSTLY_F16 1u

static const char CHAT_TEMPLATE[] =
	"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
	"{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
	"{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
	"{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

struct preset {
	const char *id, *name, *size_label;
	uint32_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_ctx;
	float rope_theta, rms_eps;
};

static const struct preset PRESETS[] = {
	/* HuggingFaceTB/SmolLM2-135M config.json */
	{"smollm2-135m", "SmolLM2-135M shape, synthetic random weights", "135M",
	 30, 576, 9, 3, 1536, 8192, 100000.0f, 1e-5f},
	/* meta-llama/Llama-3.2-1B shapes with SmolLM2's vocabulary, no rope
	 * scaling tensor */
	{"llama3.2-1b", "Llama-3.2-1B shape with SmolLM2 vocab, synthetic random weights",
	 "1.1B", 16, 2048, 32, 8, 8192, 131072, 500000.0f, 1e-5f},
	{"tiny", "tiny llama, synthetic random weights", "3M",
	 2, 64, 4, 2, 128, 512, 10000.0f, 1e-5f},
};

/* ---- the F16 high-byte table ------------------------------------------------ */

/* Wichura, AS241 (1988), the PPND16 rational approximations of the normal
 * quantile, in the evaluation order of CPython's statistics module so the
 * table (and hence the file) matches the Python tool exactly. */
static double norm_inv_cdf(double p, double sigma)
{
	double q = p - 0.5, r, num, den, x;

	if (fabs(q) <= 0.425) {
		r = 0.180625 - q * q;
		num = (((((((2.5090809287301226727e+3 * r +
			     3.3430575583588128105e+4) * r +
			    6.7265770927008700853e+4) * r +
			   4.5921953931549871457e+4) * r +
			  1.3731693765509461125e+4) * r +
			 1.9715909503065514427e+3) * r +
			1.3314166789178437745e+2) * r +
		       3.3871328727963666080e+0) * q;
		den = (((((((5.2264952788528545610e+3 * r +
			     2.8729085735721942674e+4) * r +
			    3.9307895800092710610e+4) * r +
			   2.1213794301586595867e+4) * r +
			  5.3941960214247511077e+3) * r +
			 6.8718700749205790830e+2) * r +
			4.2313330701600911252e+1) * r +
		       1.0);
		return 0.0 + (num / den) * sigma;
	}
	r = q <= 0.0 ? p : 1.0 - p;
	r = sqrt(-log(r));
	if (r <= 5.0) {
		r = r - 1.6;
		num = (((((((7.74545014278341407640e-4 * r +
			     2.27238449892691845833e-2) * r +
			    2.41780725177450611770e-1) * r +
			   1.27045825245236838258e+0) * r +
			  3.64784832476320460504e+0) * r +
			 5.76949722146069140550e+0) * r +
			4.63033784615654529590e+0) * r +
		       1.42343711074968357734e+0);
		den = (((((((1.05075007164441684324e-9 * r +
			     5.47593808499534494600e-4) * r +
			    1.51986665636164571966e-2) * r +
			   1.48103976427480074590e-1) * r +
			  6.89767334985100004550e-1) * r +
			 1.67638483018380384940e+0) * r +
			2.05319162663775882187e+0) * r +
		       1.0);
	} else {
		r = r - 5.0;
		num = (((((((2.01033439929228813265e-7 * r +
			     2.71155556874348757815e-5) * r +
			    1.24266094738807843860e-3) * r +
			   2.65321895265761230930e-2) * r +
			  2.96560571828504891230e-1) * r +
			 1.78482653991729133580e+0) * r +
			5.46378491116411436990e+0) * r +
		       6.65790464350110377720e+0);
		den = (((((((2.04426310338993978564e-15 * r +
			     1.42151175831644588870e-7) * r +
			    1.84631831751005468180e-5) * r +
			   7.86869131145613259100e-4) * r +
			  1.48753612908506148525e-2) * r +
			 1.36929880922735805310e-1) * r +
			5.99832206555887937690e-1) * r +
		       1.0);
	}
	x = num / den;
	if (q < 0.0)
		x = -x;
	return 0.0 + x * sigma;
}

/* cell = (biased exponent e 0..30) << 2 | top two mantissa bits: the
 * magnitudes [lo, hi) an F16 with that high byte (sign aside) can take. */
static void cell_bounds(int cell, double *lo, double *hi)
{
	int e = cell >> 2, q = cell & 3;

	if (e == 0) {
		*lo = q * 256 * ldexp(1.0, -24);
		*hi = (q + 1) * 256 * ldexp(1.0, -24);
	} else {
		double base = ldexp(1.0, e - 15);
		*lo = base * (1 + q / 4.0);
		*hi = base * (1 + (q + 1) / 4.0);
	}
}

static int cell_of(double x)
{
	for (int c = 0; c < 31 * 4; c++) {
		double lo, hi;
		cell_bounds(c, &lo, &hi);
		if (lo <= x && x < hi)
			return c;
	}
	return 30 * 4 + 3;
}

/* Byte j of the upper half-normal's 128 quantiles -> its cell; returns the
 * achieved standard deviation. */
static double make_table(double std, uint8_t table[256])
{
	int cells[128];
	double var = 0.0;

	for (int j = 0; j < 128; j++) {
		double u = (j + 0.5) / 128.0;
		cells[j] = cell_of(norm_inv_cdf(0.5 + u / 2.0, std));
	}
	for (int i = 0; i < 256; i++)
		table[i] = (uint8_t)(((i >> 7) << 7) | cells[i & 127]);
	for (int j = 0; j < 128; j++) {
		double lo, hi;
		cell_bounds(cells[j], &lo, &hi);
		var += (lo * lo + lo * hi + hi * hi) / 3.0;
	}
	return sqrt(var / 128.0);
}

/* The quantile map under/overshoots slightly; one correction of the nominal
 * std brings the achieved std close to the target. */
static void tuned_table(double target, uint8_t table[256])
{
	double got = make_table(target, table);
	make_table(target * target / got, table);
}

static int random_f16(const char *seed, const char *name, size_t n,
		      const uint8_t table[256], uint8_t *out)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char label[512];
	int rc = 0;

	int len = snprintf(label, sizeof(label), "%s/%s", seed, name);
	if (!ctx)
		return VEIL_ENOMEM;
	if (len < 0 || (size_t)len >= sizeof(label) ||
	    EVP_DigestInit_ex(ctx, EVP_shake256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, label, (size_t)len) != 1 ||
	    EVP_DigestFinalXOF(ctx, out, 2 * n) != 1)
		rc = veil_errf(VEIL_EINTERNAL, "SHAKE-256 for %s failed", name);
	EVP_MD_CTX_free(ctx);
	if (rc == 0)
		for (size_t i = 0; i < n; i++)
			out[2 * i + 1] = table[out[2 * i + 1]];
	return rc;
}

/* ---- tokenizer.json ----------------------------------------------------------- */

struct tok {
	json_t *root;
	struct veil_gguf_str *tokens;   /* point into root */
	int32_t *types;
	struct veil_gguf_str *merges;   /* joined merges are heap copies */
	char **merge_copies;
	size_t n, n_merges;
};

static void tok_free(struct tok *t)
{
	for (size_t i = 0; t->merge_copies && i < t->n_merges; i++)
		free(t->merge_copies[i]);
	free(t->merge_copies);
	free(t->merges);
	free(t->types);
	free(t->tokens);
	json_decref(t->root);
	memset(t, 0, sizeof(*t));
}

/* As synth_gguf.py load_tokenizer(): tokens in id order from model.vocab,
 * overridden by added_tokens; type 3 (CONTROL) for special added tokens and
 * 1 (NORMAL) otherwise; merges as "a b" strings. */
static int tok_load(const char *path, struct tok *t)
{
	json_error_t jerr;
	json_t *vocab, *merges, *added, *model;
	const char *key;
	json_t *val;

	memset(t, 0, sizeof(*t));
	t->root = json_load_file(path, JSON_ALLOW_NUL, &jerr);
	if (!t->root)
		return veil_errf(VEIL_EFORMAT, "%s: line %d: %s", path, jerr.line,
				 jerr.text);
	model = json_object_get(t->root, "model");
	vocab = json_object_get(model, "vocab");
	merges = json_object_get(model, "merges");
	added = json_object_get(t->root, "added_tokens");
	if (!json_is_object(vocab) || !json_is_array(merges))
		return veil_errf(VEIL_EFORMAT, "%s: model.vocab (object) and "
				 "model.merges (array) are required", path);
	if (added && !json_is_array(added))
		return veil_errf(VEIL_EFORMAT, "%s: added_tokens is not an array",
				 path);

	t->n = json_object_size(vocab);
	t->tokens = calloc(t->n ? t->n : 1, sizeof(*t->tokens));
	t->types = calloc(t->n ? t->n : 1, sizeof(*t->types));
	if (!t->tokens || !t->types)
		return VEIL_ENOMEM;
	json_object_foreach(vocab, key, val) {
		json_int_t id = json_integer_value(val);
		if (!json_is_integer(val) || id < 0 || (uint64_t)id >= t->n)
			return veil_errf(VEIL_EFORMAT, "%s: vocab id of a token is "
					 "outside 0..%zu", path, t->n - 1);
		t->tokens[id] = (struct veil_gguf_str){key, strlen(key)};
	}
	for (size_t i = 0; i < json_array_size(added); i++) {
		json_t *a = json_array_get(added, i);
		json_t *id = json_object_get(a, "id");
		json_t *content = json_object_get(a, "content");
		if (!json_is_integer(id) || !json_is_string(content))
			return veil_errf(VEIL_EFORMAT, "%s: added_tokens[%zu] needs "
					 "id and content", path, i);
		json_int_t v = json_integer_value(id);
		if (v < 0 || (uint64_t)v >= t->n)
			return veil_errf(VEIL_EFORMAT, "%s: added token %lld outside "
					 "vocab", path, (long long)v);
		t->tokens[v] = (struct veil_gguf_str){json_string_value(content),
						      json_string_length(content)};
	}
	for (size_t i = 0; i < t->n; i++) {
		if (!t->tokens[i].p)
			return veil_errf(VEIL_EFORMAT, "%s: vocab ids are not "
					 "contiguous (no token %zu)", path, i);
		t->types[i] = 1;
	}
	for (size_t i = 0; i < json_array_size(added); i++) {
		json_t *a = json_array_get(added, i);
		if (json_is_true(json_object_get(a, "special")))
			t->types[json_integer_value(json_object_get(a, "id"))] = 3;
	}

	t->n_merges = json_array_size(merges);
	t->merges = calloc(t->n_merges ? t->n_merges : 1, sizeof(*t->merges));
	t->merge_copies = calloc(t->n_merges ? t->n_merges : 1, sizeof(char *));
	if (!t->merges || !t->merge_copies)
		return VEIL_ENOMEM;
	for (size_t i = 0; i < t->n_merges; i++) {
		json_t *m = json_array_get(merges, i);
		if (json_is_string(m)) {
			t->merges[i] = (struct veil_gguf_str){json_string_value(m),
							      json_string_length(m)};
			continue;
		}
		/* newer tokenizers: ["a", "b"] -> "a b" */
		struct veil_buf b = VEIL_BUF_INIT(1u << 20);
		for (size_t k = 0; json_is_array(m) && k < json_array_size(m); k++) {
			json_t *part = json_array_get(m, k);
			if (!json_is_string(part) ||
			    (k && veil_buf_append(&b, " ", 1) < 0) ||
			    veil_buf_append(&b, json_string_value(part),
					    json_string_length(part)) < 0) {
				veil_buf_free(&b);
				return veil_errf(VEIL_EFORMAT, "%s: merges[%zu] is "
						 "not a string or string pair", path, i);
			}
		}
		if (!b.data && veil_buf_append(&b, "", 0) < 0)
			return VEIL_ENOMEM;
		size_t len = b.len;
		if (!json_is_array(m) || !(t->merge_copies[i] =
					   (char *)veil_buf_steal(&b, &len))) {
			veil_buf_free(&b);
			return veil_errf(VEIL_EFORMAT, "%s: merges[%zu] is not a "
					 "string or string pair", path, i);
		}
		t->merges[i] = (struct veil_gguf_str){t->merge_copies[i], len};
	}
	return 0;
}

/* ---- the file ---------------------------------------------------------------- */

/* Python's repr() of a str, for the description (ASCII escapes only; other
 * bytes are passed through, as repr keeps printable non-ASCII text). */
static void py_repr(const char *s, char *out, size_t cap)
{
	char q = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
	size_t o = 0;

#define PUT(c) do { if (o + 1 < cap) out[o++] = (c); } while (0)
	PUT(q);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\\' || *p == (unsigned char)q) {
			PUT('\\');
			PUT((char)*p);
		} else if (*p == '\n') {
			PUT('\\'); PUT('n');
		} else if (*p == '\r') {
			PUT('\\'); PUT('r');
		} else if (*p == '\t') {
			PUT('\\'); PUT('t');
		} else if (*p < 0x20 || *p == 0x7f) {
			char hex[5];
			snprintf(hex, sizeof(hex), "\\x%02x", *p);
			for (int k = 0; k < 4; k++)
				PUT(hex[k]);
		} else {
			PUT((char)*p);
		}
	}
	PUT(q);
#undef PUT
	out[o] = '\0';
}

struct synth_tensor {
	char name[64];
	uint32_t n_dims;
	uint64_t ne[2];
	bool is_norm;
};

static int add_kvs(struct veil_gguf_writer *w, const struct preset *p,
		   const struct tok *tk, const char *seed, uint32_t ftype)
{
	char desc[1024], rseed[600];
	int rc;

	py_repr(seed, rseed, sizeof(rseed));
	snprintf(desc, sizeof(desc),
		 "synthetic: deterministic pseudo-random weights (shake_256 seed "
		 "%s, std %.3g), NOT a trained model", rseed, SYNTH_STD);
#define S(k, v) veil_gguf_w_str(w, k, v, strlen(v))
	if ((rc = S("general.architecture", "llama")) < 0 ||
	    (rc = S("general.type", "model")) < 0 ||
	    (rc = S("general.name", p->name)) < 0 ||
	    (rc = S("general.size_label", p->size_label)) < 0 ||
	    (rc = S("general.license", "apache-2.0")) < 0 ||
	    (rc = S("general.description", desc)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "llama.block_count", p->n_layer)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "llama.context_length", p->n_ctx)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "llama.embedding_length", p->n_embd)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "llama.feed_forward_length", p->n_ff)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "llama.attention.head_count", p->n_head)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "llama.attention.head_count_kv",
				  p->n_head_kv)) < 0 ||
	    (rc = veil_gguf_w_f32(w, "llama.rope.freq_base", p->rope_theta)) < 0 ||
	    (rc = veil_gguf_w_f32(w, "llama.attention.layer_norm_rms_epsilon",
				  p->rms_eps)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "general.file_type", ftype)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "llama.vocab_size", (uint32_t)tk->n)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "llama.rope.dimension_count",
				  p->n_embd / p->n_head)) < 0 ||
	    (rc = veil_gguf_w_bool(w, "tokenizer.ggml.add_space_prefix", false)) < 0 ||
	    (rc = veil_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", false)) < 0 ||
	    (rc = S("tokenizer.ggml.model", "gpt2")) < 0 ||
	    (rc = S("tokenizer.ggml.pre", "smollm")) < 0 ||
	    (rc = veil_gguf_w_arr_str(w, "tokenizer.ggml.tokens", tk->tokens,
				      tk->n)) < 0 ||
	    (rc = veil_gguf_w_arr(w, "tokenizer.ggml.token_type", VEIL_GGUF_I32,
				  tk->types, tk->n)) < 0 ||
	    (rc = veil_gguf_w_arr_str(w, "tokenizer.ggml.merges", tk->merges,
				      tk->n_merges)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 1)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 2)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", 0)) < 0 ||
	    (rc = veil_gguf_w_u32(w, "tokenizer.ggml.padding_token_id", 2)) < 0 ||
	    (rc = S("tokenizer.chat_template", CHAT_TEMPLATE)) < 0)
		return rc;
#undef S
	return 0;
}

/* Tensors in convert_hf_to_gguf.py's order; ne[0] is the row length. */
static size_t list_tensors(const struct preset *p, uint64_t n_vocab,
			   struct synth_tensor *ts)
{
	static const char *const per_layer[] = {
		"attn_norm", "ffn_down", "ffn_gate", "ffn_up", "ffn_norm",
		"attn_k", "attn_output", "attn_q", "attn_v",
	};
	uint64_t kv = (uint64_t)(p->n_embd / p->n_head) * p->n_head_kv;
	size_t n = 0;

	ts[n++] = (struct synth_tensor){"token_embd.weight", 2,
					{p->n_embd, n_vocab}, false};
	for (uint32_t l = 0; l < p->n_layer; l++) {
		for (size_t k = 0; k < VEIL_ARRAY_LEN(per_layer); k++) {
			struct synth_tensor *t = &ts[n++];
			const char *w = per_layer[k];
			snprintf(t->name, sizeof(t->name), "blk.%u.%s.weight", l, w);
			t->is_norm = strstr(w, "norm") != NULL;
			t->n_dims = t->is_norm ? 1 : 2;
			t->ne[0] = p->n_embd;
			t->ne[1] = 1;
			if (!strcmp(w, "ffn_down")) {
				t->ne[0] = p->n_ff;
				t->ne[1] = p->n_embd;
			} else if (!strcmp(w, "ffn_gate") || !strcmp(w, "ffn_up")) {
				t->ne[1] = p->n_ff;
			} else if (!strcmp(w, "attn_k") || !strcmp(w, "attn_v")) {
				t->ne[1] = kv;
			} else if (!t->is_norm) {
				t->ne[1] = p->n_embd;
			}
		}
	}
	ts[n++] = (struct synth_tensor){"output_norm.weight", 1,
					{p->n_embd, 1}, true};
	return n;
}

/* Writes the F16 (or F32) model to f (flushed, not closed). */
static int synth_write(const struct preset *p, const struct tok *tk,
		       const char *seed, bool f32, FILE *f)
{
	struct veil_gguf_writer *w = NULL;
	struct synth_tensor *ts = NULL;
	uint8_t *buf = NULL, table[256];
	float *fbuf = NULL;
	int rc;

	tuned_table(SYNTH_STD, table);
	ts = calloc(2 + 9 * (size_t)p->n_layer, sizeof(*ts));
	if (!ts) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	size_t nt = list_tensors(p, tk->n, ts);

	if ((rc = veil_gguf_writer_new(&w, SYNTH_ALIGN)) < 0 ||
	    (rc = add_kvs(w, p, tk, seed, f32 ? FTYPE_ALL_F32 : FTYPE_MOSTLY_F16)) < 0)
		goto out;
	size_t max_elems = 0;
	for (size_t i = 0; i < nt; i++) {
		enum veil_dtype t = ts[i].is_norm ? VEIL_DT_F32
				    : (f32 ? VEIL_DT_F32 : VEIL_DT_F16);
		if ((rc = veil_gguf_w_tensor(w, ts[i].name, t, ts[i].n_dims,
					     ts[i].ne)) < 0)
			goto out;
		max_elems = VEIL_MAX(max_elems, (size_t)(ts[i].ne[0] * ts[i].ne[1]));
	}
	buf = malloc(2 * max_elems);
	fbuf = malloc(sizeof(float) * max_elems);
	if (!buf || !fbuf) {
		rc = VEIL_ENOMEM;
		goto out;
	}

	if ((rc = veil_gguf_w_header(w, f)) < 0)
		goto out;
	for (size_t i = 0; i < nt; i++) {
		size_t ne = (size_t)(ts[i].ne[0] * ts[i].ne[1]);
		if (ts[i].is_norm) {
			for (size_t k = 0; k < ne; k++)
				fbuf[k] = 1.0f;
			rc = veil_gguf_w_data(w, f, fbuf, ne * sizeof(float));
		} else {
			if ((rc = random_f16(seed, ts[i].name, ne, table, buf)) < 0)
				goto out;
			if (f32) {
				for (size_t k = 0; k < ne; k++) {
					uint16_t h = (uint16_t)(buf[2 * k] |
								(buf[2 * k + 1] << 8));
					fbuf[k] = veil_fp16_to_fp32(h);
				}
				rc = veil_gguf_w_data(w, f, fbuf, ne * sizeof(float));
			} else {
				rc = veil_gguf_w_data(w, f, buf, 2 * ne);
			}
		}
		if (rc < 0)
			goto out;
	}
	if (fflush(f) != 0 || ferror(f)) {
		rc = veil_errf(VEIL_EIO, "synth: write failed");
		goto out;
	}
	rc = 0;
out:
	free(fbuf);
	free(buf);
	free(ts);
	veil_gguf_writer_free(w);
	return rc;
}

/* Writes the model to path via path.tmp, renamed into place when complete. */
static int synth_to_file(const struct preset *p, const struct tok *tk,
			 const char *seed, bool f32, const char *path)
{
	size_t n = strlen(path);
	char *tmp = malloc(n + 5);
	FILE *f = NULL;
	int rc;

	if (!tmp)
		return VEIL_ENOMEM;
	memcpy(tmp, path, n);
	memcpy(tmp + n, ".tmp", 5);
	if (!(f = fopen(tmp, "wb"))) {
		rc = veil_errf(VEIL_EIO, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	setvbuf(f, NULL, _IOFBF, 1 << 20);
	rc = synth_write(p, tk, seed, f32, f);
	if (fclose(f) != 0 && rc == 0)
		rc = veil_errf(VEIL_EIO, "%s: close failed", tmp);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = veil_errf(VEIL_EIO, "rename to %s: %s", path, strerror(errno));
	if (rc < 0)
		unlink(tmp);
out:
	free(tmp);
	return rc;
}

/* F16 first, then exactly what `veil model quantize` does.  The F16 model
 * goes to an anonymous in-memory file when the kernel offers one (a 1B
 * model is 2.4 GB that would otherwise hit the disk twice), else to a
 * temporary file next to the output. */
static int synth_quantized(const struct preset *p, const struct tok *tk,
			   const char *seed, struct veil_qz_opts *qo,
			   const char *path)
{
	char fdpath[64];
	int fd = memfd_create("veil-synth-f16", MFD_CLOEXEC);
	int rc;

	qo->quiet = true;
	if (fd < 0) {
		size_t n = strlen(path);
		char *tmp = malloc(n + 10);
		if (!tmp)
			return VEIL_ENOMEM;
		memcpy(tmp, path, n);
		memcpy(tmp + n, ".f16.gguf", 10);
		rc = synth_to_file(p, tk, seed, false, tmp);
		if (rc == 0)
			rc = veil_cli_quantize_file(tmp, path, qo);
		unlink(tmp);
		free(tmp);
		return rc;
	}
	FILE *f = fdopen(dup(fd), "wb");
	if (!f) {
		close(fd);
		return veil_errf(VEIL_EIO, "memfd: %s", strerror(errno));
	}
	setvbuf(f, NULL, _IOFBF, 1 << 20);
	rc = synth_write(p, tk, seed, false, f);
	if (fclose(f) != 0 && rc == 0)
		rc = veil_errf(VEIL_EIO, "memfd: close failed");
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
	if (rc == 0)
		rc = veil_cli_quantize_file(fdpath, path, qo);
	close(fd);
	return rc;
}

/* ---- the subcommand ------------------------------------------------------------ */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: veil model synth --preset tiny|smollm2-135m|llama3.2-1b\n"
		"                        --tokenizer tokenizer.json\n"
		"                        [--type f16|f32|q8_0|q4_0] [--pure]\n"
		"                        [--seed S] [-t N] -o OUT.gguf\n"
		"\n"
		"Writes a llama GGUF with the preset's real shapes, the tokenizer's\n"
		"vocabulary and deterministic pseudo-random weights (NOT a trained\n"
		"model).  f16 output is byte-identical to\n"
		"../shared/tools/synth_gguf.py; q8_0/q4_0 equal f16 followed by\n"
		"`veil model quantize` (--pure as there).  Default type f16, seed\n"
		"'" SYNTH_SEED "'.\n");
}

int veil_cli_model_synth(int argc, char **argv)
{
	const char *preset = NULL, *tokenizer = NULL, *type = "f16", *out = NULL;
	const char *seed = SYNTH_SEED;
	struct veil_qz_opts qo = {.type = VEIL_DT_F16};
	struct tok tk;
	int rc;

	if (veil_cli_wants_help(argc, argv)) {
		usage(stdout);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **dst = NULL;
		if (!strcmp(a, "--preset"))
			dst = &preset;
		else if (!strcmp(a, "--tokenizer"))
			dst = &tokenizer;
		else if (!strcmp(a, "--type"))
			dst = &type;
		else if (!strcmp(a, "--seed"))
			dst = &seed;
		else if (!strcmp(a, "-o") || !strcmp(a, "--out"))
			dst = &out;
		else if (!strcmp(a, "--pure")) {
			qo.pure = true;
			continue;
		} else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
			char *end;
			long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
			if (i + 1 >= argc || *end || v < 1 || v > 64) {
				fprintf(stderr, "veil model synth: %s needs a thread "
					"count 1..64\n", a);
				return 2;
			}
			qo.threads = (int)v;
			i++;
			continue;
		} else {
			fprintf(stderr, "veil model synth: unknown argument '%s'\n", a);
			usage(stderr);
			return 2;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "veil model synth: %s needs a value\n", a);
			return 2;
		}
		*dst = argv[++i];
	}
	if (!preset || !tokenizer || !out) {
		fprintf(stderr, "veil model synth: --preset, --tokenizer and -o are "
			"required\n");
		usage(stderr);
		return 2;
	}
	const struct preset *p = NULL;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(PRESETS); i++)
		if (!strcmp(preset, PRESETS[i].id))
			p = &PRESETS[i];
	if (!p) {
		fprintf(stderr, "veil model synth: unknown preset '%s' (tiny, "
			"smollm2-135m, llama3.2-1b)\n", preset);
		return 2;
	}
	bool f32 = !strcmp(type, "f32");
	if (!f32) {
		int t = veil_cli_quantize_type_parse(type);
		if (t != VEIL_DT_F16 && t != VEIL_DT_Q8_0 && t != VEIL_DT_Q4_0 &&
		    t != VEIL_DT_Q4_K && t != VEIL_DT_Q6_K) {
			fprintf(stderr, "veil model synth: unknown type '%s' (f16, "
				"f32, q8_0, q4_0)\n", type);
			return 2;
		}
		qo.type = (enum veil_dtype)t;
	}
	if (strlen(seed) > 400) {
		fprintf(stderr, "veil model synth: seed longer than 400 bytes\n");
		return 2;
	}

	veil_quant_init();
	uint64_t t0 = veil_now_ns();
	if ((rc = tok_load(tokenizer, &tk)) < 0) {
		veil_cli_error("synth: tokenizer", rc);
		tok_free(&tk);
		return 1;
	}
	if (f32 || qo.type == VEIL_DT_F16)
		rc = synth_to_file(p, &tk, seed, f32, out);
	else
		rc = synth_quantized(p, &tk, seed, &qo, out);
	tok_free(&tk);
	if (rc < 0) {
		veil_cli_error("synth", rc);
		return 1;
	}
	fprintf(stderr, "veil: wrote %s (%s, %s%s) in %.1f s\n", out, p->id, type,
		qo.pure ? " pure" : "", (double)(veil_now_ns() - t0) / 1e9);
	return 0;
}
