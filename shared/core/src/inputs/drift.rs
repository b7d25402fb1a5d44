//! The drift input: `{}` (the daily schedule's) reports what differs;
//! `{"repair": true}` also starts a provision, queued behind any running workflow, that
//! converges AWS back to the record.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;

pub const WORKFLOW: &str = "drift";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftInput {
    #[serde(default)]
    pub repair: bool,
}

pub(crate) fn parse(input: Value) -> Result<Value> {
    let parsed: DriftInput = super::read(WORKFLOW, input)?;
    super::normalized(WORKFLOW, parsed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn repair_is_the_only_field() {
        assert_eq!(parse(json!({})).unwrap(), json!({"repair": false}));
        assert_eq!(
            parse(json!({"repair": true})).unwrap(),
            json!({"repair": true})
        );
        let err = parse(json!({"fix": true})).unwrap_err().to_string();
        assert!(err.contains("unknown field `fix`"), "{err}");
    }
}
