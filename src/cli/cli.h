/* The veil command-line tool: shared declarations of its subcommands.
 * Each subcommand is `int fn(int argc, char **argv)` with argv[0] being the
 * subcommand's own name; it returns the process exit status (0 ok, 1 the
 * operation failed, 2 usage error) and prints its own --help. */
#ifndef VEIL_CLI_H
#define VEIL_CLI_H

#include <stdbool.h>
#include <stddef.h>

/* veil model ... */
int veil_cli_model_info(int argc, char **argv);
int veil_cli_model_run(int argc, char **argv);
int veil_cli_model_tokenize(int argc, char **argv);
int veil_cli_model_synth(int argc, char **argv);
int veil_cli_model_quantize(int argc, char **argv);
int veil_cli_model_bench(int argc, char **argv);

/* veil hpke keygen|seal|open, veil sign keygen|sign|verify */
int veil_cli_hpke(int argc, char **argv);
int veil_cli_sign(int argc, char **argv);

/* veil verify FILE [...], veil attest sim-report [...] */
int veil_cli_verify(int argc, char **argv);
int veil_cli_attest(int argc, char **argv);

/* veil policy init|show|check (policy.c), veil receipts verify (receipts.c) */
int veil_cli_policy(int argc, char **argv);
int veil_cli_receipts(int argc, char **argv);

/* veil up [...]: the whole stack on this machine (up.c); veil chat [...]
 * (chat.c). */
int veil_cli_up(int argc, char **argv);
int veil_cli_chat(int argc, char **argv);

/* One chat through a veil-proxy (the body of `veil chat`, and veil up's
 * self-check): sends `text` as one user message to <proxy>/v1/chat/
 * completions (proxy: "http://HOST:PORT" with or without "/v1"; model NULL:
 * the first of the proxy's /v1/models); once the answer's receipt is
 * verified, prints the answer on stdout (each line prefixed with `indent`),
 * then one line of verification (TEE, TCB status, model and its SHA-256,
 * receipt).  Returns 0 when the answer came and verified, 1 otherwise (the
 * reason on stderr, the answer not printed). */
int veil_cli_chat_run(const char *proxy, const char *model, const char *text,
		      int max_tokens, const char *indent);

/* Resolves the model to use: `arg` if given, else $VEIL_MODEL, else
 * ./models/stories260K.gguf, else ../shared/models/stories260K.gguf.  On
 * failure prints where it looked and where to get the model, returns -1. */
int veil_cli_find_model(const char *arg, char *out, size_t cap);

/* Prints "veil: <what>: <veil_strerror(rc)>[: <detail>]" to stderr. */
void veil_cli_error(const char *what, int rc);

/* True if argv has -h or --help. */
bool veil_cli_wants_help(int argc, char **argv);

#endif
