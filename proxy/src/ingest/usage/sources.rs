//! The static set of used names ([`load_static`]): every expression of the Prometheus rule
//! files and Grafana dashboards the operator names, with problems reported, never fatal.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::names::{UsedNames, parse_into};
use super::variables::{Fill, substitute_variables};

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
