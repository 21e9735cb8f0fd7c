//! Where each stage goes on the page: columns by depth, rows within a
//! column. Pure: names and edges in, positions out.
//!
//! A stage's depth is the longest path to it from a stage with no inputs,
//! so every edge points right (in an acyclic graph, which is every graph a
//! `Pipeline` builds: a stage subscribes only to stages built before it).
//! Within a column, stages keep the order `stats()` lists them in, which
//! keeps the instances of a `.concurrency(n)` stage (`name[0]`, `name[1]`,
//! ...) one under the other, and adds late subscribers below the stages
//! that were there first.

use std::collections::HashMap;

/// A stage's cell in the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cell {
    /// The column: the longest path from a stage with no inputs.
    pub(crate) depth: usize,
    /// The row within the column, from 0, in the order stages are listed.
    pub(crate) row: usize,
}

/// The cell of each of `stages` (same order), given `edges` as
/// `(from, to)` names. Edges naming an unknown stage are ignored. A cycle
/// (which a `Pipeline` cannot build) does not loop forever: depths stop
/// growing after `stages.len()` rounds, so each is below `stages.len()`.
pub(crate) fn layout<'a>(
    stages: &[&'a str],
    edges: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<Cell> {
    let index: HashMap<&str, usize> = stages.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let edges: Vec<(usize, usize)> = edges
        .into_iter()
        .filter_map(|(f, t)| Some((*index.get(f)?, *index.get(t)?)))
        .filter(|(f, t)| f != t)
        .collect();
    let n = stages.len();
    let mut depth = vec![0usize; n];
    // Bellman-Ford style relaxation for the longest path: at most n - 1
    // rounds settle an acyclic graph; the cap bounds a cyclic one.
    for _ in 0..n {
        let mut changed = false;
        for &(f, t) in &edges {
            let d = (depth[f] + 1).min(n.saturating_sub(1));
            if d > depth[t] {
                depth[t] = d;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut rows: HashMap<usize, usize> = HashMap::new();
    depth
        .into_iter()
        .map(|depth| {
            let row = rows.entry(depth).or_insert(0);
            let cell = Cell { depth, row: *row };
            *row += 1;
            cell
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_chain_goes_left_to_right_and_instances_stack() {
        let stages = ["src", "work[0]", "work[1]", "sink"];
        let edges = [
            ("src", "work[0]"),
            ("src", "work[1]"),
            ("work[0]", "sink"),
            ("work[1]", "sink"),
        ];
        let cells = layout(&stages, edges);
        let got: Vec<(usize, usize)> = cells.iter().map(|c| (c.depth, c.row)).collect();
        assert_eq!(got, [(0, 0), (1, 0), (1, 1), (2, 0)]);
    }

    #[test]
    fn a_shortcut_does_not_pull_a_stage_left() {
        // src -> a -> b -> out, and src -> out directly: out stays after b.
        let stages = ["src", "a", "b", "out"];
        let edges = [("src", "a"), ("a", "b"), ("b", "out"), ("src", "out")];
        let depths: Vec<usize> = layout(&stages, edges).iter().map(|c| c.depth).collect();
        assert_eq!(depths, [0, 1, 2, 3]);
    }

    /// Names `s0`, `s1`, ... and edges between them by index.
    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    proptest! {
        /// In an acyclic graph every edge points right, a stage's depth is
        /// exactly one more than its deepest input's (the longest path), and
        /// no two stages share a cell.
        #[test]
        fn acyclic_layouts_are_longest_paths(
            n in 1usize..12,
            raw in proptest::collection::vec((0usize..12, 0usize..12), 0..30),
        ) {
            let names = names(n);
            let stages: Vec<&str> = names.iter().map(String::as_str).collect();
            // Only edges from a lower to a higher index: acyclic, as a
            // Pipeline's (a stage subscribes to stages built before it).
            let edges: Vec<(usize, usize)> = raw
                .into_iter()
                .map(|(a, b)| (a % n, b % n))
                .filter(|(a, b)| a < b)
                .collect();
            let cells = layout(&stages, edges.iter().map(|&(a, b)| (stages[a], stages[b])));
            prop_assert_eq!(cells.len(), n);
            for &(a, b) in &edges {
                prop_assert!(cells[b].depth > cells[a].depth);
            }
            for (i, c) in cells.iter().enumerate() {
                let deepest_input = edges.iter().filter(|e| e.1 == i).map(|e| cells[e.0].depth + 1).max();
                prop_assert_eq!(c.depth, deepest_input.unwrap_or(0));
            }
            let mut seen = std::collections::HashSet::new();
            for c in &cells {
                prop_assert!(seen.insert((c.depth, c.row)));
            }
        }

        /// Any edges at all (cycles, self-loops, unknown names) give one cell
        /// per stage with a depth below the number of stages.
        #[test]
        fn any_graph_terminates_with_bounded_depths(
            n in 0usize..10,
            raw in proptest::collection::vec((0usize..12, 0usize..12), 0..40),
        ) {
            let names = names(12);
            let stages: Vec<&str> = names.iter().take(n).map(String::as_str).collect();
            let cells = layout(&stages, raw.iter().map(|&(a, b)| (names[a].as_str(), names[b].as_str())));
            prop_assert_eq!(cells.len(), n);
            for c in &cells {
                prop_assert!(c.depth < n.max(1));
            }
        }
    }
}
