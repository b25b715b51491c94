//! `glimpse ask`: a question to a running glimpse over MQTT, and its
//! answer printed.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::{load_config, EX_DATAERR, EX_SOFTWARE};

/// Asks `question` about `camera` and prints the answer's text (or the
/// whole answer as JSON); an error answer exits 65, no answer 70.
pub fn ask(path: &Path, camera: &str, question: &str, timeout: Duration, json: bool) -> ExitCode {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let asked = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(crate::mqtt::ask(&config.mqtt, camera, question, timeout)));
    match asked {
        Ok(answer) if json => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Ok(answer) => match (answer["text"].as_str(), answer["error"].as_str()) {
            (Some(text), _) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            (_, Some(error)) => {
                eprintln!("error: glimpse could not answer: {error}");
                ExitCode::from(EX_DATAERR)
            }
            _ => {
                println!("{answer}");
                ExitCode::SUCCESS
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}
