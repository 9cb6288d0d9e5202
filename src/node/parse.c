/* veil-node: request body parsing (parse.h). */
#include "parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/chat.h"
#include "veil/engine.h"

static int num_field(json_t *body, const char *name, double lo, double hi,
		     double *out, char *err, size_t errcap)
{
	json_t *v = json_object_get(body, name);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v)) {
		snprintf(err, errcap, "'%s' must be a number", name);
		return -1;
	}
	*out = json_number_value(v);
	if (!(*out >= lo && *out <= hi)) {
		snprintf(err, errcap, "'%s' must be between %g and %g", name, lo, hi);
		return -1;
	}
	return 1;
}

static int not_supported(const char *name, char *err, size_t errcap)
{
	snprintf(err, errcap, "'%s' is not supported by this node", name);
	return VEIL_ENOTSUP;
}

/* OpenAI parameters the node cannot honour: refused (VEIL_ENOTSUP) rather
 * than ignored, so that a client never takes an unconstrained answer for
 * one that followed them.  Their neutral values (absent, null, empty, a
 * "text" response_format, tool_choice "none") are accepted. */
static int unsupported(json_t *b, char *err, size_t errcap)
{
	json_t *v, *ty;

	if ((v = json_object_get(b, "logit_bias")) && !json_is_null(v)) {
		if (!json_is_object(v)) {
			snprintf(err, errcap, "'logit_bias' must be an object");
			return VEIL_EINVAL;
		}
		if (json_object_size(v))
			return not_supported("logit_bias", err, errcap);
	}
	if ((v = json_object_get(b, "tools")) && !json_is_null(v)) {
		if (!json_is_array(v)) {
			snprintf(err, errcap, "'tools' must be an array");
			return VEIL_EINVAL;
		}
		if (json_array_size(v))
			return not_supported("tools", err, errcap);
	}
	if ((v = json_object_get(b, "tool_choice")) && !json_is_null(v) &&
	    !(json_is_string(v) && !strcmp(json_string_value(v), "none")))
		return not_supported("tool_choice", err, errcap);
	if ((v = json_object_get(b, "response_format")) && !json_is_null(v)) {
		ty = json_object_get(v, "type");
		if (!json_is_object(v) || !json_is_string(ty)) {
			snprintf(err, errcap, "'response_format' must be an object with a string 'type'");
			return VEIL_EINVAL;
		}
		if (strcmp(json_string_value(ty), "text"))
			return not_supported("response_format", err, errcap);
	}
	return 0;
}

int node_parse_params(json_t *b, bool chat, struct node_params *p, char *err,
		      size_t errcap)
{
	json_t *v;
	double d;
	int r;

	memset(p, 0, sizeof(*p));
	veil_sampler_params_default(&p->sp);
	p->sp.repeat_last_n = 64;
	if ((v = json_object_get(b, "stream")) && !json_is_null(v)) {
		if (!json_is_boolean(v)) {
			snprintf(err, errcap, "'stream' must be a boolean");
			return -1;
		}
		p->stream = json_is_true(v);
	}
	if ((v = json_object_get(b, "stream_options")) && !json_is_null(v)) {
		json_t *u = json_object_get(v, "include_usage");

		if (!json_is_object(v) || (u && !json_is_boolean(u))) {
			snprintf(err, errcap, "'stream_options' must be an object with a boolean 'include_usage'");
			return -1;
		}
		if (!p->stream) {
			snprintf(err, errcap, "'stream_options' is only allowed when 'stream' is true");
			return -1;
		}
		p->include_usage = u && json_is_true(u);
	}
	p->max_tokens = 0;
	if ((r = num_field(b, "max_tokens", 1, 1e9, &d, err, errcap)) < 0)
		return -1;
	if (r)
		p->max_tokens = (int32_t)VEIL_MIN(d, 1e8);
	if ((r = num_field(b, "max_completion_tokens", 1, 1e9, &d, err, errcap)) < 0)
		return -1;
	if (r)
		p->max_tokens = (int32_t)VEIL_MIN(d, 1e8);
	if ((r = num_field(b, "temperature", 0, 2, &d, err, errcap)) < 0)
		return -1;
	if (r)
		p->sp.temperature = (float)d;
	if ((r = num_field(b, "top_p", 0, 1, &d, err, errcap)) < 0)
		return -1;
	if (r)
		p->sp.top_p = (float)d;
	if ((r = num_field(b, "presence_penalty", -2, 2, &d, err, errcap)) < 0)
		return -1;
	if (r)
		p->sp.presence_penalty = (float)d;
	if ((r = num_field(b, "frequency_penalty", -2, 2, &d, err, errcap)) < 0)
		return -1;
	if (r)
		p->sp.frequency_penalty = (float)d;
	if ((v = json_object_get(b, "seed")) && !json_is_null(v)) {
		if (!json_is_integer(v)) {
			snprintf(err, errcap, "'seed' must be an integer");
			return -1;
		}
		p->sp.seed = (uint64_t)json_integer_value(v);
	} else {
		veil_random(&p->sp.seed, sizeof(p->sp.seed));
	}
	if ((v = json_object_get(b, "n")) && !json_is_null(v) &&
	    !(json_is_integer(v) && json_integer_value(v) == 1)) {
		snprintf(err, errcap, "'n' must be 1");
		return -1;
	}
	if ((v = json_object_get(b, "user")) && !json_is_null(v) && !json_is_string(v)) {
		snprintf(err, errcap, "'user' must be a string");
		return -1;
	}
	if ((v = json_object_get(b, "stop")) && !json_is_null(v)) {
		if (json_is_string(v)) {
			p->stops[p->n_stops++] = json_string_value(v);
		} else if (json_is_array(v) && json_array_size(v) <= VEIL_STOP_MAX) {
			size_t i;
			json_t *s;

			json_array_foreach(v, i, s) {
				if (!json_is_string(s)) {
					snprintf(err, errcap, "'stop' entries must be strings");
					return -1;
				}
				p->stops[p->n_stops++] = json_string_value(s);
			}
		} else {
			snprintf(err, errcap, "'stop' must be a string or an array of up to 4 strings");
			return -1;
		}
		for (size_t i = 0; i < p->n_stops; i++)
			if (!*p->stops[i] || strlen(p->stops[i]) > VEIL_STOP_MAX_LEN) {
				snprintf(err, errcap, "'stop' strings must be 1 to %d bytes",
					 VEIL_STOP_MAX_LEN);
				return -1;
			}
	}
	if ((r = unsupported(b, err, errcap)) < 0)
		return r;
	if (chat) {
		if ((v = json_object_get(b, "logprobs")) && !json_is_null(v)) {
			if (!json_is_boolean(v)) {
				snprintf(err, errcap, "'logprobs' must be a boolean");
				return -1;
			}
			p->logprobs = json_is_true(v);
		}
		if ((r = num_field(b, "top_logprobs", 0, VEIL_ENGINE_MAX_LOGPROBS, &d,
				   err, errcap)) < 0)
			return -1;
		if (r) {
			if (!p->logprobs) {
				snprintf(err, errcap, "'top_logprobs' needs 'logprobs' set to true");
				return -1;
			}
			p->top_logprobs = (int)d;
		}
	} else {
		if ((r = num_field(b, "logprobs", 0, 5, &d, err, errcap)) < 0)
			return -1;
		if (r) {
			p->logprobs = true;
			p->top_logprobs = (int)d;
		}
	}
	return 0;
}

/* A prompt text longer than this cannot fit in cap tokens (no token stands
 * for more bytes than the longest piece): refused before the tokenizer,
 * which would spend the loop's time on all of it (~0.5 s per MiB). */
static bool text_over_cap(const struct veil_tok *t, size_t len, size_t cap)
{
	size_t max;

	if (veil_mul_ovf(cap, veil_tok_max_token_bytes(t), &max))
		return false;
	return len > max;
}

/* Appends ids of text[0:len] to ids; VEIL_ERANGE as soon as more than cap
 * ids in all are needed. */
static int tok_append(const struct veil_tok *t, const char *text, size_t len,
		      bool parse_special, int32_t *ids, size_t cap, size_t *n)
{
	size_t got = 0;
	int rc;

	if (!len)
		return 0;
	if (*n > cap || text_over_cap(t, len, cap - *n))
		return VEIL_ERANGE;
	rc = veil_tok_encode_max(t, text, len, false, parse_special, ids + *n, cap - *n, &got);
	if (rc < 0)
		return rc;
	*n += got;
	return 0;
}

static bool role_known(const char *r)
{
	static const char *const known[] = {"system", "user", "assistant", "tool"};

	for (size_t i = 0; i < VEIL_ARRAY_LEN(known); i++)
		if (!strcmp(r, known[i]))
			return true;
	return false;
}

/* Chat: rendered with the model's template and tokenized in one pass,
 * control tokens matched only outside the message contents (the spans the
 * renderer reports), so a user cannot inject them. */
int node_chat_tokens(const struct veil_tok *tok, int chat_tmpl, json_t *msgs, int32_t *ids,
		     size_t cap, size_t *n_ids, char *err, size_t errcap)
{
	struct veil_chat_msg m[NODE_MAX_MESSAGES];
	struct veil_tok_span spans[NODE_MAX_MESSAGES];
	struct veil_buf text = VEIL_BUF_SECRET_INIT(VEIL_TOK_MAX_TEXT);
	struct veil_buf parts = VEIL_BUF_SECRET_INIT(VEIL_TOK_MAX_TEXT);
	char *owned[NODE_MAX_MESSAGES] = {0};
	size_t nm, ns = 0, i, cnt = 0;
	json_t *msg;
	int rc = VEIL_EINVAL;

	if (!json_is_array(msgs) || !(nm = json_array_size(msgs))) {
		snprintf(err, errcap, "'messages' must be a non-empty array");
		return VEIL_EINVAL;
	}
	if (nm > NODE_MAX_MESSAGES) {
		snprintf(err, errcap, "'messages' has more than %d entries", NODE_MAX_MESSAGES);
		return VEIL_EINVAL;
	}
	json_array_foreach(msgs, i, msg) {
		json_t *role = json_object_get(msg, "role");
		json_t *content = json_object_get(msg, "content");
		const char *r;

		if (!json_is_object(msg) || !json_is_string(role)) {
			snprintf(err, errcap, "messages[%zu]: 'role' must be a string", i);
			goto out;
		}
		r = json_string_value(role);
		if (!strcmp(r, "developer"))
			r = "system";
		/* Only OpenAI's roles: some templates build a token from the
		 * role ("<|" role "|>"), so another name could form a control
		 * token.  The name is not echoed: errors to a sealed request
		 * go out in plaintext and hold no user content. */
		if (!role_known(r)) {
			snprintf(err, errcap, "messages[%zu]: 'role' must be one of system, "
				 "developer, user, assistant, tool", i);
			goto out;
		}
		m[i].role = r;
		if (!content || json_is_null(content)) {
			m[i].content = "";
		} else if (json_is_string(content)) {
			if (memchr(json_string_value(content), 0, json_string_length(content))) {
				snprintf(err, errcap, "messages[%zu]: content holds a NUL", i);
				goto out;
			}
			m[i].content = json_string_value(content);
		} else if (json_is_array(content)) {
			/* [{type:"text", text}...] joined with "\n" */
			size_t k;
			json_t *part;

			veil_buf_reset(&parts);
			json_array_foreach(content, k, part) {
				json_t *ty = json_object_get(part, "type");
				json_t *tx = json_object_get(part, "text");

				if (!json_is_string(ty) || strcmp(json_string_value(ty), "text") ||
				    !json_is_string(tx)) {
					snprintf(err, errcap, "messages[%zu]: only text content parts are supported", i);
					goto out;
				}
				/* over the buffer's cap: refused, never cut short */
				if ((k && veil_buf_append_str(&parts, "\n") < 0) ||
				    veil_buf_append(&parts, json_string_value(tx),
						    json_string_length(tx)) < 0) {
					snprintf(err, errcap, "messages[%zu]: content too long", i);
					rc = VEIL_ERANGE;
					goto out;
				}
			}
			if (!(owned[i] = strndup(parts.data ? (char *)parts.data : "", parts.len))) {
				snprintf(err, errcap, "out of memory");
				rc = VEIL_ENOMEM;
				goto out;
			}
			m[i].content = owned[i];
		} else {
			snprintf(err, errcap, "messages[%zu]: 'content' must be a string or an array", i);
			goto out;
		}
	}
	if ((rc = veil_chat_apply_spans((enum veil_chat_tmpl)chat_tmpl, m, nm, true,
					&text, spans, NODE_MAX_MESSAGES, &ns)) < 0) {
		snprintf(err, errcap, "messages could not be rendered: %s", veil_err_detail());
		goto out;
	}
	if (text_over_cap(tok, text.len, cap)) {
		snprintf(err, errcap, "the prompt has more than %zu tokens", cap);
		rc = VEIL_ERANGE;
		goto out;
	}
	if (veil_tok_add_bos(tok) && veil_tok_bos(tok) >= 0) {
		if (!cap) {
			rc = VEIL_ERANGE;
			goto too_long;
		}
		ids[cnt++] = veil_tok_bos(tok);
	}
	if (chat_tmpl == VEIL_CHAT_PLAIN) {
		/* No control tokens in the template: one pass, none parsed. */
		rc = tok_append(tok, (char *)text.data, text.len, false, ids, cap, &cnt);
	} else if (text.len) {
		/* One pass over the whole rendering, as llama.cpp tokenizes
		 * it (merges and the SentencePiece space prefix run across
		 * template/content edges), control tokens matched only
		 * outside the contents. */
		size_t got = 0;

		rc = veil_tok_encode_spans(tok, (char *)text.data, text.len, spans, ns, false,
					   ids + cnt, cap - cnt, &got);
		if (rc >= 0)
			cnt += got;
	}
too_long:
	if (rc == VEIL_ERANGE) {
		snprintf(err, errcap, "the prompt has more than %zu tokens", cap);
		goto out;
	}
	if (rc < 0) {
		snprintf(err, errcap, "the prompt could not be tokenized");
		goto out;
	}
	*n_ids = cnt;
out:
	for (i = 0; i < NODE_MAX_MESSAGES; i++)
		if (owned[i]) {
			veil_wipe(owned[i], strlen(owned[i]));
			free(owned[i]);
		}
	veil_buf_free(&text);
	veil_buf_free(&parts);
	return rc;
}

int node_prompt_tokens(const struct veil_tok *tok, json_t *prompt, int32_t *ids, size_t cap,
		       size_t *n_ids, char *err, size_t errcap)
{
	size_t cnt = 0;
	int rc;

	if (json_is_array(prompt) && json_array_size(prompt) == 1)
		prompt = json_array_get(prompt, 0);
	if (!json_is_string(prompt)) {
		snprintf(err, errcap, "'prompt' must be a string");
		return VEIL_EINVAL;
	}
	if (veil_tok_add_bos(tok) && veil_tok_bos(tok) >= 0)
		ids[cnt++] = veil_tok_bos(tok);
	rc = tok_append(tok, json_string_value(prompt), json_string_length(prompt),
			false, ids, cap, &cnt);
	if (rc == VEIL_ERANGE) {
		snprintf(err, errcap, "the prompt has more than %zu tokens", cap);
		return rc;
	}
	if (rc < 0) {
		snprintf(err, errcap, "the prompt could not be tokenized");
		return rc;
	}
	*n_ids = cnt;
	return 0;
}

