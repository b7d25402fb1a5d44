//! The building blocks of a workflow: a [`Task`] with the one Retry policy, a bounded
//! [`Poll`] loop and a Parallel, chained into a [`Flow`] in which each piece continues
//! to the next one.

use apiary_core::ErrorName;
use serde_json::{Map, Value, json};

use crate::function::{Function, retry_policy};

/// The first state of every locked workflow's failure path (see [`crate::locked`]).
pub const FAILURE_PATH: &str = "RecordFailure";
/// Where Validate keeps the deployment's name; every later Task sends it.
pub const DEPLOYMENT_NAME: &str = "$.deployment.name";
/// Where a caught error is kept for the failure path: `{"Error": ..., "Cause": ...}`.
pub const FAILURE: &str = "$.failure";

/// One Task state: a function, its Parameters, what it keeps of its result.
#[derive(Debug, Clone)]
pub struct Task {
    name: String,
    function: Function,
    comment: Option<String>,
    parameters: Map<String, Value>,
    result_selector: Option<Value>,
    result_path: Value,
    catch: Vec<Value>,
}

impl Task {
    /// A Task with these Parameters whose result is dropped (`ResultPath: null`).
    pub fn new(name: &str, function: Function, parameters: Value) -> Self {
        let Value::Object(parameters) = parameters else {
            panic!("{name}: Parameters must be an object");
        };
        Task {
            name: name.to_owned(),
            function,
            comment: None,
            parameters,
            result_selector: None,
            result_path: Value::Null,
            catch: Vec::new(),
        }
    }

    /// A step of the kit: `{"action", "deployment", "execution_id"}`; the function loads
    /// the spec and the earlier layers' outputs from the state table itself.
    pub fn step(name: &str, function: Function, action: &str) -> Self {
        Task::new(
            name,
            function,
            json!({
                "action": action,
                "deployment.$": DEPLOYMENT_NAME,
                "execution_id.$": "$$.Execution.Id"
            }),
        )
    }

    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// Adds `options` to the Parameters: switches for the step, never resources.
    pub fn options(mut self, options: Value) -> Self {
        self.parameters.insert("options".into(), options);
        self
    }

    /// Keeps `selector` of the result at `path`.
    pub fn keep(mut self, selector: Value, path: &str) -> Self {
        self.result_selector = Some(selector);
        self.result_path = json!(path);
        self
    }

    /// Catches `errors` into `result_path` and goes to `next`; tried before the flow's own
    /// catch-all.
    pub fn catch(mut self, errors: &[&str], result_path: Value, next: &str) -> Self {
        self.catch
            .push(json!({"ErrorEquals": errors, "ResultPath": result_path, "Next": next}));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state; `Next`/`End` is added by whoever places it.
    pub fn state(&self) -> Value {
        let mut state = Map::new();
        state.insert("Type".into(), json!("Task"));
        if let Some(comment) = &self.comment {
            state.insert("Comment".into(), json!(comment));
        }
        state.insert("Resource".into(), json!(self.function.resource()));
        state.insert("Parameters".into(), Value::Object(self.parameters.clone()));
        state.insert(
            "TimeoutSeconds".into(),
            json!(self.function.timeout_seconds()),
        );
        if let Some(selector) = &self.result_selector {
            state.insert("ResultSelector".into(), selector.clone());
        }
        state.insert("ResultPath".into(), self.result_path.clone());
        state.insert("Retry".into(), retry_policy());
        if !self.catch.is_empty() {
            state.insert("Catch".into(), Value::Array(self.catch.clone()));
        }
        Value::Object(state)
    }
}

/// A slow resource: one Task that starts it and returns at once, then a bounded loop that
/// waits (growing intervals) and asks again until it is ready.
#[derive(Debug, Clone, Copy)]
pub struct Poll {
    /// State name prefix and the name of the loop's counter: `Network`.
    pub name: &'static str,
    pub function: Function,
    /// The action that creates what is missing.
    pub ensure: &'static str,
    /// The action each poll sends (an `ensure` that is its own poll, or a read-only status).
    pub status: &'static str,
    /// What it waits for, as the timeout's cause names it: `the EKS cluster`.
    pub what: &'static str,
    /// Seconds to wait before each poll; its length is the number of polls.
    pub schedule: &'static [u64],
}

impl Poll {
    pub fn polls(&self) -> usize {
        self.schedule.len()
    }

    pub fn wait_seconds(&self) -> u64 {
        self.schedule.iter().sum()
    }

    fn keep_ready(&self, task: Task) -> Task {
        task.keep(
            json!({"ready.$": "$.ready"}),
            &format!("$.results.{}", self.name),
        )
    }
}

/// The three Pass states every workflow starts with, in order: `Defaults` pairs the
/// input with the fields it may leave out (`defaults`), `Options` merges the two (the
/// input wins), and `Init` shapes the state the first step sees (`init`, read from
/// `$.merged`), then goes to `next`.
pub fn start_states(
    defaults_comment: &str,
    defaults: Value,
    init_comment: Option<&str>,
    init: Value,
    next: &str,
) -> [(&'static str, Value); 3] {
    let mut init_state = Map::new();
    init_state.insert("Type".into(), json!("Pass"));
    if let Some(comment) = init_comment {
        init_state.insert("Comment".into(), json!(comment));
    }
    init_state.insert("Parameters".into(), init);
    init_state.insert("Next".into(), json!(next));
    [
        (
            "Defaults",
            json!({
                "Type": "Pass",
                "Comment": defaults_comment,
                "Parameters": {"defaults": defaults, "input.$": "$"},
                "Next": "Options"
            }),
        ),
        (
            "Options",
            json!({
                "Type": "Pass",
                "Parameters": {"merged.$": "States.JsonMerge($.defaults, $.input, false)"},
                "Next": "Init"
            }),
        ),
        ("Init", Value::Object(init_state)),
    ]
}

/// "12 minutes", "2 hours": a bound as the console's reader says it.
pub fn duration(seconds: u64) -> String {
    match seconds {
        3600 => "1 hour".into(),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

/// The two states every bounded loop shares: `<name>Wait` counts the round in
/// `$.polls.<name>.n` and takes the next wait from the schedule, `<name>Sleep` waits it.
pub(crate) fn wait_states(name: &str, schedule: &[u64], next: &str) -> [(String, Value); 2] {
    let schedule: Vec<String> = schedule.iter().map(u64::to_string).collect();
    let counter = format!("$.polls.{name}");
    [
        (
            format!("{name}Wait"),
            json!({
                "Type": "Pass",
                "Comment": "Counts this round and takes its wait (seconds) from the growing schedule",
                "Parameters": {
                    "n.$": format!("States.MathAdd({counter}.n, 1)"),
                    "seconds.$": format!(
                        "States.ArrayGetItem(States.Array({}), {counter}.n)",
                        schedule.join(", ")
                    )
                },
                "ResultPath": counter,
                "Next": format!("{name}Sleep")
            }),
        ),
        (
            format!("{name}Sleep"),
            json!({
                "Type": "Wait",
                "SecondsPath": format!("{counter}.seconds"),
                "Next": next
            }),
        ),
    ]
}

/// Where control leaves a piece for the next one.
#[derive(Debug, Clone)]
enum Exit {
    /// The state's `Next`.
    Next(String),
    /// The `Next` of a Choice rule: a poll loop's "ready" rule.
    Rule {
        state: String,
        rule: usize,
        loop_name: String,
    },
}

/// A chain of states under construction.
#[derive(Debug, Default)]
pub struct Flow {
    states: Map<String, Value>,
    start: Option<String>,
    exits: Vec<Exit>,
    /// Inside a Parallel branch a failure ends the branch and the Parallel's Catch takes
    /// it; at the top level every Task catches into the failure path itself.
    in_branch: bool,
    counters: Vec<String>,
}

impl Flow {
    /// The body of a locked workflow: failures go to [`FAILURE_PATH`].
    pub fn new() -> Self {
        Flow::default()
    }

    /// A Parallel branch.
    pub fn branch() -> Self {
        Flow {
            in_branch: true,
            ..Flow::default()
        }
    }

    /// Adds a Task.
    pub fn task(mut self, task: Task) -> Self {
        let mut state = task.state();
        self.catch_failures(&mut state);
        let name = task.name().to_owned();
        self.add(
            &name,
            vec![(name.clone(), state)],
            vec![Exit::Next(name.clone())],
        );
        self
    }

    /// Adds a bounded poll loop: `X` -> `X Ready?` -> `XWait` -> `XSleep` -> `XPoll` ->
    /// `X Ready?`; after the last poll `XTimedOut` fails with `Apiary.Timeout`.
    pub fn poll(self, poll: Poll) -> Self {
        self.poll_with(poll, None)
    }

    /// [`Flow::poll`] whose two Tasks send `options` (e.g. a day-2 workflow's checked
    /// input: `{"input.$": "$.input"}`).
    pub fn poll_with(mut self, poll: Poll, options: Option<Value>) -> Self {
        let name = poll.name;
        let (ready, timed_out, poll_state) = (
            format!("{name}Ready?"),
            format!("{name}TimedOut"),
            format!("{name}Poll"),
        );
        let bound = duration(poll.wait_seconds());
        let with_options = |task: Task| match &options {
            Some(options) => task.options(options.clone()),
            None => task,
        };
        let ensure = poll.keep_ready(with_options(
            Task::step(name, poll.function, poll.ensure).comment(format!(
                "{}: create what is missing, return at once",
                poll.what
            )),
        ));
        let status = poll.keep_ready(with_options(Task::step(
            &poll_state,
            poll.function,
            poll.status,
        )));
        let mut first = ensure.state();
        self.catch_failures(&mut first);
        first["Next"] = json!(ready);
        let choice = json!({
            "Type": "Choice",
            "Comment": format!(
                "Ready, or wait and poll again: at most {} polls over {bound}, then Apiary.Timeout",
                poll.polls()
            ),
            "Choices": [
                {"Variable": format!("$.results.{name}.ready"), "BooleanEquals": true},
                {
                    "Variable": format!("$.polls.{name}.n"),
                    "NumericGreaterThanEquals": poll.polls(),
                    "Next": timed_out
                }
            ],
            "Default": format!("{name}Wait")
        });
        let mut again = status.state();
        self.catch_failures(&mut again);
        again["Next"] = json!(ready);
        let error = ErrorName::Timeout.as_str();
        let cause = format!(
            "{} did not become ready after {} polls over {bound}; see its last status in the execution history",
            poll.what,
            poll.polls()
        );
        let timeout = if self.in_branch {
            json!({"Type": "Fail", "Error": error, "Cause": cause})
        } else {
            json!({
                "Type": "Pass",
                "Parameters": {"Error": error, "Cause": cause},
                "ResultPath": FAILURE,
                "Next": FAILURE_PATH
            })
        };
        let [wait, sleep] = wait_states(name, poll.schedule, &poll_state);
        let states = vec![
            (name.to_owned(), first),
            (ready.clone(), choice),
            wait,
            sleep,
            (poll_state, again),
            (timed_out, timeout),
        ];
        let exit = Exit::Rule {
            state: ready,
            rule: 0,
            loop_name: name.to_owned(),
        };
        self.counters.push(name.to_owned());
        self.add(name, states, vec![exit]);
        self
    }

    /// Adds a Parallel of `branches`. Every step saves its own output in the state table,
    /// so the branches' results are dropped (`ResultPath: null`) and the state stays small.
    pub fn parallel(self, name: &str, comment: &str, branches: Vec<Flow>) -> Self {
        self.parallel_with(name, comment, branches, json!({}))
    }

    /// [`Flow::parallel`] whose branches also read `reads` (Parameters: `{"input.$":
    /// "$.input"}`), added to what every branch reads.
    pub fn parallel_with(
        mut self,
        name: &str,
        comment: &str,
        branches: Vec<Flow>,
        reads: Value,
    ) -> Self {
        let mut state = Map::new();
        state.insert("Type".into(), json!("Parallel"));
        state.insert("Comment".into(), json!(comment));
        if !self.in_branch {
            // Only what the branches read: the deployment's name, the loop counters and
            // what the caller adds.
            let mut parameters = json!({"deployment.$": "$.deployment", "polls.$": "$.polls"});
            for (key, path) in reads.as_object().into_iter().flatten() {
                parameters[key] = path.clone();
            }
            state.insert("Parameters".into(), parameters);
        } else {
            assert!(
                reads.as_object().is_none_or(|r| r.is_empty()),
                "{name}: a Parallel within a branch reads what its branch has"
            );
        }
        let mut graphs = Vec::new();
        for branch in branches {
            self.counters.extend(branch.counters.iter().cloned());
            graphs.push(branch.into_branch());
        }
        state.insert("Branches".into(), Value::Array(graphs));
        state.insert("ResultPath".into(), Value::Null);
        let mut state = Value::Object(state);
        self.catch_failures(&mut state);
        self.add(
            name,
            vec![(name.to_owned(), state)],
            vec![Exit::Next(name.to_owned())],
        );
        self
    }

    /// The loop counters the flow's poll loops read, for the workflow's Init state.
    pub fn counters(&self) -> &[String] {
        &self.counters
    }

    /// The first state, the states, and connects the open exits to `next`.
    pub(crate) fn finish(mut self, next: &str) -> (String, Map<String, Value>) {
        self.connect(next);
        let start = self
            .start
            .expect("a workflow's body has at least one state");
        (start, self.states)
    }

    /// A Parallel branch: `{"StartAt", "States"}`, its open exits ending the branch.
    fn into_branch(mut self) -> Value {
        let loop_exit = self.exits.iter().find_map(|exit| match exit {
            Exit::Rule { loop_name, .. } => Some(format!("{loop_name}Done")),
            Exit::Next(_) => None,
        });
        if let Some(done) = loop_exit {
            // A Choice rule cannot end a branch: it needs a state to go to.
            self.add(
                &done,
                vec![(done.clone(), json!({"Type": "Succeed"}))],
                Vec::new(),
            );
        }
        for exit in std::mem::take(&mut self.exits) {
            if let Exit::Next(state) = exit {
                self.states[&state]["End"] = json!(true);
            }
        }
        json!({"StartAt": self.start, "States": self.states})
    }

    fn catch_failures(&self, state: &mut Value) {
        if self.in_branch {
            return;
        }
        let catch =
            json!({"ErrorEquals": ["States.ALL"], "ResultPath": FAILURE, "Next": FAILURE_PATH});
        match state.get_mut("Catch").and_then(Value::as_array_mut) {
            Some(catchers) => catchers.push(catch),
            None => state["Catch"] = json!([catch]),
        }
    }

    fn connect(&mut self, entry: &str) {
        for exit in std::mem::take(&mut self.exits) {
            match exit {
                Exit::Next(state) => self.states[&state]["Next"] = json!(entry),
                Exit::Rule { state, rule, .. } => {
                    self.states[&state]["Choices"][rule]["Next"] = json!(entry)
                }
            }
        }
    }

    fn add(&mut self, entry: &str, states: Vec<(String, Value)>, exits: Vec<Exit>) {
        self.connect(entry);
        if self.start.is_none() {
            self.start = Some(entry.to_owned());
        }
        for (name, state) in states {
            let previous = self.states.insert(name.clone(), state);
            assert!(previous.is_none(), "two states are named {name}");
        }
        self.exits.extend(exits);
    }
}

/// Keeps what a poll loop's step reports (a day-2 workflow's: what it skipped, saw and
/// did) in the execution's result at `$.result.<key>`, where its Choice reads `ready`
/// too, instead of the loop's own `$.results.<name>`.
pub(crate) fn keep_in_result(definition: &mut Value, poll: &str, key: &str, selector: Value) {
    let states = definition["States"]
        .as_object_mut()
        .expect("a definition has states");
    let path = format!("$.result.{key}");
    for task in [poll.to_owned(), format!("{poll}Poll")] {
        let state = &mut states[&task];
        assert_eq!(state["Type"], "Task", "{task}");
        state["ResultSelector"] = selector.clone();
        state["ResultPath"] = json!(path);
    }
    let rule = &mut states[&format!("{poll}Ready?")]["Choices"][0];
    assert_eq!(
        rule["BooleanEquals"], true,
        "{poll}: the first rule is the ready one"
    );
    rule["Variable"] = json!(format!("{path}.ready"));
}
