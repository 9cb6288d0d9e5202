/* veil hpke: Hybrid Public Key Encryption (RFC 9180) on OpenSSL 3.0
 * primitives (SHA-256, the AEADs) and libsodium (X25519).
 *
 * One KEM and one KDF: DHKEM(X25519, HKDF-SHA256) (kem_id 0x0020) and
 * HKDF-SHA256 (kdf_id 0x0001).  AEADs: AES-128-GCM, AES-256-GCM,
 * ChaCha20-Poly1305 and export-only.  Modes: base, psk, auth, auth_psk.
 *
 * Single-shot functions (veil_hpke_seal/open) cover one message at seq 0;
 * contexts (veil_hpke_setup_sender/receiver) carry the sequence number for a
 * stream of messages and give the secret exporter.  Every secret derived on
 * the way (DH outputs, shared secret, key schedule) is wiped before it goes
 * out of scope; a context wipes its keys when freed.
 *
 * Functions return 0 on success or a negative VEIL_E* code, with a detail in
 * veil_err_detail(); out-params are written only on success.  A message that
 * does not authenticate is VEIL_EBADMSG. */
#ifndef VEIL_HPKE_H
#define VEIL_HPKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VEIL_HPKE_KEM_X25519_SHA256 0x0020
#define VEIL_HPKE_KDF_HKDF_SHA256 0x0001

enum veil_hpke_aead {
	VEIL_HPKE_AES128GCM = 0x0001,
	VEIL_HPKE_AES256GCM = 0x0002,
	VEIL_HPKE_CHACHA20POLY1305 = 0x0003,
	VEIL_HPKE_EXPORT_ONLY = 0xffff,
};

enum veil_hpke_mode {
	VEIL_HPKE_MODE_BASE = 0,
	VEIL_HPKE_MODE_PSK = 1,
	VEIL_HPKE_MODE_AUTH = 2,
	VEIL_HPKE_MODE_AUTH_PSK = 3,
};

#define VEIL_HPKE_NPK 32  /* public key and enc length (X25519) */
#define VEIL_HPKE_NSK 32  /* private key length */
#define VEIL_HPKE_NENC 32
#define VEIL_HPKE_NT 16   /* AEAD tag length (all three AEADs) */
#define VEIL_HPKE_NN 12   /* AEAD nonce length */
#define VEIL_HPKE_NH 32   /* HKDF-SHA256 output length */
/* Inputs (info, psk, psk_id, exporter context, ikm) longer than this are
 * refused with VEIL_ERANGE: RFC 9180 §7.2.1 lets implementations cap them. */
#define VEIL_HPKE_MAX_INPUT 1024
/* Longest export: 255 * Nh (RFC 5869). */
#define VEIL_HPKE_MAX_EXPORT (255 * VEIL_HPKE_NH)
/* A context handles at most this many messages; the next seal/open is
 * VEIL_ERANGE (RFC 9180 §5.2 MessageLimitReachedError, at a 64-bit seq). */
#define VEIL_HPKE_MAX_SEQ UINT64_MAX

/* An X25519 key pair.  `priv` is secret: wipe the struct with
 * veil_hpke_keypair_wipe() when done.  `pub` must be priv's public key
 * (make pairs with the functions below): setup uses it as pkR / pkS without
 * recomputing it, and a mismatched pair gives secrets nobody else derives. */
struct veil_hpke_keypair {
	uint8_t pub[VEIL_HPKE_NPK];
	uint8_t priv[VEIL_HPKE_NSK];
};

/* Fresh key pair from veil_random(). */
int veil_hpke_keygen(struct veil_hpke_keypair *kp);
/* RFC 9180 §7.1.3 DeriveKeyPair(ikm): deterministic, for tests and vectors.
 * ikm_len must be at least 32 (Nsk) and at most VEIL_HPKE_MAX_INPUT. */
int veil_hpke_derive_keypair(const uint8_t *ikm, size_t ikm_len,
			     struct veil_hpke_keypair *kp);
/* Fills kp->pub from the 32-byte private key `priv` (copied to kp->priv). */
int veil_hpke_keypair_from_private(const uint8_t priv[VEIL_HPKE_NSK],
				   struct veil_hpke_keypair *kp);
void veil_hpke_keypair_wipe(struct veil_hpke_keypair *kp);

/* Ephemeral key pool (sender side; off until started).
 *
 * A seal (veil_hpke_setup_sender / veil_hpke_seal with opts->eph NULL, and
 * so veil_seal_client_new / veil_seal_request) spends half its fixed cost
 * making the ephemeral key pair: one X25519 scalar multiplication, ~26 us.
 * A started pool makes them ahead of use in a background thread (signals
 * blocked), holding up to `size` keys; a seal takes one when there is one
 * and otherwise makes its own, as without a pool.  Only when the key is
 * made changes: what is sealed, and how, is the same.  One pool per
 * process; these functions are thread-safe.
 *
 * Safety (an ephemeral key sealing two messages to one recipient repeats the
 * AES-GCM key and nonce):
 *  - each key leaves the pool once: it is copied out and its slot wiped under
 *    the pool's lock, and the seal wipes it after use, failed or not;
 *  - a child of fork() never takes a key of the parent's pool: the keys
 *    live in memory marked MADV_WIPEONFORK (zeroed in the child; start fails
 *    with VEIL_ENOTSUP where the kernel lacks it), a pthread_atfork handler
 *    drops the pool in the child, and every take checks the pid; the wipe
 *    or the pid check alone suffices, after fork() and after a bare clone
 *    that runs no atfork handler (test_hpke checks both).  The
 *    child seals with fresh keys and may start a pool of its own.  (Its
 *    memory is otherwise a copy of the parent's, as after any fork.);
 *  - the memory is kept out of core dumps and locked when RLIMIT_MEMLOCK
 *    allows;
 *  - not for a machine whose memory may be snapshotted and resumed twice
 *    (cloned VMs): both copies would hold the same unused keys.  The host
 *    of a TDX or SEV-SNP guest cannot restore its encrypted memory into a
 *    second guest; on ordinary VMs with snapshots leave the pool off.
 * Keys wait unused in memory for a while: an attacker who can read this
 * process's memory learns them, as it would any key the process holds. */
#define VEIL_HPKE_EPH_POOL_MAX 1024

/* Starts the process's pool of `size` keys (1..VEIL_HPKE_EPH_POOL_MAX).
 * VEIL_EINVAL when one is running, VEIL_ENOTSUP without MADV_WIPEONFORK. */
int veil_hpke_eph_pool_start(unsigned size);
/* Stops the thread and wipes the unused keys; a no-op without a pool. */
void veil_hpke_eph_pool_stop(void);

/* Counts since the last start. */
struct veil_hpke_eph_pool_stats {
	unsigned size;   /* 0 when no pool runs in this process */
	unsigned ready;  /* keys waiting now */
	uint64_t made;   /* keys the pool made */
	uint64_t taken;  /* seals that took a pool key */
	uint64_t missed; /* seals that found it empty and made their own */
};
void veil_hpke_eph_pool_stats(struct veil_hpke_eph_pool_stats *st);

/* Name ("aes256gcm", "aes128gcm", "chacha20poly1305", "exportonly") <->
 * id.  Parse returns the id or VEIL_EINVAL for an unknown name. */
int veil_hpke_aead_parse(const char *name);
const char *veil_hpke_aead_name(int aead);
/* Key length Nk of an AEAD (0 for export-only); VEIL_ENOTSUP if unknown. */
int veil_hpke_aead_nk(int aead);

/* Everything about a setup except the recipient key.  Zero-initialise, then
 * set what applies: `info` (may be NULL when info_len is 0); `psk`/`psk_id`
 * for the psk modes (both or neither; psk at least 32 bytes); for the auth
 * modes, the sender passes its key pair in `sender` and the recipient the
 * sender's public key in `sender_pub`.  `eph`, sender side only, fixes the
 * ephemeral key pair (deterministic tests and vectors); NULL draws a fresh
 * one from veil_random(), which is what production code must do. */
struct veil_hpke_opts {
	enum veil_hpke_mode mode;
	enum veil_hpke_aead aead;
	const uint8_t *info;
	size_t info_len;
	const uint8_t *psk;
	size_t psk_len;
	const uint8_t *psk_id;
	size_t psk_id_len;
	const struct veil_hpke_keypair *sender;
	const uint8_t *sender_pub;
	const struct veil_hpke_keypair *eph;
};

/* An encryption context (RFC 9180 §5.2).  Opaque; one role (sender seals,
 * receiver opens); not thread-safe (setups of different contexts may run
 * on several threads at once).  Free with veil_hpke_ctx_free(), which
 * wipes the keys. */
struct veil_hpke_ctx;

/* SetupS: encapsulates to `pk_r`, writes `enc` (32 bytes) and a new sender
 * context to *out (caller frees).  VEIL_EINVAL for inconsistent options,
 * VEIL_EBADMSG when pk_r is a low-order point (all-zero DH output). */
int veil_hpke_setup_sender(const struct veil_hpke_opts *o,
			   const uint8_t pk_r[VEIL_HPKE_NPK],
			   uint8_t enc[VEIL_HPKE_NENC], struct veil_hpke_ctx **out);
/* SetupR: decapsulates `enc` with the recipient key pair `kp_r`. */
int veil_hpke_setup_receiver(const struct veil_hpke_opts *o,
			     const struct veil_hpke_keypair *kp_r,
			     const uint8_t enc[VEIL_HPKE_NENC],
			     struct veil_hpke_ctx **out);
/* A context over a key and base nonce derived elsewhere (for instance from
 * an exporter, as veil-seal/1 does for responses).  It seals (sender) or
 * opens (!sender) with nonce = base_nonce XOR seq, like an HPKE context, and
 * has no exporter (veil_hpke_ctx_export is VEIL_ENOTSUP).  key_len must be
 * the AEAD's Nk. */
int veil_hpke_ctx_new_raw(enum veil_hpke_aead aead, bool sender,
			  const uint8_t *key, size_t key_len,
			  const uint8_t base_nonce[VEIL_HPKE_NN],
			  struct veil_hpke_ctx **out);
void veil_hpke_ctx_free(struct veil_hpke_ctx *c);

/* ContextS.Seal: writes pt_len + 16 bytes of ciphertext and tag to `ct`
 * (ct == pt, exactly overlapping, is allowed; other overlaps are not) and
 * advances seq.  VEIL_ERANGE when ct_cap is too small or the sequence is
 * exhausted; VEIL_ENOTSUP for export-only; VEIL_EINVAL on a receiver. */
int veil_hpke_ctx_seal(struct veil_hpke_ctx *c, const uint8_t *aad,
		       size_t aad_len, const uint8_t *pt, size_t pt_len,
		       uint8_t *ct, size_t ct_cap, size_t *ct_len);
/* ContextR.Open: writes ct_len - 16 bytes of plaintext to `pt` (pt == ct
 * allowed) and advances seq.  VEIL_EBADMSG when it does not authenticate;
 * then seq is unchanged and the plaintext buffer is wiped. */
int veil_hpke_ctx_open(struct veil_hpke_ctx *c, const uint8_t *aad,
		       size_t aad_len, const uint8_t *ct, size_t ct_len,
		       uint8_t *pt, size_t pt_cap, size_t *pt_len);
/* Context.Export(exporter_context, L) into out[0..len). */
int veil_hpke_ctx_export(const struct veil_hpke_ctx *c, const uint8_t *exp_ctx,
			 size_t exp_ctx_len, uint8_t *out, size_t len);
/* The sequence number of the next message. */
uint64_t veil_hpke_ctx_seq(const struct veil_hpke_ctx *c);
/* Moves the sequence number, for tests (vectors, the overflow limit) and for
 * a receiver that resumes at a known point.  A sender may only move it
 * forward (a nonce must never repeat): going back is VEIL_EINVAL. */
int veil_hpke_ctx_set_seq(struct veil_hpke_ctx *c, uint64_t seq);

/* Single-shot SealBase/SealPSK/SealAuth/SealAuthPSK (seq 0): writes enc and
 * pt_len + 16 bytes of ct. */
int veil_hpke_seal(const struct veil_hpke_opts *o,
		   const uint8_t pk_r[VEIL_HPKE_NPK], const uint8_t *aad,
		   size_t aad_len, const uint8_t *pt, size_t pt_len,
		   uint8_t enc[VEIL_HPKE_NENC], uint8_t *ct, size_t ct_cap,
		   size_t *ct_len);
/* Single-shot Open (seq 0): writes ct_len - 16 bytes of plaintext. */
int veil_hpke_open(const struct veil_hpke_opts *o,
		   const struct veil_hpke_keypair *kp_r,
		   const uint8_t enc[VEIL_HPKE_NENC], const uint8_t *aad,
		   size_t aad_len, const uint8_t *ct, size_t ct_len,
		   uint8_t *pt, size_t pt_cap, size_t *pt_len);

#endif
