//! Function packages: one `bootstrap` per zip, byte-for-byte reproducible.
//!
//! The same binary always gives the same zip (fixed timestamp, fixed mode, fixed
//! compression), so the artifacts' hash, and with it the default key prefix, changes
//! only when the code does.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipArchive, ZipWriter};

/// The entry Lambda's `provided.al2023` runtime executes.
pub const ENTRY: &str = "bootstrap";
/// rwxr-xr-x: Lambda runs the bootstrap as another user than the one that unpacks it.
pub const MODE: u32 = 0o755;

/// rw-r--r--: a data file the function reads.
pub const DATA_MODE: u32 = 0o644;

/// The function whose package carries the database CA bundle.
pub const VERIFIER: &str = "verifier";

/// A zip holding `binary` as `bootstrap`.
pub fn bootstrap_zip(binary: &[u8]) -> anyhow::Result<Vec<u8>> {
    zip_files(&[(ENTRY, binary, MODE)])
}

/// What the functions' packages carry beside their bootstraps, read and checked before
/// anything is built or written.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    database_ca_bundle: Option<Vec<u8>>,
}

impl Extras {
    /// The verifier trusts exactly the database CA bundle in its package (there is no
    /// fallback and no root store to fall back to): packaging it without one, or with a
    /// file that is not a bundle of certificates the function can load, is refused here,
    /// with the same loader the function uses.
    pub fn load(functions: &[String], database_ca_bundle: Option<&Path>) -> anyhow::Result<Self> {
        if !functions.iter().any(|f| f == VERIFIER) {
            return Ok(Extras::default());
        }
        let Some(path) = database_ca_bundle else {
            bail!(
                "--database-ca-bundle FILE is required: the {VERIFIER} function trusts exactly \
                 the database CA bundle packed with it. Save AWS's global-bundle.pem \
                 (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem) followed \
                 by the Amazon root CAs (https://www.amazontrust.com/repository/) in one file \
                 (see the README, \"TLS trust\")"
            );
        };
        let trust = verifier::tls::Trust::from_file(path)
            .map_err(|e| anyhow!("--database-ca-bundle {}: {e}", path.display()))?;
        Ok(Extras {
            database_ca_bundle: Some(trust.pem().to_vec()),
        })
    }

    /// The zip of `function`: its bootstrap and what it carries beside it.
    pub fn function_zip(&self, function: &str, binary: &[u8]) -> anyhow::Result<Vec<u8>> {
        match (function, &self.database_ca_bundle) {
            (VERIFIER, Some(bundle)) => zip_files(&[
                (ENTRY, binary, MODE),
                (verifier::tls::CA_BUNDLE_FILE, bundle, DATA_MODE),
            ]),
            (VERIFIER, None) => Err(anyhow!(
                "the {VERIFIER} package needs the database CA bundle, which was not loaded"
            )),
            _ => bootstrap_zip(binary),
        }
    }

    /// The entries `function`'s zip must hold besides `bootstrap`.
    pub fn expected_files(function: &str) -> &'static [&'static str] {
        match function {
            VERIFIER => &[verifier::tls::CA_BUNDLE_FILE],
            _ => &[],
        }
    }
}

fn zip_files(files: &[(&str, &[u8], u32)]) -> anyhow::Result<Vec<u8>> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, contents, mode) in files {
        let options = SimpleFileOptions::DEFAULT
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(9))
            .last_modified_time(DateTime::DEFAULT)
            .system(System::Unix)
            .unix_permissions(*mode);
        writer
            .start_file(*name, options)
            .with_context(|| format!("starting the zip entry {name}"))?;
        writer
            .write_all(contents)
            .with_context(|| format!("compressing {name}"))?;
    }
    let cursor = writer.finish().context("finishing the zip")?;
    Ok(cursor.into_inner())
}

/// One file of a zip, as Lambda would unpack it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// The unix mode stored with the entry (permission and file type bits), if any.
    pub unix_mode: Option<u32>,
    pub contents: Vec<u8>,
}

/// Every entry of a zip: how the tests check what was uploaded.
pub fn entries(zip: &[u8]) -> anyhow::Result<Vec<Entry>> {
    let mut archive = ZipArchive::new(Cursor::new(zip)).context("reading the zip")?;
    let mut out = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let mut file = archive
            .by_index(index)
            .with_context(|| format!("reading zip entry {index}"))?;
        let name = file
            .name()
            .with_context(|| format!("zip entry {index} has no readable name"))?
            .into_owned();
        let unix_mode = file.unix_mode();
        let mut contents = Vec::new();
        file.read_to_end(&mut contents)
            .with_context(|| format!("decompressing {name}"))?;
        out.push(Entry {
            name,
            unix_mode,
            contents,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zip_holds_only_an_executable_bootstrap() {
        let binary = b"\x7fELF not really, but bytes all the same".repeat(100);
        let zip = bootstrap_zip(&binary).unwrap();
        let entries = entries(&zip).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, "bootstrap");
        assert_eq!(entries[0].unix_mode.map(|m| m & 0o777), Some(0o755));
        // A regular file, not a directory or a link.
        assert_eq!(entries[0].unix_mode.map(|m| m & 0o170000), Some(0o100000));
        assert_eq!(entries[0].contents, binary);
        assert!(zip.len() < binary.len(), "deflated: {} bytes", zip.len());
    }

    #[test]
    fn the_same_binary_gives_the_same_bytes() {
        let binary: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let first = bootstrap_zip(&binary).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = bootstrap_zip(&binary).unwrap();
        assert_eq!(first, second);
        assert_ne!(bootstrap_zip(b"other").unwrap(), first);
    }

    #[test]
    fn the_timestamp_is_fixed() {
        let zip = bootstrap_zip(b"x").unwrap();
        let mut archive = ZipArchive::new(Cursor::new(zip)).unwrap();
        let file = archive.by_index(0).unwrap();
        assert_eq!(file.last_modified(), Some(DateTime::DEFAULT));
        assert_eq!(file.compression(), CompressionMethod::Deflated);
    }

    fn test_ca() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn functions() -> Vec<String> {
        ["keys", VERIFIER].map(str::to_owned).to_vec()
    }

    #[test]
    fn the_verifier_carries_the_database_ca_bundle_beside_its_bootstrap() {
        let dir = std::env::temp_dir().join(format!("apiary-extras-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bundle = dir.join("bundle.pem");
        let pem = format!("{}{}", test_ca(), test_ca());
        std::fs::write(&bundle, &pem).unwrap();
        let extras = Extras::load(&functions(), Some(&bundle)).unwrap();
        let zip = extras.function_zip(VERIFIER, b"binary").unwrap();
        let entries = entries(&zip).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["bootstrap", verifier::tls::CA_BUNDLE_FILE]);
        assert_eq!(entries[1].contents, pem.as_bytes());
        assert_eq!(entries[1].unix_mode.map(|m| m & 0o777), Some(0o644));
        assert_eq!(
            Extras::expected_files(VERIFIER),
            [verifier::tls::CA_BUNDLE_FILE]
        );
        // The other functions' zips hold their bootstrap only.
        let keys = entries_of(&extras.function_zip("keys", b"binary").unwrap());
        assert_eq!(keys, ["bootstrap"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_template_points_the_verifier_at_the_packed_bundle() {
        let template = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../infra-bootstrap/bootstrap.yaml"),
        )
        .unwrap();
        let line = format!(
            "{}: /var/task/{}",
            verifier::tls::CA_BUNDLE_ENV,
            verifier::tls::CA_BUNDLE_FILE
        );
        assert!(template.contains(&line), "the template sets {line}");
    }

    fn entries_of(zip: &[u8]) -> Vec<String> {
        entries(zip).unwrap().into_iter().map(|e| e.name).collect()
    }

    #[test]
    fn packaging_the_verifier_without_a_loadable_bundle_is_refused() {
        let err = Extras::load(&functions(), None).unwrap_err().to_string();
        assert!(err.contains("--database-ca-bundle"), "{err}");
        assert!(err.contains("global-bundle.pem"), "{err}");
        let dir = std::env::temp_dir().join(format!("apiary-badca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = Extras::load(&functions(), Some(&empty))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no certificate"), "{err}");
        let missing = dir.join("missing.pem");
        let err = Extras::load(&functions(), Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be read"), "{err}");
        // Without the verifier nothing is needed.
        assert!(Extras::load(&["keys".to_owned()], None).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_zip_is_an_error() {
        let mut zip = bootstrap_zip(b"hello").unwrap();
        zip.truncate(zip.len() / 2);
        assert!(entries(&zip).is_err());
    }
}
