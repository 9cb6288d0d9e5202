/* veil pccs: Intel DCAP collateral fetched from a PCCS or Intel PCS, cached on
 * disk, in the dcap-qvl JSON layout that veil_tdx_collateral_parse() reads.
 *
 * Collateral is one JSON object (see include/veil/tdx.h):
 *   tcb_info, tcb_info_signature, tcb_info_issuer_chain,
 *   qe_identity, qe_identity_signature, qe_identity_issuer_chain,
 *   root_ca_crl (hex DER), pck_crl (hex DER), pck_crl_issuer_chain.
 * veil_pccs_fetch() builds it from four GETs under a base URL, using the
 * Intel PCS v4 API, which a PCCS serves on the same paths:
 *
 *   TCB info      {base}/{tee}/certification/v4/tcb?fmspc={FMSPC}
 *                 body {"tcbInfo":{...},"signature":"<hex r||s>"}; tcb_info
 *                 is the exact bytes of the tcbInfo value (a substring of the
 *                 body, never re-serialized: the signature covers them);
 *                 issuer chain: header TCB-Info-Issuer-Chain (or
 *                 SGX-TCB-Info-Issuer-Chain), URL-encoded PEM
 *   QE identity   {base}/{tee}/certification/v4/qe/identity
 *                 body {"enclaveIdentity":{...},"signature":"..."}; header
 *                 SGX-Enclave-Identity-Issuer-Chain (or
 *                 Enclave-Identity-Issuer-Chain)
 *   PCK CRL       {base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der
 *                 body DER (hex text is accepted too); header
 *                 SGX-PCK-CRL-Issuer-Chain
 *   Root CA CRL   opts.root_ca_crl_url when set; else, for a base URL on
 *                 api.trustedservices.intel.com (Intel PCS),
 *                 https://certificates.trustedservices.intel.com/IntelSGXRootCA.der;
 *                 else (a PCCS) {base}/sgx/certification/v4/rootcacrl.
 *                 Body DER or hex text.
 *
 * {tee} is "tdx" or "sgx", {FMSPC} 12 upper-case hex digits, {ca}
 * "processor" or "platform" (the CA that issued the quote's PCK
 * certificate).  Example bases: https://api.trustedservices.intel.com,
 * https://pccs.example:8081 (a PCCS; its path prefix, if any, belongs in the
 * base).  Redirects are not followed.
 *
 * Every response is capped (opts.max_response, 1 MiB by default) and every
 * request has a deadline.  A transfer error, a status other than 200, a
 * missing issuer-chain header, a body that is cut short, too big or not in
 * the expected shape fails the whole fetch; the detail (veil_err_detail())
 * names the URL and the HTTP status.
 *
 * Nothing is verified here beyond structure (the issuer chains parse, the
 * CRLs parse, tcbInfo.fmspc is the FMSPC asked for): signatures, chains and
 * times are checked by veil_tdx_verify(), so a tampered server or cache can
 * make verification fail, never pass.
 *
 * Cache: with opts.cache_dir set, one file per (tee, FMSPC, ca),
 *   {cache_dir}/{tee}-{fmspc lower-case hex}-{ca}.json
 * in the same dcap-qvl layout, so `veil verify --collateral FILE` reads it
 * directly.  A cached file is used while every nextUpdate in it (TCB info,
 * QE identity, root CA CRL, PCK CRL) is after opts.now; otherwise (or when
 * it is unreadable or for another FMSPC) it is fetched again.  Files are
 * written atomically (a temporary file in the same directory, fsync, rename);
 * a failed fetch leaves the cache as it was.  The directory must exist. */
#ifndef VEIL_PCCS_H
#define VEIL_PCCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "veil/base.h"

enum veil_pccs_tee {
	VEIL_PCCS_TDX = 0,
	VEIL_PCCS_SGX = 1,
};

/* Default cap on one HTTP response body. */
#define VEIL_PCCS_MAX_RESPONSE (1u << 20)
/* Cap on one collateral JSON document (cache files, the output). */
#define VEIL_PCCS_COLLATERAL_MAX (8u << 20)

/* Zero means "the default" for every numeric field. */
struct veil_pccs_opts {
	const char *base_url;        /* required; no trailing '/' needed */
	const char *root_ca_crl_url; /* NULL: see the header comment */
	const char *cache_dir;       /* NULL: no cache */
	bool cache_only;             /* never fetch: a missing or stale cache
					file is VEIL_ENOENT / VEIL_EAGAIN */
	int64_t now;                 /* unix seconds for freshness; 0 = now */
	unsigned timeout_ms;         /* per request, 30 s */
	unsigned connect_timeout_ms; /* 10 s */
	size_t max_response;         /* VEIL_PCCS_MAX_RESPONSE */
	const char *ca_file;         /* TLS trust for https; NULL: system */
	bool quiet;                  /* a stale cache file and stale fetched
					collateral are logged at debug level
					(a caller that retries logs once) */
};

/* Appends the collateral for (fmspc, ca, tee) in the dcap-qvl JSON layout to
 * `collateral_json` (its max caps it), from the cache when fresh, else from
 * the server (then written to the cache, unless already past its
 * nextUpdate: a fresh file is never replaced by staler data; a cache that
 * cannot be written is a warning, not an error: the collateral is good).
 * `ca` is "processor" or "platform".  Errors: VEIL_EINVAL (arguments),
 * VEIL_ENOENT (HTTP 404), VEIL_EIO (transfer failed, other status),
 * VEIL_ETIMEDOUT, VEIL_ERANGE (a response over the cap), VEIL_EFORMAT (a
 * response not in the expected shape, missing header, or collateral for
 * another FMSPC); the detail names the URL and status.  Thread-safe (concurrent writers of one cache file: the
 * last rename wins, each file whole). */
int veil_pccs_fetch(const struct veil_pccs_opts *o, const uint8_t fmspc[6],
		    const char *ca, enum veil_pccs_tee tee,
		    struct veil_buf *collateral_json);

/* What to fetch for a quote: the FMSPC and the CA type ("processor" or
 * "platform", a static string) from the PCK leaf certificate the quote
 * carries (certification data type 5): its issuer's CN is Intel's "Intel
 * SGX PCK Processor CA" / "... Platform CA", or the sim TEE's "veil
 * SIMULATED SGX PCK Processor CA" / "... Platform CA" (the same mapping);
 * and the TEE from its header.  The certificate is not verified here
 * (veil_tdx_verify() does that).
 * VEIL_EFORMAT / VEIL_ENOTSUP with the detail naming what is missing. */
int veil_pccs_quote_target(const uint8_t *quote, size_t n, uint8_t fmspc[6],
			   const char **ca, enum veil_pccs_tee *tee);

/* The cache file path for (fmspc, ca, tee) under o->cache_dir. */
int veil_pccs_cache_path(const struct veil_pccs_opts *o, const uint8_t fmspc[6],
			 const char *ca, enum veil_pccs_tee tee, char *out,
			 size_t cap);

/* The earliest nextUpdate (unix seconds) of collateral in the dcap-qvl JSON
 * layout: tcbInfo.nextUpdate, enclaveIdentity.nextUpdate and both CRLs'
 * nextUpdate.  VEIL_EFORMAT when one is missing or malformed. */
int veil_pccs_collateral_next_update(const uint8_t *p, size_t n,
				     int64_t *out);

/* Writes collateral (n bytes, dcap-qvl JSON) to the cache file of (fmspc,
 * ca, tee) under o->cache_dir the way veil_pccs_fetch() does: a temporary
 * file in the same directory, fsync, rename.  VEIL_EIO with the detail. */
int veil_pccs_cache_write(const struct veil_pccs_opts *o, const uint8_t fmspc[6],
			  const char *ca, enum veil_pccs_tee tee, const uint8_t *p,
			  size_t n);

/* ---- a background fetcher for a server's own quotes (pccs_fetcher.c) -------
 *
 * veil-node and veil-gateway put Intel's collateral for their own TDX quote
 * into every attestation report they serve (docs/operations.md "DCAP
 * collateral"): a verifier given a TDX report without it refuses it.  The
 * fetcher keeps the last good copy, fetched on a thread of its own; the
 * server's loop and report threads read it (apply / text / stamp) and never
 * wait for a fetch.  The schedule, the logging and the shutdown are in
 * pccs_fetcher.c's header comment. */

/* --pccs when not given on a TDX machine: Intel PCS. */
#define VEIL_PCCS_DEFAULT_URL "https://api.trustedservices.intel.com"

struct veil_pccs_fetcher;

struct veil_pccs_fetcher_opts {
	const char *base_url;     /* required (copied) */
	const char *cache_dir;    /* NULL: no cache (copied) */
	/* what to fetch: from this quote's PCK certificate
	 * (veil_pccs_quote_target) when quote is set, else (fmspc, ca, tee) */
	const uint8_t *quote;
	size_t quote_len;
	uint8_t fmspc[6];
	const char *ca;           /* "processor" or "platform" */
	enum veil_pccs_tee tee;
	/* log module and the quote's owner in messages ("node", "gateway");
	 * NULL: "pccs".  A static string. */
	const char *log_mod;
	unsigned timeout_ms;      /* per GET; 0: 10 s */
	unsigned connect_timeout_ms; /* 0: 5 s */
};

/* The base URL a server's `--pccs URL|none` flag (NULL when not given)
 * means for an attester of `kind` (veil_attester_kind): NULL (fetch
 * nothing) for "none", for SEV-SNP (no DCAP collateral; a given URL is
 * logged as ignored, with log_mod) and for the sim without a URL (its own
 * collateral stays); VEIL_PCCS_DEFAULT_URL for TDX without one; else the
 * URL.  The result is `flag` or a static string. */
const char *veil_pccs_fetcher_base(const char *flag, const char *kind, const char *log_mod);

/* Starts the fetcher thread (the first fetch at once; a fresh cache file is
 * used as is).  *out is NULL (and 0 returned) when the quote names nothing
 * to fetch (certification data other than a PCK chain, an unknown PCK
 * issuer): that is logged as a warning and the server serves on, its
 * reports without fetched collateral.  VEIL_EINVAL, VEIL_ENOMEM,
 * VEIL_EINTERNAL (no thread) otherwise, with the detail. */
int veil_pccs_fetcher_start(const struct veil_pccs_fetcher_opts *o,
			    struct veil_pccs_fetcher **out);

/* What a server (veil-node, veil-gateway) does with its `--pccs URL|none`
 * and `--pccs-cache DIR` flags once the report it made at start exists:
 * the base URL from veil_pccs_fetcher_base(flag, kind, log_mod); none: 0,
 * *out NULL.  Else the fetcher is started for the quote in `report` (hex
 * "quote") and the report is made to carry what it has (none yet: with the
 * sim, not its own either), *stamp set as by veil_pccs_fetcher_apply.
 * Errors as veil_pccs_fetcher_start, logged with log_mod. */
int veil_pccs_fetcher_start_report(const char *flag, const char *kind, const char *cache_dir,
				   const char *log_mod, json_t *report,
				   struct veil_pccs_fetcher **out, uint64_t *stamp);

/* An FN callback (include/veil/opt.h) for --pccs: an http(s) base URL or
 * "none", stored as given into *(const char **)dst. */
int veil_pccs_opt_url(const char *value, void *dst);

/* Sets report's "collateral" to a copy of the last good collateral while
 * it is before its nextUpdate, else removes it ("collateral" from the
 * attester included: a server that fetches serves only what it fetched).
 * *stamp (may be NULL) gets what veil_pccs_fetcher_stamp() said for the
 * collateral put in.  A NULL fetcher is a no-op (report unchanged, *stamp
 * 0).  Any thread; never waits for a fetch. */
int veil_pccs_fetcher_apply(struct veil_pccs_fetcher *f, json_t *report, uint64_t *stamp);

/* A server's cached report (*report, the one made at start) gets the
 * collateral fetched since, or loses one past its nextUpdate, when the
 * stamp says it changed (*stamp: the one it carries): replaced by a
 * changed copy, so a reply still holding the old one is not changed under
 * it.  Left as it is when nothing changed or on failure.  The caller's
 * thread owns *report and *stamp. */
void veil_pccs_fetcher_refresh(struct veil_pccs_fetcher *f, json_t **report, uint64_t *stamp);

/* A malloc'd copy of the last good collateral (dcap-qvl JSON) while before
 * its nextUpdate, else NULL; *stamp (may be NULL) as above. Any thread. */
char *veil_pccs_fetcher_text(struct veil_pccs_fetcher *f, uint64_t *stamp);

/* Changes whenever the collateral reports should carry changes (a new one;
 * 0 when none, or the last one is past its nextUpdate).  0 for NULL. */
uint64_t veil_pccs_fetcher_stamp(struct veil_pccs_fetcher *f);

/* Failed fetches so far, and seconds until the collateral reports carry
 * reaches its nextUpdate (0: they carry none).  Zeros for NULL. */
void veil_pccs_fetcher_stats(struct veil_pccs_fetcher *f, uint64_t *failures,
			     int64_t *next_update_s);

/* Prometheus lines PREFIX_collateral_fetch_failures_total and
 * PREFIX_collateral_next_update_seconds (prefix e.g. "veil_node"); nothing
 * for NULL. */
void veil_pccs_fetcher_metrics(struct veil_pccs_fetcher *f, const char *prefix,
			       struct veil_buf *b);

/* Stops the fetcher: waits up to 2 s for a fetch in progress, then leaves
 * the thread to end on its own (it frees what is left).  After it, f is
 * gone for the caller: no apply, text, stamp or stats may run or follow.
 * NULL is a no-op. */
void veil_pccs_fetcher_stop(struct veil_pccs_fetcher *f);

#endif
