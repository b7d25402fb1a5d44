//! `apiary status`: what the state table says about one deployment — its status, who
//! holds its lock, the last journal entry of every layer, the alarms handle-alert last saw
//! firing, and the DNS validation records still to be added.
//!
//! Exit codes: 0 the status was read; 1 the table has no record of the deployment; 2
//! refused before reading anything (unreadable or invalid spec, nowhere to read from); 3
//! the environment is not usable (the endpoint, the stack or the table cannot be read).

use std::path::PathBuf;
use std::process::ExitCode;

use apiary_core::aws::{AwsSettings, Env, ProcessEnv};
use apiary_core::naming::Layer;
use apiary_core::outputs::CERTIFICATE_ISSUED;
use apiary_core::spec::DeploymentSpec;
use apiary_core::store::{AlarmRecord, DEFAULT_TABLE, DeploymentRecord, JournalEntry, Lock, Store};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::local_cmd::{EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_REFUSED, demo_spec};

/// The bootstrap stack's logical id of the state table (infra-bootstrap/bootstrap.yaml);
/// stacks made from templates before the table was its own resource call it `StateTable`.
const STATE_TABLE_LOGICAL_IDS: [&str; 2] = ["StateStore", "StateTable"];

#[derive(clap::Args)]
pub struct StatusArgs {
    /// The deployment's name [default: the demo spec's, `demo`]
    #[arg(long, conflicts_with = "spec")]
    deployment: Option<String>,
    /// Take the deployment's name and region from this spec (JSON or parameters map)
    #[arg(long)]
    spec: Option<PathBuf>,
    /// AWS endpoint to read from, e.g. the local emulator (also AWS_ENDPOINT_URL)
    #[arg(long)]
    endpoint: Option<String>,
    /// The state table [default: `apiary`]
    #[arg(long, conflicts_with = "stack")]
    table: Option<String>,
    /// Read the state table of this bootstrap stack (its `StateStore` resource)
    #[arg(long)]
    stack: Option<String>,
    /// AWS region [default: the spec's, else AWS_REGION or the profile's]
    #[arg(long)]
    region: Option<String>,
    /// Print exactly one JSON document on stdout
    #[arg(long)]
    json: bool,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::from(status(args).await))
}

/// Where to read from, decided before any call is made.
struct Target {
    deployment: String,
    region: Option<String>,
    endpoint: Option<String>,
}

fn target(args: &StatusArgs, env: &dyn Env) -> Result<Target, String> {
    let (deployment, spec_region) = match (&args.spec, &args.deployment) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let spec = DeploymentSpec::parse_str(&text).map_err(|errors| {
                let mut message = format!("{}: invalid deployment spec:", path.display());
                for problem in &errors.problems {
                    message.push_str(&format!("\n  - {problem}"));
                }
                message
            })?;
            (spec.name, Some(spec.region))
        }
        (None, Some(name)) => (name.clone(), None),
        (None, None) => {
            let spec = demo_spec();
            (spec.name, Some(spec.region))
        }
    };
    let endpoint = args
        .endpoint
        .clone()
        .or_else(|| env.var("AWS_ENDPOINT_URL"));
    if endpoint.is_none() && args.table.is_none() && args.stack.is_none() {
        return Err(
            "nowhere to read the status from: pass --endpoint URL (or set AWS_ENDPOINT_URL) \
             for the local emulator, or --stack NAME or --table NAME for a deployment on AWS"
                .to_owned(),
        );
    }
    let region = args.region.clone().or(spec_region).or_else(|| {
        // The emulator keeps a table per region: read where `local run` wrote.
        endpoint.as_ref().map(|_| {
            env.var("AWS_REGION")
                .or_else(|| env.var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| demo_spec().region)
        })
    });
    Ok(Target {
        deployment,
        region,
        endpoint,
    })
}

async fn status(args: StatusArgs) -> u8 {
    let target = match target(&args, &ProcessEnv) {
        Ok(target) => target,
        Err(refusal) => {
            eprintln!("{refusal}");
            return EXIT_REFUSED;
        }
    };
    let settings = match &target.endpoint {
        Some(endpoint) => {
            let region = target.region.clone().unwrap_or_default();
            AwsSettings::local(endpoint, &region)
        }
        None => {
            let mut settings = AwsSettings::from_env(&ProcessEnv);
            if target.region.is_some() {
                settings.region = target.region.clone();
            }
            settings
        }
    };
    let config = apiary_core::aws::load(&settings).await;
    let where_ = target
        .endpoint
        .as_deref()
        .map(|e| format!(" at {e}"))
        .unwrap_or_default();

    let table = match (&args.table, &args.stack) {
        (Some(table), _) => table.clone(),
        (None, Some(stack)) => match stack_table(&config, stack).await {
            Ok(table) => table,
            Err(err) => {
                eprintln!("error: {err}");
                return EXIT_ENVIRONMENT;
            }
        },
        (None, None) => DEFAULT_TABLE.to_owned(),
    };
    let store = Store::new(apiary_core::client!(aws_sdk_dynamodb, &config), &table);
    let name = &target.deployment;
    let record = match store.get_deployment(name).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            eprintln!(
                "no deployment named {name} in the state table {table}{where_}: check the name \
                 (--deployment or --spec) and the table (--table or --stack)"
            );
            return EXIT_FAILED;
        }
        Err(err) => {
            eprintln!(
                "error: reading deployment {name} from the state table {table}{where_}: {err}"
            );
            return EXIT_ENVIRONMENT;
        }
    };
    let read = async {
        let lock = store.current_lock(name).await?;
        let journal = store.journal(name).await?;
        let outputs = store.layer_outputs(name).await?;
        let layers = apiary_core::step::assemble_value(outputs)?;
        let alarms = store.alarms(name).await?;
        Ok::<_, apiary_core::Error>((lock, journal, layers, alarms))
    };
    let (lock, journal, layers, alarms) = match read.await {
        Ok(read) => read,
        Err(err) => {
            eprintln!(
                "error: reading deployment {name} from the state table {table}{where_}: {err}"
            );
            return EXIT_ENVIRONMENT;
        }
    };
    let holder_running = match &lock {
        Some(lock) if lock.expires_at > Utc::now() => holder_running(&config, &lock.owner).await,
        _ => None,
    };
    let report = Report {
        table,
        record,
        lock,
        holder_running,
        last: last_per_step(journal),
        dns: dns_state(&layers),
        open_alarms: open_alarms(alarms),
        now: Utc::now(),
    };
    if args.json {
        println!("{}", report.document());
    } else {
        print!("{}", report.render());
    }
    0
}

/// Whether the run holding the lock still runs, asked the way the control function asks
/// before it takes a lock over (Step Functions for an execution, the process table for
/// a local run of this machine). `None`: it cannot be told (another machine's run, a
/// manual owner, or the question failed): the lease decides.
async fn holder_running(config: &aws_config::SdkConfig, owner: &str) -> Option<bool> {
    use control::Runs;
    let answer = if control::is_execution_arn(owner) {
        control::StepFunctionsRuns::new(config)
            .is_running(owner)
            .await
    } else {
        control::LocalRuns::new().is_running(owner).await
    };
    match answer {
        // "Running" is also the answer for what cannot be checked.
        Ok(true) => None,
        Ok(false) => Some(false),
        Err(_) => None,
    }
}

/// The state table of a bootstrap stack: the physical id of its `StateStore` resource
/// (`StateTable` in older stacks).
async fn stack_table(config: &aws_config::SdkConfig, stack: &str) -> Result<String, String> {
    let client = apiary_core::client!(aws_sdk_cloudformation, config);
    let mut last_error = String::new();
    for logical_id in STATE_TABLE_LOGICAL_IDS {
        match client
            .describe_stack_resource()
            .stack_name(stack)
            .logical_resource_id(logical_id)
            .send()
            .await
        {
            Ok(out) => {
                return out
                    .stack_resource_detail
                    .and_then(|d| d.physical_resource_id)
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| format!("stack {stack} has no {logical_id} yet"));
            }
            Err(e) => {
                last_error = format!(
                    "cannot find the state table of stack {stack} (its {} resource): {}",
                    STATE_TABLE_LOGICAL_IDS.join(" or "),
                    aws_sdk_cloudformation::error::DisplayErrorContext(&e)
                );
            }
        }
    }
    Err(last_error)
}

/// The last journal entry of every step: the layers in the order provision builds them,
/// then the other steps (the control steps file under their workflow) by name.
fn last_per_step(journal: Vec<JournalEntry>) -> Vec<JournalEntry> {
    let mut last: Vec<JournalEntry> = Vec::new();
    for entry in journal {
        match last.iter_mut().find(|e| e.step == entry.step) {
            Some(slot) => *slot = entry,
            None => last.push(entry),
        }
    }
    let rank = |step: &str| {
        Layer::ALL
            .iter()
            .position(|l| l.as_str() == step)
            .unwrap_or(Layer::ALL.len())
    };
    last.sort_by(|a, b| {
        rank(&a.step)
            .cmp(&rank(&b.step))
            .then_with(|| a.step.cmp(&b.step))
    });
    last
}

/// The certificate's status and, until it is issued, the validation records to add.
#[derive(Debug, PartialEq)]
struct DnsState {
    domain: Option<String>,
    certificate_status: Option<String>,
    pending: Vec<Value>,
}

fn dns_state(layers: &Value) -> DnsState {
    let dns = &layers["dns"];
    let certificate_status = dns["certificate_status"].as_str().map(str::to_owned);
    let pending = if dns.is_object() && certificate_status.as_deref() != Some(CERTIFICATE_ISSUED) {
        dns["validation_records"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    DnsState {
        domain: dns["domain"].as_str().map(str::to_owned),
        certificate_status,
        pending,
    }
}

struct Report {
    table: String,
    record: DeploymentRecord,
    lock: Option<Lock>,
    /// `Some(false)`: the lock's holder has ended (the next workflow takes the lock over).
    holder_running: Option<bool>,
    last: Vec<JournalEntry>,
    dns: DnsState,
    /// The alarms handle-alert last saw in a state other than OK.
    open_alarms: Vec<AlarmRecord>,
    now: DateTime<Utc>,
}

/// The alarms whose last recorded change left them not OK, oldest first.
fn open_alarms(alarms: Vec<AlarmRecord>) -> Vec<AlarmRecord> {
    let mut open: Vec<AlarmRecord> = alarms.into_iter().filter(|a| a.state != "OK").collect();
    open.sort_by_key(|a| a.changed_at);
    open
}

impl Report {
    /// A lock past its expiry is not held: the next workflow takes it over.
    fn held_lock(&self) -> Option<&Lock> {
        self.lock.as_ref().filter(|l| l.expires_at > self.now)
    }

    fn document(&self) -> Value {
        json!({
            "deployment": self.record.name,
            "table": self.table,
            "region": self.record.spec.region,
            "status": self.record.status.as_str(),
            "created_at": self.record.created_at,
            "updated_at": self.record.updated_at,
            "lock": self.held_lock().map(|l| json!({
                "owner": l.owner,
                "expires_at": l.expires_at,
                "holder_ended": self.holder_running == Some(false),
            })),
            "journal": self.last,
            "open_alarms": self.open_alarms,
            "dns": {
                "domain": self.dns.domain,
                "certificate_status": self.dns.certificate_status,
                "pending_validation_records": self.dns.pending,
            },
        })
    }

    fn render(&self) -> String {
        let record = &self.record;
        let mut text = format!(
            "deployment {} ({}, table {}): {}, updated {}\n",
            record.name,
            record.spec.region,
            self.table,
            record.status.as_str(),
            record.updated_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        match (self.held_lock(), &self.lock) {
            (Some(lock), _) if self.holder_running == Some(false) => text.push_str(&format!(
                "lock: left by {}, which has ended (the next workflow takes it over; its lease \
                 would have run until {})\n",
                lock.owner,
                lock.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
            )),
            (Some(lock), _) => text.push_str(&format!(
                "lock: held by {} until {}\n",
                lock.owner,
                lock.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
            )),
            (None, Some(lock)) => text.push_str(&format!(
                "lock: none held (the lock of {} expired at {})\n",
                lock.owner,
                lock.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
            )),
            (None, None) => text.push_str("lock: none held\n"),
        }
        if self.last.is_empty() {
            text.push_str("journal: empty\n");
        } else {
            text.push_str("last journal entry per layer:\n");
            let width = self.last.iter().map(|e| e.step.len()).max().unwrap_or(0);
            for entry in &self.last {
                text.push_str(&format!(
                    "  {:width$}  {}  {} {}",
                    entry.step,
                    entry.at.format("%Y-%m-%d %H:%M:%S"),
                    entry.action,
                    entry.outcome,
                ));
                if let Some(detail) = &entry.detail {
                    text.push_str(&format!(": {detail}"));
                }
                text.push('\n');
            }
        }
        for alarm in &self.open_alarms {
            text.push_str(&format!(
                "alarm {} is {} since {}: {}\n",
                alarm.name,
                alarm.state,
                alarm.changed_at.format("%Y-%m-%d %H:%M:%S UTC"),
                alarm.summary
            ));
        }
        if !self.dns.pending.is_empty() {
            text.push_str(&format!(
                "pending DNS validation records (certificate {}): add them to the public DNS \
                 of {}\n",
                self.dns
                    .certificate_status
                    .as_deref()
                    .unwrap_or("not issued"),
                self.dns.domain.as_deref().unwrap_or("the domain"),
            ));
            for record in &self.dns.pending {
                let field = |k: &str| record[k].as_str().unwrap_or("?").to_owned();
                text.push_str(&format!(
                    "  {} {} {}\n",
                    field("name"),
                    field("type"),
                    field("value")
                ));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(step: &str, outcome: &str, at: &str) -> JournalEntry {
        JournalEntry {
            deployment: "acme".into(),
            execution_id: "x".into(),
            step: step.into(),
            action: "ensure".into(),
            outcome: outcome.into(),
            resource_ids: Vec::new(),
            detail: None,
            at: at.parse().unwrap(),
        }
    }

    #[test]
    fn keeps_the_last_entry_of_each_step_in_layer_order() {
        let journal = vec![
            entry("provision", "created", "2026-01-01T00:00:00Z"),
            entry("network", "created", "2026-01-01T00:00:02Z"),
            entry("keys", "created", "2026-01-01T00:00:01Z"),
            entry("cluster", "not-ready", "2026-01-01T00:00:03Z"),
            entry("cluster", "ready", "2026-01-01T00:00:04Z"),
            entry("keys", "unchanged", "2026-01-01T00:00:05Z"),
            entry("dns", "failed", "2026-01-01T00:00:06Z"),
            entry("teardown", "created", "2026-01-01T00:00:07Z"),
        ];
        let last = last_per_step(journal);
        let steps: Vec<(&str, &str)> = last
            .iter()
            .map(|e| (e.step.as_str(), e.outcome.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                ("keys", "unchanged"),
                ("network", "created"),
                ("dns", "failed"),
                ("cluster", "ready"),
                ("provision", "created"),
                ("teardown", "created"),
            ]
        );
        assert!(last_per_step(Vec::new()).is_empty());
    }

    #[test]
    fn validation_records_are_pending_until_the_certificate_is_issued() {
        let records =
            json!([{"name": "_x1.hh.example.com.", "type": "CNAME", "value": "_y1.acm."}]);
        let waiting = json!({"dns": {"domain": "hh.example.com",
            "certificate_status": "PENDING_VALIDATION", "validation_records": records}});
        let state = dns_state(&waiting);
        assert_eq!(state.pending, records.as_array().unwrap().clone());
        assert_eq!(
            state.certificate_status.as_deref(),
            Some("PENDING_VALIDATION")
        );

        let issued =
            json!({"dns": {"certificate_status": "ISSUED", "validation_records": records}});
        assert!(dns_state(&issued).pending.is_empty());
        assert!(dns_state(&json!({})).pending.is_empty());
    }

    #[test]
    fn the_report_names_the_lock_holder_and_the_records_to_add() {
        let spec = demo_spec();
        let at: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let record = DeploymentRecord {
            name: spec.name.clone(),
            spec,
            status: apiary_core::store::DeploymentStatus::WaitingForDnsValidation,
            created_at: at,
            updated_at: at,
        };
        let lock = Lock {
            deployment: "demo".into(),
            owner: "provision-demo-1".into(),
            expires_at: "2026-01-01T00:15:00Z".parse().unwrap(),
        };
        let layers = json!({"dns": {"domain": "hh.example.com", "certificate_status":
            "PENDING_VALIDATION", "validation_records": [{"name": "_x1.hh.example.com.",
            "type": "CNAME", "value": "_y1.acm-validations.aws."}]}});
        let mut report = Report {
            table: "apiary".into(),
            record,
            lock: Some(lock),
            holder_running: None,
            last: vec![entry("keys", "created", "2026-01-01T00:00:01Z")],
            dns: dns_state(&layers),
            open_alarms: open_alarms(vec![
                AlarmRecord {
                    name: "apiary-demo-backup-run-failed".into(),
                    state: "ALARM".into(),
                    summary: "a backup failed".into(),
                    changed_at: "2026-01-01T00:01:00Z".parse().unwrap(),
                },
                AlarmRecord {
                    name: "apiary-demo-dp-postgres-cpu".into(),
                    state: "OK".into(),
                    summary: "back to normal".into(),
                    changed_at: "2026-01-01T00:02:00Z".parse().unwrap(),
                },
            ]),
            now: "2026-01-01T00:05:00Z".parse().unwrap(),
        };
        let text = report.render();
        assert!(text.contains("WAITING_FOR_DNS_VALIDATION"), "{text}");
        // An alarm back to OK is closed: only the open one is shown.
        assert!(
            text.contains(
                "alarm apiary-demo-backup-run-failed is ALARM since 2026-01-01 00:01:00 UTC"
            ),
            "{text}"
        );
        assert!(!text.contains("dp-postgres-cpu"), "{text}");
        assert_eq!(
            report.document()["open_alarms"].as_array().unwrap().len(),
            1
        );
        assert!(text.contains("lock: held by provision-demo-1"), "{text}");
        assert!(
            text.contains("keys  2026-01-01 00:00:01  ensure created"),
            "{text}"
        );
        assert!(
            text.contains("_x1.hh.example.com. CNAME _y1.acm-validations.aws."),
            "{text}"
        );
        let document = report.document();
        assert_eq!(document["lock"]["owner"], "provision-demo-1");
        assert_eq!(document["lock"]["holder_ended"], false);
        // A holder that has ended: said so, and that the next run takes the lock.
        report.holder_running = Some(false);
        let text = report.render();
        assert!(
            text.contains("lock: left by provision-demo-1, which has ended"),
            "{text}"
        );
        assert_eq!(report.document()["lock"]["holder_ended"], true);
        report.holder_running = None;
        assert_eq!(document["journal"][0]["step"], "keys");
        assert_eq!(
            document["dns"]["pending_validation_records"][0]["type"],
            "CNAME"
        );

        report.now = "2026-01-01T00:20:00Z".parse().unwrap();
        assert!(report.render().contains("lock: none held (the lock of"));
        assert!(report.document()["lock"].is_null());
    }

    #[test]
    fn refuses_without_anywhere_to_read_from() {
        struct NoEnv;
        impl Env for NoEnv {
            fn var(&self, _: &str) -> Option<String> {
                None
            }
        }
        let args = |table: Option<&str>| StatusArgs {
            deployment: Some("acme".into()),
            spec: None,
            endpoint: None,
            table: table.map(str::to_owned),
            stack: None,
            region: None,
            json: false,
        };
        let refusal = target(&args(None), &NoEnv).err().unwrap();
        assert!(refusal.contains("--endpoint"), "{refusal}");
        assert!(refusal.contains("--stack"), "{refusal}");
        let aws = target(&args(Some("apiary-state")), &NoEnv).unwrap();
        assert_eq!(aws.deployment, "acme");
        assert_eq!(aws.region, None);
    }
}
