/* veil attester: configfs-tsm (Linux Documentation/ABI/testing/configfs-tsm)
 * quote generation and RTMR3 extension on real TDX / SEV-SNP guests.
 *
 * An exchange: mkdir <root>/report/veil (kept between exchanges), write the
 * 64-byte report_data to inblob, read generation, read outblob, read
 * generation again.  The kernel bumps generation on every write to the
 * entry, so a different second value means another process wrote inblob
 * between our write and our read, and outblob may answer its request: we
 * start over.  EBUSY (the kernel's answer while a quote is in flight) is
 * retried the same way, with a short sleep. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gen_internal.h"
#include "veil/attester.h"
#include "veil/base.h"

#define TSM_ENTRY "veil"
#define OUTBLOB_MAX (1u << 20)

int (*veil_attester_tsm_hook)(const char *entry_dir, int step, int attempt);

static int read_small(const char *path, char *out, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, out, cap - 1);
	if (n < 0)
		n = -errno;
	close(fd);
	if (n < 0)
		return (int)n;
	out[n] = 0;
	out[strcspn(out, "\n")] = 0;
	return 0;
}

static int write_all(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_TRUNC), e = 0;
	const uint8_t *b = p;

	if (fd < 0)
		return -errno;
	while (n > 0) {
		ssize_t w = write(fd, b, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			e = w < 0 ? -errno : -EIO;
			break;
		}
		b += w;
		n -= (size_t)w;
	}
	if (close(fd) != 0 && e == 0)
		e = -errno;
	return e;
}

static int read_gen(const char *entry, unsigned long long *g)
{
	char path[4200], buf[64], *end;
	int e;

	snprintf(path, sizeof(path), "%s/generation", entry);
	if ((e = read_small(path, buf, sizeof(buf))) < 0)
		return e;
	errno = 0;
	*g = strtoull(buf, &end, 10);
	return errno || end == buf ? -EINVAL : 0;
}

static int hook(const char *entry, int step, int attempt)
{
	return veil_attester_tsm_hook ? -veil_attester_tsm_hook(entry, step, attempt) : 0;
}

/* Appends <entry>/auxblob when it exists (SEV-SNP: the certificate table). */
static int read_aux(const char *entry, struct veil_buf *aux)
{
	char path[4200];
	int fd, e;

	if (!aux)
		return 0;
	veil_buf_reset(aux);
	snprintf(path, sizeof(path), "%s/auxblob", entry);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	e = veil_buf_read_fd(aux, fd);
	close(fd);
	return e < 0 ? -EIO : 0;
}

/* One exchange; -errno on a kernel error, 1 when generation moved. */
static int exchange(const char *entry, const uint8_t rd[64], int attempt, struct veil_buf *out,
		    struct veil_buf *aux)
{
	char path[4200];
	unsigned long long g1, g2;
	int fd, e;

	snprintf(path, sizeof(path), "%s/inblob", entry);
	if ((e = hook(entry, 0, attempt)) < 0 || (e = write_all(path, rd, 64)) < 0)
		return e;
	if ((e = read_gen(entry, &g1)) < 0)
		return e;
	if ((e = hook(entry, 1, attempt)) < 0)
		return e;
	snprintf(path, sizeof(path), "%s/outblob", entry);
	veil_buf_reset(out);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	e = veil_buf_read_fd(out, fd);
	if (e < 0)
		e = errno ? -errno : -EIO;
	close(fd);
	if (e < 0)
		return e;
	if ((e = read_aux(entry, aux)) < 0)
		return e;
	if ((e = read_gen(entry, &g2)) < 0)
		return e;
	return g1 == g2 ? 0 : 1;
}

int veil_attester_tsm_quote(const char *tsm_root, const uint8_t report_data[64],
			    uint8_t **quote, size_t *quote_len, char provider[32],
			    int *attempts)
{
	return tsm_quote_aux(tsm_root, report_data, quote, quote_len, NULL, provider, attempts);
}

int tsm_quote_aux(const char *tsm_root, const uint8_t report_data[64], uint8_t **quote,
		  size_t *quote_len, struct veil_buf *aux, char provider[32], int *attempts)
{
	struct veil_buf out = VEIL_BUF_INIT(OUTBLOB_MAX);
	char entry[4096], path[4200], prov[32];
	int e = 0, attempt;

	if (!tsm_root || !report_data || !quote || !quote_len)
		return VEIL_EINVAL;
	snprintf(entry, sizeof(entry), "%s/report/%s", tsm_root, TSM_ENTRY);
	if (mkdir(entry, 0700) < 0 && errno != EEXIST)
		return veil_errf(VEIL_ENOTSUP, "configfs-tsm: cannot create %s: %s", entry,
				 strerror(errno));
	snprintf(path, sizeof(path), "%s/provider", entry);
	if ((e = read_small(path, prov, sizeof(prov))) < 0)
		return veil_errf(VEIL_ENOTSUP, "configfs-tsm: %s: %s", path, strerror(-e));
	for (attempt = 1; attempt <= VEIL_ATTESTER_TSM_RETRIES; attempt++) {
		e = exchange(entry, report_data, attempt, &out, aux);
		if (e == 0)
			break;
		if (e < 0 && e != -EBUSY && e != -EAGAIN) {
			veil_buf_free(&out);
			return veil_errf(VEIL_EIO, "configfs-tsm: %s: %s", entry, strerror(-e));
		}
		VEIL_DEBUG("attest", "configfs-tsm: %s, retrying (attempt %d)",
			   e > 0 ? "generation changed" : "busy", attempt);
		if (e < 0) {
			struct timespec ts = {0, 1000000L * attempt};

			nanosleep(&ts, NULL);
		}
	}
	if (e != 0) {
		veil_buf_free(&out);
		return veil_errf(VEIL_EAGAIN, "configfs-tsm: no consistent quote after %d attempts (%s)",
				 VEIL_ATTESTER_TSM_RETRIES, e > 0 ? "generation kept changing" : "busy");
	}
	if (out.len == 0) {
		veil_buf_free(&out);
		return veil_errf(VEIL_EIO, "configfs-tsm: %s/outblob is empty", entry);
	}
	if (provider)
		snprintf(provider, 32, "%s", prov);
	if (attempts)
		*attempts = attempt;
	*quote_len = out.len;
	*quote = veil_buf_steal(&out, NULL);
	return 0;
}

int tsm_provider(const char *tsm_root, char provider[32])
{
	char entry[4096], path[4200];
	struct stat st;
	int e;

	snprintf(path, sizeof(path), "%s/report", tsm_root);
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return veil_errf(VEIL_ENOTSUP, "no TEE: %s not found (no configfs-tsm)", path);
	snprintf(entry, sizeof(entry), "%s/report/%s", tsm_root, TSM_ENTRY);
	if (mkdir(entry, 0700) < 0 && errno != EEXIST)
		return veil_errf(VEIL_ENOTSUP, "no TEE: cannot create %s: %s", entry, strerror(errno));
	snprintf(path, sizeof(path), "%s/provider", entry);
	if ((e = read_small(path, provider, 32)) < 0)
		return veil_errf(VEIL_ENOTSUP, "no TEE: %s: %s", path, strerror(-e));
	return 0;
}

/* RTMR3 extension: the sysfs measurements file when present, else a
 * configfs-tsm rtmrs entry (mkdir <root>/rtmrs/veil-rtmr3, index 3). */
int tsm_extend_rtmr3(const char *tsm_root, const char *rtmr_path, const uint8_t digest[48])
{
	char dir[4096], path[4200];
	struct stat st;
	int e;

	if (rtmr_path && stat(rtmr_path, &st) == 0) {
		if ((e = write_all(rtmr_path, digest, 48)) < 0)
			return veil_errf(VEIL_EIO, "RTMR3 extend via %s: %s", rtmr_path, strerror(-e));
		return 0;
	}
	snprintf(dir, sizeof(dir), "%s/rtmrs", tsm_root);
	if (stat(dir, &st) < 0)
		return veil_errf(VEIL_ENOTSUP, "RTMR3 extend: neither %s nor %s exists",
				 rtmr_path ? rtmr_path : "(sysfs)", dir);
	snprintf(dir, sizeof(dir), "%s/rtmrs/veil-rtmr3", tsm_root);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return veil_errf(VEIL_EIO, "RTMR3 extend: mkdir %s: %s", dir, strerror(errno));
	snprintf(path, sizeof(path), "%s/index", dir);
	if ((e = write_all(path, "3", 1)) < 0 && e != -EBUSY)
		return veil_errf(VEIL_EIO, "RTMR3 extend: %s: %s", path, strerror(-e));
	snprintf(path, sizeof(path), "%s/digest", dir);
	if ((e = write_all(path, digest, 48)) < 0)
		return veil_errf(VEIL_EIO, "RTMR3 extend: %s: %s", path, strerror(-e));
	return 0;
}

/* GHCB spec §4.1.8.1 certificate table GUIDs, in their in-memory (mixed
 * endian) byte order: VCEK 63da758d-e664-4564-adc5-f4b93be8accd, VLEK
 * a8074bc2-a25a-483e-aae6-39c045a0b8a1. */
static const uint8_t VCEK_GUID[16] = {0x8d, 0x75, 0xda, 0x63, 0x64, 0xe6, 0x64, 0x45,
				      0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};
static const uint8_t VLEK_GUID[16] = {0xc2, 0x4b, 0x07, 0xa8, 0x5a, 0xa2, 0x3e, 0x48,
				      0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1};

int snp_cert_table_vcek(const uint8_t *t, size_t n, const uint8_t **der, size_t *len)
{
	static const uint8_t zero[24];

	for (size_t o = 0; o + 24 <= n; o += 24) {
		const uint8_t *e = t + o;
		uint32_t off = (uint32_t)e[16] | (uint32_t)e[17] << 8 | (uint32_t)e[18] << 16 |
			       (uint32_t)e[19] << 24;
		uint32_t l = (uint32_t)e[20] | (uint32_t)e[21] << 8 | (uint32_t)e[22] << 16 |
			     (uint32_t)e[23] << 24;

		if (!memcmp(e, zero, 24))
			break;
		if (memcmp(e, VCEK_GUID, 16) && memcmp(e, VLEK_GUID, 16))
			continue;
		if (off > n || l > n - off || l == 0)
			return veil_errf(VEIL_EFORMAT, "SEV-SNP certificate table: entry at %zu out of bounds", o);
		*der = t + off;
		*len = l;
		return 0;
	}
	return veil_errf(VEIL_ENOENT, "SEV-SNP certificate table: no VCEK or VLEK");
}
