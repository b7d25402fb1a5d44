//! The bodies of the intrinsic functions, over already evaluated arguments.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Map, Value};

use super::{Call, Failure, Function, RandomSource};

/// AWS caps the string input of Base64Encode, Base64Decode and Hash at this many characters.
const MAX_STRING_INPUT: usize = 10_000;
/// AWS refuses an ArrayRange result longer than this.
const MAX_RANGE_ITEMS: usize = 1_000;

fn invalid(message: impl Into<String>) -> Failure {
    Failure::Invalid(message.into())
}

fn arity(
    call: &Call,
    args: &[Value],
    expected: std::ops::RangeInclusive<usize>,
) -> Result<(), Failure> {
    if expected.contains(&args.len()) {
        Ok(())
    } else {
        let want = if expected.start() == expected.end() {
            expected.start().to_string()
        } else {
            format!("{} to {}", expected.start(), expected.end())
        };
        Err(invalid(format!(
            "{} expects {want} argument(s) but received {}",
            call.name,
            args.len()
        )))
    }
}

fn string_arg<'a>(call: &Call, value: &'a Value, what: &str) -> Result<&'a str, Failure> {
    value
        .as_str()
        .ok_or_else(|| invalid(format!("{} expects a string for {what}", call.name)))
}

fn array_arg<'a>(call: &Call, value: &'a Value, what: &str) -> Result<&'a Vec<Value>, Failure> {
    value
        .as_array()
        .ok_or_else(|| invalid(format!("{} expects an array for {what}", call.name)))
}

fn integer_arg(call: &Call, value: &Value, what: &str) -> Result<i64, Failure> {
    let err = || invalid(format!("{} expects an integer for {what}", call.name));
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(i);
            }
            let f = n.as_f64().ok_or_else(err)?;
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                #[allow(clippy::cast_possible_truncation)]
                return Ok(f as i64);
            }
            Err(err())
        }
        _ => Err(err()),
    }
}

/// A numeric argument of MathAdd or MathRandom. AWS's documentation: "If you specify a
/// non-integer value for one or both the arguments, Step Functions will round it off to
/// the nearest integer." Executions recorded on AWS round each argument as Java's
/// `Math.round` does (half up, towards positive infinity): 1.5 -> 2, -1.5 -> -1.
fn rounded_arg(call: &Call, value: &Value, what: &str) -> Result<i64, Failure> {
    let err = || invalid(format!("{} expects a number for {what}", call.name));
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(i);
            }
            let f = n.as_f64().ok_or_else(err)?;
            let r = (f + 0.5).floor();
            if r.is_finite() && r.abs() < 9.0e18 {
                #[allow(clippy::cast_possible_truncation)]
                return Ok(r as i64);
            }
            Err(err())
        }
        _ => Err(err()),
    }
}

fn capped<'a>(call: &Call, value: &'a Value) -> Result<&'a str, Failure> {
    let s = string_arg(call, value, "its input")?;
    if s.chars().count() > MAX_STRING_INPUT {
        return Err(invalid(format!(
            "{} accepts at most {MAX_STRING_INPUT} characters",
            call.name
        )));
    }
    Ok(s)
}

/// Renders an argument of States.Format the way AWS does (a Java `toString`): strings
/// as they are, arrays as `[a, b]`, objects as `{k=v, k2=v2}` (members rendered the same
/// way, strings unquoted), numbers, booleans and null as JSON.
fn format_value(value: &Value) -> String {
    let mut out = String::new();
    render(value, &mut out);
    out
}

fn render(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push('=');
                render(v, out);
            }
            out.push('}');
        }
        other => out.push_str(&crate::json::compact(other)),
    }
}

fn format(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    if args.is_empty() {
        return Err(invalid("States.Format expects at least 1 argument"));
    }
    let template = string_arg(call, &args[0], "its template")?;
    let mut out = String::new();
    let mut next = 1;
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => out.push(escaped),
                None => out.push('\\'),
            },
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                let value = args.get(next).ok_or_else(|| {
                    invalid("The number of arguments does not match the number of placeholders")
                })?;
                out.push_str(&format_value(value));
                next += 1;
            }
            c => out.push(c),
        }
    }
    if next != args.len() {
        return Err(invalid(
            "The number of arguments does not match the number of placeholders",
        ));
    }
    Ok(Value::String(out))
}

fn hash(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    use sha2::Digest as _;
    let data = capped(call, &args[0])?;
    let algorithm = string_arg(call, &args[1], "the algorithm")?;
    let bytes = data.as_bytes();
    let digest: Vec<u8> = match algorithm {
        "MD5" => {
            use md5::Digest as _;
            md5::Md5::digest(bytes).to_vec()
        }
        "SHA-1" => {
            use sha1::Digest as _;
            sha1::Sha1::digest(bytes).to_vec()
        }
        "SHA-256" => sha2::Sha256::digest(bytes).to_vec(),
        "SHA-384" => sha2::Sha384::digest(bytes).to_vec(),
        "SHA-512" => sha2::Sha512::digest(bytes).to_vec(),
        other => {
            return Err(invalid(format!(
                "'{other}' is not a supported hashing algorithm; use one of MD5, SHA-1, SHA-256, SHA-384, SHA-512"
            )));
        }
    };
    Ok(Value::String(
        digest.iter().map(|b| format!("{b:02x}")).collect(),
    ))
}

fn array_range(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let start = integer_arg(call, &args[0], "the start")?;
    let end = integer_arg(call, &args[1], "the end")?;
    let step = integer_arg(call, &args[2], "the step")?;
    if step == 0 {
        return Err(invalid("States.ArrayRange step must not be 0"));
    }
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i <= end) || (step < 0 && i >= end) {
        if out.len() == MAX_RANGE_ITEMS {
            return Err(invalid(format!(
                "States.ArrayRange can produce at most {MAX_RANGE_ITEMS} items"
            )));
        }
        out.push(Value::from(i));
        i += step;
    }
    Ok(Value::Array(out))
}

fn math_add(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let a = rounded_arg(call, &args[0], "its first argument")?;
    let b = rounded_arg(call, &args[1], "its second argument")?;
    a.checked_add(b)
        .map(Value::from)
        .ok_or_else(|| invalid("States.MathAdd overflowed"))
}

fn math_random(call: &Call, args: &[Value], rng: &dyn RandomSource) -> Result<Value, Failure> {
    let start = rounded_arg(call, &args[0], "the start")?;
    let end = rounded_arg(call, &args[1], "the end")?;
    if end <= start {
        return Err(invalid(
            "States.MathRandom expects the end to be greater than the start",
        ));
    }
    let value = match args.get(2) {
        Some(seed) => {
            let seed = rounded_arg(call, seed, "the seed")?;
            let mut seeded = rand::rngs::StdRng::seed_from_u64(seed.cast_unsigned());
            seeded.random_range(start..end)
        }
        None => {
            let span = (end - start).cast_unsigned();
            start + (rng.next_u64() % span).cast_signed()
        }
    };
    Ok(Value::from(value))
}

fn uuid(rng: &dyn RandomSource) -> Value {
    let bytes = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
    let id = uuid::Builder::from_random_bytes(bytes.to_be_bytes()).into_uuid();
    Value::String(id.to_string())
}

fn json_merge(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let left = args[0]
        .as_object()
        .ok_or_else(|| invalid("States.JsonMerge expects an object for its first argument"))?;
    let right = args[1]
        .as_object()
        .ok_or_else(|| invalid("States.JsonMerge expects an object for its second argument"))?;
    match &args[2] {
        Value::Bool(false) => {}
        Value::Bool(true) => {
            return Err(invalid(
                "States.JsonMerge supports only a shallow merge: its third argument must be false",
            ));
        }
        _ => {
            return Err(invalid(format!(
                "{} expects a boolean for its third argument",
                call.name
            )));
        }
    }
    let mut merged: Map<String, Value> = left.clone();
    for (k, v) in right {
        merged.insert(k.clone(), v.clone());
    }
    Ok(Value::Object(merged))
}

pub(super) fn apply(
    call: &Call,
    args: Vec<Value>,
    rng: &dyn RandomSource,
) -> Result<Value, Failure> {
    match call.function {
        Function::Format => format(call, &args),
        Function::StringToJson => {
            arity(call, &args, 1..=1)?;
            let s = string_arg(call, &args[0], "its argument")?;
            // An empty or blank string parses to null, as on AWS.
            if s.trim().is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_str(s)
                .map_err(|e| invalid(format!("The input '{s}' is not valid JSON: {e}")))
        }
        Function::JsonToString => {
            arity(call, &args, 1..=1)?;
            Ok(Value::String(crate::json::compact(&args[0])))
        }
        Function::Array => Ok(Value::Array(args)),
        Function::ArrayPartition => {
            arity(call, &args, 2..=2)?;
            let array = array_arg(call, &args[0], "its first argument")?;
            let size = integer_arg(call, &args[1], "the chunk size")?;
            let size = usize::try_from(size)
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| {
                    invalid("States.ArrayPartition chunk size must be greater than 0")
                })?;
            Ok(Value::Array(
                array
                    .chunks(size)
                    .map(|chunk| Value::Array(chunk.to_vec()))
                    .collect(),
            ))
        }
        Function::ArrayContains => {
            arity(call, &args, 2..=2)?;
            let array = array_arg(call, &args[0], "its first argument")?;
            Ok(Value::Bool(
                array.iter().any(|v| crate::json::same(v, &args[1])),
            ))
        }
        Function::ArrayRange => {
            arity(call, &args, 3..=3)?;
            array_range(call, &args)
        }
        Function::ArrayGetItem => {
            arity(call, &args, 2..=2)?;
            let array = array_arg(call, &args[0], "its first argument")?;
            let index = integer_arg(call, &args[1], "the index")?;
            usize::try_from(index)
                .ok()
                .and_then(|i| array.get(i))
                .cloned()
                .ok_or_else(|| invalid(format!("The index {index} is out of bounds")))
        }
        Function::ArrayLength => {
            arity(call, &args, 1..=1)?;
            let array = array_arg(call, &args[0], "its argument")?;
            Ok(Value::from(array.len()))
        }
        Function::ArrayUnique => {
            arity(call, &args, 1..=1)?;
            let array = array_arg(call, &args[0], "its argument")?;
            let mut unique: Vec<Value> = Vec::new();
            for item in array {
                if !unique.iter().any(|u| crate::json::same(u, item)) {
                    unique.push(item.clone());
                }
            }
            Ok(Value::Array(unique))
        }
        Function::Base64Encode => {
            arity(call, &args, 1..=1)?;
            let s = capped(call, &args[0])?;
            Ok(Value::String(STANDARD.encode(s.as_bytes())))
        }
        Function::Base64Decode => {
            arity(call, &args, 1..=1)?;
            let s = capped(call, &args[0])?;
            let bytes = STANDARD
                .decode(s.as_bytes())
                .map_err(|_| invalid(format!("The input '{s}' is not valid Base64")))?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| invalid("The decoded value is not valid UTF-8"))
        }
        Function::Hash => {
            arity(call, &args, 2..=2)?;
            hash(call, &args)
        }
        Function::JsonMerge => {
            arity(call, &args, 3..=3)?;
            json_merge(call, &args)
        }
        Function::MathRandom => {
            arity(call, &args, 2..=3)?;
            math_random(call, &args, rng)
        }
        Function::MathAdd => {
            arity(call, &args, 2..=2)?;
            math_add(call, &args)
        }
        Function::StringSplit => {
            arity(call, &args, 2..=2)?;
            let s = string_arg(call, &args[0], "its first argument")?;
            let delimiters = string_arg(call, &args[1], "its delimiter")?;
            if delimiters.is_empty() {
                return Err(invalid("States.StringSplit needs a non-empty delimiter"));
            }
            Ok(Value::Array(
                s.split(|c| delimiters.contains(c))
                    .filter(|part| !part.is_empty())
                    .map(|part| Value::String(part.to_string()))
                    .collect(),
            ))
        }
        Function::Uuid => {
            arity(call, &args, 0..=0)?;
            Ok(uuid(rng))
        }
    }
}
