/* Unit tests of the evidence generators (include/veil/attester.h): the
 * simulated TEE end to end through veil_report_verify (and the real TDX and
 * NVIDIA verifiers underneath), every rejection a verifier must make of a
 * tampered sim report, the configfs-tsm exchange against a temporary
 * directory standing in for configfs (generation race, EBUSY), TEE
 * detection, RTMR3 extension, and the NVML-absent answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "veil/attester.h"
#include "veil/base.h"
#include "veil/eventlog.h"
#include "veil/hpke.h"
#include "veil/keyset.h"
#include "veil/nvgpu.h"
#include "veil/report.h"
#include "veil/sign.h"
#include "veil/tdx.h"

/* ---- helpers ------------------------------------------------------------ */

static void make_keyset(uint8_t *enc, size_t *len)
{
	struct veil_ed25519_key *ed = NULL;
	struct veil_secp256k1_key *k1 = NULL;
	struct veil_hpke_keypair kp;
	struct veil_keyset ks;
	uint8_t pub[65];

	memset(&ks, 0, sizeof(ks));
	assert_int_equal(veil_ed25519_key_generate(&ed), 0);
	assert_int_equal(veil_secp256k1_key_generate(&k1), 0);
	assert_int_equal(veil_hpke_keygen(&kp), 0);
	veil_ed25519_public(ed, ks.ed25519);
	ks.present |= VEIL_KEYSET_HAS(VEIL_KEY_ED25519);
	veil_secp256k1_public(k1, pub);
	assert_int_equal(veil_keyset_set_secp256k1(&ks, pub), 0);
	memcpy(ks.x25519_hpke, kp.pub, 32);
	ks.present |= VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE);
	memset(ks.tls_spki_sha256, 0x42, 32);
	ks.present |= VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256);
	assert_int_equal(veil_keyset_encode(&ks, enc, VEIL_KEYSET_MAX, len), 0);
	veil_hpke_keypair_wipe(&kp);
	veil_ed25519_key_free(ed);
	veil_secp256k1_key_free(k1);
}

static void sha384(const char *s, uint8_t out[48])
{
	SHA384((const uint8_t *)s, strlen(s), out);
}

struct fixture {
	struct veil_attester *a;
	uint8_t enc[VEIL_KEYSET_MAX];
	size_t enc_len;
	uint8_t nonce[32];
	uint8_t bin[48], cfg[48], model[48];
	json_t *report;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct veil_attester_opts o = {.tee = "sim", .sim_gpus = 2};
	struct veil_report_extra extra = {"stories260K", NULL};

	assert_non_null(f);
	assert_int_equal(veil_attester_open(&o, &f->a), 0);
	assert_string_equal(veil_attester_kind(f->a), "sim");
	sha384("node binary", f->bin);
	sha384("node config", f->cfg);
	sha384("model file", f->model);
	assert_int_equal(veil_attester_extend(f->a, VEIL_EVLOG_NODE_BINARY, f->bin, 48), 0);
	assert_int_equal(veil_attester_extend(f->a, VEIL_EVLOG_NODE_CONFIG, f->cfg, 48), 0);
	assert_int_equal(veil_attester_extend(f->a, VEIL_EVLOG_MODEL, f->model, 48), 0);
	make_keyset(f->enc, &f->enc_len);
	assert_int_equal(veil_random(f->nonce, 32), 0);
	assert_int_equal(veil_attester_report(f->a, f->enc, f->enc_len, f->nonce, &extra, &f->report),
			 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	json_decref(f->report);
	veil_attester_free(f->a);
	free(f);
	return 0;
}

/* Verifies a (possibly modified) copy of the report. */
static int verify_json(json_t *r, const uint8_t *nonce, bool allow_sim,
		       const struct veil_report_policy *pol, char *err, size_t errcap)
{
	struct veil_report_opts o = {0};
	struct veil_report_verdict v;
	char *txt = json_dumps(r, JSON_COMPACT);
	int rc;

	assert_non_null(txt);
	o.nonce = nonce;
	o.allow_sim = allow_sim;
	o.policy = pol;
	rc = veil_report_verify((const uint8_t *)txt, strlen(txt), &o, &v);
	free(txt);
	assert_non_null(v.json);
	assert_int_equal(json_is_true(json_object_get(v.json, "ok")), rc == 0);
	assert_string_equal(json_string_value(json_object_get(v.json, "kind")), "report");
	if (err)
		snprintf(err, errcap, "%s", v.error);
	veil_report_verdict_free(&v);
	return rc;
}

static json_t *copy(const struct fixture *f)
{
	json_t *c = json_deep_copy(f->report);

	assert_non_null(c);
	return c;
}

/* Replaces the hex string at key with one whose byte `at` is flipped. */
static void flip_hex(json_t *o, const char *key, size_t at)
{
	char *s = strdup(json_string_value(json_object_get(o, key)));

	assert_non_null(s);
	assert_true(strlen(s) > 2 * at + 1);
	s[2 * at + 1] = s[2 * at + 1] == '0' ? '1' : '0';
	json_object_set_new(o, key, json_string(s));
	free(s);
}

/* ---- sim end to end ---------------------------------------------------------- */

static void test_sim_report_verifies_only_with_allow_sim(void **state)
{
	struct fixture *f = *state;
	struct veil_report_opts o = {0};
	struct veil_report_verdict v;
	char *txt = json_dumps(f->report, JSON_COMPACT);
	char err[512];

	o.nonce = f->nonce;
	o.allow_sim = true;
	assert_int_equal(veil_report_verify((const uint8_t *)txt, strlen(txt), &o, &v), 0);
	assert_true(v.ok && v.sim);
	assert_string_equal(v.status, "UpToDate");
	assert_string_equal(v.tee, "sim");
	assert_memory_equal(v.report_data + 32, f->nonce, 32);
	assert_true(v.keys.present & VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE));
	assert_non_null(strstr(json_string_value(json_object_get(v.json, "warning")), "SIMULATED"));
	assert_int_equal(json_array_size(json_object_get(v.json, "gpus")), 2);
	assert_true(json_is_true(json_object_get(json_object_get(v.json, "checks"), "event_log")));
	veil_report_verdict_free(&v);
	free(txt);

	assert_int_equal(verify_json(f->report, f->nonce, false, NULL, err, sizeof(err)), VEIL_EPERM);
	assert_non_null(strstr(err, "simulated TEE evidence refused"));
	/* claiming not to be sim does not help: the sim chain is not Intel's */
	{
		json_t *c = copy(f);

		json_object_set_new(c, "tee", json_string("tdx"));
		json_object_set_new(c, "sim", json_false());
		assert_true(verify_json(c, f->nonce, false, NULL, err, sizeof(err)) < 0);
		assert_non_null(strstr(err, "quote"));
		json_decref(c);
	}
}

static void test_sim_report_rejects_wrong_or_missing_nonce(void **state)
{
	struct fixture *f = *state;
	uint8_t other[32];
	char err[512];

	memcpy(other, f->nonce, 32);
	other[31] ^= 1;
	assert_int_equal(verify_json(f->report, other, true, NULL, err, sizeof(err)), VEIL_EPERM);
	assert_non_null(strstr(err, "nonce"));
	assert_int_equal(verify_json(f->report, NULL, true, NULL, err, sizeof(err)), VEIL_EINVAL);
	/* a report whose nonce field was rewritten to the verifier's nonce is
	 * still bound to the old one by report_data */
	{
		json_t *c = copy(f);
		char hex[65];

		veil_hex_encode(other, 32, hex, sizeof(hex));
		json_object_set_new(c, "nonce", json_string(hex));
		assert_int_equal(verify_json(c, other, true, NULL, err, sizeof(err)), VEIL_EBADMSG);
		json_decref(c);
	}
}

static void test_sim_report_rejects_keyset_mismatch(void **state)
{
	struct fixture *f = *state;
	uint8_t enc2[VEIL_KEYSET_MAX];
	size_t len2;
	char err[512];
	json_t *c, *k;

	/* another node's keys swapped in: report_data no longer binds them */
	make_keyset(enc2, &len2);
	{
		struct veil_keyset ks;
		json_t *kj;
		char *hex = malloc(2 * len2 + 1);

		assert_int_equal(veil_keyset_parse(enc2, len2, &ks), 0);
		veil_hex_encode(enc2, len2, hex, 2 * len2 + 1);
		c = copy(f);
		kj = json_object();
		json_object_set_new(kj, "encoding", json_string(hex));
		free(hex);
		json_object_set_new(c, "keys", kj);
		assert_true(verify_json(c, f->nonce, true, NULL, err, sizeof(err)) < 0);
		json_decref(c);
	}
	/* a full, consistent keys object of another key set */
	{
		struct veil_attester_opts o = {.tee = "sim"};
		struct veil_attester *a2;
		json_t *r2;

		assert_int_equal(veil_attester_open(&o, &a2), 0);
		assert_int_equal(veil_attester_report(a2, enc2, len2, f->nonce, NULL, &r2), 0);
		c = copy(f);
		json_object_set(c, "keys", json_object_get(r2, "keys"));
		assert_int_equal(verify_json(c, f->nonce, true, NULL, err, sizeof(err)), VEIL_EBADMSG);
		assert_non_null(strstr(err, "report_data does not bind"));
		json_decref(c);
		json_decref(r2);
		veil_attester_free(a2);
	}
	/* a broken-out key that differs from the encoding */
	c = copy(f);
	k = json_object_get(c, "keys");
	flip_hex(k, "x25519_hpke", 3);
	assert_int_equal(verify_json(c, f->nonce, true, NULL, err, sizeof(err)), VEIL_EBADMSG);
	assert_non_null(strstr(err, "x25519_hpke"));
	json_decref(c);
}

static void test_sim_report_rejects_event_log_tampering(void **state)
{
	struct fixture *f = *state;
	char err[512];
	json_t *c, *ev;
	uint8_t d[48], other[48];
	char hex[97];

	/* payload changed, digest left: the runtime digest check fails */
	c = copy(f);
	ev = json_array_get(json_object_get(c, "event_log"), 2);
	flip_hex(ev, "event_payload", 0);
	assert_int_equal(verify_json(c, f->nonce, true, NULL, err, sizeof(err)), VEIL_EBADMSG);
	json_decref(c);
	/* payload and digest changed consistently: the RTMR3 replay fails */
	c = copy(f);
	ev = json_array_get(json_object_get(c, "event_log"), 2);
	sha384("another model", other);
	veil_hex_encode(other, 48, hex, sizeof(hex));
	json_object_set_new(ev, "event_payload", json_string(hex));
	assert_int_equal(veil_evlog_runtime_digest(VEIL_EVLOG_MODEL, other, 48, d), 0);
	veil_hex_encode(d, 48, hex, sizeof(hex));
	json_object_set_new(ev, "digest", json_string(hex));
	json_object_set_new(json_object_get(c, "measurements"), "model", json_string(hex));
	assert_int_equal(verify_json(c, f->nonce, true, NULL, err, sizeof(err)), VEIL_EBADMSG);
	assert_non_null(strstr(err, "RTMR3"));
	json_decref(c);
	/* an event dropped */
	c = copy(f);
	json_array_remove(json_object_get(c, "event_log"), 0);
	assert_true(verify_json(c, f->nonce, true, NULL, err, sizeof(err)) < 0);
	json_decref(c);
	/* measurements that disagree with the (intact) log */
	c = copy(f);
	flip_hex(json_object_get(c, "measurements"), "node_config", 5);
	assert_int_equal(verify_json(c, f->nonce, true, NULL, err, sizeof(err)), VEIL_EBADMSG);
	assert_non_null(strstr(err, "node_config"));
	json_decref(c);
}

static void test_sim_report_measurement_policy(void **state)
{
	struct fixture *f = *state;
	struct veil_report_policy pol = {0};
	uint8_t wrong[48];
	const char *only_ood[] = {"OutOfDate"};
	char err[512];

	pol.node_binary = f->bin;
	pol.node_config = f->cfg;
	pol.model = f->model;
	assert_int_equal(verify_json(f->report, f->nonce, true, &pol, err, sizeof(err)), 0);
	sha384("some other model", wrong);
	pol.model = wrong;
	assert_int_equal(verify_json(f->report, f->nonce, true, &pol, err, sizeof(err)), VEIL_EPERM);
	assert_non_null(strstr(err, "policy: \"model\""));
	pol.model = f->model;
	pol.tcb_status = only_ood;
	pol.n_tcb_status = 1;
	assert_int_equal(verify_json(f->report, f->nonce, true, &pol, err, sizeof(err)), VEIL_EPERM);
	assert_non_null(strstr(err, "TCB status UpToDate"));
}

static void test_sim_report_rejects_gpu_and_quote_tampering(void **state)
{
	struct fixture *f = *state;
	char err[512];
	json_t *c;

	c = copy(f);
	flip_hex(json_array_get(json_object_get(c, "gpu_evidence"), 1), "evidence", 60);
	assert_true(verify_json(c, f->nonce, true, NULL, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "gpu_evidence[1]"));
	json_decref(c);
	c = copy(f);
	flip_hex(c, "quote", 48 + 136); /* MRTD */
	assert_int_equal(verify_json(c, f->nonce, true, NULL, err, sizeof(err)), VEIL_EBADMSG);
	json_decref(c);
	c = copy(f);
	json_object_del(c, "collateral");
	assert_int_equal(verify_json(c, f->nonce, true, NULL, err, sizeof(err)), VEIL_EPERM);
	assert_non_null(strstr(err, "collateral"));
	json_decref(c);
	c = copy(f);
	json_object_set_new(c, "version", json_string("veil-report/2"));
	assert_int_equal(verify_json(c, f->nonce, true, NULL, err, sizeof(err)), VEIL_EFORMAT);
	json_decref(c);
}

/* The sim evidence passes the real verifiers with the sim roots, and only
 * with them. */
static void test_sim_evidence_passes_real_verifiers_with_sim_roots(void **state)
{
	struct fixture *f = *state;
	const uint8_t *tr, *gr;
	size_t tl, gl, qlen, elen;
	uint8_t *q, *ev;
	struct veil_tdx_collateral *c;
	struct veil_tdx_verdict v;
	struct veil_nvgpu_result *res = calloc(1, sizeof(*res));
	struct veil_nvgpu_opts no = {0};
	char *col = json_dumps(json_object_get(f->report, "collateral"), JSON_COMPACT);
	json_t *g = json_array_get(json_object_get(f->report, "gpu_evidence"), 0);
	const char *qh = json_string_value(json_object_get(f->report, "quote"));
	const char *eh = json_string_value(json_object_get(g, "evidence"));
	const char *pem = json_string_value(json_object_get(g, "certificate_chain"));
	uint8_t rd[64], gn[32];

	assert_non_null(res);
	assert_int_equal(veil_attester_sim_roots(f->a, &tr, &tl, &gr, &gl), 0);
	assert_int_equal(veil_tdx_collateral_parse((const uint8_t *)col, strlen(col), &c), 0);
	qlen = strlen(qh) / 2;
	q = malloc(qlen);
	assert_int_equal(veil_hex_decode(qh, 2 * qlen, q, qlen, &qlen), 0);
	assert_int_equal(veil_tdx_verify(q, qlen, c, (int64_t)time(NULL), tr, tl, &v), 0);
	assert_string_equal(v.status, "UpToDate");
	assert_int_equal(v.quote_version, 4);
	assert_int_equal(v.body_type, VEIL_TDX_BODY_TD10);
	assert_int_equal(veil_keyset_report_data(f->enc, f->enc_len, f->nonce, rd), 0);
	assert_memory_equal(v.report_data, rd, 64);
	assert_true(veil_tdx_verify(q, qlen, c, (int64_t)time(NULL), NULL, 0, &v) < 0);
	elen = strlen(eh) / 2;
	ev = malloc(elen);
	assert_int_equal(veil_hex_decode(eh, 2 * elen, ev, elen, &elen), 0);
	SHA256(rd, 64, gn);
	no.expected_nonce = gn;
	no.root_der = gr;
	no.root_der_len = gl;
	assert_int_equal(veil_nvgpu_verify(ev, elen, pem, strlen(pem), &no, res), 0);
	assert_true(res->fwid_ok && res->signature_ok && res->chain_ok && res->nonce_ok);
	assert_int_equal(res->arch, VEIL_NVGPU_ARCH_HOPPER);
	no.root_der = NULL;
	assert_true(veil_nvgpu_verify(ev, elen, pem, strlen(pem), &no, res) < 0);
	free(ev);
	free(q);
	free(col);
	free(res);
	veil_tdx_collateral_free(c);
}

static char tmpl[64];

static const char *mktemp_dir(void)
{
	snprintf(tmpl, sizeof(tmpl), "/tmp/veil-attester-XXXXXX");
	assert_non_null(mkdtemp(tmpl));
	return tmpl;
}

static void rm_rf(const char *dir)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_sim_state_dir_keeps_the_chain(void **state)
{
	const char *dir = mktemp_dir();
	char sub[128];
	struct veil_attester_opts o = {.tee = "sim", .state_dir = sub};
	struct veil_attester *a, *b;
	const uint8_t *r1, *r2, *g1, *g2;
	size_t l1, l2, m1, m2;
	struct stat st;
	char path[256];

	(void)state;
	snprintf(sub, sizeof(sub), "%s/state", dir);
	assert_int_equal(veil_attester_open(&o, &a), 0);
	assert_int_equal(veil_attester_open(&o, &b), 0);
	assert_int_equal(veil_attester_sim_roots(a, &r1, &l1, &g1, &m1), 0);
	assert_int_equal(veil_attester_sim_roots(b, &r2, &l2, &g2, &m2), 0);
	assert_int_equal(l1, l2);
	assert_memory_equal(r1, r2, l1);
	assert_int_equal(m1, m2);
	assert_memory_equal(g1, g2, m1);
	snprintf(path, sizeof(path), "%s/sim-tee.pem", sub);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);
	veil_attester_free(b);
	/* in memory: a new chain every time */
	o.state_dir = NULL;
	assert_int_equal(veil_attester_open(&o, &b), 0);
	assert_int_equal(veil_attester_sim_roots(b, &r2, &l2, NULL, NULL), 0);
	assert_false(l1 == l2 && memcmp(r1, r2, l1) == 0);
	veil_attester_free(a);
	veil_attester_free(b);
	rm_rf(dir);
}

/* ---- configfs-tsm stand-in ----------------------------------------------------- */

static void put(const char *dir, const char *name, const void *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	fclose(f);
}

static size_t get(const char *dir, const char *name, uint8_t *buf, size_t cap)
{
	char path[512];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	assert_non_null(f);
	n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

/* <root>/report/veil/{provider, generation, inblob, outblob} */
static void make_tsm(const char *root, const char *provider, char entry[256])
{
	char d[256];

	snprintf(d, sizeof(d), "%s/report", root);
	assert_int_equal(mkdir(d, 0700), 0);
	snprintf(entry, 256, "%s/report/veil", root);
	assert_int_equal(mkdir(entry, 0700), 0);
	put(entry, "provider", provider, strlen(provider));
	put(entry, "generation", "7\n", 2);
	put(entry, "inblob", "", 0);
	put(entry, "outblob", "FAKE-QUOTE-BYTES", 16);
}

static int gen_bumps;
static int busy_left;

/* Simulates another writer between our inblob write and outblob read. */
static int hook_generation(const char *entry, int step, int attempt)
{
	if (step == 1 && attempt == 1) {
		put(entry, "generation", "8\n", 2);
		gen_bumps++;
	}
	return 0;
}

static int hook_busy(const char *entry, int step, int attempt)
{
	(void)entry;
	(void)attempt;
	if (step == 0 && busy_left > 0) {
		busy_left--;
		return EBUSY;
	}
	return 0;
}

static void test_tsm_exchange_and_retries(void **state)
{
	const char *root = mktemp_dir();
	char entry[256], prov[32];
	uint8_t rd[64], back[128], *q = NULL;
	size_t qlen;
	int attempts;

	(void)state;
	for (int i = 0; i < 64; i++)
		rd[i] = (uint8_t)i;
	make_tsm(root, "tdx_guest\n", entry);
	veil_attester_tsm_hook = NULL;
	assert_int_equal(veil_attester_tsm_quote(root, rd, &q, &qlen, prov, &attempts), 0);
	assert_int_equal(attempts, 1);
	assert_string_equal(prov, "tdx_guest");
	assert_int_equal(qlen, 16);
	assert_memory_equal(q, "FAKE-QUOTE-BYTES", 16);
	assert_int_equal(get(entry, "inblob", back, sizeof(back)), 64);
	assert_memory_equal(back, rd, 64);
	free(q);

	/* the generation counter moves once: one retry */
	gen_bumps = 0;
	veil_attester_tsm_hook = hook_generation;
	assert_int_equal(veil_attester_tsm_quote(root, rd, &q, &qlen, NULL, &attempts), 0);
	assert_int_equal(gen_bumps, 1);
	assert_int_equal(attempts, 2);
	free(q);

	/* EBUSY twice, then fine */
	busy_left = 2;
	veil_attester_tsm_hook = hook_busy;
	assert_int_equal(veil_attester_tsm_quote(root, rd, &q, &qlen, NULL, &attempts), 0);
	assert_int_equal(attempts, 3);
	free(q);

	/* EBUSY for ever: a bounded number of tries, then VEIL_EAGAIN */
	busy_left = 1000;
	q = NULL;
	assert_int_equal(veil_attester_tsm_quote(root, rd, &q, &qlen, NULL, &attempts), VEIL_EAGAIN);
	assert_null(q);
	assert_int_equal(busy_left, 1000 - VEIL_ATTESTER_TSM_RETRIES);
	veil_attester_tsm_hook = NULL;
	rm_rf(root);
}

static void test_open_detects_tee_kind(void **state)
{
	const char *root = mktemp_dir();
	char entry[256], rtmr[300];
	struct veil_attester_opts o = {0};
	struct veil_attester *a = NULL;
	uint8_t d[48], back[64], payload[48];
	json_t *r;
	uint8_t enc[VEIL_KEYSET_MAX], nonce[32] = {1};
	size_t enc_len;

	(void)state;
	o.tsm_root = root;
	/* nothing there: ENOTSUP with a reason, or sim when allowed */
	assert_int_equal(veil_attester_open(&o, &a), VEIL_ENOTSUP);
	assert_non_null(strstr(veil_err_detail(), "no TEE"));
	o.allow_sim_fallback = true;
	assert_int_equal(veil_attester_open(&o, &a), 0);
	assert_string_equal(veil_attester_kind(a), "sim");
	veil_attester_free(a);
	o.allow_sim_fallback = false;

	make_tsm(root, "tdx_guest\n", entry);
	snprintf(rtmr, sizeof(rtmr), "%s/rtmr3", root);
	put(root, "rtmr3", "", 0);
	o.rtmr_path = rtmr;
	o.no_gpu = true;
	assert_int_equal(veil_attester_open(&o, &a), 0);
	assert_string_equal(veil_attester_kind(a), "tdx");
	/* extend writes the dstack runtime digest to the RTMR3 file */
	sha384("x", payload);
	assert_int_equal(veil_attester_extend(a, VEIL_EVLOG_NODE_BINARY, payload, 48), 0);
	assert_int_equal(veil_evlog_runtime_digest(VEIL_EVLOG_NODE_BINARY, payload, 48, d), 0);
	assert_int_equal(get(root, "rtmr3", back, sizeof(back)), 48);
	assert_memory_equal(back, d, 48);
	assert_int_equal(veil_attester_log(a)->n, 1);
	/* a report carries the configfs quote */
	make_keyset(enc, &enc_len);
	assert_int_equal(veil_attester_report(a, enc, enc_len, nonce, NULL, &r), 0);
	assert_string_equal(json_string_value(json_object_get(r, "tee")), "tdx");
	assert_string_equal(json_string_value(json_object_get(r, "quote")),
			    "46414b452d51554f54452d4259544553");
	assert_false(json_is_true(json_object_get(r, "sim")));
	assert_int_equal(json_array_size(json_object_get(r, "gpu_evidence")), 0);
	json_decref(r);
	assert_int_equal(veil_attester_sim_roots(a, NULL, NULL, NULL, NULL), VEIL_ENOTSUP);
	veil_attester_free(a);
	/* asking for SEV-SNP on a TDX guest */
	o.tee = "sev-snp";
	assert_int_equal(veil_attester_open(&o, &a), VEIL_ENOTSUP);
	/* a SEV-SNP guest */
	put(entry, "provider", "sev_guest\n", 10);
	assert_int_equal(veil_attester_open(&o, &a), 0);
	assert_string_equal(veil_attester_kind(a), "sev-snp");
	/* the VCEK comes from auxblob's certificate table (GHCB §4.1.8.1) */
	{
		static const uint8_t vcek_guid[16] = {0x8d, 0x75, 0xda, 0x63, 0x64, 0xe6, 0x64, 0x45,
						      0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};
		uint8_t table[48 + 4] = {0};

		memcpy(table, vcek_guid, 16);
		table[16] = 48; /* offset */
		table[20] = 4;  /* length */
		memcpy(table + 48, "\x30\x02\x05\x00", 4);
		put(entry, "auxblob", table, sizeof(table));
		assert_int_equal(veil_attester_report(a, enc, enc_len, nonce, NULL, &r), 0);
		assert_string_equal(json_string_value(json_object_get(r, "tee")), "sev-snp");
		assert_string_equal(json_string_value(json_object_get(r, "vcek")), "30020500");
		json_decref(r);
	}
	veil_attester_free(a);
	o.tee = "frob";
	assert_int_equal(veil_attester_open(&o, &a), VEIL_EINVAL);
	rm_rf(root);
}

static void test_nvml_absent_gives_a_clear_answer(void **state)
{
	unsigned n = 99;

	(void)state;
	assert_int_equal(veil_attester_nvml_probe("libnvidia-ml-absent-for-tests.so.1", &n),
			 VEIL_ENOTSUP);
	assert_non_null(strstr(veil_err_detail(), "no GPU TEE"));
	assert_non_null(strstr(veil_err_detail(), "libnvidia-ml-absent-for-tests.so.1"));
	assert_int_equal(n, 99);
	/* a library that is there but is not NVML */
	assert_int_equal(veil_attester_nvml_probe("libc.so.6", &n), VEIL_ENOTSUP);
	assert_non_null(strstr(veil_err_detail(), "no GPU TEE"));
}

int main(void)
{
	const struct CMUnitTest sim[] = {
		cmocka_unit_test(test_sim_report_verifies_only_with_allow_sim),
		cmocka_unit_test(test_sim_report_rejects_wrong_or_missing_nonce),
		cmocka_unit_test(test_sim_report_rejects_keyset_mismatch),
		cmocka_unit_test(test_sim_report_rejects_event_log_tampering),
		cmocka_unit_test(test_sim_report_measurement_policy),
		cmocka_unit_test(test_sim_report_rejects_gpu_and_quote_tampering),
		cmocka_unit_test(test_sim_evidence_passes_real_verifiers_with_sim_roots),
	};
	const struct CMUnitTest rest[] = {
		cmocka_unit_test(test_sim_state_dir_keeps_the_chain),
		cmocka_unit_test(test_tsm_exchange_and_retries),
		cmocka_unit_test(test_open_detects_tee_kind),
		cmocka_unit_test(test_nvml_absent_gives_a_clear_answer),
	};
	int fails = cmocka_run_group_tests_name("attester_sim", sim, setup, teardown);

	return fails + cmocka_run_group_tests_name("attester", rest, NULL, NULL);
}
