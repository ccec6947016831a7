//! The printer of enforced queries: PromQL text for a promql-parser tree such that parsing the
//! text gives back exactly that tree (structural equality, `PartialEq`), or a refusal.
//!
//! promql-parser's own `Display` is lossy for a few shapes (`sum by () (x)` prints as
//! `sum(x)`, `x + ignoring () y` as `x + y`, a negative `@` time as `@ 0.000`, sub-millisecond
//! durations as nothing, and it adds no parentheses), so the proxy used to print, parse the
//! text again and compare: a second parse that compiled every regex again and cost about half
//! of a rewrite. This printer is faithful by construction instead:
//!
//! - every node is written in the one form the grammar reads back as that node (`by ()`,
//!   `ignoring ()`, the `@` time to the millisecond with its sign, durations in the units
//!   `parse_duration` reads, strings with every escape the lexer knows);
//! - where the text could be read as another tree (an operand whose precedence would bind it
//!   differently, a unary minus that would swallow a `^`, a number the parser would fold into
//!   a unary minus, an operator modifier the parser would normalise), it refuses rather than
//!   adding parentheses: the tree sent upstream is always the very tree that was checked.
//!
//! Numbers, durations and `@` times are checked by reading the printed text back with the
//! crate's own number rules (no regex compiled). The round-trip property is tested over the
//! corpus, generated queries and generated trees (`tests_print.rs`), and debug builds (every
//! test, the e2e suite) still parse each printed query again and compare ([`super::finish`]).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenType,
};
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinModifier, BinaryExpr, Expr, LabelModifier, Offset,
    VectorMatchCardinality, VectorSelector,
};

use crate::names::{is_legacy_label_name, is_metric_name};

/// Why a tree has no faithful text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unprintable(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, Unprintable> {
    Err(Unprintable(why.into()))
}

/// The text of `expr`, or why it has none that parses back to `expr`.
pub fn print(expr: &Expr) -> Result<String, Unprintable> {
    let mut out = String::with_capacity(256);
    expr_into(&mut out, expr)?;
    Ok(out)
}

/// Binding strength of a binary operator (the grammar's `%left`/`%right` order), and whether
/// it associates to the right (`^` only).
fn precedence(op: TokenType) -> Result<(u8, bool), Unprintable> {
    Ok(match op.id() {
        T_LOR => (1, false),
        T_LAND | T_LUNLESS => (2, false),
        T_EQLC | T_NEQ | T_GTE | T_GTR | T_LSS | T_LTE => (3, false),
        T_ADD | T_SUB => (4, false),
        T_MUL | T_DIV | T_MOD | T_ATAN2 => (5, false),
        T_POW => (6, true),
        _ => return refuse(format!("{op} is not a binary operator")),
    })
}

/// The unary minus binds like `*` (`SUB expr %prec MUL`): it takes a following `^` with it.
const UNARY: u8 = 5;

/// True when the printed form of `expr` starts with a minus the parser reads as a unary
/// operator (a unary expression, or a negative number: the lexer has no signed numbers).
fn starts_with_minus(expr: &Expr) -> bool {
    match expr {
        Expr::Unary(_) => true,
        Expr::NumberLiteral(n) => n.val.is_sign_negative() && !n.val.is_nan(),
        _ => false,
    }
}

fn expr_into(out: &mut String, expr: &Expr) -> Result<(), Unprintable> {
    match expr {
        Expr::Aggregate(a) => aggregate(out, a),
        Expr::Unary(u) => {
            match &*u.expr {
                // `-1` is read as the number -1, never as a unary node over 1.
                Expr::NumberLiteral(_) => return refuse("a unary minus over a number literal"),
                Expr::Binary(b) if precedence(b.op)?.0 <= UNARY => {
                    return refuse("a unary minus over an unparenthesised binary expression");
                }
                _ => {}
            }
            out.push('-');
            expr_into(out, &u.expr)
        }
        Expr::Binary(b) => binary(out, b),
        Expr::Paren(p) => {
            out.push('(');
            expr_into(out, &p.expr)?;
            out.push(')');
            Ok(())
        }
        Expr::Subquery(s) => {
            // `[` binds tighter than any operator: only a primary expression can take it.
            match &*s.expr {
                Expr::Binary(_) | Expr::Unary(_) => {
                    return refuse("a subquery over an unparenthesised operator expression");
                }
                e if starts_with_minus(e) => return refuse("a subquery over a negative number"),
                _ => {}
            }
            expr_into(out, &s.expr)?;
            out.push('[');
            duration(out, &s.range)?;
            out.push(':');
            if let Some(step) = &s.step {
                duration(out, step)?;
            }
            out.push(']');
            modifiers(out, s.at.as_ref(), s.offset.as_ref())
        }
        Expr::NumberLiteral(n) => number(out, n.val),
        Expr::StringLiteral(s) => {
            quoted(out, &s.val);
            Ok(())
        }
        Expr::VectorSelector(vs) => {
            selector(out, vs)?;
            modifiers(out, vs.at.as_ref(), vs.offset.as_ref())
        }
        Expr::MatrixSelector(ms) => {
            selector(out, &ms.vs)?;
            out.push('[');
            duration(out, &ms.range)?;
            out.push(']');
            modifiers(out, ms.vs.at.as_ref(), ms.vs.offset.as_ref())
        }
        Expr::Call(c) => {
            out.push_str(c.func.name);
            out.push('(');
            for (i, arg) in c.args.args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                expr_into(out, arg)?;
            }
            out.push(')');
            Ok(())
        }
        Expr::Extension(_) => refuse("an extension node has no PromQL text"),
    }
}

fn aggregate(out: &mut String, a: &AggregateExpr) -> Result<(), Unprintable> {
    if !a.op.is_aggregator() {
        return refuse(format!("{} is not an aggregation", a.op));
    }
    if a.op.is_aggregator_with_param() != a.param.is_some() {
        return refuse(format!("{} with the wrong number of arguments", a.op));
    }
    let _ = write!(out, "{}", a.op);
    match &a.modifier {
        None => {}
        Some(LabelModifier::Include(labels)) => {
            out.push_str(" by ");
            label_list(out, &labels.labels);
            out.push(' ');
        }
        Some(LabelModifier::Exclude(labels)) => {
            out.push_str(" without ");
            label_list(out, &labels.labels);
            out.push(' ');
        }
    }
    out.push('(');
    if let Some(param) = &a.param {
        expr_into(out, param)?;
        out.push_str(", ");
    }
    expr_into(out, &a.expr)?;
    out.push(')');
    Ok(())
}

fn binary(out: &mut String, b: &BinaryExpr) -> Result<(), Unprintable> {
    let (prec, right_assoc) = precedence(b.op)?;
    let binds = |side: &Expr, left: bool| -> Result<bool, Unprintable> {
        Ok(match side {
            Expr::Binary(inner) => {
                let (p, _) = precedence(inner.op)?;
                p > prec || (p == prec && left != right_assoc)
            }
            // `-a ^ b` is `-(a ^ b)`; below `^` the unary minus is reduced first.
            e if left && starts_with_minus(e) => prec <= UNARY,
            _ => true,
        })
    };
    if !binds(&b.lhs, true)? {
        return refuse(format!(
            "the left operand of {} needs parentheses to keep its meaning",
            b.op
        ));
    }
    if !binds(&b.rhs, false)? {
        return refuse(format!(
            "the right operand of {} needs parentheses to keep its meaning",
            b.op
        ));
    }
    expr_into(out, &b.lhs)?;
    let _ = write!(out, " {}", b.op);
    bin_modifier(out, b.op, b.modifier.as_ref())?;
    out.push(' ');
    expr_into(out, &b.rhs)
}

/// `bool`, `on`/`ignoring`, `group_left`/`group_right` and `fill*` as the parser reads them.
/// The parser gives a set operator (`and`, `or`, `unless`) a many-to-many modifier even when
/// none is written, and any other operator none unless something is written: trees that
/// disagree with that have no text.
fn bin_modifier(
    out: &mut String,
    op: TokenType,
    modifier: Option<&BinModifier>,
) -> Result<(), Unprintable> {
    let Some(m) = modifier else {
        if op.is_set_operator() {
            return refuse(format!("{op} without its many-to-many matching"));
        }
        return Ok(());
    };
    match (&m.card, op.is_set_operator()) {
        (VectorMatchCardinality::ManyToMany, true) | (VectorMatchCardinality::OneToOne, false) => {}
        (VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_), false)
            if m.matching.is_some() => {}
        _ => {
            return refuse(format!(
                "{op} with a vector matching it can't be written with"
            ));
        }
    }
    let fill = &m.fill_values;
    let nothing_written = !m.return_bool
        && m.matching.is_none()
        && matches!(m.card, VectorMatchCardinality::OneToOne)
        && fill.lhs.is_none()
        && fill.rhs.is_none();
    if nothing_written {
        return refuse(format!("{op} with an empty modifier"));
    }
    if m.return_bool {
        out.push_str(" bool");
    }
    match &m.matching {
        Some(LabelModifier::Include(labels)) => {
            out.push_str(" on ");
            label_list(out, &labels.labels);
        }
        Some(LabelModifier::Exclude(labels)) => {
            out.push_str(" ignoring ");
            label_list(out, &labels.labels);
        }
        None => {}
    }
    match &m.card {
        VectorMatchCardinality::ManyToOne(labels) => {
            out.push_str(" group_left ");
            label_list(out, &labels.labels);
        }
        VectorMatchCardinality::OneToMany(labels) => {
            out.push_str(" group_right ");
            label_list(out, &labels.labels);
        }
        _ => {}
    }
    let fill_value = |out: &mut String, keyword: &str, v: f64| -> Result<(), Unprintable> {
        if v.is_nan() {
            // NaN never equals itself, so no text parses back to an equal tree.
            return refuse("a NaN fill value");
        }
        let _ = write!(out, " {keyword} (");
        number(out, v)?;
        out.push(')');
        Ok(())
    };
    match (fill.lhs, fill.rhs) {
        (Some(l), Some(r)) if l == r => fill_value(out, "fill", l)?,
        (l, r) => {
            if let Some(l) = l {
                fill_value(out, "fill_left", l)?;
            }
            if let Some(r) = r {
                fill_value(out, "fill_right", r)?;
            }
        }
    }
    Ok(())
}

/// Keywords the lexer reads as something else than a label name in a `by (…)` list.
fn bare_grouping_label(label: &str) -> bool {
    is_legacy_label_name(label)
        && !["without", "smoothed", "anchored", "inf", "nan"]
            .iter()
            .any(|k| label.eq_ignore_ascii_case(k))
}

/// `(a, b)`: bare names where the grammar reads them as labels, quoted strings otherwise.
fn label_list(out: &mut String, labels: &[String]) {
    out.push('(');
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if bare_grouping_label(label) {
            out.push_str(label);
        } else {
            quoted(out, label);
        }
    }
    out.push(')');
}

/// Keywords that are no metric identifier in the grammar: a selector can't be named so.
const NOT_METRIC_NAMES: &[&str] = &[
    "atan2",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "smoothed",
    "anchored",
    "inf",
    "nan",
];

/// Keywords the grammar also accepts as a metric name; printed with braces (`sum{}`), so the
/// parser sees a selector and not the start of an aggregation or a modifier.
const KEYWORD_METRIC_NAMES: &[&str] = &[
    "avg",
    "bottomk",
    "by",
    "count",
    "count_values",
    "fill",
    "fill_left",
    "fill_right",
    "group",
    "and",
    "or",
    "unless",
    "max",
    "min",
    "offset",
    "quantile",
    "stddev",
    "stdvar",
    "sum",
    "topk",
    "limitk",
    "limit_ratio",
    "without",
    "start",
    "end",
];

fn selector(out: &mut String, vs: &VectorSelector) -> Result<(), Unprintable> {
    let Matchers {
        matchers,
        or_matchers,
    } = &vs.matchers;
    if !or_matchers.is_empty() {
        return refuse("`or` inside a selector's braces");
    }
    let mut braces = !matchers.is_empty();
    if let Some(name) = &vs.name {
        if !is_metric_name(name)
            || NOT_METRIC_NAMES
                .iter()
                .any(|k| name.eq_ignore_ascii_case(k))
        {
            return refuse(format!("{name:?} can't be written as a metric name"));
        }
        braces |= KEYWORD_METRIC_NAMES
            .iter()
            .any(|k| name.eq_ignore_ascii_case(k));
        out.push_str(name);
    } else if matchers.is_empty() {
        return refuse("a selector without name or matchers");
    }
    if braces {
        out.push('{');
        for (i, m) in matchers.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            matcher(out, m);
        }
        out.push('}');
    }
    Ok(())
}

fn matcher(out: &mut String, m: &Matcher) {
    if is_legacy_label_name(&m.name) {
        out.push_str(&m.name);
    } else {
        quoted(out, &m.name);
    }
    out.push_str(match m.op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Re(_) => "=~",
        MatchOp::NotRe(_) => "!~",
    });
    quoted(out, &m.value);
}

/// ` @ t` then ` offset d`, the order promql-parser's printer uses (the grammar takes both).
fn modifiers(
    out: &mut String,
    at: Option<&AtModifier>,
    offset: Option<&Offset>,
) -> Result<(), Unprintable> {
    match at {
        None => {}
        Some(AtModifier::Start) => out.push_str(" @ start()"),
        Some(AtModifier::End) => out.push_str(" @ end()"),
        Some(AtModifier::At(time)) => {
            out.push_str(" @ ");
            at_time(out, *time)?;
        }
    }
    match offset {
        None => {}
        Some(Offset::Pos(d)) => {
            out.push_str(" offset ");
            duration(out, d)?;
        }
        Some(Offset::Neg(d)) => {
            out.push_str(" offset -");
            duration(out, d)?;
        }
    }
    Ok(())
}

/// Seconds with three decimals and a sign: the parser keeps `@` times to the millisecond
/// (`(secs * 1000).round()`), and reads `@ -12.5` as 12.5 s before the epoch.
fn at_time(out: &mut String, time: SystemTime) -> Result<(), Unprintable> {
    let (negative, since) = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (false, d),
        Err(e) => (true, e.duration()),
    };
    if !since.subsec_nanos().is_multiple_of(1_000_000) {
        return refuse("an @ time finer than a millisecond");
    }
    let millis = since.as_millis();
    let text = format!("{}.{:03}", millis / 1000, millis % 1000);
    // Read back as the parser does: f64 seconds, rounded to whole milliseconds.
    let back = text
        .parse::<f64>()
        .map(|secs| (secs * 1000.0).round().abs() as u128)
        .ok();
    if back != Some(millis) {
        return refuse(format!("the @ time {text} can't be written exactly"));
    }
    if negative && millis != 0 {
        out.push('-');
    }
    out.push_str(&text);
    Ok(())
}

/// The units `parse_duration` reads (`1h30m`, `1500ms`); a duration must be a non-zero whole
/// number of milliseconds, each unit's count a `u32` as the parser requires.
fn duration(out: &mut String, d: &Duration) -> Result<(), Unprintable> {
    if d.is_zero() {
        return refuse("a zero duration (the parser refuses 0s)");
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return refuse("a duration finer than a millisecond");
    }
    const UNITS: [(&str, u128, bool); 7] = [
        ("y", 1000 * 60 * 60 * 24 * 365, true),
        ("w", 1000 * 60 * 60 * 24 * 7, true),
        ("d", 1000 * 60 * 60 * 24, false),
        ("h", 1000 * 60 * 60, false),
        ("m", 1000 * 60, false),
        ("s", 1000, false),
        ("ms", 1, false),
    ];
    let mut ms = d.as_millis();
    // Years and weeks only when they divide the whole, as promql-parser prints them.
    for (unit, size, exact) in UNITS {
        if exact && !ms.is_multiple_of(size) {
            continue;
        }
        let count = ms / size;
        if count > 0 {
            if count > u128::from(u32::MAX) {
                return refuse("a duration too long to write");
            }
            let _ = write!(out, "{count}{unit}");
            ms -= count * size;
        }
    }
    Ok(())
}

/// A number as promql-parser prints it (`Inf`, `-Inf`, `NaN`, else Rust's shortest exact
/// decimal, never an exponent), checked by reading it back with the lexer's own rules.
fn number(out: &mut String, v: f64) -> Result<(), Unprintable> {
    let start = out.len();
    if v.is_nan() {
        out.push_str("NaN");
        return Ok(());
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "Inf" } else { "-Inf" });
        return Ok(());
    }
    let _ = write!(out, "{v}");
    let text = &out[start..];
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let back = promql_parser::util::parse_str_radix(digits).map(|x| if negative { -x } else { x });
    if back.ok() != Some(v) {
        let text = text.to_string();
        out.truncate(start);
        return refuse(format!("the number {text} does not read back exactly"));
    }
    Ok(())
}

/// A double-quoted PromQL string: `\\`, `\"` and control characters escaped (as `\n`, `\t`,
/// `\r` or `\xNN`), everything else as it is.
fn quoted(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
