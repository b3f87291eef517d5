//! The decoder-only transformer forward pass over a batch of tokens drawn from many sequences.
//!
//! One call processes any mix of prefill chunks and single decode tokens: every weight matrix is
//! applied once to all rows of the batch, and attention runs per token against that token's own
//! sequence cache. Architecture differences (rope layout, projection biases) are data in
//! [`Hyper`], so adding a llama-like family is a table entry plus its tensor names, not a new
//! forward pass. Tokenization, sampling and scheduling live elsewhere.

use std::cell::RefCell;

use half::f16;
use rayon::prelude::*;

use crate::attention::{attend, HeadView, ROW_TILE};
use crate::gguf::{GgufFile, MetaValue};
use crate::kv::KvCache;
use crate::tensor::{dequantize, matmul_group, rms_norm, DType, MappedBytes, Matrix};
use crate::EngineError;

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i+1)`: llama as converted to GGUF.
    Interleaved,
    /// Halves `(i, i + d/2)`: GPT-NeoX, Qwen2.
    Halves,
}

/// Hyper-parameters read from GGUF metadata.
#[derive(Debug, Clone)]
pub struct Hyper {
    pub architecture: String,
    pub layers: usize,
    pub dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab: usize,
    pub norm_eps: f32,
    pub rope_base: f32,
    pub rope_dims: usize,
    pub rope_style: RopeStyle,
    pub context_length: usize,
}

impl Hyper {
    #[must_use]
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    fn from_gguf(file: &GgufFile) -> Result<Self, EngineError> {
        let architecture = file.string("general.architecture")?.to_owned();
        let rope_style = match architecture.as_str() {
            "llama" => RopeStyle::Interleaved,
            other => {
                return Err(EngineError::Load(format!(
                    "architecture '{other}' is not supported yet (supported: llama)"
                )))
            }
        };
        let key = |name: &str| format!("{architecture}.{name}");
        let uint = |name: &str| -> Result<usize, EngineError> {
            usize::try_from(file.uint(&key(name))?)
                .map_err(|_| EngineError::Load(format!("{name} is out of range")))
        };
        let dim = uint("embedding_length")?;
        let heads = uint("attention.head_count")?;
        let kv_heads = file
            .get(&key("attention.head_count_kv"))
            .and_then(MetaValue::as_u64)
            .map_or(Ok(heads), usize::try_from)
            .map_err(|_| EngineError::Load("head_count_kv is out of range".into()))?;
        if heads == 0 || kv_heads == 0 || dim % heads != 0 || heads % kv_heads != 0 {
            return Err(EngineError::Load(format!(
                "inconsistent attention shape: dim {dim}, heads {heads}, kv heads {kv_heads}"
            )));
        }
        let head_dim = dim / heads;
        let rope_dims = file
            .get(&key("rope.dimension_count"))
            .and_then(MetaValue::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(head_dim);
        let vocab = file
            .get("tokenizer.ggml.tokens")
            .and_then(MetaValue::as_array)
            .map(<[MetaValue]>::len)
            .ok_or_else(|| EngineError::Load("tokenizer.ggml.tokens is missing".into()))?;
        Ok(Self {
            layers: uint("block_count")?,
            dim,
            heads,
            kv_heads,
            head_dim,
            ffn_dim: uint("feed_forward_length")?,
            vocab,
            norm_eps: file
                .get(&key("attention.layer_norm_rms_epsilon"))
                .and_then(MetaValue::as_f32)
                .unwrap_or(1e-5),
            rope_base: file
                .get(&key("rope.freq_base"))
                .and_then(MetaValue::as_f32)
                .unwrap_or(10_000.0),
            rope_dims: rope_dims.min(head_dim),
            rope_style,
            context_length: uint("context_length")?,
            architecture,
        })
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    wo: Matrix,
    ffn_norm: Vec<f32>,
    w_gate: Matrix,
    w_up: Matrix,
    w_down: Matrix,
}

/// A loaded model: hyper-parameters plus weights that stay in the memory map.
pub struct Transformer {
    pub hyper: Hyper,
    embed: Matrix,
    layers: Vec<Layer>,
    out_norm: Vec<f32>,
    output: Matrix,
    theta_scale: f32,
}

/// One row of a batch: a token of some sequence at some position.
#[derive(Debug, Clone, Copy)]
pub struct BatchToken {
    pub token: u32,
    /// Index into the caches passed to [`Transformer::forward`].
    pub seq: usize,
    pub pos: usize,
    /// Whether logits are needed for this row (last prompt token, decode tokens).
    pub logits: bool,
}

/// Reusable activation buffers, so a step allocates nothing once warmed up.
#[derive(Default)]
pub struct Scratch {
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    selected: Vec<f32>,
    tiles: Vec<Tile>,
}

impl Transformer {
    /// Builds the model from an opened GGUF file.
    ///
    /// # Errors
    /// Unsupported architecture, missing tensors, or shapes that disagree with the metadata.
    pub fn load(file: &GgufFile) -> Result<Self, EngineError> {
        let hyper = Hyper::from_gguf(file)?;
        let matrix = |name: &str, rows: usize, cols: usize| -> Result<Matrix, EngineError> {
            let info = file
                .tensors
                .get(name)
                .ok_or_else(|| EngineError::Load(format!("tensor {name} is missing")))?;
            let dims_ok =
                info.dims.len() == 2 && info.dims[0] == cols as u64 && info.dims[1] == rows as u64;
            if !dims_ok {
                return Err(EngineError::Load(format!(
                    "tensor {name} has shape {:?}, expected [{cols}, {rows}]",
                    info.dims
                )));
            }
            Matrix::new(
                info.dtype,
                rows,
                cols,
                MappedBytes::new(file.mmap.clone(), info.offset, info.size),
            )
            .map_err(|e| EngineError::Load(format!("tensor {name}: {e}")))
        };
        let vector = |name: &str, len: usize| -> Result<Vec<f32>, EngineError> {
            let info = file
                .tensors
                .get(name)
                .ok_or_else(|| EngineError::Load(format!("tensor {name} is missing")))?;
            if info.dims.iter().product::<u64>() != len as u64 || info.dtype != DType::F32 {
                return Err(EngineError::Load(format!(
                    "tensor {name} should be {len} f32 values"
                )));
            }
            let mut out = vec![0.0; len];
            dequantize(DType::F32, file.tensor_bytes(info), &mut out);
            Ok(out)
        };
        let h = &hyper;
        let kv_dim = h.kv_dim();
        let mut layers = Vec::with_capacity(h.layers);
        for i in 0..h.layers {
            let name = |suffix: &str| format!("blk.{i}.{suffix}.weight");
            layers.push(Layer {
                attn_norm: vector(&name("attn_norm"), h.dim)?,
                wq: matrix(&name("attn_q"), h.dim, h.dim)?,
                wk: matrix(&name("attn_k"), kv_dim, h.dim)?,
                wv: matrix(&name("attn_v"), kv_dim, h.dim)?,
                wo: matrix(&name("attn_output"), h.dim, h.dim)?,
                ffn_norm: vector(&name("ffn_norm"), h.dim)?,
                w_gate: matrix(&name("ffn_gate"), h.ffn_dim, h.dim)?,
                w_up: matrix(&name("ffn_up"), h.ffn_dim, h.dim)?,
                w_down: matrix(&name("ffn_down"), h.dim, h.ffn_dim)?,
            });
        }
        let embed = matrix("token_embd.weight", h.vocab, h.dim)?;
        let output = if file.tensors.contains_key("output.weight") {
            matrix("output.weight", h.vocab, h.dim)?
        } else {
            embed.clone()
        };
        #[allow(clippy::cast_precision_loss)]
        let theta_scale = h.rope_base.powf(-2.0 / h.rope_dims as f32);
        Ok(Self {
            out_norm: vector("output_norm.weight", h.dim)?,
            hyper,
            embed,
            layers,
            output,
            theta_scale,
        })
    }

    /// Runs one step. Rows of the same sequence must be consecutive positions in order, and each
    /// cache must already hold every earlier position. Writes the logits of the rows flagged
    /// `logits`, in batch order, into `logits` (`count × vocab`).
    pub fn forward(
        &self,
        batch: &[BatchToken],
        caches: &mut (impl KvCaches + ?Sized),
        scratch: &mut Scratch,
        logits: &mut Vec<f32>,
    ) {
        let h = &self.hyper;
        let n = batch.len();
        let (dim, kv_dim) = (h.dim, h.kv_dim());
        let s = scratch;
        s.x.resize(n * dim, 0.0);
        s.xn.resize(n * dim, 0.0);
        s.q.resize(n * dim, 0.0);
        s.k.resize(n * kv_dim, 0.0);
        s.v.resize(n * kv_dim, 0.0);
        s.attn.resize(n * dim, 0.0);
        s.proj.resize(n * dim, 0.0);
        s.gate.resize(n * h.ffn_dim, 0.0);
        s.up.resize(n * h.ffn_dim, 0.0);
        for (row, item) in batch.iter().enumerate() {
            self.embed
                .row_into(item.token as usize, &mut s.x[row * dim..(row + 1) * dim]);
        }
        for (layer_index, layer) in self.layers.iter().enumerate() {
            rms_norm(&s.x, &layer.attn_norm, h.norm_eps, &mut s.xn);
            matmul_group(
                &[&layer.wq, &layer.wk, &layer.wv],
                &s.xn,
                &mut [&mut s.q, &mut s.k, &mut s.v],
            );
            // The cache and the attention products hold half precision, as llama.cpp's do, so
            // greedy output agrees with it even at near-ties.
            for (row, item) in batch.iter().enumerate() {
                self.rope(&mut s.q[row * dim..(row + 1) * dim], item.pos);
                self.rope(&mut s.k[row * kv_dim..(row + 1) * kv_dim], item.pos);
                round_to_f16(&mut s.q[row * dim..(row + 1) * dim]);
                caches.cache_mut(item.seq).write(
                    layer_index,
                    item.pos,
                    &s.k[row * kv_dim..(row + 1) * kv_dim],
                    &s.v[row * kv_dim..(row + 1) * kv_dim],
                );
            }
            self.attention(
                layer_index,
                batch,
                &*caches,
                &s.q,
                &mut s.tiles,
                &mut s.attn,
            );
            layer.wo.matmul(&s.attn, &mut s.proj);
            add_assign(&mut s.x, &s.proj);

            rms_norm(&s.x, &layer.ffn_norm, h.norm_eps, &mut s.xn);
            matmul_group(
                &[&layer.w_gate, &layer.w_up],
                &s.xn,
                &mut [&mut s.gate, &mut s.up],
            );
            for (g, u) in s.gate.iter_mut().zip(&s.up) {
                *g = silu(*g) * u;
            }
            layer.w_down.matmul(&s.gate, &mut s.proj);
            add_assign(&mut s.x, &s.proj);
        }
        let wanted = batch.iter().filter(|item| item.logits).count();
        s.selected.resize(wanted * dim, 0.0);
        let rows = (0..n).filter(|row| batch[*row].logits);
        for (i, row) in rows.enumerate() {
            rms_norm(
                &s.x[row * dim..(row + 1) * dim],
                &self.out_norm,
                h.norm_eps,
                &mut s.selected[i * dim..(i + 1) * dim],
            );
        }
        logits.resize(wanted * h.vocab, 0.0);
        self.output.matmul(&s.selected, logits);
    }

    fn rope(&self, heads: &mut [f32], pos: usize) {
        let h = &self.hyper;
        for head in heads.chunks_exact_mut(h.head_dim) {
            // Angles advance by repeated multiplication in f32, as ggml computes them, so
            // positions far into the context round the same way.
            #[allow(clippy::cast_precision_loss)]
            let mut theta = pos as f32;
            for i in 0..h.rope_dims / 2 {
                let (sin, cos) = theta.sin_cos();
                theta *= self.theta_scale;
                let (a, b) = match h.rope_style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::Halves => (i, i + h.rope_dims / 2),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos - x1 * sin;
                head[b] = x0 * sin + x1 * cos;
            }
        }
    }

    /// Attention of every row against its own sequence's cache, in tiles: consecutive rows of
    /// one sequence (a prompt chunk) share a task per KV head, so keys and values are read and
    /// converted once for the whole GQA group and up to [`ROW_TILE`] rows.
    fn attention(
        &self,
        layer: usize,
        batch: &[BatchToken],
        caches: &(impl KvCaches + ?Sized),
        q: &[f32],
        tiles: &mut Vec<Tile>,
        out: &mut [f32],
    ) {
        let h = &self.hyper;
        let group = h.heads / h.kv_heads;
        #[allow(clippy::cast_precision_loss)]
        let scale = 1.0 / (h.head_dim as f32).sqrt();
        tiles.clear();
        let mut row = 0;
        while row < batch.len() {
            let mut rows = 1;
            while rows < ROW_TILE
                && row + rows < batch.len()
                && batch[row + rows].seq == batch[row].seq
            {
                rows += 1;
            }
            for kv_head in 0..h.kv_heads {
                tiles.push(Tile { row, rows, kv_head });
            }
            row += rows;
        }
        let shared = SharedRows(out.as_mut_ptr(), out.len());
        tiles.par_iter().for_each(|tile| {
            TILE.with(|buffers| {
                let (queries, lens, result) = &mut *buffers.borrow_mut();
                queries.clear();
                lens.clear();
                for r in tile.row..tile.row + tile.rows {
                    for g in 0..group {
                        let head = tile.kv_head * group + g;
                        queries
                            .extend_from_slice(&q[r * h.dim + head * h.head_dim..][..h.head_dim]);
                        lens.push(batch[r].pos + 1);
                    }
                }
                result.resize(queries.len(), 0.0);
                let cache = caches.cache(batch[tile.row].seq);
                let view = HeadView {
                    keys: cache.layer_keys(layer),
                    values: cache.layer_values(layer),
                    stride: h.kv_dim(),
                    offset: tile.kv_head * h.head_dim,
                    capacity: cache.capacity(),
                };
                attend(queries, lens, h.head_dim, scale, view, result);
                for (i, r) in (tile.row..tile.row + tile.rows).enumerate() {
                    let first_head = tile.kv_head * group;
                    let at = r * h.dim + first_head * h.head_dim;
                    let span = group * h.head_dim;
                    // SAFETY: tiles cover disjoint (row, KV head) pairs, so no two tasks write
                    // the same output range; `at + span <= out.len()` as rows and heads are in
                    // range.
                    unsafe { shared.write(at, &result[i * span..(i + 1) * span]) };
                }
            });
        });
    }
}

/// Rows of one sequence and one KV head: the unit of parallel attention work.
#[derive(Debug, Clone, Copy)]
pub struct Tile {
    row: usize,
    rows: usize,
    kv_head: usize,
}

/// The attention output, written from parallel tasks at disjoint ranges.
#[derive(Clone, Copy)]
struct SharedRows(*mut f32, usize);

// SAFETY: tasks write disjoint ranges only (see `Transformer::attention`).
unsafe impl Send for SharedRows {}
// SAFETY: as above.
unsafe impl Sync for SharedRows {}

impl SharedRows {
    /// # Safety
    /// `at..at + values.len()` must be in bounds and written by no other task concurrently.
    unsafe fn write(self, at: usize, values: &[f32]) {
        assert!(at + values.len() <= self.1, "attention output out of range");
        // SAFETY: in bounds (asserted) and exclusive (the caller's guarantee).
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.0.add(at), values.len()) };
    }
}

/// The caches of one forward step, addressed by [`BatchToken::seq`]. The scheduler implements
/// it over its running sequences directly, so a step needs no per-step list of references.
pub trait KvCaches: Sync {
    fn cache(&self, seq: usize) -> &KvCache;
    fn cache_mut(&mut self, seq: usize) -> &mut KvCache;
}

impl KvCaches for [&mut KvCache] {
    fn cache(&self, seq: usize) -> &KvCache {
        self[seq]
    }

    fn cache_mut(&mut self, seq: usize) -> &mut KvCache {
        self[seq]
    }
}

impl KvCaches for [KvCache] {
    fn cache(&self, seq: usize) -> &KvCache {
        &self[seq]
    }

    fn cache_mut(&mut self, seq: usize) -> &mut KvCache {
        &mut self[seq]
    }
}

thread_local! {
    /// One attention task's queries, their lengths and its output.
    static TILE: RefCell<(Vec<f32>, Vec<usize>, Vec<f32>)> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

fn round_to_f16(values: &mut [f32]) {
    for v in values {
        *v = f16::from_f32(*v).to_f32();
    }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}
