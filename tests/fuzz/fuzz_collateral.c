/* Fuzzes the DCAP collateral parser (dcap-qvl JSON layout, nested TCB info
 * and QE identity JSON, hex CRLs, PEM chains): any input is refused or
 * parses into collateral that frees cleanly. */
#include <stdlib.h>

#include "veil/base.h"
#include "veil/tdx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_tdx_collateral *c = NULL;

	if (size > 1u << 20)
		return 0;
	if (veil_tdx_collateral_parse(data, size, &c) == 0) {
		if (!c)
			abort();
		veil_tdx_collateral_free(c);
	} else if (c) {
		abort();
	}
	return 0;
}
