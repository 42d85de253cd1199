/* Sleeping is left to the kernel: libfaketime 0.9.10 shifts the deadline of
   clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) even with FAKETIME_DONT_FAKE_MONOTONIC,
   and Python 3.11's time.sleep then fails with EINVAL. Preloaded before libfaketime. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *req, struct timespec *rem) {
    long r = syscall(SYS_clock_nanosleep, clock, flags, req, rem);
    return r == 0 ? 0 : errno;
}

int nanosleep(const struct timespec *req, struct timespec *rem) {
    return (int)syscall(SYS_nanosleep, req, rem);
}
