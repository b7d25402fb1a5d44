//! Rendering: where there is no cluster to apply to (the local emulator has no
//! Kubernetes API), every object is written as YAML, one file per object, and checked
//! the way the API server would check it as far as that can be done without one: each
//! file must parse back into its typed object unchanged, and custom resources must pass
//! their JSON Schema. Nothing here claims that anything was applied.

use std::fs;
use std::path::{Path, PathBuf};

use apiary_core::{Error, Result};
use serde::Serialize;
use serde_json::Value;

use crate::manifests::{Manifest, schema};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedFile {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub path: PathBuf,
    /// The file's content differs from what the folder held before.
    pub changed: bool,
    /// A JSON Schema was checked (custom resources), beyond the typed round trip.
    pub schema_checked: bool,
}

const HEADER: &str = "# Rendered by Apiary, not applied. To apply by hand:\n\
                      #   kubectl apply --server-side --field-manager=apiary -f <this folder>\n";

/// Problems a document has as `manifest`'s type (and schema, for custom resources).
pub fn validate(manifest: &Manifest, document: &Value) -> Vec<String> {
    let what = manifest.display();
    let mut problems = Vec::new();
    if let Err(problem) = (manifest.validate)(document) {
        problems.push(format!("{what}: {problem}"));
    }
    if let Some(schema) = manifest.schema
        && let Err(found) = schema::check(schema, document)
    {
        problems.extend(found.into_iter().map(|p| format!("{what}: {p}")));
    }
    problems
}

/// Validates, writes and re-reads every manifest in `folder`, which then holds exactly
/// these objects (files of objects no longer rendered are removed).
pub fn render(folder: &Path, manifests: &[Manifest]) -> Result<Vec<RenderedFile>> {
    let problems: Vec<String> = manifests
        .iter()
        .flat_map(|m| validate(m, &m.body))
        .collect();
    if !problems.is_empty() {
        return Err(Error::Fatal(format!(
            "the workloads manifests are invalid:\n  - {}",
            problems.join("\n  - ")
        )));
    }
    let io = |what: &str, path: &Path, e: std::io::Error| {
        Error::Fatal(format!("{what} {}: {e}", path.display()))
    };
    fs::create_dir_all(folder).map_err(|e| io("cannot create", folder, e))?;
    let names: Vec<String> = manifests
        .iter()
        .enumerate()
        .map(|(i, m)| m.file_name(i + 1))
        .collect();
    for entry in fs::read_dir(folder).map_err(|e| io("cannot list", folder, e))? {
        let path = entry.map_err(|e| io("cannot list", folder, e))?.path();
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if is_rendered_name(file) && !names.iter().any(|n| n == file) {
            fs::remove_file(&path).map_err(|e| io("cannot remove", &path, e))?;
        }
    }

    let mut rendered = Vec::with_capacity(manifests.len());
    for (manifest, name) in manifests.iter().zip(&names) {
        let path = folder.join(name);
        let yaml = serde_yaml::to_string(&manifest.body).map_err(|e| {
            Error::Fatal(format!(
                "{} does not render as YAML: {e}",
                manifest.display()
            ))
        })?;
        let text = format!("{HEADER}{yaml}");
        let changed = fs::read_to_string(&path).ok().as_deref() != Some(text.as_str());
        if changed {
            fs::write(&path, &text).map_err(|e| io("cannot write", &path, e))?;
        }
        // Check what is on disk, not only what was meant to be written.
        let back = fs::read_to_string(&path).map_err(|e| io("cannot read", &path, e))?;
        let document: Value = serde_yaml::from_str(&back)
            .map_err(|e| Error::Fatal(format!("{} is not valid YAML: {e}", path.display())))?;
        if document != manifest.body {
            return Err(Error::Fatal(format!(
                "{} does not read back as the object that was rendered",
                path.display()
            )));
        }
        let problems = validate(manifest, &document);
        if !problems.is_empty() {
            return Err(Error::Fatal(format!(
                "{} is invalid: {}",
                path.display(),
                problems.join("; ")
            )));
        }
        rendered.push(RenderedFile {
            kind: manifest.kind.clone(),
            namespace: manifest.namespace.clone(),
            name: manifest.name.clone(),
            path,
            changed,
            schema_checked: manifest.schema.is_some(),
        });
    }
    Ok(rendered)
}

/// `NN-kind-...yaml`, the names `render` writes.
fn is_rendered_name(file: &str) -> bool {
    let bytes = file.as_bytes();
    file.ends_with(".yaml")
        && bytes.len() > 3
        && bytes[0].is_ascii_digit()
        && bytes[1].is_ascii_digit()
        && bytes[2] == b'-'
}

#[cfg(test)]
mod tests;
