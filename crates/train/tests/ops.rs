//! Ops per training step: the candle tensors one step creates (each one kernel launch on a GPU,
//! or a view, which launches nothing) plus the in-place kernels (BatchNorm running statistics,
//! the optimiser's update), counted on the CPU. The counts depend on the network's structure
//! only (not on width, input size or batch), so the small smoke networks stand for the paper's.
//!
//! A test binary of its own: the counters are the process's, so no other test may run beside it.
//!
//! The path a GPU took before the device ops (candle's reference ops, the optimiser as a chain
//! of candle ops per variable) against the one it takes now (`Backend::Device`, one in-place
//! multi-tensor optimiser update).

use candle_core::{Device, Tensor};
use std::path::Path;

use ferbayes_core::{Arch, Method, PipelineFile};
use ferbayes_models::{Backend, Noise};
use ferbayes_train::{Network, StepTargets, optim, train_step};

/// Ops of one training step (after a warm-up step) of `arch` on `backend`.
fn step_ops(arch: Arch, backend: Backend, chain_optimizer: bool) -> usize {
    let file =
        PipelineFile::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml"))
            .expect("pipeline.toml");
    let settings = file.settings("smoke").expect("smoke profile");
    let s = settings.train.arch(arch);
    let device = Device::Cpu;
    let Network {
        model,
        mut optimizer,
        ..
    } = Network::packed_on(arch, Method::McDropout, s, &device, &[7], backend).expect("network");
    optimizer.set_steps_per_epoch(optim::steps_per_epoch(256, 32));
    if chain_optimizer {
        optimizer.force_candle_chain();
    }
    let b = 8;
    let size = s.input_size;
    let pixels: Vec<f32> = (0..b * size * size)
        .map(|i| (i % 251) as f32 / 251.0)
        .collect();
    let xs = Tensor::from_vec(pixels, (b, 1, size, size), &device).expect("xs");
    let labels: Vec<u32> = (0..b as u32).map(|i| i % 8).collect();
    let target = Tensor::new(labels.as_slice(), &device).expect("labels");
    let targets = StepTargets::Classes(target.clone());
    let mut noise = [Noise::new(11)];
    let mut step = || {
        train_step(&model, &mut optimizer, &xs, &targets, &target, &mut noise).expect("step");
    };
    step();
    ferbayes_models::ops_of(step)
}

/// The device ops bring a DenseNet-121 step to at most 3,000 ops and AlexNet's and VGG16's to
/// at most 500, from several times that on the reference ops.
#[test]
fn device_ops_per_training_step() {
    // The counter itself: one op is one, an in-place op counts, a view is a tensor.
    let a = Tensor::new(&[1f32, 2.0], &Device::Cpu).expect("a");
    assert_eq!(ferbayes_models::ops_of(|| drop((&a + &a).expect("add"))), 1);
    assert_eq!(
        ferbayes_models::ops_of(|| ferbayes_models::count_inplace(3)),
        3
    );
    assert_eq!(
        ferbayes_models::ops_of(|| drop(a.reshape((2, 1)).expect("view"))),
        1
    );
    assert_eq!(ferbayes_models::ops_of(|| ()), 0);

    for (arch, bound) in [
        (Arch::AlexNet, 500),
        (Arch::Vgg16, 500),
        (Arch::DenseNet121, 3000),
    ] {
        let before = step_ops(arch, Backend::Reference, true);
        let after = step_ops(arch, Backend::Device, false);
        eprintln!("{arch}: {before} ops per step on the reference ops, {after} on the device ops");
        assert!(
            after <= bound,
            "{arch}: {after} ops per step on the device ops, over {bound}"
        );

        assert!(
            after * 3 < before,
            "{arch}: {after} device ops vs {before} reference ops"
        );
    }
}
