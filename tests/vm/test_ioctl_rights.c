#define _GNU_SOURCE
/*
 * The rights table of docs/semantics.md, checked as an unprivileged user
 * for every ioctl: objects owned by root and by the user, with modes 0200,
 * 0400, 0600, 0602 and 0604, opened O_RDONLY, O_WRONLY and O_RDWR.  An
 * open the mode refuses must fail with EACCES; on a descriptor that opens,
 * STAT always works, SCAN needs reading, SCAN with CLEAN reading and
 * writing, FILL reading and writing (and a readable source), MAP reading,
 * FREEZE writing, SPLIT reading; anything else is EBADF.  A child comes
 * out owned by the caller, with the base's mode less the umask, and the
 * base's group if the caller is in it, else the caller's group with group
 * bits no wider than the base's other bits: never more open than its base.  Last, the two attacks of
 * issue 15 replayed: a 0602 root object written, frozen and split through
 * O_WRONLY (the split must fail), and SCAN on a write-only descriptor.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/morsel.h>
#include "vm.h"

#define USER 1000
#define GROUP 1000
#define SRC "/tmp/ir_src"
#define UMASK 022

static const mode_t modes[] = { 0200, 0400, 0600, 0602, 0604 };
static const int accs[] = { O_RDONLY, O_WRONLY, O_RDWR };
static const char *const acc_names[] = { "O_RDONLY", "O_WRONLY", "O_RDWR" };
#define NMODES (int)(sizeof(modes) / sizeof(modes[0]))
#define NACCS 3

static void name_of(char *buf, size_t n, int owner, int mi, int ai, char kind)
{
	snprintf(buf, n, "/dev/morsel/ir_%s_%03o_%d_%c",
		 owner ? "user" : "root", modes[mi], ai, kind);
}

/* Would the user (USER:GROUP, no other groups) be let open it so? */
static int may_open(int owner, mode_t mode, int acc)
{
	int bits = owner ? (mode >> 6) & 7 : mode & 7;	/* root files: gid 0 */
	int want = acc == O_RDONLY ? 4 : acc == O_WRONLY ? 2 : 6;

	return (bits & want) == want;
}

static int scan(int fd, unsigned int flags)
{
	uint64_t present = 0;
	struct morsel_scan s = {
		.argsz = sizeof(s), .flags = flags, .start = 0, .length = 4096,
		.present = (uintptr_t)&present,
	};

	return ioctl(fd, MORSEL_IOC_SCAN, &s);
}

/* FILL page 1 (a hole) from SRC. */
static int fill(int fd, int src, uint32_t *filled)
{
	uint64_t page = 1;
	struct morsel_fill f = {
		.argsz = sizeof(f), .fd = src, .nr_pages = 1,
		.pages = (uintptr_t)&page,
	};
	int ret = ioctl(fd, MORSEL_IOC_FILL, &f);

	*filled = f.filled;
	return ret;
}

/* The child's descriptor, or -1 with errno. */
/* MAP of a read-only mapping, or of no mapping when @fd cannot map. */
static int map(int fd, int readable)
{
	struct morsel_map m = { .argsz = sizeof(m), .length = 2 * MiB };
	void *p = MAP_FAILED;
	int ret;

	if (readable) {
		p = mmap(NULL, 2 * MiB, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			return -1;
	}
	m.addr = p == MAP_FAILED ? 0x200000000ULL : (uintptr_t)p;
	ret = ioctl(fd, MORSEL_IOC_MAP, &m);
	if (p != MAP_FAILED)
		munmap(p, 2 * MiB);
	return ret;
}

/* Checks one combination makes: 1 for a refused open, else 8. */
static void one(int owner, int mi, int ai, int src)
{
	mode_t mode = modes[mi];
	int acc = accs[ai];
	int r = acc != O_WRONLY, w = acc != O_RDONLY;
	char p[64], f[64], what[96];
	struct morsel_stat st;
	struct stat bs, cs;
	uint32_t filled = 0;
	int fd, c, ret, next;
	char byte = 0;

	name_of(p, sizeof(p), owner, mi, ai, 'p');
	name_of(f, sizeof(f), owner, mi, ai, 'f');
	snprintf(what, sizeof(what), "%s %04o %s", owner ? "user" : "root",
		 mode, acc_names[ai]);
	if (!may_open(owner, mode, acc)) {
		tap_errno(fd = open(p, acc), EACCES, "%s: open refused", what);
		if (fd >= 0)
			close(fd);
		return;
	}
	fd = open(p, acc);
	tap_require(fd >= 0, "open %s", p);
	tap_ok(stat_of(fd, &st) == 0 && st.size == 2 * MiB,
	       "%s: STAT works", what);
	ret = scan(fd, 0);
	tap_ok(r ? ret == 0 : ret == -1 && errno == EBADF,
	       "%s: SCAN %s", what, r ? "works" : "EBADF");
	ret = scan(fd, MORSEL_SCAN_CLEAN);
	tap_ok(r && w ? ret == 0 : ret == -1 && errno == EBADF,
	       "%s: SCAN|CLEAN %s", what, r && w ? "works" : "EBADF");
	ret = fill(fd, src, &filled);
	tap_ok(r && w ? ret == 0 && filled == 1 : ret == -1 && errno == EBADF,
	       "%s: FILL %s", what, r && w ? "fills the hole" : "EBADF");
	ret = map(fd, r);
	tap_ok(r ? ret == 0 : ret == -1 && errno == EBADF,
	       "%s: MAP %s", what, r ? "works" : "EBADF");
	ret = freeze(fd);
	tap_ok(w ? ret == 0 : ret == -1 && errno == EBADF,
	       "%s: FREEZE %s", what, w ? "works" : "EBADF");
	close(fd);

	fd = open(f, acc);
	tap_require(fd >= 0 && fstat(fd, &bs) == 0, "open %s", f);
	next = dup(0);
	close(next);
	c = split_flags(fd, 0);
	tap_ok(r ? c >= 0 : c == -1 && errno == EBADF,
	       "%s: SPLIT of a frozen base %s", what, r ? "works" : "EBADF");
	if (c >= 0) {
		/* The base's group only if the user is in it, else the user's,
		 * with no more than the base gives everyone. */
		gid_t want_gid = bs.st_gid == GROUP ? bs.st_gid : GROUP;
		mode_t want = bs.st_mode & 0777 & ~UMASK;

		if (bs.st_gid != GROUP)
			want &= ~(0070 & ~((bs.st_mode & 0007) << 3));
		tap_ok(fstat(c, &cs) == 0 && cs.st_uid == USER &&
		       cs.st_gid == want_gid && (cs.st_mode & 07777) == want &&
		       !(cs.st_mode & ~bs.st_mode & 07777) &&
		       pread(c, &byte, 1, 0) == 1 && byte == 0x5a,
		       "%s: the child is %d:%d %04o (base %d:%d %04o): no more open, same data",
		       what, cs.st_uid, cs.st_gid, cs.st_mode & 07777,
		       bs.st_uid, bs.st_gid, bs.st_mode & 07777);
		close(c);
	} else {
		c = dup(0);
		close(c);
		tap_ok(c == next, "%s: no descriptor left behind", what);
	}
	close(fd);
}

static void as_user(void)
{
	int src = open(SRC, O_RDONLY);
	int owner, mi, ai;

	tap_require(src >= 0, "open " SRC);
	umask(UMASK);
	for (owner = 0; owner < 2; owner++)
		for (mi = 0; mi < NMODES; mi++)
			for (ai = 0; ai < NACCS; ai++)
				one(owner, mi, ai, src);
	close(src);
}

/* Issue 15's first attack, and the scan leak, replayed. */
static void attack(void)
{
	char buf[4096] = { 0 };
	uint32_t filled;
	int fd, src, c;

	tap_errno(open("/dev/morsel/ir_secret", O_RDONLY), EACCES,
		  "attack: the 0602 secret cannot be opened for reading");
	fd = open("/dev/morsel/ir_secret", O_WRONLY);
	tap_ok(fd >= 0 && pwrite(fd, "w", 1, 8192) == 1,
	       "attack: it can be opened O_WRONLY and written (0602)");
	tap_errno(scan(fd, 0), EBADF,
		  "attack: SCAN on the O_WRONLY descriptor: EBADF (no map of the data)");
	tap_ok(freeze(fd) == 0, "attack: FREEZE through O_WRONLY works (write right)");
	c = split_flags(fd, 0);
	tap_ok(c == -1 && errno == EBADF,
	       "attack: SPLIT through O_WRONLY: EBADF, no copy to read the secret from");
	if (c >= 0) {
		tap_diag("child read: %zd", pread(c, buf, sizeof(buf), 0));
		close(c);
	}
	src = open(SRC, O_RDONLY);
	tap_errno(fill(fd, src, &filled), EBADF,
		  "attack: FILL through O_WRONLY: EBADF (it would report holes)");
	close(src);
	close(fd);
	fd = open("/dev/morsel/ir_secret_frozen", O_WRONLY);
	tap_ok(fd >= 0, "attack: a frozen 0602 secret opens O_WRONLY");
	tap_errno(split_flags(fd, 0), EBADF, "attack: and its SPLIT is EBADF too");
	close(fd);
}

static int make(const char *path, uid_t uid, gid_t gid, mode_t mode, int frozen)
{
	char page[4096];
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);

	if (fd < 0)
		return -1;
	memset(page, 0x5a, sizeof(page));
	if (ftruncate(fd, 2 * MiB) || pwrite(fd, page, sizeof(page), 0) != 4096 ||
	    (frozen && freeze(fd)) || fchown(fd, uid, gid) || fchmod(fd, mode)) {
		close(fd);
		return -1;
	}
	return close(fd);
}

int main(void)
{
	long base_morsels = total("morsels");
	int owner, mi, ai, ok = 1, fd;
	char p[64], f[64], page[4096];

	for (owner = 0; owner < 2; owner++)
		for (mi = 0; mi < NMODES; mi++)
			for (ai = 0; ai < NACCS; ai++) {
				uid_t u = owner ? USER : 0;
				gid_t g = owner ? GROUP : 0;

				name_of(p, sizeof(p), owner, mi, ai, 'p');
				name_of(f, sizeof(f), owner, mi, ai, 'f');
				ok &= make(p, u, g, modes[mi], 0) == 0 &&
				      make(f, u, g, modes[mi], 1) == 0;
			}
	ok &= make("/dev/morsel/ir_secret", 0, 0, 0602, 0) == 0 &&
	      make("/dev/morsel/ir_secret_frozen", 0, 0, 0602, 1) == 0;
	memset(page, 0x33, sizeof(page));
	fd = open(SRC, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ok &= fd >= 0 && pwrite(fd, page, sizeof(page), 0) == 4096;
	close(fd);
	tap_require(ok, "setup as root");

	tap_run_as(USER, GROUP, as_user);
	tap_run_as(USER, GROUP, attack);

	for (owner = 0; owner < 2; owner++)
		for (mi = 0; mi < NMODES; mi++)
			for (ai = 0; ai < NACCS; ai++) {
				name_of(p, sizeof(p), owner, mi, ai, 'p');
				name_of(f, sizeof(f), owner, mi, ai, 'f');
				unlink(p);
				unlink(f);
			}
	unlink("/dev/morsel/ir_secret");
	unlink("/dev/morsel/ir_secret_frozen");
	unlink(SRC);
	tap_ok(total("morsels") == base_morsels,
	       "every object and child is gone afterwards");
	return tap_done();
}
