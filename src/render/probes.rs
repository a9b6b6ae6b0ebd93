//! Health check → container probes (the mapping table in the README).
//!
//! | check field   | readinessProbe     | livenessProbe (`restartUnhealthy`) | startupProbe (`restartUnhealthy`, `startPeriod` > 0) |
//! |---------------|--------------------|------------------------------------|------------------------------------------------------|
//! | `interval`    | `periodSeconds`    | `periodSeconds`                    | `periodSeconds`                                      |
//! | `timeout`     | `timeoutSeconds`   | `timeoutSeconds`                   | `timeoutSeconds`                                     |
//! | `retries`     | `failureThreshold` | `failureThreshold`                 | `failureThreshold` = ⌈startPeriod / its period⌉ + retries |
//! | `startPeriod` | —                  | —                                  | (see above)                                          |
//! | `startInterval` | —                | —                                  | `periodSeconds` (instead of `interval`)              |

use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, HTTPHeader, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{Duration, HealthPolicySpec, HttpScheme};

/// The probes of the service container.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSet {
    /// Always present: readiness follows the check.
    pub readiness: Probe,
    /// Present when unhealthy containers are restarted.
    pub liveness: Option<Probe>,
    /// Present when restarting and a start period is given: protects slow starters.
    pub startup: Option<Probe>,
}

/// Map a health check onto probes.
pub fn probes_for(check: &HealthPolicySpec) -> ProbeSet {
    // Probes count whole seconds: a fraction rounds up.
    let seconds = |value: Duration| {
        let d = value.get();
        i32::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(i32::MAX)
    };
    let period = seconds(check.interval).max(1);
    let timeout = seconds(check.timeout).max(1);
    let start_period = seconds(check.start_period);
    let retries = check.retries.max(1);

    let base = Probe {
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(retries),
        success_threshold: Some(1),
        ..handler(check)
    };
    let liveness = check.restart_unhealthy.then(|| base.clone());
    let start_interval = check.start_interval.map_or(period, |i| seconds(i).max(1));
    let startup = (check.restart_unhealthy && start_period > 0).then(|| Probe {
        period_seconds: Some(start_interval),
        failure_threshold: Some(
            (start_period.unsigned_abs().div_ceil(start_interval.unsigned_abs()) as i32)
                .saturating_add(retries),
        ),
        ..base.clone()
    });
    ProbeSet { readiness: base, liveness, startup }
}

/// A probe carrying only the check's handler.
fn handler(check: &HealthPolicySpec) -> Probe {
    if let Some(http) = &check.http {
        let headers =
            http.headers.iter().map(|h| HTTPHeader { name: h.name.clone(), value: h.value.clone() });
        return Probe {
            http_get: Some(HTTPGetAction {
                path: Some(http.path.clone()),
                port: IntOrString::Int(http.port),
                scheme: Some(match http.scheme {
                    HttpScheme::Http => "HTTP".into(),
                    HttpScheme::Https => "HTTPS".into(),
                }),
                http_headers: (!http.headers.is_empty()).then(|| headers.collect()),
                ..HTTPGetAction::default()
            }),
            ..Probe::default()
        };
    }
    if let Some(tcp) = &check.tcp {
        return Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(tcp.port),
                ..TCPSocketAction::default()
            }),
            ..Probe::default()
        };
    }
    let command = check.exec.as_ref().map(|e| e.command.clone());
    Probe { exec: Some(ExecAction { command }), ..Probe::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ExecCheck, HttpCheck, TcpCheck};

    fn check(interval: &str, timeout: &str, start: &str, retries: i32, restart: bool) -> HealthPolicySpec {
        HealthPolicySpec {
            http: Some(HttpCheck {
                path: "/health".into(),
                port: 8000,
                scheme: HttpScheme::Http,
                headers: vec![],
            }),
            tcp: None,
            exec: None,
            interval: interval.parse().unwrap(),
            timeout: timeout.parse().unwrap(),
            start_period: start.parse().unwrap(),
            start_interval: None,
            retries,
            restart_unhealthy: restart,
        }
    }

    /// (period, timeout, failureThreshold) of a probe.
    fn timing(p: &Probe) -> (Option<i32>, Option<i32>, Option<i32>) {
        (p.period_seconds, p.timeout_seconds, p.failure_threshold)
    }

    #[test]
    fn start_interval_is_the_startup_probes_period() {
        let mut with_interval = check("30s", "5s", "1m", 3, true);
        with_interval.start_interval = Some("5s".parse().unwrap());
        let probes = probes_for(&with_interval);
        // 60 s of start period checked every 5 s, then the usual 3 retries.
        assert_eq!(probes.startup.as_ref().map(timing), Some((Some(5), Some(5), Some(15))));
        assert_eq!(timing(&probes.readiness), (Some(30), Some(5), Some(3)), "readiness keeps interval");
        with_interval.restart_unhealthy = false;
        assert_eq!(probes_for(&with_interval).startup, None, "no startup probe without restarts");
    }

    /// The README's mapping table, row by row.
    #[test]
    fn mapping_table() {
        struct Row {
            check: HealthPolicySpec,
            readiness: (i32, i32, i32),
            liveness: Option<(i32, i32, i32)>,
            startup: Option<(i32, i32, i32)>,
        }
        let rows = [
            // The seeds' numbers, readiness only.
            Row {
                check: check("10s", "5s", "10s", 5, false),
                readiness: (10, 5, 5),
                liveness: None,
                startup: None,
            },
            // Restarting: liveness mirrors readiness, startup covers ceil(10/10)+5 checks.
            Row {
                check: check("10s", "5s", "10s", 5, true),
                readiness: (10, 5, 5),
                liveness: Some((10, 5, 5)),
                startup: Some((10, 5, 6)),
            },
            // Start period not a multiple of the interval rounds up.
            Row {
                check: check("30s", "30s", "45s", 3, true),
                readiness: (30, 30, 3),
                liveness: Some((30, 30, 3)),
                startup: Some((30, 30, 5)),
            },
            // No start period: no startup probe.
            Row {
                check: check("5s", "1s", "0s", 2, true),
                readiness: (5, 1, 2),
                liveness: Some((5, 1, 2)),
                startup: None,
            },
            // Sub-second durations round up to the kubelet's 1 s granularity.
            Row {
                check: check("500ms", "250ms", "0s", 1, false),
                readiness: (1, 1, 1),
                liveness: None,
                startup: None,
            },
            // Minutes and hours.
            Row {
                check: check("1m", "1m", "2m", 3, true),
                readiness: (60, 60, 3),
                liveness: Some((60, 60, 3)),
                startup: Some((60, 60, 5)),
            },
        ];
        for row in rows {
            let probes = probes_for(&row.check);
            let some = |t: (i32, i32, i32)| (Some(t.0), Some(t.1), Some(t.2));
            assert_eq!(timing(&probes.readiness), some(row.readiness), "{:?}", row.check);
            assert_eq!(probes.liveness.as_ref().map(timing), row.liveness.map(some), "{:?}", row.check);
            assert_eq!(probes.startup.as_ref().map(timing), row.startup.map(some), "{:?}", row.check);
            assert_eq!(probes.readiness.success_threshold, Some(1));
            assert_eq!(probes.readiness.initial_delay_seconds, None);
        }
    }

    #[test]
    fn handlers_follow_the_check_kind() {
        let http = probes_for(&check("10s", "5s", "0s", 3, false)).readiness;
        let get = http.http_get.unwrap();
        assert_eq!(get.path.as_deref(), Some("/health"));
        assert_eq!(get.port, IntOrString::Int(8000));
        assert_eq!(get.scheme.as_deref(), Some("HTTP"));

        let mut tcp = check("10s", "5s", "0s", 3, false);
        tcp.http = None;
        tcp.tcp = Some(TcpCheck { port: 5432 });
        let probe = probes_for(&tcp).readiness;
        assert_eq!(probe.tcp_socket.unwrap().port, IntOrString::Int(5432));
        assert!(probe.http_get.is_none());

        let mut exec = check("10s", "5s", "0s", 3, false);
        exec.http = None;
        exec.exec = Some(ExecCheck { command: vec!["pg_isready".into(), "-q".into()] });
        let probe = probes_for(&exec).readiness;
        assert_eq!(probe.exec.unwrap().command, Some(vec!["pg_isready".to_string(), "-q".to_string()]));
    }
}
