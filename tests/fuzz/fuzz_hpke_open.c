/* Fuzzes HPKE open with a fixed recipient key: byte 0 picks the AEAD and
 * whether to use the context API at a fuzzed sequence number, then come enc
 * (32 bytes), an aad length byte, the aad and the ciphertext.  Nothing may
 * crash; a forged message must not open (a success is only possible for
 * seeds that were really sealed, and then plaintext = ct - 16 bytes). */
#include <stdlib.h>
#include <string.h>

#include "veil/hpke.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int AEADS[4] = {VEIL_HPKE_AES128GCM, VEIL_HPKE_AES256GCM,
			     VEIL_HPKE_CHACHA20POLY1305, VEIL_HPKE_EXPORT_ONLY};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char ikm[] = "veil fuzz_hpke_open recipient ikm";
	static struct veil_hpke_keypair kp;
	static bool init;
	struct veil_hpke_opts o = {0};
	const uint8_t *enc, *aad, *ct;
	size_t aad_len, ct_len, pt_len;
	uint8_t *pt;
	int rc;

	if (!init) {
		if (veil_hpke_derive_keypair((const uint8_t *)ikm, 32, &kp) < 0)
			abort();
		init = true;
	}
	if (size < 34 || size > (1u << 20))
		return 0;
	o.aead = (enum veil_hpke_aead)AEADS[data[0] & 3];
	o.info = (const uint8_t *)"fuzz";
	o.info_len = (data[0] & 4) ? 4 : 0;
	enc = data + 1;
	aad_len = data[33];
	if (34 + aad_len > size)
		return 0;
	aad = data + 34;
	ct = aad + aad_len;
	ct_len = size - 34 - aad_len;
	pt = malloc(ct_len + 1);
	if (!pt)
		return 0;
	if (data[0] & 8) {
		struct veil_hpke_ctx *c = NULL;

		rc = veil_hpke_setup_receiver(&o, &kp, enc, &c);
		if (rc == 0) {
			uint8_t x[64];

			veil_hpke_ctx_set_seq(c, (uint64_t)(data[0] >> 4) * 0x1111111111111111ull);
			rc = veil_hpke_ctx_open(c, aad, aad_len, ct, ct_len, pt, ct_len, &pt_len);
			if (veil_hpke_ctx_export(c, aad, aad_len, x, 1 + (ct_len & 63)) != 0)
				abort();
			veil_hpke_ctx_free(c);
		}
	} else {
		rc = veil_hpke_open(&o, &kp, enc, aad, aad_len, ct, ct_len, pt, ct_len, &pt_len);
	}
	if (rc == 0 && pt_len + VEIL_HPKE_NT != ct_len)
		abort();
	if (rc > 0)
		abort();
	free(pt);
	return 0;
}
