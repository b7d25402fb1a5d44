//! An IAM policy evaluator for the bootstrap template's policies and the key policies the
//! keys function writes.
//!
//! The emulator enforces no resource scoping and no condition, so nothing local would
//! show a statement that is too wide (an escalation) or too narrow (a call AWS denies).
//! This evaluates a request (principal, action, resource ARN, request context) the way
//! AWS's policy evaluation logic does for one account:
//!
//! - an explicit `Deny` in any applicable policy wins;
//! - an identity policy allows when one `Allow` statement matches the action (`Action`
//!   or `NotAction`, case-insensitive, `*` and `?` wildcards), the resource (`Resource`
//!   or `NotResource`, case-sensitive wildcards) and every condition;
//! - a KMS key policy is the key's primary authority: a statement naming the caller (or
//!   `*` with conditions) allows by itself; one naming the account root only delegates to
//!   IAM, so the caller's identity policy must allow as well.
//!
//! Conditions: every operator the template and the key policies use (`String*`, `Arn*`,
//! `Bool`, `Null`, with `ForAllValues:`/`ForAnyValue:` and `...IfExists`), with AWS's rules
//! for a key missing from the request: a positive operator is false, a negated one
//! (`StringNotEquals`, `ArnNotLike`, ...) is true, `ForAllValues` is true, `ForAnyValue`
//! false. Condition keys are case-insensitive, values case-sensitive (except
//! `...IgnoreCase`). Sources: "Policy evaluation logic", "IAM JSON policy elements:
//! Condition operators" and "Single-valued vs. multivalued context keys" in the IAM User
//! Guide. Policy variables (`${aws:username}`) are not supported: the template has none,
//! and [`Resolver`] fails on an unknown substitution rather than guess.

use std::collections::BTreeMap;

use serde_json::Value;

/// Values for the template's parameters, pseudo parameters and resources, so that
/// `Fn::Sub`, `Ref` and `Fn::GetAtt` resolve to what CloudFormation would make of them
/// in one account and region.
#[derive(Debug, Clone)]
pub struct Resolver {
    values: BTreeMap<String, String>,
}

impl Resolver {
    /// Resolves the template for `deployment` in `account` and `region`. Parameters take
    /// `parameters`, else their default. Each resource's `Ref` and `Arn` attribute are the
    /// ones its type gives from the name the template sets.
    pub fn for_template(
        template: &Value,
        account: &str,
        region: &str,
        parameters: &[(&str, &str)],
    ) -> Self {
        let mut values = BTreeMap::new();
        values.insert("AWS::AccountId".to_owned(), account.to_owned());
        values.insert("AWS::Region".to_owned(), region.to_owned());
        values.insert("AWS::Partition".to_owned(), "aws".to_owned());
        values.insert("AWS::URLSuffix".to_owned(), "amazonaws.com".to_owned());
        for (name, p) in template["Parameters"].as_object().into_iter().flatten() {
            let given = parameters.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
            let value = given
                .map(str::to_owned)
                .or_else(|| match &p["Default"] {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .unwrap_or_default();
            values.insert(name.clone(), value);
        }
        let deployment = values
            .get("DeploymentName")
            .cloned()
            .expect("the template has a DeploymentName parameter");
        values.insert("AWS::StackName".to_owned(), format!("apiary-{deployment}"));
        values.insert(
            "AWS::StackId".to_owned(),
            format!(
                "arn:aws:cloudformation:{region}:{account}:stack/apiary-{deployment}/\
                 00000000-0000-0000-0000-000000000000"
            ),
        );
        let mut resolver = Resolver { values };
        for (id, resource) in template["Resources"].as_object().into_iter().flatten() {
            let props = &resource["Properties"];
            let name = |field: &str| -> Option<String> {
                props
                    .get(field)
                    .map(|v| resolver.resolve(v).as_str().unwrap_or_default().to_owned())
            };
            let (reference, arn) = match resource["Type"].as_str().unwrap_or_default() {
                "AWS::Lambda::Function" => {
                    let n = name("FunctionName").unwrap_or_else(|| id.clone());
                    let arn = format!("arn:aws:lambda:{region}:{account}:function:{n}");
                    (n, arn)
                }
                "AWS::IAM::Role" => {
                    let n = name("RoleName").unwrap_or_else(|| id.clone());
                    let arn = format!("arn:aws:iam::{account}:role/{n}");
                    (n, arn)
                }
                "AWS::IAM::ManagedPolicy" => {
                    let n = name("ManagedPolicyName").unwrap_or_else(|| id.clone());
                    let arn = format!("arn:aws:iam::{account}:policy/{n}");
                    (arn.clone(), arn)
                }
                "AWS::Logs::LogGroup" => {
                    let n = name("LogGroupName").unwrap_or_else(|| id.clone());
                    let arn = format!("arn:aws:logs:{region}:{account}:log-group:{n}:*");
                    (n, arn)
                }
                "AWS::SQS::Queue" => {
                    let n = name("QueueName").unwrap_or_else(|| id.clone());
                    (
                        format!("https://sqs.{region}.amazonaws.com/{account}/{n}"),
                        format!("arn:aws:sqs:{region}:{account}:{n}"),
                    )
                }
                "AWS::SNS::Topic" => {
                    let n = name("TopicName").unwrap_or_else(|| id.clone());
                    let arn = format!("arn:aws:sns:{region}:{account}:{n}");
                    (arn.clone(), arn)
                }
                "AWS::StepFunctions::StateMachine" => {
                    let n = name("StateMachineName").unwrap_or_else(|| id.clone());
                    let arn = format!("arn:aws:states:{region}:{account}:stateMachine:{n}");
                    (arn.clone(), arn)
                }
                "AWS::SecretsManager::Secret" => {
                    let n = name("Name").unwrap_or_else(|| id.clone());
                    // Secrets Manager adds six random characters (a fixed stand-in here).
                    let arn =
                        format!("arn:aws:secretsmanager:{region}:{account}:secret:{n}-AbCdEf");
                    (arn.clone(), arn)
                }
                // A key's id is made by KMS; a stand-in that no other key has.
                "AWS::KMS::Key" => {
                    let key = format!("key-{}", id.to_ascii_lowercase());
                    let arn = format!("arn:aws:kms:{region}:{account}:key/{key}");
                    (key, arn)
                }
                "Custom::ApiaryStateTable" => {
                    let n = format!("apiary-{deployment}");
                    let arn = format!("arn:aws:dynamodb:{region}:{account}:table/{n}");
                    (n, arn)
                }
                "AWS::Scheduler::Schedule" => {
                    let n = name("Name").unwrap_or_else(|| id.clone());
                    let arn = format!("arn:aws:scheduler:{region}:{account}:schedule/default/{n}");
                    (n, arn)
                }
                "AWS::Events::Rule" => {
                    let n = name("Name").unwrap_or_else(|| id.clone());
                    let arn = format!("arn:aws:events:{region}:{account}:rule/{n}");
                    (n, arn)
                }
                _ => (id.clone(), format!("arn:aws:unknown:::{id}")),
            };
            resolver.values.insert(id.clone(), reference);
            resolver.values.insert(format!("{id}.Arn"), arn);
        }
        resolver
    }

    /// The value a `Ref` or `Fn::Sub` variable names.
    pub fn value(&self, name: &str) -> &str {
        self.values
            .get(name)
            .unwrap_or_else(|| panic!("the template names ${{{name}}}, which nothing defines"))
    }

    /// The value of `name`, if the template defines it.
    pub fn try_value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// `value` with every intrinsic replaced by what it resolves to.
    pub fn resolve(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (k, v) = map.iter().next().expect("one entry");
                match k.as_str() {
                    "Ref" => Value::String(self.value(v.as_str().expect("Ref names")).to_owned()),
                    "Fn::GetAtt" => {
                        let parts: Vec<&str> = match v {
                            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                            Value::String(s) => s.splitn(2, '.').collect(),
                            other => panic!("Fn::GetAtt {other}"),
                        };
                        Value::String(self.value(&parts.join(".")).to_owned())
                    }
                    "Fn::Sub" => {
                        let (text, extra) = match v {
                            Value::String(s) => (s.as_str(), None),
                            Value::Array(a) => (
                                a[0].as_str().expect("Fn::Sub text"),
                                a.get(1).and_then(Value::as_object),
                            ),
                            other => panic!("Fn::Sub {other}"),
                        };
                        Value::String(self.sub(text, extra))
                    }
                    "Fn::Join" => {
                        let sep = v[0].as_str().expect("Fn::Join separator");
                        let parts: Vec<String> = v[1]
                            .as_array()
                            .expect("Fn::Join list")
                            .iter()
                            .map(|p| self.resolve(p).as_str().unwrap_or_default().to_owned())
                            .collect();
                        Value::String(parts.join(sep))
                    }
                    // A list, as a condition's values (the stack's principal lists).
                    "Fn::Split" => {
                        let sep = v[0].as_str().expect("Fn::Split separator");
                        let text = self.resolve(&v[1]);
                        Value::Array(
                            text.as_str()
                                .expect("Fn::Split splits a string")
                                .split(sep)
                                .map(|part| Value::String(part.to_owned()))
                                .collect(),
                        )
                    }
                    k if k.starts_with("Fn::") => panic!("{k} is not supported by the evaluator"),
                    _ => Value::Object(
                        map.iter()
                            .map(|(k, v)| (k.clone(), self.resolve(v)))
                            .collect(),
                    ),
                }
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v)))
                    .collect(),
            ),
            Value::Array(list) => Value::Array(list.iter().map(|v| self.resolve(v)).collect()),
            other => other.clone(),
        }
    }

    fn sub(&self, text: &str, extra: Option<&serde_json::Map<String, Value>>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let end = after.find('}').expect("an unclosed ${ in Fn::Sub");
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = extra.and_then(|m| m.get(name)) {
                out.push_str(self.resolve(v).as_str().unwrap_or_default());
            } else {
                out.push_str(self.value(name));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// A request as the policy evaluation sees it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The caller's role ARN.
    pub principal: String,
    pub action: String,
    pub resource: String,
    /// Condition keys (any case) and their values; `aws:PrincipalArn` is added from
    /// `principal` when absent.
    pub context: BTreeMap<String, Vec<String>>,
    /// A `...ResourceTag/...` key missing from the context is taken to hold: for a
    /// resource whose tags are not known (the decision is then "allowed if tagged").
    pub assume_resource_tags: bool,
}

impl Request {
    pub fn new(principal: &str, action: &str, resource: &str) -> Self {
        Request {
            principal: principal.to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            context: BTreeMap::new(),
            assume_resource_tags: false,
        }
    }

    /// Adds a context key with its values.
    pub fn with(mut self, key: &str, values: &[&str]) -> Self {
        self.context.insert(
            key.to_ascii_lowercase(),
            values.iter().map(|v| (*v).to_owned()).collect(),
        );
        self
    }

    fn values(&self, key: &str) -> Option<Vec<String>> {
        let key = key.to_ascii_lowercase();
        if let Some(v) = self.context.get(&key) {
            return Some(v.clone());
        }
        match key.as_str() {
            "aws:principalarn" => Some(vec![self.principal.clone()]),
            "aws:principalaccount" | "kms:calleraccount" => {
                self.principal.split(':').nth(4).map(|a| vec![a.to_owned()])
            }
            _ => None,
        }
    }
}

/// Which statement decided, by its policy name and Sid (or index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed(String),
    Denied(String),
    NotAllowed,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed(_))
    }
}

/// One condition: operator, key, values.
#[derive(Debug, Clone)]
pub struct Condition {
    pub operator: String,
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Statement {
    /// `<policy>/<Sid or index>`.
    pub id: String,
    pub allow: bool,
    /// AWS principals (`*`, an account root ARN, a role ARN) and services, for
    /// resource policies; empty in identity policies.
    pub principals: Vec<String>,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub resources: Vec<String>,
    pub not_resources: Vec<String>,
    pub conditions: Vec<Condition>,
}

/// A policy: the statements of one or more documents (a role's inline policies together).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Bool(b) => vec![b.to_string()],
        Value::Number(n) => vec![n.to_string()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        other => panic!("a policy value that is not a string or list: {other}"),
    }
}

impl Policy {
    /// Adds the statements of a resolved policy document, named `name`.
    pub fn add_document(&mut self, name: &str, document: &Value) {
        let list = match &document["Statement"] {
            Value::Array(a) => a.clone(),
            single @ Value::Object(_) => vec![single.clone()],
            other => panic!("{name}: Statement {other}"),
        };
        for (i, s) in list.iter().enumerate() {
            let sid = s["Sid"]
                .as_str()
                .map_or_else(|| i.to_string(), str::to_owned);
            let effect = s["Effect"].as_str().unwrap_or_default();
            assert!(
                effect == "Allow" || effect == "Deny",
                "{name}/{sid}: Effect {effect:?}"
            );
            let principals = match &s["Principal"] {
                Value::Null => Vec::new(),
                Value::String(p) => vec![p.clone()],
                Value::Object(m) => m.values().flat_map(strings).collect(),
                other => panic!("{name}/{sid}: Principal {other}"),
            };
            let mut conditions = Vec::new();
            for (operator, keys) in s["Condition"].as_object().into_iter().flatten() {
                for (key, values) in keys.as_object().expect("condition keys") {
                    conditions.push(Condition {
                        operator: operator.clone(),
                        key: key.clone(),
                        values: strings(values),
                    });
                }
            }
            self.statements.push(Statement {
                id: format!("{name}/{sid}"),
                allow: effect == "Allow",
                principals,
                actions: strings(&s["Action"]),
                not_actions: strings(&s["NotAction"]),
                resources: strings(&s["Resource"]),
                not_resources: strings(&s["NotResource"]),
                conditions,
            });
        }
    }

    pub fn from_document(name: &str, document: &Value) -> Self {
        let mut p = Policy::default();
        p.add_document(name, document);
        p
    }

    /// The identity-policy decision for `request`.
    pub fn decide(&self, request: &Request) -> Decision {
        let matching: Vec<&Statement> = self
            .statements
            .iter()
            .filter(|s| s.applies(request))
            .collect();
        if let Some(deny) = matching.iter().find(|s| !s.allow) {
            return Decision::Denied(deny.id.clone());
        }
        matching
            .first()
            .map_or(Decision::NotAllowed, |s| Decision::Allowed(s.id.clone()))
    }

    /// The decision of a resource policy (a bucket's, a queue's) for a request from
    /// `principal`, a service principal (`events.amazonaws.com`) or a role ARN: a
    /// statement applies when its principal is `*` or the caller itself.
    pub fn decide_resource(&self, principal: &str, request: &Request) -> Decision {
        // A statement naming the account (its root) only delegates to the caller's
        // identity policy, which this does not see: it grants nothing here. Used for
        // service principals, which no identity policy speaks for.
        let matching: Vec<&Statement> = self
            .statements
            .iter()
            .filter(|s| {
                s.principals.iter().any(|p| p == "*" || p == principal) && s.applies(request)
            })
            .collect();
        if let Some(deny) = matching.iter().find(|s| !s.allow) {
            return Decision::Denied(deny.id.clone());
        }
        matching
            .first()
            .map_or(Decision::NotAllowed, |s| Decision::Allowed(s.id.clone()))
    }

    /// The decision for a call on a KMS key: `key_policy` is the key's policy, `identity`
    /// the caller's IAM policy.
    pub fn decide_kms(key_policy: &Policy, identity: &Policy, request: &Request) -> Decision {
        let account = request.principal.split(':').nth(4).unwrap_or_default();
        let root = format!("arn:aws:iam::{account}:root");
        let names_caller = |s: &Statement| {
            s.principals
                .iter()
                .any(|p| p == "*" || p == &request.principal)
        };
        let names_account = |s: &Statement| s.principals.iter().any(|p| p == &root || p == account);
        let applicable: Vec<&Statement> = key_policy
            .statements
            .iter()
            .filter(|s| (names_caller(s) || names_account(s)) && s.applies(request))
            .collect();
        if let Some(deny) = applicable.iter().find(|s| !s.allow) {
            return Decision::Denied(deny.id.clone());
        }
        let identity_decision = identity.decide(request);
        if let Decision::Denied(_) = identity_decision {
            return identity_decision;
        }
        if let Some(direct) = applicable.iter().find(|s| names_caller(s)) {
            return Decision::Allowed(direct.id.clone());
        }
        if applicable.iter().any(|s| names_account(s)) && identity_decision.is_allowed() {
            return identity_decision;
        }
        Decision::NotAllowed
    }
}

impl Statement {
    fn applies(&self, request: &Request) -> bool {
        let action = if self.not_actions.is_empty() {
            self.actions.iter().any(|p| glob(p, &request.action, true))
        } else {
            !self
                .not_actions
                .iter()
                .any(|p| glob(p, &request.action, true))
        };
        let resource = if self.not_resources.is_empty() {
            self.resources
                .iter()
                .any(|p| arn_glob(p, &request.resource))
        } else {
            !self
                .not_resources
                .iter()
                .any(|p| arn_glob(p, &request.resource))
        };
        action && resource && self.conditions.iter().all(|c| c.holds(request))
    }
}

impl Condition {
    /// Whether this condition holds for `request`.
    pub fn holds(&self, request: &Request) -> bool {
        let (set, operator) = match self.operator.split_once(':') {
            Some((set, op)) => (Some(set), op),
            None => (None, self.operator.as_str()),
        };
        let (operator, if_exists) = match operator.strip_suffix("IfExists") {
            Some(op) => (op, true),
            None => (operator, false),
        };
        let present = request.values(&self.key);
        if operator == "Null" {
            let want_absent = self.values.iter().any(|v| v == "true");
            return present.is_none() == want_absent;
        }
        let negated = operator.contains("Not");
        let Some(present) = present else {
            if request.assume_resource_tags
                && self.key.to_ascii_lowercase().contains(":resourcetag/")
            {
                return true;
            }
            return match set {
                Some("ForAllValues") => true,
                Some("ForAnyValue") => false,
                _ => if_exists || negated,
            };
        };
        let one = |value: &str| -> bool {
            let any = self.values.iter().any(|p| match operator {
                "StringEquals" | "StringNotEquals" => p == value,
                // AWS documents ArnEquals like ArnLike: wildcards, part by part.
                "ArnEquals" | "ArnNotEquals" | "ArnLike" | "ArnNotLike" => arn_glob(p, value),
                "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => {
                    p.eq_ignore_ascii_case(value)
                }
                "StringLike" | "StringNotLike" => glob(p, value, false),
                "Bool" => p.eq_ignore_ascii_case(value),
                other => panic!("condition operator {other} is not supported by the evaluator"),
            });
            if negated { !any } else { any }
        };
        match set {
            Some("ForAllValues") => present.iter().all(|v| one(v)),
            Some("ForAnyValue") => present.iter().any(|v| one(v)),
            Some(other) => panic!("condition set operator {other}"),
            None if negated => present.iter().all(|v| one(v)),
            None => present.iter().any(|v| one(v)),
        }
    }
}

/// ARN matching as the Resource element and the ARN operators do it: each of the six
/// colon-separated parts matched on its own (a wildcard never spans a colon, except in
/// the last part, the resource, which may hold colons itself). `*` alone matches all.
pub fn arn_glob(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    if p.len() != 6 || a.len() != 6 {
        return glob(pattern, arn, false);
    }
    p.iter().zip(&a).all(|(p, a)| glob(p, a, false))
}

/// Wildcard matching: `*` any run, `?` one character.
pub fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    fn go(p: &[u8], t: &[u8], ic: bool) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t, ic) || (!t.is_empty() && go(p, &t[1..], ic)),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..], ic),
            (Some(x), Some(y)) if x == y || (ic && x.eq_ignore_ascii_case(y)) => {
                go(&p[1..], &t[1..], ic)
            }
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes(), ignore_case)
}

/// Every Lambda function's role policy in `template`, resolved, by the function's short
/// name (`apiary-${DeploymentName}-<name>`), with the role's ARN.
pub fn function_roles(template: &Value, resolver: &Resolver) -> BTreeMap<String, (String, Policy)> {
    let resources = template["Resources"].as_object().expect("Resources");
    let mut roles = BTreeMap::new();
    for (id, resource) in resources {
        if resource["Type"] != "AWS::Lambda::Function" {
            continue;
        }
        let props = &resource["Properties"];
        let Some(name) = props["FunctionName"]["Fn::Sub"]
            .as_str()
            .and_then(|n| n.strip_prefix("apiary-${DeploymentName}-"))
        else {
            panic!("{id}: FunctionName is not apiary-${{DeploymentName}}-x");
        };
        let role_id = props["Role"]["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: Role is not a GetAtt of a role in this template"));
        roles.insert(
            name.to_owned(),
            (
                resolver.value(&format!("{role_id}.Arn")).to_owned(),
                role_policy(template, resolver, role_id),
            ),
        );
    }
    roles
}

/// The inline policies of the role `role_id`, resolved, as one policy.
pub fn role_policy(template: &Value, resolver: &Resolver, role_id: &str) -> Policy {
    let role = &template["Resources"][role_id]["Properties"];
    assert!(
        role.get("ManagedPolicyArns").is_none(),
        "{role_id}: managed policies cannot be evaluated; use inline policies"
    );
    let mut policy = Policy::default();
    for p in role["Policies"].as_array().into_iter().flatten() {
        let name = p["PolicyName"].as_str().unwrap_or(role_id);
        policy.add_document(
            &format!("{role_id}/{name}"),
            &resolver.resolve(&p["PolicyDocument"]),
        );
    }
    // Customer managed policies of the template that attach themselves to the role.
    let reference = serde_json::json!({"Ref": role_id});
    for (id, resource) in template["Resources"].as_object().into_iter().flatten() {
        if resource["Type"] == "AWS::IAM::ManagedPolicy"
            && resource["Properties"]["Roles"]
                .as_array()
                .is_some_and(|roles| roles.contains(&reference))
        {
            policy.add_document(
                id,
                &resolver.resolve(&resource["Properties"]["PolicyDocument"]),
            );
        }
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROLE: &str = "arn:aws:iam::111122223333:role/r";

    fn policy(statements: Value) -> Policy {
        Policy::from_document("p", &json!({ "Statement": statements }))
    }

    #[test]
    fn actions_ignore_case_and_resources_do_not() {
        let p = policy(json!([{"Effect": "Allow", "Action": "EC2:Describe*",
            "Resource": "arn:aws:ec2:*:*:vpc/vpc-A*"}]));
        assert!(
            p.decide(&Request::new(
                ROLE,
                "ec2:DescribeVpcs",
                "arn:aws:ec2:r:1:vpc/vpc-Ab"
            ))
            .is_allowed()
        );
        assert!(
            !p.decide(&Request::new(
                ROLE,
                "ec2:DescribeVpcs",
                "arn:aws:ec2:r:1:vpc/vpc-ab"
            ))
            .is_allowed()
        );
        assert!(
            !p.decide(&Request::new(
                ROLE,
                "ec2:DeleteVpc",
                "arn:aws:ec2:r:1:vpc/vpc-Ab"
            ))
            .is_allowed()
        );
    }

    #[test]
    fn an_explicit_deny_wins() {
        let p = policy(json!([
            {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
            {"Sid": "No", "Effect": "Deny", "Action": "iam:DeleteRolePermissionsBoundary", "Resource": "*"}
        ]));
        let r = Request::new(
            ROLE,
            "iam:DeleteRolePermissionsBoundary",
            "arn:aws:iam::1:role/x",
        );
        assert_eq!(p.decide(&r), Decision::Denied("p/No".into()));
    }

    #[test]
    fn a_missing_key_fails_positive_operators_and_passes_negated_ones() {
        let positive = policy(
            json!([{"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestTag/t": "v"}}}]),
        );
        let negated = policy(json!([{"Effect": "Deny", "Action": "s3:*", "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:RequestTag/t": "v"}}}]));
        let bare = Request::new(ROLE, "s3:PutObject", "arn:aws:s3:::b/k");
        assert_eq!(positive.decide(&bare), Decision::NotAllowed);
        assert!(matches!(negated.decide(&bare), Decision::Denied(_)));
        let tagged = bare.clone().with("AWS:RequestTag/t", &["v"]);
        assert!(positive.decide(&tagged).is_allowed());
        assert_eq!(negated.decide(&tagged), Decision::NotAllowed);
    }

    #[test]
    fn set_operators_follow_their_empty_rules() {
        let all = policy(
            json!([{"Effect": "Allow", "Action": "dynamodb:Query", "Resource": "*",
            "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["A", "B"]}}}]),
        );
        let any = policy(
            json!([{"Effect": "Allow", "Action": "dynamodb:Query", "Resource": "*",
            "Condition": {"ForAnyValue:StringEquals": {"dynamodb:LeadingKeys": ["A"]}}}]),
        );
        let r = Request::new(ROLE, "dynamodb:Query", "arn:aws:dynamodb:r:1:table/t");
        assert!(
            all.decide(&r).is_allowed(),
            "ForAllValues holds for no values"
        );
        assert!(
            !any.decide(&r).is_allowed(),
            "ForAnyValue fails for no values"
        );
        assert!(
            all.decide(&r.clone().with("dynamodb:LeadingKeys", &["A", "B"]))
                .is_allowed()
        );
        assert!(
            !all.decide(&r.clone().with("dynamodb:LeadingKeys", &["A", "C"]))
                .is_allowed()
        );
        assert!(
            any.decide(&r.clone().with("dynamodb:LeadingKeys", &["C", "A"]))
                .is_allowed()
        );
    }

    #[test]
    fn not_action_if_exists_null_and_arn_parts_follow_aws() {
        let p = policy(json!([
            {"Sid": "AllButIam", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*",
             "Condition": {"StringEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}}},
            {"Sid": "NoUntagged", "Effect": "Deny", "Action": "ec2:CreateVolume", "Resource": "*",
             "Condition": {"Null": {"aws:RequestTag/owner": "true"}}}
        ]));
        let put = Request::new(ROLE, "s3:PutObject", "arn:aws:s3:::b/k");
        assert!(
            p.decide(&put).is_allowed(),
            "IfExists holds without the key"
        );
        assert!(
            p.decide(
                &put.clone()
                    .with("s3:x-amz-server-side-encryption", &["aws:kms"])
            )
            .is_allowed()
        );
        assert!(
            !p.decide(&put.with("s3:x-amz-server-side-encryption", &["AES256"]))
                .is_allowed()
        );
        assert_eq!(
            p.decide(&Request::new(ROLE, "iam:CreateRole", "*")),
            Decision::NotAllowed
        );
        let volume = Request::new(ROLE, "ec2:CreateVolume", "arn:aws:ec2:r:1:volume/new");
        assert!(
            matches!(p.decide(&volume), Decision::Denied(_)),
            "Null: the tag is missing"
        );
        assert!(
            p.decide(&volume.with("aws:RequestTag/owner", &["me"]))
                .is_allowed()
        );
        // A wildcard does not span the colons between an ARN's parts.
        assert!(!arn_glob(
            "arn:aws:s3:::apiary-*",
            "arn:aws:s3:us-east-1::apiary-x"
        ));
        assert!(arn_glob(
            "arn:aws:logs:*:1:log-group:/a/*",
            "arn:aws:logs:r:1:log-group:/a/b:*"
        ));
        assert!(arn_glob("*", "arn:aws:s3:::x"));
    }

    #[test]
    fn a_resource_policy_grants_only_whom_it_names() {
        let queue = policy(json!([
            {"Sid": "Rule", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
             "Action": "sqs:SendMessage", "Resource": "*",
             "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:events:r:1:rule/mine-*"}}},
            {"Sid": "Account", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"},
             "Action": "sqs:*", "Resource": "*"}
        ]));
        let send = |source: &str| {
            Request::new(
                "events.amazonaws.com",
                "sqs:SendMessage",
                "arn:aws:sqs:r:1:q",
            )
            .with("aws:SourceArn", &[source])
        };
        assert!(
            queue
                .decide_resource(
                    "events.amazonaws.com",
                    &send("arn:aws:events:r:1:rule/mine-a")
                )
                .is_allowed()
        );
        assert!(
            !queue
                .decide_resource(
                    "events.amazonaws.com",
                    &send("arn:aws:events:r:1:rule/other")
                )
                .is_allowed()
        );
        let role = "arn:aws:iam::1:role/r";
        assert_eq!(
            queue.decide_resource(
                role,
                &Request::new(role, "sqs:SendMessage", "arn:aws:sqs:r:1:q")
            ),
            Decision::NotAllowed,
            "the account's statement delegates to IAM; it grants nothing by itself"
        );
    }

    #[test]
    fn a_key_policy_naming_the_account_needs_iam_too() {
        let key = policy(json!([
            {"Sid": "Admins", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "Role", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:CreateAlias",
             "Resource": "*", "Condition": {"ArnEquals": {"aws:PrincipalArn": ROLE},
             "StringEquals": {"kms:CallerAccount": "111122223333"}}}
        ]));
        let none = Policy::default();
        let k = "arn:aws:kms:r:111122223333:key/k";
        assert_eq!(
            Policy::decide_kms(&key, &none, &Request::new(ROLE, "kms:CreateAlias", k)),
            Decision::Allowed("p/Role".into())
        );
        assert_eq!(
            Policy::decide_kms(&key, &none, &Request::new(ROLE, "kms:PutKeyPolicy", k)),
            Decision::NotAllowed
        );
        let iam =
            policy(json!([{"Effect": "Allow", "Action": "kms:PutKeyPolicy", "Resource": "*"}]));
        assert!(
            Policy::decide_kms(&key, &iam, &Request::new(ROLE, "kms:PutKeyPolicy", k)).is_allowed()
        );
        let other = "arn:aws:iam::444455556666:role/r";
        assert_eq!(
            Policy::decide_kms(&key, &iam, &Request::new(other, "kms:CreateAlias", k)),
            Decision::NotAllowed
        );
    }

    #[test]
    fn sub_resolves_parameters_pseudo_parameters_and_attributes() {
        let template = json!({
            "Parameters": {"DeploymentName": {"Type": "String"}, "Size": {"Default": "small"}},
            "Resources": {"Fn": {"Type": "AWS::Lambda::Function",
                "Properties": {"FunctionName": {"Fn::Sub": "apiary-${DeploymentName}-keys"}}}}
        });
        let r = Resolver::for_template(&template, "1", "eu-west-1", &[("DeploymentName", "d")]);
        assert_eq!(
            r.resolve(&json!({"Fn::Sub": "${Fn.Arn}/${Size}/${!Literal}/${AWS::Region}"})),
            json!("arn:aws:lambda:eu-west-1:1:function:apiary-d-keys/small/${Literal}/eu-west-1")
        );
        assert_eq!(r.resolve(&json!({"Ref": "Fn"})), json!("apiary-d-keys"));
    }
}
