//! Store::metrics on each engine, after real Set Actions against a loopback HTTP server. One test
//! in its own binary: the Set Action counters are the process's, so no other test may move them.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use common::*;
use tms::StoreOptions;

/// A cluster on loopback: `/ok` answers success, `/fail` a refusal (`success: false`).
fn stub_cluster() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let answer = if path.ends_with("/fail") { r#"{"success":false,"message":"no"}"# } else { r#"{"success":true}"# };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    base
}

/// The samples of an exposition text: `name{labels}` -> value (HELP and TYPE lines checked).
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        let value = if value == "+Inf" { f64::INFINITY } else { value.parse().unwrap_or_else(|_| panic!("bad value {line:?}")) };
        out.insert(key.to_owned(), value);
    }
    out
}

fn request(base: &str, path: &str, cids: &[&str]) -> String {
    serde_json::json!({"url": format!("{base}{path}"), "token": "metrics-test-token-0123", "isPost": true,
                       "postData": {"action": "Trans-Begin", "cids": cids}})
    .to_string()
}

#[test]
fn metrics_count_set_actions_and_read_the_store_on_each_engine() {
    let base = stub_cluster();
    let mut expected_calls = 0.0;
    for loc in Location::each("metrics") {
        let options = StoreOptions { allowed_clusters: vec![base.clone()], request_timeout_s: 5, connect_timeout_s: 5, ..Default::default() };
        let store = loc.open(&options).unwrap();
        let before = samples(&store.metrics().unwrap());
        assert_eq!(store.set_action(&request(&base, "/ok", &["c1"]), "alice", None, Some("k-1")).http_status, 200);
        assert_eq!(store.set_action(&request(&base, "/ok", &["c1"]), "alice", None, Some("k-1")).http_status, 200); // repeat
        assert_eq!(store.set_action(&request(&base, "/ok", &["c2"]), "alice", None, None).http_status, 200);
        assert_eq!(store.set_action(&request(&base, "/fail", &["c3"]), "bob", None, None).http_status, 200);
        assert_eq!(store.set_action(&request("http://127.0.0.1:9", "/x", &["c4"]), "bob", None, None).http_status, 403);
        expected_calls += 5.0;

        let text = store.metrics().unwrap();
        let after = samples(&text);
        let delta = |k: &str| after[k] - before.get(k).copied().unwrap_or(0.0);
        for (outcome, n) in [("success", 2.0), ("failure", 1.0), ("refused", 1.0), ("repeat", 1.0)] {
            assert_eq!(delta(&format!("tms_set_actions_total{{outcome=\"{outcome}\"}}")), n, "{outcome}\n{text}");
        }
        // The database's view: three jobs sent (the repeat made none), their audit rows and the refusal's.
        assert_eq!(after["tms_jobs{status=\"SUCCESS\"}"], 2.0, "{text}");
        assert_eq!(after["tms_jobs{status=\"FAILED\"}"], 1.0);
        assert_eq!(after["tms_jobs{status=\"IN_PROGRESS\"}"], 0.0);
        assert_eq!(after["tms_audit_rows"], 4.0);
        assert_eq!(after["tms_audit_outbox_pending"], 0.0);
        // The histogram: cumulative, ending in +Inf = _count = every call of this process.
        let count = after["tms_set_action_duration_seconds_count"];
        assert_eq!(count, expected_calls);
        assert_eq!(after["tms_set_action_duration_seconds_bucket{le=\"+Inf\"}"], count);
        let buckets: Vec<f64> = tms::metrics::DURATION_BUCKETS
            .iter()
            .map(|le| after[&format!("tms_set_action_duration_seconds_bucket{{le=\"{}\"}}", tms::metrics::exposition::number(*le))])
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]) && buckets.last() <= Some(&count), "{buckets:?}");
        assert!(after["tms_set_action_duration_seconds_sum"] > before["tms_set_action_duration_seconds_sum"]);
        assert!(text.contains("# TYPE tms_set_action_duration_seconds histogram\n") && text.contains("# TYPE tms_jobs gauge\n"));

        // A legacy writer's odd status word comes out escaped.
        loc.execute("INSERT INTO jobs (job_id, user_id, action_code, action_name, created_at, status) \
                     VALUES ('odd', 'legacy', 1, 'Trans-Begin', '2026-12-01T00:00:00', 'a\"b\\c')");
        assert_eq!(samples(&store.metrics().unwrap())["tms_jobs{status=\"a\\\"b\\\\c\"}"], 1.0);
    }
}
