//! Errors: [`ExploreError`] for starting the server, [`Fail`] for a refused request (a status,
//! a message, the recipe that would help), answered as an HTML page or as JSON.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::data::Unavailable;

/// Result alias of the explore crate.
pub type Result<T, E = ExploreError> = std::result::Result<T, E>;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    #[error(transparent)]
    Core(#[from] ferbayes_core::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub status: StatusCode,
    pub message: String,
    /// The `just` recipe that makes what is missing.
    pub recipe: Option<String>,
}

impl Fail {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Fail {
            status,
            message: message.into(),
            recipe: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Fail::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Fail::new(StatusCode::NOT_FOUND, message)
    }

    /// The JSON answer: `{"error": ..., "recipe": ...}`.
    pub fn api(self) -> Response {
        let body = serde_json::json!({
            "error": self.message,
            "status": self.status.as_u16(),
            "recipe": self.recipe,
        });
        (self.status, axum::Json(body)).into_response()
    }

    /// The HTML page saying what went wrong and which recipe helps.
    pub fn page(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let mut body = format!(
            "<h1>{}</h1>\n<p class=\"fail\" id=\"fail\">{}</p>\n",
            crate::html::escape(&title),
            crate::html::escape(&self.message)
        );
        if let Some(r) = &self.recipe {
            body.push_str(&format!(
                "<p id=\"recipe\">Make it with <code>{}</code>, then reload this page (no restart needed).</p>\n",
                crate::html::escape(r)
            ));
        }
        let html = crate::html::page(&title, None, &body);
        (self.status, axum::response::Html(html)).into_response()
    }
}

impl From<Unavailable> for Fail {
    /// A missing stage is a 404 naming the recipe that makes it.
    fn from(u: Unavailable) -> Self {
        Fail {
            status: StatusCode::NOT_FOUND,
            message: u.message,
            recipe: u.recipe,
        }
    }
}
