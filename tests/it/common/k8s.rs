//! The Kubernetes testkit: one control plane for the test binary (real etcd, kube-apiserver with
//! RBAC, kube-controller-manager, kube-scheduler, and kwok as the kubelet of a fake node: see
//! `deploy_guard::simulate::control_plane`), a namespace per test holding an `api` and a `worker`
//! Deployment, and deploy-guard reaching it as a service account bound to exactly the Role of
//! docs/KUBERNETES.md. The database and the migration tool (golang-migrate, from the runner) are
//! those of `common::tool`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use deploy_guard::simulate::control_plane::{ControlPlane, IMAGE};

use super::tool;

pub fn control_plane() -> &'static ControlPlane {
    static CP: OnceLock<ControlPlane> = OnceLock::new();
    CP.get_or_init(|| {
        ControlPlane::start().unwrap_or_else(|e| panic!("cannot start the Kubernetes control plane: {e:#}"))
    })
}

/// The Role of docs/KUBERNETES.md, as written there.
pub fn documented_role() -> String {
    documented_block("role")
}

/// The YAML between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in docs/KUBERNETES.md.
pub fn documented_block(name: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/KUBERNETES.md")).unwrap();
    let block = doc
        .split(&format!("<!-- {name}:begin -->"))
        .nth(1)
        .and_then(|r| r.split(&format!("<!-- {name}:end -->")).next());
    let block = block.unwrap_or_else(|| panic!("docs/KUBERNETES.md has no {name}:begin/{name}:end block"));
    block.trim().trim_start_matches("```yaml").trim_end_matches("```").trim().to_string()
}

/// The Deployments of every test: (name, replicas).
pub const DEPLOYMENTS: [(&str, u32); 2] = [("api", 2), ("worker", 1)];

pub struct K8s {
    pub w: tool::World,
    pub ns: String,
    /// The service account's kubeconfig.
    pub kubeconfig: std::path::PathBuf,
}

impl K8s {
    /// A world of the tool `spec` at v1 and a namespace whose api and worker run v1, rolled out;
    /// `deadline`: their progressDeadlineSeconds; `extra`: more YAML sections of the config.
    pub fn new(spec: tool::ToolSpec, prefix: &str, deadline: u32, migrations_extra: &str) -> K8s {
        let cp = control_plane();
        let w = tool::World::new(spec, prefix, &[]);
        static N: AtomicUsize = AtomicUsize::new(0);
        let ns = format!("{}-{}-{}", prefix.replace('_', "-"), std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        cp.namespace_with(&ns, &DEPLOYMENTS, "v1", deadline).unwrap_or_else(|e| panic!("{e:#}"));
        let k = K8s { kubeconfig: w.tmp.path().join("kubeconfig"), w, ns };
        k.service_account();
        k.wait_rolled_out();
        let text = std::fs::read_to_string(k.w.config()).unwrap();
        let (head, rest) = text.split_once("app:\n").unwrap();
        let (_, tail) = rest.split_once("database:\n").unwrap();
        let tail = tail.replace("migrations:\n", &format!("migrations:\n{migrations_extra}"));
        let app = format!(
            "app:\n  runtime: kubernetes\n  workdir: \"{}\"\n  kubernetes:\n    namespace: {}\n    deployments: [api, worker]\n    \
             container: app\n    image: {IMAGE}\n    kubeconfig: \"{}\"\n  health:\n    timeout: 30s\n    interval: 250ms\n",
            k.w.app().display(),
            k.ns,
            k.kubeconfig.display()
        );
        std::fs::write(k.w.config(), format!("{head}{app}database:\n{tail}")).unwrap();
        k
    }

    /// The `deploy-guard` service account, bound to the documented Role, and a kubeconfig with
    /// its token.
    fn service_account(&self) {
        let cp = control_plane();
        let ns = self.ns.as_str();
        cp.kubectl_ok(&["-n", ns, "create", "serviceaccount", "deploy-guard"]).unwrap();
        self.grant(&documented_role());
        let token = cp.kubectl_ok(&["-n", ns, "create", "token", "deploy-guard", "--duration=2h"]).unwrap();
        std::fs::write(
            &self.kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\n\
                 users:\n- name: deploy-guard\n  user:\n    token: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: deploy-guard\n    \
                 namespace: {ns}\ncurrent-context: c\n",
                cp.server,
                token.trim()
            ),
        )
        .unwrap();
    }

    /// `role` (a Role's YAML) in the namespace, bound to the service account.
    pub fn grant(&self, role: &str) {
        let cp = control_plane();
        let ns = self.ns.as_str();
        cp.apply(&role.replace("metadata:\n", &format!("metadata:\n  namespace: {ns}\n"))).unwrap();
        let name = role.lines().find_map(|l| l.trim().strip_prefix("name: ")).expect("the Role's name").trim();
        let sa = format!("--serviceaccount={ns}:deploy-guard");
        cp.kubectl_ok(&["-n", ns, "create", "rolebinding", name, &format!("--role={name}"), &sa]).unwrap();
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        control_plane().kubectl_ok(&all).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A Deployment's image tag.
    pub fn tag(&self, d: &str) -> String {
        let image = self.kubectl(&["get", "deployment", d, "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
        image.strip_prefix(&format!("{IMAGE}:")).unwrap_or(&image).to_string()
    }

    /// A Deployment's (spec replicas, ready replicas, replica annotation).
    pub fn replicas(&self, d: &str) -> (String, String, String) {
        let out = self.kubectl(&[
            "get",
            "deployment",
            d,
            "-o",
            "jsonpath={.spec.replicas}/{.status.readyReplicas}/{.metadata.annotations.deploy-guard\\.dev/replicas}",
        ]);
        let mut p = out.split('/').map(str::to_string);
        (p.next().unwrap_or_default(), p.next().unwrap_or_default(), p.next().unwrap_or_default())
    }

    /// Waits until every Deployment's rollout is complete (all ready, no old pods).
    pub fn wait_rolled_out(&self) {
        let start = Instant::now();
        loop {
            let done = DEPLOYMENTS.iter().all(|(d, n)| {
                let s = self.kubectl(&[
                    "get",
                    "deployment",
                    d,
                    "-o",
                    "jsonpath={.status.updatedReplicas}/{.status.readyReplicas}/{.status.replicas}",
                ]);
                s == format!("{n}/{n}/{n}")
            });
            if done {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "not rolled out: {}\n{}\n{}",
                self.kubectl(&["get", "deploy,rs,pods"]),
                self.kubectl(&["describe", "pods"]),
                control_plane().logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Every Deployment runs `tag` with its replicas, all ready, no replica count left recorded.
    pub fn assert_running(&self, tag: &str) {
        self.wait_rolled_out();
        for (d, n) in DEPLOYMENTS {
            assert_eq!(self.tag(d), tag, "{d}'s image");
            assert_eq!(self.replicas(d), (n.to_string(), n.to_string(), String::new()), "{d}'s replicas");
        }
    }

    /// The pods of the namespace, by name.
    pub fn pods(&self) -> Vec<String> {
        self.kubectl(&["get", "pods", "-o", "name"]).lines().map(str::to_string).collect()
    }

    /// deploy-guard as the service account, its kubeconfig from the config file.
    pub fn deploy(&self, tag: &str) -> std::process::Output {
        self.w.deploy(tag)
    }
}

/// A step of the JSON report's journal, by name.
pub fn step<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["steps"].as_array().unwrap().iter().find(|s| s["step"] == name).unwrap_or_else(|| panic!("no {name} step: {r:#}"))
}

/// The steps' names, in order.
pub fn steps(r: &serde_json::Value) -> Vec<String> {
    r["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap_or("").to_string()).collect()
}
