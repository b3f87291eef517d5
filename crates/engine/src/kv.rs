//! Per-sequence key/value cache: for every layer, the rotated keys and the values of each
//! position, `kv_dim` half-precision values per position (llama.cpp's default cache type, so
//! attention rounds as it does, at half the memory of f32). The scheduler reserves each
//! sequence's whole length (prompt plus its output limit) at admission, so decoding never
//! reallocates; the reserved pages stay virtual until positions are written.

use half::f16;

/// Keys and values of one sequence.
#[derive(Clone)]
pub struct KvCache {
    keys: Vec<Vec<f16>>,
    values: Vec<Vec<f16>>,
    kv_dim: usize,
    head_dim: usize,
}

impl KvCache {
    #[must_use]
    pub fn new(layers: usize, kv_dim: usize, head_dim: usize, capacity: usize) -> Self {
        let layer = || Vec::with_capacity(capacity * kv_dim);
        Self {
            keys: (0..layers).map(|_| layer()).collect(),
            values: (0..layers).map(|_| layer()).collect(),
            kv_dim,
            head_dim,
        }
    }

    /// Positions this cache holds without reallocating.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.keys.first().map_or(0, |k| k.capacity() / self.kv_dim)
    }

    /// Positions stored (equal across layers once a step has completed).
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.first().map_or(0, |k| k.len() / self.kv_dim)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores position `pos` of `layer`; positions arrive in order, so this appends.
    pub fn write(&mut self, layer: usize, pos: usize, key: &[f32], value: &[f32]) {
        let keys = &mut self.keys[layer];
        let values = &mut self.values[layer];
        keys.truncate(pos * self.kv_dim);
        values.truncate(pos * self.kv_dim);
        keys.extend(key.iter().map(|v| f16::from_f32(*v)));
        values.extend(value.iter().map(|v| f16::from_f32(*v)));
    }

    #[must_use]
    pub fn key(&self, layer: usize, pos: usize, kv_head: usize) -> &[f16] {
        let start = pos * self.kv_dim + kv_head * self.head_dim;
        &self.keys[layer][start..start + self.head_dim]
    }

    #[must_use]
    pub fn value(&self, layer: usize, pos: usize, kv_head: usize) -> &[f16] {
        let start = pos * self.kv_dim + kv_head * self.head_dim;
        &self.values[layer][start..start + self.head_dim]
    }

    /// Every stored position of one layer's keys, `kv_dim` values per position.
    #[must_use]
    pub fn layer_keys(&self, layer: usize) -> &[f16] {
        &self.keys[layer]
    }

    /// Every stored position of one layer's values, `kv_dim` values per position.
    #[must_use]
    pub fn layer_values(&self, layer: usize) -> &[f16] {
        &self.values[layer]
    }

    /// A copy of the first `positions` positions, with room for `capacity` positions in total.
    #[must_use]
    pub fn fork_prefix(&self, positions: usize, capacity: usize) -> Self {
        let positions = positions.min(self.len());
        let copy = |layers: &Vec<Vec<f16>>| {
            layers
                .iter()
                .map(|layer| {
                    let mut v = Vec::with_capacity(capacity.max(positions) * self.kv_dim);
                    v.extend_from_slice(&layer[..positions * self.kv_dim]);
                    v
                })
                .collect()
        };
        Self {
            keys: copy(&self.keys),
            values: copy(&self.values),
            kv_dim: self.kv_dim,
            head_dim: self.head_dim,
        }
    }

    /// A copy holding the same positions, with room for `capacity` positions in total.
    #[must_use]
    pub fn fork(&self, capacity: usize) -> Self {
        self.fork_prefix(self.len(), capacity)
    }

    /// Drops every position from `positions` on.
    pub fn truncate(&mut self, positions: usize) {
        for layer in self.keys.iter_mut().chain(self.values.iter_mut()) {
            layer.truncate(positions * self.kv_dim);
        }
    }
}
