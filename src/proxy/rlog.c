/* The receipts log of veil-proxy (--receipts FILE): JSON lines, appended,
 * made durable with fdatasync (group commit: lines written while a sync
 * runs share the next one).
 *
 * A line is written (one write(2) of the whole line, O_APPEND, in the
 * order of the calls) by the thread that logs it, before rlog_write
 * returns: a receipt line is in the file before the answer it covers is
 * released (so `veil receipts verify` right after an answer sees it), and
 * an attestation line is before every receipt line that names it.  Lines
 * come from the attestation worker and the receipt checker; the event loop
 * writes only the rare line of an exchange that failed without a receipt,
 * into the page cache.  The sync, the slow part, runs on a thread of its
 * own: no caller ever waits for the disk.  Format: docs/proxy.md,
 * "Receipts log"; `veil receipts verify FILE` re-checks it offline. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy.h"

struct rlog {
	int fd;
	pthread_t th;
	pthread_mutex_t mu;    /* orders the writes; guards what follows */
	pthread_cond_t cv;
	bool dirty;            /* written since the last sync began */
	bool stop;
	uint64_t dropped;
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

static void *syncer(void *arg)
{
	struct rlog *l = arg;

	pthread_mutex_lock(&l->mu);
	for (;;) {
		while (!l->dirty && !l->stop)
			pthread_cond_wait(&l->cv, &l->mu);
		if (!l->dirty)
			break; /* stopping, and everything is synced */
		l->dirty = false;
		pthread_mutex_unlock(&l->mu);
		if (fdatasync(l->fd) < 0)
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
	if (pthread_create(&l->th, NULL, syncer, l) != 0) {
		close(l->fd);
		pthread_mutex_destroy(&l->mu);
		pthread_cond_destroy(&l->cv);
		free(l);
		return veil_errf(VEIL_EIO, "cannot start the receipts log syncer");
	}
	*out = l;
	return 0;
}

int rlog_write(struct rlog *l, json_t *line)
{
	char *text, *t = NULL;
	size_t n = 0;
	int rc = VEIL_ENOMEM;

	if (!l) {
		json_decref(line);
		return 0;
	}
	/* serialized outside the lock; the line and its "\n" in one write */
	text = json_dumps(line, JSON_COMPACT);
	json_decref(line);
	if (text && (t = realloc(text, (n = strlen(text)) + 2))) {
		text = t;
		text[n] = '\n';
		text[n + 1] = '\0';
		rc = 0;
	}
	pthread_mutex_lock(&l->mu);
	if (rc == 0 && l->stop)
		rc = VEIL_ECANCELED;
	if (rc == 0 && (rc = write_all(l->fd, text, n + 1)) < 0)
		VEIL_ERROR(PROXY_MOD, "receipts log: write failed: %s", strerror(errno));
	if (rc == 0) {
		l->dirty = true;
		pthread_cond_signal(&l->cv);
	} else {
		l->dropped++;
	}
	pthread_mutex_unlock(&l->mu);
	if (rc < 0 && rc != VEIL_EIO)
		VEIL_ERROR(PROXY_MOD, "receipts log: a line was dropped (%s)", veil_strerror(rc));
	free(text);
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
