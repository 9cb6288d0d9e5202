/* veil model quantize (placeholder until its implementation lands). */
#include "cli.h"

#include <stdio.h>

int veil_cli_model_quantize(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "veil model quantize: not implemented yet\n");
	return 1;
}
