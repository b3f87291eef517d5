//! Prefix cache: key/value caches of finished sequences, kept so that a new prompt sharing a
//! prefix with one of them (the same system prompt, the earlier turns of a chat) starts from a
//! copy of those positions instead of recomputing them. Bounded by total positions held, least
//! recently used first out. Entries are copied out, never lent, so concurrent requests with the
//! same prefix all benefit.

use std::collections::VecDeque;

use crate::kv::KvCache;

struct Entry {
    tokens: Vec<u32>,
    cache: KvCache,
}

pub struct PrefixCache {
    entries: VecDeque<Entry>,
    capacity_positions: usize,
    held_positions: usize,
}

/// Shortest shared prefix worth a copy; below it recomputing is as cheap.
const MIN_REUSE: usize = 8;

impl PrefixCache {
    #[must_use]
    pub fn new(capacity_positions: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity_positions,
            held_positions: 0,
        }
    }

    /// Keeps `cache`, whose positions hold exactly `tokens`.
    pub fn insert(&mut self, mut tokens: Vec<u32>, mut cache: KvCache) {
        tokens.truncate(cache.len());
        cache.truncate(tokens.len());
        if tokens.len() < MIN_REUSE || tokens.len() > self.capacity_positions {
            return;
        }
        // An entry this one extends is redundant.
        let mut i = 0;
        while i < self.entries.len() {
            if tokens.starts_with(&self.entries[i].tokens) {
                if let Some(old) = self.entries.remove(i) {
                    self.held_positions -= old.tokens.len();
                }
            } else {
                i += 1;
            }
        }
        self.held_positions += tokens.len();
        self.entries.push_back(Entry { tokens, cache });
        while self.held_positions > self.capacity_positions {
            match self.entries.pop_front() {
                Some(old) => self.held_positions -= old.tokens.len(),
                None => break,
            }
        }
    }

    /// A cache holding the longest stored prefix of `prompt` (always leaving at least one
    /// prompt token to compute, whose logits start generation), with room for `capacity`
    /// positions; `None` when nothing worth reusing is stored.
    pub fn lookup(&mut self, prompt: &[u32], capacity: usize) -> Option<(usize, KvCache)> {
        let limit = prompt.len().saturating_sub(1);
        let (index, shared) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt).min(limit)))
            .max_by_key(|&(_, shared)| shared)?;
        if shared < MIN_REUSE {
            return None;
        }
        let entry = self.entries.remove(index)?;
        let cache = entry.cache.fork_prefix(shared, capacity);
        self.entries.push_back(entry);
        Some((shared, cache))
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cache_with(positions: usize) -> KvCache {
        let mut cache = KvCache::new(1, 2, 2, positions);
        for pos in 0..positions {
            #[allow(clippy::cast_precision_loss)]
            let v = pos as f32;
            cache.write(0, pos, &[v, v], &[v, -v]);
        }
        cache
    }

    #[test]
    fn longest_prefix_is_reused_and_one_token_is_left() {
        let mut pool = PrefixCache::new(100);
        pool.insert((0..20).collect(), cache_with(20));
        pool.insert((100..130).collect(), cache_with(30));
        let prompt: Vec<u32> = (0..12).chain(50..60).collect();
        let (shared, cache) = pool.lookup(&prompt, 64).unwrap();
        assert_eq!(shared, 12);
        assert_eq!(cache.len(), 12);
        let whole: Vec<u32> = (0..20).collect();
        let (shared, _) = pool.lookup(&whole, 64).unwrap();
        assert_eq!(shared, 19, "the last prompt token is always computed");
        assert!(pool.lookup(&[7, 7, 7, 7, 7, 7, 7, 7, 7], 64).is_none());
    }

    #[test]
    fn capacity_evicts_least_recently_used_and_extensions_replace() {
        let mut pool = PrefixCache::new(50);
        pool.insert((0..20).collect(), cache_with(20));
        pool.insert((0..30).collect(), cache_with(30));
        assert_eq!(pool.entries.len(), 1, "an extension replaces its prefix");
        pool.insert((200..230).collect(), cache_with(30));
        assert_eq!(pool.held_positions, 30);
        assert!(pool.lookup(&(0..30).collect::<Vec<_>>(), 40).is_none());
    }
}
