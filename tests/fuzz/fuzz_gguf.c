/* libFuzzer harness for the GGUF reader: parses the input with exactly the
 * entry point the loader uses for buffers, then touches every kv (every
 * string of string arrays included) and every tensor's data, so that a
 * pointer or length the parser let through that reaches outside the input
 * trips ASan.  Seeds: tests/fuzz/corpus/fuzz_gguf/. */
#include <stddef.h>
#include <stdint.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_gguf *g = NULL;
	char key[64];

	if (veil_gguf_parse(data, size, &g) != 0)
		return 0;
	for (size_t i = 0; i < veil_gguf_n_kv(g); i++) {
		const struct veil_gguf_kv *kv = veil_gguf_kv_at(g, i);
		size_t n = kv->key.len < sizeof(key) - 1 ? (size_t)kv->key.len
							   : sizeof(key) - 1;

		walk_kv(kv);
		/* Lookup by name finds a kv with that key. */
		memcpy(key, kv->key.p, n);
		key[n] = '\0';
		if (n == kv->key.len && !memchr(key, '\0', n) &&
		    !veil_gguf_find(g, key))
			__builtin_trap();
	}
	for (size_t i = 0; i < veil_gguf_n_tensors(g); i++) {
		const struct veil_gguf_tensor *t = veil_gguf_tensor_at(g, i);

		if (veil_gguf_tensor(g, t->name) != t)
			__builtin_trap();
		touch(t->data, t->size);
	}
	veil_gguf_close(g);
	return 0;
}
