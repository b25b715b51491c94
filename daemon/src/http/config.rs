//! `[http]`: where the status page, `/metrics` and `/api` listen, and the
//! bearer token that guards them off loopback.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::settings::{resolve_secret, Environment, Problems, Secret};

/// `[http]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve the status page, `/metrics`, `/api/…` and `/healthz`.
    /// Default: true.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Address and port to listen on (`IP:PORT`; port 0 picks a free one,
    /// logged). An address off loopback needs a token. The environment
    /// variable `GLIMPSE_HTTP_LISTEN`, when set, replaces it. Read at start:
    /// a change needs a restart. Default: `127.0.0.1:8480`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// A file holding the bearer token clients must send
    /// (`Authorization: Bearer TOKEN`, or `?token=TOKEN` for a browser);
    /// `GLIMPSE_HTTP_TOKEN` wins over it. Relative to the config file's
    /// folder. Default: none (no token; loopback only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The token, resolved from the environment or `token_file`; never
    /// read from nor written to the config file.
    #[serde(skip)]
    pub token: Option<Secret>,
}

fn default_enabled() -> bool {
    true
}
fn default_listen() -> String {
    "127.0.0.1:8480".to_owned()
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: default_enabled(),
            listen: default_listen(),
            token_file: None,
            token: None,
        }
    }
}

/// Why `listen` is not an address, for the key's message.
fn check_listen(listen: &str) -> Result<SocketAddr, String> {
    listen.parse().map_err(|_| {
        format!("must be IP:PORT, such as 127.0.0.1:8480 or 0.0.0.0:8480, got {listen:?}")
    })
}

impl HttpConfig {
    /// Checks every value of the table at `key`.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        if let Err(reason) = check_listen(&self.listen) {
            problems.push(format!("{key}.listen"), reason);
        }
        if self
            .token_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            problems.push(
                format!("{key}.token_file"),
                "must not be empty (leave the key out for no token)",
            );
        }
    }

    /// The address to listen on; [`HttpConfig::validate`] checked it.
    pub fn address(&self) -> Result<SocketAddr, String> {
        check_listen(&self.listen)
    }

    /// Takes `GLIMPSE_HTTP_LISTEN` and the token from the environment or
    /// `token_file`, then refuses an address off loopback without a token.
    pub(crate) fn resolve(&mut self, env: &Environment, key: &str, problems: &mut Problems) {
        if let Some(listen) = &env.http_listen {
            match check_listen(listen) {
                Ok(_) => self.listen = listen.clone(),
                Err(reason) => {
                    problems.push(
                        format!("{key}.listen"),
                        format!("from GLIMPSE_HTTP_LISTEN: {reason}"),
                    );
                    return;
                }
            }
        }
        let before = problems.0.len();
        self.token = resolve_secret(
            env.http_token.as_ref().filter(|t| !t.is_empty()),
            self.token_file.as_deref(),
            &format!("{key}.token_file"),
            problems,
        );
        if problems.0.len() > before {
            return;
        }
        let open = self.address().is_ok_and(|a| !a.ip().is_loopback());
        if self.enabled && open && self.token.is_none() {
            problems.push(
                format!("{key}.listen"),
                format!(
                    "{} is reachable from other machines, and the page can ask the model and \
                     shows the cameras: set a bearer token with GLIMPSE_HTTP_TOKEN or \
                     {key}.token_file, or listen on 127.0.0.1",
                    self.listen
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(config: &mut HttpConfig, env: &Environment) -> Problems {
        let mut problems = Problems::default();
        config.validate("http", &mut problems);
        if problems.is_empty() {
            config.resolve(env, "http", &mut problems);
        }
        problems
    }

    #[test]
    fn a_bad_listen_names_the_key() {
        let mut config = HttpConfig {
            listen: "localhost".into(),
            ..HttpConfig::default()
        };
        let problems = resolved(&mut config, &Environment::default());
        assert_eq!(problems.to_string(), "http.listen: must be IP:PORT, such as 127.0.0.1:8480 or 0.0.0.0:8480, got \"localhost\"");
        let env = Environment {
            http_listen: Some("8480".into()),
            ..Environment::default()
        };
        let problems = resolved(&mut HttpConfig::default(), &env);
        assert!(
            problems
                .to_string()
                .starts_with("http.listen: from GLIMPSE_HTTP_LISTEN: must be IP:PORT"),
            "{problems}"
        );
    }

    #[test]
    fn off_loopback_needs_a_token() {
        let open = || HttpConfig {
            listen: "0.0.0.0:8480".into(),
            ..HttpConfig::default()
        };
        let problems = resolved(&mut open(), &Environment::default());
        assert!(
            problems
                .to_string()
                .starts_with("http.listen: 0.0.0.0:8480 is reachable from other machines"),
            "{problems}"
        );
        // Off: nothing listens, nothing to guard.
        let mut off = HttpConfig {
            enabled: false,
            ..open()
        };
        assert!(resolved(&mut off, &Environment::default()).is_empty());
        let env = Environment {
            http_token: Some("s3cret".into()),
            ..Environment::default()
        };
        let mut config = open();
        assert!(resolved(&mut config, &env).is_empty());
        assert_eq!(config.token, Some(Secret("s3cret".into())));
        // From a file, with its trailing newline taken off.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let mut config = HttpConfig {
            token_file: Some(file),
            ..open()
        };
        assert!(resolved(&mut config, &Environment::default()).is_empty());
        assert_eq!(config.token, Some(Secret("from-file".into())));
    }

    #[test]
    fn the_environment_moves_the_listener() {
        let env = Environment {
            http_listen: Some("127.0.0.1:0".into()),
            ..Environment::default()
        };
        let mut config = HttpConfig::default();
        assert!(resolved(&mut config, &env).is_empty());
        assert_eq!(config.address().unwrap().port(), 0);
    }
}
