/* veil up: the whole private stack on one machine (DESIGN.md §6).
 *
 *   veil up [--model PATH] [--tee auto|sim] [--nodes N] [--port P]
 *           [--state-dir DIR] [--once]
 *
 * Starts N veil-node processes, one veil-gateway and one veil-proxy, all on
 * 127.0.0.1, with a generated admin token, a fresh API key and a policy that
 * pins exactly what was launched: the SHA-384 of the node and gateway
 * binaries and of their configurations (computed here the way each server
 * measures itself), and the model file's SHA-384 and SHA-256.  Before the
 * policy is written, each node's report (a fresh one, for veil up's nonce)
 * is read and its RTMR3 events are compared with those values: a difference
 * stops veil up, naming the measurement; a SEV-SNP guest is refused there
 * (check_node_report says why).  Then one chat
 * goes through the proxy as a self-check (the same code as `veil chat`), the
 * receipts log is re-verified offline, the proxy's URL is printed, and the
 * stack serves until SIGINT/SIGTERM, or until any child dies; every child is
 * then stopped (SIGTERM, SIGKILL after a grace).  --once stops after the
 * self-check: exit 0 when it passed.
 *
 * Process model: veil up blocks SIGINT/SIGTERM/SIGHUP/SIGCHLD and takes them
 * with sigtimedwait, so a signal can never land in the middle of a
 * half-written file; children run in process groups of their own (a Ctrl-C
 * on the terminal reaches veil up only, which then stops them in order:
 * proxy, gateway, nodes) with PR_SET_PDEATHSIG, so that none outlives a
 * veil up that was killed outright.  Children are reaped by pid only
 * (waitpid(pid)), never waitpid(-1). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "cli.h"
#include "veil/base.h"
#include "veil/eventlog.h"
#include "veil/policy.h"
#include "veil/report.h"
#include "veil/store.h"

extern char **environ;

#define UP_MAX_NODES 16
#define UP_KIDS (UP_MAX_NODES + 2)
#define UP_LOG_SCAN (1u << 20)          /* bytes of a child's log searched */
#define UP_NODE_START_MS (600u * 1000)  /* a large model loads slowly */
#define UP_SERVER_START_MS (30u * 1000)
#define UP_READY_MS (30u * 1000)
#define UP_STOP_GRACE_MS 12000          /* the node's own grace is 10 s */
#define UP_POLL_MS 5
#define UP_KEY_MAX 256
#define UP_DIR_MAX 2048                 /* the state directory's path */
#define UP_SELF_CHECK_PROMPT "Once upon a time"
#define UP_SELF_CHECK_TOKENS 64

#define NODE_LISTEN "127.0.0.1:0"

enum kid_role { KID_NODE, KID_GATEWAY, KID_PROXY };

struct kid {
	enum kid_role role;
	char name[32];          /* "node 0", "gateway", "proxy" */
	pid_t pid;              /* 0: never started */
	int status;             /* wait status once reaped */
	bool reaped;
	bool reported;          /* its exit was already reported */
	char log[PATH_MAX];
	char url[128];          /* scheme://127.0.0.1:port, once listening */
	char tee[16];           /* nodes: what the attester picked (its report) */
};

struct up {
	/* options */
	const char *model_arg;
	const char *tee;        /* "auto" | "sim" */
	int n_nodes;
	int port;
	const char *state_arg;
	bool once;

	/* derived */
	char bin_dir[PATH_MAX];
	char self[PATH_MAX];    /* this veil binary */
	char model[PATH_MAX];   /* absolute */
	char model_name[128];
	char state[UP_DIR_MAX];
	bool temp_state;
	int lock_fd;            /* <state>/up.lock, flock'd while running */
	int threads;            /* per node; 0 = the node's default (all cores) */
	char tee_kind[16];      /* what the nodes use: tdx, sev-snp, sim */

	/* measurements, lower-case hex */
	char node_bin_h[97], node_cfg_h[97], model_h[97], model_sha256[65];
	char gw_bin_h[97], gw_cfg_h[97];
	bool have_gw_pins;

	char api_key[UP_KEY_MAX];
	char admin_token_file[PATH_MAX];
	char policy_file[PATH_MAX];
	char receipts_file[PATH_MAX];
	char proxy_url[128];

	struct kid kids[UP_KIDS];
	int n_kids;
	sigset_t sigs, old_mask;
	bool stop_requested;    /* SIGINT/SIGTERM/SIGHUP seen */
	int stop_signal;
	int n_signals;          /* how many: a second one skips the grace */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: veil up [--model PATH] [--tee auto|sim] [--nodes N] [--port P]\n"
		"               [--state-dir DIR] [--once]\n"
		"\n"
		"Brings the private stack up on this machine, on 127.0.0.1: N veil-node\n"
		"processes, veil-gateway and veil-proxy, with a generated admin token, API key\n"
		"and a policy pinning exactly the binaries, configurations and model launched.\n"
		"Runs one verified chat as a self-check, prints the proxy's OpenAI URL and\n"
		"serves until interrupted (Ctrl-C), then stops every process.\n"
		"\n"
		"  --model PATH      GGUF model (default: $VEIL_MODEL, ./models/stories260K.gguf,\n"
		"                    ../shared/models/stories260K.gguf)\n"
		"  --tee auto|sim    auto (default): a real TDX guest when there is one, else\n"
		"                    the SIMULATED TEE (a SEV-SNP guest is refused: veil up's\n"
		"                    policy cannot be met there); sim: always simulated\n"
		"  --nodes N         veil-node processes (default 1, at most %d)\n"
		"  --port P          the proxy's port on 127.0.0.1 (default 8080)\n"
		"  --state-dir DIR   keep the database, policy, keys, logs, receipts and\n"
		"                    up.json (URLs, API key, paths) in DIR; default: a\n"
		"                    temporary directory removed at exit\n"
		"  --once            exit after the self-check (0 when it passed)\n"
		"\n"
		"The binaries veil-node, veil-gateway and veil-proxy are taken from the\n"
		"directory of this veil binary.  Exit status: 0 stopped cleanly (or --once\n"
		"self-check passed), 1 a start-up step, the self-check or a child failed,\n"
		"2 usage error.\n",
		UP_MAX_NODES);
}

/* ---- small helpers ------------------------------------------------------ */

static int parse_int(const char *s, long lo, long hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

static int hash_file(const char *path, const EVP_MD *md, char *hex, size_t cap)
{
	uint8_t buf[1 << 16], d[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t r = 0;
	int rc = VEIL_EIO;

	if (fd < 0 || !ctx || !EVP_DigestInit_ex(ctx, md, NULL))
		goto out;
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		EVP_DigestUpdate(ctx, buf, (size_t)r);
	if (r < 0 || !EVP_DigestFinal_ex(ctx, d, &dlen))
		goto out;
	rc = veil_hex_encode(d, dlen, hex, cap);
out:
	if (rc < 0)
		veil_errf(VEIL_EIO, "cannot hash %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	EVP_MD_CTX_free(ctx);
	return rc;
}

static void sha384_hex(const void *p, size_t n, char hex[97])
{
	uint8_t d[48];
	unsigned len = 48;

	EVP_Digest(p, n, d, &len, EVP_sha384(), NULL);
	veil_hex_encode(d, 48, hex, 97);
}

/* Writes `len` bytes to path atomically (temp file + rename), mode 0600:
 * up.json and the policy are read by other processes while veil up runs. */
static int write_file(const char *path, const void *p, size_t len)
{
	char tmp[PATH_MAX];
	int fd, rc = VEIL_EIO;
	const uint8_t *b = p;
	size_t off = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return veil_errf(VEIL_ERANGE, "path too long: %s", path);
	unlink(tmp); /* a leftover of an interrupted write */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return veil_errf(VEIL_EIO, "cannot write %s: %s", tmp, strerror(errno));
	while (off < len) {
		ssize_t w = write(fd, b + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto out;
		off += (size_t)w;
	}
	if (fsync(fd) < 0)
		goto out;
	if (close(fd) < 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0) {
		veil_errf(VEIL_EIO, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

static int write_json(const char *path, json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	int rc;

	if (!s)
		return veil_errf(VEIL_ENOMEM, "JSON for %s", path);
	rc = write_file(path, s, strlen(s));
	veil_wipe(s, strlen(s)); /* up.json holds the API key */
	free(s);
	return rc;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* Last `n` lines of a child's log on stderr, indented: what a failure
 * report shows (servers never log prompts, answers or keys).  Only the
 * log's last 64 KiB are read. */
static void show_log_tail(const struct kid *k, int n)
{
	char buf[65536];
	const char *s = buf, *p;
	int fd = open(k->log, O_RDONLY | O_CLOEXEC), lines = 0;
	off_t size = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
	ssize_t r = -1;

	if (size >= 0 && lseek(fd, size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0,
			       SEEK_SET) >= 0)
		r = read(fd, buf, sizeof(buf) - 1);
	if (fd >= 0)
		close(fd);
	if (r <= 0) {
		fprintf(stderr, "  (nothing in %s)\n", k->log);
		return;
	}
	buf[r] = '\0';
	p = s + r;
	if (p > s && p[-1] == '\n')
		p--;
	while (p > s && lines < n)
		if (*--p == '\n')
			lines++;
	if (*p == '\n')
		p++;
	fprintf(stderr, "  last lines of %s:\n", k->log);
	while (*p) {
		const char *e = strchr(p, '\n');
		int len = e ? (int)(e - p) : (int)strlen(p);

		fprintf(stderr, "    %.*s\n", len, p);
		if (!e)
			break;
		p = e + 1;
	}
}

/* ---- signals and children ----------------------------------------------- */

/* Reaps every child of ours that has exited (by pid).  Returns the first
 * newly reaped one, or NULL. */
static struct kid *reap(struct up *u)
{
	struct kid *first = NULL;

	for (int i = 0; i < u->n_kids; i++) {
		struct kid *k = &u->kids[i];
		int st;

		if (!k->pid || k->reaped)
			continue;
		if (waitpid(k->pid, &st, WNOHANG) == k->pid) {
			k->reaped = true;
			k->status = st;
			if (!first)
				first = k;
		}
	}
	return first;
}

static void describe_exit(int st, char *out, size_t cap)
{
	if (WIFEXITED(st))
		snprintf(out, cap, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(out, cap, "killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(out, cap, "stopped (status 0x%x)", st);
}

/* Waits up to ms for a signal.  Returns 1 when a stop signal came (sets
 * stop_requested), 2 when a child of ours died (*dead set), 0 on timeout. */
static int wait_event(struct up *u, unsigned ms, struct kid **dead)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	siginfo_t si;
	int sig;
	struct kid *k;

	*dead = NULL;
	if ((k = reap(u))) {
		*dead = k;
		return 2;
	}
	sig = sigtimedwait(&u->sigs, &si, &ts);
	if (sig < 0)
		return 0;
	if (sig == SIGCHLD) {
		if ((k = reap(u))) {
			*dead = k;
			return 2;
		}
		return 0;
	}
	u->stop_requested = true;
	u->stop_signal = sig;
	u->n_signals++;
	return 1;
}

static void report_dead(struct kid *k)
{
	char why[96];

	k->reported = true;
	describe_exit(k->status, why, sizeof(why));
	fprintf(stderr, "veil up: %s %s\n", k->name, why);
	show_log_tail(k, 12);
}

/* fork + exec with stdin /dev/null, stdout+stderr to `log` (or to
 * out_fd when >= 0, stderr still to log), the caller's signal mask
 * restored, a process group of its own, and PR_SET_PDEATHSIG. */
static int spawn(struct up *u, const char *log, char *const argv[], char *const envp[],
		 int out_fd, pid_t *pid_out)
{
	int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pid_t parent = getpid(), pid;

	if (logfd < 0 || nullfd < 0) {
		int e = errno;

		if (logfd >= 0)
			close(logfd);
		if (nullfd >= 0)
			close(nullfd);
		return veil_errf(VEIL_EIO, "cannot open %s: %s", log, strerror(e));
	}
	pid = fork();
	if (pid < 0) {
		close(logfd);
		close(nullfd);
		return veil_errf(VEIL_EIO, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		/* the child: veil up has no other thread, so the libc state
		 * copied by fork is consistent; still, nothing but these calls */
		setpgid(0, 0);
		/* SIGTERM, not SIGKILL: every server's own shutdown is bounded
		 * and wipes its keys */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &u->old_mask, NULL);
		if (dup2(nullfd, 0) < 0 || dup2(out_fd >= 0 ? out_fd : logfd, 1) < 0 ||
		    dup2(logfd, 2) < 0)
			_exit(127);
		execve(argv[0], argv, envp);
		dprintf(2, "veil up: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid); /* both sides: no race with the first kill */
	close(logfd);
	close(nullfd);
	*pid_out = pid;
	return 0;
}

static struct kid *new_kid(struct up *u, enum kid_role role, const char *name)
{
	struct kid *k = &u->kids[u->n_kids++];

	memset(k, 0, sizeof(*k));
	k->role = role;
	snprintf(k->name, sizeof(k->name), "%s", name);
	return k;
}

/* Stops the children of `role`: SIGTERM to each process group, then waits
 * up to the grace, then SIGKILL.  A second stop signal (the first one
 * started the stop, or came during it) skips the grace. */
static void stop_role(struct up *u, enum kid_role role)
{
	uint64_t deadline = veil_now_ns() + (uint64_t)UP_STOP_GRACE_MS * 1000000ull;
	bool left, killed = false;

	for (int i = 0; i < u->n_kids; i++)
		if (u->kids[i].role == role && u->kids[i].pid && !u->kids[i].reaped)
			kill(-u->kids[i].pid, SIGTERM);
	for (;;) {
		struct timespec ts = {0, UP_POLL_MS * 1000000L};
		siginfo_t si;
		int sig;

		reap(u);
		left = false;
		for (int i = 0; i < u->n_kids; i++)
			if (u->kids[i].role == role && u->kids[i].pid && !u->kids[i].reaped)
				left = true;
		if (!left)
			break;
		if (!killed && (veil_now_ns() > deadline || u->n_signals >= 2)) {
			for (int i = 0; i < u->n_kids; i++) {
				struct kid *k = &u->kids[i];

				if (k->role == role && k->pid && !k->reaped) {
					fprintf(stderr, "veil up: %s did not stop in %d s: "
						"killing it\n", k->name, UP_STOP_GRACE_MS / 1000);
					kill(-k->pid, SIGKILL);
				}
			}
			killed = true;
		}
		sig = sigtimedwait(&u->sigs, &si, &ts);
		if (sig > 0 && sig != SIGCHLD) {
			u->stop_requested = true;
			u->n_signals++;
		}
	}
}

/* Returns true when every child stopped with status 0 (or by the SIGTERM
 * it was sent). */
static bool stop_all(struct up *u)
{
	bool clean = true;

	stop_role(u, KID_PROXY);
	stop_role(u, KID_GATEWAY);
	stop_role(u, KID_NODE);
	for (int i = 0; i < u->n_kids; i++) {
		struct kid *k = &u->kids[i];

		if (!k->pid || k->reported)
			continue;
		if (!(WIFEXITED(k->status) && WEXITSTATUS(k->status) == 0) &&
		    !(WIFSIGNALED(k->status) && WTERMSIG(k->status) == SIGTERM)) {
			char why[96];

			describe_exit(k->status, why, sizeof(why));
			fprintf(stderr, "veil up: %s %s while stopping\n", k->name, why);
			clean = false;
		}
	}
	return clean;
}

/* ---- start-up steps ----------------------------------------------------- */

static int find_binaries(struct up *u)
{
	static const char *const names[] = {"veil-node", "veil-gateway", "veil-proxy"};
	ssize_t n = readlink("/proc/self/exe", u->self, sizeof(u->self) - 1);
	char *slash;

	if (n <= 0) {
		fprintf(stderr, "veil up: cannot read /proc/self/exe: %s\n", strerror(errno));
		return -1;
	}
	u->self[n] = '\0';
	snprintf(u->bin_dir, sizeof(u->bin_dir), "%s", u->self);
	if (!(slash = strrchr(u->bin_dir, '/')))
		return -1;
	*slash = '\0';
	for (size_t i = 0; i < VEIL_ARRAY_LEN(names); i++) {
		char p[PATH_MAX + 32];

		snprintf(p, sizeof(p), "%s/%s", u->bin_dir, names[i]);
		if (access(p, X_OK) != 0) {
			fprintf(stderr, "veil up: %s is missing: veil up runs the servers "
				"found next to the veil binary (build them with make all)\n", p);
			return -1;
		}
	}
	return 0;
}

/* Resolves the model, checks it is a GGUF file, derives its name the way
 * veil-node does (file name without .gguf). */
static int check_model(struct up *u)
{
	char found[PATH_MAX];
	uint8_t magic[4];
	struct stat st;
	const char *base;
	size_t len;
	int fd;

	if (veil_cli_find_model(u->model_arg, found, sizeof(found)) < 0)
		return -1;
	if (!realpath(found, u->model)) {
		fprintf(stderr, "veil up: model %s: %s\n", found, strerror(errno));
		return -1;
	}
	if (stat(u->model, &st) < 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "veil up: model %s is not a regular file\n", found);
		return -1;
	}
	fd = open(u->model, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, magic, 4) != 4 || memcmp(magic, "GGUF", 4) != 0) {
		fprintf(stderr, "veil up: model %s is not a GGUF file (no GGUF magic)\n",
			found);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	base = strrchr(u->model, '/');
	base = base ? base + 1 : u->model;
	len = strlen(base);
	if (len > 5 && !strcmp(base + len - 5, ".gguf"))
		len -= 5;
	if (len >= sizeof(u->model_name)) {
		fprintf(stderr, "veil up: model file name too long\n");
		return -1;
	}
	snprintf(u->model_name, sizeof(u->model_name), "%.*s", (int)len, base);
	return 0;
}

/* A clear message now beats the proxy's bind error later (the port may
 * still be taken between this check and the proxy's bind: it then fails
 * and veil up reports it). */
static int check_port(int port)
{
	struct sockaddr_in a = {0};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc = 0;

	if (fd < 0)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (errno == EADDRINUSE)
			fprintf(stderr, "veil up: port %d on 127.0.0.1 is already in use "
				"(another veil up?); pick another with --port P\n", port);
		else
			fprintf(stderr, "veil up: cannot bind 127.0.0.1:%d: %s\n", port,
				strerror(errno));
		rc = -1;
	}
	close(fd);
	return rc;
}

static int make_state_dir(struct up *u)
{
	char logs[PATH_MAX];

	if (u->state_arg) {
		if (mkdir(u->state_arg, 0700) < 0 && errno != EEXIST) {
			fprintf(stderr, "veil up: cannot create %s: %s\n", u->state_arg,
				strerror(errno));
			return -1;
		}
		char full[PATH_MAX];

		if (!realpath(u->state_arg, full)) {
			fprintf(stderr, "veil up: %s: %s\n", u->state_arg, strerror(errno));
			return -1;
		}
		if (strlen(full) >= sizeof(u->state)) {
			fprintf(stderr, "veil up: --state-dir path too long\n");
			return -1;
		}
		/* it holds the admin token and the API key, and files found
		 * there are used: another user's directory (or one others may
		 * write to) could hand us their token or a symlink */
		{
			struct stat st;

			if (stat(full, &st) < 0 || !S_ISDIR(st.st_mode) ||
			    st.st_uid != geteuid() || (st.st_mode & 022)) {
				fprintf(stderr, "veil up: --state-dir %s is not a directory of "
					"yours that only you can write to (it will hold secrets)\n",
					full);
				return -1;
			}
		}
		snprintf(u->state, sizeof(u->state), "%s", full);
	} else {
		const char *t = getenv("TMPDIR");

		if (!t || !*t || strlen(t) > sizeof(u->state) - 32)
			t = "/tmp";
		snprintf(u->state, sizeof(u->state), "%s/veil-up.XXXXXX", t);
		if (!mkdtemp(u->state)) {
			fprintf(stderr, "veil up: cannot create a temporary directory: %s\n",
				strerror(errno));
			return -1;
		}
		u->temp_state = true;
	}
	/* one veil up per state directory: both would own its registry */
	snprintf(logs, sizeof(logs), "%s/up.lock", u->state);
	u->lock_fd = open(logs, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (u->lock_fd < 0 || flock(u->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "veil up: %s is in use by another veil up\n", u->state);
		return -1;
	}
	snprintf(logs, sizeof(logs), "%s/logs", u->state);
	if (mkdir(logs, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "veil up: cannot create %s: %s\n", logs, strerror(errno));
		return -1;
	}
	snprintf(u->admin_token_file, sizeof(u->admin_token_file), "%s/admin.token", u->state);
	snprintf(u->policy_file, sizeof(u->policy_file), "%s/policy.json", u->state);
	snprintf(u->receipts_file, sizeof(u->receipts_file), "%s/receipts.jsonl", u->state);
	return 0;
}

/* 32 random bytes as hex, mode 0600; an existing token (a kept state
 * directory) is kept. */
static int make_admin_token(struct up *u)
{
	uint8_t r[32];
	char hex[66];
	int rc;

	if (access(u->admin_token_file, R_OK) == 0)
		return 0;
	veil_random(r, sizeof(r));
	veil_hex_encode(r, sizeof(r), hex, sizeof(hex));
	strcat(hex, "\n");
	rc = write_file(u->admin_token_file, hex, strlen(hex));
	veil_wipe(r, sizeof(r));
	veil_wipe(hex, sizeof(hex));
	if (rc < 0)
		veil_cli_error("admin token", rc);
	return rc;
}

static int run_capture(struct up *u, char *const argv[], const char *log,
		       struct veil_buf *out);

/* The configuration a server measures, as it prints it with
 * --print-config (argv: its command line with that flag), into hex. */
static int measured_config(struct up *u, char *const argv[], char hex[97])
{
	struct veil_buf b = VEIL_BUF_INIT(65536);
	char log[PATH_MAX];
	size_t n;
	int st, rc = -1;

	snprintf(log, sizeof(log), "%s/logs/print-config.log", u->state);
	st = run_capture(u, argv, log, &b);
	if (st != 0 || !b.data || !b.len) {
		fprintf(stderr, "veil up: %s --print-config failed (exit %d; see %s)\n", argv[0],
			st, log);
		goto out;
	}
	n = b.len;
	if (b.data[n - 1] == '\n')
		n--;
	sha384_hex(b.data, n, hex);
	rc = 0;
out:
	veil_buf_free(&b);
	return rc;
}

static int gateway_argv(const struct up *u, const char *nodes_json, char *bin, char *db,
			char **argv);

static int measure_gateway(struct up *u, const char *nodes_json)
{
	char path[PATH_MAX + 32], db[PATH_MAX];
	char *argv[20];
	int rc, i;

	snprintf(path, sizeof(path), "%s/veil-gateway", u->bin_dir);
	if ((rc = hash_file(path, EVP_sha384(), u->gw_bin_h, sizeof(u->gw_bin_h))) < 0) {
		veil_cli_error("measuring", rc);
		return -1;
	}
	i = gateway_argv(u, nodes_json, path, db, argv);
	argv[i++] = "--print-config";
	argv[i] = NULL;
	if (measured_config(u, argv, u->gw_cfg_h) < 0)
		return -1;
	u->have_gw_pins = true;
	return 0;
}

static int node_argv(const struct up *u, char *bin, char *threads, char **argv);

static int measure_node(struct up *u)
{
	char path[PATH_MAX + 32], threads[16];
	char *argv[16];
	int rc, i;

	snprintf(path, sizeof(path), "%s/veil-node", u->bin_dir);
	if ((rc = hash_file(path, EVP_sha384(), u->node_bin_h, sizeof(u->node_bin_h))) < 0 ||
	    (rc = hash_file(u->model, EVP_sha384(), u->model_h, sizeof(u->model_h))) < 0 ||
	    (rc = hash_file(u->model, EVP_sha256(), u->model_sha256,
			    sizeof(u->model_sha256))) < 0) {
		veil_cli_error("measuring", rc);
		return -1;
	}
	snprintf(threads, sizeof(threads), "%d", u->threads);
	i = node_argv(u, path, threads, argv);
	argv[i++] = "--print-config";
	argv[i] = NULL;
	return measured_config(u, argv, u->node_cfg_h);
}

/* veil-node's command line (at most 9 entries and NULL); returns the
 * count. */
static int node_argv(const struct up *u, char *bin, char *threads, char **argv)
{
	int i = 0;

	argv[i++] = bin;
	argv[i++] = "--model";
	argv[i++] = (char *)u->model;
	argv[i++] = "--listen";
	argv[i++] = NODE_LISTEN;
	argv[i++] = "--tee";
	argv[i++] = (char *)u->tee;
	if (u->threads > 0) {
		argv[i++] = "--threads";
		argv[i++] = threads;
	}
	argv[i] = NULL;
	return i;
}

static int start_nodes(struct up *u)
{
	char bin[PATH_MAX + 32], threads[16];
	char *argv[12];

	snprintf(bin, sizeof(bin), "%s/veil-node", u->bin_dir);
	snprintf(threads, sizeof(threads), "%d", u->threads);
	node_argv(u, bin, threads, argv);
	for (int i = 0; i < u->n_nodes; i++) {
		char name[32];
		struct kid *k;
		int rc;

		snprintf(name, sizeof(name), "node %d", i);
		k = new_kid(u, KID_NODE, name);
		snprintf(k->log, sizeof(k->log), "%s/logs/node-%d.log", u->state, i);
		unlink(k->log);
		if ((rc = spawn(u, k->log, argv, environ, -1, &k->pid)) < 0) {
			veil_cli_error(name, rc);
			return -1;
		}
	}
	return 0;
}

/* Scans a child's log for "listening on http(s)://ADDR:PORT" (a short
 * line, far below the logger's 1023-byte cap).  What a node measured is not
 * read from its log but from its report (check_node_report).  Returns 1
 * when the listening line is there. */
static int scan_log(struct kid *k)
{
	struct veil_buf b = VEIL_BUF_INIT(UP_LOG_SCAN);
	const char *s, *p;
	int fd = open(k->log, O_RDONLY | O_CLOEXEC);
	int found = 0;

	if (fd < 0)
		return 0;
	/* the first UP_LOG_SCAN bytes: the line comes at start */
	while (b.len < UP_LOG_SCAN) {
		ssize_t r;

		if (veil_buf_reserve(&b, 65536) < 0)
			break;
		r = read(fd, b.data + b.len, VEIL_MIN(b.cap - b.len - 1, UP_LOG_SCAN - b.len));
		if (r <= 0)
			break;
		b.len += (size_t)r;
		b.data[b.len] = '\0';
	}
	close(fd);
	if (!b.data)
		return 0;
	s = (const char *)b.data;
	for (p = s; (p = strstr(p, "listening on http")); p++) {
		char scheme[8];
		unsigned port;
		int n = 0;

		if (sscanf(p, "listening on %5[^:]://127.0.0.1:%u%n", scheme, &port, &n) == 2 &&
		    n > 0 && port > 0 && port < 65536 &&
		    (!strcmp(scheme, "http") || !strcmp(scheme, "https"))) {
			snprintf(k->url, sizeof(k->url), "%s://127.0.0.1:%u", scheme, port);
			found = 1;
			break;
		}
	}
	veil_buf_free(&b);
	return found;
}

/* Waits until every child in [from, to) has logged its listening line. */
static int wait_listening(struct up *u, int from, int to, unsigned ms)
{
	uint64_t deadline = veil_now_ns() + (uint64_t)ms * 1000000ull;

	for (;;) {
		struct kid *dead;
		bool all = true;

		for (int i = from; i < to; i++)
			if (!u->kids[i].url[0] && !scan_log(&u->kids[i]))
				all = false;
		if (all)
			return 0;
		if (veil_now_ns() > deadline) {
			for (int i = from; i < to; i++)
				if (!u->kids[i].url[0]) {
					fprintf(stderr, "veil up: %s did not start listening "
						"within %u s\n", u->kids[i].name, ms / 1000);
					show_log_tail(&u->kids[i], 12);
				}
			return -1;
		}
		switch (wait_event(u, UP_POLL_MS, &dead)) {
		case 1:
			return -1;
		case 2:
			report_dead(dead);
			return -1;
		default:
			break;
		}
	}
}

static int write_nodes_json(const struct up *u, char *path, size_t cap)
{
	json_t *a = json_array();
	int rc;

	snprintf(path, cap, "%s/nodes.json", u->state);
	for (int i = 0; i < u->n_kids; i++)
		if (u->kids[i].role == KID_NODE)
			json_array_append_new(a, json_pack("{s:s, s:s}", "url", u->kids[i].url,
							   "model", u->model_name));
	rc = write_json(path, a);
	json_decref(a);
	if (rc < 0)
		veil_cli_error("nodes.json", rc);
	return rc;
}

static json_t *str_list(const char *s)
{
	return json_pack("[s]", s);
}

/* veil-policy/1 pinning exactly what was launched. */
static int write_policy(struct up *u)
{
	json_t *p, *models, *m;
	struct veil_policy *check = NULL;
	bool sim = !strcmp(u->tee_kind, "sim");
	int rc;

	m = json_pack("{s:o, s:o, s:o, s:o}", "node_binary", str_list(u->node_bin_h),
		      "node_config", str_list(u->node_cfg_h), "model", str_list(u->model_h),
		      "model_sha256", str_list(u->model_sha256));
	models = json_object();
	json_object_set_new(models, u->model_name, m);
	p = json_pack("{s:s, s:[s], s:b, s:s, s:o, s:s}", "version", VEIL_POLICY_VERSION,
		      "tee", u->tee_kind, "allow_sim", sim, "min_tcb_status", "UpToDate",
		      "models", models, "other_models", "refuse");
	if (p && u->have_gw_pins)
		json_object_set_new(p, "gateway",
				    json_pack("{s:o, s:o}", "gateway_binary",
					      str_list(u->gw_bin_h), "gateway_config",
					      str_list(u->gw_cfg_h)));
	if (!p) {
		fprintf(stderr, "veil up: out of memory\n");
		return -1;
	}
	/* what the servers will load must load here first */
	{
		char *s = json_dumps(p, JSON_COMPACT);

		rc = s ? veil_policy_load((const uint8_t *)s, strlen(s), &check) : VEIL_ENOMEM;
		free(s);
	}
	if (rc == 0)
		rc = write_json(u->policy_file, p);
	veil_policy_free(check);
	json_decref(p);
	if (rc < 0) {
		veil_cli_error("policy", rc);
		return -1;
	}
	return 0;
}

/* Runs a short-lived program, its stdout captured (capped, secret: the API
 * key), stderr to `log`.  Returns its exit status or -1. */
static int run_capture(struct up *u, char *const argv[], const char *log, struct veil_buf *out)
{
	int fds[2], st = 0;
	pid_t pid;
	int rc;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	rc = spawn(u, log, argv, environ, fds[1], &pid);
	close(fds[1]);
	if (rc < 0) {
		close(fds[0]);
		veil_cli_error(argv[0], rc);
		return -1;
	}
	veil_buf_read_fd(out, fds[0]);
	close(fds[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	/* a stop signal that came meanwhile is taken by the next wait */
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The API key: kept from an earlier run with the same state directory
 * (api.key), else created with `veil-gateway keys create` (its last line). */
static int make_api_key(struct up *u)
{
	char keyfile[PATH_MAX], db[PATH_MAX], bin[PATH_MAX + 32], log[PATH_MAX];
	struct veil_buf b = VEIL_BUF_SECRET_INIT(65536);
	char *argv[] = {bin, "keys", "create", "--db", db, "--name", "veil-up", NULL};
	char *line, *end;
	int st, rc = -1;

	snprintf(keyfile, sizeof(keyfile), "%s/api.key", u->state);
	if (veil_buf_read_file(&b, keyfile) == 0 && b.len > 0) {
		for (end = (char *)b.data + b.len; end > (char *)b.data &&
		     (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\r'); end--)
			;
		*end = '\0';
		if (*b.data && strlen((char *)b.data) < sizeof(u->api_key) &&
		    !strpbrk((char *)b.data, " \n")) {
			snprintf(u->api_key, sizeof(u->api_key), "%s", (char *)b.data);
			veil_buf_free(&b);
			return 0;
		}
	}
	veil_buf_reset(&b);
	snprintf(db, sizeof(db), "sqlite:%s/gateway.db", u->state);
	snprintf(bin, sizeof(bin), "%s/veil-gateway", u->bin_dir);
	snprintf(log, sizeof(log), "%s/logs/keys.log", u->state);
	st = run_capture(u, argv, log, &b);
	if (st != 0 || !b.len) {
		struct kid k = {0};

		fprintf(stderr, "veil up: veil-gateway keys create failed (status %d)\n", st);
		snprintf(k.log, sizeof(k.log), "%s", log);
		show_log_tail(&k, 8);
		goto out;
	}
	/* the last non-empty line */
	end = (char *)b.data + b.len;
	while (end > (char *)b.data && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
		*--end = '\0';
	line = strrchr((char *)b.data, '\n');
	line = line ? line + 1 : (char *)b.data;
	if (!*line || strlen(line) >= sizeof(u->api_key) || strpbrk(line, " \t")) {
		fprintf(stderr, "veil up: veil-gateway keys create printed no key\n");
		goto out;
	}
	snprintf(u->api_key, sizeof(u->api_key), "%s", line);
	{
		char kl[UP_KEY_MAX + 2];
		int n = snprintf(kl, sizeof(kl), "%s\n", u->api_key);

		rc = write_file(keyfile, kl, (size_t)n);
		veil_wipe(kl, sizeof(kl));
		if (rc < 0) {
			veil_cli_error("api.key", rc);
			goto out;
		}
	}
	rc = 0;
out:
	veil_buf_free(&b);
	return rc;
}

static size_t get_cb(char *p, size_t sz, size_t n, void *arg)
{
	return veil_buf_append(arg, p, sz * n) == 0 ? sz * n : 0;
}

/* GET of a process we started, on loopback: the HTTP status (body into b,
 * capped), or -1 when no answer.  TLS peers are not authenticated here:
 * these requests only ask how far start-up is and carry nothing secret
 * except the admin token, to a gateway veil up itself just started; trust
 * in what serves comes from the attestation the proxy verifies. */
static long http_req(const char *method, const char *url, const char *bearer,
		     struct veil_buf *b)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	struct veil_buf auth = VEIL_BUF_SECRET_INIT(1024);
	long code = -1;

	if (!c)
		return -1;
	veil_buf_reset(b);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, get_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	if (strcmp(method, "GET"))
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (bearer && veil_buf_appendf(&auth, "Authorization: Bearer %s", bearer) == 0) {
		h = curl_slist_append(NULL, (const char *)auth.data);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	}
	if (curl_easy_perform(c) != CURLE_OK ||
	    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
		code = -1;
	if (h) /* the header line held the token */
		veil_wipe(h->data, strlen(h->data));
	curl_slist_free_all(h);
	veil_buf_free(&auth);
	curl_easy_cleanup(c);
	return code;
}

static long http_get(const char *url, const char *bearer, struct veil_buf *b)
{
	return http_req("GET", url, bearer, b);
}

static bool is_our_node(const struct up *u, const char *url)
{
	for (int i = 0; url && i < u->n_kids; i++)
		if (u->kids[i].role == KID_NODE && !strcmp(u->kids[i].url, url))
			return true;
	return false;
}

/* One poll step: 0 go on, -1 stop (a signal, a dead child, the deadline). */
static int poll_step(struct up *u, struct kid *k, uint64_t deadline, const char *what)
{
	struct kid *dead;

	if (veil_now_ns() > deadline) {
		fprintf(stderr, "veil up: %s: %s\n", k->name, what);
		show_log_tail(k, 12);
		return -1;
	}
	switch (wait_event(u, 10, &dead)) {
	case 1:
		return -1;
	case 2:
		report_dead(dead);
		return -1;
	default:
		return 0;
	}
}

/* What a node measures into RTMR3 (eventlog.h), in the order it extends
 * them and the policy pins them, with what veil up computed for each. */
struct node_meas {
	const char *what;       /* how the message names it */
	const char *event;      /* the runtime event's name */
	const char *mine;       /* veil up's value, lower-case hex */
	const char *hint;       /* the likely cause */
};

/* Fetches node k's report (GET /v1/attestation/report?nonce=..., a fresh
 * one, as the gateway does) and compares the veil runtime events of its
 * event log (name, payload; their digests checked against the payloads)
 * with what veil up computed, naming the first measurement that differs.
 * The report, not the node's log, is what the gateway and the proxy judge:
 * this is their check made early, with a message that says which
 * measurement and why.  Not a verification of the evidence (the gateway
 * does that): only whether the policy veil up is about to write can pass.
 * Sets k->tee from the report; a SEV-SNP node is refused (see below).
 * 0 or -1 (reported). */
static int check_node_report(struct up *u, struct kid *k, uint64_t deadline)
{
	const struct node_meas meas[] = {
		{"binary", VEIL_EVLOG_NODE_BINARY, u->node_bin_h,
		 "is veil-node the file veil up hashed, from the same build as veil?"},
		{"configuration", VEIL_EVLOG_NODE_CONFIG, u->node_cfg_h,
		 "veil up and veil-node disagree on the configuration's form: "
		 "src/node/main.c config_json"},
		{"model file", VEIL_EVLOG_MODEL, u->model_h,
		 "did the model file change while veil up started?"},
		{"model sha256", VEIL_EVLOG_MODEL_SHA256, u->model_sha256,
		 "did the model file change while veil up started?"},
	};
	struct veil_buf b = VEIL_BUF_INIT(VEIL_REPORT_MAX);
	struct veil_evlog log = VEIL_EVLOG_INIT;
	uint8_t nonce[32];
	char nhex[65], url[256];
	const char *tee, *rn;
	json_t *j = NULL;
	long code;
	int rc = -1, e;

	veil_random(nonce, sizeof(nonce));
	veil_hex_encode(nonce, sizeof(nonce), nhex, sizeof(nhex));
	snprintf(url, sizeof(url), "%s/v1/attestation/report?nonce=%s", k->url, nhex);
	for (;;) {
		code = http_get(url, NULL, &b);
		if (code == 200)
			break;
		/* 503: reports being made (attestation_busy), try again */
		if (code != 503 && code != -1) {
			fprintf(stderr, "veil up: %s answered HTTP %ld to GET "
				"/v1/attestation/report: %.*s\n", k->name, code,
				(int)VEIL_MIN(b.len, 300), b.data ? (const char *)b.data : "");
			goto out;
		}
		if (poll_step(u, k, deadline, "no attestation report in time") < 0)
			goto out;
	}
	j = b.data ? json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, NULL)
		   : NULL;
	tee = json_string_value(json_object_get(j, "tee"));
	rn = json_string_value(json_object_get(j, "nonce"));
	if (!json_is_object(j) ||
	    !json_is_string(json_object_get(j, "version")) ||
	    strcmp(json_string_value(json_object_get(j, "version")), VEIL_REPORT_VERSION) ||
	    !tee || (strcmp(tee, "tdx") && strcmp(tee, "sev-snp") && strcmp(tee, "sim")) ||
	    !rn || strcmp(rn, nhex)) {
		fprintf(stderr, "veil up: %s did not answer a %s report for veil up's nonce "
			"(tee tdx, sev-snp or sim)\n", k->name, VEIL_REPORT_VERSION);
		goto out;
	}
	snprintf(k->tee, sizeof(k->tee), "%s", tee);
	/* SEV-SNP is refused before anything else: the policy veil up writes
	 * pins the servers' RTMR3 measurements and min_tcb_status, and a
	 * SEV-SNP report has no RTMRs (its event log is unauthenticated JSON)
	 * and no DCAP TCB status, so the policy code refuses both for it
	 * (src/lib/attest/policy.c check_pin, check_tcb) and the gateway would
	 * refuse every node at step 4.  A policy of snp_measurement, host_data
	 * and snp_min_tcb would pass the gateway and the proxy, but the
	 * self-check would not: veil chat requires the model hash the quote
	 * binds, which SEV-SNP cannot bind (model_sha256_bound false). */
	if (!strcmp(tee, "sev-snp")) {
		fprintf(stderr, "veil up: %s runs in a SEV-SNP guest, which veil up does not "
			"support: its policy pins RTMR3 measurements, which a SEV-SNP report cannot "
			"authenticate (no RTMRs), so the gateway would refuse every node.  Use --tee "
			"sim for a demo, or start the servers yourself with a policy of "
			"snp_measurement, host_data and snp_min_tcb (veil policy init; "
			"docs/policy.md)\n", k->name);
		goto out;
	}
	if ((e = veil_evlog_from_json(json_object_get(j, "event_log"), &log)) < 0 ||
	    (e = veil_evlog_check_runtime(&log)) < 0) {
		fprintf(stderr, "veil up: %s's event log: %s (%s)\n", k->name, veil_strerror(e),
			veil_err_detail());
		goto out;
	}
	for (size_t i = 0; i < VEIL_ARRAY_LEN(meas); i++) {
		const struct veil_evlog_event *ev = NULL;
		char hex[2 * 48 + 1] = "";

		e = veil_evlog_find_runtime(&log, meas[i].event, &ev);
		if (e == VEIL_ENOENT) {
			fprintf(stderr, "veil up: %s's %s measurement is missing: its event log has "
				"no %s event, so the policy would refuse it (is veil-node from "
				"the same build as veil?)\n", k->name, meas[i].what, meas[i].event);
			goto out;
		}
		if (e < 0) {
			fprintf(stderr, "veil up: %s's %s measurement: %s\n", k->name, meas[i].what,
				veil_err_detail());
			goto out;
		}
		if (ev->payload_len <= 48)
			veil_hex_encode(ev->payload, ev->payload_len, hex, sizeof(hex));
		if (strcmp(hex, meas[i].mine)) {
			fprintf(stderr, "veil up: %s's %s measurement differs: the node measured "
				"%s (event %s), veil up computed %s; the policy would refuse it "
				"(%s)\n", k->name, meas[i].what, hex[0] ? hex : "(not a digest)",
				meas[i].event, meas[i].mine, meas[i].hint);
			goto out;
		}
	}
	rc = 0;
out:
	veil_evlog_free(&log);
	json_decref(j);
	veil_buf_free(&b);
	return rc;
}

/* Step 2.  Every node must run the TEE kind the others run (not SEV-SNP),
 * and must have measured exactly what veil up computed
 * (check_node_report). */
static int check_nodes(struct up *u)
{
	uint64_t deadline = veil_now_ns() + (uint64_t)UP_SERVER_START_MS * 1000000ull;

	for (int i = 0; i < u->n_kids; i++) {
		struct kid *k = &u->kids[i];

		if (k->role != KID_NODE)
			continue;
		if (check_node_report(u, k, deadline) < 0)
			return -1;
		if (!u->tee_kind[0])
			snprintf(u->tee_kind, sizeof(u->tee_kind), "%s", k->tee);
		else if (strcmp(u->tee_kind, k->tee)) {
			fprintf(stderr, "veil up: nodes use different TEEs (%s, %s)\n",
				u->tee_kind, k->tee);
			return -1;
		}
	}
	if (!strcmp(u->tee_kind, "sim"))
		fprintf(stdout, "veil up: TEE: SIMULATED (no TDX / SEV-SNP guest here): "
			"reports prove nothing about hardware\n");
	return 0;
}

static int read_admin_token(const struct up *u, char *out, size_t cap)
{
	struct veil_buf b = VEIL_BUF_SECRET_INIT(4096);
	size_t n;
	int rc = veil_buf_read_file(&b, u->admin_token_file);

	if (rc < 0) {
		veil_cli_error(u->admin_token_file, rc);
		veil_buf_free(&b);
		return -1;
	}
	for (n = b.len; n && (b.data[n - 1] == '\n' || b.data[n - 1] == '\r' ||
			       b.data[n - 1] == ' '); n--)
		;
	if (n >= cap) {
		veil_buf_free(&b);
		return -1;
	}
	memcpy(out, b.data, n);
	out[n] = '\0';
	veil_buf_free(&b);
	return 0;
}

/* The gateway is ready when it answers and has verified every node (its
 * admin API says each is usable); a node whose attestation failed ends the
 * wait at once with the gateway's reason (a policy mismatch says which
 * measurement).  Then the gateway's own measurements, from its report, are
 * compared with what veil up pinned. */
static int wait_gateway(struct up *u, struct kid *k, unsigned ms)
{
	uint64_t deadline = veil_now_ns() + (uint64_t)ms * 1000000ull;
	struct veil_buf b = VEIL_BUF_INIT(4u << 20);
	char url[192], token[256];
	const char *why = "not ready";
	json_t *j = NULL;
	int rc = -1;

	if (read_admin_token(u, token, sizeof(token)) < 0)
		return -1;
	snprintf(url, sizeof(url), "%s/admin/nodes", k->url);
	for (;;) {
		long code = http_get(url, token, &b);
		json_t *data;
		size_t usable = 0;

		json_decref(j);
		j = code == 200 ? json_loadb((const char *)b.data, b.len, 0, NULL) : NULL;
		data = json_object_get(j, "data");
		for (size_t i = 0; i < json_array_size(data); i++) {
			json_t *n = json_array_get(data, i);
			const char *st = json_string_value(json_object_get(n, "state"));
			const char *nurl = json_string_value(json_object_get(n, "url"));

			if (!is_our_node(u, nurl))
				continue; /* see forget_old_nodes */
			if (json_is_true(json_object_get(n, "usable")))
				usable++;
			else if (st && !strcmp(st, "failed")) {
				const char *e = json_string_value(json_object_get(n, "last_error"));

				fprintf(stderr, "veil up: the gateway refused node %s: %s\n",
					json_string_value(json_object_get(n, "url")),
					e ? e : "(no reason given)");
				goto out;
			}
		}
		if (code == 200 && usable == (size_t)u->n_nodes)
			break;
		why = code == 200 ? "not every node verified in time" : "not answering";
		if (poll_step(u, k, deadline, why) < 0)
			goto out;
	}
	snprintf(url, sizeof(url), "%s/v1/attestation/report", k->url);
	json_decref(j);
	j = NULL;
	if (http_get(url, NULL, &b) == 200 &&
	    (j = json_loadb((const char *)b.data, b.len, 0, NULL))) {
		json_t *m = json_object_get(json_object_get(json_object_get(j, "gateway"), "report") ?
					    json_object_get(json_object_get(j, "gateway"), "report") :
					    json_object_get(j, "gateway"), "measurements");
		const char *bin = json_string_value(json_object_get(m, "gateway_binary"));
		const char *cfg = json_string_value(json_object_get(m, "gateway_config"));

		if (bin && strcmp(bin, u->gw_bin_h)) {
			fprintf(stderr, "veil up: the gateway measured its binary as %s, veil up "
				"pinned %s (is veil-gateway from the same build?)\n", bin, u->gw_bin_h);
			goto out;
		}
		if (cfg && strcmp(cfg, u->gw_cfg_h)) {
			fprintf(stderr, "veil up: the gateway measured its configuration as %s, "
				"veil up pinned %s: veil up and veil-gateway disagree on the "
				"configuration's form (src/gateway/main.c config_json)\n", cfg,
				u->gw_cfg_h);
			goto out;
		}
	}
	rc = 0;
out:
	veil_wipe(token, sizeof(token));
	json_decref(j);
	veil_buf_free(&b);
	return rc;
}

/* The proxy is ready when its first verification round (at start) passed:
 * GET /veil/status says "verified" with every node ok.  "failed" ends the
 * wait at once with the proxy's reason. */
static int wait_proxy(struct up *u, struct kid *k, unsigned ms)
{
	uint64_t deadline = veil_now_ns() + (uint64_t)ms * 1000000ull;
	struct veil_buf b = VEIL_BUF_INIT(4u << 20);
	char url[192];
	int rc = -1;

	snprintf(url, sizeof(url), "%s/veil/status", k->url);
	for (;;) {
		long code = http_get(url, NULL, &b);
		json_t *j = code == 200 ? json_loadb((const char *)b.data, b.len, 0, NULL) : NULL;
		const char *st = json_string_value(json_object_get(j, "state"));
		json_t *nodes = json_object_get(j, "nodes");
		size_t ok = 0;

		for (size_t i = 0; i < json_array_size(nodes); i++)
			if (json_is_true(json_object_get(json_array_get(nodes, i), "ok")))
				ok++;
		if (st && !strcmp(st, "verified") && ok == (size_t)u->n_nodes) {
			json_decref(j);
			rc = 0;
			break;
		}
		if (st && !strcmp(st, "failed")) {
			json_t *e = json_object_get(j, "error");

			fprintf(stderr, "veil up: the proxy refused the gateway: %s: %s\n",
				json_string_value(json_object_get(e, "code")),
				json_string_value(json_object_get(e, "message")));
			json_decref(j);
			break;
		}
		for (size_t i = 0; st && !strcmp(st, "verified") && i < json_array_size(nodes); i++) {
			json_t *n = json_array_get(nodes, i);

			if (!json_is_true(json_object_get(n, "ok"))) {
				fprintf(stderr, "veil up: the proxy refused node %s: %s\n",
					json_string_value(json_object_get(n, "id")),
					json_string_value(json_object_get(n, "error")));
				json_decref(j);
				goto out;
			}
		}
		json_decref(j);
		if (poll_step(u, k, deadline, "the gateway was not verified in time") < 0)
			break;
	}
out:
	veil_buf_free(&b);
	return rc;
}

/* A kept state directory: the gateway's database still lists the nodes of
 * the last run (its node registry, shared by gateways), whose processes are
 * gone.  The gateway would load them and try them forever; veil up owns the
 * directory, so it forgets them before the gateway starts.  Node rows do not
 * involve the API-key secret, but the store wants one: the gateway's
 * (SHA-256 of <db>.secret, as veil-gateway derives it). */
static int forget_old_nodes(struct up *u)
{
	char db[PATH_MAX], path[PATH_MAX];
	struct veil_buf b = VEIL_BUF_SECRET_INIT(4096);
	struct veil_secret sec = {0};
	struct veil_store *st = NULL;
	struct veil_store_node *v = NULL;
	size_t n = 0;
	unsigned len = 32;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/gateway.db", u->state);
	if (access(path, F_OK) != 0)
		return 0;
	snprintf(db, sizeof(db), "sqlite:%s/gateway.db", u->state);
	snprintf(path, sizeof(path), "%s/gateway.db.secret", u->state);
	if ((rc = veil_buf_read_file(&b, path)) < 0 ||
	    (rc = veil_secret_alloc(&sec, VEIL_STORE_SECRET_LEN)) < 0)
		goto out;
	EVP_Digest(b.data, b.len, sec.bytes, &len, EVP_sha256(), NULL);
	if ((rc = veil_store_open(db, &sec, &st)) < 0 ||
	    (rc = veil_store_node_list(st, &v, &n)) < 0)
		goto out;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = veil_store_node_remove(st, v[i].id);
	if (n && rc == 0)
		printf("veil up: forgot %zu node(s) of an earlier run in %s\n", n, u->state);
out:
	if (rc < 0)
		veil_cli_error("the gateway's node registry", rc);
	veil_store_nodes_free(v, n);
	veil_store_close(st);
	veil_secret_free(&sec);
	veil_buf_free(&b);
	return rc < 0 ? -1 : 0;
}

/* veil-gateway's command line (at most 14 entries and NULL) with bin
 * filled in by the caller and db (PATH_MAX) here; returns the count. */
static int gateway_argv(const struct up *u, const char *nodes_json, char *bin, char *db,
			char **argv)
{
	int i = 0;

	snprintf(db, PATH_MAX, "sqlite:%s/gateway.db", u->state);
	argv[i++] = bin;
	argv[i++] = "--listen";
	argv[i++] = "127.0.0.1:0";
	argv[i++] = "--db";
	argv[i++] = db;
	argv[i++] = "--nodes";
	argv[i++] = (char *)nodes_json;
	argv[i++] = "--admin-token-file";
	argv[i++] = (char *)u->admin_token_file;
	argv[i++] = "--policy";
	argv[i++] = (char *)u->policy_file;
	argv[i++] = "--tee";
	argv[i++] = (char *)u->tee;
	if (!strcmp(u->tee_kind, "sim"))
		argv[i++] = "--allow-sim";
	argv[i] = NULL;
	return i;
}

static int start_gateway(struct up *u, const char *nodes_json)
{
	char bin[PATH_MAX + 32], db[PATH_MAX];
	char *argv[20];
	struct kid *k = new_kid(u, KID_GATEWAY, "gateway");
	int rc;

	snprintf(bin, sizeof(bin), "%s/veil-gateway", u->bin_dir);
	snprintf(k->log, sizeof(k->log), "%s/logs/gateway.log", u->state);
	unlink(k->log);
	gateway_argv(u, nodes_json, bin, db, argv);
	if ((rc = spawn(u, k->log, argv, environ, -1, &k->pid)) < 0) {
		veil_cli_error("gateway", rc);
		return -1;
	}
	return 0;
}

/* The API key goes to the proxy in its environment ($VEIL_API_KEY), not on
 * its command line, which every local user can read in /proc. */
static int start_proxy(struct up *u, const struct kid *gw)
{
	char bin[PATH_MAX + 32], listen[32], keyenv[UP_KEY_MAX + 16];
	char *argv[16];
	char **envp = NULL;
	size_t n = 0, j = 0;
	struct kid *k = new_kid(u, KID_PROXY, "proxy");
	int i = 0, rc = -1;

	snprintf(bin, sizeof(bin), "%s/veil-proxy", u->bin_dir);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", u->port);
	snprintf(keyenv, sizeof(keyenv), "VEIL_API_KEY=%s", u->api_key);
	snprintf(k->log, sizeof(k->log), "%s/logs/proxy.log", u->state);
	unlink(k->log);
	argv[i++] = bin;
	argv[i++] = "--listen";
	argv[i++] = listen;
	argv[i++] = "--gateway";
	argv[i++] = (char *)gw->url;
	argv[i++] = "--policy";
	argv[i++] = u->policy_file;
	argv[i++] = "--receipts";
	argv[i++] = u->receipts_file;
	if (!strcmp(u->tee_kind, "sim"))
		argv[i++] = "--allow-sim";
	argv[i] = NULL;
	while (environ[n])
		n++;
	if (!(envp = calloc(n + 2, sizeof(*envp))))
		goto out;
	for (size_t e = 0; e < n; e++)
		if (strncmp(environ[e], "VEIL_API_KEY=", 13))
			envp[j++] = environ[e];
	envp[j++] = keyenv;
	envp[j] = NULL;
	if ((rc = spawn(u, k->log, argv, envp, -1, &k->pid)) < 0)
		veil_cli_error("proxy", rc);
out:
	free(envp);
	veil_wipe(keyenv, sizeof(keyenv));
	return rc < 0 ? -1 : 0;
}

static int write_up_json(const struct up *u)
{
	char path[PATH_MAX], logs[PATH_MAX], db[PATH_MAX];
	json_t *nodes = json_array(), *j;
	const char *gw = "", *proxy_log = "";
	int rc;

	for (int i = 0; i < u->n_kids; i++) {
		if (u->kids[i].role == KID_NODE)
			json_array_append_new(nodes, json_string(u->kids[i].url));
		else if (u->kids[i].role == KID_GATEWAY)
			gw = u->kids[i].url;
		else
			proxy_log = u->kids[i].log;
	}
	(void)proxy_log;
	snprintf(path, sizeof(path), "%s/up.json", u->state);
	snprintf(logs, sizeof(logs), "%s/logs", u->state);
	snprintf(db, sizeof(db), "sqlite:%s/gateway.db", u->state);
	j = json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:b}",
		      "proxy", u->proxy_url, "gateway", gw, "nodes", nodes, "api_key",
		      u->api_key, "admin_token_file", u->admin_token_file, "policy",
		      u->policy_file, "receipts", u->receipts_file, "state_dir", u->state,
		      "tee", u->tee_kind, "model", u->model_name, "model_path", u->model,
		      "db", db, "logs", logs, "pid", (json_int_t)getpid(), "temporary",
		      u->temp_state);
	if (!j) {
		fprintf(stderr, "veil up: out of memory\n");
		return -1;
	}
	rc = write_json(path, j);
	json_decref(j);
	if (rc < 0) {
		veil_cli_error("up.json", rc);
		return -1;
	}
	return 0;
}

/* `veil receipts verify` on the proxy's log: the self-check's receipt
 * re-verified offline, from what was recorded, by another process. */
static int verify_receipts_log(struct up *u)
{
	char log[PATH_MAX + 32];
	struct veil_buf b = VEIL_BUF_INIT(1 << 20);
	char *argv[] = {u->self, "receipts", "verify", u->receipts_file, "--allow-sim", NULL};
	int st;

	if (strcmp(u->tee_kind, "sim"))
		argv[4] = NULL;
	snprintf(log, sizeof(log), "%s/logs/receipts-verify.log", u->state);
	st = run_capture(u, argv, log, &b);
	if (st == 0) {
		/* its last line is the summary JSON */
		const char *last = b.len ? strrchr((const char *)b.data, '{') : NULL;
		json_t *j = last ? json_loads(last, 0, NULL) : NULL;

		printf("  receipts log re-verified offline: %lld attestation(s), %lld of %lld "
		       "receipt(s) ok (veil receipts verify %s)\n",
		       (long long)json_integer_value(json_object_get(j, "attestations_verified")),
		       (long long)json_integer_value(json_object_get(j, "receipts_ok")),
		       (long long)json_integer_value(json_object_get(j, "receipts")),
		       u->receipts_file);
		json_decref(j);
	} else {
		fprintf(stderr, "veil up: veil receipts verify %s failed (status %d)\n",
			u->receipts_file, st);
		if (b.len)
			fprintf(stderr, "%s", (char *)b.data);
	}
	veil_buf_free(&b);
	return st == 0 ? 0 : -1;
}

static int parse_args(struct up *u, int argc, char **argv)
{
	u->tee = "auto";
	u->n_nodes = 1;
	u->port = 8080;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--once")) {
			u->once = true;
			continue;
		}
		if (!v) {
			fprintf(stderr, "veil up: unknown option or missing value: %s\n", a);
			return -1;
		}
		i++;
		if (!strcmp(a, "--model")) {
			u->model_arg = v;
		} else if (!strcmp(a, "--tee")) {
			if (strcmp(v, "auto") && strcmp(v, "sim")) {
				fprintf(stderr, "veil up: --tee auto|sim\n");
				return -1;
			}
			u->tee = v;
		} else if (!strcmp(a, "--nodes")) {
			if (parse_int(v, 1, UP_MAX_NODES, &u->n_nodes) < 0) {
				fprintf(stderr, "veil up: --nodes must be 1..%d\n", UP_MAX_NODES);
				return -1;
			}
		} else if (!strcmp(a, "--port")) {
			if (parse_int(v, 1, 65535, &u->port) < 0) {
				fprintf(stderr, "veil up: --port must be 1..65535\n");
				return -1;
			}
		} else if (!strcmp(a, "--state-dir")) {
			if (!*v) {
				fprintf(stderr, "veil up: --state-dir needs a directory\n");
				return -1;
			}
			u->state_arg = v;
		} else {
			fprintf(stderr, "veil up: unknown option %s\n", a);
			return -1;
		}
	}
	return 0;
}

static void print_banner(const struct up *u)
{
	printf("\nveil is serving a private OpenAI-compatible endpoint:\n"
	       "  %s\n\n"
	       "  export OPENAI_BASE_URL=%s\n"
	       "  export OPENAI_API_KEY=local   # any value: the proxy holds the gateway key\n"
	       "  %s chat --proxy %s \"Tell me a story\"\n\n",
	       u->proxy_url, u->proxy_url, u->self, u->proxy_url);
	if (u->temp_state)
		printf("State (removed at exit): %s\n", u->state);
	else
		printf("State: %s (up.json: URLs, API key, policy)\n", u->state);
	printf("Press Ctrl-C to stop.\n");
	fflush(stdout);
}

/* Seconds since t0 (monotonic ns), for the progress lines. */
static double secs(uint64_t t0)
{
	return (double)(veil_now_ns() - t0) / 1e9;
}

static int serve(struct up *u)
{
	for (;;) {
		struct kid *dead;

		switch (wait_event(u, 1000, &dead)) {
		case 1:
			printf("\nveil up: %s: stopping\n", strsignal(u->stop_signal));
			fflush(stdout);
			return 0;
		case 2:
			report_dead(dead);
			fprintf(stderr, "veil up: stopping the rest\n");
			return -1;
		default:
			break;
		}
	}
}

int veil_cli_up(int argc, char **argv)
{
	struct up *u = calloc(1, sizeof(*u));
	char nodes_json[PATH_MAX];
	uint64_t t0 = veil_now_ns();
	int code = 1, node_from, gw_idx, proxy_idx;
	struct kid *dead;

	if (!u)
		return 1;
	u->lock_fd = -1;
	if (veil_cli_wants_help(argc, argv)) {
		usage(stdout);
		free(u);
		return 0;
	}
	if (parse_args(u, argc, argv) < 0) {
		fprintf(stderr, "run 'veil up --help' for the options\n");
		free(u);
		return 2;
	}
	/* Signals are taken synchronously (sigtimedwait): blocked from here
	 * on, with default dispositions so that a shell's "ignore SIGINT" for
	 * background jobs does not make veil up unstoppable. */
	sigemptyset(&u->sigs);
	sigaddset(&u->sigs, SIGINT);
	sigaddset(&u->sigs, SIGTERM);
	sigaddset(&u->sigs, SIGHUP);
	sigaddset(&u->sigs, SIGCHLD);
	sigprocmask(SIG_BLOCK, &u->sigs, &u->old_mask);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (find_binaries(u) < 0 || check_model(u) < 0 || check_port(u->port) < 0 ||
	    make_state_dir(u) < 0)
		goto out;
	if (u->n_nodes > 1)
		u->threads = VEIL_MAX(1, veil_cpu_count() / u->n_nodes);
	snprintf(u->proxy_url, sizeof(u->proxy_url), "http://127.0.0.1:%d/v1", u->port);
	printf("veil up: model %s (%s), %d node%s, TEE %s\n", u->model_name, u->model,
	       u->n_nodes, u->n_nodes > 1 ? "s" : "", u->tee);

	/* nodes first (the model loads while the rest is prepared) */
	node_from = u->n_kids;
	if (start_nodes(u) < 0 || make_admin_token(u) < 0 || measure_node(u) < 0 ||
	    make_api_key(u) < 0)
		goto stop;
	if (wait_listening(u, node_from, u->n_kids, UP_NODE_START_MS) < 0 || check_nodes(u) < 0)
		goto stop;
	for (int i = node_from; i < u->n_kids; i++)
		printf("veil up: %s: %s (%.2f s)\n", u->kids[i].name, u->kids[i].url, secs(t0));
	if (write_nodes_json(u, nodes_json, sizeof(nodes_json)) < 0 ||
	    measure_gateway(u, nodes_json) < 0 || write_policy(u) < 0)
		goto stop;

	gw_idx = u->n_kids;
	if (forget_old_nodes(u) < 0 || start_gateway(u, nodes_json) < 0 ||
	    wait_listening(u, gw_idx, gw_idx + 1, UP_SERVER_START_MS) < 0 ||
	    wait_gateway(u, &u->kids[gw_idx], UP_READY_MS) < 0)
		goto stop;
	printf("veil up: gateway: %s, every node verified (%.2f s)\n", u->kids[gw_idx].url,
	       secs(t0));

	proxy_idx = u->n_kids;
	if (start_proxy(u, &u->kids[gw_idx]) < 0 ||
	    wait_listening(u, proxy_idx, proxy_idx + 1, UP_SERVER_START_MS) < 0 ||
	    wait_proxy(u, &u->kids[proxy_idx], UP_READY_MS) < 0)
		goto stop;
	printf("veil up: proxy: %s (OpenAI base URL), gateway and nodes verified (%.2f s)\n",
	       u->proxy_url, secs(t0));
	if (write_up_json(u) < 0)
		goto stop;

	/* the self-check: one chat through the proxy, verified */
	printf("veil up: self-check: \"%s\"\n", UP_SELF_CHECK_PROMPT);
	if (veil_cli_chat_run(u->proxy_url, u->model_name, UP_SELF_CHECK_PROMPT,
			      UP_SELF_CHECK_TOKENS, "  ") != 0) {
		fprintf(stderr, "veil up: the self-check failed\n");
		for (int i = 0; i < u->n_kids; i++)
			if (u->kids[i].role != KID_NODE)
				show_log_tail(&u->kids[i], 6);
		goto stop;
	}
	if (verify_receipts_log(u) < 0)
		goto stop;
	if ((dead = reap(u))) {
		report_dead(dead);
		goto stop;
	}
	printf("veil up: self-check passed (%.2f s)\n", secs(t0));
	if (u->once) {
		code = 0;
		goto stop;
	}
	print_banner(u);
	code = serve(u) == 0 ? 0 : 1;
stop:
	if (u->stop_requested && code != 0)
		printf("veil up: interrupted during start-up\n");
	if (!stop_all(u) && code == 0)
		code = 1;
	if (u->n_kids)
		printf("veil up: every process stopped\n");
out:
	if (u->temp_state && u->state[0])
		nftw(u->state, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	if (u->lock_fd >= 0)
		close(u->lock_fd);
	veil_wipe(u->api_key, sizeof(u->api_key));
	sigprocmask(SIG_SETMASK, &u->old_mask, NULL);
	free(u);
	return code;
}
