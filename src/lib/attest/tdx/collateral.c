/* veil tdx: DCAP collateral in the dcap-qvl JSON layout.
 *
 * Intel PCS API v4 defines the TCB info (v3) and enclave identity (v2) JSON;
 * dcap-qvl's collateral object carries each as a string of the exact bytes
 * Intel signed, next to the hex signature, the hex DER CRLs and the PEM issuer
 * chains.  Only structure is checked here; veil_tdx_verify() checks
 * signatures and times. */
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "../tdx_impl.h"
#include "veil/base.h"
#include "veil/x509.h"

#define COLLATERAL_MAX (4u << 20)
#define LEVELS_MAX 256

static const char *ctx_name = "collateral";

static json_t *field(json_t *o, const char *what, const char *key, json_type type)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_typeof(v) != type) {
		veil_errf(VEIL_EFORMAT, "%s: %s: field \"%s\" missing or of the wrong type",
			  ctx_name, what, key);
		return NULL;
	}
	return v;
}

static int str_field(json_t *o, const char *what, const char *key, const char **s,
		     size_t *len)
{
	json_t *v = field(o, what, key, JSON_STRING);

	if (!v)
		return VEIL_EFORMAT;
	*s = json_string_value(v);
	*len = json_string_length(v);
	return 0;
}

static int hex_field(json_t *o, const char *what, const char *key, uint8_t *out,
		     size_t want)
{
	const char *s;
	size_t len, got;

	if (str_field(o, what, key, &s, &len) < 0)
		return VEIL_EFORMAT;
	if (len != 2 * want || veil_hex_decode(s, len, out, want, &got) < 0 || got != want)
		return veil_errf(VEIL_EFORMAT, "%s: %s: \"%s\" is not %zu bytes of hex",
				 ctx_name, what, key, want);
	return 0;
}

static int int_field(json_t *o, const char *what, const char *key, int64_t lo,
		     int64_t hi, int64_t *out)
{
	json_t *v = field(o, what, key, JSON_INTEGER);

	if (!v)
		return VEIL_EFORMAT;
	if (json_integer_value(v) < lo || json_integer_value(v) > hi)
		return veil_errf(VEIL_EFORMAT, "%s: %s: \"%s\" = %lld out of range", ctx_name,
				 what, key, (long long)json_integer_value(v));
	*out = json_integer_value(v);
	return 0;
}

static int time_field(json_t *o, const char *what, const char *key, int64_t *out)
{
	const char *s;
	size_t len;

	if (str_field(o, what, key, &s, &len) < 0)
		return VEIL_EFORMAT;
	if (veil_x509_iso8601_parse(s, len, out) < 0)
		return veil_errf(VEIL_EFORMAT, "%s: %s: \"%s\" is not a UTC time", ctx_name,
				 what, key);
	return 0;
}

static int copy_str(json_t *o, const char *what, const char *key, char *out, size_t cap)
{
	const char *s;
	size_t len;

	if (str_field(o, what, key, &s, &len) < 0)
		return VEIL_EFORMAT;
	if (len >= cap || strlen(s) != len)
		return veil_errf(VEIL_EFORMAT, "%s: %s: \"%s\" too long", ctx_name, what, key);
	memcpy(out, s, len + 1);
	return 0;
}

/* Prefixes the current error detail (copied first: veil_errf writes the
 * buffer veil_err_detail() returns). */
static int wrap(int rc, const char *what)
{
	char d[512];

	snprintf(d, sizeof(d), "%s", veil_err_detail());
	return veil_errf(rc, "%s: %s", what, d);
}

static void status_free(struct tdx_status *st)
{
	free(st->adv);
	st->adv = NULL;
	st->n_adv = 0;
}

/* {"tcbStatus": "...", "advisoryIDs": [...]} of a level */
static int status_parse(json_t *lv, const char *what, struct tdx_status *st)
{
	json_t *adv;
	int rc;

	if ((rc = copy_str(lv, what, "tcbStatus", st->status, sizeof(st->status))) < 0)
		return rc;
	adv = json_object_get(lv, "advisoryIDs");
	if (!adv)
		return 0;
	if (!json_is_array(adv) || json_array_size(adv) > VEIL_TDX_MAX_ADVISORIES)
		return veil_errf(VEIL_EFORMAT, "%s: %s: advisoryIDs is not an array of at most %d",
				 ctx_name, what, VEIL_TDX_MAX_ADVISORIES);
	if (json_array_size(adv) == 0)
		return 0;
	st->adv = calloc(json_array_size(adv), sizeof(*st->adv));
	if (!st->adv)
		return VEIL_ENOMEM;
	for (size_t i = 0; i < json_array_size(adv); i++) {
		json_t *a = json_array_get(adv, i);

		if (!json_is_string(a) || json_string_length(a) == 0 ||
		    json_string_length(a) >= VEIL_TDX_ADVISORY_LEN ||
		    strlen(json_string_value(a)) != json_string_length(a))
			return veil_errf(VEIL_EFORMAT, "%s: %s: advisory ID %zu malformed",
					 ctx_name, what, i);
		memcpy(st->adv[i], json_string_value(a), json_string_length(a) + 1);
		st->n_adv++;
	}
	return 0;
}

/* [{"tcb": {"isvsvn": N}, "tcbStatus": ..., "advisoryIDs": ...}, ...] */
static int isv_levels_parse(json_t *arr, const char *what, struct tdx_isv_level **out,
			    size_t *nout)
{
	struct tdx_isv_level *lv;
	size_t n;
	int rc;

	if (!json_is_array(arr) || (n = json_array_size(arr)) == 0 || n > LEVELS_MAX)
		return veil_errf(VEIL_EFORMAT, "%s: %s: tcbLevels must be a non-empty array",
				 ctx_name, what);
	lv = calloc(n, sizeof(*lv));
	if (!lv)
		return VEIL_ENOMEM;
	*out = lv;
	*nout = n;
	for (size_t i = 0; i < n; i++) {
		json_t *l = json_array_get(arr, i), *tcb;
		int64_t v;

		if (!json_is_object(l) || !(tcb = field(l, what, "tcb", JSON_OBJECT)))
			return veil_errf(VEIL_EFORMAT, "%s: %s: tcbLevels[%zu] malformed", ctx_name,
					 what, i);
		if ((rc = int_field(tcb, what, "isvsvn", 0, 65535, &v)) < 0)
			return rc;
		lv[i].isvsvn = (uint16_t)v;
		if ((rc = status_parse(l, what, &lv[i].st)) < 0)
			return rc;
	}
	return 0;
}

static void isv_levels_free(struct tdx_isv_level *lv, size_t n)
{
	for (size_t i = 0; lv && i < n; i++)
		status_free(&lv[i].st);
	free(lv);
}

/* "sgxtcbcomponents" / "tdxtcbcomponents": exactly 16 {"svn": N, ...} */
static int components(json_t *tcb, const char *key, uint8_t out[16])
{
	json_t *arr = field(tcb, "TCB info", key, JSON_ARRAY);

	if (!arr)
		return VEIL_EFORMAT;
	if (json_array_size(arr) != 16)
		return veil_errf(VEIL_EFORMAT, "collateral: TCB info: %s has %zu entries, not 16",
				 key, json_array_size(arr));
	for (size_t i = 0; i < 16; i++) {
		json_t *c = json_array_get(arr, i);
		int64_t v;
		int rc;

		if (!json_is_object(c))
			return veil_errf(VEIL_EFORMAT, "collateral: TCB info: %s[%zu] malformed", key, i);
		if ((rc = int_field(c, "TCB info", "svn", 0, 255, &v)) < 0)
			return rc;
		out[i] = (uint8_t)v;
	}
	return 0;
}

static int tcb_info_parse(struct veil_tdx_collateral *c)
{
	json_error_t jerr;
	json_t *o, *levels, *mod, *mods;
	const char *w = "TCB info";
	int64_t v;
	int rc;

	o = json_loadb((const char *)c->tcb_info_raw, c->tcb_info_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return veil_errf(VEIL_EFORMAT, "collateral: TCB info: not a JSON object (%s)", jerr.text);
	}
	if ((rc = copy_str(o, w, "id", c->tcb_id, sizeof(c->tcb_id))) < 0 ||
	    (rc = int_field(o, w, "version", 0, 1000, &v)) < 0)
		goto out;
	c->tcb_version = (int)v;
	if (c->tcb_version != 3 || (strcmp(c->tcb_id, "SGX") && strcmp(c->tcb_id, "TDX"))) {
		rc = veil_errf(VEIL_ENOTSUP, "collateral: TCB info: id \"%s\" version %d unsupported (SGX/TDX v3)",
			       c->tcb_id, c->tcb_version);
		goto out;
	}
	if ((rc = time_field(o, w, "issueDate", &c->tcb_issue)) < 0 ||
	    (rc = time_field(o, w, "nextUpdate", &c->tcb_next)) < 0 ||
	    (rc = hex_field(o, w, "fmspc", c->fmspc, 6)) < 0 ||
	    (rc = hex_field(o, w, "pceId", c->pce_id, 2)) < 0 ||
	    (rc = int_field(o, w, "tcbType", 0, 0, &v)) < 0)
		goto out;
	if ((mod = json_object_get(o, "tdxModule"))) {
		if (!json_is_object(mod) ||
		    (rc = hex_field(mod, "tdxModule", "mrsigner", c->mod_mrsigner, 48)) < 0 ||
		    (rc = hex_field(mod, "tdxModule", "attributes", c->mod_attributes, 8)) < 0 ||
		    (rc = hex_field(mod, "tdxModule", "attributesMask", c->mod_attributes_mask, 8)) < 0) {
			rc = veil_errf(VEIL_EFORMAT, "collateral: TCB info: tdxModule malformed");
			goto out;
		}
		c->has_tdx_module = true;
	}
	if ((mods = json_object_get(o, "tdxModuleIdentities"))) {
		if (!json_is_array(mods) || json_array_size(mods) > LEVELS_MAX) {
			rc = veil_errf(VEIL_EFORMAT, "collateral: TCB info: tdxModuleIdentities malformed");
			goto out;
		}
		c->mods = calloc(json_array_size(mods) + 1, sizeof(*c->mods));
		if (!c->mods) {
			rc = VEIL_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < json_array_size(mods); i++) {
			json_t *m = json_array_get(mods, i);
			struct tdx_module_id *mi = &c->mods[i];
			const char *mw = "tdxModuleIdentities";

			c->n_mods++;
			if (!json_is_object(m) ||
			    (rc = copy_str(m, mw, "id", mi->id, sizeof(mi->id))) < 0 ||
			    (rc = hex_field(m, mw, "mrsigner", mi->mrsigner, 48)) < 0 ||
			    (rc = hex_field(m, mw, "attributes", mi->attributes, 8)) < 0 ||
			    (rc = hex_field(m, mw, "attributesMask", mi->attributes_mask, 8)) < 0 ||
			    (rc = isv_levels_parse(json_object_get(m, "tcbLevels"), mw, &mi->levels,
						   &mi->n_levels)) < 0) {
				rc = rc < 0 ? rc : veil_errf(VEIL_EFORMAT, "collateral: TCB info: tdxModuleIdentities[%zu] malformed", i);
				goto out;
			}
		}
	}
	levels = json_object_get(o, "tcbLevels");
	if (!json_is_array(levels) || json_array_size(levels) == 0 ||
	    json_array_size(levels) > LEVELS_MAX) {
		rc = veil_errf(VEIL_EFORMAT, "collateral: TCB info: tcbLevels must be a non-empty array");
		goto out;
	}
	c->levels = calloc(json_array_size(levels), sizeof(*c->levels));
	if (!c->levels) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < json_array_size(levels); i++) {
		json_t *l = json_array_get(levels, i), *tcb;
		struct tdx_tcb_level *lv = &c->levels[i];

		c->n_levels++;
		if (!json_is_object(l) || !(tcb = field(l, w, "tcb", JSON_OBJECT))) {
			rc = veil_errf(VEIL_EFORMAT, "collateral: TCB info: tcbLevels[%zu] malformed", i);
			goto out;
		}
		if ((rc = components(tcb, "sgxtcbcomponents", lv->sgx)) < 0 ||
		    (rc = int_field(tcb, w, "pcesvn", 0, 65535, &v)) < 0)
			goto out;
		lv->pcesvn = (uint16_t)v;
		if (json_object_get(tcb, "tdxtcbcomponents")) {
			if ((rc = components(tcb, "tdxtcbcomponents", lv->tdx)) < 0)
				goto out;
			lv->has_tdx = true;
		}
		if ((rc = status_parse(l, w, &lv->st)) < 0)
			goto out;
	}
	rc = 0;
out:
	json_decref(o);
	return rc;
}

static int qe_identity_parse(struct veil_tdx_collateral *c)
{
	json_error_t jerr;
	json_t *o;
	const char *w = "QE identity";
	uint8_t b4[4];
	int64_t v;
	int rc;

	o = json_loadb((const char *)c->qe_id_raw, c->qe_id_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return veil_errf(VEIL_EFORMAT, "collateral: QE identity: not a JSON object (%s)", jerr.text);
	}
	if ((rc = copy_str(o, w, "id", c->qe_id, sizeof(c->qe_id))) < 0 ||
	    (rc = int_field(o, w, "version", 0, 1000, &v)) < 0)
		goto out;
	c->qe_version = (int)v;
	if ((rc = time_field(o, w, "issueDate", &c->qe_issue)) < 0 ||
	    (rc = time_field(o, w, "nextUpdate", &c->qe_next)) < 0 ||
	    (rc = hex_field(o, w, "miscselect", b4, 4)) < 0)
		goto out;
	c->miscselect = (uint32_t)b4[0] | (uint32_t)b4[1] << 8 | (uint32_t)b4[2] << 16 |
			(uint32_t)b4[3] << 24;
	if ((rc = hex_field(o, w, "miscselectMask", b4, 4)) < 0)
		goto out;
	c->miscselect_mask = (uint32_t)b4[0] | (uint32_t)b4[1] << 8 | (uint32_t)b4[2] << 16 |
			     (uint32_t)b4[3] << 24;
	if ((rc = hex_field(o, w, "attributes", c->qe_attributes, 16)) < 0 ||
	    (rc = hex_field(o, w, "attributesMask", c->qe_attributes_mask, 16)) < 0 ||
	    (rc = hex_field(o, w, "mrsigner", c->qe_mrsigner, 32)) < 0 ||
	    (rc = int_field(o, w, "isvprodid", 0, 65535, &v)) < 0)
		goto out;
	c->qe_isvprodid = (uint16_t)v;
	rc = isv_levels_parse(json_object_get(o, "tcbLevels"), w, &c->qe_levels, &c->n_qe_levels);
out:
	json_decref(o);
	return rc;
}

static int dup_string(json_t *root, const char *key, uint8_t **out, size_t *len)
{
	const char *s;
	size_t n;

	if (str_field(root, "object", key, &s, &n) < 0)
		return VEIL_EFORMAT;
	*out = malloc(n + 1);
	if (!*out)
		return VEIL_ENOMEM;
	memcpy(*out, s, n);
	(*out)[n] = 0;
	*len = n;
	return 0;
}

/* A hex DER CRL; *id is the SHA-256 of the DER (the verification caches
 * know a CRL by it). */
static int crl_field(json_t *root, const char *key, X509_CRL **out, uint8_t id[32])
{
	const char *s;
	uint8_t *der;
	size_t n, got;
	int rc;

	if (str_field(root, "object", key, &s, &n) < 0)
		return VEIL_EFORMAT;
	if (n == 0 || n % 2)
		return veil_errf(VEIL_EFORMAT, "collateral: %s is not hex DER", key);
	der = malloc(n / 2);
	if (!der)
		return VEIL_ENOMEM;
	rc = veil_hex_decode(s, n, der, n / 2, &got);
	if (rc == 0)
		rc = veil_x509_crl_der_parse(der, got, out);
	if (rc == 0)
		SHA256(der, got, id);
	free(der);
	if (rc < 0)
		return wrap(rc, key);
	return 0;
}

static int chain_field(json_t *root, const char *key, STACK_OF(X509) **out)
{
	const char *s;
	size_t n;
	int rc;

	if (str_field(root, "object", key, &s, &n) < 0)
		return VEIL_EFORMAT;
	if ((rc = veil_x509_pem_chain_parse((const uint8_t *)s, n, out)) < 0)
		return wrap(rc, key);
	return 0;
}

static int sig_field(json_t *root, const char *key, uint8_t out[64])
{
	return hex_field(root, "object", key, out, 64);
}

int veil_tdx_collateral_parse(const uint8_t *p, size_t n, struct veil_tdx_collateral **out)
{
	struct veil_tdx_collateral *c = NULL;
	json_error_t jerr;
	json_t *root = NULL;
	int rc;

	if (!p || !out)
		return VEIL_EINVAL;
	if (n > COLLATERAL_MAX)
		return veil_errf(VEIL_ERANGE, "collateral: %zu bytes exceeds %u", n, COLLATERAL_MAX);
	root = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		rc = veil_errf(VEIL_EFORMAT, "collateral: not a JSON object (line %d: %s)",
			       jerr.line, jerr.text);
		goto out;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->vc = calloc(1, sizeof(*c->vc)))) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	pthread_mutex_init(&c->vc->lock, NULL);
	if ((rc = dup_string(root, "tcb_info", &c->tcb_info_raw, &c->tcb_info_len)) < 0 ||
	    (rc = dup_string(root, "qe_identity", &c->qe_id_raw, &c->qe_id_len)) < 0 ||
	    (rc = sig_field(root, "tcb_info_signature", c->tcb_info_sig)) < 0 ||
	    (rc = sig_field(root, "qe_identity_signature", c->qe_id_sig)) < 0 ||
	    (rc = chain_field(root, "tcb_info_issuer_chain", &c->tcb_chain)) < 0 ||
	    (rc = chain_field(root, "qe_identity_issuer_chain", &c->qe_chain)) < 0 ||
	    (rc = crl_field(root, "root_ca_crl", &c->root_crl, c->root_crl_id)) < 0 ||
	    (rc = crl_field(root, "pck_crl", &c->pck_crl, c->pck_crl_id)) < 0 ||
	    (rc = tcb_info_parse(c)) < 0 || (rc = qe_identity_parse(c)) < 0)
		goto out;
	*out = c;
	c = NULL;
	rc = 0;
out:
	veil_tdx_collateral_free(c);
	json_decref(root);
	return rc;
}

int veil_tdx_collateral_load(const char *path, struct veil_tdx_collateral **out)
{
	struct veil_buf b = VEIL_BUF_INIT(COLLATERAL_MAX);
	int rc;

	if (!path || !out)
		return VEIL_EINVAL;
	if ((rc = veil_buf_read_file(&b, path)) == 0)
		rc = veil_tdx_collateral_parse(b.data ? b.data : (const uint8_t *)"", b.len, out);
	veil_buf_free(&b);
	return rc;
}

void veil_tdx_collateral_free(struct veil_tdx_collateral *c)
{
	if (!c)
		return;
	free(c->tcb_info_raw);
	free(c->qe_id_raw);
	sk_X509_pop_free(c->tcb_chain, X509_free);
	sk_X509_pop_free(c->qe_chain, X509_free);
	X509_CRL_free(c->root_crl);
	X509_CRL_free(c->pck_crl);
	for (size_t i = 0; i < c->n_mods; i++)
		isv_levels_free(c->mods[i].levels, c->mods[i].n_levels);
	free(c->mods);
	for (size_t i = 0; i < c->n_levels; i++)
		status_free(&c->levels[i].st);
	free(c->levels);
	isv_levels_free(c->qe_levels, c->n_qe_levels);
	if (c->vc) {
		pthread_mutex_destroy(&c->vc->lock);
		free(c->vc);
	}
	free(c);
}
