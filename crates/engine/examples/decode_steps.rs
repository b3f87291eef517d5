//! Times the forward pass alone (no HTTP, no sampling): decode steps per second for batches of
//! 1, 4 and 16 sequences (`SEQUENCES=1,32`, `STEPS=`) at a few hundred tokens of context. For comparing kernel variants on
//! one machine, run alternately, e.g.
//! `SWITCHBOARD_KERNEL=vnni cargo run --release -p switchboard-engine --example decode_steps`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Instant;

use switchboard_engine::gguf::GgufFile;
use switchboard_engine::kv::KvCache;
use switchboard_engine::transformer::{BatchToken, Scratch, Transformer};

fn main() {
    let path = std::env::args()
        .nth(1)
        .map_or_else(switchboard_testkit::default_model_path, PathBuf::from);
    let file = GgufFile::open(&path).unwrap();
    let model = Transformer::load(&file).unwrap();
    let h = &model.hyper;
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let batches: Vec<usize> = std::env::var("SEQUENCES")
        .ok()
        .map(|l| l.split(',').map(|n| n.parse().unwrap()).collect())
        .unwrap_or_else(|| vec![1, 4, 16]);
    pool.install(|| {
        for &sequences in &batches {
            let context = 256;
            let mut caches: Vec<KvCache> = (0..sequences)
                .map(|_| KvCache::new(h.layers, h.kv_dim(), h.head_dim, context + 64))
                .collect();
            let mut scratch = Scratch::default();
            let mut logits = Vec::new();
            // Fill each cache with `context` positions, one prompt chunk per sequence.
            for (seq, cache) in caches.iter_mut().enumerate() {
                let batch: Vec<BatchToken> = (0..context)
                    .map(|pos| BatchToken {
                        token: (pos * 7 + seq) as u32 % 1000 + 100,
                        seq: 0,
                        pos,
                        logits: false,
                    })
                    .collect();
                model.forward(
                    &batch,
                    std::slice::from_mut(cache),
                    &mut scratch,
                    &mut logits,
                );
            }
            let steps: usize = std::env::var("STEPS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(32);
            let start = Instant::now();
            for step in 0..steps {
                let batch: Vec<BatchToken> = (0..sequences)
                    .map(|seq| BatchToken {
                        token: 200 + step as u32,
                        seq,
                        pos: context + step,
                        logits: true,
                    })
                    .collect();
                model.forward(&batch, &mut caches[..], &mut scratch, &mut logits);
            }
            let elapsed = start.elapsed().as_secs_f64();
            println!(
                "{sequences:>2} sequences: {:.1} steps/s, {:.1} tokens/s",
                steps as f64 / elapsed,
                (steps * sequences) as f64 / elapsed
            );
        }
    });
}
