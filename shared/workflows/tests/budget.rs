//! Every workflow's longest path, computed from the checked-in file, fits its execution's
//! `TimeoutSeconds` with margin and stays well under AWS's history limit. The analyzer is
//! itself checked against the embedded engine running the longest path.

use crate::common;

use std::path::{Path, PathBuf};

use apiary_asl::ExecutionStatus;
use apiary_workflows::budget::{self, MAX_EVENTS, MAX_TIMEOUT_SHARE, Model};
use apiary_workflows::longest_timeout_seconds;
use apiary_workflows::provision::{LOCK_WAIT, POLLS};
use common::Script;
use serde_json::{Value, json};

fn machines() -> Vec<(PathBuf, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../statemachines");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".asl.json"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
        .into_iter()
        .map(|path| {
            let definition =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            (path, definition)
        })
        .collect()
}

#[test]
fn every_workflow_fits_its_time_and_history_budgets() {
    for (path, definition) in machines() {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let timeout = definition["TimeoutSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{file}: no TimeoutSeconds"));
        let worst = budget::worst_case(&definition).unwrap_or_else(|e| panic!("{file}: {e}"));
        println!("{file}: longest path {worst}; TimeoutSeconds {timeout}");
        assert!(
            worst.seconds <= MAX_TIMEOUT_SHARE * timeout as f64,
            "{file}: the longest path takes {worst}, more than {:.0} % of TimeoutSeconds {timeout}: \
             shorten the poll bounds or raise TimeoutSeconds (and the lock lease with it)",
            MAX_TIMEOUT_SHARE * 100.0
        );
        assert!(
            worst.events < MAX_EVENTS,
            "{file}: the longest path writes {} history events; the budget is {MAX_EVENTS}",
            worst.events
        );
    }
}

#[test]
fn the_lock_lease_must_cover_the_longest_timeout() {
    let longest = machines()
        .iter()
        .filter_map(|(_, d)| d["TimeoutSeconds"].as_u64())
        .max()
        .unwrap();
    assert_eq!(longest_timeout_seconds(), longest);
}

/// The longest path: the lock is busy until the last try, every resource becomes ready
/// at its last poll, and recording READY fails, so the failure path runs after all else.
fn longest_path() -> Script {
    Script {
        polls_until_ready: POLLS.iter().map(|p| (p.name, p.polls())).collect(),
        lock_conflicts: LOCK_WAIT.len(),
        failing: Some(("control", "ready", "Apiary.Fatal")),
        also_failing: None,
        ready_status: None,
        nothing_to_revert: false,
    }
}

#[tokio::test]
async fn the_analyzer_counts_what_the_engine_records_on_the_longest_path() {
    let workflow = common::provision();
    let input = json!({"spec": {"name": "acme"}, "queue": true});
    let (result, _) = common::run(&workflow, input, longest_path()).await;
    assert_eq!(
        result.status,
        ExecutionStatus::Failed,
        "{}",
        result.describe()
    );
    assert_eq!(result.error.as_deref(), Some("Apiary.Fatal"));

    // The engine's handlers answer at once and nothing is retried.
    let instant = Model {
        retries: false,
        attempt_time: false,
    };
    let predicted = budget::analyze(&workflow.definition, instant).unwrap();
    let elapsed = (result.stop_date - result.start_date).num_seconds() as f64;
    assert_eq!(
        elapsed, predicted.seconds,
        "seconds waited on the longest path"
    );
    assert_eq!(
        result.history.len() as u64,
        predicted.events,
        "history events on the longest path"
    );
}
