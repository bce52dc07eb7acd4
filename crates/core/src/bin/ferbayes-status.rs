//! `ferbayes-status`: prints, for the profile, whether each stage (and each arch × method of train
//! and infer) is `up to date`, `stale (<reason>)` or `missing`, from the same plans the stages
//! use to decide whether to rerun; then the artifacts made with other kernels than the current
//! setting (`--kernels`, `--tf32` and their `FER_*` fallbacks, as the stages read them), the
//! machines the manifests name (CPU, SIMD paths, threads, device) with what each made, and this
//! machine.

use clap::Parser;
use ferbayes_core::cli::{CommonArgs, DeviceArg, KernelArgs, KernelChoice, init_tracing};
use ferbayes_core::plan::KernelSetting;

/// Show which artifacts of the profile are up to date, stale (with the reason) or missing. A
/// stage is up to date when its manifest's key (settings, versions and the sha256 of every input
/// it read) equals the one computed now and every output exists.
#[derive(Debug, Parser)]
#[command(name = "ferbayes-status", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    device: DeviceArg,
    /// The kernel setting to compare the artifacts' with (what train and infer would run now).
    #[command(flatten)]
    kernels: KernelArgs,
    /// Print only the device train and infer compute on for this profile (`cpu` or `cuda`:
    /// FER_DEVICE, else the profile's `device` setting), for scripts such as `just train`.
    #[arg(long)]
    print_device: bool,
}

#[allow(clippy::print_stdout)]
fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let ctx = args.common.context()?;
    if args.print_device {
        println!("{}", args.device.resolve(&ctx.settings));
        return Ok(());
    }
    let data_root = ctx
        .data_root()
        .unwrap_or_else(|_| ctx.data.clone().unwrap_or(ctx.settings.data_dir.clone()));
    println!(
        "profile {} ({})",
        ctx.profile,
        ctx.layout.profile_dir().display()
    );
    let plans = ferbayes_core::plan::all(&ctx.layout, &data_root, &ctx.settings);
    for plan in &plans {
        let state = match plan.check() {
            Ok(check) => check.freshness.to_string(),
            Err(e) => format!("stale ({e})"),
        };
        println!("{:<34} {state}", plan.label);
    }
    // Artifacts made with other kernels than train and infer would run now (provenance, like
    // the machine: they stay up to date, but a rerun can differ at rounding level).
    let device = args.device.resolve(&ctx.settings);
    let current = KernelSetting {
        kernels: args.kernels.kernels_or(KernelChoice::default_for(device)),
        tf32: args.kernels.tf32(),
    };
    let notes: Vec<String> = plans
        .iter()
        .filter_map(|p| {
            ferbayes_core::plan::kernels_note(p, current).map(|n| format!("{}: {n}", p.label))
        })
        .collect();
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("{n}");
        }
    }
    // Which machines made the artifacts (provenance: results are bit for bit the same on one
    // machine, across machines only as far as docs/results.md says).
    println!();
    let uses = ferbayes_core::plan::provenance(&plans);
    if !uses.is_empty() {
        println!("made on:");
    }
    for u in &uses {
        println!("  {}", u.machine);
        if !u.wrote.is_empty() {
            println!("    wrote: {}", u.wrote.join(", "));
        }
        if !u.trained.is_empty() {
            println!("    trained: {}", u.trained.join("; "));
        }
    }
    println!(
        "this machine: {}",
        ferbayes_core::machine::Machine::detect().summary()
    );
    Ok(())
}
