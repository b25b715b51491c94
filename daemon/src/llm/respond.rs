//! The responder: asks the model about what a camera saw and turns the
//! answer into text. It owns the prompts; the context it gets (labelled
//! visual tokens with their positions, oldest first: the memory readout,
//! then the canvas) is built by the caller.

use std::sync::Arc;

use super::prompt::{build, Visual};
use super::{generate, Content, LlmError, Message, Prompt, Sampling, TextCodec};
use crate::infer::{Backend, ModelFolder, ModelInfo};

/// What the model is asked when the scene changes.
pub const DESCRIBE: &str = "what changed ?";

/// Everything a worker needs to ask the model, built once per model load.
pub struct Responder {
    codec: TextCodec,
    stop: Vec<i64>,
    info: ModelInfo,
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
}

/// One labelled image of the context, e.g. ("at 12.5 s :", tokens).
pub type Labelled<'a> = (String, Visual<'a>);

impl Responder {
    /// Loads the tokenizer and template of `folder`.
    pub fn from_folder(
        folder: &ModelFolder,
        max_new_tokens: usize,
    ) -> Result<Arc<Responder>, LlmError> {
        Ok(Arc::new(Responder {
            codec: TextCodec::from_folder(folder)?,
            stop: folder.stop_token_ids(),
            info: folder.info.clone(),
            sampling: Sampling {
                max_new_tokens,
                ..Sampling::default()
            },
        }))
    }

    /// The prompt for `question` about `context`: each label, then its
    /// image, then the question, in one user message.
    pub fn prompt(&self, context: &[Labelled<'_>], question: &str) -> Result<Prompt, LlmError> {
        let mut content = Vec::with_capacity(2 * context.len() + 1);
        for (label, _) in context {
            content.push(Content::Text {
                text: format!("{label} "),
            });
            content.push(Content::Image);
        }
        content.push(Content::Text {
            text: question.to_owned(),
        });
        let messages = [Message {
            role: "user".to_owned(),
            content,
        }];
        let visuals: Vec<Visual<'_>> = context.iter().map(|(_, v)| *v).collect();
        build(&self.codec, &self.info, &messages, &visuals)
    }

    /// Asks `question` about `context` (see [`Responder::prompt`]).
    pub fn ask(
        &self,
        backend: &mut dyn Backend,
        context: &[Labelled<'_>],
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
        Ok(Answer {
            text: self.codec.decode(&generation.tokens)?.trim().to_owned(),
            prompt_tokens: generation.prompt_tokens,
            visual_tokens: context.iter().map(|(_, v)| v.positions.len()).sum(),
        })
    }

    /// Asks a watch rule as a yes/no question; true when the answer starts
    /// with "yes".
    pub fn check_rule(
        &self,
        backend: &mut dyn Backend,
        context: &[Labelled<'_>],
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
