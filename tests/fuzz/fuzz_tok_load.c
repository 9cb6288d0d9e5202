/* libFuzzer harness for the tokenizer loader (veil_tok_load: tokenizer.ggml.*
 * metadata of a GGUF: model, pre, tokens, scores, token_type, merges,
 * special token ids and flags).  The input is parsed with veil_gguf_parse;
 * whatever loads is exercised a little (a short fixed text encoded with and
 * without special parsing, every token's piece rendered up to 4096 ids) so
 * that tables the loader built wrongly trip ASan or the checks: ids in
 * range, pieces no longer than veil_tok_max_token_bytes.  The fuzz_tokenizer
 * harness covers encoding in depth over real vocabularies. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/gguf.h"
#include "veil/tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	veil_log_setup(VEIL_LOG_OFF, false, stderr);
	return 0;
}

static const char text[] = "Hello world! <s>\xe2\x96\x81 caf\xc3\xa9 12345 \xff<|eot_id|>\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_gguf *g = NULL;
	struct veil_tok *t = NULL;
	uint8_t *copy;
	int32_t ids[256];
	char piece[512];

	if (size > (1u << 20))
		return 0;
	if (!(copy = malloc(size ? size : 1)))
		abort();
	if (size)
		memcpy(copy, data, size);
	if (veil_gguf_parse(copy, size, &g) != 0)
		goto out;
	if (veil_tok_load(g, &t) != 0) {
		if (t)
			abort();
		goto out;
	}
	/* The tokenizer copies what it needs: the file can go first. */
	veil_gguf_close(g);
	g = NULL;
	{
		int32_t nv = veil_tok_n_vocab(t);
		size_t maxb = veil_tok_max_token_bytes(t);

		if (nv <= 0 || maxb < 1)
			abort();
		if (veil_tok_bos(t) >= nv || veil_tok_eos(t) >= nv || veil_tok_eot(t) >= nv)
			abort();
		for (int ps = 0; ps < 2; ps++) {
			size_t n = 0;

			if (veil_tok_encode(t, text, sizeof(text) - 1, true, ps, ids,
					    VEIL_ARRAY_LEN(ids), &n) == 0) {
				if (n > VEIL_ARRAY_LEN(ids))
					abort();
				for (size_t i = 0; i < n; i++)
					if (ids[i] < 0 || ids[i] >= nv)
						abort();
			}
		}
		for (int32_t id = 0; id < nv && id < 4096; id++) {
			int r = veil_tok_piece(t, id, true, piece, sizeof(piece));
			size_t len = 0;

			if (r >= 0 && (size_t)r > maxb)
				abort();
			(void)veil_tok_type(t, id);
			(void)veil_tok_is_eog(t, id);
			if (!veil_tok_text(t, id, &len))
				abort();
		}
		if (veil_tok_text(t, nv, NULL) || veil_tok_piece(t, nv, true, piece, sizeof(piece)) >= 0)
			abort();
	}
	veil_tok_free(t);
out:
	veil_gguf_close(g);
	free(copy);
	return 0;
}
