//! `relay-operator import`: a docker-compose file turned into RelayServices, HealthPolicies
//! and Secret templates, with a report of every compose key.
//!
//! Pure: the caller reads the files. `parse` reads YAML and dotenv text, `interpolate`
//! substitutes `${VAR}`, `project` selects services (profiles) and resolves `extends`,
//! `map` turns each service into manifests, [`report`] says what became of every key and
//! `output` prints the manifests.

mod interpolate;
mod map;
mod names;
mod output;
mod parse;
mod project;
pub mod report;

use std::collections::BTreeMap;

pub use output::Object;
pub use report::{Line, Outcome, Report};

/// Where the values of `environment` go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvTarget {
    /// `spec.config.data`: a file under `config.mountPath`, hot-reloadable through the
    /// reload hook; the process does not see these keys as environment variables.
    #[default]
    Config,
    /// `spec.env`: environment variables of the container, as compose sets them.
    Env,
}

/// What `import` needs besides the compose text.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Namespace written into every object (none: kubectl's current namespace).
    pub namespace: Option<String>,
    /// Variables for `${VAR}` interpolation (the `--env-file`).
    pub variables: BTreeMap<String, String>,
    /// Active profiles (`--profile`).
    pub profiles: Vec<String>,
    /// Where `environment` values go.
    pub env_target: EnvTarget,
}

/// Reads a file named in the compose file (`env_file:`), relative to the compose file.
pub trait FileReader {
    /// The file's text, or why it cannot be read.
    fn read(&self, path: &str) -> Result<String, String>;
}

/// A compose file that cannot be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not valid YAML.
    #[error("{file}: invalid YAML: {message}")]
    Yaml {
        /// File name as given.
        file: String,
        /// Parser message with line and column.
        message: String,
    },
    /// Valid YAML, but not a mapping.
    #[error("{file}: not a compose file (expected a mapping with `services:`)")]
    NotCompose {
        /// File name as given.
        file: String,
    },
}

/// The result of an import.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The manifests, in a stable order: per service (by RelayService name) its Secret
    /// templates, HealthPolicy and RelayService; shared Secret templates first.
    pub objects: Vec<output::Object>,
    /// What became of every compose key.
    pub report: Report,
}

impl Imported {
    /// The manifests as multi-document YAML, with comments, ready for `render -f -`.
    pub fn to_yaml(&self) -> Result<String, String> {
        output::to_yaml(&self.objects)
    }
}

/// The variables of a dotenv file (`--env-file`); keys without `=` are left out.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    parse::dotenv(text).into_iter().filter_map(|(k, v)| Some((k, v?))).collect()
}

/// Import a compose file. `source` names it in messages; `files` reads `env_file`s.
pub fn import_compose(
    source: &str,
    text: &str,
    options: &ImportOptions,
    files: &dyn FileReader,
) -> Result<Imported, ImportError> {
    let mut compose = parse::compose(source, text)?;
    let mut report = Report::default();
    interpolate::tree(&mut compose, &options.variables, &mut report);
    // `extends.file`: the other file's services, interpolated with the same variables; its
    // interpolation findings are reported as top-level lines naming the file.
    let findings = std::cell::RefCell::new(Vec::new());
    let other = |path: &str| -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let text = files.read(path)?;
        let mut value = parse::compose(path, &text).map_err(|e| e.to_string())?;
        let mut found = Report::default();
        interpolate::tree(&mut value, &options.variables, &mut found);
        findings.borrow_mut().extend(found.lines.into_iter().map(|line| Line {
            service: None,
            key: format!("{} (in {path})", line.key),
            ..line
        }));
        Ok(value.get("services").and_then(|s| s.as_object()).cloned().unwrap_or_default())
    };
    let project = project::resolve(&compose, &options.profiles, &other, &mut report);
    report.lines.extend(findings.into_inner());
    let objects = map::project(&project, options, files, &mut report);
    Ok(Imported { objects, report })
}
