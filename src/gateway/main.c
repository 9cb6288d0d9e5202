/* veil-gateway: one OpenAI-compatible endpoint in front of many veil-nodes
 * (DESIGN.md §1): API keys, usage from signed receipts, rate limits, the
 * model registry, routing and health, attestation checks of every node.
 * It runs in a TEE too (its own keys and report), yet never needs to see a
 * prompt: sealed bodies pass through byte for byte.
 *
 *   veil-gateway --listen ADDR:PORT --db sqlite:PATH|postgres://... [options]
 *   veil-gateway keys create|list|revoke|limits --db URI [--secret-file F] [options]
 *
 * Operations: docs/gateway.md. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "veil/opt.h"
#include "veil/pccs.h"

#include "gateway.h"

#define GRACE_MS 10000

static void usage(FILE *f)
{
	fprintf(f,
		"usage: veil-gateway --listen ADDR:PORT --db sqlite:PATH|postgres://... [options]\n"
		"       veil-gateway keys create|list|revoke|limits --db URI [--secret-file F] [options]\n"
		"\n"
		"One OpenAI-compatible endpoint in front of many attested veil-nodes: API keys,\n"
		"usage from signed receipts, rate limits, routing, health and attestation\n"
		"checks.  See docs/gateway.md.\n"
		"\n"
		"  --listen ADDR:PORT        default 127.0.0.1:8444 (port 0: any free port)\n"
		"  --db URI                  sqlite:PATH (WAL, default backend) or postgres://...\n"
		"  --secret-file F           API-key HMAC secret (created 0600 when absent;\n"
		"                            default PATH.secret for sqlite; required for postgres)\n"
		"  --nodes FILE              JSON [{\"url\": \"https://...\", \"model\": \"...\", \"id\"?}]\n"
		"  --policy FILE             veil-policy/1 the nodes must pass (docs/policy.md)\n"
		"  --allow-sim               accept simulated TEE evidence (tests, demos)\n"
		"  --plain-http              no TLS on the listener (loopback only)\n"
		"  --admin-token-file F      enables /admin/... with this bearer token\n"
		"  --tee auto|tdx|sev-snp|sim   the gateway's own attestation (default auto)\n"
		"  --pccs URL|none           DCAP collateral for the gateway's own reports from a\n"
		"                            PCCS or Intel PCS (default on TDX:\n"
		"                            " VEIL_PCCS_DEFAULT_URL ";\n"
		"                            with the sim TEE only when given)\n"
		"  --pccs-cache DIR          keep fetched collateral in DIR (an existing directory)\n"
		"  --sim-state DIR           sim TEE: keep its keys in DIR/sim-tee.pem across restarts\n"
		"  --affinity none|prefix    prefix affinity for plaintext requests (default none)\n"
		"  --affinity-slack N        extra requests an affinity node may have (default 4)\n"
		"  --health-interval-ms N    active /readyz checks (default 2000)\n"
		"  --health-timeout-ms N     (default 1500)\n"
		"  --unhealthy-after N       failed checks in a row (default 2)\n"
		"  --healthy-after N         good checks in a row (default 2)\n"
		"  --reverify-s N            re-attest every node this often (default 300)\n"
		"  --registry-poll-ms N      read the shared node registry (default 3000; 0 off)\n"
		"  --key-cache-ms N          API-key cache = revocation delay (default 5000)\n"
		"  --usage-batch N           usage records per group commit (default 256)\n"

		"  --receipt-check ed25519|ecdsa|full  signatures checked before billing\n"
		"                            (default ecdsa: the payload's EIP-191 secp256k1\n"
		"                            signature by the attested key; ed25519: its\n"
		"                            Ed25519 signature instead, ~20%% more CPU; full:\n"
		"                            every signature, payload and text)\n"
		"  --max-body BYTES          request body cap (default 1114112; over: 413)\n"
		"  --max-header-bytes N      request head cap (default 16384; over: 431)\n"
		"  --max-conns N             client connections (default 16384; over: 503)\n"
		"  --request-timeout-ms N    client head+body (default 30000; over: 408)\n"
		"  --idle-timeout-ms N       keep-alive idle (default 30000)\n"
		"  --upstream-timeout-ms N   a whole relayed answer (default 600000)\n"
		"  --connect-timeout-ms N    to a node (default 2000)\n"
		"  --log-level L             debug|info|warn|error (default info)\n"
		"  --log-json                one JSON object per log line\n"
		"  --print-config            print the configuration this gateway measures (one\n"
		"                            line of JSON; its SHA-384 is gateway_config) and exit\n"
		"\n"
		"keys (each with --db URI [--secret-file F]; --secret-file is required with a\n"
		"postgres database; veil-gateway keys --help for more):\n"
		"      create [--name N] [--rpm N] [--tpm N] [--quota N] | list |\n"
		"      revoke --id N | limits --id N [--rpm N] [--tpm N] [--quota N]\n"
		"      `keys create` prints the new key alone on its last line, once.\n");
}

static void keys_usage(FILE *f)
{
	fprintf(f,
		"usage: veil-gateway keys create --db URI [--secret-file F] [--name N]\n"
		"                                [--rpm N] [--tpm N] [--quota N]\n"
		"       veil-gateway keys list   --db URI [--secret-file F]\n"
		"       veil-gateway keys revoke --db URI [--secret-file F] --id N\n"
		"       veil-gateway keys limits --db URI [--secret-file F] --id N\n"
		"                                [--rpm N] [--tpm N] [--quota N]\n"
		"\n"
		"API keys in the gateway's database (the running gateways see a change within\n"
		"their --key-cache-ms).\n"
		"  --db URI          sqlite:PATH or postgres://... (as the gateway's --db)\n"
		"  --secret-file F   API-key HMAC secret (created 0600 when absent; default\n"
		"                    PATH.secret for sqlite; required with a postgres database:\n"
		"                    the same file as the gateways')\n"
		"  --name N          create: the key's label (default \"default\")\n"
		"  --id N            revoke, limits: the key (an id from keys list)\n"
		"  --rpm N, --tpm N  requests / tokens per minute (0 = unlimited)\n"
		"  --quota N         total tokens (0 = unlimited)\n"
		"  `keys create` prints the new key alone on its last line, once.\n"
		"Exit status: 0 done, 1 failed, 2 usage error.\n");
}

/* Jansson holds request bodies (prompts) and answers: wipe on free. */
static void *wiping_malloc(size_t n)
{
	return malloc(n);
}

static void wiping_free(void *p)
{
	if (p) {
		veil_wipe(p, malloc_usable_size(p));
		free(p);
	}
}

static bool is_loopback(const char *addr)
{
	return !strncmp(addr, "127.", 4) || !strcmp(addr, "::1") ||
	       !strcmp(addr, "localhost");
}

/* ---- the HMAC secret of API keys ------------------------------------------------ */

/* The store's key is SHA-256 of the file's bytes (at least 32 of them), so
 * any long random file works and every gateway reading the same file agrees.
 * A missing file is created 0600 with 32 random bytes (O_EXCL: two gateways
 * starting at once do not overwrite each other). */
static int load_secret(const char *db, const char *file, struct veil_secret *out)
{
	char path[4096];
	struct veil_buf b = VEIL_BUF_SECRET_INIT(4096);
	struct stat st;
	int fd, rc;

	if (file) {
		snprintf(path, sizeof(path), "%s", file);
	} else if (!strncmp(db, "sqlite:", 7)) {
		/* From the database path, not the URI: "?sync=full" must not
		 * change which secret (so which keys) the gateway uses. */
		char dbpath[4096 - sizeof(".secret")];

		if ((rc = veil_store_sqlite_path(db, dbpath, sizeof(dbpath))) < 0) {
			fprintf(stderr, "veil-gateway: --db: %s\n", veil_err_detail());
			return rc;
		}
		snprintf(path, sizeof(path), "%s.secret", dbpath);
		/* Older versions named the file after the whole URI, so a
		 * gateway run with "?sync=full" kept its secret there.  A new
		 * secret would void every key without a word: refuse. */
		if (strcmp(dbpath, db + 7) != 0 && access(path, F_OK) != 0) {
			char old[4096];

			if (snprintf(old, sizeof(old), "%s.secret", db + 7) < (int)sizeof(old) &&
			    access(old, F_OK) == 0) {
				fprintf(stderr, "veil-gateway: the API-key secret file is now %s, "
						"and only %s (named after the whole --db by older "
						"versions) exists: rename it to %s (a new secret "
						"would void every key)\n", path, old, path);
				return VEIL_EINVAL;
			}
		}
	} else {
		fprintf(stderr, "veil-gateway: --secret-file F is required with a postgres "
				"database (every gateway sharing it must use the same file)\n");
		return VEIL_EINVAL;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno != EEXIST) {
		int e = errno;

		/* a missing directory, no write permission: say so, not
		 * "cannot read" the file that could not be made (an existing
		 * file on a read-only file system is read below) */
		if (access(path, F_OK) != 0) {
			fprintf(stderr, "veil-gateway: cannot create the API-key secret file "
					"%s: %s\n", path, strerror(e));
			return VEIL_EIO;
		}
	}
	if (fd >= 0) {
		uint8_t r[32];

		rc = veil_random(r, sizeof(r)) == 0 && write(fd, r, sizeof(r)) == (ssize_t)sizeof(r) &&
		     fsync(fd) == 0 ? 0 : -1;
		veil_wipe(r, sizeof(r));
		close(fd);
		if (rc < 0) {
			unlink(path);
			fprintf(stderr, "veil-gateway: cannot write %s\n", path);
			return VEIL_EIO;
		}
		VEIL_INFO(GW_MOD, "created the API-key secret %s (keep it; back it up with "
			  "the database)", path);
	}
	if ((rc = veil_buf_read_file(&b, path)) < 0) {
		fprintf(stderr, "veil-gateway: cannot read the secret file %s: %s\n", path,
			veil_strerror(rc));
		goto out;
	}
	if (b.len < 32) {
		fprintf(stderr, "veil-gateway: the secret file %s holds %zu bytes; 32 random "
				"bytes at least\n", path, b.len);
		rc = VEIL_EINVAL;
		goto out;
	}
	if (stat(path, &st) == 0 && (st.st_mode & 077))
		VEIL_WARN(GW_MOD, "the secret file %s is readable by others (chmod 600)", path);
	if ((rc = veil_secret_alloc(out, VEIL_STORE_SECRET_LEN)) < 0)
		goto out;
	veil_digest_sha256(b.data, b.len, out->bytes);
out:
	veil_buf_free(&b);
	return rc;
}

/* ---- keys subcommand ---------------------------------------------------------------- */

static int keys_cmd(int argc, char **argv)
{
	const char *db = NULL, *secret_file = NULL, *name = NULL, *sub;
	/* -1: not given (limits keeps the key's value; create sets 0) */
	long long id = 0, rpm = -1, tpm = -1, quota = -1;
	struct veil_store_limits lim = {0, 0, 0};
	struct veil_secret secret = {0};
	struct veil_store *s = NULL;
	bool help = false;
	const struct veil_opt opts[] = {
		VEIL_OPT_STOP("-h", &help),
		VEIL_OPT_STOP("--help", &help),
		VEIL_OPT_STR("--db", &db),
		VEIL_OPT_STR("--secret-file", &secret_file),
		VEIL_OPT_STR("--name", &name),
		VEIL_OPT_INT_MSG("--id", &id, 1, 1ll << 53, "--id must be a key id"),
		VEIL_OPT_INT_MSG("--rpm", &rpm, 0, VEIL_STORE_TOKENS_MAX, "--rpm must be >= 0"),
		VEIL_OPT_INT_MSG("--tpm", &tpm, 0, VEIL_STORE_TOKENS_MAX, "--tpm must be >= 0"),
		VEIL_OPT_INT_MSG("--quota", &quota, 0, VEIL_STORE_TOKENS_MAX,
				 "--quota must be >= 0"),
	};
	const struct veil_opt_cmd cmd = {"veil-gateway keys", opts, VEIL_ARRAY_LEN(opts),
					 "missing value for "};
	bool create, limits, with_id;
	const char *wrong = NULL, *where = NULL;
	int rc, code = 1;

	if (argc < 3) {
		keys_usage(stderr);
		return 2;
	}
	sub = argv[2];
	if (!strcmp(sub, "-h") || !strcmp(sub, "--help") || !strcmp(sub, "help")) {
		keys_usage(stdout);
		return 0;
	}
	if (strcmp(sub, "create") && strcmp(sub, "list") && strcmp(sub, "revoke") &&
	    strcmp(sub, "limits")) {
		fprintf(stderr, "veil-gateway keys: unknown subcommand '%s': create, list, revoke "
				"or limits\n", sub);
		keys_usage(stderr);
		return 2;
	}
	/* argv + 2: the subcommand is the walk's argv[0] */
	if (veil_opt_parse(&cmd, argc - 2, argv + 2) < 0)
		return 2;
	if (help) {
		keys_usage(stdout);
		return 0;
	}
	/* each subcommand takes only its own flags: a --rpm given to list
	 * would otherwise be dropped without a word */
	create = !strcmp(sub, "create");
	limits = !strcmp(sub, "limits");
	with_id = limits || !strcmp(sub, "revoke");
	if (name && !create)
		wrong = "--name", where = "create";
	else if (id && !with_id)
		wrong = "--id", where = "revoke and limits";
	else if (rpm >= 0 && !create && !limits)
		wrong = "--rpm", where = "create and limits";
	else if (tpm >= 0 && !create && !limits)
		wrong = "--tpm", where = "create and limits";
	else if (quota >= 0 && !create && !limits)
		wrong = "--quota", where = "create and limits";
	if (wrong) {
		fprintf(stderr, "veil-gateway keys %s: %s does not apply to %s (only to %s)\n", sub,
			wrong, sub, where);
		return 2;
	}
	if (!name)
		name = "default";
	lim.requests_per_min = VEIL_MAX(rpm, 0);
	lim.tokens_per_min = VEIL_MAX(tpm, 0);
	lim.quota_tokens = VEIL_MAX(quota, 0);
	if (!db) {
		fprintf(stderr, "veil-gateway keys: --db URI is required\n");
		return 2;
	}
	if ((!strcmp(sub, "revoke") || !strcmp(sub, "limits")) && !id) {
		fprintf(stderr, "veil-gateway keys %s: --id N is required\n", sub);
		return 2;
	}
	if (load_secret(db, secret_file, &secret) < 0)
		return 2;
	if ((rc = veil_store_open(db, &secret, &s)) < 0) {
		/* not the URI: a postgres one may carry a password */
		fprintf(stderr, "veil-gateway keys: cannot open the database: %s (%s)\n",
			veil_strerror(rc), veil_err_detail());
		goto out;
	}
	if (!strcmp(sub, "create")) {
		char key[VEIL_STORE_KEY_TEXT_MAX];
		int64_t kid;

		if ((rc = veil_store_key_create(s, name, key, sizeof(key), &kid)) < 0) {
			fprintf(stderr, "veil-gateway keys create: %s (%s)\n", veil_strerror(rc),
				veil_err_detail());
			goto out;
		}
		if ((rpm >= 0 || tpm >= 0 || quota >= 0) &&
		    (rc = veil_store_key_set_limits(s, kid, &lim)) < 0) {
			fprintf(stderr, "veil-gateway keys create: limits: %s\n", veil_strerror(rc));
			veil_wipe(key, sizeof(key));
			goto out;
		}
		printf("created key %lld (%s); it is shown once, here:\n%s\n", (long long)kid,
		       name, key);
		fflush(stdout);
		veil_wipe(key, sizeof(key));
		code = 0;
	} else if (!strcmp(sub, "list")) {
		struct veil_store_key_info *k = NULL;
		size_t n = 0;

		if ((rc = veil_store_key_list(s, &k, &n)) < 0) {
			fprintf(stderr, "veil-gateway keys list: %s\n", veil_strerror(rc));
			goto out;
		}
		printf("%-6s %-14s %-20s %-8s %s\n", "id", "prefix", "name", "state",
		       "limits (rpm tpm quota)");
		for (size_t i = 0; i < n; i++)
			printf("%-6lld %-14s %-20s %-8s %lld %lld %lld\n", (long long)k[i].id,
			       k[i].prefix, k[i].name, k[i].revoked_ms ? "revoked" : "active",
			       (long long)k[i].limits.requests_per_min,
			       (long long)k[i].limits.tokens_per_min,
			       (long long)k[i].limits.quota_tokens);
		free(k);
		code = 0;
	} else if (!strcmp(sub, "revoke")) {
		if ((rc = veil_store_key_revoke(s, id, (int64_t)veil_wall_ms())) < 0) {
			fprintf(stderr, "veil-gateway keys revoke: %s (%s)\n", veil_strerror(rc),
				veil_err_detail());
			goto out;
		}
		printf("revoked key %lld (other gateways stop accepting it within their "
		       "--key-cache-ms)\n", id);
		code = 0;
	} else {
		struct veil_store_key_info ki;

		if ((rc = veil_store_key_get(s, id, &ki)) < 0) {
			fprintf(stderr, "veil-gateway keys limits: %s\n", veil_strerror(rc));
			goto out;
		}
		if (rpm >= 0)
			ki.limits.requests_per_min = rpm;
		if (tpm >= 0)
			ki.limits.tokens_per_min = tpm;
		if (quota >= 0)
			ki.limits.quota_tokens = quota;
		if ((rc = veil_store_key_set_limits(s, id, &ki.limits)) < 0) {
			fprintf(stderr, "veil-gateway keys limits: %s\n", veil_strerror(rc));
			goto out;
		}
		printf("key %lld: %lld requests/min, %lld tokens/min, quota %lld tokens "
		       "(0 = unlimited)\n", id, (long long)ki.limits.requests_per_min,
		       (long long)ki.limits.tokens_per_min, (long long)ki.limits.quota_tokens);
		code = 0;
	}
out:
	veil_store_close(s);
	veil_secret_free(&secret);
	return code;
}

/* ---- the server -------------------------------------------------------------------- */

/* --print-config: print the measured configuration and exit. */
static bool print_config;

static int parse_args(int argc, char **argv, struct gw_opts *o, int *exit_code)
{
	static const char *const tees[] = {"auto", "tdx", "sev-snp", "sim", NULL};
	static const char *const affinities[] = {"none", "prefix", NULL};
	/* in enum gw_receipt_check order */
	static const char *const checks[] = {"ed25519", "ecdsa", "full", NULL};
	int lvl = VEIL_LOG_INFO, tee = 0;
	bool json_log = false, help = false;
	const struct veil_opt opts[] = {
		VEIL_OPT_STOP("-h", &help),
		VEIL_OPT_STOP("--help", &help),
		VEIL_OPT_FLAG("--allow-sim", &o->allow_sim),
		VEIL_OPT_FLAG("--plain-http", &o->plain_http),
		VEIL_OPT_FLAG("--print-config", &print_config),
		VEIL_OPT_FLAG("--log-json", &json_log),
		VEIL_OPT_STR("--listen", &o->listen),
		VEIL_OPT_STR("--db", &o->db),
		VEIL_OPT_STR("--nodes", &o->nodes_file),
		VEIL_OPT_STR("--policy", &o->policy_file),
		VEIL_OPT_STR("--admin-token-file", &o->admin_token_file),
		VEIL_OPT_STR("--secret-file", &o->secret_file),
		VEIL_OPT_CHOICE("--tee", &tee, tees),
		VEIL_OPT_FN("--pccs", veil_pccs_opt_url, &o->pccs,
			    "--pccs must be http(s)://host[:port][/prefix] or none"),
		VEIL_OPT_FN("--pccs-cache", veil_opt_dir, &o->pccs_cache,
			    "--pccs-cache must name an existing directory"),
		VEIL_OPT_FN("--sim-state", veil_opt_dir, &o->sim_state,
			    "--sim-state must name an existing directory"),
		VEIL_OPT_CHOICE("--affinity", &o->affinity, affinities),
		VEIL_OPT_CHOICE("--receipt-check", &o->receipt_check, checks),
		VEIL_OPT_FN("--log-level", veil_opt_log_level, &lvl, "unknown log level"),
		VEIL_OPT_INT("--max-body", &o->max_body, 1024, 1ll << 30),
		VEIL_OPT_INT("--max-header-bytes", &o->max_header_bytes, 256, 1 << 20),
		VEIL_OPT_INT("--max-conns", &o->max_conns, 1, 1 << 20),
		VEIL_OPT_INT("--request-timeout-ms", &o->request_timeout_ms, 10, 3600000),
		VEIL_OPT_INT("--idle-timeout-ms", &o->idle_timeout_ms, 10, 3600000),
		VEIL_OPT_INT("--upstream-timeout-ms", &o->upstream_timeout_ms, 100, 86400000),
		VEIL_OPT_INT("--connect-timeout-ms", &o->connect_timeout_ms, 10, 600000),
		VEIL_OPT_INT("--health-interval-ms", &o->health_interval_ms, 50, 3600000),
		VEIL_OPT_INT("--health-timeout-ms", &o->health_timeout_ms, 10, 600000),
		VEIL_OPT_INT("--unhealthy-after", &o->unhealthy_after, 1, 100),
		VEIL_OPT_INT("--healthy-after", &o->healthy_after, 1, 100),
		VEIL_OPT_INT("--reverify-s", &o->reverify_s, 1, 86400 * 30),
		VEIL_OPT_INT("--registry-poll-ms", &o->registry_poll_ms, 0, 3600000),
		VEIL_OPT_INT("--key-cache-ms", &o->key_cache_ms, 0, 3600000),
		VEIL_OPT_INT("--affinity-slack", &o->affinity_slack, 0, 1 << 20),
		VEIL_OPT_INT("--usage-batch", &o->usage_batch, 1, VEIL_STORE_BATCH_MAX),
	};
	const struct veil_opt_cmd cmd = {"veil-gateway", opts, VEIL_ARRAY_LEN(opts), NULL};

	_Static_assert(GW_RC_ED25519 == 0 && GW_RC_ECDSA == 1 && GW_RC_FULL == 2,
		       "checks[] lists enum gw_receipt_check in order");
	o->listen = "127.0.0.1:8444";
	o->max_body = (1u << 20) + (64u << 10);
	o->max_conns = 16384;
	o->max_header_bytes = 16384;
	o->request_timeout_ms = 30000;
	o->idle_timeout_ms = 30000;
	o->upstream_timeout_ms = 600000;
	o->connect_timeout_ms = 2000;
	o->health_interval_ms = 2000;
	o->health_timeout_ms = 1500;
	o->unhealthy_after = 2;
	o->healthy_after = 2;
	o->reverify_s = 300;
	o->registry_poll_ms = 3000;
	o->key_cache_ms = 5000;
	o->receipt_check = GW_RC_ECDSA; /* cheaper than Ed25519 (libsecp256k1) */
	o->affinity_slack = 4;
	o->usage_batch = 256;
	if (veil_opt_parse(&cmd, argc, argv) < 0)
		goto bad;
	if (help) {
		usage(stdout);
		*exit_code = 0;
		return -1;
	}
	o->tee = tees[tee];
	veil_log_setup((enum veil_log_level)lvl, json_log, stderr);
	/* --print-config opens nothing: the database URI is not measured */
	if (!o->db && !print_config) {
		fprintf(stderr, "veil-gateway: --db sqlite:PATH|postgres://... is required\n");
		goto bad;
	}
	if (o->db && strncmp(o->db, "sqlite:", 7) && strncmp(o->db, "postgres://", 11) &&
	    strncmp(o->db, "postgresql://", 13)) {
		fprintf(stderr, "veil-gateway: --db must be sqlite:PATH or postgres://...\n");
		goto bad;
	}
	return 0;
bad:
	*exit_code = 2;
	return -1;
}

/* The measured configuration: the flags that change what the gateway
 * accepts or where it sends traffic, as sorted compact JSON.  The database
 * URI is left out (it may hold a password).  Left out too, as veil-node
 * leaves them out of its own: --pccs and --pccs-cache, which change only
 * where the gateway's reports' DCAP collateral comes from, not what the
 * gateway attests to or does with a request: the collateral is public and
 * signed by Intel, verified against Intel's root by every verifier, so any
 * URL or cache can make a report fail verification but never pass; the
 * request carries only the FMSPC and CA type, which the quote shows anyway;
 * and measuring a deployment's PCCS address would give each site another
 * gateway_config for policies to pin.  (How fresh the collateral is rests
 * on the operator either way: a verifier that wants the newest fetches its
 * own, docs/security.md.)  --sim-state neither: it keeps the sim TEE's
 * keys, and sim reports prove nothing about the gateway anyway. */
static char *config_json(const struct gw_opts *o)
{
	json_t *c = json_pack("{s:b, s:b, s:b, s:s, s:s?, s:s?, s:s?, s:I, s:I, s:I, s:I}",
			      "allow_sim", o->allow_sim, "plain_http", o->plain_http,
			      "affinity", o->affinity, "tee", o->tee, "nodes_file",
			      o->nodes_file, "policy_file", o->policy_file, "listen", o->listen,
			      "max_body", (json_int_t)o->max_body, "reverify_s",
			      (json_int_t)o->reverify_s, "key_cache_ms",
			      (json_int_t)o->key_cache_ms, "max_conns", (json_int_t)o->max_conns);
	char *s = c ? json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

	json_decref(c);
	return s;
}

static int load_admin_token(struct gw *g)
{
	struct veil_buf b = VEIL_BUF_SECRET_INIT(4096);
	size_t n;
	int rc;

	if ((rc = veil_buf_read_file(&b, g->o.admin_token_file)) < 0) {
		fprintf(stderr, "veil-gateway: cannot read --admin-token-file %s: %s\n",
			g->o.admin_token_file, veil_strerror(rc));
		goto out;
	}
	n = b.len;
	while (n && (b.data[n - 1] == '\n' || b.data[n - 1] == '\r' || b.data[n - 1] == ' '))
		n--;
	if (n < 16) {
		fprintf(stderr, "veil-gateway: the admin token must be at least 16 characters\n");
		rc = VEIL_EINVAL;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (b.data[i] <= 0x20 || b.data[i] >= 0x7f) {
			fprintf(stderr, "veil-gateway: the admin token must be printable ASCII "
					"without spaces\n");
			rc = VEIL_EINVAL;
			goto out;
		}
	veil_digest_sha256(b.data, n, g->admin_token_sha);
	g->admin_enabled = true;
out:
	veil_buf_free(&b);
	return rc;
}

static int load_nodes_file(struct gw *g)
{
	struct veil_buf b = VEIL_BUF_INIT(GW_NODES_FILE_MAX);
	struct gw_node_spec *v = NULL;
	size_t n = 0;
	int rc;

	if ((rc = veil_buf_read_file(&b, g->o.nodes_file)) < 0 ||
	    (rc = gw_parse_nodes(b.data, b.len, &v, &n)) < 0) {
		fprintf(stderr, "veil-gateway: --nodes %s: %s\n", g->o.nodes_file,
			veil_err_detail()[0] ? veil_err_detail() : veil_strerror(rc));
		goto out;
	}
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = gw_node_add(g, &v[i], true, NULL);
out:
	free(v);
	veil_buf_free(&b);
	return rc;
}

static void loop_exit(void *arg)
{
	struct gw *g = arg;

	event_base_loopexit(g->base, NULL);
}

/* No client is left; relays whose client left mid-answer (detached) are
 * still reading their node's answer to bill it: the loop runs until they
 * end (the grace timer abandons what is left). */
static void shutdown_done(void *arg)
{
	struct gw *g = arg;

	gw_relay_when_detached_done(g, loop_exit, g);
}

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gw *g = arg;

	(void)fd;
	(void)what;
	gw_relay_abort_all(g, "the gateway is shutting down");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct gw *g = arg;
	struct timeval tv = {0, 200000};

	(void)what;
	if (g->stopping) {
		VEIL_WARN(GW_MOD, "second signal: stopping now");
		gw_relay_abort_all(g, "the gateway is shutting down");
		event_base_loopexit(g->base, &tv);
		return;
	}
	VEIL_INFO(GW_MOD, "signal %d: shutting down (grace %d ms)", (int)sig, GRACE_MS);
	g->stopping = true;
	tv.tv_sec = (GRACE_MS - 500) / 1000;
	tv.tv_usec = ((GRACE_MS - 500) % 1000) * 1000;
	event_base_once(g->base, -1, EV_TIMEOUT, grace_cb, g, &tv);
	veil_http_server_shutdown(g->srv, GRACE_MS, shutdown_done, g);
}

/* Thousands of streams hold two descriptors each (client and node). */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct gw *g;
	struct veil_http_server_opts so = {0};
	struct event *sigint = NULL, *sigterm = NULL;
	char addr[64];
	uint16_t port;
	int code = 1, rc;

	if (argc >= 2 && !strcmp(argv[1], "keys")) {
		veil_log_setup(VEIL_LOG_WARN, false, stderr);
		return keys_cmd(argc, argv);
	}
	if (!(g = calloc(1, sizeof(*g))))
		return 1;
	if (parse_args(argc, argv, &g->o, &code) < 0)
		goto out;
	json_set_alloc_funcs(wiping_malloc, wiping_free);
	if (veil_opt_listen(g->o.listen, addr, sizeof(addr), &port) < 0) {
		fprintf(stderr, "veil-gateway: --listen ADDR:PORT\n");
		code = 2;
		goto out;
	}
	if (g->o.plain_http && !is_loopback(addr)) {
		fprintf(stderr, "veil-gateway: --plain-http is for loopback tests only; "
				"refusing to listen on %s without TLS\n", addr);
		code = 2;
		goto out;
	}
	if (print_config) {
		char *cfg = config_json(&g->o);

		code = !cfg || printf("%s\n", cfg) < 0 || fflush(stdout) ? 1 : 0;
		free(cfg);
		goto out;
	}
	raise_nofile();
	if (load_secret(g->o.db, g->o.secret_file, &g->secret) < 0) {
		code = 2;
		goto out;
	}
	if (g->o.admin_token_file && load_admin_token(g) < 0) {
		code = 2;
		goto out;
	}
	if (g->o.policy_file) {
		if ((rc = veil_policy_load_file(g->o.policy_file, &g->policy)) < 0) {
			fprintf(stderr, "veil-gateway: --policy %s: %s (%s)\n", g->o.policy_file,
				veil_strerror(rc), veil_err_detail());
			code = 2;
			goto out;
		}
	} else if (!(g->policy = veil_policy_new())) {
		goto out;
	}
	if (g->o.allow_sim)
		veil_policy_set_allow_sim(g->policy, true);
	if ((rc = veil_store_open(g->o.db, &g->secret, &g->store)) < 0) {
		VEIL_ERROR(GW_MOD, "cannot open the store: %s (%s)", veil_strerror(rc),
			   veil_err_detail());
		goto out;
	}
	if (!(g->o.config_json = config_json(&g->o)))
		goto out;
	g->started_ms = veil_wall_ms();
	evthread_use_pthreads();
	if (!(g->base = event_base_new()))
		goto out;
	if ((rc = gw_attest_init(g)) < 0)
		goto out;
	if ((rc = gw_chan_init(g)) < 0 || (rc = gw_keys_init(g)) < 0 ||
	    (rc = veil_http_client_new(g->base, &g->client)) < 0 || (rc = gw_up_init(g)) < 0 ||
	    (rc = gw_worker_start(g, "query", true, false, 65536, &g->query)) < 0 ||
	    (rc = gw_worker_start(g, "report", true, false, GW_REPORT_QUEUE, &g->report)) < 0 ||
	    (rc = gw_worker_start(g, "writer", true, true, 1 << 20, &g->writer)) < 0) {
		VEIL_ERROR(GW_MOD, "start-up failed: %s (%s)", veil_strerror(rc),
			   veil_err_detail());
		goto out;
	}
	/* receipt checks: half the cores, 1..GW_MAX_CPU threads */
	g->n_cpu = (unsigned)VEIL_MIN(VEIL_MAX(veil_cpu_count() / 2, 1), GW_MAX_CPU);
	for (unsigned i = 0; i < g->n_cpu; i++) {
		char nm[16];

		snprintf(nm, sizeof(nm), "cpu%u", i);
		if ((rc = gw_worker_start(g, nm, false, false, 1 << 20, &g->cpu[i])) < 0) {
			VEIL_ERROR(GW_MOD, "start-up failed: %s", veil_strerror(rc));
			goto out;
		}
	}
	so.addr = addr;
	so.port = port;
	so.tls_key = g->tls_key;
	so.tls_cert = g->tls_cert;
	so.max_conns = g->o.max_conns;
	so.max_body = g->o.max_body;
	so.max_header_bytes = g->o.max_header_bytes;
	so.request_timeout_ms = g->o.request_timeout_ms;
	so.idle_timeout_ms = g->o.idle_timeout_ms;
	so.retry_after_s = 1;
	if ((rc = veil_http_server_new(g->base, &so, &g->srv)) < 0) {
		VEIL_ERROR(GW_MOD, "cannot listen on %s: %s (%s)", g->o.listen, veil_strerror(rc),
			   veil_err_detail());
		goto out;
	}
	gw_api_routes(g);
	gw_relay_routes(g);
	gw_admin_routes(g);
	if ((rc = gw_nodes_init(g)) < 0)
		goto out;
	if (g->o.nodes_file && load_nodes_file(g) < 0) {
		code = 2;
		goto out;
	}
	/* nodes registered earlier (or by other gateways): read at once */
	g->next_poll_ms = 0;
	sigint = evsignal_new(g->base, SIGINT, on_signal, g);
	sigterm = evsignal_new(g->base, SIGTERM, on_signal, g);
	if (!sigint || !sigterm || event_add(sigint, NULL) || event_add(sigterm, NULL))
		goto out;
	if (g->o.plain_http)
		VEIL_WARN(GW_MOD, "--plain-http: NO TLS - for loopback tests only");
	if (g->o.allow_sim)
		VEIL_WARN(GW_MOD, "--allow-sim: nodes with SIMULATED TEE evidence are accepted");
	if (!g->admin_enabled)
		VEIL_INFO(GW_MOD, "admin API off (no --admin-token-file)");
	VEIL_INFO(GW_MOD, "store: %s; key cache %u ms (revocation delay)",
		  veil_store_backend(g->store), g->o.key_cache_ms);
	/* A short time slice for the loop thread (as veil-node's and
	 * veil-proxy's loops): woken by a request or a node's chunk while the
	 * machine's cores are busy (nodes sharing it, the workers), it runs at
	 * once instead of after a whole default slice; measured ~40 us of an
	 * end-to-end first token on 2 loaded cores.  Only a hint; the worker
	 * threads, started before, keep the default. */
	if (veil_thread_slice_hint(100000) < 0)
		VEIL_DEBUG(GW_MOD, "loop thread: time slice hint not taken (%s)", veil_err_detail());
	g->ready = true;
	VEIL_INFO(GW_MOD, "listening on %s://%s:%u", g->o.plain_http ? "http" : "https", addr,
		  (unsigned)veil_http_server_port(g->srv));
	event_base_dispatch(g->base);
	/* Records already handed to the writer are committed before exit. */
	gw_worker_stop(g->writer);
	g->writer = NULL;
	VEIL_INFO(GW_MOD, "stopped");
	code = 0;
out:
	if (g->o.db && code != 0 && !g->srv)
		VEIL_DEBUG(GW_MOD, "start-up failed");
	if (sigint)
		event_free(sigint);
	if (sigterm)
		event_free(sigterm);
	/* Worker threads may still be inside a blocking fetch (attestation):
	 * rather than wait for them or free what they use, the process ends
	 * here once secrets are wiped and the writer has committed. */
	gw_worker_stop(g->writer);
	gw_attest_free(g);
	veil_secret_free(&g->secret);
	fflush(stdout);
	fflush(stderr);
	_exit(code);
}
