/* veil tdx: Intel DCAP quotes (TDX v4/v5 and SGX v3) and their verification.
 *
 * One module for both TEEs, because they share the quote format, the QE, the
 * PCK chain and the collateral; everything is named veil_tdx_*, and an SGX
 * quote is simply a veil_tdx_quote whose tee_type is VEIL_TDX_TEE_SGX.
 *
 *   veil_tdx_quote_parse()       bytes -> struct (no crypto; borrows bytes)
 *   veil_tdx_collateral_parse()  dcap-qvl collateral JSON -> parsed collateral
 *   veil_tdx_verify()            full DCAP verification at a given time
 *   veil_tdx_verdict_json()      the result as a JSON object
 *
 * Verification follows Intel's DCAP rules and reaches the same decisions as
 * @phala/dcap-qvl 0.3.9 on every shared vector, with a few checks stricter
 * than it: CRL signatures and validity windows are checked, every certificate
 * must be covered by a CRL from its issuer, the QE vendor ID and the PCE ID
 * must be Intel's / the TCB info's, inner lengths must add up exactly, and the
 * TDX module identity (tdxModule / tdxModuleIdentities) is evaluated as
 * Intel's QVL does (TEE_TCB_SVN[0..1] are then left out of the TDX component
 * comparison).  The trust anchor is the pinned Intel SGX Root CA
 * (veil_tdx_intel_root_der()).
 *
 * Collateral comes from a file or memory in the dcap-qvl JSON layout, or is
 * fetched from a PCCS / Intel PCS into an on-disk cache by veil/pccs.h
 * (which writes that same layout). */
#ifndef VEIL_TDX_H
#define VEIL_TDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* ---- quote layout ------------------------------------------------------ */

#define VEIL_TDX_TEE_SGX 0x00000000u
#define VEIL_TDX_TEE_TDX 0x00000081u

#define VEIL_TDX_BODY_SGX 1  /* SGX enclave report, 384 B */
#define VEIL_TDX_BODY_TD10 2 /* TD report 1.0, 584 B */
#define VEIL_TDX_BODY_TD15 3 /* TD report 1.5, 648 B */

#define VEIL_TDX_HEADER_LEN 48
#define VEIL_TDX_SGX_REPORT_LEN 384
#define VEIL_TDX_TD10_LEN 584
#define VEIL_TDX_TD15_LEN 648

/* A quote may be at most this big (real ones are ~5 KB; padded 8 KB). */
#define VEIL_TDX_QUOTE_MAX (1u << 20)

struct veil_tdx_header {
	uint16_t version;      /* 3 (SGX), 4 or 5 (TDX) */
	uint16_t att_key_type; /* 2 = ECDSA-256 with P-256 */
	uint32_t tee_type;     /* VEIL_TDX_TEE_* */
	uint16_t qe_svn;
	uint16_t pce_svn;
	uint8_t qe_vendor_id[16];
	uint8_t user_data[20];
};

/* SGX enclave report (also the QE report). */
struct veil_tdx_enclave_report {
	uint8_t cpu_svn[16];
	uint32_t miscselect;
	uint8_t attributes[16];
	uint8_t mr_enclave[32];
	uint8_t mr_signer[32];
	uint16_t isv_prod_id;
	uint16_t isv_svn;
	uint8_t report_data[64];
};

/* TD report body; the last two fields exist only in TD 1.5 bodies. */
struct veil_tdx_td_report {
	uint8_t tee_tcb_svn[16];
	uint8_t mr_seam[48];
	uint8_t mr_signer_seam[48];
	uint8_t seam_attributes[8];
	uint8_t td_attributes[8];
	uint8_t xfam[8];
	uint8_t mr_td[48];
	uint8_t mr_config_id[48];
	uint8_t mr_owner[48];
	uint8_t mr_owner_config[48];
	uint8_t rtmr[4][48];
	uint8_t report_data[64];
	uint8_t tee_tcb_svn2[16]; /* TD 1.5 */
	uint8_t mr_servicetd[48]; /* TD 1.5 */
};

/* A parsed quote.  The pointer fields borrow from the bytes given to
 * veil_tdx_quote_parse(), which must outlive the struct; nothing is owned,
 * nothing needs freeing. */
struct veil_tdx_quote {
	struct veil_tdx_header header;
	int body_type;      /* VEIL_TDX_BODY_*; v3/v4 get the implied type */
	uint32_t body_size; /* 384, 584 or 648 */
	struct veil_tdx_enclave_report sgx; /* body_type SGX */
	struct veil_tdx_td_report td;       /* body_type TD10 / TD15 */

	const uint8_t *signed_data; /* header (+ v5 descriptor) + body */
	size_t signed_len;
	size_t quote_len; /* declared end; bytes after it are ignored */

	const uint8_t *signature;  /* 64 B r||s over signed_data */
	const uint8_t *attest_key; /* 64 B x||y, P-256 */
	uint16_t outer_cert_type;  /* v4/v5: 6; v3: 0 (no outer layer) */
	const uint8_t *qe_report;  /* 384 B, signed by the PCK key */
	struct veil_tdx_enclave_report qe;
	const uint8_t *qe_report_sig; /* 64 B r||s */
	const uint8_t *qe_auth;
	uint16_t qe_auth_len;
	uint16_t pck_cert_type; /* 5 = PEM chain (the only type verified) */
	const uint8_t *pck_data;
	uint32_t pck_data_len;
};

/* Parses a quote (SGX v3, TDX v4 with a TD 1.0 body, TDX v5 with any body).
 * Every length is checked against what remains; bytes after the declared
 * signature data are ignored (zero padding, appended data).  Inner lengths
 * must add up exactly.  No signature is checked.  VEIL_EFORMAT (truncated,
 * inconsistent) or VEIL_ENOTSUP (version, key type, body type), detail naming
 * the field. */
int veil_tdx_quote_parse(const uint8_t *p, size_t n, struct veil_tdx_quote *out);

/* Reads a quote file: raw bytes, or hex text (optional 0x prefix, whitespace
 * ignored).  On success *out holds malloc'd bytes the caller frees. */
int veil_tdx_quote_load(const char *path, uint8_t **out, size_t *out_len);

/* ---- collateral ------------------------------------------------------------ */

struct veil_tdx_collateral; /* opaque; parsed once, used read-only */

/* Parses collateral in the dcap-qvl JSON layout: tcb_info and qe_identity
 * (strings holding the exact signed JSON), tcb_info_signature and
 * qe_identity_signature (hex r||s), root_ca_crl and pck_crl (hex DER),
 * tcb_info_issuer_chain and qe_identity_issuer_chain (PEM).
 * pck_crl_issuer_chain is not needed (the PCK CRL is verified with the
 * Platform/Processor CA of the quote's own, verified chain) and
 * pck_certificate_chain is not supported yet (quotes must carry a type-5
 * PEM chain).  Structure only: signatures and times are checked by
 * veil_tdx_verify().  Free with veil_tdx_collateral_free(). */
int veil_tdx_collateral_parse(const uint8_t *p, size_t n,
			      struct veil_tdx_collateral **out);
int veil_tdx_collateral_load(const char *path, struct veil_tdx_collateral **out);
void veil_tdx_collateral_free(struct veil_tdx_collateral *c);

/* ---- verification ------------------------------------------------------------ */

#define VEIL_TDX_MAX_ADVISORIES 64
#define VEIL_TDX_ADVISORY_LEN 32

struct veil_tdx_verdict {
	bool ok;
	uint32_t tee_type;  /* VEIL_TDX_TEE_*, valid once the quote parsed */
	int quote_version;  /* 0 when the quote did not parse */
	int body_type;
	char status[40];    /* "UpToDate", ..., "" when rejected */
	size_t n_advisories;
	char advisories[VEIL_TDX_MAX_ADVISORIES][VEIL_TDX_ADVISORY_LEN];
	char error[512];    /* why it was rejected, "" when ok */

	/* Measured fields; meaningful only when ok. */
	uint8_t fmspc[6];
	uint8_t report_data[64];
	struct veil_tdx_td_report td;      /* TDX */
	struct veil_tdx_enclave_report sgx; /* SGX */
};

/* Verifies `quote` with collateral `c` at unix time `now`:
 *  quote: version/TEE/key type, QE vendor ID, attestation-key signature over
 *    header+body, QE report signed by the PCK leaf, QE report data =
 *    SHA-256(attestation key || QE auth data) || 32 zero bytes;
 *  PCK chain (from the quote, type 5) to the pinned root with the root CA CRL
 *    and the PCK CRL;
 *  TCB info and QE identity: signatures over their exact bytes with the TCB
 *    signing chain to the same root; issueDate/nextUpdate windows;
 *  TCB status: PCK SGX extension (components, PCESVN, FMSPC, PCEID) and
 *    TEE_TCB_SVN against the TCB levels, the TDX module identity, the QE
 *    identity (MRSIGNER, ISVPRODID, masked MISCSELECT/ATTRIBUTES, ISVSVN);
 *    merged by severity, advisories collected; Revoked is rejected;
 *  policy: SGX DEBUG clear; TDX TUD = 0, reserved bits 0, SEPT_VE_DISABLE
 *    set; TD 1.5 MR_SERVICETD zero.
 * `root_der` (NULL = the pinned Intel SGX Root CA) replaces the anchor, for
 * tests with simulated chains.
 *
 * *v is always written (a rejection is a verdict too).  Returns 0 when the
 * quote is accepted, else a negative VEIL_E* code (VEIL_EBADMSG signature,
 * VEIL_EPERM policy/time/TCB, VEIL_EFORMAT, VEIL_ENOTSUP, VEIL_ENOMEM) with
 * v->error saying why. */
int veil_tdx_verify(const uint8_t *quote, size_t n,
		    const struct veil_tdx_collateral *c, int64_t now,
		    const uint8_t *root_der, size_t root_der_len,
		    struct veil_tdx_verdict *v);

/* Renders a verdict as a new JSON object: ok, kind ("tdx"/"sgx", null when
 * the quote did not parse), quote_version, status (null when rejected),
 * advisories, error (null when ok), and when ok the measured fields in
 * lowercase hex: TDX mrtd, rtmr0..rtmr3, mr_config_id, mr_owner,
 * mr_owner_config, mr_seam, td_attributes, xfam, tee_tcb_svn, report_data,
 * fmspc; SGX mrenclave, mrsigner, isvprodid, isvsvn, report_data, fmspc.
 * The caller json_decref()s it. */
int veil_tdx_verdict_json(const struct veil_tdx_verdict *v, json_t **out);

/* The pinned Intel SGX Root CA, DER (SHA-256 44a0196b...74d3). */
const uint8_t *veil_tdx_intel_root_der(size_t *len);

/* ---- verification caches ------------------------------------------------
 * veil_tdx_verify() remembers what does not depend on the time, so repeated
 * quotes cost little more than their own two signatures:
 *  - per collateral object: its issuer chains, CRL signatures and TCB info /
 *    QE identity signatures, verified against one anchor;
 *  - process-wide (bounded, thread-safe): PCK chains by the SHA-256 of the
 *    quote's exact PEM bytes together with the anchor and both CRLs.
 * Validity windows (certificates, anchor, CRLs) and CRL membership are still
 * checked on every call; whenever one of them fails, the full checks run, so
 * a verdict never depends on what was cached. */
struct veil_tdx_cache_stats {
	uint64_t collateral_hits, collateral_misses;
	uint64_t pck_hits, pck_misses;
};

/* Process-wide counters since start (or the last flush). */
void veil_tdx_cache_stats(struct veil_tdx_cache_stats *out);

/* Drops every cached PCK chain and zeroes the counters (collateral objects
 * keep theirs until freed).  For tests and for operators rotating trust. */
void veil_tdx_cache_flush(void);

#endif
