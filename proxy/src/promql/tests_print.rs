//! The printer's round-trip property: `parse(print(tree)) == tree` for every tree the parser
//! makes (the corpus, the shapes promql-parser's own printer loses, generated queries), and for
//! generated trees the parser never made, a text that parses means that tree or nothing.

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTR, T_LAND, T_LOR, T_LUNLESS, T_MOD, T_MUL, T_POW, T_SUB,
    TokenType,
};
use promql_parser::parser::{
    BinModifier, BinaryExpr, Expr, LabelModifier, NumberLiteral, Offset, ParenExpr, UnaryExpr,
    VectorMatchCardinality, VectorSelector,
};
use proptest::prelude::*;

use super::print::print;

const CORPUS: &str = include_str!("../../../fixtures/queries/corpus.promql");

fn parse(q: &str) -> Expr {
    promql_parser::parser::parse(q).unwrap_or_else(|e| panic!("{q:?} does not parse: {e}"))
}

/// Prints `q`'s tree and checks the text parses back to the same tree; returns the text.
fn round_trip(q: &str) -> String {
    let tree = parse(q);
    let text = print(&tree).unwrap_or_else(|e| panic!("{q:?} was refused: {e}"));
    let back = parse(&text);
    assert!(
        back == tree,
        "{q:?} printed as {text:?}, which means another tree"
    );
    text
}

fn corpus() -> impl Iterator<Item = &'static str> {
    CORPUS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

#[test]
fn corpus_round_trips_and_prints_like_promql_parser() {
    let mut checked = 0;
    for q in corpus() {
        let Ok(mut tree) = promql_parser::parser::parse(q) else {
            continue;
        };
        let text = round_trip(q);
        // Where promql-parser's printer is faithful, ours writes the same text (so enforced
        // queries and their snapshots are unchanged); it sorts matchers, so compare on a tree
        // whose matchers are sorted as the rewrite sorts them.
        sort_all_matchers(&mut tree);
        let stock = tree.to_string();
        if promql_parser::parser::parse(&stock).is_ok_and(|t| t == tree) {
            assert_eq!(print(&tree).unwrap(), stock, "{q:?}");
        }
        assert!(!text.is_empty());
        checked += 1;
    }
    assert!(checked > 150, "only {checked} corpus queries parsed");
}

fn sort_all_matchers(e: &mut Expr) {
    match e {
        Expr::Aggregate(a) => {
            sort_all_matchers(&mut a.expr);
            if let Some(p) = &mut a.param {
                sort_all_matchers(p);
            }
        }
        Expr::Unary(u) => sort_all_matchers(&mut u.expr),
        Expr::Binary(b) => {
            sort_all_matchers(&mut b.lhs);
            sort_all_matchers(&mut b.rhs);
        }
        Expr::Paren(p) => sort_all_matchers(&mut p.expr),
        Expr::Subquery(s) => sort_all_matchers(&mut s.expr),
        Expr::VectorSelector(vs) => super::selectors::sort_matchers(vs),
        Expr::MatrixSelector(ms) => super::selectors::sort_matchers(&mut ms.vs),
        Expr::Call(c) => c.args.args.iter_mut().for_each(|a| sort_all_matchers(a)),
        _ => {}
    }
}

/// The shapes promql-parser prints lossily, and the tricky ones: each is written faithfully.
#[test]
fn lossy_shapes_print_faithfully() {
    for (q, want) in [
        ("sum by () (x)", "sum by () (x)"),
        ("sum(x) by ()", "sum by () (x)"),
        ("sum without () (x)", "sum without () (x)"),
        ("x * ignoring () y", "x * ignoring () y"),
        ("x * on () y", "x * on () y"),
        ("x and on () y", "x and on () y"),
        (
            "x / ignoring (a) group_left y",
            "x / ignoring (a) group_left () y",
        ),
        ("x > bool 1", "x > bool 1"),
        ("up @ -100", "up @ -100.000"),
        ("up @ -0.5", "up @ -0.500"),
        ("up @ 1609746000", "up @ 1609746000.000"),
        ("rate(up[1.5])", "rate(up[1s500ms])"),
        ("rate(up[90s])", "rate(up[1m30s])"),
        ("up offset -5m", "up offset -5m"),
        ("max_over_time((up)[10m:])", "max_over_time((up)[10m:])"),
        ("up offset 5m[10m:1m]", "up offset 5m[10m:1m]"),
        ("-2 ^ 2", "-2 ^ 2"),
        ("(-2) ^ 2", "(-2) ^ 2"),
        ("2 ^ -2", "2 ^ -2"),
        ("2 ^ 3 ^ 2", "2 ^ 3 ^ 2"),
        ("(2 ^ 3) ^ 2", "(2 ^ 3) ^ 2"),
        ("1 - 2 - 3", "1 - 2 - 3"),
        ("1 - (2 - 3)", "1 - (2 - 3)"),
        ("-up * 2", "-up * 2"),
        ("-(up * 2)", "-(up * 2)"),
        ("- -up", "--up"),
        ("-(-1)", "-(-1)"),
        ("x - -1", "x - -1"),
        ("1e3", "1000"),
        ("0x10", "16"),
        ("-Inf", "-Inf"),
        ("NaN", "NaN"),
        (
            r#"label_replace(up, "a", "$1", "b", "(.*)\\d")"#,
            r#"label_replace(up, "a", "$1", "b", "(.*)\\d")"#,
        ),
        (r#"{"foo.bar"="x"}"#, r#"{"foo.bar"="x"}"#),
        (r#"{"foo.bar"}"#, r#"{__name__="foo.bar"}"#),
        ("sum by (\"a.b\") (x)", "sum by (\"a.b\") (x)"),
        ("sum{job=\"a\"}", "sum{job=\"a\"}"),
        ("sum{}", "sum{}"),
        ("offset{} offset 5m", "offset{} offset 5m"),
        ("count(count{})", "count(count{})"),
        ("up{a=\"\\x07\\n\\t\\\"\"}", "up{a=\"\\x07\\n\\t\\\"\"}"),
        ("topk(3, up)", "topk(3, up)"),
        ("count_values(\"v\", up)", "count_values(\"v\", up)"),
        ("up @ start() offset 1m", "up @ start() offset 1m"),
        ("rate(up[5m] @ end())", "rate(up[5m] @ end())"),
    ] {
        assert_eq!(round_trip(q), want, "{q:?}");
    }
}

#[test]
fn refuses_trees_without_faithful_text() {
    let vs = |n: &str| Expr::VectorSelector(VectorSelector::from(n));
    let num = |v: f64| Expr::NumberLiteral(NumberLiteral::new(v));
    let bin = |op, l: Expr, r: Expr| {
        Expr::Binary(BinaryExpr {
            op: TokenType::new(op),
            lhs: Box::new(l),
            rhs: Box::new(r),
            modifier: None,
        })
    };
    let unary = |e: Expr| Expr::Unary(UnaryExpr { expr: Box::new(e) });
    for tree in [
        // (a + b) * c without its parentheses.
        bin(T_MUL, bin(T_ADD, vs("a"), vs("b")), vs("c")),
        // a - (b - c) without its parentheses.
        bin(T_SUB, vs("a"), bin(T_SUB, vs("b"), vs("c"))),
        // (a ^ b) ^ c without its parentheses.
        bin(T_POW, bin(T_POW, vs("a"), vs("b")), vs("c")),
        // (-a) ^ b: `-a ^ b` would be -(a ^ b).
        bin(T_POW, unary(vs("a")), vs("b")),
        bin(T_POW, num(-1.0), vs("b")),
        // -(a * b) without parentheses.
        unary(bin(T_MUL, vs("a"), vs("b"))),
        // A unary minus over a number is folded by the parser.
        unary(num(1.0)),
        // `or` without the parser's many-to-many matching.
        bin(T_LOR, vs("a"), vs("b")),
        // A zero offset: the parser refuses `offset 0s`.
        Expr::VectorSelector(VectorSelector {
            offset: Some(Offset::Pos(std::time::Duration::ZERO)),
            ..VectorSelector::from("a")
        }),
        // Sub-millisecond durations.
        Expr::VectorSelector(VectorSelector {
            offset: Some(Offset::Pos(std::time::Duration::from_micros(1500))),
            ..VectorSelector::from("a")
        }),
        // `or` inside braces, a name that is a keyword of another kind, no name nor matchers.
        Expr::VectorSelector(VectorSelector::new(
            None,
            Matchers::new(vec![]).with_or_matchers(vec![vec![Matcher::new(
                MatchOp::Equal,
                "a",
                "b",
            )]]),
        )),
        vs("bool"),
        vs("nan"),
        Expr::VectorSelector(VectorSelector::new(None, Matchers::empty())),
    ] {
        assert!(
            print(&tree).is_err(),
            "{tree:?} printed as {:?}",
            print(&tree)
        );
    }
    // A modifier that writes nothing, on an arithmetic operator.
    let mut b = BinaryExpr {
        op: TokenType::new(T_ADD),
        lhs: Box::new(vs("a")),
        rhs: Box::new(vs("b")),
        modifier: Some(BinModifier::default()),
    };
    assert!(print(&Expr::Binary(b.clone())).is_err());
    b.modifier = Some(BinModifier::default().with_card(VectorMatchCardinality::ManyToMany));
    assert!(print(&Expr::Binary(b)).is_err());
}

// --- Generated trees: whatever the printer writes parses back to the tree, or not at all. ---

const OPS: &[u16] = &[
    T_ADD, T_SUB, T_MUL, T_DIV, T_MOD, T_POW, T_ATAN2, T_EQLC, T_GTR, T_LAND, T_LOR, T_LUNLESS,
];
const NAMES: &[&str] = &["up", "foo", "sum", "offset", "by", "nan", "bool", "a:b"];
const LABELS: &[&str] = &["job", "le", "by", "on", "nan", "a.b", "without", ""];
const VALUES: &[&str] = &["", "a", "x.*", "\"", "\\", "\u{7}\n", "é", "a|b"];

fn leaf() -> impl Strategy<Value = Expr> {
    let selector = (
        proptest::option::of(0..NAMES.len()),
        proptest::collection::vec((0..LABELS.len(), 0..4usize, 0..VALUES.len()), 0..3),
        proptest::option::of(-3_600_000i64..3_600_000),
        proptest::option::of(-10_000_000i64..10_000_000),
    )
        .prop_filter_map("a matcher does not compile", |(name, ms, offset, at)| {
            let mut matchers = Vec::new();
            for (l, op, v) in ms {
                let op = [
                    promql_parser::parser::token::T_EQL,
                    promql_parser::parser::token::T_NEQ,
                    promql_parser::parser::token::T_EQL_REGEX,
                    promql_parser::parser::token::T_NEQ_REGEX,
                ][op];
                matchers.push(Matcher::new_matcher(op, LABELS[l].into(), VALUES[v].into()).ok()?);
            }
            let mut vs =
                VectorSelector::new(name.map(|n| NAMES[n].to_string()), Matchers::new(matchers));
            vs.offset = offset.map(|ms| {
                let d = std::time::Duration::from_millis(ms.unsigned_abs());
                if ms < 0 {
                    Offset::Neg(d)
                } else {
                    Offset::Pos(d)
                }
            });
            vs.at = at.and_then(|ms| {
                promql_parser::parser::AtModifier::try_from(ms as f64 / 1000.0).ok()
            });
            Some(Expr::VectorSelector(vs))
        });
    prop_oneof![
        4 => selector,
        1 => prop_oneof![Just(0.0), Just(-0.0), Just(1.5), Just(-2.0), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(1e21), Just(1e-7)]
            .prop_map(|v| Expr::NumberLiteral(NumberLiteral::new(v))),
    ]
}

fn tree() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (0..OPS.len(), inner.clone(), inner.clone(), 0..5usize).prop_map(|(op, l, r, m)| {
                let op = TokenType::new(OPS[op]);
                let modifier = match m {
                    0 => None,
                    1 => Some(BinModifier::default().with_card(VectorMatchCardinality::ManyToMany)),
                    2 => Some(
                        BinModifier::default().with_matching(Some(LabelModifier::include(vec![]))),
                    ),
                    3 => Some(BinModifier::default().with_return_bool(true)),
                    _ => Some(
                        BinModifier::default()
                            .with_matching(Some(LabelModifier::exclude(vec!["job"])))
                            .with_card(VectorMatchCardinality::many_to_one(vec![])),
                    ),
                };
                Expr::Binary(BinaryExpr {
                    op,
                    lhs: Box::new(l),
                    rhs: Box::new(r),
                    modifier,
                })
            }),
            inner
                .clone()
                .prop_map(|e| Expr::Unary(UnaryExpr { expr: Box::new(e) })),
            inner
                .clone()
                .prop_map(|e| Expr::Paren(ParenExpr { expr: Box::new(e) })),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn printed_trees_mean_themselves_or_nothing(t in tree()) {
        if let Ok(text) = print(&t)
            && let Ok(back) = promql_parser::parser::parse(&text)
        {
            prop_assert!(back == t, "{:?} printed as {:?}, which parses to {:?}", t, text, back);
        }
    }

    /// A parsed tree always has a text, and it is that tree.
    #[test]
    fn parsed_trees_round_trip(t in tree()) {
        let Ok(text) = print(&t) else { return Ok(()) };
        let Ok(parsed) = promql_parser::parser::parse(&text) else { return Ok(()) };
        let again = print(&parsed).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&again, &text);
    }

    #[test]
    fn generated_queries_round_trip(q in super::tests_props::query()) {
        if let Ok(tree) = promql_parser::parser::parse(&q) {
            let text = print(&tree).map_err(|e| TestCaseError::fail(format!("{q:?}: {e}")))?;
            let back = promql_parser::parser::parse(&text)
                .map_err(|e| TestCaseError::fail(format!("{q:?} printed as {text:?}: {e}")))?;
            prop_assert!(back == tree, "{:?} printed as {:?}", q, text);
        }
    }
}
