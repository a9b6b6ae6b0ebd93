//! The standard process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, …), read from `/proc/self` at every scrape.
//!
//! Not the `prometheus` crate's `process` feature: its collector counts CPU time in whole
//! seconds (an operator using 2 % of a core shows a step every 50 s) and brings `procfs` with
//! a second `rustix`. Where `/proc` is missing (not Linux), the families are left out.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, Opts};

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`, fixed at 100 by the
/// kernel's ABI on the architectures Kubernetes runs on).
const USER_HZ: f64 = 100.0;

/// What one scrape reads; a figure that could not be read is `None` and left out.
#[derive(Clone, Debug, Default, PartialEq)]
struct Snapshot {
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
    threads: Option<f64>,
    virtual_memory_bytes: Option<f64>,
    resident_memory_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

/// The fields of `/proc/self/stat` after the command name: CPU seconds (user + system),
/// seconds from boot to the process start, threads, virtual memory in bytes.
fn parse_stat(stat: &str) -> Option<(f64, f64, f64, f64)> {
    // The command name is in parentheses and may itself contain spaces and parentheses.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    // fields[0] is field 3 of proc(5) (`state`): field N is fields[N - 3].
    let number = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some(((number(14)? + number(15)?) / USER_HZ, number(22)? / USER_HZ, number(20)?, number(23)?))
}

/// The value in kB of `key` in `/proc/self/status`, in bytes.
fn parse_status_kb(status: &str, key: &str) -> Option<f64> {
    let line = status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    Some(line.split_whitespace().next()?.parse::<f64>().ok()? * 1024.0)
}

/// The boot time (`btime`) from `/proc/stat`, as Unix time.
fn parse_boot_time(stat: &str) -> Option<f64> {
    stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// The soft limit of open files from `/proc/self/limits` (`None` when unlimited).
fn parse_max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

fn read_snapshot() -> Snapshot {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let stat = read("/proc/self/stat").as_deref().and_then(parse_stat);
    let boot_time = read("/proc/stat").as_deref().and_then(parse_boot_time);
    let status = read("/proc/self/status");
    Snapshot {
        cpu_seconds: stat.map(|s| s.0),
        start_time_seconds: stat.zip(boot_time).map(|(s, boot)| boot + s.1),
        threads: stat.map(|s| s.2),
        virtual_memory_bytes: stat.map(|s| s.3),
        resident_memory_bytes: status.as_deref().and_then(|s| parse_status_kb(s, "VmRSS")),
        open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as f64),
        max_fds: read("/proc/self/limits").as_deref().and_then(parse_max_fds),
    }
}

/// `(name, help)` of the gauges, in the order of [`gauge_values`].
const GAUGES: [(&str, &str); 6] = [
    ("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds."),
    ("process_threads", "Number of OS threads in the process."),
    ("process_virtual_memory_bytes", "Virtual memory size in bytes."),
    ("process_resident_memory_bytes", "Resident memory size in bytes."),
    ("process_open_fds", "Number of open file descriptors."),
    ("process_max_fds", "Maximum number of open file descriptors (soft limit)."),
];
const CPU: (&str, &str) = ("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.");

fn gauge_values(s: &Snapshot) -> [Option<f64>; 6] {
    [s.start_time_seconds, s.threads, s.virtual_memory_bytes, s.resident_memory_bytes, s.open_fds, s.max_fds]
}

/// The collector of the process metrics.
#[derive(Clone, Debug)]
pub(super) struct ProcessCollector {
    descs: Vec<Desc>,
}

impl ProcessCollector {
    pub(super) fn new() -> Result<Self, prometheus::Error> {
        let mut descs =
            Counter::with_opts(Opts::new(CPU.0, CPU.1))?.desc().into_iter().cloned().collect::<Vec<_>>();
        for (name, help) in GAUGES {
            descs.extend(Gauge::with_opts(Opts::new(name, help))?.desc().into_iter().cloned());
        }
        Ok(Self { descs })
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot = read_snapshot();
        let mut families = Vec::new();
        // The definitions were accepted by `new`, so creating them again cannot fail.
        if let (Some(seconds), Ok(cpu)) = (snapshot.cpu_seconds, Counter::with_opts(Opts::new(CPU.0, CPU.1)))
        {
            cpu.inc_by(seconds);
            families.extend(cpu.collect());
        }
        for ((name, help), value) in GAUGES.into_iter().zip(gauge_values(&snapshot)) {
            if let (Some(value), Ok(gauge)) = (value, Gauge::with_opts(Opts::new(name, help))) {
                gauge.set(value);
                families.extend(gauge.collect());
            }
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis; utime 250, stime 7 ticks (2.57 s, finer than whole seconds), 7 threads,
        // started 1234.56 s after boot, 200 MB virtual memory.
        let stat = "4242 (relay (op) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 7 0 0 20 0 7 0 \
                    123456 200000000 3000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0";
        assert_eq!(parse_stat(stat), Some((2.57, 1234.56, 7.0, 200_000_000.0)));
        assert_eq!(parse_stat("4242 (truncated"), None);
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
    }

    #[test]
    fn status_limits_and_boot_time_are_parsed() {
        let status = "Name:\trelay-operator\nVmSize:\t  194240 kB\nVmRSS:\t   32216 kB\nThreads:\t3\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(32216.0 * 1024.0));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            20000                1048576              files     \n";
        assert_eq!(parse_max_fds(limits), Some(20000.0));
        assert_eq!(
            parse_max_fds("Max open files            unlimited            unlimited            files"),
            None
        );
        assert_eq!(parse_boot_time("cpu  1 2 3\nbtime 1795860000\nprocesses 9\n"), Some(1_795_860_000.0));
    }
}
