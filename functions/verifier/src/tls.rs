//! Which certificate authorities the verifier trusts.
//!
//! RDS and DocumentDB sign their server certificates with Amazon RDS certificate
//! authorities, which are not in the usual root stores (neither the Lambda runtime's nor
//! webpki's); ElastiCache uses Amazon Trust Services roots. The function package ships
//! one PEM bundle holding both (see the README: the packager appends AWS's
//! `global-bundle.pem` and the Amazon root CAs), and the function trusts exactly the
//! certificates in it, named by [`CA_BUNDLE_ENV`]. Tests point it at a CA they generate.
//! There is no fallback to plaintext and no "accept any certificate" switch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::datastore::StoreError;

/// The environment variable naming the PEM bundle of trusted database CAs.
pub const CA_BUNDLE_ENV: &str = "APIARY_DATABASE_CA_BUNDLE";

/// The bundle's file name in the function's package, beside `bootstrap`: the template
/// sets [`CA_BUNDLE_ENV`] to `/var/task/` followed by it, and `apiary package` puts it
/// there.
pub const CA_BUNDLE_FILE: &str = "database-ca-bundle.pem";

/// The trusted CAs: the bundle's path (the MongoDB driver reads the file itself), its
/// PEM text (the Redis client parses it) and the parsed store (PostgreSQL).
#[derive(Clone)]
pub struct Trust {
    path: PathBuf,
    pem: Vec<u8>,
    roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("path", &self.path)
            .field("certificates", &self.roots.len())
            .finish()
    }
}

/// The certificates of a PEM bundle (`name` says which, in errors): every one must
/// parse and be accepted as a root, and there must be at least one. What the function
/// does at each step, and what packaging checks before it ships a bundle.
pub fn roots(pem: &[u8], name: &str) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| {
            StoreError::Config(format!(
                "the database CA bundle {name} holds a certificate that does not parse: {e}"
            ))
        })?;
        roots.add(cert).map_err(|e| {
            StoreError::Config(format!(
                "the database CA bundle {name} holds a certificate rustls refuses: {e}"
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(StoreError::Config(format!(
            "the database CA bundle {name} holds no certificate"
        )));
    }
    Ok(roots)
}

impl Trust {
    /// Reads the bundle at `path`; every certificate in it must parse, and there must be
    /// at least one.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let pem = std::fs::read(&path).map_err(|e| {
            StoreError::Config(format!(
                "the database CA bundle {} ({CA_BUNDLE_ENV}) cannot be read: {e}",
                path.display()
            ))
        })?;
        let roots = roots(&pem, &path.display().to_string())?;
        Ok(Trust {
            path,
            pem,
            roots: Arc::new(roots),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn pem(&self) -> &[u8] {
        &self.pem
    }

    /// A TLS client configuration that trusts only the bundle, on the aws-lc-rs provider.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, StoreError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Config(format!("TLS settings: {e}")))?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        Ok(config)
    }
}

/// Makes aws-lc-rs the process's TLS provider for clients that ask rustls for the
/// default (the Redis client does). Harmless when one is already installed.
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
