//! Secret and SealedSecret documents: reading them from YAML or JSON streams the way
//! kubeseal does, and writing them the way kubeseal ≥ 0.32 does.

mod document;
mod node;
mod sealed;
mod secret;

pub use document::{Document, DocumentError, OutputFormat, split_documents};
pub use node::Node;
pub use sealed::{
    FieldError, KVSEAL_FINGERPRINT_ANNOTATION, SEALED_SECRET_API_VERSION, SEALED_SECRET_KIND,
    SealOptions, SealedSecret, SealedSecretSpec, SecretTemplate, UnsealError, UnsealedSecret,
    render_node,
};
pub use secret::{Secret, SecretError, SecretOptions};

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// The parts of Kubernetes `ObjectMeta` that travel with a Secret into its SealedSecret.
/// Server-set fields (uid, resourceVersion, creationTimestamp, managedFields, ...) are
/// read past and never written.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `metadata.name`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// `metadata.generateName`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub generate_name: String,
    /// `metadata.namespace`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespace: String,
    /// `metadata.uid`, only read so that unsealed Secrets can point back at their owner.
    #[serde(default, deserialize_with = "null_as_default")]
    pub uid: String,
    /// `metadata.labels`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    /// `metadata.finalizers`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub finalizers: Vec<String>,
}

impl ObjectMeta {
    /// Go's `ObjectMeta` JSON in field order, with empty fields omitted.
    pub fn to_node(&self) -> Node {
        let mut node = Node::map();
        let put_str = |node: &mut Node, key: &str, value: &str| {
            if !value.is_empty() {
                node.insert(key, Node::str(value));
            }
        };
        put_str(&mut node, "name", &self.name);
        put_str(&mut node, "generateName", &self.generate_name);
        put_str(&mut node, "namespace", &self.namespace);
        put_str(&mut node, "uid", &self.uid);
        if !self.labels.is_empty() {
            node.insert("labels", Node::string_map(&self.labels));
        }
        if !self.annotations.is_empty() {
            node.insert("annotations", Node::string_map(&self.annotations));
        }
        if !self.finalizers.is_empty() {
            node.insert(
                "finalizers",
                Node::Seq(self.finalizers.iter().map(|f| Node::str(f)).collect()),
            );
        }
        node
    }
}

/// Reads YAML `null` (or a missing field) as the type's default, as Go does for maps.
#[doc(hidden)]
pub fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
