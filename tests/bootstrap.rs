//! Consistency of `infra-bootstrap/bootstrap.yaml` with the code: one Lambda (and role)
//! per function crate, one state machine per ASL file with every substitution provided,
//! the spec's parameters (and the Launch custom resource passing them to provision), no
//! wildcard IAM actions, and delete permissions only where the code deletes. Pure file
//! checks: no emulator, no AWS.
//!
//! The template is written with long-form intrinsics only (`Ref`, `Fn::Sub`,
//! `Fn::GetAtt`), so it parses as plain YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

/// Template parameters that configure the stack itself rather than the spec.
const STACK_PARAMETERS: &[&str] = &[
    "ArtifactBucket",
    "ArtifactPrefix",
    "FunctionArchitecture",
    "OrganizationTrailArn",
    "AlertEmail",
    "PhoneHomeUrl",
    "PhoneHomeSchedule",
    "KeysCheckSchedule",
    "SecretsRotationSchedule",
    "RestoreTestSchedule",
    "OnStackDelete",
];
/// Spec parameters the stack fills from a pseudo parameter instead of asking.
const PSEUDO_SPEC_PARAMETERS: &[(&str, &str)] = &[("Region", "${AWS::Region}")];
/// `dynamodb:DeleteItem` is reached through these `Store` methods, not a direct call.
const STORE_DELETES: &[&str] = &[
    "release_lock",
    "forget_resource",
    "delete_report",
    "release_outbox_lease",
    "release_answer",
];
/// Deletes a role holds that AWS makes with it, not the function's code: Lambda removes
/// an in-VPC function's network interfaces with the function's own role.
const DELETES_BY_AWS: &[(&str, &str)] = &[
    ("workloads", "ec2:DeleteNetworkInterface"),
    ("verifier", "ec2:DeleteNetworkInterface"),
    // S3 checks these per key of a DeleteObjects (`.delete_objects()`) call.
    ("teardown", "s3:DeleteObject"),
    ("teardown", "s3:DeleteObjectVersion"),
];
/// Deletes a function makes through another function crate's code, which must call them:
/// the teardown deletes the backup workflow's snapshots with the backup crate's clients.
const DELETES_THROUGH: &[(&str, &str, &str)] = &[
    ("teardown", "rds:DeleteDBSnapshot", "backup"),
    ("teardown", "rds:DeleteDBClusterSnapshot", "backup"),
    ("teardown", "elasticache:DeleteSnapshot", "backup"),
    // The state table's resource runs the launch crate's code (launch::state_table).
    ("state-table", "dynamodb:DeleteTable", "launch"),
];
/// IAM delete actions whose SDK call has another name: a DeleteObject naming a version.
const DELETE_CALLS: &[(&str, &str)] = &[("s3:DeleteObjectVersion", ".delete_object()")];
/// Functions that need no state table, and why.
const STATELESS_FUNCTIONS: &[(&str, &str)] = &[];
/// The custom resource that starts provision with the stack's parameters.
const LAUNCH_TYPE: &str = "Custom::ApiaryLaunch";

use apiary_e2e::{REGION, function_crates, repo_root as root, template};

fn parse(text: &str) -> Value {
    serde_yaml::from_str(text).expect("the template is plain YAML (long-form intrinsics only)")
}

fn resources<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    template["Resources"]
        .as_object()
        .expect("Resources is a map")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

/// The text of a `{"Fn::Sub": "..."}` or a plain string.
fn sub_text(value: &Value) -> Option<&str> {
    value
        .get("Fn::Sub")
        .and_then(Value::as_str)
        .or_else(|| value.as_str())
}

/// The logical id in `{"Fn::GetAtt": [Id, Arn]}`.
fn get_att_arn(value: &Value) -> Option<&str> {
    let parts = value.get("Fn::GetAtt")?.as_array()?;
    (parts.len() == 2 && parts[1] == "Arn")
        .then(|| parts[0].as_str())
        .flatten()
}

fn asl_files() -> BTreeMap<String, String> {
    std::fs::read_dir(root().join("statemachines"))
        .expect("statemachines/ is readable")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".asl.json").then(|| {
                let text = std::fs::read_to_string(e.path()).expect("ASL file is readable");
                (name, text)
            })
        })
        .collect()
}

/// `${Name}` placeholders in a definition (not `${AWS::...}`-style pseudo references).
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find('}') else { break };
        let name = &rest[..end];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()) {
            found.insert(name.to_owned());
        }
        rest = &rest[end + 1..];
    }
    found
}

/// The crate each Lambda runs, from `apiary-${DeploymentName}-<crate>`.
fn lambda_crate(function: &Value) -> Option<String> {
    sub_text(&function["Properties"]["FunctionName"])?
        .strip_prefix("apiary-${DeploymentName}-")
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------
// Checks: each returns every problem it finds, so a test can show them all.

fn check_functions(template: &Value, crates: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let roles: BTreeMap<&str, &Value> = resources(template, "AWS::IAM::Role").into_iter().collect();
    let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut roles_used: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, function) in resources(template, "AWS::Lambda::Function") {
        let Some(name) = lambda_crate(function) else {
            problems.push(format!(
                "{id}: FunctionName is not apiary-${{DeploymentName}}-<crate>"
            ));
            continue;
        };
        seen.entry(name.clone()).or_default().push(id);
        let props = &function["Properties"];
        let key = sub_text(&props["Code"]["S3Key"]).unwrap_or_default();
        if key != format!("${{ArtifactPrefix}}functions/{name}.zip") {
            problems.push(format!(
                "{id}: Code.S3Key {key:?} is not ${{ArtifactPrefix}}functions/{name}.zip"
            ));
        }
        for (field, want) in [("Runtime", "provided.al2023"), ("Handler", "bootstrap")] {
            if props[field] != want {
                problems.push(format!("{id}: {field} is {} (want {want})", props[field]));
            }
        }
        // One architecture for every function, the one `apiary package --arch` built.
        if props["Architectures"] != serde_json::json!([{"Ref": "FunctionArchitecture"}]) {
            problems.push(format!(
                "{id}: Architectures is not [{{Ref: FunctionArchitecture}}]"
            ));
        }
        // Configuration only, never a secret: the table, and (for the cluster step) the
        // role ARNs that get Kubernetes access and the log shipper's role; for the workloads step the permissions
        // boundary of the role it makes and the Twingate connector's role; for the storage step the organisation trail it uses
        // instead of its own, if any; for the network step the functions it places in
        // the VPC; for the verifier the path of the CA bundle in its package; for the
        // control function its deployment and the provision state machine it starts when
        // ACM issues the certificate a run waited for, and the alerts topic handle-alert
        // publishes to).
        // The launch function: what the stack's OnStackDelete says, and the two state
        // machines a teardown on delete starts; the state-table function: the key that
        // encrypts the table it makes.
        const ALLOWED: [&str; 20] = [
            "APIARY_TABLE",
            "APIARY_TWINGATE_ROLE_ARN",
            "APIARY_METRICS_ROLE_ARN",
            "APIARY_ALERT_ROUTER_ROLE_ARN",
            "APIARY_KUBERNETES_ADMIN_ROLE_ARNS",
            "APIARY_LOG_SHIPPER_ROLE_ARN",
            "APIARY_PERMISSIONS_BOUNDARY_ARN",
            "APIARY_ORGANIZATION_TRAIL_ARN",
            "APIARY_IN_VPC_FUNCTIONS",
            "APIARY_DATABASE_CA_BUNDLE",
            "APIARY_DEPLOYMENT",
            "APIARY_PROVISION_STATE_MACHINE_ARN",
            "APIARY_ALERT_TOPIC_ARN",
            "APIARY_PHONE_HOME_URL",
            "APIARY_SIGNING_KEY_SECRET",
            "APIARY_ON_STACK_DELETE",
            "APIARY_STACK_ID",
            "APIARY_TEARDOWN_STATE_MACHINE_ARN",
            "APIARY_STACK_DELETE_STATE_MACHINE_ARN",
            "APIARY_STATE_KEY_ARN",
        ];
        let variables = props["Environment"]["Variables"].as_object();
        let names: Vec<&str> = variables
            .map(|v| v.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let stateless = STATELESS_FUNCTIONS.iter().any(|(f, _)| *f == name);
        if (!stateless && !names.contains(&"APIARY_TABLE"))
            || names.iter().any(|n| !ALLOWED.contains(n))
        {
            problems.push(format!(
                "{id}: the environment must hold APIARY_TABLE and only {ALLOWED:?}, has {names:?}"
            ));
        }
        match get_att_arn(&props["Role"]).and_then(|r| roles.get(r).map(|v| (r, v))) {
            Some((role_id, role)) => {
                roles_used.entry(role_id).or_default().push(id);
                let role_name = sub_text(&role["Properties"]["RoleName"]).unwrap_or_default();
                if role_name != format!("apiary-${{DeploymentName}}-fn-{name}") {
                    problems.push(format!("{role_id}: role of {id} is named {role_name:?}"));
                }
            }
            None => problems.push(format!(
                "{id}: Role is not the Arn of a role in the template"
            )),
        }
    }
    for (name, ids) in &seen {
        if !crates.contains(name) {
            problems.push(format!("{ids:?}: no crate functions/{name}"));
        }
        if ids.len() > 1 {
            problems.push(format!("crate {name} has {} Lambdas: {ids:?}", ids.len()));
        }
    }
    for name in crates {
        if !seen.contains_key(name) {
            problems.push(format!(
                "crate functions/{name} has no Lambda in the template"
            ));
        }
    }
    for (role, users) in roles_used {
        if users.len() > 1 {
            problems.push(format!(
                "{role} is shared by {users:?}; one role per function"
            ));
        }
    }
    problems
}

fn check_state_machines(template: &Value, files: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let functions: BTreeSet<&str> = resources(template, "AWS::Lambda::Function")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut by_file: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (id, machine) in resources(template, "AWS::StepFunctions::StateMachine") {
        let props = &machine["Properties"];
        let key = sub_text(&props["DefinitionS3Location"]["Key"]).unwrap_or_default();
        let Some(file) = key.strip_prefix("${ArtifactPrefix}statemachines/") else {
            problems.push(format!(
                "{id}: DefinitionS3Location.Key {key:?} is not an artifact ASL file"
            ));
            continue;
        };
        by_file.entry(file.to_owned()).or_default().push(id);
        let provided: BTreeMap<&String, &Value> = props["DefinitionSubstitutions"]
            .as_object()
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        let Some(text) = files.get(file) else {
            problems.push(format!("{id}: statemachines/{file} does not exist"));
            continue;
        };
        let wanted = placeholders(text);
        for name in &wanted {
            if !provided.contains_key(name) {
                problems.push(format!(
                    "{id}: ${{{name}}} in {file} has no DefinitionSubstitution"
                ));
            }
        }
        let mut invoked = BTreeSet::new();
        for (name, value) in &provided {
            if !wanted.contains(name.as_str()) {
                problems.push(format!("{id}: substitution {name} is not used by {file}"));
            }
            if name.ends_with("FunctionArn") {
                match get_att_arn(value) {
                    Some(f) if functions.contains(f) => {
                        invoked.insert(f.to_owned());
                    }
                    _ => match version_of(template, value) {
                        // A published version: the role needs `<arn>:*`, and the plain
                        // ARN for executions started before the function had versions.
                        Ok(f) if functions.contains(f) => {
                            invoked.insert(f.to_owned());
                            invoked.insert(format!("{f}:*"));
                        }
                        Ok(_) => problems
                            .push(format!("{id}: {name} is not the Arn of a template Lambda")),
                        Err(problem) => problems.push(format!("{id}: {name}: {problem}")),
                    },
                }
            }
        }
        if props["TracingConfiguration"]["Enabled"] != true {
            problems.push(format!("{id}: tracing is off"));
        }
        if props["LoggingConfiguration"]["Destinations"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            problems.push(format!("{id}: no log destination"));
        }
        // Its role may invoke exactly the functions its definition names.
        let allowed = get_att_arn(&props["RoleArn"])
            .map(|role| invoke_targets(&template["Resources"][role]))
            .unwrap_or_default();
        if allowed != invoked {
            problems.push(format!(
                "{id}: role allows lambda:InvokeFunction on {allowed:?}, the definition invokes {invoked:?}"
            ));
        }
    }
    for file in files.keys() {
        match by_file.get(file).map(Vec::len) {
            Some(1) => {}
            Some(n) => problems.push(format!("statemachines/{file} has {n} state machines")),
            None => problems.push(format!(
                "statemachines/{file} has no state machine in the template"
            )),
        }
    }
    problems
}

/// The function behind `{Ref: <Name>Version}`: an `AWS::Lambda::Version` of a template
/// Lambda, kept (Retain) when replaced or deleted, since running executions may still
/// call it.
fn version_of<'a>(template: &'a Value, value: &Value) -> Result<&'a str, String> {
    let Some(id) = value.get("Ref").and_then(Value::as_str) else {
        return Err("neither a function's Arn nor a Ref to its version".to_owned());
    };
    let version = &template["Resources"][id];
    if version["Type"] != "AWS::Lambda::Version" {
        return Err(format!("{id} is not an AWS::Lambda::Version"));
    }
    if version["DeletionPolicy"] != "Retain" || version["UpdateReplacePolicy"] != "Retain" {
        return Err(format!(
            "{id} must be retained (DeletionPolicy and UpdateReplacePolicy Retain): running \
             executions call it after an update"
        ));
    }
    version["Properties"]["FunctionName"]["Ref"]
        .as_str()
        .ok_or_else(|| format!("{id}: FunctionName is not a Ref to a template Lambda"))
}

/// What a role may invoke: `F` for a function's ARN, `F:*` for its versions.
fn invoke_targets(role: &Value) -> BTreeSet<String> {
    statements(role)
        .into_iter()
        .filter(|s| actions(s).iter().any(|a| a == "lambda:InvokeFunction"))
        .flat_map(|s| match &s["Resource"] {
            Value::Array(items) => items.clone(),
            one => vec![one.clone()],
        })
        .filter_map(|r| {
            get_att_arn(&r).map(str::to_owned).or_else(|| {
                let text = r.get("Fn::Sub")?.as_str()?;
                let function = text.strip_prefix("${")?.strip_suffix(".Arn}:*")?;
                Some(format!("{function}:*"))
            })
        })
        .collect()
}

fn check_parameters(template: &Value, spec_parameters: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let in_template: BTreeSet<&str> = template["Parameters"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let pseudo: BTreeMap<&str, &str> = PSEUDO_SPEC_PARAMETERS.iter().copied().collect();
    let spec: BTreeSet<&str> = spec_parameters.iter().copied().collect();
    for name in &in_template {
        if !STACK_PARAMETERS.contains(name) && !spec.contains(name) {
            problems.push(format!(
                "parameter {name} feeds no spec field (apiary_core::spec::parameter_names)"
            ));
        }
        let p = &template["Parameters"][*name];
        if p["Description"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("parameter {name} has no Description"));
        }
    }
    // The execution input the Launch custom resource starts provision with.
    let launches = resources(template, LAUNCH_TYPE);
    let Some((launch_id, launch)) = launches.first() else {
        problems.push(format!(
            "no {LAUNCH_TYPE} resource passes the parameters to provision"
        ));
        return problems;
    };
    let input = launch["Properties"]["Input"]["spec"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let passes = |name: &str, source: &str| {
        input
            .get(name)
            .and_then(|v| v.get("Fn::Sub"))
            .and_then(Value::as_str)
            == Some(source)
    };
    for name in &spec {
        match pseudo.get(name) {
            Some(source) => {
                if in_template.contains(name) {
                    problems.push(format!(
                        "{name} is a parameter; the stack takes it from {source}"
                    ));
                }
                if !passes(name, source) {
                    problems.push(format!("{launch_id} does not pass {name} from {source}"));
                }
            }
            None => {
                if !in_template.contains(name) {
                    problems.push(format!("spec parameter {name} is not a template parameter"));
                }
                if !passes(name, &format!("${{{name}}}")) {
                    problems.push(format!("{launch_id} does not pass {name}"));
                }
            }
        }
    }
    for name in input.keys() {
        if !spec.contains(name.as_str()) {
            problems.push(format!(
                "{launch_id} passes {name}, which is no spec parameter"
            ));
        }
    }
    problems
}

/// The Launch custom resource is served by the launch Lambda, starts the provision state
/// machine, and CloudFormation gives up on it soon after that Lambda's timeout.
fn check_launch(template: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let launches = resources(template, LAUNCH_TYPE);
    if launches.len() != 1 {
        problems.push(format!(
            "{} {LAUNCH_TYPE} resources, want 1",
            launches.len()
        ));
    }
    for (id, launch) in launches {
        let props = &launch["Properties"];
        let function = get_att_arn(&props["ServiceToken"])
            .map(|f| (f, &template["Resources"][f]))
            .filter(|(_, f)| lambda_crate(f).as_deref() == Some("launch"));
        let Some((function_id, function)) = function else {
            problems.push(format!(
                "{id}: ServiceToken is not the Arn of the launch Lambda"
            ));
            continue;
        };
        let machine = props["StateMachineArn"]["Ref"].as_str().unwrap_or_default();
        let file =
            sub_text(&template["Resources"][machine]["Properties"]["DefinitionS3Location"]["Key"])
                .unwrap_or_default();
        if file != "${ArtifactPrefix}statemachines/provision.asl.json" {
            problems.push(format!(
                "{id}: StateMachineArn is not a Ref to the provision state machine"
            ));
        }
        let timeout = function["Properties"]["Timeout"]
            .as_u64()
            .unwrap_or_default();
        if timeout != launch::LAMBDA_TIMEOUT.as_secs() {
            problems.push(format!(
                "{function_id}: Timeout {timeout} is not launch::LAMBDA_TIMEOUT ({:?})",
                launch::LAMBDA_TIMEOUT
            ));
        }
        // Long enough for Lambda's two retries of a failed invocation (three attempts,
        // the retries at least 1 and 2 minutes after the attempt before), far short of
        // the default hour; with OnStackDelete=Teardown, the hour CloudFormation allows,
        // past the deadline at which the stack-delete workflow answers plus one poll.
        let (retain, teardown) = match props["ServiceTimeout"]["Fn::If"].as_array() {
            Some(branches) if branches.len() == 3 && branches[0] == "TeardownOnStackDelete" => {
                (branches[2].as_u64(), branches[1].as_u64())
            }
            _ => (None, None),
        };
        let attempts = 3 * timeout + 60 + 120;
        match retain {
            Some(seconds) if (attempts..=600).contains(&seconds) => {}
            other => problems.push(format!(
                "{id}: ServiceTimeout when OnStackDelete is Retain is {other:?} s; want between \
                 {attempts} and 600 (as Fn::If [TeardownOnStackDelete, <teardown>, <retain>])"
            )),
        }
        // A stack delete stops provision and launch::STOPPED_ON_DELETE, never the
        // teardown: the role may list and stop exactly those.
        let role = get_att_arn(&function["Properties"]["Role"])
            .map(|r| &template["Resources"][r])
            .unwrap_or(&Value::Null);
        let granted = |action: &str| -> Vec<Value> {
            statements(role)
                .into_iter()
                .filter(|s| actions(s).iter().any(|a| a == action))
                .flat_map(|s| match &s["Resource"] {
                    Value::Array(items) => items.clone(),
                    one => vec![one.clone()],
                })
                .collect()
        };
        let (listed, stoppable) = (
            granted("states:ListExecutions"),
            granted("states:StopExecution"),
        );
        let machine_of = |workflow: &str| {
            resources(template, "AWS::StepFunctions::StateMachine")
                .into_iter()
                .find(|(_, m)| {
                    sub_text(&m["Properties"]["DefinitionS3Location"]["Key"])
                        == Some(&format!(
                            "${{ArtifactPrefix}}statemachines/{workflow}.asl.json"
                        ))
                })
                .map(|(id, _)| id.to_owned())
        };
        let executions = |workflow: &str| {
            serde_json::json!({"Fn::Sub": format!(
                "arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:execution:apiary-${{DeploymentName}}-{workflow}:*"
            )})
        };
        for workflow in std::iter::once("provision").chain(launch::STOPPED_ON_DELETE) {
            let machine = machine_of(workflow);
            if !machine.is_some_and(|m| listed.contains(&serde_json::json!({"Ref": m}))) {
                problems.push(format!(
                    "{function_id}'s role may not ListExecutions of the {workflow} state machine, which a stack delete stops"
                ));
            }
            if !stoppable.contains(&executions(workflow)) {
                problems.push(format!(
                    "{function_id}'s role may not StopExecution of {workflow}'s executions, which a stack delete stops"
                ));
            }
        }
        if stoppable.len() != 1 + launch::STOPPED_ON_DELETE.len() {
            problems.push(format!(
                "{function_id}'s role may StopExecution {stoppable:?}; only provision and launch::STOPPED_ON_DELETE"
            ));
        }
        let answered_by = launch::ANSWER_WITHIN.as_secs() + 60 + timeout;
        match teardown {
            Some(seconds) if (answered_by..=3600).contains(&seconds) => {}
            other => problems.push(format!(
                "{id}: ServiceTimeout when OnStackDelete is Teardown is {other:?} s; want \
                 between {answered_by} (the answer's deadline, a poll and an attempt) and 3600"
            )),
        }
    }
    problems
}

fn statements(role: &Value) -> Vec<&Value> {
    role["Properties"]["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| {
            p["PolicyDocument"]["Statement"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .collect()
}

/// A role's statements: its inline policies' and those of the template's managed
/// policies that attach themselves to it (`Roles: [{Ref: id}]`).
fn role_statements<'a>(template: &'a Value, role_id: &str) -> Vec<&'a Value> {
    let mut out = statements(&template["Resources"][role_id]);
    let reference = serde_json::json!({"Ref": role_id});
    for (_, policy) in resources(template, "AWS::IAM::ManagedPolicy") {
        if policy["Properties"]["Roles"]
            .as_array()
            .is_some_and(|roles| roles.contains(&reference))
        {
            out.extend(
                policy["Properties"]["PolicyDocument"]["Statement"]
                    .as_array()
                    .into_iter()
                    .flatten(),
            );
        }
    }
    out
}

/// Every role's statements, managed policies attached to it included, by role.
fn every_role_statements(template: &Value) -> Vec<(&str, Vec<&Value>)> {
    resources(template, "AWS::IAM::Role")
        .into_iter()
        .map(|(id, _)| (id, role_statements(template, id)))
        .collect()
}

fn actions(statement: &Value) -> Vec<String> {
    ["Action", "NotAction"]
        .iter()
        .flat_map(|field| match &statement[field] {
            Value::String(a) => vec![a.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

fn check_no_wildcard_actions(template: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, statements) in every_role_statements(template) {
        for statement in statements {
            if statement.get("NotAction").is_some() {
                problems.push(format!("{id}: NotAction grants everything else"));
            }
            for action in actions(statement) {
                let (service, operation) = action.split_once(':').unwrap_or(("", action.as_str()));
                if action == "*" || service == "*" || operation == "*" {
                    problems.push(format!("{id}: wildcard action {action}"));
                }
            }
        }
    }
    problems
}

/// `DeleteDBInstance` -> `delete_db_instance`, the SDK's operation method name.
fn snake_case(operation: &str) -> String {
    let chars: Vec<char> = operation.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn is_delete(action: &str) -> bool {
    let operation = action.split_once(':').map_or(action, |(_, op)| op);
    ["Delete", "Remove", "Terminate", "Release", "Deregister"]
        .iter()
        .any(|verb| operation.starts_with(verb))
        || operation == "ScheduleKeyDeletion"
}

/// A crate's non-test source, whitespace removed, so `.delete_item()` matches however
/// the call chain is wrapped.
fn crate_code(name: &str) -> String {
    fn walk(dir: &Path, out: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            let file = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if file != "tests" {
                    walk(&path, out);
                }
            } else if file.ends_with(".rs")
                && !["tests.rs", "test_support.rs", "fake_api.rs"].contains(&file.as_str())
            {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                out.push_str(&without_test_modules(&text));
            }
        }
    }
    let mut code = String::new();
    walk(&root().join("functions").join(name).join("src"), &mut code);
    code.split_whitespace().collect()
}

fn without_test_modules(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(open) = after.find(['{', ';']) else {
            break;
        };
        if after.as_bytes()[open] == b';' {
            rest = &after[open + 1..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn check_deletes(template: &Value, code_of: &dyn Fn(&str) -> String) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, function) in resources(template, "AWS::Lambda::Function") {
        let (Some(name), Some(role_id)) = (
            lambda_crate(function),
            get_att_arn(&function["Properties"]["Role"]),
        ) else {
            continue;
        };
        let code = code_of(&name);
        // A Deny grants nothing: denying a delete needs no code that deletes.
        for action in role_statements(template, role_id)
            .into_iter()
            .filter(|s| s["Effect"] == "Allow")
            .flat_map(actions)
            .filter(|a| is_delete(a))
        {
            let operation = action.split_once(':').map_or(action.as_str(), |(_, op)| op);
            let call = DELETE_CALLS.iter().find(|(a, _)| *a == action).map_or_else(
                || format!(".{}()", snake_case(operation)),
                |(_, c)| (*c).to_owned(),
            );
            let through = DELETES_THROUGH
                .iter()
                .any(|(f, a, via)| *f == name && *a == action && code_of(via).contains(&call));
            let through_store = action == "dynamodb:DeleteItem"
                && STORE_DELETES
                    .iter()
                    .any(|m| code.contains(&format!(".{m}(")));
            let by_aws = DELETES_BY_AWS
                .iter()
                .any(|(f, a)| *f == name && *a == action);
            if !code.contains(&call) && !through_store && !by_aws && !through {
                problems.push(format!(
                    "{id}: {action} but functions/{name} never calls {call}"
                ));
            }
        }
    }
    problems
}

fn assert_none(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

// ---------------------------------------------------------------------------------

#[test]
fn every_function_crate_has_exactly_one_lambda_and_role() {
    assert_none(
        "functions",
        check_functions(&template(), &function_crates()),
    );
}

#[test]
fn every_state_machine_file_has_one_state_machine_with_its_substitutions() {
    assert_none(
        "state machines",
        check_state_machines(&template(), &asl_files()),
    );
}

#[test]
fn parameters_are_exactly_the_spec_parameters() {
    let spec: Vec<&str> = apiary_core::spec::parameter_names().collect();
    assert_none("parameters", check_parameters(&template(), &spec));
}

#[test]
fn the_launch_resource_starts_provision_and_never_waits_an_hour() {
    assert_none("launch", check_launch(&template()));
}

#[test]
fn no_policy_grants_wildcard_actions() {
    assert_none("IAM", check_no_wildcard_actions(&template()));
}

#[test]
fn delete_permissions_only_where_the_code_deletes() {
    assert_none("deletes", check_deletes(&template(), &crate_code));
}

// The checks themselves: each one fails on a template that breaks its rule.

const BROKEN: &str = r#"
Parameters:
  DeploymentName: {Type: String, Description: name}
  Colour: {Type: String}
Resources:
  KeysRole:
    Type: AWS::IAM::Role
    Properties:
      RoleName: {"Fn::Sub": "apiary-${DeploymentName}-fn-keys"}
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - {Effect: Allow, Action: "*:*", Resource: "*"}
              - {Effect: Allow, Action: [kms:ScheduleKeyDeletion, ec2:DeleteVpc], Resource: "*"}
  KeysFunction:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: {"Fn::Sub": "apiary-${DeploymentName}-keys"}
      Code: {S3Key: {"Fn::Sub": "${ArtifactPrefix}functions/keys.zip"}}
      Runtime: provided.al2023
      Handler: bootstrap
      Architectures: [arm64]
      Environment: {Variables: {APIARY_TABLE: t}}
      Role: {"Fn::GetAtt": [KeysRole, Arn]}
  Machine:
    Type: AWS::StepFunctions::StateMachine
    Properties:
      RoleArn: {"Fn::GetAtt": [KeysRole, Arn]}
      DefinitionS3Location: {Key: {"Fn::Sub": "${ArtifactPrefix}statemachines/provision.asl.json"}}
      DefinitionSubstitutions: {KeysFunctionArn: {"Fn::GetAtt": [KeysFunction, Arn]}}
      TracingConfiguration: {Enabled: true}
      LoggingConfiguration: {Destinations: [{}]}
  Launch:
    Type: Custom::ApiaryLaunch
    Properties:
      ServiceToken: {"Fn::GetAtt": [KeysFunction, Arn]}
      StateMachineArn: {Ref: Machine}
      Input:
        spec:
          DeploymentName: {"Fn::Sub": "${DeploymentName}"}
          Colour: {"Fn::Sub": "${Colour}"}
"#;

#[test]
fn the_checks_catch_a_broken_template() {
    let broken = parse(BROKEN);
    let crates: BTreeSet<String> = ["keys", "network"].map(String::from).into();
    let functions = check_functions(&broken, &crates);
    assert!(
        functions
            .iter()
            .any(|p| p.contains("functions/network has no Lambda")),
        "{functions:?}"
    );
    assert!(
        functions
            .iter()
            .any(|p| p.contains("KeysFunction: Architectures is not")),
        "{functions:?}"
    );

    let files = BTreeMap::from([
        (
            "provision.asl.json".to_owned(),
            r#"{"a": "${KeysFunctionArn}", "b": "${NetworkFunctionArn}"}"#.to_owned(),
        ),
        ("teardown.asl.json".to_owned(), "{}".to_owned()),
    ]);
    let machines = check_state_machines(&broken, &files);
    assert!(
        machines.iter().any(|p| p.contains("${NetworkFunctionArn}")),
        "{machines:?}"
    );
    assert!(
        machines
            .iter()
            .any(|p| p.contains("teardown.asl.json has no state machine")),
        "{machines:?}"
    );
    assert!(
        machines.iter().any(|p| p.contains("lambda:InvokeFunction")),
        "{machines:?}"
    );

    let parameters = check_parameters(&broken, &["DeploymentName", "Region", "Size"]);
    for expected in [
        "Colour feeds no spec field",
        "Colour has no Description",
        "Size is not a template parameter",
        "Launch does not pass Region",
        "Launch passes Colour, which is no spec parameter",
    ] {
        assert!(
            parameters.iter().any(|p| p.contains(expected)),
            "{expected}: {parameters:?}"
        );
    }

    let launch = check_launch(&broken);
    assert!(
        launch
            .iter()
            .any(|p| p.contains("ServiceToken is not the Arn of the launch Lambda")),
        "{launch:?}"
    );

    let wildcards = check_no_wildcard_actions(&broken);
    assert!(wildcards.iter().any(|p| p.contains("*:*")), "{wildcards:?}");

    let code = |_: &str| ".create_key().schedule_key_deletion()".to_owned();
    let deletes = check_deletes(&broken, &code);
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(deletes[0].contains("ec2:DeleteVpc"), "{deletes:?}");
}

#[test]
fn a_state_machine_calls_only_retained_versions_its_role_may_invoke() {
    let template = serde_json::json!({"Resources": {
        "KeysVersion": {"Type": "AWS::Lambda::Version", "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {"FunctionName": {"Ref": "KeysFunction"}}},
        "LooseVersion": {"Type": "AWS::Lambda::Version",
            "Properties": {"FunctionName": {"Ref": "KeysFunction"}}},
    }});
    assert_eq!(
        version_of(&template, &serde_json::json!({"Ref": "KeysVersion"})),
        Ok("KeysFunction")
    );
    let loose = version_of(&template, &serde_json::json!({"Ref": "LooseVersion"})).unwrap_err();
    assert!(loose.contains("must be retained"), "{loose}");
    let other = version_of(&template, &serde_json::json!({"Ref": "KeysFunction"})).unwrap_err();
    assert!(other.contains("is not an AWS::Lambda::Version"), "{other}");
    let role = serde_json::json!({"Properties": {"Policies": [{"PolicyDocument": {"Statement": [
        {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": [
            {"Fn::GetAtt": ["KeysFunction", "Arn"]},
            {"Fn::Sub": "${KeysFunction.Arn}:*"}]}]}}]}});
    assert_eq!(
        invoke_targets(&role),
        BTreeSet::from(["KeysFunction".to_owned(), "KeysFunction:*".to_owned()])
    );
}

#[test]
fn operation_names_map_to_sdk_methods() {
    assert_eq!(snake_case("DeleteDBInstance"), "delete_db_instance");
    assert_eq!(snake_case("ScheduleKeyDeletion"), "schedule_key_deletion");
    assert_eq!(snake_case("DeleteItem"), "delete_item");
    assert!(is_delete("rds:DeleteDBSnapshot") && !is_delete("rds:DescribeDBSnapshots"));
    let code = without_test_modules("a();\n#[cfg(test)]\nmod tests { fn x() { b(); } }\nc();");
    assert!(
        code.contains("a()") && code.contains("c()") && !code.contains("b()"),
        "{code}"
    );
}

/// The KMS actions that change a key (its policy, its state, its rotation) are never
/// granted by IAM to a role of the stack: a role that creates tagged keys needs
/// `kms:TagResource` on every key of the account, so it could tag anyone's key as the
/// deployment's, and a tag-conditioned IAM grant would then reach that key. Each
/// deployment key's own policy grants them to the function roles by name
/// (`keys::KEY_POLICY_GRANTS`, checked in the keys function's tests).
fn check_key_changes_not_in_iam(template: &Value) -> Vec<String> {
    const KEY_CHANGES: &[&str] = &[
        "kms:PutKeyPolicy",
        "kms:ScheduleKeyDeletion",
        "kms:CancelKeyDeletion",
        "kms:DisableKey",
        "kms:EnableKey",
        "kms:EnableKeyRotation",
        "kms:DisableKeyRotation",
        "kms:RotateKeyOnDemand",
        "kms:UntagResource",
        "kms:UpdateKeyDescription",
        "kms:ReplicateKey",
    ];
    let mut problems = Vec::new();
    for (id, statements) in every_role_statements(template) {
        for statement in statements {
            if statement["Effect"] != "Allow" {
                continue;
            }
            for action in actions(statement) {
                let granted = KEY_CHANGES.iter().any(|change| {
                    action == *change
                        || action
                            .strip_suffix('*')
                            .is_some_and(|prefix| change.starts_with(prefix))
                });
                if granted {
                    problems.push(format!(
                        "{id}: grants {action} through IAM; a key's own policy must grant it"
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn no_role_changes_keys_through_iam() {
    assert_none(
        "key changes granted by IAM",
        check_key_changes_not_in_iam(&template()),
    );
    // The check can fail: a template granting PutKeyPolicy by tag is caught.
    let mut broken = template();
    let keys_role = broken["Resources"]["KeysRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        ["Statement"]
        .as_array_mut()
        .expect("the keys role has statements");
    keys_role.push(serde_json::json!({
        "Effect": "Allow", "Action": ["kms:PutKeyPolicy"], "Resource": "*",
        "Condition": {"StringEquals": {"aws:ResourceTag/apiary:deployment": "acme"}}
    }));
    let problems = check_key_changes_not_in_iam(&broken);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("KeysRole: grants kms:PutKeyPolicy"),
        "{problems:?}"
    );
}

/// Fn::Sub substitutes values, never map keys: a condition key written with `${...}`
/// reaches IAM literally and the statement never matches.
fn check_condition_keys(template: &Value) -> Vec<String> {
    fn walk(value: &Value, path: &str, problems: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if map.contains_key("Effect")
                    && let Some(Value::Object(condition)) = map.get("Condition")
                {
                    for (operator, keys) in condition {
                        for key in keys.as_object().into_iter().flat_map(|k| k.keys()) {
                            if key.contains("${") {
                                problems.push(format!(
                                    "{path}: condition {operator} key {key} is never substituted"
                                ));
                            }
                        }
                    }
                }
                for (field, inner) in map {
                    walk(inner, &format!("{path}/{field}"), problems);
                }
            }
            Value::Array(items) => {
                for (i, inner) in items.iter().enumerate() {
                    walk(inner, &format!("{path}/{i}"), problems);
                }
            }
            _ => {}
        }
    }
    let mut problems = Vec::new();
    walk(&template["Resources"], "Resources", &mut problems);
    problems
}

#[test]
fn no_iam_condition_key_holds_a_substitution() {
    assert_none("condition keys", check_condition_keys(&template()));
    // The check can fail: a key naming the cluster through ${DeploymentName} is caught.
    let mut broken = template();
    let teardown = broken["Resources"]["TeardownRole"]["Properties"]["Policies"][0]
        ["PolicyDocument"]["Statement"]
        .as_array_mut()
        .expect("the teardown role has statements");
    teardown.push(serde_json::json!({
        "Effect": "Allow", "Action": ["ec2:DeleteVolume"], "Resource": "*",
        "Condition": {"StringLike": {
            "aws:ResourceTag/kubernetes.io/cluster/apiary-${DeploymentName}-eks": "*"
        }}
    }));
    let problems = check_condition_keys(&broken);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("TeardownRole"), "{problems:?}");
}

/// The longest window CloudWatch evaluates an alarm over: Period x EvaluationPeriods
/// above it fails the stack's creation.
const ALARM_WINDOW_LIMIT: i64 = 604_800;

fn check_alarm_windows(template: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, alarm) in resources(template, "AWS::CloudWatch::Alarm") {
        let properties = &alarm["Properties"];
        // A metric-math alarm carries its periods in its Metrics' MetricStat.
        let period = properties["Period"].as_i64().or_else(|| {
            properties["Metrics"].as_array().and_then(|metrics| {
                metrics
                    .iter()
                    .filter_map(|m| m["MetricStat"]["Period"].as_i64())
                    .max()
            })
        });
        let (Some(period), Some(evaluations)) = (period, properties["EvaluationPeriods"].as_i64())
        else {
            problems.push(format!(
                "{id}: Period and EvaluationPeriods must be plain numbers"
            ));
            continue;
        };
        if period * evaluations > ALARM_WINDOW_LIMIT {
            problems.push(format!(
                "{id}: Period {period} x EvaluationPeriods {evaluations} = {} s exceeds \
                 CloudWatch's {ALARM_WINDOW_LIMIT} s",
                period * evaluations
            ));
        }
    }
    problems
}

#[test]
fn every_alarm_evaluates_within_cloudwatchs_window() {
    let template = template();
    assert!(
        !resources(&template, "AWS::CloudWatch::Alarm").is_empty(),
        "the template has alarms to check"
    );
    assert_none("alarms", check_alarm_windows(&template));
    // The check catches an eight-day window.
    let broken = parse(
        r#"
Resources:
  Missed:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Period: 86400
      EvaluationPeriods: 8
"#,
    );
    let problems = check_alarm_windows(&broken);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("691200"), "{problems:?}");
}

/// The backup role's scoped deletes: each also needs the deployment's own tag, so a name
/// prefix shared with another deployment (`apiary-a-*` covers `apiary-a-b-*`) deletes
/// nothing of it.
const DEPLOYMENT_SCOPED_DELETES: &[&str] = &[
    "PruneOwnSnapshots",
    "PruneOwnClusterSnapshots",
    "DeleteScratchInstances",
    "DeleteScratchClusters",
    "PruneOwnRedisSnapshots",
    "DeleteScratchRedis",
    "DeleteScratchSecrets",
];

#[test]
fn the_backup_deletes_are_scoped_to_the_deployments_tag() {
    let template = template();
    let mut problems = Vec::new();
    for sid in DEPLOYMENT_SCOPED_DELETES {
        let found: Vec<&Value> = resources(&template, "AWS::IAM::Role")
            .into_iter()
            .flat_map(|(id, _)| role_statements(&template, id))
            .filter(|s| s["Sid"] == *sid)
            .collect();
        if found.len() != 1 {
            problems.push(format!("{sid}: {} statements, expected 1", found.len()));
            continue;
        }
        let condition = &found[0]["Condition"]["StringEquals"]["aws:ResourceTag/apiary:deployment"];
        if *condition != serde_json::json!({"Ref": "DeploymentName"}) {
            problems.push(format!(
                "{sid}: no aws:ResourceTag/apiary:deployment = DeploymentName condition"
            ));
        }
    }
    assert_none("scoped deletes", problems);
}

/// The teardown role's grants that a name prefix alone would stretch to another
/// deployment (`apiary-acme-*` covers `apiary-acme-prod-*`), or to the whole account:
/// role changes need the deployment's tag, no instance profile is open by wildcard
/// (only Karpenter's, named after the cluster and tagged with it), the final snapshots
/// are this deployment's stores and names, the backup deletes need both tags, and the
/// DocumentDB cluster parameter group is named exactly.
fn check_teardown_scoping(template: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if template["Resources"].get("TeardownRole").is_none() {
        return vec!["no TeardownRole".to_owned()];
    }
    let role_statements = role_statements(template, "TeardownRole");
    let resources_of = |statement: &Value| -> Vec<String> {
        match &statement["Resource"] {
            Value::Array(items) => items
                .iter()
                .map(|r| sub_text(r).unwrap_or_default().to_owned())
                .collect(),
            other => vec![sub_text(other).unwrap_or_default().to_owned()],
        }
    };
    let deployment_tag = |statement: &Value| {
        statement["Condition"]["StringEquals"]["aws:ResourceTag/apiary:deployment"]
            == serde_json::json!({"Ref": "DeploymentName"})
    };
    let by_sid =
        |sid: &str| -> Option<&Value> { role_statements.iter().copied().find(|s| s["Sid"] == sid) };
    for statement in role_statements.iter().copied() {
        let sid = statement["Sid"].as_str().unwrap_or("?");
        let resources = resources_of(statement);
        // Every profile only for reading, or for a change conditioned on the tag that
        // names this deployment's cluster (Karpenter's profiles carry a path in their ARN).
        let cluster_tagged = ["karpenter.sh/managed-by", "eks:eks-cluster-name"]
            .iter()
            .any(|tag| {
                statement["Condition"]["StringEquals"][format!("aws:ResourceTag/{tag}")]
                    == serde_json::json!({"Fn::Sub": "apiary-${DeploymentName}-eks"})
            });
        let reads_only = actions(statement).iter().all(|a| a.starts_with("iam:List"));
        if resources.iter().any(|r| r.ends_with(":instance-profile/*"))
            && !cluster_tagged
            && !reads_only
        {
            problems.push(format!("{sid}: every instance profile of the account"));
        }
        let changes_roles = actions(statement)
            .iter()
            .any(|a| (a.starts_with("iam:") && is_delete(a)) || a == "iam:DetachRolePolicy");
        if changes_roles
            && resources.iter().any(|r| r.contains(":role/"))
            && !deployment_tag(statement)
        {
            problems.push(format!(
                "{sid}: changes roles by name prefix without aws:ResourceTag/apiary:deployment"
            ));
        }
    }
    match by_sid("FinalSnapshotsTagged") {
        Some(statement) => {
            for resource in resources_of(statement) {
                if resource.ends_with(":*") || !resource.contains(":apiary-${DeploymentName}-") {
                    problems.push(format!(
                        "FinalSnapshotsTagged: {resource} is not this deployment's store or snapshot"
                    ));
                }
            }
        }
        None => problems.push("no FinalSnapshotsTagged statement".to_owned()),
    }
    for sid in [
        "DeleteTheBackups",
        "DeleteTheClusterBackups",
        "DeleteTheRedisBackups",
    ] {
        match by_sid(sid) {
            Some(statement) => {
                let backup =
                    &statement["Condition"]["StringEquals"]["aws:ResourceTag/apiary:backup"];
                if !deployment_tag(statement) || *backup != "snapshot" {
                    problems.push(format!(
                        "{sid}: needs aws:ResourceTag/apiary:backup = snapshot and the deployment's tag"
                    ));
                }
            }
            None => problems.push(format!("no {sid} statement")),
        }
    }
    match by_sid("DeleteTheDocumentDbParameterGroup") {
        Some(statement) => {
            let resources = resources_of(statement);
            let exact = "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:cluster-pg:apiary-${DeploymentName}-docdb5";
            if resources != [exact] {
                problems.push(format!(
                    "DeleteTheDocumentDbParameterGroup: {resources:?}, expected only {exact}"
                ));
            }
        }
        None => problems.push("no DeleteTheDocumentDbParameterGroup statement".to_owned()),
    }
    problems
}

#[test]
fn the_teardown_role_touches_only_this_deployments_roles_profiles_and_snapshots() {
    assert_none("teardown scoping", check_teardown_scoping(&template()));
    // The grants as they were: each one is caught.
    let old = parse(
        r#"
Resources:
  TeardownRole:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: teardown
          PolicyDocument:
            Statement:
              - Sid: FinalSnapshotsTagged
                Effect: Allow
                Action: [rds:CreateDBSnapshot]
                Resource:
                  - {"Fn::Sub": "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:*"}
                Condition:
                  StringEquals: {"aws:RequestTag/apiary:deployment": {"Ref": DeploymentName}}
              - Sid: DeleteTheRoles
                Effect: Allow
                Action: [iam:DeleteRole, iam:RemoveRoleFromInstanceProfile]
                Resource:
                  - {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/apiary-${DeploymentName}-*"}
                  - {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:instance-profile/*"}
              - Sid: DeleteTheInstanceProfiles
                Effect: Allow
                Action: [iam:DeleteInstanceProfile]
                Resource:
                  - {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:instance-profile/*"}
"#,
    );
    let problems = check_teardown_scoping(&old);
    for expected in [
        "DeleteTheRoles: every instance profile",
        "DeleteTheInstanceProfiles: every instance profile",
        "DeleteTheRoles: changes roles by name prefix",
        "FinalSnapshotsTagged: arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:*",
        "no DeleteTheBackups statement",
        "no DeleteTheDocumentDbParameterGroup statement",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected} not reported: {problems:#?}"
        );
    }
}

/// Every state machine has an alarm on its failed runs, and every queue (the schedules'
/// dead letters) an alarm on its messages: a scheduled workflow that fails, or never
/// starts, is otherwise seen by nobody.
fn check_unwatched(template: &Value) -> Vec<String> {
    let alarms = resources(template, "AWS::CloudWatch::Alarm");
    let watches = |metric: &str, dimension: &str, value: &Value| {
        alarms.iter().any(|(_, alarm)| {
            let properties = &alarm["Properties"];
            let mut metrics: Vec<&Value> = vec![properties];
            if let Some(list) = properties["Metrics"].as_array() {
                metrics.extend(list.iter().map(|m| &m["MetricStat"]["Metric"]));
            }
            metrics.iter().any(|m| {
                m["MetricName"] == metric
                    && m["Dimensions"].as_array().is_some_and(|d| {
                        d.iter()
                            .any(|d| d["Name"] == dimension && &d["Value"] == value)
                    })
            })
        })
    };
    let mut problems = Vec::new();
    for (id, _) in resources(template, "AWS::StepFunctions::StateMachine") {
        if !watches(
            "ExecutionsFailed",
            "StateMachineArn",
            &serde_json::json!({"Ref": id}),
        ) {
            problems.push(format!("{id}: no alarm on ExecutionsFailed"));
        }
    }
    for (id, _) in resources(template, "AWS::SQS::Queue") {
        if !watches(
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            &serde_json::json!({"Fn::GetAtt": [id, "QueueName"]}),
        ) {
            problems.push(format!("{id}: no alarm on its messages"));
        }
    }
    problems
}

#[test]
fn every_workflow_and_dead_letter_queue_is_watched() {
    let template = template();
    assert_none("unwatched", check_unwatched(&template));
    // The check can fail: a state machine and a queue without alarms are named.
    let bare = parse(
        r#"
Resources:
  LonelyStateMachine:
    Type: AWS::StepFunctions::StateMachine
  LonelyQueue:
    Type: AWS::SQS::Queue
"#,
    );
    let problems = check_unwatched(&bare);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("LonelyStateMachine"), "{problems:?}");
    assert!(problems[1].contains("LonelyQueue"), "{problems:?}");
}

/// Every alarm that tells nobody: no action on the alerts topic when it fires or clears,
/// or a name outside `apiary-<deployment>-`, which the topic policy and the key policy
/// let publish (an alarm named otherwise is silently dropped by both).
fn check_unheard(template: &Value) -> Vec<String> {
    let topic = serde_json::json!({"Ref": "AlertTopic"});
    let mut problems = Vec::new();
    for (id, alarm) in resources(template, "AWS::CloudWatch::Alarm") {
        let properties = &alarm["Properties"];
        for field in ["AlarmActions", "OKActions"] {
            if !properties[field]
                .as_array()
                .is_some_and(|actions| actions.contains(&topic))
            {
                problems.push(format!("{id}: {field} does not name the alerts topic"));
            }
        }
        let named = properties["AlarmName"]["Fn::Sub"]
            .as_str()
            .is_some_and(|name| name.starts_with("apiary-${DeploymentName}-"));
        if !named {
            problems.push(format!(
                "{id}: AlarmName is not apiary-${{DeploymentName}}-..., which the alerts topic's policy and the state key admit"
            ));
        } else if let Some(name) = properties["AlarmName"]["Fn::Sub"].as_str() {
            let name = name.replace("${DeploymentName}", "demo");
            if !apiary_core::alerts::is_deployment_alarm(&name, "apiary-demo-") {
                problems.push(format!(
                    "{id}: handle-alert does not know {name} as the deployment's alarm \
                     (apiary_core::alerts), so its changes are neither recorded nor shown by \
                     `apiary status`"
                ));
            }
        }
    }
    problems
}

#[test]
fn every_alarm_reaches_the_encrypted_alerts_topic() {
    let template = template();
    assert_none("unheard", check_unheard(&template));
    // The check can fail: an alarm with no actions and a foreign name is named twice
    // over.
    let bare = parse(
        r#"
Resources:
  QuietAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmName: quiet
"#,
    );
    assert_eq!(check_unheard(&bare).len(), 3);

    // The topic is encrypted with its own key, whose policy lets CloudWatch use it for
    // exactly the alarm names the topic policy admits.
    let resources = &template["Resources"];
    assert_eq!(
        resources["AlertTopic"]["Properties"]["KmsMasterKeyId"],
        serde_json::json!({"Fn::GetAtt": ["AlertKey", "Arn"]})
    );
    let alarm_arns = serde_json::json!({"Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:apiary-${DeploymentName}-*"});
    let key_statement = resources["AlertKey"]["Properties"]["KeyPolicy"]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com")
        .expect("the state key lets CloudWatch publish alarms to the topic");
    assert_eq!(
        key_statement["Condition"]["ArnLike"]["aws:SourceArn"],
        alarm_arns
    );
    let topic_statement =
        &resources["AlertTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(
        topic_statement["Principal"]["Service"],
        "cloudwatch.amazonaws.com"
    );
    assert_eq!(
        topic_statement["Condition"]["ArnLike"]["aws:SourceArn"],
        alarm_arns
    );
    // No service is given the state key for the topic.
    assert!(
        !resources["StateKey"]["Properties"]["KeyPolicy"]["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com"
                || s["Principal"]["Service"] == "events.amazonaws.com")
    );
    // Every rule that targets the topic is the one rule its policy admits, and matches
    // only this deployment's resources.
    let topic = serde_json::json!({"Ref": "AlertTopic"});
    let statements = resources["AlertTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    for (id, rule) in self::resources(&template, "AWS::Events::Rule") {
        let targets_topic = rule["Properties"]["Targets"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["Arn"] == topic));
        if !targets_topic {
            continue;
        }
        let arn = serde_json::json!({"Fn::GetAtt": [id, "Arn"]});
        assert!(
            statements
                .iter()
                .any(|s| s["Principal"]["Service"] == "events.amazonaws.com"
                    && s["Condition"]["ArnEquals"]["aws:SourceArn"] == arn),
            "{id} targets the alerts topic, whose policy does not admit it"
        );
        assert_eq!(
            rule["Properties"]["EventPattern"]["detail"]["SourceIdentifier"],
            serde_json::json!([{"prefix": {"Fn::Sub": "apiary-${DeploymentName}-"}}]),
            "{id}"
        );
    }
    // The email subscription exists only when an address is given.
    assert_eq!(
        resources["AlertEmailSubscription"]["Condition"],
        serde_json::json!("HasAlertEmail")
    );
}

/// Every logical id `value` refers to: `Ref`, `Fn::GetAtt`, and `${Id}` or `${Id.Attr}`
/// in an `Fn::Sub`, pseudo parameters and parameters left in.
fn references(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("Ref", Value::String(id)) => {
                        out.insert(id.clone());
                    }
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        if let Some(id) = parts.first().and_then(Value::as_str) {
                            out.insert(id.to_owned());
                        }
                    }
                    ("Fn::Sub", Value::String(text)) => {
                        for piece in text.split("${").skip(1) {
                            if let Some(name) = piece.split('}').next() {
                                out.insert(name.split('.').next().unwrap_or(name).to_owned());
                            }
                        }
                    }
                    _ => references(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| references(i, out)),
        _ => {}
    }
}

/// What each resource depends on: its references to other resources, and `DependsOn`.
fn dependencies(template: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let resources = template["Resources"]
        .as_object()
        .expect("Resources is a map");
    resources
        .iter()
        .map(|(id, resource)| {
            let mut found = BTreeSet::new();
            references(&resource["Properties"], &mut found);
            // CloudFormation follows a reference in Metadata too: the one way to wait for
            // a conditional resource, which DependsOn cannot name.
            references(&resource["Metadata"], &mut found);
            match &resource["DependsOn"] {
                Value::String(one) => {
                    found.insert(one.clone());
                }
                Value::Array(many) => {
                    found.extend(many.iter().filter_map(Value::as_str).map(str::to_owned))
                }
                _ => {}
            }
            found.retain(|d| resources.contains_key(d));
            (id.clone(), found)
        })
        .collect()
}

fn closure(deps: &BTreeMap<String, BTreeSet<String>>, start: &[&str]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = start.iter().map(|s| (*s).to_owned()).collect();
    while let Some(id) = todo.pop() {
        if seen.insert(id.clone()) {
            todo.extend(deps.get(&id).into_iter().flatten().cloned());
        }
    }
    seen
}

/// Resource types that only point at what they change (a policy at its role, a
/// permission at its function): nothing depends on them, so CloudFormation may delete
/// them at any point of a stack delete unless the Launch resource waits for them.
const ATTACHMENTS: &[&str] = &[
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::RolePolicy",
    "AWS::Lambda::Permission",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::KMS::Alias",
    "AWS::SecretsManager::ResourcePolicy",
];

/// With OnStackDelete=Teardown the Launch resource's delete runs the teardown, so every
/// resource the teardown workflow and the stack-delete workflow need must be deleted
/// after it: Launch must depend on it, directly or not.
fn check_stack_delete_order(template: &Value) -> Vec<String> {
    let deps = dependencies(template);
    let Some((launch, _)) = resources(template, LAUNCH_TYPE).into_iter().next() else {
        return vec!["no Launch resource".to_owned()];
    };
    let machine = |file: &str| {
        resources(template, "AWS::StepFunctions::StateMachine")
            .into_iter()
            .find(|(_, m)| {
                sub_text(&m["Properties"]["DefinitionS3Location"]["Key"])
                    == Some(&format!("${{ArtifactPrefix}}statemachines/{file}"))
            })
            .map(|(id, _)| id)
    };
    let mut problems = Vec::new();
    let mut roots = Vec::new();
    for file in ["teardown.asl.json", "stack-delete.asl.json"] {
        match machine(file) {
            Some(id) => roots.push(id),
            None => problems.push(format!("no state machine for statemachines/{file}")),
        }
    }
    let held = closure(&deps, &[launch]);
    let needed = closure(&deps, &roots);
    for id in &needed {
        if !held.contains(id) {
            problems.push(format!(
                "{id}: the teardown on stack delete needs it, but {launch} does not depend on it"
            ));
        }
    }
    for (id, resource) in template["Resources"].as_object().into_iter().flatten() {
        let kind = resource["Type"].as_str().unwrap_or_default();
        if held.contains(id) || !ATTACHMENTS.contains(&kind) {
            continue;
        }
        if let Some(target) = deps[id].iter().find(|d| needed.contains(*d)) {
            problems.push(format!(
                "{id} ({kind}) changes {target}, which the teardown on stack delete needs; \
                 add it to {launch}'s DependsOn so it is not deleted while the teardown runs"
            ));
        }
    }
    problems
}

#[test]
fn a_stack_delete_keeps_everything_the_teardown_needs_until_it_has_answered() {
    let template = template();
    assert_none("stack delete order", check_stack_delete_order(&template));
    // The check can fail: a policy on the teardown function's role that nothing waits
    // for, and a Launch that depends on nothing.
    let broken = parse(
        r#"
Resources:
  TeardownRole: {Type: AWS::IAM::Role}
  TeardownFunction:
    Type: AWS::Lambda::Function
    Properties: {Role: {"Fn::GetAtt": [TeardownRole, Arn]}}
  TeardownStateMachine:
    Type: AWS::StepFunctions::StateMachine
    Properties:
      DefinitionS3Location: {Key: {"Fn::Sub": "${ArtifactPrefix}statemachines/teardown.asl.json"}}
      DefinitionSubstitutions: {TeardownFunctionArn: {"Fn::GetAtt": [TeardownFunction, Arn]}}
  StackDeleteStateMachine:
    Type: AWS::StepFunctions::StateMachine
    Properties:
      DefinitionS3Location: {Key: {"Fn::Sub": "${ArtifactPrefix}statemachines/stack-delete.asl.json"}}
  ExtraTeardownPolicy:
    Type: AWS::IAM::Policy
    Properties: {Roles: [{Ref: TeardownRole}]}
  Launch:
    Type: Custom::ApiaryLaunch
    DependsOn: [StackDeleteStateMachine]
"#,
    );
    let problems = check_stack_delete_order(&broken);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("TeardownFunction: the teardown on stack delete needs it")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("ExtraTeardownPolicy (AWS::IAM::Policy) changes TeardownRole")),
        "{problems:?}"
    );
}

/// IAM's size limits: a role's inline policies together at most 10,240 characters and a
/// managed policy at most 6,144 (whitespace not counted), checked with every parameter
/// that reaches a policy at its longest. A template over them fails on AWS only, when
/// the stack is created or updated.
#[test]
fn policies_fit_iams_size_limits_with_the_longest_parameters() {
    use apiary_e2e::iam_eval::Resolver;
    let template = template();
    // ARNs joined by commas, as long as the parameter's MaxLength allows.
    let longest = |parameter: &str, kind: &str| -> String {
        let max = template["Parameters"][parameter]["MaxLength"]
            .as_u64()
            .unwrap_or_else(|| panic!("{parameter} has no MaxLength")) as usize;
        let mut list: Vec<String> = Vec::new();
        for i in 0.. {
            let arn = format!("arn:aws:iam::123456789012:{kind}/operators/{parameter}-{i:03}");
            let joined = list.len() + list.iter().map(String::len).sum::<usize>() + arn.len();
            if joined > max {
                break;
            }
            list.push(arn);
        }
        list.join(",")
    };
    let admins = longest("ClusterAdminArns", "role");
    let viewers = longest("ClusterViewerArns", "user");
    let name = "a-24-character-long-name";
    let secret = format!(
        "arn:aws:secretsmanager:{REGION}:123456789012:secret:{}-AbCdEf",
        "s".repeat(200)
    );
    let workspace = format!(
        "arn:aws:aps:{REGION}:123456789012:workspace/ws-{}",
        "w".repeat(61)
    );
    let resolver = Resolver::for_template(
        &template,
        "123456789012",
        REGION,
        &[
            ("DeploymentName", name),
            (
                "Domain",
                "honeyhive.a-rather-long-customer-domain.example.com",
            ),
            ("ClusterAdminArns", &admins),
            ("ClusterViewerArns", &viewers),
            ("TwingateSecretArn", &secret),
            ("MetricsWorkspaceArn", &workspace),
        ],
    );
    let size = |document: &Value| {
        serde_json::to_string(&resolver.resolve(document))
            .unwrap()
            .len()
    };
    let mut problems = Vec::new();
    for (id, role) in resources(&template, "AWS::IAM::Role") {
        let inline: usize = role["Properties"]["Policies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| size(&p["PolicyDocument"]))
            .sum();
        if inline > 10_240 {
            problems.push(format!(
                "{id}: inline policies {inline} characters, over 10,240"
            ));
        }
    }
    for (id, policy) in resources(&template, "AWS::IAM::ManagedPolicy") {
        let chars = size(&policy["Properties"]["PolicyDocument"]);
        if chars > 6_144 {
            problems.push(format!("{id}: {chars} characters, over 6,144"));
        }
    }
    assert_none("policy sizes", problems);
}

/// The service account each Pod Identity role trusts, and where in which bucket it may
/// write, are the ones the code uses: a namespace renamed on one side only would leave
/// the pods without credentials, which nothing local would show.
#[test]
fn pod_identity_roles_trust_the_service_accounts_the_code_binds() {
    use workloads::manifests::{connector, monitoring};
    let template = template();
    let expected: BTreeMap<&str, ((&str, &str), Option<String>)> = BTreeMap::from([
        (
            "LogShipperRole",
            (
                (
                    cluster::nodegroup::LOG_SHIPPER_ADDON,
                    cluster::nodegroup::LOG_SHIPPER_SERVICE_ACCOUNT,
                ),
                Some(format!(
                    "-logs-${{AWS::AccountId}}-*/{}/*",
                    cluster::nodegroup::LOG_PREFIX
                )),
            ),
        ),
        (
            "TwingateConnectorRole",
            ((connector::NAMESPACE, connector::SERVICE_ACCOUNT), None),
        ),
        (
            "MetricsWriterRole",
            (
                (monitoring::NAMESPACE, monitoring::PROMETHEUS),
                Some(format!(
                    "-{}-${{AWS::AccountId}}-*/{}/*",
                    monitoring::METRICS_BUCKET,
                    monitoring::BUCKET_PREFIX
                )),
            ),
        ),
        (
            "AlertRouterRole",
            ((monitoring::NAMESPACE, monitoring::ALERTMANAGER), None),
        ),
    ]);
    let mut seen = BTreeSet::new();
    for (id, role) in resources(&template, "AWS::IAM::Role") {
        let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
        if trust["Principal"]["Service"] != "pods.eks.amazonaws.com" {
            continue;
        }
        let Some(((namespace, account), prefix)) = expected.get(id) else {
            panic!("{id} is trusted by Pod Identity but bound by no code this test knows");
        };
        let tags = &trust["Condition"]["StringEquals"];
        assert_eq!(
            tags["aws:RequestTag/kubernetes-namespace"], *namespace,
            "{id}"
        );
        assert_eq!(
            tags["aws:RequestTag/kubernetes-service-account"], *account,
            "{id}"
        );
        if let Some(prefix) = prefix {
            let writes: Vec<&str> = role_statements(&template, id)
                .into_iter()
                .filter(|s| actions(s).iter().any(|a| a == "s3:PutObject"))
                .flat_map(|s| s["Resource"].as_array().into_iter().flatten())
                .filter_map(sub_text)
                .collect();
            assert!(
                !writes.is_empty() && writes.iter().all(|w| w.ends_with(prefix.as_str())),
                "{id} writes to {writes:?}, the code to …{prefix}"
            );
        }
        seen.insert(id);
    }
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
}

/// With `MetricsWorkspaceArn`, Prometheus's role may remote-write to that workspace and
/// nothing else of the service; without it the grant does not exist. The spec's
/// workspace (which the code writes to) comes from the same parameter.
#[test]
fn prometheus_may_write_only_to_the_workspace_the_stack_names() {
    let template = template();
    let grants: Vec<(&str, &Value)> = every_role_statements(&template)
        .into_iter()
        .flat_map(|(id, statements)| statements.into_iter().map(move |s| (id, s)))
        .filter(|(_, s)| actions(s).iter().any(|a| a.starts_with("aps:")))
        .collect();
    assert_eq!(grants.len(), 1, "{grants:?}");
    let (role, statement) = grants[0];
    assert_eq!(role, "MetricsWriterRole");
    assert_eq!(actions(statement), ["aps:RemoteWrite"]);
    assert_eq!(
        statement["Resource"],
        serde_json::json!([{"Ref": "MetricsWorkspaceArn"}])
    );
    assert!(statement.get("Condition").is_none());
    let (_, policy) = resources(&template, "AWS::IAM::ManagedPolicy")
        .into_iter()
        .find(|(_, p)| p["Properties"]["PolicyDocument"]["Statement"][0] == *statement)
        .expect("the grant is a managed policy of its own");
    assert_eq!(
        policy["Condition"], "HasMetricsWorkspace",
        "no workspace, no grant"
    );
    assert_eq!(
        template["Conditions"]["HasMetricsWorkspace"],
        serde_json::json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "MetricsWorkspaceArn"}, ""]}]})
    );
    assert_eq!(
        apiary_core::spec::parameter_for("storage.metrics_workspace_arn"),
        Some("MetricsWorkspaceArn")
    );
}

/// A rule whose target dead-letters into the events queue must be one the queue's
/// policy admits: SQS refuses the others' messages, so an event no target took would be
/// lost without a trace.
#[test]
fn every_rule_that_dead_letters_is_admitted_by_the_queue() {
    let template = template();
    let admitted: BTreeSet<String> = resources(&template, "AWS::SQS::QueuePolicy")
        .into_iter()
        .flat_map(|(_, policy)| {
            policy["Properties"]["PolicyDocument"]["Statement"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["Effect"] == "Allow")
                .flat_map(|s| {
                    s["Condition"]["ArnEquals"]["aws:SourceArn"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(get_att_arn)
                        .map(str::to_owned)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut dead_lettering = Vec::new();
    for (id, rule) in resources(&template, "AWS::Events::Rule") {
        let targets = rule["Properties"]["Targets"]
            .as_array()
            .into_iter()
            .flatten();
        if targets
            .filter_map(|t| get_att_arn(&t["DeadLetterConfig"]["Arn"]))
            .any(|queue| queue == "EventsDeadLetterQueue")
        {
            dead_lettering.push(id);
        }
    }
    assert!(dead_lettering.len() > 5, "{dead_lettering:?}");
    let refused: Vec<&&str> = dead_lettering
        .iter()
        .filter(|id| !admitted.contains(**id))
        .collect();
    assert!(
        refused.is_empty(),
        "the events queue refuses the dead letters of {refused:?}"
    );
}
