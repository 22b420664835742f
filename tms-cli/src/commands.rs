//! What each command does, over the library's Rust API.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use tms::model::{AuditFilter, StoreCounts};
use tms::{Secret, Store, StoreOptions};

use crate::cli::{Cli, Command, Format, StoreArgs};
use crate::progress;

/// How a command ended when it did not fail.
pub enum Outcome {
    Ok,
    /// The command ran and found something wrong (exit status 1).
    ProblemFound,
}

/// A failure: the library's (named as its C status), or the terminal's.
pub enum Failure {
    Store(tms::Error),
    Io(std::io::Error),
    Usage(String),
}

impl Failure {
    pub fn kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Failure::Io(e) => Some(e.kind()),
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Store(e) => write!(f, "TMS_STATUS_{}: {}", e.kind.code_name(), e.message),
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Usage(m) => f.write_str(m),
        }
    }
}

impl From<tms::Error> for Failure {
    fn from(e: tms::Error) -> Self {
        Failure::Store(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

fn options(args: &StoreArgs) -> Result<StoreOptions> {
    // Reading commands open existing stores only: a mistyped path must not become a new store.
    let mut options = StoreOptions { create: false, ..StoreOptions::default() };
    if let Some(path) = &args.hmac_key_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("cannot read --hmac-key-file {}: {e}", path.display())))?;
        options.audit_hmac_key = Some(Secret(text.lines().next().unwrap_or("").to_owned()));
    }
    Ok(options)
}

fn is_url(location: &str) -> bool {
    let l = location.to_ascii_lowercase();
    l.starts_with("postgresql://") || l.starts_with("postgres://")
}

fn open(jobs: &str, audit: Option<&str>, options: &StoreOptions) -> Result<Store> {
    Ok(Store::open_location(jobs, if is_url(jobs) { None } else { audit }, options)?)
}

pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| Failure::Io(e.into()))?;
    writeln!(out)?;
    Ok(())
}

pub fn run(cli: &Cli) -> Result<Outcome> {
    let mut options = options(&cli.store)?;
    if let Command::Recover { older_than: Some(secs) } = &cli.command {
        // Opening recovers with this age already; a live call must be shorter than it.
        options.interrupted_after_s = *secs;
        options.request_timeout_s = options.request_timeout_s.min(secs - 1);
        options.connect_timeout_s = options.connect_timeout_s.min(options.request_timeout_s);
    }
    if let Command::Keygen { out, name } = &cli.command {
        return crate::checkpoint::keygen(out, name.as_deref());
    }
    if let Command::Init = &cli.command {
        return init(&cli.store, &options);
    }
    // Usage errors before the store is opened.
    let anchor = match &cli.command {
        Command::VerifyAudit { anchor: Some(text), .. } => Some(parse_anchor(text)?),
        _ => None,
    };
    let store = open(&cli.store.jobs_db, Some(&cli.store.audit_db), &options)?;
    match &cli.command {
        Command::Init => unreachable!("handled above"),
        Command::Keygen { .. } => unreachable!("handled before the store is opened"),
        Command::VerifyAudit { checkpoint: Some(checkpoint), public_key: Some(public_key), .. } => {
            crate::checkpoint::verify(&store, checkpoint, public_key)
        }
        Command::VerifyAudit { .. } => verify_audit(&store, anchor.as_ref().map(|(s, h)| (*s, h.as_str()))),
        Command::Checkpoint { signing_key, previous } => crate::checkpoint::sign(&store, signing_key, previous.as_deref()),
        Command::AdoptUnchained { reason } => adopt_unchained(&store, reason),
        Command::Recover { .. } => {
            let now = store.recover_interrupted()?;
            print_json(&serde_json::json!({ "recovered": store.recovered_at_open() + now }))?;
            Ok(Outcome::Ok)
        }
        Command::Jobs { user, limit } => {
            let mut out = std::io::stdout().lock();
            for job in store.get_user_jobs(user, *limit)? {
                serde_json::to_writer(&mut out, &job).map_err(|e| Failure::Io(e.into()))?;
                writeln!(out)?;
            }
            Ok(Outcome::Ok)
        }
        Command::Audit { user, action, customer, limit, format } => {
            let filter = AuditFilter { user_id: user.as_deref(), action_type: action.as_deref(), customer_id: customer.as_deref() };
            let rows = store.audit_trail(&filter, *limit)?;
            write_audit(&rows, *format)?;
            Ok(Outcome::Ok)
        }
        Command::Backup { dest_dir } => backup(&store, dest_dir, &options),
        Command::Copy { to, to_audit_db } => copy(&store, to, to_audit_db.as_deref(), &options),
        Command::Migrate => {
            // Opening migrated it, or refused with the reason (exit 2), or kept an older schema
            // the library can still work on: that is not a migration.
            schema_current(&store)?;
            print_json(&serde_json::json!({ "migrated": true }))?;
            Ok(Outcome::Ok)
        }
        Command::Stats => {
            let counts: StoreCounts = store.counts()?;
            let mut stats = serde_json::to_value(&counts).map_err(|e| Failure::Io(e.into()))?;
            if let Some(fields) = stats.as_object_mut() {
                fields.insert("sqlite_version".into(), tms::sqlite_version().into());
            }
            print_json(&stats)?;
            Ok(Outcome::Ok)
        }
    }
}

/// `tms init`: the one command that creates a store.
fn init(args: &StoreArgs, options: &StoreOptions) -> Result<Outcome> {
    let files: Vec<&str> = if is_url(&args.jobs_db) { Vec::new() } else { vec![&args.jobs_db, &args.audit_db] };
    let missing: Vec<&str> = files.iter().copied().filter(|f| !Path::new(f).exists()).collect();
    let options = StoreOptions { create: true, ..options.clone() };
    let store = open(&args.jobs_db, Some(&args.audit_db), &options)?;
    schema_current(&store)?;
    print_json(&serde_json::json!({ "initialized": true, "created": missing }))?;
    Ok(Outcome::Ok)
}

/// Exit 2 when the store was opened on an older schema it left as it was (a role that may not
/// upgrade it): `migrate` and `init` must not report success for a schema they did not upgrade.
fn schema_current(store: &Store) -> Result<()> {
    match store.schema_kept() {
        None => Ok(()),
        Some((found, needed)) => Err(Failure::Store(tms::Error::new(
            tms::ErrorKind::CantOpen,
            format!(
                "the store has schema version {found} and this library's is {needed}; this role (or a read-only \
                 server) may not change the schema: run `tms migrate` with the schema owner's URL on the primary \
                 (nothing was changed)"
            ),
        ))),
    }
}

fn parse_anchor(text: &str) -> Result<(i64, String)> {
    text.split_once(':')
        .and_then(|(s, h)| Some((s.parse::<i64>().ok()?, h.to_owned())))
        .ok_or_else(|| Failure::Usage(format!("--anchor {text:?} is not SEQ:HASH")))
}

fn verify_audit(store: &Store, anchor: Option<(i64, &str)>) -> Result<Outcome> {
    let bar = progress::bar("verifying the audit log", None, "rows");
    let report = store.verify_audit_with_progress(anchor, |n| bar.set_position(n))?;
    bar.finish_and_clear();
    print_json(&report)?;
    Ok(if report.ok { Outcome::Ok } else { Outcome::ProblemFound })
}

fn adopt_unchained(store: &Store, reason: &str) -> Result<Outcome> {
    match store.adopt_unchained(reason) {
        Ok(adoption) => {
            print_json(&adoption)?;
            Ok(Outcome::Ok)
        }
        // A log adoption must not paper over: a problem found, as verify-audit's exit 1.
        Err(e) if e.kind == tms::ErrorKind::AuditChainBroken => {
            eprintln!("tms: {}", Failure::Store(e));
            Ok(Outcome::ProblemFound)
        }
        Err(e) => Err(e.into()),
    }
}

fn write_audit(rows: &[tms::model::AuditRow], format: Format) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Jsonl => {
            for row in rows {
                serde_json::to_writer(&mut out, row).map_err(|e| Failure::Io(e.into()))?;
                writeln!(out)?;
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(["id", "user_id", "action_type", "customer_ids", "timestamp", "ip_address", "status", "error_message", "duration_ms"])
                .map_err(csv_failure)?;
            for r in rows {
                let ids = match &r.customer_ids {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let cells = [
                    r.id.to_string(),
                    r.user_id.clone(),
                    r.action_type.clone(),
                    ids,
                    r.timestamp.clone().unwrap_or_default(),
                    r.ip_address.clone().unwrap_or_default(),
                    r.status.as_ref().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                    r.error_message.clone().unwrap_or_default(),
                    r.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
                ];
                w.write_record(cells.iter().map(|c| spreadsheet_safe(c).into_owned())).map_err(csv_failure)?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// A CSV cell as a spreadsheet cannot run it: a cell starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return is a formula to Excel, LibreOffice and Google Sheets (`=HYPERLINK(...)` in a
/// cluster's message would be a live link), so it gets a leading `'` (OWASP's rule for CSV
/// injection). Every other cell is written as it is; the JSON lines format is always exact.
fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn csv_failure(e: csv::Error) -> Failure {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Failure::Io(io),
        other => Failure::Usage(format!("{other:?}")),
    }
}

fn backup(store: &Store, dir: &Path, options: &StoreOptions) -> Result<Outcome> {
    let bar = progress::bar("backing up", Some(0), "pages");
    let files = store.backup_to(dir, |done, all| {
        bar.set_length(all);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    // The copy is a store of its own: its audit log must verify as the original's does.
    let copy = Store::open(&files[0], &files[1], options)?;
    let verification = copy.verify_audit(None)?;
    print_json(&serde_json::json!({
        "files": files,
        "integrity_check": "ok",
        "audit_verification": verification,
    }))?;
    Ok(if verification.ok { Outcome::Ok } else { Outcome::ProblemFound })
}

fn copy(store: &Store, to: &str, to_audit: Option<&Path>, options: &StoreOptions) -> Result<Outcome> {
    let audit: Option<PathBuf> = if is_url(to) {
        None
    } else {
        Some(to_audit.map(Path::to_path_buf).unwrap_or_else(|| Path::new(to).with_file_name("audit.db")))
    };
    let audit_text = audit.as_ref().map(|p| p.to_string_lossy().into_owned());
    // The destination may be new: copying is one of the two ways to create a store.
    let dst = open(to, audit_text.as_deref(), &StoreOptions { create: true, ..options.clone() })?;
    let bar = progress::bar("copying", None, "rows");
    let report = store.copy_into_with_progress(&dst, |what, done| {
        bar.set_message(format!("copying {what}"));
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    print_json(&report)?;
    Ok(if report.audit_verification.ok { Outcome::Ok } else { Outcome::ProblemFound })
}
