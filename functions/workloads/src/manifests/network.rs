//! Who may talk to the pods and whom they may talk to: the NetworkPolicy, and the SDK
//! endpoint's Ingress with the ALB that EKS Auto Mode builds for it.

use std::collections::BTreeMap;

use apiary_core::Result;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IPBlock, Ingress, IngressBackend, IngressClass,
    IngressClassParametersReference, IngressClassSpec, IngressRule, IngressServiceBackend,
    IngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule,
    NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use super::{
    APP, CONTAINER_PORT, Context, INGRESS_CLASS, LABEL_DEPLOYMENT, LABEL_MANAGED_BY, Manifest,
    NAMESPACE, READINESS_PATH, SERVICE_PORT, roundtrip, schema,
};

/// The EKS Pod Identity agent: the pods fetch their role's credentials here.
pub const POD_IDENTITY_AGENT: &str = "169.254.170.23/32";
pub const POD_IDENTITY_AGENT_PORT: i32 = 80;
/// The controller name under which EKS Auto Mode builds Application Load Balancers.
pub const ALB_CONTROLLER: &str = "eks.amazonaws.com/alb";
pub const AUTO_MODE_GROUP: &str = "eks.amazonaws.com";
/// TLS 1.3 with 1.2 fallback.
pub const SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    }
}

fn cidr(block: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: block.to_owned(),
            ..IPBlock::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// Any pod in the policy's own namespace.
fn same_namespace() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    }
}

/// Ingress only from the load balancer (its subnets, since the ALB sends to pod IPs
/// directly), from within the namespace and from Prometheus. Egress only within the
/// namespace, to DNS, to the data stores on their ports in the private subnets, to the
/// Pod Identity agent, and to AWS APIs on 443.
pub fn network_policy(ctx: &Context) -> Result<Manifest> {
    let load_balancer: Vec<NetworkPolicyPeer> = ctx
        .load_balancer_subnets()
        .iter()
        .map(|s| cidr(&s.cidr))
        .collect();
    let ingress = vec![
        NetworkPolicyIngressRule {
            from: Some(load_balancer),
            ports: Some(vec![tcp(CONTAINER_PORT)]),
        },
        NetworkPolicyIngressRule {
            from: Some(vec![same_namespace()]),
            ports: None,
        },
        // Prometheus scrapes a pod annotated for it on whichever port it declares.
        NetworkPolicyIngressRule {
            from: Some(vec![super::monitoring::scraper_peer()]),
            ports: None,
        },
    ];
    let mut egress = vec![
        NetworkPolicyEgressRule {
            to: Some(vec![same_namespace()]),
            ports: None,
        },
        // Cluster DNS: wherever it runs (a pod, or the node itself in Auto Mode).
        NetworkPolicyEgressRule {
            to: None,
            ports: Some(vec![
                NetworkPolicyPort {
                    port: Some(IntOrString::Int(53)),
                    protocol: Some("UDP".to_owned()),
                    ..NetworkPolicyPort::default()
                },
                tcp(53),
            ]),
        },
    ];
    let mut store_ports: Vec<i32> = [
        &ctx.databases.postgres,
        &ctx.databases.documentdb,
        &ctx.databases.redis,
    ]
    .into_iter()
    .flatten()
    .map(|store| i32::from(store.port))
    .collect();
    store_ports.sort_unstable();
    store_ports.dedup();
    // An empty port list would mean every port: add the rule only with ports.
    if !store_ports.is_empty() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(ctx.private_subnets.iter().map(|s| cidr(&s.cidr)).collect()),
            ports: Some(store_ports.into_iter().map(tcp).collect()),
        });
    }
    egress.push(NetworkPolicyEgressRule {
        to: Some(vec![cidr(POD_IDENTITY_AGENT)]),
        ports: Some(vec![tcp(POD_IDENTITY_AGENT_PORT)]),
    });
    // AWS APIs: the interface endpoints are inside the VPC, but S3 is reached through a
    // gateway endpoint at S3's public addresses, which a NetworkPolicy cannot name (it
    // has no prefix lists), so HTTPS is allowed to any address.
    egress.push(NetworkPolicyEgressRule {
        to: Some(vec![cidr("0.0.0.0/0")]),
        ports: Some(vec![tcp(443)]),
    });
    Manifest::typed(&NetworkPolicy {
        metadata: ctx.metadata(APP, Some(NAMESPACE)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(ctx.selector()),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    })
}

/// EKS Auto Mode enforces NetworkPolicies only once its network policy controller is
/// switched on by this ConfigMap.
pub fn network_policy_switch(ctx: &Context) -> Result<Manifest> {
    let mut manifest = Manifest::typed(&ConfigMap {
        metadata: ObjectMeta {
            name: Some("amazon-vpc-cni".to_owned()),
            namespace: Some("kube-system".to_owned()),
            labels: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_owned(), "apiary".to_owned()),
                (LABEL_DEPLOYMENT.to_owned(), ctx.deployment.clone()),
            ])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "enable-network-policy-controller".to_owned(),
            "true".to_owned(),
        )])),
        ..ConfigMap::default()
    })?;
    manifest.auto_mode_only = true;
    Ok(manifest)
}

/// `eks.amazonaws.com/v1` `IngressClassParams`: how EKS Auto Mode builds the ALB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressClassParams {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: IngressClassParamsSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressClassParamsSpec {
    pub scheme: String,
    pub ip_address_type: String,
    pub subnets: SubnetIds,
    #[serde(rename = "certificateARNs")]
    pub certificate_arns: Vec<String>,
    pub group: IngressGroup,
    pub tags: Vec<KeyValue>,
    pub load_balancer_attributes: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetIds {
    pub ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressGroup {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

pub fn ingress_class_params(ctx: &Context) -> Result<Manifest> {
    let params = IngressClassParams {
        api_version: format!("{AUTO_MODE_GROUP}/v1"),
        kind: "IngressClassParams".to_owned(),
        metadata: ctx.metadata(INGRESS_CLASS, None),
        spec: IngressClassParamsSpec {
            scheme: if ctx.internet_facing {
                "internet-facing"
            } else {
                "internal"
            }
            .to_owned(),
            ip_address_type: "ipv4".to_owned(),
            subnets: SubnetIds {
                ids: ctx
                    .load_balancer_subnets()
                    .iter()
                    .map(|s| s.id.clone())
                    .collect(),
            },
            certificate_arns: vec![ctx.certificate_arn.clone()],
            group: IngressGroup {
                name: format!("apiary-{}", ctx.deployment),
            },
            tags: ctx
                .tags
                .iter()
                .map(|(key, value)| KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            load_balancer_attributes: vec![KeyValue {
                key: "routing.http.drop_invalid_header_fields.enabled".to_owned(),
                value: "true".to_owned(),
            }],
        },
    };
    let mut manifest = Manifest::build(
        &params.api_version,
        &params.kind,
        "ingressclassparams",
        &params.metadata,
        &params,
        roundtrip::<IngressClassParams>,
    )?;
    manifest.schema = Some(schema::INGRESS_CLASS_PARAMS);
    manifest.auto_mode_only = true;
    Ok(manifest)
}

pub fn ingress_class(ctx: &Context) -> Result<Manifest> {
    let parameters = ctx.auto_mode.then(|| IngressClassParametersReference {
        api_group: Some(AUTO_MODE_GROUP.to_owned()),
        kind: "IngressClassParams".to_owned(),
        name: INGRESS_CLASS.to_owned(),
        ..IngressClassParametersReference::default()
    });
    Manifest::typed(&IngressClass {
        metadata: ctx.metadata(INGRESS_CLASS, None),
        spec: Some(IngressClassSpec {
            controller: Some(ALB_CONTROLLER.to_owned()),
            parameters,
        }),
    })
}

/// The SDK endpoint: HTTPS only, with the ACM certificate (set on the IngressClassParams),
/// straight to the pods' IPs, behind the network layer's ALB security group (443 from
/// the customer's networks only).
pub fn ingress(ctx: &Context) -> Result<Manifest> {
    let mut annotations = BTreeMap::new();
    let mut annotate = |key: &str, value: &str| {
        annotations.insert(format!("alb.ingress.kubernetes.io/{key}"), value.to_owned());
    };
    annotate("listen-ports", r#"[{"HTTPS":443}]"#);
    annotate("ssl-policy", SSL_POLICY);
    annotate("target-type", "ip");
    annotate("healthcheck-path", READINESS_PATH);
    if !ctx.security_groups.alb.is_empty() {
        annotate("security-groups", &ctx.security_groups.alb);
        annotate("manage-backend-security-group-rules", "true");
    }
    let mut metadata = ctx.metadata(APP, Some(NAMESPACE));
    metadata.annotations = Some(annotations);
    Manifest::typed(&Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: Some(INGRESS_CLASS.to_owned()),
            tls: Some(vec![IngressTLS {
                hosts: Some(vec![ctx.domain.clone()]),
                ..IngressTLS::default()
            }]),
            rules: Some(vec![IngressRule {
                host: Some(ctx.domain.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_owned()),
                        path_type: "Prefix".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: APP.to_owned(),
                                port: Some(ServiceBackendPort {
                                    number: Some(SERVICE_PORT),
                                    ..ServiceBackendPort::default()
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}
