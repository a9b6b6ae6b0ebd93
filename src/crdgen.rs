//! CRD generation: the YAML of `relay-operator crd` and of the files in `crds/`.

use std::path::Path;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::api;

/// Errors of CRD generation.
#[derive(Debug, thiserror::Error)]
pub enum CrdGenError {
    /// A CRD could not be serialized.
    #[error("cannot serialize CRD {name}: {source}")]
    Serialize {
        /// CRD name.
        name: String,
        /// Cause.
        #[source]
        source: serde_saphyr::SerializeError,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// Target path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Each CRD as `(file name, YAML document starting with "---")`, in a stable order.
pub fn crd_documents() -> Result<Vec<(String, String)>, CrdGenError> {
    api::crds().iter().map(crd_document).collect()
}

fn crd_document(crd: &CustomResourceDefinition) -> Result<(String, String), CrdGenError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let yaml = serde_saphyr::to_string(crd)
        .map_err(|source| CrdGenError::Serialize { name: name.clone(), source })?;
    Ok((format!("{name}.yaml"), format!("---\n{yaml}")))
}

/// All CRDs as one multi-document YAML stream (the files of `crds/`, concatenated).
pub fn crds_yaml() -> Result<String, CrdGenError> {
    Ok(crd_documents()?.into_iter().map(|(_, doc)| doc).collect())
}

/// Write one file per CRD into `dir`.
pub fn write_crd_dir(dir: &Path) -> Result<(), CrdGenError> {
    let write_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| CrdGenError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    for (file, doc) in crd_documents()? {
        let path = dir.join(file);
        std::fs::write(&path, doc).map_err(write_err(&path))?;
    }
    Ok(())
}
