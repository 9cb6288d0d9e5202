/* veil receipt: parsing and verification of the signed receipts a veil-node
 * attaches to every completion (veil-receipt/1; docs/protocol.md,
 * "Receipts").
 *
 *   {"payload": "<canonical JSON text>",
 *    "signature_ed25519": "<128 hex>", "signature_ecdsa": "0x<130 hex>",
 *    "text_signature_ed25519"?: "<128 hex>",
 *    "text_signature_ecdsa"?: "0x<130 hex>"}
 *
 * The payload signatures cover the payload string exactly as received; the
 * optional text signatures cover NEAR AI's text
 * "<model>:<request_sha256>:<response_sha256>" (what /v1/signature/{id}
 * serves), so a gateway can answer that endpoint from a stored receipt.
 * Receipts without the text signatures (older nodes) are accepted; when only
 * one of the two is present the receipt is refused. */
#ifndef VEIL_RECEIPT_H
#define VEIL_RECEIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "veil/keyset.h"

#define VEIL_RECEIPT_VERSION "veil-receipt/1"
#define VEIL_RECEIPT_MAX (64u << 10)  /* a receipt object larger is refused */
#define VEIL_RECEIPT_TEXT_MAX 300     /* NEAR AI text incl. NUL */

struct veil_receipt {          /* filled by parse; free with veil_receipt_free */
	char *json;                 /* the receipt object text as given (owned) */
	char *payload;              /* the payload string as received (owned) */
	char id[129], model[129];
	uint8_t model_sha256[32]; bool has_model_sha256; /* "" -> false */
	uint8_t request_sha256[32], response_sha256[32];
	int64_t prompt_tokens, completion_tokens, total_tokens, created;
	uint8_t eth_address[20];    /* signing_address */
	uint8_t ed25519_public_key[32];
	uint8_t sig_ed25519[64]; uint8_t sig_ecdsa[65];
	bool has_text_sigs; uint8_t text_sig_ed25519[64]; uint8_t text_sig_ecdsa[65];
};

/* Parses a receipt object (n bytes of JSON text; need not be
 * NUL-terminated).  Strict: every payload field of veil-receipt/1 must be
 * present with its type and length, the version must match, unknown keys of
 * the object or the payload are refused, total_tokens must equal the sum.
 * Signatures are not checked here (see veil_receipt_verify).  *out is
 * zeroed first and owns its strings on success; on failure nothing is left
 * to free.  VEIL_EFORMAT / VEIL_ENOTSUP / VEIL_ERANGE with a detail. */
int veil_receipt_parse(const uint8_t *json, size_t n, struct veil_receipt *out);

/* Both payload signatures (and the text signatures when present) against the
 * attested keys: Ed25519 key == keys->ed25519 and verifies; EIP-191 recovers
 * keys' eth address.  The payload's own signing_address and
 * ed25519_public_key must also equal the attested keys.  VEIL_EBADMSG with a
 * detail on any mismatch; VEIL_EINVAL when keys lacks ed25519 or the eth
 * address. */
int veil_receipt_verify(const struct veil_receipt *r, const struct veil_keyset *keys);

/* The Ed25519 half of veil_receipt_verify: the payload's Ed25519 signature
 * (and the text's, when present) under keys->ed25519; the payload's
 * ed25519_public_key must be the attested key, and its signing_address the
 * attested Ethereum address when keys has one.  The ECDSA (EIP-191)
 * signatures are NOT checked.  For a hot path that already trusts the key
 * set: one attestation binds both keys, so an Ed25519 signature under the
 * attested key proves the receipt came from the attested node; ECDSA is
 * there for Ethereum-style verifiers and is left to a full check later
 * (veil_receipt_verify, e.g. `veil receipts verify`).  VEIL_EBADMSG with a
 * detail on a mismatch; VEIL_EINVAL when keys lacks an Ed25519 key. */
int veil_receipt_verify_ed25519(const struct veil_receipt *r,
				const struct veil_keyset *keys);

/* NEAR AI text "<model>:<req hex>:<resp hex>" into out (cap >= 300).
 * Returns its length. */
int veil_receipt_text(const struct veil_receipt *r, char *out, size_t cap);

/* Frees what parse allocated and zeroes *r; safe on a zeroed receipt. */
void veil_receipt_free(struct veil_receipt *r);

/* ---- the receipts log (veil-proxy --receipts; `veil receipts verify`) ----
 * JSON lines, docs/protocol.md "Receipts log (veil-receipts/1)".  An
 * attestation line's "report_sha256" is the SHA-256 of its report in the
 * canonical serialization below (a node report inside a gateway's
 * veil-gateway-report/1 has no bytes of its own to hash); a receipt line's
 * "node_report_sha256" names the attestation line whose keys signed it. */
#define VEIL_RECEIPTS_LOG_VERSION "veil-receipts/1"

/* SHA-256 of json_dumps(report, JSON_COMPACT | JSON_SORT_KEYS). */
int veil_receipts_report_sha256(const json_t *report, uint8_t out[32]);

#endif
