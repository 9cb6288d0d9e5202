/* libFuzzer harness for the NVIDIA RIM (SWID tag) scanner
 * (veil_nvgpu_rim_parse), a hand-written bounded scanner of outside XML.
 * Whatever parses must be self-consistent: 1..VEIL_NVGPU_MAX_BLOCKS
 * measurements, each with at least one alternative of a hash length the
 * entry can hold, and NUL-terminated strings.  The input is copied into a
 * buffer of its exact size so that ASan catches any read past it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/nvgpu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_nvgpu_rim *rim = calloc(1, sizeof(*rim));
	char *copy = malloc(size ? size : 1);

	if (!rim || !copy)
		abort();
	if (size)
		memcpy(copy, data, size);
	if (veil_nvgpu_rim_parse(copy, size, rim) == 0) {
		if (rim->n == 0 || rim->n > VEIL_NVGPU_MAX_BLOCKS)
			abort();
		if (!memchr(rim->product, 0, sizeof(rim->product)) ||
		    !memchr(rim->version, 0, sizeof(rim->version)))
			abort();
		for (size_t i = 0; i < rim->n; i++)
			if (rim->e[i].n_alt == 0 || rim->e[i].len > sizeof(rim->e[i].hash[0]))
				abort();
	}
	free(copy);
	free(rim);
	return 0;
}
