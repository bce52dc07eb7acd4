//! HTML pieces every page shares: escaping (`ferbayes_render::html`), the page frame with its
//! navigation (in `ferbayes_render::html`'s document frame), probability bars and the line
//! chart of a face's probabilities over n. No template engine: pages are
//! small and built with `format!`, every value from data or a request escaped.

use std::fmt::Write as _;

use ferbayes_core::{EMOTIONS, NUM_CLASSES, VOTE_COLUMNS};

/// One colour per emotion (FER+ order), then `unknown` and `NF` in greys.
pub const COLORS: [&str; 10] = [
    "#7f7f7f", "#2ca02c", "#17becf", "#1f77b4", "#d62728", "#8c564b", "#9467bd", "#e377c2",
    "#bbbbbb", "#444444",
];

/// `&`, `<`, `>`, `"` and `'` as entities (the one escaping function, shared with the report).
pub use ferbayes_render::html::escape;

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const CSS: &str = "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}\
nav{background:#263238;padding:.5em 1em}nav a{color:#eceff1;margin-right:1.5em;text-decoration:none;font-weight:bold}nav a.on{color:#ffd54f}\
main{padding:1em 1.5em;max-width:1500px}h1{font-size:1.4em}form.filters{display:flex;flex-wrap:wrap;gap:.4em 1em;align-items:end;background:#fff;padding:.6em;border:1px solid #ddd}\
form.filters label{display:flex;flex-direction:column;font-size:.8em;color:#555}form.filters input{width:6em}\
.sorts a{margin-right:.8em}.sorts a.on{font-weight:bold;text-decoration:none;color:#000}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:.8em;margin-top:1em}\
.card{background:#fff;border:1px solid #ddd;padding:.5em;display:grid;grid-template-columns:96px 1fr;gap:.5em;font-size:.8em}\
.card.wrong{border-left:4px solid #d62728}.card.right{border-left:4px solid #2ca02c}\
img.face{width:96px;height:96px;image-rendering:pixelated;border:1px solid #ccc}\
.bars{display:grid;grid-template-columns:5.5em 1fr 2.8em;gap:1px 4px;align-items:center}\
.bar{height:.75em;background:#eee}.bar span{display:block;height:100%}\
.pair{display:grid;grid-template-columns:1fr 1fr;gap:.6em}.pair h4{margin:.1em 0;font-size:.9em}\
.meta{color:#444}.fail{color:#b71c1c;font-weight:bold}code{background:#eee;padding:0 .2em}\
table{border-collapse:collapse;font-size:.85em;background:#fff}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:right}\
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}\
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:1em}.chart{background:#fff;border:1px solid #ddd;padding:.5em}\
.legend span{display:inline-block;margin-right:.7em;font-size:.8em}.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.2em}\
.pager a,.pager b{margin-right:.6em}figure{display:inline-block;margin:.5em;vertical-align:top;background:#fff;border:1px solid #ddd;padding:.3em}\
figure img{max-width:560px}.photo img{max-width:100%;border:1px solid #ccc}";

/// The page frame: title, the navigation (with `active` highlighted: `faces`, `photo`, `run`)
/// and `body`.
pub fn page(title: &str, active: Option<&str>, body: &str) -> String {
    let mut nav = String::new();
    for (id, href, label) in [
        ("faces", "/faces", "Faces"),
        ("photo", "/photo", "Photo"),
        ("run", "/run", "Run"),
    ] {
        let class = if active == Some(id) {
            " class=\"on\""
        } else {
            ""
        };
        let _ = write!(nav, "<a id=\"nav-{id}\" href=\"{href}\"{class}>{label}</a>");
    }
    ferbayes_render::html::document(
        &format!("{title} · ferbayes explore"),
        CSS,
        &format!("<nav>{nav}</nav>\n<main>\n{body}\n</main>\n"),
    )
}

/// A bar per entry: label, bar of width `value / max`, the value formatted by `shown`.
pub fn bars<'a>(
    entries: impl IntoIterator<Item = (&'a str, f64, &'a str)>,
    max: f64,
    shown: impl Fn(f64) -> String,
) -> String {
    let mut out = String::from("<div class=\"bars\">");
    for (label, value, color) in entries {
        let width = if max > 0.0 {
            (100.0 * value / max).clamp(0.0, 100.0)
        } else {
            0.0
        };
        let _ = write!(
            out,
            "<span>{}</span><div class=\"bar\"><span style=\"width:{width:.1}%;background:{color}\"></span></div><span>{}</span>",
            escape(label),
            escape(&shown(value))
        );
    }
    out.push_str("</div>");
    out
}

/// The model's mean probabilities as bars.
pub fn prob_bars(probs: &[f32; NUM_CLASSES]) -> String {
    bars(
        EMOTIONS
            .iter()
            .zip(probs)
            .zip(COLORS)
            .map(|((e, &p), c)| (*e, f64::from(p), c)),
        1.0,
        |v| format!("{:.0}%", 100.0 * v),
    )
}

/// The crowd's ten votes as bars (share of the votes, count shown).
pub fn vote_bars(votes: &[u8]) -> String {
    let total: f64 = votes.iter().map(|&v| f64::from(v)).sum();
    bars(
        VOTE_COLUMNS
            .iter()
            .zip(votes)
            .zip(COLORS)
            .map(|((name, &v), c)| (*name, f64::from(v), c)),
        total,
        |v| format!("{v:.0}"),
    )
}

/// The legend of the emotion colours.
pub fn legend() -> String {
    let mut out = String::from("<div class=\"legend\">");
    for (e, c) in EMOTIONS.iter().zip(COLORS) {
        let _ = write!(out, "<span><i style=\"background:{c}\"></i>{e}</span>");
    }
    out.push_str("</div>");
    out
}

/// An SVG line chart of each emotion's probability (y, 0..1) against n = 1..T (x).
pub fn prob_chart(series: &[[f32; NUM_CLASSES]], id: &str) -> String {
    let (w, h, left, bottom, top, right) = (360.0, 170.0, 34.0, 22.0, 8.0, 10.0);
    let t = series.len().max(1);
    let x = |n: usize| {
        if t == 1 {
            left + (w - left - right) / 2.0
        } else {
            left + (w - left - right) * (n - 1) as f64 / (t - 1) as f64
        }
    };
    let y = |p: f64| top + (h - top - bottom) * (1.0 - p);
    let mut out = format!(
        "<svg id=\"{}\" class=\"probchart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"10\">",
        escape(id)
    );
    for tick in [0.0, 0.5, 1.0] {
        let yy = y(tick);
        let _ = write!(
            out,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"2\" y=\"{:.1}\">{tick:.1}</text>",
            w - right,
            yy + 3.0,
        );
    }
    let step = (t / 8).max(1);
    for n in (1..=t).filter(|n| *n == 1 || *n == t || n % step == 0) {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{n}</text>",
            x(n),
            h - 6.0
        );
    }
    for (k, color) in COLORS.iter().take(NUM_CLASSES).enumerate() {
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i + 1), y(f64::from(p[k]))))
            .collect();
        if t == 1 {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
                x(1),
                y(f64::from(series[0][k]))
            );
        } else {
            let _ = write!(
                out,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\" points=\"{}\"><title>{}</title></polyline>",
                points.join(" "),
                EMOTIONS[k]
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame, byte for byte as it was before `ferbayes_render::html::document` held it.
    #[test]
    fn the_page_frame() {
        assert_eq!(
            page("A & 'B'", Some("run"), "<p>x</p>"),
            format!(
                "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>A &amp; &#39;B&#39; · ferbayes explore</title>\n<style>{CSS}</style>\n</head>\n<body>\n<nav><a id=\"nav-faces\" href=\"/faces\">Faces</a><a id=\"nav-photo\" href=\"/photo\">Photo</a><a id=\"nav-run\" href=\"/run\" class=\"on\">Run</a></nav>\n<main>\n<p>x</p>\n</main>\n</body>\n</html>\n"
            )
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("a b/../é"), "a%20b%2F..%2F%C3%A9");
    }

    #[test]
    fn bars_scale_to_their_maximum() {
        let html = bars([("a", 1.0, "#000"), ("b", 3.0, "#fff")], 4.0, |v| {
            format!("{v}")
        });
        assert!(
            html.contains("width:25.0%") && html.contains("width:75.0%"),
            "{html}"
        );
    }
}
