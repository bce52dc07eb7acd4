//! The Photo page and `/api/photo`: an uploaded PNG/JPEG through `ferbayes predict`'s own path
//! (`ferbayes-faces`' checked decoding with its 120-megapixel limit, the detector and crop, infer's
//! Predictor, the summary, the conformal set and the annotated picture), on a blocking thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use ferbayes_core::layout::Stage;
use ferbayes_core::{Arch, Method, Settings};
use ferbayes_faces::photo::{self, MAX_PIXELS};
use ferbayes_models::Predictor;
use ferbayes_predict::{FaceDetector, FacePrediction, Faces, PredictError, SetThreshold};
use ferbayes_render::png::{Channels, Compression};
use serde::{Deserialize, Serialize};

use crate::ExploreOptions;
use crate::data::{combos, manifest_key};
use crate::error::Fail;
use crate::html::{self, escape};

/// Largest upload accepted, in bytes (the request body; the pixel limit is `ferbayes-faces`'
/// [`MAX_PIXELS`]).
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;

/// Longest side of the annotated picture sent back (larger photos are shown scaled down; the
/// boxes in the JSON stay in the photo's own pixels).
pub const ANNOTATED_SIDE: u32 = 1600;

/// Default smallest face, as `ferbayes predict --min-face`.
pub const MIN_FACE: u32 = 40;

/// A loaded model and the threshold of its prediction sets, for the manifests it was read at.
struct Loaded {
    key: (String, String),
    predictor: Arc<Predictor>,
    threshold: SetThreshold,
}

/// The models loaded so far, one per arch × method, reloaded when train's or analyze's
/// manifest changes.
#[derive(Default)]
pub struct Models {
    loaded: Mutex<HashMap<(Arch, Method), Loaded>>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models").finish_non_exhaustive()
    }
}

impl Models {
    /// The model of `arch`/`method` (loading it if its weights changed or it is new).
    fn get(
        &self,
        options: &ExploreOptions,
        arch: Arch,
        method: Method,
    ) -> Result<(Arc<Predictor>, SetThreshold), Fail> {
        let layout = &options.layout;
        let key = (
            manifest_key(&layout.train_dir(arch, method)),
            manifest_key(&layout.stage_dir(Stage::Analyze)),
        );
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, "model cache poisoned"))?;
        if let Some(l) = loaded.get(&(arch, method))
            && l.key == key
        {
            return Ok((Arc::clone(&l.predictor), l.threshold.clone()));
        }
        let predictor = Predictor::load_on(
            layout,
            &options.settings,
            arch,
            method,
            &options.device,
            options.kernels,
        )
        .map_err(|e| match e {
            ferbayes_models::Error::MissingWeights { path, recipe } => Fail {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "no trained {arch}/{method} yet: {} does not exist",
                    path.display()
                ),
                recipe: Some(recipe),
            },
            other => Fail {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("loading the {arch}/{method} model: {other}"),
                recipe: Some(ferbayes_core::plan::recipe(Stage::Train)),
            },
        })?;
        let threshold = ferbayes_predict::conformal::threshold(
            layout,
            &options.settings,
            (arch, method),
            predictor.samples(),
        )
        .unwrap_or_else(|e| SetThreshold::Unavailable(format!("no prediction sets: {e}")));
        let predictor = Arc::new(predictor);
        tracing::info!("explore: loaded the {arch}/{method} model for photos");
        loaded.insert(
            (arch, method),
            Loaded {
                key,
                predictor: Arc::clone(&predictor),
                threshold: threshold.clone(),
            },
        );
        Ok((predictor, threshold))
    }
}

thread_local! {
    /// The face detector of this (blocking pool) thread: rustface's detector is not `Send`.
    static DETECTOR: RefCell<Option<FaceDetector>> = const { RefCell::new(None) };
}

/// How to predict an upload.
#[derive(Debug, Clone)]
pub struct PhotoRequest {
    pub arch: Arch,
    pub method: Method,
    pub faces: Faces,
    /// Send the annotated picture back.
    pub annotate: bool,
}

/// The query of the Photo page's form and `/api/photo` as sent: the keys they read (others are
/// ignored), checked by [`PhotoRequest::parse`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PhotoQuery {
    pub arch: Option<String>,
    pub method: Option<String>,
    /// Unused by a photo, but checked as on the Faces page (`valid` or `test`).
    pub split: Option<String>,
    pub no_detect: Option<String>,
    pub min_face: Option<String>,
    pub annotate: Option<String>,
}

impl PhotoRequest {
    /// From the query (`arch`, `method`, `no_detect`, `min_face`, `annotate`); the default model
    /// is the profile's first arch × method.
    pub fn parse(q: &PhotoQuery, settings: &Settings, page: bool) -> Result<Self, Fail> {
        let choice = crate::faces::Choice::parse(&q.arch, &q.method, &q.split, settings)?;
        let flag = |v: &Option<String>| {
            v.as_deref()
                .is_some_and(|v| matches!(v.trim(), "1" | "true" | "on" | "yes"))
        };
        let min_face = match crate::faces::value(&q.min_face) {
            None => MIN_FACE,
            Some(v) => v.parse::<u32>().ok().filter(|m| *m >= 8).ok_or_else(|| {
                Fail::bad_request(format!("`min_face` must be a whole number ≥ 8, not `{v}`"))
            })?,
        };
        Ok(PhotoRequest {
            arch: choice.arch,
            method: choice.method,
            faces: if flag(&q.no_detect) {
                Faces::WholeImage
            } else {
                Faces::Detect { min_face }
            },
            annotate: page || flag(&q.annotate),
        })
    }
}

/// The answer for one upload (`/api/photo`).
#[derive(Debug, Clone, Serialize)]
pub struct PhotoJson {
    pub image: String,
    pub width: u32,
    pub height: u32,
    pub arch: Arch,
    pub method: Method,
    pub samples: usize,
    /// Per face, what `ferbayes predict --json` prints.
    pub faces: Vec<FacePrediction>,
    /// Why the faces have no prediction sets, when they have none.
    pub prediction_sets: Option<String>,
    /// The annotated picture as a `data:image/png;base64,...` URI (with `annotate=1`).
    pub annotated_png: Option<String>,
}

/// The upload's file name as shown: its last path component, printable ASCII, at most 100
/// characters (`upload` if nothing is left).
pub fn display_name(raw: Option<&str>) -> String {
    let last = raw.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(100)
        .collect();
    if clean.trim().is_empty() {
        "upload".into()
    } else {
        clean
    }
}

/// Refuses, before decoding, what is not a PNG or JPEG (415) or is empty (400).
pub fn check_type(name: &str, bytes: &[u8]) -> Result<(), Fail> {
    if bytes.is_empty() {
        return Err(Fail::bad_request(format!(
            "{name}: the uploaded file is empty"
        )));
    }
    match image::guess_format(bytes) {
        Ok(image::ImageFormat::Png | image::ImageFormat::Jpeg) => Ok(()),
        Ok(other) => Err(Fail::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{name}: a {other:?} image; upload a PNG or JPEG"),
        )),
        Err(_) => Err(Fail::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{name}: not a PNG or JPEG image"),
        )),
    }
}

/// Decodes and predicts an upload (blocking: call on a blocking thread).
pub fn predict(
    options: &ExploreOptions,
    models: &Models,
    request: &PhotoRequest,
    name: &str,
    bytes: &[u8],
) -> Result<PhotoJson, Fail> {
    check_type(name, bytes)?;
    let label = Path::new(name);
    let image = photo::decode_photo(label, bytes).map_err(|e| {
        let too_big = photo::header_size(bytes)
            .is_some_and(|(w, h)| u64::from(w) * u64::from(h) > MAX_PIXELS);
        let status = if too_big {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        Fail::new(status, e.to_string())
    })?;
    let (width, height) = (image.width(), image.height());
    let (predictor, threshold) = models.get(options, request.arch, request.method)?;
    let got = DETECTOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(FaceDetector::new().map_err(|e| {
                Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            })?);
        }
        let detector = cell.as_mut().ok_or_else(|| {
            Fail::new(StatusCode::INTERNAL_SERVER_ERROR, "no face detector")
        })?;
        ferbayes_predict::predict_image(&predictor, detector, label, image, request.faces).map_err(
            |e| match e {
                PredictError::NoFace { .. } => Fail::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "no face found in {name}; if the image already is a face crop, tick “the whole image is one face” (no_detect=1)"
                    ),
                ),
                other => Fail::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
            },
        )
    })?;
    let faces: Vec<FacePrediction> = got
        .faces
        .into_iter()
        .map(|f| f.with_set(&threshold))
        .collect();
    let annotated_png = if request.annotate {
        Some(annotated(&got.image, &faces)?)
    } else {
        None
    };
    Ok(PhotoJson {
        image: name.to_owned(),
        width,
        height,
        arch: request.arch,
        method: request.method,
        samples: predictor.samples(),
        faces,
        prediction_sets: match threshold {
            SetThreshold::Calibrated { .. } => None,
            SetThreshold::Unavailable(why) => Some(why),
        },
        annotated_png,
    })
}

/// The annotated picture (scaled to at most [`ANNOTATED_SIDE`]) as a PNG data URI.
fn annotated(image: &image::DynamicImage, faces: &[FacePrediction]) -> Result<String, Fail> {
    let internal = |e: String| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e);
    let side = image.width().max(image.height());
    let (shown, scaled): (
        std::borrow::Cow<'_, image::DynamicImage>,
        Vec<FacePrediction>,
    ) = if side > ANNOTATED_SIDE {
        let s = f64::from(ANNOTATED_SIDE) / f64::from(side);
        let small = image.resize(
            ((f64::from(image.width()) * s).round() as u32).max(1),
            ((f64::from(image.height()) * s).round() as u32).max(1),
            image::imageops::FilterType::Triangle,
        );
        let sx = f64::from(small.width()) / f64::from(image.width());
        let faces = faces
            .iter()
            .map(|f| {
                let mut f = f.clone();
                let b = &mut f.bbox;
                let scale = |v: u32| ((f64::from(v) * sx).round() as u32).max(1);
                (b.x, b.y, b.width, b.height) = (
                    (f64::from(b.x) * sx).round() as u32,
                    (f64::from(b.y) * sx).round() as u32,
                    scale(b.width),
                    scale(b.height),
                );
                f
            })
            .collect();
        (std::borrow::Cow::Owned(small), faces)
    } else {
        (std::borrow::Cow::Borrowed(image), faces.to_vec())
    };
    let rgb =
        ferbayes_predict::annotate::render(&shown, &scaled).map_err(|e| internal(e.to_string()))?;
    let png = ferbayes_render::png::encode(
        &rgb,
        shown.width(),
        shown.height(),
        Channels::Rgb,
        Compression::Fast,
    )
    .map_err(|e| internal(e.to_string()))?;
    Ok(ferbayes_render::png_data_uri(&png))
}

/// The upload form (with the result or refusal of the last upload below it).
pub fn page(settings: &Settings, request: Option<&PhotoRequest>, result: &str) -> String {
    let (arch, method) = request
        .map(|r| (r.arch, r.method))
        .or_else(|| combos(settings).first().copied())
        .unwrap_or((Arch::AlexNet, Method::McDropout));
    let models: String = combos(settings)
        .into_iter()
        .map(|(a, m)| {
            let sel = if (a, m) == (arch, method) {
                " selected"
            } else {
                ""
            };
            format!("<option value=\"arch={a}&amp;method={m}\"{sel}>{a} / {m}</option>")
        })
        .collect();
    let mut b = format!(
        "<h1>Your photo</h1><p class=\"meta\">A PNG or JPEG (at most {} MiB, {} megapixels). Each face is found by the frontal face detector of <code>ferbayes predict</code>, cropped with FER2013's margin, and classified by the chosen model.</p>\
<form id=\"photo-form\" class=\"filters\" method=\"post\" action=\"/photo\" enctype=\"multipart/form-data\">\
<label>photo<input id=\"photo-file\" type=\"file\" name=\"photo\" accept=\"image/png,image/jpeg\" required style=\"width:auto\"></label>\
<label>model<select id=\"photo-model\">{models}</select></label>\
<label>whole image is one face<input type=\"checkbox\" name=\"no_detect\" value=\"1\" style=\"width:auto\"></label>\
<button type=\"submit\" id=\"photo-submit\">Predict</button></form>\
<script>\
const f=document.getElementById('photo-form'),m=document.getElementById('photo-model');\
const go=()=>{{f.action='/photo?'+m.value;}};m.addEventListener('change',go);go();\
f.addEventListener('submit',()=>{{go();const nd=f.querySelector('[name=no_detect]');if(nd.checked)f.action+='&no_detect=1';}});\
</script>",
        MAX_UPLOAD_BYTES >> 20,
        MAX_PIXELS / 1_000_000
    );
    b.push_str(result);
    html::page("Photo", Some("photo"), &b)
}

/// The result of an upload, as HTML.
pub fn result_html(p: &PhotoJson) -> String {
    let mut b = format!(
        "<h2 id=\"photo-result\">{} ({}x{}): {} face{} · {} / {}, {} samples</h2>",
        escape(&p.image),
        p.width,
        p.height,
        p.faces.len(),
        if p.faces.len() == 1 { "" } else { "s" },
        p.arch,
        p.method,
        p.samples
    );
    if let Some(why) = &p.prediction_sets {
        let _ = write!(b, "<p class=\"meta\">{}</p>", escape(why));
    }
    if let Some(uri) = &p.annotated_png {
        let _ = write!(
            b,
            "<div class=\"photo\"><img id=\"annotated\" src=\"{uri}\" alt=\"the photo with each face's box and probabilities\"></div>"
        );
    }
    b.push_str("<div class=\"grid\">");
    for f in &p.faces {
        let probs: [f32; ferbayes_core::NUM_CLASSES] =
            std::array::from_fn(|k| f.probabilities[k].1 as f32);
        let set = f
            .prediction_set
            .as_ref()
            .map(|s| {
                format!(
                    "prediction set (α = {}): {{{}}}",
                    s.alpha,
                    s.emotions.join(", ")
                )
            })
            .unwrap_or_default();
        let _ = write!(
            b,
            "<div class=\"card face-card\" style=\"grid-template-columns:1fr\" data-verdict=\"{}\"><div><div class=\"meta\"><b>face {}</b> at x {}, y {}, {}x{} px · <b>{}</b> {:.0}% · verdict <b>{}</b></div>\
<div class=\"meta\">H {:.3} = aleatoric {:.3} + epistemic {:.3} nats</div><div class=\"meta\">{}</div><div class=\"meta\">{}</div>{}</div></div>",
            f.verdict.name(),
            f.face + 1,
            f.bbox.x,
            f.bbox.y,
            f.bbox.width,
            f.bbox.height,
            escape(&f.emotion),
            100.0 * f.confidence,
            f.verdict.name(),
            f.predictive_entropy,
            f.aleatoric,
            f.epistemic,
            escape(&f.explanation),
            escape(&set),
            html::prob_bars(&probs)
        );
    }
    b.push_str("</div>");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_lose_their_folders() {
        assert_eq!(display_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(display_name(Some("C:\\photos\\me.jpg")), "me.jpg");
        assert_eq!(display_name(Some("<b>\n")), "<b>");
        assert_eq!(display_name(None), "upload");
        assert_eq!(display_name(Some("/")), "upload");
    }

    #[test]
    fn only_png_and_jpeg_pass_the_type_check() {
        assert_eq!(
            check_type("a", b"").expect_err("empty").status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            check_type("a", b"GIF89a....").expect_err("gif").status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            check_type("a", b"hello").expect_err("text").status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert!(check_type("a", b"\x89PNG\r\n\x1a\n").is_ok());
        assert!(check_type("a", b"\xFF\xD8\xFF\xE0").is_ok());
    }
}
