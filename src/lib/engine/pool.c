/* Persistent thread pool: spin-then-futex workers, chunked parallel-for with a
 * barrier at the end of every job.  See include/veil/pool.h. */
#include "veil/pool.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() __asm__ __volatile__("" ::: "memory")
#endif

#define POOL_MAX_THREADS 256
/* How long an idle worker spins before sleeping: long enough to bridge the
 * gap between two forward steps (sampling, callbacks), short enough that an
 * idle engine goes quiet at once. */
#define POOL_SPIN_NS 2000000ull
/* Pauses between two sched_yield() of a spinning thread (a few
 * microseconds).  A spinning worker does nothing useful, and with as many
 * threads as cores it would keep a thread that just woke up (the node's
 * event loop with a token to send, a client, the kernel's network work)
 * waiting until its time slice ends: on Linux's EEVDF scheduler a woken
 * thread does not always preempt the running one at once.  Yielding lets
 * it run now, on the core that had nothing to do; the job it misses
 * meanwhile is done by the other threads (chunks are claimed, not
 * assigned), so a wake-up costs the step one thread's share for as long
 * as it runs instead of a stalled barrier.  With nothing else runnable
 * sched_yield() returns at once. */
#define POOL_YIELD_SPINS 256

/* Job protocol.  `gen` is even while a job is published and odd while the
 * caller rewrites the job description.  A worker that sees a new even
 * generation registers in `inside`, re-checks the generation (so it never
 * reads a description being rewritten), then claims chunks.  Completion is
 * counted in chunks (`done`), not in workers: a worker that wakes late, or
 * not at all, never delays the caller, who claims chunks too.  The caller
 * only waits for `inside` to drain before rewriting the description. */
struct veil_pool {
	int n;
	pthread_t *th;
	/* job description; written while gen is odd */
	veil_pool_fn fn;
	void *arg;
	int64_t n_items;
	int64_t chunk;
	int64_t n_chunks;
	alignas(64) _Atomic uint32_t gen;   /* futex word */
	_Atomic int sleepers;
	_Atomic bool stop;
	alignas(64) _Atomic int64_t next;   /* next chunk index */
	alignas(64) _Atomic int64_t done;   /* chunks finished */
	alignas(64) _Atomic int inside;     /* workers reading the job */
};

struct worker_arg {
	struct veil_pool *p;
	int tid;
};

static void futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL,
		NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, 0x7fffffff,
		NULL, NULL, 0);
}

static void run_chunks(struct veil_pool *p, int tid)
{
	int64_t n = p->n_items, chunk = p->chunk, nc = p->n_chunks;

	for (;;) {
		int64_t c = atomic_fetch_add_explicit(&p->next, 1,
						      memory_order_relaxed);
		int64_t b = c * chunk;

		if (c >= nc)
			break;
		p->fn(p->arg, b, VEIL_MIN(b + chunk, n), tid);
		atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
	}
}

static void *worker_main(void *v)
{
	struct worker_arg *wa = v;
	struct veil_pool *p = wa->p;
	int tid = wa->tid;
	uint32_t seen = 0;

	free(wa);
	for (;;) {
		uint32_t g;
		uint64_t t0 = 0;
		unsigned spins = 0;

		while ((g = atomic_load_explicit(&p->gen,
						 memory_order_acquire)) == seen ||
		       (g & 1u)) {
			if (++spins < POOL_YIELD_SPINS) {
				cpu_relax();
				continue;
			}
			spins = 0;
			sched_yield();
			if (!t0) {
				t0 = veil_now_ns();
			} else if (veil_now_ns() - t0 > POOL_SPIN_NS) {
				atomic_fetch_add(&p->sleepers, 1);
				futex_wait(&p->gen, g);
				atomic_fetch_sub(&p->sleepers, 1);
				t0 = 0;
			}
		}
		if (atomic_load_explicit(&p->stop, memory_order_acquire))
			break;
		atomic_fetch_add(&p->inside, 1);
		if (atomic_load(&p->gen) == g) {
			seen = g;
			run_chunks(p, tid);
		}
		atomic_fetch_sub_explicit(&p->inside, 1, memory_order_release);
	}
	return NULL;
}

int veil_pool_new(int n_threads, struct veil_pool **out)
{
	struct veil_pool *p;
	int rc = 0;

	if (n_threads <= 0)
		n_threads = veil_cpu_count();
	if (n_threads > POOL_MAX_THREADS)
		n_threads = POOL_MAX_THREADS;
	p = aligned_alloc(64, (sizeof(*p) + 63) / 64 * 64);
	if (!p)
		return VEIL_ENOMEM;
	*p = (struct veil_pool){.n = 1};
	atomic_init(&p->gen, 0);
	atomic_init(&p->sleepers, 0);
	atomic_init(&p->stop, false);
	atomic_init(&p->next, 0);
	atomic_init(&p->done, 0);
	atomic_init(&p->inside, 0);
	p->th = calloc((size_t)n_threads, sizeof(*p->th));
	if (!p->th) {
		free(p);
		return VEIL_ENOMEM;
	}
	for (int i = 1; i < n_threads; i++) {
		struct worker_arg *wa = malloc(sizeof(*wa));

		if (!wa) {
			rc = VEIL_ENOMEM;
			break;
		}
		wa->p = p;
		wa->tid = i;
		if (pthread_create(&p->th[i], NULL, worker_main, wa) != 0) {
			free(wa);
			rc = veil_errf(VEIL_ENOMEM, "pool: cannot start thread %d", i);
			break;
		}
		p->n = i + 1;
	}
	if (rc < 0) {
		veil_pool_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

void veil_pool_free(struct veil_pool *p)
{
	if (!p)
		return;
	atomic_store(&p->stop, true);
	atomic_fetch_add(&p->gen, 2);
	futex_wake_all(&p->gen);
	for (int i = 1; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	free(p->th);
	free(p);
}

int veil_pool_size(const struct veil_pool *p)
{
	return p->n;
}

void veil_pool_for(struct veil_pool *p, int64_t n_items, int64_t chunk,
		   veil_pool_fn fn, void *arg)
{
	unsigned spins = 0;
	int64_t nc;

	if (n_items <= 0)
		return;
	if (chunk < 1)
		chunk = 1;
	if (p->n == 1 || chunk >= n_items) {
		fn(arg, 0, n_items, 0);
		return;
	}
	nc = (n_items + chunk - 1) / chunk;
	/* close the previous job, wait for late readers to leave */
	atomic_fetch_add(&p->gen, 1);
	while (atomic_load(&p->inside) > 0)
		cpu_relax();
	p->fn = fn;
	p->arg = arg;
	p->n_items = n_items;
	p->chunk = chunk;
	p->n_chunks = nc;
	atomic_store_explicit(&p->next, 0, memory_order_relaxed);
	atomic_store_explicit(&p->done, 0, memory_order_relaxed);
	/* publish; seq_cst pairs with the sleepers increment in the worker */
	atomic_fetch_add(&p->gen, 1);
	if (atomic_load(&p->sleepers) > 0)
		futex_wake_all(&p->gen);
	run_chunks(p, 0);
	while (atomic_load_explicit(&p->done, memory_order_acquire) < nc) {
		if (++spins < 4096)
			cpu_relax();
		else
			sched_yield();
	}
}
