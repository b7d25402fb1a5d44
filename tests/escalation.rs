//! The escalation paths a reviewer found in the template, each as requests the policy
//! evaluator (`apiary_e2e::iam_eval`) decides against the template's roles and the
//! resource policies the functions write (key, bucket and queue policies): the attack
//! must be refused, and the legitimate call next to it allowed, so no probe passes by
//! refusing everything.
//!
//! The emulator enforces neither resources nor conditions; these decisions are what AWS
//! would make of the same documents. The canary (`dropping_a_guard_is_named`) and the
//! sweep (`every_guard_a_probe_covers_is_named_when_dropped`) show the probes fail when
//! the template loses a condition.

use std::collections::BTreeMap;

use apiary_core::naming::Names;
use apiary_e2e::iam_eval::{
    Condition, Decision, Policy, Request, Resolver, Statement, function_roles,
};
use apiary_e2e::{REGION, template};
use serde_json::Value;

const ACCOUNT: &str = "111122223333";
const NAME: &str = "demo";
const DOMAIN: &str = "demo.example.com";

fn role(function: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/apiary-{NAME}-fn-{function}")
}

fn iam_role(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

fn managed(policy: &str) -> String {
    format!("arn:aws:iam::aws:policy/{policy}")
}

fn key(id: &str) -> String {
    format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{id}")
}

/// Where a probe's decision comes from.
#[derive(Clone)]
enum Authority {
    /// The function's role alone.
    Iam,
    /// A KMS key: its policy together with the function's role.
    Key(Policy),
    /// A resource policy, for a service principal or a role.
    Resource(Policy),
}

#[derive(Clone)]
struct Probe {
    /// The escalation path (or the legitimate call) it stands for.
    what: &'static str,
    /// A function name, or `admin` for an account administrator with `*:*`.
    caller: &'static str,
    /// For resource policies: the calling principal, when not the caller's role.
    principal: Option<String>,
    request: Request,
    authority: Authority,
    allowed: bool,
}

fn probe(what: &'static str, caller: &'static str, allowed: bool, request: Request) -> Probe {
    Probe {
        what,
        caller,
        principal: None,
        request,
        authority: Authority::Iam,
        allowed,
    }
}

fn req(caller: &str, action: &str, resource: &str) -> Request {
    let principal = if caller == "admin" {
        iam_role("Admin")
    } else {
        role(caller)
    };
    Request::new(&principal, action, resource)
}

fn resolver(template: &Value) -> Resolver {
    Resolver::for_template(
        template,
        ACCOUNT,
        REGION,
        &[
            ("DeploymentName", NAME),
            ("Domain", DOMAIN),
            ("ClusterAdminArns", OPERATOR_ADMIN),
            ("ClusterViewerArns", OPERATOR_VIEWER),
        ],
    )
}

/// The stack's operators (its `ClusterAdminArns` and `ClusterViewerArns`).
const OPERATOR_ADMIN: &str = "arn:aws:iam::111122223333:role/platform/admins";
const OPERATOR_VIEWER: &str = "arn:aws:iam::444455556666:role/vendor-support";

/// Every probe, for the roles of `template`.
fn probes(template: &Value) -> Vec<Probe> {
    let resolver = resolver(template);
    // (A template without the boundary policy still gets every probe, and fails them.)
    let boundary = resolver
        .try_value("IngestionBoundary")
        .unwrap_or("arn:aws:iam::111122223333:policy/no-boundary-in-this-template")
        .to_owned();
    let ingestion = iam_role(&format!("apiary-{NAME}-ingestion"));
    let mut p = Vec::new();

    // The workloads role and the ingestion role it makes.
    let w = "workloads role makes itself admin through the ingestion role";
    let bounded = |action: &str, resource: &str, b: &str| {
        req("workloads", action, resource).with("iam:PermissionsBoundary", &[b])
    };
    p.push(probe(
        "workloads makes the ingestion role with the boundary",
        "workloads",
        true,
        bounded("iam:CreateRole", &ingestion, &boundary),
    ));
    p.push(probe(
        w,
        "workloads",
        false,
        req("workloads", "iam:CreateRole", &ingestion),
    ));
    p.push(probe(
        w,
        "workloads",
        false,
        bounded(
            "iam:CreateRole",
            &ingestion,
            &managed("AdministratorAccess"),
        ),
    ));
    p.push(probe(
        w,
        "workloads",
        false,
        bounded(
            "iam:CreateRole",
            &iam_role(&format!("apiary-{NAME}-other")),
            &boundary,
        ),
    ));
    p.push(probe(
        "workloads writes the ingestion role's policy under the boundary",
        "workloads",
        true,
        bounded("iam:PutRolePolicy", &ingestion, &boundary),
    ));
    p.push(probe(
        w,
        "workloads",
        false,
        req("workloads", "iam:PutRolePolicy", &ingestion),
    ));
    p.push(probe(
        w,
        "workloads",
        false,
        bounded("iam:PutRolePolicy", &role("workloads"), &boundary),
    ));
    p.push(probe(
        w,
        "workloads",
        false,
        bounded(
            "iam:PutRolePermissionsBoundary",
            &ingestion,
            &managed("AdministratorAccess"),
        ),
    ));
    p.push(probe(
        w,
        "workloads",
        false,
        req("workloads", "iam:DeleteRolePermissionsBoundary", &ingestion),
    ));
    for action in [
        "iam:CreatePolicyVersion",
        "iam:SetDefaultPolicyVersion",
        "iam:DeletePolicyVersion",
    ] {
        p.push(probe(
            w,
            "workloads",
            false,
            req("workloads", action, &boundary),
        ));
    }
    p.push(probe(
        w,
        "workloads",
        false,
        req("workloads", "iam:AttachRolePolicy", &ingestion)
            .with("iam:PolicyARN", &[&managed("AdministratorAccess")])
            .with("iam:PermissionsBoundary", &[&boundary]),
    ));
    p.push(probe(
        w,
        "workloads",
        false,
        req("workloads", "iam:UpdateAssumeRolePolicy", &role("teardown")),
    ));
    p.push(probe(
        "workloads passes the ingestion role to pods",
        "workloads",
        true,
        req("workloads", "iam:PassRole", &ingestion)
            .with("iam:PassedToService", &["pods.eks.amazonaws.com"]),
    ));
    p.push(probe(
        w,
        "workloads",
        false,
        req("workloads", "iam:PassRole", &ingestion)
            .with("iam:PassedToService", &["ec2.amazonaws.com"]),
    ));
    p.push(probe(
        w,
        "workloads",
        false,
        req("workloads", "iam:PassRole", &role("teardown"))
            .with("iam:PassedToService", &["pods.eks.amazonaws.com"]),
    ));

    // The cluster role and the three EKS roles it makes (no boundary: see the template).
    let c = "cluster role widens the EKS roles it makes";
    let node = iam_role(&format!("apiary-{NAME}-eks-node"));
    p.push(probe(
        "cluster makes the node role",
        "cluster",
        true,
        req("cluster", "iam:CreateRole", &node),
    ));
    p.push(probe(
        c,
        "cluster",
        false,
        req(
            "cluster",
            "iam:CreateRole",
            &iam_role(&format!("apiary-{NAME}-admin")),
        ),
    ));
    p.push(probe(
        "cluster attaches the node policy",
        "cluster",
        true,
        req("cluster", "iam:AttachRolePolicy", &node)
            .with("iam:PolicyARN", &[&managed("AmazonEKSWorkerNodePolicy")]),
    ));
    p.push(probe(
        c,
        "cluster",
        false,
        req("cluster", "iam:AttachRolePolicy", &node)
            .with("iam:PolicyARN", &[&managed("AdministratorAccess")]),
    ));
    for action in [
        "iam:PutRolePolicy",
        "iam:UpdateAssumeRolePolicy",
        "iam:DeleteRolePermissionsBoundary",
    ] {
        p.push(probe(c, "cluster", false, req("cluster", action, &node)));
    }
    p.push(probe(
        "cluster passes the cluster role to EKS",
        "cluster",
        true,
        req(
            "cluster",
            "iam:PassRole",
            &iam_role(&format!("apiary-{NAME}-eks-cluster")),
        )
        .with("iam:PassedToService", &["eks.amazonaws.com"]),
    ));
    p.push(probe(
        c,
        "cluster",
        false,
        req(
            "cluster",
            "iam:PassRole",
            &iam_role(&format!("apiary-{NAME}-eks-cluster")),
        )
        .with("iam:PassedToService", &["lambda.amazonaws.com"]),
    ));

    // Access entries: only the principals the stack names get into the cluster, each
    // only with the policy its list gives; only operator entries are ever revoked.
    let a = "cluster role lets a principal the stack does not name into the cluster";
    let cluster_arn = format!("arn:aws:eks:{REGION}:{ACCOUNT}:cluster/apiary-{NAME}-eks");
    let entry_of = |principal: &str| {
        let (kind, name) = principal
            .rsplit_once(':')
            .unwrap()
            .1
            .split_once('/')
            .unwrap();
        let name = name.rsplit('/').next().unwrap();
        format!(
            "arn:aws:eks:{REGION}:{ACCOUNT}:access-entry/apiary-{NAME}-eks/{kind}/{ACCOUNT}/{name}/uuid"
        )
    };
    let create = |principal: &str, kind: &str| {
        req("cluster", "eks:CreateAccessEntry", &cluster_arn)
            .with("eks:principalArn", &[principal])
            .with("eks:accessEntryType", &[kind])
    };
    let policy_arn = |name: &str| format!("arn:aws:eks::aws:cluster-access-policy/{name}");
    let associate = |principal: &str, policy: &str| {
        req("cluster", "eks:AssociateAccessPolicy", &entry_of(principal))
            .with("eks:principalArn", &[principal])
            .with("eks:policyArn", &[&policy_arn(policy)])
    };
    let stranger = "arn:aws:iam::999988887777:role/attacker";
    let node_role = iam_role(&format!("apiary-{NAME}-eks-node"));
    for (what, allowed, request) in [
        (
            "cluster makes the workloads function's entry",
            true,
            create(&role("workloads"), "STANDARD"),
        ),
        (
            "cluster makes an admin's entry",
            true,
            create(OPERATOR_ADMIN, "STANDARD"),
        ),
        (
            "cluster makes a viewer's entry",
            true,
            create(OPERATOR_VIEWER, "STANDARD"),
        ),
        (
            "cluster makes the nodes' entry",
            true,
            create(&node_role, "EC2"),
        ),
        (a, false, create(stranger, "STANDARD")),
        (a, false, create(&role("cluster"), "STANDARD")),
        (a, false, create(OPERATOR_ADMIN, "EC2")),
        (
            "cluster makes an admin cluster admin",
            true,
            associate(OPERATOR_ADMIN, "AmazonEKSClusterAdminPolicy"),
        ),
        (
            "cluster makes a viewer a viewer",
            true,
            associate(OPERATOR_VIEWER, "AmazonEKSViewPolicy"),
        ),
        (
            a,
            false,
            associate(OPERATOR_VIEWER, "AmazonEKSClusterAdminPolicy"),
        ),
        (a, false, associate(stranger, "AmazonEKSClusterAdminPolicy")),
        (
            a,
            false,
            associate(&node_role, "AmazonEKSClusterAdminPolicy"),
        ),
        (a, false, associate(OPERATOR_ADMIN, "AmazonEKSAdminPolicy")),
    ] {
        p.push(probe(what, "cluster", allowed, request));
    }
    let revoke = |tags: &[(&str, &str)]| {
        let mut r = req(
            "cluster",
            "eks:DeleteAccessEntry",
            &entry_of(OPERATOR_ADMIN),
        );
        for (k, v) in tags {
            r = r.with(&format!("aws:ResourceTag/{k}"), &[v]);
        }
        r
    };
    let tag = |principal: &str| {
        req("cluster", "eks:TagResource", &entry_of(principal))
            .with("eks:principalArn", &[principal])
    };
    p.push(probe(
        "cluster tags an operator's entry",
        "cluster",
        true,
        tag(OPERATOR_VIEWER),
    ));
    p.push(probe(
        "cluster role marks an entry it may not remove as an operator's",
        "cluster",
        false,
        tag(stranger),
    ));
    let r = "cluster role removes an entry that is not an operator's";
    p.push(probe(
        "cluster revokes an operator no longer listed",
        "cluster",
        true,
        revoke(&[
            ("apiary:deployment", NAME),
            ("apiary:role", "operator-admin"),
        ]),
    ));
    p.push(probe(
        r,
        "cluster",
        false,
        revoke(&[("apiary:deployment", NAME), ("apiary:role", "access-entry")]),
    ));
    p.push(probe(
        r,
        "cluster",
        false,
        revoke(&[
            ("apiary:deployment", "other"),
            ("apiary:role", "operator-admin"),
        ]),
    ));

    // Keys: a stranger's key tagged as this deployment's gives nothing; this deployment's
    // key is managed by the roles its policy names, and grants bypass no kms:ViaService.
    let k = "keys role takes over a key by tagging it";
    let names = Names::new(NAME);
    let own = Policy::from_document(
        "rds-key",
        &serde_json::from_str(&keys::key_policy_for(
            ACCOUNT,
            REGION,
            "rds",
            Some("rds"),
            &names,
        ))
        .expect("the key policy is JSON"),
    );
    let foreign = Policy::from_document(
        "default-key-policy",
        &serde_json::json!({"Statement": [{"Sid": "EnableIamUserPermissions", "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
            "Action": "kms:*", "Resource": "*"}]}),
    );
    let on_key = |what, caller, allowed, request: Request, policy: &Policy| Probe {
        what,
        caller,
        principal: None,
        request,
        authority: Authority::Key(policy.clone()),
        allowed,
    };
    let stranger = key("stranger");
    for action in [
        "kms:PutKeyPolicy",
        "kms:ScheduleKeyDeletion",
        "kms:DisableKey",
        "kms:UntagResource",
        "kms:CancelKeyDeletion",
        "kms:DeleteAlias",
    ] {
        for caller in ["keys", "operate", "teardown"] {
            p.push(on_key(
                k,
                caller,
                false,
                req(caller, action, &stranger).with("aws:ResourceTag/apiary:deployment", &[NAME]),
                &foreign,
            ));
        }
    }
    let eks_key = Policy::from_document(
        "eks-secrets-key",
        &serde_json::from_str(&keys::key_policy_for(
            ACCOUNT,
            REGION,
            "eks-secrets",
            Some("eks"),
            &names,
        ))
        .expect("the key policy is JSON"),
    );
    for (caller, service) in [
        ("cluster", "eks"),
        ("databases", "rds"),
        ("backup", "rds"),
        ("keys", "rds"),
    ] {
        let via = format!("{service}.{REGION}.amazonaws.com");
        let grant = |key: &str| {
            req(caller, "kms:CreateGrant", key)
                .with("aws:ResourceTag/apiary:deployment", &[NAME])
                .with("kms:ViaService", &[&via])
        };
        p.push(on_key(
            "a grant for a principal bypasses kms:ViaService",
            caller,
            false,
            grant(&stranger),
            &foreign,
        ));
        p.push(on_key(
            "a grant for a principal bypasses kms:ViaService",
            caller,
            false,
            grant(&stranger).with("kms:GrantIsForAWSResource", &["false"]),
            &foreign,
        ));
        if caller != "keys" {
            let policy = if service == "eks" { &eks_key } else { &own };
            p.push(on_key(
                "a service makes a grant for its resource",
                caller,
                true,
                grant(&key("ours")).with("kms:GrantIsForAWSResource", &["true"]),
                policy,
            ));
        }
    }
    let ours = key("ours");
    p.push(on_key(
        "keys sets the policy of the deployment's key",
        "keys",
        true,
        req("keys", "kms:PutKeyPolicy", &ours),
        &own,
    ));
    p.push(on_key(
        "teardown schedules the deployment's key",
        "teardown",
        true,
        req("teardown", "kms:ScheduleKeyDeletion", &ours),
        &own,
    ));
    p.push(on_key(
        "another function schedules the deployment's key",
        "network",
        false,
        req("network", "kms:ScheduleKeyDeletion", &ours),
        &own,
    ));
    p.push(on_key(
        "another function sets the deployment's key policy",
        "databases",
        false,
        req("databases", "kms:PutKeyPolicy", &ours),
        &own,
    ));
    let via_rds = format!("rds.{REGION}.amazonaws.com");
    let admin_on = |what, allowed, request: Request| Probe {
        what,
        caller: "admin",
        principal: None,
        request,
        authority: Authority::Key(own.clone()),
        allowed,
    };
    p.push(admin_on(
        "an administrator's grant for a principal bypasses kms:ViaService",
        false,
        req("admin", "kms:CreateGrant", &ours).with("kms:ViaService", &[&via_rds]),
    ));
    p.push(admin_on(
        "RDS makes a grant for the database",
        true,
        req("admin", "kms:CreateGrant", &ours)
            .with("kms:ViaService", &[&via_rds])
            .with("kms:GrantIsForAWSResource", &["true"]),
    ));
    p.push(admin_on(
        "an administrator decrypts outside the service",
        false,
        req("admin", "kms:Decrypt", &ours),
    ));
    p.push(admin_on(
        "RDS decrypts for the account",
        true,
        req("admin", "kms:Decrypt", &ours).with("kms:ViaService", &[&via_rds]),
    ));
    p.push(admin_on(
        "another account uses the key through RDS",
        false,
        Request::new("arn:aws:iam::444455556666:role/x", "kms:Decrypt", &ours)
            .with("kms:ViaService", &[&via_rds]),
    ));

    // DNS: certificate validation records in any zone; nothing else.
    let d = "dns role changes any record";
    let zone = "arn:aws:route53:::hostedzone/Z0123456789";
    let change = |names: &[&str], types: &[&str], actions: &[&str]| {
        req("dns", "route53:ChangeResourceRecordSets", zone)
            .with(
                "route53:ChangeResourceRecordSetsNormalizedRecordNames",
                names,
            )
            .with("route53:ChangeResourceRecordSetsRecordTypes", types)
            .with("route53:ChangeResourceRecordSetsActions", actions)
    };
    let validation = format!("_3f1a.{DOMAIN}");
    p.push(probe(
        "dns writes the certificate's validation record",
        "dns",
        true,
        change(&[&validation], &["CNAME"], &["UPSERT"]),
    ));
    p.push(probe(
        d,
        "dns",
        false,
        change(&[&validation], &["CNAME"], &["DELETE"]),
    ));
    p.push(probe(
        d,
        "dns",
        false,
        change(&[&validation], &["A"], &["UPSERT"]),
    ));
    p.push(probe(
        d,
        "dns",
        false,
        change(&[&format!("www.{DOMAIN}")], &["CNAME"], &["UPSERT"]),
    ));
    p.push(probe(
        d,
        "dns",
        false,
        change(&["_3f1a.example.org"], &["CNAME"], &["UPSERT"]),
    ));
    p.push(probe(
        d,
        "dns",
        false,
        change(&[&validation, "www.example.org"], &["CNAME"], &["UPSERT"]),
    ));
    p.push(probe(
        "dns points the domain at the load balancer",
        "dns",
        true,
        change(&[DOMAIN], &["A"], &["UPSERT"]),
    ));
    p.push(probe(
        d,
        "dns",
        false,
        change(&[DOMAIN], &["A"], &["DELETE"]),
    ));
    p.push(probe(
        d,
        "dns",
        false,
        change(&[DOMAIN], &["TXT"], &["UPSERT"]),
    ));

    // The Karpenter interruption queue: only this deployment's rules may send.
    let queue = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:apiary-{NAME}-karpenter");
    let rule = format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/apiary-{NAME}-karpenter-spot");
    let queue_policy = Policy::from_document(
        "interruption-queue",
        &cluster::karpenter::queue_policy(&queue, std::slice::from_ref(&rule))
            .expect("a queue ARN"),
    );
    let send = |what, allowed, account: &str, source: &str, secure: &str| Probe {
        what,
        caller: "events",
        principal: Some("events.amazonaws.com".to_owned()),
        request: Request::new("events.amazonaws.com", "sqs:SendMessage", &queue)
            .with("aws:SourceAccount", &[account])
            .with("aws:SourceArn", &[source])
            .with("aws:SecureTransport", &[secure]),
        authority: Authority::Resource(queue_policy.clone()),
        allowed,
    };
    p.push(send(
        "the interruption rule sends to the queue",
        true,
        ACCOUNT,
        &rule,
        "true",
    ));
    let q = "any account's rule sends to the interruption queue";
    p.push(send(
        q,
        false,
        "444455556666",
        &format!("arn:aws:events:{REGION}:444455556666:rule/apiary-{NAME}-karpenter-spot"),
        "true",
    ));
    p.push(send(
        q,
        false,
        ACCOUNT,
        &format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/someone-else"),
        "true",
    ));
    p.push(send(q, false, ACCOUNT, &rule, "false"));

    // The access-log bucket: S3's logging service, for this deployment's buckets only.
    let access = format!("apiary-{NAME}-access-logs-{ACCOUNT}");
    let logs = format!("apiary-{NAME}-logs-{ACCOUNT}");
    let bucket_policy = Policy::from_document(
        "access-logs-bucket",
        &serde_json::from_str(&storage::policy::access_logs_bucket_policy(
            REGION,
            ACCOUNT,
            &access,
            &[&logs],
        ))
        .expect("the bucket policy is JSON"),
    );
    let prefix = bucket_policy
        .statements
        .iter()
        .find(|s| s.allow)
        .and_then(|s| s.resources.first())
        .and_then(|r| r.strip_suffix('*'))
        .expect("an allow statement for the logging service")
        .to_owned();
    let put = |what, allowed, source: &str, secure: &str| Probe {
        what,
        caller: "logging",
        principal: Some("logging.s3.amazonaws.com".to_owned()),
        request: Request::new(
            "logging.s3.amazonaws.com",
            "s3:PutObject",
            &format!("{prefix}2026-12-07"),
        )
        .with("aws:SourceAccount", &[ACCOUNT])
        .with("aws:SourceArn", &[source])
        .with("aws:SecureTransport", &[secure]),
        authority: Authority::Resource(bucket_policy.clone()),
        allowed,
    };
    p.push(put(
        "S3 writes the logs bucket's access logs",
        true,
        &format!("arn:aws:s3:::{logs}"),
        "true",
    ));
    let b = "another bucket writes into the access-log bucket";
    p.push(put(b, false, "arn:aws:s3:::someone-elses-bucket", "true"));
    p.push(put(b, false, &format!("arn:aws:s3:::{logs}"), "false"));
    p
}

/// Each probe whose decision is not the one it expects, naming the probe and what
/// decided.
fn check(template: &Value) -> Vec<String> {
    let roles = function_roles(template, &resolver(template));
    check_with(&probes(template), &|f| roles.get(f).map(|(_, p)| p.clone()))
}

fn check_with(probes: &[Probe], role_of: &dyn Fn(&str) -> Option<Policy>) -> Vec<String> {
    let admin = Policy::from_document(
        "admin",
        &serde_json::json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    );
    let mut problems = Vec::new();
    for probe in probes {
        let identity = if probe.caller == "admin" {
            admin.clone()
        } else {
            role_of(probe.caller).unwrap_or_default()
        };
        let decision = match &probe.authority {
            Authority::Iam => identity.decide(&probe.request),
            Authority::Key(key) => Policy::decide_kms(key, &identity, &probe.request),
            Authority::Resource(policy) => policy.decide_resource(
                probe
                    .principal
                    .as_deref()
                    .unwrap_or(&probe.request.principal),
                &probe.request,
            ),
        };
        if decision.is_allowed() != probe.allowed {
            let r = &probe.request;
            problems.push(format!(
                "{} ({} {} on {} with {:?}): {}",
                probe.what,
                probe.caller,
                r.action,
                r.resource,
                r.context,
                match decision {
                    Decision::Allowed(by) => format!("allowed by {by}"),
                    Decision::Denied(by) => format!("denied by {by}"),
                    Decision::NotAllowed => "allowed by no statement".to_owned(),
                }
            ));
        }
    }
    problems
}

#[test]
fn every_escalation_path_is_refused_and_every_legitimate_call_allowed() {
    let template = template();
    let probes = probes(&template);
    let refused = probes.iter().filter(|p| !p.allowed).count();
    assert!(refused >= 40, "the probes were not built: {refused}");
    let problems = check(&template);
    assert!(
        problems.is_empty(),
        "the policies decide differently from what they must:\n  {}",
        problems.join("\n  ")
    );
}

/// The canary: the dns role's validation-records statement without its conditions lets the
/// role change any record, and the check names the probe and the statement.
#[test]
fn dropping_a_guard_is_named() {
    let mut template = template();
    let statements = template["Resources"]["DnsRole"]["Properties"]["Policies"]
        .as_array_mut()
        .expect("the dns role has inline policies")
        .iter_mut()
        .flat_map(|p| {
            p["PolicyDocument"]["Statement"]
                .as_array_mut()
                .expect("statements")
                .iter_mut()
        });
    let mut dropped = false;
    for s in statements {
        if s["Sid"] == "CertificateValidationRecordsOnly" {
            s.as_object_mut().expect("a statement").remove("Condition");
            dropped = true;
        }
    }
    assert!(
        dropped,
        "no CertificateValidationRecordsOnly statement in the dns role"
    );
    let problems = check(&template);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("dns role changes any record")
                && p.contains("allowed by DnsRole/")
                && p.contains("/CertificateValidationRecordsOnly")),
        "dropping the condition was not noticed: {problems:#?}"
    );
}

/// Drops each condition of each role statement in turn and re-runs the probes: prints
/// which conditions a probe depends on, and fails unless every condition of the
/// statements the escalation paths go through is among them.
#[test]
fn every_guard_a_probe_covers_is_named_when_dropped() {
    let template = template();
    let roles = function_roles(&template, &resolver(&template));
    let probes = probes(&template);
    assert!(check_with(&probes, &|f| roles.get(f).map(|(_, p)| p.clone())).is_empty());
    let mut covered: BTreeMap<String, bool> = BTreeMap::new();
    for (function, (_, policy)) in &roles {
        for (si, statement) in policy.statements.iter().enumerate() {
            for ci in 0..statement.conditions.len() {
                let mut mutated = policy.clone();
                let dropped = mutated.statements[si].conditions.remove(ci);
                let caught = !check_with(&probes, &|f| {
                    if f == function {
                        Some(mutated.clone())
                    } else {
                        roles.get(f).map(|(_, p)| p.clone())
                    }
                })
                .is_empty();
                covered.insert(
                    format!("{} {} {}", statement.id, dropped.operator, dropped.key),
                    caught,
                );
            }
        }
    }
    let caught = covered.values().filter(|c| **c).count();
    println!(
        "{caught} of {} role conditions are guarded by a probe",
        covered.len()
    );
    for (condition, c) in &covered {
        println!("{:<8} {condition}", if *c { "probed" } else { "-" });
    }
    let must = [
        "WorkloadsRole/workloads-boundary-guard/NoRoleWithoutTheBoundary StringNotEquals iam:PermissionsBoundary",
        "WorkloadsRole/workloads/PassIngestionRoleToPods StringEquals iam:PassedToService",
        "ClusterRole/cluster/AttachOnlyEksManagedPolicies ArnEquals iam:PolicyARN",
        "ClusterRole/cluster/SecretsEnvelopeKeyGrantForEks Bool kms:GrantIsForAWSResource",
        "DatabasesRole/databases/DeploymentKeyGrantsForAwsResources Bool kms:GrantIsForAWSResource",
        "BackupRole/backup/DeploymentKeyGrantsForAwsResources Bool kms:GrantIsForAWSResource",
        "DnsRole/dns/CertificateValidationRecordsOnly ForAllValues:StringLike route53:ChangeResourceRecordSetsNormalizedRecordNames",
        "DnsRole/dns/CertificateValidationRecordsOnly ForAllValues:StringEquals route53:ChangeResourceRecordSetsActions",
        "DnsRole/dns/EndpointAliasOnly ForAllValues:StringEquals route53:ChangeResourceRecordSetsRecordTypes",
    ];
    let missing: Vec<&&str> = must
        .iter()
        .filter(|m| covered.get(**m) != Some(&true))
        .collect();
    assert!(
        missing.is_empty(),
        "conditions no probe depends on (or that do not exist): {missing:#?}"
    );
}

/// A request the statement allows: its action and resource with each wildcard filled,
/// and a context that meets every condition. None for a statement whose conditions are
/// all negated (nothing to meet) or that names no resource.
fn meeting(principal: &str, statement: &Statement, action: &str, resource: &str) -> Request {
    let fill = |p: &str| p.replace(['*', '?'], "x");
    let mut r = Request::new(principal, &fill(action), &fill(resource));
    for c in &statement.conditions {
        let negated = c.operator.contains("Not") || c.operator == "Null";
        if negated {
            continue;
        }
        let values: Vec<String> = if c.operator.starts_with("ForAllValues") {
            c.values.iter().map(|v| fill(v)).collect()
        } else {
            c.values.first().map(|v| fill(v)).into_iter().collect()
        };
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        r = r.with(&c.key, &refs);
    }
    r
}

/// `request` with the value of `condition`'s key made wrong: another deployment's tag, a
/// service or principal not named, a set with one member too many, a flipped Bool.
fn breaking(request: &Request, condition: &Condition) -> Request {
    let key = condition.key.to_ascii_lowercase();
    let mut r = request.clone();
    let wrong = if condition.operator.starts_with("Bool") {
        let now = condition
            .values
            .first()
            .map(String::as_str)
            .unwrap_or("true");
        vec![
            if now.eq_ignore_ascii_case("true") {
                "false"
            } else {
                "true"
            }
            .to_owned(),
        ]
    } else if condition.operator.starts_with("ForAllValues") {
        let mut v = r.context.get(&key).cloned().unwrap_or_default();
        v.push("arn:aws:iam::444455556666:role/not-named".to_owned());
        v
    } else {
        vec!["arn:aws:iam::444455556666:role/not-named".to_owned()]
    };
    r.context.insert(key, wrong);
    r
}

/// Conditions that decide nothing because another statement of the same role allows the
/// same request anyway, each with the reason that is acceptable.
const OVERLAPPING: &[(&str, &str)] = &[];

/// Every condition of every function role decides something: the role allows a request
/// that meets the statement, and refuses it once that one condition's value is wrong. A
/// condition another statement makes moot is as wide as having none.
fn moot_conditions(template: &Value) -> (usize, Vec<String>) {
    let roles = function_roles(template, &resolver(template));
    let mut problems = Vec::new();
    let mut checked = 0;
    for (function, (arn, policy)) in &roles {
        for statement in policy.statements.iter().filter(|s| s.allow) {
            let positive: Vec<&Condition> = statement
                .conditions
                .iter()
                .filter(|c| !c.operator.contains("Not") && c.operator != "Null")
                .collect();
            if positive.is_empty() {
                continue;
            }
            for action in &statement.actions {
                for resource in &statement.resources {
                    let request = meeting(arn, statement, action, resource);
                    let decision = policy.decide(&request);
                    if !decision.is_allowed() {
                        problems.push(format!(
                            "{function}: {} cannot be met ({} on {}): {decision:?}",
                            statement.id, request.action, request.resource
                        ));
                        continue;
                    }
                    for condition in &positive {
                        checked += 1;
                        let broken = breaking(&request, condition);
                        if let Decision::Allowed(by) = policy.decide(&broken) {
                            let what = format!(
                                "{} {} {}",
                                statement.id, condition.operator, condition.key
                            );
                            if OVERLAPPING.iter().any(|(w, _)| *w == what) {
                                continue;
                            }
                            problems.push(format!(
                                "{function}: {what} decides nothing for {} on {}: {by} allows it \
                                 with the value wrong",
                                broken.action, broken.resource
                            ));
                        }
                    }
                }
            }
        }
    }
    (checked, problems)
}

#[test]
fn every_condition_of_every_role_decides_something() {
    let (checked, problems) = moot_conditions(&template());
    println!("{checked} condition checks");
    assert!(checked > 100, "the conditions were not read: {checked}");
    assert!(
        problems.is_empty(),
        "conditions that decide nothing:\n  {}",
        problems.join("\n  ")
    );
}

/// The canary of the check above: a statement added to the cluster role that allows its
/// key actions on every key makes the tag condition of its key statements moot, and the
/// check names the condition and the statement that makes it so.
#[test]
fn a_statement_that_makes_a_condition_moot_is_named() {
    let mut template = template();
    let policies = template["Resources"]["ClusterRole"]["Properties"]["Policies"]
        .as_array_mut()
        .expect("the cluster role has inline policies");
    policies.push(serde_json::json!({
        "PolicyName": "too-wide",
        "PolicyDocument": {"Statement": [{"Sid": "AnyKey", "Effect": "Allow",
            "Action": ["kms:DescribeKey"], "Resource": "*"}]}
    }));
    let (_, problems) = moot_conditions(&template);
    assert!(
        problems.iter().any(|p| p.starts_with("cluster: ClusterRole/cluster/SecretsEnvelopeKey StringEquals aws:ResourceTag/apiary:deployment decides nothing")
            && p.contains("ClusterRole/too-wide/AnyKey allows it")),
        "the moot condition was not named: {problems:#?}"
    );
}
