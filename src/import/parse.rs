//! Reading text: the compose YAML (anchors, aliases and `<<` merge keys are expanded by
//! serde-saphyr), dotenv files and shell words.

use serde_json::Value;

use super::ImportError;

/// Parse a compose file into a JSON value. Merge keys (`<<: *anchor`) are expanded by the
/// parser; explicit keys win over merged ones, as compose does.
pub fn compose(source: &str, text: &str) -> Result<Value, ImportError> {
    let value: Value = serde_saphyr::from_str(text)
        .map_err(|e| ImportError::Yaml { file: source.into(), message: e.to_string() })?;
    if !value.is_object() {
        return Err(ImportError::NotCompose { file: source.into() });
    }
    Ok(value)
}

/// One `KEY=VALUE` entry of a dotenv file; `None` when the line names a key without `=`.
pub type EnvEntry = (String, Option<String>);

/// Parse a dotenv file the way compose reads `--env-file` and `env_file:`: `KEY=VALUE`
/// lines, optional `export `, `#` comments, single quotes literal, double quotes with
/// `\n` `\t` `\"` `\\` escapes, unquoted values trimmed and cut at ` #`.
pub fn dotenv(text: &str) -> Vec<EnvEntry> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(raw) = lines.next() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, rest)) = line.split_once('=') else {
            out.push((line.to_string(), None));
            continue;
        };
        let key = key.trim().to_string();
        let rest = rest.trim_start();
        let value = if let Some(body) = rest.strip_prefix('\'') {
            quoted(body, '\'', &mut lines)
        } else if let Some(body) = rest.strip_prefix('"') {
            unescape(&quoted(body, '"', &mut lines))
        } else {
            let cut = rest.find(" #").map_or(rest, |i| &rest[..i]);
            cut.trim_end().to_string()
        };
        out.push((key, Some(value)));
    }
    out
}

/// The text up to the closing quote, continuing on following lines if needed.
fn quoted<'a>(first: &str, quote: char, lines: &mut impl Iterator<Item = &'a str>) -> String {
    let mut text = first.to_string();
    loop {
        if let Some(end) = closing(&text, quote) {
            text.truncate(end);
            return text;
        }
        match lines.next() {
            Some(next) => {
                text.push('\n');
                text.push_str(next);
            }
            None => return text,
        }
    }
}

fn closing(text: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if quote == '"' && c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        if c == quote && !escaped {
            return Some(i);
        }
        escaped = false;
    }
    None
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Split a command line into words like a POSIX shell without expansion: whitespace
/// separates, single quotes are literal, double quotes and backslashes escape. `None` for
/// an unterminated quote.
pub fn shell_words(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => word.push(other),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            word.push(chars.next()?);
                        }
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keys_are_expanded_and_explicit_keys_win() {
        let text = "x-common: &common\n  image: base:1\n  restart: always\nservices:\n  a:\n    <<: *common\n    image: mine:2\n  b:\n    <<: *common\n";
        let value = compose("t", text).unwrap();
        assert_eq!(value["services"]["a"]["image"], "mine:2");
        assert_eq!(value["services"]["a"]["restart"], "always");
        assert_eq!(value["services"]["b"]["image"], "base:1");
        assert!(value["services"]["a"].get("<<").is_none());
    }

    #[test]
    fn a_list_is_not_a_compose_file() {
        assert!(matches!(compose("t", "- a\n- b\n"), Err(ImportError::NotCompose { .. })));
        assert!(matches!(compose("t", "services: [\n"), Err(ImportError::Yaml { .. })));
    }

    #[test]
    fn dotenv_files() {
        let text =
            "# c\nA=1\nexport B = two words # note\nC='lit $X'\nD=\"x\\ny\"\nE=\nF\nG=\"multi\nline\"\n";
        let entries = dotenv(text);
        let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get("A"), Some(Some("1".into())));
        assert_eq!(get("B"), Some(Some("two words".into())));
        assert_eq!(get("C"), Some(Some("lit $X".into())));
        assert_eq!(get("D"), Some(Some("x\ny".into())));
        assert_eq!(get("E"), Some(Some(String::new())));
        assert_eq!(get("F"), Some(None));
        assert_eq!(get("G"), Some(Some("multi\nline".into())));
    }

    #[test]
    fn shell_words_split_like_a_shell() {
        assert_eq!(
            shell_words(r#"python -m "src.sched uler" 'a b' c\ d"#).unwrap(),
            ["python", "-m", "src.sched uler", "a b", "c d"]
        );
        assert_eq!(shell_words("").unwrap(), Vec::<String>::new());
        assert_eq!(shell_words("a 'b"), None);
    }
}
