//! A cheap scan of the query text that bounds how deep its syntax tree can be, run before
//! the parser: promql-parser recurses on long operator chains and deep nesting (measured: a
//! 30 000-term `a+a+…` or `----…foo` overflows a 2 MiB stack), and an overflow aborts the
//! whole process. The estimate is an upper bound on the tree depth, not an exact depth.

/// Upper bound on the syntax-tree depth of `query`. Within one bracket level, the operator
/// nodes form a tree at most as deep as the level has operators (a left-associative chain of
/// `n` operators is `n` deep); each bracket group hangs below them as one node (a paren,
/// call or aggregation) over its own content. So a level's depth is at most
/// `1 + its operators + its deepest child level`. A subquery's `[…:…]` wraps what precedes it,
/// so a closing `]` counts as an operator of the enclosing level. Brackets and operators inside
/// string literals and `#` comments don't count; inside `{…}` (label matchers) operators don't.
pub fn depth_estimate(query: &str) -> usize {
    // Open levels: (opening byte, operators on this level, deepest child level).
    let mut levels: Vec<Level> = vec![Level::new(0)];
    let bytes = query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let in_braces = levels.last().is_some_and(|l| l.open == b'{');
        match c {
            b'"' | b'\'' | b'`' => {
                i = skip_string(bytes, i);
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => levels.push(Level::new(c)),
            b')' | b']' | b'}' => {
                if levels.len() > 1 {
                    close_level(&mut levels);
                }
                if c == b']' {
                    bump(&mut levels);
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'=' | b'!' | b'<' | b'>' if !in_braces => {
                bump(&mut levels);
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
                {
                    i += 1;
                }
                let word = &query[start..i];
                if !in_braces
                    && ["and", "or", "unless", "atan2"]
                        .iter()
                        .any(|k| word.eq_ignore_ascii_case(k))
                {
                    bump(&mut levels);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    // Unclosed levels (the parser will refuse them) still count.
    while levels.len() > 1 {
        close_level(&mut levels);
    }
    levels.first().map_or(1, Level::depth)
}

struct Level {
    open: u8,
    ops: usize,
    deepest_child: usize,
}

impl Level {
    fn new(open: u8) -> Self {
        Self {
            open,
            ops: 0,
            deepest_child: 0,
        }
    }

    fn depth(&self) -> usize {
        1usize
            .saturating_add(self.ops)
            .saturating_add(self.deepest_child)
    }
}

fn close_level(levels: &mut Vec<Level>) {
    if let Some(done) = levels.pop()
        && let Some(parent) = levels.last_mut()
    {
        parent.deepest_child = parent.deepest_child.max(done.depth());
    }
}

fn bump(levels: &mut [Level]) {
    if let Some(level) = levels.last_mut() {
        level.ops = level.ops.saturating_add(1);
    }
}

/// Index just past the string literal starting at `start` (or the end of input when it is
/// unterminated: the lexer rejects it before the parser runs). Like promql-parser's lexer,
/// a backslash escapes the next character in all three quote styles.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}
