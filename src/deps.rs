//! The `dependsOn` graph of the RelayServices in one namespace: cycles and start order.

use std::collections::{BTreeMap, BTreeSet};

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
