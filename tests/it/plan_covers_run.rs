//! The plan `deploy --dry-run` prints is what a deploy runs: for deploys that end in each
//! outcome, every command the run executed (recorded by the executor) appears in the plan for the
//! same config, and so does every statement that changes which database is live (the swap's SQL).
//! Both come from the one step table; this proves nothing runs that the plan hides.

use crate::common;

use std::sync::{Arc, Mutex};

use deploy_guard::commands::deploy::{self, DeployArgs};
use deploy_guard::exec::{Cmd, Executor, Exit, Local};
use deploy_guard::model::Sha;
use deploy_guard::simulate::Staged;
use deploy_guard::world::World;

/// Runs every command locally and remembers it as a person would type it, and the SQL it was given.
struct Recording(Mutex<Vec<String>>, Mutex<Vec<String>>);

#[async_trait::async_trait]
impl Executor for Recording {
    async fn run(
        &self,
        cmd: &Cmd,
        stdin: Option<&mut (dyn tokio::io::AsyncRead + Unpin + Send)>,
        stdout: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> anyhow::Result<Exit> {
        self.0.lock().unwrap().push(cmd.shell_text());
        let Some(stdin) = stdin else { return Local.run(cmd, None, stdout).await };
        // Teed, not read ahead: some sessions (the deploy lock's) keep their input open.
        let mut seen = Vec::new();
        let exit = {
            let mut tee = tokio_util::io::InspectReader::new(stdin, |b: &[u8]| seen.extend_from_slice(b));
            Local.run(cmd, Some(&mut tee), stdout).await
        };
        if cmd.label == "psql" {
            self.1.lock().unwrap().push(String::from_utf8_lossy(&seen).into_owned());
        }
        exit
    }

    fn describe(&self) -> String {
        Local.describe()
    }
}

async fn check(prefix: &str, release: &str, staged: Staged, result: &str, path: &str) {
    let app = common::App::build(prefix, &[release], staged);
    let config = deploy_guard::config::Config::load(Some(&app.config), &[]).unwrap();
    let rec = Arc::new(Recording(Mutex::new(Vec::new()), Mutex::new(Vec::new())));
    let w = World::with_executor(config.clone(), rec.clone()).await.unwrap();
    let sha = Sha::parse(common::SHA).unwrap();
    let args = DeployArgs {
        sha: &sha,
        tag: release,
        previous_tag: None,
        fallback_previous_tag: None,
        config_arg: "",
        allow_destructive: false,
    };
    let report = deploy::deploy(&w, &args).await;
    assert_eq!((report.result, report.path), (result, path), "{}", report.headline);

    let offline = World::offline(config).unwrap();
    let planned = DeployArgs { previous_tag: Some("v1"), ..args };
    let plan = deploy::plan(&offline, &planned).render();
    let executed = rec.0.lock().unwrap().clone();
    assert!(executed.len() >= 5, "{executed:?}");
    for cmd in &executed {
        assert!(plan.contains(&format!("$ {cmd}\n")), "ran `{cmd}`, which the plan does not show:\n{plan}");
    }
    let swapped: Vec<String> = rec
        .1
        .lock()
        .unwrap()
        .iter()
        .filter(|q| q.contains("ALTER DATABASE") || q.starts_with("DO $$"))
        .cloned()
        .collect();
    if path == "restore" {
        assert_eq!(swapped.len(), 4, "{swapped:?}");
    }
    for sql in &swapped {
        assert!(plan.contains(&format!("sql> {sql}\n")), "ran `{sql}`, which the plan does not show:\n{plan}");
    }
}

#[tokio::test]
async fn a_deployed_run_executes_only_planned_commands() {
    check("plan_deployed", "v2", Staged::Clean, "deployed", "none").await;
}

#[tokio::test]
async fn a_run_whose_migration_rolled_back_executes_only_planned_commands() {
    check("plan_unchanged", "v2-notnull", Staged::Clean, "rolled-back", "none").await;
}

#[tokio::test]
async fn a_reverted_run_executes_only_planned_commands() {
    check("plan_revert", "v2-crash", Staged::Clean, "rolled-back", "revert").await;
}

#[tokio::test]
async fn a_restored_run_executes_only_planned_commands() {
    check("plan_restore", "v2-bad-down", Staged::Clean, "rolled-back", "restore").await;
}

#[tokio::test]
async fn an_aborted_run_executes_only_planned_commands() {
    check("plan_aborted", "v2", Staged::CrashingPgDump, "aborted", "none").await;
}
