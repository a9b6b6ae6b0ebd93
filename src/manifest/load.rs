//! Reading `-f FILE|DIR|-` arguments into YAML documents.

use std::io::Read;
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

/// What the inputs gave: the documents of every readable file and the errors of the others.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Documents in input order.
    pub documents: Vec<Document>,
    /// Files or directories that could not be read or parsed.
    pub errors: Vec<ManifestError>,
}

/// Most bytes read from all inputs together: far above any manifest set, low enough that an
/// absurd input (a log, a dump, a document-separator storm) fails fast instead of eating memory.
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;

/// The argument that stands for standard input.
pub const STDIN_ARG: &str = "-";

/// How standard input is named in messages.
pub const STDIN_NAME: &str = "<stdin>";

/// Read every input — a file, a directory (its `*.yaml`/`*.yml`/`*.json` files, sorted,
/// recursively) or `-` for standard input — and split them into documents. Empty documents
/// are skipped. Every unreadable or unparsable input is reported, not just the first; inputs
/// that hold no document at all are an error.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    load_with_stdin(paths, &mut std::io::stdin().lock())
}

/// [`load_paths`] with `-` read from `stdin`.
pub fn load_with_stdin(paths: &[PathBuf], stdin: &mut dyn Read) -> Loaded {
    let mut loaded = Loaded::default();
    let mut files = Vec::new();
    for path in paths {
        if let Err(error) = collect_files(path, &mut files) {
            loaded.errors.push(error);
        }
    }
    let mut stdin_read = false;
    let mut total = 0usize;
    for file in files {
        let (name, text) = if file.as_os_str() == STDIN_ARG {
            if std::mem::replace(&mut stdin_read, true) {
                continue;
            }
            (STDIN_NAME.to_string(), read_limited(stdin, STDIN_NAME, &mut total))
        } else {
            let name = file.display().to_string();
            let text = std::fs::File::open(&file)
                .map_err(|source| ManifestError::Read { path: name.clone(), source })
                .and_then(|mut f| read_limited(&mut f, &name, &mut total));
            (name, text)
        };
        match text.and_then(|text| parse_documents(&name, &text)) {
            Ok(documents) => loaded.documents.extend(documents),
            Err(error @ ManifestError::TooLarge { .. }) => {
                loaded.errors.push(error);
                break;
            }
            Err(error) => loaded.errors.push(error),
        }
    }
    if loaded.documents.is_empty() && loaded.errors.is_empty() {
        let given: Vec<String> = paths
            .iter()
            .map(|p| if p.as_os_str() == STDIN_ARG { STDIN_NAME.into() } else { p.display().to_string() })
            .collect();
        loaded.errors.push(ManifestError::NoDocuments(given.join(", ")));
    }
    loaded
}

/// Read one input as UTF-8, counting its bytes against [`MAX_INPUT_BYTES`].
fn read_limited(reader: &mut dyn Read, name: &str, total: &mut usize) -> Result<String, ManifestError> {
    let room = MAX_INPUT_BYTES.saturating_sub(*total);
    let mut bytes = Vec::new();
    reader
        .take(room as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ManifestError::Read { path: name.into(), source })?;
    if bytes.len() > room {
        return Err(ManifestError::TooLarge { path: name.into(), limit: MAX_INPUT_BYTES / (1024 * 1024) });
    }
    *total += bytes.len();
    String::from_utf8(bytes).map_err(|e| ManifestError::Read {
        path: name.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// Split one file's text into documents (empty ones are skipped), each located by its
/// number in the file and the line it starts on.
///
/// The YAML parser's document budget grows with the text (one document per 16 bytes, at
/// least 1,024), so a real file never hits it while a separator storm still does.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_documents: (text.len() / 16).max(1_024) },
        with_snippet: false,
    };
    let values: Vec<serde_saphyr::Spanned<serde_json::Value>> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
            let mut message = e.to_string();
            if message.contains("budget breached") {
                message.push_str(
                    " (limits against absurd inputs: one document per 16 bytes, 250,000 nodes and 64 levels \
                         of nesting per document)",
                );
            }
            ManifestError::Yaml { file: file.into(), message }
        })?;
    let numbering = DocumentNumbering::of(text);
    Ok(values
        .into_iter()
        .filter(|spanned| !spanned.value.is_null())
        .map(|spanned| {
            let line = spanned.referenced.line() as usize;
            Document {
                location: DocLocation { file: file.into(), line, index: numbering.index(line), object: None },
                value: spanned.value,
            }
        })
        .collect())
}

/// Numbers documents as a reader counts them, empty ones included (the parser skips those).
struct DocumentNumbering {
    /// Lines (1-based) holding a `---` document marker.
    markers: Vec<usize>,
    /// Whether content precedes the first marker (an implicit first document).
    implicit_first: bool,
}

impl DocumentNumbering {
    fn of(text: &str) -> Self {
        let mut markers = Vec::new();
        let mut implicit_first = false;
        for (number, line) in text.lines().enumerate() {
            let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
            if is_marker {
                markers.push(number + 1);
            } else if markers.is_empty() {
                let trimmed = line.trim();
                implicit_first |= !(trimmed.is_empty() || trimmed.starts_with('#') || line.starts_with('%'));
            }
        }
        Self { markers, implicit_first }
    }

    /// The number of the document whose content starts on `line`.
    fn index(&self, line: usize) -> usize {
        let markers_before = self.markers.iter().filter(|marker| **marker <= line).count();
        (markers_before + usize::from(self.implicit_first)).max(1)
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    if path.as_os_str() == STDIN_ARG {
        out.push(path.to_path_buf());
        return Ok(());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(paths: &[&str], stdin: &str) -> Loaded {
        let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        load_with_stdin(&paths, &mut stdin.as_bytes())
    }

    #[test]
    fn dash_reads_standard_input_once() {
        let loaded = load(&["-", "-"], "kind: A\n---\nkind: B\n");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let files: Vec<(&str, usize)> =
            loaded.documents.iter().map(|d| (d.location.file.as_str(), d.location.index)).collect();
        assert_eq!(files, [("<stdin>", 1), ("<stdin>", 2)]);
    }

    #[test]
    fn no_documents_is_an_error_naming_the_inputs() {
        let loaded = load(&["-"], "# only a comment\n---\n");
        assert_eq!(loaded.errors.len(), 1);
        assert_eq!(loaded.errors[0].to_string(), "no documents found in <stdin>");
    }

    #[test]
    fn every_unreadable_input_is_reported() {
        let loaded = load(&["/nonexistent/a.yaml", "-", "/nonexistent/b.yaml"], "kind: A\n");
        let messages: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("/nonexistent/a.yaml: cannot read"));
        assert!(messages[1].starts_with("/nonexistent/b.yaml: cannot read"));
        assert_eq!(loaded.documents.len(), 1);
    }

    #[test]
    fn documents_are_numbered_as_written_with_their_line() {
        let text = "# leading comment\n---\na: 1\n---\n---\n# empty above\nb: 2\n--- {c: 3}\n";
        let located: Vec<(usize, usize)> = parse_documents("f.yaml", text)
            .expect("parses")
            .iter()
            .map(|d| (d.location.index, d.location.line))
            .collect();
        assert_eq!(located, [(1, 3), (3, 7), (4, 8)]);
        let implicit = parse_documents("g.yaml", "a: 1\n---\nb: 2\n").expect("parses");
        assert_eq!(implicit.iter().map(|d| d.location.index).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn thousands_of_documents_in_one_file_are_read() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n".repeat(5_000);
        let documents = parse_documents("big.yaml", &text).expect("a large repo parses");
        assert_eq!(documents.len(), 5_000);
    }

    #[test]
    fn a_document_separator_storm_is_refused() {
        let text = "---\n".repeat(200_000);
        match parse_documents("storm.yaml", &text) {
            Err(ManifestError::Yaml { message, .. }) => {
                assert!(message.contains("limits against absurd inputs"), "{message}")
            }
            other => panic!("accepted a separator storm: {other:?}"),
        }
    }

    #[test]
    fn oversized_input_is_refused() {
        let mut endless = std::io::repeat(b'#');
        let paths = [PathBuf::from("-")];
        let loaded = load_with_stdin(&paths, &mut endless);
        assert!(matches!(loaded.errors.as_slice(), [ManifestError::TooLarge { .. }]), "{:?}", loaded.errors);
    }
}
