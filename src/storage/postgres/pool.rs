//! Open connections to the PostgreSQL server, shared by the threads of one process.
//!
//! Each `postgres::Client` owns a small runtime and its socket. A child forked after open must
//! never use or drop one of its parent's: dropping it would send Terminate on the parent's
//! socket. So the pool remembers the pid that opened its clients; in a child every inherited
//! client is forgotten (leaked, never closed) and new ones are opened.

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};

use postgres::{Client, GenericClient, Statement};

use super::location::Location;
use super::tls;
use super::pg_error;
use crate::error::Result;
use crate::options::StoreOptions;

/// How long a connection that just failed gets to answer an empty query before it counts as lost.
const LIVENESS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A connection's prepared statements, by SQL text (prepared once per connection).
#[derive(Default)]
pub struct Cache(HashMap<&'static str, Statement>);

impl Cache {
    /// The statement for `sql` on this connection (or a transaction of it), prepared on first use.
    pub fn prepare(&mut self, c: &mut impl GenericClient, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = c.prepare(sql).map_err(pg_error)?;
        self.0.insert(sql, s.clone());
        Ok(s)
    }
}

/// A connection with its prepared statements.
pub struct Conn {
    pub client: Client,
    pub cache: Cache,
}

struct Idle {
    pid: u32,
    clients: Vec<Conn>,
}

pub struct Pool {
    location: Location,
    session_setup: String,
    max_idle: usize,
    idle: Mutex<Idle>,
}

/// A connection checked out of the pool; goes back when dropped (unless the process forked, or
/// it was lost: see [`Pooled::lost`]).
pub struct Pooled<'a> {
    pool: &'a Pool,
    pid: u32,
    conn: ManuallyDrop<Conn>,
    /// Set once the connection failed: it is closed, never handed out again.
    lost: bool,
}

impl Pool {
    /// A pool for the server; one connection is opened at once so that a bad URL, a wrong
    /// password or an unreachable server fails here.
    pub fn open(location: Location, options: &StoreOptions) -> Result<(Pool, Conn)> {
        // synchronous FULL: a commit returns once it is durable on the server; NORMAL: it may
        // return before, and the last commits can be lost in a server crash (never corrupted).
        let sync = match options.synchronous {
            crate::Synchronous::Full => "on",
            crate::Synchronous::Normal => "off",
        };
        let session_setup = format!(
            "SET synchronous_commit = {sync}; SET lock_timeout = {}; SET application_name = 'tms-core'",
            options.busy_timeout_ms
        );
        let pool = Pool {
            location,
            session_setup,
            max_idle: usize::try_from(options.max_idle_connections).unwrap_or(8),
            idle: Mutex::new(Idle { pid: crate::process::id(), clients: Vec::new() }),
        };
        let first = pool.connect()?;
        Ok((pool, first))
    }

    /// Keep every session of the pool (this first one and those opened later) on `schema` alone:
    /// `SET search_path` to it, so that no other schema of the URL's path (a `public` holding
    /// tables of the same names, say) serves the store's tables, and pg_catalog, searched first
    /// implicitly, keeps its functions.
    pub fn pin_search_path(&mut self, schema: &str, first: &mut Conn) -> Result<()> {
        let set = format!("; SET search_path = \"{}\"", schema.replace('"', "\"\""));
        first.client.batch_execute(&set[2..]).map_err(|e| self.scrubbed(pg_error(e)))?;
        self.session_setup.push_str(&set);
        Ok(())
    }

    fn connect(&self) -> Result<Conn> {
        let shown = self.location.shown();
        let mut client = match tls::connector(&self.location.tls)? {
            None => self.location.config.connect(postgres::NoTls),
            Some(tls) => self.location.config.connect(tls),
        }
        .map_err(|e| self.scrubbed(pg_error(e).context(&format!("cannot connect to {shown}"))))?;
        client
            .batch_execute(&self.session_setup)
            .map_err(|e| self.scrubbed(pg_error(e).context(&format!("cannot set up {shown}"))))?;
        Ok(Conn { client, cache: Cache::default() })
    }

    /// `e` without the URL's password in any spelling (a driver's message may quote a host or
    /// a user name that a sloppy URL mixed with it).
    fn scrubbed(&self, mut e: crate::error::Error) -> crate::error::Error {
        e.message = self.location.scrub(&e.message);
        e
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forget what a parent process left behind.
    fn adopt(idle: &mut Idle, pid: u32) {
        if idle.pid != pid {
            for inherited in idle.clients.drain(..) {
                std::mem::forget(inherited);
            }
            idle.pid = pid;
        }
    }

    /// Close every idle connection: one was found lost, so the server restarted, failed over or
    /// cut its sessions, and the others most likely went with it (each would cost a call its
    /// first attempt, a silently cut one seconds).
    pub fn drop_idle(&self) {
        let mut idle = self.lock();
        Self::adopt(&mut idle, crate::process::id());
        idle.clients.clear();
    }

    pub fn put(&self, conn: Conn) {
        let mut idle = self.lock();
        Self::adopt(&mut idle, crate::process::id());
        if idle.clients.len() < self.max_idle {
            idle.clients.push(conn);
        }
    }

    pub fn get(&self) -> Result<Pooled<'_>> {
        let pid = crate::process::id();
        let reused = {
            let mut idle = self.lock();
            Self::adopt(&mut idle, pid);
            idle.clients.pop()
        };
        let conn = match reused {
            // A connection the server dropped (restart, failover, pg_terminate_backend, an idle
            // reaper) is replaced, not handed out.
            Some(mut c) => {
                if still_open(&mut c.client) {
                    c
                } else {
                    self.connect()?
                }
            }
            None => self.connect()?,
        };
        Ok(Pooled { pool: self, pid, conn: ManuallyDrop::new(conn), lost: false })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }
}

/// Whether an idle connection is still open. The sync client reads its socket only inside a
/// call, so `is_closed()` alone stays false for a connection the server has closed since; one
/// non-blocking poll reads what the server sent meanwhile (the FATAL of a terminated backend,
/// the end of the stream), which closes the client's side. A connection silently cut (no FIN
/// or RST) still looks open here: the first statement on it fails, and the engine retries on a
/// fresh connection (see `PostgresEngine::write`).
fn still_open(client: &mut Client) -> bool {
    if client.is_closed() {
        return false;
    }
    // An error read here is the connection's end (a terminated backend's FATAL arrives as one).
    let polled = fallible_iterator::FallibleIterator::next(&mut client.notifications().iter()).is_ok();
    polled && !client.is_closed()
}

impl Pooled<'_> {
    /// After a failure: whether this connection is gone (closed, or not answering an empty
    /// query within a second: the server went away, was restarted, the backend was terminated,
    /// or the network drops its packets). A lost connection is marked and dropped instead of
    /// going back to the pool; a retry gets a fresh one.
    pub fn lost(&mut self) -> bool {
        if !self.lost && (self.conn.client.is_closed() || self.conn.client.is_valid(LIVENESS_WAIT).is_err()) {
            self.lost = true;
        }
        self.lost
    }

    /// Never hand this connection out again (e.g. a standby's after a failover: 25006).
    pub fn discard(&mut self) {
        self.lost = true;
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut idle = self.lock();
        if idle.pid != crate::process::id() {
            for inherited in idle.clients.drain(..) {
                std::mem::forget(inherited);
            }
        }
    }
}

impl Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        // SAFETY: `conn` is taken exactly once, here.
        let conn = unsafe { ManuallyDrop::take(&mut self.conn) };
        if crate::process::id() != self.pid {
            std::mem::forget(conn); // checked out before a fork: the parent's, not ours to close
            return;
        }
        if !self.lost && !conn.client.is_closed() {
            self.pool.put(conn);
        }
    }
}
