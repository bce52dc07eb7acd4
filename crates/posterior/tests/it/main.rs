//! ferbayes-posterior's tests, one binary: the last-layer Laplace and SWAG numerics against
//! numpy/scipy values (`tests/reference/*.py` write the `*.json` files the tests read).

mod laplace;
mod swag;

use serde_json::Value;

/// A reference JSON file of `tests/reference/`.
pub fn reference(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A JSON array of numbers (nested arrays flattened, row-major) as f64.
pub fn f64s(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(f64s).collect(),
        Value::Number(x) => vec![x.as_f64().expect("a JSON number")],
        other => panic!("expected numbers, got {other}"),
    }
}

/// A JSON array of numbers that are f32 values, as f32 (exact: the scripts write f32s widened).
pub fn f32s(v: &Value) -> Vec<f32> {
    f64s(v)
        .into_iter()
        .map(|x| {
            let y = x as f32;
            assert_eq!(f64::from(y), x, "{x} is not an f32 value");
            y
        })
        .collect()
}

/// Asserts `|got − want| ≤ tol(want)` elementwise, naming the first failure.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: impl Fn(usize, f64) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let t = tol(i, w);
        assert!(
            (g - w).abs() <= t,
            "{what}[{i}]: got {g}, want {w} (|diff| {} > {t})",
            (g - w).abs()
        );
    }
}

/// The tolerance of an f32 rounding of a value computed in f64: one ulp of f32, relative.
pub fn f32_rounding(w: f64) -> f64 {
    1.2e-7 * w.abs().max(1e-30) + 1e-12
}
