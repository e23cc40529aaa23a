/* A runtime of the "containers from scratch" family in C, written for this project's grader
 * self-test: `run CMD [ARG...]` on a cgroup v1 host. The parent clones a child into new UTS,
 * PID and mount namespaces, puts it in a `memory` and a `cpu` group of its own (64 MiB, 0.3 CPU)
 * while the child waits on a pipe, then lets it go on; the child sets the hostname, makes its
 * mounts private, chroots into a fixed absolute directory, mounts /proc and execs the command.
 * The parent returns the command's exit code (128+N for signal N) and removes the groups. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROOT "/tmp/alpine-rootfs"
#define MEMORY_GROUP "/sys/fs/cgroup/memory/ccontainer"
#define CPU_GROUP "/sys/fs/cgroup/cpu/ccontainer"

static char **command;
static int gate[2];
static char stack[1024 * 1024];

static void die(const char *what)
{
	fprintf(stderr, "ccontainer: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void put(const char *dir, const char *file, const char *value)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", dir, file);
	f = fopen(path, "w");
	if (!f || fputs(value, f) < 0 || fclose(f) != 0)
		die(path);
}

static int child(void *arg)
{
	char go;

	(void)arg;
	close(gate[1]);
	if (read(gate[0], &go, 1) != 1) /* the parent closed without placing us */
		return 1;
	if (sethostname("container", 9) < 0)
		die("sethostname");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("make / private");
	if (chroot(ROOT) < 0)
		die("chroot " ROOT);
	if (chdir("/") < 0)
		die("chdir /");
	if (mount("proc", "/proc", "proc", 0, NULL) < 0)
		die("mount /proc");
	execvp(command[0], command);
	die(command[0]);
	return 127;
}

int main(int argc, char **argv)
{
	char pid_text[32];
	int status;
	pid_t pid;

	if (argc < 3 || strcmp(argv[1], "run") != 0) {
		fprintf(stderr, "usage: %s run CMD [ARG...]\n", argv[0]);
		return 2;
	}
	command = argv + 2;
	if (pipe(gate) < 0)
		die("pipe");
	if ((mkdir(MEMORY_GROUP, 0755) < 0 && errno != EEXIST) ||
	    (mkdir(CPU_GROUP, 0755) < 0 && errno != EEXIST))
		die("mkdir the groups");
	put(MEMORY_GROUP, "memory.limit_in_bytes", "67108864");
	put(CPU_GROUP, "cpu.cfs_period_us", "100000");
	put(CPU_GROUP, "cpu.cfs_quota_us", "30000");
	pid = clone(child, stack + sizeof stack,
		    CLONE_NEWUTS | CLONE_NEWPID | CLONE_NEWNS | SIGCHLD, NULL);
	if (pid < 0)
		die("clone");
	close(gate[0]);
	snprintf(pid_text, sizeof pid_text, "%d", pid);
	put(MEMORY_GROUP, "tasks", pid_text);
	put(CPU_GROUP, "tasks", pid_text);
	if (write(gate[1], "g", 1) != 1)
		die("release the child");
	close(gate[1]);
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	rmdir(MEMORY_GROUP);
	rmdir(CPU_GROUP);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
