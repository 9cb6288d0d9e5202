/* veil report: veil's attestation report (veil-report/1) — the JSON a node
 * serves at GET /v1/attestation/report?nonce=<64 hex> — and its offline
 * verification; plus verification of NEAR AI's attestation report.
 * Byte-level format: docs/protocol.md, "Attestation report (veil-report/1)".
 *
 *   {"version":"veil-report/1", "tee":"tdx"|"sev-snp"|"sim", "sim":bool,
 *    "quote":hex, "gpu_evidence":[{"arch","evidence":hex,
 *    "certificate_chain":PEM}], "gpu_nonce":hex,
 *    "keys":{"encoding":hex, "ed25519", "secp256k1", "eth_address",
 *    "x25519_hpke", "tls_spki_sha256"}, "report_data":hex, "nonce":hex,
 *    "event_log":[...], "measurements":{"node_binary","node_config","model",
 *    "model_sha256"?} (a node) or {"gateway_binary","gateway_config"} (a
 *    gateway),
 *    "model"?:{"name","sha256"}, "collateral"?:{dcap-qvl layout},
 *    "generated_at":unix seconds}
 *
 * Roles.  A node measures VEIL_EVLOG_NODE_BINARY, VEIL_EVLOG_NODE_CONFIG and
 * VEIL_EVLOG_MODEL, and when it knows the model file's SHA-256,
 * VEIL_EVLOG_MODEL_SHA256 (eventlog.h) into RTMR3; a gateway, which runs in a TEE
 * too, measures VEIL_EVLOG_GATEWAY_BINARY and VEIL_EVLOG_GATEWAY_CONFIG and
 * binds a key set without an HPKE key.  A report carries one role's events,
 * never both (building or verifying a mixed log is VEIL_EFORMAT): a verifier
 * must not have to guess which program it is talking to.  The verdict's
 * "role" says which ("node" also for a log with no veil event at all).
 *
 * A "sim" report carries a TDX v4 quote signed by a simulated chain whose
 * root is the last certificate of the quote's PCK chain; it verifies only
 * when the caller allows simulated evidence, and its verdict says so. */
#ifndef VEIL_REPORT_H
#define VEIL_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "veil/eventlog.h"
#include "veil/keyset.h"
#include "veil/tdx.h"

#define VEIL_REPORT_VERSION "veil-report/1"

/* The gateway's runtime events (RTMR3, 48-byte SHA-384 payloads, measured
 * once each, in this order); the node's are in eventlog.h. */
#define VEIL_EVLOG_GATEWAY_BINARY "veil-gateway-binary"
#define VEIL_EVLOG_GATEWAY_CONFIG "veil-gateway-config"
#define VEIL_REPORT_MAX (8u << 20) /* a report larger than this is refused */

/* ---- building (the node side; veil_attester_report() calls this) -------- */

struct veil_report_gpu {
	const uint8_t *evidence; /* SPDM request||response */
	size_t evidence_len;
	const char *pem;         /* device chain, leaf first */
	const char *arch;        /* "HOPPER", "BLACKWELL" */
};

struct veil_report_parts {
	const char *tee;         /* "tdx", "sev-snp", "sim" */
	bool sim;
	const uint8_t *quote;
	size_t quote_len;
	const uint8_t *vcek;     /* SEV-SNP: VCEK/VLEK DER, or NULL */
	size_t vcek_len;
	const struct veil_report_gpu *gpus;
	size_t n_gpus;
	const uint8_t *keyset;   /* canonical key-set encoding */
	size_t keyset_len;
	const uint8_t *nonce;    /* 32 */
	const uint8_t *report_data; /* 64 */
	const struct veil_evlog *log;
	const char *collateral;  /* dcap-qvl JSON text, or NULL */
	const char *model;       /* or NULL */
	const char *model_sha256;
};

/* Assembles the report object (the caller json_decref()s *out).  The
 * measurements are taken from the log's veil runtime events (a node's or a
 * gateway's; a log holding both is VEIL_EFORMAT). */
int veil_report_build(const struct veil_report_parts *p, json_t **out);

/* ---- verification ----------------------------------------------------------- */

struct veil_report_policy {
	/* Expected SHA-384 (48 bytes) of each veil runtime event; NULL = any. */
	const uint8_t *node_binary;
	const uint8_t *node_config;
	const uint8_t *model;
	/* Acceptable TCB statuses; NULL/0 = any status the DCAP verifier
	 * accepts (everything but Revoked). */
	const char *const *tcb_status;
	size_t n_tcb_status;
};

struct veil_report_opts {
	const uint8_t *nonce;   /* 32 bytes; required unless skip_nonce */
	bool skip_nonce;        /* explicit: freshness is not checked */
	bool allow_sim;         /* accept simulated evidence (tests, demos) */
	int64_t now;            /* unix seconds, 0 = wall clock */
	const struct veil_tdx_collateral *collateral; /* NULL = the report's */
	const struct veil_report_policy *policy;      /* may be NULL */
	uint8_t snp_max_vmpl;   /* SEV-SNP: veil_snp_opts.max_vmpl (default 0) */
};

struct veil_report_verdict {
	bool ok;
	bool sim;
	char tee[16];
	char status[40];        /* TCB status, "" when unknown */
	char error[512];        /* why not ok, "" when ok */
	struct veil_keyset keys;       /* valid when ok */
	uint8_t report_data[64];       /* valid when ok */
	json_t *json;           /* the whole verdict (owned; see below) */
};

/* Verifies a veil-report/1 document:
 *  - sim evidence is refused unless opts->allow_sim ("simulated TEE ...");
 *  - the quote: TDX via veil_tdx_verify() with the report's collateral or
 *    opts->collateral (sim: anchored at the sim root in the quote's chain),
 *    TCB status against the policy;
 *  - report_data == SHA-256(keys.encoding) || nonce, and the broken-out
 *    keys equal the encoding's;
 *  - the event log: runtime-event digests, replay == the quote's RTMR0..3;
 *  - "measurements" == the log's veil runtime events (node or gateway
 *    events, never both), and == the policy (whose pins are a node's);
 *  - "model.sha256", when present: TDX and sim (replayed logs) == the
 *    veil-model-sha256 event (absent event: refused); SEV-SNP: not bound,
 *    the verdict says "model_sha256_bound": false;
 *  - "sim": true with a "tee" other than "sim" is refused;
 *  - every GPU: veil_nvgpu_verify() (sim: at the chain's own root) with
 *    nonce SHA-256(report_data).
 * *v is always filled (v->json when memory allows: {"ok","kind":"report",
 * "tee","sim","status","advisories","error","warning"?, "role"
 * ("node"|"gateway", once the event log was read), "report_data",
 * "nonce","keys","measurements","quote":{tdx verdict},"gpus":[...],
 * "checks":{...}}); release with veil_report_verdict_free().  Returns 0
 * when verified, else the first failure's code. */
int veil_report_verify(const uint8_t *json, size_t n, const struct veil_report_opts *o,
		       struct veil_report_verdict *v);
void veil_report_verdict_free(struct veil_report_verdict *v);

/* Reads a policy file: {"node_binary"?:hex96, "node_config"?:hex96,
 * "model"?:hex96, "tcb_status"?:[1..16 statuses]}; any other key, an empty
 * list, or a "version" (a veil-policy/1 file, see policy.h) is refused.
 * Free with veil_report_policy_free(). */
int veil_report_policy_load(const uint8_t *json, size_t n, struct veil_report_policy **out);
void veil_report_policy_free(struct veil_report_policy *p);

/* ---- NEAR AI ------------------------------------------------------------------ */

/* Verifies the JSON of NEAR AI's /v1/attestation/report: one attestation,
 * the composite {"gateway_attestation", "model_attestations": [...]} (every
 * component must verify; the verdict lists them in "components"), or the
 * early private-ml-sdk {"intel_quote","nvidia_payload"} form.  Per
 * attestation:
 *  - intel_quote (hex or base64): with collateral, full DCAP; without, the
 *    quote's signatures and PCK chain to the Intel root only, and status
 *    "unknown" (NEAR AI's FMSPCs have no public collateral);
 *  - report_data: SHA-256(signing_address || tls_cert_fingerprint) || nonce
 *    when a fingerprint is given, else signing_address (ecdsa: 20-byte
 *    address; ed25519: public key) zero-padded to 32 bytes || nonce;
 *    without signing_address the binding is reported as not checkable (a
 *    warning, not a pass); the nonce is opts->nonce, else the report's
 *    request_nonce (a warning says freshness then rests on the report);
 *  - event_log (array or JSON string, or info.tcb_info.event_log): runtime
 *    digests and replay == RTMR0..3;
 *  - app_compose (info.tcb_info.app_compose): mr_config_id ==
 *    0x01 || sha256(app_compose) || 0^15 and == the compose-hash event;
 *  - nvidia_payload: every GPU evidence (veil_nvgpu_verify_list), nonce ==
 *    opts->nonce when given.
 * opts->nonce may be NULL (then freshness is a warning); allow_sim and
 * policy are ignored.  Fills *v like veil_report_verify (kind "nearai"). */
int veil_nearai_verify(const uint8_t *json, size_t n, const struct veil_report_opts *o,
		       struct veil_report_verdict *v);

/* True when the bytes look like a veil report / a NEAR AI report. */
bool veil_report_sniff(const uint8_t *p, size_t n);
bool veil_nearai_sniff(const uint8_t *p, size_t n);

#endif
