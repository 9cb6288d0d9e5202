/* veil report: helpers shared by report.c and nearai.c (private to
 * src/lib/attest/). */
#ifndef VEIL_REPORT_IMPL_H
#define VEIL_REPORT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "veil/report.h"
#include "veil/tdx.h"

/* Sets v->error (and the thread's detail) and returns rc. */
int rpt_fail(struct veil_report_verdict *v, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Exactly `want` bytes of hex in o[key]. */
int rpt_hex_exact(json_t *o, const char *key, uint8_t *out, size_t want);
/* Hex of at most `max` bytes in o[key], malloc'd. */
int rpt_hex_alloc(json_t *o, const char *key, size_t max, uint8_t **out, size_t *len);
int rpt_set_hex(json_t *o, const char *key, const uint8_t *p, size_t n);

/* Verifies the quote's own signatures (QE report hash, attestation-key
 * signature, PCK signature over the QE report) and its PCK chain to
 * `root_der` (NULL = Intel's) at `now`, without collateral: no CRLs, no TCB. */
int rpt_quote_sigs_only(const uint8_t *quote, size_t n, int64_t now, struct veil_tdx_quote *q);

/* DER of the last certificate of a PEM chain (malloc'd). */
int rpt_pem_last_der(const char *pem, size_t len, uint8_t **der, size_t *der_len);

/* The keys object {"encoding", "ed25519", ...} of a key set. */
json_t *rpt_keys_json(const struct veil_keyset *ks, const uint8_t *enc, size_t n);

/* Copies a tdx verdict's measured fields (mrtd, rtmr0..3, mr_config_id, ...)
 * into the report verdict `j`. */
void rpt_copy_td_fields(json_t *j, json_t *tdx_verdict);

/* Finishes v: ok/status/error into v->json. */
int rpt_finish(struct veil_report_verdict *v, int rc);

#endif
