//! `auth = { … }`: the credentials a client sends or a server demands, spelled the same way by the
//! scraper's endpoints and by every exporter.
//!
//! ```toml
//! auth = { username = "periscope", password_file = "/run/secrets/password" }   # HTTP basic
//! auth = { token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token" } # bearer
//! auth = { api_key_file = "/run/secrets/es-api-key" }                           # API key
//! ```
//!
//! Secrets come from files, so they never sit in a config that is shared, versioned or mounted
//! from a ConfigMap. Where users of the target expect to write one inline (Prometheus' remote
//! write and web config, Elasticsearch clients) `password`, `token` and `api_key` are accepted
//! too, and `periscope check` warns about each ([`inline_secret_keys`]). A user that takes
//! secrets from files only refuses them with [`AuthConfig::refuse_inline`].
//!
//! This module only parses, checks and reads files; each user builds its own requests.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The `auth` table: exactly one kind of credentials, each secret from a file or inline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The user name of HTTP basic auth (with `password_file` or `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the password of basic auth.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The password of basic auth, inline (warned about by `periscope check`).
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding a bearer token (`Authorization: Bearer <token>`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// A bearer token, inline (warned about by `periscope check`).
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding an API key (Elasticsearch: base64 of `id:api_key`, its `encoded` form).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// An API key, inline (warned about by `periscope check`).
    #[serde(default)]
    pub api_key: Option<String>,
}

/// The keys of [`AuthConfig`] that hold a secret inline.
pub const INLINE_SECRET_KEYS: [&str; 3] = ["password", "token", "api_key"];

/// Where a secret is: a file (read when needed, so a rotated secret can be picked up) or the
/// config itself.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A file holding the secret; a trailing newline is not part of it.
    File {
        /// The config key that named the file (`password_file`), for errors.
        key: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The secret itself.
    Inline(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::File { path, .. } => f.debug_tuple("File").field(path).finish(),
            Secret::Inline(_) => f.write_str("Inline(…)"),
        }
    }
}

impl Secret {
    /// The secret: the file's content without trailing newlines, or the inline text.
    pub fn read(&self) -> Result<String, AuthError> {
        match self {
            Secret::Inline(text) => Ok(text.clone()),
            Secret::File { key, path } => {
                let read_error = |source| AuthError::Read {
                    key,
                    path: path.clone(),
                    source,
                };
                let bytes = crate::small_file::read(path, crate::small_file::MAX_SECRET_BYTES)
                    .map_err(read_error)?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    read_error(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "stream did not contain valid UTF-8",
                    ))
                })?;
                let secret = text.trim_end_matches(['\r', '\n']);
                if secret.is_empty() {
                    return Err(AuthError::EmptyFile {
                        key,
                        path: path.clone(),
                    });
                }
                Ok(secret.to_owned())
            }
        }
    }
}

/// The credentials an [`AuthConfig`] describes, checked but not read yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// HTTP basic auth.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// An API key (`Authorization: ApiKey <key>` for Elasticsearch).
    ApiKey(Secret),
}

/// Credentials with their secrets read.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP basic auth.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// A bearer token.
    Bearer(String),
    /// An API key.
    ApiKey(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => {
                write!(f, "Basic {{ username: {username:?}, password: … }}")
            }
            Credentials::Bearer(_) => f.write_str("Bearer(…)"),
            Credentials::ApiKey(_) => f.write_str("ApiKey(…)"),
        }
    }
}

impl Auth {
    /// Reads the secrets.
    pub fn load(&self) -> Result<Credentials, AuthError> {
        Ok(match self {
            Auth::Basic { username, password } => Credentials::Basic {
                username: username.clone(),
                password: password.read()?,
            },
            Auth::Bearer(token) => Credentials::Bearer(token.read()?),
            Auth::ApiKey(key) => Credentials::ApiKey(key.read()?),
        })
    }

    /// The kind's name as the errors of a user that does not take it say it.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::Basic { .. } => "basic auth",
            Auth::Bearer(_) => "a bearer token",
            Auth::ApiKey(_) => "an API key",
        }
    }
}

/// What is wrong with an `auth` table or its files. [`AuthError::key`] names the key at fault,
/// relative to the table.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The table names no credentials at all.
    #[error(
        "give `username` with `password_file`, or `token_file`, or `api_key_file` \
         (or the secret inline: `password`, `token`, `api_key`)"
    )]
    Empty,
    /// Keys of two kinds of credentials.
    #[error("give one kind of credentials, not both `{0}` and `{1}`")]
    Mixed(&'static str, &'static str),
    /// A secret given both from a file and inline.
    #[error("give `{0}` or `{1}`, not both")]
    FileAndInline(&'static str, &'static str),
    /// A key that needs another.
    #[error("`{0}` needs `{1}`")]
    Needs(&'static str, &'static str),
    /// An inline secret that is empty.
    #[error("`{0}` is empty")]
    EmptyInline(&'static str),
    /// An inline secret where only files are taken.
    #[error("`{0}` inline is not taken here: put the secret in a file and give `{0}_file`")]
    InlineRefused(&'static str),
    /// A kind of credentials the user does not take.
    #[error("{kind} is not taken here (this takes {takes})")]
    Unsupported {
        /// The key that gave the kind.
        key: &'static str,
        /// The kind given.
        kind: &'static str,
        /// What the user takes.
        takes: &'static str,
    },
    /// A secret file that cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The key that named the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A secret file without a secret in it.
    #[error("{} is empty", path.display())]
    EmptyFile {
        /// The key that named the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
    },
}

impl AuthError {
    /// The key at fault, relative to the `auth` table (empty for the table itself).
    pub fn key(&self) -> &'static str {
        match self {
            AuthError::Empty => "",
            AuthError::Mixed(_, key)
            | AuthError::FileAndInline(_, key)
            | AuthError::Needs(key, _)
            | AuthError::EmptyInline(key)
            | AuthError::InlineRefused(key)
            | AuthError::Unsupported { key, .. }
            | AuthError::Read { key, .. }
            | AuthError::EmptyFile { key, .. } => key,
        }
    }
}

impl AuthConfig {
    /// The credentials the table describes, checked for shape (exactly one kind, each secret
    /// once); no file is read.
    pub fn auth(&self) -> Result<Auth, AuthError> {
        let basic =
            self.username.is_some() || self.password_file.is_some() || self.password.is_some();
        let kinds = [
            (basic, "username"),
            (
                self.token_file.is_some() || self.token.is_some(),
                "token_file",
            ),
            (
                self.api_key_file.is_some() || self.api_key.is_some(),
                "api_key_file",
            ),
        ];
        let mut given = kinds
            .iter()
            .filter(|(given, _)| *given)
            .map(|(_, key)| *key);
        match (given.next(), given.next()) {
            (None, _) => return Err(AuthError::Empty),
            (Some(first), Some(second)) => return Err(AuthError::Mixed(first, second)),
            (Some(_), None) => {}
        }
        if basic {
            let password = secret(
                ("password_file", self.password_file.as_deref()),
                ("password", self.password.as_deref()),
            )?
            .ok_or(AuthError::Needs("username", "password_file"))?;
            let given = match &password {
                Secret::File { key, .. } => *key,
                Secret::Inline(_) => "password",
            };
            let username = self
                .username
                .clone()
                .ok_or(AuthError::Needs(given, "username"))?;
            return Ok(Auth::Basic { username, password });
        }
        if let Some(token) = secret(
            ("token_file", self.token_file.as_deref()),
            ("token", self.token.as_deref()),
        )? {
            return Ok(Auth::Bearer(token));
        }
        secret(
            ("api_key_file", self.api_key_file.as_deref()),
            ("api_key", self.api_key.as_deref()),
        )?
        .map(Auth::ApiKey)
        .ok_or(AuthError::Empty)
    }

    /// The inline secrets given (`password`, `token`, `api_key`).
    pub fn inline_secrets(&self) -> Vec<&'static str> {
        [
            ("password", self.password.is_some()),
            ("token", self.token.is_some()),
            ("api_key", self.api_key.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, given)| given.then_some(key))
        .collect()
    }

    /// An error for the first inline secret, for users that take secrets from files only.
    pub fn refuse_inline(&self) -> Result<(), AuthError> {
        match self.inline_secrets().first() {
            Some(key) => Err(AuthError::InlineRefused(key)),
            None => Ok(()),
        }
    }
}

/// The secret given by the file key or the inline key of a pair; `None` when neither is.
fn secret(
    (file_key, file): (&'static str, Option<&Path>),
    (inline_key, inline): (&'static str, Option<&str>),
) -> Result<Option<Secret>, AuthError> {
    match (file, inline) {
        (Some(_), Some(_)) => Err(AuthError::FileAndInline(file_key, inline_key)),
        (Some(path), None) => Ok(Some(Secret::File {
            key: file_key,
            path: path.to_owned(),
        })),
        (None, Some("")) => Err(AuthError::EmptyInline(inline_key)),
        (None, Some(text)) => Ok(Some(Secret::Inline(text.to_owned()))),
        (None, None) => Ok(None),
    }
}

/// The dotted keys of every inline secret in a TOML table (the `config` table of an exporter, say)
/// that sits in an `auth` table at any depth: `auth.password`, `remote_write.auth.token`. The host
/// warns about them without knowing the plugin's config type, as every plugin spells credentials
/// with [`AuthConfig`].
pub fn inline_secret_keys(table: &toml::Table) -> Vec<String> {
    let mut found = Vec::new();
    collect_inline(table, "", &mut found);
    found
}

fn collect_inline(table: &toml::Table, prefix: &str, found: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let Some(inner) = value.as_table() else {
            continue;
        };
        if key == "auth" {
            found.extend(
                INLINE_SECRET_KEYS
                    .iter()
                    .filter(|secret| inner.contains_key(**secret))
                    .map(|secret| format!("{path}.{secret}")),
            );
        }
        collect_inline(inner, &path, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn auth(toml: &str) -> Result<Auth, AuthError> {
        parse::<AuthConfig>(toml).unwrap().auth()
    }

    #[test]
    fn each_kind_reads_from_a_file_or_inline() {
        assert_eq!(
            auth("username = \"u\"\npassword_file = \"p\"").unwrap(),
            Auth::Basic {
                username: "u".into(),
                password: Secret::File {
                    key: "password_file",
                    path: "p".into()
                }
            }
        );
        assert_eq!(
            auth("token = \"t\"").unwrap(),
            Auth::Bearer(Secret::Inline("t".into()))
        );
        assert_eq!(
            auth("api_key_file = \"k\"").unwrap(),
            Auth::ApiKey(Secret::File {
                key: "api_key_file",
                path: "k".into()
            })
        );
    }

    #[test]
    fn a_wrong_shape_names_the_key_at_fault() {
        let key = |toml: &str| auth(toml).unwrap_err().key();
        assert_eq!(key(""), "");
        assert_eq!(key("username = \"u\"\ntoken = \"t\""), "token_file");
        assert_eq!(key("token = \"t\"\ntoken_file = \"f\""), "token");
        assert_eq!(key("username = \"u\""), "username");
        assert_eq!(key("password = \"p\""), "password");
        assert_eq!(key("api_key = \"\""), "api_key");
        assert!(parse::<AuthConfig>("bearer_token = \"t\"").is_err());
    }

    #[test]
    fn secrets_are_read_without_their_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let config = AuthConfig {
            token_file: Some(file.clone()),
            ..AuthConfig::default()
        };
        let credentials = config.auth().unwrap().load().unwrap();
        assert_eq!(credentials, Credentials::Bearer("s3cret".into()));
        assert_eq!(format!("{credentials:?}"), "Bearer(…)");

        std::fs::write(&file, "\n").unwrap();
        let err = config.auth().unwrap().load().unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::EmptyFile {
                    key: "token_file",
                    ..
                }
            ),
            "{err}"
        );
        std::fs::remove_file(&file).unwrap();
        let err = config.auth().unwrap().load().unwrap_err();
        assert_eq!(err.key(), "token_file");
        assert!(err.to_string().contains("token"), "{err}");
    }

    #[test]
    fn inline_secrets_are_listed_and_can_be_refused() {
        let config: AuthConfig = parse("username = \"u\"\npassword = \"p\"").unwrap();
        assert_eq!(config.inline_secrets(), ["password"]);
        assert_eq!(config.refuse_inline().unwrap_err().key(), "password");
        let files: AuthConfig = parse("token_file = \"t\"").unwrap();
        assert!(files.refuse_inline().is_ok());
    }

    #[test]
    fn inline_secrets_are_found_in_auth_tables_at_any_depth() {
        let table: toml::Table = toml::from_str(
            "listen = \"x\"\nauth = { username = \"u\", password = \"p\" }\n\
             remote_write = { url = \"u\", auth = { token = \"t\" } }\n\
             other = { password = \"not an auth table\" }",
        )
        .unwrap();
        assert_eq!(
            inline_secret_keys(&table),
            ["auth.password", "remote_write.auth.token"]
        );
    }
}
