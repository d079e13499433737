//! The category tree: every category has at most one parent, the tree never
//! contains a cycle, and it is never deeper than `MAX_DEPTH`. A move that would
//! break either rule is refused before anything is written.

use std::collections::HashMap;

use uuid::Uuid;

pub const MAX_DEPTH: usize = 8;

/// A snapshot of `child → parent` links, enough to judge a move.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    parent: HashMap<Uuid, Option<Uuid>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    #[error("the parent category does not exist")]
    UnknownParent,
    #[error("a category cannot be placed under itself or one of its descendants")]
    Cycle,
    #[error("the category tree may be at most {MAX_DEPTH} levels deep")]
    TooDeep,
}

impl Tree {
    pub fn new(links: impl IntoIterator<Item = (Uuid, Option<Uuid>)>) -> Self {
        Self { parent: links.into_iter().collect() }
    }

    pub fn contains(&self, id: Uuid) -> bool {
        self.parent.contains_key(&id)
    }

    /// Depth of a node: a root is at depth 1.
    fn depth(&self, id: Uuid) -> usize {
        let mut depth = 1;
        let mut cur = id;
        while let Some(Some(p)) = self.parent.get(&cur) {
            depth += 1;
            cur = *p;
            if depth > self.parent.len() {
                break; // a cycle in stored data; `can_move` keeps this from happening
            }
        }
        depth
    }

    /// Height of the subtree rooted at `id` (a leaf has height 1).
    fn height(&self, id: Uuid) -> usize {
        1 + self.children(id).map(|c| self.height(c)).max().unwrap_or(0)
    }

    fn children(&self, id: Uuid) -> impl Iterator<Item = Uuid> + '_ {
        self.parent.iter().filter(move |(_, p)| **p == Some(id)).map(|(c, _)| *c)
    }

    /// Whether `node` (new or existing) may hang under `new_parent`.
    pub fn can_move(&self, node: Uuid, new_parent: Option<Uuid>) -> Result<(), MoveError> {
        let Some(parent) = new_parent else { return Ok(()) };
        if !self.contains(parent) {
            return Err(MoveError::UnknownParent);
        }
        // Walking up from the new parent must never reach the node itself.
        let mut cur = Some(parent);
        let mut steps = 0;
        while let Some(c) = cur {
            if c == node {
                return Err(MoveError::Cycle);
            }
            steps += 1;
            if steps > self.parent.len() {
                return Err(MoveError::Cycle);
            }
            cur = self.parent.get(&c).copied().flatten();
        }
        let subtree = if self.contains(node) { self.height(node) } else { 1 };
        if self.depth(parent) + subtree > MAX_DEPTH {
            return Err(MoveError::TooDeep);
        }
        Ok(())
    }

    /// Applies a move already checked by `can_move`.
    pub fn apply(&mut self, node: Uuid, new_parent: Option<Uuid>) {
        self.parent.insert(node, new_parent);
    }

    /// `id` and every category above it, nearest first.
    pub fn ancestors(&self, id: Uuid) -> Vec<Uuid> {
        let mut out = vec![id];
        let mut cur = id;
        while let Some(Some(p)) = self.parent.get(&cur) {
            if out.len() > self.parent.len() {
                break; // a cycle in stored data; `can_move` keeps this from happening
            }
            out.push(*p);
            cur = *p;
        }
        out
    }

    /// `root` and everything below it, so a category filter covers its whole branch.
    pub fn descendants(&self, root: Uuid) -> Vec<Uuid> {
        let mut children: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for (c, p) in &self.parent {
            if let Some(p) = p {
                children.entry(*p).or_default().push(*c);
            }
        }
        let mut out = vec![root];
        let mut i = 0;
        while i < out.len() && out.len() <= self.parent.len() {
            if let Some(cs) = children.get(&out[i]) {
                out.extend(cs);
            }
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|i| Uuid::from_u128(i as u128 + 1)).collect()
    }

    #[test]
    fn refuses_to_move_a_node_under_its_descendant() {
        let [a, b, c]: [Uuid; 3] = ids(3).try_into().unwrap();
        let tree = Tree::new([(a, None), (b, Some(a)), (c, Some(b))]);
        assert_eq!(tree.can_move(a, Some(c)), Err(MoveError::Cycle));
        assert_eq!(tree.can_move(a, Some(a)), Err(MoveError::Cycle));
        assert_eq!(tree.can_move(c, Some(a)), Ok(()));
        assert_eq!(tree.can_move(c, Some(Uuid::nil())), Err(MoveError::UnknownParent));
    }

    #[test]
    fn limits_depth_including_the_moved_subtree() {
        let chain = ids(MAX_DEPTH + 1);
        let mut tree = Tree::new([(chain[0], None)]);
        for w in chain.windows(2).take(MAX_DEPTH - 1) {
            tree.can_move(w[1], Some(w[0])).unwrap();
            tree.apply(w[1], Some(w[0]));
        }
        let last = chain[MAX_DEPTH - 1];
        assert_eq!(tree.can_move(chain[MAX_DEPTH], Some(last)), Err(MoveError::TooDeep));
        let (root, other) = (Uuid::from_u128(998), Uuid::from_u128(999));
        tree.apply(root, None);
        tree.apply(other, Some(root));
        // The second node carries a subtree of height MAX_DEPTH - 1: it fits under a
        // root, but not one level further down.
        assert_eq!(tree.can_move(chain[1], Some(root)), Ok(()));
        assert_eq!(tree.can_move(chain[1], Some(other)), Err(MoveError::TooDeep));
    }

    #[test]
    fn descendants_cover_the_branch() {
        let [a, b, c, d]: [Uuid; 4] = ids(4).try_into().unwrap();
        let tree = Tree::new([(a, None), (b, Some(a)), (c, Some(b)), (d, None)]);
        let mut got = tree.descendants(a);
        got.sort();
        assert_eq!(got, vec![a, b, c]);
        assert_eq!(tree.descendants(d), vec![d]);
    }

    proptest! {
        /// Whatever sequence of moves is attempted, the ones allowed keep the tree
        /// acyclic and within depth, and every node stays reachable from a root.
        #[test]
        fn allowed_moves_keep_a_tree(moves in proptest::collection::vec((0usize..12, proptest::option::of(0usize..12)), 0..80)) {
            let nodes = ids(12);
            let mut tree = Tree::new(nodes.iter().map(|n| (*n, None)));
            for (n, p) in moves {
                let (node, parent) = (nodes[n], p.map(|p| nodes[p]));
                if tree.can_move(node, parent).is_ok() {
                    tree.apply(node, parent);
                }
            }
            for n in &nodes {
                // Walk to a root within MAX_DEPTH steps.
                let mut cur = *n;
                let mut depth = 1;
                while let Some(Some(p)) = tree.parent.get(&cur) {
                    cur = *p;
                    depth += 1;
                    prop_assert!(depth <= MAX_DEPTH, "too deep or cyclic");
                }
                prop_assert!(tree.descendants(cur).contains(n));
            }
        }
    }
}
