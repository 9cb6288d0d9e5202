/* veil model tokenize: the token ids of a text, as llama.cpp's
 * llama-tokenize --ids would print them (BOS as the model's add_bos says). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "veil/base.h"
#include "veil/gguf.h"
#include "veil/tokenizer.h"

static void tokenize_usage(FILE *f)
{
	fprintf(f,
		"usage: veil model tokenize PATH TEXT [--no-bos] [--parse-special]\n"
		"                           [--pieces]\n"
		"\n"
		"Prints the token ids of TEXT (UTF-8; '-' reads standard input)\n"
		"under the tokenizer of the GGUF model at PATH, space-separated on\n"
		"one line.  BOS is added when the model's add_bos_token says so.\n"
		"\n"
		"  --no-bos         never add BOS (nor EOS)\n"
		"  --parse-special  recognise control-token texts such as\n"
		"                   <|im_start|> in TEXT\n"
		"  --pieces         one line per token: id and its text piece\n"
		"  -h, --help       this help\n");
}

/* Prints a piece between quotes with C escapes for control bytes. */
static void print_piece(const char *p, size_t n)
{
	putchar('\'');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c == '\'' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	putchar('\'');
}

int veil_cli_model_tokenize(int argc, char **argv)
{
	const char *path = NULL, *text_arg = NULL;
	bool no_bos = false, parse_special = false, pieces = false;
	struct veil_buf in = VEIL_BUF_INIT(VEIL_TOK_MAX_TEXT);
	struct veil_gguf *g = NULL;
	struct veil_tok *t = NULL;
	int32_t *ids = NULL;
	const char *text;
	size_t len, n = 0, cap;
	int rc, status = 1;

	if (veil_cli_wants_help(argc, argv)) {
		tokenize_usage(stdout);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--no-bos")) {
			no_bos = true;
		} else if (!strcmp(argv[i], "--parse-special")) {
			parse_special = true;
		} else if (!strcmp(argv[i], "--pieces")) {
			pieces = true;
		} else if (argv[i][0] == '-' && argv[i][1] == '-') {
			fprintf(stderr, "veil model tokenize: unknown option %s\n", argv[i]);
			tokenize_usage(stderr);
			return 2;
		} else if (!path) {
			path = argv[i];
		} else if (!text_arg) {
			text_arg = argv[i];
		} else {
			fprintf(stderr, "veil model tokenize: extra argument %s\n", argv[i]);
			tokenize_usage(stderr);
			return 2;
		}
	}
	if (!path || !text_arg) {
		tokenize_usage(stderr);
		return 2;
	}
	if (!strcmp(text_arg, "-")) {
		if ((rc = veil_buf_read_fd(&in, STDIN_FILENO)) < 0) {
			veil_cli_error("reading standard input", rc);
			goto out;
		}
		text = in.data ? (const char *)in.data : "";
		len = in.len;
	} else {
		text = text_arg;
		len = strlen(text_arg);
	}

	if ((rc = veil_gguf_open(path, &g)) < 0) {
		veil_cli_error(path, rc);
		goto out;
	}
	if ((rc = veil_tok_load(g, &t)) < 0) {
		veil_cli_error("loading the tokenizer", rc);
		goto out;
	}
	/* llama-tokenize: add_special = model's add_bos && !--no-bos */
	bool add_special = !no_bos && veil_tok_add_bos(t);

	cap = len + 16;
	for (;;) {
		free(ids);
		if (!(ids = malloc(cap * sizeof(*ids)))) {
			veil_cli_error("tokenizing", VEIL_ENOMEM);
			goto out;
		}
		rc = veil_tok_encode(t, text, len, add_special, parse_special, ids,
				     cap, &n);
		if (rc != VEIL_ERANGE || n <= cap)
			break;
		cap = n;
	}
	if (rc < 0) {
		veil_cli_error("tokenizing", rc);
		goto out;
	}
	if (pieces) {
		for (size_t i = 0; i < n; i++) {
			char buf[512];
			int pl = veil_tok_piece(t, ids[i], true, buf, sizeof(buf));

			printf("%d ", ids[i]);
			if (pl >= 0) {
				print_piece(buf, (size_t)pl);
			} else {
				size_t tl = 0;
				const char *raw = veil_tok_text(t, ids[i], &tl);

				print_piece(raw ? raw : "", raw ? tl : 0);
			}
			putchar('\n');
		}
	} else {
		for (size_t i = 0; i < n; i++)
			printf(i ? " %d" : "%d", ids[i]);
		putchar('\n');
	}
	status = fflush(stdout) == 0 ? 0 : 1;
out:
	free(ids);
	veil_tok_free(t);
	veil_gguf_close(g);
	veil_buf_free(&in);
	return status;
}
