//! The verge distribution file: parse YAML text, validate it, and produce the runtime model: the process
//! settings of its `server` section and the distribution a reload swaps, as two types.
//!
//! Pure: no tokio, no pingora, no wasmtime, no name lookups, no machine queries. `from_file` is the only
//! I/O. Errors name the file, line, column and key path of every problem found.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod arn;
pub mod bounds;
pub mod cidr;
pub mod error;
pub mod locate;
pub mod managed;
pub mod model;
pub mod pattern;
pub mod raw;
pub mod response_headers;
pub mod validate;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use model::{Config, Distribution, ServerSettings};

use locate::LocationIndex;

/// Parses and validates a distribution file; `file` is only used to label errors.
pub fn parse_str(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    parse_with(file, text, validate::validate)
}

/// Parses a file for its `server` section alone (a fleet node's own settings: its distribution comes
/// from deployments); the rest of the file, if any, is type-checked but not validated.
pub fn parse_server_str(file: &str, text: &str) -> Result<ServerSettings, ConfigErrors> {
    parse_with(file, text, |raw, p| Some(validate::validate_server(raw.server, p)))
}

/// Reads a file for its `server` section alone (`parse_server_str`).
pub fn server_from_file(path: &Path) -> Result<ServerSettings, ConfigErrors> {
    let (label, text) = read(path)?;
    parse_server_str(&label, &text)
}

fn parse_with<T>(
    file: &str,
    text: &str,
    validate: impl FnOnce(raw::RawFile, &mut validate::Problems) -> Option<T>,
) -> Result<T, ConfigErrors> {
    if let Err(crossed) = bounds::check(text) {
        let bounds::Crossed { line, column, reason } = crossed;
        return Err(ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            line,
            column,
            key: String::new(),
            reason,
        }]));
    }
    let raw: raw::RawFile = serde_yaml::from_str(text).map_err(|e| yaml_error(file, text, &e))?;
    let mut problems = validate::Problems::default();
    match validate(raw, &mut problems) {
        Some(d) if problems.0.is_empty() => Ok(d),
        _ => {
            let index = LocationIndex::build(text);
            let mut errors: Vec<ConfigError> = problems
                .0
                .into_iter()
                .map(|(key, reason)| {
                    let pos = index.find(&key).unwrap_or(locate::Position { line: 1, column: 1 });
                    ConfigError { file: file.to_string(), line: pos.line, column: pos.column, key, reason }
                })
                .collect();
            // Report in file order, as a reader scans the file.
            errors.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(errors))
        }
    }
}

/// Reads and parses a distribution file.
pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
    let (label, text) = read(path)?;
    parse_str(&label, &text)
}

fn read(path: &Path) -> Result<(String, String), ConfigErrors> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: label.clone(),
            line: 0,
            column: 0,
            key: String::new(),
            reason: format!("cannot read file: {e}"),
        }])
    })?;
    Ok((label, text))
}

/// serde_yaml errors read `path.to.key: reason at line L column C`; split that into our fields.
fn yaml_error(file: &str, text: &str, e: &serde_yaml::Error) -> ConfigErrors {
    let message = e.to_string();
    let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
    let without_position = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => &message,
    };
    let (key, reason) = match without_position.split_once(": ") {
        Some((k, r)) if !k.contains(' ') => (k.to_string(), r.to_string()),
        _ => (String::new(), without_position.to_string()),
    };
    let _ = text;
    ConfigErrors(vec![ConfigError { file: file.to_string(), line, column, key, reason }])
}
