//! Secrets as input to sealing, read as kubeseal reads them.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::document::{Document, DocumentError, split_documents};
use super::{ObjectMeta, null_as_default};
use crate::format::{Scope, decode_base64};
use crate::secret::{SecretBytes, SecretString};

/// Why input Secrets could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// A document does not parse.
    #[error(transparent)]
    Parse(#[from] DocumentError),
    /// A document is some other kind of object.
    #[error(
        "document {index} (line {line}) is a {kind}, not a Secret: give kvseal a `kind: Secret`"
    )]
    NotASecret {
        /// Document index.
        index: usize,
        /// Document line.
        line: usize,
        /// The kind it declares.
        kind: String,
    },
    /// A `data` value is not base64.
    #[error(
        "Secret {name:?}: data.{key} is not valid base64 ({detail}); put plain text under stringData instead"
    )]
    DataNotBase64 {
        /// Secret name.
        name: String,
        /// The key under `data`.
        key: String,
        /// Decoder detail (never the value).
        detail: String,
    },
    /// The stream holds no Secret at all.
    #[error("no Secret found in the input; give a Secret manifest with -f FILE or on stdin")]
    NoSecrets,
    /// A Secret without data.
    #[error(
        "Secret {name:?} has no data or stringData, which is usually a mistake; pass --allow-empty-data to seal it anyway"
    )]
    EmptyData {
        /// Secret name.
        name: String,
    },
    /// A Secret without a name.
    #[error("document {index}: the Secret has no metadata.name; add one, or pass --name")]
    MissingName {
        /// Document index.
        index: usize,
    },
    /// `-n` disagrees with the Secret.
    #[error(
        "namespace mismatch: input Secret {name:?} is in namespace {secret:?} but {flag:?} was specified with -n"
    )]
    NamespaceMismatch {
        /// Secret name.
        name: String,
        /// The Secret's own namespace.
        secret: String,
        /// The namespace given on the command line.
        flag: String,
    },
    /// Neither the Secret nor the command line gives a namespace, and the scope needs one.
    #[error(
        "Secret {name:?} has no namespace, and {scope} scope needs one: add metadata.namespace or pass -n"
    )]
    MissingNamespace {
        /// Secret name.
        name: String,
        /// The scope in force.
        scope: Scope,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSecret {
    #[serde(default, deserialize_with = "null_as_default")]
    metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    data: BTreeMap<String, SecretString>,
    #[serde(default, deserialize_with = "null_as_default")]
    string_data: BTreeMap<String, SecretString>,
    #[serde(default, rename = "type")]
    secret_type: Option<String>,
    #[serde(default)]
    immutable: Option<bool>,
}

/// A Secret ready to seal: `data` decoded and `stringData` merged in.
pub struct Secret {
    /// Its metadata.
    pub metadata: ObjectMeta,
    /// Every value, `stringData` having won over `data` for keys in both.
    pub data: BTreeMap<String, SecretBytes>,
    /// `type`, kept as given.
    pub secret_type: Option<String>,
    /// `immutable`, kept as given.
    pub immutable: Option<bool>,
}

/// kubeseal's flags that change how Secrets are read.
#[derive(Clone, Debug, Default)]
pub struct SecretOptions {
    /// `--name`: overrides `metadata.name`.
    pub name: Option<String>,
    /// `-n`/`--namespace`: fills a missing namespace, and must agree with a present one.
    pub namespace: Option<String>,
    /// `--scope`, when given: replaces whatever scope annotations the Secret carries.
    pub scope: Option<Scope>,
    /// `--allow-empty-data`.
    pub allow_empty_data: bool,
}

impl Secret {
    /// Builds a Secret from literal values (`--from-literal`, `--from-file`).
    pub fn from_values(name: &str, namespace: &str, data: BTreeMap<String, SecretBytes>) -> Self {
        let metadata = ObjectMeta {
            name: name.into(),
            namespace: namespace.into(),
            ..Default::default()
        };
        Self {
            metadata,
            data,
            secret_type: None,
            immutable: None,
        }
    }

    /// Reads every Secret of a YAML or JSON stream and applies kubeseal's checks.
    pub fn read_stream(text: &str, options: &SecretOptions) -> Result<Vec<Secret>, SecretError> {
        let mut secrets = Vec::new();
        for doc in split_documents(text) {
            let secret = Self::from_document(&doc)?;
            secrets.push(secret.prepare(doc.index, options)?);
        }
        if secrets.is_empty() {
            return Err(SecretError::NoSecrets);
        }
        Ok(secrets)
    }

    fn from_document(doc: &Document<'_>) -> Result<Secret, SecretError> {
        let type_meta = doc.type_meta()?;
        if !type_meta.kind.is_empty() && type_meta.kind != "Secret" {
            return Err(SecretError::NotASecret {
                index: doc.index,
                line: doc.line,
                kind: type_meta.kind,
            });
        }
        let raw: RawSecret = doc.parse()?;
        let mut data = BTreeMap::new();
        for (key, encoded) in &raw.data {
            let bytes =
                decode_base64(encoded.expose()).map_err(|e| SecretError::DataNotBase64 {
                    name: raw.metadata.name.clone(),
                    key: key.clone(),
                    detail: match e {
                        crate::format::FormatError::Base64 { detail } => detail,
                        other => other.to_string(),
                    },
                })?;
            data.insert(key.clone(), SecretBytes::new(bytes));
        }
        for (key, text) in &raw.string_data {
            data.insert(key.clone(), text.to_bytes());
        }
        Ok(Secret {
            metadata: raw.metadata,
            data,
            secret_type: raw.secret_type,
            immutable: raw.immutable,
        })
    }

    /// kubeseal's checks and overrides, in kubeseal's order.
    pub fn prepare(mut self, index: usize, options: &SecretOptions) -> Result<Secret, SecretError> {
        if self.data.is_empty() && !options.allow_empty_data {
            return Err(SecretError::EmptyData {
                name: self.metadata.name.clone(),
            });
        }
        if let Some(name) = &options.name {
            self.metadata.name = name.clone();
        }
        if self.metadata.name.is_empty() {
            return Err(SecretError::MissingName { index });
        }
        if let Some(scope) = options.scope {
            scope.apply_to(&mut self.metadata.annotations);
        }
        let scope = self.scope();
        if scope != Scope::ClusterWide {
            if let Some(flag) = &options.namespace {
                if !self.metadata.namespace.is_empty() && &self.metadata.namespace != flag {
                    return Err(SecretError::NamespaceMismatch {
                        name: self.metadata.name.clone(),
                        secret: self.metadata.namespace.clone(),
                        flag: flag.clone(),
                    });
                }
                if self.metadata.namespace.is_empty() {
                    self.metadata.namespace = flag.clone();
                }
            }
            if self.metadata.namespace.is_empty() {
                return Err(SecretError::MissingNamespace {
                    name: self.metadata.name.clone(),
                    scope,
                });
            }
        }
        Ok(self)
    }

    /// The scope its annotations declare.
    pub fn scope(&self) -> Scope {
        Scope::from_annotations(&self.metadata.annotations)
    }
}
