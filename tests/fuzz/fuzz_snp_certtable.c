/* libFuzzer harness for the SEV-SNP certificate table scanner
 * (snp_cert_table_vcek, src/lib/attest/gen/tsm.c: the configfs-tsm auxblob
 * / extended-report GUID table of {GUID, u32 offset, u32 length} entries).
 * Whatever it returns must lie inside the input, be non-empty, and belong to
 * an entry before the first all-zero one.  The input is copied into a buffer
 * of its exact size so that ASan catches any read past it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "../../src/lib/attest/gen/gen_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);
	const uint8_t *der = NULL;
	size_t len = 0;
	int rc;

	if (!copy)
		abort();
	if (size)
		memcpy(copy, data, size);
	rc = snp_cert_table_vcek(copy, size, &der, &len);
	if (rc == 0) {
		if (!der || len == 0 || der < copy || len > size ||
		    (size_t)(der - copy) > size - len)
			abort();
	} else if (rc != VEIL_ENOENT && rc != VEIL_EFORMAT) {
		abort();
	}
	free(copy);
	return 0;
}
