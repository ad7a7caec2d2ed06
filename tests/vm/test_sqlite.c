#define _GNU_SOURCE
/*
 * SQLite on morselfs (issue 12, item 6), Debian's libsqlite3 linked
 * statically: a rollback-journal database, a WAL database (its -shm index
 * is a mapped file that SQLite grows while mapped), WAL with mmap_size
 * (the database itself read through a mapping), and two processes that
 * write and read the same WAL database at once.  Each case runs on tmpfs
 * first, as the reference, then on morselfs; both must give the same
 * answers and pass PRAGMA integrity_check.
 */
#include <sqlite3.h>
#include "vm.h"

#define ROWS	3000

static int exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK)
		tap_diag("sqlite: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	return rc;
}

static long long one_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	long long v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -2;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static int integrity_ok(sqlite3 *db)
{
	sqlite3_stmt *st;
	int ok = 0;

	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st,
			       NULL) != SQLITE_OK)
		return 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		ok = !strcmp((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
	return ok;
}

static sqlite3 *open_db(const char *path, const char *mode, long mmap_size)
{
	char sql[128];
	sqlite3 *db;

	if (sqlite3_open(path, &db) != SQLITE_OK)
		return NULL;
	sqlite3_busy_timeout(db, 10000);
	snprintf(sql, sizeof(sql), "PRAGMA journal_mode=%s; PRAGMA mmap_size=%ld",
		 mode, mmap_size);
	if (exec(db, sql) != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

/* Insert ROWS rows in transactions of 100; 0 or -1. */
static int insert_rows(sqlite3 *db, int from, int n)
{
	sqlite3_stmt *st;
	char blob[300];
	int i, rc = 0;

	if (sqlite3_prepare_v2(db, "INSERT INTO t(k, v, b) VALUES (?, ?, ?)",
			       -1, &st, NULL) != SQLITE_OK)
		return -1;
	for (i = from; i < from + n && !rc; i++) {
		if (i % 100 == from % 100 && exec(db, "BEGIN IMMEDIATE"))
			rc = -1;
		memset(blob, 'a' + i % 26, sizeof(blob));
		sqlite3_bind_int(st, 1, i);
		sqlite3_bind_int64(st, 2, (long long)i * i);
		sqlite3_bind_blob(st, 3, blob, sizeof(blob), SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = -1;
		sqlite3_reset(st);
		if ((i + 1) % 100 == from % 100 && exec(db, "COMMIT"))
			rc = -1;
	}
	sqlite3_finalize(st);
	return rc;
}

static void remove_db(const char *path)
{
	char p[256];

	unlink(path);
	snprintf(p, sizeof(p), "%s-journal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

/* sum(v) over k < 1000 after the update and the delete of single(). */
static long long expected_sum(void)
{
	long long k, sum = 0;

	for (k = 0; k < 1000; k++)
		if (k % 10 != 9)
			sum += k * k + (k % 3 == 0);
	return sum;
}

/* One process: create, fill, update, delete, query. */
static void single(const char *fs, const char *dir, const char *mode,
		   long mmap_size)
{
	char path[128];
	long long sum, n;
	sqlite3 *db;
	int ok;

	snprintf(path, sizeof(path), "%s/one.db", dir);
	remove_db(path);
	db = open_db(path, mode, mmap_size);
	tap_require(db != NULL, "%s: open %s", fs, path);
	ok = exec(db, "CREATE TABLE t(k INTEGER PRIMARY KEY, v INTEGER, b BLOB)") == 0 &&
	     exec(db, "CREATE INDEX tv ON t(v)") == 0 &&
	     insert_rows(db, 0, ROWS) == 0 &&
	     exec(db, "UPDATE t SET v = v + 1 WHERE k % 3 = 0") == 0 &&
	     exec(db, "DELETE FROM t WHERE k % 10 = 9") == 0;
	n = one_int(db, "SELECT count(*) FROM t");
	sum = one_int(db, "SELECT sum(v) FROM t WHERE k < 1000");
	tap_ok(ok && n == ROWS - ROWS / 10 && sum == expected_sum() &&
	       integrity_ok(db),
	       "%s, %s%s: create, %d inserts, update, delete, query (%lld rows, sum %lld), integrity ok",
	       fs, mode, mmap_size ? " + mmap_size" : "", ROWS, n, sum);
	if (!strcmp(mode, "wal"))
		tap_ok(exec(db, "PRAGMA wal_checkpoint(TRUNCATE)") == 0 &&
		       one_int(db, "SELECT count(*) FROM t") == n,
		       "%s, %s: checkpoint (truncates the mapped -shm's log)", fs, mode);
	sqlite3_close(db);
	/* Reopen: the data is in the file. */
	db = open_db(path, mode, mmap_size);
	tap_ok(db && one_int(db, "SELECT count(*) FROM t") == n && integrity_ok(db),
	       "%s, %s: reopened, same rows", fs, mode);
	sqlite3_close(db);
	remove_db(path);
}

/* A writer process and a reader process on one WAL database. */
static void two_processes(const char *fs, const char *dir)
{
	char path[128];
	long long last = 0, n, bad = 0, reads = 0;
	sqlite3 *db;
	pid_t pid;
	int st;

	snprintf(path, sizeof(path), "%s/two.db", dir);
	remove_db(path);
	db = open_db(path, "wal", 0);
	tap_require(db && exec(db, "CREATE TABLE t(k INTEGER PRIMARY KEY, v INTEGER, b BLOB)") == 0,
		    "%s: create", fs);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		sqlite3 *w = open_db(path, "wal", 0);

		_exit(w && insert_rows(w, 0, ROWS) == 0 &&
		      sqlite3_close(w) == SQLITE_OK ? 0 : 1);
	}
	do {
		n = one_int(db, "SELECT count(*) FROM t");
		reads++;
		/* Whole transactions only, never backwards. */
		if (n < last || n % 100 || n < 0)
			bad++;
		if (n > last)
			last = n;
	} while (waitpid(pid, &st, WNOHANG) == 0);
	n = one_int(db, "SELECT count(*) FROM t");
	tap_ok(CHILD_OK(st) && n == ROWS && !bad && integrity_ok(db),
	       "%s: a writer process and a reader process on one WAL database (%lld rows; %lld reads, %lld bad)",
	       fs, n, reads, bad);
	sqlite3_close(db);
	remove_db(path);
}

static void run(const char *fs, const char *dir)
{
	single(fs, dir, "delete", 0);
	single(fs, dir, "wal", 0);
	single(fs, dir, "wal", 64 << 20);
	two_processes(fs, dir);
}

int main(void)
{
	watchdog(900);
	phase = "tmpfs";
	mkdir("/tmp/sq", 0700);
	run("tmpfs", "/tmp/sq");
	phase = "morselfs";
	tap_require(mkdir("/dev/morsel/sq", 0700) == 0 || errno == EEXIST);
	run("morselfs", "/dev/morsel/sq");
	rmdir("/dev/morsel/sq");
	return tap_done();
}
