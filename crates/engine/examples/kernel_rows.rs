//! Times the quantized matrix-vector kernels alone on one thread, one row at a time against
//! several rows at once, alternating, on a Q4_1 matrix of this model's FFN shape (1536 × 576).
//! `cargo run --release -p switchboard-engine --example kernel_rows`
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use switchboard_engine::tensor::{
    qdot, qdot_rows, quantize_rows, ActBlock, DType, ROW_TILE, TOKEN_TILE,
};

fn main() {
    let (rows, cols) = (1536usize, 576usize);
    let block_bytes = 20;
    let row_bytes = cols / 32 * block_bytes;
    // Deterministic pseudo-random blocks with sane f16 scales (0x2000 ≈ 0.0078).
    let mut weights = vec![0u8; rows * row_bytes];
    let mut state = 0x1234_5678u32;
    for (i, byte) in weights.iter_mut().enumerate() {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *byte = match i % block_bytes {
            1 | 3 => 0x20,
            0 | 2 => 0,
            _ => (state >> 24) as u8,
        };
    }
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    let mut acts: Vec<ActBlock> = Vec::new();
    quantize_rows(&x, cols, true, &mut acts);
    let mut out = vec![0f32; rows];
    let mut tile = [0f32; TOKEN_TILE];
    let one_row = |out: &mut [f32], tile: &mut [f32; TOKEN_TILE]| {
        for r in 0..rows {
            qdot(
                DType::Q4_1,
                &weights[r * row_bytes..(r + 1) * row_bytes],
                &acts,
                1,
                tile,
            );
            out[r] = tile[0];
        }
    };
    let many_rows = |out: &mut [f32], tile: &mut [f32; TOKEN_TILE]| {
        for r in (0..rows).step_by(ROW_TILE) {
            qdot_rows(
                DType::Q4_1,
                &weights[r * row_bytes..(r + ROW_TILE) * row_bytes],
                row_bytes,
                ROW_TILE,
                &acts,
                tile,
            );
            out[r..r + ROW_TILE].copy_from_slice(&tile[..ROW_TILE]);
        }
    };
    let reps = 400;
    for round in 0..5 {
        let start = Instant::now();
        for _ in 0..reps {
            one_row(&mut out, &mut tile);
        }
        let single = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for _ in 0..reps {
            many_rows(&mut out, &mut tile);
        }
        let multi = start.elapsed().as_secs_f64();
        println!(
            "round {round}: one row {:.1} µs/matvec, {ROW_TILE} rows {:.1} µs/matvec, ratio {:.2}",
            single / f64::from(reps) * 1e6,
            multi / f64::from(reps) * 1e6,
            single / multi
        );
    }
}
