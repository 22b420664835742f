//! The `/proxy_fetch` request body the dashboard's UI sends, parsed and checked:
//!
//! `{"url": "...", "token": "...", "isPost": true, "contentType": "application/json",
//!   "postData": {"action": "Trans-Begin", "cids": ["..."]}}`
//!
//! A request is a Set Action when postData is an object with both `action` and `cids`.

use serde_json::{Map, Value};

use crate::customer_ids;
use crate::error::{Error, Result};

/// Longest URL accepted.
const MAX_URL_BYTES: usize = 8 * 1024;
/// Longest `contentType` accepted.
const MAX_CONTENT_TYPE_BYTES: usize = 256;

/// How postData goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Json,
    Form,
}

/// The Set Action part of a request: the action as given and the de-duplicated IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetActionPart {
    pub action: String,
    pub cids: Vec<String>,
}

#[derive(Clone, PartialEq)]
pub struct ProxyRequest {
    pub url: String,
    /// Sent as `Authorization: Bearer`; never stored or logged.
    pub token: Option<String>,
    pub is_post: bool,
    pub encoding: BodyEncoding,
    /// `contentType` as given (sent as the Content-Type header, as the legacy route did).
    pub content_type: Option<String>,
    /// What is sent (for a Set Action, with `cids` replaced by the de-duplicated list).
    pub post_data: Option<Value>,
    pub set_action: Option<SetActionPart>,
}

// Hand-written so that the token can never reach a log through `{:?}`.
impl std::fmt::Debug for ProxyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyRequest")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("is_post", &self.is_post)
            .field("encoding", &self.encoding)
            .field("content_type", &self.content_type)
            .field("set_action", &self.set_action)
            .finish_non_exhaustive()
    }
}

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn string_field(obj: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::invalid(format!("`{name}` must be a string, not {}", kind(other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parse and check a request body. Errors name the offending field.
pub fn parse(text: &str) -> Result<ProxyRequest> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(Error::invalid("request body must be a JSON object"));
    };
    let url = string_field(&obj, "url")?.ok_or_else(|| Error::invalid("`url` is missing"))?;
    let url = url.trim().to_owned();
    if url.is_empty() {
        return Err(Error::invalid("`url` is empty"));
    }
    if url.len() > MAX_URL_BYTES {
        return Err(Error::new(crate::ErrorKind::TooLarge, format!("`url` is over {MAX_URL_BYTES} bytes")));
    }
    let token = string_field(&obj, "token")?.filter(|t| !t.is_empty());
    if token.as_deref().is_some_and(|t| t.chars().any(char::is_control)) {
        return Err(Error::invalid("`token` contains a control character"));
    }
    let is_post = match field(&obj, "isPost") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(Error::invalid(format!("`isPost` must be a boolean, not {}", kind(other)))),
    };
    let content_type = string_field(&obj, "contentType")?.filter(|ct| !ct.trim().is_empty());
    if let Some(ct) = &content_type {
        // It becomes a header line: printable ASCII only, so nothing can be smuggled into it.
        if ct.len() > MAX_CONTENT_TYPE_BYTES || !ct.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err(Error::invalid(format!(
                "`contentType` must be printable ASCII of at most {MAX_CONTENT_TYPE_BYTES} bytes: {}",
                crate::error::shown(ct)
            )));
        }
    }
    // Exactly the legacy route's test (`content_type == 'application/x-www-form-urlencoded'`):
    // any other content type, a `; charset=` one included, sent JSON.
    let encoding = match &content_type {
        Some(ct) if ct == "application/x-www-form-urlencoded" => BodyEncoding::Form,
        _ => BodyEncoding::Json,
    };
    let mut post_data = field(&obj, "postData").cloned();
    if let (BodyEncoding::Form, Some(data)) = (encoding, &post_data) {
        if !matches!(data, Value::Object(_) | Value::String(_)) {
            return Err(Error::invalid(format!(
                "`postData` with a form content type must be an object or a string, not {}",
                kind(data)
            )));
        }
    }
    let set_action = match &mut post_data {
        Some(Value::Object(data)) if data.contains_key("action") && data.contains_key("cids") => {
            let action = match data.get("action") {
                // The identifier rules apply before anything is stored or echoed: no control
                // characters, at most 256 bytes.
                Some(Value::String(a)) => crate::store::name("postData.action", a)?.to_owned(),
                Some(other) => {
                    return Err(Error::invalid(format!("`postData.action` must be a string, not {}", kind(other))));
                }
                None => unreachable!("checked above"),
            };
            let cids = match data.get("cids") {
                Some(Value::Array(items)) => {
                    let mut raw = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        match item {
                            Value::String(s) => raw.push(s.as_str()),
                            other => {
                                return Err(Error::invalid(format!(
                                    "`postData.cids[{i}]` must be a string, not {}",
                                    kind(other)
                                )));
                            }
                        }
                    }
                    customer_ids::normalize(raw)?
                }
                Some(Value::String(text)) => customer_ids::parse(text, customer_ids::InputFormat::Manual)?,
                Some(other) => {
                    return Err(Error::invalid(format!("`postData.cids` must be a list of IDs, not {}", kind(other))));
                }
                None => unreachable!("checked above"),
            };
            if cids.is_empty() {
                return Err(Error::invalid("`postData.cids` holds no customer ID"));
            }
            data.insert("cids".into(), Value::from(cids.clone()));
            Some(SetActionPart { action, cids })
        }
        _ => None,
    };
    Ok(ProxyRequest { url, token, is_post, encoding, content_type, post_data, set_action })
}

impl ProxyRequest {
    /// What an idempotency key is bound to: where the request goes and what it sends, with the
    /// customer IDs as a set (repeats and order do not make another request), but not the token,
    /// which a new session may renew. SHA-256 over canonical JSON (object keys sorted, numbers
    /// as written).
    pub fn fingerprint(&self) -> String {
        let encoding = match self.encoding {
            BodyEncoding::Json => "json",
            BodyEncoding::Form => "form",
        };
        let mut data = self.post_data.clone();
        if let (Some(Value::Object(map)), Some(part)) = (&mut data, &self.set_action) {
            let mut ids = part.cids.clone();
            ids.sort_unstable();
            map.insert("cids".into(), Value::from(ids));
        }
        let canonical = serde_json::json!([self.url, self.is_post, encoding, data.as_ref().map(sorted_keys)]).to_string();
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `value` with every object's keys in sorted order (objects keep the order written otherwise).
fn sorted_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted_keys(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted_keys).collect()),
        other => other.clone(),
    }
}

/// postData as form fields, the way Python's `requests` encodes a dict: strings as they are,
/// lists as one field per element, anything else as its JSON text; nulls are left out.
pub fn form_fields(data: &Value) -> Vec<(String, String)> {
    // str() of a value, as requests writes it: Python's True/False, numbers as written.
    fn text(v: &Value) -> Option<String> {
        match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Bool(true) => Some("True".into()),
            Value::Bool(false) => Some("False".into()),
            other => Some(other.to_string()),
        }
    }
    let mut fields = Vec::new();
    if let Value::Object(obj) = data {
        for (k, v) in obj {
            match v {
                Value::Array(items) => fields.extend(items.iter().filter_map(text).map(|t| (k.clone(), t))),
                // requests iterates a dict value: one field per key.
                Value::Object(inner) => fields.extend(inner.keys().map(|t| (k.clone(), t.clone()))),
                other => fields.extend(text(other).map(|t| (k.clone(), t))),
            }
        }
    }
    fields
}

impl ProxyRequest {
    /// Whether a body is sent: as the legacy route decided (`if is_post and post_data:`), a
    /// POST whose postData is empty or false (`""`, `{}`, `[]`, `0`, `false`, null) went out as
    /// a GET.
    pub fn sends_body(&self) -> bool {
        self.is_post
            && match &self.post_data {
                None | Some(Value::Null) | Some(Value::Bool(false)) => false,
                Some(Value::String(s)) => !s.is_empty(),
                Some(Value::Object(m)) => !m.is_empty(),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::Number(n)) => n.as_f64() != Some(0.0),
                Some(Value::Bool(true)) => true,
            }
    }

    /// The Content-Type sent: `contentType` as given, `application/json` when none was (the
    /// legacy route sent one on every request, GETs included).
    pub fn content_type_header(&self) -> &str {
        self.content_type.as_deref().unwrap_or("application/json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn a_set_action_request_is_recognized_and_its_ids_deduplicated() {
        let r = parse(r#"{"url":" https://c.example/tms/v1/set/action ","token":"T0KEN","isPost":true,
            "contentType":"application/json","postData":{"action":"Trans-Begin","cids":["a","b","a"," b "]}}"#)
        .unwrap();
        assert_eq!(r.url, "https://c.example/tms/v1/set/action");
        assert!(r.is_post);
        assert_eq!(r.encoding, BodyEncoding::Json);
        let sa = r.set_action.as_ref().unwrap();
        assert_eq!(sa.cids, ["a", "b"]);
        assert_eq!(r.post_data.as_ref().unwrap()["cids"], serde_json::json!(["a", "b"]));
        assert!(!format!("{r:?}").contains("T0KEN"));
    }

    #[test]
    fn other_requests_are_plain_proxies() {
        let r = parse(r#"{"url":"https://c.example/status","postData":{"cids":["a"]}}"#).unwrap();
        assert!(r.set_action.is_none());
        assert!(!r.is_post);
        let r = parse(r#"{"url":"https://c.example/x","contentType":"application/x-www-form-urlencoded","isPost":true,"postData":{"a":"1","l":["x","y"],"n":2,"z":null}}"#).unwrap();
        assert_eq!(r.encoding, BodyEncoding::Form);
        let fields = form_fields(r.post_data.as_ref().unwrap());
        assert_eq!(fields, [("a".into(), "1".into()), ("l".into(), "x".into()), ("l".into(), "y".into()), ("n".into(), "2".into())]);
    }

    #[test]
    fn an_oversized_action_is_refused_without_being_echoed() {
        let text = format!(r#"{{"url":"u","postData":{{"action":"{}","cids":["a"]}}}}"#, "A".repeat(10 << 20));
        let err = parse(&text).unwrap_err();
        assert_eq!(err.kind, ErrorKind::TooLarge);
        assert!(err.message.len() < 200, "{}", err.message);
    }

    #[test]
    fn fingerprints_bind_the_request_but_not_the_token() {
        let a = parse(r#"{"url":"https://c/x","token":"t1","isPost":true,"postData":{"action":"PE-Enable","cids":["a","b"]}}"#).unwrap();
        let b = parse(r#"{"postData":{"cids":["b","a","a"],"action":"PE-Enable"},"isPost":true,"token":"t2","url":"https://c/x"}"#).unwrap();
        // The keys' order is kept for the wire, but does not make another request.
        assert_eq!(b.post_data.as_ref().unwrap().as_object().unwrap().keys().collect::<Vec<_>>(), ["cids", "action"]);
        let c = parse(r#"{"url":"https://c/x","token":"t1","isPost":true,"postData":{"action":"PE-Enable","cids":["a","c"]}}"#).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
    }

    #[test]
    fn malformed_requests_name_the_problem() {
        for (text, needle) in [
            ("", "not valid JSON"),
            ("[]", "JSON object"),
            ("{}", "`url` is missing"),
            (r#"{"url":5}"#, "`url` must be a string"),
            (r#"{"url":"u","isPost":"yes"}"#, "`isPost`"),
            (r#"{"url":"u","postData":{"action":1,"cids":[]}}"#, "`postData.action`"),
            (r#"{"url":"u","postData":{"action":"a","cids":[1]}}"#, "`postData.cids[0]`"),
            (r#"{"url":"u","postData":{"action":"a","cids":[]}}"#, "no customer ID"),
            (r#"{"url":"u","token":"a\nb"}"#, "control character"),
            (r#"{"url":"u","postData":{"action":"Trans\t-Begin","cids":["a"]}}"#, "control character"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{text}");
            assert!(err.message.contains(needle), "{text}: {}", err.message);
        }
    }
}
