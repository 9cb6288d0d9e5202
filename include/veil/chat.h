/* Chat templates: llama.cpp's built-in list (llm_chat_detect_template /
 * llm_chat_apply_template, as of early 2025, plus a few later entries).
 * Not a Jinja engine: the family is recognised in the model's template
 * source (tokenizer.chat_template) by the same substring heuristics as
 * llama.cpp, and each family is rendered by hand-written code that gives
 * byte-for-byte the output of llama.cpp's renderer.
 *
 * Rendered text contains special-token texts (e.g. "<|im_start|>") and is
 * meant to be tokenized with parse_special = true.  Message contents are
 * inserted verbatim, so a content containing "<|im_end|>" would become that
 * special token; veil_chat_apply_spans() reports where the contents lie so
 * a caller can tokenize the whole text in one pass with control tokens not
 * matched inside them (veil_tok_encode_spans, as the node does).
 *
 * VEIL_CHAT_PLAIN is veil's own format for models without a template (e.g.
 * stories260K):
 *
 *   "System: <content>\n"        for each message, the role's name with its
 *   "User: <content>\n"          first letter upper-cased, ": ", the content
 *   "Assistant: <content>\n"     and "\n";
 *   "Assistant:"                 appended when add_assistant is set.
 *
 * Like llama.cpp, some families ignore add_assistant (llama2 and mistral
 * variants, orion, minicpm: their user turn already ends with the assistant
 * prefix) and some drop roles they do not know (vicuna, deepseek, ...). */
#ifndef VEIL_CHAT_H
#define VEIL_CHAT_H

#include "veil/base.h"
#include "veil/tokenizer.h" /* struct veil_tok_span */

/* Values are stable (new families are appended). */
enum veil_chat_tmpl {
	VEIL_CHAT_PLAIN = 0,
	VEIL_CHAT_CHATML,
	VEIL_CHAT_LLAMA2,
	VEIL_CHAT_LLAMA2_SYS,
	VEIL_CHAT_LLAMA2_SYS_BOS,
	VEIL_CHAT_LLAMA2_SYS_STRIP,
	VEIL_CHAT_MISTRAL_V1,
	VEIL_CHAT_MISTRAL_V3,
	VEIL_CHAT_MISTRAL_V3_TEKKEN,
	VEIL_CHAT_MISTRAL_V7,
	VEIL_CHAT_MISTRAL_V7_TEKKEN,
	VEIL_CHAT_PHI3,
	VEIL_CHAT_PHI4,
	VEIL_CHAT_FALCON3,
	VEIL_CHAT_ZEPHYR,
	VEIL_CHAT_MONARCH,
	VEIL_CHAT_GEMMA,
	VEIL_CHAT_ORION,
	VEIL_CHAT_OPENCHAT,
	VEIL_CHAT_VICUNA,
	VEIL_CHAT_VICUNA_ORCA,
	VEIL_CHAT_DEEPSEEK,
	VEIL_CHAT_DEEPSEEK2,
	VEIL_CHAT_DEEPSEEK3,
	VEIL_CHAT_COMMAND_R,
	VEIL_CHAT_LLAMA3,
	VEIL_CHAT_CHATGLM3,
	VEIL_CHAT_CHATGLM4,
	VEIL_CHAT_GLMEDGE,
	VEIL_CHAT_MINICPM,
	VEIL_CHAT_EXAONE3,
	VEIL_CHAT_EXAONE4,
	VEIL_CHAT_RWKV_WORLD,
	VEIL_CHAT_GRANITE,
	VEIL_CHAT_GIGACHAT,
	VEIL_CHAT_MEGREZ,
	VEIL_CHAT_BAILING,
	VEIL_CHAT_LLAMA4,
	VEIL_CHAT_SMOLVLM,
	VEIL_CHAT_COUNT_
};

/* role: "system", "user", "assistant", "tool" (granite also knows
 * "assistant_tool_call" and "tool_response").  A role must be 1..32 bytes
 * of [a-z_]; content must not be NULL (use ""). */
struct veil_chat_msg {
	const char *role;
	const char *content;
};

/* Detects the family from a Jinja template source, by llama.cpp's
 * heuristics (a template name such as "chatml" is accepted too, as llama.cpp
 * does).  NULL/empty -> VEIL_CHAT_PLAIN with *known = false.  Unknown ->
 * VEIL_CHAT_PLAIN with *known = false.  known may be NULL. */
enum veil_chat_tmpl veil_chat_detect(const char *src, size_t len, bool *known);

/* The family named as llama.cpp's --chat-template does ("chatml", "llama3",
 * "mistral-v7", ...; also "plain"); -1 when unknown. */
int veil_chat_from_name(const char *name);

/* The llama.cpp name of t ("plain" for VEIL_CHAT_PLAIN); "?" if invalid. */
const char *veil_chat_name(enum veil_chat_tmpl t);

/* Renders messages; add_assistant appends the assistant turn prefix (where
 * the family has one).  Appends to out, capped by out->max (VEIL_ERANGE).
 * VEIL_EINVAL for a bad template value, role or NULL content. */
int veil_chat_apply(enum veil_chat_tmpl t, const struct veil_chat_msg *msgs,
		    size_t n, bool add_assistant, struct veil_buf *out);

/* As veil_chat_apply(), and records in spans[0..*n_spans) where message
 * contents were placed (byte ranges of out->data, in order; empty contents
 * are skipped): what veil_tok_encode_spans takes.  VEIL_ERANGE when more
 * than max_spans would be needed. */
int veil_chat_apply_spans(enum veil_chat_tmpl t,
			  const struct veil_chat_msg *msgs, size_t n,
			  bool add_assistant, struct veil_buf *out,
			  struct veil_tok_span *spans, size_t max_spans,
			  size_t *n_spans);

#endif
