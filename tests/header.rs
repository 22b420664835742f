//! The committed include/tms.h must be exactly what cbindgen generates from the current source,
//! so C and C++ consumers never compile against a stale ABI. Set TMS_BLESS=1 to regenerate.

use std::path::Path;

#[test]
fn committed_header_matches_cbindgen_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = root.join("include/tms.h");
    if std::env::var_os("TMS_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/tms.h is stale: run `make header` (TMS_BLESS=1 cargo test --test header) and commit it"
    );
}
