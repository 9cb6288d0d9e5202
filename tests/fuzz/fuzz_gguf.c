/* libFuzzer harness for the GGUF reader: parses the input with exactly the
 * entry point the loader uses for buffers, then touches every kv (every
 * string of string arrays included) and every tensor's data, so that a
 * pointer or length the parser let through that reaches outside the input
 * trips ASan.  Every typed getter is called on every key (and on a key that
 * is absent): each must agree with the kv it finds (value, type rules of
 * include/veil/gguf.h) and fail only with VEIL_EFORMAT for a type it does
 * not take.  Seeds: tests/fuzz/corpus/fuzz_gguf/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/gguf.h"

/* Reads every byte of a range so ASan checks all of it; the sum keeps the
 * reads from being optimized away. */
static volatile uint8_t sink;

static void touch(const void *p, uint64_t n)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	for (uint64_t i = 0; i < n; i++)
		s ^= b[i];
	sink ^= s;
}

static void walk_kv(const struct veil_gguf_kv *kv)
{
	struct veil_gguf_str s;
	size_t esz = 0;

	touch(kv->key.p, kv->key.len);
	if (kv->type == VEIL_GGUF_STR) {
		touch(kv->v.str.p, kv->v.str.len);
		return;
	}
	if (kv->type != VEIL_GGUF_ARR)
		return;
	if (kv->v.arr.type == VEIL_GGUF_STR) {
		for (uint64_t i = 0; i < kv->v.arr.n; i++) {
			if (veil_gguf_arr_str(kv, i, &s) != 0)
				__builtin_trap();
			touch(s.p, s.len);
		}
		/* One past the end must be refused. */
		if (veil_gguf_arr_str(kv, kv->v.arr.n, &s) == 0)
			__builtin_trap();
		return;
	}
	switch (kv->v.arr.type) {
	case VEIL_GGUF_U8: case VEIL_GGUF_I8: case VEIL_GGUF_BOOL: esz = 1; break;
	case VEIL_GGUF_U16: case VEIL_GGUF_I16: esz = 2; break;
	case VEIL_GGUF_U32: case VEIL_GGUF_I32: case VEIL_GGUF_F32: esz = 4; break;
	default: esz = 8; break;
	}
	touch(kv->v.arr.data, kv->v.arr.n * esz);
}

static bool is_int(enum veil_gguf_vtype t)
{
	return t == VEIL_GGUF_U8 || t == VEIL_GGUF_I8 || t == VEIL_GGUF_U16 ||
	       t == VEIL_GGUF_I16 || t == VEIL_GGUF_U32 || t == VEIL_GGUF_I32 ||
	       t == VEIL_GGUF_U64 || t == VEIL_GGUF_I64;
}

static bool is_signed(enum veil_gguf_vtype t)
{
	return t == VEIL_GGUF_I8 || t == VEIL_GGUF_I16 || t == VEIL_GGUF_I32 ||
	       t == VEIL_GGUF_I64;
}

/* A getter that fails must say "wrong type / does not fit", never "absent". */
static void want(bool ok_expected, int rc)
{
	if (ok_expected ? rc != 0 : rc != VEIL_EFORMAT)
		__builtin_trap();
}

/* Calls every typed getter on `key` (the key of kv, which find returned). */
static void getters(const struct veil_gguf *g, const char *key,
		    const struct veil_gguf_kv *kv)
{
	enum veil_gguf_vtype t = kv->type;
	bool in = is_int(t), neg = in && is_signed(t) && kv->v.i64 < 0;
	uint64_t mag = neg ? (uint64_t)0 - (uint64_t)kv->v.i64 : kv->v.u64;
	uint64_t u64 = 0, n = 0;
	uint32_t u32 = 0;
	int32_t i32 = 0;
	float f = 0;
	bool b = false;
	struct veil_gguf_str s;
	const uint8_t *data = NULL;
	int rc;

	rc = veil_gguf_get_u64(g, key, &u64);
	want(in && !neg, rc);
	if (rc == 0 && u64 != mag)
		__builtin_trap();
	rc = veil_gguf_get_u32(g, key, &u32);
	want(in && !neg && mag <= UINT32_MAX, rc);
	if (rc == 0 && u32 != mag)
		__builtin_trap();
	rc = veil_gguf_get_i32(g, key, &i32);
	want(in && (neg ? mag <= (uint64_t)INT32_MAX + 1 : mag <= INT32_MAX), rc);
	if (rc == 0 && (neg ? (uint64_t)0 - (uint64_t)(int64_t)i32 != mag : (uint64_t)i32 != mag))
		__builtin_trap();
	rc = veil_gguf_get_f32(g, key, &f);
	want(t == VEIL_GGUF_F32 || t == VEIL_GGUF_F64, rc);
	rc = veil_gguf_get_bool(g, key, &b);
	want(t == VEIL_GGUF_BOOL, rc);
	if (rc == 0 && b != kv->v.b)
		__builtin_trap();
	rc = veil_gguf_get_str(g, key, &s);
	want(t == VEIL_GGUF_STR, rc);
	if (rc == 0 && (s.p != kv->v.str.p || s.len != kv->v.str.len))
		__builtin_trap();
	for (int e = VEIL_GGUF_U8; e <= VEIL_GGUF_F64; e++) {
		rc = veil_gguf_get_arr(g, key, (enum veil_gguf_vtype)e, &data, &n);
		want(t == VEIL_GGUF_ARR && kv->v.arr.type == (enum veil_gguf_vtype)e, rc);
		if (rc == 0 && (data != kv->v.arr.data || n != kv->v.arr.n))
			__builtin_trap();
	}
	/* Not an array of strings: refused by arr_str. */
	if ((t != VEIL_GGUF_ARR || kv->v.arr.type != VEIL_GGUF_STR) &&
	    veil_gguf_arr_str(kv, 0, &s) == 0)
		__builtin_trap();
}

static void absent_key(const struct veil_gguf *g)
{
	static const char k[] = "veil.fuzz.absent\x01";
	uint64_t u64, n;
	uint32_t u32;
	int32_t i32;
	float f;
	bool b;
	struct veil_gguf_str s;
	const uint8_t *data;

	if (veil_gguf_find(g, k))
		return;
	if (veil_gguf_get_u64(g, k, &u64) != VEIL_ENOENT ||
	    veil_gguf_get_u32(g, k, &u32) != VEIL_ENOENT ||
	    veil_gguf_get_i32(g, k, &i32) != VEIL_ENOENT ||
	    veil_gguf_get_f32(g, k, &f) != VEIL_ENOENT ||
	    veil_gguf_get_bool(g, k, &b) != VEIL_ENOENT ||
	    veil_gguf_get_str(g, k, &s) != VEIL_ENOENT ||
	    veil_gguf_get_arr(g, k, VEIL_GGUF_U8, &data, &n) != VEIL_ENOENT)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_gguf *g = NULL;

	if (veil_gguf_parse(data, size, &g) != 0)
		return 0;
	for (size_t i = 0; i < veil_gguf_n_kv(g); i++) {
		const struct veil_gguf_kv *kv = veil_gguf_kv_at(g, i), *found;
		size_t n = (size_t)kv->key.len;
		char *key;

		walk_kv(kv);
		if (memchr(kv->key.p, '\0', n))
			continue;
		if (!(key = malloc(n + 1)))
			__builtin_trap();
		memcpy(key, kv->key.p, n);
		key[n] = '\0';
		/* Lookup by name finds a kv with that key (the first of
		 * duplicates, if the reader lets any through). */
		found = veil_gguf_find(g, key);
		if (!found || found->key.len != n || memcmp(found->key.p, key, n))
			__builtin_trap();
		getters(g, key, found);
		free(key);
	}
	absent_key(g);
	for (size_t i = 0; i < veil_gguf_n_tensors(g); i++) {
		const struct veil_gguf_tensor *t = veil_gguf_tensor_at(g, i);

		if (veil_gguf_tensor(g, t->name) != t)
			__builtin_trap();
		touch(t->data, t->size);
	}
	veil_gguf_close(g);
	return 0;
}
