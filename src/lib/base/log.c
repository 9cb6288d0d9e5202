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

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* Text lines: a control byte (a message may quote what a peer sent, an
 * error string say) is written as \xHH, so no message can end its line
 * and forge the next one. */
static void text_str(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
}

void veil_log(enum veil_log_level lvl, const char *mod, const char *fmt, ...)
{
	char msg[1024], ts[96];
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
	pthread_mutex_lock(&log_lock);
	f = cfg.out ? cfg.out : stderr;
	if (cfg.json) {
		fprintf(f, "{\"ts\":\"%s\",\"level\":\"%s\",\"mod\":", ts, lvl_name[lvl]);
		json_str(f, mod);
		fputs(",\"msg\":", f);
		json_str(f, msg);
		fputs("}\n", f);
	} else {
		fprintf(f, "%s %-5s %s: ", ts, lvl_name[lvl], mod);
		text_str(f, msg);
		fputc('\n', f);
	}
	fflush(f);
	pthread_mutex_unlock(&log_lock);
}
