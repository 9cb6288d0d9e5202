/* veil hpke keygen | seal | open: single-shot HPKE (RFC 9180) base mode with
 * DHKEM(X25519, HKDF-SHA256) and HKDF-SHA256, for scripts and interop tests. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "veil/base.h"
#include "veil/hpke.h"

#define STDIN_MAX (64u << 20) /* plaintext or hex ciphertext read from stdin */

static void hpke_usage(FILE *f)
{
	fprintf(f,
		"usage: veil hpke <sub> [options]\n"
		"\n"
		"HPKE (RFC 9180), base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256:\n"
		"  keygen   print a new X25519 key pair as JSON {\"public\", \"private\"}\n"
		"  seal     seal stdin to a public key; print JSON {\"enc\", \"ct\"}\n"
		"  open     open a sealed message; print the plaintext\n"
		"\n"
		"Run 'veil hpke <sub> --help' for its options.\n");
}

static void keygen_usage(FILE *f)
{
	fprintf(f,
		"usage: veil hpke keygen\n"
		"\n"
		"Prints a fresh X25519 key pair as JSON: {\"public\": HEX, \"private\": HEX}.\n"
		"The private key is a secret: keep the output away from logs.\n");
}

static void seal_usage(FILE *f)
{
	fprintf(f,
		"usage: veil hpke seal --public HEX [--info HEX] [--aad HEX] [--aead NAME] < plaintext\n"
		"\n"
		"Seals the plaintext read from stdin to the recipient's X25519 public key\n"
		"(single-shot, sequence number 0) and prints JSON {\"enc\": HEX, \"ct\": HEX}.\n"
		"\n"
		"  --public HEX   recipient public key (32 bytes)\n"
		"  --info HEX     HPKE info (default empty, at most 1024 bytes)\n"
		"  --aad HEX      associated data (default empty)\n"
		"  --aead NAME    aes256gcm (default), aes128gcm or chacha20poly1305\n");
}

static void open_usage(FILE *f)
{
	fprintf(f,
		"usage: veil hpke open --private HEX --enc HEX --ct HEX|- [--info HEX] [--aad HEX]\n"
		"                      [--aead NAME]\n"
		"\n"
		"Opens a single-shot sealed message and prints its plaintext.  Exits 1 when\n"
		"it does not open (wrong key, enc, info, aad or AEAD, or a tampered ct).\n"
		"\n"
		"  --private HEX  recipient private key (32 bytes)\n"
		"  --enc HEX      encapsulated key (32 bytes)\n"
		"  --ct HEX       ciphertext and tag; '-' reads the hex from stdin\n"
		"  --info HEX     HPKE info used when sealing\n"
		"  --aad HEX      associated data used when sealing\n"
		"  --aead NAME    aes256gcm (default), aes128gcm or chacha20poly1305\n");
}

struct args {
	const char *pub, *priv, *enc, *ct, *info, *aad, *aead;
};

/* Parses --name VALUE and --name=VALUE for the names allowed in `allow`
 * (a space-separated list).  Returns 0, or 2 after printing the reason. */
static int parse_args(int argc, char **argv, const char *allow, struct args *a,
		      void (*usage)(FILE *))
{
	static const char *const names[] = {"public", "private", "enc", "ct", "info", "aad", "aead"};

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *val = NULL, *eq;
		char name[16];
		size_t nl;
		const char **slot;
		size_t k;

		if (strncmp(arg, "--", 2)) {
			fprintf(stderr, "veil hpke %s: unexpected argument '%s'\n", argv[0], arg);
			usage(stderr);
			return 2;
		}
		arg += 2;
		eq = strchr(arg, '=');
		nl = eq ? (size_t)(eq - arg) : strlen(arg);
		if (nl >= sizeof(name))
			nl = sizeof(name) - 1;
		memcpy(name, arg, nl);
		name[nl] = '\0';
		for (k = 0; k < VEIL_ARRAY_LEN(names); k++)
			if (!strcmp(name, names[k]))
				break;
		if (k == VEIL_ARRAY_LEN(names) || !strstr(allow, name)) {
			fprintf(stderr, "veil hpke %s: unknown option '--%s'\n", argv[0], name);
			usage(stderr);
			return 2;
		}
		if (eq)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		if (!val) {
			fprintf(stderr, "veil hpke %s: --%s needs a value\n", argv[0], name);
			return 2;
		}
		slot = k == 0 ? &a->pub : k == 1 ? &a->priv : k == 2 ? &a->enc : k == 3 ? &a->ct
		       : k == 4 ? &a->info : k == 5 ? &a->aad : &a->aead;
		*slot = val;
	}
	return 0;
}

/* Decodes an optional hex argument into a malloc'd buffer (NULL when
 * absent or empty).  `exact` > 0 demands that many bytes.  Returns 0 or 2. */
static int hex_arg(const char *cmd, const char *name, const char *hex, size_t exact,
		   size_t max, uint8_t **out, size_t *len)
{
	size_t n = hex ? strlen(hex) : 0, got = 0;
	uint8_t *p = NULL;

	*out = NULL;
	*len = 0;
	if (n == 0 && !exact)
		return 0;
	if (n / 2 > max || (exact && n != exact * 2)) {
		if (exact)
			fprintf(stderr, "veil hpke %s: --%s must be %zu bytes (%zu hex digits)\n",
				cmd, name, exact, exact * 2);
		else
			fprintf(stderr, "veil hpke %s: --%s is longer than %zu bytes\n", cmd, name, max);
		return 2;
	}
	if (!(p = malloc(n / 2 + 1)) || veil_hex_decode(hex, n, p, n / 2 + 1, &got) < 0) {
		fprintf(stderr, "veil hpke %s: --%s is not valid hex\n", cmd, name);
		if (p)
			veil_wipe(p, n / 2 + 1); /* it may be a private key, in part */
		free(p);
		return 2;
	}
	*out = p;
	*len = got;
	return 0;
}

static int aead_arg(const char *cmd, const char *name)
{
	int id;

	if (!name)
		return VEIL_HPKE_AES256GCM;
	id = veil_hpke_aead_parse(name);
	if (id < 0 || id == VEIL_HPKE_EXPORT_ONLY) {
		fprintf(stderr, "veil hpke %s: unknown --aead '%s' (aes256gcm, aes128gcm, "
			"chacha20poly1305)\n", cmd, name);
		return -1;
	}
	return id;
}

static int print_json(json_t *o)
{
	char *s = o ? json_dumps(o, 0) : NULL;
	int rc = 0;

	if (!s || printf("%s\n", s) < 0 || fflush(stdout) != 0) {
		fprintf(stderr, "veil hpke: cannot write the output\n");
		rc = 1;
	}
	if (s) {
		veil_wipe(s, strlen(s));
		free(s);
	}
	return rc;
}

static int cmd_keygen(int argc, char **argv)
{
	struct veil_hpke_keypair kp;
	char pub[65], priv[65];
	int rc;

	if (veil_cli_wants_help(argc, argv)) {
		keygen_usage(stdout);
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "veil hpke keygen: unexpected argument '%s'\n", argv[1]);
		keygen_usage(stderr);
		return 2;
	}
	if ((rc = veil_hpke_keygen(&kp)) < 0) {
		veil_cli_error("hpke keygen", rc);
		return 1;
	}
	veil_hex_encode(kp.pub, 32, pub, sizeof(pub));
	veil_hex_encode(kp.priv, 32, priv, sizeof(priv));
	veil_hpke_keypair_wipe(&kp);
	/* printed directly: a JSON object would keep a copy of the private
	 * key that json_decref frees unwiped */
	if (printf("{\"public\": \"%s\", \"private\": \"%s\"}\n", pub, priv) < 0 ||
	    fflush(stdout) != 0) {
		fprintf(stderr, "veil hpke: cannot write the output\n");
		rc = 1;
	} else {
		rc = 0;
	}
	veil_wipe(priv, sizeof(priv));
	return rc;
}

static int cmd_seal(int argc, char **argv)
{
	struct args a = {0};
	struct veil_buf pt = VEIL_BUF_SECRET_INIT(STDIN_MAX);
	struct veil_hpke_opts o = {0};
	uint8_t *pub = NULL, *info = NULL, *aad = NULL, *ct = NULL, enc[32];
	size_t pub_len, aad_len, ct_len;
	char *ct_hex = NULL, enc_hex[65];
	json_t *j = NULL;
	int aead, rc = 2;

	if (veil_cli_wants_help(argc, argv)) {
		seal_usage(stdout);
		return 0;
	}
	if (parse_args(argc, argv, "public info aad aead", &a, seal_usage))
		return 2;
	if (!a.pub) {
		fprintf(stderr, "veil hpke seal: --public is required\n");
		seal_usage(stderr);
		return 2;
	}
	if ((aead = aead_arg("seal", a.aead)) < 0)
		return 2;
	if (hex_arg("seal", "public", a.pub, 32, 32, &pub, &pub_len) ||
	    hex_arg("seal", "info", a.info, 0, VEIL_HPKE_MAX_INPUT, &info, &o.info_len) ||
	    hex_arg("seal", "aad", a.aad, 0, STDIN_MAX, &aad, &aad_len))
		goto out;
	rc = 1;
	if (veil_buf_read_fd(&pt, 0) < 0) {
		fprintf(stderr, "veil hpke seal: cannot read the plaintext from stdin (%s%s%s)\n",
			veil_strerror(VEIL_EIO), *veil_err_detail() ? ": " : "", veil_err_detail());
		goto out;
	}
	o.mode = VEIL_HPKE_MODE_BASE;
	o.aead = (enum veil_hpke_aead)aead;
	o.info = info;
	if (!(ct = malloc(pt.len + VEIL_HPKE_NT)) ||
	    !(ct_hex = malloc(2 * (pt.len + VEIL_HPKE_NT) + 1))) {
		fprintf(stderr, "veil hpke seal: out of memory\n");
		goto out;
	}
	if ((rc = veil_hpke_seal(&o, pub, aad, aad_len, pt.data, pt.len, enc, ct,
				 pt.len + VEIL_HPKE_NT, &ct_len)) < 0) {
		veil_cli_error("hpke seal", rc);
		rc = 1;
		goto out;
	}
	veil_hex_encode(enc, 32, enc_hex, sizeof(enc_hex));
	veil_hex_encode(ct, ct_len, ct_hex, 2 * ct_len + 1);
	j = json_pack("{s:s, s:s}", "enc", enc_hex, "ct", ct_hex);
	rc = print_json(j);
out:
	json_decref(j);
	veil_buf_free(&pt);
	free(pub);
	free(info);
	free(aad);
	free(ct);
	free(ct_hex);
	return rc;
}

static int cmd_open(int argc, char **argv)
{
	struct args a = {0};
	struct veil_buf ct_in = VEIL_BUF_INIT(2 * (size_t)STDIN_MAX);
	struct veil_hpke_opts o = {0};
	struct veil_hpke_keypair kp;
	uint8_t *priv = NULL, *enc = NULL, *ct = NULL, *info = NULL, *aad = NULL, *pt = NULL;
	size_t priv_len, enc_len, ct_len, aad_len, pt_len;
	const char *ct_hex;
	int aead, rc = 2;

	memset(&kp, 0, sizeof(kp));
	if (veil_cli_wants_help(argc, argv)) {
		open_usage(stdout);
		return 0;
	}
	if (parse_args(argc, argv, "private enc ct info aad aead", &a, open_usage))
		return 2;
	if (!a.priv || !a.enc || !a.ct) {
		fprintf(stderr, "veil hpke open: --private, --enc and --ct are required\n");
		open_usage(stderr);
		return 2;
	}
	if ((aead = aead_arg("open", a.aead)) < 0)
		return 2;
	ct_hex = a.ct;
	if (!strcmp(a.ct, "-")) {
		if (veil_buf_read_fd(&ct_in, 0) < 0) {
			fprintf(stderr, "veil hpke open: cannot read the ciphertext from stdin\n");
			rc = 1;
			goto out;
		}
		while (ct_in.len && (ct_in.data[ct_in.len - 1] == '\n' ||
				     ct_in.data[ct_in.len - 1] == '\r' ||
				     ct_in.data[ct_in.len - 1] == ' '))
			ct_in.data[--ct_in.len] = '\0';
		ct_hex = ct_in.len ? (const char *)ct_in.data : "";
	}
	if (hex_arg("open", "private", a.priv, 32, 32, &priv, &priv_len) ||
	    hex_arg("open", "enc", a.enc, 32, 32, &enc, &enc_len) ||
	    hex_arg("open", "ct", ct_hex, 0, STDIN_MAX, &ct, &ct_len) ||
	    hex_arg("open", "info", a.info, 0, VEIL_HPKE_MAX_INPUT, &info, &o.info_len) ||
	    hex_arg("open", "aad", a.aad, 0, STDIN_MAX, &aad, &aad_len))
		goto out;
	rc = 1;
	if ((rc = veil_hpke_keypair_from_private(priv, &kp)) < 0) {
		veil_cli_error("hpke open", rc);
		rc = 1;
		goto out;
	}
	o.mode = VEIL_HPKE_MODE_BASE;
	o.aead = (enum veil_hpke_aead)aead;
	o.info = info;
	if (!(pt = malloc(ct_len + 1))) {
		fprintf(stderr, "veil hpke open: out of memory\n");
		rc = 1;
		goto out;
	}
	rc = veil_hpke_open(&o, &kp, enc, aad, aad_len, ct, ct_len, pt, ct_len, &pt_len);
	if (rc == VEIL_EBADMSG) {
		fprintf(stderr, "veil hpke open: the message does not open (wrong key, enc, "
			"info, aad or AEAD, or the ciphertext was altered)\n");
		rc = 1;
		goto out;
	}
	if (rc < 0) {
		veil_cli_error("hpke open", rc);
		rc = 1;
		goto out;
	}
	if ((pt_len && fwrite(pt, 1, pt_len, stdout) != pt_len) || fflush(stdout) != 0) {
		fprintf(stderr, "veil hpke open: cannot write the plaintext\n");
		rc = 1;
		goto out;
	}
	veil_wipe(pt, pt_len);
	rc = 0;
out:
	veil_hpke_keypair_wipe(&kp);
	if (priv)
		veil_wipe(priv, 32);
	free(priv);
	free(enc);
	free(ct);
	free(info);
	free(aad);
	if (pt)
		veil_wipe(pt, ct_len);
	free(pt);
	veil_buf_free(&ct_in);
	return rc;
}

int veil_cli_hpke(int argc, char **argv)
{
	if (argc < 2) {
		hpke_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		hpke_usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "keygen"))
		return cmd_keygen(argc - 1, argv + 1);
	if (!strcmp(argv[1], "seal"))
		return cmd_seal(argc - 1, argv + 1);
	if (!strcmp(argv[1], "open"))
		return cmd_open(argc - 1, argv + 1);
	fprintf(stderr, "veil: unknown subcommand 'hpke %s'\n", argv[1]);
	hpke_usage(stderr);
	return 2;
}
