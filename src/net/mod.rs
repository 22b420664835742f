//! URLs and what travels to them, as text and files only: the allowlist's rules for a cluster
//! URL, the secrets a request carries, and the CA bundles https and PostgreSQL TLS trust. Below
//! both `options` (which checks configured values with these rules) and the layers that call
//! out (`set_action`, the PostgreSQL engine), so that the layers only point down.

pub mod allowlist;
pub mod ca_bundle;
pub mod secrets;
