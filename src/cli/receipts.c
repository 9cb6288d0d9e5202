/* veil receipts verify: offline re-verification of a receipts log
 * (veil-proxy --receipts FILE; docs/protocol.md "Receipts log
 * (veil-receipts/1)").
 *
 *   veil receipts verify FILE [--allow-sim] [--policy F]
 *
 * Every attestation line: its report_sha256 is the report's, and the report
 * verifies (veil_report_verify at the line's recorded time, with its nonce;
 * with --policy, against that policy too) for the line's role.  Every
 * receipt line: the attestation line it names (node_report_sha256) came
 * earlier and verified; the receipt's signatures are by that report's keys;
 * its request/response hashes equal the hashes the proxy recorded of what it
 * sent and received; its model is the line's.  One line per receipt, then a
 * summary JSON.  Exit 0 all good, 1 any failure, 2 usage or I/O error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "veil/base.h"
#include "veil/keyset.h"
#include "veil/policy.h"
#include "veil/receipt.h"
#include "veil/report.h"

#define LOG_MAX (1u << 30)     /* the whole file */
#define MAX_ATTESTATIONS 65536

struct att {
	uint8_t sha[32];
	bool ok;              /* verified now (and recorded ok) */
	bool node;
	struct veil_keyset keys;
};

struct state {
	bool allow_sim;
	struct veil_policy *policy;
	struct att *atts;
	size_t n_atts, cap_atts;
	size_t n_att_ok, n_att_refused, n_receipts, n_receipts_ok, n_fail;
	size_t n_node_error;       /* verified, for answers the node ended with an error */
	bool any_sim;         /* a sim report was accepted (--allow-sim) */
	json_t *errors;       /* the first few failures, for the summary */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: veil receipts verify FILE [--allow-sim] [--policy F]\n"
		"\n"
		"Re-verifies a receipts log (JSON lines written by veil-proxy --receipts) offline:\n"
		"every attestation line's report (at its recorded time, with its nonce), and every\n"
		"receipt's signatures against the keys of the attestation line it names, its\n"
		"request/response hashes against what the proxy recorded sending and receiving.\n"
		"Prints one line per receipt and a summary JSON as the last line.\n"
		"  --allow-sim    accept SIMULATED TEE reports (tests and demos only)\n"
		"  --policy F     also check each report against a veil-policy/1 file\n"
		"Exit status: 0 all good, 1 any failure, 2 usage or I/O error.\n");
}

static void failure(struct state *s, size_t line, const char *what, const char *why)
{
	char msg[700];

	snprintf(msg, sizeof(msg), "line %zu: %s: %s", line, what, why);
	printf("FAIL    %s\n", msg);
	s->n_fail++;
	if (json_array_size(s->errors) < 20)
		json_array_append_new(s->errors, json_string(msg));
}

static bool hex32(json_t *o, const char *key, uint8_t out[32])
{
	json_t *x = json_object_get(o, key);
	size_t got;

	return json_is_string(x) && json_string_length(x) == 64 &&
	       veil_hex_decode(json_string_value(x), 64, out, 32, &got) == 0;
}

static const struct att *find_att(const struct state *s, const uint8_t sha[32])
{
	const struct att *found = NULL;

	/* the latest line with these bytes: a report logged twice is the same */
	for (size_t i = 0; i < s->n_atts; i++)
		if (!memcmp(s->atts[i].sha, sha, 32) && (!found || s->atts[i].ok))
			found = &s->atts[i];
	return found;
}

static void attestation(struct state *s, size_t line, json_t *l)
{
	const char *role = json_string_value(json_object_get(l, "role"));
	const char *model = json_string_value(json_object_get(l, "model"));
	json_t *rep = json_object_get(l, "report"), *rv = json_object_get(l, "verdict");
	bool recorded_ok = json_is_true(json_object_get(rv, "ok"));
	struct veil_report_verdict v;
	struct veil_report_opts o = {0};
	uint8_t nonce[32], sha[32], want[32];
	char *txt = NULL, what[200];
	const char *vr;
	json_t *t = json_object_get(l, "time");
	struct att *a;
	int rc;

	snprintf(what, sizeof(what), "attestation (%s%s%.128s)", role ? role : "?",
		 model ? " " : "", model ? model : "");
	if (!role || (strcmp(role, "node") && strcmp(role, "gateway")) || !json_is_object(rep) ||
	    !hex32(l, "nonce", nonce) || !hex32(l, "report_sha256", want) ||
	    !json_is_integer(t) || !json_is_object(rv)) {
		failure(s, line, what, "needs role (node|gateway), nonce, report, report_sha256, "
			"time and verdict");
		return;
	}
	if (s->n_atts == s->cap_atts) {
		size_t nc = s->cap_atts ? 2 * s->cap_atts : 64;
		struct att *na = nc <= MAX_ATTESTATIONS ? realloc(s->atts, nc * sizeof(*na)) : NULL;

		if (!na) {
			failure(s, line, what, "too many attestation lines");
			return;
		}
		s->atts = na;
		s->cap_atts = nc;
	}
	a = &s->atts[s->n_atts++];
	memset(a, 0, sizeof(*a));
	memcpy(a->sha, want, 32);
	a->node = !strcmp(role, "node");
	if (veil_receipts_report_sha256(rep, sha) < 0 || memcmp(sha, want, 32)) {
		failure(s, line, what, "report_sha256 is not the SHA-256 of the report");
		return;
	}
	if (!(txt = json_dumps(rep, JSON_COMPACT))) {
		failure(s, line, what, "out of memory");
		return;
	}
	o.nonce = nonce;
	o.allow_sim = s->allow_sim;
	o.now = (int64_t)json_integer_value(t);
	if (s->policy) {
		/* judged at the line's time, like the policy-less check */
		struct veil_policy_verify_opts po = {.nonce = nonce, .now = o.now};

		veil_policy_set_allow_sim(s->policy, s->allow_sim);
		rc = veil_policy_verify_report_ex(s->policy,
						  a->node ? VEIL_POLICY_NODE : VEIL_POLICY_GATEWAY,
						  a->node ? model : NULL, (const uint8_t *)txt,
						  strlen(txt), &po, &v);
	} else {
		rc = veil_report_verify((const uint8_t *)txt, strlen(txt), &o, &v);
	}
	free(txt);
	vr = json_string_value(json_object_get(v.json, "role"));
	if (rc == 0 && (!vr || strcmp(vr, role))) {
		rc = VEIL_EPERM;
		snprintf(v.error, sizeof(v.error), "the line says %s, the report is a %s's", role,
			 vr ? vr : "?");
	}
	if (!recorded_ok) {
		/* the proxy refused it at the time (perhaps by its policy): a
		 * faithful record, and no receipt may rest on it */
		const char *why = json_string_value(json_object_get(rv, "error"));

		s->n_att_refused++;
		printf("refused %s, as recorded: %.300s\n", what, why ? why : "(no reason recorded)");
	} else if (rc < 0) {
		failure(s, line, what, v.error[0] ? v.error : veil_strerror(rc));
	} else {
		a->ok = true;
		a->keys = v.keys;
		s->n_att_ok++;
		s->any_sim |= v.sim;
	}
	veil_report_verdict_free(&v);
}

static void receipt(struct state *s, size_t line, json_t *l)
{
	const char *model = json_string_value(json_object_get(l, "model"));
	const char *err = json_string_value(json_object_get(l, "error"));
	json_t *rj = json_object_get(l, "receipt");
	uint8_t ref[32], rq[32], rs[32];
	struct veil_receipt r = {0};
	const struct att *a;
	char *txt = NULL, what[200];
	int rc;

	s->n_receipts++;
	snprintf(what, sizeof(what), "receipt (%.128s)", model ? model : "?");
	if (!json_is_true(json_object_get(l, "ok"))) {
		/* the proxy saw this exchange fail (and said so to its caller):
		 * the log is faithful, the exchange is still not a good one */
		failure(s, line, what, err ? err : "the proxy recorded a failure (no reason given)");
		return;
	}
	if (!model || !hex32(l, "node_report_sha256", ref) || !hex32(l, "request_sha256", rq) ||
	    !hex32(l, "response_sha256", rs)) {
		failure(s, line, what, "needs model, node_report_sha256, request_sha256, "
			"response_sha256");
		return;
	}
	if (!json_is_object(rj)) {
		failure(s, line, what, err ? err : "no receipt recorded");
		return;
	}
	if (!(txt = json_dumps(rj, JSON_COMPACT))) {
		failure(s, line, what, "out of memory");
		return;
	}
	rc = veil_receipt_parse((const uint8_t *)txt, strlen(txt), &r);
	free(txt);
	if (rc < 0) {
		failure(s, line, what, veil_err_detail());
		return;
	}
	snprintf(what, sizeof(what), "receipt %.100s (%.64s)", r.id, r.model);
	a = find_att(s, ref);
	if (!a) {
		failure(s, line, what, "node_report_sha256 names no earlier attestation line");
	} else if (!a->ok) {
		failure(s, line, what, "the attestation line it names did not verify");
	} else if (!a->node) {
		failure(s, line, what, "the attestation line it names is a gateway's");
	} else if ((rc = veil_receipt_verify(&r, &a->keys)) < 0) {
		failure(s, line, what, veil_err_detail());
	} else if (memcmp(r.request_sha256, rq, 32)) {
		failure(s, line, what, "request_sha256 signed by the node differs from the "
			"request the proxy sent");
	} else if (memcmp(r.response_sha256, rs, 32)) {
		failure(s, line, what, "response_sha256 signed by the node differs from the "
			"response the proxy received");
	} else if (strcmp(r.model, model)) {
		failure(s, line, what, "the receipt's model is not the line's");
	} else {
		const char *ne = json_string_value(json_object_get(l, "node_error"));

		s->n_receipts_ok++;
		s->n_node_error += ne != NULL;
		printf("ok      %s: %lld+%lld tokens, created %lld, signed by %s%s%.64s\n", what,
		       (long long)r.prompt_tokens, (long long)r.completion_tokens,
		       (long long)r.created, r.has_text_sigs ? "payload and text signatures"
							     : "payload signatures",
		       ne ? "; the node ended the answer with error " : "", ne ? ne : "");
	}
	veil_receipt_free(&r);
}

static int cmd_verify(int argc, char **argv)
{
	struct state s = {0};
	struct veil_buf b = VEIL_BUF_INIT(LOG_MAX);
	const char *file = NULL, *policy = NULL;
	size_t line = 0, pos = 0;
	json_t *sum = NULL;
	char *out;
	int rc, status = 2;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--allow-sim")) {
			s.allow_sim = true;
		} else if (!strcmp(argv[i], "--policy") && i + 1 < argc) {
			policy = argv[++i];
		} else if (argv[i][0] != '-' && !file) {
			file = argv[i];
		} else {
			fprintf(stderr, "veil receipts verify: unexpected argument %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (!file) {
		usage(stderr);
		return 2;
	}
	if (policy && (rc = veil_policy_load_file(policy, &s.policy)) < 0) {
		veil_cli_error(policy, rc);
		return 2;
	}
	if ((rc = veil_buf_read_file(&b, file)) < 0) {
		veil_cli_error(file, rc);
		goto out;
	}
	s.errors = json_array();
	if (!s.errors)
		goto out;
	while (pos < b.len) {
		const char *p = (const char *)b.data + pos;
		const char *nl = memchr(p, '\n', b.len - pos);
		size_t n = nl ? (size_t)(nl - p) : b.len - pos;
		json_t *l;
		const char *type, *ver;

		pos += n + (nl ? 1 : 0);
		line++;
		if (strspn(p, " \t\r") >= n)
			continue;
		l = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL);
		type = json_string_value(json_object_get(l, "type"));
		ver = json_string_value(json_object_get(l, "version"));
		if (!l || !ver || strcmp(ver, VEIL_RECEIPTS_LOG_VERSION))
			failure(&s, line, "line", "not a " VEIL_RECEIPTS_LOG_VERSION " JSON object "
				"(a torn or edited line?)");
		else if (type && !strcmp(type, "attestation"))
			attestation(&s, line, l);
		else if (type && !strcmp(type, "receipt"))
			receipt(&s, line, l);
		else
			failure(&s, line, "line", "\"type\" is neither attestation nor receipt");
		json_decref(l);
	}
	sum = json_pack("{s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:O}", "ok",
			s.n_fail == 0, "file", file, "lines", (json_int_t)line,
			"attestations_verified", (json_int_t)s.n_att_ok, "attestations_refused",
			(json_int_t)s.n_att_refused, "receipts", (json_int_t)s.n_receipts,
			"receipts_ok", (json_int_t)s.n_receipts_ok, "receipts_node_error",
			(json_int_t)s.n_node_error, "failures",
			(json_int_t)s.n_fail, "sim", s.any_sim, "errors", s.errors);
	if (!sum || !(out = json_dumps(sum, JSON_COMPACT)))
		goto out;
	if (s.any_sim)
		fprintf(stderr, "veil receipts: WARNING: SIMULATED TEE reports were accepted "
			"(--allow-sim): they prove nothing about real hardware\n");
	puts(out);
	free(out);
	status = s.n_fail ? 1 : 0;
out:
	json_decref(sum);
	json_decref(s.errors);
	free(s.atts);
	veil_policy_free(s.policy);
	veil_buf_free(&b);
	return status;
}

int veil_cli_receipts(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "verify"))
		return cmd_verify(argc - 1, argv + 1);
	fprintf(stderr, "veil receipts: unknown subcommand '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
