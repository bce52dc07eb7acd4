//! Test and bench helpers (feature `testing`; not a stable API).

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use ferbayes_core::{Arch, Layout, Method, Settings};

use crate::{Model, ModelConfig, Result};

/// Writes weights drawn from fixed seeds (member m from seed m) for every member of
/// `arch`/`method` at the sizes of `settings`, where the train stage would put them, so that
/// [`crate::Predictor::load`] works without training (speed and plumbing do not depend on the
/// weights' values).
pub fn write_seeded_weights(
    layout: &Layout,
    settings: &Settings,
    arch: Arch,
    method: Method,
) -> Result<()> {
    let a = settings.train.arch(arch);
    for m in 0..ferbayes_core::plan::members(settings, method) {
        let varmap = VarMap::new();
        let mut cfg = ModelConfig::new(arch, method, a.width, a.input_size);
        cfg.drop_rate = a.drop_rate;
        Model::new(
            &cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )?;
        crate::init_seeded(&varmap, m as u64)?;
        let path = layout.member_weights(arch, method, m);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ferbayes_core::Error::io(dir, e))?;
        }
        varmap.save(&path)?;
    }
    Ok(())
}
