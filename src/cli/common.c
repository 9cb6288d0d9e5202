/* Helpers shared by the CLI subcommands. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "veil/base.h"

#define DEFAULT_MODEL "stories260K.gguf"

int veil_cli_find_model(const char *arg, char *out, size_t cap)
{
	const char *env = getenv("VEIL_MODEL");
	const char *cands[] = {"models/" DEFAULT_MODEL,
			       "../shared/models/" DEFAULT_MODEL};
	const char *pick = NULL;

	if (arg && *arg)
		pick = arg;
	else if (env && *env)
		pick = env;
	else
		for (size_t i = 0; i < VEIL_ARRAY_LEN(cands) && !pick; i++)
			if (access(cands[i], R_OK) == 0)
				pick = cands[i];
	if (!pick) {
		fprintf(stderr,
			"veil: no model found.  Looked in --model, $VEIL_MODEL, "
			"./models/%s and ../shared/models/%s.\n"
			"Get stories260K.gguf (a real 260K-parameter TinyStories "
			"llama, MIT) from the llama.cpp CI models (ggml-org/models, "
			"tinyllamas/stories260K.gguf) and put it in ./models/, or "
			"pass --model PATH to any llama-family GGUF.\n",
			DEFAULT_MODEL, DEFAULT_MODEL);
		return -1;
	}
	if (access(pick, R_OK) != 0) {
		fprintf(stderr, "veil: model %s is not readable\n", pick);
		return -1;
	}
	if (strlen(pick) >= cap) {
		fprintf(stderr, "veil: model path too long\n");
		return -1;
	}
	strcpy(out, pick);
	return 0;
}

void veil_cli_error(const char *what, int rc)
{
	const char *d = veil_err_detail();

	if (d && *d)
		fprintf(stderr, "veil: %s: %s: %s\n", what, veil_strerror(rc), d);
	else
		fprintf(stderr, "veil: %s: %s\n", what, veil_strerror(rc));
}

bool veil_cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	return false;
}
