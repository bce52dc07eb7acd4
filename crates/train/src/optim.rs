//! Adam and SGD with momentum, with state that can be saved and restored bit for bit (needed to
//! resume a killed run and end with the weights of an uninterrupted one).
//!
//! - Adam (Kingma & Ba 2015): m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g²,
//!   θ ← θ − lr·(m̂/(√v̂ + ε) + wd·θ) with bias-corrected m̂, v̂ (β1 0.9, β2 0.999, ε 1e-7 as
//!   Keras, which the study used).
//! - SGD (PyTorch convention): b ← μ·b + g (+ wd·θ in g), θ ← θ − lr·b.
//! - The learning rate decays per step as Keras' `decay`: lr_t = lr / (1 + decay·t), times the
//!   budget-aware schedule below.
//!
//! # Learning-rate schedule
//!
//! The rate of step t (0-based: the steps already taken, [`Optimizer::step`]) is a pure function
//! of the settings, t and the budget, so the step count a checkpoint saves (and
//! [`Optimizer::restore`] restores) is the position in the schedule:
//!
//! - base(t) = learning_rate / (1 + lr_decay·t) (Keras' `decay`);
//! - T = epochs · steps_per_epoch steps in all ([`steps_per_epoch`], given by
//!   [`Optimizer::set_steps_per_epoch`]);
//! - W = round(warmup_epochs · steps_per_epoch) warm-up steps (halves away from zero), except
//!   `onecycle` with warmup_epochs = 0: W = round(0.3·T) = ⌊(3T + 5) / 10⌋;
//! - warm-up, t < W: factor(t) = (t + 1) / W (the full rate at step W − 1);
//! - after it, with u = min(1, (t − W) / max(1, T − W)) (in [0, 1) for every step t < T):
//!   `constant` factor 1; `linear` 1 − u; `cosine` and `onecycle` ½·(1 + cos(π·u)) (`onecycle`
//!   is linear warm-up to the peak, by default over 30 % of the steps, then cosine to zero);
//! - lr(t) = base(t) · factor(t); the `constant` schedule without warm-up is exactly base(t).
//!
//! Budgeted Training (Li, Yumer & Ramanan, ICLR 2020): with a small budget, decaying to zero at
//! its end (linear) beats step schedules. `schedule_reference.py` beside this file computes the
//! values the tests check.
//!
//! On the CPU each update is two (SGD) or three (Adam) in-place passes over θ and the state, in
//! parallel ([`fused`]); elsewhere it is a chain of candle ops. Both round every intermediate to
//! f32 in the same order, so they give the same bits (tested).

use std::collections::HashMap;

use candle_core::{Tensor, Var, backprop::GradStore};
use ferbayes_core::{ArchTrainSettings, LrSchedule, OptimizerKind};

use crate::error::{Result, TrainError};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-7;

/// An optimiser over a fixed, ordered list of named variables.
#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    vars: Vec<(String, Var)>,
    /// Adam: first and second moments; SGD: momentum buffer (second unused).
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    /// Steps taken so far.
    pub step: u64,
    schedule: Schedule,
    /// Batches the train loop steps per epoch; needed by every schedule but plain `constant`.
    steps_per_epoch: Option<u64>,
    momentum: f64,
    weight_decay: f64,
    /// Always the chain of candle ops (as a device without the in-place update runs it): for
    /// counting that path's ops ([`Optimizer::force_candle_chain`]).
    chain_only: bool,
}

impl Optimizer {
    /// A fresh optimiser for `vars` (name, var) with the settings of one architecture.
    pub fn new(vars: Vec<(String, Var)>, s: &ArchTrainSettings) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let first = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle_core::Result<_>>()?;
        let second = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle_core::Result<_>>()?;
        Ok(Optimizer {
            kind: s.optimizer,
            vars,
            first,
            second,
            step: 0,
            schedule: Schedule::new(s),
            steps_per_epoch: None,
            momentum: s.momentum,
            weight_decay: s.weight_decay,
            chain_only: false,
        })
    }

    /// Runs every update as the chain of candle ops, even where the in-place update applies
    /// (same values; for counting the ops of the path devices without it take).
    pub fn force_candle_chain(&mut self) {
        self.chain_only = true;
    }

    /// Sets the batches the train loop steps per epoch ([`steps_per_epoch`]), which fixes the
    /// schedule's warm-up and total steps. Required by every schedule but `constant` without
    /// warm-up.
    pub fn set_steps_per_epoch(&mut self, n: u64) {
        self.steps_per_epoch = Some(n);
    }

    /// The learning rate of the next step (NaN where [`Optimizer::try_learning_rate`] fails).
    pub fn learning_rate(&self) -> f64 {
        self.try_learning_rate().unwrap_or(f64::NAN)
    }

    /// The learning rate of the next step; an error if the schedule needs the steps per epoch
    /// and [`Optimizer::set_steps_per_epoch`] was not called.
    pub fn try_learning_rate(&self) -> Result<f64> {
        self.schedule.rate(self.step, self.steps_per_epoch)
    }

    /// One update from the gradients of a backward pass.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let lr = self.try_learning_rate()?;
        self.step += 1;
        let hyper = Hyper {
            kind: self.kind,
            lr,
            t: self.step as i32,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
        };
        if !self.chain_only && self.step_on_gpu(grads, hyper)? {
            return Ok(());
        }
        let mut in_place = false;
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let theta = var.as_tensor();
            if !self.chain_only && fused::step(theta, g, &self.first[i], &self.second[i], hyper)? {
                in_place = true;
                continue;
            }
            let (m, v) = chain_step(var, g, &self.first[i], &self.second[i], hyper)?;
            self.first[i] = m;
            if let Some(v) = v {
                self.second[i] = v;
            }
        }
        if in_place {
            // The in-place update of every variable: one multi-tensor kernel on a GPU.
            ferbayes_models::count_inplace(1);
        }
        Ok(())
    }

    /// The update of every variable as one multi-tensor kernel on a GPU
    /// (`ferbayes_kernels::device::optimizer_step`: the in-place CPU passes' arithmetic, so the
    /// same bits as the CPU for the same gradients); false, doing nothing, off the GPU.
    fn step_on_gpu(&self, grads: &GradStore, h: Hyper) -> Result<bool> {
        use ferbayes_models::device_ops::{Update, optimizer_step};
        let vars: Vec<[&Tensor; 4]> = self
            .vars
            .iter()
            .enumerate()
            .filter_map(|(i, (_, var))| {
                let g = grads.get(var.as_tensor())?;
                Some([var.as_tensor(), g, &self.first[i], &self.second[i]])
            })
            .collect();
        if !vars.first().is_some_and(|v| v[0].device().is_cuda()) {
            return Ok(false);
        }
        let f = |v: f64| v as f32;
        let wd = (h.weight_decay > 0.0).then(|| f(h.weight_decay));
        let update = match h.kind {
            OptimizerKind::Adam => Update::Adam {
                b1: f(BETA1),
                c1: f(1.0 - BETA1),
                b2: f(BETA2),
                c2: f(1.0 - BETA2),
                r1: f(1.0 / (1.0 - BETA1.powi(h.t))),
                r2: f(1.0 / (1.0 - BETA2.powi(h.t))),
                eps: f(EPS),
                lr: f(h.lr),
                wd,
            },
            OptimizerKind::Sgd => Update::Sgd {
                momentum: (h.momentum > 0.0).then(|| f(h.momentum)),
                lr: f(h.lr),
                wd,
            },
        };
        Ok(optimizer_step(&vars, update)?)
    }

    /// A copy of the state as named tensors (`opt.m.<var>`, `opt.v.<var>`), for a checkpoint
    /// (a copy: the CPU update writes the state in place).
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("opt.m.{name}"), self.first[i].copy()?);
            if self.kind == OptimizerKind::Adam {
                out.insert(format!("opt.v.{name}"), self.second[i].copy()?);
            }
        }
        Ok(out)
    }

    /// Restores (copies of) the state saved by [`Optimizer::state`] and the step count.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            let get = |key: String| -> Result<Tensor> {
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| TrainError::Invalid(format!("checkpoint lacks `{key}`")))?;
                Ok(t.contiguous()?.copy()?)
            };
            self.first[i] = get(format!("opt.m.{name}"))?;
            if self.kind == OptimizerKind::Adam {
                self.second[i] = get(format!("opt.v.{name}"))?;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// The optimiser steps of one epoch over `faces` training faces in batches of `batch_size`: the
/// train loop steps every chunk of `batch_size` faces (the last one may be shorter) but skips a
/// chunk of fewer than 2 faces.
pub fn steps_per_epoch(faces: usize, batch_size: usize) -> u64 {
    if batch_size == 0 {
        return 0;
    }
    let full = if batch_size >= 2 {
        faces / batch_size
    } else {
        0
    };
    let tail = usize::from(faces % batch_size >= 2);
    (full + tail) as u64
}

/// The settings that fix the learning rate of every step (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub learning_rate: f64,
    pub lr_decay: f64,
    pub kind: LrSchedule,
    pub warmup_epochs: f64,
    pub epochs: u64,
}

impl Schedule {
    /// The schedule of one architecture's settings.
    pub fn new(s: &ArchTrainSettings) -> Self {
        Schedule {
            learning_rate: s.learning_rate,
            lr_decay: s.lr_decay,
            kind: s.lr_schedule,
            warmup_epochs: s.warmup_epochs,
            epochs: s.epochs as u64,
        }
    }

    /// Whether the rate depends on the steps per epoch (all but `constant` without warm-up).
    pub fn needs_steps_per_epoch(&self) -> bool {
        self.kind != LrSchedule::Constant || self.warmup_epochs > 0.0
    }

    /// base(t): the Keras-style decayed rate.
    pub fn base(&self, t: u64) -> f64 {
        self.learning_rate / (1.0 + self.lr_decay * t as f64)
    }

    /// (W, T): the warm-up steps and the total steps.
    pub fn warmup_and_total(&self, steps_per_epoch: u64) -> (u64, u64) {
        let total = self.epochs * steps_per_epoch;
        let warmup = if self.kind == LrSchedule::OneCycle && self.warmup_epochs == 0.0 {
            (3 * total + 5) / 10
        } else {
            (self.warmup_epochs * steps_per_epoch as f64).round() as u64
        };
        (warmup, total)
    }

    /// factor(t), the schedule's multiplier of base(t).
    pub fn factor(&self, t: u64, steps_per_epoch: u64) -> f64 {
        let (warmup, total) = self.warmup_and_total(steps_per_epoch);
        if t < warmup {
            return (t + 1) as f64 / warmup as f64;
        }
        let u = ((t - warmup) as f64 / total.saturating_sub(warmup).max(1) as f64).min(1.0);
        match self.kind {
            LrSchedule::Constant => 1.0,
            LrSchedule::Linear => 1.0 - u,
            LrSchedule::Cosine | LrSchedule::OneCycle => {
                0.5 * (1.0 + (std::f64::consts::PI * u).cos())
            }
        }
    }

    /// lr(t) = base(t)·factor(t); an error when the schedule needs `steps_per_epoch` and it is
    /// `None`.
    pub fn rate(&self, t: u64, steps_per_epoch: Option<u64>) -> Result<f64> {
        if !self.needs_steps_per_epoch() {
            return Ok(self.base(t));
        }
        let n = steps_per_epoch.ok_or_else(|| {
            TrainError::Invalid(format!(
                "learning-rate schedule `{}` with warmup_epochs {} needs the steps per epoch: \
                 call Optimizer::set_steps_per_epoch before stepping",
                self.kind, self.warmup_epochs
            ))
        })?;
        Ok(self.base(t) * self.factor(t, n))
    }
}

/// One update as a chain of candle ops (any device): `var` set to its new value; returns the
/// new (first, second) state, the second `None` for SGD.
fn chain_step(
    var: &Var,
    g: &Tensor,
    first: &Tensor,
    second: &Tensor,
    h: Hyper,
) -> candle_core::Result<(Tensor, Option<Tensor>)> {
    let theta = var.as_tensor();
    match h.kind {
        OptimizerKind::Adam => {
            let m = ((first * BETA1)? + (g * (1.0 - BETA1))?)?;
            let v = ((second * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let m_hat = (&m / (1.0 - BETA1.powi(h.t)))?;
            let v_hat = (&v / (1.0 - BETA2.powi(h.t)))?;
            let mut update = (m_hat / (v_hat.sqrt()? + EPS)?)?;
            if h.weight_decay > 0.0 {
                update = (update + (theta * h.weight_decay)?)?;
            }
            var.set(&(theta - (update * h.lr)?)?)?;
            Ok((m, Some(v)))
        }
        OptimizerKind::Sgd => {
            let g = if h.weight_decay > 0.0 {
                (g + (theta * h.weight_decay)?)?
            } else {
                g.clone()
            };
            let b = if h.momentum > 0.0 {
                ((first * h.momentum)? + g)?
            } else {
                g
            };
            var.set(&(theta - (&b * h.lr)?)?)?;
            Ok((b, None))
        }
    }
}

/// The settings of one update.
#[derive(Clone, Copy, Debug)]
struct Hyper {
    kind: OptimizerKind,
    lr: f64,
    /// Step number, from 1.
    t: i32,
    momentum: f64,
    weight_decay: f64,
}

/// The update on the CPU as two or three in-place passes over θ and the state, each parallel and
/// vectorised, allocating nothing. The candle chain is ~14 ops per variable, each a fresh buffer
/// and one single-threaded pass (candle's elementwise pool is off, see
/// `ferbayes_models::tune_cpu_process`): 21 ms of a 500 ms paper DenseNet step.
///
/// The state tensors are written in place, so the optimiser must own them alone: `state` hands
/// out copies and `restore` copies in.
mod fused {
    use candle_core::{CpuStorage, DType, Layout, Tensor};
    use rayon::prelude::*;

    use super::{BETA1, BETA2, EPS, Hyper, OptimizerKind};

    /// Elements per parallel piece (at least).
    pub(super) const PIECE: usize = 1 << 14;

    /// `x * c` as candle computes a tensor times a scalar (`affine(c, 0)`: `x * c + 0`, which
    /// differs from `x * c` only in turning -0 into +0).
    #[inline]
    fn scaled(x: f32, c: f32) -> f32 {
        x * c + 0.0
    }

    /// One in-place pass: the element formula and its constants, each rounded to f32 as candle's
    /// `affine` rounds them, every operation in the candle chain's order.
    #[derive(Clone, Copy, Debug)]
    enum Pass {
        /// m ← β1·m + (1 − β1)·g, over (m; g).
        AdamFirst { b: f32, c: f32 },
        /// v ← β2·v + (1 − β2)·g², over (v; g).
        AdamSecond { b: f32, c: f32 },
        /// θ ← θ − lr·(m·r1 / (√(v·r2) + ε) + wd·θ), over (θ; m, v).
        AdamTheta {
            r1: f32,
            r2: f32,
            eps: f32,
            wd: Option<f32>,
            lr: f32,
        },
        /// b ← μ·b + (g + wd·θ), or without the μ·b term (no momentum), over (b; g, θ).
        SgdBuffer {
            momentum: Option<f32>,
            wd: Option<f32>,
        },
        /// θ ← θ − lr·b, over (θ; b).
        SgdTheta { lr: f32 },
    }

    impl Pass {
        /// `dst` updated from `a` and `b` (`b` empty for the one-source passes), all the same length.
        fn run(self, dst: &mut [f32], a: &[f32], b: &[f32]) {
            match self {
                Pass::AdamFirst { b: k, c } => {
                    for (m, &g) in dst.iter_mut().zip(a) {
                        *m = scaled(*m, k) + scaled(g, c);
                    }
                }
                Pass::AdamSecond { b: k, c } => {
                    for (v, &g) in dst.iter_mut().zip(a) {
                        *v = scaled(*v, k) + scaled(g * g, c);
                    }
                }
                Pass::AdamTheta {
                    r1,
                    r2,
                    eps,
                    wd,
                    lr,
                } => {
                    for ((th, &m), &v) in dst.iter_mut().zip(a).zip(b) {
                        let mut update = scaled(m, r1) / (scaled(v, r2).sqrt() + eps);
                        if let Some(wd) = wd {
                            update += scaled(*th, wd);
                        }
                        *th -= scaled(update, lr);
                    }
                }
                Pass::SgdBuffer { momentum, wd } => {
                    for ((buf, &g), &th) in dst.iter_mut().zip(a).zip(b) {
                        let g = match wd {
                            Some(wd) => g + scaled(th, wd),
                            None => g,
                        };
                        *buf = match momentum {
                            Some(mu) => scaled(*buf, mu) + g,
                            None => g,
                        };
                    }
                }
                Pass::SgdTheta { lr } => {
                    for (th, &b) in dst.iter_mut().zip(a) {
                        *th -= scaled(b, lr);
                    }
                }
            }
        }

        /// Runs over `dst` in place, in parallel pieces.
        fn apply(self, dst: &Tensor, a: &Tensor, b: Option<&Tensor>) -> candle_core::Result<()> {
            match b {
                Some(b) => dst.inplace_op3(a, b, &self),
                None => dst.inplace_op2(a, &self),
            }
        }

        fn par_run(self, dst: &mut [f32], a: &[f32], b: &[f32]) -> candle_core::Result<()> {
            if a.len() != dst.len() || !(b.is_empty() || b.len() == dst.len()) {
                candle_core::bail!("optimizer: variable, gradient and state differ in size");
            }
            let piece = |i: usize, d: &mut [f32]| {
                let at = i * PIECE;
                let bs = if b.is_empty() {
                    b
                } else {
                    &b[at..at + d.len()]
                };
                self.run(d, &a[at..at + d.len()], bs);
            };
            if dst.len() <= PIECE {
                piece(0, dst);
            } else {
                dst.par_chunks_mut(PIECE)
                    .enumerate()
                    .for_each(|(i, d)| piece(i, d));
            }
            Ok(())
        }
    }

    /// The f32 slice a contiguous CPU layout covers.
    fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
        match (s, l.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
            _ => candle_core::bail!("optimizer: want contiguous f32 tensors"),
        }
    }

    fn f32_slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout) -> candle_core::Result<&'a mut [f32]> {
        match (s, l.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
            _ => candle_core::bail!("optimizer: want contiguous f32 tensors"),
        }
    }

    impl candle_core::InplaceOp2 for Pass {
        fn name(&self) -> &'static str {
            "ferbayes-optimizer-pass"
        }

        fn cpu_fwd(
            &self,
            s1: &mut CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> candle_core::Result<()> {
            self.par_run(f32_slice_mut(s1, l1)?, f32_slice(s2, l2)?, &[])
        }
    }

    impl candle_core::InplaceOp3 for Pass {
        fn name(&self) -> &'static str {
            "ferbayes-optimizer-pass"
        }

        fn cpu_fwd(
            &self,
            s1: &mut CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
            s3: &CpuStorage,
            l3: &Layout,
        ) -> candle_core::Result<()> {
            self.par_run(
                f32_slice_mut(s1, l1)?,
                f32_slice(s2, l2)?,
                f32_slice(s3, l3)?,
            )
        }
    }

    /// One update of `theta` from `g`, `first` and `second` (Adam: m, v; SGD: the momentum
    /// buffer, `second` unused) all written in place. False (nothing done) unless every tensor
    /// is a contiguous f32 CPU tensor.
    pub(super) fn step(
        theta: &Tensor,
        g: &Tensor,
        first: &Tensor,
        second: &Tensor,
        h: Hyper,
    ) -> candle_core::Result<bool> {
        let on_cpu =
            |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous();
        if ![theta, g, first, second].into_iter().all(on_cpu) {
            return Ok(false);
        }
        let f = |v: f64| v as f32;
        let wd = (h.weight_decay > 0.0).then(|| f(h.weight_decay));
        match h.kind {
            OptimizerKind::Adam => {
                let (b, c) = (f(BETA1), f(1.0 - BETA1));
                Pass::AdamFirst { b, c }.apply(first, g, None)?;
                let (b, c) = (f(BETA2), f(1.0 - BETA2));
                Pass::AdamSecond { b, c }.apply(second, g, None)?;
                Pass::AdamTheta {
                    r1: f(1.0 / (1.0 - BETA1.powi(h.t))),
                    r2: f(1.0 / (1.0 - BETA2.powi(h.t))),
                    eps: f(EPS),
                    wd,
                    lr: f(h.lr),
                }
                .apply(theta, first, Some(second))?;
            }
            OptimizerKind::Sgd => {
                let momentum = (h.momentum > 0.0).then(|| f(h.momentum));
                Pass::SgdBuffer { momentum, wd }.apply(first, g, Some(theta))?;
                Pass::SgdTheta { lr: f(h.lr) }.apply(theta, first, None)?;
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn settings(kind: OptimizerKind, lr_decay: f64) -> ArchTrainSettings {
        ArchTrainSettings {
            width: 1.0,
            input_size: 48,
            epochs: 1,
            optimizer: kind,
            learning_rate: 0.1,
            lr_decay,
            lr_schedule: LrSchedule::Constant,
            warmup_epochs: 0.0,
            momentum: 0.9,
            weight_decay: 0.0,
            drop_rate: 0.0,
        }
    }

    /// Two steps of θ ← θ − lr·update with the constant loss gradient 0.5 (loss = 0.5·θ).
    fn two_steps(kind: OptimizerKind, lr_decay: f64) -> Vec<f32> {
        let var = Var::new(&[1.0f32], &Device::Cpu).expect("var");
        let mut opt = Optimizer::new(vec![("w".into(), var.clone())], &settings(kind, lr_decay))
            .expect("optimizer");
        let mut out = Vec::new();
        for _ in 0..2 {
            let loss = (var.as_tensor() * 0.5)
                .expect("mul")
                .sum_all()
                .expect("sum");
            let grads = loss.backward().expect("backward");
            opt.step(&grads).expect("step");
            out.push(var.as_tensor().to_vec1::<f32>().expect("values")[0]);
        }
        out
    }

    /// Deterministic values in [-1, 1) with exact zeros of both signs among them.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                match i % 97 {
                    0 => 0.0,
                    1 => -0.0,
                    _ => (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0,
                }
            })
            .collect()
    }

    /// Panics naming the first element where `a` and `b` differ in any bit.
    fn same_bits(a: &Tensor, b: &Tensor, what: &str) {
        let v = |t: &Tensor| {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("values")
        };
        let (a, b) = (v(a), v(b));
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let diff = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count();
        if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
            panic!(
                "{what}: {diff} elements differ, first at {i}: {:e} vs {:e}",
                a[i], b[i]
            );
        }
    }

    /// The fused CPU update gives the same bits as the candle chain (the path other devices
    /// take), step after step, for Adam and SGD with and without momentum and weight decay,
    /// on more elements than one parallel piece.
    #[test]
    fn fused_update_equals_the_candle_chain_bit_for_bit() {
        let cases = [
            (OptimizerKind::Adam, 0.0, 0.0),
            (OptimizerKind::Adam, 0.0, 0.01),
            (OptimizerKind::Sgd, 0.9, 0.0),
            (OptimizerKind::Sgd, 0.9, 5e-4),
            (OptimizerKind::Sgd, 0.0, 0.0),
        ];
        let n = 3 * fused::PIECE + 123;
        let dev = Device::Cpu;
        for (kind, momentum, weight_decay) in cases {
            let theta0 = values(n, 1);
            let fused_var = Var::from_vec(theta0.clone(), (n / 3, 3), &dev).expect("var");
            let chain_var = Var::from_vec(theta0, (n / 3, 3), &dev).expect("var");
            let zeros = || Tensor::zeros((n / 3, 3), candle_core::DType::F32, &dev).expect("zeros");
            let (fm, fv, mut cm, mut cv) = (zeros(), zeros(), zeros(), zeros());
            for t in 1..=3 {
                let g = Tensor::from_vec(values(n, 10 + t as u64), (n / 3, 3), &dev).expect("g");
                let h = Hyper {
                    kind,
                    lr: 0.01 / (1.0 + 0.1 * f64::from(t)),
                    t,
                    momentum,
                    weight_decay,
                };
                let done = fused::step(fused_var.as_tensor(), &g, &fm, &fv, h).expect("fused step");
                assert!(done, "the cpu path applies");
                let (m, v) = chain_step(&chain_var, &g, &cm, &cv, h).expect("chain step");
                let what = format!("{kind:?} momentum {momentum} wd {weight_decay} step {t}");
                same_bits(
                    fused_var.as_tensor(),
                    chain_var.as_tensor(),
                    &format!("θ, {what}"),
                );
                same_bits(&fm, &m, &format!("first moment, {what}"));
                assert_eq!(v.is_some(), kind == OptimizerKind::Adam, "{what}");
                if let Some(v) = v {
                    same_bits(&fv, &v, &format!("second moment, {what}"));
                    cv = v;
                }
                cm = m;
            }
        }
    }

    /// `state` hands out copies: the in-place CPU update does not change a saved state, and
    /// `restore` followed by the same steps gives the same bits as an uninterrupted run.
    #[test]
    fn saved_state_is_a_copy_and_restores_bit_for_bit() {
        let dev = Device::Cpu;
        let n = 1000;
        let run = |steps: usize, restore: Option<(&HashMap<String, Tensor>, &[f32], u64)>| {
            let theta = restore.map_or_else(|| values(n, 3), |(_, th, _)| th.to_vec());
            let var = Var::from_vec(theta, n, &dev).expect("var");
            let mut opt = Optimizer::new(
                vec![("w".into(), var.clone())],
                &settings(OptimizerKind::Adam, 0.0),
            )
            .expect("optimizer");
            if let Some((state, _, step)) = restore {
                opt.restore(state, step).expect("restore");
            }
            let mut saved = None;
            for k in 0..steps {
                let g = Tensor::from_vec(values(n, 20 + opt.step), n, &dev).expect("g");
                let loss = (var.as_tensor() * &g).expect("mul").sum_all().expect("sum");
                opt.step(&loss.backward().expect("backward")).expect("step");
                if k == 0 {
                    let th = var.as_tensor().to_vec1::<f32>().expect("θ");
                    saved = Some((opt.state().expect("state"), th, opt.step));
                }
            }
            (
                var.as_tensor().to_vec1::<f32>().expect("θ"),
                saved.expect("saved"),
            )
        };
        let (straight, (state, theta1, step1)) = run(3, None);
        let before = state["opt.m.w"].to_vec1::<f32>().expect("m");
        // Two more steps after the save left the saved state alone.
        let m_after_one = {
            let (_, (s, _, _)) = run(1, None);
            s["opt.m.w"].to_vec1::<f32>().expect("m")
        };
        assert_eq!(
            before, m_after_one,
            "the saved state changed after later steps"
        );
        let (resumed, _) = run(2, Some((&state, &theta1, step1)));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&straight), bits(&resumed));
    }

    #[test]
    fn adam_matches_hand_computed_steps() {
        // Step 1: m = 0.05, v = 0.00025, m̂ = 0.5, v̂ = 0.25 → θ = 1 − 0.1·0.5/(0.5 + 1e-7).
        // Step 2: m = 0.095, v = 0.00049975, m̂ = 0.095/0.19 = 0.5, v̂ = 0.00049975/0.001999 = 0.25.
        let step = 0.1 * 0.5 / (0.5 + 1e-7);
        let want = [1.0 - step, 1.0 - 2.0 * step];
        let got = two_steps(OptimizerKind::Adam, 0.0);
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn sgd_momentum_and_decay_match_hand_computed_steps() {
        // b1 = 0.5 → θ = 1 − 0.1·0.5 = 0.95; b2 = 0.9·0.5 + 0.5 = 0.95 → θ = 0.95 − 0.095 = 0.855.
        let got = two_steps(OptimizerKind::Sgd, 0.0);
        assert!(
            (got[0] - 0.95).abs() < 1e-6 && (got[1] - 0.855).abs() < 1e-6,
            "{got:?}"
        );
        // decay 1.0: lr_0 = 0.1, lr_1 = 0.1/2 → θ = 0.95, then 0.95 − 0.05·0.95 = 0.9025.
        let got = two_steps(OptimizerKind::Sgd, 1.0);
        assert!(
            (got[0] - 0.95).abs() < 1e-6 && (got[1] - 0.9025).abs() < 1e-6,
            "{got:?}"
        );
    }

    /// Settings of a schedule test (Adam, so momentum plays no part).
    fn schedule_settings(
        kind: LrSchedule,
        learning_rate: f64,
        lr_decay: f64,
        epochs: usize,
        warmup_epochs: f64,
    ) -> ArchTrainSettings {
        ArchTrainSettings {
            epochs,
            learning_rate,
            lr_schedule: kind,
            warmup_epochs,
            ..settings(OptimizerKind::Adam, lr_decay)
        }
    }

    /// A one-weight optimiser and its weight.
    fn one_weight(s: &ArchTrainSettings) -> (Optimizer, Var) {
        let var = Var::new(&[1.0f32], &Device::Cpu).expect("var");
        let opt = Optimizer::new(vec![("w".into(), var.clone())], s).expect("optimizer");
        (opt, var)
    }

    /// One step with the gradient `g` of the loss g·w.
    fn step_with(opt: &mut Optimizer, var: &Var, g: f32) -> Result<()> {
        let loss = (var.as_tensor() * f64::from(g))
            .expect("mul")
            .sum_all()
            .expect("sum");
        opt.step(&loss.backward().expect("backward"))
    }

    /// (schedule, learning_rate, lr_decay, epochs, warmup_epochs, steps_per_epoch,
    /// [(t, lr(t))]), printed by `schedule_reference.py` (run it to regenerate).
    #[allow(clippy::type_complexity)]
    const REFERENCE: &[(LrSchedule, f64, f64, usize, f64, u64, &[(u64, f64)])] = &[
        (
            LrSchedule::Constant,
            0.1,
            0.0,
            2,
            0.0,
            5,
            &[(0, 0.1), (5, 0.1), (9, 0.1)],
        ),
        (
            LrSchedule::Constant,
            0.1,
            0.0,
            2,
            0.5,
            5,
            &[
                (0, 0.03333333333333333),
                (1, 0.06666666666666667),
                (2, 0.1),
                (3, 0.1),
                (9, 0.1),
            ],
        ),
        (
            LrSchedule::Linear,
            0.1,
            0.0,
            2,
            0.0,
            5,
            &[
                (0, 0.1),
                (1, 0.09000000000000001),
                (5, 0.05),
                (9, 0.009999999999999998),
                (10, 0.0),
                (12, 0.0),
            ],
        ),
        (
            LrSchedule::Linear,
            0.1,
            0.0,
            2,
            0.4,
            5,
            &[(0, 0.05), (1, 0.1), (2, 0.1), (6, 0.05), (9, 0.0125)],
        ),
        (
            LrSchedule::Cosine,
            0.1,
            0.0,
            2,
            0.0,
            5,
            &[
                (0, 0.1),
                (1, 0.09755282581475769),
                (5, 0.05),
                (9, 0.0024471741852423235),
                (10, 0.0),
            ],
        ),
        (
            LrSchedule::Cosine,
            0.1,
            0.0,
            2,
            0.4,
            5,
            &[
                (0, 0.05),
                (1, 0.1),
                (2, 0.1),
                (6, 0.05),
                (9, 0.0038060233744356634),
            ],
        ),
        (
            LrSchedule::OneCycle,
            0.1,
            0.0,
            2,
            0.0,
            5,
            &[
                (0, 0.03333333333333333),
                (1, 0.06666666666666667),
                (2, 0.1),
                (3, 0.1),
                (6, 0.06112604669781572),
                (9, 0.004951556604879049),
            ],
        ),
        (
            LrSchedule::OneCycle,
            0.1,
            0.0,
            1,
            0.0,
            5,
            &[(0, 0.05), (1, 0.1), (2, 0.1), (4, 0.025000000000000012)],
        ),
        (
            LrSchedule::OneCycle,
            0.1,
            0.0,
            2,
            1.0,
            5,
            &[
                (0, 0.020000000000000004),
                (4, 0.1),
                (5, 0.1),
                (9, 0.009549150281252633),
            ],
        ),
        (
            LrSchedule::Linear,
            0.1,
            0.1,
            2,
            0.0,
            5,
            &[
                (0, 0.1),
                (1, 0.08181818181818182),
                (5, 0.03333333333333333),
                (9, 0.005263157894736841),
            ],
        ),
        (
            LrSchedule::Cosine,
            0.01,
            0.0001,
            3,
            0.5,
            4,
            &[
                (0, 0.005),
                (1, 0.009999000099990002),
                (2, 0.009998000399920017),
                (7, 0.0049965024482862),
                (11, 0.0002444485251465711),
            ],
        ),
    ];

    /// Every schedule, with and without warm-up (and once with lr_decay > 0), against the
    /// independent values of `schedule_reference.py`, both through [`Schedule::rate`] and
    /// through an optimiser actually stepped to t.
    #[test]
    fn schedules_match_reference_values() {
        for &(kind, rate, decay, epochs, warmup, spe, want) in REFERENCE {
            let s = schedule_settings(kind, rate, decay, epochs, warmup);
            let schedule = Schedule::new(&s);
            let (mut opt, var) = one_weight(&s);
            opt.set_steps_per_epoch(spe);
            for &(t, lr) in want {
                let what = format!(
                    "{kind} lr {rate} decay {decay} epochs {epochs} warmup {warmup} spe {spe} t {t}"
                );
                let got = schedule.rate(t, Some(spe)).expect("rate");
                assert!(
                    (got - lr).abs() <= 1e-15 * lr.abs().max(1e-300) || got == lr,
                    "{what}: {got:e} vs {lr:e}"
                );
                while opt.step < t {
                    step_with(&mut opt, &var, 0.5).expect("step");
                }
                assert_eq!(opt.learning_rate().to_bits(), got.to_bits(), "{what}");
            }
        }
    }

    /// The hand-countable facts of the definitions: the warm-up ends at the full rate at step
    /// W − 1, the annealing schedules end at zero at T, and onecycle's default warm-up is
    /// round(0.3·T) with halves up.
    #[test]
    fn schedule_shapes_by_hand() {
        let s = |kind, warmup| Schedule::new(&schedule_settings(kind, 1.0, 0.0, 2, warmup));
        // T = 2·10 = 20; warm-up 0.25 epoch → W = round(2.5) = 3.
        assert_eq!(s(LrSchedule::Linear, 0.25).warmup_and_total(10), (3, 20));
        assert_eq!(s(LrSchedule::Linear, 0.25).factor(2, 10), 1.0);
        assert_eq!(s(LrSchedule::Linear, 0.25).factor(0, 10), 1.0 / 3.0);
        // Linear after W = 3: u = (t − 3)/17.
        assert_eq!(s(LrSchedule::Linear, 0.25).factor(20, 10), 0.0);
        assert_eq!(s(LrSchedule::Cosine, 0.0).factor(20, 10), 0.0);
        assert_eq!(s(LrSchedule::Cosine, 0.0).factor(10, 10), 0.5);
        assert_eq!(s(LrSchedule::Constant, 0.0).factor(25, 10), 1.0);
        // onecycle: W = round(0.3·T), halves up: T = 5 → 2, T = 20 → 6, T = 15 → 5 (4.5).
        let one = |epochs: usize, spe| {
            Schedule::new(&schedule_settings(
                LrSchedule::OneCycle,
                1.0,
                0.0,
                epochs,
                0.0,
            ))
            .warmup_and_total(spe)
        };
        assert_eq!(one(1, 5), (2, 5));
        assert_eq!(one(2, 10), (6, 20));
        assert_eq!(one(3, 5), (5, 15));
        assert_eq!(one(1, 1), (0, 1));
        // An explicit warm-up replaces onecycle's default.
        let explicit = Schedule::new(&schedule_settings(LrSchedule::OneCycle, 1.0, 0.0, 2, 0.5));
        assert_eq!(explicit.warmup_and_total(10), (5, 20));
    }

    /// The constant schedule without warm-up is Keras' time-based decay to the bit, and needs
    /// no steps per epoch.
    #[test]
    fn constant_schedule_is_the_keras_decay_bit_for_bit() {
        let s = schedule_settings(LrSchedule::Constant, 1e-2, 1e-4, 3, 0.0);
        let (mut opt, var) = one_weight(&s);
        for t in 0..50u64 {
            let old = 1e-2 / (1.0 + 1e-4 * t as f64);
            assert_eq!(opt.learning_rate().to_bits(), old.to_bits(), "t {t}");
            step_with(&mut opt, &var, 0.5).expect("constant needs no steps per epoch");
        }
    }

    /// A schedule that depends on the budget refuses to step until it knows the steps per
    /// epoch, naming the call; nothing is updated.
    #[test]
    fn schedule_without_steps_per_epoch_is_an_error() {
        let cases = [
            (LrSchedule::Linear, 0.0),
            (LrSchedule::Cosine, 0.0),
            (LrSchedule::OneCycle, 0.0),
            (LrSchedule::Constant, 0.5),
        ];
        for (kind, warmup) in cases {
            let s = schedule_settings(kind, 0.1, 0.0, 2, warmup);
            let (mut opt, var) = one_weight(&s);
            let err = step_with(&mut opt, &var, 0.5)
                .expect_err("unset steps per epoch")
                .to_string();
            assert!(
                err.contains("set_steps_per_epoch") && err.contains(kind.as_str()),
                "{kind}: {err}"
            );
            assert_eq!(opt.step, 0, "{kind}: counted a refused step");
            assert!(opt.learning_rate().is_nan(), "{kind}");
            let w = var.as_tensor().to_vec1::<f32>().expect("w")[0];
            assert_eq!(w, 1.0, "{kind}: the weight moved");
            opt.set_steps_per_epoch(5);
            step_with(&mut opt, &var, 0.5).expect("steps once set");
        }
    }

    /// After `restore(state, k)` the learning rates (and weights) continue exactly as an
    /// uninterrupted optimiser's, for every schedule, across the warm-up's end and the budget's
    /// end.
    #[test]
    fn restored_optimizer_continues_the_schedule_bit_for_bit() {
        let spe = 7;
        for kind in LrSchedule::ALL {
            let s = schedule_settings(kind, 3e-3, 1e-3, 3, 0.5);
            let total = 3 * spe + 2;
            // Uninterrupted: the rate before every step, the state after step k.
            let (mut straight, var) = one_weight(&s);
            straight.set_steps_per_epoch(spe);
            let mut rates = Vec::new();
            let mut saved = None;
            for t in 0..total {
                rates.push(straight.learning_rate().to_bits());
                step_with(&mut straight, &var, 0.5 - 0.03 * t as f32).expect("step");
                if t + 1 == 3 {
                    let w = var.as_tensor().to_vec1::<f32>().expect("w")[0];
                    saved = Some((straight.state().expect("state"), straight.step, w));
                }
            }
            let end = var.as_tensor().to_vec1::<f32>().expect("w")[0];
            // Resumed: a fresh optimiser restored at step 3, inside the warm-up (W = round(3.5) = 4).
            let (state, k, w) = saved.expect("saved");
            let (mut resumed, var) = one_weight(&s);
            var.set(&Tensor::new(&[w], &Device::Cpu).expect("w"))
                .expect("set");
            resumed.restore(&state, k).expect("restore");
            resumed.set_steps_per_epoch(spe);
            for t in k..total {
                assert_eq!(
                    resumed.learning_rate().to_bits(),
                    rates[t as usize],
                    "{kind}: rate of step {t}"
                );
                step_with(&mut resumed, &var, 0.5 - 0.03 * t as f32).expect("step");
            }
            let resumed_end = var.as_tensor().to_vec1::<f32>().expect("w")[0];
            assert_eq!(resumed_end.to_bits(), end.to_bits(), "{kind}: final weight");
        }
    }

    /// `steps_per_epoch` counts the chunks the train loop steps: every chunk of `batch_size`
    /// faces but a trailing (or only) chunk of fewer than 2.
    #[test]
    fn steps_per_epoch_counts_the_stepped_batches() {
        assert_eq!(steps_per_epoch(10, 3), 3); // 3 3 3 | 1 skipped
        assert_eq!(steps_per_epoch(11, 3), 4); // 3 3 3 2
        assert_eq!(steps_per_epoch(33, 32), 1); // 32 | 1 skipped
        assert_eq!(steps_per_epoch(34, 32), 2);
        assert_eq!(steps_per_epoch(1, 32), 0);
        assert_eq!(steps_per_epoch(5, 1), 0);
        assert_eq!(steps_per_epoch(0, 32), 0);
        assert_eq!(steps_per_epoch(25_045, 32), 783); // 782 full + 21
        for faces in 0..70 {
            for batch_size in 1..12 {
                let order: Vec<usize> = (0..faces).collect();
                let stepped = order.chunks(batch_size).filter(|b| b.len() >= 2).count();
                assert_eq!(
                    steps_per_epoch(faces, batch_size),
                    stepped as u64,
                    "{faces} faces, batch {batch_size}"
                );
            }
        }
    }
}
