//! Integration tests of ferbayes-models (all small widths, fast in release).

use candle_core::{DType, Device, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use ferbayes_models::{
    Arch, Method, Mode, Model, ModelConfig, Noise, VarRole, init_seeded, preprocess,
    resize_bilinear, sorted_vars, trainable_vars,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod reference;

const CPU: Device = Device::Cpu;

fn build(cfg: &ModelConfig, seed: u64) -> (VarMap, Model) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &CPU);
    let model = Model::new(cfg, vb).expect("model builds");
    init_seeded(&varmap, seed).expect("init_seeded");
    (varmap, model)
}

fn random_input(b: usize, size: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..b * size * size).map(|_| rng.random::<f32>()).collect();
    Tensor::from_vec(v, (b, 1, size, size), &CPU).expect("input tensor")
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .expect("flatten")
        .to_dtype(DType::F32)
        .expect("f32")
        .to_vec1::<f32>()
        .expect("to_vec1")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn var_values(varmap: &VarMap, name: &str) -> Vec<f32> {
    let vars = sorted_vars(varmap);
    let (_, var) = vars
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no var {name}"));
    values(var.as_tensor())
}

fn param_count(varmap: &VarMap) -> usize {
    trainable_vars(varmap).iter().map(|v| v.elem_count()).sum()
}

#[test]
fn names_round_trip_and_defaults() {
    for a in Arch::ALL {
        assert_eq!(a.to_string().parse::<Arch>().expect("arch parses"), a);
    }
    for m in Method::ALL {
        assert_eq!(m.to_string().parse::<Method>().expect("method parses"), m);
    }
    let names: Vec<String> = Arch::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["alexnet", "vgg16", "densenet121"]);
    let names: Vec<String> = Method::STUDY.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["mc_dropout", "mc_dropconnect", "ensemble"]);
    let names: Vec<String> = Method::ALL[3..].iter().map(ToString::to_string).collect();
    assert_eq!(names, ["variational", "swag", "laplace", "batch_ensemble"]);
    assert!("resnet".parse::<Arch>().is_err());
    assert!("dropout".parse::<Method>().is_err());

    use serde::Deserialize;
    use serde::de::value::{Error as DeError, StrDeserializer};
    let arch = Arch::deserialize(StrDeserializer::<DeError>::new("densenet121"));
    assert_eq!(arch.expect("serde arch"), Arch::DenseNet121);
    let method = Method::deserialize(StrDeserializer::<DeError>::new("mc_dropconnect"));
    assert_eq!(method.expect("serde method"), Method::McDropConnect);

    assert_eq!(
        ModelConfig::new(Arch::AlexNet, Method::Ensemble, 1.0, 64).drop_rate,
        0.5
    );
    assert_eq!(
        ModelConfig::new(Arch::Vgg16, Method::Ensemble, 1.0, 64).drop_rate,
        0.2
    );
    assert_eq!(
        ModelConfig::new(Arch::DenseNet121, Method::Ensemble, 1.0, 64).drop_rate,
        0.2
    );

    assert_eq!(Mode::for_inference(Method::McDropout), Mode::MC);
    assert_eq!(Mode::for_inference(Method::McDropConnect), Mode::MC);
    assert_eq!(Mode::for_inference(Method::Ensemble), Mode::EVAL);
    let flags = |m: Mode| (m.stochastic, m.batchnorm_train);
    assert_eq!(flags(Mode::TRAIN), (true, true));
    assert_eq!(flags(Mode::MC), (true, false));
    assert_eq!(flags(Mode::EVAL), (false, false));
}

#[test]
fn validate_rejects_bad_configs() {
    let ok = ModelConfig::new(Arch::AlexNet, Method::McDropout, 0.5, 48);
    ok.validate().expect("valid config");
    for width in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            ModelConfig {
                width,
                ..ok.clone()
            }
            .validate()
            .is_err(),
            "width {width}"
        );
    }
    for drop_rate in [1.0, -0.1, f64::NAN] {
        assert!(
            ModelConfig {
                drop_rate,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
    }
    assert_eq!(ModelConfig::min_input_size(Arch::AlexNet), 8);
    assert_eq!(ModelConfig::min_input_size(Arch::Vgg16), 32);
    assert_eq!(ModelConfig::min_input_size(Arch::DenseNet121), 29);
    for arch in Arch::ALL {
        let min = ModelConfig::min_input_size(arch);
        let cfg = ModelConfig::new(arch, Method::Ensemble, 0.125, min);
        cfg.validate().expect("minimum size is valid");
        let small = ModelConfig::new(arch, Method::Ensemble, 0.125, min - 1);
        assert!(small.validate().is_err(), "{arch} at {}", min - 1);
    }
    // The smallest inputs actually run.
    for arch in Arch::ALL {
        let cfg = ModelConfig::new(
            arch,
            Method::Ensemble,
            0.125,
            ModelConfig::min_input_size(arch),
        );
        let (_vm, model) = build(&cfg, 1);
        let out = model
            .forward(
                &random_input(2, cfg.input_size, 0),
                Mode::TRAIN,
                &mut Noise::new(0),
            )
            .expect("forward at minimum size");
        assert_eq!(out.dims(), [2, 8]);
    }
}

#[test]
fn output_shapes_every_arch_method_width_size_batch() {
    for arch in Arch::ALL {
        for method in Method::ALL {
            for width in [0.125, 0.25] {
                for size in [48, 64] {
                    let cfg = ModelConfig::new(arch, method, width, size);
                    let (_vm, model) = build(&cfg, 7);
                    let mut noise = Noise::new(3);
                    for b in [1, 3] {
                        let xs = random_input(b, size, b as u64);
                        let mut modes = vec![Mode::EVAL, Mode::MC];
                        if b > 1 {
                            modes.push(Mode::TRAIN);
                        }
                        for mode in modes {
                            let out = model.forward(&xs, mode, &mut noise).expect("forward");
                            assert_eq!(out.dims(), [b, 8], "{cfg:?} {mode:?}");
                            assert!(values(&out).iter().all(|v| v.is_finite()), "{cfg:?}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn forward_rejects_wrong_input() {
    let cfg = ModelConfig::new(Arch::AlexNet, Method::McDropout, 0.125, 48);
    let (_vm, model) = build(&cfg, 1);
    let mut noise = Noise::new(0);
    assert!(
        model
            .forward(&random_input(2, 64, 0), Mode::EVAL, &mut noise)
            .is_err()
    );
    let three = Tensor::zeros((2, 3, 48, 48), DType::F32, &CPU).expect("zeros");
    assert!(model.forward(&three, Mode::EVAL, &mut noise).is_err());
    // BatchNorm cannot train on a single sample.
    assert!(
        model
            .forward(&random_input(1, 48, 0), Mode::TRAIN, &mut noise)
            .is_err()
    );
    assert!(
        model
            .forward(&random_input(1, 48, 0), Mode::MC, &mut noise)
            .is_ok()
    );
}

#[test]
fn weight_names_and_full_width_parameter_counts() {
    // Names stable and readable.
    let cfg = ModelConfig::new(Arch::AlexNet, Method::McDropout, 1.0, 64);
    let (vm, _) = build(&cfg, 1);
    let names: Vec<String> = sorted_vars(&vm).into_iter().map(|(n, _)| n).collect();
    for n in [
        "features.conv1.weight",
        "features.conv1.bias",
        "features.bn1.running_mean",
        "features.bn5.running_var",
        "classifier.fc1.weight",
        "classifier.bn1.weight",
        "classifier.fc3.bias",
    ] {
        assert!(names.iter().any(|x| x == n), "missing {n}");
    }
    // fc1 input is c(128) * 8 * 8 at input 64.
    assert_eq!(
        var_values(&vm, "classifier.fc1.weight").len(),
        256 * 128 * 8 * 8
    );
    assert_eq!(param_count(&vm), 3_554_824);

    // VGG-16: torchvision's features (14,714,688 params with 3 input channels,
    // 1,152 fewer with 1) + 2048->256->256->8 head at input 64.
    let cfg = ModelConfig::new(Arch::Vgg16, Method::McDropout, 1.0, 64);
    let (vm, _) = build(&cfg, 1);
    assert_eq!(
        param_count(&vm),
        14_714_688 - 1_152 + 524_544 + 65_792 + 2_056
    );
    assert!(
        sorted_vars(&vm)
            .iter()
            .any(|(n, _)| n == "features.conv5_3.weight")
    );

    // DenseNet-121: torchvision has 7,978,856 params (3 input channels, 1000
    // classes); with 1 input channel (-6,272) and 8 classes (-1,025,000 + 8,200).
    let cfg = ModelConfig::new(Arch::DenseNet121, Method::McDropout, 1.0, 64);
    let (vm, _) = build(&cfg, 1);
    assert_eq!(param_count(&vm), 7_978_856 - 6_272 - 1_025_000 + 8_200);
    let names: Vec<String> = sorted_vars(&vm).into_iter().map(|(n, _)| n).collect();
    for n in [
        "features.conv0.weight",
        "features.norm0.running_var",
        "features.denseblock1.denselayer1.conv1.weight",
        "features.denseblock4.denselayer16.conv2.weight",
        "features.transition1.conv.weight",
        "features.transition3.norm.bias",
        "features.norm5.weight",
        "classifier.weight",
        "classifier.bias",
    ] {
        assert!(names.iter().any(|x| x == n), "missing {n}");
    }
    assert!(
        !names
            .iter()
            .any(|n| n.contains("conv") && n.ends_with(".bias")),
        "densenet convs have no bias"
    );
}

#[test]
fn init_seeded_is_deterministic() {
    for (arch, method) in [
        (Arch::AlexNet, Method::McDropConnect),
        (Arch::DenseNet121, Method::McDropConnect),
        (Arch::AlexNet, Method::Variational),
        (Arch::Vgg16, Method::BatchEnsemble),
    ] {
        let cfg = ModelConfig::new(arch, method, 0.25, 48);
        let (a, _) = build(&cfg, 42);
        let (b, _) = build(&cfg, 42);
        let (c, _) = build(&cfg, 43);
        let (va, vb, vc) = (sorted_vars(&a), sorted_vars(&b), sorted_vars(&c));
        assert_eq!(va.len(), vb.len());
        let mut differs = 0;
        for (((na, ta), (nb, tb)), (_, tc)) in va.iter().zip(&vb).zip(&vc) {
            assert_eq!(na, nb);
            let bits = |t: &candle_core::Var| -> Vec<u32> {
                values(t.as_tensor()).iter().map(|v| v.to_bits()).collect()
            };
            assert_eq!(bits(ta), bits(tb), "{na} differs between equal seeds");
            let x = values(ta.as_tensor());
            match VarRole::of(na, ta.rank()) {
                VarRole::Weight | VarRole::FastWeight => {
                    if bits(ta) != bits(tc) {
                        differs += 1;
                    }
                }
                VarRole::Rho => {
                    let rho0 = cfg.variational.expect("variational").rho0() as f32;
                    assert!(x.iter().all(|&v| v == rho0), "{na} not rho0 {rho0}");
                }
                VarRole::RunningVar | VarRole::BnWeight => {
                    assert!(x.iter().all(|&v| v == 1.0), "{na} not ones");
                }
                VarRole::RunningMean | VarRole::BnBias | VarRole::Bias => {
                    assert!(x.iter().all(|&v| v == 0.0), "{na} not zeros");
                }
            }
        }
        let n_weights = va
            .iter()
            .filter(|(n, v)| {
                matches!(
                    VarRole::of(n, v.rank()),
                    VarRole::Weight | VarRole::FastWeight
                )
            })
            .count();
        assert_eq!(differs, n_weights, "every weight must change with the seed");
    }

    // Kaiming normal: std sqrt(2 / fan_in), mean 0.
    let cfg = ModelConfig::new(Arch::AlexNet, Method::McDropout, 0.25, 48);
    let (vm, _) = build(&cfg, 5);
    let w = var_values(&vm, "classifier.fc2.weight"); // 256 x 256
    let n = w.len() as f64;
    let mean = w.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let std = (w
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let expected = (2.0f64 / 256.0).sqrt();
    assert!(mean.abs() < 0.01 * expected * 10.0, "mean {mean}");
    assert!(
        (std / expected - 1.0).abs() < 0.02,
        "std {std} vs {expected}"
    );

    // Per-variable streams: conv weights do not depend on the input size (which
    // changes fc1's shape) nor on the method.
    let other = ModelConfig::new(Arch::AlexNet, Method::Ensemble, 0.25, 64);
    let (vm2, _) = build(&other, 5);
    for name in [
        "features.conv1.weight",
        "features.conv5.weight",
        "classifier.fc2.weight",
    ] {
        assert_eq!(var_values(&vm, name), var_values(&vm2, name), "{name}");
    }
}

#[test]
fn noise_masks() {
    let shape = [200, 500];
    let mut a = Noise::new(9);
    let mut b = Noise::new(9);
    let a1 = values(&a.mask(&shape, 0.8, &CPU).expect("mask"));
    let a2 = values(&a.mask(&shape, 0.8, &CPU).expect("mask"));
    let b1 = values(&b.mask(&shape, 0.8, &CPU).expect("mask"));
    assert_eq!(a1, b1, "same seed, same mask");
    assert_ne!(a1, a2, "successive masks differ");
    assert_ne!(
        a1,
        values(&Noise::new(10).mask(&shape, 0.8, &CPU).expect("mask"))
    );

    for keep in [0.5, 0.8] {
        let m = values(&Noise::new(1).mask(&shape, keep, &CPU).expect("mask"));
        let kept = m.iter().filter(|&&v| v != 0.0).count();
        let rate = kept as f64 / m.len() as f64;
        // 100k Bernoulli draws: std of the rate <= 0.0016.
        assert!((rate - keep).abs() < 0.01, "keep {keep}: rate {rate}");
        let scale = (1.0 / keep) as f32;
        assert!(
            m.iter().all(|&v| v == 0.0 || v == scale),
            "values are 0 or 1/keep"
        );
        let mean = m.iter().map(|&v| f64::from(v)).sum::<f64>() / m.len() as f64;
        assert!((mean - 1.0).abs() < 0.02, "mask mean {mean}");
    }
    let ones = values(&Noise::new(1).mask(&[7], 1.0, &CPU).expect("mask"));
    assert_eq!(ones, vec![1.0; 7]);
    assert!(Noise::new(1).mask(&[3], 0.0, &CPU).is_err());
    assert!(Noise::new(1).mask(&[3], 1.5, &CPU).is_err());
}

#[test]
fn stochastic_passes_differ_and_eval_is_deterministic() {
    for arch in Arch::ALL {
        for method in Method::ALL {
            let cfg = ModelConfig::new(arch, method, 0.125, 48);
            let (_vm, model) = build(&cfg, 11);
            let xs = random_input(3, 48, 1);
            let mut noise = Noise::new(5);
            let e1 = model.forward(&xs, Mode::EVAL, &mut noise).expect("eval");
            let e2 = model
                .forward(&xs, Mode::EVAL, &mut Noise::new(99))
                .expect("eval");
            assert_eq!(
                values(&e1),
                values(&e2),
                "{cfg:?}: EVAL must be deterministic"
            );
            let m1 = model.forward(&xs, Mode::MC, &mut noise).expect("mc");
            let m2 = model.forward(&xs, Mode::MC, &mut noise).expect("mc");
            assert!(
                max_abs_diff(&m1, &m2) > 1e-6,
                "{cfg:?}: MC passes must differ"
            );
            // Same noise seed, same MC pass.
            let r1 = model
                .forward(&xs, Mode::MC, &mut Noise::new(5))
                .expect("mc");
            let r2 = model
                .forward(&xs, Mode::MC, &mut Noise::new(5))
                .expect("mc");
            assert_eq!(
                values(&r1),
                values(&r2),
                "{cfg:?}: MC reproducible from seed"
            );

            let inf = Mode::for_inference(method);
            let i1 = model.forward(&xs, inf, &mut Noise::new(1)).expect("infer");
            let i2 = model.forward(&xs, inf, &mut Noise::new(2)).expect("infer");
            if inf == Mode::EVAL {
                assert_eq!(
                    values(&i1),
                    values(&i2),
                    "{cfg:?}: ensemble inference deterministic"
                );
            } else {
                assert!(
                    max_abs_diff(&i1, &i2) > 1e-6,
                    "{cfg:?}: MC inference stochastic"
                );
            }
        }
    }
}

#[test]
fn dropconnect_mask_is_shared_by_the_batch_dropout_is_per_sample() {
    for arch in Arch::ALL {
        let one = random_input(1, 48, 4);
        let twice = Tensor::cat(&[&one, &one], 0).expect("cat");
        for method in [Method::McDropConnect, Method::McDropout] {
            let cfg = ModelConfig::new(arch, method, 0.125, 48);
            let (_vm, model) = build(&cfg, 2);
            let out = model
                .forward(&twice, Mode::MC, &mut Noise::new(8))
                .expect("mc");
            let d = max_abs_diff(&out.get(0).expect("row"), &out.get(1).expect("row"));
            if method == Method::McDropConnect {
                assert_eq!(d, 0.0, "{cfg:?}: one weight mask per pass");
            } else {
                assert!(d > 1e-6, "{cfg:?}: dropout masks differ per sample");
            }
        }
    }
}

#[test]
fn batchnorm_running_stats_in_mc_and_train() {
    for arch in [Arch::AlexNet, Arch::DenseNet121] {
        let cfg = ModelConfig::new(arch, Method::McDropConnect, 0.125, 48);
        let (vm, model) = build(&cfg, 3);
        // Move the running stats away from (0, 1) first so the check is meaningful.
        let warm = random_input(4, 48, 10);
        model
            .forward(&warm, Mode::TRAIN, &mut Noise::new(0))
            .expect("train");

        let batch = random_input(3, 48, 12);
        let alone = batch.narrow(0, 0, 1).expect("narrow");
        let before: Vec<Vec<f32>> = sorted_vars(&vm)
            .iter()
            .map(|(_, v)| values(v.as_tensor()))
            .collect();
        let out_batch = model
            .forward(&batch, Mode::MC, &mut Noise::new(21))
            .expect("mc");
        let out_alone = model
            .forward(&alone, Mode::MC, &mut Noise::new(21))
            .expect("mc");
        let d = max_abs_diff(&out_batch.narrow(0, 0, 1).expect("row"), &out_alone);
        assert!(
            d < 1e-5,
            "{arch}: sample 0 depends on its batch in MC mode ({d})"
        );
        let after: Vec<Vec<f32>> = sorted_vars(&vm)
            .iter()
            .map(|(_, v)| values(v.as_tensor()))
            .collect();
        assert_eq!(before, after, "{arch}: MC forward changed some variable");

        let rm_name = if arch == Arch::AlexNet {
            "classifier.bn1.running_mean"
        } else {
            "features.norm5.running_mean"
        };
        let rv_name = rm_name.replace("running_mean", "running_var");
        let (rm0, rv0) = (var_values(&vm, rm_name), var_values(&vm, &rv_name));
        model
            .forward(&batch, Mode::TRAIN, &mut Noise::new(0))
            .expect("train");
        assert_ne!(
            rm0,
            var_values(&vm, rm_name),
            "{arch}: TRAIN updates running_mean"
        );
        assert_ne!(
            rv0,
            var_values(&vm, &rv_name),
            "{arch}: TRAIN updates running_var"
        );
        assert!(
            var_values(&vm, &rv_name)
                .iter()
                .all(|v| v.is_finite() && *v >= 0.0)
        );
    }
}

#[test]
fn trainable_vars_exclude_running_stats() {
    for arch in Arch::ALL {
        let cfg = ModelConfig::new(arch, Method::McDropout, 0.125, 48);
        let (vm, _) = build(&cfg, 1);
        let all = sorted_vars(&vm);
        let trainable = trainable_vars(&vm);
        let stats = all
            .iter()
            .filter(|(n, _)| n.ends_with(".running_mean") || n.ends_with(".running_var"))
            .count();
        let bn_weights = all
            .iter()
            .filter(|(n, v)| VarRole::of(n, v.rank()) == VarRole::BnWeight)
            .count();
        assert_eq!(stats, 2 * bn_weights, "{arch}: two running stats per BN");
        assert_eq!(trainable.len(), all.len() - stats, "{arch}");
        if arch == Arch::Vgg16 {
            assert_eq!(stats, 0);
        } else {
            assert!(stats > 0);
        }
        // Same order as the sorted names, and no running stat among them.
        let expected: Vec<&candle_core::Var> = all
            .iter()
            .filter(|(n, _)| !n.ends_with(".running_mean") && !n.ends_with(".running_var"))
            .map(|(_, v)| v)
            .collect();
        for (t, e) in trainable.iter().zip(expected) {
            assert_eq!(t.as_tensor().id(), e.as_tensor().id(), "{arch}: order");
        }
    }
}

#[test]
fn weights_round_trip_through_safetensors() {
    let dir = tempfile::tempdir().expect("tempdir");
    for arch in Arch::ALL {
        let cfg = ModelConfig::new(arch, Method::McDropConnect, 0.125, 48);
        let (vm, model) = build(&cfg, 17);
        // Non-trivial running stats.
        model
            .forward(&random_input(4, 48, 3), Mode::TRAIN, &mut Noise::new(1))
            .expect("train");
        let path = dir.path().join(format!("{arch}.safetensors"));
        vm.save(&path).expect("save");

        let mut fresh = VarMap::new();
        let loaded =
            Model::new(&cfg, VarBuilder::from_varmap(&fresh, DType::F32, &CPU)).expect("build");
        init_seeded(&fresh, 999).expect("init");
        fresh.load(&path).expect("load");

        let xs = random_input(3, 48, 4);
        let a = model
            .forward(&xs, Mode::EVAL, &mut Noise::new(0))
            .expect("eval");
        let b = loaded
            .forward(&xs, Mode::EVAL, &mut Noise::new(0))
            .expect("eval");
        assert_eq!(values(&a), values(&b), "{arch}: outputs after reload");
        // The same masks too.
        let a = model
            .forward(&xs, Mode::MC, &mut Noise::new(6))
            .expect("mc");
        let b = loaded
            .forward(&xs, Mode::MC, &mut Noise::new(6))
            .expect("mc");
        assert_eq!(values(&a), values(&b), "{arch}: MC outputs after reload");

        // Also loadable read-only through a safetensors VarBuilder: the same outputs as the
        // trained network's tensors loaded as plain tensors (an inference pass, whose products
        // sum batch-independently; a network of variables keeps gemm's own paths, which can
        // round differently in the last bits).
        let vb = unsafe_free_vb(&path);
        let ro = Model::new(&cfg, vb).expect("build from file");
        let c = ro
            .forward(&xs, Mode::EVAL, &mut Noise::new(0))
            .expect("eval");
        let plain = sorted_vars(&vm)
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().detach()))
            .collect();
        let plain = Model::new(&cfg, VarBuilder::from_tensors(plain, DType::F32, &CPU))
            .expect("build from tensors");
        let e = plain
            .forward(&xs, Mode::EVAL, &mut Noise::new(0))
            .expect("eval");
        let v = model
            .forward(&xs, Mode::EVAL, &mut Noise::new(0))
            .expect("eval");
        assert!(
            max_abs_diff(&e, &v) < 1e-5,
            "{arch}: plain and variable weights agree to rounding"
        );
        assert_eq!(
            values(&c),
            values(&e),
            "{arch}: outputs from file VarBuilder"
        );
    }
}

/// A VarBuilder over the tensors of a safetensors file, read without mmap.
fn unsafe_free_vb(path: &std::path::Path) -> VarBuilder<'static> {
    let tensors = candle_core::safetensors::load(path, &CPU).expect("load safetensors");
    VarBuilder::from_tensors(tensors, DType::F32, &CPU)
}

#[test]
fn preprocess_identity_at_48() {
    let pixels: Vec<u8> = (0..48 * 48).map(|i| (i * 7 % 256) as u8).collect();
    let out = preprocess(&pixels, 48);
    assert_eq!(out.len(), 48 * 48);
    for (o, p) in out.iter().zip(&pixels) {
        assert_eq!(*o, f32::from(*p) / 255.0);
    }
    assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
}

// Expected values from this standard-library Python script, an independent
// implementation of PyTorch's F.interpolate(mode="bilinear", align_corners=False):
//
// def px(r, c):
//     return (r * 37 + c * 11 + (r * c) % 7) % 256
//
// def src_index(d, in_size, out_size):
//     s = (d + 0.5) * (in_size / out_size) - 0.5
//     return 0.0 if s < 0 else s
//
// def value(oy, ox, n_in=48, n_out=64):
//     sy = src_index(oy, n_in, n_out)
//     sx = src_index(ox, n_in, n_out)
//     y0, x0 = int(sy), int(sx)
//     y1 = y0 + 1 if y0 < n_in - 1 else y0
//     x1 = x0 + 1 if x0 < n_in - 1 else x0
//     ly, lx = sy - y0, sx - x0
//     return ((1 - ly) * ((1 - lx) * px(y0, x0) + lx * px(y0, x1))
//             + ly * ((1 - lx) * px(y1, x0) + lx * px(y1, x1))) / 255.0
//
// for (oy, ox) in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 3), (5, 7), (31, 40),
//                  (62, 63), (63, 62), (63, 63)]:
//     print(f"({oy}, {ox}, {value(oy, ox):.9f}),")
//
// By hand for (0, 1): sy = max(0, 0.5 * 0.75 - 0.5) = 0, sx = 1.5 * 0.75 - 0.5 =
// 0.625, so 0.625 * px(0, 1) / 255 = 0.625 * 11 / 255 = 0.026960784.
#[test]
fn preprocess_bilinear_48_to_64_matches_reference() {
    let pixels: Vec<u8> = (0..48usize)
        .flat_map(|r| (0..48usize).map(move |c| ((r * 37 + c * 11 + (r * c) % 7) % 256) as u8))
        .collect();
    let out = preprocess(&pixels, 64);
    assert_eq!(out.len(), 64 * 64);
    let expected = [
        (0, 0, 0.000000000),
        (0, 1, 0.026960784),
        (1, 0, 0.090686275),
        (1, 1, 0.119178922),
        (2, 3, 0.302634804),
        (5, 7, 0.762867647),
        (31, 40, 0.644056373),
        (62, 63, 0.745588235),
        (63, 62, 0.809313725),
        (63, 63, 0.831372549),
    ];
    for (y, x, v) in expected {
        let got = out[y * 64 + x];
        assert!(
            (f64::from(got) - v).abs() < 1e-6,
            "({y}, {x}): {got} vs {v}"
        );
    }
    assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));

    // A constant image stays constant; resizing to the same size is the identity.
    let flat = resize_bilinear(&[0.25; 9], 3, 3, 5, 5);
    assert!(flat.iter().all(|&v| (v - 0.25).abs() < 1e-7));
    let src: Vec<f32> = (0..12).map(|i| i as f32).collect();
    assert_eq!(resize_bilinear(&src, 3, 4, 3, 4), src);
}

#[test]
fn small_alexnet_overfits_random_labels() {
    let cfg = ModelConfig::new(Arch::AlexNet, Method::McDropout, 0.125, 48);
    let (vm, model) = build(&cfg, 123);
    let xs = random_input(64, 48, 77);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let labels: Vec<u32> = (0..64).map(|_| rng.random_range(0..8)).collect();
    let ys = Tensor::from_vec(labels, 64, &CPU).expect("labels");
    let params = candle_nn::ParamsAdamW {
        lr: 3e-3,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut opt = candle_nn::AdamW::new(trainable_vars(&vm), params).expect("adam");
    let mut noise = Noise::new(0);
    let mut losses = Vec::new();
    for _ in 0..30 {
        let logits = model
            .forward(&xs, Mode::TRAIN, &mut noise)
            .expect("forward");
        let loss = candle_nn::loss::cross_entropy(&logits, &ys).expect("loss");
        losses.push(loss.to_scalar::<f32>().expect("scalar"));
        opt.backward_step(&loss).expect("step");
    }
    let first = losses[0];
    let last = *losses.last().expect("losses");
    assert!(first > 1.5, "initial loss {first}");
    assert!(last < first / 2.0, "loss {first} -> {last}: {losses:?}");
    // The running stats learnt along the way serve the deterministic network too.
    let logits = model.forward(&xs, Mode::EVAL, &mut noise).expect("eval");
    let eval_loss = candle_nn::loss::cross_entropy(&logits, &ys)
        .and_then(|l| l.to_scalar::<f32>())
        .expect("eval loss");
    assert!(
        eval_loss < first / 2.0,
        "EVAL loss {eval_loss} (start {first})"
    );
}

/// End-to-end gradient check in f64 (so finite differences are precise): for each
/// architecture at its minimum input size, the backprop gradient of
/// `sum(logits * up)` matches central differences on a few coordinates of several
/// weights, with BatchNorm both on batch statistics and on running stats.
#[test]
fn whole_model_gradients_match_finite_differences() {
    for arch in Arch::ALL {
        let size = ModelConfig::min_input_size(arch);
        let cfg = ModelConfig::new(arch, Method::McDropout, 0.125, size);
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &CPU);
        let model = Model::new(&cfg, vb).expect("model");
        init_seeded(&varmap, 31).expect("init");
        let xs = random_input(3, size, 8).to_dtype(DType::F64).expect("f64");
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let up: Vec<f64> = (0..24).map(|_| rng.random::<f64>() - 0.5).collect();
        let up = Tensor::from_vec(up, (3, 8), &CPU).expect("up");
        let modes = [
            Mode::EVAL,
            Mode {
                stochastic: false,
                batchnorm_train: true,
            },
        ];
        let vars = sorted_vars(&varmap);
        let names: Vec<&str> = match arch {
            Arch::AlexNet => vec![
                "features.conv1.weight",
                "features.bn3.weight",
                "classifier.fc1.weight",
            ],
            Arch::Vgg16 => vec![
                "features.conv1_1.weight",
                "features.conv3_2.bias",
                "classifier.fc2.weight",
            ],
            Arch::DenseNet121 => vec![
                "features.conv0.weight",
                "features.denseblock1.denselayer2.conv2.weight",
                "features.transition2.norm.weight",
                "classifier.weight",
            ],
        };
        for mode in modes {
            let loss = |model: &Model| -> Tensor {
                let logits = model
                    .forward(&xs, mode, &mut Noise::new(0))
                    .expect("forward");
                (logits * &up).expect("mul").sum_all().expect("sum")
            };
            let grads = loss(&model).backward().expect("backward");
            for name in &names {
                let (_, var) = vars.iter().find(|(n, _)| n == name).expect("var exists");
                let grad = grads.get(var.as_tensor()).expect("gradient present");
                let g: Vec<f64> = grad.flatten_all().and_then(|t| t.to_vec1()).expect("g");
                let w0: Vec<f64> = var.flatten_all().and_then(|t| t.to_vec1()).expect("w");
                let n = w0.len();
                for i in [0, n / 3, n / 2, n - 1] {
                    let eps = 1e-6;
                    let eval_at = |delta: f64| -> f64 {
                        let mut w = w0.clone();
                        w[i] += delta;
                        let t = Tensor::from_vec(w, var.shape(), &CPU).expect("t");
                        var.set(&t).expect("set");
                        loss(&model).to_scalar::<f64>().expect("scalar")
                    };
                    let fd = (eval_at(eps) - eval_at(-eps)) / (2.0 * eps);
                    eval_at(0.0);
                    let tol = 1e-4 * (1.0 + fd.abs().max(g[i].abs()));
                    assert!(
                        (fd - g[i]).abs() < tol,
                        "{arch} {mode:?} {name}[{i}]: fd {fd} vs backprop {}",
                        g[i]
                    );
                }
            }
        }
    }
}

#[test]
fn features_then_head_equals_forward() {
    for arch in Arch::ALL {
        for method in Method::ALL {
            let cfg = ModelConfig::new(arch, method, 0.125, 48);
            let (_vm, model) = build(&cfg, 4);
            let xs = random_input(3, 48, 9);
            if arch == Arch::DenseNet121 || method == Method::Variational {
                assert!(!model.has_deterministic_prefix());
                assert!(model.features(&xs, Mode::MC).is_err());
                continue;
            }
            assert!(model.has_deterministic_prefix(), "{arch}");
            let feats = model.features(&xs, Mode::MC).expect("features");
            assert_eq!(feats.dim(0).expect("dim"), 3);
            for mode in [Mode::MC, Mode::EVAL] {
                let full = model
                    .forward(&xs, mode, &mut Noise::new(12))
                    .expect("forward");
                let split = model.head(&feats, mode, &mut Noise::new(12)).expect("head");
                assert_eq!(values(&full), values(&split), "{cfg:?} {mode:?}");
            }
        }
    }
    assert!(ferbayes_models::device("cpu").is_ok());
    assert!(ferbayes_models::device("tpu").is_err());
}

/// A packed model of three members against the three members alone, on every backend (the
/// fused kernels, the device ops a GPU runs and candle's reference ops): the same logits in
/// every mode, the same parameter gradients and the same BatchNorm running statistics after a
/// training pass, member by member (bit for bit on the fused kernels and the device ops, 1e-5
/// on the reference ops, whose packed BatchNorm runs member by member too).
#[test]
fn packed_models_equal_their_members_on_every_backend() {
    use ferbayes_models::{Backend, init_packed, unpack_member};
    const G: usize = 3;
    let seeds = [5u64, 6, 7];
    for backend in [Backend::Winograd, Backend::Device, Backend::Reference] {
        for arch in Arch::ALL {
            for method in [Method::Ensemble, Method::McDropConnect] {
                let what = format!("{backend} {arch}/{method}");
                let cfg = ModelConfig::new(arch, method, 0.125, 32);
                let pm = VarMap::new();
                let vb = VarBuilder::from_varmap(&pm, DType::F32, &CPU);
                let packed = Model::packed(&cfg, backend, G, vb).expect("packed");
                init_packed(&pm, &seeds).expect("init");
                let b = 4;
                let xs: Vec<Tensor> = (0..G).map(|g| random_input(b, 32, 40 + g as u64)).collect();
                let packed_x = Tensor::cat(&xs, 0).expect("cat");
                for mode in [Mode::TRAIN, Mode::MC, Mode::EVAL] {
                    // The packed state before this pass (deep copies: `set` writes in place).
                    let named: Vec<(String, Tensor)> = sorted_vars(&pm)
                        .into_iter()
                        .map(|(n, v)| (n, v.as_tensor().copy().expect("copy")))
                        .collect();
                    let mut noise: Vec<Noise> = (0..G).map(|g| Noise::new(90 + g as u64)).collect();
                    let y = packed
                        .forward_packed(&packed_x, mode, &mut noise)
                        .expect("fwd");
                    let grads = y.sum_all().and_then(|t| t.backward()).expect("bwd");
                    for g in 0..G {
                        let (vm, one) = {
                            let vm = VarMap::new();
                            let vb = VarBuilder::from_varmap(&vm, DType::F32, &CPU);
                            let one = Model::with_backend(&cfg, backend, vb).expect("one");
                            init_seeded(&vm, seeds[g]).expect("init");
                            (vm, one)
                        };
                        // The member's state so far (running stats moved in earlier modes).
                        let own =
                            unpack_member(named.iter().map(|(n, t)| (n, t)), G, g).expect("unpack");
                        for (name, var) in sorted_vars(&vm) {
                            var.set(&own[&name]).expect("set");
                        }
                        let mut n1 = Noise::new(90 + g as u64);
                        let yo = one.forward(&xs[g], mode, &mut n1).expect("fwd one");
                        let go = yo.sum_all().and_then(|t| t.backward()).expect("bwd one");
                        let yp = y.narrow(0, g * b, b).expect("rows");
                        let tol = if backend == Backend::Reference {
                            1e-5
                        } else {
                            0.0
                        };
                        let close = |a: &Tensor, o: &Tensor, what: &str| {
                            let scale = values(o).iter().fold(1e-6f32, |m, v| m.max(v.abs()));
                            let d = max_abs_diff(a, o);
                            assert!(d <= tol * scale, "{what}: differs by {d} (scale {scale})");
                        };
                        close(&yp, &yo, &format!("{what} {mode:?} member {g} logits"));
                        for (name, var) in sorted_vars(&vm) {
                            let pv = &sorted_vars(&pm)
                                .into_iter()
                                .find(|(n, _)| *n == name)
                                .expect("packed var")
                                .1;
                            let rows = var.dim(0).expect("rows");
                            let after = pv.as_tensor().narrow(0, g * rows, rows).expect("block");
                            if mode.batchnorm_train
                                && !VarRole::of(&name, var.rank()).is_trainable()
                            {
                                close(&after, var.as_tensor(), &format!("{what} {name} stats"));
                                continue;
                            }
                            if let (Some(a), Some(o)) =
                                (grads.get(pv.as_tensor()), go.get(var.as_tensor()))
                            {
                                let a = a.narrow(0, g * rows, rows).expect("grad block");
                                close(&a, o, &format!("{what} {mode:?} {name} grad"));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Every network on the device ops (what a GPU runs) against the same network on the fused CPU
/// kernels: the same weights and noise streams give the same logits and parameter gradients up
/// to rounding, in training (batch statistics, dropout or DropConnect masks drawn inside the
/// device ops at the CPU's stream positions), Monte Carlo and evaluation mode, and the same
/// running statistics after a training pass.
#[test]
fn device_ops_compute_what_the_cpu_kernels_compute() {
    use ferbayes_models::Backend;
    let rel = |a: &Tensor, b: &Tensor| {
        let scale = values(b).iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        max_abs_diff(a, b) / scale
    };
    for arch in Arch::ALL {
        for method in Method::ALL {
            let cfg = ModelConfig::new(arch, method, 0.125, 32);
            let build = |backend: Backend| {
                let vm = VarMap::new();
                let vb = VarBuilder::from_varmap(&vm, DType::F32, &CPU);
                let model = Model::with_backend(&cfg, backend, vb).expect("model");
                init_seeded(&vm, 21).expect("init");
                (vm, model)
            };
            let ((cpu_vars, cpu), (dev_vars, dev)) =
                (build(Backend::Winograd), build(Backend::Device));
            let xs = random_input(6, 32, 8);
            for mode in [Mode::TRAIN, Mode::MC, Mode::EVAL] {
                let what = format!("{arch}/{method} {mode:?}");
                let run = |model: &Model, vm: &VarMap| {
                    let y = model
                        .forward(&xs, mode, &mut Noise::new(33))
                        .expect("forward");
                    let grads = y.sqr().and_then(|t| t.sum_all()).and_then(|t| t.backward());
                    let grads = grads.expect("backward");
                    let g: Vec<(String, Option<Tensor>)> = sorted_vars(vm)
                        .into_iter()
                        .map(|(n, v)| (n, grads.get(v.as_tensor()).cloned()))
                        .collect();
                    (y, g)
                };
                let (yc, gc) = run(&cpu, &cpu_vars);
                let (yd, gd) = run(&dev, &dev_vars);
                assert!(
                    rel(&yd, &yc) < 1e-4,
                    "{what}: logits differ by {}",
                    rel(&yd, &yc)
                );
                // A gradient that is zero but for rounding (a bias before a BatchNorm) is
                // judged against the network's largest gradient. A BatchEnsemble scales a
                // conv's output channels by its fast weights before the BatchNorm divides them
                // out again: where a fast weight is small the BatchNorm's input gradient is
                // large, and so is the rounding in the sum that is the bias's zero gradient.
                let largest = gc
                    .iter()
                    .flat_map(|(_, g)| g.iter().flat_map(values))
                    .fold(0f32, |m, v| m.max(v.abs()));
                let floor = if method == Method::BatchEnsemble {
                    1e-2
                } else {
                    1e-3
                };
                for ((name, a), (_, b)) in gd.iter().zip(&gc) {
                    match (a, b) {
                        (Some(a), Some(b)) => {
                            let scale = values(b)
                                .iter()
                                .fold(floor * largest, |m, v| m.max(v.abs()));
                            let r = max_abs_diff(a, b) / scale;
                            assert!(r < 5e-3, "{what}: {name} gradient differs by {r}");
                        }
                        (None, None) => {}
                        _ => panic!("{what}: {name} has a gradient on one backend only"),
                    }
                }
                for ((name, a), (_, b)) in sorted_vars(&dev_vars)
                    .iter()
                    .zip(sorted_vars(&cpu_vars).iter())
                {
                    if name.contains("running") {
                        let r = rel(a.as_tensor(), b.as_tensor());
                        assert!(r < 1e-5, "{what}: {name} differs by {r}");
                    }
                }
            }
        }
    }
}

/// Every network on the device ops on a GPU against the same network on the device ops on the
/// CPU: the same logits and gradients up to the convolutions' rounding (cuDNN sums in its own
/// order), the same dropout and DropConnect masks (drawn on the GPU at the CPU's stream
/// positions). Needs a build with `--features cudnn` and a GPU; elsewhere it says it was skipped.
#[test]
fn device_ops_on_a_gpu_compute_what_they_compute_on_the_cpu() {
    use ferbayes_models::Backend;
    let gpu = match ferbayes_models::device("cuda") {
        Ok(d) => d,
        Err(e) => {
            // The error's first line: candle appends a backtrace to it.
            let e = e.to_string();
            let why = e.lines().next().unwrap_or_default();
            eprintln!("skipping the GPU network check: {why}");
            return;
        }
    };
    if !cfg!(feature = "cudnn") {
        eprintln!("skipping the GPU network check: built without the `cudnn` feature");
        return;
    }
    for arch in Arch::ALL {
        for method in Method::ALL {
            let cfg = ModelConfig::new(arch, method, 0.125, 32);
            let build = |device: &Device| {
                let vm = VarMap::new();
                let vb = VarBuilder::from_varmap(&vm, DType::F32, device);
                let model = Model::with_backend(&cfg, Backend::Device, vb).expect("model");
                init_seeded(&vm, 21).expect("init");
                (vm, model)
            };
            let (cpu_vars, cpu) = build(&CPU);
            let (gpu_vars, on_gpu) = build(&gpu);
            let xs = random_input(6, 32, 8);
            for mode in [Mode::TRAIN, Mode::MC, Mode::EVAL] {
                let what = format!("{arch}/{method} {mode:?}");
                let run = |model: &Model, vm: &VarMap, xs: &Tensor| {
                    let y = model
                        .forward(xs, mode, &mut Noise::new(33))
                        .expect("forward");
                    let grads = y.sqr().and_then(|t| t.sum_all()).and_then(|t| t.backward());
                    let grads = grads.expect("backward");
                    let g: Vec<Option<Tensor>> = sorted_vars(vm)
                        .into_iter()
                        .map(|(_, v)| {
                            grads
                                .get(v.as_tensor())
                                .map(|t| t.to_device(&CPU).expect("cpu"))
                        })
                        .collect();
                    (y.to_device(&CPU).expect("cpu"), g)
                };
                let (yc, gc) = run(&cpu, &cpu_vars, &xs);
                let (yg, gg) = run(&on_gpu, &gpu_vars, &xs.to_device(&gpu).expect("gpu"));
                let scale = values(&yc).iter().fold(1e-6f32, |m, v| m.max(v.abs()));
                assert!(max_abs_diff(&yg, &yc) <= 1e-3 * scale, "{what}: logits");
                let largest = gc
                    .iter()
                    .flatten()
                    .flat_map(values)
                    .fold(0f32, |m, v| m.max(v.abs()));
                for (k, (a, b)) in gg.iter().zip(&gc).enumerate() {
                    if let (Some(a), Some(b)) = (a, b) {
                        let s = values(b).iter().fold(1e-3 * largest, |m, v| m.max(v.abs()));
                        assert!(max_abs_diff(a, b) <= 1e-2 * s, "{what}: gradient {k}");
                    }
                }
            }
        }
    }
}

/// A network on the fused CPU kernels, seeded, with `members` packed members (a BatchEnsemble's
/// members for batch_ensemble).
fn build_on(cfg: &ModelConfig, members: usize, seed: u64) -> (VarMap, Model) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &CPU);
    let model = Model::packed(cfg, ferbayes_models::Backend::Winograd, members, vb).expect("model");
    init_seeded(&varmap, seed).expect("init_seeded");
    (varmap, model)
}

fn bits(t: &Tensor) -> Vec<u32> {
    values(t).into_iter().map(f32::to_bits).collect()
}

/// The configuration's serialised form: the study's methods' as before the variational scales
/// existed (no `variational` key, so weights metadata and keys built from it do not change),
/// variational's with its scales; the scales are required exactly for variational, positive.
#[test]
fn model_configs_serialise_as_before_and_validate_the_variational_scales() {
    use ferbayes_models::VariationalConfig;
    let cfg = ModelConfig::new(Arch::AlexNet, Method::McDropout, 0.5, 48);
    let json = serde_json::to_string(&cfg).expect("json");
    assert_eq!(
        json,
        r#"{"arch":"alexnet","method":"mc_dropout","width":0.5,"input_size":48,"drop_rate":0.5}"#
    );
    assert_eq!(
        serde_json::from_str::<ModelConfig>(&json).expect("parse"),
        cfg
    );
    let var = ModelConfig::new(Arch::Vgg16, Method::Variational, 0.25, 48);
    let json = serde_json::to_string(&var).expect("json");
    assert!(
        json.ends_with(r#""variational":{"sigma0":0.001,"prior_sigma":1.0}}"#),
        "{json}"
    );
    assert_eq!(
        serde_json::from_str::<ModelConfig>(&json).expect("parse"),
        var
    );
    var.validate().expect("valid");
    let missing = ModelConfig {
        variational: None,
        ..var.clone()
    };
    let err = missing.validate().expect_err("scales required").to_string();
    assert!(err.contains("variational.sigma0"), "{err}");
    let stray = ModelConfig {
        variational: Some(VariationalConfig::default()),
        ..cfg.clone()
    };
    assert!(stray.validate().is_err(), "scales for mc_dropout");
    for (sigma0, prior_sigma) in [(0.0, 1.0), (1e-3, -1.0), (f64::NAN, 1.0)] {
        let bad = ModelConfig {
            variational: Some(VariationalConfig {
                sigma0,
                prior_sigma,
            }),
            ..var.clone()
        };
        assert!(bad.validate().is_err(), "{sigma0} {prior_sigma}");
    }
    // ρ₀ = softplus⁻¹(σ₀).
    for sigma0 in [1e-6, 1e-3, 0.05, 1.0, 3.0] {
        let v = VariationalConfig {
            sigma0,
            prior_sigma: 1.0,
        };
        let back = v.rho0().exp().ln_1p();
        assert!((back - sigma0).abs() < 1e-12 * sigma0, "{sigma0}: {back}");
    }
    // A variational network is one network; Model::batch_ensemble builds only batch_ensemble.
    let vb = || VarBuilder::from_varmap(&VarMap::new(), DType::F32, &CPU);
    let backend = ferbayes_models::Backend::Winograd;
    assert!(Model::packed(&var, backend, 2, vb()).is_err());
    assert!(Model::batch_ensemble(&cfg, backend, 2, vb()).is_err());
    let be = ModelConfig::new(Arch::Vgg16, Method::BatchEnsemble, 0.25, 48);
    assert_eq!(
        Model::batch_ensemble(&be, backend, 2, vb())
            .expect("batch ensemble")
            .members(),
        2
    );
}

/// A variational network of every architecture: a `weight_rho` beside every conv and linear
/// weight, starting at ρ₀ (σ = σ₀); a sampled pass is a function of the seed, bit for bit, and
/// differs between seeds; the mean pass (EVAL) draws nothing; the KL is the closed form summed
/// over its variables (here in plain f64 loops); and a training loss's gradient (sampled pass
/// plus KL) reaches every mean and every ρ.
#[test]
fn variational_networks_sample_their_weights_and_differentiate_in_them() {
    use ferbayes_models::VariationalConfig;
    let (sigma0, prior) = (0.05, 0.5);
    for arch in Arch::ALL {
        let mut cfg = ModelConfig::new(arch, Method::Variational, 0.125, 32);
        cfg.variational = Some(VariationalConfig {
            sigma0,
            prior_sigma: prior,
        });
        let (vm, model) = build_on(&cfg, 1, 3);
        assert!(!model.has_deterministic_prefix());
        let vars = sorted_vars(&vm);
        let rho0 = (sigma0.exp_m1().ln()) as f32;
        let mut want_kl = 0f64;
        let mut rhos = 0;
        for (name, var) in &vars {
            let Some(mean) = name.strip_suffix("_rho") else {
                continue;
            };
            rhos += 1;
            assert!(values(var.as_tensor()).iter().all(|&r| r == rho0), "{name}");
            let mu = &vars.iter().find(|(n, _)| n == mean).expect("its mean").1;
            assert_eq!(mu.dims(), var.dims(), "{name}");
            for (m, r) in values(mu.as_tensor()).iter().zip(values(var.as_tensor())) {
                let (m, s) = (f64::from(*m), f64::from(r).exp().ln_1p());
                want_kl += (prior / s).ln() + (s * s + m * m) / (2.0 * prior * prior) - 0.5;
            }
        }
        let weights = vars
            .iter()
            .filter(|(n, v)| n.ends_with(".weight") && VarRole::of(n, v.rank()) == VarRole::Weight)
            .count();
        assert_eq!(
            rhos, weights,
            "{arch}: one weight_rho per conv / linear weight"
        );
        let kl = model.kl().expect("kl");
        let got = f64::from(kl.to_scalar::<f32>().expect("scalar"));
        assert!(
            (got - want_kl).abs() < 1e-6 * want_kl.abs(),
            "{arch}: KL {got} vs {want_kl}"
        );

        let xs = random_input(4, 32, 1);
        let sample = |seed: u64| {
            model
                .forward(&xs, Mode::MC, &mut Noise::new(seed))
                .expect("mc")
        };
        let a = sample(9);
        assert_eq!(bits(&a), bits(&sample(9)), "{arch}: one seed, one sample");
        assert!(max_abs_diff(&a, &sample(10)) > 1e-4, "{arch}: seeds differ");
        let e1 = model
            .forward(&xs, Mode::EVAL, &mut Noise::new(1))
            .expect("eval");
        let e2 = model
            .forward(&xs, Mode::EVAL, &mut Noise::new(2))
            .expect("eval");
        assert_eq!(bits(&e1), bits(&e2), "{arch}: the mean pass draws nothing");
        // Rebuilt and reseeded: the same sample.
        let (_, again) = build_on(&cfg, 1, 3);
        let b = again
            .forward(&xs, Mode::MC, &mut Noise::new(9))
            .expect("mc");
        assert_eq!(bits(&a), bits(&b), "{arch}: same seeds, same network");

        let y = model
            .forward(&xs, Mode::TRAIN, &mut Noise::new(4))
            .expect("train");
        let loss = (y.sqr().and_then(|t| t.mean_all()).expect("loss") + (kl * 1e-3).expect("kl"))
            .expect("sum");
        let grads = loss.backward().expect("backward");
        for (name, var) in &vars {
            if !VarRole::of(name, var.rank()).is_trainable() {
                continue;
            }
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{arch}: no gradient for {name}"));
            let g = values(g);
            assert!(g.iter().all(|v| v.is_finite()), "{arch}: {name}");
            if name.ends_with(".weight") || name.ends_with(".weight_rho") {
                assert!(g.iter().any(|&v| v != 0.0), "{arch}: {name} gradient is 0");
            }
        }
    }
}

/// A point network's weights load as a variational network's means (and its biases and
/// BatchNorms), its ρ keep ρ₀, and the variational network's mean pass is then the point
/// network's deterministic pass, bit for bit; a tensor missing from the point weights is named.
#[test]
fn a_point_network_loads_as_the_variational_means() {
    use std::collections::HashMap;
    for arch in [Arch::AlexNet, Arch::Vgg16] {
        let (pm, point) = build_on(&ModelConfig::new(arch, Method::McDropout, 0.125, 32), 1, 5);
        let tensors: HashMap<String, Tensor> = sorted_vars(&pm)
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        let cfg = ModelConfig::new(arch, Method::Variational, 0.125, 32);
        let (vm, var) = build_on(&cfg, 1, 6);
        ferbayes_models::load_point_weights(&vm, &tensors).expect("load");
        let rho0 = cfg.variational.expect("scales").rho0() as f32;
        for (name, v) in sorted_vars(&vm) {
            match tensors.get(&name) {
                Some(t) => assert_eq!(bits(v.as_tensor()), bits(t), "{name}"),
                None => assert!(values(v.as_tensor()).iter().all(|&r| r == rho0), "{name}"),
            }
        }
        let xs = random_input(3, 32, 2);
        let want = point
            .forward(&xs, Mode::EVAL, &mut Noise::new(0))
            .expect("point");
        let got = var
            .forward(&xs, Mode::EVAL, &mut Noise::new(0))
            .expect("mean");
        assert_eq!(bits(&got), bits(&want), "{arch}: the mean pass");
        let mut short = tensors.clone();
        short.remove("classifier.fc2.bias");
        let err = ferbayes_models::load_point_weights(&vm, &short).expect_err("missing");
        assert!(err.to_string().contains("classifier.fc2.bias"), "{err}");
    }
}

/// A BatchEnsemble of three members, every architecture: one shared `weight` per conv and
/// linear layer in the single network's shape, per member its fast weights (`fast_in` (3, in),
/// `fast_out` (3, out), seeded N(1, 0.5²)), biases and BatchNorms; member g's logits depend
/// only on its own rows (and, sampling, its own noise stream), bit for bit; the members differ;
/// and the same seeds give the same network and passes.
#[test]
fn batch_ensemble_members_share_weights_and_keep_to_their_rows() {
    const M: usize = 3;
    for arch in Arch::ALL {
        let cfg = ModelConfig::new(arch, Method::BatchEnsemble, 0.125, 32);
        let (vm, model) = build_on(&cfg, M, 4);
        assert_eq!(Mode::for_inference(Method::BatchEnsemble), Mode::EVAL);
        let (pm, _) = build_on(&ModelConfig::new(arch, Method::Ensemble, 0.125, 32), 1, 4);
        let point: std::collections::HashMap<String, Vec<usize>> = sorted_vars(&pm)
            .into_iter()
            .map(|(n, v)| (n, v.dims().to_vec()))
            .collect();
        let mut fast = Vec::new();
        for (name, var) in sorted_vars(&vm) {
            let dims = var.dims().to_vec();
            match VarRole::of(&name, var.rank()) {
                VarRole::Weight => assert_eq!(dims, point[&name], "{name}: shared"),
                VarRole::FastWeight => {
                    let (layer, side) = name.rsplit_once('.').expect("layer");
                    let w = &point[&format!("{layer}.weight")];
                    let n = if side == "fast_in" { w[1] } else { w[0] };
                    assert_eq!(dims, [M, n], "{name}");
                    fast.extend(values(var.as_tensor()).into_iter().map(f64::from));
                }
                _ => {
                    let mut one = point[&name].clone();
                    one[0] *= M;
                    assert_eq!(dims, one, "{name}: per member");
                }
            }
        }
        // N(1, 0.5²): the sample mean within 5 standard errors, the std within 10 %.
        let n = fast.len() as f64;
        let mean = fast.iter().sum::<f64>() / n;
        let std = (fast.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(
            (mean - 1.0).abs() < 5.0 * 0.5 / n.sqrt(),
            "{arch}: mean {mean}"
        );
        assert!((std / 0.5 - 1.0).abs() < 0.1, "{arch}: std {std} of {n}");

        let x = random_input(2, 32, 5);
        let xs = ferbayes_models::repeat_batch(&x, M).expect("repeat");
        assert_eq!(xs.dims(), [2 * M, 1, 32, 32]);
        let streams =
            |seed: u64| -> Vec<Noise> { (0..M).map(|g| Noise::new(seed + g as u64)).collect() };
        let y = model
            .forward_packed(&xs, Mode::EVAL, &mut streams(0))
            .expect("eval");
        let block = |t: &Tensor, g: usize| t.narrow(0, 2 * g, 2).expect("block");
        for g in 1..M {
            assert!(
                max_abs_diff(&block(&y, 0), &block(&y, g)) > 1e-5,
                "{arch}: members"
            );
        }
        // Member 1's rows replaced: members 0 and 2 unchanged.
        let other = Tensor::cat(&[&x, &random_input(2, 32, 6), &x], 0).expect("cat");
        let y2 = model
            .forward_packed(&other, Mode::EVAL, &mut streams(0))
            .expect("eval");
        for g in [0, 2] {
            assert_eq!(
                bits(&block(&y, g)),
                bits(&block(&y2, g)),
                "{arch}: member {g}"
            );
        }
        // Sampling: member 1's stream replaced, members 0 and 2 unchanged; the same streams
        // give the same pass.
        let mc = model
            .forward_packed(&xs, Mode::MC, &mut streams(10))
            .expect("mc");
        let again = model
            .forward_packed(&xs, Mode::MC, &mut streams(10))
            .expect("mc");
        assert_eq!(bits(&mc), bits(&again), "{arch}: one seed, one pass");
        let mut changed = streams(10);
        changed[1] = Noise::new(99);
        let mc2 = model
            .forward_packed(&xs, Mode::MC, &mut changed)
            .expect("mc");
        for g in [0, 2] {
            assert_eq!(
                bits(&block(&mc, g)),
                bits(&block(&mc2, g)),
                "{arch}: member {g}"
            );
        }
        assert!(
            max_abs_diff(&block(&mc, 1), &block(&mc2, 1)) > 1e-6,
            "{arch}"
        );
        let (_, rebuilt) = build_on(&cfg, M, 4);
        let y3 = rebuilt
            .forward_packed(&xs, Mode::EVAL, &mut streams(0))
            .expect("eval");
        assert_eq!(bits(&y), bits(&y3), "{arch}: same seed, same network");
    }
}

/// Forward FLOPs per image against hand counts (2 × multiply-adds, k² per output position
/// whatever the padding): tiny widths where every layer can be counted.
#[test]
fn forward_flops_are_the_hand_count() {
    let flops = |arch, method, width, size, members| {
        let cfg = ModelConfig::new(arch, method, width, size);
        let vb = VarBuilder::from_varmap(&VarMap::new(), DType::F32, &CPU);
        Model::packed(&cfg, ferbayes_models::Backend::Winograd, members, vb)
            .expect("model")
            .forward_flops()
    };
    // alexnet, width 1/64 (channels 1, 2, 4, 4, 2), input 8: convs on 8x8, 4x4, 2x2, 2x2, 2x2
    // maps, then fc 2 → 256 → 256 → 8:
    // 1·1·25·64 + 2·1·25·16 + 4·2·9·4 + 4·4·9·4 + 2·4·9·4 + 2·256 + 256·256 + 256·8 = 71 648.
    let alexnet = 2 * 71_648;
    for method in [Method::McDropout, Method::McDropConnect, Method::Ensemble] {
        assert_eq!(flops(Arch::AlexNet, method, 1.0 / 64.0, 8, 1), alexnet);
    }
    assert_eq!(
        flops(Arch::AlexNet, Method::Ensemble, 1.0 / 64.0, 8, 3),
        alexnet
    );
    assert_eq!(
        flops(Arch::AlexNet, Method::BatchEnsemble, 1.0 / 64.0, 8, 4),
        alexnet
    );
    // Flipout: the mean's product and the perturbation's.
    assert_eq!(
        flops(Arch::AlexNet, Method::Variational, 1.0 / 64.0, 8, 1),
        2 * alexnet
    );
    // vgg16, width 1/64 (channels 1, 2, 4, 8, 8), input 32: per block the convs at 32, 16, 8,
    // 4, 2 (9·Cout·Cin per position), then fc 8 → 256 → 256 → 8.
    let vgg = 9 * 1024 * (1 + 1)
        + 9 * 256 * (2 + 4)
        + 9 * 64 * (8 + 16 + 16)
        + 9 * 16 * (32 + 64 + 64)
        + 9 * 4 * (64 + 64 + 64)
        + (8 * 256 + 256 * 256 + 256 * 8);
    assert_eq!(vgg, 154_880);
    assert_eq!(
        flops(Arch::Vgg16, Method::McDropout, 1.0 / 64.0, 32, 1),
        2 * vgg
    );
    assert_eq!(
        flops(Arch::Vgg16, Method::Variational, 1.0 / 64.0, 32, 1),
        4 * vgg
    );
    // densenet121, width 1/32 (stem 2, growth 1, bottleneck 4), input 32: conv0 7x7 / 2 on
    // 16x16; the blocks at 8, 4, 2, 1 with input channels 2.., 4.., 8.., 16..; 1x1 transitions
    // (c → c/2) on 8, 4 and 2 before their pools; linear 32 → 8.
    let mut dense = 2 * 49 * 256;
    let (mut c, mut side) = (2, 8);
    for (b, n) in [6, 12, 24, 16].into_iter().enumerate() {
        let px = side * side;
        for _ in 0..n {
            dense += 4 * c * px + 4 * 9 * px;
            c += 1;
        }
        if b < 3 {
            dense += (c / 2) * c * px;
            c /= 2;
            side /= 2;
        }
    }
    dense += c * 8;
    assert_eq!(dense, 79_456);
    assert_eq!(
        flops(Arch::DenseNet121, Method::Ensemble, 1.0 / 32.0, 32, 1),
        2 * dense as u64
    );
}

/// A face's eval-mode logits do not depend on the batch it is computed in: each face of a batch
/// of 5 gives bit for bit the logits it gets alone, on every architecture and on both CPU
/// kernel backends (the forward products sum every entry the same whatever the batch; see
/// `ferbayes_kernels`' gemm wrapper). This is what lets `ferbayes predict` on one face agree
/// with the probabilities infer wrote for it among 256. DenseNet-121 at full width has 1x1
/// convolutions of depth over 512 with few output channels and a small map, the products gemm
/// would otherwise sum differently for one face than for several; AlexNet's last layer (8
/// outputs) is one gemm sums with dot-product kernels for a few faces. A network being trained
/// (its weights variables) keeps gemm's own paths, so training sums as it always has.
#[test]
fn eval_logits_of_a_face_do_not_depend_on_its_batch() {
    use ferbayes_models::Backend;
    for (arch, width, size) in [
        (Arch::AlexNet, 0.25, 48),
        (Arch::Vgg16, 0.25, 32),
        (Arch::DenseNet121, 1.0, 32),
    ] {
        for backend in [Backend::Winograd, Backend::Im2col] {
            let cfg = ModelConfig::new(arch, Method::Ensemble, width, size);
            let (varmap, _) = build(&cfg, 7);
            // Loaded weights, as infer and predict load them: plain tensors, not variables.
            let tensors = sorted_vars(&varmap)
                .into_iter()
                .map(|(name, var)| (name, var.as_tensor().detach()))
                .collect();
            let vb = VarBuilder::from_tensors(tensors, DType::F32, &CPU);
            let model = Model::with_backend(&cfg, backend, vb).expect("model builds");
            let xs = random_input(5, size, 11);
            let mut noise = Noise::new(0);
            let batch = model.forward(&xs, Mode::EVAL, &mut noise).expect("batch");
            for i in 0..5 {
                let one = xs.narrow(0, i, 1).expect("narrow");
                let alone = model.forward(&one, Mode::EVAL, &mut noise).expect("alone");
                let row = batch.narrow(0, i, 1).expect("row");
                let (a, b) = (values(&alone), values(&row));
                assert!(
                    a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{arch} width {width} on {backend}: face {i} alone {a:?}, in the batch {b:?}"
                );
            }
        }
    }
}
