//! `glimpse doctor`: one line per check of what a deployment of the config
//! needs ([`crate::doctor`]), with the fix; exits 69 (EX_UNAVAILABLE) when
//! a check fails, so that a provisioning script can stop there.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::load_config;
use crate::doctor::{self, Status};

/// A check failed: something the deployment needs is not there.
pub const EX_UNAVAILABLE: u8 = 69;

/// Checks the config at `path` and prints the report.
pub fn doctor(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let checks = doctor::run(&config);
    // A closed pipe (`| head`) ends the report quietly.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ok    config       {} is valid", path.display());
    for check in &checks {
        let status = match check.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(out, "{status:<5} {:<12} {}", check.what, check.found);
        if let Some(fix) = &check.fix {
            let _ = writeln!(out, "      {:<12} fix: {fix}", "");
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    println!(
        "{failed} failed, {warned} warning(s), {} ok",
        checks.len() - failed - warned
    );
    if failed > 0 {
        ExitCode::from(EX_UNAVAILABLE)
    } else {
        ExitCode::SUCCESS
    }
}
