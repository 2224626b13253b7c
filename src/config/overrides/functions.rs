//! The functions of the override grammar (`choice`, `range`, `glob`, `interval`, casts, `sort`,
//! `shuffle`, `extend_list`), after Hydra's `grammar_functions.py`.

use std::fmt;

use super::sweep::range_values;
use super::{Element, Fail, Number, Sweep};
use crate::config::pyfmt::float_repr;

const KNOWN: &str =
    "bool, choice, extend_list, float, glob, int, interval, range, shuffle, sort, str";

/// What a value or function call evaluates to.
pub(super) enum Parsed {
    Element(Element),
    Sweep(Sweep),
    Extend(Vec<Element>),
}

/// The arguments of one call, quoted strings already unquoted as Hydra's `Functions.eval` does.
struct Args {
    name: String,
    pos: Vec<Parsed>,
    named: Vec<(String, Parsed)>,
}

impl Args {
    fn take(&mut self, key: &str) -> Option<Parsed> {
        let i = self.named.iter().position(|(k, _)| k == key)?;
        Some(self.named.remove(i).1)
    }

    fn done(&self) -> Result<(), Fail> {
        match self.named.first() {
            Some((k, _)) => Err(Fail::new(format!(
                "{}() got an unexpected keyword argument '{k}'",
                self.name
            ))),
            None => Ok(()),
        }
    }

    /// Binds Python-style parameters (positional or named), all optional here.
    fn bind<const N: usize>(&mut self, params: [&str; N]) -> Result<[Option<Parsed>; N], Fail> {
        if self.pos.len() > N {
            return Err(Fail::new(format!(
                "{}() takes at most {N} arguments ({} given)",
                self.name,
                self.pos.len()
            )));
        }
        let mut pos = std::mem::take(&mut self.pos).into_iter();
        let mut out = [(); N].map(|_| pos.next());
        for (slot, param) in out.iter_mut().zip(params) {
            if let Some(v) = self.take(param) {
                if slot.is_some() {
                    return Err(Fail::new(format!(
                        "{}() got multiple values for argument '{param}'",
                        self.name
                    )));
                }
                *slot = Some(v);
            }
        }
        self.done()?;
        Ok(out)
    }

    /// The single thing to sort or shuffle: one positional value, `list=` or `sweep=`.
    fn subject(&mut self) -> Result<Vec<Parsed>, Fail> {
        let list = self.take("list");
        let sweep = self.take("sweep");
        self.done()?;
        match (list.or(sweep), self.pos.is_empty()) {
            (Some(v), true) => Ok(vec![v]),
            (Some(_), false) => Err(Fail::new(format!(
                "{}() takes positional values or list=/sweep=, not both",
                self.name
            ))),
            (None, _) if self.pos.is_empty() => Err(Fail::new(format!(
                "{}() needs something to work on",
                self.name
            ))
            .hint(format!("e.g. {}(3,1,2)", self.name))),
            (None, _) => Ok(std::mem::take(&mut self.pos)),
        }
    }
}

/// Evaluates the grammar function `name` on its positional and named arguments.
pub(super) fn call(name: &str, args: Vec<(Option<String>, Parsed)>) -> Result<Parsed, Fail> {
    let mut a = Args {
        name: name.to_string(),
        pos: Vec::new(),
        named: Vec::new(),
    };
    for (n, v) in args {
        let v = match v {
            Parsed::Element(Element::Str { text, .. }) => Parsed::Element(Element::Str {
                text,
                quoted: false,
            }),
            other => other,
        };
        match n {
            Some(n) => a.named.push((n, v)),
            None => a.pos.push(v),
        }
    }
    match name {
        "int" => cast_call(Cast::Int, a),
        "float" => cast_call(Cast::Float, a),
        "str" => cast_call(Cast::Str, a),
        "bool" => cast_call(Cast::Bool, a),
        "choice" => choice(a),
        "range" => range(a),
        "interval" => interval(a),
        "glob" => glob(a),
        "sort" => sort(a),
        "shuffle" => shuffle(a),
        "extend_list" => {
            a.done()?;
            Ok(Parsed::Extend(
                a.pos
                    .into_iter()
                    .map(|p| element(p, "extend_list"))
                    .collect::<Result<_, _>>()?,
            ))
        }
        "tag" => Err(
            Fail::new("tag() only serves optimizer sweepers and is not supported here")
                .hint("remove tag(...) and keep the sweep inside it"),
        ),
        _ => Err(Fail::new(format!(
            "unknown function '{name}'; available functions: {KNOWN}"
        ))
        .hint(format!(
            "to use parentheses literally, quote the value: key='{name}(...)'"
        ))),
    }
}

/// An argument that must be a plain element, not a sweep.
fn element(p: Parsed, fname: &str) -> Result<Element, Fail> {
    match p {
        Parsed::Element(e) => Ok(e),
        _ => Err(Fail::new(format!(
            "{fname}() cannot take a sweep or extend_list() as an argument here"
        ))),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Cast {
    Int,
    Float,
    Str,
    Bool,
}

impl fmt::Display for Cast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cast::Int => "int",
            Cast::Float => "float",
            Cast::Str => "str",
            Cast::Bool => "bool",
        })
    }
}

/// `int(x)`, `float(x)`, `str(x)`, `bool(x)`; several arguments make a choice sweep.
fn cast_call(c: Cast, mut a: Args) -> Result<Parsed, Fail> {
    let value = a.take("value");
    a.done()?;
    match (value, a.pos.len()) {
        (Some(_), n) if n > 0 => Err(Fail::new(format!(
            "{c}() cannot use both positional and named arguments"
        ))),
        (Some(v), _) => cast_parsed(c, v),
        (None, 0) => Err(Fail::new(format!("{c}() needs a value")).hint(format!("e.g. {c}(3)"))),
        (None, 1) => cast_parsed(c, a.pos.remove(0)),
        (None, _) => {
            let items = a
                .pos
                .into_iter()
                .map(|p| cast_elem(c, &element(p, &c.to_string())?));
            Ok(Parsed::Sweep(Sweep::Choice(
                items.collect::<Result<_, _>>()?,
            )))
        }
    }
}

fn cast_parsed(c: Cast, p: Parsed) -> Result<Parsed, Fail> {
    Ok(match p {
        Parsed::Element(e) => Parsed::Element(cast_elem(c, &e)?),
        Parsed::Sweep(Sweep::Choice(items)) => Parsed::Sweep(Sweep::Choice(
            items
                .iter()
                .map(|e| cast_elem(c, e))
                .collect::<Result<_, _>>()?,
        )),
        Parsed::Sweep(Sweep::Range { start, stop, step }) => {
            let n = |x: Number| match (c, x) {
                (Cast::Int, Number::Float(f)) => float_to_int(f).map(Number::Int),
                (Cast::Float, Number::Int(i)) => Ok(Number::Float(i as f64)),
                (Cast::Int | Cast::Float, x) => Ok(x),
                _ => Err(Fail::new("a range() can only be cast to int or float")),
            };
            let (start, stop, step) = (n(start)?, n(stop)?, n(step)?);
            if matches!(step, Number::Int(0)) {
                return Err(Fail::new("range() step must not be zero"));
            }
            Parsed::Sweep(Sweep::Range { start, stop, step })
        }
        Parsed::Sweep(Sweep::Interval(a, b)) => match c {
            Cast::Int => Parsed::Sweep(Sweep::Interval(
                float_to_int(a)? as f64,
                float_to_int(b)? as f64,
            )),
            Cast::Float => Parsed::Sweep(Sweep::Interval(a, b)),
            _ => return Err(Fail::new(format!("an interval() cannot be cast to {c}"))),
        },
        Parsed::Sweep(Sweep::Glob { .. }) => {
            return Err(Fail::new(format!("a glob() cannot be cast to {c}")))
        }
        Parsed::Extend(_) => return Err(Fail::new(format!("extend_list() cannot be cast to {c}"))),
    })
}

/// Python's `int()`, `float()`, `str()` or Hydra's strict `bool()` of one element.
fn cast_elem(c: Cast, e: &Element) -> Result<Element, Fail> {
    let s = |text: String| Element::Str {
        text,
        quoted: false,
    };
    Ok(match (c, e) {
        (_, Element::List(items)) => Element::List(
            items
                .iter()
                .map(|x| cast_elem(c, x))
                .collect::<Result<_, _>>()?,
        ),
        (_, Element::Dict(items)) => Element::Dict(
            items
                .iter()
                .map(|(k, v)| Ok((k.clone(), cast_elem(c, v)?)))
                .collect::<Result<_, Fail>>()?,
        ),
        (Cast::Bool, Element::Null) => Element::Bool(false),
        (_, Element::Null) => return Err(Fail::new(format!("{c}() cannot convert null"))),
        (Cast::Int, Element::Bool(b)) => Element::Int(i64::from(*b)),
        (Cast::Int, Element::Int(i)) => Element::Int(*i),
        (Cast::Int, Element::Float(f)) => Element::Int(float_to_int(*f)?),
        (Cast::Int, Element::Str { text, .. }) => Element::Int(py_int(text)?),
        (Cast::Float, Element::Bool(b)) => Element::Float(f64::from(u8::from(*b))),
        (Cast::Float, Element::Int(i)) => Element::Float(*i as f64),
        (Cast::Float, Element::Float(f)) => Element::Float(*f),
        (Cast::Float, Element::Str { text, .. }) => Element::Float(py_float_parse(text)?),
        (Cast::Str, Element::Bool(b)) => s(b.to_string()),
        (Cast::Str, Element::Int(i)) => s(i.to_string()),
        (Cast::Str, Element::Float(f)) => s(float_repr(*f)),
        (Cast::Str, Element::Str { text, .. }) => s(text.clone()),
        (Cast::Bool, Element::Bool(b)) => Element::Bool(*b),
        (Cast::Bool, Element::Int(i)) => Element::Bool(*i != 0),
        (Cast::Bool, Element::Float(f)) => Element::Bool(*f != 0.0),
        (Cast::Bool, Element::Str { text, .. }) => match text.to_ascii_lowercase().as_str() {
            "true" => Element::Bool(true),
            "false" => Element::Bool(false),
            _ => {
                return Err(
                    Fail::new(format!("cannot cast '{text}' to bool")).hint("use true or false")
                )
            }
        },
    })
}

fn float_to_int(f: f64) -> Result<i64, Fail> {
    let t = f.trunc();
    if t.is_finite() && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&t) {
        Ok(t as i64)
    } else {
        Err(Fail::new(format!(
            "cannot convert float {} to a 64-bit integer",
            float_repr(f)
        )))
    }
}

/// Removes `_` between digits (PEP 515); `None` when an underscore is misplaced.
fn strip_underscores(t: &str) -> Option<String> {
    let b = t.as_bytes();
    let ok = b.iter().enumerate().all(|(i, &c)| {
        c != b'_'
            || i > 0 && b[i - 1].is_ascii_digit() && b.get(i + 1).is_some_and(u8::is_ascii_digit)
    });
    ok.then(|| t.replace('_', ""))
}

/// Python's `int(text)` in base 10.
fn py_int(text: &str) -> Result<i64, Fail> {
    let t = text.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    strip_underscores(t)
        .filter(|_| !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit() || c == b'_'))
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| Fail::new(format!("invalid literal for int() with base 10: '{text}'")))
}

/// Python's `float(text)`.
fn py_float_parse(text: &str) -> Result<f64, Fail> {
    let t = text.trim();
    strip_underscores(t)
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or_else(|| Fail::new(format!("could not convert string to float: '{text}'")))
}

/// `choice(a,b,...)`: an explicit choice sweep.
fn choice(a: Args) -> Result<Parsed, Fail> {
    a.done()?;
    if a.pos.is_empty() {
        return Err(Fail::new("choice() needs at least one value").hint("e.g. choice(a,b)"));
    }
    let items = a.pos.into_iter().map(|p| element(p, "choice"));
    Ok(Parsed::Sweep(Sweep::Choice(
        items.collect::<Result<_, _>>()?,
    )))
}

fn number(p: Option<Parsed>, fname: &str, param: &str) -> Result<Option<Number>, Fail> {
    match p {
        None => Ok(None),
        Some(Parsed::Element(Element::Int(i))) => Ok(Some(Number::Int(i))),
        Some(Parsed::Element(Element::Float(f))) => Ok(Some(Number::Float(f))),
        Some(Parsed::Element(e)) => Err(Fail::new(format!(
            "{fname}() argument '{param}' must be a number, got '{}'",
            e.to_value_string()
        ))),
        Some(_) => Err(Fail::new(format!(
            "{fname}() argument '{param}' must be a number, not a sweep"
        ))),
    }
}

/// `range(stop)` or `range(start,stop[,step])`, ints or floats.
fn range(mut a: Args) -> Result<Parsed, Fail> {
    let [start, stop, step] = a.bind(["start", "stop", "step"])?;
    let start = number(start, "range", "start")?;
    let stop = number(stop, "range", "stop")?;
    let step = number(step, "range", "step")?.unwrap_or(Number::Int(1));
    let (start, stop) = match (start, stop) {
        (Some(start), Some(stop)) => (start, stop),
        (Some(stop), None) => (Number::Int(0), stop),
        _ => {
            return Err(Fail::new("range() needs at least a stop value")
                .hint("e.g. range(5) or range(0,10,2)"))
        }
    };
    if step == Number::Int(0) || step == Number::Float(0.0) {
        return Err(Fail::new("range() step must not be zero"));
    }
    Ok(Parsed::Sweep(Sweep::Range { start, stop, step }))
}

/// `interval(start,end)`: parsed, but only an optimizer sweeper can use it.
fn interval(mut a: Args) -> Result<Parsed, Fail> {
    let [start, end] = a.bind(["start", "end"])?;
    match (
        number(start, "interval", "start")?,
        number(end, "interval", "end")?,
    ) {
        (Some(s), Some(e)) => Ok(Parsed::Sweep(Sweep::Interval(num_f64(s), num_f64(e)))),
        _ => Err(Fail::new("interval() needs a start and an end").hint("e.g. interval(0.1,1.0)")),
    }
}

pub(super) fn num_f64(n: Number) -> f64 {
    match n {
        Number::Int(i) => i as f64,
        Number::Float(f) => f,
    }
}

/// `glob(include[,exclude])`: shell-style patterns over the options of a config group.
fn glob(mut a: Args) -> Result<Parsed, Fail> {
    let [include, exclude] = a.bind(["include", "exclude"])?;
    let patterns = |p: Option<Parsed>| match p {
        None => Ok(Vec::new()),
        Some(Parsed::Element(Element::Str { text, .. })) => Ok(vec![text]),
        Some(Parsed::Element(Element::List(items))) => items
            .into_iter()
            .map(|e| match e {
                Element::Str { text, .. } => Ok(text),
                _ => Err(Fail::new("glob() patterns must be strings")),
            })
            .collect(),
        Some(_) => Err(
            Fail::new("glob() patterns must be a string or a list of strings")
                .hint("e.g. glob(*) or glob([a*,b*],exclude=bad)"),
        ),
    };
    if include.is_none() {
        return Err(Fail::new("glob() needs an include pattern").hint("e.g. glob(*)"));
    }
    Ok(Parsed::Sweep(Sweep::Glob {
        include: patterns(include)?,
        exclude: patterns(exclude)?,
    }))
}

/// `sort(...)`, with `reverse=true` for descending order.
fn sort(mut a: Args) -> Result<Parsed, Fail> {
    let reverse = match a.take("reverse") {
        None => false,
        Some(Parsed::Element(Element::Bool(b))) => b,
        Some(_) => return Err(Fail::new("sort() reverse must be true or false")),
    };
    let mut args = a.subject()?;
    if args.len() > 1 {
        let items = args
            .into_iter()
            .map(|p| element(p, "sort"))
            .collect::<Result<Vec<_>, _>>()?;
        if items
            .iter()
            .any(|e| matches!(e, Element::Null | Element::List(_) | Element::Dict(_)))
        {
            return Err(Fail::new(
                "sort() of several values takes only numbers or strings",
            ));
        }
        return Ok(Parsed::Sweep(Sweep::Choice(sorted(items, reverse)?)));
    }
    Ok(match args.remove(0) {
        Parsed::Element(Element::List(items)) => {
            Parsed::Element(Element::List(sorted(items, reverse)?))
        }
        Parsed::Element(e) => Parsed::Element(e),
        Parsed::Sweep(Sweep::Choice(items)) => {
            Parsed::Sweep(Sweep::Choice(sorted(items, reverse)?))
        }
        Parsed::Sweep(Sweep::Range { start, stop, step }) if (num_f64(step) > 0.0) == reverse => {
            let mut values = range_values(start, stop, step)?;
            values.reverse();
            Parsed::Sweep(Sweep::Choice(values))
        }
        Parsed::Sweep(r @ Sweep::Range { .. }) => Parsed::Sweep(r),
        _ => return Err(Fail::new(
            "sort() works on lists, choice() and range(), not glob(), interval() or extend_list()",
        )),
    })
}

/// Sorts like Python's `sorted`: numbers with numbers, strings with strings, stable.
fn sorted(mut items: Vec<Element>, reverse: bool) -> Result<Vec<Element>, Fail> {
    let num = |e: &Element| match e {
        Element::Int(i) => Some(*i as f64),
        Element::Float(f) => Some(*f),
        Element::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    };
    let all_num = items.iter().all(|e| num(e).is_some());
    let all_str = items.iter().all(|e| matches!(e, Element::Str { .. }));
    if !all_num && !all_str {
        return Err(Fail::new(
            "sort() can only order all numbers or all strings",
        ));
    }
    let cmp = |a: &Element, b: &Element| match (a, b) {
        (Element::Str { text: x, .. }, Element::Str { text: y, .. }) => x.cmp(y),
        _ => num(a).unwrap_or(0.0).total_cmp(&num(b).unwrap_or(0.0)),
    };
    items.sort_by(|a, b| if reverse { cmp(b, a) } else { cmp(a, b) });
    Ok(items)
}

/// `shuffle(..., seed=N)`: a reproducible shuffle of a list or sweep.
fn shuffle(mut a: Args) -> Result<Parsed, Fail> {
    let seed = match a.take("seed") {
        Some(Parsed::Element(Element::Int(i))) => i as u64,
        Some(_) => return Err(Fail::new("shuffle() seed must be an integer")),
        None => {
            return Err(
                Fail::new("shuffle() needs an explicit seed so the order is reproducible")
                    .hint("e.g. shuffle(a,b,c,seed=0)"),
            )
        }
    };
    let mut args = a.subject()?;
    if args.len() > 1 {
        let items = args
            .into_iter()
            .map(|p| element(p, "shuffle"))
            .collect::<Result<_, _>>()?;
        return Ok(Parsed::Sweep(Sweep::Choice(shuffled(items, seed))));
    }
    Ok(match args.remove(0) {
        Parsed::Element(Element::List(items)) => Parsed::Element(Element::List(shuffled(items, seed))),
        Parsed::Element(e) => Parsed::Element(Element::List(vec![e])),
        Parsed::Sweep(Sweep::Choice(items)) => Parsed::Sweep(Sweep::Choice(shuffled(items, seed))),
        Parsed::Sweep(Sweep::Range { start, stop, step }) => {
            Parsed::Sweep(Sweep::Choice(shuffled(range_values(start, stop, step)?, seed)))
        }
        _ => return Err(Fail::new("shuffle() works on lists, choice() and range(), not glob(), interval() or extend_list()")),
    })
}

/// Fisher-Yates with SplitMix64, so a seed gives the same order on every platform.
fn shuffled(mut items: Vec<Element>, seed: u64) -> Vec<Element> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    items
}
