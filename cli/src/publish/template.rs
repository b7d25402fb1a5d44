//! The template as a release publishes it: the `Release` mapping names the bucket of
//! every region the release is in, the `SupportedRegion` rule lists those regions, and the
//! defaults of `ArtifactPrefix` and `FunctionArchitecture` are the release's, so the
//! customer's link needs only the template URL, a stack name and their own parameters.
//!
//! The file is rewritten as text, block by block, so its comments and layout stay as
//! they are; the result is parsed again and checked.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::package::plan::{
    ARTIFACT_BUCKET, ARTIFACT_PREFIX, FUNCTION_ARCHITECTURE, RELEASE_MAPPING, USE_RELEASE_ARTIFACTS,
};

/// The rule that stops a stack in a region the release is not in.
pub const SUPPORTED_REGION_RULE: &str = "SupportedRegion";

/// Region → bucket, as the template's `Release` mapping has it.
pub fn release_buckets(template: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let parsed: Value = serde_yaml::from_str(template).context("the template is not YAML")?;
    let Some(mapping) = parsed["Mappings"][RELEASE_MAPPING].as_object() else {
        bail!("the template has no Mappings.{RELEASE_MAPPING}");
    };
    let mut out = BTreeMap::new();
    for (region, entry) in mapping {
        let Some(bucket) = entry["Bucket"].as_str() else {
            bail!("Mappings.{RELEASE_MAPPING}.{region} has no Bucket");
        };
        out.insert(region.clone(), bucket.to_owned());
    }
    Ok(out)
}

/// The `Mappings` block for these buckets.
pub fn mappings_block(buckets: &BTreeMap<String, String>) -> String {
    let mut out = format!("Mappings:\n  {RELEASE_MAPPING}:\n");
    for (region, bucket) in buckets {
        out.push_str(&format!("    {region}: {{Bucket: {bucket}}}\n"));
    }
    out
}

/// The `Rules` block: with no `ArtifactBucket`, the stack's region must be one of these.
pub fn rules_block(regions: &[&str]) -> String {
    let list = regions.join(", ");
    format!(
        "Rules:\n  {SUPPORTED_REGION_RULE}:\n    \
         RuleCondition: {{\"Fn::Equals\": [{{Ref: {ARTIFACT_BUCKET}}}, \"\"]}}\n    \
         Assertions:\n      \
         - Assert: {{\"Fn::Contains\": [[{list}], {{Ref: \"AWS::Region\"}}]}}\n        \
         AssertDescription: >-\n          \
         Apiary releases are published in {list} only: create the stack in one of them, \
         or package your own build for this region (apiary package) and give its \
         ArtifactBucket.\n"
    )
}

/// What to write into the template.
#[derive(Debug, Clone)]
pub struct Release<'a> {
    /// Region → bucket; the mapping and the rule list exactly these.
    pub buckets: &'a BTreeMap<String, String>,
    /// The new default of `ArtifactPrefix`, if any.
    pub prefix: Option<&'a str>,
    /// The new default of `FunctionArchitecture`, if any.
    pub arch: Option<&'a str>,
}

/// The template with the release's mapping, rule and defaults written in.
pub fn release_template(template: &str, release: &Release<'_>) -> anyhow::Result<String> {
    if release.buckets.is_empty() {
        bail!("a release needs at least one region");
    }
    let regions: Vec<&str> = release.buckets.keys().map(String::as_str).collect();
    let mut text = replace_block(template, "Mappings", &mappings_block(release.buckets))?;
    text = replace_block(&text, "Rules", &rules_block(&regions))?;
    if let Some(prefix) = release.prefix {
        text = replace_default(&text, ARTIFACT_PREFIX, prefix)?;
    }
    if let Some(arch) = release.arch {
        text = replace_default(&text, FUNCTION_ARCHITECTURE, arch)?;
    }
    check(&text, release)?;
    Ok(text)
}

/// Replaces the top-level `name:` line and the indented lines after it.
fn replace_block(text: &str, name: &str, block: &str) -> anyhow::Result<String> {
    let header = format!("{name}:\n");
    let start = if text.starts_with(&header) {
        0
    } else {
        match text.find(&format!("\n{header}")) {
            Some(at) => at + 1,
            None => bail!("the template has no top-level {name} section"),
        }
    };
    let mut end = start + header.len();
    while end < text.len() && text[end..].starts_with(' ') {
        end += text[end..].find('\n').map_or(text.len() - end, |n| n + 1);
    }
    Ok(format!("{}{block}{}", &text[..start], &text[end..]))
}

/// Replaces the `Default:` of one parameter (which must have one).
fn replace_default(text: &str, parameter: &str, value: &str) -> anyhow::Result<String> {
    let header = format!("\n  {parameter}:\n");
    let Some(at) = text.find(&header) else {
        bail!("the template has no parameter {parameter}");
    };
    let mut line_start = at + header.len();
    while line_start < text.len() && text[line_start..].starts_with("    ") {
        let line_end = text[line_start..]
            .find('\n')
            .map_or(text.len(), |n| line_start + n);
        if text[line_start..line_end].starts_with("    Default:") {
            let quoted = serde_json::to_string(value).expect("a string serializes");
            return Ok(format!(
                "{}    Default: {quoted}{}",
                &text[..line_start],
                &text[line_end..]
            ));
        }
        line_start = line_end + 1;
    }
    bail!("the template's parameter {parameter} has no Default line")
}

/// The rewritten template says what the release says.
fn check(text: &str, release: &Release<'_>) -> anyhow::Result<()> {
    let parsed: Value = serde_yaml::from_str(text).context("the rewritten template is not YAML")?;
    if release_buckets(text)? != *release.buckets {
        bail!("the rewritten template's Mappings.{RELEASE_MAPPING} is not the release's");
    }
    if parsed["Conditions"][USE_RELEASE_ARTIFACTS].is_null() {
        bail!("the template has no condition {USE_RELEASE_ARTIFACTS}");
    }
    let listed =
        &parsed["Rules"][SUPPORTED_REGION_RULE]["Assertions"][0]["Assert"]["Fn::Contains"][0];
    let regions: Vec<&str> = release.buckets.keys().map(String::as_str).collect();
    if listed
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        != Some(regions)
    {
        bail!(
            "the rewritten template's rule {SUPPORTED_REGION_RULE} does not list the release's regions"
        );
    }
    for (parameter, wanted) in [
        (ARTIFACT_PREFIX, release.prefix),
        (FUNCTION_ARCHITECTURE, release.arch),
    ] {
        if let Some(wanted) = wanted
            && parsed["Parameters"][parameter]["Default"].as_str() != Some(wanted)
        {
            bail!("the rewritten template's {parameter} default is not {wanted}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository_template() -> String {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::read_to_string(root.join(crate::package::plan::TEMPLATE)).unwrap()
    }

    #[test]
    fn the_repository_template_holds_exactly_the_generated_blocks() {
        // Its Mappings and Rules are what `apiary publish` would write for its own
        // regions, so the two never drift apart.
        let template = repository_template();
        let buckets = release_buckets(&template).unwrap();
        assert!(buckets.contains_key("us-east-1"), "{buckets:?}");
        let release = Release {
            buckets: &buckets,
            prefix: None,
            arch: None,
        };
        assert_eq!(release_template(&template, &release).unwrap(), template);
    }

    #[test]
    fn a_release_rewrites_the_mapping_the_rule_and_the_defaults() {
        let template = repository_template();
        let buckets = BTreeMap::from([
            ("eu-west-1".to_owned(), "vendor-eu".to_owned()),
            ("us-west-2".to_owned(), "vendor-us".to_owned()),
        ]);
        let release = Release {
            buckets: &buckets,
            prefix: Some("releases/2.0.0/"),
            arch: Some("x86_64"),
        };
        let text = release_template(&template, &release).unwrap();
        assert_eq!(release_buckets(&text).unwrap(), buckets);
        let parsed: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            parsed["Parameters"]["ArtifactPrefix"]["Default"],
            "releases/2.0.0/"
        );
        assert_eq!(
            parsed["Parameters"]["FunctionArchitecture"]["Default"],
            "x86_64"
        );
        let rule = &parsed["Rules"]["SupportedRegion"]["Assertions"][0];
        assert_eq!(
            rule["Assert"]["Fn::Contains"][0],
            serde_json::json!(["eu-west-1", "us-west-2"])
        );
        let description = rule["AssertDescription"].as_str().unwrap();
        assert!(
            description.contains("published in eu-west-1, us-west-2 only"),
            "{description}"
        );
        // Everything else is untouched: only the rewritten lines are new.
        let before: std::collections::BTreeSet<&str> = template.lines().collect();
        let new_lines: Vec<&str> = text.lines().filter(|l| !before.contains(l)).collect();
        assert_eq!(new_lines.len(), 6, "{new_lines:#?}");
        assert!(text.contains("\nResources:\n"));
    }

    #[test]
    fn a_template_without_the_sections_is_refused() {
        let buckets = BTreeMap::from([("us-east-1".to_owned(), "b".to_owned())]);
        let release = Release {
            buckets: &buckets,
            prefix: None,
            arch: None,
        };
        let err = release_template("Parameters: {}\nResources: {}\n", &release)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no top-level Mappings"), "{err}");
        let release = Release {
            buckets: &BTreeMap::new(),
            prefix: None,
            arch: None,
        };
        assert!(release_template(&repository_template(), &release).is_err());
    }

    #[test]
    fn blocks_end_at_the_first_unindented_line() {
        let text = "A:\n  x: 1\nMappings:\n  Old:\n    k: v\n\n# next\nB:\n  y: 2\n";
        let out = replace_block(text, "Mappings", "Mappings:\n  New: {}\n").unwrap();
        assert_eq!(
            out,
            "A:\n  x: 1\nMappings:\n  New: {}\n\n# next\nB:\n  y: 2\n"
        );
        let out = replace_default(
            "P:\n  ArtifactPrefix:\n    Type: String\n    Default: apiary/\n  Next:\n    Default: x\n",
            "ArtifactPrefix",
            "releases/1.0.0/",
        )
        .unwrap();
        assert!(
            out.contains("    Default: \"releases/1.0.0/\"\n  Next:\n    Default: x\n"),
            "{out}"
        );
    }
}
