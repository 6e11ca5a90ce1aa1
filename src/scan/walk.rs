//! Finding the manifest files to scan, as ripgrep walks: `.gitignore` and `.ignore`
//! respected, `.git` skipped, a per-file error never stopping the walk.
//!
//! The walk is lazy and ordered (directory entries sorted by name, so files come in `Path`
//! order), so a scan holds one batch of paths at a time, never the whole repository.

use std::collections::HashSet;
use std::path::PathBuf;

const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// One step of the walk: a file to scan, or a path that could not be walked.
pub enum Walked {
    /// A YAML or JSON file (or any file named directly).
    File(PathBuf),
    /// A path the walk could not enter, with the reason.
    Error(PathBuf, String),
}

/// Every YAML or JSON file under `paths` (files given directly are taken whatever their
/// extension), in order, each once, and the paths that could not be walked.
pub fn walk_manifest_files(paths: &[PathBuf]) -> impl Iterator<Item = Walked> {
    let mut roots = paths.to_vec();
    roots.sort();
    roots.dedup();
    // Overlapping roots (`apps` and `apps/x.yaml`) would yield a file twice; one root
    // cannot, so the set of seen files is kept only when there are several.
    let mut seen = (roots.len() > 1).then(HashSet::new);
    roots
        .into_iter()
        .flat_map(walk_root)
        .filter(move |walked| match (&mut seen, walked) {
            (Some(seen), Walked::File(path)) => {
                seen.insert(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()))
            }
            _ => true,
        })
}

fn walk_root(root: PathBuf) -> Box<dyn Iterator<Item = Walked>> {
    if root.is_file() {
        return Box::new(std::iter::once(Walked::File(root)));
    }
    if !root.exists() {
        return Box::new(std::iter::once(Walked::Error(
            root,
            "no such file or directory".to_owned(),
        )));
    }
    let walker = ignore::WalkBuilder::new(&root)
        .hidden(true)
        .git_ignore(true)
        .git_exclude(true)
        .require_git(false)
        .add_custom_ignore_filename(".kvsealignore")
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();
    Box::new(walker.filter_map(move |entry| match entry {
        Ok(entry) => {
            let path = entry.path();
            let is_manifest = entry.file_type().is_some_and(|t| t.is_file())
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e));
            is_manifest.then(|| Walked::File(entry.into_path()))
        }
        Err(e) => {
            let path = match &e {
                ignore::Error::WithPath { path, .. } => path.clone(),
                _ => root.clone(),
            };
            Some(Walked::Error(path, e.to_string()))
        }
    }))
}

/// Every manifest file under `paths`, collected (for callers that want a list, such as
/// `kvseal reseal` and benchmarks), and the walk errors.
pub fn find_manifest_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for walked in walk_manifest_files(paths) {
        match walked {
            Walked::File(path) => files.push(path),
            Walked::Error(path, message) => errors.push((path, message)),
        }
    }
    (files, errors)
}
