//! The master key: where it comes from (`[secrets]` settings, `XM_MASTER_KEY`,
//! or a key file generated next to the embedded database) and its id.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::{Key, XChaCha20Poly1305};
use rand::RngCore as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::Sealer;
use node_agent_lib::secret::Secret;

/// The name of the generated master key's file in the data directory.
pub const MASTER_KEY_FILE: &str = "master-key";

/// 32 bytes that seal the secret columns. `Debug` shows only its id.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    pub const BYTES: usize = 32;

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        // The id names the key in sealed values and errors: 32 bits of a
        // hash, which tells keys apart and reveals nothing usable about one.
        let digest = Sha256::new()
            .chain_update(b"xray-manager master key id\0")
            .chain_update(bytes)
            .finalize();
        Self {
            id: hex::encode(&digest[..4]),
            cipher: XChaCha20Poly1305::new(Key::from_slice(&bytes)),
        }
    }

    /// A fresh random key.
    pub fn random() -> Self {
        Self::from_bytes(random_bytes())
    }

    /// The key from its text form: 32 bytes as base64 (standard or url-safe,
    /// padded or not), surrounding whitespace ignored. Errors never echo it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or("a master key must be base64 (e.g. `openssl rand -base64 32`)")?;
        let len = bytes.len();
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("a master key must be 32 bytes, this one has {len}"))?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key stored in `path`.
    pub fn read_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("master key file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("master key file {}: {e}", path.display()))
    }

    /// Eight hex digits naming this key in sealed values and errors.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn cipher(&self) -> &XChaCha20Poly1305 {
        &self.cipher
    }
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// `[secrets]`: the master key sealing node keys and user secrets at rest.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsSettings {
    /// The file holding the master key (32 bytes as base64). Unset, with no
    /// `XM_MASTER_KEY`: `<data_dir>/master-key`, generated on first start
    /// when the storage is the embedded SQLite file.
    pub master_key_file: Option<PathBuf>,
    /// Master keys the database may still be sealed under, during a
    /// rotation: values sealed under them are read and re-sealed under the
    /// current key at start; once that is done they can be dropped.
    pub previous_master_key_files: Vec<PathBuf>,
    /// The master key itself, from `XM_MASTER_KEY` only (never a file key).
    #[serde(skip)]
    pub master_key: Option<Secret>,
}

/// Where the master key came from, for the start-up log line (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `XM_MASTER_KEY`.
    Environment,
    /// A file named in the settings, or the default one found in place.
    File(PathBuf),
    /// The default file, just generated.
    Generated(PathBuf),
}

impl SecretsSettings {
    /// Applies `XM_MASTER_KEY`, `XM_SECRETS_MASTER_KEY_FILE` and
    /// `XM_SECRETS_PREVIOUS_MASTER_KEY_FILES` (comma-separated).
    pub fn apply_env(&mut self, var: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        if let Some(v) = var("XM_MASTER_KEY") {
            self.master_key = Some(Secret::new(v));
        }
        if let Some(v) = var("XM_SECRETS_MASTER_KEY_FILE") {
            self.master_key_file = match v.trim() {
                "" => None,
                v => Some(v.into()),
            };
        }
        if let Some(v) = var("XM_SECRETS_PREVIOUS_MASTER_KEY_FILES") {
            self.previous_master_key_files = v
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        Ok(())
    }

    /// Refuses a key given both by value and by file, and a bad key value.
    pub fn validate(&self) -> Result<(), String> {
        if self.master_key.is_some() && self.master_key_file.is_some() {
            return Err(
                "give the master key once: XM_MASTER_KEY or [secrets] master_key_file \
                 (XM_SECRETS_MASTER_KEY_FILE), not both"
                    .into(),
            );
        }
        if let Some(key) = &self.master_key {
            MasterKey::parse(key.expose()).map_err(|e| format!("XM_MASTER_KEY: {e}"))?;
        }
        Ok(())
    }

    /// The sealer these settings give. With no key given, the key file
    /// `<data_dir>/master-key` is read, or generated (mode 0600) when
    /// `may_generate` (the embedded SQLite storage, whose data sits next to
    /// it); a shared database needs one key for every replica, so there it
    /// is an error instead.
    pub fn sealer(
        &self,
        data_dir: &Path,
        may_generate: bool,
    ) -> Result<(Sealer, KeySource), String> {
        let (current, source) = if let Some(key) = &self.master_key {
            let key = MasterKey::parse(key.expose()).map_err(|e| format!("XM_MASTER_KEY: {e}"))?;
            (key, KeySource::Environment)
        } else if let Some(path) = &self.master_key_file {
            (MasterKey::read_file(path)?, KeySource::File(path.clone()))
        } else {
            let path = data_dir.join(MASTER_KEY_FILE);
            if path.exists() {
                (MasterKey::read_file(&path)?, KeySource::File(path))
            } else if may_generate {
                let bytes = random_bytes();
                write_new_private(&path, STANDARD.encode(bytes).as_bytes()).map_err(|e| {
                    format!("cannot create master key file {}: {e}", path.display())
                })?;
                (MasterKey::from_bytes(bytes), KeySource::Generated(path))
            } else {
                return Err(format!(
                    "no master key: set XM_MASTER_KEY or [secrets] master_key_file (32 bytes \
                     as base64, e.g. `openssl rand -base64 32`), or place the key file at {}; \
                     one is generated only on the first start of the embedded SQLite storage \
                     (a shared database needs the same key on every manager)",
                    path.display()
                ));
            }
        };
        let previous = self
            .previous_master_key_files
            .iter()
            .map(|p| MasterKey::read_file(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((Sealer::new(current, previous), source))
    }
}

/// Creates `path` (it must not exist) readable by its owner only.
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(path)?;
    file.write_all(bytes)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = SecretsSettings::default();
        let (first, source) = settings.sealer(dir.path(), true).unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        assert_eq!(source, KeySource::Generated(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, source) = settings.sealer(dir.path(), false).unwrap();
        assert_eq!(source, KeySource::File(path));
        assert_eq!(first.current_prefix(), again.current_prefix());
    }

    #[test]
    fn without_a_key_a_shared_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = SecretsSettings::default()
            .sealer(dir.path(), false)
            .unwrap_err();
        assert!(err.contains("XM_MASTER_KEY"), "{err}");
        assert!(!dir.path().join(MASTER_KEY_FILE).exists());
    }

    #[test]
    fn a_key_from_the_environment_wins_and_bad_keys_are_refused_without_echo() {
        let key = STANDARD.encode([7u8; 32]);
        let mut s = SecretsSettings::default();
        s.apply_env(&|k| (k == "XM_MASTER_KEY").then(|| key.clone()))
            .unwrap();
        s.validate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (sealer, source) = s.sealer(dir.path(), true).unwrap();
        assert_eq!(source, KeySource::Environment);
        let expected = MasterKey::from_bytes([7u8; 32]);
        assert_eq!(
            sealer.current_prefix().unwrap(),
            format!("xms1.{}.", expected.id())
        );
        assert!(!format!("{s:?}").contains(&key));
        s.master_key = Some(Secret::new("c2hvcnQ"));
        let err = s.validate().unwrap_err();
        assert!(
            err.contains("32 bytes") && !err.contains("c2hvcnQ"),
            "{err}"
        );
        s.master_key = Some(Secret::new(key));
        s.master_key_file = Some("/etc/key".into());
        assert!(s.validate().unwrap_err().contains("not both"));
    }
}
