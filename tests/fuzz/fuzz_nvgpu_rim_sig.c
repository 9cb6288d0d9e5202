/* libFuzzer harness for NVIDIA RIM signature verification
 * (veil_nvgpu_rim_verify): libxml2 parsing with DOCTYPE refused, the pinned
 * Signature shape, KeyInfo certificates, xmlsec1's XML-DSig check, the chain
 * check, then rim.c's scanner over the signed bytes (veil_nvgpu_rim_load's
 * path).  The trust anchor is a throwaway test root (below, public
 * certificate only; its key was discarded) that signed the seed
 * corpus/fuzz_nvgpu_rim_sig/signed_seed, so mutations in the unsigned parts
 * of a document (comments, whitespace in tags, quoting) still reach the
 * scanner.  Invariants: ok <=> rc == 0, strings NUL-terminated, the error
 * printable ASCII without trailing whitespace (it quotes the document), at
 * most VEIL_NVGPU_RIM_CHAIN_MAX certificates, and signed bytes only on
 * success, never holding a comment or the Signature.  Seeds beyond the
 * signed one hit the tree bounds (budget_*), an exclusive-C14N Reference
 * (exc_c14n_reference) and control / non-ASCII bytes in a quoted Algorithm
 * (algorithm_bytes).  The input is copied into a
 * buffer of its exact size so that ASan catches any read past it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "veil/base.h"
#include "veil/nvgpu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_TIME ((time_t)1893456000) /* 2030-01-01, inside the seed chain's validity */

/* O=veil fuzz seed (not NVIDIA), CN=veil fuzz RIM root; P-256, 2026..2046 */
static const char TEST_ROOT_PEM[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIB2DCCAX6gAwIBAgIBATAKBggqhkjOPQQDAjBDMSQwIgYDVQQKDBt2ZWlsIGZ1\n"
	"enogc2VlZCAobm90IE5WSURJQSkxGzAZBgNVBAMMEnZlaWwgZnV6eiBSSU0gcm9v\n"
	"dDAeFw0yNjExMjIwNDEwMTRaFw00NjExMTcwNDEwMTRaMEMxJDAiBgNVBAoMG3Zl\n"
	"aWwgZnV6eiBzZWVkIChub3QgTlZJRElBKTEbMBkGA1UEAwwSdmVpbCBmdXp6IFJJ\n"
	"TSByb290MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE5qJPpBuSFvXcsbvdhbBI\n"
	"ms4pB2LBXSYbviRQ35CcdOGxu+yycCSzumWLxcUtWiNOHaOaBZxSc0ozC7psKhqT\n"
	"MKNjMGEwHQYDVR0OBBYEFHWjM70B2zaXXdrblD2/PeBvoOv0MB8GA1UdIwQYMBaA\n"
	"FHWjM70B2zaXXdrblD2/PeBvoOv0MA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/\n"
	"BAQDAgEGMAoGCCqGSM49BAMCA0gAMEUCIESFb2ZDK+tdYcM6xtLZrqK5LMBCnG/3\n"
	"OGWjzR5CnOKAAiEA5gkTEhnPQQN7NX3iFocLRuYUvW/5D24F6g0PuL7Y+jc=\n"
	"-----END CERTIFICATE-----\n";

static uint8_t *root_der;
static size_t root_len;

static void load_root(void)
{
	BIO *b = BIO_new_mem_buf(TEST_ROOT_PEM, (int)sizeof(TEST_ROOT_PEM) - 1);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	unsigned char *d = NULL;
	int n = x ? i2d_X509(x, &d) : -1;

	if (n <= 0)
		abort();
	root_der = d;
	root_len = (size_t)n;
	X509_free(x);
	BIO_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_nvgpu_rim_sig sig;
	struct veil_buf canon = VEIL_BUF_INIT(4u << 20);
	struct veil_nvgpu_rim *rim;
	char *copy;
	int rc;

	if (!root_der)
		load_root();
	copy = malloc(size ? size : 1);
	rim = calloc(1, sizeof(*rim));
	if (!copy || !rim)
		abort();
	if (size)
		memcpy(copy, data, size);
	rc = veil_nvgpu_rim_verify(copy, size, FUZZ_TIME, root_der, root_len, &sig, &canon);
	if (!sig.checked || sig.ok != (rc == 0) || (rc == 0) != (sig.rc == 0) ||
	    sig.time != (int64_t)FUZZ_TIME || sig.n_certs > VEIL_NVGPU_RIM_CHAIN_MAX ||
	    !memchr(sig.error, 0, sizeof(sig.error)) || !memchr(sig.method, 0, sizeof(sig.method)))
		abort();
	for (const char *e = sig.error; *e; e++)
		if ((unsigned char)*e < 0x20 || (unsigned char)*e > 0x7e ||
		    (e[1] == '\0' && *e == ' '))
			abort();
	for (size_t i = 0; i < sig.n_certs; i++)
		if (!memchr(sig.certs[i].subject, 0, sizeof(sig.certs[i].subject)))
			abort();
	if (rc < 0 && canon.len != 0)
		abort();
	if (rc == 0) {
		/* comments and the Signature are outside the signed bytes */
		if (canon.len == 0 || memmem(canon.data, canon.len, "<!--", 4) ||
		    memmem(canon.data, canon.len, "SignatureValue>", 15))
			abort();
		/* what veil_nvgpu_rim_load hands on: the scan of those bytes */
		if (veil_nvgpu_rim_load(copy, size, FUZZ_TIME, root_der, root_len, rim) == 0 &&
		    (!rim->sig.ok || rim->n == 0 || rim->n > VEIL_NVGPU_MAX_BLOCKS))
			abort();
	}
	veil_buf_free(&canon);
	free(rim);
	free(copy);
	return 0;
}
