//! Which metrics are used (DESIGN §6): queried through the proxy's read path recently, or
//! referenced by a Prometheus rule file or a Grafana dashboard the operator names. The
//! pipeline asks [`Usage::is_unused`] per series to drop (or only report) the rest.
//!
//! - [`UsedNames`]: the metric names (and `__name__` regexes) an expression reads;
//! - [`load_static`]: the names of every expression of the rule files and dashboards;
//! - [`QueryStats`]: per tenant and metric, how often and when it was last queried;
//! - [`Usage`]: the verdict, from both, after an observation period.
//!
//! Everything errs on the side of "used": a metric is only called unused when the gateway
//! knows enough to say so (it has observed for `unused_after`, the stats were not full).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector};
use regex::{Regex, RegexSet};
use serde::Serialize;
use serde_json::Value;

use crate::backend::health::rfc3339;
use crate::promql::{HARD_MAX_DEPTH, depth_estimate};

#[cfg(test)]
mod tests;

/// Exact metric names recorded per tenant; a query naming a new one beyond this is not
/// recorded (after stale entries were pruned) and the tenant counts as overflowed.
pub const MAX_METRICS_PER_TENANT: usize = 100_000;
/// `__name__` regexes recorded per tenant, same overflow rule.
pub const MAX_PATTERNS_PER_TENANT: usize = 1_000;
/// Tenants tracked; queries of further tenants are not recorded and overflow globally.
pub const MAX_TENANTS: usize = 10_000;
/// A full tenant map is pruned at most this often (pruning walks the whole map).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Metric names an expression reads: exact names, plus name regexes (`{__name__=~"node_.*"}`)
/// kept as anchored patterns (`^(?:node_.*)$`, the way Prometheus anchors them).
///
/// Selectors without a metric-name constraint (`{job="api"}`, `{__name__!="up"}`) add
/// nothing: they would make every metric used. [`load_static`] reports them.
#[derive(Debug, Default, Clone)]
pub struct UsedNames {
    pub names: BTreeSet<String>,
    pub patterns: Vec<String>,
    /// The patterns compiled on first [`UsedNames::matches`]; reset by `add_expr` / `merge`.
    /// Tagged with the number of patterns it was built from, so a direct edit of `patterns`
    /// is noticed (and compiled on the fly, uncached).
    compiled: OnceLock<Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    from: usize,
    matcher: PatternMatcher,
}

/// One `RegexSet` pass when the set compiles (it can exceed the regex size limit where the
/// single patterns don't); the single regexes otherwise. Invalid patterns are left out.
#[derive(Debug, Clone)]
enum PatternMatcher {
    Set(RegexSet),
    Each(Vec<Regex>),
}

impl PatternMatcher {
    fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        match RegexSet::new(patterns) {
            Ok(set) => Self::Set(set),
            Err(_) => Self::Each(
                patterns
                    .iter()
                    .filter_map(|p| Regex::new(p.as_ref()).ok())
                    .collect(),
            ),
        }
    }

    fn is_match(&self, s: &str) -> bool {
        match self {
            Self::Set(set) => set.is_match(s),
            Self::Each(res) => res.iter().any(|r| r.is_match(s)),
        }
    }

    /// Indexes (into the patterns it was built from) that match; `Each` loses the indexes of
    /// invalid patterns, so it answers by regex text instead (see [`TenantStats`]).
    fn matching(&self, s: &str) -> Vec<usize> {
        match self {
            Self::Set(set) => set.matches(s).into_iter().collect(),
            Self::Each(res) => (0..res.len()).filter(|&i| res[i].is_match(s)).collect(),
        }
    }
}

impl UsedNames {
    /// Adds the names every selector of `expr` reads (aggregations, binary operands,
    /// subqueries, function arguments, parentheses, …).
    pub fn add_expr(&mut self, expr: &Expr) {
        let mut unnamed = 0;
        self.walk(expr, &mut unnamed);
    }

    /// Whether `metric` is one of the names or matched by one of the patterns.
    pub fn matches(&self, metric: &str) -> bool {
        if self.names.contains(metric) {
            return true;
        }
        if self.patterns.is_empty() {
            return false;
        }
        let compiled = self.compiled.get_or_init(|| Compiled {
            from: self.patterns.len(),
            matcher: PatternMatcher::new(&self.patterns),
        });
        if compiled.from == self.patterns.len() {
            compiled.matcher.is_match(metric)
        } else {
            PatternMatcher::new(&self.patterns).is_match(metric)
        }
    }

    pub fn merge(&mut self, other: UsedNames) {
        self.names.extend(other.names);
        for p in other.patterns {
            self.add_pattern(p);
        }
    }

    /// No name and no pattern.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.patterns.is_empty()
    }

    fn add_pattern(&mut self, anchored: String) {
        if !self.patterns.contains(&anchored) {
            self.patterns.push(anchored);
            self.compiled = OnceLock::new();
        }
    }

    /// Walks the tree; counts selectors without a metric-name constraint in `unnamed`.
    fn walk(&mut self, expr: &Expr, unnamed: &mut usize) {
        match expr {
            Expr::VectorSelector(vs) => self.add_selector(vs, unnamed),
            Expr::MatrixSelector(ms) => self.add_selector(&ms.vs, unnamed),
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p, unnamed);
                }
                self.walk(&a.expr, unnamed);
            }
            Expr::Unary(u) => self.walk(&u.expr, unnamed),
            Expr::Binary(b) => {
                self.walk(&b.lhs, unnamed);
                self.walk(&b.rhs, unnamed);
            }
            Expr::Paren(p) => self.walk(&p.expr, unnamed),
            Expr::Subquery(s) => self.walk(&s.expr, unnamed),
            Expr::Call(c) => {
                for arg in &c.args.args {
                    self.walk(arg, unnamed);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn add_selector(&mut self, vs: &VectorSelector, unnamed: &mut usize) {
        if let Some(name) = &vs.name {
            self.names.insert(name.clone());
            return;
        }
        // `{__name__="a" or __name__="b"}`: each group is an alternative.
        let groups = std::iter::once(&vs.matchers.matchers)
            .chain(&vs.matchers.or_matchers)
            .filter(|g| !g.is_empty());
        for group in groups {
            if !self.add_group(group) {
                *unnamed += 1;
            }
        }
    }

    /// The metric-name constraint of one group of matchers (an exact name wins over a regex;
    /// several regexes are all kept, which over-approximates their intersection). False when
    /// the group has none.
    fn add_group(&mut self, group: &[Matcher]) -> bool {
        let names: Vec<&Matcher> = group.iter().filter(|m| m.name == "__name__").collect();
        if let Some(eq) = names.iter().find(|m| matches!(m.op, MatchOp::Equal)) {
            self.names.insert(eq.value.clone());
            return true;
        }
        let mut any = false;
        for m in names {
            if let MatchOp::Re(_) = m.op {
                self.add_pattern(format!("^(?:{})$", m.value));
                any = true;
            }
        }
        any
    }
}

/// The names `query` reads. Refuses (like the read path) a query whose syntax tree could be
/// deep enough to overflow the parser's stack.
pub fn names_in_query(query: &str) -> Result<UsedNames, String> {
    let mut used = UsedNames::default();
    parse_into(query, &mut used)?;
    Ok(used)
}

/// Parses `query` and adds its names; returns the number of name-less selectors.
fn parse_into(query: &str, used: &mut UsedNames) -> Result<usize, String> {
    let depth = depth_estimate(query);
    if depth > HARD_MAX_DEPTH {
        return Err(format!(
            "expression nested too deeply ({depth} > {HARD_MAX_DEPTH})"
        ));
    }
    let expr = promql_parser::parser::parse(query)?;
    let mut unnamed = 0;
    used.walk(&expr, &mut unnamed);
    Ok(unnamed)
}

/// Loads every expression of the rule files (`groups[].rules[].expr`, also under `spec:` of
/// a `PrometheusRule` manifest) and dashboards (every `"expr"` string anywhere in the JSON:
/// panels, rows with nested panels, targets; and the templating queries
/// `label_values(metric, label)` / `query_result(expr)`, whose metric counts as used).
/// Unreadable files, unparsable expressions and name-less selectors are reported in the
/// returned problems (with the file and the rule name or panel title), never fatal.
pub fn load_static(
    rule_files: &[PathBuf],
    dashboard_files: &[PathBuf],
) -> (UsedNames, Vec<String>) {
    let mut used = UsedNames::default();
    let mut problems = Vec::new();
    for file in rule_files {
        load_rule_file(file, &mut used, &mut problems);
    }
    for file in dashboard_files {
        load_dashboard(file, &mut used, &mut problems);
    }
    (used, problems)
}

fn load_rule_file(file: &Path, used: &mut UsedNames, problems: &mut Vec<String>) {
    let shown = file.display();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return problems.push(format!("rule file {shown}: {e}")),
    };
    let doc: Value = match serde_saphyr::from_str(&text) {
        Ok(v) => v,
        Err(e) => return problems.push(format!("rule file {shown}: {e}")),
    };
    let groups = doc
        .get("groups")
        .or_else(|| doc.get("spec").and_then(|s| s.get("groups")));
    let Some(groups) = groups.and_then(Value::as_array) else {
        return problems.push(format!("rule file {shown}: no `groups` list"));
    };
    for group in groups {
        let gname = group.get("name").and_then(Value::as_str).unwrap_or("?");
        let rules = group.get("rules").and_then(Value::as_array);
        for rule in rules.into_iter().flatten() {
            let rname = ["record", "alert"]
                .iter()
                .find_map(|k| rule.get(*k).and_then(Value::as_str))
                .unwrap_or("?");
            let expr = match rule.get("expr") {
                Some(Value::String(s)) => s.clone(),
                // `expr: 1` is a valid (if odd) rule.
                Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                _ => {
                    problems.push(format!(
                        "rule file {shown}: group {gname}, rule {rname}: no expr"
                    ));
                    continue;
                }
            };
            let whence = format!("rule file {shown}: group {gname}, rule {rname}");
            add_reported(&expr, used, problems, &whence);
        }
    }
}

/// Parses one expression into `used`, reporting a parse error or name-less selectors.
fn add_reported(expr: &str, used: &mut UsedNames, problems: &mut Vec<String>, whence: &str) {
    match parse_into(expr, used) {
        Ok(0) => {}
        Ok(n) => problems.push(format!(
            "{whence}: {n} selector(s) without a metric name in `{}`; the metrics they read are \
             not counted as used",
            one_line(expr)
        )),
        Err(e) => problems.push(format!(
            "{whence}: cannot parse `{}`: {}",
            one_line(expr),
            one_line(&e)
        )),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn load_dashboard(file: &Path, used: &mut UsedNames, problems: &mut Vec<String>) {
    let shown = file.display().to_string();
    let doc: Value = match std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => return problems.push(format!("dashboard {shown}: {e}")),
    };
    // A dashboard export, or the API's `{"dashboard": {...}, "meta": ...}`: both walk alike.
    let mut cx = DashboardWalk {
        file: &shown,
        used,
        problems,
    };
    cx.walk(&doc, None, None);
}

struct DashboardWalk<'a> {
    file: &'a str,
    used: &'a mut UsedNames,
    problems: &'a mut Vec<String>,
}

impl DashboardWalk<'_> {
    /// `title`: of the nearest enclosing object that has one (the panel, the row, the
    /// dashboard); `ds_type`: the nearest `datasource.type` (a target inherits its panel's).
    fn walk(&mut self, v: &Value, title: Option<&str>, ds_type: Option<&str>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| self.walk(i, title, ds_type)),
            Value::Object(map) => {
                let title = map.get("title").and_then(Value::as_str).or(title);
                let ds_type = map
                    .get("datasource")
                    .and_then(|d| d.get("type"))
                    .and_then(Value::as_str)
                    .or(ds_type);
                let whence = match title {
                    Some(t) => format!("dashboard {}: panel \"{t}\"", self.file),
                    None => format!("dashboard {}", self.file),
                };
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", Value::String(expr)) => {
                            if speaks_promql(ds_type) && !expr.trim().is_empty() {
                                self.expr(expr, &whence);
                            }
                        }
                        ("query" | "definition", Value::String(q)) => {
                            self.template_query(q, &whence)
                        }
                        _ => self.walk(value, title, ds_type),
                    }
                }
            }
            _ => {}
        }
    }

    fn expr(&mut self, expr: &str, whence: &str) {
        let mut first = substitute_variables(expr, Fill::Name);
        if parse_into(&first, &mut UsedNames::default()).is_err() {
            // A variable in a number's place (`topk($n, …)`, `> $threshold`): try numbers.
            let second = substitute_variables(expr, Fill::Number);
            if promql_parser::parser::parse(&second).is_ok() {
                first = second;
            }
        }
        add_reported(&first, self.used, self.problems, whence);
    }

    /// Templating queries of the Prometheus data source: `label_values(metric, label)` and
    /// `query_result(expr)` read metrics; `label_values(label)`, `label_names()`,
    /// `metrics(regex)` and custom lists read none.
    fn template_query(&mut self, query: &str, whence: &str) {
        let q = query.trim();
        let (func, inner) = match q.split_once('(') {
            Some((f, rest)) if rest.trim_end().ends_with(')') => {
                (f.trim(), &rest.trim_end()[..rest.trim_end().len() - 1])
            }
            _ => return,
        };
        let expr = match func {
            "label_values" => match split_top_level_comma(inner) {
                Some((metric, _label)) => metric,
                None => return,
            },
            "query_result" => inner,
            _ => return,
        };
        let whence = format!("{whence}: templating query");
        self.expr(expr.trim(), &whence);
    }
}

/// Grafana's own data sources (`datasource`, `-- Mixed --`, …) and unknown ones pass; a typed
/// data source that is not Prometheus-compatible (Loki, Elasticsearch, …) does not: its
/// `expr` is not PromQL.
fn speaks_promql(ds_type: Option<&str>) -> bool {
    match ds_type {
        None => true,
        Some(t) => t.contains("prometheus") || t == "datasource" || t.starts_with('$'),
    }
}

/// `metric{a="x,y"}, label` → (`metric{a="x,y"}`, `label`): the first comma outside
/// brackets and strings.
fn split_top_level_comma(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

/// What stands in for a user variable outside durations.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fill {
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
fn substitute_variables(expr: &str, fill: Fill) -> String {
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

/// One row of [`QueryStats::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryStat {
    pub tenant: String,
    /// The metric name, or the anchored `__name__` regex when `pattern`.
    pub metric: String,
    pub pattern: bool,
    pub queries: u64,
    /// RFC 3339, UTC.
    pub last_queried: String,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    queries: u64,
    last: SystemTime,
}

impl Seen {
    fn bump(&mut self, now: SystemTime) {
        self.queries += 1;
        self.last = self.last.max(now);
    }
}

#[derive(Debug)]
struct TenantStats {
    metrics: HashMap<String, Seen>,
    /// Anchored patterns in insertion order; `matcher` is rebuilt lazily after an insert.
    patterns: Vec<(String, Seen)>,
    matcher: Option<PatternMatcher>,
    /// Last time a name or pattern could not be recorded (the maps were full): metrics not
    /// in the maps may have been queried since then.
    overflow: Option<SystemTime>,
    last_prune: Option<SystemTime>,
}

impl TenantStats {
    fn new() -> Self {
        Self {
            metrics: HashMap::new(),
            patterns: Vec::new(),
            matcher: None,
            overflow: None,
            last_prune: None,
        }
    }

    /// Drops entries last queried before `now - retention` (they count as unused anyway, so
    /// forgetting them changes no verdict), at most every [`PRUNE_EVERY`].
    fn prune(&mut self, now: SystemTime, retention: Duration) {
        if self
            .last_prune
            .is_some_and(|t| now.duration_since(t).unwrap_or_default() < PRUNE_EVERY)
        {
            return;
        }
        self.last_prune = Some(now);
        let Some(cutoff) = now.checked_sub(retention) else {
            return;
        };
        self.metrics.retain(|_, s| s.last >= cutoff);
        let before = self.patterns.len();
        self.patterns.retain(|(_, s)| s.last >= cutoff);
        if self.patterns.len() != before {
            self.matcher = None;
        }
    }

    fn note_overflow(&mut self, tenant: &str, now: SystemTime) {
        if self.overflow.is_none() {
            tracing::warn!(
                tenant,
                max_metrics = MAX_METRICS_PER_TENANT,
                max_patterns = MAX_PATTERNS_PER_TENANT,
                "usage stats full: queried metrics beyond the limit are not recorded, so \
                 no metric of this tenant outside the stats is called unused for a while"
            );
        }
        self.overflow = Some(self.overflow.map_or(now, |t| t.max(now)));
    }

    /// Latest time `metric` was queried by name or through a pattern.
    fn last_used(&mut self, metric: &str) -> Option<SystemTime> {
        let exact = self.metrics.get(metric).map(|s| s.last);
        if self.patterns.is_empty() {
            return exact;
        }
        let matcher = self.matcher.get_or_insert_with(|| {
            let texts: Vec<&str> = self.patterns.iter().map(|(p, _)| p.as_str()).collect();
            PatternMatcher::new(&texts)
        });
        let via_pattern = match matcher {
            PatternMatcher::Set(_) => matcher
                .matching(metric)
                .into_iter()
                .filter_map(|i| self.patterns.get(i).map(|(_, s)| s.last))
                .max(),
            // The set did not compile: match each pattern by its own text.
            PatternMatcher::Each(_) => self
                .patterns
                .iter()
                .filter(|(p, _)| Regex::new(p).is_ok_and(|r| r.is_match(metric)))
                .map(|(_, s)| s.last)
                .max(),
        };
        exact.max(via_pattern)
    }
}

/// Query statistics per tenant and metric: count and last time queried. Recording takes a
/// read lock on the tenant map and the tenant's own mutex; tenants don't contend.
///
/// Bounded: at most [`MAX_TENANTS`] tenants, [`MAX_METRICS_PER_TENANT`] names and
/// [`MAX_PATTERNS_PER_TENANT`] patterns each. A full tenant first forgets entries older than
/// the retention (they are unused whether remembered or not); what still does not fit is not
/// recorded, and the tenant is marked overflowed: for `retention` after the last refused
/// record, [`QueryStats::overflowed`] says so and [`Usage::is_unused`] calls none of its
/// unrecorded metrics unused.
#[derive(Debug)]
pub struct QueryStats {
    tenants: RwLock<HashMap<String, Arc<Mutex<TenantStats>>>>,
    /// Last time a new tenant was refused ([`MAX_TENANTS`]).
    tenant_overflow: Mutex<Option<SystemTime>>,
    retention: Duration,
}

impl Default for QueryStats {
    fn default() -> Self {
        Self::new()
    }
}

impl QueryStats {
    /// Stats that keep entries for a day when full (see [`QueryStats::with_retention`]).
    pub fn new() -> Self {
        Self::with_retention(Duration::from_secs(24 * 3600))
    }

    /// `retention`: how long an entry is worth keeping when the maps are full, and how long
    /// an overflow makes unrecorded metrics count as used; [`Usage`] passes `unused_after`.
    pub fn with_retention(retention: Duration) -> Self {
        Self {
            tenants: RwLock::new(HashMap::new()),
            tenant_overflow: Mutex::new(None),
            retention,
        }
    }

    /// Records one query of `tenant` reading `names`: each exact name and each pattern
    /// counts one query at `now`.
    pub fn record(&self, tenant: &str, names: &UsedNames, now: SystemTime) {
        if names.is_empty() {
            return;
        }
        let Some(stats) = self.tenant(tenant, now) else {
            return;
        };
        let mut t = stats.lock().unwrap_or_else(PoisonError::into_inner);
        for name in &names.names {
            if let Some(s) = t.metrics.get_mut(name.as_str()) {
                s.bump(now);
                continue;
            }
            if t.metrics.len() >= MAX_METRICS_PER_TENANT {
                t.prune(now, self.retention);
            }
            if t.metrics.len() >= MAX_METRICS_PER_TENANT {
                t.note_overflow(tenant, now);
                continue;
            }
            t.metrics.insert(
                name.clone(),
                Seen {
                    queries: 1,
                    last: now,
                },
            );
        }
        for pattern in &names.patterns {
            if let Some((_, s)) = t.patterns.iter_mut().find(|(p, _)| p == pattern) {
                s.bump(now);
                continue;
            }
            if t.patterns.len() >= MAX_PATTERNS_PER_TENANT {
                t.prune(now, self.retention);
            }
            if t.patterns.len() >= MAX_PATTERNS_PER_TENANT {
                t.note_overflow(tenant, now);
                continue;
            }
            t.patterns.push((
                pattern.clone(),
                Seen {
                    queries: 1,
                    last: now,
                },
            ));
            t.matcher = None;
        }
    }

    fn tenant(&self, tenant: &str, now: SystemTime) -> Option<Arc<Mutex<TenantStats>>> {
        if let Some(t) = self.read_tenants().get(tenant) {
            return Some(Arc::clone(t));
        }
        let mut map = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = map.get(tenant) {
            return Some(Arc::clone(t));
        }
        if map.len() >= MAX_TENANTS {
            let mut o = self
                .tenant_overflow
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if o.is_none() {
                tracing::warn!(
                    max_tenants = MAX_TENANTS,
                    "usage stats: too many tenants, not recording new ones"
                );
            }
            *o = Some(o.map_or(now, |t| t.max(now)));
            return None;
        }
        let t = Arc::new(Mutex::new(TenantStats::new()));
        map.insert(tenant.to_owned(), Arc::clone(&t));
        Some(t)
    }

    fn read_tenants(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Mutex<TenantStats>>>> {
        self.tenants.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Latest time `tenant` queried `metric`, by name or through a recorded pattern.
    pub fn last_used(&self, tenant: &str, metric: &str) -> Option<SystemTime> {
        let stats = Arc::clone(self.read_tenants().get(tenant)?);
        let mut t = stats.lock().unwrap_or_else(PoisonError::into_inner);
        t.last_used(metric)
    }

    /// Whether queries of `tenant` went unrecorded within the retention before `now` (its
    /// maps or the tenant map were full): metrics it has no entry for may still be in use.
    pub fn overflowed(&self, tenant: &str, now: SystemTime) -> bool {
        let recent = |t: Option<SystemTime>| {
            t.is_some_and(|t| now.duration_since(t).map_or(true, |d| d < self.retention))
        };
        let tenant_stats = self.read_tenants().get(tenant).map(Arc::clone);
        match tenant_stats {
            Some(s) => recent(s.lock().unwrap_or_else(PoisonError::into_inner).overflow),
            None => recent(
                *self
                    .tenant_overflow
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            ),
        }
    }

    /// Every entry (of one tenant, or all), sorted by tenant, then names before patterns,
    /// then metric.
    pub fn snapshot(&self, tenant: Option<&str>) -> Vec<QueryStat> {
        let tenants: Vec<(String, Arc<Mutex<TenantStats>>)> = self
            .read_tenants()
            .iter()
            .filter(|(name, _)| tenant.is_none_or(|t| t == name.as_str()))
            .map(|(name, s)| (name.clone(), Arc::clone(s)))
            .collect();
        let mut out = Vec::new();
        for (name, stats) in tenants {
            let t = stats.lock().unwrap_or_else(PoisonError::into_inner);
            let row = |metric: &str, pattern: bool, s: &Seen| QueryStat {
                tenant: name.clone(),
                metric: metric.to_owned(),
                pattern,
                queries: s.queries,
                last_queried: rfc3339(s.last),
            };
            out.extend(t.metrics.iter().map(|(m, s)| row(m, false, s)));
            out.extend(t.patterns.iter().map(|(p, s)| row(p, true, s)));
        }
        out.sort_by(|a, b| {
            (&a.tenant, a.pattern, &a.metric).cmp(&(&b.tenant, b.pattern, &b.metric))
        });
        out
    }
}

/// The verdict used by the pipeline: query stats, the static set from rule files and
/// dashboards (swapped on reload), and the observation period.
#[derive(Debug)]
pub struct Usage {
    stats: QueryStats,
    static_used: ArcSwap<UsedNames>,
    started: SystemTime,
    unused_after: Duration,
}

impl Usage {
    pub fn new(unused_after: Duration, started: SystemTime) -> Self {
        Self {
            stats: QueryStats::with_retention(unused_after),
            static_used: ArcSwap::from_pointee(UsedNames::default()),
            started,
            unused_after,
        }
    }

    pub fn stats(&self) -> &QueryStats {
        &self.stats
    }

    /// Replaces the names from rule files and dashboards (at start and on reload).
    pub fn set_static(&self, used: UsedNames) {
        self.static_used.store(Arc::new(used));
    }

    /// The current static set.
    pub fn static_names(&self) -> Arc<UsedNames> {
        self.static_used.load_full()
    }

    /// Unused: not in the static set, not matched by a static pattern, not queried by this
    /// tenant (by name or a pattern) within `unused_after`. False while the gateway has run
    /// for less than `unused_after` (nothing is called unused before there was time to
    /// observe it), and for metrics the tenant's stats had no room to record lately.
    pub fn is_unused(&self, tenant: &str, metric: &str, now: SystemTime) -> bool {
        let observed = now.duration_since(self.started).unwrap_or_default();
        if observed < self.unused_after {
            return false;
        }
        if self.static_used.load().matches(metric) {
            return false;
        }
        let recent = self.stats.last_used(tenant, metric).is_some_and(|last| {
            // A last use in the future (clock stepped back) is recent.
            now.duration_since(last)
                .map_or(true, |d| d < self.unused_after)
        });
        !recent && !self.stats.overflowed(tenant, now)
    }
}
