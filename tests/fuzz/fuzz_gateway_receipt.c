/* libFuzzer harness for veil-gateway's canonical receipt reader
 * (gw_receipt_fast, src/gateway/parse.c, compiled in) against the full
 * parser (veil_receipt_parse): the fast reader must be a strict subset —
 * whatever it accepts, veil_receipt_parse accepts with the same signed
 * payload, signatures (Ed25519 and ECDSA: either may be the one checked,
 * --receipt-check), keys, hashes, id, model and counts, and the
 * signing_address it was told to expect.  The input is tried with the
 * address the full parser found (EIP-55 spelled, as the gateway passes the
 * attested one) and with a fixed one. */
#include <stdlib.h>
#include <string.h>

#include "veil/receipt.h"
#include "veil/sign.h"

#include "../../src/gateway/parse.c"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			abort();                                               \
	} while (0)

static void agree(const uint8_t *p, size_t n, const char *expect, bool full_ok,
		  const struct veil_receipt *r)
{
	static struct gw_receipt_lite l;
	uint8_t a[20];
	int fast = gw_receipt_fast(p, n, expect, &l);

	CHECK(fast == 0 || fast == 1);
	if (fast)
		return;
	CHECK(full_ok);
	CHECK(l.payload_len == strlen(r->payload) && !memcmp(l.payload, r->payload, l.payload_len));
	CHECK(l.payload[l.payload_len] == '\0');
	CHECK(!memcmp(l.sig_ed25519, r->sig_ed25519, 64));
	CHECK(!memcmp(l.sig_ecdsa, r->sig_ecdsa, 65));
	CHECK(!memcmp(l.ed25519_public_key, r->ed25519_public_key, 32));
	CHECK(!memcmp(l.request_sha256, r->request_sha256, 32));
	CHECK(!memcmp(l.response_sha256, r->response_sha256, 32));
	CHECK(!strcmp(l.id, r->id) && !strcmp(l.model, r->model));
	CHECK(l.prompt_tokens == r->prompt_tokens && l.completion_tokens == r->completion_tokens);
	CHECK(l.total_tokens == r->total_tokens && l.created == r->created);
	CHECK(veil_eth_address_parse(expect, a) == 0 && !memcmp(a, r->eth_address, 20));
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	static const uint8_t fixed[20] = {0x16, 0x29, 0x69, 0xa1, 0x53, 0xf1, 0x69, 0x68, 0xae, 0x92,
					  0x9e, 0x9c, 0x5c, 0xb9, 0xb6, 0x81, 0xf7, 0xc6, 0xf5, 0x59};
	struct veil_receipt r;
	char addr[VEIL_ETH_ADDRESS_STR_LEN];
	bool ok;

	if (n > VEIL_RECEIPT_MAX)
		return 0;
	memset(&r, 0, sizeof(r));
	ok = veil_receipt_parse(p, n, &r) == 0;
	if (ok) {
		veil_eth_address_format(r.eth_address, addr);
		agree(p, n, addr, ok, &r);
	}
	veil_eth_address_format(fixed, addr);
	agree(p, n, addr, ok, &r);
	veil_receipt_free(&r);
	return 0;
}
