/* reuse.c: makes the kernel reuse a freed task's memory for a new task on
 * one CPU, for TestMemoTaskReuse. Pinned to one CPU, it starts children one
 * at a time, each in a mount namespace of its own made by clone (no unshare
 * call), each making a few calls and exiting; between two children it sleeps
 * until the kernel has freed the last one (after an RCU grace period), so
 * that the next clone on this CPU gets its memory. Usage: reuse CPU COUNT */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	cpu_set_t set;
	/* Past the grace period before the kernel frees an exited task: 20 ms
	 * was too short on the project's VM (no child reused the previous
	 * one's memory), 100 ms enough (99 of 100 did). */
	struct timespec pause = {0, 100 * 1000 * 1000};

	if (argc != 3)
		return 2;
	CPU_ZERO(&set);
	CPU_SET(atoi(argv[1]), &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		perror("sched_setaffinity");
		return 1;
	}
	for (int i = atoi(argv[2]); i > 0; i--) {
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
		nanosleep(&pause, 0);
	}
	return 0;
}
