//! Go RE2 (`regexp/syntax`, Perl flags) → Rust `regex` syntax, so a rule's regex means what it
//! means in Prometheus. What differs and is rewritten here:
//!
//! - `\d \w \s \b` (and `\D \W \S \B`) are ASCII-only in Go, Unicode in Rust.
//! - Inside `[...]`, Go takes `[`, `&&`, `--`, `~~` literally; Rust nests classes / set
//!   operations. Every class is re-emitted with its literals escaped.
//! - Go takes `{` literally when it does not start a valid repeat (`a{,5}`, `x{y}`), and
//!   rejects repeat counts above 1000 and stacked repeats (`a**`).
//! - Go has `\Q...\E` and octal `\123`; Rust has neither. `\<`/`\>` are literals in Go,
//!   word boundaries in Rust. `\C` and escapes Go does not know are rejected, like Go does.
//! - Group names are `[A-Za-z0-9_]+`, flags are `imsU`, as in Go.

use std::fmt::Write as _;

/// Go's repeat-count limit (`regexp/syntax`: counts above 1000 are an error).
const MAX_REPEAT: u32 = 1000;

const PERL_D: &str = "0-9";
const PERL_W: &str = "0-9A-Za-z_";
const PERL_S: &str = r"\x{9}\x{A}\x{C}\x{D}\x{20}";

/// Translate the Go pattern `re` (not yet anchored) to an equivalent Rust pattern.
pub(crate) fn translate(re: &str) -> Result<String, String> {
    Translator {
        s: re.chars().collect(),
        i: 0,
        out: String::with_capacity(re.len() + 8),
        last_repeat: false,
    }
    .run()
}

struct Translator {
    s: Vec<char>,
    i: usize,
    out: String,
    /// The previous token was a repetition operator (Go rejects `a**`, `a*{2}`).
    last_repeat: bool,
}

impl Translator {
    fn peek(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    fn rest(&self) -> String {
        self.s[self.i..].iter().collect()
    }

    fn run(mut self) -> Result<String, String> {
        while let Some(c) = self.peek(0) {
            match c {
                '*' | '+' | '?' => {
                    self.i += 1;
                    self.repeat(&c.to_string())?;
                }
                '{' => match self.parse_repeat() {
                    Some((text, n, m)) => {
                        if n > MAX_REPEAT || m.is_some_and(|m| m > MAX_REPEAT || m < n) {
                            return Err(format!("invalid repeat count `{text}`"));
                        }
                        self.repeat(&text)?;
                    }
                    None => {
                        self.i += 1;
                        self.literal('{');
                    }
                },
                '}' => {
                    self.i += 1;
                    self.literal('}');
                }
                '[' => {
                    self.class()?;
                    self.last_repeat = false;
                }
                '(' => {
                    self.group()?;
                    self.last_repeat = false;
                }
                '\\' => {
                    self.escape()?;
                    self.last_repeat = false;
                }
                _ => {
                    self.i += 1;
                    self.out.push(c);
                    self.last_repeat = false;
                }
            }
        }
        Ok(self.out)
    }

    /// Emit the repetition operator `op` (already consumed) and an optional non-greedy `?`.
    fn repeat(&mut self, op: &str) -> Result<(), String> {
        let mut text = op.to_string();
        if self.peek(0) == Some('?') {
            self.i += 1;
            text.push('?');
        }
        if self.last_repeat {
            return Err(format!("invalid nested repetition operator `{text}`"));
        }
        self.out.push_str(&text);
        self.last_repeat = true;
        Ok(())
    }

    /// `{n}`, `{n,}`, `{n,m}` at the cursor: consumes it and returns (text, n, m); None (and
    /// nothing consumed) when the `{` is a literal in Go.
    fn parse_repeat(&mut self) -> Option<(String, u32, Option<u32>)> {
        let start = self.i;
        let mut j = start + 1;
        let num = |j: &mut usize| -> Option<u32> {
            let b = *j;
            while self.s.get(*j).is_some_and(char::is_ascii_digit) {
                *j += 1;
            }
            (*j > b).then(|| {
                let t: String = self.s[b..*j].iter().collect();
                // Overlong counts are invalid sizes, not literals (Go: -1 → invalid).
                t.parse().unwrap_or(u32::MAX)
            })
        };
        let n = num(&mut j)?;
        let m = if self.s.get(j) == Some(&',') {
            j += 1;
            if self.s.get(j) == Some(&'}') {
                None
            } else {
                Some(num(&mut j)?)
            }
        } else {
            Some(n)
        };
        if self.s.get(j) != Some(&'}') {
            return None;
        }
        self.i = j + 1;
        Some((self.s[start..self.i].iter().collect(), n, m))
    }

    fn literal(&mut self, c: char) {
        self.out
            .push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
        self.last_repeat = false;
    }

    /// `(`: capture, named capture, flags or non-capturing group.
    fn group(&mut self) -> Result<(), String> {
        self.i += 1; // (
        if self.peek(0) != Some('?') {
            self.out.push('(');
            return Ok(());
        }
        let named = match (self.peek(1), self.peek(2)) {
            (Some('P'), Some('<')) => Some(3),
            (Some('<'), _) => Some(2),
            _ => None,
        };
        if let Some(skip) = named {
            let begin = self.i + skip;
            let Some(end) = (begin..self.s.len()).find(|&k| self.s[k] == '>') else {
                return Err(format!("invalid named capture `({}`", self.rest()));
            };
            let name: String = self.s[begin..end].iter().collect();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid named capture `(?P<{name}>`"));
            }
            write!(self.out, "(?P<{name}>").expect("string write");
            self.i = end + 1;
            return Ok(());
        }
        // Flags: Go's loop in `parsePerlFlags`.
        let start = self.i - 1;
        self.i += 1; // ?
        let mut flags = String::new();
        let mut negated = false;
        let mut saw_flag = false;
        while let Some(c) = self.peek(0) {
            self.i += 1;
            match c {
                'i' | 'm' | 's' | 'U' => {
                    flags.push(c);
                    saw_flag = true;
                }
                '-' if !negated => {
                    negated = true;
                    saw_flag = false;
                    flags.push('-');
                }
                ':' | ')' if !negated || saw_flag => {
                    match (flags.is_empty(), c) {
                        (true, ':') => self.out.push_str("(?:"),
                        (true, _) => {}
                        (false, _) => write!(self.out, "(?{flags}{c}").expect("string write"),
                    }
                    return Ok(());
                }
                _ => break,
            }
        }
        let seen: String = self.s[start..self.i].iter().collect();
        Err(format!(
            "invalid or unsupported Perl syntax `{seen}` (Go regexp has no lookaround or backreferences)"
        ))
    }

    /// `\` outside a class.
    fn escape(&mut self) -> Result<(), String> {
        let Some(c) = self.peek(1) else {
            return Err("trailing backslash at end of expression".into());
        };
        let emit = |t: &str, this: &mut Self| {
            this.i += 2;
            this.out.push_str(t);
            Ok(())
        };
        match c {
            'A' => emit(r"\A", self),
            'z' => emit(r"\z", self),
            'b' => emit(r"(?-u:\b)", self),
            'B' => emit(r"(?-u:\B)", self),
            'd' => emit(&format!("[{PERL_D}]"), self),
            'D' => emit(&format!("[^{PERL_D}]"), self),
            'w' => emit(&format!("[{PERL_W}]"), self),
            'W' => emit(&format!("[^{PERL_W}]"), self),
            's' => emit(&format!("[{PERL_S}]"), self),
            'S' => emit(&format!("[^{PERL_S}]"), self),
            'C' => Err(r"invalid escape sequence `\C` (match any byte is not supported)".into()),
            'Q' => {
                self.i += 2;
                while self.i < self.s.len() {
                    if self.s[self.i] == '\\' && self.peek(1) == Some('E') {
                        self.i += 2;
                        break;
                    }
                    let c = self.s[self.i];
                    self.i += 1;
                    self.literal(c);
                }
                Ok(())
            }
            'p' | 'P' => {
                let class = self.unicode_class()?;
                self.out.push_str(&class);
                Ok(())
            }
            _ => {
                let c = self.escaped_char()?;
                self.literal(c);
                Ok(())
            }
        }
    }

    /// `\p{Name}`, `\p{^Name}`, `\pN` (and `\P`) at the cursor, as Rust syntax.
    fn unicode_class(&mut self) -> Result<String, String> {
        let mut neg = self.peek(1) == Some('P');
        self.i += 2;
        let name: String = match self.peek(0) {
            Some('{') => {
                let Some(end) = (self.i..self.s.len()).find(|&k| self.s[k] == '}') else {
                    return Err(format!(
                        "invalid character class range `\\p{}`",
                        self.rest()
                    ));
                };
                let mut name: String = self.s[self.i + 1..end].iter().collect();
                self.i = end + 1;
                if let Some(n) = name.strip_prefix('^') {
                    neg = !neg;
                    name = n.to_string();
                }
                name
            }
            Some(c) => {
                self.i += 1;
                c.to_string()
            }
            None => return Err(r"invalid character class range `\p`".into()),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid character class range `\\p{{{name}}}`"));
        }
        Ok(format!("\\{}{{{name}}}", if neg { 'P' } else { 'p' }))
    }

    /// Go's `parseEscape`: a `\` escape that stands for one character (cursor at the `\`).
    fn escaped_char(&mut self) -> Result<char, String> {
        let start = self.i;
        self.i += 1;
        let Some(c) = self.peek(0) else {
            return Err("trailing backslash at end of expression".into());
        };
        self.i += 1;
        let bad = |this: &Self| {
            let t: String = this.s[start..this.i].iter().collect();
            Err(format!("invalid escape sequence `{t}`"))
        };
        let octal = |c: Option<char>| c.filter(|c| ('0'..='7').contains(c));
        match c {
            '1'..='7' if octal(self.peek(0)).is_none() => bad(self), // a backreference
            '0'..='7' => {
                let mut r = c as u32 - '0' as u32;
                for _ in 1..3 {
                    let Some(d) = octal(self.peek(0)) else { break };
                    r = r * 8 + (d as u32 - '0' as u32);
                    self.i += 1;
                }
                Ok(char::from_u32(r).expect("octal below 0o777"))
            }
            'x' => {
                let digits: String = if self.peek(0) == Some('{') {
                    let Some(end) = (self.i..self.s.len()).find(|&k| self.s[k] == '}') else {
                        return bad(self);
                    };
                    let d = self.s[self.i + 1..end].iter().collect();
                    self.i = end + 1;
                    d
                } else {
                    let d: String = self.s[self.i..(self.i + 2).min(self.s.len())]
                        .iter()
                        .collect();
                    self.i += d.chars().count();
                    if d.chars().count() != 2 {
                        return bad(self);
                    }
                    d
                };
                match u32::from_str_radix(&digits, 16)
                    .ok()
                    .and_then(char::from_u32)
                {
                    Some(c) if !digits.is_empty() && !digits.starts_with(['+', '-']) => Ok(c),
                    _ => bad(self),
                }
            }
            'a' => Ok('\x07'),
            'f' => Ok('\x0C'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\x0B'),
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok(c),
            _ => bad(self),
        }
    }

    /// `[...]`: parsed the way Go does, re-emitted with every literal escaped.
    fn class(&mut self) -> Result<(), String> {
        let start = self.i;
        self.i += 1; // [
        let mut out = String::from("[");
        if self.peek(0) == Some('^') {
            self.i += 1;
            out.push('^');
        }
        let missing = |this: &Self| {
            let t: String = this.s[start..].iter().collect();
            Err(format!("missing closing ] `{t}`"))
        };
        let mut first = true;
        loop {
            match self.peek(0) {
                None => return missing(self),
                Some(']') if !first => break,
                _ => {}
            }
            first = false;
            // POSIX class `[:alpha:]`, `[:^alpha:]`.
            if self.peek(0) == Some('[') && self.peek(1) == Some(':') {
                let from = self.i + 2;
                if let Some(end) = (from..self.s.len().saturating_sub(1))
                    .find(|&k| self.s[k] == ':' && self.s[k + 1] == ']')
                {
                    let name: String = self.s[from..end].iter().collect();
                    const POSIX: [&str; 14] = [
                        "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower",
                        "print", "punct", "space", "upper", "word", "xdigit",
                    ];
                    if !POSIX.contains(&name.strip_prefix('^').unwrap_or(&name)) {
                        return Err(format!("invalid character class range `[:{name}:]`"));
                    }
                    write!(out, "[:{name}:]").expect("string write");
                    self.i = end + 2;
                    continue;
                }
            }
            if self.peek(0) == Some('\\') {
                if matches!(self.peek(1), Some('p' | 'P')) {
                    out.push_str(&self.unicode_class()?);
                    continue;
                }
                let perl = match self.peek(1) {
                    Some('d') => Some(PERL_D.to_string()),
                    Some('w') => Some(PERL_W.to_string()),
                    Some('s') => Some(PERL_S.to_string()),
                    Some('D') => Some(format!("[^{PERL_D}]")),
                    Some('W') => Some(format!("[^{PERL_W}]")),
                    Some('S') => Some(format!("[^{PERL_S}]")),
                    _ => None,
                };
                if let Some(p) = perl {
                    self.i += 2;
                    out.push_str(&p);
                    continue;
                }
            }
            let lo = self.class_char()?;
            let mut hi = lo;
            if self.peek(0) == Some('-') && self.peek(1).is_some_and(|c| c != ']') {
                self.i += 1;
                hi = self.class_char()?;
                if hi < lo {
                    return Err(format!("invalid character class range `{lo}-{hi}`"));
                }
            }
            write!(out, "\\x{{{:X}}}", lo as u32).expect("string write");
            if hi != lo {
                write!(out, "-\\x{{{:X}}}", hi as u32).expect("string write");
            }
        }
        self.i += 1; // ]
        out.push(']');
        self.out.push_str(&out);
        Ok(())
    }

    /// One character of a class (Go's `parseClassChar`).
    fn class_char(&mut self) -> Result<char, String> {
        match self.peek(0) {
            None => Err("missing closing ]".into()),
            Some('\\') => self.escaped_char(),
            Some(c) => {
                self.i += 1;
                Ok(c)
            }
        }
    }
}
