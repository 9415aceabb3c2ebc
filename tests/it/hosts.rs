//! The same app on three hosts (`target.hosts`), each a real sshd in a network namespace of its
//! own with its own address, host key and app state; the shell runtime with the sample app. Each
//! scenario asserts every host's tag, the database and the journal.

use crate::common;
use common::netns::Hosts;
use common::{App, SHA};

struct Fleet {
    app: App,
    hosts: Hosts,
}

/// The sample app with `releases`, its config edited by `edit`, on three hosts. Host 2 (index 1)
/// is unhealthy on a tag when its state has `sick-TAG`; a host's deploy command drops its own
/// connection (its sshd killed) when its state has `drop`, and takes its own link down when it
/// has `cut` (the interface's name).
fn fleet(prefix: &str, releases: &[&str], edit: impl FnOnce(String) -> String) -> Fleet {
    let app = App::new(prefix, releases);
    let hosts =
        Hosts::start(3, &app.stage.app_dir().join("state"), Some(app.stage.port)).unwrap_or_else(|e| panic!("{e:#}"));
    app.edit_config(|t| {
        let t = t
            .replace(
                "command: ./app.sh health",
                "command: './app.sh health && [ ! -f \"state/sick-$(cat state/tag)\" ]'",
            )
            .replace(
                "deploy: ./app.sh deploy {tag}",
                "deploy: './app.sh deploy {tag} && if [ -f state/drop ]; then kill -9 $(cat state/drop) $PPID; fi; if [ -f state/cut ]; then ip link set \"$(cat state/cut)\" down; fi'",
            );
        edit(format!("{t}{}", hosts.target_yaml()))
    });
    Fleet { app, hosts }
}

impl Fleet {
    fn run(&self, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
        let out = self.app.run_env(args, &[("DEPLOY_GUARD_SSH_KEY", &self.hosts.client_key)]);
        let err = common::stderr(&out);
        let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out.status.code(), json, err)
    }

    fn deploy(&self, tag: &str) -> (Option<i32>, serde_json::Value, String) {
        self.run(&["deploy", "--sha", SHA, "--tag", tag, "--json"])
    }

    fn tags(&self) -> Vec<String> {
        self.hosts.tags()
    }

    fn names(&self) -> Vec<String> {
        self.hosts.hosts.iter().map(|h| h.addr.clone()).collect()
    }

    /// The manifest of the deploy of `sha`.
    fn manifest(&self, sha: &str) -> serde_json::Value {
        let manifest = common::files_under(&self.app.stage.store_dir())
            .into_iter()
            .find(|f| {
                let name = f.to_string_lossy();
                name.ends_with(".manifest.json") && name.contains(&format!("pre-deploy-{}", &sha[..7]))
            })
            .expect("a manifest in the store");
        serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap()
    }

    /// The manifest's journal of this deploy.
    fn journal(&self) -> serde_json::Value {
        self.manifest(SHA)["journal"].clone()
    }

    /// The journal's record of host `i` (`None`: the deploy never knew it).
    fn journal_host(&self, i: usize) -> Option<serde_json::Value> {
        let n = &self.names()[i];
        self.journal()["hosts"].as_array().unwrap().iter().find(|h| h["host"] == n.as_str()).cloned()
    }

    /// What the journal says each host runs, in the fleet's order.
    fn journal_tags(&self) -> Vec<String> {
        common::journal_running(&self.journal(), &self.names())
    }

    /// The config without host `i` in `target.hosts` (gone for good), or with host `with` there
    /// instead.
    fn take_out(&self, i: usize, with: Option<usize>) {
        let n = self.names();
        let line = |i: usize| format!("    - host: {}\n", n[i]);
        let instead = with.map(line).unwrap_or_default();
        self.app.edit_config(|t| {
            assert!(t.contains(&line(i)), "{t}");
            t.replace(&line(i), &instead)
        });
    }

    fn migrations(&self) -> String {
        self.app.psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations")
    }
}

fn v(tags: &[&str]) -> Vec<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

#[tokio::test]
async fn happy_every_host_gets_the_tag_one_at_a_time() {
    let f = fleet("hosts_happy", &["v2"], |t| t);
    let (code, r, err) = f.deploy("v2");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["result"], "deployed", "{r:#}");
    assert_eq!(f.tags(), v(&["v2", "v2", "v2"]));
    assert_eq!(f.journal_tags(), v(&["v2", "v2", "v2"]));
    assert_eq!(f.migrations(), "001,002,003");
    // One at a time: each host started and healthy before the next was touched.
    let deploy = f.journal()["entries"].as_array().unwrap().iter().find(|e| e["step"] == "deploy").cloned().unwrap();
    let detail = deploy["detail"].as_str().unwrap();
    let n = f.names();
    assert!(detail.contains(&format!("{}, {}, {}", n[0], n[1], n[2])) && detail.contains("one at a time"), "{detail}");
}

#[tokio::test]
async fn the_second_host_unhealthy_rolls_the_first_back_and_never_touches_the_third() {
    let f = fleet("hosts_sick", &["v2"], |t| t);
    std::fs::write(f.hosts.hosts[1].state.join("sick-v2"), "").unwrap();
    let before = common::state(f.app.db()).await;
    let (code, r, err) = f.deploy("v2");
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(r["path"], "revert", "{r:#}");
    assert_eq!(f.tags(), v(&["v1", "v1", "v1"]));
    // The third host never saw v2.
    assert!(!f.hosts.hosts[2].log().contains("started v2"), "{}", f.hosts.hosts[2].log());
    assert!(f.hosts.hosts[0].log().contains("started v2") && f.hosts.hosts[1].log().contains("started v2"));
    assert_eq!(common::state(f.app.db()).await, before, "the database is back as it was");
    assert_eq!(f.journal_tags(), v(&["v1", "v1", "v1"]));
    let n = f.names();
    assert!(err.contains(&format!("host {}", n[1])) && err.contains(&format!("{} not touched", n[2])), "{err}");
}

#[tokio::test]
async fn a_host_unreachable_before_the_deploy_refuses_it_with_nothing_changed() {
    let f = fleet("hosts_unreachable", &["v2"], |t| t);
    f.hosts.hosts[2].link_down();
    let before = common::state(f.app.db()).await;
    let (code, _, err) = f.deploy("v2");
    assert_eq!(code, Some(4), "{err}");
    let n = f.names();
    assert!(err.contains(&format!("host {} of 3", n[2])) && err.contains("no host was changed"), "{err}");
    assert_eq!(f.tags(), v(&["v1", "v1", "v1"]));
    assert_eq!(common::state(f.app.db()).await, before);
    assert!(!f.app.stage.store_dir().exists(), "no backup was taken");
}

/// The second host's connection drops during its deploy of v2 (its sshd killed with its
/// sessions, and not started again): the first host and the database are rolled back, the second
/// cannot be, and the run ends exit 3. Returns the deploy's report and stderr.
fn drop_the_second_host_mid_rollout(f: &Fleet) -> (serde_json::Value, String) {
    let pid = f.hosts.hosts[1].sshd_pid().unwrap();
    std::fs::write(f.hosts.hosts[1].state.join("drop"), pid.to_string()).unwrap();
    let (code, r, err) = f.deploy("v2");
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(r["result"], "rollback-failed", "{r:#}");
    assert_eq!(r["path"], "revert", "{r:#}");
    assert_eq!(f.tags()[..2], v(&["v1", "v2"]), "{err}");
    (r, err)
}

/// The second host's connection drops during its deploy (its sshd killed with its sessions):
/// the first host and the database are rolled back, the second cannot be, and is named with the
/// command to finish. Once it is back, `rollback --sha` from a new process finishes it.
#[tokio::test]
async fn a_host_dropping_mid_rollout_is_named_and_a_manual_rollback_finishes_it() {
    let mut f = fleet("hosts_drop", &["v2"], |t| t);
    let before = common::state(f.app.db()).await;
    let (r, err) = drop_the_second_host_mid_rollout(&f);
    let n = f.names();
    assert_eq!(f.tags(), v(&["v1", "v2", "v1"]), "{err}");
    assert_eq!(common::state(f.app.db()).await, before, "the database is back as it was");
    assert_eq!(f.journal_tags(), v(&["v1", "?", "v1"]));
    let finish = format!("rollback --sha {}", &SHA[..7]);
    assert!(err.contains(&n[1]) && err.contains(&finish), "{err}");
    // The summary's rows, and the next commands: the dropped host's, and only its.
    let rows: Vec<&str> = r["hosts"].as_array().unwrap().iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(rows, n.iter().map(String::as_str).collect::<Vec<_>>());
    let next = r["next_commands"].to_string();
    let on = |i: usize| format!("ssh {}@{} ", f.hosts.user, n[i]);
    assert!(next.contains(&on(1)) && !next.contains(&on(0)) && !next.contains(&on(2)), "{next}");
    assert!(next.contains("gone for good: take it out of target.hosts"), "{next}");

    // The host comes back; a new process finishes the rollback there, and only there.
    std::fs::remove_file(f.hosts.hosts[1].state.join("drop")).unwrap();
    f.hosts.hosts[1].start_sshd().unwrap();
    let (code, r, err) = f.run(&["rollback", "--sha", SHA, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["result"], "rolled-back", "{r:#}");
    assert_eq!(f.tags(), v(&["v1", "v1", "v1"]));
    assert_eq!(f.journal_tags(), v(&["v1", "v1", "v1"]));
    assert_eq!(common::state(f.app.db()).await, before);
    assert_eq!(f.hosts.hosts[0].log().matches("started v1").count(), 2, "host 1 was not redeployed again");
}

/// The second host drops mid-rollout and never comes back. The user takes it out of
/// `target.hosts` and runs `rollback --sha`: the hosts still listed and the database are found
/// back, the lost host is left as it was (still on v2 as far as anyone knows), said plainly and
/// recorded as abandoned, never as rolled back; the run is resolved, so the next deploy runs.
#[tokio::test]
async fn a_host_gone_for_good_is_taken_out_of_the_config_and_the_rollback_resolves_the_run() {
    const NEXT: &str = "89abcdef0123456789abcdef0123456789abcdef";
    let f = fleet("hosts_gone", &["v2"], |t| t);
    let before = common::state(f.app.db()).await;
    drop_the_second_host_mid_rollout(&f);
    let n = f.names();
    // Still listed, it must be reached for anything to start: the error says what to do.
    let (code, _, err) = f.run(&["rollback", "--sha", SHA, "--json"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains(&format!("host {} of 3", n[1])) && err.contains("take it out of target.hosts"), "{err}");
    f.take_out(1, None);
    // The rollback that failed blocks every deploy until it is finished or resolved.
    let (code, _, err) = f.run(&["deploy", "--sha", NEXT, "--tag", "v2", "--json"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("failed and no one has recorded what was done about it"), "{err}");
    let logs: Vec<String> = f.hosts.hosts.iter().map(|h| h.log()).collect();

    let (code, r, err) = f.run(&["rollback", "--sha", SHA, "--json"]);
    // Rolled back on every host the config lists (exit 0); the lost host is a warning.
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["result"], "rolled-back", "{r:#}");
    assert_eq!(r["path"], "none", "the database was found back: {r:#}");
    assert_eq!(common::state(f.app.db()).await, before, "the database is back as it was");
    assert_eq!(f.tags(), v(&["v1", "v2", "v1"]), "the lost host's state is left as it was");
    let now: Vec<String> = f.hosts.hosts.iter().map(|h| h.log()).collect();
    assert_eq!(now, logs, "nothing was started anywhere: the listed hosts were back already");
    // Said on stderr, in the notes and in the hosts rows; recorded in the manifest's journal.
    let said = format!("{} is no longer in target.hosts and was NOT rolled back", n[1]);
    assert!(err.contains(&said) && err.contains("it may still run v2"), "{err}");
    assert!(err.contains(&format!("rollback --sha {}", &SHA[..7])), "what to do if it comes back: {err}");
    assert!(r["notes"].to_string().contains(&said), "{:#}", r["notes"]);
    assert!(r["headline"].as_str().unwrap().contains(&format!("NOT rolled back: {}", n[1])), "{r:#}");
    let gone = r["hosts"].as_array().unwrap().iter().find(|h| h["host"] == n[1].as_str()).cloned().unwrap();
    assert!(gone["abandoned"]["at"].is_string() && gone["running"].is_null(), "{gone:#}");
    let recorded = f.journal_host(1).unwrap();
    assert!(recorded["abandoned"]["at"].is_string() && recorded["running"].is_null(), "{recorded:#}");
    assert!(f.journal_host(0).unwrap()["abandoned"].is_null() && f.journal_host(2).unwrap()["abandoned"].is_null());
    assert_eq!(f.journal_host(0).unwrap()["running"], "v1");
    assert_eq!(f.journal_host(2).unwrap()["running"], "v1");
    assert_eq!(f.manifest(SHA)["outcome"]["result"], "rolled-back");

    // The next deploy is accepted, and reaches the hosts listed.
    let (code, r, err) = f.run(&["deploy", "--sha", NEXT, "--tag", "v2", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["result"], "deployed", "{r:#}");
    assert_eq!(f.tags(), v(&["v2", "v2", "v2"]));
    assert_eq!(f.hosts.hosts[1].log(), logs[1], "the lost host was never reached");
    assert_eq!(f.migrations(), "001,002,003");
}

/// The lost host is replaced by a new one in `target.hosts` before the rollback: the new host
/// never got the deploy's tag, so the rollback leaves it alone and says so. Should the lost host
/// come back, put back in the config, a rollback finishes it.
#[tokio::test]
async fn a_host_added_after_the_deploy_is_left_alone_by_the_rollback() {
    let mut f = fleet("hosts_added", &["v2"], |t| t);
    f.take_out(2, None);
    let before = common::state(f.app.db()).await;
    drop_the_second_host_mid_rollout(&f);
    assert!(f.journal_host(2).is_none(), "the third host was not in the deploy");
    f.take_out(1, Some(2));
    let log = f.hosts.hosts[2].log();
    let (code, r, err) = f.run(&["rollback", "--sha", SHA, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["result"], "rolled-back", "{r:#}");
    let n = f.names();
    assert_eq!(f.hosts.hosts[2].log(), log, "the added host was never started");
    assert_eq!(f.tags(), v(&["v1", "v2", "v1"]));
    assert!(err.contains(&format!("{} not in this deploy's journal", n[2])) && err.contains("left alone"), "{err}");
    assert!(f.journal_host(2).is_none(), "the added host is not recorded as part of the deploy");
    assert!(f.journal_host(1).unwrap()["abandoned"]["at"].is_string());
    assert_eq!(common::state(f.app.db()).await, before);

    // The lost host comes back after all: put back in target.hosts, the rollback finishes it.
    std::fs::remove_file(f.hosts.hosts[1].state.join("drop")).unwrap();
    f.hosts.hosts[1].start_sshd().unwrap();
    f.take_out(2, Some(1));
    let (code, _, err) = f.run(&["rollback", "--sha", SHA, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(f.tags(), v(&["v1", "v1", "v1"]));
    let back = f.journal_host(1).unwrap();
    assert!(back["running"] == "v1" && back["abandoned"].is_null(), "{back:#}");
}

/// A release whose down migration is wrong: the backup is restored, with the app stopped on
/// every host before the swap and all of them brought back after.
#[tokio::test]
async fn the_restore_path_stops_the_writers_on_every_host_and_brings_them_all_back() {
    let f = fleet("hosts_restore", &["v2-bad-down"], |t| t);
    std::fs::write(f.hosts.hosts[2].state.join("sick-v2-bad-down"), "").unwrap();
    let before = common::state(f.app.db()).await;
    let (code, r, err) = f.deploy("v2-bad-down");
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(r["path"], "restore", "{r:#}");
    assert_eq!(f.tags(), v(&["v1", "v1", "v1"]));
    for h in &f.hosts.hosts {
        assert!(h.log().contains("stopped"), "{} was not stopped: {}", h.addr, h.log());
        assert!(h.running(), "{} was not brought back", h.addr);
    }
    assert_eq!(common::state(f.app.db()).await, before, "the database is the backup's");
    assert_eq!(f.journal_tags(), v(&["v1", "v1", "v1"]));
}

/// `app.rollout: all-at-once`: every host is started, then every host checked; the second one
/// unhealthy rolls all three back.
#[tokio::test]
async fn all_at_once_starts_every_host_then_rolls_every_one_back() {
    let f = fleet("hosts_all", &["v2"], |t| t.replace("  workdir:", "  rollout: all-at-once\n  workdir:"));
    std::fs::write(f.hosts.hosts[1].state.join("sick-v2"), "").unwrap();
    let before = common::state(f.app.db()).await;
    let (code, r, err) = f.deploy("v2");
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(r["path"], "revert", "{r:#}");
    for h in &f.hosts.hosts {
        assert!(h.log().contains("started v2"), "{} never got v2: {}", h.addr, h.log());
    }
    assert_eq!(f.tags(), v(&["v1", "v1", "v1"]));
    assert_eq!(f.journal_tags(), v(&["v1", "v1", "v1"]));
    assert_eq!(common::state(f.app.db()).await, before);
}

/// `check` reaches every host and says what each runs; one that is sick on its tag is named.
#[tokio::test]
async fn check_has_a_line_per_host() {
    let f = fleet("hosts_check", &[], |t| t);
    std::fs::write(f.hosts.hosts[2].state.join("sick-v1"), "").unwrap();
    let (code, r, err) = f.run(&["check", "--json"]);
    assert_eq!(code, Some(3), "{err}");
    let n = f.names();
    let line = |i: usize| {
        r.as_array()
            .or_else(|| r["parts"].as_array())
            .unwrap_or_else(|| panic!("{r:#}"))
            .iter()
            .find(|l| l["part"] == format!("host {}", n[i]).as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no line for {}: {r:#}", n[i]))
    };
    for i in 0..2 {
        assert_eq!(line(i)["ok"], true, "{:#}", line(i));
        assert!(line(i)["detail"].as_str().unwrap().contains("running tag v1"), "{:#}", line(i));
    }
    assert_eq!(line(2)["ok"], false);
    assert!(line(2)["detail"].as_str().unwrap().contains("NOT healthy"), "{:#}", line(2));
    assert_eq!(f.tags(), v(&["v1", "v1", "v1"]));
}

/// The plan shows each host's commands, from the step table, as `ssh` lines in rollout order;
/// the database's are the primary's, marked with it.
#[test]
fn the_plan_shows_every_host_s_commands_in_rollout_order() {
    let app = App::new("hosts_plan", &["v2"]);
    let known = "web1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\\nweb2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB";
    app.edit_config(|t| {
        format!(
            "{t}target:\n  host: web1\n  user: deploy\n  known_hosts: \"{known}\"\n  hosts:\n    - host: web2\n    - host: web3\n      port: 2222\n      fingerprint: \"SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s\"\n"
        )
    });
    let out = app.run(&["deploy", "--sha", SHA, "--tag", "v2", "--dry-run"]);
    let plan = common::stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let dir = app.stage.app_dir().display().to_string();
    let deploy = |ssh: &str| format!("$ ssh {ssh} 'cd {dir} && ./app.sh deploy v2'");
    let at = |s: &str| plan.find(s).unwrap_or_else(|| panic!("{s} not in:\n{plan}"));
    assert!(at(&deploy("deploy@web1")) < at(&deploy("deploy@web2")));
    assert!(at(&deploy("deploy@web2")) < at(&deploy("-p 2222 deploy@web3")));
    assert!(plan.contains("one host at a time"), "{plan}");
    assert!(plan.contains("$ ssh -p 2222 deploy@web3 'cd "), "{plan}");
    // The database's commands run on the primary, and say so: not per host, not here.
    assert!(plan.contains("$ ssh deploy@web1 'PGHOST="), "{plan}");
    assert!(!plan.contains("$ PGHOST="), "a database command without its host: {plan}");
    assert!(!plan.contains("ssh deploy@web2 'PGHOST"), "database commands are not per host: {plan}");
}

/// The second host's link goes down during its deploy (the command that started v2 never
/// answers): it times out there, the first host and the database are rolled back, the second
/// (unreachable) is named; once its link is back, `rollback --sha` finishes it.
#[tokio::test]
async fn a_host_whose_link_goes_down_mid_rollout_is_finished_by_a_manual_rollback() {
    let f = fleet("hosts_cut", &["v2"], |t| t.replace("command_timeout: 30s", "command_timeout: 8s"));
    let host = &f.hosts.hosts[1];
    std::fs::write(host.state.join("cut"), host.peer()).unwrap();
    let before = common::state(f.app.db()).await;
    let (code, r, err) = f.deploy("v2");
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(r["path"], "revert", "{r:#}");
    let n = f.names();
    assert_eq!(f.tags(), v(&["v1", "v2", "v1"]), "{err}");
    assert_eq!(f.journal_tags(), v(&["v1", "?", "v1"]));
    assert_eq!(common::state(f.app.db()).await, before);
    assert!(err.contains(&format!("host {}", n[1])) && err.contains(&format!("rollback --sha {}", &SHA[..7])), "{err}");

    std::fs::remove_file(host.state.join("cut")).unwrap();
    host.link_up();
    let (code, _, err) = f.run(&["rollback", "--sha", SHA, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(f.tags(), v(&["v1", "v1", "v1"]));
    assert_eq!(f.journal_tags(), v(&["v1", "v1", "v1"]));
}
