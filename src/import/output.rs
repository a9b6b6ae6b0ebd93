//! The manifests as YAML documents, each with a comment saying where it came from.

use serde_json::Value;

/// One manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// Comment lines printed above it.
    pub comment: Option<String>,
    /// The object.
    pub value: Value,
}

/// Multi-document YAML: `---`, the comment, the object.
pub fn to_yaml(objects: &[Object]) -> Result<String, String> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        for line in object.comment.iter().flat_map(|c| c.lines()) {
            out.push_str(&format!("# {line}\n"));
        }
        out.push_str(&serde_saphyr::to_string(&object.value).map_err(|e| e.to_string())?);
    }
    Ok(out)
}
