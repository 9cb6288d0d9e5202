/* Table-driven command lines of the daemons (include/veil/opt.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "veil/base.h"
#include "veil/opt.h"

int veil_opt_int(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	/* strtoll saturates on overflow: without the errno check a max of
	 * LLONG_MAX would take "99999999999999999999" as LLONG_MAX */
	if (!*s || *end || errno == ERANGE)
		return VEIL_EINVAL;
	if (v < min || v > max)
		return VEIL_ERANGE;
	*out = v;
	return 0;
}

int veil_opt_log_level(const char *value, void *dst)
{
	int lvl = veil_log_level_parse(value);

	if (lvl < 0)
		return VEIL_EINVAL;
	*(int *)dst = lvl;
	return 0;
}

int veil_opt_dir(const char *value, void *dst)
{
	struct stat st;

	if (stat(value, &st) < 0 || !S_ISDIR(st.st_mode))
		return VEIL_EINVAL;
	*(const char **)dst = value;
	return 0;
}

int veil_opt_listen(const char *s, char *addr, size_t cap, uint16_t *port)
{
	const char *c = strrchr(s, ':');
	long long p;
	size_t len;

	if (!c || veil_opt_int(c + 1, 0, 65535, &p) < 0)
		return VEIL_EINVAL;
	len = (size_t)(c - s);
	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
	}
	if (!len || len >= cap)
		return VEIL_EINVAL;
	memcpy(addr, s, len);
	addr[len] = '\0';
	*port = (uint16_t)p;
	return 0;
}

static size_t n_words(const char *const *w)
{
	size_t n = 0;

	while (w[n])
		n++;
	return n;
}

/* A table entry that could store what its field cannot hold is a bug of
 * the program, reported before any word is read. */
static bool entry_ok(const struct veil_opt *o)
{
	if (!o->name || !o->dst)
		return false;
	switch (o->kind) {
	case VEIL_OPT_KIND_FLAG:
	case VEIL_OPT_KIND_STOP:
	case VEIL_OPT_KIND_STR:
		return true;
	case VEIL_OPT_KIND_INT:
		return (o->dst_size == 1 || o->dst_size == 2 || o->dst_size == 4 ||
			o->dst_size == 8) && o->min <= o->max && o->min >= o->dst_min &&
		       o->max <= o->dst_max;
	case VEIL_OPT_KIND_CHOICE:
		return (o->dst_size == 1 || o->dst_size == 2 || o->dst_size == 4 ||
			o->dst_size == 8) && o->words && o->words[0] &&
		       (long long)n_words(o->words) - 1 <= o->dst_max;
	case VEIL_OPT_KIND_FN:
		return o->fn != NULL;
	}
	return false;
}

/* v is within the field's range (entry_ok and the value checks): storing
 * its low dst_size bytes writes that value into a field of either
 * signedness. */
static void store_int(const struct veil_opt *o, long long v)
{
	uint8_t u8 = (uint8_t)v;
	uint16_t u16 = (uint16_t)v;
	uint32_t u32 = (uint32_t)v;
	uint64_t u64 = (uint64_t)v;

	switch (o->dst_size) {
	case 1: memcpy(o->dst, &u8, 1); break;
	case 2: memcpy(o->dst, &u16, 2); break;
	case 4: memcpy(o->dst, &u32, 4); break;
	default: memcpy(o->dst, &u64, 8); break;
	}
}

static void bad_value(const char *prog, const struct veil_opt *o)
{
	if (o->bad) {
		fprintf(stderr, "%s: %s\n", prog, o->bad);
	} else if (o->kind == VEIL_OPT_KIND_INT) {
		fprintf(stderr, "%s: %s must be %lld..%lld\n", prog, o->name, o->min, o->max);
	} else if (o->kind == VEIL_OPT_KIND_CHOICE) {
		fprintf(stderr, "%s: %s ", prog, o->name);
		for (size_t k = 0; o->words[k]; k++)
			fprintf(stderr, "%s%s", k ? "|" : "", o->words[k]);
		fputc('\n', stderr);
	} else {
		fprintf(stderr, "%s: %s: invalid value\n", prog, o->name);
	}
}

/* Stores one value; prints and returns the error when it is refused. */
static int take_value(const char *prog, const struct veil_opt *o, const char *v)
{
	long long x;
	int rc = 0;

	switch (o->kind) {
	case VEIL_OPT_KIND_STR:
		*(const char **)o->dst = v;
		break;
	case VEIL_OPT_KIND_INT:
		if ((rc = veil_opt_int(v, o->min, o->max, &x)) == 0)
			store_int(o, x);
		break;
	case VEIL_OPT_KIND_CHOICE:
		rc = VEIL_EINVAL;
		for (size_t k = 0; o->words[k] && rc < 0; k++)
			if (!strcmp(v, o->words[k])) {
				store_int(o, (long long)k);
				rc = 0;
			}
		break;
	case VEIL_OPT_KIND_FN:
		rc = o->fn(v, o->dst);
		break;
	default: /* flags take no value: not called for them */
		rc = VEIL_EINTERNAL;
		break;
	}
	if (rc < 0)
		bad_value(prog, o);
	return rc;
}

int veil_opt_parse(const struct veil_opt_cmd *cmd, int argc, char *const *argv)
{
	const char *no_value = cmd->no_value ? cmd->no_value
					     : "unknown option or missing value: ";

	for (size_t k = 0; k < cmd->n_opts; k++)
		if (!entry_ok(&cmd->opts[k])) {
			fprintf(stderr, "%s: option table: entry %zu (%s) is inconsistent\n",
				cmd->prog, k, cmd->opts[k].name ? cmd->opts[k].name : "?");
			return VEIL_EINTERNAL;
		}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const struct veil_opt *o = NULL;
		int rc;

		for (size_t k = 0; k < cmd->n_opts && !o; k++)
			if (!strcmp(a, cmd->opts[k].name))
				o = &cmd->opts[k];
		if (o && (o->kind == VEIL_OPT_KIND_FLAG || o->kind == VEIL_OPT_KIND_STOP)) {
			*(bool *)o->dst = true;
			if (o->kind == VEIL_OPT_KIND_STOP)
				return 0;
			continue;
		}
		/* The value is taken before the name is judged, as the daemons
		 * always did: "--bogus x" is one unknown option. */
		if (i + 1 >= argc) {
			fprintf(stderr, "%s: %s%s\n", cmd->prog, no_value, a);
			return VEIL_EINVAL;
		}
		i++;
		if (!o) {
			fprintf(stderr, "%s: unknown option %s\n", cmd->prog, a);
			return VEIL_EINVAL;
		}
		if ((rc = take_value(cmd->prog, o, argv[i])) < 0)
			return rc;
	}
	return 0;
}
