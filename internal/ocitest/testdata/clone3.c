/* clone3.c: what a C library does with threads and children when clone3 is
 * refused, for TestClone3Refused. Prints "clone3 errno=<n>" (a raw clone3
 * with no arguments: EINVAL when allowed, what the filter returns when not),
 * then forks, starts a thread and posix_spawns /bin/true; exits 0 and prints
 * "ok" only if all three worked. glibc (2.34+) makes threads and
 * posix_spawn children with clone3 and falls back to clone on ENOSYS only;
 * musl (1.2.3) uses clone. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435 /* arch/x86/entry/syscalls/syscall_64.tbl */
#endif

extern char **environ;

static void *thread(void *arg)
{
	return arg;
}

int main(void)
{
	char *argv[] = {"true", NULL};
	pthread_t t;
	pid_t pid;
	int err, status;

	errno = 0;
	syscall(SYS_clone3, NULL, 0);
	printf("clone3 errno=%d\n", errno);
	fflush(stdout);

	pid = fork();
	if (pid == 0)
		_exit(0);
	if (pid < 0 || waitpid(pid, &status, 0) != pid || status != 0) {
		printf("fork: %s\n", strerror(errno));
		return 1;
	}
	err = pthread_create(&t, NULL, thread, NULL);
	if (err != 0 || pthread_join(t, NULL) != 0) {
		printf("pthread_create: %s\n", strerror(err));
		return 1;
	}
	err = posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ);
	if (err != 0 || waitpid(pid, &status, 0) != pid || status != 0) {
		printf("posix_spawn: %s\n", strerror(err));
		return 1;
	}
	printf("ok\n");
	return 0;
}
