//! `apiary workflows`: write the state machines from their Rust description
//! (`shared/workflows`), or check that the files on disk are what it generates.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use apiary_core::aws::ProcessEnv;
use apiary_core::local::project_root;

#[derive(clap::Subcommand)]
pub enum WorkflowsCommand {
    /// Write statemachines/<name>.asl.json for every workflow and print its worst-case
    /// time and history events
    Generate {
        /// Write nothing; exit 1 naming each file that differs from what would be written
        #[arg(long)]
        check: bool,
    },
}

pub fn run(command: WorkflowsCommand) -> anyhow::Result<ExitCode> {
    let WorkflowsCommand::Generate { check } = command;
    let root = project_root(&ProcessEnv)
        .context("cannot find the Apiary repository; run from inside it or set APIARY_ROOT")?;
    generate(&root, check)
}

fn generate(root: &Path, check: bool) -> anyhow::Result<ExitCode> {
    let dir = root.join("statemachines");
    let mut differs = Vec::new();
    for workflow in apiary_workflows::all() {
        let relative = format!("statemachines/{}", workflow.file_name());
        let path = dir.join(workflow.file_name());
        let text = workflow.render();
        let on_disk = std::fs::read_to_string(&path).ok();
        let budget = apiary_workflows::budget::worst_case(&workflow.definition)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{relative}: cannot bound its longest path"))?;
        let timeout = workflow.timeout_seconds();
        let budget = format!(
            "longest path {budget}; TimeoutSeconds {timeout} ({:.0} % used)",
            100.0 * budget.seconds / timeout as f64
        );
        if on_disk.as_deref() == Some(text.as_str()) {
            println!("{relative}: up to date; {budget}");
        } else if check {
            println!("{relative}: differs from what `apiary workflows generate` writes");
            differs.push(relative);
        } else {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("{relative}: written; {budget}");
        }
    }
    if differs.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} differ{}: change shared/workflows, then run `apiary workflows generate`",
            differs.join(", "),
            if differs.len() == 1 { "s" } else { "" }
        );
        Ok(ExitCode::FAILURE)
    }
}
