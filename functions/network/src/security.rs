//! Security groups: the load balancer (443 from the customer), the cluster, the data
//! stores (their ports from the cluster only), the interface endpoints (443 from the VPC)
//! and the control plane: Apiary's own functions that run inside the VPC (see
//! `crate::in_vpc`), admitted by the cluster's API on 443 and by the data stores.

use apiary_core::naming::INGESTION_PORT;
use apiary_core::outputs::SecurityGroups;
use apiary_core::spec::DeploymentSpec;
use apiary_core::{Error, Result};
use aws_sdk_ec2::error::SdkError;
use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, SecurityGroup, UserIdGroupPair};
use ipnet::Ipv4Net;

use crate::Run;
use crate::ec2::{filter, is_code, on_known_id, role_filters, tag_spec, without_sdk_retries};

pub(crate) struct Groups {
    pub public: SecurityGroups,
    pub endpoints: String,
}

/// Which way a rule points.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// Where a rule admits traffic from (ingress) or lets it go to (egress).
pub enum Source<'a> {
    Cidr(String),
    Group(&'a str),
}

/// One rule as provision makes it.
pub struct Rule<'a> {
    pub protocol: &'static str,
    pub port: Option<u16>,
    pub source: Source<'a>,
    pub description: String,
}

/// Data store ports the cluster may reach: PostgreSQL, DocumentDB, Redis.
pub const DATABASE_PORTS: [(u16, &str); 3] =
    [(5432, "PostgreSQL"), (27017, "DocumentDB"), (6379, "Redis")];

pub(crate) async fn ensure_security_groups(
    run: &Run<'_>,
    vpc_id: &str,
    vpc_cidr: Ipv4Net,
    nat_ips: &[String],
) -> Result<Groups> {
    let alb = ensure_group(
        run,
        vpc_id,
        "alb",
        "Apiary load balancer: HTTPS from customer networks",
    )
    .await?;
    let cluster = ensure_group(run, vpc_id, "cluster", "Apiary EKS cluster and nodes").await?;
    let databases = ensure_group(
        run,
        vpc_id,
        "databases",
        "Apiary data stores: reachable from the cluster only",
    )
    .await?;
    let endpoints = ensure_group(
        run,
        vpc_id,
        "endpoints",
        "Apiary VPC interface endpoints: HTTPS from the VPC",
    )
    .await?;
    let control_plane = ensure_group(
        run,
        vpc_id,
        CONTROL_PLANE,
        "Apiary functions inside the VPC: HTTPS out, the cluster API and the data stores",
    )
    .await?;

    let ids = GroupIds {
        alb: id(&alb),
        cluster: id(&cluster),
        databases: id(&databases),
        endpoints: Some(id(&endpoints)),
        control_plane: id(&control_plane),
    };
    for wanted in wanted_ingress(run.spec, vpc_cidr, nat_ips, &ids)? {
        let group = [&alb, &cluster, &databases, &endpoints]
            .into_iter()
            .find(|g| id(g) == wanted.group_id)
            .expect("every wanted group is one of those made above");
        ensure_rules(run, group, &wanted.rules).await?;
        if wanted.revoke_others {
            revoke_other_ingress(run, group, &wanted.rules).await?;
        }
    }

    ensure_control_plane_egress(run, &control_plane, vpc_cidr).await?;

    Ok(Groups {
        public: SecurityGroups {
            alb: id(&alb).to_owned(),
            cluster: id(&cluster).to_owned(),
            databases: id(&databases).to_owned(),
            control_plane: id(&control_plane).to_owned(),
        },
        endpoints: id(&endpoints).to_owned(),
    })
}

/// The ids of the deployment's security groups, as [`wanted_ingress`] names them.
pub struct GroupIds<'a> {
    pub alb: &'a str,
    pub cluster: &'a str,
    pub databases: &'a str,
    /// The interface endpoints' group (not in the layer's output; `None` skips it).
    pub endpoints: Option<&'a str>,
    pub control_plane: &'a str,
}

/// One group's ingress as provision makes it.
pub struct WantedIngress<'a> {
    /// The group's role tag: `alb`, `cluster`, `databases`, `endpoints`.
    pub role: &'static str,
    pub group_id: &'a str,
    pub rules: Vec<Rule<'a>>,
    /// Only Apiary adds ingress rules to the group, so any other rule was added by hand
    /// and the drift check reports it. Not the cluster's group: EKS and the load
    /// balancer controller add their own rules to it.
    pub only_apiary: bool,
    /// Provision revokes any other ingress rule (the load balancer's: the networks it
    /// admits follow `ingress_cidrs`, removals included).
    pub revoke_others: bool,
}

/// The ingress rules of every group, from the spec, the VPC's range and the NAT
/// gateways' addresses: what provision applies and what the drift check compares with.
pub fn wanted_ingress<'a>(
    spec: &DeploymentSpec,
    vpc_cidr: Ipv4Net,
    nat_ips: &[String],
    ids: &GroupIds<'a>,
) -> Result<Vec<WantedIngress<'a>>> {
    // The load balancer admits HTTPS from inside the VPC (clients resolving the private
    // zone's alias) and from each of the customer's networks, and nothing else: a network
    // removed from `ingress_cidrs` is revoked on the next run.
    let mut alb = vec![Rule {
        protocol: "tcp",
        port: Some(443),
        source: Source::Cidr(vpc_cidr.to_string()),
        description: "HTTPS from inside the VPC".into(),
    }];
    let customer = spec.ingress_cidrs()?;
    // With customer networks the load balancer is internet-facing: its name resolves to
    // public addresses, so a client inside the VPC reaches it through a NAT gateway and
    // arrives from the gateway's Elastic IP, not from the VPC's range.
    if !customer.is_empty() {
        alb.extend(nat_ips.iter().map(|ip| Rule {
            protocol: "tcp",
            port: Some(443),
            source: Source::Cidr(format!("{ip}/32")),
            description: "HTTPS from inside the VPC through its NAT gateway".into(),
        }));
    }
    alb.extend(customer.into_iter().map(|cidr| Rule {
        protocol: "tcp",
        port: Some(443),
        source: Source::Cidr(cidr.to_string()),
        description: "HTTPS from customer network".into(),
    }));

    let cluster = vec![
        Rule {
            protocol: "-1",
            port: None,
            source: Source::Group(ids.cluster),
            description: "cluster internal".into(),
        },
        Rule {
            protocol: "tcp",
            port: Some(INGESTION_PORT),
            source: Source::Group(ids.alb),
            description: "load balancer to ingestion pods".into(),
        },
        // The EKS endpoint is private by default: the workloads function reaches the
        // Kubernetes API through the cluster's ENIs, which carry this group.
        Rule {
            protocol: "tcp",
            port: Some(443),
            source: Source::Group(ids.control_plane),
            description: "Kubernetes API from Apiary's in-VPC functions".into(),
        },
    ];

    // The data stores admit the cluster, and the control plane's in-VPC functions: the
    // restore-test verifier of the backup workflow connects to each store after a test
    // restore.
    let databases: Vec<Rule> = DATABASE_PORTS
        .iter()
        .flat_map(|(port, what)| {
            [
                Rule {
                    protocol: "tcp",
                    port: Some(*port),
                    source: Source::Group(ids.cluster),
                    description: format!("{what} from the cluster"),
                },
                Rule {
                    protocol: "tcp",
                    port: Some(*port),
                    source: Source::Group(ids.control_plane),
                    description: format!("{what} from Apiary's in-VPC functions"),
                },
            ]
        })
        .collect();

    let mut wanted = vec![
        WantedIngress {
            role: "alb",
            group_id: ids.alb,
            rules: alb,
            only_apiary: true,
            revoke_others: true,
        },
        WantedIngress {
            role: "cluster",
            group_id: ids.cluster,
            rules: cluster,
            only_apiary: false,
            revoke_others: false,
        },
        WantedIngress {
            role: "databases",
            group_id: ids.databases,
            rules: databases,
            only_apiary: true,
            revoke_others: false,
        },
    ];
    if let Some(endpoints) = ids.endpoints {
        wanted.push(WantedIngress {
            role: "endpoints",
            group_id: endpoints,
            rules: vec![Rule {
                protocol: "tcp",
                port: Some(443),
                source: Source::Cidr(vpc_cidr.to_string()),
                description: "HTTPS from the VPC".into(),
            }],
            only_apiary: true,
            revoke_others: false,
        });
    }
    Ok(wanted)
}

/// The rules of `wanted` that `group` does not have.
pub fn missing_rules<'r, 'a>(group: &SecurityGroup, wanted: &'r [Rule<'a>]) -> Vec<&'r Rule<'a>> {
    missing_from(group.ip_permissions(), wanted)
}

/// The egress rules of `wanted` that `group` lacks.
pub fn missing_egress<'r, 'a>(group: &SecurityGroup, wanted: &'r [Rule<'a>]) -> Vec<&'r Rule<'a>> {
    missing_from(group.ip_permissions_egress(), wanted)
}

fn missing_from<'r, 'a>(permissions: &[IpPermission], wanted: &'r [Rule<'a>]) -> Vec<&'r Rule<'a>> {
    wanted
        .iter()
        .filter(|rule| !has_rule(permissions, rule))
        .collect()
}

/// A rule as a person reads it: `tcp 443 from 10.0.0.0/16`.
pub fn describe_rule(rule: &Rule<'_>) -> String {
    let ports = match (rule.protocol, rule.port) {
        ("-1", _) => "all traffic".to_owned(),
        (protocol, Some(port)) => format!("{protocol} {port}"),
        (protocol, None) => protocol.to_owned(),
    };
    let source = match &rule.source {
        Source::Cidr(cidr) => cidr.clone(),
        Source::Group(group) => (*group).to_owned(),
    };
    format!("{ports} from {source}")
}

/// A permission as a person reads it: `tcp 22-22 from 0.0.0.0/0, sg-1`.
pub fn describe_permission(permission: &IpPermission) -> String {
    let protocol = permission.ip_protocol().unwrap_or("?");
    let ports = match (permission.from_port(), permission.to_port()) {
        _ if protocol == "-1" => "all traffic".to_owned(),
        (Some(from), Some(to)) if from == to => format!("{protocol} {from}"),
        (Some(from), Some(to)) => format!("{protocol} {from}-{to}"),
        _ => protocol.to_owned(),
    };
    let mut sources: Vec<String> = Vec::new();
    sources.extend(
        permission
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip().map(str::to_owned)),
    );
    sources.extend(
        permission
            .ipv6_ranges()
            .iter()
            .filter_map(|r| r.cidr_ipv6().map(str::to_owned)),
    );
    sources.extend(
        permission
            .user_id_group_pairs()
            .iter()
            .filter_map(|p| p.group_id().map(str::to_owned)),
    );
    sources.extend(
        permission
            .prefix_list_ids()
            .iter()
            .filter_map(|p| p.prefix_list_id().map(str::to_owned)),
    );
    format!("{ports} from {}", sources.join(", "))
}

/// Whether a permission admits the whole internet.
pub fn open_to_the_world(permission: &IpPermission) -> bool {
    permission
        .ip_ranges()
        .iter()
        .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
        || permission
            .ipv6_ranges()
            .iter()
            .any(|r| r.cidr_ipv6() == Some("::/0"))
}

/// The role tag of the control plane's group.
pub const CONTROL_PLANE: &str = "control-plane";

/// What the in-VPC functions may send, instead of EC2's default "everything anywhere":
/// HTTPS inside the VPC (the cluster API and the interface endpoints), HTTPS out (the AWS
/// APIs that have no interface endpoint here, such as EKS, IAM and X-Ray, go through the
/// NAT gateway, and DynamoDB and S3 through their gateway endpoints, whose addresses are
/// public prefixes), and the data stores' ports inside the VPC (the live stores and the
/// restore test's scratch copies; their groups' ingress admits). DNS needs no rule: the
/// VPC's resolver is not filtered by security groups.
async fn ensure_control_plane_egress(
    run: &Run<'_>,
    group: &SecurityGroup,
    vpc_cidr: Ipv4Net,
) -> Result<()> {
    let rules = control_plane_egress(vpc_cidr);
    ensure_directed_rules(run, group, Direction::Egress, &rules).await?;
    revoke_default_egress(run, group).await
}

/// The control plane's group's egress rules, and the only ones it has (drift reports
/// any other, EC2's default allow-all included).
pub fn control_plane_egress(vpc_cidr: Ipv4Net) -> Vec<Rule<'static>> {
    let mut rules = vec![
        Rule {
            protocol: "tcp",
            port: Some(443),
            source: Source::Cidr(vpc_cidr.to_string()),
            description: "HTTPS to the cluster API and the interface endpoints".into(),
        },
        Rule {
            protocol: "tcp",
            port: Some(443),
            source: Source::Cidr("0.0.0.0/0".into()),
            description: "HTTPS to AWS APIs through the NAT and gateway endpoints".into(),
        },
    ];
    // To the VPC, not to the live databases' group: the verifier also reaches the
    // restore test's scratch copies, which sit in their own scratch group. The ingress of
    // each target group still decides who is admitted.
    rules.extend(DATABASE_PORTS.iter().map(|(port, what)| Rule {
        protocol: "tcp",
        port: Some(*port),
        source: Source::Cidr(vpc_cidr.to_string()),
        description: format!("{what} in the VPC for the restore-test verifier"),
    }));
    rules
}

/// EC2 gives a new group an egress rule that allows all traffic anywhere; the control
/// plane's group keeps only the rules above. Removing a rule from a group of this
/// deployment tightens it; nothing else is deleted outside a teardown.
async fn revoke_default_egress(run: &Run<'_>, group: &SecurityGroup) -> Result<()> {
    let default = Rule {
        protocol: "-1",
        port: None,
        source: Source::Cidr("0.0.0.0/0".into()),
        description: String::new(),
    };
    if !has_rule(group.ip_permissions_egress(), &default) {
        return Ok(());
    }
    let result = run
        .deps
        .ec2
        .revoke_security_group_egress()
        .group_id(id(group))
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("-1")
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await;
    match result {
        Ok(_) => {
            run.log.created(&format!("{}:egress-narrowed", id(group)));
            Ok(())
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| is_code(e, &["InvalidPermission.NotFound"])) =>
        {
            Ok(())
        }
        Err(err) => Err(on_known_id(
            format!("RevokeSecurityGroupEgress {} (default rule)", id(group)),
            err,
        )),
    }
}

fn id(group: &SecurityGroup) -> &str {
    group.group_id().unwrap_or_default()
}

/// The deployment's security group of `role` in `vpc_id`, found by its tags (how
/// provision finds it again, and how drift finds the one the layer's output leaves out).
pub async fn find_group(
    ec2: &aws_sdk_ec2::Client,
    names: &apiary_core::Names,
    vpc_id: &str,
    role: &str,
) -> Result<Option<SecurityGroup>> {
    let mut filters = role_filters(names, role);
    filters.push(filter("vpc-id", vpc_id));
    ec2.describe_security_groups()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeSecurityGroups {role}"), e))
        .map(|out| out.security_groups().first().cloned())
}

async fn ensure_group(
    run: &Run<'_>,
    vpc_id: &str,
    role: &str,
    description: &str,
) -> Result<SecurityGroup> {
    let ec2 = &run.deps.ec2;
    let describe = || find_group(ec2, run.names, vpc_id, role);
    let group = match describe().await? {
        Some(group) => group,
        None => {
            let name = run.names.resource(role);
            let created = ec2
                .create_security_group()
                .group_name(&name)
                .description(description)
                .vpc_id(vpc_id)
                .tag_specifications(tag_spec(ResourceType::SecurityGroup, run.names, role, &[]))
                .customize()
                .config_override(without_sdk_retries())
                .send()
                .await;
            let created = match created {
                Ok(created) => created,
                // The name is unique in the VPC, so nothing duplicates. A group of that
                // name that our tag lookup missed is either ours, not listed by its tags
                // yet (retried), or someone else's (refused by name: retrying would never
                // succeed).
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| is_code(e, &["InvalidGroup.Duplicate"])) =>
                {
                    return Err(duplicate_name(run, vpc_id, &name, e).await);
                }
                Err(e) => {
                    return Err(Error::aws_transient_if(
                        format!("CreateSecurityGroup {name}"),
                        e,
                        apiary_core::error::transient::ec2_not_yet_visible,
                    ));
                }
            };
            let group_id = created
                .group_id()
                .ok_or_else(|| Error::fatal("CreateSecurityGroup returned no id"))?;
            run.log.created(group_id);
            // EC2 is eventually consistent: a group made a moment ago may not be listed
            // yet. The next run finds it by its tags.
            describe().await?.ok_or_else(|| Error::NotReady {
                resource: format!("security group {group_id}"),
                detail: "created, but EC2 does not list it yet".to_owned(),
            })?
        }
    };
    run.log
        .resource("ec2:security-group", id(&group), None)
        .await?;
    Ok(group)
}

/// CreateSecurityGroup said a group named `name` exists in the VPC, which the lookup by
/// tags did not find: the error for it, after a lookup by name.
async fn duplicate_name<E>(run: &Run<'_>, vpc_id: &str, name: &str, err: SdkError<E>) -> Error
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let found = run
        .deps
        .ec2
        .describe_security_groups()
        .filters(filter("group-name", name))
        .filters(filter("vpc-id", vpc_id))
        .send()
        .await;
    let owner = found.ok().and_then(|out| {
        out.security_groups().first().map(|g| {
            let ours = g.tags().iter().any(|t| {
                t.key() == Some(apiary_core::naming::TAG_DEPLOYMENT)
                    && t.value() == Some(run.names.deployment())
            });
            (g.group_id().unwrap_or_default().to_owned(), ours)
        })
    });
    foreign_group(name, vpc_id, owner).unwrap_or_else(|| {
        // Ours (its tags not indexed yet) or not listed at all yet: eventual consistency.
        Error::aws_transient_if(format!("CreateSecurityGroup {name}"), err, |_| true)
    })
}

/// The refusal for a group named as ours that is someone else's: `owner` is the group of
/// that name found by name (its id, and whether its tags make it this deployment's).
fn foreign_group(name: &str, vpc_id: &str, owner: Option<(String, bool)>) -> Option<Error> {
    match owner {
        Some((id, false)) => Some(Error::Conflict(format!(
            "security group {id} in {vpc_id} is named {name} but is not this deployment's \
             (no apiary:deployment tag): rename or delete it, or tag it if it is this \
             deployment's, then run again"
        ))),
        _ => None,
    }
}

fn has_rule(permissions: &[IpPermission], rule: &Rule) -> bool {
    permissions.iter().any(|p| {
        let ports_match = match rule.port {
            Some(port) => p.from_port() == Some(port as i32) && p.to_port() == Some(port as i32),
            None => true,
        };
        p.ip_protocol() == Some(rule.protocol)
            && ports_match
            && match &rule.source {
                Source::Cidr(cidr) => p
                    .ip_ranges()
                    .iter()
                    .any(|r| r.cidr_ip() == Some(cidr.as_str())),
                Source::Group(g) => p
                    .user_id_group_pairs()
                    .iter()
                    .any(|pair| pair.group_id() == Some(*g)),
            }
    })
}

async fn ensure_rules(run: &Run<'_>, group: &SecurityGroup, rules: &[Rule<'_>]) -> Result<()> {
    ensure_directed_rules(run, group, Direction::Ingress, rules).await
}

/// The ingress permissions of `group` that none of `rules` asks for, one source each:
/// what [`revoke_other_ingress`] takes away.
pub fn other_ingress(group: &SecurityGroup, rules: &[Rule<'_>]) -> Vec<IpPermission> {
    others_than(group.ip_permissions(), rules)
}

/// The egress permissions of `group` that none of `rules` asks for, one target each.
pub fn other_egress(group: &SecurityGroup, rules: &[Rule<'_>]) -> Vec<IpPermission> {
    others_than(group.ip_permissions_egress(), rules)
}

fn others_than(permissions: &[IpPermission], rules: &[Rule<'_>]) -> Vec<IpPermission> {
    let wanted = |permission: &IpPermission, source: Source<'_>| {
        rules.iter().any(|rule| {
            let same_source = match (&rule.source, &source) {
                (Source::Cidr(a), Source::Cidr(b)) => a == b,
                (Source::Group(a), Source::Group(b)) => a == b,
                _ => false,
            };
            let same_ports = match rule.port {
                Some(port) => {
                    permission.from_port() == Some(port as i32)
                        && permission.to_port() == Some(port as i32)
                }
                None => true,
            };
            same_source && same_ports && permission.ip_protocol() == Some(rule.protocol)
        })
    };
    let mut others = Vec::new();
    for permission in permissions {
        let base = || {
            IpPermission::builder()
                .set_ip_protocol(permission.ip_protocol().map(str::to_owned))
                .set_from_port(permission.from_port())
                .set_to_port(permission.to_port())
        };
        for range in permission.ip_ranges() {
            let cidr = range.cidr_ip().unwrap_or_default();
            if !wanted(permission, Source::Cidr(cidr.to_owned())) {
                others.push(
                    base()
                        .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
                        .build(),
                );
            }
        }
        for pair in permission.user_id_group_pairs() {
            let group_id = pair.group_id().unwrap_or_default();
            if !wanted(permission, Source::Group(group_id)) {
                others.push(
                    base()
                        .user_id_group_pairs(UserIdGroupPair::builder().group_id(group_id).build())
                        .build(),
                );
            }
        }
        // Nothing here adds IPv6 ranges or prefix lists: any such rule was added by hand.
        for range in permission.ipv6_ranges() {
            others.push(base().ipv6_ranges(range.clone()).build());
        }
        for list in permission.prefix_list_ids() {
            others.push(base().prefix_list_ids(list.clone()).build());
        }
    }
    others
}

/// Revokes every ingress rule of `group` that `rules` does not ask for. Only for a group
/// whose every rule is Apiary's (the load balancer's: the load balancer controller adds
/// its rules to the targets' group, never to the one an Ingress names).
async fn revoke_other_ingress(
    run: &Run<'_>,
    group: &SecurityGroup,
    rules: &[Rule<'_>],
) -> Result<()> {
    let others = other_ingress(group, rules);
    if others.is_empty() {
        return Ok(());
    }
    let result = run
        .deps
        .ec2
        .revoke_security_group_ingress()
        .group_id(id(group))
        .set_ip_permissions(Some(others.clone()))
        .send()
        .await;
    match result {
        Ok(_) => {}
        // Already gone (another run, or by hand): what was asked for is true.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| is_code(e, &["InvalidPermission.NotFound"])) => {}
        Err(err) => {
            return Err(on_known_id(
                format!(
                    "RevokeSecurityGroupIngress {} (rules no longer in the spec)",
                    id(group)
                ),
                err,
            ));
        }
    }
    for permission in &others {
        let source = permission
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip())
            .chain(
                permission
                    .user_id_group_pairs()
                    .iter()
                    .filter_map(|p| p.group_id()),
            )
            .chain(
                permission
                    .ipv6_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ipv6()),
            )
            .chain(
                permission
                    .prefix_list_ids()
                    .iter()
                    .filter_map(|p| p.prefix_list_id()),
            )
            .collect::<Vec<_>>()
            .join(",");
        run.log.created(&format!("{}:revoked:{source}", id(group)));
    }
    Ok(())
}

async fn ensure_directed_rules(
    run: &Run<'_>,
    group: &SecurityGroup,
    direction: Direction,
    rules: &[Rule<'_>],
) -> Result<()> {
    let existing = match direction {
        Direction::Ingress => group.ip_permissions(),
        Direction::Egress => group.ip_permissions_egress(),
    };
    for rule in rules.iter().filter(|r| !has_rule(existing, r)) {
        let mut permission = IpPermission::builder().ip_protocol(rule.protocol);
        if let Some(port) = rule.port {
            permission = permission.from_port(port as i32).to_port(port as i32);
        }
        permission = match &rule.source {
            Source::Cidr(cidr) => permission.ip_ranges(
                IpRange::builder()
                    .cidr_ip(cidr)
                    .description(&rule.description)
                    .build(),
            ),
            Source::Group(g) => permission.user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(*g)
                    .description(&rule.description)
                    .build(),
            ),
        };
        let ec2 = &run.deps.ec2;
        let what = format!("{} ({})", id(group), rule.description);
        let added = match direction {
            Direction::Ingress => added(
                format!("AuthorizeSecurityGroupIngress {what}"),
                ec2.authorize_security_group_ingress()
                    .group_id(id(group))
                    .ip_permissions(permission.build())
                    .send()
                    .await,
            )?,
            Direction::Egress => added(
                format!("AuthorizeSecurityGroupEgress {what}"),
                ec2.authorize_security_group_egress()
                    .group_id(id(group))
                    .ip_permissions(permission.build())
                    .send()
                    .await,
            )?,
        };
        if added {
            run.log
                .created(&format!("{}:{}", id(group), rule.description));
        }
    }
    Ok(())
}

/// Whether an Authorize call added its rule: a duplicate was already there.
fn added<T, E>(operation: String, result: std::result::Result<T, SdkError<E>>) -> Result<bool>
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| is_code(e, &["InvalidPermission.Duplicate"])) =>
        {
            Ok(false)
        }
        Err(err) => Err(on_known_id(operation, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_with_our_name_that_is_not_ours_is_refused_by_name() {
        let err = foreign_group("apiary-acme-alb", "vpc-1", Some(("sg-9".into(), false)))
            .expect("a conflict");
        assert_eq!(err.name(), apiary_core::ErrorName::Conflict);
        assert!(err.to_string().contains("sg-9"), "{err}");
        assert!(err.to_string().contains("apiary-acme-alb"), "{err}");
        assert!(foreign_group("apiary-acme-alb", "vpc-1", Some(("sg-1".into(), true))).is_none());
        assert!(foreign_group("apiary-acme-alb", "vpc-1", None).is_none());
    }
}
