/* Worker threads of veil-gateway.  The store is blocking (SQLite fsync,
 * PostgreSQL round trips), so the loop never calls it: store work runs on
 * threads that own their own store handle, and results come back through
 * one bounded channel.
 *
 * The writer batches usage records: it takes every record queued (up to
 * --usage-batch) and commits them in one transaction
 * (veil_store_usage_add_many, a group commit: one fsync for the lot), with
 * the records' rate-window token charges in the same transaction.  When
 * that transaction fails, the records are retried one by one so one bad
 * record cannot sink the others.  A record's job comes back to the loop only
 * after its commit returned: that is when the client's answer is completed
 * ("acknowledged" = durable). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "gateway.h"

struct gw_worker {
	struct gw *g;
	char name[16];
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct gw_job *head, *tail;
	size_t n, cap;
	bool stop, started, batching;
	struct veil_store *store;
	/* gw_worker_submit_pass: jobs the loop queued during this loop pass
	 * (loop thread only, no lock), handed over by flush_ev at its end */
	struct event *flush_ev;
	struct gw_job *lhead, *ltail;
	size_t ln;
};

/* Set by gw_job_handoff on the worker's own thread. */
static __thread bool handed_off;

int gw_job_handoff(struct gw_worker *w, struct gw_job *j)
{
	int rc = gw_worker_submit(w, j);

	if (rc == 0)
		handed_off = true;
	return rc;
}

/* j, and the jobs chained after it through ->next (a committed batch: one
 * message, so one lock of the channel and one pop on the loop for the
 * lot instead of one each, and fewer times the loop blocks on a lock the
 * writer holds); chan_cb runs each job's done in order. */
static void post(struct gw *g, struct gw_job *j)
{
	/* The channel is sized far above the jobs that can exist (each one
	 * belongs to a connection or a node); a full one only means the loop
	 * is behind, so wait for it rather than lose a completion. */
	while (veil_http_chan_post(g->chan, j) == VEIL_EBUSY)
		usleep(200);
}

static void run_batch(struct gw_worker *w, struct gw_job **jobs, size_t n)
{
	struct veil_store_usage *u = calloc(n, sizeof(*u));
	int rc = VEIL_ENOMEM;
	size_t i;

	if (u) {
		/* The rate windows learn the real token counts in the same
		 * transaction as the records (one commit for both), and only
		 * for records that are stored. */
		int64_t now = (int64_t)veil_wall_ms();

		for (i = 0; i < n; i++) {
			struct gw_usage_job *uj = (struct gw_usage_job *)jobs[i];

			u[i] = uj->u;
			if (uj->charge_tokens > 0) {
				u[i].rate_tokens = uj->charge_tokens;
				u[i].rate_now_ms = now;
			}
		}
		rc = veil_store_usage_add_many(w->store, u, n);
		atomic_fetch_add(&w->g->usage_commits, 1);
	}
	if (rc < 0 && u && n > 1) {
		/* none of them is recorded: each on its own, so that one bad
		 * record (a repeated id, say) does not sink the others */
		VEIL_WARN(GW_MOD, "usage: batch of %zu failed (%s: %s); one by one", n,
			  veil_strerror(rc), veil_err_detail());
		for (i = 0; i < n; i++) {
			jobs[i]->rc = veil_store_usage_add(w->store, &u[i]);
			/* A repeated id may be this very record: a batch whose
			 * commit outcome was lost (connection dropped, and
			 * its retry failed too) may have committed.  The same
			 * key and signed receipt under that id: it is stored,
			 * so the answer is not withheld (a 503 for a billed
			 * answer). */
			if (jobs[i]->rc == VEIL_EINVAL &&
			    veil_store_usage_recorded(w->store, &u[i]) == 0) {
				VEIL_INFO(GW_MOD, "usage: record %s was already stored "
					  "(by the failed batch)", u[i].request_id);
				jobs[i]->rc = 0;
			}
			if (jobs[i]->rc < 0)
				VEIL_ERROR(GW_MOD, "usage: record %s not stored: %s (%s)",
					   u[i].request_id, veil_strerror(jobs[i]->rc),
					   veil_err_detail());
		}
	} else {
		if (rc < 0)
			VEIL_ERROR(GW_MOD, "usage: record not stored: %s (%s)",
				   veil_strerror(rc), veil_err_detail());
		for (i = 0; i < n; i++)
			jobs[i]->rc = rc;
	}
	free(u);
}

static void *worker_main(void *arg)
{
	struct gw_worker *w = arg;
	size_t max = VEIL_MIN(w->g->o.usage_batch ? w->g->o.usage_batch : 256,
			      (size_t)VEIL_STORE_BATCH_MAX);
	struct gw_job **batch = calloc(max, sizeof(*batch));

	for (;;) {
		struct gw_job *j;
		size_t nb = 0;

		pthread_mutex_lock(&w->mu);
		while (!w->head && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (!w->head) {
			pthread_mutex_unlock(&w->mu);
			break;
		}
		if (w->batching && batch && !w->head->run) {
			/* every usage record at the head of the queue */
			while (w->head && !w->head->run && nb < max) {
				batch[nb++] = w->head;
				w->head = w->head->next;
				w->n--;
			}
			if (!w->head)
				w->tail = NULL;
			pthread_mutex_unlock(&w->mu);
			run_batch(w, batch, nb);
			for (size_t i = 0; i < nb; i++)
				batch[i]->next = i + 1 < nb ? batch[i + 1] : NULL;
			post(w->g, batch[0]);
			continue;
		}
		j = w->head;
		w->head = j->next;
		if (!w->head)
			w->tail = NULL;
		w->n--;
		pthread_mutex_unlock(&w->mu);
		j->next = NULL;
		handed_off = false;
		if (j->run)
			j->run(j, w->store);
		else
			j->rc = VEIL_EINTERNAL;
		if (!handed_off)
			post(w->g, j);
	}
	free(batch);
	return NULL;
}

/* The end of the loop pass: everything queued during it goes to the
 * worker under one lock with one wake-up. */
static void flush_pass(struct gw_worker *w)
{
	if (!w->lhead)
		return;
	pthread_mutex_lock(&w->mu);
	/* appended even past cap or after stop: the caller was told 0 (the
	 * local queue is capped by cap itself, and a stopping worker drains
	 * its queue before it exits) */
	if (w->tail)
		w->tail->next = w->lhead;
	else
		w->head = w->lhead;
	w->tail = w->ltail;
	w->n += w->ln;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	w->lhead = w->ltail = NULL;
	w->ln = 0;
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flush_pass(arg);
}

int gw_worker_submit_pass(struct gw_worker *w, struct gw_job *j)
{
	if (w->stop || w->ln >= w->cap || !w->flush_ev)
		return gw_worker_submit(w, j);
	j->next = NULL;
	j->t_ns = veil_now_ns();
	if (w->ltail)
		w->ltail->next = j;
	else
		w->lhead = j;
	w->ltail = j;
	/* event_active appends flush_ev behind the events already active in
	 * this pass: it runs once they have all run (again a no-op while it
	 * is active) */
	if (w->ln++ == 0)
		event_active(w->flush_ev, EV_TIMEOUT, 1);
	return 0;
}

int gw_worker_start(struct gw *g, const char *name, bool with_store,
		    bool batching, size_t cap, struct gw_worker **out)
{
	struct gw_worker *w = calloc(1, sizeof(*w));
	int rc;

	if (!w)
		return VEIL_ENOMEM;
	w->g = g;
	snprintf(w->name, sizeof(w->name), "%s", name);
	w->cap = cap;
	w->batching = batching;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if (with_store && (rc = veil_store_open(g->o.db, &g->secret, &w->store)) < 0)
		goto fail;
	if (batching && !(w->flush_ev = event_new(g->base, -1, 0, flush_cb, w))) {
		rc = VEIL_ENOMEM;
		goto fail;
	}
	if (pthread_create(&w->th, NULL, worker_main, w)) {
		rc = veil_errf(VEIL_EIO, "cannot start the %s thread", name);
		goto fail;
	}
	/* named for top / perf (15 bytes at most) */
	{
		char tn[16];

		snprintf(tn, sizeof(tn), "gw-%s", name);
		pthread_setname_np(w->th, tn);
	}
	w->started = true;
	*out = w;
	return 0;
fail:
	if (w->flush_ev)
		event_free(w->flush_ev);
	veil_store_close(w->store);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
	return rc;
}

int gw_worker_submit(struct gw_worker *w, struct gw_job *j)
{
	pthread_mutex_lock(&w->mu);
	if (w->stop || w->n >= w->cap) {
		pthread_mutex_unlock(&w->mu);
		return VEIL_EBUSY;
	}
	j->next = NULL;
	j->t_ns = veil_now_ns();
	if (w->tail)
		w->tail->next = j;
	else
		w->head = j;
	w->tail = j;
	w->n++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

size_t gw_worker_queued(struct gw_worker *w)
{
	size_t n;

	pthread_mutex_lock(&w->mu);
	n = w->n;
	pthread_mutex_unlock(&w->mu);
	return n;
}

void gw_worker_stop(struct gw_worker *w)
{
	if (!w)
		return;
	flush_pass(w); /* the loop's last pass may not have ended */
	if (w->flush_ev)
		event_free(w->flush_ev);
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (w->started)
		pthread_join(w->th, NULL);
	veil_store_close(w->store);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}

static void chan_cb(void *msg, void *arg)
{
	struct gw_job *j = msg, *next;

	(void)arg;
	for (; j; j = next) {
		next = j->next; /* done may free j */
		j->done(j);
	}
}

int gw_chan_init(struct gw *g)
{
	/* Above every job that can exist at once: one per connection at most
	 * for requests, a few per node, and the queues' caps. */
	size_t cap = g->o.max_conns * 2 + GW_NODES_MAX * 4 + 65536;

	return veil_http_chan_new(g->base, cap, chan_cb, NULL, g, &g->chan);
}
