//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` lines, then the
//! samples; label values escaped (backslash, double quote, newline), HELP text likewise
//! (backslash, newline).

use std::fmt::Write;

/// The content type a `/metrics` route answers with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value as the format writes it between double quotes.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float as the format writes it (`+Inf`, integers without a fraction).
pub fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

/// Builds one exposition text, a metric family at a time.
#[derive(Default)]
pub struct Text(String);

impl Text {
    /// Start a family: its HELP and TYPE (`gauge`, `counter`, `histogram`).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        self
    }

    /// One sample; `labels` are (name, unescaped value).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.0.push_str(name);
        if !labels.is_empty() {
            let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
            let _ = write!(self.0, "{{{}}}", inner.join(","));
        }
        let _ = writeln!(self.0, " {}", number(value));
        self
    }

    /// A histogram's samples: cumulative `buckets` for each bound of `bounds` and `+Inf` (one
    /// more than `bounds`), then `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, bounds: &[f64], buckets: &[u64], sum: f64) -> &mut Self {
        let bucket = format!("{name}_bucket");
        for (i, count) in buckets.iter().enumerate() {
            let le = bounds.get(i).copied().unwrap_or(f64::INFINITY);
            self.sample(&bucket, &[("le", &number(le))], *count as f64);
        }
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], buckets.last().copied().unwrap_or(0) as f64);
        self
    }

    pub fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        let mut t = Text::default();
        t.family("x", "gauge", "line one\nline \\ two").sample("x", &[("s", "q\"")], 2.0);
        assert_eq!(t.finish(), "# HELP x line one\\nline \\\\ two\n# TYPE x gauge\nx{s=\"q\\\"\"} 2\n");
    }

    #[test]
    fn histograms_end_with_inf_sum_and_count() {
        let mut t = Text::default();
        t.histogram("h", &[0.5, 1.0], &[1, 2, 3], 2.25);
        assert_eq!(
            t.finish(),
            "h_bucket{le=\"0.5\"} 1\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 2.25\nh_count 3\n"
        );
    }
}
