/* Worker threads of veil-node: jobs that would stall the event loop (receipt
 * signatures, attestation quotes) run here, and each comes back to the loop
 * through a bounded channel (node.h, "work.c"). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "node.h"

struct node_workers {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct node_job *head, *tail;  /* FIFO, under mu */
	bool stop;                     /* under mu */
	pthread_t th[NODE_WORKERS_MAX];
	int nth;
	struct veil_http_chan *chan;
	char what[32];
};

static void *work_main(void *arg)
{
	struct node_workers *w = arg;

	for (;;) {
		struct node_job *j;
		bool stop;

		pthread_mutex_lock(&w->mu);
		while (!w->head && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (!(j = w->head)) { /* stopping, and nothing left */
			pthread_mutex_unlock(&w->mu);
			break;
		}
		if (!(w->head = j->next))
			w->tail = NULL;
		stop = w->stop;
		pthread_mutex_unlock(&w->mu);
		j->run(j, stop);
		if (veil_http_chan_post(w->chan, j) < 0)
			VEIL_ERROR(NODE_MOD, "%s: channel full (a bug: capacity too small)",
				   w->what);
	}
	return NULL;
}

/* On the loop, or on node_workers_stop's thread through the drop. */
static void back(void *msg, void *arg)
{
	struct node_job *j = msg;

	(void)arg;
	j->done(j);
}

int node_workers_start(struct node *n, const char *what, int threads, size_t cap,
		       struct node_workers **out)
{
	struct node_workers *w;
	int rc;

	*out = NULL;
	if (threads < 1 || threads > NODE_WORKERS_MAX || cap < 1)
		return veil_errf(VEIL_EINVAL, "%s: %d threads", what, threads);
	if (!(w = calloc(1, sizeof(*w))))
		return VEIL_ENOMEM;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	snprintf(w->what, sizeof(w->what), "%s", what);
	if ((rc = veil_http_chan_new(n->base, cap, back, back, NULL, &w->chan)) < 0)
		goto fail;
	for (; w->nth < threads; w->nth++)
		if (pthread_create(&w->th[w->nth], NULL, work_main, w)) {
			rc = veil_errf(VEIL_EINTERNAL, "cannot start a %s thread", what);
			goto fail;
		}
	*out = w;
	return 0;
fail:
	VEIL_ERROR(NODE_MOD, "%s: %s (%s)", what, veil_strerror(rc), veil_err_detail());
	node_workers_stop(w);
	return rc;
}

void node_workers_submit(struct node_workers *w, struct node_job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&w->mu);
	if (w->tail)
		w->tail->next = j;
	else
		w->head = j;
	w->tail = j;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void node_workers_stop(struct node_workers *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	for (int i = 0; i < w->nth; i++)
		pthread_join(w->th[i], NULL);
	/* what the threads posted and the loop did not take: the drop hands
	 * each job to its done, here */
	if (w->chan)
		veil_http_chan_free(w->chan);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
