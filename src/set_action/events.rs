//! Set Action events in the legacy log line format, handed to a callback the host registers:
//! `2026-01-30 17:00:26 | INFO     | set_action_done | user=harish | action=Tran-Begin | ...`

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// Severity, numbered as Python's `logging` numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info = 20,
    Warning = 30,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warning => "WARNING",
        }
    }
}

/// One event: a name and its key=value fields, in order.
#[derive(Debug, Clone)]
pub struct Event {
    pub level: Level,
    pub name: &'static str,
    pub fields: Vec<(&'static str, String)>,
}

/// Longest error text quoted in a `set_action_done` line. The legacy cut at 100 characters, which
/// usually left only the JSON envelope of the cluster's answer and not its message.
const ERROR_CHARS: usize = 200;

impl Event {
    pub fn new(level: Level, name: &'static str) -> Event {
        Event { level, name, fields: Vec::new() }
    }

    pub fn field(mut self, key: &'static str, value: impl ToString) -> Event {
        self.fields.push((key, value.to_string()));
        self
    }

    /// A quoted, shortened error text (`error="..."`). Unlike the legacy log, a `"` or `\\` inside
    /// is escaped with a backslash, so a reader can find where the value ends.
    pub fn error(self, text: &str) -> Event {
        let short: String = text.chars().take(ERROR_CHARS).collect();
        let escaped = short.replace('\\', "\\\\").replace('"', "\\\"");
        self.field("error", format!("\"{escaped}\""))
    }

    /// The line without its time and level: `event | key=value | ...`, for hosts whose logger
    /// stamps those itself.
    pub fn message(&self) -> String {
        let mut message = self.name.to_owned();
        for (k, v) in &self.fields {
            // One event per line, whatever a value holds.
            let v = v.replace(['\n', '\r'], " ");
            message.push_str(&format!(" | {k}={v}"));
        }
        message
    }

    /// The legacy line, stamped with the local time now.
    pub fn line(&self) -> String {
        let stamp = crate::clock::local_iso(SystemTime::now());
        format!("{} | {:<8} | {}", &stamp[..19].replace('T', " "), self.level.word(), self.message())
    }
}

/// Receives (level, event name, formatted line). Called on the thread that made the call.
pub type EventCallback = Arc<dyn Fn(Level, &str, &str) + Send + Sync>;

/// Where events go; nowhere until a callback is registered.
#[derive(Default)]
pub struct EventSink {
    callback: RwLock<Option<EventCallback>>,
}

impl EventSink {
    pub fn set(&self, callback: Option<EventCallback>) {
        *self.callback.write().unwrap_or_else(|p| p.into_inner()) = callback;
    }

    /// Deliver an event; with no callback nothing is formatted or written.
    pub fn emit(&self, event: Event) {
        let callback = self.callback.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(cb) = callback {
            cb(event.level, event.name, &event.line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_legacy_format() {
        let e = Event::new(Level::Info, "set_action_done")
            .field("user", "harish")
            .field("job_id", "NONE")
            .field("http_status", 401)
            .error(&format!("API returned status 401: {}", "y".repeat(300)));
        let line = e.line();
        let parts: Vec<&str> = line.split(" | ").collect();
        assert_eq!(parts[0].len(), 19);
        assert_eq!(parts[1], "INFO    ");
        assert_eq!(&parts[2..5], ["set_action_done", "user=harish", "job_id=NONE"]);
        assert!(parts[6].starts_with("error=\"API returned status 401: yyy"));
        assert_eq!(parts[6].len(), "error=\"\"".len() + ERROR_CHARS);
        assert_eq!(line.split_once(" | INFO     | ").unwrap().1, e.message());
    }

    #[test]
    fn quotes_inside_an_error_are_escaped() {
        let e = Event::new(Level::Info, "set_action_done").error(r#"API returned status 401: {"m":"a\b"}"#);
        assert_eq!(e.message(), r#"set_action_done | error="API returned status 401: {\"m\":\"a\\b\"}""#);
    }

    #[test]
    fn nothing_is_written_without_a_callback() {
        let sink = EventSink::default();
        sink.emit(Event::new(Level::Info, "x"));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        sink.set(Some(Arc::new(move |_, name, line| s2.lock().unwrap().push((name.to_owned(), line.to_owned())))));
        sink.emit(Event::new(Level::Warning, "y").field("k", "v"));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].1.contains("| WARNING  | y | k=v"));
    }
}
