//! Where `xmctl` finds the manager, its token and the CA it trusts for an
//! `https://` manager: flag, then environment (clap merges those two), then
//! the config file, then the defaults.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::CliError;

/// The manager's URL when no flag, variable or file names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// Seconds to wait for one answer when `--timeout` is not given.
pub const DEFAULT_TIMEOUT_SECS: f64 = 30.0;

/// The admin token. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The secret itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The config file: `url = "…"`, `token = "…"` and `ca_file = "…"`, all
/// optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub url: Option<String>,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigFile")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl ConfigFile {
    /// Reads and parses `path`. A parse error names the line but never quotes
    /// the file, which may hold the token.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!("cannot read config file {}: {e}", path.display()))
        })?;
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
            CliError::Usage(format!(
                "invalid config file {}{at}: {}",
                path.display(),
                e.message().trim()
            ))
        })
    }
}

/// `$XDG_CONFIG_HOME/xmctl/config.toml`, else `~/.config/xmctl/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("xmctl").join("config.toml"))
}

/// The resolved connection settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub token: Option<Token>,
    pub timeout: Duration,
    /// PEM certificates of the CA(s) an `https://` manager's certificate
    /// must chain to, trusted instead of the built-in web roots.
    pub ca_file: Option<PathBuf>,
}

/// Merges the sources: `url`, `token` and `ca_file` are the
/// flag-or-environment values clap found; the file fills what they leave
/// out. An explicit `config` must
/// exist; the default file is read only if present.
pub fn resolve(
    url: Option<String>,
    token: Option<String>,
    config: Option<&Path>,
    timeout_secs: Option<f64>,
    ca_file: Option<PathBuf>,
) -> Result<Settings, CliError> {
    let file = match config {
        Some(path) => ConfigFile::load(path)?,
        None => match default_config_path() {
            Some(path) if path.is_file() => ConfigFile::load(&path)?,
            _ => ConfigFile::default(),
        },
    };
    let url = non_empty(url)
        .or(non_empty(file.url))
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let token = non_empty(token).or(non_empty(file.token)).map(Token);
    let secs = timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    let timeout = Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--timeout must be a positive number of seconds, not {secs}"
            ))
        })?;
    let ca_file = ca_file
        .filter(|p| !p.as_os_str().is_empty())
        .or(file.ca_file);
    Ok(Settings {
        url,
        token,
        timeout,
        ca_file,
    })
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), text).expect("write config");
        f
    }

    #[test]
    fn flag_or_env_values_win_over_the_file() {
        let f = file("url = \"http://file:1\"\ntoken = \"file-token\"\n");
        let s = resolve(
            Some("http://flag:2".into()),
            Some("flag-token".into()),
            Some(f.path()),
            None,
            None,
        )
        .expect("resolves");
        assert_eq!(s.url, "http://flag:2");
        assert_eq!(s.token, Some(Token::new("flag-token")));
    }

    #[test]
    fn the_file_fills_what_flags_leave_out() {
        let f = file("url = \"http://file:1\"\ntoken = \"file-token\"\n");
        let s = resolve(None, None, Some(f.path()), Some(2.5), None).expect("resolves");
        assert_eq!(s.url, "http://file:1");
        assert_eq!(s.token, Some(Token::new("file-token")));
        assert_eq!(s.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn a_bad_file_names_the_line_but_not_its_content() {
        let f = file("url = \"http://x\"\ntoken = \"s3cret-value\" junk\n");
        let err = resolve(None, None, Some(f.path()), None, None).expect_err("invalid TOML");
        let text = err.to_string();
        assert!(text.contains("line 2"), "{text}");
        assert!(!text.contains("s3cret-value"), "{text}");
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn an_unknown_key_is_a_usage_error() {
        let f = file("tokn = \"x\"\n");
        let err = resolve(None, None, Some(f.path()), None, None).expect_err("unknown key");
        assert!(err.to_string().contains("tokn"), "{err}");
    }

    #[test]
    fn a_missing_explicit_file_is_a_usage_error() {
        let err = resolve(
            None,
            None,
            Some(Path::new("/nonexistent/xmctl.toml")),
            None,
            None,
        )
        .expect_err("missing file");
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn a_zero_or_negative_timeout_is_refused() {
        let f = file("");
        for bad in [0.0, -1.0, f64::NAN] {
            assert!(
                resolve(None, None, Some(f.path()), Some(bad), None).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = Token::new("hunter2");
        assert!(!format!("{t:?}").contains("hunter2"));
        let c = ConfigFile {
            url: None,
            token: Some("hunter2".into()),
            ca_file: None,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
