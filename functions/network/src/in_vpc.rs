//! Apiary's functions that must reach private endpoints run inside the VPC: today the
//! workloads function (the EKS API endpoint is private by default), next the backup
//! workflow's restore-test verifier (the data stores are never public).
//!
//! The bootstrap stack creates those functions before the VPC exists, so it cannot place
//! them; this step does, once the network is built: each function named in
//! [`IN_VPC_FUNCTIONS_ENV`] is attached to the private subnets with the control plane's
//! security group (`UpdateFunctionConfiguration` with a `VpcConfig`). It reads the
//! function's configuration first and changes nothing when it is already attached, and it
//! waits (the workflow polls) until Lambda reports the update `Successful`: until then
//! invocations still run with the old configuration. The template declares no `VpcConfig`
//! for these functions, so a stack update leaves the attachment alone; every provision
//! checks it again all the same and re-attaches a function found detached.

use apiary_core::aws::Env;
use apiary_core::outputs::NetworkOutput;
use apiary_core::step::{Done, StepLog};
use apiary_core::{Error, Result};
use aws_sdk_lambda::types::{LastUpdateStatus, State, VpcConfig};
use serde::Serialize;

/// The environment variable that names the functions to run inside the VPC, comma
/// separated; the stack sets it on the network function from its own function names.
pub const IN_VPC_FUNCTIONS_ENV: &str = "APIARY_IN_VPC_FUNCTIONS";

/// The functions [`IN_VPC_FUNCTIONS_ENV`] names, in order, without blanks.
pub fn in_vpc_functions(env: &dyn Env) -> Vec<String> {
    env.var(IN_VPC_FUNCTIONS_ENV)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// What the step found (and made) of the in-VPC functions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InVpcOutput {
    pub functions: Vec<InVpcFunction>,
}

/// One function's placement as Lambda reports it after this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InVpcFunction {
    pub name: String,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    /// Lambda's `LastUpdateStatus`: `Successful`, `InProgress` or `Failed`.
    pub last_update_status: String,
}

/// Where the functions go: the private subnets, with the control plane's group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    subnet_ids: Vec<String>,
    security_group_ids: Vec<String>,
}

impl Placement {
    fn of(network: &NetworkOutput) -> Result<Self> {
        let group = &network.security_groups.control_plane;
        if group.is_empty() {
            return Err(Error::invalid_input(
                "layers.network.security_groups.control_plane is empty: the network step \
                 makes it, run it first",
            ));
        }
        let mut subnet_ids = network.private_subnet_ids();
        if subnet_ids.is_empty() {
            return Err(Error::invalid_input(
                "layers.network has no private subnets to place the functions in",
            ));
        }
        subnet_ids.sort();
        Ok(Placement {
            subnet_ids,
            security_group_ids: vec![group.clone()],
        })
    }

    fn matches(&self, config: Option<&aws_sdk_lambda::types::VpcConfigResponse>) -> bool {
        let sorted = |ids: &[String]| {
            let mut ids = ids.to_vec();
            ids.sort();
            ids
        };
        config.is_some_and(|c| {
            sorted(c.subnet_ids()) == self.subnet_ids
                && sorted(c.security_group_ids()) == self.security_group_ids
        })
    }

    fn vpc_config(&self) -> VpcConfig {
        VpcConfig::builder()
            .set_subnet_ids(Some(self.subnet_ids.clone()))
            .set_security_group_ids(Some(self.security_group_ids.clone()))
            .build()
    }
}

/// Attaches every function (`attach`: the `ensure-in-vpc` action) or only reports where
/// each one is (`status-in-vpc`); ready when each is attached and Lambda has finished
/// the update.
pub async fn ensure(
    lambda: &aws_sdk_lambda::Client,
    functions: &[String],
    network: &NetworkOutput,
    log: &StepLog<'_>,
    attach: bool,
) -> Result<Done<InVpcOutput>> {
    let placement = Placement::of(network)?;
    let mut output = InVpcOutput::default();
    let mut pending = Vec::new();
    for name in functions {
        let config = function_configuration(lambda, name).await?.ok_or_else(|| {
            Error::fatal(format!(
                "function {name}, named in {IN_VPC_FUNCTIONS_ENV}, does not exist"
            ))
        })?;
        let status = config.last_update_status().cloned();
        let creating = config.state() == Some(&State::Pending);
        let mut reported = InVpcFunction {
            name: name.clone(),
            subnet_ids: config
                .vpc_config()
                .map(|c| c.subnet_ids().to_vec())
                .unwrap_or_default(),
            security_group_ids: config
                .vpc_config()
                .map(|c| c.security_group_ids().to_vec())
                .unwrap_or_default(),
            last_update_status: status
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
        };
        let attached = placement.matches(config.vpc_config());
        if creating || status == Some(LastUpdateStatus::InProgress) {
            // Lambda refuses a second update while one runs; the next poll looks again.
            pending.push(format!(
                "function {name}: Lambda is still applying an update"
            ));
        } else if attached && status != Some(LastUpdateStatus::Failed) {
            // Attached, and Lambda has finished: nothing to do.
        } else if !attach {
            if status == Some(LastUpdateStatus::Failed) {
                return Err(failed(name, &config));
            }
            pending.push(format!(
                "function {name} is not attached to the private subnets"
            ));
        } else {
            // Detached, attached elsewhere, or an earlier attachment failed: (re)attach.
            let updated = lambda
                .update_function_configuration()
                .function_name(name)
                .vpc_config(placement.vpc_config())
                .send()
                .await
                .map_err(|e| {
                    Error::aws_transient_if(
                        format!("UpdateFunctionConfiguration {name} (VpcConfig)"),
                        e,
                        |e| e.is_resource_conflict_exception(),
                    )
                })?;
            log.created(&format!("{name}:vpc-config"));
            let status = updated.last_update_status().cloned();
            reported.subnet_ids = placement.subnet_ids.clone();
            reported.security_group_ids = placement.security_group_ids.clone();
            reported.last_update_status = status
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            if status != Some(LastUpdateStatus::Successful) {
                pending.push(format!(
                    "function {name}: attaching to the VPC (Lambda creates its network \
                     interfaces)"
                ));
            }
        }
        output.functions.push(reported);
    }
    Ok(Done::pending(output, pending))
}

/// Why Lambda could not apply the attachment, as it says.
fn failed(
    name: &str,
    config: &aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput,
) -> Error {
    let code = config
        .last_update_status_reason_code()
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default();
    let reason = config
        .last_update_status_reason()
        .unwrap_or("no reason given");
    Error::fatal(format!(
        "function {name}: Lambda could not attach it to the VPC ({code}): {reason}; the next \
         provision tries again"
    ))
}

/// A function's configuration; `None` when it does not exist.
async fn function_configuration(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
) -> Result<
    Option<aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput>,
> {
    apiary_core::aws::answer_or_none(
        format!("GetFunctionConfiguration {name}"),
        lambda
            .get_function_configuration()
            .function_name(name)
            .send(),
        |e| e.is_resource_not_found_exception(),
    )
    .await
}

/// Takes a function out of the VPC (an empty `VpcConfig`): a teardown does this before it
/// deletes the subnets and the group, which Lambda's network interfaces would otherwise
/// hold (Lambda releases them minutes after the update). Returns whether it changed
/// anything; a function that no longer exists is already out.
pub async fn detach(lambda: &aws_sdk_lambda::Client, name: &str) -> Result<bool> {
    let Some(config) = function_configuration(lambda, name).await? else {
        return Ok(false);
    };
    let in_vpc = config
        .vpc_config()
        .is_some_and(|c| !c.subnet_ids().is_empty() || !c.security_group_ids().is_empty());
    if !in_vpc {
        return Ok(false);
    }
    lambda
        .update_function_configuration()
        .function_name(name)
        .vpc_config(
            VpcConfig::builder()
                .set_subnet_ids(Some(Vec::new()))
                .set_security_group_ids(Some(Vec::new()))
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            Error::aws_transient_if(
                format!("UpdateFunctionConfiguration {name} (detach)"),
                e,
                |e| e.is_resource_conflict_exception(),
            )
        })?;
    Ok(true)
}
