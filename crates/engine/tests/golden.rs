//! The forward pass against llama.cpp: the fixture's rendered prompts, fed as token ids, must
//! produce the same greedy tokens. Skips with a message when the model or fixture is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::Value;
use switchboard_engine::gguf::GgufFile;
use switchboard_engine::kv::KvCache;
use switchboard_engine::tokenizer::Tokenizer;
use switchboard_engine::transformer::{BatchToken, Scratch, Transformer};

fn inputs() -> Option<(PathBuf, Value)> {
    let home = std::env::var_os("SWITCHBOARD_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/switchboard"),
        PathBuf::from,
    );
    let model = home.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/smollm2-golden.json");
    if !model.is_file() || !fixture.is_file() {
        eprintln!(
            "skipping: need {} and {}",
            model.display(),
            fixture.display()
        );
        return None;
    }
    Some((
        model,
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap(),
    ))
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn greedy_tokens_match_llama_cpp() {
    let Some((path, golden)) = inputs() else {
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    let model = Transformer::load(&file).unwrap();
    let tokenizer = Tokenizer::from_gguf(&file).unwrap();
    let h = &model.hyper;
    let cases = golden["greedy"].as_array().unwrap();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in cases {
        let prompt: Vec<u32> = case["prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            tokenizer.encode_prompt(case["prompt"].as_str().unwrap()),
            prompt,
            "prompt tokenization"
        );
        let want: Vec<u32> = case["greedy_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        // Prefill in two chunks and decode one token at a time, as the scheduler does.
        let mut cache = KvCache::new(h.layers, h.kv_dim(), h.head_dim, prompt.len() + want.len());
        let mut scratch = Scratch::default();
        let mut logits = Vec::new();
        let split = prompt.len() / 2;
        for range in [0..split, split..prompt.len()] {
            let batch: Vec<BatchToken> = range
                .clone()
                .map(|pos| BatchToken {
                    token: prompt[pos],
                    seq: 0,
                    pos,
                    logits: pos + 1 == prompt.len(),
                })
                .collect();
            model.forward(&batch, &mut [&mut cache], &mut scratch, &mut logits);
        }
        let mut got = Vec::new();
        let mut next = argmax(&logits);
        if std::env::var_os("GOLDEN_DEBUG").is_some() {
            let mut idx: Vec<usize> = (0..logits.len()).collect();
            idx.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
            eprintln!(
                "top: {:?}",
                idx[..5]
                    .iter()
                    .map(|&i| (i, logits[i], tokenizer.decode(&[i as u32])))
                    .collect::<Vec<_>>()
            );
        }
        for _ in 0..want.len() {
            got.push(next);
            let pos = cache.len();
            model.forward(
                &[BatchToken {
                    token: next,
                    seq: 0,
                    pos,
                    logits: true,
                }],
                &mut [&mut cache],
                &mut scratch,
                &mut logits,
            );
            next = argmax(&logits);
        }
        let common = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        if common < want.len().min(32) {
            failures.push(format!(
                "greedy tokens diverge at {common}:\n got {got:?}\nwant {want:?}\n got text {:?}",
                tokenizer.decode(&got)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
