/* Leveled logging to a stream, as text lines or JSON lines.  Messages
 * describe events; callers never pass content or secrets (see base.h). */
#include "veil/base.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static struct {
	enum veil_log_level min;
	bool json;
	FILE *out;
} cfg = {VEIL_LOG_INFO, false, NULL};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *lvl_name[] = {"debug", "info", "warn", "error"};

void veil_log_setup(enum veil_log_level min, bool json, FILE *out)
{
	pthread_mutex_lock(&log_lock);
	cfg.min = min;
	cfg.json = json;
	cfg.out = out;
	pthread_mutex_unlock(&log_lock);
}

int veil_log_level_parse(const char *s)
{
	static const char *names[] = {"debug", "info", "warn", "error", "off"};

	for (size_t i = 0; i < VEIL_ARRAY_LEN(names); i++)
		if (!strcasecmp(s, names[i]))
			return (int)i;
	return -1;
}

bool veil_log_enabled(enum veil_log_level lvl)
{
	return lvl >= cfg.min && lvl < VEIL_LOG_OFF;
}

/* The line is assembled here and written with one call: stderr is
 * unbuffered, and a write per character would be a system call per
 * character (a log line on a request's path costs one). */
struct line {
	char b[6 * 1024 + 256];    /* a 1023-byte message, every byte escaped */
	size_t n;
};

static void put(struct line *l, const char *s, size_t n)
{
	n = VEIL_MIN(n, sizeof(l->b) - 1 - l->n); /* room for the newline */
	memcpy(l->b + l->n, s, n);
	l->n += n;
}

static void put_str(struct line *l, const char *s)
{
	put(l, s, strlen(s));
}

/* JSON: a string literal. */
static void json_str(struct line *l, const char *s)
{
	char e[8];

	put(l, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			put(l, e, 2);
		} else if (c == '\n') {
			put(l, "\\n", 2);
		} else if (c < 0x20) {
			snprintf(e, sizeof(e), "\\u%04x", c);
			put(l, e, 6);
		} else {
			put(l, (const char *)&c, 1);
		}
	}
	put(l, "\"", 1);
}

/* Text: a control byte (a message may quote what a peer sent, an error
 * string say) is written as \xHH, so no message can end its line and
 * forge the next one. */
static void text_str(struct line *l, const char *s)
{
	char e[8];

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f) {
			snprintf(e, sizeof(e), "\\x%02x", c);
			put(l, e, 4);
		} else {
			put(l, (const char *)&c, 1);
		}
	}
}

void veil_log(enum veil_log_level lvl, const char *mod, const char *fmt, ...)
{
	static __thread struct line line; /* 6 KiB: not on a worker's stack */
	char msg[1024], ts[96], head[160];
	struct timespec now;
	struct tm tm;
	va_list ap;
	FILE *f;

	if (!veil_log_enabled(lvl))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (long)(now.tv_nsec / 1000000) % 1000);
	line.n = 0;
	if (cfg.json) {
		snprintf(head, sizeof(head), "{\"ts\":\"%s\",\"level\":\"%s\",\"mod\":", ts,
			 lvl_name[lvl]);
		put_str(&line, head);
		json_str(&line, mod);
		put_str(&line, ",\"msg\":");
		json_str(&line, msg);
		put_str(&line, "}");
	} else {
		snprintf(head, sizeof(head), "%s %-5s %s: ", ts, lvl_name[lvl], mod);
		put_str(&line, head);
		text_str(&line, msg);
	}
	line.b[line.n++] = '\n';
	pthread_mutex_lock(&log_lock);
	f = cfg.out ? cfg.out : stderr;
	fwrite(line.b, 1, line.n, f);
	fflush(f);
	pthread_mutex_unlock(&log_lock);
}
