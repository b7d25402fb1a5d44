//! Stand-ins for the functions the bootstrap stack creates and the network step places
//! in the VPC. Locally the functions run in-process and the stack does not exist, so the
//! emulator would have no function to attach: before a run, the runner creates one under
//! each name the stack would give it (an empty package the emulator never runs), so that
//! attaching, reading back and detaching are real calls. On AWS the network function
//! reads the same names from its environment ([`network::IN_VPC_FUNCTIONS_ENV`]).

use std::collections::HashMap;
use std::io::Write;

use anyhow::Context;
use apiary_core::naming::Names;
use aws_config::SdkConfig;

/// The functions the stack runs inside the VPC, by crate name.
pub const IN_VPC: &[&str] = &["workloads", "verifier"];

/// The role every stand-in names: the emulator requires an existing one.
const ROLE: &str = "apiary-local-stand-in";

/// The names the stack gives the in-VPC functions of `deployment`
/// (`apiary-<deployment>-workloads`), read as the network function's `main` reads them.
pub fn in_vpc_functions(deployment: &str) -> Vec<String> {
    let names = Names::new(deployment);
    let list: Vec<String> = IN_VPC.iter().map(|f| names.resource(f)).collect();
    let list = list.join(",");
    let env: HashMap<&str, &str> = [(network::IN_VPC_FUNCTIONS_ENV, list.as_str())].into();
    network::in_vpc_functions(&env)
}

/// Creates the stand-ins of `deployment` that do not exist yet.
pub async fn ensure(config: &SdkConfig, deployment: &str) -> anyhow::Result<()> {
    let lambda = aws_sdk_lambda::Client::new(config);
    let mut role = None;
    for name in in_vpc_functions(deployment) {
        let found = lambda
            .get_function_configuration()
            .function_name(&name)
            .send()
            .await;
        match found {
            Ok(_) => continue,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("looking up {name}")));
            }
        }
        let role_arn = match &role {
            Some(arn) => arn,
            None => role.insert(ensure_role(config).await?),
        };
        let created = lambda
            .create_function()
            .function_name(&name)
            .description("Local stand-in: the function runs in-process; this is where it is placed")
            .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
            .handler("bootstrap")
            .role(role_arn.as_str())
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(package()?.into())
                    .build(),
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            // Another run of the same deployment made it first.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_conflict_exception()) => {}
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("creating the stand-in function {name}"))
                );
            }
        }
    }
    Ok(())
}

/// The stand-ins' role, made once per emulator (runs in parallel may race to make it).
async fn ensure_role(config: &SdkConfig) -> anyhow::Result<String> {
    let iam = aws_sdk_iam::Client::new(config);
    let existing = || async {
        let found = iam.get_role().role_name(ROLE).send().await.ok()?;
        found.role().map(|r| r.arn().to_owned())
    };
    if let Some(arn) = existing().await {
        return Ok(arn);
    }
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]
    });
    match iam
        .create_role()
        .role_name(ROLE)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
    {
        Ok(created) => created
            .role()
            .map(|r| r.arn().to_owned())
            .context("CreateRole returned no role"),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_entity_already_exists_exception()) =>
        {
            existing()
                .await
                .context("the stand-ins' role exists but cannot be read")
        }
        Err(e) => Err(anyhow::Error::new(e).context("creating the stand-in functions' role")),
    }
}

/// A package holding one `bootstrap` that is never run.
fn package() -> anyhow::Result<Vec<u8>> {
    let mut buffer = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buffer);
    zip.start_file("bootstrap", zip::write::SimpleFileOptions::default())?;
    zip.write_all(
        b"#!/bin/sh\necho 'a local stand-in: the function runs in-process' >&2\nexit 1\n",
    )?;
    zip.finish()?;
    Ok(buffer.into_inner())
}
