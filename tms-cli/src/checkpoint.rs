//! Signed audit checkpoints: `tms keygen`, `tms checkpoint`, `tms verify-audit --checkpoint`.
//! The private key's text is never printed, logged or quoted in an error.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use tms::Store;
use tms::audit_checkpoint::{PRIVATE_FILE, PUBLIC_FILE, generate_keys};

use crate::commands::{Failure, Outcome, Result, print_json};
use crate::progress;

/// The default key name: `tms-audit.` and the host's name, with anything a key name may not hold
/// left out.
fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_graphic() && *c != '+').take(100).collect();
    if host.is_empty() { "tms-audit".to_owned() } else { format!("tms-audit.{host}") }
}

fn write_new(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

pub fn keygen(dir: &Path, name: Option<&str>) -> Result<Outcome> {
    let name = name.map_or_else(default_name, str::to_owned);
    let keys = generate_keys(&name)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Failure::Usage(format!("cannot create --out {}: {e}", dir.display())))?;
    let (private, public) = (dir.join(PRIVATE_FILE), dir.join(PUBLIC_FILE));
    for path in [&private, &public] {
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(Failure::Usage(format!("{} exists: refusing to overwrite a key (move it away first)", path.display())));
        }
    }
    write_new(&private, &keys.private, 0o600)
        .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", private.display())))?;
    if let Err(e) = write_new(&public, &keys.public, 0o644) {
        let _ = std::fs::remove_file(&private);
        return Err(Failure::Usage(format!("cannot write {}: {e}", public.display())));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    print_json(&serde_json::json!({
        "name": name,
        "private_key_file": private,
        "public_key_file": public,
        "public_key": keys.public.trim_end(),
    }))?;
    Ok(Outcome::Ok)
}

/// A small file's text: at most `max` bytes are read (a checkpoint or key is a few hundred).
fn read_small(path: &Path, what: &str, max: u64) -> Result<String> {
    let fail = |e: std::io::Error| Failure::Usage(format!("cannot read {what} {}: {e}", path.display()));
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(max).read_to_end(&mut bytes)).map_err(fail)?;
    // Not quoted: the file may be a private key.
    String::from_utf8(bytes).map_err(|_| Failure::Usage(format!("{what} {} is not UTF-8 text", path.display())))
}

/// Overwrite a secret's bytes before its memory is freed (best effort).
fn wipe(mut text: String) {
    // SAFETY: zero bytes are valid UTF-8.
    for b in unsafe { text.as_bytes_mut() } {
        unsafe { std::ptr::write_volatile(b, 0) };
    }
}

pub fn sign(store: &Store, key_file: &Path, previous_file: Option<&Path>) -> Result<Outcome> {
    if let Ok(meta) = std::fs::metadata(key_file) {
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "tms: warning: the signing key {} is readable by others (mode {:o}): chmod 600 it",
                key_file.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    let previous = previous_file.map(|p| read_small(p, "--previous", 64 * 1024)).transpose()?;
    let key = read_small(key_file, "--signing-key", 64 * 1024)?;
    let bar = progress::bar("verifying the audit log before signing", None, "rows");
    let signed = store.audit_checkpoint_with_progress(&key, previous.as_deref(), |n| bar.set_position(n));
    wipe(key);
    bar.finish_and_clear();
    match signed {
        Ok(checkpoint) => {
            let mut out = std::io::stdout().lock();
            out.write_all(checkpoint.as_bytes())?;
            out.flush()?;
            Ok(Outcome::Ok)
        }
        // A log that does not verify (or no longer extends --previous), or a --previous that is
        // not this key's checkpoint: a problem found, as verify-audit's exit 1.
        Err(e) if matches!(e.kind, tms::ErrorKind::AuditChainBroken | tms::ErrorKind::CheckpointInvalid) => {
            eprintln!("tms: {}", Failure::Store(e));
            Ok(Outcome::ProblemFound)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn verify(store: &Store, checkpoint_file: &Path, public_key_file: &Path) -> Result<Outcome> {
    // Past the core's limit (16 KiB), so that an oversized file is refused as a checkpoint.
    let checkpoint = read_small(checkpoint_file, "--checkpoint", 64 * 1024)?;
    let public_key = read_small(public_key_file, "--public-key", 64 * 1024)?;
    let bar = progress::bar("verifying the audit log", None, "rows");
    let result = store.verify_audit_checkpoint_with_progress(&checkpoint, &public_key, |n| bar.set_position(n));
    bar.finish_and_clear();
    match result {
        Ok(report) => {
            print_json(&report)?;
            Ok(if report.verification.ok { Outcome::Ok } else { Outcome::ProblemFound })
        }
        // A checkpoint that does not verify is a finding, not a usage error.
        Err(e) if e.kind == tms::ErrorKind::CheckpointInvalid => {
            eprintln!("tms: {}", Failure::Store(e));
            Ok(Outcome::ProblemFound)
        }
        Err(e) => Err(e.into()),
    }
}
