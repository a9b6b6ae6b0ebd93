//! Logging setup (tracing + tracing-subscriber), written to stderr.
//!
//! * [`LogFormat::Text`]: human-readable lines with the operator's own span context,
//!   `reconcile{kind=RelayService namespace=ns name=web}: created pod pod=web-0`. kube-runtime's
//!   `reconciling object{object.ref=… object.reason=…}` span, which repeats the object, is left
//!   out, and so is the target of the operator's own events (it names a module, not a thing
//!   a user looks for); events of other crates keep theirs.
//! * [`LogFormat::Json`]: one flat JSON object per line. The fields of every span the event is
//!   in (outermost first, inner spans overriding) are merged into the top level, so a reconcile
//!   span's `namespace` and `name` appear on every line logged inside it:
//!
//!   ```json
//!   {"timestamp":"2025-01-01T00:00:00.000000Z","level":"INFO","target":"relay_operator::controller",
//!    "span":"reconcile","namespace":"ns","name":"web","message":"applied"}
//!   ```
//!
//!   tracing-subscriber's stock JSON format is *not* used because it nests span fields and
//!   writes the span's own name under the key `name`, which would collide with a `name` field.
//!   Event fields override span fields; `timestamp`, `level`, `target` and `span` override both.

use std::fmt;

use clap::ValueEnum;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use super::Error;

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line, span fields flattened into it.
    Json,
}

/// Installs the global tracing subscriber writing to stderr, filtered by `level`, an
/// [`EnvFilter`] directive string such as `info,kube=warn` or `relay_operator=debug`.
///
/// # Errors
/// [`Error::LogFilter`] if `level` does not parse, [`Error::Telemetry`] if a global
/// subscriber is already installed.
pub fn init(format: LogFormat, level: &str) -> Result<(), Error> {
    subscriber(format, level, std::io::stderr)?.try_init().map_err(|e| Error::Telemetry(e.to_string()))
}

/// Builds (but does not install) the subscriber [`init`] would install, writing to `writer`.
/// Useful to capture logs in tests with [`tracing::subscriber::with_default`].
///
/// # Errors
/// [`Error::LogFilter`] if `level` does not parse.
pub fn subscriber<W>(
    format: LogFormat,
    level: &str,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync>, Error>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(level)
        .map_err(|e| Error::LogFilter { filter: level.to_owned(), message: e.to_string() })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    Ok(match format {
        LogFormat::Text => Box::new(builder.with_ansi(false).event_format(CompactText).finish()),
        LogFormat::Json => Box::new(builder.fmt_fields(JsonFields::new()).event_format(FlatJson).finish()),
    })
}

/// Target prefix of the operator's own spans and events.
const OWN_TARGET: &str = "relay_operator";

/// Event formatter for text lines (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
struct CompactText;

impl<S, N> FormatEvent<S, N> for CompactText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        SystemTime.format_time(&mut writer)?;
        write!(writer, " {:>5} ", meta.level())?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root().filter(|s| s.metadata().target().starts_with(OWN_TARGET)) {
                writer.write_str(span.name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>().filter(|f| !f.is_empty()) {
                    write!(writer, "{{{fields}}}")?;
                }
                writer.write_str(": ")?;
            }
        }
        if !meta.target().starts_with(OWN_TARGET) {
            write!(writer, "{}: ", meta.target())?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Event formatter producing one flat JSON object per event (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
struct FlatJson;

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut obj = Map::new();
        let mut innermost = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                innermost = Some(span.name());
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<JsonFields>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&fields.fields)
                {
                    obj.extend(map);
                }
            }
        }
        event.record(&mut JsonVisitor(&mut obj));

        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        obj.insert("timestamp".into(), Value::String(timestamp));
        obj.insert("level".into(), Value::String(meta.level().to_string()));
        obj.insert("target".into(), Value::String(meta.target().to_owned()));
        if let Some(span) = innermost {
            obj.insert("span".into(), Value::String(span.to_owned()));
        }

        let line = serde_json::to_string(&Value::Object(obj)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// Collects an event's fields into a JSON map.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buf {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap().lines().map(str::to_owned).collect()
        }
    }

    fn capture(format: LogFormat, level: &str, f: impl FnOnce()) -> Vec<String> {
        let buf = Buf::default();
        let sub = subscriber(format, level, buf.clone()).unwrap();
        tracing::subscriber::with_default(sub, f);
        buf.lines()
    }

    #[test]
    fn json_lines_carry_span_fields() {
        let lines = capture(LogFormat::Json, "info", || {
            let span = tracing::info_span!("reconcile", namespace = "ns1", name = "web");
            let _g = span.enter();
            tracing::info!(replicas = 3, "applied");
            let inner = tracing::info_span!("apply", object = "StatefulSet/web");
            let _i = inner.enter();
            tracing::warn!(error = %"boom", "failed");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["namespace"], "ns1");
        assert_eq!(first["name"], "web");
        assert_eq!(first["message"], "applied");
        assert_eq!(first["replicas"], 3);
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["span"], "reconcile");
        assert!(first["timestamp"].as_str().unwrap().contains('T'));
        assert!(first["target"].as_str().unwrap().contains("telemetry"));

        let second: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["namespace"], "ns1");
        assert_eq!(second["name"], "web");
        assert_eq!(second["object"], "StatefulSet/web");
        assert_eq!(second["span"], "apply");
        assert_eq!(second["error"], "boom");
        assert_eq!(second["level"], "WARN");
    }

    #[test]
    fn json_without_span() {
        let lines = capture(LogFormat::Json, "info", || tracing::info!("plain"));
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["message"], "plain");
        assert!(v.get("span").is_none());
    }

    #[test]
    fn filter_directives_apply() {
        let lines = capture(LogFormat::Json, "warn,relay_operator::ops::telemetry=error", || {
            tracing::warn!("dropped");
            tracing::error!("kept");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("kept"));
    }

    #[test]
    fn text_lines_show_span_context() {
        let lines = capture(LogFormat::Text, "info", || {
            let kube = tracing::info_span!(target: "kube_runtime::controller", "reconciling object",
                object.ref = "RelayService.v1alpha1.relayops.io/web.ns1", object.reason = "object updated");
            let _k = kube.enter();
            let span =
                tracing::info_span!("reconcile", kind = "RelayService", namespace = "ns1", name = "web");
            let _g = span.enter();
            tracing::info!(pod = "web-0", "created pod");
            tracing::error!(target: "kube_client::client::builder", "failed with status 500");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (own, other) = (&lines[0], &lines[1]);
        assert!(own.ends_with(" INFO reconcile{kind=\"RelayService\" namespace=\"ns1\" name=\"web\"}: created pod pod=\"web-0\""), "{own}");
        assert!(other.ends_with("ERROR reconcile{kind=\"RelayService\" namespace=\"ns1\" name=\"web\"}: kube_client::client::builder: failed with status 500"), "{other}");
        assert!(!own.contains("object.ref") && own.len() < 120, "no repeated context: {own}");
    }

    #[test]
    fn invalid_filter_is_rejected() {
        let err = subscriber(LogFormat::Text, "info,[=bogus", io::sink).err().unwrap();
        assert!(matches!(err, Error::LogFilter { .. }), "{err:?}");
    }

    #[test]
    fn log_format_parses_from_cli_values() {
        assert_eq!(LogFormat::from_str("json", true).unwrap(), LogFormat::Json);
        assert_eq!(LogFormat::from_str("text", true).unwrap(), LogFormat::Text);
        assert!(LogFormat::from_str("xml", true).is_err());
    }
}
