/* veil snp module: AMD SEV-SNP attestation reports.
 *
 * A report (AMD SEV-SNP ABI spec 56860, "ATTESTATION_REPORT Structure",
 * 1184 bytes, versions 2..5) is signed with ECDSA P-384 / SHA-384 over bytes
 * [0, 0x2A0) by the chip's VCEK, or by a VLEK that AMD provisioned for a
 * cloud provider.  The VCEK is signed by the product line's ASK, the VLEK by
 * its ASVK; both by the product's self-signed ARK, all with RSASSA-PSS
 * SHA-384 (salt 48).  The ASK and ARK of Milan, Genoa and Turin are pinned
 * in libveil; no ASVK is (AMD publishes none in our data), so a VLEK chain
 * verifies only when the caller supplies the ASVK certificate, and even then
 * it must be signed by a pinned ARK.
 *
 * The TCB the signing key was derived for (VCEK/VLEK extensions
 * 1.3.6.1.4.1.3704.1.3.x) must equal the report's REPORTED_TCB, and a VCEK's
 * hwID (…3704.1.4) must equal CHIP_ID. */
#ifndef VEIL_SNP_H
#define VEIL_SNP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VEIL_SNP_REPORT_LEN 1184
#define VEIL_SNP_SIGNED_LEN 0x2A0

/* Policy bits (ABI spec, GUEST_POLICY). */
#define VEIL_SNP_POLICY_SMT (1ull << 16)
#define VEIL_SNP_POLICY_RESERVED1 (1ull << 17) /* must be 1 */
#define VEIL_SNP_POLICY_MIGRATE_MA (1ull << 18)
#define VEIL_SNP_POLICY_DEBUG (1ull << 19)
#define VEIL_SNP_POLICY_SINGLE_SOCKET (1ull << 20)

enum veil_snp_product {
	VEIL_SNP_PRODUCT_UNKNOWN = 0,
	VEIL_SNP_PRODUCT_MILAN = 1,
	VEIL_SNP_PRODUCT_GENOA = 2,
	VEIL_SNP_PRODUCT_TURIN = 3,
};

enum veil_snp_signer {
	VEIL_SNP_SIGNER_VCEK = 0,
	VEIL_SNP_SIGNER_VLEK = 1,
	VEIL_SNP_SIGNER_NONE = 7,
};

/* A TCB_VERSION decoded.  Milan/Genoa: byte 0 boot loader, 1 TEE, 6 SNP,
 * 7 microcode.  Turin: 0 FMC, 1 boot loader, 2 TEE, 3 SNP, 7 microcode. */
struct veil_snp_tcb {
	uint64_t raw;
	uint8_t fmc; /* Turin only */
	uint8_t bootloader;
	uint8_t tee;
	uint8_t snp;
	uint8_t microcode;
};

struct veil_snp_report {
	uint32_t version;
	uint32_t guest_svn;
	uint64_t policy;
	uint8_t family_id[16];
	uint8_t image_id[16];
	uint32_t vmpl;
	uint32_t signature_algo; /* 1 = ECDSA P-384 with SHA-384 */
	uint64_t current_tcb;
	uint64_t platform_info;
	uint32_t signer_info;    /* raw word at 0x48 */
	bool author_key_en;      /* signer_info bit 0 */
	bool mask_chip_key;      /* bit 1 */
	uint8_t signing_key;     /* bits 4:2, enum veil_snp_signer */
	uint8_t report_data[64];
	uint8_t measurement[48];
	uint8_t host_data[32];
	uint8_t id_key_digest[48];
	uint8_t author_key_digest[48];
	uint8_t report_id[32];
	uint8_t report_id_ma[32];
	uint64_t reported_tcb;
	uint8_t cpuid_fam_id;    /* v3+; 0 in v2 */
	uint8_t cpuid_mod_id;
	uint8_t cpuid_step;
	uint8_t chip_id[64];
	uint64_t committed_tcb;
	uint8_t current_build, current_minor, current_major;
	uint8_t committed_build, committed_minor, committed_major;
	uint64_t launch_tcb;
	uint8_t sig_r[72];       /* little-endian, as in the report */
	uint8_t sig_s[72];
};

/* Parses exactly VEIL_SNP_REPORT_LEN bytes (other lengths: VEIL_EFORMAT).
 * Versions 2..5 are accepted (3..5 only add fields in reserved space);
 * others are VEIL_ENOTSUP.  Checks no signature.  *out written on success. */
int veil_snp_report_parse(const uint8_t *p, size_t n, struct veil_snp_report *out);

/* Product line from a v3+ report's CPUID fields (family 19h models 0-Fh
 * Milan, 10h-1Fh Genoa; family 1Ah models 0-1Fh Turin); UNKNOWN for v2. */
enum veil_snp_product veil_snp_report_product(const struct veil_snp_report *r);

/* Decodes a TCB_VERSION for a product (UNKNOWN decodes as Milan/Genoa). */
void veil_snp_tcb_decode(uint64_t raw, enum veil_snp_product prod, struct veil_snp_tcb *out);

const char *veil_snp_product_name(enum veil_snp_product p); /* "Milan", ... */

/* The pinned ARK (or ASK) of a product, DER; NULL for UNKNOWN. */
const uint8_t *veil_snp_pinned_ark(enum veil_snp_product p, size_t *len);
const uint8_t *veil_snp_pinned_ask(enum veil_snp_product p, size_t *len);

struct veil_snp_opts {
	/* Verification time, seconds since the epoch; 0 = now. */
	int64_t now;
	/* Accept a guest launched with the DEBUG policy bit (its memory is
	 * readable by the host).  Default false: VEIL_EPERM. */
	bool allow_debug;
	/* When non-NULL, REPORT_DATA must equal these 64 bytes (VEIL_EPERM). */
	const uint8_t *expected_report_data;
	/* Optional intermediate certificate (DER or PEM): the ASVK for a VLEK,
	 * or an ASK to use instead of the pinned one.  It is trusted only if
	 * a pinned ARK signs it. */
	const uint8_t *intermediate;
	size_t intermediate_len;
	/* Minimum acceptable REPORTED_TCB components; zero = no minimum. */
	struct veil_snp_tcb min_tcb;
	/* The least privileged VMPL (0..3) whose reports are accepted.  A
	 * report's VMPL is the level of the code that asked for it, and any
	 * level may ask with report_data of its choosing; default 0: only the
	 * guest's most privileged code (the kernel, without an SVSM). */
	uint8_t max_vmpl;
};

/* VEIL_EPERM (with a detail) when a report was requested at a VMPL less
 * privileged (numerically greater) than max_vmpl; veil_snp_verify checks it
 * with the guest policy. */
int veil_snp_vmpl_check(const struct veil_snp_report *r, unsigned max_vmpl);

/* Everything the verifier learned.  Filled as far as verification got, so a
 * caller can show a signature that verified before the chain failed. */
struct veil_snp_result {
	struct veil_snp_report report;
	bool parsed;
	enum veil_snp_product product;
	enum veil_snp_signer signer;
	struct veil_snp_tcb reported_tcb;   /* decoded for `product` */
	struct veil_snp_tcb cert_tcb;       /* from the VCEK/VLEK extensions */
	char cert_product[32];              /* VCEK ext 1.3.6.1.4.1.3704.1.2 */
	bool signature_ok;                  /* report signature by the cert */
	bool chain_ok;                      /* cert <- ASK/ASVK <- pinned ARK */
	bool chain_checked;                 /* false: no root for this chain */
	bool tcb_ok;                        /* cert TCB == REPORTED_TCB */
	bool chip_id_ok;                    /* VCEK hwID == CHIP_ID (or VLEK) */
	bool policy_ok;
	bool report_data_ok;                /* true when not asked */
	char error[256];                    /* why it failed, "" on success */
};

/* Verifies a report with its signing certificate `cert` (DER or PEM VCEK or
 * VLEK).  Order: parse, signature algorithm, report signature, TCB and
 * chip id against the certificate, chain to the pinned ARK at opts->now,
 * policy, report data.  Returns 0 when everything holds; otherwise
 * VEIL_EFORMAT/ENOTSUP (input), VEIL_EBADMSG (a signature or chain),
 * VEIL_EPERM (TCB, policy, debug, report data, validity period).  `res` is
 * always filled (res->error says why); opts may be NULL. */
int veil_snp_verify(const uint8_t *report, size_t report_len, const uint8_t *cert,
		    size_t cert_len, const struct veil_snp_opts *opts,
		    struct veil_snp_result *res);

/* The verdict as JSON (jansson json_t, caller json_decref()s):
 * {"ok","kind":"snp","status","advisories":[],"error","product","signer",
 *  "version","guest_svn","policy":{"raw","debug","smt","migrate_ma",
 *  "single_socket","abi_major","abi_minor"},"vmpl","measurement",
 *  "report_data","host_data","id_key_digest","author_key_digest",
 *  "family_id","image_id","report_id","chip_id","platform_info",
 *  "reported_tcb":{...},"current_tcb","committed_tcb","launch_tcb",
 *  "checks":{...}}.  `rc` is veil_snp_verify()'s return value.  NULL when
 * out of memory. */
struct json_t *veil_snp_verdict_json(const struct veil_snp_result *res, int rc);

#endif
