#define _GNU_SOURCE
/*
 * ioctl argument checking: MORSEL_IOC_STAT and MORSEL_IOC_MAP reject an
 * argsz below their first size and unknown flags with EINVAL, bytes set
 * past what the module knows with E2BIG, and bad pointers with EFAULT;
 * the retired sized command numbers are ENOTTY (test_ioctl_abi checks the
 * size rules of every ioctl); MAP rejects unaligned, empty, overflowing ranges and
 * ranges not inside mappings of the same file (EINVAL) and PROT_NONE parts
 * (EACCES); unknown ioctls and ioctls on a directory give ENOTTY.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/morsel.h>
#include "vm.h"

static struct morsel_stat st_arg(void)
{
	struct morsel_stat s;

	memset(&s, 0, sizeof(s));
	s.argsz = sizeof(s);
	return s;
}

static struct morsel_map map_arg(void *addr, unsigned long len)
{
	struct morsel_map m;

	memset(&m, 0, sizeof(m));
	m.argsz = sizeof(m);
	m.addr = (uintptr_t)addr;
	m.length = len;
	return m;
}

static int do_map(int fd, void *addr, unsigned long len, unsigned flags)
{
	struct morsel_map m = map_arg(addr, len);

	m.flags = flags;
	return ioctl(fd, MORSEL_IOC_MAP, &m);
}

int main(void)
{
	const char *path = "/dev/morsel/ie_a", *path2 = "/dev/morsel/ie_b";
	struct morsel_stat s;
	struct morsel_map m;
	int fd, fd2, fdd, fdr;
	char *p, *q, *anon, *page;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	fd2 = open(path2, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0 && fd2 >= 0 && ftruncate(fd, 4 * MiB) == 0 &&
		    ftruncate(fd2, 4 * MiB) == 0, "create");

	/* MORSEL_IOC_STAT */
	s = st_arg();
	tap_ok(ioctl(fd, MORSEL_IOC_STAT, &s) == 0 && s.size == 4 * MiB &&
	       s.argsz == sizeof(s), "STAT with a correct argument works");
	s = st_arg();
	s.argsz = 0;
	tap_errno(ioctl(fd, MORSEL_IOC_STAT, &s), EINVAL, "STAT argsz 0: EINVAL");
	s = st_arg();
	s.argsz = sizeof(s) - 8;
	tap_errno(ioctl(fd, MORSEL_IOC_STAT, &s), EINVAL, "STAT argsz too small: EINVAL");
	{
		struct { struct morsel_stat s; uint64_t tail; } big;

		memset(&big, 0, sizeof(big));
		big.s = st_arg();
		big.s.argsz = sizeof(big);
		big.tail = 1;
		tap_errno(ioctl(fd, MORSEL_IOC_STAT, &big), E2BIG,
			  "STAT larger argsz with a byte the module does not know set: E2BIG");
	}
	s = st_arg();
	s.flags = 1;
	tap_errno(ioctl(fd, MORSEL_IOC_STAT, &s), EINVAL, "STAT flags 1: EINVAL");
	s = st_arg();
	s.flags = 0x80000000u;
	tap_errno(ioctl(fd, MORSEL_IOC_STAT, &s), EINVAL, "STAT flags bit 31: EINVAL");
	s = st_arg();
	s.argsz = MORSEL_STAT_SIZE_VER0 - 1;
	tap_errno(ioctl(fd, MORSEL_IOC_STAT, &s), EINVAL,
		  "STAT argsz one below its first size: EINVAL");
	{
		char *two = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct morsel_stat *at = (void *)(two + PG - 128);

		tap_require(two != MAP_FAILED && munmap(two + PG, PG) == 0, "page");
		*at = st_arg();
		at->argsz = PG;	/* zeros up to the unmapped page */
		tap_errno(ioctl(fd, MORSEL_IOC_STAT, at), EFAULT,
			  "STAT argsz of a page running into unmapped memory: EFAULT");
		munmap(two, PG);
	}
	s = st_arg();
	s.size = 123;
	s.level = 9;
	s.state = ~0U;
	s.data_pages = s.table_pages = s.links = s.mappers = ~0ULL;
	s.parent = s.children = s.borrowed_pages = ~0ULL;
	tap_ok(ioctl(fd, MORSEL_IOC_STAT, &s) == 0 && s.size == 4 * MiB && s.level == 2 &&
	       s.data_pages == 0 && s.mappers == 0 && s.state == 0 &&
	       s.parent == 0 && s.children == 0 && s.borrowed_pages == 0,
	       "STAT ignores and overwrites garbage in output fields");
	tap_errno(ioctl(fd, MORSEL_IOC_STAT, NULL), EFAULT, "STAT NULL pointer: EFAULT");
	tap_errno(ioctl(fd, MORSEL_IOC_STAT, (void *)-4096L), EFAULT,
		  "STAT kernel-half pointer: EFAULT");
	page = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(page != MAP_FAILED, "anon");
	{
		struct morsel_stat *ro = (void *)page;

		*ro = st_arg();
		mprotect(page, PG, PROT_READ);
		tap_errno(ioctl(fd, MORSEL_IOC_STAT, ro), EFAULT,
			  "STAT argument in read-only memory (copy out fails): EFAULT");
		mprotect(page, 2 * PG, PROT_READ | PROT_WRITE);
		munmap(page + PG, PG);
		ro = (void *)(page + PG - 16);
		ro->argsz = sizeof(*ro);	/* the rest is unmapped */
		tap_errno(ioctl(fd, MORSEL_IOC_STAT, ro), EFAULT,
			  "STAT argument straddling into unmapped memory: EFAULT");
		munmap(page, PG);
	}
	{
		unsigned char *r = malloc(sizeof(struct morsel_stat) + 8);
		struct morsel_stat *rs = (void *)r;

		memset(r, 0xff, sizeof(struct morsel_stat) + 8);
		rs->argsz = MORSEL_STAT_SIZE_VER0;
		rs->flags = 0;
		tap_ok(ioctl(fd, MORSEL_IOC_STAT, r) == 0 && rs->state == 0 &&
		       rs->flags == 0 && r[sizeof(struct morsel_stat)] == 0xff,
		       "STAT output: state 0, nothing written past argsz");
		free(r);
	}

	/* Unknown ioctls, wrong fds. */
	tap_errno(ioctl(fd, _IO(MORSEL_IOC_MAGIC, 0x7f)), ENOTTY, "unknown morsel ioctl nr: ENOTTY");
	tap_errno(ioctl(fd, _IOWR(MORSEL_IOC_MAGIC, 0x01, struct morsel_map), &s), ENOTTY,
		  "STAT number with another struct size: ENOTTY");
	tap_errno(ioctl(fd, _IOR(MORSEL_IOC_MAGIC, 0x01, struct morsel_stat), &s), ENOTTY,
		  "STAT number with another direction: ENOTTY");
	tap_errno(ioctl(fd, 0x5401 /* TCGETS */, &s), ENOTTY, "TCGETS: ENOTTY");
	{
		int flags;

		tap_errno(ioctl(fd, FS_IOC_GETFLAGS, &flags), ENOTTY,
			  "FS_IOC_GETFLAGS: ENOTTY");
	}
	fdd = open("/dev/morsel", O_RDONLY | O_DIRECTORY);
	s = st_arg();
	tap_errno(ioctl(fdd, MORSEL_IOC_STAT, &s), ENOTTY, "STAT on a directory fd: ENOTTY");
	m = map_arg(NULL, PG);
	tap_errno(ioctl(fdd, MORSEL_IOC_MAP, &m), ENOTTY, "MAP on a directory fd: ENOTTY");
	close(fdd);
	fdr = open(path, O_PATH);
	s = st_arg();
	tap_errno(ioctl(fdr, MORSEL_IOC_STAT, &s), EBADF, "STAT on an O_PATH fd: EBADF");
	close(fdr);
	fdr = open(path, O_RDONLY);
	s = st_arg();
	tap_ok(ioctl(fdr, MORSEL_IOC_STAT, &s) == 0 && s.size == 4 * MiB,
	       "STAT on an O_RDONLY fd works");
	close(fdr);

	/* MORSEL_IOC_MAP */
	p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED, "mmap");
	m = map_arg(p, 4 * MiB);
	tap_ok(ioctl(fd, MORSEL_IOC_MAP, &m) == 0 && m.linked == 2 && m.pages == 0,
	       "MAP of a 4 MiB writable mapping links 2 tables (linked %llu pages %llu)",
	       (unsigned long long)m.linked, (unsigned long long)m.pages);
	m = map_arg(p, 4 * MiB);
	m.argsz = sizeof(m) - 8;
	tap_errno(ioctl(fd, MORSEL_IOC_MAP, &m), EINVAL, "MAP argsz too small: EINVAL");
	{
		struct { struct morsel_map m; uint64_t tail; } big;

		memset(&big, 0, sizeof(big));
		big.m = map_arg(p, 4 * MiB);
		big.m.argsz = sizeof(big);
		big.tail = 7;
		tap_errno(ioctl(fd, MORSEL_IOC_MAP, &big), E2BIG,
			  "MAP larger argsz with a byte the module does not know set: E2BIG");
	}
	m = map_arg(p, 4 * MiB);
	m.argsz = 0;
	tap_errno(ioctl(fd, MORSEL_IOC_MAP, &m), EINVAL, "MAP argsz 0: EINVAL");
	tap_errno(do_map(fd, p, 4 * MiB, 2), EINVAL, "MAP unknown flag 2: EINVAL");
	tap_errno(do_map(fd, p, 4 * MiB, 0x80000000u | MORSEL_MAP_POPULATE), EINVAL,
		  "MAP POPULATE plus an unknown flag: EINVAL");
	m = map_arg(p, 4 * MiB);
	m.argsz = MORSEL_MAP_SIZE_VER0 - 8;
	tap_errno(ioctl(fd, MORSEL_IOC_MAP, &m), EINVAL,
		  "MAP argsz below its first size: EINVAL");
	m = map_arg(p, 4 * MiB);
	m.argsz = 4;
	tap_errno(ioctl(fd, MORSEL_IOC_MAP, &m), EINVAL, "MAP argsz 4: EINVAL");
	tap_errno(do_map(fd, p, 0, 0), EINVAL, "MAP length 0: EINVAL");
	tap_errno(do_map(fd, p + 1, PG, 0), EINVAL, "MAP unaligned address: EINVAL");
	tap_errno(do_map(fd, p, PG + 1, 0), EINVAL, "MAP unaligned length: EINVAL");
	tap_errno(do_map(fd, p, -PG, 0), EINVAL, "MAP range wrapping around: EINVAL");
	tap_errno(do_map(fd, (void *)(1ULL << 62), PG, 0), EINVAL,
		  "MAP range beyond the user address space: EINVAL");
	tap_errno(do_map(fd, p, 4 * MiB + PG, 0), EINVAL,
		  "MAP range running past the end of the mapping: EINVAL");
	tap_errno(do_map(fd, p - PG, 2 * PG, 0), EINVAL,
		  "MAP range starting before the mapping: EINVAL");
	anon = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(anon != MAP_FAILED, "anon");
	tap_errno(do_map(fd, anon, PG, 0), EINVAL, "MAP of an anonymous mapping: EINVAL");
	q = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
	tap_require(q != MAP_FAILED, "mmap fd2");
	tap_errno(do_map(fd, q, PG, 0), EINVAL, "MAP of another morsel's mapping: EINVAL");
	tap_ok(do_map(fd2, q, 2 * MiB, 0) == 0, "MAP through that morsel's own fd works");
	fdr = open(path, O_RDWR);
	tap_ok(do_map(fdr, p, 2 * MiB, 0) == 0,
	       "MAP through another fd of the same morsel works");
	close(fdr);
	m = map_arg(NULL, PG);
	tap_errno(ioctl(fd, MORSEL_IOC_MAP, NULL), EFAULT, "MAP NULL pointer: EFAULT");
	page = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memcpy(page, &m, sizeof(m));
	((struct morsel_map *)page)->addr = (uintptr_t)p;
	mprotect(page, PG, PROT_READ);
	tap_errno(ioctl(fd, MORSEL_IOC_MAP, page), EFAULT,
		  "MAP argument in read-only memory (copy out fails): EFAULT");
	munmap(page, PG);

	/* PROT_NONE parts. */
	tap_require(mprotect(p + 2 * MiB, 2 * MiB, PROT_NONE) == 0, "mprotect");
	tap_errno(do_map(fd, p, 4 * MiB, 0), EACCES, "MAP over a PROT_NONE part: EACCES");
	tap_errno(do_map(fd, p + 2 * MiB, PG, MORSEL_MAP_POPULATE), EACCES,
		  "MAP POPULATE of a PROT_NONE page: EACCES");
	tap_ok(do_map(fd, p, 2 * MiB, 0) == 0, "MAP of the accessible half works");
	tap_ok(mprotect(p + 2 * MiB, 2 * MiB, PROT_READ) == 0 &&
	       do_map(fd, p, 4 * MiB, 0) == 0,
	       "MAP across two VMAs (RW and RO) of the same file works");
	m = map_arg(p, 4 * MiB);
	m.flags = MORSEL_MAP_POPULATE;
	s = st_arg();
	tap_ok(ioctl(fd, MORSEL_IOC_MAP, &m) == 0 && ioctl(fd, MORSEL_IOC_STAT, &s) == 0 &&
	       s.data_pages == 1024 && p[3 * MiB] == 0,
	       "MAP POPULATE allocates every frame (%llu)",
	       (unsigned long long)s.data_pages);
	/* A mapping larger than the object: the part beyond is skipped. */
	tap_require(munmap(q, 2 * MiB) == 0 && ftruncate(fd2, PG) == 0, "shrink fd2");
	q = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
	tap_require(q != MAP_FAILED, "mmap fd2 again");
	s = st_arg();
	tap_ok(do_map(fd2, q, 2 * MiB, MORSEL_MAP_POPULATE) == 0 &&
	       ioctl(fd2, MORSEL_IOC_STAT, &s) == 0 && s.data_pages == 1 && s.size == PG,
	       "MAP POPULATE of a mapping beyond the object's end populates only up to the size");

	munmap(p, 4 * MiB);
	munmap(q, 2 * MiB);
	munmap(anon, 2 * MiB);
	close(fd);
	close(fd2);
	unlink(path);
	unlink(path2);
	return tap_done();
}
