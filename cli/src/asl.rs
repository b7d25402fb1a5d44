//! `apiary asl`: validate and run Amazon States Language definitions with the embedded
//! engine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use apiary_asl::{Clock, ExecutionOptions, HandlerRegistry, StateMachine, placeholders};
use serde_json::{Value, json};

#[derive(clap::Subcommand)]
pub enum AslCommand {
    /// Check definitions as ValidateStateMachineDefinition does; exits non-zero if any
    /// is invalid, printing each problem with its JSON pointer
    Validate {
        /// Definition files (`*.asl.json`)
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Value for a `${NAME}` placeholder (repeatable); others get a Lambda ARN
        /// derived from their name
        #[arg(long = "sub", value_name = "NAME=VALUE")]
        substitutions: Vec<String>,
    },
    /// Run a definition locally and print the execution as one JSON document
    Run {
        /// Definition file
        file: PathBuf,
        /// Execution input: JSON text, or @FILE to read it from a file
        #[arg(long, default_value = "{}")]
        input: String,
        /// Include the events, as GetExecutionHistory returns them
        #[arg(long)]
        history: bool,
        /// Seed for jitter, MathRandom, UUID and generated names
        #[arg(long)]
        seed: Option<u64>,
        /// State machine name (defaults to the file name without extensions)
        #[arg(long)]
        state_machine_name: Option<String>,
        /// Execution name (defaults to a UUID)
        #[arg(long)]
        execution_name: Option<String>,
        /// Value for a `${NAME}` placeholder (repeatable)
        #[arg(long = "sub", value_name = "NAME=VALUE")]
        substitutions: Vec<String>,
        #[arg(long, default_value = "us-east-1")]
        region: String,
        #[arg(long, default_value = "123456789012")]
        account: String,
        /// Run on the real clock, this many workflow seconds per real second,
        /// instead of the virtual clock
        #[arg(long, value_name = "SCALE")]
        real_time: Option<f64>,
    },
}

pub async fn run(command: AslCommand) -> anyhow::Result<ExitCode> {
    match command {
        AslCommand::Validate {
            files,
            substitutions,
        } => validate(&files, &substitutions),
        AslCommand::Run {
            file,
            input,
            history,
            seed,
            state_machine_name,
            execution_name,
            substitutions,
            region,
            account,
            real_time,
        } => {
            let (text, subs) = match read(&file).and_then(|text| {
                let subs = substitution_map(&text, &substitutions, &region, &account)?;
                Ok((text, subs))
            }) {
                Ok(loaded) => loaded,
                Err(err) => {
                    eprintln!("error: {err:#}; nothing was started");
                    return Ok(ExitCode::from(2));
                }
            };
            let machine = match StateMachine::load(&text, &subs) {
                Ok(m) => m,
                Err(errors) => {
                    let problems: Vec<Value> = errors
                        .errors()
                        .iter()
                        .map(|e| json!({"pointer": e.pointer, "message": e.message}))
                        .collect();
                    let doc = json!({"error": "InvalidDefinition", "problems": problems});
                    println!("{}", serde_json::to_string_pretty(&doc)?);
                    return Ok(ExitCode::from(2));
                }
            };
            let input = match parse_input(&input) {
                Ok(input) => input,
                Err(err) => {
                    eprintln!("error: {err:#}; nothing was started");
                    return Ok(ExitCode::from(2));
                }
            };
            let options = ExecutionOptions {
                execution_name,
                state_machine_name: state_machine_name.unwrap_or_else(|| stem(&file)),
                region,
                account,
                seed,
                clock: real_time.map_or_else(Clock::virtual_now, Clock::real_time),
                handlers: HandlerRegistry::new(),
                ..ExecutionOptions::default()
            };
            let result = machine.execute(input, options).await;
            let mut doc = result.describe();
            if history {
                doc["events"] = result.history_json()["events"].take();
            }
            println!("{}", serde_json::to_string_pretty(&doc)?);
            // The document is printed either way; the exit code says how it ended.
            Ok(if result.status == apiary_asl::ExecutionStatus::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn validate(files: &[PathBuf], substitutions: &[String]) -> anyhow::Result<ExitCode> {
    let mut invalid = 0;
    for file in files {
        let text = read(file)?;
        let subs = substitution_map(&text, substitutions, "us-east-1", "123456789012")?;
        match apiary_asl::validate(&text, &subs) {
            Ok(()) => println!("{}: valid", file.display()),
            Err(errors) => {
                invalid += 1;
                for error in errors.errors() {
                    println!("{}: {error}", file.display());
                }
            }
        }
    }
    Ok(if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

fn parse_input(input: &str) -> anyhow::Result<Value> {
    let text = match input.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
        }
        None => input.to_string(),
    };
    serde_json::from_str(&text).context("--input is not valid JSON")
}

/// `keys.asl.json` gives `keys`.
fn stem(file: &Path) -> String {
    let name = file.file_name().map_or_else(
        || "StateMachine".into(),
        |n| n.to_string_lossy().to_string(),
    );
    name.split('.').next().unwrap_or("StateMachine").to_string()
}

/// The given substitutions, plus a Lambda ARN for every function placeholder:
/// `${KeysFunctionArn}` becomes `arn:<partition>:lambda:REGION:ACCOUNT:function:keys`.
fn substitution_map(
    definition: &str,
    given: &[String],
    region: &str,
    account: &str,
) -> anyhow::Result<HashMap<String, String>> {
    let mut subs = HashMap::new();
    for pair in given {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--sub expects NAME=VALUE, got '{pair}'");
        };
        subs.insert(name.to_string(), value.to_string());
    }
    let names = placeholders(definition).unwrap_or_default();
    for name in names {
        if subs.contains_key(&name) {
            continue;
        }
        let Some(function) = apiary_core::aws::function_for_placeholder(&name) else {
            bail!(
                "placeholder ${{{name}}} is not a function ARN: give its value with --sub {name}=VALUE"
            );
        };
        let partition = apiary_core::aws::partition(region);
        let arn = apiary_core::aws::arn(
            partition,
            "lambda",
            region,
            account,
            &format!("function:{function}"),
        );
        subs.insert(name, arn);
    }
    Ok(subs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_default_to_lambda_arns() {
        let subs = substitution_map(
            r#"{"a": "${NetworkFunctionArn}", "b": "${Table}"}"#,
            &["Table=t".into()],
            "eu-west-1",
            "1",
        )
        .unwrap();
        assert_eq!(
            subs["NetworkFunctionArn"],
            "arn:aws:lambda:eu-west-1:1:function:network"
        );
        assert_eq!(subs["Table"], "t");
        let err = substitution_map(r#"{"a": "${Table}"}"#, &[], "us-gov-west-1", "1").unwrap_err();
        assert!(err.to_string().contains("--sub Table=VALUE"), "{err}");
        let subs =
            substitution_map(r#"{"a": "${KeysFunctionArn}"}"#, &[], "cn-north-1", "1").unwrap();
        assert_eq!(
            subs["KeysFunctionArn"],
            "arn:aws-cn:lambda:cn-north-1:1:function:keys"
        );
    }

    #[test]
    fn names_and_inputs() {
        assert_eq!(
            stem(Path::new("statemachines/provision.asl.json")),
            "provision"
        );
        assert_eq!(parse_input("{\"a\":1}").unwrap(), json!({"a": 1}));
        assert!(parse_input("nope").is_err());
    }
}
