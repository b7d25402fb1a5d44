//! The bootstrap stack's EventBridge rules, read from the template itself and resolved
//! for one deployment, so that `apiary local event` delivers an event through exactly the
//! patterns and input transformers AWS will use: there is no second copy of a pattern.
//!
//! Only what the rules use is resolved: `Fn::Sub` over the stack's pseudo parameters and
//! `DeploymentName`, `Ref` to a parameter or a resource, `Fn::GetAtt` to a resource.
//!
//! Matching is EventBridge's, never a matcher of ours: [`deliver`] puts each rule on an
//! event bus of its own making, each with a queue as its target, puts the event on the
//! bus and reads which queues received it. (`TestEventPattern` would be the direct call,
//! but the emulator answers it with an empty body, which the SDK reads as "no match".)

use anyhow::{Context, anyhow, bail};
use aws_smithy_types::error::display::DisplayErrorContext;
use serde_json::{Map, Value};

/// What a rule's values are resolved against.
#[derive(Debug, Clone)]
pub struct Stack {
    pub deployment: String,
    pub region: String,
    pub account: String,
}

impl Stack {
    fn partition(&self) -> &'static str {
        apiary_core::aws::partition(&self.region)
    }
}

/// One rule, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The template's logical id: `AlarmStateRule`.
    pub logical_id: String,
    /// The rule's name on AWS: `apiary-demo-alarm-state`.
    pub name: String,
    pub pattern: Value,
    pub targets: Vec<Target>,
}

/// Where a rule sends a matched event.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The target resource's logical id: `HandleAlertStateMachine`, `ControlFunction`.
    pub resource: String,
    /// The workflow when the target is a state machine (`handle-alert`, from its
    /// definition's file name).
    pub workflow: Option<String>,
    /// The input transformer's template, resolved; `None` sends the event as it is.
    pub input_template: Option<String>,
}

impl Target {
    /// The input the target receives for `event` from `rule`, as the input transformer
    /// builds it: `<aws.events.event.json>` is the whole event, `<aws.events.rule-name>`
    /// the rule's name.
    pub fn input(&self, rule: &str, event: &Value) -> anyhow::Result<Value> {
        let Some(template) = &self.input_template else {
            return Ok(event.clone());
        };
        let text = template
            .replace("<aws.events.event.json>", &event.to_string())
            .replace("<aws.events.rule-name>", rule);
        serde_json::from_str(&text)
            .with_context(|| format!("the input template of {rule} does not build JSON: {text}"))
    }
}

/// Every `AWS::Events::Rule` of the template with an event pattern, resolved for `stack`.
pub fn rules(template: &str, stack: &Stack) -> anyhow::Result<Vec<Rule>> {
    let template: Value =
        serde_yaml::from_str(template).context("the bootstrap template is not valid YAML")?;
    let resources = template["Resources"]
        .as_object()
        .ok_or_else(|| anyhow!("the bootstrap template has no Resources"))?;
    let mut found = Vec::new();
    for (id, resource) in resources {
        if resource["Type"] != "AWS::Events::Rule" {
            continue;
        }
        let props = &resource["Properties"];
        let Some(pattern) = props.get("EventPattern") else {
            continue;
        };
        let name =
            resolve(&props["Name"], stack, resources).with_context(|| format!("{id}: Name"))?;
        let name = name
            .as_str()
            .ok_or_else(|| anyhow!("{id}: Name does not resolve to a string"))?
            .to_owned();
        let pattern =
            resolve(pattern, stack, resources).with_context(|| format!("{id}: EventPattern"))?;
        let mut targets = Vec::new();
        for target in props["Targets"].as_array().into_iter().flatten() {
            let resource = target_resource(&target["Arn"])
                .ok_or_else(|| anyhow!("{id}: a target's Arn is not a Ref or GetAtt"))?;
            let workflow = state_machine_file(resources, &resource);
            let input_template = match target.pointer("/InputTransformer/InputTemplate") {
                Some(template) => Some(
                    resolve(template, stack, resources)
                        .with_context(|| format!("{id}: InputTemplate"))?
                        .as_str()
                        .ok_or_else(|| anyhow!("{id}: InputTemplate is not a string"))?
                        .to_owned(),
                ),
                None => None,
            };
            targets.push(Target {
                resource,
                workflow,
                input_template,
            });
        }
        found.push(Rule {
            logical_id: id.clone(),
            name,
            pattern,
            targets,
        });
    }
    Ok(found)
}

/// What one delivered event led to.
#[derive(Debug)]
pub struct Delivered {
    /// The rules that matched, in template order.
    pub rules: Vec<Rule>,
    /// Each started workflow's run, with the rule that started it.
    pub executions: Vec<(String, apiary_asl::ExecutionResult)>,
    /// Matched rules whose target is a function, not a workflow: not run locally.
    pub skipped: Vec<(String, String)>,
}

/// `apiary local event`'s work: the stack's rules for `deployment` (from `template`),
/// the event delivered through them, and each matched rule's workflow run with the input
/// its transformer builds. An event no rule matches is journaled as `unmatched` (on AWS
/// it would reach no workflow).
pub async fn handle_event(
    env: &super::LocalEnv,
    root: &std::path::Path,
    template: &str,
    deployment: &str,
    event: &Value,
    progress: bool,
) -> anyhow::Result<Delivered> {
    let region = env
        .config
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-west-2".into());
    let stack = Stack {
        deployment: deployment.to_owned(),
        region,
        account: super::LOCAL_ACCOUNT.to_owned(),
    };
    let rules = rules(template, &stack)?;
    let matched = deliver(&env.config, deployment, &rules, event).await?;
    let id = event["id"].as_str().unwrap_or("without an id");
    if matched.is_empty() {
        let entry = apiary_core::store::JournalEntry {
            deployment: deployment.to_owned(),
            execution_id: format!("local-event:{id}"),
            step: apiary_core::alerts::WORKFLOW.to_owned(),
            action: "event".to_owned(),
            outcome: "unmatched".to_owned(),
            resource_ids: Vec::new(),
            detail: Some(format!(
                "{} / {} event {id}: no rule of the stack matches it, so on AWS it reaches no \
                 workflow",
                event["source"].as_str().unwrap_or_default(),
                event["detail-type"].as_str().unwrap_or_default(),
            )),
            at: chrono::Utc::now(),
        };
        env.store.append_journal(&entry).await?;
    }
    let mut executions = Vec::new();
    let mut skipped = Vec::new();
    for rule in &matched {
        for target in &rule.targets {
            let Some(workflow) = &target.workflow else {
                skipped.push((rule.name.clone(), target.resource.clone()));
                continue;
            };
            let input = target.input(&rule.name, event)?;
            let machine = env.load(root, workflow)?;
            let name = execution_name(workflow, event);
            let progress = progress.then(|| super::Progress::new(workflow));
            let result = env
                .run(
                    &machine,
                    workflow,
                    deployment,
                    input,
                    name,
                    progress.as_ref().map(super::Progress::listener),
                )
                .await;
            if let Some(progress) = progress {
                let done = result.status == apiary_asl::ExecutionStatus::Succeeded;
                progress.finish(if done { "done" } else { "stopped" });
            }
            executions.push((rule.name.clone(), result));
        }
    }
    Ok(Delivered {
        rules: matched,
        executions,
        skipped,
    })
}

/// An execution name from the event's id (the stack's rules give none; AWS names those
/// executions itself): at most 80 of `[A-Za-z0-9_-]`, unique per run.
fn execution_name(workflow: &str, event: &Value) -> String {
    let id: String = event["id"]
        .as_str()
        .unwrap_or("event")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(36)
        .collect();
    format!(
        "{workflow}-{id}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%3f")
    )
}

/// The bus `apiary local event` delivers on for `deployment`: its own, so that no rule
/// a bootstrap stack made in the emulator (whose targets the emulator cannot call) sees
/// the event, and so that deliveries for two deployments at once never meet (the key and
/// Health rules' patterns name no deployment).
pub fn local_bus(deployment: &str) -> String {
    format!("apiary-local-events-{deployment}")
}

/// Delivers `event` through `rules` and returns the rules that matched,
/// in the order given, on the deployment's own bus ([`local_bus`]). Each rule has its
/// own queue as its only target; the queues are drained first, so only this delivery
/// counts. Two deliveries for the same deployment at once would share the bus and the
/// queues: one `apiary local event` at a time per deployment.
pub async fn deliver(
    config: &aws_config::SdkConfig,
    deployment: &str,
    rules: &[Rule],
    event: &Value,
) -> anyhow::Result<Vec<Rule>> {
    let bus = local_bus(deployment);
    let bus = bus.as_str();
    let events = apiary_core::client!(aws_sdk_eventbridge, config);
    let sqs = apiary_core::client!(aws_sdk_sqs, config);
    let bus_exists = events.describe_event_bus().name(bus).send().await.is_ok();
    if !bus_exists {
        events
            .create_event_bus()
            .name(bus)
            .send()
            .await
            .map_err(|e| anyhow!("CreateEventBus {bus}: {}", DisplayErrorContext(e)))?;
    }
    let mut queues = Vec::new();
    for rule in rules {
        // One queue per rule name (which names the deployment), so deliveries for two
        // deployments at once never read each other's messages.
        let queue_name: String = format!("apiary-local-event-{}", rule.name)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        let queue_url = sqs
            .create_queue()
            .queue_name(&queue_name)
            .send()
            .await
            .map_err(|e| anyhow!("CreateQueue {queue_name}: {}", DisplayErrorContext(e)))?
            .queue_url
            .ok_or_else(|| anyhow!("CreateQueue {queue_name} returned no URL"))?;
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "GetQueueAttributes {queue_name}: {}",
                    DisplayErrorContext(e)
                )
            })?
            .attributes
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .ok_or_else(|| anyhow!("{queue_name} has no ARN"))?;
        drain(&sqs, &queue_url).await?;
        events
            .put_rule()
            .event_bus_name(bus)
            .name(&rule.name)
            .event_pattern(rule.pattern.to_string())
            .send()
            .await
            .map_err(|e| anyhow!("PutRule {}: {}", rule.name, DisplayErrorContext(e)))?;
        events
            .put_targets()
            .event_bus_name(bus)
            .rule(&rule.name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("local")
                    .arn(queue_arn)
                    .build()
                    .map_err(|e| anyhow!("a target for {}: {e}", rule.name))?,
            )
            .send()
            .await
            .map_err(|e| anyhow!("PutTargets {}: {}", rule.name, DisplayErrorContext(e)))?;
        queues.push((rule, queue_url));
    }
    let text = |field: &str| event.get(field).and_then(Value::as_str).map(str::to_owned);
    let mut entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .event_bus_name(bus)
        .set_source(text("source"))
        .set_detail_type(text("detail-type"))
        .detail(
            event
                .get("detail")
                .cloned()
                .unwrap_or(Value::Null)
                .to_string(),
        );
    for resource in event["resources"].as_array().into_iter().flatten() {
        if let Some(resource) = resource.as_str() {
            entry = entry.resources(resource);
        }
    }
    let put = events
        .put_events()
        .entries(entry.build())
        .send()
        .await
        .map_err(|e| anyhow!("PutEvents on {bus}: {}", DisplayErrorContext(e)))?;
    if put.failed_entry_count > 0 {
        let why = put
            .entries()
            .iter()
            .filter_map(|e| e.error_message())
            .collect::<Vec<_>>()
            .join("; ");
        bail!("EventBridge refused the event: {why}");
    }
    let mut matched = Vec::new();
    for (rule, queue_url) in queues {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .map_err(|e| anyhow!("ReceiveMessage {queue_url}: {}", DisplayErrorContext(e)))?;
        if !received.messages().is_empty() {
            matched.push(rule.clone());
        }
        drain(&sqs, &queue_url).await?;
    }
    Ok(matched)
}

async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> anyhow::Result<()> {
    loop {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .map_err(|e| anyhow!("ReceiveMessage {queue_url}: {}", DisplayErrorContext(e)))?;
        if received.messages().is_empty() {
            return Ok(());
        }
        for message in received.messages() {
            if let Some(handle) = message.receipt_handle() {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow!("DeleteMessage {queue_url}: {}", DisplayErrorContext(e))
                    })?;
            }
        }
    }
}

fn target_resource(arn: &Value) -> Option<String> {
    if let Some(name) = arn.get("Ref").and_then(Value::as_str) {
        return Some(name.to_owned());
    }
    arn.get("Fn::GetAtt")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// `handle-alert` for a state machine whose definition is `statemachines/handle-alert.asl.json`.
fn state_machine_file(resources: &Map<String, Value>, id: &str) -> Option<String> {
    let resource = resources.get(id)?;
    if resource["Type"] != "AWS::StepFunctions::StateMachine" {
        return None;
    }
    let key = resource.pointer("/Properties/DefinitionS3Location/Key/Fn::Sub")?;
    let key = key.as_str()?;
    key.rsplit('/')
        .next()?
        .strip_suffix(".asl.json")
        .map(str::to_owned)
}

fn resolve(value: &Value, stack: &Stack, resources: &Map<String, Value>) -> anyhow::Result<Value> {
    Ok(match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("Fn::Sub") => {
            let Some(text) = map["Fn::Sub"].as_str() else {
                bail!("only the one-string form of Fn::Sub is resolved here");
            };
            Value::String(substitute(text, stack)?)
        }
        Value::Object(map) if map.len() == 1 && map.contains_key("Ref") => {
            let name = map["Ref"].as_str().unwrap_or_default();
            Value::String(match name {
                "DeploymentName" => stack.deployment.clone(),
                "AWS::Region" => stack.region.clone(),
                "AWS::AccountId" => stack.account.clone(),
                "AWS::Partition" => stack.partition().to_owned(),
                other if resources.contains_key(other) => other.to_owned(),
                other => bail!("Ref {other} is not resolved locally"),
            })
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                out.insert(key.clone(), resolve(value, stack, resources)?);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| resolve(v, stack, resources))
                .collect::<anyhow::Result<_>>()?,
        ),
        other => other.clone(),
    })
}

fn substitute(text: &str, stack: &Stack) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| anyhow!("unclosed ${{ in {text:?}"))?;
        let name = &after[..end];
        out.push_str(match name {
            "DeploymentName" => &stack.deployment,
            "AWS::Region" => &stack.region,
            "AWS::AccountId" => &stack.account,
            "AWS::Partition" => stack.partition(),
            other => bail!("${{{other}}} in {text:?} is not resolved locally"),
        });
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stack() -> Stack {
        Stack {
            deployment: "demo".into(),
            region: "us-west-2".into(),
            account: "123456789012".into(),
        }
    }

    fn template() -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../infra-bootstrap/bootstrap.yaml"),
        )
        .unwrap()
    }

    #[test]
    fn the_stacks_rules_resolve_for_a_deployment() {
        let rules = rules(&template(), &stack()).unwrap();
        let alarm = rules
            .iter()
            .find(|r| r.logical_id == "AlarmStateRule")
            .unwrap();
        assert_eq!(alarm.name, "apiary-demo-alarm-state");
        assert_eq!(
            alarm.pattern["detail"]["alarmName"],
            json!([{"prefix": "apiary-demo-"}])
        );
        let target = &alarm.targets[0];
        assert_eq!(target.resource, "HandleAlertStateMachine");
        assert_eq!(target.workflow.as_deref(), Some("handle-alert"));
        let event = json!({"id": "1", "source": "aws.cloudwatch"});
        assert_eq!(
            target.input(&alarm.name, &event).unwrap(),
            json!({"deployment": "demo", "rule": "apiary-demo-alarm-state", "event": event})
        );
        let failed = rules
            .iter()
            .find(|r| r.logical_id == "WorkflowFailedRule")
            .unwrap();
        assert_eq!(
            failed.pattern["detail"]["stateMachineArn"][0],
            "arn:aws:states:us-west-2:123456789012:stateMachine:apiary-demo-backup"
        );
        // Every rule that starts handle-alert builds its input the same way.
        for rule in rules.iter().filter(|r| {
            r.targets
                .iter()
                .any(|t| t.workflow.as_deref() == Some("handle-alert"))
        }) {
            let input = rule.targets[0].input(&rule.name, &event).unwrap();
            assert_eq!(input["deployment"], "demo", "{}", rule.logical_id);
            assert_eq!(input["event"], event, "{}", rule.logical_id);
        }
        // The control function's rules have no workflow.
        let ended = rules
            .iter()
            .find(|r| r.logical_id == "ControlRunEndedRule")
            .unwrap();
        assert_eq!(ended.targets[0].workflow, None);
        assert_eq!(ended.targets[0].resource, "ControlFunction");
    }

    #[test]
    fn an_unknown_substitution_is_an_error_not_a_silent_blank() {
        let err = substitute("apiary-${Nope}-x", &stack()).unwrap_err();
        assert!(err.to_string().contains("${Nope}"), "{err}");
    }
}
