/* HPKE (RFC 9180) with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and the
 * AEADs AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 and export-only, written
 * on OpenSSL 3.0 EVP primitives (3.0 has no HPKE API). */
#include "veil/hpke.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "veil/base.h"

/* Longest labeled input: "HPKE-v1" || suite_id (10) || label (<= 16) ||
 * input (<= VEIL_HPKE_MAX_INPUT), plus I2OSP(L, 2) for expand. */
#define LABELED_MAX (2 + 7 + 10 + 16 + VEIL_HPKE_MAX_INPUT)
#define KSC_LEN (1 + 2 * VEIL_HPKE_NH)

struct veil_hpke_ctx {
	int aead;
	bool sender;
	bool has_exporter;
	uint64_t seq;
	uint8_t base_nonce[VEIL_HPKE_NN];
	uint8_t exporter_secret[VEIL_HPKE_NH];
	uint8_t suite_id[10];
	EVP_CIPHER_CTX *cc; /* keyed once at setup; each message sets the IV */
};

/* ---- HKDF-SHA256 through EVP_KDF ---------------------------------------- */

static EVP_KDF *g_hkdf;
static pthread_once_t g_hkdf_once = PTHREAD_ONCE_INIT;

static void hkdf_fetch(void)
{
	g_hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
}

static int hkdf_run(int mode, const uint8_t *salt, size_t salt_len,
		    const uint8_t *key, size_t key_len, const uint8_t *info,
		    size_t info_len, uint8_t *out, size_t out_len)
{
	OSSL_PARAM params[6], *p = params;
	EVP_KDF_CTX *kc;
	int rc = 0;

	pthread_once(&g_hkdf_once, hkdf_fetch);
	if (!g_hkdf)
		return veil_errf(VEIL_EINTERNAL, "HKDF: EVP_KDF_fetch failed");
	if (!(kc = EVP_KDF_CTX_new(g_hkdf)))
		return veil_errf(VEIL_ENOMEM, "HKDF: context allocation failed");
	*p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
						(char *)"SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
						 (void *)key, key_len);
	/* An empty salt is HashLen zeros (RFC 5869 §2.2), which is what HMAC
	 * makes of an absent key; OpenSSL wants the parameter left out. */
	if (salt_len)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
							 (void *)salt, salt_len);
	if (info_len)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
							 (void *)info, info_len);
	*p = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kc, out, out_len, params) <= 0)
		rc = veil_errf(VEIL_EINTERNAL, "HKDF: derive failed (mode %d, %zu bytes)",
			       mode, out_len);
	EVP_KDF_CTX_free(kc);
	return rc;
}

/* RFC 9180 §4: LabeledExtract(salt, label, ikm) =
 *   Extract(salt, "HPKE-v1" || suite_id || label || ikm) */
static int labeled_extract(const uint8_t *suite, size_t suite_len,
			   const uint8_t *salt, size_t salt_len,
			   const char *label, const uint8_t *ikm, size_t ikm_len,
			   uint8_t prk[VEIL_HPKE_NH])
{
	uint8_t buf[LABELED_MAX];
	size_t n = 0, ll = strlen(label);
	int rc;

	if (ll > 16 || ikm_len > VEIL_HPKE_MAX_INPUT)
		return veil_errf(VEIL_ERANGE, "HPKE: %s input of %zu bytes exceeds %d",
				 label, ikm_len, VEIL_HPKE_MAX_INPUT);
	memcpy(buf, "HPKE-v1", 7);
	n = 7;
	memcpy(buf + n, suite, suite_len);
	n += suite_len;
	memcpy(buf + n, label, ll);
	n += ll;
	if (ikm_len)
		memcpy(buf + n, ikm, ikm_len);
	n += ikm_len;
	rc = hkdf_run(EVP_KDF_HKDF_MODE_EXTRACT_ONLY, salt, salt_len, buf, n,
		      NULL, 0, prk, VEIL_HPKE_NH);
	veil_wipe(buf, n);
	return rc;
}

/* LabeledExpand(prk, label, info, L) =
 *   Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L) */
static int labeled_expand(const uint8_t *suite, size_t suite_len,
			  const uint8_t prk[VEIL_HPKE_NH], const char *label,
			  const uint8_t *info, size_t info_len, uint8_t *out,
			  size_t len)
{
	uint8_t buf[LABELED_MAX];
	size_t n = 0, ll = strlen(label);

	if (ll > 16 || info_len > VEIL_HPKE_MAX_INPUT)
		return veil_errf(VEIL_ERANGE, "HPKE: %s context of %zu bytes exceeds %d",
				 label, info_len, VEIL_HPKE_MAX_INPUT);
	if (len == 0 || len > VEIL_HPKE_MAX_EXPORT)
		return veil_errf(VEIL_ERANGE, "HPKE: %s length %zu not in 1..%d",
				 label, len, VEIL_HPKE_MAX_EXPORT);
	buf[0] = (uint8_t)(len >> 8);
	buf[1] = (uint8_t)len;
	memcpy(buf + 2, "HPKE-v1", 7);
	n = 9;
	memcpy(buf + n, suite, suite_len);
	n += suite_len;
	memcpy(buf + n, label, ll);
	n += ll;
	if (info_len)
		memcpy(buf + n, info, info_len);
	n += info_len;
	return hkdf_run(EVP_KDF_HKDF_MODE_EXPAND_ONLY, NULL, 0, prk, VEIL_HPKE_NH,
			buf, n, out, len);
}

static const uint8_t KEM_SUITE[5] = {'K', 'E', 'M', 0x00, 0x20};

/* ---- X25519 ------------------------------------------------------------- */

static int x25519_public(const uint8_t priv[32], uint8_t pub[32])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
	size_t n = 32;
	int rc = 0;

	if (!k)
		return veil_errf(VEIL_EINTERNAL, "X25519: private key import failed");
	if (EVP_PKEY_get_raw_public_key(k, pub, &n) <= 0 || n != 32)
		rc = veil_errf(VEIL_EINTERNAL, "X25519: public key export failed");
	EVP_PKEY_free(k);
	return rc;
}

/* An X25519 EVP_PKEY from a private key and its public key.  Giving both
 * through EVP_PKEY_fromdata spares the scalar multiplication that
 * EVP_PKEY_new_raw_private_key spends recomputing the public key. */
static EVP_PKEY *x25519_import(const uint8_t priv[32], const uint8_t pub[32])
{
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "X25519", NULL);
	EVP_PKEY *k = NULL;

	params[0] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY,
						      (void *)priv, 32);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
						      (void *)pub, 32);
	params[2] = OSSL_PARAM_construct_end();
	if (!pc || EVP_PKEY_fromdata_init(pc) <= 0 ||
	    EVP_PKEY_fromdata(pc, &k, EVP_PKEY_KEYPAIR, params) <= 0)
		k = NULL;
	EVP_PKEY_CTX_free(pc);
	return k;
}

/* DH(sk, pk) with the key pair (sk, sk_pub); a low-order pk gives an
 * all-zero output, which RFC 9180 §7.1.4 (via RFC 7748 §6.1) says to
 * refuse.  Only sk enters the computation; sk_pub just spares recomputing
 * it. */
static int x25519_dh(const uint8_t sk[32], const uint8_t sk_pub[32],
		     const uint8_t pk[32], uint8_t out[32])
{
	static const uint8_t zero[32];
	EVP_PKEY *ks = NULL, *kp = NULL;
	EVP_PKEY_CTX *pc = NULL;
	size_t n = 32;
	int rc = 0;

	ks = x25519_import(sk, sk_pub);
	kp = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, pk, 32);
	if (!ks || !kp || !(pc = EVP_PKEY_CTX_new(ks, NULL))) {
		rc = veil_errf(VEIL_EINTERNAL, "X25519: key import failed");
		goto out;
	}
	if (EVP_PKEY_derive_init(pc) <= 0 || EVP_PKEY_derive_set_peer(pc, kp) <= 0 ||
	    EVP_PKEY_derive(pc, out, &n) <= 0 || n != 32 ||
	    CRYPTO_memcmp(out, zero, 32) == 0) {
		veil_wipe(out, 32);
		rc = veil_errf(VEIL_EBADMSG, "X25519: DH failed (low-order public key)");
	}
out:
	EVP_PKEY_CTX_free(pc);
	EVP_PKEY_free(kp);
	EVP_PKEY_free(ks);
	return rc;
}

int veil_hpke_keypair_from_private(const uint8_t priv[VEIL_HPKE_NSK],
				   struct veil_hpke_keypair *kp)
{
	struct veil_hpke_keypair k;
	int rc;

	if (!priv || !kp)
		return veil_errf(VEIL_EINVAL, "HPKE: NULL key");
	memcpy(k.priv, priv, 32);
	if ((rc = x25519_public(k.priv, k.pub)) == 0)
		*kp = k;
	veil_wipe(&k, sizeof(k));
	return rc;
}

int veil_hpke_keygen(struct veil_hpke_keypair *kp)
{
	uint8_t sk[32];
	int rc;

	if ((rc = veil_random(sk, sizeof(sk))) == 0)
		rc = veil_hpke_keypair_from_private(sk, kp);
	veil_wipe(sk, sizeof(sk));
	return rc;
}

/* RFC 9180 §7.1.3: for X25519, sk = LabeledExpand(dkp_prk, "sk", "", 32). */
int veil_hpke_derive_keypair(const uint8_t *ikm, size_t ikm_len,
			     struct veil_hpke_keypair *kp)
{
	uint8_t prk[32], sk[32];
	int rc;

	if (!ikm || !kp)
		return veil_errf(VEIL_EINVAL, "HPKE: NULL ikm");
	if (ikm_len < VEIL_HPKE_NSK)
		return veil_errf(VEIL_EINVAL, "HPKE: DeriveKeyPair ikm of %zu bytes is under 32",
				 ikm_len);
	if ((rc = labeled_extract(KEM_SUITE, 5, NULL, 0, "dkp_prk", ikm, ikm_len, prk)) == 0 &&
	    (rc = labeled_expand(KEM_SUITE, 5, prk, "sk", NULL, 0, sk, 32)) == 0)
		rc = veil_hpke_keypair_from_private(sk, kp);
	veil_wipe(prk, sizeof(prk));
	veil_wipe(sk, sizeof(sk));
	return rc;
}

void veil_hpke_keypair_wipe(struct veil_hpke_keypair *kp)
{
	if (kp)
		veil_wipe(kp, sizeof(*kp));
}

/* ---- AEAD table --------------------------------------------------------- */

int veil_hpke_aead_nk(int aead)
{
	switch (aead) {
	case VEIL_HPKE_AES128GCM: return 16;
	case VEIL_HPKE_AES256GCM: return 32;
	case VEIL_HPKE_CHACHA20POLY1305: return 32;
	case VEIL_HPKE_EXPORT_ONLY: return 0;
	default: return veil_errf(VEIL_ENOTSUP, "HPKE: unknown AEAD id 0x%04x", aead);
	}
}

static const EVP_CIPHER *aead_cipher(int aead)
{
	switch (aead) {
	case VEIL_HPKE_AES128GCM: return EVP_aes_128_gcm();
	case VEIL_HPKE_AES256GCM: return EVP_aes_256_gcm();
	case VEIL_HPKE_CHACHA20POLY1305: return EVP_chacha20_poly1305();
	default: return NULL;
	}
}

static const struct {
	const char *name;
	int id;
} AEAD_NAMES[] = {
	{"aes128gcm", VEIL_HPKE_AES128GCM},
	{"aes256gcm", VEIL_HPKE_AES256GCM},
	{"chacha20poly1305", VEIL_HPKE_CHACHA20POLY1305},
	{"exportonly", VEIL_HPKE_EXPORT_ONLY},
};

int veil_hpke_aead_parse(const char *name)
{
	for (size_t i = 0; name && i < VEIL_ARRAY_LEN(AEAD_NAMES); i++)
		if (!strcmp(name, AEAD_NAMES[i].name))
			return AEAD_NAMES[i].id;
	return veil_errf(VEIL_EINVAL, "HPKE: unknown AEAD name (want aes256gcm, "
			 "aes128gcm, chacha20poly1305 or exportonly)");
}

const char *veil_hpke_aead_name(int aead)
{
	for (size_t i = 0; i < VEIL_ARRAY_LEN(AEAD_NAMES); i++)
		if (AEAD_NAMES[i].id == aead)
			return AEAD_NAMES[i].name;
	return "unknown";
}

/* ---- contexts ----------------------------------------------------------- */

void veil_hpke_ctx_free(struct veil_hpke_ctx *c)
{
	if (!c)
		return;
	EVP_CIPHER_CTX_free(c->cc); /* cleanses the key schedule */
	veil_wipe(c, sizeof(*c));
	free(c);
}

static int ctx_alloc(int aead, bool sender, const uint8_t *key, size_t key_len,
		     struct veil_hpke_ctx **out)
{
	struct veil_hpke_ctx *c;
	const EVP_CIPHER *ciph;
	int nk = veil_hpke_aead_nk(aead), ok;

	if (nk < 0)
		return nk;
	if ((size_t)nk != key_len)
		return veil_errf(VEIL_EINVAL, "HPKE: key of %zu bytes for %s (want %d)",
				 key_len, veil_hpke_aead_name(aead), nk);
	if (!(c = calloc(1, sizeof(*c))))
		return veil_errf(VEIL_ENOMEM, "HPKE: context allocation failed");
	c->aead = aead;
	c->sender = sender;
	if ((ciph = aead_cipher(aead))) {
		if (!(c->cc = EVP_CIPHER_CTX_new())) {
			free(c);
			return veil_errf(VEIL_ENOMEM, "HPKE: cipher context allocation failed");
		}
		ok = sender ? EVP_EncryptInit_ex(c->cc, ciph, NULL, key, NULL)
			    : EVP_DecryptInit_ex(c->cc, ciph, NULL, key, NULL);
		if (ok <= 0) {
			veil_hpke_ctx_free(c);
			return veil_errf(VEIL_EINTERNAL, "HPKE: %s key setup failed",
					 veil_hpke_aead_name(aead));
		}
	}
	*out = c;
	return 0;
}

int veil_hpke_ctx_new_raw(enum veil_hpke_aead aead, bool sender,
			  const uint8_t *key, size_t key_len,
			  const uint8_t base_nonce[VEIL_HPKE_NN],
			  struct veil_hpke_ctx **out)
{
	struct veil_hpke_ctx *c;
	int rc;

	if (!out || !base_nonce || (!key && key_len))
		return veil_errf(VEIL_EINVAL, "HPKE: NULL argument");
	if ((rc = ctx_alloc((int)aead, sender, key, key_len, &c)) < 0)
		return rc;
	memcpy(c->base_nonce, base_nonce, VEIL_HPKE_NN);
	*out = c;
	return 0;
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* RFC 9180 §5.1 VerifyPSKInputs plus the per-mode key checks. */
static int check_opts(const struct veil_hpke_opts *o, bool sender)
{
	bool psk_mode, auth_mode;

	if (!o)
		return veil_errf(VEIL_EINVAL, "HPKE: NULL options");
	if (o->mode < VEIL_HPKE_MODE_BASE || o->mode > VEIL_HPKE_MODE_AUTH_PSK)
		return veil_errf(VEIL_EINVAL, "HPKE: unknown mode %d", (int)o->mode);
	if (veil_hpke_aead_nk((int)o->aead) < 0)
		return VEIL_ENOTSUP;
	psk_mode = o->mode == VEIL_HPKE_MODE_PSK || o->mode == VEIL_HPKE_MODE_AUTH_PSK;
	auth_mode = o->mode == VEIL_HPKE_MODE_AUTH || o->mode == VEIL_HPKE_MODE_AUTH_PSK;
	if ((o->psk_len == 0) != (o->psk_id_len == 0))
		return veil_errf(VEIL_EINVAL, "HPKE: psk and psk_id must both be given or both be empty");
	if (psk_mode && o->psk_len == 0)
		return veil_errf(VEIL_EINVAL, "HPKE: psk mode without a psk");
	if (!psk_mode && o->psk_len)
		return veil_errf(VEIL_EINVAL, "HPKE: psk given in a non-psk mode");
	if (psk_mode && o->psk_len < 32)
		return veil_errf(VEIL_EINVAL, "HPKE: psk of %zu bytes is under 32", o->psk_len);
	if ((o->psk_len && !o->psk) || (o->psk_id_len && !o->psk_id) ||
	    (o->info_len && !o->info))
		return veil_errf(VEIL_EINVAL, "HPKE: NULL input with a non-zero length");
	if (auth_mode && sender && !o->sender)
		return veil_errf(VEIL_EINVAL, "HPKE: auth mode without the sender key pair");
	if (auth_mode && !sender && !o->sender_pub)
		return veil_errf(VEIL_EINVAL, "HPKE: auth mode without the sender public key");
	if (o->info_len > VEIL_HPKE_MAX_INPUT || o->psk_len > VEIL_HPKE_MAX_INPUT ||
	    o->psk_id_len > VEIL_HPKE_MAX_INPUT)
		return veil_errf(VEIL_ERANGE, "HPKE: info, psk or psk_id longer than %d bytes",
				 VEIL_HPKE_MAX_INPUT);
	return 0;
}

/* RFC 9180 §4.1 ExtractAndExpand, then §5.1 KeySchedule. */
static int key_schedule(const struct veil_hpke_opts *o, bool sender,
			const uint8_t *dh, size_t dh_len,
			const uint8_t *kem_ctx, size_t kem_ctx_len,
			struct veil_hpke_ctx **out)
{
	uint8_t prk[32], shared[32], secret[32], key[32], ksc[KSC_LEN];
	uint8_t suite[10] = {'H', 'P', 'K', 'E', 0x00, 0x20, 0x00, 0x01};
	uint8_t nonce[VEIL_HPKE_NN], exp[VEIL_HPKE_NH];
	struct veil_hpke_ctx *c = NULL;
	int nk = veil_hpke_aead_nk((int)o->aead), rc;

	put16(suite + 8, (unsigned)o->aead);
	if ((rc = labeled_extract(KEM_SUITE, 5, NULL, 0, "eae_prk", dh, dh_len, prk)) < 0 ||
	    (rc = labeled_expand(KEM_SUITE, 5, prk, "shared_secret", kem_ctx,
				 kem_ctx_len, shared, 32)) < 0)
		goto out;
	ksc[0] = (uint8_t)o->mode;
	if ((rc = labeled_extract(suite, 10, NULL, 0, "psk_id_hash", o->psk_id,
				  o->psk_id_len, ksc + 1)) < 0 ||
	    (rc = labeled_extract(suite, 10, NULL, 0, "info_hash", o->info,
				  o->info_len, ksc + 33)) < 0 ||
	    (rc = labeled_extract(suite, 10, shared, 32, "secret", o->psk,
				  o->psk_len, secret)) < 0)
		goto out;
	if (nk > 0 &&
	    ((rc = labeled_expand(suite, 10, secret, "key", ksc, KSC_LEN, key,
				  (size_t)nk)) < 0 ||
	     (rc = labeled_expand(suite, 10, secret, "base_nonce", ksc, KSC_LEN,
				  nonce, VEIL_HPKE_NN)) < 0))
		goto out;
	if (nk == 0)
		memset(nonce, 0, sizeof(nonce));
	if ((rc = labeled_expand(suite, 10, secret, "exp", ksc, KSC_LEN, exp,
				 VEIL_HPKE_NH)) < 0)
		goto out;
	if ((rc = ctx_alloc((int)o->aead, sender, key, (size_t)nk, &c)) < 0)
		goto out;
	memcpy(c->base_nonce, nonce, sizeof(nonce));
	memcpy(c->exporter_secret, exp, sizeof(exp));
	memcpy(c->suite_id, suite, sizeof(suite));
	c->has_exporter = true;
	*out = c;
out:
	veil_wipe(prk, sizeof(prk));
	veil_wipe(shared, sizeof(shared));
	veil_wipe(secret, sizeof(secret));
	veil_wipe(key, sizeof(key));
	veil_wipe(nonce, sizeof(nonce));
	veil_wipe(exp, sizeof(exp));
	return rc;
}

int veil_hpke_setup_sender(const struct veil_hpke_opts *o,
			   const uint8_t pk_r[VEIL_HPKE_NPK],
			   uint8_t enc[VEIL_HPKE_NENC], struct veil_hpke_ctx **out)
{
	struct veil_hpke_keypair eph;
	uint8_t dh[64], kem_ctx[96];
	size_t dh_len = 32, kc_len = 64;
	struct veil_hpke_ctx *c = NULL;
	int rc;

	if ((rc = check_opts(o, true)) < 0)
		return rc;
	if (!pk_r || !enc || !out)
		return veil_errf(VEIL_EINVAL, "HPKE: NULL argument");
	if (o->eph)
		eph = *o->eph;
	else if ((rc = veil_hpke_keygen(&eph)) < 0)
		return rc;
	/* §4.1 Encap / AuthEncap */
	if ((rc = x25519_dh(eph.priv, eph.pub, pk_r, dh)) < 0)
		goto out;
	memcpy(kem_ctx, eph.pub, 32);
	memcpy(kem_ctx + 32, pk_r, 32);
	if (o->mode == VEIL_HPKE_MODE_AUTH || o->mode == VEIL_HPKE_MODE_AUTH_PSK) {
		if ((rc = x25519_dh(o->sender->priv, o->sender->pub, pk_r, dh + 32)) < 0)
			goto out;
		dh_len = 64;
		memcpy(kem_ctx + 64, o->sender->pub, 32);
		kc_len = 96;
	}
	if ((rc = key_schedule(o, true, dh, dh_len, kem_ctx, kc_len, &c)) < 0)
		goto out;
	memcpy(enc, eph.pub, 32);
	*out = c;
out:
	veil_wipe(&eph, sizeof(eph));
	veil_wipe(dh, sizeof(dh));
	return rc;
}

int veil_hpke_setup_receiver(const struct veil_hpke_opts *o,
			     const struct veil_hpke_keypair *kp_r,
			     const uint8_t enc[VEIL_HPKE_NENC],
			     struct veil_hpke_ctx **out)
{
	uint8_t dh[64], kem_ctx[96];
	size_t dh_len = 32, kc_len = 64;
	struct veil_hpke_ctx *c = NULL;
	int rc;

	if ((rc = check_opts(o, false)) < 0)
		return rc;
	if (!kp_r || !enc || !out)
		return veil_errf(VEIL_EINVAL, "HPKE: NULL argument");
	/* §4.1 Decap / AuthDecap */
	if ((rc = x25519_dh(kp_r->priv, kp_r->pub, enc, dh)) < 0)
		goto out;
	memcpy(kem_ctx, enc, 32);
	memcpy(kem_ctx + 32, kp_r->pub, 32);
	if (o->mode == VEIL_HPKE_MODE_AUTH || o->mode == VEIL_HPKE_MODE_AUTH_PSK) {
		if ((rc = x25519_dh(kp_r->priv, kp_r->pub, o->sender_pub, dh + 32)) < 0)
			goto out;
		dh_len = 64;
		memcpy(kem_ctx + 64, o->sender_pub, 32);
		kc_len = 96;
	}
	if ((rc = key_schedule(o, false, dh, dh_len, kem_ctx, kc_len, &c)) < 0)
		goto out;
	*out = c;
out:
	veil_wipe(dh, sizeof(dh));
	return rc;
}

/* §5.2: nonce = base_nonce XOR I2OSP(seq, Nn) */
static void compute_nonce(const struct veil_hpke_ctx *c, uint8_t nonce[VEIL_HPKE_NN])
{
	memcpy(nonce, c->base_nonce, VEIL_HPKE_NN);
	for (int i = 0; i < 8; i++)
		nonce[VEIL_HPKE_NN - 1 - i] ^= (uint8_t)(c->seq >> (8 * i));
}

static int check_aead_call(const struct veil_hpke_ctx *c, bool sealing)
{
	if (!c)
		return veil_errf(VEIL_EINVAL, "HPKE: NULL context");
	if (!c->cc)
		return veil_errf(VEIL_ENOTSUP, "HPKE: export-only context cannot %s",
				 sealing ? "seal" : "open");
	if (c->sender != sealing)
		return veil_errf(VEIL_EINVAL, "HPKE: a %s context cannot %s",
				 c->sender ? "sender" : "receiver", sealing ? "seal" : "open");
	if (c->seq == VEIL_HPKE_MAX_SEQ)
		return veil_errf(VEIL_ERANGE, "HPKE: sequence number exhausted");
	return 0;
}

int veil_hpke_ctx_seal(struct veil_hpke_ctx *c, const uint8_t *aad,
		       size_t aad_len, const uint8_t *pt, size_t pt_len,
		       uint8_t *ct, size_t ct_cap, size_t *ct_len)
{
	uint8_t nonce[VEIL_HPKE_NN];
	int n = 0, f = 0, rc;

	if ((rc = check_aead_call(c, true)) < 0)
		return rc;
	if (!ct || !ct_len || (pt_len && !pt) || (aad_len && !aad))
		return veil_errf(VEIL_EINVAL, "HPKE: NULL argument");
	if (pt_len > INT_MAX - VEIL_HPKE_NT || aad_len > INT_MAX)
		return veil_errf(VEIL_ERANGE, "HPKE: message of %zu bytes too long", pt_len);
	if (ct_cap < pt_len + VEIL_HPKE_NT)
		return veil_errf(VEIL_ERANGE, "HPKE: output of %zu bytes, need %zu",
				 ct_cap, pt_len + VEIL_HPKE_NT);
	compute_nonce(c, nonce);
	if (EVP_EncryptInit_ex(c->cc, NULL, NULL, NULL, nonce) <= 0 ||
	    (aad_len && EVP_EncryptUpdate(c->cc, NULL, &n, aad, (int)aad_len) <= 0) ||
	    (pt_len && EVP_EncryptUpdate(c->cc, ct, &n, pt, (int)pt_len) <= 0) ||
	    EVP_EncryptFinal_ex(c->cc, ct + (pt_len ? n : 0), &f) <= 0 ||
	    EVP_CIPHER_CTX_ctrl(c->cc, EVP_CTRL_AEAD_GET_TAG, VEIL_HPKE_NT,
				ct + pt_len) <= 0)
		return veil_errf(VEIL_EINTERNAL, "HPKE: %s seal failed",
				 veil_hpke_aead_name(c->aead));
	c->seq++;
	*ct_len = pt_len + VEIL_HPKE_NT;
	return 0;
}

int veil_hpke_ctx_open(struct veil_hpke_ctx *c, const uint8_t *aad,
		       size_t aad_len, const uint8_t *ct, size_t ct_len,
		       uint8_t *pt, size_t pt_cap, size_t *pt_len)
{
	uint8_t nonce[VEIL_HPKE_NN], tag[VEIL_HPKE_NT];
	size_t n;
	int m = 0, f = 0, rc;

	if ((rc = check_aead_call(c, false)) < 0)
		return rc;
	if (!ct || !pt_len || (aad_len && !aad))
		return veil_errf(VEIL_EINVAL, "HPKE: NULL argument");
	if (ct_len < VEIL_HPKE_NT)
		return veil_errf(VEIL_EBADMSG, "HPKE: ciphertext of %zu bytes is shorter than the tag",
				 ct_len);
	n = ct_len - VEIL_HPKE_NT;
	if (n > INT_MAX || aad_len > INT_MAX)
		return veil_errf(VEIL_ERANGE, "HPKE: message of %zu bytes too long", n);
	if (pt_cap < n || (n && !pt))
		return veil_errf(VEIL_ERANGE, "HPKE: output of %zu bytes, need %zu", pt_cap, n);
	memcpy(tag, ct + n, VEIL_HPKE_NT);
	compute_nonce(c, nonce);
	if (EVP_DecryptInit_ex(c->cc, NULL, NULL, NULL, nonce) <= 0 ||
	    (aad_len && EVP_DecryptUpdate(c->cc, NULL, &m, aad, (int)aad_len) <= 0) ||
	    (n && EVP_DecryptUpdate(c->cc, pt, &m, ct, (int)n) <= 0) ||
	    EVP_CIPHER_CTX_ctrl(c->cc, EVP_CTRL_AEAD_SET_TAG, VEIL_HPKE_NT, tag) <= 0)
		return veil_errf(VEIL_EINTERNAL, "HPKE: %s open failed",
				 veil_hpke_aead_name(c->aead));
	if (EVP_DecryptFinal_ex(c->cc, pt ? pt + (n ? m : 0) : tag, &f) <= 0) {
		if (n)
			veil_wipe(pt, n);
		return veil_errf(VEIL_EBADMSG, "HPKE: message does not authenticate");
	}
	c->seq++;
	*pt_len = n;
	return 0;
}

int veil_hpke_ctx_export(const struct veil_hpke_ctx *c, const uint8_t *exp_ctx,
			 size_t exp_ctx_len, uint8_t *out, size_t len)
{
	if (!c || !out || (exp_ctx_len && !exp_ctx))
		return veil_errf(VEIL_EINVAL, "HPKE: NULL argument");
	if (!c->has_exporter)
		return veil_errf(VEIL_ENOTSUP, "HPKE: this context has no exporter");
	/* §5.3: Export = LabeledExpand(exporter_secret, "sec", ctx, L) */
	return labeled_expand(c->suite_id, 10, c->exporter_secret, "sec", exp_ctx,
			      exp_ctx_len, out, len);
}

uint64_t veil_hpke_ctx_seq(const struct veil_hpke_ctx *c)
{
	return c ? c->seq : 0;
}

int veil_hpke_ctx_set_seq(struct veil_hpke_ctx *c, uint64_t seq)
{
	if (!c)
		return veil_errf(VEIL_EINVAL, "HPKE: NULL context");
	if (c->sender && seq < c->seq)
		return veil_errf(VEIL_EINVAL, "HPKE: a sender's sequence number cannot go back");
	c->seq = seq;
	return 0;
}

int veil_hpke_seal(const struct veil_hpke_opts *o,
		   const uint8_t pk_r[VEIL_HPKE_NPK], const uint8_t *aad,
		   size_t aad_len, const uint8_t *pt, size_t pt_len,
		   uint8_t enc[VEIL_HPKE_NENC], uint8_t *ct, size_t ct_cap,
		   size_t *ct_len)
{
	struct veil_hpke_ctx *c = NULL;
	uint8_t e[VEIL_HPKE_NENC];
	size_t n;
	int rc;

	if ((rc = veil_hpke_setup_sender(o, pk_r, e, &c)) < 0)
		return rc;
	if ((rc = veil_hpke_ctx_seal(c, aad, aad_len, pt, pt_len, ct, ct_cap, &n)) == 0) {
		memcpy(enc, e, sizeof(e));
		*ct_len = n;
	}
	veil_hpke_ctx_free(c);
	return rc;
}

int veil_hpke_open(const struct veil_hpke_opts *o,
		   const struct veil_hpke_keypair *kp_r,
		   const uint8_t enc[VEIL_HPKE_NENC], const uint8_t *aad,
		   size_t aad_len, const uint8_t *ct, size_t ct_len,
		   uint8_t *pt, size_t pt_cap, size_t *pt_len)
{
	struct veil_hpke_ctx *c = NULL;
	int rc;

	if ((rc = veil_hpke_setup_receiver(o, kp_r, enc, &c)) < 0)
		return rc;
	rc = veil_hpke_ctx_open(c, aad, aad_len, ct, ct_len, pt, pt_cap, pt_len);
	veil_hpke_ctx_free(c);
	return rc;
}
