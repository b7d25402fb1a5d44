//! The teardown workflow's input: `{"confirm": "<deployment name>", "delete_backups": false}`.
//!
//! `confirm` must repeat the deployment's name: a teardown removes the whole data plane,
//! so a console click on the wrong deployment, or a copied input, is refused before any
//! change. The stack-delete path fills it in itself.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub const WORKFLOW: &str = "teardown";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeardownInput {
    /// The deployment's name, typed again.
    #[serde(default)]
    pub confirm: Option<String>,
    /// Also empty and delete the backups bucket and the final snapshots' bucket copy.
    /// Default false: the backups bucket is kept (and the key that protects it).
    #[serde(default)]
    pub delete_backups: bool,
}

impl TeardownInput {
    /// Reads and checks the input for `deployment`.
    pub fn parse(deployment: &str, input: serde_json::Value) -> Result<Self> {
        let parsed: TeardownInput = super::read(WORKFLOW, input)?;
        match parsed.confirm.as_deref() {
            None => Err(Error::invalid_input(format!(
                "workflow input field `confirm` is missing: type the deployment's name \
                 (\"confirm\": \"{deployment}\") to tear it down"
            ))),
            Some(confirm) if confirm != deployment => Err(Error::invalid_input(format!(
                "workflow input field `confirm`: \"{confirm}\" is not the deployment's name \
                 \"{deployment}\"; nothing was changed"
            ))),
            Some(_) => Ok(parsed),
        }
    }
}

/// The normalized input, defaults filled in.
pub fn parse(deployment: &str, input: serde_json::Value) -> Result<serde_json::Value> {
    super::normalized(WORKFLOW, TeardownInput::parse(deployment, input)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn confirm_must_name_the_deployment() {
        let ok = parse("demo", json!({"confirm": "demo"})).unwrap();
        assert_eq!(ok, json!({"confirm": "demo", "delete_backups": false}));
        let with_backups = parse("demo", json!({"confirm": "demo", "delete_backups": true}));
        assert_eq!(with_backups.unwrap()["delete_backups"], json!(true));

        let wrong = parse("demo", json!({"confirm": "prod"})).unwrap_err();
        assert_eq!(wrong.name(), crate::ErrorName::InvalidInput);
        assert!(wrong.to_string().contains("`confirm`"), "{wrong}");
        let missing = parse("demo", json!({})).unwrap_err();
        assert!(
            missing.to_string().contains("`confirm` is missing"),
            "{missing}"
        );
        let unknown = parse("demo", json!({"confirm": "demo", "force": true})).unwrap_err();
        assert!(unknown.to_string().contains("force"), "{unknown}");
        let mistyped = parse("demo", json!({"confirm": "demo", "delete_backups": "yes"}));
        assert!(mistyped.is_err());
    }
}
