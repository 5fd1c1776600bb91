//! `tls = { … }`: the TLS files and checks of a client or a server, spelled the same way by the
//! scraper's endpoints and by every exporter.
//!
//! ```toml
//! tls = { ca_file = "ca.pem", cert_file = "client.pem", key_file = "client.key", server_name = "metrics.kubevirt" }
//! tls = { cert_file = "tls.crt", key_file = "tls.key" }   # a server's certificate
//! ```
//!
//! This module only parses, checks and reads the PEM files; each user builds its own TLS client
//! or server from them (plugin-api links no TLS library), and refuses, with
//! [`TlsConfig::refuse`], the keys it cannot honour.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The `tls` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates that sign the peer's certificate (instead of the built-in
    /// roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of this side's certificate chain, leaf first: a client's certificate (mutual TLS)
    /// or a server's. Needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any certificate from the peer. For tests and emergencies: it gives up what TLS is
    /// for.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// The name the peer's certificate must carry, when it is not the host of the URL (a target
    /// reached by IP whose certificate names its service).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// The PEM files of a [`TlsConfig`], read.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsPem {
    /// The CA certificates (`ca_file`).
    pub ca: Option<Vec<u8>>,
    /// The certificate chain and its private key (`cert_file`, `key_file`).
    pub identity: Option<Identity>,
}

/// A certificate chain and its private key, in PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The certificate chain.
    pub cert: Vec<u8>,
    /// The private key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem")
            .field("ca", &self.ca.as_ref().map(Vec::len))
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity(…)")
    }
}

/// What is wrong with a `tls` table or its files. [`TlsError::key`] names the key at fault,
/// relative to the table.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A key that needs another.
    #[error("`{0}` needs `{1}`")]
    Needs(&'static str, &'static str),
    /// Two keys that contradict each other.
    #[error("`{0}` and `{1}` exclude each other")]
    Excludes(&'static str, &'static str),
    /// A key the user cannot honour.
    #[error("`{key}` is not supported {here}")]
    Unsupported {
        /// The key.
        key: &'static str,
        /// Where (`"for a server"`, `"by the Elasticsearch exporter"`).
        here: &'static str,
    },
    /// An empty `server_name`.
    #[error("`server_name` is empty")]
    EmptyServerName,
    /// A file that cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The key that named the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file without a PEM block.
    #[error("{} holds no PEM block (-----BEGIN …)", path.display())]
    NotPem {
        /// The key that named the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
    },
}

impl TlsError {
    /// The key at fault, relative to the `tls` table.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Needs(key, _)
            | TlsError::Excludes(_, key)
            | TlsError::Unsupported { key, .. }
            | TlsError::Read { key, .. }
            | TlsError::NotPem { key, .. } => key,
            TlsError::EmptyServerName => "server_name",
        }
    }
}

impl TlsConfig {
    /// Checks the keys against each other: `cert_file` and `key_file` go together, `ca_file`
    /// and `insecure_skip_verify` exclude each other (a CA to verify with and no verification),
    /// and so do `server_name` and `insecure_skip_verify`. No file is read.
    pub fn check(&self) -> Result<(), TlsError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return Err(TlsError::Needs("cert_file", "key_file")),
            (None, Some(_)) => return Err(TlsError::Needs("key_file", "cert_file")),
            _ => {}
        }
        if self.insecure_skip_verify {
            if self.ca_file.is_some() {
                return Err(TlsError::Excludes("ca_file", "insecure_skip_verify"));
            }
            if self.server_name.is_some() {
                return Err(TlsError::Excludes("server_name", "insecure_skip_verify"));
            }
        }
        if self.server_name.as_deref() == Some("") {
            return Err(TlsError::EmptyServerName);
        }
        Ok(())
    }

    /// An error for the first of `keys` that is set, for a user that cannot honour them;
    /// `here` ends the message (`"for a server"`).
    pub fn refuse(&self, keys: &[&'static str], here: &'static str) -> Result<(), TlsError> {
        let set = |key: &str| match key {
            "ca_file" => self.ca_file.is_some(),
            "cert_file" => self.cert_file.is_some(),
            "key_file" => self.key_file.is_some(),
            "insecure_skip_verify" => self.insecure_skip_verify,
            "server_name" => self.server_name.is_some(),
            _ => false,
        };
        match keys.iter().find(|key| set(key)) {
            Some(key) => Err(TlsError::Unsupported { key, here }),
            None => Ok(()),
        }
    }

    /// Checks the table ([`TlsConfig::check`]) and reads its PEM files.
    pub fn load(&self) -> Result<TlsPem, TlsError> {
        self.check()?;
        let ca = self
            .ca_file
            .as_ref()
            .map(|path| read_pem("ca_file", path))
            .transpose()?;
        let identity = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some(Identity {
                cert: read_pem("cert_file", cert)?,
                key: read_pem("key_file", key)?,
            }),
            _ => None,
        };
        Ok(TlsPem { ca, identity })
    }
}

fn read_pem(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes =
        crate::small_file::read(path, crate::small_file::MAX_PEM_BYTES).map_err(|source| {
            TlsError::Read {
                key,
                path: path.to_path_buf(),
                source,
            }
        })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(TlsError::NotPem {
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn tls(toml: &str) -> TlsConfig {
        parse(toml).unwrap()
    }

    #[test]
    fn every_key_parses_and_unknown_ones_do_not() {
        let config = tls(
            "ca_file = \"ca.pem\"\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n\
                          server_name = \"metrics.kubevirt\"",
        );
        assert_eq!(config.server_name.as_deref(), Some("metrics.kubevirt"));
        assert!(config.check().is_ok());
        let err = parse::<TlsConfig>("cert = \"c.pem\"").unwrap_err();
        assert_eq!(err.key, "cert");
    }

    #[test]
    fn contradictions_name_the_key_at_fault() {
        let key = |toml: &str| tls(toml).check().unwrap_err().key();
        assert_eq!(key("cert_file = \"c\""), "cert_file");
        assert_eq!(key("key_file = \"k\""), "key_file");
        assert_eq!(
            key("ca_file = \"c\"\ninsecure_skip_verify = true"),
            "insecure_skip_verify"
        );
        assert_eq!(key("server_name = \"\""), "server_name");
    }

    #[test]
    fn a_user_refuses_what_it_cannot_honour() {
        let config = tls("cert_file = \"c\"\nkey_file = \"k\"\nserver_name = \"x\"");
        let err = config
            .refuse(&["ca_file", "server_name"], "for a server")
            .unwrap_err();
        assert_eq!(err.key(), "server_name");
        assert_eq!(
            err.to_string(),
            "`server_name` is not supported for a server"
        );
        assert!(config.refuse(&["ca_file"], "for a server").is_ok());
    }

    #[test]
    fn load_reads_the_pem_files_and_names_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
        let config = TlsConfig {
            ca_file: Some(dir.path().join("ca.pem")),
            ..TlsConfig::default()
        };
        assert_eq!(config.load().unwrap().ca.unwrap(), pem.as_bytes());

        let config = TlsConfig {
            cert_file: Some(dir.path().join("ca.pem")),
            key_file: Some(dir.path().join("key.pem")),
            ..TlsConfig::default()
        };
        let err = config.load().unwrap_err();
        assert_eq!(err.key(), "key_file");
        assert!(err.to_string().contains("key.pem"), "{err}");

        let config = TlsConfig {
            ca_file: Some(dir.path().join("missing.pem")),
            ..TlsConfig::default()
        };
        assert_eq!(config.load().unwrap_err().key(), "ca_file");
    }
}
