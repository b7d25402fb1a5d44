//! The bootstrap stack's parameters map (all values strings, empty meaning "default")
//! turned into a spec document.

use serde_json::{Map, Value, json};

use super::validate::Problem;

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Boolean,
    List,
}

/// (parameter, spec path, kind). The single table both directions use.
const PARAMETERS: &[(&str, &str, Kind)] = &[
    ("DeploymentName", "name", Kind::Text),
    ("Region", "region", Kind::Text),
    ("Size", "size", Kind::Text),
    ("VpcCidr", "network.vpc_cidr", Kind::Text),
    ("AzCount", "network.az_count", Kind::Integer),
    ("NatMode", "network.nat_mode", Kind::Text),
    ("IngressCidrs", "network.ingress_cidrs", Kind::List),
    ("Domain", "dns.domain", Kind::Text),
    ("KubernetesVersion", "cluster.version", Kind::Text),
    (
        "PublicClusterEndpoint",
        "cluster.public_endpoint",
        Kind::Boolean,
    ),
    (
        "PublicAccessCidrs",
        "cluster.public_access_cidrs",
        Kind::List,
    ),
    ("ClusterAdminArns", "cluster.access.admins", Kind::List),
    ("ClusterViewerArns", "cluster.access.viewers", Kind::List),
    (
        "TwingateSecretArn",
        "cluster.access.twingate_secret_arn",
        Kind::Text,
    ),
    ("MultiAz", "databases.multi_az", Kind::Boolean),
    ("EnableDocumentDb", "databases.documentdb", Kind::Boolean),
    ("EnableRedis", "databases.redis", Kind::Boolean),
    ("S3RetentionDays", "storage.retention_days", Kind::Integer),
    (
        "MetricsWorkspaceArn",
        "storage.metrics_workspace_arn",
        Kind::Text,
    ),
    ("BackupSchedule", "backup.schedule", Kind::Text),
    (
        "BackupRetentionDays",
        "backup.retention_days",
        Kind::Integer,
    ),
    ("DrRegion", "backup.dr_region", Kind::Text),
    ("IngestionImage", "workloads.ingestion_image", Kind::Text),
    ("KeyRotationDays", "keys.rotation_days", Kind::Integer),
];

/// A parameters map is recognised by its CloudFormation-style (PascalCase) keys.
pub(super) fn is_parameters_map(object: &Map<String, Value>) -> bool {
    object
        .keys()
        .any(|k| k.starts_with(|c: char| c.is_ascii_uppercase()))
}

/// The parameter that feeds a spec path, so errors can name what the user typed.
pub fn parameter_for(path: &str) -> Option<&'static str> {
    let field = path.split('[').next().unwrap_or(path);
    PARAMETERS
        .iter()
        .find(|(_, p, _)| *p == field)
        .map(|(name, _, _)| *name)
}

/// `message` with every spec path it mentions (`cluster.public_endpoint`) written as the
/// parameter that feeds it (`PublicClusterEndpoint`): a person who filled in the console
/// form knows the parameters, not the spec they become.
pub fn in_parameter_terms(message: &str) -> String {
    let mut table: Vec<(&str, &str)> = PARAMETERS.iter().map(|(n, p, _)| (*p, *n)).collect();
    // Longest first, so that `cluster.access.admins` is not read as a shorter path.
    table.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    let part_of_a_path = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    'outer: while !rest.is_empty() {
        let at_boundary = !out.chars().next_back().is_some_and(part_of_a_path);
        if at_boundary {
            for (path, name) in &table {
                if let Some(after) = rest.strip_prefix(path)
                    && !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                {
                    out.push_str(name);
                    rest = after;
                    continue 'outer;
                }
            }
        }
        let c = rest.chars().next().expect("rest is not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Every parameter name the bootstrap stack passes through to the spec.
pub fn parameter_names() -> impl Iterator<Item = &'static str> {
    PARAMETERS.iter().map(|(name, _, _)| *name)
}

pub(super) fn to_spec_document(object: &Map<String, Value>) -> (Value, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut document = json!({});
    for (key, value) in object {
        let Some((_, path, kind)) = PARAMETERS.iter().find(|(name, _, _)| name == key) else {
            problems.push(Problem {
                path: key.clone(),
                message: format!(
                    "unknown parameter; expected one of {}",
                    parameter_names().collect::<Vec<_>>().join(", ")
                ),
            });
            continue;
        };
        let text = match value {
            Value::String(s) => s.trim().to_owned(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        if text.is_empty() {
            continue; // CloudFormation's way of saying "use the default".
        }
        let converted = match kind {
            Kind::Text => Ok(Value::String(text)),
            Kind::Integer => text
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| format!("{text:?} is not a whole number")),
            Kind::Boolean => match text.to_ascii_lowercase().as_str() {
                "true" | "yes" => Ok(Value::Bool(true)),
                "false" | "no" => Ok(Value::Bool(false)),
                _ => Err(format!("{text:?} is not true or false")),
            },
            Kind::List => Ok(Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            )),
        };
        match converted {
            Ok(v) => insert(&mut document, path, v),
            Err(message) => problems.push(Problem {
                path: key.clone(),
                message,
            }),
        }
    }
    (document, problems)
}

fn insert(document: &mut Value, path: &str, value: Value) {
    let mut node = document;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let object = node.as_object_mut().expect("spec documents are objects");
        if parts.peek().is_none() {
            object.insert(part.to_owned(), value);
            return;
        }
        node = object.entry(part).or_insert_with(|| json!({}));
    }
}
