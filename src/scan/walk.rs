//! Finding the manifest files to scan, as ripgrep walks: `.gitignore` and `.ignore`
//! respected, `.git` skipped, a per-file error never stopping the walk.

use std::path::PathBuf;

const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Every YAML or JSON file under `paths` (files given directly are taken whatever their
/// extension), sorted, plus the paths that could not be walked with the reason.
pub fn find_manifest_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for root in paths {
        if root.is_file() {
            files.push(root.clone());
            continue;
        }
        if !root.exists() {
            errors.push((root.clone(), "no such file or directory".to_owned()));
            continue;
        }
        let walker = ignore::WalkBuilder::new(root)
            .hidden(true)
            .git_ignore(true)
            .git_exclude(true)
            .require_git(false)
            .add_custom_ignore_filename(".kvsealignore")
            .build();
        for entry in walker {
            match entry {
                Ok(entry) => {
                    let path = entry.path();
                    let is_manifest = entry.file_type().is_some_and(|t| t.is_file())
                        && path
                            .extension()
                            .and_then(|e| e.to_str())
                            .is_some_and(|e| EXTENSIONS.contains(&e));
                    if is_manifest {
                        files.push(path.to_path_buf());
                    }
                }
                Err(e) => {
                    let path = match &e {
                        ignore::Error::WithPath { path, .. } => path.clone(),
                        _ => root.clone(),
                    };
                    errors.push((path, e.to_string()));
                }
            }
        }
    }
    files.sort();
    files.dedup();
    (files, errors)
}
