/* veil policy: veil-policy/1 files, checking verified reports against them,
 * trust-on-first-use pinning, and fetching a server's report
 * (include/veil/policy.h, docs/policy.md). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "veil/base.h"
#include "veil/http.h"
#include "veil/keyset.h"
#include "veil/policy.h"
#include "veil/report.h"
#include "veil/snp.h"
#include "veil/tdx.h"

/* TCB statuses, best first (the DCAP names).  Revoked is never accepted. */
static const char *const TCB_ORDER[] = {
	"UpToDate",
	"SWHardeningNeeded",
	"ConfigurationNeeded",
	"ConfigurationAndSWHardeningNeeded",
	"OutOfDate",
	"OutOfDateConfigurationNeeded",
};
#define TCB_ANY (-1)

enum { TEE_TDX = 1u, TEE_SNP = 2u };

/* SEV-SNP TCB components a policy can set minimums for, in the order of
 * "snp_min_tcb" in the canonical JSON (fmc exists on Turin only). */
static const char *const SNP_PARTS[] = {"bootloader", "tee", "snp", "microcode", "fmc"};
#define SNP_NPARTS 5
enum other_models { OM_DEFAULT, OM_REFUSE, OM_ANY };

static const char *const GPU_ARCHS[] = {"BLACKWELL", "HOPPER"}; /* sorted */

/* A list of acceptable digests of one kind; absent (set false) = not
 * pinned.  Kept sorted and without repeats, so the canonical JSON is. */
struct pinlist {
	bool set;
	size_t n;
	size_t len;      /* 48 (SHA-384) or 32 (SHA-256) */
	uint8_t *v;      /* n * len bytes */
};

/* Pins of the TEE's own measurements, read from the verified hardware
 * evidence (never from the report's JSON): the TDX boot chain (MRTD, RTMR0..2,
 * MR_CONFIG_ID, from the quote) or SEV-SNP's launch MEASUREMENT and HOST_DATA
 * (from the signed report).  A pin of one TEE refuses the other's reports. */
static const struct {
	const char *key;   /* in the policy */
	const char *field; /* in the verdict: top level (TDX) or "quote" (SEV-SNP) */
	size_t len;
	bool snp;
} BOOT[] = {
	{"mrtd", "mrtd", 48, false},
	{"rtmr0", "rtmr0", 48, false},
	{"rtmr1", "rtmr1", 48, false},
	{"rtmr2", "rtmr2", 48, false},
	{"mr_config_id", "mr_config_id", 48, false},
	{"snp_measurement", "measurement", 48, true},
	{"host_data", "host_data", 32, true},
};
#define N_BOOT VEIL_ARRAY_LEN(BOOT)

struct pmodel {
	char name[VEIL_POLICY_MODEL_NAME_MAX + 1];
	struct pinlist node_binary, node_config, model, model_sha256;
	struct pinlist boot[N_BOOT]; /* by BOOT */
};

struct veil_policy {
	bool tee_set;
	unsigned tee;            /* TEE_* bits; with tee_set false: both */
	bool allow_sim_file, allow_sim_caller;
	int min_tcb;             /* index into TCB_ORDER, or TCB_ANY */
	bool snp_min_set;        /* "snp_min_tcb" given: SEV-SNP judged by it */
	uint8_t snp_min[SNP_NPARTS]; /* by SNP_PARTS */
	uint8_t snp_max_vmpl;    /* "snp_max_vmpl", 0..3 (default 0) */
	bool snp_vmpl_set;       /* given in the file (pinning leaves it) */
	bool gpu_required;
	unsigned gpu_min_count;
	bool gpu_arch_set;
	unsigned gpu_arch;       /* bit i = GPU_ARCHS[i] */
	struct pinlist gw_binary, gw_config;
	struct pinlist gw_boot[N_BOOT]; /* by BOOT */
	struct pmodel *models;   /* sorted by name */
	size_t n_models;
	enum other_models other;
};

/* ---- pin lists ------------------------------------------------------------ */

static void pins_init(struct pinlist *l, size_t len)
{
	memset(l, 0, sizeof(*l));
	l->len = len;
}

static void pins_free(struct pinlist *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Inserts one digest in order (a repeat is a no-op). */
static int pins_add(struct pinlist *l, const uint8_t *d)
{
	size_t i = 0;
	uint8_t *nv;
	int c = 1;

	while (i < l->n && (c = memcmp(l->v + i * l->len, d, l->len)) < 0)
		i++;
	l->set = true;
	if (i < l->n && c == 0)
		return 0;
	if (l->n >= VEIL_POLICY_MAX_LIST)
		return veil_errf(VEIL_ERANGE, "policy: more than %d pins in one list",
				 VEIL_POLICY_MAX_LIST);
	nv = realloc(l->v, (l->n + 1) * l->len);
	if (!nv)
		return VEIL_ENOMEM;
	l->v = nv;
	memmove(l->v + (i + 1) * l->len, l->v + i * l->len, (l->n - i) * l->len);
	memcpy(l->v + i * l->len, d, l->len);
	l->n++;
	return 0;
}

static bool pins_match(const struct pinlist *l, const uint8_t *d)
{
	for (size_t i = 0; i < l->n; i++)
		if (!memcmp(l->v + i * l->len, d, l->len))
			return true;
	return false;
}

/* A list of hex digests (or one string); an empty list is refused: it would
 * refuse everything, which is never what a file means by it. */
static int pins_load(json_t *x, const char *where, const char *key, struct pinlist *l)
{
	uint8_t d[48];
	size_t i, got, want = l->len;
	json_t *it;
	int rc;

	if (!x)
		return 0;
	if (json_is_string(x)) {
		json_t *one = json_pack("[O]", x);

		if (!one)
			return VEIL_ENOMEM;
		rc = pins_load(one, where, key, l);
		json_decref(one);
		return rc;
	}
	if (!json_is_array(x) || json_array_size(x) == 0 ||
	    json_array_size(x) > VEIL_POLICY_MAX_LIST)
		return veil_errf(VEIL_EFORMAT, "policy: %s\"%s\" must be a list of 1..%d hex "
				 "strings (leave it out to not pin it)", where, key,
				 VEIL_POLICY_MAX_LIST);
	json_array_foreach(x, i, it) {
		if (!json_is_string(it) || json_string_length(it) != 2 * want ||
		    veil_hex_decode(json_string_value(it), 2 * want, d, sizeof(d), &got) < 0)
			return veil_errf(VEIL_EFORMAT, "policy: %s\"%s\"[%zu] is not %zu hex "
					 "characters (%s)", where, key, i, 2 * want,
					 want == 48 ? "SHA-384" : "SHA-256");
		if ((rc = pins_add(l, d)) < 0)
			return rc;
	}
	return 0;
}

static json_t *pins_json(const struct pinlist *l)
{
	json_t *a = json_array();
	char h[97];

	for (size_t i = 0; a && i < l->n; i++) {
		veil_hex_encode(l->v + i * l->len, l->len, h, sizeof(h));
		if (json_array_append_new(a, json_string(h)) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static void boot_init(struct pinlist *b)
{
	for (size_t i = 0; i < N_BOOT; i++)
		pins_init(&b[i], BOOT[i].len);
}

static void boot_free(struct pinlist *b)
{
	for (size_t i = 0; i < N_BOOT; i++)
		pins_free(&b[i]);
}

static int boot_load(json_t *o, const char *where, struct pinlist *b)
{
	int rc;

	for (size_t i = 0; i < N_BOOT; i++)
		if ((rc = pins_load(json_object_get(o, BOOT[i].key), where, BOOT[i].key,
				    &b[i])) < 0)
			return rc;
	return 0;
}

/* ---- the policy object ------------------------------------------------------ */

static void model_init(struct pmodel *m, const char *name)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "%s", name);
	pins_init(&m->node_binary, 48);
	pins_init(&m->node_config, 48);
	pins_init(&m->model, 48);
	pins_init(&m->model_sha256, 32);
	boot_init(m->boot);
}

static void model_free(struct pmodel *m)
{
	pins_free(&m->node_binary);
	pins_free(&m->node_config);
	pins_free(&m->model);
	pins_free(&m->model_sha256);
	boot_free(m->boot);
}

struct veil_policy *veil_policy_new(void)
{
	struct veil_policy *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->tee = TEE_TDX | TEE_SNP;
	p->min_tcb = 0; /* UpToDate */
	pins_init(&p->gw_binary, 48);
	pins_init(&p->gw_config, 48);
	boot_init(p->gw_boot);
	return p;
}

void veil_policy_free(struct veil_policy *p)
{
	if (!p)
		return;
	pins_free(&p->gw_binary);
	pins_free(&p->gw_config);
	boot_free(p->gw_boot);
	for (size_t i = 0; i < p->n_models; i++)
		model_free(&p->models[i]);
	free(p->models);
	free(p);
}

void veil_policy_set_allow_sim(struct veil_policy *p, bool allow)
{
	if (p)
		p->allow_sim_caller = allow;
}

bool veil_policy_allows_sim(const struct veil_policy *p)
{
	return p && (p->allow_sim_file || p->allow_sim_caller);
}

bool veil_policy_pins_gateway(const struct veil_policy *p)
{
	bool pinned = p && (p->gw_binary.set || p->gw_config.set);

	for (size_t i = 0; p && i < N_BOOT; i++)
		pinned = pinned || p->gw_boot[i].set;
	return pinned;
}

static struct pmodel *find_model(const struct veil_policy *p, const char *name)
{
	for (size_t i = 0; name && i < p->n_models; i++)
		if (!strcmp(p->models[i].name, name))
			return &p->models[i];
	return NULL;
}

/* A model name: 1..128 bytes, no control characters. */
static int check_model_name(const char *s, size_t n)
{
	if (n == 0 || n > VEIL_POLICY_MODEL_NAME_MAX || strlen(s) != n)
		return veil_errf(VEIL_EFORMAT, "policy: a model name must be 1..%d bytes",
				 VEIL_POLICY_MODEL_NAME_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return veil_errf(VEIL_EFORMAT, "policy: a model name holds a control "
					 "character");
	return 0;
}

/* Adds (in name order) or finds the entry of a model. */
static int get_model(struct veil_policy *p, const char *name, struct pmodel **out)
{
	struct pmodel *m = find_model(p, name), *nm;
	size_t i = 0;
	int rc;

	if (m) {
		*out = m;
		return 0;
	}
	if ((rc = check_model_name(name, strlen(name))) < 0)
		return rc;
	if (p->n_models >= VEIL_POLICY_MAX_MODELS)
		return veil_errf(VEIL_ERANGE, "policy: more than %d models", VEIL_POLICY_MAX_MODELS);
	nm = realloc(p->models, (p->n_models + 1) * sizeof(*nm));
	if (!nm)
		return VEIL_ENOMEM;
	p->models = nm;
	while (i < p->n_models && strcmp(p->models[i].name, name) < 0)
		i++;
	memmove(&p->models[i + 1], &p->models[i], (p->n_models - i) * sizeof(*nm));
	model_init(&p->models[i], name);
	p->n_models++;
	*out = &p->models[i];
	return 0;
}

static enum other_models other_effective(const struct veil_policy *p)
{
	if (p->other != OM_DEFAULT)
		return p->other;
	return p->n_models ? OM_REFUSE : OM_ANY;
}

/* ---- loading ----------------------------------------------------------------------- */

static int only_keys(json_t *o, const char *where, const char *const *allowed)
{
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v) {
		size_t i = 0;

		while (allowed[i] && strcmp(allowed[i], k))
			i++;
		if (!allowed[i])
			return veil_errf(VEIL_EFORMAT, "policy: unknown key %s\"%.64s\" (a typo "
					 "must not weaken a policy; see docs/policy.md)", where, k);
	}
	return 0;
}

static int load_tee(struct veil_policy *p, json_t *x, bool *lists_sim)
{
	size_t i;
	json_t *it;

	*lists_sim = false;
	if (!x)
		return 0;
	if (!json_is_array(x) || json_array_size(x) == 0 || json_array_size(x) > 8)
		return veil_errf(VEIL_EFORMAT, "policy: \"tee\" must be a non-empty list of "
				 "\"tdx\", \"sev-snp\", \"sim\"");
	p->tee_set = true;
	p->tee = 0;
	json_array_foreach(x, i, it) {
		const char *s = json_string_value(it);

		if (s && !strcmp(s, "tdx"))
			p->tee |= TEE_TDX;
		else if (s && !strcmp(s, "sev-snp"))
			p->tee |= TEE_SNP;
		else if (s && !strcmp(s, "sim"))
			*lists_sim = true;
		else
			return veil_errf(VEIL_EFORMAT, "policy: \"tee\"[%zu] is not \"tdx\", "
					 "\"sev-snp\" or \"sim\"", i);
	}
	return 0;
}

static int load_gpu(struct veil_policy *p, json_t *g)
{
	static const char *const keys[] = {"required", "min_count", "arch", NULL};
	json_t *x, *it;
	size_t i;
	int rc;

	if (!g)
		return 0;
	if (!json_is_object(g))
		return veil_errf(VEIL_EFORMAT, "policy: \"gpu\" is not an object");
	if ((rc = only_keys(g, "gpu.", keys)) < 0)
		return rc;
	x = json_object_get(g, "required");
	if (x && !json_is_boolean(x))
		return veil_errf(VEIL_EFORMAT, "policy: \"gpu.required\" is not true or false");
	p->gpu_required = json_is_true(x);
	x = json_object_get(g, "min_count");
	if (x && (!json_is_integer(x) || json_integer_value(x) < 0 ||
		  json_integer_value(x) > 64))
		return veil_errf(VEIL_EFORMAT, "policy: \"gpu.min_count\" is not an integer 0..64");
	p->gpu_min_count = x ? (unsigned)json_integer_value(x) : 0;
	x = json_object_get(g, "arch");
	if (!x)
		return 0;
	if (!json_is_array(x) || json_array_size(x) == 0 || json_array_size(x) > 8)
		return veil_errf(VEIL_EFORMAT, "policy: \"gpu.arch\" must be a non-empty list of "
				 "\"HOPPER\", \"BLACKWELL\"");
	p->gpu_arch_set = true;
	json_array_foreach(x, i, it) {
		const char *s = json_string_value(it);
		size_t k = 0;

		while (s && k < VEIL_ARRAY_LEN(GPU_ARCHS) && strcasecmp(s, GPU_ARCHS[k]))
			k++;
		if (!s || k == VEIL_ARRAY_LEN(GPU_ARCHS))
			return veil_errf(VEIL_EFORMAT, "policy: \"gpu.arch\"[%zu] is not \"HOPPER\" "
					 "or \"BLACKWELL\"", i);
		p->gpu_arch |= 1u << k;
	}
	return 0;
}

static int load_models(struct veil_policy *p, json_t *ms)
{
	static const char *const keys[] = {"node_binary", "node_config", "model",
					   "model_sha256", "mrtd", "rtmr0", "rtmr1", "rtmr2",
					   "mr_config_id", "snp_measurement", "host_data", NULL};
	const char *name;
	json_t *e;
	int rc;

	if (!ms)
		return 0;
	if (!json_is_object(ms) || json_object_size(ms) > VEIL_POLICY_MAX_MODELS)
		return veil_errf(VEIL_EFORMAT, "policy: \"models\" must be an object of at most %d "
				 "models", VEIL_POLICY_MAX_MODELS);
	json_object_foreach(ms, name, e) {
		struct pmodel *m;
		char where[VEIL_POLICY_MODEL_NAME_MAX + 16];

		if ((rc = check_model_name(name, strlen(name))) < 0)
			return rc;
		snprintf(where, sizeof(where), "models.%s.", name);
		if (!json_is_object(e))
			return veil_errf(VEIL_EFORMAT, "policy: \"models\".\"%s\" is not an object",
					 name);
		if ((rc = only_keys(e, where, keys)) < 0 || (rc = get_model(p, name, &m)) < 0 ||
		    (rc = pins_load(json_object_get(e, "node_binary"), where, "node_binary",
				    &m->node_binary)) < 0 ||
		    (rc = pins_load(json_object_get(e, "node_config"), where, "node_config",
				    &m->node_config)) < 0 ||
		    (rc = pins_load(json_object_get(e, "model"), where, "model", &m->model)) < 0 ||
		    (rc = pins_load(json_object_get(e, "model_sha256"), where, "model_sha256",
				    &m->model_sha256)) < 0 ||
		    (rc = boot_load(e, where, m->boot)) < 0)
			return rc;
	}
	return 0;
}

/* "snp_min_tcb": {"bootloader", "tee", "snp", "microcode", "fmc"?}, each
 * 0..255; parts left out are 0 (no minimum). */
static int load_snp_min(struct veil_policy *p, json_t *x)
{
	static const char *const keys[] = {"bootloader", "tee", "snp", "microcode", "fmc", NULL};
	int rc;

	if (!x)
		return 0;
	if (!json_is_object(x))
		return veil_errf(VEIL_EFORMAT, "policy: \"snp_min_tcb\" is not an object");
	if ((rc = only_keys(x, "snp_min_tcb.", keys)) < 0)
		return rc;
	for (size_t i = 0; i < SNP_NPARTS; i++) {
		json_t *v = json_object_get(x, SNP_PARTS[i]);

		if (!v)
			continue;
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 255)
			return veil_errf(VEIL_EFORMAT, "policy: \"snp_min_tcb.%s\" must be an "
					 "integer 0..255", SNP_PARTS[i]);
		p->snp_min[i] = (uint8_t)json_integer_value(v);
	}
	p->snp_min_set = true;
	return 0;
}

/* "snp_max_vmpl": 0..3, the least privileged VMPL whose SEV-SNP reports
 * count (any VMPL may request a report with its own report_data). */
static int load_snp_vmpl(struct veil_policy *p, json_t *x)
{
	if (!x)
		return 0;
	if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > 3)
		return veil_errf(VEIL_EFORMAT, "policy: \"snp_max_vmpl\" must be an integer 0..3");
	p->snp_max_vmpl = (uint8_t)json_integer_value(x);
	p->snp_vmpl_set = true;
	return 0;
}

static int load_doc(struct veil_policy *p, json_t *d)
{
	static const char *const keys[] = {"version", "tee", "allow_sim", "min_tcb_status",
					   "snp_min_tcb", "snp_max_vmpl", "gpu", "gateway", "models",
					   "other_models", NULL};
	static const char *const gkeys[] = {"gateway_binary", "gateway_config", "mrtd", "rtmr0",
					    "rtmr1", "rtmr2", "mr_config_id", "snp_measurement",
					    "host_data", NULL};
	json_t *x;
	bool lists_sim;
	int rc;

	if (!json_is_object(d))
		return veil_errf(VEIL_EFORMAT, "policy: not a JSON object");
	if ((rc = only_keys(d, "", keys)) < 0)
		return rc;
	x = json_object_get(d, "version");
	if (x && (!json_is_string(x) || strcmp(json_string_value(x), VEIL_POLICY_VERSION)))
		return veil_errf(VEIL_ENOTSUP, "policy: \"version\" must be \"%s\"",
				 VEIL_POLICY_VERSION);
	x = json_object_get(d, "allow_sim");
	if (x && !json_is_boolean(x))
		return veil_errf(VEIL_EFORMAT, "policy: \"allow_sim\" is not true or false");
	p->allow_sim_file = json_is_true(x);
	if ((rc = load_tee(p, json_object_get(d, "tee"), &lists_sim)) < 0)
		return rc;
	/* "sim" in the list must agree with allow_sim, so that no reader of the
	 * file can mistake which one rules */
	if (lists_sim && !p->allow_sim_file)
		return veil_errf(VEIL_EFORMAT, "policy: \"tee\" lists \"sim\" but \"allow_sim\" is "
				 "not true");
	if (p->tee_set && !lists_sim && p->allow_sim_file)
		return veil_errf(VEIL_EFORMAT, "policy: \"allow_sim\" is true but \"tee\" does not "
				 "list \"sim\"");
	if (p->tee_set && !p->tee && !p->allow_sim_file)
		return veil_errf(VEIL_EFORMAT, "policy: \"tee\" allows nothing");
	x = json_object_get(d, "min_tcb_status");
	if (x) {
		const char *s = json_string_value(x);
		size_t i = 0;

		while (s && i < VEIL_ARRAY_LEN(TCB_ORDER) && strcmp(s, TCB_ORDER[i]))
			i++;
		if (s && !strcmp(s, "any"))
			p->min_tcb = TCB_ANY;
		else if (s && i < VEIL_ARRAY_LEN(TCB_ORDER))
			p->min_tcb = (int)i;
		else
			return veil_errf(VEIL_EFORMAT, "policy: \"min_tcb_status\" must be one of "
					 "UpToDate, SWHardeningNeeded, ConfigurationNeeded, "
					 "ConfigurationAndSWHardeningNeeded, OutOfDate, "
					 "OutOfDateConfigurationNeeded, any");
	}
	if ((rc = load_snp_min(p, json_object_get(d, "snp_min_tcb"))) < 0 ||
	    (rc = load_snp_vmpl(p, json_object_get(d, "snp_max_vmpl"))) < 0 ||
	    (rc = load_gpu(p, json_object_get(d, "gpu"))) < 0)
		return rc;
	x = json_object_get(d, "gateway");
	if (x) {
		if (!json_is_object(x))
			return veil_errf(VEIL_EFORMAT, "policy: \"gateway\" is not an object");
		if ((rc = only_keys(x, "gateway.", gkeys)) < 0 ||
		    (rc = pins_load(json_object_get(x, "gateway_binary"), "gateway.",
				    "gateway_binary", &p->gw_binary)) < 0 ||
		    (rc = pins_load(json_object_get(x, "gateway_config"), "gateway.",
				    "gateway_config", &p->gw_config)) < 0 ||
		    (rc = boot_load(x, "gateway.", p->gw_boot)) < 0)
			return rc;
	}
	if ((rc = load_models(p, json_object_get(d, "models"))) < 0)
		return rc;
	x = json_object_get(d, "other_models");
	if (x) {
		const char *s = json_string_value(x);

		if (s && !strcmp(s, "refuse"))
			p->other = OM_REFUSE;
		else if (s && !strcmp(s, "any"))
			p->other = OM_ANY;
		else
			return veil_errf(VEIL_EFORMAT, "policy: \"other_models\" must be \"refuse\" "
					 "or \"any\"");
	}
	return 0;
}

int veil_policy_load(const uint8_t *json, size_t n, struct veil_policy **out)
{
	struct veil_policy *p = NULL;
	json_error_t e;
	json_t *d = NULL;
	int rc;

	if (!out || (!json && n))
		return veil_errf(VEIL_EINVAL, "policy: bad arguments");
	if (n > VEIL_POLICY_MAX)
		return veil_errf(VEIL_ERANGE, "policy: larger than %u bytes", VEIL_POLICY_MAX);
	d = json_loadb((const char *)json, n, JSON_REJECT_DUPLICATES, &e);
	if (!d)
		return veil_errf(VEIL_EFORMAT, "policy: JSON error at line %d column %d: %s",
				 e.line, e.column, e.text);
	if (!(p = veil_policy_new())) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if ((rc = load_doc(p, d)) < 0)
		goto out;
	*out = p;
	p = NULL;
out:
	veil_policy_free(p);
	json_decref(d);
	return rc;
}

int veil_policy_load_file(const char *path, struct veil_policy **out)
{
	struct veil_buf b = VEIL_BUF_INIT(VEIL_POLICY_MAX);
	int rc;

	if (!path || !out)
		return veil_errf(VEIL_EINVAL, "policy: bad arguments");
	if ((rc = veil_buf_read_file(&b, path)) < 0) {
		if (rc == VEIL_ERANGE)
			veil_errf(rc, "policy %s: larger than %u bytes", path, VEIL_POLICY_MAX);
		else if (!veil_err_detail()[0])
			veil_errf(rc, "policy %s: cannot read it", path);
		goto out;
	}
	rc = veil_policy_load(b.data, b.len, out);
out:
	veil_buf_free(&b);
	return rc;
}

/* ---- canonical JSON --------------------------------------------------------------------- */

static int set_pins(json_t *o, const char *key, const struct pinlist *l)
{
	if (!l->set)
		return 0;
	return json_object_set_new(o, key, pins_json(l));
}

json_t *veil_policy_to_json(const struct veil_policy *p)
{
	json_t *d = json_object(), *tee = json_array(), *gpu = json_object(), *gw = json_object();
	json_t *ms = json_object();
	bool bad = !p || !d || !tee || !gpu || !gw || !ms;
	unsigned t;

	if (bad)
		goto fail;
	t = p->tee_set ? p->tee : (TEE_TDX | TEE_SNP);
	if (veil_policy_allows_sim(p))
		bad |= json_array_append_new(tee, json_string("sim")) < 0;
	if (t & TEE_SNP)
		bad |= json_array_append_new(tee, json_string("sev-snp")) < 0;
	if (t & TEE_TDX)
		bad |= json_array_append_new(tee, json_string("tdx")) < 0;
	bad |= json_object_set_new(d, "version", json_string(VEIL_POLICY_VERSION)) < 0;
	bad |= json_object_set_new(d, "tee", tee) < 0;
	tee = NULL;
	bad |= json_object_set_new(d, "allow_sim", json_boolean(veil_policy_allows_sim(p))) < 0;
	bad |= json_object_set_new(d, "min_tcb_status",
				   json_string(p->min_tcb == TCB_ANY ? "any"
								     : TCB_ORDER[p->min_tcb])) < 0;
	if (p->snp_min_set) {
		json_t *m = json_object();

		for (size_t k = 0; m && k < SNP_NPARTS; k++)
			bad |= json_object_set_new(m, SNP_PARTS[k], json_integer(p->snp_min[k])) < 0;
		bad |= json_object_set_new(d, "snp_min_tcb", m) < 0;
	}
	bad |= json_object_set_new(d, "snp_max_vmpl", json_integer(p->snp_max_vmpl)) < 0;
	bad |= json_object_set_new(gpu, "required", json_boolean(p->gpu_required)) < 0;
	bad |= json_object_set_new(gpu, "min_count", json_integer(p->gpu_min_count)) < 0;
	if (p->gpu_arch_set) {
		json_t *a = json_array();

		for (size_t k = 0; a && k < VEIL_ARRAY_LEN(GPU_ARCHS); k++)
			if (p->gpu_arch & (1u << k))
				bad |= json_array_append_new(a, json_string(GPU_ARCHS[k])) < 0;
		bad |= json_object_set_new(gpu, "arch", a) < 0;
	}
	bad |= json_object_set_new(d, "gpu", gpu) < 0;
	gpu = NULL;
	bad |= set_pins(gw, "gateway_binary", &p->gw_binary) < 0;
	bad |= set_pins(gw, "gateway_config", &p->gw_config) < 0;
	for (size_t k = 0; k < N_BOOT; k++)
		bad |= set_pins(gw, BOOT[k].key, &p->gw_boot[k]) < 0;
	bad |= json_object_set_new(d, "gateway", gw) < 0;
	gw = NULL;
	for (size_t i = 0; i < p->n_models; i++) {
		const struct pmodel *m = &p->models[i];
		json_t *e = json_object();

		bad |= json_object_set_new(ms, m->name, e) < 0 || !e;
		if (bad)
			break;
		bad |= set_pins(e, "node_binary", &m->node_binary) < 0;
		bad |= set_pins(e, "node_config", &m->node_config) < 0;
		bad |= set_pins(e, "model", &m->model) < 0;
		bad |= set_pins(e, "model_sha256", &m->model_sha256) < 0;
		for (size_t k = 0; k < N_BOOT; k++)
			bad |= set_pins(e, BOOT[k].key, &m->boot[k]) < 0;
	}
	bad |= json_object_set_new(d, "models", ms) < 0;
	ms = NULL;
	/* with no model named, "other" models are all of them: written only
	 * when it can be told apart from "models" itself */
	if (p->n_models || p->other != OM_DEFAULT)
		bad |= json_object_set_new(d, "other_models",
					   json_string(other_effective(p) == OM_ANY ? "any"
										  : "refuse")) < 0;
	if (!bad)
		return d;
fail:
	json_decref(d);
	json_decref(tee);
	json_decref(gpu);
	json_decref(gw);
	json_decref(ms);
	return NULL;
}

/* ---- checking a verified report ---------------------------------------------------------- */

static int pfail(struct veil_report_verdict *v, int rc, const char *fmt, ...)
	VEIL_PRINTF(3, 4);

static int pfail(struct veil_report_verdict *v, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->error, sizeof(v->error), fmt, ap);
	va_end(ap);
	return veil_errf(rc, "%s", v->error);
}

/* The hex value `key` of the verdict object `o` as `len` bytes; false when
 * absent. */
static bool verdict_hex(json_t *o, const char *key, uint8_t *out, size_t len)
{
	json_t *s = json_object_get(o, key);
	size_t got;

	return json_is_string(s) && json_string_length(s) == 2 * len &&
	       veil_hex_decode(json_string_value(s), 2 * len, out, len, &got) == 0 && got == len;
}

/* Whether the report's veil measurements are authenticated: TDX and sim
 * logs are replayed against the quote's RTMRs; a SEV-SNP report has no
 * RTMRs, so its event log and "measurements" are the server's word. */
static bool meas_bound(const struct veil_report_verdict *v)
{
	return strcmp(v->tee, "sev-snp") != 0;
}

/* A veil measurement pin (node_*, model, model_sha256, gateway_*) against
 * the verdict's measurements (checked against the replayed log by
 * veil_report_verify). */
static int check_pin(struct veil_report_verdict *v, const struct pinlist *l, const char *what,
		     const char *key)
{
	uint8_t d[48];

	if (!l->set)
		return 0;
	if (!meas_bound(v))
		return pfail(v, VEIL_EPERM, "policy: %s pins \"%s\", but a SEV-SNP report's event "
			     "log is not replayed against the hardware report, so that measurement "
			     "is unauthenticated JSON; pin snp_measurement / host_data for SEV-SNP "
			     "(docs/policy.md)", what, key);
	if (!verdict_hex(json_object_get(v->json, "measurements"), key, d, l->len))
		return pfail(v, VEIL_EPERM, "policy: %s pins \"%s\" but the report has no such "
			     "measurement", what, key);
	if (!pins_match(l, d))
		return pfail(v, VEIL_EPERM, "policy: %s \"%s\" measurement is not one of the "
			     "pinned values", what, key);
	return 0;
}

bool veil_policy_tcb_allows(const struct veil_policy *p, const char *st)
{
	size_t i = 0;

	if (!p)
		return false;
	if (!st || !*st)
		st = "unknown";
	if (!strcmp(st, "Revoked"))
		return false;
	if (p->min_tcb == TCB_ANY)
		return true;
	while (i < VEIL_ARRAY_LEN(TCB_ORDER) && strcmp(st, TCB_ORDER[i]))
		i++;
	return i < VEIL_ARRAY_LEN(TCB_ORDER) && (int)i <= p->min_tcb;
}

static void snp_parts(const struct veil_snp_tcb *t, uint8_t out[SNP_NPARTS])
{
	out[0] = t->bootloader;
	out[1] = t->tee;
	out[2] = t->snp;
	out[3] = t->microcode;
	out[4] = t->fmc;
}

int veil_policy_snp_tcb_check(const struct veil_policy *p, const struct veil_snp_tcb *t)
{
	uint8_t have[SNP_NPARTS];

	if (!p || !t)
		return veil_errf(VEIL_EINVAL, "policy: no policy or TCB");
	if (!p->snp_min_set)
		return veil_errf(VEIL_EPERM, "policy: SEV-SNP evidence has no TCB status; it is "
				 "accepted with \"snp_min_tcb\" (minimum SVNs) or "
				 "min_tcb_status \"any\"");
	snp_parts(t, have);
	for (size_t i = 0; i < SNP_NPARTS; i++)
		if (have[i] < p->snp_min[i])
			return veil_errf(VEIL_EPERM, "policy: SEV-SNP reported TCB %s %u is below "
					 "snp_min_tcb.%s %u", SNP_PARTS[i], have[i],
					 SNP_PARTS[i], p->snp_min[i]);
	return 0;
}

/* The reported TCB of a verified SEV-SNP verdict (quote.reported_tcb, which
 * the verifier checked against the VCEK's TCB extensions). */
static int verdict_snp_tcb(const struct veil_report_verdict *v, struct veil_snp_tcb *t)
{
	json_t *r = json_object_get(json_object_get(v->json, "quote"), "reported_tcb");
	uint8_t parts[SNP_NPARTS] = {0};

	if (!json_is_object(r))
		return veil_errf(VEIL_EFORMAT, "policy: the SEV-SNP verdict has no reported_tcb");
	for (size_t i = 0; i < SNP_NPARTS; i++) {
		json_t *x = json_object_get(r, SNP_PARTS[i]);

		if (!x)
			continue;
		if (!json_is_integer(x) || json_integer_value(x) < 0 ||
		    json_integer_value(x) > 255)
			return veil_errf(VEIL_EFORMAT, "policy: bad reported_tcb.%s",
					 SNP_PARTS[i]);
		parts[i] = (uint8_t)json_integer_value(x);
	}
	memset(t, 0, sizeof(*t));
	t->bootloader = parts[0];
	t->tee = parts[1];
	t->snp = parts[2];
	t->microcode = parts[3];
	t->fmc = parts[4];
	return 0;
}

static int check_tcb(const struct veil_policy *p, struct veil_report_verdict *v)
{
	const char *st = v->status[0] ? v->status : "unknown";
	size_t i = 0;

	/* SEV-SNP has no DCAP status: a policy with SVN minimums judges its
	 * verified reported TCB instead of min_tcb_status */
	if (!strcmp(v->tee, "sev-snp") && p->snp_min_set) {
		struct veil_snp_tcb t;
		int rc;

		if ((rc = verdict_snp_tcb(v, &t)) < 0 ||
		    (rc = veil_policy_snp_tcb_check(p, &t)) < 0)
			return pfail(v, rc, "%s", veil_err_detail());
		return 0;
	}
	if (veil_policy_tcb_allows(p, st))
		return 0;
	while (i < VEIL_ARRAY_LEN(TCB_ORDER) && strcmp(st, TCB_ORDER[i]))
		i++;
	if (!strcmp(st, "Revoked"))
		return pfail(v, VEIL_EPERM, "policy: TCB status Revoked is never accepted");
	if (i == VEIL_ARRAY_LEN(TCB_ORDER) && !strcmp(v->tee, "sev-snp"))
		return pfail(v, VEIL_EPERM, "policy: SEV-SNP evidence has no TCB status; it is "
			     "accepted with \"snp_min_tcb\" (minimum SVNs, which `veil policy "
			     "init` pins) or min_tcb_status \"any\"");
	if (i == VEIL_ARRAY_LEN(TCB_ORDER))
		return pfail(v, VEIL_EPERM, "policy: TCB status %.40s was not evaluated or is not "
			     "known; it is accepted only with min_tcb_status \"any\"", st);
	return pfail(v, VEIL_EPERM, "policy: TCB status %s is below min_tcb_status %s", st,
		     TCB_ORDER[p->min_tcb]);
}

static int check_gpus(const struct veil_policy *p, struct veil_report_verdict *v)
{
	json_t *gpus = json_object_get(v->json, "gpus"), *g;
	size_t n = json_array_size(gpus), i;
	unsigned need = p->gpu_min_count;

	if (p->gpu_required && need < 1)
		need = 1;
	if (n < need)
		return pfail(v, VEIL_EPERM, "policy: %zu verified GPU%s, at least %u required", n,
			     n == 1 ? "" : "s", need);
	if (!p->gpu_arch_set)
		return 0;
	json_array_foreach(gpus, i, g) {
		const char *a = json_string_value(json_object_get(g, "arch"));
		size_t k = 0;

		while (a && k < VEIL_ARRAY_LEN(GPU_ARCHS) &&
		       (!(p->gpu_arch & (1u << k)) || strcasecmp(a, GPU_ARCHS[k])))
			k++;
		if (!a || k == VEIL_ARRAY_LEN(GPU_ARCHS))
			return pfail(v, VEIL_EPERM, "policy: GPU %zu is %s, not an allowed "
				     "architecture", i, a ? a : "of unknown architecture");
	}
	return 0;
}

/* Boot-chain / launch pins against the verified hardware evidence. */
static int check_boot(struct veil_report_verdict *v, const struct pinlist *b, const char *what)
{
	bool snp = !strcmp(v->tee, "sev-snp");
	uint8_t d[48];

	for (size_t i = 0; i < N_BOOT; i++) {
		json_t *o = BOOT[i].snp ? json_object_get(v->json, "quote") : v->json;

		if (!b[i].set)
			continue;
		if (BOOT[i].snp != snp)
			return pfail(v, VEIL_EPERM, "policy: %s pins \"%s\" (%s evidence) but the "
				     "report is %s", what, BOOT[i].key, BOOT[i].snp ? "SEV-SNP" : "TDX",
				     v->tee);
		if (!verdict_hex(o, BOOT[i].field, d, BOOT[i].len))
			return pfail(v, VEIL_EPERM, "policy: %s pins \"%s\" but the verified evidence "
				     "has no such field", what, BOOT[i].key);
		if (!pins_match(&b[i], d))
			return pfail(v, VEIL_EPERM, "policy: %s \"%s\" is not one of the pinned "
				     "values", what, BOOT[i].key);
	}
	return 0;
}

static int check_node(const struct veil_policy *p, const char *model, json_t *doc,
		      struct veil_report_verdict *v)
{
	json_t *mo = json_object_get(doc, "model");
	const char *name = json_string_value(json_object_get(mo, "name"));
	const char *sha = json_string_value(json_object_get(mo, "sha256"));
	const struct pmodel *m;
	uint8_t d[32];
	int rc;

	if (model && (!name || strcmp(model, name)))
		return pfail(v, VEIL_EPERM, "policy: the node serves model \"%.128s\", not "
			     "\"%.128s\"", name ? name : "(none named)", model);
	if (!model)
		model = name;
	m = find_model(p, model);
	if (!m) {
		if (other_effective(p) == OM_ANY)
			return 0;
		return pfail(v, VEIL_EPERM, "policy: model \"%.128s\" is not in the policy "
			     "(other_models: refuse)", model ? model : "(none named)");
	}
	if ((rc = check_boot(v, m->boot, "node")) < 0 ||
	    (rc = check_pin(v, &m->node_binary, "node", "node_binary")) < 0 ||
	    (rc = check_pin(v, &m->node_config, "node", "node_config")) < 0 ||
	    (rc = check_pin(v, &m->model, "node", "model")) < 0)
		return rc;
	if (m->model_sha256.set) {
		/* the measured veil-model-sha256 event, which veil_report_verify
		 * checked the report's model.sha256 against */
		if (!meas_bound(v))
			return check_pin(v, &m->model_sha256, "node", "model_sha256");
		if (!verdict_hex(json_object_get(v->json, "measurements"), "model_sha256", d, 32))
			return pfail(v, VEIL_EPERM, "policy: model_sha256 is pinned but the report "
				     "has no measured model SHA-256 (veil-model-sha256 event)");
		if (!pins_match(&m->model_sha256, d))
			return pfail(v, VEIL_EPERM, "policy: model \"%.128s\" has sha256 %.64s, "
				     "not a pinned model_sha256", model, sha ? sha : "(measured)");
	}
	return 0;
}

static int policy_check(const struct veil_policy *p, enum veil_policy_role role,
			const char *model, json_t *doc, struct veil_report_verdict *v)
{
	const char *r = json_string_value(json_object_get(v->json, "role"));
	bool gw = role == VEIL_POLICY_GATEWAY;
	unsigned t = p->tee_set ? p->tee : (TEE_TDX | TEE_SNP);
	int rc;

	if (!r || strcmp(r, gw ? "gateway" : "node"))
		return pfail(v, VEIL_EPERM, "policy: expected a %s report, this one is a %s's",
			     gw ? "gateway" : "node", r ? r : "(unknown role)");
	/* sim reports got here only with sim allowed (veil_report_verify) */
	if (!v->sim && !((!strcmp(v->tee, "tdx") && (t & TEE_TDX)) ||
			 (!strcmp(v->tee, "sev-snp") && (t & TEE_SNP))))
		return pfail(v, VEIL_EPERM, "policy: TEE \"%s\" is not allowed", v->tee);
	/* GPUs are a node's: a gateway runs no model and reports none */
	if ((rc = check_tcb(p, v)) < 0 || (!gw && (rc = check_gpus(p, v)) < 0))
		return rc;
	if (gw) {
		if ((rc = check_boot(v, p->gw_boot, "gateway")) < 0 ||
		    (rc = check_pin(v, &p->gw_binary, "gateway", "gateway_binary")) < 0)
			return rc;
		return check_pin(v, &p->gw_config, "gateway", "gateway_config");
	}
	return check_node(p, model, doc, v);
}

int veil_policy_verify_report(const struct veil_policy *p, enum veil_policy_role role,
			      const char *model, const uint8_t *json, size_t n,
			      const uint8_t nonce[32], struct veil_report_verdict *v)
{
	struct veil_policy_verify_opts o = {.nonce = nonce};

	/* nonce NULL is no longer a silent skip: veil_report_verify refuses it */
	return veil_policy_verify_report_ex(p, role, model, json, n, &o, v);
}

int veil_policy_verify_report_ex(const struct veil_policy *p, enum veil_policy_role role,
				 const char *model, const uint8_t *json, size_t n,
				 const struct veil_policy_verify_opts *po,
				 struct veil_report_verdict *v)
{
	static const struct veil_policy_verify_opts none;
	struct veil_report_opts o = {0};
	int rc;

	if (!v)
		return VEIL_EINVAL;
	if (!po)
		po = &none;
	o.nonce = po->nonce;
	o.skip_nonce = po->skip_nonce;
	o.now = po->now;
	o.collateral = po->collateral;
	o.allow_sim = veil_policy_allows_sim(p);
	o.snp_max_vmpl = p->snp_max_vmpl;
	rc = veil_report_verify(json, n, &o, v); /* fills *v in every case */
	if (rc < 0)
		return rc;
	return veil_policy_check_verdict(p, role, model, json, n, v);
}

int veil_policy_check_verdict(const struct veil_policy *p, enum veil_policy_role role,
			      const char *model, const uint8_t *json, size_t n,
			      struct veil_report_verdict *v)
{
	json_t *doc = NULL, *checks;
	int rc;

	if (!v)
		return VEIL_EINVAL;
	if (!v->ok)
		return pfail(v, VEIL_EINVAL, "policy: the report was not verified");
	if (!p || !v->json) {
		rc = !p ? VEIL_EINVAL : VEIL_ENOMEM;
		pfail(v, rc, "policy: %s", !p ? "no policy given" : "out of memory");
		goto done;
	}
	doc = json_loadb((const char *)json, n, JSON_REJECT_DUPLICATES, NULL);
	if (!doc) { /* it parsed a moment ago: only memory can fail */
		rc = pfail(v, VEIL_ENOMEM, "policy: out of memory");
		goto done;
	}
	rc = policy_check(p, role, model, doc, v);
done:
	json_decref(doc);
	if (v->json) {
		checks = json_object_get(v->json, "checks");
		if (json_is_object(checks))
			json_object_set_new(checks, "policy", json_boolean(rc == 0));
		if (rc < 0) {
			json_object_set_new(v->json, "ok", json_false());
			json_object_set_new(v->json, "error", json_string(v->error));
		}
	}
	if (rc < 0)
		v->ok = false;
	return rc;
}

/* ---- trust on first use --------------------------------------------------------------------- */

static int pin_meas(struct pinlist *l, json_t *meas, const char *key, bool need)
{
	json_t *s = json_object_get(meas, key);
	uint8_t d[48];
	size_t got;

	if (!s && !need)
		return 0;
	if (!json_is_string(s) || json_string_length(s) != 2 * l->len ||
	    veil_hex_decode(json_string_value(s), 2 * l->len, d, l->len, &got) < 0)
		return veil_errf(VEIL_EFORMAT, "pin: measurements.%s is missing or not %zu hex",
				 key, 2 * l->len);
	return pins_add(l, d);
}

/* A SEV-SNP report's REPORTED_TCB becomes the policy's snp_min_tcb (when it
 * has none): what the platform runs now is the floor from now on. */
static int pin_snp(struct veil_policy *p, json_t *doc)
{
	const char *tee = json_string_value(json_object_get(doc, "tee"));
	const char *hex = json_string_value(json_object_get(doc, "quote"));
	uint8_t raw[VEIL_SNP_REPORT_LEN];
	struct veil_snp_report r;
	struct veil_snp_tcb t;
	size_t got;
	int rc;

	if (!tee || strcmp(tee, "sev-snp") || (p->snp_min_set && p->snp_vmpl_set))
		return 0;
	if (!hex || strlen(hex) != 2 * sizeof(raw) ||
	    veil_hex_decode(hex, strlen(hex), raw, sizeof(raw), &got) < 0)
		return veil_errf(VEIL_EFORMAT, "pin: the SEV-SNP report's \"quote\" is not %zu "
				 "bytes of hex", sizeof(raw));
	if ((rc = veil_snp_report_parse(raw, sizeof(raw), &r)) < 0)
		return rc;
	/* the VMPL it verified at (the level of the code that asked) */
	if (!p->snp_vmpl_set && r.vmpl <= 3 && r.vmpl > p->snp_max_vmpl)
		p->snp_max_vmpl = (uint8_t)r.vmpl;
	if (p->snp_min_set)
		return 0;
	veil_snp_tcb_decode(r.reported_tcb, veil_snp_report_product(&r), &t);
	snp_parts(&t, p->snp_min);
	p->snp_min_set = true;
	return 0;
}

/* The boot chain (TDX, sim: MRTD, RTMR0..2, MR_CONFIG_ID of the quote) or
 * the launch measurement and HOST_DATA (SEV-SNP) become pins. */
static int pin_boot(struct pinlist *b, json_t *doc)
{
	const char *tee = json_string_value(json_object_get(doc, "tee"));
	const char *hex = json_string_value(json_object_get(doc, "quote"));
	size_t hl = hex ? strlen(hex) : 0, got;
	uint8_t *raw = NULL;
	int rc;

	if (!tee || !hex || hl % 2 || hl / 2 > VEIL_TDX_QUOTE_MAX)
		return veil_errf(VEIL_EFORMAT, "pin: the report's \"quote\" is missing or too long");
	if (!(raw = malloc(hl / 2 + 1)))
		return VEIL_ENOMEM;
	if (veil_hex_decode(hex, hl, raw, hl / 2, &got) < 0) {
		rc = veil_errf(VEIL_EFORMAT, "pin: the report's \"quote\" is not hex");
		goto out;
	}
	if (!strcmp(tee, "sev-snp")) {
		struct veil_snp_report r;

		if ((rc = veil_snp_report_parse(raw, got, &r)) < 0 ||
		    (rc = pins_add(&b[5], r.measurement)) < 0 || (rc = pins_add(&b[6], r.host_data)) < 0)
			goto out;
	} else {
		struct veil_tdx_quote q;

		if ((rc = veil_tdx_quote_parse(raw, got, &q)) < 0 ||
		    (rc = pins_add(&b[0], q.td.mr_td)) < 0 || (rc = pins_add(&b[1], q.td.rtmr[0])) < 0 ||
		    (rc = pins_add(&b[2], q.td.rtmr[1])) < 0 || (rc = pins_add(&b[3], q.td.rtmr[2])) < 0 ||
		    (rc = pins_add(&b[4], q.td.mr_config_id)) < 0)
			goto out;
	}
	rc = 0;
out:
	free(raw);
	return rc;
}

int veil_policy_pin(struct veil_policy *p, enum veil_policy_role role, const char *model,
		    const uint8_t *json, size_t n)
{
	json_t *doc, *meas, *mo;
	const char *name, *tee;
	struct pmodel *m;
	bool snp;
	int rc;

	if (!p || !json)
		return veil_errf(VEIL_EINVAL, "pin: bad arguments");
	if (n > VEIL_REPORT_MAX)
		return veil_errf(VEIL_ERANGE, "pin: report larger than %u bytes", VEIL_REPORT_MAX);
	doc = json_loadb((const char *)json, n, JSON_REJECT_DUPLICATES, NULL);
	meas = json_object_get(doc, "measurements");
	if (!json_is_object(meas)) {
		rc = veil_errf(VEIL_EFORMAT, "pin: not a report with \"measurements\"");
		goto out;
	}
	if ((rc = pin_snp(p, doc)) < 0)
		goto out;
	/* SEV-SNP: the veil measurements are not bound to the hardware report
	 * (no RTMR replay), so they are not pinned: the launch measurement
	 * and HOST_DATA are (a pin of them would make the policy refuse it) */
	tee = json_string_value(json_object_get(doc, "tee"));
	snp = tee && !strcmp(tee, "sev-snp");
	if (role == VEIL_POLICY_GATEWAY) {
		if (json_object_get(meas, "node_binary") || json_object_get(meas, "model")) {
			rc = veil_errf(VEIL_EFORMAT, "pin: a node's report, not a gateway's");
			goto out;
		}
		if ((rc = pin_boot(p->gw_boot, doc)) < 0)
			goto out;
		if (snp)
			goto out;
		if ((rc = pin_meas(&p->gw_binary, meas, "gateway_binary", true)) < 0 ||
		    (rc = pin_meas(&p->gw_config, meas, "gateway_config", true)) < 0)
			goto out;
		rc = 0;
		goto out;
	}
	if (json_object_get(meas, "gateway_binary")) {
		rc = veil_errf(VEIL_EFORMAT, "pin: a gateway's report, not a node's");
		goto out;
	}
	mo = json_object_get(doc, "model");
	name = json_string_value(json_object_get(mo, "name"));
	if (!model)
		model = name;
	if (!model) {
		rc = veil_errf(VEIL_EINVAL, "pin: the report names no model; name one");
		goto out;
	}
	if ((rc = get_model(p, model, &m)) < 0 || (rc = pin_boot(m->boot, doc)) < 0)
		goto out;
	if (snp)
		goto out;
	if ((rc = pin_meas(&m->node_binary, meas, "node_binary", true)) < 0 ||
	    (rc = pin_meas(&m->node_config, meas, "node_config", true)) < 0 ||
	    (rc = pin_meas(&m->model, meas, "model", true)) < 0 ||
	    /* the measured SHA-256 (veil-model-sha256), which verification
	     * checked the report's model.sha256 against */
	    (rc = pin_meas(&m->model_sha256, meas, "model_sha256", false)) < 0)
		goto out;
	rc = 0;
out:
	json_decref(doc);
	return rc;
}

/* ---- fetching a report ---------------------------------------------------------------------- */

struct url_parts {
	bool https;
	char host[256];   /* without brackets */
	char port[8];
};

static int url_split(const char *u, struct url_parts *o)
{
	const char *a, *e, *h0, *h1;
	size_t hl;

	memset(o, 0, sizeof(*o));
	if (!strncasecmp(u, "https://", 8)) {
		o->https = true;
		a = u + 8;
	} else if (!strncasecmp(u, "http://", 7)) {
		a = u + 7;
	} else {
		return veil_errf(VEIL_EINVAL, "URL %.200s: only http:// and https://", u);
	}
	e = a + strcspn(a, "/?#");
	if (memchr(a, '@', (size_t)(e - a)))
		return veil_errf(VEIL_EINVAL, "URL: user information is not supported");
	if (*e == '?' || *e == '#')
		return veil_errf(VEIL_EINVAL, "URL: a base URL has no query or fragment");
	if (*a == '[') {
		h0 = a + 1;
		h1 = memchr(h0, ']', (size_t)(e - h0));
		if (!h1)
			return veil_errf(VEIL_EINVAL, "URL: unterminated [IPv6 address]");
		a = h1 + 1;
	} else {
		h0 = a;
		h1 = memchr(a, ':', (size_t)(e - a));
		if (!h1)
			h1 = e;
		a = h1;
	}
	hl = (size_t)(h1 - h0);
	if (hl == 0 || hl >= sizeof(o->host))
		return veil_errf(VEIL_EINVAL, "URL: bad host");
	memcpy(o->host, h0, hl);
	if (a < e && *a == ':') {
		size_t pl = (size_t)(e - a - 1);

		if (pl == 0 || pl >= sizeof(o->port) || strspn(a + 1, "0123456789") < pl)
			return veil_errf(VEIL_EINVAL, "URL: bad port");
		memcpy(o->port, a + 1, pl);
	} else if (a != e) {
		return veil_errf(VEIL_EINVAL, "URL: bad authority");
	} else {
		strcpy(o->port, o->https ? "443" : "80");
	}
	return 0;
}

/* Connects with a deadline (non-blocking connect + poll). */
static int connect_to(const struct url_parts *u, unsigned timeout_ms, int *out)
{
	struct addrinfo hints, *ai = NULL, *it;
	struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
	int fd = -1, rc, err = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(u->host, u->port, &hints, &ai)) != 0)
		return veil_errf(VEIL_EIO, "%s: %s", u->host, gai_strerror(rc));
	for (it = ai; it; it = it->ai_next) {
		struct pollfd pf;
		socklen_t sl = sizeof(err);

		fd = socket(it->ai_family, it->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    it->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, it->ai_addr, it->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			pf.fd = fd;
			pf.events = POLLOUT;
			if (poll(&pf, 1, (int)timeout_ms) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) == 0 && err == 0)
				break;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return veil_errf(VEIL_EIO, "cannot connect to %s port %s", u->host, u->port);
	/* back to blocking, with the deadline on each read and write */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	*out = fd;
	return 0;
}

/* A TLS handshake that accepts any certificate, only to learn the leaf's
 * SPKI SHA-256.  Nothing is sent: the report is then fetched over a
 * connection pinned to that key, so the body and the key belong together. */
static int tls_peek_spki(const struct url_parts *u, unsigned timeout_ms, uint8_t out[32])
{
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	X509 *leaf = NULL;
	int fd = -1, rc;

	if ((rc = connect_to(u, timeout_ms, &fd)) < 0)
		return rc;
	rc = VEIL_EIO;
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
		goto out;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (!(ssl = SSL_new(ctx)) || !SSL_set_fd(ssl, fd))
		goto out;
	{
		uint8_t a[16];

		/* RFC 6066 §3: no SNI for a literal address */
		if (inet_pton(AF_INET, u->host, a) != 1 && inet_pton(AF_INET6, u->host, a) != 1)
			SSL_set_tlsext_host_name(ssl, u->host);
	}
	if (SSL_connect(ssl) != 1) {
		rc = veil_errf(VEIL_EIO, "TLS handshake with %s port %s failed", u->host, u->port);
		goto out;
	}
	leaf = SSL_get1_peer_certificate(ssl);
	if (!leaf) {
		rc = veil_errf(VEIL_EBADMSG, "%s sent no certificate", u->host);
		goto out;
	}
	rc = veil_http_spki_sha256_cert(leaf, out);
	SSL_shutdown(ssl);
out:
	X509_free(leaf);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	if (fd >= 0)
		close(fd);
	ERR_clear_error();
	return rc;
}

static int append_urlenc(struct veil_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = 0;

	for (; *s && rc == 0; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~')
			rc = veil_buf_append(b, s, 1);
		else
			rc = veil_buf_appendf(b, "%%%c%c", hex[c >> 4], hex[c & 15]);
	}
	return rc;
}

int veil_policy_fetch_report(const char *base_url, const char *model, const uint8_t nonce[32],
			     unsigned timeout_ms, struct veil_buf *body, uint8_t spki_sha256[32],
			     bool *tls)
{
	struct veil_buf url = VEIL_BUF_INIT(4096);
	struct veil_http_request rq;
	struct url_parts u;
	uint8_t pin[32] = {0};
	char nh[65];
	size_t blen;
	int rc, status = 0;

	if (!base_url || !nonce || !body || !spki_sha256 || !tls)
		return veil_errf(VEIL_EINVAL, "fetch report: bad arguments");
	if (!timeout_ms)
		timeout_ms = 30000;
	if ((rc = url_split(base_url, &u)) < 0)
		return rc;
	blen = strlen(base_url);
	while (blen && base_url[blen - 1] == '/')
		blen--;
	veil_hex_encode(nonce, 32, nh, sizeof(nh));
	if ((rc = veil_buf_append(&url, base_url, blen)) < 0 ||
	    (rc = veil_buf_appendf(&url, "/v1/attestation/report?nonce=%s", nh)) < 0 ||
	    (model && ((rc = veil_buf_append_str(&url, "&model=")) < 0 ||
		       (rc = append_urlenc(&url, model)) < 0)))
		goto out;
	if (u.https && (rc = tls_peek_spki(&u, timeout_ms, pin)) < 0)
		goto out;
	memset(&rq, 0, sizeof(rq));
	rq.url = (const char *)url.data;
	rq.timeout_ms = timeout_ms;
	rq.connect_timeout_ms = timeout_ms;
	rq.pin_spki_sha256 = u.https ? pin : NULL;
	rq.max_response = body->max ? body->max : (size_t)VEIL_REPORT_MAX * 8;
	if (!body->max)
		body->max = rq.max_response;
	if ((rc = veil_http_fetch(&rq, &status, body)) < 0) {
		if (rc == VEIL_EBADMSG)
			veil_errf(rc, "%s: the server's TLS key changed between two connections",
				  u.host);
		goto out;
	}
	/* the key that answered, also for a refusal (who said busy) */
	memcpy(spki_sha256, pin, 32);
	*tls = u.https;
	if (status != 200) {
		json_t *e = json_loadb((const char *)body->data, body->len, 0, NULL);
		const char *msg = json_string_value(
			json_object_get(json_object_get(e, "error"), "message"));

		/* 503 / 429: busy (a node makes a bounded number of reports at
		 * a time), not a failed attestation: the caller retries */
		rc = veil_errf(status == 503 || status == 429 ? VEIL_EBUSY : VEIL_EIO,
			       "GET %s/v1/attestation/report: HTTP %d%s%.300s", u.host,
			       status, msg ? ": " : "", msg ? msg : "");
		json_decref(e);
		goto out;
	}
	rc = 0;
out:
	veil_buf_free(&url);
	return rc;
}
