//! The decode hot path allocates nothing: once a sequence's cache is reserved and the scratch
//! buffers have grown to the batch size, a forward step (embedding, every layer, attention on
//! the compute threads, logits) and greedy sampling perform zero heap allocations. Counted with
//! a global allocator, so allocations on the rayon workers count too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use switchboard_engine::gguf::GgufFile;
use switchboard_engine::kv::KvCache;
use switchboard_engine::sampler::Sampler;
use switchboard_engine::transformer::{BatchToken, Scratch, Transformer};
use switchboard_model::Sampling;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers every operation to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decode_steps_allocate_nothing() {
    let path = switchboard_testkit::default_model_path();
    if !path.exists() {
        switchboard_testkit::skip_unless_ci(&format!(
            "{} is absent (run scripts/test.sh)",
            path.display()
        ));
        return;
    }
    let file = GgufFile::open(&path).unwrap();
    let model = Transformer::load(&file).unwrap();
    let h = &model.hyper;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        let (sequences, prompt, steps) = (4usize, 24usize, 24usize);
        let mut caches: Vec<KvCache> = (0..sequences)
            .map(|_| KvCache::new(h.layers, h.kv_dim(), h.head_dim, prompt + 2 * steps))
            .collect();
        let mut scratch = Scratch::default();
        let mut logits = Vec::new();
        let mut samplers: Vec<Sampler> = (0..sequences)
            .map(|i| Sampler::new(&Sampling::default(), u32::try_from(i).unwrap()))
            .collect();
        let mut batch: Vec<BatchToken> = Vec::with_capacity(prompt * sequences);
        for seq in 0..sequences {
            for pos in 0..prompt {
                batch.push(BatchToken {
                    token: u32::try_from(100 + seq * 7 + pos).unwrap(),
                    seq,
                    pos,
                    logits: pos + 1 == prompt,
                });
            }
        }
        model.forward(&batch, &mut caches[..], &mut scratch, &mut logits);

        let mut last: Vec<u32> = vec![0; sequences];
        let mut decode = |count: usize,
                          batch: &mut Vec<BatchToken>,
                          caches: &mut [KvCache],
                          scratch: &mut Scratch,
                          logits: &mut Vec<f32>| {
            for _ in 0..count {
                batch.clear();
                for (seq, cache) in caches.iter().enumerate() {
                    batch.push(BatchToken {
                        token: last[seq],
                        seq,
                        pos: cache.len(),
                        logits: true,
                    });
                }
                model.forward(batch, caches, scratch, logits);
                for (seq, row) in logits.chunks_exact_mut(h.vocab).enumerate() {
                    last[seq] = samplers[seq].sample(row).token;
                }
            }
        };
        // Warm-up: scratch and thread-local buffers grow to the decode batch size.
        decode(steps, &mut batch, &mut caches, &mut scratch, &mut logits);
        ALLOCATIONS.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        decode(steps, &mut batch, &mut caches, &mut scratch, &mut logits);
        COUNTING.store(false, Ordering::Relaxed);
        let counted = ALLOCATIONS.load(Ordering::Relaxed);
        assert_eq!(
            counted, 0,
            "{counted} heap allocations in {steps} decode steps of {sequences} sequences"
        );
    });
}
