/* Fuzzes chat templates (include/veil/chat.h): the family detection that
 * reads a GGUF's tokenizer.chat_template (model input), and rendering.
 *
 * Input: the whole input is a template source for veil_chat_detect; split at
 * 0xFF bytes, its pieces are also up to 6 message contents, rendered with
 * every family (roles system, user, assistant, tool in turn; a piece whose
 * first byte is odd adds the assistant prefix).
 * Invariants: detection names a family whose name maps back to it;
 * veil_chat_apply and veil_chat_apply_spans render the same bytes; the spans
 * are in order, inside the text, at most one per message, and each holds
 * bytes of a message's content (a template may trim one), so a caller can
 * keep contents apart from template text; a render never exceeds its
 * buffer's cap. */
#include <stdlib.h>
#include <string.h>

#include "veil/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSGS 6
#define OUT_CAP (1u << 16)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const roles[] = {"system", "user", "assistant", "tool"};
	struct veil_chat_msg msgs[MAX_MSGS];
	char *pieces[MAX_MSGS] = {0};
	struct veil_tok_span spans[MAX_MSGS];
	size_t n = 0, start = 0, n_spans, k;
	bool known = true, assistant;
	enum veil_chat_tmpl t;

	t = veil_chat_detect((const char *)data, size, &known);
	if ((int)t < 0 || t >= VEIL_CHAT_COUNT_)
		abort();
	if (veil_chat_from_name(veil_chat_name(t)) != (int)t)
		abort();
	if (!known && t != VEIL_CHAT_PLAIN)
		abort();

	for (size_t i = 0; i <= size && n < MAX_MSGS; i++) {
		if (i < size && data[i] != 0xFF)
			continue;
		pieces[n] = calloc(1, i - start + 1);
		if (!pieces[n])
			goto out;
		memcpy(pieces[n], data + start, i - start);
		/* contents are C strings: a NUL ends one early */
		msgs[n].role = roles[n % 4];
		msgs[n].content = pieces[n];
		n++;
		start = i + 1;
	}
	assistant = size && (data[0] & 1);
	for (int f = 0; f < VEIL_CHAT_COUNT_; f++) {
		struct veil_buf a = VEIL_BUF_INIT(OUT_CAP), b = VEIL_BUF_INIT(OUT_CAP);
		int ra = veil_chat_apply((enum veil_chat_tmpl)f, msgs, n, assistant, &a);
		int rb = veil_chat_apply_spans((enum veil_chat_tmpl)f, msgs, n, assistant, &b,
					       spans, MAX_MSGS, &n_spans);

		if (ra != rb || a.len > OUT_CAP || b.len > OUT_CAP)
			abort();
		if (ra == 0) {
			size_t prev = 0;

			if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len)))
				abort();
			if (n_spans > n)
				abort();
			for (size_t i = 0; i < n_spans; i++) {
				bool found = false;

				if (spans[i].off < prev || spans[i].off > b.len ||
				    spans[i].len > b.len - spans[i].off)
					abort();
				prev = spans[i].off + spans[i].len;
				/* content bytes only: a part of some message's content
				 * (a template may trim a content or leave a message
				 * out) */
				for (k = 0; k < n && !found; k++)
					found = memmem(msgs[k].content, strlen(msgs[k].content),
						       b.data + spans[i].off, spans[i].len) != NULL;
				if (!found)
					abort();
			}
		}
		veil_buf_free(&a);
		veil_buf_free(&b);
	}
out:
	for (size_t i = 0; i < MAX_MSGS; i++)
		free(pieces[i]);
	return 0;
}
