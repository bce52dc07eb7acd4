//! The device ops' CUDA kernels against their CPU twins, op by op: masks, copies, pools and the
//! running-statistics update bit for bit (the same integer and correctly rounded f32 / f64
//! arithmetic in the same order); BatchNorm, bias + ReLU and the channel sums bit for bit too
//! (fixed-order reductions, `_rn` intrinsics, no FMA contraction); the loss (expf / logf are not
//! correctly rounded) and the convolutions (cuDNN's own summation order) to 1e-4.
//!
//! They need a build with the `cuda` feature and a GPU: elsewhere the one test says that it was
//! skipped and why.

use candle_core::Device;

/// The first GPU, or why the GPU checks are skipped.
fn gpu() -> Result<Device, String> {
    #[cfg(feature = "cuda")]
    {
        // The error's first line: candle appends a backtrace to it.
        Device::new_cuda(0).map_err(|e| {
            let e = e.to_string();
            format!("no CUDA device ({})", e.lines().next().unwrap_or_default())
        })
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err("built without the `cuda` feature (build with --features cuda on a GPU machine)".into())
    }
}

#[test]
fn cuda_ops_match_their_cpu_twins() {
    let gpu = match gpu() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipping the CUDA op checks: {why}");
            return;
        }
    };
    #[cfg(feature = "cuda")]
    checks::run(&gpu);
    #[cfg(not(feature = "cuda"))]
    let _ = gpu;
}

#[cfg(feature = "cuda")]
mod checks {
    use candle_core::{DType, Device, Tensor, Var};

    use crate::device::bias_relu::ChannelSums;
    use crate::device::{
        MaskStream, Target, Update, batch_norm, bias_relu, cat_dropout, conv2d, cross_entropy,
        dropout, flush_running, optimizer_step,
    };
    use crate::testing::{grads_of, to_vec, uniform};

    fn on(t: &Tensor, d: &Device) -> Tensor {
        t.to_device(d).expect("to device")
    }

    fn bits(what: &str, gpu: &Tensor, cpu: &Tensor) {
        let g = to_vec(&gpu.to_device(&Device::Cpu).expect("to cpu"));
        let c = to_vec(cpu);
        assert_eq!(g.len(), c.len(), "{what}: sizes");
        let differ = g
            .iter()
            .zip(&c)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differ,
            0,
            "{what}: {differ} of {} values differ in their bits",
            c.len()
        );
    }

    fn near(what: &str, gpu: &Tensor, cpu: &Tensor, tol: f32) {
        let g = to_vec(&gpu.to_device(&Device::Cpu).expect("to cpu"));
        let c = to_vec(cpu);
        let scale = c.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let d = g
            .iter()
            .zip(&c)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d <= tol * scale, "{what}: differs by {d} (scale {scale})");
    }

    pub(super) fn run(gpu: &Device) {
        masks(gpu);
        pools_and_copies(gpu);
        batch_norms(gpu);
        bias_loss_sums(gpu);
        convolutions(gpu);
        optimizer(gpu);
    }

    fn streams(n: usize) -> Vec<MaskStream> {
        (0..n)
            .map(|g| MaskStream {
                key: [9, 8, 7, g as u32, 5, 4, 3, 2],
                stream: 1,
                word: 16 * 1000 * g as u128 + 11,
            })
            .collect()
    }

    fn masks(gpu: &Device) {
        let x = uniform(&[6, 5, 9, 7], 1);
        let s = streams(3);
        let cpu = dropout(&x, &s, 0.8).expect("cpu");
        bits(
            "dropout",
            &dropout(&on(&x, gpu), &s, 0.8).expect("gpu"),
            &cpu,
        );
        let a = uniform(&[6, 4, 9, 7], 2);
        let cpu = cat_dropout(&a, &x, &s, 0.8).expect("cpu");
        bits(
            "cat dropout",
            &cat_dropout(&on(&a, gpu), &on(&x, gpu), &s, 0.8).expect("gpu"),
            &cpu,
        );
        // The backward: the gradient's channels times the same mask.
        let (av, xv) = (
            Var::from_tensor(&a).expect("v"),
            Var::from_tensor(&x).expect("v"),
        );
        let up = uniform(cpu.dims(), 3);
        let y = cat_dropout(av.as_tensor(), xv.as_tensor(), &s, 0.8).expect("cpu");
        let gc = grads_of(&y, &up, &[av.as_tensor(), xv.as_tensor()]);
        let (ag, xg) = (
            Var::from_tensor(&on(&a, gpu)).expect("v"),
            Var::from_tensor(&on(&x, gpu)).expect("v"),
        );
        let y = cat_dropout(ag.as_tensor(), xg.as_tensor(), &s, 0.8).expect("gpu");
        let gg = grads_of(&y, &on(&up, gpu), &[ag.as_tensor(), xg.as_tensor()]);
        bits("cat dropout: first gradient", &gg[0], &gc[0]);
        bits("cat dropout: second gradient", &gg[1], &gc[1]);
    }

    fn pools_and_copies(gpu: &Device) {
        for h in [7usize, 8, 13] {
            // Repeated values: ties decide where the gradients go.
            let x = (uniform(&[2, 3, h, h + 1], 4) * 4.0)
                .and_then(|t| t.round())
                .and_then(|t| t.relu())
                .expect("x");
            let up2 = uniform(&[2, 3, h / 2, (h + 1) / 2], 5);
            let up3 = uniform(&[2, 3, (h - 1) / 2 + 1, h / 2 + 1], 6);
            for (name, three, up) in [("max pool 2", false, &up2), ("max pool 3", true, &up3)] {
                let run = |d: &Device| {
                    let v = Var::from_tensor(&on(&x, d)).expect("v");
                    let y = if three {
                        crate::max_pool3_s2_p1(v.as_tensor())
                    } else {
                        crate::max_pool2(v.as_tensor())
                    }
                    .expect("pool");
                    let g = grads_of(&y, &on(up, d), &[v.as_tensor()]);
                    (y, g[0].clone())
                };
                let ((yc, gc), (yg, gg)) = (run(&Device::Cpu), run(gpu));
                bits(&format!("{name} h {h}"), &yg, &yc);
                bits(&format!("{name} h {h}: gradient"), &gg, &gc);
            }
        }
        let (a, b) = (uniform(&[3, 2, 4, 4], 7), uniform(&[3, 5, 4, 4], 8));
        let run = |d: &Device| {
            let (av, bv) = (
                Var::from_tensor(&on(&a, d)).expect("v"),
                Var::from_tensor(&on(&b, d)).expect("v"),
            );
            let y = crate::cat_channels(av.as_tensor(), bv.as_tensor()).expect("cat");
            let g = grads_of(
                &y,
                &on(&uniform(y.dims(), 9), d),
                &[av.as_tensor(), bv.as_tensor()],
            );
            (y, g)
        };
        let ((yc, gc), (yg, gg)) = (run(&Device::Cpu), run(gpu));
        bits("concatenation", &yg, &yc);
        bits(
            "concatenation: gradients",
            &Tensor::cat(
                &[
                    &gg[0].flatten_all().expect("f"),
                    &gg[1].flatten_all().expect("f"),
                ],
                0,
            )
            .expect("c"),
            &Tensor::cat(
                &[
                    &gc[0].flatten_all().expect("f"),
                    &gc[1].flatten_all().expect("f"),
                ],
                0,
            )
            .expect("c"),
        );
    }

    fn batch_norms(gpu: &Device) {
        // Two packed members, more than one chunk per channel, ReLU on and off, train and eval.
        for (dims, relu, train) in [
            (vec![8usize, 3, 20, 20], true, true),
            (vec![8, 3, 20, 20], false, false),
            (vec![6, 5], true, true),
        ] {
            let c = dims[1] * 2;
            let x = (uniform(&dims, 10) * 3.0).expect("x");
            let gamma = (uniform(&[c], 11) + 1.5).expect("g");
            let beta = uniform(&[c], 12);
            let (rm, rv) = (uniform(&[c], 13), (uniform(&[c], 14) + 2.0).expect("rv"));
            let run = |d: &Device| {
                let (xv, gv, bv) = (
                    Var::from_tensor(&on(&x, d)).expect("v"),
                    Var::from_tensor(&on(&gamma, d)).expect("v"),
                    Var::from_tensor(&on(&beta, d)).expect("v"),
                );
                let (rm, rv) = (on(&rm, d).copy().expect("c"), on(&rv, d).copy().expect("c"));
                let y = batch_norm(
                    xv.as_tensor(),
                    gv.as_tensor(),
                    bv.as_tensor(),
                    &rm,
                    &rv,
                    (1e-5, 0.1),
                    relu,
                    train,
                    2,
                )
                .expect("bn");
                flush_running().expect("flush");
                let up = on(&uniform(&dims, 15), d);
                let g = grads_of(&y, &up, &[xv.as_tensor(), gv.as_tensor(), bv.as_tensor()]);
                (y, g, rm, rv)
            };
            let what = format!("batch norm {dims:?} relu {relu} train {train}");
            let ((yc, gc, mc, vc), (yg, gg, mg, vg)) = (run(&Device::Cpu), run(gpu));
            bits(&what, &yg, &yc);
            for (k, name) in ["input", "gamma", "beta"].iter().enumerate() {
                bits(&format!("{what}: {name} gradient"), &gg[k], &gc[k]);
            }
            bits(&format!("{what}: running mean"), &mg, &mc);
            bits(&format!("{what}: running var"), &vg, &vc);
        }
    }

    fn bias_loss_sums(gpu: &Device) {
        let x = uniform(&[4, 6, 5, 5], 16);
        let bias = uniform(&[6], 17);
        let run = |d: &Device| {
            let (xv, bv) = (
                Var::from_tensor(&on(&x, d)).expect("v"),
                Var::from_tensor(&on(&bias, d)).expect("v"),
            );
            let y = bias_relu(xv.as_tensor(), bv.as_tensor()).expect("bias relu");
            let g = grads_of(
                &y,
                &on(&uniform(y.dims(), 18), d),
                &[xv.as_tensor(), bv.as_tensor()],
            );
            (y, g)
        };
        let ((yc, gc), (yg, gg)) = (run(&Device::Cpu), run(gpu));
        bits("bias relu", &yg, &yc);
        bits("bias relu: input gradient", &gg[0], &gc[0]);
        bits("bias relu: bias gradient (channel sums)", &gg[1], &gc[1]);
        let sums = x.apply_op1_no_bwd(&ChannelSums).expect("cpu");
        bits(
            "channel sums",
            &on(&x, gpu).apply_op1_no_bwd(&ChannelSums).expect("gpu"),
            &sums,
        );

        let logits = (uniform(&[7, 8], 19) * 3.0).expect("logits");
        let classes = Tensor::new(&[0u32, 7, 3, 3, 1, 6, 2], &Device::Cpu).expect("y");
        let soft = (uniform(&[7, 8], 20) + 1.0)
            .and_then(|t| t.broadcast_div(&t.sum_keepdim(1)?))
            .expect("soft");
        for (kind, target) in [(Target::Classes, &classes), (Target::Soft, &soft)] {
            let run = |d: &Device| {
                let v = Var::from_tensor(&on(&logits, d)).expect("v");
                let loss = cross_entropy(v.as_tensor(), &on(target, d), kind).expect("loss");
                let one = Tensor::ones((), DType::F32, d).expect("1");
                let g = grads_of(&loss, &one, &[v.as_tensor()]);
                (loss, g[0].clone())
            };
            let ((lc, gc), (lg, gg)) = (run(&Device::Cpu), run(gpu));
            near(&format!("loss {kind:?}"), &lg, &lc, 1e-5);
            near(&format!("loss {kind:?}: gradient"), &gg, &gc, 1e-5);
        }
    }

    fn convolutions(gpu: &Device) {
        if !crate::device::conv_supported(&on(
            &Tensor::zeros(1, DType::F32, &Device::Cpu).expect("z"),
            gpu,
        )) {
            eprintln!("skipping the cuDNN convolution checks: built without the `cudnn` feature");
            return;
        }
        for (cin, cout, k, p, s, h) in
            [(3, 8, 3, 1, 1, 12), (5, 4, 1, 0, 1, 9), (2, 6, 5, 2, 2, 11)]
        {
            let x = uniform(&[3, cin, h, h], 21);
            let w = uniform(&[cout, cin, k, k], 22);
            let run = |d: &Device| {
                let (xv, wv) = (
                    Var::from_tensor(&on(&x, d)).expect("v"),
                    Var::from_tensor(&on(&w, d)).expect("v"),
                );
                let y = conv2d(xv.as_tensor(), wv.as_tensor(), p, s).expect("conv");
                let g = grads_of(
                    &y,
                    &on(&uniform(y.dims(), 23), d),
                    &[xv.as_tensor(), wv.as_tensor()],
                );
                (y, g)
            };
            let what = format!("conv {cin}->{cout} k{k} p{p} s{s} {h}x{h}");
            let ((yc, gc), (yg, gg)) = (run(&Device::Cpu), run(gpu));
            near(&what, &yg, &yc, 1e-4);
            near(&format!("{what}: input gradient"), &gg[0], &gc[0], 1e-4);
            near(&format!("{what}: weight gradient"), &gg[1], &gc[1], 1e-4);
        }
    }

    /// The multi-tensor update against the same formulas on the CPU, element by element in
    /// Rust (train::optim's in-place passes, checked there against its candle-op chain).
    fn optimizer(gpu: &Device) {
        let sizes = [5usize, 3000, 1];
        let make = |seed: u64, n: usize| uniform(&[n], seed);
        let vars: Vec<[Tensor; 4]> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let s = 30 + 4 * i as u64;
                [
                    make(s, n),
                    make(s + 1, n),
                    make(s + 2, n),
                    (make(s + 3, n).abs().expect("abs") * 0.1).expect("v"),
                ]
            })
            .collect();
        let scaled = |x: f32, c: f32| x * c + 0.0;
        let adam = Update::Adam {
            b1: 0.9,
            c1: 0.1,
            b2: 0.999,
            c2: 0.001,
            r1: 10.0,
            r2: 1000.5,
            eps: 1e-7,
            lr: 1e-3,
            wd: Some(0.05),
        };
        let sgd = Update::Sgd {
            momentum: Some(0.9),
            lr: 1e-2,
            wd: None,
        };
        for update in [adam, sgd] {
            let gvars: Vec<[Tensor; 4]> = vars
                .iter()
                .map(|v| std::array::from_fn(|k| on(&v[k], gpu).copy().expect("copy")))
                .collect();
            let refs: Vec<[&Tensor; 4]> =
                gvars.iter().map(|v| [&v[0], &v[1], &v[2], &v[3]]).collect();
            assert!(
                optimizer_step(&refs, update).expect("step"),
                "ran on the GPU"
            );
            for (v, g) in vars.iter().zip(&gvars) {
                let [mut th, gr, mut m, mut s] = v.clone().map(|t| to_vec(&t));
                for i in 0..th.len() {
                    match update {
                        Update::Adam {
                            b1,
                            c1,
                            b2,
                            c2,
                            r1,
                            r2,
                            eps,
                            lr,
                            wd,
                        } => {
                            m[i] = scaled(m[i], b1) + scaled(gr[i], c1);
                            s[i] = scaled(s[i], b2) + scaled(gr[i] * gr[i], c2);
                            let mut u = scaled(m[i], r1) / (scaled(s[i], r2).sqrt() + eps);
                            if let Some(wd) = wd {
                                u += scaled(th[i], wd);
                            }
                            th[i] -= scaled(u, lr);
                        }
                        Update::Sgd { momentum, lr, wd } => {
                            let gi = wd.map_or(gr[i], |wd| gr[i] + scaled(th[i], wd));
                            m[i] = momentum.map_or(gi, |mu| scaled(m[i], mu) + gi);
                            th[i] -= scaled(m[i], lr);
                        }
                    }
                }
                let t =
                    |v: Vec<f32>| Tensor::from_vec(v.clone(), v.len(), &Device::Cpu).expect("t");
                bits(&format!("{update:?}: θ"), &g[0], &t(th));
                bits(&format!("{update:?}: first state"), &g[2], &t(m));
                if matches!(update, Update::Adam { .. }) {
                    bits(&format!("{update:?}: second state"), &g[3], &t(s));
                }
            }
        }
    }
}
