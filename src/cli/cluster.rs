//! `kvseal cluster status|sync`: what live clusters hold, and loading the key set into them.
//! Exit status of `status`, as `scan`: 0 nothing at or above --fail-on, 1 findings at or
//! above it, 2 a cluster could not be read.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use kvseal::cluster::live::{ContextChoice, Limits, LiveCluster};
use kvseal::cluster::{self, ClusterStatus, KeyRenewal, Serving, SyncChange, SyncPlan};
use kvseal::config::{ClusterConfig, Config};
use kvseal::scan::Severity;
use kvseal::store::{GenerationInfo, KeyStore};
use serde_json::json;
use time::OffsetDateTime;

use super::io::confirm;
use super::{ConfigSource, FailOn};

/// Exit status when a cluster could not be read.
const EXIT_COULD_NOT_RUN: u8 = 2;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Which keys each controller holds and seals with, whether key renewal is off, and
    /// which SealedSecrets fail to sync.
    Status(StatusArgs),
    /// Load the key set into clusters without the CSI driver: one labelled kubernetes.io/tls
    /// Secret per generation, applied server-side; retired ones are relabelled, never deleted.
    Sync(SyncArgs),
}

/// `--cluster NAME | --all`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["cluster", "all"])))]
pub struct ClusterSelection {
    /// One cluster, as named in kvseal.toml (repeat or separate with commas for several).
    #[arg(long, value_delimiter = ',')]
    cluster: Vec<String>,
    /// Every configured cluster.
    #[arg(long)]
    all: bool,
}

impl ClusterSelection {
    /// The selected clusters, in the order named (all: configuration order).
    pub fn clusters<'c>(&self, config: &'c Config) -> anyhow::Result<Vec<&'c ClusterConfig>> {
        if self.all {
            return Ok(config.clusters.values().collect());
        }
        self.cluster
            .iter()
            .map(|name| Ok(config.cluster(name)?))
            .collect()
    }
}

/// How to reach the API servers.
#[derive(clap::Args)]
pub struct Reach {
    /// The kubeconfig context, instead of the cluster's `context` in kvseal.toml (only
    /// with a single cluster).
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// How long to wait for each API request (e.g. 30s, 2m), as kubectl's flag.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, default_value = "30s")]
    request_timeout: Duration,
}

impl Reach {
    /// The context choice for a cluster; `--context` is refused for several clusters.
    pub fn context(
        &self,
        cluster: &ClusterConfig,
        selected: usize,
    ) -> anyhow::Result<ContextChoice> {
        if self.context.is_some() && selected > 1 {
            bail!("--context names one kubeconfig context, so it goes with a single --cluster");
        }
        Ok(ContextChoice::for_cluster(cluster, self.context.as_deref()))
    }

    /// Connects to one cluster.
    pub fn connect(&self, cluster: &ClusterConfig) -> anyhow::Result<LiveCluster> {
        Ok(LiveCluster::connect(
            cluster,
            &self.context(cluster, 1)?,
            self.limits(),
        )?)
    }

    /// Timeouts and retries.
    pub fn limits(&self) -> Limits {
        Limits {
            timeout: self.request_timeout,
            ..Limits::default()
        }
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration between 1s and 1h, such as 30s or 2m");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let millis = match unit {
        "ms" => Some(number),
        "" | "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    if !(1000..=3_600_000).contains(&millis) {
        return Err(bad());
    }
    Ok(Duration::from_millis(millis))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StatusFormat {
    Human,
    Json,
}

/// Arguments of `kvseal cluster status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    select: ClusterSelection,
    #[command(flatten)]
    reach: Reach,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = StatusFormat::Human)]
    format: StatusFormat,
    /// Exit 1 when a finding at or above this severity is found.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    fail_on: FailOn,
}

/// Arguments of `kvseal cluster sync`.
#[derive(clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    select: ClusterSelection,
    #[command(flatten)]
    reach: Reach,
    /// Restart the controller (a rollout restart) when keys changed or wait for a restart.
    #[arg(long)]
    restart: bool,
    /// Carry out the plan without asking.
    #[arg(long)]
    yes: bool,
}

pub fn run(command: Command, config: &ConfigSource) -> anyhow::Result<ExitCode> {
    match command {
        Command::Status(args) => match status(args, config) {
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                Ok(ExitCode::from(EXIT_COULD_NOT_RUN))
            }
        },
        Command::Sync(args) => sync(args, &config.load()?),
    }
}

/// Each key set's generations, listed once however many clusters share it.
pub struct Listings<'s> {
    store: &'s dyn KeyStore,
    by_keyset: BTreeMap<String, Vec<GenerationInfo>>,
}

impl<'s> Listings<'s> {
    pub fn new(store: &'s dyn KeyStore) -> Self {
        Listings {
            store,
            by_keyset: BTreeMap::new(),
        }
    }

    pub fn get(&mut self, keyset: &str) -> anyhow::Result<&[GenerationInfo]> {
        if !self.by_keyset.contains_key(keyset) {
            let listing = self.store.list(keyset)?;
            self.by_keyset.insert(keyset.to_owned(), listing);
        }
        Ok(&self.by_keyset[keyset])
    }
}

/// Reads one cluster and sets it against its key set. A cluster that cannot be reached
/// still gets a status, holding the error.
pub fn read_status(
    cluster: &ClusterConfig,
    context: &ContextChoice,
    limits: Limits,
    generations: &[GenerationInfo],
) -> ClusterStatus {
    match LiveCluster::connect(cluster, context, limits) {
        Ok(live) => {
            let observation = live.observe();
            cluster::assess(
                live.target().clone(),
                &cluster.keyset,
                generations,
                observation,
            )
        }
        Err(error) => ClusterStatus::unreadable(
            cluster::Target {
                cluster: cluster.name.clone(),
                context: match context {
                    ContextChoice::Flag(c) | ContextChoice::Config(c) => c.clone(),
                    ContextChoice::Current => "(current)".to_owned(),
                },
                namespace: cluster.controller_namespace.clone(),
                controller: cluster.controller_name.clone(),
            },
            &cluster.keyset,
            error,
        ),
    }
}

fn status(args: StatusArgs, source: &ConfigSource) -> anyhow::Result<ExitCode> {
    let config = source.load()?;
    let clusters = args.select.clusters(&config)?;
    let store = config.store.open()?;
    let mut listings = Listings::new(store.as_ref());
    let mut statuses = Vec::new();
    for cluster in &clusters {
        let context = args.reach.context(cluster, clusters.len())?;
        let generations = listings.get(&cluster.keyset)?;
        statuses.push(read_status(
            cluster,
            &context,
            args.reach.limits(),
            generations,
        ));
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        StatusFormat::Human => {
            for status in &statuses {
                write_human(&mut out, status)?;
            }
            let (errors, warnings) = count(&statuses);
            writeln!(
                out,
                "{} cluster(s): {errors} error(s), {warnings} warning(s)",
                statuses.len()
            )?;
        }
        StatusFormat::Json => {
            let value = json!({
                "clusters": statuses.iter().map(to_json).collect::<Vec<_>>(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        }
    }
    let fail_on = args.fail_on.severity();
    Ok(if statuses.iter().any(|s| !s.errors.is_empty()) {
        ExitCode::from(EXIT_COULD_NOT_RUN)
    } else if statuses
        .iter()
        .flat_map(|s| &s.findings)
        .any(|f| f.severity >= fail_on)
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn count(statuses: &[ClusterStatus]) -> (usize, usize) {
    let findings = statuses.iter().flat_map(|s| &s.findings);
    let errors = findings
        .clone()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.filter(|f| f.severity == Severity::Warning).count();
    (errors, warnings)
}

fn serving_text(serving: &Serving) -> String {
    match serving {
        Serving::Generation(n, state) => format!("generation {n} ({state})"),
        Serving::Foreign(fp, Some(secret)) => {
            format!("foreign key {} (Secret {secret})", fp.short())
        }
        Serving::Foreign(fp, None) => format!("foreign key {} (held by no key Secret)", fp.short()),
    }
}

fn key_renewal_text(renewal: &KeyRenewal) -> String {
    match renewal {
        KeyRenewal::Off => "off".to_owned(),
        KeyRenewal::On(period) => format!("ON, {period}"),
    }
}

fn write_human(out: &mut impl std::io::Write, status: &ClusterStatus) -> std::io::Result<()> {
    let target = &status.target;
    writeln!(
        out,
        "{target}: key set {}, controller {}/{}",
        status.keyset, target.namespace, target.controller
    )?;
    if !status.generations.is_empty() || !status.foreign.is_empty() {
        writeln!(
            out,
            "  {:<11} {:<12} {:<17} SECRETS",
            "GENERATION", "STATE", "IN CLUSTER"
        )?;
        for row in &status.generations {
            writeln!(
                out,
                "  {:<11} {:<12} {:<17} {}",
                row.generation,
                row.state.to_string(),
                row.presence.as_str(),
                if row.secrets.is_empty() {
                    "-".to_owned()
                } else {
                    row.secrets.join(", ")
                }
            )?;
        }
        for key in &status.foreign {
            writeln!(
                out,
                "  {:<11} {:<12} {:<17} {}{}",
                "-",
                "foreign",
                "active label",
                key.secret,
                key.fingerprint
                    .as_ref()
                    .map(|f| format!(" ({})", f.short()))
                    .unwrap_or_default()
            )?;
        }
    }
    if let Some(serving) = &status.serving {
        writeln!(out, "  seals with:   {}", serving_text(serving))?;
    }
    if let Some(controller) = &status.controller {
        writeln!(
            out,
            "  key renewal:  {}",
            key_renewal_text(&controller.key_renewal)
        )?;
        if let Some(started) = controller.started {
            writeln!(out, "  started by:   {}", rfc3339(started))?;
        }
    }
    if status.errors.is_empty() || !status.unsynced.is_empty() {
        writeln!(
            out,
            "  not synced:   {} SealedSecret(s)",
            status.unsynced.len()
        )?;
    }
    for finding in &status.findings {
        writeln!(
            out,
            "  {}[{}] {}: {}",
            finding.severity, finding.code, finding.subject, finding.message
        )?;
        writeln!(out, "      help: {}", finding.help)?;
    }
    writeln!(out)
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn to_json(status: &ClusterStatus) -> serde_json::Value {
    let target = &status.target;
    json!({
        "cluster": target.cluster,
        "context": target.context,
        "namespace": target.namespace,
        "controller": target.controller,
        "keyset": status.keyset,
        "readable": status.errors.is_empty(),
        "generations": status.generations.iter().map(|row| json!({
            "generation": row.generation,
            "state": row.state.to_string(),
            "in_cluster": row.presence.as_str(),
            "secrets": row.secrets,
        })).collect::<Vec<_>>(),
        "foreign": status.foreign.iter().map(|key| json!({
            "secret": key.secret,
            "fingerprint": key.fingerprint.as_ref().map(|f| f.to_string()),
            "changed": key.changed.map(rfc3339),
        })).collect::<Vec<_>>(),
        "serving": status.serving.as_ref().map(|serving| match serving {
            Serving::Generation(n, state) => json!({"generation": n, "state": state.to_string()}),
            Serving::Foreign(fp, secret) => json!({"foreign": fp.to_string(), "secret": secret}),
        }),
        "key_renewal": status.controller.as_ref().map(|c| match &c.key_renewal {
            KeyRenewal::Off => json!("off"),
            KeyRenewal::On(period) => json!({"on": period}),
        }),
        "controller_started": status.controller.as_ref().and_then(|c| c.started).map(rfc3339),
        "not_synced": status.unsynced,
        "findings": status.findings.iter().map(|f| json!({
            "code": f.code.as_str(),
            "severity": f.severity.as_str(),
            "subject": f.subject,
            "message": f.message,
            "help": f.help,
        })).collect::<Vec<_>>(),
    })
}

/// One cluster's sync, planned before anything is written.
struct Planned<'c> {
    cluster: &'c ClusterConfig,
    live: LiveCluster,
    plan: SyncPlan,
    restart_reason: Option<String>,
}

fn sync(args: SyncArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let clusters = args.select.clusters(config)?;
    let store = config.store.open()?;
    let mut listings = Listings::new(store.as_ref());
    let mut planned = Vec::new();
    for cluster in &clusters {
        let context = args.reach.context(cluster, clusters.len())?;
        if context == ContextChoice::Current {
            bail!(
                "cluster {}: kvseal.toml names no kubeconfig context for it, and sync writes to the cluster; kvseal will not write to whatever the current context is. Set `context` for the cluster in kvseal.toml or pass --context NAME",
                cluster.name
            );
        }
        let live = LiveCluster::connect(cluster, &context, args.reach.limits())?;
        let keys = live.key_secrets()?;
        let generations = listings.get(&cluster.keyset)?;
        let plan = cluster::plan_sync(&cluster.keyset, generations, &keys);
        let controller = live.controller()?;
        let restart_reason = if !plan.changes.is_empty() {
            Some("the key Secrets change".to_owned())
        } else {
            cluster::restart_reason(&keys, &controller)
        };
        print_plan(
            cluster,
            live.target(),
            &plan,
            restart_reason.as_deref(),
            args.restart,
        );
        planned.push(Planned {
            cluster,
            live,
            plan,
            restart_reason,
        });
    }
    let due: Vec<&Planned> = planned
        .iter()
        .filter(|p| !p.plan.changes.is_empty() || (args.restart && p.restart_reason.is_some()))
        .collect();
    if due.is_empty() {
        eprintln!("nothing to change");
        return Ok(ExitCode::SUCCESS);
    }
    if !confirm(args.yes, &format!("Change {} cluster(s)?", due.len()))? {
        bail!("nothing changed");
    }
    for p in due {
        let name = &p.cluster.name;
        for change in &p.plan.changes {
            match change {
                SyncChange::Apply {
                    generation, secret, ..
                } => {
                    let loaded = store.load(&p.cluster.keyset, *generation)?;
                    p.live
                        .apply_key_secret(secret, &p.cluster.keyset, &loaded)?;
                    eprintln!("{name}: applied Secret {secret} (generation {generation})");
                }
                SyncChange::Relabel { generation, secret } => {
                    p.live.retire_key_secret(secret)?;
                    eprintln!(
                        "{name}: relabelled Secret {secret} (generation {generation}) {}",
                        cluster::KEY_LABEL_RETIRED
                    );
                }
            }
        }
        if args.restart && p.restart_reason.is_some() {
            p.live.restart_controller(OffsetDateTime::now_utc())?;
            eprintln!(
                "{name}: restarted deployment {}/{}",
                p.cluster.controller_namespace, p.cluster.controller_name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(
    cluster: &ClusterConfig,
    target: &cluster::Target,
    plan: &SyncPlan,
    restart_reason: Option<&str>,
    restart: bool,
) {
    let name = &cluster.name;
    eprintln!(
        "{target}: key set {}, namespace {}",
        cluster.keyset, target.namespace
    );
    for (generation, secret) in &plan.unchanged {
        eprintln!("{name}: generation {generation} is in Secret {secret}, unchanged");
    }
    for change in &plan.changes {
        match change {
            SyncChange::Apply {
                generation,
                secret,
                exists,
            } => eprintln!(
                "{name}: {} Secret {secret} for generation {generation} (server-side apply, label {}={})",
                if *exists { "update" } else { "create" },
                kvseal::cluster_manifests::KEY_LABEL,
                kvseal::cluster_manifests::KEY_LABEL_ACTIVE
            ),
            SyncChange::Relabel { generation, secret } => eprintln!(
                "{name}: relabel Secret {secret} (retired generation {generation}) {}; it is kept, and the controller drops the key at its next start",
                cluster::KEY_LABEL_RETIRED
            ),
        }
    }
    for secret in &plan.foreign {
        eprintln!(
            "{name}: leaving Secret {secret} alone: its key is not in the store (see `kvseal cluster status`)"
        );
    }
    match (restart_reason, restart) {
        (Some(reason), true) => eprintln!("{name}: restart the controller: {reason}"),
        (Some(reason), false) => eprintln!(
            "{name}: the controller needs a restart to load its keys ({reason}): add --restart, or run `kubectl -n {} rollout restart deployment {}`",
            target.namespace, target.controller
        ),
        (None, _) if plan.changes.is_empty() => eprintln!("{name}: in sync"),
        (None, _) => {}
    }
}
