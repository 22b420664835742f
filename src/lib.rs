//! tms-core: the job-and-audit store of the TMS operator dashboard.
//!
//! Layers, innermost first:
//! - [`action`], [`customer_ids`], [`model`], [`options`], [`error`]: pure data and rules;
//! - [`storage`]: the engine boundary and its SQLite engine (the only code that speaks SQL);
//! - [`store`]: the Rust API (validation, ids, timestamps) over an engine;
//! - `ffi`: the C ABI over the Rust API (`include/tms.h` is generated from it by cbindgen).

pub mod action;
pub mod audit_chain;
pub mod clock;
pub mod customer_ids;
pub mod error;
pub mod model;
pub mod options;
pub mod set_action;
pub mod storage;
pub mod store;
pub(crate) mod uuid;

pub mod ffi;

pub use error::{Error, ErrorKind, Result};
pub use options::{StoreOptions, Synchronous};
pub use store::Store;
