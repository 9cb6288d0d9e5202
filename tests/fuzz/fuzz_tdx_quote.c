/* Fuzzes the DCAP quote parser (veil_tdx_quote_parse): any input is either
 * refused or yields a quote whose borrowed pointers all lie inside the input
 * and whose lengths add up; then, with no collateral, veil_tdx_verify must
 * refuse without reading outside the input. */
#include <stdlib.h>

#include "veil/base.h"
#include "veil/tdx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(const uint8_t *data, size_t size, const uint8_t *p, size_t n)
{
	if (p < data || n > size || (size_t)(p - data) > size - n)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_tdx_quote q;
	struct veil_tdx_verdict v;

	if (veil_tdx_quote_parse(data, size, &q) == 0) {
		if (q.quote_len > size || q.signed_len > q.quote_len)
			abort();
		inside(data, size, q.signed_data, q.signed_len);
		inside(data, size, q.signature, 64);
		inside(data, size, q.attest_key, 64);
		inside(data, size, q.qe_report, 384);
		inside(data, size, q.qe_report_sig, 64);
		inside(data, size, q.qe_auth, q.qe_auth_len);
		inside(data, size, q.pck_data, q.pck_data_len);
		if (q.body_type < VEIL_TDX_BODY_SGX || q.body_type > VEIL_TDX_BODY_TD15)
			abort();
	}
	if (veil_tdx_verify(data, size, NULL, 0, NULL, 0, &v) == 0 || v.ok)
		abort();
	return 0;
}
