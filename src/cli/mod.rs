//! The command line: arguments, dispatch to the commands, output and exit codes.

mod args;
mod dispatch;
mod output;

pub use args::{Cli, Command, Global, PathChoice};
pub use dispatch::run;

/// Logs to stderr; `DEPLOY_GUARD_LOG` (e.g. `debug`) sets the level.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DEPLOY_GUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}
