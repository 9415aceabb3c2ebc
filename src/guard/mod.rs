//! The decision tree, as pure data and logic: which step runs next given how the last one
//! ended. No I/O and no clock here; `run` performs the steps and feeds their results back.

mod engine;
mod journal;
mod outcome;
pub mod plan;
mod step;
pub mod tree;

pub use engine::{Assessment, Engine, Next, StepResult};
pub use journal::{Abandoned, Entry, EntryState, HostTag, Journal, WayBack};
pub use outcome::{DbPath, Outcome};
pub use step::Step;
pub use tree::{Branch, Edge, End, Mode, To};
