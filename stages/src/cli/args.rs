//! A small command-line parser: `--flag value`, `--flag=value`, switches
//! and positionals, with one-line errors. Hand-written because five
//! subcommands with a handful of flags each do not justify a parser crate.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

/// The parsed command line of one subcommand.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    values: HashMap<&'static str, String>,
    switches: HashSet<&'static str>,
    /// Arguments that are not flags, in order.
    pub(crate) positionals: Vec<String>,
    /// `-h` or `--help` was given.
    pub(crate) help: bool,
}

/// Parses `args` for a subcommand whose flags taking a value are `valued`
/// and whose boolean flags are `switches` (both with their leading `--`).
pub(crate) fn parse(
    args: &[String],
    valued: &[&'static str],
    switches: &[&'static str],
) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "-h" || arg == "--help" {
            parsed.help = true;
            continue;
        }
        if !arg.starts_with('-') || arg == "-" {
            parsed.positionals.push(arg.clone());
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        if let Some(&name) = valued.iter().find(|v| **v == flag) {
            let value = match inline {
                Some(v) => v,
                None => iter
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))?,
            };
            parsed.values.insert(name, value);
        } else if let Some(&name) = switches.iter().find(|s| **s == flag) {
            if inline.is_some() {
                return Err(format!("{name} takes no value"));
            }
            parsed.switches.insert(name);
        } else {
            return Err(format!("unknown flag `{arg}`"));
        }
    }
    Ok(parsed)
}

impl Parsed {
    /// Whether switch `name` was given.
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.switches.contains(name)
    }

    /// The raw value of `name`, if given.
    pub(crate) fn raw(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of `name` parsed as `T`, if given.
    pub(crate) fn opt<T: FromStr>(&self, name: &str, what: &str) -> Result<Option<T>, String> {
        match self.raw(name) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| format!("{name} expects {what}, got `{text}`")),
        }
    }

    /// The value of `name` parsed as `T`, or `default`.
    pub(crate) fn get<T: FromStr>(&self, name: &str, what: &str, default: T) -> Result<T, String> {
        Ok(self.opt(name, what)?.unwrap_or(default))
    }

    /// Fails when positionals were given to a subcommand that takes none.
    pub(crate) fn no_positionals(&self) -> Result<(), String> {
        match self.positionals.first() {
            Some(p) => Err(format!("unexpected argument `{p}`")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn both_value_forms_switches_and_positionals() {
        let p = parse(
            &args(&["--events", "10", "--shape=chain3", "--json", "x"]),
            &["--events", "--shape"],
            &["--json"],
        )
        .unwrap();
        assert_eq!(p.get::<u64>("--events", "a number", 0).unwrap(), 10);
        assert_eq!(p.raw("--shape"), Some("chain3"));
        assert!(p.flag("--json"));
        assert_eq!(p.positionals, vec!["x".to_owned()]);
        assert!(p.no_positionals().is_err());
    }

    #[test]
    fn errors_name_the_flag() {
        let e = parse(&args(&["--events"]), &["--events"], &[]).unwrap_err();
        assert!(e.contains("--events"), "{e}");
        let e = parse(&args(&["--fast"]), &[], &[]).unwrap_err();
        assert!(e.contains("--fast"), "{e}");
        let e = parse(&args(&["--json=1"]), &[], &["--json"]).unwrap_err();
        assert!(e.contains("--json"), "{e}");
        let p = parse(&args(&["--events", "ten"]), &["--events"], &[]).unwrap();
        let e = p.get::<u64>("--events", "a number", 0).unwrap_err();
        assert!(e.contains("ten"), "{e}");
    }

    #[test]
    fn help_is_recognised_anywhere() {
        assert!(
            parse(&args(&["--json", "-h"]), &[], &["--json"])
                .unwrap()
                .help
        );
        assert!(parse(&args(&["--help"]), &[], &[]).unwrap().help);
    }
}
