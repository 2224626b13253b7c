//! Property tests: random override strings and random YAML never panic the parsers, and the
//! emitter's output always reads back as the same data. Bounded by a fixed case count.

use flowrun::config::emit::to_yaml;
use flowrun::config::node::{Map, Node, Value};
use flowrun::config::overrides::Override;
use flowrun::config::yaml::load_str;
use proptest::prelude::*;
use std::sync::Arc;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const OVERRIDE_CHARS: &str = "[a-zA-Z0-9_+~=,.@/:'\"\\\\\\[\\]{}()$ \t*?|%-]{0,40}";
const YAML_CHARS: &str = "[a-z0-9_:\\-#&*!|>'\"%@`\\[\\]{},?<~. \n\t]{0,80}";

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        "\\PC{0,12}".prop_map(Value::Str),
        prop_oneof![
            Just("yes"),
            Just("0x1F"),
            Just("1e-4"),
            Just(" x"),
            Just("a: b"),
            Just("-"),
            Just("${a}"),
            Just("'q'"),
            Just("2024-01-01"),
            Just("~"),
            Just("\ttab"),
            Just("line\nbreak")
        ]
        .prop_map(|s| Value::Str(s.to_string())),
    ]
}

fn tree() -> impl Strategy<Value = Node> {
    let leaf = scalar().prop_map(Node::builtin);
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| Node::builtin(Value::List(v))),
            prop::collection::vec(("[a-z_][a-z0-9_]{0,6}", inner), 0..5).prop_map(|kv| {
                let mut m = Map::new();
                for (k, v) in kv {
                    m.insert(k, v);
                }
                Node::builtin(Value::Map(m))
            }),
        ]
    })
}

fn same_data(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => (x.is_nan() && y.is_nan()) || x == y,
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_data(&p.value, &q.value))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| k1 == k2 && same_data(&v1.value, &v2.value))
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn override_parser_never_panics(s in OVERRIDE_CHARS) {
        let _ = Override::parse(&s);
    }

    #[test]
    fn override_parser_never_panics_on_any_text(s in "\\PC{0,30}") {
        let _ = Override::parse(&s);
    }

    #[test]
    fn yaml_loader_never_panics(s in YAML_CHARS) {
        let _ = load_str(&s, &Arc::from("fuzz.yaml"));
    }

    #[test]
    fn emitted_yaml_reads_back_as_the_same_data(values in prop::collection::vec(("[a-z_][a-z0-9_]{0,6}", tree()), 0..6)) {
        let mut m = Map::new();
        for (k, v) in values {
            m.insert(k, v);
        }
        let root = Node::builtin(Value::Map(m));
        let text = to_yaml(&root);
        let back = load_str(&text, &Arc::from("emitted.yaml")).unwrap().unwrap_or_else(|| Node::builtin(Value::Map(Map::new())));
        prop_assert!(same_data(&root.value, &back.value), "round trip failed:\n{}", text);
    }
}
