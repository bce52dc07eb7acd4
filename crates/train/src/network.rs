//! [`Network`]: a seeded network (or a pack of them) with its optimiser.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use ferbayes_core::{Arch, ArchTrainSettings, Method};
use ferbayes_models::{Backend, Model, ModelConfig, VarRole};

use crate::error::{Result, TrainError};
use crate::optim::Optimizer;

/// A freshly initialised network of one architecture × method at the settings' size,
/// with the optimiser over its trainable variables: what the train stage trains (and
/// the train bench measures).
pub struct Network {
    /// The network's configuration (also what builds it again from saved weights).
    pub config: ModelConfig,
    pub model: Model,
    /// Every variable, BatchNorm running stats included, sorted by name: the tensors
    /// of a weights file.
    pub named_vars: Vec<(String, Var)>,
    pub optimizer: Optimizer,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("config", &self.config)
            .field("variables", &self.named_vars.len())
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Builds the network and draws its weights from `seed`.
    pub fn new(
        arch: Arch,
        method: Method,
        s: &ArchTrainSettings,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        Self::packed(arch, method, s, device, &[seed])
    }

    /// `seeds.len()` networks packed into one (`Model::packed`), member g drawing its weights
    /// from `seeds[g]` exactly as [`Network::new`] would, with one optimiser over the packed
    /// variables (every update is elementwise, so each member's is its own), on the default
    /// kernels ([`Backend::default`]; [`Network::packed_on`] takes them).
    pub fn packed(
        arch: Arch,
        method: Method,
        s: &ArchTrainSettings,
        device: &Device,
        seeds: &[u64],
    ) -> Result<Self> {
        Self::packed_on(arch, method, s, device, seeds, Backend::default())
    }

    /// [`Network::packed`] on the kernels of `kernels`.
    pub fn packed_on(
        arch: Arch,
        method: Method,
        s: &ArchTrainSettings,
        device: &Device,
        seeds: &[u64],
        kernels: Backend,
    ) -> Result<Self> {
        let mut config = ModelConfig::new(arch, method, s.width, s.input_size);
        config.drop_rate = s.drop_rate;
        let varmap = VarMap::new();
        let model = Model::packed(
            &config,
            kernels,
            seeds.len(),
            VarBuilder::from_varmap(&varmap, DType::F32, device),
        )?;
        ferbayes_models::init_packed(&varmap, seeds)?;
        let named_vars = ferbayes_models::sorted_vars(&varmap);
        let trainable: Vec<_> = named_vars
            .iter()
            .filter(|(name, var)| VarRole::of(name, var.rank()).is_trainable())
            .cloned()
            .collect();
        let optimizer = Optimizer::new(trainable, s)?;
        Ok(Self {
            config,
            model,
            named_vars,
            optimizer,
        })
    }

    /// Networks packed into this one.
    pub fn members(&self) -> usize {
        self.model.members()
    }

    /// Member g's weights (every variable, under the single network's names).
    pub fn member_weights(&self, g: usize) -> Result<HashMap<String, Tensor>> {
        let all: Vec<(String, Tensor)> = self
            .named_vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        Ok(ferbayes_models::unpack_member(
            all.iter().map(|(n, t)| (n, t)),
            self.members(),
            g,
        )?)
    }

    /// Member g's optimiser state (the names [`Optimizer::state`] gives).
    pub fn member_state(&self, g: usize) -> Result<HashMap<String, Tensor>> {
        Ok(self.member_states()?.swap_remove(g))
    }

    /// Every member's optimiser state, in pack order, from one copy of the packed state.
    pub fn member_states(&self) -> Result<Vec<HashMap<String, Tensor>>> {
        let state = self.optimizer.state()?;
        (0..self.members())
            .map(|g| Ok(ferbayes_models::unpack_member(&state, self.members(), g)?))
            .collect()
    }

    /// Restores every member's weights and optimiser state from their checkpoints' tensors
    /// (one map per member, in pack order) and the step count they share.
    pub(crate) fn restore(
        &mut self,
        members: &[&HashMap<String, Tensor>],
        step: u64,
        at: &Path,
    ) -> Result<()> {
        let owned: Vec<HashMap<String, Tensor>> = members.iter().map(|m| (*m).clone()).collect();
        let packed = ferbayes_models::pack_members(&owned).map_err(|e| TrainError::Checkpoint {
            path: at.to_owned(),
            message: e.to_string(),
        })?;
        for (name, var) in &self.named_vars {
            let t = packed.get(name).ok_or_else(|| TrainError::Checkpoint {
                path: at.to_owned(),
                message: format!("lacks weight `{name}`"),
            })?;
            var.set(t)?;
        }
        self.optimizer.restore(&packed, step)
    }
}
