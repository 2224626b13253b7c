//! Expanding sweeps into values: Python's `range` (Hydra's decimal `FloatRange` for floats),
//! `fnmatch`-style globs over group options, and how sweeps print.

use std::cmp::Ordering;
use std::fmt;

use super::functions::num_f64;
use super::{Element, Fail, Number, OverrideParseError, Sweep};
use crate::config::pyfmt::float_repr;

/// The most values one sweep may expand to, so `range(0,10000000000)` fails instead of hanging.
const MAX_SWEEP_VALUES: usize = 100_000;

fn too_many() -> Fail {
    Fail::new(format!("the range has more than {MAX_SWEEP_VALUES} values"))
        .hint("use a larger step or a smaller range")
}

/// The values of a range, as Python's `range` for ints and Hydra's decimal `FloatRange` for floats.
pub(super) fn range_values(
    start: Number,
    stop: Number,
    step: Number,
) -> Result<Vec<Element>, Fail> {
    if let (Number::Int(a), Number::Int(b), Number::Int(s)) = (start, stop, step) {
        let (a, b, s) = (i128::from(a), i128::from(b), i128::from(s));
        let n = match s.cmp(&0) {
            Ordering::Greater if a < b => (b - a + s - 1) / s,
            Ordering::Less if a > b => (a - b - s - 1) / -s,
            Ordering::Equal => return Err(Fail::new("range() step must not be zero")),
            _ => 0,
        };
        if n > MAX_SWEEP_VALUES as i128 {
            return Err(too_many());
        }
        return Ok((0..n).map(|i| Element::Int((a + s * i) as i64)).collect());
    }
    let (a, b, s) = (num_f64(start), num_f64(stop), num_f64(step));
    if !(a.is_finite() && b.is_finite() && s.is_finite()) {
        return Err(Fail::new("range() bounds and step must be finite numbers"));
    }
    if s == 0.0 {
        return Err(Fail::new("range() step must not be zero"));
    }
    let exact = decimals([a, b, s]);
    let mut out = Vec::new();
    for i in 0..=MAX_SWEEP_VALUES as i128 {
        let (cur, past) = match exact {
            Some(([am, bm, sm], exp)) => {
                let c = am + sm * i;
                (
                    format!("{c}e{exp}").parse().unwrap_or(f64::NAN),
                    if sm > 0 { c >= bm } else { c <= bm },
                )
            }
            None => {
                let c = a + s * i as f64;
                (c, if s > 0.0 { c >= b } else { c <= b })
            }
        };
        if past {
            return Ok(out);
        }
        out.push(Element::Float(cur));
    }
    Err(too_many())
}

/// The numbers as integers over one power of ten (`Decimal(str(x))`), when small enough.
fn decimals(xs: [f64; 3]) -> Option<([i128; 3], i32)> {
    let parts = xs.map(|x| {
        let repr = float_repr(x);
        let (mantissa, exp) = repr.split_once('e').unwrap_or((&repr, "0"));
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let m: i128 = format!("{int}{frac}").parse().ok()?;
        Some((m, exp.parse::<i32>().ok()? - frac.len() as i32))
    });
    let [a, b, s] = [parts[0]?, parts[1]?, parts[2]?];
    let exp = a.1.min(b.1).min(s.1);
    if a.1.max(b.1).max(s.1) - exp > 16 {
        return None;
    }
    let scale = |(m, e): (i128, i32)| m * 10i128.pow((e - exp) as u32);
    Some(([scale(a), scale(b), scale(s)], exp))
}

/// Python's `fnmatch.fnmatchcase`: `*`, `?`, `[abc]`, `[a-z]`, `[!abc]`.
fn fnmatch(name: &str, pattern: &str) -> bool {
    let (n, p): (Vec<char>, Vec<char>) = (name.chars().collect(), pattern.chars().collect());
    let (mut i, mut j, mut star) = (0, 0, None);
    while i < n.len() {
        if p.get(j) == Some(&'*') {
            star = Some((j, i));
            j += 1;
        } else if let Some(next) = glob_step(&p, j, n[i]) {
            i += 1;
            j = next;
        } else if let Some((sj, si)) = star {
            star = Some((sj, si + 1));
            i = si + 1;
            j = sj + 1;
        } else {
            return false;
        }
    }
    p.get(j..).is_none_or(|rest| rest.iter().all(|&c| c == '*'))
}

/// Where the pattern continues if its item at `j` matches `c`.
fn glob_step(p: &[char], j: usize, c: char) -> Option<usize> {
    match *p.get(j)? {
        '?' => Some(j + 1),
        '[' => {
            let mut k = j + 1;
            let negate = p.get(k) == Some(&'!');
            k += usize::from(negate);
            let first = k;
            k += usize::from(p.get(k) == Some(&']'));
            let Some(close) = p
                .get(k..)
                .and_then(|r| r.iter().position(|&x| x == ']'))
                .map(|off| k + off)
            else {
                return (c == '[').then_some(j + 1);
            };
            let set = &p[first..close];
            let mut hit = false;
            let mut m = 0;
            while m < set.len() {
                if set.get(m + 1) == Some(&'-') && m + 2 < set.len() {
                    hit |= set[m] <= c && c <= set[m + 2];
                    m += 3;
                } else {
                    hit |= set[m] == c;
                    m += 1;
                }
            }
            (hit != negate).then_some(close + 1)
        }
        x => (x == c).then_some(j + 1),
    }
}

impl Sweep {
    /// The values of this sweep; `options` are the config group's options, used by `glob()`.
    pub fn expand(&self, options: &[String]) -> Result<Vec<Element>, OverrideParseError> {
        let fail = |f: Fail| OverrideParseError {
            input: self.to_string(),
            message: format!("cannot expand '{self}': {}", f.detail),
            hint: f.hint,
        };
        match self {
            Sweep::Choice(items) => Ok(items.clone()),
            Sweep::Range { start, stop, step } => range_values(*start, *stop, *step).map_err(fail),
            Sweep::Glob { include, exclude } => Ok(options
                .iter()
                .filter(|o| {
                    include.iter().any(|g| fnmatch(o, g)) && !exclude.iter().any(|g| fnmatch(o, g))
                })
                .map(|o| Element::Str {
                    text: o.clone(),
                    quoted: false,
                })
                .collect()),
            Sweep::Interval(..) => Err(fail(
                Fail::new("interval() sweeps need an optimizer sweeper, not the basic sweeper")
                    .hint("use choice(...) or range(...) to sweep with the basic sweeper"),
            )),
        }
    }
}

impl fmt::Display for Sweep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |n: &Number| match n {
            Number::Int(i) => i.to_string(),
            Number::Float(x) => float_repr(*x),
        };
        let strs = |v: &[String]| {
            Element::List(
                v.iter()
                    .map(|t| Element::Str {
                        text: t.clone(),
                        quoted: false,
                    })
                    .collect(),
            )
        };
        match self {
            Sweep::Choice(items) => {
                let items: Vec<String> = items.iter().map(Element::to_value_string).collect();
                write!(f, "choice({})", items.join(","))
            }
            Sweep::Range { start, stop, step } => {
                write!(f, "range({},{},{})", num(start), num(stop), num(step))
            }
            Sweep::Glob { include, exclude } => write!(
                f,
                "glob(include={},exclude={})",
                strs(include).to_value_string(),
                strs(exclude).to_value_string()
            ),
            Sweep::Interval(a, b) => write!(f, "interval({},{})", float_repr(*a), float_repr(*b)),
        }
    }
}
