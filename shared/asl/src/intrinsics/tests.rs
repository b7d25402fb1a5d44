use serde_json::{Value, json};

use super::*;
use crate::path::{ContextObject, Scope};

struct Counter(std::sync::atomic::AtomicU64);

impl RandomSource for Counter {
    fn next_u64(&self) -> u64 {
        self.0.fetch_add(7919, std::sync::atomic::Ordering::SeqCst)
    }
}

fn eval_in(expr: &str, input: Value) -> Result<Value, StatesError> {
    let call = Intrinsic::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let context = ContextObject::default();
    let vars = Scope::root();
    vars.assign([("v".to_string(), json!([3, 4]))]);
    let env = Env {
        input: &input,
        context: &context,
        vars: &vars,
    };
    call.evaluate(&env, &Counter(0.into()))
}

fn eval(expr: &str) -> Value {
    eval_in(
        expr,
        json!({"a": "x", "n": 3, "arr": [1, 2, 2, 3], "obj": {"k": 1}}),
    )
    .unwrap()
}

fn failure(expr: &str) -> StatesError {
    eval_in(expr, json!({"s": "abc", "arr": [1, 2, 3]})).unwrap_err()
}

#[test]
fn format_fills_placeholders_and_honours_escapes() {
    assert_eq!(
        eval("States.Format('Hello, {}! n={}', $.a, $.n)"),
        json!("Hello, x! n=3")
    );
    assert_eq!(
        eval(r"States.Format('literal \{\} and {}', 'x')"),
        json!("literal {} and x")
    );
    assert_eq!(eval(r"States.Format('it\'s {}', true)"), json!("it's true"));
    assert_eq!(eval("States.Format('{}', $.obj)"), json!("{k=1}"));
    assert_eq!(eval("States.Format('{}', null)"), json!("null"));
    assert_eq!(
        failure("States.Format('{} {}', 1)").error,
        "States.IntrinsicFailure"
    );
}

#[test]
fn json_conversions() {
    assert_eq!(
        eval(r#"States.StringToJson('{"a":[1]}')"#),
        json!({"a": [1]})
    );
    assert_eq!(eval("States.JsonToString($.obj)"), json!(r#"{"k":1}"#));
    assert_eq!(
        failure("States.StringToJson('{nope')").error,
        "States.IntrinsicFailure"
    );
}

#[test]
fn array_functions() {
    assert_eq!(
        eval("States.Array(1, 'two', $.n, $v)"),
        json!([1, "two", 3, [3, 4]])
    );
    assert_eq!(
        eval("States.ArrayPartition($.arr, 3)"),
        json!([[1, 2, 2], [3]])
    );
    assert_eq!(eval("States.ArrayContains($.arr, 2)"), json!(true));
    assert_eq!(eval("States.ArrayContains($.arr, 9)"), json!(false));
    assert_eq!(eval("States.ArrayRange(1, 9, 2)"), json!([1, 3, 5, 7, 9]));
    assert_eq!(eval("States.ArrayRange(5, 1, -2)"), json!([5, 3, 1]));
    assert_eq!(eval("States.ArrayGetItem($.arr, 3)"), json!(3));
    assert_eq!(eval("States.ArrayLength($.arr)"), json!(4));
    assert_eq!(eval("States.ArrayUnique($.arr)"), json!([1, 2, 3]));
    assert_eq!(
        failure("States.ArrayPartition($.arr, 0)").error,
        "States.IntrinsicFailure"
    );
    assert_eq!(
        failure("States.ArrayRange(1, 2, 0)").error,
        "States.IntrinsicFailure"
    );
    assert_eq!(
        failure("States.ArrayRange(0, 1000, 1)").error,
        "States.IntrinsicFailure"
    );
    assert_eq!(
        failure("States.ArrayGetItem($.arr, 3)").error,
        "States.IntrinsicFailure"
    );
    assert_eq!(
        failure("States.ArrayLength($.s)").error,
        "States.IntrinsicFailure"
    );
}

#[test]
fn encoding_and_hashing() {
    assert_eq!(
        eval("States.Base64Encode('Data to encode')"),
        json!("RGF0YSB0byBlbmNvZGU=")
    );
    assert_eq!(
        eval("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')"),
        json!("Data to encode")
    );
    assert_eq!(
        eval("States.Hash('input data', 'SHA-256')"),
        json!("b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3")
    );
    assert_eq!(
        eval("States.Hash('input data', 'SHA-1')"),
        json!("aaff4a450a104cd177d28d18d74485e8cae074b7")
    );
    assert_eq!(
        eval("States.Hash('input data', 'MD5')"),
        json!("812f45842bc6d66ee14572ce20db8e86")
    );
    assert_eq!(
        eval("States.Hash('input data', 'SHA-384')")
            .as_str()
            .unwrap()
            .len(),
        96
    );
    assert_eq!(
        eval("States.Hash('input data', 'SHA-512')")
            .as_str()
            .unwrap()
            .len(),
        128
    );
    assert_eq!(
        failure("States.Hash($.s, 'SHA256')").error,
        "States.IntrinsicFailure"
    );
    assert_eq!(
        failure("States.Base64Decode('not base64!!!')").error,
        "States.IntrinsicFailure"
    );
    let long = "a".repeat(10_001);
    let err = eval_in("States.Base64Encode($.s)", json!({"s": long})).unwrap_err();
    assert_eq!(err.error, "States.IntrinsicFailure");
}

#[test]
fn merge_math_split_uuid() {
    assert_eq!(
        eval(r#"States.JsonMerge($.obj, States.StringToJson('{"j":2}'), false)"#),
        json!({"k": 1, "j": 2})
    );
    assert_eq!(
        failure("States.JsonMerge($.arr, $.arr, false)").error,
        "States.IntrinsicFailure"
    );
    assert_eq!(eval("States.MathAdd($.n, -5)"), json!(-2));
    assert_eq!(eval("States.MathAdd(1.5, 1)"), json!(3));
    assert_eq!(
        failure("States.MathAdd('1', 1)").error,
        "States.IntrinsicFailure"
    );
    let r = eval("States.MathRandom(10, 20)").as_i64().unwrap();
    assert!((10..20).contains(&r));
    assert_eq!(
        eval("States.MathRandom(1, 1000, 42)"),
        eval("States.MathRandom(1, 1000, 42)")
    );
    assert_eq!(
        eval("States.StringSplit('a.b+c,,d', '.+,')"),
        json!(["a", "b", "c", "d"])
    );
    assert_eq!(
        failure("States.StringSplit($.s, '')").error,
        "States.IntrinsicFailure"
    );
    let id = eval("States.UUID()");
    assert_eq!(
        uuid::Uuid::parse_str(id.as_str().unwrap())
            .unwrap()
            .get_version_num(),
        4
    );
}

#[test]
fn missing_path_argument_is_a_runtime_error_with_aws_wording() {
    let err = eval_in("States.Format('{}', $.nope)", json!({"other": 1})).unwrap_err();
    assert_eq!(err.error, "States.Runtime");
    assert_eq!(
        err.cause.unwrap(),
        r#"The function 'States.Format('{}', $.nope)' had the following error: The JsonPath argument for the field '$.nope' could not be found in the input '{"other":1}'"#
    );
    let err = eval_in("States.Format('{}', $.items[5])", json!({"items": [1, 2]})).unwrap_err();
    assert_eq!(err.error, "States.Runtime");
    assert_eq!(
        eval_in("States.Format('{}', $.nul)", json!({"nul": null})).unwrap(),
        json!("null")
    );
}

#[test]
fn parse_errors() {
    for bad in [
        "States.Nope()",
        "States.Format('x'",
        "States.Format('x') trailing",
        "States.Format('unterminated)",
        "States.Format(bogus)",
        "States.Format($.a[)",
    ] {
        assert!(Intrinsic::parse(bad).is_err(), "{bad}");
    }
    let call = Intrinsic::parse("States.Format('{}', States.Array($.a, 'b,c'))").unwrap();
    assert_eq!(call.call.function, Function::Format);
    assert!(matches!(call.call.args[1], Arg::Call(_)));
}

/// Sums recorded on AWS: each argument is rounded as Java's `Math.round` rounds.
#[test]
fn math_add_rounds_non_integer_arguments_as_aws_does() {
    let add =
        |a: f64, b: f64| eval_in("States.MathAdd($.a, $.b)", json!({"a": a, "b": b})).unwrap();
    assert_eq!(add(1.49, 1.5), json!(3));
    assert_eq!(add(1.5, 1.51), json!(4));
    assert_eq!(add(-1.49, -1.5), json!(-2));
    assert_eq!(add(-1.5, -1.51), json!(-3));
    assert_eq!(add(0.5, 0.0), json!(1));
    assert_eq!(add(2.5, 0.0), json!(3));
    assert_eq!(add(-2.5, 0.0), json!(-2));
    assert_eq!(eval("States.MathAdd(1.49, 0)"), json!(1));
}

#[test]
fn math_random_rounds_non_integer_bounds() {
    for _ in 0..20 {
        let r = eval_in(
            "States.MathRandom($.a, $.b)",
            json!({"a": 12.5, "b": 44.51}),
        )
        .unwrap()
        .as_i64()
        .unwrap();
        assert!((13..45).contains(&r), "{r}");
    }
    let seeded = eval("States.MathRandom(1.4, 3.6, 7.2)").as_i64().unwrap();
    assert!((1..4).contains(&seeded));
    assert_eq!(
        failure("States.MathRandom('a', 3)").error,
        "States.IntrinsicFailure"
    );
}

#[test]
fn string_to_json_of_empty_or_blank_strings_is_null() {
    assert_eq!(eval("States.StringToJson('')"), Value::Null);
    assert_eq!(eval("States.StringToJson('   ')"), Value::Null);
    assert_eq!(
        eval_in("States.StringToJson($.s)", json!({"s": "\n\t "})).unwrap(),
        Value::Null
    );
    assert_eq!(eval("States.StringToJson(' 12 ')"), json!(12));
}

#[test]
fn format_renders_objects_and_arrays_as_aws_does() {
    let input = json!({"o": {"Arg1": 1, "Arg2": [], "s": "x", "n": null, "in": {"b": true}},
        "a": ["x", 1, 2.5, {"k": "v"}, [true]]});
    assert_eq!(
        eval_in("States.Format('{}', $.o)", input.clone()).unwrap(),
        json!("{Arg1=1, Arg2=[], s=x, n=null, in={b=true}}")
    );
    assert_eq!(
        eval_in("States.Format('v: {}', $.a)", input.clone()).unwrap(),
        json!("v: [x, 1, 2.5, {k=v}, [true]]")
    );
    assert_eq!(
        eval_in("States.Format('{}', States.Array('a', 'b'))", input).unwrap(),
        json!("[a, b]")
    );
}

fn eval_with_context(expr: &str) -> Value {
    let call = Intrinsic::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let context = ContextObject::new(vec![
        (
            "Execution",
            std::sync::Arc::new(json!({"Name": "run-1", "Input": {"k": "v", "n": [1, 2]}})),
        ),
        ("State", std::sync::Arc::new(json!({"Name": "S"}))),
    ]);
    let vars = Scope::root();
    let input = json!({"a": 1});
    let env = Env {
        input: &input,
        context: &context,
        vars: &vars,
    };
    call.evaluate(&env, &Counter(0.into())).unwrap()
}

#[test]
fn context_paths_are_arguments_also_when_nested() {
    assert_eq!(
        eval_with_context("States.Format('{} in {}', $$.State.Name, $$.Execution.Name)"),
        json!("S in run-1")
    );
    assert_eq!(
        eval_with_context(
            "States.ArrayGetItem(States.Array($$.State.Name, $$.Execution.Input.k), 1)"
        ),
        json!("v")
    );
    assert_eq!(
        eval_with_context("States.ArrayLength($$.Execution.Input.n)"),
        json!(2)
    );
    assert_eq!(
        eval_with_context("States.JsonToString($$.Execution.Input)"),
        json!(r#"{"k":"v","n":[1,2]}"#)
    );
    assert_eq!(
        eval_with_context("States.Format('{}', $$['Execution']['Name'])"),
        json!("run-1")
    );
    assert_eq!(
        eval_with_context("States.MathAdd(States.ArrayLength($$.Execution.Input.n),$.a)"),
        json!(3)
    );
}
