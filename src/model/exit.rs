/// The process exit codes: the contract of every command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(into = "i32")]
pub enum ExitCode {
    /// Done: deployed, or the command did what was asked.
    Ok = 0,
    /// `deploy` failed and was rolled back: the service runs the previous tag.
    RolledBack = 1,
    /// Bad usage or config: nothing was touched.
    Usage = 2,
    /// A person must act: the report says what state everything is in and what to run next.
    Act = 3,
    /// `deploy` aborted before any change.
    Aborted = 4,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl From<ExitCode> for i32 {
    fn from(c: ExitCode) -> i32 {
        c.code()
    }
}

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// A usage or config error: exit 2, nothing was touched.
#[derive(Debug)]
pub struct Usage(pub anyhow::Error);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Usage {}

/// Marks an error as a usage error (exit 2).
pub fn usage<T>(r: anyhow::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::Error::new(Usage(e)))
}
