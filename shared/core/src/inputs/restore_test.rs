//! The restore-test input: which data stores a run restores and verifies.
//!
//! - `{}` (the weekly schedule's input): every store the spec enables;
//! - `{"stores": ["postgres"]}`: only these (each at most once).

use serde::{Deserialize, Serialize};

use super::backup::{StoreName, check_stores};
use super::read;
use crate::Result;

pub const WORKFLOW: &str = "restore-test";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreTestInput {
    /// The stores to restore and verify; absent: every store the spec enables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stores: Option<Vec<StoreName>>,
}

impl RestoreTestInput {
    /// The stores of this run, in a fixed order.
    pub fn stores(&self) -> Vec<StoreName> {
        match &self.stores {
            Some(stores) => StoreName::ALL
                .into_iter()
                .filter(|s| stores.contains(s))
                .collect(),
            None => StoreName::ALL.to_vec(),
        }
    }
}

/// Reads and normalizes a restore-test input.
pub fn parse(input: serde_json::Value) -> Result<serde_json::Value> {
    let mut parsed: RestoreTestInput = read(WORKFLOW, input)?;
    parsed.stores = check_stores(WORKFLOW, parsed.stores)?;
    super::normalized(WORKFLOW, parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stores_are_checked_like_the_backup_input() {
        assert_eq!(parse(json!({})).unwrap(), json!({}));
        assert_eq!(
            parse(json!({"stores": ["redis", "documentdb"]})).unwrap(),
            json!({"stores": ["documentdb", "redis"]})
        );
        let err = parse(json!({"stores": [], "dry_run": true})).unwrap_err();
        assert!(err.to_string().contains("unknown field `dry_run`"), "{err}");
        let err = parse(json!({"stores": []})).unwrap_err();
        assert!(
            err.to_string()
                .contains("restore-test input field `stores`: empty"),
            "{err}"
        );
    }
}
