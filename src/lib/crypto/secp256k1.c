/* secp256k1 ECDSA with recovery, Ethereum addresses (EIP-55) and EIP-191
 * personal_sign, on OpenSSL 3.0's EC_GROUP / EC_POINT / BIGNUM (none of them
 * deprecated; no EC_KEY).
 *
 * OpenSSL 3.0 has no deterministic ECDSA nonces (RFC 6979 arrived in 3.2)
 * and no public-key recovery, so the ECDSA arithmetic (SEC 1 v2 §4.1.3 sign,
 * §4.1.4 verify, §4.1.6 recover) is written here.  Secret scalars carry
 * BN_FLG_CONSTTIME; k*G uses OpenSSL's constant-time Montgomery ladder
 * (EC_POINT_mul with only the generator term), k^-1 is a constant-time
 * exponentiation (Fermat), and products with the private key are
 * Montgomery multiplications. */
#include "veil/sign.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/obj_mac.h>

#include "veil/keccak.h"

struct veil_secp256k1_key {
	struct veil_secret priv; /* 32-byte big-endian scalar d */
	uint8_t pub[VEIL_SECP256K1_PUB_LEN];
	uint8_t addr[VEIL_ETH_ADDRESS_LEN];
};

/* ---- curve constants, set up once ---------------------------------------- */

static struct {
	EC_GROUP *grp;
	const BIGNUM *n;  /* group order */
	BIGNUM *half_n;   /* floor(n / 2): the low-s bound */
	BIGNUM *n_minus_2;
	BIGNUM *p;        /* field prime */
	BN_MONT_CTX *mont_n;
	bool ok;
} curve;
static pthread_once_t curve_once = PTHREAD_ONCE_INIT;

static void curve_init(void)
{
	BN_CTX *ctx = BN_CTX_new();

	curve.grp = EC_GROUP_new_by_curve_name(NID_secp256k1);
	if (!ctx || !curve.grp)
		goto out;
	curve.n = EC_GROUP_get0_order(curve.grp);
	curve.half_n = BN_new();
	curve.n_minus_2 = BN_new();
	curve.p = BN_new();
	curve.mont_n = BN_MONT_CTX_new();
	if (!curve.n || !curve.half_n || !curve.n_minus_2 || !curve.p ||
	    !curve.mont_n)
		goto out;
	if (!BN_rshift1(curve.half_n, curve.n) ||
	    !BN_copy(curve.n_minus_2, curve.n) ||
	    !BN_sub_word(curve.n_minus_2, 2) ||
	    !EC_GROUP_get_curve(curve.grp, curve.p, NULL, NULL, ctx) ||
	    !BN_MONT_CTX_set(curve.mont_n, curve.n, ctx))
		goto out;
	curve.ok = true;
out:
	BN_CTX_free(ctx);
}

static int curve_get(void)
{
	pthread_once(&curve_once, curve_init);
	if (!curve.ok)
		return veil_errf(VEIL_EINTERNAL, "secp256k1: OpenSSL has no secp256k1 group");
	return 0;
}

/* An OpenSSL failure that is not the input's fault. */
static int ossl_fail(const char *what)
{
	ERR_clear_error();
	return veil_errf(VEIL_EINTERNAL, "secp256k1: %s failed", what);
}

static int bad(const char *why)
{
	ERR_clear_error();
	return veil_errf(VEIL_EBADMSG, "secp256k1: %s", why);
}

static int point_to_pub(const EC_POINT *pt, uint8_t pub[VEIL_SECP256K1_PUB_LEN],
			BN_CTX *ctx)
{
	if (EC_POINT_point2oct(curve.grp, pt, POINT_CONVERSION_UNCOMPRESSED, pub,
			       VEIL_SECP256K1_PUB_LEN, ctx) != VEIL_SECP256K1_PUB_LEN)
		return ossl_fail("point encoding");
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
	EC_POINT *pt = NULL;
	int rc;

	if ((rc = curve_get()) < 0)
		return rc;
	if (pub[0] != 0x04)
		return veil_errf(VEIL_EFORMAT, "secp256k1 public key: prefix 0x%02x, want 0x04 (uncompressed)",
				 pub[0]);
	if (!(pt = EC_POINT_new(curve.grp)))
		return VEIL_ENOMEM;
	/* oct2point checks that the point is on the curve. */
	if (EC_POINT_oct2point(curve.grp, pt, pub, VEIL_SECP256K1_PUB_LEN, NULL) != 1) {
		ERR_clear_error();
		rc = veil_errf(VEIL_EFORMAT, "secp256k1 public key: not a point on the curve");
	} else {
		rc = 0;
	}
	EC_POINT_free(pt);
	return rc;
}

void veil_secp256k1_key_free(struct veil_secp256k1_key *key)
{
	if (!key)
		return;
	veil_secret_free(&key->priv);
	veil_wipe(key, sizeof(*key));
	free(key);
}

int veil_secp256k1_key_from_private(const uint8_t priv[VEIL_SECP256K1_PRIV_LEN],
				    struct veil_secp256k1_key **out)
{
	struct veil_secp256k1_key *k = NULL;
	BN_CTX *ctx = NULL;
	BIGNUM *d = NULL;
	EC_POINT *q = NULL;
	int rc;

	if ((rc = curve_get()) < 0)
		return rc;
	ctx = BN_CTX_secure_new();
	d = BN_secure_new();
	q = EC_POINT_new(curve.grp);
	k = calloc(1, sizeof(*k));
	if (!ctx || !d || !q || !k) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	BN_set_flags(d, BN_FLG_CONSTTIME);
	if (!BN_bin2bn(priv, VEIL_SECP256K1_PRIV_LEN, d)) {
		rc = ossl_fail("BN_bin2bn");
		goto out;
	}
	if (BN_is_zero(d) || BN_cmp(d, curve.n) >= 0) {
		rc = veil_errf(VEIL_EINVAL, "secp256k1 private key: not in [1, n-1]");
		goto out;
	}
	if (!EC_POINT_mul(curve.grp, q, d, NULL, NULL, ctx)) {
		rc = ossl_fail("d*G");
		goto out;
	}
	if ((rc = point_to_pub(q, k->pub, ctx)) < 0)
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
	EC_POINT_free(q);
	BN_clear_free(d);
	BN_CTX_free(ctx);
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

/* ---- RFC 6979 deterministic nonces (§3.2, HMAC-SHA256, qlen = hlen = 256) */

struct rfc6979 {
	uint8_t k[32];
	uint8_t v[32];
};

static int hmac_sha256(const uint8_t key[32], const uint8_t *d, size_t n,
		       uint8_t out[32])
{
	unsigned int len = 32;

	if (!HMAC(EVP_sha256(), key, 32, d, n, out, &len) || len != 32)
		return ossl_fail("HMAC-SHA256");
	return 0;
}

/* Steps b-f: seeds K and V from x = int2octets(d) and
 * bits2octets(h1) = int2octets(h1 mod n). */
static int rfc6979_init(struct rfc6979 *g, const uint8_t x[32],
			const uint8_t h1[32], BN_CTX *ctx)
{
	uint8_t buf[32 + 1 + 32 + 32];
	BIGNUM *z = BN_CTX_get(ctx);
	int rc = 0;

	if (!z)
		return VEIL_ENOMEM;
	memset(g->v, 0x01, 32);
	memset(g->k, 0x00, 32);
	memcpy(buf + 33, x, 32);
	if (!BN_bin2bn(h1, 32, z) || !BN_nnmod(z, z, curve.n, ctx) ||
	    BN_bn2binpad(z, buf + 65, 32) != 32) {
		rc = ossl_fail("bits2octets");
		goto out;
	}
	for (uint8_t tag = 0; tag <= 1; tag++) {
		memcpy(buf, g->v, 32);
		buf[32] = tag;
		if ((rc = hmac_sha256(g->k, buf, sizeof(buf), g->k)) < 0 ||
		    (rc = hmac_sha256(g->k, g->v, 32, g->v)) < 0)
			goto out;
	}
out:
	veil_wipe(buf, sizeof(buf));
	return rc;
}

/* Step h: the next candidate k (caller checks 1 <= k < n).  After the first
 * call, each further call first applies the "K = HMAC_K(V || 0x00);
 * V = HMAC_K(V)" update of h.3. */
static int rfc6979_next(struct rfc6979 *g, bool retry, uint8_t t[32])
{
	uint8_t buf[33];
	int rc;

	if (retry) {
		memcpy(buf, g->v, 32);
		buf[32] = 0x00;
		rc = hmac_sha256(g->k, buf, sizeof(buf), g->k);
		veil_wipe(buf, sizeof(buf));
		if (rc < 0 || (rc = hmac_sha256(g->k, g->v, 32, g->v)) < 0)
			return rc;
	}
	/* qlen = 256 = hlen: one HMAC block is T, and bits2int(T) = T. */
	if ((rc = hmac_sha256(g->k, g->v, 32, g->v)) < 0)
		return rc;
	memcpy(t, g->v, 32);
	return 0;
}

/* ---- ECDSA ----------------------------------------------------------------- */

int veil_secp256k1_sign_hash(const struct veil_secp256k1_key *key,
			     const uint8_t hash[32],
			     enum veil_secp256k1_nonce nonce,
			     uint8_t rs[VEIL_SECP256K1_RS_LEN], int *recid)
{
	struct rfc6979 g;
	uint8_t kbytes[32];
	BN_CTX *ctx = NULL;
	BIGNUM *d, *k, *kinv, *e, *x, *y, *r, *s, *t;
	EC_POINT *R = NULL;
	int rc, id = 0;

	if ((rc = curve_get()) < 0)
		return rc;
	if (nonce != VEIL_SECP256K1_RFC6979 && nonce != VEIL_SECP256K1_RANDOM)
		return veil_errf(VEIL_EINVAL, "secp256k1: unknown nonce mode %d", (int)nonce);
	if (!(ctx = BN_CTX_secure_new()) || !(R = EC_POINT_new(curve.grp))) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	BN_CTX_start(ctx);
	d = BN_CTX_get(ctx);
	k = BN_CTX_get(ctx);
	kinv = BN_CTX_get(ctx);
	e = BN_CTX_get(ctx);
	x = BN_CTX_get(ctx);
	y = BN_CTX_get(ctx);
	r = BN_CTX_get(ctx);
	s = BN_CTX_get(ctx);
	if (!(t = BN_CTX_get(ctx))) {
		rc = VEIL_ENOMEM;
		goto out_ctx;
	}
	BN_set_flags(d, BN_FLG_CONSTTIME);
	BN_set_flags(k, BN_FLG_CONSTTIME);
	BN_set_flags(kinv, BN_FLG_CONSTTIME);
	/* e = bits2int(hash) (§4.1.3 step 5; a 256-bit digest needs no
	 * truncation), reduced mod n. */
	if (!BN_bin2bn(key->priv.bytes, 32, d) || !BN_bin2bn(hash, 32, e) ||
	    !BN_nnmod(e, e, curve.n, ctx)) {
		rc = ossl_fail("BN setup");
		goto out_ctx;
	}
	if (nonce == VEIL_SECP256K1_RFC6979 &&
	    (rc = rfc6979_init(&g, key->priv.bytes, hash, ctx)) < 0)
		goto out_ctx;
	for (int attempt = 0;; attempt++) {
		if (attempt == 64) { /* each retry has probability ~2^-127 */
			rc = veil_errf(VEIL_EINTERNAL, "secp256k1: no usable nonce");
			goto out_ctx;
		}
		rc = nonce == VEIL_SECP256K1_RFC6979 ?
			     rfc6979_next(&g, attempt > 0, kbytes) :
			     veil_random(kbytes, sizeof(kbytes));
		if (rc < 0)
			goto out_ctx;
		if (!BN_bin2bn(kbytes, 32, k)) {
			rc = ossl_fail("BN_bin2bn");
			goto out_ctx;
		}
		if (BN_is_zero(k) || BN_cmp(k, curve.n) >= 0)
			continue;
		/* R = k*G; r = R.x mod n; recid bit 0 = parity of R.y, bit 1 =
		 * whether R.x overflowed n. */
		if (!EC_POINT_mul(curve.grp, R, k, NULL, NULL, ctx) ||
		    !EC_POINT_get_affine_coordinates(curve.grp, R, x, y, ctx) ||
		    !BN_nnmod(r, x, curve.n, ctx)) {
			rc = ossl_fail("k*G");
			goto out_ctx;
		}
		if (BN_is_zero(r))
			continue;
		id = (BN_is_odd(y) ? 1 : 0) | (BN_cmp(x, curve.n) >= 0 ? 2 : 0);
		/* kinv = k^(n-2) mod n (constant time, n prime). */
		if (!BN_mod_exp_mont_consttime(kinv, k, curve.n_minus_2, curve.n,
					       ctx, curve.mont_n)) {
			rc = ossl_fail("k^-1");
			goto out_ctx;
		}
		/* s = kinv * (e + r*d) mod n, Montgomery products: to_mont(a)
		 * = a*R, then mul_mont(a*R, b) = a*b. */
		if (!BN_to_montgomery(t, r, curve.mont_n, ctx) ||
		    !BN_mod_mul_montgomery(t, t, d, curve.mont_n, ctx) ||
		    !BN_mod_add(t, t, e, curve.n, ctx) ||
		    !BN_to_montgomery(t, t, curve.mont_n, ctx) ||
		    !BN_mod_mul_montgomery(s, t, kinv, curve.mont_n, ctx)) {
			rc = ossl_fail("s computation");
			goto out_ctx;
		}
		if (BN_is_zero(s))
			continue;
		/* Low-s (BIP 62 / EIP-2): s and n-s both verify; the one that
		 * flips also flips R's y parity as seen by recovery. */
		if (BN_cmp(s, curve.half_n) > 0) {
			if (!BN_sub(s, curve.n, s)) {
				rc = ossl_fail("BN_sub");
				goto out_ctx;
			}
			id ^= 1;
		}
		/* Ethereum's v only has room for recid 0/1: take the next k
		 * in the astronomically rare R.x >= n case. */
		if (id & 2)
			continue;
		break;
	}
	if (BN_bn2binpad(r, rs, 32) != 32 || BN_bn2binpad(s, rs + 32, 32) != 32) {
		rc = ossl_fail("BN_bn2binpad");
		goto out_ctx;
	}
	*recid = id;
	rc = 0;
out_ctx:
	BN_CTX_end(ctx);
out:
	veil_wipe(&g, sizeof(g));
	veil_wipe(kbytes, sizeof(kbytes));
	EC_POINT_free(R);
	BN_CTX_free(ctx); /* secure context: its BIGNUMs are cleared */
	return rc;
}

/* Loads r and s and checks 1 <= r, s < n and s <= n/2. */
static int load_rs(const uint8_t rs[VEIL_SECP256K1_RS_LEN], BIGNUM *r, BIGNUM *s)
{
	if (!BN_bin2bn(rs, 32, r) || !BN_bin2bn(rs + 32, 32, s))
		return ossl_fail("BN_bin2bn");
	if (BN_is_zero(r) || BN_cmp(r, curve.n) >= 0)
		return bad("signature r is out of range");
	if (BN_is_zero(s) || BN_cmp(s, curve.n) >= 0)
		return bad("signature s is out of range");
	if (BN_cmp(s, curve.half_n) > 0)
		return bad("signature s is in the high half (not canonical)");
	return 0;
}

int veil_secp256k1_verify_hash(const uint8_t pub[VEIL_SECP256K1_PUB_LEN],
			       const uint8_t hash[32],
			       const uint8_t rs[VEIL_SECP256K1_RS_LEN])
{
	BN_CTX *ctx = NULL;
	EC_POINT *Q = NULL, *X = NULL;
	BIGNUM *r, *s, *e, *w, *u1, *u2, *x;
	int rc;

	if ((rc = curve_get()) < 0)
		return rc;
	if (pub[0] != 0x04)
		return bad("public key is not uncompressed (0x04 prefix)");
	if (!(ctx = BN_CTX_new()) || !(Q = EC_POINT_new(curve.grp)) ||
	    !(X = EC_POINT_new(curve.grp))) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	BN_CTX_start(ctx);
	r = BN_CTX_get(ctx);
	s = BN_CTX_get(ctx);
	e = BN_CTX_get(ctx);
	w = BN_CTX_get(ctx);
	u1 = BN_CTX_get(ctx);
	u2 = BN_CTX_get(ctx);
	if (!(x = BN_CTX_get(ctx))) {
		rc = VEIL_ENOMEM;
		goto out_ctx;
	}
	if (EC_POINT_oct2point(curve.grp, Q, pub, VEIL_SECP256K1_PUB_LEN, ctx) != 1) {
		rc = bad("public key is not a point on the curve");
		goto out_ctx;
	}
	if ((rc = load_rs(rs, r, s)) < 0)
		goto out_ctx;
	/* SEC 1 §4.1.4: w = s^-1, u1 = e*w, u2 = r*w, X = u1*G + u2*Q,
	 * valid iff X != O and X.x mod n == r. */
	if (!BN_bin2bn(hash, 32, e) || !BN_nnmod(e, e, curve.n, ctx) ||
	    !BN_mod_inverse(w, s, curve.n, ctx) ||
	    !BN_mod_mul(u1, e, w, curve.n, ctx) ||
	    !BN_mod_mul(u2, r, w, curve.n, ctx) ||
	    !EC_POINT_mul(curve.grp, X, u1, Q, u2, ctx)) {
		rc = ossl_fail("verify arithmetic");
		goto out_ctx;
	}
	if (EC_POINT_is_at_infinity(curve.grp, X)) {
		rc = bad("signature does not verify");
		goto out_ctx;
	}
	if (!EC_POINT_get_affine_coordinates(curve.grp, X, x, NULL, ctx) ||
	    !BN_nnmod(x, x, curve.n, ctx)) {
		rc = ossl_fail("affine coordinates");
		goto out_ctx;
	}
	rc = BN_cmp(x, r) == 0 ? 0 : bad("signature does not verify");
out_ctx:
	BN_CTX_end(ctx);
out:
	EC_POINT_free(X);
	EC_POINT_free(Q);
	BN_CTX_free(ctx);
	return rc;
}

int veil_secp256k1_recover(const uint8_t hash[32],
			   const uint8_t rs[VEIL_SECP256K1_RS_LEN], int recid,
			   uint8_t pub[VEIL_SECP256K1_PUB_LEN])
{
	BN_CTX *ctx = NULL;
	EC_POINT *R = NULL, *Q = NULL;
	BIGNUM *r, *s, *e, *x, *rinv, *u1, *u2;
	uint8_t tmp[VEIL_SECP256K1_PUB_LEN];
	int rc;

	if ((rc = curve_get()) < 0)
		return rc;
	if (recid < 0 || recid > 3)
		return bad("recovery id is not 0..3");
	if (!(ctx = BN_CTX_new()) || !(R = EC_POINT_new(curve.grp)) ||
	    !(Q = EC_POINT_new(curve.grp))) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	BN_CTX_start(ctx);
	r = BN_CTX_get(ctx);
	s = BN_CTX_get(ctx);
	e = BN_CTX_get(ctx);
	x = BN_CTX_get(ctx);
	rinv = BN_CTX_get(ctx);
	u1 = BN_CTX_get(ctx);
	if (!(u2 = BN_CTX_get(ctx))) {
		rc = VEIL_ENOMEM;
		goto out_ctx;
	}
	if ((rc = load_rs(rs, r, s)) < 0)
		goto out_ctx;
	/* SEC 1 §4.1.6: R.x = r + (recid >> 1) * n, must be < p; R.y parity
	 * = recid & 1. */
	if (!BN_copy(x, r) || ((recid & 2) && !BN_add(x, x, curve.n))) {
		rc = ossl_fail("BN_add");
		goto out_ctx;
	}
	if (BN_cmp(x, curve.p) >= 0) {
		rc = bad("recovery id names an R.x beyond the field");
		goto out_ctx;
	}
	if (EC_POINT_set_compressed_coordinates(curve.grp, R, x, recid & 1, ctx) != 1) {
		rc = bad("r is not the x coordinate of a curve point");
		goto out_ctx;
	}
	/* Q = r^-1 (s*R - e*G) = u1*G + u2*R with u1 = -e/r, u2 = s/r. */
	if (!BN_bin2bn(hash, 32, e) || !BN_nnmod(e, e, curve.n, ctx) ||
	    !BN_mod_inverse(rinv, r, curve.n, ctx) ||
	    !BN_mod_sub(u1, curve.n, e, curve.n, ctx) ||
	    !BN_mod_mul(u1, u1, rinv, curve.n, ctx) ||
	    !BN_mod_mul(u2, s, rinv, curve.n, ctx) ||
	    !EC_POINT_mul(curve.grp, Q, u1, R, u2, ctx)) {
		rc = ossl_fail("recover arithmetic");
		goto out_ctx;
	}
	if (EC_POINT_is_at_infinity(curve.grp, Q)) {
		rc = bad("recovered key is the point at infinity");
		goto out_ctx;
	}
	if ((rc = point_to_pub(Q, tmp, ctx)) < 0)
		goto out_ctx;
	memcpy(pub, tmp, VEIL_SECP256K1_PUB_LEN);
	rc = 0;
out_ctx:
	BN_CTX_end(ctx);
out:
	EC_POINT_free(Q);
	EC_POINT_free(R);
	BN_CTX_free(ctx);
	return rc;
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
