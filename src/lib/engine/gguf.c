/* GGUF v2/v3 reader and v3 writer.
 *
 * Format (ggml docs/gguf.md): a little-endian file of
 *   header   magic "GGUF", u32 version, u64 tensor_count, u64 kv_count
 *   kv       kv_count x { string key, u32 value_type, value }
 *   infos    tensor_count x { string name, u32 n_dims, u64 ne[n_dims],
 *                             u32 type, u64 offset }
 *   padding  zeros up to general.alignment (default 32)
 *   data     each tensor at data_start + offset, offsets aligned
 * where string = { u64 len, len bytes } and an array value is
 * { u32 elem_type, u64 n, n elements }.  v1 used u32 counts and lengths; it
 * predates every model we load and is refused.
 *
 * The reader checks every length against the bytes that remain before it
 * uses it, so a parse never reads outside (p, n); caps in gguf.h bound what a
 * hostile file can make us allocate. */
#include "veil/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_HEADER_BYTES 24u
#define GGUF_DEFAULT_ALIGN 32u
#define GGUF_KEY_ALIGN "general.alignment"

/* ---- dtype traits ------------------------------------------------------ */

struct dtype_traits {
	const char *name;
	uint32_t blk;   /* elements per block */
	uint32_t bytes; /* bytes per block */
};

/* Block layouts as in ggml-common.h: e.g. block_q8_0 = f16 d + 32 x i8 (34),
 * block_q4_K = 2 x f16 + 12 scale bytes + 128 nibble bytes (144),
 * block_q8_K = f32 d + 256 x i8 + 16 x i16 sums (292). */
static const struct dtype_traits dtypes[VEIL_DT_COUNT] = {
	[VEIL_DT_F32] = {"f32", 1, 4},
	[VEIL_DT_F16] = {"f16", 1, 2},
	[VEIL_DT_Q4_0] = {"q4_0", 32, 18},
	[VEIL_DT_Q4_1] = {"q4_1", 32, 20},
	[VEIL_DT_Q5_0] = {"q5_0", 32, 22},
	[VEIL_DT_Q5_1] = {"q5_1", 32, 24},
	[VEIL_DT_Q8_0] = {"q8_0", 32, 34},
	[VEIL_DT_Q8_1] = {"q8_1", 32, 36},
	[VEIL_DT_Q2_K] = {"q2_k", 256, 84},
	[VEIL_DT_Q3_K] = {"q3_k", 256, 110},
	[VEIL_DT_Q4_K] = {"q4_k", 256, 144},
	[VEIL_DT_Q5_K] = {"q5_k", 256, 176},
	[VEIL_DT_Q6_K] = {"q6_k", 256, 210},
	[VEIL_DT_Q8_K] = {"q8_k", 256, 292},
	[VEIL_DT_BF16] = {"bf16", 1, 2},
};

static const struct dtype_traits *dtype_get(enum veil_dtype t)
{
	if ((unsigned)t >= VEIL_DT_COUNT || !dtypes[t].name)
		return NULL;
	return &dtypes[t];
}

size_t veil_dtype_block_elems(enum veil_dtype t)
{
	const struct dtype_traits *d = dtype_get(t);

	return d ? d->blk : 0;
}

size_t veil_dtype_block_bytes(enum veil_dtype t)
{
	const struct dtype_traits *d = dtype_get(t);

	return d ? d->bytes : 0;
}

const char *veil_dtype_name(enum veil_dtype t)
{
	const struct dtype_traits *d = dtype_get(t);

	return d ? d->name : "?";
}

int veil_dtype_parse(const char *name)
{
	if (!name)
		return -1;
	for (int i = 0; i < VEIL_DT_COUNT; i++)
		if (dtypes[i].name && !strcasecmp(dtypes[i].name, name))
			return i;
	return -1;
}

int veil_dtype_row_bytes(enum veil_dtype t, uint64_t n, size_t *out)
{
	const struct dtype_traits *d = dtype_get(t);
	size_t r;

	if (!d)
		return veil_errf(VEIL_ENOTSUP, "tensor type %d not supported",
				 (int)t);
	if (n % d->blk)
		return veil_errf(VEIL_EFORMAT,
				 "%llu elements is not a multiple of the %s "
				 "block size %u",
				 (unsigned long long)n, d->name, d->blk);
	if (n / d->blk > SIZE_MAX || veil_mul_ovf((size_t)(n / d->blk), d->bytes, &r))
		return veil_errf(VEIL_EOVERFLOW, "%llu %s elements overflow a size",
				 (unsigned long long)n, d->name);
	*out = r;
	return 0;
}

/* ---- little-endian helpers --------------------------------------------- */

static uint16_t ld16(const uint8_t *b)
{
	return (uint16_t)(b[0] | (b[1] << 8));
}

static uint32_t ld32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

static uint64_t ld64(const uint8_t *b)
{
	return (uint64_t)ld32(b) | (uint64_t)ld32(b + 4) << 32;
}

static void st32(uint8_t *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static void st64(uint8_t *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

/* Size of one scalar element, 0 for STR/ARR/unknown. */
static size_t vtype_size(uint32_t t)
{
	switch (t) {
	case VEIL_GGUF_U8:
	case VEIL_GGUF_I8:
	case VEIL_GGUF_BOOL:
		return 1;
	case VEIL_GGUF_U16:
	case VEIL_GGUF_I16:
		return 2;
	case VEIL_GGUF_U32:
	case VEIL_GGUF_I32:
	case VEIL_GGUF_F32:
		return 4;
	case VEIL_GGUF_U64:
	case VEIL_GGUF_I64:
	case VEIL_GGUF_F64:
		return 8;
	default:
		return 0;
	}
}

static bool vtype_known(uint32_t t)
{
	return t <= VEIL_GGUF_F64;
}

/* A key or tensor name made safe to put in an error message: printable
 * ASCII only, at most 96 bytes (names are file content we do not trust). */
struct safe_name {
	char s[100];
};

static struct safe_name safe(const char *p, uint64_t len)
{
	struct safe_name r;
	size_t k = 0;

	for (uint64_t i = 0; i < len && k < 96; i++, k++)
		r.s[k] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
	if (len > 96) {
		memcpy(r.s + k, "...", 3);
		k += 3;
	}
	r.s[k] = '\0';
	return r;
}

/* ---- hash index over names --------------------------------------------- */

/* Open addressing, slots hold index+1 (0 = empty).  Duplicate detection in a
 * file with tens of thousands of names must not be quadratic. */
struct name_index {
	uint32_t *slot;
	size_t mask;
};

static uint64_t name_hash(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static int name_index_init(struct name_index *ix, size_t n)
{
	size_t cap = 16;

	while (cap < 2 * n)
		cap <<= 1;
	ix->slot = calloc(cap, sizeof(*ix->slot));
	if (!ix->slot)
		return VEIL_ENOMEM;
	ix->mask = cap - 1;
	return 0;
}

/* ---- reader ------------------------------------------------------------ */

struct veil_gguf {
	const uint8_t *p;
	size_t n;
	void *map;        /* our mapping, NULL when the buffer is the caller's */
	size_t map_len;
	bool priv;        /* map is an anonymous copy, not the file */
	uint32_t version;
	uint32_t alignment;
	uint64_t data_offset;
	size_t n_kv;
	struct veil_gguf_kv *kv;
	size_t n_tensors;
	struct veil_gguf_tensor *tensors;
	struct name_index kv_ix;
	struct name_index t_ix;
};

struct cur {
	const uint8_t *p;
	size_t n;
	size_t off;
};

static size_t left(const struct cur *c)
{
	return c->n - c->off;
}

/* Reads a fixed-size field; `what` names it for the error. */
static int rd_fixed(struct cur *c, size_t k, const uint8_t **out,
		    const char *what)
{
	if (k > left(c))
		return veil_errf(VEIL_EFORMAT,
				 "%s: needs %zu bytes at offset %zu, %zu remain",
				 what, k, c->off, left(c));
	*out = c->p + c->off;
	c->off += k;
	return 0;
}

static int rd_u32(struct cur *c, uint32_t *v, const char *what)
{
	const uint8_t *b = NULL;
	int rc = rd_fixed(c, 4, &b, what);

	if (rc == 0)
		*v = ld32(b);
	return rc;
}

static int rd_u64(struct cur *c, uint64_t *v, const char *what)
{
	const uint8_t *b = NULL;
	int rc = rd_fixed(c, 8, &b, what);

	if (rc == 0)
		*v = ld64(b);
	return rc;
}

static int rd_str(struct cur *c, struct veil_gguf_str *s, const char *what)
{
	uint64_t len = 0;
	int rc;

	if ((rc = rd_u64(c, &len, what)) < 0)
		return rc;
	if (len > left(c))
		return veil_errf(VEIL_EFORMAT,
				 "%s: string length %llu exceeds remaining %zu bytes",
				 what, (unsigned long long)len, left(c));
	if (len > VEIL_GGUF_MAX_STR)
		return veil_errf(VEIL_ERANGE,
				 "%s: string length %llu exceeds the cap %u",
				 what, (unsigned long long)len, VEIL_GGUF_MAX_STR);
	s->p = (const char *)c->p + c->off;
	s->len = len;
	c->off += (size_t)len;
	return 0;
}

/* Decodes one value of type t (not an array) into kv->v. */
static int rd_scalar(struct cur *c, uint32_t t, struct veil_gguf_kv *kv,
		     const char *what)
{
	const uint8_t *b = NULL;
	size_t sz = vtype_size(t);
	uint32_t u32;
	uint64_t u64;
	float f;
	int rc;

	if (t == VEIL_GGUF_STR)
		return rd_str(c, &kv->v.str, what);
	if ((rc = rd_fixed(c, sz, &b, what)) < 0)
		return rc;
	switch (t) {
	case VEIL_GGUF_U8: kv->v.u64 = b[0]; break;
	case VEIL_GGUF_I8: kv->v.i64 = (int8_t)b[0]; break;
	case VEIL_GGUF_U16: kv->v.u64 = ld16(b); break;
	case VEIL_GGUF_I16: kv->v.i64 = (int16_t)ld16(b); break;
	case VEIL_GGUF_U32: kv->v.u64 = ld32(b); break;
	case VEIL_GGUF_I32: kv->v.i64 = (int32_t)ld32(b); break;
	case VEIL_GGUF_U64: kv->v.u64 = ld64(b); break;
	case VEIL_GGUF_I64: kv->v.i64 = (int64_t)ld64(b); break;
	case VEIL_GGUF_F32:
		u32 = ld32(b);
		memcpy(&f, &u32, 4);
		kv->v.f64 = f;
		break;
	case VEIL_GGUF_F64:
		u64 = ld64(b);
		memcpy(&kv->v.f64, &u64, 8);
		break;
	case VEIL_GGUF_BOOL:
		/* ggml writes a bool as one byte 0/1; anything else is not
		 * a value any writer produces. */
		if (b[0] > 1)
			return veil_errf(VEIL_EFORMAT, "%s: bool byte is %u",
					 what, b[0]);
		kv->v.b = b[0] != 0;
		break;
	default:
		return veil_errf(VEIL_EINTERNAL, "%s: scalar type %u", what, t);
	}
	return 0;
}

/* Arrays of strings get an index (one veil_gguf_str per element) that
 * v.arr.data points to, so veil_gguf_arr_str() is O(1); arrays of scalars
 * point straight into the file. */
static int rd_array(struct cur *c, struct veil_gguf_kv *kv, const char *what)
{
	struct veil_gguf_str *idx = NULL;
	uint32_t et = 0;
	uint64_t n = 0;
	size_t esz, bytes;
	int rc;

	if ((rc = rd_u32(c, &et, what)) < 0 || (rc = rd_u64(c, &n, what)) < 0)
		return rc;
	if (et == VEIL_GGUF_ARR)
		return veil_errf(VEIL_ENOTSUP, "%s: nested arrays not supported",
				 what);
	if (!vtype_known(et))
		return veil_errf(VEIL_EFORMAT, "%s: unknown array element type %u",
				 what, et);
	if (et == VEIL_GGUF_STR) {
		/* Every string costs at least its 8-byte length. */
		if (n > left(c) / 8)
			return veil_errf(VEIL_EFORMAT,
					 "%s: array of %llu strings exceeds "
					 "remaining %zu bytes",
					 what, (unsigned long long)n, left(c));
		if (n > VEIL_GGUF_MAX_ARR)
			return veil_errf(VEIL_ERANGE,
					 "%s: array of %llu strings exceeds the "
					 "cap %u", what, (unsigned long long)n,
					 VEIL_GGUF_MAX_ARR);
		if (n) {
			idx = malloc((size_t)n * sizeof(*idx));
			if (!idx)
				return VEIL_ENOMEM;
		}
		for (uint64_t i = 0; i < n; i++) {
			if ((rc = rd_str(c, &idx[i], what)) < 0) {
				free(idx);
				return rc;
			}
		}
		kv->v.arr.data = (const uint8_t *)idx;
	} else {
		esz = vtype_size(et);
		if (n > left(c) / esz)
			return veil_errf(VEIL_EFORMAT,
					 "%s: array of %llu x %zu-byte elements "
					 "exceeds remaining %zu bytes",
					 what, (unsigned long long)n, esz, left(c));
		if (n > VEIL_GGUF_MAX_ARR)
			return veil_errf(VEIL_ERANGE,
					 "%s: array of %llu elements exceeds the "
					 "cap %u", what, (unsigned long long)n,
					 VEIL_GGUF_MAX_ARR);
		bytes = (size_t)n * esz;
		kv->v.arr.data = n ? c->p + c->off : NULL;
		c->off += bytes;
	}
	kv->v.arr.type = (enum veil_gguf_vtype)et;
	kv->v.arr.n = n;
	return 0;
}

static const struct veil_gguf_kv *kv_lookup(const struct veil_gguf *g,
					    const char *key, size_t klen)
{
	size_t i;

	if (!g->kv_ix.slot)
		return NULL;
	for (i = name_hash(key, klen) & g->kv_ix.mask; g->kv_ix.slot[i];
	     i = (i + 1) & g->kv_ix.mask) {
		const struct veil_gguf_kv *kv = &g->kv[g->kv_ix.slot[i] - 1];

		if (kv->key.len == klen && !memcmp(kv->key.p, key, klen))
			return kv;
	}
	return NULL;
}

/* Adds kv[k] to the index; VEIL_EFORMAT naming the key if already there. */
static int kv_index_add(struct veil_gguf *g, size_t k)
{
	const struct veil_gguf_kv *kv = &g->kv[k];
	size_t klen = (size_t)kv->key.len;
	size_t i;

	if (kv_lookup(g, kv->key.p, klen))
		return veil_errf(VEIL_EFORMAT, "key %s: duplicate key",
				 safe(kv->key.p, klen).s);
	for (i = name_hash(kv->key.p, klen) & g->kv_ix.mask; g->kv_ix.slot[i];
	     i = (i + 1) & g->kv_ix.mask)
		;
	g->kv_ix.slot[i] = (uint32_t)k + 1;
	return 0;
}

static const struct veil_gguf_tensor *t_lookup(const struct veil_gguf *g,
					       const char *name)
{
	size_t len = strlen(name), i;

	if (!g->t_ix.slot)
		return NULL;
	for (i = name_hash(name, len) & g->t_ix.mask; g->t_ix.slot[i];
	     i = (i + 1) & g->t_ix.mask) {
		const struct veil_gguf_tensor *t = &g->tensors[g->t_ix.slot[i] - 1];

		if (!strcmp(t->name, name))
			return t;
	}
	return NULL;
}

static int t_index_add(struct veil_gguf *g, size_t k)
{
	const char *name = g->tensors[k].name;
	size_t i;

	if (t_lookup(g, name))
		return veil_errf(VEIL_EFORMAT, "tensor %s: duplicate name",
				 safe(name, strlen(name)).s);
	for (i = name_hash(name, strlen(name)) & g->t_ix.mask; g->t_ix.slot[i];
	     i = (i + 1) & g->t_ix.mask)
		;
	g->t_ix.slot[i] = (uint32_t)k + 1;
	return 0;
}

static int parse_kvs(struct veil_gguf *g, struct cur *c, uint64_t n_kv)
{
	char what[160];
	uint32_t type = 0;
	int rc;

	/* Smallest kv: 8-byte key length, 4-byte type, 1-byte value. */
	if (n_kv > left(c) / 13)
		return veil_errf(VEIL_EFORMAT,
				 "kv count %llu exceeds remaining %zu bytes",
				 (unsigned long long)n_kv, left(c));
	if (n_kv > VEIL_GGUF_MAX_KV)
		return veil_errf(VEIL_ERANGE, "kv count %llu exceeds the cap %u",
				 (unsigned long long)n_kv, VEIL_GGUF_MAX_KV);
	if (n_kv) {
		g->kv = calloc((size_t)n_kv, sizeof(*g->kv));
		if (!g->kv)
			return VEIL_ENOMEM;
	}
	if ((rc = name_index_init(&g->kv_ix, (size_t)n_kv)) < 0)
		return rc;
	for (size_t k = 0; k < n_kv; k++) {
		struct veil_gguf_kv *kv = &g->kv[k];

		snprintf(what, sizeof(what), "kv %zu key", k);
		if ((rc = rd_str(c, &kv->key, what)) < 0)
			return rc;
		snprintf(what, sizeof(what), "key %s",
			 safe(kv->key.p, kv->key.len).s);
		if ((rc = rd_u32(c, &type, what)) < 0)
			return rc;
		if (!vtype_known(type))
			return veil_errf(VEIL_EFORMAT, "%s: unknown value type %u",
					 what, type);
		kv->type = (enum veil_gguf_vtype)type;
		/* Counted only once the value is complete so that close()
		 * frees string-array indexes of fully parsed kvs only. */
		if (type == VEIL_GGUF_ARR)
			rc = rd_array(c, kv, what);
		else
			rc = rd_scalar(c, type, kv, what);
		if (rc < 0)
			return rc;
		g->n_kv = k + 1;
		if ((rc = kv_index_add(g, k)) < 0)
			return rc;
	}
	return 0;
}

static int parse_alignment(struct veil_gguf *g)
{
	const struct veil_gguf_kv *kv = kv_lookup(g, GGUF_KEY_ALIGN,
						  strlen(GGUF_KEY_ALIGN));
	uint64_t a;

	g->alignment = GGUF_DEFAULT_ALIGN;
	if (!kv)
		return 0;
	switch (kv->type) {
	case VEIL_GGUF_U8:
	case VEIL_GGUF_U16:
	case VEIL_GGUF_U32:
	case VEIL_GGUF_U64:
		a = kv->v.u64;
		break;
	case VEIL_GGUF_I8:
	case VEIL_GGUF_I16:
	case VEIL_GGUF_I32:
	case VEIL_GGUF_I64:
		a = kv->v.i64 < 0 ? 0 : (uint64_t)kv->v.i64;
		break;
	default:
		return veil_errf(VEIL_EFORMAT, "key %s: type %u is not an integer",
				 GGUF_KEY_ALIGN, kv->type);
	}
	/* ggml: alignment must be a non-zero power of two.  Below 8, tensor
	 * data could start at an address misaligned for its element type
	 * (f32, f16 rows read through typed pointers); no real file uses less
	 * than 32. */
	if (a == 0 || a > UINT32_MAX / 2 + 1 || (a & (a - 1)))
		return veil_errf(VEIL_EFORMAT, "key %s: %llu is not a power of two",
				 GGUF_KEY_ALIGN, (unsigned long long)a);
	if (a < 8)
		return veil_errf(VEIL_EFORMAT, "key %s: %llu is below 8 (tensor data would be "
				 "misaligned)", GGUF_KEY_ALIGN, (unsigned long long)a);
	g->alignment = (uint32_t)a;
	return 0;
}

static int parse_tensor_info(struct cur *c, size_t k,
			     struct veil_gguf_tensor *t)
{
	const struct dtype_traits *d;
	struct veil_gguf_str name;
	char what[160];
	uint64_t nelem = 1, nblk;
	uint32_t type = 0;
	int rc;

	snprintf(what, sizeof(what), "tensor %zu name", k);
	if ((rc = rd_str(c, &name, what)) < 0)
		return rc;
	snprintf(what, sizeof(what), "tensor %s", safe(name.p, name.len).s);
	if (name.len == 0)
		return veil_errf(VEIL_EFORMAT, "tensor %zu: empty name", k);
	if (name.len >= VEIL_GGUF_MAX_NAME)
		return veil_errf(VEIL_ERANGE, "%s: name of %llu bytes exceeds %u",
				 what, (unsigned long long)name.len,
				 VEIL_GGUF_MAX_NAME - 1);
	if (memchr(name.p, '\0', (size_t)name.len))
		return veil_errf(VEIL_EFORMAT, "%s: NUL byte in name", what);
	memcpy(t->name, name.p, (size_t)name.len);
	t->name[name.len] = '\0';

	if ((rc = rd_u32(c, &t->n_dims, what)) < 0)
		return rc;
	if (t->n_dims < 1 || t->n_dims > VEIL_GGUF_MAX_DIMS)
		return veil_errf(VEIL_EFORMAT, "%s: n_dims %u not in 1..%u", what,
				 t->n_dims, VEIL_GGUF_MAX_DIMS);
	for (uint32_t i = 0; i < VEIL_GGUF_MAX_DIMS; i++)
		t->ne[i] = 1;
	for (uint32_t i = 0; i < t->n_dims; i++) {
		if ((rc = rd_u64(c, &t->ne[i], what)) < 0)
			return rc;
		/* On disk ne is int64; a zero dim is an empty tensor no
		 * model has and no kernel expects. */
		if (t->ne[i] == 0 || t->ne[i] > INT64_MAX)
			return veil_errf(VEIL_EFORMAT, "%s: dimension %u is %lld",
					 what, i, (long long)t->ne[i]);
		if (__builtin_mul_overflow(nelem, t->ne[i], &nelem) ||
		    nelem > INT64_MAX)
			return veil_errf(VEIL_EFORMAT,
					 "%s: element count overflows", what);
	}
	if ((rc = rd_u32(c, &type, what)) < 0)
		return rc;
	d = dtype_get((enum veil_dtype)type);
	if (!d)
		return veil_errf(VEIL_ENOTSUP, "%s: unsupported tensor type %u",
				 what, type);
	t->type = (enum veil_dtype)type;
	if (t->ne[0] % d->blk)
		return veil_errf(VEIL_EFORMAT,
				 "%s: row of %llu elements is not a multiple of "
				 "the %s block size %u", what,
				 (unsigned long long)t->ne[0], d->name, d->blk);
	nblk = nelem / d->blk;
	if (nblk > SIZE_MAX || veil_mul_ovf((size_t)nblk, d->bytes, &t->size))
		return veil_errf(VEIL_EFORMAT, "%s: byte size overflows", what);
	return rd_u64(c, &t->offset, what);
}

static int parse_tensors(struct veil_gguf *g, struct cur *c, uint64_t n_t)
{
	int rc;

	/* Smallest info: name len 8 + 1 byte, n_dims 4, ne 8, type 4,
	 * offset 8. */
	if (n_t > left(c) / 33)
		return veil_errf(VEIL_EFORMAT,
				 "tensor count %llu exceeds remaining %zu bytes",
				 (unsigned long long)n_t, left(c));
	if (n_t > VEIL_GGUF_MAX_TENSORS)
		return veil_errf(VEIL_ERANGE,
				 "tensor count %llu exceeds the cap %u",
				 (unsigned long long)n_t, VEIL_GGUF_MAX_TENSORS);
	if (n_t) {
		g->tensors = calloc((size_t)n_t, sizeof(*g->tensors));
		if (!g->tensors)
			return VEIL_ENOMEM;
	}
	if ((rc = name_index_init(&g->t_ix, (size_t)n_t)) < 0)
		return rc;
	for (size_t k = 0; k < n_t; k++) {
		if ((rc = parse_tensor_info(c, k, &g->tensors[k])) < 0)
			return rc;
		g->n_tensors = k + 1;
		if ((rc = t_index_add(g, k)) < 0)
			return rc;
	}
	return 0;
}

static int by_offset(const void *x, const void *y)
{
	const struct veil_gguf_tensor *a = *(const struct veil_gguf_tensor *const *)x;
	const struct veil_gguf_tensor *b = *(const struct veil_gguf_tensor *const *)y;

	return a->offset < b->offset ? -1 : a->offset > b->offset;
}

/* No two tensors may share bytes: a loader that releases a tensor's source
 * pages once it has packed them (veil_model_load_private) would leave the
 * other reading zeros. */
static int check_overlap(struct veil_gguf *g)
{
	struct veil_gguf_tensor **v;
	int rc = 0;

	if (g->n_tensors < 2)
		return 0;
	if (!(v = malloc(g->n_tensors * sizeof(*v))))
		return VEIL_ENOMEM;
	for (size_t k = 0; k < g->n_tensors; k++)
		v[k] = &g->tensors[k];
	qsort(v, g->n_tensors, sizeof(*v), by_offset);
	for (size_t k = 0; k + 1 < g->n_tensors; k++) {
		if (v[k]->offset + v[k]->size > v[k + 1]->offset) {
			struct safe_name a = safe(v[k]->name, strlen(v[k]->name));
			struct safe_name b = safe(v[k + 1]->name, strlen(v[k + 1]->name));

			rc = veil_errf(VEIL_EFORMAT, "tensors %s and %s overlap", a.s, b.s);
			break;
		}
	}
	free(v);
	return rc;
}

/* Places each tensor's data once the data section start is known. */
static int place_tensors(struct veil_gguf *g, size_t info_end)
{
	uint64_t a = g->alignment;

	/* The data section starts at the next multiple of the alignment.
	 * A vocab-only file may end before it: that is fine while no tensor
	 * needs bytes there. */
	g->data_offset = ((uint64_t)info_end + a - 1) / a * a;
	for (size_t k = 0; k < g->n_tensors; k++) {
		struct veil_gguf_tensor *t = &g->tensors[k];
		struct safe_name sn = safe(t->name, strlen(t->name));
		uint64_t room;

		if (t->offset % a)
			return veil_errf(VEIL_EFORMAT,
					 "tensor %s: offset %llu not aligned to %u",
					 sn.s, (unsigned long long)t->offset,
					 g->alignment);
		room = g->data_offset <= g->n ? g->n - g->data_offset : 0;
		if (t->offset > room || t->size > room - t->offset)
			return veil_errf(VEIL_EFORMAT,
					 "tensor %s: data at %llu+%llu, %zu bytes, "
					 "past end of file (%zu bytes)", sn.s,
					 (unsigned long long)g->data_offset,
					 (unsigned long long)t->offset, t->size,
					 g->n);
		t->data = g->p + g->data_offset + t->offset;
	}
	return check_overlap(g);
}

static int parse(struct veil_gguf *g)
{
	struct cur c = {g->p, g->n, 0};
	const uint8_t *b = NULL;
	uint64_t n_t = 0, n_kv = 0;
	int rc;

	if ((rc = rd_fixed(&c, 4, &b, "header magic")) < 0)
		return rc;
	if (memcmp(b, GGUF_MAGIC, 4))
		return veil_errf(VEIL_EFORMAT,
				 "header: magic %02x%02x%02x%02x is not \"GGUF\"",
				 b[0], b[1], b[2], b[3]);
	if ((rc = rd_u32(&c, &g->version, "header version")) < 0)
		return rc;
	if (g->version != 2 && g->version != 3) {
		if ((g->version & 0xffff) == 0 && g->version)
			return veil_errf(VEIL_ENOTSUP,
					 "header: big-endian GGUF not supported");
		return veil_errf(VEIL_ENOTSUP,
				 "header: GGUF version %u not supported "
				 "(2 and 3 are)", g->version);
	}
	if ((rc = rd_u64(&c, &n_t, "header tensor_count")) < 0 ||
	    (rc = rd_u64(&c, &n_kv, "header kv_count")) < 0)
		return rc;
	if ((rc = parse_kvs(g, &c, n_kv)) < 0 ||
	    (rc = parse_alignment(g)) < 0 ||
	    (rc = parse_tensors(g, &c, n_t)) < 0)
		return rc;
	return place_tensors(g, c.off);
}

void veil_gguf_close(struct veil_gguf *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->n_kv; i++)
		if (g->kv[i].type == VEIL_GGUF_ARR &&
		    g->kv[i].v.arr.type == VEIL_GGUF_STR)
			free((void *)g->kv[i].v.arr.data);
	free(g->kv);
	free(g->tensors);
	free(g->kv_ix.slot);
	free(g->t_ix.slot);
	if (g->map)
		munmap(g->map, g->map_len);
	free(g);
}

/* Parses g->p/g->n; on failure frees g (and its mapping). */
static int finish(struct veil_gguf *g, struct veil_gguf **out)
{
	int rc;

	veil_err_clear();
	if ((rc = parse(g)) < 0) {
		veil_gguf_close(g);
		return rc;
	}
	*out = g;
	return 0;
}

int veil_gguf_parse(const uint8_t *p, size_t n, struct veil_gguf **out)
{
	struct veil_gguf *g;

	if (!out || (!p && n))
		return veil_errf(VEIL_EINVAL, "gguf parse: NULL argument");
	g = calloc(1, sizeof(*g));
	if (!g)
		return VEIL_ENOMEM;
	g->p = p;
	g->n = n;
	return finish(g, out);
}

int veil_gguf_open(const char *path, struct veil_gguf **out)
{
	struct veil_gguf *g = NULL;
	struct stat st;
	int fd = -1, rc;

	if (!path || !out)
		return veil_errf(VEIL_EINVAL, "gguf open: NULL argument");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = veil_errf(errno == ENOENT ? VEIL_ENOENT : VEIL_EIO,
			       "%s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = veil_errf(VEIL_EIO, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > SIZE_MAX) {
		rc = veil_errf(VEIL_ERANGE, "%s: too large to map", path);
		goto out;
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	/* mmap of length 0 fails; an empty file is simply truncated input. */
	if (st.st_size > 0) {
		void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE,
			       fd, 0);

		if (m == MAP_FAILED) {
			rc = veil_errf(VEIL_EIO, "%s: mmap: %s", path,
				       strerror(errno));
			goto out;
		}
		g->map = m;
		g->map_len = (size_t)st.st_size;
		g->p = m;
		g->n = (size_t)st.st_size;
	}
	rc = finish(g, out);
	g = NULL; /* finish() owns it now, on success and failure */
out:
	free(g);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* 2 MiB reads (one huge page of the copy; few system calls), each fed to
 * both digests 128 KiB at a time so that the second digest reads what the
 * first just read from the cache, not from memory. */
#define READ_CHUNK (2u << 20)
#define HASH_STEP (128u << 10)

/* Reads fd to its end, feeding every byte to SHA-256 and SHA-384 as read.
 * With dst, the bytes land there and must be exactly `size` of them (the
 * digests are then of exactly dst); without, they pass through a scratch
 * buffer. */
static int digest_read(int fd, const char *path, uint8_t *dst, size_t size,
		       struct veil_gguf_digests *dg)
{
	EVP_MD_CTX *m256 = EVP_MD_CTX_new(), *m384 = EVP_MD_CTX_new();
	struct veil_gguf_digests tmp;
	uint8_t *chunk = NULL, extra;
	unsigned l256 = 0, l384 = 0;
	size_t off = 0;
	int rc = 0;

	if (!dg)
		dg = &tmp;
	if (!m256 || !m384 || (!dst && !(chunk = malloc(READ_CHUNK)))) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if (EVP_DigestInit_ex(m256, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestInit_ex(m384, EVP_sha384(), NULL) != 1) {
		rc = veil_errf(VEIL_EINTERNAL, "digest: init failed");
		goto out;
	}
	for (;;) {
		uint8_t *p = chunk;
		size_t want = READ_CHUNK;
		ssize_t r;

		if (dst && off == size) {
			p = &extra; /* must find the end of the file here */
			want = 1;
		} else if (dst) {
			p = dst + off;
			want = VEIL_MIN((size_t)READ_CHUNK, size - off);
		}
		r = read(fd, p, want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = veil_errf(VEIL_EIO, "%s: read: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0) {
			if (dst && off != size)
				rc = veil_errf(VEIL_EIO, "%s: file shrank while read",
					       path);
			break;
		}
		if (dst && off == size) {
			rc = veil_errf(VEIL_EIO, "%s: file grew while read", path);
			goto out;
		}
		for (size_t k = 0; k < (size_t)r; k += HASH_STEP) {
			size_t step = VEIL_MIN((size_t)HASH_STEP, (size_t)r - k);

			if (EVP_DigestUpdate(m256, p + k, step) != 1 ||
			    EVP_DigestUpdate(m384, p + k, step) != 1) {
				rc = veil_errf(VEIL_EINTERNAL, "digest: update failed");
				goto out;
			}
		}
		off += (size_t)r;
	}
	if (rc == 0 && (EVP_DigestFinal_ex(m256, dg->sha256, &l256) != 1 || l256 != 32 ||
			EVP_DigestFinal_ex(m384, dg->sha384, &l384) != 1 || l384 != 48))
		rc = veil_errf(VEIL_EINTERNAL, "digest: final failed");
out:
	EVP_MD_CTX_free(m256);
	EVP_MD_CTX_free(m384);
	free(chunk);
	return rc;
}

/* Opens path for reading; a regular file only (size in *size). */
static int open_regular(const char *path, int *fd, size_t *size)
{
	struct stat st;

	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return veil_errf(errno == ENOENT ? VEIL_ENOENT : VEIL_EIO, "%s: %s",
				 path, strerror(errno));
	if (fstat(*fd, &st) < 0 || !S_ISREG(st.st_mode))
		return veil_errf(VEIL_EIO, "%s: not a regular file", path);
	if ((uint64_t)st.st_size > SIZE_MAX)
		return veil_errf(VEIL_ERANGE, "%s: too large to load", path);
	*size = (size_t)st.st_size;
	return 0;
}

int veil_gguf_open_private(const char *path, struct veil_gguf_digests *dg,
			   struct veil_gguf **out)
{
	struct veil_gguf *g = NULL;
	size_t size = 0;
	int fd = -1, rc;

	if (!path || !out)
		return veil_errf(VEIL_EINVAL, "gguf open: NULL argument");
	if ((rc = open_regular(path, &fd, &size)) < 0)
		goto out;
	if (!(g = calloc(1, sizeof(*g)))) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	g->priv = true;
	if (size > 0) {
		/* anonymous: no file behind it that the page cache could
		 * re-read (or another writer change) after the digests */
		void *m = mmap(NULL, size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED) {
			rc = veil_errf(VEIL_ENOMEM, "%s: no memory for a %zu-byte copy",
				       path, size);
			goto out;
		}
		g->map = m;
		g->map_len = size;
		madvise(m, size, MADV_HUGEPAGE); /* weights stream: fewer TLB misses */
		posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	}
	/* (an empty file is truncated input: the parser refuses it) */
	if (size > 0 && (rc = digest_read(fd, path, g->map, size, dg)) < 0)
		goto out;
	/* nothing writes the copy after this: a stray write faults */
	if (g->map && mprotect(g->map, g->map_len, PROT_READ) < 0) {
		rc = veil_errf(VEIL_EIO, "%s: mprotect: %s", path, strerror(errno));
		goto out;
	}
	g->p = g->map;
	g->n = size;
	rc = finish(g, out);
	g = NULL; /* finish() owns it now, on success and failure */
out:
	veil_gguf_close(g);
	if (fd >= 0)
		close(fd);
	return rc;
}

int veil_gguf_digest_file(const char *path, struct veil_gguf_digests *dg)
{
	size_t size;
	int fd = -1, rc;

	if (!path || !dg)
		return veil_errf(VEIL_EINVAL, "digest: NULL argument");
	if ((rc = open_regular(path, &fd, &size)) == 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
		rc = digest_read(fd, path, NULL, 0, dg);
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

bool veil_gguf_is_private(const struct veil_gguf *g)
{
	return g->priv;
}

uint32_t veil_gguf_version(const struct veil_gguf *g)
{
	return g->version;
}

size_t veil_gguf_file_size(const struct veil_gguf *g)
{
	return g->n;
}

const uint8_t *veil_gguf_file_data(const struct veil_gguf *g)
{
	return g->p;
}

uint64_t veil_gguf_data_offset(const struct veil_gguf *g)
{
	return g->data_offset;
}

uint32_t veil_gguf_alignment(const struct veil_gguf *g)
{
	return g->alignment;
}

size_t veil_gguf_n_kv(const struct veil_gguf *g)
{
	return g->n_kv;
}

const struct veil_gguf_kv *veil_gguf_kv_at(const struct veil_gguf *g, size_t i)
{
	return i < g->n_kv ? &g->kv[i] : NULL;
}

const struct veil_gguf_kv *veil_gguf_find(const struct veil_gguf *g,
					  const char *key)
{
	return key ? kv_lookup(g, key, strlen(key)) : NULL;
}

/* Looks a key up; VEIL_ENOENT when absent. */
static int find_kv(const struct veil_gguf *g, const char *key,
		   const struct veil_gguf_kv **out)
{
	const struct veil_gguf_kv *kv = veil_gguf_find(g, key);

	if (!kv)
		return veil_errf(VEIL_ENOENT, "key %s: not present",
				 key ? key : "(null)");
	*out = kv;
	return 0;
}

/* Any integer value as (negative?, magnitude).  Non-integers: EFORMAT. */
static int kv_int(const struct veil_gguf_kv *kv, const char *key, bool *neg,
		  uint64_t *mag)
{
	switch (kv->type) {
	case VEIL_GGUF_U8:
	case VEIL_GGUF_U16:
	case VEIL_GGUF_U32:
	case VEIL_GGUF_U64:
		*neg = false;
		*mag = kv->v.u64;
		return 0;
	case VEIL_GGUF_I8:
	case VEIL_GGUF_I16:
	case VEIL_GGUF_I32:
	case VEIL_GGUF_I64:
		*neg = kv->v.i64 < 0;
		*mag = *neg ? (uint64_t)0 - (uint64_t)kv->v.i64
			    : (uint64_t)kv->v.i64;
		return 0;
	default:
		return veil_errf(VEIL_EFORMAT, "key %s: type %u is not an integer",
				 key, kv->type);
	}
}

int veil_gguf_get_u64(const struct veil_gguf *g, const char *key, uint64_t *out)
{
	const struct veil_gguf_kv *kv = NULL;
	uint64_t m = 0;
	bool neg = false;
	int rc;

	if ((rc = find_kv(g, key, &kv)) < 0 || (rc = kv_int(kv, key, &neg, &m)) < 0)
		return rc;
	if (neg)
		return veil_errf(VEIL_EFORMAT, "key %s: negative value", key);
	*out = m;
	return 0;
}

int veil_gguf_get_u32(const struct veil_gguf *g, const char *key, uint32_t *out)
{
	uint64_t v;
	int rc;

	if ((rc = veil_gguf_get_u64(g, key, &v)) < 0)
		return rc;
	if (v > UINT32_MAX)
		return veil_errf(VEIL_EFORMAT, "key %s: %llu does not fit u32",
				 key, (unsigned long long)v);
	*out = (uint32_t)v;
	return 0;
}

int veil_gguf_get_i32(const struct veil_gguf *g, const char *key, int32_t *out)
{
	const struct veil_gguf_kv *kv = NULL;
	uint64_t m = 0;
	bool neg = false;
	int rc;

	if ((rc = find_kv(g, key, &kv)) < 0 || (rc = kv_int(kv, key, &neg, &m)) < 0)
		return rc;
	if ((!neg && m > INT32_MAX) || (neg && m > (uint64_t)INT32_MAX + 1))
		return veil_errf(VEIL_EFORMAT, "key %s: value does not fit i32",
				 key);
	*out = neg ? (int32_t)(-(int64_t)m) : (int32_t)m;
	return 0;
}

int veil_gguf_get_f32(const struct veil_gguf *g, const char *key, float *out)
{
	const struct veil_gguf_kv *kv = NULL;
	int rc;

	if ((rc = find_kv(g, key, &kv)) < 0)
		return rc;
	if (kv->type != VEIL_GGUF_F32 && kv->type != VEIL_GGUF_F64)
		return veil_errf(VEIL_EFORMAT, "key %s: type %u is not a float",
				 key, kv->type);
	*out = (float)kv->v.f64;
	return 0;
}

int veil_gguf_get_bool(const struct veil_gguf *g, const char *key, bool *out)
{
	const struct veil_gguf_kv *kv = NULL;
	int rc;

	if ((rc = find_kv(g, key, &kv)) < 0)
		return rc;
	if (kv->type != VEIL_GGUF_BOOL)
		return veil_errf(VEIL_EFORMAT, "key %s: type %u is not a bool",
				 key, kv->type);
	*out = kv->v.b;
	return 0;
}

int veil_gguf_get_str(const struct veil_gguf *g, const char *key,
		      struct veil_gguf_str *out)
{
	const struct veil_gguf_kv *kv = NULL;
	int rc;

	if ((rc = find_kv(g, key, &kv)) < 0)
		return rc;
	if (kv->type != VEIL_GGUF_STR)
		return veil_errf(VEIL_EFORMAT, "key %s: type %u is not a string",
				 key, kv->type);
	*out = kv->v.str;
	return 0;
}

int veil_gguf_get_arr(const struct veil_gguf *g, const char *key,
		      enum veil_gguf_vtype elem, const uint8_t **data, uint64_t *n)
{
	const struct veil_gguf_kv *kv = NULL;
	int rc;

	if ((rc = find_kv(g, key, &kv)) < 0)
		return rc;
	if (kv->type != VEIL_GGUF_ARR)
		return veil_errf(VEIL_EFORMAT, "key %s: type %u is not an array",
				 key, kv->type);
	if (kv->v.arr.type != elem)
		return veil_errf(VEIL_EFORMAT,
				 "key %s: array of type %u, expected %u", key,
				 kv->v.arr.type, elem);
	*data = kv->v.arr.data;
	*n = kv->v.arr.n;
	return 0;
}

int veil_gguf_arr_str(const struct veil_gguf_kv *kv, uint64_t i,
		      struct veil_gguf_str *out)
{
	if (!kv || kv->type != VEIL_GGUF_ARR || kv->v.arr.type != VEIL_GGUF_STR)
		return veil_errf(VEIL_EINVAL, "not an array of strings");
	if (i >= kv->v.arr.n)
		return veil_errf(VEIL_ERANGE, "key %s: index %llu of %llu strings",
				 safe(kv->key.p, kv->key.len).s,
				 (unsigned long long)i,
				 (unsigned long long)kv->v.arr.n);
	*out = ((const struct veil_gguf_str *)kv->v.arr.data)[i];
	return 0;
}

size_t veil_gguf_n_tensors(const struct veil_gguf *g)
{
	return g->n_tensors;
}

const struct veil_gguf_tensor *veil_gguf_tensor_at(const struct veil_gguf *g,
						   size_t i)
{
	return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const struct veil_gguf_tensor *veil_gguf_tensor(const struct veil_gguf *g,
						const char *name)
{
	return name ? t_lookup(g, name) : NULL;
}

/* ---- sha256 of a file ---------------------------------------------------- */

int veil_gguf_sha256_file(const char *path, uint8_t out[32])
{
	EVP_MD_CTX *md = NULL;
	uint8_t *buf = NULL;
	unsigned int len = 0;
	int fd = -1, rc = 0;
	ssize_t r;

	if (!path || !out)
		return veil_errf(VEIL_EINVAL, "sha256: NULL argument");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = veil_errf(errno == ENOENT ? VEIL_ENOENT : VEIL_EIO, "%s: %s",
			       path, strerror(errno));
		goto out;
	}
	buf = malloc(1u << 20);
	md = EVP_MD_CTX_new();
	if (!buf || !md) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		rc = veil_errf(VEIL_EINTERNAL, "sha256: EVP_DigestInit_ex failed");
		goto out;
	}
	for (;;) {
		r = read(fd, buf, 1u << 20);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = veil_errf(VEIL_EIO, "%s: read: %s", path,
				       strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		if (EVP_DigestUpdate(md, buf, (size_t)r) != 1) {
			rc = veil_errf(VEIL_EINTERNAL, "sha256: update failed");
			goto out;
		}
	}
	if (EVP_DigestFinal_ex(md, out, &len) != 1 || len != 32)
		rc = veil_errf(VEIL_EINTERNAL, "sha256: final failed");
out:
	EVP_MD_CTX_free(md);
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ---- writer ------------------------------------------------------------ */

struct wtensor {
	char name[VEIL_GGUF_MAX_NAME];
	uint32_t n_dims;
	uint64_t ne[VEIL_GGUF_MAX_DIMS];
	enum veil_dtype type;
	uint64_t offset;
	size_t size;
};

struct veil_gguf_writer {
	uint32_t alignment;
	struct veil_buf kv;     /* serialized kv section */
	uint64_t n_kv;
	char **keys;            /* for duplicate detection */
	size_t keys_cap;
	bool align_key;         /* caller added general.alignment */
	struct wtensor *t;
	size_t n_t, t_cap;
	uint64_t data_size;     /* running, padded */
	bool header_done;
	size_t next_data;       /* index of the next tensor to stream */
	uint64_t pos;           /* bytes written to the FILE so far */
};

int veil_gguf_writer_new(struct veil_gguf_writer **out, uint32_t alignment)
{
	struct veil_gguf_writer *w;

	if (!out)
		return veil_errf(VEIL_EINVAL, "gguf writer: NULL argument");
	if (alignment == 0)
		alignment = GGUF_DEFAULT_ALIGN;
	if (alignment & (alignment - 1))
		return veil_errf(VEIL_EINVAL,
				 "gguf writer: alignment %u is not a power of two",
				 alignment);
	if (alignment < 8)
		return veil_errf(VEIL_EINVAL, "gguf writer: alignment %u is below 8 (readers "
				 "refuse it)", alignment);
	w = calloc(1, sizeof(*w));
	if (!w)
		return VEIL_ENOMEM;
	w->alignment = alignment;
	w->kv = (struct veil_buf)VEIL_BUF_INIT(SIZE_MAX / 2);
	*out = w;
	return 0;
}

void veil_gguf_writer_free(struct veil_gguf_writer *w)
{
	if (!w)
		return;
	for (uint64_t i = 0; i < w->n_kv; i++)
		free(w->keys[i]);
	free(w->keys);
	free(w->t);
	veil_buf_free(&w->kv);
	free(w);
}

static int put_u32(struct veil_buf *b, uint32_t v)
{
	uint8_t x[4];

	st32(x, v);
	return veil_buf_append(b, x, 4);
}

static int put_u64(struct veil_buf *b, uint64_t v)
{
	uint8_t x[8];

	st64(x, v);
	return veil_buf_append(b, x, 8);
}

static int put_str(struct veil_buf *b, const char *s, uint64_t len)
{
	int rc;

	if (len > SIZE_MAX || (len && !s))
		return VEIL_EINVAL;
	if ((rc = put_u64(b, len)) < 0)
		return rc;
	return len ? veil_buf_append(b, s, (size_t)len) : 0;
}

/* Checks that a kv may be added now under this key. */
static int kv_check(const struct veil_gguf_writer *w, const char *key)
{
	if (!w || !key)
		return veil_errf(VEIL_EINVAL, "gguf writer: NULL argument");
	if (w->header_done)
		return veil_errf(VEIL_EINVAL, "key %s: added after the header",
				 key);
	if (strlen(key) > VEIL_GGUF_MAX_STR)
		return veil_errf(VEIL_EINVAL, "gguf writer: key too long");
	for (uint64_t i = 0; i < w->n_kv; i++)
		if (!strcmp(w->keys[i], key))
			return veil_errf(VEIL_EINVAL, "key %s: duplicate key", key);
	if (w->n_kv >= VEIL_GGUF_MAX_KV)
		return veil_errf(VEIL_ERANGE, "key %s: more than %u keys", key,
				 VEIL_GGUF_MAX_KV);
	return 0;
}

static int kv_head(struct veil_gguf_writer *w, const char *key,
		   enum veil_gguf_vtype type)
{
	int rc = put_str(&w->kv, key, strlen(key));

	return rc < 0 ? rc : put_u32(&w->kv, (uint32_t)type);
}

/* Records the kv (rc == 0) or rolls the buffer back to `mark` (rc < 0), so
 * a failed add leaves the writer as it was. */
static int kv_end(struct veil_gguf_writer *w, const char *key, size_t mark,
		  int rc)
{
	char *k = NULL;

	if (rc == 0 && w->n_kv == w->keys_cap) {
		size_t nc = w->keys_cap ? 2 * w->keys_cap : 16;
		char **nk = realloc(w->keys, nc * sizeof(*nk));

		if (!nk) {
			rc = VEIL_ENOMEM;
		} else {
			w->keys = nk;
			w->keys_cap = nc;
		}
	}
	if (rc == 0 && !(k = strdup(key)))
		rc = VEIL_ENOMEM;
	if (rc < 0) {
		w->kv.len = mark;
		return rc;
	}
	w->keys[w->n_kv++] = k;
	if (!strcmp(key, GGUF_KEY_ALIGN))
		w->align_key = true;
	return 0;
}

/* Appends a scalar's little-endian bytes (`bits` holds every width). */
static int put_scalar(struct veil_buf *b, enum veil_gguf_vtype t, uint64_t bits)
{
	uint8_t x[8];

	st64(x, bits);
	return veil_buf_append(b, x, vtype_size(t));
}

static int w_scalar(struct veil_gguf_writer *w, const char *key,
		    enum veil_gguf_vtype t, uint64_t bits)
{
	size_t mark;
	int rc;

	if ((rc = kv_check(w, key)) < 0)
		return rc;
	mark = w->kv.len;
	if ((rc = kv_head(w, key, t)) == 0)
		rc = put_scalar(&w->kv, t, bits);
	return kv_end(w, key, mark, rc);
}

/* The reader takes its alignment from general.alignment, so the key must
 * tell the truth about the file this writer lays out. */
static int check_align_value(const struct veil_gguf_writer *w, const char *key,
			     uint64_t v)
{
	if (w && key && !strcmp(key, GGUF_KEY_ALIGN) && v != w->alignment)
		return veil_errf(VEIL_EINVAL,
				 "key %s: %llu differs from the writer's "
				 "alignment %u", key, (unsigned long long)v,
				 w->alignment);
	return 0;
}

int veil_gguf_w_u32(struct veil_gguf_writer *w, const char *key, uint32_t v)
{
	int rc = check_align_value(w, key, v);

	return rc < 0 ? rc : w_scalar(w, key, VEIL_GGUF_U32, v);
}

int veil_gguf_w_i32(struct veil_gguf_writer *w, const char *key, int32_t v)
{
	int rc = check_align_value(w, key, v < 0 ? 0 : (uint64_t)v);

	return rc < 0 ? rc : w_scalar(w, key, VEIL_GGUF_I32, (uint32_t)v);
}

int veil_gguf_w_f32(struct veil_gguf_writer *w, const char *key, float v)
{
	uint32_t bits;

	memcpy(&bits, &v, 4);
	if (w && key && !strcmp(key, GGUF_KEY_ALIGN))
		return veil_errf(VEIL_EINVAL, "key %s: must be an integer", key);
	return w_scalar(w, key, VEIL_GGUF_F32, bits);
}

int veil_gguf_w_bool(struct veil_gguf_writer *w, const char *key, bool v)
{
	if (w && key && !strcmp(key, GGUF_KEY_ALIGN))
		return veil_errf(VEIL_EINVAL, "key %s: must be an integer", key);
	return w_scalar(w, key, VEIL_GGUF_BOOL, v ? 1 : 0);
}

int veil_gguf_w_str(struct veil_gguf_writer *w, const char *key, const char *s,
		    size_t len)
{
	size_t mark;
	int rc;

	if ((rc = kv_check(w, key)) < 0)
		return rc;
	if ((!s && len) || len > VEIL_GGUF_MAX_STR || !strcmp(key, GGUF_KEY_ALIGN))
		return veil_errf(VEIL_EINVAL, "key %s: bad string value", key);
	mark = w->kv.len;
	if ((rc = kv_head(w, key, VEIL_GGUF_STR)) == 0)
		rc = put_str(&w->kv, s, len);
	return kv_end(w, key, mark, rc);
}

int veil_gguf_w_arr(struct veil_gguf_writer *w, const char *key,
		    enum veil_gguf_vtype elem, const void *data, uint64_t n)
{
	size_t esz = vtype_size((uint32_t)elem), mark;
	int rc;

	if ((rc = kv_check(w, key)) < 0)
		return rc;
	if (!esz || (!data && n) || n > VEIL_GGUF_MAX_ARR ||
	    !strcmp(key, GGUF_KEY_ALIGN))
		return veil_errf(VEIL_EINVAL, "key %s: bad array (type %d, %llu "
				 "elements)", key, (int)elem,
				 (unsigned long long)n);
	mark = w->kv.len;
	if ((rc = kv_head(w, key, VEIL_GGUF_ARR)) == 0 &&
	    (rc = put_u32(&w->kv, (uint32_t)elem)) == 0 &&
	    (rc = put_u64(&w->kv, n)) == 0 && n)
		rc = veil_buf_append(&w->kv, data, (size_t)n * esz);
	return kv_end(w, key, mark, rc);
}

int veil_gguf_w_arr_str(struct veil_gguf_writer *w, const char *key,
			const struct veil_gguf_str *strs, uint64_t n)
{
	size_t mark;
	int rc;

	if ((rc = kv_check(w, key)) < 0)
		return rc;
	if ((!strs && n) || n > VEIL_GGUF_MAX_ARR || !strcmp(key, GGUF_KEY_ALIGN))
		return veil_errf(VEIL_EINVAL, "key %s: bad string array", key);
	for (uint64_t i = 0; i < n; i++)
		if (strs[i].len > VEIL_GGUF_MAX_STR || (!strs[i].p && strs[i].len))
			return veil_errf(VEIL_EINVAL, "key %s: bad string %llu",
					 key, (unsigned long long)i);
	mark = w->kv.len;
	if ((rc = kv_head(w, key, VEIL_GGUF_ARR)) == 0 &&
	    (rc = put_u32(&w->kv, VEIL_GGUF_STR)) == 0)
		rc = put_u64(&w->kv, n);
	for (uint64_t i = 0; rc == 0 && i < n; i++)
		rc = put_str(&w->kv, strs[i].p, strs[i].len);
	return kv_end(w, key, mark, rc);
}

int veil_gguf_w_copy_kv(struct veil_gguf_writer *w, const struct veil_gguf_kv *kv)
{
	char key[VEIL_GGUF_MAX_NAME];
	uint64_t bits = 0;
	uint32_t f32bits;
	float f;
	int rc;

	if (!w || !kv || !kv->key.p)
		return veil_errf(VEIL_EINVAL, "gguf writer: NULL argument");
	/* Our keys are C strings; a key with a NUL in it or longer than any
	 * real key is refused rather than silently changed. */
	if (kv->key.len >= sizeof(key) || memchr(kv->key.p, '\0', kv->key.len))
		return veil_errf(VEIL_EINVAL, "key %s: cannot be copied",
				 safe(kv->key.p, kv->key.len).s);
	memcpy(key, kv->key.p, kv->key.len);
	key[kv->key.len] = '\0';
	switch (kv->type) {
	case VEIL_GGUF_STR:
		if (kv->v.str.len > SIZE_MAX)
			return VEIL_EINVAL;
		return veil_gguf_w_str(w, key, kv->v.str.p, (size_t)kv->v.str.len);
	case VEIL_GGUF_ARR:
		if (kv->v.arr.type == VEIL_GGUF_STR)
			return veil_gguf_w_arr_str(
				w, key, (const struct veil_gguf_str *)kv->v.arr.data,
				kv->v.arr.n);
		return veil_gguf_w_arr(w, key, kv->v.arr.type, kv->v.arr.data,
				       kv->v.arr.n);
	case VEIL_GGUF_F32:
		f = (float)kv->v.f64;
		memcpy(&f32bits, &f, 4);
		bits = f32bits;
		break;
	case VEIL_GGUF_F64:
		memcpy(&bits, &kv->v.f64, 8);
		break;
	case VEIL_GGUF_BOOL:
		bits = kv->v.b;
		break;
	case VEIL_GGUF_U8:
	case VEIL_GGUF_U16:
	case VEIL_GGUF_U32:
	case VEIL_GGUF_U64:
		bits = kv->v.u64;
		if ((rc = check_align_value(w, key, bits)) < 0)
			return rc;
		break;
	case VEIL_GGUF_I8:
	case VEIL_GGUF_I16:
	case VEIL_GGUF_I32:
	case VEIL_GGUF_I64:
		bits = (uint64_t)kv->v.i64;
		if ((rc = check_align_value(w, key, kv->v.i64 < 0 ? 0 : bits)) < 0)
			return rc;
		break;
	default:
		return veil_errf(VEIL_EINVAL, "key %s: unknown type %u", key,
				 kv->type);
	}
	return w_scalar(w, key, kv->type, bits);
}

int veil_gguf_w_tensor(struct veil_gguf_writer *w, const char *name,
		       enum veil_dtype type, uint32_t n_dims, const uint64_t *ne)
{
	const struct dtype_traits *d = dtype_get(type);
	struct wtensor *t;
	uint64_t nelem = 1, padded;
	size_t len;

	if (!w || !name || !ne)
		return veil_errf(VEIL_EINVAL, "gguf writer: NULL argument");
	len = strlen(name);
	if (w->header_done)
		return veil_errf(VEIL_EINVAL, "tensor %s: added after the header",
				 name);
	if (len == 0 || len >= VEIL_GGUF_MAX_NAME)
		return veil_errf(VEIL_EINVAL, "tensor %s: name length %zu",
				 name, len);
	if (!d)
		return veil_errf(VEIL_ENOTSUP, "tensor %s: unsupported type %d",
				 name, (int)type);
	if (n_dims < 1 || n_dims > VEIL_GGUF_MAX_DIMS)
		return veil_errf(VEIL_EINVAL, "tensor %s: n_dims %u", name, n_dims);
	if (w->n_t >= VEIL_GGUF_MAX_TENSORS)
		return veil_errf(VEIL_ERANGE, "tensor %s: more than %u tensors",
				 name, VEIL_GGUF_MAX_TENSORS);
	for (size_t i = 0; i < w->n_t; i++)
		if (!strcmp(w->t[i].name, name))
			return veil_errf(VEIL_EINVAL, "tensor %s: duplicate name",
					 name);
	for (uint32_t i = 0; i < n_dims; i++)
		if (ne[i] == 0 || ne[i] > INT64_MAX ||
		    __builtin_mul_overflow(nelem, ne[i], &nelem) ||
		    nelem > INT64_MAX)
			return veil_errf(VEIL_EINVAL, "tensor %s: bad shape", name);
	if (ne[0] % d->blk)
		return veil_errf(VEIL_EINVAL,
				 "tensor %s: row of %llu not a multiple of %u",
				 name, (unsigned long long)ne[0], d->blk);
	if (w->n_t == w->t_cap) {
		size_t nc = w->t_cap ? 2 * w->t_cap : 16;
		struct wtensor *nt = realloc(w->t, nc * sizeof(*nt));

		if (!nt)
			return VEIL_ENOMEM;
		w->t = nt;
		w->t_cap = nc;
	}
	t = &w->t[w->n_t];
	memset(t, 0, sizeof(*t));
	memcpy(t->name, name, len + 1);
	t->n_dims = n_dims;
	for (uint32_t i = 0; i < VEIL_GGUF_MAX_DIMS; i++)
		t->ne[i] = i < n_dims ? ne[i] : 1;
	t->type = type;
	if (nelem / d->blk > SIZE_MAX ||
	    veil_mul_ovf((size_t)(nelem / d->blk), d->bytes, &t->size))
		return veil_errf(VEIL_EINVAL, "tensor %s: size overflows", name);
	/* As ggml's gguf_add_tensor: each tensor starts where the previous
	 * one's data, padded to the alignment, ends. */
	padded = ((uint64_t)t->size + w->alignment - 1) / w->alignment *
		 w->alignment;
	if (padded < t->size || w->data_size > UINT64_MAX - padded)
		return veil_errf(VEIL_EINVAL, "tensor %s: data overflows", name);
	t->offset = w->data_size;
	w->data_size += padded;
	w->n_t++;
	return 0;
}

static int fwrite_all(FILE *f, const void *p, size_t n, uint64_t *pos)
{
	if (n && fwrite(p, 1, n, f) != n)
		return veil_errf(VEIL_EIO, "gguf writer: write failed");
	*pos += n;
	return 0;
}

/* Zero bytes up to the next multiple of the alignment. */
static int fwrite_pad(struct veil_gguf_writer *w, FILE *f)
{
	static const uint8_t zeros[64];
	uint64_t pad = (w->alignment - w->pos % w->alignment) % w->alignment;
	int rc = 0;

	while (pad && rc == 0) {
		size_t k = (size_t)VEIL_MIN(pad, (uint64_t)sizeof(zeros));

		rc = fwrite_all(f, zeros, k, &w->pos);
		pad -= k;
	}
	return rc;
}

int veil_gguf_w_header(struct veil_gguf_writer *w, FILE *f)
{
	struct veil_buf b = VEIL_BUF_INIT(SIZE_MAX / 2);
	int rc;

	if (!w || !f)
		return veil_errf(VEIL_EINVAL, "gguf writer: NULL argument");
	if (w->header_done)
		return veil_errf(VEIL_EINVAL, "gguf writer: header already written");
	/* A non-default alignment must be on record or readers would look for
	 * the data at 32-byte boundaries. */
	if (w->alignment != GGUF_DEFAULT_ALIGN && !w->align_key &&
	    (rc = veil_gguf_w_u32(w, GGUF_KEY_ALIGN, w->alignment)) < 0)
		goto out;
	if ((rc = veil_buf_append(&b, GGUF_MAGIC, 4)) < 0 ||
	    (rc = put_u32(&b, 3)) < 0 ||
	    (rc = put_u64(&b, w->n_t)) < 0 ||
	    (rc = put_u64(&b, w->n_kv)) < 0 ||
	    (rc = veil_buf_append(&b, w->kv.data, w->kv.len)) < 0)
		goto out;
	for (size_t i = 0; i < w->n_t; i++) {
		const struct wtensor *t = &w->t[i];

		if ((rc = put_str(&b, t->name, strlen(t->name))) < 0 ||
		    (rc = put_u32(&b, t->n_dims)) < 0)
			goto out;
		for (uint32_t d = 0; d < t->n_dims; d++)
			if ((rc = put_u64(&b, t->ne[d])) < 0)
				goto out;
		if ((rc = put_u32(&b, (uint32_t)t->type)) < 0 ||
		    (rc = put_u64(&b, t->offset)) < 0)
			goto out;
	}
	w->pos = 0;
	if ((rc = fwrite_all(f, b.data, b.len, &w->pos)) < 0 ||
	    (rc = fwrite_pad(w, f)) < 0)
		goto out;
	w->header_done = true;
	w->next_data = 0;
out:
	veil_buf_free(&b);
	return rc;
}

int veil_gguf_w_data(struct veil_gguf_writer *w, FILE *f, const void *data,
		     size_t len)
{
	const struct wtensor *t;
	int rc;

	if (!w || !f || (!data && len))
		return veil_errf(VEIL_EINVAL, "gguf writer: NULL argument");
	if (!w->header_done)
		return veil_errf(VEIL_EINVAL, "gguf writer: data before header");
	if (w->next_data >= w->n_t)
		return veil_errf(VEIL_EINVAL, "gguf writer: more data than tensors");
	t = &w->t[w->next_data];
	if (len != t->size)
		return veil_errf(VEIL_EINVAL, "tensor %s: %zu bytes given, %zu "
				 "expected", t->name, len, t->size);
	if ((rc = fwrite_all(f, data, len, &w->pos)) < 0 ||
	    (rc = fwrite_pad(w, f)) < 0)
		return rc;
	w->next_data++;
	return 0;
}
