/* libFuzzer harness for the NVIDIA SPDM evidence parser (veil_nvgpu_parse).
 * Whatever parses must be self-consistent: the signature lies inside the
 * input right after the signed bytes, every block and TLV lies inside it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/nvgpu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct veil_nvgpu_evidence ev;

	if (veil_nvgpu_parse(data, size, &ev) != 0)
		return 0;
	if (ev.signed_len + VEIL_NVGPU_SIG_LEN + ev.trailing != size)
		abort();
	if (memcmp(ev.sig, data + ev.signed_len, VEIL_NVGPU_SIG_LEN) != 0)
		abort();
	if (memcmp(ev.nonce, data + 4, VEIL_NVGPU_NONCE_LEN) != 0)
		abort();
	if (ev.opaque_off + ev.opaque_len != ev.signed_len || ev.n_blocks > VEIL_NVGPU_MAX_BLOCKS)
		abort();
	for (size_t i = 0; i < ev.n_tlvs; i++)
		if (ev.tlvs[i].off + ev.tlvs[i].len > ev.opaque_len)
			abort();
	for (size_t i = 0; i < ev.n_blocks; i++)
		if (ev.blocks[i].value_len > VEIL_NVGPU_VALUE_MAX)
			abort();
	if (!ev.driver_version[0] || !ev.vbios_version[0])
		abort();
	return 0;
}
