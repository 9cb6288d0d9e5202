/* Fuzzes the hex and base64 decoders: any input either decodes to a buffer
 * that re-encodes to the same text (canonical forms) or is refused. */
#include <ctype.h>
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
	{
		/* hex text: success appends exactly half the hex digits, failure
		 * appends nothing */
		struct veil_buf t = VEIL_BUF_INIT(4096);
		size_t digits = 0;

		for (size_t i = 0; i < size; i++)
			if (isxdigit(data[i]))
				digits++;
		if (veil_hex_text_decode((const char *)data, size, &t) == 0) {
			if (t.len * 2 > digits)
				abort();
		} else if (t.len != 0) {
			abort();
		}
		veil_buf_free(&t);
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
