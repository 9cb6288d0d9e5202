/* veil attester: evidence generators behind one interface (the node side of
 * attestation, DESIGN.md §4).
 *
 *   veil_attester_open()    pick a TEE: real (configfs-tsm: TDX or SEV-SNP
 *                           guest) or simulated ("sim")
 *   veil_attester_extend()  measure a runtime event into RTMR3 and the log
 *   veil_attester_report()  veil's attestation report (include/veil/report.h)
 *   veil_attester_free()
 *
 * Real TEE, configfs-tsm (Linux ≥ 6.7, Documentation/ABI/testing/
 * configfs-tsm): a report entry <root>/report/<entry>/ is created with
 * mkdir; 64 bytes of report_data are written to its "inblob", the quote is
 * read from "outblob", and "generation" is read before the write and after
 * the read: a different value means another writer raced us, so the whole
 * exchange is retried (bounded, VEIL_EAGAIN after VEIL_ATTESTER_TSM_RETRIES).
 * EBUSY from the kernel is retried the same way.  "provider" says
 * "tdx_guest" or "sev_guest".  On SEV-SNP, "auxblob" (the GHCB certificate
 * table) is read in the same window and its VCEK/VLEK goes into the report.
 *
 * RTMR3 extension on a real TDX guest uses, in this order:
 *   <rtmr_path>  default /sys/class/misc/tdx_guest/measurements/rtmr3:sha384
 *                (Linux ≥ 6.16 TSM measurements: write the 48-byte digest)
 *   <root>/rtmrs/<name>/digest with index 3 (the configfs-tsm rtmrs
 *                proposal: mkdir, write "3" to "index", digest to "digest")
 * and fails with VEIL_ENOTSUP when neither exists.  SEV-SNP has no RTMR: its
 * runtime events are logged only (the report says so: the log cannot be
 * replayed against the CPU report).
 *
 * Simulated TEE: structurally real TDX v4 quotes (TD 1.0 body) signed by a
 * locally generated chain (sim root CA -> sim PCK platform CA -> PCK leaf
 * with the Intel SGX extension; attestation key; QE report; CRLs; TCB info
 * and QE identity signed by a sim TCB signing certificate) so that
 * veil_tdx_verify() with root_der = the sim root gives UpToDate; and NVIDIA
 * SPDM GET_MEASUREMENTS evidence signed by a sim device chain with the TCG
 * DICE FWID extension, accepted by veil_nvgpu_verify() with the sim device
 * root.  Every sim certificate's subject says "SIMULATED".  RTMR3 is the
 * replay of the attester's event log; RTMR0..2, MRTD and the other
 * measured fields are fixed sim values.  The chain is generated at open:
 * in memory, or loaded from / saved to <state_dir>/sim-tee.pem (mode 0600)
 * so a restarted sim node keeps the same roots.
 *
 * NVIDIA GPU evidence comes from NVML, loaded at run time with
 * dlopen("libnvidia-ml.so.1"); no build dependency on CUDA. */
#ifndef VEIL_ATTESTER_H
#define VEIL_ATTESTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "veil/eventlog.h"

#define VEIL_ATTESTER_TSM_ROOT "/sys/kernel/config/tsm"
#define VEIL_ATTESTER_RTMR3_PATH "/sys/class/misc/tdx_guest/measurements/rtmr3:sha384"
#define VEIL_ATTESTER_TSM_RETRIES 8
#define VEIL_ATTESTER_MAX_GPUS 8

struct veil_attester_opts {
	const char *tee;        /* "auto" (NULL too), "tdx", "sev-snp", "sim" */
	bool allow_sim_fallback; /* auto without a real TEE: sim instead of ENOTSUP */
	const char *tsm_root;   /* configfs-tsm mount, NULL = VEIL_ATTESTER_TSM_ROOT */
	const char *rtmr_path;  /* sysfs RTMR3, NULL = VEIL_ATTESTER_RTMR3_PATH */
	const char *state_dir;  /* sim keys; NULL = in memory only */
	int sim_gpus;           /* simulated GPUs, 0..VEIL_ATTESTER_MAX_GPUS */
	bool no_gpu;            /* real TEE: do not look for NVML at all */
	const char *nvml_lib;   /* NULL = "libnvidia-ml.so.1" (tests override) */
};

/* Optional fields of a report. */
struct veil_report_extra {
	const char *model;        /* model name, NULL = absent */
	const char *model_sha256; /* 64 hex, NULL = absent */
};

struct veil_attester;

/* Opens an attester.  "auto" picks configfs-tsm when <tsm_root>/report
 * exists and its provider is tdx_guest or sev_guest; otherwise
 * VEIL_ENOTSUP ("no TEE: ...") unless allow_sim_fallback.  "tdx" and
 * "sev-snp" insist on that provider.  Free with veil_attester_free(). */
int veil_attester_open(const struct veil_attester_opts *o, struct veil_attester **out);

/* "tdx", "sev-snp" or "sim". */
const char *veil_attester_kind(const struct veil_attester *a);

/* Extends RTMR3 (or the sim register) with the dstack runtime event
 * (name, payload) and appends it to the event log.  veil's node calls it
 * three times, in this order (DESIGN §4), with the 48-byte SHA-384 of the
 * thing as payload: VEIL_EVLOG_NODE_BINARY, VEIL_EVLOG_NODE_CONFIG,
 * VEIL_EVLOG_MODEL.  A gateway calls it twice instead:
 * VEIL_EVLOG_GATEWAY_BINARY, VEIL_EVLOG_GATEWAY_CONFIG (report.h).  These
 * are also recorded as the report's "measurements"; each veil name may be
 * extended once, and one attester carries one role's events (a repeated
 * name, or node and gateway events mixed, makes later reports fail with
 * VEIL_EFORMAT: a verifier must not guess which counts).  Not thread-safe
 * against a concurrent report. */
int veil_attester_extend(struct veil_attester *a, const char *name, const uint8_t *payload,
			 size_t len);

/* Builds veil's attestation report (veil-report/1, see include/veil/report.h
 * and docs/protocol.md) for `nonce`, binding the key-set encoding:
 * report_data = SHA-256(keyset_enc) || nonce; every GPU's SPDM nonce is
 * SHA-256(report_data).  extra may be NULL.  *out is a new JSON object the
 * caller json_decref()s.  Safe to call from several threads (reports are
 * made one at a time); not concurrently with veil_attester_extend(). */
int veil_attester_report(struct veil_attester *a, const uint8_t *keyset_enc, size_t keyset_len,
			 const uint8_t nonce[32], const struct veil_report_extra *extra,
			 json_t **out);

/* The event log so far (borrowed; valid until the next extend/free). */
const struct veil_evlog *veil_attester_log(const struct veil_attester *a);

/* Sim only: the sim trust anchors as DER (borrowed), for tests and for
 * pinning a sim node.  VEIL_ENOTSUP for a real TEE. */
int veil_attester_sim_roots(const struct veil_attester *a, const uint8_t **tdx_root,
			    size_t *tdx_len, const uint8_t **gpu_root, size_t *gpu_len);

void veil_attester_free(struct veil_attester *a);

/* ---- pieces, exposed for tests ----------------------------------------- */

/* One configfs-tsm exchange under `tsm_root`: writes report_data to a report
 * entry's inblob and reads outblob into *quote (malloc'd, caller frees);
 * *provider gets the provider file's first line.  Retries on a generation
 * change or EBUSY up to VEIL_ATTESTER_TSM_RETRIES times; *attempts says how
 * many exchanges it took. */
int veil_attester_tsm_quote(const char *tsm_root, const uint8_t report_data[64],
			    uint8_t **quote, size_t *quote_len, char provider[32],
			    int *attempts);

/* Test hook for the configfs-tsm stand-in: called at each step of an
 * exchange (step 0: before writing inblob, 1: before reading outblob) with
 * the entry directory and the attempt number (1-based); a nonzero return is
 * taken as that errno coming from the kernel at that step.  NULL (the
 * default) in production. */
extern int (*veil_attester_tsm_hook)(const char *entry_dir, int step, int attempt);

/* Probes NVML (dlopen of `lib`, NULL = "libnvidia-ml.so.1"): 0 when a GPU
 * in confidential-computing mode is present; VEIL_ENOTSUP with a detail
 * ("no GPU TEE: libnvidia-ml.so.1 not found ...", "... CC mode is off")
 * otherwise. */
int veil_attester_nvml_probe(const char *lib, unsigned *gpu_count);

#endif
