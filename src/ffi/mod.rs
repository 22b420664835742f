//! The C ABI: a thin layer that checks pointers and UTF-8, calls the Rust API, and turns results
//! into status codes, JSON text and the thread-local last-error message. No logic lives here.

#[macro_use]
mod boundary;
mod args;
mod audit;
mod cache;
mod jobs;
mod metrics;
mod set_action;
mod status;
mod store;
mod util;

pub use audit::*;
pub use boundary::FfiError;
pub use cache::*;
pub use jobs::*;
pub use metrics::*;
pub use set_action::*;
pub use status::TmsStatus;
pub use store::*;
pub use util::*;
