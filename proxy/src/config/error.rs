//! Config errors that point at the file, line and key.

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {reason}")]
    Io { file: String, reason: String },
    /// Not YAML, or a key/value the schema does not accept.
    #[error("{file}:{line}:{column}: {key}{message}")]
    Syntax {
        file: String,
        line: u64,
        column: u64,
        key: String,
        message: String,
    },
    /// Parsed, but not usable: every problem found, each naming its key.
    #[error("{file}: invalid config:\n  - {}", problems.join("\n  - "))]
    Invalid { file: String, problems: Vec<String> },
}

pub(super) fn from_yaml_error(e: &serde_saphyr::Error, text: &str, origin: &str) -> ConfigError {
    let message = super::yaml::error_message(e);
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let key = super::yaml::key_path_at(text, line as usize)
        .map(|k| format!("key `{k}`: "))
        .unwrap_or_default();
    ConfigError::Syntax {
        file: origin.to_string(),
        line,
        column,
        key,
        message,
    }
}
