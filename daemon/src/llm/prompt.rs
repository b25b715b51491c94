//! Builds a [`Prompt`] from chat messages and visual tokens, with the
//! positions of the full, undropped layout (docs/architecture.md §3): each image in the
//! chat stands for a whole token grid; only its kept tokens go in, each at
//! the position it has in the full grid, so the model sees where every
//! token was even when most of the grid was dropped. Models whose
//! processor marks images (SmolVLM) get their markers around each image.

use super::{LlmError, Message, Prompt, TextCodec};
use crate::infer::ModelInfo;

/// One image's visual tokens, as the chat's `<image>` will hold them.
#[derive(Debug, Clone, Copy)]
pub struct Visual<'a> {
    /// Tokens in the full grid (rows × cols).
    pub grid: usize,
    /// Grid indices of the tokens present, ascending.
    pub positions: &'a [u32],
    /// The tokens, `hidden` values each, in the order of `positions`.
    pub tokens: &'a [f32],
}

/// Renders `messages` with the chat template and expands the i-th image
/// token into the tokens of `visuals[i]`, between the model's image
/// markers (`info.image_before`, `info.image_after`).
pub fn build(
    codec: &TextCodec,
    info: &ModelInfo,
    messages: &[Message],
    visuals: &[Visual<'_>],
) -> Result<Prompt, LlmError> {
    let image_token = info.image_token_id;
    let text = codec.render(messages, true)?;
    let ids = codec.encode(&text)?;
    let slots = ids.iter().filter(|&&i| i == image_token).count();
    if slots != visuals.len() {
        return Err(LlmError::Prompt(format!(
            "the chat holds {slots} images but {} were given",
            visuals.len()
        )));
    }
    let mut prompt = Prompt::default();
    let mut next_position = 0i64;
    let mut images = visuals.iter();
    for id in ids {
        if id != image_token {
            push_text(&mut prompt, id, &mut next_position);
            continue;
        }
        // Counted above: one visual per image token.
        let Some(visual) = images.next() else { break };
        for &marker in &info.image_before {
            push_text(&mut prompt, marker, &mut next_position);
        }
        let start = next_position;
        for &p in visual.positions {
            prompt.ids.push(image_token);
            prompt.positions.push(start + i64::from(p));
        }
        prompt.visual.extend_from_slice(visual.tokens);
        // The whole grid's positions are taken, kept or not.
        next_position += visual.grid as i64;
        for &marker in &info.image_after {
            push_text(&mut prompt, marker, &mut next_position);
        }
    }
    Ok(prompt)
}

/// A text token takes the next position.
fn push_text(prompt: &mut Prompt, id: i64, next_position: &mut i64) {
    prompt.ids.push(id);
    prompt.positions.push(*next_position);
    *next_position += 1;
}
