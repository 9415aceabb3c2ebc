//! What `docker service inspect` and `docker inspect TASK…` print, parsed with serde (the
//! output is hostile: unknown fields are ignored, a missing one is an error) and judged: has a
//! service converged on its spec, is its update stuck.

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::app::{compose, ServiceState};

/// A service of `docker service inspect`; fields not read are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Service {
    #[serde(rename = "ID")]
    pub(super) id: String,
    pub(super) spec: Spec,
    pub(super) update_status: Option<UpdateStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Spec {
    pub(super) name: String,
    pub(super) task_template: TaskTemplate,
    #[serde(default)]
    pub(super) mode: Mode,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TaskTemplate {
    pub(super) container_spec: ContainerSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ContainerSpec {
    pub(super) image: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Mode {
    pub(super) replicated: Option<Replicated>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Replicated {
    #[serde(default)]
    pub(super) replicas: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct UpdateStatus {
    #[serde(default)]
    pub(super) state: String,
    #[serde(default)]
    pub(super) message: String,
}

/// A task of `docker inspect TASK…`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Task {
    #[serde(rename = "ServiceID")]
    pub(super) service_id: String,
    pub(super) desired_state: String,
    pub(super) status: TaskStatus,
    pub(super) spec: TaskTemplate,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TaskStatus {
    pub(super) state: String,
    #[serde(default)]
    pub(super) err: String,
}

impl Service {
    pub(super) fn image(&self) -> &str {
        &self.spec.task_template.container_spec.image
    }

    pub(super) fn replicas(&self) -> Option<u64> {
        self.spec.mode.replicated.as_ref().map(|r| r.replicas)
    }

    pub(super) fn update_state(&self) -> &str {
        self.update_status.as_ref().map(|u| u.state.as_str()).unwrap_or("")
    }

    pub(super) fn state(&self) -> ServiceState {
        ServiceState { service: self.spec.name.clone(), image: self.image().to_string(), replicas: self.replicas() }
    }

    /// Its tasks that should run, and how many of them run the spec's image.
    pub(super) fn running(&self, tasks: &[Task]) -> (usize, usize) {
        let mine = tasks.iter().filter(|t| t.service_id == self.id && t.desired_state == "running");
        let (mut wanted, mut ok) = (0, 0);
        for t in mine {
            wanted += 1;
            if t.status.state == "running" && t.spec.container_spec.image == self.image() {
                ok += 1;
            }
        }
        (wanted, ok)
    }

    /// Why it has not converged on its spec (none: it has).
    pub(super) fn unconverged(&self, tasks: &[Task]) -> Option<String> {
        let name = &self.spec.name;
        let (wanted, ok) = self.running(tasks);
        let want = self.replicas().map(|r| r as usize).unwrap_or(wanted.max(1));
        let state = self.update_state();
        if !matches!(state, "" | "completed") || ok < want || wanted > ok {
            let failing: Vec<&str> = tasks
                .iter()
                .filter(|t| t.service_id == self.id && !t.status.err.is_empty() && t.desired_state == "running")
                .map(|t| t.status.err.as_str())
                .collect();
            return Some(format!(
                "{name}: {ok}/{want} running on {}{}{}",
                self.image(),
                if state.is_empty() { String::new() } else { format!(", update {state}") },
                failing.first().map(|e| format!(" ({e})")).unwrap_or_default()
            ));
        }
        None
    }

    /// An update Swarm itself will not finish: paused on a failed task, or rolled back; with
    /// the error of a task of the new image that failed, when one did.
    pub(super) fn stuck(&self, tasks: &[Task]) -> Option<String> {
        let u = self.update_status.as_ref()?;
        let failed = tasks
            .iter()
            .find(|t| {
                t.service_id == self.id && !t.status.err.is_empty() && t.spec.container_spec.image == self.image()
            })
            .map(|t| format!(" (a task of it: {})", t.status.err))
            .unwrap_or_default();
        matches!(u.state.as_str(), "paused" | "rollback_paused" | "rollback_completed").then(|| {
            crate::console::untrusted(&format!(
                "the update of {} to {} is {}: {}{failed}",
                self.spec.name,
                self.image(),
                u.state.replace('_', " "),
                u.message
            ))
        })
    }
}

/// The tag of an image reference, its digest set aside (`app:v1@sha256:…` → `v1`).
pub fn image_tag(image: &str) -> Option<String> {
    let image = image.trim();
    compose::image_tag(image.split_once('@').map_or(image, |(i, _)| i))
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text.trim()).with_context(|| format!("{what} printed no JSON it should have"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_with_digests() {
        assert_eq!(image_tag("app:v1@sha256:abc").as_deref(), Some("v1"));
        assert_eq!(image_tag("registry:5000/app:v2").as_deref(), Some("v2"));
        assert_eq!(image_tag("app@sha256:abc"), None);
    }

    #[test]
    fn converged_only_when_every_replica_runs_the_spec_image() {
        let services: Vec<Service> = serde_json::from_str(
            r#"[{"ID":"s1","Spec":{"Name":"st_web","TaskTemplate":{"ContainerSpec":{"Image":"app:v2"}},
                "Mode":{"Replicated":{"Replicas":2}}},"UpdateStatus":{"State":"completed","Message":"done"}}]"#,
        )
        .unwrap();
        let task = |image: &str, state: &str| Task {
            service_id: "s1".into(),
            desired_state: "running".into(),
            status: TaskStatus { state: state.into(), err: String::new() },
            spec: TaskTemplate { container_spec: ContainerSpec { image: image.into() } },
        };
        let s = &services[0];
        assert_eq!(s.unconverged(&[task("app:v2", "running"), task("app:v2", "running")]), None);
        assert!(s.unconverged(&[task("app:v2", "running"), task("app:v2", "starting")]).is_some());
        assert!(s.unconverged(&[task("app:v2", "running"), task("app:v1", "running")]).is_some());
        assert_eq!(s.stuck(&[]), None);
        let paused: Vec<Service> = serde_json::from_str(
            r#"[{"ID":"s1","Spec":{"Name":"st_web","TaskTemplate":{"ContainerSpec":{"Image":"app:v2"}}},
                "UpdateStatus":{"State":"paused","Message":"update paused due to failure"}}]"#,
        )
        .unwrap();
        let failed = Task {
            status: TaskStatus { state: "failed".into(), err: "task: non-zero exit (1)".into() },
            ..task("app:v2", "failed")
        };
        let said = paused[0].stuck(&[failed]).unwrap();
        assert!(
            said.contains("is paused: update paused due to failure (a task of it: task: non-zero exit (1))"),
            "{said}"
        );
        assert!(parse::<Vec<Service>>("x", "Error: no such service").is_err());
    }
}
