//! Ops per training step: the candle tensors one step creates (each one kernel launch on a GPU,
//! or a view, which launches nothing) plus the in-place kernels (BatchNorm running statistics,
//! the optimiser's update), counted on the CPU. The counts depend on the network's structure and
//! on its optimiser's settings (a schedule or weight decay adds ops to the reference chain), not
//! on width, input size or batch: the smoke-size networks with the paper profile's optimiser
//! settings stand for the paper's networks.
//!
//! A test binary of its own: the counters are the process's, so no other test may run beside it.
//!
//! The path a GPU took before the device ops (candle's reference ops, the optimiser as a chain
//! of candle ops per variable) against the one it takes now (`Backend::Device`, one in-place
//! multi-tensor optimiser update).

use candle_core::{Device, Tensor};
use std::path::Path;

use ferbayes_core::{Arch, PipelineFile};
use ferbayes_models::Backend;

/// Ops of one training step of `arch` on `backend`: the smoke profile's width and input size,
/// `profile`'s other settings (its optimiser, schedule, weight decay).
fn step_ops(profile: &str, arch: Arch, backend: Backend) -> usize {
    let file =
        PipelineFile::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml"))
            .expect("pipeline.toml");
    let small = file.settings("smoke").expect("smoke profile");
    let settings = file.settings(profile).expect("profile");
    let mut s = settings.train.arch(arch).clone();
    s.width = small.train.arch(arch).width;
    s.input_size = small.train.arch(arch).input_size;
    ferbayes_train::step_ops(arch, &s, &Device::Cpu, backend, 8).expect("step")
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
        for profile in ["smoke", "paper"] {
            let before = step_ops(profile, arch, Backend::Reference);
            let after = step_ops(profile, arch, Backend::Device);
            eprintln!(
                "{arch}, {profile} settings: {before} ops per step on the reference ops, {after} \
                 on the device ops"
            );
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
}
