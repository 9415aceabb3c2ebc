//! Restore by scratch-and-swap: a plain dump restored over the live database would leave behind
//! what the failed migration created, so the dump goes into a fresh database, is validated there,
//! and only then replaces the live one by rename. The broken database is kept for forensics.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use super::{sql, Postgres};
use crate::model::{DbNames, Sha};

/// What a restore into scratch did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Bytes fed to the restore (compressed ones when the target decompresses).
    pub sql_bytes: u64,
}

impl Postgres {
    /// The names of a restore of deploy `sha`; the kept name is made unique if an earlier
    /// restore of the same deploy already used it.
    pub async fn swap_names(&self, sha: &Sha) -> Result<DbNames> {
        let names = DbNames::new(&self.name, sha)?;
        if self.database_exists(&names.failed).await? {
            return Ok(names.with_failed_suffix(sha, chrono::Utc::now()));
        }
        Ok(names)
    }

    /// Drops `scratch` if an interrupted restore left it, then creates it empty with the live
    /// database's owner, encoding and locale.
    pub async fn create_scratch(&self, scratch: &str) -> Result<()> {
        let m = &self.maintenance_db;
        self.query(m, &sql::drop_if_exists(scratch)).await?;
        let settings = self.query(m, &sql::settings_of(&self.name)).await?;
        self.query(m, &sql::create_empty(scratch, settings.trim()))
            .await
            .with_context(|| format!("cannot create the scratch database {scratch}"))?;
        Ok(())
    }

    /// Streams plain SQL into `db` in one transaction, stopping at the first error; `restricted`
    /// as in [`Postgres::restore_cmd`].
    pub async fn restore_into(
        &self,
        db: &str,
        sql: &mut (dyn AsyncRead + Unpin + Send),
        restricted: bool,
    ) -> Result<RestoreReport> {
        self.restore_cmd_into(self.restore_cmd(db, restricted), db, sql).await
    }

    /// Streams a dump in `format` (plain SQL, or the directory format's tar) into `db`.
    pub async fn restore_format_into(
        &self,
        db: &str,
        format: crate::model::Format,
        dump: &mut (dyn AsyncRead + Unpin + Send),
        restricted: bool,
    ) -> Result<RestoreReport> {
        self.restore_cmd_into(self.restore_cmd_for(format, db, restricted), db, dump).await
    }

    /// Streams a compressed dump in `format` into `db`, decompressed on the target by `codec`'s
    /// tool.
    pub async fn restore_packed_into(
        &self,
        db: &str,
        format: crate::model::Format,
        codec: crate::model::Codec,
        packed: &mut (dyn AsyncRead + Unpin + Send),
        restricted: bool,
    ) -> Result<RestoreReport> {
        let cmd = self.restore_file_cmd(db, format, codec.name(), codec.decompress_sh(), restricted);
        self.restore_cmd_into(cmd, db, packed).await
    }

    async fn restore_cmd_into(
        &self,
        cmd: crate::exec::Cmd,
        db: &str,
        sql: &mut (dyn AsyncRead + Unpin + Send),
    ) -> Result<RestoreReport> {
        let mut counted = crate::exec::CountingReader { inner: sql, n: 0 };
        let mut sink = tokio::io::sink();
        let exit = self.executor().run(&cmd, Some(&mut counted), &mut sink).await?;
        exit.check(&format!("restoring into {db}"))?;
        Ok(RestoreReport { sql_bytes: counted.n })
    }

    /// Drops `db` (a scratch or rehearsal copy), ending the sessions still on it first.
    pub async fn drop_database(&self, db: &str) -> Result<()> {
        // Clean-up runs to its end even when the run is being stopped.
        let _shield = crate::exec::cancel::shield();
        self.query(&self.maintenance_db, &sql::end_sessions_and_drop(db)).await?;
        Ok(())
    }

    /// Swaps `names.scratch` in as the live database ([`sql::swap`]). On failure the live database
    /// is left in place and connectable.
    pub async fn swap(&self, names: &DbNames) -> Result<()> {
        let m = &self.maintenance_db;
        let [close, wait, renames, reopen] = sql::swap(names);
        self.query(m, &close).await?;
        let result = async {
            self.query(m, &wait).await?;
            self.query(m, &renames).await
        }
        .await;
        // A dropped connection loses the renames' outcome, not necessarily the renames: the kept
        // name (new before this swap) exists and the scratch one is gone only if they committed.
        let result = match result {
            Err(e) if self.swapped(names).await => {
                tracing::warn!("{e:#}; yet both renames had committed: {} is the restored database", names.live);
                Ok(String::new())
            }
            r => r,
        };
        match result {
            Ok(_) => {
                self.query(m, &reopen).await?;
                Ok(())
            }
            Err(e) => {
                let reopen = self.query(m, &sql::allow_connections(&names.live, true)).await;
                if let Err(r) = reopen {
                    bail!("{e:#}; and re-allowing connections to {} failed too: {r:#}", names.live);
                }
                Err(e.context(format!(
                    "swapping {} in as {} failed; {} is unchanged",
                    names.scratch, names.live, names.live
                )))
            }
        }
    }

    /// Whether both renames of a swap took place.
    async fn swapped(&self, names: &DbNames) -> bool {
        matches!(
            (self.database_exists(&names.failed).await, self.database_exists(&names.scratch).await),
            (Ok(true), Ok(false))
        )
    }
}
