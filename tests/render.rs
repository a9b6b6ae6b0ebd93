//! Unit tests of the pure renderer: names, labels, owner references, claims, config,
//! secrets, probes, security defaults, hashes and determinism.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use relay_operator::api::{HealthPolicySpec, RelayServiceSpec};
use relay_operator::render::{
    self, ANNOTATION_CONFIG_HASH, CONFIG_HASH_KEY, LABEL_POD_TEMPLATE_HASH, Owner, OwnerKind,
    RenderedService, SecretData, ServiceInput,
};

fn spec(yaml: &str) -> RelayServiceSpec {
    serde_saphyr::from_str(yaml).expect("test spec parses")
}

fn owner(kind: OwnerKind, name: &str) -> Owner {
    Owner { kind, name: name.into(), namespace: "demo".into(), uid: Some("uid-1".into()) }
}

fn secrets() -> SecretData {
    BTreeMap::from([(
        "relay-webhook".to_string(),
        BTreeMap::from([("url".to_string(), b"https://hooks.example.invalid/very-secret-token".to_vec())]),
    )])
}

fn render_with(
    owner: &Owner,
    spec: &RelayServiceSpec,
    health: Option<&HealthPolicySpec>,
    secrets: &SecretData,
) -> RenderedService {
    render::render_service(ServiceInput { owner, spec, health, secrets }).expect("renders")
}

fn render(spec: &RelayServiceSpec) -> RenderedService {
    render_with(&owner(OwnerKind::RelayService, "relay"), spec, None, &secrets())
}

const RELAY: &str = r#"
image: ghcr.io/example/relay:1.4.2
replicas: 2
ports: [{name: http, containerPort: 8000}]
config:
  mountPath: /app/config
  fileName: .env
  data: {BATCH_SIZE: "10", WS_URI: "wss://stream.example.invalid/ws", HEALTH_PORT: "8000"}
  secrets: [{name: N8N_WEBHOOK_URL, secretKeyRef: {name: relay-webhook, key: url}}]
reload: {port: 8000, restartKeys: [HEALTH_PORT]}
storage:
  - {name: state, size: 1Gi, mountPath: /app/data}
  - {name: cache, size: 100Mi, mountPath: /cache, scope: Shared, retention: {whenDeleted: Delete}}
"#;

fn pod_names(rendered: &RenderedService) -> Vec<String> {
    rendered.pods().iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect()
}

fn template_hash(pod: &Pod) -> String {
    pod.metadata.labels.as_ref().and_then(|l| l.get(LABEL_POD_TEMPLATE_HASH)).cloned().unwrap_or_default()
}

#[test]
fn one_pod_per_ordinal_with_labels_and_owner() {
    let rendered = render(&spec(RELAY));
    assert_eq!(pod_names(&rendered), ["relay-0", "relay-1"]);
    for (ordinal, pod) in rendered.pods().iter().enumerate() {
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "relay");
        assert_eq!(labels["app.kubernetes.io/instance"], "relay");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "relay-operator");
        assert_eq!(labels["relayops.io/service"], "relay");
        assert_eq!(labels["relayops.io/pod-index"], ordinal.to_string());
        assert_eq!(labels[LABEL_POD_TEMPLATE_HASH], rendered.pod_template_hash);
        let owners = pod.metadata.owner_references.clone().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!((owners[0].kind.as_str(), owners[0].uid.as_str()), ("RelayService", "uid-1"));
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(pod.metadata.annotations.clone().unwrap()[ANNOTATION_CONFIG_HASH], rendered.config_hash);
        assert_eq!(pod.spec.as_ref().unwrap().hostname.as_deref(), Some(format!("relay-{ordinal}").as_str()));
    }
    assert_eq!(rendered.selector, "relayops.io/service=relay");
}

#[test]
fn suspend_and_zero_replicas_render_no_pods_but_keep_the_rest() {
    let mut suspended = spec(RELAY);
    suspended.suspend = true;
    let rendered = render(&suspended);
    assert!(rendered.pods().is_empty());
    assert!(rendered.config_map.is_some());
    assert!(rendered.service.is_some());
    assert_eq!(rendered.claims.len(), 3, "claims are kept while suspended");
}

#[test]
fn service_exposes_named_ports_and_is_absent_without_ports() {
    let rendered = render(&spec(RELAY));
    let service = rendered.service.unwrap();
    let svc_spec = service.spec.unwrap();
    assert_eq!(service.metadata.name.as_deref(), Some("relay"));
    assert_eq!(
        svc_spec.selector.unwrap(),
        BTreeMap::from([("relayops.io/service".to_string(), "relay".to_string())])
    );
    let port = &svc_spec.ports.unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8000));

    let scheduler = spec("image: example/scheduler:2.3.1\n");
    assert!(render(&scheduler).service.is_none());
}

#[test]
fn claims_follow_scope_and_retention() {
    let rendered = render(&spec(RELAY));
    let names: Vec<String> = rendered.claims.iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["cache-relay", "state-relay-0", "state-relay-1"]);
    let cache = &rendered.claims[0];
    assert!(cache.metadata.owner_references.is_some(), "Delete claims are owned");
    for retained in &rendered.claims[1..] {
        assert!(retained.metadata.owner_references.is_none(), "Retain claims carry no owner reference");
    }
    let pod0 = rendered.pods()[0].spec.clone().unwrap();
    let claims: Vec<String> = pod0
        .volumes
        .unwrap()
        .iter()
        .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()))
        .collect();
    assert_eq!(claims, ["state-relay-0", "cache-relay"]);
    assert_eq!(
        cache.spec.as_ref().unwrap().resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "100Mi"
    );
}

#[test]
fn test_deployment_children_have_their_own_names_and_ephemeral_storage() {
    let td = owner(OwnerKind::TestDeployment, "relay-pr-42");
    let rendered = render_with(&td, &spec(RELAY), None, &secrets());
    assert_eq!(pod_names(&rendered), ["relay-pr-42-td-0", "relay-pr-42-td-1"]);
    assert_eq!(rendered.config_map.unwrap().metadata.name.as_deref(), Some("relay-pr-42-td-config"));
    assert_eq!(rendered.service.unwrap().metadata.name.as_deref(), Some("relay-pr-42-td"));
    let relay = render(&spec(RELAY));
    for claim in &rendered.claims {
        let name = claim.metadata.name.clone().unwrap();
        assert!(name.contains("relay-pr-42-td"), "{name}");
        assert!(
            !relay.claims.iter().any(|c| c.metadata.name.as_deref() == Some(name.as_str())),
            "shares {name}"
        );
        assert!(claim.metadata.owner_references.is_some(), "test storage is always deleted with its owner");
    }
}

#[test]
fn config_map_holds_the_file_and_its_hash_but_no_secret() {
    let rendered = render(&spec(RELAY));
    let data = rendered.config_map.clone().unwrap().data.unwrap();
    assert_eq!(data[".env"], "BATCH_SIZE=10\nHEALTH_PORT=8000\nWS_URI=wss://stream.example.invalid/ws\n");
    assert_eq!(data[CONFIG_HASH_KEY], rendered.config_hash);
    assert_eq!(rendered.config_hash.len(), 64);
    assert!(!format!("{data:?}").contains("very-secret-token"));

    // The secret key reaches the pod as an env var from the Secret and as a projected file.
    let pod = rendered.pods()[0].spec.clone().unwrap();
    let env = pod.containers[0].env.clone().unwrap();
    let webhook = env.iter().find(|e| e.name == "N8N_WEBHOOK_URL").unwrap();
    let selector = webhook.value_from.clone().unwrap().secret_key_ref.unwrap();
    assert_eq!((selector.name.as_str(), selector.key.as_str()), ("relay-webhook", "url"));
    assert!(webhook.value.is_none());
    let projected = pod.volumes.unwrap().into_iter().find(|v| v.name == "config").unwrap().projected.unwrap();
    let sources = projected.sources.unwrap();
    assert_eq!(sources[0].config_map.as_ref().unwrap().name, "relay-config");
    let items = sources[1].secret.as_ref().unwrap().items.clone().unwrap();
    assert_eq!(items[0].path, "secrets/N8N_WEBHOOK_URL");
    let mount =
        pod.containers[0].volume_mounts.clone().unwrap().into_iter().find(|m| m.name == "config").unwrap();
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/app/config", Some(true)));
}

#[test]
fn json_and_yaml_formats() {
    let json = render(&spec("image: a:1\nconfig: {format: json, data: {B: \"2\", A: \"x y\"}}\n"));
    let data = json.config_map.unwrap().data.unwrap();
    assert_eq!(data["config.json"], "{\n  \"A\": \"x y\",\n  \"B\": \"2\"\n}\n");
    let yaml = render(&spec("image: a:1\nconfig: {format: yaml, data: {key: \"true\"}}\n"));
    let data = yaml.config_map.unwrap().data.unwrap();
    let parsed: BTreeMap<String, String> = serde_saphyr::from_str(&data["config.yaml"]).unwrap();
    assert_eq!(parsed["key"], "true", "values stay strings");
}

#[test]
fn missing_secret_is_an_error_naming_the_field() {
    let err = render::render_service(ServiceInput {
        owner: &owner(OwnerKind::RelayService, "relay"),
        spec: &spec(RELAY),
        health: None,
        secrets: &SecretData::new(),
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "spec.config.secrets[0].secretKeyRef: Secret \"relay-webhook\" not found");
}

#[test]
fn restart_key_must_name_a_config_key() {
    let mut bad = spec(RELAY);
    bad.reload.as_mut().unwrap().restart_keys.push("NOPE".into());
    let err = render::render_service(ServiceInput {
        owner: &owner(OwnerKind::RelayService, "relay"),
        spec: &bad,
        health: None,
        secrets: &secrets(),
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.reload.restartKeys[1]: \"NOPE\" is not a key of config.data or config.secrets"
    );
}

#[test]
fn restricted_pod_security_defaults_and_overrides() {
    let rendered = render(&spec(RELAY));
    let pod = rendered.pods()[0].spec.clone().unwrap();
    let pod_sc = pod.security_context.unwrap();
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    assert_eq!(pod_sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let sc = pod.containers[0].security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));

    let overridden = render(&spec(
        "image: postgres:16.4\npodSecurityContext: {runAsUser: 999, fsGroup: 999}\nsecurityContext: {readOnlyRootFilesystem: true}\n",
    ));
    let pod = overridden.pods()[0].spec.clone().unwrap();
    let pod_sc = pod.security_context.unwrap();
    assert_eq!(
        (pod_sc.run_as_user, pod_sc.fs_group, pod_sc.run_as_non_root),
        (Some(999), Some(999), Some(true))
    );
    let sc = pod.containers[0].security_context.clone().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false), "defaults stay for fields not overridden");
}

#[test]
fn probes_come_from_the_health_check() {
    let health: HealthPolicySpec = serde_saphyr::from_str(
        "http: {path: /health, port: 8000}\ninterval: 10s\ntimeout: 5s\nstartPeriod: 10s\nretries: 5\nrestartUnhealthy: true\n",
    )
    .unwrap();
    let rendered =
        render_with(&owner(OwnerKind::RelayService, "relay"), &spec(RELAY), Some(&health), &secrets());
    let container = rendered.pods()[0].spec.clone().unwrap().containers[0].clone();
    let readiness = container.readiness_probe.unwrap();
    assert_eq!(
        (readiness.period_seconds, readiness.timeout_seconds, readiness.failure_threshold),
        (Some(10), Some(5), Some(5))
    );
    assert!(container.liveness_probe.is_some());
    assert_eq!(container.startup_probe.unwrap().failure_threshold, Some(6));
    assert!(render(&spec(RELAY)).pods()[0].spec.clone().unwrap().containers[0].readiness_probe.is_none());
}

#[test]
fn config_hash_ignores_key_order_and_tracks_values() {
    let a = spec("image: a:1\nconfig: {data: {A: \"1\", B: \"2\"}}\n");
    let b = spec("image: a:1\nconfig: {data: {B: \"2\", A: \"1\"}}\n");
    let c = spec("image: a:1\nconfig: {data: {A: \"1\", B: \"3\"}}\n");
    assert_eq!(render(&a).config_hash, render(&b).config_hash, "reordered keys, same hash");
    assert_ne!(render(&a).config_hash, render(&c).config_hash, "changed value, new hash");
}

#[test]
fn secret_value_changes_the_config_hash() {
    let base = render(&spec(RELAY));
    let mut rotated = secrets();
    rotated
        .get_mut("relay-webhook")
        .unwrap()
        .insert("url".into(), b"https://hooks.example.invalid/new".to_vec());
    let changed = render_with(&owner(OwnerKind::RelayService, "relay"), &spec(RELAY), None, &rotated);
    assert_ne!(base.config_hash, changed.config_hash);
    assert_eq!(base.pod_template_hash, changed.pod_template_hash, "not a restart key: reloaded, not rolled");
}

#[test]
fn pod_template_hash_changes_only_for_pod_spec_or_restart_keys() {
    let base = render(&spec(RELAY));

    let mut hot = spec(RELAY);
    hot.config.as_mut().unwrap().data.insert("BATCH_SIZE".into(), "50".into());
    let hot = render(&hot);
    assert_ne!(hot.config_hash, base.config_hash);
    assert_eq!(hot.pod_template_hash, base.pod_template_hash, "non-restart key: same template");
    assert_eq!(template_hash(&hot.pods()[0]), template_hash(&base.pods()[0]));

    let mut restart = spec(RELAY);
    restart.config.as_mut().unwrap().data.insert("HEALTH_PORT".into(), "9000".into());
    assert_ne!(render(&restart).pod_template_hash, base.pod_template_hash, "restart key: new template");

    let mut image = spec(RELAY);
    image.image = "ghcr.io/example/relay:1.4.3".into();
    assert_ne!(render(&image).pod_template_hash, base.pod_template_hash, "pod spec change: new template");

    let mut scaled = spec(RELAY);
    scaled.replicas = 5;
    assert_eq!(
        render(&scaled).pod_template_hash,
        base.pod_template_hash,
        "replicas are not part of the template"
    );

    let mut no_hook = spec(RELAY);
    no_hook.reload = None;
    let no_hook_base = render(&no_hook);
    no_hook.config.as_mut().unwrap().data.insert("BATCH_SIZE".into(), "50".into());
    assert_ne!(
        render(&no_hook).pod_template_hash,
        no_hook_base.pod_template_hash,
        "without a hook every key restarts"
    );
}

#[test]
fn output_is_deterministic() {
    let first = serde_saphyr::to_string(&render(&spec(RELAY)).pods()).unwrap();
    for _ in 0..5 {
        assert_eq!(serde_saphyr::to_string(&render(&spec(RELAY)).pods()).unwrap(), first);
    }
}

/// The library entry point `render` uses, on manifests held in memory (as `import` checks
/// its output): every error is returned, each naming the document.
#[test]
fn manifests_in_memory_render_through_the_library() {
    use relay_operator::manifest::{self, RenderOptions};
    let good = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web, namespace: demo}\nspec: {image: a:1, replicas: 2}\n";
    let rendering = manifest::render_text("generated", good, &RenderOptions::default()).expect("renders");
    let pods: Vec<&str> = rendering
        .objects
        .iter()
        .filter(|o| o.value["kind"] == "Pod")
        .filter_map(|o| o.value["metadata"]["name"].as_str())
        .collect();
    assert_eq!(pods, ["web-0", "web-1"]);

    let bad = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web, namespace: demo}\nspec: {replicas: 2}\n---\napiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: api, namespace: demo}\nspec: {image: a:1, port: 80}\n";
    let errors = manifest::render_text("generated", bad, &RenderOptions::default()).expect_err("invalid");
    let messages: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "generated:1: document 1 (RelayService demo/web): spec.image: required",
            "generated:6: document 2 (RelayService demo/api): spec.port: unknown field",
        ]
    );
    assert!(manifest::render_text("generated", "# nothing\n", &RenderOptions::default()).is_err());
}

/// sha256 of the JSON of every rendered child, in render order.
fn digest_of_children(rendered: &RenderedService) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for object in [serde_json::to_vec(&rendered.config_map), serde_json::to_vec(&rendered.service)]
        .into_iter()
        .chain(rendered.claims.iter().map(serde_json::to_vec))
        .chain(rendered.pods().iter().map(serde_json::to_vec))
    {
        hasher.update(object.unwrap());
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Upgrading the operator must restart no pod: a spec that sets none of the newer fields
/// renders byte for byte what earlier versions rendered (these values were recorded before
/// `imagePullSecrets`, `podTemplate`, placement, `service` and `ingress` existed).
#[test]
fn specs_without_the_newer_fields_render_exactly_as_before() {
    let relay = render(&spec(RELAY));
    assert_eq!(relay.pod_template_hash, "682d593e8b");
    assert_eq!(
        digest_of_children(&relay),
        "3e39036db6f28f24b5f801ce27eccaaa70ce4d36be19a5d17be5fbbe3ca04c89"
    );
    let health: HealthPolicySpec = serde_saphyr::from_str(
        "exec: {command: [pg_isready]}\ninterval: 10s\ntimeout: 5s\nstartPeriod: 30s\nretries: 5\nrestartUnhealthy: true\n",
    )
    .unwrap();
    let postgres = spec(
        "image: postgres:16.4\nports: [{name: postgres, containerPort: 5432}]\nargs: [-c, max_connections=200]\npodSecurityContext: {runAsUser: 999, fsGroup: 999}\nstorage: [{name: data, size: 5Gi, mountPath: /var/lib/postgresql/data}]\n",
    );
    let postgres =
        render_with(&owner(OwnerKind::RelayService, "postgres"), &postgres, Some(&health), &secrets());
    assert_eq!(postgres.pod_template_hash, "5c55d39fb8");
    assert_eq!(
        digest_of_children(&postgres),
        "541803574d7a1b33eeb31916ed250a95973943d66031ad4b811bfb90122568fe"
    );
}

#[test]
fn pod_placement_and_identity_fields_reach_the_pod_spec() {
    let rendered = render(&spec(
        r#"
image: ghcr.io/example/relay:1.4.2
ports: [{name: http, containerPort: 8000}]
imagePullSecrets: [{name: ghcr-credentials}]
serviceAccountName: relay
nodeSelector: {kubernetes.io/arch: arm64}
tolerations: [{key: dedicated, operator: Equal, value: relays, effect: NoSchedule}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [a, b]}]}]
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule}
  - {maxSkew: 2, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {tier: edge}}}
"#,
    ));
    let pod = rendered.pods()[0].spec.clone().unwrap();
    let pull: Vec<String> = pod.image_pull_secrets.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(pull, ["ghcr-credentials"]);
    assert_eq!(pod.service_account_name.as_deref(), Some("relay"));
    assert_eq!(pod.node_selector.unwrap()["kubernetes.io/arch"], "arm64");
    let toleration = &pod.tolerations.unwrap()[0];
    assert_eq!(
        (toleration.key.as_deref(), toleration.value.as_deref(), toleration.effect.as_deref()),
        (Some("dedicated"), Some("relays"), Some("NoSchedule"))
    );
    let terms =
        pod.affinity.unwrap().node_affinity.unwrap().required_during_scheduling_ignored_during_execution;
    assert_eq!(
        terms.unwrap().node_selector_terms[0].match_expressions.as_ref().unwrap()[0].values.as_ref().unwrap(),
        &["a", "b"]
    );
    let spread = pod.topology_spread_constraints.unwrap();
    assert_eq!(
        spread[0].label_selector.as_ref().unwrap().match_labels.as_ref().unwrap(),
        &BTreeMap::from([("relayops.io/service".to_string(), "relay".to_string())]),
        "a constraint without labelSelector counts this service's pods"
    );
    assert_eq!(
        spread[1].label_selector.as_ref().unwrap().match_labels.as_ref().unwrap(),
        &BTreeMap::from([("tier".to_string(), "edge".to_string())]),
        "a given labelSelector is kept"
    );
}

#[test]
fn each_pod_field_changes_the_template_hash_only_when_set() {
    let base = render(&spec(RELAY));
    let with = |extra: &str| render(&spec(&format!("{RELAY}{extra}\n"))).pod_template_hash;
    let mut seen = std::collections::BTreeSet::from([base.pod_template_hash.clone()]);
    for extra in [
        "imagePullSecrets: [{name: ghcr-credentials}]",
        "serviceAccountName: relay",
        "nodeSelector: {disktype: ssd}",
        "tolerations: [{key: dedicated, operator: Exists}]",
        "affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 1, podAffinityTerm: {topologyKey: kubernetes.io/hostname}}]}}",
        "topologySpreadConstraints: [{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway}]",
        "podTemplate: {metadata: {labels: {team: payments}}}",
        "podTemplate: {metadata: {annotations: {prometheus.io/scrape: \"true\"}}}",
    ] {
        assert!(seen.insert(with(extra)), "{extra}: the template hash did not change");
    }
    // Empty values are the same as absent ones.
    for empty in [
        "imagePullSecrets: []",
        "nodeSelector: {}",
        "tolerations: []",
        "topologySpreadConstraints: []",
        "podTemplate: {metadata: {}}",
        "podTemplate: {}",
    ] {
        assert_eq!(with(empty), base.pod_template_hash, "{empty}");
    }
    // Exposure is not part of the pods.
    assert_eq!(with("service: {type: NodePort}\ningress: {host: relay.example.com}"), base.pod_template_hash);
}

#[test]
fn pod_template_metadata_is_added_but_never_replaces_the_operators_own() {
    let rendered = render(&spec(&format!(
        "{RELAY}podTemplate:\n  metadata:\n    labels: {{team: payments, app.kubernetes.io/part-of: coin}}\n    annotations: {{prometheus.io/scrape: \"true\"}}\n"
    )));
    for pod in &rendered.pods() {
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels["team"], "payments");
        assert_eq!(labels["app.kubernetes.io/part-of"], "coin");
        assert_eq!(labels["relayops.io/service"], "relay");
        assert_eq!(labels[LABEL_POD_TEMPLATE_HASH], rendered.pod_template_hash);
        let annotations = pod.metadata.annotations.clone().unwrap();
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_eq!(annotations[ANNOTATION_CONFIG_HASH], rendered.config_hash);
    }
    // Were the CRD's rule bypassed, the operator's labels still win.
    let mut sneaky = spec(RELAY);
    sneaky.pod_template = Some(
        serde_json::from_value(serde_json::json!({"metadata": {
            "labels": {"relayops.io/service": "other", "app.kubernetes.io/managed-by": "me"},
            "annotations": {ANNOTATION_CONFIG_HASH: "forged"}
        }}))
        .unwrap(),
    );
    let rendered = render(&sneaky);
    let pod = &rendered.pods()[0].metadata;
    assert_eq!(pod.labels.as_ref().unwrap()["relayops.io/service"], "relay");
    assert_eq!(pod.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"], "relay-operator");
    assert_eq!(pod.annotations.as_ref().unwrap()[ANNOTATION_CONFIG_HASH], rendered.config_hash);
    // The Service, ConfigMap and claims do not get the pod labels.
    assert!(!rendered.service.unwrap().metadata.labels.unwrap().contains_key("team"));
}

#[test]
fn service_type_and_annotations() {
    let default = render(&spec(RELAY)).service.unwrap();
    assert_eq!(default.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
    assert!(default.metadata.annotations.is_none());
    for type_ in ["ClusterIP", "NodePort", "LoadBalancer"] {
        let rendered = render(&spec(&format!(
            "{RELAY}service: {{type: {type_}, annotations: {{service.beta.kubernetes.io/aws-load-balancer-type: nlb}}}}\n"
        )));
        let service = rendered.service.unwrap();
        assert_eq!(service.spec.as_ref().unwrap().type_.as_deref(), Some(type_));
        assert_eq!(
            service.metadata.annotations.unwrap()["service.beta.kubernetes.io/aws-load-balancer-type"],
            "nlb"
        );
        assert_eq!(service.spec.unwrap().ports.unwrap()[0].node_port, None, "allocated by the API server");
    }
}

#[test]
fn ingress_routes_host_and_path_to_a_service_port() {
    assert!(render(&spec(RELAY)).ingress.is_none());
    let two_ports = "image: ghcr.io/example/api:2.3.1\nports: [{name: http, containerPort: 8080}, {name: admin, containerPort: 9090, servicePort: 90}]\n";

    // Defaults: path "/", Prefix, the first port, no host, class or TLS.
    let ingress = render(&spec(&format!("{two_ports}ingress: {{}}\n"))).ingress.unwrap();
    assert_eq!(ingress.metadata.name.as_deref(), Some("relay"));
    assert_eq!(ingress.metadata.labels.as_ref().unwrap()["relayops.io/service"], "relay");
    let owner = &ingress.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("RelayService", "uid-1", Some(true))
    );
    assert!(ingress.metadata.annotations.is_none());
    let spec_ = ingress.spec.unwrap();
    assert_eq!(spec_.ingress_class_name, None);
    assert_eq!(spec_.tls, None);
    let rule = &spec_.rules.unwrap()[0];
    assert_eq!(rule.host, None);
    let path = &rule.http.as_ref().unwrap().paths[0];
    assert_eq!((path.path.as_deref(), path.path_type.as_str()), (Some("/"), "Prefix"));
    let backend = path.backend.service.as_ref().unwrap();
    assert_eq!(
        (backend.name.as_str(), backend.port.as_ref().unwrap().name.as_deref()),
        ("relay", Some("http"))
    );

    // Everything set.
    let ingress = render(&spec(&format!(
        "{two_ports}ingress: {{host: api.example.com, path: /admin, pathType: Exact, port: admin, tlsSecretName: api-tls, className: nginx, annotations: {{cert-manager.io/cluster-issuer: letsencrypt}}}}\n"
    )))
    .ingress
    .unwrap();
    assert_eq!(ingress.metadata.annotations.unwrap()["cert-manager.io/cluster-issuer"], "letsencrypt");
    let spec_ = ingress.spec.unwrap();
    assert_eq!(spec_.ingress_class_name.as_deref(), Some("nginx"));
    let tls = &spec_.tls.unwrap()[0];
    assert_eq!(
        (tls.hosts.clone().unwrap(), tls.secret_name.as_deref()),
        (vec!["api.example.com".to_string()], Some("api-tls"))
    );
    let rule = &spec_.rules.unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("api.example.com"));
    let path = &rule.http.as_ref().unwrap().paths[0];
    assert_eq!((path.path.as_deref(), path.path_type.as_str()), (Some("/admin"), "Exact"));
    assert_eq!(path.backend.service.as_ref().unwrap().port.as_ref().unwrap().name.as_deref(), Some("admin"));
}

#[test]
fn test_deployments_copy_no_exposure() {
    use relay_operator::api::TestDeploymentSpec;
    let source = spec(&format!(
        "{RELAY}service: {{type: LoadBalancer, annotations: {{external-dns.alpha.kubernetes.io/hostname: relay.example.com}}}}\ningress: {{host: relay.example.com}}\nserviceAccountName: relay\n"
    ));
    let td: TestDeploymentSpec = serde_saphyr::from_str("fromRelayService: relay\n").unwrap();
    let effective = render::effective_spec(&td, Some(&source)).unwrap();
    let rendered = render_with(&owner(OwnerKind::TestDeployment, "pr-1"), &effective, None, &secrets());
    assert!(rendered.ingress.is_none(), "a copy must not claim the production host");
    let service = rendered.service.clone().unwrap();
    assert_eq!(service.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
    assert!(service.metadata.annotations.is_none());
    assert_eq!(
        rendered.pods()[0].spec.as_ref().unwrap().service_account_name.as_deref(),
        Some("relay"),
        "pod settings are copied"
    );
}

#[test]
fn command_and_args_stay_apart() {
    let container = |yaml: &str| render(&spec(yaml)).pods()[0].spec.clone().unwrap().containers[0].clone();
    let args = container("image: a:1\nargs: [python, -m, worker]\n");
    assert_eq!((args.command, args.args), (None, Some(vec!["python".into(), "-m".into(), "worker".into()])));
    let command = container("image: a:1\ncommand: [/bin/tini, --]\n");
    assert_eq!((command.command, command.args), (Some(vec!["/bin/tini".into(), "--".into()]), None));
    let both = container("image: a:1\ncommand: [/entry]\nargs: [serve]\n");
    assert_eq!((both.command, both.args), (Some(vec!["/entry".into()]), Some(vec!["serve".into()])));
}
