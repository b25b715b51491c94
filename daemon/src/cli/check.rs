//! `glimpse check`: validates a config file and prints it with every
//! default filled in, then what each camera asks the model on a scene
//! change.

use std::path::Path;
use std::process::ExitCode;

use super::EX_CONFIG;
use crate::config::{self, Config, Environment};
use crate::infer::ModelFolder;
use crate::llm::{FolderWords, Words};

/// Prints the resolved config (unless `quiet`), its warnings and each
/// camera's prompt; a broken config prints why and exits 78.
pub fn check(path: &Path, quiet: bool) -> ExitCode {
    match config::load(path, &Environment::from_process()) {
        Ok(config) => {
            if !quiet {
                print!("{}", config.to_toml());
                for warning in config.mqtt.warnings() {
                    eprintln!("warning: {warning}");
                }
                print_words(&config);
                eprintln!("{}: OK", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EX_CONFIG)
        }
    }
}

/// One line per camera: the question it asks on a scene change (and where
/// it comes from), its context and its no-news answers.
fn print_words(config: &Config) {
    let Some(model) = &config.model else {
        return;
    };
    // `load` opened the folder already; this cannot fail but a race.
    let Ok(mut folder) = ModelFolder::open(&model.path, &model.variant) else {
        return;
    };
    folder.set_prompt_layout(model.prompt_layout);
    let folder = FolderWords::of(&folder);
    for (name, camera) in &config.cameras {
        let t = &camera.trigger;
        let words = Words::resolve(
            &folder,
            t.describe.as_deref(),
            t.context.as_deref(),
            t.no_news.as_deref(),
        );
        let from = match words.describe_from {
            "config" => "cameras.<name>.trigger.describe",
            "model folder" => "the model folder's config.json",
            _ => "the default of the model's prompt layout",
        };
        let context = match &words.context {
            Some(c) => format!(", context {c:?}"),
            None => String::new(),
        };
        eprintln!(
            "cameras.{name}: on a scene change asks {:?} (from {from}){context}; not published: {:?}",
            words.describe, words.no_news
        );
        if words.context_ignored {
            eprintln!("warning: cameras.{name}.trigger.context: this model's prompt layout (glimpse's own) has no place for a context; the model does not see it");
        }
    }
}
