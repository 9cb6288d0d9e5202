/* veil policy: what a client (veil-proxy, veil-gateway, `veil policy`)
 * accepts from attested servers — veil-policy/1, a JSON file
 * (docs/policy.md):
 *
 *   {"version": "veil-policy/1",
 *    "tee": ["tdx", "sev-snp"],
 *    "allow_sim": false,
 *    "min_tcb_status": "UpToDate",
 *    "gpu": {"required": false, "min_count": 0, "arch": ["HOPPER", "BLACKWELL"]},
 *    "gateway": {"gateway_binary": [hex96], "gateway_config": [hex96], BOOT},
 *    "models": {"<name>": {"node_binary": [hex96], "node_config": [hex96],
 *                          "model": [hex96], "model_sha256": [hex64], BOOT}},
 *    "other_models": "refuse" | "any"}
 *
 * BOOT: optional pins of the verified hardware evidence itself, "mrtd",
 * "rtmr0", "rtmr1", "rtmr2", "mr_config_id" (TDX quote, hex96) or
 * "snp_measurement" (hex96), "host_data" (hex64) (SEV-SNP report); a pin of
 * one TEE refuses the other's reports.  The veil measurement pins (node_*,
 * model, model_sha256, gateway_*) are RTMR3 events the program writes itself,
 * bound to the quote by the event-log replay: a SEV-SNP report has no such
 * replay, so a policy with any of them refuses a SEV-SNP report (explicit
 * error) rather than trust unauthenticated JSON.
 *
 * Every field is optional; a list means "any of these", an absent list means
 * "not pinned".  Defaults: tee ["tdx","sev-snp"] (+ "sim" when sim is
 * allowed by the file or by veil_policy_set_allow_sim), min_tcb_status
 * "UpToDate", gpu not required, other_models "refuse" when "models" names
 * any model, else "any".  TCB statuses are ordered
 *   UpToDate > SWHardeningNeeded > ConfigurationNeeded >
 *   ConfigurationAndSWHardeningNeeded > OutOfDate >
 *   OutOfDateConfigurationNeeded
 * and a report passes when its status is at least min_tcb_status; Revoked
 * never passes; "unknown" (not evaluated) passes only with min_tcb_status
 * "any".  Unknown keys anywhere are refused: a typo must not weaken a
 * policy.
 *
 * A struct veil_policy is immutable once loaded except through
 * veil_policy_set_allow_sim and veil_policy_pin; it is not thread-safe
 * against those two (readers may share it otherwise). */
#ifndef VEIL_POLICY_H
#define VEIL_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "veil/base.h"
#include "veil/report.h"

#define VEIL_POLICY_VERSION "veil-policy/1"
#define VEIL_POLICY_MAX (1u << 20)      /* a policy file larger is refused */
#define VEIL_POLICY_MAX_LIST 64         /* entries per pin list */
#define VEIL_POLICY_MAX_MODELS 256
#define VEIL_POLICY_MODEL_NAME_MAX 128

/* The gateway's attestation document (GET /v1/attestation/report of
 * veil-gateway): {"version", "gateway": veil-report/1, "nodes": [...]} */
#define VEIL_GATEWAY_REPORT_VERSION "veil-gateway-report/1"

enum veil_policy_role { VEIL_POLICY_NODE, VEIL_POLICY_GATEWAY };

struct veil_policy;

/* Parses a policy document (strict; VEIL_EFORMAT / VEIL_ENOTSUP with a
 * detail naming the field).  Free with veil_policy_free(). */
int veil_policy_load(const uint8_t *json, size_t n, struct veil_policy **out);
int veil_policy_load_file(const char *path, struct veil_policy **out);

/* The permissive default: every default above, nothing pinned (any model).
 * NULL when out of memory. */
struct veil_policy *veil_policy_new(void);
void veil_policy_free(struct veil_policy *p);

/* The canonical JSON of the policy (every field written, defaults made
 * explicit, lists sorted and deduplicated); the caller json_decref()s.
 * veil_policy_load of its dump gives an equal policy.  NULL on ENOMEM. */
json_t *veil_policy_to_json(const struct veil_policy *p);

/* The caller's --allow-sim: sim evidence (tee "sim") is accepted when either
 * the file or this says so. */
void veil_policy_set_allow_sim(struct veil_policy *p, bool allow);
bool veil_policy_allows_sim(const struct veil_policy *p);

/* Whether the policy pins anything of the gateway (its measurements or
 * boot chain): then only a gateway's own report can meet it. */
bool veil_policy_pins_gateway(const struct veil_policy *p);

/* Whether a TCB status ("UpToDate", ...; NULL or "" = not evaluated) meets
 * the policy's min_tcb_status (the ordering above; Revoked never). */
bool veil_policy_tcb_allows(const struct veil_policy *p, const char *status);

/* SEV-SNP evidence carries no DCAP-style TCB status.  A policy with
 * "snp_min_tcb" judges a SEV-SNP report by its reported TCB (verified
 * against the VCEK) instead: 0 when every component is at least the
 * policy's minimum, VEIL_EPERM (detail names the component) when one is
 * below or when the policy sets no minimum. */
struct veil_snp_tcb;
int veil_policy_snp_tcb_check(const struct veil_policy *p, const struct veil_snp_tcb *t);

/* Verifies a veil-report/1 document (veil_report_verify with nonce and
 * allow_sim from the policy) AND checks it against the policy for `role`
 * (model: the model name the node must serve; NULL for the gateway): TEE
 * kind, TCB status, GPU requirements, measurements pins, model_sha256 pin
 * (against the measured veil-model-sha256 event, which veil_report_verify
 * checked report.model.sha256 against), boot-chain pins (BOOT above),
 * model name == report.model.name.  *v is always filled (v->ok false and
 * v->error set on a policy failure too); release it with
 * veil_report_verdict_free().  The report must be of the role's shape (node
 * events for a node, gateway events for a gateway).  nonce is required
 * (NULL is refused: to skip freshness use veil_policy_verify_report_ex with
 * skip_nonce); the time is the wall clock.  Returns 0 or the first failure's
 * code (VEIL_EPERM for policy). */
int veil_policy_verify_report(const struct veil_policy *p,
			      enum veil_policy_role role, const char *model,
			      const uint8_t *json, size_t n,
			      const uint8_t nonce[32],
			      struct veil_report_verdict *v);

struct veil_policy_verify_opts {
	const uint8_t *nonce;   /* 32 bytes; required unless skip_nonce */
	bool skip_nonce;        /* explicit: freshness is not checked */
	int64_t now;            /* unix seconds the evidence is judged at, 0 = now
				 * (a logged report: the time it was received) */
	const struct veil_tdx_collateral *collateral; /* NULL = the report's */
};

/* veil_policy_verify_report with options (o NULL = all zero, which refuses
 * for want of a nonce). */
int veil_policy_verify_report_ex(const struct veil_policy *p,
				 enum veil_policy_role role, const char *model,
				 const uint8_t *json, size_t n,
				 const struct veil_policy_verify_opts *o,
				 struct veil_report_verdict *v);

/* The policy half alone: judges a verdict that veil_report_verify has just
 * filled (v->ok; json/n the same report) and updates it like
 * veil_policy_verify_report.  A verdict that is not ok is refused. */
int veil_policy_check_verdict(const struct veil_policy *p,
			      enum veil_policy_role role, const char *model,
			      const uint8_t *json, size_t n,
			      struct veil_report_verdict *v);

/* Trust on first use: adds pins for what a verified report shows (the boot
 * chain: MRTD, RTMR0..2, MR_CONFIG_ID of a TDX or sim quote, or a SEV-SNP
 * report's MEASUREMENT and HOST_DATA; for TDX and sim also the role's veil
 * measurements, and for a node model and the measured model_sha256, under
 * `model`, which defaults to the report's model.name when NULL).  The report is parsed, not
 * verified: verify it first.  A SEV-SNP report also sets "snp_min_tcb" to
 * its reported TCB when the policy has none.  Pins are added to the lists (kept sorted,
 * deduplicated); other_models becomes "refuse" once a model is pinned
 * unless the policy said "any" explicitly. */
int veil_policy_pin(struct veil_policy *p, enum veil_policy_role role,
		    const char *model, const uint8_t *json, size_t n);

/* Fetches GET <base_url>/v1/attestation/report?nonce=HEX[&model=M]
 * (synchronous, via veil_http_fetch).  Over https any certificate is
 * accepted, and the leaf's SPKI SHA-256 goes to spki_sha256 and *tls=true:
 * the caller must then check it equals the attested keys.tls_spki_sha256
 * (this is how a TLS key gets pinned on first contact).  Over http *tls is
 * false and spki_sha256 zeroed.  body gets the response (its max caps it; a
 * zero max means VEIL_REPORT_MAX * 8).  A non-200 answer is VEIL_EIO with
 * the status and the server's error message in the detail; 503 and 429
 * (the server is busy making reports: retry later) are VEIL_EBUSY.  For
 * any HTTP answer spki_sha256 and *tls are set (the key that answered). */
int veil_policy_fetch_report(const char *base_url, const char *model /*NULL*/,
			     const uint8_t nonce[32], unsigned timeout_ms,
			     struct veil_buf *body, uint8_t spki_sha256[32],
			     bool *tls);

#endif
