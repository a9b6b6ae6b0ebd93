//! `healthcheck` → a HealthPolicy: `curl -f`/`wget` against localhost become HTTP checks,
//! anything else an exec check; Docker's timings carry over one to one.

use serde_json::{Map, Value, json};

use super::super::parse::shell_words;
use super::super::report::{Outcome, show};
use super::Ctx;

/// An HTTP check recognised in a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    /// `HTTP` or `HTTPS`.
    pub scheme: &'static str,
    /// Container port.
    pub port: u16,
    /// Path and query.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The tool, for the report.
    pub tool: &'static str,
}

/// What a compose `test` runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// An HTTP GET.
    Http(HttpTarget),
    /// A command run without a shell.
    Exec(Vec<String>),
    /// `NONE`: the image's check is disabled.
    Disabled,
}

/// Parse a compose `test`: `["CMD", …]`, `["CMD-SHELL", "…"]`, a string (`CMD-SHELL`), `["NONE"]`.
pub fn parse_test(test: &Value) -> Result<Check, String> {
    let (argv, shell) = match test {
        Value::String(s) => (None, Some(s.clone())),
        Value::Array(items) => {
            let words: Vec<String> = items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            match words.first().map(String::as_str) {
                Some("NONE") => return Ok(Check::Disabled),
                Some("CMD") if words.len() > 1 => (Some(words[1..].to_vec()), None),
                Some("CMD-SHELL") if words.len() > 1 => (None, Some(words[1..].join(" "))),
                _ => return Err("a test list must start with CMD, CMD-SHELL or NONE".into()),
            }
        }
        _ => return Err("test must be a string or a list".into()),
    };
    if let Some(argv) = argv {
        return Ok(http_target(&argv).map_or(Check::Exec(argv), Check::Http));
    }
    let script = shell.unwrap_or_default();
    if let Some(target) = simple_command(&script).and_then(|words| http_target(&words)) {
        return Ok(Check::Http(target));
    }
    Ok(Check::Exec(vec!["/bin/sh".into(), "-c".into(), script]))
}

/// The words of a shell line that is a single command (optionally `… || exit 1`).
fn simple_command(script: &str) -> Option<Vec<String>> {
    if script.contains("$(") || script.contains('`') {
        return None;
    }
    let mut words = shell_words(script)?;
    if words.len() >= 3 && words[words.len() - 3..] == ["||", "exit", "1"] {
        words.truncate(words.len() - 3);
    }
    let operator = |w: &String| w.contains(['|', '&', ';', '>', '<']) || w.starts_with('$');
    (!words.is_empty() && !words.iter().any(operator)).then_some(words)
}

fn tool(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// `curl -f URL` or `wget [--spider|-O -] URL` against the container itself.
pub fn http_target(argv: &[String]) -> Option<HttpTarget> {
    let (name, args) = argv.split_first()?;
    let (url, headers, tool) = match tool(name) {
        "curl" => {
            let (url, headers) = curl(args)?;
            (url, headers, "curl -f")
        }
        "wget" => {
            let (url, headers) = wget(args)?;
            (url, headers, "wget")
        }
        _ => return None,
    };
    let url = if url.contains("://") { url } else { format!("http://{url}") };
    let parsed = url::Url::parse(&url).ok()?;
    let scheme = match parsed.scheme() {
        "http" => "HTTP",
        "https" => "HTTPS",
        _ => return None,
    };
    let local = matches!(parsed.host_str()?, "localhost" | "127.0.0.1" | "0.0.0.0" | "[::1]" | "::1");
    if !local || !parsed.username().is_empty() || parsed.password().is_some() {
        return None;
    }
    let port = parsed.port_or_known_default()?;
    let mut path = parsed.path().to_string();
    if let Some(query) = parsed.query() {
        path = format!("{path}?{query}");
    }
    Some(HttpTarget { scheme, port, path, headers, tool })
}

type UrlAndHeaders = (String, Vec<(String, String)>);

fn header(text: &str) -> Option<(String, String)> {
    let (name, value) = text.split_once(':')?;
    Some((name.trim().to_string(), value.trim().to_string()))
}

/// A command's arguments, walked once; a flag's value is inline (`--flag=v`, `-Hv`) or the
/// next argument.
struct ArgCursor<'a> {
    args: &'a [String],
    next: usize,
}

impl<'a> ArgCursor<'a> {
    fn new(args: &'a [String]) -> Self {
        Self { args, next: 0 }
    }

    fn next_arg(&mut self) -> Option<&'a String> {
        let arg = self.args.get(self.next)?;
        self.next += 1;
        Some(arg)
    }

    /// The value of the flag just read: `inline` if given, else the next argument.
    fn value(&mut self, inline: Option<&str>) -> Option<String> {
        match inline.filter(|v| !v.is_empty()) {
            Some(value) => Some(value.to_string()),
            None => self.next_arg().cloned(),
        }
    }
}

/// `--flag` or `--flag=value` split into the flag and its inline value.
fn long_flag(arg: &str) -> Option<(&str, Option<&str>)> {
    let long = arg.strip_prefix("--")?;
    Some(long.split_once('=').map_or((long, None), |(flag, value)| (flag, Some(value))))
}

/// The URL and headers of a `curl` call that fails on HTTP errors; `None` otherwise.
fn curl(args: &[String]) -> Option<UrlAndHeaders> {
    let (mut fail, mut url, mut headers) = (false, None, Vec::new());
    let mut cursor = ArgCursor::new(args);
    while let Some(arg) = cursor.next_arg() {
        if let Some((flag, inline)) = long_flag(arg) {
            match flag {
                "fail" | "fail-with-body" => fail = true,
                "silent" | "show-error" | "location" | "insecure" | "no-progress-meter" | "compressed"
                | "ipv4" | "ipv6" | "http1.1" | "no-buffer" | "verbose" => {}
                "output" | "max-time" | "connect-timeout" | "write-out" | "retry" | "retry-delay"
                | "retry-max-time" => {
                    cursor.value(inline)?;
                }
                "header" => headers.push(header(&cursor.value(inline)?)?),
                "user-agent" => headers.push(("User-Agent".into(), cursor.value(inline)?)),
                "request" => {
                    if cursor.value(inline)? != "GET" {
                        return None;
                    }
                }
                "url" => url = Some(cursor.value(inline)?),
                _ => return None,
            }
        } else if let Some(letters) = arg.strip_prefix('-').filter(|l| !l.is_empty()) {
            for (j, c) in letters.char_indices() {
                match c {
                    'f' => fail = true,
                    's' | 'S' | 'L' | 'k' | 'q' | 'v' | '4' | '6' => {}
                    'o' | 'm' | 'w' | 'H' | 'X' | 'A' => {
                        let value = cursor.value(Some(&letters[j + 1..]))?;
                        match c {
                            'H' => headers.push(header(&value)?),
                            'A' => headers.push(("User-Agent".into(), value)),
                            'X' if value != "GET" => return None,
                            _ => {}
                        }
                        break;
                    }
                    _ => return None,
                }
            }
        } else if url.replace(arg.clone()).is_some() {
            return None;
        }
    }
    fail.then_some(())?;
    Some((url?, headers))
}

/// The URL and headers of a `wget` call (wget fails on HTTP errors by itself).
fn wget(args: &[String]) -> Option<UrlAndHeaders> {
    let (mut url, mut headers) = (None, Vec::new());
    let mut cursor = ArgCursor::new(args);
    while let Some(arg) = cursor.next_arg() {
        if let Some((flag, inline)) = long_flag(arg) {
            match flag {
                "spider"
                | "quiet"
                | "no-verbose"
                | "server-response"
                | "no-check-certificate"
                | "inet4-only"
                | "inet6-only" => {}
                "output-document" | "timeout" | "tries" | "output-file" | "wait" => {
                    cursor.value(inline)?;
                }
                "header" => headers.push(header(&cursor.value(inline)?)?),
                "user-agent" => headers.push(("User-Agent".into(), cursor.value(inline)?)),
                _ => return None,
            }
        } else if arg == "-nv" {
        } else if let Some(letters) = arg.strip_prefix('-').filter(|l| !l.is_empty()) {
            for (j, c) in letters.char_indices() {
                match c {
                    'q' | 'S' | '4' | '6' => {}
                    'O' | 'T' | 't' | 'U' | 'o' => {
                        let value = cursor.value(Some(&letters[j + 1..]))?;
                        if c == 'U' {
                            headers.push(("User-Agent".into(), value));
                        }
                        break;
                    }
                    _ => return None,
                }
            }
        } else if url.replace(arg.clone()).is_some() {
            return None;
        }
    }
    Some((url?, headers))
}

/// A compose (Go) duration such as `1m30s`, `1.5s` or `500ms`, as a HealthPolicy duration
/// (whole milliseconds, rounded up).
pub fn duration(text: &str) -> Option<String> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += number * scale;
        rest = &rest[unit_len..];
    }
    let ms = (nanos / 1e6).ceil() as u64;
    format!("{ms}ms").parse::<crate::api::Duration>().ok().map(|d| d.to_string())
}

/// Map `healthcheck` to a HealthPolicy spec; `None` when there is no check to run.
pub fn map(ctx: &mut Ctx<'_>, value: &Value, policy_name: &str) -> Option<Value> {
    let Some(health) = value.as_object() else {
        ctx.line("healthcheck", Some(value), Outcome::Unsupported, "not a mapping: ignored");
        return None;
    };
    let disabled = health.get("disable").and_then(Value::as_bool) == Some(true);
    let check = if disabled {
        ctx.line(
            "healthcheck.disable",
            health.get("disable"),
            Outcome::Mapped,
            "no HealthPolicy: the check is disabled (pods are Ready once running)",
        );
        None
    } else {
        match health.get("test").map(parse_test) {
            None => {
                ctx.line(
                    "healthcheck",
                    None::<String>,
                    Outcome::Reported,
                    "no test: Docker runs the image's HEALTHCHECK, which import cannot see; no HealthPolicy (write one with the image's check)",
                );
                None
            }
            Some(Err(why)) => {
                ctx.line(
                    "healthcheck.test",
                    health.get("test"),
                    Outcome::Unsupported,
                    format!("{why}: no HealthPolicy"),
                );
                None
            }
            Some(Ok(Check::Disabled)) => {
                ctx.line(
                    "healthcheck.test",
                    health.get("test"),
                    Outcome::Mapped,
                    "NONE: no HealthPolicy (pods are Ready once running)",
                );
                None
            }
            Some(Ok(check)) => Some(check),
        }
    };
    let mut spec = Map::new();
    if let Some(check) = &check {
        let detail = match check {
            Check::Http(t) => {
                let mut http = json!({"path": t.path, "port": t.port, "scheme": t.scheme});
                if !t.headers.is_empty() {
                    http["headers"] = t.headers.iter().map(|(n, v)| json!({"name": n, "value": v})).collect();
                }
                spec.insert("http".into(), http);
                format!(
                    "HealthPolicy {policy_name} http GET {}://localhost:{}{} ({} recognised as an HTTP check: a readiness probe, 2xx/3xx healthy)",
                    t.scheme.to_ascii_lowercase(),
                    t.port,
                    t.path,
                    t.tool
                )
            }
            Check::Exec(argv) => {
                spec.insert("exec".into(), json!({"command": argv}));
                format!(
                    "HealthPolicy {policy_name} exec {} (a readiness probe running the command)",
                    show(&json!(argv))
                )
            }
            Check::Disabled => String::new(),
        };
        ctx.line("healthcheck.test", health.get("test"), Outcome::Mapped, detail);
    }
    for (key, item) in health {
        let report_key = format!("healthcheck.{key}");
        match key.as_str() {
            "test" | "disable" => {}
            "interval" | "timeout" | "start_period" | "start_interval" => {
                let field = match key.as_str() {
                    "start_period" => "startPeriod",
                    "start_interval" => "startInterval",
                    other => other,
                };
                // The startup probe that uses it exists only when unhealthy containers restart.
                let effect = if key == "start_interval" {
                    " (the startup probe's period; it takes effect with restartUnhealthy: true)"
                } else {
                    ""
                };
                let parsed = item.as_str().and_then(duration);
                match (&check, parsed) {
                    (None, _) => {
                        ctx.line(&report_key, Some(item), Outcome::Reported, "no check to time: not used")
                    }
                    (Some(_), Some(d)) => {
                        ctx.line(
                            &report_key,
                            Some(item),
                            Outcome::Mapped,
                            format!("HealthPolicy {policy_name} {field} {d}{effect}"),
                        );
                        spec.insert(field.into(), Value::String(d));
                    }
                    (Some(_), None) => ctx.line(
                        &report_key,
                        Some(item),
                        Outcome::Unsupported,
                        "not a duration: Docker's default applies",
                    ),
                }
            }
            "retries" => {
                let retries = item.as_i64().or_else(|| item.as_str().and_then(|s| s.parse().ok()));
                match (&check, retries) {
                    (None, _) => ctx.line(&report_key, Some(item), Outcome::Reported, "no check: not used"),
                    (Some(_), Some(n)) => {
                        let clamped = n.clamp(1, 100);
                        let note = if clamped == n {
                            String::new()
                        } else {
                            format!(" (clamped from {n} to 1–100)")
                        };
                        ctx.line(
                            &report_key,
                            Some(item),
                            Outcome::Mapped,
                            format!("HealthPolicy {policy_name} retries {clamped}{note}"),
                        );
                        spec.insert("retries".into(), json!(clamped));
                    }
                    (Some(_), None) => ctx.line(
                        &report_key,
                        Some(item),
                        Outcome::Unsupported,
                        "not a number: Docker's default 3 applies",
                    ),
                }
            }
            _ => {
                ctx.line(&report_key, Some(item), Outcome::Unsupported, "unknown healthcheck key: not mapped")
            }
        }
    }
    check.map(|_| {
        ctx.line(
            "healthcheck",
            None::<String>,
            Outcome::Mapped,
            format!("healthPolicyRef {policy_name}; restartUnhealthy false, as Docker does not restart unhealthy containers (Ready is compose's \"healthy\")"),
        );
        Value::Object(spec)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(test: Value) -> HttpTarget {
        match parse_test(&test).unwrap() {
            Check::Http(t) => t,
            other => panic!("{test}: {other:?}"),
        }
    }

    fn exec(test: Value) -> Vec<String> {
        match parse_test(&test).unwrap() {
            Check::Exec(argv) => argv,
            other => panic!("{test}: {other:?}"),
        }
    }

    #[test]
    fn http_checks_are_recognised() {
        let t = http(json!(["CMD", "curl", "-f", "http://localhost:8000/health"]));
        assert_eq!((t.port, t.path.as_str(), t.scheme), (8000, "/health", "HTTP"));
        let t = http(json!(["CMD-SHELL", "curl --silent --fail localhost:9200/_cluster/health || exit 1"]));
        assert_eq!((t.port, t.path.as_str()), (9200, "/_cluster/health"));
        let t = http(json!("curl -fsS -H 'Host: example.com' http://127.0.0.1/ping?full=1"));
        assert_eq!((t.port, t.path.as_str()), (80, "/ping?full=1"));
        assert_eq!(t.headers, [("Host".to_string(), "example.com".to_string())]);
        let t = http(json!([
            "CMD",
            "wget",
            "--no-verbose",
            "--tries=1",
            "--spider",
            "http://localhost:8000/health"
        ]));
        assert_eq!((t.port, t.tool), (8000, "wget"));
        let t = http(json!(["CMD-SHELL", "wget -q -O - http://localhost:3000/api/health || exit 1"]));
        assert_eq!(t.path, "/api/health");
        let t = http(json!("wget -qO- https://localhost:8443/"));
        assert_eq!((t.port, t.scheme), (8443, "HTTPS"));
    }

    #[test]
    fn other_commands_are_exec_checks() {
        assert_eq!(exec(json!(["CMD", "pg_isready"])), ["pg_isready"]);
        // Without -f curl succeeds on a 500: it stays a command.
        assert_eq!(exec(json!(["CMD", "curl", "http://localhost/"]))[0], "curl");
        // Another host is not the container's own endpoint.
        assert_eq!(exec(json!(["CMD", "curl", "-f", "http://db:5432/"]))[0], "curl");
        assert_eq!(
            exec(json!(["CMD-SHELL", "valkey-cli ping | grep PONG"])),
            ["/bin/sh", "-c", "valkey-cli ping | grep PONG"]
        );
        assert_eq!(exec(json!("curl -f http://localhost/$(hostname)"))[0], "/bin/sh");
        assert_eq!(parse_test(&json!(["NONE"])).unwrap(), Check::Disabled);
        assert!(parse_test(&json!(["pg_isready"])).is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(duration("10s").as_deref(), Some("10s"));
        assert_eq!(duration("1m30s").as_deref(), Some("1m30s"));
        assert_eq!(duration("90s").as_deref(), Some("1m30s"));
        assert_eq!(duration("1.5s").as_deref(), Some("1s500ms"));
        assert_eq!(duration("100us").as_deref(), Some("1ms"));
        assert_eq!(duration("soon"), None);
    }
}
