//! Times the forward pass alone on long prompts: prefill tokens/s for prompts of 512 to 8k
//! tokens fed in the scheduler's 256-token chunks, and the decode step time at the end of each
//! (where attention over the whole context dominates). For comparing kernel variants on one
//! machine: `cargo run --release -p switchboard-engine --example prefill_steps`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Instant;

use switchboard_engine::gguf::GgufFile;
use switchboard_engine::kv::KvCache;
use switchboard_engine::transformer::{BatchToken, Scratch, Transformer};

const CHUNK: usize = 256;

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
    let lengths: Vec<usize> = std::env::var("LENGTHS")
        .ok()
        .map(|l| l.split(',').map(|n| n.parse().unwrap()).collect())
        .unwrap_or_else(|| vec![512, 1024, 2048, 4096, 8000]);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        for &length in &lengths {
            let mut cache = KvCache::new(h.layers, h.kv_dim(), h.head_dim, length + 8);
            let mut scratch = Scratch::default();
            let mut logits = Vec::new();
            let started = Instant::now();
            let mut pos = 0;
            while pos < length {
                let take = CHUNK.min(length - pos);
                #[allow(clippy::cast_possible_truncation)]
                let batch: Vec<BatchToken> = (pos..pos + take)
                    .map(|p| BatchToken {
                        token: 1000 + (p % 7000) as u32,
                        seq: 0,
                        pos: p,
                        logits: p + 1 == length,
                    })
                    .collect();
                model.forward(
                    &batch,
                    std::slice::from_mut(&mut &mut cache),
                    &mut scratch,
                    &mut logits,
                );
                pos += take;
            }
            let prefill = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let steps = 8;
            for _ in 0..steps {
                let batch = [BatchToken {
                    token: 42,
                    seq: 0,
                    pos: length,
                    logits: true,
                }];
                model.forward(
                    &batch,
                    std::slice::from_mut(&mut &mut cache),
                    &mut scratch,
                    &mut logits,
                );
                cache.truncate(length);
            }
            #[allow(clippy::cast_precision_loss)]
            let decode_ms = started.elapsed().as_secs_f64() * 1000.0 / steps as f64;
            #[allow(clippy::cast_precision_loss)]
            let rate = length as f64 / prefill;
            println!(
                "{length:>5} tokens: prefill {prefill:6.2} s = {rate:7.1} tok/s; decode step at the end {decode_ms:6.1} ms"
            );
        }
    });
}
