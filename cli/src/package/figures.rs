//! `apiary bench functions`: each function as it is packaged (the release build
//! `apiary package` makes with cargo-lambda), its zip's size and its cold start: the time
//! from starting its `bootstrap` to its first request for an invocation, made to a
//! Lambda Runtime API served here on a loopback port, with the environment Lambda gives
//! a function (its own variables from the template, placeholders where the template
//! computes them). The median of several starts is reported.
//!
//! What this does not measure: Lambda's own part of a cold start (fetching and unpacking
//! the zip, starting the micro-VM), which depends on the zip's size but is not visible
//! here; and the first invocation's own work (the SDK's first connection and TLS
//! handshake), which comes after the first request.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::TcpListener;

/// The request a runtime makes when it is ready for its first invocation.
const NEXT: &str = "GET /2018-06-01/runtime/invocation/next ";
/// The request a runtime makes when its initialisation failed.
const INIT_ERROR: &str = "/2018-06-01/runtime/init/error";

/// One function's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub function: String,
    pub zip_bytes: usize,
    /// Each start's time to its first request, in the order measured.
    pub starts: Vec<Duration>,
}

impl Figure {
    /// The median start.
    pub fn init(&self) -> Duration {
        let mut sorted = self.starts.clone();
        sorted.sort();
        match sorted.len() {
            0 => Duration::ZERO,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
        }
    }

    /// `<crate-name> zip <bytes> init <milliseconds>`: the line the benchmark prints.
    pub fn render(&self) -> String {
        format!(
            "{} zip {} init {:.2}",
            self.function,
            self.zip_bytes,
            self.init().as_secs_f64() * 1000.0
        )
    }
}

/// The environment variables of each function's Lambda in the template (the first
/// Lambda that runs `functions/<name>.zip`), each value that the template computes
/// (`Ref`, `Fn::GetAtt`, `Fn::Sub`…) replaced by a placeholder of the same shape a
/// function might check: an ARN for names ending in `_ARN`, else a plain name.
pub fn template_environments(
    template: &str,
) -> anyhow::Result<BTreeMap<String, Vec<(String, String)>>> {
    let template: Value =
        serde_yaml::from_str(template).context("the template is not plain YAML")?;
    let mut out = BTreeMap::new();
    let resources = template["Resources"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for resource in resources.values() {
        if resource["Type"] != "AWS::Lambda::Function" {
            continue;
        }
        let properties = &resource["Properties"];
        let code = properties["Code"].to_string();
        let Some(name) = code
            .split("functions/")
            .nth(1)
            .and_then(|rest| rest.split(".zip").next())
        else {
            continue;
        };
        let variables = properties["Environment"]["Variables"]
            .as_object()
            .map(|vars| {
                vars.iter()
                    .map(|(key, value)| {
                        let value = match value {
                            Value::String(text) => text.clone(),
                            Value::Number(n) => n.to_string(),
                            Value::Bool(b) => b.to_string(),
                            _ if key.ends_with("_ARN") => format!(
                                "arn:aws:iam::123456789012:role/apiary-bench-{}",
                                key.to_ascii_lowercase()
                            ),
                            _ => format!("apiary-bench-{}", key.to_ascii_lowercase()),
                        };
                        (key.clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.entry(name.to_owned()).or_insert(variables);
    }
    Ok(out)
}

/// Builds every function of the template as `apiary package` does for x86_64 (or takes
/// `prebuilt/<function>/bootstrap`), then measures each: its zip (the bootstrap alone;
/// the verifier's package also carries its CA bundle) and `runs` cold starts.
pub async fn measure(
    root: &Path,
    env: &dyn apiary_core::aws::Env,
    prebuilt: Option<&Path>,
    runs: usize,
    log: &mut dyn std::io::Write,
) -> anyhow::Result<Vec<Figure>> {
    let plan = super::plan::plan(root)?;
    let environments = template_environments(&plan.template)?;
    let arch = super::Arch::X86_64;
    let dir = match prebuilt {
        Some(dir) => dir.to_path_buf(),
        None => {
            let (command, lambda_dir) =
                super::build_command(root, env, &super::Rustup, arch, &plan.functions)?;
            writeln!(log, "building: {}", command.display())?;
            log.flush()?;
            command.run().await?;
            lambda_dir
        }
    };
    let bootstraps = super::read_bootstraps(&dir, &plan.functions, arch)?;
    let mut figures = Vec::new();
    for (function, binary) in &bootstraps {
        let zip = super::archive::bootstrap_zip(binary)?;
        let variables = environments.get(function).cloned().unwrap_or_default();
        let path = dir.join(function).join("bootstrap");
        let starts = cold_starts(&path, function, &variables, runs).await?;
        let figure = Figure {
            function: function.clone(),
            zip_bytes: zip.len(),
            starts,
        };
        writeln!(
            log,
            "{function}: bootstrap {} bytes, zip {} bytes, starts {:?}",
            binary.len(),
            zip.len(),
            figure.starts
        )?;
        figures.push(figure);
    }
    Ok(figures)
}

/// The variables Lambda sets for every function, for a runtime API at `api`.
fn lambda_environment(function: &str, api: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.to_owned()),
        (
            "AWS_LAMBDA_FUNCTION_NAME",
            format!("apiary-bench-{function}"),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/apiary-bench-{function}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/12/07/[$LATEST]bench".to_owned(),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_REGION", "us-west-2".to_owned()),
        ("AWS_DEFAULT_REGION", "us-west-2".to_owned()),
        ("AWS_ACCESS_KEY_ID", "ASIABENCHBENCHBENCH0".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "bench".to_owned()),
        ("AWS_SESSION_TOKEN", "bench".to_owned()),
        ("_HANDLER", "bootstrap".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Starts `binary` `runs` times, each with a runtime API of its own, and returns each
/// start's time to its first request for an invocation.
pub async fn cold_starts(
    binary: &Path,
    function: &str,
    variables: &[(String, String)],
    runs: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut starts = Vec::with_capacity(runs);
    for _ in 0..runs {
        starts.push(cold_start(binary, function, variables).await?);
    }
    Ok(starts)
}

/// One start: process start to its first request, which is then left unanswered and the
/// process killed.
async fn cold_start(
    binary: &Path,
    function: &str,
    variables: &[(String, String)],
) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("a loopback port for the runtime API")?;
    let api = listener.local_addr()?.to_string();
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .envs(lambda_environment(function, &api))
        // The template's own (CloudFormation refuses Lambda's reserved names there).
        .envs(variables.iter().map(|(k, v)| (k, v)))
        .current_dir(binary.parent().unwrap_or(Path::new(".")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let first = tokio::select! {
        first = tokio::time::timeout(Duration::from_secs(10), first_request(&listener)) => first,
        status = child.wait() => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            bail!(
                "{function} exited ({}) before asking for an invocation: {}",
                status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                stderr.lines().last().unwrap_or("")
            );
        }
    };
    let _ = child.kill().await;
    let (line, at, body) = match first {
        Ok(request) => request?,
        Err(_) => bail!("{function} asked for no invocation within 10 s"),
    };
    if line.starts_with(NEXT) {
        Ok(at - started)
    } else if line.contains(INIT_ERROR) {
        bail!("{function} reported an initialisation error: {body}")
    } else {
        bail!("{function}'s first request was not for an invocation: {line}")
    }
}

/// The first request on the first connection: its request line, when its head was
/// read, and its body (for an error report).
async fn first_request(listener: &TcpListener) -> anyhow::Result<(String, Instant, String)> {
    let (stream, _) = listener.accept().await.context("accepting the runtime")?;
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if reader.read(&mut byte).await? == 0 {
            bail!("the runtime closed the connection mid-request");
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            bail!("a request head of more than 64 KiB");
        }
    }
    let at = Instant::now();
    let head = String::from_utf8_lossy(&head).into_owned();
    let line = head.lines().next().unwrap_or("").to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0_u8; length.min(64 * 1024)];
    if !body.is_empty() {
        let _ = tokio::time::timeout(Duration::from_secs(1), reader.read_exact(&mut body)).await;
    }
    Ok((line, at, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(starts_ms: &[u64]) -> Figure {
        Figure {
            function: "keys".to_owned(),
            zip_bytes: 3_300_000,
            starts: starts_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
        }
    }

    #[test]
    fn the_line_is_name_zip_bytes_init_milliseconds_of_the_median() {
        assert_eq!(figure(&[9, 5, 6]).render(), "keys zip 3300000 init 6.00");
        assert_eq!(figure(&[4, 8, 5, 6]).render(), "keys zip 3300000 init 5.50");
    }

    #[test]
    fn each_function_gets_its_own_variables_with_placeholders_for_computed_values() {
        let template = r#"
Resources:
  KeysFunction:
    Type: AWS::Lambda::Function
    Properties:
      Code:
        S3Bucket: {"Fn::FindInMap": ["Release", "b", "c"]}
        S3Key: {"Fn::Sub": "${Prefix}functions/keys.zip"}
      Environment:
        Variables:
          STATE_TABLE: {"Ref": "StateTable"}
          ALERTS_TOPIC_ARN: {"Ref": "Topic"}
          LOG_LEVEL: info
  Queue:
    Type: AWS::SQS::Queue
"#;
        let found = template_environments(template).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        let keys = &found["keys"];
        assert!(keys.contains(&("LOG_LEVEL".to_owned(), "info".to_owned())));
        assert!(keys.contains(&(
            "STATE_TABLE".to_owned(),
            "apiary-bench-state_table".to_owned()
        )));
        assert!(
            keys.iter()
                .any(|(k, v)| k == "ALERTS_TOPIC_ARN" && v.starts_with("arn:aws:")),
            "{keys:?}"
        );
    }

    /// A runtime that asks for an invocation is timed; one that reports an init error
    /// or exits is refused with what it said. `sh` stands in for a function.
    #[tokio::test]
    async fn a_start_is_timed_to_the_first_request_and_a_failed_init_is_an_error() {
        let dir = std::env::temp_dir().join(format!("apiary-figures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = |name: &str, body: &str| {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        // Plain sh has no sockets: python3 (which CI has) speaks for the runtime.
        let asks = script(
            "asks",
            r#"exec python3 -c '
import os, socket, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
s = socket.create_connection((host, int(port)))
s.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nhost: x\r\n\r\n")
time.sleep(30)'"#,
        );
        let path = vec![("PATH".to_owned(), std::env::var("PATH").unwrap_or_default())];
        let starts = cold_starts(&asks, "asks", &path, 2).await.unwrap();
        assert_eq!(starts.len(), 2);
        assert!(
            starts
                .iter()
                .all(|d| *d > Duration::ZERO && *d < Duration::from_secs(10))
        );

        let fails = script(
            "fails",
            r#"exec python3 -c '
import os, socket, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
s = socket.create_connection((host, int(port)))
body = b"{\"errorType\":\"Config\",\"errorMessage\":\"no STATE_TABLE\"}"
s.sendall(b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
time.sleep(30)'"#,
        );
        let err = cold_starts(&fails, "fails", &path, 1).await.unwrap_err();
        assert!(err.to_string().contains("no STATE_TABLE"), "{err}");

        let exits = script("exits", "echo 'missing AWS_LAMBDA_RUNTIME_API' >&2; exit 3");
        let err = cold_starts(&exits, "exits", &path, 1).await.unwrap_err();
        assert!(
            err.to_string().contains("before asking for an invocation")
                && err.to_string().contains("missing AWS_LAMBDA_RUNTIME_API"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
