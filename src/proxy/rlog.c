/* The receipts log of veil-proxy (--receipts FILE): JSON lines, appended,
 * made durable with fdatasync before the writer takes the next batch
 * (group commit: several lines queued together share one sync).  A writer
 * thread does the I/O so a slow disk never stalls the event loop; the
 * queue is bounded and a line that does not fit is dropped and counted
 * (the answer itself is not held back by the log).  Format: docs/proxy.md,
 * "Receipts log"; `veil receipts verify FILE` re-checks it offline. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy.h"

#define RLOG_MAX_QUEUE 65536

struct rline {
	struct rline *next;
	char *text;            /* one JSON object, no newline (owned) */
};

struct rlog {
	int fd;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct rline *head, *tail;
	size_t n;
	bool stop;
	uint64_t dropped;      /* under mu */
};

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return VEIL_EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void *writer(void *arg)
{
	struct rlog *l = arg;

	pthread_mutex_lock(&l->mu);
	for (;;) {
		struct rline *batch, *next;
		bool wrote = false;

		while (!l->head && !l->stop)
			pthread_cond_wait(&l->cv, &l->mu);
		if (!l->head && l->stop)
			break;
		batch = l->head;
		l->head = l->tail = NULL;
		l->n = 0;
		pthread_mutex_unlock(&l->mu);
		for (; batch; batch = next) {
			next = batch->next;
			if (write_all(l->fd, batch->text, strlen(batch->text)) < 0 ||
			    write_all(l->fd, "\n", 1) < 0)
				VEIL_ERROR(PROXY_MOD, "receipts log: write failed: %s",
					   strerror(errno));
			wrote = true;
			free(batch->text);
			free(batch);
		}
		if (wrote && fdatasync(l->fd) < 0)
			VEIL_ERROR(PROXY_MOD, "receipts log: fdatasync failed: %s",
				   strerror(errno));
		pthread_mutex_lock(&l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

int rlog_open(const char *path, struct rlog **out)
{
	struct rlog *l = calloc(1, sizeof(*l));

	if (!l)
		return VEIL_ENOMEM;
	l->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (l->fd < 0) {
		int e = errno;

		free(l);
		return veil_errf(VEIL_EIO, "cannot open %s: %s", path, strerror(e));
	}
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	if (pthread_create(&l->th, NULL, writer, l) != 0) {
		close(l->fd);
		pthread_mutex_destroy(&l->mu);
		pthread_cond_destroy(&l->cv);
		free(l);
		return veil_errf(VEIL_EIO, "cannot start the receipts log writer");
	}
	*out = l;
	return 0;
}

int rlog_write(struct rlog *l, json_t *line)
{
	struct rline *r = NULL;
	char *text;
	int rc = VEIL_ENOMEM;

	if (!l) {
		json_decref(line);
		return 0;
	}
	text = json_dumps(line, JSON_COMPACT);
	json_decref(line);
	if (!text || !(r = calloc(1, sizeof(*r))))
		goto fail;
	r->text = text;
	pthread_mutex_lock(&l->mu);
	if (l->n >= RLOG_MAX_QUEUE || l->stop) {
		l->dropped++;
		pthread_mutex_unlock(&l->mu);
		rc = VEIL_EBUSY;
		goto fail;
	}
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
	l->n++;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	return 0;
fail:
	if (rc == VEIL_ENOMEM && l) {
		pthread_mutex_lock(&l->mu);
		l->dropped++;
		pthread_mutex_unlock(&l->mu);
	}
	VEIL_ERROR(PROXY_MOD, "receipts log: a line was dropped (%s)", veil_strerror(rc));
	free(text);
	free(r);
	return rc;
}

uint64_t rlog_dropped(struct rlog *l)
{
	uint64_t d;

	if (!l)
		return 0;
	pthread_mutex_lock(&l->mu);
	d = l->dropped;
	pthread_mutex_unlock(&l->mu);
	return d;
}

void rlog_close(struct rlog *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = true;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->th, NULL);
	close(l->fd);
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cv);
	free(l);
}
