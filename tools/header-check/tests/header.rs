//! The committed include/tms.h must be exactly what cbindgen generates from the current source,
//! so C and C++ consumers never compile against a stale ABI. Set TMS_BLESS=1 to regenerate.
//! The TMS_VERSION_* macros are added here from the package version.

use std::path::{Path, PathBuf};

/// The repository root (this crate sits in tools/header-check).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

/// tms-core's version, from its Cargo.toml (this crate has a version of its own).
fn version() -> (String, String, String) {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let line = manifest.lines().find(|l| l.starts_with("version = ")).expect("a version line");
    let v = line.trim_start_matches("version = ").trim_matches('"');
    let mut parts = v.split('.').map(str::to_owned);
    (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
}

#[test]
fn committed_header_matches_cbindgen_output() {
    let root = root();
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let (major, minor, patch) = version();
    // The version macros come from Cargo.toml here, so the header can never disagree with the
    // library it was generated from (cbindgen.toml cannot read the package version itself).
    config.after_includes = Some(format!(
        "\n// The version of libtms this header belongs to (the same as tms_version() returns).\n\
         #define TMS_VERSION_MAJOR {}\n#define TMS_VERSION_MINOR {}\n#define TMS_VERSION_PATCH {}",
        major, minor, patch,
    ));
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&root)
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
        "include/tms.h is stale: run `make header` and commit it"
    );
}

/// The header is installed system-wide (`make install`), so every macro it defines must carry
/// the library's prefix: a new public constant in the Rust sources would otherwise leak into
/// every C program's namespace (add it to cbindgen.toml's `exclude`, or name it TMS_...).
#[test]
fn every_macro_in_the_header_is_prefixed() {
    let header = std::fs::read_to_string(root().join("include/tms.h")).unwrap();
    let stray: Vec<&str> = header
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("#define "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| !name.starts_with("TMS_"))
        .collect();
    assert!(stray.is_empty(), "include/tms.h defines unprefixed macros: {stray:?}");
}
