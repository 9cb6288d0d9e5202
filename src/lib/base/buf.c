/* Capped dynamic buffers and secrets. */
#include "veil/base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int veil_buf_reserve(struct veil_buf *b, size_t extra)
{
	size_t need, ncap;
	uint8_t *n;

	/* +1 keeps room for the NUL terminator after len. */
	if (veil_add_ovf(b->len, extra, &need) || veil_add_ovf(need, 1, &need))
		return veil_errf(VEIL_EOVERFLOW, "buffer: size overflow");
	if (need - 1 > b->max)
		return veil_errf(VEIL_ERANGE, "buffer: %zu bytes exceeds cap %zu",
				 need - 1, b->max);
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 64;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	if (ncap > b->max + 1)
		ncap = b->max + 1;
	if (b->secret) {
		/* realloc could leave a copy of the secret behind: copy and wipe. */
		n = malloc(ncap);
		if (!n)
			return VEIL_ENOMEM;
		if (b->data) {
			memcpy(n, b->data, b->len + 1);
			veil_wipe(b->data, b->cap);
			free(b->data);
		}
	} else {
		n = realloc(b->data, ncap);
		if (!n)
			return VEIL_ENOMEM;
	}
	b->data = n;
	b->cap = ncap;
	return 0;
}

int veil_buf_append(struct veil_buf *b, const void *p, size_t n)
{
	int rc;

	if ((rc = veil_buf_reserve(b, n)) < 0)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int veil_buf_append_str(struct veil_buf *b, const char *s)
{
	return veil_buf_append(b, s, strlen(s));
}

int veil_buf_vappendf(struct veil_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n, rc;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return VEIL_EINVAL;
	if ((rc = veil_buf_reserve(b, (size_t)n)) < 0)
		return rc;
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int veil_buf_appendf(struct veil_buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = veil_buf_vappendf(b, fmt, ap);
	va_end(ap);
	return rc;
}

void veil_buf_reset(struct veil_buf *b)
{
	if (b->data && b->secret)
		veil_wipe(b->data, b->cap);
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void veil_buf_free(struct veil_buf *b)
{
	if (b->data && b->secret)
		veil_wipe(b->data, b->cap);
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

uint8_t *veil_buf_steal(struct veil_buf *b, size_t *len)
{
	uint8_t *p = b->data;

	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}

int veil_buf_read_fd(struct veil_buf *b, int fd)
{
	int rc;

	for (;;) {
		size_t room;
		ssize_t r;

		/* Read in 64 KiB steps, but never ask for more than the cap
		 * allows plus one byte (to detect a too-large input). */
		room = b->max - b->len < 65536 ? b->max - b->len : 65536;
		if (room == 0) {
			char c;

			r = read(fd, &c, 1);
			if (r == 0)
				return 0;
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return veil_errf(VEIL_EIO, "read: %s", strerror(errno));
			return veil_errf(VEIL_ERANGE, "input exceeds cap %zu", b->max);
		}
		if ((rc = veil_buf_reserve(b, room)) < 0)
			return rc;
		r = read(fd, b->data + b->len, room);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return veil_errf(VEIL_EIO, "read: %s", strerror(errno));
		if (r == 0)
			return 0;
		b->len += (size_t)r;
		b->data[b->len] = '\0';
	}
}

int veil_buf_read_file(struct veil_buf *b, const char *path)
{
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return veil_errf(errno == ENOENT ? VEIL_ENOENT : VEIL_EIO,
				 "%s: %s", path, strerror(errno));
	rc = veil_buf_read_fd(b, fd);
	close(fd);
	return rc;
}

int veil_secret_alloc(struct veil_secret *s, size_t len)
{
	s->bytes = calloc(1, len ? len : 1);
	if (!s->bytes)
		return VEIL_ENOMEM;
	s->len = len;
	return 0;
}

void veil_secret_free(struct veil_secret *s)
{
	if (s->bytes) {
		veil_wipe(s->bytes, s->len);
		free(s->bytes);
	}
	s->bytes = NULL;
	s->len = 0;
}
