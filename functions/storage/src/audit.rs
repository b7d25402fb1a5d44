//! The data plane's audit trail: a CloudTrail trail and the VPC's flow logs, both
//! delivered into the logs bucket, encrypted with the s3 key and kept for the bucket's
//! retention.
//!
//! Both are made here, in the storage step, rather than in the network step that owns
//! the VPC: they need the logs bucket to exist with its policy (CloudTrail and log
//! delivery check it when the trail or flow log is created), and the provision workflow
//! runs storage after network. So storage has both the bucket it just made and the VPC id
//! from the network layer's saved output, and neither layer's order has to change.

use apiary_core::naming::{Layer, Names, client_token};
use apiary_core::{Error, Result};
use aws_sdk_cloudtrail::types::{Tag as TrailTag, Trail};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, FlowLog, FlowLogsResourceType, LogDestinationType, ResourceType, Tag, TagSpecification,
    TrafficType,
};

use crate::Run;
use crate::policy::{TRAIL_PREFIX, bucket_arn, trail_arn};

/// Flow log records are aggregated over ten minutes: AWS's default, and the fewest
/// (cheapest) log files.
pub const FLOW_LOG_AGGREGATION_SECONDS: i32 = 600;

/// `apiary-<deployment>-trail`: the keys layer names the same trail in the s3 key's
/// policy (`aws:SourceArn`).
pub fn trail_name(names: &Names) -> String {
    names.resource("trail")
}

/// Which trail records the data plane's API calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrailChoice {
    /// This deployment's own trail, into its logs bucket.
    Own,
    /// An organisation trail the account already has (its ARN): nothing is created.
    Organization(String),
}

impl TrailChoice {
    /// From the stack parameter: empty means the deployment's own trail.
    pub fn from_parameter(value: Option<String>) -> Self {
        match value.map(|v| v.trim().to_owned()) {
            Some(arn) if !arn.is_empty() => TrailChoice::Organization(arn),
            _ => TrailChoice::Own,
        }
    }
}

fn built<T>(result: std::result::Result<T, aws_sdk_cloudtrail::error::BuildError>) -> Result<T> {
    result.map_err(|e| Error::fatal(e.to_string()))
}

/// The trail's ARN: the organisation trail as given, or this deployment's own trail,
/// created if missing, brought back to the expected settings, and logging.
pub(crate) async fn ensure_trail(run: &Run<'_>, logs: &str) -> Result<String> {
    if let TrailChoice::Organization(arn) = &run.deps.trail {
        run.log.resource("cloudtrail:trail", arn, Some(arn)).await?;
        return Ok(arn.clone());
    }
    let cloudtrail = &run.deps.cloudtrail;
    let name = trail_name(run.names);
    let arn = trail_arn(&run.region, &run.account, &name);
    let found = apiary_core::aws::answer_or_none(
        format!("GetTrail {name}"),
        cloudtrail.get_trail().name(&name).send(),
        |e| e.is_trail_not_found_exception(),
    )
    .await?
    .and_then(|out| out.trail);
    match found {
        None => create_trail(run, &name, logs).await?,
        Some(trail) if !trail_matches(&trail, logs, &run.key_arn) => {
            cloudtrail
                .update_trail()
                .name(&name)
                .s3_bucket_name(logs)
                .s3_key_prefix(TRAIL_PREFIX)
                .kms_key_id(&run.key_arn)
                .include_global_service_events(true)
                .is_multi_region_trail(true)
                .enable_log_file_validation(true)
                .send()
                .await
                .map_err(|e| {
                    Error::aws_transient_if(format!("UpdateTrail {name}"), e, |e| {
                        e.is_insufficient_s3_bucket_policy_exception()
                            || e.is_insufficient_encryption_policy_exception()
                    })
                })?;
        }
        Some(_) => {}
    }
    let status = cloudtrail
        .get_trail_status()
        .name(&name)
        .send()
        .await
        .map_err(|e| Error::aws(format!("GetTrailStatus {name}"), e))?;
    if status.is_logging() != Some(true) {
        cloudtrail
            .start_logging()
            .name(&name)
            .send()
            .await
            .map_err(|e| Error::aws(format!("StartLogging {name}"), e))?;
    }
    run.log
        .resource("cloudtrail:trail", &name, Some(&arn))
        .await?;
    Ok(arn)
}

/// A trail writes where and how this deployment expects: into the logs bucket under the
/// trail prefix, encrypted with the s3 key, with digest files, in every region, global
/// service events (IAM, which the data plane's roles live in) included.
pub fn trail_matches(trail: &Trail, logs: &str, key_arn: &str) -> bool {
    trail.s3_bucket_name() == Some(logs)
        && trail.s3_key_prefix() == Some(TRAIL_PREFIX)
        && trail.kms_key_id() == Some(key_arn)
        && trail.log_file_validation_enabled() == Some(true)
        && trail.include_global_service_events() == Some(true)
        && trail.is_multi_region_trail() == Some(true)
}

async fn create_trail(run: &Run<'_>, name: &str, logs: &str) -> Result<()> {
    let mut request = run
        .deps
        .cloudtrail
        .create_trail()
        .name(name)
        .s3_bucket_name(logs)
        .s3_key_prefix(TRAIL_PREFIX)
        .kms_key_id(&run.key_arn)
        // Every region: global service events (IAM and STS, where the data plane's roles
        // and the ingestion role's boundary live) reach only multi-region trails and
        // trails in us-east-1; the data plane itself lives in one region, whichever.
        .is_multi_region_trail(true)
        .include_global_service_events(true)
        .enable_log_file_validation(true);
    for (key, value) in run.names.tags(Layer::Storage) {
        request = request.tags_list(built(TrailTag::builder().key(key).value(value).build())?);
    }
    match request.send().await {
        Ok(_) => {
            run.log.created(name);
            Ok(())
        }
        // A concurrent run made it between GetTrail and now; the next run converges it.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_trail_already_exists_exception()) =>
        {
            Ok(())
        }
        // CloudTrail checks the bucket and key policies at the call; a policy written a
        // moment ago (the key's by the keys step, the bucket's just before) may not be
        // visible yet on AWS: retried, and a policy that is really wrong still fails
        // after the workflow's retries.
        Err(err) => Err(Error::aws_transient_if(
            format!("CreateTrail {name}"),
            err,
            |e| {
                e.is_insufficient_s3_bucket_policy_exception()
                    || e.is_insufficient_encryption_policy_exception()
            },
        )),
    }
}

/// Whether a flow log records all of the VPC's traffic into the logs bucket.
pub fn flow_log_matches(flow_log: &FlowLog, vpc_id: &str, destination: &str) -> bool {
    flow_log.resource_id() == Some(vpc_id)
        && flow_log.log_destination_type() == Some(&LogDestinationType::S3)
        && flow_log.log_destination() == Some(destination)
        && flow_log.traffic_type() == Some(&TrafficType::All)
}

/// The VPC's flow log into the logs bucket (written under `AWSLogs/<account>/`), found
/// or created.
pub(crate) async fn ensure_flow_log(run: &Run<'_>, vpc_id: &str, logs: &str) -> Result<String> {
    let destination = bucket_arn(&run.region, logs);
    if let Some(id) = find_flow_log(run, vpc_id, &destination).await? {
        run.log.resource("ec2:vpc-flow-log", &id, None).await?;
        return Ok(id);
    }
    let interval = FLOW_LOG_AGGREGATION_SECONDS.to_string();
    let token = client_token(&[
        run.names.deployment(),
        vpc_id,
        "flow-log",
        &destination,
        "ALL",
        &interval,
    ]);
    let mut tags = run.names.tags(Layer::Storage);
    tags.push(("Name".to_owned(), run.names.resource("flow-log")));
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::VpcFlowLog)
        .set_tags(Some(
            tags.into_iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build();
    let created = run
        .deps
        .ec2
        .create_flow_logs()
        .resource_type(FlowLogsResourceType::Vpc)
        .resource_ids(vpc_id)
        .traffic_type(TrafficType::All)
        .log_destination_type(LogDestinationType::S3)
        .log_destination(&destination)
        .max_aggregation_interval(FLOW_LOG_AGGREGATION_SECONDS)
        .client_token(token)
        .tag_specifications(tags)
        .send()
        .await;
    let created = match created {
        Ok(out) => out,
        // Made by a concurrent run between the lookup and now.
        Err(err) if err.code() == Some("FlowLogAlreadyExists") => {
            return find_flow_log(run, vpc_id, &destination)
                .await?
                .ok_or_else(|| Error::NotReady {
                    resource: format!("the flow log of {vpc_id}"),
                    detail: "EC2 reports it exists but does not list it yet".to_owned(),
                });
        }
        Err(err) => return Err(Error::aws(format!("CreateFlowLogs {vpc_id}"), err)),
    };
    if let Some(failed) = created.unsuccessful().first() {
        let (code, message) = failed
            .error()
            .map(|e| (e.code().unwrap_or("?"), e.message().unwrap_or("")))
            .unwrap_or(("?", ""));
        return Err(Error::fatal(format!(
            "CreateFlowLogs {vpc_id} into {destination} failed: {code}: {message}"
        )));
    }
    let id = created
        .flow_log_ids()
        .first()
        .cloned()
        .ok_or_else(|| Error::fatal(format!("CreateFlowLogs {vpc_id} returned no id")))?;
    run.log.created(&id);
    run.log.resource("ec2:vpc-flow-log", &id, None).await?;
    Ok(id)
}

async fn find_flow_log(run: &Run<'_>, vpc_id: &str, destination: &str) -> Result<Option<String>> {
    let described = run
        .deps
        .ec2
        .describe_flow_logs()
        .filter(Filter::builder().name("resource-id").values(vpc_id).build())
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeFlowLogs {vpc_id}"), e))?;
    Ok(described
        .flow_logs()
        .iter()
        .find(|f| flow_log_matches(f, vpc_id, destination))
        .and_then(|f| f.flow_log_id().map(str::to_owned)))
}

#[cfg(test)]
mod tests;
