//! Every end-to-end test, in one binary (see Cargo.toml for why). A new test file is a
//! new `mod` line here; `every_test_file_is_compiled` fails when one is missing.

mod alerts;
mod backup;
mod bootstrap;
mod bootstrap_stack;
mod chaos;
mod clients;
mod control;
mod dns;
mod drift;
mod escalation;
mod fuzz;
mod iam;
mod in_vpc;
mod launch;
mod network;
mod operate;
mod package;
mod phone_home;
mod provision;
mod publish;
mod scale_pools;
mod state_table;
mod storage;
mod store;
mod teardown;
mod upgrade;

/// The modules above, as written; checked against the files on disk.
const MODULES: &str = include_str!("main.rs");

#[test]
fn every_test_file_is_compiled() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let declared: std::collections::BTreeSet<String> = MODULES
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .map(str::to_owned)
        .collect();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(dir).expect("tests/ is readable") {
        let path = entry.expect("a directory entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && stem != "main" && !declared.contains(stem)
        {
            missing.push(path.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "test files not declared in tests/main.rs (they would never run): {missing:?}"
    );
    assert!(
        declared.len() >= 10,
        "the module list was not read: {declared:?}"
    );
}
