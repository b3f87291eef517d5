//! Turns one row of logits into the next token of one choice: logit bias, presence/frequency
//! penalties, log-probabilities, then greedy or temperature + nucleus sampling from a per-choice
//! seeded generator (same seed and request, same tokens). Text assembly and stop strings are
//! handled by `text`.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use switchboard_model::Sampling;

/// What was chosen, with its log-probability and the best alternatives when asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    pub logprob: Option<f32>,
    pub top: Vec<(u32, f32)>,
}

/// Sampling state of one choice.
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    top_k: Option<usize>,
    presence_penalty: f32,
    frequency_penalty: f32,
    logit_bias: Vec<(u32, f32)>,
    logprobs: bool,
    top_logprobs: usize,
    counts: HashMap<u32, u32>,
    rng: ChaCha8Rng,
    probs: Vec<(u32, f32)>,
}

impl Sampler {
    /// `choice` decorrelates the choices of one request that share a seed.
    #[must_use]
    pub fn new(sampling: &Sampling, choice: u32) -> Self {
        let seed = sampling.seed.map_or_else(
            || rand::rng().random(),
            |seed| seed ^ u64::from(choice).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        Self {
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            top_k: sampling.top_k.map(|k| k.max(1) as usize),
            presence_penalty: sampling.presence_penalty,
            frequency_penalty: sampling.frequency_penalty,
            logit_bias: sampling.logit_bias.clone(),
            logprobs: sampling.logprobs,
            top_logprobs: usize::from(sampling.top_logprobs),
            counts: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            probs: Vec::new(),
        }
    }

    /// Chooses the next token; `logits` is modified in place.
    pub fn sample(&mut self, logits: &mut [f32]) -> Sampled {
        for &(token, bias) in &self.logit_bias {
            if let Some(logit) = logits.get_mut(token as usize) {
                *logit += bias;
            }
        }
        for (&token, &count) in &self.counts {
            if let Some(logit) = logits.get_mut(token as usize) {
                #[allow(clippy::cast_precision_loss)]
                let penalty = self.frequency_penalty * count as f32 + self.presence_penalty;
                *logit -= penalty;
            }
        }
        let token = if self.temperature <= 0.0 {
            argmax(logits)
        } else {
            self.draw(logits)
        };
        let (logprob, top) = if self.logprobs {
            let (chosen, top) = log_softmax_report(logits, token, self.top_logprobs);
            (Some(chosen), top)
        } else {
            (None, Vec::new())
        };
        if self.presence_penalty != 0.0 || self.frequency_penalty != 0.0 {
            *self.counts.entry(token).or_insert(0) += 1;
        }
        Sampled {
            token,
            logprob,
            top,
        }
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let inv_t = 1.0 / self.temperature;
        self.probs.clear();
        let mut total = 0.0f64;
        for (i, &logit) in logits.iter().enumerate() {
            let p = ((logit - max) * inv_t).exp();
            if p > 0.0 {
                #[allow(clippy::cast_possible_truncation)]
                self.probs.push((i as u32, p));
                total += f64::from(p);
            }
        }
        let top_k = self.top_k.filter(|&k| k < self.probs.len());
        if self.top_p < 1.0 || top_k.is_some() {
            self.probs
                .sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        }
        if let Some(k) = top_k {
            self.probs.truncate(k);
            total = self.probs.iter().map(|&(_, p)| f64::from(p)).sum();
        }
        if self.top_p < 1.0 {
            let limit = f64::from(self.top_p) * total;
            let mut kept = 0.0f64;
            let mut keep = 0;
            for &(_, p) in &self.probs {
                kept += f64::from(p);
                keep += 1;
                if kept >= limit {
                    break;
                }
            }
            self.probs.truncate(keep.max(1));
            total = kept;
        }
        let mut target = self.rng.random::<f64>() * total;
        for &(token, p) in &self.probs {
            target -= f64::from(p);
            if target <= 0.0 {
                return token;
            }
        }
        self.probs
            .last()
            .map_or_else(|| argmax(logits), |&(token, _)| token)
    }
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &logit) in logits.iter().enumerate() {
        if logit > logits[best] {
            best = i;
        }
    }
    #[allow(clippy::cast_possible_truncation)]
    let best = best as u32;
    best
}

/// The log-probability of `chosen` and the `top` most likely tokens under softmax(logits).
fn log_softmax_report(logits: &[f32], chosen: u32, top: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_total = logits
        .iter()
        .map(|&l| f64::from(l - max).exp())
        .sum::<f64>()
        .ln();
    #[allow(clippy::cast_possible_truncation)]
    let logprob = |logit: f32| (f64::from(logit - max) - log_total) as f32;
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &logit) in logits.iter().enumerate() {
            if best.len() < top || logit > best[best.len() - 1].1 {
                #[allow(clippy::cast_possible_truncation)]
                let entry = (i as u32, logit);
                let at = best.partition_point(|&(_, l)| l >= logit);
                best.insert(at, entry);
                best.truncate(top);
            }
        }
    }
    let top = best.into_iter().map(|(t, l)| (t, logprob(l))).collect();
    (logprob(logits[chosen as usize]), top)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sampling(temperature: f32, seed: Option<u64>) -> Sampling {
        Sampling {
            temperature,
            seed,
            ..Sampling::default()
        }
    }

    #[test]
    fn greedy_takes_the_maximum_and_reports_logprobs() {
        let mut s = Sampler::new(
            &Sampling {
                logprobs: true,
                top_logprobs: 2,
                ..sampling(0.0, None)
            },
            0,
        );
        let out = s.sample(&mut [1.0, 3.0, 2.0]);
        assert_eq!(out.token, 1);
        assert_eq!(out.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
        let total: f32 = [1.0f32, 3.0, 2.0].iter().map(|l| (l - 3.0).exp()).sum();
        assert!((out.logprob.unwrap() - (-total.ln())).abs() < 1e-5);
    }

    #[test]
    fn same_seed_same_tokens_and_choices_differ() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = |choice| {
            let mut s = Sampler::new(&sampling(1.0, Some(42)), choice);
            (0..20)
                .map(|_| s.sample(&mut logits.clone()).token)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(0), run(0));
        assert_ne!(run(0), run(1));
    }

    #[test]
    fn bias_and_penalties_move_the_choice() {
        let mut s = Sampler::new(
            &Sampling {
                logit_bias: vec![(0, 100.0)],
                ..sampling(0.0, None)
            },
            0,
        );
        assert_eq!(s.sample(&mut [0.0, 5.0]).token, 0);
        let mut s = Sampler::new(
            &Sampling {
                presence_penalty: 2.0,
                ..sampling(0.0, None)
            },
            0,
        );
        assert_eq!(s.sample(&mut [1.5, 1.0]).token, 0);
        assert_eq!(
            s.sample(&mut [1.5, 1.0]).token,
            1,
            "presence penalty applies after use"
        );
    }

    #[test]
    fn top_k_keeps_only_the_likeliest_tokens() {
        let mut sampler = Sampler::new(
            &Sampling {
                temperature: 1.0,
                top_k: Some(2),
                seed: Some(7),
                ..Sampling::default()
            },
            0,
        );
        let logits = [2.0, 1.9, 1.8, 1.7, 1.6];
        for _ in 0..200 {
            let token = sampler.sample(&mut logits.clone()).token;
            assert!(token < 2, "token {token} is outside the top 2");
        }
    }

    #[test]
    fn top_p_restricts_to_the_nucleus() {
        let mut s = Sampler::new(
            &Sampling {
                top_p: 0.5,
                ..sampling(1.0, Some(1))
            },
            0,
        );
        for _ in 0..50 {
            assert_eq!(s.sample(&mut [10.0, 0.0, 0.0, 0.0]).token, 0);
        }
    }
}
