#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <errno.h>
#include <linux/morsel.h>
#define CHECK(c) do { if (!(c)) { printf("FAIL %s:%d %s errno=%d %s\n", __FILE__, __LINE__, #c, errno, strerror(errno)); exit(1);} } while (0)
static void st(int fd) {
	struct morsel_stat s = { .argsz = sizeof(s) };
	CHECK(ioctl(fd, MORSEL_IOC_STAT, &s) == 0);
	printf("size=%llu level=%u data=%llu tables=%llu links=%llu mappers=%llu\n", s.size, s.level, s.data_pages, s.table_pages, s.links, s.mappers);
}
int main(void) {
	for (unsigned long sz = 4096; sz <= (4UL << 30); sz *= 8) {
	int fd = open("/dev/morsel/a", O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, sz) == 0);
	char *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED);
	printf("sz=%lu p=%p\n", sz, p);
	for (unsigned long i = 0; i < sz; i += (sz > (64<<20) ? (1<<20) : 4096)) p[i] = (char)(i >> 12) + 1;
	st(fd);
	pid_t pid = fork();
	if (pid == 0) {
		char *q = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		CHECK(q != MAP_FAILED);
		for (unsigned long i = 0; i < sz; i += (sz > (64<<20) ? (1<<20) : 4096)) CHECK(q[i] == (char)((i >> 12) + 1));
		q[0] = 'X';
		/* inherited mapping */
		CHECK(p[0] == 'X');
		_exit(0);
	}
	int status; waitpid(pid, &status, 0); CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(p[0] == 'X');
	char c; CHECK(pread(fd, &c, 1, 0) == 1 && c == 'X');
	struct morsel_map mm = { .argsz = sizeof(mm), .addr = (unsigned long)p, .length = sz };
	CHECK(ioctl(fd, MORSEL_IOC_MAP, &mm) == 0);
	printf("eager linked=%llu pages=%llu\n", mm.linked, mm.pages);
	st(fd);
	CHECK(munmap(p, sz) == 0);
	st(fd);
	close(fd);
	unlink("/dev/morsel/a");
	}
	printf("ok\n");
	return 0;
}
