//! The Wait state: when it ends.

use serde_json::Value;

use super::Failure;
use super::state::{StateRun, Thread};
use crate::definition::WaitFor;
use crate::error::StatesError;
use crate::path::Env;

pub(crate) fn wait_until(
    wait: &WaitFor,
    input: &Value,
    run: &StateRun<'_>,
    thread: &Thread,
) -> Result<chrono::DateTime<chrono::Utc>, Failure> {
    let now = run.shared.clock.now();
    let context = run.context(None);
    let env = Env {
        input,
        context: &context,
        vars: &thread.scope,
    };
    let after = |seconds: f64| now + chrono::Duration::microseconds((seconds * 1e6) as i64);
    match wait {
        WaitFor::Seconds(s) => Ok(after(*s)),
        WaitFor::Timestamp(t) => Ok(*t),
        WaitFor::SecondsPath(path) => {
            let value = path
                .evaluate(&env, false)
                .ok_or_else(|| run.fail(super::dataflow::no_results(path), &thread.cursor))?;
            seconds_from_path(path, &value)
                .map(|s| after(s as f64))
                .map_err(|e| run.fail(e, &thread.cursor))
        }
        WaitFor::TimestampPath(path) => {
            let value = path
                .evaluate(&env, false)
                .ok_or_else(|| run.fail(super::dataflow::no_results(path), &thread.cursor))?;
            value.as_str().and_then(crate::timestamp::parse).ok_or_else(|| {
                run.fail(
                    StatesError::runtime(format!(
                        "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {}",
                        crate::json::compact(&value)
                    )),
                    &thread.cursor,
                )
            })
        }
    }
}

/// SecondsPath must resolve to a non-negative integer (AWS reads it as a Java long:
/// `1.5`, `1.0` and `"60"` are refused).
fn seconds_from_path(path: &crate::path::PathExpr, value: &Value) -> Result<u64, StatesError> {
    if let Some(seconds) = value.as_u64() {
        return Ok(seconds);
    }
    let assignment = format!("{} == {}", path.source, crate::json::compact(value));
    Err(StatesError::runtime(if value.as_i64().is_some() {
        format!("The SecondsPath parameter references a negative value: {assignment}")
    } else {
        format!("The SecondsPath parameter cannot be parsed as a long value: {assignment}")
    }))
}
