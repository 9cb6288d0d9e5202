/* veil opt module: the command lines of the daemons (veil-node,
 * veil-gateway and its `keys` subcommand, veil-proxy), read from one table.
 *
 * A table lists each option once: its name as typed, what it takes and
 * where it goes.  veil_opt_parse walks argv left to right:
 *
 *   - an option without a value (flag) sets its bool; a "stop" flag
 *     (--help) sets its bool and ends the walk at once, so what follows it
 *     is not looked at;
 *   - any other word takes the next word as its value, whatever it looks
 *     like ("--model --help" names a model called "--help"), then is looked
 *     up: an unknown word and its value are refused together;
 *   - a repeated option: the last value wins.
 *
 * There are no "--name=value" forms, no bundled short flags and no
 * positional words: such a word is an unknown option.  Messages go to
 * stderr as "<prog>: <message>", in the exact words the daemons always
 * printed (tests and tools match them):
 *
 *   <prog>: unknown option or missing value: X   last word wants a value
 *   <prog>: unknown option X                     X is not in the table
 *   <prog>: --max-body must be 1024..1073741824  integer out of range
 *   <prog>: --tee auto|tdx|sev-snp|sim           not one of the words
 *
 * Strings stay argv's: a string option stores argv's pointer, nothing is
 * copied or freed, so the values live as long as argv (all of main).
 * Nothing is allocated; a table is plain data, usually on main's stack. */
#ifndef VEIL_OPT_H
#define VEIL_OPT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum veil_opt_kind {
	VEIL_OPT_KIND_FLAG,   /* no value: *(bool *)dst = true */
	VEIL_OPT_KIND_STOP,   /* no value: *(bool *)dst = true, the walk ends (--help) */
	VEIL_OPT_KIND_STR,    /* *(const char **)dst = the value (argv's pointer) */
	VEIL_OPT_KIND_INT,    /* veil_opt_int(value, min, max), stored at dst */
	VEIL_OPT_KIND_CHOICE, /* the index of the value in words[], stored at dst */
	VEIL_OPT_KIND_FN,     /* fn(value, dst) takes it or refuses it (< 0) */
};

/* One option.  Fill it with the macros below: they check the type of dst
 * at compile time and record its size and range, so a value is stored at
 * the width of the field it goes to (bool, int, unsigned, size_t, an
 * enum, int64_t ...). */
struct veil_opt {
	const char *name;            /* exactly as typed: "--max-body", "-h" */
	enum veil_opt_kind kind;
	void *dst;
	size_t dst_size;             /* INT, CHOICE: sizeof *dst ... */
	long long dst_min, dst_max;  /* ... and the range its type holds */
	long long min, max;          /* INT: the accepted values */
	const char *const *words;    /* CHOICE: NULL-terminated, case-sensitive */
	int (*fn)(const char *value, void *dst); /* FN */
	/* The message, after "<prog>: ", for a refused value; NULL: the
	 * defaults above ("<name> must be <min>..<max>", "<name> w1|w2"),
	 * for FN "<name>: invalid value". */
	const char *bad;
};

/* The range of the integer type of *p (a compile error for other types). */
#define VEIL_OPT_TMIN_(p)                                                        \
	_Generic(*(p), bool: 0LL, int: (long long)INT_MIN, unsigned: 0LL,        \
		 long: (long long)LONG_MIN, unsigned long: 0LL, long long: LLONG_MIN, \
		 unsigned long long: 0LL)
#define VEIL_OPT_TMAX_(p)                                                        \
	_Generic(*(p), bool: 1LL, int: (long long)INT_MAX,                       \
		 unsigned: (long long)UINT_MAX, long: (long long)LONG_MAX,       \
		 unsigned long: (ULONG_MAX > LLONG_MAX ? LLONG_MAX : (long long)ULONG_MAX), \
		 long long: LLONG_MAX, unsigned long long: LLONG_MAX)

#define VEIL_OPT_FLAG(n, p)                                                      \
	{.name = (n), .kind = VEIL_OPT_KIND_FLAG, .dst = _Generic((p), bool *: (p))}
#define VEIL_OPT_STOP(n, p)                                                      \
	{.name = (n), .kind = VEIL_OPT_KIND_STOP, .dst = _Generic((p), bool *: (p))}
#define VEIL_OPT_STR(n, p)                                                       \
	{.name = (n), .kind = VEIL_OPT_KIND_STR,                                 \
	 .dst = _Generic((p), const char **: (p))}
#define VEIL_OPT_INT_MSG(n, p, lo, hi, msg)                                      \
	{.name = (n), .kind = VEIL_OPT_KIND_INT, .dst = (p), .dst_size = sizeof(*(p)), \
	 .dst_min = VEIL_OPT_TMIN_(p), .dst_max = VEIL_OPT_TMAX_(p), .min = (lo), \
	 .max = (hi), .bad = (msg)}
#define VEIL_OPT_INT(n, p, lo, hi) VEIL_OPT_INT_MSG(n, p, lo, hi, NULL)
#define VEIL_OPT_CHOICE(n, p, w)                                                 \
	{.name = (n), .kind = VEIL_OPT_KIND_CHOICE, .dst = (p),                  \
	 .dst_size = sizeof(*(p)), .dst_min = VEIL_OPT_TMIN_(p),                 \
	 .dst_max = VEIL_OPT_TMAX_(p), .words = (w)}
#define VEIL_OPT_FN(n, f, p, msg)                                                \
	{.name = (n), .kind = VEIL_OPT_KIND_FN, .dst = (p), .fn = (f), .bad = (msg)}

/* One command line: its table and the words of its messages. */
struct veil_opt_cmd {
	const char *prog;            /* starts every message: "veil-node" */
	const struct veil_opt *opts;
	size_t n_opts;
	/* Message head when the last word wants a value; NULL: "unknown
	 * option or missing value: " (`veil-gateway keys` says "missing
	 * value for "). */
	const char *no_value;
};

/* Walks argv[1..argc-1] (argv[0] is the program or subcommand, skipped) and
 * stores each option at its dst; what is not given keeps the value it had,
 * so defaults are set before.  0 when every word was taken (or a STOP
 * option ended the walk: its bool says so); otherwise the first error is
 * printed to stderr and returned: VEIL_EINVAL (unknown option, missing
 * value, not a number, not one of the words), VEIL_ERANGE (a number out of
 * range), an FN callback's code, or VEIL_EINTERNAL for a table that cannot
 * be right (an integer range its field cannot hold).  Options already
 * stored when an error comes stay stored; callers exit. */
int veil_opt_parse(const struct veil_opt_cmd *cmd, int argc, char *const *argv);

/* The integer rule of every INT option: the whole of `s` is one decimal
 * number (as strtoll reads it: leading blanks and a sign allowed) within
 * [min, max].  VEIL_EINVAL when `s` is empty, has anything after the digits
 * or overflows a long long; VEIL_ERANGE when outside [min, max].  *out is
 * written only on success. */
int veil_opt_int(const char *s, long long min, long long max, long long *out);

/* An FN callback for --log-level: veil_log_level_parse's words ("debug",
 * "info", "warn", "error", "off", any case) into *(int *)dst. */
int veil_opt_log_level(const char *value, void *dst);

/* An FN callback for a flag naming an existing directory: the value as
 * given into *(const char **)dst; VEIL_EINVAL when it is not one. */
int veil_opt_dir(const char *value, void *dst);

/* Splits a --listen value "ADDR:PORT" or "[V6ADDR]:PORT" at its last ':'
 * into `addr` (NUL-terminated, brackets removed, at most cap - 1 bytes)
 * and a port 0..65535 (veil_opt_int).  VEIL_EINVAL when malformed, empty
 * or too long for `cap`; out-params are written only on success. */
int veil_opt_listen(const char *s, char *addr, size_t cap, uint16_t *port);

#endif
