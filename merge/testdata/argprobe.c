#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void *thread(void *arg) { return arg; }

static const char *res(int rc) { return rc < 0 ? strerror(errno) : "ok"; }

static const char *tcp(void) {
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t n = sizeof a;
	char buf[3] = {0};
	int l = socket(AF_INET, SOCK_STREAM, 0), c, s;
	if (l < 0 || bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &n))
		return strerror(errno);
	if ((c = socket(AF_INET, SOCK_STREAM, 0)) < 0 || connect(c, (void *)&a, sizeof a) || (s = accept(l, 0, 0)) < 0)
		return strerror(errno);
	if (write(c, "hi", 2) != 2 || read(s, buf, 2) != 2 || strcmp(buf, "hi"))
		return "no data";
	return "ok";
}

int main(void) {
	pthread_t t;
	int e = pthread_create(&t, NULL, thread, NULL), st = -1;
	if (!e) pthread_join(t, NULL);
	printf("thread %s\n", e ? strerror(e) : "ok");
	pid_t p = fork();
	if (p == 0) _exit(7);
	if (p > 0) waitpid(p, &st, 0);
	printf("fork %s\n", p < 0 ? strerror(errno) : (WIFEXITED(st) && WEXITSTATUS(st) == 7 ? "ok" : "bad status"));
	printf("clone3 %s\n", res(syscall(SYS_clone3, NULL, 0)));
	printf("inet %s\n", res(socket(AF_INET, SOCK_STREAM, 0)));
	printf("unix %s\n", res(socket(AF_UNIX, SOCK_STREAM, 0)));
	printf("netlink %s\n", res(socket(AF_NETLINK, SOCK_RAW, 0)));
	printf("tcp %s\n", tcp());
	return 0;
}
