//! Signed checkpoints of the audit chain's head, so that a log rewritten by someone who can write
//! its files (or tables), or who holds the HMAC key, no longer matches what was signed and
//! shipped elsewhere earlier (Certificate Transparency's signed tree heads, for a hash chain).
//!
//! The formats follow C2SP's signed note (<https://c2sp.org/signed-note>) with Ed25519:
//!
//! - public key (a "verifier key"): `<name>+<key id, 8 hex>+<base64(0x01 || 32-byte key)>`, one
//!   line; the key id is the first 4 bytes of SHA-256(name || "\n" || 0x01 || key);
//! - private key: `PRIVATE+KEY+<name>+<key id>+<base64(PKCS#8 v2 document)>`, one line (Go's note
//!   signer key, with ring's PKCS#8 document in place of the bare seed);
//! - checkpoint: the note text, a blank line, then signature lines:
//!
//! ```text
//! audit.dashboard-1.example        <- origin: the log's identity, the key's name
//! 4182                             <- the head's chain sequence number (rows on the chain)
//! sha256:5f0c...e1                 <- the head's chain hash, as stored in chain_hash
//! time 2026-12-07T14:36:09Z        <- when it was signed (UTC)
//!
//! — audit.dashboard-1.example <base64(key id || Ed25519 signature over the text above)>
//! ```
//!
//! A log extends a checkpoint when its chain verifies and its row at that sequence number still
//! has that hash: the hash commits to every row up to it (and to the legacy rows before the
//! chain), so cutting the tail, changing or inserting a row before it, or recomputing the whole
//! chain (with or without the HMAC key) all show.
//!
//! The private key is never part of an error message or a `Debug` output.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{AuditVerification, ChainHead, ProblemKind};

/// The prefix of a private key line.
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";
/// C2SP's algorithm byte for Ed25519.
const ALG_ED25519: u8 = 0x01;
/// The em dash and space that start a signature line.
const SIG_PREFIX: &str = "\u{2014} ";
/// Longest checkpoint accepted (a real one is about 250 bytes; C2SP verifiers accept 16
/// signatures, which fit easily).
const MAX_CHECKPOINT_BYTES: usize = 16 * 1024;
/// Longest key name.
const MAX_NAME_BYTES: usize = 128;
/// The files `tms keygen` writes.
pub const PRIVATE_FILE: &str = "tms-checkpoint.key";
/// See [`PRIVATE_FILE`].
pub const PUBLIC_FILE: &str = "tms-checkpoint.pub";

fn invalid_checkpoint(why: impl Into<String>) -> Error {
    Error::new(ErrorKind::CheckpointInvalid, why.into())
}

/// Check a key name (the log's identity): 1 to 128 printable ASCII characters without spaces or
/// `+` (C2SP's rule, narrowed to ASCII).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'+');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "key name {} is refused: use 1 to {MAX_NAME_BYTES} printable ASCII characters without spaces or '+' \
             (e.g. audit.dashboard-1.example)",
            crate::error::shown(name)
        )))
    }
}

fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ALG_ED25519]);
    ctx.update(public);
    let d = ctx.finish();
    [d.as_ref()[0], d.as_ref()[1], d.as_ref()[2], d.as_ref()[3]]
}

fn hex4(id: &[u8; 4]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex4(text: &str) -> Option<[u8; 4]> {
    if text.len() != 8 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut id = [0u8; 4];
    for (i, out) in id.iter_mut().enumerate() {
        *out = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

/// A freshly generated key pair, as the two files hold them (each one line ending in `\n`).
pub struct GeneratedKeys {
    /// The private key line: keep it secret (mode 0600, on a host the log's writers cannot read).
    pub private: String,
    /// The public key line (a C2SP verifier key).
    pub public: String,
}

impl std::fmt::Debug for GeneratedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKeys").field("private", &"[secret]").field("public", &self.public).finish()
    }
}

impl Drop for GeneratedKeys {
    fn drop(&mut self) {
        wipe_string(&mut self.private);
    }
}

/// Overwrite a secret's bytes before its memory is freed (best effort).
fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: a valid &mut u8; volatile so the writes are not optimised away.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
}

fn wipe_string(s: &mut str) {
    // SAFETY: zero bytes are valid UTF-8.
    wipe(unsafe { s.as_bytes_mut() });
}

/// A new Ed25519 key pair named `name` (the log's identity: the origin line of its checkpoints).
pub fn generate_keys(name: &str) -> Result<GeneratedKeys> {
    check_name(name)?;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| Error::internal("the system's random source failed"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| Error::internal("ring refused its own key"))?;
    let public = pair.public_key().as_ref();
    let id = hex4(&key_id(name, public));
    let mut encoded = B64.encode(pkcs8.as_ref());
    let private = format!("{PRIVATE_PREFIX}{name}+{id}+{encoded}\n");
    wipe_string(&mut encoded);
    let mut vkey = vec![ALG_ED25519];
    vkey.extend_from_slice(public);
    Ok(GeneratedKeys { private, public: format!("{name}+{id}+{}\n", B64.encode(&vkey)) })
}

/// The first line of a key file, without its line end.
fn one_line(text: &str) -> &str {
    let line = text.split('\n').next().unwrap_or("");
    line.strip_suffix('\r').unwrap_or(line)
}

/// A private key, ready to sign. Its `Debug` shows the name only.
pub struct SigningKey {
    name: String,
    id: [u8; 4],
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}+{})", self.name, hex4(&self.id))
    }
}

impl SigningKey {
    /// Read a private key line (`tms keygen`'s private file). Errors never quote the text.
    pub fn parse(text: &str) -> Result<SigningKey> {
        const NOT_A_KEY: &str = "the signing key is not a tms checkpoint private key \
                                 (one line PRIVATE+KEY+NAME+ID+BASE64, as `tms keygen` writes it)";
        let line = one_line(text.trim_start());
        let rest = line.strip_prefix(PRIVATE_PREFIX).ok_or_else(|| Error::invalid(NOT_A_KEY))?;
        // The name holds no '+', the key id none, base64 may: split from the left.
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::invalid(NOT_A_KEY));
        };
        check_name(name).map_err(|_| Error::invalid(NOT_A_KEY))?;
        let id = parse_hex4(id).ok_or_else(|| Error::invalid(NOT_A_KEY))?;
        let mut der = B64.decode(encoded.trim_end()).map_err(|_| Error::invalid(NOT_A_KEY))?;
        let pair = Ed25519KeyPair::from_pkcs8(&der);
        wipe(&mut der);
        let pair = pair.map_err(|_| Error::invalid(NOT_A_KEY))?;
        if key_id(name, pair.public_key().as_ref()) != id {
            return Err(Error::invalid("the signing key's id does not match its key: the file was altered"));
        }
        Ok(SigningKey { name: name.to_owned(), id, pair })
    }

    /// The key's (and its log's) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching public key line (without its line end).
    pub fn public_key(&self) -> String {
        let mut vkey = vec![ALG_ED25519];
        vkey.extend_from_slice(self.pair.public_key().as_ref());
        format!("{}+{}+{}", self.name, hex4(&self.id), B64.encode(&vkey))
    }

    /// A signed checkpoint of `head`, stamped `time` (RFC 3339 UTC).
    pub fn sign(&self, head: &ChainHead, time: &str) -> String {
        self.sign_note(&format!("{}\n{}\n{}\ntime {time}\n", self.name, head.seq, head.hash))
    }

    /// A signed note of `text` (which ends in a line feed): the text, a blank line, the
    /// signature line.
    fn sign_note(&self, text: &str) -> String {
        let mut sig = self.id.to_vec();
        sig.extend_from_slice(self.pair.sign(text.as_bytes()).as_ref());
        format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(&sig))
    }
}

/// A public key: checks checkpoints signed by its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    public: Vec<u8>,
}

impl VerifierKey {
    /// Read a public key line (`tms keygen`'s public file, a C2SP verifier key).
    pub fn parse(text: &str) -> Result<VerifierKey> {
        const NOT_A_KEY: &str = "the public key is not a checkpoint verifier key \
                                 (one line NAME+ID+BASE64, as `tms keygen` writes it)";
        let line = one_line(text.trim_start()).trim_end();
        if line.starts_with(PRIVATE_PREFIX) {
            return Err(Error::invalid("a private key was given where the public key belongs: pass the .pub file"));
        }
        let mut parts = line.splitn(3, '+');
        let (Some(name), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::invalid(NOT_A_KEY));
        };
        check_name(name).map_err(|_| Error::invalid(NOT_A_KEY))?;
        let id = parse_hex4(id).ok_or_else(|| Error::invalid(NOT_A_KEY))?;
        let raw = B64.decode(encoded).map_err(|_| Error::invalid(NOT_A_KEY))?;
        let Some((&ALG_ED25519, public)) = raw.split_first() else {
            return Err(Error::invalid("the public key is not an Ed25519 key (algorithm byte 0x01)"));
        };
        if public.len() != 32 {
            return Err(Error::invalid(NOT_A_KEY));
        }
        if key_id(name, public) != id {
            return Err(Error::invalid("the public key's id does not match its key: the file was altered"));
        }
        Ok(VerifierKey { name: name.to_owned(), id, public: public.to_vec() })
    }

    /// The key's (and its log's) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Check a checkpoint's signature and read it. Signatures by other keys are ignored (C2SP:
    /// a witness may cosign); one by this key must be there and verify. Every failure is
    /// [`ErrorKind::CheckpointInvalid`].
    pub fn open(&self, note: &str) -> Result<Checkpoint> {
        Checkpoint::parse_text(self.verify_note(note)?, &self.name)
    }

    /// Check a signed note's signature by this key; its text (ending in a line feed).
    fn verify_note<'n>(&self, note: &'n str) -> Result<&'n str> {
        if note.len() > MAX_CHECKPOINT_BYTES {
            return Err(invalid_checkpoint(format!("the checkpoint is over {MAX_CHECKPOINT_BYTES} bytes")));
        }
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(invalid_checkpoint("the checkpoint holds a control character (only line feeds belong in it)"));
        }
        if !note.ends_with('\n') {
            return Err(invalid_checkpoint("the checkpoint does not end with a line feed: it was cut"));
        }
        let Some(split) = note.rfind("\n\n") else {
            return Err(invalid_checkpoint("the checkpoint has no signature block (a blank line, then signatures)"));
        };
        let (text, sigs) = (&note[..=split], &note[split + 2..]);
        let mut verified = false;
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
                return Err(invalid_checkpoint("a signature line does not start with \"\u{2014} \""));
            };
            let Some((name, encoded)) = rest.split_once(' ') else {
                return Err(invalid_checkpoint("a signature line lacks its key name or signature"));
            };
            let sig = B64.decode(encoded).map_err(|_| invalid_checkpoint("a signature is not base64"))?;
            if sig.len() < 5 {
                return Err(invalid_checkpoint("a signature is too short"));
            }
            if name != self.name || sig[..4] != self.id {
                continue; // another key's (a witness's cosignature): not ours to check
            }
            signature::UnparsedPublicKey::new(&signature::ED25519, &self.public)
                .verify(text.as_bytes(), &sig[4..])
                .map_err(|_| {
                    invalid_checkpoint(format!(
                        "the checkpoint's signature by {} does not verify: the checkpoint was altered or forged",
                        self.name
                    ))
                })?;
            verified = true;
        }
        if !verified {
            return Err(invalid_checkpoint(format!(
                "the checkpoint carries no signature by the key {}+{}: it was signed with another key (or not at all)",
                self.name,
                hex4(&self.id)
            )));
        }
        Ok(text)
    }
}

/// What a checkpoint states (after its signature verified).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    /// The log's identity (the signing key's name).
    pub origin: String,
    /// The head's chain sequence number.
    pub seq: i64,
    /// The head's chain hash.
    pub hash: String,
    /// When it was signed (RFC 3339 UTC), as the signer's clock said.
    pub time: String,
}

fn is_chain_hash(text: &str) -> bool {
    let hex = text.strip_prefix("sha256:").or_else(|| text.strip_prefix("hmac-sha256:"));
    hex.is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

impl Checkpoint {
    fn parse_text(text: &str, origin: &str) -> Result<Checkpoint> {
        let lines: Vec<&str> = text.strip_suffix('\n').unwrap_or(text).split('\n').collect();
        if lines.len() < 4 {
            return Err(invalid_checkpoint("the checkpoint's text has fewer than its four lines (origin, seq, hash, time)"));
        }
        if lines[0] != origin {
            return Err(invalid_checkpoint(format!(
                "the checkpoint is of the log {}, not of {origin}",
                crate::error::shown(lines[0])
            )));
        }
        let seq = lines[1]
            .parse::<i64>()
            .ok()
            .filter(|s| *s > 0 && s.to_string() == lines[1])
            .ok_or_else(|| invalid_checkpoint("the checkpoint's sequence number is not a positive decimal number"))?;
        if !is_chain_hash(lines[2]) {
            return Err(invalid_checkpoint("the checkpoint's head hash is not a chain hash (sha256:HEX or hmac-sha256:HEX)"));
        }
        let time = lines[3]
            .strip_prefix("time ")
            .filter(|t| !t.is_empty() && t.len() <= 64)
            .ok_or_else(|| invalid_checkpoint("the checkpoint's fourth line is not its time"))?;
        Ok(Checkpoint { origin: origin.to_owned(), seq, hash: lines[2].to_owned(), time: time.to_owned() })
    }
}

/// What `verify_audit_checkpoint` found: the log's verification against the checkpoint's head
/// (its JSON fields inline) and what the checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointVerification {
    /// The verification, with the checkpoint's head as its anchor.
    #[serde(flatten)]
    pub verification: AuditVerification,
    /// The checkpoint that was checked.
    pub checkpoint: Checkpoint,
}

/// Say in the anchor's problem that the anchor was a signed checkpoint.
pub fn explain_anchor_problem(v: &mut AuditVerification, cp: &Checkpoint) {
    let Some(p) = v.first_problem.as_mut() else { return };
    if p.seq != Some(cp.seq) {
        return;
    }
    match p.problem {
        ProblemKind::Cut => {
            p.detail = format!(
                "the checkpoint's head (seq {}, signed {}) is gone: rows were cut from the end of the log",
                cp.seq, cp.time
            );
        }
        ProblemKind::Altered if p.detail.contains("anchored hash") => {
            p.detail = format!(
                "row {} (seq {}) no longer has the hash signed in the checkpoint of {}: the log up to it was \
                 rewritten (a row changed, inserted or removed and the chain recomputed)",
                p.id.map_or_else(|| "?".to_owned(), |i| i.to_string()),
                cp.seq,
                cp.time
            );
        }
        _ => {}
    }
}

/// `2026-12-07 14:36:09` (the audit log's UTC text) as RFC 3339: `2026-12-07T14:36:09Z`.
pub fn rfc3339(utc_sql: &str) -> String {
    format!("{}Z", utc_sql.replacen(' ', "T", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: i64) -> ChainHead {
        ChainHead { seq, hash: format!("sha256:{}", "ab".repeat(32)) }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_public_key_only() {
        let keys = generate_keys("audit.example/one").unwrap();
        let signer = SigningKey::parse(&keys.private).unwrap();
        assert_eq!(format!("{}\n", signer.public_key()), keys.public);
        let verifier = VerifierKey::parse(&keys.public).unwrap();
        let note = signer.sign(&head(7), "2026-12-07T14:36:09Z");
        let cp = verifier.open(&note).unwrap();
        assert_eq!((cp.seq, cp.hash.as_str(), cp.time.as_str()), (7, head(7).hash.as_str(), "2026-12-07T14:36:09Z"));
        assert!(note.contains("\n\n\u{2014} audit.example/one "));

        // Another key of the same name: no signature by it.
        let other = VerifierKey::parse(&generate_keys("audit.example/one").unwrap().public).unwrap();
        assert_eq!(other.open(&note).unwrap_err().kind, ErrorKind::CheckpointInvalid);
        // Any change to the text.
        let altered = note.replacen("\n7\n", "\n8\n", 1);
        assert!(verifier.open(&altered).unwrap_err().message.contains("does not verify"));
        // A witness's extra signature is ignored; garbage is refused.
        let cosigned = format!("{note}\u{2014} witness.example {}\n", B64.encode([9u8; 68]));
        assert_eq!(verifier.open(&cosigned).unwrap().seq, 7);
        for bad in ["", "x\n", &note[..note.len() - 1], &note.replace('\n', "\r\n"), &format!("{note}junk\n")] {
            assert_eq!(verifier.open(bad).unwrap_err().kind, ErrorKind::CheckpointInvalid, "{bad:?}");
        }
    }

    // Go's golang.org/x/mod/sumdb/note (its package docs and tests) and C2SP's signed-note spec:
    // the same key ids, signature lines and signatures, byte for byte.
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const GO_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    #[test]
    fn notes_match_go_and_the_c2sp_spec() {
        let go = VerifierKey::parse(GO_VKEY).unwrap(); // parsing checks the key id formula
        assert_eq!(go.verify_note(&format!("{GO_TEXT}\n{GO_SIG}")).unwrap(), GO_TEXT);
        assert_eq!(VerifierKey::parse(SPEC_VKEY).unwrap().verify_note(SPEC_NOTE).unwrap(), "This is an example message.\n");
        // Go keeps the seed where we keep PKCS#8; from the same seed, the same signature line.
        let raw = B64.decode(GO_SKEY.splitn(5, '+').nth(4).unwrap()).unwrap();
        let pair = Ed25519KeyPair::from_seed_unchecked(&raw[1..]).unwrap();
        let signer = SigningKey { name: "PeterNeumann".into(), id: parse_hex4("c74f20a3").unwrap(), pair };
        assert_eq!(signer.public_key(), GO_VKEY);
        assert_eq!(signer.sign_note(GO_TEXT), format!("{GO_TEXT}\n{GO_SIG}"));
    }

    #[test]
    fn key_files_are_checked_and_never_quoted() {
        let keys = generate_keys("n").unwrap();
        let secret = keys.private.trim_end().splitn(5, '+').nth(4).unwrap().to_owned();
        let mangled = keys.private.replace(&secret[10..20], "AAAAAAAAAA");
        for bad in [mangled.as_str(), "PRIVATE+KEY+n+00000000+AAAA", "", &keys.public] {
            let e = SigningKey::parse(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput);
            assert!(!e.message.contains(&secret[24..56]), "{}", e.message);
        }
        assert!(format!("{:?} {:?}", SigningKey::parse(&keys.private).unwrap(), keys).find(&secret[24..56]).is_none());
        assert!(VerifierKey::parse(&keys.private).unwrap_err().message.contains("private key"));
        for name in ["", "a b", "a+b", "é", &"x".repeat(129)] {
            assert!(generate_keys(name).is_err(), "{name:?}");
        }
    }
}
