/* Unit tests of the GGUF reader and writer (include/veil/gguf.h).
 *
 * Real files come from $VEIL_SHARED (default ../shared, tests run from the
 * repository root); tests that need them are skipped with a message when
 * they are absent.  Malformed files are built in memory here, and every
 * parse runs over a heap copy of exactly the input size so that an
 * over-read shows up under ASan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include "veil/gguf.h"

/* ---- helpers ----------------------------------------------------------- */

static const char *shared_dir(void)
{
	const char *s = getenv("VEIL_SHARED");

	return s && *s ? s : "../shared";
}

/* Builds $VEIL_SHARED/rel into out; false (and a message) when absent. */
static bool shared_path(const char *rel, char *out, size_t cap)
{
	int k = snprintf(out, cap, "%s/%s", shared_dir(), rel);

	assert_true(k > 0 && (size_t)k < cap);
	if (access(out, R_OK) != 0) {
		fprintf(stderr,
			"test_gguf: %s not found (set VEIL_SHARED to the shared "
			"folder); skipping\n", out);
		return false;
	}
	return true;
}

/* A byte builder for hand-made GGUF files (little-endian). */
struct bb {
	uint8_t d[8192];
	size_t n;
};

static void b_bytes(struct bb *b, const void *p, size_t n)
{
	assert_true(b->n + n <= sizeof(b->d));
	memcpy(b->d + b->n, p, n);
	b->n += n;
}

static void b_u32(struct bb *b, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			(uint8_t)(v >> 24)};

	b_bytes(b, x, 4);
}

static void b_u64(struct bb *b, uint64_t v)
{
	b_u32(b, (uint32_t)v);
	b_u32(b, (uint32_t)(v >> 32));
}

static void b_str(struct bb *b, const char *s)
{
	b_u64(b, strlen(s));
	b_bytes(b, s, strlen(s));
}

static void b_header(struct bb *b, uint32_t version, uint64_t n_t, uint64_t n_kv)
{
	b_bytes(b, "GGUF", 4);
	b_u32(b, version);
	b_u64(b, n_t);
	b_u64(b, n_kv);
}

static void b_kv_u32(struct bb *b, const char *key, uint32_t v)
{
	b_str(b, key);
	b_u32(b, VEIL_GGUF_U32);
	b_u32(b, v);
}

static void b_kv_str(struct bb *b, const char *key, const char *s)
{
	b_str(b, key);
	b_u32(b, VEIL_GGUF_STR);
	b_str(b, s);
}

static void b_tinfo(struct bb *b, const char *name, uint32_t n_dims,
		    const uint64_t *ne, uint32_t type, uint64_t offset)
{
	b_str(b, name);
	b_u32(b, n_dims);
	for (uint32_t i = 0; i < n_dims; i++)
		b_u64(b, ne[i]);
	b_u32(b, type);
	b_u64(b, offset);
}

static void b_pad(struct bb *b, size_t align)
{
	while (b->n % align)
		b->d[b->n++] = 0;
}

static void b_fill(struct bb *b, size_t n, uint8_t v)
{
	assert_true(b->n + n <= sizeof(b->d));
	memset(b->d + b->n, v, n);
	b->n += n;
}

/* A small valid v3 file: three kvs (string, u32, string array), an f32
 * tensor "a" of 4 and a q8_0 tensor "b" of 32x2 at offset 32. */
static void small_valid(struct bb *b)
{
	const uint64_t ne_a[1] = {4}, ne_b[2] = {32, 2};

	b->n = 0;
	b_header(b, 3, 2, 3);
	b_kv_str(b, "general.architecture", "llama");
	b_kv_u32(b, "llama.block_count", 1);
	b_str(b, "tokenizer.ggml.tokens");
	b_u32(b, VEIL_GGUF_ARR);
	b_u32(b, VEIL_GGUF_STR);
	b_u64(b, 3);
	b_str(b, "a");
	b_str(b, "bc");
	b_str(b, "");
	b_tinfo(b, "a", 1, ne_a, VEIL_DT_F32, 0);
	b_tinfo(b, "b", 2, ne_b, VEIL_DT_Q8_0, 32);
	b_pad(b, 32);
	b_fill(b, 16, 0x11);
	b_pad(b, 32);
	b_fill(b, 68, 0x22);
	b_pad(b, 32);
}

/* Parses a heap copy of exactly n bytes; returns the rc. */
static int parse_copy(const uint8_t *p, size_t n)
{
	struct veil_gguf *g = NULL;
	uint8_t *copy = malloc(n ? n : 1);
	int rc;

	assert_non_null(copy);
	if (n)
		memcpy(copy, p, n);
	rc = veil_gguf_parse(copy, n, &g);
	if (rc == 0) {
		assert_non_null(g);
		veil_gguf_close(g);
	}
	free(copy);
	return rc;
}

/* Asserts the parse fails with `want` and the detail contains `needle`. */
static void expect_fail(const struct bb *b, int want, const char *needle)
{
	int rc = parse_copy(b->d, b->n);

	if (rc != want || (needle && !strstr(veil_err_detail(), needle)))
		fail_msg("rc %d (want %d), detail \"%s\" (want \"%s\")", rc, want,
			 veil_err_detail(), needle ? needle : "");
}

/* ---- dtype traits ------------------------------------------------------ */

static void test_dtype_traits_match_ggml(void **state)
{
	static const struct {
		enum veil_dtype t;
		size_t blk, bytes;
		const char *name;
	} want[] = {
		{VEIL_DT_F32, 1, 4, "f32"},     {VEIL_DT_F16, 1, 2, "f16"},
		{VEIL_DT_BF16, 1, 2, "bf16"},   {VEIL_DT_Q4_0, 32, 18, "q4_0"},
		{VEIL_DT_Q4_1, 32, 20, "q4_1"}, {VEIL_DT_Q5_0, 32, 22, "q5_0"},
		{VEIL_DT_Q5_1, 32, 24, "q5_1"}, {VEIL_DT_Q8_0, 32, 34, "q8_0"},
		{VEIL_DT_Q8_1, 32, 36, "q8_1"}, {VEIL_DT_Q2_K, 256, 84, "q2_k"},
		{VEIL_DT_Q3_K, 256, 110, "q3_k"}, {VEIL_DT_Q4_K, 256, 144, "q4_k"},
		{VEIL_DT_Q5_K, 256, 176, "q5_k"}, {VEIL_DT_Q6_K, 256, 210, "q6_k"},
		{VEIL_DT_Q8_K, 256, 292, "q8_k"},
	};

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(want); i++) {
		assert_int_equal(veil_dtype_block_elems(want[i].t), want[i].blk);
		assert_int_equal(veil_dtype_block_bytes(want[i].t), want[i].bytes);
		assert_string_equal(veil_dtype_name(want[i].t), want[i].name);
		assert_int_equal(veil_dtype_parse(want[i].name), (int)want[i].t);
	}
	/* 4 and 5 were Q4_2/Q4_3, long removed; 16 is IQ2_XXS. */
	assert_int_equal(veil_dtype_block_elems((enum veil_dtype)4), 0);
	assert_int_equal(veil_dtype_block_bytes((enum veil_dtype)16), 0);
	assert_int_equal(veil_dtype_block_bytes((enum veil_dtype)1000), 0);
	assert_string_equal(veil_dtype_name((enum veil_dtype)16), "?");
}

static void test_dtype_parse_is_case_insensitive_and_rejects_unknown(void **state)
{
	(void)state;
	assert_int_equal(veil_dtype_parse("Q4_K"), VEIL_DT_Q4_K);
	assert_int_equal(veil_dtype_parse("BF16"), VEIL_DT_BF16);
	assert_int_equal(veil_dtype_parse("q4"), -1);
	assert_int_equal(veil_dtype_parse(""), -1);
	assert_int_equal(veil_dtype_parse(NULL), -1);
}

static void test_dtype_row_bytes_checks_block_multiple(void **state)
{
	size_t n = 0;

	(void)state;
	assert_int_equal(veil_dtype_row_bytes(VEIL_DT_Q4_0, 64, &n), 0);
	assert_int_equal(n, 36);
	assert_int_equal(veil_dtype_row_bytes(VEIL_DT_Q6_K, 512, &n), 0);
	assert_int_equal(n, 420);
	assert_int_equal(veil_dtype_row_bytes(VEIL_DT_F16, 7, &n), 0);
	assert_int_equal(n, 14);
	assert_int_equal(veil_dtype_row_bytes(VEIL_DT_Q8_0, 33, &n), VEIL_EFORMAT);
	assert_int_equal(veil_dtype_row_bytes((enum veil_dtype)16, 256, &n),
			 VEIL_ENOTSUP);
	assert_int_equal(veil_dtype_row_bytes(VEIL_DT_F32, UINT64_MAX / 2, &n),
			 VEIL_EOVERFLOW);
}

/* ---- real files -------------------------------------------------------- */

/* Reads a whole file with stdio into a malloc'd buffer. */
static uint8_t *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p;
	long len;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len > 0);
	rewind(f);
	p = malloc((size_t)len);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	*n = (size_t)len;
	return p;
}

/* veil-node's load: the digests are SHA-256 / SHA-384 of the whole file
 * (as OpenSSL computes them over an independent read), and the loaded bytes
 * are a private copy that later writes to the file do not reach (they do
 * reach the plain file mapping: that is the hole this load closes). */
static void test_gguf_private_load_digests_and_is_immune_to_file_writes(void **state)
{
	char src[1024], path[] = "/tmp/veil-test-gguf-priv-XXXXXX";
	struct veil_gguf_digests dg, dg2;
	struct veil_gguf *g = NULL, *gm = NULL;
	const struct veil_gguf_tensor *t;
	uint8_t want256[32], want384[48], *orig, junk[4096];
	unsigned len;
	size_t n, at;
	FILE *f;
	int fd;

	(void)state;
	if (!shared_path("models/stories260K.gguf", src, sizeof(src))) {
		skip();
		return;
	}
	orig = slurp(src, &n);
	len = 32;
	assert_int_equal(EVP_Digest(orig, n, want256, &len, EVP_sha256(), NULL), 1);
	len = 48;
	assert_int_equal(EVP_Digest(orig, n, want384, &len, EVP_sha384(), NULL), 1);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, orig, n), (ssize_t)n);

	memset(&dg, 0, sizeof(dg));
	assert_int_equal(veil_gguf_open_private(path, &dg, &g), 0);
	assert_true(veil_gguf_is_private(g));
	assert_memory_equal(dg.sha256, want256, 32);
	assert_memory_equal(dg.sha384, want384, 48);
	assert_int_equal(veil_gguf_file_size(g), n);
	assert_memory_equal(veil_gguf_file_data(g), orig, n);
	memset(&dg2, 0, sizeof(dg2));
	assert_int_equal(veil_gguf_digest_file(path, &dg2), 0);
	assert_memory_equal(&dg2, &dg, sizeof(dg));
	{
		uint8_t s256[32];

		assert_int_equal(veil_gguf_sha256_file(path, s256), 0);
		assert_memory_equal(s256, want256, 32);
	}
	assert_int_equal(veil_gguf_open(path, &gm), 0);
	assert_false(veil_gguf_is_private(gm));

	/* the file's writer rewrites a tensor's bytes after the load */
	t = veil_gguf_tensor(g, "output.weight");
	if (!t)
		t = veil_gguf_tensor_at(g, veil_gguf_n_tensors(g) - 1);
	assert_non_null(t);
	at = (size_t)(t->data - veil_gguf_file_data(g));
	assert_true(at + sizeof(junk) <= n);
	memset(junk, 0x5a, sizeof(junk));
	assert_int_equal(pwrite(fd, junk, sizeof(junk), (off_t)at), (ssize_t)sizeof(junk));
	assert_memory_equal(veil_gguf_file_data(g), orig, n);  /* private: unchanged */
	/* the shared mapping shows the new bytes: what the private load avoids */
	assert_memory_equal(veil_gguf_file_data(gm) + at, junk, sizeof(junk));
	veil_gguf_close(gm);
	/* ... and the file's digests moved, the loaded copy's did not */
	assert_int_equal(veil_gguf_digest_file(path, &dg2), 0);
	assert_memory_not_equal(dg2.sha256, want256, 32);

	/* a truncated file is refused by the parser (bounds checks kept) */
	assert_int_equal(ftruncate(fd, (off_t)(n / 2)), 0);
	assert_int_equal(veil_gguf_open_private(path, &dg2, &gm), VEIL_EFORMAT);
	close(fd);
	/* empty and absent files */
	f = fopen(path, "wb");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(veil_gguf_open_private(path, NULL, &gm), VEIL_EFORMAT);
	unlink(path);
	assert_int_equal(veil_gguf_open_private(path, NULL, &gm), VEIL_ENOENT);
	assert_int_equal(veil_gguf_digest_file(path, &dg2), VEIL_ENOENT);
	veil_gguf_close(g);
	free(orig);
}

static void test_gguf_reads_stories260k_shapes_and_data_offset(void **state)
{
	char path[4096];
	struct veil_gguf *g = NULL;
	const struct veil_gguf_tensor *t;
	const struct veil_gguf_kv *kv;
	struct veil_gguf_str s;
	const uint8_t *arr;
	uint64_t n;
	uint32_t u;
	float f;

	(void)state;
	if (!shared_path("models/stories260K.gguf", path, sizeof(path)))
		skip();
	assert_int_equal(veil_gguf_open(path, &g), 0);
	assert_int_equal(veil_gguf_version(g), 3);
	assert_int_equal(veil_gguf_file_size(g), 1185376);
	assert_int_equal(veil_gguf_alignment(g), 32);
	assert_null(veil_gguf_find(g, "general.alignment"));
	/* PROVENANCE.txt: tensor data starts at byte 14176. */
	assert_int_equal(veil_gguf_data_offset(g), 14176);
	assert_int_equal(veil_gguf_get_str(g, "general.architecture", &s), 0);
	assert_int_equal(s.len, 5);
	assert_memory_equal(s.p, "llama", 5);
	assert_int_equal(veil_gguf_get_u32(g, "llama.block_count", &u), 0);
	assert_int_equal(u, 5);
	assert_int_equal(veil_gguf_get_u32(g, "llama.embedding_length", &u), 0);
	assert_int_equal(u, 64);
	assert_int_equal(veil_gguf_get_u32(g, "llama.attention.head_count", &u), 0);
	assert_int_equal(u, 8);
	assert_int_equal(veil_gguf_get_u32(g, "llama.attention.head_count_kv", &u), 0);
	assert_int_equal(u, 4);
	assert_int_equal(veil_gguf_get_u32(g, "llama.feed_forward_length", &u), 0);
	assert_int_equal(u, 172);
	assert_int_equal(veil_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f), 0);
	assert_true(f > 0 && f < 1e-3f);
	assert_int_equal(veil_gguf_get_str(g, "tokenizer.ggml.pre", &s), VEIL_ENOENT);

	assert_int_equal(veil_gguf_get_arr(g, "tokenizer.ggml.scores",
					   VEIL_GGUF_F32, &arr, &n), 0);
	assert_int_equal(n, 512);
	kv = veil_gguf_find(g, "tokenizer.ggml.tokens");
	assert_non_null(kv);
	assert_int_equal(kv->v.arr.n, 512);
	assert_int_equal(veil_gguf_arr_str(kv, 0, &s), 0);
	assert_int_equal(s.len, 5);
	assert_memory_equal(s.p, "<unk>", 5);
	assert_int_equal(veil_gguf_arr_str(kv, 511, &s), 0);
	assert_int_equal(veil_gguf_arr_str(kv, 512, &s), VEIL_ERANGE);

	assert_int_equal(veil_gguf_n_tensors(g), 48);
	t = veil_gguf_tensor(g, "token_embd.weight");
	assert_non_null(t);
	assert_int_equal(t->type, VEIL_DT_F32);
	assert_int_equal(t->n_dims, 2);
	assert_int_equal(t->ne[0], 64);
	assert_int_equal(t->ne[1], 512);
	assert_int_equal(t->ne[2], 1);
	assert_int_equal(t->size, 64 * 512 * 4);
	assert_ptr_equal(t->data, veil_gguf_file_data(g) + 14176 + t->offset);
	assert_non_null(veil_gguf_tensor(g, "blk.4.ffn_down.weight"));
	assert_null(veil_gguf_tensor(g, "blk.5.ffn_down.weight"));
	for (size_t i = 0; i < veil_gguf_n_tensors(g); i++) {
		t = veil_gguf_tensor_at(g, i);
		assert_int_equal((uintptr_t)t->data % 32, 0);
		assert_ptr_equal(veil_gguf_tensor(g, t->name), t);
	}
	assert_null(veil_gguf_tensor_at(g, 48));
	veil_gguf_close(g);
}

static void test_gguf_reads_tiny_synth_f16(void **state)
{
	char path[4096];
	struct veil_gguf *g = NULL;
	const struct veil_gguf_tensor *t;
	const struct veil_gguf_kv *kv;
	struct veil_gguf_str s;

	(void)state;
	if (!shared_path("models/tiny-synth-f16.gguf", path, sizeof(path)))
		skip();
	assert_int_equal(veil_gguf_open(path, &g), 0);
	assert_int_equal(veil_gguf_get_str(g, "tokenizer.ggml.pre", &s), 0);
	assert_int_equal(s.len, 6);
	assert_memory_equal(s.p, "smollm", 6);
	kv = veil_gguf_find(g, "tokenizer.ggml.merges");
	assert_non_null(kv);
	assert_int_equal(kv->v.arr.n, 48900);
	assert_int_equal(veil_gguf_arr_str(kv, 48899, &s), 0);
	assert_true(s.len > 0);
	t = veil_gguf_tensor(g, "token_embd.weight");
	assert_non_null(t);
	assert_int_equal(t->type, VEIL_DT_F16);
	assert_int_equal(t->size, 64 * 49152 * 2);
	veil_gguf_close(g);
}

static void test_gguf_reads_vocab_only_files_with_no_tensors(void **state)
{
	static const char *const names[] = {
		"gpt-2", "llama-spm", "phi-3", "starcoder",
	};
	char rel[128], path[4096];

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(names); i++) {
		struct veil_gguf *g = NULL;
		const struct veil_gguf_kv *kv;
		struct veil_gguf_str s;

		snprintf(rel, sizeof(rel), "models/vocab/ggml-vocab-%s.gguf",
			 names[i]);
		if (!shared_path(rel, path, sizeof(path)))
			skip();
		if (veil_gguf_open(path, &g) != 0)
			fail_msg("%s: %s", path, veil_err_detail());
		assert_int_equal(veil_gguf_n_tensors(g), 0);
		assert_int_equal(veil_gguf_get_str(g, "tokenizer.ggml.model", &s), 0);
		kv = veil_gguf_find(g, "tokenizer.ggml.tokens");
		assert_non_null(kv);
		assert_true(kv->v.arr.n >= 32000);
		for (uint64_t k = 0; k < kv->v.arr.n; k++)
			assert_int_equal(veil_gguf_arr_str(kv, k, &s), 0);
		veil_gguf_close(g);
	}
}

/* Rewrites a parsed file with the writer: same kv and tensor order. */
static void rewrite(const struct veil_gguf *g, char **buf, size_t *len)
{
	struct veil_gguf_writer *w = NULL;
	FILE *f = open_memstream(buf, len);

	assert_non_null(f);
	assert_int_equal(veil_gguf_writer_new(&w, veil_gguf_alignment(g)), 0);
	for (size_t i = 0; i < veil_gguf_n_kv(g); i++)
		assert_int_equal(veil_gguf_w_copy_kv(w, veil_gguf_kv_at(g, i)), 0);
	for (size_t i = 0; i < veil_gguf_n_tensors(g); i++) {
		const struct veil_gguf_tensor *t = veil_gguf_tensor_at(g, i);

		assert_int_equal(veil_gguf_w_tensor(w, t->name, t->type,
						    t->n_dims, t->ne), 0);
	}
	assert_int_equal(veil_gguf_w_header(w, f), 0);
	for (size_t i = 0; i < veil_gguf_n_tensors(g); i++) {
		const struct veil_gguf_tensor *t = veil_gguf_tensor_at(g, i);

		assert_int_equal(veil_gguf_w_data(w, f, t->data, t->size), 0);
	}
	assert_int_equal(fclose(f), 0);
	veil_gguf_writer_free(w);
}

/* Both files were written by ggml/gguf-py writers, so a byte-identical copy
 * shows the writer lays files out exactly as they do. */
static void test_gguf_writer_reproduces_real_files_byte_for_byte(void **state)
{
	static const char *const rels[] = {
		"models/stories260K.gguf", "models/tiny-synth-f16.gguf",
	};
	char path[4096];

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(rels); i++) {
		struct veil_gguf *g = NULL;
		char *buf = NULL;
		size_t len = 0;

		if (!shared_path(rels[i], path, sizeof(path)))
			skip();
		assert_int_equal(veil_gguf_open(path, &g), 0);
		rewrite(g, &buf, &len);
		assert_int_equal(len, veil_gguf_file_size(g));
		assert_memory_equal(buf, veil_gguf_file_data(g), len);
		free(buf);
		veil_gguf_close(g);
	}
}

static void test_gguf_sha256_file_matches_known_digests(void **state)
{
	char path[4096], hex[65], tmpl[] = "/tmp/veil-gguf-sha-XXXXXX";
	uint8_t d[32];
	int fd;

	(void)state;
	fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "abc", 3), 3);
	close(fd);
	assert_int_equal(veil_gguf_sha256_file(tmpl, d), 0);
	unlink(tmpl);
	assert_int_equal(veil_hex_encode(d, 32, hex, sizeof(hex)), 0);
	/* FIPS 180-2 appendix B.1 */
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223"
				 "b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(veil_gguf_sha256_file("/nonexistent/veil.gguf", d),
			 VEIL_ENOENT);
	if (!shared_path("models/stories260K.gguf", path, sizeof(path)))
		skip();
	assert_int_equal(veil_gguf_sha256_file(path, d), 0);
	assert_int_equal(veil_hex_encode(d, 32, hex, sizeof(hex)), 0);
	/* PROVENANCE.txt */
	assert_string_equal(hex, "270cba1bd5109f42d03350f60406024560464db1"
				 "73c0e387d91f0426d3bd256d");
}

/* ---- hand-made files --------------------------------------------------- */

static void test_gguf_parses_small_hand_made_file(void **state)
{
	struct bb b;
	struct veil_gguf *g = NULL;
	const struct veil_gguf_tensor *t;
	const struct veil_gguf_kv *kv;
	struct veil_gguf_str s;

	(void)state;
	small_valid(&b);
	assert_int_equal(veil_gguf_parse(b.d, b.n, &g), 0);
	assert_int_equal(veil_gguf_n_kv(g), 3);
	assert_null(veil_gguf_kv_at(g, 3));
	kv = veil_gguf_find(g, "tokenizer.ggml.tokens");
	assert_non_null(kv);
	assert_int_equal(veil_gguf_arr_str(kv, 1, &s), 0);
	assert_int_equal(s.len, 2);
	assert_memory_equal(s.p, "bc", 2);
	assert_int_equal(veil_gguf_arr_str(kv, 2, &s), 0);
	assert_int_equal(s.len, 0);
	t = veil_gguf_tensor(g, "b");
	assert_non_null(t);
	assert_int_equal(t->size, 68);
	assert_int_equal(t->data[0], 0x22);
	assert_int_equal(t->data[67], 0x22);
	assert_ptr_equal(t->data, b.d + veil_gguf_data_offset(g) + 32);
	veil_gguf_close(g);
}

static void test_gguf_accepts_version_2(void **state)
{
	struct bb b;

	(void)state;
	small_valid(&b);
	b.d[4] = 2;
	assert_int_equal(parse_copy(b.d, b.n), 0);
}

static void test_gguf_rejects_every_truncation_of_a_valid_file(void **state)
{
	struct bb b;
	size_t last_tensor_end;

	(void)state;
	small_valid(&b);
	assert_int_equal(parse_copy(b.d, b.n), 0);
	/* Tensor b's data ends 28 bytes before the final padding; a file cut
	 * inside that padding is still complete. */
	last_tensor_end = b.n - 28;
	for (size_t n = 0; n < last_tensor_end; n++) {
		int rc = parse_copy(b.d, n);

		if (rc != VEIL_EFORMAT)
			fail_msg("prefix of %zu bytes: rc %d", n, rc);
		assert_true(veil_err_detail()[0] != '\0');
	}
	for (size_t n = last_tensor_end; n <= b.n; n++)
		assert_int_equal(parse_copy(b.d, n), 0);
}

static void test_gguf_rejects_wrong_magic(void **state)
{
	struct bb b;

	(void)state;
	small_valid(&b);
	b.d[0] = 'g';
	expect_fail(&b, VEIL_EFORMAT, "magic");
	assert_int_equal(veil_gguf_parse(NULL, 0, &(struct veil_gguf *){NULL}),
			 VEIL_EFORMAT);
}

static void test_gguf_rejects_versions_1_and_4(void **state)
{
	struct bb b;

	(void)state;
	small_valid(&b);
	b.d[4] = 1;
	expect_fail(&b, VEIL_ENOTSUP, "version 1");
	b.d[4] = 4;
	expect_fail(&b, VEIL_ENOTSUP, "version 4");
	b.d[4] = 0;
	b.d[7] = 3; /* a big-endian v3 file */
	expect_fail(&b, VEIL_ENOTSUP, "big-endian");
}

static void test_gguf_rejects_huge_kv_count(void **state)
{
	struct bb b = {.n = 0};

	(void)state;
	b_header(&b, 3, 0, UINT64_MAX);
	b_kv_u32(&b, "k", 1);
	expect_fail(&b, VEIL_EFORMAT, "kv count 18446744073709551615 exceeds");
	/* Plausible for the bytes present but over the cap. */
	size_t n = 24 + 13 * ((size_t)VEIL_GGUF_MAX_KV + 1);
	uint8_t *big = calloc(1, n);

	assert_non_null(big);
	b.n = 0;
	b_header(&b, 3, 0, VEIL_GGUF_MAX_KV + 1ull);
	memcpy(big, b.d, b.n);
	assert_int_equal(parse_copy(big, n), VEIL_ERANGE);
	assert_non_null(strstr(veil_err_detail(), "exceeds the cap"));
	free(big);
}

static void test_gguf_rejects_huge_tensor_count(void **state)
{
	struct bb b = {.n = 0};

	(void)state;
	b_header(&b, 3, UINT64_MAX / 2, 0);
	b_fill(&b, 64, 0);
	expect_fail(&b, VEIL_EFORMAT, "tensor count");
}

static void test_gguf_rejects_huge_string_length(void **state)
{
	struct bb b = {.n = 0};

	(void)state;
	b_header(&b, 3, 0, 1);
	b_str(&b, "general.name");
	b_u32(&b, VEIL_GGUF_STR);
	b_u64(&b, UINT64_MAX);
	b_bytes(&b, "abc", 3);
	expect_fail(&b, VEIL_EFORMAT, "key general.name: string length");
	/* A key whose own length runs past the end. */
	b.n = 0;
	b_header(&b, 3, 0, 1);
	b_u64(&b, 1u << 30);
	b_fill(&b, 16, 'a');
	expect_fail(&b, VEIL_EFORMAT, "kv 0 key");
}

static void test_gguf_rejects_huge_array_count(void **state)
{
	struct bb b = {.n = 0};

	(void)state;
	b_header(&b, 3, 0, 1);
	b_str(&b, "tokenizer.ggml.tokens");
	b_u32(&b, VEIL_GGUF_ARR);
	b_u32(&b, VEIL_GGUF_STR);
	b_u64(&b, UINT32_MAX);
	b_str(&b, "a");
	expect_fail(&b, VEIL_EFORMAT,
		    "key tokenizer.ggml.tokens: array of 4294967295 strings "
		    "exceeds remaining 9 bytes");
	/* Scalars: n * size must not wrap around. */
	b.n = 0;
	b_header(&b, 3, 0, 1);
	b_str(&b, "tokenizer.ggml.scores");
	b_u32(&b, VEIL_GGUF_ARR);
	b_u32(&b, VEIL_GGUF_F32);
	b_u64(&b, (UINT64_MAX / 4) + 2);
	b_fill(&b, 8, 0);
	expect_fail(&b, VEIL_EFORMAT, "key tokenizer.ggml.scores: array of");
}

static void test_gguf_rejects_nested_array(void **state)
{
	struct bb b = {.n = 0};

	(void)state;
	b_header(&b, 3, 0, 1);
	b_str(&b, "x.nested");
	b_u32(&b, VEIL_GGUF_ARR);
	b_u32(&b, VEIL_GGUF_ARR);
	b_u64(&b, 0);
	expect_fail(&b, VEIL_ENOTSUP, "key x.nested: nested");
}

static void test_gguf_rejects_unknown_value_type_and_bad_bool(void **state)
{
	struct bb b = {.n = 0};

	(void)state;
	b_header(&b, 3, 0, 1);
	b_str(&b, "x.t");
	b_u32(&b, 13);
	b_u32(&b, 0);
	expect_fail(&b, VEIL_EFORMAT, "key x.t: unknown value type 13");
	b.n = 0;
	b_header(&b, 3, 0, 1);
	b_str(&b, "x.b");
	b_u32(&b, VEIL_GGUF_BOOL);
	b_fill(&b, 1, 2);
	expect_fail(&b, VEIL_EFORMAT, "key x.b: bool");
}

static void test_gguf_rejects_duplicate_key(void **state)
{
	struct bb b = {.n = 0};

	(void)state;
	b_header(&b, 3, 0, 3);
	b_kv_u32(&b, "llama.block_count", 1);
	b_kv_str(&b, "general.name", "x");
	b_kv_u32(&b, "llama.block_count", 2);
	expect_fail(&b, VEIL_EFORMAT, "key llama.block_count: duplicate");
}

static void one_tensor(struct bb *b, const char *name, uint32_t n_dims,
		       const uint64_t *ne, uint32_t type, uint64_t offset,
		       size_t data)
{
	b->n = 0;
	b_header(b, 3, 1, 0);
	b_tinfo(b, name, n_dims, ne, type, offset);
	b_pad(b, 32);
	b_fill(b, data, 0);
}

static void test_gguf_rejects_n_dims_0_and_5(void **state)
{
	const uint64_t ne[5] = {4, 1, 1, 1, 1};
	struct bb b;

	(void)state;
	one_tensor(&b, "blk.0.attn_q.weight", 4, ne, VEIL_DT_F32, 0, 16);
	assert_int_equal(parse_copy(b.d, b.n), 0);
	one_tensor(&b, "blk.0.attn_q.weight", 0, ne, VEIL_DT_F32, 0, 16);
	expect_fail(&b, VEIL_EFORMAT, "tensor blk.0.attn_q.weight: n_dims 0");
	one_tensor(&b, "blk.0.attn_q.weight", 5, ne, VEIL_DT_F32, 0, 16);
	expect_fail(&b, VEIL_EFORMAT, "tensor blk.0.attn_q.weight: n_dims 5");
}

static void test_gguf_rejects_zero_dimension(void **state)
{
	const uint64_t ne[2] = {4, 0};
	struct bb b;

	(void)state;
	one_tensor(&b, "t0", 2, ne, VEIL_DT_F32, 0, 16);
	expect_fail(&b, VEIL_EFORMAT, "tensor t0: dimension 1 is 0");
}

static void test_gguf_rejects_misaligned_tensor_offset(void **state)
{
	const uint64_t ne[1] = {4};
	struct bb b;

	(void)state;
	one_tensor(&b, "blk.0.attn_q.weight", 1, ne, VEIL_DT_F32, 16, 64);
	expect_fail(&b, VEIL_EFORMAT,
		    "tensor blk.0.attn_q.weight: offset 16 not aligned to 32");
}

static void test_gguf_rejects_tensor_past_end_of_file(void **state)
{
	const uint64_t ne[1] = {8};
	struct bb b;

	(void)state;
	one_tensor(&b, "w", 1, ne, VEIL_DT_F32, 0, 31);
	expect_fail(&b, VEIL_EFORMAT, "tensor w: data");
	one_tensor(&b, "w", 1, ne, VEIL_DT_F32, 0, 32);
	assert_int_equal(parse_copy(b.d, b.n), 0);
	/* An offset so large that offset + size would wrap. */
	one_tensor(&b, "w", 1, ne, VEIL_DT_F32, UINT64_MAX - 31, 32);
	expect_fail(&b, VEIL_EFORMAT, "past end of file");
}

static void test_gguf_rejects_unknown_tensor_type(void **state)
{
	const uint64_t ne[1] = {256};
	struct bb b;

	(void)state;
	one_tensor(&b, "blk.0.ffn_up.weight", 1, ne, 16, 0, 256);
	expect_fail(&b, VEIL_ENOTSUP,
		    "tensor blk.0.ffn_up.weight: unsupported tensor type 16");
	one_tensor(&b, "x", 1, ne, 0x7fffffff, 0, 256);
	expect_fail(&b, VEIL_ENOTSUP, "type 2147483647");
}

static void test_gguf_rejects_row_not_multiple_of_block(void **state)
{
	const uint64_t ne[2] = {16, 2};
	struct bb b;

	(void)state;
	one_tensor(&b, "q", 2, ne, VEIL_DT_Q4_0, 0, 64);
	expect_fail(&b, VEIL_EFORMAT, "tensor q: row of 16 elements");
}

static void test_gguf_rejects_element_count_overflow(void **state)
{
	const uint64_t ne[4] = {1ull << 20, 1ull << 20, 1ull << 20, 1ull << 20};
	const uint64_t big[2] = {(uint64_t)INT64_MAX, 2};
	const uint64_t bytes[2] = {1ull << 31, 1ull << 31};
	struct bb b;

	(void)state;
	one_tensor(&b, "huge", 4, ne, VEIL_DT_F32, 0, 32);
	expect_fail(&b, VEIL_EFORMAT, "tensor huge: element count overflows");
	one_tensor(&b, "huge", 2, big, VEIL_DT_F32, 0, 32);
	expect_fail(&b, VEIL_EFORMAT, "tensor huge: element count overflows");
	/* Fits in int64 elements but not in bytes. */
	one_tensor(&b, "huge", 2, bytes, VEIL_DT_F32, 0, 32);
	expect_fail(&b, VEIL_EFORMAT, "tensor huge: byte size overflows");
}

static void test_gguf_rejects_duplicate_tensor_name(void **state)
{
	const uint64_t ne[1] = {8};
	struct bb b = {.n = 0};

	(void)state;
	b_header(&b, 3, 2, 0);
	b_tinfo(&b, "output.weight", 1, ne, VEIL_DT_F32, 0);
	b_tinfo(&b, "output.weight", 1, ne, VEIL_DT_F32, 32);
	b_pad(&b, 32);
	b_fill(&b, 64, 0);
	expect_fail(&b, VEIL_EFORMAT, "tensor output.weight: duplicate name");
}

static void test_gguf_rejects_bad_tensor_names(void **state)
{
	const uint64_t ne[1] = {8};
	char longname[VEIL_GGUF_MAX_NAME + 1];
	struct bb b;

	(void)state;
	one_tensor(&b, "", 1, ne, VEIL_DT_F32, 0, 32);
	expect_fail(&b, VEIL_EFORMAT, "empty name");
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	one_tensor(&b, longname, 1, ne, VEIL_DT_F32, 0, 32);
	expect_fail(&b, VEIL_ERANGE, "name of 256 bytes");
	one_tensor(&b, "ab", 1, ne, VEIL_DT_F32, 0, 32);
	b.d[24 + 8 + 1] = '\0'; /* "a\0" */
	expect_fail(&b, VEIL_EFORMAT, "NUL");
}

static void test_gguf_honours_general_alignment(void **state)
{
	const uint64_t ne[1] = {4};
	struct bb b = {.n = 0};
	struct veil_gguf *g = NULL;

	(void)state;
	b_header(&b, 3, 2, 1);
	b_kv_u32(&b, "general.alignment", 64);
	b_tinfo(&b, "a", 1, ne, VEIL_DT_F32, 0);
	b_tinfo(&b, "b", 1, ne, VEIL_DT_F32, 64);
	b_pad(&b, 64);
	b_fill(&b, 128, 0x5a);
	assert_int_equal(veil_gguf_parse(b.d, b.n, &g), 0);
	assert_int_equal(veil_gguf_alignment(g), 64);
	assert_int_equal(veil_gguf_data_offset(g) % 64, 0);
	veil_gguf_close(g);
	/* The same file with b at 32: fine under 32, not under 64. */
	b.n = 0;
	b_header(&b, 3, 2, 1);
	b_kv_u32(&b, "general.alignment", 64);
	b_tinfo(&b, "a", 1, ne, VEIL_DT_F32, 0);
	b_tinfo(&b, "b", 1, ne, VEIL_DT_F32, 32);
	b_pad(&b, 64);
	b_fill(&b, 128, 0x5a);
	expect_fail(&b, VEIL_EFORMAT, "tensor b: offset 32 not aligned to 64");
}

/* Two tensors sharing bytes (found by review: the private loader releases a
 * tensor's source pages once packed, so the other would read zeros). */
static void test_gguf_rejects_overlapping_tensors(void **state)
{
	const uint64_t ne[1] = {16}; /* 64 bytes of f32 */
	struct bb b = {.n = 0};
	struct veil_gguf *g = NULL;

	(void)state;
	b_header(&b, 3, 3, 0);
	b_tinfo(&b, "a", 1, ne, VEIL_DT_F32, 64);
	b_tinfo(&b, "b", 1, ne, VEIL_DT_F32, 0);
	b_tinfo(&b, "c", 1, ne, VEIL_DT_F32, 96);
	b_pad(&b, 32);
	b_fill(&b, 192, 0x5a);
	expect_fail(&b, VEIL_EFORMAT, "tensors a and c overlap");
	/* back to back is fine */
	b.n = 0;
	b_header(&b, 3, 3, 0);
	b_tinfo(&b, "a", 1, ne, VEIL_DT_F32, 64);
	b_tinfo(&b, "b", 1, ne, VEIL_DT_F32, 0);
	b_tinfo(&b, "c", 1, ne, VEIL_DT_F32, 128);
	b_pad(&b, 32);
	b_fill(&b, 192, 0x5a);
	assert_int_equal(veil_gguf_parse(b.d, b.n, &g), 0);
	veil_gguf_close(g);
}

static void test_gguf_rejects_non_power_of_two_alignment(void **state)
{
	struct bb b = {.n = 0};

	(void)state;
	b_header(&b, 3, 0, 1);
	b_kv_u32(&b, "general.alignment", 48);
	expect_fail(&b, VEIL_EFORMAT, "key general.alignment: 48 is not a power of two");
	b.n = 0;
	b_header(&b, 3, 0, 1);
	b_kv_u32(&b, "general.alignment", 0);
	expect_fail(&b, VEIL_EFORMAT, "key general.alignment: 0");
	b.n = 0;
	b_header(&b, 3, 0, 1);
	b_kv_str(&b, "general.alignment", "32");
	expect_fail(&b, VEIL_EFORMAT, "key general.alignment");
	/* powers of two below 8: tensor data misaligned for f32 (found by
	 * review: UBSan in the scalar kernels) */
	for (uint32_t a = 1; a < 8; a *= 2) {
		b.n = 0;
		b_header(&b, 3, 0, 1);
		b_kv_u32(&b, "general.alignment", a);
		expect_fail(&b, VEIL_EFORMAT, "is below 8");
	}
}

static void test_gguf_open_missing_file_is_enoent(void **state)
{
	struct veil_gguf *g = NULL;

	(void)state;
	assert_int_equal(veil_gguf_open("/nonexistent/veil/x.gguf", &g), VEIL_ENOENT);
	assert_null(g);
	assert_non_null(strstr(veil_err_detail(), "/nonexistent/veil/x.gguf"));
}

/* ---- writer ------------------------------------------------------------ */

static struct veil_gguf_kv mk_kv(const char *key, enum veil_gguf_vtype t)
{
	struct veil_gguf_kv kv;

	memset(&kv, 0, sizeof(kv));
	kv.key.p = key;
	kv.key.len = strlen(key);
	kv.type = t;
	return kv;
}

static void test_gguf_writer_round_trips_every_value_type(void **state)
{
	static const struct veil_gguf_str strs[3] = {
		{"<s>", 3}, {"", 0}, {"h\xc3\xa9llo", 6},
	};
	const float fa[3] = {0.5f, -1.25f, 3e38f};
	const int32_t ia[2] = {-7, 1 << 30};
	const uint64_t ne_a[2] = {32, 3}, ne_b[1] = {5};
	uint8_t data_a[3 * 34], data_b[20];
	struct veil_gguf_writer *w = NULL;
	struct veil_gguf *g = NULL;
	struct veil_gguf_kv kv;
	const struct veil_gguf_kv *r;
	const struct veil_gguf_tensor *t;
	struct veil_gguf_str s;
	const uint8_t *arr;
	char *buf = NULL;
	size_t len = 0;
	uint64_t n, u64;
	uint32_t u32;
	int32_t i32;
	float f;
	bool bo;
	FILE *f_out;

	(void)state;
	for (size_t i = 0; i < sizeof(data_a); i++)
		data_a[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < sizeof(data_b); i++)
		data_b[i] = (uint8_t)(255 - i);
	assert_int_equal(veil_gguf_writer_new(&w, 32), 0);
	assert_int_equal(veil_gguf_w_u32(w, "t.u32", 0xdeadbeef), 0);
	assert_int_equal(veil_gguf_w_i32(w, "t.i32", -123456), 0);
	assert_int_equal(veil_gguf_w_f32(w, "t.f32", 1e-5f), 0);
	assert_int_equal(veil_gguf_w_bool(w, "t.bool", true), 0);
	assert_int_equal(veil_gguf_w_str(w, "t.str", "hello", 5), 0);
	assert_int_equal(veil_gguf_w_str(w, "t.empty", "", 0), 0);
	assert_int_equal(veil_gguf_w_arr(w, "t.arr_f32", VEIL_GGUF_F32, fa, 3), 0);
	assert_int_equal(veil_gguf_w_arr(w, "t.arr_i32", VEIL_GGUF_I32, ia, 2), 0);
	assert_int_equal(veil_gguf_w_arr(w, "t.arr_empty", VEIL_GGUF_U8, NULL, 0), 0);
	assert_int_equal(veil_gguf_w_arr_str(w, "t.arr_str", strs, 3), 0);
	kv = mk_kv("t.u8", VEIL_GGUF_U8);
	kv.v.u64 = 200;
	assert_int_equal(veil_gguf_w_copy_kv(w, &kv), 0);
	kv = mk_kv("t.i8", VEIL_GGUF_I8);
	kv.v.i64 = -100;
	assert_int_equal(veil_gguf_w_copy_kv(w, &kv), 0);
	kv = mk_kv("t.u16", VEIL_GGUF_U16);
	kv.v.u64 = 65535;
	assert_int_equal(veil_gguf_w_copy_kv(w, &kv), 0);
	kv = mk_kv("t.i16", VEIL_GGUF_I16);
	kv.v.i64 = -32768;
	assert_int_equal(veil_gguf_w_copy_kv(w, &kv), 0);
	kv = mk_kv("t.u64", VEIL_GGUF_U64);
	kv.v.u64 = UINT64_MAX;
	assert_int_equal(veil_gguf_w_copy_kv(w, &kv), 0);
	kv = mk_kv("t.i64", VEIL_GGUF_I64);
	kv.v.i64 = INT64_MIN;
	assert_int_equal(veil_gguf_w_copy_kv(w, &kv), 0);
	kv = mk_kv("t.f64", VEIL_GGUF_F64);
	kv.v.f64 = 3.141592653589793;
	assert_int_equal(veil_gguf_w_copy_kv(w, &kv), 0);
	assert_int_equal(veil_gguf_w_tensor(w, "a.q8", VEIL_DT_Q8_0, 2, ne_a), 0);
	assert_int_equal(veil_gguf_w_tensor(w, "b.f32", VEIL_DT_F32, 1, ne_b), 0);

	f_out = open_memstream(&buf, &len);
	assert_non_null(f_out);
	assert_int_equal(veil_gguf_w_header(w, f_out), 0);
	assert_int_equal(veil_gguf_w_data(w, f_out, data_a, sizeof(data_a)), 0);
	assert_int_equal(veil_gguf_w_data(w, f_out, data_b, sizeof(data_b)), 0);
	assert_int_equal(fclose(f_out), 0);
	veil_gguf_writer_free(w);
	assert_int_equal(len % 32, 0);

	if (veil_gguf_parse((const uint8_t *)buf, len, &g) != 0)
		fail_msg("%s", veil_err_detail());
	assert_int_equal(veil_gguf_version(g), 3);
	assert_int_equal(veil_gguf_n_kv(g), 17);
	assert_int_equal(veil_gguf_kv_at(g, 0)->key.len, 5);
	assert_memory_equal(veil_gguf_kv_at(g, 0)->key.p, "t.u32", 5);
	assert_int_equal(veil_gguf_get_u32(g, "t.u32", &u32), 0);
	assert_int_equal(u32, 0xdeadbeef);
	assert_int_equal(veil_gguf_get_i32(g, "t.i32", &i32), 0);
	assert_int_equal(i32, -123456);
	assert_int_equal(veil_gguf_get_f32(g, "t.f32", &f), 0);
	assert_true(f == 1e-5f);
	assert_int_equal(veil_gguf_get_bool(g, "t.bool", &bo), 0);
	assert_true(bo);
	assert_int_equal(veil_gguf_get_str(g, "t.str", &s), 0);
	assert_int_equal(s.len, 5);
	assert_memory_equal(s.p, "hello", 5);
	assert_int_equal(veil_gguf_get_str(g, "t.empty", &s), 0);
	assert_int_equal(s.len, 0);
	assert_int_equal(veil_gguf_get_arr(g, "t.arr_f32", VEIL_GGUF_F32, &arr, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(arr, fa, sizeof(fa));
	assert_int_equal(veil_gguf_get_arr(g, "t.arr_i32", VEIL_GGUF_I32, &arr, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(arr, ia, sizeof(ia));
	assert_int_equal(veil_gguf_get_arr(g, "t.arr_empty", VEIL_GGUF_U8, &arr, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(veil_gguf_get_arr(g, "t.arr_f32", VEIL_GGUF_I32, &arr, &n),
			 VEIL_EFORMAT);
	r = veil_gguf_find(g, "t.arr_str");
	assert_non_null(r);
	for (uint64_t i = 0; i < 3; i++) {
		assert_int_equal(veil_gguf_arr_str(r, i, &s), 0);
		assert_int_equal(s.len, strs[i].len);
		assert_memory_equal(s.p, strs[i].p, s.len);
	}
	assert_int_equal(veil_gguf_find(g, "t.u8")->v.u64, 200);
	assert_int_equal(veil_gguf_find(g, "t.u8")->type, VEIL_GGUF_U8);
	assert_int_equal(veil_gguf_find(g, "t.i8")->v.i64, -100);
	assert_int_equal(veil_gguf_find(g, "t.u16")->v.u64, 65535);
	assert_int_equal(veil_gguf_find(g, "t.i16")->v.i64, -32768);
	assert_int_equal(veil_gguf_get_u64(g, "t.u64", &u64), 0);
	assert_true(u64 == UINT64_MAX);
	assert_true(veil_gguf_find(g, "t.i64")->v.i64 == INT64_MIN);
	assert_true(veil_gguf_find(g, "t.f64")->v.f64 == 3.141592653589793);

	assert_int_equal(veil_gguf_n_tensors(g), 2);
	t = veil_gguf_tensor_at(g, 0);
	assert_string_equal(t->name, "a.q8");
	assert_int_equal(t->type, VEIL_DT_Q8_0);
	assert_int_equal(t->n_dims, 2);
	assert_int_equal(t->ne[1], 3);
	assert_int_equal(t->size, sizeof(data_a));
	assert_memory_equal(t->data, data_a, sizeof(data_a));
	t = veil_gguf_tensor(g, "b.f32");
	assert_non_null(t);
	assert_int_equal(t->offset, 128); /* 102 bytes padded to 128 */
	assert_memory_equal(t->data, data_b, sizeof(data_b));
	veil_gguf_close(g);
	free(buf);
}

static void test_gguf_getters_convert_integers_and_check_types(void **state)
{
	struct veil_gguf_writer *w = NULL;
	struct veil_gguf *g = NULL;
	struct veil_gguf_kv kv;
	struct veil_gguf_str s;
	char *buf = NULL;
	size_t len = 0;
	uint32_t u32;
	uint64_t u64;
	int32_t i32;
	float f;
	bool bo;
	FILE *fo = open_memstream(&buf, &len);

	(void)state;
	assert_non_null(fo);
	assert_int_equal(veil_gguf_writer_new(&w, 0), 0);
	assert_int_equal(veil_gguf_w_i32(w, "neg", -1), 0);
	assert_int_equal(veil_gguf_w_i32(w, "pos", 42), 0);
	kv = mk_kv("big", VEIL_GGUF_U64);
	kv.v.u64 = 1ull << 32;
	assert_int_equal(veil_gguf_w_copy_kv(w, &kv), 0);
	kv = mk_kv("eps", VEIL_GGUF_F64);
	kv.v.f64 = 0.25;
	assert_int_equal(veil_gguf_w_copy_kv(w, &kv), 0);
	assert_int_equal(veil_gguf_w_str(w, "name", "x", 1), 0);
	assert_int_equal(veil_gguf_w_header(w, fo), 0);
	assert_int_equal(fclose(fo), 0);
	veil_gguf_writer_free(w);
	assert_int_equal(veil_gguf_parse((const uint8_t *)buf, len, &g), 0);

	assert_int_equal(veil_gguf_get_u32(g, "pos", &u32), 0);
	assert_int_equal(u32, 42);
	assert_int_equal(veil_gguf_get_u64(g, "pos", &u64), 0);
	assert_int_equal(u64, 42);
	assert_int_equal(veil_gguf_get_u32(g, "neg", &u32), VEIL_EFORMAT);
	assert_non_null(strstr(veil_err_detail(), "neg"));
	assert_int_equal(veil_gguf_get_i32(g, "neg", &i32), 0);
	assert_int_equal(i32, -1);
	assert_int_equal(veil_gguf_get_u32(g, "big", &u32), VEIL_EFORMAT);
	assert_int_equal(veil_gguf_get_i32(g, "big", &i32), VEIL_EFORMAT);
	assert_int_equal(veil_gguf_get_u64(g, "big", &u64), 0);
	assert_true(u64 == 1ull << 32);
	assert_int_equal(veil_gguf_get_f32(g, "eps", &f), 0);
	assert_true(f == 0.25f);
	assert_int_equal(veil_gguf_get_f32(g, "pos", &f), VEIL_EFORMAT);
	assert_int_equal(veil_gguf_get_u32(g, "name", &u32), VEIL_EFORMAT);
	assert_int_equal(veil_gguf_get_bool(g, "name", &bo), VEIL_EFORMAT);
	assert_int_equal(veil_gguf_get_str(g, "pos", &s), VEIL_EFORMAT);
	assert_int_equal(veil_gguf_get_u32(g, "absent", &u32), VEIL_ENOENT);
	assert_int_equal(veil_gguf_arr_str(veil_gguf_find(g, "name"), 0, &s),
			 VEIL_EINVAL);
	veil_gguf_close(g);
	free(buf);
}

static void test_gguf_writer_rejects_misuse(void **state)
{
	const uint64_t ne[1] = {32}, bad[1] = {33};
	struct veil_gguf_writer *w = NULL;
	struct veil_gguf *g = NULL;
	uint8_t data[34] = {0};
	char *buf = NULL;
	size_t len = 0;
	FILE *fo = open_memstream(&buf, &len);

	(void)state;
	assert_non_null(fo);
	assert_int_equal(veil_gguf_writer_new(&w, 48), VEIL_EINVAL);
	assert_int_equal(veil_gguf_writer_new(&w, 32), 0);
	assert_int_equal(veil_gguf_w_u32(w, "k", 1), 0);
	assert_int_equal(veil_gguf_w_str(w, "k", "x", 1), VEIL_EINVAL);
	assert_int_equal(veil_gguf_w_u32(w, "general.alignment", 64), VEIL_EINVAL);
	assert_int_equal(veil_gguf_w_arr(w, "a", VEIL_GGUF_STR, data, 1), VEIL_EINVAL);
	assert_int_equal(veil_gguf_w_tensor(w, "t", VEIL_DT_Q8_0, 1, bad), VEIL_EINVAL);
	assert_int_equal(veil_gguf_w_tensor(w, "t", (enum veil_dtype)16, 1, ne),
			 VEIL_ENOTSUP);
	assert_int_equal(veil_gguf_w_tensor(w, "t", VEIL_DT_Q8_0, 0, ne), VEIL_EINVAL);
	assert_int_equal(veil_gguf_w_tensor(w, "t", VEIL_DT_Q8_0, 1, ne), 0);
	assert_int_equal(veil_gguf_w_tensor(w, "t", VEIL_DT_Q8_0, 1, ne), VEIL_EINVAL);
	assert_int_equal(veil_gguf_w_data(w, fo, data, 34), VEIL_EINVAL);
	assert_int_equal(veil_gguf_w_header(w, fo), 0);
	assert_int_equal(veil_gguf_w_header(w, fo), VEIL_EINVAL);
	assert_int_equal(veil_gguf_w_u32(w, "late", 1), VEIL_EINVAL);
	assert_int_equal(veil_gguf_w_data(w, fo, data, 33), VEIL_EINVAL);
	assert_int_equal(veil_gguf_w_data(w, fo, data, 34), 0);
	assert_int_equal(veil_gguf_w_data(w, fo, data, 34), VEIL_EINVAL);
	assert_int_equal(fclose(fo), 0);
	veil_gguf_writer_free(w);
	/* Failed adds left nothing behind: the file parses with one kv. */
	assert_int_equal(veil_gguf_parse((const uint8_t *)buf, len, &g), 0);
	assert_int_equal(veil_gguf_n_kv(g), 1);
	assert_int_equal(veil_gguf_n_tensors(g), 1);
	veil_gguf_close(g);
	free(buf);
}

static void test_gguf_writer_records_non_default_alignment(void **state)
{
	const uint64_t ne[1] = {3};
	const float d[3] = {1, 2, 3};
	struct veil_gguf_writer *w = NULL;
	struct veil_gguf *g = NULL;
	char *buf = NULL;
	size_t len = 0;
	uint32_t a = 0;
	FILE *fo = open_memstream(&buf, &len);

	(void)state;
	assert_non_null(fo);
	assert_int_equal(veil_gguf_writer_new(&w, 128), 0);
	assert_int_equal(veil_gguf_w_str(w, "general.name", "n", 1), 0);
	assert_int_equal(veil_gguf_w_tensor(w, "x", VEIL_DT_F32, 1, ne), 0);
	assert_int_equal(veil_gguf_w_header(w, fo), 0);
	assert_int_equal(veil_gguf_w_data(w, fo, d, sizeof(d)), 0);
	assert_int_equal(fclose(fo), 0);
	veil_gguf_writer_free(w);
	assert_int_equal(len % 128, 0);
	assert_int_equal(veil_gguf_parse((const uint8_t *)buf, len, &g), 0);
	assert_int_equal(veil_gguf_get_u32(g, "general.alignment", &a), 0);
	assert_int_equal(a, 128);
	assert_int_equal(veil_gguf_alignment(g), 128);
	assert_int_equal(veil_gguf_data_offset(g) % 128, 0);
	assert_memory_equal(veil_gguf_tensor(g, "x")->data, d, sizeof(d));
	veil_gguf_close(g);
	free(buf);
}

/* The writer's output for the hand-made small file is byte-identical to
 * the hand layout (which follows the spec, not the writer's code). */
static void test_gguf_writer_matches_hand_layout(void **state)
{
	static const struct veil_gguf_str toks[3] = {{"a", 1}, {"bc", 2}, {"", 0}};
	const uint64_t ne_a[1] = {4}, ne_b[2] = {32, 2};
	uint8_t da[16], db[68];
	struct veil_gguf_writer *w = NULL;
	struct bb b;
	char *buf = NULL;
	size_t len = 0;
	FILE *fo = open_memstream(&buf, &len);

	(void)state;
	memset(da, 0x11, sizeof(da));
	memset(db, 0x22, sizeof(db));
	small_valid(&b);
	assert_int_equal(veil_gguf_writer_new(&w, 32), 0);
	assert_int_equal(veil_gguf_w_str(w, "general.architecture", "llama", 5), 0);
	assert_int_equal(veil_gguf_w_u32(w, "llama.block_count", 1), 0);
	assert_int_equal(veil_gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, 3), 0);
	assert_int_equal(veil_gguf_w_tensor(w, "a", VEIL_DT_F32, 1, ne_a), 0);
	assert_int_equal(veil_gguf_w_tensor(w, "b", VEIL_DT_Q8_0, 2, ne_b), 0);
	assert_int_equal(veil_gguf_w_header(w, fo), 0);
	assert_int_equal(veil_gguf_w_data(w, fo, da, sizeof(da)), 0);
	assert_int_equal(veil_gguf_w_data(w, fo, db, sizeof(db)), 0);
	assert_int_equal(fclose(fo), 0);
	veil_gguf_writer_free(w);
	assert_int_equal(len, b.n);
	assert_memory_equal(buf, b.d, b.n);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dtype_traits_match_ggml),
		cmocka_unit_test(test_dtype_parse_is_case_insensitive_and_rejects_unknown),
		cmocka_unit_test(test_dtype_row_bytes_checks_block_multiple),
		cmocka_unit_test(test_gguf_reads_stories260k_shapes_and_data_offset),
		cmocka_unit_test(test_gguf_reads_tiny_synth_f16),
		cmocka_unit_test(test_gguf_reads_vocab_only_files_with_no_tensors),
		cmocka_unit_test(test_gguf_writer_reproduces_real_files_byte_for_byte),
		cmocka_unit_test(test_gguf_sha256_file_matches_known_digests),
		cmocka_unit_test(test_gguf_parses_small_hand_made_file),
		cmocka_unit_test(test_gguf_accepts_version_2),
		cmocka_unit_test(test_gguf_rejects_every_truncation_of_a_valid_file),
		cmocka_unit_test(test_gguf_rejects_wrong_magic),
		cmocka_unit_test(test_gguf_rejects_versions_1_and_4),
		cmocka_unit_test(test_gguf_rejects_huge_kv_count),
		cmocka_unit_test(test_gguf_rejects_huge_tensor_count),
		cmocka_unit_test(test_gguf_rejects_huge_string_length),
		cmocka_unit_test(test_gguf_rejects_huge_array_count),
		cmocka_unit_test(test_gguf_rejects_nested_array),
		cmocka_unit_test(test_gguf_rejects_unknown_value_type_and_bad_bool),
		cmocka_unit_test(test_gguf_rejects_duplicate_key),
		cmocka_unit_test(test_gguf_rejects_n_dims_0_and_5),
		cmocka_unit_test(test_gguf_rejects_zero_dimension),
		cmocka_unit_test(test_gguf_rejects_misaligned_tensor_offset),
		cmocka_unit_test(test_gguf_rejects_tensor_past_end_of_file),
		cmocka_unit_test(test_gguf_rejects_unknown_tensor_type),
		cmocka_unit_test(test_gguf_rejects_row_not_multiple_of_block),
		cmocka_unit_test(test_gguf_rejects_element_count_overflow),
		cmocka_unit_test(test_gguf_rejects_duplicate_tensor_name),
		cmocka_unit_test(test_gguf_rejects_bad_tensor_names),
		cmocka_unit_test(test_gguf_honours_general_alignment),
		cmocka_unit_test(test_gguf_rejects_non_power_of_two_alignment),
		cmocka_unit_test(test_gguf_rejects_overlapping_tensors),
		cmocka_unit_test(test_gguf_open_missing_file_is_enoent),
		cmocka_unit_test(test_gguf_writer_round_trips_every_value_type),
		cmocka_unit_test(test_gguf_getters_convert_integers_and_check_types),
		cmocka_unit_test(test_gguf_writer_rejects_misuse),
		cmocka_unit_test(test_gguf_writer_records_non_default_alignment),
		cmocka_unit_test(test_gguf_writer_matches_hand_layout),
		cmocka_unit_test(test_gguf_private_load_digests_and_is_immune_to_file_writes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
