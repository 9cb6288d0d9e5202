/* veil model bench: prefill and decode speed of the forward pass, measured
 * like llama-bench (pp: one batch of P random tokens; tg: N single-token
 * steps from an empty context, K sequences at once with --parallel). */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "veil/base.h"
#include "veil/model.h"
#include "veil/quant.h"

static void bench_usage(FILE *f)
{
	fprintf(f,
		"usage: veil model bench [PATH] [options]\n"
		"\n"
		"Measures the engine's forward pass on a GGUF model:\n"
		"  pp  prefill: P random tokens in one batch (tokens/s)\n"
		"  tg  decode: N steps of one token per sequence, from an empty\n"
		"      context; with --parallel K, K sequences decode together and\n"
		"      tg is the aggregate tokens/s\n"
		"Each is run once to warm up, then REPS times; the mean is shown.\n"
		"\n"
		"  -t, --threads N  threads (default: all cores)\n"
		"  -p N             prompt tokens for pp (default 512; 0 = skip)\n"
		"  -n N             decode steps for tg (default 128; 0 = skip)\n"
		"  --parallel K     sequences decoding together (default 1)\n"
		"  -r, --reps N     repetitions (default 3)\n"
		"  --json           end with one JSON line: pp_tok_s, tg_tok_s, threads,\n"
		"                   parallel, model_bytes, weight_bytes_per_token,\n"
		"                   kv_bytes, rss_bytes, hwm_bytes, ...\n"
		"  -h, --help       this help\n");
}

/* VmRSS / VmHWM of this process in bytes (0 when unknown). */
static void mem_usage(size_t *rss, size_t *hwm)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];

	*rss = *hwm = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long kb;

		if (sscanf(line, "VmRSS: %lu kB", &kb) == 1)
			*rss = (size_t)kb * 1024;
		else if (sscanf(line, "VmHWM: %lu kB", &kb) == 1)
			*hwm = (size_t)kb * 1024;
	}
	fclose(f);
}

static int parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "veil model bench: bad value '%s' for %s\n", s, opt);
		return -1;
	}
	*out = v;
	return 0;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct bench {
	struct veil_ctx *c;
	int32_t *tok, *pos, *seq;
	bool *lg;
	int32_t n_vocab;
	uint64_t rng;
};

static int run_pp(struct bench *b, int32_t p, double *secs)
{
	struct veil_batch bt = {p, b->tok, b->pos, b->seq, NULL};
	uint64_t t0;
	int rc;

	for (int32_t i = 0; i < p; i++) {
		b->tok[i] = (int32_t)(rng_next(&b->rng) % (uint64_t)b->n_vocab);
		b->pos[i] = i;
		b->seq[i] = 0;
	}
	t0 = veil_now_ns();
	rc = veil_ctx_decode(b->c, &bt);
	*secs = (double)(veil_now_ns() - t0) / 1e9;
	return rc;
}

static int run_tg(struct bench *b, int32_t n, int32_t k, double *secs)
{
	struct veil_batch bt = {k, b->tok, b->pos, b->seq, b->lg};
	uint64_t t0 = veil_now_ns();
	int rc = 0;

	for (int32_t step = 0; step < n && rc == 0; step++) {
		for (int32_t s = 0; s < k; s++) {
			b->tok[s] = (int32_t)(rng_next(&b->rng) % (uint64_t)b->n_vocab);
			b->pos[s] = step;
			b->seq[s] = s;
			b->lg[s] = true;
		}
		rc = veil_ctx_decode(b->c, &bt);
	}
	*secs = (double)(veil_now_ns() - t0) / 1e9;
	return rc;
}

int veil_cli_model_bench(int argc, char **argv)
{
	const char *model_arg = NULL;
	long threads = 0, p = 512, n = 128, par = 1, reps = 3;
	bool json = false;
	char path[4096];
	struct veil_model *m = NULL;
	struct veil_ctx_params cp;
	struct bench b = {.rng = 0x5eed};
	double pp_sum = 0, tg_sum = 0, pp_tps = 0, tg_tps = 0;
	size_t rss, hwm, B;
	int rc, ret = 1;

	if (veil_cli_wants_help(argc, argv)) {
		bench_usage(stdout);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		long *dst = NULL, lo = 0, hi = 0;

		if (!strcmp(a, "--json")) {
			json = true;
			continue;
		}
		if (a[0] != '-' && !model_arg) {
			model_arg = a;
			continue;
		}
		if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
			dst = &threads, lo = 1, hi = 256;
		else if (!strcmp(a, "-p"))
			dst = &p, lo = 0, hi = 65536;
		else if (!strcmp(a, "-n"))
			dst = &n, lo = 0, hi = 65536;
		else if (!strcmp(a, "--parallel"))
			dst = &par, lo = 1, hi = 256;
		else if (!strcmp(a, "-r") || !strcmp(a, "--reps"))
			dst = &reps, lo = 1, hi = 1000;
		else if (!strcmp(a, "--model") && v) {
			model_arg = v;
			i++;
			continue;
		}
		if (!dst || !v) {
			fprintf(stderr, "veil model bench: unknown option or missing value: %s\n", a);
			bench_usage(stderr);
			return 2;
		}
		if (parse_int(a, v, lo, hi, dst) < 0)
			return 2;
		i++;
	}
	if (veil_cli_find_model(model_arg, path, sizeof(path)) < 0)
		return 1;
	veil_quant_init();
	if ((rc = veil_model_load(path, &m)) < 0) {
		veil_cli_error(path, rc);
		return 1;
	}
	B = (size_t)VEIL_MAX(VEIL_MAX(p, par), 1);
	veil_ctx_params_default(&cp);
	cp.n_ctx = (int32_t)VEIL_MAX(p, n) + 8;
	cp.n_seq = (int32_t)par;
	cp.n_batch = (int32_t)B;
	cp.n_outputs = (int32_t)par;
	cp.n_threads = (int32_t)threads;
	cp.populate = true; /* as a serving engine's: first touches not timed */
	if ((rc = veil_ctx_new(m, &cp, &b.c)) < 0) {
		veil_cli_error("context", rc);
		goto out;
	}
	b.n_vocab = veil_model_hparams(m)->n_vocab;
	b.tok = calloc(B, sizeof(int32_t));
	b.pos = calloc(B, sizeof(int32_t));
	b.seq = calloc(B, sizeof(int32_t));
	b.lg = calloc(B, sizeof(bool));
	if (!b.tok || !b.pos || !b.seq || !b.lg) {
		fprintf(stderr, "veil model bench: out of memory\n");
		goto out;
	}
	fprintf(stderr, "veil bench: %s, %s %s, %d threads, isa %s\n", path,
		veil_arch_name(veil_model_hparams(m)->arch),
		veil_dtype_name(veil_model_main_type(m)), veil_ctx_n_threads(b.c),
		veil_isa_name(veil_isa_active()));
	if (p > 0) {
		double s;

		for (long r = -1; r < reps; r++) {
			if ((rc = run_pp(&b, (int32_t)p, &s)) < 0) {
				veil_cli_error("prefill", rc);
				goto out;
			}
			if (r >= 0)
				pp_sum += s;
		}
		pp_tps = (double)p * (double)reps / pp_sum;
		printf("pp%-6ld %10.1f tok/s  (%.3f s per batch)\n", p, pp_tps,
		       pp_sum / (double)reps);
	}
	if (n > 0) {
		double s;

		for (long r = -1; r < reps; r++) {
			if ((rc = run_tg(&b, r < 0 ? (int32_t)VEIL_MIN(n, 16) : (int32_t)n,
					 (int32_t)par, &s)) < 0) {
				veil_cli_error("decode", rc);
				goto out;
			}
			if (r >= 0)
				tg_sum += s;
		}
		tg_tps = (double)n * (double)par * (double)reps / tg_sum;
		printf("tg%-6ld %10.1f tok/s  (%ld sequences, %.2f ms per step)\n", n,
		       tg_tps, par, tg_sum * 1e3 / (double)(n * reps));
	}
	mem_usage(&rss, &hwm);
	printf("memory: rss %.1f MiB, peak %.1f MiB; model %.1f MiB, KV cache "
	       "%.1f MiB (reserved)\n", (double)rss / 1048576.0, (double)hwm / 1048576.0,
	       (double)veil_model_file_bytes(m) / 1048576.0,
	       (double)veil_ctx_kv_bytes(b.c) / 1048576.0);
	if (json) {
		json_t *o = json_object();
		char *s;

		json_object_set_new(o, "model", json_string(path));
		json_object_set_new(o, "arch", json_string(veil_arch_name(veil_model_hparams(m)->arch)));
		json_object_set_new(o, "type", json_string(veil_dtype_name(veil_model_main_type(m))));
		json_object_set_new(o, "isa", json_string(veil_isa_name(veil_isa_active())));
		json_object_set_new(o, "n_prompt", json_integer(p));
		json_object_set_new(o, "n_gen", json_integer(n));
		json_object_set_new(o, "reps", json_integer(reps));
		json_object_set_new(o, "pp_tok_s", json_real(pp_tps));
		json_object_set_new(o, "tg_tok_s", json_real(tg_tps));
		json_object_set_new(o, "threads", json_integer(veil_ctx_n_threads(b.c)));
		json_object_set_new(o, "parallel", json_integer(par));
		json_object_set_new(o, "model_bytes", json_integer((json_int_t)veil_model_file_bytes(m)));
		json_object_set_new(o, "weight_bytes_per_token",
				    json_integer((json_int_t)veil_model_weight_bytes_per_token(m)));
		json_object_set_new(o, "n_params", json_integer((json_int_t)veil_model_n_params(m)));
		json_object_set_new(o, "kv_bytes", json_integer((json_int_t)veil_ctx_kv_bytes(b.c)));
		json_object_set_new(o, "rss_bytes", json_integer((json_int_t)rss));
		json_object_set_new(o, "hwm_bytes", json_integer((json_int_t)hwm));
		s = json_dumps(o, JSON_COMPACT);
		if (s)
			printf("%s\n", s);
		free(s);
		json_decref(o);
	}
	ret = 0;
out:
	free(b.tok);
	free(b.pos);
	free(b.seq);
	free(b.lg);
	veil_ctx_free(b.c);
	veil_model_free(m);
	return ret;
}
