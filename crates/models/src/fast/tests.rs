//! The fast ops against candle's reference ops (values and gradients) and
//! against finite differences.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{BatchNorm, ModuleT};

use super::*;

/// Uniform values in [-1, 1) from a xorshift stream.
fn rand(shape: &[usize], seed: u64) -> Tensor {
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
    Tensor::from_vec(v, shape, &Device::Cpu).expect("rand")
}

fn var(shape: &[usize], seed: u64) -> Var {
    Var::from_tensor(&rand(shape, seed)).expect("var")
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1()).expect("to_vec")
}

/// max |a - b| <= 1e-4 · max(1, max |b|).
fn close(what: &str, a: &Tensor, b: &Tensor) {
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

/// Gradients of sum(f() · up) with respect to `vars`.
fn grads(y: &Tensor, up: &Tensor, vars: &[&Var]) -> Vec<Tensor> {
    let g = (y * up)
        .and_then(|t| t.sum_all())
        .and_then(|t| t.backward())
        .expect("backward");
    vars.iter()
        .map(|v| g.get(v.as_tensor()).expect("grad").clone())
        .collect()
}

/// (B, Cin, Cout, H, W, k, pad, stride). Stride-2 cases have H and W equal mod 2:
/// candle's own conv2d backward (the reference) fails otherwise.
type ConvCase = (usize, usize, usize, usize, usize, usize, usize, usize);

const CONV_CASES: [ConvCase; 12] = [
    (2, 3, 4, 7, 7, 5, 2, 1),
    (1, 2, 3, 9, 8, 3, 1, 1),
    (3, 4, 5, 6, 6, 1, 0, 1),
    (1, 5, 3, 5, 5, 1, 0, 1),
    (2, 3, 4, 9, 7, 3, 1, 2),
    (2, 2, 3, 11, 11, 7, 3, 2),
    (9, 3, 4, 5, 5, 3, 1, 1),
    (9, 6, 7, 3, 3, 1, 0, 1),
    (5, 2, 3, 8, 8, 5, 0, 2),
    (4, 3, 2, 6, 5, 3, 2, 1),
    (2, 3, 3, 4, 4, 1, 1, 2),
    (33, 2, 3, 4, 4, 3, 0, 1),
];

#[test]
fn conv_matches_candle_values_and_gradients() {
    for (i, &(b, cin, cout, h, w, k, pad, stride)) in CONV_CASES.iter().enumerate() {
        let seed = 10 * i as u64;
        let x = var(&[b, cin, h, w], seed + 1);
        let wt = var(&[cout, cin, k, k], seed + 2);
        let bias = var(&[cout], seed + 3);
        for (with_bias, relu) in [(false, false), (true, false), (false, true), (true, true)] {
            let what = format!("case {i} bias {with_bias} relu {relu}");
            let ours = conv2d(
                x.as_tensor(),
                wt.as_tensor(),
                with_bias.then_some(bias.as_tensor()),
                pad,
                stride,
                relu,
            )
            .expect("fast conv");
            let mut theirs = x
                .as_tensor()
                .conv2d(wt.as_tensor(), pad, stride, 1, 1)
                .expect("candle conv");
            if with_bias {
                let bb = bias.as_tensor().reshape((1, cout, 1, 1)).expect("reshape");
                theirs = theirs.broadcast_add(&bb).expect("add");
            }
            if relu {
                theirs = theirs.relu().expect("relu");
            }
            close(&format!("{what} forward"), &ours, &theirs);
            let up = rand(ours.dims(), seed + 4);
            let vars = [&x, &wt, &bias];
            let n = if with_bias { 3 } else { 2 };
            let g1 = grads(&ours, &up, &vars[..n]);
            let g2 = grads(&theirs, &up, &vars[..n]);
            for (j, (a, r)) in g1.iter().zip(&g2).enumerate() {
                close(&format!("{what} grad {}", ["x", "w", "bias"][j]), a, r);
            }
        }
    }
}

#[test]
fn conv_gradients_match_finite_differences() {
    let (b, cin, cout, h, k, pad, stride) = (2, 2, 3, 5, 3, 1, 2);
    let x = rand(&[b, cin, h, h], 7);
    let w = rand(&[cout, cin, k, k], 8);
    let bias = rand(&[cout], 9);
    let f = |x: &Tensor, w: &Tensor, bias: &Tensor| {
        conv2d(x, w, Some(bias), pad, stride, false).expect("conv")
    };
    let up = rand(f(&x, &w, &bias).dims(), 10);
    let up64 = up.to_dtype(DType::F64).expect("f64");
    let loss = |y: Tensor| -> f64 {
        let y = y.to_dtype(DType::F64).expect("f64");
        (y * &up64)
            .and_then(|t| t.sum_all())
            .and_then(|t| t.to_scalar::<f64>())
            .expect("loss")
    };
    let vars = [
        Var::from_tensor(&x).expect("v"),
        Var::from_tensor(&w).expect("v"),
        Var::from_tensor(&bias).expect("v"),
    ];
    let y = f(
        vars[0].as_tensor(),
        vars[1].as_tensor(),
        vars[2].as_tensor(),
    );
    let g = grads(&y, &up, &[&vars[0], &vars[1], &vars[2]]);
    let eps = 1e-2f32;
    for which in 0..3 {
        let base = to_vec(vars[which].as_tensor());
        let analytic = to_vec(&g[which]);
        for i in 0..base.len() {
            let mut args = [x.clone(), w.clone(), bias.clone()];
            let shifted = |d: f32| {
                let mut v = base.clone();
                v[i] += d;
                Tensor::from_vec(v, vars[which].shape(), &Device::Cpu).expect("t")
            };
            args[which] = shifted(eps);
            let lp = loss(f(&args[0], &args[1], &args[2]));
            args[which] = shifted(-eps);
            let lm = loss(f(&args[0], &args[1], &args[2]));
            let fd = (lp - lm) / (2.0 * f64::from(eps));
            let an = f64::from(analytic[i]);
            assert!(
                (fd - an).abs() < 2e-3 * (1.0 + fd.abs()),
                "arg {which} coord {i}: fd {fd} vs grad {an}"
            );
        }
    }
}

/// Stride 2 with H and W of different parity (candle's own conv2d backward fails
/// there): the fast conv against the reference `ops::conv2d` (`Conv2dOp`, itself
/// checked by finite differences on these shapes).
#[test]
fn conv_stride2_with_h_and_w_of_different_parity_matches_the_reference_op() {
    for (i, &(b, cin, cout, h, w, k, pad)) in [
        (2, 3, 4, 7, 8, 3, 1),
        (1, 2, 3, 8, 7, 3, 1),
        (3, 2, 2, 9, 12, 5, 0),
        (2, 4, 3, 10, 5, 1, 0),
    ]
    .iter()
    .enumerate()
    {
        let seed = 500 + 10 * i as u64;
        let x = var(&[b, cin, h, w], seed + 1);
        let wt = var(&[cout, cin, k, k], seed + 2);
        let ours = conv2d(x.as_tensor(), wt.as_tensor(), None, pad, 2, false).expect("fast conv");
        let theirs = crate::ops::conv2d(x.as_tensor(), wt.as_tensor(), pad, 2).expect("op");
        let what = format!("case {i} ({h}x{w}, k{k}, p{pad})");
        close(&format!("{what} forward"), &ours, &theirs);
        let up = rand(ours.dims(), seed + 4);
        let g1 = grads(&ours, &up, &[&x, &wt]);
        let g2 = grads(&theirs, &up, &[&x, &wt]);
        for (j, (a, r)) in g1.iter().zip(&g2).enumerate() {
            close(&format!("{what} grad {}", ["x", "w"][j]), a, r);
        }
    }
}

/// A BatchNorm with random affine weights and running stats, as variables.
fn bn_layer(c: usize, seed: u64) -> (BatchNorm, Var, Var) {
    let g = Var::from_tensor(&(rand(&[c], seed) + 1.5).expect("g")).expect("v");
    let b = var(&[c], seed + 1);
    let rm = rand(&[c], seed + 2);
    let rv = (rand(&[c], seed + 3) + 1.5).expect("rv");
    let layer = BatchNorm::new(
        c,
        rm,
        rv,
        g.as_tensor().clone(),
        b.as_tensor().clone(),
        1e-5,
    )
    .expect("bn");
    (layer, g, b)
}

#[test]
fn batch_norm_matches_candle() {
    for (i, dims) in [
        vec![4, 3, 5, 7],
        vec![2, 5, 1, 1],
        vec![6, 8],
        vec![33, 4, 3, 3],
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 100 * i as u64;
        let c = dims[1];
        for (train, relu) in [(true, false), (false, false), (true, true), (false, true)] {
            let what = format!("dims {dims:?} train {train} relu {relu}");
            let x = Var::from_tensor(&rand(&dims, seed).affine(3.0, 0.5).expect("x")).expect("v");
            let (ours_l, g1, b1) = bn_layer(c, seed + 5);
            let (ref_l, g2, b2) = bn_layer(c, seed + 5);
            let mode = if train {
                crate::Mode::TRAIN
            } else {
                crate::Mode::EVAL
            };
            let ours = crate::layers::bn(&ours_l, x.as_tensor(), mode, relu).expect("fast bn");
            let mut theirs = ref_l.forward_t(x.as_tensor(), train).expect("candle bn");
            if relu {
                theirs = theirs.relu().expect("relu");
            }
            close(&format!("{what} forward"), &ours, &theirs);
            close(
                &format!("{what} running mean"),
                ours_l.running_mean(),
                ref_l.running_mean(),
            );
            close(
                &format!("{what} running var"),
                ours_l.running_var(),
                ref_l.running_var(),
            );
            let up = rand(&dims, seed + 9);
            let ga = grads(&ours, &up, &[&x, &g1, &b1]);
            let gb = grads(&theirs, &up, &[&x, &g2, &b2]);
            for (j, (a, r)) in ga.iter().zip(&gb).enumerate() {
                close(&format!("{what} grad {}", ["x", "gamma", "beta"][j]), a, r);
            }
        }
    }
}

#[test]
fn max_pool_matches_candle_and_routes_gradient_to_the_maximum() {
    for (i, &(b, c, h, w)) in [(2, 3, 6, 6), (1, 2, 7, 5), (3, 1, 9, 10)]
        .iter()
        .enumerate()
    {
        // Also with values rounded to -1, 0, 1: many ties, which go to the window's
        // first maximum in row-major order.
        for tied in [false, true] {
            let x = var(&[b, c, h, w], 200 + i as u64);
            let x = if tied {
                Var::from_tensor(&x.as_tensor().round().expect("round")).expect("var")
            } else {
                x
            };
            let ours = max_pool2(x.as_tensor()).expect("pool");
            let trimmed = x
                .as_tensor()
                .narrow(2, 0, h / 2 * 2)
                .and_then(|t| t.narrow(3, 0, w / 2 * 2))
                .expect("trim");
            close(
                "max pool forward",
                &ours,
                &trimmed.max_pool2d(2).expect("pool"),
            );
            // Gradient: each output's upstream value lands on its window's maximum.
            let up = rand(ours.dims(), 300 + i as u64);
            let g = to_vec(&grads(&ours, &up, &[&x])[0]);
            let xs = to_vec(x.as_tensor());
            let ups = to_vec(&up);
            let mut want = vec![0f32; xs.len()];
            let (ho, wo) = (h / 2, w / 2);
            for p in 0..b * c {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let idx = [(0, 0), (0, 1), (1, 0), (1, 1)]
                            .map(|(dy, dx)| p * h * w + (2 * oy + dy) * w + 2 * ox + dx);
                        let best = idx
                            .into_iter()
                            .fold(idx[0], |m, j| if xs[j] > xs[m] { j } else { m });
                        want[best] += ups[(p * ho + oy) * wo + ox];
                    }
                }
            }
            assert_eq!(g, want, "max pool gradient, case {i} tied {tied}");
        }
    }
}

/// At a pre-activation of exactly 0 the fused ReLU passes the gradient, as
/// candle's `relu` does (`x >= 0`): a zero input and zero bias make every
/// pre-activation 0, so the fused conv's gradients must equal candle's conv +
/// relu there (input gradient Wᵀ·up, bias gradient Σ up), while a negative bias
/// (pre-activation < 0) blocks every gradient.
#[test]
fn fused_relu_passes_the_gradient_at_exact_zero_like_candle() {
    let zeros = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &Device::Cpu).expect("zeros");
    let x = Var::from_tensor(&zeros(&[2, 3, 5, 5])).expect("v");
    let wt = var(&[4, 3, 3, 3], 5);
    let up = rand(&[2, 4, 5, 5], 6);
    for b in [0.0f64, -0.5] {
        let bias = Var::from_tensor(&(zeros(&[4]) + b).expect("bias")).expect("v");
        let vars = [&x, &wt, &bias];
        let ours = conv2d(
            x.as_tensor(),
            wt.as_tensor(),
            Some(bias.as_tensor()),
            1,
            1,
            true,
        )
        .expect("fast conv");
        assert!(to_vec(&ours).iter().all(|&v| v == 0.0));
        let theirs = x
            .as_tensor()
            .conv2d(wt.as_tensor(), 1, 1, 1, 1)
            .and_then(|t| t.broadcast_add(&bias.as_tensor().reshape((1, 4, 1, 1))?))
            .and_then(|t| t.relu())
            .expect("candle conv + relu");
        let (g1, g2) = (grads(&ours, &up, &vars), grads(&theirs, &up, &vars));
        for (name, (a, r)) in ["x", "w", "bias"].iter().zip(g1.iter().zip(&g2)) {
            close(&format!("bias {b}: grad {name}"), a, r);
        }
        let dx_nonzero = to_vec(&g1[0]).iter().any(|&v| v != 0.0);
        assert_eq!(
            dx_nonzero,
            b == 0.0,
            "bias {b}: input gradient passed {dx_nonzero}"
        );
    }
}
