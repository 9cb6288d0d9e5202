/* veil attester: the one interface over the sim, configfs-tsm and NVML
 * generators (include/veil/attester.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "gen_internal.h"
#include "nvml_internal.h"
#include "veil/attester.h"
#include "veil/keyset.h"
#include "veil/report.h"

enum mode { MODE_SIM, MODE_TDX, MODE_SNP };

struct veil_attester {
	enum mode mode;
	struct sim_tee *sim;
	int sim_gpus;
	unsigned sim_delay_ms; /* VEIL_SIM_QUOTE_DELAY_MS, sim only (a test knob) */
	bool no_gpu;
	struct veil_evlog log;
	char tsm_root[1024];
	char rtmr_path[1024];
	char nvml_lib[1024];
	bool has_nvml_lib;
	pthread_mutex_t mu; /* one report (one configfs-tsm exchange) at a time */
};

/* Test knob, sim only: the environment variable VEIL_SIM_QUOTE_DELAY_MS
 * (0..10000, read once when a sim attester opens) makes every sim report
 * wait that long before its quote, as a real TDX quote through the QGS takes
 * tens of milliseconds: tests use it to show that a server is not blocked
 * while a report is made (docs/operations.md).  Real TEEs never read it. */
#define SIM_QUOTE_DELAY_MAX_MS 10000u

static unsigned sim_delay_env(void)
{
	const char *e = getenv("VEIL_SIM_QUOTE_DELAY_MS");
	char *end;
	unsigned long v;

	if (!e || !*e)
		return 0;
	v = strtoul(e, &end, 10);
	if (*end || v > SIM_QUOTE_DELAY_MAX_MS) {
		VEIL_WARN("attest", "VEIL_SIM_QUOTE_DELAY_MS=\"%s\" ignored (0..%u)", e,
			  SIM_QUOTE_DELAY_MAX_MS);
		return 0;
	}
	if (v)
		VEIL_WARN("attest", "VEIL_SIM_QUOTE_DELAY_MS: every sim quote takes %lu ms "
			  "more (a test knob)", v);
	return (unsigned)v;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0)
		;
}

static int open_sim(struct veil_attester *a, const struct veil_attester_opts *o)
{
	int rc;

	_Static_assert(VEIL_SIM_MAX_GPUS == VEIL_ATTESTER_MAX_GPUS, "sim GPUs");
	a->mode = MODE_SIM;
	a->sim_delay_ms = sim_delay_env();
	a->sim_gpus = o->sim_gpus;
	if (a->sim_gpus < 0 || a->sim_gpus > VEIL_ATTESTER_MAX_GPUS)
		return veil_errf(VEIL_EINVAL, "sim_gpus %d out of range 0..%d", a->sim_gpus,
				 VEIL_ATTESTER_MAX_GPUS);
	if ((rc = sim_tee_open(o->state_dir, &a->sim)) < 0)
		return rc;
	return sim_tee_gpus(a->sim, (unsigned)a->sim_gpus);
}

int veil_attester_open(const struct veil_attester_opts *o, struct veil_attester **out)
{
	static const struct veil_attester_opts none;
	struct veil_attester *a;
	const char *tee;
	char prov[32];
	int rc;

	if (!out)
		return VEIL_EINVAL;
	if (!o)
		o = &none;
	tee = o->tee ? o->tee : "auto";
	if (strcmp(tee, "auto") && strcmp(tee, "tdx") && strcmp(tee, "sev-snp") && strcmp(tee, "sim"))
		return veil_errf(VEIL_EINVAL, "unknown TEE \"%s\" (auto, tdx, sev-snp, sim)", tee);
	a = calloc(1, sizeof(*a));
	if (!a)
		return VEIL_ENOMEM;
	veil_evlog_init(&a->log);
	pthread_mutex_init(&a->mu, NULL);
	snprintf(a->tsm_root, sizeof(a->tsm_root), "%s", o->tsm_root ? o->tsm_root : VEIL_ATTESTER_TSM_ROOT);
	snprintf(a->rtmr_path, sizeof(a->rtmr_path), "%s",
		 o->rtmr_path ? o->rtmr_path : VEIL_ATTESTER_RTMR3_PATH);
	if (o->nvml_lib) {
		snprintf(a->nvml_lib, sizeof(a->nvml_lib), "%s", o->nvml_lib);
		a->has_nvml_lib = true;
	}
	a->no_gpu = o->no_gpu;
	if (!strcmp(tee, "sim")) {
		rc = open_sim(a, o);
		goto out;
	}
	rc = tsm_provider(a->tsm_root, prov);
	if (rc == 0) {
		if (!strcmp(prov, "tdx_guest"))
			a->mode = MODE_TDX;
		else if (!strcmp(prov, "sev_guest"))
			a->mode = MODE_SNP;
		else
			rc = veil_errf(VEIL_ENOTSUP, "no TEE: configfs-tsm provider \"%s\" is neither "
				       "tdx_guest nor sev_guest", prov);
	}
	if (rc == 0 && ((!strcmp(tee, "tdx") && a->mode != MODE_TDX) ||
			(!strcmp(tee, "sev-snp") && a->mode != MODE_SNP)))
		rc = veil_errf(VEIL_ENOTSUP, "no %s TEE: configfs-tsm provider is \"%s\"", tee, prov);
	if (rc == VEIL_ENOTSUP && !strcmp(tee, "auto") && o->allow_sim_fallback) {
		VEIL_WARN("attest", "no real TEE found; using the SIMULATED TEE");
		rc = open_sim(a, o);
	}
out:
	if (rc < 0) {
		veil_attester_free(a);
		return rc;
	}
	VEIL_INFO("attest", "attester: %s", veil_attester_kind(a));
	*out = a;
	return 0;
}

const char *veil_attester_kind(const struct veil_attester *a)
{
	if (!a)
		return "";
	return a->mode == MODE_SIM ? "sim" : a->mode == MODE_TDX ? "tdx" : "sev-snp";
}

const struct veil_evlog *veil_attester_log(const struct veil_attester *a)
{
	return a ? &a->log : NULL;
}

int veil_attester_extend(struct veil_attester *a, const char *name, const uint8_t *payload,
			 size_t len)
{
	uint8_t d[VEIL_EVLOG_DIGEST_LEN];
	int rc;

	if (!a || !name || (!payload && len))
		return VEIL_EINVAL;
	if (a->mode == MODE_TDX) {
		if ((rc = veil_evlog_runtime_digest(name, payload, len, d)) < 0 ||
		    (rc = tsm_extend_rtmr3(a->tsm_root, a->rtmr_path, d)) < 0)
			return rc;
	}
	/* sim: RTMR3 is the replay of this log; SEV-SNP: logged only */
	return veil_evlog_extend_runtime(&a->log, name, payload, len, d);
}

int veil_attester_sim_roots(const struct veil_attester *a, const uint8_t **tdx_root,
			    size_t *tdx_len, const uint8_t **gpu_root, size_t *gpu_len)
{
	if (!a)
		return VEIL_EINVAL;
	if (a->mode != MODE_SIM)
		return veil_errf(VEIL_ENOTSUP, "not a simulated TEE");
	if (tdx_root) {
		*tdx_root = a->sim->root_der;
		*tdx_len = a->sim->root_der_len;
	}
	if (gpu_root) {
		*gpu_root = a->sim->nv_root_der;
		*gpu_len = a->sim->nv_root_der_len;
	}
	return 0;
}

int veil_attester_report(struct veil_attester *a, const uint8_t *keyset_enc, size_t keyset_len,
			 const uint8_t nonce[32], const struct veil_report_extra *extra,
			 json_t **out)
{
	struct veil_report_gpu gpus[VEIL_ATTESTER_MAX_GPUS];
	uint8_t *ev[VEIL_ATTESTER_MAX_GPUS] = {0};
	struct nvml_gpu *ng = NULL;
	size_t n_gpus = 0, n_ng = 0;
	uint8_t rd[64], gpu_nonce[32], rtmr[4][48], *quote = NULL;
	size_t quote_len = 0;
	struct veil_report_parts p;
	struct veil_keyset ks;
	struct veil_buf aux = VEIL_BUF_INIT(1u << 20);
	int rc;

	if (!a || !keyset_enc || !nonce || !out)
		return VEIL_EINVAL;
	if ((rc = veil_keyset_parse(keyset_enc, keyset_len, &ks)) < 0 ||
	    (rc = veil_keyset_report_data(keyset_enc, keyset_len, nonce, rd)) < 0)
		return rc;
	pthread_mutex_lock(&a->mu);
	SHA256(rd, 64, gpu_nonce);
	memset(&p, 0, sizeof(p));
	if (a->mode == MODE_SIM) {
		if ((rc = sim_tee_refresh(a->sim)) < 0)
			goto out;
		veil_evlog_replay(&a->log, rtmr);
		if (a->sim_delay_ms) /* as slow as a real quote (QGS), for tests */
			sleep_ms(a->sim_delay_ms);
		if ((rc = sim_tee_quote(a->sim, rd, (const uint8_t(*)[48])rtmr, &quote, &quote_len)) < 0)
			goto out;
		for (int i = 0; i < a->sim_gpus; i++) {
			size_t len;

			if ((rc = sim_tee_gpu_evidence(a->sim, (unsigned)i, gpu_nonce, &ev[i], &len)) < 0)
				goto out;
			gpus[i] = (struct veil_report_gpu){ev[i], len,
							   sim_tee_gpu_chain(a->sim, (unsigned)i), "HOPPER"};
			n_gpus++;
		}
		p.collateral = a->sim->collateral;
	} else {
		if ((rc = tsm_quote_aux(a->tsm_root, rd, &quote, &quote_len, &aux, NULL, NULL)) < 0)
			goto out;
		if (a->mode == MODE_SNP && aux.len &&
		    snp_cert_table_vcek(aux.data, aux.len, &p.vcek, &p.vcek_len) < 0)
			VEIL_WARN("attest", "%s", veil_err_detail());
		if (!a->no_gpu) {
			rc = nvml_gpu_evidence(a->has_nvml_lib ? a->nvml_lib : NULL, gpu_nonce, &ng, &n_ng);
			if (rc == VEIL_ENOTSUP) {
				VEIL_DEBUG("attest", "%s", veil_err_detail());
				n_ng = 0;
			} else if (rc < 0) {
				goto out;
			}
			for (size_t i = 0; i < n_ng; i++)
				gpus[n_gpus++] = (struct veil_report_gpu){ng[i].evidence, ng[i].evidence_len,
									ng[i].pem, NULL};
		}
	}
	p.tee = veil_attester_kind(a);
	p.sim = a->mode == MODE_SIM;
	p.quote = quote;
	p.quote_len = quote_len;
	p.gpus = gpus;
	p.n_gpus = n_gpus;
	p.keyset = keyset_enc;
	p.keyset_len = keyset_len;
	p.nonce = nonce;
	p.report_data = rd;
	p.log = &a->log;
	if (extra) {
		p.model = extra->model;
		p.model_sha256 = extra->model_sha256;
	}
	rc = veil_report_build(&p, out);
out:
	for (int i = 0; i < VEIL_ATTESTER_MAX_GPUS; i++)
		free(ev[i]);
	nvml_gpus_free(ng, n_ng);
	veil_buf_free(&aux);
	free(quote);
	pthread_mutex_unlock(&a->mu);
	return rc;
}

void veil_attester_free(struct veil_attester *a)
{
	if (!a)
		return;
	sim_tee_free(a->sim);
	veil_evlog_free(&a->log);
	pthread_mutex_destroy(&a->mu);
	free(a);
}
