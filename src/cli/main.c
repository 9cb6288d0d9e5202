/* veil: the command-line tool.  Dispatches to subcommands; each prints its
 * own --help. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/quant.h"

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct cmd model_cmds[] = {
	{"info", veil_cli_model_info, "architecture, shapes, tensor types, tokenizer, template, sha256"},
	{"run", veil_cli_model_run, "generate a continuation (or a chat reply) on the CPU"},
	{"tokenize", veil_cli_model_tokenize, "print the token ids of a text"},
	{"synth", veil_cli_model_synth, "make a model with real shapes and vocabulary, random weights"},
	{"quantize", veil_cli_model_quantize, "convert a model's weights (f16, q8_0, q4_0, q4_k, q6_k)"},
	{"bench", veil_cli_model_bench, "prefill and decode speed (tokens/s)"},
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: veil [--version] [--help] <command> [args]\n"
		"\n"
		"veil is a confidential LLM inference stack.  Commands:\n"
		"  hpke <sub>    HPKE (RFC 9180): keygen, seal, open\n"
		"  sign <sub>    signatures (Ed25519, secp256k1 EIP-191): keygen, sign, verify\n"
		"  verify FILE   verify attestation evidence offline (TDX/SGX quote, SEV-SNP,\n"
		"                NVIDIA GPU, veil report, NEAR AI report); JSON verdict\n"
		"  attest <sub>  evidence generators: sim-report (simulated TEE report)\n"
		"  policy <sub>  attestation policies: init (pin a server, trust on first\n"
		"                use), show, check\n"
		"  receipts verify FILE  re-verify a veil-proxy receipts log offline\n"
		"  up            bring the private stack up on this machine (nodes, gateway,\n"
		"                proxy), self-check, serve an OpenAI endpoint on 127.0.0.1\n"
		"  chat TEXT     one chat through a veil-proxy, with its verification\n"
		"  model <sub>   work with GGUF models:\n");
	for (size_t i = 0; i < VEIL_ARRAY_LEN(model_cmds); i++)
		fprintf(f, "    %-10s  %s\n", model_cmds[i].name, model_cmds[i].summary);
	fprintf(f,
		"\n"
		"Run 'veil <command> <sub> --help' for a command's options.\n");
}

static void model_usage(FILE *f)
{
	fprintf(f, "usage: veil model <sub> [args]\n\n");
	for (size_t i = 0; i < VEIL_ARRAY_LEN(model_cmds); i++)
		fprintf(f, "  %-10s  %s\n", model_cmds[i].name, model_cmds[i].summary);
}

static int version(void)
{
	veil_quant_init();
	printf("veil %s\n", VEIL_VERSION);
	printf("commit: %s\n", VEIL_GIT_COMMIT);
#if defined(__clang__)
	printf("compiler: clang %s\n", __clang_version__);
#elif defined(__GNUC__)
	printf("compiler: gcc %s\n", __VERSION__);
#endif
	printf("cpu paths: %s (active: %s)\n", veil_isa_available(),
	       veil_isa_name(veil_isa_active()));
	return 0;
}

static int run_sub(const struct cmd *cmds, size_t n, int argc, char **argv,
		   void (*help)(FILE *))
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		help(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < n; i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "veil: unknown subcommand '%s %s'\n", argv[0], argv[1]);
	help(stderr);
	return 2;
}

int main(int argc, char **argv)
{
	const char *lvl = getenv("VEIL_LOG");

	if (lvl && veil_log_level_parse(lvl) >= 0)
		veil_log_setup((enum veil_log_level)veil_log_level_parse(lvl), false, stderr);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version"))
		return version();
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "hpke"))
		return veil_cli_hpke(argc - 1, argv + 1);
	if (!strcmp(argv[1], "sign"))
		return veil_cli_sign(argc - 1, argv + 1);
	if (!strcmp(argv[1], "verify"))
		return veil_cli_verify(argc - 1, argv + 1);
	if (!strcmp(argv[1], "attest"))
		return veil_cli_attest(argc - 1, argv + 1);
	if (!strcmp(argv[1], "policy"))
		return veil_cli_policy(argc - 1, argv + 1);
	if (!strcmp(argv[1], "receipts"))
		return veil_cli_receipts(argc - 1, argv + 1);
	if (!strcmp(argv[1], "up"))
		return veil_cli_up(argc - 1, argv + 1);
	if (!strcmp(argv[1], "chat"))
		return veil_cli_chat(argc - 1, argv + 1);
	if (!strcmp(argv[1], "model"))
		return run_sub(model_cmds, VEIL_ARRAY_LEN(model_cmds), argc - 1,
			       argv + 1, model_usage);
	fprintf(stderr, "veil: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
