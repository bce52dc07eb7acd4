//! Which machine made an artifact: the CPU, the SIMD paths the kernels chose, the thread counts
//! and the device, recorded in every manifest ([`Manifest::machine`](crate::manifest::Manifest)).
//!
//! Training is bit for bit deterministic on one machine; across machines only as far as their
//! arithmetic agrees (FMA or not, ARM, glibc's maths, GPU; see docs/results.md), so the
//! manifest says where it was made. This is provenance, not part of a stage's key: the key says
//! what the outputs are meant to be (settings and inputs), and a rerun on another machine is
//! not stale.
//!
//! [`Machine::detect`] fills what any process can see (CPU model, SIMD extensions, caches,
//! cores, thread settings); the stages that run networks add the device and the kernels' choices
//! (`ferbayes_models::machine`), since this crate does not link candle or the kernels.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The CPU flags that change which code the kernels (gemm, pulp) or glibc's maths run, as
/// `/proc/cpuinfo` spells them.
const SIMD_FLAGS: &[&str] = &[
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "asimd",
    "sve",
];

/// The machine and process settings a stage ran with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Machine {
    /// CPU model (`/proc/cpuinfo`'s `model name`), e.g. `AMD EPYC 7B13`.
    pub cpu: String,
    /// Instruction set: `x86_64`, `aarch64`.
    pub arch: String,
    /// Those of the CPU's SIMD extensions that can change which kernels run.
    pub simd: Vec<String>,
    /// The data caches per core as the Linux kernel reports them (gemm sizes its blocks from
    /// these), e.g. `L1d 32K 8-way`.
    pub caches: Vec<String>,
    /// Logical cores this process may run on.
    pub logical_cores: usize,
    /// Threads of the rayon pool the stage computed on.
    pub threads: usize,
    /// `CANDLE_NUM_THREADS` as the process saw it (`unset` when not set).
    pub candle_threads: String,
    /// `cpu`, `cuda:0`, ...
    pub device: String,
    /// Kernel family → what it ran on (e.g. `gemm` → `f32 AVX2+FMA microkernels`); empty for
    /// stages that run no network kernels.
    pub kernels: BTreeMap<String, String>,
}

impl Machine {
    /// What this process can see of its machine: CPU, SIMD extensions, caches, cores and the
    /// thread settings (`RAYON_NUM_THREADS`, else one per core, as rayon's pool); device `cpu`
    /// and no kernels, which the stages running networks fill in.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(cores);
        Machine {
            cpu: cpu_model(&cpuinfo),
            arch: std::env::consts::ARCH.to_owned(),
            simd: simd_flags(&cpuinfo),
            caches: caches(),
            logical_cores: cores,
            threads,
            candle_threads: std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "unset".into()),
            device: "cpu".to_owned(),
            kernels: BTreeMap::new(),
        }
    }

    /// Whether anything is recorded (manifests written before machines were recorded have
    /// none).
    pub fn is_known(&self) -> bool {
        !self.cpu.is_empty() || !self.arch.is_empty()
    }

    /// One line: `AMD EPYC (x86_64: avx avx2 fma; L1d 32K 8-way, ...), 2 logical cores,
    /// 2 threads (candle 1), device cpu; kernels: backend winograd, gemm ...`.
    pub fn summary(&self) -> String {
        if !self.is_known() {
            return "not recorded".to_owned();
        }
        let mut cpu = format!("{} ({}", self.cpu, self.arch);
        if !self.simd.is_empty() {
            cpu.push_str(&format!(": {}", self.simd.join(" ")));
        }
        if !self.caches.is_empty() {
            cpu.push_str(&format!("; {}", self.caches.join(", ")));
        }
        cpu.push(')');
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let mut line = format!(
            "{cpu}, {} logical core{}, {} thread{} (candle {}), device {}",
            self.logical_cores,
            plural(self.logical_cores),
            self.threads,
            plural(self.threads),
            self.candle_threads,
            self.device
        );
        if !self.kernels.is_empty() {
            let kernels: Vec<String> = self
                .kernels
                .iter()
                .map(|(family, path)| format!("{family}: {path}"))
                .collect();
            line.push_str(&format!("; kernels: {}", kernels.join("; ")));
        }
        line
    }
}

/// `model name` of the first processor (x86), else `Hardware` / `CPU part` (ARM), else `unknown`.
fn cpu_model(cpuinfo: &str) -> String {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == name && !value.trim().is_empty()).then(|| value.trim().to_owned())
        })
    };
    field("model name")
        .or_else(|| field("Hardware"))
        .or_else(|| field("CPU part").map(|p| format!("CPU part {p}")))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The [`SIMD_FLAGS`] the first processor lists (`flags` on x86, `Features` on ARM).
fn simd_flags(cpuinfo: &str) -> Vec<String> {
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            matches!(key.trim(), "flags" | "Features").then_some(value)
        })
        .map(|v| v.split_whitespace().collect())
        .unwrap_or_default();
    SIMD_FLAGS
        .iter()
        .filter(|f| flags.contains(f))
        .map(|f| (*f).to_owned())
        .collect()
}

/// The data and unified caches of cpu0 (`/sys/devices/system/cpu/cpu0/cache/index*`), as
/// `L1d 32K 8-way`, `L2 512K 8-way`, `L3 32768K 16-way shared by 2`.
fn caches() -> Vec<String> {
    let base = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let read = |dir: &std::path::Path, name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !entry.file_name().to_string_lossy().starts_with("index") {
            continue;
        }
        let kind = read(&dir, "type");
        if !matches!(kind.as_str(), "Data" | "Unified") {
            continue;
        }
        let level = read(&dir, "level");
        let name = if kind == "Data" {
            format!("L{level}d")
        } else {
            format!("L{level}")
        };
        let mut text = format!("{name} {}", read(&dir, "size"));
        let ways = read(&dir, "ways_of_associativity");
        if !ways.is_empty() {
            text.push_str(&format!(" {ways}-way"));
        }
        let shared = shared_count(&read(&dir, "shared_cpu_list"));
        if shared > 1 {
            text.push_str(&format!(" shared by {shared}"));
        }
        out.push((level, text));
    }
    out.sort();
    out.into_iter().map(|(_, t)| t).collect()
}

/// The number of CPUs in a list such as `0-3,8`.
fn shared_count(list: &str) -> usize {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| match item.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTEL: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw amx_tile amx_bf16\n\nprocessor\t: 1\nmodel name\t: other\n";

    #[test]
    fn cpu_model_and_flags_come_from_the_first_processor() {
        assert_eq!(
            cpu_model(INTEL),
            "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
        );
        assert_eq!(
            simd_flags(INTEL),
            [
                "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "amx_tile", "amx_bf16"
            ]
        );
        let arm = "processor\t: 0\nFeatures\t: fp asimd sve\nCPU part\t: 0xd0c\n";
        assert_eq!(cpu_model(arm), "CPU part 0xd0c");
        assert_eq!(simd_flags(arm), ["asimd", "sve"]);
        assert_eq!(cpu_model(""), "unknown");
    }

    #[test]
    fn shared_cpu_lists_are_counted() {
        assert_eq!(shared_count("0"), 1);
        assert_eq!(shared_count("0-1"), 2);
        assert_eq!(shared_count("0-3,8,10-11"), 7);
        assert_eq!(shared_count(""), 0);
    }

    #[test]
    fn this_machine_is_described_and_old_manifests_read_as_unknown() {
        let m = Machine::detect();
        assert!(m.is_known() && m.logical_cores >= 1 && m.threads >= 1);
        assert_eq!(m.arch, std::env::consts::ARCH);
        let line = m.summary();
        assert!(
            line.contains(&m.cpu) && line.contains("device cpu"),
            "{line}"
        );
        // A manifest from before this field: every part defaults.
        let old: Machine = serde_json::from_str("{}").expect("defaults");
        assert!(!old.is_known());
        assert_eq!(old.summary(), "not recorded");
        // Round trip.
        let json = serde_json::to_string(&m).expect("json");
        assert_eq!(serde_json::from_str::<Machine>(&json).expect("back"), m);
    }
}
