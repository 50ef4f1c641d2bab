//! Command-line flags. Configuration comes from the environment ([`crate::config`]); the command
//! line only answers `--help` and `--version`, so a container's args can never drift from its env.

use std::fmt::Write as _;

use crate::config::VARIABLES;
use crate::config::variables::WhenUnset;

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the proxy.
    Run,
    /// Print usage and every variable with its default.
    Help,
    /// Print the version.
    Version,
    /// An argument this program does not take.
    Unknown(String),
}

/// Interprets the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Command {
    match args.into_iter().next().as_deref() {
        None => Command::Run,
        Some("-h" | "--help") => Command::Help,
        Some("-V" | "--version") => Command::Version,
        Some(other) => Command::Unknown(other.to_owned()),
    }
}

/// `windows-exporter-proxy 0.1.0`.
pub fn version() -> String {
    format!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
}

/// The `--help` text: usage, then every variable with its default.
pub fn help() -> String {
    let mut out = format!(
        "{}\n{}\n\n\
         Usage: {} [--help | --version]\n\n\
         Serves /health and /ready itself and streams /metrics from http(s)://PROXY_HOSTIP:PROXY_PORT/metrics.\n\
         Configured only through the environment:\n\n",
        version(),
        env!("CARGO_PKG_DESCRIPTION"),
        env!("CARGO_PKG_NAME"),
    );
    let width = VARIABLES.iter().map(|v| v.name.len()).max().unwrap_or(0);
    for variable in VARIABLES {
        let default = match variable.default {
            WhenUnset::Value(value) => format!("default {value}"),
            WhenUnset::Required | WhenUnset::Unset => variable.default_text().to_owned(),
        };
        writeln!(out, "  {:width$}  {} ({default})", variable.name, variable.help).expect("writing to a String");
    }
    out.push_str("\nEndpoints: GET|HEAD /health, /ready, /metrics[?query]; GET /proxy/metrics.\n");
    out.push_str("Exit codes: 0 after a clean stop, 1 when the drain was cut short or serving failed, 64 for bad configuration.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_recognised() {
        assert_eq!(parse(Vec::<String>::new()), Command::Run);
        assert_eq!(parse(["--help".to_owned()]), Command::Help);
        assert_eq!(parse(["-V".to_owned()]), Command::Version);
        assert_eq!(parse(["--port".to_owned()]), Command::Unknown("--port".to_owned()));
    }

    #[test]
    fn help_lists_every_variable_with_its_default() {
        let help = help();
        for variable in VARIABLES {
            let line = help.lines().find(|l| l.trim_start().starts_with(variable.name)).expect(variable.name);
            match variable.default {
                WhenUnset::Value(default) => assert!(line.ends_with(&format!("(default {default})")), "{line}"),
                WhenUnset::Required => assert!(line.ends_with("(required)"), "{line}"),
                WhenUnset::Unset => assert!(line.ends_with("(unset)"), "{line}"),
            }
        }
    }
}
