/* Unit tests of the sampler and the stopper (include/veil/sampler.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "veil/sampler.h"

static struct veil_sampler *mk(const struct veil_sampler_params *p, int32_t nv)
{
	struct veil_sampler *s = NULL;

	assert_int_equal(veil_sampler_new(p, nv, &s), 0);
	assert_non_null(s);
	return s;
}

static int32_t pick(struct veil_sampler *s, const float *logits, int32_t nv)
{
	float *l = malloc((size_t)nv * sizeof(*l));
	struct veil_logprob c;

	assert_non_null(l);
	memcpy(l, logits, (size_t)nv * sizeof(*l));
	assert_int_equal(veil_sampler_sample(s, l, &c, NULL, 0), 0);
	free(l);
	assert_true(c.id >= 0 && c.id < nv);
	return c.id;
}

static struct veil_sampler_params greedy_params(void)
{
	struct veil_sampler_params p;

	veil_sampler_params_default(&p);
	p.temperature = 0.0f;
	return p;
}

/* ---- parameters --------------------------------------------------------- */

static void test_defaults_are_documented_values(void **state)
{
	struct veil_sampler_params p;

	(void)state;
	veil_sampler_params_default(&p);
	assert_true(p.temperature == 1.0f);
	assert_int_equal(p.top_k, 0);
	assert_true(p.top_p == 1.0f);
	assert_true(p.min_p == 0.0f);
	assert_true(p.seed == 0);
	assert_true(p.repeat_penalty == 1.0f);
	assert_int_equal(p.repeat_last_n, 64);
	assert_true(p.frequency_penalty == 0.0f);
	assert_true(p.presence_penalty == 0.0f);
}

static void test_new_rejects_out_of_range_params(void **state)
{
	struct veil_sampler_params p;
	struct veil_sampler *s = NULL;

	(void)state;
	veil_sampler_params_default(&p);
	assert_int_equal(veil_sampler_new(&p, 0, &s), VEIL_EINVAL);
	p.top_p = 1.5f;
	assert_int_equal(veil_sampler_new(&p, 10, &s), VEIL_EINVAL);
	veil_sampler_params_default(&p);
	p.temperature = NAN;
	assert_int_equal(veil_sampler_new(&p, 10, &s), VEIL_EINVAL);
	veil_sampler_params_default(&p);
	p.repeat_penalty = 0.0f;
	assert_int_equal(veil_sampler_new(&p, 10, &s), VEIL_EINVAL);
	veil_sampler_params_default(&p);
	p.repeat_last_n = -2;
	assert_int_equal(veil_sampler_new(&p, 10, &s), VEIL_EINVAL);
	veil_sampler_params_default(&p);
	p.top_k = -1;
	assert_int_equal(veil_sampler_new(&p, 10, &s), VEIL_EINVAL);
	assert_null(s);
}

/* ---- greedy ------------------------------------------------------------- */

static void test_greedy_picks_argmax(void **state)
{
	struct veil_sampler_params p = greedy_params();
	struct veil_sampler *s = mk(&p, 6);
	const float l[6] = {0.1f, -3.0f, 2.5f, 2.4f, -INFINITY, 1.0f};

	(void)state;
	assert_int_equal(pick(s, l, 6), 2);
	veil_sampler_free(s);
}

static void test_greedy_breaks_ties_to_lowest_id(void **state)
{
	struct veil_sampler_params p = greedy_params();
	struct veil_sampler *s = mk(&p, 5);
	const float l[5] = {1.0f, 3.0f, 2.0f, 3.0f, 3.0f};
	const float z[5] = {0};

	(void)state;
	assert_int_equal(pick(s, l, 5), 1);
	assert_int_equal(pick(s, z, 5), 0);
	veil_sampler_free(s);
}

/* 1/T overflows a float for T below ~3e-39: such temperatures are greedy,
 * not NaN weights that always pick the first candidate. */
static void test_tiny_temperature_is_greedy(void **state)
{
	const float temps[] = {1e-45f, 1e-40f, 2e-39f, 1e-30f, 1e-7f};
	const float l[6] = {0.1f, -3.0f, 2.5f, 2.4f, -INFINITY, 1.0f};

	(void)state;
	for (size_t i = 0; i < sizeof(temps) / sizeof(temps[0]); i++) {
		struct veil_sampler_params p;
		struct veil_sampler *s;

		veil_sampler_params_default(&p);
		p.temperature = temps[i];
		p.seed = 7 + i;
		s = mk(&p, 6);
		for (int k = 0; k < 20; k++) {
			float w[6];
			int32_t id = -1;

			assert_int_equal(pick(s, l, 6), 2);
			memcpy(w, l, sizeof(w));
			assert_int_equal(veil_sampler_pick(s, w, &id), 0);
			assert_int_equal(id, 2);
		}
		veil_sampler_free(s);
	}
}

static void test_top_k_1_equals_greedy_at_any_temperature(void **state)
{
	enum { NV = 1000 };
	float l[NV];
	uint64_t x = 12345;

	(void)state;
	for (int i = 0; i < NV; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		l[i] = (float)((x >> 40) % 1000) / 100.0f;
	}
	l[777] = 10.0f;
	l[778] = 10.0f;   /* tie: 777 must win */
	for (int t = 0; t < 4; t++) {
		struct veil_sampler_params p;
		struct veil_sampler *s;

		veil_sampler_params_default(&p);
		p.top_k = 1;
		p.temperature = (float)t * 2.5f;   /* 0, 2.5, 5, 7.5 */
		p.seed = (uint64_t)t;
		s = mk(&p, NV);
		for (int k = 0; k < 20; k++)
			assert_int_equal(pick(s, l, NV), 777);
		veil_sampler_free(s);
	}
}

static void test_nan_logits_are_never_chosen_and_all_nan_is_error(void **state)
{
	struct veil_sampler_params p = greedy_params();
	struct veil_sampler *s = mk(&p, 3);
	float l[3] = {NAN, 0.5f, NAN};
	struct veil_logprob c;

	(void)state;
	assert_int_equal(veil_sampler_sample(s, l, &c, NULL, 0), 0);
	assert_int_equal(c.id, 1);
	assert_true(fabsf(c.logprob) < 1e-6f);
	l[0] = NAN;
	l[1] = -INFINITY;
	l[2] = NAN;
	assert_int_equal(veil_sampler_sample(s, l, &c, NULL, 0), VEIL_EINVAL);
	veil_sampler_free(s);
}

/* ---- randomness --------------------------------------------------------- */

static void draw_seq(uint64_t seed, int32_t *out, int n)
{
	enum { NV = 16 };
	float l[NV] = {0};
	struct veil_sampler_params p;
	struct veil_sampler *s;

	veil_sampler_params_default(&p);
	p.seed = seed;
	s = mk(&p, NV);
	for (int i = 0; i < n; i++)
		out[i] = pick(s, l, NV);
	veil_sampler_free(s);
}

static void test_same_seed_gives_same_sequence(void **state)
{
	int32_t a[200], b[200];

	(void)state;
	draw_seq(42, a, 200);
	draw_seq(42, b, 200);
	assert_memory_equal(a, b, sizeof(a));
}

static void test_different_seed_gives_different_sequence(void **state)
{
	int32_t a[200], b[200];
	int diff = 0;

	(void)state;
	draw_seq(1, a, 200);
	draw_seq(2, b, 200);
	for (int i = 0; i < 200; i++)
		diff += a[i] != b[i];
	/* independent uniform draws over 16 tokens differ ~94% of the time */
	assert_true(diff > 150);
}

static void test_reset_replays_the_same_sequence(void **state)
{
	enum { NV = 16 };
	float l[NV] = {0};
	struct veil_sampler_params p;
	struct veil_sampler *s;
	int32_t a[50], b[50];

	(void)state;
	veil_sampler_params_default(&p);
	p.seed = 7;
	s = mk(&p, NV);
	for (int i = 0; i < 50; i++)
		a[i] = pick(s, l, NV);
	veil_sampler_reset(s);
	for (int i = 0; i < 50; i++)
		b[i] = pick(s, l, NV);
	assert_memory_equal(a, b, sizeof(a));
	veil_sampler_free(s);
}

/* Pearson chi-square of observed counts against softmax(l / T) * n. */
static double chi_square(const float *l, int nv, float temp, const int *obs,
			 int n)
{
	double z = 0.0, chi = 0.0, mx = l[0];

	for (int i = 1; i < nv; i++)
		mx = fmax(mx, l[i]);
	for (int i = 0; i < nv; i++)
		z += exp((l[i] - mx) / temp);
	for (int i = 0; i < nv; i++) {
		double e = exp((l[i] - mx) / temp) / z * n;

		chi += (obs[i] - e) * (obs[i] - e) / e;
	}
	return chi;
}

static void test_temperature_frequencies_match_softmax(void **state)
{
	enum { NV = 8, N = 100000 };
	const float l[NV] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, 1.5f, -1.0f, 0.25f};
	const float temps[3] = {1.0f, 0.7f, 1.8f};

	(void)state;
	for (int t = 0; t < 3; t++) {
		struct veil_sampler_params p;
		struct veil_sampler *s;
		int obs[NV] = {0};
		double chi;

		veil_sampler_params_default(&p);
		p.temperature = temps[t];
		p.seed = 1000 + (uint64_t)t;
		s = mk(&p, NV);
		for (int i = 0; i < N; i++)
			obs[pick(s, l, NV)]++;
		veil_sampler_free(s);
		chi = chi_square(l, NV, temps[t], obs, N);
		/* df = 7: P(chi2 > 24.32) = 0.001.  Fixed seed: deterministic. */
		assert_true(chi < 24.32);
		/* and a wrong temperature would be far off */
		assert_true(chi_square(l, NV, temps[t] * 1.3f, obs, N) > 100.0);
	}
}

/* ---- truncation --------------------------------------------------------- */

static void test_top_k_keeps_only_k_best(void **state)
{
	enum { NV = 300 };
	float l[NV];
	struct veil_sampler_params p;
	struct veil_sampler *s;
	int seen[NV] = {0};

	(void)state;
	for (int i = 0; i < NV; i++)
		l[i] = (float)((i * 37) % NV) / 100.0f;   /* a permutation */
	veil_sampler_params_default(&p);
	p.top_k = 5;
	p.temperature = 3.0f;
	p.seed = 3;
	s = mk(&p, NV);
	for (int i = 0; i < 5000; i++)
		seen[pick(s, l, NV)]++;
	veil_sampler_free(s);
	for (int i = 0; i < NV; i++) {
		bool top5 = l[i] >= (float)(NV - 5) / 100.0f;

		if (top5)
			assert_true(seen[i] > 0);
		else
			assert_int_equal(seen[i], 0);
	}
}

static void test_top_p_excludes_tail(void **state)
{
	/* probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.75 keeps {0, 1} */
	const float l[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
	struct veil_sampler_params p;
	struct veil_sampler *s;
	int seen[4] = {0};

	(void)state;
	veil_sampler_params_default(&p);
	p.top_p = 0.75f;
	p.seed = 9;
	s = mk(&p, 4);
	for (int i = 0; i < 4000; i++)
		seen[pick(s, l, 4)]++;
	veil_sampler_free(s);
	assert_true(seen[0] > 0 && seen[1] > 0);
	assert_int_equal(seen[2], 0);
	assert_int_equal(seen[3], 0);
	/* renormalised 0.5 : 0.3 -> 62.5% token 0 */
	assert_true(fabs(seen[0] / 4000.0 - 0.625) < 0.03);
}

static void test_top_p_over_large_flat_vocab_keeps_lowest_ids(void **state)
{
	/* 5000 equal logits: ties order by id, top_p 0.3 keeps ids < 1500.
	 * Needs more than the first 64/128/... prefix rounds. */
	enum { NV = 5000 };
	float *l = calloc(NV, sizeof(*l));
	struct veil_sampler_params p;
	struct veil_sampler *s;
	int32_t hi = 0;

	(void)state;
	assert_non_null(l);
	veil_sampler_params_default(&p);
	p.top_p = 0.3f;
	p.seed = 11;
	s = mk(&p, NV);
	for (int i = 0; i < 3000; i++) {
		int32_t id = pick(s, l, NV);

		assert_true(id <= 1500);
		hi = id > hi ? id : hi;
	}
	assert_true(hi > 1000);
	veil_sampler_free(s);
	free(l);
}

static void test_top_p_zero_keeps_only_best(void **state)
{
	const float l[4] = {0.0f, 0.1f, 0.05f, 0.1f};
	struct veil_sampler_params p;
	struct veil_sampler *s;

	(void)state;
	veil_sampler_params_default(&p);
	p.top_p = 0.0f;
	s = mk(&p, 4);
	for (int i = 0; i < 100; i++)
		assert_int_equal(pick(s, l, 4), 1);
	veil_sampler_free(s);
}

static void test_min_p_excludes_tokens_below_fraction_of_best(void **state)
{
	/* 0.6, 0.3, 0.05, 0.05: min_p 0.1 -> threshold 0.06 keeps {0, 1} */
	const float l[4] = {logf(0.6f), logf(0.3f), logf(0.05f), logf(0.05f)};
	struct veil_sampler_params p;
	struct veil_sampler *s;
	int seen[4] = {0};

	(void)state;
	veil_sampler_params_default(&p);
	p.min_p = 0.1f;
	p.seed = 5;
	s = mk(&p, 4);
	for (int i = 0; i < 3000; i++)
		seen[pick(s, l, 4)]++;
	veil_sampler_free(s);
	assert_true(seen[0] > 0 && seen[1] > 0);
	assert_int_equal(seen[2] + seen[3], 0);
}

/* ---- penalties ---------------------------------------------------------- */

static void test_repeat_penalty_divides_positive_logit(void **state)
{
	struct veil_sampler_params p = greedy_params();
	struct veil_sampler *s;
	const float l[3] = {2.0f, 1.9f, 0.0f};

	(void)state;
	p.repeat_penalty = 1.5f;   /* 2.0 / 1.5 = 1.33 < 1.9 */
	s = mk(&p, 3);
	assert_int_equal(pick(s, l, 3), 0);
	veil_sampler_accept(s, 0);
	assert_int_equal(pick(s, l, 3), 1);
	veil_sampler_reset(s);
	assert_int_equal(pick(s, l, 3), 0);
	veil_sampler_free(s);
}

static void test_repeat_penalty_multiplies_negative_logit(void **state)
{
	struct veil_sampler_params p = greedy_params();
	struct veil_sampler *s;
	const float l[3] = {-1.0f, -1.2f, -5.0f};

	(void)state;
	p.repeat_penalty = 1.5f;   /* -1.0 * 1.5 = -1.5 < -1.2 */
	s = mk(&p, 3);
	veil_sampler_accept(s, 0);
	assert_int_equal(pick(s, l, 3), 1);
	veil_sampler_free(s);
}

static void test_frequency_penalty_scales_with_count(void **state)
{
	struct veil_sampler_params p = greedy_params();
	struct veil_sampler *s;
	const float l[2] = {1.0f, 0.0f};

	(void)state;
	p.frequency_penalty = 0.4f;
	s = mk(&p, 2);
	veil_sampler_accept(s, 0);
	veil_sampler_accept(s, 0);
	assert_int_equal(pick(s, l, 2), 0);   /* 1.0 - 0.8 = 0.2 > 0 */
	veil_sampler_accept(s, 0);
	assert_int_equal(pick(s, l, 2), 1);   /* 1.0 - 1.2 < 0 */
	veil_sampler_free(s);
}

static void test_presence_penalty_is_flat(void **state)
{
	struct veil_sampler_params p = greedy_params();
	struct veil_sampler *s;
	const float l[3] = {1.0f, 0.5f, 0.0f};

	(void)state;
	p.presence_penalty = 0.6f;
	s = mk(&p, 3);
	veil_sampler_accept(s, 0);
	assert_int_equal(pick(s, l, 3), 1);   /* 0.4 < 0.5 */
	for (int i = 0; i < 10; i++)
		veil_sampler_accept(s, 1);
	/* 0: 0.4, 1: 0.5 - 0.6 = -0.1, 2: 0 */
	assert_int_equal(pick(s, l, 3), 0);
	veil_sampler_free(s);
}

static void test_penalty_window_forgets_old_tokens(void **state)
{
	struct veil_sampler_params p = greedy_params();
	struct veil_sampler *s;
	const float l[4] = {2.0f, 1.9f, -9.0f, -9.0f};

	(void)state;
	p.repeat_penalty = 2.0f;
	p.repeat_last_n = 2;
	s = mk(&p, 4);
	veil_sampler_accept(s, 0);
	assert_int_equal(pick(s, l, 4), 1);
	veil_sampler_accept(s, 2);
	veil_sampler_accept(s, 3);   /* 0 leaves the window */
	assert_int_equal(pick(s, l, 4), 0);
	veil_sampler_free(s);
}

static void test_penalty_whole_history_remembers_everything(void **state)
{
	struct veil_sampler_params p = greedy_params();
	struct veil_sampler *s;
	const float l[4] = {2.0f, 1.9f, -9.0f, -9.0f};

	(void)state;
	p.repeat_penalty = 2.0f;
	p.repeat_last_n = -1;
	s = mk(&p, 4);
	veil_sampler_accept(s, 0);
	for (int i = 0; i < 500; i++)
		veil_sampler_accept(s, 2 + i % 2);
	assert_int_equal(pick(s, l, 4), 1);
	veil_sampler_free(s);
}

static void test_penalties_do_not_change_reported_logprob(void **state)
{
	struct veil_sampler_params p = greedy_params();
	struct veil_sampler *s;
	float l[2] = {1.0f, 0.0f};
	struct veil_logprob c;
	double lse = log(exp(1.0) + 1.0);

	(void)state;
	p.presence_penalty = 2.0f;
	s = mk(&p, 2);
	veil_sampler_accept(s, 0);
	assert_int_equal(veil_sampler_sample(s, l, &c, NULL, 0), 0);
	assert_int_equal(c.id, 1);
	assert_true(fabs(c.logprob - (0.0 - lse)) < 1e-5);
	veil_sampler_free(s);
}

/* ---- logprobs ----------------------------------------------------------- */

static void test_logprobs_sum_to_one_and_chosen_is_log_softmax(void **state)
{
	enum { NV = 50 };
	float l[NV], raw[NV];
	struct veil_logprob top[NV], c;
	struct veil_sampler_params p;
	struct veil_sampler *s;
	double z = 0.0, sum = 0.0, lse;

	(void)state;
	for (int i = 0; i < NV; i++)
		raw[i] = sinf((float)i * 0.7f) * 4.0f;
	for (int i = 0; i < NV; i++)
		z += exp(raw[i]);
	lse = log(z);
	veil_sampler_params_default(&p);
	p.temperature = 0.5f;
	p.top_k = 10;
	p.seed = 77;
	s = mk(&p, NV);
	for (int rep = 0; rep < 20; rep++) {
		memcpy(l, raw, sizeof(l));
		assert_int_equal(veil_sampler_sample(s, l, &c, top, NV), 0);
		sum = 0.0;
		for (int i = 0; i < NV; i++) {
			sum += exp(top[i].logprob);
			if (i > 0)
				assert_true(top[i - 1].logprob >= top[i].logprob);
			assert_true(fabs(top[i].logprob - (raw[top[i].id] - lse)) < 1e-4);
		}
		assert_true(fabs(sum - 1.0) < 1e-4);
		assert_true(fabs(c.logprob - (raw[c.id] - lse)) < 1e-4);
	}
	veil_sampler_free(s);
}

static void test_top_logprobs_are_best_first_with_id_ties(void **state)
{
	struct veil_sampler_params p = greedy_params();
	struct veil_sampler *s = mk(&p, 6);
	float l[6] = {0.0f, 3.0f, 1.0f, 3.0f, 2.0f, -1.0f};
	struct veil_logprob top[3], c;
	struct veil_logprob too_many[7];

	(void)state;
	assert_int_equal(veil_sampler_sample(s, l, &c, top, 3), 0);
	assert_int_equal(top[0].id, 1);
	assert_int_equal(top[1].id, 3);
	assert_int_equal(top[2].id, 4);
	assert_true(top[0].logprob == top[1].logprob);
	assert_int_equal(c.id, 1);
	assert_int_equal(veil_sampler_sample(s, l, &c, too_many, 7), VEIL_EINVAL);
	veil_sampler_free(s);
}

static void test_large_vocab_sampling_works(void **state)
{
	enum { NV = 256000 };
	float *raw = malloc(NV * sizeof(*raw)), *l = malloc(NV * sizeof(*l));
	struct veil_sampler_params p;
	struct veil_sampler *s;
	struct veil_logprob c, top[20];
	uint64_t x = 99;

	(void)state;
	assert_non_null(raw);
	assert_non_null(l);
	for (int i = 0; i < NV; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		raw[i] = (float)((x >> 33) % 20000) / 1000.0f - 10.0f;
	}
	veil_sampler_params_default(&p);
	p.top_p = 0.9f;
	p.min_p = 0.01f;
	p.repeat_penalty = 1.1f;
	p.seed = 1;
	s = mk(&p, NV);
	for (int i = 0; i < 20; i++) {
		memcpy(l, raw, NV * sizeof(*l));
		assert_int_equal(veil_sampler_sample(s, l, &c, top, 20), 0);
		/* min_p 0.01 keeps only tokens within log(100) of the best
		 * (penalised) logit; penalties of 1.1 move it by < 1 */
		assert_true(raw[c.id] >= raw[top[0].id] - logf(100.0f) - 1.0f);
		veil_sampler_accept(s, c.id);
	}
	veil_sampler_free(s);
	free(raw);
	free(l);
}

/* ---- stopper ------------------------------------------------------------ */

static bool valid_utf8(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t b = p[i];
		size_t k;
		uint32_t cp;

		if (b < 0x80) {
			i++;
			continue;
		}
		if (b >= 0xC2 && b <= 0xDF) {
			k = 1;
			cp = b & 0x1F;
		} else if (b >= 0xE0 && b <= 0xEF) {
			k = 2;
			cp = b & 0x0F;
		} else if (b >= 0xF0 && b <= 0xF4) {
			k = 3;
			cp = b & 0x07;
		} else {
			return false;
		}
		if (i + k >= n)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + j] & 0x3F);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += k + 1;
	}
	return true;
}

static struct veil_stopper *mk_stop(const char *const *stops, size_t n)
{
	struct veil_stopper *st = NULL;

	assert_int_equal(veil_stopper_new(stops, n, &st), 0);
	return st;
}

static void test_stopper_rejects_bad_stop_lists(void **state)
{
	const char *five[5] = {"a", "b", "c", "d", "e"};
	const char *empty[1] = {""};
	char longs[VEIL_STOP_MAX_LEN + 2];
	const char *lp[1] = {longs};
	struct veil_stopper *st = NULL;

	(void)state;
	memset(longs, 'x', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = 0;
	assert_int_equal(veil_stopper_new(five, 5, &st), VEIL_EINVAL);
	assert_int_equal(veil_stopper_new(empty, 1, &st), VEIL_EINVAL);
	assert_int_equal(veil_stopper_new(lp, 1, &st), VEIL_EINVAL);
	longs[VEIL_STOP_MAX_LEN] = 0;
	assert_int_equal(veil_stopper_new(lp, 1, &st), 0);
	veil_stopper_free(st);
}

static void test_stopper_holds_possible_stop_prefix(void **state)
{
	const char *stops[1] = {"STOP"};
	struct veil_stopper *st = mk_stop(stops, 1);
	struct veil_buf e = VEIL_BUF_INIT(1024);
	bool stopped = true;

	(void)state;
	assert_int_equal(veil_stopper_feed(st, "Hello S", 7, &e, &stopped), 0);
	assert_false(stopped);
	assert_string_equal((char *)e.data, "Hello ");
	assert_int_equal(veil_stopper_feed(st, "T", 1, &e, &stopped), 0);
	assert_string_equal((char *)e.data, "Hello ");
	assert_int_equal(veil_stopper_feed(st, "x", 1, &e, &stopped), 0);
	assert_false(stopped);
	assert_string_equal((char *)e.data, "Hello STx");
	assert_int_equal(veil_stopper_feed(st, " ST", 3, &e, &stopped), 0);
	assert_int_equal(veil_stopper_feed(st, "OP and more", 11, &e, &stopped), 0);
	assert_true(stopped);
	assert_true(veil_stopper_stopped(st));
	assert_int_equal(veil_stopper_which(st), 0);
	assert_string_equal((char *)e.data, "Hello STx ");
	assert_int_equal(veil_stopper_feed(st, "more", 4, &e, &stopped), 0);
	assert_true(stopped);
	assert_int_equal(veil_stopper_flush(st, &e), 0);
	assert_string_equal((char *)e.data, "Hello STx ");
	veil_buf_free(&e);
	veil_stopper_free(st);
}

static void test_stopper_holds_split_utf8_until_complete(void **state)
{
	struct veil_stopper *st = mk_stop(NULL, 0);
	struct veil_buf e = VEIL_BUF_INIT(1024);
	bool stopped;

	(void)state;
	assert_int_equal(veil_stopper_feed(st, "a\xF0\x9F", 3, &e, &stopped), 0);
	assert_string_equal((char *)e.data, "a");
	assert_int_equal(veil_stopper_feed(st, "\x98", 1, &e, &stopped), 0);
	assert_string_equal((char *)e.data, "a");
	assert_int_equal(veil_stopper_feed(st, "\x80!", 2, &e, &stopped), 0);
	assert_string_equal((char *)e.data, "a\xF0\x9F\x98\x80!");
	assert_false(stopped);
	veil_buf_free(&e);
	veil_stopper_free(st);
}

static void test_stopper_flush_replaces_incomplete_utf8(void **state)
{
	const char *stops[1] = {"zzz"};
	struct veil_stopper *st = mk_stop(stops, 1);
	struct veil_buf e = VEIL_BUF_INIT(1024);
	bool stopped;

	(void)state;
	assert_int_equal(veil_stopper_feed(st, "ok zz\xE2\x82", 7, &e, &stopped), 0);
	assert_string_equal((char *)e.data, "ok zz");
	assert_int_equal(veil_stopper_flush(st, &e), 0);
	assert_string_equal((char *)e.data, "ok zz\xEF\xBF\xBD");
	veil_buf_free(&e);
	veil_stopper_free(st);
}

static void test_stopper_replaces_invalid_bytes(void **state)
{
	struct veil_stopper *st = mk_stop(NULL, 0);
	struct veil_buf e = VEIL_BUF_INIT(1024);
	bool stopped;

	(void)state;
	/* stray continuation, overlong C0, surrogate ED A0, truncated E2 82 */
	assert_int_equal(veil_stopper_feed(st, "a\x80" "b\xC0\xAF" "c\xED\xA0\x80"
					   "d\xE2\x82" "e", 13, &e, &stopped), 0);
	assert_int_equal(veil_stopper_flush(st, &e), 0);
	assert_string_equal((char *)e.data,
			    "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD"
			    "c\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
			    "d\xEF\xBF\xBD" "e");
	veil_buf_free(&e);
	veil_stopper_free(st);
}

static void test_stopper_first_completed_stop_wins(void **state)
{
	const char *stops[2] = {"abcd", "bc"};
	const char *text = "xabcd";
	size_t n = strlen(text);

	(void)state;
	/* whatever the split, "bc" completes before "abcd" */
	for (size_t cut = 0; cut <= n; cut++) {
		struct veil_stopper *st = mk_stop(stops, 2);
		struct veil_buf e = VEIL_BUF_INIT(64);
		bool stopped = false;

		assert_int_equal(veil_stopper_feed(st, text, cut, &e, &stopped), 0);
		if (!stopped)
			assert_int_equal(veil_stopper_feed(st, text + cut, n - cut, &e,
							   &stopped), 0);
		assert_true(stopped);
		assert_int_equal(veil_stopper_which(st), 1);
		assert_string_equal((char *)e.data, "xa");
		veil_buf_free(&e);
		veil_stopper_free(st);
	}
}

static void test_stopper_every_split_of_sample_text(void **state)
{
	const char *stops[3] = {"\n\nUser:", "\xC3\xB6r", "END"};
	const char *text = "Gr\xC3\xBC\xC3\x9F \xF0\x9F\x98\x80 w\xC3\xB6"
			   "lk\n\nUse\xE2\x82\xAC Fin\xC3\xB6rEND tail";
	const char *expect = "Gr\xC3\xBC\xC3\x9F \xF0\x9F\x98\x80 w\xC3\xB6"
			     "lk\n\nUse\xE2\x82\xAC Fin";
	size_t n = strlen(text);

	(void)state;
	/* every split into three pieces */
	for (size_t a = 0; a <= n; a++) {
		for (size_t b = a; b <= n; b++) {
			struct veil_stopper *st = mk_stop(stops, 3);
			struct veil_buf e = VEIL_BUF_INIT(256);
			size_t cuts[4] = {0, a, b, n};
			bool stopped = false;

			for (int k = 0; k < 3 && !stopped; k++) {
				assert_int_equal(veil_stopper_feed(st, text + cuts[k],
								   cuts[k + 1] - cuts[k],
								   &e, &stopped), 0);
				/* what was emitted is valid UTF-8 and a prefix
				 * of the answer: no stop byte ever leaks */
				assert_true(e.len == 0 || valid_utf8(e.data, e.len));
				assert_true(e.len <= strlen(expect));
				assert_memory_equal(e.data ? (const char *)e.data : "",
						    expect, e.len);
			}
			assert_true(stopped);
			assert_int_equal(veil_stopper_which(st), 1);
			assert_int_equal(veil_stopper_flush(st, &e), 0);
			assert_string_equal((char *)e.data, expect);
			veil_buf_free(&e);
			veil_stopper_free(st);
		}
	}
}

static void test_stopper_emits_as_soon_as_safe(void **state)
{
	const char *stops[1] = {"\n\nUser:"};
	const char *text = "one\ntwo\n\nUsx";
	size_t n = strlen(text);
	struct veil_stopper *st = mk_stop(stops, 1);
	struct veil_buf e = VEIL_BUF_INIT(256);
	bool stopped;
	/* bytes emitted after feeding text[0..i] one at a time */
	const size_t want[] = {1, 2, 3, 3, 5, 6, 7, 7, 7, 7, 7, 12};

	(void)state;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(veil_stopper_feed(st, text + i, 1, &e, &stopped), 0);
		assert_int_equal(e.len, want[i]);
	}
	assert_int_equal(veil_stopper_flush(st, &e), 0);
	assert_string_equal((char *)e.data, text);
	veil_buf_free(&e);
	veil_stopper_free(st);
}

static void test_stopper_handles_pieces_larger_than_a_chunk(void **state)
{
	const char *stops[1] = {"<END>"};
	size_t n = 20000;
	char *big = malloc(n + 1);
	struct veil_stopper *st = mk_stop(stops, 1);
	struct veil_buf e = VEIL_BUF_INIT(1 << 20);
	bool stopped;

	(void)state;
	assert_non_null(big);
	memset(big, 'a', n);
	memcpy(big + 4094, "<END>", 5);   /* straddles the 4096 chunk edge */
	big[n] = 0;
	assert_int_equal(veil_stopper_feed(st, big, n, &e, &stopped), 0);
	assert_true(stopped);
	assert_int_equal(e.len, 4094);
	free(big);
	veil_buf_free(&e);
	veil_stopper_free(st);
}

static void test_stopper_reports_full_output_buffer(void **state)
{
	struct veil_stopper *st = mk_stop(NULL, 0);
	struct veil_buf e = VEIL_BUF_INIT(4);
	bool stopped;

	(void)state;
	assert_int_equal(veil_stopper_feed(st, "abcdefgh", 8, &e, &stopped),
			 VEIL_ERANGE);
	assert_int_equal(veil_stopper_feed(st, "a", 1, &e, &stopped), VEIL_EINVAL);
	veil_buf_free(&e);
	veil_stopper_free(st);
}

/* veil_sampler_pick must choose exactly what veil_sampler_sample chooses
 * (same chain, same random draws) for every parameter mix, including ties,
 * infinities and NaN, over several steps of accepted history. */
static void test_pick_equals_sample_over_random_cases(void **state)
{
	enum { NV = 97, CASES = 600, STEPS = 3 };
	uint64_t x = 0x243f6a8885a308d3ull;
	float a[NV], b[NV];

	(void)state;
	for (int c = 0; c < CASES; c++) {
		struct veil_sampler_params p;
		struct veil_sampler *s1 = NULL, *s2 = NULL;

		veil_sampler_params_default(&p);
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		p.seed = x;
		switch (c % 6) {
		case 0: p.temperature = 0; break;
		case 1: p.top_k = 1; p.temperature = 0.9f; break;
		case 2: p.temperature = 0.7f; p.top_k = 5; p.top_p = 0.9f; break;
		case 3: p.temperature = 1.3f; p.min_p = 0.05f; break;
		case 4: p.temperature = 0; p.repeat_penalty = 1.3f;
			p.frequency_penalty = 0.4f; p.presence_penalty = 0.2f; break;
		default: p.temperature = 1.0f; break;
		}
		assert_int_equal(veil_sampler_new(&p, NV, &s1), 0);
		assert_int_equal(veil_sampler_new(&p, NV, &s2), 0);
		for (int t = 0; t < STEPS; t++) {
			struct veil_logprob chosen;
			int32_t id;

			for (int i = 0; i < NV; i++) {
				x = x * 6364136223846793005ull + 1442695040888963407ull;
				a[i] = (float)((x >> 40) % 64) / 8.0f - 4.0f; /* many ties */
			}
			if (c % 5 == 0)
				a[(c + t) % NV] = INFINITY;
			if (c % 7 == 0)
				a[(c * 3 + t) % NV] = NAN;
			if (c % 11 == 0)
				a[(c + 2 * t) % NV] = -INFINITY;
			memcpy(b, a, sizeof(a));
			assert_int_equal(veil_sampler_sample(s1, a, &chosen, NULL, 0), 0);
			assert_int_equal(veil_sampler_pick(s2, b, &id), 0);
			assert_int_equal(chosen.id, id);
			veil_sampler_accept(s1, id);
			veil_sampler_accept(s2, id);
		}
		veil_sampler_free(s1);
		veil_sampler_free(s2);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_are_documented_values),
		cmocka_unit_test(test_new_rejects_out_of_range_params),
		cmocka_unit_test(test_greedy_picks_argmax),
		cmocka_unit_test(test_greedy_breaks_ties_to_lowest_id),
		cmocka_unit_test(test_tiny_temperature_is_greedy),
		cmocka_unit_test(test_top_k_1_equals_greedy_at_any_temperature),
		cmocka_unit_test(test_nan_logits_are_never_chosen_and_all_nan_is_error),
		cmocka_unit_test(test_same_seed_gives_same_sequence),
		cmocka_unit_test(test_different_seed_gives_different_sequence),
		cmocka_unit_test(test_reset_replays_the_same_sequence),
		cmocka_unit_test(test_temperature_frequencies_match_softmax),
		cmocka_unit_test(test_top_k_keeps_only_k_best),
		cmocka_unit_test(test_top_p_excludes_tail),
		cmocka_unit_test(test_top_p_over_large_flat_vocab_keeps_lowest_ids),
		cmocka_unit_test(test_top_p_zero_keeps_only_best),
		cmocka_unit_test(test_min_p_excludes_tokens_below_fraction_of_best),
		cmocka_unit_test(test_repeat_penalty_divides_positive_logit),
		cmocka_unit_test(test_repeat_penalty_multiplies_negative_logit),
		cmocka_unit_test(test_frequency_penalty_scales_with_count),
		cmocka_unit_test(test_presence_penalty_is_flat),
		cmocka_unit_test(test_penalty_window_forgets_old_tokens),
		cmocka_unit_test(test_penalty_whole_history_remembers_everything),
		cmocka_unit_test(test_penalties_do_not_change_reported_logprob),
		cmocka_unit_test(test_logprobs_sum_to_one_and_chosen_is_log_softmax),
		cmocka_unit_test(test_top_logprobs_are_best_first_with_id_ties),
		cmocka_unit_test(test_large_vocab_sampling_works),
		cmocka_unit_test(test_stopper_rejects_bad_stop_lists),
		cmocka_unit_test(test_stopper_holds_possible_stop_prefix),
		cmocka_unit_test(test_stopper_holds_split_utf8_until_complete),
		cmocka_unit_test(test_stopper_flush_replaces_incomplete_utf8),
		cmocka_unit_test(test_stopper_replaces_invalid_bytes),
		cmocka_unit_test(test_stopper_first_completed_stop_wins),
		cmocka_unit_test(test_stopper_every_split_of_sample_text),
		cmocka_unit_test(test_stopper_emits_as_soon_as_safe),
		cmocka_unit_test(test_stopper_handles_pieces_larger_than_a_chunk),
		cmocka_unit_test(test_stopper_reports_full_output_buffer),
		cmocka_unit_test(test_pick_equals_sample_over_random_cases),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
