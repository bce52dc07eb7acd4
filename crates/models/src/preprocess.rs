//! Pixels to network input.

use candle_core::{Device, Tensor};

use crate::error::Result;

/// Side of the FER+ images (48x48 grey levels).
pub const SOURCE_SIZE: usize = 48;

/// Integer square root (exact for perfect squares).
fn side_of(len: usize) -> usize {
    let mut s = (len as f64).sqrt() as usize;
    while s * s > len {
        s -= 1;
    }
    while (s + 1) * (s + 1) <= len {
        s += 1;
    }
    s
}

/// A square grey image (row-major u8, normally 48x48) to `input_size` x
/// `input_size` f32 values in [0, 1]: divided by 255 and, when the size differs,
/// bilinearly resized with [`resize_bilinear`].
///
/// # Panics
/// When `pixels.len()` is not a non-zero perfect square.
pub fn preprocess(pixels: &[u8], input_size: usize) -> Vec<f32> {
    let side = side_of(pixels.len());
    assert!(
        side > 0 && side * side == pixels.len(),
        "preprocess needs a square image, got {} pixels",
        pixels.len()
    );
    if input_size == side {
        return pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    }
    let src: Vec<f64> = pixels.iter().map(|&p| f64::from(p)).collect();
    resize(&src, side, side, input_size, input_size)
        .into_iter()
        .map(|v| (v / 255.0) as f32)
        .collect()
}

/// Bilinear resize of a row-major `in_h` x `in_w` image to `out_h` x `out_w`, with
/// PyTorch `interpolate(mode="bilinear", align_corners=False)` / OpenCV
/// `INTER_LINEAR` semantics: output pixel d samples source coordinate
/// `(d + 0.5) * in / out - 0.5` (half-pixel centres), negative coordinates
/// clamp to 0 and the right/bottom neighbour clamps to the last pixel; no
/// antialiasing. Unlike OpenCV on u8 images the result is not rounded.
///
/// # Panics
/// When `src.len() != in_h * in_w`.
pub fn resize_bilinear(
    src: &[f32],
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    assert_eq!(
        src.len(),
        in_h * in_w,
        "resize_bilinear: wrong source length"
    );
    let src: Vec<f64> = src.iter().map(|&v| f64::from(v)).collect();
    resize(&src, in_h, in_w, out_h, out_w)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// For each output index: (lower source index, upper source index, weight of upper).
fn taps(input: usize, output: usize) -> Vec<(usize, usize, f64)> {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|d| {
            let s = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(input - 1);
            let i1 = if i0 + 1 < input { i0 + 1 } else { i0 };
            let w = (s - i0 as f64).clamp(0.0, 1.0);
            (i0, i1, w)
        })
        .collect()
}

fn resize(src: &[f64], in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Vec<f64> {
    if out_h == 0 || out_w == 0 || in_h == 0 || in_w == 0 {
        return vec![0.0; out_h * out_w];
    }
    let ys = taps(in_h, out_h);
    let xs = taps(in_w, out_w);
    let mut out = Vec::with_capacity(out_h * out_w);
    for &(y0, y1, wy) in &ys {
        for &(x0, x1, wx) in &xs {
            let p = |y: usize, x: usize| src[y * in_w + x];
            let top = p(y0, x0) * (1.0 - wx) + p(y0, x1) * wx;
            let bottom = p(y1, x0) * (1.0 - wx) + p(y1, x1) * wx;
            out.push(top * (1.0 - wy) + bottom * wy);
        }
    }
    out
}

/// A (B, 1, S, S) f32 input batch from B square u8 images, each through
/// [`preprocess`].
///
/// # Panics
/// As [`preprocess`].
pub fn batch_tensor<'a, I>(images: I, input_size: usize, device: &Device) -> Result<Tensor>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut data = Vec::new();
    let mut b = 0;
    for img in images {
        data.extend(preprocess(img, input_size));
        b += 1;
    }
    Ok(Tensor::from_vec(
        data,
        (b, 1, input_size, input_size),
        device,
    )?)
}
