//! The `relay-operator` binary: `run`, `crd`, `render`, `version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use relay_operator::{crdgen, manifest};

/// Kubernetes operator for long-lived network services.
#[derive(Parser)]
#[command(name = "relay-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (or write one file per kind with --dir).
    Crd {
        /// Write `<crd-name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the Pods, Services, PVCs and ConfigMaps the operator would create (offline).
    Render {
        /// Manifest file or directory (repeatable); multi-document YAML.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd { dir: Some(dir) } => crdgen::write_crd_dir(&dir).map_err(|e| e.to_string()),
        Command::Crd { dir: None } => crdgen::crds_yaml().map(|y| print!("{y}")).map_err(|e| e.to_string()),
        Command::Render { files } => render(&files),
        Command::Version => {
            println!("relay-operator {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `render -f …`: everything or nothing — output is printed only when every input rendered.
fn render(files: &[PathBuf]) -> Result<(), String> {
    let documents = manifest::load_paths(files).map_err(|e| e.to_string())?;
    let rendering = manifest::render_documents(documents).map_err(|e| e.to_string())?;
    let mut out = String::new();
    for object in &rendering.objects {
        let yaml = serde_saphyr::to_string(&object.value).map_err(|e| e.to_string())?;
        out.push_str(&format!("---\n# Source: {}\n{yaml}", object.owner));
    }
    for warning in &rendering.warnings {
        eprintln!("warning: {warning}");
    }
    print!("{out}");
    Ok(())
}
