/* veil-node: the parsing of a completion request's body that needs no node
 * state: the OpenAI parameters, and the messages (rendered with the
 * model's chat template) or the prompt, tokenized.  Pure functions over a
 * parsed JSON body and a tokenizer: api.c calls them, and the fuzz harness
 * tests/fuzz/fuzz_node_request.c compiles this file directly.
 *
 * Every function returns 0 or a negative VEIL_E* code and then writes a
 * message for the client into err (errcap bytes, NUL-terminated); the
 * out-params are meaningful only on success. */
#ifndef VEIL_NODE_PARSE_H
#define VEIL_NODE_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "veil/sampler.h"
#include "veil/tokenizer.h"

#define NODE_MAX_MESSAGES 256

struct node_params {
	bool stream, include_usage, logprobs;
	int top_logprobs;
	int32_t max_tokens;           /* 0: not given */
	struct veil_sampler_params sp;
	const char *stops[VEIL_STOP_MAX]; /* point into the body (not owned) */
	size_t n_stops;
};

/* The sampling and output fields of body b (chat: /v1/chat/completions,
 * else /v1/completions); a seed not given is drawn at random.
 * VEIL_ENOTSUP (OpenAI code "unsupported_parameter") for a parameter the
 * node cannot honour: a non-empty logit_bias or tools, a tool_choice other
 * than "none", a response_format other than {"type": "text"}; another
 * negative code (code "invalid_parameter") for a malformed field. */
int node_parse_params(json_t *b, bool chat, struct node_params *p, char *err,
		      size_t errcap);
/* Chat: the messages rendered with template chat_tmpl (enum
 * veil_chat_tmpl) and tokenized in one pass as llama.cpp does, except that
 * no control token is matched inside a message's content
 * (veil_tok_encode_spans), so a user cannot inject control tokens; roles
 * are system (or developer), user, assistant and tool.  At most cap ids
 * into ids, else VEIL_ERANGE.  The rendered text is wiped.  No state:
 * safe from any thread. */
int node_chat_tokens(const struct veil_tok *tok, int chat_tmpl, json_t *msgs, int32_t *ids,
		     size_t cap, size_t *n_ids, char *err, size_t errcap);
/* Completions: the prompt (a string, or an array of one string),
 * tokenized with BOS as the model wants and no special tokens parsed. */
int node_prompt_tokens(const struct veil_tok *tok, json_t *prompt, int32_t *ids, size_t cap,
		       size_t *n_ids, char *err, size_t errcap);

#endif
