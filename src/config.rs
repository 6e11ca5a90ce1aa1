//! `kvseal.toml`: the store, the certificate directory, the key sets and the clusters.
//!
//! Read in two stages: [`RawConfig`] is exactly the file (unknown fields are errors that
//! name the field and line), and [`Config`] is the validated form the rest of kvseal uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::scan::{Code, Severity};
use crate::store::{StoreError, StoreSpec};

/// The file name kvseal looks for.
pub const CONFIG_FILE: &str = "kvseal.toml";
const DEFAULT_CONTROLLER_NAMESPACE: &str = "kube-system";
const DEFAULT_CONTROLLER_NAME: &str = "sealed-secrets-controller";
const DEFAULT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const DEFAULT_RETAIN: u32 = 3;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No `kvseal.toml` between here and the root.
    #[error(
        "no {CONFIG_FILE} in {0} or any parent directory; create one (see docs/configuration.md) or pass --config"
    )]
    NotFound(String),
    /// The file cannot be read.
    #[error("cannot read {path}: {cause}")]
    Read {
        /// Path.
        path: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped fields.
    #[error("{path}: {message}")]
    Parse {
        /// Path.
        path: String,
        /// The parser's message, which names the line and field.
        message: String,
    },
    /// The file parses but does not make sense.
    #[error("{path}: {message}")]
    Invalid {
        /// Path.
        path: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// `store = "..."`, or a `[store]` table with the URL and options.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawStore {
    /// `dir:PATH` or `azure-keyvault:URL`.
    Url(String),
    /// `[store]` with `url` and, for Key Vault, the secret name `prefix`.
    Table(RawStoreTable),
}

/// The `[store]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStoreTable {
    /// `dir:PATH` or `azure-keyvault:URL`.
    pub url: String,
    /// Key Vault secret names are `<prefix>-<keyset>-<generation>` (default `kvseal`).
    #[serde(default)]
    pub prefix: Option<String>,
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `dir:PATH` (relative to the file) or `azure-keyvault:URL`, or a `[store]` table.
    pub store: RawStore,
    /// Where public certificates are exported and read for sealing.
    pub cert_dir: String,
    /// Path patterns (globs, relative to the repository root) that deploy to every cluster.
    #[serde(default)]
    pub shared_paths: Vec<String>,
    /// Key sets by name.
    #[serde(default)]
    pub keysets: BTreeMap<String, RawKeySet>,
    /// Clusters by name.
    #[serde(default)]
    pub clusters: BTreeMap<String, RawCluster>,
    /// Scanner settings.
    #[serde(default)]
    pub scan: RawScan,
    /// How `kvseal manifests` loads keys into clusters.
    #[serde(default)]
    pub manifests: RawManifests,
}

/// `[manifests]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifests {
    /// Where the per-cluster manifests go (relative to the file); when set, `keys rotate`
    /// and `keys promote` regenerate them.
    #[serde(default)]
    pub out_dir: Option<String>,
    /// The Azure tenant of the vault.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// The client ID of the workload identity that reads the vault, for every cluster
    /// that does not name its own.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The image of the key-sync Deployment, which only needs to keep running.
    #[serde(default)]
    pub key_sync_image: Option<String>,
    /// The vault's name, when the store URL does not start with it.
    #[serde(default)]
    pub keyvault_name: Option<String>,
}

/// The validated `[manifests]` table.
#[derive(Clone, Debug, Default)]
pub struct ManifestsConfig {
    /// Where `kvseal manifests` writes, resolved; `None` when not configured.
    pub out_dir: Option<PathBuf>,
    /// Azure tenant ID.
    pub tenant_id: Option<String>,
    /// Default workload identity client ID.
    pub client_id: Option<String>,
    /// Key-sync image.
    pub key_sync_image: String,
    /// Vault name override.
    pub keyvault_name: Option<String>,
}

/// The key-sync Deployment's default image: it only has to keep the CSI volume mounted.
pub const DEFAULT_KEY_SYNC_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// `[scan]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScan {
    /// Severity per finding code, e.g. `stale-key = "error"`.
    #[serde(default)]
    pub severity: BTreeMap<String, String>,
}

/// A key set as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeySet {
    /// How often the key set should rotate, e.g. `90d`.
    #[serde(default)]
    pub rotation_period: Option<String>,
    /// How many generations stay loaded in clusters.
    #[serde(default)]
    pub retain: Option<u32>,
    /// Certificate validity for new generations, e.g. `10y`.
    #[serde(default)]
    pub validity: Option<String>,
    /// Certificate common name; the controller's default is `sealed-secret`.
    #[serde(default)]
    pub common_name: Option<String>,
}

/// A cluster as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// The key set its controller loads.
    pub keyset: String,
    /// Namespace of the sealed-secrets controller.
    #[serde(default)]
    pub controller_namespace: Option<String>,
    /// Service name of the sealed-secrets controller.
    #[serde(default)]
    pub controller_name: Option<String>,
    /// kubeconfig context.
    #[serde(default)]
    pub context: Option<String>,
    /// Path patterns that deploy to this cluster.
    #[serde(default)]
    pub paths: Vec<String>,
    /// The client ID of this cluster's workload identity for Key Vault.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// A validated key set.
#[derive(Clone, Debug)]
pub struct KeySetConfig {
    /// Name.
    pub name: String,
    /// Rotation period, if set.
    pub rotation_period: Option<Duration>,
    /// Generations that stay loaded.
    pub retain: u32,
    /// Validity of new certificates.
    pub validity: Duration,
    /// Certificate common name.
    pub common_name: String,
}

/// A validated cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Name.
    pub name: String,
    /// Key set name (exists in [`Config::keysets`]).
    pub keyset: String,
    /// Controller namespace.
    pub controller_namespace: String,
    /// Controller service name.
    pub controller_name: String,
    /// kubeconfig context.
    pub context: Option<String>,
    /// Path patterns as written.
    pub paths: Vec<String>,
    /// Workload identity client ID for Key Vault (this cluster's, or the default).
    pub client_id: Option<String>,
    path_set: GlobSet,
}

impl ClusterConfig {
    /// Whether a repository-relative path matches this cluster's own patterns.
    pub fn matches(&self, relative_path: &Path) -> bool {
        self.path_set.is_match(relative_path)
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// The directory relative paths resolve against.
    pub base_dir: PathBuf,
    /// The store.
    pub store: StoreSpec,
    /// The public certificate directory, resolved.
    pub cert_dir: PathBuf,
    /// Key sets by name.
    pub keysets: BTreeMap<String, KeySetConfig>,
    /// Clusters by name.
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Shared path patterns as written.
    pub shared_paths: Vec<String>,
    /// Scanner severities that differ from the defaults.
    pub severity_overrides: BTreeMap<Code, Severity>,
    /// Cluster manifest settings.
    pub manifests: ManifestsConfig,
    shared_set: GlobSet,
}

impl Config {
    /// Finds `kvseal.toml` in `start` or the nearest parent and loads it.
    pub fn discover(start: &Path) -> Result<Config, ConfigError> {
        let mut dir = Some(start);
        while let Some(d) = dir {
            let candidate = d.join(CONFIG_FILE);
            if candidate.is_file() {
                return Config::load(&candidate);
            }
            dir = d.parent();
        }
        Err(ConfigError::NotFound(start.display().to_string()))
    }

    /// Loads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.display().to_string(),
            cause,
        })?;
        // Absolute once here, so that matching a file against the path patterns never has to
        // resolve the base directory again.
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = std::fs::canonicalize(if base_dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &base_dir
        })
        .unwrap_or(base_dir);
        Config::parse(&text, path, &base_dir)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str, path: &Path, base_dir: &Path) -> Result<Config, ConfigError> {
        let display = path.display().to_string();
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: display.clone(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        raw.validate(path, base_dir)
    }

    /// The cluster called `name`.
    pub fn cluster(&self, name: &str) -> Result<&ClusterConfig, ConfigError> {
        self.clusters.get(name).ok_or_else(|| {
            self.invalid(format!(
                "no cluster {name:?}; the configured clusters are: {}",
                self.clusters.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The key set called `name`.
    pub fn keyset(&self, name: &str) -> Result<&KeySetConfig, ConfigError> {
        self.keysets.get(name).ok_or_else(|| {
            self.invalid(format!(
                "no key set {name:?}; the configured key sets are: {}",
                self.keysets.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The clusters a repository-relative path deploys to: all of them for a shared
    /// path, otherwise those whose patterns match. Empty when nothing matches.
    pub fn clusters_for_path(&self, relative_path: &Path) -> Vec<&ClusterConfig> {
        if self.shared_set.is_match(relative_path) {
            return self.clusters.values().collect();
        }
        self.clusters
            .values()
            .filter(|c| c.matches(relative_path))
            .collect()
    }

    /// Directory of a key set's exported certificates.
    pub fn keyset_cert_dir(&self, keyset: &str) -> PathBuf {
        self.cert_dir.join(keyset)
    }

    fn invalid(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.display().to_string(),
            message,
        }
    }
}

impl RawConfig {
    /// Checks references, patterns and durations, and resolves paths against `base_dir`.
    pub fn validate(self, path: &Path, base_dir: &Path) -> Result<Config, ConfigError> {
        let display = path.display().to_string();
        let invalid = |message: String| ConfigError::Invalid {
            path: display.clone(),
            message,
        };

        let (url, prefix) = match &self.store {
            RawStore::Url(url) => (url.as_str(), None),
            RawStore::Table(table) => (table.url.as_str(), table.prefix.clone()),
        };
        let store = match url.parse::<StoreSpec>() {
            Ok(StoreSpec::Dir(dir)) if prefix.is_none() => StoreSpec::Dir(base_dir.join(dir)),
            Ok(StoreSpec::Dir(_)) => {
                return Err(invalid(
                    "store: prefix applies to azure-keyvault stores only".into(),
                ));
            }
            Ok(StoreSpec::AzureKeyVault {
                url,
                prefix: default,
            }) => StoreSpec::AzureKeyVault {
                url,
                prefix: prefix.unwrap_or(default),
            },
            Err(StoreError::UnknownSpec(s)) => {
                return Err(invalid(format!(
                    "store = {s:?}: use \"dir:PATH\" (relative to this file) or \"azure-keyvault:https://NAME.vault.azure.net/\""
                )));
            }
            Err(other) => return Err(invalid(other.to_string())),
        };

        let mut keysets = BTreeMap::new();
        for (name, raw) in self.keysets {
            check_name("key set", &name).map_err(&invalid)?;
            let duration =
                |field: &str, value: &Option<String>| -> Result<Option<Duration>, ConfigError> {
                    value
                        .as_deref()
                        .map(|v| {
                            parse_duration(v)
                                .map_err(|e| invalid(format!("keysets.{name}.{field}: {e}")))
                        })
                        .transpose()
                };
            let retain = raw.retain.unwrap_or(DEFAULT_RETAIN);
            if retain == 0 {
                return Err(invalid(format!("keysets.{name}.retain must be at least 1")));
            }
            keysets.insert(
                name.clone(),
                KeySetConfig {
                    rotation_period: duration("rotation_period", &raw.rotation_period)?,
                    validity: duration("validity", &raw.validity)?.unwrap_or(DEFAULT_VALIDITY),
                    retain,
                    common_name: raw
                        .common_name
                        .unwrap_or_else(|| "sealed-secret".to_owned()),
                    name,
                },
            );
        }

        let mut clusters = BTreeMap::new();
        for (name, raw) in self.clusters {
            check_name("cluster", &name).map_err(&invalid)?;
            if !keysets.contains_key(&raw.keyset) {
                return Err(invalid(format!(
                    "clusters.{name}.keyset = {:?}, but there is no [keysets.{}] section",
                    raw.keyset, raw.keyset
                )));
            }
            let path_set =
                glob_set(&raw.paths).map_err(|e| invalid(format!("clusters.{name}.paths: {e}")))?;
            for (field, value) in [
                ("controller_namespace", &raw.controller_namespace),
                ("controller_name", &raw.controller_name),
            ] {
                if let Some(value) = value
                    && !is_dns_label(value)
                {
                    return Err(invalid(format!(
                        "clusters.{name}.{field} = {value:?} is not a Kubernetes name: lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit"
                    )));
                }
            }
            clusters.insert(
                name.clone(),
                ClusterConfig {
                    keyset: raw.keyset,
                    controller_namespace: raw
                        .controller_namespace
                        .unwrap_or_else(|| DEFAULT_CONTROLLER_NAMESPACE.into()),
                    controller_name: raw
                        .controller_name
                        .unwrap_or_else(|| DEFAULT_CONTROLLER_NAME.into()),
                    context: raw.context,
                    paths: raw.paths,
                    client_id: raw.client_id.or_else(|| self.manifests.client_id.clone()),
                    path_set,
                    name,
                },
            );
        }
        let mut severity_overrides = BTreeMap::new();
        for (code, severity) in &self.scan.severity {
            let code: Code = code.parse().map_err(|e: String| {
                let all: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
                invalid(format!(
                    "[scan.severity]: {e}; the codes are {}",
                    all.join(", ")
                ))
            })?;
            let severity: Severity = severity
                .parse()
                .map_err(|e: String| invalid(format!("[scan.severity] {code}: {e}")))?;
            severity_overrides.insert(code, severity);
        }
        let shared_set =
            glob_set(&self.shared_paths).map_err(|e| invalid(format!("shared_paths: {e}")))?;

        Ok(Config {
            path: path.to_path_buf(),
            base_dir: base_dir.to_path_buf(),
            store,
            cert_dir: base_dir.join(self.cert_dir),
            keysets,
            clusters,
            shared_paths: self.shared_paths,
            severity_overrides,
            manifests: ManifestsConfig {
                out_dir: self.manifests.out_dir.map(|d| base_dir.join(d)),
                tenant_id: self.manifests.tenant_id,
                client_id: self.manifests.client_id,
                key_sync_image: self
                    .manifests
                    .key_sync_image
                    .unwrap_or_else(|| DEFAULT_KEY_SYNC_IMAGE.to_owned()),
                keyvault_name: self.manifests.keyvault_name,
            },
            shared_set,
        })
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} must be 1-63 lowercase letters, digits and inner dashes (it names files and Key Vault secrets)"
        ))
    }
}

fn glob_set(patterns: &[String]) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        // Patterns are repository-relative; "infrastructure/" means everything below it.
        let trimmed = pattern.trim_start_matches("./").trim_start_matches('/');
        let normalised = match trimmed.strip_suffix('/') {
            Some(dir) => format!("{dir}/**"),
            None => trimmed.to_owned(),
        };
        let glob = globset::GlobBuilder::new(&normalised)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("bad pattern {pattern:?}: {e}"))?;
        builder.add(glob);
    }
    builder.build().map_err(|e| e.to_string())
}

/// An RFC 1123 label, as Kubernetes requires of namespace and Service names.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Parses `90d`, `12h`, `30m`, `45s`, `2w` or `10y` (365 days).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90d, 12h or 10y"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => {
            return Err(format!(
                "{text:?} has unit {unit:?}; use s, m, h, d, w or y"
            ));
        }
    };
    if n == 0 {
        return Err(format!("{text:?} is zero; give a positive duration"));
    }
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
store = "dir:keys"
cert_dir = "certs"
shared_paths = ["infrastructure/**", "./platform/"]

[keysets.prod]
rotation_period = "90d"

[clusters.prod-eu]
keyset = "prod"
paths = ["apps/*/overlays/prod-eu/**"]
"#;

    #[test]
    fn paths_map_to_clusters() {
        let config = Config::parse(GOOD, Path::new("/r/kvseal.toml"), Path::new("/r")).unwrap();
        let names = |p: &str| -> Vec<String> {
            config
                .clusters_for_path(Path::new(p))
                .iter()
                .map(|c| c.name.clone())
                .collect()
        };
        assert_eq!(names("apps/x/overlays/prod-eu/s.yaml"), ["prod-eu"]);
        assert_eq!(names("infrastructure/a/b.yaml"), ["prod-eu"]);
        assert_eq!(
            names("platform/x.yaml"),
            ["prod-eu"],
            "a pattern ending in / covers the directory"
        );
        assert!(names("apps/x/overlays/dev/s.yaml").is_empty());
        assert_eq!(config.store, StoreSpec::Dir("/r/keys".into()));
    }

    #[test]
    fn unknown_field_names_field_and_line() {
        let text = GOOD.replace("keyset = \"prod\"", "keyset = \"prod\"\nkeyste = 1");
        let err = Config::parse(&text, Path::new("k.toml"), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains("keyste") && err.contains("line 11"), "{err}");
    }

    #[test]
    fn cluster_with_unknown_keyset_is_refused() {
        let text = GOOD.replace("keyset = \"prod\"", "keyset = \"nope\"");
        let err = Config::parse(&text, Path::new("k.toml"), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no [keysets.nope] section"), "{err}");
    }
}
