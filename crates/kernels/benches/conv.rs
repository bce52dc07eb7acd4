//! `cargo bench -p ferbayes-kernels --bench conv` (part of `just bench`): the fast conv kernels
//! per layer shape, im2col + gemm against Winograd F(2x2, 3x3) / F(2x2, 5x5), batch 32, for
//! the 3x3 and 5x5 'same' convs of the `paper` networks and a few narrow ones like the `cpu`
//! networks'. Each time is the fastest of 5 calls after a warm-up; "chosen" is what the models
//! run (Winograd from 64x64 or 128x32 channels on, and on maps under 16x16 from 256x256 on).

#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use ferbayes_kernels::bench::{Algo, Layer};

const BATCH: usize = 32;
const REPS: usize = 5;

/// (network, k, cin, cout, side)
const LAYERS: [(&str, usize, usize, usize, usize); 17] = [
    ("paper vgg16", 3, 64, 64, 64),
    ("paper vgg16", 3, 128, 128, 32),
    ("paper vgg16", 3, 256, 256, 16),
    ("paper vgg16", 3, 512, 512, 8),
    ("paper vgg16", 3, 512, 512, 4),
    ("paper alexnet", 3, 128, 256, 16),
    ("paper alexnet", 3, 256, 256, 16),
    ("paper alexnet", 3, 256, 128, 16),
    ("paper alexnet", 5, 64, 128, 32),
    ("paper densenet121", 3, 128, 32, 16),
    ("paper densenet121", 3, 128, 32, 4),
    ("paper densenet121", 3, 128, 32, 2),
    ("cpu vgg16", 3, 32, 32, 8),
    ("cpu vgg16", 3, 64, 64, 4),
    ("cpu vgg16", 3, 64, 64, 2),
    ("cpu alexnet", 3, 64, 64, 8),
    ("cpu alexnet", 5, 16, 32, 16),
];

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// Fastest of [`REPS`] calls (after one warm-up), in ms.
fn best(f: impl Fn() -> Vec<f32>) -> f64 {
    black_box(f());
    (0..REPS)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let threads = rayon::current_num_threads();
    println!(
        "| network | kernel | channels | map | chosen | im2col fwd / dx / dw ms | Winograd fwd / dx / dw ms | speed-up fwd / dx / dw |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (net, k, cin, cout, side) in LAYERS {
        let layer = |algo| Layer::new(BATCH, cin, cout, side, side, k, k / 2, algo).expect("shape");
        let x = values(BATCH * cin * side * side, 1);
        let w = values(cout * cin * k * k, 2);
        let dy = values(BATCH * cout * side * side, 3);
        let times = |l: Layer| {
            [
                best(|| l.forward(&x, &w)),
                best(|| l.backward_input(&dy, &w)),
                best(|| l.backward_weight(&x, &dy)),
            ]
        };
        let (i, wn) = (times(layer(Algo::Im2col)), times(layer(Algo::Winograd)));
        let chosen = if layer(Algo::Auto).winograd() {
            "Winograd"
        } else {
            "im2col"
        };
        println!(
            "| {net} | {k}x{k} | {cin}→{cout} | {side}x{side} | {chosen} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} |",
            i[0],
            i[1],
            i[2],
            wn[0],
            wn[1],
            wn[2],
            i[0] / wn[0],
            i[1] / wn[1],
            i[2] / wn[2]
        );
    }
    println!(
        "\nBatch {BATCH}, {threads} threads (RAYON_NUM_THREADS). Fastest of {REPS} calls after a warm-up. \
         Inputs are deterministic values in [-1, 1]."
    );
}
