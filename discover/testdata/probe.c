/* probe.c: a 64-bit test workload for the recorder (built by the tests with
 * gcc -static). It enters a new mount namespace itself, so that everything it
 * does afterwards is recorded under a key of its own, then makes a few raw
 * syscalls chosen by its argument and exits at once:
 *
 *   probe exit   exit_group only: a process that lives microseconds in its namespace
 *   probe x32    getpid and getuid through the x32 ABI (number | 0x40000000), then exit_group
 *   probe range  a syscall number beyond the recorder's sets (5000), then exit_group
 */
#define _GNU_SOURCE
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define X32_SYSCALL_BIT 0x40000000L

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	if (syscall(SYS_unshare, CLONE_NEWNS) != 0)
		return 1;
	/* From here on every syscall is in the new namespace. */
	if (strcmp(argv[1], "x32") == 0) {
		/* The kernel may lack x32 (ENOSYS): sys_enter sees the call anyway. */
		syscall(X32_SYSCALL_BIT | 39); /* x32 getpid */
		syscall(X32_SYSCALL_BIT | 102); /* x32 getuid */
	} else if (strcmp(argv[1], "range") == 0) {
		syscall(5000);
	}
	syscall(SYS_exit_group, 0);
	return 0;
}
