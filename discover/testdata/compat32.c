/* compat32.c: a 32-bit (int $0x80) test workload for the recorder, built by
 * TestCompat32 twice with gcc -static: as amd64 (the kernel takes int $0x80
 * from a 64-bit program as a compat call too) and with -m32 as i386. It enters a new mount namespace, then makes a
 * few syscalls through int $0x80 whose i386 numbers mean something else on
 * x86_64, so that naming them with the wrong table shows:
 *
 *   i386 64  getppid      (x86_64 64:  semget)
 *   i386 65  getpgrp      (x86_64 65:  semop)
 *   i386 158 sched_yield  (x86_64 158: arch_prctl)
 *   i386 60  umask        (x86_64 60:  exit)
 *   i386 252 exit_group   (x86_64 252: ioprio_get)
 */
#define CLONE_NEWNS 0x00020000

static long sys1(long nr, long a)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a) : "memory");
	return ret;
}

int main(void)
{
	if (sys1(310 /* unshare */, CLONE_NEWNS) != 0)
		return 1;
	sys1(64, 0);
	sys1(65, 0);
	sys1(158, 0);
	sys1(60, 022);
	sys1(252, 0);
	return 3; /* not reached */
}
