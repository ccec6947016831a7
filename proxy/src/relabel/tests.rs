use proptest::prelude::*;

use super::*;

/// Rules written the way a `MetricAccess` CR writes them (prometheus-operator field names).
fn rules(yaml: &str) -> Vec<RelabelConfig> {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("bad test YAML {yaml}: {e}"))
}

fn program(yaml: &str) -> RelabelProgram {
    RelabelProgram::compile(&rules(yaml)).unwrap_or_else(|e| panic!("{yaml}: {e:?}"))
}

fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
    let mut v: Vec<Label> = pairs
        .iter()
        .map(|(n, v)| Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// `a=1 b=2`, in output order (so sorting is checked too), or `DROP`.
fn show(kept: bool, ls: &[Label]) -> String {
    if !kept {
        return "DROP".into();
    }
    ls.iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(yaml: &str, input: &[(&str, &str)]) -> String {
    let mut ls = labels(input);
    let kept = program(yaml).apply(&mut ls);
    show(kept, &ls)
}

struct Case {
    name: &'static str,
    rules: &'static str,
    input: &'static [(&'static str, &'static str)],
    want: &'static str,
}

const ABC: &[(&str, &str)] = &[("a", "foo"), ("b", "bar"), ("c", "baz")];

#[rustfmt::skip]
const CASES: &[Case] = &[
    // --- replace and its defaults ---
    Case { name: "defaults: regex (.*), replacement $1, action replace",
        rules: "- {sourceLabels: [a], targetLabel: d}",
        input: ABC, want: "a=foo b=bar c=baz d=foo" },
    Case { name: "default separator is ;",
        rules: "- {sourceLabels: [a, b], targetLabel: d}",
        input: ABC, want: "a=foo b=bar c=baz d=foo;bar" },
    Case { name: "explicit empty separator differs from absent",
        rules: "- {sourceLabels: [a, b], separator: '', targetLabel: d}",
        input: ABC, want: "a=foo b=bar c=baz d=foobar" },
    Case { name: "custom separator; a missing source label is empty",
        rules: "- {sourceLabels: [a, zz, b], separator: ',', targetLabel: d}",
        input: ABC, want: "a=foo b=bar c=baz d=foo,,bar" },
    Case { name: "explicit empty replacement deletes the target",
        rules: "- {sourceLabels: [a], targetLabel: b, replacement: ''}",
        input: ABC, want: "a=foo c=baz" },
    Case { name: "empty expansion deletes the target",
        rules: "- {sourceLabels: [a], regex: 'f(x?)oo', targetLabel: b}",
        input: ABC, want: "a=foo c=baz" },
    Case { name: "no match: no change",
        rules: "- {sourceLabels: [a], regex: 'f', targetLabel: b, replacement: x}",
        input: ABC, want: "a=foo b=bar c=baz" },
    Case { name: "regex is anchored: a substring match is no match",
        rules: "- {sourceLabels: [a], regex: 'o+', targetLabel: d}",
        input: ABC, want: "a=foo b=bar c=baz" },
    Case { name: "explicit empty regex matches only the empty value",
        rules: "- {sourceLabels: [zz], regex: '', targetLabel: d, replacement: empty}\n- {sourceLabels: [a], regex: '', targetLabel: e, replacement: x}",
        input: ABC, want: "a=foo b=bar c=baz d=empty" },
    Case { name: "default regex (.*) does not match across a newline (Go `.`)",
        rules: "- {sourceLabels: [a], targetLabel: d}",
        input: &[("a", "x\ny")], want: "a=x\ny" },
    Case { name: "prometheus: ch${1}-ch${1}",
        rules: "- {sourceLabels: [a], regex: 'f(.*)', targetLabel: d, replacement: 'ch${1}-ch${1}'}",
        input: ABC, want: "a=foo b=bar c=baz d=choo-choo" },
    Case { name: "prometheus: chained replaces see earlier results",
        rules: "- {sourceLabels: [a, b], regex: 'f(.*);(.*)r', targetLabel: a, replacement: 'b${1}${2}m'}\n- {sourceLabels: [c, a], regex: '(b).*b(.*)ba(.*)', targetLabel: d, replacement: '$1$2$2$3'}",
        input: ABC, want: "a=boobam b=bar c=baz d=boooom" },
    Case { name: "${1}x is group 1 then x",
        rules: "- {sourceLabels: [a], regex: 'f(.*)', targetLabel: d, replacement: '${1}x'}",
        input: ABC, want: "a=foo b=bar c=baz d=oox" },
    Case { name: "$1x is the (missing) group named 1x: empty, so the target is deleted",
        rules: "- {sourceLabels: [a], regex: 'f(.*)', targetLabel: b, replacement: '$1x'}",
        input: ABC, want: "a=foo c=baz" },
    Case { name: "$1-x: the name stops at a non-word character",
        rules: "- {sourceLabels: [a], regex: 'f(.*)', targetLabel: d, replacement: '$1-x'}",
        input: ABC, want: "a=foo b=bar c=baz d=oo-x" },
    Case { name: "$$ is a dollar; a malformed $ is literal",
        rules: "- {sourceLabels: [a], regex: 'f(.*)', targetLabel: d, replacement: '$$1 ${ $-'}",
        input: ABC, want: "a=foo b=bar c=baz d=$1 ${ $-" },
    Case { name: "named groups: $name and ${name}; missing names and groups are empty",
        rules: "- {sourceLabels: [a], regex: 'f(?P<rest>.*)', targetLabel: d, replacement: '${rest}-$rest-$nope-$7-$01'}",
        input: ABC, want: "a=foo b=bar c=baz d=oo-oo---" },
    Case { name: "Go-1.22 (?<name>) groups too",
        rules: "- {sourceLabels: [a], regex: 'f(?<rest>.*)', targetLabel: d, replacement: 'x${rest}'}",
        input: ABC, want: "a=foo b=bar c=baz d=xoo" },
    Case { name: "template target label",
        rules: "- {sourceLabels: [a], regex: 'some-([^-]+)-([^,]+)', targetLabel: '${1}', replacement: '${2}'}",
        input: &[("a", "some-name-value")], want: "a=some-name-value name=value" },
    Case { name: "template target that expands to an invalid name is a no-op",
        rules: "- {sourceLabels: [a], regex: 'some-([^-]+)-([^,]+)', targetLabel: '${2}', replacement: x}\n- {sourceLabels: [a], regex: 'some-([^-]+)-([^,]+)', targetLabel: '${3}', replacement: x}",
        input: &[("a", "some-name-0")], want: "a=some-name-0" },
    Case { name: "target expanding to an invalid name through a missing group is a no-op",
        rules: "- {sourceLabels: [a], targetLabel: '$9', replacement: x}",
        input: ABC, want: "a=foo b=bar c=baz" },
    Case { name: "no source labels: value is empty; (.*) matches it",
        rules: "- {targetLabel: d, replacement: set}",
        input: ABC, want: "a=foo b=bar c=baz d=set" },
    Case { name: "replace overwrites an existing label in place",
        rules: "- {sourceLabels: [c], targetLabel: a}",
        input: ABC, want: "a=baz b=bar c=baz" },
    Case { name: "output stays sorted when labels are added before, between and after",
        rules: "- {targetLabel: __aa, replacement: '1'}\n- {targetLabel: ab, replacement: '2'}\n- {targetLabel: zz, replacement: '3'}",
        input: ABC, want: "__aa=1 a=foo ab=2 b=bar c=baz zz=3" },
    Case { name: "input labels with empty values are removed at the end",
        rules: "- {sourceLabels: [a], targetLabel: d}",
        input: &[("a", "x"), ("b", "")], want: "a=x d=x" },
    Case { name: "action is case-insensitive",
        rules: "- {sourceLabels: [a], regex: foo, action: DROP}",
        input: ABC, want: "DROP" },
    // --- keep / drop ---
    Case { name: "drop on match",
        rules: "- {sourceLabels: [a], regex: '.*o.*', action: drop}",
        input: ABC, want: "DROP" },
    Case { name: "drop: f|o is anchored, so no match",
        rules: "- {sourceLabels: [a], regex: 'f|o', action: drop}",
        input: ABC, want: "a=foo b=bar c=baz" },
    Case { name: "drop stops the program",
        rules: "- {sourceLabels: [a], regex: 'foo', action: Drop}\n- {sourceLabels: [a], targetLabel: d}",
        input: ABC, want: "DROP" },
    Case { name: "keep on match",
        rules: "- {sourceLabels: [a], regex: 'f.*', action: keep}",
        input: ABC, want: "a=foo b=bar c=baz" },
    Case { name: "keep without match drops",
        rules: "- {sourceLabels: [a], regex: 'no-match', action: Keep}",
        input: ABC, want: "DROP" },
    Case { name: "keep on joined values",
        rules: "- {sourceLabels: [a, b], regex: 'foo;bar', action: keep}",
        input: ABC, want: "a=foo b=bar c=baz" },
    Case { name: "keep with the default regex keeps anything without a newline, even missing labels",
        rules: "- {sourceLabels: [zz], action: keep}",
        input: ABC, want: "a=foo b=bar c=baz" },
    // --- keepequal / dropequal ---
    Case { name: "keepequal keeps equal",
        rules: "- {sourceLabels: [t], targetLabel: p1, action: keepequal}",
        input: &[("t", "1234"), ("p1", "1234"), ("p2", "5678")], want: "p1=1234 p2=5678 t=1234" },
    Case { name: "keepequal drops unequal",
        rules: "- {sourceLabels: [t], targetLabel: p2, action: KeepEqual}",
        input: &[("t", "1234"), ("p1", "1234"), ("p2", "5678")], want: "DROP" },
    Case { name: "dropequal drops equal",
        rules: "- {sourceLabels: [t], targetLabel: p1, action: dropequal}",
        input: &[("t", "1234"), ("p1", "1234"), ("p2", "5678")], want: "DROP" },
    Case { name: "dropequal keeps unequal; a missing target equals an empty value",
        rules: "- {sourceLabels: [t], targetLabel: p2, action: dropequal}\n- {sourceLabels: [zz], targetLabel: p1, action: keepequal}",
        input: &[("t", "1234"), ("p1", "1234"), ("p2", "5678")], want: "DROP" },
    // --- hashmod: md5 of the value, last 8 bytes big-endian, % modulus ---
    // md5("baz") = 73feffa4b7f6bb68 e44cf984c85f6e88; 0xe44cf984c85f6e88 = 16450797887570275976;
    // % 1000 = 976 (also Prometheus' own relabel_test.go).
    Case { name: "hashmod baz % 1000",
        rules: "- {sourceLabels: [c], targetLabel: d, action: hashmod, modulus: 1000}",
        input: ABC, want: "a=foo b=bar c=baz d=976" },
    // md5("foo\nbar"): see hashmod_of_a_value_with_a_newline_matches_prometheus.
    // md5("foo;bar") = 2d00e96b8b7d9e32 ddadc4ed9df31f3e; 0xddadc4ed9df31f3e = 15973639978189266750;
    // % 17 = 11.
    Case { name: "hashmod over joined values % 17",
        rules: "- {sourceLabels: [a, b], targetLabel: h, action: HashMod, modulus: 17}",
        input: ABC, want: "a=foo b=bar c=baz h=11" },
    // md5("") = d41d8cd98f00b204 e9800998ecf8427e; 0xe9800998ecf8427e = 16825458760271544958;
    // % 10 = 8.
    Case { name: "hashmod of the empty value % 10",
        rules: "- {sourceLabels: [zz], targetLabel: h, action: hashmod, modulus: 10}",
        input: ABC, want: "a=foo b=bar c=baz h=8" },
    // --- labelmap / labeldrop / labelkeep ---
    Case { name: "labelmap (b.*) → bar_${1}; originals kept",
        rules: "- {regex: '(b.*)', replacement: 'bar_${1}', action: labelmap}",
        input: &[("a", "foo"), ("b1", "bar"), ("b2", "baz")], want: "a=foo b1=bar b2=baz bar_b1=bar bar_b2=baz" },
    Case { name: "labelmap __meta_(.+) with the default replacement $1",
        rules: "- {regex: '__meta_(.+)', action: LabelMap}",
        input: &[("__meta_pod", "p"), ("__meta_ns", "n"), ("job", "j")], want: "__meta_ns=n __meta_pod=p job=j ns=n pod=p" },
    Case { name: "labelmap skips results that are not label names",
        rules: "- {regex: '__meta_(.+)', action: labelmap}",
        input: &[("__meta_1x", "p"), ("job", "j")], want: "__meta_1x=p job=j" },
    Case { name: "labelmap overwrites an existing label",
        rules: "- {regex: 'x_(.+)', action: labelmap}",
        input: &[("job", "old"), ("x_job", "new")], want: "job=new x_job=new" },
    Case { name: "labeldrop",
        rules: "- {regex: '(b.*)', action: labeldrop}",
        input: &[("a", "foo"), ("b1", "bar"), ("b2", "baz")], want: "a=foo" },
    Case { name: "labelkeep",
        rules: "- {regex: 'b.*', action: LabelKeep}",
        input: &[("a", "foo"), ("b1", "bar"), ("b2", "baz")], want: "b1=bar b2=baz" },
    Case { name: "labeldrop with a literal regex, then the label is missing for later rules",
        rules: "- {regex: b, action: labeldrop}\n- {sourceLabels: [b], targetLabel: d, replacement: 'was:$1'}",
        input: ABC, want: "a=foo c=baz d=was:" },
    Case { name: "prometheus issue 12283: labeldrop then replace then keep",
        rules: "- {regex: '^port_name$', action: labeldrop}\n- {sourceLabels: [metrics_port], regex: '(.+)', targetLabel: port_name, replacement: metrics}\n- {sourceLabels: [port_name], regex: '^metrics$', action: keep}",
        input: &[("port_name", "foo"), ("metrics_port", "9091")], want: "metrics_port=9091 port_name=metrics" },
    // --- lowercase / uppercase (Go: per-character simple case mapping) ---
    Case { name: "uppercase and lowercase",
        rules: "- {sourceLabels: [foo], targetLabel: up, action: uppercase}\n- {sourceLabels: [foo], targetLabel: low, action: Lowercase}",
        input: &[("foo", "bAr123Foo")], want: "foo=bAr123Foo low=bar123foo up=BAR123FOO" },
    Case { name: "Go case mapping: ß stays, final sigma is σ, İ lowers to i",
        rules: "- {sourceLabels: [a], targetLabel: up, action: uppercase}\n- {sourceLabels: [b], targetLabel: low, action: lowercase}",
        input: &[("a", "straße"), ("b", "ΟΔΟΣ İ")], want: "a=straße b=ΟΔΟΣ İ low=οδοσ i up=STRAßE" },
    Case { name: "lowercase of an empty value deletes the target",
        rules: "- {sourceLabels: [zz], targetLabel: a, action: lowercase}",
        input: ABC, want: "b=bar c=baz" },
    // --- the seed README examples ---
    Case { name: "README: container_* → metrics_path=/metrics/cadvisor",
        rules: "- {sourceLabels: [__name__], regex: 'container_(.*)', targetLabel: metrics_path, replacement: /metrics/cadvisor}\n- {sourceLabels: [__name__], regex: 'kubelet_(.*)', targetLabel: metrics_path, replacement: /metrics}\n- {sourceLabels: [__name__], regex: 'etcd_debugging_.*', action: drop}",
        input: &[("__name__", "container_cpu_usage_seconds_total"), ("pod", "p")], want: "__name__=container_cpu_usage_seconds_total metrics_path=/metrics/cadvisor pod=p" },
    Case { name: "README: kubelet_* → metrics_path=/metrics",
        rules: "- {sourceLabels: [__name__], regex: 'container_(.*)', targetLabel: metrics_path, replacement: /metrics/cadvisor}\n- {sourceLabels: [__name__], regex: 'kubelet_(.*)', targetLabel: metrics_path, replacement: /metrics}\n- {sourceLabels: [__name__], regex: 'etcd_debugging_.*', action: drop}",
        input: &[("__name__", "kubelet_running_pods")], want: "__name__=kubelet_running_pods metrics_path=/metrics" },
    Case { name: "README: etcd_debugging_* dropped, others untouched",
        rules: "- {sourceLabels: [__name__], regex: 'container_(.*)', targetLabel: metrics_path, replacement: /metrics/cadvisor}\n- {sourceLabels: [__name__], regex: 'kubelet_(.*)', targetLabel: metrics_path, replacement: /metrics}\n- {sourceLabels: [__name__], regex: 'etcd_debugging_.*', action: drop}",
        input: &[("__name__", "etcd_debugging_mvcc_keys_total")], want: "DROP" },
    Case { name: "README rules leave an unrelated series alone",
        rules: "- {sourceLabels: [__name__], regex: 'container_(.*)', targetLabel: metrics_path, replacement: /metrics/cadvisor}\n- {sourceLabels: [__name__], regex: 'etcd_debugging_.*', action: drop}",
        input: &[("__name__", "up"), ("job", "x")], want: "__name__=up job=x" },
];

#[test]
fn table() {
    let mut failures = Vec::new();
    for c in CASES {
        let got = run(c.rules, c.input);
        if got != c.want {
            failures.push(format!("{}:\n  want {}\n  got  {}", c.name, c.want, got));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn hashmod_of_a_value_with_a_newline_matches_prometheus() {
    // md5("foo\nbar") = a7 69 99 78 83 86 64 1a | 3e c7 98 55 4f 1f e7 e6.
    // Last 8 bytes big-endian: 0x3ec798554f1fe7e6 = 4523751842884085734; % 1000 = 734, which is
    // also what Prometheus' relabel_test.go expects for this input.
    assert_eq!(0x3ec7_9855_4f1f_e7e6_u64, 4_523_751_842_884_085_734);
    assert_eq!(
        run(
            "- {sourceLabels: [a], targetLabel: b, action: hashmod, modulus: 1000}",
            &[("a", "foo\nbar")]
        ),
        "a=foo\nbar b=734"
    );
}

#[test]
fn hashmod_uses_the_whole_u64_range() {
    // md5("a1b2") = f2e49af795161e14 acf9d9245473a368; 0xacf9d9245473a368 =
    // 12464232193783473000 (> i64::MAX); % (2^63 + 5) = 12464232193783473000 - 9223372036854775813
    // = 3240860156928697187.
    assert_eq!(0xacf9_d924_5473_a368_u64, 12_464_232_193_783_473_000);
    assert_eq!(
        run(
            "- {sourceLabels: [a], targetLabel: h, action: hashmod, modulus: 9223372036854775813}",
            &[("a", "a1b2")]
        ),
        "a=a1b2 h=3240860156928697187"
    );
}

/// Does the Go regex `re` match all of `v` (as a relabel regex, i.e. anchored)?
fn go_match(re: &str, v: &str) -> bool {
    Matcher::compile(Some(re))
        .unwrap_or_else(|e| panic!("{re}: {e}"))
        .is_match(v)
}

#[test]
fn go_regex_semantics() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, bool)] = &[
        // Perl classes are ASCII-only in Go.
        (r"\d+", "123", true),
        (r"\d+", "١٢", false), // Arabic-Indic digits
        (r"\D", "١", true),
        (r"\w+", "a_Z9", true),
        (r"\w+", "é", false),
        (r"\W", "é", true),
        (r"\s", " ", true),
        (r"\s", "\u{a0}", false), // no-break space
        (r"\s", "\u{b}", false),  // Go's \s has no \v
        (r"\S", "\u{a0}", true),
        (r"a\b.*", "a é", true),
        (r"é\b.*", "éa", true), // é is not a word character in Go: a boundary before `a`
        (r".*\Bé", "aé", false), // ... and one after `a`
        // ... inside classes too.
        (r"[\d]+", "42", true),
        (r"[\d]", "٣", false),
        (r"[^\d]", "٣", true),
        (r"[\D]", "٣", true),
        (r"[\D]", "3", false),
        (r"[\w-]+", "a-b", true),
        (r"[\W]", "é", true),
        (r"[\s]", "\u{a0}", false),
        (r"[\S]", "\u{a0}", true),
        // Escaping is respected.
        (r"\\d", r"\d", true),
        (r"\\d", "5", false),
        (r"[\\d]+", r"\d", true),
        // Class contents Rust would read as nesting / set operations are literals in Go.
        (r"[[a]+", "[a", true),
        (r"[a&&b]+", "a&b", true),
        (r"[+--]+", "+,-", true), // Go: the range + to -; Rust would read `--` as set difference
        (r"[a~~b]", "~", true),
        (r"[]a]+", "]a", true),
        (r"[^]a]", "b", true),
        (r"[^]a]", "]", false),
        (r"[a-]+", "a-", true),
        (r"[[:alpha:]]+", "ab", true),
        (r"[[:^digit:]]", "x", true),
        (r"[\x41-\x{43}]+", "ABC", true),
        // Braces that are not a repeat are literals in Go.
        (r"a{,5}", "a{,5}", true),
        (r"x{y}", "x{y}", true),
        (r"a{2}", "aa", true),
        (r"a{2,}", "aaa", true),
        (r"a{1,2}b}", "ab}", true),
        // Other Go syntax.
        (r"\Q.*+\E.", ".*+x", true),
        (r"\Q.*", ".*", true),
        (r"\101\0", "A\0", true),
        (r"\<a\>", "<a>", true),
        (r"\pL+", "éa", true),
        (r"\p{Greek}+", "αβ", true),
        (r"\p{^Greek}", "a", true),
        (r"\P{^Greek}", "α", true),
        (r"(?i)foo", "FoO", true),
        (r"(?i:F)oo", "foo", true),
        (r"(?s).+", "a\nb", true),
        (r".+", "a\nb", false),
        (r"(?U)a+", "aa", true),
        (r"\_\ \!", "_ !", true),
        (r"\x41", "A", true),
        (r"a\z", "a", true),
        (r"\Aa", "a", true),
        // Anchoring is textual, as in Prometheus: `^(?:a)|(b)$` matches any value starting with a.
        (r"a)|(b", "axyz", true),
        (r"a)|(b", "xyz", false),
    ];
    let mut failures = Vec::new();
    for (re, v, want) in cases {
        if go_match(re, v) != *want {
            failures.push(format!("{re} on {v:?}: want {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn go_regex_rejections() {
    for (re, needle) in [
        (r"\C", r"\C"),
        (r"\e", "invalid escape"),
        (r"\1", "invalid escape"),
        (r"(a)\1", "invalid escape"),
        (r"\u0041", "invalid escape"),
        (r"a**", "nested repetition"),
        (r"a*+", "nested repetition"),
        (r"a+{2}", "nested repetition"),
        (r"a{1001}", "repeat count"),
        (r"a{3,2}", "repeat count"),
        (r"(?=a)", "Perl syntax"),
        (r"(?x)a", "Perl syntax"),
        (r"(?i-)a", "Perl syntax"),
        (r"(?P<a-b>x)", "named capture"),
        (r"(?P=a)", "Perl syntax"),
        (r"[a", "missing closing ]"),
        (r"[z-a]", "range"),
        (r"[a--b]", "range"), // Go: the range a to -, which is backwards
        (r"[[:foo:]]", "[:foo:]"),
        (r"\", "trailing backslash"),
        (r"(", "unclosed"),
        (r"\p{NoSuchClass}", ""),
    ] {
        match Matcher::compile(Some(re)) {
            Ok(_) => panic!("{re} should be rejected"),
            Err(e) => assert!(e.contains(needle), "{re}: {e}"),
        }
    }
    // Things Go accepts stay accepted.
    for re in [
        r"a*?",
        r"a+?b??",
        r"(?i-s:a)",
        r"(?)a",
        r"a{1000}",
        r"x{",
        r"}",
    ] {
        assert!(Matcher::compile(Some(re)).is_ok(), "{re}");
    }
}

#[test]
fn fast_paths_agree_with_the_regex_engine() {
    assert!(matches!(Matcher::compile(None), Ok(Matcher::AnyLine)));
    assert!(matches!(
        Matcher::compile(Some("(.*)")),
        Ok(Matcher::AnyLine)
    ));
    assert!(matches!(
        Matcher::compile(Some("up")),
        Ok(Matcher::Literal(l)) if l == "up"
    ));
    let general = Regex::new("^(?:(.*))$").unwrap();
    for v in ["", "a", "a\nb", "\n", "é;x"] {
        assert_eq!(Matcher::AnyLine.is_match(v), general.is_match(v), "{v:?}");
    }
    // A literal with characters that are not regex metacharacters.
    assert!(go_match("a-b_c:d/e f", "a-b_c:d/e f"));
    assert!(!go_match("a-b", "a-bc"));
}

#[test]
fn template_parsing_follows_go_expand() {
    let re = Matcher::compile(Some("(?P<x>a)(b)(?P<y_1>c)")).unwrap();
    let names = re.group_names();
    let caps = re.captures("abc").unwrap();
    for (t, want) in [
        ("$1", "a"),
        ("${1}", "a"),
        ("$2$3", "bc"),
        ("$x$y_1", "ac"),
        ("${x}1", "a1"),
        ("$x1", ""),
        ("$1x", ""),
        ("$0", "abc"),
        ("$00", ""),
        ("$4", ""),
        ("$$x", "$x"),
        ("$", "$"),
        ("${", "${"),
        ("${x", "${x"),
        ("${}", "${}"),
        ("a$-b", "a$-b"),
        ("$é", ""),    // é is a letter: the name `é`, which does not exist
        ("$1é", ""),   // the name `1é`
        ("$1·", "a·"), // U+00B7 is neither letter nor digit
        ("$9999999999", ""),
    ] {
        let mut out = String::new();
        Template::compile(t, &names).expand(|i| caps.group(i), &mut out);
        assert_eq!(out, want, "{t}");
    }
}

fn compile_errors(yaml: &str) -> Vec<String> {
    match RelabelProgram::compile_at("spec.remoteWrite.metricRelabelings", &rules(yaml)) {
        Ok(_) => Vec::new(),
        Err(es) => es.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn compile_errors_name_the_rule_and_field() {
    let errors = compile_errors(
        r#"
- {sourceLabels: [a], targetLabel: b}
- {sourceLabels: [a], action: drop, regex: 'ok.*'}
- {sourceLabels: [a], targetLabel: b, regex: '('}
- {sourceLabels: [a], action: explode}
- {sourceLabels: [a], action: hashmod, targetLabel: s}
- {sourceLabels: ["a-b"], action: drop}
- {sourceLabels: [a], targetLabel: "not-a-label"}
- {sourceLabels: [a], targetLabel: "-${1}"}
- {sourceLabels: [a]}
- {sourceLabels: [a], regex: x, action: labeldrop, separator: ',', replacement: y, targetLabel: t, modulus: 3}
- {sourceLabels: [a], targetLabel: b, regex: x, separator: ',', replacement: y, modulus: 2, action: keepequal}
- {sourceLabels: [a], targetLabel: b, replacement: y, action: lowercase}
- {regex: '(.*)', replacement: '-$1', action: labelmap}
- {sourceLabels: [a], action: hashmod, targetLabel: '${1}', modulus: 2}
- {sourceLabels: [a], action: uppercase}
- {sourceLabels: [a], regex: 'a\C', action: drop}
- {sourceLabels: [a], action: ''}
"#,
    );
    let at = "spec.remoteWrite.metricRelabelings";
    let want = [
        format!("{at}[2].regex: not a valid regex: unclosed group"),
        format!(
            "{at}[3].action: unknown action \"explode\" (one of: replace, keep, drop, keepequal, dropequal, hashmod, labelmap, labeldrop, labelkeep, lowercase, uppercase)"
        ),
        format!("{at}[4].modulus: required (> 0) with action hashmod"),
        format!("{at}[5].sourceLabels[0]: \"a-b\" is not a label name"),
        format!("{at}[6].targetLabel: \"not-a-label\" is not a label name"),
        format!(
            "{at}[7].targetLabel: \"-${{1}}\" is not a label name (with optional $1 / ${{name}} templates)"
        ),
        format!("{at}[8].targetLabel: required with action replace"),
        format!("{at}[9].sourceLabels: not allowed with action labeldrop (only regex may be set)"),
        format!("{at}[9].targetLabel: not allowed with action labeldrop (only regex may be set)"),
        format!("{at}[9].modulus: not allowed with action labeldrop (only regex may be set)"),
        format!("{at}[9].separator: not allowed with action labeldrop (only regex may be set)"),
        format!("{at}[9].replacement: not allowed with action labeldrop (only regex may be set)"),
        format!(
            "{at}[10].regex: not allowed with action keepequal (only sourceLabels and targetLabel may be set)"
        ),
        format!(
            "{at}[10].modulus: not allowed with action keepequal (only sourceLabels and targetLabel may be set)"
        ),
        format!(
            "{at}[10].separator: not allowed with action keepequal (only sourceLabels and targetLabel may be set)"
        ),
        format!(
            "{at}[10].replacement: not allowed with action keepequal (only sourceLabels and targetLabel may be set)"
        ),
        format!("{at}[11].replacement: not allowed with action lowercase"),
        format!(
            "{at}[12].replacement: \"-$1\" is not a label name (with optional $1 / ${{name}} templates)"
        ),
        format!("{at}[13].targetLabel: \"${{1}}\" is not a label name"),
        format!("{at}[14].targetLabel: required with action uppercase"),
        format!(
            "{at}[15].regex: not a valid regex: invalid escape sequence `\\C` (match any byte is not supported)"
        ),
        format!(
            "{at}[16].action: unknown action \"\" (one of: replace, keep, drop, keepequal, dropequal, hashmod, labelmap, labeldrop, labelkeep, lowercase, uppercase)"
        ),
    ];
    assert_eq!(errors, want);
}

#[test]
fn compile_accepts_what_prometheus_accepts() {
    for yaml in [
        // Explicit defaults are fine where other values are not.
        "- {sourceLabels: [t], targetLabel: p, separator: ';', replacement: '$1', modulus: 0, action: dropequal}",
        "- {regex: x, separator: ';', replacement: '$1', action: labelkeep}",
        "- {sourceLabels: [a], targetLabel: b, replacement: '$1', action: uppercase}",
        // Templates in replace targets.
        "- {sourceLabels: [a], targetLabel: 'x_${1}_$2y', regex: '(.)(.)'}",
        // keep/drop/labelmap ignore targetLabel and modulus, like Prometheus.
        "- {sourceLabels: [a], targetLabel: 'any-thing', modulus: 3, action: keep}",
        "- {regex: '__meta_(.+)', replacement: 'k8s_${1}', action: labelmap}",
    ] {
        assert!(
            RelabelProgram::compile(&rules(yaml)).is_ok(),
            "{yaml}: {:?}",
            RelabelProgram::compile(&rules(yaml)).err()
        );
    }
    let p = RelabelProgram::compile(&[]).unwrap();
    assert!(p.is_empty() && RelabelProgram::default().is_empty());
    assert!(!program("- {sourceLabels: [a], action: drop}").is_empty());
}

#[test]
fn compile_defaults_to_the_metric_relabelings_path() {
    let e = RelabelProgram::compile(&rules("- {regex: '('}\n- {regex: '(', targetLabel: x}"))
        .unwrap_err();
    assert_eq!(e[0].field, "metricRelabelings[0].regex");
    assert_eq!(e[1].field, "metricRelabelings[0].targetLabel");
    assert_eq!(e[2].field, "metricRelabelings[1].regex");
    assert_eq!(e.len(), 3);
}

#[test]
fn an_empty_program_only_removes_empty_values() {
    let mut ls = labels(&[("a", "1"), ("b", ""), ("c", "3")]);
    assert!(RelabelProgram::default().apply(&mut ls));
    assert_eq!(show(true, &ls), "a=1 c=3");
}

/// Rules that exercise every action, for the property test.
const POOL: &[&str] = &[
    "{sourceLabels: [a], targetLabel: b}",
    "{sourceLabels: [a, b], separator: '', targetLabel: a}",
    "{sourceLabels: [a], regex: '(.)(.*)', targetLabel: '${1}', replacement: '$2'}",
    "{sourceLabels: [b], regex: '([a-c]*)', targetLabel: '_$1', replacement: ''}",
    "{sourceLabels: [c], targetLabel: zz, replacement: '$1$1'}",
    "{sourceLabels: [a], regex: 'a.*', action: drop}",
    "{sourceLabels: [b], regex: '.*', action: keep}",
    "{sourceLabels: [a], targetLabel: c, action: keepequal}",
    "{sourceLabels: [a], targetLabel: b, action: dropequal}",
    "{sourceLabels: [a, c], targetLabel: h, action: hashmod, modulus: 3}",
    "{regex: '(.)', replacement: 'm_$1', action: labelmap}",
    "{regex: '__meta_(.*)', action: labelmap}",
    "{regex: '[ab]', action: labeldrop}",
    "{regex: '[a-c_].*', action: labelkeep}",
    "{sourceLabels: [a], targetLabel: A, action: uppercase}",
    "{sourceLabels: [c], targetLabel: a, action: lowercase}",
];

proptest! {
    #[test]
    fn apply_never_panics_and_keeps_the_label_set_well_formed(
        input in proptest::collection::btree_map(
            "(a|b|c|h|zz|__name__|__meta_|__meta_x|A)",
            "(|[a-cA-C;ß\n]{1,4})",
            0..8,
        ),
        picks in proptest::collection::vec(0..POOL.len(), 0..6),
    ) {
        let yaml: String = picks.iter().map(|&i| format!("- {}\n", POOL[i])).collect();
        let p = if yaml.is_empty() { RelabelProgram::default() } else { program(&yaml) };
        let mut ls: Vec<Label> = input
            .iter()
            .map(|(n, v)| Label { name: n.clone(), value: v.clone() })
            .collect();
        if p.apply(&mut ls) {
            for w in ls.windows(2) {
                prop_assert!(w[0].name < w[1].name, "not sorted/unique: {ls:?}");
            }
            for l in &ls {
                prop_assert!(!l.value.is_empty(), "empty value: {ls:?}");
                prop_assert!(!l.name.is_empty(), "empty name: {ls:?}");
            }
        }
    }
}

#[test]
fn regex_shapes_match_like_the_engine() {
    // (pattern, matched without the engine?)
    let patterns = [
        ("id|uid", true),
        ("tenant-[0-3][0-9]|monitoring|", true),
        (
            "go_memstats_.*|container_memory_cache|container_fs_.*",
            true,
        ),
        (".*_total", true),
        (".*err.*|w", true),
        ("(a|b)", true),
        ("(?i)abc", true),
        ("x.*|.*y|.*z.*|w", true),
        (".*", true),
        ("é|ü", true),
        ("a{2,3}|[ab]{1,2}", false),
        ("ab?c", true),
        // Look-arounds, infinite languages, dot-all: the engine decides.
        (r"a\b", false),
        ("a.*b", false),
        (r"\d+", false),
        (".+", false),
        ("foo.+", false),
        ("(?s:.*)x", false),
        ("[a-z][a-z]", false),
    ];
    let inputs = [
        "",
        "id",
        "uid",
        "xid",
        "tenant-00",
        "tenant-39",
        "tenant-40",
        "tenant-3",
        "monitoring",
        "go_memstats_x",
        "go_memstats_",
        "go_memstats_\n",
        "container_fs_reads",
        "container_memory_cache",
        "x_total",
        "_total",
        "_total\n",
        "err",
        "my_err_x",
        "a",
        "b",
        "ab",
        "abc",
        "ABC",
        "aBc",
        "é",
        "ü",
        "aaa",
        "aa",
        "ac",
        "abbc",
        "a\nb",
        "x\ny",
        "wz",
        "w",
        "xy",
        "y",
        "zz",
        "\nz",
        "foo",
        "foox",
        "bb",
    ];
    for (re, fast) in patterns {
        let m = Matcher::compile(Some(re)).unwrap_or_else(|e| panic!("{re}: {e}"));
        assert_eq!(m.is_fast(), fast, "{re}");
        let engine = Regex::new(&format!(
            "^(?:{})$",
            goregex::translate(re).expect("translates")
        ))
        .expect("compiles");
        for v in inputs {
            assert_eq!(m.is_match(v), engine.is_match(v), "{re} on {v:?}");
        }
    }
}

#[test]
fn borrowed_labels_are_copied_only_where_a_rule_writes() {
    let p = program(
        "- {sourceLabels: [a], regex: 'f(o+)', targetLabel: d, replacement: 'x$1'}\n\
         - {regex: 'c', action: labeldrop}",
    );
    let input = labels(ABC);
    let mut cow: Vec<CowLabel<'_>> = input
        .iter()
        .map(|l| CowLabel::borrowed(&l.name, &l.value))
        .collect();
    assert!(p.apply(&mut cow));
    let shown: Vec<String> = cow
        .iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect();
    assert_eq!(shown, ["a=foo", "b=bar", "d=xoo"]);
    // a and b untouched: still borrowed; d is new.
    let borrowed: Vec<bool> = cow.iter().map(CowLabel::is_borrowed).collect();
    assert_eq!(borrowed, [true, true, false]);
}

proptest! {
    #[test]
    fn memo_and_borrowed_labels_give_the_same_answers_as_the_plain_engine(
        inputs in proptest::collection::vec(
            proptest::collection::btree_map(
                "(a|b|c|h|zz|__name__|__meta_|__meta_x|A)",
                "(|[a-cA-C;ß\n]{1,4})",
                0..8,
            ),
            1..6,
        ),
        picks in proptest::collection::vec(0..POOL.len(), 1..6),
    ) {
        let yaml: String = picks.iter().map(|&i| format!("- {}\n", POOL[i])).collect();
        let p = program(&yaml);
        // One memo across the batch, as the ingest gateway keeps one per request.
        let mut memo = RelabelMemo::default();
        for input in &inputs {
            let owned: Vec<Label> = input
                .iter()
                .map(|(n, v)| Label { name: n.clone(), value: v.clone() })
                .collect();
            let mut plain = owned.clone();
            let want_kept = p.apply(&mut plain);
            let mut memoized = owned.clone();
            prop_assert_eq!(p.apply_with(&mut memoized, &mut memo), want_kept);
            let mut cow: Vec<CowLabel<'_>> =
                owned.iter().map(|l| CowLabel::borrowed(&l.name, &l.value)).collect();
            prop_assert_eq!(p.apply_with(&mut cow, &mut memo), want_kept);
            if want_kept {
                prop_assert_eq!(&memoized, &plain);
                let cow: Vec<Label> = cow
                    .iter()
                    .map(|l| Label { name: l.name.to_string(), value: l.value.to_string() })
                    .collect();
                prop_assert_eq!(&cow, &plain);
            }
        }
    }
}
