/* libFuzzer harness for the policy parser (veil_policy_load).  Whatever
 * loads must serialize to canonical JSON that loads again to the same
 * canonical JSON, and answer TCB questions without crashing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "veil/base.h"
#include "veil/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_policy *p = NULL, *q = NULL;
	json_t *a, *b;
	char *t;

	if (veil_policy_load(data, size, &p) != 0)
		return 0;
	a = veil_policy_to_json(p);
	if (!a)
		abort();
	t = json_dumps(a, JSON_COMPACT);
	if (!t || veil_policy_load((const uint8_t *)t, strlen(t), &q) != 0)
		abort();
	b = veil_policy_to_json(q);
	if (!b || !json_equal(a, b))
		abort();
	if (veil_policy_tcb_allows(p, "Revoked"))
		abort();
	(void)veil_policy_tcb_allows(p, "OutOfDate");
	(void)veil_policy_tcb_allows(p, NULL);
	free(t);
	json_decref(a);
	json_decref(b);
	veil_policy_free(p);
	veil_policy_free(q);
	return 0;
}
