//! Helpers shared by the Rust integration tests: throw-away directories and fixture copies.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use tms::{Store, StoreOptions};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tms-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy").join(name)
}

/// Copy a legacy fixture into `dir` (fixtures are read-only; SQLite needs -wal/-shm beside them).
pub fn copy_fixture(dir: &TempDir, name: &str, as_name: &str) -> PathBuf {
    let to = dir.join(as_name);
    std::fs::copy(fixture(name), &to).unwrap();
    let mut perms = std::fs::metadata(&to).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&to, perms).unwrap();
    to
}

/// A job for `create_job`: `user`'s Trans-Begin for `cids`.
pub fn job<'a>(user: &'a str, cids: Vec<&'a str>) -> tms::model::NewJob<'a> {
    tms::model::NewJob { user_id: user, action_name: "Trans-Begin", cids, ..Default::default() }
}

/// A new store on fresh files in `dir`.
pub fn open_fresh(dir: &TempDir) -> Store {
    Store::open(dir.join("jobs.db"), dir.join("audit.db"), &StoreOptions::default()).unwrap()
}

/// A plain connection for looking at what the library wrote.
pub fn inspect(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

pub fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The first column of every row the query gives.
pub fn column<T: rusqlite::types::FromSql>(conn: &rusqlite::Connection, sql: &str) -> Vec<T> {
    conn.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// Every row of a table as text, for before/after comparisons.
pub fn dump(path: &Path, table: &str) -> Vec<String> {
    let conn = inspect(path);
    let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY rowid")).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        let cells: Vec<String> = (0..n)
            .map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap()))
            .collect();
        Ok(cells.join("|"))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Where the engine-agnostic suites run: SQLite files in a temp dir, or a fresh schema of the
/// PostgreSQL server in TMS_TEST_PG_URL (scripts/with-postgres.sh starts one). A missing server
/// fails loudly: the PostgreSQL suites never skip.
pub enum Location {
    Sqlite(TempDir),
    Postgres { url: String, admin_url: String, schema: String },
}

/// The PostgreSQL server's superuser URL for tests.
pub fn pg_url() -> String {
    std::env::var("TMS_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "TMS_TEST_PG_URL is not set: the PostgreSQL suites need a server. Run the tests through \
             scripts/with-postgres.sh (make test does), or point TMS_TEST_PG_URL at a server."
        )
    })
}

/// `url` with `key=value` added to its query string.
pub fn with_param(url: &str, param: &str) -> String {
    format!("{url}{}{param}", if url.contains('?') { '&' } else { '?' })
}

impl Location {
    pub fn sqlite(tag: &str) -> Location {
        Location::Sqlite(TempDir::new(tag))
    }

    /// A new schema, dropped when the location is dropped; the store's URL puts it first on the
    /// search path.
    pub fn postgres(tag: &str) -> Location {
        static N: AtomicUsize = AtomicUsize::new(0);
        let admin_url = pg_url();
        let schema = format!("t_{}_{}_{}", tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_"), std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).expect("connect to TMS_TEST_PG_URL");
        admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")).unwrap();
        let url = with_param(&admin_url, &format!("options=-csearch_path%3D{schema}"));
        Location::Postgres { url, admin_url, schema }
    }

    /// Both engines, for suites that run on each.
    pub fn each(tag: &str) -> Vec<Location> {
        vec![Location::sqlite(tag), Location::postgres(tag)]
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres { .. })
    }

    pub fn open(&self, options: &StoreOptions) -> tms::Result<Store> {
        match self {
            Location::Sqlite(dir) => Store::open(dir.join("jobs.db"), dir.join("audit.db"), options),
            Location::Postgres { url, .. } => Store::open_postgres(url, options),
        }
    }

    pub fn store(&self) -> Store {
        self.open(&StoreOptions::default()).unwrap()
    }

    /// The engine under the store, for contract tests below `Store` (a Set Action's steps).
    pub fn engine(&self) -> Box<dyn tms::storage::Engine> {
        match self {
            Location::Sqlite(dir) => Box::new(
                tms::storage::sqlite::SqliteEngine::open(&dir.join("jobs.db"), &dir.join("audit.db"), &StoreOptions::default()).unwrap(),
            ),
            Location::Postgres { url, .. } => {
                Box::new(tms::storage::postgres::PostgresEngine::open(url, &StoreOptions::default()).unwrap())
            }
        }
    }

    /// Run SQL as another writer of the store would; the database's error message if refused.
    pub fn try_execute(&self, sql: &str) -> Result<(), String> {
        match self {
            Location::Sqlite(dir) => {
                let target = if sql.contains("audit_log") { "audit.db" } else { "jobs.db" };
                inspect(&dir.join(target)).execute_batch(sql).map_err(|e| e.to_string())
            }
            Location::Postgres { url, .. } => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                client.batch_execute(sql).map_err(|e| e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned()))
            }
        }
    }

    /// Every row of every table of the store, as text, for before/after comparisons.
    pub fn snapshot(&self) -> Vec<String> {
        match self {
            Location::Sqlite(dir) => {
                let mut out = Vec::new();
                for file in ["jobs.db", "audit.db"] {
                    if !dir.join(file).exists() {
                        continue; // opening it would create it
                    }
                    let conn = inspect(&dir.join(file));
                    let tables: Vec<String> =
                        column(&conn, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
                    for t in tables {
                        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
                        let n = stmt.column_count();
                        let mut rows: Vec<String> = stmt
                            .query_map([], |r| {
                                Ok((0..n).map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap())).collect::<Vec<_>>().join("|"))
                            })
                            .unwrap()
                            .map(|row| format!("{file}/{t}: {}", row.unwrap()))
                            .collect();
                        rows.sort();
                        out.extend(rows);
                    }
                }
                out
            }
            Location::Postgres { url, .. } => {
                // The store's schema is first on the URL's search path (its name may be truncated).
                let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
                let tables: Vec<String> = c
                    .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1", &[])
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let mut out = Vec::new();
                for t in tables {
                    for r in c.query(&format!("SELECT t::text FROM {t} t ORDER BY 1"), &[]).unwrap() {
                        out.push(format!("{t}: {}", r.get::<_, String>(0)));
                    }
                }
                out
            }
        }
    }

    /// Run SQL as another writer of the store would (an attacker with the file or the server).
    pub fn execute(&self, sql: &str) {
        match self {
            Location::Sqlite(dir) => {
                let target = if sql.contains("audit_log") { "audit.db" } else { "jobs.db" };
                inspect(&dir.join(target)).execute_batch(sql).unwrap();
            }
            Location::Postgres { url, .. } => {
                postgres::Client::connect(url, postgres::NoTls).unwrap().batch_execute(sql).unwrap();
            }
        }
    }
}

impl Drop for Location {
    fn drop(&mut self) {
        if let Location::Postgres { admin_url, schema, .. } = self {
            if let Ok(mut admin) = postgres::Client::connect(admin_url, postgres::NoTls) {
                let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        }
    }
}
