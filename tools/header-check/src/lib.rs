//! Nothing to build: the check is tests/header.rs.
