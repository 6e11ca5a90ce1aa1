//! `kvseal validate`: asks a cluster's controller whether it can decrypt SealedSecrets
//! (`/v1/verify`, as `kubeseal --validate`). Exit status: 0 all can be decrypted, 1 some
//! cannot, 2 the check could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use kvseal::manifest::{OutputFormat, SealedSecret, split_documents};

use super::ConfigSource;
use super::cluster::Reach;
use super::io::read_input;

const EXIT_COULD_NOT_RUN: u8 = 2;

/// Arguments of `kvseal validate`.
#[derive(clap::Args)]
pub struct Args {
    /// The cluster whose controller decides, as named in kvseal.toml.
    #[arg(long)]
    cluster: String,
    /// SealedSecret manifests (YAML or JSON, several documents allowed; `-` is stdin).
    /// Repeatable.
    #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Namespace for SealedSecrets that do not name one (default: the context's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    #[command(flatten)]
    reach: Reach,
}

pub fn run(args: Args, config: &ConfigSource) -> anyhow::Result<ExitCode> {
    match validate(args, config) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(EXIT_COULD_NOT_RUN))
        }
    }
}

fn validate(args: Args, config: &ConfigSource) -> anyhow::Result<ExitCode> {
    let config = config.load()?;
    let cluster = config.cluster(&args.cluster)?;
    let live = args.reach.connect(cluster)?;
    let (mut valid, mut invalid, mut unreadable) = (0usize, 0usize, 0usize);
    for file in &args.files {
        let source = file.display().to_string();
        let input = read_input(Some(file))?;
        for doc in split_documents(input.expose()) {
            let mut sealed = match SealedSecret::from_document(&doc) {
                Ok(sealed) => sealed,
                Err(e) => {
                    eprintln!("{source}: skipped: {e}");
                    unreadable += 1;
                    continue;
                }
            };
            if sealed.metadata.namespace.is_empty() {
                // Where `kubectl apply` would put it: -n, else the context's namespace.
                sealed.metadata.namespace = args
                    .namespace
                    .clone()
                    .unwrap_or_else(|| live.context_namespace().to_owned());
            }
            let what = format!(
                "{source}: SealedSecret {}/{}",
                sealed.metadata.namespace, sealed.metadata.name
            );
            let json = sealed.render(OutputFormat::Json);
            if live.verify(json.as_bytes())? {
                println!("{what}: cluster {} can decrypt it", cluster.name);
                valid += 1;
            } else {
                println!(
                    "{what}: cluster {} cannot decrypt it (409 from /v1/verify): it was sealed with a key the controller does not hold, or for another name or namespace; run `kvseal scan {source}` to see which key",
                    cluster.name
                );
                invalid += 1;
            }
        }
    }
    eprintln!(
        "{valid} can be decrypted, {invalid} cannot{}",
        if unreadable > 0 {
            format!(", {unreadable} document(s) are not SealedSecrets")
        } else {
            String::new()
        }
    );
    Ok(if invalid > 0 || unreadable > 0 {
        ExitCode::from(1)
    } else if valid == 0 {
        anyhow::bail!("no SealedSecret found in {:?}", args.files);
    } else {
        ExitCode::SUCCESS
    })
}
