//! deploy-guard: a guarded deploy with automatic rollback. The README's "How it is built" says
//! where each part lives.

pub mod app;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod db;
pub mod exec;
pub mod guard;
pub mod migrate;
pub mod model;
pub mod record;
pub mod report;
pub mod run;
pub mod simulate;
pub mod store;
pub mod world;
