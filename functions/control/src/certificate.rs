//! ACM issued the deployment's certificate: finish the provision that ended
//! WAITING_FOR_DNS_VALIDATION. A run whose certificate was not issued yet built every
//! layer but left the HTTPS Ingress out; ACM issues the certificate once the customer's
//! DNS serves the validation records, which may be hours later, and reports it to
//! EventBridge ("ACM Certificate Available"). The stack's rule invokes this, which starts
//! provision again with the stored spec (queued behind any running workflow): that run
//! applies the Ingress, waits for healthy targets and marks the deployment READY.
//!
//! Only the deployment's own certificate counts (the dns layer's saved output names it),
//! and only while the deployment waits for it or a provision that may end waiting still
//! runs; any other certificate of the account is ignored. A redelivered event starts nothing twice: the execution's name comes from
//! the event's id, and Step Functions refuses a second execution of that name.

use apiary_core::store::{DeploymentStatus, JournalEntry};
use apiary_core::{Error, Result};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};

use crate::Deps;

pub const SOURCE: &str = "aws.acm";
pub const DETAIL_TYPE: &str = "ACM Certificate Available";

/// What the event led to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issued {
    pub deployment: String,
    pub certificate_arn: String,
    /// The provision execution started (or already started by this event), if any.
    pub execution: Option<String>,
    pub detail: String,
}

/// The certificate an "ACM Certificate Available" event is about.
pub fn certificate_of(event: Value) -> Result<String> {
    let event: EventBridgeEvent<Value> = serde_json::from_value(event)
        .map_err(|e| Error::invalid_input(format!("not an EventBridge event: {e}")))?;
    if event.source != SOURCE || event.detail_type != DETAIL_TYPE {
        return Err(Error::invalid_input(format!(
            "event {} {:?} is not ACM's {DETAIL_TYPE:?}",
            event.source, event.detail_type
        )));
    }
    event
        .resources
        .and_then(|r| r.into_iter().find(|arn| arn.contains(":certificate/")))
        .ok_or_else(|| Error::invalid_input("the ACM event names no certificate in `resources`"))
}

/// A name Step Functions accepts (at most 80 of `[A-Za-z0-9_-]`), from the event's id.
pub fn execution_name(event_id: &str) -> String {
    let id: String = event_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(56)
        .collect();
    format!("certificate-issued-{id}")
}

pub async fn from_event(deps: &Deps, event: Value) -> Result<Value> {
    let id = event
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let certificate_arn = certificate_of(event)?;
    let Some(deployment) = deps.deployment.clone() else {
        return Err(Error::fatal(
            "the control function does not know its deployment (APIARY_DEPLOYMENT is unset)",
        ));
    };
    let issued = issued(deps, &deployment, &certificate_arn, &id).await?;
    serde_json::to_value(&issued)
        .map_err(|e| Error::fatal(format!("certificate output does not serialise: {e}")))
}

/// Starts provision for `deployment` if it waits for `certificate_arn`.
pub async fn issued(
    deps: &Deps,
    deployment: &str,
    certificate_arn: &str,
    event_id: &str,
) -> Result<Issued> {
    let store = &deps.store;
    let mut result = Issued {
        deployment: deployment.to_owned(),
        certificate_arn: certificate_arn.to_owned(),
        execution: None,
        detail: String::new(),
    };
    let Some(record) = store.get_deployment(deployment).await? else {
        result.detail = format!("deployment {deployment} has no record: nothing waits");
        return Ok(result);
    };
    let ours = store
        .layer_outputs(deployment)
        .await?
        .get("dns")
        .and_then(|dns| dns.get("certificate_arn"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if ours.as_deref() != Some(certificate_arn) {
        result.detail = format!(
            "certificate {certificate_arn} is not deployment {deployment}'s ({}): ignored",
            ours.as_deref().unwrap_or("none yet")
        );
        return Ok(result);
    }
    // A provision still running when ACM issues (its validation records were written into
    // the account's public zone minutes ago) read the certificate as pending and will end
    // WAITING_FOR_DNS_VALIDATION: queue the next one behind it, as for a deployment that
    // already waits. ACM sends this event once.
    if !matches!(
        record.status,
        DeploymentStatus::WaitingForDnsValidation | DeploymentStatus::Provisioning
    ) {
        result.detail = format!(
            "deployment {deployment} is {}, not waiting for its certificate: nothing to start",
            record.status.as_str()
        );
        return Ok(result);
    }
    let input = json!({"spec": record.spec, "queue": true});
    let name = execution_name(event_id);
    result.execution = deps.runs.start("provision", &name, &input).await?;
    result.detail = match &result.execution {
        Some(execution) => format!(
            "certificate {certificate_arn} is issued: started provision {execution} to apply \
             the HTTPS ingress"
        ),
        None => format!(
            "certificate {certificate_arn} is issued; runs cannot be started from here: the \
             next provision applies the HTTPS ingress"
        ),
    };
    let entry = JournalEntry {
        deployment: deployment.to_owned(),
        execution_id: result.execution.clone().unwrap_or_else(|| name.clone()),
        step: "provision".to_owned(),
        action: "certificate-issued".to_owned(),
        outcome: if result.execution.is_some() {
            "started"
        } else {
            "noted"
        }
        .to_owned(),
        resource_ids: vec![certificate_arn.to_owned()],
        detail: Some(result.detail.clone()),
        at: Utc::now(),
    };
    store.append_journal(&entry).await?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ACM's documented event, as EventBridge delivers it.
    fn available(resource: &str) -> Value {
        json!({
            "version": "0",
            "id": "2f7b1b39-b4a1-4e21-9c6b-1a9e0c7d1d11",
            "detail-type": "ACM Certificate Available",
            "source": "aws.acm",
            "account": "123456789012",
            "time": "2026-12-06T03:00:00Z",
            "region": "us-west-2",
            "resources": [resource],
            "detail": {"Action": "ISSUANCE", "CertificateType": "AMAZON_ISSUED",
                       "CommonName": "hh.example.com", "InUse": false}
        })
    }

    #[test]
    fn the_certificate_comes_from_the_events_resources() {
        let arn = "arn:aws:acm:us-west-2:123456789012:certificate/abc";
        assert_eq!(certificate_of(available(arn)).unwrap(), arn);
        let mut other = available(arn);
        other["detail-type"] = json!("ACM Certificate Expired");
        let err = certificate_of(other).unwrap_err();
        assert_eq!(err.name(), apiary_core::ErrorName::InvalidInput);
        let mut none = available(arn);
        none["resources"] = json!([]);
        assert!(
            certificate_of(none)
                .unwrap_err()
                .to_string()
                .contains("names no certificate")
        );
    }

    #[test]
    fn execution_names_are_valid_and_follow_the_event() {
        let name = execution_name("2f7b1b39-b4a1-4e21-9c6b-1a9e0c7d1d11");
        assert_eq!(
            name,
            "certificate-issued-2f7b1b39-b4a1-4e21-9c6b-1a9e0c7d1d11"
        );
        let long = execution_name(&"x/".repeat(100));
        assert!(long.len() <= 80, "{long}");
        assert!(
            long.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
