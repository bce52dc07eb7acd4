//! `ferbayes predict`: faces in people's own photos, each with its emotion and uncertainty.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use ferbayes_core::cli::{CommonArgs, KernelArgs};
use ferbayes_core::{Arch, Method};
use ferbayes_models::Predictor;
use ferbayes_predict::{
    FaceDetector, FacePrediction, Faces, PredictError, SetThreshold, annotate, conformal, summary,
    table,
};

/// Exit status when an image has no face.
const NO_FACE: u8 = 3;

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Images to classify, or one folder of images.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Architecture whose weights to use.
    #[arg(long, default_value = "densenet121")]
    arch: Arch,
    /// Uncertainty method whose weights to use.
    #[arg(long, default_value = "ensemble")]
    method: Method,
    /// Stochastic passes T for the MC methods [default: infer.samples of the profile].
    #[arg(long)]
    samples: Option<usize>,
    /// Print JSON (a list of faces) instead of the terminal chart.
    #[arg(long)]
    json: bool,
    /// Draw each face's box and probabilities on the photo, written as this PNG (one image only).
    #[arg(long, value_name = "OUT.png")]
    annotate: Option<PathBuf>,
    /// Treat each whole image as one face (centre crop, resize), for images that already are
    /// face crops.
    #[arg(long)]
    no_detect: bool,
    /// Smallest face to find, in pixels (faces under 40 px are found on an upscaled copy).
    #[arg(long, default_value_t = 40, value_name = "PX")]
    min_face: u32,
    /// For a folder: the Parquet table to write [default: <folder name>-faces.parquet].
    #[arg(long, value_name = "TABLE.parquet")]
    out: Option<PathBuf>,
    /// Compute device: cpu, or cuda (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    kernels: KernelArgs,
    #[command(flatten)]
    common: CommonArgs,
}

/// The model, and the threshold of its prediction sets (or why there is none).
fn load(args: &PredictArgs) -> anyhow::Result<(Predictor, SetThreshold)> {
    let ctx = args.common.context()?;
    let mut settings = ctx.settings.clone();
    if let Some(t) = args.samples {
        anyhow::ensure!(t >= 1, "--samples must be at least 1");
        settings.infer.samples = t;
    }
    let device = ferbayes_models::device(&args.device)?;
    let (arch, method) = (args.arch, args.method);
    let predictor = Predictor::load_on(
        &ctx.layout,
        &settings,
        arch,
        method,
        &device,
        ferbayes_models::install_kernels(&args.kernels, &device),
    )
    .with_context(|| {
        format!(
            "loading the {arch}/{method} model of profile `{}`",
            ctx.profile
        )
    })?;
    let threshold = conformal::threshold(
        &ctx.layout,
        &ctx.settings,
        (arch, method),
        predictor.samples(),
    )?;
    Ok((predictor, threshold))
}

/// Runs `ferbayes predict`.
pub fn run(args: &PredictArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.min_face >= 8, "--min-face must be at least 8 pixels");
    let folder = args.images.iter().any(|p| p.is_dir());
    anyhow::ensure!(
        !folder || args.images.len() == 1,
        "give either one folder or image files, not both"
    );
    anyhow::ensure!(
        args.annotate.is_none() || (args.images.len() == 1 && !folder),
        "--annotate draws one image: give exactly one image file"
    );
    let faces = if args.no_detect {
        Faces::WholeImage
    } else {
        Faces::Detect {
            min_face: args.min_face,
        }
    };
    if folder {
        // An empty folder is refused before the model loads.
        table::image_files(&args.images[0])?;
    }
    let (predictor, threshold) = load(args)?;
    let mut detector = FaceDetector::new()?;
    if folder {
        predict_folder(args, &predictor, &mut detector, faces)
    } else {
        predict_files(args, (&predictor, &threshold), &mut detector, faces)
    }
}

#[allow(clippy::print_stdout)]
fn predict_files(
    args: &PredictArgs,
    (predictor, threshold): (&Predictor, &SetThreshold),
    detector: &mut FaceDetector,
    faces: Faces,
) -> anyhow::Result<ExitCode> {
    let mut all: Vec<FacePrediction> = Vec::new();
    let mut missing = 0;
    for path in &args.images {
        match ferbayes_predict::predict_photo(predictor, detector, path, faces) {
            Ok(p) => {
                if let Some(out) = &args.annotate {
                    annotate::save(out, &p.image, &p.faces)?;
                    tracing::info!("annotated photo written to {}", out.display());
                }
                all.extend(p.faces.into_iter().map(|f| f.with_set(threshold)));
            }
            Err(e @ PredictError::NoFace { .. }) => {
                tracing::error!("{e}");
                missing += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for p in &all {
            if let Some(w) = &p.warning {
                tracing::warn!("{}: {w}", p.image.display());
            }
            print!("{}", summary::render(p));
        }
        if let SetThreshold::Unavailable(why) = threshold {
            println!("{why}");
        }
    }
    if let (true, SetThreshold::Unavailable(why)) = (args.json, threshold) {
        tracing::info!("{why}");
    }
    Ok(if missing > 0 {
        ExitCode::from(NO_FACE)
    } else {
        ExitCode::SUCCESS
    })
}

fn predict_folder(
    args: &PredictArgs,
    predictor: &Predictor,
    detector: &mut FaceDetector,
    faces: Faces,
) -> anyhow::Result<ExitCode> {
    let dir = &args.images[0];
    let out = args.out.clone().unwrap_or_else(|| default_table(dir));
    let got = table::predict_folder(predictor, detector, dir, faces)?;
    let written = table::write(&out, dir, &got.faces)?;
    tracing::info!(
        "{} faces from {} of {} photos written to {} ({} without a face, {} unreadable)",
        got.faces.len(),
        got.images - got.no_face.len() - got.unreadable.len(),
        got.images,
        written.display(),
        got.no_face.len(),
        got.unreadable.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `<folder name>-faces.parquet` in the current folder.
fn default_table(dir: &Path) -> PathBuf {
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "photos".into());
    PathBuf::from(format!("{name}-faces.parquet"))
}
