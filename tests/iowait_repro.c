// SPDX-License-Identifier: GPL-2.0
/* The iowait case, reproduced: a parent forks children that each read a file
 * with O_DIRECT (every read goes to the disk and the reader sleeps in D,
 * counted as iowait), and the parent's wait() sits after the fork loop, so it
 * reaps one child and leaves the others as zombies until it exits.
 *
 *   iowait_repro [--fixed] [--hold SECONDS] [--go] FILE CHILDREN READ_SIZE
 *
 * --fixed: buffered reads (the page cache serves them) and one waitpid()
 * per child, inside the loop.  --hold: how long the parent keeps running
 * once all its children have exited (the zombies' lifetime, however long the
 * slowest child took).  --go: after the fork loop, the
 * parent waits for a line on stdin before its wait() (a tracer attaches to an
 * incident in progress meanwhile).  Built by tests/iowait_repro.py;
 * run by `make demo` (bench/demo.py) and tests/kernel/test_iowait.py. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int read_all(const char *path, int direct, size_t chunk)
{
	void *buf;
	long long total = 0;
	ssize_t n;
	int fd;

	if (posix_memalign(&buf, 4096, chunk)) /* O_DIRECT needs aligned buffers */
		return 1;
	fd = open(path, O_RDONLY | (direct ? O_DIRECT : 0));
	if (fd < 0) {
		fprintf(stderr, "open %s: %s\n", path, strerror(errno));
		return 1;
	}
	while ((n = read(fd, buf, chunk)) > 0)
		total += n;
	if (n < 0) {
		fprintf(stderr, "read %s: %s\n", path, strerror(errno));
		return 1;
	}
	close(fd);
	free(buf);
	return 0;
}

/* Whether a child of this process is still running (not yet a zombie).
 * Pids as /proc numbers them: in a PID namespace without its own /proc
 * (unshare -fp) getpid() is another number. */
static int children_running(void)
{
	char path[300], buf[512], self_link[32] = "";
	struct dirent *d;
	int running = 0, self;
	DIR *proc;

	if (readlink("/proc/self", self_link, sizeof(self_link) - 1) <= 0)
		return 0;
	self = atoi(self_link);
	proc = opendir("/proc");
	if (!proc)
		return 0;
	while (!running && (d = readdir(proc))) {
		char *end, state;
		int ppid;
		FILE *f;

		if (d->d_name[0] < '0' || d->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", d->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f) && (end = strrchr(buf, ')')) &&
		    sscanf(end + 1, " %c %d", &state, &ppid) == 2 && ppid == self && state != 'Z')
			running = 1;
		fclose(f);
	}
	closedir(proc);
	return running;
}

int main(int argc, char **argv)
{
	int fixed = 0, go = 0, i, children;
	double hold = 2.0;
	size_t chunk;
	const char *path;

	while (argc > 1 && argv[1][0] == '-') {
		if (!strcmp(argv[1], "--fixed")) {
			fixed = 1;
			argv++, argc--;
		} else if (!strcmp(argv[1], "--go")) {
			go = 1;
			argv++, argc--;
		} else if (!strcmp(argv[1], "--hold") && argc > 2) {
			hold = atof(argv[2]);
			argv += 2, argc -= 2;
		} else {
			break;
		}
	}
	if (argc != 4) {
		fprintf(stderr, "usage: %s [--fixed] [--hold SECONDS] [--go] FILE CHILDREN READ_SIZE\n", argv[0]);
		return 2;
	}
	path = argv[1];
	children = atoi(argv[2]);
	chunk = strtoul(argv[3], NULL, 0);
	printf("parent %d: %d children read %s with %s, %zu bytes per read\n", getpid(), children, path,
	       fixed ? "buffered reads" : "O_DIRECT", chunk);
	fflush(stdout);
	for (i = 0; i < children; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0)
			_exit(read_all(path, !fixed, chunk));
		if (fixed)
			waitpid(pid, NULL, 0); /* the fix: reap each child */
	}
	if (go) {
		char line[16];

		if (!fgets(line, sizeof(line), stdin))
			return 1;
	}
	if (!fixed)
		wait(NULL); /* the bug: one wait() after the loop reaps one child */
	/* The zombies' lifetime is counted from the last child's exit, however
	 * slow the machine: read from /proc, not waited for (no wait call). */
	while (children_running())
		usleep(10000);
	usleep((useconds_t)(hold * 1e6));
	return 0;
}
