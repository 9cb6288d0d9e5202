/* veil model tokenize (placeholder until its implementation lands). */
#include "cli.h"

#include <stdio.h>

int veil_cli_model_tokenize(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "veil model tokenize: not implemented yet\n");
	return 1;
}
