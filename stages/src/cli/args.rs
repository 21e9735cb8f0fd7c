//! Value parsers shared by the subcommands' clap definitions.
//!
//! Each returns a message that clap prints after the value as typed:
//! `error: invalid value 'x' for '--flag <N>': <message>`.

use std::time::Duration;

use clap::builder::TypedValueParser;
use demandflow_stages::provider::Api;

/// The API names, for `--api`'s possible values (and clap's suggestions).
pub(crate) fn api_names() -> [&'static str; 4] {
    Api::ALL.map(Api::as_str)
}

/// `--api NAME`: one of [`api_names`], with did-you-mean on a near miss.
pub(crate) fn api() -> impl TypedValueParser<Value = Api> {
    clap::builder::PossibleValuesParser::new(api_names())
        .try_map(|name: String| name.parse::<Api>())
}

/// A whole number of at least 1.
pub(crate) fn positive<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
    T::Err: std::fmt::Display,
{
    let n: T = text.trim().parse().map_err(|e: T::Err| e.to_string())?;
    if n < T::from(1) {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

/// Milliseconds, zero allowed.
pub(crate) fn millis(text: &str) -> Result<Duration, String> {
    let n: u64 = text
        .trim()
        .parse()
        .map_err(|e| format!("expects milliseconds: {e}"))?;
    Ok(Duration::from_millis(n))
}

/// Milliseconds, at least 1 (a zero timeout would fail every request).
pub(crate) fn positive_millis(text: &str) -> Result<Duration, String> {
    Ok(Duration::from_millis(positive::<u64>(text)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_durations() {
        assert_eq!(positive::<u64>("3"), Ok(3));
        assert!(positive::<u64>("0").unwrap_err().contains("at least 1"));
        assert!(positive::<u64>("ten").is_err());
        assert!(positive::<u32>("-1").is_err());
        assert_eq!(millis("0"), Ok(Duration::ZERO));
        assert_eq!(positive_millis("25"), Ok(Duration::from_millis(25)));
        assert!(positive_millis("0").is_err());
        assert!(millis("soon").unwrap_err().contains("milliseconds"));
    }

    #[test]
    fn api_names_round_trip() {
        for name in api_names() {
            assert_eq!(name.parse::<Api>().map(Api::as_str), Ok(name));
        }
    }
}
