//! Errors of offline rendering, each naming file, document, object and field.

use std::fmt;

/// Where a document came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocLocation {
    /// File path as given.
    pub file: String,
    /// 1-based index of the document in its file.
    pub index: usize,
    /// `Kind namespace/name`, when known.
    pub object: Option<String>,
}

impl fmt::Display for DocLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file, self.index)?;
        if let Some(object) = &self.object {
            write!(f, " ({object})")?;
        }
        Ok(())
    }
}

/// A manifest that cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file or directory cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// Path as given.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML.
    #[error("{file}: invalid YAML: {message}")]
    Yaml {
        /// File path.
        file: String,
        /// Parser message, with line and column.
        message: String,
    },
    /// A document is not an object the renderer knows.
    #[error("{location}: {message}")]
    Document {
        /// The document.
        location: DocLocation,
        /// What is wrong.
        message: String,
    },
    /// A field has an invalid value.
    #[error("{location}: {field}: {message}")]
    Field {
        /// The document.
        location: DocLocation,
        /// Field path, e.g. `spec.ports[0].containerPort`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// No input files.
    #[error("no manifests found in {0}")]
    Empty(String),
}
