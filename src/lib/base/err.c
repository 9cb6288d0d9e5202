/* Error names and the per-thread detail message. */
#include "veil/base.h"

#include <stdio.h>

static _Thread_local char err_detail[512];

const char *veil_strerror(int rc)
{
	switch (rc) {
	case VEIL_OK: return "success";
	case VEIL_EINVAL: return "invalid argument";
	case VEIL_ENOMEM: return "out of memory";
	case VEIL_EIO: return "I/O error";
	case VEIL_ERANGE: return "size limit exceeded";
	case VEIL_EFORMAT: return "malformed input";
	case VEIL_ENOTSUP: return "not supported";
	case VEIL_ENOENT: return "not found";
	case VEIL_EBADMSG: return "authentication failed";
	case VEIL_EOVERFLOW: return "integer overflow";
	case VEIL_ECANCELED: return "cancelled";
	case VEIL_EBUSY: return "busy";
	case VEIL_ETIMEDOUT: return "timed out";
	case VEIL_EPERM: return "refused by policy";
	case VEIL_EAGAIN: return "try again";
	case VEIL_EINTERNAL: return "internal error";
	default: return "unknown error";
	}
}

int veil_errf(int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_detail, sizeof(err_detail), fmt, ap);
	va_end(ap);
	return rc;
}

const char *veil_err_detail(void)
{
	return err_detail;
}

void veil_err_clear(void)
{
	err_detail[0] = '\0';
}
