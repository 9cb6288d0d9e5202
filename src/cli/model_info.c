/* veil model info: what a GGUF file holds, without loading its weights.
 *
 * Reads only metadata through the GGUF reader (the mapping is never touched
 * past the tensor infos), plus one streamed pass for the sha256. */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "veil/base.h"
#include "veil/gguf.h"

#define TEMPLATE_HEAD 60

static void info_usage(FILE *f)
{
	fprintf(f,
		"usage: veil model info [PATH] [--json]\n"
		"\n"
		"Prints a GGUF model's size, version, sha256, architecture and\n"
		"shapes, tensor types, tokenizer and chat template.  PATH defaults\n"
		"to $VEIL_MODEL, then ./models/stories260K.gguf, then\n"
		"../shared/models/stories260K.gguf.\n"
		"\n"
		"  --json     print one JSON object instead of text\n"
		"  -h, --help this help\n");
}

/* What the command reports, gathered once for both output formats.  Fields
 * that the file lacks are marked absent (has_* false / NULL). */
struct info {
	const char *path;
	size_t file_bytes;
	uint32_t version;
	char sha256[65];
	size_t n_kv;
	uint64_t data_offset;
	uint32_t alignment;
	char arch[64];
	struct veil_gguf_str name;
	bool has_name;
	struct {
		const char *label;   /* text label and JSON key */
		const char *suffix;  /* after "<arch>." */
		bool is_float;
		bool has;
		uint64_t u;
		float f;
	} shape[9];
	uint64_t n_vocab;
	bool has_vocab;
	size_t n_tensors;
	size_t type_count[VEIL_DT_COUNT];
	uint64_t type_bytes[VEIL_DT_COUNT];
	uint64_t tensor_bytes;
	struct veil_gguf_str tok_model, tok_pre, tmpl;
	bool has_tok_model, has_tok_pre, has_tmpl;
	uint32_t bos, eos;
	bool has_bos, has_eos;
};

static const struct {
	const char *label, *suffix;
	bool is_float;
} shape_keys[9] = {
	{"n_layer", "block_count", false},
	{"n_embd", "embedding_length", false},
	{"n_ff", "feed_forward_length", false},
	{"n_head", "attention.head_count", false},
	{"n_head_kv", "attention.head_count_kv", false},
	{"n_ctx_train", "context_length", false},
	{"rope_freq_base", "rope.freq_base", true},
	{"rms_eps", "attention.layer_norm_rms_epsilon", true},
	{"n_vocab", "vocab_size", false},
};

/* Copies a file string into a C string buffer; false if it does not fit or
 * holds a NUL (then it is not usable as part of a key). */
static bool str_to_c(struct veil_gguf_str s, char *out, size_t cap)
{
	if (s.len >= cap || memchr(s.p, '\0', (size_t)s.len))
		return false;
	memcpy(out, s.p, (size_t)s.len);
	out[s.len] = '\0';
	return true;
}

static int gather(const struct veil_gguf *g, struct info *in)
{
	const struct veil_gguf_kv *kv;
	struct veil_gguf_str s;
	char key[160];

	in->file_bytes = veil_gguf_file_size(g);
	in->version = veil_gguf_version(g);
	in->n_kv = veil_gguf_n_kv(g);
	in->data_offset = veil_gguf_data_offset(g);
	in->alignment = veil_gguf_alignment(g);
	in->has_name = veil_gguf_get_str(g, "general.name", &in->name) == 0;
	if (veil_gguf_get_str(g, "general.architecture", &s) == 0 &&
	    !str_to_c(s, in->arch, sizeof(in->arch)))
		return veil_errf(VEIL_EFORMAT,
				 "key general.architecture: not a usable name");

	for (size_t i = 0; i < VEIL_ARRAY_LEN(shape_keys); i++) {
		in->shape[i].label = shape_keys[i].label;
		in->shape[i].suffix = shape_keys[i].suffix;
		in->shape[i].is_float = shape_keys[i].is_float;
		if (!in->arch[0])
			continue;
		snprintf(key, sizeof(key), "%s.%s", in->arch, shape_keys[i].suffix);
		/* A per-layer array (some architectures) or a wrong type is
		 * reported as absent: info describes, it does not validate. */
		if (shape_keys[i].is_float)
			in->shape[i].has = veil_gguf_get_f32(g, key, &in->shape[i].f) == 0;
		else
			in->shape[i].has = veil_gguf_get_u64(g, key, &in->shape[i].u) == 0;
	}
	/* n_vocab: "<arch>.vocab_size" when present, else the token list. */
	in->has_vocab = in->shape[8].has;
	in->n_vocab = in->shape[8].u;
	kv = veil_gguf_find(g, "tokenizer.ggml.tokens");
	if (!in->has_vocab && kv && kv->type == VEIL_GGUF_ARR) {
		in->has_vocab = true;
		in->n_vocab = kv->v.arr.n;
	}

	in->n_tensors = veil_gguf_n_tensors(g);
	for (size_t i = 0; i < in->n_tensors; i++) {
		const struct veil_gguf_tensor *t = veil_gguf_tensor_at(g, i);

		/* The reader only admits types with known traits (< COUNT). */
		in->type_count[t->type]++;
		in->type_bytes[t->type] += t->size;
		in->tensor_bytes += t->size;
	}

	in->has_tok_model = veil_gguf_get_str(g, "tokenizer.ggml.model", &in->tok_model) == 0;
	in->has_tok_pre = veil_gguf_get_str(g, "tokenizer.ggml.pre", &in->tok_pre) == 0;
	in->has_tmpl = veil_gguf_get_str(g, "tokenizer.chat_template", &in->tmpl) == 0;
	in->has_bos = veil_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &in->bos) == 0;
	in->has_eos = veil_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &in->eos) == 0;
	veil_err_clear();
	return 0;
}

/* Length of the template head: at most TEMPLATE_HEAD bytes, not ending in
 * the middle of a UTF-8 sequence. */
static size_t head_len(struct veil_gguf_str s)
{
	size_t n = s.len > TEMPLATE_HEAD ? TEMPLATE_HEAD : (size_t)s.len;

	if (n < s.len)
		while (n > 0 && ((uint8_t)s.p[n] & 0xc0) == 0x80)
			n--;
	return n;
}

/* Prints a file string with control characters escaped, so a hostile
 * name cannot drive the terminal. */
static void print_escaped(FILE *f, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)p[i];

		if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\\')
			fputs("\\\\", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
}

static void print_str(FILE *f, bool has, struct veil_gguf_str s)
{
	if (has)
		print_escaped(f, s.p, (size_t)s.len);
	else
		fputs("-", f);
}

static void print_text(const struct info *in)
{
	printf("file          %s\n", in->path);
	printf("size          %zu bytes (%.1f MiB)\n", in->file_bytes,
	       (double)in->file_bytes / (1024.0 * 1024.0));
	printf("gguf          v%" PRIu32 ", %zu keys, %zu tensors, data at %" PRIu64
	       ", alignment %" PRIu32 "\n", in->version, in->n_kv, in->n_tensors,
	       in->data_offset, in->alignment);
	printf("sha256        %s\n", in->sha256);
	printf("name          ");
	print_str(stdout, in->has_name, in->name);
	printf("\narchitecture  %s\n", in->arch[0] ? in->arch : "-");
	for (size_t i = 0; i < VEIL_ARRAY_LEN(in->shape); i++) {
		if (i == 8) {
			if (in->has_vocab)
				printf("  %-14s %" PRIu64 "\n", "n_vocab", in->n_vocab);
			else
				printf("  %-14s -\n", "n_vocab");
			continue;
		}
		printf("  %-14s ", in->shape[i].label);
		if (!in->shape[i].has)
			printf("-\n");
		else if (in->shape[i].is_float)
			printf("%g\n", (double)in->shape[i].f);
		else
			printf("%" PRIu64 "\n", in->shape[i].u);
	}
	printf("tensors       %zu, %" PRIu64 " bytes\n", in->n_tensors,
	       in->tensor_bytes);
	for (int t = 0; t < VEIL_DT_COUNT; t++)
		if (in->type_count[t])
			printf("  %-6s %6zu  %" PRIu64 " bytes\n",
			       veil_dtype_name((enum veil_dtype)t),
			       in->type_count[t], in->type_bytes[t]);
	printf("tokenizer     ");
	print_str(stdout, in->has_tok_model, in->tok_model);
	printf(" (pre: ");
	print_str(stdout, in->has_tok_pre, in->tok_pre);
	printf(")\n  bos %s", in->has_bos ? "" : "-");
	if (in->has_bos)
		printf("%" PRIu32, in->bos);
	printf("  eos %s", in->has_eos ? "" : "-");
	if (in->has_eos)
		printf("%" PRIu32, in->eos);
	printf("\nchat template ");
	if (!in->has_tmpl) {
		printf("none\n");
	} else {
		size_t n = head_len(in->tmpl);

		printf("%" PRIu64 " bytes: \"", in->tmpl.len);
		print_escaped(stdout, in->tmpl.p, n);
		printf("\"%s\n", n < in->tmpl.len ? "..." : "");
	}
}

/* The shortest decimal that reads back as the same float, so JSON shows
 * 1e-05 rather than the f32's exact binary value 9.99999974737875e-06. */
static double float_for_json(float f)
{
	char buf[32];

	for (int prec = 6; prec < 9; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, (double)f);
		if ((float)strtod(buf, NULL) == f)
			return strtod(buf, NULL);
	}
	return (double)f;
}

/* jansson wants NUL-terminated UTF-8; file strings are neither. */
static json_t *jstr(bool has, struct veil_gguf_str s)
{
	return has ? json_stringn_nocheck(s.p, (size_t)s.len) : json_null();
}

static int print_json(const struct info *in)
{
	json_t *o = json_object(), *types = json_object(), *tbytes = json_object();
	char *text = NULL;
	int rc = 0;

	if (!o || !types || !tbytes) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	json_object_set_new(o, "path", json_string(in->path));
	json_object_set_new(o, "file_bytes", json_integer((json_int_t)in->file_bytes));
	json_object_set_new(o, "gguf_version", json_integer(in->version));
	json_object_set_new(o, "sha256", json_string(in->sha256));
	json_object_set_new(o, "name", jstr(in->has_name, in->name));
	json_object_set_new(o, "architecture",
			    in->arch[0] ? json_string(in->arch) : json_null());
	for (size_t i = 0; i < 8; i++) {
		json_t *v = json_null();

		if (in->shape[i].has && in->shape[i].is_float)
			v = json_real(float_for_json(in->shape[i].f));
		else if (in->shape[i].has)
			v = json_integer((json_int_t)in->shape[i].u);
		json_object_set_new(o, in->shape[i].label, v);
	}
	json_object_set_new(o, "n_vocab", in->has_vocab
			    ? json_integer((json_int_t)in->n_vocab) : json_null());
	json_object_set_new(o, "n_tensors", json_integer((json_int_t)in->n_tensors));
	json_object_set_new(o, "tensor_bytes",
			    json_integer((json_int_t)in->tensor_bytes));
	for (int t = 0; t < VEIL_DT_COUNT; t++) {
		if (!in->type_count[t])
			continue;
		json_object_set_new(types, veil_dtype_name((enum veil_dtype)t),
				    json_integer((json_int_t)in->type_count[t]));
		json_object_set_new(tbytes, veil_dtype_name((enum veil_dtype)t),
				    json_integer((json_int_t)in->type_bytes[t]));
	}
	json_object_set_new(o, "tensor_types", types);
	json_object_set_new(o, "tensor_type_bytes", tbytes);
	types = tbytes = NULL;
	json_object_set_new(o, "tokenizer", jstr(in->has_tok_model, in->tok_model));
	json_object_set_new(o, "pre", jstr(in->has_tok_pre, in->tok_pre));
	json_object_set_new(o, "bos_id", in->has_bos ? json_integer(in->bos) : json_null());
	json_object_set_new(o, "eos_id", in->has_eos ? json_integer(in->eos) : json_null());
	json_object_set_new(o, "chat_template_bytes", in->has_tmpl
			    ? json_integer((json_int_t)in->tmpl.len) : json_null());
	if (in->has_tmpl) {
		struct veil_gguf_str h = {in->tmpl.p, head_len(in->tmpl)};

		json_object_set_new(o, "chat_template_head", jstr(true, h));
	} else {
		json_object_set_new(o, "chat_template_head", json_null());
	}
	/* Invalid UTF-8 in a file string would make the dump fail: report it
	 * rather than print a broken object. */
	text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
	if (!text) {
		rc = veil_errf(VEIL_EFORMAT, "metadata strings are not valid UTF-8");
		goto out;
	}
	printf("%s\n", text);
out:
	free(text);
	json_decref(types);
	json_decref(tbytes);
	json_decref(o);
	return rc;
}

int veil_cli_model_info(int argc, char **argv)
{
	struct veil_gguf *g = NULL;
	struct info in;
	const char *arg = NULL;
	char path[4096];
	uint8_t digest[32];
	bool json = false;
	int rc, status = 1;

	if (veil_cli_wants_help(argc, argv)) {
		info_usage(stdout);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--model") && i + 1 < argc && !arg) {
			arg = argv[++i];
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "veil model info: unknown option '%s'\n",
				argv[i]);
			info_usage(stderr);
			return 2;
		} else if (!arg) {
			arg = argv[i];
		} else {
			fprintf(stderr, "veil model info: more than one PATH\n");
			info_usage(stderr);
			return 2;
		}
	}
	if (veil_cli_find_model(arg, path, sizeof(path)) < 0)
		return 1;

	memset(&in, 0, sizeof(in));
	in.path = path;
	if ((rc = veil_gguf_open(path, &g)) < 0) {
		veil_cli_error(path, rc);
		goto out;
	}
	if ((rc = veil_gguf_sha256_file(path, digest)) < 0 ||
	    (rc = veil_hex_encode(digest, sizeof(digest), in.sha256,
				  sizeof(in.sha256))) < 0 ||
	    (rc = gather(g, &in)) < 0) {
		veil_cli_error(path, rc);
		goto out;
	}
	if (json) {
		if ((rc = print_json(&in)) < 0) {
			veil_cli_error(path, rc);
			goto out;
		}
	} else {
		print_text(&in);
	}
	status = fflush(stdout) == 0 ? 0 : 1;
out:
	veil_gguf_close(g);
	return status;
}
