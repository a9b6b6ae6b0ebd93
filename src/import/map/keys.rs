//! Compose service keys without an equivalent, and why.

use super::super::report::Outcome;

/// What the report says about a service key this import does not map, or `None` for a key
/// the compose specification does not know.
pub fn other(key: &str) -> Option<(Outcome, &'static str)> {
    use Outcome::{Reported, Unsupported};
    let found = match key {
        "container_name" => (
            Reported,
            "pods are named NAME-0, NAME-1, …; other services reach this one by its RelayService name",
        ),
        "hostname" => (Reported, "a pod's hostname is its name (NAME-0, …)"),
        "networks" => (
            Reported,
            "one flat pod network: services reach each other by RelayService name through their Services; aliases, static IPs and network isolation are not mapped (use NetworkPolicies)",
        ),
        "links" | "external_links" => {
            (Reported, "not needed: services reach each other by RelayService name")
        }
        "labels" => (Reported, "container labels: not mapped (pods carry the operator's labels)"),
        "logging" => (
            Reported,
            "container logs go to the node's log files; collect them with the cluster's logging stack",
        ),
        "develop" => (Reported, "compose watch (development only): not mapped"),
        "attach" => (Reported, "use kubectl logs"),
        "platform" => (Reported, "the node's architecture decides; use a multi-arch image"),
        "working_dir" => (Unsupported, "no workingDir field in a RelayService: set WORKDIR in the image"),
        "stop_grace_period" => (
            Unsupported,
            "no terminationGracePeriodSeconds field in a RelayService (Kubernetes' default is 30s)",
        ),
        "stop_signal" => (Unsupported, "pods are stopped with SIGTERM (set STOPSIGNAL in the image)"),
        "tty" | "stdin_open" => (Unsupported, "no terminal for managed containers"),
        "init" => (Unsupported, "no init process option: use an image with an init (tini)"),
        "privileged" => (Unsupported, "privileged containers contradict the restricted defaults: not mapped"),
        "security_opt" => (
            Unsupported,
            "AppArmor/SELinux/seccomp options: not mapped (seccomp RuntimeDefault is the default)",
        ),
        "sysctls" => (Unsupported, "pod sysctls: not mapped"),
        "ulimits" => (Unsupported, "no ulimits in Kubernetes"),
        "shm_size" => {
            (Unsupported, "no shared-memory size field (would need a memory-backed emptyDir at /dev/shm)")
        }
        "devices" | "device_cgroup_rules" | "gpus" => {
            (Unsupported, "devices need a device plugin: not mapped")
        }
        "dns" | "dns_opt" | "dns_search" => {
            (Unsupported, "pod DNS settings: not mapped (cluster DNS resolves service names)")
        }
        "extra_hosts" => (Unsupported, "hostAliases: not mapped"),
        "network_mode" => (Unsupported, "network modes (host, service:…, none) have no equivalent"),
        "ipc" | "pid" | "uts" | "userns_mode" | "cgroup" | "cgroup_parent" | "isolation" | "runtime" => {
            (Unsupported, "kernel namespace and runtime options: not mapped")
        }
        "oom_kill_disable" | "oom_score_adj" | "mem_swappiness" | "memswap_limit" | "cpu_shares"
        | "cpu_quota" | "cpu_period" | "cpuset" | "cpu_count" | "cpu_percent" | "cpu_rt_period"
        | "cpu_rt_runtime" | "blkio_config" | "storage_opt" | "pids_limit" => {
            (Unsupported, "fine-grained cgroup settings: only cpu and memory limits/requests exist")
        }
        "mac_address" => (Unsupported, "no fixed MAC addresses"),
        "configs" => {
            (Unsupported, "compose configs: put small files into config.data, larger ones into a ConfigMap")
        }
        "volumes_from" => (Unsupported, "no volume sharing between services: use a named volume per service"),
        "post_start" | "pre_stop" => (Unsupported, "lifecycle hooks: not mapped"),
        "group_add" => (Unsupported, "supplementalGroups: not mapped"),
        "credential_spec" => (Unsupported, "Windows credential specs: not mapped"),
        "annotations" => (Unsupported, "container annotations: not mapped"),
        "label_file" | "use_api_socket" | "provider" | "models" | "domainname" => {
            (Unsupported, "no equivalent")
        }
        _ => return None,
    };
    Some(found)
}
