//! Reading the golden vectors in tests/golden/ and comparing tensors against them.

use candle_core::{DType, Device, Tensor};
use serde_json::Value as Json;
use std::path::PathBuf;

/// One golden array: shape, dtype and flat row-major data (non-finite values included).
#[derive(Debug, Clone)]
pub struct Array {
    /// The shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// "f32", "f64" or "i64".
    pub dtype: String,
    /// The values as f64 (exact for f32 and for i64 up to 2^53).
    pub data: Vec<f64>,
}

impl Array {
    fn from_json(v: &Json) -> Array {
        let shape = v["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let dtype = v["dtype"].as_str().expect("dtype").to_string();
        let data = v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|x| match x {
                Json::Number(n) => n.as_f64().unwrap(),
                Json::String(s) if s == "inf" => f64::INFINITY,
                Json::String(s) if s == "-inf" => f64::NEG_INFINITY,
                Json::String(s) if s == "nan" => f64::NAN,
                other => panic!("unexpected array entry {other}"),
            })
            .collect();
        Array { shape, dtype, data }
    }

    /// The candle dtype of this array.
    pub fn candle_dtype(&self) -> DType {
        match self.dtype.as_str() {
            "f32" => DType::F32,
            "f64" => DType::F64,
            "i64" => DType::I64,
            other => panic!("unknown dtype {other}"),
        }
    }

    /// The array as a tensor of its own dtype on `device`.
    pub fn tensor(&self, device: &Device) -> Tensor {
        let t = match self.dtype.as_str() {
            "f32" => Tensor::from_vec(
                self.data.iter().map(|x| *x as f32).collect::<Vec<_>>(),
                self.shape.as_slice(),
                device,
            ),
            "f64" => Tensor::from_vec(self.data.clone(), self.shape.as_slice(), device),
            "i64" => Tensor::from_vec(
                self.data.iter().map(|x| *x as i64).collect::<Vec<_>>(),
                self.shape.as_slice(),
                device,
            ),
            other => panic!("unknown dtype {other}"),
        };
        t.expect("tensor from golden array")
    }

    /// The values as i64 (for integer outputs).
    pub fn ints(&self) -> Vec<i64> {
        self.data.iter().map(|x| *x as i64).collect()
    }

    /// The single value of a scalar array.
    pub fn scalar(&self) -> f64 {
        assert_eq!(self.data.len(), 1, "not a scalar");
        self.data[0]
    }
}

/// One golden case.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case name, e.g. `scheduler/CondOT/f64`.
    pub name: String,
    /// The parameters (`params.op` says what to run).
    pub params: Json,
    /// Named input arrays.
    pub inputs: Vec<(String, Array)>,
    /// Named expected outputs.
    pub outputs: Vec<(String, Array)>,
}

impl Case {
    /// The input called `name`.
    pub fn input(&self, name: &str) -> &Array {
        &self
            .inputs
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("{}: no input {name}", self.name))
            .1
    }

    /// The output called `name`.
    pub fn output(&self, name: &str) -> &Array {
        &self
            .outputs
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("{}: no output {name}", self.name))
            .1
    }

    /// The operation of this case (`params.op`).
    pub fn op(&self) -> &str {
        self.params["op"].as_str().unwrap_or("")
    }
}

/// All cases of one golden file (`paths`, `diffusion`, `ode` or `losses`).
pub fn load(file: &str) -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{file}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let root: Json = serde_json::from_str(&text).expect("golden json");
    let arrays = |v: &Json| -> Vec<(String, Array)> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, a)| (k.clone(), Array::from_json(a)))
                    .collect()
            })
            .unwrap_or_default()
    };
    root["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap_or("").to_string(),
            params: c["params"].clone(),
            inputs: arrays(&c["inputs"]),
            outputs: arrays(&c["outputs"]),
        })
        .collect()
}

/// The README tolerance (rtol, atol) of a file for a dtype.
pub fn default_tolerance(file: &str, dtype: &str) -> (f64, f64) {
    match (file, dtype) {
        ("paths" | "diffusion", "f64") => (1e-10, 1e-12),
        ("paths" | "diffusion" | "losses", _) => (1e-5, 1e-6),
        ("ode", "f64") => (1e-9, 1e-10),
        ("ode", _) => (1e-4, 1e-5),
        _ => (1e-5, 1e-6),
    }
}

/// The tolerance for one output: `params.tol[output]` when present, else the file default.
pub fn tolerance(case: &Case, file: &str, output: &str) -> (f64, f64) {
    let want = case.output(output);
    let (rtol, atol) = default_tolerance(file, &want.dtype);
    match case.params.get("tol").and_then(|t| t.get(output)) {
        Some(t) => (
            t["rtol"].as_f64().unwrap_or(rtol),
            t["atol"].as_f64().unwrap_or(atol),
        ),
        None => (rtol, atol),
    }
}

/// Compares `got` with `want` element-wise (`|g-w| <= atol + rtol*|w|`; non-finite exact).
/// Returns a description of the worst mismatch, or `None` when everything is within tolerance.
pub fn compare(got: &Tensor, want: &Array, rtol: f64, atol: f64) -> Option<String> {
    if got.dims() != want.shape.as_slice() {
        return Some(format!("shape {:?}, expected {:?}", got.dims(), want.shape));
    }
    let got: Vec<f64> = got
        .flatten_all()
        .and_then(|t| t.to_dtype(DType::F64))
        .and_then(|t| t.to_vec1())
        .expect("tensor values");
    let mut worst: Option<(f64, usize)> = None;
    for (i, (g, w)) in got.iter().zip(&want.data).enumerate() {
        let bad = if w.is_nan() {
            if g.is_nan() {
                0.0
            } else {
                f64::INFINITY
            }
        } else if w.is_infinite() {
            if g == w {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            let err = (g - w).abs();
            let tol = atol + rtol * w.abs();
            if err <= tol {
                0.0
            } else {
                err / tol
            }
        };
        if bad > 0.0 && worst.is_none_or(|(b, _)| bad > b) {
            worst = Some((bad, i));
        }
    }
    worst.map(|(ratio, i)| {
        format!(
            "element {i}: got {}, want {} ({ratio:.1}x the tolerance)",
            got[i], want.data[i]
        )
    })
}

/// Collects failures across cases and panics with all of them at the end.
#[derive(Default)]
pub struct Report {
    failures: Vec<String>,
    checked: usize,
}

impl Report {
    /// Checks one output of a case against a tensor.
    pub fn check(&mut self, case: &Case, file: &str, output: &str, got: &Tensor) {
        let (rtol, atol) = tolerance(case, file, output);
        self.checked += 1;
        if let Some(msg) = compare(got, case.output(output), rtol, atol) {
            self.failures
                .push(format!("{} [{output}]: {msg}", case.name));
        }
    }

    /// Checks an integer output exactly.
    pub fn check_ints(&mut self, case: &Case, output: &str, got: &[i64]) {
        self.checked += 1;
        let want = case.output(output).ints();
        if want != got {
            self.failures.push(format!(
                "{} [{output}]: got {got:?}, want {want:?}",
                case.name
            ));
        }
    }

    /// Records a failure that is not a comparison (an error returned by the code under test).
    pub fn fail(&mut self, case: &Case, msg: impl std::fmt::Display) {
        self.failures.push(format!("{}: {msg}", case.name));
    }

    /// Panics listing every failure; prints how many outputs were checked.
    pub fn finish(self, what: &str) {
        println!(
            "{what}: {} outputs checked, {} failed",
            self.checked,
            self.failures.len()
        );
        assert!(self.checked > 0, "{what}: nothing was checked");
        assert!(
            self.failures.is_empty(),
            "{what}:\n{}",
            self.failures.join("\n")
        );
    }
}
