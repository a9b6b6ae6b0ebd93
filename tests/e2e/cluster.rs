//! The real control plane of the suite (`scripts/control-plane.sh`), started once per test
//! process and stopped by the script's watchdog when the process exits, and what each
//! scenario gets from it: a namespace under the restricted Pod Security Standard, the
//! chart's RBAC for the operator, a kubelet, and the operator binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

use super::kubelet::Kubelet;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared control plane.
pub struct ControlPlane {
    /// Its working directory (certificates, logs, audit log).
    pub dir: PathBuf,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
}

static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();

impl ControlPlane {
    /// Start it (first call) and install the CRDs; later calls return the same one.
    pub fn get() -> &'static ControlPlane {
        CONTROL_PLANE.get_or_init(|| {
            let dir = root().join("target").join("e2e").join(format!("cp-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let started = Instant::now();
            let status = Command::new(root().join("scripts/control-plane.sh"))
                .arg("start")
                .arg(&dir)
                .args(["--watch-pid", &std::process::id().to_string()])
                .status()
                .expect("scripts/control-plane.sh runs");
            assert!(status.success(), "the control plane did not start (run scripts/install-tools.sh first)");
            eprintln!("e2e: control plane ready in {:.1} s", started.elapsed().as_secs_f64());
            let cp = ControlPlane { kubeconfig: dir.join("kubeconfig"), dir };
            cp.kubectl(&["apply", "--server-side", "--field-manager=e2e", "-f", "crds/"]).success();
            cp.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]).success();
            cp
        })
    }

    /// Run kubectl as admin from the repository root.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl(&self.kubeconfig, args, None)
    }

    /// An admin client.
    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig).await
    }

    /// The audit log: one JSON event per request.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }
}

/// A kubectl run's outcome.
pub struct Output {
    /// Exit status was 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Panic with kubectl's output unless it succeeded.
    pub fn success(self) -> Self {
        assert!(self.ok, "kubectl failed:\n{}\n{}", self.stdout, self.stderr);
        self
    }
}

/// Run kubectl with `kubeconfig`, optionally feeding `stdin`.
pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .current_dir(root())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl is installed");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A client for a kubeconfig file.
pub async fn client_from(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// One scenario's world: its namespace, the operator's identity in it, a kubelet.
pub struct Scenario {
    /// The namespace (labelled `pod-security.kubernetes.io/enforce: restricted`).
    pub namespace: String,
    /// Admin client.
    pub client: Client,
    /// The kubelet serving this namespace's pods.
    pub kubelet: Kubelet,
    /// Working directory: logs, kubeconfigs, volumes.
    pub dir: PathBuf,
    /// The operator's kubeconfig: the chart's ServiceAccount token.
    pub operator_kubeconfig: PathBuf,
    /// The operator's user name in the audit log.
    pub operator_user: String,
    /// Cluster-scoped objects of the chart's RBAC (`kind/name`), removed by [`Scenario::cleanup`].
    cluster_objects: Vec<String>,
}

/// How a scenario's kubelet plays the node.
enum Node {
    /// A worker, volumes and a stand-in app per pod.
    Full,
    /// One status write per pod; hook servers for the pods of this service.
    Light(String),
}

/// Create `name` labelled `pod-security.kubernetes.io/enforce: restricted`, as admin.
pub async fn create_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }}}))
    .unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
}

impl Scenario {
    /// A new namespace with the chart's RBAC (namespaced scope) and a kubelet.
    pub async fn new(namespace: &str) -> Self {
        let values = ["rbac.scope=namespaced".to_owned(), format!("watchNamespaces[0]={namespace}")];
        Self::with_chart_rbac(namespace, "relay-operator", &values, Node::Full).await
    }

    /// [`Scenario::new`] with the kubelet in light mode (see [`Kubelet::start_light`]): pods
    /// turn Running and Ready at once, and only those of `hook_service` answer a reload hook.
    pub async fn light(namespace: &str, hook_service: &str) -> Self {
        let values = ["rbac.scope=namespaced".to_owned(), format!("watchNamespaces[0]={namespace}")];
        Self::with_chart_rbac(namespace, "relay-operator", &values, Node::Light(hook_service.to_owned()))
            .await
    }

    /// A new namespace whose operator has the chart's cluster-scope RBAC with `values`
    /// (`--set` arguments), rendered as release `NAMESPACE`: the ClusterRole, its binding and
    /// the ServiceAccount are named `NAMESPACE-relay-operator`, so parallel scenarios don't
    /// clash. Namespaces its Roles name besides this one must exist already.
    pub async fn cluster_scoped(namespace: &str, values: &[String]) -> Self {
        Self::with_chart_rbac(namespace, namespace, values, Node::Full).await
    }

    async fn with_chart_rbac(namespace: &str, release: &str, values: &[String], node: Node) -> Self {
        let cp = ControlPlane::get();
        let client = cp.client().await;
        let dir = cp.dir.join(namespace);
        std::fs::create_dir_all(&dir).unwrap();
        create_namespace(&client, namespace).await;
        let rbac = helm_rbac(namespace, release, values);
        kubectl(&cp.kubeconfig, &["apply", "--server-side", "--field-manager=e2e", "-f", "-"], Some(&rbac))
            .success();
        let documents: Vec<Value> = serde_saphyr::from_multiple(&rbac).unwrap();
        let names = |kind: &str| -> Vec<String> {
            documents
                .iter()
                .filter(|d| d["kind"] == kind)
                .map(|d| d["metadata"]["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let account = names("ServiceAccount").pop().expect("the chart's ServiceAccount");
        let cluster_objects = ["ClusterRole", "ClusterRoleBinding"]
            .iter()
            .flat_map(|kind| names(kind).into_iter().map(move |name| format!("{kind}/{name}")))
            .collect();
        let token =
            kubectl(&cp.kubeconfig, &["create", "token", &account, "-n", namespace, "--duration=4h"], None)
                .success()
                .stdout;
        let operator_kubeconfig = dir.join("operator.kubeconfig");
        write_token_kubeconfig(&cp.kubeconfig, token.trim(), &operator_kubeconfig);
        let kubelet = match node {
            Node::Full => {
                Kubelet::start(client.clone(), namespace, dir.join("pods"), Duration::from_secs(60)).await
            }
            Node::Light(hook_service) => {
                Kubelet::start_light(client.clone(), namespace, Some(hook_service)).await
            }
        };
        Self {
            namespace: namespace.to_owned(),
            client,
            kubelet,
            dir,
            operator_kubeconfig,
            operator_user: format!("system:serviceaccount:{namespace}:{account}"),
            cluster_objects,
        }
    }

    /// Start the operator binary as the chart's ServiceAccount, watching this namespace.
    pub fn operator(&self, log_name: &str) -> Operator {
        Operator::start(&self.operator_kubeconfig, &self.namespace, &self.dir.join(log_name), &[])
    }

    /// `kubectl apply --server-side` of `yaml` into this namespace, as admin.
    pub fn apply(&self, yaml: &str) {
        let cp = ControlPlane::get();
        kubectl(
            &cp.kubeconfig,
            &["apply", "--server-side", "--field-manager=e2e-user", "-n", &self.namespace, "-f", "-"],
            Some(yaml),
        )
        .success();
    }

    /// Delete the namespace (the namespace controller removes everything in it) and the
    /// cluster-scoped RBAC objects.
    pub async fn cleanup(self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces.delete(&self.namespace, &DeleteParams::default()).await;
        for object in &self.cluster_objects {
            kubectl(&ControlPlane::get().kubeconfig, &["delete", object, "--ignore-not-found"], None);
        }
    }
}

/// The chart's ServiceAccount and RBAC objects, release `release` in `namespace`, with
/// `values` (`--set` arguments).
fn helm_rbac(namespace: &str, release: &str, values: &[String]) -> String {
    let helm = root().join(".tools/bin/helm");
    let out = Command::new(&helm)
        .args(["template", release, "charts/relay-operator", "--namespace", namespace])
        .args(values.iter().flat_map(|value| ["--set", value.as_str()]))
        .args(["--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml"])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{} (run scripts/install-tools.sh): {e}", helm.display()));
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A kubeconfig for the admin's server and CA, authenticating with `token`.
fn write_token_kubeconfig(admin: &Path, token: &str, path: &Path) {
    let mut config: Value = serde_saphyr::from_str(&std::fs::read_to_string(admin).unwrap()).unwrap();
    config["users"] = json!([{"name": "operator", "user": {"token": token}}]);
    for context in config["contexts"].as_array_mut().unwrap() {
        context["context"]["user"] = json!("operator");
    }
    std::fs::write(path, serde_json::to_string(&config).unwrap()).unwrap();
}

/// The operator binary: `RELAY_E2E_OPERATOR_BIN` when set (e.g. a release build for the
/// scale harness), else the one cargo built with this test.
fn operator_binary() -> PathBuf {
    std::env::var_os("RELAY_E2E_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_relay-operator")))
}

/// The operator binary, running.
pub struct Operator {
    child: Option<Child>,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub ops_addr: String,
}

impl Operator {
    /// Start `relay-operator run` for `namespace`, logging to `log`.
    pub fn start(kubeconfig: &Path, namespace: &str, log: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(kubeconfig, namespace, log, extra, &[])
    }

    /// [`Operator::start`] with extra environment variables.
    pub fn start_with_env(
        kubeconfig: &Path,
        namespace: &str,
        log: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let ops_addr = format!("127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(operator_binary())
            .args(["run", "--namespaces", namespace, "--metrics-addr", &ops_addr, "--hook-via", "pod-ip"])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RELAY_LOG_LEVEL", "info,relay_operator=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child: Some(child), ops_addr }
    }

    /// The operator's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Wait until `/readyz` answers 200 (every cache synced).
    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.ops_addr);
        eventually("operator /readyz", Duration::from_secs(60), || {
            let url = url.clone();
            async move { reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
    }

    /// SIGTERM, then how long it took to exit and whether it exited 0.
    pub fn terminate(&mut self) -> (Duration, bool) {
        let mut child = self.child.take().unwrap();
        let started = Instant::now();
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (started.elapsed(), status.success());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return (started.elapsed(), false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Poll `check` every 100 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}
