//! The epoch loop: a pack of members trained epoch by epoch as one packed network, each
//! epoch checkpointed.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use ferbayes_core::seed::mix;
use ferbayes_core::{Arch, Method, Settings};
use ferbayes_models::{Model, Noise};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use tracing_indicatif::span_ext::IndicatifSpanExt;

use crate::checkpoint::{Resume, save_pack};
use crate::data::{Dataset, gather_packed};
use crate::error::Result;
use crate::evaluate::evaluate_packed;
use crate::fingerprint::MemberJob;
use crate::network::Network;
use crate::optim::{self, Optimizer};
use crate::step::{step_targets, train_step};
use crate::{EpochRecord, TrainOptions};

/// The jobs grouped by the epoch they resume from (a pack's members train in step), in order of
/// first appearance; with `afresh` (`--force`) every job starts from epoch 0, whatever its
/// checkpoint.
pub(crate) fn group_by_resume(
    todo: Vec<MemberJob>,
    device: &Device,
    afresh: bool,
) -> Vec<Vec<PackEntry>> {
    let mut groups: Vec<(usize, Vec<PackEntry>)> = Vec::new();
    for job in todo {
        let resume = if afresh { None } else { job.resume(device) };
        let epoch = resume.as_ref().map_or(0, |r| r.epochs_done);
        match groups.iter_mut().find(|(e, _)| *e == epoch) {
            Some((_, g)) => g.push((job, resume)),
            None => groups.push((epoch, vec![(job, resume)])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// A member to train and, when it resumes, its checkpointed state.
pub(crate) type PackEntry = (MemberJob, Option<Resume>);

pub(crate) enum PackOutcome {
    /// (member, its history) for each member of the pack.
    Complete(Vec<(usize, Vec<EpochRecord>)>),
    Interrupted,
}

/// Trains one pack of members (all resuming from the same epoch) as one packed network,
/// writing each member's checkpoint after every epoch and its weights (recording `machine`,
/// the one-line description of where it trained) after the last.
pub(crate) fn train_pack(
    settings: &Settings,
    (arch, method): (Arch, Method),
    pack: Vec<PackEntry>,
    (train, valid): (&Dataset, &Dataset),
    options: &TrainOptions,
    (budget, machine): (&mut Option<usize>, &str),
) -> Result<PackOutcome> {
    let s = settings.train.arch(arch);
    let device = &options.device;
    let (jobs, resumes): (Vec<MemberJob>, Vec<Option<Resume>>) = pack.into_iter().unzip();
    let seeds: Vec<u64> = jobs.iter().map(|j| j.seed).collect();
    let mut net = Network::packed_on(arch, method, s, device, &seeds, options.kernels)?;
    net.optimizer.set_steps_per_epoch(optim::steps_per_epoch(
        train.len(),
        settings.train.batch_size,
    ));
    let label = pack_label(arch, method, &jobs);
    let mut histories: Vec<Vec<EpochRecord>> = vec![Vec::new(); jobs.len()];
    let first_epoch = resume_pack(&mut net, &jobs, &resumes, &mut histories)?;
    if first_epoch > 0 {
        tracing::info!("{label}: resuming after epoch {first_epoch}");
    }
    let span = ferbayes_core::cli::progress_span(&label, s.epochs as u64);
    span.pb_set_position(first_epoch as u64);
    let _enter = span.enter();
    for epoch in first_epoch..s.epochs {
        let t0 = Instant::now();
        let lr = net.optimizer.learning_rate();
        let train_stats = train_epoch(
            &net.model,
            train,
            settings,
            &mut net.optimizer,
            &seeds,
            epoch,
            device,
        )?;
        let valid_stats = evaluate_packed(&net.model, valid, device)?;
        let seconds = t0.elapsed().as_secs_f64();
        for (g, job) in jobs.iter().enumerate() {
            let record = EpochRecord {
                member: job.member as u16,
                epoch: (epoch + 1) as u32,
                train_loss: train_stats[g].0,
                train_accuracy: train_stats[g].1,
                valid_loss: valid_stats[g].0,
                valid_accuracy: valid_stats[g].1,
                learning_rate: lr,
                seconds,
            };
            log_epoch(arch, method, s.epochs, &record);
            histories[g].push(record);
        }
        span.pb_inc(1);
        span.pb_set_message(&format!(
            "{:.0} member-img/s",
            (jobs.len() * train.len()) as f64 / seconds
        ));
        let last = epoch + 1 == s.epochs;
        save_pack(&net, &jobs, &histories, (epoch, last), machine)?;
        if let Some(left) = budget.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 && !last {
                return Ok(PackOutcome::Interrupted);
            }
        }
    }
    for job in &jobs {
        job.remove_checkpoint()?;
    }
    Ok(PackOutcome::Complete(
        jobs.iter().map(|j| j.member).zip(histories).collect(),
    ))
}

/// `alexnet/ensemble members 00,01,02`: a pack in log lines and progress bars.
pub(crate) fn pack_label(arch: Arch, method: Method, jobs: &[MemberJob]) -> String {
    let names: Vec<String> = jobs.iter().map(|j| format!("{:02}", j.member)).collect();
    let plural = if jobs.len() > 1 { "s" } else { "" };
    format!("{arch}/{method} member{plural} {}", names.join(","))
}

/// Restores a pack from its members' checkpoints (all from the same epoch) and their
/// histories so far; returns the epoch to start from (0 for a fresh pack).
pub(crate) fn resume_pack(
    net: &mut Network,
    jobs: &[MemberJob],
    resumes: &[Option<Resume>],
    histories: &mut [Vec<EpochRecord>],
) -> Result<usize> {
    let Some(Some(r0)) = resumes.first() else {
        return Ok(0);
    };
    let states: Vec<&HashMap<String, Tensor>> =
        resumes.iter().flatten().map(|r| &r.tensors).collect();
    net.restore(&states, r0.step, &jobs[0].checkpoint)?;
    for (h, r) in histories.iter_mut().zip(resumes.iter().flatten()) {
        h.clone_from(&r.history);
    }
    Ok(r0.epochs_done)
}

pub(crate) fn log_epoch(arch: Arch, method: Method, epochs: usize, r: &EpochRecord) {
    tracing::info!(
        "{arch}/{method} member {:02} epoch {}/{epochs}: train loss {:.4} acc {:.2}%, valid nll {:.4} acc {:.2}%, {:.1}s",
        r.member,
        r.epoch,
        r.train_loss,
        100.0 * r.train_accuracy,
        r.valid_loss,
        100.0 * r.valid_accuracy,
        r.seconds,
    );
}

/// One epoch of a packed model, member g seeded by `seeds[g]` (its data order, label draws
/// and masks exactly as if trained alone); per member, the mean training loss and accuracy
/// (against the target served).
///
/// Nothing is read back from the device inside the step loop: each step leaves its members'
/// losses and correct counts as a small tensor on the device, and the epoch reads them all once
/// at its end and sums them on the host in step order (the sums of a loop that read every step).
pub(crate) fn train_epoch(
    model: &Model,
    data: &Dataset,
    settings: &Settings,
    optimizer: &mut Optimizer,
    seeds: &[u64],
    epoch: usize,
    device: &Device,
) -> Result<Vec<(f64, f64)>> {
    let g_count = seeds.len();
    let mut rngs: Vec<ChaCha8Rng> = Vec::with_capacity(g_count);
    let mut orders: Vec<Vec<usize>> = Vec::with_capacity(g_count);
    let mut noise: Vec<Noise> = Vec::with_capacity(g_count);
    for &seed in seeds {
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, 2 * epoch as u64));
        order.shuffle(&mut rng);
        orders.push(order);
        rngs.push(rng);
        noise.push(Noise::new(mix(seed, 2 * epoch as u64 + 1)));
    }
    let mode = settings.train.label_mode;
    let b = settings.train.batch_size;
    // Per step: its batch size and a (2, G) device tensor of the members' losses and correct
    // counts, read once after the loop.
    let mut steps: Vec<(usize, Tensor)> = Vec::new();
    let batches = data.len().div_ceil(b.max(1));
    for j in 0..batches {
        let lists: Vec<&[usize]> = orders
            .iter()
            .map(|o| &o[j * b..((j + 1) * b).min(o.len())])
            .collect();
        let n = lists[0].len();
        if n < 2 {
            continue;
        }
        let xs = gather_packed(data, &lists, device)?;
        let (targets, served) = step_targets(data, &lists, mode, &mut rngs, device)?;
        let tally = train_step(model, optimizer, &xs, &targets, &served, &mut noise)?;
        steps.push((n, tally));
    }
    let mut sums = vec![(0.0f64, 0usize); g_count];
    if !steps.is_empty() {
        let tallies: Vec<&Tensor> = steps.iter().map(|(_, t)| t).collect();
        // One read per epoch: (steps, 2, G) as f32 (counts are small integers, exact in f32).
        let values: Vec<f32> = Tensor::stack(&tallies, 0)?.flatten_all()?.to_vec1()?;
        for ((n, _), step) in steps.iter().zip(values.chunks(2 * g_count)) {
            let (loss, correct) = step.split_at(g_count);
            for (g, sum) in sums.iter_mut().enumerate() {
                sum.0 += f64::from(loss[g]) * *n as f64;
                sum.1 += correct[g] as usize;
            }
        }
    }
    let seen = steps.iter().map(|(n, _)| n).sum::<usize>().max(1) as f64;
    Ok(sums
        .into_iter()
        .map(|(loss, correct)| (loss / seen, correct as f64 / seen))
        .collect())
}
