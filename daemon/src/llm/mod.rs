//! The language side: tokenizer and chat template ([`TextCodec`]), prompts
//! in the layout the model was trained on ([`message`]) with visual tokens
//! at their full-layout positions ([`build_prompt`]),
//! the generation loop ([`generate`]) shared by every backend, and the
//! [`Responder`] that asks the model about a camera. Runs on a model worker
//! thread.

mod generate;
mod prompt;
mod respond;
mod text;

pub use generate::{generate, prompt_embeddings, Generation, Prompt, Sampling, Stop};
pub use prompt::{build as build_prompt, glimpse_label, message, number_words, Seen, Visual};
pub use respond::{
    says_nothing_changed, Answer, FolderWords, Responder, Words, DESCRIBE, DESCRIBE_INSTRUCT,
    MAX_ANSWER_TOKENS, NOTHING_CHANGED,
};
pub use text::{Content, Message, TextCodec};

use crate::infer::InferError;

/// Why a prompt could not be built or generated from.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The backend failed.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The tokenizer failed or could not be loaded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed or could not be compiled.
    #[error("chat template: {0}")]
    Template(String),
    /// The prompt does not fit together.
    #[error("prompt: {0}")]
    Prompt(String),
}
