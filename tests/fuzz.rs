//! Property fuzzing of the parsers that take operator and browser input: customer-ID parsing,
//! action mapping and the /proxy_fetch request parser. Random and mutated inputs, a fixed seed
//! per run (printed), a time budget per target (TMS_FUZZ_SECONDS, default 3): no panic, no hang,
//! and the outputs keep their invariants.

use std::time::{Duration, Instant};

use tms::action::map_action;
use tms::customer_ids::{self, InputFormat, MAX_ID_BYTES};
use tms::set_action::request;

/// xorshift64*: small, deterministic, good enough to drive a fuzzer.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const PIECES: &[&str] = &[
    "", ",", "\n", "\r\n", " ", "\t", "\"", "\"\"", "'", "customer_id", "ID", "c1", "c1", "abc",
    "948ef156c19511f08f342664b3b9825e", "\u{feff}", "\u{0}", "\u{7}", "\u{1b}[31m", "日本", "😀",
    "-", "_", "Trans", "Begin", "PE", "Enable", "T", "Finalize", "Direct", "Tran", "{", "}", "[",
    "]", ":", "null", "true", "1", "-0", "1e999", "\"url\"", "\"postData\"", "\"action\"", "\"cids\"",
    "\"token\"", "\"isPost\"", "\"contentType\"", "\\u0000", "\\ud800", "%2e", "..", "/",
];

fn random_text(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(40) {
        match rng.below(4) {
            0 => s.push(char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('?')),
            1 => s.push_str(&"x".repeat(rng.below(200))),
            _ => s.push_str(rng.pick(PIECES)),
        }
    }
    s
}

fn seed() -> u64 {
    std::env::var("TMS_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    })
}

fn budget() -> Duration {
    let secs = std::env::var("TMS_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

/// Run `check` on fresh inputs until the time budget is spent; returns how many ran.
fn fuzz(name: &str, mut check: impl FnMut(&mut Rng)) {
    let seed = seed();
    println!("{name}: seed {seed} (rerun with TMS_FUZZ_SEED={seed})");
    let mut rng = Rng(seed);
    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let one = Instant::now();
        check(&mut rng);
        // Catastrophic slowness only (a loaded machine must not fail this).
        assert!(one.elapsed() < Duration::from_secs(20), "{name}: one input took {:?}", one.elapsed());
        runs += 1;
    }
    println!("{name}: {runs} inputs");
    assert!(runs > 100);
}

#[test]
fn fuzz_customer_id_parsing() {
    fuzz("customer_ids", |rng| {
        let text = random_text(rng);
        for format in [InputFormat::Manual, InputFormat::Csv] {
            if let Ok(ids) = customer_ids::parse(&text, format) {
                let mut seen = std::collections::HashSet::new();
                for id in &ids {
                    assert!(!id.is_empty() && id.len() <= MAX_ID_BYTES, "{id:?}");
                    assert_eq!(id.trim(), id);
                    assert!(!id.chars().any(char::is_control), "{id:?}");
                    assert!(seen.insert(id.clone()), "repeat {id:?} from {text:?}");
                }
                // Normalizing again changes nothing.
                assert_eq!(customer_ids::normalize(&ids).unwrap(), ids);
            }
        }
    });
}

/// The action table as the legacy contract states it: spellings reduced to lowercase letters,
/// with their code and canonical name (the oracle, written out apart from the library's).
const SPEC: [(&str, i32, &str); 6] = [
    ("transbegin", 1, "Trans-Begin"),
    ("tranbegin", 1, "Trans-Begin"),
    ("peenable", 2, "PE-Enable"),
    ("tenable", 3, "T-Enable"),
    ("pefinalize", 4, "PE-Finalize"),
    ("pedirect", 5, "PE-Direct"),
];

/// A spelling of `key` as an operator or a browser might send it: each letter in either case,
/// and runs of `-`, `_` and spaces anywhere.
fn variant(rng: &mut Rng, key: &str) -> String {
    let mut s = String::new();
    for c in key.chars() {
        for _ in 0..rng.below(3).saturating_sub(1) {
            s.push(rng.pick(&['-', '_', ' ']));
        }
        s.push(if rng.below(2) == 0 { c.to_ascii_uppercase() } else { c });
    }
    for _ in 0..rng.below(3).saturating_sub(1) {
        s.push(rng.pick(&['-', '_', ' ']));
    }
    s
}

/// One small change that may or may not leave a valid name: a letter dropped, doubled or
/// replaced, or a character the mapping does not ignore (tab, dot, digit, a look-alike).
fn near_miss(rng: &mut Rng, name: &str) -> String {
    let mut chars: Vec<char> = name.chars().collect();
    let at = rng.below(chars.len() + 1);
    match rng.below(4) {
        0 if at < chars.len() => {
            chars.remove(at);
        }
        1 if at < chars.len() => chars.insert(at, chars[at]),
        2 if at < chars.len() => chars[at] = rng.pick(&['a', 'e', 'n', 's', 't', 'p', 'x']),
        _ => chars.insert(at, rng.pick(&['\t', '.', '1', '\u{2010}', 'İ', '\u{0}', '/'])),
    }
    chars.into_iter().collect()
}

#[test]
fn fuzz_action_mapping() {
    let (mut valid, mut refused, mut random_mapped) = (0u64, 0u64, 0u64);
    fuzz("map_action", |rng| {
        let (key, code, canonical) = rng.pick(&SPEC);
        let spelled = variant(rng, key);
        // Every spelling of a valid name maps to its action, whatever its case and separators.
        let action = map_action(&spelled).unwrap_or_else(|e| panic!("{spelled:?} refused: {}", e.message));
        assert_eq!((action.code.get(), action.canonical_name), (code, canonical), "{spelled:?}");
        valid += 1;
        // A near miss maps exactly when its letters are still a spelling of the table.
        let missed = near_miss(rng, &spelled);
        let reduced: String = missed.chars().filter(|c| !"-_ ".contains(*c)).map(|c| c.to_ascii_lowercase()).collect();
        match (map_action(&missed), SPEC.iter().find(|(k, _, _)| *k == reduced)) {
            (Ok(a), Some((_, code, _))) => assert_eq!(a.code.get(), *code, "{missed:?}"),
            (Err(e), None) => {
                assert_eq!(e.kind, tms::ErrorKind::UnknownAction, "{missed:?}");
                refused += 1;
            }
            (got, want) => panic!("{missed:?}: mapped {:?}, the table says {want:?}", got.map(|a| a.canonical_name)),
        }
        // Random text maps only when it is a spelling of the table.
        let name = random_text(rng);
        if let Ok(action) = map_action(&name) {
            let key: String = name.chars().filter(|c| !"-_ ".contains(*c)).flat_map(char::to_lowercase).collect();
            assert!(SPEC.iter().any(|(k, code, _)| *k == key && *code == action.code.get()), "{name:?} -> {action:?}");
            random_mapped += 1;
        }
    });
    println!("map_action: {valid} valid spellings mapped, {refused} near misses refused, {random_mapped} random texts mapped");
    // Every input reached the property; most near misses are refused.
    assert!(valid > 100 && refused > valid / 4, "{valid} valid, {refused} refused");
}

#[test]
fn fuzz_the_proxy_fetch_request_parser() {
    let valid = r#"{"url":"https://c.example/tms/v1/set/action","token":"t","isPost":true,"contentType":"application/json","postData":{"action":"Trans-Begin","cids":["a","b","a"]}}"#;
    fuzz("request", |rng| {
        // Half random text, half mutations of a valid request.
        let text = if rng.below(2) == 0 {
            random_text(rng)
        } else {
            let mut bytes = valid.as_bytes().to_vec();
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len());
                match rng.below(3) {
                    0 => bytes[at] = rng.next() as u8,
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.splice(at..at, rng.pick(PIECES).bytes()).for_each(drop),
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        };
        if let Ok(req) = request::parse(&text) {
            assert!(!req.url.is_empty());
            if let Some(sa) = &req.set_action {
                assert!(!sa.cids.is_empty());
                assert_eq!(customer_ids::normalize(&sa.cids).unwrap(), sa.cids);
                assert_eq!(req.post_data.as_ref().unwrap()["cids"], serde_json::json!(sa.cids));
            }
            if let Some(data) = &req.post_data {
                let _ = request::form_fields(data);
            }
        }
    });
}
