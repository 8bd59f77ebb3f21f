//! TLS with libpq's semantics, through OpenSSL as libpq itself uses it:
//! `prefer` and `require` encrypt and accept any server certificate (X.509
//! v1 included, as `CREATE EXTENSION citus` generates), unless a root
//! certificate file exists, in which case the chain is verified as under
//! `verify-ca`; `verify-ca` checks the chain against `sslrootcert` (or
//! `~/.postgresql/root.crt`, or the system's store with
//! `sslrootcert=system`); `verify-full` also checks the host name (DNS SAN
//! or, without SANs, the common name). `sslcert`/`sslkey` (or
//! `~/.postgresql/postgresql.crt`/`.key` when present) authenticate us.

use std::path::{Path, PathBuf};

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode, SslVersion};
use postgres_openssl::MakeTlsConnector;

use super::{ConnError, SslMode, Target};

/// The files TLS uses, as libpq finds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `sslrootcert` / `PGSSLROOTCERT` (`system`: the system's store).
    pub root: Option<PathBuf>,
    /// `sslcert` / `PGSSLCERT`.
    pub cert: Option<PathBuf>,
    /// `sslkey` / `PGSSLKEY`.
    pub key: Option<PathBuf>,
}

/// libpq's default location of a client-side TLS file, when it exists.
fn default_file(name: &str) -> Option<PathBuf> {
    let p = dirs::home_dir()?.join(".postgresql").join(name);
    p.is_file().then_some(p)
}

/// Whether the server's certificate chain is verified: always under
/// verify-*, and under prefer/require when a root file exists (libpq).
fn verifies(mode: SslMode, root: Option<&Path>) -> bool {
    match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => true,
        SslMode::Prefer | SslMode::Require => root.is_some(),
        SslMode::Disable => false,
    }
}

pub(super) fn connector(t: &Target) -> Result<MakeTlsConnector, ConnError> {
    let fail = |detail: String| ConnError::Tls {
        target: t.display(),
        detail,
    };
    let ssl = |what: &str, path: &Path| {
        let (what, path) = (what.to_string(), path.display().to_string());
        move |e: openssl::error::ErrorStack| fail(format!("{what} {path}: {e}"))
    };
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| fail(e.to_string()))?;
    // libpq's default ssl_min_protocol_version.
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(|e| fail(e.to_string()))?;
    let system = t.tls.root.as_deref() == Some(Path::new("system"));
    let root = match &t.tls.root {
        Some(_) if system => None,
        Some(p) => Some(p.clone()),
        None => default_file("root.crt"),
    };
    let verify = system || verifies(t.sslmode, root.as_deref());
    if verify {
        if system {
            b.set_default_verify_paths()
                .map_err(|e| fail(format!("the system's certificate store: {e}")))?;
        } else {
            let path = root.ok_or_else(|| {
                fail(
                    "sslmode verify-ca/verify-full needs the CA certificate: set sslrootcert=FILE \
                     (or PGSSLROOTCERT, or ~/.postgresql/root.crt; sslrootcert=system for the \
                     system's store)"
                        .into(),
                )
            })?;
            if !path.is_file() {
                return Err(fail(format!(
                    "root certificate file {} does not exist",
                    path.display()
                )));
            }
            b.set_ca_file(&path)
                .map_err(ssl("cannot use sslrootcert", &path))?;
        }
        b.set_verify(SslVerifyMode::PEER);
    } else {
        b.set_verify(SslVerifyMode::NONE);
    }
    let cert = t
        .tls
        .cert
        .clone()
        .or_else(|| default_file("postgresql.crt"));
    if let Some(cert) = cert {
        let key = t
            .tls
            .key
            .clone()
            .or_else(|| default_file("postgresql.key"))
            .ok_or_else(|| {
                fail(format!(
                    "client certificate {} has no key: set sslkey=FILE",
                    cert.display()
                ))
            })?;
        check_key_permissions(&key).map_err(&fail)?;
        b.set_certificate_chain_file(&cert)
            .map_err(ssl("cannot use sslcert", &cert))?;
        b.set_private_key_file(&key, SslFiletype::PEM)
            .map_err(ssl("cannot use sslkey", &key))?;
        b.check_private_key()
            .map_err(ssl("sslkey does not match sslcert", &key))?;
    }
    let mut connector = MakeTlsConnector::new(b.build());
    // verify-full (and sslrootcert=system, which libpq turns into
    // verify-full) checks the host name; nothing else does.
    let check_host = t.sslmode == SslMode::VerifyFull || system;
    connector.set_callback(move |config, _host| {
        config.set_verify_hostname(check_host);
        Ok(())
    });
    Ok(connector)
}

/// libpq refuses a private key others can read (unless root owns it and
/// only its group can).
fn check_key_permissions(key: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(key).map_err(|e| format!("sslkey {}: {e}", key.display()))?;
    let mode = meta.mode();
    let ok = if meta.uid() == 0 {
        mode & 0o037 == 0
    } else {
        mode & 0o077 == 0
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "private key file {} has group or world access; run: chmod 0600 {}",
            key.display(),
            key.display()
        ))
    }
}

/// Whether a connection error came from the TLS layer (handshake or
/// certificate), not from the server or the network: under `prefer`, libpq
/// then tries again without TLS.
pub(super) fn is_tls_failure(e: &tokio_postgres::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        if inner.is::<openssl::ssl::Error>() || inner.is::<openssl::error::ErrorStack>() {
            return true;
        }
        src = inner.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_modes_verify_the_chain() {
        let root = Some(Path::new("/ca.pem"));
        assert!(!verifies(SslMode::Prefer, None));
        assert!(!verifies(SslMode::Require, None));
        assert!(verifies(SslMode::Require, root));
        assert!(verifies(SslMode::Prefer, root));
        assert!(verifies(SslMode::VerifyCa, None));
        assert!(verifies(SslMode::VerifyFull, root));
        assert!(!verifies(SslMode::Disable, root));
    }
}
