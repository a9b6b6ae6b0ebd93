//! `ports` (every short and the long form) and `expose` → `spec.ports`.

use serde_json::{Value, json};

use super::super::report::Outcome;
use super::Ctx;

/// One container port as parsed from compose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedPort {
    /// Container port.
    pub target: u16,
    /// Host port or range, as written.
    pub published: Option<String>,
    /// Host address, as written.
    pub host_ip: Option<String>,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: &'static str,
    /// A name given in the long form.
    pub name: Option<String>,
}

/// Why a port cannot be mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortError {
    /// A container port range such as `9000-9002`.
    Range(String),
    /// Anything unparseable.
    Invalid(String),
}

fn protocol(text: &str) -> Option<&'static str> {
    match text.to_ascii_lowercase().as_str() {
        "" | "tcp" => Some("TCP"),
        "udp" => Some("UDP"),
        "sctp" => Some("SCTP"),
        _ => None,
    }
}

fn port_number(text: &str) -> Result<u16, PortError> {
    if text.contains('-') {
        return Err(PortError::Range(text.into()));
    }
    match text.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(PortError::Invalid(text.into())),
    }
}

/// Parse the short form `[[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]` (IPv6 hosts in brackets).
pub fn parse_short(text: &str) -> Result<ParsedPort, PortError> {
    let (spec, proto) = text.split_once('/').unwrap_or((text, ""));
    let protocol = protocol(proto).ok_or_else(|| PortError::Invalid(text.into()))?;
    let (host_ip, rest) = if let Some(after) = spec.strip_prefix('[') {
        let (ip, rest) = after.split_once("]:").ok_or_else(|| PortError::Invalid(text.into()))?;
        (Some(ip.to_string()), rest)
    } else {
        (None, spec)
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, published, target) = match (host_ip, parts.as_slice()) {
        (None, [target]) => (None, None, *target),
        (None, [published, target]) => (None, Some(*published), *target),
        (None, [ip, published, target]) => (Some(ip.to_string()), Some(*published), *target),
        (Some(ip), [published, target]) => (Some(ip), Some(*published), *target),
        _ => return Err(PortError::Invalid(text.into())),
    };
    let target = port_number(target)?;
    let published = published.filter(|p| !p.is_empty()).map(str::to_string);
    Ok(ParsedPort { target, published, host_ip, protocol, name: None })
}

/// Parse the long form `{target, published, host_ip, protocol, name, mode, app_protocol}`.
pub fn parse_long(value: &serde_json::Map<String, Value>) -> Result<ParsedPort, PortError> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let target = value.get("target").map(text).ok_or_else(|| PortError::Invalid("no target".into()))?;
    let target = port_number(&target)?;
    let protocol = protocol(&value.get("protocol").map(text).unwrap_or_default())
        .ok_or_else(|| PortError::Invalid("protocol".into()))?;
    Ok(ParsedPort {
        target,
        published: value.get("published").map(text),
        host_ip: value.get("host_ip").map(text),
        protocol,
        name: value.get("name").map(text),
    })
}

/// An IANA service name as Kubernetes wants it (≤ 15, lower case, a letter somewhere).
fn valid_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Collects `spec.ports`, one entry per (container port, protocol).
#[derive(Default)]
pub struct Ports {
    /// The entries, in the order first seen.
    pub entries: Vec<Value>,
    seen: Vec<(u16, &'static str)>,
}

impl Ports {
    fn add(&mut self, port: &ParsedPort) -> Result<String, usize> {
        if let Some(i) = self.seen.iter().position(|s| *s == (port.target, port.protocol)) {
            return Err(i);
        }
        let default = format!("{}-{}", port.protocol.to_ascii_lowercase(), port.target);
        let name = port
            .name
            .clone()
            .filter(|n| valid_port_name(n) && !self.entries.iter().any(|e| e["name"] == n.as_str()))
            .unwrap_or(default);
        self.entries.push(json!({"name": name, "containerPort": port.target, "protocol": port.protocol}));
        self.seen.push((port.target, port.protocol));
        Ok(name)
    }
}

/// Map `ports`.
pub fn ports(ctx: &mut Ctx<'_>, value: &Value, out: &mut Ports) {
    for (i, item) in value.as_array().into_iter().flatten().enumerate() {
        let key = format!("ports[{i}]");
        let parsed = match item {
            Value::String(s) => parse_short(s),
            Value::Number(n) => parse_short(&n.to_string()),
            Value::Object(o) => parse_long(o),
            _ => Err(PortError::Invalid(item.to_string())),
        };
        let port = match parsed {
            Ok(port) => port,
            Err(PortError::Range(range)) => {
                ctx.line(
                    &key,
                    Some(item),
                    Outcome::Reported,
                    format!("container port range {range}: not mapped; list the ports one by one"),
                );
                continue;
            }
            Err(PortError::Invalid(why)) => {
                ctx.line(
                    &key,
                    Some(item),
                    Outcome::Unsupported,
                    format!("cannot parse this port ({why}): not mapped"),
                );
                continue;
            }
        };
        let mut notes = Vec::new();
        if let Some(published) = &port.published {
            notes.push(format!(
                "published port {published} has no equivalent: the port is reachable inside the cluster through Service {}; expose it outside with a Service of type NodePort/LoadBalancer or an Ingress",
                ctx.name
            ));
        }
        if let Some(ip) = &port.host_ip {
            notes.push(format!("host address {ip} has no equivalent"));
        }
        if let Value::Object(o) = item {
            for extra in ["mode", "app_protocol"] {
                if let Some(v) = o.get(extra) {
                    notes.push(format!("{extra} {v} not mapped"));
                }
            }
        }
        let note = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
        match out.add(&port) {
            Ok(name) => ctx.line(
                &key,
                Some(item),
                Outcome::Mapped,
                format!(
                    "ports[{}] {name} containerPort {} {}{note}",
                    out.entries.len() - 1,
                    port.target,
                    port.protocol
                ),
            ),
            Err(existing) => ctx.line(
                &key,
                Some(item),
                Outcome::Mapped,
                format!("same container port as ports[{existing}]: one entry{note}"),
            ),
        }
    }
}

/// Map `expose` (container ports other services reach).
pub fn expose(ctx: &mut Ctx<'_>, value: &Value, out: &mut Ports) {
    for (i, item) in value.as_array().into_iter().flatten().enumerate() {
        let key = format!("expose[{i}]");
        let text = match item {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let (port, proto) = text.split_once('/').unwrap_or((&text, ""));
        let parsed = protocol(proto).ok_or_else(|| PortError::Invalid(text.clone())).and_then(|protocol| {
            port_number(port).map(|target| ParsedPort {
                target,
                published: None,
                host_ip: None,
                protocol,
                name: None,
            })
        });
        match parsed {
            Ok(port) => match out.add(&port) {
                Ok(name) => ctx.line(
                    &key,
                    Some(item),
                    Outcome::Mapped,
                    format!(
                        "ports[{}] {name} containerPort {} (Service {} port {})",
                        out.entries.len() - 1,
                        port.target,
                        ctx.name,
                        port.target
                    ),
                ),
                Err(existing) => {
                    ctx.line(&key, Some(item), Outcome::Mapped, format!("already ports[{existing}]"))
                }
            },
            Err(PortError::Range(range)) => ctx.line(
                &key,
                Some(item),
                Outcome::Reported,
                format!("port range {range}: not mapped; list the ports one by one"),
            ),
            Err(PortError::Invalid(why)) => ctx.line(
                &key,
                Some(item),
                Outcome::Unsupported,
                format!("cannot parse this port ({why}): not mapped"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(text: &str) -> ParsedPort {
        parse_short(text).unwrap()
    }

    #[test]
    fn every_short_form() {
        assert_eq!((short("80").target, short("80").published), (80, None));
        let p = short("8080:80");
        assert_eq!((p.target, p.published.as_deref(), p.protocol), (80, Some("8080"), "TCP"));
        let p = short("127.0.0.1:8080:80");
        assert_eq!((p.target, p.host_ip.as_deref()), (80, Some("127.0.0.1")));
        let p = short("8080:80/udp");
        assert_eq!((p.target, p.protocol), (80, "UDP"));
        let p = short("[::1]:6001:6001");
        assert_eq!((p.target, p.host_ip.as_deref()), (6001, Some("::1")));
        let p = short("127.0.0.1::5000");
        assert_eq!((p.target, p.published), (5000, None));
        assert_eq!(short("9000-9010:80").published.as_deref(), Some("9000-9010"));
        assert_eq!(parse_short("9000-9002:9000-9002"), Err(PortError::Range("9000-9002".into())));
        assert!(matches!(parse_short("80/xyz"), Err(PortError::Invalid(_))));
        assert!(matches!(parse_short("http"), Err(PortError::Invalid(_))));
    }

    #[test]
    fn long_form() {
        let value =
            json!({"target": 80, "published": "8080", "protocol": "udp", "name": "web", "mode": "host"});
        let p = parse_long(value.as_object().unwrap()).unwrap();
        assert_eq!(
            (p.target, p.published.as_deref(), p.protocol, p.name.as_deref()),
            (80, Some("8080"), "UDP", Some("web"))
        );
    }
}
