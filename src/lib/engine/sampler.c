/* Token sampler: penalties -> top_k -> top_p -> min_p -> temperature ->
 * random pick, as llama.cpp's default chain (see include/veil/sampler.h). */
#include "veil/sampler.h"
#include "ops.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct cand {
	float logit;
	int32_t id;
};

struct veil_sampler {
	struct veil_sampler_params p;
	int32_t n_vocab;
	uint64_t rng[4];
	/* Penalty state (counts, ring, seen, saved) exists only when the
	 * parameters turn penalties on; the chain's scratch (cand, w, hist)
	 * is made on first need (scratch()): a greedy request without
	 * penalties, the common case of a busy node, needs none of it
	 * (768 KiB at a 49k vocabulary, made and freed per request). */
	int32_t *counts;   /* occurrences of each token inside the window */
	int32_t *ring;     /* last repeat_last_n tokens (windowed mode) */
	int32_t ring_len;
	int32_t ring_pos;
	int32_t *seen;     /* whole-history mode: distinct tokens, first seen */
	int32_t n_seen;
	struct cand *cand; /* n_vocab scratch for the chain */
	float *w;          /* n_vocab scratch: exp weights */
	struct cand *saved;/* raw logits of penalised tokens (one step) */
	int32_t n_saved;
	double *hist;      /* TOP_P_BUCKETS: mass per logit bucket (top_p) */
};

/* top_p buckets the candidates by distance to the best logit: TOP_P_BUCKETS
 * buckets over TOP_P_RANGE nats (exp(-32) ~ 1e-14: the last bucket holds
 * the negligible rest). */
#define TOP_P_BUCKETS 4096
#define TOP_P_RANGE 32.0f

/* ---- fast exp ----------------------------------------------------------- */

/* exp(x) for x <= 0 within ~2 ulp (Cephes expf: x = n ln2 + r, degree-6
 * polynomial for e^r, 2^n built in the exponent bits); 0 below -87.
 * Branch-free so the loops that call it vectorize. */
static inline float fexp(float x)
{
	const float log2e = 1.44269504088896341f, c1 = 0.693359375f,
		    c2 = -2.12194440e-4f, magic = 12582912.0f; /* 1.5 * 2^23 */
	float xc = x < -87.0f ? -87.0f : x;
	float n = (xc * log2e + magic) - magic;  /* round to nearest */
	float r = xc - n * c1 - n * c2;
	float q = 1.9875691500e-4f;
	union { uint32_t u; float f; } two_n;

	q = q * r + 1.3981999507e-3f;
	q = q * r + 8.3334519073e-3f;
	q = q * r + 4.1665795894e-2f;
	q = q * r + 1.6666665459e-1f;
	q = q * r + 5.0000001201e-1f;
	q = q * r * r + r + 1.0f;
	two_n.u = (uint32_t)((int32_t)n + 127) << 23;
	return x < -87.0f ? 0.0f : q * two_n.f;
}

/* ---- full-vocabulary passes, vectorised ----------------------------------
 * gcc -O2 does not vectorise loops of unknown length, and these run over up
 * to 256k logits per token, so they use GCC/clang vector extensions (4
 * lanes: one SSE/NEON register, no ISA flags needed).  Lanes compute exactly
 * what the scalar code computes, element by element. */

typedef float vf __attribute__((vector_size(16)));
typedef int32_t vi __attribute__((vector_size(16)));
#define VL 4

static inline vf vload(const float *p)
{
	vf v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline void vstore(float *p, vf v)
{
	memcpy(p, &v, sizeof(v));
}

static inline vf vsplat(float x)
{
	return (vf){x, x, x, x};
}

/* m ? a : b, lane by lane (m lanes are 0 or -1) */
static inline vf vsel(vi m, vf a, vf b)
{
	return (vf)((m & (vi)a) | (~m & (vi)b));
}

static inline float vhmax(vf v)
{
	float m = v[0];

	for (int k = 1; k < VL; k++)
		m = v[k] > m ? v[k] : m;
	return m;
}

/* fexp() on VL lanes. */
static inline vf vexp(vf x)
{
	vi under = x < vsplat(-87.0f);
	vf xc = vsel(under, vsplat(-87.0f), x);
	vf n = (xc * vsplat(1.44269504088896341f) + vsplat(12582912.0f)) -
	       vsplat(12582912.0f);
	vf r = xc - n * vsplat(0.693359375f) - n * vsplat(-2.12194440e-4f);
	vf q = vsplat(1.9875691500e-4f);
	vi e;

	q = q * r + vsplat(1.3981999507e-3f);
	q = q * r + vsplat(8.3334519073e-3f);
	q = q * r + vsplat(4.1665795894e-2f);
	q = q * r + vsplat(1.6666665459e-1f);
	q = q * r + vsplat(5.0000001201e-1f);
	q = q * r * r + r + vsplat(1.0f);
	e = (__builtin_convertvector(n, vi) + 127) << 23;
	return vsel(under, vsplat(0.0f), q * (vf)e);
}

/* NaN -> -inf and +inf -> FLT_MAX in place; returns the maximum. */
static float sanitize_max(float *l, size_t n)
{
	vf m = vsplat(-INFINITY);
	float mx;
	size_t i;

	for (i = 0; i + VL <= n; i += VL) {
		vf v = vload(l + i);

		v = vsel(v == v, v, vsplat(-INFINITY));
		v = vsel(v == vsplat(INFINITY), vsplat(FLT_MAX), v);
		vstore(l + i, v);
		m = vsel(v > m, v, m);
	}
	mx = vhmax(m);
	for (; i < n; i++) {
		if (isnan(l[i]))
			l[i] = -INFINITY;
		else if (l[i] == INFINITY)
			l[i] = FLT_MAX;
		mx = l[i] > mx ? l[i] : mx;
	}
	return mx;
}

static float max_of(const float *l, size_t n)
{
	vf m = vsplat(-INFINITY);
	float mx;
	size_t i;

	for (i = 0; i + VL <= n; i += VL) {
		vf v = vload(l + i);

		m = vsel(v > m, v, m);
	}
	mx = vhmax(m);
	for (; i < n; i++)
		mx = l[i] > mx ? l[i] : mx;
	return mx;
}

/* w[i] = exp((l[i] - mx) * scale) (l and w may be the same array); returns
 * the sum, added in float within blocks of 256 and in double across them. */
static double exp_weights(const float *l, size_t n, float mx, float scale,
			  float *w)
{
	double z = 0.0;
	size_t i = 0;

	while (i + VL <= n) {
		vf acc = vsplat(0.0f);

		for (int k = 0; k < 64 && i + VL <= n; k++, i += VL) {
			vf v = vexp((vload(l + i) - vsplat(mx)) * vsplat(scale));

			vstore(w + i, v);
			acc += v;
		}
		for (int k = 0; k < VL; k++)
			z += (double)acc[k];
	}
	for (; i < n; i++) {
		w[i] = fexp((l[i] - mx) * scale);
		z += (double)w[i];
	}
	return z;
}

/* ---- PRNG: xoshiro256** seeded by splitmix64 ---------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
	uint64_t r = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return r;
}

static void rng_seed(struct veil_sampler *s)
{
	uint64_t x = s->p.seed;

	for (int i = 0; i < 4; i++)
		s->rng[i] = splitmix64(&x);
}

/* Uniform double in [0, 1) with 53 random bits. */
static double rng_uniform(struct veil_sampler *s)
{
	return (double)(xoshiro_next(s->rng) >> 11) * 0x1.0p-53;
}

/* ---- parameters --------------------------------------------------------- */

void veil_sampler_params_default(struct veil_sampler_params *p)
{
	memset(p, 0, sizeof(*p));
	p->temperature = 1.0f;
	p->top_k = 0;
	p->top_p = 1.0f;
	p->min_p = 0.0f;
	p->seed = 0;
	p->repeat_penalty = 1.0f;
	p->repeat_last_n = 64;
	p->frequency_penalty = 0.0f;
	p->presence_penalty = 0.0f;
}

int veil_sampler_params_check(const struct veil_sampler_params *p)
{
	if (!p)
		return veil_errf(VEIL_EINVAL, "sampler: no parameters");
	if (!(p->temperature >= 0.0f) || isinf(p->temperature))
		return veil_errf(VEIL_EINVAL, "sampler: temperature %g out of range",
				 (double)p->temperature);
	if (p->top_k < 0)
		return veil_errf(VEIL_EINVAL, "sampler: top_k %d < 0", (int)p->top_k);
	if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
		return veil_errf(VEIL_EINVAL, "sampler: top_p %g not in [0, 1]",
				 (double)p->top_p);
	if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
		return veil_errf(VEIL_EINVAL, "sampler: min_p %g not in [0, 1]",
				 (double)p->min_p);
	if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty))
		return veil_errf(VEIL_EINVAL, "sampler: repeat_penalty %g must be > 0",
				 (double)p->repeat_penalty);
	if (p->repeat_last_n < -1)
		return veil_errf(VEIL_EINVAL, "sampler: repeat_last_n %d < -1",
				 (int)p->repeat_last_n);
	if (!isfinite(p->frequency_penalty))
		return veil_errf(VEIL_EINVAL, "sampler: frequency_penalty not finite");
	if (!isfinite(p->presence_penalty))
		return veil_errf(VEIL_EINVAL, "sampler: presence_penalty not finite");
	return 0;
}

/* ---- lifetime and history ----------------------------------------------- */

static bool penalties_on(const struct veil_sampler_params *p)
{
	return p->repeat_last_n != 0 &&
	       (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f ||
		p->presence_penalty != 0.0f);
}

int veil_sampler_new(const struct veil_sampler_params *p, int32_t n_vocab,
		     struct veil_sampler **out)
{
	struct veil_sampler *s = NULL;
	size_t nv = (size_t)n_vocab;
	int rc;

	if (!out)
		return veil_errf(VEIL_EINVAL, "sampler: no out pointer");
	if ((rc = veil_sampler_params_check(p)) < 0)
		return rc;
	if (n_vocab <= 0)
		return veil_errf(VEIL_EINVAL, "sampler: n_vocab %d <= 0", (int)n_vocab);
	s = calloc(1, sizeof(*s));
	if (!s)
		return VEIL_ENOMEM;
	s->p = *p;
	s->n_vocab = n_vocab;
	if (!penalties_on(p)) {
		rng_seed(s);
		*out = s;
		return 0;
	}
	s->counts = calloc(nv, sizeof(*s->counts));
	if (!s->counts)
		goto nomem;
	if (p->repeat_last_n > 0) {
		s->ring = malloc((size_t)p->repeat_last_n * sizeof(*s->ring));
		if (!s->ring)
			goto nomem;
		s->saved = malloc((size_t)p->repeat_last_n * sizeof(*s->saved));
		if (!s->saved)
			goto nomem;
	} else if (p->repeat_last_n < 0) {
		s->seen = malloc(nv * sizeof(*s->seen));
		s->saved = malloc(nv * sizeof(*s->saved));
		if (!s->seen || !s->saved)
			goto nomem;
	}
	rng_seed(s);
	*out = s;
	return 0;
nomem:
	veil_sampler_free(s);
	return VEIL_ENOMEM;
}

void veil_sampler_free(struct veil_sampler *s)
{
	if (!s)
		return;
	free(s->counts);
	free(s->ring);
	free(s->seen);
	free(s->cand);
	free(s->w);
	free(s->hist);
	free(s->saved);
	free(s);
}

/* The chain's scratch, made on first need.  VEIL_ENOMEM. */
static int scratch(struct veil_sampler *s)
{
	size_t nv = (size_t)s->n_vocab;

	if (s->cand)
		return 0;
	s->w = malloc(nv * sizeof(*s->w));
	s->hist = malloc(TOP_P_BUCKETS * sizeof(*s->hist));
	s->cand = malloc(nv * sizeof(*s->cand));
	if (!s->cand || !s->w || !s->hist) {
		free(s->cand);
		free(s->w);
		free(s->hist);
		s->cand = NULL;
		s->w = NULL;
		s->hist = NULL;
		return VEIL_ENOMEM;
	}
	return 0;
}

void veil_sampler_accept(struct veil_sampler *s, int32_t token)
{
	/* no counts: penalties are off, the history changes nothing */
	if (!s || token < 0 || token >= s->n_vocab || !s->counts)
		return;
	if (s->p.repeat_last_n < 0) {
		if (s->counts[token] == 0)
			s->seen[s->n_seen++] = token;
		if (s->counts[token] < INT32_MAX)
			s->counts[token]++;
		return;
	}
	if (s->ring_len == s->p.repeat_last_n) {
		s->counts[s->ring[s->ring_pos]]--;   /* evict the oldest */
	} else {
		s->ring_len++;
	}
	s->ring[s->ring_pos] = token;
	s->counts[token]++;
	s->ring_pos = (s->ring_pos + 1) % s->p.repeat_last_n;
}

void veil_sampler_reset(struct veil_sampler *s)
{
	if (!s)
		return;
	if (s->counts)
		memset(s->counts, 0, (size_t)s->n_vocab * sizeof(*s->counts));
	s->ring_len = 0;
	s->ring_pos = 0;
	s->n_seen = 0;
	rng_seed(s);
}

/* ---- candidate ordering and selection ----------------------------------- */

/* The total order of the chain: higher logit first, then lower id. */
static inline bool better(struct cand a, struct cand b)
{
	return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

static int cand_cmp(const void *pa, const void *pb)
{
	const struct cand *a = pa, *b = pb;

	if (better(*a, *b))
		return -1;
	return better(*b, *a) ? 1 : 0;
}

static inline void cswap(struct cand *a, struct cand *b)
{
	struct cand t = *a;

	*a = *b;
	*b = t;
}

/* Rearranges a[0..n) so that a[0..k) hold the k best candidates (in no
 * particular order).  Quickselect with a median-of-three pivot: linear time
 * on the inputs a model produces. */
static void cand_select(struct cand *a, size_t n, size_t k)
{
	size_t lo = 0, hi = n;

	if (k == 0 || k >= n)
		return;
	while (hi - lo > 16) {
		size_t mid = lo + (hi - lo) / 2, st = lo;
		struct cand pv;

		if (better(a[mid], a[lo]))
			cswap(&a[mid], &a[lo]);
		if (better(a[hi - 1], a[lo]))
			cswap(&a[hi - 1], &a[lo]);
		if (better(a[hi - 1], a[mid]))
			cswap(&a[hi - 1], &a[mid]);
		/* a[lo] >= a[mid] >= a[hi-1]: the median goes to the end */
		cswap(&a[mid], &a[hi - 1]);
		pv = a[hi - 1];
		for (size_t i = lo; i < hi - 1; i++)
			if (better(a[i], pv))
				cswap(&a[i], &a[st++]);
		cswap(&a[st], &a[hi - 1]);
		/* a[lo..st) better than the pivot at st, a(st..hi) worse */
		if (st == k || st + 1 == k)
			return;
		if (k < st)
			hi = st;
		else
			lo = st + 1;
	}
	for (size_t i = lo + 1; i < hi; i++) {
		struct cand x = a[i];
		size_t j = i;

		while (j > lo && better(x, a[j - 1])) {
			a[j] = a[j - 1];
			j--;
		}
		a[j] = x;
	}
}

static float max_logit(const struct cand *c, size_t n)
{
	float m = c[0].logit;

	for (size_t i = 1; i < n; i++)
		if (c[i].logit > m)
			m = c[i].logit;
	return m;
}

/* ---- the chain ---------------------------------------------------------- */

static float penalized(const struct veil_sampler_params *p, float l,
		       int32_t count)
{
	/* llama.cpp llama_sampler_penalties_apply */
	if (l <= 0.0f)
		l *= p->repeat_penalty;
	else
		l /= p->repeat_penalty;
	return l - ((float)count * p->frequency_penalty +
		    (float)(count > 0) * p->presence_penalty);
}

/* Applies the penalties to l in place, saving each changed token's raw
 * logit in s->saved so unpenalize() can put it back. */
static void apply_penalties(struct veil_sampler *s, float *l)
{
	s->n_saved = 0;
	if (s->p.repeat_last_n < 0) {
		for (int32_t i = 0; i < s->n_seen; i++) {
			int32_t t = s->seen[i];

			s->saved[s->n_saved++] = (struct cand){l[t], t};
			l[t] = penalized(&s->p, l[t], s->counts[t]);
		}
		return;
	}
	/* Each distinct token of the window once: its count is negated while
	 * applied and restored afterwards. */
	for (int32_t i = 0; i < s->ring_len; i++) {
		int32_t t = s->ring[i];

		if (s->counts[t] > 0) {
			s->saved[s->n_saved++] = (struct cand){l[t], t};
			l[t] = penalized(&s->p, l[t], s->counts[t]);
			s->counts[t] = -s->counts[t];
		}
	}
	for (int32_t i = 0; i < s->ring_len; i++) {
		int32_t t = s->ring[i];

		if (s->counts[t] < 0)
			s->counts[t] = -s->counts[t];
	}
}

static void unpenalize(struct veil_sampler *s, float *l)
{
	for (int32_t i = 0; i < s->n_saved; i++)
		l[s->saved[i].id] = s->saved[i].logit;
	s->n_saved = 0;
}

static inline size_t bucket_of(float l, float mx, float scale)
{
	float d = (mx - l) * scale;

	/* int32 conversion: the size_t one is a slow branchy sequence */
	return d < (float)(TOP_P_BUCKETS - 1) ? (size_t)(int32_t)d :
	       TOP_P_BUCKETS - 1;
}

/* top_p on c[0..n) at temperature 1; returns the new n.  The kept set is
 * the shortest prefix of the candidates in chain order whose mass reaches
 * top_p (llama.cpp keeps the token that crosses it).  Instead of sorting,
 * the mass is histogrammed by logit distance to the best; buckets are
 * monotone in the chain order, so only the bucket where the sum crosses
 * top_p needs sorting. */
static size_t chain_top_p(struct veil_sampler *s, struct cand *c, size_t n,
			  float top_p)
{
	const float scale = (float)TOP_P_BUCKETS / TOP_P_RANGE;
	double *hist = s->hist, z = 0.0, target, cum = 0.0;
	float mx = max_logit(c, n);
	size_t cross = TOP_P_BUCKETS - 1, keep = 0, mid;

	memset(hist, 0, TOP_P_BUCKETS * sizeof(*hist));
	for (size_t i = 0; i < n; i++)
		s->w[i] = c[i].logit;   /* contiguous for exp_weights */
	z = exp_weights(s->w, n, mx, 1.0f, s->w);
	for (size_t i = 0; i < n; i++) {
		size_t b = bucket_of(c[i].logit, mx, scale);

		hist[b] += (double)s->w[i];
	}
	target = (double)top_p * z;
	for (size_t b = 0; b < TOP_P_BUCKETS; b++) {
		if (cum + hist[b] >= target && hist[b] > 0.0) {
			cross = b;
			break;
		}
		cum += hist[b];
	}
	/* c[0..keep): buckets before `cross`; c[keep..mid): bucket `cross` */
	for (size_t i = 0; i < n; i++) {
		size_t b = bucket_of(c[i].logit, mx, scale);

		if (b < cross)
			cswap(&c[i], &c[keep++]);
	}
	mid = keep;
	for (size_t i = keep; i < n; i++) {
		size_t b = bucket_of(c[i].logit, mx, scale);

		if (b == cross)
			cswap(&c[i], &c[mid++]);
	}
	qsort(c + keep, mid - keep, sizeof(*c), cand_cmp);
	for (size_t i = keep; i < mid; i++) {
		cum += (double)fexp(c[i].logit - mx);
		if (cum >= target)
			return i + 1;
	}
	return mid > 0 ? mid : 1;   /* rounding: keep the whole bucket */
}

static size_t chain_min_p(struct cand *c, size_t n, float min_p)
{
	float thr = max_logit(c, n) + logf(min_p);
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (c[i].logit >= thr)
			c[k++] = c[i];
	return k ? k : 1;
}

/* Greedy: temperature 0, top_k 1, or a temperature so small that 1/T
 * overflows (or nearly: exp_weights would turn every weight but the best
 * into 0 anyway) -- below VEIL_SAMPLER_GREEDY_TEMP the chain would compute
 * inf * 0 = NaN weights and always pick c[0]. */
static bool is_greedy(const struct veil_sampler_params *p)
{
	return !(p->temperature >= VEIL_SAMPLER_GREEDY_TEMP) ||
	       !isfinite(1.0f / p->temperature) || p->top_k == 1;
}

/* Temperature and the random pick among c[0..n). */
static int32_t chain_pick(struct veil_sampler *s, struct cand *c, size_t n)
{
	float mx = max_logit(c, n), *w = s->w;
	double z, r, acc = 0.0;
	size_t last = 0;

	if (mx == -INFINITY)
		return c[0].id;   /* penalties drove every candidate to -inf */
	for (size_t i = 0; i < n; i++)
		w[i] = c[i].logit;   /* contiguous for exp_weights */
	z = exp_weights(w, n, mx, 1.0f / s->p.temperature, w);
	r = rng_uniform(s) * z;
	for (size_t i = 0; i < n; i++) {
		if (w[i] > 0.0f)
			last = i;
		acc += (double)w[i];
		if (r < acc)
			return c[i].id;
	}
	return c[last].id;   /* rounding: the last token with weight */
}

/* First index holding the maximum mx. */
static int32_t first_max(const float *l, int32_t n, float mx)
{
	for (int32_t i = 0; i < n; i++)
		if (l[i] == mx)
			return i;
	return 0;
}

/* Index of the first maximum of l[0..n) as the chain sees it (NaN never
 * wins, +inf counts as FLT_MAX), in one read-only vectorised pass; -1 when
 * every logit is -inf or NaN.  Each lane keeps its first maximum (strict >),
 * so the lowest index wins among the lanes' equal maxima. */
static int32_t argmax_first(const float *l, size_t n)
{
	vf m = vsplat(-INFINITY);
	vi mi = {-1, -1, -1, -1}, cur = {0, 1, 2, 3};
	float best = -INFINITY;
	int32_t id = -1;
	size_t i;

	for (i = 0; i + VL <= n; i += VL) {
		vf v = vload(l + i);
		vi gt;

		v = vsel(v == vsplat(INFINITY), vsplat(FLT_MAX), v);
		gt = v > m;
		m = vsel(gt, v, m);
		mi = (gt & cur) | (~gt & mi);
		cur += VL;
	}
	for (int k = 0; k < VL; k++)
		if (mi[k] >= 0 && (m[k] > best || (m[k] == best && mi[k] < id))) {
			best = m[k];
			id = mi[k];
		}
	for (; i < n; i++) {
		float v = l[i] == INFINITY ? FLT_MAX : l[i];

		if (v > best) {
			best = v;
			id = (int32_t)i;
		}
	}
	return id;
}

/* The greedy pick: the ops table's two-pass AVX argmax where the active
 * path has one (ops.h; same answer as argmax_first()), else the scan
 * above. */
static int32_t argmax_fast(const float *l, size_t n)
{
	const struct veil_ops *o = veil_ops_get();

	return o->argmax ? o->argmax(l, n) : argmax_first(l, n);
}

#define HEAP_BLOCK 64

/* The k best of l[0..n) in chain order into h[0..k) (a heap, unordered):
 * a min-heap whose root is the worst kept; blocks whose maximum cannot
 * beat the root are skipped (a later id never wins a tie). */
static void heap_top(const float *l, size_t n, size_t k, struct cand *h)
{
	size_t m = 0;

	for (size_t b0 = 0; b0 < n; b0 += HEAP_BLOCK) {
		size_t b1 = VEIL_MIN(n, b0 + HEAP_BLOCK);

		if (m == k && max_of(l + b0, b1 - b0) <= h[0].logit)
			continue;
		for (size_t i = b0; i < b1; i++) {
			struct cand x = {l[i], (int32_t)i};
			size_t j;

			if (m < k) {
				j = m++;
				while (j > 0 && better(h[(j - 1) / 2], x)) {
					h[j] = h[(j - 1) / 2];
					j = (j - 1) / 2;
				}
				h[j] = x;
				continue;
			}
			if (!better(x, h[0]))
				continue;
			j = 0;   /* replace the root and sift down */
			for (;;) {
				size_t a = 2 * j + 1, c = a + 1, w = j;
				struct cand wv = x;

				if (a < m && better(wv, h[a])) {
					w = a;
					wv = h[a];
				}
				if (c < m && better(wv, h[c]))
					w = c;
				if (w == j)
					break;
				h[j] = h[w];
				j = w;
			}
			h[j] = x;
		}
	}
}

/* top_k above this selects by copying all candidates (linear select). */
#define HEAP_TOP_K_MAX 4096

static int32_t run_chain(struct veil_sampler *s, const float *l)
{
	const struct veil_sampler_params *p = &s->p;
	struct cand *c = s->cand;
	size_t nv = (size_t)s->n_vocab, n = 0;

	if (p->top_k > 0 && (size_t)p->top_k < nv &&
	    p->top_k <= HEAP_TOP_K_MAX) {
		n = (size_t)p->top_k;
		heap_top(l, nv, n, c);
	} else if (p->min_p > 0.0f && p->top_p >= 1.0f &&
		   (p->top_k == 0 || (size_t)p->top_k >= nv)) {
		/* min_p alone: gather only the survivors */
		float thr = max_of(l, nv) + logf(p->min_p);

		for (size_t i = 0; i < nv; i++)
			if (l[i] >= thr)
				c[n++] = (struct cand){l[i], (int32_t)i};
	} else {
		for (size_t i = 0; i < nv; i++)
			c[i] = (struct cand){l[i], (int32_t)i};
		n = nv;
		if (p->top_k > 0 && (size_t)p->top_k < n) {
			cand_select(c, n, (size_t)p->top_k);
			n = (size_t)p->top_k;
		}
	}
	if (p->top_p < 1.0f && n > 1)
		n = chain_top_p(s, c, n, p->top_p);
	if (p->min_p > 0.0f && n > 1)
		n = chain_min_p(c, n, p->min_p);
	return chain_pick(s, c, n);
}

int veil_sampler_pick(struct veil_sampler *s, float *logits, int32_t *id)
{
	const struct veil_sampler_params *p;
	int32_t nv, t;
	float mx;
	bool greedy, pen;

	if (!s || !logits || !id)
		return veil_errf(VEIL_EINVAL, "sampler: bad arguments");
	p = &s->p;
	nv = s->n_vocab;
	greedy = is_greedy(p);
	pen = penalties_on(p) && (s->ring_len > 0 || s->n_seen > 0);
	if (greedy && !pen) {
		/* the common case: a read-only argmax, no log-softmax */
		if ((t = argmax_fast(logits, (size_t)nv)) < 0)
			goto all_inf;
		*id = t;
		return 0;
	}
	mx = sanitize_max(logits, (size_t)nv);
	if (mx == -INFINITY)
		goto all_inf;
	if (pen)
		apply_penalties(s, logits);
	if (!greedy && scratch(s) < 0) {
		if (pen)
			unpenalize(s, logits);
		return VEIL_ENOMEM;
	}
	if (greedy)
		t = first_max(logits, nv, pen ? max_of(logits, (size_t)nv) : mx);
	else
		t = run_chain(s, logits);
	if (pen)
		unpenalize(s, logits);
	*id = t;
	return 0;
all_inf:
	return veil_errf(VEIL_EINVAL, "sampler: all %d logits are -inf or NaN",
			 (int)nv);
}

int veil_sampler_sample(struct veil_sampler *s, float *logits,
			struct veil_logprob *chosen, struct veil_logprob *top,
			int n_top)
{
	const struct veil_sampler_params *p;
	int32_t nv, id;
	float mx, lse;
	double z;
	bool greedy, pen;

	if (!s || !logits || !chosen || n_top < 0 || (n_top > 0 && !top))
		return veil_errf(VEIL_EINVAL, "sampler: bad arguments");
	p = &s->p;
	nv = s->n_vocab;
	if (n_top > nv)
		return veil_errf(VEIL_EINVAL, "sampler: n_top %d > n_vocab %d",
				 n_top, (int)nv);
	mx = sanitize_max(logits, (size_t)nv);
	if (mx == -INFINITY)
		return veil_errf(VEIL_EINVAL, "sampler: all %d logits are -inf or NaN",
				 (int)nv);
	if (scratch(s) < 0)
		return VEIL_ENOMEM;
	z = exp_weights(logits, (size_t)nv, mx, 1.0f, s->w);
	lse = (float)((double)mx + log(z));
	if (n_top > 0) {
		heap_top(logits, (size_t)nv, (size_t)n_top, s->cand);
		qsort(s->cand, (size_t)n_top, sizeof(*s->cand), cand_cmp);
		for (int i = 0; i < n_top; i++) {
			top[i].id = s->cand[i].id;
			top[i].logprob = s->cand[i].logit - lse;
		}
	}

	greedy = is_greedy(p);
	pen = penalties_on(p) && (s->ring_len > 0 || s->n_seen > 0);
	if (pen)
		apply_penalties(s, logits);
	if (greedy)
		id = first_max(logits, nv, pen ? max_of(logits, (size_t)nv) : mx);
	else
		id = run_chain(s, logits);
	if (pen)
		unpenalize(s, logits);
	chosen->id = id;
	chosen->logprob = logits[id] - lse;
	return 0;
}
