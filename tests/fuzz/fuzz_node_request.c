/* libFuzzer harness for veil-node's request body parsing (src/node/parse.c,
 * compiled in): the OpenAI parameters (node_parse_params) and the messages
 * rendered with a chat template and tokenized (node_chat_tokens), or the
 * prompt tokenized (node_prompt_tokens).  Byte 0 picks chat or completion,
 * the chat template and the vocabulary; the rest is the JSON body, parsed
 * as the node parses it.  Checked: an error always comes with a message;
 * accepted parameters are in their documented ranges; token ids fit the
 * cap and the vocabulary.  Vocabularies come from ../shared (env
 * VEIL_SHARED), as fuzz_tokenizer's; without them only the parameters are
 * fuzzed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/gguf.h"

#include "../../src/node/parse.c"
#include "fuzz_vocab.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			abort();                                               \
	} while (0)

#define CAP 512 /* ids: small, so that the cap is reached often */

static struct veil_tok *toks[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	veil_log_setup(VEIL_LOG_OFF, false, stderr);
	toks[0] = fuzz_vocab_load("models/stories260K.gguf");
	toks[1] = fuzz_vocab_load("models/tiny-synth-f16.gguf");
	if (!toks[0] && !toks[1])
		fprintf(stderr, "fuzz_node_request: no vocabulary under VEIL_SHARED "
			"(default ../shared); only the parameters are fuzzed\n");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct node_params p;
	const struct veil_tok *tok;
	int32_t ids[CAP];
	char err[256];
	size_t n_ids = 0;
	json_t *b;
	bool chat;
	int tmpl, rc;

	if (size < 1 || size > (256u << 10))
		return 0;
	chat = data[0] & 1;
	tok = toks[(data[0] >> 1) & 1];
	tmpl = (data[0] >> 2) % VEIL_CHAT_COUNT_;
	b = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(b))
		goto out;
	err[0] = '\0';
	if (node_parse_params(b, chat, &p, err, sizeof(err)) < 0) {
		CHECK(err[0] && memchr(err, 0, sizeof(err)));
		goto out;
	}
	CHECK(p.max_tokens >= 0 && p.max_tokens <= 100000000);
	CHECK(p.sp.temperature >= 0 && p.sp.temperature <= 2);
	CHECK(p.sp.top_p >= 0 && p.sp.top_p <= 1);
	CHECK(p.n_stops <= VEIL_STOP_MAX);
	for (size_t i = 0; i < p.n_stops; i++)
		CHECK(p.stops[i] && *p.stops[i] && strlen(p.stops[i]) <= VEIL_STOP_MAX_LEN);
	CHECK(p.top_logprobs >= 0 && p.top_logprobs <= VEIL_ENGINE_MAX_LOGPROBS);
	CHECK(!p.include_usage || p.stream);
	if (!tok)
		goto out;
	err[0] = '\0';
	rc = chat ? node_chat_tokens(tok, tmpl, json_object_get(b, "messages"), ids, CAP, &n_ids,
				     err, sizeof(err))
		  : node_prompt_tokens(tok, json_object_get(b, "prompt"), ids, CAP, &n_ids, err,
				       sizeof(err));
	if (rc < 0) {
		CHECK(err[0] && memchr(err, 0, sizeof(err)));
		goto out;
	}
	CHECK(n_ids <= CAP);
	for (size_t i = 0; i < n_ids; i++)
		CHECK(ids[i] >= 0 && ids[i] < veil_tok_n_vocab(tok));
out:
	json_decref(b);
	return 0;
}
