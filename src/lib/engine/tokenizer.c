/* Tokenizers from GGUF metadata, reproducing llama.cpp's src/llama-vocab.cpp
 * and src/unicode.cpp at commit c392e509 (Feb 2025):
 *   - load: llama_vocab::impl::load (defaults per model and pre-tokenizer,
 *     special ids, EOT/EOG/FIM auto-detection by text, the special-token
 *     cache sorted longest first, per-model strip attributes);
 *   - tokenizer_st_partition: special tokens cut out of the text first;
 *   - llm_tokenizer_spm_session: score-driven bigram merges, byte fallback;
 *   - llm_tokenizer_bpe_session: rank-driven merges over the GPT-2 byte
 *     mapping, words from the pre-tokenizer (unicode_regex_split: the
 *     hand-written gpt2/llama3 splitters and the std::regex ones, which we
 *     reproduce by hand for the regexes of the supported pre-tokenizers);
 *   - token_to_piece (its per-token cache, built with special = true).
 * Where llama.cpp leaves the result to unspecified container order (equal
 * length special tokens, several EOT candidates) we take the lowest id. */
#include "veil/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "unicode.h"

/* llama.h enum llama_token_attr (bit flags). */
enum {
	ATTR_UNDEFINED = 0,
	ATTR_UNKNOWN = 1 << 0,
	ATTR_UNUSED = 1 << 1,
	ATTR_NORMAL = 1 << 2,
	ATTR_CONTROL = 1 << 3,
	ATTR_USER_DEFINED = 1 << 4,
	ATTR_BYTE = 1 << 5,
	ATTR_LSTRIP = 1 << 7,
	ATTR_RSTRIP = 1 << 8,
};

/* Pre-tokenizers: the regex sets of llm_tokenizer_bpe. */
enum pre_type {
	PRE_SPM = 0,    /* no pre-tokenizer */
	PRE_DEFAULT,    /* BPE without (or with "default") tokenizer.ggml.pre */
	PRE_GPT2,
	PRE_LLAMA3,
	PRE_QWEN2,
	PRE_STARCODER,  /* also smollm */
};

#define TOK_NULL (-1)

/* String -> index map (open addressing over keys stored elsewhere). */
struct smap {
	uint32_t *slot;  /* index + 1; 0 = empty */
	size_t mask;
	const char *blob;
	const uint32_t *off;
	const uint32_t *len;
};

struct veil_tok {
	enum veil_tok_kind kind;
	enum pre_type pre;
	char pre_name[64];
	bool add_bos, add_eos, add_space_prefix, ignore_merges;

	int32_t n_vocab;
	char *text;             /* all token texts */
	uint32_t *tok_off, *tok_len;
	float *score;
	uint16_t *attr;
	uint8_t *type;          /* enum veil_tok_type */
	struct smap tok_map;

	char *merges;           /* BPE merge lines, "left right" */
	uint32_t *merge_off, *merge_len;
	size_t n_merges;
	struct smap merge_map;

	char *piece;            /* token_to_piece(special = true) cache */
	uint32_t *piece_off, *piece_len;
	size_t max_piece;       /* the longest piece, at least 1 */
	size_t max_tok_len;     /* the longest token text, at least 1 */
	uint16_t ascii_flags[128]; /* veil_uni_flags() of ASCII, its hot part */

	int32_t *special;       /* control / user-defined / unknown ids */
	size_t n_special;
	int32_t *eog;
	size_t n_eog;

	int32_t bos, eos, eot, eom, unk, sep, pad, mask;
	int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
};

/* ---- small helpers ----------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t ncap, bytes;
	void *np;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : 16;
	while (ncap < need) {
		if (veil_mul_ovf(ncap, 2, &ncap))
			return VEIL_EOVERFLOW;
	}
	if (veil_mul_ovf(ncap, elem, &bytes))
		return VEIL_EOVERFLOW;
	if (!(np = realloc(*p, bytes)))
		return VEIL_ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}

struct ivec {
	int32_t *v;
	size_t n, cap;
	size_t limit;           /* more ids than this: VEIL_ERANGE at once */
};

static int ivec_push(struct ivec *a, int32_t x)
{
	int rc;

	/* veil_tok_encode_max(): the text does not fit, stop here */
	if (a->n >= a->limit)
		return VEIL_ERANGE;
	if ((rc = grow((void **)&a->v, &a->cap, a->n + 1, sizeof(*a->v))) < 0)
		return rc;
	a->v[a->n++] = x;
	return 0;
}

struct zvec {
	size_t *v;
	size_t n, cap;
};

static int zvec_push(struct zvec *a, size_t x)
{
	int rc;

	if ((rc = grow((void **)&a->v, &a->cap, a->n + 1, sizeof(*a->v))) < 0)
		return rc;
	a->v[a->n++] = x;
	return 0;
}

struct bytes {
	uint8_t *p;
	size_t n, cap;
};

static int bytes_add(struct bytes *b, const void *p, size_t n)
{
	size_t need;
	int rc;

	if (veil_add_ovf(b->n, n, &need))
		return VEIL_EOVERFLOW;
	if ((rc = grow((void **)&b->p, &b->cap, need, 1)) < 0)
		return rc;
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n = need;
	return 0;
}

/* C-locale isspace(), as llama.cpp's strip attributes use it. */
static bool c_isspace(uint8_t c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static int smap_init(struct smap *m, size_t n, const char *blob,
		     const uint32_t *off, const uint32_t *len)
{
	size_t cap = 16;

	while (cap < n * 2) {
		if (veil_mul_ovf(cap, 2, &cap))
			return VEIL_EOVERFLOW;
	}
	if (!(m->slot = calloc(cap, sizeof(*m->slot))))
		return VEIL_ENOMEM;
	m->mask = cap - 1;
	m->blob = blob;
	m->off = off;
	m->len = len;
	return 0;
}

/* Index of key s, or -1. */
static int64_t smap_find(const struct smap *m, const char *s, size_t n)
{
	size_t i;

	if (!m->slot)
		return -1;
	for (i = hash_bytes(s, n) & m->mask; m->slot[i]; i = (i + 1) & m->mask) {
		uint32_t k = m->slot[i] - 1;

		if (m->len[k] == n && !memcmp(m->blob + m->off[k], s, n))
			return k;
	}
	return -1;
}

/* Adds index k under its own key; an existing key keeps its index unless
 * `replace` (std::unordered_map operator[] vs emplace). */
static void smap_put(struct smap *m, uint32_t k, bool replace)
{
	const char *s = m->blob + m->off[k];
	size_t n = m->len[k], i;

	for (i = hash_bytes(s, n) & m->mask; m->slot[i]; i = (i + 1) & m->mask) {
		uint32_t o = m->slot[i] - 1;

		if (m->len[o] == n && !memcmp(m->blob + m->off[o], s, n)) {
			if (replace)
				m->slot[i] = k + 1;
			return;
		}
	}
	m->slot[i] = k + 1;
}

static int32_t text_to_token(const struct veil_tok *t, const char *s, size_t n)
{
	return (int32_t)smap_find(&t->tok_map, s, n);
}

/* ---- load -------------------------------------------------------------- */

static bool str_is(struct veil_gguf_str s, const char *c)
{
	size_t n = strlen(c);

	return s.len == n && !memcmp(s.p, c, n);
}

static bool name_in(struct veil_gguf_str s, const char *const *list)
{
	for (; *list; list++)
		if (str_is(s, *list))
			return true;
	return false;
}

/* llama_vocab::impl::load's tokenizer_pre switch, for the supported set. */
static int pick_pre(struct veil_tok *t, bool have_pre, struct veil_gguf_str pre)
{
	static const char *const gpt2[] = {
		"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en",
		"jina-v2-es", "jina-v2-de", "jina-v2-code", "roberta-bpe", "mpt",
		"olmo", "jais", NULL};
	static const char *const llama3[] = {"llama3", "llama-v3", "llama-bpe",
					     "falcon3", NULL};
	static const char *const llama3_like[] = {"dbrx", "smaug-bpe", NULL};
	static const char *const qwen2[] = {"qwen2", "stablelm2", "megrez", NULL};
	static const char *const starcoder[] = {
		"starcoder", "refact", "command-r", "smollm", "codeshell",
		"exaone", "minerva-7b", NULL};

	if (!have_pre || str_is(pre, "default"))
		t->pre = PRE_DEFAULT;
	else if (name_in(pre, gpt2))
		t->pre = PRE_GPT2;
	else if (name_in(pre, llama3)) {
		t->pre = PRE_LLAMA3;
		t->ignore_merges = true;
		t->add_bos = true;
	} else if (name_in(pre, llama3_like))
		t->pre = PRE_LLAMA3;
	else if (name_in(pre, qwen2))
		t->pre = PRE_QWEN2;
	else if (name_in(pre, starcoder))
		t->pre = PRE_STARCODER;
	else
		return veil_errf(VEIL_ENOTSUP,
				 "tokenizer.ggml.pre: pre-tokenizer '%.*s' is not supported",
				 (int)VEIL_MIN(pre.len, 64), pre.p);
	if (have_pre) {
		size_t n = VEIL_MIN(pre.len, sizeof(t->pre_name) - 1);

		memcpy(t->pre_name, pre.p, n);
		t->pre_name[n] = 0;
	}
	return 0;
}

/* Optional key: ENOENT leaves *v alone, other errors propagate. */
static int opt_bool(const struct veil_gguf *g, const char *key, bool *v)
{
	int rc = veil_gguf_get_bool(g, key, v);

	return rc == VEIL_ENOENT ? 0 : rc;
}

static int opt_id(const struct veil_tok *t, const struct veil_gguf *g,
		  const char *key, int32_t *id)
{
	uint32_t v;
	int rc = veil_gguf_get_u32(g, key, &v);

	if (rc == VEIL_ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	/* llama.cpp keeps the default for an out-of-range id. */
	if (v < (uint32_t)t->n_vocab)
		*id = (int32_t)v;
	return 0;
}

static int load_tokens(struct veil_tok *t, const struct veil_gguf *g)
{
	const struct veil_gguf_kv *kv = veil_gguf_find(g, "tokenizer.ggml.tokens");
	const uint8_t *scores = NULL, *types = NULL;
	uint64_t n, ns = 0, nt = 0;
	struct bytes blob = {0};
	int rc;

	if (!kv || kv->type != VEIL_GGUF_ARR || kv->v.arr.type != VEIL_GGUF_STR)
		return veil_errf(VEIL_EFORMAT,
				 "tokenizer.ggml.tokens: missing or not an array of strings");
	n = kv->v.arr.n;
	if (n == 0 || n > INT32_MAX)
		return veil_errf(VEIL_EFORMAT, "tokenizer.ggml.tokens: %llu tokens",
				 (unsigned long long)n);
	rc = veil_gguf_get_arr(g, "tokenizer.ggml.scores", VEIL_GGUF_F32, &scores, &ns);
	if (rc < 0 && rc != VEIL_ENOENT)
		return rc;
	if (rc == 0 && ns < n)
		return veil_errf(VEIL_EFORMAT,
				 "tokenizer.ggml.scores: %llu entries for %llu tokens",
				 (unsigned long long)ns, (unsigned long long)n);
	rc = veil_gguf_get_arr(g, "tokenizer.ggml.token_type", VEIL_GGUF_I32, &types, &nt);
	if (rc < 0 && rc != VEIL_ENOENT)
		return rc;
	if (rc == 0 && nt < n)
		return veil_errf(VEIL_EFORMAT,
				 "tokenizer.ggml.token_type: %llu entries for %llu tokens",
				 (unsigned long long)nt, (unsigned long long)n);

	t->n_vocab = (int32_t)n;
	t->tok_off = calloc(n, sizeof(*t->tok_off));
	t->tok_len = calloc(n, sizeof(*t->tok_len));
	t->score = calloc(n, sizeof(*t->score));
	t->attr = calloc(n, sizeof(*t->attr));
	t->type = calloc(n, sizeof(*t->type));
	if (!t->tok_off || !t->tok_len || !t->score || !t->attr || !t->type)
		return VEIL_ENOMEM;

	for (uint64_t i = 0; i < n; i++) {
		struct veil_gguf_str s;
		char empty[32];
		const char *p;
		size_t len;

		if ((rc = veil_gguf_arr_str(kv, i, &s)) < 0)
			goto fail;
		p = s.p;
		len = (size_t)s.len;
		if (len == 0) {  /* llama.cpp renames empty tokens */
			len = (size_t)snprintf(empty, sizeof(empty), "[EMPTY_%u]",
					       (unsigned)i);
			p = empty;
		}
		if (blob.n > UINT32_MAX || len > UINT32_MAX - blob.n) {
			rc = veil_errf(VEIL_ERANGE, "tokenizer.ggml.tokens: texts exceed 4 GiB");
			goto fail;
		}
		t->tok_off[i] = (uint32_t)blob.n;
		t->tok_len[i] = (uint32_t)len;
		if ((rc = bytes_add(&blob, p, len)) < 0)
			goto fail;
		if (scores)
			memcpy(&t->score[i], scores + 4 * i, 4);
		t->attr[i] = ATTR_NORMAL;
		t->type[i] = VEIL_TOK_NORMAL;
		if (types) {
			int32_t ty;

			memcpy(&ty, types + 4 * i, 4);
			switch (ty) {
			case VEIL_TOK_UNKNOWN: t->attr[i] = ATTR_UNKNOWN; break;
			case VEIL_TOK_UNUSED: t->attr[i] = ATTR_UNUSED; break;
			case VEIL_TOK_NORMAL: t->attr[i] = ATTR_NORMAL; break;
			case VEIL_TOK_CONTROL: t->attr[i] = ATTR_CONTROL; break;
			case VEIL_TOK_USER_DEFINED: t->attr[i] = ATTR_USER_DEFINED; break;
			case VEIL_TOK_BYTE: t->attr[i] = ATTR_BYTE; break;
			default: ty = VEIL_TOK_UNDEFINED; t->attr[i] = ATTR_UNDEFINED; break;
			}
			t->type[i] = (uint8_t)ty;
		}
	}
	/* One byte more so an empty blob is still a valid pointer. */
	if ((rc = bytes_add(&blob, "", 1)) < 0)
		goto fail;
	t->text = (char *)blob.p;
	blob.p = NULL;
	if ((rc = smap_init(&t->tok_map, (size_t)n, t->text, t->tok_off, t->tok_len)) < 0)
		return rc;
	/* token_to_id[word] = i: a repeated text maps to its last id. */
	for (uint64_t i = 0; i < n; i++)
		smap_put(&t->tok_map, (uint32_t)i, true);
	return 0;
fail:
	free(blob.p);
	return rc;
}

static int load_merges(struct veil_tok *t, const struct veil_gguf *g)
{
	const struct veil_gguf_kv *kv = veil_gguf_find(g, "tokenizer.ggml.merges");
	struct bytes blob = {0};
	uint64_t n;
	int rc;

	if (!kv || kv->type != VEIL_GGUF_ARR || kv->v.arr.type != VEIL_GGUF_STR)
		return veil_errf(VEIL_EFORMAT,
				 "tokenizer.ggml.merges: missing or not an array of strings");
	n = kv->v.arr.n;
	if (n > INT32_MAX)
		return veil_errf(VEIL_EFORMAT, "tokenizer.ggml.merges: %llu merges",
				 (unsigned long long)n);
	t->n_merges = (size_t)n;
	t->merge_off = calloc(n ? n : 1, sizeof(*t->merge_off));
	t->merge_len = calloc(n ? n : 1, sizeof(*t->merge_len));
	if (!t->merge_off || !t->merge_len)
		return VEIL_ENOMEM;
	/* bpe_ranks is keyed by (first, second) split at the first space after
	 * position 0; the tokens looked up never contain a space, so keying by
	 * the whole "first second" line finds the same entries. */
	for (uint64_t i = 0; i < n; i++) {
		struct veil_gguf_str s;

		if ((rc = veil_gguf_arr_str(kv, i, &s)) < 0)
			goto fail;
		if (blob.n > UINT32_MAX || s.len > UINT32_MAX - blob.n) {
			rc = veil_errf(VEIL_ERANGE, "tokenizer.ggml.merges: texts exceed 4 GiB");
			goto fail;
		}
		t->merge_off[i] = (uint32_t)blob.n;
		t->merge_len[i] = (uint32_t)s.len;
		if ((rc = bytes_add(&blob, s.p, (size_t)s.len)) < 0)
			goto fail;
	}
	if ((rc = bytes_add(&blob, "", 1)) < 0)
		goto fail;
	t->merges = (char *)blob.p;
	blob.p = NULL;
	if ((rc = smap_init(&t->merge_map, (size_t)n, t->merges, t->merge_off,
			    t->merge_len)) < 0)
		return rc;
	for (uint64_t i = 0; i < n; i++)  /* emplace: the first rank wins */
		smap_put(&t->merge_map, (uint32_t)i, false);
	return 0;
fail:
	free(blob.p);
	return rc;
}

static void force_control(struct veil_tok *t, int32_t id)
{
	t->attr[id] = ATTR_CONTROL;
	t->type[id] = VEIL_TOK_CONTROL;
}

/* Lowest id whose text is one of `names`, or TOK_NULL. */
static int32_t find_any(const struct veil_tok *t, const char *const *names)
{
	int32_t best = TOK_NULL;

	for (; *names; names++) {
		int32_t id = veil_tok_find(t, *names, strlen(*names));

		if (id >= 0 && (best < 0 || id < best))
			best = id;
	}
	return best;
}

static void autodetect(struct veil_tok *t, int32_t *id, const char *const *names)
{
	if (*id != TOK_NULL)
		return;
	*id = find_any(t, names);
	if (*id != TOK_NULL && !(t->attr[*id] & ATTR_CONTROL))
		force_control(t, *id);
}

static int eog_add(struct veil_tok *t, int32_t id, size_t *cap)
{
	int rc;

	if (id == TOK_NULL || veil_tok_is_eog(t, id))
		return 0;
	if ((rc = grow((void **)&t->eog, cap, t->n_eog + 1, sizeof(*t->eog))) < 0)
		return rc;
	t->eog[t->n_eog++] = id;
	return 0;
}

static int special_tokens(struct veil_tok *t)
{
	static const char *const eot[] = {
		"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
		"<|endoftext|>", "<EOT>",
		"<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",
		NULL};
	static const char *const eom[] = {"<|eom_id|>", NULL};
	static const char *const fim_pre[] = {
		"<|fim_prefix|>", "<fim-prefix>",
		"<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>", NULL};
	static const char *const fim_suf[] = {
		"<|fim_suffix|>", "<fim-suffix>",
		"<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>", "<SUF>", NULL};
	static const char *const fim_mid[] = {
		"<|fim_middle|>", "<fim-middle>",
		"<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>", NULL};
	static const char *const fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<PAD>", NULL};
	static const char *const fim_rep[] = {"<|fim_repo|>", "<|repo_name|>",
					      "<fim-repo>", "<REPO>", NULL};
	static const char *const fim_sep[] = {"<|file_sep|>", NULL};
	static const char *const eog[] = {
		"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
		"<|endoftext|>", "<|eom_id|>", "<EOT>", NULL};
	size_t cap = 0;
	int rc;

	autodetect(t, &t->eot, eot);
	autodetect(t, &t->eom, eom);
	autodetect(t, &t->fim_pre, fim_pre);
	autodetect(t, &t->fim_suf, fim_suf);
	autodetect(t, &t->fim_mid, fim_mid);
	autodetect(t, &t->fim_pad, fim_pad);
	autodetect(t, &t->fim_rep, fim_rep);
	autodetect(t, &t->fim_sep, fim_sep);

	if ((rc = eog_add(t, t->fim_pad, &cap)) < 0 ||
	    (rc = eog_add(t, t->fim_rep, &cap)) < 0 ||
	    (rc = eog_add(t, t->fim_sep, &cap)) < 0)
		return rc;
	for (const char *const *p = eog; *p; p++) {
		int32_t id = veil_tok_find(t, *p, strlen(*p));

		if (id < 0)
			continue;
		if ((rc = eog_add(t, id, &cap)) < 0)
			return rc;
		if (!(t->attr[id] & ATTR_CONTROL))
			force_control(t, id);
	}
	if ((rc = eog_add(t, t->eos, &cap)) < 0 ||
	    (rc = eog_add(t, t->eot, &cap)) < 0 ||
	    (rc = eog_add(t, t->eom, &cap)) < 0)
		return rc;
	return 0;
}

static int cmp_special(const void *a, const void *b, void *ctx)
{
	const struct veil_tok *t = ctx;
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	uint32_t lx = t->tok_len[x], ly = t->tok_len[y];

	if (lx != ly)
		return lx > ly ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int special_cache(struct veil_tok *t)
{
	size_t n = 0;

	for (int32_t i = 0; i < t->n_vocab; i++)
		if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))
			n++;
	if (!(t->special = calloc(n ? n : 1, sizeof(*t->special))))
		return VEIL_ENOMEM;
	for (int32_t i = 0; i < t->n_vocab; i++)
		if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))
			t->special[t->n_special++] = i;
	/* Longest first; llama.cpp's std::sort leaves ties unordered. */
	qsort_r(t->special, t->n_special, sizeof(*t->special), cmp_special, t);
	return 0;
}

/* Per-model attributes set by name in llama_vocab::impl::load. */
static int strip_attrs(struct veil_tok *t, const struct veil_gguf *g)
{
	struct veil_gguf_str name = {"", 0}, pre = {"", 0};
	char lower[256];
	size_t n;
	int rc;

	if ((rc = veil_gguf_get_str(g, "general.name", &name)) < 0 && rc != VEIL_ENOENT)
		return rc;
	if ((rc = veil_gguf_get_str(g, "tokenizer.ggml.pre", &pre)) < 0 && rc != VEIL_ENOENT)
		return rc;
	n = VEIL_MIN((size_t)name.len, sizeof(lower) - 1);
	for (size_t i = 0; i < n; i++) {
		char c = name.p[i];

		lower[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
	}
	lower[n] = 0;

	if (memmem(pre.p, pre.len, "jina-v2-de", 10) ||
	    memmem(pre.p, pre.len, "jina-v2-es", 10) ||
	    memmem(pre.p, pre.len, "jina-v2-code", 12)) {
		int32_t id = veil_tok_find(t, "<mask>", 6);

		if (id >= 0)
			t->attr[id] |= ATTR_LSTRIP;
	} else if (strstr(lower, "phi-3") || strstr(lower, "phi3")) {
		static const char *const off[] = {"<unk>", "<s>", "<|endoftext|>"};
		int32_t id;

		for (size_t i = 0; i < t->n_special; i++)
			t->attr[t->special[i]] |= ATTR_RSTRIP;
		if ((id = veil_tok_find(t, "</s>", 4)) >= 0)
			t->attr[id] |= ATTR_RSTRIP;
		for (size_t i = 0; i < VEIL_ARRAY_LEN(off); i++)
			if ((id = veil_tok_find(t, off[i], strlen(off[i]))) >= 0)
				t->attr[id] &= (uint16_t)~ATTR_RSTRIP;
	}
	return 0;
}

/* token_to_piece(special = true) for one token, appended to b. */
static int render_piece(const struct veil_tok *t, int32_t id, struct bytes *b)
{
	const char *s = t->text + t->tok_off[id];
	size_t n = t->tok_len[id];
	uint16_t a = t->attr[id];
	int rc = 0;

	if (a & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED))
		return bytes_add(b, s, n);
	if (t->kind == VEIL_TOK_SPM) {
		if (a & ATTR_NORMAL) {
			for (size_t i = 0; i < n && rc == 0; i++) {
				if (i + 2 < n && !memcmp(s + i, "\xe2\x96\x81", 3)) {
					rc = bytes_add(b, " ", 1);
					i += 2;
				} else {
					rc = bytes_add(b, s + i, 1);
				}
			}
			return rc;
		}
		if (a & ATTR_BYTE) {
			/* strtol(text.substr(3, 2), 16) */
			unsigned v = 0;

			for (size_t i = 3; i < n && i < 5; i++) {
				char c = s[i];
				unsigned d;

				if (c >= '0' && c <= '9')
					d = (unsigned)(c - '0');
				else if (c >= 'a' && c <= 'f')
					d = (unsigned)(c - 'a' + 10);
				else if (c >= 'A' && c <= 'F')
					d = (unsigned)(c - 'A' + 10);
				else
					break;
				v = v * 16 + d;
			}
			uint8_t byte = (uint8_t)v;

			return bytes_add(b, &byte, 1);
		}
		return 0;
	}
	if (a & ATTR_NORMAL) {
		/* llama_decode_text: byte-level code points back to bytes. */
		for (size_t i = 0; i < n && rc == 0;) {
			size_t adv;
			uint32_t cpt = veil_uni_decode((const uint8_t *)s + i, n - i, &adv);
			int byte = veil_uni_cpt_to_byte(cpt);

			i += adv;
			if (byte >= 0) {
				uint8_t c = (uint8_t)byte;

				rc = bytes_add(b, &c, 1);
			} else {
				uint8_t u[4];
				size_t un = veil_uni_encode(cpt, u);
				char hex[3];

				rc = bytes_add(b, "[UNK_BYTE_0x", 12);
				for (size_t k = 0; k < un && rc == 0; k++) {
					snprintf(hex, sizeof(hex), "%02x", u[k]);
					rc = bytes_add(b, hex, 2);
				}
				if (rc == 0)
					rc = bytes_add(b, s, n);
				if (rc == 0)
					rc = bytes_add(b, "]", 1);
			}
		}
	}
	return rc;
}

static int piece_cache(struct veil_tok *t)
{
	struct bytes blob = {0};
	int rc;

	t->piece_off = calloc((size_t)t->n_vocab, sizeof(*t->piece_off));
	t->piece_len = calloc((size_t)t->n_vocab, sizeof(*t->piece_len));
	if (!t->piece_off || !t->piece_len)
		return VEIL_ENOMEM;
	for (int32_t i = 0; i < t->n_vocab; i++) {
		size_t before = blob.n;

		if ((rc = render_piece(t, i, &blob)) < 0)
			goto fail;
		if (blob.n > UINT32_MAX) {
			rc = veil_errf(VEIL_ERANGE, "tokenizer: pieces exceed 4 GiB");
			goto fail;
		}
		t->piece_off[i] = (uint32_t)before;
		t->piece_len[i] = (uint32_t)(blob.n - before);
		t->max_piece = VEIL_MAX(t->max_piece, blob.n - before);
		t->max_tok_len = VEIL_MAX(t->max_tok_len, (size_t)t->tok_len[i]);
	}
	t->max_tok_len = VEIL_MAX(t->max_tok_len, (size_t)1);
	t->max_piece = VEIL_MAX(t->max_piece, (size_t)1);
	for (uint32_t c = 0; c < 128; c++)
		t->ascii_flags[c] = (uint16_t)veil_uni_flags(c);
	if ((rc = bytes_add(&blob, "", 1)) < 0)
		goto fail;
	t->piece = (char *)blob.p;
	return 0;
fail:
	free(blob.p);
	return rc;
}

int veil_tok_load(const struct veil_gguf *g, struct veil_tok **out)
{
	struct veil_tok *t;
	struct veil_gguf_str model, pre;
	bool have_pre;
	int rc;

	if (!g || !out)
		return VEIL_EINVAL;
	if ((rc = veil_gguf_get_str(g, "tokenizer.ggml.model", &model)) < 0)
		return rc == VEIL_ENOENT
			       ? veil_errf(VEIL_EFORMAT, "tokenizer.ggml.model: missing")
			       : rc;
	rc = veil_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
	if (rc < 0 && rc != VEIL_ENOENT)
		return rc;
	have_pre = rc == 0 && pre.len > 0;  /* llama.cpp: empty means absent */

	if (!(t = calloc(1, sizeof(*t))))
		return VEIL_ENOMEM;
	strcpy(t->pre_name, "default");
	t->eot = t->eom = t->sep = t->pad = t->mask = TOK_NULL;
	t->fim_pre = t->fim_suf = t->fim_mid = TOK_NULL;
	t->fim_pad = t->fim_rep = t->fim_sep = TOK_NULL;

	if (str_is(model, "llama")) {
		t->kind = VEIL_TOK_SPM;
		t->pre = PRE_SPM;
		t->bos = 1;
		t->eos = 2;
		t->unk = 0;
		t->add_space_prefix = true;
		t->add_bos = true;
	} else if (str_is(model, "gpt2")) {
		t->kind = VEIL_TOK_BPE;
		t->bos = 11;
		t->eos = 11;
		t->unk = TOK_NULL;
		if ((rc = pick_pre(t, have_pre, pre)) < 0)
			goto fail;
	} else {
		rc = veil_errf(VEIL_ENOTSUP, "tokenizer.ggml.model: '%.*s' is not supported",
			       (int)VEIL_MIN(model.len, 64), model.p);
		goto fail;
	}
	if ((rc = opt_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix)) < 0)
		goto fail;
	if ((rc = load_tokens(t, g)) < 0)
		goto fail;
	if (t->kind == VEIL_TOK_BPE && (rc = load_merges(t, g)) < 0)
		goto fail;

	{
		static const struct {
			const char *key;
			size_t field;
		} ids[] = {
			{"tokenizer.ggml.bos_token_id", offsetof(struct veil_tok, bos)},
			{"tokenizer.ggml.eos_token_id", offsetof(struct veil_tok, eos)},
			{"tokenizer.ggml.eot_token_id", offsetof(struct veil_tok, eot)},
			{"tokenizer.ggml.eom_token_id", offsetof(struct veil_tok, eom)},
			{"tokenizer.ggml.unknown_token_id", offsetof(struct veil_tok, unk)},
			{"tokenizer.ggml.seperator_token_id", offsetof(struct veil_tok, sep)},
			{"tokenizer.ggml.padding_token_id", offsetof(struct veil_tok, pad)},
			{"tokenizer.ggml.mask_token_id", offsetof(struct veil_tok, mask)},
			{"tokenizer.ggml.fim_pre_token_id", offsetof(struct veil_tok, fim_pre)},
			{"tokenizer.ggml.fim_suf_token_id", offsetof(struct veil_tok, fim_suf)},
			{"tokenizer.ggml.fim_mid_token_id", offsetof(struct veil_tok, fim_mid)},
			{"tokenizer.ggml.fim_pad_token_id", offsetof(struct veil_tok, fim_pad)},
			{"tokenizer.ggml.fim_rep_token_id", offsetof(struct veil_tok, fim_rep)},
			{"tokenizer.ggml.fim_sep_token_id", offsetof(struct veil_tok, fim_sep)},
			{"tokenizer.ggml.prefix_token_id", offsetof(struct veil_tok, fim_pre)},
			{"tokenizer.ggml.suffix_token_id", offsetof(struct veil_tok, fim_suf)},
			{"tokenizer.ggml.middle_token_id", offsetof(struct veil_tok, fim_mid)},
		};

		for (size_t i = 0; i < VEIL_ARRAY_LEN(ids); i++) {
			int32_t *f = (int32_t *)((char *)t + ids[i].field);

			if ((rc = opt_id(t, g, ids[i].key, f)) < 0)
				goto fail;
		}
	}
	/* The built-in defaults (SPM bos 1 / eos 2 / unk 0, BPE 11) name a
	 * token only in a vocabulary that has it; in a smaller one there is
	 * none (-1), never an id past the vocabulary (opt_id keeps such ids
	 * out too). */
	if (t->bos >= t->n_vocab)
		t->bos = TOK_NULL;
	if (t->eos >= t->n_vocab)
		t->eos = TOK_NULL;
	if (t->unk >= t->n_vocab)
		t->unk = TOK_NULL;
	if ((rc = opt_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos)) < 0 ||
	    (rc = opt_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos)) < 0)
		goto fail;
	if ((rc = special_tokens(t)) < 0 || (rc = special_cache(t)) < 0 ||
	    (rc = piece_cache(t)) < 0 || (rc = strip_attrs(t, g)) < 0)
		goto fail;
	*out = t;
	return 0;
fail:
	veil_tok_free(t);
	return rc;
}

void veil_tok_free(struct veil_tok *t)
{
	if (!t)
		return;
	free(t->text);
	free(t->tok_off);
	free(t->tok_len);
	free(t->score);
	free(t->attr);
	free(t->type);
	free(t->tok_map.slot);
	free(t->merges);
	free(t->merge_off);
	free(t->merge_len);
	free(t->merge_map.slot);
	free(t->piece);
	free(t->piece_off);
	free(t->piece_len);
	free(t->special);
	free(t->eog);
	free(t);
}

/* ---- bigram queue -------------------------------------------------------- */

struct bigram {
	int32_t left, right;
	float score;     /* SPM: higher first */
	int32_t rank;    /* BPE: lower first */
	size_t size;     /* bytes of left + right when queued */
};

struct bqueue {
	struct bigram *v;
	size_t n, cap;
	bool spm;
};

/* True when a pops before b (llm_bigram_spm / llm_bigram_bpe comparators:
 * ties go to the leftmost pair). */
static bool bq_before(const struct bqueue *q, const struct bigram *a,
		      const struct bigram *b)
{
	if (q->spm) {
		if (a->score != b->score)
			return a->score > b->score;
	} else if (a->rank != b->rank) {
		return a->rank < b->rank;
	}
	return a->left < b->left;
}

static int bq_push(struct bqueue *q, const struct bigram *x)
{
	size_t i;
	int rc;

	if ((rc = grow((void **)&q->v, &q->cap, q->n + 1, sizeof(*q->v))) < 0)
		return rc;
	i = q->n++;
	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!bq_before(q, x, &q->v[p]))
			break;
		q->v[i] = q->v[p];
		i = p;
	}
	q->v[i] = *x;
	return 0;
}

static struct bigram bq_pop(struct bqueue *q)
{
	struct bigram top = q->v[0], last = q->v[--q->n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= q->n)
			break;
		if (c + 1 < q->n && bq_before(q, &q->v[c + 1], &q->v[c]))
			c++;
		if (!bq_before(q, &q->v[c], &last))
			break;
		q->v[i] = q->v[c];
		i = c;
	}
	if (q->n)
		q->v[i] = last;
	return top;
}

struct sym {
	int32_t prev, next;
	size_t off, n;
};

struct syms {
	struct sym *v;
	size_t n, cap;
};

/* Splits s[0..n) into symbols of one UTF-8 sequence each (by lead byte). */
static int syms_split(struct syms *ss, const uint8_t *s, size_t n)
{
	size_t off = 0;
	int rc;

	ss->n = 0;
	while (off < n) {
		size_t len = VEIL_MIN(veil_uni_len_utf8(s[off]), n - off);
		int32_t idx = (int32_t)ss->n;

		if ((rc = grow((void **)&ss->v, &ss->cap, ss->n + 1, sizeof(*ss->v))) < 0)
			return rc;
		ss->v[ss->n].off = off;
		ss->v[ss->n].n = len;
		off += len;
		ss->v[ss->n].prev = idx - 1;
		ss->v[ss->n].next = off == n ? -1 : idx + 1;
		ss->n++;
	}
	return 0;
}

/* ---- SentencePiece ---------------------------------------------------- */

static int spm_try_bigram(const struct veil_tok *t, const uint8_t *s,
			  const struct syms *ss, struct bqueue *q, int32_t l,
			  int32_t r)
{
	struct bigram b;
	size_t n;
	int32_t id;

	if (l == -1 || r == -1)
		return 0;
	n = ss->v[l].n + ss->v[r].n;
	id = text_to_token(t, (const char *)s + ss->v[l].off, n);
	if (id < 0)
		return 0;
	b.left = l;
	b.right = r;
	b.score = t->score[id];
	b.rank = 0;
	b.size = n;
	return bq_push(q, &b);
}

static int byte_to_token(const struct veil_tok *t, uint8_t c, struct ivec *out)
{
	static const char hex[] = "0123456789ABCDEF";
	char buf[6] = {'<', '0', 'x', hex[c >> 4], hex[c & 15], '>'};
	int32_t id = text_to_token(t, buf, 6);

	if (id < 0)
		id = text_to_token(t, (const char *)&c, 1);
	/* llama.cpp throws here (token_to_id.at); the unknown token is the
	 * closest total behaviour. */
	if (id < 0)
		id = t->unk;
	return id < 0 ? 0 : ivec_push(out, id);
}

static int spm_tokenize(const struct veil_tok *t, const uint8_t *s, size_t n,
			struct ivec *out)
{
	struct syms ss = {0};
	struct bqueue q = {.spm = true};
	int rc;

	if ((rc = syms_split(&ss, s, n)) < 0)
		goto done;
	for (size_t i = 1; i < ss.n; i++)
		if ((rc = spm_try_bigram(t, s, &ss, &q, (int32_t)i - 1, (int32_t)i)) < 0)
			goto done;
	while (q.n) {
		struct bigram b = bq_pop(&q);
		struct sym *l = &ss.v[b.left], *r = &ss.v[b.right];

		if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
			continue;
		l->n += r->n;
		r->n = 0;
		l->next = r->next;
		if (r->next >= 0)
			ss.v[r->next].prev = b.left;
		if ((rc = spm_try_bigram(t, s, &ss, &q, l->prev, b.left)) < 0 ||
		    (rc = spm_try_bigram(t, s, &ss, &q, b.left, ss.v[b.left].next)) < 0)
			goto done;
	}
	/* resegment(): merged symbols are always tokens, so only symbols left
	 * unmerged can miss and they fall back to bytes. */
	for (int32_t i = ss.n ? 0 : -1; i != -1; i = ss.v[i].next) {
		const struct sym *y = &ss.v[i];
		int32_t id = text_to_token(t, (const char *)s + y->off, y->n);

		if (id >= 0) {
			rc = ivec_push(out, id);
		} else {
			for (size_t k = 0; k < y->n && rc == 0; k++)
				rc = byte_to_token(t, s[y->off + k], out);
		}
		if (rc < 0)
			goto done;
	}
done:
	free(ss.v);
	free(q.v);
	return rc;
}

/* ---- BPE pre-tokenizers -------------------------------------------------- */

#define OOR 0xFFFFFFFFu

/* One fragment [ini, end) of the code points being split. */
struct span {
	const uint32_t *cpt;
	const uint16_t *flg;
	size_t ini, end, prev_end;
	struct zvec *out;
	int rc;
};

static uint32_t sp_cpt(const struct span *s, size_t pos)
{
	return (pos >= s->ini && pos < s->end) ? s->cpt[pos] : OOR;
}

static unsigned sp_flags(const struct span *s, size_t pos)
{
	return (pos >= s->ini && pos < s->end) ? s->flg[pos] : 0;
}

static size_t sp_add(struct span *s, size_t end)
{
	size_t len = end - s->prev_end;

	if (len > 0 && s->rc == 0)
		s->rc = zvec_push(s->out, len);
	s->prev_end = end;
	return len;
}

#define F_WS VEIL_UNI_WHITESPACE
#define F_L VEIL_UNI_LETTER
#define F_N VEIL_UNI_NUMBER

/* unicode_regex_split_custom_gpt2:
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void split_gpt2(struct span *s)
{
	for (size_t pos = s->ini; pos < s->end;) {
		uint32_t cpt = sp_cpt(s, pos);
		unsigned flags = sp_flags(s, pos), f2;
		size_t nws;

		if (cpt == '\'' && pos + 1 < s->end) {
			uint32_t nx = sp_cpt(s, pos + 1);

			if (nx == 's' || nx == 't' || nx == 'm' || nx == 'd') {
				pos += sp_add(s, pos + 2);
				continue;
			}
			if (pos + 2 < s->end) {
				uint32_t nn = sp_cpt(s, pos + 2);

				if ((nx == 'r' && nn == 'e') || (nx == 'v' && nn == 'e') ||
				    (nx == 'l' && nn == 'l')) {
					pos += sp_add(s, pos + 3);
					continue;
				}
			}
		}
		f2 = cpt == ' ' ? sp_flags(s, pos + 1) : flags;
		if (f2 & F_L) {
			pos += cpt == ' ';
			while (f2 & F_L)
				f2 = sp_flags(s, ++pos);
			sp_add(s, pos);
			continue;
		}
		if (f2 & F_N) {
			pos += cpt == ' ';
			while (f2 & F_N)
				f2 = sp_flags(s, ++pos);
			sp_add(s, pos);
			continue;
		}
		if (!(f2 & (F_WS | F_L | F_N)) && f2) {
			pos += cpt == ' ';
			while (!(f2 & (F_WS | F_L | F_N)) && f2)
				f2 = sp_flags(s, ++pos);
			sp_add(s, pos);
			continue;
		}
		nws = 0;
		while (sp_flags(s, pos + nws) & F_WS)
			nws++;
		if (nws > 1 && sp_cpt(s, pos + nws) != OOR) {
			pos += nws - 1;
			sp_add(s, pos);
			continue;
		}
		if (nws > 0) {
			pos += nws;
			sp_add(s, pos);
			continue;
		}
		sp_add(s, ++pos);
	}
}

/* unicode_regex_split_custom_llama3 (max_digits 3):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * With max_digits 1 it is the qwen2 regex (\p{N} instead of \p{N}{1,3}),
 * which llama.cpp runs through std::regex with the same result. */
static void split_llama3(struct span *s, size_t max_digits)
{
	for (size_t pos = s->ini; pos < s->end;) {
		uint32_t cpt = sp_cpt(s, pos);
		unsigned flags = sp_flags(s, pos), f2;
		size_t nws, last_rn;

		if (cpt == '\'' && pos + 1 < s->end) {
			uint32_t nx = veil_uni_tolower(sp_cpt(s, pos + 1));

			if (nx == 's' || nx == 't' || nx == 'm' || nx == 'd') {
				pos += sp_add(s, pos + 2);
				continue;
			}
			if (pos + 2 < s->end) {
				uint32_t nn = veil_uni_tolower(sp_cpt(s, pos + 2));

				if ((nx == 'r' && nn == 'e') || (nx == 'v' && nn == 'e') ||
				    (nx == 'l' && nn == 'l')) {
					pos += sp_add(s, pos + 3);
					continue;
				}
			}
		}
		if (!(cpt == '\r' || cpt == '\n' || (flags & F_N))) {
			if ((flags & F_L) || (sp_flags(s, pos + 1) & F_L)) {
				pos++;
				while (sp_flags(s, pos) & F_L)
					pos++;
				sp_add(s, pos);
				continue;
			}
		}
		if (flags & F_N) {
			size_t ini = pos;

			while (sp_flags(s, pos) & F_N) {
				if (++pos - ini >= max_digits) {
					sp_add(s, pos);
					ini = pos;
				}
			}
			sp_add(s, pos);
			continue;
		}
		f2 = cpt == ' ' ? sp_flags(s, pos + 1) : flags;
		if (!(f2 & (F_WS | F_L | F_N)) && flags) {
			uint32_t c2;

			pos += cpt == ' ';
			while (!(f2 & (F_WS | F_L | F_N)) && f2)
				f2 = sp_flags(s, ++pos);
			c2 = sp_cpt(s, pos);
			while (c2 == '\r' || c2 == '\n')
				c2 = sp_cpt(s, ++pos);
			sp_add(s, pos);
			continue;
		}
		nws = 0;
		last_rn = 0;
		while (sp_flags(s, pos + nws) & F_WS) {
			uint32_t c2 = sp_cpt(s, pos + nws);

			if (c2 == '\r' || c2 == '\n')
				last_rn = pos + nws + 1;
			nws++;
		}
		if (last_rn > 0) {
			pos = last_rn;
			sp_add(s, pos);
			continue;
		}
		if (nws > 1 && sp_cpt(s, pos + nws) != OOR) {
			pos += nws - 1;
			sp_add(s, pos);
			continue;
		}
		if (nws > 0) {
			pos += nws;
			sp_add(s, pos);
			continue;
		}
		sp_add(s, ++pos);
	}
}

/* Character classes of the std::regex pre-tokenizers, on llama.cpp's
 * "collapsed" text: ASCII stays itself, other code points become one byte
 * standing for whitespace / number / letter / punctuation / other. */
static bool cls_number(uint32_t cpt, unsigned f)
{
	if (cpt < 128)
		return cpt >= '0' && cpt <= '9';
	return !(f & F_WS) && (f & VEIL_UNI_CLASS_MASK) == VEIL_UNI_NUMBER;
}

/* [\p{P}\$\+<=>\^~\|]: \p{P} collapses to ASCII !-#%-*,-/:-;?-@[-]_{} */
static bool cls_default_punct(uint32_t cpt, unsigned f)
{
	if (cpt < 128)
		return cpt >= 0x21 && cpt <= 0x7e && cpt != '`' &&
		       !(cpt >= '0' && cpt <= '9') && !(cpt >= 'A' && cpt <= 'Z') &&
		       !(cpt >= 'a' && cpt <= 'z');
	return !(f & F_WS) && (f & VEIL_UNI_CLASS_MASK) == VEIL_UNI_PUNCT;
}

static bool cls_ascii_digit(uint32_t cpt, unsigned f)
{
	(void)f;
	return cpt >= '0' && cpt <= '9';
}

enum run_mode { RUN_ONE, RUN_MAX, RUN_THREE };

/* std::regex split with one class: RUN_ONE "C", RUN_MAX "C+", RUN_THREE
 * "CCC"; matches and the text between them become words. */
static void split_class(struct span *s, bool (*cls)(uint32_t, unsigned),
			enum run_mode mode)
{
	size_t pos = s->ini;

	while (pos < s->end) {
		size_t k = 0;

		if (mode == RUN_THREE) {
			while (k < 3 && pos + k < s->end &&
			       cls(s->cpt[pos + k], s->flg[pos + k]))
				k++;
			if (k < 3)
				k = 0;
		} else {
			while (pos + k < s->end && cls(s->cpt[pos + k], s->flg[pos + k])) {
				k++;
				if (mode == RUN_ONE)
					break;
			}
		}
		if (k == 0) {
			pos++;
			continue;
		}
		sp_add(s, pos);
		pos += k;
		sp_add(s, pos);
	}
	sp_add(s, s->end);
}

enum stage { ST_GPT2, ST_LLAMA3, ST_QWEN2, ST_NUM_ONE, ST_NUM_RUN,
	     ST_PUNCT_RUN, ST_DIGIT3 };

static int run_stage(enum stage st, const uint32_t *cpt, const uint16_t *flg,
		     const struct zvec *in, struct zvec *out)
{
	size_t start = 0;

	out->n = 0;
	for (size_t i = 0; i < in->n; i++) {
		struct span s = {cpt, flg, start, start + in->v[i], start, out, 0};

		switch (st) {
		case ST_GPT2: split_gpt2(&s); break;
		case ST_LLAMA3: split_llama3(&s, 3); break;
		case ST_QWEN2: split_llama3(&s, 1); break;
		case ST_NUM_ONE: split_class(&s, cls_number, RUN_ONE); break;
		case ST_NUM_RUN: split_class(&s, cls_number, RUN_MAX); break;
		case ST_PUNCT_RUN: split_class(&s, cls_default_punct, RUN_MAX); break;
		case ST_DIGIT3: split_class(&s, cls_ascii_digit, RUN_THREE); break;
		}
		if (s.rc < 0)
			return s.rc;
		start += in->v[i];
	}
	return 0;
}

/* ---- BPE ----------------------------------------------------------------- */

static int32_t bpe_rank(const struct veil_tok *t, const uint8_t *l, size_t ln,
			const uint8_t *r, size_t rn, struct bytes *scratch)
{
	int64_t k;

	scratch->n = 0;
	if (bytes_add(scratch, l, ln) < 0 || bytes_add(scratch, " ", 1) < 0 ||
	    bytes_add(scratch, r, rn) < 0)
		return -2;
	k = smap_find(&t->merge_map, (const char *)scratch->p, scratch->n);
	return (int32_t)k;
}

static int bpe_try_bigram(const struct veil_tok *t, const uint8_t *w,
			  const struct syms *ss, struct bqueue *q,
			  struct bytes *scratch, int32_t l, int32_t r)
{
	struct bigram b;
	int32_t rank;

	if (l == -1 || r == -1)
		return 0;
	rank = bpe_rank(t, w + ss->v[l].off, ss->v[l].n, w + ss->v[r].off,
			ss->v[r].n, scratch);
	if (rank == -2)
		return VEIL_ENOMEM;
	if (rank < 0)
		return 0;
	b.left = l;
	b.right = r;
	b.score = 0;
	b.rank = rank;
	b.size = ss->v[l].n + ss->v[r].n;
	return bq_push(q, &b);
}

/* One pre-tokenized word, already mapped to byte-level code points. */
static int bpe_word(const struct veil_tok *t, const uint8_t *w, size_t n,
		    struct syms *ss, struct bqueue *q, struct bytes *scratch,
		    struct ivec *out)
{
	int rc = 0;

	q->n = 0;
	if (t->ignore_merges && text_to_token(t, (const char *)w, n) >= 0) {
		ss->n = 0;
		if ((rc = grow((void **)&ss->v, &ss->cap, 1, sizeof(*ss->v))) < 0)
			return rc;
		ss->v[0] = (struct sym){-1, -1, 0, n};
		ss->n = 1;
	} else if ((rc = syms_split(ss, w, n)) < 0) {
		return rc;
	}
	for (size_t i = 1; i < ss->n; i++)
		if ((rc = bpe_try_bigram(t, w, ss, q, scratch, (int32_t)i - 1,
					 (int32_t)i)) < 0)
			return rc;
	while (q->n) {
		struct bigram b = bq_pop(q);
		struct sym *l = &ss->v[b.left], *r = &ss->v[b.right];

		/* llama.cpp compares texts; with both alive, equal sizes mean
		 * equal texts (a symbol only grows by absorbing its right). */
		if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
			continue;
		l->n += r->n;
		r->n = 0;
		l->next = r->next;
		if (r->next >= 0)
			ss->v[r->next].prev = b.left;
		if ((rc = bpe_try_bigram(t, w, ss, q, scratch, l->prev, b.left)) < 0 ||
		    (rc = bpe_try_bigram(t, w, ss, q, scratch, b.left,
					 ss->v[b.left].next)) < 0)
			return rc;
	}
	for (size_t i = 0; i < ss->n; i++) {
		const struct sym *y = &ss->v[i];
		int32_t id;

		if (y->n == 0)
			continue;
		id = text_to_token(t, (const char *)w + y->off, y->n);
		if (id >= 0) {
			if ((rc = ivec_push(out, id)) < 0)
				return rc;
			continue;
		}
		/* llama.cpp then looks up each byte as a one-char string. */
		for (size_t k = 0; k < y->n; k++) {
			id = text_to_token(t, (const char *)w + y->off + k, 1);
			if (id >= 0 && (rc = ivec_push(out, id)) < 0)
				return rc;
		}
	}
	return 0;
}

static int bpe_tokenize(const struct veil_tok *t, const uint8_t *s, size_t n,
			struct ivec *out)
{
	uint32_t *cpt = NULL;
	uint16_t *flg = NULL;
	size_t ncpt = 0;
	struct zvec a = {0}, b = {0};
	struct bytes word = {0}, scratch = {0};
	struct syms ss = {0};
	struct bqueue q = {.spm = false};
	enum stage stages[4];
	size_t nst = 0, start = 0;
	int rc;

	cpt = malloc((n ? n : 1) * sizeof(*cpt));
	flg = malloc((n ? n : 1) * sizeof(*flg));
	if (!cpt || !flg) {
		rc = VEIL_ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < n;) {
		size_t adv;

		cpt[ncpt] = veil_uni_decode(s + i, n - i, &adv);
		flg[ncpt] = cpt[ncpt] < 128 ? t->ascii_flags[cpt[ncpt]]
					    : (uint16_t)veil_uni_flags(cpt[ncpt]);
		ncpt++;
		i += adv;
	}

	switch (t->pre) {
	case PRE_GPT2:
		stages[nst++] = ST_GPT2;
		break;
	case PRE_LLAMA3:
		stages[nst++] = ST_LLAMA3;
		break;
	case PRE_QWEN2:
		stages[nst++] = ST_QWEN2;
		break;
	case PRE_STARCODER:
		stages[nst++] = ST_NUM_ONE;
		stages[nst++] = ST_GPT2;
		break;
	case PRE_DEFAULT:
	default:
		stages[nst++] = ST_PUNCT_RUN;
		stages[nst++] = ST_GPT2;
		stages[nst++] = ST_NUM_RUN;
		stages[nst++] = ST_DIGIT3;
		break;
	}
	if ((rc = zvec_push(&a, ncpt)) < 0)
		goto done;
	for (size_t i = 0; i < nst; i++) {
		struct zvec tmp;

		if ((rc = run_stage(stages[i], cpt, flg, &a, &b)) < 0)
			goto done;
		tmp = a;
		a = b;
		b = tmp;
	}

	for (size_t wi = 0; wi < a.n; wi++) {
		size_t end = start + a.v[wi];

		word.n = 0;
		for (size_t i = start; i < end; i++) {
			uint8_t u[4];
			size_t un = veil_uni_encode(cpt[i], u);

			for (size_t k = 0; k < un; k++) {
				uint8_t m[4];
				size_t mn = veil_uni_encode(veil_uni_byte_to_cpt(u[k]), m);

				if ((rc = bytes_add(&word, m, mn)) < 0)
					goto done;
			}
		}
		start = end;
		if (word.n == 0)
			continue;
		if ((rc = bpe_word(t, word.p, word.n, &ss, &q, &scratch, out)) < 0)
			goto done;
	}
	rc = 0;
done:
	free(cpt);
	free(flg);
	free(a.v);
	free(b.v);
	free(word.p);
	free(scratch.p);
	free(ss.v);
	free(q.v);
	return rc;
}

/* ---- encode ---------------------------------------------------------------- */

struct frag {
	int32_t tok;     /* >= 0: a special token; -1: raw text */
	size_t off, len;
};

struct fvec {
	struct frag *v;
	size_t n, cap;
};

static int fvec_push(struct fvec *a, int32_t tok, size_t off, size_t len)
{
	int rc;

	if ((rc = grow((void **)&a->v, &a->cap, a->n + 1, sizeof(*a->v))) < 0)
		return rc;
	a->v[a->n++] = (struct frag){tok, off, len};
	return 0;
}

/* Spans of text where control tokens are not matched (see
 * veil_tok_encode_spans): sorted, not overlapping. */
struct nospec {
	const struct veil_tok_span *v;
	size_t n;
};

/* Whether special token id may be matched at text[mo, mo + sl): outside
 * every span any special token may; one that lies wholly inside a span
 * may unless it is a control (or unknown) token; one across a span's
 * edge never. */
static bool match_allowed(const struct nospec *ns, uint16_t attr, size_t mo, size_t sl)
{
	size_t lo = 0, hi = ns->n, end = mo + sl;

	/* the first span that ends after mo (span ends never decrease) */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ns->v[mid].off + ns->v[mid].len <= mo)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* it and those after it end after mo: a non-empty one that begins
	 * before end overlaps the match */
	for (; lo < ns->n && ns->v[lo].off < end; lo++) {
		const struct veil_tok_span *sp = &ns->v[lo];

		if (!sp->len)
			continue;
		if (attr & (ATTR_CONTROL | ATTR_UNKNOWN))
			return false;
		return sp->off <= mo && end <= sp->off + sp->len;
	}
	return true;
}

/* tokenizer_st_partition: cuts each special token's text out of the raw
 * fragments, longest tokens first.  With spans (ns->n > 0), a match the
 * spans forbid is passed over and the search goes on one byte later. */
static int partition(const struct veil_tok *t, const char *text, size_t len,
		     bool parse_special, const struct nospec *ns, struct fvec *fr)
{
	struct fvec next = {0}, tmp;
	int rc = 0;

	fr->n = 0;
	if (len == 0)
		return 0;
	if ((rc = fvec_push(fr, -1, 0, len)) < 0)
		return rc;
	for (size_t si = 0; si < t->n_special; si++) {
		int32_t id = t->special[si];
		const char *st = t->text + t->tok_off[id];
		size_t sl = t->tok_len[id];
		uint16_t a = t->attr[id];

		if (sl == 0 || (!parse_special && (a & (ATTR_CONTROL | ATTR_UNKNOWN))))
			continue;
		next.n = 0;
		for (size_t fi = 0; fi < fr->n && rc == 0; fi++) {
			struct frag f = fr->v[fi];
			size_t base = f.off, blen = f.len, from = f.off;

			if (f.tok >= 0) {
				rc = fvec_push(&next, f.tok, 0, 0);
				continue;
			}
			for (;;) {
				const char *m = memmem(text + from, base + blen - from, st, sl);
				size_t mo, llen;

				if (!m) {
					if (blen > 0)
						rc = fvec_push(&next, -1, base, blen);
					break;
				}
				mo = (size_t)(m - text);
				if (ns->n && !match_allowed(ns, a, mo, sl)) {
					from = mo + 1;
					continue;
				}
				llen = mo - base;
				if (a & ATTR_LSTRIP)
					while (llen > 0 && c_isspace((uint8_t)text[base + llen - 1]))
						llen--;
				if (llen > 0 && (rc = fvec_push(&next, -1, base, llen)) < 0)
					break;
				if ((rc = fvec_push(&next, id, 0, 0)) < 0)
					break;
				if (mo + sl >= base + blen)
					break;
				blen = base + blen - (mo + sl);
				base = mo + sl;
				if (a & ATTR_RSTRIP)
					while (blen > 0 && c_isspace((uint8_t)text[base])) {
						base++;
						blen--;
					}
				from = base;
			}
		}
		if (rc < 0)
			break;
		tmp = *fr;
		*fr = next;
		next = tmp;
	}
	free(next.v);
	return rc;
}

static int encode_all(const struct veil_tok *t, const char *text, size_t len,
		      bool add_special, bool parse_special, const struct nospec *ns,
		      struct ivec *out)
{
	struct fvec fr = {0};
	struct bytes buf = {0};
	bool prev_special = true;
	int rc;

	if ((rc = partition(t, text, len, parse_special, ns, &fr)) < 0)
		goto done;
	if (add_special && t->add_bos) {
		if (t->bos < 0) {
			rc = veil_errf(VEIL_EINVAL, "tokenizer: add_bos set but no BOS token");
			goto done;
		}
		if ((rc = ivec_push(out, t->bos)) < 0)
			goto done;
	}
	for (size_t i = 0; i < fr.n; i++) {
		const struct frag *f = &fr.v[i];

		if (f->tok >= 0) {
			rc = ivec_push(out, f->tok);
			prev_special = true;
		} else if (t->kind == VEIL_TOK_SPM) {
			/* add_space_prefix after BOS / a special token, then
			 * llama_escape_whitespace (' ' -> U+2581). */
			buf.n = 0;
			if (t->add_space_prefix && prev_special)
				rc = bytes_add(&buf, "\xe2\x96\x81", 3);
			for (size_t k = 0; k < f->len && rc == 0; k++) {
				char c = text[f->off + k];

				rc = c == ' ' ? bytes_add(&buf, "\xe2\x96\x81", 3)
					      : bytes_add(&buf, &c, 1);
			}
			/* SentencePiece merges a fragment whole; one that
			 * cannot fit is known before: each token stands for
			 * at most max_tok_len bytes of buf, and with an unknown
			 * token no byte is dropped */
			if (rc == 0 && out->limit != SIZE_MAX && t->unk >= 0 &&
			    out->n <= out->limit &&
			    buf.n / t->max_tok_len > out->limit - out->n)
				rc = VEIL_ERANGE;
			if (rc == 0)
				rc = spm_tokenize(t, buf.p, buf.n, out);
			prev_special = false;
		} else {
			rc = bpe_tokenize(t, (const uint8_t *)text + f->off, f->len, out);
		}
		if (rc < 0)
			goto done;
	}
	if (add_special && t->add_eos) {
		if (t->eos < 0) {
			rc = veil_errf(VEIL_EINVAL, "tokenizer: add_eos set but no EOS token");
			goto done;
		}
		rc = ivec_push(out, t->eos);
	}
done:
	free(fr.v);
	free(buf.p);
	return rc;
}

/* The checks and the encoding both entry points share; out->limit caps
 * the ids (encode_all stops with VEIL_ERANGE past it). */
static int encode_checked(const struct veil_tok *t, const char *text, size_t len,
			  bool add_special, bool parse_special, const struct nospec *ns,
			  const int32_t *ids, size_t cap, const size_t *n_out,
			  struct ivec *out)
{
	if (!t || !n_out || (len && !text) || (cap && !ids))
		return VEIL_EINVAL;
	if (len > VEIL_TOK_MAX_TEXT)
		return veil_errf(VEIL_ERANGE, "tokenizer: text of %zu bytes exceeds %u",
				 len, VEIL_TOK_MAX_TEXT);
	return encode_all(t, text, len, add_special, parse_special, ns, out);
}

int veil_tok_encode(const struct veil_tok *t, const char *text, size_t len,
		    bool add_special, bool parse_special, int32_t *ids,
		    size_t cap, size_t *n_out)
{
	struct ivec out = {.limit = SIZE_MAX};
	struct nospec ns = {0};
	int rc;

	if ((rc = encode_checked(t, text, len, add_special, parse_special, &ns, ids, cap,
				 n_out, &out)) < 0)
		goto done;
	*n_out = out.n;
	if (out.n > cap) {
		rc = VEIL_ERANGE;
		goto done;
	}
	if (out.n)
		memcpy(ids, out.v, out.n * sizeof(*ids));
	rc = 0;
done:
	free(out.v);
	return rc;
}

/* veil_tok_encode_max and veil_tok_encode_spans: stop past cap ids. */
static int encode_capped(const struct veil_tok *t, const char *text, size_t len,
			 bool add_special, bool parse_special, const struct nospec *ns,
			 int32_t *ids, size_t cap, size_t *n_out)
{
	struct ivec out = {.limit = cap};
	int rc;

	if ((rc = encode_checked(t, text, len, add_special, parse_special, ns, ids, cap,
				 n_out, &out)) < 0) {
		if (rc == VEIL_ERANGE && len <= VEIL_TOK_MAX_TEXT)
			rc = veil_errf(VEIL_ERANGE, "tokenizer: the text needs more than %zu tokens",
				       cap);
		goto done;
	}
	if (out.n)
		memcpy(ids, out.v, out.n * sizeof(*ids));
	*n_out = out.n;
	rc = 0;
done:
	free(out.v);
	return rc;
}

int veil_tok_encode_max(const struct veil_tok *t, const char *text, size_t len,
			bool add_special, bool parse_special, int32_t *ids,
			size_t cap, size_t *n_out)
{
	struct nospec ns = {0};

	return encode_capped(t, text, len, add_special, parse_special, &ns, ids, cap, n_out);
}

int veil_tok_encode_spans(const struct veil_tok *t, const char *text, size_t len,
			  const struct veil_tok_span *spans, size_t n_spans,
			  bool add_special, int32_t *ids, size_t cap, size_t *n_out)
{
	struct nospec ns = {spans, n_spans};
	size_t pos = 0;

	if (n_spans && !spans)
		return VEIL_EINVAL;
	for (size_t i = 0; i < n_spans; i++) {
		/* in order, apart, inside the text (no sum overflows: off <= len) */
		if (spans[i].off < pos || spans[i].off > len || spans[i].len > len - spans[i].off)
			return veil_errf(VEIL_EINVAL, "tokenizer: span %zu is out of order or "
					 "outside the text", i);
		pos = spans[i].off + spans[i].len;
	}
	return encode_capped(t, text, len, add_special, true, &ns, ids, cap, n_out);
}

/* ---- accessors ------------------------------------------------------------- */

size_t veil_tok_max_token_bytes(const struct veil_tok *t)
{
	/* the piece alone is not enough: a SentencePiece token of k U+2581
	 * renders as k spaces (k bytes) but matches 3k input bytes */
	return t ? VEIL_MAX(t->max_piece, t->max_tok_len) : 1;
}

int veil_tok_piece(const struct veil_tok *t, int32_t id, bool special,
		   char *buf, size_t cap)
{
	size_t n;

	if (!t || id < 0 || id >= t->n_vocab || (cap && !buf))
		return VEIL_EINVAL;
	if (!special && (t->attr[id] & (ATTR_UNKNOWN | ATTR_CONTROL)))
		return 0;
	n = t->piece_len[id];
	if (n > cap)
		return VEIL_ERANGE;
	if (n)
		memcpy(buf, t->piece + t->piece_off[id], n);
	return (int)n;
}

enum veil_tok_kind veil_tok_kind(const struct veil_tok *t)
{
	return t->kind;
}

const char *veil_tok_pre_name(const struct veil_tok *t)
{
	return t->pre_name;
}

int32_t veil_tok_n_vocab(const struct veil_tok *t)
{
	return t->n_vocab;
}

int32_t veil_tok_bos(const struct veil_tok *t)
{
	return t->bos;
}

int32_t veil_tok_eos(const struct veil_tok *t)
{
	return t->eos;
}

int32_t veil_tok_eot(const struct veil_tok *t)
{
	return t->eot;
}

bool veil_tok_add_bos(const struct veil_tok *t)
{
	return t->add_bos;
}

bool veil_tok_is_eog(const struct veil_tok *t, int32_t id)
{
	if (id < 0)
		return false;
	for (size_t i = 0; i < t->n_eog; i++)
		if (t->eog[i] == id)
			return true;
	return false;
}

enum veil_tok_type veil_tok_type(const struct veil_tok *t, int32_t id)
{
	if (id < 0 || id >= t->n_vocab)
		return VEIL_TOK_UNDEFINED;
	return (enum veil_tok_type)t->type[id];
}

const char *veil_tok_text(const struct veil_tok *t, int32_t id, size_t *len)
{
	if (id < 0 || id >= t->n_vocab)
		return NULL;
	if (len)
		*len = t->tok_len[id];
	return t->text + t->tok_off[id];
}

int32_t veil_tok_find(const struct veil_tok *t, const char *s, size_t len)
{
	if (!s && len)
		return -1;
	return text_to_token(t, s ? s : "", len);
}
