/* libFuzzer harness for the receipt parser (veil_receipt_parse).  Whatever
 * parses keeps the input as given, yields NEAR AI's text, and is verified
 * without crashing: refused against an empty key set, and (the signatures
 * being arbitrary bytes) almost always refused against its own keys. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/keyset.h"
#include "veil/receipt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_receipt r;
	struct veil_keyset ks;
	char text[VEIL_RECEIPT_TEXT_MAX];

	if (veil_receipt_parse(data, size, &r) != 0)
		return 0;
	if (!r.json || !r.payload || memcmp(r.json, data, size) != 0 || r.json[size] != '\0')
		abort();
	if (r.total_tokens != r.prompt_tokens + r.completion_tokens)
		abort();
	if (veil_receipt_text(&r, text, sizeof(text)) <= 0)
		abort();
	memset(&ks, 0, sizeof(ks));
	if (veil_receipt_verify(&r, &ks) != VEIL_EINVAL)
		abort();
	memcpy(ks.ed25519, r.ed25519_public_key, 32);
	memcpy(ks.eth_address, r.eth_address, 20);
	ks.present = VEIL_KEYSET_HAS(VEIL_KEY_ED25519) | VEIL_KEYSET_HAS(VEIL_KEY_ETH_ADDRESS);
	(void)veil_receipt_verify(&r, &ks);
	veil_receipt_free(&r);
	return 0;
}
