//! One module per command: arguments in, the driver or an adapter, a result out.

pub mod backup;
pub mod check;
pub mod deploy;
pub mod init;
pub mod lock;
pub mod plan;
pub mod pr_rehearse;
pub mod replay;
pub mod resolve;
pub mod restore;
pub mod runbook;
