//! The AVX-512 VNNI kernel for steps of several tokens (prefill chunks, batched decode).
//!
//! The AVX2 kernel spends most of its instructions per (weight block, token) pair on scalar
//! work around one 256-bit integer dot product: the scale product, its broadcast, the Q4_1
//! offset. Here the activations are first laid out in tiles of [`TOKENS`] tokens, two tokens'
//! blocks side by side in one 512-bit register with their scales already repeated across the
//! lanes, and the offsets' sums stored so eight tokens' offsets take one vector operation. One
//! unpacked weight block then costs a `vpdpbusd`, a conversion, a multiply and an FMA per two
//! tokens.
//!
//! Every lane computes exactly what the AVX2 kernel computes for its token, in the same order
//! (the same integer lane sums, the same `d_w · d_a` product, the same FMA chain over blocks,
//! the same horizontal sum and offset addition), so results are bit-identical and the choice of
//! kernel never changes a generated token.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m512i, _mm256_add_ps, _mm256_and_si256, _mm256_castpd_ps, _mm256_load_ps, _mm256_loadu_si256,
    _mm256_mul_ps, _mm256_set1_epi8, _mm256_set1_ps, _mm256_set_m128i, _mm256_setzero_ps,
    _mm256_storeu_ps, _mm256_xor_si256, _mm512_broadcast_i64x4, _mm512_castps512_ps256,
    _mm512_castps_pd, _mm512_cvtepi32_ps, _mm512_dpbusd_epi32, _mm512_extractf64x4_pd,
    _mm512_fmadd_ps, _mm512_load_ps, _mm512_load_si512, _mm512_mul_ps, _mm512_set1_epi8,
    _mm512_set1_ps, _mm512_setzero_ps, _mm512_setzero_si512, _mm512_sub_epi32, _mm_loadu_si128,
    _mm_srli_epi16,
};
use std::sync::LazyLock;

#[cfg(target_arch = "x86_64")]
use super::scale;
use super::{ActBlock, DType, F16_TABLE};

/// Token pairs per tile (two tokens share one 512-bit register).
pub const PAIRS: usize = 4;
/// Tokens per tile: each unpacked weight block is used for all of them.
pub const TOKENS: usize = 2 * PAIRS;

/// One 32-weight block position of one tile: the quantized activations of its tokens, pair
/// by pair, with what the kernel needs ready in vector form. Unused token slots are zero.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct TileBlock {
    /// Per pair: the first token's 32 quants, then the second's.
    qs: [[i8; 64]; PAIRS],
    /// Per pair: the first token's scale in lanes 0–7, the second's in lanes 8–15.
    d: [[f32; 16]; PAIRS],
    /// Per token: its block sum `s` (for the Q4_1 offset).
    s: [f32; TOKENS],
}

const EMPTY: TileBlock = TileBlock {
    qs: [[0; 64]; PAIRS],
    d: [[0.0; 16]; PAIRS],
    s: [0.0; TOKENS],
};

/// A step's quantized activations in tiles: `tiles × blocks` [`TileBlock`]s, tile-major.
#[derive(Default)]
pub struct Tiles {
    blocks: usize,
    tokens: usize,
    data: Vec<TileBlock>,
}

impl Tiles {
    /// Lays out `acts` (`tokens` rows of `blocks` blocks each, as `quantize_rows` makes them).
    pub fn pack(&mut self, acts: &[ActBlock], tokens: usize, blocks: usize) {
        self.blocks = blocks;
        self.tokens = tokens;
        self.data.clear();
        self.data.resize(tokens.div_ceil(TOKENS) * blocks, EMPTY);
        for t in 0..tokens {
            let (tile, slot) = (t / TOKENS, t % TOKENS);
            let (pair, half) = (slot / 2, slot % 2);
            for b in 0..blocks {
                let act = &acts[t * blocks + b];
                let block = &mut self.data[tile * blocks + b];
                block.qs[pair][half * 32..half * 32 + 32].copy_from_slice(&act.qs);
                block.d[pair][half * 8..half * 8 + 8].fill(act.d);
                block.s[slot] = act.s;
            }
        }
    }

    #[must_use]
    pub fn tiles(&self) -> usize {
        self.tokens.div_ceil(TOKENS)
    }

    /// Tokens in tile `tile` (all but the last are full).
    #[must_use]
    pub fn tile_tokens(&self, tile: usize) -> usize {
        TOKENS.min(self.tokens - tile * TOKENS)
    }

    fn tile(&self, tile: usize) -> &[TileBlock] {
        &self.data[tile * self.blocks..(tile + 1) * self.blocks]
    }
}

/// Dot products of one weight row with the tokens of one tile, written to
/// `out[..tile_tokens]`.
pub type TileKernel = fn(DType, &[u8], &Tiles, usize, &mut [f32; TOKENS]);

/// The tile kernel, where the CPU has AVX-512 VNNI and the kernel is not overridden
/// (`SWITCHBOARD_KERNEL=portable|avx2|vnni` keep the narrower kernels, for comparisons).
pub static KERNEL: LazyLock<Option<TileKernel>> = LazyLock::new(|| {
    LazyLock::force(&F16_TABLE);
    #[cfg(target_arch = "x86_64")]
    {
        let wanted = std::env::var("SWITCHBOARD_KERNEL").unwrap_or_default();
        let detected = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        if detected && wanted.is_empty() {
            return Some(tile_dot_safe as TileKernel);
        }
    }
    None
});

/// Whether the tile kernel computes `dtype` (the K-quants keep the AVX2 kernel).
#[must_use]
pub fn handles(dtype: DType) -> bool {
    matches!(dtype, DType::Q4_1 | DType::Q4_0 | DType::Q8_0)
}

#[cfg(target_arch = "x86_64")]
fn tile_dot_safe(dtype: DType, row: &[u8], tiles: &Tiles, tile: usize, out: &mut [f32; TOKENS]) {
    // SAFETY: `KERNEL` hands this function out only after detecting every feature it enables.
    unsafe { tile_dot(dtype, row, tiles, tile, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
unsafe fn tile_dot(dtype: DType, row: &[u8], tiles: &Tiles, tile: usize, out: &mut [f32; TOKENS]) {
    let blocks = tiles.tile(tile);
    let pairs = tiles.tile_tokens(tile).div_ceil(2);
    // SAFETY (all arms): the features are enabled on this function, guaranteed by the caller.
    unsafe {
        match (dtype, pairs) {
            (DType::Q4_1, 1) => blocks_dot::<Q4_1, 1>(row, blocks, out),
            (DType::Q4_1, 2) => blocks_dot::<Q4_1, 2>(row, blocks, out),
            (DType::Q4_1, 3) => blocks_dot::<Q4_1, 3>(row, blocks, out),
            (DType::Q4_1, _) => blocks_dot::<Q4_1, 4>(row, blocks, out),
            (DType::Q4_0, 1) => blocks_dot::<Q4_0, 1>(row, blocks, out),
            (DType::Q4_0, 2) => blocks_dot::<Q4_0, 2>(row, blocks, out),
            (DType::Q4_0, 3) => blocks_dot::<Q4_0, 3>(row, blocks, out),
            (DType::Q4_0, _) => blocks_dot::<Q4_0, 4>(row, blocks, out),
            (DType::Q8_0, 1) => blocks_dot::<Q8_0, 1>(row, blocks, out),
            (DType::Q8_0, 2) => blocks_dot::<Q8_0, 2>(row, blocks, out),
            (DType::Q8_0, 3) => blocks_dot::<Q8_0, 3>(row, blocks, out),
            (DType::Q8_0, _) => blocks_dot::<Q8_0, 4>(row, blocks, out),
            _ => unreachable!("the tile kernel is used only for the types `handles` accepts"),
        }
    }
}

#[cfg(target_arch = "x86_64")]
const Q4_1: u8 = 0;
const Q4_0: u8 = 1;
const Q8_0: u8 = 2;

/// `P` pairs of one tile against one row of type `KIND`.
///
/// The byte products take unsigned weights: Q4_1's nibbles are; Q4_0's weights are nibble − 8
/// and Q8_0's are (byte ⊕ 0x80) − 128, so those subtract `bias · Σ a` per lane — the same
/// integer lane sums the AVX2 kernel's sign trick gives.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn blocks_dot<const KIND: u8, const P: usize>(
    row: &[u8],
    tile: &[TileBlock],
    out: &mut [f32; TOKENS],
) {
    let table: &[f32] = &F16_TABLE;
    let block_bytes = match KIND {
        Q4_1 => 20,
        Q4_0 => 18,
        _ => 34,
    };
    let low_nibbles = _mm256_set1_epi8(0x0f);
    let bias = _mm512_set1_epi8(if KIND == Q4_0 { 8 } else { -128 });
    let flip = _mm256_set1_epi8(-128);
    let mut acc = [_mm512_setzero_ps(); P];
    let mut offsets = _mm256_setzero_ps();
    for (w, tb) in row.chunks_exact(block_bytes).zip(tile) {
        let d = scale(table, w[0], w[1]);
        let unsigned = if KIND == Q8_0 {
            // SAFETY: a Q8_0 block holds 32 quant bytes after its scale.
            _mm256_xor_si256(
                unsafe { _mm256_loadu_si256(w[2..34].as_ptr().cast()) },
                flip,
            )
        } else {
            let quants = if KIND == Q4_1 { &w[4..20] } else { &w[2..18] };
            // SAFETY: `quants` holds exactly 16 bytes.
            let packed = unsafe { _mm_loadu_si128(quants.as_ptr().cast()) };
            _mm256_and_si256(
                _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed),
                low_nibbles,
            )
        };
        let weights = _mm512_broadcast_i64x4(unsigned);
        let dw = _mm512_set1_ps(d);
        for ((lane, quants), scales) in acc.iter_mut().zip(&tb.qs).zip(&tb.d) {
            // SAFETY: `TileBlock` is 64-byte aligned and each pair's quants fill 64 bytes.
            let a: __m512i = unsafe { _mm512_load_si512(quants.as_ptr().cast()) };
            let mut ints = _mm512_dpbusd_epi32(_mm512_setzero_si512(), weights, a);
            if KIND != Q4_1 {
                ints = _mm512_sub_epi32(ints, _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, a));
            }
            let sums = _mm512_cvtepi32_ps(ints);
            // SAFETY: each pair's scales fill 64 aligned bytes.
            let scales = _mm512_mul_ps(dw, unsafe { _mm512_load_ps(scales.as_ptr()) });
            *lane = _mm512_fmadd_ps(scales, sums, *lane);
        }
        if KIND == Q4_1 {
            let m = scale(table, w[2], w[3]);
            // SAFETY: `s` is 32-byte aligned (at offset 512 of a 64-byte aligned block).
            let s = unsafe { _mm256_load_ps(tb.s.as_ptr()) };
            offsets = _mm256_add_ps(offsets, _mm256_mul_ps(_mm256_set1_ps(m), s));
        }
    }
    let mut offset = [0f32; TOKENS];
    // SAFETY: `offset` holds 8 floats.
    unsafe { _mm256_storeu_ps(offset.as_mut_ptr(), offsets) };
    for p in 0..P {
        let first = _mm512_castps512_ps256(acc[p]);
        let second = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc[p])));
        out[2 * p] = super::x86::horizontal_sum(first) + offset[2 * p];
        out[2 * p + 1] = super::x86::horizontal_sum(second) + offset[2 * p + 1];
    }
}
