//! `relay-operator render` end to end: the examples, and one test per kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relay-operator")).args(args).output().expect("binary runs")
}

/// Run the binary with `input` on standard input.
fn run_with_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay-operator"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    child.stdin.take().expect("stdin is piped").write_all(input.as_bytes()).expect("input written");
    child.wait_with_output().expect("binary finishes")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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
    assert_rejected(
        "yaml",
        "apiVersion: v1\nkind: [unclosed\n",
        &["invalid YAML: unclosed bracket '[' at line 2, column 7"],
    );
}

#[test]
fn rejects_unknown_kind_of_our_group() {
    let input =
        format!("{GOOD}---\napiVersion: relayops.io/v1alpha1\nkind: RelayServer\nmetadata: {{name: web}}\n");
    assert_rejected(
        "kind",
        &input,
        &["document 2", "RelayServer default/web", "kind: unknown kind \"RelayServer\""],
    );
    let version = GOOD.replace("v1alpha1", "v1");
    assert_rejected("version", &version, &["apiVersion: \"relayops.io/v1\" is not served"]);
}

#[test]
fn rejects_wrong_field_type() {
    let input = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web, namespace: demo}\nspec: {image: a:1, replicas: three}\n";
    assert_rejected(
        "type",
        input,
        &["document 1", "RelayService demo/web", "spec.replicas: \"three\" is not an integer"],
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
    assert_rejected(
        "duration",
        input,
        &[
            "HealthPolicy default/hp",
            "spec.interval: \"ten seconds\" must be a duration such as 30s, 5m or 1h30m",
        ],
    );
}

#[test]
fn rejects_unknown_field() {
    let input = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web}\nspec: {image: a:1, reload: {port: 80, restartKey: [A]}}\n";
    assert_rejected("unknown-field", input, &["spec.reload.restartKey: unknown field"]);
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
        &[
            "RelayService default/web",
            "spec.healthPolicyRef.name",
            "HealthPolicy default/gone not found",
            "--assume-exists healthpolicy/gone",
        ],
    );
}

#[test]
fn rejects_dependency_cycle() {
    let input = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: a}\nspec: {image: a:1, dependsOn: [b]}\n---\napiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: b}\nspec: {image: b:1, dependsOn: [a]}\n";
    assert_rejected("cycle", input, &["spec.dependsOn", "dependency cycle: a → b → a"]);
}

#[test]
fn rejects_missing_dependency() {
    let dep = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: api}\nspec: {image: a:1, dependsOn: [postgres]}\n";
    assert_rejected("missing-dep", dep, &["spec.dependsOn[0]", "RelayService default/postgres not found"]);
}

#[test]
fn rejects_an_object_defined_twice() {
    let file = scratch("twice", &format!("{GOOD}---\n{GOOD}"));
    let out = run(&["render", "-f", &file]);
    assert_eq!(
        stderr_of(&out),
        format!(
            "error: {file}:6: document 2 (RelayService demo/ok): metadata.name: defined twice (first at {file}:1)\n"
        )
    );
}

#[test]
fn rejects_bad_names() {
    let input =
        "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: Web_1}\nspec: {image: a:1}\n";
    assert_rejected("name", input, &["metadata.name", "must be a lowercase RFC 1123 label"]);
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

const SECRET_USER: &str = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web, namespace: demo}\nspec: {image: a:1, config: {secrets: [{name: TOKEN, secretKeyRef: {name: creds, key: token}}]}}\n";

#[test]
fn reads_standard_input_mixed_with_files_and_directories() {
    let file = scratch("stdin-mix", GOOD);
    let input = SECRET_USER.replace("name: web,", "name: piped,");
    let args = ["render", "-f", &file, "-f", "-", "-f", &examples(), "--assume-exists", "secret/creds"];
    let out = run_with_stdin(&args, &input);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let docs = documents(&out.stdout);
    find(&docs, "Pod", "ok-0");
    find(&docs, "Pod", "piped-0");
    find(&docs, "Pod", "relay-pr-42-td-0");
}

#[test]
fn an_error_on_standard_input_names_it() {
    let out = run_with_stdin(
        &["render", "-f", "-"],
        "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web}\nspec: {}\n",
    );
    assert!(!out.status.success());
    assert_eq!(
        stderr_of(&out),
        "error: <stdin>:1: document 1 (RelayService default/web): spec.image: required\n"
    );
}

#[test]
fn json_output_is_one_list_of_the_same_objects() {
    let yaml = run(&["render", "-f", &examples()]);
    let json = run(&["render", "-f", &examples(), "-o", "json"]);
    assert!(json.status.success(), "{}", stderr_of(&json));
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).expect("output is one JSON document");
    assert_eq!((list["apiVersion"].as_str(), list["kind"].as_str()), (Some("v1"), Some("List")));
    assert_eq!(list["items"].as_array().expect("items"), &documents(&yaml.stdout));
}

#[test]
fn other_kinds_are_passed_over_with_a_note() {
    let input = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: demo}}\n---\n{GOOD}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: demo}}\nspec: {{replicas: 1}}\n"
    );
    let file = scratch("passed-over", &input);
    let out = run(&["render", "-f", &file]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        stderr_of(&out),
        format!(
            "note: {file}:1: document 1 (Namespace demo): not managed by relay-operator: passed over\n\
             note: {file}:10: document 3 (Deployment demo/web): not managed by relay-operator: passed over\n"
        )
    );
    let docs = documents(&out.stdout);
    find(&docs, "Pod", "ok-0");
    assert!(!docs.iter().any(|d| d["kind"] == "Namespace" || d["kind"] == "Deployment"));
}

#[test]
fn a_compose_file_gets_a_hint() {
    let file = scratch("compose", "services:\n  web:\n    image: nginx:1.27\n    ports: [\"8080:80\"]\n");
    let out = run(&["render", "-f", &file]);
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(
        stderr_of(&out).contains(&format!(
            "this looks like a docker-compose file: convert it with `relay-operator import -f {file}`"
        )),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn an_input_without_documents_is_an_error() {
    let file = scratch("empty", "# nothing here yet\n---\n");
    let out = run(&["render", "-f", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(stderr_of(&out), format!("error: no documents found in {file}\n"));
    let piped = run_with_stdin(&["render", "-f", "-"], "");
    assert_eq!(piped.status.code(), Some(1));
    assert_eq!(stderr_of(&piped), "error: no documents found in <stdin>\n");
}

#[test]
fn every_error_of_a_run_is_reported() {
    let dir: PathBuf = std::env::temp_dir().join(format!("relay-render-{}-all-errors", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.yaml");
    let b = dir.join("b.yaml");
    let c = dir.join("c.yaml");
    std::fs::write(&a, "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: one}\nspec: {image: a:1, replicas: two, ports: [{name: http, containerPort: 70000}]}\n---\napiVersion: relayops.io/v1alpha1\nkind: HealthPolicy\nmetadata: {name: hp}\nspec: {tcp: {port: 1}, interval: soon}\n").unwrap();
    std::fs::write(&b, "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: two}\nspec: {image: a:1, dependsOn: [nowhere]}\n").unwrap();
    std::fs::write(&c, "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: three}\nspec: {image: a:1, healthPolicyRef: {name: hp}}\n").unwrap();
    let out = run(&["render", "-f", &dir.display().to_string()]);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no partial output");
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let expected = [
        format!(
            "error: {a}:1: document 1 (RelayService default/one): spec.ports[0].containerPort: 70000 is greater than the maximum of 65535"
        ),
        format!(
            "error: {a}:1: document 1 (RelayService default/one): spec.replicas: \"two\" is not an integer"
        ),
        format!(
            "error: {a}:6: document 2 (HealthPolicy default/hp): spec.interval: \"soon\" must be a duration such as 30s, 5m or 1h30m"
        ),
        format!(
            "error: {b}:1: document 1 (RelayService default/two): spec.dependsOn[0]: RelayService default/nowhere not found among the inputs; if it is created elsewhere, pass --assume-exists relayservice/nowhere"
        ),
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    // The service referring to the invalid HealthPolicy is not reported a second time.
    assert_eq!(lines, expected, "{stderr}");
}

#[test]
fn out_of_band_secrets_are_assumed_with_a_warning() {
    let file = scratch("oob-secret", SECRET_USER);
    let out = run(&["render", "-f", &file]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        stderr_of(&out),
        format!(
            "warning: {file}:1: document 1 (RelayService demo/web): spec.config.secrets[0].secretKeyRef: Secret demo/creds is not among the inputs: assumed to exist: create it before applying (config hashes are computed without its values)\n"
        )
    );
    // The pod takes the value from the Secret by reference, as on the cluster.
    let docs = documents(&out.stdout);
    let pod = find(&docs, "Pod", "web-0");
    assert!(pod.to_string().contains(r#""secretKeyRef":{"key":"token","name":"creds"}"#), "{pod}");
    let assumed = run(&["render", "-f", &file, "--assume-exists", "demo/secret/*"]);
    assert!(assumed.status.success() && assumed.stderr.is_empty(), "{}", stderr_of(&assumed));
    assert_eq!(assumed.stdout, out.stdout);
}

#[test]
fn an_out_of_band_health_policy_needs_assume_exists() {
    let input = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web}\nspec: {image: a:1, ports: [{name: http, containerPort: 80}], healthPolicyRef: {name: shared}}\n";
    let file = scratch("oob-policy", input);
    let refused = run(&["render", "-f", &file]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr_of(&refused)
            .contains("pass --assume-exists healthpolicy/shared to render the pods without its probes")
    );
    let out = run(&["render", "-f", &file, "--assume-exists", "HealthPolicy/shared"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out)
            .contains("HealthPolicy default/shared is assumed to exist: pods rendered without its probes")
    );
    let docs = documents(&out.stdout);
    let container = &find(&docs, "Pod", "web-0")["spec"]["containers"][0];
    assert!(container.get("readinessProbe").is_none() && container.get("livenessProbe").is_none());
}

#[test]
fn a_bad_assume_exists_pattern_is_a_usage_error() {
    let out = run(&["render", "-f", &examples(), "--assume-exists", "configmap/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("use one of Secret, HealthPolicy, RelayService"), "{}", stderr_of(&out));
}

#[test]
fn a_repository_with_thousands_of_documents_renders() {
    let config_maps: String = (0..2_000)
        .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}, namespace: demo}}\ndata: {{k: v}}\n"))
        .collect();
    let file = scratch("many", &format!("{config_maps}---\n{GOOD}"));
    let out = run(&["render", "-f", &file]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    find(&documents(&out.stdout), "Pod", "ok-0");
}

#[test]
fn a_list_renders_like_its_items() {
    let service: serde_json::Value = serde_saphyr::from_str(GOOD).unwrap();
    let namespace =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}});
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [namespace, service]});
    let file = scratch("list", &list.to_string());
    let out = run(&["render", "-f", &file]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        stderr_of(&out),
        format!("note: {file}:1: document 1 (Namespace demo): not managed by relay-operator: passed over\n")
    );
    find(&documents(&out.stdout), "Pod", "ok-0");
}

#[test]
fn an_unreadable_input_does_not_hide_the_errors_of_the_others() {
    let broken = scratch("broken-yaml", "apiVersion: v1\nkind: [unclosed\n");
    let input = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: web}\nspec: {image: a:1, replicas: two, healthPolicyRef: {name: maybe-in-the-broken-file}}\n";
    let other = scratch("with-broken", input);
    let out = run(&["render", "-f", &broken, "-f", &other]);
    let stderr = stderr_of(&out);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with(&format!("error: {broken}: invalid YAML")), "{stderr}");
    assert!(lines[1].ends_with("spec.replicas: \"two\" is not an integer"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn secrets_of_the_environment_are_assumed_with_a_warning_too() {
    let input = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: db}\nspec:\n  image: postgres:17\n  env: [{name: PASSWORD, valueFrom: {secretKeyRef: {name: db-credentials, key: password}}}]\n  envFrom: [{secretRef: {name: db-extra}}, {secretRef: {name: maybe, optional: true}}]\n";
    let file = scratch("env-secrets", input);
    let out = run(&["render", "-f", &file]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let location = format!("{file}:1: document 1 (RelayService default/db)");
    assert_eq!(
        stderr_of(&out),
        format!(
            "warning: {location}: spec.env[0].valueFrom.secretKeyRef: Secret default/db-credentials is not among the inputs: assumed to exist: create it before applying\n\
             warning: {location}: spec.envFrom[0].secretRef: Secret default/db-extra is not among the inputs: assumed to exist: create it before applying\n"
        )
    );
    let quiet = run(&["render", "-f", &file, "--assume-exists", "secret/db-*"]);
    assert!(quiet.status.success() && quiet.stderr.is_empty(), "{}", stderr_of(&quiet));
}

#[test]
fn services_of_another_repository_can_be_assumed() {
    let input = "apiVersion: relayops.io/v1alpha1\nkind: RelayService\nmetadata: {name: api}\nspec: {image: a:1, dependsOn: [postgres]}\n---\napiVersion: relayops.io/v1alpha1\nkind: TestDeployment\nmetadata: {name: pr-1}\nspec: {fromRelayService: shared}\n";
    let file = scratch("other-repo", input);
    let refused = run(&["render", "-f", &file]);
    let stderr = stderr_of(&refused);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(stderr.contains("spec.dependsOn[0]: RelayService default/postgres not found among the inputs"));
    assert!(stderr.contains("spec.fromRelayService: RelayService default/shared not found among the inputs"));
    let out = run(&["render", "-f", &file, "--assume-exists", "default/relayservice/*"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        stderr_of(&out),
        format!(
            "warning: {file}:6: document 2 (TestDeployment default/pr-1): spec.fromRelayService: RelayService default/shared is assumed to exist: not rendered (its template is that service's spec)\n"
        )
    );
    let docs = documents(&out.stdout);
    find(&docs, "Pod", "api-0");
    assert!(!docs.iter().any(|d| d["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("pr-1"))));
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
