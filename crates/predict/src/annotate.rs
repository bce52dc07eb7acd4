//! `--annotate OUT.png`: the photo with each face's box and, beside it, a small bar chart of its
//! mean probabilities, both coloured by the verdict. Drawn with the report's plotting stack
//! (plotters on `ferbayes-render`'s glyph-correct bitmap backend, with the bundled DejaVu Sans
//! font).

use std::path::Path;

use ferbayes_core::EMOTIONS;
use ferbayes_render::glyphs::GlyphBitMap;
use ferbayes_render::png::{Channels, Compression};
use image::DynamicImage;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{PredictError, Result};
use crate::summary::{FacePrediction, Verdict};

/// Three-letter emotion names for the bars, FER+ order.
const SHORT: [&str; 8] = ["neu", "hap", "sur", "sad", "ang", "dis", "fea", "con"];

/// The colour of a verdict: green confident, orange ambiguous face, red unsure model.
pub fn verdict_color(v: Verdict) -> RGBColor {
    match v {
        Verdict::Confident => RGBColor(30, 150, 60),
        Verdict::AmbiguousFace => RGBColor(235, 140, 0),
        Verdict::UnsureModel => RGBColor(210, 35, 35),
    }
}

type DrawResult<T> = std::result::Result<T, String>;

/// A rectangle (left, top, width, height) in photo pixels.
type Rect = (i32, i32, i32, i32);

fn overlap(a: Rect, b: Rect) -> i64 {
    let w = (a.0 + a.2).min(b.0 + b.2) - a.0.max(b.0);
    let h = (a.1 + a.3).min(b.1 + b.3) - a.1.max(b.1);
    i64::from(w.max(0)) * i64::from(h.max(0))
}

fn box_rect(f: &FacePrediction) -> Rect {
    let b = &f.bbox;
    (b.x as i32, b.y as i32, b.width as i32, b.height as i32)
}

/// Where each face's chart goes: right of, left of, below or above its box (the first of these
/// that covers the least of the faces and of the charts already placed), inside the photo.
fn chart_places(faces: &[FacePrediction], w: u32, h: u32) -> Vec<Rect> {
    let (w, h) = (w as i32, h as i32);
    let boxes: Vec<Rect> = faces.iter().map(box_rect).collect();
    let mut placed: Vec<Rect> = Vec::with_capacity(faces.len());
    for &(bx, by, bw, bh) in &boxes {
        let cw = (bw.max(bh) * 4 / 5).clamp(100, 180).min(w);
        let ch = (cw * 4 / 5).min(h);
        let fit = |x: i32, y: i32| {
            (
                x.clamp(0, (w - cw).max(0)),
                y.clamp(0, (h - ch).max(0)),
                cw,
                ch,
            )
        };
        let candidates = [
            fit(bx + bw + 4, by),
            fit(bx - cw - 4, by),
            fit(bx, by + bh + 4),
            fit(bx, by - ch - 4),
        ];
        let cost = |r: Rect| -> i64 { boxes.iter().chain(&placed).map(|&o| overlap(r, o)).sum() };
        let best = candidates
            .iter()
            .copied()
            .min_by_key(|&r| cost(r))
            .unwrap_or(candidates[0]);
        placed.push(best);
    }
    placed
}

fn draw_box<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    f: &FacePrediction,
) -> DrawResult<()> {
    let b = &f.bbox;
    let stroke = (b.width.max(b.height) / 60).max(2);
    let (x0, y0) = (b.x as i32, b.y as i32);
    let (x1, y1) = ((b.x + b.width) as i32, (b.y + b.height) as i32);
    root.draw(&Rectangle::new(
        [(x0, y0), (x1, y1)],
        verdict_color(f.verdict).stroke_width(stroke),
    ))
    .map_err(|e| e.to_string())
}

fn draw_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    f: &FacePrediction,
    (cx, cy, cw, ch): Rect,
) -> DrawResult<()> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let color = verdict_color(f.verdict);
    root.draw(&Rectangle::new(
        [(cx, cy), (cx + cw, cy + ch)],
        WHITE.mix(0.85).filled(),
    ))
    .map_err(err)?;
    root.draw(&Rectangle::new(
        [(cx, cy), (cx + cw, cy + ch)],
        color.stroke_width(2),
    ))
    .map_err(err)?;
    draw_bars(root, f, (cx, cy, cw, ch)).map_err(err)
}

/// Title (emotion, probability, verdict) and one bar per emotion inside the chart rectangle.
fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    f: &FacePrediction,
    (cx, cy, cw, ch): Rect,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let color = verdict_color(f.verdict);
    let row = ch / 11;
    let font = f64::from(row) * 1.15;
    let title = format!("{} {:.0}%", f.emotion, 100.0 * f.confidence);
    let style = ("sans-serif", font).into_font().color(&BLACK);
    root.draw(&Text::new(title, (cx + 4, cy + 3), style.clone()))?;
    let vstyle = ("sans-serif", font).into_font().color(&color);
    root.draw(&Text::new(
        f.verdict.name(),
        (cx + 4, cy + 3 + row + 2),
        vstyle,
    ))?;
    // The face's predicted emotion (uq's first maximum), the bar highlighted.
    let best = EMOTIONS.iter().position(|e| *e == f.emotion);
    let label_w = (font * 1.8) as i32;
    let bar_x = cx + 4 + label_w;
    let bar_max = cw - label_w - 10;
    let small = ("sans-serif", font * 0.85).into_font().color(&BLACK);
    for (k, (_, p)) in f.probabilities.iter().enumerate() {
        let top = cy + 3 + (k as i32 + 2) * row + row / 2;
        root.draw(&Text::new(SHORT[k], (cx + 4, top), small.clone()))?;
        let len = ((*p * f64::from(bar_max)).round() as i32).max(1);
        let fill = if Some(k) == best {
            color
        } else {
            RGBColor(150, 150, 150)
        };
        root.draw(&Rectangle::new(
            [(bar_x, top + 1), (bar_x + len, top + row - 2)],
            fill.filled(),
        ))?;
    }
    Ok(())
}

/// The annotated photo as RGB8 pixels of the photo's size.
pub fn render(photo: &DynamicImage, faces: &[FacePrediction]) -> Result<Vec<u8>> {
    ferbayes_render::font::ensure_font().map_err(|e| PredictError::Output {
        path: "annotation".into(),
        message: e.to_string(),
    })?;
    let size = (photo.width(), photo.height());
    let mut buf = photo.to_rgb8().into_raw();
    {
        let root = GlyphBitMap::with_buffer(&mut buf, size).into_drawing_area();
        let charts = chart_places(faces, size.0, size.1);
        for f in faces {
            draw_box(&root, f).map_err(|message| PredictError::Output {
                path: f.image.clone(),
                message,
            })?;
        }
        for (f, &chart) in faces.iter().zip(&charts) {
            draw_chart(&root, f, chart).map_err(|message| PredictError::Output {
                path: f.image.clone(),
                message,
            })?;
        }
        root.present().map_err(|e| PredictError::Output {
            path: "annotation".into(),
            message: e.to_string(),
        })?;
    }
    Ok(buf)
}

/// Writes the annotated photo to `out` as PNG (atomically).
pub fn save(out: &Path, photo: &DynamicImage, faces: &[FacePrediction]) -> Result<()> {
    let buf = render(photo, faces)?;
    let png = ferbayes_render::png::encode(
        &buf,
        photo.width(),
        photo.height(),
        Channels::Rgb,
        Compression::Fast,
    )
    .map_err(|e| PredictError::Output {
        path: out.to_owned(),
        message: e.to_string(),
    })?;
    ferbayes_core::io::write_atomic(out, &png)?;
    Ok(())
}
