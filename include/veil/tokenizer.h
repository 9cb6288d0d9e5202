/* Tokenizers built from GGUF metadata (tokenizer.ggml.*), reproducing
 * llama.cpp's llama-vocab behaviour:
 *   - "llama": SentencePiece (score-driven merges, add_space_prefix, byte
 *     fallback <0xXX>);
 *   - "gpt2": byte-level BPE with the pre-tokenizers gpt-2, llama3
 *     (llama-bpe), qwen2, smollm and starcoder, selected by
 *     tokenizer.ggml.pre.
 * Control tokens are matched in the text when parse_special is set
 * (user-defined ones always), or outside given spans
 * (veil_tok_encode_spans).
 * A loaded tokenizer is immutable and safe to share between threads. */
#ifndef VEIL_TOKENIZER_H
#define VEIL_TOKENIZER_H

#include "veil/base.h"
#include "veil/gguf.h"

/* Token attributes from tokenizer.ggml.token_type (llama.cpp's numbering). */
enum veil_tok_type {
	VEIL_TOK_UNDEFINED = 0,
	VEIL_TOK_NORMAL = 1,
	VEIL_TOK_UNKNOWN = 2,
	VEIL_TOK_CONTROL = 3,
	VEIL_TOK_USER_DEFINED = 4,
	VEIL_TOK_UNUSED = 5,
	VEIL_TOK_BYTE = 6,
};

enum veil_tok_kind {
	VEIL_TOK_SPM = 1,   /* tokenizer.ggml.model = "llama" */
	VEIL_TOK_BPE = 2,   /* tokenizer.ggml.model = "gpt2" */
};

#define VEIL_TOK_MAX_TEXT (16u << 20)  /* bytes of input text accepted */

struct veil_tok;

/* Builds the tokenizer from g's metadata.  The tokenizer copies what it
 * needs, so g may be closed afterwards.  VEIL_ENOTSUP for an unknown model
 * or pre-tokenizer (detail names it). */
int veil_tok_load(const struct veil_gguf *g, struct veil_tok **out);
void veil_tok_free(struct veil_tok *t);

/* Tokenizes len bytes of text (UTF-8; invalid bytes are handled as llama.cpp
 * does).  add_special: prepend BOS (and append EOS) as the model's
 * add_bos_token / add_eos_token say.  parse_special: recognise control (and
 * unknown) token texts in the input; user-defined ones are recognised
 * either way, as llama.cpp does.  Writes at most cap ids; if more
 * are needed returns VEIL_ERANGE and sets *n_out to the count required. */
int veil_tok_encode(const struct veil_tok *t, const char *text, size_t len,
		    bool add_special, bool parse_special, int32_t *ids,
		    size_t cap, size_t *n_out);
/* As veil_tok_encode (the same ids when they fit), but stops as soon as
 * more than cap ids are needed: VEIL_ERANGE, *n_out not written, without
 * finishing the text (a server's bound on the work an oversized prompt
 * costs; BPE still pre-splits each raw fragment whole, SentencePiece merges
 * each fragment whole -- bound the text's length first, see
 * veil_tok_max_token_bytes). */
int veil_tok_encode_max(const struct veil_tok *t, const char *text, size_t len,
			bool add_special, bool parse_special, int32_t *ids,
			size_t cap, size_t *n_out);
/* A byte range [off, off + len) of a text. */
struct veil_tok_span {
	size_t off;
	size_t len;
};

/* As veil_tok_encode_max with parse_special = true over the whole text at
 * once (one pass: BPE pre-splits and SentencePiece merges run across span
 * edges, and the SentencePiece space prefix goes only after BOS or a
 * special token, as llama.cpp tokenizes a rendered chat prompt), except
 * inside spans[0..n_spans): there no control (or unknown) token text is
 * matched, as with parse_special = false (user-defined ones still are),
 * and no special token text that crosses a span's edge is matched at all
 * -- so text placed in a span (a user's message content) cannot make a
 * control token, nor eat part of one around it.  The spans must be in
 * order, not overlapping, inside the text (VEIL_EINVAL otherwise); empty
 * ones are allowed.  No spans: exactly veil_tok_encode_max(..., true, ...);
 * one span over the whole text: veil_tok_encode_max(..., false, ...). */
int veil_tok_encode_spans(const struct veil_tok *t, const char *text, size_t len,
			  const struct veil_tok_span *spans, size_t n_spans,
			  bool add_special, int32_t *ids, size_t cap, size_t *n_out);
/* The most input bytes one token stands for: the longest of its rendered
 * piece (veil_tok_piece with special) and its text in the vocabulary (a
 * SentencePiece U+2581 is 3 input bytes that render as one space), at
 * least 1.  A text of more than
 * n * this bytes needs more than n tokens, unless the model drops bytes it
 * has no token for, or a special token's lstrip/rstrip eats whitespace
 * (parse_special only). */
size_t veil_tok_max_token_bytes(const struct veil_tok *t);

/* The text bytes of one token as llama.cpp's token_to_piece renders it
 * (SentencePiece '\u2581' -> ' ', byte tokens -> the byte, byte-level BPE
 * unmapped to raw bytes).  Control tokens render as "" unless `special`.
 * Returns the piece length, or a negative code; writes at most cap bytes
 * (VEIL_ERANGE if more are needed).  The piece may be a partial UTF-8
 * sequence. */
int veil_tok_piece(const struct veil_tok *t, int32_t id, bool special,
		   char *buf, size_t cap);

enum veil_tok_kind veil_tok_kind(const struct veil_tok *t);
const char *veil_tok_pre_name(const struct veil_tok *t); /* "default" for SPM */
int32_t veil_tok_n_vocab(const struct veil_tok *t);
int32_t veil_tok_bos(const struct veil_tok *t);   /* -1 when none */
int32_t veil_tok_eos(const struct veil_tok *t);   /* -1 when none */
int32_t veil_tok_eot(const struct veil_tok *t);   /* e.g. <|eot_id|>, -1 */
bool veil_tok_add_bos(const struct veil_tok *t);
/* True for EOS, EOT and other end-of-generation tokens. */
bool veil_tok_is_eog(const struct veil_tok *t, int32_t id);
enum veil_tok_type veil_tok_type(const struct veil_tok *t, int32_t id);
/* The raw vocabulary string of a token (as stored in the GGUF) and its
 * length; NULL for an id out of range. */
const char *veil_tok_text(const struct veil_tok *t, int32_t id, size_t *len);
/* Id of an exact vocabulary string, -1 when absent. */
int32_t veil_tok_find(const struct veil_tok *t, const char *s, size_t len);

#endif
