/* libFuzzer harness for the SEV-SNP report parser (veil_snp_report_parse).
 * Only exactly 1184-byte inputs of version 2..5 parse, and the parsed fields
 * must round-trip to the bytes they came from. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/snp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_snp_report r;
	struct veil_snp_tcb t;

	if (veil_snp_report_parse(data, size, &r) != 0)
		return 0;
	if (size != VEIL_SNP_REPORT_LEN || r.version < 2 || r.version > 5)
		abort();
	if (memcmp(r.measurement, data + 0x90, 48) || memcmp(r.chip_id, data + 0x1A0, 64) ||
	    memcmp(r.sig_r, data + 0x2A0, 72) || memcmp(r.sig_s, data + 0x2E8, 72))
		abort();
	if (r.signing_key != ((r.signer_info >> 2) & 7))
		abort();
	veil_snp_tcb_decode(r.reported_tcb, veil_snp_report_product(&r), &t);
	if (t.raw != r.reported_tcb || t.microcode != data[0x187])
		abort();
	return 0;
}
