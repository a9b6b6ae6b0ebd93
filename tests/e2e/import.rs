//! `relay-operator import` end to end: the seeds' 8-service compose stack, imported and
//! applied as it is (Secret templates included), starts in dependency order.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use relay_operator::deps::is_ready;
use relay_operator::import::{self, FileReader, ImportOptions};

use super::cluster::Scenario;
use super::get_service;

struct Fixtures;

impl FileReader for Fixtures {
    fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(fixtures().join(path)).map_err(|e| e.to_string())
    }
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_compose_stack_becomes_ready_in_dependency_order() {
    let s = Scenario::new("e2e-import").await;
    let _operator = s.operator("operator.log");
    let text = std::fs::read_to_string(fixtures().join("seed-keeper-stack.yml")).unwrap();
    let env = std::fs::read_to_string(fixtures().join("seed-keeper.env")).unwrap();
    let options = ImportOptions {
        namespace: Some(s.namespace.clone()),
        variables: import::parse_env_file(&env),
        ..ImportOptions::default()
    };
    let imported = import::import_compose("seed-keeper-stack.yml", &text, &options, &Fixtures).unwrap();
    let started = Instant::now();
    s.apply(&imported.to_yaml().unwrap());

    // dependent → its dependencies, as compose's depends_on says.
    let edges: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        ("app", vec!["db", "kafka", "elasticsearch"]),
        ("scheduler", vec!["db", "kafka", "elasticsearch"]),
        ("kafka", vec!["zookeeper"]),
        ("kibana", vec!["elasticsearch"]),
        ("kafka-connect", vec!["kafka", "elasticsearch"]),
        ("db", vec![]),
        ("zookeeper", vec![]),
        ("elasticsearch", vec![]),
    ]);
    // Watch as a user would, every 50 ms. When a dependent's first pod shows up, each of its
    // dependencies must already be Ready (services stay Ready here, so reading them right
    // after seeing the pod cannot miss an earlier Ready).
    let mut ready_at: BTreeMap<&str, Instant> = BTreeMap::new();
    let mut first_pod_at: BTreeMap<&str, Instant> = BTreeMap::new();
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    while ready_at.len() < edges.len() && started.elapsed() < Duration::from_secs(60) {
        for (name, dependencies) in &edges {
            if !first_pod_at.contains_key(name) && pods.get_opt(&format!("{name}-0")).await.unwrap().is_some()
            {
                first_pod_at.insert(name, Instant::now());
                for dependency in dependencies {
                    let service = get_service(&s.client, &s.namespace, dependency).await;
                    assert!(
                        service.is_some_and(|svc| is_ready(&svc)),
                        "{name}'s first pod exists while {dependency} is not Ready"
                    );
                }
            }
            if !ready_at.contains_key(name)
                && get_service(&s.client, &s.namespace, name).await.is_some_and(|svc| is_ready(&svc))
            {
                ready_at.insert(name, Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready_at.len(), edges.len(), "every imported service turns Ready: {ready_at:?}");
    assert_eq!(first_pod_at.len(), edges.len());
    eprintln!(
        "e2e: imported 8-service compose stack Ready in dependency order after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    s.cleanup().await;
}
