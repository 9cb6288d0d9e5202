/* libFuzzer harness for the model loader (veil_model_from_gguf, the part of
 * veil_model_load after the file is read: architecture, hyper-parameters,
 * presence / type / shape of every tensor, conversion of norm vectors and
 * biases to F32, and, on CPUs with AVX-512 VNNI, the repacking of Q8_0 /
 * Q4_0 matrices).  The input is parsed with veil_gguf_parse from a 64-byte
 * aligned copy of exactly its size (ASan catches reads past it).
 *
 * Each run stays cheap: every tensor lies inside the input, so tensor work
 * is bounded by its size; but the loader sizes per-layer state and its
 * vector arena from the hyper-parameters before it looks for the tensors,
 * so files whose numbers ask for more than 256 MiB are skipped (see
 * too_big).  A loaded model must report what its file says. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/gguf.h"
#include "veil/model.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	veil_log_setup(VEIL_LOG_OFF, false, stderr);
	return 0;
}

/* The integer value of the first key ending in sfx, 0 when none. */
static uint64_t hp(const struct veil_gguf *g, const char *sfx)
{
	size_t sl = strlen(sfx);

	for (size_t i = 0; i < veil_gguf_n_kv(g); i++) {
		const struct veil_gguf_kv *kv = veil_gguf_kv_at(g, i);

		if (kv->key.len >= sl && !memcmp(kv->key.p + kv->key.len - sl, sfx, sl) &&
		    kv->type != VEIL_GGUF_STR && kv->type != VEIL_GGUF_ARR &&
		    kv->type != VEIL_GGUF_F32 && kv->type != VEIL_GGUF_F64)
			return kv->v.u64 > (1u << 30) ? (1u << 30) : kv->v.u64;
	}
	return 0;
}

/* The loader sizes its per-layer state and vector arena from the
 * hyper-parameters before it finds the tensors they imply: skip files whose
 * numbers would have it reserve more than 256 MiB (each layer needs 9+
 * tensors, so block_count past the tensor count cannot load anyway). */
static int too_big(const struct veil_gguf *g)
{
	uint64_t layers = hp(g, ".block_count"), e = hp(g, ".embedding_length");
	uint64_t heads = hp(g, ".attention.head_count"), kl = hp(g, ".attention.key_length");
	double width = (double)e + (double)heads * (double)(kl > e ? kl : e);

	return layers > veil_gguf_n_tensors(g) || (double)layers * 3 * width * 4 > (256u << 20);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_gguf *g = NULL;
	struct veil_model *m = NULL;
	void *buf = NULL;
	size_t off = 64;
	uint8_t *copy;

	if (size > (4u << 20))
		return 0;
	/* 64-byte aligned (as a mapping's tensors are), ending exactly at size. */
	if (posix_memalign(&buf, 4096, size + off + 1))
		abort();
	copy = (uint8_t *)buf + off;
	if (size)
		memcpy(copy, data, size);
	if (veil_gguf_parse(copy, size, &g) != 0)
		goto out;
	if (too_big(g)) {
		veil_gguf_close(g);
		goto out;
	}
	if (veil_model_from_gguf(g, &m) == 0) {
		const struct veil_model_hparams *hp = veil_model_hparams(m);

		if (veil_model_gguf(m) != g || hp->n_layer <= 0 || hp->n_embd <= 0 ||
		    hp->n_vocab <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 ||
		    hp->n_head % hp->n_head_kv || hp->head_dim <= 0 ||
		    hp->n_rot > hp->head_dim || veil_model_file_bytes(m) != size)
			abort();
		(void)veil_model_weight_bytes_per_token(m);
		(void)veil_model_n_params(m);
		(void)veil_model_main_type(m);
		veil_model_free(m);
	}
out:
	free(buf);
	return 0;
}
