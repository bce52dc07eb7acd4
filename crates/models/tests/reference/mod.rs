//! The variational (Flipout) and BatchEnsemble layers against independent references: the
//! closed-form moments and KL of `tests/reference/flipout.py`, and the explicit per-member
//! weights of `tests/reference/batch_ensemble.py` (each test names its script; run a script
//! with `python3` to print the values pasted here).

use candle_core::{DType, Device, Tensor, Var};
use ferbayes_models::testing::Layer;
use ferbayes_models::{Backend, Mode, Noise};

const CPU: Device = Device::Cpu;

/// Every backend a layer runs on: the fused CPU kernels, candle's reference ops and the device
/// ops (what a GPU runs).
const BACKENDS: [Backend; 3] = [Backend::Winograd, Backend::Reference, Backend::Device];

fn t(values: &[f64], dims: &[usize]) -> Tensor {
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    Tensor::from_vec(v, dims, &CPU).expect("tensor")
}

/// `n` values `f(i)`, i = 0..n, as a tensor of `dims` (the scripts build the same ones).
fn by_formula(dims: &[usize], f: impl Fn(usize) -> f64) -> Tensor {
    let n = dims.iter().product();
    t(&(0..n).map(f).collect::<Vec<_>>(), dims)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("values")
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
        .and_then(|t| t.to_scalar::<f64>())
        .expect("scalar")
}

/// The mean and (unbiased) variance of every output entry over `draws` sampled forwards of one
/// noise stream (each forward draws its own ε and signs).
fn moments(layer: &Layer, x: &Tensor, draws: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut noise = [Noise::new(seed)];
    let (mut sum, mut sq) = (Vec::new(), Vec::new());
    for _ in 0..draws {
        let y = values(&layer.forward(x, Mode::MC, &mut noise).expect("forward"));
        sum.resize(y.len(), 0.0);
        sq.resize(y.len(), 0.0);
        for (i, &v) in y.iter().enumerate() {
            sum[i] += f64::from(v);
            sq[i] += f64::from(v) * f64::from(v);
        }
    }
    let n = draws as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let var = sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| (q - n * m * m) / (n - 1.0))
        .collect();
    (mean, var)
}

/// Checks Monte Carlo moments against the closed form. Given the signs, each output is the
/// mean plus a sum of independent zero-mean normals, so every draw is exactly N(E[y], Var[y]):
/// the sample mean has standard error sqrt(Var/N) and the sample variance Var·sqrt(2/(N−1))
/// (χ² with N − 1 degrees of freedom). Both must lie within 5 standard errors (a chance of
/// about 6e-7 per entry; the draws are seeded, so the test is deterministic anyway), with
/// 1e-5 for the f32 arithmetic.
fn check_moments(what: &str, got: (Vec<f64>, Vec<f64>), mean: &[f64], var: &[f64], n: usize) {
    let (gm, gv) = got;
    assert_eq!(gm.len(), mean.len(), "{what}: outputs");
    let n = n as f64;
    for j in 0..mean.len() {
        let se_mean = (var[j] / n).sqrt();
        let se_var = var[j] * (2.0 / (n - 1.0)).sqrt();
        assert!(
            (gm[j] - mean[j]).abs() <= 5.0 * se_mean + 1e-5,
            "{what}: mean of output {j} is {}, closed form {} (standard error {se_mean})",
            gm[j],
            mean[j]
        );
        assert!(
            (gv[j] - var[j]).abs() <= 5.0 * se_var + 1e-5,
            "{what}: variance of output {j} is {}, closed form {} (standard error {se_var})",
            gv[j],
            var[j]
        );
    }
}

/// The linear layer of `flipout.py` (out 3, in 4).
fn linear_case() -> (Tensor, Tensor, Tensor, Tensor) {
    let mu = t(
        &[
            0.5, -0.25, 0.125, 1.0, -0.75, 0.375, 0.0, -0.5, 0.25, 0.625, -1.0, 0.875,
        ],
        &[3, 4],
    );
    let rho = t(
        &[
            -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, -4.0, -1.25, -0.75, -2.25,
        ],
        &[3, 4],
    );
    let b = t(&[0.125, -0.5, 0.25], &[3]);
    let x = t(&[1.0, -0.5, 2.0, 0.75], &[1, 4]);
    (mu, rho, b, x)
}

/// The conv layer of `flipout.py`: weight (2, 2, 3, 3), padding 1, input (1, 2, 4, 4).
fn conv_case() -> (Tensor, Tensor, Tensor, Tensor) {
    let mu = by_formula(&[2, 2, 3, 3], |n| ((n * 37 % 17) as f64 - 8.0) / 16.0);
    let rho = by_formula(&[2, 2, 3, 3], |n| -3.0 + (n * 13 % 11) as f64 / 4.0);
    let b = t(&[0.25, -0.125], &[2]);
    let x = by_formula(&[1, 2, 4, 4], |m| ((m * 7 % 13) as f64 - 6.0) / 8.0);
    (mu, rho, b, x)
}

/// A Flipout linear layer's outputs over 20 000 seeded draws have the closed form's mean
/// x·μᵀ + b and variance Σᵢ xᵢ² σⱼᵢ² (values from `tests/reference/flipout.py`); without
/// sampling it is the mean layer; every backend draws the same sample from the same stream.
#[test]
fn flipout_linear_moments_match_the_closed_form() {
    const LINEAR_MEAN: [f64; 3] = [1.75, -1.8125, -1.15625];
    const LINEAR_VAR: [f64; 3] = [0.09117861928455107, 2.609846796020941, 0.6205214487578111];
    let (mu, rho, b, x) = linear_case();
    let draws = 20_000;
    for backend in BACKENDS {
        let layer = Layer::flipout_linear(&mu, &rho, &b, backend).expect("layer");
        let eval = layer
            .forward(&x, Mode::EVAL, &mut [Noise::new(0)])
            .expect("eval");
        let got: Vec<f64> = values(&eval).into_iter().map(f64::from).collect();
        assert_eq!(got, LINEAR_MEAN, "{backend}: the mean layer");
        if backend == Backend::Winograd {
            let m = moments(&layer, &x, draws, 11);
            check_moments("linear", m, &LINEAR_MEAN, &LINEAR_VAR, draws);
        }
    }
    same_sample_on_every_backend(
        |backend| Layer::flipout_linear(&mu, &rho, &b, backend).expect("layer"),
        &Tensor::cat(&[&x, &x.affine(-0.5, 0.25).expect("x")], 0).expect("rows"),
    );
}

/// Flipout decorrelates the rows of one pass: two identical rows share ε but not their signs,
/// so their perturbations (output − mean) are uncorrelated (E[s_out,a s_out,b] = 0), where
/// one weight sample per pass without the signs would make them equal. Over 20 000 passes the
/// sample correlation of each output lies within 5 standard errors (1/√N) of 0, and the
/// rows' perturbations have the closed-form variance each.
#[test]
fn flipout_decorrelates_the_rows_of_a_pass() {
    const LINEAR_MEAN: [f64; 3] = [1.75, -1.8125, -1.15625];
    const LINEAR_VAR: [f64; 3] = [0.09117861928455107, 2.609846796020941, 0.6205214487578111];
    let (mu, rho, b, x) = linear_case();
    let layer = Layer::flipout_linear(&mu, &rho, &b, Backend::Winograd).expect("layer");
    let rows = Tensor::cat(&[&x, &x], 0).expect("rows");
    let draws = 20_000;
    let mut noise = [Noise::new(13)];
    let (mut ab, mut aa, mut bb) = ([0f64; 3], [0f64; 3], [0f64; 3]);
    for _ in 0..draws {
        let y = values(&layer.forward(&rows, Mode::MC, &mut noise).expect("forward"));
        for j in 0..3 {
            let (pa, pb) = (
                f64::from(y[j]) - LINEAR_MEAN[j],
                f64::from(y[3 + j]) - LINEAR_MEAN[j],
            );
            ab[j] += pa * pb;
            aa[j] += pa * pa;
            bb[j] += pb * pb;
        }
    }
    let n = draws as f64;
    for j in 0..3 {
        let corr = ab[j] / (aa[j] * bb[j]).sqrt();
        assert!(
            corr.abs() < 5.0 / n.sqrt(),
            "output {j}: rows correlate by {corr}"
        );
        for (row, sq) in [("a", aa[j]), ("b", bb[j])] {
            let var = sq / n;
            let se = LINEAR_VAR[j] * (2.0 / n).sqrt();
            assert!(
                (var - LINEAR_VAR[j]).abs() < 5.0 * se + 1e-5,
                "output {j} row {row}: variance {var} vs {}",
                LINEAR_VAR[j]
            );
        }
    }
}

/// A Flipout conv layer's outputs over 20 000 seeded draws have the closed form's mean
/// conv(x, μ) + b and, per output, variance Σ x² σ² over its receptive field (zero padding)
/// (values from `tests/reference/flipout.py`).
#[test]
fn flipout_conv_moments_match_the_closed_form() {
    const CONV_MEAN: [f64; 32] = [
        0.484375, -0.203125, 0.4765625, 0.3125, 0.546875, 0.9609375, -0.2890625, 0.078125,
        0.1484375, 0.9375, 0.703125, 0.90625, 0.2734375, -0.03125, -0.578125, -0.0078125,
        -0.6953125, 0.2109375, -0.828125, 0.1171875, -0.421875, 0.4921875, 0.1171875, -0.3828125,
        0.0625, -0.3984375, 0.2421875, 0.1328125, 0.6953125, 0.0234375, -0.515625, -0.5,
    ];
    const CONV_VAR: [f64; 32] = [
        0.13240787585490693,
        0.16832862327971337,
        0.1648959649270833,
        0.07001586973776372,
        0.2134756181348754,
        0.18531421757219818,
        0.2663077867656239,
        0.1286241181132992,
        0.24684741261307383,
        0.15996404162010391,
        0.2964058791488863,
        0.14872580873677813,
        0.22612114745506307,
        0.11215046171843587,
        0.21657392414741578,
        0.08436562403734224,
        0.0693137964683285,
        0.15598046868011997,
        0.07537404698689933,
        0.08457418665767816,
        0.08923855285710428,
        0.18351128477449202,
        0.18984083201571297,
        0.09482535018584436,
        0.11384803974200007,
        0.2140895726872255,
        0.18863289699149097,
        0.13234485159534023,
        0.06620414871703571,
        0.19655413498892196,
        0.16751697601691445,
        0.15968248662317452,
    ];
    let (mu, rho, b, x) = conv_case();
    let draws = 20_000;
    for backend in BACKENDS {
        let layer = Layer::flipout_conv(&mu, &rho, Some(&b), (1, 1), backend).expect("layer");
        let eval = layer
            .forward(&x, Mode::EVAL, &mut [Noise::new(0)])
            .expect("eval");
        for (j, (&g, &want)) in values(&eval).iter().zip(&CONV_MEAN).enumerate() {
            assert!(
                (f64::from(g) - want).abs() < 1e-6,
                "{backend}: mean layer output {j}: {g} vs {want}"
            );
        }
        if backend == Backend::Winograd {
            let m = moments(&layer, &x, draws, 12);
            check_moments("conv", m, &CONV_MEAN, &CONV_VAR, draws);
        }
    }
    let rows = Tensor::cat(&[&x, &x.affine(0.5, 0.125).expect("x")], 0).expect("rows");
    same_sample_on_every_backend(
        |backend| Layer::flipout_conv(&mu, &rho, Some(&b), (1, 1), backend).expect("layer"),
        &rows,
    );
}

/// One sampled forward of the same stream on every backend: the same values up to rounding
/// (the draws are the CPU's on every backend), and the next draw differs.
fn same_sample_on_every_backend(layer: impl Fn(Backend) -> Layer, x: &Tensor) {
    let sample = |backend: Backend, seed: u64| {
        let mut noise = [Noise::new(seed)];
        values(
            &layer(backend)
                .forward(x, Mode::MC, &mut noise)
                .expect("forward"),
        )
    };
    let want = sample(Backend::Winograd, 5);
    for backend in BACKENDS {
        let got = sample(backend, 5);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{backend}: {g} vs {w}");
        }
        assert_eq!(got, sample(backend, 5), "{backend}: one seed, one sample");
        assert_ne!(
            got,
            sample(backend, 6),
            "{backend}: another seed, another sample"
        );
    }
}

/// A Flipout layer's KL from N(0, σ_p²) equals numpy's closed form, and its gradient with
/// respect to μ and ρ equals the closed-form derivatives μ/σ_p² and (σ/σ_p² − 1/σ)·sigmoid(ρ)
/// (values from `tests/reference/flipout.py`).
#[test]
fn flipout_kl_and_its_gradient_match_numpy() {
    const LINEAR_KL: [(f64, f64); 2] = [(0.5, 18.93248617390632), (1.0, 17.438855213623114)];
    const CONV_KL: f64 = 36.77618886873455;
    const GRAD_MU: [f64; 12] = [
        2.0, -1.0, 0.5, 4.0, -3.0, 1.5, 0.0, -2.0, 1.0, 2.5, -4.0, 3.5,
    ];
    const GRAD_RHO: [f64; 12] = [
        -0.9668778558732112,
        -0.9376345324084097,
        -0.878617269050912,
        -0.7587557051451598,
        -0.5215238176984804,
        -0.08043659304851696,
        0.6649468406754089,
        1.786268451746197,
        -0.989673897476479,
        -0.659560916428668,
        -0.33280618253709865,
        -0.9133106135346947,
    ];
    let (mu, rho, b, _) = linear_case();
    let (mu, rho) = (
        Var::from_tensor(&mu).expect("mu"),
        Var::from_tensor(&rho).expect("rho"),
    );
    let layer =
        Layer::flipout_linear(mu.as_tensor(), rho.as_tensor(), &b, Backend::Winograd).expect("l");
    for (prior, want) in LINEAR_KL {
        let got = scalar(&layer.kl(prior).expect("kl"));
        assert!(
            (got - want).abs() < 1e-12 * want,
            "prior {prior}: KL {got} vs {want}"
        );
    }
    let grads = layer.kl(0.5).expect("kl").backward().expect("backward");
    for (var, want, name) in [(&mu, &GRAD_MU, "mu"), (&rho, &GRAD_RHO, "rho")] {
        let g = values(grads.get(var.as_tensor()).expect("a gradient"));
        for (j, (&g, &w)) in g.iter().zip(want).enumerate() {
            // The f64 gradient, rounded to the f32 variable.
            assert!(
                (f64::from(g) - w).abs() <= 1e-7 * w.abs().max(1.0),
                "d KL / d {name}[{j}] = {g}, closed form {w}"
            );
        }
    }
    let (mu, rho, b, _) = conv_case();
    let conv = Layer::flipout_conv(&mu, &rho, Some(&b), (1, 1), Backend::Winograd).expect("l");
    let got = scalar(&conv.kl(0.5).expect("kl"));
    assert!((got - CONV_KL).abs() < 1e-12 * CONV_KL, "conv KL {got}");
}

/// A BatchEnsemble linear layer of two members equals, on each member's rows, the plain layer
/// of that member's explicit weight W ∘ (s_g r_gᵀ) and bias b_g (values from
/// `tests/reference/batch_ensemble.py`), on every backend, sampling or not.
#[test]
fn batch_ensemble_linear_is_each_members_explicit_layer() {
    const LINEAR_Y: [f64; 8] = [
        0.037500000000000006,
        -0.04375000000000001,
        0.303125,
        0.4640625,
        0.925,
        -3.325,
        -0.184375,
        0.9640625,
    ];
    let w = t(&[0.5, -1.0, 0.25, 0.75, 0.125, -0.5], &[2, 3]);
    let r = t(&[1.0, 0.5, -1.5, 2.0, -0.25, 0.75], &[2, 3]);
    let s = t(&[0.5, 1.25, -1.0, 1.5], &[2, 2]);
    let b = t(&[0.1, -0.2, 0.3, 0.05], &[4]);
    let x = t(
        &[
            1.0, 2.0, -1.0, 0.5, -0.5, 0.25, -1.0, 0.0, 2.0, 0.25, 1.5, -0.75,
        ],
        &[4, 3],
    );
    for backend in BACKENDS {
        let layer = Layer::batch_linear(&w, (&r, &s), &b, backend).expect("layer");
        for mode in [Mode::EVAL, Mode::MC] {
            let y = layer
                .forward(&x, mode, &mut [Noise::new(0), Noise::new(1)])
                .expect("forward");
            assert_eq!(y.dims(), [4, 2]);
            for (j, (&g, &want)) in values(&y).iter().zip(&LINEAR_Y).enumerate() {
                assert!(
                    (f64::from(g) - want).abs() < 1e-6,
                    "{backend} {mode:?}: output {j}: {g} vs {want}"
                );
            }
        }
    }
}

/// A BatchEnsemble conv layer of two members (3x3, padding 1) equals, on each member's rows,
/// the plain conv of that member's explicit weight W ∘ (s_g r_gᵀ) (s on the output channels, r
/// on the input channels) and bias b_g (values from `tests/reference/batch_ensemble.py`), on
/// every backend; the shared weight gets one gradient summed over both members' rows, and each
/// member's fast weights only their own rows'.
#[test]
fn batch_ensemble_conv_is_each_members_explicit_conv() {
    const CONV_Y: [f64; 36] = [
        2.5, 1.5, -3.125, 3.6875, -11.6875, 4.0, -4.25, 6.0, 0.6875, 2.25, -2.15625, -0.0625,
        -2.6875, 0.15625, -0.1875, -1.46875, 2.5625, -1.4375, 4.125, -0.75, -2.5625, 9.875, -13.75,
        16.875, -1.9375, 3.875, -4.1875, -0.6328125, 0.5625, -0.2734375, 1.0, -0.90625, -0.234375,
        0.796875, -1.34375, 1.28125,
    ];
    let w = by_formula(&[2, 2, 3, 3], |n| ((n * 5 % 11) as f64 - 5.0) / 4.0);
    let r = t(&[1.5, -0.5, 0.75, 1.25], &[2, 2]);
    let s = t(&[-1.0, 0.5, 2.0, 0.25], &[2, 2]);
    let b = t(&[0.125, -0.25, 0.5, 0.0], &[4]);
    let x = by_formula(&[2, 2, 3, 3], |m| ((m * 3 % 7) as f64 - 3.0) / 2.0);
    for backend in BACKENDS {
        let s_var = Var::from_tensor(&s).expect("s");
        let layer =
            Layer::batch_conv(&w, (&r, s_var.as_tensor()), Some(&b), (1, 1), backend).expect("l");
        let y = layer
            .forward(&x, Mode::MC, &mut [Noise::new(0), Noise::new(1)])
            .expect("forward");
        assert_eq!(y.dims(), [2, 2, 3, 3]);
        for (j, (&g, &want)) in values(&y).iter().zip(&CONV_Y).enumerate() {
            assert!(
                (f64::from(g) - want).abs() < 1e-5,
                "{backend}: output {j}: {g} vs {want}"
            );
        }
        // d sum(y) / d s_g[o] = the sum of member g's conv(x_g ∘ r_g, W) on channel o: the
        // explicit outputs less the bias, divided by s_g[o].
        let grads = y.sum_all().and_then(|t| t.backward()).expect("backward");
        let gs = values(grads.get(s_var.as_tensor()).expect("a gradient"));
        let (sv, bv) = (values(&s), values(&b));
        for g in 0..2 {
            for o in 0..2 {
                let block = &CONV_Y[(2 * g + o) * 9..(2 * g + o + 1) * 9];
                let want = block
                    .iter()
                    .map(|y| (y - f64::from(bv[2 * g + o])) / f64::from(sv[2 * g + o]))
                    .sum::<f64>();
                let got = f64::from(gs[2 * g + o]);
                assert!(
                    (got - want).abs() < 1e-4,
                    "{backend}: d sum / d s[{g}][{o}] = {got}, want {want}"
                );
            }
        }
    }
}
