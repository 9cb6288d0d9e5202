/* HPKE (RFC 9180) with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and the
 * AEADs AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 and export-only, written
 * on OpenSSL 3.0 EVP primitives (3.0 has no HPKE API) for SHA-256 and the
 * AEADs, and libsodium for X25519 (see "X25519" below for why). */
#include "veil/digest.h"
#include "veil/hpke.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/mman.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <sodium.h>

#include "crypto_impl.h"

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

/* ---- HKDF-SHA256 (RFC 5869) --------------------------------------------
 * veil_hkdf_sha256_* (veil/digest.h): HMAC-SHA256 on EVP_Digest* with
 * SHA-256 fetched once.  EVP_KDF costs about 1.4 us a call in OpenSSL 3.0
 * (a new context, the digest fetched by name, parameter parsing) for 0.3 us
 * of hashing, and a key schedule makes eight calls.  Checked by every RFC
 * 9180 vector and, for long outputs, against OpenSSL's HKDF (test_hpke:
 * test_long_exports_match_openssl_hkdf). */

/* A digest context for veil_hmac_sha256 in *mc (caller frees): one serves all
 * the HMACs of a key schedule. */
static int md_ctx_new(EVP_MD_CTX **mc)
{
	if (!(*mc = EVP_MD_CTX_new()))
		return veil_errf(VEIL_ENOMEM, "HKDF: digest context allocation failed");
	return 0;
}

/* RFC 9180 §4: LabeledExtract(salt, label, ikm) =
 *   Extract(salt, "HPKE-v1" || suite_id || label || ikm) */
static int labeled_extract(EVP_MD_CTX *mc, const uint8_t *suite, size_t suite_len,
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
	rc = veil_hkdf_sha256_extract(mc, salt, salt_len, buf, n, prk);
	veil_wipe(buf, n);
	return rc;
}

/* LabeledExpand(prk, label, info, L) =
 *   Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L) */
static int labeled_expand(EVP_MD_CTX *mc, const uint8_t *suite, size_t suite_len,
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
	return veil_hkdf_sha256_expand(mc, prk, buf, n, out, len);
}

static const uint8_t KEM_SUITE[5] = {'K', 'E', 'M', 0x00, 0x20};

/* ---- X25519 -------------------------------------------------------------
 * On libsodium (crypto_scalarmult / crypto_scalarmult_base), not OpenSSL's
 * EVP: a seal makes two X25519 operations and an open one, on every sealed
 * request's path to its first token.  Through EVP each needs key objects
 * imported by the X25519 key manager (for the ephemeral key, OpenSSL's
 * fixed-base table: 30 KB), a derive context and an algorithm fetch: in a
 * hot loop that costs about as much as libsodium's plain ladder (keygen
 * ~24 vs ~26 us, DH ~28 vs ~28 us here), but on the request path, with the
 * caches cold, EVP took ~55 us per operation against libsodium's ~35
 * (caches evicted before each call; tests/bench/hpke_bench.c measures
 * whole setups, hot and cold, against raw OpenSSL X25519).
 * libsodium clamps the scalar and masks the top bit of u as RFC 7748 §5
 * says, like OpenSSL (test_hpke cross-checks the two, non-canonical and
 * high-bit inputs included). */

static int x25519_public(const uint8_t priv[32], uint8_t pub[32])
{
	int rc;

	if ((rc = crypto_sodium_ready("X25519")) < 0)
		return rc;
	/* fails only for an all-zero result, which a clamped scalar never
	 * gives */
	if (crypto_scalarmult_base(pub, priv) != 0)
		return veil_errf(VEIL_EINTERNAL, "X25519: public key computation failed");
	return 0;
}

/* DH(sk, pk); a low-order pk gives an all-zero output, which RFC 9180
 * §7.1.4 (via RFC 7748 §6.1) says to refuse: libsodium returns -1 for it,
 * and the check below says so again without relying on that.  The peer is
 * not otherwise "validated": for X25519 every 32-byte string is a public
 * key (RFC 7748 §5). */
static int x25519_dh(const uint8_t sk[32], const uint8_t pk[32], uint8_t out[32])
{
	static const uint8_t zero[32];
	int rc;

	if ((rc = crypto_sodium_ready("X25519")) < 0)
		return rc;
	if (crypto_scalarmult(out, sk, pk) != 0 || CRYPTO_memcmp(out, zero, 32) == 0) {
		veil_wipe(out, 32);
		return veil_errf(VEIL_EBADMSG, "X25519: DH failed (low-order public key)");
	}
	return 0;
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
	EVP_MD_CTX *mc;
	int rc;

	if (!ikm || !kp)
		return veil_errf(VEIL_EINVAL, "HPKE: NULL ikm");
	if (ikm_len < VEIL_HPKE_NSK)
		return veil_errf(VEIL_EINVAL, "HPKE: DeriveKeyPair ikm of %zu bytes is under 32",
				 ikm_len);
	if ((rc = md_ctx_new(&mc)) < 0)
		return rc;
	if ((rc = labeled_extract(mc, KEM_SUITE, 5, NULL, 0, "dkp_prk", ikm, ikm_len, prk)) == 0 &&
	    (rc = labeled_expand(mc, KEM_SUITE, 5, prk, "sk", NULL, 0, sk, 32)) == 0)
		rc = veil_hpke_keypair_from_private(sk, kp);
	EVP_MD_CTX_free(mc);
	veil_wipe(prk, sizeof(prk));
	veil_wipe(sk, sizeof(sk));
	return rc;
}

void veil_hpke_keypair_wipe(struct veil_hpke_keypair *kp)
{
	if (kp)
		veil_wipe(kp, sizeof(*kp));
}

/* ---- ephemeral key pool (include/veil/hpke.h) ---------------------------
 * The keys live in one anonymous mapping marked MADV_WIPEONFORK: a child of
 * fork() (or of any clone that copies the address space) finds it zeroed, so
 * its `ready` count is 0 and it can take nothing.  Beside that, the
 * pthread_atfork child handler forgets the parent's pool, and every take
 * checks the pid.  A key is copied out and its slot wiped under the lock:
 * each key leaves the pool once. */

struct pool_mem {
	/* a ring: the `ready` keys from slot[head] on, oldest first (a key
	 * waits in memory no longer than it must) */
	uint32_t head, ready;
	struct veil_hpke_keypair slot[];
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t want;     /* the refill thread waits here */
	struct pool_mem *mem;    /* NULL: no pool */
	size_t map_len;
	unsigned size;
	bool running;            /* the refill thread runs (or is starting) */
	pid_t pid;               /* the process that started the pool */
	pthread_t th;
	uint64_t made, taken, missed;
} g_pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .want = PTHREAD_COND_INITIALIZER};
static pthread_once_t g_pool_once = PTHREAD_ONCE_INIT;

/* Wipes and unmaps the keys; g_pool.mu held (or a single-threaded child). */
static void pool_release(void)
{
	if (g_pool.mem) {
		veil_wipe(g_pool.mem, g_pool.map_len);
		munlock(g_pool.mem, g_pool.map_len);
		munmap(g_pool.mem, g_pool.map_len);
	}
	g_pool.mem = NULL;
	g_pool.map_len = 0;
	g_pool.size = 0;
	g_pool.running = false;
}

/* fork(): hold the lock across it so that the child sees no half-taken key;
 * the child has no refill thread and must not use the parent's keys. */
static void pool_atfork_prepare(void)
{
	pthread_mutex_lock(&g_pool.mu);
}

static void pool_atfork_parent(void)
{
	pthread_mutex_unlock(&g_pool.mu);
}

static void pool_atfork_child(void)
{
	pool_release();
	g_pool.made = g_pool.taken = g_pool.missed = 0;
	/* The refill thread may have been waiting on `want` in the parent; it
	 * does not exist here, so the condition variable starts over. */
	g_pool.want = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
	pthread_mutex_unlock(&g_pool.mu);
}

static void pool_register_atfork(void)
{
	pthread_atfork(pool_atfork_prepare, pool_atfork_parent, pool_atfork_child);
}

/* The refill thread: sleeps while the pool is full; woken (pool_take, at
 * half), makes keys until it is full again. */
static void *pool_main(void *arg)
{
	struct veil_hpke_keypair kp;
	bool failed = false;

	(void)arg;
	pthread_mutex_lock(&g_pool.mu);
	for (;;) {
		while (g_pool.running && (failed || g_pool.mem->ready >= g_pool.size)) {
			if (failed) {
				/* keygen failed (the RNG?): retry after a pause,
				 * meanwhile seals make their own keys */
				struct timespec ts;

				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_sec += 1;
				pthread_cond_timedwait(&g_pool.want, &g_pool.mu, &ts);
				failed = false;
			} else {
				pthread_cond_wait(&g_pool.want, &g_pool.mu);
			}
		}
		if (!g_pool.running)
			break;
		/* the scalar multiplication runs outside the lock */
		pthread_mutex_unlock(&g_pool.mu);
		failed = veil_hpke_keygen(&kp) < 0;
		pthread_mutex_lock(&g_pool.mu);
		if (!failed && g_pool.running && g_pool.mem->ready < g_pool.size) {
			struct pool_mem *m = g_pool.mem;

			m->slot[(m->head + m->ready) % g_pool.size] = kp;
			m->ready++;
			g_pool.made++;
		}
		veil_wipe(&kp, sizeof(kp));
	}
	pthread_mutex_unlock(&g_pool.mu);
	return NULL;
}

int veil_hpke_eph_pool_start(unsigned size)
{
	long page = sysconf(_SC_PAGESIZE);
	sigset_t all, old;
	size_t len;
	void *m;
	int rc = 0;

	if (size == 0 || size > VEIL_HPKE_EPH_POOL_MAX)
		return veil_errf(VEIL_ERANGE, "HPKE pool: size %u not in 1..%d", size,
				 VEIL_HPKE_EPH_POOL_MAX);
	pthread_once(&g_pool_once, pool_register_atfork);
	if (page <= 0)
		page = 4096;
	len = sizeof(struct pool_mem) + (size_t)size * sizeof(struct veil_hpke_keypair);
	len = (len + (size_t)page - 1) / (size_t)page * (size_t)page;
	pthread_mutex_lock(&g_pool.mu);
	if (g_pool.mem) {
		rc = veil_errf(VEIL_EINVAL, "HPKE pool: already started");
		goto out;
	}
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		rc = veil_errf(VEIL_ENOMEM, "HPKE pool: mmap of %zu bytes: %s", len,
			       strerror(errno));
		goto out;
	}
	g_pool.mem = m;
	g_pool.map_len = len;
	/* Without MADV_WIPEONFORK (Linux < 4.14) a child could see the keys:
	 * no pool then.  The rest is best effort: keep the keys out of swap
	 * and core dumps. */
	if (madvise(m, len, MADV_WIPEONFORK) != 0) {
		rc = veil_errf(VEIL_ENOTSUP, "HPKE pool: MADV_WIPEONFORK: %s", strerror(errno));
		pool_release();
		goto out;
	}
	(void)madvise(m, len, MADV_DONTDUMP);
	(void)mlock(m, len);
	g_pool.size = size;
	g_pool.pid = getpid();
	g_pool.made = g_pool.taken = g_pool.missed = 0;
	g_pool.running = true;
	/* the thread takes no signals: they belong to the application's threads */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&g_pool.th, NULL, pool_main, NULL) != 0) {
		rc = veil_errf(VEIL_ENOMEM, "HPKE pool: cannot start its thread");
		pool_release();
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
out:
	pthread_mutex_unlock(&g_pool.mu);
	return rc;
}

void veil_hpke_eph_pool_stop(void)
{
	pthread_t th;

	pthread_mutex_lock(&g_pool.mu);
	if (!g_pool.mem || !g_pool.running || g_pool.pid != getpid()) {
		pthread_mutex_unlock(&g_pool.mu);
		return;
	}
	g_pool.running = false;
	th = g_pool.th;
	pthread_cond_broadcast(&g_pool.want);
	pthread_mutex_unlock(&g_pool.mu);
	pthread_join(th, NULL);
	pthread_mutex_lock(&g_pool.mu);
	pool_release();
	pthread_mutex_unlock(&g_pool.mu);
}

void veil_hpke_eph_pool_stats(struct veil_hpke_eph_pool_stats *st)
{
	if (!st)
		return;
	pthread_mutex_lock(&g_pool.mu);
	memset(st, 0, sizeof(*st));
	if (g_pool.mem && g_pool.pid == getpid()) {
		st->size = g_pool.size;
		st->ready = g_pool.mem->ready;
	}
	st->made = g_pool.made;
	st->taken = g_pool.taken;
	st->missed = g_pool.missed;
	pthread_mutex_unlock(&g_pool.mu);
}

/* Takes a key out of the pool into *kp: true when there was one. */
static bool pool_take(struct veil_hpke_keypair *kp)
{
	bool got = false;

	pthread_mutex_lock(&g_pool.mu);
	if (g_pool.mem && g_pool.running && g_pool.pid == getpid()) {
		struct pool_mem *m = g_pool.mem;

		if (m->ready > 0 && m->ready <= g_pool.size && m->head < g_pool.size) {
			struct veil_hpke_keypair *k = &m->slot[m->head];

			*kp = *k;
			veil_wipe(k, sizeof(*k));
			m->head = (m->head + 1) % g_pool.size;
			m->ready--;
			g_pool.taken++;
			got = true;
		} else {
			g_pool.missed++;
		}
		/* Wake the refill thread at half: it then fills the pool in one
		 * go, instead of a wake-up (a futex call) for every seal. */
		if (m->ready <= g_pool.size / 2)
			pthread_cond_signal(&g_pool.want);
	}
	pthread_mutex_unlock(&g_pool.mu);
	return got;
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

/* The AEADs, fetched once: with EVP_aes_256_gcm() and the like, every key
 * setup fetches the implementation again (~0.2 us of 0.4). */
static EVP_CIPHER *g_aes128gcm, *g_aes256gcm, *g_chacha;
static pthread_once_t g_cipher_once = PTHREAD_ONCE_INIT;

static void ciphers_fetch(void)
{
	g_aes128gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
	g_aes256gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	g_chacha = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
}

/* NULL for export-only; never NULL for an AEAD (a failed fetch falls back
 * to the implicit one, which then reports its own failure). */
static const EVP_CIPHER *aead_cipher(int aead)
{
	pthread_once(&g_cipher_once, ciphers_fetch);
	switch (aead) {
	case VEIL_HPKE_AES128GCM: return g_aes128gcm ? g_aes128gcm : EVP_aes_128_gcm();
	case VEIL_HPKE_AES256GCM: return g_aes256gcm ? g_aes256gcm : EVP_aes_256_gcm();
	case VEIL_HPKE_CHACHA20POLY1305: return g_chacha ? g_chacha : EVP_chacha20_poly1305();
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
	EVP_MD_CTX *mc;

	if ((rc = md_ctx_new(&mc)) < 0)
		return rc;
	put16(suite + 8, (unsigned)o->aead);
	if ((rc = labeled_extract(mc, KEM_SUITE, 5, NULL, 0, "eae_prk", dh, dh_len, prk)) < 0 ||
	    (rc = labeled_expand(mc, KEM_SUITE, 5, prk, "shared_secret", kem_ctx,
				 kem_ctx_len, shared, 32)) < 0)
		goto out;
	ksc[0] = (uint8_t)o->mode;
	if ((rc = labeled_extract(mc, suite, 10, NULL, 0, "psk_id_hash", o->psk_id,
				  o->psk_id_len, ksc + 1)) < 0 ||
	    (rc = labeled_extract(mc, suite, 10, NULL, 0, "info_hash", o->info,
				  o->info_len, ksc + 33)) < 0 ||
	    (rc = labeled_extract(mc, suite, 10, shared, 32, "secret", o->psk,
				  o->psk_len, secret)) < 0)
		goto out;
	if (nk > 0 &&
	    ((rc = labeled_expand(mc, suite, 10, secret, "key", ksc, KSC_LEN, key,
				  (size_t)nk)) < 0 ||
	     (rc = labeled_expand(mc, suite, 10, secret, "base_nonce", ksc, KSC_LEN,
				  nonce, VEIL_HPKE_NN)) < 0))
		goto out;
	if (nk == 0)
		memset(nonce, 0, sizeof(nonce));
	if ((rc = labeled_expand(mc, suite, 10, secret, "exp", ksc, KSC_LEN, exp,
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
	EVP_MD_CTX_free(mc);
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
	/* a pool key is ours alone from here, and wiped at out like any */
	if (o->eph)
		eph = *o->eph;
	else if (!pool_take(&eph) && (rc = veil_hpke_keygen(&eph)) < 0)
		return rc;
	/* §4.1 Encap / AuthEncap */
	if ((rc = x25519_dh(eph.priv, pk_r, dh)) < 0)
		goto out;
	memcpy(kem_ctx, eph.pub, 32);
	memcpy(kem_ctx + 32, pk_r, 32);
	if (o->mode == VEIL_HPKE_MODE_AUTH || o->mode == VEIL_HPKE_MODE_AUTH_PSK) {
		if ((rc = x25519_dh(o->sender->priv, pk_r, dh + 32)) < 0)
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
	if ((rc = x25519_dh(kp_r->priv, enc, dh)) < 0)
		goto out;
	memcpy(kem_ctx, enc, 32);
	memcpy(kem_ctx + 32, kp_r->pub, 32);
	if (o->mode == VEIL_HPKE_MODE_AUTH || o->mode == VEIL_HPKE_MODE_AUTH_PSK) {
		if ((rc = x25519_dh(kp_r->priv, o->sender_pub, dh + 32)) < 0)
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

/* Gets (sealing) or sets (opening) the 16-byte tag.  The parameter call is
 * what EVP_CIPHER_CTX_ctrl(EVP_CTRL_AEAD_GET/SET_TAG) becomes in OpenSSL 3.0,
 * minus the translation (~15 ns of a 64-byte chunk's ~180). */
static int aead_tag(EVP_CIPHER_CTX *cc, bool set, uint8_t tag[VEIL_HPKE_NT])
{
	OSSL_PARAM p[2];

	p[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag,
						 VEIL_HPKE_NT);
	p[1] = OSSL_PARAM_construct_end();
	if ((set ? EVP_CIPHER_CTX_set_params(cc, p) : EVP_CIPHER_CTX_get_params(cc, p)) <= 0)
		return VEIL_EINTERNAL;
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
	    aead_tag(c->cc, false, ct + pt_len) < 0)
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
	    aead_tag(c->cc, true, tag) < 0)
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
	EVP_MD_CTX *mc;
	int rc;

	if (!c || !out || (exp_ctx_len && !exp_ctx))
		return veil_errf(VEIL_EINVAL, "HPKE: NULL argument");
	if (!c->has_exporter)
		return veil_errf(VEIL_ENOTSUP, "HPKE: this context has no exporter");
	if ((rc = md_ctx_new(&mc)) < 0)
		return rc;
	/* §5.3: Export = LabeledExpand(exporter_secret, "sec", ctx, L) */
	rc = labeled_expand(mc, c->suite_id, 10, c->exporter_secret, "sec", exp_ctx,
			    exp_ctx_len, out, len);
	EVP_MD_CTX_free(mc);
	return rc;
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
