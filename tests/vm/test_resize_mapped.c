#define _GNU_SOURCE
/*
 * A mapped morsel changes size as a tmpfs file does (issue 12, item 4):
 *  - growth (ftruncate, truncate(), a write or fallocate past the end) is
 *    visible at once to every mapper, in this and another process, linked
 *    and page by page, also across root-level changes (2 MiB -> 1 GiB ->
 *    3 GiB -> 512 GiB), and the links made before stay;
 *  - shrinking (ftruncate, open(O_TRUNC)) removes what lies past the new
 *    end from every mapper: access there is SIGBUS, the data below stays,
 *    the frames and tables past the end are freed, and growing again reads
 *    zeros; also across root levels and down to size 0;
 *  - a copy-on-write child resizes mapped (its base does not change); a
 *    frozen object never does (EPERM);
 *  - a save racing with shrinks of the object it reads through its own
 *    mapping never kills the saver (SIGBUS) and never hangs.
 */
#include <linux/falloc.h>
#include <pthread.h>
#include "libmorsel.h"
#include "vm.h"

#define PATH	"/dev/morsel/rm_a"

static int readable(volatile unsigned char *p, unsigned char *v)
{
	return try_read(p, v) == 0;
}

/* A second process that maps @fd anew and answers probes through a pipe. */
struct peer {
	pid_t pid;
	int cmd, ans;
};

/*
 * The peer maps @len bytes of @fd from offset 0 twice: all of it (links
 * where granules are whole) and its first 64 KiB (page by page).  A probe
 * is an offset; the answer is the byte read there, or -SIGBUS.
 */
static void peer_start(struct peer *pr, int fd, long long len)
{
	int c[2], a[2];

	tap_require(pipe(c) == 0 && pipe(a) == 0);
	pr->pid = fork();
	tap_require(pr->pid >= 0);
	if (pr->pid == 0) {
		unsigned char *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		unsigned char *s = mmap(NULL, 64 * KiB, PROT_READ, MAP_SHARED,
					fd, 0);
		long long off;
		int r;

		close(c[1]);	/* or the reads below never see EOF */
		close(a[0]);
		probe_init();
		while (read(c[0], &off, sizeof(off)) == sizeof(off)) {
			unsigned char v = 0;

			if (m == MAP_FAILED || s == MAP_FAILED)
				r = -1000;
			else if (off < 0)	/* the page-by-page mapping */
				r = readable(s - off - 1, &v) ? v : -SIGBUS;
			else
				r = readable(m + off, &v) ? v : -SIGBUS;
			if (write(a[1], &r, sizeof(r)) != sizeof(r))
				_exit(1);
		}
		_exit(0);
	}
	close(c[0]);
	close(a[1]);
	pr->cmd = c[1];
	pr->ans = a[0];
}

/* The peer's view of offset @off (-1 - off: through its 64 KiB mapping). */
static int peer_read(struct peer *pr, long long off)
{
	int r = -2000;

	if (write(pr->cmd, &off, sizeof(off)) != sizeof(off) ||
	    read(pr->ans, &r, sizeof(r)) != sizeof(r))
		return -3000;
	return r;
}

static void peer_stop(struct peer *pr)
{
	close(pr->cmd);
	close(pr->ans);
	int st = wait_status(pr->pid);

	tap_ok(CHILD_OK(st), "the peer process exited cleanly (status %#x)", st);
}

static void grow_and_shrink(void)
{
	const long long vlen = 16 * MiB;
	long long tables0, d;
	unsigned char *p, *s, v = 0;
	struct peer pr;
	unsigned long l;
	int fd;

	fd = mkobj(PATH, 4 * MiB);
	p = mmap(NULL, vlen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	s = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		 4 * MiB);	/* page by page, past the end for now */
	tap_require(p != MAP_FAILED && s != MAP_FAILED);
	p[0] = 'a';
	p[3 * MiB] = 'b';
	peer_start(&pr, fd, vlen);
	tap_ok(peer_read(&pr, 0) == 'a' && peer_read(&pr, 3 * MiB) == 'b',
	       "4 MiB mapped here (16 MiB VMA) and in a peer process");
	l = links(fd);
	tap_ok(try_read(p + 6 * MiB, &v) == SIGBUS && try_read(s, &v) == SIGBUS &&
	       peer_read(&pr, 6 * MiB) == -SIGBUS,
	       "past the end: SIGBUS everywhere");

	tap_ok(ftruncate(fd, 8 * MiB) == 0, "mapped: ftruncate grows to 8 MiB");
	tap_ok(try_write(p + 6 * MiB, 'c') == 0 && try_write(s + 5, 'd') == 0,
	       "  stores to the new part work, linked and page by page");
	tap_ok(peer_read(&pr, 6 * MiB) == 'c' && peer_read(&pr, 4 * MiB + 5) == 'd' &&
	       p[4 * MiB + 5] == 'd' && p[0] == 'a' && p[3 * MiB] == 'b',
	       "  the peer sees them at once; the old data stays");
	tap_ok(links(fd) >= l, "  the links made before stay (%lu, then %lu)", l,
	       links(fd));

	tap_ok(pwrite(fd, "e", 1, 9 * MiB) == 1 && size_of(fd) == 9 * MiB + 1 &&
	       p[9 * MiB] == 'e' && peer_read(&pr, 9 * MiB) == 'e',
	       "mapped: pwrite past the end extends; mappers see it");
	tap_ok(fallocate(fd, 0, 9 * MiB, 3 * MiB) == 0 &&
	       size_of(fd) == 12 * MiB && readable(p + 12 * MiB - 1, &v) && v == 0,
	       "mapped: fallocate(0) past the end extends");

	/* Shrink to 3 MiB + 100: the page of the last byte stays. */
	tables0 = tables_of(fd);
	d = data_of(fd);
	tap_ok(ftruncate(fd, 3 * MiB + 100) == 0, "mapped: ftruncate shrinks to 3 MiB + 100");
	tap_ok(p[0] == 'a' && p[3 * MiB] == 'b' && readable(p + 3 * MiB + 4095, &v) &&
	       v == 0 && peer_read(&pr, 3 * MiB) == 'b',
	       "  below the end: data stays, here and in the peer");
	tap_ok(try_read(p + 3 * MiB + 4096, &v) == SIGBUS &&
	       try_read(p + 6 * MiB, &v) == SIGBUS && try_read(s + 5, &v) == SIGBUS &&
	       peer_read(&pr, 6 * MiB) == -SIGBUS &&
	       peer_read(&pr, 3 * MiB + 8192) == -SIGBUS,
	       "  past it: SIGBUS, linked and page by page, here and in the peer");
	tap_ok(data_of(fd) < d && data_of(fd) <= 2 && tables_of(fd) < tables0,
	       "  frames and tables past the end are freed (data %lld -> %lld, tables %lld -> %lld)",
	       d, data_of(fd), tables0, tables_of(fd));
	tap_ok(ftruncate(fd, 8 * MiB) == 0 && readable(p + 6 * MiB, &v) && v == 0 &&
	       readable(s + 5, &v) && v == 0 && peer_read(&pr, 4 * MiB + 5) == 0,
	       "grow again: the cut part reads zeros everywhere");

	{
		int fd2 = open(PATH, O_RDWR | O_TRUNC);

		tap_ok(fd2 >= 0 && size_of(fd) == 0 && data_of(fd) == 0,
		       "mapped: open(O_TRUNC) empties it");
		tap_ok(try_read(p, &v) == SIGBUS && peer_read(&pr, 0) == -SIGBUS &&
		       peer_read(&pr, -1) == -SIGBUS,
		       "  every access is SIGBUS now");
		close(fd2);
	}
	peer_stop(&pr);
	munmap(s, 64 * KiB);
	munmap(p, vlen);
	close(fd);
	unlink(PATH);
}

/* Root levels change under a mapping: 2 MiB -> 1 GiB -> 3 GiB -> 512 GiB. */
static void across_levels(void)
{
	const long long vlen = 512 * GiB;
	unsigned char *p, v = 0;
	struct morsel_stat st;
	int fd;

	fd = mkobj(PATH, 2 * MiB);
	p = mmap(NULL, vlen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		 fd, 0);
	tap_require(p != MAP_FAILED);
	p[5] = 'x';
	tap_ok(mstat(fd).level == 1, "a 2 MiB object has a PTE root");
	tap_ok(ftruncate(fd, GiB) == 0 && mstat(fd).level == 2 && p[5] == 'x' &&
	       try_write(p + GiB - 1, 'y') == 0,
	       "mapped: grows to 1 GiB (PMD root); old and new parts work");
	tap_ok(ftruncate(fd, 3 * GiB) == 0 && mstat(fd).level == 3 && p[5] == 'x' &&
	       p[GiB - 1] == 'y' && try_write(p + 2 * GiB + 7, 'z') == 0,
	       "mapped: grows to 3 GiB (PUD root); old and new parts work");
	tap_ok(ftruncate(fd, 512 * GiB) == 0 &&
	       try_write(p + 511 * GiB, 'w') == 0 && p[2 * GiB + 7] == 'z',
	       "mapped: grows to 512 GiB; a store at 511 GiB works");
	tap_ok(ftruncate(fd, 2 * GiB) == 0 && p[5] == 'x' && p[GiB - 1] == 'y' &&
	       try_read(p + 2 * GiB + 7, &v) == SIGBUS &&
	       try_read(p + 511 * GiB, &v) == SIGBUS,
	       "mapped: shrinks to 2 GiB: SIGBUS past it, data below");
	tap_ok(ftruncate(fd, MiB) == 0 && stat_of(fd, &st) == 0 && st.level == 1 &&
	       p[5] == 'x' && try_read(p + MiB, &v) == SIGBUS &&
	       try_read(p + GiB - 1, &v) == SIGBUS,
	       "mapped: shrinks to 1 MiB (PTE root again): data below");
	tap_ok(data_of(fd) == 1 && tables_of(fd) == 1,
	       "  one frame and one table left (%lld, %lld)", data_of(fd),
	       tables_of(fd));
	tap_ok(ftruncate(fd, 0) == 0 && try_read(p, &v) == SIGBUS &&
	       tables_of(fd) == 0, "mapped: shrinks to 0: nothing left");
	munmap(p, vlen);
	close(fd);
	unlink(PATH);
}

static void children_and_frozen(void)
{
	unsigned char *c, v = 0, got = 0;
	int fd, cfd;

	fd = mkobj(PATH, 4 * MiB);
	tap_require(pwrite(fd, "base", 4, 3 * MiB) == 4);
	tap_require(freeze(fd) == 0);
	tap_errno(ftruncate(fd, 8 * MiB), EPERM, "a frozen object: ftruncate EPERM");
	cfd = split(fd);
	tap_require(cfd >= 0);
	c = mmap(NULL, 8 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
	tap_require(c != MAP_FAILED);
	tap_ok(c[3 * MiB] == 'b' && ftruncate(cfd, 8 * MiB) == 0 &&
	       try_write(c + 7 * MiB, 'n') == 0 && c[3 * MiB] == 'b',
	       "a mapped child grows; its borrowed data stays");
	tap_ok(ftruncate(cfd, 3 * MiB) == 0 && try_read(c + 3 * MiB, &v) == SIGBUS &&
	       pread(fd, &got, 1, 3 * MiB) == 1 && got == 'b' &&
	       size_of(fd) == 4 * MiB,
	       "a mapped child shrinks; its base keeps size and data");
	munmap(c, 8 * MiB);
	close(cfd);
	close(fd);
	unlink(PATH);
}

static volatile int stop_resizing;

static void *resizer(void *arg)
{
	int fd = *(int *)arg, i = 0;

	while (!stop_resizing)
		if (ftruncate(fd, (i++ & 1) ? 6 * MiB : 64 * KiB) != 0)
			break;
	return NULL;
}

static void save_while_shrinking(void)
{
	int fd = mkobj(PATH, 6 * MiB), saves = 0, ok = 0, i;
	static unsigned char buf[6 * MiB];
	struct mimg_error err;
	pthread_t th;

	memset(buf, 's', sizeof(buf));
	tap_require(pwrite(fd, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf));
	tap_require(pthread_create(&th, NULL, resizer, &fd) == 0);
	for (i = 0; i < 40; i++, saves++) {
		memset(&err, 0, sizeof(err));
		ok += morsel_save(fd, "/tmp/rm.img", NULL, NULL, &err) == 0;
	}
	stop_resizing = 1;
	pthread_join(th, NULL);
	tap_ok(saves == 40, "40 saves while another thread shrinks and grows the object: the saver lives (%d succeeded)",
	       ok);
	unlink("/tmp/rm.img");
	close(fd);
	unlink(PATH);
}

int main(void)
{
	long data0 = total("data_pages"), tables0 = total("table_pages");

	watchdog(900);
	probe_init();
	phase = "grow and shrink";
	grow_and_shrink();
	phase = "across levels";
	across_levels();
	phase = "children";
	children_and_frozen();
	phase = "save while shrinking";
	save_while_shrinking();
	tap_ok(total("data_pages") == data0 && total("table_pages") == tables0,
	       "nothing left over (data %+ld, tables %+ld)",
	       total("data_pages") - data0, total("table_pages") - tables0);
	return tap_done();
}
