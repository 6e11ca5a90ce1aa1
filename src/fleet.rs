//! The fleet as configured: which clusters share which key set, and which public
//! certificate seals for each key set. Sealing needs only the committed certificates.

use std::fs;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::config::{Config, ConfigError};
use crate::keys::{Certificate, CertificateError};
use crate::store::{GenerationInfo, KeyStore, StoreError};

/// Why a sealing certificate could not be found or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Store problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No certificate has been exported for a key set.
    #[error(
        "no certificate for key set {keyset:?} in {dir}; run `kvseal keys export-certs` (or `kvseal keys generate --keyset {keyset}` first)"
    )]
    NoCertificate {
        /// Key set.
        keyset: String,
        /// Directory searched.
        dir: String,
    },
    /// A certificate file is unreadable or invalid.
    #[error("{path}: {cause}")]
    Certificate {
        /// The file.
        path: String,
        /// What is wrong with it.
        cause: CertificateError,
    },
    /// A file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        cause: std::io::Error,
    },
}

/// Clusters that share a key set, and the certificate that seals for all of them.
#[derive(Clone, Debug)]
pub struct SealingTarget {
    /// Key set name; `None` for a certificate given directly (`--cert`).
    pub keyset: Option<String>,
    /// The clusters, in the order asked for.
    pub clusters: Vec<String>,
    /// The sealing certificate.
    pub certificate: Certificate,
    /// Where the certificate was read from.
    pub certificate_path: PathBuf,
}

impl SealingTarget {
    /// A target from one certificate file, as kubeseal's `--cert`. Refuses an expired one.
    pub fn from_cert_file(path: &Path, now: OffsetDateTime) -> Result<Self, FleetError> {
        let certificate = read_certificate(path)?;
        refuse_expired(&certificate, path, now)?;
        Ok(Self {
            keyset: None,
            clusters: Vec::new(),
            certificate,
            certificate_path: path.to_owned(),
        })
    }

    /// A human description: `key set prod (clusters prod-eu, prod-us)`.
    pub fn describe(&self) -> String {
        match &self.keyset {
            Some(keyset) => format!("key set {keyset} (clusters {})", self.clusters.join(", ")),
            None => format!("certificate {}", self.certificate_path.display()),
        }
    }
}

fn refuse_expired(
    certificate: &Certificate,
    path: &Path,
    now: OffsetDateTime,
) -> Result<(), FleetError> {
    certificate
        .check_not_expired(now)
        .map_err(|cause| FleetError::Certificate {
            path: path.display().to_string(),
            cause,
        })
}

fn read_certificate(path: &Path) -> Result<Certificate, FleetError> {
    let pem = fs::read(path).map_err(|cause| FleetError::Io {
        path: path.display().to_string(),
        cause,
    })?;
    Certificate::from_pem(&pem).map_err(|cause| FleetError::Certificate {
        path: path.display().to_string(),
        cause,
    })
}

/// Groups clusters by key set, in the order first named, each with its sealing certificate.
pub fn sealing_targets(
    config: &Config,
    clusters: &[String],
    now: OffsetDateTime,
) -> Result<Vec<SealingTarget>, FleetError> {
    let mut targets: Vec<SealingTarget> = Vec::new();
    for name in clusters {
        let cluster = config.cluster(name)?;
        if let Some(target) = targets
            .iter_mut()
            .find(|t| t.keyset.as_deref() == Some(&cluster.keyset))
        {
            if !target.clusters.contains(name) {
                target.clusters.push(name.clone());
            }
            continue;
        }
        let (certificate, certificate_path) = sealing_certificate(config, &cluster.keyset, now)?;
        targets.push(SealingTarget {
            keyset: Some(cluster.keyset.clone()),
            clusters: vec![name.clone()],
            certificate,
            certificate_path,
        });
    }
    Ok(targets)
}

/// The certificate a key set seals with: of the exported certificates, the one with the
/// newest NotBefore, exactly the rule the controller uses to pick its sealing key.
pub fn sealing_certificate(
    config: &Config,
    keyset: &str,
    now: OffsetDateTime,
) -> Result<(Certificate, PathBuf), FleetError> {
    config.keyset(keyset)?;
    let dir = config.keyset_cert_dir(keyset);
    let no_cert = || FleetError::NoCertificate {
        keyset: keyset.to_owned(),
        dir: dir.display().to_string(),
    };
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_cert()),
        Err(cause) => {
            return Err(FleetError::Io {
                path: dir.display().to_string(),
                cause,
            });
        }
    };
    let mut best: Option<(Certificate, PathBuf)> = None;
    for entry in entries {
        let path = entry
            .map_err(|cause| FleetError::Io {
                path: dir.display().to_string(),
                cause,
            })?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("pem") {
            continue;
        }
        let certificate = read_certificate(&path)?;
        if best
            .as_ref()
            .is_none_or(|(b, _)| certificate.not_before() > b.not_before())
        {
            best = Some((certificate, path));
        }
    }
    let (certificate, path) = best.ok_or_else(no_cert)?;
    refuse_expired(&certificate, &path, now)?;
    Ok((certificate, path))
}

/// What [`export_certs`] did to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportChange {
    /// Written (new or changed).
    Written(PathBuf),
    /// Already up to date.
    Unchanged(PathBuf),
    /// Removed: its generation is no longer active or retained.
    Removed(PathBuf),
}

/// Writes `contents` to `path` (creating its directory), atomically, unless the file
/// already holds exactly that: generated files are rewritten only when they change.
pub fn write_if_changed(path: PathBuf, contents: &[u8]) -> std::io::Result<ExportChange> {
    if fs::read(&path).ok().as_deref() == Some(contents) {
        return Ok(ExportChange::Unchanged(path));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    crate::fsutil::write_atomic(&path, contents)?;
    Ok(ExportChange::Written(path))
}

/// Writes the certificates of every active and retained generation of every configured key
/// set into the certificate directory (`<cert_dir>/<keyset>/<generation>.pem`), and removes
/// the certificate of a generation the store lists as no longer published (staged, retired,
/// compromised). Nothing else is ever removed: a key set the store knows nothing about
/// (a wrong store path, say) keeps its certificates.
pub fn export_certs(
    config: &Config,
    store: &dyn KeyStore,
) -> Result<Vec<ExportChange>, FleetError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |cause| FleetError::Io { path, cause }
    };
    let mut changes = Vec::new();
    for keyset in config.keysets.keys() {
        let generations: Vec<GenerationInfo> = store.list(keyset)?;
        let dir = config.keyset_cert_dir(keyset);
        for generation in &generations {
            let path = dir.join(format!("{:04}.pem", generation.generation));
            if !generation.state.is_published() {
                if path.exists() {
                    fs::remove_file(&path).map_err(io(&path))?;
                    changes.push(ExportChange::Removed(path));
                }
                continue;
            }
            let pem = generation.require_certificate()?.to_pem();
            changes.push(write_if_changed(path.clone(), pem.as_bytes()).map_err(io(&path))?);
        }
    }
    Ok(changes)
}
