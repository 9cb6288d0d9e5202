/* veil sign keygen|sign|verify: Ed25519 and secp256k1 EIP-191
 * (personal_sign) signatures from the command line. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "veil/base.h"
#include "veil/sign.h"

#define MESSAGE_MAX (16u << 20)

enum algo { ALGO_NONE, ALGO_ED25519, ALGO_ECDSA };

struct opts {
	enum algo algo;
	const char *private_hex;
	const char *private_file;
	const char *message;
	const char *public_hex;
	const char *address;
	const char *signature;
	bool random_k;
};

static void usage_top(FILE *f)
{
	fprintf(f,
		"usage: veil sign <keygen|sign|verify> --algo ed25519|ecdsa [options]\n"
		"\n"
		"  keygen   make a key pair; prints JSON {algo, private, public[, address]}\n"
		"  sign     sign a message (--message TEXT, else stdin bytes exactly)\n"
		"  verify   check a signature; exit 0 printing \"valid\" (ed25519) or the\n"
		"           recovered signer address (ecdsa), exit 1 \"invalid: reason\"\n"
		"\n"
		"ed25519 is RFC 8032 Ed25519 (32-byte seed as private key).\n"
		"ecdsa is secp256k1 with Ethereum EIP-191 personal_sign: the signed hash\n"
		"is keccak256(\"\\x19Ethereum Signed Message:\\n\" + len + message), the\n"
		"signature is 0x r||s||v (65 bytes, v = 27/28, low s).\n"
		"\n"
		"Run 'veil sign <sub> --help' for a subcommand's options.\n");
}

static void usage_keygen(FILE *f)
{
	fprintf(f,
		"usage: veil sign keygen --algo ed25519|ecdsa\n"
		"\n"
		"Prints one JSON object: {\"algo\", \"private\": hex, \"public\": hex} and,\n"
		"for ecdsa, \"address\": the EIP-55 checksummed Ethereum address.  The ecdsa\n"
		"public key is uncompressed (04||X||Y).  The private key is printed: keep\n"
		"the output somewhere safe.\n");
}

static void usage_sign(FILE *f)
{
	fprintf(f,
		"usage: veil sign sign --algo ed25519|ecdsa (--private HEX | --private-file PATH)\n"
		"                      [--message TEXT] [--random-k]\n"
		"\n"
		"Signs --message (its bytes as given) or, without it, everything on stdin\n"
		"(bytes exactly, no newline stripped; at most 16 MiB).  Prints the signature\n"
		"in hex: ed25519 64 bytes R||S; ecdsa 0x + 65 bytes r||s||v (EIP-191).\n"
		"\n"
		"  --private HEX        private key (ed25519 seed / secp256k1 scalar, 32 bytes;\n"
		"                       0x optional).  Visible to other local users while the\n"
		"                       command starts; prefer --private-file.\n"
		"  --private-file PATH  file holding the private key in hex\n"
		"  --random-k           ecdsa: random nonce instead of RFC 6979 deterministic\n");
}

static void usage_verify(FILE *f)
{
	fprintf(f,
		"usage: veil sign verify --algo ed25519|ecdsa (--public HEX | --address 0x..)\n"
		"                        --signature HEX [--message TEXT]\n"
		"\n"
		"Checks a signature of --message (or of stdin's bytes).\n"
		"ed25519: --public is the 32-byte public key; prints \"valid\".\n"
		"ecdsa: recovers the signer of the EIP-191 signature and compares it with\n"
		"--address (EIP-55 checksum checked when mixed case) or with the address of\n"
		"--public (65-byte uncompressed key); prints the recovered address.\n"
		"Exit 0 valid, 1 invalid (prints \"invalid: reason\"), 2 usage error.\n");
}

static int parse_algo(const char *s, enum algo *out)
{
	if (!strcmp(s, "ed25519"))
		*out = ALGO_ED25519;
	else if (!strcmp(s, "ecdsa") || !strcmp(s, "secp256k1"))
		*out = ALGO_ECDSA;
	else
		return -1;
	return 0;
}

/* Parses argv[1..] (argv[0] is the subcommand).  Returns 0, or the exit code
 * (2 for usage errors, 0 after --help). */
static int parse_opts(int argc, char **argv, struct opts *o, void (*help)(FILE *),
		      int *done)
{
	memset(o, 0, sizeof(*o));
	*done = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **dst = NULL;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			help(stdout);
			*done = 1;
			return 0;
		}
		if (!strcmp(a, "--random-k")) {
			o->random_k = true;
			continue;
		}
		if (!strcmp(a, "--algo")) {
			if (i + 1 >= argc || parse_algo(argv[i + 1], &o->algo) < 0) {
				fprintf(stderr, "veil sign: --algo wants ed25519 or ecdsa\n");
				return 2;
			}
			i++;
			continue;
		}
		if (!strcmp(a, "--private"))
			dst = &o->private_hex;
		else if (!strcmp(a, "--private-file"))
			dst = &o->private_file;
		else if (!strcmp(a, "--message"))
			dst = &o->message;
		else if (!strcmp(a, "--public"))
			dst = &o->public_hex;
		else if (!strcmp(a, "--address"))
			dst = &o->address;
		else if (!strcmp(a, "--signature"))
			dst = &o->signature;
		if (!dst) {
			fprintf(stderr, "veil sign %s: unknown option '%s'\n", argv[0], a);
			help(stderr);
			return 2;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "veil sign %s: %s needs a value\n", argv[0], a);
			return 2;
		}
		*dst = argv[++i];
	}
	if (o->algo == ALGO_NONE) {
		fprintf(stderr, "veil sign %s: --algo ed25519|ecdsa is required\n", argv[0]);
		help(stderr);
		return 2;
	}
	return 0;
}

/* Decodes hex (optional 0x, surrounding whitespace ignored) of exactly
 * `want` bytes. */
static int decode_fixed(const char *what, const char *s, uint8_t *out, size_t want)
{
	size_t len, n;

	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	len = strlen(s);
	while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' ||
		       s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len != 2 * want || veil_hex_decode(s, len, out, want, &n) < 0 || n != want) {
		fprintf(stderr, "veil sign: %s must be %zu bytes of hex (%zu hex digits)\n",
			what, want, 2 * want);
		return -1;
	}
	return 0;
}

/* The 32-byte private key from --private (the argument is then blanked, so
 * it no longer shows in /proc/<pid>/cmdline) or --private-file. */
static int load_private(struct opts *o, char **argv, int argc, struct veil_secret *out)
{
	struct veil_buf f = VEIL_BUF_SECRET_INIT(4096);
	int rc = -1;

	if (!!o->private_hex == !!o->private_file) {
		fprintf(stderr, "veil sign sign: give exactly one of --private and --private-file\n");
		return 2;
	}
	if (veil_secret_alloc(out, 32) < 0)
		return 1;
	if (o->private_file) {
		if ((rc = veil_buf_read_file(&f, o->private_file)) < 0) {
			veil_cli_error(o->private_file, rc);
			rc = 1;
			goto out;
		}
		rc = decode_fixed("the private key file", (char *)f.data, out->bytes, 32) < 0 ? 1 : 0;
	} else {
		rc = decode_fixed("--private", o->private_hex, out->bytes, 32) < 0 ? 2 : 0;
		for (int i = 0; i < argc; i++)
			if (argv[i] == o->private_hex)
				veil_wipe(argv[i], strlen(argv[i]));
	}
out:
	veil_buf_free(&f);
	if (rc != 0)
		veil_secret_free(out);
	return rc;
}

/* The message: --message's bytes, else all of stdin. */
static int load_message(const struct opts *o, struct veil_buf *m)
{
	int rc;

	if (o->message)
		rc = veil_buf_append(m, o->message, strlen(o->message));
	else
		rc = veil_buf_read_fd(m, STDIN_FILENO);
	if (rc < 0) {
		veil_cli_error("reading the message", rc);
		return -1;
	}
	return 0;
}

static void print_hex(const char *prefix, const uint8_t *p, size_t n)
{
	char hex[2 * 65 + 1];

	veil_hex_encode(p, n, hex, sizeof(hex));
	printf("%s%s\n", prefix, hex);
}

static int cmd_keygen(int argc, char **argv)
{
	struct opts o;
	struct veil_secret priv = {0};
	char privhex[65], pubhex[2 * VEIL_SECP256K1_PUB_LEN + 1];
	int done, rc = parse_opts(argc, argv, &o, usage_keygen, &done);

	if (rc || done)
		return rc;
	if (o.algo == ALGO_ED25519) {
		struct veil_ed25519_key *k = NULL;
		uint8_t pub[VEIL_ED25519_PUB_LEN];

		if ((rc = veil_ed25519_key_generate(&k)) < 0 ||
		    (rc = veil_ed25519_export_seed(k, &priv)) < 0) {
			veil_ed25519_key_free(k);
			veil_cli_error("ed25519 keygen", rc);
			return 1;
		}
		veil_ed25519_public(k, pub);
		veil_ed25519_key_free(k);
		veil_hex_encode(pub, sizeof(pub), pubhex, sizeof(pubhex));
		veil_hex_encode(priv.bytes, priv.len, privhex, sizeof(privhex));
		printf("{\"algo\":\"ed25519\",\"private\":\"%s\",\"public\":\"%s\"}\n",
		       privhex, pubhex);
	} else {
		struct veil_secp256k1_key *k = NULL;
		uint8_t pub[VEIL_SECP256K1_PUB_LEN], addr[VEIL_ETH_ADDRESS_LEN];
		char addrtxt[VEIL_ETH_ADDRESS_STR_LEN];

		if ((rc = veil_secp256k1_key_generate(&k)) < 0 ||
		    (rc = veil_secp256k1_export_private(k, &priv)) < 0) {
			veil_secp256k1_key_free(k);
			veil_cli_error("secp256k1 keygen", rc);
			return 1;
		}
		veil_secp256k1_public(k, pub);
		veil_secp256k1_address(k, addr);
		veil_secp256k1_key_free(k);
		veil_eth_address_format(addr, addrtxt);
		veil_hex_encode(pub, sizeof(pub), pubhex, sizeof(pubhex));
		veil_hex_encode(priv.bytes, priv.len, privhex, sizeof(privhex));
		printf("{\"algo\":\"ecdsa\",\"private\":\"0x%s\",\"public\":\"0x%s\","
		       "\"address\":\"%s\"}\n",
		       privhex, pubhex, addrtxt);
	}
	fflush(stdout);
	veil_wipe(privhex, sizeof(privhex));
	veil_secret_free(&priv);
	return 0;
}

static int cmd_sign(int argc, char **argv)
{
	struct opts o;
	struct veil_secret priv = {0};
	struct veil_buf m = VEIL_BUF_SECRET_INIT(MESSAGE_MAX);
	int done, rc = parse_opts(argc, argv, &o, usage_sign, &done);

	if (rc || done)
		return rc;
	if (o.public_hex || o.address || o.signature) {
		fprintf(stderr, "veil sign sign: --public/--address/--signature belong to verify\n");
		return 2;
	}
	if (o.random_k && o.algo != ALGO_ECDSA) {
		fprintf(stderr, "veil sign sign: --random-k is for --algo ecdsa (Ed25519 is deterministic)\n");
		return 2;
	}
	if ((rc = load_private(&o, argv, argc, &priv)) != 0)
		return rc;
	if (load_message(&o, &m) < 0) {
		rc = 1;
		goto out;
	}
	if (o.algo == ALGO_ED25519) {
		struct veil_ed25519_key *k = NULL;
		uint8_t sig[VEIL_ED25519_SIG_LEN];

		if ((rc = veil_ed25519_key_from_seed(priv.bytes, &k)) == 0)
			rc = veil_ed25519_sign(k, m.data, m.len, sig);
		veil_ed25519_key_free(k);
		if (rc == 0)
			print_hex("", sig, sizeof(sig));
	} else {
		struct veil_secp256k1_key *k = NULL;
		uint8_t sig[VEIL_EIP191_SIG_LEN];

		if ((rc = veil_secp256k1_key_from_private(priv.bytes, &k)) == 0)
			rc = veil_eip191_sign(k, m.data, m.len,
					      o.random_k ? VEIL_SECP256K1_RANDOM :
							   VEIL_SECP256K1_RFC6979,
					      sig);
		veil_secp256k1_key_free(k);
		if (rc == 0)
			print_hex("0x", sig, sizeof(sig));
	}
	if (rc < 0) {
		veil_cli_error("sign", rc);
		rc = 1;
	}
out:
	veil_buf_free(&m);
	veil_secret_free(&priv);
	return rc;
}

static int invalid(const char *why)
{
	printf("invalid: %s\n", why);
	return 1;
}

static int cmd_verify(int argc, char **argv)
{
	struct opts o;
	struct veil_buf m = VEIL_BUF_SECRET_INIT(MESSAGE_MAX);
	int done, rc = parse_opts(argc, argv, &o, usage_verify, &done);

	if (rc || done)
		return rc;
	if (o.private_hex || o.private_file || o.random_k) {
		fprintf(stderr, "veil sign verify: --private/--random-k belong to sign\n");
		return 2;
	}
	if (!o.signature) {
		fprintf(stderr, "veil sign verify: --signature is required\n");
		return 2;
	}
	if (o.algo == ALGO_ED25519) {
		uint8_t pub[VEIL_ED25519_PUB_LEN], sig[VEIL_ED25519_SIG_LEN];

		if (!o.public_hex || o.address) {
			fprintf(stderr, "veil sign verify: ed25519 needs --public HEX (and no --address)\n");
			return 2;
		}
		if (decode_fixed("--public", o.public_hex, pub, sizeof(pub)) < 0)
			return 2;
		if (decode_fixed("--signature", o.signature, sig, sizeof(sig)) < 0)
			return invalid("signature is not 64 bytes of hex");
		if (load_message(&o, &m) < 0) {
			rc = 1;
			goto out;
		}
		rc = veil_ed25519_verify(pub, m.data, m.len, sig);
		if (rc == 0) {
			printf("valid\n");
		} else if (rc == VEIL_EBADMSG) {
			rc = invalid(veil_err_detail());
		} else {
			veil_cli_error("verify", rc);
			rc = 1;
		}
	} else {
		uint8_t want[VEIL_ETH_ADDRESS_LEN], got[VEIL_ETH_ADDRESS_LEN];
		uint8_t pub[VEIL_SECP256K1_PUB_LEN], sig[VEIL_EIP191_SIG_LEN];
		char txt[VEIL_ETH_ADDRESS_STR_LEN];

		if (!!o.public_hex == !!o.address) {
			fprintf(stderr, "veil sign verify: ecdsa needs exactly one of --address 0x.. and --public HEX\n");
			return 2;
		}
		if (o.address && veil_eth_address_parse(o.address, want) < 0) {
			fprintf(stderr, "veil sign verify: --address: %s\n", veil_err_detail());
			return 2;
		}
		if (o.public_hex) {
			if (decode_fixed("--public (uncompressed 04||X||Y)", o.public_hex,
					 pub, sizeof(pub)) < 0)
				return 2;
			if (veil_secp256k1_pub_check(pub) < 0) {
				fprintf(stderr, "veil sign verify: --public: %s\n", veil_err_detail());
				return 2;
			}
			veil_secp256k1_pub_to_address(pub, want);
		}
		if (decode_fixed("--signature (r||s||v)", o.signature, sig, sizeof(sig)) < 0)
			return invalid("signature is not 65 bytes of hex (r||s||v)");
		if (load_message(&o, &m) < 0) {
			rc = 1;
			goto out;
		}
		rc = veil_eip191_recover(m.data, m.len, sig, got, NULL);
		if (rc == VEIL_EBADMSG) {
			rc = invalid(veil_err_detail());
		} else if (rc < 0) {
			veil_cli_error("verify", rc);
			rc = 1;
		} else {
			veil_eth_address_format(got, txt);
			if (memcmp(got, want, sizeof(got)) != 0) {
				char w[VEIL_ETH_ADDRESS_STR_LEN];

				veil_eth_address_format(want, w);
				printf("invalid: signed by %s, not %s\n", txt, w);
				rc = 1;
			} else {
				printf("%s\n", txt);
				rc = 0;
			}
		}
	}
out:
	veil_buf_free(&m);
	return rc;
}

int veil_cli_sign(int argc, char **argv)
{
	if (argc < 2) {
		usage_top(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		usage_top(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "keygen"))
		return cmd_keygen(argc - 1, argv + 1);
	if (!strcmp(argv[1], "sign"))
		return cmd_sign(argc - 1, argv + 1);
	if (!strcmp(argv[1], "verify"))
		return cmd_verify(argc - 1, argv + 1);
	fprintf(stderr, "veil: unknown subcommand 'sign %s'\n", argv[1]);
	usage_top(stderr);
	return 2;
}
