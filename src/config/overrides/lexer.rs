//! The two-mode lexer of Hydra's override grammar (`OverrideLexer.g4`).
//!
//! Key mode runs up to the first `=`; value mode picks, at each position, the longest token
//! any rule matches, ties going to the rule listed first, as ANTLR does.

use super::Fail;

/// Token kinds of both lexer modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tok {
    Equal,
    Tilde,
    Plus,
    At,
    Colon,
    Slash,
    Id,
    KeySpecial,
    DotPath,
    POpen,
    Comma,
    PClose,
    BrOpen,
    BrClose,
    BraceOpen,
    BraceClose,
    Float,
    Int,
    Bool,
    Null,
    Unquoted,
    Esc,
    Ws,
    Quoted,
    Interp,
    Eof,
}

/// A token: its kind and byte span in the whole input.
#[derive(Clone, Copy, Debug)]
pub(super) struct Token {
    pub(super) kind: Tok,
    pub(super) start: usize,
    pub(super) end: usize,
}

fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

fn ws_end(b: &[u8], i: usize) -> usize {
    i + b.get(i..).map_or(0, |r| {
        r.iter().take_while(|c| matches!(c, b' ' | b'\t')).count()
    })
}

/// End of `('_'? DIGIT)*` starting at `p`.
fn digit_run(b: &[u8], mut p: usize) -> usize {
    loop {
        if at(b, p).is_ascii_digit() {
            p += 1;
        } else if at(b, p) == b'_' && at(b, p + 1).is_ascii_digit() {
            p += 2;
        } else {
            return p;
        }
    }
}

/// End of `INT_UNSIGNED` at `p` (`p` itself when there is none).
fn int_unsigned(b: &[u8], p: usize) -> usize {
    match at(b, p) {
        b'0' => p + 1,
        b'1'..=b'9' => digit_run(b, p + 1),
        _ => p,
    }
}

fn sign_end(b: &[u8], i: usize) -> usize {
    if matches!(at(b, i), b'+' | b'-') {
        i + 1
    } else {
        i
    }
}

fn float_end(b: &[u8], i: usize) -> usize {
    let j = sign_end(b, i);
    let mut best = i;
    let word = |w: &[u8]| b.get(j..j + 3).is_some_and(|s| s.eq_ignore_ascii_case(w));
    if word(b"inf") || word(b"nan") {
        best = j + 3;
    }
    let k = int_unsigned(b, j);
    let mut bases = [None; 3];
    if k > j {
        bases[0] = Some(k);
        if at(b, k) == b'.' {
            best = best.max(k + 1);
            bases[1] = Some(k + 1);
        }
    }
    if at(b, k) == b'.' && at(b, k + 1).is_ascii_digit() {
        let end = digit_run(b, k + 2);
        best = best.max(end);
        bases[2] = Some(end);
    }
    for base in bases.into_iter().flatten() {
        if matches!(at(b, base), b'e' | b'E') {
            let n = sign_end(b, base + 1);
            if at(b, n).is_ascii_digit() {
                best = best.max(digit_run(b, n + 1));
            }
        }
    }
    best
}

fn int_end(b: &[u8], i: usize) -> usize {
    let j = sign_end(b, i);
    let k = int_unsigned(b, j);
    if k > j {
        k
    } else {
        i
    }
}

fn word_end(b: &[u8], i: usize, w: &[u8]) -> usize {
    if b.get(i..i + w.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(w))
    {
        i + w.len()
    } else {
        i
    }
}

/// End of a name starting with `first` and continuing with `rest` characters.
fn name_end(b: &[u8], i: usize, first: fn(u8) -> bool, rest: fn(u8) -> bool) -> usize {
    if !first(at(b, i)) {
        return i;
    }
    i + 1
        + b.get(i + 1..)
            .map_or(0, |r| r.iter().take_while(|c| rest(**c)).count())
}

fn id_end(b: &[u8], i: usize) -> usize {
    name_end(
        b,
        i,
        |c| c.is_ascii_alphabetic() || c == b'_',
        |c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-',
    )
}

fn key_special_end(b: &[u8], i: usize) -> usize {
    name_end(
        b,
        i,
        |c| c.is_ascii_alphabetic() || c == b'_' || c == b'$',
        |c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'$'),
    )
}

fn dot_path_end(b: &[u8], i: usize) -> usize {
    let seg = |p: usize| key_special_end(b, p).max(int_unsigned(b, p));
    let mut p = seg(i);
    if p == i {
        return i;
    }
    let mut dots = 0;
    while at(b, p) == b'.' && seg(p + 1) > p + 1 {
        p = seg(p + 1);
        dots += 1;
    }
    if dots > 0 {
        p
    } else {
        i
    }
}

fn esc_end(b: &[u8], mut p: usize) -> usize {
    while at(b, p) == b'\\' && b"\\()[]{}:=, \t".contains(&at(b, p + 1)) {
        p += 2;
    }
    p
}

/// End of a quoted string: the first same quote preceded by an even number of backslashes.
fn quoted_end(b: &[u8], i: usize) -> Option<usize> {
    let q = at(b, i);
    let mut backslashes = 0;
    for (p, &c) in b.iter().enumerate().skip(i + 1) {
        if c == q && backslashes % 2 == 0 {
            return Some(p + 1);
        }
        backslashes = if c == b'\\' { backslashes + 1 } else { 0 };
    }
    None
}

/// End of a non-empty `${...}` with balanced braces.
fn interp_end(b: &[u8], i: usize) -> Option<usize> {
    if at(b, i) != b'$' || at(b, i + 1) != b'{' {
        return None;
    }
    let mut depth = 0usize;
    for (p, &c) in b.iter().enumerate().skip(i + 1) {
        match c {
            b'{' => depth += 1,
            b'}' if depth == 1 => return (p > i + 2).then_some(p + 1),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The 1-based character column of byte offset `i`.
pub(super) fn column(src: &str, i: usize) -> usize {
    src.get(..i).map_or(i, |p| p.chars().count()) + 1
}

fn char_at(src: &str, i: usize) -> String {
    src.get(i..)
        .and_then(|r| r.chars().next())
        .map_or_else(String::new, String::from)
}

/// Lexes the key part of `src` up to and including the first `=`; returns where the value starts.
pub(super) fn lex_key(src: &str) -> Result<(Vec<Token>, usize), Fail> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let (kind, end) = match b[i] {
            b'=' => (Tok::Equal, ws_end(b, i + 1)),
            b'~' => (Tok::Tilde, i + 1),
            b'+' => (Tok::Plus, i + 1),
            b'@' => (Tok::At, i + 1),
            b':' => (Tok::Colon, i + 1),
            b'/' => (Tok::Slash, i + 1),
            _ => {
                let cands = [
                    (Tok::Id, id_end(b, i)),
                    (Tok::KeySpecial, key_special_end(b, i)),
                    (Tok::DotPath, dot_path_end(b, i)),
                ];
                let best = cands
                    .iter()
                    .fold(cands[0], |a, c| if c.1 > a.1 { *c } else { a });
                if best.1 == i {
                    let col = column(src, i);
                    let hint = match toks.last() {
                        Some(Token { kind: Tok::Colon, .. }) => "overrides use '=' between key and value, e.g. seed=7",
                        _ => "keys look like seed, model.lr, optimizer.betas.0, group/name or group@package",
                    };
                    return Err(match b[i] {
                        b' ' | b'\t' => Fail::new(format!("unexpected whitespace at column {col} in the key"))
                            .hint("write key=value with no space before '='; quote values with spaces: key='a b'"),
                        _ => Fail::new(format!("unexpected character '{}' at column {col} in the key", char_at(src, i))).hint(hint),
                    });
                }
                best
            }
        };
        toks.push(Token {
            kind,
            start: i,
            end,
        });
        i = end;
        if kind == Tok::Equal {
            break;
        }
    }
    Ok((toks, i))
}

/// Lexes value-mode tokens of `src` from byte `from` to the end.
pub(super) fn lex_value(src: &str, from: usize) -> Result<Vec<Token>, Fail> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = from;
    while i < b.len() {
        let w = ws_end(b, i);
        let (kind, end) = match at(b, w) {
            b'(' => (Tok::POpen, ws_end(b, w + 1)),
            b',' => (Tok::Comma, ws_end(b, w + 1)),
            b':' => (Tok::Colon, ws_end(b, w + 1)),
            b'=' => (Tok::Equal, ws_end(b, w + 1)),
            b')' => (Tok::PClose, w + 1),
            b']' => (Tok::BrClose, w + 1),
            b'}' => (Tok::BraceClose, w + 1),
            _ if w > i => (Tok::Ws, w),
            b'[' => (Tok::BrOpen, ws_end(b, i + 1)),
            b'{' => (Tok::BraceOpen, ws_end(b, i + 1)),
            c => {
                let unquoted = if b"/-\\+.$%*@?|".contains(&c) {
                    i + 1
                } else {
                    i
                };
                let cands = [
                    (Tok::Float, float_end(b, i)),
                    (Tok::Int, int_end(b, i)),
                    (
                        Tok::Bool,
                        word_end(b, i, b"true").max(word_end(b, i, b"false")),
                    ),
                    (Tok::Null, word_end(b, i, b"null")),
                    (Tok::Unquoted, unquoted),
                    (Tok::Id, id_end(b, i)),
                    (Tok::Esc, esc_end(b, i)),
                    (
                        Tok::Quoted,
                        if c == b'\'' || c == b'"' {
                            quoted_end(b, i).unwrap_or(i)
                        } else {
                            i
                        },
                    ),
                    (Tok::Interp, interp_end(b, i).unwrap_or(i)),
                ];
                let best = cands
                    .iter()
                    .fold(cands[0], |a, c| if c.1 > a.1 { *c } else { a });
                let col = column(src, i);
                if c == b'$' && at(b, i + 1) == b'{' && best.0 != Tok::Interp {
                    return Err(Fail::new(format!(
                        "unterminated or empty interpolation '${{' at column {col}"
                    ))
                    .hint("interpolations look like ${path.to.key}; close every '{' with '}'"));
                }
                if best.1 == i {
                    return Err(if c == b'\'' || c == b'"' {
                        let which = if c == b'\'' { "single" } else { "double" };
                        let q = c as char;
                        Fail::new(format!(
                            "unterminated {which}-quoted string starting at column {col}"
                        ))
                        .hint(format!(
                            "close it with {q}; a {q} inside it must be written \\{q}"
                        ))
                    } else {
                        Fail::new(format!(
                            "unexpected character '{}' at column {col}",
                            char_at(src, i)
                        ))
                        .hint("quote the value to use this character, e.g. key='...'")
                    });
                }
                best
            }
        };
        toks.push(Token {
            kind,
            start: i,
            end,
        });
        i = end;
    }
    Ok(toks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Tok::*;

    fn kinds(src: &str) -> Vec<Tok> {
        lex_value(src, 0).unwrap().iter().map(|t| t.kind).collect()
    }

    #[test]
    fn value_tokens_take_the_longest_match() {
        let cases: &[(&str, &[Tok])] = &[
            ("0x1F", &[Int, Id]),
            ("1.2.3", &[Float, Float]),
            (
                "5. .5 1e-4 1E3 1_000.5",
                &[Float, Ws, Float, Ws, Float, Ws, Float, Ws, Float],
            ),
            ("-inf nan infinity", &[Float, Ws, Float, Ws, Id]),
            ("true_x True null nullx", &[Id, Ws, Bool, Ws, Null, Ws, Id]),
            (
                "+3 - + 1__0",
                &[Int, Ws, Unquoted, Ws, Unquoted, Ws, Int, Id],
            ),
            ("a : b", &[Id, Colon, Id]),
            ("f (a , b )", &[Id, POpen, Id, Comma, Id, PClose]),
            (
                "[ a ]{ b }",
                &[BrOpen, Id, BrClose, BraceOpen, Id, BraceClose],
            ),
            (r"\,\ \\ \q", &[Esc, Ws, Unquoted, Id]),
            ("'a\\'b' \"x\"", &[Quoted, Ws, Quoted]),
            ("${a}${b:{c}}$", &[Interp, Interp, Unquoted]),
            ("a=b", &[Id, Equal, Id]),
        ];
        for (src, want) in cases {
            assert_eq!(kinds(src), *want, "{src}");
        }
    }

    #[test]
    fn key_tokens() {
        let (toks, value_start) = lex_key("++a.b-c.0@$p=  v").unwrap();
        let kinds: Vec<Tok> = toks.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, [Plus, Plus, DotPath, At, KeySpecial, Equal]);
        assert_eq!(value_start, 15);
        assert!(lex_key("a.=1").is_err());
        assert!(lex_key("0=1").is_err());
    }
}
