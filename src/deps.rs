//! The `dependsOn` graph of the RelayServices in one namespace: cycles, start order, and
//! where one service stands with its dependencies. Pure.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use crate::api::{ConditionType, RelayService, find_condition};

/// Edges: service name → the names it depends on.
pub type DependencyGraph = BTreeMap<String, Vec<String>>;

/// A cycle through `start`, as the path `start → … → start`, if there is one.
pub fn cycle_through(graph: &DependencyGraph, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &DependencyGraph,
        node: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut path, &mut seen).then_some(path)
}

/// Names in an order where every service comes after its dependencies (ties by name).
/// Services on a cycle come last, by name.
pub fn start_order(graph: &DependencyGraph) -> Vec<String> {
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    loop {
        let ready: Vec<String> = graph
            .iter()
            .filter(|(name, deps)| {
                !placed.contains(*name) && deps.iter().all(|d| placed.contains(d) || !graph.contains_key(d))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        placed.extend(ready.iter().cloned());
        order.extend(ready);
    }
    order.extend(graph.keys().filter(|n| !placed.contains(*n)).cloned());
    order
}

/// The state of a service's `dependsOn`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dependencies {
    /// No dependencies, or all Ready.
    Ready,
    /// These exist but are not Ready.
    Waiting(Vec<String>),
    /// These do not exist.
    Missing(Vec<String>),
    /// The service is on this cycle.
    Cycle(Vec<String>),
}

impl Dependencies {
    /// Whether pods may be created or rolled.
    pub fn ready(&self) -> bool {
        matches!(self, Self::Ready)
    }
}

/// Whether a RelayService's Ready condition is True for its current generation.
pub fn is_ready(service: &RelayService) -> bool {
    service.status.as_ref().is_some_and(|s| {
        s.observed_generation == service.metadata.generation
            && find_condition(&s.conditions, ConditionType::Ready).is_some_and(|c| c.status == "True")
    })
}

/// Where `service` stands with its dependencies, given the services of its namespace.
pub fn evaluate(service: &RelayService, in_namespace: &[&RelayService]) -> Dependencies {
    let graph: DependencyGraph =
        in_namespace.iter().map(|s| (s.name_any(), s.spec.depends_on.clone())).collect();
    let mut graph = graph;
    graph.insert(service.name_any(), service.spec.depends_on.clone());
    if let Some(cycle) = cycle_through(&graph, &service.name_any()) {
        return Dependencies::Cycle(cycle);
    }
    let mut missing = Vec::new();
    let mut waiting = Vec::new();
    for dependency in &service.spec.depends_on {
        match in_namespace.iter().find(|s| &s.name_any() == dependency) {
            None => missing.push(dependency.clone()),
            Some(found) if !is_ready(found) => waiting.push(dependency.clone()),
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        Dependencies::Missing(missing)
    } else if !waiting.is_empty() {
        Dependencies::Waiting(waiting)
    } else {
        Dependencies::Ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> DependencyGraph {
        edges.iter().map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect())).collect()
    }

    #[test]
    fn finds_cycles() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &["a"])]);
        assert_eq!(cycle_through(&g, "a"), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
        assert_eq!(cycle_through(&g, "d"), None, "d reaches a cycle but is not on one");
        let dag = graph(&[("api", &["postgres"]), ("scheduler", &["postgres", "api"]), ("postgres", &[])]);
        assert_eq!(cycle_through(&dag, "scheduler"), None);
    }

    #[test]
    fn orders_dependencies_first() {
        let dag = graph(&[("scheduler", &["postgres", "api"]), ("api", &["postgres"]), ("postgres", &[])]);
        assert_eq!(start_order(&dag), vec!["postgres", "api", "scheduler"]);
        let cyclic = graph(&[("a", &["b"]), ("b", &["a"]), ("c", &[])]);
        assert_eq!(start_order(&cyclic), vec!["c", "a", "b"]);
    }
}
