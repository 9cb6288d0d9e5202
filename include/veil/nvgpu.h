/* veil nvgpu module: NVIDIA confidential-computing GPU evidence.
 *
 * The evidence is what the driver returns for an attestation report
 * (nvmlDeviceGetConfComputeGpuAttestationReport): an SPDM 1.1
 * GET_MEASUREMENTS request (DSP0274 §10.11: version 0x11, code 0xE0,
 * param1 bit 0 = signature requested, param2 0xFF = all blocks, 32-byte
 * nonce, slot id) followed by the MEASUREMENTS response (version, code
 * 0x60, block count, 24-bit record length, the measurement blocks, the
 * responder nonce, 16-bit opaque length, NVIDIA's opaque TLVs, then the
 * ECDSA P-384 signature r||s of 96 bytes).  The signature covers the
 * request and the response up to the signature (SPDM 1.1 L1 transcript).
 * The signature's position is found by walking the structure, never by
 * taking the last bytes: real captures carry trailing bytes.
 *
 * The device certificate chain (PEM, leaf first: GSP FMC leaf, GSP BROM,
 * Provisioner ICA, <chip> Identity, NVIDIA Device Identity CA) must end in
 * the pinned NVIDIA Device Identity CA; the leaf's TCG DICE extension
 * (2.23.133.5.4.1) carries a FWID that must equal the opaque FWID. */
#ifndef VEIL_NVGPU_H
#define VEIL_NVGPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "veil/base.h"

#define VEIL_NVGPU_NONCE_LEN 32
#define VEIL_NVGPU_SIG_LEN 96          /* P-384 r || s, big-endian */
#define VEIL_NVGPU_REQ_LEN 37          /* request: 4 + nonce + slot */
#define VEIL_NVGPU_MAX_BLOCKS 255      /* NumberOfBlocks is one byte */
#define VEIL_NVGPU_VALUE_MAX 64        /* largest DMTF value we keep */
#define VEIL_NVGPU_MAX_EVIDENCE (1u << 20)

/* NVIDIA opaque field ids (nvtrust OpaqueDataType). */
enum veil_nvgpu_opaque_id {
	VEIL_NVGPU_OP_DRIVER_VERSION = 3,
	VEIL_NVGPU_OP_GPU_INFO = 4,
	VEIL_NVGPU_OP_SKU = 5,
	VEIL_NVGPU_OP_VBIOS_VERSION = 6,
	VEIL_NVGPU_OP_NVDEC0_STATUS = 11,
	VEIL_NVGPU_OP_MSRSCNT = 12,
	VEIL_NVGPU_OP_CPRINFO = 13,
	VEIL_NVGPU_OP_BOARD_ID = 14,
	VEIL_NVGPU_OP_CHIP_SKU = 15,
	VEIL_NVGPU_OP_CHIP_SKU_MOD = 16,
	VEIL_NVGPU_OP_PROJECT = 17,
	VEIL_NVGPU_OP_PROJECT_SKU = 18,
	VEIL_NVGPU_OP_PROJECT_SKU_MOD = 19,
	VEIL_NVGPU_OP_FWID = 20,
	VEIL_NVGPU_OP_PROTECTED_PCIE_STATUS = 21,
	VEIL_NVGPU_OP_SWITCH_PDI = 22,
	VEIL_NVGPU_OP_FLOORSWEPT_PORTS = 23,
	VEIL_NVGPU_OP_POSITION_ID = 24,
	VEIL_NVGPU_OP_LOCK_SWITCH_STATUS = 25,
	VEIL_NVGPU_OP_GPU_LINK_CONN = 32,
	VEIL_NVGPU_OP_SYS_ENABLE_STATUS = 33,
	VEIL_NVGPU_OP_OPAQUE_DATA_VERSION = 34,
	VEIL_NVGPU_OP_CHIP_INFO = 35,
	VEIL_NVGPU_OP_FEATURE_FLAG = 36,
};

enum veil_nvgpu_arch {
	VEIL_NVGPU_ARCH_UNKNOWN = 0,
	VEIL_NVGPU_ARCH_HOPPER = 1,
	VEIL_NVGPU_ARCH_BLACKWELL = 2,
};

/* One SPDM measurement block in DMTF form (DSP0274 Table 45/46). */
struct veil_nvgpu_block {
	uint8_t index;      /* 1-based in NVIDIA evidence */
	uint8_t spec;       /* MeasurementSpecification, 1 = DMTF */
	uint8_t value_type; /* DMTFSpecMeasurementValueType (bit 7 = raw) */
	uint16_t value_len;
	uint8_t value[VEIL_NVGPU_VALUE_MAX];
};

/* One opaque TLV: its value is opaque[off, off + len) of the evidence. */
struct veil_nvgpu_tlv {
	uint16_t type;
	uint16_t len;
	size_t off;
};

#define VEIL_NVGPU_MAX_TLVS 64
#define VEIL_NVGPU_OPAQUE_MAX 4096     /* larger opaque data: VEIL_ENOTSUP */

struct veil_nvgpu_evidence {
	/* request */
	uint8_t req_param1, req_param2;
	uint8_t nonce[VEIL_NVGPU_NONCE_LEN];   /* requester nonce */
	uint8_t slot;
	/* response */
	uint8_t spdm_version;
	uint8_t resp_param1, resp_param2;
	size_t n_blocks;
	struct veil_nvgpu_block blocks[VEIL_NVGPU_MAX_BLOCKS];
	uint8_t resp_nonce[VEIL_NVGPU_NONCE_LEN];
	size_t opaque_off, opaque_len;         /* where it was in the evidence */
	uint8_t opaque[VEIL_NVGPU_OPAQUE_MAX]; /* a copy of the opaque data */
	size_t n_tlvs;
	struct veil_nvgpu_tlv tlvs[VEIL_NVGPU_MAX_TLVS];
	/* decoded opaque fields ("" / 0 when absent) */
	char driver_version[64];
	char vbios_version[32];                /* "96.00.9f.00.01" */
	uint8_t fwid[64];
	size_t fwid_len;
	int nvdec0_status;                     /* -1 absent, 0 disabled, 1 enabled */
	uint32_t msr_count[VEIL_NVGPU_MAX_BLOCKS];
	size_t n_msr_count;
	/* signature */
	size_t signed_len;                     /* bytes [0, signed_len) are signed */
	uint8_t sig[VEIL_NVGPU_SIG_LEN];
	size_t trailing;                       /* bytes after the signature */
};

/* Parses request||response.  Never reads outside [p, p+n).  Rejects a
 * request that is not SPDM 1.1 GET_MEASUREMENTS with signature, a response
 * that is not MEASUREMENTS, non-DMTF blocks, block counts or lengths that do
 * not add up, duplicate or malformed opaque TLVs, missing driver/VBIOS
 * version, and evidence shorter than the signature.  Up to 16 trailing zero
 * bytes after the signature are tolerated (and counted in `trailing`);
 * anything else after it is VEIL_EFORMAT.  *ev written on success; the struct is large (~30 KiB). */
int veil_nvgpu_parse(const uint8_t *p, size_t n, struct veil_nvgpu_evidence *ev);

/* The TLV of a type, or NULL. */
const struct veil_nvgpu_tlv *veil_nvgpu_find_tlv(const struct veil_nvgpu_evidence *ev,
						 uint16_t type);

/* Evidence given as hex text is decoded with veil_hex_text_decode(). */

/* The pinned NVIDIA Device Identity CA, DER. */
const uint8_t *veil_nvgpu_pinned_root(size_t *len);

/* ---- RIM (reference integrity manifest, SWID tag XML) ------------------- */

#define VEIL_NVGPU_RIM_MAX_ALT 4
#define VEIL_NVGPU_RIM_MAX (256u << 10)    /* larger RIM documents: VEIL_ERANGE */
/* Bounds on the XML tree of a RIM whose signature is checked (real NVIDIA
 * RIMs: ~20 KB, 85 elements, 6 namespace declarations, at most 12
 * attributes on an element).  Canonicalisation (libxml2 C14N, run by
 * xmlsec1 for the Reference digest before any signature is checked) costs
 * about namespaces-in-scope^2 x elements and attributes^2 per element, so
 * a document beyond these is refused (VEIL_ENOTSUP) before it runs. */
#define VEIL_NVGPU_RIM_MAX_ELEMENTS 4096   /* elements in the document */
#define VEIL_NVGPU_RIM_MAX_NS_DECLS 32     /* xmlns declarations in the document */
#define VEIL_NVGPU_RIM_MAX_ATTRS 64        /* attributes (not xmlns) on one element */
#define VEIL_NVGPU_RIM_MAX_NS_URI 256      /* bytes of one namespace URI */
#define VEIL_NVGPU_RIM_CHAIN_MAX 8         /* X509Certificate elements in KeyInfo */

struct veil_nvgpu_rim_entry {
	uint16_t index;          /* RIM index: 0-based (= SPDM index - 1) */
	bool active;
	uint8_t n_alt;
	uint8_t len;             /* hash length, 48 for SHA-384 */
	uint8_t hash[VEIL_NVGPU_RIM_MAX_ALT][64];
};

/* One certificate of a RIM signer's chain as KeyInfo carries it. */
struct veil_nvgpu_rim_cert {
	char subject[256];             /* RFC 2253 one-line form (truncated) */
	int64_t not_before, not_after; /* unix seconds */
	bool valid_at_time;            /* inside its validity at the verification time */
};

/* Outcome of a RIM's XML-DSig check (veil_nvgpu_rim_verify). */
struct veil_nvgpu_rim_sig {
	bool checked;                  /* a check ran (false: the RIM was only scanned) */
	bool ok;                       /* signature, document digest and chain verified */
	int rc;                        /* 0, or the VEIL_E* code of the failure */
	int64_t time;                  /* the verification time used, unix seconds */
	char method[64];               /* SignatureMethod, e.g. "ecdsa-sha384" */
	size_t n_certs;
	struct veil_nvgpu_rim_cert certs[VEIL_NVGPU_RIM_CHAIN_MAX]; /* leaf first */
	char error[320];               /* why it failed; "" when ok */
};

struct veil_nvgpu_rim {
	char product[32];              /* Meta product, "GH100" */
	char version[64];              /* Meta colloquialVersion */
	size_t n;
	struct veil_nvgpu_rim_entry e[VEIL_NVGPU_MAX_BLOCKS];
	bool signed_;                  /* a ds:Signature element is present */
	struct veil_nvgpu_rim_sig sig; /* set by veil_nvgpu_rim_load only */
};

/* Scans a SWID tag for its Meta attributes and every
 * <Resource type="Measurement" index= active= alternatives= HashN=>.
 * A minimal, bounds-checked scanner, not an XML parser: it refuses what it
 * does not understand.  It checks no signature (out->sig.checked = false):
 * golden values scanned this way are only as good as the channel the caller
 * got the RIM from, and verdicts report checks.rim_signature = null.  Use
 * veil_nvgpu_rim_load() for a RIM whose signature must be verified. */
int veil_nvgpu_rim_parse(const char *xml, size_t n, struct veil_nvgpu_rim *out);

/* The pinned NVIDIA CoRIM signing Root CA (RIM signature trust anchor), DER. */
const uint8_t *veil_nvgpu_rim_root(size_t *len);

/* Verifies the enveloped XML-DSig signature of a RIM (`n` <=
 * VEIL_NVGPU_RIM_MAX bytes of UTF-8 XML) at unix time `now` (0 = the
 * current time; sig->time says which was used):
 *  - XML read by libxml2 without network access, DTD loading or entity
 *    expansion; a DOCTYPE is refused (VEIL_ENOTSUP);
 *  - the tree is within VEIL_NVGPU_RIM_MAX_ELEMENTS elements,
 *    VEIL_NVGPU_RIM_MAX_NS_DECLS namespace declarations of at most
 *    VEIL_NVGPU_RIM_MAX_NS_URI bytes each and VEIL_NVGPU_RIM_MAX_ATTRS
 *    attributes per element (VEIL_ENOTSUP otherwise, the error names the
 *    limit), so canonicalisation stays cheap;
 *  - the root element is SoftwareIdentity and holds exactly one
 *    ds:Signature, as a direct child: SignedInfo (C14N 1.0 / 1.1 /
 *    exclusive, no comments; ECDSA or RSA with SHA-256/384/512), exactly one
 *    Reference with URI="" whose transforms are the enveloped-signature
 *    transform optionally followed by inclusive C14N 1.0 or 1.1 (no
 *    comments; exclusive C14N repeats every namespace on every element of
 *    the whole document, a large output for a small input), digest
 *    SHA-256/384/512;
 *    no ds:Object; KeyInfo holds one X509Data of 1..8 X509Certificate, leaf
 *    first.  Any other shape is VEIL_ENOTSUP: a signature over part of the
 *    document cannot vouch for golden values outside it;
 *  - the document digest and SignatureValue verify (xmlsec1) with the
 *    leaf's key (VEIL_EBADMSG otherwise);
 *  - the chain verifies at `now` to `root_der` (DER; NULL = the pinned
 *    NVIDIA CoRIM root) with veil_x509_chain_verify(): VEIL_EPERM for a
 *    certificate outside its validity ("... has expired") or another root,
 *    VEIL_EBADMSG for a bad certificate signature.  Revocation (OCSP/CRL) is
 *    not checked.
 * `sig` (may be NULL) is always written: outcome, time, method, the KeyInfo
 * chain's subjects and validity (when it could be read) and the reason
 * (printable ASCII only: bytes of the document outside it are written as
 * '?', so the text is safe to print and valid UTF-8 however it is cut).
 * On success, when `signed_xml` is not NULL, the exact bytes the signed
 * digest covers (the canonical form of the document without the Signature
 * and without comments) are appended to it (capped by signed_xml->max;
 * the caller owns and frees the buffer).  Thread-safe; libxml2 and xmlsec1
 * are initialised once per process. */
int veil_nvgpu_rim_verify(const char *xml, size_t n, time_t now, const uint8_t *root_der,
			  size_t root_der_len, struct veil_nvgpu_rim_sig *sig,
			  struct veil_buf *signed_xml);

/* veil_nvgpu_rim_verify(), then veil_nvgpu_rim_parse() of the signed bytes
 * (never of `xml` itself), so every golden value comes from what the
 * signature covers.  *out is always written: out->sig holds the signature
 * outcome; on any failure out holds no golden values (n = 0).  Returns the
 * signature's failure code, or the scanner's for a signed RIM it refuses. */
int veil_nvgpu_rim_load(const char *xml, size_t n, time_t now, const uint8_t *root_der,
			size_t root_der_len, struct veil_nvgpu_rim *out);

/* ---- verification -------------------------------------------------------- */

struct veil_nvgpu_opts {
	int64_t now;                       /* seconds since the epoch; 0 = now */
	const uint8_t *expected_nonce;     /* 32 bytes, or NULL: not checked */
	/* Optional golden values.  A RIM whose signature was checked
	 * (rim->sig.checked, veil_nvgpu_rim_load) must have verified: otherwise
	 * verification fails with rim->sig.rc (VEIL_EBADMSG for a bad
	 * signature, VEIL_EPERM for an expired or foreign chain, ...) before
	 * any comparison. */
	const struct veil_nvgpu_rim *rim_driver;
	const struct veil_nvgpu_rim *rim_vbios;
	/* Trust anchor (DER) replacing the pinned NVIDIA Device Identity CA,
	 * for simulated device chains; NULL = the pinned root. */
	const uint8_t *root_der;
	size_t root_der_len;
};

/* Per-block outcome of a RIM comparison. */
enum veil_nvgpu_meas {
	VEIL_NVGPU_MEAS_NOT_CHECKED = 0,   /* no active golden value */
	VEIL_NVGPU_MEAS_MATCH = 1,
	VEIL_NVGPU_MEAS_MISMATCH = 2,
	VEIL_NVGPU_MEAS_MISSING = 3,       /* golden value, no runtime block */
};

struct veil_nvgpu_result {
	struct veil_nvgpu_evidence ev;
	bool parsed;
	enum veil_nvgpu_arch arch;
	size_t n_certs;
	char leaf_cn[96];
	char ueid[64];                     /* leaf serial, decimal */
	bool signature_ok;
	bool chain_ok;
	bool fwid_ok;
	bool nonce_checked, nonce_ok;
	bool rim_checked, rim_ok;
	/* RIM signatures: checked when every RIM given was checked or one failed;
	 * ok when every RIM given verified.  rim_sig: copies, [0] driver, [1] VBIOS. */
	bool rim_sig_checked, rim_sig_ok;
	struct veil_nvgpu_rim_sig rim_sig[2];
	size_t rim_mismatches;
	uint8_t meas[VEIL_NVGPU_MAX_BLOCKS + 1]; /* by SPDM index, enum veil_nvgpu_meas */
	char error[256];
};

/* Verifies evidence (raw bytes) against a PEM chain, leaf first.  Order:
 * parse, chain to the pinned root at opts->now, leaf FWID == opaque FWID,
 * signature, nonce, RIM signatures, RIM.  Returns 0 or VEIL_EFORMAT/ENOTSUP (input),
 * VEIL_EBADMSG (signature/chain/FWID), VEIL_EPERM (nonce, RIM, validity).
 * `res` (large: allocate it) is always filled; opts may be NULL. */
int veil_nvgpu_verify(const uint8_t *ev, size_t ev_len, const char *pem, size_t pem_len,
		      const struct veil_nvgpu_opts *opts, struct veil_nvgpu_result *res);

/* Verifies an NRAS-shaped evidence list: either a JSON array of
 * {"evidence": b64, "certificate": b64 PEM, "nonce"?, "arch"?, ...} or an
 * object {"nonce", "arch", "evidence_list": [...]} (NEAR AI nvidia_payload),
 * or an object whose "nvidia_payload" is that object as a JSON string.
 * Evidence may be base64 of the raw bytes or of hex text.  Every per-entry
 * and top-level nonce must equal the evidence nonce.  *results (calloc'ed,
 * caller free()s) and *count are written whenever the list could be read;
 * returns 0 when every GPU verifies, else the first failure's code. */
int veil_nvgpu_verify_list(const char *json, size_t len, const struct veil_nvgpu_opts *opts,
			   struct veil_nvgpu_result **results, size_t *count);

/* Verdict JSON (json_decref() it): {"ok","kind":"nvgpu","status",
 * "advisories":[],"error","arch","nonce","driver_version","vbios_version",
 * "fwid","ueid","measurements_count","measurements":[{"index","value","rim"}...],
 * "checks":{"signature","chain","fwid","nonce","rim","rim_signature"?},
 * "rim_signatures"?:[{"rim","ok","time","method","error","chain":[...]}]}
 * (docs/protocol.md, "NVIDIA GPU verdict").  NULL when out of memory. */
struct json_t *veil_nvgpu_verdict_json(const struct veil_nvgpu_result *res, int rc);

/* Parsed claims in the shape confidential-containers/trustee produces
 * ({"arch","ueid","config":{...opaque...},"measurements":{"1":hex,...}}),
 * so results can be compared with theirs.  NULL when out of memory. */
struct json_t *veil_nvgpu_claims_json(const struct veil_nvgpu_result *res);

#endif
