//! What `apiary package` will make, read from the template and the code, and checked
//! before anything is built, written or uploaded.
//!
//! The template is the authority on what the stack reads from the artifact bucket: every
//! Lambda's `Code.S3Key` (`${ArtifactPrefix}functions/<crate>.zip`) and every state
//! machine's `DefinitionS3Location.Key` (`${ArtifactPrefix}statemachines/<file>`). Those
//! must agree with the crates in `functions/` and the files in `statemachines/`, and
//! every state machine must pass the engine's validation with the substitutions the
//! template supplies. Every problem is reported, not only the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

pub const TEMPLATE: &str = "infra-bootstrap/bootstrap.yaml";
pub const FUNCTIONS_DIR: &str = "functions";
pub const STATE_MACHINES_DIR: &str = "statemachines";

/// The template parameters `apiary package` fills itself.
pub const ARTIFACT_BUCKET: &str = "ArtifactBucket";
pub const ARTIFACT_PREFIX: &str = "ArtifactPrefix";
pub const FUNCTION_ARCHITECTURE: &str = "FunctionArchitecture";
pub const ARTIFACT_PARAMETERS: [&str; 3] =
    [ARTIFACT_BUCKET, ARTIFACT_PREFIX, FUNCTION_ARCHITECTURE];

/// Fixed text in front of every artifact key in the template.
const PREFIX_REFERENCE: &str = "${ArtifactPrefix}";

/// The condition that is true when `ArtifactBucket` is empty: the stack installs the
/// published release, whose bucket in the stack's region the `Release` mapping names.
pub const USE_RELEASE_ARTIFACTS: &str = "UseReleaseArtifacts";
/// The mapping from region to the published release's bucket (`{Bucket: name}`).
pub const RELEASE_MAPPING: &str = "Release";

/// The one bucket expression every function's `Code.S3Bucket` and every state machine's
/// `DefinitionS3Location.Bucket` uses: the release's bucket for the stack's region,
/// unless `ArtifactBucket` overrides it.
pub fn artifact_bucket_expression() -> Value {
    serde_json::json!({"Fn::If": [
        USE_RELEASE_ARTIFACTS,
        {"Fn::FindInMap": [RELEASE_MAPPING, {"Ref": "AWS::Region"}, "Bucket"]},
        {"Ref": ARTIFACT_BUCKET},
    ]})
}

/// The same expression as the template writes it (its flow-style YAML).
pub const ARTIFACT_BUCKET_YAML: &str = "{\"Fn::If\": [UseReleaseArtifacts, {\"Fn::FindInMap\": \
    [Release, {Ref: \"AWS::Region\"}, Bucket]}, {Ref: ArtifactBucket}]}";

/// The problems found, one per line; the error every check returns.
#[derive(Debug)]
pub struct Problems {
    pub what: String,
    pub problems: Vec<String>,
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.problems.len();
        let noun = if count == 1 { "problem" } else { "problems" };
        write!(
            f,
            "{}, {count} {noun}; nothing was built or uploaded:",
            self.what
        )?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

fn problems_or(what: &str, problems: Vec<String>) -> Result<(), Problems> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problems {
            what: what.to_owned(),
            problems,
        })
    }
}

/// A state machine file the template reads, already validated.
#[derive(Debug, Clone)]
pub struct StateMachineFile {
    /// File name in `statemachines/`, which is also its key under `<prefix>statemachines/`.
    pub name: String,
    pub text: String,
}

/// One template parameter, as far as the quick-create link cares.
#[derive(Debug, Clone, Default)]
pub struct TemplateParameter {
    pub default: Option<String>,
    pub allowed_values: Option<Vec<String>>,
    /// What the console shows under the parameter.
    pub description: Option<String>,
}

/// Everything to package, read from the project.
#[derive(Debug)]
pub struct Plan {
    pub root: PathBuf,
    /// The template, uploaded exactly as it is in the repository.
    pub template: String,
    /// Function crates, sorted; each is a Lambda of the template.
    pub functions: Vec<String>,
    pub state_machines: Vec<StateMachineFile>,
    pub parameters: BTreeMap<String, TemplateParameter>,
}

/// Reads the template and the code under `root` and checks that they agree.
pub fn plan(root: &Path) -> anyhow::Result<Plan> {
    let template_path = root.join(TEMPLATE);
    let text = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    let template: Value = serde_yaml::from_str(&text).with_context(|| {
        format!(
            "{}: not plain YAML (the template uses long-form intrinsics only)",
            template_path.display()
        )
    })?;
    let crates = function_crates(root)?;

    let mut problems = Vec::new();
    let parameters = template_parameters(&template, &mut problems);
    let reads = artifact_reads(&template, &mut problems);

    let referenced: BTreeSet<&str> = reads.functions.values().map(String::as_str).collect();
    for (dir, package) in &crates {
        if dir != package {
            problems.push(format!(
                "{FUNCTIONS_DIR}/{dir}: the crate is named `{package}`; a function's folder, \
                 crate, binary and zip share one name"
            ));
        }
    }
    for name in crates.keys() {
        if !referenced.contains(name.as_str()) {
            problems.push(format!(
                "function crate {FUNCTIONS_DIR}/{name} has no Lambda in {TEMPLATE} \
                 (none has Code.S3Key {PREFIX_REFERENCE}functions/{name}.zip)"
            ));
        }
    }
    for (resource, name) in &reads.functions {
        if !crates.contains_key(name) {
            problems.push(format!(
                "{TEMPLATE}: {resource} runs functions/{name}.zip, but there is no crate \
                 {FUNCTIONS_DIR}/{name}"
            ));
        }
    }

    let mut state_machines = Vec::new();
    for read in &reads.state_machines {
        if let Some(file) = check_state_machine(root, read, &mut problems)
            && !state_machines
                .iter()
                .any(|f: &StateMachineFile| f.name == file.name)
        {
            state_machines.push(file);
        }
    }
    state_machines.sort_by(|a, b| a.name.cmp(&b.name));

    problems_or("the template and the code disagree", problems)?;
    Ok(Plan {
        root: root.to_path_buf(),
        template: text,
        functions: referenced.into_iter().map(str::to_owned).collect(),
        state_machines,
        parameters,
    })
}

/// `functions/<dir>` → the crate name in its Cargo.toml.
fn function_crates(root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let dir = root.join(FUNCTIONS_DIR);
    let mut crates = BTreeMap::new();
    let entries = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let manifest = entry.path().join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let folder = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = package_name(&text) else {
            bail!("{}: no [package] name", manifest.display());
        };
        crates.insert(folder, name);
    }
    Ok(crates)
}

/// The `name` of the `[package]` table of a Cargo.toml.
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
        {
            return Some(value.trim().trim_matches('"').to_owned());
        }
    }
    None
}

fn template_parameters(
    template: &Value,
    problems: &mut Vec<String>,
) -> BTreeMap<String, TemplateParameter> {
    let mut out = BTreeMap::new();
    if let Some(parameters) = template["Parameters"].as_object() {
        for (name, parameter) in parameters {
            out.insert(
                name.clone(),
                TemplateParameter {
                    default: parameter.get("Default").map(scalar_text),
                    allowed_values: parameter["AllowedValues"]
                        .as_array()
                        .map(|values| values.iter().map(scalar_text).collect()),
                    description: parameter["Description"]
                        .as_str()
                        .map(|d| d.trim().to_owned()),
                },
            );
        }
    }
    for name in ARTIFACT_PARAMETERS {
        if !out.contains_key(name) {
            problems.push(format!(
                "{TEMPLATE}: no `{name}` parameter; apiary package sets it for the stack"
            ));
        }
    }
    out
}

/// A YAML scalar as the console shows it: `3` and `"3"` are both `3`.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A state machine the template reads, with the substitutions it supplies.
struct StateMachineRead {
    resource: String,
    file: String,
    substitutions: Vec<String>,
}

#[derive(Default)]
struct ArtifactReads {
    /// Lambda logical id → crate.
    functions: BTreeMap<String, String>,
    state_machines: Vec<StateMachineRead>,
}

fn artifact_reads(template: &Value, problems: &mut Vec<String>) -> ArtifactReads {
    let mut reads = ArtifactReads::default();
    let Some(resources) = template["Resources"].as_object() else {
        problems.push(format!("{TEMPLATE}: no Resources"));
        return reads;
    };
    for (id, resource) in resources {
        let properties = &resource["Properties"];
        match resource["Type"].as_str() {
            Some("AWS::Lambda::Function") => {
                let code = &properties["Code"];
                if code.get("ZipFile").is_some() {
                    continue; // inline code: nothing to package
                }
                let Some(path) = artifact_path(id, "Code", code, "S3Bucket", "S3Key", problems)
                else {
                    continue;
                };
                match path
                    .strip_prefix("functions/")
                    .and_then(|rest| rest.strip_suffix(".zip"))
                    .filter(|name| !name.is_empty() && !name.contains('/'))
                {
                    Some(name) => {
                        reads.functions.insert(id.clone(), name.to_owned());
                    }
                    None => problems.push(format!(
                        "{TEMPLATE}: {id}: Code.S3Key must be \
                         {PREFIX_REFERENCE}functions/<crate>.zip, not {PREFIX_REFERENCE}{path}"
                    )),
                }
            }
            Some("AWS::StepFunctions::StateMachine")
                if properties.get("DefinitionS3Location").is_some() =>
            {
                let location = &properties["DefinitionS3Location"];
                let Some(path) = artifact_path(
                    id,
                    "DefinitionS3Location",
                    location,
                    "Bucket",
                    "Key",
                    problems,
                ) else {
                    continue;
                };
                match path
                    .strip_prefix("statemachines/")
                    .filter(|file| !file.is_empty() && !file.contains('/'))
                {
                    Some(file) => reads.state_machines.push(StateMachineRead {
                        resource: id.clone(),
                        file: file.to_owned(),
                        substitutions: properties["DefinitionSubstitutions"]
                            .as_object()
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_default(),
                    }),
                    None => problems.push(format!(
                        "{TEMPLATE}: {id}: DefinitionS3Location.Key must be \
                         {PREFIX_REFERENCE}statemachines/<file>, not {PREFIX_REFERENCE}{path}"
                    )),
                }
            }
            // A version's description names its code's key, so that a new key publishes
            // a new version; it reads nothing.
            Some("AWS::Lambda::Version") => {}
            _ => {
                let mut found = Vec::new();
                find_prefix_references(resource, &mut found);
                for text in found {
                    problems.push(format!(
                        "{TEMPLATE}: {id} reads `{text}` from the artifact bucket; \
                         apiary package uploads only functions/<crate>.zip, \
                         statemachines/<file> and the template"
                    ));
                }
            }
        }
    }
    reads
}

/// The key under the prefix that `location` reads, after checking that it reads the
/// artifact bucket.
fn artifact_path(
    id: &str,
    property: &str,
    location: &Value,
    bucket_field: &str,
    key_field: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    let bucket = &location[bucket_field];
    if *bucket != artifact_bucket_expression() {
        problems.push(format!(
            "{TEMPLATE}: {id}: {property}.{bucket_field} must be {ARTIFACT_BUCKET_YAML} \
             (the release's bucket unless ArtifactBucket is given), is {bucket}"
        ));
        return None;
    }
    let key = &location[key_field];
    match sub_text(key)
        .and_then(|text| text.strip_prefix(PREFIX_REFERENCE))
        .filter(|rest| !rest.contains("${"))
    {
        Some(path) => Some(path.to_owned()),
        None => {
            problems.push(format!(
                "{TEMPLATE}: {id}: {property}.{key_field} must be \
                 {{\"Fn::Sub\": \"{PREFIX_REFERENCE}<fixed path>\"}}, is {key}"
            ));
            None
        }
    }
}

/// The text of a `{"Fn::Sub": text}` or `{"Fn::Sub": [text, {...}]}`.
fn sub_text(value: &Value) -> Option<&str> {
    let sub = value.get("Fn::Sub")?;
    sub.as_str().or_else(|| sub.as_array()?.first()?.as_str())
}

fn find_prefix_references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text) if text.contains(PREFIX_REFERENCE) => found.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|v| find_prefix_references(v, found)),
        Value::Object(map) => map.values().for_each(|v| find_prefix_references(v, found)),
        _ => {}
    }
}

/// Loads the file the way Step Functions will get it: every substitution the template
/// supplies replaced (by a stand-in ARN) and the result validated by the engine.
fn check_state_machine(
    root: &Path,
    read: &StateMachineRead,
    problems: &mut Vec<String>,
) -> Option<StateMachineFile> {
    let relative = format!("{STATE_MACHINES_DIR}/{}", read.file);
    let path = root.join(&relative);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) => {
            problems.push(format!(
                "{TEMPLATE}: {} reads statemachines/{}, but {relative} cannot be read: {err}",
                read.resource, read.file
            ));
            return None;
        }
    };
    let substitutions: HashMap<String, String> = read
        .substitutions
        .iter()
        .map(|name| {
            let value = format!("arn:aws:lambda:us-east-1:123456789012:function:{name}");
            (name.clone(), value)
        })
        .collect();
    match apiary_asl::StateMachine::load(&text, &substitutions) {
        Ok(_) => Some(StateMachineFile {
            name: read.file.clone(),
            text,
        }),
        Err(errors) => {
            for error in errors.errors() {
                problems.push(format!(
                    "{relative} (with the substitutions of {}): {error}",
                    read.resource
                ));
            }
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small project: a template, function crates and state machine files.
    pub(crate) struct Fixture {
        pub root: PathBuf,
    }

    impl Fixture {
        pub fn new() -> Fixture {
            let root = std::env::temp_dir()
                .join(format!("apiary-package-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(root.join(FUNCTIONS_DIR)).unwrap();
            std::fs::create_dir_all(root.join(STATE_MACHINES_DIR)).unwrap();
            std::fs::create_dir_all(root.join("infra-bootstrap")).unwrap();
            Fixture { root }
        }

        pub fn function_crate(&self, name: &str) -> &Self {
            let dir = self.root.join(FUNCTIONS_DIR).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("Cargo.toml"),
                format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n[dependencies]\nname-like = \"1\"\n"),
            )
            .unwrap();
            self
        }

        pub fn state_machine(&self, file: &str, text: &str) -> &Self {
            std::fs::write(self.root.join(STATE_MACHINES_DIR).join(file), text).unwrap();
            self
        }

        pub fn template(&self, text: &str) -> &Self {
            std::fs::write(self.root.join(TEMPLATE), text).unwrap();
            self
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    pub(crate) const MACHINE: &str = r#"{"StartAt": "Keys", "States": {
        "Keys": {"Type": "Task", "Resource": "${KeysFunctionArn}", "End": true}}}"#;

    pub(crate) fn lambda(id: &str, zip: &str) -> String {
        format!(
            "  {id}:\n    Type: AWS::Lambda::Function\n    Properties:\n      Code:\n        \
             S3Bucket: {ARTIFACT_BUCKET_YAML}\n        \
             S3Key: {{\"Fn::Sub\": \"${{ArtifactPrefix}}functions/{zip}.zip\"}}\n"
        )
    }

    pub(crate) fn machine(id: &str, file: &str) -> String {
        format!(
            "  {id}:\n    Type: AWS::StepFunctions::StateMachine\n    Properties:\n      \
             DefinitionS3Location:\n        Bucket: {ARTIFACT_BUCKET_YAML}\n        \
             Key: {{\"Fn::Sub\": \"${{ArtifactPrefix}}statemachines/{file}\"}}\n      \
             DefinitionSubstitutions:\n        KeysFunctionArn: {{\"Fn::GetAtt\": [KeysFunction, Arn]}}\n"
        )
    }

    pub(crate) fn template(resources: &[String]) -> String {
        format!(
            "Parameters:\n  ArtifactBucket: {{Type: String}}\n  \
             ArtifactPrefix: {{Type: String, Default: apiary/}}\n  \
             FunctionArchitecture: {{Type: String, Default: arm64, AllowedValues: [arm64, x86_64]}}\n  \
             AzCount: {{Type: Number, Default: 3, AllowedValues: [2, 3]}}\n  \
             Domain: {{Type: String}}\n\
             Resources:\n{}",
            resources.concat()
        )
    }

    /// The fixture every test starts from: two crates, both Lambdas, one state machine.
    pub(crate) fn consistent() -> Fixture {
        let fixture = Fixture::new();
        fixture
            .function_crate("keys")
            .function_crate("network")
            .state_machine("provision.asl.json", MACHINE)
            .template(&template(&[
                lambda("KeysFunction", "keys"),
                lambda("NetworkFunction", "network"),
                machine("ProvisionStateMachine", "provision.asl.json"),
            ]));
        fixture
    }

    fn problems(root: &Path) -> Vec<String> {
        let err = plan(root).expect_err("the plan is refused");
        err.downcast::<Problems>()
            .expect("a list of problems")
            .problems
    }

    #[test]
    fn a_consistent_project_gives_its_functions_and_state_machines() {
        let fixture = consistent();
        let plan = plan(&fixture.root).unwrap();
        assert_eq!(plan.functions, ["keys", "network"]);
        assert_eq!(plan.state_machines.len(), 1);
        assert_eq!(plan.state_machines[0].name, "provision.asl.json");
        assert_eq!(plan.state_machines[0].text, MACHINE);
        assert_eq!(plan.parameters["AzCount"].default.as_deref(), Some("3"));
        assert_eq!(
            plan.parameters["AzCount"].allowed_values,
            Some(vec!["2".to_owned(), "3".to_owned()])
        );
        assert!(plan.parameters["Domain"].default.is_none());
    }

    #[test]
    fn a_crate_without_a_lambda_is_named() {
        let fixture = consistent();
        fixture.function_crate("storage");
        let problems = problems(&fixture.root);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("functions/storage has no Lambda"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_lambda_without_a_crate_is_named() {
        let fixture = consistent();
        fixture.template(&template(&[
            lambda("KeysFunction", "keys"),
            lambda("NetworkFunction", "network"),
            lambda("DnsFunction", "dns"),
            machine("ProvisionStateMachine", "provision.asl.json"),
        ]));
        let problems = problems(&fixture.root);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("DnsFunction runs functions/dns.zip"));
        assert!(problems[0].contains("no crate functions/dns"));
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let fixture = consistent();
        fixture.function_crate("storage").template(&template(&[
            lambda("KeysFunction", "keys"),
            lambda("NetworkFunction", "network"),
            lambda("DnsFunction", "dns"),
            machine("ProvisionStateMachine", "teardown.asl.json"),
        ]));
        let err = plan(&fixture.root).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("3 problems"), "{text}");
        assert!(text.contains("functions/storage"), "{text}");
        assert!(text.contains("functions/dns"), "{text}");
        assert!(text.contains("statemachines/teardown.asl.json"), "{text}");
    }

    #[test]
    fn a_missing_state_machine_file_is_named() {
        let fixture = consistent();
        std::fs::remove_file(fixture.root.join("statemachines/provision.asl.json")).unwrap();
        let problems = problems(&fixture.root);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("ProvisionStateMachine reads statemachines/provision.asl.json")
        );
    }

    #[test]
    fn an_invalid_state_machine_is_refused_with_the_engines_problems() {
        let fixture = consistent();
        fixture.state_machine(
            "provision.asl.json",
            r#"{"StartAt": "Keys", "States": {
                "Keys": {"Type": "Task", "Resource": "${KeysFunctionArn}", "Next": "Nowhere"}}}"#,
        );
        let problems = problems(&fixture.root);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("statemachines/provision.asl.json"));
        assert!(problems[0].contains("/States/Keys/Next"), "{problems:?}");
    }

    #[test]
    fn a_placeholder_the_template_does_not_supply_is_refused() {
        let fixture = consistent();
        fixture.state_machine(
            "provision.asl.json",
            r#"{"StartAt": "Dns", "States": {
                "Dns": {"Type": "Task", "Resource": "${DnsFunctionArn}", "End": true}}}"#,
        );
        let problems = problems(&fixture.root);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("DnsFunctionArn"), "{problems:?}");
    }

    #[test]
    fn keys_outside_the_layout_or_bucket_are_refused() {
        let fixture = consistent();
        let other_bucket =
            lambda("KeysFunction", "keys").replace(ARTIFACT_BUCKET_YAML, "some-other-bucket");
        let nested = lambda("NetworkFunction", "network/v2");
        let layer = "  Layer:\n    Type: AWS::Lambda::LayerVersion\n    Properties:\n      \
                     Content: {S3Key: {\"Fn::Sub\": \"${ArtifactPrefix}layers/x.zip\"}}\n"
            .to_owned();
        fixture.template(&template(&[
            other_bucket,
            nested,
            layer,
            machine("ProvisionStateMachine", "provision.asl.json"),
        ]));
        let problems = problems(&fixture.root);
        let text = problems.join("\n");
        assert!(
            text.contains("KeysFunction: Code.S3Bucket must be {\"Fn::If\""),
            "{text}"
        );
        assert!(
            text.contains("NetworkFunction: Code.S3Key must be"),
            "{text}"
        );
        assert!(
            text.contains("Layer reads `${ArtifactPrefix}layers/x.zip`"),
            "{text}"
        );
        // Both crates are now without a Lambda of their own.
        assert!(text.contains("functions/keys has no Lambda"), "{text}");
        assert!(text.contains("functions/network has no Lambda"), "{text}");
        assert_eq!(problems.len(), 5, "{text}");
    }

    #[test]
    fn inline_code_needs_no_package() {
        let fixture = consistent();
        let inline = "  Inline:\n    Type: AWS::Lambda::Function\n    Properties:\n      \
                      Code: {ZipFile: \"def handler(e, c): pass\"}\n"
            .to_owned();
        fixture.template(&template(&[
            lambda("KeysFunction", "keys"),
            lambda("NetworkFunction", "network"),
            inline,
            machine("ProvisionStateMachine", "provision.asl.json"),
        ]));
        assert_eq!(plan(&fixture.root).unwrap().functions, ["keys", "network"]);
    }

    #[test]
    fn a_folder_must_hold_the_crate_of_its_name() {
        let fixture = consistent();
        std::fs::write(
            fixture.root.join("functions/keys/Cargo.toml"),
            "[package]\nname = \"apiary-keys\"\n",
        )
        .unwrap();
        let problems = problems(&fixture.root);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("functions/keys: the crate is named `apiary-keys`"));
    }

    #[test]
    fn package_names_come_from_the_package_table() {
        assert_eq!(
            package_name("[package]\nname = \"keys\"\n[dependencies]\nname = \"x\"\n").as_deref(),
            Some("keys")
        );
        assert_eq!(
            package_name("[workspace]\nname = \"w\"\n[package]\nversion = \"1\"\nname=\"k\"\n")
                .as_deref(),
            Some("k")
        );
        assert_eq!(package_name("[dependencies]\nname = \"x\"\n"), None);
    }
}
