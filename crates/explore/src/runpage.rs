//! The Run page and `/api/run`: `just status`'s table for the profile (the stages' own
//! `Plan::check`), the report's summary and its figures.

use std::fmt::Write as _;
use std::path::Path;

use ferbayes_core::plan;
use serde::Serialize;

use crate::ExploreOptions;
use crate::faces::valid_name;
use crate::html::{self, escape};

/// One line of the status table.
#[derive(Debug, Clone, Serialize)]
pub struct StatusLine {
    /// `ingest`, `train alexnet/mc_dropout`, ...
    pub stage: String,
    /// `up to date`, `stale (<reason>)` or `missing`.
    pub state: String,
    /// The recipe that makes or refreshes it (None when up to date).
    pub recipe: Option<String>,
}

/// `/api/run`.
#[derive(Debug, Clone, Serialize)]
pub struct RunJson {
    pub profile: String,
    pub artifacts: String,
    pub status: Vec<StatusLine>,
    /// The report's summary section as HTML (None before the analyze stage has run).
    pub summary_html: Option<String>,
    /// The analyze stage's figures, each served at `/run/figures/<name>`.
    pub figures: Vec<String>,
    /// `/run/report` when the report exists.
    pub report: Option<String>,
}

/// The status of every stage of the profile (what `just status` prints; blocking: it hashes
/// the inputs).
pub fn status(options: &ExploreOptions) -> Vec<StatusLine> {
    let data_root = options
        .data_root
        .clone()
        .unwrap_or_else(|| options.settings.data_dir.clone());
    plan::all(&options.layout, &data_root, &options.settings)
        .into_iter()
        .map(|p| {
            let state = match p.check() {
                Ok(c) => c.freshness.to_string(),
                Err(e) => format!("stale ({e})"),
            };
            let recipe = (state != "up to date").then(|| plan::recipe(p.stage));
            StatusLine {
                stage: p.label,
                state,
                recipe,
            }
        })
        .collect()
}

/// The PNG and SVG figures of the analyze stage (names only, sorted).
pub fn figures(options: &ExploreOptions) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(options.layout.figures_dir()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| valid_name(n) && (n.ends_with(".png") || n.ends_with(".svg")))
        .collect();
    names.sort();
    names
}

/// The `<h2 id="summary">` section of the analyze stage's report.html, up to the next `<h2`.
pub fn summary(report: &Path) -> Option<String> {
    let html = std::fs::read_to_string(report).ok()?;
    let start = html.find("<h2 id=\"summary\">")?;
    let rest = &html[start..];
    let end = rest[4..].find("<h2").map_or(rest.len(), |e| e + 4);
    Some(rest[..end].to_owned())
}

/// Everything the Run page shows (blocking).
pub fn run_json(options: &ExploreOptions) -> RunJson {
    let report = options.layout.report_html();
    RunJson {
        profile: options.layout.profile().to_owned(),
        artifacts: options.layout.profile_dir().display().to_string(),
        status: status(options),
        summary_html: summary(&report),
        figures: figures(options),
        report: report.is_file().then(|| "/run/report".to_owned()),
    }
}

/// The Run page.
pub fn page(run: &RunJson) -> String {
    let mut b = format!(
        "<h1>Run: profile {} ({})</h1><h2>Status</h2><p class=\"meta\">What <code>just status</code> prints: whether each stage's artifacts are up to date with the settings and their inputs.</p><table id=\"status\"><tr><th>stage</th><th>state</th><th>make it with</th></tr>",
        escape(&run.profile),
        escape(&run.artifacts)
    );
    for s in &run.status {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.stage),
            escape(&s.state),
            s.recipe
                .as_ref()
                .map(|r| format!("<code>{}</code>", escape(r)))
                .unwrap_or_default()
        );
    }
    b.push_str("</table>");
    match &run.summary_html {
        // The report is written by the analyze stage (its text escaped there).
        Some(summary) => {
            b.push_str("<section id=\"report-summary\">");
            b.push_str(summary);
            b.push_str("</section>");
        }
        None => b.push_str(
            "<p class=\"fail\" id=\"no-report\">No report yet: make it with <code>just analyze</code> (or <code>just all</code>).</p>",
        ),
    }
    if let Some(r) = &run.report {
        let _ = write!(
            b,
            "<p><a id=\"full-report\" href=\"{}\">The full report</a></p>",
            escape(r)
        );
    }
    if !run.figures.is_empty() {
        b.push_str("<h2>Figures</h2><div id=\"figures\">");
        for f in run.figures.iter().filter(|f| f.ends_with(".png")) {
            let _ = write!(
                b,
                "<figure><img class=\"figure\" src=\"/run/figures/{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
                html::encode(f),
                escape(f),
                escape(f)
            );
        }
        b.push_str("</div>");
    }
    html::page("Run", Some("run"), &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_the_section_up_to_the_next_heading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("report.html");
        std::fs::write(
            &path,
            "<h1>r</h1><h2 id=\"contents\">c</h2><h2 id=\"summary\">Summary</h2><p>best 78%</p><h2 id=\"test\">t</h2>",
        )
        .expect("write");
        assert_eq!(
            summary(&path).as_deref(),
            Some("<h2 id=\"summary\">Summary</h2><p>best 78%</p>")
        );
        assert_eq!(summary(&dir.path().join("none.html")), None);
    }
}
