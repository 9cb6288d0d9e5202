/* libFuzzer harness for the public-key set parser (veil_keyset_parse).
 * Whatever parses must re-encode to exactly the input (the encoding is
 * canonical) and hash without error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/keyset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_keyset ks;
	uint8_t out[VEIL_KEYSET_MAX], d[32];
	size_t n = 0;

	if (veil_keyset_parse(data, size, &ks) != 0)
		return 0;
	if (veil_keyset_encode(&ks, out, sizeof(out), &n) != 0)
		abort();
	if (n != size || memcmp(out, data, n) != 0)
		abort();
	if (veil_keyset_digest(data, size, d) != 0)
		abort();
	return 0;
}
