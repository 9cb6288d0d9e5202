/* A small persistent thread pool for the inference engine.
 *
 * The pool has n threads in all: the thread that calls veil_pool_for() is
 * thread 0 and takes part in the work; n - 1 workers wait for jobs.  A job is
 * a range [0, n_items) cut into chunks; threads take chunks from a shared
 * counter until none are left, and veil_pool_for() returns only when every
 * chunk is done (a barrier).  Workers spin briefly between jobs (a forward
 * pass issues hundreds of small jobs; waking a sleeping thread costs tens of
 * microseconds) and then sleep on a futex, so an idle pool uses no CPU.
 *
 * One thread at a time may call veil_pool_for() on a given pool (the engine
 * thread); the callback must not call back into the same pool. */
#ifndef VEIL_POOL_H
#define VEIL_POOL_H

#include "veil/base.h"

struct veil_pool;

/* fn processes items [begin, end); tid in [0, veil_pool_size()) names the
 * thread, so callers can index per-thread scratch. */
typedef void (*veil_pool_fn)(void *arg, int64_t begin, int64_t end, int tid);

/* n_threads <= 0 means veil_cpu_count().  Capped at 256. */
int veil_pool_new(int n_threads, struct veil_pool **out);
/* Stops and joins the workers; NULL is a no-op. */
void veil_pool_free(struct veil_pool *p);
int veil_pool_size(const struct veil_pool *p);

/* Runs fn over [0, n_items) in chunks of `chunk` items (>= 1) on all
 * threads and waits for all of them.  With one chunk, or one thread, fn runs
 * on the caller only. */
void veil_pool_for(struct veil_pool *p, int64_t n_items, int64_t chunk,
		   veil_pool_fn fn, void *arg);

#endif
