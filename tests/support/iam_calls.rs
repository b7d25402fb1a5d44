//! From a recorded AWS call (`apiary_core::calls::Exchange`) to the requests IAM
//! authorizes for it: the action, each resource the action needs (by ARN), and the
//! condition keys the request carries. `tests/iam.rs` evaluates them with
//! [`crate::iam_eval`] against the caller's role as the template writes it.
//!
//! Which resource types an action needs, and their ARN formats, come from the IAM
//! definitions shipped with the policy linter the project pins (`parliament`, whose
//! dataset is generated from AWS's Service Authorization Reference). The parameters that
//! fill an ARN are read from the request as sent (query and form bodies, JSON bodies,
//! REST paths, XML bodies). What the request alone cannot say is learnt from earlier
//! calls, in order, as AWS would know it: the tags of each resource (from creates, tag
//! calls and answers that list tags), each key's policy and aliases, each role's
//! permissions boundary. What is still unknown is reported, never assumed allowed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use apiary_core::calls::{Call, Exchange};
use serde_json::Value;

use crate::iam_eval::Request;

/// Operations that need no IAM permission.
pub const NO_PERMISSION: &[&str] = &["sts:GetCallerIdentity"];

/// SDK operations whose IAM action has another name.
pub const RENAMED: &[(&str, &str)] = &[
    ("s3:HeadBucket", "s3:ListBucket"),
    ("s3:PutBucketEncryption", "s3:PutEncryptionConfiguration"),
    ("s3:GetBucketEncryption", "s3:GetEncryptionConfiguration"),
    (
        "s3:PutBucketLifecycleConfiguration",
        "s3:PutLifecycleConfiguration",
    ),
    (
        "s3:GetBucketLifecycleConfiguration",
        "s3:GetLifecycleConfiguration",
    ),
    ("s3:PutPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
    ("s3:GetPublicAccessBlock", "s3:GetBucketPublicAccessBlock"),
    ("s3:HeadObject", "s3:GetObject"),
    ("s3:ListObjectsV2", "s3:ListBucket"),
    ("s3:ListObjectVersions", "s3:ListBucketVersions"),
    ("s3:DeleteObjects", "s3:DeleteObject"),
    // The only DeleteObject call names a version (the DR replicas' pruning).
    ("s3:DeleteObject", "s3:DeleteObjectVersion"),
    ("s3:PutBucketReplication", "s3:PutReplicationConfiguration"),
    ("s3:GetBucketReplication", "s3:GetReplicationConfiguration"),
    // Copies and multipart uploads are authorized as writes of the object (a copy also
    // reads its source: s3:GetObject, which the same roles hold).
    ("s3:CopyObject", "s3:PutObject"),
    ("s3:CreateMultipartUpload", "s3:PutObject"),
    ("s3:UploadPartCopy", "s3:PutObject"),
    ("s3:CompleteMultipartUpload", "s3:PutObject"),
    ("s3:ListParts", "s3:ListMultipartUploadParts"),
    ("s3:ListMultipartUploads", "s3:ListBucketMultipartUploads"),
];

/// The IAM action prefix of an SDK service id.
pub fn iam_prefix(service: &str) -> &str {
    match service {
        "ACM" => "acm",
        "CloudTrail" => "cloudtrail",
        "CloudWatch" => "cloudwatch",
        "CloudWatch Logs" => "logs",
        // DocumentDB's control plane is RDS's API and RDS's IAM actions.
        "DocDB" | "RDS" => "rds",
        "DynamoDB" => "dynamodb",
        "EC2" => "ec2",
        "EKS" => "eks",
        "Elastic Load Balancing v2" => "elasticloadbalancing",
        "Resource Groups Tagging API" => "tag",
        "ElastiCache" => "elasticache",
        "EventBridge" => "events",
        "IAM" => "iam",
        "KMS" => "kms",
        "Lambda" => "lambda",
        "Route 53" => "route53",
        "S3" => "s3",
        "Scheduler" => "scheduler",
        "Secrets Manager" => "secretsmanager",
        "SFN" => "states",
        "SNS" => "sns",
        "SQS" => "sqs",
        "STS" => "sts",
        other => panic!("no IAM prefix known for the SDK service {other:?}: add it"),
    }
}

/// The IAM action an operation needs, or None when it needs none.
pub fn iam_action(call: &Call) -> Option<String> {
    let action = format!("{}:{}", iam_prefix(&call.service), call.operation);
    if NO_PERMISSION.contains(&action.as_str()) {
        return None;
    }
    Some(
        RENAMED
            .iter()
            .find(|(sdk, _)| *sdk == action)
            .map_or(action, |(_, iam)| (*iam).to_owned()),
    )
}

/// One resource type an action may touch.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub name: String,
    pub required: bool,
    /// `arn:${Partition}:ec2:${Region}:${Account}:vpc/${VpcId}`.
    pub arn: String,
}

/// The IAM definitions: per action (lower case), the resource types it touches.
pub struct Dataset {
    actions: HashMap<String, Vec<ResourceType>>,
}

impl Dataset {
    /// The dataset of the pinned `parliament` in the project's virtual environment
    /// (`scripts/emulator install` puts it there), or `APIARY_IAM_DEFINITION`.
    pub fn load() -> Self {
        let path = std::env::var("APIARY_IAM_DEFINITION")
            .map(std::path::PathBuf::from)
            .ok()
            .or_else(|| {
                let lib = crate::repo_root().join(".venv/lib");
                std::fs::read_dir(lib)
                    .ok()?
                    .filter_map(|e| e.ok())
                    .find_map(|e| {
                        let p = e
                            .path()
                            .join("site-packages/parliament/iam_definition.json");
                        p.is_file().then_some(p)
                    })
            })
            .expect(
                "the IAM definitions of the pinned parliament: run scripts/emulator install \
                 (or set APIARY_IAM_DEFINITION)",
            );
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self::from_json(&serde_json::from_str(&text).expect("the IAM definitions are JSON"))
    }

    pub fn from_json(services: &Value) -> Self {
        let mut actions = HashMap::new();
        for service in services.as_array().expect("a list of services") {
            let prefix = service["prefix"].as_str().unwrap_or_default();
            let arns: HashMap<&str, &str> = service["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| Some((r["resource"].as_str()?, r["arn"].as_str()?)))
                .collect();
            for privilege in service["privileges"].as_array().into_iter().flatten() {
                let name = privilege["privilege"].as_str().unwrap_or_default();
                let types = privilege["resource_types"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| {
                        let raw = t["resource_type"].as_str()?;
                        let required = raw.ends_with('*');
                        let name = raw.trim_end_matches('*');
                        let arn = arns.get(name)?;
                        Some(ResourceType {
                            name: name.to_owned(),
                            required,
                            arn: (*arn).to_owned(),
                        })
                    })
                    .collect();
                actions.insert(format!("{prefix}:{name}").to_ascii_lowercase(), types);
            }
        }
        Dataset { actions }
    }

    /// The resource types of `action`, or None when the dataset does not know it.
    pub fn types(&self, action: &str) -> Option<&[ResourceType]> {
        self.actions
            .get(&action.to_ascii_lowercase())
            .map(Vec::as_slice)
    }
}

/// A request's parameters, flattened: `TagSpecification.1.Tag.1.Key`, `Key.pk.S`,
/// `path.2` (the third path segment), `ChangeBatch.Changes.Change.Action`.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn of(exchange: &Exchange) -> Self {
        let mut out = Vec::new();
        let (path, query) = match exchange.uri.split_once("://") {
            Some((_, rest)) => {
                let rest = rest.split_once('/').map_or("", |(_, p)| p);
                rest.split_once('?').unwrap_or((rest, ""))
            }
            None => exchange.uri.split_once('?').unwrap_or((&exchange.uri, "")),
        };
        for (i, segment) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
            let segment: String = form_urlencoded::parse(format!("s={segment}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            out.push((format!("path.{i}"), segment));
        }
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            out.push((k.into_owned(), v.into_owned()));
        }
        for (k, v) in &exchange.amz_headers {
            out.push((k.clone(), v.clone()));
        }
        let body = exchange.body.trim();
        if body.starts_with('{') {
            if let Ok(json) = serde_json::from_str::<Value>(body) {
                flatten_json("", &json, &mut out);
            }
        } else if body.starts_with('<') {
            if let Ok(doc) = roxmltree::Document::parse(body) {
                flatten_xml("", doc.root_element(), &mut out);
            }
        } else if !body.is_empty() {
            for (k, v) in form_urlencoded::parse(body.as_bytes()) {
                out.push((k.into_owned(), v.into_owned()));
            }
        }
        Params(out)
    }

    /// Values of parameters whose last name (indexes dropped, case and punctuation
    /// ignored) is one of `names`.
    pub fn named(&self, names: &[&str]) -> Vec<&str> {
        let wanted: Vec<String> = names.iter().map(|n| norm(n)).collect();
        self.0
            .iter()
            .filter(|(k, _)| {
                let leaf = k
                    .split('.')
                    .rev()
                    .find(|p| !p.chars().all(|c| c.is_ascii_digit()))
                    .unwrap_or(k);
                wanted.contains(&norm(leaf))
            })
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// [`Self::named`], preferring the request's own parameters to those nested in a
    /// structure (`GroupId`, not `IpPermissions.1.Groups.1.GroupId`, the group a rule
    /// refers to); list members (`InstanceId.1`) count as the request's own.
    pub fn top_named(&self, names: &[&str]) -> Vec<&str> {
        let wanted: Vec<String> = names.iter().map(|n| norm(n)).collect();
        let top: Vec<&str> = self
            .0
            .iter()
            .filter(|(k, _)| {
                Self::top_level(k) && wanted.contains(&norm(k.split('.').next().unwrap_or(k)))
            })
            .map(|(_, v)| v.as_str())
            .collect();
        if top.is_empty() {
            self.named(names)
        } else {
            top
        }
    }

    /// A parameter of the request itself (or a member of one of its lists), not one
    /// nested in a structure or document it carries.
    pub fn top_level(key: &str) -> bool {
        key.split('.')
            .filter(|p| !p.chars().all(|c| c.is_ascii_digit()))
            .count()
            == 1
    }

    pub fn first(&self, names: &[&str]) -> Option<&str> {
        self.named(names).into_iter().next()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The tags the request gives: `Key`/`Value` (or `TagKey`/`TagValue`) pairs under a
    /// parameter whose path names tags, and `tags.<key>` maps.
    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::new();
        for (k, v) in &self.0 {
            let lower = k.to_ascii_lowercase();
            if !lower.contains("tag") {
                continue;
            }
            for (key_leaf, value_leaf) in [("Key", "Value"), ("TagKey", "TagValue")] {
                if let Some(prefix) = k.strip_suffix(&format!(".{key_leaf}")) {
                    let value = self
                        .get(&format!("{prefix}.{value_leaf}"))
                        .unwrap_or_default();
                    tags.insert(v.clone(), value.to_owned());
                }
            }
            // {"tags": {"k": "v"}} (EKS, Lambda, CloudWatch Logs)
            if let Some(key) = k.strip_prefix("tags.").or_else(|| k.strip_prefix("Tags."))
                && !key.contains('.')
                && !key.chars().all(|c| c.is_ascii_digit())
            {
                tags.insert(key.to_owned(), v.clone());
            }
        }
        tags
    }
}

fn norm(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn flatten_json(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten_json(&join(k), v, out);
            }
        }
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                flatten_json(&join(&(i + 1).to_string()), v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Null => {}
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

fn flatten_xml(prefix: &str, node: roxmltree::Node<'_, '_>, out: &mut Vec<(String, String)>) {
    let elements: Vec<_> = node.children().filter(|c| c.is_element()).collect();
    if elements.is_empty() {
        out.push((
            prefix.to_owned(),
            node.text().unwrap_or_default().to_owned(),
        ));
        return;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for child in &elements {
        let name = child.tag_name().name();
        let repeated = elements
            .iter()
            .filter(|c| c.tag_name().name() == name)
            .count()
            > 1;
        let i = seen.entry(name).or_default();
        *i += 1;
        let mut path = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        };
        if repeated {
            path = format!("{path}.{i}");
        }
        flatten_xml(&path, *child, out);
    }
}

/// What earlier calls told about resources.
#[derive(Debug, Default)]
pub struct Ledger {
    /// By ARN.
    pub tags: HashMap<String, BTreeMap<String, String>>,
    /// Key ARN → its policy.
    pub key_policies: HashMap<String, Value>,
    /// `alias/...` → key ARN.
    pub aliases: HashMap<String, String>,
    /// Role ARN → its permissions boundary's ARN.
    pub boundaries: HashMap<String, String>,
    /// Route table association id → the route table's ARN.
    pub associations: HashMap<String, String>,
}

/// The ARN of an EC2 resource id, by its prefix.
pub fn ec2_arn(region: &str, account: &str, id: &str) -> Option<String> {
    let kind = match id.split_once('-')?.0 {
        "vpc" => "vpc",
        "subnet" => "subnet",
        "sg" => "security-group",
        "rtb" => "route-table",
        "igw" => "internet-gateway",
        "nat" => "natgateway",
        "eipalloc" => "elastic-ip",
        "vpce" => "vpc-endpoint",
        "lt" => "launch-template",
        "i" => "instance",
        "vol" => "volume",
        "eni" => "network-interface",
        "fl" => "vpc-flow-log",
        "sgr" => "security-group-rule",
        "acl" => "network-acl",
        _ => return None,
    };
    Some(format!("arn:aws:ec2:{region}:{account}:{kind}/{id}"))
}

/// A call made into the requests IAM evaluates.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub request: Request,
    /// For a call on a KMS key: the key's ARN (its policy decides with IAM).
    pub key: Option<String>,
    /// ResourceTag conditions cannot be decided: the resource's tags are not known.
    pub tags_unknown: bool,
}

/// What one exchange needs authorized, and what about it could not be read.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    pub requests: Vec<Authorized>,
    pub unresolved: Vec<String>,
}

/// Placeholder → parameter names that fill it, where the names differ.
const PLACEHOLDER_PARAMS: &[(&str, &[&str])] = &[
    ("SecurityGroupId", &["GroupId"]),
    (
        "DbInstanceName",
        &["DBInstanceIdentifier", "TargetDBInstanceIdentifier"],
    ),
    (
        "SnapshotName",
        &[
            "DBSnapshotIdentifier",
            "SourceDBSnapshotIdentifier",
            "TargetDBSnapshotIdentifier",
            "SnapshotName",
            "SourceSnapshotName",
            "TargetSnapshotName",
        ],
    ),
    ("ClusterSnapshotName", &["DBClusterSnapshotIdentifier"]),
    ("SubnetGroupName", &["DBSubnetGroupName"]),
    ("ParameterGroupName", &["DBParameterGroupName"]),
    (
        "ClusterParameterGroupName",
        &["DBClusterParameterGroupName"],
    ),
    ("DbClusterInstanceName", &["DBClusterIdentifier"]),
    ("RoleNameWithPath", &["RoleName"]),
    ("Alias", &["AliasName"]),
    ("KeyId", &["KeyId", "TargetKeyId"]),
    ("TrailName", &["Name", "TrailName"]),
    ("SecretId", &["SecretId", "Name"]),
    ("QueueName", &["QueueName", "QueueUrl"]),
    ("VpcFlowLogId", &["FlowLogId"]),
    ("RuleName", &["Name", "Rule"]),
    ("ReplicationGroupId", &["ReplicationGroupId"]),
    ("CacheSubnetGroupName", &["CacheSubnetGroupName"]),
    ("CacheParameterGroupName", &["CacheParameterGroupName"]),
    ("AlarmName", &["AlarmName", "AlarmNames"]),
    ("LogGroupName", &["logGroupName"]),
    ("TableName", &["TableName"]),
];

/// Placeholders filled from the REST path: (service, resource type or `*`, after this
/// segment, placeholder).
const PATH_PLACEHOLDERS: &[(&str, &str, &str, &str)] = &[
    ("EKS", "*", "clusters", "ClusterName"),
    ("EKS", "*", "node-groups", "NodegroupName"),
    ("EKS", "*", "addons", "AddonName"),
    ("Route 53", "hostedzone", "hostedzone", "Id"),
    ("Route 53", "healthcheck", "healthcheck", "Id"),
    ("Lambda", "*", "functions", "FunctionName"),
];

/// The resource type an operation makes, whose id the request cannot name yet.
fn created_type(operation: &str, types: &[ResourceType]) -> Option<String> {
    const NAMED: &[(&str, &str)] = &[
        ("CreateDBInstance", "db"),
        ("RestoreDBInstanceFromDBSnapshot", "db"),
        ("CreateDBCluster", "cluster"),
        ("RestoreDBClusterFromSnapshot", "cluster"),
        ("CreateFlowLogs", "vpc-flow-log"),
        ("AllocateAddress", "elastic-ip"),
        ("RunInstances", "instance"),
        ("CreateSecret", "Secret"),
        ("CreateDBParameterGroup", "pg"),
        ("CreateDBClusterParameterGroup", "cluster-pg"),
        ("CreateDBSubnetGroup", "subgrp"),
        ("CopyDBSnapshot", "snapshot"),
    ];
    if let Some((_, t)) = NAMED.iter().find(|(op, _)| *op == operation) {
        return Some((*t).to_owned());
    }
    let noun = norm(operation);
    types
        .iter()
        .filter(|t| {
            let n = norm(&t.name);
            noun.ends_with(&n) || noun.ends_with(&format!("{n}s"))
        })
        .max_by_key(|t| t.name.len())
        .map(|t| t.name.clone())
}

/// What a request that names no resource of a type uses: the engine's default groups
/// (the names AWS gives them, for the engines the data plane runs) and the default
/// event bus.
const DEFAULTS: &[(&str, &str, &str)] = &[
    ("ElastiCache", "parametergroup", "default.redis7"),
    ("RDS", "og", "default:postgres-16"),
    ("RDS", "pg", "default.postgres16"),
    ("DocDB", "cluster-pg", "default.docdb5.0"),
    ("EventBridge", "event-bus", "default"),
];

/// The operations that make the resource their ARN names (so an id not yet known is
/// the new resource's).
fn creates(operation: &str) -> bool {
    [
        "Create", "Allocate", "Run", "Request", "Copy", "Restore", "Import",
    ]
    .iter()
    .any(|p| operation.starts_with(p))
}

/// The requests `exchange` needs authorized, in `region` and `account`.
pub fn needs(
    exchange: &Exchange,
    principal: &str,
    dataset: &Dataset,
    ledger: &Ledger,
    region: &str,
    account: &str,
) -> Needs {
    let mut out = Needs::default();
    let Some(action) = iam_action(&exchange.call) else {
        return out;
    };
    let content_type = exchange
        .amz_headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if content_type.contains("cbor") {
        out.unresolved.push(format!(
            "{action}: a CBOR request (the emulator does not accept them; nothing ran)"
        ));
        return out;
    }
    let params = Params::of(exchange);
    let Some(types) = dataset.types(&action) else {
        out.unresolved
            .push(format!("{action}: not in the IAM definitions"));
        return out;
    };
    let context = context(exchange, &params, ledger, principal);
    // A key a statement depends on that the request should carry but was not read: an
    // absent key would pass a ForAllValues condition.
    let item_call = exchange.call.service == "DynamoDB"
        && matches!(
            exchange.call.operation.as_str(),
            "GetItem"
                | "PutItem"
                | "UpdateItem"
                | "DeleteItem"
                | "Query"
                | "BatchGetItem"
                | "BatchWriteItem"
                | "TransactGetItems"
                | "TransactWriteItems"
                | "Scan"
        );
    if item_call && !context.contains_key("dynamodb:leadingkeys") {
        out.unresolved
            .push(format!("{action}: its leading keys could not be read"));
        return out;
    }
    let record_keys = [
        "route53:changeresourcerecordsetsnormalizedrecordnames",
        "route53:changeresourcerecordsetsrecordtypes",
        "route53:changeresourcerecordsetsactions",
    ];
    if action == "route53:ChangeResourceRecordSets"
        && record_keys
            .iter()
            .any(|k| context.get(*k).is_none_or(Vec::is_empty))
    {
        out.unresolved
            .push(format!("{action}: its changes could not be read"));
        return out;
    }
    let created = created_type(&exchange.call.operation, types);

    // Strict: only what the request names. Loose, for a required type the request does
    // not name: its default (an engine's default parameter group) or, for an unfiltered
    // Describe or List, every resource of the type.
    let fill_with = |t: &ResourceType, loose: bool| -> Vec<String> {
        arns_for(
            exchange,
            &params,
            t,
            ledger,
            region,
            account,
            (created.as_deref(), loose),
        )
    };
    let fill = |t: &ResourceType| fill_with(t, false);
    let types: Vec<ResourceType> = types
        .iter()
        .filter(|t| !NOT_APPLICABLE.contains(&(exchange.call.service.as_str(), t.name.as_str())))
        .cloned()
        .collect();
    let types = types.as_slice();
    let required: Vec<&ResourceType> = types.iter().filter(|t| t.required).collect();
    let mut resources: Vec<String> = Vec::new();
    if types.is_empty() {
        // No resource-level permission: the statement must say "*".
        resources.push("*".to_owned());
    } else if required.is_empty() {
        // Only optional types: the ones the request names.
        match types.iter().map(fill).find(|a| !a.is_empty()) {
            Some(arns) => resources.extend(arns),
            None => {
                out.unresolved.push(format!(
                    "{action}: the request names none of its {}",
                    types
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                return out;
            }
        }
    } else {
        let mut filled: Vec<(&ResourceType, Vec<String>)> =
            required.iter().map(|t| (*t, fill(t))).collect();
        if filled.iter().all(|(_, a)| a.is_empty()) {
            filled = required.iter().map(|t| (*t, fill_with(t, true))).collect();
        } else {
            // Types named by neither the request nor an alternative: their defaults.
            for (t, arns) in filled.iter_mut() {
                if arns.is_empty() && !alternative(&t.name) {
                    *arns = fill_with(t, true)
                        .into_iter()
                        .filter(|a| !a.contains('*'))
                        .collect();
                }
            }
        }
        if filled.iter().all(|(_, a)| a.is_empty()) {
            if answered_not_found(exchange) {
                return out;
            }
            out.unresolved.push(format!(
                "{action}: no parameter names its {}",
                required
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
            return out;
        }
        for (t, arns) in filled {
            // Alternatives the request does not name (execution or express, ...) are
            // not what it touches; a type a create leaves to its defaults (an option
            // group) is reported.
            if arns.is_empty() {
                if !alternative(&t.name) {
                    out.unresolved
                        .push(format!("{action}: its {} is not named", t.name));
                }
                continue;
            }
            resources.extend(arns);
        }
        // Optional types the request names are authorized too (the replication group
        // CreateReplicationGroup makes, the subnet group it names).
        for t in types
            .iter()
            .filter(|t| !t.required && !alternative(&t.name))
        {
            resources.extend(fill(t));
        }
    }
    resources.sort();
    resources.dedup();
    for resource in resources {
        let mut request = Request::new(principal, &action, &resource);
        request.context = context.clone();
        let known = ledger.tags.get(&resource);
        if let Some(tags) = known {
            for (k, v) in tags {
                request.context.insert(
                    format!("aws:resourcetag/{k}").to_ascii_lowercase(),
                    vec![v.clone()],
                );
                let service = action.split(':').next().unwrap_or_default();
                request.context.insert(
                    format!("{service}:resourcetag/{k}").to_ascii_lowercase(),
                    vec![v.clone()],
                );
            }
        }
        let key =
            (action.starts_with("kms:") && resource.contains(":key/")).then(|| resource.clone());
        if let Some(key) = &key {
            let aliases: Vec<String> = ledger
                .aliases
                .iter()
                .filter(|(_, k)| *k == key)
                .map(|(a, _)| a.clone())
                .collect();
            if !aliases.is_empty() {
                request
                    .context
                    .insert("kms:resourcealiases".to_owned(), aliases);
            }
        }
        out.requests.push(Authorized {
            tags_unknown: known.is_none() && resource != "*" && !creates(&exchange.call.operation),
            request,
            key,
        });
    }
    // Tags given on an EC2 create are authorized as ec2:CreateTags on the new resource,
    // with ec2:CreateAction naming the create ("Tag your Amazon EC2 resources during
    // creation", EC2 User Guide).
    if exchange.call.service == "EC2" && creates(&exchange.call.operation) {
        let tags = params.tags();
        if !tags.is_empty() {
            for t in types.iter().filter(|t| t.required) {
                for arn in fill(t).into_iter().filter(|a| a.ends_with("/new")) {
                    let mut request = Request::new(principal, "ec2:CreateTags", &arn);
                    request.context = context.clone();
                    request.context.insert(
                        "ec2:createaction".to_owned(),
                        vec![exchange.call.operation.clone()],
                    );
                    out.requests.push(Authorized {
                        request,
                        key: None,
                        tags_unknown: false,
                    });
                }
            }
        }
    }
    out
}

/// The call named a resource that does not exist (a key looked up by an alias not made
/// yet): nothing the evaluation could name, and nothing done.
fn answered_not_found(exchange: &Exchange) -> bool {
    exchange.status.is_some_and(|s| s == 400 || s == 404)
        && (exchange.response.contains("NotFound") || exchange.response.contains("does not exist"))
}

/// Resource types that do not exist for a service that shares another's actions:
/// DocumentDB's control plane is RDS's API, but it has no option groups.
const NOT_APPLICABLE: &[(&str, &str)] = &[("DocDB", "og")];

/// Resource types that stand for one another in an action's list.
fn alternative(name: &str) -> bool {
    matches!(
        name,
        "express" | "execution" | "maprun" | "statemachine" | "healthcheck" | "hostedzone"
    )
}

/// The ARNs of type `t` the request names.
fn arns_for(
    exchange: &Exchange,
    params: &Params,
    t: &ResourceType,
    ledger: &Ledger,
    region: &str,
    account: &str,
    (created, loose): (Option<&str>, bool),
) -> Vec<String> {
    let created = created.map(str::to_owned);
    let pattern = t
        .arn
        .replace("${Partition}", "aws")
        .replace("${Region}", region)
        .replace("${Account}", account);
    // A parameter that is a whole ARN of this type.
    let glob = {
        let mut g = String::new();
        let mut rest = pattern.as_str();
        while let Some(at) = rest.find("${") {
            g.push_str(&rest[..at]);
            g.push('*');
            rest = &rest[at + rest[at..].find('}').map_or(rest.len() - at, |e| e + 1)..];
        }
        g.push_str(rest);
        g
    };
    // Only the request's own parameters: an ARN inside a document it carries (a bucket
    // policy, a replication rule's destination) is not what the call acts on. S3 names
    // its bucket and key in the path.
    let mut arns: BTreeSet<String> = if exchange.call.service == "S3" {
        BTreeSet::new()
    } else {
        params
            .0
            .iter()
            .filter(|(k, _)| Params::top_level(k))
            .map(|(_, v)| v.as_str())
            .filter(|v| v.starts_with("arn:") && crate::iam_eval::arn_glob(&glob, v))
            .map(str::to_owned)
            .collect()
    };
    // KMS keys named by alias or id.
    if t.name == "key" {
        if exchange.call.operation == "DeleteAlias" {
            for alias in params.named(&["AliasName"]) {
                arns.extend(ledger.aliases.get(alias).cloned());
            }
        }
        for v in params.named(&["KeyId", "TargetKeyId"]) {
            if v.starts_with("alias/") {
                if let Some(key) = ledger.aliases.get(v) {
                    arns.insert(key.clone());
                }
            } else if !v.starts_with("arn:") {
                arns.insert(format!("arn:aws:kms:{region}:{account}:key/{v}"));
            }
        }
        if exchange.call.operation == "CreateKey" {
            arns.insert(format!("arn:aws:kms:{region}:{account}:key/new"));
        }
        return arns.into_iter().collect();
    }
    if !arns.is_empty() {
        return arns.into_iter().collect();
    }
    // Fill each placeholder from the parameters.
    let placeholders: Vec<String> = {
        let mut v = Vec::new();
        let mut rest = pattern.as_str();
        while let Some(at) = rest.find("${") {
            let end = rest[at..].find('}').expect("a closed placeholder") + at;
            v.push(rest[at + 2..end].to_owned());
            rest = &rest[end + 1..];
        }
        v
    };
    let path: Vec<&str> = params
        .0
        .iter()
        .filter(|(k, _)| k.starts_with("path."))
        .map(|(_, v)| v.as_str())
        .collect();
    let mut candidates: Vec<String> = vec![pattern.clone()];
    for placeholder in &placeholders {
        let mut values: Vec<String> = Vec::new();
        for (service, kind, after, name) in PATH_PLACEHOLDERS {
            if exchange.call.service == *service
                && name == placeholder
                && (*kind == "*" || *kind == t.name)
                && let Some(i) = path.iter().position(|s| s == after)
                && let Some(v) = path.get(i + 1)
            {
                values.push((*v).to_owned());
            }
        }
        if exchange.call.service == "S3" {
            match placeholder.as_str() {
                "BucketName" => values.extend(path.first().map(|s| (*s).to_owned())),
                "ObjectName" => {
                    let key = path.get(1..).map(|p| p.join("/")).unwrap_or_default();
                    values.push(if key.is_empty() { "x".to_owned() } else { key });
                }
                _ => {}
            }
        }
        if values.is_empty() {
            let names: Vec<&str> = PLACEHOLDER_PARAMS
                .iter()
                .find(|(p, _)| p == placeholder)
                .map_or_else(|| vec![placeholder.as_str()], |(_, n)| n.to_vec());
            values.extend(params.top_named(&names).into_iter().map(|v| {
                // A queue URL or an ARN: the name is its last part.
                if v.starts_with("http") {
                    v.rsplit('/').next().unwrap_or(v).to_owned()
                } else if v.starts_with("arn:") {
                    v.rsplit([':', '/']).next().unwrap_or(v).to_owned()
                } else {
                    v.to_owned()
                }
            }));
        }
        if values.is_empty() && t.name == "key" {
            // (KMS keys are filled above.)
        }
        if values.is_empty() && t.name == "route-table" {
            for association in params.top_named(&["AssociationId"]) {
                if let Some(table) = ledger.associations.get(association) {
                    return vec![table.clone()];
                }
            }
        }
        if values.is_empty() {
            let op = exchange.call.operation.as_str();
            let default = DEFAULTS
                .iter()
                .find(|(service, kind, _)| *service == exchange.call.service && *kind == t.name);
            if let (Some((_, _, default)), true) = (default, loose) {
                values.push((*default).to_owned());
            } else if loose && (op.starts_with("Describe") || op.starts_with("List")) {
                // Every resource of the type: AWS authorizes an unfiltered list on `*`.
                values.push("*".to_owned());
            }
        }
        if values.is_empty() {
            values.push(match placeholder.as_str() {
                "UUID" => "00000000-0000-0000-0000-000000000000".to_owned(),
                "RoleNameWithPath" | "Id" => return Vec::new(),
                _ if creates(&exchange.call.operation) && created.as_deref() == Some(&t.name) => {
                    "new".to_owned()
                }
                _ => return Vec::new(),
            });
        }
        let values: Vec<String> = values
            .into_iter()
            .map(|v| match placeholder.as_str() {
                "Alias" => v.trim_start_matches("alias/").to_owned(),
                "SecretId" if !v.starts_with("arn:") => format!("{v}-AbCdEf"),
                _ => v,
            })
            .collect();
        candidates = candidates
            .iter()
            .flat_map(|c| {
                values
                    .iter()
                    .map(move |v| c.replacen(&format!("${{{placeholder}}}"), v, 1))
            })
            .collect();
    }
    candidates
}

/// The condition keys the request itself carries.
fn context(
    exchange: &Exchange,
    params: &Params,
    ledger: &Ledger,
    principal: &str,
) -> BTreeMap<String, Vec<String>> {
    let mut c: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let tags = params.tags();
    if !tags.is_empty() {
        for (k, v) in &tags {
            c.insert(
                format!("aws:requesttag/{k}").to_ascii_lowercase(),
                vec![v.clone()],
            );
        }
        c.insert("aws:tagkeys".to_owned(), tags.keys().cloned().collect());
    }
    c.insert("aws:securetransport".to_owned(), vec!["true".to_owned()]);
    let op = exchange.call.operation.as_str();
    match (exchange.call.service.as_str(), op) {
        ("IAM", _) => {
            if let Some(b) = params.first(&["PermissionsBoundary"]) {
                c.insert("iam:permissionsboundary".to_owned(), vec![b.to_owned()]);
            } else if let Some(role) = params.first(&["RoleName"]) {
                let account = principal.split(':').nth(4).unwrap_or_default();
                if let Some(b) = ledger
                    .boundaries
                    .get(&format!("arn:aws:iam::{account}:role/{role}"))
                {
                    c.insert("iam:permissionsboundary".to_owned(), vec![b.clone()]);
                }
            }
            if let Some(p) = params.first(&["PolicyArn"]) {
                c.insert("iam:policyarn".to_owned(), vec![p.to_owned()]);
            }
            if let Some(s) = params.first(&["AWSServiceName"]) {
                c.insert("iam:awsservicename".to_owned(), vec![s.to_owned()]);
            }
        }
        ("Route 53", "ChangeResourceRecordSets") => {
            // Each key: the values of one field of every change.
            let field = |name: &str, normalize: fn(&str) -> String| -> Vec<String> {
                params.named(&[name]).into_iter().map(normalize).collect()
            };
            c.insert(
                "route53:changeresourcerecordsetsnormalizedrecordnames".to_owned(),
                field("Name", |n| n.trim_end_matches('.').to_ascii_lowercase()),
            );
            c.insert(
                "route53:changeresourcerecordsetsrecordtypes".to_owned(),
                field("Type", str::to_owned),
            );
            c.insert(
                "route53:changeresourcerecordsetsactions".to_owned(),
                field("Action", str::to_owned),
            );
        }
        ("DynamoDB", _) => {
            let mut keys: BTreeSet<String> = BTreeSet::new();
            for (k, v) in &params.0 {
                if k == "Key.pk.S" || k == "Item.pk.S" {
                    keys.insert(v.clone());
                }
            }
            if let Some(expr) = params.get("KeyConditionExpression") {
                let bound = expr
                    .split(" AND ")
                    .filter_map(|p| p.trim().strip_prefix("pk = "))
                    .map(str::trim);
                for b in bound {
                    if let Some(v) = params.get(&format!("ExpressionAttributeValues.{b}.S")) {
                        keys.insert(v.to_owned());
                    }
                }
            }
            if !keys.is_empty() {
                c.insert(
                    "dynamodb:leadingkeys".to_owned(),
                    keys.into_iter().collect(),
                );
            }
        }
        ("EventBridge", "PutEvents") => {
            let sources = params
                .named(&["Source"])
                .into_iter()
                .map(str::to_owned)
                .collect();
            c.insert("events:source".to_owned(), sources);
        }
        ("CloudWatch", _) => {
            if let Some(ns) = params.first(&["Namespace"]) {
                c.insert("cloudwatch:namespace".to_owned(), vec![ns.to_owned()]);
            }
            let actions: Vec<String> = params
                .named(&["AlarmActions"])
                .into_iter()
                .map(str::to_owned)
                .collect();
            if !actions.is_empty() {
                c.insert("cloudwatch:alarmactions".to_owned(), actions);
            }
        }
        _ => {}
    }
    c
}

impl Ledger {
    /// Learns from `exchange` (after it was made) the tags, key policies, aliases and
    /// boundaries it set or reported.
    pub fn learn(&mut self, exchange: &Exchange, dataset: &Dataset, region: &str, account: &str) {
        if !exchange.status.is_some_and(|s| (200..300).contains(&s)) {
            return;
        }
        let params = Params::of(exchange);
        let op = exchange.call.operation.as_str();
        let service = exchange.call.service.as_str();
        // Tags an answer lists with the resource's id (EC2's tagSet, RDS's TagList, ...).
        let response = exchange.response.trim();
        if response.starts_with('<')
            && let Ok(doc) = roxmltree::Document::parse(response)
        {
            for set in doc.descendants().filter(|n| n.has_tag_name("tagSet")) {
                let Some(owner) = set.parent() else { continue };
                // The owner's own id: <subnet><subnetId>, <item> of <subnetSet>
                // (<subnetId>), of <securityGroupInfo> (<groupId>), ...
                let base = match owner.tag_name().name() {
                    "item" => owner
                        .parent()
                        .map(|p| p.tag_name().name().trim_end_matches("Set").to_owned())
                        .unwrap_or_default(),
                    other => other.to_owned(),
                };
                let base = base.trim_end_matches("Response").to_ascii_lowercase();
                let base = base
                    .strip_prefix("create")
                    .or_else(|| base.strip_prefix("describe"))
                    .unwrap_or(&base);
                // Only the owner's own id: a rule's tagSet is the rule's, not its group's.
                let own = match base {
                    "securitygroupinfo" | "securitygroup" | "securitygroups" => {
                        "groupid".to_owned()
                    }
                    "addresses" | "address" => "allocationid".to_owned(),
                    "instances" => "instanceid".to_owned(),
                    b => format!("{}id", b.trim_end_matches('s')),
                };
                let id = owner.children().find(|c| {
                    c.is_element()
                        && c.tag_name().name().eq_ignore_ascii_case(&own)
                        && c.text().and_then(|t| ec2_arn(region, account, t)).is_some()
                });
                let Some(arn) = id.and_then(|i| ec2_arn(region, account, i.text()?)) else {
                    continue;
                };
                let tags = self.tags.entry(arn).or_default();
                for item in set.children().filter(|c| c.is_element()) {
                    let get = |n: &str| {
                        item.children()
                            .find(|c| c.has_tag_name(n))
                            .and_then(|c| c.text())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    tags.insert(get("key"), get("value"));
                }
            }
        }
        // Tags given on a create or a tag call, on what the request names (or the
        // created resource's ARN or id in the answer).
        let tags = params.tags();
        let tagging = op.starts_with("Tag")
            || op.starts_with("AddTags")
            || op == "CreateTags"
            || op == "ChangeTagsForResource"
            || op.starts_with("PutBucketTagging");
        if !tags.is_empty() && (tagging || creates(op)) {
            let mut targets: Vec<String> = Vec::new();
            if op == "CreateTags" {
                targets.extend(
                    params
                        .named(&["ResourceId"])
                        .into_iter()
                        .filter_map(|id| ec2_arn(region, account, id)),
                );
            }
            if creates(op) {
                // The created resource: its ARN in the answer, or the one the request
                // names by the resource type in the operation's name.
                const OWN_ARN: &[&str] = &[
                    "arn",
                    "dbinstancearn",
                    "dbsnapshotarn",
                    "dbclusterarn",
                    "dbclustersnapshotarn",
                    "tablearn",
                    "certificatearn",
                    "rulearn",
                ];
                for (k, v) in response_ids(exchange) {
                    let last = k.rsplit('.').next().unwrap_or_default();
                    if OWN_ARN.contains(&last) && v.starts_with("arn:") && !k.contains("kms") {
                        targets.push(v);
                    }
                }
                let noun = norm(op);
                // An EC2 create names the new resource's id in its answer.
                if service == "EC2"
                    && let Some(kind) = iam_action(&exchange.call)
                        .and_then(|a| dataset.types(&a))
                        .and_then(|types| created_type(op, types))
                {
                    targets.extend(
                        response_ids(exchange)
                            .into_iter()
                            .filter_map(|(_, v)| ec2_arn(region, account, &v))
                            .filter(|arn| arn.contains(&format!(":{kind}/")))
                            .take(1),
                    );
                }
                if let Some(action) = iam_action(&exchange.call) {
                    let types = dataset.types(&action).unwrap_or_default();
                    let made = created_type(op, types);
                    for t in types
                        .iter()
                        .filter(|t| t.required || made.as_deref() == Some(&t.name))
                    {
                        if (noun.ends_with(&norm(&t.name)) || made.as_deref() == Some(&t.name))
                            && service != "EC2"
                        {
                            targets.extend(
                                arns_for(
                                    exchange,
                                    &params,
                                    t,
                                    self,
                                    region,
                                    account,
                                    (None, false),
                                )
                                .into_iter()
                                .filter(|a| !a.ends_with("/new") && !a.ends_with(":new")),
                            );
                        }
                    }
                }
            } else if let Some(action) = iam_action(&exchange.call) {
                for t in dataset.types(&action).into_iter().flatten() {
                    targets.extend(arns_for(
                        exchange,
                        &params,
                        t,
                        self,
                        region,
                        account,
                        (None, false),
                    ));
                }
            }
            for t in targets {
                self.tags.entry(t).or_default().extend(tags.clone());
            }
        }
        if service == "EC2" {
            let ids = response_ids(exchange);
            let association = ids.iter().find(|(k, _)| k.ends_with("associationid"));
            if let (Some((_, a)), Some(table)) = (association, params.first(&["RouteTableId"]))
                && let Some(arn) = ec2_arn(region, account, table)
            {
                self.associations.insert(a.clone(), arn);
            }
            if let Ok(doc) = roxmltree::Document::parse(response) {
                for item in doc.descendants().filter(|n| n.has_tag_name("item")) {
                    let get = |n: &str| {
                        item.children()
                            .find(|c| c.has_tag_name(n))
                            .and_then(|c| c.text())
                    };
                    if let (Some(a), Some(t)) =
                        (get("routeTableAssociationId"), get("routeTableId"))
                        && let Some(arn) = ec2_arn(region, account, t)
                    {
                        self.associations.insert(a.to_owned(), arn);
                    }
                }
            }
        }
        // A copy that copies its source's tags (RDS's CopyTags): the target gets them.
        if params.get("CopyTags") == Some("true") {
            let source = params
                .first(&[
                    "SourceDBSnapshotIdentifier",
                    "SourceDBClusterSnapshotIdentifier",
                ])
                .and_then(|s| self.tags.get(s).cloned());
            let target = params.first(&[
                "TargetDBSnapshotIdentifier",
                "TargetDBClusterSnapshotIdentifier",
            ]);
            let kind = if op == "CopyDBClusterSnapshot" {
                "cluster-snapshot"
            } else {
                "snapshot"
            };
            if let (Some(tags), Some(target)) = (source, target) {
                self.tags
                    .entry(format!("arn:aws:rds:{region}:{account}:{kind}:{target}"))
                    .or_default()
                    .extend(tags);
            }
        }
        match (service, op) {
            ("KMS", "CreateKey") | ("KMS", "DescribeKey") => {
                let arn = response_ids(exchange)
                    .into_iter()
                    .find(|(k, _)| k == "keymetadata.arn")
                    .map(|(_, v)| v);
                if let Some(arn) = arn {
                    if let Some(policy) = params.get("Policy")
                        && let Ok(p) = serde_json::from_str(policy)
                    {
                        self.key_policies.insert(arn.clone(), p);
                    }
                    if op == "CreateKey" {
                        self.tags.entry(arn).or_default().extend(tags);
                    }
                    if let Some(alias) = params.get("KeyId").filter(|k| k.starts_with("alias/")) {
                        let key = response_ids(exchange)
                            .into_iter()
                            .find(|(k, _)| k == "keymetadata.arn")
                            .map(|(_, v)| v)
                            .unwrap_or_default();
                        self.aliases.insert(alias.to_owned(), key);
                    }
                }
            }
            ("KMS", "PutKeyPolicy") => {
                if let (Some(key), Some(policy)) = (params.get("KeyId"), params.get("Policy")) {
                    let arn = self.key_arn(key, region, account);
                    if let (Some(arn), Ok(p)) = (arn, serde_json::from_str(policy)) {
                        self.key_policies.insert(arn, p);
                    }
                }
            }
            ("KMS", "CreateAlias") => {
                if let (Some(alias), Some(key)) =
                    (params.get("AliasName"), params.get("TargetKeyId"))
                    && let Some(arn) = self.key_arn(key, region, account)
                {
                    self.aliases.insert(alias.to_owned(), arn);
                }
            }
            ("KMS", "ListAliases") => {
                if let Ok(v) = serde_json::from_str::<Value>(&exchange.response) {
                    for a in v["Aliases"].as_array().into_iter().flatten() {
                        if let (Some(name), Some(key)) =
                            (a["AliasName"].as_str(), a["TargetKeyId"].as_str())
                        {
                            self.aliases.insert(
                                name.to_owned(),
                                format!("arn:aws:kms:{region}:{account}:key/{key}"),
                            );
                        }
                    }
                }
            }
            ("KMS", "ListResourceTags") => {
                if let (Some(key), Ok(v)) = (
                    params.get("KeyId"),
                    serde_json::from_str::<Value>(&exchange.response),
                ) && let Some(arn) = self.key_arn(key, region, account)
                {
                    let tags = self.tags.entry(arn).or_default();
                    for t in v["Tags"].as_array().into_iter().flatten() {
                        tags.insert(
                            t["TagKey"].as_str().unwrap_or_default().to_owned(),
                            t["TagValue"].as_str().unwrap_or_default().to_owned(),
                        );
                    }
                }
            }
            ("IAM", "CreateRole") | ("IAM", "PutRolePermissionsBoundary") => {
                if let (Some(role), Some(b)) =
                    (params.get("RoleName"), params.get("PermissionsBoundary"))
                {
                    self.boundaries
                        .insert(format!("arn:aws:iam::{account}:role/{role}"), b.to_owned());
                }
            }
            ("IAM", "GetRole") => {
                let ids = response_ids(exchange);
                let role = ids
                    .iter()
                    .find(|(k, _)| k.ends_with("role.arn"))
                    .map(|(_, v)| v.clone());
                let b = ids
                    .iter()
                    .find(|(k, _)| k.contains("permissionsboundaryarn"))
                    .map(|(_, v)| v.clone());
                if let (Some(role), Some(b)) = (role, b) {
                    self.boundaries.insert(role, b);
                }
            }
            _ => {}
        }
    }

    fn key_arn(&self, key: &str, region: &str, account: &str) -> Option<String> {
        if key.starts_with("arn:") {
            Some(key.to_owned())
        } else if key.starts_with("alias/") {
            self.aliases.get(key).cloned()
        } else {
            Some(format!("arn:aws:kms:{region}:{account}:key/{key}"))
        }
    }
}

/// Every leaf of the answer (JSON or XML) as (lower-case path without indexes, value).
fn response_ids(exchange: &Exchange) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let body = exchange.response.trim();
    if body.starts_with('{') {
        if let Ok(json) = serde_json::from_str::<Value>(body) {
            flatten_json("", &json, &mut out);
        }
    } else if body.starts_with('<')
        && let Ok(doc) = roxmltree::Document::parse(body)
    {
        flatten_xml("", doc.root_element(), &mut out);
    }
    out.into_iter()
        .map(|(k, v)| {
            let k: Vec<&str> = k
                .split('.')
                .filter(|p| !p.chars().all(|c| c.is_ascii_digit()))
                .collect();
            (k.join(".").to_ascii_lowercase(), v)
        })
        .collect()
}
