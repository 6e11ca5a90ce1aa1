//! `kvseal unseal`: SealedSecrets in, the Secrets the controller would create out.

use std::path::PathBuf;

use anyhow::bail;
use kvseal::keys::PrivateKey;
use kvseal::manifest::{Node, OutputFormat, SealedSecret, render_node, split_documents};
use kvseal::store;

use super::io::{read_input, read_key_file, write_stdout};
use super::{ConfigSource, Format};

/// The command line; no `Debug`, because `--from-literal` carries secret values.
#[derive(clap::Args)]
pub struct Args {
    /// SealedSecret manifest(s): YAML or JSON, several documents allowed. Default: stdin.
    #[arg(short = 'f', long = "sealed-secret-file", value_name = "FILE")]
    file: Option<PathBuf>,

    /// Private key files: PEM (PKCS#1 or PKCS#8), a Secret with tls.key, or a `kind: List`
    /// backup. Repeatable and comma-separated.
    #[arg(long = "key", value_delimiter = ',', value_name = "FILE")]
    keys: Vec<PathBuf>,

    /// Use every generation of these key sets from the configured store.
    #[arg(
        long = "keyset",
        value_delimiter = ',',
        value_name = "NAME",
        conflicts_with = "keys"
    )]
    keysets: Vec<String>,

    /// Namespace for SealedSecrets that do not name one (the controller uses the namespace
    /// they are applied to).
    #[arg(short = 'n', long)]
    namespace: Option<String>,

    /// Output format.
    #[arg(short = 'o', long = "format", value_enum, default_value_t = Format::Yaml)]
    format: Format,
}

pub fn run(args: Args, config: &ConfigSource) -> anyhow::Result<std::process::ExitCode> {
    let keys = load_keys(&args, config)?;
    let input = read_input(args.file.as_deref())?;
    let source = args
        .file
        .as_deref()
        .map_or("standard input".to_owned(), |p| p.display().to_string());

    let mut secrets = Vec::new();
    let mut failures = 0usize;
    let docs = split_documents(input.expose());
    if docs.is_empty() {
        bail!("{source} holds no documents; give a SealedSecret with -f FILE or on stdin");
    }
    for doc in &docs {
        let sealed = match SealedSecret::from_document(doc) {
            Ok(mut sealed) if sealed.metadata.namespace.is_empty() => match &args.namespace {
                Some(namespace) => {
                    sealed.metadata.namespace = namespace.clone();
                    sealed
                }
                None if sealed.scope() == kvseal::format::Scope::ClusterWide => sealed,
                None => {
                    eprintln!(
                        "error: {source}: document {} (line {}), SealedSecret {}: it has no namespace, and its {} scope label needs one; pass -n NAMESPACE",
                        doc.index,
                        doc.line,
                        sealed.metadata.name,
                        sealed.scope()
                    );
                    failures += 1;
                    continue;
                }
            },
            Ok(sealed) => sealed,
            Err(e) => {
                eprintln!("error: {source}: {e}");
                failures += 1;
                continue;
            }
        };
        let what = format!(
            "{source}: document {} (line {}), SealedSecret {}/{}",
            doc.index, doc.line, sealed.metadata.namespace, sealed.metadata.name
        );
        match sealed.unseal(&keys) {
            Ok(secret) => {
                for warning in &secret.warnings {
                    eprintln!("warning: {what}: {warning}");
                }
                secrets.push(secret.to_node());
            }
            Err(e) => {
                eprintln!("error: {what}: {e}");
                failures += 1;
            }
        }
    }

    let output = match (OutputFormat::from(args.format), secrets.len()) {
        (_, 0) => None,
        (OutputFormat::Json, n) if n > 1 => {
            let mut list = Node::map();
            list.insert("kind", Node::str("List"));
            list.insert("apiVersion", Node::str("v1"));
            list.insert("metadata", Node::map());
            list.insert("items", Node::Seq(secrets));
            Some(list.to_json())
        }
        (format, _) => {
            let rendered: Vec<_> = secrets.iter().map(|s| render_node(s, format)).collect();
            // Sized once, so that no reallocation leaves a copy of the plaintext behind.
            let mut all = String::with_capacity(rendered.iter().map(|r| r.expose().len()).sum());
            for r in &rendered {
                all.push_str(r.expose());
            }
            Some(kvseal::secret::SecretString::new(all))
        }
    };
    if let Some(output) = output {
        write_stdout(output.expose())?;
    }
    if failures > 0 {
        eprintln!(
            "error: {failures} of {} document(s) did not unseal",
            docs.len()
        );
        return Ok(std::process::ExitCode::from(super::EXIT_FAILURE));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn load_keys(args: &Args, config: &ConfigSource) -> anyhow::Result<Vec<PrivateKey>> {
    if !args.keys.is_empty() {
        let mut keys = Vec::new();
        for path in &args.keys {
            keys.extend(read_key_file(path)?);
        }
        return Ok(keys);
    }
    let Some(config) = config.load_optional()? else {
        bail!("no keys: pass --key FILE, or run where a kvseal.toml names a key store");
    };
    let store = config.store.open()?;
    let keysets = if args.keysets.is_empty() {
        store.keysets()?
    } else {
        for keyset in &args.keysets {
            config.keyset(keyset)?;
        }
        args.keysets.clone()
    };
    let generations = store::load_all(store.as_ref(), &keysets)?;
    if generations.is_empty() {
        bail!(
            "{} holds no keys for {}",
            store.describe(),
            keysets.join(", ")
        );
    }
    Ok(generations.into_iter().map(|g| g.private_key).collect())
}
