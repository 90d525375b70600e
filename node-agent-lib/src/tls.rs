//! TLS for both binaries' listeners (the agent's node API, the manager's
//! API): a certificate chain and its key from PEM files, served by rustls
//! with TLS 1.2 and 1.3 only and the ring provider's suites (all AEAD with
//! forward secrecy: AES-GCM and ChaCha20-Poly1305 over ECDHE), and reloaded
//! from disk while the listener runs.
//!
//! **Reload.** [`ReloadingCertificate::watch`] reads both files every
//! [`TlsSettings::reload_interval_secs`] and swaps the certificate in when
//! their content changed and parses into a matching pair; handshakes read
//! the current one through rustls' certificate resolver. Polling the
//! content rather than resolving per handshake keeps file reads off the
//! handshake path, reports a bad new certificate when it is deployed (not at
//! the next connection), and sees every way certificates are replaced
//! (rename over, a symlink flipped by certbot or a Kubernetes secret mount,
//! an edit in place) without relying on modification times. A new pair that
//! does not load — unreadable, not PEM, no certificate, or a key that is not
//! the certificate's — keeps the old one serving and is logged once as an
//! error (retried when the files change again).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use node_agent_lib::tls::ReloadingCertificate;
//! let certificate = ReloadingCertificate::load("cert.pem".as_ref(), "key.pem".as_ref())?;
//! let acceptor = certificate.acceptor(true);
//! let stop = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(certificate.watch(Duration::from_secs(10), stop.clone()));
//! # drop(acceptor); Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretSlice};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
pub use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

#[cfg(feature = "testing")]
pub mod testing;

/// How often the files are read for a new certificate, unless set.
pub const DEFAULT_RELOAD_INTERVAL_SECS: u64 = 10;

/// `[tls]` in both binaries' TOML files (`XNA_TLS_*` / `XM_TLS_*`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate chain, PEM, the server's certificate first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Seconds between two reads of the files for a new certificate; 0
    /// never reloads.
    #[serde(default = "default_reload_interval_secs")]
    pub reload_interval_secs: u64,
}

fn default_reload_interval_secs() -> u64 {
    DEFAULT_RELOAD_INTERVAL_SECS
}

impl TlsSettings {
    /// The variables [`TlsSettings::set`] reads, without their prefix.
    pub const KEYS: &[&str] = &["TLS_CERT", "TLS_KEY", "TLS_RELOAD_INTERVAL_SECS"];

    /// Applies one variable, named without its prefix (one of
    /// [`TlsSettings::KEYS`]) to `tls`, creating the section when absent.
    /// `Ok(false)`: not one of these.
    pub fn set(tls: &mut Option<Self>, key: &str, value: &str) -> Result<bool, String> {
        if !Self::KEYS.contains(&key) {
            return Ok(false);
        }
        let tls = tls.get_or_insert_with(|| Self {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            reload_interval_secs: DEFAULT_RELOAD_INTERVAL_SECS,
        });
        match key {
            "TLS_CERT" => tls.cert = value.into(),
            "TLS_KEY" => tls.key = value.into(),
            _ => {
                tls.reload_interval_secs = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{key}: cannot parse {value:?} as a number"))?;
            }
        }
        Ok(true)
    }

    /// Both files are named (a variable may have set only one of them).
    pub fn validate(&self) -> Result<(), String> {
        match (
            self.cert.as_os_str().is_empty(),
            self.key.as_os_str().is_empty(),
        ) {
            (false, false) => Ok(()),
            (true, _) => Err("tls.cert is required when TLS is configured".into()),
            (_, true) => Err("tls.key is required when TLS is configured".into()),
        }
    }

    /// `None` when the certificate is never reloaded.
    pub fn reload_interval(&self) -> Option<Duration> {
        (self.reload_interval_secs > 0).then(|| Duration::from_secs(self.reload_interval_secs))
    }
}

/// A TLS configuration from PEM files that are not watched (see
/// [`ReloadingCertificate`] for one that follows the files).
pub fn tls_acceptor(cert: &Path, key: &Path, http2: bool) -> io::Result<TlsAcceptor> {
    Ok(ReloadingCertificate::load(cert, key)?.acceptor(http2))
}

/// The certificate a listener serves, replaced when its files change.
pub struct ReloadingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// What the files held when last read (loaded or refused), so an
    /// unchanged bad pair is reported once.
    seen: Mutex<[u8; 32]>,
}

impl fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertificate")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCertificate {
    /// Reads the pair; an error names the file at fault, never the key's
    /// content.
    pub fn load(cert: &Path, key: &Path) -> io::Result<Arc<Self>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert_pem, key_pem, seen) = read_pair(cert, key)?;
        let certified = certified_key(&provider, cert, &cert_pem, key, &key_pem)?;
        Ok(Arc::new(Self {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            provider,
            current: RwLock::new(Arc::new(certified)),
            seen: Mutex::new(seen),
        }))
    }

    /// A rustls acceptor serving this certificate (whichever is current at
    /// each handshake), TLS 1.2 and 1.3 only, offering HTTP/1.1 and, when
    /// `http2`, HTTP/2 by ALPN.
    pub fn acceptor(self: &Arc<Self>, http2: bool) -> TlsAcceptor {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        TlsAcceptor::from(Arc::new(config))
    }

    /// Reads the files again. `Ok(true)`: a new certificate now serves;
    /// `Ok(false)`: the files hold what was last read (served, or refused
    /// and already reported); `Err`: the new content does not load and the
    /// old certificate keeps serving.
    pub fn reload(&self) -> io::Result<bool> {
        let (cert_pem, key_pem, fingerprint) = read_pair(&self.cert_path, &self.key_path)?;
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == fingerprint {
                return Ok(false);
            }
            *seen = fingerprint;
        }
        let certified = certified_key(
            &self.provider,
            &self.cert_path,
            &cert_pem,
            &self.key_path,
            &key_pem,
        )?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
        Ok(true)
    }

    /// Calls [`ReloadingCertificate::reload`] every `every` until `stop`,
    /// logging each new certificate (info) and each refused one (error).
    /// A file that cannot be read (e.g. mid-replacement) is retried at the
    /// next tick and reported only if it stays unreadable.
    pub async fn watch(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        let mut unreadable = 0u32;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let cert = self.cert_path.display();
            match self.reload() {
                Ok(true) => tracing::info!(%cert, "TLS certificate reloaded"),
                Ok(false) => {}
                Err(e) if e.kind() == io::ErrorKind::InvalidData => tracing::error!(
                    %cert, error = %e,
                    "the new TLS certificate or key does not load; still serving the previous one"
                ),
                Err(e) => {
                    unreadable += 1;
                    if unreadable == 2 {
                        tracing::error!(
                            %cert, error = %e,
                            "cannot read the TLS certificate or key; still serving the previous one"
                        );
                    }
                    continue;
                }
            }
            unreadable = 0;
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Both files' bytes (the key's wiped from memory when dropped) and a digest
/// of the two.
fn read_pair(cert: &Path, key: &Path) -> io::Result<(Vec<u8>, SecretSlice<u8>, [u8; 32])> {
    fn read(path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }
    let cert_pem = read(cert)?;
    let key_pem = SecretSlice::from(read(key)?);
    let mut digest = Sha256::new();
    digest.update((cert_pem.len() as u64).to_be_bytes());
    digest.update(&cert_pem);
    digest.update(key_pem.expose_secret());
    Ok((cert_pem, key_pem, digest.finalize().into()))
}

/// The chain and key parsed and checked to belong together.
fn certified_key(
    provider: &CryptoProvider,
    cert: &Path,
    cert_pem: &[u8],
    key: &Path,
    key_pem: &SecretSlice<u8>,
) -> io::Result<CertifiedKey> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |path: &Path, why: &dyn fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", path.display()),
        )
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, &e))?;
    if chain.is_empty() {
        return Err(invalid(cert, &"no PEM certificate in it"));
    }
    // Only the kind of failure: a parse error could quote the key's bytes.
    let private = PrivateKeyDer::from_pem_slice(key_pem.expose_secret())
        .map_err(|_| invalid(key, &"no PEM private key could be read from it"))?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            invalid(key, &"this key does not belong to the certificate")
        }
        other => invalid(cert, &format!("{other} (with the key {})", key.display())),
    })
}
