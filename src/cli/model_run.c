/* veil model run (placeholder until its implementation lands). */
#include "cli.h"

#include <stdio.h>

int veil_cli_model_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "veil model run: not implemented yet\n");
	return 1;
}
