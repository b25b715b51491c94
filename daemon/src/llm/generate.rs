//! The generation loop, one for every backend: prefill the prompt (text
//! embeddings with visual tokens spliced in at the image-token positions,
//! position ids as the caller gives them), then decode one token at a time
//! on top of the KV cache until a stop token, the token limit, or the
//! caller says stop.

use std::time::{Duration, Instant};

use crate::infer::timing::{self, Call};

use super::LlmError;
use crate::infer::Backend;

/// What the language model reads.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    /// Token ids, with the image token where a visual token goes.
    pub ids: Vec<i64>,
    /// One position id per token. Dropped visual tokens leave gaps: the
    /// model sees where each token was in the full layout.
    pub positions: Vec<i64>,
    /// The visual tokens, `hidden` values each, one per image token of
    /// `ids`, in order.
    pub visual: Vec<f32>,
}

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 picks the most likely token (greedy); above, softmax temperature.
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this mass.
    pub top_p: f32,
    /// Seed of the sampler, for repeatable answers.
    pub seed: u64,
    /// Most tokens to generate.
    pub max_new_tokens: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            max_new_tokens: 64,
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A stop token was generated (it is not in `tokens`).
    Token(i64),
    /// `max_new_tokens` reached.
    Length,
    /// The token callback asked to stop.
    Caller,
}

/// What came out.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated token ids, stop token excluded.
    pub tokens: Vec<i64>,
    /// Why it stopped.
    pub stop: Stop,
    /// Tokens in the prompt (the prefill).
    pub prompt_tokens: usize,
    /// Time spent on the prefill, embeddings included.
    pub prefill: Duration,
    /// Time spent generating after the prefill.
    pub decode: Duration,
    /// Logits that chose each generated token (and the stop token), kept
    /// only when asked, for tests and diagnostics.
    pub logits: Vec<Vec<f32>>,
    /// The model's probability (softmax of the logits, temperature 1) of
    /// each generated token, then of the stop token when it stopped on
    /// one: how sure the model was of each word, whatever the sampling.
    pub token_probs: Vec<f32>,
}

impl Generation {
    /// How sure the model was of its answer: the lowest probability it gave
    /// any token of it, the end of the answer included (an answer is only
    /// as sure as its least sure word; a mean would let a long, mostly
    /// formulaic answer hide one guessed word). 1 for an empty generation.
    pub fn confidence(&self) -> f32 {
        self.token_probs.iter().copied().fold(1.0, f32::min)
    }
}

/// The softmax probability of `token` under `logits`.
fn probability(logits: &[f32], token: i64) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    usize::try_from(token)
        .ok()
        .and_then(|i| logits.get(i))
        .map_or(0.0, |&l| (l - max).exp() / total)
}

/// Embeddings of the prompt with the visual tokens spliced in.
pub fn prompt_embeddings(backend: &mut dyn Backend, prompt: &Prompt) -> Result<Vec<f32>, LlmError> {
    let info = backend.info();
    let (hidden, image_token) = (info.hidden, info.image_token_id);
    if prompt.ids.len() != prompt.positions.len() {
        return Err(LlmError::Prompt(format!(
            "{} tokens but {} position ids",
            prompt.ids.len(),
            prompt.positions.len()
        )));
    }
    let slots = prompt.ids.iter().filter(|&&id| id == image_token).count();
    if prompt.visual.len() != slots * hidden {
        return Err(LlmError::Prompt(format!(
            "{slots} image tokens but {} visual tokens of width {hidden}",
            prompt.visual.len() as f32 / hidden as f32
        )));
    }
    let mut embeds = backend.embed(&prompt.ids)?;
    let mut visual = prompt.visual.chunks_exact(hidden);
    for (i, _) in prompt
        .ids
        .iter()
        .enumerate()
        .filter(|(_, &id)| id == image_token)
    {
        // Counted above: there is exactly one visual token per slot.
        if let Some(token) = visual.next() {
            embeds[i * hidden..(i + 1) * hidden].copy_from_slice(token);
        }
    }
    Ok(embeds)
}

/// Generates from `prompt`. `on_token` sees each new token as it comes and
/// returns false to stop. `keep_logits` records the logits of every step.
pub fn generate(
    backend: &mut dyn Backend,
    prompt: &Prompt,
    sampling: &Sampling,
    stop_tokens: &[i64],
    keep_logits: bool,
    on_token: &mut dyn FnMut(i64) -> bool,
) -> Result<Generation, LlmError> {
    if prompt.ids.is_empty() {
        return Err(LlmError::Prompt("an empty prompt".into()));
    }
    let started = Instant::now();
    let embeds = prompt_embeddings(backend, prompt)?;
    let mut cache = backend.new_cache();
    let mut logits = backend.decode(&mut cache, &embeds, &prompt.positions)?;
    // A model worker's heartbeat means progress per model call, so a long
    // answer is not taken for a stalled worker.
    crate::health::progress();
    let prefill = started.elapsed();
    timing::record(backend.kind(), Call::Prefill, prefill);
    let decoding = Instant::now();
    let mut sampler = Sampler::new(sampling);
    // Generated tokens continue after the last prompt position.
    let mut position = prompt.positions.iter().copied().max().unwrap_or(-1) + 1;
    let mut generation = Generation {
        tokens: Vec::new(),
        stop: Stop::Length,
        prompt_tokens: prompt.ids.len(),
        prefill,
        decode: Duration::ZERO,
        logits: Vec::new(),
        token_probs: Vec::new(),
    };
    while generation.tokens.len() < sampling.max_new_tokens {
        let token = sampler.pick(&logits);
        generation.token_probs.push(probability(&logits, token));
        if keep_logits {
            generation.logits.push(logits);
        }
        if stop_tokens.contains(&token) {
            generation.stop = Stop::Token(token);
            break;
        }
        generation.tokens.push(token);
        if !on_token(token) {
            generation.stop = Stop::Caller;
            break;
        }
        if generation.tokens.len() == sampling.max_new_tokens {
            break;
        }
        let step = Instant::now();
        let embed = backend.embed(&[token])?;
        logits = backend.decode(&mut cache, &embed, &[position])?;
        timing::record(backend.kind(), Call::DecodeToken, step.elapsed());
        crate::health::progress();
        position += 1;
    }
    generation.decode = decoding.elapsed();
    Ok(generation)
}

/// Picks tokens from logits: greedy, or temperature + top-p with a seeded
/// generator.
struct Sampler {
    temperature: f32,
    top_p: f32,
    state: u64,
}

impl Sampler {
    fn new(sampling: &Sampling) -> Self {
        Sampler {
            temperature: sampling.temperature,
            top_p: sampling.top_p.clamp(0.0, 1.0),
            state: sampling.seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn pick(&mut self, logits: &[f32]) -> i64 {
        let argmax = logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &l)| {
                if l > best.1 {
                    (i, l)
                } else {
                    best
                }
            })
            .0;
        if self.temperature <= 0.0 {
            return argmax as i64;
        }
        let max = logits[argmax];
        let mut probs: Vec<(usize, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i, ((l - max) / self.temperature).exp()))
            .collect();
        let total: f32 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut kept = 0.0;
        let mut cut = probs.len();
        for (n, p) in probs.iter().enumerate() {
            kept += p.1 / total;
            if kept >= self.top_p {
                cut = n + 1;
                break;
            }
        }
        let nucleus = &probs[..cut];
        let mass: f32 = nucleus.iter().map(|p| p.1).sum();
        let mut target = self.uniform() * mass;
        for &(i, p) in nucleus {
            if target < p {
                return i as i64;
            }
            target -= p;
        }
        nucleus.last().map_or(argmax, |p| p.0) as i64
    }

    /// splitmix64, as a float in [0, 1).
    fn uniform(&mut self) -> f32 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_probability_is_its_softmax_share_and_confidence_the_least() {
        // ln 3 against 0, 0: the first token holds 3/5 of the mass.
        let logits = [3f32.ln(), 0.0, 0.0];
        assert!((probability(&logits, 0) - 0.6).abs() < 1e-6);
        assert!((probability(&logits, 2) - 0.2).abs() < 1e-6);
        assert_eq!(probability(&logits, 7), 0.0);
        let g = Generation {
            tokens: vec![0, 2],
            stop: Stop::Length,
            prompt_tokens: 1,
            prefill: Duration::ZERO,
            decode: Duration::ZERO,
            logits: Vec::new(),
            token_probs: vec![0.9, 0.4, 0.99],
        };
        assert_eq!(g.confidence(), 0.4);
        assert_eq!(
            Generation {
                token_probs: Vec::new(),
                ..g
            }
            .confidence(),
            1.0
        );
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut s = Sampler::new(&Sampling::default());
        assert_eq!(s.pick(&[0.1, 3.0, -1.0, 2.9]), 1);
    }

    #[test]
    fn top_p_keeps_sampling_inside_the_nucleus_and_the_seed_repeats() {
        let sampling = Sampling {
            temperature: 1.0,
            top_p: 0.5,
            seed: 42,
            max_new_tokens: 1,
        };
        // Token 2 alone holds more than half of the mass.
        let logits = [0.0, 0.0, 5.0, 0.0];
        let mut s = Sampler::new(&sampling);
        assert!((0..100).all(|_| s.pick(&logits) == 2));
        let flat = [1.0; 8];
        let draws = |seed| {
            let mut s = Sampler::new(&Sampling {
                seed,
                top_p: 1.0,
                ..sampling.clone()
            });
            (0..20).map(|_| s.pick(&flat)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        assert!(
            draws(7)
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
                > 3
        );
    }
}
