//! Errors of offline rendering, each naming file, document, object and field.

use std::fmt;

/// Where a document came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocLocation {
    /// File path as given (`<stdin>` for `-`).
    pub file: String,
    /// 1-based line the document starts on (0 when unknown).
    pub line: usize,
    /// 1-based index of the document in its file.
    pub index: usize,
    /// `Kind namespace/name` (`Kind name` for an object without a namespace), when known.
    pub object: Option<String>,
}

impl fmt::Display for DocLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: document {}", self.file, self.line, self.index)?;
        } else {
            write!(f, "{}: document {}", self.file, self.index)?;
        }
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
    /// The inputs together exceed [`MAX_INPUT_BYTES`](super::MAX_INPUT_BYTES).
    #[error("{path}: the inputs exceed {limit} MiB in total; render reads manifest sets, not data dumps")]
    TooLarge {
        /// The input that crossed the limit.
        path: String,
        /// The limit in MiB.
        limit: usize,
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
    #[error("{location}: {}", FieldMessage { field, message })]
    Field {
        /// The document.
        location: DocLocation,
        /// Field path, e.g. `spec.ports[0].containerPort`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The inputs hold no document at all.
    #[error("no documents found in {0}")]
    NoDocuments(String),
}

/// `field: message`, or the message alone for the whole object.
struct FieldMessage<'a> {
    field: &'a str,
    message: &'a str,
}

impl fmt::Display for FieldMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Every error of a run, in input order; displayed one per line.
#[derive(Debug, thiserror::Error)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl From<ManifestError> for ManifestErrors {
    fn from(error: ManifestError) -> Self {
        Self(vec![error])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> DocLocation {
        DocLocation { file: "a.yaml".into(), line: 5, index: 2, object: Some("RelayService demo/web".into()) }
    }

    #[test]
    fn a_field_error_names_its_field() {
        let error = ManifestError::Field {
            location: location(),
            field: "spec.image".into(),
            message: "required".into(),
        };
        assert_eq!(error.to_string(), "a.yaml:5: document 2 (RelayService demo/web): spec.image: required");
    }

    #[test]
    fn an_error_of_the_whole_object_has_no_empty_field() {
        let error =
            ManifestError::Field { location: location(), field: String::new(), message: "invalid".into() };
        assert_eq!(error.to_string(), "a.yaml:5: document 2 (RelayService demo/web): invalid");
    }

    #[test]
    fn errors_are_listed_one_per_line() {
        let errors = ManifestErrors(vec![
            ManifestError::NoDocuments("a".into()),
            ManifestError::NoDocuments("b".into()),
        ]);
        assert_eq!(errors.to_string(), "no documents found in a\nno documents found in b");
    }
}
