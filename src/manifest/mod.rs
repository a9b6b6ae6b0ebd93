//! Offline input of `relay-operator render`: read multi-document YAML, validate custom
//! resources exactly as the API server would (the generated CRD schema, defaults and CEL
//! rules), resolve references among the inputs, and render every service.
//!
//! I/O is limited to reading the given inputs; everything after loading is pure. Each entry
//! point reports every error of its inputs, not just the first.
//! The controller reuses [`validate_service_spec`] for TestDeployment templates.

mod assume;
mod error;
mod load;
mod resolve;
mod schema;

use std::path::PathBuf;

pub use assume::AssumeExists;
pub use error::{DocLocation, ManifestError, ManifestErrors};
pub use load::{Document, Loaded, MAX_INPUT_BYTES, STDIN_ARG, load_paths, parse_documents};
pub use resolve::{RenderOptions, RenderedObject, Rendering};
pub use schema::{SchemaValidator, Violation, validate_service_spec};

/// Read `-f` inputs (files, directories, `-` for standard input) and render them: what
/// `relay-operator render` does before printing.
pub fn render_paths(paths: &[PathBuf], options: &RenderOptions) -> Result<Rendering, ManifestErrors> {
    render_loaded(load_paths(paths), options)
}

/// Render manifests held in memory as one multi-document YAML text named `file` in messages,
/// e.g. to check generated manifests.
pub fn render_text(file: &str, text: &str, options: &RenderOptions) -> Result<Rendering, ManifestErrors> {
    let documents = parse_documents(file, text)?;
    if documents.is_empty() {
        return Err(ManifestError::NoDocuments(file.into()).into());
    }
    render_documents(documents, options)
}

/// Validate, resolve and render parsed documents.
pub fn render_documents(
    documents: Vec<Document>,
    options: &RenderOptions,
) -> Result<Rendering, ManifestErrors> {
    resolve::render(documents, true, options).map_err(ManifestErrors)
}

/// Render what was loaded. When an input could not be read, the readable documents are still
/// checked one by one, but references are not resolved (their target may be the unreadable one).
fn render_loaded(loaded: Loaded, options: &RenderOptions) -> Result<Rendering, ManifestErrors> {
    let Loaded { documents, mut errors } = loaded;
    match resolve::render(documents, errors.is_empty(), options) {
        Ok(rendering) if errors.is_empty() => Ok(rendering),
        Ok(_) => Err(ManifestErrors(errors)),
        Err(more) => {
            errors.extend(more);
            Err(ManifestErrors(errors))
        }
    }
}
