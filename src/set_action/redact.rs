//! Keeping the bearer token out of everything stored or logged. A cluster may echo it back in
//! any escaping (raw, JSON, percent- or HTML-encoded), and an answer may be cut mid-token: every
//! form is replaced before anything is quoted, cut, stored or logged.

use memchr::memmem;

use super::http::Upstream;

/// Shortest token accepted: below it, replacing the token's text in an answer would also hit
/// ordinary words, and a short token is weak anyway.
pub(crate) const MIN_TOKEN_BYTES: usize = 8;
/// Shortest other secret (a `password` or `client_secret` field's value) looked for in answers:
/// those fields are not refused when short, and a value worth calling a secret is longer; a
/// shorter one is still replaced by its field's name where the library stores it.
const MIN_OTHER_SECRET_BYTES: usize = 4;
/// Longest token accepted.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;

const MARK: &[u8] = b"[REDACTED]";

/// The spellings of one token, longest first.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    forms: Vec<Vec<u8>>,
}

fn json_escaped(token: &str, ascii_only: bool, escape_slash: bool) -> String {
    let mut out = String::new();
    for c in token.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if escape_slash => out.push_str("\\/"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ascii_only && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn percent_encoded(token: &str, upper: bool, plus_for_space: bool) -> String {
    let mut out = String::new();
    for b in token.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b' ' if plus_for_space => out.push('+'),
            b if upper => out.push_str(&format!("%{b:02X}")),
            b => out.push_str(&format!("%{b:02x}")),
        }
    }
    out
}

/// Every character as a JSON `\uXXXX` escape (some encoders escape everything).
fn json_all_escaped(token: &str, upper: bool) -> String {
    let mut out = String::new();
    let mut units = [0u16; 2];
    for c in token.chars() {
        for u in c.encode_utf16(&mut units) {
            out.push_str(&if upper { format!("\\u{u:04X}") } else { format!("\\u{u:04x}") });
        }
    }
    out
}

/// Every byte percent-encoded, unreserved ones too.
fn percent_all(token: &str, upper: bool) -> String {
    token.bytes().map(|b| if upper { format!("%{b:02X}") } else { format!("%{b:02x}") }).collect()
}

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The base64 characters that only `token`'s bits decide when the token sits at byte `shift`
/// (0, 1 or 2) of a 3-byte group: in base64 of the token alone (shift 0), or of any text it is
/// part of (an echo base64-encoded with other bytes around it). The few characters at either
/// end that mix the token's first or last bits with its neighbours' cannot be known and stay.
fn base64_core(token: &[u8], shift: usize, alphabet: &[u8; 64]) -> String {
    let mut bytes = vec![0u8; shift];
    bytes.extend_from_slice(token);
    let bits = bytes.len() * 8;
    let first = (shift * 8).div_ceil(6);
    let end = bits / 6; // characters whose six bits all lie within the bytes
    (first..end)
        .map(|i| {
            let (at, off) = (i * 6 / 8, i * 6 % 8);
            let pair = (u16::from(bytes[at]) << 8) | u16::from(bytes.get(at + 1).copied().unwrap_or(0));
            alphabet[usize::from((pair >> (10 - off)) & 0x3f)] as char
        })
        .collect()
}

fn html_escaped(token: &str) -> String {
    token
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

impl Redactor {
    /// Every form of `token` worth looking for; no token, nothing to redact.
    pub fn new(token: Option<&str>) -> Redactor {
        Redactor::with_secrets(token, &[])
    }

    /// Every form of `token` and of the request's other secrets (see `secrets::values`). A
    /// secret under [`MIN_OTHER_SECRET_BYTES`] is left out: replacing so short a text would hit
    /// ordinary text everywhere (such a field is still replaced where it is stored, by its name);
    /// one from 4 bytes on is replaced even where that also hits ordinary text, which is the
    /// lesser harm.
    pub fn with_secrets(token: Option<&str>, others: &[String]) -> Redactor {
        let mut forms: Vec<Vec<u8>> = Vec::new();
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            add_forms(&mut forms, token);
        }
        for secret in others.iter().filter(|s| s.len() >= MIN_OTHER_SECRET_BYTES) {
            add_forms(&mut forms, secret);
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        Redactor { forms }
    }

    /// How many bytes past a cut must be read so that a form starting before the cut is whole.
    pub fn overlap(&self) -> usize {
        self.forms.first().map_or(0, Vec::len)
    }

    /// `hay` with every form replaced, one form after another, longest first (a shorter form
    /// never splits a longer one's match).
    pub fn bytes(&self, hay: &[u8]) -> Vec<u8> {
        let mut out = hay.to_vec();
        for form in &self.forms {
            // Most texts hold no form at all: a vectorised search, and a copy only on a hit.
            if let Some(at) = memmem::find(&out, form) {
                out = replace_from(&out, form, at);
            }
        }
        out
    }

    pub fn text(&self, text: &str) -> String {
        if self.forms.is_empty() {
            return text.to_owned();
        }
        String::from_utf8_lossy(&self.bytes(text.as_bytes())).into_owned()
    }

    /// `hay`'s first `limit` bytes with every form replaced, where a form that starts before the
    /// limit is replaced whole (`hay` must hold [`Redactor::overlap`] bytes past the limit, or
    /// end): the cut falls in the original text, so replacements that shorten it cannot pull
    /// unread bytes under the limit, and no cut splits a token.
    pub fn cut(&self, hay: &[u8], limit: usize) -> Vec<u8> {
        let end = hay.len().min(limit);
        // Where each form starts (overlapping starts too), then one walk from the left that, at
        // each position, replaces the longest form starting there: the same as trying every form
        // at every byte, without doing so.
        let mut starts: Vec<(usize, usize)> = Vec::new();
        for (n, form) in self.forms.iter().enumerate() {
            let finder = memmem::Finder::new(form);
            let mut from = 0;
            while from < end {
                match finder.find(&hay[from..]) {
                    Some(at) if from + at < end => {
                        starts.push((from + at, n));
                        from += at + 1;
                    }
                    _ => break,
                }
            }
        }
        // By position, then longest form first (`forms` is sorted longest first).
        starts.sort_unstable();
        let mut out = Vec::with_capacity(end);
        let mut i = 0;
        for (at, n) in starts {
            if at < i {
                continue; // inside a form already replaced, or a shorter form at the same start
            }
            out.extend_from_slice(&hay[i..at]);
            out.extend_from_slice(MARK);
            i = at + self.forms[n].len();
        }
        if i < end {
            out.extend_from_slice(&hay[i..end]);
        }
        out
    }

    /// Redact an upstream answer read up to `limit` + [`Redactor::overlap`] bytes and cut it at
    /// `limit` (see [`Redactor::cut`]).
    pub fn upstream(&self, up: Upstream, limit: u64) -> Upstream {
        match up {
            Upstream::Answer { status, body, cut } => {
                let over = body.len() as u64 > limit;
                let body = self.cut(&body, usize::try_from(limit).unwrap_or(usize::MAX));
                Upstream::Answer { status, body, cut: cut || over }
            }
            Upstream::Failed(text) => Upstream::Failed(self.text(&text)),
            Upstream::Timeout => Upstream::Timeout,
        }
    }
}

/// Add every spelling of `token` worth looking for to `forms` (each once).
fn add_forms(forms: &mut Vec<Vec<u8>>, token: &str) {
    let mut add = |f: String| {
        if !f.is_empty() && !forms.iter().any(|g| g == f.as_bytes()) {
            forms.push(f.into_bytes());
        }
    };
    add(token.to_owned());
    for ascii_only in [false, true] {
        for escape_slash in [false, true] {
            // JSON inside JSON: an echo quoted twice.
            let once = json_escaped(token, ascii_only, escape_slash);
            add(json_escaped(&once, ascii_only, escape_slash));
            add(once);
        }
    }
    for (upper, plus) in [(true, false), (false, false), (true, true), (false, true)] {
        add(percent_encoded(token, upper, plus));
    }
    add(html_escaped(token));
    for upper in [false, true] {
        add(json_all_escaped(token, upper));
        add(percent_all(token, upper));
    }
    // Base64 (standard and URL-safe alphabets), alone or inside a larger encoded text: the
    // characters the token decides at each of the three alignments. A secret of 8 bytes or more
    // (every token) gives at least 10 of them, too many to hit unrelated text by chance; a
    // shorter one (a 4-byte password) would give 5, which ordinary words match.
    if token.len() < MIN_TOKEN_BYTES {
        return;
    }
    for alphabet in [B64_STD, B64_URL] {
        for shift in 0..3 {
            add(base64_core(token.as_bytes(), shift, alphabet));
        }
    }
}

/// `hay` with every occurrence of `needle` (non-empty), scanning from the left without overlap,
/// replaced; `first` is where the first one starts.
fn replace_from(hay: &[u8], needle: &[u8], first: usize) -> Vec<u8> {
    debug_assert!(!needle.is_empty(), "add_forms keeps no empty form");
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    let mut next = Some(first);
    while let Some(at) = next {
        out.extend_from_slice(&hay[i..at]);
        out.extend_from_slice(MARK);
        i = at + needle.len();
        next = memmem::find(&hay[i..], needle).map(|k| i + k);
    }
    out.extend_from_slice(&hay[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_escaped_form_is_replaced() {
        let token = "tok\"en\\with/slash ü";
        let r = Redactor::new(Some(token));
        for echo in [
            token.to_owned(),
            serde_json::to_string(token).unwrap(),
            serde_json::to_string(&serde_json::to_string(token).unwrap()).unwrap(),
            r#""tok\"en\\with\/slash \u00fc""#.to_owned(),
            "tok%22en%5Cwith%2Fslash%20%C3%BC".to_owned(),
            "tok%22en%5cwith%2fslash+%c3%bc".to_owned(),
            "tok&quot;en\\with/slash ü".to_owned(),
        ] {
            let out = r.text(&format!("seen: {echo} end"));
            assert!(out.contains("[REDACTED]"), "{echo} -> {out}");
            assert!(!out.contains("tok"), "{echo} -> {out}");
        }
        assert_eq!(Redactor::new(None).text("x"), "x");
    }

    /// Echoes the review named: every byte escaped, base64 (alone, inside a larger base64 text at
    /// each alignment, URL-safe, padded or not).
    #[test]
    fn fully_escaped_and_base64_echoes_are_replaced() {
        use std::fmt::Write;
        let token = "operator-token-123/+xyz?";
        let r = Redactor::new(Some(token));
        let b64 = |bytes: &[u8], alphabet: &[u8; 64], pad: bool| {
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = (u32::from(chunk[0]) << 16)
                    | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
                    | u32::from(chunk.get(2).copied().unwrap_or(0));
                for k in 0..=chunk.len() {
                    out.push(alphabet[((n >> (18 - 6 * k)) & 0x3f) as usize] as char);
                }
                if pad {
                    out.push_str(&"=".repeat(3 - chunk.len()));
                }
            }
            out
        };
        let mut echoes = vec![
            token.bytes().fold(String::new(), |mut s, b| {
                let _ = write!(s, "%{b:02X}");
                s
            }),
            token.chars().fold(String::new(), |mut s, c| {
                let _ = write!(s, "\\u{:04x}", c as u32);
                s
            }),
        ];
        for alphabet in [B64_STD, B64_URL] {
            for pad in [false, true] {
                echoes.push(b64(token.as_bytes(), alphabet, pad));
                for prefix in ["", "x", "xy", "Authorization: Bearer ", r#"{"token": ""#] {
                    echoes.push(b64(format!("{prefix}{token}\" and more").as_bytes(), alphabet, pad));
                }
            }
        }
        for echo in echoes {
            let out = r.text(&format!("echo: {echo} end"));
            assert!(out.contains("[REDACTED]"), "{echo} -> {out}");
            // What stays of the token is at most its edges' few mixed characters: never 4
            // bytes of it in a row, decoded or not.
            let left = out.replace("[REDACTED]", "\u{0}");
            for window in token.as_bytes().windows(4) {
                assert!(!left.as_bytes().windows(4).any(|w| w == window), "{echo} -> {out}");
            }
        }
        // Ordinary text is left alone.
        assert_eq!(r.text("an ordinary answer, ok=1"), "an ordinary answer, ok=1");
    }

    /// The searches give what trying every form at every byte gave (the first way this was
    /// written), on texts dense with overlapping and repeated forms.
    #[test]
    fn the_searches_agree_with_trying_every_form_at_every_byte() {
        fn naive_replace(hay: &[u8], needle: &[u8]) -> Vec<u8> {
            let (mut out, mut i) = (Vec::new(), 0);
            while i < hay.len() {
                if hay[i..].starts_with(needle) {
                    out.extend_from_slice(MARK);
                    i += needle.len();
                } else {
                    out.push(hay[i]);
                    i += 1;
                }
            }
            out
        }
        fn naive_cut(r: &Redactor, hay: &[u8], limit: usize) -> Vec<u8> {
            let (end, mut out, mut i) = (hay.len().min(limit), Vec::new(), 0);
            while i < end {
                match r.forms.iter().find(|f| hay[i..].starts_with(f)) {
                    Some(form) => {
                        out.extend_from_slice(MARK);
                        i += form.len();
                    }
                    None => {
                        out.push(hay[i]);
                        i += 1;
                    }
                }
            }
            out
        }
        let r = Redactor::with_secrets(Some("abab/abab\\"), &["baba".to_owned(), "ab%2".to_owned()]);
        let pieces: [&[u8]; 8] = [b"a", b"b", b"ab", b"abab/abab\\\\", b"%2F", b"abab\\/abab", b"baba", b"x"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut hay = Vec::new();
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                hay.extend_from_slice(pieces[(seed % 8) as usize]);
            }
            let mut expected = hay.clone();
            for form in &r.forms {
                expected = naive_replace(&expected, form);
            }
            assert_eq!(r.bytes(&hay), expected, "{}", String::from_utf8_lossy(&hay));
            for limit in [0, 1, 5, 17, hay.len() / 2, hay.len(), hay.len() + 3] {
                assert_eq!(r.cut(&hay, limit), naive_cut(&r, &hay, limit), "{} at {limit}", String::from_utf8_lossy(&hay));
            }
        }
    }

    #[test]
    fn echoes_that_shrink_the_body_do_not_pull_a_later_token_under_the_cut() {
        let token = "SECRETTOKEN0123456789abcdefghijklmnopqrstuv";
        let r = Redactor::new(Some(token));
        let limit = 100usize;
        let body = format!("{}{token}{token}yyyyyzz{token}{}", "x".repeat(limit - 2 * token.len() - 5), "w".repeat(300));
        let read = &body.as_bytes()[..limit + r.overlap() + 1];
        let out = String::from_utf8(r.cut(read, limit)).unwrap();
        // The third echo starts past the cut: it is not shown at all, not even in part.
        assert!(!out.contains("SECRET") && !out.contains("zz"), "{out}");
        assert_eq!(out.matches("[REDACTED]").count(), 2, "{out}");
    }

    #[test]
    fn a_token_straddling_the_limit_is_gone_before_the_cut() {
        let token = "abcdefgh12345678";
        let r = Redactor::new(Some(token));
        let limit = 20u64;
        // 15 bytes of filler, then the token from byte 15 to 31: the cut at 20 would keep "abcde".
        let body = format!("{}{token}{}", "x".repeat(15), "y".repeat(200));
        let read: Vec<u8> = body.as_bytes()[..(limit as usize + r.overlap() + 1)].to_vec();
        let Upstream::Answer { body, cut, .. } = r.upstream(Upstream::Answer { status: 200, body: read, cut: false }, limit) else {
            panic!()
        };
        assert!(cut);
        // The token began before the cut: it is replaced whole, so the kept text runs a little
        // past the limit rather than split it.
        assert!(body.ends_with(b"[REDACTED]") && body.len() == 25, "{}", String::from_utf8_lossy(&body));
        assert!(!String::from_utf8_lossy(&body).contains("abcde"), "{}", String::from_utf8_lossy(&body));
    }
}
