//! The command line, as clap reads it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The operator's tool for a tms-core store: verify the audit log, recover interrupted jobs, back
/// up a live store, copy it (onto PostgreSQL), look at jobs and audit rows.
///
/// Every command but `init` (and `copy`'s destination) opens an existing store only: a missing
/// file, or a PostgreSQL schema without the store's tables, exits 2 naming it, and nothing is
/// created. `tms init` creates a store.
///
/// Exit status: 0 success, 1 a check found a problem, 2 a usage error or a store that could not
/// be opened (a missing one included).
#[derive(Debug, Parser)]
#[command(name = "tms", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Which store, and how to open it.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// jobs.db's path, or a PostgreSQL URL (postgresql://user@host/db) for the whole store.
    #[arg(long, global = true, env = "TMS_JOBS_DB", hide_env_values = true, default_value = "jobs.db", value_name = "PATH|URL")]
    pub jobs_db: String,
    /// audit.db's path (not used with a PostgreSQL URL).
    #[arg(long, global = true, env = "TMS_AUDIT_DB", default_value = "audit.db", value_name = "PATH")]
    pub audit_db: String,
    /// A file whose first line is the audit chain's HMAC key (needed to verify or write a keyed
    /// log); the drop-in modules' TMS_AUDIT_HMAC_KEY_FILE is read when it is not given.
    #[arg(long, global = true, env = "TMS_AUDIT_HMAC_KEY_FILE", value_name = "FILE")]
    pub hmac_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a store: both SQLite files (--jobs-db, --audit-db), or the store's tables in the
    /// PostgreSQL schema of the URL's search path (run it with the schema owner's URL). A store
    /// that exists already is brought up to this version, as `migrate` does. Prints which files
    /// it created as JSON. The only command (with `copy --to`) that creates anything.
    Init,
    /// Check the audit log's hash chain; print the verification as JSON; exit 1 when it is not ok.
    ///
    /// With --checkpoint and --public-key: also check that the log still extends a signed
    /// checkpoint (`tms checkpoint`): exit 1 when its signature does not verify with the key, it is
    /// malformed or of another log, or the log was cut, changed or rewritten up to it.
    VerifyAudit {
        /// A head stored earlier (`SEQ:HASH`, from a previous run's "head"): a cut tail shows.
        #[arg(long, value_name = "SEQ:HASH", conflicts_with = "checkpoint")]
        anchor: Option<String>,
        /// A signed checkpoint (`tms checkpoint`'s output) kept where this host cannot rewrite it.
        #[arg(long, value_name = "FILE", requires = "public_key")]
        checkpoint: Option<PathBuf>,
        /// The public key file (`tms keygen`'s tms-checkpoint.pub) that signed --checkpoint.
        #[arg(long, value_name = "FILE", requires = "checkpoint")]
        public_key: Option<PathBuf>,
    },
    /// Write a new Ed25519 key pair for signed audit checkpoints into DIR: tms-checkpoint.key
    /// (private, mode 0600: keep it off the dashboard host if you can, see the README) and
    /// tms-checkpoint.pub (public). Refuses to overwrite either file. Prints the public key.
    Keygen {
        /// The directory (created, mode 0700, when missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The log's name, the first line of every checkpoint (1 to 128 printable ASCII
        /// characters without spaces or '+'); default: tms-audit.HOSTNAME.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Verify the whole audit log and print a signed checkpoint of its head (the log's name, the
    /// head's chain seq and hash, the UTC time, an Ed25519 signature line). Ship it somewhere the
    /// dashboard host cannot rewrite; `verify-audit --checkpoint` checks the log against it later.
    /// Exit 1 (nothing printed) when the log does not verify.
    Checkpoint {
        /// The private key file (`tms keygen`'s tms-checkpoint.key; /dev/stdin reads it from a
        /// pipe, e.g. through ssh, so it never rests on this host).
        #[arg(long, value_name = "FILE")]
        signing_key: PathBuf,
        /// The last checkpoint this key signed, as shipped: sign only if the log still extends
        /// it (exit 1 otherwise), so a log rewritten below it is never signed over.
        #[arg(long, value_name = "FILE")]
        previous: Option<PathBuf>,
    },
    /// After a rollback to the legacy code and forward again: adopt into the audit chain the
    /// unchained rows the legacy code appended (which verify-audit reports as inserted), wherever
    /// they sit, with one chained `audit_adopt_unchained` row naming how many, their ids and
    /// REASON. No row is changed. Prints what was adopted as JSON. Exit 1 (nothing written) when
    /// the log fails verification beyond its unchained rows; 2 when there is nothing to adopt,
    /// the reason is refused or a keyed log's --hmac-key-file is missing.
    AdoptUnchained {
        /// Why (one line, at most 1000 bytes), e.g. the rollback's ticket; recorded in the log.
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Mark FAILED the jobs IN_PROGRESS longer than SECONDS (left by a process that died
    /// mid-call); print how many, those that opening the store marked included.
    Recover {
        /// Age in seconds (default: the store's interrupted_after_s, 600).
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(2..=2_592_000))]
        older_than: Option<u64>,
    },
    /// A user's jobs, newest first, one JSON object per line.
    Jobs {
        /// Whose jobs.
        #[arg(long)]
        user: String,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(0..=100_000))]
        limit: i64,
    },
    /// Audit rows, newest first. In CSV a cell starting with `=`, `+`, `-`, `@`, a tab or a
    /// carriage return is written with a leading `'` (a spreadsheet would run it as a formula);
    /// JSON lines are exact.
    Audit {
        /// Only this user's rows.
        #[arg(long)]
        user: Option<String>,
        /// Only this action type.
        #[arg(long)]
        action: Option<String>,
        /// Only rows naming this customer ID (whole IDs).
        #[arg(long)]
        customer: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(0..=100_000))]
        limit: i64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
    },
    /// Consistent copies of both files in DEST_DIR, taken while the app keeps writing (SQLite's
    /// online backup); each copy passes integrity_check and the copy's audit log verifies.
    Backup {
        /// A directory without jobs.db and audit.db in it (created when missing).
        dest_dir: PathBuf,
    },
    /// Copy the whole store (jobs, customers, cache, audit log with its chain) into another one,
    /// e.g. onto PostgreSQL; safe to run again after an interruption. The destination is created
    /// when missing; one that holds anything that is not the source's (another store) is refused
    /// before anything is written.
    Copy {
        /// The destination: jobs.db's path, or a PostgreSQL URL (created when missing).
        #[arg(long, value_name = "PATH|URL")]
        to: String,
        /// The destination's audit.db (default: audit.db beside --to's file).
        #[arg(long, value_name = "PATH")]
        to_audit_db: Option<PathBuf>,
    },
    /// Counts as JSON: jobs by status, customers, audit rows, cache entries, and the SQLite
    /// version the library runs on.
    Stats,
    /// Bring an existing store's schema up to this version (every row kept); `init` creates a
    /// new one. On PostgreSQL run it with the schema owner's URL (the app's role may only use the
    /// schema; see the README's "Two roles"); opening a store does the same when its role may.
    Migrate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row, for spreadsheets: a cell starting with `=`, `+`, `-`, `@`, a tab or
    /// a carriage return gets a leading `'` so that no spreadsheet runs it as a formula (OWASP's
    /// rule for CSV injection); jsonl is exact.
    Csv,
}
