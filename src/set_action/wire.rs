//! The bytes a request's postData goes out as: what the legacy route's `requests` call sent, so
//! every request the dashboard's front end makes reaches the cluster (or the SSO server) as before.
//!
//! - a string with a form content type is the body itself, byte for byte (the UI's "Generate
//!   token" button sends `grant_type=...&client_id=...&client_secret=...` this way);
//! - an object with a form content type is form-encoded as `requests` encodes a dict
//!   (`urllib.parse.urlencode`: `quote_plus`, a list as one field per element);
//! - anything with a JSON content type is `json.dumps(postData)`: `", "` and `": "` separators,
//!   non-ASCII as `\uXXXX`, a string as a JSON string (as `requests`' `json=` sends it).
//!
//! The Content-Type header is the request's `contentType` as given (the legacy route set it from
//! there), `application/json` when none was given; a form is only `contentType` equal to
//! `application/x-www-form-urlencoded`, as the legacy route compared it. A POST without a body
//! (postData missing, empty or false) went out as a GET, and still does.

use serde_json::Value;
use serde_json::ser::{CharEscape, Formatter, Serializer};
use serde::Serialize;

use super::request::{BodyEncoding, ProxyRequest, form_fields};

/// What is sent as the request's body, and its Content-Type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireBody {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// The body of a POST; None when the request goes out as a GET (see
/// [`ProxyRequest::sends_body`]).
pub fn body(req: &ProxyRequest) -> Option<WireBody> {
    if !req.sends_body() {
        return None;
    }
    let data = req.post_data.as_ref()?;
    let bytes = match (req.encoding, data) {
        (BodyEncoding::Form, Value::String(text)) => text.clone().into_bytes(),
        (BodyEncoding::Form, data) => form_urlencoded(&form_fields(data)).into_bytes(),
        (BodyEncoding::Json, data) => python_json(data).into_bytes(),
    };
    Some(WireBody { content_type: req.content_type_header().to_owned(), bytes })
}

/// `urllib.parse.urlencode(fields)`: each name and value through `quote_plus` (letters, digits
/// and `_.-~` kept, a space as `+`, every other byte as `%XX`), joined by `&`.
pub fn form_urlencoded(fields: &[(String, String)]) -> String {
    fn quote_plus(out: &mut String, text: &str) {
        for b in text.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => out.push(b as char),
                b' ' => out.push('+'),
                b => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        quote_plus(&mut out, name);
        out.push('=');
        quote_plus(&mut out, value);
    }
    out
}

/// `json.dumps(value)` with Python's defaults: `", "` between items, `": "` after keys, every
/// non-ASCII character as a `\uXXXX` escape (a surrogate pair above U+FFFF). Numbers stay as
/// written (serde_json's arbitrary_precision).
pub fn python_json(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = Serializer::with_formatter(&mut out, PythonFormatter);
    // Writing a Value into a Vec cannot fail: no I/O error, and every key is a string.
    if value.serialize(&mut ser).is_err() {
        return value.to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| value.to_string())
}

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        // Python's ensure_ascii escapes everything outside ' '..='~' (DEL included); serde
        // escapes the control characters below ' ' itself (write_char_escape).
        if fragment.bytes().all(|b| b <= b'~') {
            return w.write_all(fragment.as_bytes());
        }
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if c <= '~' {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }

    fn write_char_escape<W: ?Sized + std::io::Write>(&mut self, w: &mut W, escape: CharEscape) -> std::io::Result<()> {
        // Python writes the same short escapes, and other control characters as \u00XX.
        let s: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write!(w, "\\u{byte:04x}"),
        };
        w.write_all(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_written_as_pythons_json_dumps_writes_it() {
        // Each expected text is what CPython 3.11's json.dumps printed for the same value.
        for (value, python) in [
            (json!({"action": "PE-Enable", "cids": ["c1", "c2"]}), r#"{"action": "PE-Enable", "cids": ["c1", "c2"]}"#),
            (json!("grant_type=x&y=1"), r#""grant_type=x&y=1""#),
            (json!({"a": [], "b": {}, "c": null, "d": true, "e": 1.5}), r#"{"a": [], "b": {}, "c": null, "d": true, "e": 1.5}"#),
            (json!("é😀\u{1}\n\"\\/\u{7f}"), "\"\\u00e9\\ud83d\\ude00\\u0001\\n\\\"\\\\/\\u007f\""),
        ] {
            assert_eq!(python_json(&value), python, "{value}");
        }
    }

    #[test]
    fn forms_are_encoded_as_urlencode_encodes_them() {
        let fields = [("grant type".to_owned(), "a+b&c=d/é~".to_owned()), ("x".to_owned(), String::new())];
        assert_eq!(form_urlencoded(&fields), "grant+type=a%2Bb%26c%3Dd%2F%C3%A9~&x=");
    }
}
