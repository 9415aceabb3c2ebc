//! The command line: arguments, dispatch to the commands, output and exit codes.

mod args;
mod dispatch;
mod output;

pub use args::{Cli, Command, Global, LockAction, PathChoice};
pub use dispatch::run;

/// Keeps this process's memory and environment (the secrets: the SSH key, S3 and GitHub
/// credentials) from the commands it runs: a migration, deploy or health command runs as the same
/// user and could otherwise read `/proc/$PPID/environ`. Not dumpable, the process's `/proc` files
/// belong to root and no process of the same user may read or trace it (nor is a core written).
#[allow(unsafe_code)]
pub fn keep_secrets_in_the_process() {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers and only changes this process's flag.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if r != 0 {
        tracing::warn!(
            "could not make this process non-dumpable ({}): commands it runs as the same user could read its secrets",
            std::io::Error::last_os_error()
        );
    }
}

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
