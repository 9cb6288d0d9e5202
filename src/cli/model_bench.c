/* veil model bench (placeholder until its implementation lands). */
#include "cli.h"

#include <stdio.h>

int veil_cli_model_bench(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "veil model bench: not implemented yet\n");
	return 1;
}
