//! The layers on the fused kernels against candle's reference layers, and whole
//! networks on one backend against another.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{BatchNorm, ModuleT};
use ferbayes_kernels::Backend;

use ferbayes_kernels::testing::{close, grads, same_bits, to_vec, uniform as rand, var};

use crate::Mode;
use crate::layers::{bn, bn_pool};

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
            let ours = bn(&ours_l, x.as_tensor(), mode, relu, Backend::Winograd).expect("fast bn");
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

/// A whole VGG16 (width 0.5 at 32x32, batch 17: Winograd on its 64x64 conv on
/// 16x16 maps in groups of samples and on its 256x256 convs on 4x4 and 2x2 maps
/// on the whole batch) gives the same logits and parameter gradients with
/// Winograd as with im2col, up to rounding carried through 16 layers.
#[test]
fn vgg16_with_winograd_equals_im2col() {
    use candle_nn::{VarBuilder, VarMap};
    let cfg = crate::ModelConfig::new(crate::Arch::Vgg16, crate::Method::McDropout, 0.5, 32);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let winograd = crate::Model::with_backend(&cfg, Backend::Winograd, vb.clone()).expect("model");
    let im2col = crate::Model::with_backend(&cfg, Backend::Im2col, vb).expect("model");
    crate::init_seeded(&varmap, 5).expect("init");
    let xs = (rand(&[17, 1, 32, 32], 77) + 1.0).expect("xs") * 0.5;
    let xs = xs.expect("input in [0, 1)");
    let up = rand(&[17, 8], 78);
    let run = |model: &crate::Model| {
        let logits = model
            .forward(&xs, crate::Mode::EVAL, &mut crate::Noise::new(0))
            .expect("forward");
        let grads = (&logits * &up)
            .and_then(|t| t.sum_all())
            .and_then(|t| t.backward())
            .expect("backward");
        let g: Vec<(String, Tensor)> = crate::sorted_vars(&varmap)
            .into_iter()
            .map(|(name, v)| (name, grads.get(v.as_tensor()).expect("grad").clone()))
            .collect();
        (logits, g)
    };
    let (l1, g1) = run(&winograd);
    let (l0, g0) = run(&im2col);
    let rel = |a: &Tensor, b: &Tensor| {
        let (a, b) = (to_vec(a), to_vec(b));
        let scale = b.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
            / scale
    };
    assert!(rel(&l1, &l0) < 1e-4, "logits {}", rel(&l1, &l0));
    for ((name, a), (_, b)) in g1.iter().zip(&g0) {
        let r = rel(a, b);
        assert!(
            r < 1e-3,
            "{name}: gradient differs by {r} of its largest entry"
        );
    }
}

/// A BatchNorm layer over `c` >= 3 channels like [`bn_layer`], with gamma and
/// beta as variables, where channel 1 has gamma = beta = 0 (every
/// pre-activation exactly 0) and channel 2 gamma = 0, beta = -1 (all < 0).
fn bn_layer_with_dead_channels(c: usize, seed: u64) -> (BatchNorm, Var, Var) {
    let (layer, g, b) = bn_layer(c, seed);
    for (v, dead) in [(&g, [0.0, 0.0]), (&b, [0.0, -1.0])] {
        let mut vals = to_vec(v.as_tensor());
        vals[1..3].copy_from_slice(&dead);
        // `set` writes into the storage the layer shares.
        v.set(&Tensor::from_vec(vals, c, &Device::Cpu).expect("values"))
            .expect("set");
    }
    (layer, g, b)
}

/// Training BatchNorm with its ReLU fused (the backward re-evaluates the
/// pre-activation for the mask) gives the values and the x, gamma and beta
/// gradients of BatchNorm followed by candle's `relu`, bit for bit, including a
/// channel whose pre-activations are all exactly 0 (gamma = beta = 0: the
/// gradient passes, as through candle's `relu`) and one where they are all < 0.
#[test]
fn batch_norm_with_fused_relu_equals_bn_then_candle_relu_bit_for_bit() {
    let (dims, c) = ([5, 4, 6, 7], 4);
    let x = Var::from_tensor(&rand(&dims, 71).affine(2.0, 0.3).expect("x")).expect("v");
    let ((l1, g1, b1), (l2, g2, b2)) = (
        bn_layer_with_dead_channels(c, 81),
        bn_layer_with_dead_channels(c, 81),
    );
    let fused = bn(&l1, x.as_tensor(), Mode::TRAIN, true, Backend::Winograd).expect("fused");
    let apart = bn(&l2, x.as_tensor(), Mode::TRAIN, false, Backend::Winograd)
        .and_then(|t| Ok(t.relu()?))
        .expect("bn then relu");
    same_bits("forward", &fused, &apart);
    let up = rand(&dims, 91);
    let ga = grads(&fused, &up, &[&x, &g1, &b1]);
    let gb = grads(&apart, &up, &[&x, &g2, &b2]);
    for (j, (a, r)) in ga.iter().zip(&gb).enumerate() {
        same_bits(&format!("grad {}", ["x", "gamma", "beta"][j]), a, r);
    }
    // The all-zero channel passed gradient to beta, the negative one none.
    let db = to_vec(&ga[2]);
    assert!(db[1] != 0.0 && db[2] == 0.0, "beta grads {db:?}");
}

/// Training BatchNorm + ReLU + 2x2 max pool as one op equals the BatchNorm op
/// followed by the pool op bit for bit: pooled values, running statistics and
/// the x, gamma and beta gradients; on odd sizes (a row and a column the pool
/// drops), inputs rounded to tenths (ties in many windows), a channel whose
/// pre-activations are all 0 (every window tied: the first entry gets the
/// gradient and the ReLU passes it) and one where they are all < 0.
#[test]
fn batch_norm_relu_pool_equals_the_three_ops_bit_for_bit() {
    for (i, dims) in [[3, 4, 7, 9], [2, 3, 8, 32], [1, 4, 5, 37]]
        .into_iter()
        .enumerate()
    {
        let c = dims[1];
        let x = rand(&dims, 500 + i as u64)
            .affine(20.0, 3.0)
            .and_then(|t| t.round());
        let x = Var::from_tensor(&(x.expect("x") / 10.0).expect("tenths")).expect("v");
        let ((l1, g1, b1), (l2, g2, b2)) = (
            bn_layer_with_dead_channels(c, 600),
            bn_layer_with_dead_channels(c, 600),
        );
        let mode = crate::Mode::TRAIN;
        let fused = bn_pool(&l1, x.as_tensor(), mode, true, Backend::Winograd).expect("fused");
        let apart = bn(&l2, x.as_tensor(), mode, true, Backend::Winograd)
            .and_then(|t| Ok(Backend::Winograd.max_pool2(&t)?))
            .expect("apart");
        let what = format!("{dims:?}");
        same_bits(&format!("{what} forward"), &fused, &apart);
        same_bits(
            &format!("{what} running mean"),
            l1.running_mean(),
            l2.running_mean(),
        );
        same_bits(
            &format!("{what} running var"),
            l1.running_var(),
            l2.running_var(),
        );
        let up = rand(fused.dims(), 700 + i as u64);
        let ga = grads(&fused, &up, &[&x, &g1, &b1]);
        let gb = grads(&apart, &up, &[&x, &g2, &b2]);
        for (j, (a, r)) in ga.iter().zip(&gb).enumerate() {
            same_bits(&format!("{what} grad {}", ["x", "gamma", "beta"][j]), a, r);
        }
        let db = to_vec(&ga[2]);
        assert!(db[1] != 0.0 && db[2] == 0.0, "{what}: beta grads {db:?}");
    }
}

/// The project's layers against candle's own layers.
mod against_candle {
    use candle_core::{DType, Device, Var};
    use ferbayes_kernels::Backend;

    use ferbayes_kernels::testing::{Shapes, distinct as rand, grads_of as grads, rel_close};

    /// The project's conv layer (`layers::Conv2d`: [`conv2d`] plus the bias as it adds it)
    /// against `candle_nn::Conv2d` (`Tensor::conv2d` and candle's own backward): outputs and
    /// the gradients of input, weight and bias, for every kernel 1/3/5/7 x padding 0/1/2 x
    /// stride 1/2, with random channel counts, batch 1-3 and odd and even sides.
    #[test]
    fn conv_layer_matches_candle_reference() {
        use candle_nn::{Conv2dConfig, Module, VarBuilder, VarMap};
        let mut shapes = Shapes(0x5eed_c0de);
        let mut case = 0u64;
        for k in [1usize, 3, 5, 7] {
            for p in [0, 1, 2] {
                for s in [1, 2] {
                    case += 1;
                    let b = [1, 2, 3][case as usize % 3];
                    let (cin, cout) = (shapes.range(1, 6), shapes.range(1, 6));
                    let min = k.saturating_sub(2 * p).max(1);
                    // Odd sides on every other case; stride 1 also gets H != W. Stride 2 stays
                    // square here: candle's conv2d backward derives the output padding of both
                    // dims from H alone (a shape error when H and W differ mod 2);
                    // `conv_op_values_and_gradients` checks those shapes by finite differences.
                    let mut h = shapes.range(min, 13);
                    if case.is_multiple_of(2) && h.is_multiple_of(2) {
                        h += 1;
                    }
                    let w = if s == 1 { shapes.range(min, 13) } else { h };
                    let bias = !case.is_multiple_of(4);
                    // The fused ReLU against candle's `relu` on every third case.
                    let relu = case % 3 == 1;
                    let what =
                        format!("b{b} cin{cin} cout{cout} {h}x{w} k{k} p{p} s{s} relu {relu}");

                    // The fused CPU kernels and the device ops (what a GPU runs).
                    for backend in [Backend::Winograd, Backend::Device] {
                        let varmap = VarMap::new();
                        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
                        let layer = crate::layers::Conv2d::new(
                            cin,
                            cout,
                            k,
                            s,
                            p,
                            bias,
                            crate::layers::Ops::single(backend),
                            vb,
                        )
                        .expect("layer");
                        let weight = (rand(&[cout, cin, k, k], 10 + case) - 0.5).expect("w");
                        let bias_t = (rand(&[cout], 20 + case) - 0.5).expect("bias");
                        let vars = varmap.data().lock().expect("lock").clone();
                        vars["weight"].set(&weight).expect("set");
                        if bias {
                            vars["bias"].set(&bias_t).expect("set");
                        }

                        let xv =
                            Var::from_tensor(&(rand(&[b, cin, h, w], 30 + case) - 0.5).expect("x"))
                                .expect("var");
                        let ours = layer
                            .forward_with_weight(
                                xv.as_tensor(),
                                layer.point_weight().expect("a point weight"),
                                relu,
                            )
                            .expect("ours");
                        let mut ours_vars = vec![xv.as_tensor(), vars["weight"].as_tensor()];
                        if bias {
                            ours_vars.push(vars["bias"].as_tensor());
                        }

                        let xr = Var::from_tensor(xv.as_tensor()).expect("var");
                        let wr = Var::from_tensor(&weight).expect("var");
                        let br = Var::from_tensor(&bias_t).expect("var");
                        let cfg = Conv2dConfig {
                            padding: p,
                            stride: s,
                            ..Default::default()
                        };
                        let reference = candle_nn::Conv2d::new(
                            wr.as_tensor().clone(),
                            bias.then(|| br.as_tensor().clone()),
                            cfg,
                        );
                        let theirs = reference.forward(xr.as_tensor()).expect("reference");
                        let theirs = if relu {
                            theirs.relu().expect("relu")
                        } else {
                            theirs
                        };
                        let mut ref_vars = vec![xr.as_tensor(), wr.as_tensor()];
                        if bias {
                            ref_vars.push(br.as_tensor());
                        }

                        rel_close(&format!("{what} {backend}: output"), &ours, &theirs);
                        // Without gradient tracking the wrapper is candle's conv itself.
                        let plain = ferbayes_kernels::reference::conv2d(
                            &xv.as_tensor().detach(),
                            &weight,
                            p,
                            s,
                        )
                        .expect("plain");
                        let plain_ref = xr.as_tensor().detach().conv2d(&weight, p, s, 1, 1);
                        rel_close(
                            &format!("{what}: untracked output"),
                            &plain,
                            &plain_ref.expect("ref"),
                        );

                        let up = (rand(ours.dims(), 40 + case) - 0.5).expect("up");
                        let g_ours = grads(&ours, &up, &ours_vars);
                        let g_ref = grads(&theirs, &up, &ref_vars);
                        for ((name, a), r) in
                            ["input", "weight", "bias"].iter().zip(&g_ours).zip(&g_ref)
                        {
                            rel_close(&format!("{what} {backend}: {name} gradient"), a, r);
                        }

                        // The `conv2d` wrapper alone (`Conv2dOp` when gradients are tracked),
                        // without bias, against `Tensor::conv2d`.
                        let (xo, wo) =
                            (Var::from_tensor(xv.as_tensor()), Var::from_tensor(&weight));
                        let (xo, wo) = (xo.expect("var"), wo.expect("var"));
                        let op = ferbayes_kernels::reference::conv2d(
                            xo.as_tensor(),
                            wo.as_tensor(),
                            p,
                            s,
                        )
                        .expect("op");
                        let (xc, wc) =
                            (Var::from_tensor(xv.as_tensor()), Var::from_tensor(&weight));
                        let (xc, wc) = (xc.expect("var"), wc.expect("var"));
                        let op_ref = xc.as_tensor().conv2d(wc.as_tensor(), p, s, 1, 1);
                        let op_ref = op_ref.expect("reference");
                        rel_close(&format!("{what}: wrapper output"), &op, &op_ref);
                        let g_op = grads(&op, &up, &[xo.as_tensor(), wo.as_tensor()]);
                        let g_op_ref = grads(&op_ref, &up, &[xc.as_tensor(), wc.as_tensor()]);
                        for ((name, a), r) in ["input", "weight"].iter().zip(&g_op).zip(&g_op_ref) {
                            rel_close(&format!("{what}: wrapper {name} gradient"), a, r);
                        }
                    }
                }
            }
        }
    }

    /// `layers::bn` (the project's BatchNorm path) against candle's own
    /// `BatchNorm::forward_t` (followed by candle's `relu` for the fused variant): outputs,
    /// the gradients of input, scale and shift, and the running statistics after a
    /// training-mode pass, in training and evaluation mode, with and without the ReLU, on
    /// (B, C, H, W) maps (batch 1 and odd sides included) and on (B, C) features.
    #[test]
    fn batch_norm_matches_candle_reference() {
        use candle_nn::{VarBuilder, VarMap};
        let shapes: [&[usize]; 5] = [
            &[2, 3, 5, 7],
            &[1, 4, 3, 5],
            &[3, 2, 1, 1],
            &[5, 6],
            // Not (2, C): two samples normalise to -1 and +1 whatever their values, so the
            // input gradient is only eps's residue (~1e-5) and no relative check fits it.
            &[4, 3],
        ];
        for (case, dims) in shapes.iter().enumerate() {
            let case = case as u64;
            let c = dims[1];
            let params = [
                ("weight", (rand(&[c], 80 + case) + 0.5).expect("t")),
                ("bias", (rand(&[c], 81 + case) - 0.5).expect("t")),
                ("running_mean", (rand(&[c], 82 + case) - 0.5).expect("t")),
                ("running_var", (rand(&[c], 83 + case) + 0.5).expect("t")),
            ];
            let layer = |backend: Backend| {
                let varmap = VarMap::new();
                let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
                let bn = crate::layers::batch_norm(c, crate::layers::Ops::single(backend), vb)
                    .expect("bn");
                let vars = varmap.data().lock().expect("lock").clone();
                for (name, t) in &params {
                    vars[*name].set(t).expect("set");
                }
                (bn, vars)
            };
            let modes = [crate::Mode::TRAIN, crate::Mode::EVAL];
            for (mode, relu) in modes.into_iter().flat_map(|m| [(m, false), (m, true)]) {
                let what = format!("{dims:?} train={} relu={relu}", mode.batchnorm_train);
                for backend in [Backend::Winograd, Backend::Device] {
                    let what = format!("{what} {backend}");
                    let ((ours_bn, ours_vars), (ref_bn, ref_vars)) =
                        (layer(backend), layer(Backend::Reference));
                    let x = rand(dims, 90 + case).affine(3.0, -1.0).expect("x");
                    let (xo, xr) = (
                        Var::from_tensor(&x).expect("v"),
                        Var::from_tensor(&x).expect("v"),
                    );
                    let ours = ours_bn.forward(xo.as_tensor(), mode, relu).expect("ours");
                    // The device ops leave the running statistics to the model's flush.
                    ferbayes_kernels::device::flush_running().expect("flush");
                    // The reference backend runs candle's `BatchNorm::forward_t`, then its `relu`.
                    let theirs = ref_bn
                        .forward(xr.as_tensor(), mode, relu)
                        .expect("reference");
                    rel_close(&format!("{what}: output"), &ours, &theirs);
                    for name in ["running_mean", "running_var"] {
                        rel_close(
                            &format!("{what}: {name}"),
                            ours_vars[name].as_tensor(),
                            ref_vars[name].as_tensor(),
                        );
                    }
                    let up = (rand(ours.dims(), 95 + case) - 0.5).expect("up");
                    let names = ["input", "weight", "bias"];
                    let g_ours = grads(
                        &ours,
                        &up,
                        &[
                            xo.as_tensor(),
                            ours_vars["weight"].as_tensor(),
                            ours_vars["bias"].as_tensor(),
                        ],
                    );
                    let g_ref = grads(
                        &theirs,
                        &up,
                        &[
                            xr.as_tensor(),
                            ref_vars["weight"].as_tensor(),
                            ref_vars["bias"].as_tensor(),
                        ],
                    );
                    for ((name, a), r) in names.iter().zip(&g_ours).zip(&g_ref) {
                        rel_close(&format!("{what}: {name} gradient"), a, r);
                    }
                }
            }
        }
    }
}
