/* libFuzzer harness for the public PCCS parsers of outside input
 * (include/veil/pccs.h):
 *   byte 0 even: veil_pccs_collateral_next_update() on the rest (the cache
 *                file reader: dcap-qvl JSON, nested TCB info / QE identity
 *                JSON, hex DER CRLs);
 *   byte 0 odd:  veil_pccs_quote_target() on the rest (quote parser, PEM PCK
 *                chain, issuer CN, SGX extension ASN.1 -> FMSPC).
 * The HTTP response scanners (signed_body, raw_member, crl_body, url_decode)
 * are static and run under fuzz_pccs_fetch.  Results must be consistent:
 * a CA is "processor" or "platform", a TEE TDX or SGX. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/pccs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;
	size_t n;

	if (size < 1 || size > (1u << 20))
		return 0;
	n = size - 1;
	copy = malloc(n ? n : 1);
	if (!copy)
		abort();
	if (n)
		memcpy(copy, data + 1, n);
	if ((data[0] & 1) == 0) {
		int64_t t = 0;

		(void)veil_pccs_collateral_next_update(copy, n, &t);
	} else {
		uint8_t fmspc[6];
		const char *ca = NULL;
		enum veil_pccs_tee tee = (enum veil_pccs_tee)-1;

		if (veil_pccs_quote_target(copy, n, fmspc, &ca, &tee) == 0) {
			if (!ca || (strcmp(ca, "processor") && strcmp(ca, "platform")))
				abort();
			if (tee != VEIL_PCCS_TDX && tee != VEIL_PCCS_SGX)
				abort();
		}
	}
	free(copy);
	return 0;
}
