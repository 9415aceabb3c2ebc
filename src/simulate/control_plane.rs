//! A throwaway Kubernetes control plane for the kubernetes drill and its tests: etcd,
//! kube-apiserver (RBAC on), kube-controller-manager (deployments, replica sets, jobs, garbage
//! collection), kube-scheduler and kwok, which plays the kubelet of one fake node: its Stages
//! make pods ready, or (by image tag) never ready, crash-looping, or a Job's pod fail or hang.
//! Built by scripts/k8s-tools into `$DG_K8S_BIN` (default
//! ~/.cache/deploy-guard/k8s/v1.32.13-kwok-v0.7.0/bin); on 127.0.0.1, free ports, a temp dir;
//! stopped on drop, and by a watchdog if this process dies first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::sandbox::free_port;

/// The image every Deployment of the drill runs, tagged by release.
pub const IMAGE: &str = "registry.test/app";
/// Its pods start but never become ready.
pub const UNREADY_TAG: &str = "v2-unready";
/// Its pods crash-loop (`CrashLoopBackOff`, restarts counted).
pub const CRASH_TAG: &str = "v2-crash";
/// A Job's pod of this tag fails.
pub const JOB_FAILS_TAG: &str = "v2-job-fails";
/// A Job's pod of this tag runs and never ends.
pub const JOB_HANGS_TAG: &str = "v2-job-hangs";
/// The fake node's name.
pub const NODE: &str = "kwok-node-0";

const VERSION_DIR: &str = "v1.32.13-kwok-v0.7.0";
const COMPONENTS: [&str; 6] =
    ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl"];

/// Where scripts/k8s-tools put the binaries: `$DG_K8S_BIN`, else its default cache.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DG_K8S_BIN") {
        return d.into();
    }
    let base = std::env::var_os("DG_K8S_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/deploy-guard/k8s")
    });
    base.join(VERSION_DIR).join("bin")
}

/// The path of `name`: the cache's, else kubectl on PATH.
fn component(dir: &Path, name: &str) -> Option<PathBuf> {
    let p = dir.join(name);
    if p.is_file() {
        return Some(p);
    }
    (name == "kubectl").then(|| which("kubectl")).flatten()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Whether every component is there, and if not which are missing, as a sentence.
pub fn missing() -> Option<String> {
    let dir = bin_dir();
    let gone: Vec<&str> = COMPONENTS.iter().copied().filter(|c| component(&dir, c).is_none()).collect();
    (!gone.is_empty()).then(|| {
        format!(
            "the Kubernetes control plane is not built here: {} missing in {} (scripts/k8s-tools builds it, about 5 \
             minutes on 2 cores; scripts/setup runs it)",
            gone.join(", "),
            dir.display()
        )
    })
}

pub struct ControlPlane {
    root: tempfile::TempDir,
    /// The admin's kubeconfig (a static token in group system:masters).
    pub kubeconfig: PathBuf,
    pub server: String,
    kubectl: PathBuf,
    children: Vec<(&'static str, Child)>,
}

impl ControlPlane {
    /// Starts every component; returns once the node is ready and a pod can be scheduled.
    pub fn start() -> Result<ControlPlane> {
        if let Some(why) = missing() {
            bail!("{why}");
        }
        let bin = bin_dir();
        let root = tempfile::Builder::new().prefix("deploy-guard-k8s-").tempdir()?;
        let dir = root.path().to_path_buf();
        let kubectl = component(&bin, "kubectl").context("kubectl")?;
        let mut cp = ControlPlane {
            kubeconfig: dir.join("admin.kubeconfig"),
            server: String::new(),
            kubectl,
            children: Vec::new(),
            root,
        };
        let openssl = |args: &[&str]| -> Result<()> {
            let out = Command::new("openssl").args(args).current_dir(&dir).output().context("cannot run openssl")?;
            if !out.status.success() {
                bail!("openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        openssl(&["genrsa", "-out", "sa.key", "2048"])?;
        openssl(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
        let token = crate::model::random_hex(16);
        std::fs::write(dir.join("tokens.csv"), format!("{token},admin,admin,system:masters\n"))?;

        let (client, peer) = (free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        cp.spawn(
            "etcd",
            &bin,
            &[
                "--name=default",
                &format!("--data-dir={}", dir.join("etcd").display()),
                &format!("--listen-client-urls={etcd_url}"),
                &format!("--advertise-client-urls={etcd_url}"),
                &format!("--listen-peer-urls={peer_url}"),
                &format!("--initial-advertise-peer-urls={peer_url}"),
                &format!("--initial-cluster=default={peer_url}"),
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )?;

        std::fs::write(dir.join("audit-policy.yaml"), AUDIT_POLICY)?;
        let port = free_port()?;
        cp.server = format!("https://127.0.0.1:{port}");
        let p = |f: &str| dir.join(f).display().to_string();
        cp.spawn(
            "kube-apiserver",
            &bin,
            &[
                &format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                &format!("--secure-port={port}"),
                &format!("--cert-dir={}", p("certs")),
                &format!("--token-auth-file={}", p("tokens.csv")),
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                &format!("--service-account-key-file={}", p("sa.pub")),
                &format!("--service-account-signing-key-file={}", p("sa.key")),
                "--service-cluster-ip-range=10.96.0.0/16",
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
                "--enable-priority-and-fairness=false",
                // kwok serves the fake node's kubelet API (exec, logs) at 127.0.0.1.
                "--kubelet-preferred-address-types=InternalIP",
                &format!("--audit-policy-file={}", p("audit-policy.yaml")),
                &format!("--audit-log-path={}", p("audit.log")),
                "--v=0",
            ],
        )?;
        std::fs::write(
            &cp.kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: drill\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\n\
                 users:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: drill\n  context:\n    cluster: drill\n    user: admin\n\
                 current-context: drill\n",
                cp.server
            ),
        )?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cp.kubeconfig, std::fs::Permissions::from_mode(0o600))?;
        cp.wait_for("the apiserver to be ready", Duration::from_secs(120), |cp| {
            Ok(cp.kubectl(&["get", "--raw", "/readyz"])?.status.success())
        })?;

        let kc = format!("--kubeconfig={}", cp.kubeconfig.display());
        cp.spawn(
            "kube-controller-manager",
            &bin,
            &[
                &kc,
                "--controllers=deployment-controller,replicaset-controller,job-controller,garbage-collector-controller",
                "--leader-elect=false",
                // No HTTPS endpoint: nothing here reads it, and a port picked free can be taken
                // by another test before the component binds it (seen in CI).
                "--secure-port=0",
                "--concurrent-deployment-syncs=2",
            ],
        )?;
        cp.spawn("kube-scheduler", &bin, &[&kc, "--leader-elect=false", "--secure-port=0"])?;
        std::fs::write(dir.join("kwok.yaml"), format!("{}---\n{}", stages(), kubelet_api(&dir)))?;
        std::fs::write(dir.join(JOB_LOG), format!("{JOB_LOG_LINE}\n"))?;
        std::fs::write(dir.join("pod.log"), "")?;
        let kubelet = free_port()?;
        cp.spawn(
            "kwok",
            &bin,
            &[
                &kc,
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                &format!("--config={}", p("kwok.yaml")),
                &format!("--server-address=127.0.0.1:{kubelet}"),
                "--node-ip=127.0.0.1",
                &format!("--node-port={kubelet}"),
                "--node-lease-duration-seconds=40",
            ],
        )?;
        cp.watchdog()?;
        cp.apply(&NODE_YAML.replace("NODE", NODE))?;
        cp.wait_for("the fake node to be ready", Duration::from_secs(60), |cp| {
            let out =
                cp.kubectl(&["get", "node", NODE, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])?;
            Ok(String::from_utf8_lossy(&out.stdout).trim() == "True")
        })?;
        Ok(cp)
    }

    fn spawn(&mut self, name: &'static str, bin: &Path, args: &[&str]) -> Result<()> {
        let log = std::fs::File::create(self.root.path().join(format!("{name}.log")))?;
        let child = Command::new(bin.join(name))
            .args(args)
            .current_dir(self.root.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.join(name).display()))?;
        self.children.push((name, child));
        Ok(())
    }

    /// Polls `ready` every 250 ms; on timeout, or when a component exits, its log's tail.
    fn wait_for(&mut self, what: &str, timeout: Duration, ready: impl Fn(&Self) -> Result<bool>) -> Result<()> {
        let start = Instant::now();
        loop {
            let mut exited = None;
            for (name, child) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    exited = Some((*name, status));
                }
            }
            if let Some((name, status)) = exited {
                bail!("{name} exited ({status}) while waiting for {what}: {}", self.log_tail(name));
            }
            if ready(self)? {
                return Ok(());
            }
            if start.elapsed() > timeout {
                let tails: Vec<String> =
                    self.children.iter().map(|(n, _)| format!("{n}: {}", self.log_tail(n))).collect();
                bail!("timed out after {timeout:?} waiting for {what}\n{}", tails.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last lines of every component's log, for a failure's message.
    pub fn logs(&self) -> String {
        self.children.iter().map(|(n, _)| format!("--- {n}:\n{}\n", self.log_tail(n))).collect()
    }

    fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.root.path().join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.kubectl.display()))
    }

    /// kubectl as the admin; its stdout, or an error with its stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args)?;
        if !out.status.success() {
            bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl apply -f -` of `yaml` as the admin.
    pub fn apply(&self, yaml: &str) -> Result<()> {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
            .args(["apply", "-f", "-"])
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().expect("piped").write_all(yaml.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("kubectl apply failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// A Deployment of [`IMAGE`]`:tag` with `replicas`, in `namespace`, its container `app`;
    /// `deadline`: its progressDeadlineSeconds.
    pub fn deployment_yaml(namespace: &str, name: &str, tag: &str, replicas: u32, deadline: u32) -> String {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  replicas: {replicas}\n  \
             progressDeadlineSeconds: {deadline}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      \
             labels:\n        app: {name}\n    spec:\n      containers:\n      - name: app\n        image: {IMAGE}:{tag}\n        \
             env:\n        - name: DATABASE_URL\n          value: postgres://app@db/app\n"
        )
    }

    /// A namespace holding [`Self::deployment_yaml`]s of `deployments` (name, replicas) at
    /// `tag`, returned once every one is rolled out.
    pub fn namespace_with(&self, ns: &str, deployments: &[(&str, u32)], tag: &str, deadline: u32) -> Result<()> {
        self.kubectl_ok(&["create", "namespace", ns])?;
        for (d, n) in deployments {
            self.apply(&Self::deployment_yaml(ns, d, tag, *n, deadline))?;
        }
        let start = Instant::now();
        loop {
            let mut done = true;
            for (d, n) in deployments {
                let path = "jsonpath={.status.updatedReplicas}/{.status.readyReplicas}/{.status.replicas}";
                done &= self.kubectl_ok(&["-n", ns, "get", "deployment", d, "-o", path])? == format!("{n}/{n}/{n}");
            }
            if done {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(90) {
                bail!(
                    "{ns}: not rolled out in 90 s: {}\n{}",
                    self.kubectl_ok(&["-n", ns, "get", "deploy,rs,pods"])?,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The drill's app on this control plane: an api (2 replicas) and a worker (1) at v1 in
    /// namespace `ns`, reached with the admin's kubeconfig; the rollouts are the health check.
    pub fn drill_app(&self, app: &mut crate::config::App, ns: &str) -> Result<()> {
        self.namespace_with(ns, &[("api", 2), ("worker", 1)], "v1", 600)?;
        app.runtime = crate::config::RuntimeKind::Kubernetes;
        app.commands = Default::default();
        app.health.command = None;
        app.health.timeout = Duration::from_secs(20);
        app.kubernetes = Some(crate::config::Kubernetes {
            namespace: ns.to_string(),
            deployments: vec!["api".into(), "worker".into()],
            container: "app".into(),
            image: IMAGE.into(),
            kubeconfig: Some(self.kubeconfig.display().to_string()),
            context: None,
            pause_env: None,
        });
        Ok(())
    }

    /// The pods whose `subresource` (`exec`, `log`) was opened in `ns`, in order, from the
    /// apiserver's audit log.
    pub fn opened(&self, ns: &str, subresource: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.root.path().join("audit.log")).unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            // A long-running request (exec, a followed log) is logged when it starts and ends.
            .filter(|e| seen.insert(e["auditID"].as_str().unwrap_or_default().to_string()))
            .map(|e| e["objectRef"].clone())
            .filter(|o| o["namespace"] == ns && o["subresource"] == subresource)
            .filter_map(|o| o["name"].as_str().map(str::to_string))
            .collect()
    }

    /// Stops the components (and removes the temp dir) if this process dies without dropping
    /// the control plane (tests keep one in a static).
    fn watchdog(&self) -> Result<()> {
        let pids: Vec<String> = self.children.iter().map(|(_, c)| c.id().to_string()).collect();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill {pids} 2>/dev/null; sleep 2; kill -9 {pids} 2>/dev/null; rm -rf {root}",
            pid = std::process::id(),
            pids = pids.join(" "),
            root = crate::exec::quote(&self.root.path().display().to_string()),
        );
        use std::os::unix::process::CommandExt;
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("cannot start the control plane's watchdog")?;
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The apiserver's audit log keeps who opened a pod's exec or logs, nothing else.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
    - level: Metadata\n  resources:\n  - group: \"\"\n    resources: [pods/exec, pods/log]\n- level: None\n";

/// The file a migration Job's pod (container `migrate`) serves as its log: kwok runs no
/// container, so its log is this line.
const JOB_LOG: &str = "job.log";
pub const JOB_LOG_LINE: &str = "kwok: the fake node runs no container; this line is the Job's log";

/// kwok as the node's kubelet API: `kubectl exec` into any pod runs the command on this machine
/// (so `pg_dump` in a "database pod" is the real one, reaching the real server), and `kubectl
/// logs` serves a file (a Job's: [`JOB_LOG_LINE`]).
fn kubelet_api(dir: &Path) -> String {
    format!(
        "apiVersion: kwok.x-k8s.io/v1alpha1\nkind: ClusterExec\nmetadata:\n  name: local\nspec:\n  execs:\n  - local: {{}}\n\
         ---\napiVersion: kwok.x-k8s.io/v1alpha1\nkind: ClusterLogs\nmetadata:\n  name: files\nspec:\n  logs:\n  \
         - containers: [migrate]\n    logsFile: {}\n  - logsFile: {}\n",
        dir.join(JOB_LOG).display(),
        dir.join("pod.log").display()
    )
}

const NODE_YAML: &str =
    "apiVersion: v1\nkind: Node\nmetadata:\n  name: NODE\n  annotations:\n    kwok.x-k8s.io/node: fake\n  \
                         labels:\n    type: kwok\n    kubernetes.io/hostname: NODE\nspec: {}\n";

/// The Stages, with the drill's unhealthy releases (but the crash-looping one) never ready.
fn stages() -> String {
    let mut unready = vec![UNREADY_TAG];
    unready.extend(
        super::SCENARIOS.iter().map(|s| s.release).filter(|r| super::stage::is_unhealthy(r) && *r != CRASH_TAG),
    );
    let list: Vec<String> = unready.iter().map(|t| format!("'{IMAGE}:{t}'")).collect();
    STAGES.replace("'UNREADY'", &list.join(", ")).replace("IMAGE", IMAGE)
}

/// kwok's pod Stages: its default ones (ready, a Job's pod complete, delete), each kept from the
/// images that behave otherwise, and those: never ready, crash-looping, a Job's pod failing.
const STAGES: &str = include_str!("kwok-stages.yaml");
