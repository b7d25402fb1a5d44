//! InputPath, ResultPath, OutputPath, error matching and the cause prefix AWS adds to
//! the errors a state raises itself.

use serde_json::{Map, Value};

use crate::definition::{Catcher, PathField, ResultPathField, Retrier};
use crate::error::{StatesError, names};
use crate::jsonpath::Segment;
use crate::path::{Env, PathExpr};

/// `$['a']['b'][0]`, the way AWS spells a path in "No results for path".
fn bracketed(path: &PathExpr) -> String {
    let mut out = String::from("$");
    for segment in &path.path.segments {
        match segment {
            Segment::Child(name) => out.push_str(&format!("['{name}']")),
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            _ => return path.source.clone(),
        }
    }
    out
}

/// The `States.Runtime` error of an InputPath or OutputPath that matches nothing.
pub(crate) fn no_results(path: &PathExpr) -> StatesError {
    StatesError::runtime(format!(
        "Invalid path '{}' : No results for path: {}",
        path.source,
        bracketed(path)
    ))
}

/// Applies InputPath or OutputPath.
pub(crate) fn select(field: &PathField, env: &Env<'_>) -> Result<Value, StatesError> {
    match field {
        PathField::Whole => Ok(env.input.clone()),
        PathField::Empty => Ok(Value::Object(Map::new())),
        PathField::Path(path) => path.evaluate(env, false).ok_or_else(|| no_results(path)),
    }
}

/// Applies ResultPath: puts `result` into `input`.
pub(crate) fn place(
    field: &ResultPathField,
    input: Value,
    result: Value,
) -> Result<Value, StatesError> {
    match field {
        ResultPathField::Replace => Ok(result),
        ResultPathField::Discard => Ok(input),
        ResultPathField::Path(path) => {
            let mut target = input;
            match path.path.set(&mut target, result) {
                Ok(()) => Ok(target),
                Err(_) => Err(StatesError::new(
                    names::RESULT_PATH_MATCH_FAILURE,
                    format!(
                        "Unable to apply ReferencePath {} to input {}",
                        path.source,
                        crate::json::compact(&target)
                    ),
                )),
            }
        }
    }
}

/// Does an ErrorEquals entry match this error?
pub(crate) fn matches(name: &str, error: &StatesError) -> bool {
    let terminal = error.error == names::RUNTIME || error.error == names::DATA_LIMIT_EXCEEDED;
    if name == error.error {
        return true;
    }
    match name {
        names::ALL => !terminal,
        names::TASK_FAILED => !terminal && error.error != names::TIMEOUT,
        _ => false,
    }
}

fn matches_any(list: &[String], error: &StatesError) -> bool {
    !error.is_uncatchable_runtime() && list.iter().any(|n| matches(n, error))
}

/// The first retrier whose ErrorEquals matches.
pub(crate) fn find_retrier(retry: &[Retrier], error: &StatesError) -> Option<usize> {
    retry
        .iter()
        .position(|r| matches_any(&r.error_equals, error))
}

/// The first catcher whose ErrorEquals matches.
pub(crate) fn find_catcher<'a>(catch: &'a [Catcher], error: &StatesError) -> Option<&'a Catcher> {
    catch.iter().find(|c| matches_any(&c.error_equals, error))
}

/// The wait before retry number `attempt` (0 for the first retry), before jitter.
pub(crate) fn backoff(retrier: &Retrier, attempt: u64) -> f64 {
    let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
    let delay = retrier.interval_seconds * retrier.backoff_rate.powi(exponent);
    match retrier.max_delay_seconds {
        Some(max) => delay.min(max),
        None => delay,
    }
}

/// Errors the engine raises while processing a state carry AWS's prefix naming the
/// state and the event that entered it.
pub(crate) fn in_state(state: &str, entered: u64, mut error: StatesError) -> StatesError {
    let prefix = format!(
        "An error occurred while executing the state '{state}' (entered at the event id #{entered})."
    );
    error.cause = Some(match error.cause {
        Some(cause) => format!("{prefix} {cause}"),
        None => prefix,
    });
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn retrier(errors: &[&str]) -> Retrier {
        Retrier {
            error_equals: errors.iter().map(ToString::to_string).collect(),
            interval_seconds: 2.0,
            max_attempts: 3,
            backoff_rate: 3.0,
            max_delay_seconds: Some(10.0),
            jitter_full: false,
        }
    }

    #[test]
    fn wildcards_follow_aws_rules() {
        let timeout = StatesError::new(names::TIMEOUT, "");
        let custom = StatesError::new("Apiary.Retryable", "");
        let runtime = StatesError::runtime("");
        let data = StatesError::new(names::DATA_LIMIT_EXCEEDED, "");
        assert!(matches(names::ALL, &timeout));
        assert!(matches(names::ALL, &custom));
        assert!(!matches(names::ALL, &runtime));
        assert!(!matches(names::ALL, &data));
        assert!(matches(names::DATA_LIMIT_EXCEEDED, &data));
        assert!(matches(names::TASK_FAILED, &custom));
        assert!(!matches(names::TASK_FAILED, &timeout));
        assert!(matches(names::TIMEOUT, &timeout));
        assert!(!matches("Other", &custom));
        assert_eq!(find_retrier(&[retrier(&[names::ALL])], &runtime), None);
    }

    #[test]
    fn first_matching_retrier_wins() {
        let retry = [retrier(&["A"]), retrier(&[names::ALL])];
        assert_eq!(find_retrier(&retry, &StatesError::new("A", "")), Some(0));
        assert_eq!(find_retrier(&retry, &StatesError::new("B", "")), Some(1));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = retrier(&["A"]);
        assert_eq!(backoff(&r, 0), 2.0);
        assert_eq!(backoff(&r, 1), 6.0);
        assert_eq!(backoff(&r, 2), 10.0);
    }

    #[test]
    fn result_path_places_and_discards() {
        let path = PathExpr::parse("$.r.x").unwrap();
        let out = place(&ResultPathField::Path(path), json!({"a": 1}), json!(2)).unwrap();
        assert_eq!(out, json!({"a": 1, "r": {"x": 2}}));
        assert_eq!(
            place(&ResultPathField::Discard, json!(1), json!(2)).unwrap(),
            json!(1)
        );
        assert_eq!(
            place(&ResultPathField::Replace, json!(1), json!(2)).unwrap(),
            json!(2)
        );
        let path = PathExpr::parse("$.a.b").unwrap();
        let err = place(&ResultPathField::Path(path), json!({"a": "s"}), json!(2)).unwrap_err();
        assert_eq!(err.error, names::RESULT_PATH_MATCH_FAILURE);
    }

    #[test]
    fn no_results_uses_bracket_notation() {
        let err = no_results(&PathExpr::parse("$.a.b[0]").unwrap());
        assert_eq!(
            err.cause.unwrap(),
            "Invalid path '$.a.b[0]' : No results for path: $['a']['b'][0]"
        );
    }
}
