/* The vocabularies the tokenizing harnesses share: a tokenizer loaded
 * from a model under ../shared (env VEIL_SHARED), or NULL when the file is
 * absent or does not load (the harness then skips what needs it). */
#ifndef VEIL_FUZZ_VOCAB_H
#define VEIL_FUZZ_VOCAB_H

#include <stdio.h>
#include <stdlib.h>

#include "veil/gguf.h"
#include "veil/tokenizer.h"

static struct veil_tok *fuzz_vocab_load(const char *rel)
{
	const char *dir = getenv("VEIL_SHARED");
	struct veil_gguf *g = NULL;
	struct veil_tok *t = NULL;
	char path[1024];

	snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "../shared", rel);
	if (veil_gguf_open(path, &g) < 0)
		return NULL;
	if (veil_tok_load(g, &t) < 0)
		t = NULL;
	veil_gguf_close(g);
	return t;
}

#endif
