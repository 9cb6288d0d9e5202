/* veil model info (placeholder until its implementation lands). */
#include "cli.h"

#include <stdio.h>

int veil_cli_model_info(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "veil model info: not implemented yet\n");
	return 1;
}
