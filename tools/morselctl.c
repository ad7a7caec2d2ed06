#define _GNU_SOURCE
/* SPDX-License-Identifier: GPL-2.0 */
/*
 * morselctl: create, list, inspect, fill and map morsels.
 *
 *   morselctl create NAME SIZE [--mode OCTAL]
 *   morselctl ls [DIR] [--bytes]
 *   morselctl stat NAME [--json]
 *   morselctl rm NAME...
 *   morselctl import NAME FILE
 *   morselctl cat NAME
 *   morselctl map NAME [--populate] [--ro] [--hold SECS]
 *   morselctl totals [--json]
 *   morselctl save NAME IMAGE [--incremental PARENT] [--delta BASE]
 *                             [--range START:LENGTH] [--json]
 *   morselctl load NAME IMAGE [INCREMENT...] [--base BASE] [--over] [--json]
 *   morselctl verify IMAGE [INCREMENT...] [--json]
 *   morselctl info IMAGE [--json]
 *   morselctl compact OUT IMAGE [INCREMENT...] [--json]
 *
 * Exit status: 0 success, 1 an operation failed, 2 usage error.
 */
#include "libmorsel.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "morselctl"

static const char usage_text[] =
"usage: morselctl COMMAND [ARGS]\n"
"\n"
"  create NAME SIZE [--mode OCTAL]  create a morsel of SIZE bytes\n"
"                                   (4096, 4k, 2M, 1G, 64G: multiples of 4 KiB)\n"
"  ls [DIR] [--bytes]               one row per morsel: name, size, level,\n"
"                                   populated, tables, links, mappers\n"
"  stat NAME [--json]               usage figures of one morsel\n"
"  rm NAME...                       remove morsels\n"
"  import NAME FILE                 copy FILE ('-': stdin) into NAME, sparse;\n"
"                                   NAME is created if missing\n"
"  cat NAME                         write NAME's contents to stdout\n"
"  map NAME [--populate] [--ro] [--hold SECS]\n"
"                                   mmap + link everything (MORSEL_IOC_MAP),\n"
"                                   print the timings\n"
"  totals [--json]                  module-wide totals (/sys/kernel/morsel)\n"
"  freeze NAME                      make NAME's contents permanent\n"
"  split BASE CHILD                 create CHILD, a copy-on-write child of the\n"
"                                   frozen BASE\n"
"\n"
"Images (docs/persistence.md; a progress bar on a terminal):\n"
"  save NAME IMAGE [--incremental PARENT] [--delta BASE] [--range START:LEN]\n"
"                                   save NAME into IMAGE atomically: whole,\n"
"                                   pages written since PARENT was saved, or\n"
"                                   a child's own pages against its BASE\n"
"  load NAME IMAGE [INCREMENT...] [--base BASE] [--over]\n"
"                                   load a chain into a new NAME (a child of\n"
"                                   BASE for a delta), or over NAME\n"
"  verify IMAGE [INCREMENT...]      check every checksum and the chain\n"
"  info IMAGE                       the header of an image\n"
"  compact OUT IMAGE [INCREMENT...] write a chain as one image OUT\n"
"  (save, load, verify, info and compact take --json)\n"
"\n"
"NAME is relative to $MORSEL_DIR (default " MORSEL_DIR ") unless absolute.\n"
"Exit status: 0 ok, 1 error, 2 usage error.\n";

static int usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
	return 2;
}

/*
 * "morselctl: CMD NAME: strerror" and exit status 1.  ENOTTY comes from
 * MORSEL_IOC_STAT on a file outside morselfs.
 */
static int fail(const char *cmd, const char *name, int neg_errno)
{
	const char *msg = neg_errno == -ENOTTY ?
		"not a morsel (not on a morselfs mount)" : strerror(-neg_errno);

	if (name)
		fprintf(stderr, PROG ": %s %s: %s\n", cmd, name, msg);
	else
		fprintf(stderr, PROG ": %s: %s\n", cmd, msg);
	return 1;
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static char *human(uint64_t bytes, char *buf, size_t len)
{
	return morsel_size_format(bytes, buf, len);
}

/*
 * Split argv[1..] of a command into positional arguments and the options
 * the command knows.  Options take the forms "--opt" or "--opt VALUE" /
 * "--opt=VALUE".  "--" ends the options.
 */
struct opt {
	const char *name;
	int has_arg;
	int seen;
	const char *value;
};

static int parse_args(const char *cmd, int argc, char **argv,
		      struct opt *opts, char **pos, int *npos, int maxpos)
{
	int i, n = 0, no_more = 0;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		struct opt *o;

		if (!no_more && !strcmp(a, "--")) {
			no_more = 1;
			continue;
		}
		if (!no_more && a[0] == '-' && a[1] == '-') {
			size_t len = strcspn(a + 2, "=");

			for (o = opts; o && o->name; o++)
				if (strlen(o->name) == len &&
				    !strncmp(o->name, a + 2, len))
					break;
			if (!o || !o->name)
				return usage_error("%s: unknown option '%s'",
						   cmd, a);
			o->seen = 1;
			if (!o->has_arg) {
				if (a[2 + len] == '=')
					return usage_error("%s: option '--%s' takes no value",
							   cmd, o->name);
				continue;
			}
			if (a[2 + len] == '=')
				o->value = a + 3 + len;
			else if (i + 1 < argc)
				o->value = argv[++i];
			else
				return usage_error("%s: option '--%s' needs a value",
						   cmd, o->name);
			continue;
		}
		if (!no_more && a[0] == '-' && a[1] && strcmp(a, "-"))
			return usage_error("%s: unknown option '%s'", cmd, a);
		if (n == maxpos)
			return usage_error("%s: too many arguments", cmd);
		pos[n++] = argv[i];
	}
	*npos = n;
	return 0;
}

static int cmd_create(int argc, char **argv)
{
	struct opt opts[] = { { "mode", 1, 0, NULL }, { NULL, 0, 0, NULL } };
	char *pos[2];
	uint64_t size;
	mode_t mode = 0666;
	int n, fd, ret;

	ret = parse_args("create", argc, argv, opts, pos, &n, 2);
	if (ret)
		return ret;
	if (n != 2)
		return usage_error("create: needs NAME and SIZE");
	if (morsel_size_parse(pos[1], &size))
		return usage_error("create %s: invalid size '%s' (a multiple of 4 KiB: 4096, 4k, 2M, 1G, ...)",
				   pos[0], pos[1]);
	if (opts[0].seen) {
		char *end;
		unsigned long m;

		errno = 0;
		m = strtoul(opts[0].value, &end, 8);
		if (errno || !*opts[0].value || *end || m > 07777)
			return usage_error("create %s: invalid mode '%s'",
					   pos[0], opts[0].value);
		mode = (mode_t)m;
		umask(0);
	}
	fd = morsel_create(pos[0], size, mode);
	if (fd < 0)
		return fail("create", pos[0], fd);
	close(fd);
	return 0;
}

/* Open @name for MORSEL_IOC_STAT; @flags O_RDONLY or O_RDWR. */
static int open_stat(const char *name, int flags, struct morsel_stat *st)
{
	int fd, ret;

	fd = morsel_open(name, flags);
	if (fd < 0)
		return fd;
	ret = morsel_stat(fd, st);
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

static int cmd_ls(int argc, char **argv)
{
	struct opt opts[] = { { "bytes", 0, 0, NULL }, { NULL, 0, 0, NULL } };
	struct dirent **ents;
	char dir[4096], path[8192], *pos[1];
	int n, i, nents, ret, status = 0;

	ret = parse_args("ls", argc, argv, opts, pos, &n, 1);
	if (ret)
		return ret;
	ret = morsel_path(n ? pos[0] : morsel_dir(), dir, sizeof(dir));
	if (ret)
		return fail("ls", n ? pos[0] : morsel_dir(), ret);
	nents = scandir(dir, &ents, NULL, alphasort);
	if (nents < 0)
		return fail("ls", dir, -errno);
	printf("%-24s %10s %5s %10s %6s %5s %7s\n", "NAME", "SIZE", "LEVEL",
	       "POPULATED", "TABLES", "LINKS", "MAPPERS");
	for (i = 0; i < nents; i++) {
		const char *name = ents[i]->d_name;
		struct morsel_stat st;
		struct stat sb;
		char a[32], b[32];
		int fd;

		snprintf(path, sizeof(path), "%s/%s", dir, name);
		if (lstat(path, &sb) || !S_ISREG(sb.st_mode))
			continue;
		fd = open_stat(path, O_RDONLY, &st);
		if (fd < 0) {
			fail("ls", name, fd);
			status = 1;
			continue;
		}
		close(fd);
		if (opts[0].seen) {
			snprintf(a, sizeof(a), "%llu", (unsigned long long)st.size);
			snprintf(b, sizeof(b), "%llu",
				 (unsigned long long)(st.data_pages * MORSEL_PAGE_SIZE));
		} else {
			human(st.size, a, sizeof(a));
			human(st.data_pages * MORSEL_PAGE_SIZE, b, sizeof(b));
		}
		printf("%-24s %10s %5s %10s %6llu %5llu %7llu\n", name, a,
		       morsel_level_name(st.level), b,
		       (unsigned long long)st.table_pages,
		       (unsigned long long)st.links,
		       (unsigned long long)st.mappers);
	}
	for (i = 0; i < nents; i++)
		free(ents[i]);
	free(ents);
	return status;
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static int cmd_stat(int argc, char **argv)
{
	struct opt opts[] = { { "json", 0, 0, NULL }, { NULL, 0, 0, NULL } };
	struct morsel_stat st;
	struct stat sb;
	char path[4096], a[32], b[32], *pos[1];
	int n, fd, ret;

	ret = parse_args("stat", argc, argv, opts, pos, &n, 1);
	if (ret)
		return ret;
	if (n != 1)
		return usage_error("stat: needs NAME");
	ret = morsel_path(pos[0], path, sizeof(path));
	if (ret)
		return fail("stat", pos[0], ret);
	fd = open_stat(path, O_RDONLY, &st);
	if (fd < 0)
		return fail("stat", pos[0], fd);
	if (fstat(fd, &sb)) {
		ret = -errno;
		close(fd);
		return fail("stat", pos[0], ret);
	}
	close(fd);
	if (opts[0].seen) {
		printf("{\"name\": ");
		json_string(pos[0]);
		printf(", \"path\": ");
		json_string(path);
		printf(", \"size\": %llu, \"level\": %u, \"level_name\": \"%s\", "
		       "\"data_pages\": %llu, \"populated_bytes\": %llu, "
		       "\"table_pages\": %llu, \"links\": %llu, \"mappers\": %llu, "
		       "\"frozen\": %s, \"parent_ino\": %llu, \"children\": %llu, "
		       "\"borrowed_pages\": %llu, "
		       "\"mode\": \"%04o\", \"uid\": %u, \"gid\": %u}\n",
		       (unsigned long long)st.size, st.level,
		       morsel_level_name(st.level),
		       (unsigned long long)st.data_pages,
		       (unsigned long long)(st.data_pages * MORSEL_PAGE_SIZE),
		       (unsigned long long)st.table_pages,
		       (unsigned long long)st.links,
		       (unsigned long long)st.mappers,
		       st.state & MORSEL_STATE_FROZEN ? "true" : "false",
		       (unsigned long long)st.parent,
		       (unsigned long long)st.children,
		       (unsigned long long)st.borrowed_pages,
		       (unsigned int)(sb.st_mode & 07777),
		       (unsigned int)sb.st_uid, (unsigned int)sb.st_gid);
		return 0;
	}
	printf("name:        %s\n", pos[0]);
	printf("path:        %s\n", path);
	printf("size:        %llu (%s)\n", (unsigned long long)st.size,
	       human(st.size, a, sizeof(a)));
	printf("level:       %u (%s)\n", st.level, morsel_level_name(st.level));
	printf("populated:   %llu pages (%s)\n",
	       (unsigned long long)st.data_pages,
	       human(st.data_pages * MORSEL_PAGE_SIZE, b, sizeof(b)));
	printf("tables:      %llu pages\n", (unsigned long long)st.table_pages);
	printf("links:       %llu\n", (unsigned long long)st.links);
	printf("mappers:     %llu\n", (unsigned long long)st.mappers);
	printf("frozen:      %s\n", st.state & MORSEL_STATE_FROZEN ? "yes" : "no");
	if (st.parent)
		printf("parent:      inode %llu, %llu pages borrowed\n",
		       (unsigned long long)st.parent,
		       (unsigned long long)st.borrowed_pages);
	printf("children:    %llu\n", (unsigned long long)st.children);
	printf("mode:        %04o uid %u gid %u\n",
	       (unsigned int)(sb.st_mode & 07777), (unsigned int)sb.st_uid,
	       (unsigned int)sb.st_gid);
	return 0;
}

static int cmd_rm(int argc, char **argv)
{
	char path[4096], *pos[256];
	int n, i, ret, status = 0;

	ret = parse_args("rm", argc, argv, NULL, pos, &n, 256);
	if (ret)
		return ret;
	if (!n)
		return usage_error("rm: needs NAME");
	for (i = 0; i < n; i++) {
		ret = morsel_path(pos[i], path, sizeof(path));
		if (!ret && unlink(path))
			ret = -errno;
		if (ret)
			status = fail("rm", pos[i], ret);
	}
	return status;
}

static int cmd_import(int argc, char **argv)
{
	struct morsel_stat st;
	char *pos[2], a[32], b[32];
	int n, fd, src, ret;

	ret = parse_args("import", argc, argv, NULL, pos, &n, 2);
	if (ret)
		return ret;
	if (n != 2)
		return usage_error("import: needs NAME and FILE");
	if (!strcmp(pos[1], "-")) {
		src = STDIN_FILENO;
	} else {
		src = open(pos[1], O_RDONLY | O_CLOEXEC);
		if (src < 0) {
			ret = -errno;
			fprintf(stderr, PROG ": import %s: %s: %s\n", pos[0],
				pos[1], strerror(-ret));
			return 1;
		}
	}
	fd = morsel_open(pos[0], O_RDWR | O_CREAT);
	if (fd < 0) {
		ret = fd;
		goto out_src;
	}
	ret = morsel_copy_in(fd, src);
	if (!ret)
		ret = morsel_stat(fd, &st);
	close(fd);
	if (!ret)
		printf("imported %s: %s, %s populated (%llu pages)\n", pos[0],
		       human(st.size, a, sizeof(a)),
		       human(st.data_pages * MORSEL_PAGE_SIZE, b, sizeof(b)),
		       (unsigned long long)st.data_pages);
out_src:
	if (src != STDIN_FILENO)
		close(src);
	return ret ? fail("import", pos[0], ret) : 0;
}

static int cmd_cat(int argc, char **argv)
{
	char *pos[1];
	int n, fd, ret;

	ret = parse_args("cat", argc, argv, NULL, pos, &n, 1);
	if (ret)
		return ret;
	if (n != 1)
		return usage_error("cat: needs NAME");
	fd = morsel_open(pos[0], O_RDONLY);
	if (fd < 0)
		return fail("cat", pos[0], fd);
	ret = morsel_copy_out(fd, STDOUT_FILENO);
	close(fd);
	if (ret)
		return fail("cat", pos[0], ret);
	return 0;
}

static int cmd_map(int argc, char **argv)
{
	struct opt opts[] = {
		{ "populate", 0, 0, NULL }, { "ro", 0, 0, NULL },
		{ "hold", 1, 0, NULL }, { NULL, 0, 0, NULL },
	};
	int ro, prot, n, fd, ret;
	double t0, t1, t2, t3, t4, t5;
	struct morsel_stat st;
	struct morsel_map mm;
	unsigned int hold = 0;
	char *pos[1], a[32];
	void *p;

	ret = parse_args("map", argc, argv, opts, pos, &n, 1);
	if (ret)
		return ret;
	if (n != 1)
		return usage_error("map: needs NAME");
	if (opts[2].seen) {
		char *end;

		errno = 0;
		hold = (unsigned int)strtoul(opts[2].value, &end, 10);
		if (errno || !*opts[2].value || *end)
			return usage_error("map: invalid --hold '%s'",
					   opts[2].value);
	}
	ro = opts[1].seen;
	prot = ro ? PROT_READ : PROT_READ | PROT_WRITE;
	t0 = now_us();
	fd = morsel_open(pos[0], ro ? O_RDONLY : O_RDWR);
	if (fd < 0)
		return fail("map", pos[0], fd);
	ret = morsel_stat(fd, &st);
	if (!ret && !st.size)
		ret = -EINVAL;
	if (ret) {
		close(fd);
		if (ret == -EINVAL)
			fprintf(stderr, PROG ": map %s: object is empty\n",
				pos[0]);
		else
			fail("map", pos[0], ret);
		return 1;
	}
	t1 = now_us();
	p = mmap(NULL, st.size, prot, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		ret = -errno;
		close(fd);
		fprintf(stderr, PROG ": map %s: mmap: %s\n", pos[0],
			strerror(-ret));
		return 1;
	}
	t2 = now_us();
	ret = morsel_link_range(fd, p, st.size,
				opts[0].seen ? MORSEL_MAP_POPULATE : 0, &mm);
	t3 = now_us();
	if (ret) {
		munmap(p, st.size);
		close(fd);
		fprintf(stderr, PROG ": map %s: MORSEL_IOC_MAP: %s\n", pos[0],
			strerror(-ret));
		return 1;
	}
	printf("mapped %s: %s at %p (%s, %s)\n", pos[0],
	       human(st.size, a, sizeof(a)), p, ro ? "read-only" : "read-write",
	       opts[0].seen ? "populated" : "populated pages only");
	printf("  open+stat %10.1f us\n", t1 - t0);
	printf("  mmap      %10.1f us\n", t2 - t1);
	printf("  link      %10.1f us  (%llu table links, %llu pages one by one)\n",
	       t3 - t2, (unsigned long long)mm.linked,
	       (unsigned long long)mm.pages);
	if (!morsel_stat(fd, &st))
		printf("  now: %llu populated pages, %llu tables, %llu links, %llu mappers\n",
		       (unsigned long long)st.data_pages,
		       (unsigned long long)st.table_pages,
		       (unsigned long long)st.links,
		       (unsigned long long)st.mappers);
	if (hold) {
		printf("  holding the mapping for %u s\n", hold);
		fflush(stdout);
		sleep(hold);
	}
	t4 = now_us();
	ret = morsel_unmap(p, st.size);
	t5 = now_us();
	close(fd);
	if (ret)
		return fail("map", pos[0], ret);
	printf("  munmap    %10.1f us\n", t5 - t4);
	printf("  open to linked: %.1f us\n", t3 - t0);
	return 0;
}

static int cmd_freeze(int argc, char **argv)
{
	char *pos[1];
	int n, fd, ret;

	ret = parse_args("freeze", argc, argv, NULL, pos, &n, 1);
	if (ret)
		return ret;
	if (n != 1)
		return usage_error("freeze: needs NAME");
	fd = morsel_open(pos[0], O_RDWR);
	if (fd < 0)
		return fail("freeze", pos[0], fd);
	ret = morsel_freeze(fd);
	close(fd);
	return ret ? fail("freeze", pos[0], ret) : 0;
}

static int cmd_split(int argc, char **argv)
{
	struct morsel_stat st;
	char *pos[2];
	int n, fd, child, ret;

	ret = parse_args("split", argc, argv, NULL, pos, &n, 2);
	if (ret)
		return ret;
	if (n != 2)
		return usage_error("split: needs BASE and CHILD");
	fd = open_stat(pos[0], O_RDONLY, &st);
	if (fd < 0)
		return fail("split", pos[0], fd);
	if (!(st.state & MORSEL_STATE_FROZEN)) {
		close(fd);
		fprintf(stderr, PROG ": split %s: not frozen (morselctl freeze %s first)\n",
			pos[0], pos[0]);
		return 1;
	}
	child = morsel_split(fd, pos[1]);
	close(fd);
	if (child < 0)
		return fail("split", pos[1], child);
	close(child);
	return 0;
}

static int cmd_totals(int argc, char **argv)
{
	struct opt opts[] = { { "json", 0, 0, NULL }, { NULL, 0, 0, NULL } };
	struct morsel_totals_u t;
	char a[32], *pos[1];
	int n, ret;

	ret = parse_args("totals", argc, argv, opts, pos, &n, 0);
	if (ret)
		return ret;
	ret = morsel_totals(&t);
	if (ret)
		return fail("totals", MORSEL_SYSFS_DIR, ret);
	if (opts[0].seen) {
		printf("{\"morsels\": %llu, \"data_pages\": %llu, "
		       "\"table_pages\": %llu, \"links\": %llu, \"mappers\": %llu}\n",
		       (unsigned long long)t.morsels,
		       (unsigned long long)t.data_pages,
		       (unsigned long long)t.table_pages,
		       (unsigned long long)t.links,
		       (unsigned long long)t.mappers);
		return 0;
	}
	printf("morsels:     %llu\n", (unsigned long long)t.morsels);
	printf("data_pages:  %llu (%s)\n", (unsigned long long)t.data_pages,
	       human(t.data_pages * MORSEL_PAGE_SIZE, a, sizeof(a)));
	printf("table_pages: %llu\n", (unsigned long long)t.table_pages);
	printf("links:       %llu\n", (unsigned long long)t.links);
	printf("mappers:     %llu\n", (unsigned long long)t.mappers);
	return 0;
}

/* ------------------------------------------------------------- images */

/* A progress bar on stderr when it is a terminal, at most 10 times/s. */
struct bar {
	const char *what;
	double last;
	int shown;
};

static void bar_update(uint64_t done, uint64_t total, void *arg)
{
	struct bar *b = arg;
	double t = now_us();
	char d[32], tt[32];
	int pct, i;

	if (!total || (t - b->last < 100000 && done < total))
		return;
	b->last = t;
	b->shown = 1;
	pct = (int)(done * 100 / total);
	fprintf(stderr, "\r%s [", b->what);
	for (i = 0; i < 30; i++)
		fputc(i < pct * 30 / 100 ? '#' : ' ', stderr);
	fprintf(stderr, "] %3d%% %s / %s ", pct, human(done, d, sizeof(d)),
		human(total, tt, sizeof(tt)));
	fflush(stderr);
}

static void bar_init(struct bar *b, const char *what,
		     struct morsel_progress *p)
{
	memset(b, 0, sizeof(*b));
	b->what = what;
	p->fn = isatty(STDERR_FILENO) ? bar_update : NULL;
	p->arg = b;
}

static void bar_done(struct bar *b)
{
	if (b->shown)
		fputc('\n', stderr);
}

static int image_fail(const char *cmd, const char *name, int ret,
		      const struct mimg_error *err)
{
	if (err->msg[0])
		fprintf(stderr, PROG ": %s %s: %s (at offset %llu)\n", cmd,
			name, err->msg, (unsigned long long)err->offset);
	else
		return fail(cmd, name, ret);
	return 1;
}

static void hex_id(const uint8_t *id, char *out)
{
	int i;

	for (i = 0; i < 16; i++)
		sprintf(out + 2 * i, "%02x", id[i]);
}

static const char *image_kind(const struct mimg_header *h)
{
	if (h->flags & MIMG_F_INCREMENT)
		return "increment";
	return h->flags & MIMG_F_DELTA ? "delta" : "full";
}

/* The header as JSON members (no braces). */
static void header_json(const struct mimg_header *h)
{
	char id[33], pid[33];

	hex_id(h->image_id, id);
	hex_id(h->parent_id, pid);
	printf("\"kind\": \"%s\", \"version\": %u, \"object_size\": %llu, "
	       "\"level\": %u, \"range_start\": %llu, \"range_length\": %llu, "
	       "\"records\": %llu, \"present_pages\": %llu, "
	       "\"stored_pages\": %llu, \"image_id\": \"%s\", "
	       "\"parent_id\": \"%s\", \"base_fingerprint\": \"%016llx\", "
	       "\"content_fingerprint\": \"%016llx\", \"object_id\": "
	       "\"%016llx\", \"clean_gen\": %llu, \"created_ns\": %llu",
	       image_kind(h), h->version,
	       (unsigned long long)h->object_size, h->level,
	       (unsigned long long)h->range_start,
	       (unsigned long long)h->range_length,
	       (unsigned long long)h->nr_records,
	       (unsigned long long)h->present_pages,
	       (unsigned long long)h->data_pages, id,
	       h->flags & MIMG_F_INCREMENT ? pid : "",
	       (unsigned long long)h->base_fingerprint,
	       (unsigned long long)h->content_fingerprint,
	       (unsigned long long)h->object_id,
	       (unsigned long long)h->clean_gen,
	       (unsigned long long)h->created_ns);
}

/* "START:LENGTH" with morsel_size_parse() sizes. */
static int parse_range(const char *s, uint64_t *start, uint64_t *len)
{
	char buf[64];
	const char *colon = strchr(s, ':');

	if (!colon || (size_t)(colon - s) >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, colon - s);
	buf[colon - s] = 0;
	if (!strcmp(buf, "0"))
		*start = 0;
	else if (morsel_size_parse(buf, start))
		return -EINVAL;
	return morsel_size_parse(colon + 1, len) || !*len ? -EINVAL : 0;
}

static int cmd_save(int argc, char **argv)
{
	struct opt opts[] = {
		{ "incremental", 1, 0, NULL }, { "delta", 1, 0, NULL },
		{ "range", 1, 0, NULL }, { "json", 0, 0, NULL },
		{ NULL, 0, 0, NULL },
	};
	struct morsel_save_opts o;
	struct mimg_error err;
	struct mimg_header h;
	struct bar bar;
	char *pos[2], a[32], path[4096];
	double t0, us;
	int n, fd, ret;

	ret = parse_args("save", argc, argv, opts, pos, &n, 2);
	if (ret)
		return ret;
	if (n != 2)
		return usage_error("save: needs NAME and IMAGE");
	if (opts[0].seen && opts[1].seen)
		return usage_error("save: --incremental and --delta exclude "
				   "each other (an increment of a delta chain "
				   "needs only --incremental)");
	memset(&o, 0, sizeof(o));
	o.base_fd = -1;
	if (opts[2].seen && parse_range(opts[2].value, &o.start, &o.length))
		return usage_error("save: --range wants START:LENGTH, page "
				   "aligned (like 0:1G or 2M:4M)");
	o.parent = opts[0].value;
	ret = morsel_path(pos[0], path, sizeof(path));
	if (ret)
		return fail("save", pos[0], ret);
	/* Read-only suffices for a full save (no cleaning then). */
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 && (errno == EACCES || errno == EPERM) && !o.parent)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail("save", pos[0], -errno);
	if (opts[1].seen) {
		ret = morsel_path(opts[1].value, path, sizeof(path));
		o.base_fd = ret ? ret : morsel_open(path, O_RDONLY);
		if (o.base_fd < 0) {
			close(fd);
			return fail("save --delta", opts[1].value, o.base_fd);
		}
		o.flags |= MORSEL_SAVE_DELTA;
	}
	bar_init(&bar, "save", &o.progress);
	t0 = now_us();
	ret = morsel_save(fd, pos[1], &o, &h, &err);
	us = now_us() - t0;
	bar_done(&bar);
	close(fd);
	if (o.base_fd >= 0)
		close(o.base_fd);
	if (ret)
		return image_fail("save", pos[0], ret, &err);
	if (opts[3].seen) {
		printf("{\"name\": ");
		json_string(pos[0]);
		printf(", \"image\": ");
		json_string(pos[1]);
		printf(", \"seconds\": %.6f, ", us / 1e6);
		header_json(&h);
		printf("}\n");
	} else {
		printf("saved %s to %s: %s image, %llu of %llu pages stored "
		       "(%s) in %.3f s\n", pos[0], pos[1], image_kind(&h),
		       (unsigned long long)h.data_pages,
		       (unsigned long long)h.present_pages,
		       human(h.data_pages * MORSEL_PAGE_SIZE, a, sizeof(a)),
		       us / 1e6);
	}
	return 0;
}

static int cmd_load(int argc, char **argv)
{
	struct opt opts[] = {
		{ "base", 1, 0, NULL }, { "over", 0, 0, NULL },
		{ "json", 0, 0, NULL }, { NULL, 0, 0, NULL },
	};
	struct morsel_load_opts o;
	struct mimg_error err;
	struct mimg_header h;
	struct morsel_stat st;
	struct bar bar;
	char *pos[256], a[32], path[4096];
	double t0, us;
	int n, fd, ret;

	ret = parse_args("load", argc, argv, opts, pos, &n, 256);
	if (ret)
		return ret;
	if (n < 2)
		return usage_error("load: needs NAME and IMAGE [INCREMENT...] "
				   "(a raw file: use 'import')");
	memset(&o, 0, sizeof(o));
	o.base_fd = -1;
	if (opts[0].seen) {
		ret = morsel_path(opts[0].value, path, sizeof(path));
		o.base_fd = ret ? ret : morsel_open(path, O_RDONLY);
		if (o.base_fd < 0)
			return fail("load --base", opts[0].value, o.base_fd);
	}
	if (opts[1].seen)
		o.flags |= MORSEL_LOAD_OVER;
	bar_init(&bar, "load", &o.progress);
	t0 = now_us();
	fd = morsel_load((const char *const *)pos + 1, n - 1, pos[0], &o, &h,
			 &err);
	us = now_us() - t0;
	bar_done(&bar);
	if (o.base_fd >= 0)
		close(o.base_fd);
	if (fd < 0)
		return image_fail("load", pos[0], fd, &err);
	ret = morsel_stat(fd, &st);
	close(fd);
	if (ret)
		return fail("load", pos[0], ret);
	if (opts[2].seen) {
		printf("{\"name\": ");
		json_string(pos[0]);
		printf(", \"images\": %d, \"seconds\": %.6f, \"size\": %llu, "
		       "\"data_pages\": %llu, \"borrowed_pages\": %llu}\n",
		       n - 1, us / 1e6, (unsigned long long)st.size,
		       (unsigned long long)st.data_pages,
		       (unsigned long long)st.borrowed_pages);
	} else {
		printf("loaded %s from %d image%s: %s, %llu pages (%s) in "
		       "%.3f s\n", pos[0], n - 1, n == 2 ? "" : "s",
		       human(st.size, a, sizeof(a)),
		       (unsigned long long)st.data_pages,
		       human(st.data_pages * MORSEL_PAGE_SIZE, path,
			     sizeof(path)), us / 1e6);
	}
	return 0;
}

static int cmd_verify(int argc, char **argv)
{
	struct opt opts[] = { { "json", 0, 0, NULL }, { NULL, 0, 0, NULL } };
	struct morsel_progress p;
	struct mimg_error err;
	struct mimg_header h;
	struct bar bar;
	char *pos[256];
	int n, ret;

	ret = parse_args("verify", argc, argv, opts, pos, &n, 256);
	if (ret)
		return ret;
	if (n < 1)
		return usage_error("verify: needs IMAGE [INCREMENT...]");
	bar_init(&bar, "verify", &p);
	ret = morsel_image_verify((const char *const *)pos, n, &p, &h, &err);
	bar_done(&bar);
	if (opts[0].seen) {
		printf("{\"ok\": %s, \"images\": %d", ret ? "false" : "true",
		       n);
		if (ret) {
			printf(", \"error\": ");
			json_string(err.msg[0] ? err.msg : strerror(-ret));
			printf(", \"offset\": %llu",
			       (unsigned long long)err.offset);
		}
		printf("}\n");
		return ret ? 1 : 0;
	}
	if (ret)
		return image_fail("verify", pos[0], ret, &err);
	printf("ok: %d image%s, %llu pages present\n", n, n == 1 ? "" : "s",
	       (unsigned long long)h.present_pages);
	return 0;
}

static int cmd_info(int argc, char **argv)
{
	struct opt opts[] = { { "json", 0, 0, NULL }, { NULL, 0, 0, NULL } };
	struct mimg_reader r;
	struct mimg_error err;
	char *pos[1], a[32], b[32], id[33];
	int n, fd, ret;

	ret = parse_args("info", argc, argv, opts, pos, &n, 1);
	if (ret)
		return ret;
	if (n != 1)
		return usage_error("info: needs IMAGE");
	fd = open(pos[0], O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail("info", pos[0], -errno);
	memset(&err, 0, sizeof(err));
	ret = mimg_open(fd, &r, &err);
	close(fd);
	if (ret)
		return image_fail("info", pos[0], ret, &err);
	if (opts[0].seen) {
		printf("{\"image\": ");
		json_string(pos[0]);
		printf(", ");
		header_json(&r.h);
		printf("}\n");
		mimg_close(&r);
		return 0;
	}
	hex_id(r.h.image_id, id);
	printf("image:       %s (%s, format %u)\n", pos[0], image_kind(&r.h),
	       r.h.version);
	printf("id:          %s\n", id);
	if (r.h.flags & MIMG_F_INCREMENT) {
		hex_id(r.h.parent_id, id);
		printf("parent:      %s\n", id);
	}
	if (r.h.flags & MIMG_F_DELTA)
		printf("base:        fingerprint %016llx\n",
		       (unsigned long long)r.h.base_fingerprint);
	printf("object:      %llu bytes (%s), level %s, id %016llx, "
	       "clean_gen %llu\n", (unsigned long long)r.h.object_size,
	       human(r.h.object_size, a, sizeof(a)),
	       morsel_level_name(r.h.level),
	       (unsigned long long)r.h.object_id,
	       (unsigned long long)r.h.clean_gen);
	printf("range:       %llu + %llu\n",
	       (unsigned long long)r.h.range_start,
	       (unsigned long long)r.h.range_length);
	printf("pages:       %llu present, %llu stored (%s) in %llu records\n",
	       (unsigned long long)r.h.present_pages,
	       (unsigned long long)r.h.data_pages,
	       human(r.h.data_pages * MORSEL_PAGE_SIZE, b, sizeof(b)),
	       (unsigned long long)r.h.nr_records);
	if (r.h.content_fingerprint)
		printf("fingerprint: %016llx\n",
		       (unsigned long long)r.h.content_fingerprint);
	mimg_close(&r);
	return 0;
}

static int cmd_compact(int argc, char **argv)
{
	struct opt opts[] = { { "json", 0, 0, NULL }, { NULL, 0, 0, NULL } };
	struct morsel_progress p;
	struct mimg_error err;
	struct mimg_header h;
	struct bar bar;
	char *pos[256];
	int n, ret;

	ret = parse_args("compact", argc, argv, opts, pos, &n, 256);
	if (ret)
		return ret;
	if (n < 2)
		return usage_error("compact: needs OUT and IMAGE [INCREMENT...]");
	bar_init(&bar, "compact", &p);
	ret = morsel_image_compact((const char *const *)pos + 1, n - 1,
				   pos[0], &p, &h, &err);
	bar_done(&bar);
	if (ret)
		return image_fail("compact", pos[0], ret, &err);
	if (opts[0].seen) {
		printf("{\"image\": ");
		json_string(pos[0]);
		printf(", ");
		header_json(&h);
		printf("}\n");
	} else {
		printf("compacted %d image%s into %s: %llu pages stored\n",
		       n - 1, n == 2 ? "" : "s", pos[0],
		       (unsigned long long)h.data_pages);
	}
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{ "create", cmd_create },
	{ "ls", cmd_ls },
	{ "stat", cmd_stat },
	{ "rm", cmd_rm },
	{ "import", cmd_import },
	{ "save", cmd_save },
	{ "load", cmd_load },
	{ "verify", cmd_verify },
	{ "info", cmd_info },
	{ "compact", cmd_compact },
	{ "cat", cmd_cat },
	{ "map", cmd_map },
	{ "totals", cmd_totals },
	{ "freeze", cmd_freeze },
	{ "split", cmd_split },
};

int main(int argc, char **argv)
{
	size_t i;
	int j, ret;

	if (argc < 2)
		return usage_error("missing command");
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		fputs(usage_text, stdout);
		return 0;
	}
	for (j = 2; j < argc && strcmp(argv[j], "--"); j++) {
		if (!strcmp(argv[j], "-h") || !strcmp(argv[j], "--help")) {
			fputs(usage_text, stdout);
			return 0;
		}
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name))
			continue;
		ret = commands[i].fn(argc - 1, argv + 1);
		if (fflush(stdout) || ferror(stdout)) {
			if (!ret)
				ret = fail(argv[1], "stdout", -(errno ? errno : EIO));
		}
		return ret;
	}
	return usage_error("unknown command '%s'", argv[1]);
}
