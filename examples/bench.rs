//! The Rust side of the benchmark (bench/run.py and bench/postgres.py drive it): the library's
//! native API and the floor, a bare rusqlite transaction inserting the same rows into the same
//! schema.
//!
//! bench <what> <store> <NORMAL|FULL> <iterations> [ids] [tag]
//!   <store> is a directory (jobs.db and audit.db in it) or a PostgreSQL URL (postgresql://...);
//!   floor-create is SQLite-only; floor-pg is PostgreSQL's: one prepared statement per call.
//!   native-create | floor-create   create_job with `ids` customer IDs, per call
//!   native-update | native-log     update_job / record_audit, per call
//!   native-list | native-customers get_user_jobs(50) / get_job_customers on an existing store
//!   native-job                     get_job on an existing store
//!   floor-pg                       one prepared `SELECT $1::text` on one connection, per call
//!   populate                       fill <store> with <iterations> jobs of [ids] customers each
//!   group-commit                   commits/s with 1 and with 8 threads (3-ID jobs)
//!   memory                         resident memory before and after <iterations> create_job calls
//!   writers                        [ids] threads creating 3-ID jobs for <iterations> ms, from
//!                                  [tag] = a Unix time in ms (so several processes run together)
//! Prints one JSON object.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};
use serde_json::json;
use tms::model::{AuditEntry, JobUpdate, NewJob};
use tms::storage::postgres::is_postgres_url;
use tms::{Store, StoreOptions, Synchronous};

fn options(sync: &str) -> StoreOptions {
    let synchronous = if sync == "FULL" { Synchronous::Full } else { Synchronous::Normal };
    StoreOptions { synchronous, ..Default::default() }
}

/// On PostgreSQL, FULL is synchronous_commit=on and NORMAL is off (see the engine's pool).
fn open(store: &str, sync: &str) -> Store {
    if is_postgres_url(store) {
        return Store::open_postgres(store, &options(sync)).expect("open store");
    }
    let dir = Path::new(store);
    Store::open(dir.join("jobs.db"), dir.join("audit.db"), &options(sync)).expect("open store")
}

/// The directory of a mode that talks to SQLite itself.
fn sqlite_dir<'a>(store: &'a str, what: &str) -> &'a Path {
    assert!(!is_postgres_url(store), "{what} is SQLite-only: give it a directory");
    Path::new(store)
}

/// Job `j` of the read fixture (id, user, created_at), the same rows on both engines; its
/// customers are `fixture_cid(j, 0..n)`. Spread over 100 users and a year, as a dashboard's are.
fn fixture_job(j: usize) -> (String, String, String) {
    let job_id = format!("{j:08x}-1111-4000-8000-000000000000");
    let created = format!("2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}", 1 + j % 12, 1 + j % 28, j % 24, j % 60, (j / 60) % 60, j);
    (job_id, format!("user{}", j % 100), created)
}

fn fixture_cid(j: usize, c: usize) -> String {
    format!("{j:08x}{c:024x}")
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:024x}")).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Time `f` per call, `iterations` times; microseconds.
fn time_each(iterations: usize, mut f: impl FnMut(usize)) -> serde_json::Value {
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        if let Some(pause) = pause() {
            std::thread::sleep(pause); // untimed, like the gap between a web app's requests
        }
        let t = Instant::now();
        f(i);
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    json!({"median_us": median(samples.clone()), "iterations": iterations, "samples_us": samples})
}

/// TMS_BENCH_PAUSE_US: a pause before each timed call (a web app's calls are spaced; caches
/// and the CPU cool down between them, which a tight loop never shows).
fn pause() -> Option<std::time::Duration> {
    std::env::var("TMS_BENCH_PAUSE_US").ok().and_then(|v| v.parse().ok()).filter(|&us: &u64| us > 0).map(std::time::Duration::from_micros)
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args[1].as_str();
    let store_at = args[2].as_str();
    let sync = args[3].as_str();
    let iterations: usize = args[4].parse().unwrap();
    let n_ids: usize = args.get(5).map_or(3, |s| s.parse().unwrap());
    // Distinguishes repeated runs on the same files (the benchmark interleaves rounds).
    let tag = args.get(6).cloned().unwrap_or_default();

    let out = match what {
        "native-create" => {
            let store = open(store_at, sync);
            // One untimed call first: the Python sides keep their store open (warm statement and
            // page caches) across rounds, while this process starts cold each round.
            let warm = ids(&format!("w{tag}-"), n_ids);
            store.create_job(&NewJob { user_id: "bench", action_name: "Trans-Begin", cids: warm.iter().map(String::as_str).collect(), ..Default::default() }).unwrap();
            let all: Vec<Vec<String>> = (0..iterations).map(|i| ids(&format!("n{tag}{i}-"), n_ids)).collect();
            time_each(iterations, |i| {
                let cids: Vec<&str> = all[i].iter().map(String::as_str).collect();
                store.create_job(&NewJob { user_id: "bench", action_name: "Trans-Begin", cids, ..Default::default() }).unwrap();
            })
        }
        "floor-create" => {
            // The same rows the library writes, with nothing around them: one prepared
            // statement per table in one BEGIN IMMEDIATE transaction.
            let dir = sqlite_dir(store_at, what);
            drop(open(store_at, sync)); // the same schema, created by the library (no-op if present)
            let conn = Connection::open(dir.join("jobs.db")).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.pragma_update(None, "synchronous", sync).unwrap();
            conn.pragma_update(None, "foreign_keys", "ON").unwrap();
            let all: Vec<Vec<String>> = (0..=iterations).map(|i| ids(&format!("f{tag}{i}-"), n_ids)).collect();
            // Random v4 ids like the library's (made before timing): where a key lands in the
            // jobs and job_customers indexes is part of what an insert costs.
            let job_ids: Vec<String> = (0..=iterations)
                .map(|_| {
                    let mut bytes = [0u8; 16];
                    getrandom::fill(&mut bytes).unwrap();
                    uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string()
                })
                .collect();
            let insert = |i: usize| {
                // BEGIN and COMMIT prepared once, as the library does: the floor is the least
                // a write of these rows can cost, not what rusqlite's Transaction costs.
                conn.prepare_cached("BEGIN IMMEDIATE").unwrap().execute([]).unwrap();
                let tx = &conn;
                let job_id = &job_ids[i];
                tx.prepare_cached(
                    "INSERT INTO jobs (job_id, user_id, action_code, action_name, created_at, status, updated_at, customer_count, touched_unix_ms)
                     VALUES (?1, 'bench', 1, 'Trans-Begin', '2026-11-28T10:00:00.000000', 'IN_PROGRESS', '2026-11-28T10:00:00.000000', ?2, ?3)",
                )
                .unwrap()
                .execute(params![job_id, n_ids as i64, 1_796_000_000_000i64 + i as i64])
                .unwrap();
                let mut add = tx.prepare_cached("INSERT INTO job_customers (job_id, cid) VALUES (?1, ?2)").unwrap();
                for cid in &all[i] {
                    add.execute(params![job_id, cid]).unwrap();
                }
                drop(add);
                conn.prepare_cached("COMMIT").unwrap().execute([]).unwrap();
            };
            insert(iterations); // untimed warm-up, as for native-create
            time_each(iterations, insert)
        }
        "native-update" => {
            let store = open(store_at, sync);
            let id = store.create_job(&NewJob { user_id: "bench", action_name: "Trans-Begin", cids: vec!["c1"], ..Default::default() }).unwrap().job_id;
            time_each(iterations, |_| {
                store.update_job(&id, &JobUpdate { status: tms::model::JobStatus::Success, http_status: Some(200), ..Default::default() }).unwrap();
            })
        }
        "native-log" => {
            let store = open(store_at, sync);
            time_each(iterations, |_| {
                store.record_audit(&AuditEntry { user_id: "bench", action_type: "Trans-Begin", customer_ids: Some(r#"["c1", "c2", "c3"]"#), ..Default::default() }).unwrap();
            })
        }
        "native-list" => {
            let store = open(store_at, sync);
            time_each(iterations, |_| {
                assert!(!store.get_user_jobs("user7", 50).unwrap().is_empty());
            })
        }
        "native-customers" => {
            let store = open(store_at, sync);
            let id = store.get_user_jobs("user7", 1).unwrap().remove(0).job_id;
            time_each(iterations, |_| {
                assert!(!store.get_job_customers(&id).unwrap().is_empty());
            })
        }
        "native-job" => {
            let store = open(store_at, sync);
            let id = store.get_user_jobs("user7", 1).unwrap().remove(0).job_id;
            time_each(iterations, |_| {
                assert_eq!(store.get_job(&id).unwrap().job_id, id);
            })
        }
        "floor-pg" => {
            // The floor of any call on PostgreSQL: one prepared statement's round trip (Bind,
            // Execute, Sync; a one-row answer) on one open connection, with no library around it.
            let location = tms::storage::postgres::location::Location::parse(store_at).unwrap();
            let mut client = location.config.connect(postgres::NoTls).expect("connect for the floor");
            let st = client.prepare("SELECT $1::text").unwrap();
            client.query_one(&st, &[&"warm"]).unwrap();
            time_each(iterations, |_| {
                client.query_one(&st, &[&"x"]).unwrap();
            })
        }
        "populate" => {
            // `iterations` jobs of `n_ids` customers over 100 users, written in large
            // transactions: a fixture, not a measurement.
            drop(open(store_at, "NORMAL")); // the schema, created by the library
            let t = Instant::now();
            if is_postgres_url(store_at) {
                populate_postgres(store_at, iterations, n_ids);
            } else {
                populate_sqlite(sqlite_dir(store_at, what), iterations, n_ids);
            }
            json!({"jobs": iterations, "customers": iterations * n_ids, "seconds": t.elapsed().as_secs_f64()})
        }
        "group-commit" => {
            let store = open(store_at, sync);
            // Jobs per second, and each call's latency (what one caller waits, its share of a
            // batch included).
            let run = |threads: usize| {
                let per = iterations / threads;
                let t = Instant::now();
                let mut latencies: Vec<f64> = std::thread::scope(|s| {
                    let workers: Vec<_> = (0..threads)
                        .map(|th| {
                            let store = &store;
                            s.spawn(move || {
                                (0..per)
                                    .map(|i| {
                                        let a = format!("g{threads}-{th}-{i}");
                                        let call = Instant::now();
                                        store.create_job(&NewJob { user_id: "bench", action_name: "Trans-Begin", cids: vec![&a, "x", "y"], ..Default::default() }).unwrap();
                                        call.elapsed().as_secs_f64() * 1e6
                                    })
                                    .collect::<Vec<f64>>()
                            })
                        })
                        .collect();
                    workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
                });
                let rate = (per * threads) as f64 / t.elapsed().as_secs_f64();
                latencies.sort_by(f64::total_cmp);
                let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
                (rate, at(0.5), at(0.99))
            };
            let (one, one_p50, one_p99) = run(1);
            let (eight, eight_p50, eight_p99) = run(8);
            json!({"one_thread_per_s": one, "eight_threads_per_s": eight, "ratio": eight / one,
                   "one_thread_p50_us": one_p50, "one_thread_p99_us": one_p99,
                   "eight_threads_p50_us": eight_p50, "eight_threads_p99_us": eight_p99})
        }
        "memory" => {
            let store = open(store_at, sync);
            let call = |i: usize| {
                let a = format!("m{i}");
                store.create_job(&NewJob { user_id: "bench", action_name: "Trans-Begin", cids: vec![&a, "x", "y"], ..Default::default() }).unwrap();
            };
            for i in 0..10_000 {
                call(i); // warm up: caches and the pool reach their working size
            }
            let before = rss_kib();
            let t = Instant::now();
            for i in 0..iterations {
                call(10_000 + i);
            }
            let after = rss_kib();
            json!({"calls": iterations, "rss_before_kib": before, "rss_after_kib": after,
                   "growth_mib": (after as f64 - before as f64) / 1024.0, "seconds": t.elapsed().as_secs_f64()})
        }
        "writers" => {
            // Throughput of concurrent writers: `threads` here, perhaps more in other processes
            // started with the same start time, all writing into the same store until it ends.
            let (millis, threads) = (iterations as u64, n_ids);
            let start_ms: u64 = tag.parse().expect("writers: [tag] is the start time, Unix ms");
            let store = open(store_at, sync);
            let pid = std::process::id();
            let job = |th: usize, i: usize| {
                let a = format!("w{pid}-{th}-{i}");
                store.create_job(&NewJob { user_id: "bench", action_name: "Trans-Begin", cids: vec![&a, "x", "y"], ..Default::default() }).unwrap();
            };
            let (counts, late): (Vec<usize>, Vec<bool>) = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|th| {
                        let job = &job;
                        s.spawn(move || {
                            job(th, 0); // untimed: the thread's connection is opened (PostgreSQL) or warmed
                            let now = unix_ms();
                            let late = now > start_ms; // this thread's window is shorter than asked
                            std::thread::sleep(Duration::from_millis(start_ms.saturating_sub(now)));
                            let end = start_ms + millis;
                            let mut n = 0;
                            while unix_ms() < end {
                                n += 1;
                                job(th, n);
                            }
                            (n, late)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).unzip()
            });
            let jobs: usize = counts.iter().sum();
            // From the common start to the last commit (the last call may end past the window).
            let seconds = (unix_ms() - start_ms) as f64 / 1000.0;
            json!({"threads": threads, "jobs": jobs, "seconds": seconds, "per_s": jobs as f64 / seconds,
                   "late": late.iter().any(|&l| l)})
        }
        other => panic!("unknown benchmark {other}"),
    };
    println!("{out}");
}

fn populate_sqlite(dir: &Path, jobs: usize, n_ids: usize) {
    let mut conn = Connection::open(dir.join("jobs.db")).unwrap();
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    for chunk in 0..jobs.div_ceil(1000) {
        let tx = conn.transaction().unwrap();
        {
            let mut job = tx.prepare("INSERT INTO jobs (job_id, user_id, action_code, action_name, created_at, status, updated_at, customer_count)
                                      VALUES (?1, ?2, 1, 'Trans-Begin', ?3, 'SUCCESS', ?3, ?4)").unwrap();
            let mut add = tx.prepare("INSERT INTO job_customers (job_id, cid) VALUES (?1, ?2)").unwrap();
            for j in chunk * 1000..((chunk + 1) * 1000).min(jobs) {
                let (job_id, user, created) = fixture_job(j);
                job.execute(params![job_id, user, created, n_ids as i64]).unwrap();
                for c in 0..n_ids {
                    add.execute(params![job_id, fixture_cid(j, c)]).unwrap();
                }
            }
        }
        tx.commit().unwrap();
    }
}

/// The same rows through COPY, in one transaction, then VACUUM ANALYZE: the planner statistics
/// and visibility map autovacuum would give a store that has been running a while. The fixture
/// connects without TLS (a benchmark server on loopback; sslmode=require is refused here).
fn populate_postgres(url: &str, jobs: usize, n_ids: usize) {
    use std::io::Write;
    let location = tms::storage::postgres::location::Location::parse(url).unwrap();
    let mut client = location.config.connect(postgres::NoTls).expect("connect for the fixture");
    client.batch_execute("SET synchronous_commit = off").unwrap();
    let mut tx = client.transaction().unwrap();
    let mut w = tx.copy_in("COPY jobs (job_id, user_id, action_code, action_name, created_at, status, updated_at, customer_count) FROM STDIN").unwrap();
    for j in 0..jobs {
        let (job_id, user, created) = fixture_job(j);
        writeln!(w, "{job_id}\t{user}\t1\tTrans-Begin\t{created}\tSUCCESS\t{created}\t{n_ids}").unwrap();
    }
    w.finish().unwrap();
    let mut w = tx.copy_in("COPY job_customers (job_id, cid) FROM STDIN").unwrap();
    for j in 0..jobs {
        let (job_id, _, _) = fixture_job(j);
        for c in 0..n_ids {
            writeln!(w, "{job_id}\t{}", fixture_cid(j, c)).unwrap();
        }
    }
    w.finish().unwrap();
    tx.commit().unwrap();
    for table in ["jobs", "job_customers"] {
        // One statement per call: several in one string run as a transaction, which VACUUM refuses.
        client.batch_execute(&format!("VACUUM ANALYZE {table}")).unwrap();
    }
}
