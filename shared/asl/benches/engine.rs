//! Throughput of the engine on a 1,000-item Map whose iterations run a nested Parallel
//! of Choice and Pass states, side by side with moto's Step Functions interpreter.
//!
//!     cargo bench -p apiary-asl --bench engine
//!     AWS_ENDPOINT_URL=http://127.0.0.1:PORT cargo bench -p apiary-asl --bench engine
//!
//! Without AWS_ENDPOINT_URL only the engine's figures are printed. The moto side turns
//! on moto's interpreter (`POST /moto-api/config`), so point it at an emulator of its
//! own, not one that tests share.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use apiary_asl::{ExecutionOptions, ExecutionStatus, StateMachine};
use serde_json::{Value, json};

const ITEMS: usize = 1_000;
const ROUNDS: usize = 5;

fn definition() -> Value {
    let branch = |first: &str| {
        json!({"StartAt": format!("{first}Check"), "States": {
            format!("{first}Check"): {"Type": "Choice", "Choices": [
                {"And": [{"Variable": "$.n", "IsNumeric": true}, {"Variable": "$.n", "NumericGreaterThanEquals": 500}], "Next": format!("{first}High")}
            ], "Default": format!("{first}Low")},
            format!("{first}High"): {"Type": "Pass", "Parameters": {"band": "high", "n.$": "$.n"}, "End": true},
            format!("{first}Low"): {"Type": "Pass", "Parameters": {"band": "low", "n.$": "$.n"}, "End": true}
        }})
    };
    json!({
        "Comment": "1,000-item Map over a nested Parallel of Choice and Pass states",
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Next": "Fan"},
            "Fan": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 40,
                "ItemSelector": {"n.$": "$$.Map.Item.Value"},
                "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Both", "States": {
                    "Both": {"Type": "Parallel", "Branches": [branch("A"), branch("B")], "End": true}}},
                "ResultPath": null, "Next": "Done"},
            "Done": {"Type": "Succeed"}
        }
    })
}

fn input() -> Value {
    json!({"items": (0..ITEMS).collect::<Vec<_>>()})
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn states_entered(events: impl Iterator<Item = String>) -> usize {
    events.filter(|t| t.ends_with("StateEntered")).count()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let machine =
        StateMachine::load(&definition().to_string(), &HashMap::new()).expect("valid definition");

    let mut best = Duration::MAX;
    let mut states = 0;
    for round in 0..ROUNDS {
        let options = ExecutionOptions {
            execution_name: Some(format!("bench-{round}")),
            seed: Some(1),
            ..Default::default()
        };
        let started = Instant::now();
        let result = runtime.block_on(machine.execute(input(), options));
        let took = started.elapsed();
        assert_eq!(
            result.status,
            ExecutionStatus::Succeeded,
            "{:?}",
            result.cause
        );
        states = states_entered(result.history.iter().map(|e| e.event_type.clone()));
        best = best.min(took);
    }
    let ours = states as f64 / best.as_secs_f64();
    println!(
        "engine: {states} states in {:.1} ms (best of {ROUNDS}): {ours:.0} states/s",
        best.as_secs_f64() * 1e3
    );
    match peak_rss_kib() {
        Some(kib) => println!("engine: peak memory (VmHWM) {:.1} MiB", kib as f64 / 1024.0),
        None => println!("engine: peak memory unavailable (no /proc/self/status)"),
    }

    let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") else {
        println!("moto: skipped (set AWS_ENDPOINT_URL to a moto server to compare)");
        return;
    };
    match run_in_moto(&endpoint) {
        Ok((took, moto_states)) => {
            let theirs = moto_states as f64 / took.as_secs_f64();
            println!(
                "moto: {moto_states} states in {:.1} s: {theirs:.0} states/s",
                took.as_secs_f64()
            );
            println!("ratio: {:.0}x moto's speed", ours / theirs);
        }
        Err(e) => println!("moto: failed: {e}"),
    }
}

/// A minimal HTTP/1.1 client: moto needs no signature, so plain JSON posts will do.
fn post(endpoint: &str, path: &str, target: Option<&str>, body: &Value) -> Result<Value, String> {
    let authority = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut stream =
        TcpStream::connect(&authority).map_err(|e| format!("connect {authority}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(120))).ok();
    let body = body.to_string();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: close\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/states/aws4_request, SignedHeaders=host, Signature=0\r\n",
        body.len()
    );
    if let Some(target) = target {
        request.push_str(&format!("X-Amz-Target: AWSStepFunctions.{target}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let (head, payload) = text
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(payload)
    } else {
        payload.to_string()
    };
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with('2') {
        return Err(format!(
            "{}: {payload}",
            head.lines().next().unwrap_or_default()
        ));
    }
    if payload.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&payload).map_err(|e| format!("{e}: {payload}"))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

fn run_in_moto(endpoint: &str) -> Result<(Duration, usize), String> {
    post(
        endpoint,
        "/moto-api/config",
        None,
        &json!({"stepfunctions": {"execute_state_machine": true}}),
    )?;
    let suffix = std::process::id();
    let created = post(
        endpoint,
        "/",
        Some("CreateStateMachine"),
        &json!({
            "name": format!("asl-bench-{suffix}"),
            "definition": definition().to_string(),
            "roleArn": "arn:aws:iam::123456789012:role/bench",
        }),
    )?;
    let machine_arn = created["stateMachineArn"]
        .as_str()
        .ok_or("no stateMachineArn")?
        .to_string();
    let started = Instant::now();
    let execution = post(
        endpoint,
        "/",
        Some("StartExecution"),
        &json!({"stateMachineArn": machine_arn, "name": format!("bench-{suffix}"), "input": input().to_string()}),
    )?;
    let execution_arn = execution["executionArn"]
        .as_str()
        .ok_or("no executionArn")?
        .to_string();
    let deadline = Duration::from_secs(1800);
    loop {
        let described = post(
            endpoint,
            "/",
            Some("DescribeExecution"),
            &json!({"executionArn": execution_arn}),
        )?;
        match described["status"].as_str() {
            Some("RUNNING") if started.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Some("SUCCEEDED") => break,
            other => return Err(format!("execution ended {other:?}: {described}")),
        }
    }
    let took = started.elapsed();
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = json!({"executionArn": execution_arn, "maxResults": 1000});
        if let Some(t) = &token {
            request["nextToken"] = json!(t);
        }
        let page = post(endpoint, "/", Some("GetExecutionHistory"), &request)?;
        events.extend(
            page["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["type"].as_str().map(String::from)),
        );
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    Ok((took, states_entered(events.into_iter())))
}
