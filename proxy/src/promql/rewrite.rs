//! The AST rewrite: every selector `S` becomes `S ∧ C` (one clause) or `(S∧C1 or S∧C2 …)`;
//! where a selector can't hold an `or` (a range selector, or a selector whose AST shape a
//! function inspects), the union moves up to the function call (DESIGN §4).
//!
//! The match over `Expr` is exhaustive on purpose: a new node kind in promql-parser must fail
//! to compile here rather than pass through unenforced.

use std::sync::LazyLock;

use promql_parser::parser::token::TokenType;
use promql_parser::parser::{
    BinModifier, BinaryExpr, Call, Expr, Function, FunctionArgs, MatrixSelector, ParenExpr,
    StringLiteral, VectorSelector,
};

use super::EnforceError;
use super::selectors::{CompiledClause, absent_labels, applicable, apply_clause};

/// Nodes copied from parsed templates, so built trees are exactly what the parser would build
/// from their printed text (checked after every rewrite).
struct Templates {
    or: (TokenType, Option<BinModifier>),
    and_on: (TokenType, Option<BinModifier>),
    label_replace: Function,
}

static TEMPLATES: LazyLock<Result<Templates, String>> = LazyLock::new(|| {
    fn binary(text: &str) -> Result<(TokenType, Option<BinModifier>), String> {
        match promql_parser::parser::parse(text)? {
            Expr::Binary(b) => Ok((b.op, b.modifier)),
            other => Err(format!("template {text:?} parsed as {other:?}")),
        }
    }
    let label_replace = match promql_parser::parser::parse(r#"label_replace(x, "a", "", "", "")"#)?
    {
        Expr::Call(c) => c.func,
        other => Err(format!("label_replace template parsed as {other:?}"))?,
    };
    Ok(Templates {
        or: binary("x or x")?,
        and_on: binary("x and on () x")?,
        label_replace,
    })
});

fn templates() -> Result<&'static Templates, EnforceError> {
    TEMPLATES
        .as_ref()
        .map_err(|e| EnforceError::Invariant(format!("rewrite templates: {e}")))
}

/// Rewrites one parsed query for a compiled policy.
pub(crate) struct Rewriter<'c> {
    pub clauses: &'c [CompiledClause],
}

impl Rewriter<'_> {
    /// Rewrites the tree in place. Only references live in this frame on the recursive path
    /// (the replacement nodes are built in separate functions), so deep but accepted queries
    /// stay far from the thread's stack limit even in unoptimised builds.
    pub fn rewrite(&self, expr: &mut Expr) -> Result<(), EnforceError> {
        match expr {
            Expr::Aggregate(a) => {
                self.rewrite(&mut a.expr)?;
                if let Some(p) = &mut a.param {
                    self.rewrite(p)?;
                }
            }
            Expr::Unary(u) => self.rewrite(&mut u.expr)?,
            Expr::Binary(b) => {
                self.rewrite(&mut b.lhs)?;
                self.rewrite(&mut b.rhs)?;
            }
            Expr::Paren(p) => self.rewrite(&mut p.expr)?,
            Expr::Subquery(s) => self.rewrite(&mut s.expr)?,
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
            Expr::VectorSelector(vs) => *expr = self.vector(vs)?,
            Expr::MatrixSelector(ms) => *expr = self.bare_matrix(ms)?,
            Expr::Call(call) => {
                if let Some(replacement) = self.call(call)? {
                    *expr = replacement;
                }
            }
            Expr::Extension(ext) => {
                return Err(EnforceError::Unsupported(format!(
                    "extension node {} can't be enforced",
                    ext.expr.name()
                )));
            }
        }
        Ok(())
    }

    /// The clauses to intersect the selector with, after refusing `or` inside braces.
    fn clauses_for(&self, vs: &VectorSelector) -> Result<Vec<&CompiledClause>, EnforceError> {
        if !vs.matchers.or_matchers.is_empty() {
            return Err(EnforceError::Unsupported(
                "`or` inside a selector's braces is not PromQL (Prometheus rejects it)".into(),
            ));
        }
        Ok(applicable(vs, self.clauses))
    }

    #[inline(never)]
    fn vector(&self, vs: &VectorSelector) -> Result<Expr, EnforceError> {
        let parts = self
            .clauses_for(vs)?
            .into_iter()
            .map(|c| Expr::VectorSelector(apply_clause(vs, c)))
            .collect();
        union(parts)
    }

    /// A range selector that no function consumes: the whole query (or a parenthesised
    /// one). It can't hold an `or`, so only a policy that leaves one clause for it works.
    #[inline(never)]
    fn bare_matrix(&self, ms: &MatrixSelector) -> Result<Expr, EnforceError> {
        let clauses = self.clauses_for(&ms.vs)?;
        match clauses.as_slice() {
            [one] => Ok(Expr::MatrixSelector(MatrixSelector {
                vs: apply_clause(&ms.vs, one),
                range: ms.range,
            })),
            _ => Err(EnforceError::Unsupported(
                "a range selector like foo[5m] as the whole query can't be enforced for this \
                 tenant (its access is a union of several selectors); wrap it in a function \
                 such as last_over_time(), or select a single metric the tenant can see"
                    .into(),
            )),
        }
    }

    /// Rewrites a call's arguments in place, or returns the call's replacement when the
    /// union has to move above it.
    fn call(&self, call: &mut Call) -> Result<Option<Expr>, EnforceError> {
        let name = call.func.name;
        if name == "info" {
            return Err(EnforceError::Unsupported(
                "info() looks up series the query does not name and can't be enforced".into(),
            ));
        }
        // Prometheus unwraps parentheses around a function's arguments before looking for the
        // range argument (and before `absent` and `timestamp` look at their selector), so the
        // rewrite does the same.
        let special = call.args.args.iter().position(|a| {
            matches!(unparen(a), Expr::MatrixSelector(_))
                || (matches!(name, "absent" | "timestamp")
                    && matches!(unparen(a), Expr::VectorSelector(_)))
        });
        // The other arguments (scalars, strings, or every argument) are rewritten in place.
        for (i, arg) in call.args.args.iter_mut().enumerate() {
            if Some(i) != special {
                self.rewrite(arg)?;
            }
        }
        match special {
            Some(index) => self.distribute(call, index).map(Some),
            None => Ok(None),
        }
    }

    /// `f(…, S, …)` → `(f(…, S∧C1, …) or f(…, S∧C2, …))` for a range function or
    /// `timestamp` (both per series, so the union of the per-clause calls is the call over
    /// the union); for `absent`/`absent_over_time`, an `and on ()` chain ("absent from
    /// every clause") with the output labels put back.
    #[inline(never)]
    fn distribute(&self, call: &Call, index: usize) -> Result<Expr, EnforceError> {
        let selector = call
            .args
            .args
            .get(index)
            .map(|a| unparen(a))
            .ok_or_else(|| EnforceError::Invariant("selector argument vanished".into()))?;
        let (vs, range) = match selector {
            Expr::VectorSelector(vs) => (vs, None),
            Expr::MatrixSelector(ms) => (&ms.vs, Some(ms.range)),
            other => {
                return Err(EnforceError::Invariant(format!(
                    "unexpected selector argument {other}"
                )));
            }
        };
        let clauses = self.clauses_for(vs)?;
        let calls: Vec<Expr> = clauses
            .iter()
            .map(|c| {
                let enforced = apply_clause(vs, c);
                let arg = match range {
                    Some(range) => Expr::MatrixSelector(MatrixSelector {
                        vs: enforced,
                        range,
                    }),
                    None => Expr::VectorSelector(enforced),
                };
                let mut args = call.args.args.clone();
                *args[index] = arg;
                Expr::Call(Call {
                    func: call.func.clone(),
                    args: FunctionArgs { args },
                })
            })
            .collect();

        if matches!(call.func.name, "absent" | "absent_over_time") {
            let first = clauses
                .first()
                .map(|c| apply_clause(vs, c).matchers.matchers)
                .unwrap_or_default();
            let chained = chain(calls, &templates()?.and_on)?;
            return restore_absent_labels(chained, &vs.matchers.matchers, &first);
        }
        union(calls)
    }
}

/// `(a or b or …)`, or `a` alone. The paren node matters: the printer adds none, and
/// `x * a or b` would mean `(x * a) or b`.
fn union(parts: Vec<Expr>) -> Result<Expr, EnforceError> {
    let mut parts = dedup(parts);
    if parts.len() == 1 {
        return Ok(parts.remove(0));
    }
    chain(parts, &templates()?.or)
}

/// Joins the parts with a binary set operator (left-associative), wrapped in parentheses.
fn chain(parts: Vec<Expr>, op: &(TokenType, Option<BinModifier>)) -> Result<Expr, EnforceError> {
    let mut iter = dedup(parts).into_iter();
    let Some(mut acc) = iter.next() else {
        return Err(EnforceError::Invariant("empty union".into()));
    };
    let mut joined = false;
    for next in iter {
        joined = true;
        acc = Expr::Binary(BinaryExpr {
            op: op.0,
            lhs: Box::new(acc),
            rhs: Box::new(next),
            modifier: op.1.clone(),
        });
    }
    Ok(if joined {
        Expr::Paren(ParenExpr {
            expr: Box::new(acc),
        })
    } else {
        acc
    })
}

fn dedup(parts: Vec<Expr>) -> Vec<Expr> {
    let mut out: Vec<Expr> = Vec::with_capacity(parts.len());
    for p in parts {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// `absent` copies the selector's equality matchers into its output labels. The enforced
/// selector has more of them (the tenant's clause), so put the labels back to what the
/// original selector would give, with `label_replace(…, "l", "v", "", "")` (an empty
/// source label always matches the empty regex; an empty replacement deletes `l`).
fn restore_absent_labels(
    expr: Expr,
    original: &[promql_parser::label::Matcher],
    enforced: &[promql_parser::label::Matcher],
) -> Result<Expr, EnforceError> {
    let want = absent_labels(original);
    let have = absent_labels(enforced);
    let mut fixes: Vec<(String, String)> = have
        .keys()
        .filter(|k| !want.contains_key(*k))
        .map(|k| (k.clone(), String::new()))
        .collect();
    fixes.extend(
        want.iter()
            .filter(|(k, v)| have.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.replace('$', "$$"))),
    );
    if fixes.is_empty() {
        return Ok(expr);
    }
    let func = templates()?.label_replace.clone();
    let string = |s: &str| Box::new(Expr::StringLiteral(StringLiteral { val: s.to_string() }));
    Ok(fixes.into_iter().fold(expr, |acc, (label, value)| {
        Expr::Call(Call {
            func: func.clone(),
            args: FunctionArgs {
                args: vec![
                    Box::new(acc),
                    string(&label),
                    string(&value),
                    string(""),
                    string(""),
                ],
            },
        })
    }))
}

fn unparen(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}
