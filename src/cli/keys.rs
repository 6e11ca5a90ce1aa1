//! `kvseal keys`: generate, rotate, promote, retire, mark compromised, import, list and
//! export key generations.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use kvseal::cluster::live::{ContextChoice, Limits};
use kvseal::config::Config;
use kvseal::fleet::{self, ExportChange};
use kvseal::lifecycle::{self, Imported, RotationStep, Usage};
use kvseal::manifest::Node;
use kvseal::scan::{Keyring, generation_usage};
use kvseal::store::{GenerationInfo, KeyStore, StoreSpec};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ConfigSource;
use super::io::{confirm, write_stdout};

/// `--keyset NAME` or `--all`.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct KeysetSelection {
    /// The key set, as named in kvseal.toml.
    #[arg(long)]
    keyset: Option<String>,
    /// Every configured key set.
    #[arg(long)]
    all: bool,
}

impl KeysetSelection {
    fn names(&self, config: &Config) -> anyhow::Result<Vec<String>> {
        match &self.keyset {
            Some(name) => {
                config.keyset(name)?;
                Ok(vec![name.clone()])
            }
            None => Ok(config.keysets.keys().cloned().collect()),
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    kvseal::config::parse_duration(text)
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a new generation (RSA-4096 and a self-signed certificate) and make it active.
    Generate {
        /// The key set, as named in kvseal.toml.
        #[arg(long)]
        keyset: String,
        /// Do not write the public certificates into the certificate directory afterwards.
        #[arg(long)]
        no_export: bool,
    },
    /// List every generation of every key set.
    List {
        /// Only this key set.
        #[arg(long)]
        keyset: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write the active and retained certificates into the certificate directory.
    ExportCerts,
    /// Stage a new generation: clusters load it for decryption, nothing seals with it yet.
    Rotate {
        #[command(flatten)]
        select: KeysetSelection,
        /// Only rotate key sets whose active generation is older than this (e.g. 90d).
        #[arg(long, value_name = "AGE", value_parser = parse_duration)]
        if_older_than: Option<Duration>,
        /// Carry out the plan without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Make the staged generation active once every cluster has loaded it.
    Promote {
        #[command(flatten)]
        select: KeysetSelection,
        /// Promote without confirming that every cluster has loaded the staged generation.
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why --force was needed; recorded on the promoted generation.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Carry out the plan without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Stop loading a generation in clusters; the store keeps it, disabled.
    Retire {
        /// The key set.
        #[arg(long)]
        keyset: String,
        /// The generation number.
        generation: u32,
        /// Retire even though SealedSecrets in the repository are sealed with it.
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why --force was needed; recorded on the generation.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Carry out the plan without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Mark a generation compromised and stage its replacement at once.
    Compromised {
        /// The key set.
        #[arg(long)]
        keyset: String,
        /// The generation number.
        generation: u32,
        /// What happened; recorded on the generation.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Carry out the plan without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Adopt keys a controller minted: a `kubectl get secret -o yaml` backup or PEM files.
    Import {
        /// The key set to add them to.
        #[arg(long)]
        keyset: String,
        /// Backup or PEM files, each with the private keys and their certificates.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Carry out the plan without asking.
        #[arg(long)]
        yes: bool,
    },
}

pub fn run(command: Command, config: &ConfigSource) -> anyhow::Result<std::process::ExitCode> {
    let config = config.load()?;
    match command {
        Command::Generate { keyset, no_export } => generate(&config, &keyset, no_export),
        Command::List { keyset, json } => list(&config, keyset.as_deref(), json),
        Command::ExportCerts => export(&config),
        Command::Rotate {
            select,
            if_older_than,
            yes,
        } => rotate(&config, &select.names(&config)?, if_older_than, yes),
        Command::Promote {
            select,
            force,
            reason,
            yes,
        } => promote(
            &config,
            &select.names(&config)?,
            force,
            reason.as_deref(),
            yes,
        ),
        Command::Retire {
            keyset,
            generation,
            force,
            reason,
            yes,
        } => retire(&config, &keyset, generation, force, reason.as_deref(), yes),
        Command::Compromised {
            keyset,
            generation,
            reason,
            yes,
        } => compromised(&config, &keyset, generation, reason.as_deref(), yes),
        Command::Import { keyset, files, yes } => import(&config, &keyset, &files, yes),
    }
}

/// The configured clusters of a key set.
fn clusters_of(config: &Config, keyset: &str) -> Vec<String> {
    config
        .clusters
        .values()
        .filter(|c| c.keyset == keyset)
        .map(|c| c.name.clone())
        .collect()
}

/// The clusters of a key set that have not loaded `generation`, read live: each
/// cluster's key Secrets, and when its controller started against when they appeared.
fn lagging_clusters(
    config: &Config,
    keyset: &str,
    generations: &[GenerationInfo],
    generation: u32,
) -> Vec<kvseal::cluster::Lagging> {
    let clusters: Vec<_> = config
        .clusters
        .values()
        .filter(|c| c.keyset == keyset)
        .collect();
    if clusters.is_empty() {
        return Vec::new();
    }
    eprintln!(
        "{keyset}: checking that clusters {} have loaded generation {generation}...",
        clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let statuses: Vec<_> = clusters
        .iter()
        .map(|cluster| {
            super::cluster::read_status(
                cluster,
                &ContextChoice::for_cluster(cluster, None),
                Limits::default(),
                generations,
            )
        })
        .collect();
    kvseal::cluster::promotion_gate(&statuses, generation)
}

/// What every SealedSecret in the repository is sealed with, from a scan with the store's
/// private keys.
fn repository_usage(config: &Config, store: &dyn KeyStore) -> anyhow::Result<Usage> {
    eprintln!(
        "checking which generations the SealedSecrets under {} are sealed with...",
        config.base_dir.display()
    );
    let keyring = Keyring::from_store(config, store)?;
    Ok(generation_usage(
        config,
        &keyring,
        OffsetDateTime::now_utc(),
    ))
}

/// After a lifecycle change: the certificate directory follows the store, and so do the
/// cluster manifests when `[manifests] out_dir` is set.
fn publish(config: &Config, store: &dyn KeyStore, keysets: &[String]) -> anyhow::Result<()> {
    report_export(&fleet::export_certs(config, store)?);
    let clusters: Vec<_> = config
        .clusters
        .values()
        .filter(|c| keysets.contains(&c.keyset))
        .collect();
    match (&config.manifests.out_dir, &config.store) {
        (Some(out), StoreSpec::AzureKeyVault { .. }) if !clusters.is_empty() => {
            report_export(&kvseal::cluster_manifests::write_clusters(
                config, store, &clusters, out,
            )?);
        }
        (None, StoreSpec::AzureKeyVault { .. }) if !clusters.is_empty() => eprintln!(
            "the clusters' manifests must change too: run `kvseal manifests --all --out DIR` (or set [manifests] out_dir) and commit them"
        ),
        _ => {}
    }
    Ok(())
}

fn rotate(
    config: &Config,
    keysets: &[String],
    if_older_than: Option<Duration>,
    yes: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let store = config.store.open()?;
    let now = OffsetDateTime::now_utc();
    let mut due = Vec::new();
    for keyset in keysets {
        let generations = store.list(keyset)?;
        let step = lifecycle::plan_rotation(keyset, &generations, if_older_than, now)?;
        let clusters = clusters_of(config, keyset).join(", ");
        let sealing = lifecycle::sealing_generation(&generations)
            .map_or_else(|| "none".to_owned(), |g| g.generation.to_string());
        match &step {
            RotationStep::AlreadyStaged { generation } => eprintln!(
                "{keyset}: generation {generation} is staged already; promote it with `kvseal keys promote --keyset {keyset}` once every cluster has loaded it"
            ),
            RotationStep::NotDue {
                generation,
                age_days,
            } => eprintln!(
                "{keyset}: active generation {generation} is {age_days} days old, younger than --if-older-than; nothing to do"
            ),
            RotationStep::FinishPending { generation } => {
                eprintln!(
                    "{keyset}: finish generation {generation}, left pending by an interrupted run: verify it and stage it"
                );
                due.push(keyset.clone());
            }
            RotationStep::StageNew {
                generation,
                not_before,
            } => {
                eprintln!(
                    "{keyset}: stage a new generation {generation} (RSA-4096, NotBefore {}, below every loaded generation) for clusters {clusters}; generation {sealing} keeps sealing until `kvseal keys promote`",
                    date(*not_before)
                );
                due.push(keyset.clone());
            }
        }
    }
    if due.is_empty() {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if !confirm(yes, "Stage these generations?")? {
        bail!("nothing changed");
    }
    for keyset in &due {
        let rotated =
            lifecycle::rotate(store.as_ref(), config.keyset(keyset)?, if_older_than, now)?;
        for (generation, why) in &rotated.damaged {
            eprintln!("{keyset}: passed over generation {generation}: {why}");
        }
        if let Some(staged) = &rotated.staged {
            eprintln!(
                "{keyset}: generation {} ({}) is staged in {}; clusters load it at their next sync, then run `kvseal keys promote --keyset {keyset}`",
                staged.generation,
                staged.fingerprint(),
                store.describe()
            );
        }
    }
    publish(config, store.as_ref(), &due)?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn promote(
    config: &Config,
    keysets: &[String],
    force: bool,
    reason: Option<&str>,
    yes: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let store = config.store.open()?;
    let listings: Vec<(String, Vec<GenerationInfo>)> = keysets
        .iter()
        .map(|k| Ok((k.clone(), store.list(k)?)))
        .collect::<anyhow::Result<_>>()?;
    let no_usage = Usage::new();
    let mut plans: Vec<_> = listings
        .iter()
        .map(|(k, g)| {
            Ok((
                k,
                lifecycle::plan_promotion(config.keyset(k)?, g, &no_usage),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    // Which retained generations still seal something matters only when one would retire.
    let usage = if plans.iter().any(|(_, p)| !p.retire.is_empty()) {
        let usage = repository_usage(config, store.as_ref())?;
        plans = listings
            .iter()
            .map(|(k, g)| Ok((k, lifecycle::plan_promotion(config.keyset(k)?, g, &usage))))
            .collect::<anyhow::Result<_>>()?;
        usage
    } else {
        no_usage
    };
    let mut due = Vec::new();
    // The plans follow the listings, key set by key set.
    for ((keyset, plan), (_, generations)) in plans.iter().zip(&listings) {
        if plan.is_empty() {
            eprintln!("{keyset}: nothing is staged and nothing is left to finish");
            continue;
        }
        if let Some(generation) = plan.promote {
            let lagging = lagging_clusters(config, keyset, generations, generation);
            if !lagging.is_empty() && !force {
                bail!(
                    "{keyset}: not promoting generation {generation}: {} not loaded it yet:\n{}\nload it (`kvseal cluster sync --cluster NAME --restart`, or let the CSI key sync run and restart the controller), check with `kvseal cluster status`, then promote again; --force --reason TEXT promotes anyway",
                    if lagging.len() == 1 {
                        "a cluster has"
                    } else {
                        "clusters have"
                    },
                    lagging
                        .iter()
                        .map(|l| format!("  {}", l.message))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            for l in &lagging {
                eprintln!(
                    "{keyset}: warning: promoting generation {generation} anyway (--force): {}",
                    l.message
                );
            }
            eprintln!(
                "{keyset}: promote generation {generation}{}: it becomes active and seals{}",
                if plan.reissue {
                    ", re-issuing its certificate with a NotBefore above every loaded generation"
                } else {
                    ""
                },
                match (force, reason) {
                    (true, Some(reason)) => format!(" (forced: {reason})"),
                    _ => String::new(),
                }
            );
        }
        for generation in &plan.demote {
            eprintln!(
                "{keyset}: generation {generation} becomes retained: it still decrypts what it sealed"
            );
        }
        for generation in &plan.retire {
            eprintln!(
                "{keyset}: retire generation {generation}: beyond retain, and nothing in the repository is sealed with it"
            );
        }
        for (generation, files) in &plan.kept_in_use {
            eprintln!(
                "{keyset}: keep generation {generation} loaded beyond retain: {} file(s) are still sealed with it ({}); reseal them with `kvseal reseal`",
                files.len(),
                files.join(", ")
            );
        }
        due.push((*keyset).clone());
    }
    if due.is_empty() {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if !confirm(yes, "Promote?")? {
        bail!("nothing changed");
    }
    for keyset in &due {
        lifecycle::promote(
            store.as_ref(),
            config.keyset(keyset)?,
            &usage,
            reason,
            OffsetDateTime::now_utc(),
        )?;
        let generations = store.list(keyset)?;
        if let Some(active) = lifecycle::sealing_generation(&generations) {
            eprintln!(
                "{keyset}: generation {} ({}) is active",
                active.generation,
                active.fingerprint()
            );
        }
    }
    publish(config, store.as_ref(), &due)?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn retire(
    config: &Config,
    keyset: &str,
    generation: u32,
    force: bool,
    reason: Option<&str>,
    yes: bool,
) -> anyhow::Result<std::process::ExitCode> {
    config.keyset(keyset)?;
    let store = config.store.open()?;
    let info = lifecycle::find_generation(store.as_ref(), keyset, generation)?;
    if let Some(refusal) = lifecycle::retire_refusal(&info) {
        return Err(refusal.into());
    }
    let usage = if force {
        Usage::new()
    } else {
        repository_usage(config, store.as_ref())?
    };
    // Refusals come before the question.
    if !force
        && let Some(files) = usage.get(&(keyset.to_owned(), generation))
        && !files.is_empty()
    {
        return Err(lifecycle::LifecycleError::InUse {
            keyset: keyset.to_owned(),
            generation,
            files: files.clone(),
        }
        .into());
    }
    eprintln!(
        "{keyset}: retire generation {generation}: clusters stop loading it when their manifests are regenerated; {} keeps it, disabled",
        store.describe()
    );
    if !confirm(yes, "Retire it?")? {
        bail!("nothing changed");
    }
    let force_reason = if force { reason } else { None };
    lifecycle::retire(store.as_ref(), keyset, generation, &usage, force_reason)?;
    eprintln!("{keyset}: generation {generation} is retired");
    publish(config, store.as_ref(), &[keyset.to_owned()])?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn compromised(
    config: &Config,
    keyset: &str,
    generation: u32,
    reason: Option<&str>,
    yes: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let keyset_config = config.keyset(keyset)?;
    let store = config.store.open()?;
    eprintln!(
        "{keyset}: mark generation {generation} compromised (it stays loaded until what it sealed is resealed) and stage a replacement now"
    );
    if !confirm(yes, "Mark it compromised?")? {
        bail!("nothing changed");
    }
    let usage = repository_usage(config, store.as_ref())?;
    let outcome = lifecycle::mark_compromised(
        store.as_ref(),
        keyset_config,
        generation,
        &usage,
        reason,
        OffsetDateTime::now_utc(),
    )?;
    if let Some(staged) = &outcome.replacement.staged {
        eprintln!(
            "{keyset}: generation {} is staged as the replacement; promote it with `kvseal keys promote --keyset {keyset}` once every cluster has loaded it",
            staged.generation
        );
    }
    if outcome.to_reseal.is_empty() {
        eprintln!("{keyset}: nothing in the repository is sealed with generation {generation}");
    } else {
        eprintln!(
            "{keyset}: after the promotion, reseal these files (and change the values themselves, which may have leaked): run `kvseal reseal` on them"
        );
        let mut list = String::new();
        for file in &outcome.to_reseal {
            list.push_str(file);
            list.push('\n');
        }
        write_stdout(&list)?;
    }
    publish(config, store.as_ref(), &[keyset.to_owned()])?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn import(
    config: &Config,
    keyset: &str,
    files: &[PathBuf],
    yes: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let keyset_config = config.keyset(keyset)?;
    let mut keys = Vec::new();
    let mut certificates = Vec::new();
    for file in files {
        let bytes = kvseal::secret::SecretBytes::new(
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
        );
        let material = kvseal::keys::read_key_material(bytes.expose())
            .with_context(|| format!("{}: no sealing keys", file.display()))?;
        keys.extend(material.keys);
        certificates.extend(material.certificates);
    }
    let pairs = lifecycle::pair_keys(keys, &certificates)?;
    let store = config.store.open()?;
    let existing = store.list(keyset)?;
    let mut sorted: Vec<_> = pairs.iter().map(|(_, c)| c).collect();
    sorted.sort_by_key(|c| c.not_before());
    for certificate in &sorted {
        let fingerprint = certificate.public_key().fingerprint();
        match existing.iter().find(|g| g.fingerprint == fingerprint) {
            Some(g) => eprintln!(
                "{keyset}: {fingerprint} (NotBefore {}) is generation {} already",
                date(certificate.not_before()),
                g.generation
            ),
            None => eprintln!(
                "{keyset}: add {fingerprint} (NotBefore {}) as a new generation",
                date(certificate.not_before())
            ),
        }
    }
    if !confirm(yes, "Import these keys?")? {
        bail!("nothing changed");
    }
    for outcome in lifecycle::import(store.as_ref(), keyset_config, pairs)? {
        match outcome {
            Imported::Added(info) => eprintln!(
                "{keyset}: generation {} ({}) imported",
                info.generation,
                info.fingerprint()
            ),
            Imported::Present { .. } => {}
        }
    }
    let generations = store.list(keyset)?;
    if let Some(active) = lifecycle::sealing_generation(&generations) {
        eprintln!(
            "{keyset}: generation {} is active, the key the controller seals with (newest NotBefore)",
            active.generation
        );
    }
    publish(config, store.as_ref(), &[keyset.to_owned()])?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn generate(
    config: &Config,
    keyset: &str,
    no_export: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let keyset_config = config.keyset(keyset)?;
    let store = config.store.open()?;
    let generated = lifecycle::generate(store.as_ref(), keyset_config, OffsetDateTime::now_utc())?;
    let created = &generated.created;
    eprintln!(
        "created {keyset} generation {} ({}), active, valid until {}, in {}",
        created.generation,
        created.fingerprint(),
        date(created.not_after),
        store.describe()
    );
    for previous in &generated.demoted {
        eprintln!(
            "{keyset} generation {previous} is now retained: it still decrypts what it sealed"
        );
    }
    if !no_export {
        report_export(&fleet::export_certs(config, store.as_ref())?);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn list(config: &Config, only: Option<&str>, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let store = config.store.open()?;
    let keysets: Vec<String> = match only {
        Some(name) => {
            config.keyset(name)?;
            vec![name.to_owned()]
        }
        None => config.keysets.keys().cloned().collect(),
    };
    let mut rows: Vec<GenerationInfo> = Vec::new();
    for keyset in &keysets {
        rows.extend(store.list(keyset)?);
    }
    if json {
        let items = rows
            .iter()
            .map(|g| {
                let mut n = Node::map();
                n.insert("keyset", Node::str(&g.keyset));
                n.insert("generation", Node::Str(g.generation.to_string()));
                n.insert("state", Node::str(g.state.as_str()));
                n.insert("loaded", Node::Bool(g.state.is_loaded()));
                n.insert("fingerprint", Node::Str(g.fingerprint().to_string()));
                if let Some(certificate) = &g.certificate {
                    n.insert(
                        "kubesealFingerprint",
                        Node::str(certificate.public_key().kubeseal_fingerprint()),
                    );
                }
                if let Some(version) = &g.version {
                    n.insert("version", Node::str(version));
                }
                if let Some(reason) = &g.reason {
                    n.insert("reason", Node::str(reason));
                }
                n.insert("notBefore", Node::Str(date(g.not_before)));
                n.insert("notAfter", Node::Str(date(g.not_after)));
                n
            })
            .collect();
        write_stdout(Node::Seq(items).to_json().expose())?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        bail!(
            "{} holds no generations yet; create one with `kvseal keys generate --keyset NAME`",
            store.describe()
        );
    }
    let mut table = vec![
        [
            "KEYSET",
            "GEN",
            "STATE",
            "LOADED",
            "FINGERPRINT",
            "NOT BEFORE",
            "NOT AFTER",
            "NOTE",
        ]
        .map(String::from),
    ];
    for g in &rows {
        let loaded = if g.state.is_loaded() { "yes" } else { "no" };
        let note = match (&g.reason, g.certificate.is_none() && g.version.is_some()) {
            (Some(reason), _) => reason.clone(),
            (None, true) => "disabled in the vault".to_owned(),
            (None, false) => String::new(),
        };
        table.push([
            g.keyset.clone(),
            g.generation.to_string(),
            g.state.to_string(),
            loaded.to_owned(),
            g.fingerprint().to_string(),
            date(g.not_before),
            date(g.not_after),
            note,
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    write_stdout(&out)?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn export(config: &Config) -> anyhow::Result<std::process::ExitCode> {
    let store = config.store.open()?;
    let changes = fleet::export_certs(config, store.as_ref())?;
    if changes.is_empty() {
        bail!(
            "{} has no active or retained generations to export",
            store.describe()
        );
    }
    report_export(&changes);
    Ok(std::process::ExitCode::SUCCESS)
}

fn report_export(changes: &[ExportChange]) {
    for change in changes {
        match change {
            ExportChange::Written(p) => eprintln!("wrote {}", p.display()),
            ExportChange::Removed(p) => eprintln!("removed {}", p.display()),
            ExportChange::Unchanged(_) => {}
        }
    }
}

fn date(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}
