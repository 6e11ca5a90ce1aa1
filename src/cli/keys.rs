//! `kvseal keys`: generate, list and export key generations.

use anyhow::bail;
use kvseal::config::Config;
use kvseal::fleet::{self, ExportChange};
use kvseal::lifecycle;
use kvseal::manifest::Node;
use kvseal::store::GenerationInfo;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ConfigSource;
use super::io::write_stdout;

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
}

pub fn run(command: Command, config: &ConfigSource) -> anyhow::Result<std::process::ExitCode> {
    let config = config.load()?;
    match command {
        Command::Generate { keyset, no_export } => generate(&config, &keyset, no_export),
        Command::List { keyset, json } => list(&config, keyset.as_deref(), json),
        Command::ExportCerts => export(&config),
    }
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
            "FINGERPRINT",
            "NOT BEFORE",
            "NOT AFTER",
        ]
        .map(String::from),
    ];
    for g in &rows {
        table.push([
            g.keyset.clone(),
            g.generation.to_string(),
            g.state.to_string(),
            g.fingerprint().to_string(),
            date(g.not_before),
            date(g.not_after),
        ]);
    }
    let widths: Vec<usize> = (0..6)
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
