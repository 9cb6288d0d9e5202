/* Canonical public-key set encoding for report_data binding; the layout is
 * in include/veil/keyset.h and docs/protocol.md. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "veil/base.h"
#include "veil/keyset.h"
#include "veil/sign.h"

#include "crypto_impl.h"

static const struct {
	enum veil_keyset_type type;
	size_t off;
	uint16_t len;
	const char *name;
} fields[] = {
	{VEIL_KEY_ED25519, offsetof(struct veil_keyset, ed25519), 32, "ed25519"},
	{VEIL_KEY_SECP256K1, offsetof(struct veil_keyset, secp256k1), 65, "secp256k1"},
	{VEIL_KEY_ETH_ADDRESS, offsetof(struct veil_keyset, eth_address), 20, "eth_address"},
	{VEIL_KEY_X25519_HPKE, offsetof(struct veil_keyset, x25519_hpke), 32, "x25519_hpke"},
	{VEIL_KEY_TLS_SPKI_SHA256, offsetof(struct veil_keyset, tls_spki_sha256), 32,
	 "tls_spki_sha256"},
};

#define KNOWN_MASK VEIL_KEYSET_NODE

/* Rules between entries: the address goes with the secp256k1 key. */
static int check_pairing(const struct veil_keyset *ks, int err)
{
	bool has_pub = ks->present & VEIL_KEYSET_HAS(VEIL_KEY_SECP256K1);
	bool has_addr = ks->present & VEIL_KEYSET_HAS(VEIL_KEY_ETH_ADDRESS);
	uint8_t addr[20];

	if (has_pub != has_addr)
		return veil_errf(err, "keyset: secp256k1 key (type 2) and eth_address (type 3) must come together");
	if (has_pub) {
		veil_secp256k1_pub_to_address(ks->secp256k1, addr);
		if (memcmp(addr, ks->eth_address, sizeof(addr)) != 0)
			return veil_errf(err, "keyset: eth_address is not the address of the secp256k1 key");
	}
	return 0;
}

int veil_keyset_set_secp256k1(struct veil_keyset *ks, const uint8_t pub[65])
{
	int rc;

	if ((rc = veil_secp256k1_pub_check(pub)) < 0)
		return rc;
	memcpy(ks->secp256k1, pub, 65);
	veil_secp256k1_pub_to_address(pub, ks->eth_address);
	ks->present |= VEIL_KEYSET_HAS(VEIL_KEY_SECP256K1) |
		       VEIL_KEYSET_HAS(VEIL_KEY_ETH_ADDRESS);
	return 0;
}

int veil_keyset_encode(const struct veil_keyset *ks, uint8_t *out,
		       size_t outcap, size_t *out_len)
{
	size_t need = VEIL_KEYSET_MAGIC_LEN, pos;
	int rc;

	if (!ks->present || (ks->present & ~(uint32_t)KNOWN_MASK))
		return veil_errf(VEIL_EINVAL, "keyset: no keys, or an unknown key bit");
	if ((rc = check_pairing(ks, VEIL_EINVAL)) < 0)
		return rc;
	if (ks->present & VEIL_KEYSET_HAS(VEIL_KEY_SECP256K1) &&
	    (rc = veil_secp256k1_pub_check(ks->secp256k1)) < 0)
		return rc;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(fields); i++)
		if (ks->present & VEIL_KEYSET_HAS(fields[i].type))
			need += 4 + fields[i].len;
	if (need > outcap)
		return veil_errf(VEIL_ERANGE, "keyset: encoding needs %zu bytes, buffer has %zu",
				 need, outcap);
	memcpy(out, VEIL_KEYSET_MAGIC, VEIL_KEYSET_MAGIC_LEN); /* with its NUL */
	pos = VEIL_KEYSET_MAGIC_LEN;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(fields); i++) {
		if (!(ks->present & VEIL_KEYSET_HAS(fields[i].type)))
			continue;
		out[pos++] = (uint8_t)(fields[i].type >> 8);
		out[pos++] = (uint8_t)fields[i].type;
		out[pos++] = (uint8_t)(fields[i].len >> 8);
		out[pos++] = (uint8_t)fields[i].len;
		memcpy(out + pos, (const uint8_t *)ks + fields[i].off, fields[i].len);
		pos += fields[i].len;
	}
	*out_len = pos;
	return 0;
}

/* An X25519 public key must be canonical, u < 2^255 - 19 (the top bit and
 * the values p .. 2^255 - 1 are other encodings of the same key, so a key
 * set would hash two ways), and not of small order (every shared secret
 * with it is zero: nothing can be sealed to it).  The order test is one
 * X25519 with a fixed clamped scalar, a multiple of 8: zero exactly for
 * the points of order dividing 8. */
static int x25519_pub_check(const uint8_t u[32])
{
	static const uint8_t scalar[32] = {8};
	uint8_t q[32];
	int i = 31, rc;

	/* little-endian compare with p = 2^255 - 19 = 0x7fff..ffed */
	while (i > 0 && u[i] == (i == 31 ? 0x7f : 0xff))
		i--;
	if (u[i] > (i == 31 ? 0x7f : i == 0 ? 0xec : 0xff))
		return veil_errf(VEIL_EFORMAT, "keyset: x25519_hpke is not canonical "
				 "(not below 2^255 - 19)");
	if ((rc = crypto_sodium_ready("keyset")) < 0)
		return rc;
	rc = crypto_scalarmult(q, scalar, u);
	veil_wipe(q, sizeof(q));
	if (rc != 0)
		return veil_errf(VEIL_EFORMAT, "keyset: x25519_hpke is a point of small order");
	return 0;
}

int veil_keyset_parse(const uint8_t *p, size_t n, struct veil_keyset *out)
{
	struct veil_keyset ks;
	unsigned last_type = 0;
	size_t pos = VEIL_KEYSET_MAGIC_LEN;
	int rc;

	memset(&ks, 0, sizeof(ks));
	if (n > VEIL_KEYSET_MAX)
		return veil_errf(VEIL_EFORMAT, "keyset: length %zu exceeds the %d-byte cap",
				 n, VEIL_KEYSET_MAX);
	if (n < VEIL_KEYSET_MAGIC_LEN)
		return veil_errf(VEIL_EFORMAT, "keyset: %zu bytes, shorter than the magic", n);
	if (memcmp(p, "veil-keys/", 10) != 0)
		return veil_errf(VEIL_EFORMAT, "keyset: bad magic (want \"veil-keys/1\\0\")");
	if (memcmp(p, VEIL_KEYSET_MAGIC, VEIL_KEYSET_MAGIC_LEN) != 0)
		return veil_errf(VEIL_ENOTSUP, "keyset: unsupported version (want \"veil-keys/1\\0\")");
	while (pos < n) {
		unsigned type, len;
		size_t i;

		if (n - pos < 4)
			return veil_errf(VEIL_EFORMAT, "keyset: entry header at offset %zu: 4 bytes needed, %zu remain",
					 pos, n - pos);
		type = (unsigned)p[pos] << 8 | p[pos + 1];
		len = (unsigned)p[pos + 2] << 8 | p[pos + 3];
		pos += 4;
		for (i = 0; i < VEIL_ARRAY_LEN(fields); i++)
			if (fields[i].type == type)
				break;
		if (i == VEIL_ARRAY_LEN(fields))
			return veil_errf(VEIL_ENOTSUP, "keyset: unknown entry type %u at offset %zu",
					 type, pos - 4);
		if (type <= last_type)
			return veil_errf(VEIL_EFORMAT, "keyset: entry type %u (%s) after type %u: types must be strictly ascending",
					 type, fields[i].name, last_type);
		if (len != fields[i].len)
			return veil_errf(VEIL_EFORMAT, "keyset: %s: length %u, want %u",
					 fields[i].name, len, (unsigned)fields[i].len);
		if (len > n - pos)
			return veil_errf(VEIL_EFORMAT, "keyset: %s: length %u exceeds remaining %zu",
					 fields[i].name, len, n - pos);
		memcpy((uint8_t *)&ks + fields[i].off, p + pos, len);
		ks.present |= VEIL_KEYSET_HAS(type);
		last_type = type;
		pos += len;
	}
	if (!ks.present)
		return veil_errf(VEIL_EFORMAT, "keyset: no entries");
	if ((rc = check_pairing(&ks, VEIL_EFORMAT)) < 0)
		return rc;
	if ((ks.present & VEIL_KEYSET_HAS(VEIL_KEY_SECP256K1)) &&
	    (rc = veil_secp256k1_pub_check(ks.secp256k1)) < 0)
		return rc;
	if ((ks.present & VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE)) &&
	    (rc = x25519_pub_check(ks.x25519_hpke)) < 0)
		return rc;
	*out = ks;
	return 0;
}

int veil_keyset_digest(const uint8_t *enc, size_t n, uint8_t out[32])
{
	unsigned int len = 32;

	if (EVP_Digest(enc, n, out, &len, EVP_sha256(), NULL) != 1 || len != 32)
		return veil_errf(VEIL_EINTERNAL, "keyset: SHA-256 failed");
	return 0;
}

int veil_keyset_report_data(const uint8_t *enc, size_t n,
			    const uint8_t nonce[32],
			    uint8_t out[VEIL_REPORT_DATA_LEN])
{
	uint8_t d[32];
	int rc;

	if ((rc = veil_keyset_digest(enc, n, d)) < 0)
		return rc;
	memcpy(out, d, 32);
	memcpy(out + 32, nonce, 32);
	return 0;
}

int veil_keyset_check_report_data(const uint8_t *enc, size_t n,
				  const uint8_t nonce[32],
				  const uint8_t report_data[VEIL_REPORT_DATA_LEN])
{
	uint8_t want[VEIL_REPORT_DATA_LEN];
	int rc;

	if ((rc = veil_keyset_report_data(enc, n, nonce, want)) < 0)
		return rc;
	if (CRYPTO_memcmp(want, report_data, 32) != 0)
		return veil_errf(VEIL_EBADMSG, "report_data[0:32] is not SHA-256 of the public-key set");
	if (CRYPTO_memcmp(want + 32, report_data + 32, 32) != 0)
		return veil_errf(VEIL_EBADMSG, "report_data[32:64] is not the nonce");
	return 0;
}
