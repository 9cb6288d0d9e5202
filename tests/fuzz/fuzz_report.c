/* libFuzzer harness for the attestation-report verifiers.  The first input
 * byte picks the verifier (mod 2): 0 = veil_report_verify (veil-report/1,
 * simulated evidence allowed, nonce skipped), 1 = veil_nearai_verify; the
 * rest is the JSON document.  The verification time is the document's own
 * "generated_at" when it has one, so a seed from `veil attest sim-report`
 * keeps reaching the deep checks long after it was made.  Whatever the
 * input, a verdict must come back whose JSON agrees with the return value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "veil/base.h"
#include "veil/report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_report_opts o;
	struct veil_report_verdict v;
	json_t *doc;
	int rc;

	if (size < 1)
		return 0;
	memset(&o, 0, sizeof(o));
	o.allow_sim = true;
	o.skip_nonce = true;
	o.now = 1767225600; /* 2026-01-01, when the document says nothing */
	doc = json_loadb((const char *)data + 1, size - 1, 0, NULL);
	if (json_is_integer(json_object_get(doc, "generated_at")))
		o.now = (int64_t)json_integer_value(json_object_get(doc, "generated_at"));
	json_decref(doc);
	if (data[0] % 2 == 0)
		rc = veil_report_verify(data + 1, size - 1, &o, &v);
	else
		rc = veil_nearai_verify(data + 1, size - 1, &o, &v);
	if (v.json && json_is_true(json_object_get(v.json, "ok")) != (rc == 0))
		abort();
	if (v.ok != (rc == 0) || (rc < 0 && !v.error[0]))
		abort();
	veil_report_verdict_free(&v);
	return 0;
}
