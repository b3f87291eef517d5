//! Weight storage types and the compute kernels of the forward pass, behind a deliberately small
//! interface: [`Matrix::matmul`], [`rms_norm`], [`dot`], [`axpy`]. A faster backend (quantized
//! activations, other ISAs, a GPU) replaces what is in here without touching the model code.
//!
//! Weights stay in their GGUF encoding inside the memory map; a row block is dequantized into a
//! thread-local scratch buffer and multiplied against every activation row of the batch, so a
//! batched step reads each weight once for all sequences.

use std::cell::RefCell;
use std::sync::{Arc, LazyLock};

use half::f16;
use memmap2::Mmap;
use rayon::prelude::*;

mod wide;

/// Element encodings of GGUF tensors this engine can compute with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q4K,
    Q6K,
}

impl DType {
    #[must_use]
    pub fn from_gguf(type_id: u32) -> Option<Self> {
        Some(match type_id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            14 => Self::Q6K,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block).
    #[must_use]
    pub fn block(self) -> (u64, u64) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
            Self::Q4K => (256, 144),
            Self::Q6K => (256, 210),
        }
    }

    /// Bytes taken by `elements` values, or `None` when they do not fill whole blocks.
    #[must_use]
    pub fn byte_size(self, elements: u64) -> Option<u64> {
        let (per_block, bytes) = self.block();
        elements
            .is_multiple_of(per_block)
            .then(|| elements / per_block * bytes)
    }
}

/// A view of bytes inside the shared model mapping.
#[derive(Clone)]
pub struct MappedBytes {
    mmap: Arc<Mmap>,
    offset: usize,
    len: usize,
}

impl MappedBytes {
    #[must_use]
    pub fn new(mmap: Arc<Mmap>, offset: usize, len: usize) -> Self {
        Self { mmap, offset, len }
    }

    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.mmap[self.offset..self.offset + self.len]
    }
}

/// A 2-D weight matrix of `rows` output features by `cols` input features, row-major.
#[derive(Clone)]
pub struct Matrix {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    data: MappedBytes,
}

/// Rows dequantized per task: small enough for L1, large enough to amortise task overhead.
const ROW_BLOCK: usize = 16;
/// Activation rows multiplied per pass over a weight row, so each weight block is unpacked
/// once for several tokens.
pub const TOKEN_TILE: usize = 4;

impl Matrix {
    /// # Errors
    /// When the byte length does not match the shape, or a row does not fill whole blocks.
    pub fn new(dtype: DType, rows: usize, cols: usize, data: MappedBytes) -> Result<Self, String> {
        let row_bytes = dtype
            .byte_size(cols as u64)
            .ok_or_else(|| format!("row length {cols} is not a multiple of the {dtype:?} block"))?;
        let row_bytes = usize::try_from(row_bytes).map_err(|e| e.to_string())?;
        if row_bytes * rows != data.len {
            return Err(format!(
                "expected {} bytes for a {rows}x{cols} {dtype:?} matrix, found {}",
                row_bytes * rows,
                data.len
            ));
        }
        Ok(Self {
            dtype,
            rows,
            cols,
            row_bytes,
            data,
        })
    }

    /// Dequantizes one row into `out` (length `cols`).
    pub fn row_into(&self, row: usize, out: &mut [f32]) {
        let start = row * self.row_bytes;
        dequantize(
            self.dtype,
            &self.data.bytes()[start..start + self.row_bytes],
            out,
        );
    }

    /// `out[t][r] = Σ_c self[r][c] · x[t][c]` for every activation row `t` of `x`
    /// (`x` is `n × cols`, `out` is `n × rows`, both row-major).
    ///
    /// Quantized weights take the integer path: each activation row is quantized once to 8-bit
    /// blocks (as llama.cpp does, so results agree with it to rounding), then every weight block
    /// is multiplied against it with integer arithmetic. Float weights are dequantized per row
    /// block and multiplied in f32.
    pub fn matmul(&self, x: &[f32], out: &mut [f32]) {
        matmul_group(&[self], x, &mut [out]);
    }

    fn is_quantized(&self) -> bool {
        !matches!(self.dtype, DType::F32 | DType::F16)
    }

    /// Rows `first..first + count` for the activation rows in `acts` (`n` of them).
    /// `tiles` holds the same activations for the AVX-512 tile kernel where it applies.
    fn rows_quantized(
        &self,
        acts: &[ActBlock],
        tiles: Option<&wide::Tiles>,
        n: usize,
        first: usize,
        count: usize,
        out: SharedOut,
    ) {
        if let (Some(kernel), Some(tiles)) = (*wide::KERNEL, tiles) {
            if wide::handles(self.dtype) {
                self.rows_tiled(kernel, tiles, first, count, out);
                return;
            }
        }
        let blocks_per_row = self.cols / 32;
        let kernel = *QDOT;
        let data = self.data.bytes();
        let mut tile = [0f32; TOKEN_TILE];
        if n == 1 && *MULTI_ROW {
            // One token (single-stream decode): several rows at once, so their accumulation
            // chains overlap and each activation block is loaded once for all of them.
            let rows_kernel = *QDOT_ROWS;
            let mut r = first;
            while r < first + count {
                let rows = ROW_TILE.min(first + count - r);
                let bytes = &data[r * self.row_bytes..(r + rows) * self.row_bytes];
                rows_kernel(self.dtype, bytes, self.row_bytes, rows, acts, &mut tile);
                for (i, value) in tile[..rows].iter().enumerate() {
                    // SAFETY: as below: this task owns columns `first..first + count`.
                    unsafe { out.write(r + i, *value) };
                }
                r += rows;
            }
            return;
        }
        for t0 in (0..n).step_by(TOKEN_TILE) {
            let tokens = TOKEN_TILE.min(n - t0);
            let act = &acts[t0 * blocks_per_row..(t0 + tokens) * blocks_per_row];
            for r in first..first + count {
                let row = &data[r * self.row_bytes..(r + 1) * self.row_bytes];
                kernel(self.dtype, row, act, tokens, &mut tile);
                for (t, value) in tile[..tokens].iter().enumerate() {
                    // SAFETY: each task owns the disjoint output columns `first..first + count`
                    // of every row; the output outlives the parallel loop (see `matmul_group`).
                    unsafe { out.write((t0 + t) * self.rows + r, *value) };
                }
            }
        }
    }

    /// [`Self::rows_quantized`] with the AVX-512 tile kernel over activations already laid out
    /// in `tiles`.
    fn rows_tiled(
        &self,
        kernel: wide::TileKernel,
        tiles: &wide::Tiles,
        first: usize,
        count: usize,
        out: SharedOut,
    ) {
        let data = self.data.bytes();
        let mut values = [0f32; wide::TOKENS];
        for tile in 0..tiles.tiles() {
            let t0 = tile * wide::TOKENS;
            let tokens = tiles.tile_tokens(tile);
            for r in first..first + count {
                let row = &data[r * self.row_bytes..(r + 1) * self.row_bytes];
                kernel(self.dtype, row, tiles, tile, &mut values);
                for (t, value) in values[..tokens].iter().enumerate() {
                    // SAFETY: as in `rows_quantized`: disjoint columns per task.
                    unsafe { out.write((t0 + t) * self.rows + r, *value) };
                }
            }
        }
    }

    /// Rows `first..first + count` for float weights: dequantize, then f32 dots.
    fn rows_float(&self, x: &[f32], n: usize, first: usize, count: usize, out: SharedOut) {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.resize(ROW_BLOCK * self.cols, 0.0);
            for r in 0..count {
                self.row_into(first + r, &mut scratch[r * self.cols..(r + 1) * self.cols]);
            }
            for t in 0..n {
                let xt = &x[t * self.cols..(t + 1) * self.cols];
                for r in 0..count {
                    let value = dot(&scratch[r * self.cols..(r + 1) * self.cols], xt);
                    // SAFETY: as in `rows_quantized`: disjoint columns per task.
                    unsafe { out.write(t * self.rows + first + r, value) };
                }
            }
        });
    }
}

/// Matrices one `matmul_group` call can take (q, k, v is the largest group a layer has).
pub const MAX_GROUP: usize = 4;

/// Several matrices applied to the same activations (`x` is `n × cols`, `outs[i]` is
/// `n × mats[i].rows`) in one parallel region: the activations are quantized once and the row
/// blocks of all matrices are shared out together, so the threads meet once, not once per
/// matrix. Quantized weights take the integer path: each activation row is quantized to 8-bit
/// blocks as llama.cpp does (so results agree with it to rounding) and multiplied with integer
/// arithmetic; float weights are dequantized per row block and multiplied in f32.
///
/// # Panics
/// When the matrices disagree on `cols` or an output has the wrong length.
pub fn matmul_group(mats: &[&Matrix], x: &[f32], outs: &mut [&mut [f32]]) {
    let Some(first) = mats.first() else { return };
    let cols = first.cols;
    let n = x.len() / cols;
    assert!(
        mats.iter().all(|m| m.cols == cols),
        "matrices of a group share their input"
    );
    assert!(
        mats.iter()
            .zip(outs.iter())
            .all(|(m, o)| o.len() == n * m.rows),
        "output shapes"
    );
    assert!(
        mats.len() <= MAX_GROUP,
        "at most {MAX_GROUP} matrices per group"
    );
    // Fixed arrays, not vectors: this runs several times per layer per step, and the decode
    // path must not allocate.
    let mut outputs = [SharedOut(std::ptr::null_mut()); MAX_GROUP];
    for (slot, out) in outputs.iter_mut().zip(outs.iter_mut()) {
        *slot = SharedOut(out.as_mut_ptr());
    }
    let mut starts = [usize::MAX; MAX_GROUP];
    let mut total = 0;
    for (start, m) in starts.iter_mut().zip(mats) {
        *start = total;
        total += m.rows.div_ceil(ROW_BLOCK);
    }
    let starts = &starts[..mats.len()];
    ACTIVATIONS.with_borrow_mut(|acts| {
        if mats.iter().any(|m| m.is_quantized()) {
            quantize_rows(x, cols, true, acts);
        }
        TILED_ACTIVATIONS.with_borrow_mut(|tiles| {
            // Several tokens: the tile kernel, where the CPU has it, for the types it takes.
            let tiled =
                n > 1 && wide::KERNEL.is_some() && mats.iter().any(|m| wide::handles(m.dtype));
            if tiled {
                tiles.pack(acts, n, cols / 32);
            }
            let tiles = tiled.then_some(&*tiles);
            let acts = &*acts;
            (0..total).into_par_iter().for_each(|block| {
                let which = starts.partition_point(|&s| s <= block) - 1;
                let m = mats[which];
                let first_row = (block - starts[which]) * ROW_BLOCK;
                let count = ROW_BLOCK.min(m.rows - first_row);
                if m.is_quantized() {
                    m.rows_quantized(acts, tiles, n, first_row, count, outputs[which]);
                } else {
                    m.rows_float(x, n, first_row, count, outputs[which]);
                }
            });
        });
    });
}

/// One block of 32 activations quantized to 8 bits: value ≈ `d · qs[i]`; `s = d · Σ qs` lets
/// weights with an offset (Q4_1) fold it in with one multiply.
#[derive(Clone, Copy, Debug, Default)]
pub struct ActBlock {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; 32],
}

/// Quantizes rows of `cols` activations into 8-bit blocks, rounding the scales through f16
/// exactly as llama.cpp's Q8_0/Q8_1 activation formats do.
pub fn quantize_rows(x: &[f32], cols: usize, with_sum: bool, out: &mut Vec<ActBlock>) {
    out.clear();
    for row in x.chunks_exact(cols) {
        for chunk in row.chunks_exact(32) {
            let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inverse = if amax == 0.0 { 0.0 } else { 127.0 / amax };
            let mut block = ActBlock {
                d: round_f16(d),
                s: 0.0,
                qs: [0; 32],
            };
            let mut sum = 0i32;
            for (q, v) in block.qs.iter_mut().zip(chunk) {
                #[allow(clippy::cast_possible_truncation)]
                let rounded = round_ties_even_small(v * inverse) as i8;
                *q = rounded;
                sum += i32::from(rounded);
            }
            if with_sum {
                #[allow(clippy::cast_precision_loss)]
                let total = d * sum as f32;
                block.s = round_f16(total);
            }
            out.push(block);
        }
    }
}

/// Rounds half to even for |v| ≤ 2^22 without a libm call: adding 1.5·2^23 pushes the
/// fraction out of the mantissa under the default round-to-nearest-even mode.
#[inline(always)]
fn round_ties_even_small(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

fn round_f16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// f16 → f32 for every bit pattern: block scales convert with one load, as in ggml.
static F16_TABLE: LazyLock<Box<[f32]>> =
    LazyLock::new(|| (0..=u16::MAX).map(|b| f16::from_bits(b).to_f32()).collect());

#[inline(always)]
fn scale(table: &[f32], lo: u8, hi: u8) -> f32 {
    table[usize::from(u16::from_le_bytes([lo, hi]))]
}

/// Dot products of one quantized weight row with `tokens` (≤ [`TOKEN_TILE`]) consecutive
/// quantized activation rows, written to `out[..tokens]`.
type QDotFn = fn(DType, &[u8], &[ActBlock], usize, &mut [f32; TOKEN_TILE]);

static QDOT: LazyLock<QDotFn> = LazyLock::new(select_qdot);

/// Weight rows one [`QDotRowsFn`] call takes (equal to [`TOKEN_TILE`], so both share `out`).
pub const ROW_TILE: usize = TOKEN_TILE;

/// Dot products of `rows` (≤ [`ROW_TILE`]) consecutive quantized weight rows (`row_bytes`
/// apart in `weights`) with one quantized activation row, written to `out[..rows]`. Each row
/// is summed in exactly the order [`QDotFn`] sums it, so results are bit-identical.
type QDotRowsFn = fn(DType, &[u8], usize, usize, &[ActBlock], &mut [f32; TOKEN_TILE]);

static QDOT_ROWS: LazyLock<QDotRowsFn> = LazyLock::new(select_qdot_rows);

/// `SWITCHBOARD_ROW_TILE=off` keeps single-token steps on the one-row kernel, for measuring
/// what the multi-row kernel gains on a given machine (results are identical either way).
static MULTI_ROW: LazyLock<bool> =
    LazyLock::new(|| std::env::var("SWITCHBOARD_ROW_TILE").map_or(true, |v| v != "off"));

fn select_qdot_rows() -> QDotRowsFn {
    LazyLock::force(&F16_TABLE);
    let wanted = std::env::var("SWITCHBOARD_KERNEL").unwrap_or_default();
    if wanted == "portable" {
        return qdot_rows_portable;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            if wanted == "vnni" && std::arch::is_x86_feature_detected!("avxvnni") {
                return x86::qdot_rows_vnni_safe;
            }
            return x86::qdot_rows_avx2_safe;
        }
    }
    qdot_rows_portable
}

/// The portable multi-row kernel: one [`qdot_portable`] per row.
pub fn qdot_rows_portable(
    dtype: DType,
    weights: &[u8],
    row_bytes: usize,
    rows: usize,
    acts: &[ActBlock],
    out: &mut [f32; TOKEN_TILE],
) {
    let mut one = [0f32; TOKEN_TILE];
    for (r, value) in out.iter_mut().enumerate().take(rows) {
        qdot_portable(
            dtype,
            &weights[r * row_bytes..(r + 1) * row_bytes],
            acts,
            1,
            &mut one,
        );
        *value = one[0];
    }
}

/// The multi-row kernel this CPU uses (see [`QDotRowsFn`]); exposed for tests and benchmarks.
pub fn qdot_rows(
    dtype: DType,
    weights: &[u8],
    row_bytes: usize,
    rows: usize,
    acts: &[ActBlock],
    out: &mut [f32; TOKEN_TILE],
) {
    (*QDOT_ROWS)(dtype, weights, row_bytes, rows, acts, out);
}

fn select_qdot() -> QDotFn {
    // Touch the table before the first parallel use.
    LazyLock::force(&F16_TABLE);
    // For benchmarking variants on one machine: `portable`, `vnni`, or unset (AVX2). The
    // AVX-VNNI variant is opt-in: on the 2-vCPU machines here it measured 5-10% faster for one
    // sequence and slower for sixteen, within noise we could not yet separate (see
    // docs/benchmarks.md).
    let wanted = std::env::var("SWITCHBOARD_KERNEL").unwrap_or_default();
    if wanted == "portable" {
        return qdot_portable;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            if wanted == "vnni" && std::arch::is_x86_feature_detected!("avxvnni") {
                return x86::qdot_vnni_safe;
            }
            return x86::qdot_avx2_safe;
        }
    }
    qdot_portable
}

/// The portable reference kernel (see [`QDotFn`]).
pub fn qdot_portable(
    dtype: DType,
    row: &[u8],
    acts: &[ActBlock],
    tokens: usize,
    out: &mut [f32; TOKEN_TILE],
) {
    let blocks = acts.len() / tokens.max(1);
    for (t, value) in out.iter_mut().enumerate().take(tokens) {
        *value = qdot_generic(dtype, row, &acts[t * blocks..(t + 1) * blocks]);
    }
}

/// The kernel this CPU uses (see [`QDotFn`]); exposed for tests and benchmarks.
pub fn qdot(
    dtype: DType,
    row: &[u8],
    acts: &[ActBlock],
    tokens: usize,
    out: &mut [f32; TOKEN_TILE],
) {
    (*QDOT)(dtype, row, acts, tokens, out);
}

/// Written so the compiler vectorizes the per-block integer loops; compiled once portably and
/// once with AVX2 enabled.
#[inline(always)]
fn qdot_generic(dtype: DType, row: &[u8], act: &[ActBlock]) -> f32 {
    let table: &[f32] = &F16_TABLE;
    let mut total = 0f32;
    match dtype {
        DType::Q4_1 => {
            for (w, a) in row.chunks_exact(20).zip(act) {
                let mut sum = 0i32;
                for j in 0..16 {
                    let q = w[4 + j];
                    sum += i32::from(q & 0x0f) * i32::from(a.qs[j])
                        + i32::from(q >> 4) * i32::from(a.qs[j + 16]);
                }
                #[allow(clippy::cast_precision_loss)]
                let sum = sum as f32;
                total += scale(table, w[0], w[1]) * a.d * sum + scale(table, w[2], w[3]) * a.s;
            }
        }
        DType::Q4_0 => {
            for (w, a) in row.chunks_exact(18).zip(act) {
                let mut sum = 0i32;
                for j in 0..16 {
                    let q = w[2 + j];
                    sum += (i32::from(q & 0x0f) - 8) * i32::from(a.qs[j])
                        + (i32::from(q >> 4) - 8) * i32::from(a.qs[j + 16]);
                }
                #[allow(clippy::cast_precision_loss)]
                let sum = sum as f32;
                total += scale(table, w[0], w[1]) * a.d * sum;
            }
        }
        DType::Q8_0 => {
            for (w, a) in row.chunks_exact(34).zip(act) {
                let mut sum = 0i32;
                for j in 0..32 {
                    sum += i32::from(w[2 + j].cast_signed()) * i32::from(a.qs[j]);
                }
                #[allow(clippy::cast_precision_loss)]
                let sum = sum as f32;
                total += scale(table, w[0], w[1]) * a.d * sum;
            }
        }
        DType::Q4K => {
            for (w, act) in row.chunks_exact(144).zip(act.chunks_exact(8)) {
                let d = scale(table, w[0], w[1]);
                let dmin = scale(table, w[2], w[3]);
                let scales = &w[4..16];
                for j in 0..4 {
                    let qs = &w[16 + 32 * j..16 + 32 * (j + 1)];
                    let (lo, hi) = (&act[2 * j], &act[2 * j + 1]);
                    let (mut sum_lo, mut sum_hi) = (0i32, 0i32);
                    for ((q, a_lo), a_hi) in qs.iter().zip(&lo.qs).zip(&hi.qs) {
                        sum_lo += i32::from(q & 0x0f) * i32::from(*a_lo);
                        sum_hi += i32::from(q >> 4) * i32::from(*a_hi);
                    }
                    let (sc_lo, m_lo) = q4k_scale_min(scales, 2 * j);
                    let (sc_hi, m_hi) = q4k_scale_min(scales, 2 * j + 1);
                    #[allow(clippy::cast_precision_loss)]
                    let (sum_lo, sum_hi) = (sum_lo as f32, sum_hi as f32);
                    total += d * f32::from(sc_lo) * lo.d * sum_lo - dmin * f32::from(m_lo) * lo.s;
                    total += d * f32::from(sc_hi) * hi.d * sum_hi - dmin * f32::from(m_hi) * hi.s;
                }
            }
        }
        DType::Q6K => {
            for (w, act) in row.chunks_exact(210).zip(act.chunks_exact(8)) {
                let d = scale(table, w[208], w[209]);
                for half in 0..2 {
                    for group in 0..4 {
                        let a = &act[4 * half + group];
                        let (mut first, mut second) = (0i32, 0i32);
                        for l in 0..16 {
                            first += i32::from(q6k_value(w, half, group, l)) * i32::from(a.qs[l]);
                            second += i32::from(q6k_value(w, half, group, l + 16))
                                * i32::from(a.qs[l + 16]);
                        }
                        let sums = i32::from(q6k_scale(w, half, group, 0)) * first
                            + i32::from(q6k_scale(w, half, group, 16)) * second;
                        #[allow(clippy::cast_precision_loss)]
                        let sums = sums as f32;
                        total += d * a.d * sums;
                    }
                }
            }
        }
        DType::F32 | DType::F16 => {}
    }
    total
}

thread_local! {
    static ACTIVATIONS: RefCell<Vec<ActBlock>> = const { RefCell::new(Vec::new()) };
}

thread_local! {
    /// [`ACTIVATIONS`] laid out for the AVX-512 tile kernel.
    static TILED_ACTIVATIONS: RefCell<wide::Tiles> = RefCell::new(wide::Tiles::default());
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: used only to write disjoint indices from parallel tasks (see `Matrix::matmul`).
unsafe impl Send for SharedOut {}
// SAFETY: as above; no two tasks touch the same index.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `index` must be in bounds and written by no other thread concurrently.
    unsafe fn write(self, index: usize, value: f32) {
        // SAFETY: guaranteed by the caller.
        unsafe { *self.0.add(index) = value };
    }
}

/// Decodes `bytes` of `dtype` into `out`; `out.len()` elements are produced.
pub fn dequantize(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    match dtype {
        DType::F32 => {
            for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
        }
        DType::F16 => {
            for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([chunk[0], chunk[1]]).to_f32();
            }
        }
        DType::Q4_0 => {
            for (o, block) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(18)) {
                let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
                let qs = &block[2..18];
                for j in 0..16 {
                    o[j] = (f32::from(qs[j] & 0x0f) - 8.0) * d;
                    o[j + 16] = (f32::from(qs[j] >> 4) - 8.0) * d;
                }
            }
        }
        DType::Q4_1 => {
            for (o, block) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(20)) {
                let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
                let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
                let qs = &block[4..20];
                for j in 0..16 {
                    o[j] = f32::from(qs[j] & 0x0f) * d + m;
                    o[j + 16] = f32::from(qs[j] >> 4) * d + m;
                }
            }
        }
        DType::Q8_0 => {
            for (o, block) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(34)) {
                let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
                for (value, q) in o.iter_mut().zip(&block[2..34]) {
                    *value = f32::from(q.cast_signed()) * d;
                }
            }
        }
        DType::Q4K => {
            for (o, block) in out.chunks_exact_mut(256).zip(bytes.chunks_exact(144)) {
                let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
                let dmin = f16::from_le_bytes([block[2], block[3]]).to_f32();
                let scales = &block[4..16];
                for j in 0..4 {
                    let qs = &block[16 + 32 * j..16 + 32 * (j + 1)];
                    let (sc_lo, m_lo) = q4k_scale_min(scales, 2 * j);
                    let (sc_hi, m_hi) = q4k_scale_min(scales, 2 * j + 1);
                    for (l, q) in qs.iter().enumerate() {
                        o[64 * j + l] =
                            d * f32::from(sc_lo) * f32::from(q & 0x0f) - dmin * f32::from(m_lo);
                        o[64 * j + 32 + l] =
                            d * f32::from(sc_hi) * f32::from(q >> 4) - dmin * f32::from(m_hi);
                    }
                }
            }
        }
        DType::Q6K => {
            for (o, block) in out.chunks_exact_mut(256).zip(bytes.chunks_exact(210)) {
                let d = f16::from_le_bytes([block[208], block[209]]).to_f32();
                for half in 0..2 {
                    for group in 0..4 {
                        for l in 0..32 {
                            let q = q6k_value(block, half, group, l);
                            let sc = q6k_scale(block, half, group, l);
                            o[128 * half + 32 * group + l] = d * f32::from(sc) * f32::from(q);
                        }
                    }
                }
            }
        }
    }
}

/// Scale and min of sub-block `j` (0..8) from a Q4_K block's 12 packed 6-bit values.
#[inline(always)]
fn q4k_scale_min(scales: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// The signed 6-bit value at position `l` of 32-value group `group` (0..4) in half `half`
/// (0..2) of a Q6_K block: low nibbles in `ql`, two high bits each in `qh`.
#[inline(always)]
fn q6k_value(block: &[u8], half: usize, group: usize, l: usize) -> i8 {
    let ql = &block[64 * half..64 * half + 64];
    let qh = block[128 + 32 * half + l];
    let byte = ql[l + 32 * (group % 2)];
    let nibble = if group < 2 { byte & 0x0f } else { byte >> 4 };
    let high = (qh >> (2 * group)) & 3;
    ((nibble | (high << 4)).cast_signed()) - 32
}

/// The signed scale of position `l` of group `group` in half `half` of a Q6_K block; one
/// scale covers 16 values.
#[inline(always)]
fn q6k_scale(block: &[u8], half: usize, group: usize, l: usize) -> i8 {
    block[192 + 8 * half + 2 * group + l / 16].cast_signed()
}

type DotFn = fn(&[f32], &[f32]) -> f32;

static DOT: LazyLock<DotFn> = LazyLock::new(select_dot);

fn select_dot() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return x86::dot_avx2_safe;
        }
    }
    dot_portable
}

/// Σ a[i]·b[i] over the common length, with the fastest kernel this CPU supports. The summation
/// order depends only on the length, so results do not depend on batch composition.
#[must_use]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (*DOT)(a, b)
}

/// The portable reference: eight independent partial sums, like the SIMD path.
#[must_use]
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for i in 0..chunks {
        for lane in 0..8 {
            // Plain multiply-add: `mul_add` without a compile-time FMA target is a libm call.
            acc[lane] += a[i * 8 + lane] * b[i * 8 + lane];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        sum += a[i] * b[i];
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256, __m256i, _mm256_add_ps, _mm256_and_si256, _mm256_castps256_ps128,
        _mm256_cvtepi32_ps, _mm256_dpbusd_avx_epi32, _mm256_extractf128_ps, _mm256_fmadd_ps,
        _mm256_loadu_ps, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_maddubs_epi16,
        _mm256_set1_epi16, _mm256_set1_epi8, _mm256_set1_ps, _mm256_set_m128i, _mm256_setzero_ps,
        _mm256_setzero_si256, _mm256_sign_epi8, _mm256_sub_epi8, _mm_add_ps, _mm_add_ss,
        _mm_cvtss_f32, _mm_loadu_si128, _mm_movehl_ps, _mm_prefetch, _mm_shuffle_ps,
        _mm_srli_epi16, _MM_HINT_T0,
    };

    use super::{ActBlock, DType, F16_TABLE, TOKEN_TILE};

    pub(super) fn qdot_avx2_safe(
        dtype: DType,
        row: &[u8],
        acts: &[ActBlock],
        tokens: usize,
        out: &mut [f32; TOKEN_TILE],
    ) {
        // SAFETY: selected only after runtime detection of AVX2 and FMA.
        unsafe { qdot_avx2(dtype, row, acts, tokens, out) }
    }

    pub(super) fn qdot_vnni_safe(
        dtype: DType,
        row: &[u8],
        acts: &[ActBlock],
        tokens: usize,
        out: &mut [f32; TOKEN_TILE],
    ) {
        // SAFETY: selected only after runtime detection of AVX2, FMA and AVX-VNNI.
        unsafe { qdot_vnni(dtype, row, acts, tokens, out) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn qdot_avx2(
        dtype: DType,
        row: &[u8],
        acts: &[ActBlock],
        tokens: usize,
        out: &mut [f32; TOKEN_TILE],
    ) {
        // SAFETY: the caller guarantees AVX2 and FMA, all this body needs without VNNI.
        unsafe { qdot_dispatch::<false>(dtype, row, acts, tokens, out) }
    }

    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn qdot_vnni(
        dtype: DType,
        row: &[u8],
        acts: &[ActBlock],
        tokens: usize,
        out: &mut [f32; TOKEN_TILE],
    ) {
        // SAFETY: the caller guarantees AVX2, FMA and AVX-VNNI.
        unsafe { qdot_dispatch::<true>(dtype, row, acts, tokens, out) }
    }

    pub(super) fn qdot_rows_avx2_safe(
        dtype: DType,
        weights: &[u8],
        row_bytes: usize,
        rows: usize,
        acts: &[ActBlock],
        out: &mut [f32; TOKEN_TILE],
    ) {
        // SAFETY: selected only after runtime detection of AVX2 and FMA.
        unsafe { qdot_rows_avx2(dtype, weights, row_bytes, rows, acts, out) }
    }

    pub(super) fn qdot_rows_vnni_safe(
        dtype: DType,
        weights: &[u8],
        row_bytes: usize,
        rows: usize,
        acts: &[ActBlock],
        out: &mut [f32; TOKEN_TILE],
    ) {
        // SAFETY: selected only after runtime detection of AVX2, FMA and AVX-VNNI.
        unsafe { qdot_rows_vnni(dtype, weights, row_bytes, rows, acts, out) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn qdot_rows_avx2(
        dtype: DType,
        weights: &[u8],
        row_bytes: usize,
        rows: usize,
        acts: &[ActBlock],
        out: &mut [f32; TOKEN_TILE],
    ) {
        // SAFETY: the caller guarantees AVX2 and FMA.
        unsafe { qdot_rows_dispatch::<false>(dtype, weights, row_bytes, rows, acts, out) }
    }

    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn qdot_rows_vnni(
        dtype: DType,
        weights: &[u8],
        row_bytes: usize,
        rows: usize,
        acts: &[ActBlock],
        out: &mut [f32; TOKEN_TILE],
    ) {
        // SAFETY: the caller guarantees AVX2, FMA and AVX-VNNI.
        unsafe { qdot_rows_dispatch::<true>(dtype, weights, row_bytes, rows, acts, out) }
    }

    #[inline(always)]
    unsafe fn qdot_rows_dispatch<const VNNI: bool>(
        dtype: DType,
        weights: &[u8],
        row_bytes: usize,
        rows: usize,
        acts: &[ActBlock],
        out: &mut [f32; TOKEN_TILE],
    ) {
        // SAFETY (all arms): the target features are guaranteed by the caller.
        match dtype {
            DType::Q4_1 => unsafe {
                qdot_row_blocks::<Q4_1, VNNI>(weights, row_bytes, rows, acts, out);
            },
            DType::Q4_0 => unsafe {
                qdot_row_blocks::<Q4_0, VNNI>(weights, row_bytes, rows, acts, out);
            },
            DType::Q8_0 => unsafe {
                qdot_row_blocks::<Q8_0, VNNI>(weights, row_bytes, rows, acts, out);
            },
            _ => {
                let mut one = [0f32; TOKEN_TILE];
                for (r, value) in out.iter_mut().enumerate().take(rows) {
                    let row = &weights[r * row_bytes..(r + 1) * row_bytes];
                    // SAFETY: as above.
                    unsafe { qdot_dispatch::<VNNI>(dtype, row, acts, 1, &mut one) };
                    *value = one[0];
                }
            }
        }
    }

    const Q4_1: u8 = 0;
    const Q4_0: u8 = 1;
    const Q8_0: u8 = 2;

    static PREFETCH_ON: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        std::env::var("SWITCHBOARD_PREFETCH").map_or(true, |v| v != "off")
    });

    /// The 32 weights of one block as bytes: unsigned 0..15 for Q4_1, signed otherwise.
    #[inline(always)]
    unsafe fn block_weights<const KIND: u8>(w: &[u8]) -> __m256i {
        if KIND == Q8_0 {
            // SAFETY: a Q8_0 block holds 32 quant bytes after its 2-byte scale.
            unsafe { _mm256_loadu_si256(w[2..34].as_ptr().cast()) }
        } else {
            let qs = if KIND == Q4_1 { &w[4..20] } else { &w[2..18] };
            // SAFETY: `qs` holds exactly 16 bytes.
            let packed = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
            let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
            let nibbles = _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
            if KIND == Q4_0 {
                _mm256_sub_epi8(nibbles, _mm256_set1_epi8(8))
            } else {
                nibbles
            }
        }
    }

    /// [`qdot_blocks`] for one token and [`TOKEN_TILE`] rows: the same operations in the same
    /// order per row, with one accumulator per row (kept in registers: the row count is a
    /// constant), so the rows' FMA chains overlap. Fewer rows go one at a time.
    #[inline(always)]
    unsafe fn qdot_row_blocks<const KIND: u8, const VNNI: bool>(
        weights: &[u8],
        row_bytes: usize,
        rows: usize,
        acts: &[ActBlock],
        out: &mut [f32; TOKEN_TILE],
    ) {
        const ROWS: usize = TOKEN_TILE;
        let block_bytes = match KIND {
            Q4_1 => 20,
            Q4_0 => 18,
            _ => 34,
        };
        let blocks = (row_bytes / block_bytes).min(acts.len());
        if rows != ROWS || weights.len() < ROWS * row_bytes {
            let mut one = [0f32; TOKEN_TILE];
            for (r, value) in out.iter_mut().enumerate().take(rows) {
                let row = &weights[r * row_bytes..(r + 1) * row_bytes];
                // SAFETY: the caller guarantees the target features.
                unsafe { qdot_blocks::<KIND, VNNI>(row, &acts[..blocks], 1, &mut one) };
                *value = one[0];
            }
            return;
        }
        let table: &[f32] = &F16_TABLE;
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); ROWS];
        let prefetch = *PREFETCH_ON;
        let mut offsets = [0f32; ROWS];
        let signed = KIND != Q4_1;
        for (b, a) in acts.iter().enumerate().take(blocks) {
            // SAFETY: `a.qs` is 32 bytes.
            let ax = unsafe { _mm256_loadu_si256(a.qs.as_ptr().cast()) };
            for r in 0..ROWS {
                let start = r * row_bytes + b * block_bytes;
                // SAFETY: `b < blocks ≤ row_bytes / block_bytes` and `r < ROWS`, and `weights`
                // holds `ROWS` whole rows (checked above), so the block is in bounds.
                let w = unsafe { weights.get_unchecked(start..start + block_bytes) };
                if prefetch {
                    // The same block of the next group of rows: weights stream from memory,
                    // and the hardware prefetcher alone leaves the loads waiting.
                    let ahead = w.as_ptr().wrapping_add(ROWS * row_bytes);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                }
                let d = table[usize::from(u16::from_le_bytes([w[0], w[1]]))];
                // SAFETY: `w` is one whole block.
                let wx = unsafe { block_weights::<KIND>(w) };
                let wx_abs = if signed { _mm256_sign_epi8(wx, wx) } else { wx };
                let ay = if signed { _mm256_sign_epi8(ax, wx) } else { ax };
                let ints = if VNNI {
                    _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), wx_abs, ay)
                } else {
                    _mm256_madd_epi16(_mm256_maddubs_epi16(wx_abs, ay), ones)
                };
                let sums = _mm256_cvtepi32_ps(ints);
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), sums, acc[r]);
                if KIND == Q4_1 {
                    let m = table[usize::from(u16::from_le_bytes([w[2], w[3]]))];
                    offsets[r] += m * a.s;
                }
            }
        }
        for r in 0..ROWS {
            out[r] = horizontal_sum(acc[r]) + offsets[r];
        }
    }

    #[inline(always)]
    unsafe fn qdot_dispatch<const VNNI: bool>(
        dtype: DType,
        row: &[u8],
        acts: &[ActBlock],
        tokens: usize,
        out: &mut [f32; TOKEN_TILE],
    ) {
        // SAFETY (all arms): the target features are guaranteed by the caller.
        match dtype {
            DType::Q4_1 => unsafe { qdot_blocks::<Q4_1, VNNI>(row, acts, tokens, out) },
            DType::Q4_0 => unsafe { qdot_blocks::<Q4_0, VNNI>(row, acts, tokens, out) },
            DType::Q8_0 => unsafe { qdot_blocks::<Q8_0, VNNI>(row, acts, tokens, out) },
            // K-quants: the generic code, compiled here with the vector features enabled.
            DType::Q4K | DType::Q6K => {
                let blocks = acts.len() / tokens.max(1);
                for (t, value) in out.iter_mut().enumerate().take(tokens) {
                    *value = super::qdot_generic(dtype, row, &acts[t * blocks..(t + 1) * blocks]);
                }
            }
            DType::F32 | DType::F16 => {}
        }
    }

    /// ggml's formulation: unsigned-by-signed byte products summed to i32 per lane (`maddubs`
    /// then `madd` with ones, or one `dpbusd` with VNNI), converted to f32 and scaled per block.
    /// One accumulator per token, in block order, as ggml sums: a second accumulator (to hide
    /// FMA latency) changed the rounding enough to flip a near-tie early in the golden prompt.
    #[inline(always)]
    unsafe fn qdot_blocks<const KIND: u8, const VNNI: bool>(
        row: &[u8],
        acts: &[ActBlock],
        tokens: usize,
        out: &mut [f32; TOKEN_TILE],
    ) {
        let table: &[f32] = &F16_TABLE;
        let blocks = acts.len() / tokens.max(1);
        let ones = _mm256_set1_epi16(1);
        let low_mask = _mm256_set1_epi8(0x0f);
        let mut acc = [_mm256_setzero_ps(); TOKEN_TILE];
        let mut offsets = [0f32; TOKEN_TILE];
        let block_bytes = match KIND {
            Q4_1 => 20,
            Q4_0 => 18,
            _ => 34,
        };
        // Weights as unsigned (Q4_1: 0..15) or as signed with their sign moved onto the
        // activations (Q4_0, Q8_0), because the byte products take unsigned by signed.
        let signed = KIND != Q4_1;
        for (b, w) in row.chunks_exact(block_bytes).enumerate().take(blocks) {
            let d = table[usize::from(u16::from_le_bytes([w[0], w[1]]))];
            let wx = if KIND == Q8_0 {
                // SAFETY: a Q8_0 block holds 32 quant bytes after its 2-byte scale.
                unsafe { _mm256_loadu_si256(w[2..34].as_ptr().cast()) }
            } else {
                let qs = if KIND == Q4_1 { &w[4..20] } else { &w[2..18] };
                // SAFETY: `qs` holds exactly 16 bytes.
                let packed = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
                let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
                let nibbles = _mm256_and_si256(both, low_mask);
                if KIND == Q4_0 {
                    _mm256_sub_epi8(nibbles, _mm256_set1_epi8(8))
                } else {
                    nibbles
                }
            };
            let wx_abs = if signed { _mm256_sign_epi8(wx, wx) } else { wx };
            let m = if KIND == Q4_1 {
                table[usize::from(u16::from_le_bytes([w[2], w[3]]))]
            } else {
                0.0
            };
            for t in 0..tokens {
                let a = &acts[t * blocks + b];
                // SAFETY: `a.qs` is 32 bytes.
                let ax = unsafe { _mm256_loadu_si256(a.qs.as_ptr().cast()) };
                let ay = if signed { _mm256_sign_epi8(ax, wx) } else { ax };
                let ints = if VNNI {
                    _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), wx_abs, ay)
                } else {
                    _mm256_madd_epi16(_mm256_maddubs_epi16(wx_abs, ay), ones)
                };
                let sums = _mm256_cvtepi32_ps(ints);
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), sums, acc[t]);
                if KIND == Q4_1 {
                    offsets[t] += m * a.s;
                }
            }
        }
        for t in 0..tokens {
            out[t] = horizontal_sum(acc[t]) + offsets[t];
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn horizontal_sum(v: __m256) -> f32 {
        let low = _mm256_castps256_ps128(v);
        let high = _mm256_extractf128_ps(v, 1);
        let quad = _mm_add_ps(low, high);
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 0x55)))
    }

    pub(super) fn dot_avx2_safe(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: this function is only selected after runtime detection of AVX2 and FMA.
        unsafe { dot_avx2(a, b) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc: [__m256; 4] = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (lane, slot) in acc.iter_mut().enumerate() {
                // SAFETY: i + 8·lane + 8 <= i + 32 <= n, within both slices.
                unsafe {
                    let x = _mm256_loadu_ps(pa.add(i + lane * 8));
                    let y = _mm256_loadu_ps(pb.add(i + lane * 8));
                    *slot = _mm256_fmadd_ps(x, y, *slot);
                }
            }
            i += 32;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                let x = _mm256_loadu_ps(pa.add(i));
                let y = _mm256_loadu_ps(pb.add(i));
                acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            }
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let low = _mm256_castps256_ps128(sum);
        let high = _mm256_extractf128_ps(sum, 1);
        let quad = _mm_add_ps(low, high);
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let single = _mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 0x55));
        let mut total = _mm_cvtss_f32(single);
        while i < n {
            total += a[i] * b[i];
            i += 1;
        }
        total
    }
}

/// `out = x / rms(x) · weight`, per row of length `weight.len()`. The mean square is summed
/// in f64, as ggml does, so the normalisation agrees with llama.cpp to the last bit we can.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    for (row, out_row) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let sum: f64 = row.iter().map(|v| f64::from(v * v)).sum();
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let mean_square = (sum / dim as f64) as f32;
        let scale = 1.0 / (mean_square + eps).sqrt();
        for ((o, v), w) in out_row.iter_mut().zip(row).zip(weight) {
            *o = v * scale * w;
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn scalar_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    #[test]
    fn simd_dot_matches_scalar_on_odd_lengths() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for n in [0, 1, 7, 8, 31, 32, 33, 64, 575, 576, 1536, 1537] {
            let a: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let want = scalar_dot(&a, &b);
            for got in [dot(&a, &b), dot_portable(&a, &b)] {
                let err = (f64::from(got) - want).abs();
                assert!(
                    err <= 1e-4 * (1.0 + want.abs()),
                    "n={n} got={got} want={want}"
                );
            }
        }
    }

    fn encode_q4_1(values: &[f32]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for block in values.chunks_exact(32) {
            let min = block.iter().copied().fold(f32::INFINITY, f32::min);
            let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let d = (max - min) / 15.0;
            let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
            bytes.extend(f16::from_f32(d).to_le_bytes());
            bytes.extend(f16::from_f32(min).to_le_bytes());
            for j in 0..16 {
                let lo = ((block[j] - min) * inv).round().clamp(0.0, 15.0) as u8;
                let hi = ((block[j + 16] - min) * inv).round().clamp(0.0, 15.0) as u8;
                bytes.push(lo | (hi << 4));
            }
        }
        bytes
    }

    fn encode(dtype: DType, values: &[f32]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for block in values.chunks_exact(32) {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            match dtype {
                DType::Q4_1 => return encode_q4_1(values),
                DType::Q4_0 => {
                    let d = amax / 7.0;
                    let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
                    bytes.extend(f16::from_f32(d).to_le_bytes());
                    for j in 0..16 {
                        let q = |v: f32| ((v * inv).round() + 8.0).clamp(0.0, 15.0) as u8;
                        bytes.push(q(block[j]) | (q(block[j + 16]) << 4));
                    }
                }
                DType::Q8_0 => {
                    let d = amax / 127.0;
                    let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
                    bytes.extend(f16::from_f32(d).to_le_bytes());
                    bytes.extend(
                        block
                            .iter()
                            .map(|v| ((v * inv).round() as i8).cast_unsigned()),
                    );
                }
                DType::Q4K | DType::Q6K | DType::F32 | DType::F16 => unreachable!(),
            }
        }
        bytes
    }

    #[test]
    fn quantized_kernels_match_scalar_reference_on_odd_shapes() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q8_0] {
            for (rows, cols) in [(37, 96), (16, 32), (5, 576), (33, 160)] {
                let weights: Vec<f32> = (0..rows * cols)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                let bytes = encode(dtype, &weights);
                let file = tempfile_with(&bytes);
                let mmap = Arc::new(unsafe_map(&file));
                let matrix =
                    Matrix::new(dtype, rows, cols, MappedBytes::new(mmap, 0, bytes.len())).unwrap();
                let mut dequantized = vec![0.0; rows * cols];
                for r in 0..rows {
                    matrix.row_into(r, &mut dequantized[r * cols..(r + 1) * cols]);
                }
                for (w, d) in weights.iter().zip(&dequantized) {
                    assert!(
                        (w - d).abs() < 0.1,
                        "{dtype:?} quantization error: {w} vs {d}"
                    );
                }
                for n in [1, 2, 4, 5, 9] {
                    let x: Vec<f32> = (0..n * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
                    let mut acts = Vec::new();
                    quantize_rows(&x, cols, dtype == DType::Q4_1, &mut acts);
                    let mut out = vec![0.0; n * rows];
                    matrix.matmul(&x, &mut out);
                    for t in 0..n {
                        let act = &acts[t * cols / 32..(t + 1) * cols / 32];
                        // The reference sees the same 8-bit activations the kernel does.
                        let xq: Vec<f32> = act
                            .iter()
                            .flat_map(|b| b.qs.map(|q| b.d * f32::from(q)))
                            .collect();
                        let mut portable = [0f32; TOKEN_TILE];
                        for r in 0..rows {
                            let w = &dequantized[r * cols..(r + 1) * cols];
                            let want = scalar_dot(w, &xq);
                            let exact = scalar_dot(w, &x[t * cols..(t + 1) * cols]);
                            let got = f64::from(out[t * rows + r]);
                            let tol = 2e-3 * (1.0 + want.abs()) + 1e-3 * (cols as f64).sqrt();
                            assert!(
                                (got - want).abs() <= tol,
                                "{dtype:?} n={n} t={t} r={r}: {got} vs {want}"
                            );
                            assert!(
                                (got - exact).abs()
                                    <= 0.05 * (1.0 + exact.abs()) + 0.02 * (cols as f64).sqrt(),
                                "{dtype:?} t={t} r={r}"
                            );
                            let row = &bytes[r * matrix.row_bytes..(r + 1) * matrix.row_bytes];
                            qdot_portable(dtype, row, act, 1, &mut portable);
                            let p = f64::from(portable[0]);
                            assert!(
                                (p - got).abs() <= 1e-4 * (1.0 + got.abs()),
                                "{dtype:?} simd {got} vs portable {p}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Random K-quant blocks: every byte pattern is a valid block; only the f16 super-scales
    /// are set to sane magnitudes.
    fn random_k_blocks(dtype: DType, rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let (per_block, bytes_per_block) = dtype.block();
        let blocks = rows * cols / per_block as usize;
        let mut bytes: Vec<u8> = (0..blocks * bytes_per_block as usize)
            .map(|_| rng.random())
            .collect();
        for block in bytes.chunks_exact_mut(bytes_per_block as usize) {
            let d = f16::from_f32(rng.random_range(0.001..0.02)).to_le_bytes();
            match dtype {
                DType::Q4K => {
                    block[0..2].copy_from_slice(&d);
                    block[2..4]
                        .copy_from_slice(&f16::from_f32(rng.random_range(0.0..0.02)).to_le_bytes());
                }
                DType::Q6K => block[208..210].copy_from_slice(&d),
                _ => unreachable!(),
            }
        }
        bytes
    }

    #[test]
    fn k_quant_kernels_match_scalar_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for dtype in [DType::Q4K, DType::Q6K] {
            for (rows, cols) in [(5, 256), (17, 512)] {
                let bytes = random_k_blocks(dtype, rows, cols, &mut rng);
                let file = tempfile_with(&bytes);
                let mmap = Arc::new(unsafe_map(&file));
                let matrix =
                    Matrix::new(dtype, rows, cols, MappedBytes::new(mmap, 0, bytes.len())).unwrap();
                let mut dequantized = vec![0.0; rows * cols];
                for r in 0..rows {
                    matrix.row_into(r, &mut dequantized[r * cols..(r + 1) * cols]);
                }
                for n in [1, 3, 5] {
                    let x: Vec<f32> = (0..n * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
                    let mut acts = Vec::new();
                    quantize_rows(&x, cols, true, &mut acts);
                    let mut out = vec![0.0; n * rows];
                    matrix.matmul(&x, &mut out);
                    for t in 0..n {
                        let act = &acts[t * cols / 32..(t + 1) * cols / 32];
                        let xq: Vec<f32> = act
                            .iter()
                            .flat_map(|b| b.qs.map(|q| b.d * f32::from(q)))
                            .collect();
                        for r in 0..rows {
                            let w = &dequantized[r * cols..(r + 1) * cols];
                            let want = scalar_dot(w, &xq);
                            let got = f64::from(out[t * rows + r]);
                            // Q4_K's mins use the f16-rounded activation sums, as llama.cpp's do.
                            let tol = 1e-3 * (1.0 + want.abs()) + 2e-3 * (cols as f64).sqrt();
                            assert!(
                                (got - want).abs() <= tol,
                                "{dtype:?} n={n} t={t} r={r}: {got} vs {want}"
                            );
                            // Against exact activations the error is bounded by 8-bit rounding:
                            // half a quantization step per activation.
                            let exact = scalar_dot(w, &x[t * cols..(t + 1) * cols]);
                            let bound: f64 = w
                                .iter()
                                .enumerate()
                                .map(|(i, wi)| {
                                    f64::from(wi.abs()) * f64::from(act[i / 32].d) * 0.51
                                })
                                .sum();
                            assert!(
                                (got - exact).abs() <= bound * 1.05 + 1e-3,
                                "{dtype:?} vs exact"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn k_quant_layout_matches_ggml_reference_values() {
        // One Q6_K block whose values are all (q - 32) * scale * d with known bytes.
        let mut block = vec![0u8; 210];
        block[0] = 0x21; // ql[0]: low nibble 1 (group 0, l=0), high nibble 2 (group 2, l=0)
        block[32] = 0x43; // ql[32]: low 3 (group 1), high 4 (group 3)
        block[128] = 0b1110_0100; // qh[0]: groups 0..4 get high bits 0, 1, 2, 3
        for s in 0..16 {
            block[192 + s] = 1;
        }
        block[208..210].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
        let mut out = vec![0.0; 256];
        dequantize(DType::Q6K, &block, &mut out);
        assert_eq!(
            [out[0], out[32], out[64], out[96]],
            [
                1.0 - 32.0,
                3.0 + 16.0 - 32.0,
                2.0 + 32.0 - 32.0,
                4.0 + 48.0 - 32.0
            ]
        );
        // Q4_K: scale/min unpacking of sub-blocks 0 and 4.
        let scales = [5u8, 0, 0, 0, 7, 0, 0, 0, 0x93, 0, 0, 0];
        assert_eq!(q4k_scale_min(&scales, 0), (5, 7));
        assert_eq!(q4k_scale_min(&scales, 4), (0x03, 0x09));
    }

    /// Every compiled SIMD variant, not just the one this CPU selects, against the reference.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_simd_variant_matches_portable() {
        use std::arch::is_x86_feature_detected as has;
        let mut variants: Vec<(&str, QDotFn)> = Vec::new();
        if has!("avx2") && has!("fma") {
            variants.push(("avx2", x86::qdot_avx2_safe));
            if has!("avxvnni") {
                variants.push(("vnni", x86::qdot_vnni_safe));
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let cols = 160;
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q8_0] {
            let weights: Vec<f32> = (0..cols).map(|_| rng.random_range(-1.0..1.0)).collect();
            let row = encode(dtype, &weights);
            for tokens in 1..=TOKEN_TILE {
                let x: Vec<f32> = (0..tokens * cols)
                    .map(|_| rng.random_range(-3.0..3.0))
                    .collect();
                let mut acts = Vec::new();
                quantize_rows(&x, cols, true, &mut acts);
                let mut want = [0f32; TOKEN_TILE];
                qdot_portable(dtype, &row, &acts, tokens, &mut want);
                for (name, kernel) in &variants {
                    let mut got = [0f32; TOKEN_TILE];
                    kernel(dtype, &row, &acts, tokens, &mut got);
                    for t in 0..tokens {
                        assert!(
                            (got[t] - want[t]).abs() <= 1e-4 * (1.0 + want[t].abs()),
                            "{name} {dtype:?} tokens={tokens} t={t}: {} vs {}",
                            got[t],
                            want[t]
                        );
                    }
                }
            }
        }
    }

    /// The multi-row kernel gives exactly (bit for bit) what the one-row kernel gives per row,
    /// so switching between them can never change an answer.
    #[test]
    fn multi_row_kernels_are_bit_identical_to_one_row() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let cols = 192;
        let mut variants: Vec<(&str, QDotFn, QDotRowsFn)> =
            vec![("portable", qdot_portable, qdot_rows_portable)];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                variants.push(("avx2", x86::qdot_avx2_safe, x86::qdot_rows_avx2_safe));
                if has!("avxvnni") {
                    variants.push(("vnni", x86::qdot_vnni_safe, x86::qdot_rows_vnni_safe));
                }
            }
        }
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q8_0] {
            let mut weights = Vec::new();
            for _ in 0..ROW_TILE {
                let row: Vec<f32> = (0..cols).map(|_| rng.random_range(-1.0..1.0)).collect();
                weights.extend(encode(dtype, &row));
            }
            let row_bytes = weights.len() / ROW_TILE;
            let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-3.0..3.0)).collect();
            let mut acts = Vec::new();
            quantize_rows(&x, cols, true, &mut acts);
            for (name, one_row, many_rows) in &variants {
                for rows in 1..=ROW_TILE {
                    let mut got = [0f32; TOKEN_TILE];
                    many_rows(dtype, &weights, row_bytes, rows, &acts, &mut got);
                    for r in 0..rows {
                        let mut want = [0f32; TOKEN_TILE];
                        one_row(
                            dtype,
                            &weights[r * row_bytes..(r + 1) * row_bytes],
                            &acts,
                            1,
                            &mut want,
                        );
                        assert_eq!(
                            got[r].to_bits(),
                            want[0].to_bits(),
                            "{name} {dtype:?} rows={rows} r={r}: {} vs {}",
                            got[r],
                            want[0]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn activation_quantization_round_trips() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 10.0).collect();
        let mut acts = Vec::new();
        quantize_rows(&x, 64, true, &mut acts);
        assert_eq!(acts.len(), 2);
        for (block, chunk) in acts.iter().zip(x.chunks(32)) {
            let sum: i32 = block.qs.iter().map(|q| i32::from(*q)).sum();
            assert!((block.s - block.d * sum as f32).abs() < 1e-2);
            for (q, v) in block.qs.iter().zip(chunk) {
                assert!((block.d * f32::from(*q) - v).abs() <= block.d * 0.51 + 1e-3);
            }
        }
    }

    /// The AVX-512 tile kernel gives exactly the AVX2 kernel's bits for every token, including
    /// odd tails of half-filled pairs and tiles, so a kernel choice never changes a token.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn tile_kernel_is_bit_identical_to_the_avx2_kernel() {
        let Some(kernel) = *wide::KERNEL else {
            eprintln!("skipping: this CPU has no AVX-512 VNNI (or SWITCHBOARD_KERNEL is set)");
            return;
        };
        assert!(std::arch::is_x86_feature_detected!("avx2"));
        let mut rng = ChaCha8Rng::seed_from_u64(23);
        for dtype in [DType::Q4_1, DType::Q4_0, DType::Q8_0] {
            for cols in [32, 96, 576, 1536] {
                let rows = 3;
                let weights: Vec<f32> = (0..rows * cols)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                let bytes = encode(dtype, &weights);
                let row_bytes = bytes.len() / rows;
                for n in [2, 3, 7, 8, 9, 17] {
                    let x: Vec<f32> = (0..n * cols).map(|_| rng.random_range(-3.0..3.0)).collect();
                    let mut acts = Vec::new();
                    quantize_rows(&x, cols, true, &mut acts);
                    let blocks = cols / 32;
                    let mut tiles = wide::Tiles::default();
                    tiles.pack(&acts, n, blocks);
                    for r in 0..rows {
                        let row = &bytes[r * row_bytes..(r + 1) * row_bytes];
                        for tile in 0..tiles.tiles() {
                            let mut got = [0f32; wide::TOKENS];
                            kernel(dtype, row, &tiles, tile, &mut got);
                            for (i, value) in got[..tiles.tile_tokens(tile)].iter().enumerate() {
                                let t = tile * wide::TOKENS + i;
                                let mut want = [0f32; TOKEN_TILE];
                                x86::qdot_avx2_safe(
                                    dtype,
                                    row,
                                    &acts[t * blocks..(t + 1) * blocks],
                                    1,
                                    &mut want,
                                );
                                assert_eq!(
                                    value.to_bits(),
                                    want[0].to_bits(),
                                    "{dtype:?} cols={cols} n={n} row={r} token={t}: {value} vs {}",
                                    want[0]
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    fn tempfile_with(bytes: &[u8]) -> std::fs::File {
        use std::io::Write;
        // Tests run in parallel threads of one process: each call needs its own file.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let serial = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sb-tensor-test-{}-{serial}", std::process::id()));
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    fn unsafe_map(file: &std::fs::File) -> Mmap {
        // SAFETY: the file is private to this test and never modified.
        unsafe { Mmap::map(file).unwrap() }
    }
}
