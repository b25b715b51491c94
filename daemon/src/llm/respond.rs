//! The responder: asks the model about what a camera saw and turns the
//! answer into text. It owns the prompts, laid out as the model was
//! trained ([`PromptLayout`]); the context it gets (visual tokens with
//! their times and positions, oldest first: the memory readout, then the
//! canvas) is built by the caller.

use std::sync::Arc;

use super::prompt::{build, message, Seen, Visual};
use super::{generate, LlmError, Prompt, Sampling, TextCodec};
use crate::infer::{Backend, ModelFolder, ModelInfo, PromptLayout};

/// What the model is asked when the scene changes.
pub const DESCRIBE: &str = "what changed ?";

/// The answer to [`DESCRIBE`] that reports no change (the shapes model's,
/// from `qa.py`, and the plain phrasing a general model uses).
pub const NOTHING_CHANGED: &str = "nothing changed";

/// Whether a description says only that nothing changed, case, spaces and
/// a closing full stop aside ("Nothing changed."). That is no news: the
/// scene trigger fired, but the model saw no change it can name.
pub fn says_nothing_changed(text: &str) -> bool {
    let text = text.trim().trim_end_matches(['.', '!']).trim_end();
    let words: Vec<&str> = text.split_whitespace().collect();
    words.len() == 2 && words.join(" ").eq_ignore_ascii_case(NOTHING_CHANGED)
}

/// Everything a worker needs to ask the model, built once per model load.
pub struct Responder {
    codec: TextCodec,
    stop: Vec<i64>,
    info: ModelInfo,
    layout: PromptLayout,
    sampling: Sampling,
}

/// An answer and what it cost.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The text.
    pub text: String,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Visual tokens among them.
    pub visual_tokens: usize,
    /// How sure the model was: the lowest probability of any token of the
    /// answer, its end included ([`super::Generation::confidence`]).
    pub confidence: f32,
}

/// Clauses shorter than this many words may repeat ("yes and yes" is rare,
/// "a car and a car" may mean two cars); a longer clause said twice word
/// for word is a decoding loop, not news.
const REPEAT_MIN_WORDS: usize = 3;

/// `text` with each clause (parts joined by " and ") of at least
/// [`REPEAT_MIN_WORDS`] words kept only where it is first said. A small
/// model that sees two changes but can name one says that one twice
/// ("the red triangle left and the red triangle left": 15 of 73 dev
/// descriptions of the shapes model at step 35 415); a user should read
/// it once. The answer's confidence stays that of every token generated.
fn without_repeated_clauses(text: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for clause in text.split(" and ") {
        let key = clause.trim();
        let repeat = key.split_whitespace().count() >= REPEAT_MIN_WORDS
            && kept.iter().any(|k| k.trim().eq_ignore_ascii_case(key));
        if !repeat {
            kept.push(clause);
        }
    }
    kept.join(" and ")
}

/// Most tokens a description or rule answer may take, in the daemon and in
/// `glimpse eval` alike (so the eval scores what the daemon would say).
pub const MAX_ANSWER_TOKENS: usize = 48;

impl Responder {
    /// Loads the tokenizer and template of `folder`; prompts take the
    /// folder's layout.
    pub fn from_folder(
        folder: &ModelFolder,
        max_new_tokens: usize,
    ) -> Result<Arc<Responder>, LlmError> {
        Ok(Arc::new(Responder {
            codec: TextCodec::from_folder(folder)?,
            stop: folder.stop_token_ids(),
            info: folder.info.clone(),
            layout: folder.prompt_layout,
            sampling: Sampling {
                max_new_tokens,
                ..Sampling::default()
            },
        }))
    }

    /// The layout its prompts take.
    pub fn layout(&self) -> PromptLayout {
        self.layout
    }

    /// The prompt for `question` about `context`, in one user message laid
    /// out as the model was trained (each frame's time, then its image,
    /// then the question).
    pub fn prompt(&self, context: &[Seen<'_>], question: &str) -> Result<Prompt, LlmError> {
        let messages = [message(self.layout, context, question)];
        let visuals: Vec<Visual<'_>> = context.iter().map(|s| s.visual).collect();
        build(&self.codec, &self.info, &messages, &visuals)
    }

    /// Asks `question` about `context` (see [`Responder::prompt`]).
    pub fn ask(
        &self,
        backend: &mut dyn Backend,
        context: &[Seen<'_>],
        question: &str,
    ) -> Result<Answer, LlmError> {
        let prompt = self.prompt(context, question)?;
        let generation = generate(
            backend,
            &prompt,
            &self.sampling,
            &self.stop,
            false,
            &mut |_| true,
        )?;
        let text = self.codec.decode(&generation.tokens)?;
        Ok(Answer {
            text: without_repeated_clauses(text.trim()),
            prompt_tokens: generation.prompt_tokens,
            visual_tokens: context.iter().map(|s| s.visual.positions.len()).sum(),
            confidence: generation.confidence(),
        })
    }

    /// Asks a watch rule as a yes/no question; true when the answer starts
    /// with "yes".
    pub fn check_rule(
        &self,
        backend: &mut dyn Backend,
        context: &[Seen<'_>],
        rule: &str,
    ) -> Result<(bool, Answer), LlmError> {
        let answer = self.ask(backend, context, &format!("{rule} answer yes or no ."))?;
        let yes = answer
            .text
            .split_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("yes"));
        Ok((yes, answer))
    }
}

#[cfg(test)]
mod tests {
    use super::says_nothing_changed;
    use super::without_repeated_clauses as once;

    #[test]
    fn nothing_changed_is_recognised_however_it_is_written() {
        for text in [
            "nothing changed",
            "Nothing changed.",
            " nothing  changed . ",
        ] {
            assert!(says_nothing_changed(text), "{text:?}");
        }
        for text in [
            "nothing changed but the red square left",
            "the red square left",
            "nothing",
            "",
        ] {
            assert!(!says_nothing_changed(text), "{text:?}");
        }
    }

    #[test]
    fn a_clause_said_twice_is_said_once() {
        assert_eq!(
            once("the red triangle left and the red triangle left"),
            "the red triangle left"
        );
        assert_eq!(
            once("the red square left and the blue circle left and The red square left"),
            "the red square left and the blue circle left"
        );
        // Different events, a short clause, nothing to join: untouched.
        for text in [
            "the red square appeared at the top and the red square left",
            "a car and a car",
            "nothing changed",
            "yes",
            "",
        ] {
            assert_eq!(once(text), text);
        }
    }
}
