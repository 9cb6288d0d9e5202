/* veil model run: generate a continuation (or a chat reply) on the CPU,
 * through the same engine the node server uses. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/chat.h"
#include "veil/engine.h"
#include "veil/model.h"
#include "veil/sampler.h"
#include "veil/tokenizer.h"

#define PROMPT_MAX (1u << 20)

static void run_usage(FILE *f)
{
	fprintf(f,
		"usage: veil model run [PATH] --prompt TEXT [options]\n"
		"\n"
		"Generates text with a llama-family GGUF model and prints it as it\n"
		"comes (stdout); prompt and generation speed go to stderr at the end.\n"
		"PATH (or --model PATH) defaults to $VEIL_MODEL, then\n"
		"./models/stories260K.gguf, then ../shared/models/stories260K.gguf.\n"
		"The prompt is tokenized with the model's BOS rule (add_bos).\n"
		"\n"
		"  --prompt TEXT        the prompt (default: empty, i.e. just BOS)\n"
		"  --chat               wrap the prompt as a user message in the model's\n"
		"                       chat template (tokenizer.chat_template)\n"
		"  --system TEXT        system message (with --chat)\n"
		"  -n N                 tokens to generate (default 256; -1 = until the\n"
		"                       context is full)\n"
		"  --temp T             temperature (default 0.8; 0 = greedy)\n"
		"  --top-k K            (default 40; 0 = off)\n"
		"  --top-p P            (default 0.95; 1 = off)\n"
		"  --min-p P            (default 0.05; 0 = off)\n"
		"  --repeat-penalty R   (default 1.0 = off; window 64 tokens)\n"
		"  --seed S             sampling seed (default: random)\n"
		"  --ids                print only the generated token ids, on one line\n"
		"  -t, --threads N      threads (default: all cores)\n"
		"  --ctx N              context size (default: min(model, 4096))\n"
		"  -h, --help           this help\n"
		"\n"
		"Sampling defaults are llama.cpp's; use --temp 0 for reproducible greedy\n"
		"output.\n");
}

struct run_state {
	bool ids;
	int32_t n_gen;
	uint64_t t_first;
	bool first_sep;
};

static void on_event(const struct veil_engine_event *ev, void *user)
{
	struct run_state *st = user;

	if (ev->token >= 0) {
		if (!st->n_gen)
			st->t_first = veil_now_ns();
		st->n_gen++;
		if (st->ids) {
			printf("%s%d", st->first_sep ? " " : "", ev->token);
			st->first_sep = true;
		}
	}
	if (!st->ids && ev->text_len)
		fwrite(ev->text, 1, ev->text_len, stdout);
	fflush(stdout);
}

static int parse_num(const char *opt, const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	/* !(in range), not (out of range): "nan" is neither */
	if (errno || end == s || *end || !(v >= lo && v <= hi)) {
		fprintf(stderr, "veil model run: bad value '%s' for %s\n", s, opt);
		return -1;
	}
	*out = v;
	return 0;
}

/* A whole number lo..hi: "2.5", "1e3" or "nan" for a count is refused, not
 * truncated. */
static int parse_int(const char *opt, const char *s, long long lo, long long hi, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "veil model run: bad value '%s' for %s (a whole number %lld..%lld)\n",
			s, opt, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

/* The seed: any 64-bit unsigned decimal, digits only (strtoull alone
 * would take "-1" as 2^64-1). */
static int parse_seed(const char *opt, const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] < '0' || s[0] > '9') {
		fprintf(stderr, "veil model run: bad value '%s' for %s (0..2^64-1)\n", s, opt);
		return -1;
	}
	*out = v;
	return 0;
}

static int tokenize(const struct veil_tok *tok, const char *text, size_t len,
		    bool parse_special, int32_t **ids, size_t *n)
{
	size_t need = 0, cap = len + 16;
	int32_t *buf = malloc(cap * sizeof(int32_t));
	int rc;

	if (!buf)
		return VEIL_ENOMEM;
	rc = veil_tok_encode(tok, text, len, true, parse_special, buf, cap, &need);
	if (rc == VEIL_ERANGE) {
		int32_t *nb = realloc(buf, (need + 1) * sizeof(int32_t));

		if (!nb) {
			free(buf);
			return VEIL_ENOMEM;
		}
		buf = nb;
		rc = veil_tok_encode(tok, text, len, true, parse_special, buf,
				     need + 1, &need);
	}
	if (rc < 0) {
		free(buf);
		return rc;
	}
	/* a template that writes BOS itself, plus add_bos, would double it */
	if (need >= 2 && buf[0] == buf[1] && buf[0] == veil_tok_bos(tok)) {
		memmove(buf, buf + 1, (need - 1) * sizeof(int32_t));
		need--;
	}
	*ids = buf;
	*n = need;
	return 0;
}

int veil_cli_model_run(int argc, char **argv)
{
	const char *model_arg = NULL, *prompt = "", *system = NULL;
	bool chat = false, ids_only = false, seed_set = false;
	struct veil_sampler_params sp;
	struct veil_engine_params ep;
	struct veil_engine *e = NULL;
	struct veil_buf text = VEIL_BUF_INIT(PROMPT_MAX);
	struct veil_engine_request rq = {0};
	struct run_state st = {0};
	enum veil_finish fin = VEIL_FINISH_NONE;
	struct veil_engine_usage usage = {0};
	char path[4096];
	int32_t *ids = NULL;
	size_t n_ids = 0;
	int32_t n_predict = 256;
	uint64_t t0, t1;
	int rc, ret = 1;

	veil_sampler_params_default(&sp);
	sp.temperature = 0.8f;
	sp.top_k = 40;
	sp.top_p = 0.95f;
	sp.min_p = 0.05f;
	sp.repeat_penalty = 1.0f;
	veil_engine_params_default(&ep);
	ep.lazy_kv = true; /* one answer touches only the positions it fills */
	ep.max_batch = 1;
	ep.max_queue = 1;

	if (veil_cli_wants_help(argc, argv)) {
		run_usage(stdout);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		double d;
		long long n;
		bool takes = true;

		if (!strcmp(a, "--chat")) {
			chat = true;
			takes = false;
		} else if (!strcmp(a, "--ids")) {
			ids_only = true;
			takes = false;
		} else if (a[0] != '-' && !model_arg) {
			model_arg = a;
			takes = false;
		} else if (!v) {
			fprintf(stderr, "veil model run: %s needs a value (or is unknown)\n", a);
			run_usage(stderr);
			return 2;
		} else if (!strcmp(a, "--model")) {
			model_arg = v;
		} else if (!strcmp(a, "--prompt") || !strcmp(a, "-p")) {
			prompt = v;
		} else if (!strcmp(a, "--system")) {
			system = v;
		} else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
			if (parse_int(a, v, -1, 1 << 24, &n) < 0)
				return 2;
			n_predict = (int32_t)n;
		} else if (!strcmp(a, "--temp")) {
			if (parse_num(a, v, 0, 100, &d) < 0)
				return 2;
			sp.temperature = (float)d;
		} else if (!strcmp(a, "--top-k")) {
			if (parse_int(a, v, 0, 1 << 30, &n) < 0)
				return 2;
			sp.top_k = (int32_t)n;
		} else if (!strcmp(a, "--top-p")) {
			if (parse_num(a, v, 0, 1, &d) < 0)
				return 2;
			sp.top_p = (float)d;
		} else if (!strcmp(a, "--min-p")) {
			if (parse_num(a, v, 0, 1, &d) < 0)
				return 2;
			sp.min_p = (float)d;
		} else if (!strcmp(a, "--repeat-penalty")) {
			if (parse_num(a, v, 1e-3, 100, &d) < 0)
				return 2;
			sp.repeat_penalty = (float)d;
		} else if (!strcmp(a, "--seed") || !strcmp(a, "-s")) {
			if (parse_seed(a, v, &sp.seed) < 0)
				return 2;
			seed_set = true;
		} else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
			if (parse_int(a, v, 1, 256, &n) < 0)
				return 2;
			ep.n_threads = (int32_t)n;
		} else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
			if (parse_int(a, v, 8, 1 << 20, &n) < 0)
				return 2;
			ep.n_ctx = (int32_t)n;
		} else {
			fprintf(stderr, "veil model run: unknown option %s\n", a);
			run_usage(stderr);
			return 2;
		}
		if (takes)
			i++;
	}
	if (system && !chat) {
		fprintf(stderr, "veil model run: --system needs --chat\n");
		return 2;
	}
	if (!seed_set && veil_random(&sp.seed, sizeof(sp.seed)) < 0)
		sp.seed = veil_now_ns();
	if (veil_cli_find_model(model_arg, path, sizeof(path)) < 0)
		return 1;
	if ((rc = veil_engine_open(path, &ep, &e)) < 0) {
		veil_cli_error(path, rc);
		return 1;
	}
	if (chat) {
		const struct veil_gguf *g = veil_model_gguf(veil_engine_model(e));
		struct veil_gguf_str ts = {NULL, 0};
		struct veil_chat_msg msgs[2];
		size_t nm = 0;
		enum veil_chat_tmpl t;
		bool known = false;

		veil_gguf_get_str(g, "tokenizer.chat_template", &ts);
		t = veil_chat_detect(ts.p, (size_t)ts.len, &known);
		if (!known && ts.len)
			fprintf(stderr, "veil: unknown chat template, using plain\n");
		if (system)
			msgs[nm++] = (struct veil_chat_msg){"system", system};
		msgs[nm++] = (struct veil_chat_msg){"user", prompt};
		if ((rc = veil_chat_apply(t, msgs, nm, true, &text)) < 0) {
			veil_cli_error("chat template", rc);
			goto out;
		}
	} else if ((rc = veil_buf_append_str(&text, prompt)) < 0) {
		veil_cli_error("prompt", rc);
		goto out;
	}
	if ((rc = tokenize(veil_engine_tok(e), text.data ? (const char *)text.data : "",
			   text.len, chat, &ids, &n_ids)) < 0) {
		veil_cli_error("tokenize", rc);
		goto out;
	}
	if (n_ids == 0) {
		/* a model without BOS and an empty prompt: nothing to condition on */
		fprintf(stderr, "veil model run: the prompt is empty and the model adds "
			"no BOS; give --prompt\n");
		ret = 2;
		goto out;
	}
	rq.prompt = ids;
	rq.n_prompt = n_ids;
	rq.sampling = sp;
	rq.max_tokens = n_predict < 0 ? 0 : n_predict;
	rq.cb = on_event;
	rq.user = &st;
	st.ids = ids_only;
	if (n_predict == 0) {
		ret = 0;
		goto out;
	}
	t0 = veil_now_ns();
	if ((rc = veil_engine_generate(e, &rq, &fin, &usage)) < 0) {
		veil_cli_error("generate", rc);
		goto out;
	}
	t1 = veil_now_ns();
	printf("\n");
	fflush(stdout);
	if (fin == VEIL_FINISH_ERROR) {
		fprintf(stderr, "veil model run: generation failed\n");
		goto out;
	}
	{
		double pp_s = st.n_gen ? (double)(st.t_first - t0) / 1e9 : 0.0;
		double tg_s = (double)(t1 - st.t_first) / 1e9;

		fprintf(stderr,
			"veil: prompt %zu tokens in %.3f s (%.1f tok/s); generated %d "
			"tokens in %.3f s (%.1f tok/s); %d threads; finish: %s\n",
			n_ids, pp_s, pp_s > 0 ? (double)n_ids / pp_s : 0.0, usage.completion_tokens,
			tg_s, st.n_gen > 1 && tg_s > 0 ? (double)(st.n_gen - 1) / tg_s : 0.0,
			veil_engine_n_threads(e), veil_finish_name(fin));
	}
	ret = 0;
out:
	free(ids);
	veil_buf_free(&text);
	veil_engine_free(e);
	return ret;
}
