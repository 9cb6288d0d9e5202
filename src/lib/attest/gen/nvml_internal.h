/* veil attester: NVML evidence collection, private to src/lib/attest/gen/. */
#ifndef VEIL_NVML_INTERNAL_H
#define VEIL_NVML_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

struct nvml_gpu {
	uint8_t *evidence; /* SPDM request||response */
	size_t evidence_len;
	char *pem;         /* attestation certificate chain, NUL-terminated */
};

/* Evidence of every CC-mode GPU for `nonce`; VEIL_ENOTSUP ("no GPU TEE:
 * ...") when there is none.  Free with nvml_gpus_free(). */
int nvml_gpu_evidence(const char *lib, const uint8_t nonce[32], struct nvml_gpu **out,
		      size_t *count);
void nvml_gpus_free(struct nvml_gpu *g, size_t n);

#endif
