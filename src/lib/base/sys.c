/* Secure random, secure wipe, clocks, CPU count, scheduling hints. */
#include "veil/base.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void veil_wipe(void *p, size_t n)
{
	if (p && n)
		explicit_bzero(p, n);
}

int veil_random(void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return veil_errf(VEIL_EIO, "getrandom: %s", strerror(errno));
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

uint64_t veil_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t veil_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

int veil_cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : (int)n;
}

/* The kernel's struct sched_attr, SCHED_ATTR_SIZE_VER1 (<linux/sched/types.h>
 * cannot be included beside <sched.h>). */
struct sys_sched_attr {
	uint32_t size;
	uint32_t sched_policy;
	uint64_t sched_flags;
	int32_t sched_nice;
	uint32_t sched_priority;
	uint64_t sched_runtime;
	uint64_t sched_deadline;
	uint64_t sched_period;
	uint32_t sched_util_min;
	uint32_t sched_util_max;
};

int veil_thread_slice_hint(uint64_t slice_ns)
{
	struct sys_sched_attr a;

	memset(&a, 0, sizeof(a));
	if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) != 0)
		return veil_errf(VEIL_EIO, "sched_getattr: %s", strerror(errno));
	if (a.sched_policy != SCHED_OTHER)
		return veil_errf(VEIL_EPERM, "scheduling policy %u left as is", a.sched_policy);
	a.size = sizeof(a);
	a.sched_flags = 0;
	a.sched_runtime = slice_ns;
	if (syscall(SYS_sched_setattr, 0, &a, 0) != 0)
		return veil_errf(VEIL_EIO, "sched_setattr: %s", strerror(errno));
	return 0;
}
