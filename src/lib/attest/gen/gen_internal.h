/* veil attester: private to src/lib/attest/gen/. */
#ifndef VEIL_GEN_INTERNAL_H
#define VEIL_GEN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "veil/base.h"

#define VEIL_SIM_MAX_GPUS 8  /* VEIL_ATTESTER_MAX_GPUS */

/* The simulated TEE: Intel-shaped DCAP PKI and an NVIDIA-shaped device
 * chain, all generated locally. */
struct sim_tee {
	EVP_PKEY *root_key, *pca_key, *pck_key, *tcb_key, *att_key;
	X509 *root, *pca, *pck, *tcb;
	EVP_PKEY *nv_root_key, *nv_leaf_key;
	X509 *nv_root, *nv_leaf;
	uint8_t *root_der, *nv_root_der;
	size_t root_der_len, nv_root_der_len;
	char *pck_chain_pem;  /* leaf, platform CA, root, as OpenSSL writes them */
	size_t pck_chain_len;
	char *nv_chain_pem;   /* device leaf, device root */
	/* GPUs 1.. (0 is nv_leaf): each its own device leaf under nv_root,
	 * made by sim_tee_gpus, not kept in the state file */
	EVP_PKEY *gpu_key[VEIL_SIM_MAX_GPUS];
	char *gpu_chain_pem[VEIL_SIM_MAX_GPUS];
	unsigned n_gpus;
	char *collateral;     /* dcap-qvl JSON */
	int64_t collateral_at; /* when it was made (valid 30 days from then) */
	uint8_t fwid[48];
};

/* Generates (or loads from state_dir/sim-tee.pem, saving a new one there when
 * absent) the sim chains, then fresh CRLs and collateral valid around now. */
int sim_tee_open(const char *state_dir, struct sim_tee **out);
void sim_tee_free(struct sim_tee *s);
/* Remakes CRLs and collateral when they are older than a week, so a
 * long-running sim node never serves expired collateral. */
int sim_tee_refresh(struct sim_tee *s);

/* A TDX v4 quote over report_data with the given RTMRs (malloc'd). */
int sim_tee_quote(const struct sim_tee *s, const uint8_t report_data[64],
		  const uint8_t rtmr[4][48], uint8_t **out, size_t *out_len);

/* Makes device identities for GPUs 1..n-1 (n at most VEIL_SIM_MAX_GPUS):
 * distinct GPUs have distinct device certificates, which verifiers count. */
int sim_tee_gpus(struct sim_tee *s, unsigned n);
/* GPU `index`'s certificate chain (device leaf, device root), PEM. */
const char *sim_tee_gpu_chain(const struct sim_tee *s, unsigned index);
/* SPDM 1.1 GET_MEASUREMENTS request||response for GPU `index` (< the n
 * of sim_tee_gpus, or 0) with `nonce`, signed by that GPU's device leaf
 * (malloc'd). */
int sim_tee_gpu_evidence(const struct sim_tee *s, unsigned index, const uint8_t nonce[32],
			 uint8_t **out, size_t *out_len);

/* The sim fixed TD measurements. */
void sim_tee_mrtd(uint8_t out[48]);

/* ECDSA over msg with digest md; raw r||s of 2*half bytes. */
int gen_ecdsa_sign_rs(EVP_PKEY *k, const EVP_MD *md, const uint8_t *msg, size_t n,
		      uint8_t *rs, size_t half);

/* configfs-tsm (tsm.c): the provider of <root>/report/veil ("tdx_guest",
 * "sev_guest"), VEIL_ENOTSUP when there is no configfs-tsm; RTMR3 extension. */
int tsm_provider(const char *tsm_root, char provider[32]);
/* veil_attester_tsm_quote, also reading <entry>/auxblob into aux (may be
 * NULL) inside the same generation window. */
int tsm_quote_aux(const char *tsm_root, const uint8_t report_data[64], uint8_t **quote,
		  size_t *quote_len, struct veil_buf *aux, char provider[32], int *attempts);
/* The VCEK (or VLEK) DER inside a SEV-SNP certificate table (GHCB spec
 * §4.1.8.1: {GUID, u32 offset, u32 length} entries, a zero entry last);
 * VEIL_ENOENT when there is none. */
int snp_cert_table_vcek(const uint8_t *t, size_t n, const uint8_t **der, size_t *len);
int tsm_extend_rtmr3(const char *tsm_root, const char *rtmr_path, const uint8_t digest[48]);

#endif
