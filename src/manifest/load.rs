//! Reading `-f FILE|DIR` arguments into YAML documents.

use std::path::{Path, PathBuf};

use super::error::{DocLocation, ManifestError};

/// One YAML document of an input file.
#[derive(Clone, Debug)]
pub struct Document {
    /// Where it came from.
    pub location: DocLocation,
    /// The parsed content.
    pub value: serde_json::Value,
}

/// Read every file (directories: their `*.yaml`/`*.yml`/`*.json` files, sorted, recursively)
/// and split them into documents. Empty documents are skipped.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Document>, ManifestError> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    if files.is_empty() {
        let given: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(ManifestError::Empty(given.join(", ")));
    }
    let mut documents = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file)
            .map_err(|source| ManifestError::Read { path: name.clone(), source })?;
        documents.extend(parse_documents(&name, &text)?);
    }
    Ok(documents)
}

/// Split one file's text into documents.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let values: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| ManifestError::Yaml { file: file.into(), message: e.to_string() })?;
    Ok(values
        .into_iter()
        .enumerate()
        .filter(|(_, value)| !value.is_null())
        .map(|(i, value)| Document {
            location: DocLocation { file: file.into(), index: i + 1, object: None },
            value,
        })
        .collect())
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let read_err = |source| ManifestError::Read { path: path.display().to_string(), source };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(path).map_err(read_err)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for entry in entries {
        let is_manifest = entry.extension().is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json");
        if entry.is_dir() {
            collect_files(&entry, out)?;
        } else if is_manifest {
            out.push(entry);
        }
    }
    Ok(())
}
