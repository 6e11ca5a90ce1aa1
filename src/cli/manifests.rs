//! `kvseal manifests`: what GitOps applies so that each cluster loads its key set.

use std::path::PathBuf;

use anyhow::bail;
use kvseal::cluster_manifests;

use super::ConfigSource;
use super::cluster::ClusterSelection;

/// Arguments of `kvseal manifests`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    select: ClusterSelection,
    /// The output directory (default: [manifests] out_dir); each cluster gets a directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: Args, config: &ConfigSource) -> anyhow::Result<std::process::ExitCode> {
    let config = config.load()?;
    let Some(out) = args
        .out
        .clone()
        .or_else(|| config.manifests.out_dir.clone())
    else {
        bail!("say where the manifests go: --out DIR, or [manifests] out_dir in kvseal.toml");
    };
    let clusters = args.select.clusters(&config)?;
    let store = config.store.open()?;
    let changes = cluster_manifests::write_clusters(&config, store.as_ref(), &clusters, &out)?;
    let mut written = 0;
    for change in &changes {
        if let kvseal::fleet::ExportChange::Written(path) = change {
            eprintln!("wrote {}", path.display());
            written += 1;
        }
    }
    eprintln!(
        "{} cluster(s), {written} file(s) changed, {} unchanged",
        clusters.len(),
        changes.len() - written
    );
    Ok(std::process::ExitCode::SUCCESS)
}
