//! `glimpse check`: validates a config file and prints it with every
//! default filled in.

use std::path::Path;
use std::process::ExitCode;

use super::EX_CONFIG;
use crate::config::{self, Environment};

/// Prints the resolved config (unless `quiet`) and its warnings; a broken
/// config prints why and exits 78.
pub fn check(path: &Path, quiet: bool) -> ExitCode {
    match config::load(path, &Environment::from_process()) {
        Ok(config) => {
            if !quiet {
                print!("{}", config.to_toml());
                for warning in config.mqtt.warnings() {
                    eprintln!("warning: {warning}");
                }
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
