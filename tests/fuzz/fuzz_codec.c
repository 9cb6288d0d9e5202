/* Fuzzes the hex and base64 decoders: any input either decodes to a buffer
 * that re-encodes to the same text (canonical forms) or is refused. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "veil/base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[4096];
	char re[8200];
	size_t n;

	if (size > 4096)
		return 0;
	if (veil_hex_decode((const char *)data, size, out, sizeof(out), &n) == 0) {
		if (veil_hex_encode(out, n, re, sizeof(re)) != 0 || strlen(re) != size)
			abort();
		if (strncasecmp(re, (const char *)data, size))
			abort();
	}
	for (unsigned flags = 0; flags < 4; flags++) {
		if (veil_b64_decode((const char *)data, size, flags, out, sizeof(out), &n) == 0) {
			size_t len = veil_b64_encoded_len(n, flags);

			if (veil_b64_encode(out, n, flags, re, sizeof(re)) != 0)
				abort();
			/* Unpadded input accepted under NOPAD re-encodes unpadded. */
			if (strlen(re) != len)
				abort();
			if (!(flags & VEIL_B64_NOPAD) && (len != size || memcmp(re, data, size)))
				abort();
		}
	}
	return 0;
}
