//! Function packages: one `bootstrap` per zip, byte-for-byte reproducible.
//!
//! The same binary always gives the same zip (fixed timestamp, fixed mode, fixed
//! compression), so the artifacts' hash, and with it the default key prefix, changes
//! only when the code does.

use std::io::{Cursor, Read, Write};

use anyhow::Context;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipArchive, ZipWriter};

/// The entry Lambda's `provided.al2023` runtime executes.
pub const ENTRY: &str = "bootstrap";
/// rwxr-xr-x: Lambda runs the bootstrap as another user than the one that unpacks it.
pub const MODE: u32 = 0o755;

/// A zip holding `binary` as `bootstrap`.
pub fn bootstrap_zip(binary: &[u8]) -> anyhow::Result<Vec<u8>> {
    let options = SimpleFileOptions::DEFAULT
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(9))
        .last_modified_time(DateTime::DEFAULT)
        .system(System::Unix)
        .unix_permissions(MODE);
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    writer
        .start_file(ENTRY, options)
        .context("starting the zip entry")?;
    writer
        .write_all(binary)
        .context("compressing the bootstrap")?;
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

    #[test]
    fn a_damaged_zip_is_an_error() {
        let mut zip = bootstrap_zip(b"hello").unwrap();
        zip.truncate(zip.len() / 2);
        assert!(entries(&zip).is_err());
    }
}
