#define _GNU_SOURCE
/*
 * LMDB on morselfs (issue 12, item 6), Debian's liblmdb linked
 * statically.  LMDB maps its data file (read-only by default, writable
 * with MDB_WRITEMAP), grows the file while it is mapped, and keeps its
 * reader table and writer mutex, process-shared robust pthread mutexes,
 * in a mapped lock file.  In both modes a writer process commits
 * transactions while a reader process reads snapshots (each must be a
 * whole number of transactions, never going backwards), then every
 * record is checked and the environment reopened.  Each mode runs on
 * tmpfs first, as the reference, then on morselfs.
 */
#include <lmdb.h>
#include "vm.h"

#define TXNS	40
#define PER	100

static int put_all(const char *dir, unsigned int flags)
{
	char kb[16], vb[600];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;
	int t, i, rc;

	rc = mdb_env_create(&env);
	rc = rc ?: mdb_env_set_mapsize(env, 64 << 20);
	rc = rc ?: mdb_env_open(env, dir, flags, 0600);
	for (t = 0; !rc && t < TXNS; t++) {
		rc = mdb_txn_begin(env, NULL, 0, &txn);
		rc = rc ?: mdb_dbi_open(txn, NULL, 0, &dbi);
		for (i = 0; !rc && i < PER; i++) {
			snprintf(kb, sizeof(kb), "k%08d", t * PER + i);
			memset(vb, 'a' + (t * PER + i) % 26, sizeof(vb));
			k.mv_data = kb;
			k.mv_size = strlen(kb);
			v.mv_data = vb;
			v.mv_size = sizeof(vb);
			rc = mdb_put(txn, dbi, &k, &v, 0);
		}
		rc = rc ? (mdb_txn_abort(txn), rc) : mdb_txn_commit(txn);
	}
	if (rc)
		fprintf(stderr, "# lmdb writer: %s\n", mdb_strerror(rc));
	mdb_env_close(env);
	return rc;
}

/* Entries in a read snapshot, and how many values are wrong; -1 on error. */
static long count(MDB_env *env, long *bad)
{
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_dbi dbi;
	MDB_val k, v;
	long n = 0;
	int rc;

	rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return rc == MDB_NOTFOUND ? 0 : -1;
	rc = mdb_dbi_open(txn, NULL, 0, &dbi);
	rc = rc ?: mdb_cursor_open(txn, dbi, &c);
	if (rc) {
		mdb_txn_abort(txn);
		return -1;
	}
	while (!mdb_cursor_get(c, &k, &v, n ? MDB_NEXT : MDB_FIRST)) {
		int i = atoi((char *)k.mv_data + 1);

		if (v.mv_size != 600 ||
		    ((char *)v.mv_data)[599] != 'a' + i % 26)
			(*bad)++;
		n++;
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	return n;
}

static void run(const char *fs, const char *dir, unsigned int flags,
		const char *mode)
{
	long last = 0, n, bad = 0, torn = 0, reads = 0;
	char path[160];
	MDB_env *env;
	pid_t pid;
	int st, rc;

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rc = mdb_env_create(&env);
	rc = rc ?: mdb_env_set_mapsize(env, 64 << 20);
	rc = rc ?: mdb_env_open(env, dir, flags, 0600);
	tap_require(!rc, "%s: mdb_env_open: %s", fs, mdb_strerror(rc));
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0)
		_exit(put_all(dir, flags) ? 1 : 0);
	do {
		n = count(env, &bad);
		reads++;
		if (n < last || n % PER || n < 0)
			torn++;
		if (n > last)
			last = n;
	} while (waitpid(pid, &st, WNOHANG) == 0);
	n = count(env, &bad);
	tap_ok(CHILD_OK(st) && n == TXNS * PER && !bad && !torn,
	       "%s, %s: a writer process commits %d transactions beside a reader process (%ld entries, %ld reads, %ld torn, %ld bad)",
	       fs, mode, TXNS, n, reads, torn, bad);
	mdb_env_close(env);
	rc = mdb_env_create(&env);
	rc = rc ?: mdb_env_open(env, dir, flags, 0600);
	bad = 0;
	tap_ok(!rc && count(env, &bad) == TXNS * PER && !bad,
	       "%s, %s: reopened, every entry intact", fs, mode);
	mdb_env_close(env);
}

int main(void)
{
	watchdog(900);
	mkdir("/tmp/lm", 0700);
	tap_require(mkdir("/dev/morsel/lm", 0700) == 0 || errno == EEXIST);
	phase = "default";
	run("tmpfs", "/tmp/lm", 0, "default");
	run("morselfs", "/dev/morsel/lm", 0, "default");
	phase = "writemap";
	run("tmpfs", "/tmp/lm", MDB_WRITEMAP, "MDB_WRITEMAP");
	run("morselfs", "/dev/morsel/lm", MDB_WRITEMAP, "MDB_WRITEMAP");
	unlink("/dev/morsel/lm/data.mdb");
	unlink("/dev/morsel/lm/lock.mdb");
	rmdir("/dev/morsel/lm");
	return tap_done();
}
