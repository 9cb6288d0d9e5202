/* veil policy: make, show and check veil-policy/1 files (docs/policy.md).
 *
 *   veil policy init --from URL [--model M] [--allow-sim] [--force]
 *                    [--timeout S] -o FILE
 *   veil policy show FILE [--json]
 *   veil policy check FILE --from URL [--model M] [--allow-sim] [--timeout S]
 *
 * init and check fetch GET URL/v1/attestation/report with a fresh nonce.
 * The answer is a node's bare veil-report/1 or a gateway's
 * veil-gateway-report/1 {gateway, nodes[]}; every report in it is verified
 * (with that nonce), and over https the TLS key that served it must be the
 * one the report (the gateway's, or the node's) attests.  init then pins
 * what it saw (trust on first use, said loudly on stderr); check verifies
 * against a policy file.  Exit 0 done / verified, 1 refused, 2 usage or
 * I/O error. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "veil/base.h"
#include "veil/keyset.h"
#include "veil/policy.h"
#include "veil/report.h"

#define DOC_MAX (64u << 20) /* a gateway document holds many reports */
#define MAX_NODES 256

struct popts {
	const char *from, *model, *out, *file;
	bool allow_sim, force, json;
	unsigned timeout_ms;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: veil policy init --from URL [--model M] [--allow-sim] [--force]\n"
		"                        [--timeout S] -o FILE\n"
		"       veil policy show FILE [--json]\n"
		"       veil policy check FILE --from URL [--model M] [--allow-sim] [--timeout S]\n"
		"\n"
		"veil-policy/1 files say which attested servers a client accepts (docs/policy.md).\n"
		"  init    fetch URL/v1/attestation/report with a fresh nonce (a veil-node's report\n"
		"          or a veil-gateway's {gateway, nodes[]} document), verify every report,\n"
		"          check that the TLS key that answered is the attested one (https), and\n"
		"          write a policy pinning what it saw: every report's boot chain (TDX:\n"
		"          MRTD, RTMR0..2, MR_CONFIG_ID; SEV-SNP: measurement, host_data), and for\n"
		"          TDX the gateway's measurements and, per model, the node binary, config,\n"
		"          model measurement and measured model sha256.\n"
		"          This is TRUST ON FIRST USE: compare the pins with values you know.\n"
		"  show    validate FILE and print it readably (--json: its canonical JSON)\n"
		"  check   fetch and verify URL's reports against FILE\n"
		"  --model M      only the nodes serving M (sent as &model=M; a node must serve M)\n"
		"  --allow-sim    accept SIMULATED TEE evidence (tests and demos only); init then\n"
		"                 writes \"allow_sim\": true\n"
		"  --force        init: overwrite FILE\n"
		"  --timeout S    seconds for each fetch (default 30)\n"
		"Exit status: 0 done / verified, 1 refused, 2 usage or I/O error.\n");
}

/* ---- fetching and verifying -------------------------------------------------- */

/* What one run saw (for init's pins and both commands' output). */
struct seen {
	struct veil_policy *pins;   /* init: where pins go; NULL for check */
	bool any_sim;
	size_t n_nodes, n_ok;
};

static void hex8(const char *s, char out[20])
{
	snprintf(out, 20, "%.16s", s ? s : "-");
}

static void print_meas(FILE *f, const struct veil_report_verdict *v)
{
	json_t *m = json_object_get(v->json, "measurements");
	const char *k;
	json_t *x;

	json_object_foreach(m, k, x) {
		char h[20];

		hex8(json_string_value(x), h);
		fprintf(f, " %s=%s…", k, h);
	}
}

/* The TLS key that served the document must be the attested one: otherwise
 * someone else's TLS endpoint relays a genuine report. */
static int check_tls(const struct veil_report_verdict *v, bool tls, const uint8_t spki[32],
		     const char *what)
{
	if (!tls) {
		fprintf(stderr, "veil policy: warning: plain http: %s's TLS key is not checked\n",
			what);
		return 0;
	}
	if (!(v->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256)) ||
	    memcmp(v->keys.tls_spki_sha256, spki, 32)) {
		fprintf(stderr, "veil policy: %s: the TLS key that answered is not the one its "
			"report attests (tls_spki_sha256): refused\n", what);
		return -1;
	}
	return 0;
}

/* Verifies one report (text) for a role against p; init pins it into
 * s->pins.  Prints one line.  0 verified, -1 refused, -2 error. */
static int one_report(const struct veil_policy *p, struct seen *s, enum veil_policy_role role,
		      const char *model, const char *label, const char *txt,
		      const uint8_t nonce[32], bool tls, const uint8_t spki[32], bool check_key)
{
	struct veil_report_verdict v;
	int rc;

	rc = veil_policy_verify_report(p, role, model, (const uint8_t *)txt, strlen(txt), nonce,
				       &v);
	if (v.sim)
		s->any_sim = true;
	if (rc < 0) {
		printf("REFUSED %s: %s\n", label, v.error[0] ? v.error : veil_strerror(rc));
		veil_report_verdict_free(&v);
		return -1;
	}
	if (check_key && check_tls(&v, tls, spki, label) < 0) {
		printf("REFUSED %s: TLS key is not the attested one\n", label);
		veil_report_verdict_free(&v);
		return -1;
	}
	printf("ok      %s: %s%s, TCB %s, %zu GPU%s;", label, v.tee, v.sim ? " (SIMULATED)" : "",
	       v.status[0] ? v.status : "unknown", json_array_size(json_object_get(v.json, "gpus")),
	       json_array_size(json_object_get(v.json, "gpus")) == 1 ? "" : "s");
	print_meas(stdout, &v);
	printf("\n");
	veil_report_verdict_free(&v);
	if (s->pins && (rc = veil_policy_pin(s->pins, role, model, (const uint8_t *)txt,
					     strlen(txt))) < 0) {
		veil_cli_error("pin", rc);
		return -2;
	}
	return 0;
}

/* Fetches URL's document and verifies (and for init pins) every report in
 * it.  Returns the exit status. */
/* The permissive default policy, but any VMPL: what init verifies with. */
static const char ANY_VMPL[] = "{\"snp_max_vmpl\": 3}";

static int run(const struct popts *o, const struct veil_policy *p, struct seen *s)
{
	struct veil_buf body = VEIL_BUF_INIT(DOC_MAX);
	uint8_t nonce[32], spki[32];
	bool tls = false;
	json_t *doc = NULL, *nodes, *it;
	const char *ver;
	char *txt = NULL;
	size_t i;
	int rc, status = 2, r;

	if ((rc = veil_random(nonce, sizeof(nonce))) < 0 ||
	    (rc = veil_policy_fetch_report(o->from, o->model, nonce, o->timeout_ms, &body, spki,
					   &tls)) < 0) {
		veil_cli_error(o->from, rc);
		goto out;
	}
	doc = json_loadb((const char *)body.data, body.len, JSON_REJECT_DUPLICATES, NULL);
	ver = json_string_value(json_object_get(doc, "version"));
	if (!ver || (strcmp(ver, VEIL_REPORT_VERSION) && strcmp(ver, VEIL_GATEWAY_REPORT_VERSION))) {
		fprintf(stderr, "veil policy: %s answered neither a %s nor a %s document\n", o->from,
			VEIL_REPORT_VERSION, VEIL_GATEWAY_REPORT_VERSION);
		status = 1;
		goto out;
	}
	status = 1;
	if (!strcmp(ver, VEIL_REPORT_VERSION)) {
		s->n_nodes = 1;
		r = one_report(p, s, VEIL_POLICY_NODE, o->model, "node", (const char *)body.data,
			       nonce, tls, spki, true);
		if (r == -2)
			status = 2;
		if (r == 0) {
			s->n_ok = 1;
			status = 0;
		}
		goto out;
	}
	/* veil-gateway-report/1: the gateway's own report, then each node's,
	 * all fetched with our nonce */
	nodes = json_object_get(doc, "nodes");
	if (!json_is_object(json_object_get(doc, "gateway")) || !json_is_array(nodes) ||
	    json_array_size(nodes) > MAX_NODES) {
		fprintf(stderr, "veil policy: %s: a gateway document needs \"gateway\" (object) and "
			"\"nodes\" (array of at most %d)\n", o->from, MAX_NODES);
		goto out;
	}
	if (!(txt = json_dumps(json_object_get(doc, "gateway"), JSON_COMPACT))) {
		status = 2;
		goto out;
	}
	r = one_report(p, s, VEIL_POLICY_GATEWAY, NULL, "gateway", txt, nonce, tls, spki, true);
	free(txt);
	txt = NULL;
	if (r < 0) {
		status = r == -2 ? 2 : 1;
		goto out;
	}
	s->n_nodes = json_array_size(nodes);
	json_array_foreach(nodes, i, it) {
		const char *id = json_string_value(json_object_get(it, "id"));
		const char *m = json_string_value(json_object_get(it, "model"));
		json_t *rep = json_object_get(it, "report");
		char label[300];

		snprintf(label, sizeof(label), "node %.100s (%.128s)", id ? id : "?",
			 m ? m : "no model named");
		if (!json_is_object(rep) || !m) {
			printf("REFUSED %s: no report or no model\n", label);
			continue;
		}
		if (o->model && strcmp(o->model, m)) {
			printf("REFUSED %s: not the model asked for (%s)\n", label, o->model);
			continue;
		}
		if (!(txt = json_dumps(rep, JSON_COMPACT))) {
			status = 2;
			goto out;
		}
		/* the node's TLS key is not the one that answered us (the
		 * gateway's is): the gateway pins it on its own connections */
		r = one_report(p, s, VEIL_POLICY_NODE, m, label, txt, nonce, tls, spki, false);
		free(txt);
		txt = NULL;
		if (r == -2) {
			status = 2;
			goto out;
		}
		if (r == 0)
			s->n_ok++;
	}
	status = s->n_ok == s->n_nodes ? 0 : 1;
	if (s->n_nodes == 0 && o->model) {
		/* the model asked for is what the caller wants to pin or check */
		fprintf(stderr, "veil policy: %s lists no verified node for model %s\n", o->from,
			o->model);
		status = 1;
	} else if (s->n_nodes == 0) {
		fprintf(stderr, "veil policy: warning: %s lists no verified node: no model is "
			"pinned\n", o->from);
	}
out:
	json_decref(doc);
	veil_buf_free(&body);
	return status;
}

/* ---- options ------------------------------------------------------------------ */

/* Which subcommand takes which flag: each takes only its own, so a flag
 * meant for another (show --force, check -o) is refused, not dropped. */
enum {
	P_FROM = 1 << 0, P_MODEL = 1 << 1, P_OUT = 1 << 2, P_FILE = 1 << 3,
	P_ALLOW_SIM = 1 << 4, P_FORCE = 1 << 5, P_JSON = 1 << 6, P_TIMEOUT = 1 << 7,
};
#define P_INIT (P_FROM | P_MODEL | P_OUT | P_ALLOW_SIM | P_FORCE | P_TIMEOUT)
#define P_SHOW (P_FILE | P_JSON)
#define P_CHECK (P_FILE | P_FROM | P_MODEL | P_ALLOW_SIM | P_TIMEOUT)

static const struct {
	const char *name, *alt;
	unsigned bit;
	bool value;
} POPTS[] = {
	{"--from", NULL, P_FROM, true},       {"--model", NULL, P_MODEL, true},
	{"-o", "--output", P_OUT, true},      {"--allow-sim", NULL, P_ALLOW_SIM, false},
	{"--force", NULL, P_FORCE, false},    {"--json", NULL, P_JSON, false},
	{"--timeout", NULL, P_TIMEOUT, true},
};

/* "init and check", "show": the subcommands that take flag bit. */
static const char *takers(unsigned bit)
{
	static const char *const names[] = {"init", "show", "check"};
	static const unsigned sets[] = {P_INIT, P_SHOW, P_CHECK};
	static char out[40];
	size_t n = 0;
	int k = 0;

	out[0] = '\0';
	for (int i = 0; i < 3; i++)
		if (sets[i] & bit)
			k++;
	for (int i = 0, j = 0; i < 3; i++) {
		if (!(sets[i] & bit))
			continue;
		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s",
				      j == 0 ? "" : j == k - 1 ? " and " : ", ", names[i]);
		j++;
	}
	return out;
}

static int parse(int argc, char **argv, struct popts *o, const char *sub, unsigned allowed)
{
	memset(o, 0, sizeof(*o));
	o->timeout_ms = 30000;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		unsigned bit = 0;
		bool value = false;

		if (a[0] != '-' || !a[1]) {
			if (!(allowed & P_FILE)) {
				fprintf(stderr, "veil policy %s: unexpected argument %s\n", sub, a);
				return -1;
			}
			if (o->file) {
				fprintf(stderr, "veil policy %s: more than one FILE\n", sub);
				return -1;
			}
			o->file = a;
			continue;
		}
		for (size_t k = 0; k < VEIL_ARRAY_LEN(POPTS); k++) {
			if (!strcmp(a, POPTS[k].name) || (POPTS[k].alt && !strcmp(a, POPTS[k].alt))) {
				bit = POPTS[k].bit;
				value = POPTS[k].value;
				break;
			}
		}
		if (!bit) {
			fprintf(stderr, "veil policy %s: unknown option %s\n", sub, a);
			return -1;
		}
		if (!(allowed & bit)) {
			fprintf(stderr, "veil policy %s: %s does not apply to %s (only to %s)\n", sub,
				a, sub, takers(bit));
			return -1;
		}
		if (!value) {
			if (bit == P_ALLOW_SIM)
				o->allow_sim = true;
			else if (bit == P_FORCE)
				o->force = true;
			else
				o->json = true;
			continue;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "veil policy %s: %s needs a value\n", sub, a);
			return -1;
		}
		a = argv[++i];
		if (bit == P_FROM) {
			o->from = a;
		} else if (bit == P_MODEL) {
			o->model = a;
		} else if (bit == P_OUT) {
			o->out = a;
		} else {
			char *end;
			long sec;

			errno = 0;
			sec = strtol(a, &end, 10);
			if (errno || end == a || *end || sec < 1 || sec > 3600) {
				fprintf(stderr, "veil policy %s: --timeout must be 1..3600 seconds\n",
					sub);
				return -1;
			}
			o->timeout_ms = (unsigned)sec * 1000;
		}
	}
	return 0;
}

/* Writes text to path atomically (temp file, fsync, rename); mode 0644: a
 * policy is public.  Without force an existing file is left alone. */
static int write_file(const char *path, const char *text, bool force)
{
	char tmp[4096];
	size_t len = strlen(text), off = 0;
	int fd, rc = 0;

	if (!force && access(path, F_OK) == 0) {
		fprintf(stderr, "veil policy init: %s exists (--force to overwrite)\n", path);
		return -1;
	}
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return -1;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "veil policy init: %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	while (off < len && rc == 0) {
		ssize_t w = write(fd, text + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			rc = -1;
		else
			off += (size_t)w;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = -1;
	if (close(fd) < 0)
		rc = -1;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -1;
	if (rc < 0) {
		fprintf(stderr, "veil policy init: writing %s: %s\n", path, strerror(errno));
		unlink(tmp);
	}
	return rc;
}

static int cmd_init(int argc, char **argv)
{
	struct popts o;
	struct veil_policy *check = NULL;
	struct seen s = {0};
	json_t *j = NULL;
	char *txt = NULL;
	int status = 2, rc;

	if (veil_cli_wants_help(argc, argv)) {
		usage(stdout);
		return 0;
	}
	if ((rc = parse(argc, argv, &o, "init", P_INIT)) < 0 || !o.from || !o.out) {
		if (rc == 0) { /* else parse() said what is wrong */
			fprintf(stderr, "veil policy init: --from URL and -o FILE are required\n");
			usage(stderr);
		}
		return 2;
	}
	if (!o.force && access(o.out, F_OK) == 0) {
		fprintf(stderr, "veil policy init: %s exists (--force to overwrite)\n", o.out);
		return 2;
	}
	/* verify under the permissive default, any SEV-SNP VMPL (the one seen
	 * is pinned); pin into a fresh policy */
	s.pins = veil_policy_new();
	if (veil_policy_load((const uint8_t *)ANY_VMPL, strlen(ANY_VMPL), &check) < 0 || !s.pins)
		goto out;
	veil_policy_set_allow_sim(check, o.allow_sim);
	veil_policy_set_allow_sim(s.pins, o.allow_sim);
	status = run(&o, check, &s);
	if (status != 0) {
		fprintf(stderr, "veil policy init: not every report verified; nothing written\n");
		goto out;
	}
	status = 2;
	if (!(j = veil_policy_to_json(s.pins)) ||
	    !(txt = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER)))
		goto out;
	{
		size_t n = strlen(txt);
		char *t2 = realloc(txt, n + 2);

		if (!t2)
			goto out;
		txt = t2;
		memcpy(txt + n, "\n", 2);
	}
	if (write_file(o.out, txt, o.force) < 0)
		goto out;
	fprintf(stderr,
		"\n"
		"veil: WARNING: TRUST ON FIRST USE.  %s now pins whatever %s showed just now.\n"
		"veil:   Its reports verified, but nothing proves these measurements are the code,\n"
		"veil:   configuration and model you meant to trust: compare the pins (veil policy\n"
		"veil:   show %s) with values you obtained independently (a reproducible build,\n"
		"veil:   the model's publisher) before relying on this policy.\n",
		o.out, o.from, o.out);
	if (s.any_sim)
		fprintf(stderr,
			"veil: WARNING: SIMULATED TEE.  These reports come from veil's simulator and\n"
			"veil:   prove nothing about real hardware; the policy allows sim evidence\n"
			"veil:   (\"allow_sim\": true).  Use it for tests and demos only.\n");
	printf("wrote %s: %zu node%s pinned\n", o.out, s.n_ok, s.n_ok == 1 ? "" : "s");
	status = 0;
out:
	free(txt);
	json_decref(j);
	veil_policy_free(check);
	veil_policy_free(s.pins);
	return status;
}

static int cmd_check(int argc, char **argv)
{
	struct popts o;
	struct veil_policy *p = NULL;
	struct seen s = {0};
	int rc, status;

	if (veil_cli_wants_help(argc, argv)) {
		usage(stdout);
		return 0;
	}
	if ((rc = parse(argc, argv, &o, "check", P_CHECK)) < 0 || !o.from || !o.file) {
		if (rc == 0) { /* else parse() said what is wrong */
			fprintf(stderr, "veil policy check: FILE and --from URL are required\n");
			usage(stderr);
		}
		return 2;
	}
	if ((rc = veil_policy_load_file(o.file, &p)) < 0) {
		veil_cli_error(o.file, rc);
		return rc == VEIL_EIO || rc == VEIL_ENOENT ? 2 : 1;
	}
	veil_policy_set_allow_sim(p, o.allow_sim);
	status = run(&o, p, &s);
	printf("%s: %s\n", o.from, status == 0 ? "verified against the policy" : "REFUSED");
	veil_policy_free(p);
	return status;
}

/* ---- show ------------------------------------------------------------------------ */

static void show_list(const char *label, json_t *l)
{
	size_t i;
	json_t *x;

	if (!l) {
		printf("    %-15s not pinned\n", label);
		return;
	}
	json_array_foreach(l, i, x)
		printf("    %-15s %s\n", i ? "" : label, json_string_value(x));
}

/* The pins of a gateway or model entry (the canonical JSON's keys, in the
 * format's order).  Every pin the entry has is printed.  "not pinned" is
 * said only of what counts for the entry's TEE: a SEV-SNP pin (launch
 * measurement, host_data) makes it a SEV-SNP entry, where the veil
 * measurements and TDX registers are refused anyway; otherwise it is a
 * TDX entry (the only TEE that checks the veil measurements), where an
 * unpinned boot chain is what a reader must see.  An entry with no pin at
 * all says so once: no TEE can be told. */
static void show_entry(json_t *e, const char *const *veil_keys)
{
	static const char *const tdx[] = {"mrtd", "rtmr0", "rtmr1", "rtmr2", "mr_config_id", NULL};
	static const char *const snp[] = {"snp_measurement", "host_data", NULL};
	const char *const *groups[] = {veil_keys, tdx, snp};
	bool is_snp = false;

	if (!json_object_size(e)) {
		printf("    (nothing pinned: any measurement is accepted)\n");
		return;
	}
	for (size_t k = 0; snp[k]; k++)
		is_snp |= json_object_get(e, snp[k]) != NULL;
	if (is_snp)
		printf("    (SEV-SNP: the launch measurement and host_data are what count)\n");
	for (size_t g = 0; g < VEIL_ARRAY_LEN(groups); g++) {
		bool counts = is_snp ? g == 2 : g != 2;

		for (size_t k = 0; groups[g][k]; k++) {
			json_t *l = json_object_get(e, groups[g][k]);

			if (l || counts)
				show_list(groups[g][k], l);
		}
	}
}

static void print_strings(json_t *a)
{
	size_t i;
	json_t *x;

	json_array_foreach(a, i, x)
		printf("%s%s", i ? ", " : "", json_string_value(x));
}

static int cmd_show(int argc, char **argv)
{
	static const char *const gw_keys[] = {"gateway_binary", "gateway_config", NULL};
	static const char *const node_keys[] = {"node_binary", "node_config", "model",
						"model_sha256", NULL};
	struct popts o;
	struct veil_policy *p = NULL;
	json_t *j, *gpu, *gw, *ms, *e;
	const char *name, *other;
	int rc;

	if (veil_cli_wants_help(argc, argv)) {
		usage(stdout);
		return 0;
	}
	if ((rc = parse(argc, argv, &o, "show", P_SHOW)) < 0 || !o.file) {
		if (rc == 0) { /* else parse() said what is wrong */
			fprintf(stderr, "veil policy show: FILE is required\n");
			usage(stderr);
		}
		return 2;
	}
	if ((rc = veil_policy_load_file(o.file, &p)) < 0) {
		veil_cli_error(o.file, rc);
		return rc == VEIL_EIO || rc == VEIL_ENOENT ? 2 : 1;
	}
	j = veil_policy_to_json(p);
	veil_policy_free(p);
	if (!j)
		return 2;
	if (o.json) {
		char *t = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		if (t)
			puts(t);
		free(t);
		json_decref(j);
		return 0;
	}
	gpu = json_object_get(j, "gpu");
	gw = json_object_get(j, "gateway");
	ms = json_object_get(j, "models");
	other = json_string_value(json_object_get(j, "other_models"));
	printf("%s: a valid %s policy\n", o.file, VEIL_POLICY_VERSION);
	printf("  TEE:              ");
	print_strings(json_object_get(j, "tee"));
	printf("\n  simulated TEE:    %s\n", json_is_true(json_object_get(j, "allow_sim"))
						   ? "ALLOWED (tests and demos only)"
						   : "refused");
	printf("  min TCB status:   %s\n", json_string_value(json_object_get(j, "min_tcb_status")));
	if (json_object_get(j, "snp_min_tcb")) {
		json_t *m = json_object_get(j, "snp_min_tcb");

		printf("  SEV-SNP min TCB:  bootloader %lld, tee %lld, snp %lld, microcode %lld, "
		       "fmc %lld\n",
		       (long long)json_integer_value(json_object_get(m, "bootloader")),
		       (long long)json_integer_value(json_object_get(m, "tee")),
		       (long long)json_integer_value(json_object_get(m, "snp")),
		       (long long)json_integer_value(json_object_get(m, "microcode")),
		       (long long)json_integer_value(json_object_get(m, "fmc")));
	}
	printf("  SEV-SNP VMPL:     reports asked for at VMPL 0..%lld\n",
	       (long long)json_integer_value(json_object_get(j, "snp_max_vmpl")));
	printf("  GPU:              %s, at least %lld",
	       json_is_true(json_object_get(gpu, "required")) ? "required" : "not required",
	       (long long)json_integer_value(json_object_get(gpu, "min_count")));
	if (json_object_get(gpu, "arch")) {
		printf(", arch ");
		print_strings(json_object_get(gpu, "arch"));
	}
	printf("\n  gateway:%s\n", json_object_size(gw) ? "" : "          any (nothing pinned)");
	if (json_object_size(gw))
		show_entry(gw, gw_keys);
	printf("  models:%s\n", json_object_size(ms) ? "" : "           none pinned");
	json_object_foreach(ms, name, e) {
		printf("  - %s\n", name);
		show_entry(e, node_keys);
	}
	printf("  other models:     %s\n", !other || !strcmp(other, "any") ? "accepted"
									   : "refused");
	json_decref(j);
	return 0;
}

int veil_cli_policy(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "init"))
		return cmd_init(argc - 1, argv + 1);
	if (!strcmp(argv[1], "show"))
		return cmd_show(argc - 1, argv + 1);
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc - 1, argv + 1);
	fprintf(stderr, "veil policy: unknown subcommand '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
