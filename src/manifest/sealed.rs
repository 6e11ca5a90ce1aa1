//! SealedSecrets: sealing a Secret into one, writing it as kubeseal does, and unsealing
//! it as the controller does.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::document::{Document, DocumentError, OutputFormat};
use super::secret::Secret;
use super::{Node, ObjectMeta, null_as_default};
use crate::format::{self, FormatError, Scope, SessionKey};
use crate::keys::{Fingerprint, PrivateKey, PublicKey};
use crate::secret::SecretBytes;

/// `apiVersion` of SealedSecrets.
pub const SEALED_SECRET_API_VERSION: &str = "bitnami.com/v1alpha1";
/// `kind` of SealedSecrets.
pub const SEALED_SECRET_KIND: &str = "SealedSecret";
/// kvseal's record of which public key sealed a SealedSecret (`sha256:<hex>` of its SPKI).
/// The controller ignores it; kvseal's scanner reads it when it has no private keys.
pub const KVSEAL_FINGERPRINT_ANNOTATION: &str = "kvseal.dev/sealing-key-fingerprint";

const LAST_APPLIED_ANNOTATIONS: [&str; 2] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "kubecfg.ksonnet.io/last-applied-configuration",
];
const SKIP_OWNER_REFERENCES_ANNOTATION: &str =
    "sealedsecrets.bitnami.com/skip-set-owner-references";

/// A SealedSecret document.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecret {
    /// Outer metadata: name, namespace, scope annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: SealedSecretSpec,
}

/// `spec` of a SealedSecret.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretSpec {
    /// What the controller puts around the decrypted data.
    #[serde(default, deserialize_with = "null_as_default")]
    pub template: SecretTemplate,
    /// One sealed value per Secret key, base64.
    #[serde(default, deserialize_with = "null_as_default")]
    pub encrypted_data: BTreeMap<String, String>,
    /// The deprecated format: the whole Secret as JSON, sealed as one value, base64.
    #[serde(default)]
    pub data: Option<String>,
}

/// `spec.template`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Metadata for the Secret the controller creates.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    /// Secret `type`.
    #[serde(default, rename = "type")]
    pub secret_type: Option<String>,
    /// Secret `immutable`.
    #[serde(default)]
    pub immutable: Option<bool>,
    /// Extra entries; Go templates over the decrypted values, or literals.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: BTreeMap<String, String>,
}

/// How to seal.
#[derive(Clone, Copy, Debug, Default)]
pub struct SealOptions {
    /// Record the sealing key's fingerprint in [`KVSEAL_FINGERPRINT_ANNOTATION`].
    pub record_fingerprint: bool,
}

/// One field that did not unseal.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The `encryptedData` key (or `spec.data` for the deprecated format).
    pub field: String,
    /// Why, without any secret bytes.
    pub reason: String,
}

/// Why a SealedSecret did not unseal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnsealError {
    /// Some fields failed; the others are not returned, as the controller returns nothing.
    #[error("{} of {} fields did not unseal:\n  {}", .errors.len(), .total, .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Fields {
        /// The failures.
        errors: Vec<FieldError>,
        /// How many fields there were.
        total: usize,
    },
    /// Both `encryptedData` and the deprecated `data` are set.
    #[error(
        "spec.encryptedData and the deprecated spec.data are both set; the controller refuses this, so remove one"
    )]
    BothFormats,
    /// The deprecated `data` decrypted but is not a Secret.
    #[error("the deprecated spec.data decrypted, but its content is not a Secret: {0}")]
    DeprecatedContent(String),
}

/// The Secret the controller would create.
pub struct UnsealedSecret {
    /// Metadata from the template, with the SealedSecret's name and namespace.
    pub metadata: ObjectMeta,
    /// `type`.
    pub secret_type: Option<String>,
    /// `immutable`.
    pub immutable: Option<bool>,
    /// Decrypted values.
    pub data: BTreeMap<String, SecretBytes>,
    /// Whether the controller would set an owner reference to the SealedSecret.
    pub owned: bool,
    /// Things the user should know, e.g. template entries that were not rendered.
    pub warnings: Vec<String>,
    /// Which key opened each field, by fingerprint.
    pub opened_with: BTreeMap<String, Fingerprint>,
}

impl SealedSecret {
    /// Reads a document, refusing anything that is not a SealedSecret.
    pub fn from_document(doc: &Document<'_>) -> Result<Self, DocumentError> {
        let type_meta = doc.type_meta()?;
        if type_meta.kind != SEALED_SECRET_KIND {
            let kind = if type_meta.kind.is_empty() {
                "document without a kind"
            } else {
                &type_meta.kind
            };
            return Err(doc.error(format!("this is a {kind}, not a SealedSecret")));
        }
        if type_meta.api_version != SEALED_SECRET_API_VERSION {
            return Err(doc.error(format!(
                "apiVersion is {:?}; SealedSecrets are {SEALED_SECRET_API_VERSION}",
                type_meta.api_version
            )));
        }
        let sealed: SealedSecret = doc.parse()?;
        if sealed.metadata.name.is_empty() {
            return Err(doc.error("the SealedSecret has no metadata.name"));
        }
        if !type_meta.has_spec {
            return Err(doc.error("the SealedSecret has no spec"));
        }
        Ok(sealed)
    }

    /// Seals `secret` for `key`, as kubeseal's `NewSealedSecret` does.
    pub fn seal(
        secret: &Secret,
        key: &PublicKey,
        options: SealOptions,
    ) -> Result<Self, FormatError> {
        let scope = secret.scope();
        let label = scope.label(&secret.metadata.namespace, &secret.metadata.name);

        let mut template_meta = secret.metadata.clone();
        template_meta.uid.clear();
        for annotation in LAST_APPLIED_ANNOTATIONS {
            template_meta.annotations.remove(annotation);
        }

        let mut encrypted_data = BTreeMap::new();
        for (field, value) in &secret.data {
            let sealed = format::seal(key, value.expose(), &label, &SessionKey::generate())?;
            encrypted_data.insert(field.clone(), format::encode_base64(&sealed));
        }

        let mut metadata = ObjectMeta {
            name: secret.metadata.name.clone(),
            namespace: secret.metadata.namespace.clone(),
            ..Default::default()
        };
        scope.apply_to(&mut metadata.annotations);
        if options.record_fingerprint {
            metadata.annotations.insert(
                KVSEAL_FINGERPRINT_ANNOTATION.into(),
                key.fingerprint().to_string(),
            );
        }

        Ok(Self {
            metadata,
            spec: SealedSecretSpec {
                template: SecretTemplate {
                    metadata: template_meta,
                    secret_type: secret.secret_type.clone(),
                    immutable: secret.immutable,
                    data: BTreeMap::new(),
                },
                encrypted_data,
                data: None,
            },
        })
    }

    /// Merges freshly sealed values into this SealedSecret (`--merge-into`): encrypted
    /// values, template labels, annotations and data, and the sealing-key record.
    pub fn merge(&mut self, update: SealedSecret) {
        self.spec.encrypted_data.extend(update.spec.encrypted_data);
        self.spec
            .template
            .metadata
            .labels
            .extend(update.spec.template.metadata.labels);
        self.spec
            .template
            .metadata
            .annotations
            .extend(update.spec.template.metadata.annotations);
        self.spec.template.data.extend(update.spec.template.data);
        if let Some(fp) = update
            .metadata
            .annotations
            .get(KVSEAL_FINGERPRINT_ANNOTATION)
        {
            self.metadata
                .annotations
                .insert(KVSEAL_FINGERPRINT_ANNOTATION.into(), fp.clone());
        }
    }

    /// The scope that its own metadata declares, as the controller reads it.
    pub fn scope(&self) -> Scope {
        Scope::from_annotations(&self.metadata.annotations)
    }

    /// The OAEP label the controller will unseal it with.
    pub fn label(&self) -> Vec<u8> {
        self.scope()
            .label(&self.metadata.namespace, &self.metadata.name)
    }

    /// The sealing key kvseal recorded, if any.
    pub fn recorded_fingerprint(&self) -> Option<Fingerprint> {
        self.metadata
            .annotations
            .get(KVSEAL_FINGERPRINT_ANNOTATION)
            .and_then(|v| Fingerprint::parse(v))
    }

    /// The document in Go's field order (kubeseal's JSON order).
    pub fn to_node(&self) -> Node {
        let mut template = Node::map();
        template.insert("metadata", self.spec.template.metadata.to_node());
        template.insert_some(
            "type",
            self.spec.template.secret_type.as_deref().map(Node::str),
        );
        template.insert_some("immutable", self.spec.template.immutable.map(Node::Bool));
        if !self.spec.template.data.is_empty() {
            template.insert("data", Node::string_map(&self.spec.template.data));
        }
        let mut spec = Node::map();
        spec.insert("template", template);
        spec.insert_some("data", self.spec.data.as_deref().map(Node::str));
        spec.insert("encryptedData", Node::string_map(&self.spec.encrypted_data));

        let mut root = Node::map();
        root.insert("kind", Node::str(SEALED_SECRET_KIND));
        root.insert("apiVersion", Node::str(SEALED_SECRET_API_VERSION));
        root.insert("metadata", self.metadata.to_node());
        root.insert("spec", spec);
        root
    }

    /// Renders as kubeseal does: YAML starting with `---`, or indented JSON.
    pub fn render(&self, format: OutputFormat) -> String {
        render_node(&self.to_node(), format).expose().to_owned()
    }

    /// Unseals as the controller does, trying every key for every field.
    pub fn unseal(&self, keys: &[PrivateKey]) -> Result<UnsealedSecret, UnsealError> {
        let label = self.label();
        let mut metadata;
        let mut secret_type = self.spec.template.secret_type.clone();
        let mut immutable = self.spec.template.immutable;
        let mut data = BTreeMap::new();
        let mut opened_with = BTreeMap::new();
        let mut warnings = Vec::new();

        if let Some(whole) = &self.spec.data {
            if !self.spec.encrypted_data.is_empty() {
                return Err(UnsealError::BothFormats);
            }
            let (plaintext, fingerprint) =
                self.open_field(keys, whole, &label)
                    .map_err(|reason| UnsealError::Fields {
                        errors: vec![FieldError {
                            field: "spec.data".into(),
                            reason,
                        }],
                        total: 1,
                    })?;
            opened_with.insert("spec.data".to_owned(), fingerprint);
            let text = std::str::from_utf8(plaintext.expose())
                .map_err(|_| UnsealError::DeprecatedContent("not UTF-8 JSON".into()))?;
            let inner = super::document::split_documents(text);
            let doc = inner
                .first()
                .ok_or_else(|| UnsealError::DeprecatedContent("empty".into()))?;
            let secret = Secret::read_stream(
                doc.text,
                &super::SecretOptions {
                    allow_empty_data: true,
                    ..Default::default()
                },
            )
            .map_err(|e| UnsealError::DeprecatedContent(e.to_string()))?
            .pop()
            .ok_or_else(|| UnsealError::DeprecatedContent("no Secret".into()))?;
            metadata = secret.metadata;
            secret_type = secret.secret_type;
            immutable = secret.immutable;
            data = secret.data;
        } else {
            metadata = self.spec.template.metadata.clone();
            let mut errors = Vec::new();
            for (field, value) in &self.spec.encrypted_data {
                match self.open_field(keys, value, &label) {
                    Ok((plaintext, fingerprint)) => {
                        data.insert(field.clone(), plaintext);
                        opened_with.insert(field.clone(), fingerprint);
                    }
                    Err(reason) => errors.push(FieldError {
                        field: field.clone(),
                        reason,
                    }),
                }
            }
            if !errors.is_empty() {
                return Err(UnsealError::Fields {
                    errors,
                    total: self.spec.encrypted_data.len(),
                });
            }
            for (field, value) in &self.spec.template.data {
                if value.contains("{{") {
                    warnings.push(format!(
                        "spec.template.data.{field} is a Go template that the controller renders; kvseal does not render templates, so it is left out"
                    ));
                } else {
                    data.insert(field.clone(), SecretBytes::copy_from(value.as_bytes()));
                }
            }
        }
        metadata.name = self.metadata.name.clone();
        metadata.namespace = self.metadata.namespace.clone();
        metadata.uid = self.metadata.uid.clone();
        let owned = self
            .spec
            .template
            .metadata
            .annotations
            .get(SKIP_OWNER_REFERENCES_ANNOTATION)
            .map(String::as_str)
            != Some("true");
        Ok(UnsealedSecret {
            metadata,
            secret_type,
            immutable,
            data,
            owned,
            warnings,
            opened_with,
        })
    }

    /// Opens one base64 value with the first key that takes it. On failure, explains
    /// whether the value is damaged, sealed with an unknown key, or sealed for another scope.
    fn open_field(
        &self,
        keys: &[PrivateKey],
        value: &str,
        label: &[u8],
    ) -> Result<(SecretBytes, Fingerprint), String> {
        let bytes = format::decode_base64(value).map_err(|e| e.to_string())?;
        let envelope = format::Envelope::parse(&bytes).map_err(|e| e.to_string())?;
        let mut last = None;
        for key in keys {
            match format::unwrap_session_key(key, envelope.rsa_ciphertext, label) {
                Ok(session) => {
                    let plaintext =
                        format::open_with_session_key(&session, envelope.aes_ciphertext)
                            .map_err(|e| e.to_string())?;
                    return Ok((plaintext, key.fingerprint()));
                }
                Err(e) => last = Some(e),
            }
        }
        if keys.is_empty() {
            return Err("no private keys were given".into());
        }
        // Nothing opened it under its own label. Does another scope's label work?
        let declared = self.scope();
        for scope in Scope::ALL.into_iter().filter(|s| *s != declared) {
            let other = scope.label(&self.metadata.namespace, &self.metadata.name);
            if keys
                .iter()
                .any(|k| format::unwrap_session_key(k, envelope.rsa_ciphertext, &other).is_ok())
            {
                return Err(format!(
                    "sealed for {scope} scope (OAEP label {:?}) but the SealedSecret declares {declared}; set the scope annotation to match, or seal it again",
                    String::from_utf8_lossy(&other)
                ));
            }
        }
        Err(match last {
            Some(FormatError::KeySizeMismatch { .. })
            | Some(FormatError::WrongKeyOrLabel)
            | None => format!(
                "no key could decrypt it ({} key(s) tried, label {:?}): it was sealed with another key, or for another name or namespace",
                keys.len(),
                String::from_utf8_lossy(label)
            ),
            Some(other) => other.to_string(),
        })
    }
}

impl UnsealedSecret {
    /// The Secret as the controller would write it, in Go's field order.
    pub fn to_node(&self) -> Node {
        let mut metadata = Node::map();
        let m = &self.metadata;
        for (key, value) in [
            ("name", &m.name),
            ("generateName", &m.generate_name),
            ("namespace", &m.namespace),
        ] {
            if !value.is_empty() {
                metadata.insert(key, Node::str(value));
            }
        }
        if !m.labels.is_empty() {
            metadata.insert("labels", Node::string_map(&m.labels));
        }
        if !m.annotations.is_empty() {
            metadata.insert("annotations", Node::string_map(&m.annotations));
        }
        if self.owned {
            let mut owner = Node::map();
            owner.insert("apiVersion", Node::str(SEALED_SECRET_API_VERSION));
            owner.insert("kind", Node::str(SEALED_SECRET_KIND));
            owner.insert("name", Node::str(&m.name));
            owner.insert("uid", Node::str(&m.uid));
            owner.insert("controller", Node::Bool(true));
            metadata.insert("ownerReferences", Node::Seq(vec![owner]));
        }
        if !m.finalizers.is_empty() {
            metadata.insert(
                "finalizers",
                Node::Seq(m.finalizers.iter().map(|f| Node::str(f)).collect()),
            );
        }
        let mut root = Node::map();
        root.insert("kind", Node::str("Secret"));
        root.insert("apiVersion", Node::str("v1"));
        root.insert("metadata", metadata);
        root.insert_some("immutable", self.immutable.map(Node::Bool));
        if !self.data.is_empty() {
            let data = self
                .data
                .iter()
                .map(|(k, v)| (k.clone(), Node::Str(format::encode_base64(v.expose()))))
                .collect();
            root.insert("data", Node::Map(data));
        }
        root.insert_some("type", self.secret_type.as_deref().map(Node::str));
        root
    }
}

/// Renders a document as kubeseal does (YAML starts with `---`; JSON ends with a newline).
pub fn render_node(node: &Node, format: OutputFormat) -> crate::secret::SecretString {
    match format {
        OutputFormat::Json => node.to_json(),
        OutputFormat::Yaml => {
            let yaml = node.to_yaml();
            let mut out = String::with_capacity(yaml.expose().len() + 4); // exact: never regrows
            out.push_str("---\n");
            out.push_str(yaml.expose());
            crate::secret::SecretString::new(out)
        }
    }
}
