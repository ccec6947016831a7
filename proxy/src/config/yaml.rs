//! Pointing at YAML text: serde-saphyr error messages without their snippet, and the dotted key
//! path of a line (from indentation), so config and CR errors can say `line 12: proxy.cache_ttl`.
//! Block-style YAML only (what people write by hand); flow mappings get no key path.

/// The message of a serde-saphyr error, without the `line L column C:` prefix and the source
/// snippet (callers print their own location).
pub(crate) fn error_message(e: &serde_saphyr::Error) -> String {
    let rendered = e.without_snippet().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let message = first
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("line "))
        .map_or(first, |(_, m)| m);
    // Some messages end with their own ` at line L, column C`: the caller prints the location
    // (shifted for documents cut out of a file), so drop it.
    let trimmed = message.rsplit_once(" at line ").filter(|(_, tail)| {
        tail.split_once(", column ").is_some_and(|(l, c)| {
            !l.is_empty()
                && !c.is_empty()
                && l.bytes().all(|b| b.is_ascii_digit())
                && c.bytes().all(|b| b.is_ascii_digit())
        })
    });
    trimmed.map_or(message, |(m, _)| m).to_string()
}

/// `line L column C: key `a.b`: <message>` for an error parsing `text`, the line shifted by
/// `line_offset` (for a document cut out of a larger file).
pub(crate) fn located_message(e: &serde_saphyr::Error, text: &str, line_offset: u64) -> String {
    let message = error_message(e);
    match e.location() {
        Some(l) => {
            let key = key_path_at(text, l.line() as usize)
                .map(|k| format!("key `{k}`: "))
                .unwrap_or_default();
            format!(
                "line {} column {}: {key}{message}",
                l.line() + line_offset,
                l.column()
            )
        }
        None => message,
    }
}

/// The mapping key a line starts with, and the column it starts at (after any `- `).
fn key_of(line: &str) -> Option<(usize, &str)> {
    let mut indent = line.len() - line.trim_start().len();
    let mut body = &line[indent..];
    // `- key: v` (a mapping inside a sequence item) and `- - key: v`.
    while let Some(rest) = body.strip_prefix("- ") {
        let rest_trimmed = rest.trim_start();
        indent += body.len() - rest_trimmed.len();
        body = rest_trimmed;
    }
    let (key, after) = match body.chars().next()? {
        q @ ('"' | '\'') => {
            let end = body[1..].find(q)? + 1;
            (&body[1..end], &body[end + 1..])
        }
        '#' | '{' | '[' | '-' | '|' | '>' => return None,
        _ => {
            let end = body.find(": ").or_else(|| {
                let trimmed = body.trim_end();
                trimmed.strip_suffix(':').map(str::len)
            })?;
            let key = &body[..end];
            if key.contains(' ') {
                return None;
            }
            (key, &body[end..])
        }
    };
    let after = after.strip_prefix(':')?;
    let ends = after.is_empty() || after.starts_with([' ', '\t', '\r', '\n']);
    (ends && !key.is_empty()).then_some((indent, key))
}

/// The dotted path of the mapping key on `line` (1-based), found from indentation:
/// `proxy.enable_caching` for an indented `enable_caching:` under `proxy:`. Sequence indices
/// are not counted (`backends.groups.members`).
pub(crate) fn key_path_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut indent, key) = key_of(lines.get(line.checked_sub(1)?)?)?;
    let mut path = vec![key];
    for l in lines[..line - 1].iter().rev() {
        if indent == 0 {
            break;
        }
        if let Some((i, k)) = key_of(l)
            && i < indent
        {
            path.push(k);
            indent = i;
        }
    }
    path.reverse();
    Some(path.join("."))
}

/// The first line (1-based) holding the key at `path` (`spec.remoteWrite.metricRelabelings[0].x`;
/// indices are ignored).
pub(crate) fn line_of_key_path(text: &str, path: &str) -> Option<usize> {
    let wanted: String = {
        let mut out = String::with_capacity(path.len());
        let mut depth = 0;
        for c in path.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    };
    let leaf = wanted.rsplit('.').next()?;
    text.lines().enumerate().find_map(|(i, l)| {
        let (_, k) = key_of(l)?;
        (k == leaf && key_path_at(text, i + 1).as_deref() == Some(wanted.as_str())).then_some(i + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
proxy:
  enable_caching: true   # comment
backends:
  groups:
    - name: infra
      members: [\"http://127.0.0.1:9090\"]
    - \"name\": b
      members:
        - http://127.0.0.1:9091
spec:
  remoteWrite:
    metricRelabelings:
      - sourceLabels: [__name__]
        targetlabel: x
";

    #[test]
    fn key_paths_follow_indentation_and_sequence_items() {
        assert_eq!(
            key_path_at(TEXT, 2).as_deref(),
            Some("proxy.enable_caching")
        );
        assert_eq!(
            key_path_at(TEXT, 5).as_deref(),
            Some("backends.groups.name")
        );
        assert_eq!(
            key_path_at(TEXT, 6).as_deref(),
            Some("backends.groups.members")
        );
        assert_eq!(
            key_path_at(TEXT, 7).as_deref(),
            Some("backends.groups.name")
        );
        // A URL in a sequence is a value, not a key.
        assert_eq!(key_path_at(TEXT, 9), None);
        assert_eq!(
            key_path_at(TEXT, 14).as_deref(),
            Some("spec.remoteWrite.metricRelabelings.targetlabel")
        );
    }

    #[test]
    fn lines_of_key_paths() {
        assert_eq!(
            line_of_key_path(TEXT, "spec.remoteWrite.metricRelabelings[0].targetlabel"),
            Some(14)
        );
        assert_eq!(
            line_of_key_path(TEXT, "backends.groups[1].members"),
            Some(6)
        );
        assert_eq!(line_of_key_path(TEXT, "spec.nothing"), None);
    }

    #[test]
    fn messages_lose_the_location_prefix_and_snippet() {
        let text = "a: 1\nb: x\n";
        let e =
            serde_saphyr::from_str::<std::collections::BTreeMap<String, u16>>(text).unwrap_err();
        let m = located_message(&e, text, 10);
        assert!(m.starts_with("line 12 column 4: key `b`: invalid"), "{m}");
        assert!(!m.contains('\n') && !m.contains("at line"), "{m}");
    }
}
