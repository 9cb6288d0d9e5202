/* GGUF v2/v3 reader (over mmap or a caller's buffer) and writer.
 *
 * The reader trusts nothing: every length, count, offset, type and alignment
 * is checked against the file before use; a malformed file yields
 * VEIL_EFORMAT (or VEIL_ENOTSUP for a valid but unsupported tensor type) with
 * veil_err_detail() naming the key or tensor at fault.
 *
 * Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md */
#ifndef VEIL_GGUF_H
#define VEIL_GGUF_H

#include "veil/base.h"

/* ggml tensor types, numbered as in ggml.h (the numbers are on disk). */
enum veil_dtype {
	VEIL_DT_F32 = 0,
	VEIL_DT_F16 = 1,
	VEIL_DT_Q4_0 = 2,
	VEIL_DT_Q4_1 = 3,
	VEIL_DT_Q5_0 = 6,
	VEIL_DT_Q5_1 = 7,
	VEIL_DT_Q8_0 = 8,
	VEIL_DT_Q8_1 = 9,
	VEIL_DT_Q2_K = 10,
	VEIL_DT_Q3_K = 11,
	VEIL_DT_Q4_K = 12,
	VEIL_DT_Q5_K = 13,
	VEIL_DT_Q6_K = 14,
	VEIL_DT_Q8_K = 15,
	VEIL_DT_BF16 = 30,
	VEIL_DT_COUNT = 40, /* upper bound for tables indexed by type */
};

/* Elements per block and bytes per block; 0 for unknown or unsupported
 * types (the engine supports F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K and uses
 * Q8_K internally for activations). */
size_t veil_dtype_block_elems(enum veil_dtype t);
size_t veil_dtype_block_bytes(enum veil_dtype t);
/* "f32", "q4_0", "q6_k", ...; "?" when unknown. */
const char *veil_dtype_name(enum veil_dtype t);
/* Parses a name as above (case-insensitive); -1 when unknown. */
int veil_dtype_parse(const char *name);
/* Bytes for a row of n elements; VEIL_EFORMAT if n is not a multiple of the
 * block size, VEIL_ENOTSUP for an unsupported type. */
int veil_dtype_row_bytes(enum veil_dtype t, uint64_t n, size_t *out);

/* GGUF metadata value types (on disk). */
enum veil_gguf_vtype {
	VEIL_GGUF_U8 = 0,
	VEIL_GGUF_I8 = 1,
	VEIL_GGUF_U16 = 2,
	VEIL_GGUF_I16 = 3,
	VEIL_GGUF_U32 = 4,
	VEIL_GGUF_I32 = 5,
	VEIL_GGUF_F32 = 6,
	VEIL_GGUF_BOOL = 7,
	VEIL_GGUF_STR = 8,
	VEIL_GGUF_ARR = 9,
	VEIL_GGUF_U64 = 10,
	VEIL_GGUF_I64 = 11,
	VEIL_GGUF_F64 = 12,
};

/* Limits that keep a hostile file from exhausting memory. */
#define VEIL_GGUF_MAX_KV 65536u
#define VEIL_GGUF_MAX_TENSORS 65536u
#define VEIL_GGUF_MAX_STR (64u << 20)     /* one string */
#define VEIL_GGUF_MAX_ARR (64u << 20)     /* elements in one array */
#define VEIL_GGUF_MAX_NAME 256u           /* tensor name (ggml: 64) */
#define VEIL_GGUF_MAX_DIMS 4u

/* A string inside the file: not NUL-terminated. */
struct veil_gguf_str {
	const char *p;
	uint64_t len;
};

struct veil_gguf_kv {
	struct veil_gguf_str key;
	enum veil_gguf_vtype type;
	/* Scalars are decoded; strings point into the file; arrays give the
	 * element type, count and a pointer to the raw (little-endian) data.
	 * For arrays of strings, use veil_gguf_arr_str(); their arr.data
	 * is the reader's index (n struct veil_gguf_str), not file bytes.
	 * Scalar array data is not necessarily aligned: memcpy from it. */
	union {
		uint64_t u64;
		int64_t i64;
		double f64;
		bool b;
		struct veil_gguf_str str;
		struct {
			enum veil_gguf_vtype type;
			uint64_t n;
			const uint8_t *data;
		} arr;
	} v;
};

struct veil_gguf_tensor {
	char name[VEIL_GGUF_MAX_NAME];  /* NUL-terminated copy */
	uint32_t n_dims;
	uint64_t ne[VEIL_GGUF_MAX_DIMS];    /* ne[0] is the contiguous dim; unused = 1 */
	enum veil_dtype type;
	uint64_t offset;                /* relative to the data section */
	size_t size;                    /* bytes, from type and shape */
	const uint8_t *data;            /* inside the mapping; 32-byte (or
					   general.alignment) aligned */
};

/* The parsed file.  Owns its mapping (or borrows the caller's buffer); all
 * pointers handed out stay valid until veil_gguf_close(). */
struct veil_gguf;

/* Maps and parses path (a read-only MAP_PRIVATE file mapping: pages not yet
 * read, or evicted, come from the file as it is then, so whoever can write
 * the file can change what a later read sees).  For tools (`veil model
 * ...`); a server whose answers are attested loads with
 * veil_gguf_open_private() instead.  On failure veil_err_detail() says why. */
int veil_gguf_open(const char *path, struct veil_gguf **out);

/* Digests of exactly the bytes loaded (the whole file). */
struct veil_gguf_digests {
	uint8_t sha256[32];
	uint8_t sha384[48];
};

/* Reads path once, with large read(2)s, into private anonymous memory
 * (read-only once filled), computing SHA-256 and SHA-384 in the same pass,
 * then parses that copy.  The result never looks at the file again, so the
 * digests describe exactly the bytes served however the file changes later
 * (TOCTOU: see docs/security.md).  A file whose size changes while it is
 * read is VEIL_EIO.  Costs the file's size in resident anonymous memory
 * instead of page cache.  dg may be NULL. */
int veil_gguf_open_private(const char *path, struct veil_gguf_digests *dg,
			   struct veil_gguf **out);
/* The same digests of a file, streamed (nothing kept): for a node that only
 * measures a model it does not serve. */
int veil_gguf_digest_file(const char *path, struct veil_gguf_digests *dg);
/* True for a result of veil_gguf_open_private(). */
bool veil_gguf_is_private(const struct veil_gguf *g);
/* Parses a caller-owned buffer (which must outlive the result); the fuzzer
 * calls exactly this. */
int veil_gguf_parse(const uint8_t *p, size_t n, struct veil_gguf **out);
void veil_gguf_close(struct veil_gguf *g);

uint32_t veil_gguf_version(const struct veil_gguf *g);
size_t veil_gguf_file_size(const struct veil_gguf *g);
const uint8_t *veil_gguf_file_data(const struct veil_gguf *g);
/* Start of the tensor data section (file offset) and alignment. */
uint64_t veil_gguf_data_offset(const struct veil_gguf *g);
uint32_t veil_gguf_alignment(const struct veil_gguf *g);

size_t veil_gguf_n_kv(const struct veil_gguf *g);
const struct veil_gguf_kv *veil_gguf_kv_at(const struct veil_gguf *g, size_t i);
/* NULL when absent. */
const struct veil_gguf_kv *veil_gguf_find(const struct veil_gguf *g,
					  const char *key);

/* Typed getters: VEIL_ENOENT when absent, VEIL_EFORMAT (detail names the key)
 * when present with an incompatible type.  Integer getters accept any
 * integer type whose value fits; f32 accepts F32 and F64. */
int veil_gguf_get_u32(const struct veil_gguf *g, const char *key, uint32_t *out);
int veil_gguf_get_u64(const struct veil_gguf *g, const char *key, uint64_t *out);
int veil_gguf_get_i32(const struct veil_gguf *g, const char *key, int32_t *out);
int veil_gguf_get_f32(const struct veil_gguf *g, const char *key, float *out);
int veil_gguf_get_bool(const struct veil_gguf *g, const char *key, bool *out);
int veil_gguf_get_str(const struct veil_gguf *g, const char *key,
		      struct veil_gguf_str *out);
/* Array getters: element type must match; *out points into the file. */
int veil_gguf_get_arr(const struct veil_gguf *g, const char *key,
		      enum veil_gguf_vtype elem, const uint8_t **data, uint64_t *n);
/* The i-th string of a string array (bounds-checked, O(1) after the first
 * call: the reader indexes string arrays at parse time). */
int veil_gguf_arr_str(const struct veil_gguf_kv *kv, uint64_t i,
		      struct veil_gguf_str *out);

size_t veil_gguf_n_tensors(const struct veil_gguf *g);
const struct veil_gguf_tensor *veil_gguf_tensor_at(const struct veil_gguf *g,
						   size_t i);
/* NULL when absent. */
const struct veil_gguf_tensor *veil_gguf_tensor(const struct veil_gguf *g,
						const char *name);

/* SHA-256 of a whole file (streamed, not mapped), for `model info` and
 * manifests.  VEIL_ENOENT / VEIL_EIO with the path in the detail. */
int veil_gguf_sha256_file(const char *path, uint8_t out[32]);

/* ---- writer ------------------------------------------------------------ */

/* Builds a GGUF v3 file: metadata first, then tensor infos, then data, in the
 * order they are added (callers add in a fixed order so output is
 * reproducible).  Tensor data is streamed: add every tensor's shape first,
 * then write header, then write each tensor's bytes in the same order. */
struct veil_gguf_writer;

/* alignment 0 means the default 32; another power of two is recorded as
 * general.alignment (appended after the caller's keys unless the caller
 * added it, with the same value, itself). */
int veil_gguf_writer_new(struct veil_gguf_writer **out, uint32_t alignment);
void veil_gguf_writer_free(struct veil_gguf_writer *w);
int veil_gguf_w_u32(struct veil_gguf_writer *w, const char *key, uint32_t v);
int veil_gguf_w_i32(struct veil_gguf_writer *w, const char *key, int32_t v);
int veil_gguf_w_f32(struct veil_gguf_writer *w, const char *key, float v);
int veil_gguf_w_bool(struct veil_gguf_writer *w, const char *key, bool v);
int veil_gguf_w_str(struct veil_gguf_writer *w, const char *key, const char *s,
		    size_t len);
/* Array of scalars: `data` holds n little-endian elements of `elem`. */
int veil_gguf_w_arr(struct veil_gguf_writer *w, const char *key,
		    enum veil_gguf_vtype elem, const void *data, uint64_t n);
/* Array of strings. */
int veil_gguf_w_arr_str(struct veil_gguf_writer *w, const char *key,
			const struct veil_gguf_str *strs, uint64_t n);
/* Copies a key/value from a parsed file (any type, arrays included). */
int veil_gguf_w_copy_kv(struct veil_gguf_writer *w, const struct veil_gguf_kv *kv);
int veil_gguf_w_tensor(struct veil_gguf_writer *w, const char *name,
		       enum veil_dtype type, uint32_t n_dims, const uint64_t *ne);
/* Writes magic, version, counts, metadata, tensor infos and padding. */
int veil_gguf_w_header(struct veil_gguf_writer *w, FILE *f);
/* Writes the next tensor's data (exactly its size) plus alignment padding. */
int veil_gguf_w_data(struct veil_gguf_writer *w, FILE *f, const void *data,
		     size_t len);

#endif
