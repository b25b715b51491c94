//! Text: the tokenizer (`tokenizer.json`, through Hugging Face's
//! `tokenizers`) and the chat template (from the file the folder found it
//! in, [`crate::infer::ChatTemplate`]; rendered with minijinja the way
//! transformers renders it with jinja2: `trim_blocks`, `lstrip_blocks`,
//! loop controls, `raise_exception`, `tojson`, Python string methods).

use minijinja::{context, Environment, ErrorKind};
use serde::Serialize;

use super::LlmError;
use crate::infer::ModelFolder;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// `user`, `assistant` or `system`.
    pub role: String,
    /// Text and images, in order.
    pub content: Vec<Content>,
}

/// A piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// An image placeholder; the template writes the model's image token.
    Image,
}

impl Message {
    /// A message of one text.
    pub fn text(role: &str, text: &str) -> Message {
        Message {
            role: role.to_owned(),
            content: vec![Content::Text {
                text: text.to_owned(),
            }],
        }
    }
}

/// The tokenizer and chat template of a model.
pub struct TextCodec {
    tokenizer: tokenizers::Tokenizer,
    template: Environment<'static>,
    bos: String,
    eos: String,
}

impl TextCodec {
    /// Loads `tokenizer.json` and the chat template of `folder`.
    pub fn from_folder(folder: &ModelFolder) -> Result<TextCodec, LlmError> {
        let tokenizer = tokenizers::Tokenizer::from_file(&folder.tokenizer)
            .map_err(|e| LlmError::Tokenizer(format!("{}: {e}", folder.tokenizer.display())))?;
        let config = &folder.tokenizer_config;
        let token = |key: &str| {
            // Either a plain string or {"content": ...}.
            config[key]
                .as_str()
                .or_else(|| config[key]["content"].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let chat = &folder.chat_template;
        let template = environment(chat.source.clone()).map_err(|e| {
            LlmError::Template(match chat.key {
                Some(key) => format!("{}: {key}: {e:#}", chat.file.display()),
                None => format!("{}: {e:#}", chat.file.display()),
            })
        })?;
        Ok(TextCodec {
            tokenizer,
            template,
            bos: token("bos_token"),
            eos: token("eos_token"),
        })
    }

    /// Renders `messages` with the chat template, as transformers'
    /// `apply_chat_template(tokenize=False)` does.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, LlmError> {
        let template = self
            .template
            .get_template("chat")
            .map_err(|e| LlmError::Template(format!("{e:#}")))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos,
                eos_token => &self.eos,
            })
            .map_err(|e| LlmError::Template(format!("{e:#}")))
    }

    /// Token ids of `text`; special tokens written in it are recognised,
    /// none are added.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, LlmError> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| LlmError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[i64]) -> Result<String, LlmError> {
        let ids: Vec<u32> = ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
        self.tokenizer
            .decode(&ids, true)
            .map_err(|e| LlmError::Tokenizer(e.to_string()))
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.tokenizer.token_to_id(token).map(i64::from)
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }
}

fn environment(source: String) -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        },
    );
    env.add_template_owned("chat", source)?;
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_exception_reaches_the_caller() {
        let env = environment(
            "{% if messages|length == 0 %}{{ raise_exception('no messages') }}{% endif %}".into(),
        )
        .unwrap();
        let err = env
            .get_template("chat")
            .unwrap()
            .render(context! { messages => Vec::<Message>::new() })
            .unwrap_err();
        assert!(format!("{err:#}").contains("no messages"));
    }

    #[test]
    fn python_string_methods_and_block_trimming_work() {
        let env = environment("{% for m in messages %}\n  {{ m.role.upper() }}:{{ m.content[0].text.strip() }}\n{% endfor %}".into()).unwrap();
        let out = env
            .get_template("chat")
            .unwrap()
            .render(context! { messages => vec![Message::text("user", "  hi  ")] })
            .unwrap();
        assert_eq!(out, "  USER:hi\n");
    }
}
