//! Secrets a request carries besides its bearer token: the fields named like credentials
//! (`client_secret`, `password`, `refresh_token`, `api_key`, ...) in postData, in a form string
//! (the UI's "Generate token" button posts `grant_type=...&client_id=...&client_secret=...`) or in
//! the URL's query. What the library stores of a request has them replaced by `[REDACTED]`:
//! the job's request_payload and cluster_url, and any message that quotes the URL. Their values
//! also join the token in the `set_action::redact::Redactor`, so a cluster echoing one back is
//! redacted like an echoed token.

use serde_json::Value;

/// What a secret is replaced by.
pub const MARK: &str = "[REDACTED]";

/// Name parts that make a field a secret, compared on the name in lower case with everything
/// but letters and digits removed (`Client-Secret`, `client_secret` and `clientSecret` alike).
const SECRET_PARTS: &[&str] = &[
    "secret", "passw", "passwd", "passphrase", "token", "apikey", "accesskey", "privkey", "privatekey",
    "credential", "auth", "assertion", "signature", "cookie", "session", "bearer", "jwt",
];
/// Name endings that make a field a secret (`hmac_key`, `signing_key`, `db_pass`, `user_pw`).
const SECRET_ENDINGS: &[&str] = &["key", "pass", "pwd", "pw", "sig"];
/// Whole names that are secrets, compared the same way (an OAuth `code` is one).
const SECRET_NAMES: &[&str] = &["otp", "pin", "code"];

/// Whether a field called `name` holds a secret. Generous on purpose: a field wrongly taken for
/// one is only shown as `[REDACTED]` in what the library stores, never changed on the wire.
pub fn is_secret_name(name: &str) -> bool {
    let folded: String = name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    SECRET_NAMES.contains(&folded.as_str())
        || SECRET_PARTS.iter().any(|part| folded.contains(part))
        || SECRET_ENDINGS.iter().any(|end| folded.ends_with(end))
}

/// `value` with every secret field (at any depth) replaced by [`MARK`]; a string that is a
/// form (`a=1&client_secret=...`) has its secret fields replaced too.
pub fn redact_value(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), if is_secret_name(k) { Value::from(MARK) } else { redact_value(v) }))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_value).collect()),
        Value::String(text) => Value::String(redact_form(text)),
        other => other.clone(),
    }
}

/// `value` as [`redact_value`] gives it, copied only when it holds a secret field (a Set Action
/// of thousands of customer IDs and no secret is not copied on its way to the store).
pub fn redacted(value: &Value) -> std::borrow::Cow<'_, Value> {
    if holds_secrets(value) {
        std::borrow::Cow::Owned(redact_value(value))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// Whether [`redact_value`] would replace anything in `value`.
fn holds_secrets(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| is_secret_name(k) || holds_secrets(v)),
        Value::Array(items) => items.iter().any(holds_secrets),
        Value::String(text) => text.contains('=') && redact_form(text) != *text,
        _ => false,
    }
}

/// A form string (`name=value&...`) with the values of secret fields replaced by [`MARK`]; text
/// that holds no `=` is returned as it is.
pub fn redact_form(text: &str) -> String {
    if !text.contains('=') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    // `&` separates fields, and `;` in the older form servers still accept.
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let pair = &rest[..end];
        match pair.split_once('=') {
            Some((name, _)) if is_secret_name(&decode(name)) => {
                out.push_str(name);
                out.push('=');
                out.push_str(MARK);
            }
            _ => out.push_str(pair),
        }
        if end < rest.len() {
            out.push_str(&rest[end..end + 1]);
            rest = &rest[end + 1..];
        } else {
            rest = "";
        }
    }
    out
}

/// A URL as a message quotes it (a refusal's answer, its audit row, an event): [`redact_url`],
/// and then, when an `@` is still left after `://`, everything up to the last one replaced too.
/// A sloppy URL may hide a password in what no parser takes for userinfo
/// (`http://user:pa?ss=x@host/`, `http://user:pa/ss@host/`); a message can do without it.
pub fn redact_url_for_message(url: &str) -> String {
    let out = redact_url(url);
    match out.split_once("://") {
        Some((scheme, rest)) => match rest.rfind('@') {
            Some(at) if !rest[..at].ends_with(MARK) || rest[..at].contains(['?', '/', '#']) => {
                format!("{scheme}://{MARK}{}", &rest[at..])
            }
            _ => out,
        },
        None => out,
    }
}

/// `url` with the values of secret query fields replaced by [`MARK`] (the fragment too, as it
/// is never sent and may hold an OAuth implicit-flow token).
pub fn redact_url(url: &str) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((head, frag)) => (head, Some(frag)),
        None => (url, None),
    };
    let (head, query) = match before_fragment.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (before_fragment, None),
    };
    let mut out = without_userinfo(head);
    if let Some(query) = query {
        out.push('?');
        out.push_str(&redact_form(query));
    }
    if let Some(frag) = fragment {
        out.push('#');
        out.push_str(&redact_form(frag));
    }
    out
}

/// `scheme://user:password@host/path` as `scheme://[REDACTED]@host/path`.
fn without_userinfo(head: &str) -> String {
    let (scheme, rest) = match head.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, head),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return head.to_owned() };
    let mut out = String::with_capacity(head.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    out.push_str(MARK);
    out.push_str(&rest[at..]);
    out
}

/// The values of every secret field in postData (an object at any depth, or a form string) and
/// in the URL's query, decoded, for the redactor to find wherever they are echoed.
pub fn values(url: &str, post_data: Option<&Value>) -> Vec<String> {
    let mut found = Vec::new();
    // Whatever stands between `://` and the last `@` may be a password, however sloppily the
    // URL spells it.
    if let Some((_, rest)) = url.split_once("://") {
        if let Some((userinfo, _)) = rest.rsplit_once('@') {
            let password = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
            found.push(password.to_owned());
            found.push(decode(password));
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        form_values(query.split('#').next().unwrap_or(""), &mut found);
    }
    if let Some(data) = post_data {
        value_secrets(data, &mut found);
    }
    found.sort();
    found.dedup();
    found
}

fn value_secrets(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if is_secret_name(k) {
                    match v {
                        Value::String(s) => found.push(s.clone()),
                        Value::Null => {}
                        other => found.push(other.to_string()),
                    }
                } else {
                    value_secrets(v, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| value_secrets(v, found)),
        Value::String(text) => form_values(text, found),
        _ => {}
    }
}

fn form_values(text: &str, found: &mut Vec<String>) {
    for pair in text.split(['&', ';']) {
        if let Some((name, value)) = pair.split_once('=') {
            if is_secret_name(&decode(name)) && !value.is_empty() {
                found.push(value.to_owned());
                let plain = decode(value);
                if plain != value {
                    found.push(plain);
                }
            }
        }
    }
}

/// A form field's name or value decoded (`+` as a space, `%XX` as its byte); invalid escapes
/// are kept as written.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credential_names_in_any_spelling_are_secrets() {
        for name in ["client_secret", "clientSecret", "Client-Secret", "password", "refresh_token", "api_key",
                     "X-API-KEY", "access_token", "pwd", "code", "private_key", "Authorization", "hmac_key",
                     "client_key", "signing_key", "db_pass", "pw", "privkey", "user_pw"] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["action", "cids", "grant_type", "client_id", "app", "cid", "scope", "url", "keys_count"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn forms_urls_and_objects_lose_their_secret_values() {
        let form = "grant_type=client_credentials&client_id=dash&client_secret=s3cr%2Bt+value";
        assert_eq!(redact_form(form), "grant_type=client_credentials&client_id=dash&client_secret=[REDACTED]");
        assert_eq!(redact_url("https://u:p%40ss@h:1/x?a=1"), "https://[REDACTED]@h:1/x?a=1");
        assert_eq!(redact_url("https://h/x?a=1;client_secret=S;b=2"), "https://h/x?a=1;client_secret=[REDACTED];b=2");
        for sloppy in ["http://user:pa?ss=PWQMARK4@127.0.0.1/x", "http://user:PWSLASH5/x@127.0.0.1/x"] {
            let shown = redact_url_for_message(sloppy);
            assert!(!shown.contains("PW") && shown.ends_with("@127.0.0.1/x"), "{shown}");
        }
        assert_eq!(redact_url_for_message("https://h/x?a=1"), "https://h/x?a=1");
        assert_eq!(redact_url("https://h/x?cid=a1&api_key=K&app=ALL#access_token=T"),
                   "https://h/x?cid=a1&api_key=[REDACTED]&app=ALL#access_token=[REDACTED]");
        let data = json!({"action": "PE-Enable", "cids": ["c1"], "login": {"password": "pw123456"}, "note": form});
        let red = redact_value(&data);
        assert_eq!(red["login"]["password"], "[REDACTED]");
        assert_eq!(red["cids"], json!(["c1"]));
        assert!(!red.to_string().contains("s3cr") && !red.to_string().contains("pw123456"));
        let vals = values("https://h/x?token=abcdefgh", Some(&data));
        for v in ["abcdefgh", "pw123456", "s3cr%2Bt+value", "s3cr+t value"] {
            assert!(vals.iter().any(|x| x == v), "{v} in {vals:?}");
        }
    }

    #[test]
    fn broken_escapes_are_kept() {
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("%zz%41+"), "%zzA ");
    }
}
