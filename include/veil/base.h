/* veil base module: errors, checked sizes, capped buffers, secrets, logging,
 * hex/base64, secure random, secure wipe, monotonic time.
 *
 * Everything else in libveil builds on this header and nothing here depends
 * on another module.  Functions return 0 (or a length) on success and a
 * negative VEIL_E* code on failure; out-params are written only on success. */
#ifndef VEIL_BASE_H
#define VEIL_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define VEIL_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ---- errors ------------------------------------------------------------ */

enum {
	VEIL_OK = 0,
	VEIL_EINVAL = -1,     /* bad argument from the caller */
	VEIL_ENOMEM = -2,     /* allocation failed */
	VEIL_EIO = -3,        /* read/write/mmap failed */
	VEIL_ERANGE = -4,     /* a size cap or numeric range was exceeded */
	VEIL_EFORMAT = -5,    /* malformed input (file, message, encoding) */
	VEIL_ENOTSUP = -6,    /* valid but not supported (type, version, arch) */
	VEIL_ENOENT = -7,     /* not found (file, key, tensor, model) */
	VEIL_EBADMSG = -8,    /* authentication / signature check failed */
	VEIL_EOVERFLOW = -9,  /* integer overflow in a size computation */
	VEIL_ECANCELED = -10, /* the operation was cancelled */
	VEIL_EBUSY = -11,     /* a bounded queue or pool is full */
	VEIL_ETIMEDOUT = -12, /* a deadline passed */
	VEIL_EPERM = -13,     /* refused by policy */
	VEIL_EAGAIN = -14,    /* try again later */
	VEIL_EINTERNAL = -15, /* a bug: an invariant did not hold */
};

/* Short fixed name of a VEIL_E* code ("malformed input"); never NULL. */
const char *veil_strerror(int rc);

/* Records a detail message for the calling thread and returns `rc`, so a
 * parser can write `return veil_errf(VEIL_EFORMAT, "tensor %s: ...", n);`.
 * The detail names the field at fault; it must never contain secrets or user
 * content.  Truncated to 512 bytes. */
int veil_errf(int rc, const char *fmt, ...) VEIL_PRINTF(2, 3);

/* The calling thread's last detail message, "" when none.  Valid until the
 * next veil_errf()/veil_err_clear() on this thread. */
const char *veil_err_detail(void);
void veil_err_clear(void);

/* ---- checked size arithmetic (true means it overflowed) ---------------- */

static inline bool veil_add_ovf(size_t a, size_t b, size_t *r)
{
	return __builtin_add_overflow(a, b, r);
}

static inline bool veil_mul_ovf(size_t a, size_t b, size_t *r)
{
	return __builtin_mul_overflow(a, b, r);
}

/* ---- capped dynamic buffers ------------------------------------------- */

/* A growable byte buffer that refuses to grow past `max` (VEIL_ERANGE).
 * data is always NUL-terminated after len when non-NULL, so text can be
 * used as a C string.  A buffer marked secret is wiped before every free and
 * reallocation.  The buffer owns `data`; release with veil_buf_free(). */
struct veil_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;
	bool secret;
};

#define VEIL_BUF_INIT(maxbytes) {NULL, 0, 0, (maxbytes), false}
#define VEIL_BUF_SECRET_INIT(maxbytes) {NULL, 0, 0, (maxbytes), true}

int veil_buf_reserve(struct veil_buf *b, size_t extra);
int veil_buf_append(struct veil_buf *b, const void *p, size_t n);
int veil_buf_append_str(struct veil_buf *b, const char *s);
int veil_buf_appendf(struct veil_buf *b, const char *fmt, ...) VEIL_PRINTF(2, 3);
int veil_buf_vappendf(struct veil_buf *b, const char *fmt, va_list ap);
/* Empties the buffer, keeping its memory (wiped first when secret). */
void veil_buf_reset(struct veil_buf *b);
/* Frees the memory (wiped first when secret); the buffer may be reused. */
void veil_buf_free(struct veil_buf *b);
/* Transfers ownership of data to the caller (who frees it with free());
 * the buffer is left empty.  Returns NULL for an empty buffer. */
uint8_t *veil_buf_steal(struct veil_buf *b, size_t *len);
/* Appends the whole file; VEIL_ERANGE when it would pass b->max. */
int veil_buf_read_file(struct veil_buf *b, const char *path);
int veil_buf_read_fd(struct veil_buf *b, int fd);

/* ---- secrets ----------------------------------------------------------- */

/* Key material and plaintext live in this type.  It is a struct on purpose:
 * passing it to a printf-style function (including veil_log) is a compile
 * error under -Wformat -Werror, and veil_log has no format for it. */
struct veil_secret {
	uint8_t *bytes;
	size_t len;
};

int veil_secret_alloc(struct veil_secret *s, size_t len);
/* Wipes and frees; safe on a zeroed or already freed secret. */
void veil_secret_free(struct veil_secret *s);

/* Wipes memory in a way the compiler may not elide. */
void veil_wipe(void *p, size_t n);

/* Fills buf from the kernel CSPRNG (getrandom); never returns short. */
int veil_random(void *buf, size_t n);

/* ---- time -------------------------------------------------------------- */

uint64_t veil_now_ns(void);   /* CLOCK_MONOTONIC */
uint64_t veil_wall_ms(void);  /* CLOCK_REALTIME, ms since the epoch */

/* The rule for model names wherever veil routes or signs by them (a
 * gateway's routing and store, a node's receipts): 1..max bytes of
 * printable ASCII without spaces, quotes or backslashes. */
bool veil_model_name_ok(const char *m, size_t len, size_t max);

/* ---- hex / base64 ------------------------------------------------------ */

/* Lower-case hex of n bytes plus NUL into out (outcap >= 2n+1). */
int veil_hex_encode(const uint8_t *p, size_t n, char *out, size_t outcap);
/* Decodes exactly len hex chars (either case); *outlen = len/2.  Odd length
 * or a non-hex char is VEIL_EFORMAT; outcap too small is VEIL_ERANGE. */
int veil_hex_decode(const char *s, size_t len, uint8_t *out, size_t outcap,
		    size_t *outlen);

/* Hex as text files and command lines carry it: leading whitespace, an
 * optional "0x", then hex digits with any whitespace between them.  Appends
 * the bytes to out (capped by out->max).  VEIL_EFORMAT for any other
 * character or an odd number of digits (out is then left as it was); zero
 * digits append nothing and succeed. */
int veil_hex_text_decode(const char *s, size_t n, struct veil_buf *out);

#define VEIL_B64_URL 1u     /* URL-safe alphabet */
#define VEIL_B64_NOPAD 2u   /* no '=' padding on encode; optional on decode */

size_t veil_b64_encoded_len(size_t n, unsigned flags); /* excluding NUL */
int veil_b64_encode(const uint8_t *p, size_t n, unsigned flags, char *out,
		    size_t outcap);
int veil_b64_decode(const char *s, size_t len, unsigned flags, uint8_t *out,
		    size_t outcap, size_t *outlen);

/* ---- logging ----------------------------------------------------------- */

enum veil_log_level {
	VEIL_LOG_DEBUG = 0,
	VEIL_LOG_INFO = 1,
	VEIL_LOG_WARN = 2,
	VEIL_LOG_ERROR = 3,
	VEIL_LOG_OFF = 4,
};

/* Process-wide settings; default: INFO, text lines, stderr.  With json set,
 * each event is one JSON object per line {"ts","level","mod","msg"}; as
 * text, control bytes in a message are written as \xHH (one event, one
 * line, either way).  The logger never owns `out`. */
void veil_log_setup(enum veil_log_level min, bool json, FILE *out);
/* Parses "debug"/"info"/"warn"/"error"/"off"; -1 when unknown. */
int veil_log_level_parse(const char *s);
bool veil_log_enabled(enum veil_log_level lvl);
/* Events, never content: callers must not log prompts, answers or keys. */
void veil_log(enum veil_log_level lvl, const char *mod, const char *fmt, ...)
	VEIL_PRINTF(3, 4);

#define VEIL_DEBUG(mod, ...) veil_log(VEIL_LOG_DEBUG, mod, __VA_ARGS__)
#define VEIL_INFO(mod, ...) veil_log(VEIL_LOG_INFO, mod, __VA_ARGS__)
#define VEIL_WARN(mod, ...) veil_log(VEIL_LOG_WARN, mod, __VA_ARGS__)
#define VEIL_ERROR(mod, ...) veil_log(VEIL_LOG_ERROR, mod, __VA_ARGS__)

/* ---- misc -------------------------------------------------------------- */

#define VEIL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define VEIL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VEIL_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Number of online CPUs, at least 1. */
int veil_cpu_count(void);

/* Asks the kernel for a short time slice (ns) for the calling thread, so an
 * event loop woken while other threads keep every core busy runs at once
 * instead of after their slice.  Linux's EEVDF scheduler (6.12 on) takes
 * sched_attr.sched_runtime of a SCHED_OTHER thread as its slice; it does
 * not change the thread's share of the CPU, and older kernels ignore it.
 * Only for SCHED_OTHER threads (others are left as they are: VEIL_EPERM);
 * threads started later inherit it.  A hint: callers log a failure. */
int veil_thread_slice_hint(uint64_t slice_ns);

#endif
