//! Builds a [`Prompt`] from chat messages and visual tokens, with the
//! positions of the full, undropped layout (docs/architecture.md §3): each image in the
//! chat stands for a whole token grid; only its kept tokens go in, each at
//! the position it has in the full grid, so the model sees where every
//! token was even when most of the grid was dropped. Models whose
//! processor marks images (SmolVLM) get their markers around each image.
//!
//! The memory readout is written in the layout the model family was
//! trained on ([`PromptLayout`], docs/architecture.md §5): glimpse's own
//! ("at 12.5 s : <image>at 12.5 s . ... now : <image>question") or SmolVLM2's video
//! prompt, as transformers' `SmolVLMProcessor` expands a video (read in
//! huggingface/transformers, `models/smolvlm/processing_smolvlm.py`,
//! `process_video`, and `video_processing_smolvlm.py`'s messages): an
//! intro naming the frame count in words and the duration, then per frame
//! a "Frame from MM:SS:" line followed by its image, then a blank line and
//! the question. The chat template still renders the message, each frame
//! as one image, so the text between images is tokenized exactly as the
//! processor's expanded string is (the image markers are special tokens
//! that split it the same way).

use std::time::Duration;

use super::{Content, LlmError, Message, Prompt, TextCodec};
use crate::infer::{ModelInfo, PromptLayout};

/// One image of the context: when it was seen and its tokens.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// Memory time of the frame.
    pub at: Duration,
    /// The canvas (what the scene looks like now), not a remembered frame.
    pub now: bool,
    /// Its visual tokens.
    pub visual: Visual<'a>,
}

/// glimpse's own label of an image: "at 12.5 s :" or "now :".
pub fn glimpse_label(at: Duration, now: bool) -> String {
    if now {
        "now :".to_owned()
    } else {
        format!("at {:.1} s :", at.as_secs_f64())
    }
}

/// What follows a remembered image in glimpse's layout: its time again,
/// "at 12.5 s . ". The decoder is causal, so the label before an image
/// cannot see what the image holds; the one after can, and an answer to
/// "when did ... ?" copies its time from there in one step
/// (docs/architecture.md §5). The canvas has no time and nothing after it.
fn glimpse_after_label(at: Duration) -> String {
    format!("at {:.1} s . ", at.as_secs_f64())
}

/// The user message asking `question` about `context` in `layout`, with
/// one image per context entry.
pub fn message(layout: PromptLayout, context: &[Seen<'_>], question: &str) -> Message {
    let mut content = Vec::with_capacity(3 * context.len() + 2);
    let text = |content: &mut Vec<Content>, text: String| {
        content.push(Content::Text { text });
    };
    match layout {
        PromptLayout::SmolvlmVideo => {
            // The video starts at the oldest frame: SmolVLM2 was trained on
            // clips timed from 00:00, and a daemon's stream time runs for
            // days.
            let start = context.first().map_or(Duration::ZERO, |s| s.at);
            let end = context.iter().map(|s| s.at).max().unwrap_or(start);
            let mut intro = format!(
                "You are provided the following series of {} frames from a {} [H:MM:SS] video.\n",
                number_words(context.len()),
                hours_minutes_seconds(end.saturating_sub(start))
            );
            for seen in context {
                let s = seen.at.saturating_sub(start).as_secs();
                intro.push_str(&format!("\nFrame from {:02}:{:02}:", s / 60, s % 60));
                text(&mut content, std::mem::take(&mut intro));
                content.push(Content::Image);
            }
            text(&mut content, format!("{intro}\n\n{question}"));
        }
        // Auto is resolved when the folder is opened; glimpse's layout is
        // the safe reading of anything else.
        PromptLayout::Glimpse | PromptLayout::Auto => {
            for seen in context {
                text(
                    &mut content,
                    format!("{} ", glimpse_label(seen.at, seen.now)),
                );
                content.push(Content::Image);
                if !seen.now {
                    text(&mut content, glimpse_after_label(seen.at));
                }
            }
            text(&mut content, question.to_owned());
        }
    }
    Message {
        role: "user".to_owned(),
        content,
    }
}

/// `d` as Python's `str(timedelta(seconds=int(d)))` writes it: H:MM:SS.
fn hours_minutes_seconds(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 86_400 {
        // timedelta's days: "1 day, 2:03:04".
        let days = s / 86_400;
        let rest = hours_minutes_seconds(Duration::from_secs(s % 86_400));
        return format!("{days} day{}, {rest}", if days == 1 { "" } else { "s" });
    }
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `n` in English words, as the num2words package writes a cardinal
/// (SmolVLM's processor names the frame count with it): "three",
/// "twenty-one", "one hundred and five", "two thousand, three hundred".
pub fn number_words(n: usize) -> String {
    const SMALL: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 10] = [
        "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    // num2words joins a high part and a lower rest with " and " when the
    // rest is under 100 and with ", " otherwise.
    let join = |high: String, rest: usize| match rest {
        0 => high,
        1..=99 => format!("{high} and {}", number_words(rest)),
        _ => format!("{high}, {}", number_words(rest)),
    };
    match n {
        0..=19 => SMALL[n].to_owned(),
        20..=99 if n.is_multiple_of(10) => TENS[n / 10].to_owned(),
        20..=99 => format!("{}-{}", TENS[n / 10], SMALL[n % 10]),
        100..=999 => join(format!("{} hundred", SMALL[n / 100]), n % 100),
        1_000..=999_999 => join(format!("{} thousand", number_words(n / 1000)), n % 1000),
        _ => join(
            format!("{} million", number_words(n / 1_000_000)),
            n % 1_000_000,
        ),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Values as Python's num2words 0.5 writes them.
    #[test]
    fn numbers_are_written_as_num2words_writes_them() {
        for (n, words) in [
            (1, "one"),
            (3, "three"),
            (13, "thirteen"),
            (20, "twenty"),
            (37, "thirty-seven"),
            (100, "one hundred"),
            (105, "one hundred and five"),
            (999, "nine hundred and ninety-nine"),
            (1_001, "one thousand and one"),
            (1_100, "one thousand, one hundred"),
            (3_073, "three thousand and seventy-three"),
            (21_345, "twenty-one thousand, three hundred and forty-five"),
        ] {
            assert_eq!(number_words(n), words, "{n}");
        }
    }

    #[test]
    fn durations_are_written_as_python_timedelta_writes_them() {
        let d = |s| hours_minutes_seconds(Duration::from_secs(s));
        assert_eq!(d(0), "0:00:00");
        assert_eq!(d(75), "0:01:15");
        assert_eq!(d(3_725), "1:02:05");
        assert_eq!(d(90_061), "1 day, 1:01:01");
        assert_eq!(d(2 * 86_400), "2 days, 0:00:00");
    }

    #[test]
    fn the_video_layout_times_frames_from_the_oldest_and_the_glimpse_layout_keeps_stream_time() {
        let visual = Visual {
            grid: 1,
            positions: &[],
            tokens: &[],
        };
        let seen = |s: f64, now| Seen {
            at: Duration::from_secs_f64(s),
            now,
            visual,
        };
        let context = [seen(100.0, false), seen(161.5, false), seen(161.5, true)];
        let texts = |layout| -> Vec<String> {
            message(layout, &context, "what changed ?")
                .content
                .into_iter()
                .map(|c| match c {
                    Content::Text { text } => text,
                    Content::Image => "<image>".to_owned(),
                })
                .collect()
        };
        assert_eq!(
            texts(PromptLayout::SmolvlmVideo).concat(),
            "You are provided the following series of three frames from a 0:01:01 [H:MM:SS] video.\n\
             \nFrame from 00:00:<image>\nFrame from 01:01:<image>\nFrame from 01:01:<image>\
             \n\nwhat changed ?"
        );
        assert_eq!(
            texts(PromptLayout::Glimpse).concat(),
            "at 100.0 s : <image>at 100.0 s . at 161.5 s : <image>at 161.5 s . now : <image>what changed ?"
        );
    }
}
