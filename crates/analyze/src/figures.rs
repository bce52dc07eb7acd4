//! The figures, drawn with plotters into PNG (an RGB buffer encoded by `ferbayes_render::png`)
//! and SVG, with text in the bundled DejaVu Sans (`ferbayes_render::font`) so that no system
//! font is needed.
//!
//! Face images are not drawn by plotters: a figure records where each goes ([`Placed`]) and they
//! are pasted into the PNG buffer (nearest-neighbour) or embedded into the SVG as a small
//! base64 PNG `<image>`, which keeps the SVG compact.

use std::path::PathBuf;

use ferbayes_core::io::write_atomic;
use ferbayes_core::{EMOTIONS, IMAGE_SIDE, Layout, Method, NUM_CLASSES};
use ferbayes_render::font::{FAMILY as FONT, ensure_font};
use ferbayes_render::glyphs::GlyphBitMap;
use ferbayes_render::png::{Channels, Compression};
use ferbayes_uq::calibration::Bin;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{AnalyzeError, Result};

type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// The colour of a method's lines and bars.
pub fn method_color(method: Method) -> RGBColor {
    match method {
        Method::McDropout => RGBColor(31, 119, 180),
        Method::McDropConnect => RGBColor(230, 110, 0),
        Method::Ensemble => RGBColor(44, 160, 44),
        // The next colours of the same (matplotlib tab10) palette.
        Method::Variational => RGBColor(214, 39, 40),
        Method::Swag => RGBColor(148, 103, 189),
        Method::Laplace => RGBColor(140, 86, 75),
        Method::BatchEnsemble => RGBColor(227, 119, 194),
    }
}

pub const CROWD_COLOR: RGBColor = RGBColor(120, 120, 120);
/// Accuracy bars of the reliability diagrams (the red gap stays distinguishable on top).
const ACCURACY: RGBColor = RGBColor(40, 90, 200);
const GRID: RGBColor = RGBColor(232, 232, 232);

/// Three-letter class names for the bar charts' axes.
fn short_name(k: usize) -> &'static str {
    ["neu", "hap", "sur", "sad", "ang", "dis", "fea", "con"]
        .get(k)
        .copied()
        .unwrap_or("?")
}

/// A 48x48 face to paste at (x, y) with side `side` pixels (absolute figure coordinates).
#[derive(Debug, Clone)]
pub struct Placed {
    x: i32,
    y: i32,
    side: u32,
    pixels: Vec<u8>,
}

/// Something drawable on any plotters backend.
pub trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        faces: &mut Vec<Placed>,
    ) -> DrawResult<DB>;
}

/// Draws `figure` to `figures/<stem>.png` and `.svg` (each written atomically).
pub fn save<F: Figure>(layout: &Layout, stem: &str, figure: &F) -> Result<Vec<PathBuf>> {
    ensure_font()?;
    let (w, h) = figure.size();
    let png_path = layout.figure(&format!("{stem}.png"));
    let svg_path = layout.figure(&format!("{stem}.svg"));
    let fail = |path: &PathBuf, e: String| AnalyzeError::Figure {
        path: path.clone(),
        message: e,
    };

    let mut buf = vec![255u8; w as usize * h as usize * 3];
    let mut faces = Vec::new();
    {
        let root = GlyphBitMap::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| fail(&png_path, e.to_string()))?;
        figure
            .draw(&root, &mut faces)
            .map_err(|e| fail(&png_path, e.to_string()))?;
        root.present().map_err(|e| fail(&png_path, e.to_string()))?;
    }
    for face in &faces {
        paste(&mut buf, w, h, face);
    }
    let png = encode_rgb(&buf, w, h).map_err(|e| fail(&png_path, e))?;
    write_atomic(&png_path, &png)?;

    let mut svg = String::new();
    faces.clear();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| fail(&svg_path, e.to_string()))?;
        figure
            .draw(&root, &mut faces)
            .map_err(|e| fail(&svg_path, e.to_string()))?;
        root.present().map_err(|e| fail(&svg_path, e.to_string()))?;
    }
    let mut images = String::new();
    for face in &faces {
        let png = encode_gray(&face.pixels).map_err(|e| fail(&svg_path, e))?;
        images.push_str(&format!(
            "<image x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" style=\"image-rendering:pixelated\" href=\"{}\"/>\n",
            face.x,
            face.y,
            face.side,
            face.side,
            ferbayes_render::png_data_uri(&png)
        ));
    }
    let at = svg.rfind("</svg>").unwrap_or(svg.len());
    svg.insert_str(at, &images);
    write_atomic(&svg_path, svg.as_bytes())?;
    Ok(vec![png_path, svg_path])
}

/// Pastes a 48x48 grayscale face into an RGB buffer, scaled nearest-neighbour.
fn paste(buf: &mut [u8], w: u32, h: u32, face: &Placed) {
    let side = face.side as usize;
    for dy in 0..side {
        for dx in 0..side {
            let (x, y) = (face.x + dx as i32, face.y + dy as i32);
            if x < 0 || y < 0 || x >= w as i32 || y >= h as i32 {
                continue;
            }
            let sx = dx * IMAGE_SIDE / side;
            let sy = dy * IMAGE_SIDE / side;
            let v = face.pixels.get(sy * IMAGE_SIDE + sx).copied().unwrap_or(0);
            let at = (y as usize * w as usize + x as usize) * 3;
            if let Some(px) = buf.get_mut(at..at + 3) {
                px.fill(v);
            }
        }
    }
}

/// A figure's PNG: the smallest files (they are kept), as the figures always were.
fn encode_rgb(buf: &[u8], w: u32, h: u32) -> std::result::Result<Vec<u8>, String> {
    ferbayes_render::png::encode(buf, w, h, Channels::Rgb, Compression::Small)
        .map_err(|e| e.to_string())
}

fn encode_gray(pixels: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let side = IMAGE_SIDE as u32;
    ferbayes_render::png::encode(pixels, side, side, Channels::Gray, Compression::Small)
        .map_err(|e| e.to_string())
}

/// A value range padded by 6% (at least ±0.01 around a constant), ignoring NaN.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.06).max(0.01);
    (lo - pad, hi + pad)
}

/// The corner of a panel with the fewest data points under it (points scaled to [0, 1]²;
/// a legend covers about the outer 55% of the width and 30% of the height), preferring the
/// upper right on ties.
fn legend_corner(points: &[(f64, f64)]) -> SeriesLabelPosition {
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let covered = |right: bool, upper: bool| {
        points
            .iter()
            .filter(|(x, y)| {
                let in_x = if right { *x >= 0.45 } else { *x <= 0.55 };
                let in_y = if upper { *y >= 0.7 } else { *y <= 0.3 };
                in_x && in_y
            })
            .count()
    };
    corners
        .into_iter()
        .min_by_key(|&(_, right, upper)| covered(right, upper))
        .map_or(SeriesLabelPosition::UpperRight, |c| c.0)
}

fn int_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 && *x >= 0.5 {
        format!("{}", x.round() as i64)
    } else {
        String::new()
    }
}

/// One line of a metric-vs-n panel.
#[derive(Debug, Clone)]
pub struct Line {
    pub method: Method,
    /// (n, value) of the index-order curve.
    pub points: Vec<(f64, f64)>,
    /// (n, mean, std) over random orderings; empty for the MC methods.
    pub band: Vec<(f64, f64, f64)>,
}

/// Fig. 1–3: a metric of the test split vs n, one panel per architecture.
#[derive(Debug, Clone)]
pub struct VsN {
    pub y_label: String,
    pub panels: Vec<(String, Vec<Line>)>,
}

impl Figure for VsN {
    fn size(&self) -> (u32, u32) {
        (430 * self.panels.len().max(1) as u32, 400)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        _: &mut Vec<Placed>,
    ) -> DrawResult<DB> {
        let areas = root.split_evenly((1, self.panels.len().max(1)));
        for (area, (title, lines)) in areas.iter().zip(&self.panels) {
            let t_max = lines
                .iter()
                .flat_map(|l| l.points.iter().map(|p| p.0))
                .fold(1.0f64, f64::max);
            let (lo, hi) = padded_range(lines.iter().flat_map(|l| {
                l.points
                    .iter()
                    .map(|p| p.1)
                    .chain(l.band.iter().flat_map(|b| [b.1 - b.2, b.1 + b.2]))
            }));
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FONT, 20))
                .margin(12)
                .x_label_area_size(42)
                .y_label_area_size(62)
                .build_cartesian_2d(0.5..t_max + 0.5, lo..hi)?;
            chart
                .configure_mesh()
                .x_desc("n (MC samples / ensemble members)")
                .y_desc(self.y_label.as_str())
                .x_labels(t_max.min(16.0) as usize)
                .x_label_formatter(&int_label)
                .y_label_formatter(&|v| format!("{v:.3}"))
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .bold_line_style(GRID)
                .light_line_style(WHITE)
                .draw()?;
            for line in lines {
                let color = method_color(line.method);
                if !line.band.is_empty() {
                    draw_band(&mut chart, &line.band, color)?;
                }
                let pts: Vec<(f64, f64)> = line
                    .points
                    .iter()
                    .copied()
                    .filter(|p| p.1.is_finite())
                    .collect();
                let name = if line.band.is_empty() {
                    line.method.as_str().to_owned()
                } else {
                    format!("{} (band: orderings)", line.method)
                };
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
            let occupied: Vec<(f64, f64)> = lines
                .iter()
                .flat_map(|l| {
                    l.points.iter().copied().chain(
                        l.band
                            .iter()
                            .flat_map(|b| [(b.0, b.1 - b.2), (b.0, b.1 + b.2)]),
                    )
                })
                .map(|(x, y)| ((x - 0.5) / t_max, (y - lo) / (hi - lo)))
                .collect();
            draw_legend(&mut chart, legend_corner(&occupied), 13.0)?;
        }
        Ok(())
    }
}

/// The series legend of every figure: a translucent white box with a thin border at `position`.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    font_size: f64,
) -> DrawResult<DB> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, font_size))
        .draw()?;
    Ok(())
}

/// The ordering band of a metric-vs-n line: mean ± std as a shaded polygon, the mean dashed.
fn draw_band<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    band: &[(f64, f64, f64)],
    color: RGBColor,
) -> DrawResult<DB> {
    let finite = |b: &&(f64, f64, f64)| b.1.is_finite() && b.2.is_finite();
    let mut outline: Vec<(f64, f64)> = band
        .iter()
        .filter(finite)
        .map(|b| (b.0, b.1 + b.2))
        .collect();
    outline.extend(band.iter().rev().filter(finite).map(|b| (b.0, b.1 - b.2)));
    chart.draw_series(std::iter::once(Polygon::new(
        outline,
        color.mix(0.2).filled(),
    )))?;
    chart.draw_series(DashedLineSeries::new(
        band.iter()
            .filter(finite)
            .map(|b| (b.0, b.1))
            .collect::<Vec<_>>(),
        5,
        4,
        color.mix(0.8).stroke_width(1),
    ))?;
    Ok(())
}

/// One panel of a reliability figure.
#[derive(Debug, Clone)]
pub struct ReliabilityPanel {
    pub title: String,
    /// What each bin's bar measures: `accuracy` (the majority label's hit rate) or the crowd's
    /// vote share on the predicted class.
    pub y_label: String,
    /// The name of the calibration error printed in the panel (`ECE`, `crowd ECE`).
    pub ece_name: String,
    pub bins: Vec<Bin>,
    pub ece: f64,
    pub error: f64,
}

/// Fig. 5: reliability diagram (accuracy per bin, gap to the diagonal) over the confidence
/// histogram, one column per chosen n.
#[derive(Debug, Clone)]
pub struct Reliability {
    pub title: String,
    /// Colour of the confidence histogram (the method's).
    pub color: RGBColor,
    pub panels: Vec<ReliabilityPanel>,
}

/// Pixels of the figure title's font.
const TITLE_SIZE: u32 = 20;

impl Figure for Reliability {
    /// 440 pixels per panel, wider where the title would not fit (it is centred, so a title wider
    /// than the figure would start left of it).
    fn size(&self) -> (u32, u32) {
        let panels = 440 * self.panels.len().max(1) as u32;
        let title = ferbayes_render::glyphs::text_width(&self.title, f64::from(TITLE_SIZE)) + 40;
        (panels.max(title), 600)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        _: &mut Vec<Placed>,
    ) -> DrawResult<DB> {
        let body = root.titled(&self.title, (FONT, TITLE_SIZE))?;
        let columns = body.split_evenly((1, self.panels.len().max(1)));
        for (area, panel) in columns.iter().zip(&self.panels) {
            let (top, bottom) = area.split_vertically(area.dim_in_pixel().1 * 68 / 100);
            reliability_bars(&top, panel)?;
            confidence_histogram(&bottom, panel, self.color)?;
        }
        Ok(())
    }
}

/// The upper part of a reliability panel: the bars per bin, their gap to the diagonal, the
/// diagonal and the calibration error.
fn reliability_bars<DB: DrawingBackend>(
    top: &DrawingArea<DB, Shift>,
    panel: &ReliabilityPanel,
) -> DrawResult<DB> {
    let mut chart = ChartBuilder::on(top)
        .caption(&panel.title, (FONT, 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("confidence")
        .y_desc(panel.y_label.as_str())
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .draw()?;
    let filled: Vec<&Bin> = panel.bins.iter().filter(|b| b.count > 0).collect();
    let color = ACCURACY;
    chart
        .draw_series(
            filled.iter().map(|b| {
                Rectangle::new([(b.lo, 0.0), (b.hi, b.accuracy)], color.mix(0.85).filled())
            }),
        )?
        .label(panel.y_label.as_str())
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.mix(0.85).filled())
        });
    let gap = RGBColor(214, 39, 40);
    chart
        .draw_series(filled.iter().map(|b| {
            Rectangle::new(
                [
                    (b.lo, b.accuracy.min(b.confidence)),
                    (b.hi, b.accuracy.max(b.confidence)),
                ],
                gap.mix(0.3).filled(),
            )
        }))?
        .label("gap to diagonal")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], gap.mix(0.3).filled()));
    chart.draw_series(filled.iter().map(|b| {
        Rectangle::new(
            [
                (b.lo, b.accuracy.min(b.confidence)),
                (b.hi, b.accuracy.max(b.confidence)),
            ],
            gap.stroke_width(1),
        )
    }))?;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            6,
            4,
            BLACK.stroke_width(1),
        ))?
        .label("perfect calibration")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
    chart.draw_series(std::iter::once(Text::new(
        format!(
            "{} {:.4}   error {:.4}",
            panel.ece_name, panel.ece, panel.error
        ),
        (0.03, 0.97),
        (FONT, 14).into_font(),
    )))?;
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 12.0)?;
    Ok(())
}

/// The lower part of a reliability panel: the fraction of faces per confidence bin.
fn confidence_histogram<DB: DrawingBackend>(
    bottom: &DrawingArea<DB, Shift>,
    panel: &ReliabilityPanel,
    color: RGBColor,
) -> DrawResult<DB> {
    let total: usize = panel.bins.iter().map(|b| b.count).sum::<usize>().max(1);
    let top_frac = panel
        .bins
        .iter()
        .map(|b| b.count as f64 / total as f64)
        .fold(0.0, f64::max)
        .max(0.05)
        * 1.1;
    let mut hist = ChartBuilder::on(bottom)
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..1.0, 0.0..top_frac)?;
    hist.configure_mesh()
        .x_desc("confidence")
        .y_desc("fraction of faces")
        .y_labels(4)
        .y_label_formatter(&|v| format!("{v:.2}"))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .draw()?;
    hist.draw_series(panel.bins.iter().filter(|b| b.count > 0).map(|b| {
        Rectangle::new(
            [(b.lo, 0.0), (b.hi, b.count as f64 / total as f64)],
            color.mix(0.8).filled(),
        )
    }))?;
    Ok(())
}

/// One cell of a face grid.
#[derive(Debug, Clone)]
pub enum Cell {
    /// A face with text lines under it.
    Face { pixels: Vec<u8>, lines: Vec<String> },
    /// Class-probability bars (one colour per series, grouped per class) with a caption and
    /// coloured footer lines.
    Bars {
        caption: String,
        series: Vec<([f32; NUM_CLASSES], RGBColor)>,
        footer: Vec<(String, RGBColor)>,
    },
}

/// Fig. 4/6/7 and the crowd comparison: rows of faces with their distributions.
#[derive(Debug, Clone)]
pub struct FaceGrid {
    pub title: String,
    pub column_widths: Vec<u32>,
    pub row_height: u32,
    pub rows: Vec<Vec<Cell>>,
}

const GRID_TITLE: u32 = 40;

impl Figure for FaceGrid {
    fn size(&self) -> (u32, u32) {
        (
            self.column_widths.iter().sum::<u32>().max(200),
            GRID_TITLE + self.row_height * self.rows.len().max(1) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        faces: &mut Vec<Placed>,
    ) -> DrawResult<DB> {
        let (title, body) = root.split_vertically(GRID_TITLE);
        let title_style = (FONT, 18)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        title.draw_text(
            &self.title,
            &title_style,
            (title.dim_in_pixel().0 as i32 / 2, GRID_TITLE as i32 / 2),
        )?;
        let mut breaks = Vec::new();
        let mut acc = 0;
        for w in &self.column_widths[..self.column_widths.len().saturating_sub(1)] {
            acc += *w as i32;
            breaks.push(acc);
        }
        let row_breaks: Vec<i32> = (1..self.rows.len())
            .map(|r| (r as u32 * self.row_height) as i32)
            .collect();
        let cells = body.split_by_breakpoints(breaks, row_breaks);
        let columns = self.column_widths.len();
        for (r, row) in self.rows.iter().enumerate() {
            for (c, cell) in row.iter().enumerate().take(columns) {
                if let Some(area) = cells.get(r * columns + c) {
                    draw_cell(area, cell, faces)?;
                }
            }
        }
        Ok(())
    }
}

fn draw_cell<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    cell: &Cell,
    faces: &mut Vec<Placed>,
) -> DrawResult<DB> {
    match cell {
        Cell::Face { pixels, lines } => draw_face_cell(area, pixels, lines, faces),
        Cell::Bars {
            caption,
            series,
            footer,
        } => draw_bars_cell(area, caption, series, footer),
    }
}

/// A face (pasted later from `faces`) with its text lines under it.
fn draw_face_cell<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    pixels: &[u8],
    lines: &[String],
    faces: &mut Vec<Placed>,
) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    let (bx, by) = area.get_base_pixel();
    let text_h = 16 * lines.len() as u32;
    let side = (w.min(h.saturating_sub(text_h + 12)))
        .saturating_sub(12)
        .max(48);
    let side = side / 48 * 48;
    let x = (w.saturating_sub(side) / 2) as i32;
    let y = 8;
    faces.push(Placed {
        x: bx + x,
        y: by + y,
        side,
        pixels: pixels.to_vec(),
    });
    area.draw(&Rectangle::new(
        [(x - 1, y - 1), (x + side as i32, y + side as i32)],
        BLACK.mix(0.4).stroke_width(1),
    ))?;
    let style = (FONT, 12)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, line) in lines.iter().enumerate() {
        area.draw_text(
            line,
            &style,
            (w as i32 / 2, y + side as i32 + 4 + 16 * i as i32),
        )?;
    }
    Ok(())
}

/// Class-probability bars with a caption and coloured footer lines.
fn draw_bars_cell<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    series: &[([f32; NUM_CLASSES], RGBColor)],
    footer: &[(String, RGBColor)],
) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    let (bx, by) = area.get_base_pixel();
    let footer_h = 16 * footer.len() as u32 + 16;
    let (top, _) = area.split_vertically(h.saturating_sub(footer_h));
    let mut chart = ChartBuilder::on(&top)
        .caption(caption, (FONT, 14))
        .margin_top(4)
        .margin_left(6)
        .margin_right(8)
        .y_label_area_size(32)
        .x_label_area_size(2)
        .build_cartesian_2d(-0.5..(NUM_CLASSES as f64 - 0.5), 0.0..1.0)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(3)
        .y_label_formatter(&|v| format!("{v:.1}"))
        .label_style((FONT, 11))
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .draw()?;
    let groups = series.len().max(1) as f64;
    let width = 0.8 / groups;
    for (g, (probs, color)) in series.iter().enumerate() {
        let color = *color;
        chart.draw_series(probs.iter().enumerate().map(|(k, &p)| {
            let x0 = k as f64 - 0.4 + g as f64 * width;
            Rectangle::new(
                [(x0, 0.0), (x0 + width, f64::from(p).clamp(0.0, 1.0))],
                color.filled(),
            )
        }))?;
    }
    let label = (FONT, 10)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for k in 0..NUM_CLASSES {
        let (px, py) = chart.backend_coord(&(k as f64, 0.0));
        area.draw_text(short_name(k), &label, (px - bx, py - by + 3))?;
    }
    let (_, base_y) = chart.backend_coord(&(0.0, 0.0));
    for (i, (line, color)) in footer.iter().enumerate() {
        let style = (FONT, 13)
            .into_font()
            .color(color)
            .pos(Pos::new(HPos::Center, VPos::Top));
        area.draw_text(
            line,
            &style,
            (w as i32 / 2, base_y - by + 17 + 16 * i as i32),
        )?;
    }
    Ok(())
}

/// The predicted class name of a distribution.
pub fn class_name(p: &[f32]) -> &'static str {
    EMOTIONS.get(ferbayes_uq::argmax(p)).copied().unwrap_or("?")
}

/// The entropy-vs-crowd-entropy scatter, one panel per architecture.
#[derive(Debug, Clone)]
pub struct Scatter {
    pub panels: Vec<ScatterPanel>,
}

/// One panel of [`Scatter`].
#[derive(Debug, Clone)]
pub struct ScatterPanel {
    pub title: String,
    /// (crowd entropy, predictive entropy) per face.
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
}

impl Figure for Scatter {
    fn size(&self) -> (u32, u32) {
        (400 * self.panels.len().max(1) as u32, 420)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        _: &mut Vec<Placed>,
    ) -> DrawResult<DB> {
        let areas = root.split_evenly((1, self.panels.len().max(1)));
        let top = (NUM_CLASSES as f64).ln() * 1.02;
        for (
            area,
            ScatterPanel {
                title,
                points,
                color,
            },
        ) in areas.iter().zip(&self.panels)
        {
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FONT, 15))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(52)
                .build_cartesian_2d(0.0..top, 0.0..top)?;
            chart
                .configure_mesh()
                .x_desc("crowd entropy (nats)")
                .y_desc("predictive entropy (nats)")
                .x_label_formatter(&|v| format!("{v:.1}"))
                .y_label_formatter(&|v| format!("{v:.1}"))
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 13))
                .bold_line_style(GRID)
                .light_line_style(WHITE)
                .draw()?;
            chart.draw_series(DashedLineSeries::new(
                vec![(0.0, 0.0), (top, top)],
                5,
                4,
                BLACK.mix(0.5).stroke_width(1),
            ))?;
            let color = *color;
            chart.draw_series(
                points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .map(|&p| Circle::new(p, 2, color.mix(0.35).filled())),
            )?;
        }
        Ok(())
    }
}

/// One line of a [`LinePanels`] panel.
#[derive(Debug, Clone)]
pub struct PanelLine {
    /// Legend entry.
    pub label: String,
    pub color: RGBColor,
    /// Dashed instead of solid.
    pub dashed: bool,
    /// Draw a dot at every point (for short lines such as severities 0..5).
    pub markers: bool,
    /// (x, y) in order; non-finite y values are left out.
    pub points: Vec<(f64, f64)>,
}

/// Panels of lines in a grid (row-major), sharing the axes' ranges: the risk–coverage curves
/// (one panel) and the dataset-shift metrics (one panel per corruption). The legend goes into
/// the first panel.
#[derive(Debug, Clone)]
pub struct LinePanels {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// The x axis' range.
    pub x_range: (f64, f64),
    /// Integer tick labels on x (severities).
    pub integer_x: bool,
    /// Panels per row.
    pub columns: usize,
    /// (title, lines) of each panel.
    pub panels: Vec<(String, Vec<PanelLine>)>,
}

const PANELS_TITLE: u32 = 36;

impl LinePanels {
    /// The shared y range of every panel, padded; non-negative metrics (risk, error, ECE) keep
    /// their axis at 0.
    fn y_range(&self) -> (f64, f64) {
        let ys = || {
            self.panels
                .iter()
                .flat_map(|(_, lines)| lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)))
        };
        let (lo, hi) = padded_range(ys());
        if ys().filter(|v| v.is_finite()).all(|v| v >= 0.0) {
            (lo.max(0.0), hi)
        } else {
            (lo, hi)
        }
    }

    fn grid(&self) -> (usize, usize) {
        let columns = self.columns.clamp(1, self.panels.len().max(1));
        (self.panels.len().max(1).div_ceil(columns), columns)
    }
}

impl Figure for LinePanels {
    fn size(&self) -> (u32, u32) {
        let (rows, columns) = self.grid();
        (
            (400 * columns as u32).max(520),
            PANELS_TITLE + 340 * rows as u32,
        )
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        _: &mut Vec<Placed>,
    ) -> DrawResult<DB> {
        let body = root.titled(&self.title, (FONT, 18))?;
        let (rows, columns) = self.grid();
        let areas = body.split_evenly((rows, columns));
        let (x0, x1) = self.x_range;
        let (lo, hi) = self.y_range();
        for (n, (area, (title, lines))) in areas.iter().zip(&self.panels).enumerate() {
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FONT, 16))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(58)
                .build_cartesian_2d(x0..x1, lo..hi)?;
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(self.x_label.as_str())
                .y_desc(self.y_label.as_str())
                .y_label_formatter(&|v| format!("{v:.3}"))
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 13))
                .bold_line_style(GRID)
                .light_line_style(WHITE);
            if self.integer_x {
                mesh.x_labels(((x1 - x0).round() as usize + 1).min(16))
                    .x_label_formatter(&|x| {
                        if (x - x.round()).abs() < 1e-6 {
                            format!("{}", x.round() as i64)
                        } else {
                            String::new()
                        }
                    });
            } else {
                mesh.x_label_formatter(&|v| format!("{v:.1}"));
            }
            mesh.draw()?;
            for line in lines {
                let color = line.color;
                let pts: Vec<(f64, f64)> = line
                    .points
                    .iter()
                    .copied()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .collect();
                let style = color.stroke_width(2);
                let series = if line.dashed {
                    chart.draw_series(DashedLineSeries::new(pts.clone(), 7, 4, style))?
                } else {
                    chart.draw_series(LineSeries::new(pts.clone(), style))?
                };
                if n == 0 {
                    let dashed = line.dashed;
                    series.label(line.label.as_str()).legend(move |(x, y)| {
                        let dash = if dashed { 6 } else { 20 };
                        DashedPathElement::new(vec![(x, y), (x + 20, y)], dash, 3, style)
                    });
                }
                if line.markers {
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
                }
            }
            if n == 0 && lines.iter().any(|l| !l.points.is_empty()) {
                let occupied: Vec<(f64, f64)> = lines
                    .iter()
                    .flat_map(|l| l.points.iter().copied())
                    .map(|(x, y)| ((x - x0) / (x1 - x0), (y - lo) / (hi - lo)))
                    .collect();
                draw_legend(&mut chart, legend_corner(&occupied), 12.0)?;
            }
        }
        Ok(())
    }
}

/// One overlaid histogram of a [`Histograms`] panel.
#[derive(Debug, Clone)]
pub struct HistogramSeries {
    /// Legend entry.
    pub label: String,
    pub color: RGBColor,
    /// The values; each series is normalised to fractions summing to 1.
    pub values: Vec<f64>,
}

/// Overlaid normalised histograms, one panel per entry in a row (the OOD entropy histograms:
/// one panel per method, test faces against each OOD set).
#[derive(Debug, Clone)]
pub struct Histograms {
    pub title: String,
    pub x_label: String,
    /// The binned range; values outside go to the first or last bin.
    pub range: (f64, f64),
    pub bins: usize,
    /// (title, series) of each panel.
    pub panels: Vec<(String, Vec<HistogramSeries>)>,
}

/// The fraction of `values` in each of `bins` equal-width bins of `range` (values outside the
/// range in the end bins, NaN left out); all zero when no value is finite.
pub fn histogram(values: &[f64], range: (f64, f64), bins: usize) -> Vec<f64> {
    let bins = bins.max(1);
    let mut counts = vec![0usize; bins];
    let width = (range.1 - range.0) / bins as f64;
    let mut total = 0usize;
    for &v in values.iter().filter(|v| !v.is_nan()) {
        let b = if width > 0.0 {
            ((v - range.0) / width)
                .floor()
                .clamp(0.0, (bins - 1) as f64) as usize
        } else {
            0
        };
        counts[b] += 1;
        total += 1;
    }
    counts
        .into_iter()
        .map(|c| {
            if total == 0 {
                0.0
            } else {
                c as f64 / total as f64
            }
        })
        .collect()
}

impl Figure for Histograms {
    fn size(&self) -> (u32, u32) {
        ((420 * self.panels.len().max(1) as u32).max(520), 400)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        _: &mut Vec<Placed>,
    ) -> DrawResult<DB> {
        let body = root.titled(&self.title, (FONT, 18))?;
        let areas = body.split_evenly((1, self.panels.len().max(1)));
        let (x0, x1) = self.range;
        let width = (x1 - x0) / self.bins.max(1) as f64;
        for (area, (title, series)) in areas.iter().zip(&self.panels) {
            let fractions: Vec<Vec<f64>> = series
                .iter()
                .map(|s| histogram(&s.values, self.range, self.bins))
                .collect();
            let top = fractions.iter().flatten().copied().fold(0.05, f64::max) * 1.1;
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FONT, 16))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(52)
                .build_cartesian_2d(x0..x1, 0.0..top)?;
            chart
                .configure_mesh()
                .x_desc(self.x_label.as_str())
                .y_desc("fraction of images")
                .x_label_formatter(&|v| format!("{v:.1}"))
                .y_label_formatter(&|v| format!("{v:.2}"))
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 13))
                .bold_line_style(GRID)
                .light_line_style(WHITE)
                .draw()?;
            for (s, fr) in series.iter().zip(&fractions) {
                let color = s.color;
                chart.draw_series(fr.iter().enumerate().filter(|(_, f)| **f > 0.0).map(
                    |(b, &f)| {
                        let lo = x0 + b as f64 * width;
                        Rectangle::new([(lo, 0.0), (lo + width, f)], color.mix(0.2).filled())
                    },
                ))?;
                let mut outline = vec![(x0, 0.0)];
                for (b, &f) in fr.iter().enumerate() {
                    let lo = x0 + b as f64 * width;
                    outline.push((lo, f));
                    outline.push((lo + width, f));
                }
                outline.push((x1, 0.0));
                chart
                    .draw_series(LineSeries::new(outline, color.stroke_width(2)))?
                    .label(format!("{} ({})", s.label, s.values.len()))
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.mix(0.6).filled())
                    });
            }
            let occupied: Vec<(f64, f64)> = fractions
                .iter()
                .flat_map(|fr| {
                    fr.iter()
                        .enumerate()
                        .filter(|(_, f)| **f > 0.0)
                        .map(|(b, &f)| ((b as f64 + 0.5) / self.bins.max(1) as f64, f / top))
                })
                .collect();
            draw_legend(&mut chart, legend_corner(&occupied), 12.0)?;
        }
        Ok(())
    }
}

/// Colours of the OOD sets in the histograms, in set order (cycled).
pub const SET_COLORS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The leftmost column of a non-white pixel in the title strip (the top 30 rows) of a
    /// figure drawn as the PNG is, and the figure's width.
    fn title_extent<F: Figure>(figure: &F) -> (Option<u32>, u32) {
        ensure_font().expect("font");
        let (w, h) = figure.size();
        let mut buf = vec![255u8; w as usize * h as usize * 3];
        {
            let root = GlyphBitMap::with_buffer(&mut buf, (w, h)).into_drawing_area();
            figure.draw(&root, &mut Vec::new()).expect("draws");
            root.present().expect("presents");
        }
        let left = (0..w).find(|&x| {
            (0..30u32).any(|y| {
                let at = (y as usize * w as usize + x as usize) * 3;
                buf[at..at + 3].iter().any(|&v| v < 128)
            })
        });
        (left, w)
    }

    /// A reliability figure whose two panels collapse into one (the same n is best for
    /// accuracy and ECE) keeps its whole title inside the canvas: it starts right of the left
    /// edge and ends left of the right edge.
    #[test]
    fn one_panel_reliability_title_is_not_clipped() {
        let bins = ferbayes_uq::calibration::reliability(&[[0.7f32, 0.3], [0.4, 0.6]], &[0, 1], 10);
        let figure = Reliability {
            title: "densenet121 / mc_dropconnect: reliability on the test split".into(),
            color: RGBColor(10, 10, 10),
            panels: vec![ReliabilityPanel {
                title: "n = 3: best accuracy and lowest ECE".into(),
                y_label: "accuracy".into(),
                ece_name: "ECE".into(),
                bins,
                ece: 0.1,
                error: 0.2,
            }],
        };
        let (left, w) = title_extent(&figure);
        let left = left.expect("the title is drawn");
        assert!(left >= 5, "title starts at column {left}");
        let width = ferbayes_render::glyphs::text_width(&figure.title, f64::from(TITLE_SIZE));
        assert!(
            left + width <= w - 5,
            "title ends at {} of {w}",
            left + width
        );
    }
}
