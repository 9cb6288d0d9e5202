/* Unit tests of the opt module: the daemons' command lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "veil/base.h"
#include "veil/opt.h"

/* What veil_opt_parse printed to stderr during the last PARSE. */
static char err[1024];

static int parse_capture(const struct veil_opt_cmd *cmd, int argc, char **argv)
{
	FILE *tmp = tmpfile();
	int saved, rc;
	size_t n;

	assert_non_null(tmp);
	fflush(stderr);
	saved = dup(2);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), 2) >= 0);
	rc = veil_opt_parse(cmd, argc, argv);
	fflush(stderr);
	assert_true(dup2(saved, 2) >= 0);
	close(saved);
	rewind(tmp);
	n = fread(err, 1, sizeof(err) - 1, tmp);
	err[n] = '\0';
	fclose(tmp);
	return rc;
}

/* PARSE(&cmd, "--a", "1"): argv[0] is "prog", then the words given. */
#define PARSE(cmd, ...)                                                          \
	parse_capture((cmd),                                                     \
		      (int)(sizeof((char *[]){"prog", __VA_ARGS__}) / sizeof(char *)), \
		      (char *[]){"prog", __VA_ARGS__, NULL})

/* One table of every kind, the fields at their defaults. */
struct fixture {
	bool help, flag;
	const char *str;
	int i;
	unsigned u;
	size_t sz;
	int64_t big;
	int lvl;
	bool on;
	enum { C_A, C_B, C_C } choice;
	const char *fn_seen;
	int fn_rc;
	struct veil_opt opts[13];
	struct veil_opt_cmd cmd;
};

static const char *const abc[] = {"a", "b", "c", NULL};
static const char *const offon[] = {"off", "on", NULL};

static int fn_record(const char *v, void *dst)
{
	struct fixture *f = dst;

	if (f->fn_rc < 0)
		return f->fn_rc;
	f->fn_seen = v;
	return 0;
}

static void fixture_init(struct fixture *f)
{
	const struct veil_opt opts[] = {
		VEIL_OPT_STOP("--help", &f->help),
		VEIL_OPT_FLAG("--flag", &f->flag),
		VEIL_OPT_STR("--str", &f->str),
		VEIL_OPT_INT("--int", &f->i, -5, 10),
		VEIL_OPT_INT("--uns", &f->u, 0, UINT_MAX),
		VEIL_OPT_INT("--size", &f->sz, 1024, 1ll << 30),
		VEIL_OPT_INT("--big", &f->big, LLONG_MIN, LLONG_MAX),
		VEIL_OPT_INT_MSG("--id", &f->i, 1, 100, "--id must be a key id"),
		VEIL_OPT_FN("--log-level", veil_opt_log_level, &f->lvl, "unknown log level"),
		VEIL_OPT_CHOICE("--on", &f->on, offon),
		VEIL_OPT_CHOICE("--choice", &f->choice, abc),
		VEIL_OPT_FN("--fn", fn_record, f, NULL),
		VEIL_OPT_FN("--fn-msg", fn_record, f, "--fn-msg wants something else"),
	};

	memset(f, 0, sizeof(*f));
	f->i = 7;
	f->u = 7;
	f->sz = 7;
	f->big = 7;
	f->lvl = VEIL_LOG_INFO;
	f->choice = C_B;
	_Static_assert(sizeof(opts) == sizeof(f->opts), "fixture table size");
	memcpy(f->opts, opts, sizeof(opts));
	f->cmd = (struct veil_opt_cmd){"prog", f->opts, VEIL_ARRAY_LEN(f->opts), NULL};
}

static void test_no_words_changes_nothing(void **state)
{
	struct fixture f;
	char *argv[] = {"prog", NULL};

	(void)state;
	fixture_init(&f);
	assert_int_equal(parse_capture(&f.cmd, 1, argv), 0);
	assert_false(f.flag);
	assert_null(f.str);
	assert_int_equal(f.i, 7);
	assert_int_equal(f.choice, C_B);
	assert_string_equal(err, "");
}

static void test_flags_and_strings_store_argv_pointers(void **state)
{
	struct fixture f;
	char *argv[] = {"prog", "--flag", "--str", "hello", NULL};

	(void)state;
	fixture_init(&f);
	assert_int_equal(parse_capture(&f.cmd, 4, argv), 0);
	assert_true(f.flag);
	assert_ptr_equal(f.str, argv[3]); /* not copied: argv owns it */
	assert_false(f.help);
	assert_string_equal(err, "");
}

static void test_value_is_next_word_even_if_it_looks_like_an_option(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f);
	assert_int_equal(PARSE(&f.cmd, "--str", "--help", "--flag"), 0);
	assert_string_equal(f.str, "--help");
	assert_false(f.help);
	assert_true(f.flag);
}

static void test_stop_flag_ends_the_walk(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f);
	assert_int_equal(PARSE(&f.cmd, "--flag", "--help", "--bogus", "--int", "99"), 0);
	assert_true(f.help);
	assert_true(f.flag);
	assert_int_equal(f.i, 7);
	assert_string_equal(err, "");
	/* an error before it still wins */
	fixture_init(&f);
	assert_int_equal(PARSE(&f.cmd, "--bogus", "x", "--help"), VEIL_EINVAL);
	assert_false(f.help);
	assert_string_equal(err, "prog: unknown option --bogus\n");
}

static void test_repeated_option_last_wins(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f);
	assert_int_equal(PARSE(&f.cmd, "--int", "1", "--str", "a", "--int", "-2", "--str",
			       "b", "--on", "on", "--on", "off", "--flag", "--flag"), 0);
	assert_int_equal(f.i, -2);
	assert_string_equal(f.str, "b");
	assert_false(f.on);
	assert_true(f.flag);
}

static void test_integer_bounds_are_inclusive(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f);
	assert_int_equal(PARSE(&f.cmd, "--int", "-5"), 0);
	assert_int_equal(f.i, -5);
	assert_int_equal(PARSE(&f.cmd, "--int", "10"), 0);
	assert_int_equal(f.i, 10);
	assert_int_equal(PARSE(&f.cmd, "--int", "11"), VEIL_ERANGE);
	assert_string_equal(err, "prog: --int must be -5..10\n");
	assert_int_equal(f.i, 10); /* a refused value is not stored */
	assert_int_equal(PARSE(&f.cmd, "--int", "-6"), VEIL_ERANGE);
	assert_string_equal(err, "prog: --int must be -5..10\n");
	assert_int_equal(PARSE(&f.cmd, "--size", "1023"), VEIL_ERANGE);
	assert_string_equal(err, "prog: --size must be 1024..1073741824\n");
	assert_int_equal(PARSE(&f.cmd, "--size", "1073741824"), 0);
	assert_int_equal(f.sz, 1ull << 30);
}

static void test_integer_refuses_garbage_negative_and_overflow(void **state)
{
	static const char *const bad[] = {
		"", "12abc", "abc", "1.5", "0x10", "1e3", "2048 ", "--flag", "-",
		"99999999999999999999", "-99999999999999999999",
	};
	struct fixture f;

	(void)state;
	fixture_init(&f);
	for (size_t k = 0; k < VEIL_ARRAY_LEN(bad); k++) {
		char *argv[] = {"prog", "--size", (char *)bad[k], NULL};

		assert_int_equal(parse_capture(&f.cmd, 3, argv), VEIL_EINVAL);
		assert_string_equal(err, "prog: --size must be 1024..1073741824\n");
		assert_int_equal(f.sz, 7);
	}
	assert_int_equal(PARSE(&f.cmd, "--uns", "-1"), VEIL_ERANGE);
	assert_string_equal(err, "prog: --uns must be 0..4294967295\n");
	assert_int_equal(f.u, 7);
	assert_int_equal(PARSE(&f.cmd, "--uns", "4294967296"), VEIL_ERANGE);
	/* a range up to LLONG_MAX still refuses what a long long cannot hold */
	assert_int_equal(PARSE(&f.cmd, "--big", "99999999999999999999"), VEIL_EINVAL);
	assert_int_equal(PARSE(&f.cmd, "--big", "-9223372036854775809"), VEIL_EINVAL);
	assert_int_equal(f.big, 7);
	assert_int_equal(PARSE(&f.cmd, "--big", "9223372036854775807"), 0);
	assert_true(f.big == INT64_MAX);
	assert_int_equal(PARSE(&f.cmd, "--big", "-9223372036854775808"), 0);
	assert_true(f.big == INT64_MIN);
}

static void test_integer_follows_strtoll_for_blanks_and_signs(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f);
	/* what the daemons always accepted */
	assert_int_equal(PARSE(&f.cmd, "--size", " 2048"), 0);
	assert_int_equal(f.sz, 2048);
	assert_int_equal(PARSE(&f.cmd, "--size", "+4096"), 0);
	assert_int_equal(f.sz, 4096);
	assert_int_equal(PARSE(&f.cmd, "--uns", "4294967295"), 0);
	assert_true(f.u == UINT_MAX);
}

static void test_int_helper_writes_only_on_success(void **state)
{
	long long x = 42;

	(void)state;
	assert_int_equal(veil_opt_int("12abc", 0, 100, &x), VEIL_EINVAL);
	assert_int_equal(veil_opt_int("", 0, 100, &x), VEIL_EINVAL);
	assert_int_equal(veil_opt_int("-1", 0, 100, &x), VEIL_ERANGE);
	assert_int_equal(veil_opt_int("101", 0, 100, &x), VEIL_ERANGE);
	assert_int_equal(veil_opt_int("99999999999999999999", 0, LLONG_MAX, &x), VEIL_EINVAL);
	assert_int_equal(x, 42);
	assert_int_equal(veil_opt_int("100", 0, 100, &x), 0);
	assert_int_equal(x, 100);
}

static void test_missing_value_names_the_option(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f);
	assert_int_equal(PARSE(&f.cmd, "--flag", "--int"), VEIL_EINVAL);
	assert_string_equal(err, "prog: unknown option or missing value: --int\n");
	assert_int_equal(PARSE(&f.cmd, "--bogus"), VEIL_EINVAL);
	assert_string_equal(err, "prog: unknown option or missing value: --bogus\n");
	f.cmd.no_value = "missing value for ";
	assert_int_equal(PARSE(&f.cmd, "--str"), VEIL_EINVAL);
	assert_string_equal(err, "prog: missing value for --str\n");
	assert_null(f.str);
}

static void test_unknown_option_is_refused_with_its_value(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f);
	assert_int_equal(PARSE(&f.cmd, "--bogus", "--flag"), VEIL_EINVAL);
	assert_string_equal(err, "prog: unknown option --bogus\n");
	assert_false(f.flag);
	/* no --name=value form, no positional words */
	assert_int_equal(PARSE(&f.cmd, "--int=3", "x"), VEIL_EINVAL);
	assert_string_equal(err, "prog: unknown option --int=3\n");
	assert_int_equal(PARSE(&f.cmd, "file", "x"), VEIL_EINVAL);
	assert_string_equal(err, "prog: unknown option file\n");
	/* names are exact: a prefix is not enough */
	assert_int_equal(PARSE(&f.cmd, "--fla", "x"), VEIL_EINVAL);
	assert_string_equal(err, "prog: unknown option --fla\n");
}

static void test_choice_stores_index_at_field_width(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f);
	assert_int_equal(PARSE(&f.cmd, "--choice", "c", "--on", "on"), 0);
	assert_int_equal(f.choice, C_C);
	assert_true(f.on);
	assert_int_equal(PARSE(&f.cmd, "--choice", "A"), VEIL_EINVAL);
	assert_string_equal(err, "prog: --choice a|b|c\n");
	assert_int_equal(f.choice, C_C);
	assert_int_equal(PARSE(&f.cmd, "--on", ""), VEIL_EINVAL);
	assert_string_equal(err, "prog: --on off|on\n");
	assert_true(f.on);
}

static void test_custom_messages_and_callbacks(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f);
	assert_int_equal(PARSE(&f.cmd, "--id", "0"), VEIL_ERANGE);
	assert_string_equal(err, "prog: --id must be a key id\n");
	assert_int_equal(PARSE(&f.cmd, "--log-level", "WARN"), 0);
	assert_int_equal(f.lvl, VEIL_LOG_WARN);
	assert_int_equal(PARSE(&f.cmd, "--log-level", "loud"), VEIL_EINVAL);
	assert_string_equal(err, "prog: unknown log level\n");
	assert_int_equal(f.lvl, VEIL_LOG_WARN);
	assert_int_equal(PARSE(&f.cmd, "--fn", "v"), 0);
	assert_string_equal(f.fn_seen, "v");
	f.fn_rc = VEIL_ENOTSUP;
	assert_int_equal(PARSE(&f.cmd, "--fn", "w"), VEIL_ENOTSUP);
	assert_string_equal(err, "prog: --fn: invalid value\n");
	assert_int_equal(PARSE(&f.cmd, "--fn-msg", "w"), VEIL_ENOTSUP);
	assert_string_equal(err, "prog: --fn-msg wants something else\n");
	assert_string_equal(f.fn_seen, "v");
}

static void test_impossible_table_is_refused_before_any_word(void **state)
{
	int small = 3;
	bool b = false;
	bool flag = false;
	struct veil_opt too_wide[] = {
		VEIL_OPT_FLAG("--flag", &flag),
		VEIL_OPT_INT("--small", &small, 0, 1ll << 40),
	};
	struct veil_opt too_many[] = {VEIL_OPT_CHOICE("--b", &b, abc)};
	struct veil_opt no_words[] = {VEIL_OPT_CHOICE("--b", &b, (const char *const[]){NULL})};
	struct veil_opt_cmd cmd = {"prog", too_wide, VEIL_ARRAY_LEN(too_wide), NULL};

	(void)state;
	assert_int_equal(PARSE(&cmd, "--flag"), VEIL_EINTERNAL);
	assert_false(flag);
	assert_string_equal(err, "prog: option table: entry 1 (--small) is inconsistent\n");
	cmd = (struct veil_opt_cmd){"prog", too_many, 1, NULL};
	assert_int_equal(PARSE(&cmd, "--b", "a"), VEIL_EINTERNAL);
	cmd = (struct veil_opt_cmd){"prog", no_words, 1, NULL};
	assert_int_equal(PARSE(&cmd, "--b", "a"), VEIL_EINTERNAL);
	assert_false(b);
	assert_int_equal(small, 3);
}

static void test_listen_splits_host_and_port(void **state)
{
	char addr[16] = "unchanged";
	uint16_t port = 7;

	(void)state;
	assert_int_equal(veil_opt_listen("127.0.0.1:8443", addr, sizeof(addr), &port), 0);
	assert_string_equal(addr, "127.0.0.1");
	assert_int_equal(port, 8443);
	assert_int_equal(veil_opt_listen("[::1]:0", addr, sizeof(addr), &port), 0);
	assert_string_equal(addr, "::1");
	assert_int_equal(port, 0);
	assert_int_equal(veil_opt_listen("h:65535", addr, sizeof(addr), &port), 0);
	assert_int_equal(port, 65535);

	strcpy(addr, "unchanged");
	port = 7;
	assert_int_equal(veil_opt_listen("h:65536", addr, sizeof(addr), &port), VEIL_EINVAL);
	assert_int_equal(veil_opt_listen("h:-1", addr, sizeof(addr), &port), VEIL_EINVAL);
	assert_int_equal(veil_opt_listen("h:", addr, sizeof(addr), &port), VEIL_EINVAL);
	assert_int_equal(veil_opt_listen("8443", addr, sizeof(addr), &port), VEIL_EINVAL);
	assert_int_equal(veil_opt_listen(":8443", addr, sizeof(addr), &port), VEIL_EINVAL);
	assert_int_equal(veil_opt_listen("[]:1", addr, sizeof(addr), &port), VEIL_EINVAL);
	/* 16 bytes of address do not fit 16 with the NUL; 15 do */
	assert_int_equal(veil_opt_listen("0123456789abcdef:1", addr, sizeof(addr), &port),
			 VEIL_EINVAL);
	assert_string_equal(addr, "unchanged");
	assert_int_equal(port, 7);
	assert_int_equal(veil_opt_listen("0123456789abcde:1", addr, sizeof(addr), &port), 0);
	assert_string_equal(addr, "0123456789abcde");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_words_changes_nothing),
		cmocka_unit_test(test_flags_and_strings_store_argv_pointers),
		cmocka_unit_test(test_value_is_next_word_even_if_it_looks_like_an_option),
		cmocka_unit_test(test_stop_flag_ends_the_walk),
		cmocka_unit_test(test_repeated_option_last_wins),
		cmocka_unit_test(test_integer_bounds_are_inclusive),
		cmocka_unit_test(test_integer_refuses_garbage_negative_and_overflow),
		cmocka_unit_test(test_integer_follows_strtoll_for_blanks_and_signs),
		cmocka_unit_test(test_int_helper_writes_only_on_success),
		cmocka_unit_test(test_missing_value_names_the_option),
		cmocka_unit_test(test_unknown_option_is_refused_with_its_value),
		cmocka_unit_test(test_choice_stores_index_at_field_width),
		cmocka_unit_test(test_custom_messages_and_callbacks),
		cmocka_unit_test(test_impossible_table_is_refused_before_any_word),
		cmocka_unit_test(test_listen_splits_host_and_port),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
