/* reuse.c: makes the kernel reuse a freed task's memory for a new task on
 * one CPU, with the CPU's task memo still holding the freed task, for
 * TestMemoTaskReuse. Usage: reuse CPU COUNT SPIN_MS
 *
 * Pinned to CPU and running SCHED_FIFO (its children inherit both), it
 * starts COUNT children one at a time, each in a mount namespace of its own
 * made by clone (no unshare call), each making a few calls and exiting.
 * Between two children it spins SPIN_MS milliseconds without a system call:
 * long enough for the kernel to free the last child (after an RCU grace
 * period, in a softirq on this CPU), so that the next clone on this CPU gets
 * its memory, and, as no other task runs on the CPU meanwhile (a SCHED_FIFO
 * task is never preempted by an ordinary one, short of the kernel's RT
 * throttling), no other task's call pushes the last child out of the
 * recorder's memo. Exit status 3: SCHED_FIFO refused (not root, or a cpu
 * cgroup without real-time runtime). */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no system call */
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct sched_param sp = {.sched_priority = 10};
	cpu_set_t set;
	long long spin;

	if (argc != 4)
		return 2;
	spin = atoll(argv[3]) * 1000000LL;
	CPU_ZERO(&set);
	CPU_SET(atoi(argv[1]), &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		perror("sched_setaffinity");
		return 1;
	}
	if (sched_setscheduler(0, SCHED_FIFO, &sp)) {
		perror("sched_setscheduler SCHED_FIFO");
		return 3;
	}
	for (int i = atoi(argv[2]); i > 0; i--) {
		long long end;
		long pid = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);

		if (pid < 0) {
			perror("clone");
			return 1;
		}
		if (pid == 0) {
			syscall(SYS_getppid);
			syscall(SYS_getuid);
			syscall(SYS_getgid);
			syscall(SYS_geteuid);
			syscall(SYS_exit_group, 0);
		}
		if (waitpid(pid, 0, 0) != pid) {
			perror("waitpid");
			return 1;
		}
		for (end = now_ns() + spin; now_ns() < end;)
			;
	}
	return 0;
}
