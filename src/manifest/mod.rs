//! Offline input of `relay-operator render`: read multi-document YAML, validate custom
//! resources exactly as the API server would (the generated CRD schema, defaults and CEL
//! rules), resolve references among the inputs, and render every service.
//!
//! I/O is limited to reading the given files; everything after [`load_paths`] is pure.
//! The controller reuses [`validate_service_spec`] for TestDeployment templates.

mod error;
mod load;
mod resolve;
mod schema;

pub use error::{DocLocation, ManifestError};
pub use load::{Document, load_paths};
pub use resolve::{RenderedObject, Rendering, render_documents};
pub use schema::{SchemaValidator, Violation, validate_service_spec};
