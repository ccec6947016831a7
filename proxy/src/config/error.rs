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
    let rendered = e.to_string();
    // The first rendered line is `error: line L column C: <message>`; keep the message.
    let first = rendered.lines().next().unwrap_or_default();
    let message = first
        .strip_prefix("error: ")
        .unwrap_or(first)
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("line "))
        .map_or(first, |(_, m)| m)
        .to_string();
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let key = key_path_at(text, line as usize)
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

/// The dotted path of the mapping key on `line` (1-based), found from indentation:
/// `proxy.enable_caching` for an indented `enable_caching:` under `proxy:`.
fn key_path_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let key_of = |l: &str| -> Option<(usize, String)> {
        let indent = l.len() - l.trim_start().len();
        let body = l.trim_start().trim_start_matches("- ");
        let (k, _) = body.split_once(':')?;
        let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
        (!k.is_empty() && !k.starts_with('#') && !k.contains(' ')).then(|| (indent, k.to_string()))
    };
    let (mut indent, key) = key_of(lines.get(line.checked_sub(1)?)?)?;
    let mut path = vec![key];
    for l in lines[..line - 1].iter().rev() {
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        if let Some((i, k)) = key_of(l)
            && i < indent
        {
            path.push(k);
            indent = i;
            if i == 0 {
                break;
            }
        }
    }
    path.reverse();
    Some(path.join("."))
}
