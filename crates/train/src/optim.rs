//! Adam and SGD with momentum, with state that can be saved and restored bit for bit (needed to
//! resume a killed run and end with the weights of an uninterrupted one).
//!
//! - Adam (Kingma & Ba 2015): m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g²,
//!   θ ← θ − lr·(m̂/(√v̂ + ε) + wd·θ) with bias-corrected m̂, v̂ (β1 0.9, β2 0.999, ε 1e-7 as
//!   Keras, which the study used).
//! - SGD (PyTorch convention): b ← μ·b + g (+ wd·θ in g), θ ← θ − lr·b.
//! - The learning rate decays per step as Keras' `decay`: lr_t = lr / (1 + decay·t).

use std::collections::HashMap;

use candle_core::{Tensor, Var, backprop::GradStore};
use ferbayes_core::{ArchTrainSettings, OptimizerKind};

use crate::error::Result;

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
    lr: f64,
    lr_decay: f64,
    momentum: f64,
    weight_decay: f64,
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
            lr: s.learning_rate,
            lr_decay: s.lr_decay,
            momentum: s.momentum,
            weight_decay: s.weight_decay,
        })
    }

    /// The learning rate of the next step.
    pub fn learning_rate(&self) -> f64 {
        self.lr / (1.0 + self.lr_decay * self.step as f64)
    }

    /// One update from the gradients of a backward pass.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let lr = self.learning_rate();
        self.step += 1;
        let t = self.step as i32;
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let theta = var.as_tensor();
            match self.kind {
                OptimizerKind::Adam => {
                    let m = ((&self.first[i] * BETA1)? + (g * (1.0 - BETA1))?)?;
                    let v = ((&self.second[i] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
                    let m_hat = (&m / (1.0 - BETA1.powi(t)))?;
                    let v_hat = (&v / (1.0 - BETA2.powi(t)))?;
                    let mut update = (m_hat / (v_hat.sqrt()? + EPS)?)?;
                    if self.weight_decay > 0.0 {
                        update = (update + (theta * self.weight_decay)?)?;
                    }
                    var.set(&(theta - (update * lr)?)?)?;
                    self.first[i] = m;
                    self.second[i] = v;
                }
                OptimizerKind::Sgd => {
                    let g = if self.weight_decay > 0.0 {
                        (g + (theta * self.weight_decay)?)?
                    } else {
                        g.clone()
                    };
                    let b = if self.momentum > 0.0 {
                        ((&self.first[i] * self.momentum)? + g)?
                    } else {
                        g
                    };
                    var.set(&(theta - (&b * lr)?)?)?;
                    self.first[i] = b;
                }
            }
        }
        Ok(())
    }

    /// The state as named tensors (`opt.m.<var>`, `opt.v.<var>`), for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("opt.m.{name}"), self.first[i].clone());
            if self.kind == OptimizerKind::Adam {
                out.insert(format!("opt.v.{name}"), self.second[i].clone());
            }
        }
        out
    }

    /// Restores the state saved by [`Optimizer::state`] and the step count.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            let get = |key: String| {
                tensors.get(&key).cloned().ok_or_else(|| {
                    crate::error::TrainError::Invalid(format!("checkpoint lacks `{key}`"))
                })
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
}
