/* veil attester: NVIDIA GPU evidence through NVML, loaded at run time with
 * dlopen so that libveil has no build dependency on CUDA.
 *
 * Structures and entry points as in nvml.h (CUDA 12.x):
 * nvmlSystemGetConfComputeState, nvmlDeviceGetConfComputeGpuAttestationReport
 * (SPDM GET_MEASUREMENTS request||response for a 32-byte nonce) and
 * nvmlDeviceGetConfComputeGpuCertificate (the attestation chain, PEM). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen_internal.h"
#include "nvml_internal.h"
#include "veil/attester.h"

#define NVML_DEFAULT_LIB "libnvidia-ml.so.1"

typedef int nvmlReturn_t; /* NVML_SUCCESS = 0 */
typedef void *nvmlDevice_t;

struct nvml_cc_state {
	unsigned int environment;
	unsigned int cc_feature; /* NVML_CC_SYSTEM_FEATURE_ENABLED = 1 */
	unsigned int dev_tools_mode;
};

struct nvml_att_report {
	unsigned int is_cec_present;
	unsigned int report_size;
	unsigned int cec_report_size;
	unsigned char nonce[32];
	unsigned char report[0x2000];
	unsigned char cec_report[0x1000];
};

struct nvml_cert {
	unsigned int cert_chain_size;
	unsigned int att_cert_chain_size;
	unsigned char cert_chain[0x1000];
	unsigned char att_cert_chain[0x1400];
};

struct nvml {
	void *h;
	nvmlReturn_t (*init)(void);
	nvmlReturn_t (*shutdown)(void);
	nvmlReturn_t (*count)(unsigned int *);
	nvmlReturn_t (*by_index)(unsigned int, nvmlDevice_t *);
	nvmlReturn_t (*cc_state)(struct nvml_cc_state *);
	nvmlReturn_t (*report)(nvmlDevice_t, struct nvml_att_report *);
	nvmlReturn_t (*cert)(nvmlDevice_t, struct nvml_cert *);
	bool inited;
};

static void nvml_close(struct nvml *n)
{
	if (n->inited && n->shutdown)
		n->shutdown();
	if (n->h)
		dlclose(n->h);
	memset(n, 0, sizeof(*n));
}

static void *sym(void *h, const char *name)
{
	return dlsym(h, name);
}

static int nvml_open(const char *lib, struct nvml *n, unsigned *count)
{
	struct nvml_cc_state st;
	const char *name = lib ? lib : NVML_DEFAULT_LIB;
	unsigned c = 0;
	int r;

	memset(n, 0, sizeof(*n));
	n->h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (!n->h) {
		const char *e = dlerror();

		return veil_errf(VEIL_ENOTSUP, "no GPU TEE: %s could not be loaded (%s)", name,
				 e ? e : "not found");
	}
	*(void **)&n->init = sym(n->h, "nvmlInit_v2");
	*(void **)&n->shutdown = sym(n->h, "nvmlShutdown");
	*(void **)&n->count = sym(n->h, "nvmlDeviceGetCount_v2");
	*(void **)&n->by_index = sym(n->h, "nvmlDeviceGetHandleByIndex_v2");
	*(void **)&n->cc_state = sym(n->h, "nvmlSystemGetConfComputeState");
	*(void **)&n->report = sym(n->h, "nvmlDeviceGetConfComputeGpuAttestationReport");
	*(void **)&n->cert = sym(n->h, "nvmlDeviceGetConfComputeGpuCertificate");
	if (!n->init || !n->shutdown || !n->count || !n->by_index || !n->cc_state || !n->report ||
	    !n->cert) {
		nvml_close(n);
		return veil_errf(VEIL_ENOTSUP, "no GPU TEE: %s lacks the confidential-computing API "
				 "(driver too old?)", name);
	}
	if ((r = n->init()) != 0) {
		nvml_close(n);
		return veil_errf(VEIL_ENOTSUP, "no GPU TEE: nvmlInit failed (NVML error %d)", r);
	}
	n->inited = true;
	if ((r = n->count(&c)) != 0 || c == 0) {
		nvml_close(n);
		return veil_errf(VEIL_ENOTSUP, "no GPU TEE: no NVIDIA GPU (NVML error %d)", r);
	}
	memset(&st, 0, sizeof(st));
	if ((r = n->cc_state(&st)) != 0 || st.cc_feature != 1) {
		nvml_close(n);
		return veil_errf(VEIL_ENOTSUP, "no GPU TEE: %u GPU(s) but confidential-computing "
				 "mode is off (NVML %d, ccFeature %u)", c, r, st.cc_feature);
	}
	*count = c;
	return 0;
}

int veil_attester_nvml_probe(const char *lib, unsigned *gpu_count)
{
	struct nvml n;
	unsigned c = 0;
	int rc = nvml_open(lib, &n, &c);

	if (rc < 0)
		return rc;
	nvml_close(&n);
	if (gpu_count)
		*gpu_count = c;
	return 0;
}

int nvml_gpu_evidence(const char *lib, const uint8_t nonce[32], struct nvml_gpu **out,
		      size_t *count)
{
	struct nvml n;
	struct nvml_att_report *rep = NULL;
	struct nvml_cert *cert = NULL;
	struct nvml_gpu *g = NULL;
	unsigned c = 0;
	int rc, r;

	if ((rc = nvml_open(lib, &n, &c)) < 0)
		return rc;
	if (c > VEIL_ATTESTER_MAX_GPUS)
		c = VEIL_ATTESTER_MAX_GPUS;
	rep = calloc(1, sizeof(*rep));
	cert = calloc(1, sizeof(*cert));
	g = calloc(c, sizeof(*g));
	if (!rep || !cert || !g) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < c; i++) {
		nvmlDevice_t dev;
		size_t pl;

		memset(rep, 0, sizeof(*rep));
		memset(cert, 0, sizeof(*cert));
		memcpy(rep->nonce, nonce, 32);
		if ((r = n.by_index(i, &dev)) != 0 || (r = n.report(dev, rep)) != 0 ||
		    (r = n.cert(dev, cert)) != 0) {
			rc = veil_errf(VEIL_EIO, "GPU %u: NVML attestation call failed (error %d)", i, r);
			goto out;
		}
		if (rep->report_size == 0 || rep->report_size > sizeof(rep->report) ||
		    cert->att_cert_chain_size > sizeof(cert->att_cert_chain)) {
			rc = veil_errf(VEIL_EFORMAT, "GPU %u: NVML returned sizes out of range", i);
			goto out;
		}
		pl = cert->att_cert_chain_size;
		while (pl > 0 && cert->att_cert_chain[pl - 1] == 0)
			pl--;
		g[i].evidence = malloc(rep->report_size);
		g[i].pem = malloc(pl + 1);
		if (!g[i].evidence || !g[i].pem) {
			rc = VEIL_ENOMEM;
			goto out;
		}
		memcpy(g[i].evidence, rep->report, rep->report_size);
		g[i].evidence_len = rep->report_size;
		memcpy(g[i].pem, cert->att_cert_chain, pl);
		g[i].pem[pl] = 0;
	}
	*out = g;
	*count = c;
	g = NULL;
	rc = 0;
out:
	if (g)
		nvml_gpus_free(g, c);
	free(rep);
	free(cert);
	nvml_close(&n);
	return rc;
}

void nvml_gpus_free(struct nvml_gpu *g, size_t n)
{
	for (size_t i = 0; g && i < n; i++) {
		free(g[i].evidence);
		free(g[i].pem);
	}
	free(g);
}
