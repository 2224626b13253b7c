//! Value checks shared by the settings' [`Validate`](super::Validate) impls; each error names
//! the key, its origin and what to type instead. NaN fails every check.

use super::de::NodeDe;
use super::SchemaError;

/// Fails with `message` and `hint` at `key` (below `at`) unless `ok`.
pub(crate) fn ensure(
    ok: bool,
    at: &NodeDe<'_>,
    key: &str,
    message: impl FnOnce() -> String,
    hint: impl FnOnce() -> String,
) -> Result<(), SchemaError> {
    if ok {
        Ok(())
    } else {
        Err(at.error_at(key, message()).with_hint(hint()))
    }
}

/// Requires an integer of at least 1.
pub(crate) fn at_least_one(at: &NodeDe<'_>, key: &str, value: u64) -> Result<(), SchemaError> {
    ensure(
        value >= 1,
        at,
        key,
        || format!("must be at least 1, found {value}"),
        || format!("set {}=1 or more", at.key_of(key)),
    )
}

/// Requires a finite number greater than 0.
pub(crate) fn positive(at: &NodeDe<'_>, key: &str, value: f64) -> Result<(), SchemaError> {
    ensure(
        value.is_finite() && value > 0.0,
        at,
        key,
        || format!("must be a finite number greater than 0, found {value:?}"),
        || format!("set {}=<a number greater than 0>", at.key_of(key)),
    )
}

/// Requires a finite number of at least 0.
pub(crate) fn non_negative(at: &NodeDe<'_>, key: &str, value: f64) -> Result<(), SchemaError> {
    ensure(
        value.is_finite() && value >= 0.0,
        at,
        key,
        || format!("must be a finite number of at least 0, found {value:?}"),
        || format!("set {}=0 or more", at.key_of(key)),
    )
}

/// Requires `0 <= value < 1`, or `0 <= value <= 1` when `one_allowed`.
pub(crate) fn fraction(
    at: &NodeDe<'_>,
    key: &str,
    value: f64,
    one_allowed: bool,
) -> Result<(), SchemaError> {
    let ok = value >= 0.0 && (value < 1.0 || (one_allowed && value == 1.0));
    let range = if one_allowed { "[0, 1]" } else { "[0, 1)" };
    ensure(
        ok,
        at,
        key,
        || format!("must be in {range}, found {value:?}"),
        || format!("set {}=<a number in {range}>", at.key_of(key)),
    )
}

/// Checks that `key` names a logged metric (a non-empty string).
pub(crate) fn metric_name(at: &NodeDe<'_>, key: &str, value: &str) -> Result<(), SchemaError> {
    ensure(
        !value.trim().is_empty(),
        at,
        key,
        || "must name a logged metric, found an empty string".to_string(),
        || format!("set {}=val_loss", at.key_of(key)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::{Node, Value};

    #[test]
    fn checks_reject_nan_and_name_the_key() {
        let node = Node::builtin(Value::Null);
        let at = NodeDe::at(&node, "sec");
        assert!(positive(&at, "x", f64::NAN).is_err());
        assert!(positive(&at, "x", f64::INFINITY).is_err());
        assert!(non_negative(&at, "x", 0.0).is_ok());
        assert!(fraction(&at, "x", 1.0, false).is_err());
        assert!(fraction(&at, "x", 1.0, true).is_ok());
        assert!(fraction(&at, "x", f64::NAN, true).is_err());
        let err = at_least_one(&at, "n", 0).unwrap_err();
        assert_eq!(err.key, "sec.n");
        assert_eq!(err.hint(), Some("set sec.n=1 or more"));
    }
}
