//! Open connections to one database file, shared by the threads of one process.
//!
//! A rusqlite `Connection` is Send but not Sync, so each call checks one out for its own use and
//! puts it back; connections stay open and keep their prepared statements between calls.
//!
//! SQLite state must never cross `fork()`. Not only the connections: SQLite keeps per-process
//! lock bookkeeping for every open file, and a child that inherits it believes it holds locks it
//! does not (the parent could then checkpoint and delete the WAL under the child's writes). So:
//! - before a fork (a `pthread_atfork` handler), every pool closes its idle connections, so the
//!   child inherits no SQLite file state; a pool with a connection in use by another thread at
//!   that moment cannot be made safe, and refuses all use in the child with a clear error;
//! - each pool remembers the pid that opened its connections; in a child it opens fresh ones, and
//!   anything inherited anyway is abandoned without `sqlite3_close`.

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rusqlite::{Connection, MAIN_DB, OpenFlags};

use super::group_commit::GroupCommit;
use crate::error::{Error, ErrorKind, Result};
use crate::options::StoreOptions;

pub struct Pool {
    shared: Arc<Shared>,
}

/// A pool's state, also reachable from the fork handlers through the registry.
struct Shared {
    path: PathBuf,
    /// How connections open the file (decided once, when the pool opens).
    mode: Mode,
    /// Newest schema version this library knows for the file: a newer file is refused before
    /// anything is written to it.
    max_version: i64,
    options: StoreOptions,
    idle: Mutex<Idle>,
}

/// How a pool's connections open their file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read and write (the normal case); the file is created when missing.
    ReadWrite,
    /// The file or its directory is not writable: reads only (`mode=ro`).
    ReadOnly,
    /// Read-only directory and no WAL file to honour: SQLite cannot create the -shm file a WAL
    /// reader needs, and nothing can be writing, so the file is opened `immutable=1`.
    Immutable,
}

/// Every live pool of the process, for the fork handlers.
static REGISTRY: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());
static FORK_HANDLERS: AtomicBool = AtomicBool::new(false);

fn register(shared: &Arc<Shared>) {
    // Running either handler twice is harmless: a second close finds nothing idle, and the flag
    // is computed again from the same counts.
    crate::process::register_fork_handlers(&FORK_HANDLERS, Some(before_fork), Some(after_fork_in_parent), None);
    let mut pools = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    pools.retain(|w| w.strong_count() > 0);
    pools.push(Arc::downgrade(shared));
}

fn each_pool(f: impl Fn(&Shared)) {
    let pools = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    for shared in pools.iter().filter_map(Weak::upgrade) {
        f(&shared);
    }
}

/// Runs in the forking thread just before `fork()`: close every idle connection, and note the
/// pools that have one in use elsewhere.
extern "C" fn before_fork() {
    let _ = std::panic::catch_unwind(|| {
        each_pool(|shared| {
            let closing = {
                let mut idle = shared.lock();
                idle.busy_at_fork = idle.checked_out > 0;
                std::mem::take(&mut idle.connections)
            };
            drop(closing); // sqlite3_close, outside the lock
        })
    });
}

extern "C" fn after_fork_in_parent() {
    let _ = std::panic::catch_unwind(|| each_pool(|shared| shared.lock().busy_at_fork = false));
}

struct Idle {
    pid: u32,
    connections: Vec<Connection>,
    /// Connections of this process currently checked out.
    checked_out: usize,
    /// Set by the fork handler when a connection was in use during fork(); a child that sees it
    /// poisons its copy of the pool.
    busy_at_fork: bool,
    poisoned: bool,
    /// Serializes this process's writers before they reach SQLite: waiting on a mutex wakes a
    /// writer the moment the lock frees, where SQLite's busy handler sleeps and polls. Kept per
    /// pid: a fork can happen while another thread holds it, and the child must not inherit that.
    writer: Arc<Mutex<()>>,
    /// This process's commit batcher for the file (per pid, like `writer`).
    group: Arc<GroupCommit>,
}

impl Idle {
    /// Forget what a parent process left behind (after fork).
    fn adopt(&mut self, pid: u32) {
        if self.pid != pid {
            for inherited in self.connections.drain(..) {
                std::mem::forget(inherited);
            }
            self.poisoned |= self.busy_at_fork;
            self.busy_at_fork = false;
            self.checked_out = 0;
            self.pid = pid;
            self.writer = Arc::new(Mutex::new(()));
            self.group = Arc::new(GroupCommit::default());
        }
    }
}

/// A connection checked out of a pool; goes back when dropped.
pub struct PooledConnection<'a> {
    pool: &'a Pool,
    pid: u32,
    conn: ManuallyDrop<Connection>,
}

impl Pool {
    /// A pool for `path`. Opens one connection right away so that a bad path fails here. A file
    /// or directory that cannot be written is opened read-only instead: reads work, writes are
    /// refused with `ReadOnly` (see [`Pool::read_only`]).
    pub fn open(path: &Path, max_version: i64, options: &StoreOptions) -> Result<(Pool, Connection)> {
        let (mode, first) = open_first(path, max_version, options)?;
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            mode,
            max_version,
            options: options.clone(),
            idle: Mutex::new(Idle {
                pid: crate::process::id(),
                connections: Vec::new(),
                checked_out: 0,
                busy_at_fork: false,
                poisoned: false,
                writer: Arc::new(Mutex::new(())),
                group: Arc::new(GroupCommit::default()),
            }),
        });
        register(&shared);
        Ok((Pool { shared }, first))
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.shared.lock()
    }

    /// Hand back a connection that was opened outside the pool (the one `open` returned).
    pub fn put(&self, conn: Connection) {
        let mut idle = self.lock();
        if idle.pid == crate::process::id() && (idle.connections.len() as u64) < self.shared.options.max_idle_connections {
            idle.connections.push(conn);
        }
    }

    pub fn get(&self) -> Result<PooledConnection<'_>> {
        let pid = crate::process::id();
        let reused = {
            let mut idle = self.lock();
            idle.adopt(pid);
            if idle.poisoned {
                return Err(Error::new(
                    ErrorKind::Database,
                    format!(
                        "{} was in use by another thread when this process was forked; SQLite state \
                         cannot be carried into a child: open a new store in the child",
                        self.shared.path.display()
                    ),
                ));
            }
            idle.checked_out += 1;
            idle.connections.pop()
        };
        let conn = match reused {
            Some(c) => c,
            None => match open_with(&self.shared.path, self.shared.mode, self.shared.max_version, &self.shared.options) {
                Ok(c) => c,
                Err(e) => {
                    self.lock().checked_out -= 1;
                    return Err(e);
                }
            },
        };
        Ok(PooledConnection { pool: self, pid, conn: ManuallyDrop::new(conn) })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Idle> {
        // The guarded data is plain bookkeeping; a panic elsewhere cannot leave it inconsistent.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Pool {
    /// This process's writer lock for the file (see [`Idle::writer`]).
    pub fn writer(&self) -> Arc<Mutex<()>> {
        let mut idle = self.lock();
        idle.adopt(crate::process::id());
        idle.writer.clone()
    }

    /// Why this file refuses writes, when it was opened read-only.
    pub fn read_only(&self) -> Option<Error> {
        (self.shared.mode != Mode::ReadWrite).then(|| {
            Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "{} is read-only (the file or its directory cannot be written): it was opened for \
                     reading only, and writes are refused",
                    self.shared.path.display()
                ),
            )
        })
    }

    /// The file this pool opens.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Ok when the file may be written.
    pub fn check_writable(&self) -> Result<()> {
        self.read_only().map_or(Ok(()), Err)
    }

    /// This process's group-commit batcher for the file.
    pub fn group(&self) -> Arc<GroupCommit> {
        let mut idle = self.lock();
        idle.adopt(crate::process::id());
        idle.group.clone()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut idle = self.lock();
        if idle.pid != crate::process::id() {
            for inherited in idle.connections.drain(..) {
                std::mem::forget(inherited);
            }
        }
    }
}

impl Deref for PooledConnection<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Drop for PooledConnection<'_> {
    fn drop(&mut self) {
        // SAFETY: `conn` is taken exactly once, here.
        let conn = unsafe { ManuallyDrop::take(&mut self.conn) };
        if crate::process::id() != self.pid {
            std::mem::forget(conn); // checked out before a fork: not ours to close
            return;
        }
        let mut idle = self.pool.lock();
        idle.checked_out = idle.checked_out.saturating_sub(1);
        // A connection left inside a transaction must not be reused: that is how the legacy app
        // locked its database for everyone after one failed insert.
        if conn.is_autocommit()
            && idle.pid == self.pid
            && (idle.connections.len() as u64) < self.pool.shared.options.max_idle_connections
        {
            idle.connections.push(conn);
            return;
        }
        drop(idle);
        drop(conn); // closes it (and rolls back an open transaction)
    }
}

/// With `create: false`: the file must be there (a mistyped path is an error, not a new store).
pub fn check_exists(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(Error::new(ErrorKind::CantOpen, format!("{} is not a file", path.display()))),
        Err(e) => Err(Error::new(
            ErrorKind::CantOpen,
            format!(
                "{}: {e}; the store is not created when it is missing (create: false; `tms init` creates one)",
                path.display()
            ),
        )),
    }
}

/// Refuse a file newer than the library before anything is written to either file of a store:
/// a read of `user_version` (a missing file is new, so fine).
pub fn check_version(path: &Path, max_version: i64) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let Ok(conn) = Connection::open_with_flags(
        file_uri(path, "mode=ro")?,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        return Ok(()); // unreadable: the real open reports why
    };
    match conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)) {
        Ok(version) if version > max_version => Err(super::schema::too_new(path, version, max_version)),
        _ => Ok(()),
    }
}

/// Sync the file's WAL to disk now, through SQLite's own file object (so any VFS in between sees
/// it as the sync it is). At NORMAL a commit reaches the disk only at the next checkpoint; this
/// is how a commit in one file is made durable before a dependent commit in the other (see
/// `settle`). Every connection of a pool is in WAL mode and has read the file, so its WAL is open.
pub fn sync_wal(pool: &Pool) -> Result<()> {
    use rusqlite::ffi;
    let conn = pool.get()?;
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: `conn` is held for the whole call, so its handle and the pager's WAL file object
    // stay alive; JOURNAL_POINTER writes one `sqlite3_file*` into `file`; xSync is called on that
    // object with a documented flag, as SQLite's pager itself does.
    let rc = unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_JOURNAL_POINTER,
            (&raw mut file).cast(),
        );
        if rc != ffi::SQLITE_OK || file.is_null() || (*file).pMethods.is_null() {
            return Err(Error::new(ErrorKind::Database, format!("{}: no WAL file open to sync", pool.path().display())));
        }
        match (*(*file).pMethods).xSync {
            Some(sync) => sync(file, ffi::SQLITE_SYNC_NORMAL),
            None => ffi::SQLITE_MISUSE,
        }
    };
    if rc != ffi::SQLITE_OK {
        return Err(Error::new(ErrorKind::Database, format!("{}: syncing the WAL failed (SQLite code {rc})", pool.path().display())));
    }
    Ok(())
}

/// Copy the database behind `conn` to `to` with SQLite's online backup: a few pages at a time,
/// letting writers go on between steps, restarting when one changes a page already copied, so
/// the copy is one consistent state of the file. The copy is then checked (integrity_check).
pub fn backup(conn: &Connection, to: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    if to.exists() {
        return Err(Error::invalid(format!("{} exists already: back up into a new directory", to.display())));
    }
    let mut dest = Connection::open(to).map_err(|e| Error::from(e).context(&format!("cannot create {}", to.display())))?;
    // EXTRA: the commit also syncs the directory after deleting its rollback journal. At FULL a
    // power cut right after the backup could bring the journal back (its deletion not yet on
    // disk) and the next open would roll the whole copy back to an empty file; the same sync
    // makes the new file's own directory entry durable.
    dest.pragma_update(None, "synchronous", "EXTRA")?;
    {
        let backup = rusqlite::backup::Backup::new(conn, &mut dest)?;
        loop {
            let step = backup.step(256)?;
            let p = backup.progress();
            progress(u64::try_from(p.pagecount - p.remaining).unwrap_or(0), u64::try_from(p.pagecount).unwrap_or(0));
            match step {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => {}
                // The source is busy this instant: wait a little, as the SQLite docs advise.
                _ => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }
    let check: String = dest.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(Error::new(ErrorKind::Corrupt, format!("the backup {} fails integrity_check: {check}", to.display())));
    }
    Ok(())
}

/// One read-write connection with the library's settings (tests look at what they are).
pub fn open_connection(path: &Path, options: &StoreOptions) -> Result<Connection> {
    open_with(path, Mode::ReadWrite, i64::MAX, options)
}

/// Open the first connection: read-write when possible, else read-only (see [`Mode`]).
fn open_first(path: &Path, max_version: i64, options: &StoreOptions) -> Result<(Mode, Connection)> {
    let writable_err = match open_with(path, Mode::ReadWrite, max_version, options) {
        Ok(conn) if !conn.is_readonly(MAIN_DB).unwrap_or(false) => return Ok((Mode::ReadWrite, conn)),
        // SQLite fell back to reading only (the file is write-protected): reopen as such, so
        // that the pool's later connections open the same way.
        Ok(_) => None,
        Err(e) if e.kind == ErrorKind::ReadOnly && path.is_file() => Some(e),
        Err(e) => return Err(e),
    };
    match open_with(path, Mode::ReadOnly, max_version, options) {
        Ok(conn) => Ok((Mode::ReadOnly, conn)),
        Err(e) if matches!(e.kind, ErrorKind::SchemaTooNew | ErrorKind::NotADatabase) => Err(e),
        // A WAL reader needs the -shm file; in a read-only directory it cannot be created.
        // With no -wal file there is nothing a writer left behind, and no writer can start.
        Err(e) if !sibling(path, "-wal").exists() => open_with(path, Mode::Immutable, max_version, options)
            .map(|c| (Mode::Immutable, c))
            .map_err(|_| writable_err.unwrap_or(e)),
        Err(e) => Err(writable_err.unwrap_or(e)),
    }
}

/// `path` with `suffix` appended (SQLite's -wal and -shm files).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A `file:` URI for `path` with query parameters; characters with a meaning in URIs are
/// percent-encoded so that any path works.
fn file_uri(path: &Path, params: &str) -> Result<String> {
    let absolute = std::path::absolute(path).map_err(|e| Error::new(ErrorKind::CantOpen, format!("{}: {e}", path.display())))?;
    let mut uri = String::from("file:");
    for b in absolute.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'.' | b'_' | b'~' => uri.push(*b as char),
            other => uri.push_str(&format!("%{other:02X}")),
        }
    }
    uri.push('?');
    uri.push_str(params);
    Ok(uri)
}

/// Open one connection with the library's settings, read back where SQLite may refuse them.
/// The schema version is checked before anything is written: a newer file is left untouched.
fn open_with(path: &Path, mode: Mode, max_version: i64, options: &StoreOptions) -> Result<Connection> {
    check_path(path)?;
    let base = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let opened = match mode {
        Mode::ReadWrite if options.create => Connection::open_with_flags(
            file_uri(path, "mode=rwc")?,
            base | OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        ),
        // Not even a file removed since the check is created.
        Mode::ReadWrite => Connection::open_with_flags(file_uri(path, "mode=rw")?, base | OpenFlags::SQLITE_OPEN_READ_WRITE),
        Mode::ReadOnly => Connection::open_with_flags(file_uri(path, "mode=ro")?, base | OpenFlags::SQLITE_OPEN_READ_ONLY),
        Mode::Immutable => {
            Connection::open_with_flags(file_uri(path, "mode=ro&immutable=1")?, base | OpenFlags::SQLITE_OPEN_READ_ONLY)
        }
    };
    let conn = opened
        .map_err(|e| explain_read_only(path, Error::from(e)).context(&format!("cannot open {}", path.display())))?;
    configure(&conn, path, mode, max_version, options)
        .map_err(|e| explain_read_only(path, e).context(&format!("cannot set up {}", path.display())))?;
    Ok(conn)
}

/// SQLite's own message for a missing directory or a directory path is "unable to open database
/// file"; say which it is.
fn check_path(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::invalid("database path is empty"));
    }
    if path.is_dir() {
        return Err(Error::new(
            ErrorKind::CantOpen,
            format!("cannot open {}: it is a directory, not a database file", path.display()),
        ));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::new(
            ErrorKind::CantOpen,
            format!("cannot open {}: directory {} does not exist", path.display(), dir.display()),
        ));
    }
    Ok(())
}

/// SQLite reports a read-only file or directory as "unable to open" or "attempt to write a
/// readonly database"; when the file system says it is read-only, say that instead.
fn explain_read_only(path: &Path, err: Error) -> Error {
    if !matches!(err.kind, ErrorKind::CantOpen | ErrorKind::ReadOnly | ErrorKind::Database) {
        return err;
    }
    let writable = |p: &Path| {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return true };
        // SAFETY: a valid NUL-terminated path; access() only reads it.
        unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.exists() && !writable(path) {
        Error::new(ErrorKind::ReadOnly, format!("{} is read-only ({})", path.display(), err.message))
    } else if !writable(dir) {
        Error::new(
            ErrorKind::ReadOnly,
            format!("directory {} is read-only: SQLite needs to create its -wal and -shm files there ({})", dir.display(), err.message),
        )
    } else {
        err
    }
}

fn configure(conn: &Connection, path: &Path, mode: Mode, max_version: i64, options: &StoreOptions) -> Result<()> {
    super::busy::set_timeout(conn, options.busy_timeout())?;
    // Fail fast on a file that is not a database, before any pragma writes to it.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > max_version {
        return Err(super::schema::too_new(path, version, max_version));
    }
    let writable = mode == Mode::ReadWrite && !conn.is_readonly(MAIN_DB)?;
    if writable {
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::new(
                ErrorKind::Database,
                format!("the database refused WAL mode (journal_mode is {mode})"),
            ));
        }
        conn.pragma_update(None, "synchronous", options.synchronous.pragma_value())?;
        conn.pragma_update(None, "journal_size_limit", options.journal_size_limit_bytes)?;
        if options.max_page_count > 0 {
            conn.pragma_update(None, "max_page_count", options.max_page_count as i64)?;
        }
    } else {
        // Belt and braces: nothing this connection runs may write.
        conn.pragma_update(None, "query_only", "ON")?;
    }
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    if fk != 1 {
        return Err(Error::new(ErrorKind::Database, "SQLite refused to enable foreign keys"));
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}
