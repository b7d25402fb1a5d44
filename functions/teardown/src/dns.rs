//! Step 6d: the private hosted zone (its records first) and the certificate. ACM refuses
//! to delete a certificate a load balancer still uses (`ResourceInUseException`) for a
//! few minutes after the load balancer is gone: reported as pending.

use apiary_core::{Error, Result};
use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, RrType, TagResourceType};

use crate::Work;

pub async fn run(work: &mut Work<'_>) -> Result<Vec<String>> {
    let mut pending = Vec::new();
    let recorded = work.step.layers.dns.clone().unwrap_or_default();
    if !recorded.hosted_zone_id.is_empty() {
        zone(work, &recorded.hosted_zone_id).await?;
    }
    if !recorded.certificate_arn.is_empty() {
        certificate(work, &recorded.certificate_arn, &mut pending).await?;
    }
    Ok(pending)
}

async fn zone(work: &mut Work<'_>, zone: &str) -> Result<()> {
    let deps = work.deps;
    let id = zone.trim_start_matches("/hostedzone/");
    let tags = match deps
        .route53
        .list_tags_for_resource()
        .resource_type(TagResourceType::Hostedzone)
        .resource_id(id)
        .send()
        .await
    {
        Ok(out) => out.resource_tag_set,
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_no_such_hosted_zone()) =>
        {
            return Ok(());
        }
        Err(err) => return Err(Error::aws(format!("ListTagsForResource {id}"), err)),
    };
    let ours = tags.as_ref().is_some_and(|set| {
        work.owner.tagged(
            set.tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
        )
    });
    if !ours {
        work.report.note(format!(
            "hosted zone {id} is not tagged as this deployment's: left alone"
        ));
        return Ok(());
    }
    let mut changes = Vec::new();
    let zone_name = deps
        .route53
        .get_hosted_zone()
        .id(id)
        .send()
        .await
        .map(|out| out.hosted_zone.map(|z| z.name).unwrap_or_default());
    let zone_name = match zone_name {
        Ok(name) => name,
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_no_such_hosted_zone()) =>
        {
            return Ok(());
        }
        Err(err) => return Err(Error::aws(format!("GetHostedZone {id}"), err)),
    };
    let (mut next_name, mut next_type) = (None, None);
    loop {
        let page = deps
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(id)
            .set_start_record_name(next_name.take())
            .set_start_record_type(next_type.take())
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListResourceRecordSets {id}"), e))?;
        for record in page.resource_record_sets() {
            // The apex SOA and NS go with the zone.
            let apex = record.name() == zone_name;
            if apex && matches!(record.r#type(), RrType::Soa | RrType::Ns) {
                continue;
            }
            changes.push(
                Change::builder()
                    .action(ChangeAction::Delete)
                    .resource_record_set(record.clone())
                    .build()
                    .map_err(|e| Error::fatal(format!("record change: {e}")))?,
            );
        }
        if !page.is_truncated() {
            break;
        }
        next_name = page.next_record_name().map(str::to_owned);
        next_type = page.next_record_type().cloned();
    }
    for batch in changes.chunks(500) {
        deps.route53
            .change_resource_record_sets()
            .hosted_zone_id(id)
            .change_batch(
                ChangeBatch::builder()
                    .set_changes(Some(batch.to_vec()))
                    .comment("apiary teardown")
                    .build()
                    .map_err(|e| Error::fatal(format!("change batch: {e}")))?,
            )
            .send()
            .await
            .map_err(|e| Error::aws(format!("ChangeResourceRecordSets {id}"), e))?;
    }
    match deps.route53.delete_hosted_zone().id(id).send().await {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_no_such_hosted_zone()) => {}
        Err(err) => return Err(Error::aws(format!("DeleteHostedZone {id}"), err)),
    }
    work.report.removed("route53:hostedzone", id);
    Ok(())
}

async fn certificate(work: &mut Work<'_>, arn: &str, pending: &mut Vec<String>) -> Result<()> {
    let deps = work.deps;
    let tags = match deps
        .acm
        .list_tags_for_certificate()
        .certificate_arn(arn)
        .send()
        .await
    {
        Ok(out) => out.tags,
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok(());
        }
        Err(err) => return Err(Error::aws(format!("ListTagsForCertificate {arn}"), err)),
    };
    let ours = tags.as_ref().is_some_and(|tags| {
        work.owner.tagged(
            tags.iter()
                .map(|t| (t.key(), t.value().unwrap_or_default())),
        )
    });
    if !ours {
        work.report.note(format!(
            "certificate {arn} is not tagged as this deployment's: left alone"
        ));
        return Ok(());
    }
    match deps
        .acm
        .delete_certificate()
        .certificate_arn(arn)
        .send()
        .await
    {
        Ok(_) => work.report.removed("acm:certificate", arn),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            work.report.removed("acm:certificate", arn)
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            pending.push(format!(
                "certificate {arn} is still used by a load balancer"
            ));
        }
        Err(err) => return Err(Error::aws(format!("DeleteCertificate {arn}"), err)),
    }
    Ok(())
}
