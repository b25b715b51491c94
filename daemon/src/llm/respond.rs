//! The responder: asks the model about what a camera saw and turns the
//! answer into text. It owns the prompts, laid out as the model was
//! trained ([`PromptLayout`]); the context it gets (visual tokens with
//! their times and positions, oldest first: the memory readout, then the
//! canvas) is built by the caller.

use std::sync::Arc;
use std::time::Duration;

use super::prompt::{build, message, Seen, Visual};
use super::{generate, LlmError, Prompt, Sampling, TextCodec};
use crate::infer::{Backend, ModelFolder, ModelInfo, PromptLayout};

/// What glimpse's own layout asks when the scene changes (the shapes
/// model's question, `qa.py`).
pub const DESCRIBE: &str = "what changed ?";

/// What an instruct model (SmolVLM2's layout) is asked when the scene
/// changes, unless its folder or the camera says otherwise.
pub const DESCRIBE_INSTRUCT: &str = "In one short sentence, what changed?";

/// The answer to [`DESCRIBE`] that reports no change (the shapes model's,
/// from `qa.py`, and the plain phrasing a general model uses).
pub const NOTHING_CHANGED: &str = "nothing changed";

/// Whether a description says only that nothing changed, case, spaces and
/// a closing full stop aside ("Nothing changed."). That is no news: the
/// scene trigger fired, but the model saw no change it can name.
pub fn says_nothing_changed(text: &str) -> bool {
    same_words(text, NOTHING_CHANGED)
}

/// Whether `a` and `b` say the same words, case, spaces and a closing full
/// stop or exclamation mark aside.
fn same_words(a: &str, b: &str) -> bool {
    let words = |t: &str| -> Vec<String> {
        t.trim()
            .trim_end_matches(['.', '!'])
            .split_whitespace()
            .map(str::to_lowercase)
            .collect()
    };
    words(a) == words(b)
}

/// What a camera says to the model when its scene changes: the question,
/// the sentence about the camera, and the answers that are no news. The
/// camera's own (`trigger.describe`, `context`, `no_news`), else its model
/// folder's, else its family's ([`Responder::words`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Words {
    /// Asked on a scene change.
    pub describe: String,
    /// Where it came from: "config", "model folder" or "default".
    pub describe_from: &'static str,
    /// Given as context, where the layout has a place for it.
    pub context: Option<String>,
    /// Descriptions that are not published.
    pub no_news: Vec<String>,
    /// The layout has no place for the context (glimpse's own).
    pub context_ignored: bool,
    /// The window the description covers, when the model reads it from
    /// the scene before the window and now (the folder's
    /// `glimpse.describe_window_s`); else it reads the whole memory.
    pub describe_window: Option<Duration>,
}

/// What a model folder says of the question about a change: its layout
/// (whose default applies), and its own question and no-news answers.
#[derive(Debug, Clone)]
pub struct FolderWords {
    layout: PromptLayout,
    describe: Option<String>,
    no_news: Option<Vec<String>>,
    describe_window: Option<Duration>,
}

impl FolderWords {
    /// Read from `folder` (its prompt layout already settled).
    pub fn of(folder: &ModelFolder) -> FolderWords {
        FolderWords {
            layout: folder.prompt_layout,
            describe: folder.describe.clone(),
            no_news: folder.no_news.clone(),
            describe_window: folder.describe_window,
        }
    }
}

impl Words {
    /// A camera's words: the config's where given (`describe`, `context`,
    /// `no_news`), else the model folder's, else the layout's default.
    pub fn resolve(
        folder: &FolderWords,
        describe: Option<&str>,
        context: Option<&str>,
        no_news: Option<&[String]>,
    ) -> Words {
        let (describe, describe_from) = match (describe, &folder.describe) {
            (Some(d), _) => (d.to_owned(), "config"),
            (None, Some(d)) => (d.clone(), "model folder"),
            (None, None) if folder.layout == PromptLayout::SmolvlmVideo => {
                (DESCRIBE_INSTRUCT.to_owned(), "default")
            }
            (None, None) => (DESCRIBE.to_owned(), "default"),
        };
        let no_news = no_news
            .map(<[String]>::to_vec)
            .or_else(|| folder.no_news.clone())
            .unwrap_or_else(|| vec![NOTHING_CHANGED.to_owned()]);
        Words {
            describe,
            describe_from,
            context: context.map(str::to_owned),
            no_news,
            context_ignored: context.is_some() && folder.layout != PromptLayout::SmolvlmVideo,
            describe_window: folder.describe_window,
        }
    }

    /// Whether `description` is no news.
    pub fn is_no_news(&self, description: &str) -> bool {
        self.no_news.iter().any(|n| same_words(description, n))
    }

    /// Whether `question` is the question about a change (a user may ask
    /// it too), which the model may read from its own window of the memory.
    pub fn is_describe(&self, question: &str) -> bool {
        // "what changed?" and "what changed ?" are one question to the
        // tokenizer.
        let spaced = |t: &str| t.replace('?', " ?");
        same_words(&spaced(question), &spaced(&self.describe))
    }
}

/// Everything a worker needs to ask the model, built once per model load.
pub struct Responder {
    codec: TextCodec,
    stop: Vec<i64>,
    info: ModelInfo,
    layout: PromptLayout,
    sampling: Sampling,
    /// What the folder says of its question about a change.
    folder_words: FolderWords,
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
            folder_words: FolderWords::of(folder),
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

    /// A camera's words ([`Words::resolve`]) for this model.
    pub fn words(
        &self,
        describe: Option<&str>,
        context: Option<&str>,
        no_news: Option<&[String]>,
    ) -> Words {
        Words::resolve(&self.folder_words, describe, context, no_news)
    }

    /// The prompt for `question` about `context`, in one user message laid
    /// out as the model was trained (each frame's time, then its image,
    /// then the question).
    pub fn prompt(&self, context: &[Seen<'_>], question: &str) -> Result<Prompt, LlmError> {
        self.prompt_about(context, question, None)
    }

    /// [`Responder::prompt`], with `about` (a sentence about the camera)
    /// where the layout has a place for it: a system message before the
    /// user's in SmolVLM2's; glimpse's own layout has none.
    pub fn prompt_about(
        &self,
        context: &[Seen<'_>],
        question: &str,
        about: Option<&str>,
    ) -> Result<Prompt, LlmError> {
        let mut messages = Vec::with_capacity(2);
        if let (Some(about), PromptLayout::SmolvlmVideo) = (about, self.layout) {
            messages.push(super::Message {
                role: "system".to_owned(),
                content: vec![super::Content::Text {
                    text: about.to_owned(),
                }],
            });
        }
        messages.push(message(self.layout, context, question));
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
        self.ask_about(backend, context, question, None)
    }

    /// [`Responder::ask`] with a sentence about the camera
    /// ([`Responder::prompt_about`]).
    pub fn ask_about(
        &self,
        backend: &mut dyn Backend,
        context: &[Seen<'_>],
        question: &str,
        about: Option<&str>,
    ) -> Result<Answer, LlmError> {
        let prompt = self.prompt_about(context, question, about)?;
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
        self.check_rule_about(backend, context, rule, None)
    }

    /// [`Responder::check_rule`] with a sentence about the camera
    /// ([`Responder::prompt_about`]).
    pub fn check_rule_about(
        &self,
        backend: &mut dyn Backend,
        context: &[Seen<'_>],
        rule: &str,
        about: Option<&str>,
    ) -> Result<(bool, Answer), LlmError> {
        let question = format!("{rule} answer yes or no .");
        let answer = self.ask_about(backend, context, &question, about)?;
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
    use super::without_repeated_clauses as once;
    use super::{says_nothing_changed, Words};

    #[test]
    fn the_question_about_a_change_is_known_however_it_is_spaced() {
        let words = Words {
            describe: "what changed ?".into(),
            describe_from: "model folder",
            context: None,
            no_news: vec![],
            context_ignored: false,
            describe_window: None,
        };
        for q in ["what changed ?", "What changed?", " what  changed ? "] {
            assert!(words.is_describe(q), "{q:?}");
        }
        for q in ["what changed at the door ?", "how many shapes are there ?"] {
            assert!(!words.is_describe(q), "{q:?}");
        }
    }

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
