/* veil-node's receipt store (src/node/rstore.c, compiled in here): every
 * receipt is found until it expires or the full store drops it, oldest
 * first; growth and the hash index lose nothing; a receipt dropped before
 * the 20 minutes promised is counted; bad input is refused and freed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"

#include "../../src/node/rstore.c"

#define MIN_MS (60ull * 1000)

static char ED[RSTORE_ED_SIG_HEX + 1];
static char EC[RSTORE_EC_SIG_HEX + 1];

/* Signatures that name receipt i, so a lookup that finds the wrong slot
 * shows. */
static void sigs_for(unsigned i)
{
	uint8_t b[65];

	for (size_t k = 0; k < sizeof(b); k++)
		b[k] = (uint8_t)(i * 7 + k + (i >> 8));
	veil_hex_encode(b, 64, ED, sizeof(ED));
	EC[0] = '0';
	EC[1] = 'x';
	veil_hex_encode(b, 65, EC + 2, sizeof(EC) - 2);
}

static int add(struct rstore *s, uint64_t now, unsigned i, int *early)
{
	char id[64], *text;

	snprintf(id, sizeof(id), "chatcmpl-%08x", i);
	if (asprintf(&text, "m:%u:req:resp", i) < 0)
		return VEIL_ENOMEM;
	sigs_for(i);
	return rstore_add(s, now, id, text, ED, EC, early);
}

static int find(struct rstore *s, uint64_t now, unsigned i)
{
	char id[64], want[64];
	struct rstore_entry e;
	int rc;

	snprintf(id, sizeof(id), "chatcmpl-%08x", i);
	if ((rc = rstore_find(s, now, id, &e)) < 0)
		return rc;
	snprintf(want, sizeof(want), "m:%u:req:resp", i);
	sigs_for(i);
	assert_string_equal(e.id, id);
	assert_string_equal(e.text, want);
	assert_string_equal(e.ed_sig, ED);
	assert_string_equal(e.ec_sig, EC);
	return 0;
}

static void test_every_receipt_is_found_through_growth(void **state)
{
	struct rstore *s;
	struct rstore_stats st;
	int early;

	(void)state;
	assert_int_equal(rstore_new(5000, 60 * MIN_MS, &s), 0);
	for (unsigned i = 0; i < 5000; i++) {
		assert_int_equal(add(s, 1000 + i, i, &early), 0);
		assert_int_equal(early, 0);
	}
	rstore_stats(s, &st);
	assert_int_equal(st.n, 5000);
	assert_int_equal(st.cap, 5000); /* 8192 slots, capped */
	assert_int_equal(st.early, 0);
	for (unsigned i = 0; i < 5000; i++)
		assert_int_equal(find(s, 7000, i), 0);
	assert_int_equal(find(s, 7000, 5000), VEIL_ENOENT);
	assert_int_equal(rstore_find(s, 7000, "", &(struct rstore_entry){0}), VEIL_ENOENT);
	rstore_free(s);
}

static void test_full_store_drops_oldest_and_counts_early_drops(void **state)
{
	struct rstore *s;
	struct rstore_stats st;
	int early;

	(void)state;
	assert_int_equal(rstore_new(300, 60 * MIN_MS, &s), 0);
	for (unsigned i = 0; i < 300; i++)
		assert_int_equal(add(s, 0, i, &early), 0);
	/* 21 minutes on: the next one pushes out receipt 0, kept long enough */
	assert_int_equal(add(s, 21 * MIN_MS, 300, &early), 0);
	assert_int_equal(early, 0);
	assert_int_equal(find(s, 21 * MIN_MS, 0), VEIL_ENOENT);
	assert_int_equal(find(s, 21 * MIN_MS, 1), 0);
	assert_int_equal(find(s, 21 * MIN_MS, 300), 0);
	/* 300 more in the same millisecond: the 21-minute-old ones go
	 * quietly, then the ones from just now go early */
	for (unsigned i = 301; i < 601; i++)
		assert_int_equal(add(s, 21 * MIN_MS, i, &early), 0);
	assert_int_equal(early, 1);
	rstore_stats(s, &st);
	assert_int_equal(st.n, 300);
	assert_int_equal(st.early, 1); /* receipt 300 only */
	for (unsigned i = 0; i < 301; i++)
		assert_int_equal(find(s, 21 * MIN_MS, i), VEIL_ENOENT);
	for (unsigned i = 301; i < 601; i++)
		assert_int_equal(find(s, 21 * MIN_MS, i), 0);
	rstore_free(s);
}

static void test_receipts_expire_after_keep_ms(void **state)
{
	struct rstore *s;
	struct rstore_stats st;

	(void)state;
	assert_int_equal(rstore_new(1000, 60 * MIN_MS, &s), 0);
	for (unsigned i = 0; i < 600; i++)
		assert_int_equal(add(s, (uint64_t)i * 10 * 1000, i, NULL), 0); /* one per 10 s */
	/* at 100 minutes: those made before 40 minutes are gone */
	assert_int_equal(find(s, 100 * MIN_MS, 239), VEIL_ENOENT);
	assert_int_equal(find(s, 100 * MIN_MS, 240), 0);
	assert_int_equal(find(s, 100 * MIN_MS, 599), 0);
	rstore_stats(s, &st);
	assert_int_equal(st.n, 360);
	/* emptied by time, then used again: the index's old chains end */
	assert_int_equal(find(s, 1000 * MIN_MS, 599), VEIL_ENOENT);
	rstore_stats(s, &st);
	assert_int_equal(st.n, 0);
	assert_int_equal(add(s, 1000 * MIN_MS, 7, NULL), 0);
	assert_int_equal(find(s, 1000 * MIN_MS, 7), 0);
	assert_int_equal(find(s, 1000 * MIN_MS, 8), VEIL_ENOENT);
	rstore_free(s);
}

static void test_bad_input_is_refused_and_freed(void **state)
{
	struct rstore *s;
	struct rstore_stats st;
	char long_id[RSTORE_ID_MAX + 2];

	(void)state;
	assert_int_equal(rstore_new(0, MIN_MS, &s), VEIL_EINVAL);
	assert_null(s);
	assert_int_equal(rstore_new(10, MIN_MS, &s), 0);
	sigs_for(1);
	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	/* text is freed on every refusal (the sanitizer build would say) */
	assert_int_equal(rstore_add(s, 0, long_id, strdup("t"), ED, EC, NULL), VEIL_EINVAL);
	assert_int_equal(rstore_add(s, 0, "", strdup("t"), ED, EC, NULL), VEIL_EINVAL);
	assert_int_equal(rstore_add(s, 0, "x", strdup("t"), "ab", EC, NULL), VEIL_EINVAL);
	assert_int_equal(rstore_add(s, 0, "x", strdup("t"), ED, EC + 2, NULL), VEIL_EINVAL);
	ED[5] = 'z';
	assert_int_equal(rstore_add(s, 0, "x", strdup("t"), ED, EC, NULL), VEIL_EINVAL);
	rstore_stats(s, &st);
	assert_int_equal(st.n, 0);
	assert_int_equal(rstore_find(s, 0, long_id, &(struct rstore_entry){0}), VEIL_ENOENT);
	rstore_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_receipt_is_found_through_growth),
		cmocka_unit_test(test_full_store_drops_oldest_and_counts_early_drops),
		cmocka_unit_test(test_receipts_expire_after_keep_ms),
		cmocka_unit_test(test_bad_input_is_refused_and_freed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
