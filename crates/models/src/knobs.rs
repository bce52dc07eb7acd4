//! The kernel knobs a binary read once (`ferbayes_core::cli::KernelArgs`: flags with their
//! `FER_*` fallbacks), turned into what the kernels take: the [`Backend`] a model carries, and
//! the two process-wide settings deep in the kernels' loops, installed here.

use candle_core::Device;
use ferbayes_core::cli::{KernelArgs, KernelChoice, SimdChoice};
use ferbayes_kernels::{Backend, SimdLevel};

/// Installs the process-wide knobs of `args` (the SIMD level of the kernels' hand-vectorised
/// loops, TF32 for cuDNN's convolutions) and returns the backend the networks run on for
/// `device` (`--kernels`, else the device's default, [`Backend::for_device`], as the
/// environment fallbacks leave it). What a binary (or bench) calls once, before any network
/// runs; the manifests then record what ran ([`crate::machine`]).
pub fn install_kernels(args: &KernelArgs, device: &Device) -> Backend {
    ferbayes_kernels::set_simd_level(match args.simd() {
        SimdChoice::Auto => SimdLevel::Auto,
        SimdChoice::Scalar => SimdLevel::Scalar,
    });
    ferbayes_kernels::device::set_tf32(args.tf32());
    backend_of(args.kernels_or(choice_of(Backend::for_device(device))))
}

/// The backend of a kernel choice (the same names).
pub fn backend_of(choice: KernelChoice) -> Backend {
    match choice {
        KernelChoice::Reference => Backend::Reference,
        KernelChoice::Im2col => Backend::Im2col,
        KernelChoice::Winograd => Backend::Winograd,
        KernelChoice::Device => Backend::Device,
    }
}

/// The kernel choice of a backend.
fn choice_of(backend: Backend) -> KernelChoice {
    match backend {
        Backend::Reference => KernelChoice::Reference,
        Backend::Im2col => KernelChoice::Im2col,
        Backend::Winograd => KernelChoice::Winograd,
        Backend::Device => KernelChoice::Device,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferbayes_core::ComputeDevice;

    #[test]
    fn the_choices_are_the_backends_by_name_and_the_cpu_default_agrees_with_core() {
        for b in [
            Backend::Reference,
            Backend::Im2col,
            Backend::Winograd,
            Backend::Device,
        ] {
            assert_eq!(choice_of(b).as_str(), b.name());
            assert_eq!(backend_of(choice_of(b)), b);
        }
        assert_eq!(
            choice_of(Backend::for_device(&Device::Cpu)),
            KernelChoice::default_for(ComputeDevice::Cpu)
        );
    }

    /// A flag beats the environment (this test sets no variable: it holds whatever the
    /// environment says).
    #[test]
    fn the_kernels_flag_picks_the_backend() {
        for choice in [KernelChoice::Reference, KernelChoice::Im2col] {
            let args = KernelArgs {
                kernels: Some(choice),
                ..KernelArgs::default()
            };
            assert_eq!(args.kernels_or(KernelChoice::Winograd), choice);
            assert_eq!(
                backend_of(args.kernels_or(KernelChoice::Winograd)).name(),
                choice.as_str()
            );
        }
    }
}
