//! One training step of a packed network, its targets, and [`step_ops`] (the ops it runs).

use candle_core::{DType, Device, Tensor};
use ferbayes_core::{Arch, ArchTrainSettings, LabelMode, Method};
use ferbayes_models::{Backend, Mode, Model, Noise};
use ferbayes_uq::argmax;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::data::Dataset;
use crate::error::Result;
use crate::network::Network;
use crate::optim::{self, Optimizer};

/// What each member's loss compares its rows of the logits with in one step.
#[derive(Debug, Clone)]
pub enum StepTargets {
    /// One class per row, (G·n,) u32: the NLL (label modes `majority` and `probability`).
    Classes(Tensor),
    /// A distribution over the classes per row, (G·n, 8) f32: the cross-entropy against it
    /// (label mode `crossentropy`).
    Soft(Tensor),
}

/// One training step of a packed network (one member: a plain network) on `xs`, G members'
/// batches of n faces one after the other: the forward pass in [`Mode::TRAIN`] (member g's masks
/// from `noise[g]`), each member's mean loss on its own rows as it alone computes it, the
/// backward pass of their sum (whose gradient reaches each member's logits exactly as its own
/// loss's would) and one optimiser step.
///
/// Reads nothing back from the device: returns the step's (2, G) tally there, row 0 the
/// members' losses and row 1 how many of each member's predictions (argmax of its logits) equal
/// `served` ((G·n,) u32, the labels the members were served).
pub fn train_step(
    model: &Model,
    optimizer: &mut Optimizer,
    xs: &Tensor,
    targets: &StepTargets,
    served: &Tensor,
    noise: &mut [Noise],
) -> Result<Tensor> {
    let g_count = model.members();
    let n = xs.dim(0)? / g_count;
    let logits = model.forward_packed(xs, Mode::TRAIN, noise)?;
    let mut losses: Vec<Tensor> = Vec::with_capacity(g_count);
    if model.backend().device_ops(&[&logits]) {
        // One op each way (`ferbayes_kernels::device::cross_entropy`), the same loss.
        use ferbayes_models::device_ops::{Target, cross_entropy};
        for g in 0..g_count {
            let rows = logits.narrow(0, g * n, n)?;
            losses.push(match targets {
                StepTargets::Classes(t) => {
                    cross_entropy(&rows, &t.narrow(0, g * n, n)?, Target::Classes)?
                }
                StepTargets::Soft(t) => {
                    cross_entropy(&rows, &t.narrow(0, g * n, n)?, Target::Soft)?
                }
            });
        }
    } else {
        let log_probs = candle_nn::ops::log_softmax(&logits, 1)?;
        for g in 0..g_count {
            let lp = log_probs.narrow(0, g * n, n)?;
            losses.push(match targets {
                StepTargets::Classes(t) => candle_nn::loss::nll(&lp, &t.narrow(0, g * n, n)?)?,
                StepTargets::Soft(t) => (t.narrow(0, g * n, n)? * lp)?.sum(1)?.mean(0)?.neg()?,
            });
        }
    }
    let mut total = losses[0].clone();
    for l in &losses[1..] {
        total = (total + l)?;
    }
    let grads = total.backward()?;
    optimizer.step(&grads)?;
    let correct = logits
        .argmax(1)?
        .eq(served)?
        .to_dtype(DType::F32)?
        .reshape((g_count, n))?
        .sum(1)?;
    let losses = Tensor::stack(&losses, 0)?.reshape(g_count)?;
    // Detached: kept until the epoch ends, the tally must not hold the step's graph (every
    // activation) alive.
    Ok(Tensor::stack(&[losses, correct], 0)?.detach())
}

/// The ops one [`train_step`] of `arch` runs on `backend`'s kernels (MC-Dropout, one network, a
/// batch of `batch` faces of the settings' size, after one warm-up step), counted by
/// [`ferbayes_models::ops_of`]: each a kernel launch on a GPU at most (views launch nothing).
/// The count depends on the network's structure and optimiser settings, not on its width, input
/// size or `batch`. On [`Backend::Reference`] the optimiser runs as a chain of candle ops per
/// variable, as a GPU ran it before the device ops. The counters are the process's: nothing
/// else may create tensors meanwhile.
pub fn step_ops(
    arch: Arch,
    s: &ArchTrainSettings,
    device: &Device,
    backend: Backend,
    batch: usize,
) -> Result<usize> {
    let Network {
        model,
        mut optimizer,
        ..
    } = Network::packed_on(arch, Method::McDropout, s, device, &[7], backend)?;
    // A FER+ epoch's steps, which the learning-rate schedules need.
    optimizer.set_steps_per_epoch(optim::steps_per_epoch(25_045, batch));
    if backend == Backend::Reference {
        optimizer.force_candle_chain();
    }
    let size = s.input_size;
    let pixels: Vec<f32> = (0..batch * size * size)
        .map(|i| (i % 251) as f32 / 251.0)
        .collect();
    let xs = Tensor::from_vec(pixels, (batch, 1, size, size), device)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 8).collect();
    let served = Tensor::new(labels.as_slice(), device)?;
    let targets = StepTargets::Classes(served.clone());
    let mut noise = [Noise::new(11)];
    train_step(&model, &mut optimizer, &xs, &targets, &served, &mut noise)?;
    let mut failed = None;
    let ops = ferbayes_models::ops_of(|| {
        failed = train_step(&model, &mut optimizer, &xs, &targets, &served, &mut noise).err();
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(ops),
    }
}

/// The targets and served labels of one step: member g's batch `lists[g]`, its label draws
/// (label mode `probability`) from `rngs[g]`, members in order.
pub(crate) fn step_targets(
    data: &Dataset,
    lists: &[&[usize]],
    mode: LabelMode,
    rngs: &mut [ChaCha8Rng],
    device: &Device,
) -> Result<(StepTargets, Tensor)> {
    let rows: usize = lists.iter().map(|l| l.len()).sum();
    let mut served: Vec<u32> = Vec::with_capacity(rows);
    for (list, rng) in lists.iter().zip(rngs.iter_mut()) {
        served.extend(list.iter().map(|&i| match mode {
            LabelMode::Majority => u32::from(data.majority[i]),
            LabelMode::Probability => sample_class(&data.soft[i], rng),
            LabelMode::CrossEntropy => argmax(&data.soft[i]) as u32,
        }));
    }
    let served = Tensor::from_vec(served, rows, device)?;
    let targets = match mode {
        LabelMode::Majority | LabelMode::Probability => StepTargets::Classes(served.clone()),
        LabelMode::CrossEntropy => {
            let soft: Vec<f32> = lists
                .iter()
                .flat_map(|l| l.iter())
                .flat_map(|&i| data.soft[i])
                .collect();
            StepTargets::Soft(Tensor::from_vec(
                soft,
                (rows, ferbayes_core::NUM_CLASSES),
                device,
            )?)
        }
    };
    Ok((targets, served))
}

pub(crate) fn sample_class(p: &[f32; ferbayes_core::NUM_CLASSES], rng: &mut ChaCha8Rng) -> u32 {
    let u: f32 = rng.random();
    let mut acc = 0.0;
    for (k, &pk) in p.iter().enumerate() {
        acc += pk;
        if u < acc {
            return k as u32;
        }
    }
    argmax(p) as u32
}
