//! Gives the shared library its SONAME, `libtms.so.<major>`, in every build of the cdylib (make,
//! cargo, pip's wheel build alike). Without it a program linked with `-ltms` records the
//! unversioned `libtms.so`, so an incompatible major release installed later would be loaded
//! silently instead of failing to start, and packagers could not keep two majors side by side.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // Only ELF targets have a SONAME; macOS names a library by its install name (set when it is
    // installed) and Windows is not supported (see README "Platforms").
    if os == "macos" || os == "ios" || os == "windows" {
        return;
    }
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libtms.so.{major}");
}
