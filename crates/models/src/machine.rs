//! The machine a stage running networks records in its manifest: `core`'s description of the
//! CPU plus what only this side knows (the device, the kernels' SIMD paths, the pool's threads).

use candle_core::{Device, DeviceLocation};
use ferbayes_core::machine::Machine;
use ferbayes_kernels::Backend;

/// [`Machine::detect`] with the device, the thread count of the rayon pool the caller runs on
/// and the kernels `backend` runs: on the CPU their SIMD paths (`ferbayes_kernels::simd_paths`),
/// on a GPU the device ops' libraries and algorithms (`ferbayes_kernels::device::gpu_kernels`).
pub fn machine(device: &Device, backend: Backend) -> Machine {
    let mut m = Machine::detect();
    m.threads = rayon::current_num_threads();
    m.device = match device.location() {
        DeviceLocation::Cpu => "cpu".to_owned(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    };
    m.kernels = if device.is_cpu() {
        ferbayes_kernels::simd_paths(backend).into_iter().collect()
    } else {
        // On a GPU: the backend and, for the device ops, what they run on (the cuDNN version,
        // the convolution algorithms, whether TF32 is allowed).
        let mut k = vec![("backend".to_owned(), format!("{backend} on {}", m.device))];
        if backend == Backend::Device
            && let Some(gpu) = ferbayes_kernels::device::gpu_kernels()
        {
            k.push(("gpu".to_owned(), gpu));
        }
        k.into_iter().collect()
    };
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_machine_names_its_kernels_and_pool() {
        let m = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool")
            .install(|| machine(&Device::Cpu, Backend::Winograd));
        assert_eq!(m.threads, 3);
        assert_eq!(m.device, "cpu");
        assert_eq!(m.kernels["backend"], "winograd");
        assert!(m.kernels.contains_key("gemm") && m.kernels.contains_key("pool, batchnorm"));
        assert!(m.summary().contains("gemm: f32"), "{}", m.summary());
    }
}
