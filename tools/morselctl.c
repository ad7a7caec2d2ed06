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
 *
 * One table (commands[]) says what each command takes; parse_command()
 * checks a command line against it.  Every failure goes through fail():
 * "morselctl: CMD NAME: MESSAGE" on stderr, or with --json one object on
 * stdout, {"ok": false, ..., "error": MESSAGE}, as every --json result is
 * one object starting with "ok".  Usage errors are always text (exit 2).
 */
#include "libmorsel.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
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
"                                   (in bytes: 100000, 4k, 2M, 1G, 64G)\n"
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

/* ------------------------------------------------------ command lines */

#define MAX_ARGS	256
#define MAX_OPTIONS	4

struct cmd;

/*
 * What a command takes: between @min_args and @max_args arguments
 * (@needs names them when there are too few) and @options, "name" for a
 * flag, "name=" for an option with a value (--name VALUE, --name=VALUE).
 */
struct command {
	const char *name;
	int (*run)(struct cmd *c);
	int min_args, max_args;
	const char *needs;
	const char *options[MAX_OPTIONS + 1];
};

/* Progress bar on stderr when it is a terminal, at most 10 times/s. */
struct bar {
	const char *what;
	double last;
	bool shown;
};

/* One command line, parsed, and what the command reports as it runs. */
struct cmd {
	const struct command *def;
	char *args[MAX_ARGS];
	int nargs;
	bool seen[MAX_OPTIONS];
	const char *value[MAX_OPTIONS];
	const char *subject;		/* what it works on: args[0] */
	bool json;			/* --json given */
	/* The members every JSON object of the command starts with. */
	const char *json_name;		/* "name", or NULL */
	const char *json_image;		/* "image", or NULL */
	int json_images;		/* "images", or -1 */
	struct bar bar;
	struct morsel_progress progress;
};

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

/* Does option @spec ("name" or "name=") have the name @s[0..len)? */
static bool option_named(const char *spec, const char *s, size_t len)
{
	return strlen(spec) - (spec[strlen(spec) - 1] == '=') == len &&
	       !strncmp(spec, s, len);
}

static int find_option(const struct command *def, const char *s, size_t len)
{
	int i;

	for (i = 0; i < MAX_OPTIONS && def->options[i]; i++)
		if (option_named(def->options[i], s, len))
			return i;
	return -1;
}

static bool takes_value(const struct command *def, int i)
{
	const char *spec = def->options[i];

	return spec[strlen(spec) - 1] == '=';
}

/* "--name", "--name VALUE" or "--name=VALUE" at argv[*i]. */
static int parse_option(struct cmd *c, int argc, char **argv, int *i)
{
	const char *a = argv[*i], *cmd = c->def->name;
	size_t len = strcspn(a + 2, "=");
	int k = find_option(c->def, a + 2, len);

	if (k < 0)
		return usage_error("%s: unknown option '%s'", cmd, a);
	c->seen[k] = true;
	if (!takes_value(c->def, k)) {
		if (a[2 + len] == '=')
			return usage_error("%s: option '--%.*s' takes no value",
					   cmd, (int)len, a + 2);
		return 0;
	}
	if (a[2 + len] == '=')
		c->value[k] = a + 3 + len;
	else if (*i + 1 < argc)
		c->value[k] = argv[++*i];
	else
		return usage_error("%s: option '--%.*s' needs a value", cmd,
				   (int)len, a + 2);
	return 0;
}

static bool has_option(const struct cmd *c, const char *name)
{
	int k = find_option(c->def, name, strlen(name));

	return k >= 0 && c->seen[k];
}

/*
 * Split argv[1..] of command @def into arguments and its options, and
 * check their number.  "--" ends the options; "-" is an argument.
 */
static int parse_command(struct cmd *c, const struct command *def, int argc,
			 char **argv)
{
	bool options_end = false;
	int i, ret;

	memset(c, 0, sizeof(*c));
	c->def = def;
	c->json_images = -1;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!options_end && !strcmp(a, "--")) {
			options_end = true;
			continue;
		}
		if (!options_end && a[0] == '-' && a[1] == '-') {
			ret = parse_option(c, argc, argv, &i);
			if (ret)
				return ret;
			continue;
		}
		if (!options_end && a[0] == '-' && a[1])
			return usage_error("%s: unknown option '%s'", def->name,
					   a);
		if (c->nargs == def->max_args)
			return usage_error("%s: too many arguments", def->name);
		c->args[c->nargs++] = argv[i];
	}
	if (c->nargs < def->min_args)
		return usage_error("%s: needs %s", def->name, def->needs);
	c->subject = c->nargs ? c->args[0] : NULL;
	c->json = has_option(c, "json");
	return 0;
}

/* The value of option @name, or NULL if it was not given. */
static const char *option_value(const struct cmd *c, const char *name)
{
	int k = find_option(c->def, name, strlen(name));

	return k >= 0 && c->seen[k] ? c->value[k] : NULL;
}

/* --------------------------------------------------------------- JSON */

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

/* ", \"KEY\": " */
static void json_key(const char *key)
{
	printf(", \"%s\": ", key);
}

static void json_str(const char *key, const char *v)
{
	json_key(key);
	json_string(v);
}

static void json_u64(const char *key, uint64_t v)
{
	json_key(key);
	printf("%llu", (unsigned long long)v);
}

static void json_bool(const char *key, bool v)
{
	json_key(key);
	fputs(v ? "true" : "false", stdout);
}

/* A 64-bit id as 16 hex digits, a string. */
static void json_hex(const char *key, uint64_t v)
{
	json_key(key);
	printf("\"%016llx\"", (unsigned long long)v);
}

static void json_seconds(const char *key, double s)
{
	json_key(key);
	printf("%.6f", s);
}

/* The start of the command's one object: "ok" and what it is about. */
static void json_begin(const struct cmd *c, bool ok)
{
	printf("{\"ok\": %s", ok ? "true" : "false");
	if (c->json_name)
		json_str("name", c->json_name);
	if (c->json_image)
		json_str("image", c->json_image);
	if (c->json_images >= 0)
		json_u64("images", (uint64_t)c->json_images);
}

static void json_end(void)
{
	puts("}");
}

/* ----------------------------------------------------------- failures */

/*
 * The one way a command reports a failure: about its subject (@about
 * NULL) or about something else, @about.  On stderr "morselctl: CMD
 * SUBJECT: MSG" (@about instead of SUBJECT), and " (at offset N)" for
 * damage in an image; with --json one object on stdout, {"ok": false,
 * ..., "error": MSG, "offset": N}, MSG led by "@about: ".  Returns the
 * exit status, 1.
 */
static int report_failure(const struct cmd *c, const char *about,
			  const char *msg, const uint64_t *offset)
{
	const char *subject = about ? about : c->subject;
	char text[1024];

	if (c->json) {
		snprintf(text, sizeof(text), "%s%s%s", about ? about : "",
			 about ? ": " : "", msg);
		json_begin(c, false);
		json_str("error", text);
		if (offset)
			json_u64("offset", *offset);
		json_end();
		return 1;
	}
	fprintf(stderr, PROG ": %s%s%s: %s", c->def->name, subject ? " " : "",
		subject ? subject : "", msg);
	if (offset)
		fprintf(stderr, " (at offset %llu)",
			(unsigned long long)*offset);
	fputc('\n', stderr);
	return 1;
}

/*
 * Failure -errno @ret about @about (NULL: the command's subject); with
 * @err (may be NULL), the library's message and offset when it gave one.
 * ENOTTY comes from MORSEL_IOC_STAT on a file outside morselfs.
 */
static int fail_about(const struct cmd *c, const char *about, int ret,
		      const struct mimg_error *err)
{
	if (err && err->msg[0])
		return report_failure(c, about, err->msg, &err->offset);
	return report_failure(c, about, ret == -ENOTTY ?
			      "not a morsel (not on a morselfs mount)" :
			      strerror(-ret), NULL);
}

static int fail(const struct cmd *c, int ret, const struct mimg_error *err)
{
	return fail_about(c, NULL, ret, err);
}

/* A failure of the command's subject with a message of its own. */
static int fail_msg(const struct cmd *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail_msg(const struct cmd *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return report_failure(c, NULL, msg, NULL);
}

/* ----------------------------------------------------------- progress */

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

static void bar_update(uint64_t done, uint64_t total, void *arg)
{
	struct bar *b = arg;
	double t = now_us();
	char d[32], tt[32];
	int pct, i;

	if (!total || (t - b->last < 100000 && done < total))
		return;
	b->last = t;
	b->shown = true;
	pct = (int)(done * 100 / total);
	fprintf(stderr, "\r%s [", b->what);
	for (i = 0; i < 30; i++)
		fputc(i < pct * 30 / 100 ? '#' : ' ', stderr);
	fprintf(stderr, "] %3d%% %s / %s ", pct, human(done, d, sizeof(d)),
		human(total, tt, sizeof(tt)));
	fflush(stderr);
}

/* The progress of a long operation: a bar named after the command. */
static struct morsel_progress *progress_start(struct cmd *c)
{
	memset(&c->bar, 0, sizeof(c->bar));
	c->bar.what = c->def->name;
	c->progress.fn = isatty(STDERR_FILENO) ? bar_update : NULL;
	c->progress.arg = &c->bar;
	return &c->progress;
}

/* End the bar's line, before anything else is printed. */
static void progress_end(struct cmd *c)
{
	if (c->bar.shown)
		fputc('\n', stderr);
	c->bar.shown = false;
}

/* ----------------------------------------------------------- morsels */

static int cmd_create(struct cmd *c)
{
	const char *name = c->args[0], *mode_arg = option_value(c, "mode");
	mode_t mode = 0666;
	uint64_t size;
	unsigned long m;
	char *end;
	int fd;

	if (morsel_size_parse(c->args[1], &size))
		return usage_error("create %s: invalid size '%s' (bytes: 4096, 4k, 2M, 1G, ...)",
				   name, c->args[1]);
	if (mode_arg) {
		errno = 0;
		m = strtoul(mode_arg, &end, 8);
		if (errno || !*mode_arg || *end || m > 07777)
			return usage_error("create %s: invalid mode '%s'",
					   name, mode_arg);
		mode = (mode_t)m;
		umask(0);
	}
	fd = morsel_create(name, size, mode);
	if (fd < 0)
		return fail(c, fd, NULL);
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

/* One row of ls for the morsel @name in directory @dir; 1 if it failed. */
static int ls_row(const struct cmd *c, const char *dir, const char *name)
{
	char path[8192], a[32], b[32];
	struct morsel_stat st;
	struct stat sb;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (lstat(path, &sb) || !S_ISREG(sb.st_mode))
		return 0;
	fd = open_stat(path, O_RDONLY, &st);
	if (fd < 0)
		return fail_about(c, name, fd, NULL);
	close(fd);
	if (has_option(c, "bytes")) {
		snprintf(a, sizeof(a), "%llu", (unsigned long long)st.size);
		snprintf(b, sizeof(b), "%llu", (unsigned long long)
			 (st.data_pages * MORSEL_PAGE_SIZE));
	} else {
		human(st.size, a, sizeof(a));
		human(st.data_pages * MORSEL_PAGE_SIZE, b, sizeof(b));
	}
	printf("%-24s %10s %5s %10s %6llu %5llu %7llu\n", name, a,
	       morsel_level_name(st.level), b,
	       (unsigned long long)st.table_pages,
	       (unsigned long long)st.links,
	       (unsigned long long)st.mappers);
	return 0;
}

static int cmd_ls(struct cmd *c)
{
	const char *where = c->nargs ? c->args[0] : morsel_dir();
	struct dirent **ents;
	char dir[4096];
	int i, nents, ret, status = 0;

	ret = morsel_path(where, dir, sizeof(dir));
	if (ret)
		return fail_about(c, where, ret, NULL);
	nents = scandir(dir, &ents, NULL, alphasort);
	if (nents < 0)
		return fail_about(c, dir, -errno, NULL);
	printf("%-24s %10s %5s %10s %6s %5s %7s\n", "NAME", "SIZE", "LEVEL",
	       "POPULATED", "TABLES", "LINKS", "MAPPERS");
	for (i = 0; i < nents; i++)
		status |= ls_row(c, dir, ents[i]->d_name);
	for (i = 0; i < nents; i++)
		free(ents[i]);
	free(ents);
	return status;
}

static void stat_json(const struct cmd *c, const char *path,
		      const struct morsel_stat *st, const struct stat *sb)
{
	char mode[8];

	snprintf(mode, sizeof(mode), "%04o",
		 (unsigned int)(sb->st_mode & 07777));
	json_begin(c, true);
	json_str("path", path);
	json_u64("size", st->size);
	json_u64("level", st->level);
	json_str("level_name", morsel_level_name(st->level));
	json_u64("data_pages", st->data_pages);
	json_u64("populated_bytes", st->data_pages * MORSEL_PAGE_SIZE);
	json_u64("table_pages", st->table_pages);
	json_u64("links", st->links);
	json_u64("mappers", st->mappers);
	json_bool("frozen", st->state & MORSEL_STATE_FROZEN);
	json_u64("parent_ino", st->parent);
	json_u64("children", st->children);
	json_u64("borrowed_pages", st->borrowed_pages);
	json_str("mode", mode);
	json_u64("uid", sb->st_uid);
	json_u64("gid", sb->st_gid);
	json_end();
}

static void stat_text(const char *name, const char *path,
		      const struct morsel_stat *st, const struct stat *sb)
{
	char a[32], b[32];

	printf("name:        %s\n", name);
	printf("path:        %s\n", path);
	printf("size:        %llu (%s)\n", (unsigned long long)st->size,
	       human(st->size, a, sizeof(a)));
	printf("level:       %u (%s)\n", st->level,
	       morsel_level_name(st->level));
	printf("populated:   %llu pages (%s)\n",
	       (unsigned long long)st->data_pages,
	       human(st->data_pages * MORSEL_PAGE_SIZE, b, sizeof(b)));
	printf("tables:      %llu pages\n",
	       (unsigned long long)st->table_pages);
	printf("links:       %llu\n", (unsigned long long)st->links);
	printf("mappers:     %llu\n", (unsigned long long)st->mappers);
	printf("frozen:      %s\n",
	       st->state & MORSEL_STATE_FROZEN ? "yes" : "no");
	if (st->parent)
		printf("parent:      inode %llu, %llu pages borrowed\n",
		       (unsigned long long)st->parent,
		       (unsigned long long)st->borrowed_pages);
	printf("children:    %llu\n", (unsigned long long)st->children);
	printf("mode:        %04o uid %u gid %u\n",
	       (unsigned int)(sb->st_mode & 07777), (unsigned int)sb->st_uid,
	       (unsigned int)sb->st_gid);
}

static int cmd_stat(struct cmd *c)
{
	const char *name = c->args[0];
	struct morsel_stat st;
	struct stat sb;
	char path[4096];
	int fd, ret;

	c->json_name = name;
	ret = morsel_path(name, path, sizeof(path));
	if (ret)
		return fail(c, ret, NULL);
	fd = open_stat(path, O_RDONLY, &st);
	if (fd < 0)
		return fail(c, fd, NULL);
	ret = fstat(fd, &sb) ? -errno : 0;
	close(fd);
	if (ret)
		return fail(c, ret, NULL);
	if (c->json)
		stat_json(c, path, &st, &sb);
	else
		stat_text(name, path, &st, &sb);
	return 0;
}

static int cmd_rm(struct cmd *c)
{
	char path[4096];
	int i, ret, status = 0;

	for (i = 0; i < c->nargs; i++) {
		ret = morsel_path(c->args[i], path, sizeof(path));
		if (!ret && unlink(path))
			ret = -errno;
		if (ret)
			status = fail_about(c, c->args[i], ret, NULL);
	}
	return status;
}

/* Copy @src into the morsel @name (created if missing); its stat. */
static int import_into(const char *name, int src, struct morsel_stat *st)
{
	int fd, ret;

	fd = morsel_open(name, O_RDWR | O_CREAT);
	if (fd < 0)
		return fd;
	ret = morsel_copy_in(fd, src);
	if (!ret)
		ret = morsel_stat(fd, st);
	close(fd);
	return ret;
}

static int cmd_import(struct cmd *c)
{
	const char *name = c->args[0], *file = c->args[1];
	struct morsel_stat st;
	char a[32], b[32];
	int src, ret;

	if (!strcmp(file, "-")) {
		src = STDIN_FILENO;
	} else {
		src = open(file, O_RDONLY | O_CLOEXEC);
		if (src < 0)
			return fail_msg(c, "%s: %s", file,
					strerror(errno));
	}
	ret = import_into(name, src, &st);
	if (src != STDIN_FILENO)
		close(src);
	if (ret)
		return fail(c, ret, NULL);
	printf("imported %s: %s, %s populated (%llu pages)\n", name,
	       human(st.size, a, sizeof(a)),
	       human(st.data_pages * MORSEL_PAGE_SIZE, b, sizeof(b)),
	       (unsigned long long)st.data_pages);
	return 0;
}

static int cmd_cat(struct cmd *c)
{
	const char *name = c->args[0];
	int fd, ret;

	fd = morsel_open(name, O_RDONLY);
	if (fd < 0)
		return fail(c, fd, NULL);
	ret = morsel_copy_out(fd, STDOUT_FILENO);
	close(fd);
	if (ret)
		return fail(c, ret, NULL);
	return 0;
}

/* Timestamps of cmd_map(), in microseconds. */
struct map_times {
	double open, stat, mmap, link, unmap, unmapped;
};

static void map_report(const char *name, const struct morsel_stat *st,
		       void *p, bool ro, bool populate,
		       const struct morsel_map *mm, const struct map_times *t)
{
	char a[32];

	printf("mapped %s: %s at %p (%s, %s)\n", name,
	       human(st->size, a, sizeof(a)), p,
	       ro ? "read-only" : "read-write",
	       populate ? "populated" : "populated pages only");
	printf("  open+stat %10.1f us\n", t->stat - t->open);
	printf("  mmap      %10.1f us\n", t->mmap - t->stat);
	printf("  link      %10.1f us  (%llu table links, %llu pages one by one)\n",
	       t->link - t->mmap, (unsigned long long)mm->linked,
	       (unsigned long long)mm->pages);
}

static void map_report_usage(int fd)
{
	struct morsel_stat st;

	if (!morsel_stat(fd, &st))
		printf("  now: %llu populated pages, %llu tables, %llu links, %llu mappers\n",
		       (unsigned long long)st.data_pages,
		       (unsigned long long)st.table_pages,
		       (unsigned long long)st.links,
		       (unsigned long long)st.mappers);
}

/* The seconds of --hold, 0 without it; -1 if it is not a number. */
static long hold_seconds(const struct cmd *c)
{
	const char *v = option_value(c, "hold");
	unsigned long s;
	char *end;

	if (!v)
		return 0;
	errno = 0;
	s = strtoul(v, &end, 10);
	if (errno || !*v || *end)
		return -1;
	return (long)(unsigned int)s;
}

/* Map the whole of @fd (@st), link it, time it, hold it, unmap it. */
static int map_and_report(const struct cmd *c, int fd,
			  const struct morsel_stat *st, struct map_times *t,
			  unsigned int hold)
{
	const char *name = c->args[0];
	bool ro = has_option(c, "ro"), populate = has_option(c, "populate");
	struct morsel_map mm;
	void *p;
	int ret;

	p = mmap(NULL, st->size, ro ? PROT_READ : PROT_READ | PROT_WRITE,
		 MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return fail_msg(c, "mmap: %s", strerror(errno));
	t->mmap = now_us();
	ret = morsel_link_range(fd, p, st->size,
				populate ? MORSEL_MAP_POPULATE : 0, &mm);
	t->link = now_us();
	if (ret) {
		munmap(p, st->size);
		return fail_msg(c, "MORSEL_IOC_MAP: %s", strerror(-ret));
	}
	map_report(name, st, p, ro, populate, &mm, t);
	map_report_usage(fd);
	if (hold) {
		printf("  holding the mapping for %u s\n", hold);
		fflush(stdout);
		sleep(hold);
	}
	t->unmap = now_us();
	ret = morsel_unmap(p, st->size);
	t->unmapped = now_us();
	if (ret)
		return fail(c, ret, NULL);
	printf("  munmap    %10.1f us\n", t->unmapped - t->unmap);
	printf("  open to linked: %.1f us\n", t->link - t->open);
	return 0;
}

static int cmd_map(struct cmd *c)
{
	const char *name = c->args[0];
	long hold = hold_seconds(c);
	struct morsel_stat st;
	struct map_times t;
	int fd, ret;

	if (hold < 0)
		return usage_error("map: invalid --hold '%s'",
				   option_value(c, "hold"));
	t.open = now_us();
	fd = open_stat(name, has_option(c, "ro") ? O_RDONLY : O_RDWR, &st);
	if (fd < 0)
		return fail(c, fd, NULL);
	if (!st.size) {
		close(fd);
		return fail_msg(c, "object is empty");
	}
	t.stat = now_us();
	ret = map_and_report(c, fd, &st, &t, (unsigned int)hold);
	close(fd);
	return ret;
}

static int cmd_freeze(struct cmd *c)
{
	const char *name = c->args[0];
	int fd, ret;

	fd = morsel_open(name, O_RDWR);
	if (fd < 0)
		return fail(c, fd, NULL);
	ret = morsel_freeze(fd);
	close(fd);
	return ret ? fail(c, ret, NULL) : 0;
}

static int cmd_split(struct cmd *c)
{
	const char *base = c->args[0], *child_name = c->args[1];
	struct morsel_stat st;
	int fd, child;

	fd = open_stat(base, O_RDONLY, &st);
	if (fd < 0)
		return fail(c, fd, NULL);
	if (!(st.state & MORSEL_STATE_FROZEN)) {
		close(fd);
		return fail_msg(c, "not frozen (morselctl freeze %s first)",
				base);
	}
	child = morsel_split(fd, child_name);
	close(fd);
	if (child < 0)
		return fail_about(c, child_name, child, NULL);
	close(child);
	return 0;
}

static int cmd_totals(struct cmd *c)
{
	struct morsel_totals_u t;
	char a[32];
	int ret;

	ret = morsel_totals(&t);
	if (ret)
		return fail_about(c, MORSEL_SYSFS_DIR, ret, NULL);
	if (c->json) {
		json_begin(c, true);
		json_u64("morsels", t.morsels);
		json_u64("data_pages", t.data_pages);
		json_u64("table_pages", t.table_pages);
		json_u64("links", t.links);
		json_u64("mappers", t.mappers);
		json_end();
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

/* The header as JSON members. */
static void header_json(const struct mimg_header *h)
{
	char id[33], pid[33];

	hex_id(h->image_id, id);
	hex_id(h->parent_id, pid);
	json_str("kind", image_kind(h));
	json_u64("version", h->version);
	json_u64("object_size", h->object_size);
	json_u64("level", h->level);
	json_u64("range_start", h->range_start);
	json_u64("range_length", h->range_length);
	json_u64("records", h->nr_records);
	json_u64("present_pages", h->present_pages);
	json_u64("stored_pages", h->data_pages);
	json_str("image_id", id);
	json_str("parent_id", h->flags & MIMG_F_INCREMENT ? pid : "");
	json_hex("base_fingerprint", h->base_fingerprint);
	json_hex("content_fingerprint", h->content_fingerprint);
	json_hex("object_id", h->object_id);
	json_u64("clean_gen", h->clean_gen);
	json_u64("created_ns", h->created_ns);
}

/* "START:LENGTH" with morsel_size_parse() sizes, both page aligned. */
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
	if (morsel_size_parse(colon + 1, len) || !*len ||
	    (*start | *len) % MORSEL_PAGE_SIZE)
		return -EINVAL;
	return 0;
}

/* A morsel named by the value of option @opt, read-only, into *@fd. */
static int open_option_morsel(const struct cmd *c, const char *opt, int *fd)
{
	const char *name = option_value(c, opt);
	char path[4096], subject[4096 + 16];
	int ret;

	ret = morsel_path(name, path, sizeof(path));
	*fd = ret ? ret : morsel_open(path, O_RDONLY);
	if (*fd >= 0)
		return 0;
	snprintf(subject, sizeof(subject), "--%s %s", opt, name);
	return fail_about(c, subject, *fd, NULL);
}

/* The morsel to save: read-only suffices for a full save (no clean). */
static int open_to_save(const char *name, bool increment)
{
	char path[4096];
	int fd, ret;

	ret = morsel_path(name, path, sizeof(path));
	if (ret)
		return ret;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 && (errno == EACCES || errno == EPERM) && !increment)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static void save_result(const struct cmd *c, const struct mimg_header *h,
			double us)
{
	char a[32];

	if (c->json) {
		json_begin(c, true);
		json_seconds("seconds", us / 1e6);
		header_json(h);
		json_end();
		return;
	}
	printf("saved %s to %s: %s image, %llu of %llu pages stored "
	       "(%s) in %.3f s\n", c->args[0], c->args[1], image_kind(h),
	       (unsigned long long)h->data_pages,
	       (unsigned long long)h->present_pages,
	       human(h->data_pages * MORSEL_PAGE_SIZE, a, sizeof(a)),
	       us / 1e6);
}

static int cmd_save(struct cmd *c)
{
	const char *name = c->args[0], *range = option_value(c, "range");
	struct morsel_save_opts o = { .base_fd = -1 };
	struct mimg_error err;
	struct mimg_header h;
	double t0, us;
	int fd, ret;

	c->json_name = name;
	c->json_image = c->args[1];
	if (has_option(c, "incremental") && has_option(c, "delta"))
		return usage_error("save: --incremental and --delta exclude "
				   "each other (an increment of a delta chain "
				   "needs only --incremental)");
	if (range && parse_range(range, &o.start, &o.length))
		return usage_error("save: --range wants START:LENGTH, page "
				   "aligned (like 0:1G or 2M:4M)");
	o.parent = option_value(c, "incremental");
	fd = open_to_save(name, o.parent != NULL);
	if (fd < 0)
		return fail(c, fd, NULL);
	if (has_option(c, "delta")) {
		if (open_option_morsel(c, "delta", &o.base_fd)) {
			close(fd);
			return 1;
		}
		o.flags |= MORSEL_SAVE_DELTA;
	}
	o.progress = *progress_start(c);
	t0 = now_us();
	ret = morsel_save(fd, c->args[1], &o, &h, &err);
	us = now_us() - t0;
	progress_end(c);
	close(fd);
	if (o.base_fd >= 0)
		close(o.base_fd);
	if (ret)
		return fail(c, ret, &err);
	save_result(c, &h, us);
	return 0;
}

static void load_result(const struct cmd *c, const struct morsel_stat *st,
			double us)
{
	int n = c->nargs - 1;
	char a[32], b[32];

	if (c->json) {
		json_begin(c, true);
		json_seconds("seconds", us / 1e6);
		json_u64("size", st->size);
		json_u64("data_pages", st->data_pages);
		json_u64("borrowed_pages", st->borrowed_pages);
		json_end();
		return;
	}
	printf("loaded %s from %d image%s: %s, %llu pages (%s) in %.3f s\n",
	       c->args[0], n, n == 1 ? "" : "s", human(st->size, a, sizeof(a)),
	       (unsigned long long)st->data_pages,
	       human(st->data_pages * MORSEL_PAGE_SIZE, b, sizeof(b)),
	       us / 1e6);
}

static int cmd_load(struct cmd *c)
{
	const char *name = c->args[0];
	const char *const *images = (const char *const *)c->args + 1;
	struct morsel_load_opts o = { .base_fd = -1 };
	struct mimg_error err;
	struct mimg_header h;
	struct morsel_stat st;
	double t0, us;
	int fd, ret;

	c->json_name = name;
	c->json_images = c->nargs - 1;
	if (has_option(c, "base") && open_option_morsel(c, "base", &o.base_fd))
		return 1;
	if (has_option(c, "over"))
		o.flags |= MORSEL_LOAD_OVER;
	o.progress = *progress_start(c);
	t0 = now_us();
	fd = morsel_load(images, c->nargs - 1, name, &o, &h, &err);
	us = now_us() - t0;
	progress_end(c);
	if (o.base_fd >= 0)
		close(o.base_fd);
	if (fd < 0)
		return fail(c, fd, &err);
	ret = morsel_stat(fd, &st);
	close(fd);
	if (ret)
		return fail(c, ret, NULL);
	load_result(c, &st, us);
	return 0;
}

static int cmd_verify(struct cmd *c)
{
	struct mimg_error err;
	struct mimg_header h;
	int ret;

	c->json_images = c->nargs;
	ret = morsel_image_verify((const char *const *)c->args, c->nargs,
				  progress_start(c), &h, &err);
	progress_end(c);
	if (ret)
		return fail(c, ret, &err);
	if (c->json) {
		json_begin(c, true);
		json_end();
		return 0;
	}
	printf("ok: %d image%s, %llu pages present\n", c->nargs,
	       c->nargs == 1 ? "" : "s", (unsigned long long)h.present_pages);
	return 0;
}

static void info_text(const char *image, const struct mimg_header *h)
{
	char a[32], b[32], id[33];

	hex_id(h->image_id, id);
	printf("image:       %s (%s, format %u)\n", image, image_kind(h),
	       h->version);
	printf("id:          %s\n", id);
	if (h->flags & MIMG_F_INCREMENT) {
		hex_id(h->parent_id, id);
		printf("parent:      %s\n", id);
	}
	if (h->flags & MIMG_F_DELTA)
		printf("base:        fingerprint %016llx\n",
		       (unsigned long long)h->base_fingerprint);
	printf("object:      %llu bytes (%s), level %s, id %016llx, "
	       "clean_gen %llu\n", (unsigned long long)h->object_size,
	       human(h->object_size, a, sizeof(a)),
	       morsel_level_name(h->level),
	       (unsigned long long)h->object_id,
	       (unsigned long long)h->clean_gen);
	printf("range:       %llu + %llu\n",
	       (unsigned long long)h->range_start,
	       (unsigned long long)h->range_length);
	printf("pages:       %llu present, %llu stored (%s) in %llu records\n",
	       (unsigned long long)h->present_pages,
	       (unsigned long long)h->data_pages,
	       human(h->data_pages * MORSEL_PAGE_SIZE, b, sizeof(b)),
	       (unsigned long long)h->nr_records);
	if (h->content_fingerprint)
		printf("fingerprint: %016llx\n",
		       (unsigned long long)h->content_fingerprint);
}

static int cmd_info(struct cmd *c)
{
	const char *image = c->args[0];
	struct mimg_reader r;
	struct mimg_error err;
	int fd, ret;

	c->json_image = image;
	fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(c, -errno, NULL);
	memset(&err, 0, sizeof(err));
	ret = mimg_open(fd, &r, &err);
	close(fd);
	if (ret)
		return fail(c, ret, &err);
	if (c->json) {
		json_begin(c, true);
		header_json(&r.h);
		json_end();
	} else {
		info_text(image, &r.h);
	}
	mimg_close(&r);
	return 0;
}

static int cmd_compact(struct cmd *c)
{
	const char *out = c->args[0];
	struct mimg_error err;
	struct mimg_header h;
	int n = c->nargs - 1, ret;

	c->json_image = out;
	ret = morsel_image_compact((const char *const *)c->args + 1, n, out,
				   progress_start(c), &h, &err);
	progress_end(c);
	if (ret)
		return fail(c, ret, &err);
	if (c->json) {
		json_begin(c, true);
		header_json(&h);
		json_end();
		return 0;
	}
	printf("compacted %d image%s into %s: %llu pages stored\n", n,
	       n == 1 ? "" : "s", out, (unsigned long long)h.data_pages);
	return 0;
}

/* ------------------------------------------------------------- main */

static const struct command commands[] = {
	{ "create", cmd_create, 2, 2, "NAME and SIZE", { "mode=" } },
	{ "ls", cmd_ls, 0, 1, NULL, { "bytes" } },
	{ "stat", cmd_stat, 1, 1, "NAME", { "json" } },
	{ "rm", cmd_rm, 1, MAX_ARGS, "NAME", { NULL } },
	{ "import", cmd_import, 2, 2, "NAME and FILE", { NULL } },
	{ "save", cmd_save, 2, 2, "NAME and IMAGE",
	  { "incremental=", "delta=", "range=", "json" } },
	{ "load", cmd_load, 2, MAX_ARGS,
	  "NAME and IMAGE [INCREMENT...] (a raw file: use 'import')",
	  { "base=", "over", "json" } },
	{ "verify", cmd_verify, 1, MAX_ARGS, "IMAGE [INCREMENT...]",
	  { "json" } },
	{ "info", cmd_info, 1, 1, "IMAGE", { "json" } },
	{ "compact", cmd_compact, 2, MAX_ARGS,
	  "OUT and IMAGE [INCREMENT...]", { "json" } },
	{ "cat", cmd_cat, 1, 1, "NAME", { NULL } },
	{ "map", cmd_map, 1, 1, "NAME", { "populate", "ro", "hold=" } },
	{ "totals", cmd_totals, 0, 0, NULL, { "json" } },
	{ "freeze", cmd_freeze, 1, 1, "NAME", { NULL } },
	{ "split", cmd_split, 2, 2, "BASE and CHILD", { NULL } },
};

static const struct command *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(name, commands[i].name))
			return &commands[i];
	return NULL;
}

/* -h, --help or help as the command, or -h/--help before any "--". */
static bool wants_help(int argc, char **argv)
{
	int i;

	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help"))
		return true;
	for (i = 2; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	const struct command *def;
	struct cmd c;
	int ret;

	if (argc < 2)
		return usage_error("missing command");
	if (wants_help(argc, argv)) {
		fputs(usage_text, stdout);
		return 0;
	}
	def = find_command(argv[1]);
	if (!def)
		return usage_error("unknown command '%s'", argv[1]);
	ret = parse_command(&c, def, argc - 1, argv + 1);
	if (ret)
		return ret;
	ret = def->run(&c);
	if ((fflush(stdout) || ferror(stdout)) && !ret) {
		c.json = false;	/* stdout is what failed */
		ret = fail_about(&c, "stdout", -(errno ? errno : EIO),
				 NULL);
	}
	return ret;
}
