//! The network layer: VPC, public and private subnets across 2-3 zones, internet and NAT
//! gateways, route tables, gateway and interface VPC endpoints, and security groups.
//!
//! `ensure` is also its own poll: it does everything it can, and reports `ready: false`
//! while a NAT gateway is still pending (the private routes need it). The state machine
//! calls `ensure` again after a wait until the layer is ready.
//!
//! `ensure-in-vpc` then places Apiary's functions that must reach private endpoints in
//! the private subnets (see [`in_vpc`]); `status-in-vpc` polls until Lambda is done.

mod ec2;
mod gateways;
pub mod in_vpc;
pub mod plan;
mod routes;
pub mod security;
mod vpc;

use std::sync::Arc;

use apiary_core::Result;
use apiary_core::naming::{Layer, Names};
use apiary_core::outputs::{NetworkOutput, SubnetRef};
use apiary_core::spec::DeploymentSpec;
use apiary_core::step::{Done, Recorder, Step, StepContext, StepLog};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use in_vpc::{IN_VPC_FUNCTIONS_ENV, InVpcOutput, in_vpc_functions};

pub struct Deps {
    pub ec2: aws_sdk_ec2::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub recorder: Arc<dyn Recorder>,
    /// The functions to run inside the VPC (on AWS: [`IN_VPC_FUNCTIONS_ENV`]).
    pub in_vpc_functions: Vec<String>,
}

impl Deps {
    pub fn new(config: &aws_config::SdkConfig, recorder: Arc<dyn Recorder>) -> Self {
        Deps {
            ec2: apiary_core::client!(aws_sdk_ec2, config),
            lambda: apiary_core::client!(aws_sdk_lambda, config),
            recorder,
            in_vpc_functions: Vec::new(),
        }
    }

    /// The functions `ensure-in-vpc` places in the private subnets.
    pub fn with_in_vpc_functions(mut self, functions: Vec<String>) -> Self {
        self.in_vpc_functions = functions;
        self
    }
}

/// Interface endpoints the private subnets need to reach AWS without the internet.
pub const INTERFACE_ENDPOINTS: &[&str] =
    &["ecr.api", "ecr.dkr", "kms", "secretsmanager", "sts", "logs"];
/// Gateway endpoints (free, route-table based).
pub const GATEWAY_ENDPOINTS: &[&str] = &["s3", "dynamodb"];

/// What the network function does, spelled as the state machine sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum NetworkAction {
    /// The network itself; also its own poll.
    #[serde(rename = "ensure")]
    Ensure,
    /// Attach the in-VPC functions to the private subnets.
    #[serde(rename = "ensure-in-vpc")]
    EnsureInVpc,
    /// Only look: are they attached, and has Lambda finished?
    #[serde(rename = "status-in-vpc")]
    StatusInVpc,
}

impl apiary_core::step::Action for NetworkAction {
    fn as_str(self) -> &'static str {
        match self {
            NetworkAction::Ensure => "ensure",
            NetworkAction::EnsureInVpc => "ensure-in-vpc",
            NetworkAction::StatusInVpc => "status-in-vpc",
        }
    }

    /// Only the network is kept for later layers; where the functions run is Lambda's
    /// to say, read again on each run.
    fn slot(self) -> Option<&'static str> {
        match self {
            NetworkAction::Ensure => Some("network"),
            NetworkAction::EnsureInVpc | NetworkAction::StatusInVpc => None,
        }
    }

    fn mutates(self) -> bool {
        !matches!(self, NetworkAction::StatusInVpc)
    }
}

/// What an action returns: the network (kept as the `network` layer), or the in-VPC
/// functions' placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum NetworkReport {
    Network(Box<NetworkOutput>),
    InVpc(InVpcOutput),
}

/// One run of the layer: the clients, names and log shared by every part.
pub(crate) struct Run<'a> {
    pub deps: &'a Deps,
    pub names: &'a Names,
    pub spec: &'a DeploymentSpec,
    pub log: &'a StepLog<'a>,
    pub region: String,
}

pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    apiary_core::step::run(deps, event).await
}

#[async_trait]
impl Step for Deps {
    const LAYER: Layer = Layer::Network;
    type Action = NetworkAction;
    type Output = NetworkReport;

    async fn run(&self, step: &StepContext<'_, NetworkAction>) -> Result<Done<NetworkReport>> {
        if step.action != NetworkAction::Ensure {
            let network = step.layers.network()?;
            let attach = step.action == NetworkAction::EnsureInVpc;
            let done = in_vpc::ensure(
                &self.lambda,
                &self.in_vpc_functions,
                network,
                &step.log,
                attach,
            )
            .await?;
            return Ok(done.map(NetworkReport::InVpc));
        }
        let region = self
            .ec2
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| step.spec.region.clone());
        let run = Run {
            deps: self,
            names: &step.names,
            spec: &step.spec,
            log: &step.log,
            region,
        };
        let (output, pending) = ensure(&run).await?;
        Ok(Done::pending(
            NetworkReport::Network(Box::new(output)),
            pending,
        ))
    }

    fn state(&self) -> &dyn Recorder {
        self.recorder.as_ref()
    }
}

async fn ensure(run: &Run<'_>) -> Result<(NetworkOutput, Vec<String>)> {
    let cidr = run.spec.vpc_cidr()?;
    let zones = vpc::zones(run, run.spec.network.az_count as usize).await?;
    let plan = plan::plan(cidr, zones.len())?;

    let vpc_id = vpc::ensure_vpc(run, cidr).await?;
    let mut public = Vec::new();
    let mut private = Vec::new();
    for (i, zone) in zones.iter().enumerate() {
        let elb_public = [("kubernetes.io/role/elb", "1")];
        let id = vpc::ensure_subnet(
            run,
            &vpc_id,
            &format!("public-{i}"),
            plan.public[i],
            zone,
            &elb_public,
        )
        .await?;
        public.push(SubnetRef {
            id,
            availability_zone: zone.clone(),
            cidr: plan.public[i].to_string(),
        });
        let cluster_name = run.names.resource("eks");
        let elb_private = [
            ("kubernetes.io/role/internal-elb", "1"),
            ("karpenter.sh/discovery", cluster_name.as_str()),
        ];
        let id = vpc::ensure_subnet(
            run,
            &vpc_id,
            &format!("private-{i}"),
            plan.private[i],
            zone,
            &elb_private,
        )
        .await?;
        private.push(SubnetRef {
            id,
            availability_zone: zone.clone(),
            cidr: plan.private[i].to_string(),
        });
    }

    let igw = gateways::ensure_internet_gateway(run, &vpc_id).await?;
    let nat_count = match run.spec.network.nat_mode {
        apiary_core::spec::NatMode::Single => 1,
        apiary_core::spec::NatMode::PerAz => zones.len(),
    };
    let mut nats = Vec::new();
    for (i, subnet) in public.iter().take(nat_count).enumerate() {
        nats.push(gateways::ensure_nat_gateway(run, i, &vpc_id, &subnet.id).await?);
    }

    let mut pending = Vec::new();
    let public_rt = routes::ensure_route_table(run, &vpc_id, "public-rt").await?;
    routes::ensure_default_route(run, &public_rt, routes::Target::Internet(&igw)).await?;
    for subnet in &public {
        routes::ensure_association(run, &public_rt, &subnet.id).await?;
    }
    let mut private_rts = Vec::new();
    for (i, subnet) in private.iter().enumerate() {
        let rt = routes::ensure_route_table(run, &vpc_id, &format!("private-rt-{i}")).await?;
        let nat = &nats[i % nats.len()];
        if nat.available {
            routes::ensure_default_route(run, &rt, routes::Target::Nat(&nat.id)).await?;
        } else {
            pending.push(format!(
                "NAT gateway {} is {}; private route {i} waits for it",
                nat.id, nat.state
            ));
        }
        routes::ensure_association(run, &rt, &subnet.id).await?;
        private_rts.push(rt.id.clone());
    }

    let nat_ips: Vec<String> = nats.iter().filter_map(|n| n.public_ip.clone()).collect();
    if nat_ips.len() < nats.len() && !run.spec.network.ingress_cidrs.is_empty() {
        pending.push(
            "a NAT gateway has no public address yet; the load balancer's group admits it \
             once EC2 shows one"
                .to_owned(),
        );
    }
    let security_groups = security::ensure_security_groups(run, &vpc_id, cidr, &nat_ips).await?;
    let private_ids: Vec<String> = private.iter().map(|s| s.id.clone()).collect();
    let mut endpoints = std::collections::BTreeMap::new();
    for service in GATEWAY_ENDPOINTS {
        let kind = routes::EndpointKind::Gateway {
            route_tables: &private_rts,
        };
        let id = routes::ensure_endpoint(run, &vpc_id, service, kind).await?;
        endpoints.insert((*service).to_owned(), id);
    }
    for service in INTERFACE_ENDPOINTS {
        let kind = routes::EndpointKind::Interface {
            subnets: &private_ids,
            security_group: &security_groups.endpoints,
        };
        let id = routes::ensure_endpoint(run, &vpc_id, service, kind).await?;
        endpoints.insert((*service).to_owned(), id);
    }

    Ok((
        NetworkOutput {
            vpc_id,
            vpc_cidr: cidr.to_string(),
            public_subnets: public,
            private_subnets: private,
            nat_gateway_ids: nats.into_iter().map(|n| n.id).collect(),
            security_groups: security_groups.public,
            endpoints,
        },
        pending,
    ))
}

#[cfg(test)]
mod tests;
