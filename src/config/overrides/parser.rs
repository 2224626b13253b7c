//! Recursive-descent parser of `OverrideParser.g4`, typing primitives as Hydra's visitor does.

use super::functions::{self, Parsed};
use super::lexer::{column, lex_key, lex_value, Tok, Token};
use super::{Element, Fail, Override, OverrideKind, OverrideValue, Sweep};

/// How deeply lists, dicts and function calls may nest before parsing gives up.
const MAX_DEPTH: usize = 64;

/// Parses `text` as one value element, or `None` if it is not exactly one element.
pub(super) fn reparse(text: &str) -> Option<Element> {
    let mut parser = Parser {
        src: text,
        toks: lex_value(text, 0).ok()?,
        pos: 0,
        depth: 0,
    };
    match parser.element().ok()? {
        Parsed::Element(e) if parser.peek() == Tok::Eof => Some(e),
        _ => None,
    }
}

/// The key-mode tokens of one override.
struct KeyTokens<'a> {
    input: &'a str,
    toks: Vec<Token>,
}

impl KeyTokens<'_> {
    fn tok(&self, p: usize) -> Tok {
        self.toks.get(p).map_or(Tok::Eof, |t| t.kind)
    }

    /// The input text covered by tokens `from..to`.
    fn span(&self, from: usize, to: usize) -> String {
        match (
            self.toks.get(from),
            to.checked_sub(1).and_then(|l| self.toks.get(l)),
        ) {
            (Some(a), Some(z)) if from < to => self.input.get(a.start..z.end).unwrap_or("").into(),
            _ => String::new(),
        }
    }

    fn unexpected(&self, p: usize, what: &str) -> Fail {
        let (start, end) = self
            .toks
            .get(p)
            .map_or((self.input.len(), self.input.len()), |t| (t.start, t.end));
        let hint = match self.tok(p) {
            Tok::Colon => "overrides use '=' between key and value, e.g. seed=7",
            Tok::Tilde | Tok::Plus => {
                "'~', '+' and '++' go at the very start: ~key, +key=value, ++key=value"
            }
            _ => "keys look like seed, model.lr, hydra/launcher or group@package",
        };
        let found = self.input.get(start..end).unwrap_or("");
        Fail::new(format!(
            "unexpected '{found}' at column {} {what}",
            column(self.input, start)
        ))
        .hint(hint)
    }

    /// `(TILDE | PLUS PLUS?)? packageOrGroup (AT package)?`; returns the index after the key.
    fn key(&self) -> Result<(OverrideKind, String, Option<String>, usize), Fail> {
        let (kind, mut p) = match (self.tok(0), self.tok(1)) {
            (Tok::Tilde, _) => (OverrideKind::Delete, 1),
            (Tok::Plus, Tok::Plus) => (OverrideKind::ForceAdd, 2),
            (Tok::Plus, _) => (OverrideKind::Add, 1),
            _ => (OverrideKind::Change, 0),
        };
        let key_from = p;
        let is_name = |t: Tok| matches!(t, Tok::Id | Tok::KeySpecial | Tok::DotPath);
        if self.tok(p) == Tok::Id && self.tok(p + 1) == Tok::Slash {
            p += 1;
            while self.tok(p) == Tok::Slash {
                match self.tok(p + 1) {
                    Tok::Id => p += 2,
                    Tok::Eof | Tok::Equal => {
                        let col = column(self.input, self.toks[p].start);
                        return Err(Fail::new(format!(
                            "missing config group name after '/' at column {col}"
                        ))
                        .hint("config group paths look like hydra/launcher"));
                    }
                    _ => {
                        return Err(self.unexpected(
                            p + 1,
                            "in the config group path (names between '/' cannot contain dots)",
                        ))
                    }
                }
            }
        } else if is_name(self.tok(p)) {
            p += 1;
        }
        let key = self.span(key_from, p);
        let mut package = None;
        if self.tok(p) == Tok::At {
            let from = p + 1;
            p = if is_name(self.tok(from)) {
                from + 1
            } else {
                from
            };
            package = Some(self.span(from, p));
        }
        if !matches!(self.tok(p), Tok::Equal | Tok::Eof) {
            return Err(self.unexpected(p, "in the key"));
        }
        if key.is_empty() {
            let place = match kind {
                OverrideKind::Delete => "after '~'",
                OverrideKind::Add | OverrideKind::ForceAdd => "after '+'",
                _ => "before '='",
            };
            return Err(
                Fail::new(format!("missing key {place}")).hint("overrides have the form key=value")
            );
        }
        Ok((kind, key, package, p))
    }
}

pub(super) fn parse_override(input: &str) -> Result<Override, Fail> {
    let (toks, value_start) = lex_key(input)?;
    let key_toks = KeyTokens { input, toks };
    let (mut kind, key, package, p) = key_toks.key()?;
    let done = |kind, value| {
        Ok(Override {
            kind,
            key: key.clone(),
            package: package.clone(),
            value,
            input: input.to_string(),
        })
    };
    let typed = key_toks.span(0, p);
    let Some(eq) = key_toks.toks.get(p).filter(|t| t.kind == Tok::Equal) else {
        if kind == OverrideKind::Delete {
            return done(kind, OverrideValue::Absent);
        }
        let hint = match kind {
            OverrideKind::Change => format!("overrides have the form key=value; to delete a key use ~{typed}; to add one use +{typed}=VALUE"),
            _ => format!("overrides have the form key=value, e.g. {typed}=VALUE"),
        };
        return Err(Fail::new("missing EQUAL at '<EOF>'").hint(hint));
    };
    let toks = lex_value(input, value_start)?;
    if toks.is_empty() {
        if eq.end > eq.start + 1 {
            return Err(Fail::new("the value is only whitespace").hint(format!(
                "write {typed}= for an empty string, or quote the spaces: {typed}=' '"
            )));
        }
        return done(
            kind,
            OverrideValue::Element(Element::Str {
                text: String::new(),
                quoted: false,
            }),
        );
    }
    let mut parser = Parser {
        src: input,
        toks,
        pos: 0,
        depth: 0,
    };
    let value = parser.value()?;
    if parser.peek() != Tok::Eof {
        return Err(parser.unexpected("after the value"));
    }
    let value = match value {
        Parsed::Element(e) => OverrideValue::Element(e),
        Parsed::Sweep(s) => OverrideValue::Sweep(s),
        Parsed::Extend(items) if kind == OverrideKind::Change => {
            kind = OverrideKind::ExtendList;
            OverrideValue::Element(Element::List(items))
        }
        Parsed::Extend(_) => {
            return Err(
                Fail::new("extend_list() cannot be combined with '+', '++' or '~'").hint(format!(
                    "extend an existing list with {key}=extend_list(a,b)"
                )),
            )
        }
    };
    done(kind, value)
}

fn is_primitive(t: Tok) -> bool {
    matches!(
        t,
        Tok::Id
            | Tok::Null
            | Tok::Int
            | Tok::Float
            | Tok::Bool
            | Tok::Interp
            | Tok::Unquoted
            | Tok::Colon
            | Tok::Esc
            | Tok::Ws
    )
}

fn is_dict_key(t: Tok) -> bool {
    is_primitive(t) && !matches!(t, Tok::Interp | Tok::Colon)
}

/// A recursive-descent parser over value-mode tokens.
struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek_at(&self, k: usize) -> Tok {
        self.toks.get(self.pos + k).map_or(Tok::Eof, |t| t.kind)
    }

    fn peek(&self) -> Tok {
        self.peek_at(0)
    }

    fn cur(&self) -> Token {
        let end = self.src.len();
        self.toks.get(self.pos).copied().unwrap_or(Token {
            kind: Tok::Eof,
            start: end,
            end,
        })
    }

    fn text(&self, t: Token) -> &str {
        self.src.get(t.start..t.end).unwrap_or("")
    }

    /// The current token for messages, without the whitespace a separator token carries.
    fn found(&self) -> String {
        let t = self.cur();
        let raw = self.text(t);
        let lead = raw.len() - raw.trim_start_matches([' ', '\t']).len();
        match raw.trim_matches([' ', '\t']) {
            _ if t.kind == Tok::Eof => "end of the override".into(),
            "" => format!("whitespace at column {}", column(self.src, t.start)),
            s => format!("'{s}' at column {}", column(self.src, t.start + lead)),
        }
    }

    fn unexpected(&self, what: &str) -> Fail {
        let hint = match self.peek() {
            Tok::Equal => Some("to use '=' inside a value escape it as \\= or quote the value, e.g. key='a=b'"),
            Tok::POpen => Some("a function call like choice(a,b) must be a whole value; for a literal '(' write \\( or quote the value"),
            Tok::PClose | Tok::BrClose | Tok::BraceClose => Some("nothing is open here; escape it (\\) \\] \\}) or quote the value"),
            Tok::BrOpen | Tok::BraceOpen => Some("a list or dict must be a whole value; escape the bracket or quote the value"),
            Tok::Quoted => Some("quotes must enclose the whole value, e.g. key='a b'"),
            Tok::Ws => Some("remove the whitespace, or quote the value to keep it"),
            Tok::Comma => Some("',' separates sweep values; write \\, or quote the value to keep it in a string"),
            Tok::Eof if self.pos > 0 && self.toks[self.pos - 1].kind == Tok::Comma => Some("remove the trailing ',' or add another value"),
            Tok::Eof => None,
            _ => Some("quote the value to keep it as one string, e.g. key='...'"),
        };
        let fail = Fail::new(format!("unexpected {} {what}", self.found()));
        match hint {
            Some(h) => fail.hint(h),
            None => fail,
        }
    }

    fn unclosed(&self, open: Token, closer: char) -> Fail {
        let raw = self.text(open);
        let lead = raw.len() - raw.trim_start_matches([' ', '\t']).len();
        let opener = raw.trim_matches([' ', '\t']);
        Fail::new(format!("unclosed '{opener}' at column {}: missing '{closer}'", column(self.src, open.start + lead)))
            .hint(format!("close it with '{closer}', or write a literal '{opener}' as \\{opener} or inside quotes"))
    }

    /// `value: element | element (COMMA element)+`
    fn value(&mut self) -> Result<Parsed, Fail> {
        let first = self.element()?;
        if self.peek() != Tok::Comma {
            return Ok(first);
        }
        let mut items = vec![nested(first)?];
        while self.peek() == Tok::Comma {
            self.pos += 1;
            let e = self.element()?;
            items.push(nested(e)?);
        }
        Ok(Parsed::Sweep(Sweep::Choice(items)))
    }

    fn element(&mut self) -> Result<Parsed, Fail> {
        if self.depth >= MAX_DEPTH {
            return Err(Fail::new(format!(
                "values nest more than {MAX_DEPTH} levels deep"
            )));
        }
        self.depth += 1;
        let result = match self.peek() {
            Tok::Id if self.peek_at(1) == Tok::POpen => self.function(),
            Tok::BrOpen => self.list().map(Parsed::Element),
            Tok::BraceOpen => self.dict().map(Parsed::Element),
            Tok::Quoted => {
                let t = self.cur();
                self.pos += 1;
                Ok(Parsed::Element(Element::Str {
                    text: unquote(self.text(t)),
                    quoted: true,
                }))
            }
            t if is_primitive(t) => self.primitive(is_primitive).map(Parsed::Element),
            _ => Err(self.unexpected("where a value was expected")),
        };
        self.depth -= 1;
        result
    }

    /// An element inside a list or dict: sweeps are not allowed there.
    fn nested_element(&mut self) -> Result<Element, Fail> {
        let e = self.element()?;
        nested(e)
    }

    /// Collects primitive tokens and types them as Hydra's `_createPrimitive` does.
    fn primitive(&mut self, accept: fn(Tok) -> bool) -> Result<Element, Fail> {
        let from = self.pos;
        while accept(self.peek()) {
            self.pos += 1;
        }
        let toks = &self.toks[from..self.pos];
        let mut body = toks;
        if let [first, rest @ ..] = body {
            if first.kind == Tok::Ws {
                if rest.is_empty() {
                    return Err(Fail::new(format!(
                        "a value cannot be only whitespace (column {})",
                        column(self.src, first.start)
                    ))
                    .hint("quote it to keep the spaces: key=' '"));
                }
                body = rest;
            }
        }
        if let [rest @ .., last] = body {
            if last.kind == Tok::Ws {
                body = rest;
            }
        }
        if let [t] = body {
            return self.typed(*t);
        }
        let mut text = String::new();
        for t in body {
            match t.kind {
                Tok::Esc => text.extend(self.text(*t).chars().skip(1).step_by(2)),
                _ => text.push_str(self.text(*t)),
            }
        }
        Ok(Element::Str {
            text,
            quoted: false,
        })
    }

    fn typed(&self, t: Token) -> Result<Element, Fail> {
        let text = self.text(t);
        let digits = || text.replace('_', "");
        Ok(match t.kind {
            Tok::Int => Element::Int(digits().parse().map_err(|_| {
                Fail::new(format!("the integer {text} does not fit in 64 bits"))
                    .hint(format!("quote it to keep it as a string: key='{text}'"))
            })?),
            Tok::Float => Element::Float(digits().parse().unwrap_or(f64::NAN)),
            Tok::Bool => Element::Bool(text.eq_ignore_ascii_case("true")),
            Tok::Null => Element::Null,
            Tok::Esc => Element::Str {
                text: text.chars().skip(1).step_by(2).collect(),
                quoted: false,
            },
            _ => Element::Str {
                text: text.to_string(),
                quoted: false,
            },
        })
    }

    /// `function: ID POPEN (argName? element (COMMA argName? element)*)? PCLOSE`
    fn function(&mut self) -> Result<Parsed, Fail> {
        let name_tok = self.cur();
        let name = self.text(name_tok).to_string();
        let open = self.toks[self.pos + 1];
        self.pos += 2;
        let mut args: Vec<(Option<String>, Parsed)> = Vec::new();
        if self.peek() != Tok::PClose {
            loop {
                if self.peek() == Tok::Eof {
                    return Err(self.unclosed(open, ')'));
                }
                let named = if self.peek() == Tok::Id && self.peek_at(1) == Tok::Equal {
                    let n = self.text(self.cur()).to_string();
                    self.pos += 2;
                    Some(n)
                } else {
                    None
                };
                match &named {
                    None if args.iter().any(|(n, _)| n.is_some()) => {
                        return Err(Fail::new(format!(
                            "positional argument follows keyword argument in {name}()"
                        ))
                        .hint("put named arguments like reverse=true last"))
                    }
                    Some(n) if args.iter().any(|(m, _)| m.as_ref() == Some(n)) => {
                        return Err(Fail::new(format!(
                            "argument '{n}' is given twice in {name}()"
                        )))
                    }
                    _ => {}
                }
                let value = self.element()?;
                args.push((named, value));
                match self.peek() {
                    Tok::Comma => self.pos += 1,
                    Tok::PClose => break,
                    Tok::Eof => return Err(self.unclosed(open, ')')),
                    _ => return Err(self.unexpected("where ',' or ')' was expected")),
                }
            }
        }
        let close = self.cur();
        self.pos += 1;
        let call = self.src.get(name_tok.start..close.end).unwrap_or("");
        functions::call(&name, args).map_err(|f| Fail {
            detail: format!("in '{call}': {}", f.detail),
            hint: f.hint,
        })
    }

    /// `listContainer: '[' (element (',' element)*)? ']'`
    fn list(&mut self) -> Result<Element, Fail> {
        let open = self.cur();
        self.pos += 1;
        let mut items = Vec::new();
        if self.peek() != Tok::BrClose {
            loop {
                if self.peek() == Tok::Eof {
                    return Err(self.unclosed(open, ']'));
                }
                items.push(self.nested_element()?);
                match self.peek() {
                    Tok::Comma => self.pos += 1,
                    Tok::BrClose => break,
                    Tok::Eof => return Err(self.unclosed(open, ']')),
                    _ => return Err(self.unexpected("where ',' or ']' was expected")),
                }
            }
        }
        self.pos += 1;
        Ok(Element::List(items))
    }

    /// `dictContainer: '{' (dictKey ':' element (',' dictKey ':' element)*)? '}'`
    fn dict(&mut self) -> Result<Element, Fail> {
        let open = self.cur();
        self.pos += 1;
        let mut items = Vec::new();
        if self.peek() != Tok::BraceClose {
            loop {
                if self.peek() == Tok::Eof {
                    return Err(self.unclosed(open, '}'));
                }
                if !is_dict_key(self.peek()) {
                    return Err(self
                        .unexpected("where a dict key was expected")
                        .hint("dict keys are plain names, e.g. {lr:0.1,eps:1e-6}"));
                }
                let key = match self.primitive(is_dict_key)? {
                    Element::Str { text, .. } => text,
                    Element::Int(i) => i.to_string(),
                    Element::Bool(b) => b.to_string(),
                    Element::Null => "null".into(),
                    other => other.to_value_string(),
                };
                match self.peek() {
                    Tok::Colon => self.pos += 1,
                    Tok::Eof => return Err(self.unclosed(open, '}')),
                    _ => {
                        return Err(self.unexpected(&format!(
                            "after the dict key '{key}' where ':' was expected"
                        )))
                    }
                }
                if self.peek() == Tok::Eof {
                    return Err(self.unclosed(open, '}'));
                }
                items.push((key, self.nested_element()?));
                match self.peek() {
                    Tok::Comma => self.pos += 1,
                    Tok::BraceClose => break,
                    Tok::Eof => return Err(self.unclosed(open, '}')),
                    _ => return Err(self.unexpected("where ',' or '}' was expected")),
                }
            }
        }
        self.pos += 1;
        Ok(Element::Dict(items))
    }
}

/// Keeps an element; sweeps and `extend_list()` cannot nest inside lists, dicts or sweeps.
fn nested(p: Parsed) -> Result<Element, Fail> {
    match p {
        Parsed::Element(e) => Ok(e),
        Parsed::Sweep(_) => Err(Fail::new("a sweep such as choice() or range() cannot be nested inside a list, dict or another sweep")
            .hint("sweep over lists with key=[1,2],[3,4] or key=choice([1,2],[3,4])")),
        Parsed::Extend(_) => Err(Fail::new("extend_list() must be the whole value").hint("write key=extend_list(a,b)")),
    }
}

/// Strips the quotes and un-escapes `\'` (or `\"`) and the backslashes before a quote.
fn unquote(raw: &str) -> String {
    let q = raw.chars().next().unwrap_or('\'');
    let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or("");
    let mut out = String::with_capacity(inner.len());
    let mut run = 0;
    for c in inner.chars() {
        if c == '\\' {
            run += 1;
            continue;
        }
        out.extend(std::iter::repeat_n(
            '\\',
            if c == q { run / 2 } else { run },
        ));
        out.push(c);
        run = 0;
    }
    out.extend(std::iter::repeat_n('\\', run / 2));
    out
}
