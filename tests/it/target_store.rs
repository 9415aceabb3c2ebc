//! Backups that outlive the runner (issue "the real VPS", item 2): a `file://` store is on the
//! target, written and read over the deploy's SSH connection. The target here is a real sshd
//! whose sessions see a disk of their own (a tmpfs in the server's mount namespace), so what is
//! written "on the target" is provably not on the machine deploy-guard runs on. And the offsite
//! copy (`backup.copy_to`) on a real S3 server, which a rollback falls back to when the target's
//! disk lost the backup.

use crate::common;
use crate::common::s3 as s3server;

use common::{App, Sshd, SHA};
use s3server::{S3Server, BUCKET};

fn ssh_env(sshd: &Sshd) -> Vec<(&'static str, &str)> {
    vec![("DEPLOY_GUARD_SSH_KEY", sshd.client_key.as_str())]
}

/// The sample app reached over `sshd`, its store at `store`.
fn app_over_ssh(name: &str, releases: &[&str], sshd: &Sshd, store: &std::path::Path, extra: &str) -> App {
    let app = App::new(name, releases);
    app.edit_config(|t| {
        let start = t.find("backup:").expect("a backup section");
        format!("{}backup:\n  store: \"file://{}\"\n{extra}{}", &t[..start], store.display(), sshd.target_yaml())
    });
    app
}

/// `find` in the target's own view of the disk: `MODE TYPE PATH` lines.
fn target_files(sshd: &Sshd, dir: &std::path::Path) -> Vec<String> {
    let out = sshd
        .target_command(&format!("cd '{}' && find . -mindepth 1 -printf '%m %y %P\\n' | sort", dir.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[tokio::test]
async fn backups_are_written_on_the_target_and_a_later_process_rolls_back_from_them() {
    let tmp = common::tempdir();
    let disk = tmp.path().join("vps-disk");
    let sshd = Sshd::with_private_dir(&disk).unwrap();
    let store = disk.join("backups/station");
    let app = app_over_ssh("target_store", &["v2"], &sshd, &store, "");
    let before = common::state(app.db()).await;
    // `check` changes nothing: the store's directory is not there yet, and stays so.
    let out = app.run_env(&["check"], &ssh_env(&sshd));
    assert!(common::stdout(&out).contains("not there yet: the first backup creates it"), "{}", common::stdout(&out));
    let there = sshd.target_command(&format!("test -e '{}'", store.display())).status().unwrap();
    assert!(!there.success(), "check created the store's directory");

    let out = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2", "--json"], &ssh_env(&sshd));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let r = common::json(&out);
    let key = r["backup"]["key"].as_str().unwrap().to_string();
    assert!(r["backup"]["location"].as_str().unwrap().contains(" on "), "{r}");
    assert_eq!(app.tag(), "v2");

    // Nothing on this machine: the directory is empty here, the backup is on the target's disk.
    assert_eq!(std::fs::read_dir(&disk).unwrap().count(), 0, "the runner's disk holds backups");
    let files = target_files(&sshd, &store);
    assert!(files.iter().any(|f| f == &format!("600 f {key}")), "{files:?}");
    assert!(files.iter().any(|f| f.starts_with("600 f ") && f.ends_with(".manifest.json")), "{files:?}");
    assert!(files.iter().filter(|f| f.contains(" d ")).all(|f| f.starts_with("700 ")), "{files:?}");
    assert!(!files.iter().any(|f| f.ends_with(".partial")), "{files:?}");
    assert!(!target_read(&sshd, &store.join(&key)).is_empty());

    // Two backups of the same SHA at once, in the same second as each other (and, on a fast
    // machine, as the deploy's): each is a backup of its own, none replaces the deploy's.
    for _ in 0..2 {
        let out = app.run_env(&["backup", "--sha", SHA], &ssh_env(&sshd));
        assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    }
    let manifests: Vec<String> =
        target_files(&sshd, &store).into_iter().filter(|f| f.ends_with(".manifest.json")).collect();
    assert_eq!(manifests.len(), 3, "{manifests:?}");
    assert_eq!(manifests.iter().filter(|f| f.contains("_backup-")).count(), 2, "{manifests:?}");

    // The job ends; a new process (the rollback button) lists and restores from the target: the
    // deploy's own backup, not the later ones of the migrated database.
    let out = app.run_env(&["backups", "--json"], &ssh_env(&sshd));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert!(common::stdout(&out).contains(&key), "{}", common::stdout(&out));
    let out = app.run_env(&["rollback", "--sha", &SHA[..7], "--path", "restore", "--json"], &ssh_env(&sshd));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::json(&out)["path"], "restore");
    assert_eq!(app.tag(), "v1");
    assert_eq!(common::state(app.db()).await, before, "the data is the backup's");

    let out = app.run_env(&["check"], &ssh_env(&sshd));
    let text = common::stdout(&out);
    assert!(text.contains(&format!("file://{} on ", store.display())) && text.contains(" free"), "{text}");
}

/// A file's bytes as the target sees them.
fn target_read(sshd: &Sshd, path: &std::path::Path) -> Vec<u8> {
    let out = sshd.target_command(&format!("cat '{}'", path.display())).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn a_store_on_a_github_hosted_runner_is_refused_before_anything_runs() {
    let tmp = common::tempdir();
    let disk = tmp.path().join("vps-disk");
    let sshd = Sshd::with_private_dir(&disk).unwrap();
    let local = tmp.path().join("runner-backups");
    let app = app_over_ssh("runner_store", &["v2"], &sshd, &local, "  store_on: runner\n");
    let mut env = ssh_env(&sshd);
    env.push(("RUNNER_ENVIRONMENT", "github-hosted"));
    let out = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2"], &env);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("backup.store_on") && err.contains("deleted when the job ends"), "{err}");
    assert!(!local.exists(), "nothing written");
    assert_eq!(app.tag(), "v1");

    // Asked for explicitly on a machine that stays (a self-hosted runner): the backups are here.
    let out = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2"], &ssh_env(&sshd));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert!(std::fs::read_dir(&local).unwrap().count() > 0, "the backups are on this machine");
    assert!(target_files(&sshd, &disk).is_empty());
}

#[tokio::test]
async fn the_offsite_copy_is_verified_and_a_rollback_falls_back_to_it_when_the_target_lost_the_backup() {
    let server = S3Server::start();
    let tmp = common::tempdir();
    let disk = tmp.path().join("vps-disk");
    let sshd = Sshd::with_private_dir(&disk).unwrap();
    let store = disk.join("backups");
    let copy =
        format!("  copy_to: \"s3://{BUCKET}/offsite\"\n  endpoint: \"{}\"\n  region: us-east-1\n", server.endpoint());
    let app = app_over_ssh("offsite_copy", &["v2"], &sshd, &store, &copy);
    let mut env = ssh_env(&sshd);
    env.extend(server.env());
    let before = common::state(app.db()).await;

    let out = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2", "--json"], &env);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let r = common::json(&out);
    let key = r["backup"]["key"].as_str().unwrap().to_string();
    let backup_step = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "backup").unwrap().clone();
    assert!(backup_step["detail"].as_str().unwrap().contains("offsite copy verified"), "{backup_step}");
    let keys = server.keys();
    assert!(keys.contains(&format!("offsite/{key}")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("offsite/") && k.ends_with(".manifest.json")), "{keys:?}");
    assert_eq!(
        std::fs::read(server.object_path(&format!("offsite/{key}"))).unwrap(),
        target_read(&sshd, &store.join(&key)),
        "the copy is the backup, byte for byte"
    );

    // The VPS's disk loses every backup; the rollback finds the copy, brings it home, restores.
    let wiped = sshd.target_command(&format!("rm -rf '{}'", store.display())).status().unwrap();
    assert!(wiped.success());
    let out = app.run_env(&["rollback", "--sha", &SHA[..7], "--path", "restore", "--json"], &env);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("the offsite copy") && err.contains("copying it back"), "{err}");
    assert_eq!(app.tag(), "v1");
    assert_eq!(common::state(app.db()).await, before, "the data is the backup's");
    assert!(target_files(&sshd, &store).iter().any(|f| f == &format!("600 f {key}")), "copied back onto the target");
}

#[tokio::test]
async fn an_offsite_copy_that_fails_is_a_warning_and_the_deploy_goes_on() {
    let mut server = S3Server::start();
    let app = App::new("offsite_down", &["v2"]);
    let copy =
        format!("  copy_to: \"s3://{BUCKET}/offsite\"\n  endpoint: \"{}\"\n  region: us-east-1\n", server.endpoint());
    app.edit_config(|t| t.replace("backup:\n", &format!("backup:\n{copy}")));
    server.stop();
    let env = server.env();
    let out = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2", "--json"], &env);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let r = common::json(&out);
    let backup_step = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "backup").unwrap().clone();
    assert!(backup_step["detail"].as_str().unwrap().contains("no offsite copy"), "{backup_step}");
    assert_eq!(app.tag(), "v2");
    assert!(std::fs::read_dir(app.stage.store_dir()).unwrap().count() > 0, "the store's backup is there");
}

/// A new object never replaces one on the target (`ln` makes no link over a file); the journal's
/// next version of a manifest does replace it.
#[tokio::test]
async fn a_new_object_never_replaces_another_on_the_target() {
    use deploy_guard::store::{Put, Store, TargetDirStore};
    let tmp = common::tempdir();
    let disk = tmp.path().join("vps-disk");
    let sshd = Sshd::with_private_dir(&disk).unwrap();
    let ssh =
        deploy_guard::exec::ssh::Ssh::connect(&common::SshdExt::target(&sshd), &common::SshdExt::credentials(&sshd))
            .await
            .unwrap();
    let store = TargetDirStore::new(std::sync::Arc::new(ssh), disk.join("b"), std::time::Duration::from_secs(60));
    let s: &dyn Store = &store;
    s.put_bytes("m/k.manifest.json", b"first", Put::New).await.unwrap();
    let err = format!("{:#}", s.put_bytes("m/k.manifest.json", b"second", Put::New).await.unwrap_err());
    assert!(err.contains("refusing to replace it"), "{err}");
    assert_eq!(target_read(&sshd, &disk.join("b/m/k.manifest.json")), b"first");
    assert_eq!(
        target_files(&sshd, &disk.join("b")),
        ["600 f m/k.manifest.json", "700 d m"],
        "the refused write was left behind"
    );
    s.put_bytes("m/k.manifest.json", b"journal", Put::Replace).await.unwrap();
    assert_eq!(target_read(&sshd, &disk.join("b/m/k.manifest.json")), b"journal");
}
