#define _GNU_SOURCE
/*
 * Lifecycle stress: thousands of create / ftruncate / write / mmap / touch /
 * resize / verify / munmap / unlink / close cycles on objects of every level
 * (named and O_TMPFILE), from two threads at once and then with fork
 * children, with up to 8 objects alive per thread freed in random order.
 * Every byte written is read back, and the module totals return to their
 * baseline.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/morsel.h>
#include "vm.h"

#define LIVE 8
#define NW 8
#define CYCLES 2500

static const long long sizes[] = {
	8 * KiB, 2 * MiB, 2 * MiB + 4 * KiB, 64 * MiB, 1 * GiB,
	1 * GiB + 4 * KiB, 3 * GiB, 64 * GiB,
};
#define NSIZES (int)(sizeof(sizes) / sizeof(sizes[0]))

struct obj {
	int fd;
	int named;
	char name[64];
	long long size;
	char *map;
	long long maplen, mapoff;
	int nw;
	long long woff[NW];
	unsigned char wval[NW];
};

struct worker {
	int id;
	unsigned seed;
	int cycles;
	int errors;
	int creates, maps, resizes, frees, forks;
	char first_error[256];
};

static void fail(struct worker *w, const char *what, struct obj *o, long long off)
{
	if (!w->errors++)
		snprintf(w->first_error, sizeof(w->first_error),
			 "%s (size %lld, off %lld, errno %d)", what,
			 o ? o->size : -1, off, errno);
}

static long long rnd(struct worker *w, long long n)
{
	unsigned long long r = (unsigned long long)rand_r(&w->seed) << 31 ^
			       (unsigned long long)rand_r(&w->seed);

	return (long long)(r % (unsigned long long)n);
}

static void record(struct obj *o, long long off, unsigned char v)
{
	int i;

	for (i = 0; i < o->nw; i++)
		if (o->woff[i] == off) {
			o->wval[i] = v;
			return;
		}
	if (o->nw < NW) {
		o->woff[o->nw] = off;
		o->wval[o->nw++] = v;
	}
}

static void verify(struct worker *w, struct obj *o)
{
	unsigned char c;
	int i;

	for (i = 0; i < o->nw; i++) {
		if (pread(o->fd, &c, 1, o->woff[i]) != 1 || c != o->wval[i])
			fail(w, "pread mismatch", o, o->woff[i]);
		if (o->map && o->woff[i] >= o->mapoff &&
		    o->woff[i] < o->mapoff + o->maplen &&
		    (unsigned char)o->map[o->woff[i] - o->mapoff] != o->wval[i])
			fail(w, "mapping mismatch", o, o->woff[i]);
	}
}

static void put(struct worker *w, struct obj *o, long long off, unsigned char v)
{
	if (pwrite(o->fd, &v, 1, off) != 1)
		fail(w, "pwrite", o, off);
	else
		record(o, off, v);
}

static void create(struct worker *w, struct obj *o, int seq)
{
	int k;

	memset(o, 0, sizeof(*o));
	o->named = rnd(w, 4) != 0;
	if (o->named) {
		snprintf(o->name, sizeof(o->name), "/dev/morsel/sl_%d_%d", w->id, seq);
		o->fd = open(o->name, O_RDWR | O_CREAT | O_EXCL, 0600);
	} else {
		o->fd = open("/dev/morsel", O_TMPFILE | O_RDWR, 0600);
	}
	if (o->fd < 0) {
		fail(w, "create", NULL, 0);
		return;
	}
	o->size = sizes[rnd(w, NSIZES)];
	if (ftruncate(o->fd, o->size)) {
		fail(w, "ftruncate", o, 0);
		return;
	}
	for (k = 0; k < 4; k++)
		put(w, o, rnd(w, o->size), (unsigned char)(1 + rnd(w, 255)));
	w->creates++;
}

static void map(struct worker *w, struct obj *o)
{
	long long chunks;
	unsigned char v;
	long long at;

	o->maplen = o->size < 4 * MiB ? o->size : 4 * MiB;
	chunks = (o->size - o->maplen) / (2 * MiB);
	o->mapoff = chunks > 0 ? rnd(w, chunks + 1) * 2 * MiB : 0;
	o->map = mmap(NULL, o->maplen, PROT_READ | PROT_WRITE, MAP_SHARED, o->fd,
		      o->mapoff);
	if (o->map == MAP_FAILED) {
		o->map = NULL;
		fail(w, "mmap", o, o->mapoff);
		return;
	}
	at = rnd(w, o->maplen);
	v = (unsigned char)(1 + rnd(w, 255));
	o->map[at] = v;
	record(o, o->mapoff + at, v);
	w->maps++;
}

static void unmap(struct worker *w, struct obj *o)
{
	if (o->map && munmap(o->map, o->maplen))
		fail(w, "munmap", o, 0);
	o->map = NULL;
}

static void resize(struct worker *w, struct obj *o)
{
	long long ns = sizes[rnd(w, NSIZES)];
	int i, j;

	unmap(w, o);
	if (ftruncate(o->fd, ns)) {
		fail(w, "resize", o, ns);
		return;
	}
	for (i = j = 0; i < o->nw; i++)
		if (o->woff[i] < ns) {
			o->woff[j] = o->woff[i];
			o->wval[j++] = o->wval[i];
		}
	o->nw = j;
	if (ns > o->size) {
		/* Grown: the new part (perhaps shrunk away before) reads 0. */
		long long off = o->size + rnd(w, ns - o->size);
		unsigned char c = 1;

		if (pread(o->fd, &c, 1, off) != 1 || c)
			fail(w, "grown part not zero", o, off);
	}
	o->size = ns;
	put(w, o, rnd(w, ns), (unsigned char)(1 + rnd(w, 255)));
	w->resizes++;
}

static void destroy(struct worker *w, struct obj *o)
{
	verify(w, o);
	unmap(w, o);
	if (o->named && unlink(o->name))
		fail(w, "unlink", o, 0);
	if (close(o->fd))
		fail(w, "close", o, 0);
	o->fd = -1;
	w->frees++;
}

static void fork_touch(struct worker *w, struct obj *o)
{
	int status;
	pid_t pid;

	if (!o->map)
		return;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		int i;

		for (i = 0; i < o->nw; i++)
			if (o->woff[i] >= o->mapoff && o->woff[i] < o->mapoff + o->maplen &&
			    (unsigned char)o->map[o->woff[i] - o->mapoff] != o->wval[i])
				_exit(1);
		o->map[0] ^= 0;	/* a store through the inherited mapping */
		_exit(0);
	}
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail(w, "fork child saw wrong data", o, status);
	w->forks++;
}

static void run(struct worker *w, int with_fork)
{
	struct obj objs[LIVE];
	int live = 0, i, seq = 0;

	for (i = 0; i < w->cycles; i++) {
		long long op = rnd(w, 10);
		int k;

		if (live == 0 || (live < LIVE && op < 4)) {
			create(w, &objs[live], seq++);
			if (objs[live].fd < 0)
				continue;
			live++;
			continue;
		}
		k = rnd(w, live);
		if (op < 6) {
			if (!objs[k].map)
				map(w, &objs[k]);
			else if (with_fork)
				fork_touch(w, &objs[k]);
			verify(w, &objs[k]);
		} else if (op < 7) {
			resize(w, &objs[k]);
			verify(w, &objs[k]);
		} else {
			destroy(w, &objs[k]);
			objs[k] = objs[--live];
		}
	}
	while (live)
		destroy(w, &objs[--live]);
}

static void *thread_main(void *arg)
{
	run(arg, 0);
	return NULL;
}

int main(void)
{
	static const char *const names[] = {
		"morsels", "data_pages", "table_pages", "links", "mappers"
	};
	long base[5];
	struct worker w[3];
	pthread_t th[2];
	int i, ok;

	for (i = 0; i < 5; i++)
		base[i] = total(names[i]);

	memset(w, 0, sizeof(w));
	for (i = 0; i < 2; i++) {
		w[i].id = i;
		w[i].seed = 1234 + i;
		w[i].cycles = CYCLES;
		tap_require(pthread_create(&th[i], NULL, thread_main, &w[i]) == 0, "thread");
	}
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < 2; i++) {
		tap_ok(w[i].errors == 0,
		       "thread %d: %d cycles (%d creates, %d maps, %d resizes, %d frees) without error%s%s",
		       i, CYCLES, w[i].creates, w[i].maps, w[i].resizes, w[i].frees,
		       w[i].errors ? ": " : "", w[i].first_error);
		tap_ok(w[i].creates == w[i].frees && w[i].creates > CYCLES / 5,
		       "thread %d: every object created was freed", i);
	}
	ok = 1;
	for (i = 0; i < 5; i++)
		if (total(names[i]) != base[i]) {
			tap_diag("%s: %ld, baseline %ld", names[i], total(names[i]), base[i]);
			ok = 0;
		}
	tap_ok(ok, "after the threads: every module total at its baseline");

	w[2].id = 2;
	w[2].seed = 99;
	w[2].cycles = 400;
	run(&w[2], 1);
	tap_ok(w[2].errors == 0,
	       "single thread with fork children: 400 cycles (%d forks) without error%s%s",
	       w[2].forks, w[2].errors ? ": " : "", w[2].first_error);
	tap_ok(w[2].forks > 10, "fork children ran (%d)", w[2].forks);
	ok = 1;
	for (i = 0; i < 5; i++)
		if (total(names[i]) != base[i]) {
			tap_diag("%s: %ld, baseline %ld", names[i], total(names[i]), base[i]);
			ok = 0;
		}
	tap_ok(ok, "at the end: every module total at its baseline");
	{
		struct stat st;
		int n = 0;

		for (i = 0; i < 3 * CYCLES; i++) {
			char name[64];

			snprintf(name, sizeof(name), "/dev/morsel/sl_%d_%d", i % 3, i / 3);
			if (stat(name, &st) == 0)
				n++;
		}
		tap_ok(n == 0, "no name left behind (%d)", n);
	}
	return tap_done();
}
