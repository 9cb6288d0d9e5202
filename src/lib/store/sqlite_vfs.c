/* A VFS shim for the store's SQLite WAL files: one write() per commit
 * instead of two per page.
 *
 * SQLite (3.40) appends a WAL frame as two writes, the 24-byte frame
 * header and then the page, so a commit that touches five pages (the table,
 * three indexes, an interior page) costs ten pwrite() calls; under the
 * gateway's per-request group commits those system calls were most of the
 * store's CPU.  This shim wraps the default VFS ("veil-wal", registered
 * once, never the default) and, for WAL files only, gathers contiguous
 * writes in a buffer that goes to the kernel in one pwrite():
 *
 *  - when the page after a commit frame's header has been appended (the
 *    header's bytes 4..7, "database size after commit", are non-zero only in
 *    the commit frame).  That write's own return value carries any error,
 *    so a failed flush fails the commit as an unbuffered write would, and a
 *    commit is in the kernel (SIGKILL-safe) before SQLite publishes it in
 *    the wal-index and before the call returns: the durability contract of
 *    docs/store.md is unchanged;
 *  - before anything that reads or depends on the file: xRead, xSync,
 *    xTruncate, xFileSize, xFileControl, xClose; before a write that is not
 *    contiguous with the buffer, or that would overflow it.
 *
 * The buffer must never outlive the write transaction that filled it: frames
 * of a transaction that rolls back, written later, would land on the WAL
 * offsets another connection's commit has taken since.  The store therefore
 * opens shim connections with cache_spill off, so every frame is written
 * inside a commit, whose last frame flushes the buffer (and a failed write
 * leaves it empty).
 *
 * A write that does not fit the header-then-page pattern (a future SQLite
 * writing frames another way) switches the file to plain pass-through, so an
 * unknown pattern costs speed, never correctness.  The store uses the shim
 * with sync=normal only: with sync=full every commit pays an fsync that
 * dwarfs the system calls, and SQLite's sector padding splits writes. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store_impl.h"

/* Below 128 KiB: the unix VFS writes at most 0x1ffff bytes per call (and
 * treats a longer write as a short one: SQLITE_FULL). */
#define WBUF_CAP (96u * 1024)
#define FRAME_HDR 24
#define WAL_HDR 32

struct wfile {
	sqlite3_file base;      /* our methods */
	sqlite3_file *real;     /* the default VFS's file, after this struct */
	unsigned char *buf;     /* NULL until the first buffered write */
	size_t len;             /* bytes buffered */
	sqlite3_int64 off;      /* file offset of buf[0] */
	int commit_next;        /* the last write was a commit frame's header */
	int last_hdr;           /* the last write was a frame header */
	int passthru;           /* pattern not recognised: no buffering */
};

static sqlite3_vfs g_vfs;
static sqlite3_vfs *g_real;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_rc = SQLITE_ERROR;

static int wflush(struct wfile *f)
{
	int rc;

	if (!f->len)
		return SQLITE_OK;
	rc = f->real->pMethods->xWrite(f->real, f->buf, (int)f->len, f->off);
	f->len = 0;
	return rc;
}

static int w_close(sqlite3_file *p)
{
	struct wfile *f = (struct wfile *)p;
	int rc = wflush(f), rc2;

	rc2 = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
	free(f->buf);
	f->buf = NULL;
	return rc != SQLITE_OK ? rc : rc2;
}

static int w_read(sqlite3_file *p, void *b, int amt, sqlite3_int64 off)
{
	struct wfile *f = (struct wfile *)p;
	int rc = wflush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, b, amt, off);
}

static int w_write(sqlite3_file *p, const void *b, int amt, sqlite3_int64 off)
{
	struct wfile *f = (struct wfile *)p;
	const unsigned char *h = b;
	int rc, hdr, commit;

	if (f->passthru || amt <= 0)
		goto direct;
	hdr = amt == FRAME_HDR;
	/* A page write must follow a frame header; only the WAL header and
	 * frame headers are small.  Anything else: stop buffering. */
	if (!hdr && amt != WAL_HDR && !f->last_hdr) {
		f->passthru = 1;
		goto direct;
	}
	if (!f->buf && !(f->buf = malloc(WBUF_CAP)))
		goto direct;
	if (f->len && (off != f->off + (sqlite3_int64)f->len ||
		       f->len + (size_t)amt > WBUF_CAP)) {
		if ((rc = wflush(f)) != SQLITE_OK)
			return rc;
	}
	if ((size_t)amt > WBUF_CAP)
		goto direct;
	if (!f->len)
		f->off = off;
	memcpy(f->buf + f->len, b, (size_t)amt);
	f->len += (size_t)amt;
	commit = f->commit_next && !hdr && amt != WAL_HDR;
	f->last_hdr = hdr;
	f->commit_next = hdr && (h[4] | h[5] | h[6] | h[7]) != 0;
	return commit ? wflush(f) : SQLITE_OK;
direct:
	if ((rc = wflush(f)) != SQLITE_OK)
		return rc;
	f->last_hdr = f->commit_next = 0;
	return f->real->pMethods->xWrite(f->real, b, amt, off);
}

static int w_truncate(sqlite3_file *p, sqlite3_int64 size)
{
	struct wfile *f = (struct wfile *)p;
	int rc = wflush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int w_sync(sqlite3_file *p, int flags)
{
	struct wfile *f = (struct wfile *)p;
	int rc = wflush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int w_size(sqlite3_file *p, sqlite3_int64 *out)
{
	struct wfile *f = (struct wfile *)p;
	int rc = wflush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, out);
}

static int w_lock(sqlite3_file *p, int l)
{
	struct wfile *f = (struct wfile *)p;

	return f->real->pMethods->xLock(f->real, l);
}

static int w_unlock(sqlite3_file *p, int l)
{
	struct wfile *f = (struct wfile *)p;

	return f->real->pMethods->xUnlock(f->real, l);
}

static int w_reserved(sqlite3_file *p, int *out)
{
	struct wfile *f = (struct wfile *)p;

	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int w_fcntl(sqlite3_file *p, int op, void *arg)
{
	struct wfile *f = (struct wfile *)p;
	int rc = wflush(f);

	return rc != SQLITE_OK ? rc
	       : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int w_sector(sqlite3_file *p)
{
	struct wfile *f = (struct wfile *)p;

	return f->real->pMethods->xSectorSize(f->real);
}

static int w_devchar(sqlite3_file *p)
{
	struct wfile *f = (struct wfile *)p;

	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

/* Version 1 methods: a WAL file has no shared memory and is not mmapped,
 * so SQLite never asks it for the v2/v3 ones. */
static const sqlite3_io_methods W_METHODS = {
	1, w_close, w_read, w_write, w_truncate, w_sync, w_size, w_lock,
	w_unlock, w_reserved, w_fcntl, w_sector, w_devchar,
	NULL, NULL, NULL, NULL, NULL, NULL,
};

static int v_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *p,
		  int flags, int *out_flags)
{
	struct wfile *f = (struct wfile *)p;
	int rc;

	(void)vfs;
	if (!(flags & SQLITE_OPEN_WAL))
		return g_real->xOpen(g_real, name, p, flags, out_flags);
	memset(f, 0, sizeof(*f));
	f->real = (sqlite3_file *)(f + 1);
	rc = g_real->xOpen(g_real, name, f->real, flags, out_flags);
	if (rc != SQLITE_OK) {
		/* SQLite still calls xClose when pMethods is set; leave it NULL
		 * after the real file's own failure handling. */
		if (f->real->pMethods)
			f->real->pMethods->xClose(f->real);
		f->base.pMethods = NULL;
		return rc;
	}
	f->base.pMethods = &W_METHODS;
	return SQLITE_OK;
}

static void vfs_init(void)
{
	if (!(g_real = sqlite3_vfs_find(NULL)))
		return;
	g_vfs = *g_real;
	g_vfs.iVersion = g_real->iVersion;
	g_vfs.szOsFile = (int)sizeof(struct wfile) + g_real->szOsFile;
	g_vfs.zName = STORE_SQLITE_VFS;
	g_vfs.pNext = NULL;
	g_vfs.xOpen = v_open;
	/* xDelete, xAccess, xFullPathname, ... are the real VFS's, pAppData
	 * (the unix VFS's locking-style finder) with them; files are opened
	 * through the real VFS itself. */
	g_rc = sqlite3_vfs_register(&g_vfs, 0);
}

int store_sqlite_vfs(void)
{
	pthread_once(&g_once, vfs_init);
	return g_rc;
}
