//! A PEM file of CA certificates (the `ca_bundle` option for https clusters, `sslrootcert` for
//! PostgreSQL over TLS).

use ureq::tls::{Certificate, PemItem};

use crate::error::{Error, Result};

/// The certificates of a PEM file; an unreadable file or one without a certificate is an error.
pub fn read_ca_bundle(path: &str) -> Result<Vec<Certificate<'static>>> {
    let pem = std::fs::read(path).map_err(|e| Error::invalid(format!("cannot read {path:?}: {e}")))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(Error::invalid(format!("{path:?} is not a PEM file: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(Error::invalid(format!("{path:?} holds no PEM certificate")));
    }
    Ok(certs)
}

