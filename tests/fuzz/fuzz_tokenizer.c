/* libFuzzer harness for the tokenizer: arbitrary bytes (invalid UTF-8
 * included) through veil_tok_encode with parse_special on and off, the
 * capped veil_tok_encode_max checked against it (same ids at cap = n,
 * VEIL_ERANGE at n - 1) and veil_tok_encode_spans at its two ends (no span:
 * the same as parse_special on; one span over everything: off), then every
 * id rendered with veil_tok_piece.  The vocabularies come from
 * ../shared (env VEIL_SHARED): the byte-level BPE of GPT-2 and the
 * SentencePiece of stories260K.  Without them the harness does nothing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/gguf.h"
#include "veil/tokenizer.h"

#include "fuzz_vocab.h"

static struct veil_tok *toks[3];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	toks[0] = fuzz_vocab_load("models/vocab/ggml-vocab-gpt-2.gguf");
	toks[1] = fuzz_vocab_load("models/stories260K.gguf");
	toks[2] = fuzz_vocab_load("models/tiny-synth-f16.gguf");
	if (!toks[0] && !toks[1] && !toks[2])
		fprintf(stderr, "fuzz_tokenizer: no vocabulary under VEIL_SHARED "
			"(default ../shared); inputs are ignored\n");
	return 0;
}

/* U+2581 read as a space, scanning left to right (it cannot overlap). */
static size_t unescape(const char *p, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (i + 2 < n && !memcmp(p + i, "\xe2\x96\x81", 3)) {
			out[o++] = ' ';
			i += 2;
		} else {
			out[o++] = p[i];
		}
	}
	return o;
}

/* SentencePiece with byte fallback loses nothing: the pieces give back the
 * text with the space prefix (byte-fallback pieces may keep U+2581 where
 * the text had a space, hence both sides are compared unescaped). */
static void check_spm_roundtrip(const struct veil_tok *t, const uint8_t *data,
				size_t size, const int32_t *ids, size_t n)
{
	static char back[4 * 4096 + 8], nb[4 * 4096 + 8], want[4096 + 8];
	size_t bl = 0, wl, nl;

	if (size == 0)
		return;
	want[0] = ' ';
	wl = 1 + unescape((const char *)data, size, want + 1);
	for (size_t i = 0; i < n; i++) {
		int r = veil_tok_piece(t, ids[i], false, back + bl, sizeof(back) - bl);

		if (r < 0)
			abort();
		bl += (size_t)r;
	}
	nl = unescape(back, bl, nb);
	if (nl != wl || memcmp(nb, want, wl))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int32_t ids[1 << 16], ids2[1 << 16];
	char piece[4096];

	if (size > 4096)
		return 0;
	for (size_t k = 0; k < sizeof(toks) / sizeof(toks[0]); k++) {
		const struct veil_tok *t = toks[k];

		if (!t)
			continue;
		for (int ps = 0; ps < 2; ps++) {
			size_t n = 0, need = 0, m = 0;
			int rc = veil_tok_encode(t, (const char *)data, size, ps, ps,
						 ids, sizeof(ids) / sizeof(ids[0]), &n);

			if (rc < 0)
				abort();
			/* The count is the same when asked with no room. */
			if (veil_tok_encode(t, (const char *)data, size, ps, ps, NULL,
					    0, &need) != (n ? VEIL_ERANGE : 0) ||
			    need != n)
				abort();
			/* The capped encoder: the same ids when they fit, a
			 * refusal as soon as one more is needed. */
			if (veil_tok_encode_max(t, (const char *)data, size, ps, ps, ids2,
						n, &m) != 0 || m != n ||
			    (n && memcmp(ids, ids2, n * sizeof(ids[0]))))
				abort();
			if (n && veil_tok_encode_max(t, (const char *)data, size, ps, ps,
						     ids2, n - 1, &m) != VEIL_ERANGE)
				abort();
			/* veil_tok_encode_spans at its two ends: no span is
			 * parse_special on, one span over the whole text off */
			{
				struct veil_tok_span all = {0, size};

				if (veil_tok_encode_spans(t, (const char *)data, size,
							  ps ? NULL : &all, ps ? 0 : 1, ps, ids2,
							  n, &m) != 0 ||
				    m != n || (n && memcmp(ids, ids2, n * sizeof(ids[0]))))
					abort();
			}
			for (size_t i = 0; i < n; i++) {
				if (ids[i] < 0 || ids[i] >= veil_tok_n_vocab(t))
					abort();
				if (veil_tok_piece(t, ids[i], ps, piece, sizeof(piece)) < 0)
					abort();
			}
			if (k == 1 && !ps)
				check_spm_roundtrip(t, data, size, ids, n);
		}
	}
	return 0;
}
