//! `relay-operator render` end to end: the examples, and one test per kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relay-operator")).args(args).output().expect("binary runs")
}

fn documents(stdout: &[u8]) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple(&String::from_utf8_lossy(stdout)).expect("render output is YAML")
}

fn find<'a>(docs: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} not rendered"))
}

fn examples() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples").display().to_string()
}

#[test]
fn renders_every_example() {
    let out = run(&["render", "-f", &examples()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = documents(&out.stdout);
    for (kind, name) in [
        ("ConfigMap", "relay-config"),
        ("Service", "relay"),
        ("Pod", "relay-0"),
        ("Pod", "relay-1"),
        ("PersistentVolumeClaim", "state-relay-0"),
        ("PersistentVolumeClaim", "data-postgres-0"),
        ("Service", "postgres"),
        ("Pod", "postgres-0"),
        ("Service", "api"),
        ("Pod", "api-0"),
        ("Pod", "scheduler-0"),
        ("Pod", "relay-pr-42-td-0"),
        ("Service", "relay-pr-42-td"),
        ("ConfigMap", "relay-pr-42-td-config"),
    ] {
        find(&docs, kind, name);
    }
    assert!(
        !docs.iter().any(|d| d["kind"] == "Service" && d["metadata"]["name"] == "scheduler"),
        "a service without ports gets no Service"
    );
    let postgres_data = find(&docs, "PersistentVolumeClaim", "data-postgres-0");
    assert!(postgres_data["metadata"].get("ownerReferences").is_none(), "retained PVC must not be owned");

    // The test deployment copies the relay and applies its overrides.
    let td_config = find(&docs, "ConfigMap", "relay-pr-42-td-config");
    let env_file = td_config["data"].as_object().unwrap().values().next().unwrap().as_str().unwrap();
    assert!(env_file.contains("LOG_LEVEL=debug"), "{env_file}");
    assert!(
        find(&docs, "Pod", "relay-pr-42-td-0")["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .contains("pr-42")
    );
}

#[test]
fn no_secret_value_reaches_a_config_map() {
    let out = run(&["render", "-f", &examples()]);
    let inputs: Vec<serde_json::Value> = std::fs::read_dir(examples())
        .unwrap()
        .flat_map(|e| {
            serde_saphyr::from_multiple::<serde_json::Value>(
                &std::fs::read_to_string(e.unwrap().path()).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let secret_values: Vec<String> = inputs
        .iter()
        .filter(|d| d["kind"] == "Secret")
        .flat_map(|d| d["stringData"].as_object().cloned().unwrap_or_default().into_values())
        .filter_map(|v| v.as_str().map(String::from))
        // Short values such as a user name "app" occur in any text; the secrets that matter are long.
        .filter(|v| v.len() >= 8)
        .collect();
    assert!(!secret_values.is_empty(), "the examples carry secrets");
    for config_map in documents(&out.stdout).iter().filter(|d| d["kind"] == "ConfigMap") {
        let text = config_map.to_string();
        for value in &secret_values {
            assert!(!text.contains(value.as_str()), "secret value in {}", config_map["metadata"]["name"]);
        }
    }
}

#[test]
fn output_is_byte_identical_across_runs() {
    let first = run(&["render", "-f", &examples()]).stdout;
    let second = run(&["render", "-f", &examples()]).stdout;
    assert!(!first.is_empty());
    assert_eq!(first, second);
}

#[test]
fn warns_about_mutable_image_tags() {
    let dir = scratch(
        "mutable",
        "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web}\nspec: {image: nginx:latest}\n",
    );
    let out = run(&["render", "-f", &dir]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("RelayService default/web: image \"nginx:latest\" has a mutable tag"),
        "{stderr}"
    );
}

/// Write `content` into a fresh directory and return the file path.
fn scratch(name: &str, content: &str) -> String {
    let dir: PathBuf = std::env::temp_dir().join(format!("relay-render-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("input.yaml");
    std::fs::write(&file, content).unwrap();
    file.display().to_string()
}

/// Render `content`; assert failure, no output, and a message containing every `expected` part.
fn assert_rejected(name: &str, content: &str, expected: &[&str]) {
    let file = scratch(name, content);
    let out = run(&["render", "-f", &file]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{name}: accepted");
    assert!(out.stdout.is_empty(), "{name}: partial output");
    assert!(stderr.contains(&file), "{name}: message does not name the file: {stderr}");
    for part in expected {
        assert!(stderr.contains(part), "{name}: {part:?} missing from: {stderr}");
    }
    assert!(
        stderr.lines().next().is_some_and(|l| l.starts_with(&format!("error: {file}"))),
        "{name}: {stderr}"
    );
}

const GOOD: &str = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: ok, namespace: demo}\nspec: {image: a:1}\n";

#[test]
fn rejects_unparsable_yaml() {
    assert_rejected("yaml", "apiVersion: v1\nkind: [unclosed\n", &["invalid YAML", "line"]);
}

#[test]
fn rejects_unknown_kind() {
    let input = format!("{GOOD}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\n");
    assert_rejected("kind", &input, &["document 2", "Deployment default/web", "unknown kind \"Deployment\""]);
}

#[test]
fn rejects_wrong_field_type() {
    let input = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web, namespace: demo}\nspec: {image: a:1, replicas: three}\n";
    assert_rejected(
        "type",
        input,
        &["document 1", "RelayService demo/web", "spec.replicas", "not of type \"integer\""],
    );
}

#[test]
fn rejects_out_of_range_port() {
    let input = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web}\nspec: {image: a:1, ports: [{name: http, containerPort: 70000}]}\n";
    assert_rejected("port", input, &["RelayService default/web", "spec.ports[0].containerPort", "70000"]);
}

#[test]
fn rejects_invalid_duration() {
    let input = "apiVersion: relayops.io/v1alpha1\nkind: HealthPolicy\nmetadata: {name: hp}\nspec: {tcp: {port: 5432}, interval: ten seconds}\n";
    assert_rejected("duration", input, &["HealthPolicy default/hp", "spec.interval", "ten seconds"]);
}

#[test]
fn rejects_unknown_field() {
    let input = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web}\nspec: {image: a:1, reload: {port: 80, restartKey: [A]}}\n";
    assert_rejected("unknown-field", input, &["spec.reload", "restartKey"]);
}

#[test]
fn rejects_cel_rule_violations() {
    let self_dep = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web}\nspec: {image: a:1, dependsOn: [web]}\n";
    assert_rejected("self-dep", self_dep, &["spec.dependsOn", "a service cannot depend on itself"]);
    let both = "apiVersion: relayops.io/v1alpha1\nkind: TestDeployment\nmetadata: {name: t}\nspec: {fromRelayService: web, template: {image: a:1}}\n";
    assert_rejected(
        "td-both",
        both,
        &["TestDeployment default/t", "set exactly one of template or fromRelayService"],
    );
}

#[test]
fn rejects_missing_health_policy() {
    let input = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web}\nspec: {image: a:1, healthPolicyRef: {name: gone}}\n";
    assert_rejected(
        "policy",
        input,
        &["RelayService default/web", "spec.healthPolicyRef.name", "HealthPolicy default/gone not found"],
    );
}

#[test]
fn rejects_dependency_cycle() {
    let input = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: a}\nspec: {image: a:1, dependsOn: [b]}\n---\napiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: b}\nspec: {image: b:1, dependsOn: [a]}\n";
    assert_rejected("cycle", input, &["spec.dependsOn", "dependency cycle: a → b → a"]);
}

#[test]
fn rejects_missing_dependency_and_secret() {
    let dep = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: api}\nspec: {image: a:1, dependsOn: [postgres]}\n";
    assert_rejected("missing-dep", dep, &["spec.dependsOn[0]", "RelayService default/postgres not found"]);
    let secret = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web}\nspec: {image: a:1, config: {secrets: [{name: TOKEN, secretKeyRef: {name: creds, key: token}}]}}\n";
    assert_rejected(
        "missing-secret",
        secret,
        &["spec.config.secrets[0].secretKeyRef", "Secret \"creds\" not found"],
    );
}

#[test]
fn rejects_bad_names() {
    let input =
        "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: Web_1}\nspec: {image: a:1}\n";
    assert_rejected("name", input, &["metadata.name", "DNS-1123"]);
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    use std::io::Read;
    use std::process::Stdio;
    // `relay-operator crd | head -c 100`: the CRDs are larger than a pipe's buffer.
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay-operator"))
        .arg("crd")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut first = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "exit {:?}, stderr {stderr}", out.status);
    assert!(String::from_utf8_lossy(&first).contains("CustomResourceDefinition"));
}

/// The examples' pod-template hashes as recorded before the newer spec fields existed
/// (`imagePullSecrets`, `podTemplate`, placement, `service`, `ingress`): a manifest that
/// does not use them keeps its pods across an operator upgrade.
#[test]
fn example_pod_template_hashes_are_unchanged() {
    let out = run(&["render", "-f", &examples()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = documents(&out.stdout);
    for (pod, hash) in [
        ("postgres-0", "d0cfb5a109"),
        ("relay-0", "fc88fd6951"),
        ("relay-1", "fc88fd6951"),
        ("api-0", "7180f76183"),
        ("relay-pr-42-td-0", "7bb848eac7"),
    ] {
        assert_eq!(
            find(&docs, "Pod", pod)["metadata"]["labels"]["relayops.io/pod-template-hash"],
            hash,
            "{pod}"
        );
    }
}

/// The stack example maps compose's `command:` (which replaces the image's CMD) to `args`,
/// keeping the image's ENTRYPOINT.
#[test]
fn the_stack_example_overrides_args_not_the_entrypoint() {
    let out = run(&["render", "-f", &examples()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = documents(&out.stdout);
    let container = &find(&docs, "Pod", "scheduler-0")["spec"]["containers"][0];
    assert_eq!(container["args"], serde_json::json!(["python", "-m", "src.scheduler"]));
    assert!(container.get("command").is_none(), "{container}");
}

#[test]
fn prints_the_ingress_and_refuses_the_operators_pod_labels() {
    let input = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web, namespace: shop}\nspec:\n  image: web:1.0.0\n  ports: [{name: http, containerPort: 8080}]\n  service: {type: NodePort}\n  ingress: {host: shop.example.com, tlsSecretName: shop-tls}\n";
    let out = run(&["render", "-f", &scratch("ingress", input)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = documents(&out.stdout);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Service", "Ingress", "Pod"]);
    let ingress = find(&docs, "Ingress", "web");
    assert_eq!(ingress["apiVersion"], "networking.k8s.io/v1");
    assert_eq!(ingress["metadata"]["namespace"], "shop");
    assert_eq!(ingress["spec"]["rules"][0]["host"], "shop.example.com");
    assert_eq!(find(&docs, "Service", "web")["spec"]["type"], "NodePort");

    let reserved = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web}\nspec: {image: a:1, podTemplate: {metadata: {labels: {relayops.io/service: other}}}}\n";
    assert_rejected("reserved-label", reserved, &["spec.podTemplate.metadata.labels", "set by the operator"]);
}
