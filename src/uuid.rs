//! Random (version 4) UUIDs in their 36-character text form, as the legacy `uuid.uuid4()` made:
//! the `getrandom` crate reads the system's CSPRNG on every platform it supports (a failure is an
//! error, never a panic), the `uuid` crate sets the version bits and formats.

use crate::error::{Error, Result};

/// A new random UUID.
pub fn new_v4() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("cannot read random bytes for an id: {e}")))?;
    Ok(uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_v4_and_distinct() {
        let a = super::new_v4().unwrap();
        let b = super::new_v4().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(a, a.to_lowercase());
    }
}
