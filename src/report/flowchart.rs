//! The decision tree of a mode as a mermaid flowchart, drawn from `guard::tree`'s edges: the
//! summary colours the path a run took on it, and the README shows the deploy's.

use std::fmt::Write;

use crate::guard::tree::{self, Branch, End, Mode, To};
use crate::guard::Step;

/// A step's node id in the chart.
pub fn node_id(s: Step) -> String {
    s.name().replace('-', "_")
}

/// `flowchart TD` with every step `mode` can run and every edge between them. A tool that cannot
/// revert has no fast path: its branch is left out (its way back is the forward-only edge).
pub fn mermaid(mode: Mode, can_revert: bool) -> String {
    let id = node_id;
    let drawn = |s: Step| can_revert || !matches!(s, Step::Revert | Step::VerifyRevert);
    let mut md = String::from("flowchart TD\n");
    for step in tree::steps(mode).into_iter().filter(|s| drawn(*s)) {
        let _ = writeln!(md, "  {}[\"{}\"]", id(step), step.title());
    }
    let mut ends: Vec<End> = Vec::new();
    for e in tree::edges(mode).filter(|e| drawn(e.from) && !matches!(e.to, To::Run(s) if !drawn(s))) {
        let to = match e.to {
            To::Run(s) => id(s),
            To::End(end) => {
                if !ends.contains(&end) {
                    ends.push(end);
                    let _ = writeln!(md, "  {}([\"{}\"])", end.name(), end.title());
                }
                end.name().to_string()
            }
        };
        let arrow = match e.on {
            Branch::Ok => "-->".to_string(),
            Branch::Failed => "-. fails .->".to_string(),
            other => format!("-- {} -->", other.label()),
        };
        let _ = writeln!(md, "  {} {arrow} {to}", id(e.from));
    }
    md
}
