/* veil model synth (placeholder until its implementation lands). */
#include "cli.h"

#include <stdio.h>

int veil_cli_model_synth(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "veil model synth: not implemented yet\n");
	return 1;
}
