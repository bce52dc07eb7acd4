//! The fast ops against candle's reference ops (values and gradients) and
//! against finite differences.

use candle_core::{DType, Device, Tensor, Var};

use super::*;
use crate::testing::{close, grads, same_bits, to_vec, uniform as rand, var};

/// The fused conv on the kernels the default backend picks.
fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    pad: usize,
    stride: usize,
    relu: bool,
) -> candle_core::Result<Tensor> {
    super::conv2d(x, w, bias, pad, stride, relu, Algo::Auto, 1)
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

/// Convs wide enough for the Winograd path (3x3 and 5x5, stride 1, 'same'
/// padding), through each of its ways: the whole batch at once (small maps:
/// odd sizes, batch 1, few tiles, a 2x2 map of one tile), groups of samples (15 samples of 16x17), and
/// one sample in chunks of tile rows with a partial last chunk (64x62, and 34x33
/// for 5x5).
const WINOGRAD_CASES: [ConvCase; 9] = [
    (1, 256, 257, 7, 9, 3, 1, 1),
    (3, 256, 256, 2, 2, 3, 1, 1),
    (5, 256, 256, 8, 6, 3, 1, 1),
    (9, 256, 256, 3, 5, 3, 1, 1),
    (15, 64, 64, 16, 17, 3, 1, 1),
    (2, 64, 64, 64, 62, 3, 1, 1),
    (2, 256, 256, 9, 8, 5, 2, 1),
    (1, 256, 256, 5, 5, 5, 2, 1),
    (4, 64, 64, 34, 33, 5, 2, 1),
];

#[test]
fn winograd_cases_take_the_winograd_path_and_the_others_do_not() {
    let takes = |&(b, cin, cout, h, w, k, pad, stride): &ConvCase| {
        let g = conv::Geom::new(&[b, cin, h, w], &[cout, cin, k, k], pad, stride, Algo::Auto)
            .expect("geom");
        winograd::alg(&g).is_some()
    };
    assert!(WINOGRAD_CASES.iter().all(takes));
    assert!(!CONV_CASES.iter().any(takes));
}

/// The fast conv (values; input, weight and bias gradients; with and without
/// bias and ReLU) against candle's conv2d on each case.
fn check_against_candle(cases: &[ConvCase], seed0: u64) {
    for (i, &(b, cin, cout, h, w, k, pad, stride)) in cases.iter().enumerate() {
        let seed = seed0 + 10 * i as u64;
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
            let mut up = rand(theirs.dims(), seed + 4);
            if relu {
                // Where the pre-activation is within rounding of 0, the two convs'
                // ReLUs may disagree on its sign: no upstream gradient there.
                let keep = theirs
                    .abs()
                    .and_then(|a| a.ge(1e-4))
                    .and_then(|m| m.to_dtype(DType::F32))
                    .expect("mask");
                up = (up * keep).expect("masked");
                theirs = theirs.relu().expect("relu");
            }
            close(&format!("{what} forward"), &ours, &theirs);
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
fn conv_matches_candle_values_and_gradients() {
    check_against_candle(&CONV_CASES, 0);
}

#[test]
fn winograd_conv_matches_candle_values_and_gradients() {
    check_against_candle(&WINOGRAD_CASES, 1000);
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
/// there): the fast conv against the reference `reference::conv2d` (`Conv2dOp`, itself
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
        let theirs = crate::reference::conv2d(x.as_tensor(), wt.as_tensor(), pad, 2).expect("op");
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

#[test]
fn max_pool_matches_candle_and_routes_gradient_to_the_maximum() {
    for (i, &(b, c, h, w)) in [
        (2, 3, 6, 6),
        (1, 2, 7, 5),
        (3, 1, 9, 10),
        (2, 3, 8, 37),
        (1, 2, 5, 32),
    ]
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

/// Where a Winograd conv's receptive field is all zeros (a black image region
/// after a ReLU, common in VGG16 with its zero biases), its output is exactly 0
/// as candle's, also on a tile whose other output row sees nonzero input, so a
/// fused ReLU passes the gradient there as candle's `relu` does.
#[test]
fn winograd_gives_exact_zeros_on_all_zero_fields() {
    // (kernel, zero rows): output rows 0..5 see only zeros; the tile of rows 4
    // and 5 also reads a nonzero row for row 5.
    for (k, zero_rows) in [(3, 6), (5, 7)] {
        let (b, c, side, pad) = (2, 256, 12, k / 2);
        let mut v = to_vec(&rand(&[b, c, side, side], 91));
        for ch in 0..c {
            v[ch * side * side..ch * side * side + zero_rows * side].fill(0.0);
        }
        let x = Tensor::from_vec(v, (b, c, side, side), &Device::Cpu).expect("x");
        let x = Var::from_tensor(&x).expect("var");
        let wt = var(&[c, c, k, k], 92);
        let g =
            conv::Geom::new(&[b, c, side, side], &[c, c, k, k], pad, 1, Algo::Auto).expect("geom");
        assert!(winograd::alg(&g).is_some());
        let ours = conv2d(x.as_tensor(), wt.as_tensor(), None, pad, 1, true).expect("fast conv");
        let theirs = x
            .as_tensor()
            .conv2d(wt.as_tensor(), pad, 1, 1, 1)
            .and_then(|t| t.relu())
            .expect("candle conv");
        let dead = ours
            .narrow(0, 0, 1)
            .and_then(|t| t.narrow(2, 0, 5))
            .expect("dead rows");
        assert!(to_vec(&dead).iter().all(|&v| v == 0.0), "k {k}");
        close(&format!("k {k} forward"), &ours, &theirs);
        let up = rand(ours.dims(), 93);
        let g1 = grads(&ours, &up, &[&x, &wt]);
        let g2 = grads(&theirs, &up, &[&x, &wt]);
        close(&format!("k {k} grad x"), &g1[0], &g2[0]);
        close(&format!("k {k} grad w"), &g1[1], &g2[1]);
    }
}

/// The channel concatenation equals `Tensor::cat` on dim 1, values and both
/// gradients bit for bit, for 4-d and 2-d inputs, batch 1 and a batch larger
/// than the thread count; an input that tracks no gradient gets none.
#[test]
fn cat_channels_equals_candle_cat_bit_for_bit() {
    for (b, ca, cb, rest) in [
        (5, 7, 3, vec![4, 6]),
        (1, 64, 32, vec![2, 2]),
        (3, 2, 5, vec![]),
    ] {
        let sa: Vec<usize> = [b, ca].iter().chain(&rest).copied().collect();
        let sb: Vec<usize> = [b, cb].iter().chain(&rest).copied().collect();
        let (a, bv) = (var(&sa, 1), var(&sb, 2));
        let ours = cat_channels(a.as_tensor(), bv.as_tensor()).expect("cat");
        let want = Tensor::cat(&[a.as_tensor(), bv.as_tensor()], 1).expect("cat");
        same_bits("values", &ours, &want);
        let up = rand(want.dims(), 3);
        let (g1, g2) = (grads(&ours, &up, &[&a, &bv]), grads(&want, &up, &[&a, &bv]));
        same_bits("grad a", &g1[0], &g2[0]);
        same_bits("grad b", &g1[1], &g2[1]);
        // A constant second input: only the first gets a gradient.
        let c = rand(&sb, 4);
        let y = cat_channels(a.as_tensor(), &c).expect("cat");
        let g = (&y * &up)
            .and_then(|t| t.sum_all())
            .and_then(|t| t.backward())
            .expect("backward");
        assert!(g.get(&c).is_none());
        same_bits(
            "grad a, constant b",
            g.get(a.as_tensor()).expect("grad"),
            &g2[0],
        );
    }
    let bad = cat_channels(&rand(&[2, 3, 4, 4], 5), &rand(&[2, 3, 4, 5], 6));
    assert!(bad.is_err(), "mismatched spatial sizes must be rejected");
}

/// The mask product equals candle's `mul`, values and gradients bit for bit
/// (over more elements than one parallel piece).
#[test]
fn mask_product_equals_candle_mul_bit_for_bit() {
    let shape = [3, 5, 61, 67];
    let (x, m) = (var(&shape, 7), var(&shape, 8));
    let ours = mul_mask(x.as_tensor(), m.as_tensor()).expect("mul");
    let want = x.as_tensor().mul(m.as_tensor()).expect("mul");
    same_bits("values", &ours, &want);
    let up = rand(&shape, 9);
    let (g1, g2) = (grads(&ours, &up, &[&x, &m]), grads(&want, &up, &[&x, &m]));
    same_bits("grad x", &g1[0], &g2[0]);
    same_bits("grad mask", &g1[1], &g2[1]);
}

/// The fused 3x3 / stride-2 / padding-1 pool equals the reference ops bit for
/// bit, values and gradient, on inputs >= 0 full of ties (three levels, a third
/// of them 0, so whole windows tie with the zero padding), odd and even sides.
#[test]
fn max_pool3_equals_the_reference_ops_bit_for_bit_with_ties() {
    for (shape, seed) in [
        ([2, 3, 9, 7], 1u64),
        ([1, 2, 8, 8], 2),
        ([3, 1, 1, 2], 3),
        ([2, 4, 32, 32], 4),
    ] {
        let levels = rand(&shape, seed)
            .affine(1.5, 1.5)
            .and_then(|t| t.floor())
            .and_then(|t| t.affine(0.25, 0.0))
            .expect("levels");
        let x = Var::from_tensor(&levels).expect("var");
        let ours = max_pool3_s2_p1(x.as_tensor()).expect("pool");
        let want = crate::reference::max_pool3_s2_p1(x.as_tensor()).expect("pool");
        same_bits("values", &ours, &want);
        let up = rand(want.dims(), seed + 10);
        same_bits(
            "gradient",
            &grads(&ours, &up, &[&x])[0],
            &grads(&want, &up, &[&x])[0],
        );
    }
}

/// The fused linear layer equals `x.matmul(&w.t())?.broadcast_add(&b)` bit for
/// bit, values and the three gradients, on the FC shapes of the networks and odd ones.
#[test]
fn linear_equals_candle_matmul_bit_for_bit() {
    for (n, i, o) in [
        (32, 512, 256),
        (32, 256, 256),
        (32, 256, 8),
        (1, 7, 3),
        (17, 100, 33),
    ] {
        let (x, w, b) = (var(&[n, i], 1), var(&[o, i], 2), var(&[o], 3));
        let ours = linear(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1).expect("linear");
        let want = x
            .as_tensor()
            .matmul(&w.as_tensor().t().expect("t"))
            .and_then(|t| t.broadcast_add(b.as_tensor()))
            .expect("reference");
        same_bits(&format!("values {n}x{i}x{o}"), &ours, &want);
        let up = rand(&[n, o], 4);
        let (g1, g2) = (
            grads(&ours, &up, &[&x, &w, &b]),
            grads(&want, &up, &[&x, &w, &b]),
        );
        for (k, name) in ["x", "w", "b"].iter().enumerate() {
            same_bits(&format!("grad {name} {n}x{i}x{o}"), &g1[k], &g2[k]);
        }
    }
}

/// Packed ops (see [`crate::members`]) against each member's own op on its block: values
/// and every gradient bit for bit, for a 'same' conv with bias and ReLU, a strided conv, a
/// Winograd-sized conv, the linear layer and training BatchNorm with and without the pool.
#[test]
fn packed_ops_equal_each_members_own_op_bit_for_bit() {
    const G: usize = 3;
    let block = |t: &Tensor, g: usize| -> Tensor {
        let n = t.dim(0).expect("dim") / G;
        t.narrow(0, g * n, n).expect("narrow")
    };
    // (packed output, packed inputs) -> checks each member's output and gradients against
    // `single` on the member's blocks.
    let check = |what: &str,
                 inputs: &[Var],
                 packed: &dyn Fn(&[&Tensor]) -> Tensor,
                 single: &dyn Fn(&[&Tensor]) -> Tensor| {
        let ins: Vec<&Tensor> = inputs.iter().map(|v| v.as_tensor()).collect();
        let y = packed(&ins);
        let up = rand(y.dims(), 99);
        let gp = grads(&y, &up, &inputs.iter().collect::<Vec<_>>());
        for g in 0..G {
            let own: Vec<Var> = inputs
                .iter()
                .map(|v| Var::from_tensor(&block(v.as_tensor(), g)).expect("var"))
                .collect();
            let own_ins: Vec<&Tensor> = own.iter().map(|v| v.as_tensor()).collect();
            let yo = single(&own_ins);
            same_bits(&format!("{what} member {g} output"), &block(&y, g), &yo);
            let go = grads(&yo, &block(&up, g), &own.iter().collect::<Vec<_>>());
            for (k, (a, b)) in gp.iter().zip(&go).enumerate() {
                same_bits(&format!("{what} member {g} grad {k}"), &block(a, g), b);
            }
        }
    };
    for (b, cin, cout, side, k, pad, stride, relu) in [
        (4, 3, 5, 9, 3, 1, 1, true),
        (5, 2, 4, 11, 5, 2, 2, false),
        (2, 64, 64, 8, 3, 1, 1, true),
    ] {
        let what = format!("conv {cin}->{cout} k{k} s{stride} side {side}");
        let x = var(&[G * b, cin, side, side], 1);
        let w = var(&[G * cout, cin, k, k], 2);
        let bias = var(&[G * cout], 3);
        let run = |m: usize| {
            move |t: &[&Tensor]| {
                super::conv2d(t[0], t[1], Some(t[2]), pad, stride, relu, Algo::Auto, m)
                    .expect("conv")
            }
        };
        check(&what, &[x, w, bias], &run(G), &run(1));
    }
    let (x, w, bias) = (var(&[G * 6, 10], 4), var(&[G * 7, 10], 5), var(&[G * 7], 6));
    let run = |m: usize| move |t: &[&Tensor]| linear(t[0], t[1], t[2], m).expect("linear");
    check("linear", &[x, w, bias], &run(G), &run(1));
    for pool in [false, true] {
        let x = var(&[G * 4, 3, 6, 6], 7);
        let gamma = Var::from_tensor(&(rand(&[G * 3], 8) + 1.5).expect("g")).expect("v");
        let beta = var(&[G * 3], 9);
        let run = |m: usize| {
            move |t: &[&Tensor]| {
                let f = if pool {
                    batch_norm_train_pool
                } else {
                    batch_norm_train
                };
                f(t[0], t[1], t[2], 1e-5, true, m).expect("bn").0
            }
        };
        check(
            &format!("batch norm pool {pool}"),
            &[x, gamma, beta],
            &run(G),
            &run(1),
        );
    }
}

/// Backend names parse and print back; an unknown one is refused naming the choices.
#[test]
fn backend_names_round_trip_and_unknown_names_are_refused() {
    for name in Backend::NAMES {
        let b: Backend = name.parse().expect("known name");
        assert_eq!(b.to_string(), name);
    }
    let err = "fast".parse::<Backend>().expect_err("unknown");
    assert!(
        err.contains("`fast`") && err.contains("reference, im2col, winograd"),
        "{err}"
    );
    assert_eq!(Backend::default(), Backend::Winograd);
    assert_eq!(Backend::Winograd.algo(), Algo::Auto);
    assert_eq!(Backend::Im2col.algo(), Algo::Im2col);
    assert!(!Backend::Reference.fast(&[]));
    assert!(Backend::Im2col.fast(&[]));
}

/// The SIMD setting, installed once per process by the binaries: the scalar loops give the bits
/// of the AVX2 ones (the pool gradient, training BatchNorm with its fused pool, forward and
/// backward), and what the manifests record says which ran. (A test running meanwhile gets the
/// same bits either way.)
#[test]
fn the_simd_setting_takes_the_scalar_loops_with_the_same_bits() {
    let x = var(&[3, 4, 10, 12], 71);
    let (gamma, beta) = (rand(&[4], 72), rand(&[4], 73));
    let run = || {
        let (y, _) =
            batch_norm_train_pool(x.as_tensor(), &gamma, &beta, 1e-5, true, 1).expect("batchnorm");
        let p = max_pool2(&y).expect("pool");
        let up = rand(p.dims(), 74);
        let g = grads(&p, &up, &[&x]).remove(0);
        (p, g)
    };
    let pulp = |paths: Vec<(String, String)>| {
        paths
            .into_iter()
            .find(|(family, _)| family == "pool, batchnorm")
            .map(|(_, path)| path)
            .expect("pool, batchnorm")
    };
    assert_eq!(simd_level(), SimdLevel::Auto);
    let (auto_y, auto_g) = run();
    let auto_path = pulp(simd_paths(Backend::Winograd));
    set_simd_level(SimdLevel::Scalar);
    let (scalar_y, scalar_g) = run();
    let scalar_path = pulp(simd_paths(Backend::Winograd));
    set_simd_level(SimdLevel::Auto);
    same_bits("forward", &auto_y, &scalar_y);
    same_bits("gradient", &auto_g, &scalar_g);
    assert!(scalar_path.starts_with("scalar"), "{scalar_path}");
    if simd_detected().is_some() {
        assert_eq!(auto_path, "AVX2+FMA (pulp V3)");
        assert_eq!(scalar_path, "scalar (the simd setting)");
    }
}

/// The gemm record names the AVX-512 kernels exactly when they run: a build with the `avx512`
/// feature on a CPU with AVX-512F (gemm dispatches at run time); otherwise the AVX2+FMA kernels,
/// saying whether the feature was built in.
#[test]
fn the_gemm_record_names_the_kernels_that_run() {
    let gemm = simd_paths(Backend::Winograd)
        .into_iter()
        .find(|(family, _)| family == "gemm")
        .map(|(_, path)| path)
        .expect("gemm");
    assert_eq!(
        gemm.contains("AVX-512 microkernels"),
        crate::gemm_avx512(),
        "{gemm}"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") && !crate::gemm_avx512() {
        assert!(gemm.starts_with("f32 AVX2+FMA"), "{gemm}");
        assert_eq!(
            gemm.contains("feature avx512 built in"),
            cfg!(feature = "avx512"),
            "{gemm}"
        );
    }
}
