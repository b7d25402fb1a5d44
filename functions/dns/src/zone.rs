//! The private hosted zone for the domain, attached to the deployment's VPC.

use apiary_core::naming::Layer;
use apiary_core::{Error, Result};
use aws_sdk_route53::types::{HostedZoneConfig, Tag, TagResourceType, Vpc, VpcRegion};

use crate::Run;

/// Route53 returns ids as `/hostedzone/Z123`; the rest of Apiary uses the bare id.
pub fn bare_id(id: &str) -> String {
    id.trim_start_matches("/hostedzone/").to_owned()
}

/// The zone's CallerReference: deterministic, so a retried create after a lost
/// response is recognised, and unique per VPC, because Route53 never accepts a reference
/// twice (a re-provision after teardown gets a new VPC, so a new reference).
pub fn caller_reference(deployment: &str, vpc_id: &str) -> String {
    format!("apiary-{deployment}-{vpc_id}")
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

pub async fn ensure_private_zone(run: &Run<'_>) -> Result<String> {
    let id = match find_private_zone(run).await? {
        Some(id) => id,
        None => create_private_zone(run).await?,
    };
    run.log
        .resource(
            "route53:hosted-zone",
            &id,
            Some(&format!("/hostedzone/{id}")),
        )
        .await?;
    Ok(id)
}

/// Finds a private zone for the domain already associated with the VPC. One made by this
/// deployment (by tag, or by CallerReference if tagging was interrupted) is reused; one
/// that is not Apiary's is a conflict: two private zones for one name in one VPC cannot
/// both answer.
async fn find_private_zone(run: &Run<'_>) -> Result<Option<String>> {
    let route53 = &run.deps.route53;
    let mut next_token = None;
    loop {
        let page = route53
            .list_hosted_zones_by_vpc()
            .vpc_id(&run.vpc_id)
            .vpc_region(VpcRegion::from(run.region.as_str()))
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListHostedZonesByVPC {}", run.vpc_id), e))?;
        for summary in page.hosted_zone_summaries() {
            if !same_name(summary.name(), &run.domain) {
                continue;
            }
            let id = bare_id(summary.hosted_zone_id());
            let tags = zone_tags(run, &id).await?;
            if run.owns(tags.iter().map(|t| (t.key().unwrap_or(""), t.value()))) {
                ensure_tags(run, &id, &tags).await?;
                return Ok(Some(id));
            }
            let zone = route53
                .get_hosted_zone()
                .id(&id)
                .send()
                .await
                .map_err(|e| Error::aws(format!("GetHostedZone {id}"), e))?;
            let reference = zone.hosted_zone().map(|z| z.caller_reference());
            if reference == Some(caller_reference(run.names.deployment(), &run.vpc_id).as_str()) {
                ensure_tags(run, &id, &tags).await?;
                return Ok(Some(id));
            }
            return Err(Error::Conflict(format!(
                "private hosted zone {id} for {} is already associated with VPC {} and is not Apiary's (deployment {}); disassociate or delete it",
                run.domain,
                run.vpc_id,
                run.names.deployment()
            )));
        }
        match page.next_token() {
            Some(token) => next_token = Some(token.to_owned()),
            None => return Ok(None),
        }
    }
}

async fn create_private_zone(run: &Run<'_>) -> Result<String> {
    let reference = caller_reference(run.names.deployment(), &run.vpc_id);
    let created = run
        .deps
        .route53
        .create_hosted_zone()
        .name(&run.domain)
        .caller_reference(&reference)
        .vpc(
            Vpc::builder()
                .vpc_id(&run.vpc_id)
                .vpc_region(VpcRegion::from(run.region.as_str()))
                .build(),
        )
        .hosted_zone_config(
            HostedZoneConfig::builder()
                .private_zone(true)
                .comment(format!(
                    "Apiary deployment {}: private names of the data plane",
                    run.names.deployment()
                ))
                .build(),
        )
        .send()
        .await;
    let id = match created {
        Ok(out) => out.hosted_zone().map(|z| bare_id(z.id())).ok_or_else(|| {
            Error::fatal(format!("CreateHostedZone {} returned no zone", run.domain))
        })?,
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_hosted_zone_already_exists()) =>
        {
            // Our reference was used already: an earlier run created the zone and the
            // association is not visible yet, or it was deleted (references never
            // come back). Either way there is nothing safe to create.
            return Err(Error::Conflict(format!(
                "CreateHostedZone {}: CallerReference {reference} was already used, but no zone for it is associated with VPC {}",
                run.domain, run.vpc_id
            )));
        }
        Err(err) => return Err(Error::aws(format!("CreateHostedZone {}", run.domain), err)),
    };
    run.log.created(&id);
    ensure_tags(run, &id, &[]).await?;
    Ok(id)
}

async fn zone_tags(run: &Run<'_>, id: &str) -> Result<Vec<Tag>> {
    let out = run
        .deps
        .route53
        .list_tags_for_resource()
        .resource_type(TagResourceType::Hostedzone)
        .resource_id(id)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListTagsForResource hostedzone/{id}"), e))?;
    Ok(out
        .resource_tag_set()
        .map(|s| s.tags().to_vec())
        .unwrap_or_default())
}

/// Adds the layer's tags the zone lacks (Route53 zones cannot be tagged at creation).
async fn ensure_tags(run: &Run<'_>, id: &str, existing: &[Tag]) -> Result<()> {
    let missing: Vec<Tag> = run
        .names
        .tags(Layer::Dns)
        .into_iter()
        .filter(|(k, v)| {
            !existing
                .iter()
                .any(|t| t.key() == Some(k.as_str()) && t.value() == Some(v.as_str()))
        })
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run.deps
        .route53
        .change_tags_for_resource()
        .resource_type(TagResourceType::Hostedzone)
        .resource_id(id)
        .set_add_tags(Some(missing))
        .send()
        .await
        .map_err(|e| Error::aws(format!("ChangeTagsForResource hostedzone/{id}"), e))?;
    Ok(())
}
