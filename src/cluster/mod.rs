//! Live clusters: what a controller has loaded and serves, set against the key set.
//!
//! [`live`] reads and writes through the Kubernetes API. Everything here is pure: it takes
//! what was read ([`Observation`]) and the store's listing, and says what is wrong
//! ([`ClusterStatus`]), whether a staged generation may be promoted ([`promotion_gate`]),
//! and what `kvseal cluster sync` would change ([`plan_sync`]).

pub mod live;

use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use time::OffsetDateTime;

use crate::cluster_manifests::{KEY_LABEL, KEY_LABEL_ACTIVE, key_secret_name, loaded_generations};
use crate::keys::Certificate;
use crate::keys::Fingerprint;
use crate::scan::Severity;
use crate::store::{GenerationInfo, GenerationState};

/// The label value kvseal gives a retired generation's Secret: the controller loads only
/// `active` ones, so it drops the key at its next start, and the Secret stays as a backup.
pub const KEY_LABEL_RETIRED: &str = "retired";

/// The annotation a rollout restart sets on the pod template (as `kubectl rollout restart`).
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Where a cluster is reached and where its controller runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The cluster's name in `kvseal.toml`.
    pub cluster: String,
    /// The kubeconfig context used.
    pub context: String,
    /// The controller's namespace.
    pub namespace: String,
    /// The controller's Service and Deployment name.
    pub controller: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cluster {} (context {})", self.cluster, self.context)
    }
}

/// Why talking to a cluster failed. Every message names the cluster, the context and, for
/// a refused request, the Kubernetes verb and resource, then says what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct ClusterError(Box<ClusterErrorKind>);

/// The kinds of [`ClusterError`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterErrorKind {
    /// The kubeconfig cannot be read or lacks the context.
    #[error("cluster {cluster}: {message}")]
    Kubeconfig {
        /// The cluster's name in `kvseal.toml`.
        cluster: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A request failed or was refused.
    #[error("cluster {cluster} (context {context}): cannot {verb} {resource}: {cause}; {help}")]
    Request {
        /// The cluster's name in `kvseal.toml`.
        cluster: String,
        /// The kubeconfig context.
        context: String,
        /// The Kubernetes RBAC verb: get, list, patch or create.
        verb: &'static str,
        /// The resource, with its name and namespace.
        resource: String,
        /// The HTTP status, when the API server answered.
        status: Option<u16>,
        /// What went wrong.
        cause: String,
        /// What to do.
        help: String,
    },
    /// The API server answered with something that is not what the API defines.
    #[error("cluster {cluster} (context {context}): {resource}: {message}")]
    Response {
        /// The cluster's name in `kvseal.toml`.
        cluster: String,
        /// The kubeconfig context.
        context: String,
        /// What was read.
        resource: String,
        /// What is wrong with it.
        message: String,
    },
}

impl From<ClusterErrorKind> for ClusterError {
    fn from(kind: ClusterErrorKind) -> Self {
        ClusterError(Box::new(kind))
    }
}

impl ClusterError {
    /// What went wrong.
    pub fn kind(&self) -> &ClusterErrorKind {
        &self.0
    }

    /// Whether the API server did not answer at all (unreachable, or timed out).
    pub fn is_unreachable(&self) -> bool {
        matches!(*self.0, ClusterErrorKind::Request { status: None, .. })
    }

    /// The HTTP status the API server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match *self.0 {
            ClusterErrorKind::Request { status, .. } => status,
            _ => None,
        }
    }
}

/// A Secret in the controller's namespace that carries the key label.
#[derive(Clone, Debug)]
pub struct KeySecret {
    /// The Secret's name.
    pub name: String,
    /// The key label's value; the controller loads only `active`.
    pub label: String,
    /// When the Secret was last written: its creation, or a later apply, update or relabel
    /// (the latest of its managed fields' times).
    pub changed: Option<OffsetDateTime>,
    /// Its `tls.crt`, or why that does not parse.
    pub certificate: Result<Certificate, String>,
}

impl KeySecret {
    /// Whether the controller loads this Secret when it starts.
    pub fn is_active(&self) -> bool {
        self.label == KEY_LABEL_ACTIVE
    }

    /// The public key's fingerprint, when the certificate parses.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.certificate
            .as_ref()
            .ok()
            .map(|c| c.public_key().fingerprint())
    }
}

/// Whether the controller mints keys of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRenewal {
    /// `--key-renew-period` is zero: kvseal's keys are the only ones.
    Off,
    /// The controller adds a key of its own every period (the flag's value, or its default).
    On(String),
}

/// What the controller's Deployment says about the running controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controller {
    /// The latest moment the running pods are known to have started by: the Deployment's
    /// creation, its last rollout restart, or its last completed rollout. The controller
    /// reads its key Secrets only when it starts.
    pub started: Option<OffsetDateTime>,
    /// A rollout is under way, so some pods may still run with the old set of keys.
    pub rolling_out: bool,
    /// Key renewal, from the container args.
    pub key_renewal: KeyRenewal,
}

impl Controller {
    /// Reads the facts from a Deployment, as the API server returns it.
    pub fn from_deployment(deployment: &Deployment) -> Self {
        let meta = &deployment.metadata;
        let spec = deployment.spec.as_ref();
        let template = spec.map(|s| &s.template);
        // Only lower bounds count: every running pod started after the Deployment was
        // created, and after the last rollout restart once that rollout is done. Condition
        // times are not used: a readiness flap moves them without restarting anything.
        let created = meta.creation_timestamp.as_ref().map(|t| from_jiff(&t.0));
        let restarted = template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(RESTARTED_AT))
            .and_then(|v| {
                OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()
            })
            .and_then(|t| t.replace_nanosecond(0).ok());
        let started = created.max(restarted);
        let status = deployment.status.as_ref();
        let rolling_out = status.is_some_and(|s| {
            let stale = match (s.observed_generation, meta.generation) {
                (Some(observed), Some(wanted)) => observed < wanted,
                _ => false,
            };
            let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
            let behind = s.updated_replicas.is_some_and(|u| u < replicas);
            stale || behind || s.unavailable_replicas.unwrap_or(0) > 0
        });
        let containers = template
            .and_then(|t| t.spec.as_ref())
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        let tokens: Vec<&str> = containers
            .iter()
            .flat_map(|c| {
                c.command
                    .iter()
                    .flatten()
                    .chain(c.args.iter().flatten())
                    .map(String::as_str)
            })
            .collect();
        let environment: Vec<(&str, &str)> = containers
            .iter()
            .flat_map(|c| c.env.iter().flatten())
            .filter_map(|e| Some((e.name.as_str(), e.value.as_deref()?)))
            .collect();
        Controller {
            started,
            rolling_out,
            key_renewal: key_renewal(&tokens, &environment),
        }
    }
}

/// The controller's `--key-renew-period` (alias `--rotate-period`) and `--key-cutoff-time`,
/// as its flag parsing reads them: one or two dashes, the value after `=` or in the next
/// argument, and the `SEALED_SECRETS_…` environment variable for a flag not given.
fn key_renewal(tokens: &[&str], environment: &[(&str, &str)]) -> KeyRenewal {
    let flag = |names: &[&str]| {
        let mut value = None;
        for (i, token) in tokens.iter().enumerate() {
            let bare = token.trim_start_matches('-');
            if bare.len() == token.len() {
                continue;
            }
            for name in names {
                if bare == *name {
                    value = tokens.get(i + 1).map(|v| v.to_string());
                } else if let Some(v) = bare.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                    value = Some(v.to_owned());
                }
            }
        }
        value.or_else(|| {
            names.iter().find_map(|name| {
                let variable = format!("SEALED_SECRETS_{}", name.to_uppercase().replace('-', "_"));
                environment
                    .iter()
                    .rev()
                    .find(|(n, _)| *n == variable)
                    .map(|(_, v)| v.to_string())
            })
        })
    };
    if let Some(cutoff) = flag(&["key-cutoff-time"]).filter(|v| !v.trim().is_empty()) {
        return KeyRenewal::On(format!(
            "--key-cutoff-time {cutoff}: a new key at every start while the newest is older"
        ));
    }
    match flag(&["key-renew-period", "rotate-period"]) {
        Some(v) if is_zero_duration(&v) => KeyRenewal::Off,
        Some(v) => KeyRenewal::On(format!("every {v}")),
        None => KeyRenewal::On("every 720h, the controller's default".to_owned()),
    }
}

/// A Go duration that is zero: "0", "0s", "0h0m0s".
fn is_zero_duration(value: &str) -> bool {
    let value = value.trim().trim_matches('"');
    value.chars().any(|c| c.is_ascii_digit())
        && value.chars().filter(char::is_ascii_digit).all(|c| c == '0')
}

/// Converts the API's timestamps, in whole seconds as the API server keeps them, so that a
/// Secret written in the second of a restart counts as read by it.
pub fn from_jiff(t: &k8s_openapi::jiff::Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.as_second()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A SealedSecret whose `Synced` condition is False.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unsynced {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The condition's message, e.g. "no key could decrypt secret (…)".
    pub message: String,
}

/// Everything read from one cluster; each part may have failed on its own.
#[derive(Debug)]
pub struct Observation {
    /// The controller's key Secrets.
    pub keys: Result<Vec<KeySecret>, ClusterError>,
    /// The certificate the controller serves for sealing.
    pub served: Result<Certificate, ClusterError>,
    /// The controller's Deployment.
    pub controller: Result<Controller, ClusterError>,
    /// SealedSecrets that failed to sync.
    pub unsynced: Result<Vec<Unsynced>, ClusterError>,
}

/// Whether the running controller holds a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// An `active` Secret holds it and the controller started after the Secret appeared
    /// (or serves it).
    Loaded,
    /// An `active` Secret holds it, but it appeared after the controller started (or a
    /// rollout is under way): the controller loads it at its next start.
    AwaitingRestart,
    /// An `active` Secret holds it, but the Deployment does not say when the controller
    /// started, so whether it was read cannot be told.
    Unconfirmed,
    /// No `active` Secret holds it.
    Missing,
}

impl Presence {
    /// Lowercase name for tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Loaded => "loaded",
            Presence::AwaitingRestart => "awaiting-restart",
            Presence::Unconfirmed => "unconfirmed",
            Presence::Missing => "missing",
        }
    }
}

/// One generation of the key set, as the cluster holds it.
#[derive(Clone, Debug)]
pub struct GenerationRow {
    /// The generation number.
    pub generation: u32,
    /// Its state in the store.
    pub state: GenerationState,
    /// Whether the running controller holds it.
    pub presence: Presence,
    /// The Secrets that hold it (any label).
    pub secrets: Vec<String>,
}

/// An `active` key Secret whose key is not any generation of the key set.
#[derive(Clone, Debug)]
pub struct ForeignKey {
    /// The Secret's name.
    pub secret: String,
    /// The key's fingerprint, when its certificate parses.
    pub fingerprint: Option<Fingerprint>,
    /// When its Secret was last written.
    pub changed: Option<OffsetDateTime>,
}

/// Which key the controller seals with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serving {
    /// A generation of the key set.
    Generation(u32, GenerationState),
    /// A key the store does not know; the Secret that holds it, if one does.
    Foreign(Fingerprint, Option<String>),
}

macro_rules! cluster_codes {
    ($($variant:ident = $name:literal, $severity:ident, $description:literal;)*) => {
        /// What a cluster finding is about. The names are stable.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum ClusterCode {
            $(#[doc = $description] $variant,)*
        }

        impl ClusterCode {
            /// Every code, in documentation order.
            pub const ALL: &'static [ClusterCode] = &[$(ClusterCode::$variant,)*];

            /// The stable kebab-case name.
            pub fn as_str(self) -> &'static str {
                match self { $(ClusterCode::$variant => $name,)* }
            }

            /// How serious it is.
            pub fn severity(self) -> Severity {
                match self { $(ClusterCode::$variant => Severity::$severity,)* }
            }

            /// One line on what the code means.
            pub fn description(self) -> &'static str {
                match self { $(ClusterCode::$variant => $description,)* }
            }
        }
    };
}

cluster_codes! {
    KeyMissing = "key-missing", Error, "An active, retained or compromised generation is not loaded: what it sealed cannot be decrypted in this cluster.";
    StagedKeyMissing = "staged-key-missing", Warning, "The staged generation is not loaded yet; `kvseal keys promote` waits for it.";
    RestartNeeded = "restart-needed", Warning, "A key Secret appeared after the controller started; the controller reads keys only at start.";
    WrongSealingKey = "wrong-sealing-key", Error, "The controller seals with another key than the key set's active generation.";
    ForeignKey = "foreign-key", Warning, "The controller loads a key the store does not hold, e.g. one it minted itself.";
    RetiredKeyLoaded = "retired-key-loaded", Warning, "A retired generation is still labelled active.";
    KeyRenewalOn = "key-renewal-on", Error, "The controller's key renewal is on: it will mint its own key and seal with it.";
    NotSynced = "sealedsecret-not-synced", Error, "A SealedSecret's Synced condition is False.";
    StartUnknown = "controller-start-unknown", Note, "The Deployment does not say when the controller started, so loaded keys cannot be confirmed.";
    CannotRead = "cannot-read", Error, "Part of the cluster could not be read (unreachable, RBAC, or missing controller).";
}

impl fmt::Display for ClusterCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong with a cluster.
#[derive(Clone, Debug)]
pub struct ClusterFinding {
    /// What it is.
    pub code: ClusterCode,
    /// How serious.
    pub severity: Severity,
    /// What it is about: `generation 3`, a Secret, or `namespace/name`.
    pub subject: String,
    /// What is wrong. Never contains a secret.
    pub message: String,
    /// What to do.
    pub help: String,
}

/// One cluster's state, set against its key set.
#[derive(Debug)]
pub struct ClusterStatus {
    /// Where it is.
    pub target: Target,
    /// The key set it uses.
    pub keyset: String,
    /// The key set's generations (not pending), oldest first.
    pub generations: Vec<GenerationRow>,
    /// Keys the store does not know.
    pub foreign: Vec<ForeignKey>,
    /// Which key the controller seals with, when it could be read.
    pub serving: Option<Serving>,
    /// The controller's facts, when the Deployment could be read.
    pub controller: Option<Controller>,
    /// SealedSecrets that failed to sync.
    pub unsynced: Vec<Unsynced>,
    /// What is wrong.
    pub findings: Vec<ClusterFinding>,
    /// Reads that failed; the status is incomplete when any did.
    pub errors: Vec<ClusterError>,
}

impl ClusterStatus {
    /// The presence of one generation.
    pub fn presence(&self, generation: u32) -> Option<Presence> {
        self.generations
            .iter()
            .find(|g| g.generation == generation)
            .map(|g| g.presence)
    }
}

/// Sets what was read against the key set's generations.
pub fn assess(
    target: Target,
    keyset: &str,
    generations: &[GenerationInfo],
    observation: Observation,
) -> ClusterStatus {
    let mut findings = Vec::new();
    let mut errors = Vec::new();
    let mut finding = |code: ClusterCode, subject: String, message: String, help: String| {
        findings.push(ClusterFinding {
            code,
            severity: code.severity(),
            subject,
            message,
            help,
        })
    };
    let keys = observation.keys.map_err(|e| errors.push(e)).ok();
    let controller = observation.controller.map_err(|e| errors.push(e)).ok();
    let served = observation.served.map_err(|e| errors.push(e)).ok();
    let unsynced = observation
        .unsynced
        .map_err(|e| errors.push(e))
        .ok()
        .unwrap_or_default();
    // An unreachable API server fails every read the same way; say it once.
    errors.dedup_by(|a, b| a.to_string() == b.to_string());
    let cluster = &target.cluster;

    let served_fingerprint = served.as_ref().map(|c| c.public_key().fingerprint());
    let serving = served_fingerprint.as_ref().map(|fp| {
        match generations.iter().find(|g| &g.fingerprint == fp) {
            Some(g) => Serving::Generation(g.generation, g.state),
            None => Serving::Foreign(
                *fp,
                keys.iter()
                    .flatten()
                    .find(|k| k.is_active() && k.fingerprint().as_ref() == Some(fp))
                    .map(|k| k.name.clone()),
            ),
        }
    });

    let started = controller.as_ref().and_then(|c| c.started);
    let rolling_out = controller.as_ref().is_some_and(|c| c.rolling_out);
    let mut rows = Vec::new();
    let mut foreign = Vec::new();
    if let Some(keys) = &keys {
        let mut known: Vec<&GenerationInfo> = generations
            .iter()
            .filter(|g| g.state != GenerationState::Pending)
            .collect();
        known.sort_by_key(|g| g.generation);
        for generation in known {
            let holders: Vec<&KeySecret> = keys
                .iter()
                .filter(|k| k.fingerprint().as_ref() == Some(&generation.fingerprint))
                .collect();
            let active: Vec<&&KeySecret> = holders.iter().filter(|k| k.is_active()).collect();
            let presence = if active.is_empty() {
                Presence::Missing
            } else if served_fingerprint.as_ref() == Some(&generation.fingerprint) {
                Presence::Loaded
            } else if started.is_none() {
                // No Deployment, or one that does not say when its pods started.
                Presence::Unconfirmed
            } else if !rolling_out
                && active
                    .iter()
                    .any(|k| k.changed.zip(started).is_some_and(|(c, s)| c <= s))
            {
                Presence::Loaded
            } else {
                Presence::AwaitingRestart
            };
            rows.push(GenerationRow {
                generation: generation.generation,
                state: generation.state,
                presence,
                secrets: holders.iter().map(|k| k.name.clone()).collect(),
            });
        }
        for key in keys.iter().filter(|k| k.is_active()) {
            let fingerprint = key.fingerprint();
            let in_store = fingerprint
                .as_ref()
                .is_some_and(|fp| generations.iter().any(|g| &g.fingerprint == fp));
            if !in_store {
                foreign.push(ForeignKey {
                    secret: key.name.clone(),
                    fingerprint,
                    changed: key.changed,
                });
            }
        }
    }

    for row in &rows {
        let subject = format!("generation {}", row.generation);
        let sync_help = format!(
            "run `kvseal cluster sync --cluster {cluster}` (or check the CSI key sync from `kvseal manifests`), then restart the controller"
        );
        match (row.state, row.presence) {
            (GenerationState::Retired, Presence::Missing) => {}
            (GenerationState::Retired, _) => finding(
                ClusterCode::RetiredKeyLoaded,
                subject,
                format!(
                    "retired generation {} is still labelled {KEY_LABEL}={KEY_LABEL_ACTIVE} (Secret {})",
                    row.generation,
                    row.secrets.join(", ")
                ),
                format!(
                    "run `kvseal cluster sync --cluster {cluster} --restart`: it relabels the Secret {KEY_LABEL_RETIRED} and keeps it"
                ),
            ),
            (GenerationState::Staged, Presence::Missing) => finding(
                ClusterCode::StagedKeyMissing,
                subject,
                format!(
                    "staged generation {} is not loaded: no Secret labelled {KEY_LABEL}={KEY_LABEL_ACTIVE} holds it, so `kvseal keys promote` waits",
                    row.generation
                ),
                sync_help,
            ),
            (_, Presence::Missing) => finding(
                ClusterCode::KeyMissing,
                subject,
                format!(
                    "{} generation {} is not loaded: no Secret labelled {KEY_LABEL}={KEY_LABEL_ACTIVE} holds it, so what it sealed cannot be decrypted here",
                    row.state, row.generation
                ),
                sync_help,
            ),
            (_, Presence::AwaitingRestart) => finding(
                ClusterCode::RestartNeeded,
                subject,
                format!(
                    "{} generation {} is in Secret {}, which {}; the controller reads keys only when it starts",
                    row.state,
                    row.generation,
                    row.secrets.join(", "),
                    if rolling_out {
                        "a rollout under way has not reached every pod yet"
                    } else {
                        "appeared after the controller started"
                    }
                ),
                format!(
                    "restart the controller: `kvseal cluster sync --cluster {cluster} --restart` or `kubectl -n {} rollout restart deployment {}`",
                    target.namespace, target.controller
                ),
            ),
            _ => {}
        }
    }
    if rows.iter().any(|r| r.presence == Presence::Unconfirmed) && controller.is_some() {
        finding(
            ClusterCode::StartUnknown,
            format!("deployment {}", target.controller),
            "the Deployment has no creation time, restart annotation or completed rollout, so whether the controller read its key Secrets cannot be confirmed".to_owned(),
            format!(
                "restart the controller once (`kvseal cluster sync --cluster {cluster} --restart`); its restart time is then known"
            ),
        );
    }
    for key in &foreign {
        finding(
            ClusterCode::ForeignKey,
            format!("secret {}", key.secret),
            format!(
                "Secret {} holds a key that is no generation of key set {keyset}{}",
                key.secret,
                key.fingerprint
                    .as_ref()
                    .map(|f| format!(" ({})", f.short()))
                    .unwrap_or_else(|| " (its tls.crt does not parse)".to_owned())
            ),
            format!(
                "if the controller minted it, switch key renewal off; back it up and bring it in with `kvseal keys import`, or reseal what it sealed and relabel it `{KEY_LABEL}={KEY_LABEL_RETIRED}`"
            ),
        );
    }
    let active = generations
        .iter()
        .find(|g| g.state == GenerationState::Active);
    match (&serving, active) {
        (Some(Serving::Generation(n, _)), Some(a)) if n == &a.generation => {}
        (Some(serving), active) => {
            let what = match serving {
                Serving::Generation(n, state) => format!("{state} generation {n}"),
                Serving::Foreign(fp, Some(secret)) => {
                    format!("a foreign key ({}) from Secret {secret}", fp.short())
                }
                Serving::Foreign(fp, None) => {
                    format!("a key ({}) that no key Secret holds", fp.short())
                }
            };
            let wanted = active
                .map(|a| format!("active generation {}", a.generation))
                .unwrap_or_else(|| "an active generation, but the key set has none".to_owned());
            finding(
                ClusterCode::WrongSealingKey,
                format!("service {}", target.controller),
                format!("the controller seals with {what}, not {wanted}"),
                format!(
                    "load the key set's generations (`kvseal cluster sync --cluster {cluster} --restart`) and make sure no other key has a later certificate NotBefore; anything sealed with the served certificate will not open in the other clusters"
                ),
            );
        }
        (None, _) => {}
    }
    if let Some(Controller {
        key_renewal: KeyRenewal::On(period),
        ..
    }) = &controller
    {
        finding(
            ClusterCode::KeyRenewalOn,
            format!("deployment {}", target.controller),
            format!(
                "key renewal is on ({period}): the controller will mint a key of its own and seal with it"
            ),
            "set the Helm value keyrenewperiod: \"0\" (or the container arg --key-renew-period=0); `kvseal manifests` writes that values patch".to_owned(),
        );
    }
    for item in &unsynced {
        finding(
            ClusterCode::NotSynced,
            format!("{}/{}", item.namespace, item.name),
            format!(
                "SealedSecret {}/{} is not synced: {}",
                item.namespace, item.name, item.message
            ),
            "run `kvseal scan` on the repository to see which key it was sealed with, then reseal it or load that key".to_owned(),
        );
    }
    for error in &errors {
        finding(
            ClusterCode::CannotRead,
            target.cluster.clone(),
            error.to_string(),
            "see docs/clusters.md for the kubeconfig and the RBAC role this command needs"
                .to_owned(),
        );
    }
    ClusterStatus {
        target,
        keyset: keyset.to_owned(),
        generations: rows,
        foreign,
        serving,
        controller,
        unsynced,
        findings,
        errors,
    }
}

impl ClusterStatus {
    /// The status of a cluster that could not be reached at all.
    pub fn unreadable(target: Target, keyset: &str, error: ClusterError) -> Self {
        ClusterStatus {
            findings: vec![ClusterFinding {
                code: ClusterCode::CannotRead,
                severity: ClusterCode::CannotRead.severity(),
                subject: target.cluster.clone(),
                message: error.to_string(),
                help:
                    "see docs/clusters.md for the kubeconfig and the RBAC role this command needs"
                        .to_owned(),
            }],
            target,
            keyset: keyset.to_owned(),
            generations: Vec::new(),
            foreign: Vec::new(),
            serving: None,
            controller: None,
            unsynced: Vec::new(),
            errors: vec![error],
        }
    }
}

/// Why the controller needs a restart to read its key Secrets, if it does: one was
/// written after it started, a rollout is under way, or when it started is unknown.
pub fn restart_reason(keys: &[KeySecret], controller: &Controller) -> Option<String> {
    let active: Vec<&KeySecret> = keys.iter().filter(|k| k.is_active()).collect();
    if active.is_empty() {
        return None;
    }
    let Some(started) = controller.started else {
        return Some("the Deployment does not say when the controller started".to_owned());
    };
    if controller.rolling_out {
        return Some("a rollout is under way".to_owned());
    }
    active
        .iter()
        .find(|k| k.changed.is_none_or(|c| c > started))
        .map(|k| {
            format!(
                "key Secret {} was written after the controller started",
                k.name
            )
        })
}

/// Why a cluster holds up a promotion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lagging {
    /// The cluster's name.
    pub cluster: String,
    /// Why, for a person, starting with the cluster's name.
    pub message: String,
}

/// The clusters that have not loaded `generation`: promotion must wait for all of them.
pub fn promotion_gate(statuses: &[ClusterStatus], generation: u32) -> Vec<Lagging> {
    let mut lagging = Vec::new();
    for status in statuses {
        let cluster = &status.target.cluster;
        let message = match status.presence(generation) {
            Some(Presence::Loaded) => continue,
            Some(Presence::AwaitingRestart) => format!(
                "cluster {cluster}: its key Secret appeared after the controller started; restart the controller"
            ),
            Some(Presence::Unconfirmed) => format!(
                "cluster {cluster}: the Deployment does not say when the controller started; restart it once"
            ),
            Some(Presence::Missing) => format!(
                "cluster {cluster}: no Secret labelled {KEY_LABEL}={KEY_LABEL_ACTIVE} holds generation {generation}"
            ),
            // Errors name the cluster and its context themselves.
            None => match status.errors.first() {
                Some(error) => error.to_string(),
                None => format!("cluster {cluster}: generation {generation} is not in the key set"),
            },
        };
        lagging.push(Lagging {
            cluster: cluster.clone(),
            message,
        });
    }
    lagging
}

/// One change `kvseal cluster sync` makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncChange {
    /// Create or update (server-side apply) the Secret holding a generation.
    Apply {
        /// The generation.
        generation: u32,
        /// The Secret's name.
        secret: String,
        /// Whether the Secret exists already.
        exists: bool,
    },
    /// Relabel a retired generation's Secret so that the controller drops it.
    Relabel {
        /// The generation.
        generation: u32,
        /// The Secret's name.
        secret: String,
    },
}

/// What `kvseal cluster sync` would do to one cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// The changes, in order.
    pub changes: Vec<SyncChange>,
    /// Generations already held as wanted, with the Secret that holds each.
    pub unchanged: Vec<(u32, String)>,
    /// Active Secrets with keys the store does not know; sync leaves them alone.
    pub foreign: Vec<String>,
}

/// Plans a sync: one `active` Secret per loaded generation (staged, active, retained,
/// compromised) carrying the store's current certificate, and retired generations'
/// Secrets relabelled. Nothing is ever deleted.
pub fn plan_sync(keyset: &str, generations: &[GenerationInfo], observed: &[KeySecret]) -> SyncPlan {
    let mut plan = SyncPlan::default();
    for generation in loaded_generations(generations) {
        let name = key_secret_name(keyset, generation.generation);
        let wanted = generation.certificate.as_ref().map(|c| c.der());
        let holds_current = |k: &KeySecret| {
            k.is_active()
                && k.certificate.as_ref().ok().map(|c| c.der()) == wanted
                && wanted.is_some()
        };
        let own = observed.iter().find(|k| k.name == name);
        if let Some(own) = own.filter(|k| holds_current(k)) {
            plan.unchanged
                .push((generation.generation, own.name.clone()));
        } else if let Some(other) = observed
            .iter()
            .find(|k| k.name != name && holds_current(k))
            .filter(|_| own.is_none())
        {
            plan.unchanged
                .push((generation.generation, other.name.clone()));
        } else {
            plan.changes.push(SyncChange::Apply {
                generation: generation.generation,
                secret: name,
                exists: own.is_some(),
            });
        }
    }
    for generation in generations
        .iter()
        .filter(|g| g.state == GenerationState::Retired)
    {
        for key in observed
            .iter()
            .filter(|k| k.is_active() && k.fingerprint().as_ref() == Some(&generation.fingerprint))
        {
            plan.changes.push(SyncChange::Relabel {
                generation: generation.generation,
                secret: key.name.clone(),
            });
        }
    }
    for key in observed.iter().filter(|k| k.is_active()) {
        let known = key
            .fingerprint()
            .is_some_and(|fp| generations.iter().any(|g| g.fingerprint == fp));
        if !known {
            plan.foreign.push(key.name.clone());
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_renewal_reads_the_flag_as_go_does() {
        let cases: &[(&[&str], KeyRenewal)] = &[
            (&["--key-renew-period", "0"], KeyRenewal::Off),
            (&["--key-renew-period=0h0m0s"], KeyRenewal::Off),
            (&["-rotate-period=0"], KeyRenewal::Off),
            (
                &["--key-renew-period", "720h"],
                KeyRenewal::On("every 720h".into()),
            ),
            (
                &["--key-prefix", "sealed-secrets-key"],
                KeyRenewal::On("every 720h, the controller's default".into()),
            ),
        ];
        for (tokens, expected) in cases {
            assert_eq!(&key_renewal(tokens, &[]), expected, "{tokens:?}");
        }
        let off = [("SEALED_SECRETS_KEY_RENEW_PERIOD", "0")];
        assert_eq!(key_renewal(&["controller"], &off), KeyRenewal::Off);
        assert_eq!(
            key_renewal(&["--key-renew-period", "24h"], &off),
            KeyRenewal::On("every 24h".into()),
            "a flag on the command line wins over the environment"
        );
        assert!(matches!(
            key_renewal(
                &[
                    "--key-renew-period=0",
                    "--key-cutoff-time",
                    "2026-01-01T00:00:00Z"
                ],
                &[]
            ),
            KeyRenewal::On(_)
        ));
    }
}
