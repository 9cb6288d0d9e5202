/* NVIDIA RIM signature: the enveloped XML-DSig (W3C xmldsig-core1) over a
 * SWID tag, checked with libxml2 + xmlsec1 (OpenSSL backend), and the
 * signer's chain (KeyInfo/X509Data, leaf first) checked with
 * veil_x509_chain_verify() against the pinned NVIDIA CoRIM signing root.
 *
 * Why the shape is pinned before xmlsec1 sees the document: XML-DSig lets a
 * Reference cover any part of a document (an Id, an XPath, another file).
 * A RIM's golden values are only trustworthy if the signature covers all of
 * them, so exactly one Reference with URI="" (the whole document without
 * comments, §4.4.3.2) and the enveloped-signature transform is accepted.
 * xmlsec1 is also told to allow only those URIs and transforms, and it
 * never resolves a key itself: the key is the leaf certificate's, and the
 * chain is ours to check (one code path, one set of error messages, an
 * explicit time).
 *
 * Canonicalisation is where a small document can cost a lot: libxml2's
 * C14N does work per element for every namespace in scope (quadratic in
 * the declarations) and sorts each element's attributes, and xmlsec1 runs
 * it for the Reference digest before any signature is checked.  So the
 * tree is bounded first (VEIL_NVGPU_RIM_MAX_ELEMENTS / _NS_DECLS / _ATTRS /
 * _NS_URI, far above what NVIDIA's RIMs use) and the Reference may only use
 * inclusive C14N: exclusive C14N re-declares every used namespace on every
 * element whose parent is outside the output, which a crafted document
 * turns into output ~1000x its size.
 *
 * Error texts carry pieces of the document (an Algorithm value, libxml2's
 * and xmlsec1's messages): they are reduced to printable ASCII, so a cut
 * never splits a UTF-8 sequence (JSON encoders refuse those) and a newline
 * in the input cannot forge a line on a terminal or in a log.
 *
 * The golden values are then scanned from the pre-digest bytes xmlsec1
 * kept (XMLSEC_DSIG_FLAGS_STORE_SIGNEDINFO_REFERENCES): the exact octets
 * that were hashed, so no difference between how libxml2 and rim.c's
 * scanner read the input (encodings, comments, entities) can matter. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <xmlsec/xmlsec.h> /* first: the other xmlsec headers need its types */
#include <xmlsec/errors.h>
#include <xmlsec/keys.h>
#include <xmlsec/transforms.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/openssl/app.h>
#include <xmlsec/openssl/crypto.h>
#include <xmlsec/openssl/evp.h>

#include "nvgpu_internal.h"
#include "veil/x509.h"

#define DSIG_NS "http://www.w3.org/2000/09/xmldsig#"
#define EXC_C14N_PREFIX "http://www.w3.org/2001/10/xml-exc-c14n#" /* + "WithComments" */
#define CERT_B64_MAX 8192                   /* one X509Certificate, base64 */
/* canonical form: C14N escapes grow a byte to at most 6 ("&quot;") */
#define SIGNED_MAX (8u * VEIL_NVGPU_RIM_MAX)

/* ---- one-time library set-up ------------------------------------------- */

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_rc;

/* xmlsec1 reports errors through one process-wide callback; the first one
 * of a call is kept per thread as the fallback reason. */
static __thread char xs_err[200];

static void xs_error_cb(const char *file, int line, const char *func, const char *obj,
			const char *subj, int reason, const char *msg)
{
	(void)file;
	(void)line;
	(void)obj;
	(void)reason;
	if (xs_err[0])
		return;
	snprintf(xs_err, sizeof(xs_err), "%s%s%s%s%s", func ? func : "", subj ? " " : "",
		 subj ? subj : "", msg && *msg ? ": " : "", msg ? msg : "");
	nvgpu_ascii(xs_err);
}

static void lib_init(void)
{
	xmlInitParser();
	xmlSecErrorsSetCallback(xs_error_cb); /* nothing on stderr, from the start */
	if (xmlSecInit() < 0 || xmlSecCheckVersion() != 1 || xmlSecOpenSSLAppInit(NULL) < 0 ||
	    xmlSecOpenSSLInit() < 0)
		lib_rc = VEIL_EINTERNAL;
	xmlSecErrorsSetCallback(xs_error_cb);
	ERR_clear_error();
}

/* libxml2 keeps its error handlers per thread: silence them for the call
 * (a parse error is read back from the parser context). */
static void xml_quiet(void *ctx, const char *fmt, ...)
{
	(void)ctx;
	(void)fmt;
}

static void xml_quiet_structured(void *ctx, xmlErrorPtr e)
{
	(void)ctx;
	(void)e;
}

/* ---- result helpers ---------------------------------------------------- */

static int sig_fail(struct veil_nvgpu_rim_sig *sig, int rc, const char *fmt, ...)
	VEIL_PRINTF(3, 4);

static int sig_fail(struct veil_nvgpu_rim_sig *sig, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sig->error, sizeof(sig->error), fmt, ap);
	va_end(ap);
	nvgpu_ascii(sig->error); /* it may quote the document */
	sig->rc = rc;
	return veil_errf(rc, "%s", sig->error);
}

/* ---- document shape ---------------------------------------------------- */

static bool is_dsig(const xmlNode *n, const char *name)
{
	return n && n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
	       !strcmp((const char *)n->ns->href, DSIG_NS) && !strcmp((const char *)n->name, name);
}

/* The next element sibling at or after n (text, comments, PIs skipped). */
static xmlNode *elem_from(xmlNode *n)
{
	while (n && n->type != XML_ELEMENT_NODE)
		n = n->next;
	return n;
}

static xmlNode *first_elem(xmlNode *parent)
{
	return parent ? elem_from(parent->children) : NULL;
}

static xmlNode *next_elem(xmlNode *n)
{
	return n ? elem_from(n->next) : NULL;
}

/* The Algorithm attribute (no namespace), or NULL. */
static const char *algorithm(xmlNode *n, xmlChar **hold)
{
	*hold = xmlGetNoNsProp(n, (const xmlChar *)"Algorithm");
	return (const char *)*hold;
}

static bool in_list(const char *s, const char *const *list)
{
	for (; s && *list; list++)
		if (!strcmp(s, *list))
			return true;
	return false;
}

/* SignedInfo's CanonicalizationMethod: SignedInfo's shape is pinned (a
 * handful of elements), so exclusive C14N costs nothing there. */
static const char *const C14N_ALGS[] = {
	"http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
	"http://www.w3.org/2006/12/xml-c14n11",
	EXC_C14N_PREFIX,
	NULL,
};
/* The Reference's C14N runs over the whole document: inclusive only (see
 * the top of the file; NVIDIA's RIMs use C14N 1.1). */
static const char *const REF_C14N_ALGS[] = {
	"http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
	"http://www.w3.org/2006/12/xml-c14n11",
	NULL,
};
static const char *const SIG_ALGS[] = {
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
	"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
	"http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
	"http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
	NULL,
};
static const char *const DIGEST_ALGS[] = {
	"http://www.w3.org/2001/04/xmlenc#sha256",
	"http://www.w3.org/2001/04/xmldsig-more#sha384",
	"http://www.w3.org/2001/04/xmlenc#sha512",
	NULL,
};
#define ENVELOPED_ALG "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

/* An element whose only attribute is an allowed Algorithm and which has no
 * element children (parameters such as an XPath or an InclusiveNamespaces
 * prefix list change what is signed). */
static int check_alg_elem(struct veil_nvgpu_rim_sig *sig, xmlNode *n, const char *what,
			  const char *const *allowed, const char *also)
{
	xmlChar *hold = NULL;
	const char *a = algorithm(n, &hold);
	int rc = 0;

	if (!a || !(in_list(a, allowed) || (also && !strcmp(a, also))))
		rc = sig_fail(sig, VEIL_ENOTSUP, "RIM signature: %s algorithm %.120s is not accepted",
			      what, a ? a : "(none)");
	else if (first_elem(n) || !n->properties || n->properties->next)
		rc = sig_fail(sig, VEIL_ENOTSUP, "RIM signature: %s has parameters or extra "
			      "attributes", what);
	xmlFree(hold);
	return rc;
}

/* Bounds the tree (see the header) and counts its ds:Signature elements,
 * in one walk (iteratively: no recursion on input depth). */
static int check_tree(struct veil_nvgpu_rim_sig *sig, xmlNode *root, size_t *nsig)
{
	size_t elems = 0, ns_decls = 0;
	xmlNode *n = root;

	*nsig = 0;
	while (n) {
		if (n->type == XML_ELEMENT_NODE) {
			size_t attrs = 0;

			if (++elems > VEIL_NVGPU_RIM_MAX_ELEMENTS)
				return sig_fail(sig, VEIL_ENOTSUP, "RIM: more than %d elements (the "
						"limit; NVIDIA's RIMs have ~85)",
						VEIL_NVGPU_RIM_MAX_ELEMENTS);
			for (xmlNs *ns = n->nsDef; ns; ns = ns->next) {
				if (++ns_decls > VEIL_NVGPU_RIM_MAX_NS_DECLS)
					return sig_fail(sig, VEIL_ENOTSUP, "RIM: more than %d namespace "
							"declarations (the limit; NVIDIA's RIMs have 6)",
							VEIL_NVGPU_RIM_MAX_NS_DECLS);
				if (ns->href && strlen((const char *)ns->href) > VEIL_NVGPU_RIM_MAX_NS_URI)
					return sig_fail(sig, VEIL_ENOTSUP, "RIM: a namespace URI longer "
							"than %d bytes (the limit)",
							VEIL_NVGPU_RIM_MAX_NS_URI);
			}
			for (xmlAttr *a = n->properties; a; a = a->next)
				if (++attrs > VEIL_NVGPU_RIM_MAX_ATTRS)
					return sig_fail(sig, VEIL_ENOTSUP, "RIM: element %.40s has more "
							"than %d attributes (the limit)",
							(const char *)n->name, VEIL_NVGPU_RIM_MAX_ATTRS);
			if (is_dsig(n, "Signature"))
				++*nsig;
		}
		if (n->type == XML_ELEMENT_NODE && n->children) {
			n = n->children;
			continue;
		}
		while (n && n != root && !n->next)
			n = n->parent;
		if (!n || n == root)
			break;
		n = n->next;
	}
	return 0;
}

/* Pins the Signature's shape (see the header); *sig_node, *sig_method and
 * *x509data are set on success. */
static int check_shape(struct veil_nvgpu_rim_sig *sig, xmlDoc *doc, xmlNode **sig_node,
		       xmlNode **x509data)
{
	xmlNode *root = xmlDocGetRootElement(doc), *s = NULL, *si, *sv, *ki, *c, *ref, *tr, *t;
	xmlChar *hold = NULL;
	const char *a;
	size_t nsig;
	int rc;

	if (!root || strcmp((const char *)root->name, "SoftwareIdentity") != 0)
		return sig_fail(sig, VEIL_EFORMAT, "RIM: root element is not SoftwareIdentity");
	if ((rc = check_tree(sig, root, &nsig)) < 0)
		return rc;
	if (nsig == 0)
		return sig_fail(sig, VEIL_EBADMSG, "RIM is not signed: no ds:Signature element");
	if (nsig > 1)
		return sig_fail(sig, VEIL_ENOTSUP, "RIM: %zu ds:Signature elements (one expected)",
				nsig);
	for (c = first_elem(root); c && !s; c = next_elem(c))
		if (is_dsig(c, "Signature"))
			s = c;
	if (!s)
		return sig_fail(sig, VEIL_ENOTSUP, "RIM: ds:Signature is not a child of the root "
				"element (not an enveloped signature of the whole document)");
	si = first_elem(s);
	sv = next_elem(si);
	ki = next_elem(sv);
	if (!is_dsig(si, "SignedInfo") || !is_dsig(sv, "SignatureValue") || !is_dsig(ki, "KeyInfo") ||
	    next_elem(ki))
		return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: children must be SignedInfo, "
				"SignatureValue, KeyInfo (no Object)");
	/* SignedInfo: CanonicalizationMethod, SignatureMethod, one Reference */
	c = first_elem(si);
	if (!is_dsig(c, "CanonicalizationMethod"))
		return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: no CanonicalizationMethod");
	if ((rc = check_alg_elem(sig, c, "CanonicalizationMethod", C14N_ALGS, NULL)) < 0)
		return rc;
	c = next_elem(c);
	if (!is_dsig(c, "SignatureMethod"))
		return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: no SignatureMethod");
	if ((rc = check_alg_elem(sig, c, "SignatureMethod", SIG_ALGS, NULL)) < 0)
		return rc;
	a = algorithm(c, &hold);
	snprintf(sig->method, sizeof(sig->method), "%s", strchr(a, '#') + 1);
	xmlFree(hold);
	ref = next_elem(c);
	if (!is_dsig(ref, "Reference") || next_elem(ref))
		return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: SignedInfo must hold exactly one "
				"Reference");
	/* URI="" and nothing that could redirect it (a namespaced URI
	 * attribute, which some readers would take instead) */
	for (xmlAttr *p = ref->properties; p; p = p->next) {
		const char *nm = (const char *)p->name;

		if (p->ns || (strcmp(nm, "URI") && strcmp(nm, "Id") && strcmp(nm, "Type")))
			return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: Reference attribute %.40s "
					"is not accepted", nm);
	}
	hold = xmlGetNoNsProp(ref, (const xmlChar *)"URI");
	rc = hold && !hold[0];
	xmlFree(hold);
	if (!rc)
		return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: the Reference must have URI=\"\" "
				"(the whole document); a signature over part of it is refused");
	/* Transforms: enveloped-signature, then at most one inclusive C14N */
	tr = first_elem(ref);
	if (!is_dsig(tr, "Transforms"))
		return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: the Reference has no Transforms "
				"(the enveloped-signature transform is required)");
	t = first_elem(tr);
	if (!is_dsig(t, "Transform"))
		return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: empty Transforms");
	if ((rc = check_alg_elem(sig, t, "first Transform", (const char *const[]){NULL},
				 ENVELOPED_ALG)) < 0)
		return rc;
	if ((t = next_elem(t))) {
		hold = NULL;
		a = is_dsig(t, "Transform") ? algorithm(t, &hold) : NULL;
		rc = a && !strncmp(a, EXC_C14N_PREFIX, strlen(EXC_C14N_PREFIX));
		xmlFree(hold);
		if (rc)
			return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: exclusive C14N is not "
					"accepted as the Reference transform (inclusive C14N 1.0 / "
					"1.1 only)");
		if (!is_dsig(t, "Transform") ||
		    (rc = check_alg_elem(sig, t, "second Transform", REF_C14N_ALGS, NULL)) < 0)
			return rc < 0 ? rc : sig_fail(sig, VEIL_ENOTSUP, "RIM signature: bad Transforms");
		if (next_elem(t))
			return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: more than two Transforms");
	}
	c = next_elem(tr);
	if (!is_dsig(c, "DigestMethod"))
		return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: no DigestMethod");
	if ((rc = check_alg_elem(sig, c, "DigestMethod", DIGEST_ALGS, NULL)) < 0)
		return rc;
	c = next_elem(c);
	if (!is_dsig(c, "DigestValue") || next_elem(c))
		return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: Reference must end with "
				"DigestValue");
	/* KeyInfo: one X509Data of X509Certificate only */
	c = first_elem(ki);
	if (!is_dsig(c, "X509Data") || next_elem(c))
		return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: KeyInfo must hold exactly one "
				"X509Data");
	for (t = first_elem(c); t; t = next_elem(t))
		if (!is_dsig(t, "X509Certificate"))
			return sig_fail(sig, VEIL_ENOTSUP, "RIM signature: X509Data holds %.40s "
					"(only X509Certificate is accepted)", (const char *)t->name);
	*sig_node = s;
	*x509data = c;
	return 0;
}

/* ---- signer chain ------------------------------------------------------ */

static int read_cert(struct veil_nvgpu_rim_sig *sig, xmlNode *n, size_t i, X509 **out)
{
	xmlChar *txt = xmlNodeGetContent(n);
	char *b64 = NULL;
	uint8_t *der = NULL;
	size_t len = 0, k = 0, got;
	int rc;

	if (!txt)
		return sig_fail(sig, VEIL_ENOMEM, "RIM signature: out of memory");
	len = strlen((const char *)txt);
	if (len > CERT_B64_MAX) {
		rc = sig_fail(sig, VEIL_ERANGE, "RIM signature: X509Certificate %zu: %zu characters "
			      "exceeds %d", i, len, CERT_B64_MAX);
		goto out;
	}
	b64 = malloc(len + 1);
	der = malloc(len / 4 * 3 + 3);
	if (!b64 || !der) {
		rc = sig_fail(sig, VEIL_ENOMEM, "RIM signature: out of memory");
		goto out;
	}
	/* base64Binary may be wrapped: XML whitespace is not data */
	for (size_t j = 0; j < len; j++)
		if (txt[j] != ' ' && txt[j] != '\t' && txt[j] != '\r' && txt[j] != '\n')
			b64[k++] = (char)txt[j];
	if (veil_b64_decode(b64, k, 0, der, len / 4 * 3 + 3, &got) < 0 ||
	    veil_x509_der_parse(der, got, out) < 0) {
		rc = sig_fail(sig, VEIL_EFORMAT, "RIM signature: X509Certificate %zu is not a DER "
			      "certificate in base64", i);
		goto out;
	}
	rc = 0;
out:
	free(der);
	free(b64);
	xmlFree(txt);
	return rc;
}

static void describe_cert(X509 *x, int64_t now, struct veil_nvgpu_rim_cert *c)
{
	BIO *b = BIO_new(BIO_s_mem());
	int n;

	memset(c, 0, sizeof(*c));
	if (b && X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0 &&
	    (n = BIO_read(b, c->subject, (int)sizeof(c->subject) - 1)) > 0)
		c->subject[n] = '\0';
	BIO_free(b);
	if (veil_x509_time_unix(X509_get0_notBefore(x), &c->not_before) < 0 ||
	    veil_x509_time_unix(X509_get0_notAfter(x), &c->not_after) < 0)
		return;
	c->valid_at_time = now >= c->not_before && now <= c->not_after;
}

static int check_chain(struct veil_nvgpu_rim_sig *sig, STACK_OF(X509) *chain,
		       const uint8_t *root_der, size_t root_len)
{
	X509 *root = NULL;
	int rc;

	if (veil_x509_der_parse(root_der, root_len, &root) < 0)
		return sig_fail(sig, VEIL_EINVAL, "RIM signature: trust anchor is not a DER "
				"certificate");
	rc = veil_x509_chain_verify(chain, root, NULL, 0, sig->time, VEIL_X509_LEAF_NOT_CA);
	if (rc < 0) {
		char detail[200], t[VEIL_X509_ISO8601_LEN], nb[VEIL_X509_ISO8601_LEN],
			na[VEIL_X509_ISO8601_LEN];
		const struct veil_nvgpu_rim_cert *bad = NULL;

		snprintf(detail, sizeof(detail), "%s", veil_err_detail());
		/* say which window was missed, and when */
		if (strstr(detail, "expired") || strstr(detail, "not yet valid"))
			for (size_t i = 0; i < sig->n_certs && !bad; i++)
				if (!sig->certs[i].valid_at_time)
					bad = &sig->certs[i];
		veil_x509_iso8601_format(sig->time, t);
		if (bad) {
			veil_x509_iso8601_format(bad->not_before, nb);
			veil_x509_iso8601_format(bad->not_after, na);
			rc = sig_fail(sig, rc, "RIM signer chain: %s (valid %s..%s; verification "
				      "time %s)", detail, nb, na, t);
		} else {
			rc = sig_fail(sig, rc, "RIM signer chain: %s (verification time %s)", detail,
				      t);
		}
	}
	X509_free(root);
	return rc;
}

/* ---- XML-DSig ----------------------------------------------------------- */

static int restrict_ctx(xmlSecDSigCtxPtr d)
{
	int bad = 0;

	d->enabledReferenceUris = xmlSecTransformUriTypeEmpty;
	d->flags |= XMLSEC_DSIG_FLAGS_STORE_SIGNEDINFO_REFERENCES |
		    XMLSEC_DSIG_FLAGS_IGNORE_MANIFESTS;
	d->keyInfoReadCtx.maxRetrievalMethodLevel = 0;
	d->keyInfoReadCtx.maxEncryptedKeyLevel = 0;
	bad |= xmlSecDSigCtxEnableReferenceTransform(d, xmlSecTransformEnvelopedId);
	bad |= xmlSecDSigCtxEnableReferenceTransform(d, xmlSecTransformInclC14NId);
	bad |= xmlSecDSigCtxEnableReferenceTransform(d, xmlSecTransformInclC14N11Id);
	bad |= xmlSecDSigCtxEnableReferenceTransform(d, xmlSecOpenSSLTransformSha256Id);
	bad |= xmlSecDSigCtxEnableReferenceTransform(d, xmlSecOpenSSLTransformSha384Id);
	bad |= xmlSecDSigCtxEnableReferenceTransform(d, xmlSecOpenSSLTransformSha512Id);
	bad |= xmlSecDSigCtxEnableSignatureTransform(d, xmlSecTransformInclC14NId);
	bad |= xmlSecDSigCtxEnableSignatureTransform(d, xmlSecTransformInclC14N11Id);
	bad |= xmlSecDSigCtxEnableSignatureTransform(d, xmlSecTransformExclC14NId);
	bad |= xmlSecDSigCtxEnableSignatureTransform(d, xmlSecOpenSSLTransformEcdsaSha256Id);
	bad |= xmlSecDSigCtxEnableSignatureTransform(d, xmlSecOpenSSLTransformEcdsaSha384Id);
	bad |= xmlSecDSigCtxEnableSignatureTransform(d, xmlSecOpenSSLTransformEcdsaSha512Id);
	bad |= xmlSecDSigCtxEnableSignatureTransform(d, xmlSecOpenSSLTransformRsaSha256Id);
	bad |= xmlSecDSigCtxEnableSignatureTransform(d, xmlSecOpenSSLTransformRsaSha384Id);
	bad |= xmlSecDSigCtxEnableSignatureTransform(d, xmlSecOpenSSLTransformRsaSha512Id);
	return bad ? VEIL_EINTERNAL : 0;
}

/* Verifies the signature with the leaf's public key; on success appends
 * the pre-digest bytes to signed_xml (when given). */
static int check_dsig(struct veil_nvgpu_rim_sig *sig, xmlNode *sig_node, X509 *leaf,
		      struct veil_buf *signed_xml)
{
	xmlSecDSigCtxPtr d = xmlSecDSigCtxCreate(NULL);
	xmlSecKeyDataPtr kd = NULL;
	xmlSecDSigReferenceCtxPtr ref;
	xmlSecBufferPtr pre;
	EVP_PKEY *pk = X509_get_pubkey(leaf);
	int rc;

	if (!d || !pk) {
		rc = sig_fail(sig, VEIL_ENOMEM, "RIM signature: out of memory or no leaf key");
		goto out;
	}
	if ((rc = restrict_ctx(d)) < 0) {
		rc = sig_fail(sig, rc, "RIM signature: xmlsec1 set-up failed");
		goto out;
	}
	/* the key is the leaf's: xmlsec1 resolves nothing from KeyInfo */
	if (!(kd = xmlSecOpenSSLEvpKeyAdopt(pk))) {
		rc = sig_fail(sig, VEIL_ENOTSUP, "RIM signature: leaf key type is not supported");
		goto out;
	}
	pk = NULL;
	if (!(d->signKey = xmlSecKeyCreate()) || xmlSecKeySetValue(d->signKey, kd) < 0) {
		rc = sig_fail(sig, VEIL_ENOMEM, "RIM signature: out of memory");
		goto out;
	}
	kd = NULL;
	if (xmlSecDSigCtxVerify(d, sig_node) < 0) {
		rc = sig_fail(sig, VEIL_EBADMSG, "RIM signature could not be checked: %s",
			      xs_err[0] ? xs_err : "xmlsec1 failed");
		goto out;
	}
	ref = xmlSecPtrListGetSize(&d->signedInfoReferences) == 1
	      ? xmlSecPtrListGetItem(&d->signedInfoReferences, 0) : NULL;
	if (!ref) {
		rc = sig_fail(sig, VEIL_EBADMSG, "RIM signature: not exactly one Reference processed");
		goto out;
	}
	if (ref->status != xmlSecDSigStatusSucceeded) {
		rc = sig_fail(sig, VEIL_EBADMSG, "RIM signature: the document's digest differs from "
			      "the signed DigestValue (the RIM was changed after signing)");
		goto out;
	}
	if (d->status != xmlSecDSigStatusSucceeded) {
		rc = sig_fail(sig, VEIL_EBADMSG, "RIM signature: SignatureValue does not verify with "
			      "the signer certificate's key");
		goto out;
	}
	pre = xmlSecDSigReferenceCtxGetPreDigestBuffer(ref);
	if (!pre) {
		rc = sig_fail(sig, VEIL_EINTERNAL, "RIM signature: signed bytes were not kept");
		goto out;
	}
	if (signed_xml &&
	    veil_buf_append(signed_xml, xmlSecBufferGetData(pre), xmlSecBufferGetSize(pre)) < 0) {
		rc = sig_fail(sig, VEIL_ERANGE, "RIM signature: signed form of %u bytes exceeds the "
			      "buffer", (unsigned)xmlSecBufferGetSize(pre));
		goto out;
	}
	rc = 0;
out:
	if (kd)
		xmlSecKeyDataDestroy(kd);
	EVP_PKEY_free(pk);
	if (d)
		xmlSecDSigCtxDestroy(d); /* destroys signKey too */
	ERR_clear_error();
	return rc;
}

/* ---- parsing ----------------------------------------------------------- */

struct parse_state {
	bool doctype;
};

/* SAX hook: a DOCTYPE (internal subset or external DTD) stops the parse
 * before any declaration in it is read. */
static void refuse_subset(void *ctx, const xmlChar *name, const xmlChar *ext,
			  const xmlChar *sys)
{
	xmlParserCtxtPtr p = ctx;

	(void)name;
	(void)ext;
	(void)sys;
	((struct parse_state *)p->_private)->doctype = true;
	xmlStopParser(p);
}

static int parse_doc(struct veil_nvgpu_rim_sig *sig, const char *xml, size_t n, xmlDoc **out)
{
	struct parse_state st = {0};
	xmlParserCtxtPtr p = xmlNewParserCtxt();
	xmlDoc *doc = NULL;
	int rc;

	if (!p)
		return sig_fail(sig, VEIL_ENOMEM, "RIM: out of memory");
	p->_private = &st;
	p->sax->internalSubset = refuse_subset;
	p->sax->externalSubset = refuse_subset;
	/* NONET: no fetches; no NOENT: entities are not substituted; no
	 * DTDLOAD/DTDATTR/XINCLUDE; the input is UTF-8 whatever it declares. */
	doc = xmlCtxtReadMemory(p, xml, (int)n, NULL, "UTF-8",
				XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
				XML_PARSE_IGNORE_ENC);
	if (st.doctype || (doc && (doc->intSubset || doc->extSubset))) {
		rc = sig_fail(sig, VEIL_ENOTSUP, "RIM: DOCTYPE is not supported (no DTDs or "
			      "entities)");
		goto out;
	}
	if (!doc) {
		const xmlError *e = xmlCtxtGetLastError(p);

		rc = sig_fail(sig, VEIL_EFORMAT, "RIM: not well-formed XML%s%.120s",
			      e && e->message ? ": " : "", e && e->message ? e->message : "");
		goto out;
	}
	*out = doc;
	doc = NULL;
	rc = 0;
out:
	xmlFreeDoc(doc);
	xmlFreeParserCtxt(p);
	return rc;
}

/* ---- entry points ------------------------------------------------------ */

const uint8_t *veil_nvgpu_rim_root(size_t *len)
{
	if (len)
		*len = nvgpu_rim_root_der_len;
	return nvgpu_rim_root_der;
}

int veil_nvgpu_rim_verify(const char *xml, size_t n, time_t now, const uint8_t *root_der,
			  size_t root_der_len, struct veil_nvgpu_rim_sig *sig_out,
			  struct veil_buf *signed_xml)
{
	struct veil_nvgpu_rim_sig *sig;
	xmlGenericErrorFunc old_generic;
	xmlStructuredErrorFunc old_structured;
	void *old_generic_ctx, *old_structured_ctx;
	STACK_OF(X509) *chain = NULL;
	xmlNode *sig_node = NULL, *x509data = NULL;
	xmlDoc *doc = NULL;
	size_t signed_start = signed_xml ? signed_xml->len : 0;
	int rc;

	/* before any libxml2 global is touched */
	pthread_once(&lib_once, lib_init);
	if (!(sig = calloc(1, sizeof(*sig))))
		return VEIL_ENOMEM;
	sig->checked = true;
	sig->time = now ? (int64_t)now : (int64_t)time(NULL);
	xs_err[0] = '\0';
	old_generic = xmlGenericError;
	old_generic_ctx = xmlGenericErrorContext;
	old_structured = xmlStructuredError;
	old_structured_ctx = xmlStructuredErrorContext;
	xmlSetGenericErrorFunc(NULL, xml_quiet);
	xmlSetStructuredErrorFunc(NULL, xml_quiet_structured);
	if (!xml) {
		rc = sig_fail(sig, VEIL_EINVAL, "RIM: NULL argument");
		goto out;
	}
	if (n > VEIL_NVGPU_RIM_MAX) {
		rc = sig_fail(sig, VEIL_ERANGE, "RIM: %zu bytes exceeds %u", n, VEIL_NVGPU_RIM_MAX);
		goto out;
	}
	if (lib_rc < 0) {
		rc = sig_fail(sig, lib_rc, "RIM: libxml2/xmlsec1 initialisation failed");
		goto out;
	}
	if ((rc = parse_doc(sig, xml, n, &doc)) < 0)
		goto out;
	if ((rc = check_shape(sig, doc, &sig_node, &x509data)) < 0)
		goto out;
	if (!(chain = sk_X509_new_null())) {
		rc = sig_fail(sig, VEIL_ENOMEM, "RIM: out of memory");
		goto out;
	}
	for (xmlNode *c = first_elem(x509data); c; c = next_elem(c)) {
		X509 *x = NULL;

		if (sig->n_certs == VEIL_NVGPU_RIM_CHAIN_MAX) {
			rc = sig_fail(sig, VEIL_ERANGE, "RIM signature: more than %d certificates",
				      VEIL_NVGPU_RIM_CHAIN_MAX);
			goto out;
		}
		if ((rc = read_cert(sig, c, sig->n_certs, &x)) < 0)
			goto out;
		if (!sk_X509_push(chain, x)) {
			X509_free(x);
			rc = sig_fail(sig, VEIL_ENOMEM, "RIM: out of memory");
			goto out;
		}
		describe_cert(x, sig->time, &sig->certs[sig->n_certs++]);
	}
	if (sig->n_certs == 0) {
		rc = sig_fail(sig, VEIL_ENOTSUP, "RIM signature: X509Data holds no certificate");
		goto out;
	}
	/* the signature first: a changed document is the more important news
	 * than an expired certificate */
	if ((rc = check_dsig(sig, sig_node, sk_X509_value(chain, 0), signed_xml)) < 0)
		goto out;
	if ((rc = check_chain(sig, chain, root_der ? root_der : nvgpu_rim_root_der,
			      root_der ? root_der_len : nvgpu_rim_root_der_len)) < 0)
		goto out;
	sig->ok = true;
	sig->rc = 0;
	sig->error[0] = '\0';
	rc = 0;
out:
	if (rc < 0 && signed_xml)
		signed_xml->len = signed_start; /* nothing unverified is handed out */
	sk_X509_pop_free(chain, X509_free);
	xmlFreeDoc(doc);
	xmlSetGenericErrorFunc(old_generic_ctx, old_generic);
	xmlSetStructuredErrorFunc(old_structured_ctx, old_structured);
	if (sig_out)
		memcpy(sig_out, sig, sizeof(*sig));
	free(sig);
	return rc;
}

int veil_nvgpu_rim_load(const char *xml, size_t n, time_t now, const uint8_t *root_der,
			size_t root_der_len, struct veil_nvgpu_rim *out)
{
	struct veil_buf canon = VEIL_BUF_INIT(SIGNED_MAX);
	struct veil_nvgpu_rim *rim = calloc(1, sizeof(*rim));
	int rc;

	if (!out) {
		free(rim);
		return veil_errf(VEIL_EINVAL, "RIM: NULL argument");
	}
	if (!rim) {
		memset(out, 0, sizeof(*out));
		return VEIL_ENOMEM;
	}
	rc = veil_nvgpu_rim_verify(xml, n, now, root_der, root_der_len, &rim->sig, &canon);
	if (rc == 0) {
		struct veil_nvgpu_rim_sig keep = rim->sig;

		/* the scanner reads the signed octets, never `xml` */
		rc = veil_nvgpu_rim_parse((const char *)canon.data, canon.len, rim);
		rim->sig = keep;
		if (rc < 0) {
			rim->n = 0;
		} else {
			rim->signed_ = true;
		}
	}
	if (rc < 0)
		rim->n = 0;
	memcpy(out, rim, sizeof(*rim));
	free(rim);
	veil_buf_free(&canon);
	return rc;
}
