//! `runbook`: the manual runbook for the newest deploy of this project (or `--sha`'s), with this
//! deployment's exact commands.

use anyhow::{Context, Result};

use crate::guard::Mode;
use crate::model::{Sha, ShaPrefix};
use crate::run::Run;
use crate::world::World;

pub async fn render(w: &World, sha: Option<&ShaPrefix>, config_arg: &str) -> Result<String> {
    // By project only: offline, a `${VAR}` database name is not resolved.
    let mine = |m: &crate::record::Manifest| m.project == w.config.project && m.tag.is_some();
    let listed = crate::record::list(w.store.as_ref()).await.map(crate::record::Listing::checked);
    let found =
        match sha {
            Some(p) => Some(listed?.into_iter().find(|m| mine(m) && m.sha.starts_with(p)).with_context(|| {
                format!("no deploy of {} with SHA {p} in {}", w.config.project, w.store.describe())
            })?),
            None => listed.ok().and_then(|ms| ms.into_iter().find(mine)),
        };
    let placeholder = found.is_none();
    let mut run = match found {
        Some(m) => Run::resume(w, Mode::Rollback, m),
        None => {
            let mut run = Run::new(w, Mode::Rollback, Sha::parse("0000000").expect("a SHA"));
            run.tag = Some("NEW_TAG".into());
            run.previous_tag = Some("PREVIOUS_TAG".into());
            run
        }
    };
    run.config_arg = config_arg.to_string();
    let page = crate::report::runbook::render(&run);
    Ok(if placeholder {
        format!(
            "> No deploy of {} is in the store yet: SHA `0000000`, NEW_TAG and PREVIOUS_TAG stand for the failed \
             deploy's. `runbook --sha SHA` prints the page for one.\n\n{page}",
            w.config.project
        )
    } else {
        page
    })
}
