/* secp256k1 ECDSA with recovery, Ethereum addresses (EIP-55) and EIP-191
 * personal_sign.
 *
 * The curve arithmetic is libsecp256k1 (Bitcoin Core's library, Debian
 * libsecp256k1 0.2): constant-time signing and key generation, RFC 6979
 * nonces, public-key recovery, and ~10x faster than OpenSSL 3.0's generic
 * curve code (see docs/security.md).  Keccak-256, EIP-191 hashing and the
 * address code are ours.
 *
 * One process-wide context, created and randomised (secp256k1_context_
 * randomize: blinding of the signing scalar multiplication against side
 * channels) once under pthread_once; afterwards it is only ever passed as
 * const, which libsecp256k1 documents as safe from any number of threads.
 *
 * Range, high-s and recovery-id checks are done here, before libsecp256k1
 * sees the signature, so that the rules in sign.h do not depend on the
 * library version: libsecp256k1's recover accepts high-s signatures (only
 * its verify refuses them), and its illegal-argument callback would abort
 * the process on a recid outside 0..3. */
#include "veil/sign.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include "veil/keccak.h"

struct veil_secp256k1_key {
	struct veil_secret priv; /* 32-byte big-endian scalar d */
	uint8_t pub[VEIL_SECP256K1_PUB_LEN];
	uint8_t addr[VEIL_ETH_ADDRESS_LEN];
};

/* Big-endian 32-byte constants: fixed width, so memcmp orders them. */
static const uint8_t ORDER_N[32] = {
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
	0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b,
	0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
};
static const uint8_t HALF_N[32] = { /* floor(n / 2): the low-s bound */
	0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d,
	0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
};
static const uint8_t P_MINUS_N[32] = { /* r + n < p iff r < p - n */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x45, 0x51, 0x23, 0x19, 0x50, 0xb7, 0x5f, 0xc4,
	0x40, 0x2d, 0xa1, 0x72, 0x2f, 0xc9, 0xba, 0xee,
};
static const uint8_t ZERO32[32];

/* ---- the shared context ------------------------------------------------- */

static secp256k1_context *g_ctx;
static pthread_once_t g_ctx_once = PTHREAD_ONCE_INIT;

/* libsecp256k1 calls this on an API misuse (a bug here: inputs are checked
 * before every call).  The default aborts the process; returning makes the
 * call fail instead, which surfaces as VEIL_EINTERNAL. */
static void illegal_cb(const char *msg, void *data)
{
	(void)msg;
	(void)data;
}

static void ctx_init(void)
{
	secp256k1_context *c = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
	uint8_t seed[32];

	if (!c)
		return;
	secp256k1_context_set_illegal_callback(c, illegal_cb, NULL);
	if (veil_random(seed, sizeof(seed)) < 0 || !secp256k1_context_randomize(c, seed)) {
		secp256k1_context_destroy(c);
		c = NULL;
	}
	veil_wipe(seed, sizeof(seed));
	g_ctx = c;
}

/* The context, or NULL after a veil_errf (the caller returns
 * VEIL_EINTERNAL). */
static const secp256k1_context *ctx_get(void)
{
	pthread_once(&g_ctx_once, ctx_init);
	if (!g_ctx)
		veil_errf(VEIL_EINTERNAL, "secp256k1: libsecp256k1 context setup failed");
	return g_ctx;
}

static int bad(const char *why)
{
	return veil_errf(VEIL_EBADMSG, "secp256k1: %s", why);
}

static int lib_fail(const char *what)
{
	return veil_errf(VEIL_EINTERNAL, "secp256k1: libsecp256k1 %s failed", what);
}

static int pub_serialize(const secp256k1_context *ctx, const secp256k1_pubkey *pk,
			 uint8_t pub[VEIL_SECP256K1_PUB_LEN])
{
	size_t len = VEIL_SECP256K1_PUB_LEN;

	if (!secp256k1_ec_pubkey_serialize(ctx, pub, &len, pk, SECP256K1_EC_UNCOMPRESSED) ||
	    len != VEIL_SECP256K1_PUB_LEN)
		return lib_fail("public key encoding");
	return 0;
}

/* ---- addresses ------------------------------------------------------------ */

void veil_secp256k1_pub_to_address(const uint8_t pub[VEIL_SECP256K1_PUB_LEN],
				   uint8_t addr[VEIL_ETH_ADDRESS_LEN])
{
	uint8_t h[VEIL_KECCAK256_LEN];

	veil_keccak256(pub + 1, VEIL_SECP256K1_PUB_LEN - 1, h);
	memcpy(addr, h + 12, VEIL_ETH_ADDRESS_LEN);
}

void veil_eth_address_format(const uint8_t addr[VEIL_ETH_ADDRESS_LEN],
			     char out[VEIL_ETH_ADDRESS_STR_LEN])
{
	char lower[2 * VEIL_ETH_ADDRESS_LEN + 1];
	uint8_t h[VEIL_KECCAK256_LEN];

	veil_hex_encode(addr, VEIL_ETH_ADDRESS_LEN, lower, sizeof(lower));
	/* EIP-55: upper-case hex letter i when nibble i of
	 * keccak256(lower-case hex) is >= 8. */
	veil_keccak256(lower, 2 * VEIL_ETH_ADDRESS_LEN, h);
	out[0] = '0';
	out[1] = 'x';
	for (size_t i = 0; i < 2 * VEIL_ETH_ADDRESS_LEN; i++) {
		unsigned nib = (h[i / 2] >> (i % 2 ? 0 : 4)) & 0xf;
		char c = lower[i];

		out[2 + i] = (c >= 'a' && nib >= 8) ? (char)(c - 'a' + 'A') : c;
	}
	out[VEIL_ETH_ADDRESS_STR_LEN - 1] = '\0';
}

int veil_eth_address_parse(const char *s, uint8_t addr[VEIL_ETH_ADDRESS_LEN])
{
	uint8_t tmp[VEIL_ETH_ADDRESS_LEN];
	char canon[VEIL_ETH_ADDRESS_STR_LEN];
	bool has_lower = false, has_upper = false;
	size_t outlen;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	if (strlen(s) != 2 * VEIL_ETH_ADDRESS_LEN)
		return veil_errf(VEIL_EFORMAT, "address: want 40 hex digits, got %zu chars",
				 strlen(s));
	if (veil_hex_decode(s, 2 * VEIL_ETH_ADDRESS_LEN, tmp, sizeof(tmp), &outlen) < 0)
		return veil_errf(VEIL_EFORMAT, "address: not hex");
	for (const char *c = s; *c; c++) {
		has_lower |= (*c >= 'a' && *c <= 'f');
		has_upper |= (*c >= 'A' && *c <= 'F');
	}
	if (has_lower && has_upper) {
		veil_eth_address_format(tmp, canon);
		if (strcmp(canon + 2, s) != 0)
			return veil_errf(VEIL_EFORMAT,
					 "address: mixed case but EIP-55 checksum does not match");
	}
	memcpy(addr, tmp, VEIL_ETH_ADDRESS_LEN);
	return 0;
}

/* ---- keys ----------------------------------------------------------------- */

int veil_secp256k1_pub_check(const uint8_t pub[VEIL_SECP256K1_PUB_LEN])
{
	const secp256k1_context *ctx = ctx_get();
	secp256k1_pubkey pk;

	if (!ctx)
		return VEIL_EINTERNAL;
	/* Checked first: libsecp256k1 also parses the 0x06/0x07 "hybrid"
	 * encodings, which are not ours to accept. */
	if (pub[0] != 0x04)
		return veil_errf(VEIL_EFORMAT, "secp256k1 public key: prefix 0x%02x, want 0x04 (uncompressed)",
				 pub[0]);
	/* Parsing checks X, Y < p and Y^2 = X^3 + 7. */
	if (!secp256k1_ec_pubkey_parse(ctx, &pk, pub, VEIL_SECP256K1_PUB_LEN))
		return veil_errf(VEIL_EFORMAT, "secp256k1 public key: not a point on the curve");
	return 0;
}

void veil_secp256k1_key_free(struct veil_secp256k1_key *key)
{
	if (!key)
		return;
	veil_secret_free(&key->priv); /* wipes d */
	veil_wipe(key, sizeof(*key));
	free(key);
}

int veil_secp256k1_key_from_private(const uint8_t priv[VEIL_SECP256K1_PRIV_LEN],
				    struct veil_secp256k1_key **out)
{
	const secp256k1_context *ctx = ctx_get();
	struct veil_secp256k1_key *k = NULL;
	secp256k1_pubkey pk;
	int rc;

	if (!ctx)
		return VEIL_EINTERNAL;
	if (!secp256k1_ec_seckey_verify(ctx, priv))
		return veil_errf(VEIL_EINVAL, "secp256k1 private key: not in [1, n-1]");
	if (!(k = calloc(1, sizeof(*k)))) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	/* d*G on the blinded, constant-time generator multiplication. */
	if (!secp256k1_ec_pubkey_create(ctx, &pk, priv)) {
		rc = lib_fail("d*G");
		goto out;
	}
	if ((rc = pub_serialize(ctx, &pk, k->pub)) < 0)
		goto out;
	if ((rc = veil_secret_alloc(&k->priv, VEIL_SECP256K1_PRIV_LEN)) < 0)
		goto out;
	memcpy(k->priv.bytes, priv, VEIL_SECP256K1_PRIV_LEN);
	veil_secp256k1_pub_to_address(k->pub, k->addr);
	*out = k;
	k = NULL;
	rc = 0;
out:
	veil_secp256k1_key_free(k);
	return rc;
}

int veil_secp256k1_key_generate(struct veil_secp256k1_key **out)
{
	uint8_t priv[VEIL_SECP256K1_PRIV_LEN];
	int rc;

	/* Rejection sampling: a 256-bit value is >= n with probability ~2^-128. */
	for (;;) {
		if ((rc = veil_random(priv, sizeof(priv))) < 0)
			break;
		rc = veil_secp256k1_key_from_private(priv, out);
		if (rc != VEIL_EINVAL)
			break;
	}
	veil_wipe(priv, sizeof(priv));
	return rc;
}

void veil_secp256k1_public(const struct veil_secp256k1_key *key,
			   uint8_t pub[VEIL_SECP256K1_PUB_LEN])
{
	memcpy(pub, key->pub, VEIL_SECP256K1_PUB_LEN);
}

void veil_secp256k1_address(const struct veil_secp256k1_key *key,
			    uint8_t addr[VEIL_ETH_ADDRESS_LEN])
{
	memcpy(addr, key->addr, VEIL_ETH_ADDRESS_LEN);
}

int veil_secp256k1_export_private(const struct veil_secp256k1_key *key,
				  struct veil_secret *out)
{
	struct veil_secret s = {0};
	int rc;

	if ((rc = veil_secret_alloc(&s, VEIL_SECP256K1_PRIV_LEN)) < 0)
		return rc;
	memcpy(s.bytes, key->priv.bytes, VEIL_SECP256K1_PRIV_LEN);
	*out = s;
	return 0;
}

/* ---- nonces ----------------------------------------------------------------- */

/* Our nonce function: libsecp256k1's RFC 6979 (§3.2, HMAC-SHA256, h1 taken
 * mod n as bits2octets requires), started `skip` candidates further on, and
 * with `extra` (32 bytes or NULL) as the §3.6 additional data.
 *
 * - RFC6979 mode: extra = NULL, so k is exactly RFC 6979's k and signatures
 *   are byte-identical to any other RFC 6979 signer (ethers, web3, ...).
 * - RANDOM mode: extra = 32 fresh bytes from the kernel CSPRNG, so k =
 *   HMAC_DRBG(d, h, rand): unpredictable when getrandom is sound, and still
 *   never repeated across messages (the failure that leaks d) if it is not.
 *
 * `skip` lets the caller move past a candidate that libsecp256k1 accepted
 * but we cannot use (R.x >= n, see sign_hash); `last` reports which one was
 * used.  libsecp256k1 itself moves on (attempt + 1) when k is 0 or >= n or
 * r or s comes out 0, exactly as RFC 6979 §3.2 step h.3 does. */
struct nonce_arg {
	const uint8_t *extra;
	unsigned int skip;
	unsigned int last;
};

static int nonce_fn(unsigned char *nonce32, const unsigned char *msg32,
		    const unsigned char *key32, const unsigned char *algo16, void *data,
		    unsigned int attempt)
{
	struct nonce_arg *a = data;

	a->last = a->skip + attempt;
	return secp256k1_nonce_function_rfc6979(nonce32, msg32, key32, algo16,
						(void *)a->extra, a->last);
}

/* ---- ECDSA ----------------------------------------------------------------- */

int veil_secp256k1_sign_hash(const struct veil_secp256k1_key *key,
			     const uint8_t hash[32],
			     enum veil_secp256k1_nonce nonce,
			     uint8_t rs[VEIL_SECP256K1_RS_LEN], int *recid)
{
	const secp256k1_context *ctx = ctx_get();
	secp256k1_ecdsa_recoverable_signature sig;
	uint8_t extra[32], tmp[VEIL_SECP256K1_RS_LEN];
	struct nonce_arg na = {NULL, 0, 0};
	int rc, id = 0;

	if (!ctx)
		return VEIL_EINTERNAL;
	if (nonce != VEIL_SECP256K1_RFC6979 && nonce != VEIL_SECP256K1_RANDOM)
		return veil_errf(VEIL_EINVAL, "secp256k1: unknown nonce mode %d", (int)nonce);
	for (int attempt = 0;; attempt++) {
		if (attempt == 16) { /* each retry has probability ~2^-127 */
			rc = veil_errf(VEIL_EINTERNAL, "secp256k1: no usable nonce");
			goto out;
		}
		if (nonce == VEIL_SECP256K1_RANDOM) {
			if ((rc = veil_random(extra, sizeof(extra))) < 0)
				goto out;
			na.extra = extra;
		}
		/* libsecp256k1 signs in constant time and already returns the
		 * low-s form (s <= n/2, BIP 62 / EIP-2) with the recovery id
		 * flipped to match. */
		if (!secp256k1_ecdsa_sign_recoverable(ctx, &sig, hash, key->priv.bytes,
						      nonce_fn, &na) ||
		    !secp256k1_ecdsa_recoverable_signature_serialize_compact(ctx, tmp, &id,
									     &sig)) {
			rc = lib_fail("signing");
			goto out;
		}
		/* Ethereum's v only has room for recid 0/1 (bit 1 set means
		 * R.x >= n): take the next k in that astronomically rare case,
		 * as RFC 6979 would for any other unusable k. */
		if (!(id & 2))
			break;
		na.skip = na.last + 1;
	}
	/* Belt and braces: the low-s promise of sign.h does not rest on a
	 * library default alone. */
	if (memcmp(tmp + 32, HALF_N, 32) > 0) {
		rc = veil_errf(VEIL_EINTERNAL, "secp256k1: libsecp256k1 returned a high-s signature");
		goto out;
	}
	memcpy(rs, tmp, VEIL_SECP256K1_RS_LEN);
	*recid = id;
	rc = 0;
out:
	veil_wipe(extra, sizeof(extra));
	veil_wipe(&sig, sizeof(sig));
	return rc;
}

/* Checks 1 <= r, s < n and s <= n/2 on the raw bytes, so that the rules
 * (and their error messages) are ours whatever the library accepts. */
static int check_rs(const uint8_t rs[VEIL_SECP256K1_RS_LEN])
{
	if (!memcmp(rs, ZERO32, 32) || memcmp(rs, ORDER_N, 32) >= 0)
		return bad("signature r is out of range");
	if (!memcmp(rs + 32, ZERO32, 32) || memcmp(rs + 32, ORDER_N, 32) >= 0)
		return bad("signature s is out of range");
	if (memcmp(rs + 32, HALF_N, 32) > 0)
		return bad("signature s is in the high half (not canonical)");
	return 0;
}

int veil_secp256k1_verify_hash(const uint8_t pub[VEIL_SECP256K1_PUB_LEN],
			       const uint8_t hash[32],
			       const uint8_t rs[VEIL_SECP256K1_RS_LEN])
{
	const secp256k1_context *ctx = ctx_get();
	secp256k1_ecdsa_signature sig;
	secp256k1_pubkey pk;
	int rc;

	if (!ctx)
		return VEIL_EINTERNAL;
	if (pub[0] != 0x04)
		return bad("public key is not uncompressed (0x04 prefix)");
	if (!secp256k1_ec_pubkey_parse(ctx, &pk, pub, VEIL_SECP256K1_PUB_LEN))
		return bad("public key is not a point on the curve");
	if ((rc = check_rs(rs)) < 0)
		return rc;
	if (!secp256k1_ecdsa_signature_parse_compact(ctx, &sig, rs))
		return bad("signature r or s is out of range");
	/* SEC 1 §4.1.4; libsecp256k1 also refuses high s itself. */
	if (!secp256k1_ecdsa_verify(ctx, &sig, hash, &pk))
		return bad("signature does not verify");
	return 0;
}

int veil_secp256k1_recover(const uint8_t hash[32],
			   const uint8_t rs[VEIL_SECP256K1_RS_LEN], int recid,
			   uint8_t pub[VEIL_SECP256K1_PUB_LEN])
{
	const secp256k1_context *ctx = ctx_get();
	secp256k1_ecdsa_recoverable_signature sig;
	secp256k1_pubkey pk;
	uint8_t tmp[VEIL_SECP256K1_PUB_LEN];
	int rc;

	if (!ctx)
		return VEIL_EINTERNAL;
	if (recid < 0 || recid > 3)
		return bad("recovery id is not 0..3");
	/* Must come first: libsecp256k1's recover takes high-s signatures. */
	if ((rc = check_rs(rs)) < 0)
		return rc;
	/* SEC 1 §4.1.6: R.x = r + (recid >> 1) * n, which must be < p. */
	if ((recid & 2) && memcmp(rs, P_MINUS_N, 32) >= 0)
		return bad("recovery id names an R.x beyond the field");
	if (!secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, &sig, rs, recid))
		return bad("signature r or s is out of range");
	if (!secp256k1_ecdsa_recover(ctx, &pk, &sig, hash))
		return bad("r is not the x coordinate of a curve point, or the recovered key "
			   "is the point at infinity");
	if ((rc = pub_serialize(ctx, &pk, tmp)) < 0)
		return rc;
	memcpy(pub, tmp, VEIL_SECP256K1_PUB_LEN);
	return 0;
}

/* ---- EIP-191 personal_sign -------------------------------------------------- */

void veil_eip191_hash(const void *msg, size_t n, uint8_t hash[32])
{
	static const char prefix[] = "\x19" "Ethereum Signed Message:\n";
	char len[24];
	int ll = snprintf(len, sizeof(len), "%zu", n);
	struct veil_keccak256 k;

	veil_keccak256_init(&k);
	veil_keccak256_update(&k, prefix, sizeof(prefix) - 1);
	veil_keccak256_update(&k, len, (size_t)ll);
	veil_keccak256_update(&k, msg, n);
	veil_keccak256_final(&k, hash);
}

int veil_eip191_sign(const struct veil_secp256k1_key *key, const void *msg,
		     size_t n, enum veil_secp256k1_nonce nonce,
		     uint8_t sig[VEIL_EIP191_SIG_LEN])
{
	uint8_t h[32], rs[VEIL_SECP256K1_RS_LEN];
	int recid, rc;

	veil_eip191_hash(msg, n, h);
	if ((rc = veil_secp256k1_sign_hash(key, h, nonce, rs, &recid)) < 0)
		return rc;
	memcpy(sig, rs, VEIL_SECP256K1_RS_LEN);
	sig[64] = (uint8_t)(27 + recid);
	return 0;
}

int veil_eip191_recover(const void *msg, size_t n,
			const uint8_t sig[VEIL_EIP191_SIG_LEN],
			uint8_t addr[VEIL_ETH_ADDRESS_LEN],
			uint8_t pub[VEIL_SECP256K1_PUB_LEN])
{
	uint8_t h[32], q[VEIL_SECP256K1_PUB_LEN];
	int recid, rc;

	if (sig[64] == 27 || sig[64] == 28)
		recid = sig[64] - 27;
	else if (sig[64] == 0 || sig[64] == 1)
		recid = sig[64];
	else
		return bad("v is not 27, 28, 0 or 1");
	veil_eip191_hash(msg, n, h);
	if ((rc = veil_secp256k1_recover(h, sig, recid, q)) < 0)
		return rc;
	veil_secp256k1_pub_to_address(q, addr);
	if (pub)
		memcpy(pub, q, VEIL_SECP256K1_PUB_LEN);
	return 0;
}

int veil_eip191_verify(const void *msg, size_t n,
		       const uint8_t sig[VEIL_EIP191_SIG_LEN],
		       const uint8_t addr[VEIL_ETH_ADDRESS_LEN])
{
	uint8_t got[VEIL_ETH_ADDRESS_LEN];
	int rc;

	if ((rc = veil_eip191_recover(msg, n, sig, got, NULL)) < 0)
		return rc;
	if (memcmp(got, addr, VEIL_ETH_ADDRESS_LEN) != 0)
		return veil_errf(VEIL_EBADMSG, "eip191: signed by a different address");
	return 0;
}
