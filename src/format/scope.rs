//! Sealing scopes and the OAEP labels they imply.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Annotation that makes a SealedSecret cluster-wide when its value is exactly `"true"`.
pub const CLUSTER_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/cluster-wide";
/// Annotation that makes a SealedSecret namespace-wide when its value is exactly `"true"`.
pub const NAMESPACE_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/namespace-wide";

/// Where a sealed value may be unsealed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Only as a Secret of the same name in the same namespace. Label `"<namespace>/<name>"`.
    #[default]
    Strict,
    /// As any Secret in the same namespace. Label `"<namespace>"`.
    NamespaceWide,
    /// Anywhere in the cluster. Empty label.
    ClusterWide,
}

impl Scope {
    /// Every scope, in the controller's order.
    pub const ALL: [Scope; 3] = [Scope::Strict, Scope::NamespaceWide, Scope::ClusterWide];

    /// The OAEP label for a value sealed in this scope (the controller's `EncryptionLabel`).
    pub fn label(self, namespace: &str, name: &str) -> Vec<u8> {
        match self {
            Scope::Strict => format!("{namespace}/{name}").into_bytes(),
            Scope::NamespaceWide => namespace.as_bytes().to_vec(),
            Scope::ClusterWide => Vec::new(),
        }
    }

    /// The scope that annotations declare, read exactly as the controller reads them:
    /// only the string `"true"` counts, and cluster-wide wins over namespace-wide.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Scope {
        let is_true = |key: &str| annotations.get(key).is_some_and(|v| v == "true");
        if is_true(CLUSTER_WIDE_ANNOTATION) {
            Scope::ClusterWide
        } else if is_true(NAMESPACE_WIDE_ANNOTATION) {
            Scope::NamespaceWide
        } else {
            Scope::Strict
        }
    }

    /// Rewrites `annotations` so that they declare this scope and nothing else
    /// (the controller's `UpdateScopeAnnotations`).
    pub fn apply_to(self, annotations: &mut BTreeMap<String, String>) {
        annotations.remove(CLUSTER_WIDE_ANNOTATION);
        annotations.remove(NAMESPACE_WIDE_ANNOTATION);
        match self {
            Scope::Strict => {}
            Scope::NamespaceWide => {
                annotations.insert(NAMESPACE_WIDE_ANNOTATION.into(), "true".into());
            }
            Scope::ClusterWide => {
                annotations.insert(CLUSTER_WIDE_ANNOTATION.into(), "true".into());
            }
        }
    }

    /// The name kubeseal's `--scope` flag uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Strict => "strict",
            Scope::NamespaceWide => "namespace-wide",
            Scope::ClusterWide => "cluster-wide",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--scope` value that is not one of the three scopes.
#[derive(Debug, thiserror::Error)]
#[error("unknown scope {0:?}: use strict, namespace-wide or cluster-wide")]
pub struct ParseScopeError(String);

impl FromStr for Scope {
    type Err = ParseScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(Scope::Strict),
            "namespace-wide" => Ok(Scope::NamespaceWide),
            "cluster-wide" => Ok(Scope::ClusterWide),
            other => Err(ParseScopeError(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_the_controller() {
        assert_eq!(Scope::Strict.label("ns", "name"), b"ns/name");
        assert_eq!(Scope::NamespaceWide.label("ns", "name"), b"ns");
        assert_eq!(Scope::ClusterWide.label("ns", "name"), b"");
    }

    #[test]
    fn only_exact_true_counts_and_cluster_wide_wins() {
        let mut a = BTreeMap::new();
        a.insert(NAMESPACE_WIDE_ANNOTATION.to_string(), "True".to_string());
        assert_eq!(Scope::from_annotations(&a), Scope::Strict);
        a.insert(NAMESPACE_WIDE_ANNOTATION.to_string(), "true".to_string());
        assert_eq!(Scope::from_annotations(&a), Scope::NamespaceWide);
        a.insert(CLUSTER_WIDE_ANNOTATION.to_string(), "true".to_string());
        assert_eq!(Scope::from_annotations(&a), Scope::ClusterWide);
        Scope::Strict.apply_to(&mut a);
        assert!(a.is_empty());
    }
}
