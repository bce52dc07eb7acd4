//! `ferbayes explore`: the flags, then `ferbayes_explore::serve`.

use std::net::SocketAddr;

use anyhow::Context;
use ferbayes_core::cli::{CommonArgs, KernelArgs};
use ferbayes_explore::{DEFAULT_LISTEN, ExploreOptions};

#[derive(Debug, clap::Args)]
pub struct ExploreArgs {
    /// Address to listen on; only loopback by default. Another address (e.g. 0.0.0.0:7878)
    /// makes the page, and your uploads' predictions, reachable from other machines.
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Compute device for the photo page's model: cpu, or cuda (needs a build with
    /// `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The kernels of the photo page's model.
    #[command(flatten)]
    kernels: KernelArgs,
    #[command(flatten)]
    common: CommonArgs,
}

/// Runs the server until it is interrupted (Ctrl-C).
pub fn run(args: &ExploreArgs) -> anyhow::Result<()> {
    let ctx = args.common.context()?;
    let data_root = ctx.data_root().ok();
    let device = ferbayes_models::device(&args.device)?;
    let options = ExploreOptions {
        layout: ctx.layout.clone(),
        settings: ctx.settings.clone(),
        data_root,
        listen: args.listen,
        kernels: ferbayes_models::install_kernels(&args.kernels, &device),
        device,
    };
    ferbayes_explore::serve(options)
        .with_context(|| format!("serving the artifacts of profile `{}`", ctx.profile))
}
