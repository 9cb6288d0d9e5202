/* Chat templates: detection and rendering as llama.cpp's llama-chat.cpp
 * (see include/veil/chat.h). */
#include "veil/chat.h"

#include <string.h>

static const char *const NAMES[VEIL_CHAT_COUNT_] = {
	[VEIL_CHAT_PLAIN] = "plain",
	[VEIL_CHAT_CHATML] = "chatml",
	[VEIL_CHAT_LLAMA2] = "llama2",
	[VEIL_CHAT_LLAMA2_SYS] = "llama2-sys",
	[VEIL_CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
	[VEIL_CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
	[VEIL_CHAT_MISTRAL_V1] = "mistral-v1",
	[VEIL_CHAT_MISTRAL_V3] = "mistral-v3",
	[VEIL_CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
	[VEIL_CHAT_MISTRAL_V7] = "mistral-v7",
	[VEIL_CHAT_MISTRAL_V7_TEKKEN] = "mistral-v7-tekken",
	[VEIL_CHAT_PHI3] = "phi3",
	[VEIL_CHAT_PHI4] = "phi4",
	[VEIL_CHAT_FALCON3] = "falcon3",
	[VEIL_CHAT_ZEPHYR] = "zephyr",
	[VEIL_CHAT_MONARCH] = "monarch",
	[VEIL_CHAT_GEMMA] = "gemma",
	[VEIL_CHAT_ORION] = "orion",
	[VEIL_CHAT_OPENCHAT] = "openchat",
	[VEIL_CHAT_VICUNA] = "vicuna",
	[VEIL_CHAT_VICUNA_ORCA] = "vicuna-orca",
	[VEIL_CHAT_DEEPSEEK] = "deepseek",
	[VEIL_CHAT_DEEPSEEK2] = "deepseek2",
	[VEIL_CHAT_DEEPSEEK3] = "deepseek3",
	[VEIL_CHAT_COMMAND_R] = "command-r",
	[VEIL_CHAT_LLAMA3] = "llama3",
	[VEIL_CHAT_CHATGLM3] = "chatglm3",
	[VEIL_CHAT_CHATGLM4] = "chatglm4",
	[VEIL_CHAT_GLMEDGE] = "glmedge",
	[VEIL_CHAT_MINICPM] = "minicpm",
	[VEIL_CHAT_EXAONE3] = "exaone3",
	[VEIL_CHAT_EXAONE4] = "exaone4",
	[VEIL_CHAT_RWKV_WORLD] = "rwkv-world",
	[VEIL_CHAT_GRANITE] = "granite",
	[VEIL_CHAT_GIGACHAT] = "gigachat",
	[VEIL_CHAT_MEGREZ] = "megrez",
	[VEIL_CHAT_BAILING] = "bailing",
	[VEIL_CHAT_LLAMA4] = "llama4",
	[VEIL_CHAT_SMOLVLM] = "smolvlm",
};

/* DeepSeek's full-width bars (U+FF5C) and U+2581 "▁". */
#define DS_USER "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"
#define DS_ASSISTANT "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"
#define DS_EOS "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"
#define MINICPM_USER "<\xE7\x94\xA8\xE6\x88\xB7>"   /* "<用户>" */

const char *veil_chat_name(enum veil_chat_tmpl t)
{
	if ((int)t < 0 || t >= VEIL_CHAT_COUNT_)
		return "?";
	return NAMES[t];
}

static int name_lookup(const char *s, size_t len)
{
	for (int i = 0; i < VEIL_CHAT_COUNT_; i++)
		if (strlen(NAMES[i]) == len && memcmp(NAMES[i], s, len) == 0)
			return i;
	return -1;
}

int veil_chat_from_name(const char *name)
{
	return name ? name_lookup(name, strlen(name)) : -1;
}

/* ---- detection (llm_chat_detect_template) ------------------------------- */

struct src {
	const char *p;
	size_t n;
};

static bool has(const struct src *s, const char *needle)
{
	return memmem(s->p, s->n, needle, strlen(needle)) != NULL;
}

/* -1: a family llama.cpp knows but veil does not render. */
static int detect(const struct src *s)
{
	int named = name_lookup(s->p, s->n);

	if (named >= 0)
		return named;
	if (has(s, "<|im_start|>")) {
		if (has(s, "<|im_sep|>"))
			return VEIL_CHAT_PHI4;
		if (has(s, "<end_of_utterance>"))
			return VEIL_CHAT_SMOLVLM;   /* <|im_start|> as BOS only */
		return VEIL_CHAT_CHATML;
	}
	if ((s->n >= 7 && memcmp(s->p, "mistral", 7) == 0) || has(s, "[INST]")) {
		if (has(s, "[SYSTEM_PROMPT]"))
			return VEIL_CHAT_MISTRAL_V7;
		if (has(s, "' [INST] ' + system_message") ||
		    has(s, "[AVAILABLE_TOOLS]")) {
			if (has(s, " [INST]"))
				return VEIL_CHAT_MISTRAL_V1;
			if (has(s, "\"[INST]\""))
				return VEIL_CHAT_MISTRAL_V3_TEKKEN;
			return VEIL_CHAT_MISTRAL_V3;
		}
		if (has(s, "content.strip()"))
			return VEIL_CHAT_LLAMA2_SYS_STRIP;
		if (has(s, "bos_token + '[INST]"))
			return VEIL_CHAT_LLAMA2_SYS_BOS;
		if (has(s, "<<SYS>>"))
			return VEIL_CHAT_LLAMA2_SYS;
		return VEIL_CHAT_LLAMA2;
	}
	if (has(s, "<|assistant|>") && has(s, "<|end|>"))
		return VEIL_CHAT_PHI3;
	if (has(s, "[gMASK]<sop>"))
		return VEIL_CHAT_CHATGLM4;
	if (has(s, "<|assistant|>") && has(s, "<|user|>"))
		return has(s, "</s>") ? VEIL_CHAT_FALCON3 : VEIL_CHAT_GLMEDGE;
	if (has(s, "<|{{ item['role'] }}|>") && has(s, "<|begin_of_image|>"))
		return VEIL_CHAT_GLMEDGE;
	if (has(s, "<|user|>") && has(s, "<|endoftext|>"))
		return VEIL_CHAT_ZEPHYR;
	if (has(s, "bos_token + message['role']"))
		return VEIL_CHAT_MONARCH;
	if (has(s, "<start_of_turn>"))
		return VEIL_CHAT_GEMMA;
	if (has(s, "'\\n\\nAssistant: ' + eos_token"))
		return VEIL_CHAT_ORION;
	if (has(s, "GPT4 Correct "))
		return VEIL_CHAT_OPENCHAT;
	if (has(s, "USER: ") && has(s, "ASSISTANT: "))
		return has(s, "SYSTEM: ") ? VEIL_CHAT_VICUNA_ORCA : VEIL_CHAT_VICUNA;
	if (has(s, "### Instruction:") && has(s, "<|EOT|>"))
		return VEIL_CHAT_DEEPSEEK;
	if (has(s, "<|START_OF_TURN_TOKEN|>") && has(s, "<|USER_TOKEN|>"))
		return VEIL_CHAT_COMMAND_R;
	if (has(s, "<|start_header_id|>") && has(s, "<|end_header_id|>"))
		return VEIL_CHAT_LLAMA3;
	if (has(s, "[gMASK]sop"))
		return VEIL_CHAT_CHATGLM3;
	if (has(s, MINICPM_USER))
		return VEIL_CHAT_MINICPM;
	if (has(s, "'Assistant: ' + message['content'] + eos_token"))
		return VEIL_CHAT_DEEPSEEK2;
	if (has(s, DS_ASSISTANT) && has(s, DS_USER) && has(s, DS_EOS))
		return VEIL_CHAT_DEEPSEEK3;
	if (has(s, "[|system|]") && has(s, "[|assistant|]") &&
	    has(s, "[|endofturn|]"))
		return has(s, "[|tool|]") ? VEIL_CHAT_EXAONE4 : VEIL_CHAT_EXAONE3;
	if (has(s, "rwkv-world") ||
	    has(s, "{{- 'User: ' + message['content']|trim + '\\n\\n' -}}"))
		return VEIL_CHAT_RWKV_WORLD;
	if (has(s, "<|start_of_role|>"))
		return VEIL_CHAT_GRANITE;
	if (has(s, "message['role'] + additional_special_tokens[0] + "
		   "message['content'] + additional_special_tokens[1]"))
		return VEIL_CHAT_GIGACHAT;
	if (has(s, "<|role_start|>"))
		return VEIL_CHAT_MEGREZ;
	if (has(s, " \xD0\x90\xD1\x81\xD1\x81\xD0\xB8\xD1\x81\xD1\x82\xD0\xB5"
		   "\xD0\xBD\xD1\x82:"))
		return -1;   /* " Ассистент:": yandex */
	if (has(s, "<role>ASSISTANT</role>") && has(s, "'HUMAN'"))
		return VEIL_CHAT_BAILING;
	if (has(s, "<|header_start|>") && has(s, "<|header_end|>"))
		return VEIL_CHAT_LLAMA4;
	return -1;
}

enum veil_chat_tmpl veil_chat_detect(const char *src, size_t len, bool *known)
{
	struct src s = {src, len};
	int t = (src && len > 0) ? detect(&s) : -1;

	if (known)
		*known = t >= 0;
	return t >= 0 ? (enum veil_chat_tmpl)t : VEIL_CHAT_PLAIN;
}

/* ---- rendering (llm_chat_apply_template) -------------------------------- */

struct rd {
	struct veil_buf *out;
	struct veil_tok_span *spans;
	size_t max_spans;
	size_t n_spans;
	int rc;
};

static void lit(struct rd *r, const char *s)
{
	if (r->rc == 0)
		r->rc = veil_buf_append_str(r->out, s);
}

static void lit_ch(struct rd *r, char c)
{
	if (r->rc == 0)
		r->rc = veil_buf_append(r->out, &c, 1);
}

/* llama.cpp's trim(): isspace() in the C locale. */
static bool space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
	       c == '\r';
}

static void trimmed(const char *s, size_t *off, size_t *len)
{
	size_t a = 0, b = strlen(s);

	while (a < b && space(s[a]))
		a++;
	while (b > a && space(s[b - 1]))
		b--;
	*off = a;
	*len = b - a;
}

static bool trims_empty(const char *s)
{
	size_t o, l;

	trimmed(s, &o, &l);
	return l == 0;
}

/* Message content (recorded as a span); trim as llama.cpp's trim(). */
static void text(struct rd *r, const char *s, bool trim)
{
	size_t off = 0, len = strlen(s);

	if (trim)
		trimmed(s, &off, &len);
	if (r->rc != 0 || len == 0)
		return;
	if (r->spans) {
		if (r->n_spans == r->max_spans) {
			r->rc = veil_errf(VEIL_ERANGE, "chat: more than %zu content spans",
					  r->max_spans);
			return;
		}
		r->spans[r->n_spans].off = r->out->len;
		r->spans[r->n_spans].len = len;
		r->n_spans++;
	}
	r->rc = veil_buf_append(r->out, s + off, len);
}

static bool is(const char *role, const char *name)
{
	return strcmp(role, name) == 0;
}

static char upper(char c)
{
	return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

static void role_cap(struct rd *r, const char *role)
{
	lit_ch(r, upper(role[0]));
	lit(r, role + 1);
}

static void render_llama2(struct rd *r, enum veil_chat_tmpl t,
			  const struct veil_chat_msg *m, size_t n)
{
	bool sys_ok = t != VEIL_CHAT_LLAMA2;
	bool bos_inside = t == VEIL_CHAT_LLAMA2_SYS_BOS;
	bool strip = t == VEIL_CHAT_LLAMA2_SYS_STRIP;
	bool inside = true;   /* the caller's BOS starts the first turn */

	lit(r, "[INST] ");
	for (size_t i = 0; i < n; i++) {
		if (!inside) {
			inside = true;
			lit(r, bos_inside ? "<s>[INST] " : "[INST] ");
		}
		if (is(m[i].role, "system")) {
			if (sys_ok) {
				lit(r, "<<SYS>>\n");
				text(r, m[i].content, strip);
				lit(r, "\n<</SYS>>\n\n");
			} else {
				text(r, m[i].content, strip);
				lit(r, "\n");
			}
		} else if (is(m[i].role, "user")) {
			text(r, m[i].content, strip);
			lit(r, " [/INST]");
		} else {
			text(r, m[i].content, strip);
			lit(r, "</s>");
			inside = false;
		}
	}
}

static void render_mistral(struct rd *r, enum veil_chat_tmpl t,
			   const struct veil_chat_msg *m, size_t n)
{
	const char *lead = t == VEIL_CHAT_MISTRAL_V1 ? " " : "";
	const char *trail = t == VEIL_CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
	bool trim_assistant = t == VEIL_CHAT_MISTRAL_V3;
	bool inside = false;

	for (size_t i = 0; i < n; i++) {
		if (!inside) {
			lit(r, lead);
			lit(r, "[INST]");
			lit(r, trail);
			inside = true;
		}
		if (is(m[i].role, "system")) {
			text(r, m[i].content, false);
			lit(r, "\n\n");
		} else if (is(m[i].role, "user")) {
			text(r, m[i].content, false);
			lit(r, lead);
			lit(r, "[/INST]");
		} else {
			lit(r, trail);
			text(r, m[i].content, trim_assistant);
			lit(r, "</s>");
			inside = false;
		}
	}
}

static void render_gemma(struct rd *r, const struct veil_chat_msg *m, size_t n,
			 bool add_assistant)
{
	size_t sys_from = 0;   /* system messages not yet merged start here */
	bool sys_pending = false;

	for (size_t i = 0; i < n; i++) {
		bool model = is(m[i].role, "assistant");

		if (is(m[i].role, "system")) {
			/* no system role: merged into the next user turn */
			if (!sys_pending)
				sys_from = i;
			sys_pending = sys_pending || !trims_empty(m[i].content);
			if (!sys_pending)
				sys_from = i + 1;
			continue;
		}
		lit(r, "<start_of_turn>");
		lit(r, model ? "model" : m[i].role);
		lit(r, "\n");
		if (sys_pending && !model) {
			for (size_t j = sys_from; j < i; j++)
				if (is(m[j].role, "system"))
					text(r, m[j].content, true);
			lit(r, "\n\n");
			sys_pending = false;
			sys_from = i + 1;
		}
		text(r, m[i].content, true);
		lit(r, "<end_of_turn>\n");
	}
	if (add_assistant)
		lit(r, "<start_of_turn>model\n");
}

static void render_orion(struct rd *r, const struct veil_chat_msg *m, size_t n)
{
	size_t sys_from = 0;
	bool sys_pending = false;

	for (size_t i = 0; i < n; i++) {
		if (is(m[i].role, "system")) {
			if (!sys_pending)
				sys_from = i;
			sys_pending = sys_pending || m[i].content[0] != '\0';
			if (!sys_pending)
				sys_from = i + 1;
		} else if (is(m[i].role, "user")) {
			lit(r, "Human: ");
			if (sys_pending) {
				for (size_t j = sys_from; j < i; j++)
					if (is(m[j].role, "system"))
						text(r, m[j].content, false);
				lit(r, "\n\n");
				sys_pending = false;
			}
			text(r, m[i].content, false);
			lit(r, "\n\nAssistant: </s>");
		} else {
			text(r, m[i].content, false);
			lit(r, "</s>");
		}
	}
}

static void render(struct rd *r, enum veil_chat_tmpl t,
		   const struct veil_chat_msg *m, size_t n, bool add_ass)
{
	switch (t) {
	case VEIL_CHAT_PLAIN:
		for (size_t i = 0; i < n; i++) {
			role_cap(r, m[i].role);
			lit(r, ": ");
			text(r, m[i].content, false);
			lit(r, "\n");
		}
		if (add_ass)
			lit(r, "Assistant:");
		break;
	case VEIL_CHAT_CHATML:
		for (size_t i = 0; i < n; i++) {
			lit(r, "<|im_start|>");
			lit(r, m[i].role);
			lit(r, "\n");
			text(r, m[i].content, false);
			lit(r, "<|im_end|>\n");
		}
		if (add_ass)
			lit(r, "<|im_start|>assistant\n");
		break;
	case VEIL_CHAT_MISTRAL_V7:
	case VEIL_CHAT_MISTRAL_V7_TEKKEN: {
		const char *sp = t == VEIL_CHAT_MISTRAL_V7 ? " " : "";

		for (size_t i = 0; i < n; i++) {
			if (is(m[i].role, "system")) {
				lit(r, "[SYSTEM_PROMPT]");
				lit(r, sp);
				text(r, m[i].content, false);
				lit(r, "[/SYSTEM_PROMPT]");
			} else if (is(m[i].role, "user")) {
				lit(r, "[INST]");
				lit(r, sp);
				text(r, m[i].content, false);
				lit(r, "[/INST]");
			} else {
				lit(r, sp);
				text(r, m[i].content, false);
				lit(r, "</s>");
			}
		}
		break;
	}
	case VEIL_CHAT_MISTRAL_V1:
	case VEIL_CHAT_MISTRAL_V3:
	case VEIL_CHAT_MISTRAL_V3_TEKKEN:
		render_mistral(r, t, m, n);
		break;
	case VEIL_CHAT_LLAMA2:
	case VEIL_CHAT_LLAMA2_SYS:
	case VEIL_CHAT_LLAMA2_SYS_BOS:
	case VEIL_CHAT_LLAMA2_SYS_STRIP:
		render_llama2(r, t, m, n);
		break;
	case VEIL_CHAT_PHI3:
		for (size_t i = 0; i < n; i++) {
			lit(r, "<|");
			lit(r, m[i].role);
			lit(r, "|>\n");
			text(r, m[i].content, false);
			lit(r, "<|end|>\n");
		}
		if (add_ass)
			lit(r, "<|assistant|>\n");
		break;
	case VEIL_CHAT_PHI4:
		for (size_t i = 0; i < n; i++) {
			lit(r, "<|im_start|>");
			lit(r, m[i].role);
			lit(r, "<|im_sep|>");
			text(r, m[i].content, false);
			lit(r, "<|im_end|>");
		}
		if (add_ass)
			lit(r, "<|im_start|>assistant<|im_sep|>");
		break;
	case VEIL_CHAT_FALCON3:
		for (size_t i = 0; i < n; i++) {
			lit(r, "<|");
			lit(r, m[i].role);
			lit(r, "|>\n");
			text(r, m[i].content, false);
			lit(r, "\n");
		}
		if (add_ass)
			lit(r, "<|assistant|>\n");
		break;
	case VEIL_CHAT_ZEPHYR:
		for (size_t i = 0; i < n; i++) {
			lit(r, "<|");
			lit(r, m[i].role);
			lit(r, "|>\n");
			text(r, m[i].content, false);
			lit(r, "<|endoftext|>\n");
		}
		if (add_ass)
			lit(r, "<|assistant|>\n");
		break;
	case VEIL_CHAT_MONARCH:
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				lit(r, "<s>");   /* no BOS for the first */
			lit(r, m[i].role);
			lit(r, "\n");
			text(r, m[i].content, false);
			lit(r, "</s>\n");
		}
		if (add_ass)
			lit(r, "<s>assistant\n");
		break;
	case VEIL_CHAT_GEMMA:
		render_gemma(r, m, n, add_ass);
		break;
	case VEIL_CHAT_ORION:
		render_orion(r, m, n);
		break;
	case VEIL_CHAT_OPENCHAT:
		for (size_t i = 0; i < n; i++) {
			if (!is(m[i].role, "system")) {
				lit(r, "GPT4 Correct ");
				role_cap(r, m[i].role);
				lit(r, ": ");
			}
			text(r, m[i].content, false);
			lit(r, "<|end_of_turn|>");
		}
		if (add_ass)
			lit(r, "GPT4 Correct Assistant:");
		break;
	case VEIL_CHAT_VICUNA:
	case VEIL_CHAT_VICUNA_ORCA:
		for (size_t i = 0; i < n; i++) {
			if (is(m[i].role, "system")) {
				if (t == VEIL_CHAT_VICUNA_ORCA) {
					lit(r, "SYSTEM: ");
					text(r, m[i].content, false);
					lit(r, "\n");
				} else {
					text(r, m[i].content, false);
					lit(r, "\n\n");
				}
			} else if (is(m[i].role, "user")) {
				lit(r, "USER: ");
				text(r, m[i].content, false);
				lit(r, "\n");
			} else if (is(m[i].role, "assistant")) {
				lit(r, "ASSISTANT: ");
				text(r, m[i].content, false);
				lit(r, "</s>\n");
			}
		}
		if (add_ass)
			lit(r, "ASSISTANT:");
		break;
	case VEIL_CHAT_DEEPSEEK:
		for (size_t i = 0; i < n; i++) {
			if (is(m[i].role, "system")) {
				text(r, m[i].content, false);
			} else if (is(m[i].role, "user")) {
				lit(r, "### Instruction:\n");
				text(r, m[i].content, false);
				lit(r, "\n");
			} else if (is(m[i].role, "assistant")) {
				lit(r, "### Response:\n");
				text(r, m[i].content, false);
				lit(r, "\n<|EOT|>\n");
			}
		}
		if (add_ass)
			lit(r, "### Response:\n");
		break;
	case VEIL_CHAT_COMMAND_R:
		for (size_t i = 0; i < n; i++) {
			const char *tok = is(m[i].role, "system") ? "<|SYSTEM_TOKEN|>" :
					  is(m[i].role, "user") ? "<|USER_TOKEN|>" :
					  is(m[i].role, "assistant") ? "<|CHATBOT_TOKEN|>" :
					  NULL;

			if (!tok)
				continue;
			lit(r, "<|START_OF_TURN_TOKEN|>");
			lit(r, tok);
			text(r, m[i].content, true);
			lit(r, "<|END_OF_TURN_TOKEN|>");
		}
		if (add_ass)
			lit(r, "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
		break;
	case VEIL_CHAT_LLAMA3:
		for (size_t i = 0; i < n; i++) {
			lit(r, "<|start_header_id|>");
			lit(r, m[i].role);
			lit(r, "<|end_header_id|>\n\n");
			text(r, m[i].content, true);
			lit(r, "<|eot_id|>");
		}
		if (add_ass)
			lit(r, "<|start_header_id|>assistant<|end_header_id|>\n\n");
		break;
	case VEIL_CHAT_CHATGLM3:
	case VEIL_CHAT_CHATGLM4:
	case VEIL_CHAT_GLMEDGE:
		if (t == VEIL_CHAT_CHATGLM3)
			lit(r, "[gMASK]sop");
		else if (t == VEIL_CHAT_CHATGLM4)
			lit(r, "[gMASK]<sop>");
		for (size_t i = 0; i < n; i++) {
			lit(r, "<|");
			lit(r, m[i].role);
			lit(r, t == VEIL_CHAT_CHATGLM3 ? "|>\n " : "|>\n");
			text(r, m[i].content, false);
		}
		if (add_ass)
			lit(r, t == VEIL_CHAT_CHATGLM4 ? "<|assistant|>\n" : "<|assistant|>");
		break;
	case VEIL_CHAT_MINICPM:
		for (size_t i = 0; i < n; i++) {
			if (is(m[i].role, "user")) {
				lit(r, MINICPM_USER);
				text(r, m[i].content, true);
				lit(r, "<AI>");
			} else {
				text(r, m[i].content, true);
			}
		}
		break;
	case VEIL_CHAT_DEEPSEEK2:
	case VEIL_CHAT_DEEPSEEK3:
		for (size_t i = 0; i < n; i++) {
			if (is(m[i].role, "system")) {
				text(r, m[i].content, false);
				lit(r, "\n\n");
			} else if (is(m[i].role, "user")) {
				lit(r, t == VEIL_CHAT_DEEPSEEK2 ? "User: " : DS_USER);
				text(r, m[i].content, false);
				if (t == VEIL_CHAT_DEEPSEEK2)
					lit(r, "\n\n");
			} else if (is(m[i].role, "assistant")) {
				lit(r, t == VEIL_CHAT_DEEPSEEK2 ? "Assistant: " : DS_ASSISTANT);
				text(r, m[i].content, false);
				lit(r, DS_EOS);
			}
		}
		if (add_ass)
			lit(r, t == VEIL_CHAT_DEEPSEEK2 ? "Assistant:" : DS_ASSISTANT);
		break;
	case VEIL_CHAT_EXAONE3:
	case VEIL_CHAT_EXAONE4:
		for (size_t i = 0; i < n; i++) {
			const char *role = m[i].role;

			if (is(role, "system") || is(role, "assistant") ||
			    (t == VEIL_CHAT_EXAONE4 && is(role, "tool"))) {
				lit(r, "[|");
				lit(r, role);
				lit(r, "|]");
				text(r, m[i].content, true);
				lit(r, "[|endofturn|]\n");
			} else if (is(role, "user")) {
				lit(r, "[|user|]");
				text(r, m[i].content, true);
				lit(r, "\n");
			}
		}
		if (add_ass)
			lit(r, "[|assistant|]");
		break;
	case VEIL_CHAT_RWKV_WORLD:
		/* needs a model with "\n\n" as end-of-turn token */
		for (size_t i = 0; i < n; i++) {
			if (is(m[i].role, "system")) {
				lit(r, "System: ");
				text(r, m[i].content, true);
				lit(r, "\n\n");
			} else if (is(m[i].role, "user")) {
				lit(r, "User: ");
				text(r, m[i].content, true);
				lit(r, "\n\n");
				if (i + 1 == n)
					lit(r, "Assistant:");
			} else if (is(m[i].role, "assistant")) {
				lit(r, "Assistant: ");
				text(r, m[i].content, true);
				lit(r, "\n\n");
			}
		}
		break;
	case VEIL_CHAT_GRANITE:
		for (size_t i = 0; i < n; i++) {
			lit(r, "<|start_of_role|>");
			lit(r, m[i].role);
			lit(r, "<|end_of_role|>");
			if (is(m[i].role, "assistant_tool_call"))
				lit(r, "<|tool_call|>");
			text(r, m[i].content, false);
			lit(r, "<|end_of_text|>\n");
		}
		if (add_ass)
			lit(r, "<|start_of_role|>assistant<|end_of_role|>\n");
		break;
	case VEIL_CHAT_GIGACHAT: {
		bool has_sys = n > 0 && is(m[0].role, "system");

		lit(r, "<s>");
		if (has_sys) {
			text(r, m[0].content, false);
			lit(r, "<|message_sep|>");
		}
		for (size_t i = has_sys ? 1 : 0; i < n; i++) {
			if (is(m[i].role, "user")) {
				lit(r, "user<|role_sep|>");
				text(r, m[i].content, false);
				lit(r, "<|message_sep|>available functions<|role_sep|>"
				       "[]<|message_sep|>");
			} else if (is(m[i].role, "assistant")) {
				lit(r, "assistant<|role_sep|>");
				text(r, m[i].content, false);
				lit(r, "<|message_sep|>");
			}
		}
		if (add_ass)
			lit(r, "assistant<|role_sep|>");
		break;
	}
	case VEIL_CHAT_MEGREZ:
		for (size_t i = 0; i < n; i++) {
			lit(r, "<|role_start|>");
			lit(r, m[i].role);
			lit(r, "<|role_end|>");
			text(r, m[i].content, false);
			lit(r, "<|turn_end|>");
		}
		if (add_ass)
			lit(r, "<|role_start|>assistant<|role_end|>");
		break;
	case VEIL_CHAT_BAILING:
		for (size_t i = 0; i < n; i++) {
			lit(r, "<role>");
			if (is(m[i].role, "user")) {
				lit(r, "HUMAN");
			} else {
				for (const char *c = m[i].role; *c; c++)
					lit_ch(r, upper(*c));
			}
			lit(r, "</role>");
			text(r, m[i].content, false);
		}
		if (add_ass)
			lit(r, "<role>ASSISTANT</role>");
		break;
	case VEIL_CHAT_LLAMA4:
		for (size_t i = 0; i < n; i++) {
			lit(r, "<|header_start|>");
			lit(r, m[i].role);
			lit(r, "<|header_end|>\n\n");
			text(r, m[i].content, true);
			lit(r, "<|eot|>");
		}
		if (add_ass)
			lit(r, "<|header_start|>assistant<|header_end|>\n\n");
		break;
	case VEIL_CHAT_SMOLVLM:
		lit(r, "<|im_start|>");   /* BOS; the rest is not chatml */
		for (size_t i = 0; i < n; i++) {
			if (is(m[i].role, "system")) {
				text(r, m[i].content, false);
				lit(r, "\n\n");
			} else {
				lit(r, is(m[i].role, "user") ? "User: " : "Assistant: ");
				text(r, m[i].content, false);
				lit(r, "<end_of_utterance>\n");
			}
		}
		if (add_ass)
			lit(r, "Assistant:");
		break;
	case VEIL_CHAT_COUNT_:
		r->rc = VEIL_EINVAL;
		break;
	}
}

static int check_msgs(const struct veil_chat_msg *msgs, size_t n)
{
	if (n > 0 && !msgs)
		return veil_errf(VEIL_EINVAL, "chat: no messages array");
	for (size_t i = 0; i < n; i++) {
		const char *role = msgs[i].role;
		size_t l = role ? strnlen(role, 33) : 0;

		if (l == 0 || l > 32)
			return veil_errf(VEIL_EINVAL, "chat: message %zu: role length", i);
		for (size_t j = 0; j < l; j++)
			if (!((role[j] >= 'a' && role[j] <= 'z') || role[j] == '_'))
				return veil_errf(VEIL_EINVAL,
						 "chat: message %zu: role has a byte outside [a-z_]",
						 i);
		if (!msgs[i].content)
			return veil_errf(VEIL_EINVAL, "chat: message %zu: no content", i);
	}
	return 0;
}

int veil_chat_apply_spans(enum veil_chat_tmpl t,
			  const struct veil_chat_msg *msgs, size_t n,
			  bool add_assistant, struct veil_buf *out,
			  struct veil_tok_span *spans, size_t max_spans,
			  size_t *n_spans)
{
	struct rd r = {out, spans, max_spans, 0, 0};
	size_t start;
	int rc;

	if (!out || (int)t < 0 || t >= VEIL_CHAT_COUNT_ || (spans && !n_spans))
		return veil_errf(VEIL_EINVAL, "chat: bad arguments");
	if ((rc = check_msgs(msgs, n)) < 0)
		return rc;
	start = out->len;
	render(&r, t, msgs, n, add_assistant);
	if (r.rc < 0) {
		out->len = start;   /* nothing half-rendered stays */
		if (out->data)
			out->data[start] = '\0';
		return r.rc;
	}
	/* an empty rendering still leaves a NUL-terminated buffer */
	if ((rc = veil_buf_reserve(out, 0)) < 0)
		return rc;
	out->data[out->len] = '\0';
	if (n_spans)
		*n_spans = r.n_spans;
	return 0;
}

int veil_chat_apply(enum veil_chat_tmpl t, const struct veil_chat_msg *msgs,
		    size_t n, bool add_assistant, struct veil_buf *out)
{
	return veil_chat_apply_spans(t, msgs, n, add_assistant, out, NULL, 0,
				     NULL);
}
