//! Timestamps as the States Language writes them (RFC 3339 with an uppercase `T`, and
//! `Z` or a numeric offset), and as Step Functions prints them.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an ASL timestamp such as `2016-03-14T01:59:00Z` or `2016-03-14T01:59:00.123+02:00`.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[10] != b'T' {
        return None;
    }
    if text.ends_with('z') {
        return None;
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Formats a time the way the context object does: `2019-03-26T20:14:13.192Z`.
pub fn format(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_asl_timestamps() {
        assert!(parse("2016-03-14T01:59:00Z").is_some());
        assert!(parse("2016-03-14T01:59:00.123Z").is_some());
        assert!(parse("2016-03-14T01:59:00+01:00").is_some());
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "2016-03-14 01:59:00Z",
            "2016-03-14t01:59:00Z",
            "2016-03-14T01:59:00",
            "2016-03-14",
            "2016-03-14T01:59:00z",
            "yesterday",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn formats_with_milliseconds() {
        let t = parse("2016-03-14T01:59:00.5+01:00").unwrap();
        assert_eq!(format(t), "2016-03-14T00:59:00.500Z");
    }
}
