/* veil tdx: private to src/lib/attest/tdx/ (parsed collateral, PCK
 * extension).  Nothing outside the tdx module includes this. */
#ifndef VEIL_TDX_IMPL_H
#define VEIL_TDX_IMPL_H

#include <pthread.h>

#include <openssl/x509.h>

#include "veil/tdx.h"

/* A TCB status with its advisory IDs, as a TCB/QE/module level lists it. */
struct tdx_status {
	char status[40];
	size_t n_adv;
	char (*adv)[VEIL_TDX_ADVISORY_LEN]; /* malloc'd, n_adv entries */
};

struct tdx_tcb_level {
	uint8_t sgx[16];
	uint16_t pcesvn;
	uint8_t tdx[16];
	bool has_tdx;
	struct tdx_status st;
};

struct tdx_isv_level {
	uint16_t isvsvn;
	struct tdx_status st;
};

struct tdx_module_id {
	char id[16];
	uint8_t mrsigner[48];
	uint8_t attributes[8];
	uint8_t attributes_mask[8];
	struct tdx_isv_level *levels;
	size_t n_levels;
};

/* What veil_tdx_verify() learnt about one collateral object (verify.c): its
 * TCB and QE issuer chains, the CRL signatures and the TCB info / QE identity
 * signatures all verified against the anchor whose DER hashes to `root`.
 * Nothing here depends on the time except the windows, so a later call at a
 * time inside [lo, hi] (every certificate, the anchor and both CRLs are valid
 * there) skips those checks; outside it, everything runs again. */
struct tdx_coll_cache {
	pthread_mutex_t lock;
	bool ok;
	uint8_t root[32];
	int64_t lo, hi;
};

struct veil_tdx_collateral {
	/* the exact signed bytes and their r||s signatures */
	uint8_t *tcb_info_raw;
	size_t tcb_info_len;
	uint8_t tcb_info_sig[64];
	uint8_t *qe_id_raw;
	size_t qe_id_len;
	uint8_t qe_id_sig[64];

	STACK_OF(X509) *tcb_chain; /* TCB signing cert first */
	STACK_OF(X509) *qe_chain;
	X509_CRL *root_crl;
	X509_CRL *pck_crl;
	uint8_t root_crl_id[32]; /* SHA-256 of each CRL's DER */
	uint8_t pck_crl_id[32];
	struct tdx_coll_cache *vc; /* own allocation: mutable behind const */

	/* TCB info (v3) */
	char tcb_id[8]; /* "SGX" / "TDX" */
	int tcb_version;
	int64_t tcb_issue, tcb_next;
	uint8_t fmspc[6];
	uint8_t pce_id[2];
	bool has_tdx_module;
	uint8_t mod_mrsigner[48];
	uint8_t mod_attributes[8];
	uint8_t mod_attributes_mask[8];
	struct tdx_module_id *mods;
	size_t n_mods;
	struct tdx_tcb_level *levels;
	size_t n_levels;

	/* QE identity (v2) */
	char qe_id[8]; /* "QE" / "TD_QE" */
	int qe_version;
	int64_t qe_issue, qe_next;
	uint32_t miscselect, miscselect_mask;
	uint8_t qe_attributes[16], qe_attributes_mask[16];
	uint8_t qe_mrsigner[32];
	uint16_t qe_isvprodid;
	struct tdx_isv_level *qe_levels;
	size_t n_qe_levels;
};

/* Intel SGX PCK certificate extension (OID 1.2.840.113741.1.13.1). */
struct tdx_pck_ext {
	uint8_t ppid[16];
	uint8_t comp[16]; /* SGX TCB components 1..16 */
	uint16_t pcesvn;
	uint8_t cpusvn[16];
	uint8_t pceid[2];
	uint8_t fmspc[6];
	int sgx_type;
};

int tdx_pck_ext_parse(X509 *pck, struct tdx_pck_ext *out);

/* ---- verified PCK chains (cache.c) --------------------------------------
 * A process-wide, bounded (TDX_PCK_CACHE_MAX, least recently used goes),
 * thread-safe map from the SHA-256 of a quote's exact PEM chain bytes, the
 * anchor and both CRLs (tdx_pck_key) to the parsed chain, which passed
 * veil_x509_chain_verify() once, and the window [lo, hi] in which every
 * certificate, the anchor and both CRLs are valid.  Entries are reference
 * counted: what tdx_pck_cache_get() returns stays valid, read-only, until
 * tdx_pck_cache_release(). */
#define TDX_PCK_CACHE_MAX 64

struct tdx_pck_entry {
	uint8_t key[32];
	STACK_OF(X509) *chain; /* leaf first; read-only */
	int64_t lo, hi;
	bool has_ext;          /* ext below is the leaf's parsed extension */
	struct tdx_pck_ext ext;
	unsigned refs;         /* under the cache lock */
	uint64_t used;         /* LRU tick */
};

void tdx_pck_key(const uint8_t *pem, size_t n, const uint8_t root_id[32],
		 const struct veil_tdx_collateral *c, uint8_t key[32]);
struct tdx_pck_entry *tdx_pck_cache_get(const uint8_t key[32]);
/* Caches `chain` (its certificates are up-referenced, the caller keeps its
 * own) under `key`; an existing entry is left as it is. */
void tdx_pck_cache_put(const uint8_t key[32], STACK_OF(X509) *chain, int64_t lo,
		       int64_t hi);
/* Records / reads the leaf's parsed PCK extension of an entry. */
void tdx_pck_cache_set_ext(const uint8_t key[32], const struct tdx_pck_ext *ext);
bool tdx_pck_cache_ext(struct tdx_pck_entry *e, struct tdx_pck_ext *out);
void tdx_pck_cache_release(struct tdx_pck_entry *e);

/* Hit / miss counters (veil_tdx_cache_stats). */
void tdx_cache_count(bool collateral, bool hit);

#endif
