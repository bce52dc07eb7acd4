//! Test helpers shared by this crate's tests and the models crate's layer tests (feature
//! `testing`; not part of the stable API): seeded test tensors, tolerances, gradients.

use candle_core::{Device, Tensor, Var};

/// Uniform values in [-1, 1) from a xorshift stream.
pub fn uniform(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("uniform")
}

/// Distinct, strictly positive values at least 1/n apart in random order (so zero padding
/// never wins a max and a finite-difference step cannot swap the order of two values).
pub fn distinct(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut ranks: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        ranks.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    let v: Vec<f32> = ranks.iter().map(|&r| 0.05 + r as f32 / n as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("distinct")
}

/// A variable of [`uniform`] values.
pub fn var(shape: &[usize], seed: u64) -> Var {
    Var::from_tensor(&uniform(shape, seed)).expect("var")
}

/// The values of `t`, flattened.
pub fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1()).expect("to_vec")
}

/// max |a - b| <= 1e-4 · max(1, max |b|).
pub fn close(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let (a, b) = (to_vec(a), to_vec(b));
    let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(d <= 1e-4 * scale, "{what}: max diff {d} (scale {scale})");
}

/// Elementwise `|a - b| <= 1e-4 * (|b| + mean |b|)`: 1e-4 relative, with the tensor's mean
/// magnitude as the floor where a value cancels to nearly zero.
pub fn rel_close(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let (a, b) = (to_vec(a), to_vec(b));
    let scale = b.iter().map(|v| v.abs()).sum::<f32>() / b.len().max(1) as f32;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let tol = 1e-4 * (y.abs() + scale);
        assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs reference {y}");
    }
}

/// The same values bit for bit.
pub fn same_bits(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let bits = |t: &Tensor| to_vec(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert!(bits(a) == bits(b), "{what}: values differ");
}

/// Gradients of `sum(y · up)` with respect to each of `tensors`.
pub fn grads_of(y: &Tensor, up: &Tensor, tensors: &[&Tensor]) -> Vec<Tensor> {
    let g = (y * up)
        .and_then(|t| t.sum_all())
        .and_then(|t| t.backward())
        .expect("backward");
    tensors
        .iter()
        .map(|v| g.get(v).expect("gradient").clone())
        .collect()
}

/// [`grads_of`] the variables `vars`.
pub fn grads(y: &Tensor, up: &Tensor, vars: &[&Var]) -> Vec<Tensor> {
    let ts: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
    grads_of(y, up, &ts)
}

/// A xorshift stream for random test shapes.
#[derive(Debug)]
pub struct Shapes(pub u64);

impl Shapes {
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + (self.0 % (hi - lo + 1) as u64) as usize
    }
}
