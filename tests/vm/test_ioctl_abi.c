#define _GNU_SOURCE
/*
 * The extensible-struct convention of every ioctl (uAPI header, "Extensible
 * arguments"), checked for all six: an argsz below the first published size
 * (MORSEL_*_SIZE_VER0) is EINVAL; exactly that size works; a larger argsz
 * whose bytes past the module's struct are zero works, and the module
 * writes nothing past its own struct; the same with one of those bytes set
 * is E2BIG and does nothing.  The command numbers carry no size, and the
 * retired sized numbers of the first uAPI are ENOTTY.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/morsel.h>
#include "vm.h"

#define TAIL 24		/* bytes a "newer" caller appends */
#define BUF 512

static unsigned char buf[BUF];
static int fd, frozen, src;
static void *map;

/* The argument of ioctl @i, as the module's struct, into buf. */
static size_t arg_of(int i, unsigned long *cmd, size_t *ver0)
{
	static uint64_t page = 7;

	memset(buf, 0, sizeof(buf));
	switch (i) {
	case 0: {
		struct morsel_stat *a = (void *)buf;

		*cmd = MORSEL_IOC_STAT;
		*ver0 = MORSEL_STAT_SIZE_VER0;
		a->argsz = sizeof(*a);
		return sizeof(*a);
	}
	case 1: {
		struct morsel_map *a = (void *)buf;

		*cmd = MORSEL_IOC_MAP;
		*ver0 = MORSEL_MAP_SIZE_VER0;
		a->argsz = sizeof(*a);
		a->addr = (uintptr_t)map;
		a->length = 2 * 1024 * 1024;
		return sizeof(*a);
	}
	case 2: {
		struct morsel_freeze *a = (void *)buf;

		*cmd = MORSEL_IOC_FREEZE;
		*ver0 = MORSEL_FREEZE_SIZE_VER0;
		a->argsz = sizeof(*a);
		return sizeof(*a);
	}
	case 3: {
		struct morsel_split *a = (void *)buf;

		*cmd = MORSEL_IOC_SPLIT;
		*ver0 = MORSEL_SPLIT_SIZE_VER0;
		a->argsz = sizeof(*a);
		a->fd = -1;
		return sizeof(*a);
	}
	case 4: {
		struct morsel_scan *a = (void *)buf;

		*cmd = MORSEL_IOC_SCAN;
		*ver0 = MORSEL_SCAN_SIZE_VER0;
		a->argsz = sizeof(*a);
		a->length = PG;
		return sizeof(*a);
	}
	default: {
		struct morsel_fill *a = (void *)buf;

		*cmd = MORSEL_IOC_FILL;
		*ver0 = MORSEL_FILL_SIZE_VER0;
		a->argsz = sizeof(*a);
		a->fd = src;
		a->nr_pages = 1;
		a->pages = (uintptr_t)&page;
		page++;		/* a new hole each time */
		return sizeof(*a);
	}
	}
}

static const char *const names[] = { "STAT", "MAP", "FREEZE", "SPLIT", "SCAN", "FILL" };

/* The descriptor ioctl @i works on: SPLIT needs a frozen base. */
static int fd_for(int i)
{
	return i == 3 ? frozen : fd;
}

/* Did the call do its job?  SPLIT: a child descriptor to close. */
static int did_it(int i, long ret)
{
	if (ret)
		return 0;
	if (i == 3) {
		struct morsel_split *a = (void *)buf;

		if (a->fd < 0)
			return 0;
		close(a->fd);
	}
	if (i == 0)
		return ((struct morsel_stat *)buf)->size == 8 * 1024 * 1024;
	if (i == 5)
		return ((struct morsel_fill *)buf)->filled == 1;
	return 1;
}

static void sizes(int i)
{
	unsigned long cmd;
	size_t ver0, ksize = arg_of(i, &cmd, &ver0);
	int k, tail_clean;
	long ret;

	tap_ok(ksize == ver0, "%s: the header's struct is its first size (%zu)",
	       names[i], ver0);

	arg_of(i, &cmd, &ver0);
	*(uint32_t *)buf = ver0 - 1;
	tap_errno(ioctl(fd_for(i), cmd, buf), EINVAL,
		  "%s: argsz one below the first size: EINVAL", names[i]);

	arg_of(i, &cmd, &ver0);
	*(uint32_t *)buf = ver0;
	tap_ok(did_it(i, ioctl(fd_for(i), cmd, buf)),
	       "%s: argsz of the first size works", names[i]);

	arg_of(i, &cmd, &ver0);
	*(uint32_t *)buf = ksize + TAIL;
	memset(buf + ksize + TAIL, 0xee, BUF - ksize - TAIL);
	ret = ioctl(fd_for(i), cmd, buf);
	for (tail_clean = 1, k = ksize; k < (int)(ksize + TAIL); k++)
		tail_clean &= buf[k] == 0;
	tap_ok(did_it(i, ret) && tail_clean && buf[ksize + TAIL] == 0xee,
	       "%s: a larger argsz with a zero tail works, nothing written past the module's struct",
	       names[i]);

	arg_of(i, &cmd, &ver0);
	*(uint32_t *)buf = ksize + TAIL;
	buf[ksize + TAIL - 1] = 1;
	tap_errno(ioctl(fd_for(i), cmd, buf), E2BIG,
		  "%s: a larger argsz with a byte the module does not know set: E2BIG",
		  names[i]);
}

int main(void)
{
	unsigned long old_numbers[] = {
		_IOWR(MORSEL_IOC_MAGIC, 0x01, char[128]),
		_IOWR(MORSEL_IOC_MAGIC, 0x02, char[64]),
		_IOW(MORSEL_IOC_MAGIC, 0x03, char[40]),
		_IOWR(MORSEL_IOC_MAGIC, 0x04, char[48]),
		_IOWR(MORSEL_IOC_MAGIC, 0x05, char[104]),
		_IOWR(MORSEL_IOC_MAGIC, 0x06, char[96]),
	};
	unsigned long cmd;
	size_t ver0;
	char page[PG];
	int i, retired = 0;

	fd = open("/dev/morsel/abi", O_RDWR | O_CREAT | O_EXCL, 0600);
	frozen = open("/dev/morsel/abi_frozen", O_RDWR | O_CREAT | O_EXCL, 0600);
	src = open("/tmp/abi_src", O_RDWR | O_CREAT | O_TRUNC, 0600);
	memset(page, 0x42, sizeof(page));
	tap_require(fd >= 0 && frozen >= 0 && src >= 0 &&
		    ftruncate(fd, 8 * 1024 * 1024) == 0 &&
		    ftruncate(frozen, PG) == 0 &&
		    pwrite(src, page, PG, 0) == PG, "setup");
	{
		struct morsel_freeze f = { .argsz = sizeof(f) };

		tap_require(ioctl(frozen, MORSEL_IOC_FREEZE, &f) == 0, "freeze");
	}
	map = mmap(NULL, 2 * 1024 * 1024, PROT_READ, MAP_SHARED, fd, 0);
	tap_require(map != MAP_FAILED, "mmap");

	for (i = 0; i < 6; i++)
		if (i != 2)
			sizes(i);
	sizes(2);	/* FREEZE last: it makes @fd frozen */

	for (i = 0; i < 6; i++) {
		arg_of(i, &cmd, &ver0);
		retired += ioctl(fd, old_numbers[i], buf) == -1 && errno == ENOTTY;
	}
	tap_ok(retired == 6, "the six retired sized command numbers: ENOTTY (%d of 6)",
	       retired);
	tap_ok(_IOC_SIZE(MORSEL_IOC_STAT) == 0 && _IOC_SIZE(MORSEL_IOC_FILL) == 0,
	       "command numbers carry no size");

	munmap(map, 2 * 1024 * 1024);
	close(fd);
	close(frozen);
	close(src);
	unlink("/dev/morsel/abi");
	unlink("/dev/morsel/abi_frozen");
	unlink("/tmp/abi_src");
	return tap_done();
}
