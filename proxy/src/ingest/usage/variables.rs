//! Grafana template variables in dashboard expressions (`$var`, `${var:fmt}`, `[[var]]`,
//! `$__rate_interval`, …): replaced by stand-ins of the right shape so the PromQL parses.

/// What stands in for a user variable outside durations.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Fill {
    Name,
    Number,
}

/// Dashboard expressions hold Grafana template variables (`$namespace`, `${pod:regex}`,
/// `[[var]]`, `[$__rate_interval]`, `$__interval`) that Grafana replaces before it sends the
/// query; PromQL has no `$`, so as written they don't parse. We replace each with something
/// of the right shape that changes no metric name the query reads:
///
/// - inside `[…]` (a range or subquery step) or after `offset`: a duration, `5m`; likewise
///   the interval built-ins `$__rate_interval`, `$__interval`, `$__range`, `$__auto` anywhere;
/// - the numeric built-ins (`$__interval_ms`, `$__range_s`, …): `300`;
/// - any other variable: `x` (it mostly stands in a label value inside a string, where any
///   text parses; as a metric name it yields `x`), or `1` on the retry when `x` did not parse
///   (a variable in a number's place: `topk($n, …)`).
///
/// `$1` / `${1}` are left alone: they are `label_replace` back-references, not variables.
pub(super) fn substitute_variables(expr: &str, fill: Fill) -> String {
    let b = expr.as_bytes();
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<u8> = None;
    let mut brackets = 0i32;
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let c = b[i];
        // `[[var]]` (old syntax) is a variable even though it starts with brackets.
        if c == b'['
            && b.get(i + 1) == Some(&b'[')
            && let Some(len) = b[i + 2..].windows(2).position(|w| w == b"]]")
            && is_var_name(&expr[i + 2..i + 2 + len])
        {
            out.push_str(&expr[copied..i]);
            out.push_str(replacement(
                &expr[i + 2..i + 2 + len],
                quote,
                brackets,
                &out,
                fill,
            ));
            i += len + 4;
            copied = i;
            continue;
        }
        if c == b'$'
            && let Some((name, len)) = variable_at(&expr[i + 1..])
        {
            out.push_str(&expr[copied..i]);
            out.push_str(replacement(name, quote, brackets, &out, fill));
            i += 1 + len;
            copied = i;
            continue;
        }
        match (quote, c) {
            (Some(_), b'\\') => i += 1,
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'' | b'`') => quote = Some(c),
            (None, b'[') => brackets += 1,
            (None, b']') => brackets -= 1,
            _ => {}
        }
        i += 1;
    }
    out.push_str(&expr[copied.min(expr.len())..]);
    out
}

/// The variable after a `$`: `name` or `{name}` / `{name:format}` / `{name.field}`, with the
/// length consumed. None for `$1`, `${1}` and a lone `$` (a regex anchor).
fn variable_at(rest: &str) -> Option<(&str, usize)> {
    if let Some(inner) = rest.strip_prefix('{') {
        let end = inner.find('}')?;
        let body = &inner[..end];
        let name = body.split([':', '.']).next().unwrap_or("");
        return is_var_name(name).then_some((name, end + 2));
    }
    let len = rest
        .bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
        .count();
    let name = &rest[..len];
    is_var_name(name).then_some((name, len))
}

fn is_var_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn replacement(
    name: &str,
    quote: Option<u8>,
    brackets: i32,
    before: &str,
    fill: Fill,
) -> &'static str {
    const NUMERIC: [&str; 6] = [
        "__interval_ms",
        "__range_s",
        "__range_ms",
        "__rate_interval_ms",
        "__from",
        "__to",
    ];
    if quote.is_some() {
        return "x";
    }
    if NUMERIC.contains(&name) {
        return "300";
    }
    let after_offset = before
        .trim_end()
        .rsplit(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("offset"));
    let interval = matches!(
        name,
        "__rate_interval" | "__interval" | "__range" | "interval"
    ) || name.starts_with("__auto");
    if brackets > 0 || after_offset || interval {
        return "5m";
    }
    match fill {
        Fill::Name => "x",
        Fill::Number => "1",
    }
}
