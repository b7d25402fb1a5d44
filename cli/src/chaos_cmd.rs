//! `apiary chaos`: provision, every day-2 workflow and teardown through the
//! fault-injecting proxy, once per seed; see `apiary::chaos`.
//!
//! Exit codes: 0 every seed converged with nothing leaked and nothing duplicated; 1 one
//! did not; 2 refused before anything ran; 3 the emulator could not be started or
//! reached.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use apiary::chaos::races::{Expected, RACES, Race, run_race};
use apiary::chaos::{self, Options, SeedResult};
use apiary_core::aws::ProcessEnv;
use apiary_core::local::project_root;
use apiary_proxy::Fault;
use clap::Args;

use crate::local_cmd::{
    EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_REFUSED, emulator_to_empty, endpoint_or_emulator,
    spec_or_demo,
};

#[derive(Args)]
pub struct ChaosArgs {
    /// How many seeds (each a whole run on an emptied emulator)
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    /// The first seed; seeds run from it upwards
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// The share of calls that meet a fault (0 to 1)
    #[arg(long, default_value_t = 0.10)]
    rate: f64,
    /// Resources stay creating for their AWS duration divided by this (on the virtual
    /// clock, so it costs no wall time); 0: ready at once
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Runs of one workflow before the seed counts as not converging
    #[arg(long, default_value_t = 5)]
    max_runs: u32,
    /// The workflows to run, in order (default: provision, each day-2 workflow,
    /// teardown)
    #[arg(long, value_delimiter = ',')]
    workflows: Option<Vec<String>>,
    /// Remove the idempotency token of this operation before the emulator sees it (the
    /// canary: the suite must then report a duplicate); repeatable
    #[arg(long)]
    strip_token: Vec<String>,
    /// Force a fault at a call, as OPERATION:N:FAULT (the N-th call of that operation,
    /// from 1; FAULT one of throttle, 5xx, reset, reset-after, late), to reproduce a
    /// finding; repeatable
    #[arg(long, value_parser = parse_forced)]
    force: Vec<(String, u64, Fault)>,
    /// How long the SDK waits for one attempt before it retries: a late answer costs
    /// this much
    #[arg(long, default_value_t = 1000)]
    attempt_timeout_ms: u64,
    /// Write each failed run's execution and history into this folder
    #[arg(long)]
    history: Option<PathBuf>,
    /// Instead of seeds: kill a provision (a separate `apiary local run` process) right
    /// after each of its writes took effect in turn, run it again, and check that the
    /// dead run did not block it and nothing leaked or was made twice
    #[arg(long)]
    crash: bool,
    /// With --crash: this many kill points, spread evenly over the provision's writes
    /// (default: every write)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    crash_points: Option<u64>,
    /// Instead of the workflows in turn: per seed, two workflows at once on one
    /// deployment (all races, or those named: two-provisions, queued-provision,
    /// teardown-while-provisioning, provision-while-tearing-down)
    #[arg(long, value_delimiter = ',', num_args = 0.., value_name = "RACE")]
    races: Option<Vec<Race>>,
    /// Deployment spec; default: the small demo spec
    #[arg(long)]
    spec: Option<PathBuf>,
    /// An emulator on this machine to use instead of starting one. It is EMPTIED before
    /// each seed (AWS_ENDPOINT_URL is not read, so a kept emulator is never wiped
    /// unasked)
    #[arg(long)]
    endpoint: Option<String>,
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::from(chaos(args).await))
}

async fn chaos(args: ChaosArgs) -> u8 {
    let Some(root) = project_root(&ProcessEnv) else {
        eprintln!(
            "error: cannot find the project (a folder with scripts/emulator); nothing was started"
        );
        return EXIT_REFUSED;
    };
    if !(0.0..=1.0).contains(&args.rate) {
        eprintln!(
            "error: --rate {} is not between 0 and 1; nothing was started",
            args.rate
        );
        return EXIT_REFUSED;
    }
    if !(args.time_scale >= 0.0 && args.time_scale.is_finite()) {
        eprintln!(
            "error: --time-scale {} must be 0 or more; nothing was started",
            args.time_scale
        );
        return EXIT_REFUSED;
    }
    let spec = match spec_or_demo(args.spec.as_deref()) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    let endpoint = match emulator_to_empty(args.endpoint.as_deref()) {
        Ok(endpoint) => endpoint,
        Err(code) => return code,
    };
    if let Some(workflows) = &args.workflows {
        for workflow in workflows {
            if !root
                .join("statemachines")
                .join(format!("{workflow}.asl.json"))
                .is_file()
                || workflow == apiary_workflows::stack_delete::NAME
            {
                eprintln!("error: --workflows: unknown workflow {workflow:?}; nothing was started");
                return EXIT_REFUSED;
            }
        }
    }
    if let Some(dir) = &args.history
        && let Err(err) = std::fs::create_dir_all(dir)
    {
        eprintln!(
            "error: --history {}: {err}; nothing was started",
            dir.display()
        );
        return EXIT_REFUSED;
    }
    let (endpoint, _emulator) = match endpoint_or_emulator(endpoint, &root) {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    let mut options = Options::new(&endpoint, &root, spec);
    options.time_scale = (args.time_scale > 0.0).then_some(args.time_scale);
    options.max_runs = args.max_runs.max(1);
    options.strip_tokens = args.strip_token.clone();
    options.forced = args.force.clone();
    options.attempt_timeout = Duration::from_millis(args.attempt_timeout_ms.max(100));
    options.history = args.history.clone();
    if let Some(workflows) = &args.workflows {
        options.workflows = workflows.clone();
    }

    if args.crash {
        return crash(options, args.crash_points).await;
    }
    if let Some(which) = &args.races {
        let which = if which.is_empty() {
            RACES.to_vec()
        } else {
            which.clone()
        };
        let seeds = args.first_seed..args.first_seed + args.seeds;
        return races(options, seeds, args.rate, &which).await;
    }
    eprintln!(
        "chaos: {} seed(s) from {} at {:.0}% faults, time scale {}, against {endpoint}; workflows: {}",
        args.seeds,
        args.first_seed,
        args.rate * 100.0,
        options
            .time_scale
            .map_or("off".to_owned(), |s| format!("1/{s}")),
        options.workflows.join(", ")
    );
    // The fault-free run: what one of each kind means.
    let reference = match fault_free(&options, "run").await {
        Ok(result) => result,
        Err(code) => return code,
    };
    println!("fault-free run\n{}", reference.render());
    let mut results: Vec<SeedResult> = Vec::new();
    for seed in args.first_seed..args.first_seed + args.seeds {
        match chaos::run_seed(&options, seed, args.rate, Some(&reference.counts)).await {
            Ok(result) => {
                println!("{}", result.render());
                results.push(result);
            }
            Err(err) => {
                eprintln!("error: seed {seed}: {err:#}");
                return EXIT_ENVIRONMENT;
            }
        }
    }
    let unclean: Vec<String> = results
        .iter()
        .filter(|r| !r.clean())
        .map(|r| r.seed.to_string())
        .collect();
    println!(
        "chaos: {} seeds, {} workflow runs ({} re-runs), {} faults; leaked {}, duplicates {}, not converged {}{}",
        results.len(),
        results
            .iter()
            .flat_map(|r| &r.workflows)
            .map(|w| w.runs)
            .sum::<u32>(),
        results
            .iter()
            .flat_map(|r| &r.workflows)
            .map(|w| w.runs.saturating_sub(1))
            .sum::<u32>(),
        results.iter().map(|r| r.proxy.faults_total()).sum::<u64>(),
        results.iter().map(|r| r.judged.leaked.len()).sum::<usize>(),
        results
            .iter()
            .map(|r| r.judged.duplicates.len())
            .sum::<usize>(),
        results.iter().filter(|r| !r.converged()).count(),
        if unclean.is_empty() {
            String::new()
        } else {
            format!(" (seeds {})", unclean.join(", "))
        }
    );
    if unclean.is_empty() { 0 } else { EXIT_FAILED }
}

/// The fault-free run of `options.workflows` (`what`) that the others compare with; when
/// it did not end clean, that is printed and its exit code returned.
async fn fault_free(options: &Options, what: &str) -> Result<SeedResult, u8> {
    match chaos::run_seed(&options.fault_free(), 0, 0.0, None).await {
        Ok(result) if result.clean() => Ok(result),
        Ok(result) => {
            println!("fault-free run\n{}", result.render());
            eprintln!(
                "error: the fault-free {what} did not end clean; the others would compare with it"
            );
            Err(EXIT_FAILED)
        }
        Err(err) => {
            eprintln!("error: the fault-free {what}: {err:#}");
            Err(EXIT_ENVIRONMENT)
        }
    }
}

/// `OPERATION:N:FAULT`.
fn parse_forced(text: &str) -> Result<(String, u64, Fault), String> {
    let mut parts = text.split(':');
    let (Some(operation), Some(n), Some(fault), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("{text:?} is not OPERATION:N:FAULT"));
    };
    let n: u64 = n
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("{n:?} is not a call number (1 or more)"))?;
    let fault = [
        Fault::Throttle,
        Fault::ServerError,
        Fault::Reset,
        Fault::ResetAfter,
        Fault::Late,
    ]
    .into_iter()
    .find(|f| f.as_str() == fault)
    .ok_or_else(|| {
        format!("{fault:?} is not a fault: throttle, 5xx, reset, reset-after or late")
    })?;
    Ok((operation.to_owned(), n, fault))
}

/// `--crash`: a fault-free provision says how many writes it makes; then, for each kill
/// point, a provision killed right after that write and run again.
async fn crash(mut options: Options, points: Option<u64>) -> u8 {
    let binary = match std::env::current_exe() {
        Ok(binary) => binary,
        Err(err) => {
            eprintln!("error: cannot find this program's own file to start runs with: {err}");
            return EXIT_ENVIRONMENT;
        }
    };
    options.workflows = vec!["provision".to_owned()];
    options.time_scale = None;
    let reference = match fault_free(&options, "provision").await {
        Ok(result) => result,
        Err(code) => return code,
    };
    let writes = reference.proxy.writes;
    let expected = reference.counts[0].clone();
    let chosen = kill_points(writes, points);
    if chosen.is_empty() {
        eprintln!(
            "error: no kill point (a provision of {writes} writes, --crash-points {points:?})"
        );
        return EXIT_REFUSED;
    }
    eprintln!(
        "crash: a provision makes {writes} writes; killing it after {} of them, one run each",
        chosen.len()
    );
    let mut unclean = Vec::new();
    for write in chosen.iter().copied() {
        match chaos::crash_at(&options, &binary, "provision", write, &expected).await {
            Ok(result) => {
                println!("{}", result.render());
                if !result.clean() {
                    unclean.push(write.to_string());
                }
            }
            Err(err) => {
                eprintln!("error: killing after write {write}: {err:#}");
                return EXIT_ENVIRONMENT;
            }
        }
    }
    println!(
        "crash: {} kill points over {writes} writes; not clean {}{}",
        chosen.len(),
        unclean.len(),
        if unclean.is_empty() {
            String::new()
        } else {
            format!(" (after writes {})", unclean.join(", "))
        }
    );
    if unclean.is_empty() { 0 } else { EXIT_FAILED }
}

/// `--races`: a fault-free provision and teardown say what each end looks like; then,
/// per seed, each race on an emptied emulator.
async fn races(mut options: Options, seeds: std::ops::Range<u64>, rate: f64, which: &[Race]) -> u8 {
    options.workflows = vec!["provision".to_owned(), "teardown".to_owned()];
    let expected = match fault_free(&options, "provision and teardown").await {
        Ok(result) => Expected {
            provisioned: result.counts[0].clone(),
            torn_down: result.counts[1].clone(),
        },
        Err(code) => return code,
    };
    eprintln!(
        "races: {} per seed, {} seed(s) from {} at {:.0}% faults",
        which
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        seeds.end - seeds.start,
        seeds.start,
        rate * 100.0
    );
    let mut unclean = Vec::new();
    let mut total = 0;
    for seed in seeds {
        for race in which {
            match run_race(&options, *race, seed, rate, &expected).await {
                Ok(result) => {
                    total += 1;
                    println!("{}", result.render());
                    if !result.clean() {
                        unclean.push(format!("{} seed {seed}", race.as_str()));
                    }
                }
                Err(err) => {
                    eprintln!("error: {} seed {seed}: {err:#}", race.as_str());
                    return EXIT_ENVIRONMENT;
                }
            }
        }
    }
    println!(
        "races: {total} run; not clean {}{}",
        unclean.len(),
        if unclean.is_empty() {
            String::new()
        } else {
            format!(" ({})", unclean.join(", "))
        }
    );
    if unclean.is_empty() { 0 } else { EXIT_FAILED }
}

/// Every write from 1 to `writes`, or `points` of them spread evenly.
fn kill_points(writes: u64, points: Option<u64>) -> Vec<u64> {
    match points {
        Some(n) if n < writes => {
            let mut chosen: Vec<u64> = (1..=n)
                .map(|i| (i * writes).div_ceil(n + 1).max(1))
                .collect();
            chosen.dedup();
            chosen
        }
        _ => (1..=writes).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_emulator_on_this_machine_is_emptied() {
        assert_eq!(emulator_to_empty(None), Ok(None));
        assert_eq!(
            emulator_to_empty(Some("http://127.0.0.1:5000")),
            Ok(Some("http://127.0.0.1:5000".to_owned()))
        );
        assert_eq!(
            emulator_to_empty(Some("https://ec2.us-west-2.amazonaws.com")),
            Err(EXIT_REFUSED)
        );
    }

    #[test]
    fn kill_points_are_every_write_or_spread_evenly() {
        assert_eq!(kill_points(5, None), vec![1, 2, 3, 4, 5]);
        assert_eq!(kill_points(5, Some(9)), vec![1, 2, 3, 4, 5]);
        assert_eq!(kill_points(100, Some(3)), vec![25, 50, 75]);
        assert_eq!(kill_points(2, Some(1)), vec![1]);
    }

    #[test]
    fn a_forced_fault_is_read_from_operation_call_and_fault() {
        assert_eq!(
            parse_forced("CreateRouteTable:2:late"),
            Ok(("CreateRouteTable".to_owned(), 2, Fault::Late))
        );
        assert!(
            parse_forced("CreateRouteTable:0:late")
                .unwrap_err()
                .contains("call number")
        );
        assert!(
            parse_forced("CreateRouteTable:1:boom")
                .unwrap_err()
                .contains("not a fault")
        );
        assert!(parse_forced("CreateRouteTable").is_err());
    }
}
