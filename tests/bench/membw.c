/* Memory read bandwidth, measured the way decode uses memory: threads
 * streaming through a buffer much larger than the caches, summing 64-bit
 * words.  `make bench` runs it beside the engine so the roofline figure
 * (decode tok/s x bytes per token / bandwidth) uses this machine's numbers
 * from the same run.
 *
 *   membw [--size-mib N] [--passes N] [--threads LIST] [--json]
 *
 * Defaults: 1024 MiB, 4 timed passes after one warm-up pass, threads "1,2".
 * Each thread reads its own contiguous share; a pass reads the whole buffer
 * once.  Prints one line per thread count and, with --json, a final line
 * {"size_mib":..,"passes":..,"gbs":{"1":..,"2":..}} (GB = 1e9 bytes). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

struct share {
	const uint64_t *p;
	size_t n;        /* words */
	int passes;
	uint64_t sum;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t sum_words(const uint64_t *p, size_t n)
{
	uint64_t s = 0;
	size_t i = 0;
#if defined(__SSE2__)
	/* four independent accumulators keep several loads in flight */
	__m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
	for (; i + 8 <= n; i += 8) {
		a0 = _mm_add_epi64(a0, _mm_load_si128((const __m128i *)(p + i)));
		a1 = _mm_add_epi64(a1, _mm_load_si128((const __m128i *)(p + i + 2)));
		a2 = _mm_add_epi64(a2, _mm_load_si128((const __m128i *)(p + i + 4)));
		a3 = _mm_add_epi64(a3, _mm_load_si128((const __m128i *)(p + i + 6)));
	}
	a0 = _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3));
	uint64_t lanes[2];
	_mm_storeu_si128((__m128i *)lanes, a0);
	s = lanes[0] + lanes[1];
#else
	uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	for (; i + 4 <= n; i += 4) {
		s0 += p[i];
		s1 += p[i + 1];
		s2 += p[i + 2];
		s3 += p[i + 3];
	}
	s = s0 + s1 + s2 + s3;
#endif
	for (; i < n; i++)
		s += p[i];
	return s;
}

static void *reader(void *arg)
{
	struct share *sh = arg;
	uint64_t s = 0;

	for (int k = 0; k < sh->passes; k++)
		s += sum_words(sh->p, sh->n);
	sh->sum = s;
	return NULL;
}

/* Reads the buffer `passes` times with `nt` threads; returns GB/s. */
static double run(const uint64_t *buf, size_t words, int nt, int passes,
		  uint64_t *sink)
{
	struct share sh[64];
	pthread_t tid[64];
	double t0 = now_s();

	for (int i = 0; i < nt; i++) {
		size_t a = words * (size_t)i / (size_t)nt & ~(size_t)7;
		size_t b = i == nt - 1 ? words : (words * (size_t)(i + 1) / (size_t)nt & ~(size_t)7);
		sh[i] = (struct share){buf + a, b - a, passes, 0};
		if (pthread_create(&tid[i], NULL, reader, &sh[i]) != 0) {
			fprintf(stderr, "membw: pthread_create failed\n");
			exit(1);
		}
	}
	for (int i = 0; i < nt; i++) {
		pthread_join(tid[i], NULL);
		*sink += sh[i].sum;
	}
	double dt = now_s() - t0;
	return (double)words * 8.0 * passes / dt / 1e9;
}

int main(int argc, char **argv)
{
	size_t mib = 1024;
	int passes = 4, json = 0;
	int threads[16] = {1, 2}, n_threads = 2;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--size-mib") && i + 1 < argc) {
			mib = (size_t)strtoul(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "--passes") && i + 1 < argc) {
			passes = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			char *s = argv[++i], *end;
			n_threads = 0;
			while (*s && n_threads < 16) {
				long v = strtol(s, &end, 10);
				if (end == s || v < 1 || v > 64) {
					fprintf(stderr, "membw: bad --threads\n");
					return 2;
				}
				threads[n_threads++] = (int)v;
				s = *end == ',' ? end + 1 : end;
			}
		} else if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else {
			fprintf(stderr, "usage: membw [--size-mib N] [--passes N] "
				"[--threads 1,2] [--json]\n");
			return 2;
		}
	}
	if (mib < 1 || passes < 1 || n_threads < 1) {
		fprintf(stderr, "membw: size, passes and threads must be positive\n");
		return 2;
	}

	size_t bytes = mib << 20, words = bytes / 8;
	uint64_t *buf = NULL;
	if (posix_memalign((void **)&buf, 4096, bytes) != 0) {
		fprintf(stderr, "membw: cannot allocate %zu MiB\n", mib);
		return 1;
	}
	/* fault every page in (and make the data non-zero) before timing */
	for (size_t i = 0; i < words; i++)
		buf[i] = i * 0x9e3779b97f4a7c15ull;

	uint64_t sink = 0;
	double gbs[16];
	for (int k = 0; k < n_threads; k++) {
		run(buf, words, threads[k], 1, &sink); /* warm-up */
		gbs[k] = run(buf, words, threads[k], passes, &sink);
		printf("membw: %d thread%s: %.2f GB/s read (%zu MiB x %d passes)\n",
		       threads[k], threads[k] == 1 ? "" : "s", gbs[k], mib, passes);
	}
	if (json) {
		printf("{\"size_mib\":%zu,\"passes\":%d,\"gbs\":{", mib, passes);
		for (int k = 0; k < n_threads; k++)
			printf("%s\"%d\":%.3f", k ? "," : "", threads[k], gbs[k]);
		printf("},\"checksum\":\"%016llx\"}\n", (unsigned long long)sink);
	}
	free(buf);
	return 0;
}
