//! Parsing and validation that report every problem at once, each with its field path.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{DeploymentSpec, cfn};

/// One thing wrong with a spec: where (`network.vpc_cidr`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecErrors {
    pub problems: Vec<Problem>,
}

impl SpecErrors {
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        SpecErrors {
            problems: vec![Problem {
                path: path.into(),
                message: message.into(),
            }],
        }
    }

    pub fn paths(&self) -> Vec<&str> {
        self.problems.iter().map(|p| p.path.as_str()).collect()
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "the deployment spec has {n} problem{}: ",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

pub(super) fn parse(document: &Value) -> Result<DeploymentSpec, SpecErrors> {
    let mut problems = Problems::default();
    let Some(object) = document.as_object() else {
        return Err(SpecErrors::single(
            "",
            "a deployment spec must be a JSON object",
        ));
    };

    let from_parameters = cfn::is_parameters_map(object);
    let mut value = if from_parameters {
        let (value, cfn_problems) = cfn::to_spec_document(object);
        problems.0.extend(cfn_problems);
        value
    } else {
        document.clone()
    };

    let schema = DeploymentSpec::json_schema();
    remove_unknown_fields(&mut value, &schema, &schema, "", &mut problems);

    let spec = deserialize_collecting(&mut value, &mut problems);
    if let Some(mut spec) = spec {
        check(&spec, &mut problems);
        if problems.0.is_empty() {
            spec.fill_defaults();
            return Ok(spec);
        }
    }
    if from_parameters {
        // Name what the user typed in the console form, not the internal spec path.
        for problem in &mut problems.0 {
            if let Some(parameter) = cfn::parameter_for(&problem.path) {
                let index = problem
                    .path
                    .find('[')
                    .map(|i| &problem.path[i..])
                    .unwrap_or("");
                problem.path = format!("{parameter}{index}");
            }
            problem.message = cfn::in_parameter_terms(&problem.message);
        }
    }
    Err(SpecErrors {
        problems: problems.0,
    })
}

/// Reports (and drops) every field the schema does not know, at any depth.
fn remove_unknown_fields(
    value: &mut Value,
    node: &Value,
    root: &Value,
    path: &str,
    problems: &mut Problems,
) {
    let node = resolve(node, root);
    let (Some(object), Some(properties)) = (
        value.as_object_mut(),
        node.get("properties").and_then(Value::as_object),
    ) else {
        return;
    };
    let unknown: Vec<String> = object
        .keys()
        .filter(|k| !properties.contains_key(*k))
        .cloned()
        .collect();
    for key in unknown {
        object.remove(&key);
        let expected: Vec<&str> = properties.keys().map(String::as_str).collect();
        problems.push(
            join(path, &key),
            format!("unknown field; expected one of {}", expected.join(", ")),
        );
    }
    for (key, child) in object.iter_mut() {
        remove_unknown_fields(child, &properties[key], root, &join(path, key), problems);
    }
}

fn resolve<'a>(node: &'a Value, root: &'a Value) -> &'a Value {
    if let Some(reference) = node.get("$ref").and_then(Value::as_str)
        && let Some(target) = reference
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
    {
        return target;
    }
    node
}

/// Deserialises, and on a type error records it, removes the offending field and tries
/// again, so that every wrongly typed field is reported in one pass.
fn deserialize_collecting(value: &mut Value, problems: &mut Problems) -> Option<DeploymentSpec> {
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, DeploymentSpec>(value.clone()) {
            Ok(spec) => return Some(spec),
            Err(err) => {
                let path = err.path().to_string();
                let path = if path == "." { String::new() } else { path };
                problems.push(path.clone(), err.inner().to_string());
                if path.is_empty() || !remove_path(value, &path) {
                    return None;
                }
            }
        }
    }
    None
}

/// Removes `a.b.c` (or, for an array element `a.b[2]`, the whole array `a.b`).
fn remove_path(value: &mut Value, path: &str) -> bool {
    let path = path.split('[').next().unwrap_or(path);
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else {
        return false;
    };
    let mut node = value;
    for part in parts {
        match node.get_mut(part) {
            Some(next) => node = next,
            None => return false,
        }
    }
    node.as_object_mut()
        .and_then(|o: &mut Map<String, Value>| o.remove(last))
        .is_some()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

const MAX_NAME_LEN: usize = 24;

fn check(spec: &DeploymentSpec, problems: &mut Problems) {
    check_name(&spec.name, problems);
    if !is_region(&spec.region) {
        problems.push(
            "region",
            format!("{:?} is not an AWS region name like us-west-2", spec.region),
        );
    }
    check_network(spec, problems);
    check_domain(&spec.dns.domain, problems);
    if !is_kubernetes_version(&spec.cluster.version) {
        problems.push(
            "cluster.version",
            format!(
                "{:?} is not a Kubernetes minor version like 1.33",
                spec.cluster.version
            ),
        );
    }
    check_public_access(spec, problems);
    check_access(spec, problems);
    problems.0.extend(super::pools::check(
        &spec.cluster.pools,
        &spec.size.sizing(),
    ));
    if !(1..=3650).contains(&spec.storage.retention_days) {
        problems.push(
            "storage.retention_days",
            format!("{} is outside 1..=3650 days", spec.storage.retention_days),
        );
    }
    if let Some(arn) = &spec.storage.metrics_workspace_arn
        && let Err(reason) =
            check_workspace_arn(arn, crate::aws::partition(&spec.region), &spec.region)
    {
        problems.push("storage.metrics_workspace_arn", reason);
    }
    if let Err(reason) = check_schedule(&spec.backup.schedule) {
        problems.push("backup.schedule", reason);
    }
    if !(1..=35).contains(&spec.backup.retention_days) {
        problems.push(
            "backup.retention_days",
            format!(
                "{} is outside 1..=35 days (the RDS limit)",
                spec.backup.retention_days
            ),
        );
    }
    if let Some(dr) = &spec.backup.dr_region {
        if !is_region(dr) {
            problems.push(
                "backup.dr_region",
                format!("{dr:?} is not an AWS region name like us-east-1"),
            );
        } else if *dr == spec.region {
            problems.push(
                "backup.dr_region",
                format!("{dr} is the deployment's own region; a DR copy needs another region"),
            );
        }
    }
    check_image(&spec.workloads.ingestion_image, problems);
    if !(90..=2560).contains(&spec.keys.rotation_days) {
        problems.push(
            "keys.rotation_days",
            format!(
                "{} is outside 90..=2560 days (the KMS rotation period range)",
                spec.keys.rotation_days
            ),
        );
    }
}

fn check_name(name: &str, problems: &mut Problems) {
    let path = "name";
    if name.is_empty() {
        problems.push(path, "is required");
        return;
    }
    if name.len() > MAX_NAME_LEN {
        problems.push(
            path,
            format!(
                "{name:?} is {} characters; at most {MAX_NAME_LEN}",
                name.len()
            ),
        );
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        problems.push(path, format!("{name:?} must start with a lowercase letter"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        problems.push(
            path,
            format!("{name:?} contains {bad:?}; use lowercase letters, digits and hyphens"),
        );
    }
    if name.ends_with('-') || name.contains("--") {
        problems.push(
            path,
            format!("{name:?} must not end with a hyphen or contain two in a row"),
        );
    }
}

fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// `1.33`: a Kubernetes minor version as EKS names it.
pub fn is_kubernetes_version(version: &str) -> bool {
    match version.split_once('.') {
        Some((major, minor)) => {
            major == "1" && !minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

const RFC1918: [(Ipv4Addr, u8); 3] = [
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
];

fn check_network(spec: &DeploymentSpec, problems: &mut Problems) {
    let network = &spec.network;
    if let Some(text) = &network.vpc_cidr {
        let path = "network.vpc_cidr";
        match text.parse::<Ipv4Net>() {
            Err(_) => problems.push(
                path,
                format!("{text:?} is not an IPv4 CIDR like 10.42.0.0/16"),
            ),
            Ok(net) => {
                if net.prefix_len() < 16 {
                    problems.push(path, format!("{net} is wider than /16"));
                } else if net.prefix_len() > 16 {
                    problems.push(
                        path,
                        format!("{net} is narrower than /16; the subnets need a whole /16"),
                    );
                }
                if net.addr() != net.network() {
                    problems.push(
                        path,
                        format!(
                            "{net} has host bits set; did you mean {}/{}?",
                            net.network(),
                            net.prefix_len()
                        ),
                    );
                }
                let private = RFC1918.iter().any(|(addr, len)| {
                    Ipv4Net::new(*addr, *len).is_ok_and(|block| block.contains(&net))
                });
                if !private {
                    problems.push(
                        path,
                        format!(
                            "{net} is not inside RFC 1918 space (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)"
                        ),
                    );
                }
            }
        }
    }
    if !(2..=3).contains(&network.az_count) {
        problems.push(
            "network.az_count",
            format!("{} availability zones; use 2 or 3", network.az_count),
        );
    }
    check_cidr_list("network.ingress_cidrs", &network.ingress_cidrs, problems);
}

/// Each entry an IPv4 CIDR without host bits, none overlapping one listed before it.
fn check_cidr_list(field: &str, list: &[String], problems: &mut Problems) {
    let mut seen: Vec<Ipv4Net> = Vec::new();
    for (i, text) in list.iter().enumerate() {
        let path = format!("{field}[{i}]");
        match text.parse::<Ipv4Net>() {
            Err(_) => problems.push(
                path,
                format!("{text:?} is not an IPv4 CIDR like 203.0.113.0/24"),
            ),
            Ok(net) => {
                if net.addr() != net.network() {
                    problems.push(
                        path.clone(),
                        format!(
                            "{net} has host bits set; did you mean {}/{}?",
                            net.network(),
                            net.prefix_len()
                        ),
                    );
                }
                if let Some(other) = seen.iter().find(|o| o.contains(&net) || net.contains(*o)) {
                    problems.push(path, format!("{net} overlaps {other} listed before it"));
                }
                seen.push(net);
            }
        }
    }
}

/// EKS allows at most this many public access CIDRs per cluster.
const MAX_PUBLIC_ACCESS_CIDRS: usize = 40;

/// A public EKS endpoint is reachable only from the networks listed: required and never
/// the whole internet. The list is refused on a private endpoint, where it would do
/// nothing, rather than kept silently.
fn check_public_access(spec: &DeploymentSpec, problems: &mut Problems) {
    let field = "cluster.public_access_cidrs";
    let cluster = &spec.cluster;
    if !cluster.public_endpoint {
        if !cluster.public_access_cidrs.is_empty() {
            problems.push(
                field,
                "applies only to a public endpoint; set cluster.public_endpoint to true or remove the list",
            );
        }
        return;
    }
    if cluster.public_access_cidrs.is_empty() {
        problems.push(
            field,
            "is required when cluster.public_endpoint is true: list the networks that may reach the EKS API (without one it is open to the whole internet)",
        );
        return;
    }
    if cluster.public_access_cidrs.len() > MAX_PUBLIC_ACCESS_CIDRS {
        problems.push(
            field,
            format!(
                "{} entries; EKS allows at most {MAX_PUBLIC_ACCESS_CIDRS}",
                cluster.public_access_cidrs.len()
            ),
        );
    }
    check_cidr_list(field, &cluster.public_access_cidrs, problems);
    for (i, net) in cluster
        .public_access_cidrs
        .iter()
        .enumerate()
        .filter_map(|(i, text)| text.parse::<Ipv4Net>().ok().map(|net| (i, net)))
    {
        let path = format!("{field}[{i}]");
        if net.prefix_len() == 0 {
            problems.push(
                path,
                format!("{net} opens the EKS API to the whole internet; list your networks"),
            );
        } else if RFC1918
            .iter()
            .any(|(addr, len)| Ipv4Net::new(*addr, *len).is_ok_and(|block| block.contains(&net)))
        {
            problems.push(
                path,
                format!(
                    "{net} is a private range; the public endpoint is reached from public addresses (the private endpoint already serves the VPC)"
                ),
            );
        }
    }
}

/// EKS's default quota of access entries per cluster is far above this; the limit keeps
/// the two stack parameters within CloudFormation's 4,096-character parameter value.
pub const MAX_OPERATOR_PRINCIPALS: usize = 20;
/// Each list, as the stack parameter writes it (ARNs joined by commas), fits in this
/// many characters (the parameters' `MaxLength`): the IAM policy built from the lists
/// must stay within IAM's size limit.
pub const MAX_OPERATOR_LIST_CHARS: usize = 600;

/// Operator principals: each an IAM role or user ARN of the deployment's partition
/// (an access entry takes no STS session, group or account root), listed once.
fn check_access(spec: &DeploymentSpec, problems: &mut Problems) {
    let access = &spec.cluster.access;
    let partition = crate::aws::partition(&spec.region);
    let total = access.admins.len() + access.viewers.len();
    if total > MAX_OPERATOR_PRINCIPALS {
        problems.push(
            "cluster.access",
            format!(
                "{total} principals; at most {MAX_OPERATOR_PRINCIPALS} admins and viewers together"
            ),
        );
    }
    let mut seen: Vec<(String, &str)> = Vec::new();
    for (field, list) in [
        ("cluster.access.admins", &access.admins),
        ("cluster.access.viewers", &access.viewers),
    ] {
        let chars = list.iter().map(String::len).sum::<usize>() + list.len().saturating_sub(1);
        if chars > MAX_OPERATOR_LIST_CHARS {
            problems.push(
                field,
                format!(
                    "{chars} characters joined by commas; at most {MAX_OPERATOR_LIST_CHARS} (the IAM policy built from the list must fit IAM's size limit)"
                ),
            );
        }
        let own = format!(":role/apiary-{}-", spec.name);
        for (i, arn) in list.iter().enumerate() {
            if arn.contains(&own) {
                problems.push(
                    format!("{field}[{i}]"),
                    format!(
                        "{arn} is one of this deployment's own roles, whose access Apiary manages"
                    ),
                );
                continue;
            }
            let path = format!("{field}[{i}]");
            if let Err(reason) = check_principal_arn(arn, partition) {
                problems.push(path, reason);
                continue;
            }
            if let Some((first, _)) = seen.iter().find(|(_, a)| *a == arn) {
                problems.push(
                    path,
                    format!("{arn} is already listed at {first}; a principal has one access entry"),
                );
                continue;
            }
            seen.push((path, arn));
        }
    }
    if let Some(arn) = &access.twingate_secret_arn
        && let Err(reason) = check_secret_arn(arn, partition, &spec.region)
    {
        problems.push("cluster.access.twingate_secret_arn", reason);
    }
}

/// An Amazon Managed Service for Prometheus workspace ARN in the deployment's partition
/// and region: Prometheus signs its writes for that region, and the metrics stay where
/// the data plane is. The workspace ID is what the remote-write URL is made of.
fn check_workspace_arn(arn: &str, partition: &str, region: &str) -> Result<(), String> {
    let example = format!(
        "arn:{partition}:aps:{region}:123456789012:workspace/ws-0123abcd-4567-89ef-0123-456789abcdef"
    );
    let id_ok = |resource: &str| {
        let id = resource.strip_prefix("workspace/").unwrap_or_default();
        id.starts_with("ws-")
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    };
    regional_arn(arn, "aps", "workspace", &example, id_ok, partition, region).map(|_| ())
}

/// A Secrets Manager secret ARN in the deployment's partition and region: the connector
/// reads it with the pods' identity, which reaches no other region.
fn check_secret_arn(arn: &str, partition: &str, region: &str) -> Result<(), String> {
    let example =
        format!("arn:{partition}:secretsmanager:{region}:123456789012:secret:twingate-AbCdEf");
    let named = |resource: &str| {
        resource
            .strip_prefix("secret:")
            .is_some_and(|name| !name.is_empty())
    };
    let resource = regional_arn(
        arn,
        "secretsmanager",
        "secret",
        &example,
        named,
        partition,
        region,
    )?;
    let name = resource.strip_prefix("secret:").unwrap_or_default();
    // Secrets Manager adds six characters to the name; IAM and KMS match the full ARN.
    let suffix = name.rsplit_once('-').map(|(_, s)| s);
    if !suffix.is_some_and(|s| s.len() == 6 && s.bytes().all(|b| b.is_ascii_alphanumeric())) {
        return Err(format!(
            "{arn} is not the secret's full ARN: give it with the six characters Secrets Manager adds to the name (like {example})"
        ));
    }
    Ok(())
}

/// `arn` as an ARN of `service` in the deployment's partition and region and a 12-digit
/// account, whose resource part `resource_ok` accepts; its resource part, or why not
/// (`what` and `example` name what was expected).
fn regional_arn<'a>(
    arn: &'a str,
    service: &str,
    what: &str,
    example: &str,
    resource_ok: impl Fn(&str) -> bool,
    partition: &str,
    region: &str,
) -> Result<&'a str, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [
        prefix,
        arn_partition,
        arn_service,
        arn_region,
        account,
        resource,
    ] = parts[..]
    else {
        return Err(format!("{arn:?} is not a {what} ARN like {example}"));
    };
    if prefix != "arn" || arn_service != service || !resource_ok(resource) {
        return Err(format!("{arn:?} is not a {what} ARN like {example}"));
    }
    if arn_partition != partition || arn_region != region {
        return Err(format!(
            "{arn} is in {arn_partition}/{arn_region}; the {what} must be in the deployment's region ({region})"
        ));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{arn} does not name a 12-digit account"));
    }
    Ok(resource)
}

/// An IAM role or user ARN an EKS access entry accepts: `arn:<partition>:iam::<account>:
/// role/<path/>name` or `...:user/<path/>name`, names of IAM's characters but `,` (the
/// stack parameter separates principals with it).
pub fn check_principal_arn(arn: &str, partition: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, arn_partition, service, region, account, resource] = parts[..] else {
        return Err(format!(
            "{arn:?} is not an ARN; give an IAM role or user ARN like arn:{partition}:iam::123456789012:role/operators"
        ));
    };
    if prefix != "arn" || service != "iam" && service != "sts" {
        return Err(format!(
            "{arn:?} is not an IAM ARN; give an IAM role or user ARN like arn:{partition}:iam::123456789012:role/operators"
        ));
    }
    if service == "sts" || resource.starts_with("assumed-role/") {
        return Err(format!(
            "{arn} is an STS session; EKS access entries take the role itself (arn:{partition}:iam::<account>:role/<name>)"
        ));
    }
    if arn_partition != partition {
        return Err(format!(
            "{arn} is in partition {arn_partition}; the deployment's region is in {partition}"
        ));
    }
    if !region.is_empty() || account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{arn} does not name a 12-digit account with an empty region, as IAM ARNs do"
        ));
    }
    let Some((kind, name)) = resource.split_once('/') else {
        return Err(format!(
            "{arn} names neither a role nor a user (an account root or a group cannot have an access entry)"
        ));
    };
    if kind != "role" && kind != "user" {
        return Err(format!(
            "{arn} is an IAM {kind}; EKS access entries take a role or a user"
        ));
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || "+=.@_-/".contains(c);
    if name.is_empty() || name.ends_with('/') || !name.chars().all(valid) {
        return Err(format!(
            "{arn} has an invalid {kind} name: letters, digits and +=.@_- only, with an optional path"
        ));
    }
    Ok(())
}

fn check_domain(domain: &str, problems: &mut Problems) {
    let path = "dns.domain";
    if domain.is_empty() {
        problems.push(path, "is required (the domain the data plane serves)");
        return;
    }
    if domain.ends_with('.') {
        // ACM, Route 53 and the clients take the name without the root's dot; the
        // alias record adds it itself.
        problems.push(
            path,
            format!(
                "{domain:?} ends with a dot: write it without one ({:?})",
                domain.trim_end_matches('.')
            ),
        );
        return;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let valid_label = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if domain.len() > 253 || labels.len() < 2 || !labels.iter().all(valid_label) {
        problems.push(
            path,
            format!("{domain:?} is not a lowercase DNS name like honeyhive.example.com"),
        );
    }
}

fn check_schedule(schedule: &str) -> Result<(), String> {
    if let Some(body) = schedule
        .strip_prefix("cron(")
        .and_then(|s| s.strip_suffix(')'))
    {
        let fields = body.split_whitespace().count();
        return if fields == 6 {
            Ok(())
        } else {
            Err(format!(
                "{schedule:?} has {fields} cron fields; EventBridge Scheduler needs 6 (minutes hours day-of-month month day-of-week year)"
            ))
        };
    }
    if let Some(body) = schedule
        .strip_prefix("rate(")
        .and_then(|s| s.strip_suffix(')'))
    {
        let mut parts = body.split_whitespace();
        let count = parts.next().and_then(|n| n.parse::<u32>().ok());
        let unit = parts.next();
        let ok = match (count, unit, parts.next()) {
            (Some(1), Some("minute" | "hour" | "day"), None) => true,
            (Some(n), Some("minutes" | "hours" | "days"), None) => n > 1,
            _ => false,
        };
        return if ok {
            Ok(())
        } else {
            Err(format!(
                "{schedule:?} is not a rate like rate(1 day) or rate(12 hours)"
            ))
        };
    }
    Err(format!(
        "{schedule:?} is not a schedule expression; use cron(...) or rate(...)"
    ))
}

fn check_image(image: &str, problems: &mut Problems) {
    if let Some(problem) = image_problem(image) {
        problems.push("workloads.ingestion_image", problem);
    }
}

/// What is wrong with a container image reference for the ingestion pods, if anything:
/// it must be pinned by a tag other than `latest` or by a digest, so every node runs the
/// same build (the spec and the upgrade workflow's input share this rule).
pub fn image_problem(image: &str) -> Option<String> {
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        return Some(format!("{image:?} is not a container image reference"));
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if !image.contains("@sha256:") && !last.contains(':') {
        Some(format!(
            "{image:?} has no tag or digest; pin one so every node runs the same build"
        ))
    } else if last.ends_with(":latest") {
        Some(format!(
            "{image:?} uses the moving tag `latest`; pin a version or digest"
        ))
    } else {
        None
    }
}
