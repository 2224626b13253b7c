//! Table-driven tests of the override grammar: typing, keys, errors, printing, sweeps.

use super::*;
use crate::config::node::{Origin, Value};
use OverrideKind::{Add, Change, Delete, ExtendList, ForceAdd};

fn s(t: &str) -> Element {
    Element::Str {
        text: t.into(),
        quoted: false,
    }
}

fn q(t: &str) -> Element {
    Element::Str {
        text: t.into(),
        quoted: true,
    }
}

fn value(input: &str) -> Element {
    match Override::parse(input) {
        Ok(Override {
            value: OverrideValue::Element(e),
            ..
        }) => e,
        other => panic!("{input}: {other:?}"),
    }
}

#[test]
fn primitives_are_typed_like_hydra() {
    use Element::{Bool, Float, Int, Null};
    let cases = [
        ("seed=7", Int(7)),
        ("lr=1e-4", Float(1e-4)),
        ("dropout=.5", Float(0.5)),
        ("offset=-3", Int(-3)),
        ("use_ema=False", Bool(false)),
        ("flag=TRUE", Bool(true)),
        ("note=null", Null),
        ("x=yes", s("yes")),
        ("x=on", s("on")),
        ("g=0x1F", s("0x1F")),
        ("d=5.", Float(5.0)),
        ("e=1_000", Int(1000)),
        ("f=+3", Int(3)),
        ("f=1E3", Float(1000.0)),
        ("a=inf", Float(f64::INFINITY)),
        ("b=-inf", Float(f64::NEG_INFINITY)),
        ("ckpt=/data/ckpt/last.ckpt", s("/data/ckpt/last.ckpt")),
        ("url=http://host:8080/a?b", s("http://host:8080/a?b")),
        ("at=@foo", s("@foo")),
        ("dollar=$x", s("$x")),
        (r"esc=\,a\ b\=c", s(",a b=c")),
        ("spaced=  two  words  ", s("two  words")),
        ("dash=-", s("-")),
        ("dotted=a-b_c.d", s("a-b_c.d")),
        ("u='ünïcødé'", q("ünïcødé")),
        ("hash='foo#bar'", q("foo#bar")),
        ("star=*", s("*")),
        ("name='a b'", q("a b")),
        ("note=\"x,y\"", q("x,y")),
        ("q=\"it's\"", q("it's")),
        ("r='say \"hi\"'", q("say \"hi\"")),
        ("s=''", q("")),
        ("t='  padded  '", q("  padded  ")),
        ("v='1e-4'", q("1e-4")),
        (r"w='it\'s'", q("it's")),
        (r"w='c:\\'", q("c:\\")),
        (r"w='a\b'", q("a\\b")),
        ("tag=run_${seed}", s("run_${seed}")),
        ("i=${oc.env:A,${b}}", s("${oc.env:A,${b}}")),
        ("x=", s("")),
        ("x=1 2", s("1 2")),
        (r"x=c:\foo\a-b.txt", s(r"c:\foo\a-b.txt")),
        (r"x=\(a\)\[\]", s("(a)[]")),
        ("x=1.2.3", s("1.2.3")),
        ("x=true_x", s("true_x")),
        ("x=infinity", s("infinity")),
    ];
    for (input, want) in cases {
        assert_eq!(value(input), want, "{input}");
    }
    assert!(matches!(value("c=nan"), Element::Float(x) if x.is_nan()));
    assert!(matches!(value("c=NaN"), Element::Float(x) if x.is_nan()));
}

#[test]
fn containers() {
    use Element::{Bool, Dict, Float, Int, List};
    let cases = [
        ("l=[1,2,3]", List(vec![Int(1), Int(2), Int(3)])),
        ("l=[]", List(vec![])),
        ("l=[ 1 , 2 ]", List(vec![Int(1), Int(2)])),
        (
            "l=[a,'b c',[1,2],{k:v}]",
            List(vec![
                s("a"),
                q("b c"),
                List(vec![Int(1), Int(2)]),
                Dict(vec![("k".into(), s("v"))]),
            ]),
        ),
        (
            "d={flip:true,crop:{size:32,pad:4}}",
            Dict(vec![
                ("flip".into(), Bool(true)),
                (
                    "crop".into(),
                    Dict(vec![("size".into(), Int(32)), ("pad".into(), Int(4))]),
                ),
            ]),
        ),
        ("d={}", Dict(vec![])),
        (
            "d={lr:0.1,eps:1e-6}",
            Dict(vec![("lr".into(), Float(0.1)), ("eps".into(), Float(1e-6))]),
        ),
        (
            "d={ a : 1 , 1_0:x, a b:c}",
            Dict(vec![
                ("a".into(), Int(1)),
                ("10".into(), s("x")),
                ("a b".into(), s("c")),
            ]),
        ),
        (
            "d={url:http://h:1}",
            Dict(vec![("url".into(), s("http://h:1"))]),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(value(input), want, "{input}");
    }
}

/// Run directories in lists (`inspect runs=[...]`): slashes, dashes, dots and dates stay one
/// unquoted string each.
#[test]
fn path_like_strings_in_lists() {
    use Element::List;
    let cases = [
        (
            "runs=[outputs/2026-01-01/12-00-00,outputs/b]",
            List(vec![s("outputs/2026-01-01/12-00-00"), s("outputs/b")]),
        ),
        (
            "runs=[/tmp/x-y/.tmpA1b2/run_1, ./rel-dir/a.b, ../up]",
            List(vec![
                s("/tmp/x-y/.tmpA1b2/run_1"),
                s("./rel-dir/a.b"),
                s("../up"),
            ]),
        ),
        ("runs=[12-00-00]", List(vec![s("12-00-00")])),
        (
            "run=outputs/2026-01-01/12-00-00",
            s("outputs/2026-01-01/12-00-00"),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(value(input), want, "{input}");
    }
}

#[test]
fn keys_and_kinds() {
    let cases = [
        ("optimizer.betas.0=0.8", Change, "optimizer.betas.0", None),
        ("model/path=cosine", Change, "model/path", None),
        ("path@model.path=cosine", Change, "path", Some("model.path")),
        (
            "dataset@val_data=mnist",
            Change,
            "dataset",
            Some("val_data"),
        ),
        ("hydra.run.dir=runs/x", Change, "hydra.run.dir", None),
        ("hydra/launcher=basic", Change, "hydra/launcher", None),
        ("+experiment=x", Add, "experiment", None),
        ("++seed=9", ForceAdd, "seed", None),
        ("~wd", Delete, "wd", None),
        ("~name=demo", Delete, "name", None),
        ("~dataset=cifar10", Delete, "dataset", None),
        ("~group@pkg", Delete, "group", Some("pkg")),
        ("group@=x", Change, "group", Some("")),
        ("$foo=1", Change, "$foo", None),
        ("a-b.0.c=1", Change, "a-b.0.c", None),
        ("x=extend_list(a,b)", ExtendList, "x", None),
    ];
    for (input, kind, key, package) in cases {
        let o = Override::parse(input).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (o.kind, o.key.as_str(), o.package.as_deref()),
            (kind, key, package),
            "{input}"
        );
        assert_eq!(o.input, input);
    }
    assert_eq!(Override::parse("~wd").unwrap().value, OverrideValue::Absent);
    assert_eq!(
        Override::parse("path@model.path=c").unwrap().key_element(),
        "path@model.path"
    );
    assert_eq!(Override::parse("+path=c").unwrap().key_element(), "path");
    for (input, hydra) in [
        ("hydra.run.dir=x", true),
        ("hydra/launcher=x", true),
        ("hydra={}", true),
        ("hydrax=1", false),
    ] {
        assert_eq!(Override::parse(input).unwrap().is_hydra(), hydra, "{input}");
    }
    assert!(Override::parse("tags=a,b").unwrap().is_sweep());
    assert!(!Override::parse("note=\"x,y\"").unwrap().is_sweep());
    assert_eq!(
        Override::parse("tags=a, b").unwrap().value,
        OverrideValue::Sweep(Sweep::Choice(vec![s("a"), s("b")]))
    );
}

#[test]
fn errors_say_what_to_type() {
    let cases = [
        (
            "seed",
            "Error parsing override 'seed'\nmissing EQUAL at '<EOF>'",
            "to delete a key use ~seed; to add one use +seed=VALUE",
        ),
        ("+seed", "missing EQUAL", "+seed=VALUE"),
        (
            "x='abc",
            "unterminated single-quoted string starting at column 3",
            "close it with '",
        ),
        ("x=\"abc", "unterminated double-quoted string", "\\\""),
        (
            "x=[1,2",
            "unclosed '[' at column 3: missing ']'",
            "close it with ']'",
        ),
        ("x={a:1", "unclosed '{' at column 3: missing '}'", "'}'"),
        (
            "x=choice(a,b",
            "unclosed '(' at column 9: missing ')'",
            "')'",
        ),
        (
            "x=a]",
            "unexpected ']' at column 4 after the value",
            "escape",
        ),
        ("x=a=b", "unexpected '=' at column 4", "\\="),
        (
            "x=[1,2] ",
            "unexpected whitespace at column 8 after the value",
            "whitespace",
        ),
        (
            "x='a'b",
            "unexpected 'b' at column 6 after the value",
            "quote",
        ),
        (
            "x=a,",
            "unexpected end of the override where a value was expected",
            "trailing ','",
        ),
        (
            "x=[1,]",
            "unexpected ']' at column 6 where a value was expected",
            "",
        ),
        ("x={'a':1}", "where a dict key was expected", "{lr:0.1"),
        ("x={a}", "where ':' was expected", ""),
        ("x=   ", "only whitespace", "x="),
        (
            "x = 1",
            "unexpected whitespace at column 2 in the key",
            "no space before '='",
        ),
        (
            "seed:7",
            "unexpected character '7' at column 6",
            "'=' between key and value",
        ),
        (
            "seed:abc=1",
            "unexpected ':' at column 5 in the key",
            "'=' between key and value",
        ),
        ("=x", "missing key before '='", "key=value"),
        ("~", "missing key after '~'", ""),
        ("a+b=1", "unexpected '+' at column 2", "very start"),
        ("a/b.c=1", "unexpected 'b.c' at column 3", ""),
        ("a/=1", "missing config group name after '/'", ""),
        (
            "x=ü",
            "unexpected character 'ü' at column 3",
            "quote the value",
        ),
        ("x=~/data", "unexpected character '~' at column 3", "quote"),
        (
            "x=${a",
            "unterminated or empty interpolation '${' at column 3",
            "",
        ),
        (
            "x=99999999999999999999",
            "does not fit in 64 bits",
            "quote it",
        ),
        ("x=[choice(1,2)]", "cannot be nested", "choice([1,2],[3,4])"),
        ("x=a,range(2)", "cannot be nested", ""),
        (
            "+x=extend_list(a)",
            "extend_list() cannot be combined",
            "x=extend_list(a,b)",
        ),
        (
            "x=[extend_list(a)]",
            "extend_list() must be the whole value",
            "",
        ),
        (
            "x=f(a=1,2)",
            "positional argument follows keyword argument",
            "last",
        ),
        ("x=sort(a,reverse=true,reverse=false)", "given twice", ""),
    ];
    for (input, message, hint) in cases {
        let e = Override::parse(input).expect_err(input);
        assert!(e.message.contains(message), "{input}: {e}");
        assert!(
            e.hint.as_deref().unwrap_or("").contains(hint),
            "{input}: {e}"
        );
        assert_eq!(e.input, input);
    }
    let deep = format!("x={}", "[".repeat(5000));
    assert!(Override::parse(&deep)
        .unwrap_err()
        .message
        .contains("nest more than"));
}

#[test]
fn values_print_back_like_hydra() {
    let cases = [
        ("x=[a,'b c',[1,2],{k:v}]", "[a,'b c',[1,2],{k:v}]"),
        ("x={lr:0.1,eps:1e-6}", "{lr:0.1,eps:1e-06}"),
        ("x=1e-4", "0.0001"),
        ("x=1e16", "1e+16"),
        ("x=-0.0", "-0.0"),
        ("x=123456789.125", "123456789.125"),
        ("x=5.", "5.0"),
        ("x=False", "False"),
        ("x=null", "null"),
        ("x=-inf", "-inf"),
        ("x=run_${seed}", "run_${seed}"),
        (r"x=\,a\ b\=c", r"\,a\ b\=c"),
        ("x=", "''"),
        ("x=str(1)", "'1'"),
        ("x=str(true)", "'true'"),
        ("x='ünï'", "'ünï'"),
        ("x=\"it's\"", "\"it's\""),
        (r#"x='a\'b\"c'"#, r#"'a\'b\"c'"#),
        (r"x='c:\\'", r"'c:\\'"),
        ("x=/data/last.ckpt", "/data/last.ckpt"),
    ];
    for (input, want) in cases {
        assert_eq!(value(input).to_value_string(), want, "{input}");
    }
}

#[test]
fn to_node_carries_origin() {
    let origin = Origin::Override("x={a:[1,null]}".into());
    let node = value("x={a:[1,null],a:2}").to_node(&origin);
    assert_eq!(node.origin, origin);
    assert_eq!(node.select("a").map(|n| &n.value), Some(&Value::Int(2)));
    let node = value("x={a:[1,null]}").to_node(&origin);
    assert_eq!(
        node.select("a.1").map(|n| (&n.value, &n.origin)),
        Some((&Value::Null, &origin))
    );
}

/// Elements equal up to the quoted flag, with NaN equal to itself.
fn same(a: &Element, b: &Element) -> bool {
    match (a, b) {
        (Element::Float(x), Element::Float(y)) => x == y || x.is_nan() && y.is_nan(),
        (Element::Str { text: x, .. }, Element::Str { text: y, .. }) => x == y,
        (Element::List(x), Element::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Element::Dict(x), Element::Dict(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((k, a), (l, b))| k == l && same(a, b))
        }
        _ => a == b,
    }
}

#[test]
fn random_inputs_never_panic_and_values_round_trip() {
    let alphabet: Vec<char> = "ab1 0_-.,:=()[]{}'\"\\$@+~/*?|%#üeEtrunlx\t"
        .chars()
        .collect();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for round in 0..40_000 {
        let len = next(16);
        let body: String = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
        let input = if round % 4 == 0 {
            body
        } else {
            format!("k={body}")
        };
        if let Ok(Override {
            value: OverrideValue::Element(e),
            ..
        }) = Override::parse(&input)
        {
            let printed = e.to_value_string();
            let back = value(&format!("k={printed}"));
            assert!(
                same(&e, &back),
                "{input:?} printed as {printed:?} parsed back as {back:?}"
            );
        }
        for (i, _) in input.char_indices() {
            let _ = Override::parse(&input[..i]);
        }
    }
}

/// The sweep of `input`, expanded over `options` and printed as Hydra's basic sweeper would.
fn expand(input: &str, options: &[&str]) -> Result<String, String> {
    let options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
    match Override::parse(input).map_err(|e| e.to_string())?.value {
        OverrideValue::Sweep(sweep) => {
            let values = sweep.expand(&options).map_err(|e| e.to_string())?;
            Ok(values
                .iter()
                .map(Element::to_value_string)
                .collect::<Vec<_>>()
                .join("|"))
        }
        other => Err(format!("not a sweep: {other:?}")),
    }
}

#[test]
fn sweeps_expand_like_the_basic_sweeper() {
    let opts = ["resnet18", "resnet50", "vit_b", "vit_l"];
    let cases = [
        ("tags=a,b", "a|b"),
        ("x=${a}, ${b}", "${a}|${b}"),
        ("x=[1,2],[3,4]", "[1,2]|[3,4]"),
        ("x=choice(a,b)", "a|b"),
        ("x=choice( a , 'b c' )", "a|b c"),
        ("x=choice([1,2],{a:1})", "[1,2]|{a:1}"),
        ("x=range(5)", "0|1|2|3|4"),
        ("x=range(1,5)", "1|2|3|4"),
        ("x=range(1, 10, step=3)", "1|4|7"),
        ("x=range(5,0,-2)", "5|3|1"),
        ("x=range(3,3)", ""),
        (
            "x=range(0,1,0.1)",
            "0.0|0.1|0.2|0.3|0.4|0.5|0.6|0.7|0.8|0.9",
        ),
        ("x=range(1.0,2.0,0.25)", "1.0|1.25|1.5|1.75"),
        ("x=range(1,0,-0.3)", "1.0|0.7|0.4|0.1"),
        ("x=range(0,3,1e20)", "0.0"),
        ("m=glob(*)", "resnet18|resnet50|vit_b|vit_l"),
        ("m=glob(resnet*)", "resnet18|resnet50"),
        ("m=glob([vit_?,resnet1*],exclude=vit_l)", "resnet18|vit_b"),
        ("m=glob(include=*,exclude=['*[0-9]'])", "vit_b|vit_l"),
        ("m=glob('*[!0-9]')", "vit_b|vit_l"),
        ("x=int(1.5,2.7)", "1|2"),
        ("x=int(choice(1.5,-2.5))", "1|-2"),
        ("x=float(range(1,3))", "1.0|2.0"),
        ("x=int(range(0.5,3))", "0|1|2"),
        ("x=str(1,true)", "'1'|'true'"),
        ("x=bool(0,1)", "False|True"),
        ("x=sort(3,1,2)", "1|2|3"),
        ("x=sort(3,1.5,2,reverse=true)", "3|2|1.5"),
        ("x=sort(b,a,c)", "a|b|c"),
        ("x=sort(choice(b,a))", "a|b"),
        ("x=sort(range(1,4),reverse=true)", "3|2|1"),
        ("x=sort(range(3,0,-1))", "1|2|3"),
        ("x=sort(sweep=range(1,3))", "1|2"),
        ("x=shuffle(a,b,c,d,seed=1)", "c|a|d|b"),
        ("x=shuffle(sweep=range(3),seed=3)", "2|1|0"),
    ];
    for (input, want) in cases {
        assert_eq!(expand(input, &opts).as_deref(), Ok(want), "{input}");
    }
    let err = expand("x=interval(0,1)", &[]).unwrap_err();
    assert!(
        err.contains("interval() sweeps need an optimizer sweeper, not the basic sweeper"),
        "{err}"
    );
    let err = expand("x=range(0,1e9)", &[]).unwrap_err();
    assert!(err.contains("more than 100000 values"), "{err}");
}

#[test]
fn functions_on_elements() {
    use Element::{Bool, Float, Int, List};
    let cases = [
        ("x=int(1.5)", Int(1)),
        ("x=int(' 42 ')", Int(42)),
        ("x=int([1.5,'2'])", List(vec![Int(1), Int(2)])),
        ("x=int(value=2.5)", Int(2)),
        ("x=float(3)", Float(3.0)),
        ("x=float('1_000.5')", Float(1000.5)),
        ("x=float(INF)", Float(f64::INFINITY)),
        ("x=str(1e-4)", s("0.0001")),
        ("x=str({a:1})", Element::Dict(vec![("a".into(), s("1"))])),
        ("x=bool(TRUE)", Bool(true)),
        ("x=bool(null)", Bool(false)),
        ("x=sort([3,1,2])", List(vec![Int(1), Int(2), Int(3)])),
        (
            "x=sort([3,1,2], reverse=true)",
            List(vec![Int(3), Int(2), Int(1)]),
        ),
        ("x=sort(list=[b,a])", List(vec![s("a"), s("b")])),
        ("x=sort(7)", Int(7)),
        (
            "x=shuffle([1,2,3],seed=0)",
            List(vec![Int(3), Int(1), Int(2)]),
        ),
        ("x=shuffle(a,seed=0)", List(vec![s("a")])),
        (
            "x=extend_list(a,[1])",
            List(vec![s("a"), List(vec![Int(1)])]),
        ),
        ("x=extend_list()", List(vec![])),
    ];
    for (input, want) in cases {
        assert_eq!(value(input), want, "{input}");
    }
    let sweep = |input: &str| Override::parse(input).unwrap().value;
    assert_eq!(
        sweep("x=interval(0,1)"),
        OverrideValue::Sweep(Sweep::Interval(0.0, 1.0))
    );
    assert_eq!(
        sweep("x=int(interval(0.5,2.5))"),
        OverrideValue::Sweep(Sweep::Interval(0.0, 2.0))
    );
    assert_eq!(
        sweep("x=glob(a*)"),
        OverrideValue::Sweep(Sweep::Glob {
            include: vec!["a*".into()],
            exclude: vec![]
        })
    );
    assert_eq!(
        sweep("x=range(2.5)"),
        OverrideValue::Sweep(Sweep::Range {
            start: Number::Int(0),
            stop: Number::Float(2.5),
            step: Number::Int(1)
        })
    );
}

#[test]
fn function_errors() {
    let cases = [
        (
            "x=foo(1)",
            "unknown function 'foo'; available functions: bool, choice, extend_list, float, glob",
        ),
        ("x=choice()", "choice() needs at least one value"),
        ("x=choice(choice(a,b))", "choice() cannot take a sweep"),
        (
            "x=range(a)",
            "range() argument 'start' must be a number, got 'a'",
        ),
        ("x=range()", "range() needs at least a stop value"),
        ("x=range(1,2,0)", "step must not be zero"),
        (
            "x=range(1,2,3,4)",
            "range() takes at most 3 arguments (4 given)",
        ),
        ("x=range(1,start=2)", "multiple values for argument 'start'"),
        ("x=range(1,bogus=2)", "unexpected keyword argument 'bogus'"),
        ("x=interval(1)", "interval() needs a start and an end"),
        (
            "x=str(range(3))",
            "a range() can only be cast to int or float",
        ),
        (
            "x=bool(interval(0,1))",
            "an interval() cannot be cast to bool",
        ),
        ("x=int(glob(*))", "a glob() cannot be cast"),
        ("x=int(a)", "invalid literal for int() with base 10: 'a'"),
        ("x=int(inf)", "cannot convert float inf"),
        ("x=int(null)", "int() cannot convert null"),
        ("x=float(abc)", "could not convert string to float: 'abc'"),
        ("x=bool(yes)", "cannot cast 'yes' to bool"),
        ("x=int(1,value=2)", "both positional and named"),
        ("x=int()", "int() needs a value"),
        (
            "x=sort(a,1)",
            "sort() can only order all numbers or all strings",
        ),
        ("x=sort([1],[2])", "only numbers or strings"),
        ("x=sort(a,reverse=maybe)", "reverse must be true or false"),
        ("x=sort(glob(*))", "sort() works on lists"),
        ("x=sort()", "sort() needs something to work on"),
        ("x=shuffle(a,b)", "shuffle() needs an explicit seed"),
        ("x=shuffle(a,seed=x)", "seed must be an integer"),
        (
            "x=glob(1)",
            "glob() patterns must be a string or a list of strings",
        ),
        ("x=glob([a,1])", "glob() patterns must be strings"),
        ("x=glob(exclude=a)", "glob() needs an include pattern"),
        (
            "x=tag(a,choice(1,2))",
            "tag() only serves optimizer sweepers",
        ),
    ];
    for (input, message) in cases {
        let e = Override::parse(input).expect_err(input);
        assert!(e.message.contains(message), "{input}: {e}");
        assert!(
            e.message
                .starts_with(&format!("Error parsing override '{input}'\n")),
            "{e}"
        );
    }
}
