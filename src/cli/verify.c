/* veil verify: offline verification of attestation evidence.
 *
 *   veil verify FILE [--kind auto|tdx|sgx|snp|nvgpu|report|nearai]
 *                    [--collateral F] [--pccs URL [--pccs-cache DIR]]
 *                    [--at RFC3339|UNIX] [--nonce HEX] [--policy F]
 *                    [--allow-sim] [--max-vmpl N] [--vcek F] [--certs F]
 *                    [--rim F]... [--rim-time RFC3339|UNIX]
 *
 * Each flag applies to some kinds only (usage()); one given for another
 * kind is a usage error, so that nothing the caller asked for is dropped.
 *
 * FILE may be binary or hex text.  Prints one JSON object as its last line
 * (ok, kind, status, advisories, error and the measured fields).  Exit 0
 * verified, 1 not verified, 2 usage or I/O error. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "veil/base.h"
#include "veil/nvgpu.h"
#include "veil/policy.h"
#include "veil/report.h"
#include "veil/snp.h"
#include "veil/pccs.h"
#include "veil/tdx.h"
#include "veil/x509.h"

#define INPUT_MAX (16u << 20)

struct vopts {
	const char *file, *kind, *collateral, *at, *nonce_hex, *policy, *vcek, *certs, *rim_at;
	const char *pccs, *pccs_cache, *vmpl;
	const char *rim[2];
	int n_rim;
	uint8_t max_vmpl;
	bool allow_sim;
	int64_t now, rim_now;
	uint8_t nonce[32];
	bool has_nonce;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: veil verify FILE [--kind auto|tdx|sgx|snp|nvgpu|report|nearai] [options]\n"
		"The flags of each kind (any kind also takes --at T and --nonce HEX):\n"
		"  tdx, sgx  --collateral F | --pccs URL [--pccs-cache DIR]\n"
		"  snp       --vcek F [--certs F] [--max-vmpl N]\n"
		"  nvgpu     [--certs F] [--rim F [--rim F]] [--rim-time T]\n"
		"  report    [--collateral F | --pccs URL [--pccs-cache DIR]] [--policy F]\n"
		"            [--allow-sim] [--max-vmpl N]\n"
		"  nearai    [--collateral F]\n"
		"\n"
		"Verifies attestation evidence offline and prints a JSON verdict as the last line\n"
		"(ok, kind, status, advisories, error, measured fields).  FILE may be binary or\n"
		"hex.\n"
		"A flag that does not apply to FILE's kind is a usage error (exit 2): it would\n"
		"otherwise be ignored, and a --policy ignored is a policy not enforced.\n"
		"  --kind K        what FILE is; auto (default) looks at the content:\n"
		"                  tdx/sgx  Intel DCAP quote (needs --collateral, dcap-qvl JSON)\n"
		"                  snp      AMD SEV-SNP report (needs --vcek; --certs = ASK/ASVK)\n"
		"                  nvgpu    NVIDIA SPDM evidence (needs --certs PEM chain) or an\n"
		"                           NRAS-style JSON evidence list\n"
		"                  report   veil attestation report (veil-report/1)\n"
		"                  nearai   NEAR AI attestation report\n"
		"  --collateral F  tdx, sgx, report, nearai: DCAP collateral (dcap-qvl JSON);\n"
		"                  for a report it replaces the collateral the report carries\n"
		"  --pccs URL      tdx, sgx, report: fetch DCAP collateral for the quote (a TDX\n"
		"                  report: the report's quote) from a PCCS or Intel PCS base URL\n"
		"                  (instead of --collateral); cached in --pccs-cache DIR (default\n"
		"                  ~/.cache/veil/pccs) until its nextUpdate passes\n"
		"  --at T          any kind: verification time (RFC 3339 UTC or unix seconds;\n"
		"                  default now)\n"
		"  --nonce HEX     any kind: expected 32-byte nonce (report: required for\n"
		"                  freshness)\n"
		"  --policy F      report: JSON node_binary/node_config/model (SHA-384 hex),\n"
		"                  tcb_status[] (strict), or a veil-policy/1 file\n"
		"                  (docs/policy.md)\n"
		"  --allow-sim     report: accept SIMULATED TEE evidence (tests and demos only)\n"
		"  --max-vmpl N    snp, report: SEV-SNP reports requested at VMPL 0..N (default\n"
		"                  0: the guest kernel; an SVSM guest's OS runs at VMPL 1+)\n"
		"  --vcek F        snp: the chip's VCEK or VLEK certificate (DER or PEM)\n"
		"  --certs F       snp: ASK/ASVK (PEM); nvgpu: the device certificate chain (PEM)\n"
		"  --rim F         nvgpu: NVIDIA RIM golden values (first: driver, second:\n"
		"                  VBIOS); its XML signature must verify to the pinned NVIDIA\n"
		"                  CoRIM root, else the verdict fails (checks.rim_signature,\n"
		"                  rim_signatures)\n"
		"  --rim-time T    nvgpu: time at which RIM signer certificates must be valid\n"
		"                  (RFC 3339 UTC or unix seconds; default: --at, else now).\n"
		"                  NVIDIA's RIM signing certificates expire; an older RIM\n"
		"                  verifies at a time they were valid, e.g.\n"
		"                  --rim-time 2024-01-01T00:00:00Z (revocation is not checked)\n"
		"Exit status: 0 verified, 1 not verified, 2 usage or I/O error.\n");
}

/* The kinds each flag applies to (a flag given for another kind is a
 * usage error, never ignored). */
enum {
	K_TDX = 1 << 0, K_SGX = 1 << 1, K_SNP = 1 << 2, K_NVGPU = 1 << 3,
	K_REPORT = 1 << 4, K_NEARAI = 1 << 5,
};

static unsigned kind_bit(const char *k)
{
	static const char *const names[] = {"tdx", "sgx", "snp", "nvgpu", "report", "nearai"};

	for (unsigned i = 0; i < VEIL_ARRAY_LEN(names); i++)
		if (!strcmp(k, names[i]))
			return 1u << i;
	return 0;
}

/* Refuses (exit 2) the first flag given that does not apply to kind. */
static int check_flags(const struct vopts *o, const char *kind)
{
	const struct {
		const char *flag;
		bool given;
		unsigned kinds;
		const char *where;
	} f[] = {
		{"--collateral", o->collateral, K_TDX | K_SGX | K_REPORT | K_NEARAI,
		 "tdx, sgx, report and nearai"},
		{"--pccs", o->pccs, K_TDX | K_SGX | K_REPORT, "tdx, sgx and report"},
		{"--pccs-cache", o->pccs_cache, K_TDX | K_SGX | K_REPORT, "tdx, sgx and report"},
		{"--policy", o->policy, K_REPORT, "report"},
		{"--allow-sim", o->allow_sim, K_REPORT, "report"},
		{"--max-vmpl", o->vmpl, K_SNP | K_REPORT, "snp and report"},
		{"--vcek", o->vcek, K_SNP, "snp"},
		{"--certs", o->certs, K_SNP | K_NVGPU, "snp and nvgpu"},
		{"--rim", o->n_rim > 0, K_NVGPU, "nvgpu"},
		{"--rim-time", o->rim_at, K_NVGPU, "nvgpu"},
	};
	unsigned k = kind_bit(kind);

	for (size_t i = 0; i < VEIL_ARRAY_LEN(f); i++) {
		if (f[i].given && !(f[i].kinds & k)) {
			fprintf(stderr, "veil verify: %s does not apply to %s evidence (%s is for "
				"%s; see veil verify --help)\n", f[i].flag, kind, f[i].flag, f[i].where);
			return -1;
		}
	}
	if (o->pccs_cache && !o->pccs) {
		fprintf(stderr, "veil verify: --pccs-cache needs --pccs\n");
		return -1;
	}
	if (o->rim_at && !o->n_rim) {
		fprintf(stderr, "veil verify: --rim-time needs --rim (it dates the RIMs' "
			"signatures)\n");
		return -1;
	}
	if (o->pccs && o->collateral) {
		/* one source of collateral: the other would be dropped */
		fprintf(stderr, "veil verify: --collateral and --pccs are exclusive\n");
		return -1;
	}
	return 0;
}

static int read_file(const char *path, struct veil_buf *b)
{
	int rc = veil_buf_read_file(b, path);

	if (rc < 0)
		veil_cli_error(path, rc);
	return rc;
}

static int parse_time(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (*s >= '0' && *s <= '9' && !strchr(s, '-')) {
		errno = 0;
		v = strtoll(s, &end, 10);
		if (errno || *end)
			return VEIL_EFORMAT;
		*out = v;
		return 0;
	}
	return veil_x509_iso8601_parse(s, strlen(s), out);
}

/* Hex text (optional 0x, whitespace) -> bytes into an empty out; false if
 * not hex. */
static bool hex_text(const uint8_t *p, size_t n, struct veil_buf *out)
{
	return veil_hex_text_decode((const char *)p, n, out) == 0 && out->len > 0;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static const char *detect(const uint8_t *raw, size_t rn, const uint8_t *b, size_t n)
{
	size_t i = 0;

	while (i < rn && isspace(raw[i]))
		i++;
	if (i < rn && (raw[i] == '{' || raw[i] == '[')) {
		if (veil_report_sniff(raw, rn))
			return "report";
		if (veil_nearai_sniff(raw, rn))
			return "nearai";
		return "nvgpu";
	}
	if (n >= 2 && b[0] == 0x11 && b[1] == 0xe0)
		return "nvgpu";
	if (n >= VEIL_TDX_HEADER_LEN && le16(b + 2) == 2 &&
	    ((le16(b) == 3 && le32(b + 4) == VEIL_TDX_TEE_SGX) ||
	     ((le16(b) == 4 || le16(b) == 5) &&
	      (le32(b + 4) == VEIL_TDX_TEE_TDX || le32(b + 4) == VEIL_TDX_TEE_SGX))))
		return le32(b + 4) == VEIL_TDX_TEE_TDX ? "tdx" : "sgx";
	if (n >= VEIL_SNP_REPORT_LEN && le32(b) >= 2 && le32(b) <= 5)
		return "snp";
	return NULL;
}

/* A veil-gateway-report/1 document (it holds veil-report/1 objects, so
 * the report sniffing takes it for one). */
static bool gateway_doc(const uint8_t *raw, size_t rn)
{
	json_t *d = json_loadb((const char *)raw, rn, 0, NULL);
	const char *v = json_string_value(json_object_get(d, "version"));
	bool yes = v && !strcmp(v, "veil-gateway-report/1");

	json_decref(d);
	return yes;
}

/* Prints the verdict as the last line; returns the exit status. */
static int emit(json_t *v, int usage_err)
{
	char *s;
	bool ok;

	if (!v) {
		fprintf(stderr, "veil verify: out of memory\n");
		return 2;
	}
	if (!json_object_get(v, "advisories"))
		json_object_set_new(v, "advisories", json_array());
	if (!json_object_get(v, "status"))
		json_object_set_new(v, "status", json_null());
	ok = json_is_true(json_object_get(v, "ok"));
	s = json_dumps(v, JSON_COMPACT);
	if (s)
		printf("%s\n", s);
	free(s);
	json_decref(v);
	return usage_err ? 2 : ok ? 0 : 1;
}

static json_t *failure(const char *kind, const char *fmt, const char *arg)
{
	char msg[512];

	snprintf(msg, sizeof(msg), fmt, arg);
	return json_pack("{s:b, s:s, s:n, s:[], s:s}", "ok", 0, "kind", kind, "status",
			 "advisories", "error", msg);
}

/* mkdir -p, best effort: a missing cache only costs a fetch. */
static void mkdir_p(const char *path)
{
	char tmp[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp))
		return;
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			mkdir(tmp, 0700);
			*p = '/';
		}
	}
	mkdir(tmp, 0700);
}

/* Collateral for the quote's platform (FMSPC and PCK CA from its PCK leaf)
 * from a PCCS / Intel PCS, through the on-disk cache.  Only structure is
 * checked here; veil_tdx_verify() checks every signature and time. */
static int fetch_collateral(const struct vopts *o, const uint8_t *q, size_t n,
			    struct veil_tdx_collateral **out)
{
	struct veil_buf b = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	struct veil_pccs_opts po = {0};
	char cache[4096];
	enum veil_pccs_tee tee;
	const char *ca, *home = getenv("HOME");
	uint8_t fmspc[6];
	int rc;

	po.base_url = o->pccs;
	po.now = o->now;
	if (o->pccs_cache) {
		po.cache_dir = o->pccs_cache;
	} else if (home && *home) {
		snprintf(cache, sizeof(cache), "%s/.cache/veil/pccs", home);
		po.cache_dir = cache;
	}
	if (po.cache_dir)
		mkdir_p(po.cache_dir);
	if ((rc = veil_pccs_quote_target(q, n, fmspc, &ca, &tee)) < 0)
		goto out;
	if ((rc = veil_pccs_fetch(&po, fmspc, ca, tee, &b)) < 0)
		goto out;
	rc = veil_tdx_collateral_parse(b.data, b.len, out);
out:
	veil_buf_free(&b);
	return rc;
}

static int do_quote(const struct vopts *o, const char *kind, const uint8_t *q, size_t n)
{
	struct veil_tdx_collateral *c = NULL;
	struct veil_tdx_verdict *v;
	json_t *j = NULL;
	int rc;

	if (!o->collateral && o->pccs) {
		if ((rc = fetch_collateral(o, q, n, &c)) < 0)
			return emit(failure(kind, "collateral: %s", veil_err_detail()), 1);
	} else if (!o->collateral) {
		return emit(failure(kind, "no collateral: pass --collateral F (dcap-qvl JSON layout)%s",
				    " or --pccs URL"), 1);
	} else if ((rc = veil_tdx_collateral_load(o->collateral, &c)) < 0) {
		veil_cli_error(o->collateral, rc);
		return emit(failure(kind, "collateral: %s", veil_err_detail()), 1);
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		veil_tdx_collateral_free(c);
		return 2;
	}
	rc = veil_tdx_verify(q, n, c, o->now, NULL, 0, v);
	if (veil_tdx_verdict_json(v, &j) == 0 && rc == 0 && o->has_nonce &&
	    memcmp(v->report_data + 32, o->nonce, 32) != 0) {
		json_object_set_new(j, "ok", json_false());
		json_object_set_new(j, "error", json_string("report_data[32:64] differs from --nonce"));
	}
	free(v);
	veil_tdx_collateral_free(c);
	return emit(j, 0);
}

static int do_snp(const struct vopts *o, const uint8_t *r, size_t n)
{
	struct veil_buf cert = VEIL_BUF_INIT(1u << 20), ica = VEIL_BUF_INIT(1u << 20);
	struct veil_snp_result *res;
	struct veil_snp_opts so;
	json_t *j;
	int rc;

	if (!o->vcek)
		return emit(failure("snp", "no VCEK/VLEK: pass --vcek F%s", ""), 1);
	if (read_file(o->vcek, &cert) < 0 || (o->certs && read_file(o->certs, &ica) < 0)) {
		veil_buf_free(&cert);
		veil_buf_free(&ica);
		return 2;
	}
	res = calloc(1, sizeof(*res));
	if (!res)
		return 2;
	memset(&so, 0, sizeof(so));
	so.now = o->now;
	so.max_vmpl = o->max_vmpl;
	if (ica.len) {
		so.intermediate = ica.data;
		so.intermediate_len = ica.len;
	}
	rc = veil_snp_verify(r, n, cert.data, cert.len, &so, res);
	j = veil_snp_verdict_json(res, rc);
	if (j && rc == 0 && o->has_nonce && memcmp(res->report.report_data + 32, o->nonce, 32)) {
		json_object_set_new(j, "ok", json_false());
		json_object_set_new(j, "error", json_string("report_data[32:64] differs from --nonce"));
	}
	free(res);
	veil_buf_free(&cert);
	veil_buf_free(&ica);
	return emit(j, 0);
}

static int do_nvgpu(const struct vopts *o, const uint8_t *raw, size_t rn, const uint8_t *b,
		    size_t n)
{
	struct veil_nvgpu_rim *rims = NULL;
	struct veil_nvgpu_opts no;
	struct veil_nvgpu_result *res = NULL;
	struct veil_buf pem = VEIL_BUF_INIT(1u << 20);
	size_t i = 0, count = 0;
	json_t *j = NULL;
	int rc, status = 2;

	memset(&no, 0, sizeof(no));
	no.now = o->now;
	no.expected_nonce = o->has_nonce ? o->nonce : NULL;
	if (o->n_rim) {
		rims = calloc(2, sizeof(*rims));
		if (!rims)
			goto out;
		for (int k = 0; k < o->n_rim; k++) {
			struct veil_buf x = VEIL_BUF_INIT(4u << 20);

			if (read_file(o->rim[k], &x) < 0)
				goto out;
			/* signature first; golden values only from the signed bytes */
			rc = veil_nvgpu_rim_load((const char *)x.data, x.len, (time_t)o->rim_now, NULL,
						 0, &rims[k]);
			veil_buf_free(&x);
			if (rc < 0 && rims[k].sig.checked && !rims[k].sig.ok) {
				/* the verdict says why (checks.rim_signature false) */
				fprintf(stderr, "veil verify: %s: %s\n", o->rim[k], rims[k].sig.error);
				if (strstr(rims[k].sig.error, "expired"))
					fprintf(stderr, "veil verify: %s: NVIDIA RIM signing certificates "
						"expire; --rim-time T checks the RIM at an earlier time\n",
						o->rim[k]);
			} else if (rc < 0) {
				veil_cli_error(o->rim[k], rc);
				goto out;
			}
		}
		no.rim_driver = &rims[0];
		no.rim_vbios = o->n_rim > 1 ? &rims[1] : NULL;
	}
	while (i < rn && isspace(raw[i]))
		i++;
	if (i < rn && (raw[i] == '{' || raw[i] == '[')) {
		json_t *arr;

		if (o->certs) {
			/* each entry carries its own chain: --certs would be ignored */
			fprintf(stderr, "veil verify: --certs does not apply to an evidence list "
				"(each entry carries its certificate_chain)\n");
			goto out;
		}
		arr = json_array();
		rc = veil_nvgpu_verify_list((const char *)raw, rn, &no, &res, &count);
		for (size_t k = 0; arr && res && k < count; k++)
			json_array_append_new(arr, veil_nvgpu_verdict_json(&res[k], res[k].error[0] ? VEIL_EBADMSG : 0));
		j = json_pack("{s:b, s:s, s:o*, s:[], s:o}", "ok", rc == 0, "kind", "nvgpu", "status",
			      rc == 0 ? json_string("verified") : NULL, "advisories", "gpus", arr);
		if (j)
			json_object_set_new(j, "error", rc == 0 ? json_null()
							       : json_string(veil_err_detail()));
		status = emit(j, 0);
		goto out;
	}
	if (!o->certs) {
		status = emit(failure("nvgpu", "no certificate chain: pass --certs F (PEM)%s", ""), 1);
		goto out;
	}
	if (read_file(o->certs, &pem) < 0)
		goto out;
	res = calloc(1, sizeof(*res));
	if (!res)
		goto out;
	rc = veil_nvgpu_verify(b, n, (const char *)pem.data, pem.len, &no, res);
	status = emit(veil_nvgpu_verdict_json(res, rc), 0);
out:
	free(res);
	free(rims);
	veil_buf_free(&pem);
	return status;
}

/* --pccs with a report: the collateral of the report's own TDX quote,
 * fetched as for a bare quote; it replaces what the report carries.
 * VEIL_EINVAL (said on stderr): no TDX quote to fetch for. */
static int report_collateral(const struct vopts *o, const uint8_t *raw, size_t rn,
			     struct veil_tdx_collateral **out)
{
	struct veil_buf q = VEIL_BUF_INIT(VEIL_REPORT_MAX);
	json_t *doc = json_loadb((const char *)raw, rn, 0, NULL);
	const char *tee = json_string_value(json_object_get(doc, "tee"));
	const char *hex = json_string_value(json_object_get(doc, "quote"));
	int rc = VEIL_EINVAL;

	if (json_is_true(json_object_get(doc, "sim")))
		tee = "sim";
	if (!tee || strcmp(tee, "tdx")) {
		fprintf(stderr, "veil verify: --pccs: this report's TEE is %s, not tdx: no PCCS "
			"has collateral for it\n", tee ? tee : "not named");
		goto out;
	}
	if (!hex || veil_hex_text_decode(hex, strlen(hex), &q) < 0 || q.len == 0) {
		fprintf(stderr, "veil verify: --pccs: the report has no hex \"quote\"\n");
		goto out;
	}
	rc = fetch_collateral(o, q.data, q.len, out);
	if (rc == VEIL_EINVAL)
		rc = VEIL_EFORMAT; /* a quote the PCCS lookup cannot read: a failed verdict */
out:
	json_decref(doc);
	veil_buf_free(&q);
	return rc;
}

/* Whether a policy file is a veil-policy/1 document (it has "version");
 * the flat report policy has none. */
static bool is_versioned_policy(const struct veil_buf *b)
{
	json_t *d = json_loadb((const char *)b->data, b->len, 0, NULL);
	bool yes = json_is_object(d) && json_object_get(d, "version");

	json_decref(d);
	return yes;
}

/* A report judged by a veil-policy/1 file (the role is the report's own:
 * a gateway's measurements make it a gateway's; the model its own name). */
static int do_report_policy1(const struct vopts *o, const struct veil_buf *pb,
			     const struct veil_tdx_collateral *c, const uint8_t *raw, size_t rn)
{
	struct veil_policy_verify_opts po = {0};
	struct veil_report_verdict v;
	struct veil_policy *p = NULL;
	enum veil_policy_role role = VEIL_POLICY_NODE;
	json_t *doc, *j;
	int rc;

	if (o->vmpl) {
		fprintf(stderr, "veil verify: --max-vmpl does not apply to a veil-policy/1 file: "
			"set its \"snp_max_vmpl\"\n");
		return 2;
	}
	if ((rc = veil_policy_load(pb->data, pb->len, &p)) < 0) {
		veil_cli_error(o->policy, rc);
		return 2;
	}
	veil_policy_set_allow_sim(p, o->allow_sim);
	doc = json_loadb((const char *)raw, rn, 0, NULL);
	if (json_object_get(json_object_get(doc, "measurements"), "gateway_binary"))
		role = VEIL_POLICY_GATEWAY;
	json_decref(doc);
	po.nonce = o->has_nonce ? o->nonce : NULL;
	po.skip_nonce = !o->has_nonce;
	po.now = o->now;
	po.collateral = c;
	veil_policy_verify_report_ex(p, role, NULL, raw, rn, &po, &v);
	j = v.json;
	v.json = NULL;
	if (j && !o->has_nonce) {
		json_t *w = json_object_get(j, "warnings");

		if (!w) {
			w = json_array();
			json_object_set_new(j, "warnings", w);
		}
		json_array_append_new(w, json_string("freshness not checked: no --nonce given"));
	}
	if (j)
		json_object_set_new(j, "policy", json_string(VEIL_POLICY_VERSION));
	veil_report_verdict_free(&v);
	veil_policy_free(p);
	return emit(j, 0);
}

/* Flags that apply to some reports only, by their TEE: --max-vmpl to a
 * SEV-SNP one, --collateral to a TDX or sim one.  -1 (said) when one is
 * given for a report it would be ignored for. */
static int report_tee_refuses(const struct vopts *o, const uint8_t *raw, size_t rn)
{
	json_t *doc;
	const char *tee;
	int rc = 0;

	if (!o->vmpl && !o->collateral)
		return 0;
	doc = json_loadb((const char *)raw, rn, 0, NULL);
	tee = json_string_value(json_object_get(doc, "tee"));
	if (tee && o->vmpl && strcmp(tee, "sev-snp")) {
		fprintf(stderr, "veil verify: --max-vmpl does not apply to this report: its TEE "
			"is %.16s, not sev-snp\n", tee);
		rc = -1;
	} else if (tee && o->collateral && !strcmp(tee, "sev-snp")) {
		fprintf(stderr, "veil verify: --collateral does not apply to this report: SEV-SNP "
			"evidence has no DCAP collateral\n");
		rc = -1;
	}
	json_decref(doc);
	return rc;
}

static int do_report(const struct vopts *o, bool nearai, const uint8_t *raw, size_t rn)
{
	struct veil_report_opts ro;
	struct veil_report_verdict v;
	struct veil_report_policy *pol = NULL;
	struct veil_tdx_collateral *c = NULL;
	json_t *j;
	int rc;

	if (!nearai && report_tee_refuses(o, raw, rn) < 0)
		return 2;
	memset(&ro, 0, sizeof(ro));
	ro.now = o->now;
	ro.allow_sim = o->allow_sim;
	ro.snp_max_vmpl = o->max_vmpl;
	ro.nonce = o->has_nonce ? o->nonce : NULL;
	ro.skip_nonce = !o->has_nonce;
	if (o->collateral && (rc = veil_tdx_collateral_load(o->collateral, &c)) < 0) {
		veil_cli_error(o->collateral, rc);
		return 2;
	}
	if (o->pccs && (rc = report_collateral(o, raw, rn, &c)) < 0)
		return rc == VEIL_EINVAL ? 2 : emit(failure("report", "collateral: %s",
							   veil_err_detail()), 1);
	ro.collateral = c;
	if (o->policy) {
		struct veil_buf b = VEIL_BUF_INIT(1u << 20);

		if (read_file(o->policy, &b) < 0) {
			veil_tdx_collateral_free(c);
			return 2;
		}
		if (is_versioned_policy(&b)) {
			int st = 2;

			if (nearai)
				fprintf(stderr, "veil verify: %s: a veil-policy/1 file judges veil "
					"reports, not NEAR AI's\n", o->policy);
			else
				st = do_report_policy1(o, &b, c, raw, rn);
			veil_buf_free(&b);
			veil_tdx_collateral_free(c);
			return st;
		}
		rc = veil_report_policy_load(b.data, b.len, &pol);
		veil_buf_free(&b);
		if (rc < 0) {
			veil_cli_error(o->policy, rc);
			veil_tdx_collateral_free(c);
			return 2;
		}
		ro.policy = pol;
	}
	if (nearai)
		veil_nearai_verify(raw, rn, &ro, &v);
	else
		veil_report_verify(raw, rn, &ro, &v);
	j = v.json;
	v.json = NULL;
	if (j && !nearai && !o->has_nonce) {
		json_t *w = json_object_get(j, "warnings");

		if (!w) {
			w = json_array();
			json_object_set_new(j, "warnings", w);
		}
		json_array_append_new(w, json_string("freshness not checked: no --nonce given"));
	}
	veil_report_verdict_free(&v);
	veil_report_policy_free(pol);
	veil_tdx_collateral_free(c);
	return emit(j, 0);
}

int veil_cli_verify(int argc, char **argv)
{
	struct vopts o;
	struct veil_buf raw = VEIL_BUF_INIT(INPUT_MAX), bin = VEIL_BUF_INIT(INPUT_MAX);
	const uint8_t *b;
	size_t n, got;
	const char *kind;
	int status = 2;

	memset(&o, 0, sizeof(o));
	o.kind = "auto";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--allow-sim")) {
			o.allow_sim = true;
			continue;
		}
		if (a[0] != '-' || !a[1]) {
			if (o.file) {
				fprintf(stderr, "veil verify: more than one FILE\n");
				return 2;
			}
			o.file = a;
			continue;
		}
		if (!strcmp(a, "--kind"))
			slot = &o.kind;
		else if (!strcmp(a, "--collateral"))
			slot = &o.collateral;
		else if (!strcmp(a, "--at"))
			slot = &o.at;
		else if (!strcmp(a, "--pccs"))
			slot = &o.pccs;
		else if (!strcmp(a, "--pccs-cache"))
			slot = &o.pccs_cache;
		else if (!strcmp(a, "--nonce"))
			slot = &o.nonce_hex;
		else if (!strcmp(a, "--policy"))
			slot = &o.policy;
		else if (!strcmp(a, "--vcek"))
			slot = &o.vcek;
		else if (!strcmp(a, "--certs"))
			slot = &o.certs;
		else if (!strcmp(a, "--rim-time"))
			slot = &o.rim_at;
		else if (!strcmp(a, "--max-vmpl"))
			slot = &o.vmpl;
		else if (!strcmp(a, "--rim")) {
			if (o.n_rim == 2) {
				fprintf(stderr, "veil verify: at most two --rim\n");
				return 2;
			}
			slot = &o.rim[o.n_rim++];
		} else {
			fprintf(stderr, "veil verify: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "veil verify: %s needs a value\n", a);
			return 2;
		}
		*slot = argv[++i];
	}
	if (!o.file) {
		usage(stderr);
		return 2;
	}
	if (strcmp(o.kind, "auto") && strcmp(o.kind, "tdx") && strcmp(o.kind, "sgx") &&
	    strcmp(o.kind, "snp") && strcmp(o.kind, "nvgpu") && strcmp(o.kind, "report") &&
	    strcmp(o.kind, "nearai")) {
		fprintf(stderr, "veil verify: unknown --kind %s\n", o.kind);
		return 2;
	}
	o.now = (int64_t)time(NULL);
	if (o.at && parse_time(o.at, &o.now) < 0) {
		fprintf(stderr, "veil verify: --at %s is neither RFC 3339 UTC nor unix seconds\n", o.at);
		return 2;
	}
	o.rim_now = o.now;
	if (o.rim_at && (parse_time(o.rim_at, &o.rim_now) < 0 || o.rim_now <= 0)) {
		fprintf(stderr, "veil verify: --rim-time %s is neither RFC 3339 UTC nor unix seconds\n",
			o.rim_at);
		return 2;
	}
	if (o.vmpl) {
		if (strlen(o.vmpl) != 1 || o.vmpl[0] < '0' || o.vmpl[0] > '3') {
			fprintf(stderr, "veil verify: --max-vmpl must be 0, 1, 2 or 3\n");
			return 2;
		}
		o.max_vmpl = (uint8_t)(o.vmpl[0] - '0');
	}
	if (o.nonce_hex) {
		if (strlen(o.nonce_hex) != 64 || veil_hex_decode(o.nonce_hex, 64, o.nonce, 32, &got) < 0) {
			fprintf(stderr, "veil verify: --nonce must be 64 hex characters\n");
			return 2;
		}
		o.has_nonce = true;
	}
	if (read_file(o.file, &raw) < 0)
		goto out;
	if (hex_text(raw.data, raw.len, &bin)) {
		b = bin.data;
		n = bin.len;
	} else {
		b = raw.data;
		n = raw.len;
	}
	kind = strcmp(o.kind, "auto") ? o.kind : detect(raw.data, raw.len, b, n);
	if (!kind) {
		fprintf(stderr, "veil verify: %s: cannot tell what this is; pass --kind\n", o.file);
		status = emit(failure("unknown", "unrecognised evidence format%s", ""), 1);
		goto out;
	}
	if (check_flags(&o, kind) < 0)
		goto out;
	if (!strcmp(kind, "report") && gateway_doc(raw.data, raw.len)) {
		/* one document, several reports for one nonce: each verifies on
		 * its own (a node's with its role's policy) */
		fprintf(stderr, "veil verify: %s is a gateway's veil-gateway-report/1 (its own "
			"report and its nodes'): verify each veil-report/1 in it (jq .gateway, "
			"jq '.nodes[0].report') with --nonce, or check a live gateway with "
			"'veil policy check POLICY --from URL'\n", o.file);
		goto out;
	}
	if (!strcmp(kind, "tdx") || !strcmp(kind, "sgx"))
		status = do_quote(&o, kind, b, n);
	else if (!strcmp(kind, "snp"))
		status = do_snp(&o, b, n);
	else if (!strcmp(kind, "nvgpu"))
		status = do_nvgpu(&o, raw.data, raw.len, b, n);
	else
		status = do_report(&o, !strcmp(kind, "nearai"), raw.data, raw.len);
out:
	veil_buf_free(&raw);
	veil_buf_free(&bin);
	return status;
}
