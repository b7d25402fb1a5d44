//! What the tests against real servers share: the servers' coordinates from the
//! environment (`scripts/databases start` prints them), and certificate authorities the
//! servers do not use, to show an untrusted certificate is refused.

#![allow(dead_code)] // each test file uses its own part

use std::path::PathBuf;

use verifier::Target;
use verifier::tls::Trust;

/// An environment variable `scripts/databases` sets; a missing one fails the test: a
/// test that cannot reach its server must not pass by skipping.
pub fn required(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not set: these tests need the real PostgreSQL and Redis servers. \
             Run `eval \"$(scripts/databases start | sed 's/^/export /')\"` (or scripts/test, \
             which starts them) and try again"
            )
        })
}

/// The test CA that signed the servers' certificates.
pub fn trust() -> Trust {
    Trust::from_file(required("APIARY_TEST_CA")).expect("the test CA bundle reads")
}

/// A CA that signed nothing the servers present.
pub fn foreign_trust() -> (Trust, tempdir::Dir) {
    let dir = tempdir::Dir::new("foreign-ca");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Not the servers' CA");
    let cert = params.self_signed(&key).unwrap();
    let path = dir.path().join("foreign.pem");
    std::fs::write(&path, cert.pem()).unwrap();
    (Trust::from_file(&path).unwrap(), dir)
}

/// `scheme://user:password@host:port/database` into a target (the parts the tests use).
pub fn target_from_url(url: &str) -> Target {
    let rest = url.split_once("://").expect("a URL with a scheme").1;
    let (auth, rest) = rest.rsplit_once('@').expect("credentials in the URL");
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (address, database) = match rest.split_once('/') {
        Some((address, database)) if !database.is_empty() => (address, Some(database.to_owned())),
        Some((address, _)) => (address, None),
        None => (rest, None),
    };
    let (host, port) = address.rsplit_once(':').expect("a port in the URL");
    Target {
        host: host.to_owned(),
        port: port.parse().expect("a numeric port"),
        username: (!user.is_empty()).then(|| user.to_owned()),
        password: password.to_owned(),
        database,
    }
}

pub fn postgres() -> Target {
    target_from_url(&required("APIARY_TEST_POSTGRES_URL"))
}

pub fn redis() -> Target {
    target_from_url(&required("APIARY_TEST_REDIS_URL"))
}

/// A scratch folder removed when dropped.
pub mod tempdir {
    use super::PathBuf;

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(label: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("apiary-verifier-{label}-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
