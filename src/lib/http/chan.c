/* Bounded channel from worker threads to the event loop: a mutex-guarded
 * ring of pointers and an eventfd that wakes the loop.  No libevent locking
 * is needed because only the loop thread touches the event.
 *
 * The eventfd is watched edge-triggered where the backend can (epoll):
 * every write is an edge, so the loop never reads the counter back, one
 * system call less per wake-up (a streamed token each, on veil-node).  The
 * counter then only grows, by one per wake-up: 2^64 - 2 of them before a
 * write would fail, centuries at any rate this loop can drain. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "veil/http.h"

struct veil_http_chan {
	pthread_mutex_t mu;
	void **ring;
	size_t cap, head, len;
	/* The loop is draining: a post needs no wake-up, the loop takes it
	 * before it stops (chan_ready checks under the lock). */
	bool draining;
	bool et;            /* edge-triggered: the counter is never read */
	int efd;
	struct event *ev;
	void (*cb)(void *msg, void *arg);
	void (*drop)(void *msg, void *arg);
	void *arg;
};

/* Pops one message; with `drain`, a loop turn is in progress: an empty
 * ring (or a spent budget) ends it in the same critical section, so a
 * post either is popped here or sees draining off and wakes the loop. */
static void *chan_pop(struct veil_http_chan *c, bool drain, bool *more)
{
	void *m = NULL;

	pthread_mutex_lock(&c->mu);
	if (c->len && !(drain && *more)) {
		m = c->ring[c->head];
		c->head = (c->head + 1) % c->cap;
		c->len--;
	}
	if (drain) {
		c->draining = m != NULL;
		*more = !m && c->len;
	}
	pthread_mutex_unlock(&c->mu);
	return m;
}

static void chan_ready(evutil_socket_t fd, short what, void *arg)
{
	struct veil_http_chan *c = arg;
	uint64_t v;
	size_t budget;
	bool more = false;
	void *m;

	(void)what;
	if (!c->et && read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		VEIL_WARN("http", "channel eventfd read: errno %d", errno);
	/* Bounded per wake-up so one busy channel cannot starve the loop;
	 * what is left re-arms the eventfd.  Posts made while this drains
	 * (an engine step's events arrive one by one) write no eventfd: one
	 * wake-up takes them all. */
	budget = c->cap;
	for (;;) {
		if (!budget--)
			more = true; /* ends the turn at the next pop */
		if (!(m = chan_pop(c, true, &more)))
			break;
		c->cb(m, c->arg);
	}
	if (more) {
		v = 1;
		if (write(c->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			VEIL_WARN("http", "channel eventfd write: errno %d",
				  errno);
	}
}

int veil_http_chan_new(struct event_base *base, size_t capacity,
		       void (*cb)(void *msg, void *arg),
		       void (*drop)(void *msg, void *arg), void *arg,
		       struct veil_http_chan **out)
{
	struct veil_http_chan *c;

	if (!base || !cb || !out || capacity == 0 || capacity > (1u << 24))
		return veil_errf(VEIL_EINVAL, "channel: bad arguments");
	if (!(c = calloc(1, sizeof(*c))))
		return VEIL_ENOMEM;
	c->efd = -1;
	c->cap = capacity;
	c->cb = cb;
	c->drop = drop;
	c->arg = arg;
	pthread_mutex_init(&c->mu, NULL);
	if (!(c->ring = calloc(capacity, sizeof(void *))))
		goto fail;
	if ((c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		goto fail;
	c->et = (event_base_get_features(base) & EV_FEATURE_ET) != 0;
	c->ev = event_new(base, c->efd, EV_READ | EV_PERSIST | (c->et ? EV_ET : 0),
			  chan_ready, c);
	if (!c->ev || event_add(c->ev, NULL) < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	veil_http_chan_free(c);
	return veil_errf(VEIL_EIO, "channel: eventfd/event setup failed");
}

int veil_http_chan_post(struct veil_http_chan *c, void *msg)
{
	uint64_t one = 1;
	bool wake;

	if (!c || !msg)
		return VEIL_EINVAL;
	pthread_mutex_lock(&c->mu);
	if (c->len == c->cap) {
		pthread_mutex_unlock(&c->mu);
		return VEIL_EBUSY;
	}
	c->ring[(c->head + c->len) % c->cap] = msg;
	wake = c->len++ == 0 && !c->draining;
	pthread_mutex_unlock(&c->mu);
	/* Only the first message after the loop emptied the ring needs a
	 * wake-up, and none while the loop drains; it takes everything
	 * queued then. */
	if (wake && write(c->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return veil_errf(VEIL_EIO, "channel eventfd write: errno %d",
				 errno);
	return 0;
}

size_t veil_http_chan_len(struct veil_http_chan *c)
{
	size_t n;

	pthread_mutex_lock(&c->mu);
	n = c->len;
	pthread_mutex_unlock(&c->mu);
	return n;
}

void veil_http_chan_free(struct veil_http_chan *c)
{
	void *m;

	if (!c)
		return;
	if (c->ev)
		event_free(c->ev);
	if (c->ring)
		while ((m = chan_pop(c, false, NULL)) != NULL)
			if (c->drop)
				c->drop(m, c->arg);
	if (c->efd >= 0)
		close(c->efd);
	pthread_mutex_destroy(&c->mu);
	free(c->ring);
	free(c);
}
