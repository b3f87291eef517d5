//! Attention over the half-precision cache, tiled the way fast CPU engines do it.
//!
//! One task takes a tile of queries that share a KV head — the heads of a GQA group, for up to
//! [`ROW_TILE`] consecutive rows of one sequence — and streams that head's keys and values
//! through it in blocks of [`KEY_BLOCK`] positions: each block is converted from half precision
//! once and used by every query of the tile. Scores are computed eight keys at a time with one
//! accumulator per key and a single reduction tree for all eight; values are accumulated with
//! the query's output held in registers. The score buffer holds only the tile's rows, never a
//! sequence's whole score matrix.
//!
//! The arithmetic is the scalar path's, bit for bit on x86 with AVX2: scores reduced in the
//! same lane order, libm's `expf`, an f64 total in position order, weights normalized and then
//! rounded to half precision (llama.cpp's rounding, which the golden fixtures come from), values
//! accumulated in position order. [`attend_reference`] is a plain scalar version, kept as the
//! oracle for tests.

use std::cell::RefCell;

use half::f16;
use half::slice::HalfFloatSliceExt;

/// Consecutive rows of one sequence per task (times the GQA group = queries per tile).
pub const ROW_TILE: usize = 8;
/// Key positions converted and scored together.
pub const KEY_BLOCK: usize = 16;
/// Keys one score pass reduces together (the SIMD width).
const KEYS_PER_PASS: usize = 8;

/// One KV head of one layer of a sequence's cache: position `p` of that head is
/// `keys[p * stride + offset ..][.. head_dim]` (likewise `values`).
#[derive(Clone, Copy)]
pub struct HeadView<'a> {
    pub keys: &'a [f16],
    pub values: &'a [f16],
    pub stride: usize,
    pub offset: usize,
    /// Positions the cache has room for: working memory is sized for them at once, so a
    /// decoding sequence does not regrow it token by token.
    pub capacity: usize,
}

/// Working memory of one thread: scores of the tile, one converted block, half-precision
/// staging for rounding the weights.
#[derive(Default)]
struct Work {
    scores: Vec<f32>,
    block: Vec<f32>,
    halves: Vec<f16>,
}

thread_local! {
    static WORK: RefCell<Work> = RefCell::new(Work::default());
}

/// Attention of `lens.len()` queries (`queries`, row-major, `head_dim` each, already rounded to
/// half precision and not yet scaled) against one KV head: query `m` attends positions
/// `0..lens[m]`. Writes `out` (same layout as `queries`).
pub fn attend(
    queries: &[f32],
    lens: &[usize],
    head_dim: usize,
    scale: f32,
    head: HeadView<'_>,
    out: &mut [f32],
) {
    // The buffers are borrowed here, outside the kernel: code in a closure would not inherit
    // the kernel's target features (and `f32::mul_add` would become a libm call).
    WORK.with(|work| {
        let work = &mut *work.borrow_mut();
        #[cfg(target_arch = "x86_64")]
        {
            if *AVX2_FMA_F16C {
                // SAFETY: the features the function is compiled for were detected at start.
                unsafe { attend_avx2(queries, lens, head_dim, scale, head, work, out) };
                return;
            }
        }
        attend_tiled::<false>(queries, lens, head_dim, scale, head, work, out);
    });
}

/// Detected once: `attend` runs once per tile, KV head and layer of every step.
#[cfg(target_arch = "x86_64")]
static AVX2_FMA_F16C: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
});

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_avx2(
    queries: &[f32],
    lens: &[usize],
    head_dim: usize,
    scale: f32,
    head: HeadView<'_>,
    work: &mut Work,
    out: &mut [f32],
) {
    attend_tiled::<true>(queries, lens, head_dim, scale, head, work, out);
}

/// `a * b + c`, fused where the target has FMA (a software fused multiply-add would be slow).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[inline(always)]
fn attend_tiled<const FMA: bool>(
    queries: &[f32],
    lens: &[usize],
    head_dim: usize,
    scale: f32,
    head: HeadView<'_>,
    work: &mut Work,
    out: &mut [f32],
) {
    let count = lens.len();
    let longest = lens.iter().copied().max().unwrap_or(0);
    let positions = head.capacity.max(longest);
    if work.scores.capacity() < count * positions {
        work.scores
            .reserve_exact(count * positions - work.scores.len());
    }
    if work.halves.capacity() < positions {
        work.halves.reserve_exact(positions - work.halves.len());
    }
    work.scores.resize(count * longest, 0.0);
    work.block.resize(KEY_BLOCK * head_dim, 0.0);
    work.halves.resize(longest, f16::ZERO);

    // Scores, a key block at a time; keys past a block's width are zeros, never stored.
    let mut start = 0;
    while start < longest {
        let width = KEY_BLOCK.min(longest - start);
        load_block::<FMA>(head.keys, head, start, width, head_dim, &mut work.block);
        work.block[width * head_dim..].fill(0.0);
        for (m, &len) in lens.iter().enumerate() {
            if len <= start {
                continue;
            }
            let query = &queries[m * head_dim..(m + 1) * head_dim];
            let row = &mut work.scores[m * longest..(m + 1) * longest];
            let mut pass = 0;
            while pass < width.min(len - start) {
                let keys = &work.block[pass * head_dim..(pass + KEYS_PER_PASS) * head_dim];
                let scores = score_keys::<FMA>(query, keys, head_dim);
                let valid = KEYS_PER_PASS.min(len - start - pass);
                for (slot, score) in row[start + pass..start + pass + valid]
                    .iter_mut()
                    .zip(scores)
                {
                    *slot = score * scale;
                }
                pass += KEYS_PER_PASS;
            }
        }
        start += width;
    }

    // Softmax per query: weights normalized, then rounded to half precision.
    for (m, &len) in lens.iter().enumerate() {
        let row = &mut work.scores[m * longest..m * longest + len];
        softmax_rounded::<FMA>(row, &mut work.halves[..len]);
    }

    // Values, a block at a time, accumulated in position order.
    out[..count * head_dim].fill(0.0);
    let mut start = 0;
    while start < longest {
        let width = KEY_BLOCK.min(longest - start);
        load_block::<FMA>(head.values, head, start, width, head_dim, &mut work.block);
        for (m, &len) in lens.iter().enumerate() {
            if len <= start {
                continue;
            }
            let weights = &work.scores[m * longest + start..m * longest + len.min(start + width)];
            accumulate_values::<FMA>(
                weights,
                &work.block,
                &mut out[m * head_dim..(m + 1) * head_dim],
            );
        }
        start += width;
    }
}

/// Converts positions `start..start + width` of the head into `block` (row-major).
#[inline(always)]
fn load_block<const FMA: bool>(
    cache: &[f16],
    head: HeadView<'_>,
    start: usize,
    width: usize,
    head_dim: usize,
    block: &mut [f32],
) {
    for j in 0..width {
        let at = (start + j) * head.stride + head.offset;
        let (from, to) = (
            &cache[at..at + head_dim],
            &mut block[j * head_dim..(j + 1) * head_dim],
        );
        #[cfg(target_arch = "x86_64")]
        {
            if FMA {
                // SAFETY: `FMA` is true only inside `attend_avx2`, entered after detecting
                // AVX2, FMA and F16C.
                unsafe { x86::widen(from, to) };
                continue;
            }
        }
        from.convert_to_f32_slice(to);
    }
}

/// The scores of one query against [`KEYS_PER_PASS`] keys (`keys`: that many rows of
/// `head_dim`).
#[inline(always)]
fn score_keys<const FMA: bool>(
    query: &[f32],
    keys: &[f32],
    head_dim: usize,
) -> [f32; KEYS_PER_PASS] {
    #[cfg(target_arch = "x86_64")]
    {
        if FMA && head_dim.is_multiple_of(8) {
            // SAFETY: `FMA` is true only inside `attend_avx2`, compiled for and entered after
            // detecting AVX2 and FMA; `head_dim` is a multiple of 8 and the slices hold
            // `head_dim` and `8 × head_dim` values.
            return unsafe { x86::score_keys(query, keys, head_dim) };
        }
    }
    let mut scores = [0f32; KEYS_PER_PASS];
    for (score, key) in scores.iter_mut().zip(keys.chunks_exact(head_dim)) {
        *score = query
            .iter()
            .zip(key)
            .fold(0.0, |acc, (q, k)| madd::<FMA>(*q, *k, acc));
    }
    scores
}

/// `out += Σ_j weights[j] · values[j]`, in position order (`values`: rows of `out.len()`).
#[inline(always)]
fn accumulate_values<const FMA: bool>(weights: &[f32], values: &[f32], out: &mut [f32]) {
    let head_dim = out.len();
    #[cfg(target_arch = "x86_64")]
    {
        if FMA && head_dim.is_multiple_of(64) {
            // SAFETY: as in `score_keys`; `values` holds a row of `head_dim` per weight.
            unsafe { x86::accumulate_values(weights, values, out) };
            return;
        }
    }
    for (j, &weight) in weights.iter().enumerate() {
        let value = &values[j * head_dim..(j + 1) * head_dim];
        for (a, &v) in out.iter_mut().zip(value) {
            *a = madd::<FMA>(weight, v, *a);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256, _mm256_add_epi64, _mm256_add_ps, _mm256_and_si256, _mm256_castpd_si256,
        _mm256_castsi256_pd, _mm256_cvtpd_ps, _mm256_cvtph_ps, _mm256_cvtps_pd, _mm256_fmadd_pd,
        _mm256_fmadd_ps, _mm256_fmsub_pd, _mm256_i64gather_epi64, _mm256_loadu_ps, _mm256_mul_pd,
        _mm256_permute2f128_ps, _mm256_set1_epi64x, _mm256_set1_pd, _mm256_set1_ps,
        _mm256_setzero_ps, _mm256_shuffle_ps, _mm256_slli_epi64, _mm256_storeu_ps, _mm256_sub_pd,
        _mm_cmpgt_ps, _mm_cmpunord_ps, _mm_loadu_ps, _mm_loadu_si128, _mm_max_ps, _mm_movemask_ps,
        _mm_or_ps, _mm_set1_ps, _mm_storeu_ps,
    };

    use half::f16;

    use super::KEYS_PER_PASS;

    /// Eight dot products at once: one accumulator per key over the head's 8-lane chunks,
    /// then one reduction tree that leaves key `k`'s total in lane `k`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn score_keys(
        query: &[f32],
        keys: &[f32],
        head_dim: usize,
    ) -> [f32; KEYS_PER_PASS] {
        assert!(query.len() >= head_dim && keys.len() >= KEYS_PER_PASS * head_dim);
        let q = query.as_ptr();
        let k = keys.as_ptr();
        let mut acc: [__m256; KEYS_PER_PASS] = [_mm256_setzero_ps(); KEYS_PER_PASS];
        let mut c = 0;
        while c < head_dim {
            // SAFETY: c + 8 <= head_dim, and key rows are `head_dim` apart (asserted sizes).
            unsafe {
                let qv = _mm256_loadu_ps(q.add(c));
                for (key, lane) in acc.iter_mut().enumerate() {
                    *lane = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k.add(key * head_dim + c)), *lane);
                }
            }
            c += 8;
        }
        // The reduction adds each key's lanes in the order a single horizontal sum does
        // (halves, then lanes two apart, then neighbours), so every score is bit-for-bit the
        // scalar path's dot product. Keys k and k + 4 share a vector until the last step.
        let fold_halves = |a: __m256, b: __m256| {
            _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(a, b),
                _mm256_permute2f128_ps::<0x31>(a, b),
            )
        };
        let q04 = fold_halves(acc[0], acc[4]);
        let q15 = fold_halves(acc[1], acc[5]);
        let q26 = fold_halves(acc[2], acc[6]);
        let q37 = fold_halves(acc[3], acc[7]);
        let s = _mm256_add_ps(
            _mm256_shuffle_ps::<0x44>(q04, q15),
            _mm256_shuffle_ps::<0xEE>(q04, q15),
        );
        let t = _mm256_add_ps(
            _mm256_shuffle_ps::<0x44>(q26, q37),
            _mm256_shuffle_ps::<0xEE>(q26, q37),
        );
        let totals = _mm256_add_ps(
            _mm256_shuffle_ps::<0x88>(s, t),
            _mm256_shuffle_ps::<0xDD>(s, t),
        );
        let mut out = [0f32; KEYS_PER_PASS];
        // SAFETY: `out` has room for eight floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), totals) };
        out
    }

    /// Half to single precision, eight at a time, inlined into the kernel (the `half` crate's
    /// slice conversion is an out-of-line call per row with its own feature check; for a
    /// decode step converting the whole context it was an eighth of the time).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(super) unsafe fn widen(from: &[f16], to: &mut [f32]) {
        assert_eq!(from.len(), to.len());
        let mut i = 0;
        while i + 8 <= from.len() {
            // SAFETY: `i + 8 <= len` for both slices (equal lengths, asserted).
            unsafe {
                let halves = _mm_loadu_si128(from.as_ptr().add(i).cast());
                _mm256_storeu_ps(to.as_mut_ptr().add(i), _mm256_cvtph_ps(halves));
            }
            i += 8;
        }
        for (t, f) in to[i..].iter_mut().zip(&from[i..]) {
            *t = f.to_f32();
        }
    }

    /// Tables and constants of the `expf` that glibc and musl share (ARM's optimized
    /// routines: `2^(i/32)` with the index's exponent bits removed, `32/ln 2`, the rounding
    /// shift `1.5·2^52` and the cubic scaled for the 32-entry table).
    const EXP2_TABLE: [u64; 32] = [
        0x3ff0_0000_0000_0000,
        0x3fef_d9b0_d315_8574,
        0x3fef_b558_6cf9_890f,
        0x3fef_9301_d012_5b51,
        0x3fef_72b8_3c7d_517b,
        0x3fef_5487_3168_b9aa,
        0x3fef_387a_6e75_6238,
        0x3fef_1e9d_f51f_dee1,
        0x3fef_06fe_0a31_b715,
        0x3fee_f1a7_373a_a9cb,
        0x3fee_dea6_4c12_3422,
        0x3fee_ce08_6061_892d,
        0x3fee_bfda_d536_2a27,
        0x3fee_b42b_569d_4f82,
        0x3fee_ab07_dd48_5429,
        0x3fee_a47e_b03a_5585,
        0x3fee_a09e_667f_3bcd,
        0x3fee_9f75_e8ec_5f74,
        0x3fee_a114_73eb_0187,
        0x3fee_a589_994c_ce13,
        0x3fee_ace5_422a_a0db,
        0x3fee_b737_b0cd_c5e5,
        0x3fee_c491_82a3_f090,
        0x3fee_d503_b23e_255d,
        0x3fee_e89f_995a_d3ad,
        0x3fee_ff76_f2fb_5e47,
        0x3fef_199b_dd85_529c,
        0x3fef_3720_dcef_9069,
        0x3fef_5818_dcfb_a487,
        0x3fef_7c97_337b_9b5f,
        0x3fef_a4af_a2a4_90da,
        0x3fef_d076_5b6e_4540,
    ];
    const INV_LN2_SCALED: u64 = 0x4047_1547_652b_82fe;
    const ROUNDING_SHIFT: u64 = 0x4338_0000_0000_0000;
    const POLY: [u64; 3] = [
        0x3ebc_6af8_4b91_2394,
        0x3f2e_bfce_50fa_c4f3,
        0x3f96_2e42_ff0c_52d6,
    ];
    /// Below this every input's `expf` is +0 (it underflows from about −103.97 down), and the
    /// algorithm gives +0 for all of `[-150, -103.97]` too, so lower inputs are raised to it.
    const FLOOR: f32 = -150.0;
    /// Above this `expf` overflows; such lanes (never softmax arguments) take libm.
    const CEILING: f32 = 88.0;

    /// `expf` on every element, four at a time in double precision, bit-identical to libm's
    /// (glibc picks its FMA build of this algorithm on every CPU this path runs on). Checked
    /// against `f32::exp` on every float in `[-150, 0]` when written, and on a sample of them
    /// by a test. NaN and overflowing lanes fall back to libm.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_in_place(row: &mut [f32]) {
        let inv_ln2 = _mm256_set1_pd(f64::from_bits(INV_LN2_SCALED));
        let shift = _mm256_set1_pd(f64::from_bits(ROUNDING_SHIFT));
        let [c0, c1, c2] = POLY.map(|c| _mm256_set1_pd(f64::from_bits(c)));
        let one = _mm256_set1_pd(1.0);
        let index_mask = _mm256_set1_epi64x(31);
        let floor = _mm_set1_ps(FLOOR);
        let ceiling = _mm_set1_ps(CEILING);
        let mut chunks = row.chunks_exact_mut(4);
        for chunk in &mut chunks {
            // SAFETY: the chunk holds four floats.
            let raw = unsafe { _mm_loadu_ps(chunk.as_ptr()) };
            let unusual = _mm_or_ps(_mm_cmpgt_ps(raw, ceiling), _mm_cmpunord_ps(raw, raw));
            if _mm_movemask_ps(unusual) != 0 {
                for value in chunk.iter_mut() {
                    *value = value.exp();
                }
                continue;
            }
            let x = _mm256_cvtps_pd(_mm_max_ps(floor, raw));
            // x·32/ln2 = k + r, k an integer (by the shift's rounding), |r| ≤ 1/2.
            let k = _mm256_fmadd_pd(inv_ln2, x, shift);
            let kd = _mm256_sub_pd(k, shift);
            let r = _mm256_fmsub_pd(inv_ln2, x, kd);
            let bits = _mm256_castpd_si256(k);
            // SAFETY: indexes are masked to 0..32, the table's length.
            let entry = unsafe {
                _mm256_i64gather_epi64::<8>(
                    EXP2_TABLE.as_ptr().cast(),
                    _mm256_and_si256(bits, index_mask),
                )
            };
            let s = _mm256_castsi256_pd(_mm256_add_epi64(entry, _mm256_slli_epi64::<47>(bits)));
            let z = _mm256_fmadd_pd(c0, r, c1);
            let r2 = _mm256_mul_pd(r, r);
            let y = _mm256_fmadd_pd(z, r2, _mm256_fmadd_pd(c2, r, one));
            let result = _mm256_cvtpd_ps(_mm256_mul_pd(y, s));
            // SAFETY: as the load.
            unsafe { _mm_storeu_ps(chunk.as_mut_ptr(), result) };
        }
        for value in chunks.into_remainder() {
            *value = value.exp();
        }
    }

    /// `out += Σ_j weights[j] · values[j]` with 64 output lanes at a time in registers.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn accumulate_values(weights: &[f32], values: &[f32], out: &mut [f32]) {
        let head_dim = out.len();
        assert!(head_dim.is_multiple_of(64) && values.len() >= weights.len() * head_dim);
        let v = values.as_ptr();
        for chunk in (0..head_dim).step_by(64) {
            let o = out[chunk..].as_mut_ptr();
            // SAFETY: chunk + 64 <= head_dim = out.len(); rows of `values` are `head_dim`
            // apart and there are `weights.len()` of them (asserted).
            unsafe {
                let mut acc: [__m256; 8] = [_mm256_setzero_ps(); 8];
                for (i, lane) in acc.iter_mut().enumerate() {
                    *lane = _mm256_loadu_ps(o.add(i * 8));
                }
                for (j, &weight) in weights.iter().enumerate() {
                    let w = _mm256_set1_ps(weight);
                    let row = v.add(j * head_dim + chunk);
                    for (i, lane) in acc.iter_mut().enumerate() {
                        *lane = _mm256_fmadd_ps(w, _mm256_loadu_ps(row.add(i * 8)), *lane);
                    }
                }
                for (i, lane) in acc.iter().enumerate() {
                    _mm256_storeu_ps(o.add(i * 8), *lane);
                }
            }
        }
    }
}

/// Turns scores into weights in place: `exp(s - max) / Σ` (the sum in f64, in position
/// order), each rounded to half precision — the scalar path's arithmetic exactly: a
/// polynomial `exp` within 2 ulp flipped a near-tie of the default model's first answer token
/// (free-running greedy output then differs from llama.cpp's), so the exponential is libm's
/// `expf`, or on x86 with FMA the same algorithm vectorized, bit-identical ([`x86::exp_in_place`]).
#[inline(always)]
fn softmax_rounded<const FMA: bool>(row: &mut [f32], halves: &mut [f16]) {
    const LANES: usize = 8;
    let mut maxima = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &s) in maxima.iter_mut().zip(chunk) {
            if s > *m {
                *m = s;
            }
        }
    }
    let mut max = maxima.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &s in chunks.remainder() {
        max = max.max(s);
    }
    // The exponentials in a pass of their own: in the summing loop, the running f64 total lived
    // on the stack across every libm call and its chain went through memory.
    exp_shifted::<FMA>(row, max);
    let mut total = 0f64;
    for &s in row.iter() {
        total += f64::from(s);
    }
    #[allow(clippy::cast_possible_truncation)]
    let inverse = (1.0 / total) as f32;
    for s in row.iter_mut() {
        *s *= inverse;
    }
    halves.convert_from_f32_slice(row);
    halves.convert_to_f32_slice(row);
}

/// `row[i] = exp(row[i] - max)` with `f32::exp`'s exact results.
#[inline(always)]
fn exp_shifted<const FMA: bool>(row: &mut [f32], max: f32) {
    for s in row.iter_mut() {
        *s -= max;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if FMA {
            // SAFETY: `FMA` is true only inside `attend_avx2`, entered after detecting AVX2
            // and FMA.
            unsafe { x86::exp_in_place(row) };
            return;
        }
    }
    for s in row.iter_mut() {
        *s = s.exp();
    }
}

/// The scalar path: one query at a time, scores with `dot`, the softmax with `exp` in f64
/// totals, values with `axpy`; the tiled kernel must agree with it to rounding.
pub fn attend_reference(
    queries: &[f32],
    lens: &[usize],
    head_dim: usize,
    scale: f32,
    head: HeadView<'_>,
    out: &mut [f32],
) {
    for (m, &len) in lens.iter().enumerate() {
        let query = &queries[m * head_dim..(m + 1) * head_dim];
        let at = |p: usize| p * head.stride + head.offset;
        let mut scores: Vec<f32> = (0..len)
            .map(|p| {
                let key = &head.keys[at(p)..at(p) + head_dim];
                query
                    .iter()
                    .zip(key)
                    .map(|(q, k)| q * k.to_f32())
                    .sum::<f32>()
                    * scale
            })
            .collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0f64;
        for s in &mut scores {
            *s = (*s - max).exp();
            total += f64::from(*s);
        }
        #[allow(clippy::cast_possible_truncation)]
        let inverse = (1.0 / total) as f32;
        let acc = &mut out[m * head_dim..(m + 1) * head_dim];
        acc.fill(0.0);
        for (p, s) in scores.iter().enumerate() {
            let weight = f16::from_f32(s * inverse).to_f32();
            let value = &head.values[at(p)..at(p) + head_dim];
            for (a, v) in acc.iter_mut().zip(value) {
                *a += weight * v.to_f32();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

    use super::*;

    fn pseudo_random(seed: u64, count: usize, spread: f32) -> Vec<f32> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * spread
            })
            .collect()
    }

    /// The vectorized `expf` gives libm's bits: on a sample of every float in `[-150, 0]`
    /// (the whole range was checked when it was written), around the underflow threshold, and
    /// on the inputs it hands to libm (NaN, infinities, overflow).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vectorized_exp_is_libm_exp() {
        if !*AVX2_FMA_F16C {
            eprintln!("skipping: this CPU has no AVX2/FMA");
            return;
        }
        let mut inputs: Vec<f32> = (0x8000_0000u32..=(-150f32).to_bits())
            .step_by(4099)
            .map(f32::from_bits)
            .collect();
        inputs.extend([
            -103.972_08,
            -103.972_07,
            -87.3,
            -1e-30,
            0.0,
            -0.0,
            -151.0,
            -1e30,
            f32::NEG_INFINITY,
            f32::NAN,
            1.0,
            88.5,
            100.0,
            f32::INFINITY,
            -5.0,
        ]);
        let mut got = inputs.clone();
        // SAFETY: AVX2 and FMA detected above.
        unsafe { x86::exp_in_place(&mut got) };
        for (x, y) in inputs.iter().zip(&got) {
            let want = x.exp();
            assert!(
                y.to_bits() == want.to_bits() || (y.is_nan() && want.is_nan()),
                "exp({x:e}) = {y:e}, libm {want:e}"
            );
        }
    }

    /// Causal tiles of every shape the forward pass makes (prefill tiles, decode rows, lengths
    /// not a multiple of the block, a GQA stride and offset) agree with the scalar path.
    #[test]
    fn the_tiled_kernel_agrees_with_the_scalar_path() {
        let (head_dim, kv_heads) = (64, 3);
        let stride = head_dim * kv_heads;
        for (case, lens) in [
            vec![1],
            vec![37, 37, 37],
            vec![5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
            (100..124).collect::<Vec<_>>(),
            vec![700; 3],
        ]
        .into_iter()
        .enumerate()
        {
            let positions = *lens.iter().max().unwrap();
            let keys: Vec<f16> = pseudo_random(case as u64, positions * stride, 4.0)
                .into_iter()
                .map(f16::from_f32)
                .collect();
            let values: Vec<f16> = pseudo_random(case as u64 + 99, positions * stride, 2.0)
                .into_iter()
                .map(f16::from_f32)
                .collect();
            let queries: Vec<f32> = pseudo_random(case as u64 + 7, lens.len() * head_dim, 4.0)
                .into_iter()
                .map(|q| f16::from_f32(q).to_f32())
                .collect();
            let head = HeadView {
                keys: &keys,
                values: &values,
                stride,
                offset: head_dim,
                capacity: positions,
            };
            let scale = 1.0 / (head_dim as f32).sqrt();
            let mut tiled = vec![f32::NAN; queries.len()];
            let mut reference = vec![0.0; queries.len()];
            attend(&queries, &lens, head_dim, scale, head, &mut tiled);
            attend_reference(&queries, &lens, head_dim, scale, head, &mut reference);
            let mut portable = vec![f32::NAN; queries.len()];
            let mut work = Work::default();
            attend_tiled::<false>(
                &queries,
                &lens,
                head_dim,
                scale,
                head,
                &mut work,
                &mut portable,
            );
            for (got, want) in tiled.iter().chain(&portable).zip(reference.iter().cycle()) {
                assert!(
                    (got - want).abs() <= 2e-3 * want.abs().max(1.0),
                    "case {case}: {got} vs {want}"
                );
            }
        }
    }
}
