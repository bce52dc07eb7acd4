//! Choosing the compute device by name.

use candle_core::Device;

use crate::error::{Error, Result};

/// `cpu`, or `cuda` (the first GPU; needs a build with the `cuda` feature).
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            #[cfg(feature = "cuda")]
            {
                Ok(Device::new_cuda(0)?)
            }
            #[cfg(not(feature = "cuda"))]
            {
                Err(Error::Config(
                    "--device cuda needs a build with `--features cuda`".into(),
                ))
            }
        }
        other => Err(Error::Config(format!(
            "unknown device `{other}` (expected cpu or cuda)"
        ))),
    }
}
