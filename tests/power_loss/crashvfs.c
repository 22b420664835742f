/* crashvfs: a power-loss recorder under SQLite, loaded with LD_PRELOAD.
 *
 * Every process of the test (libtms through ctypes, the `tms` tool, Python's sqlite3) links the
 * system libsqlite3.so.0, so one shim serves them all. Its constructor registers a VFS that wraps
 * the default one ("unix") and makes itself the default. It forwards every call and, for the
 * files that hold data (main databases, rollback journals, WAL files), keeps an undo log of what
 * has not been synced yet:
 *
 *   - before each xWrite / xTruncate (and a size hint that may grow the file) it appends the
 *     pre-image to CRASHVFS_DIR/undo.log: the path, the offset, the bytes about to be
 *     overwritten, and the file's size before the call;
 *   - after each successful xSync it appends a SYNC mark for the path: fsync(2) makes every
 *     process's writes to that inode durable, so the cut step drops every earlier record of the
 *     path;
 *   - a file created through xOpen gets a CREATE record, and xDelete moves the file's content
 *     aside (a hard link) and appends a DELETE record: neither is durable until its directory is
 *     synced. The unix VFS syncs the directory at the first xSync of a WAL or rollback journal it
 *     created, and in xDelete when asked to (SQLite asks only at synchronous=EXTRA); this shim
 *     records a DIRSYNC mark at the same moments.
 *
 * Record + real write, and real sync + mark, happen under one flock(2) of CRASHVFS_DIR/lock, so
 * the log's order is the order in which several processes' calls reached the files.
 *
 * A power cut is the processes dying (SIGKILL from the test, or this shim at its CRASHVFS_CRASH_AT-th
 * write/truncate/sync, counted per process) followed by tests/power_loss/cut.py, which applies the
 * records that no SYNC/DIRSYNC covers, newest first (mode "all"), or only those after a random
 * point, tearing the boundary write sector by sector (mode "torn").
 *
 * CRASHVFS_FAIL_AT=N (CRASHVFS_FAIL_COUNT=K, default 1) makes the Nth..N+K-1th write/truncate/sync
 * fail with SQLITE_IOERR_WRITE/TRUNCATE/FSYNC without doing anything (an I/O error; a failed sync's
 * writes stay unsynced until a later sync of the file succeeds).
 *
 * CRASHVFS_COUNTS=FILE (with or without CRASHVFS_DIR) appends one line per xSync, "sync PATH", for
 * counting syncs per operation (bench/syncs.py).
 *
 * Memory-mapped I/O is switched off (xFetch returns no mapping), so every write goes through
 * xWrite. The -shm file is not recorded: SQLite rebuilds it from the WAL after a crash.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

enum { REC_WRITE = 1, REC_TRUNCATE = 2, REC_SYNC = 3, REC_CREATE = 4, REC_DELETE = 5, REC_DIRSYNC = 6, REC_SIZE = 7 };

/* One log record: this header, then `path_len` bytes of path, then `data_len` bytes. */
struct rec {
    uint32_t magic;    /* 0x43524153 "CRAS" */
    uint32_t type;
    int64_t offset;    /* WRITE: where; TRUNCATE: the new size */
    int64_t old_size;  /* the file's size before the call (-1 when unknown) */
    uint32_t path_len;
    uint32_t data_len; /* WRITE/TRUNCATE: old bytes; DELETE: the name of the saved link */
    int32_t pid;
    uint32_t amt;      /* WRITE: how many bytes the call wrote */
};

typedef struct CFile {
    sqlite3_file base;
    const char *path; /* owned by SQLite for the file's lifetime (xOpen's zName) */
    int tracked;
    int dirsync_pending;
    sqlite3_file *real; /* points just after this struct */
} CFile;

static sqlite3_vfs *orig;
static sqlite3_vfs vfs;
static sqlite3_io_methods methods;
static char dir[4096];
static int log_fd = -1, lock_fd = -1, count_fd = -1;
static long crash_at = -1;
static long fail_at = -1, fail_count = 1;
static long ops;
static long seq;

static void die_now(void) {
    /* A power cut: no exit handlers, no flushing, nothing. */
    kill(getpid(), SIGKILL);
    _exit(137);
}

/* Counts one write/truncate/sync; dies at the CRASHVFS_CRASH_AT-th, and returns 1 (the call
 * must fail with an I/O error, doing nothing) for CRASHVFS_FAIL_COUNT calls from the
 * CRASHVFS_FAIL_AT-th on. */
static int count_op(void) {
    if (crash_at < 0 && fail_at < 0) return 0;
    long n = __atomic_add_fetch(&ops, 1, __ATOMIC_SEQ_CST);
    if (crash_at >= 0 && n >= crash_at) die_now();
    return fail_at >= 0 && n >= fail_at && n < fail_at + fail_count;
}

static void lock(void) {
    if (lock_fd >= 0)
        while (flock(lock_fd, LOCK_EX) != 0 && errno == EINTR) {
        }
}
static void unlock(void) {
    if (lock_fd >= 0) flock(lock_fd, LOCK_UN);
}

static void write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "crashvfs: cannot write the undo log: %s\n", strerror(errno));
            abort();
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Append one record in a single write(2): a process killed in the middle leaves a short tail,
 * which the cut step ignores (the call it describes had not started). */
static void append(uint32_t type, const char *path, int64_t offset, int64_t old_size, const void *data, uint32_t data_len,
                   uint32_t amt) {
    if (log_fd < 0) return;
    struct rec r = {0x43524153u, type, offset, old_size, (uint32_t)strlen(path), data_len, (int32_t)getpid(), amt};
    size_t n = sizeof r + r.path_len + data_len;
    char *buf = malloc(n);
    if (!buf) abort();
    memcpy(buf, &r, sizeof r);
    memcpy(buf + sizeof r, path, r.path_len);
    if (data_len) memcpy(buf + sizeof r + r.path_len, data, data_len);
    write_all(log_fd, buf, n);
    free(buf);
}

static void parent_dir(const char *path, char *out, size_t cap) {
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash == out) out[1] = 0;
    else if (slash) *slash = 0;
    else snprintf(out, cap, ".");
}

/* The bytes [offset, offset+len) as they are now, clipped at the end of the file. */
static int64_t pre_image(CFile *f, sqlite3_int64 offset, int len, char **out) {
    sqlite3_int64 size = 0;
    *out = NULL;
    if (f->real->pMethods->xFileSize(f->real, &size) != SQLITE_OK) return -1;
    if (offset < size) {
        sqlite3_int64 n = size - offset < len ? size - offset : len;
        *out = malloc((size_t)n);
        if (!*out) abort();
        int rc = f->real->pMethods->xRead(f->real, *out, (int)n, offset);
        if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) {
            free(*out);
            *out = NULL;
            return -1;
        }
        return size;
    }
    return size;
}

static int c_close(sqlite3_file *p) {
    CFile *f = (CFile *)p;
    return f->real->pMethods->xClose(f->real);
}
static int c_read(sqlite3_file *p, void *buf, int amt, sqlite3_int64 off) {
    CFile *f = (CFile *)p;
    return f->real->pMethods->xRead(f->real, buf, amt, off);
}
static int c_write(sqlite3_file *p, const void *buf, int amt, sqlite3_int64 off) {
    CFile *f = (CFile *)p;
    if (f->tracked && count_op()) return SQLITE_IOERR_WRITE;
    if (!f->tracked || log_fd < 0) return f->real->pMethods->xWrite(f->real, buf, amt, off);
    lock();
    char *old = NULL;
    int64_t size = pre_image(f, off, amt, &old);
    int64_t have = 0;
    if (size >= 0 && off < size) have = size - off < amt ? size - off : amt;
    append(REC_WRITE, f->path, off, size, old, (uint32_t)have, (uint32_t)amt);
    free(old);
    int rc = f->real->pMethods->xWrite(f->real, buf, amt, off);
    unlock();
    return rc;
}
static int c_truncate(sqlite3_file *p, sqlite3_int64 size) {
    CFile *f = (CFile *)p;
    if (f->tracked && count_op()) return SQLITE_IOERR_TRUNCATE;
    if (!f->tracked || log_fd < 0) return f->real->pMethods->xTruncate(f->real, size);
    lock();
    sqlite3_int64 cur = 0;
    char *old = NULL;
    uint32_t have = 0;
    if (f->real->pMethods->xFileSize(f->real, &cur) == SQLITE_OK && cur > size) {
        int64_t s = pre_image(f, size, (int)(cur - size), &old);
        (void)s;
        have = (uint32_t)(cur - size);
    }
    append(REC_TRUNCATE, f->path, size, cur, old, have, 0);
    free(old);
    int rc = f->real->pMethods->xTruncate(f->real, size);
    unlock();
    return rc;
}
static int c_sync(sqlite3_file *p, int flags) {
    CFile *f = (CFile *)p;
    if (count_fd >= 0 && f->tracked) {
        char line[4200];
        int n = snprintf(line, sizeof line, "sync %s\n", f->path);
        write_all(count_fd, line, (size_t)n);
    }
    if (f->tracked && count_op()) return SQLITE_IOERR_FSYNC; /* nothing synced: no SYNC mark */
    if (!f->tracked) return f->real->pMethods->xSync(f->real, flags);
    lock();
    int rc = f->real->pMethods->xSync(f->real, flags);
    if (rc == SQLITE_OK) {
        append(REC_SYNC, f->path, 0, -1, NULL, 0, 0);
        if (f->dirsync_pending) {
            char d[4096];
            parent_dir(f->path, d, sizeof d);
            append(REC_DIRSYNC, d, 0, -1, NULL, 0, 0);
            if (count_fd >= 0) {
                char line[4200];
                int n = snprintf(line, sizeof line, "dirsync %s\n", d);
                write_all(count_fd, line, (size_t)n);
            }
            f->dirsync_pending = 0;
        }
    }
    unlock();
    return rc;
}
static int c_file_size(sqlite3_file *p, sqlite3_int64 *size) {
    CFile *f = (CFile *)p;
    return f->real->pMethods->xFileSize(f->real, size);
}
static int c_lock(sqlite3_file *p, int l) {
    CFile *f = (CFile *)p;
    return f->real->pMethods->xLock(f->real, l);
}
static int c_unlock(sqlite3_file *p, int l) {
    CFile *f = (CFile *)p;
    return f->real->pMethods->xUnlock(f->real, l);
}
static int c_check_reserved(sqlite3_file *p, int *out) {
    CFile *f = (CFile *)p;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}
static int c_file_control(sqlite3_file *p, int op, void *arg) {
    CFile *f = (CFile *)p;
    if (op == SQLITE_FCNTL_MMAP_SIZE && arg) {
        /* No memory-mapped I/O: every write must pass through xWrite. */
        *(sqlite3_int64 *)arg = 0;
        return SQLITE_OK;
    }
    if (op == SQLITE_FCNTL_VFSNAME && arg) {
        *(char **)arg = sqlite3_mprintf("crashvfs");
        return SQLITE_OK;
    }
    if (op == SQLITE_FCNTL_SIZE_HINT && f->tracked && log_fd >= 0) {
        /* The unix VFS may grow the file here (chunk size, mmap): remember the old size. */
        lock();
        sqlite3_int64 cur = 0;
        f->real->pMethods->xFileSize(f->real, &cur);
        append(REC_SIZE, f->path, cur, cur, NULL, 0, 0);
        int rc = f->real->pMethods->xFileControl(f->real, op, arg);
        unlock();
        return rc;
    }
    return f->real->pMethods->xFileControl(f->real, op, arg);
}
static int c_sector_size(sqlite3_file *p) {
    CFile *f = (CFile *)p;
    return f->real->pMethods->xSectorSize(f->real);
}
static int c_device_characteristics(sqlite3_file *p) {
    CFile *f = (CFile *)p;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}
static int c_shm_map(sqlite3_file *p, int pg, int pgsz, int extend, void volatile **pp) {
    CFile *f = (CFile *)p;
    return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}
static int c_shm_lock(sqlite3_file *p, int offset, int n, int flags) {
    CFile *f = (CFile *)p;
    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}
static void c_shm_barrier(sqlite3_file *p) {
    CFile *f = (CFile *)p;
    f->real->pMethods->xShmBarrier(f->real);
}
static int c_shm_unmap(sqlite3_file *p, int del) {
    CFile *f = (CFile *)p;
    return f->real->pMethods->xShmUnmap(f->real, del);
}
static int c_fetch(sqlite3_file *p, sqlite3_int64 off, int amt, void **pp) {
    (void)p, (void)off, (void)amt;
    *pp = 0; /* no mapping: SQLite reads with xRead instead */
    return SQLITE_OK;
}
static int c_unfetch(sqlite3_file *p, sqlite3_int64 off, void *ptr) {
    (void)p, (void)off, (void)ptr;
    return SQLITE_OK;
}

static int v_open(sqlite3_vfs *v, const char *name, sqlite3_file *p, int flags, int *out_flags) {
    (void)v;
    CFile *f = (CFile *)p;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)&f[1];
    f->path = name;
    int kind = flags & 0x0FFFFF00;
    int data_file = (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL | SQLITE_OPEN_SUPER_JOURNAL)) != 0;
    (void)kind;
    f->tracked = name != NULL && data_file && (log_fd >= 0 || count_fd >= 0);
    int existed = 1;
    if (f->tracked && log_fd >= 0) {
        lock();
        existed = access(name, F_OK) == 0;
    }
    int rc = orig->xOpen(orig, name, f->real, flags, out_flags);
    if (f->tracked && log_fd >= 0) {
        if (rc == SQLITE_OK && !existed && access(name, F_OK) == 0) append(REC_CREATE, name, 0, 0, NULL, 0, 0);
        unlock();
    }
    /* The unix VFS syncs the directory at the first sync of a journal or WAL opened to create. */
    f->dirsync_pending = (flags & SQLITE_OPEN_CREATE) && (flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL | SQLITE_OPEN_SUPER_JOURNAL));
    if (f->real->pMethods == NULL) {
        p->pMethods = NULL;
        return rc;
    }
    p->pMethods = &methods;
    return rc;
}

static int v_delete(sqlite3_vfs *v, const char *name, int sync_dir) {
    (void)v;
    if (log_fd < 0) return orig->xDelete(orig, name, sync_dir);
    lock();
    char saved[4200];
    int have = 0;
    if (access(name, F_OK) == 0) {
        snprintf(saved, sizeof saved, "%s/deleted-%d-%ld", dir, (int)getpid(), __atomic_add_fetch(&seq, 1, __ATOMIC_SEQ_CST));
        have = link(name, saved) == 0;
    }
    int rc = orig->xDelete(orig, name, sync_dir);
    if (rc == SQLITE_OK && have) append(REC_DELETE, name, 0, -1, saved, (uint32_t)strlen(saved), 0);
    else if (have) unlink(saved);
    if (rc == SQLITE_OK && sync_dir) {
        char d[4096];
        parent_dir(name, d, sizeof d);
        append(REC_DIRSYNC, d, 0, -1, NULL, 0, 0);
    }
    unlock();
    return rc;
}

static int v_access(sqlite3_vfs *v, const char *name, int flags, int *out) {
    (void)v;
    return orig->xAccess(orig, name, flags, out);
}
static int v_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out) {
    (void)v;
    return orig->xFullPathname(orig, name, n, out);
}
static void *v_dlopen(sqlite3_vfs *v, const char *name) {
    (void)v;
    return orig->xDlOpen(orig, name);
}
static void v_dlerror(sqlite3_vfs *v, int n, char *out) {
    (void)v;
    orig->xDlError(orig, n, out);
}
static void (*v_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void) {
    (void)v;
    return orig->xDlSym(orig, h, sym);
}
static void v_dlclose(sqlite3_vfs *v, void *h) {
    (void)v;
    orig->xDlClose(orig, h);
}
static int v_randomness(sqlite3_vfs *v, int n, char *out) {
    (void)v;
    return orig->xRandomness(orig, n, out);
}
static int v_sleep(sqlite3_vfs *v, int us) {
    (void)v;
    return orig->xSleep(orig, us);
}
static int v_current_time(sqlite3_vfs *v, double *t) {
    (void)v;
    return orig->xCurrentTime(orig, t);
}
static int v_get_last_error(sqlite3_vfs *v, int n, char *out) {
    (void)v;
    return orig->xGetLastError ? orig->xGetLastError(orig, n, out) : 0;
}
static int v_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *t) {
    (void)v;
    return orig->xCurrentTimeInt64(orig, t);
}
static int v_set_system_call(sqlite3_vfs *v, const char *name, sqlite3_syscall_ptr ptr) {
    (void)v;
    return orig->xSetSystemCall(orig, name, ptr);
}
static sqlite3_syscall_ptr v_get_system_call(sqlite3_vfs *v, const char *name) {
    (void)v;
    return orig->xGetSystemCall(orig, name);
}
static const char *v_next_system_call(sqlite3_vfs *v, const char *name) {
    (void)v;
    return orig->xNextSystemCall(orig, name);
}

__attribute__((constructor)) static void crashvfs_init(void) {
    const char *d = getenv("CRASHVFS_DIR");
    const char *counts = getenv("CRASHVFS_COUNTS");
    const char *at = getenv("CRASHVFS_CRASH_AT");
    if ((!d || !*d) && (!counts || !*counts)) return; /* loaded but not asked for anything */
    if (d && *d) {
        snprintf(dir, sizeof dir, "%s", d);
        char p[4200];
        snprintf(p, sizeof p, "%s/undo.log", dir);
        log_fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        snprintf(p, sizeof p, "%s/lock", dir);
        lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (log_fd < 0 || lock_fd < 0) {
            fprintf(stderr, "crashvfs: cannot open %s/undo.log or lock: %s\n", dir, strerror(errno));
            abort();
        }
    }
    if (counts && *counts) {
        count_fd = open(counts, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (count_fd < 0) {
            fprintf(stderr, "crashvfs: cannot open %s: %s\n", counts, strerror(errno));
            abort();
        }
    }
    if (at && *at) crash_at = atol(at);
    const char *fail = getenv("CRASHVFS_FAIL_AT"), *fails = getenv("CRASHVFS_FAIL_COUNT");
    if (fail && *fail) fail_at = atol(fail);
    if (fails && *fails) fail_count = atol(fails);

    orig = sqlite3_vfs_find(NULL);
    if (!orig) {
        fprintf(stderr, "crashvfs: no default VFS\n");
        abort();
    }
    methods = (sqlite3_io_methods){
        3, c_close, c_read, c_write, c_truncate, c_sync, c_file_size, c_lock, c_unlock, c_check_reserved,
        c_file_control, c_sector_size, c_device_characteristics, c_shm_map, c_shm_lock, c_shm_barrier, c_shm_unmap,
        c_fetch, c_unfetch,
    };
    vfs = *orig;
    vfs.iVersion = 3;
    vfs.szOsFile = (int)sizeof(CFile) + orig->szOsFile;
    vfs.zName = "crashvfs";
    vfs.pNext = NULL;
    vfs.pAppData = NULL;
    vfs.xOpen = v_open;
    vfs.xDelete = v_delete;
    vfs.xAccess = v_access;
    vfs.xFullPathname = v_full_pathname;
    vfs.xDlOpen = v_dlopen;
    vfs.xDlError = v_dlerror;
    vfs.xDlSym = v_dlsym;
    vfs.xDlClose = v_dlclose;
    vfs.xRandomness = v_randomness;
    vfs.xSleep = v_sleep;
    vfs.xCurrentTime = v_current_time;
    vfs.xGetLastError = v_get_last_error;
    vfs.xCurrentTimeInt64 = v_current_time_int64;
    vfs.xSetSystemCall = v_set_system_call;
    vfs.xGetSystemCall = v_get_system_call;
    vfs.xNextSystemCall = v_next_system_call;
    if (sqlite3_vfs_register(&vfs, 1) != SQLITE_OK) {
        fprintf(stderr, "crashvfs: cannot register the VFS\n");
        abort();
    }
}
