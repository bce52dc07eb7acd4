//! The routes and their handlers, and the shared state: the run's tables for the current
//! [`RunKey`] (reloaded when a manifest key changes), the photo models, and a limit on photo
//! predictions running at once.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ferbayes_core::Split;
use ferbayes_core::layout::Stage;
use ferbayes_render::png::{Channels, Compression};

use crate::ExploreOptions;
use crate::data::{RunData, RunKey};
use crate::error::Fail;
use crate::faces::{self, Choice, FacesQuery, ListQuery, valid_name};
use crate::photo::{self, MAX_UPLOAD_BYTES, Models, PhotoJson, PhotoQuery, PhotoRequest};
use crate::runpage;

/// How long a read of the manifest keys is trusted before they are read again: a rerun shows
/// within this time.
pub const KEY_TTL: Duration = Duration::from_millis(500);

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub options: ExploreOptions,
    run: RwLock<Option<Arc<RunData>>>,
    loading: tokio::sync::Mutex<()>,
    key: Mutex<Option<(Instant, RunKey)>>,
    models: Models,
    photo_slots: tokio::sync::Semaphore,
}

pub type Shared = Arc<AppState>;

impl AppState {
    pub fn new(options: ExploreOptions) -> Shared {
        let slots = std::thread::available_parallelism().map_or(1, |n| n.get());
        Arc::new(AppState {
            options,
            run: RwLock::new(None),
            loading: tokio::sync::Mutex::new(()),
            key: Mutex::new(None),
            models: Models::default(),
            photo_slots: tokio::sync::Semaphore::new(slots),
        })
    }

    /// The manifest keys, read again once [`KEY_TTL`] has passed.
    fn key_now(&self) -> RunKey {
        let mut cached = self.key.lock().unwrap_or_else(|p| p.into_inner());
        match &*cached {
            Some((at, key)) if at.elapsed() < KEY_TTL => key.clone(),
            _ => {
                let key = RunKey::read(&self.options.layout, &self.options.settings);
                *cached = Some((Instant::now(), key.clone()));
                key
            }
        }
    }

    fn cached(&self, key: &RunKey) -> Option<Arc<RunData>> {
        let run = self.run.read().unwrap_or_else(|p| p.into_inner());
        run.as_ref().filter(|r| &r.key == key).map(Arc::clone)
    }

    /// The tables of the run as it is on disk now: loaded once per run key (one load at a time;
    /// requests during a reload wait for it).
    pub async fn current_run(self: &Arc<Self>) -> Result<Arc<RunData>, Fail> {
        let key = self.key_now();
        if let Some(r) = self.cached(&key) {
            return Ok(r);
        }
        let _one_at_a_time = self.loading.lock().await;
        if let Some(r) = self.cached(&key) {
            return Ok(r);
        }
        let state = Arc::clone(self);
        let run = tokio::task::spawn_blocking(move || {
            Arc::new(RunData::load(
                &state.options.layout,
                &state.options.settings,
                key,
            ))
        })
        .await
        .map_err(|e| internal(format!("loading the tables failed: {e}")))?;
        *self.run.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&run));
        Ok(run)
    }
}

fn internal(message: impl Into<String>) -> Fail {
    Fail::new(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// Every route of the server.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/faces") }))
        .route("/faces", get(faces_page))
        .route("/api/faces", get(faces_api))
        .route("/face/{split}/{image}", get(face_page))
        .route("/api/face/{split}/{image}", get(face_api))
        .route("/img/{split}/{image}", get(face_png))
        .route("/photo", get(photo_form).post(photo_page))
        .route("/api/photo", post(photo_api))
        .route("/run", get(run_page))
        .route("/api/run", get(run_api))
        .route("/run/report", get(report))
        .route("/run/figures/{name}", get(figure))
        .route("/api/health", get(health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .layer(middleware::from_fn(timing))
        .with_state(state)
}

/// Adds `Server-Timing: app;dur=<ms>` (the time the handler took) and `nosniff` to every
/// answer, and logs it at debug level.
async fn timing(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let mut response = next.run(request).await;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.3}")) {
        headers.insert("server-timing", v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    tracing::debug!(
        "{method} {path} → {} in {ms:.2} ms",
        response.status().as_u16()
    );
    response
}

/// A typed query, or why it could not be read (a key given twice, say).
type Params<T> = Result<Query<T>, QueryRejection>;

fn params<T>(q: Params<T>) -> Result<T, Fail> {
    q.map(|Query(q)| q)
        .map_err(|e| Fail::bad_request(e.body_text()))
}

fn path_of<T>(p: Result<Path<T>, PathRejection>) -> Result<T, Fail> {
    p.map(|Path(t)| t)
        .map_err(|e| Fail::bad_request(e.body_text()))
}

async fn faces_data(
    state: &Shared,
    q: Params<FacesQuery>,
) -> Result<(Choice, ListQuery, faces::FacesJson), Fail> {
    let q = params(q)?;
    let choice = Choice::parse(&q.arch, &q.method, &q.split, &state.options.settings)?;
    let list = ListQuery::parse(&q)?;
    let run = state.current_run().await?;
    let got = faces::list(&run, state.options.layout.profile(), choice, &list)?;
    Ok((choice, list, got))
}

async fn faces_page(State(state): State<Shared>, q: Params<FacesQuery>) -> Response {
    match faces_data(&state, q).await {
        Ok((choice, list, got)) => {
            Html(faces::page(&state.options.settings, choice, &list, &got)).into_response()
        }
        Err(f) => f.page(),
    }
}

async fn faces_api(State(state): State<Shared>, q: Params<FacesQuery>) -> Response {
    match faces_data(&state, q).await {
        Ok((_, _, got)) => axum::Json(got).into_response(),
        Err(f) => f.api(),
    }
}

type SplitImage = Result<Path<(String, String)>, PathRejection>;

async fn face_data(state: &Shared, p: SplitImage) -> Result<faces::OneFaceJson, Fail> {
    let (split, image) = path_of(p)?;
    let split = faces::parse_split(Some(&split))?;
    let run = state.current_run().await?;
    faces::one(&run, &state.options.settings, split, &image)
}

async fn face_page(State(state): State<Shared>, p: SplitImage) -> Response {
    match face_data(&state, p).await {
        Ok(face) => Html(faces::one_page(&face)).into_response(),
        Err(f) => f.page(),
    }
}

async fn face_api(State(state): State<Shared>, p: SplitImage) -> Response {
    match face_data(&state, p).await {
        Ok(face) => axum::Json(face).into_response(),
        Err(f) => f.api(),
    }
}

/// A face's 48x48 pixels as a grayscale PNG (ETag: the ingest manifest's key).
async fn face_png(State(state): State<Shared>, headers: HeaderMap, p: SplitImage) -> Response {
    let answer = async {
        let (split, image) = path_of(p)?;
        let split: Split = faces::parse_split(Some(&split))?;
        if !valid_name(&image) {
            return Err(Fail::bad_request(
                "invalid image name (letters, digits, `.`, `_` and `-` only)",
            ));
        }
        let run = state.current_run().await?;
        let faces = run.faces(split)?;
        let i = faces
            .find(&image)
            .ok_or_else(|| Fail::not_found(format!("no face `{image}` in the {split} split")))?;
        let etag = format!("\"{}\"", run.key.stage("ingest").unwrap_or("none"));
        if headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == etag.as_bytes())
        {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
        let side = ferbayes_core::IMAGE_SIDE as u32;
        let png = ferbayes_render::png::encode(
            faces.pixels(i),
            side,
            side,
            Channels::Gray,
            Compression::Fast,
        )
        .map_err(|e| internal(e.to_string()))?;
        Ok((
            [
                (header::CONTENT_TYPE, "image/png".to_owned()),
                (header::CACHE_CONTROL, "no-cache".to_owned()),
                (header::ETAG, etag),
            ],
            png,
        )
            .into_response())
    };
    answer.await.unwrap_or_else(Fail::page)
}

async fn photo_form(State(state): State<Shared>) -> Response {
    Html(photo::page(&state.options.settings, None, "")).into_response()
}

/// Reads the `photo` field of a multipart upload: its file name as shown, and its bytes.
async fn read_upload(
    headers: &HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(String, Bytes), Fail> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Err(Fail::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "send the photo as multipart/form-data in the field `photo` (got content type `{content_type}`)"
            ),
        ));
    }
    let mut multipart = multipart.map_err(|e| Fail::new(e.status(), e.body_text()))?;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("photo") => {
                let name = photo::display_name(field.file_name());
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| Fail::new(e.status(), e.body_text()))?;
                return Ok((name, bytes));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(Fail::bad_request(
                    "the upload has no field `photo` (a PNG or JPEG file)",
                ));
            }
            Err(e) => return Err(Fail::new(e.status(), e.body_text())),
        }
    }
}

async fn photo_answer(
    state: &Shared,
    request: &PhotoRequest,
    headers: &HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<PhotoJson, Fail> {
    let (name, bytes) = read_upload(headers, multipart).await?;
    let _slot = state
        .photo_slots
        .acquire()
        .await
        .map_err(|e| internal(e.to_string()))?;
    let (state, request) = (Arc::clone(state), request.clone());
    tokio::task::spawn_blocking(move || {
        photo::predict(&state.options, &state.models, &request, &name, &bytes)
    })
    .await
    .map_err(|e| internal(format!("the prediction failed: {e}")))?
}

async fn photo_page(
    State(state): State<Shared>,
    q: Params<PhotoQuery>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let settings = &state.options.settings;
    let request = match params(q).and_then(|q| PhotoRequest::parse(&q, settings, true)) {
        Ok(r) => r,
        Err(f) => return f.page(),
    };
    match photo_answer(&state, &request, &headers, multipart).await {
        Ok(p) => Html(photo::page(
            settings,
            Some(&request),
            &photo::result_html(&p),
        ))
        .into_response(),
        Err(f) => {
            let block = format!(
                "<p class=\"fail\" id=\"fail\">{}</p>{}",
                crate::html::escape(&f.message),
                f.recipe
                    .as_ref()
                    .map(|r| format!(
                        "<p id=\"recipe\">Make it with <code>{}</code>.</p>",
                        crate::html::escape(r)
                    ))
                    .unwrap_or_default()
            );
            (
                f.status,
                Html(photo::page(settings, Some(&request), &block)),
            )
                .into_response()
        }
    }
}

async fn photo_api(
    State(state): State<Shared>,
    q: Params<PhotoQuery>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let request =
        match params(q).and_then(|q| PhotoRequest::parse(&q, &state.options.settings, false)) {
            Ok(r) => r,
            Err(f) => return f.api(),
        };
    match photo_answer(&state, &request, &headers, multipart).await {
        Ok(p) => axum::Json(p).into_response(),
        Err(f) => f.api(),
    }
}

async fn run_data(state: &Shared) -> Result<runpage::RunJson, Fail> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || runpage::run_json(&state.options))
        .await
        .map_err(|e| internal(e.to_string()))
}

async fn run_page(State(state): State<Shared>) -> Response {
    match run_data(&state).await {
        Ok(run) => Html(runpage::page(&run)).into_response(),
        Err(f) => f.page(),
    }
}

async fn run_api(State(state): State<Shared>) -> Response {
    match run_data(&state).await {
        Ok(run) => axum::Json(run).into_response(),
        Err(f) => f.api(),
    }
}

fn analyze_missing(what: String) -> Fail {
    Fail {
        status: StatusCode::NOT_FOUND,
        message: what,
        recipe: Some(ferbayes_core::plan::recipe(Stage::Analyze)),
    }
}

/// The analyze stage's report.html as it is (self-contained: its figures are embedded).
async fn report(State(state): State<Shared>) -> Response {
    let path = state.options.layout.report_html();
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], bytes).into_response(),
        Err(_) => {
            analyze_missing(format!("no report yet: {} does not exist", path.display())).page()
        }
    }
}

/// A figure of the analyze stage, by a name from its figures folder's listing.
async fn figure(State(state): State<Shared>, p: Result<Path<String>, PathRejection>) -> Response {
    let answer = async {
        let name = path_of(p)?;
        if !valid_name(&name) {
            return Err(Fail::bad_request(
                "invalid figure name (letters, digits, `.`, `_` and `-` only)",
            ));
        }
        let options = state.options.clone();
        let listed = tokio::task::spawn_blocking(move || runpage::figures(&options))
            .await
            .map_err(|e| internal(e.to_string()))?;
        if !listed.contains(&name) {
            return Err(analyze_missing(format!("no figure `{name}`")));
        }
        let kind = if name.ends_with(".svg") {
            "image/svg+xml"
        } else {
            "image/png"
        };
        let bytes = tokio::fs::read(state.options.layout.figure(&name))
            .await
            .map_err(|e| analyze_missing(format!("figure `{name}`: {e}")))?;
        Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
    };
    answer.await.unwrap_or_else(Fail::page)
}

async fn health(State(state): State<Shared>) -> Response {
    match state.current_run().await {
        Ok(run) => axum::Json(serde_json::json!({
            "status": "ok",
            "profile": state.options.layout.profile(),
            "run": run.key.short(),
            "loaded_in_s": run.loaded_in.as_secs_f64(),
        }))
        .into_response(),
        Err(f) => f.api(),
    }
}

async fn not_found(uri: Uri) -> Response {
    let fail = Fail::not_found(format!("nothing at {}", uri.path()));
    if uri.path().starts_with("/api/") {
        fail.api()
    } else {
        fail.page()
    }
}
