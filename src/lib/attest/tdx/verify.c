/* veil tdx: full DCAP verification of a quote with collateral at a given time.
 *
 * Rejections are worded as @phala/dcap-qvl 0.3.9 words them where both make
 * the check (the order differs: quote-intrinsic checks run before the
 * collateral signatures, so a damaged quote fails fast); TCB evaluation follows
 * Intel's QVL (QuoteVerifier / TcbLevelCheck, incl. TDX module identities),
 * statuses are merged by severity as dcap-qvl does.
 *
 * Caching (include/veil/tdx.h): the collateral's chains and signatures are
 * verified once per collateral object and anchor, a quote's PCK chain once
 * per exact PEM bytes, anchor and CRLs (cache.c); what depends on `now` runs
 * on every call, and any doubt sends a call down the full path, so cached
 * and uncached calls give the same verdict, word for word. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "../tdx_impl.h"
#include "veil/base.h"
#include "veil/x509.h"

static const uint8_t INTEL_QE_VENDOR_ID[16] = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
					       0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};

/* Prefixes the current error detail (copied first: veil_errf writes the
 * buffer veil_err_detail() returns). */
static int wrap(int rc, const char *what)
{
	char d[512];

	snprintf(d, sizeof(d), "%s", veil_err_detail());
	return veil_errf(rc, "%s: %s", what, d);
}

/* Severity order of dcap-qvl's TcbStatus (higher is worse); -1 unknown. */
static int severity(const char *s)
{
	static const char *const order[] = {
		"UpToDate",  "SWHardeningNeeded",           "ConfigurationNeeded",
		"ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded",
		"Revoked",
	};

	for (size_t i = 0; i < VEIL_ARRAY_LEN(order); i++)
		if (strcmp(s, order[i]) == 0)
			return (int)i;
	return -1;
}

/* Folds one level's status into the verdict: worse status wins, advisory IDs
 * are appended once each, in order. */
static int merge(struct veil_tdx_verdict *v, const struct tdx_status *st)
{
	int a = severity(v->status), b = severity(st->status);

	if (b < 0)
		return veil_errf(VEIL_EPERM, "TCB status is invalid: %s", st->status);
	if (v->status[0] == 0 || b > a)
		snprintf(v->status, sizeof(v->status), "%s", st->status);
	for (size_t i = 0; i < st->n_adv; i++) {
		bool dup = false;

		for (size_t j = 0; j < v->n_advisories && !dup; j++)
			dup = strcmp(v->advisories[j], st->adv[i]) == 0;
		if (dup)
			continue;
		if (v->n_advisories == VEIL_TDX_MAX_ADVISORIES)
			return veil_errf(VEIL_ERANGE, "more than %d advisory IDs", VEIL_TDX_MAX_ADVISORIES);
		snprintf(v->advisories[v->n_advisories++], VEIL_TDX_ADVISORY_LEN, "%s", st->adv[i]);
	}
	return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

static bool masked_eq(const uint8_t *a, const uint8_t *b, const uint8_t *mask, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((a[i] & mask[i]) != (b[i] & mask[i]))
			return false;
	return true;
}

static int leaf_verify(STACK_OF(X509) *chain, const uint8_t *msg, size_t n,
		       const uint8_t sig[64], const char *what)
{
	EVP_PKEY *pk = X509_get0_pubkey(sk_X509_value(chain, 0));

	ERR_clear_error();
	if (!pk || veil_x509_ecdsa_verify_rs(pk, EVP_sha256(), msg, n, sig, 64) != 0)
		return veil_errf(VEIL_EBADMSG, "Signature is invalid for %s", what);
	return 0;
}

/* QE identity policy (Intel QVL 4.1.2.4.9-10 / dcap-qvl verifyQeIdentityPolicy). */
static int qe_policy(const struct veil_tdx_collateral *c, const struct veil_tdx_enclave_report *qe,
		     const struct tdx_status **st)
{
	uint8_t mask_b[4], want_b[4], got_b[4];

	if (memcmp(qe->mr_signer, c->qe_mrsigner, 32) != 0)
		return veil_errf(VEIL_EPERM, "QE MRSIGNER mismatch");
	if (qe->isv_prod_id != c->qe_isvprodid)
		return veil_errf(VEIL_EPERM, "QE ISVPRODID mismatch: expected %u, got %u",
				 c->qe_isvprodid, qe->isv_prod_id);
	if (qe->attributes[0] & 0x02)
		return veil_errf(VEIL_EPERM, "QE report: Debug mode is enabled");
	for (int i = 0; i < 4; i++) {
		mask_b[i] = (uint8_t)(c->miscselect_mask >> (8 * i));
		want_b[i] = (uint8_t)(c->miscselect >> (8 * i));
		got_b[i] = (uint8_t)(qe->miscselect >> (8 * i));
	}
	if (!masked_eq(got_b, want_b, mask_b, 4))
		return veil_errf(VEIL_EPERM, "QE MISCSELECT mismatch");
	if (!masked_eq(qe->attributes, c->qe_attributes, c->qe_attributes_mask, 16))
		return veil_errf(VEIL_EPERM, "QE ATTRIBUTES mismatch");
	for (size_t i = 0; i < c->n_qe_levels; i++) {
		if (qe->isv_svn >= c->qe_levels[i].isvsvn) {
			*st = &c->qe_levels[i].st;
			return 0;
		}
	}
	return veil_errf(VEIL_EPERM, "QE ISVSVN %u is below every QE identity TCB level",
			 qe->isv_svn);
}

/* Platform TCB level: PCK components + PCESVN, and for TDX the TEE_TCB_SVN
 * (entries 0-1 left to the module identity when TEE_TCB_SVN[1] > 0). */
static int platform_level(const struct veil_tdx_collateral *c, const struct tdx_pck_ext *e,
			  const struct veil_tdx_quote *q, const struct tdx_status **st)
{
	bool tdx = q->header.tee_type == VEIL_TDX_TEE_TDX;
	int first = tdx && q->td.tee_tcb_svn[1] > 0 ? 2 : 0;

	for (size_t i = 0; i < c->n_levels; i++) {
		const struct tdx_tcb_level *l = &c->levels[i];
		bool ok = e->pcesvn >= l->pcesvn;

		for (int k = 0; k < 16 && ok; k++)
			ok = e->comp[k] >= l->sgx[k];
		if (!ok)
			continue;
		if (tdx) {
			if (!l->has_tdx)
				return veil_errf(VEIL_EFORMAT, "No TDX components in the TCB info");
			for (int k = first; k < 16 && ok; k++)
				ok = q->td.tee_tcb_svn[k] >= l->tdx[k];
			if (!ok)
				continue;
		}
		*st = &l->st;
		return 0;
	}
	return veil_errf(VEIL_EPERM, "No matching TCB level found");
}

/* TDX module identity (Intel QVL: tdxModule when TEE_TCB_SVN[1] == 0, else
 * tdxModuleIdentities["TDX_%02X"] with its own TCB levels). */
static int module_check(const struct veil_tdx_collateral *c, const struct veil_tdx_quote *q,
			const struct tdx_status **st)
{
	uint8_t ver = q->td.tee_tcb_svn[1];
	char id[16];

	*st = NULL;
	if (ver == 0) {
		if (!c->has_tdx_module)
			return 0;
		if (memcmp(q->td.mr_signer_seam, c->mod_mrsigner, 48) != 0 ||
		    !masked_eq(q->td.seam_attributes, c->mod_attributes, c->mod_attributes_mask, 8))
			return veil_errf(VEIL_EPERM, "TDX module mismatch (MRSIGNER_SEAM / SEAM_ATTRIBUTES)");
		return 0;
	}
	snprintf(id, sizeof(id), "TDX_%02X", ver);
	for (size_t i = 0; i < c->n_mods; i++) {
		const struct tdx_module_id *m = &c->mods[i];

		if (strcmp(m->id, id) != 0)
			continue;
		if (memcmp(q->td.mr_signer_seam, m->mrsigner, 48) != 0 ||
		    !masked_eq(q->td.seam_attributes, m->attributes, m->attributes_mask, 8))
			return veil_errf(VEIL_EPERM, "TDX module %s mismatch (MRSIGNER_SEAM / SEAM_ATTRIBUTES)", id);
		for (size_t k = 0; k < m->n_levels; k++) {
			if (q->td.tee_tcb_svn[0] >= m->levels[k].isvsvn) {
				*st = &m->levels[k].st;
				return 0;
			}
		}
		return veil_errf(VEIL_EPERM, "No matching TDX module TCB level for %s (SVN %u)", id,
				 q->td.tee_tcb_svn[0]);
	}
	return veil_errf(VEIL_EPERM, "TDX module identity %s not in the TCB info", id);
}

/* TD attributes (TDX module ABI: TUD = byte 0; SEC = bits 8..31 with
 * SEPT_VE_DISABLE bit 28, PKS 30, KL 31; OTHER = bits 32..63, PERFMON 63). */
static int td_policy(const struct veil_tdx_td_report *td)
{
	const uint8_t *a = td->td_attributes;

	if (a[0] != 0)
		return veil_errf(VEIL_EPERM, "Debug mode is enabled");
	if (a[1] || a[2] || (a[3] & 0x0f) || (a[3] & 0x20) || a[4] || a[5] || a[6] ||
	    (a[7] & 0x7f))
		return veil_errf(VEIL_EPERM, "Reserved bits in TD attributes are set");
	if (!(a[3] & 0x10))
		return veil_errf(VEIL_EPERM, "SEPT_VE_DISABLE is not enabled");
	return 0;
}

/* ---- what the caches may skip ------------------------------------------
 * Chain verification (veil_x509_chain_verify) depends on the time only
 * through the validity windows of the certificates, the anchor and the CRLs.
 * Once it passed for given bytes, anchor and CRLs, it passes again at any time
 * inside all those windows; anywhere else the full checks run again and give
 * the verdict (and its wording) an uncached call would. */

static bool narrow_cert(X509 *x, int64_t *lo, int64_t *hi)
{
	int64_t nb, na;

	if (veil_x509_time_unix(X509_get0_notBefore(x), &nb) < 0 ||
	    veil_x509_time_unix(X509_get0_notAfter(x), &na) < 0)
		return false;
	*lo = VEIL_MAX(*lo, nb);
	*hi = VEIL_MIN(*hi, na);
	return true;
}

static bool narrow_crl(X509_CRL *crl, int64_t *lo, int64_t *hi)
{
	int64_t tu, nu;

	if (!crl || !X509_CRL_get0_nextUpdate(crl) ||
	    veil_x509_time_unix(X509_CRL_get0_lastUpdate(crl), &tu) < 0 ||
	    veil_x509_time_unix(X509_CRL_get0_nextUpdate(crl), &nu) < 0)
		return false;
	*lo = VEIL_MAX(*lo, tu);
	*hi = VEIL_MIN(*hi, nu);
	return true;
}

/* [*lo, *hi]: where every certificate of `chains`, the anchor and both CRLs
 * of `c` are valid (a superset of the windows the chain checks use).  False
 * when a time does not parse or the windows do not meet: then nothing is
 * cached. */
static bool common_window(STACK_OF(X509) *const *chains, size_t nchains, X509 *root,
			  const struct veil_tdx_collateral *c, int64_t *lo, int64_t *hi)
{
	bool ok = true;

	*lo = INT64_MIN;
	*hi = INT64_MAX;
	for (size_t k = 0; k < nchains; k++)
		for (int i = 0; i < sk_X509_num(chains[k]) && ok; i++)
			ok = narrow_cert(sk_X509_value(chains[k], i), lo, hi);
	return ok && narrow_cert(root, lo, hi) && narrow_crl(c->root_crl, lo, hi) &&
	       narrow_crl(c->pck_crl, lo, hi) && *lo <= *hi;
}

/* True when neither CRL lists a certificate of `chains` or the anchor.  The
 * CRLs are part of every cache key, so this cannot change on a hit; it is
 * checked anyway, as cheap insurance. */
static bool none_listed(STACK_OF(X509) *const *chains, size_t nchains, X509 *root,
			const struct veil_tdx_collateral *c)
{
	X509_CRL *crls[2] = {c->root_crl, c->pck_crl};

	for (size_t k = 0; k < 2; k++) {
		X509_REVOKED *rev = NULL;

		if (!crls[k])
			continue;
		if (X509_CRL_get0_by_cert(crls[k], &rev, root) == 1)
			return false;
		for (size_t j = 0; j < nchains; j++)
			for (int i = 0; i < sk_X509_num(chains[j]); i++)
				if (X509_CRL_get0_by_cert(crls[k], &rev, sk_X509_value(chains[j], i)) == 1)
					return false;
	}
	return true;
}

/* The collateral's own checks: TCB info and QE identity, each signed by its
 * issuer chain to `root`.  In full once per collateral object and anchor (the
 * outcome lives in c->vc); after that only when `now` leaves the window in
 * which that outcome holds. */
static int collateral_verify(const struct veil_tdx_collateral *c, X509 *root,
			     const uint8_t root_id[32], X509_CRL *const *crls, int64_t now)
{
	const unsigned flags = VEIL_X509_REQUIRE_CRL | VEIL_X509_LEAF_NOT_CA;
	STACK_OF(X509) *chains[2] = {c->tcb_chain, c->qe_chain};
	struct tdx_coll_cache *vc = c->vc;
	bool hit = false;
	int64_t lo, hi;
	int rc;

	if (vc) {
		pthread_mutex_lock(&vc->lock);
		hit = vc->ok && memcmp(vc->root, root_id, 32) == 0 && now >= vc->lo &&
		      now <= vc->hi;
		pthread_mutex_unlock(&vc->lock);
	}
	if (hit && none_listed(chains, 2, root, c)) {
		tdx_cache_count(true, true);
		return 0;
	}
	tdx_cache_count(true, false);
	if ((rc = veil_x509_chain_verify(c->tcb_chain, root, crls, 2, now, flags)) < 0)
		return wrap(rc, "TCB info issuer chain");
	if ((rc = leaf_verify(c->tcb_chain, c->tcb_info_raw, c->tcb_info_len, c->tcb_info_sig,
			      "tcb_info")) < 0)
		return rc;
	if ((rc = veil_x509_chain_verify(c->qe_chain, root, crls, 2, now, flags)) < 0)
		return wrap(rc, "QE identity issuer chain");
	if ((rc = leaf_verify(c->qe_chain, c->qe_id_raw, c->qe_id_len, c->qe_id_sig,
			      "qe_identity")) < 0)
		return rc;
	if (vc && common_window(chains, 2, root, c, &lo, &hi)) {
		pthread_mutex_lock(&vc->lock);
		vc->ok = true;
		memcpy(vc->root, root_id, 32);
		vc->lo = lo;
		vc->hi = hi;
		pthread_mutex_unlock(&vc->lock);
	}
	return 0;
}

static int verify_inner(const uint8_t *quote, size_t n, const struct veil_tdx_collateral *c,
			int64_t now, X509 *root, const uint8_t root_id[32],
			struct veil_tdx_verdict *v)
{
	struct veil_tdx_quote q;
	struct tdx_pck_ext ext;
	struct tdx_pck_entry *ent = NULL;
	STACK_OF(X509) *pck = NULL, *own = NULL;
	uint8_t key[32];
	EVP_PKEY *ak = NULL;
	X509_CRL *crls[2];
	const struct tdx_status *qe_st = NULL, *plat_st = NULL, *mod_st = NULL;
	const unsigned flags = VEIL_X509_REQUIRE_CRL | VEIL_X509_LEAF_NOT_CA;
	bool tdx;
	uint8_t hash[SHA256_DIGEST_LENGTH];
	EVP_MD_CTX *md = NULL;
	int rc;

	if ((rc = veil_tdx_quote_parse(quote, n, &q)) < 0)
		return wrap(rc, "Failed to decode quote");
	v->tee_type = q.header.tee_type;
	v->quote_version = q.header.version;
	v->body_type = q.body_type;
	tdx = q.header.tee_type == VEIL_TDX_TEE_TDX;
	if (!tdx && q.header.version != 3)
		return veil_errf(VEIL_ENOTSUP, "SGX TEE quote must have version 3");
	if (tdx && q.header.version != 4 && q.header.version != 5)
		return veil_errf(VEIL_ENOTSUP, "TDX TEE quote must have version 4 or 5");
	if (memcmp(q.header.qe_vendor_id, INTEL_QE_VENDOR_ID, 16) != 0)
		return veil_errf(VEIL_EPERM, "QE vendor ID is not Intel's");

	/* Cheap time windows of the collateral first (dcap-qvl reports these
	 * before anything else), then everything the quote proves by itself,
	 * then the collateral signatures: a damaged quote fails fast. */
	if (now < c->tcb_issue)
		return veil_errf(VEIL_EPERM, "TCBInfo issue date is in the future");
	if (now > c->tcb_next)
		return veil_errf(VEIL_EPERM, "TCBInfo expired");
	if (now < c->qe_issue)
		return veil_errf(VEIL_EPERM, "QE Identity issue date is in the future");
	if (now > c->qe_next)
		return veil_errf(VEIL_EPERM, "QE Identity expired");

	/* PCK chain from the quote (parsed first: cheap, and most damage shows) */
	if (q.pck_cert_type != 5) {
		rc = veil_errf(VEIL_ENOTSUP, "Unsupported DCAP PCK cert format: %u", q.pck_cert_type);
		goto out;
	}
	/* a chain seen before (same bytes, anchor and CRLs) is not parsed again */
	tdx_pck_key(q.pck_data, q.pck_data_len, root_id, c, key);
	if ((ent = tdx_pck_cache_get(key)) != NULL) {
		pck = ent->chain;
	} else if ((rc = veil_x509_pem_chain_parse_canonical(q.pck_data, q.pck_data_len,
							     &own)) < 0) {
		rc = wrap(rc, "PCK certificate chain");
		goto out;
	} else {
		pck = own;
	}
	if (sk_X509_num(pck) < 2) {
		rc = veil_errf(VEIL_EFORMAT, "Certificate chain is too short in quote");
		goto out;
	}
	/* QE report data binds the attestation key and the QE auth data. */
	md = EVP_MD_CTX_new();
	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, q.attest_key, 64) != 1 ||
	    EVP_DigestUpdate(md, q.qe_auth, q.qe_auth_len) != 1 ||
	    EVP_DigestFinal_ex(md, hash, NULL) != 1) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if (memcmp(hash, q.qe.report_data, 32) != 0 || !all_zero(q.qe.report_data + 32, 32)) {
		rc = veil_errf(VEIL_EBADMSG, "QE report hash mismatch");
		goto out;
	}
	/* the quote: attestation-key signature over header + body */
	if ((rc = veil_x509_p256_pubkey(q.attest_key, &ak)) < 0 ||
	    veil_x509_ecdsa_verify_rs(ak, EVP_sha256(), q.signed_data, q.signed_len, q.signature,
				      64) != 0) {
		rc = veil_errf(VEIL_EBADMSG, "ISV enclave report signature is invalid");
		goto out;
	}
	/* the PCK leaf signs the QE report */
	if ((rc = leaf_verify(pck, q.qe_report, VEIL_TDX_SGX_REPORT_LEN, q.qe_report_sig,
			      "qe_report in quote")) < 0)
		goto out;
	crls[0] = c->root_crl;
	crls[1] = c->pck_crl;
	if (ent && now >= ent->lo && now <= ent->hi && none_listed(&pck, 1, root, c)) {
		tdx_cache_count(false, true);
	} else {
		int64_t lo, hi;

		tdx_cache_count(false, false);
		if ((rc = veil_x509_chain_verify(pck, root, crls, 2, now, flags)) < 0) {
			rc = wrap(rc, "PCK certificate chain");
			goto out;
		}
		if (!ent && common_window(&pck, 1, root, c, &lo, &hi))
			tdx_pck_cache_put(key, pck, lo, hi);
	}

	/* collateral: TCB info and QE identity, signed by the TCB signing chain */
	if ((rc = collateral_verify(c, root, root_id, crls, now)) < 0)
		goto out;
	if (strcmp(c->qe_id, tdx ? "TD_QE" : "QE") != 0 ||
	    !(c->qe_version == 2 || (tdx && c->qe_version == 3))) {
		rc = veil_errf(VEIL_EPERM, "Unsupported QE Identity id/version for the quote TEE type");
		goto out;
	}
	if ((rc = qe_policy(c, &q.qe, &qe_st)) < 0)
		goto out;

	/* TCB status */
	if (!ent || !tdx_pck_cache_ext(ent, &ext)) {
		if ((rc = tdx_pck_ext_parse(sk_X509_value(pck, 0), &ext)) < 0)
			goto out;
		tdx_pck_cache_set_ext(key, &ext);
	}
	memcpy(v->fmspc, ext.fmspc, 6);
	if (memcmp(ext.fmspc, c->fmspc, 6) != 0) {
		rc = veil_errf(VEIL_EPERM, "Fmspc mismatch");
		goto out;
	}
	if (memcmp(ext.pceid, c->pce_id, 2) != 0) {
		rc = veil_errf(VEIL_EPERM, "PCE ID mismatch");
		goto out;
	}
	if (tdx && strcmp(c->tcb_id, "TDX") != 0) {
		rc = veil_errf(VEIL_EPERM, "TDX quote with non-TDX TCB info in the collateral");
		goto out;
	}
	if (!tdx && strcmp(c->tcb_id, "SGX") != 0) {
		rc = veil_errf(VEIL_EPERM, "SGX quote with non-SGX TCB info in the collateral");
		goto out;
	}
	if ((rc = platform_level(c, &ext, &q, &plat_st)) < 0)
		goto out;
	if (tdx && (rc = module_check(c, &q, &mod_st)) < 0)
		goto out;
	v->status[0] = 0;
	v->n_advisories = 0;
	if ((rc = merge(v, plat_st)) < 0 || (mod_st && (rc = merge(v, mod_st)) < 0) ||
	    (rc = merge(v, qe_st)) < 0)
		goto out;
	if (strcmp(v->status, "Revoked") == 0) {
		rc = veil_errf(VEIL_EPERM, "TCB status is invalid: Revoked");
		goto out;
	}

	/* report policy */
	if (!tdx) {
		if (q.sgx.attributes[0] & 0x02) {
			rc = veil_errf(VEIL_EPERM, "Debug mode is enabled");
			goto out;
		}
	} else {
		if (q.body_type == VEIL_TDX_BODY_TD15 && !all_zero(q.td.mr_servicetd, 48)) {
			rc = veil_errf(VEIL_EPERM, "Invalid mr service td");
			goto out;
		}
		if ((rc = td_policy(&q.td)) < 0)
			goto out;
	}
	if (tdx) {
		v->td = q.td;
		memcpy(v->report_data, q.td.report_data, 64);
	} else {
		v->sgx = q.sgx;
		memcpy(v->report_data, q.sgx.report_data, 64);
	}
	rc = 0;
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(ak);
	sk_X509_pop_free(own, X509_free);
	tdx_pck_cache_release(ent);
	return rc;
}

/* The pinned root, parsed once (OpenSSL 3 key decoding is not cheap), and
 * the SHA-256 of its DER, which names it in the cache keys. */
static X509 *pinned_root;
static uint8_t pinned_root_id[32];
static pthread_once_t pinned_once = PTHREAD_ONCE_INIT;

static void pinned_init(void)
{
	size_t len;
	const uint8_t *der = veil_tdx_intel_root_der(&len);

	if (veil_x509_der_parse(der, len, &pinned_root) < 0)
		pinned_root = NULL;
	SHA256(der, len, pinned_root_id);
}

int veil_tdx_verify(const uint8_t *quote, size_t n, const struct veil_tdx_collateral *c,
		    int64_t now, const uint8_t *root_der, size_t root_der_len,
		    struct veil_tdx_verdict *v)
{
	X509 *root = NULL;
	uint8_t root_id[32];
	int rc;

	if (!v)
		return VEIL_EINVAL;
	memset(v, 0, sizeof(*v));
	if (!quote || !c) {
		rc = veil_errf(VEIL_EINVAL, "no quote or no collateral");
		goto out;
	}
	if (!root_der) {
		pthread_once(&pinned_once, pinned_init);
		if (!pinned_root) {
			rc = veil_errf(VEIL_EINTERNAL, "pinned Intel root does not parse");
			goto out;
		}
		rc = verify_inner(quote, n, c, now, pinned_root, pinned_root_id, v);
		goto out;
	}
	if ((rc = veil_x509_der_parse(root_der, root_der_len, &root)) < 0) {
		rc = wrap(rc, "trust anchor");
		goto out;
	}
	/* canonical DER (veil_x509_der_parse): the bytes name the anchor */
	SHA256(root_der, root_der_len, root_id);
	rc = verify_inner(quote, n, c, now, root, root_id, v);
out:
	X509_free(root);
	ERR_clear_error();
	if (rc < 0) {
		v->ok = false;
		v->status[0] = 0;
		v->n_advisories = 0;
		snprintf(v->error, sizeof(v->error), "%s",
			 veil_err_detail()[0] ? veil_err_detail() : veil_strerror(rc));
		return rc;
	}
	v->ok = true;
	return 0;
}

/* ---- JSON ----------------------------------------------------------------- */

static int put_hex(json_t *o, const char *key, const uint8_t *p, size_t n)
{
	char hex[2 * 64 + 1];

	if (n > 64 || veil_hex_encode(p, n, hex, sizeof(hex)) < 0)
		return VEIL_EINTERNAL;
	return json_object_set_new(o, key, json_string(hex)) == 0 ? 0 : VEIL_ENOMEM;
}

int veil_tdx_verdict_json(const struct veil_tdx_verdict *v, json_t **out)
{
	json_t *o, *adv;
	bool tdx;
	int rc = VEIL_ENOMEM;

	if (!v || !out)
		return VEIL_EINVAL;
	o = json_object();
	adv = json_array();
	if (!o || !adv) {
		json_decref(adv);
		goto out;
	}
	tdx = v->tee_type == VEIL_TDX_TEE_TDX;
	for (size_t i = 0; i < v->n_advisories; i++)
		if (json_array_append_new(adv, json_string(v->advisories[i])) < 0) {
			json_decref(adv);
			goto out;
		}
	if (json_object_set_new(o, "ok", json_boolean(v->ok)) < 0 ||
	    json_object_set_new(o, "kind", v->quote_version ? json_string(tdx ? "tdx" : "sgx")
							     : json_null()) < 0 ||
	    json_object_set_new(o, "quote_version", json_integer(v->quote_version)) < 0 ||
	    json_object_set_new(o, "status", v->ok ? json_string(v->status) : json_null()) < 0 ||
	    json_object_set_new(o, "advisories", adv) < 0 ||
	    json_object_set_new(o, "error", v->ok ? json_null() : json_string(v->error)) < 0)
		goto out;
	if (v->ok) {
		if (tdx) {
			static const char *const rt[4] = {"rtmr0", "rtmr1", "rtmr2", "rtmr3"};
			const struct veil_tdx_td_report *t = &v->td;

			if ((rc = put_hex(o, "mrtd", t->mr_td, 48)) < 0)
				goto out;
			for (int i = 0; i < 4; i++)
				if ((rc = put_hex(o, rt[i], t->rtmr[i], 48)) < 0)
					goto out;
			if ((rc = put_hex(o, "mr_config_id", t->mr_config_id, 48)) < 0 ||
			    (rc = put_hex(o, "mr_owner", t->mr_owner, 48)) < 0 ||
			    (rc = put_hex(o, "mr_owner_config", t->mr_owner_config, 48)) < 0 ||
			    (rc = put_hex(o, "mr_seam", t->mr_seam, 48)) < 0 ||
			    (rc = put_hex(o, "td_attributes", t->td_attributes, 8)) < 0 ||
			    (rc = put_hex(o, "xfam", t->xfam, 8)) < 0 ||
			    (rc = put_hex(o, "tee_tcb_svn", t->tee_tcb_svn, 16)) < 0)
				goto out;
		} else {
			if ((rc = put_hex(o, "mrenclave", v->sgx.mr_enclave, 32)) < 0 ||
			    (rc = put_hex(o, "mrsigner", v->sgx.mr_signer, 32)) < 0)
				goto out;
			rc = VEIL_ENOMEM;
			if (json_object_set_new(o, "isvprodid", json_integer(v->sgx.isv_prod_id)) < 0 ||
			    json_object_set_new(o, "isvsvn", json_integer(v->sgx.isv_svn)) < 0)
				goto out;
		}
		if ((rc = put_hex(o, "report_data", v->report_data, 64)) < 0 ||
		    (rc = put_hex(o, "fmspc", v->fmspc, 6)) < 0)
			goto out;
	}
	*out = o;
	o = NULL;
	rc = 0;
out:
	json_decref(o);
	return rc;
}
