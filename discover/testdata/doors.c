/* doors.c: the calls whose arguments kscmp records, for TestArgRecording.
 *   doors open   unshare(CLONE_NEWUSER), socket(AF_NETLINK, SOCK_RAW),
 *                socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC),
 *                prctl(PR_SET_NAME), personality(0xffffffff): nothing else
 *                of the recorded calls (raw syscalls: no C library extras);
 *   doors fork   fork() and a thread (pthread_create), nothing else.
 * Results are not checked: the recorder sees the call at entry. */
#define _GNU_SOURCE
#include <linux/netlink.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void *thread(void *arg)
{
	return arg;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "open") == 0) {
		syscall(SYS_unshare, CLONE_NEWUSER);
		syscall(SYS_socket, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
		syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		syscall(SYS_prctl, PR_SET_NAME, "doors", 0, 0, 0);
		syscall(SYS_personality, 0xffffffffUL);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "fork") == 0) {
		pthread_t t;
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		if (pid < 0 || waitpid(pid, NULL, 0) != pid)
			return 1;
		if (pthread_create(&t, NULL, thread, NULL) != 0 || pthread_join(t, NULL) != 0)
			return 1;
		return 0;
	}
	return 2;
}
