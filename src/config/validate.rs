//! Rules that span several settings, and the checks on values given on the command line.

use anyhow::{bail, Result};

use super::{Config, RuntimeKind, Tool};

/// An image tag as Docker accepts it: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(what: &str, tag: &str) -> Result<()> {
    let mut bytes = tag.bytes();
    let first_ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !first_ok || !rest_ok || tag.len() > 128 {
        bail!(
            "{what} {tag:?}: not a valid image tag (letters, digits, '_', '.', '-'; \
             starting with a letter, digit or '_'; at most 128 characters)"
        );
    }
    Ok(())
}

fn check_identifier(key: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !value.as_bytes()[0].is_ascii_digit();
    if !ok {
        bail!("{key}: {value:?} is not a plain SQL identifier (letters, digits, '_', at most 63)");
    }
    Ok(())
}

/// A database name: a plain identifier, or a whole `${VAR}` resolved on the target.
fn check_db_name(key: &str, value: &str) -> Result<()> {
    if is_var_ref(value) {
        return Ok(());
    }
    let ok = !value.is_empty()
        && value.len() <= 40
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if !ok {
        bail!(
            "{key}: {value:?} must be letters, digits, '_' or '-' (at most 40, so that the \
             rollback's scratch and kept copies fit PostgreSQL's 63-character names), or ${{VAR}}"
        );
    }
    Ok(())
}

/// `${NAME}`: a value read from the env file on the target.
pub fn is_var_ref(value: &str) -> bool {
    value.starts_with("${")
        && value.ends_with('}')
        && value.len() > 3
        && value[2..value.len() - 1].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Config {
    pub(super) fn validate(&self) -> Result<()> {
        if self.project.trim().is_empty() {
            bail!("project: must not be empty");
        }
        if self.project.len() > 64
            || !self.project.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            bail!("project: {:?} must be letters, digits, '_', '-' or '.' (at most 64)", self.project);
        }
        self.validate_target()?;
        self.validate_app()?;
        self.validate_database()?;
        self.validate_migrations()?;
        self.validate_backup()?;
        self.validate_neon()?;
        Ok(())
    }

    /// Refuses backups that die with the job: a store on a GitHub-hosted runner while the
    /// database lives elsewhere (the manual rollback would find nothing).
    pub(super) fn validate_runner(&self, vars: &[(String, String)]) -> Result<()> {
        let hosted = vars.iter().any(|(k, v)| k == "RUNNER_ENVIRONMENT" && v == "github-hosted");
        let dir = matches!(crate::model::StoreUrl::parse(&self.backup.store), Ok(crate::model::StoreUrl::Dir(_)));
        if hosted && dir && self.backup.store_on == super::StoreOn::Runner && self.target.host.is_some() {
            bail!(
                "backup.store_on: runner puts the backups ({}) on this GitHub-hosted runner, which is deleted when the \
                 job ends: a later rollback would find no backup. Keep them on the target (remove store_on: the \
                 default is the target's disk) or in S3-compatible storage (backup.store: s3://bucket/prefix)",
                self.backup.store
            );
        }
        Ok(())
    }

    fn validate_target(&self) -> Result<()> {
        let t = &self.target;
        if t.host.is_some() {
            if t.known_hosts.is_none() && t.fingerprint.is_none() && !t.insecure_accept_any_host_key {
                bail!(
                    "target.known_hosts: required with target.host (or target.fingerprint: SHA256:…); \
                     get it with `ssh-keyscan -t ed25519 HOST` and check it out of band"
                );
            }
            if t.user.is_none() {
                bail!("target.user: required with target.host");
            }
            let jump_pinned = t.jump_known_hosts.is_some()
                || t.jump_fingerprint.is_some()
                || t.known_hosts.is_some()
                || t.insecure_accept_any_host_key;
            if t.jump.is_some() && !jump_pinned {
                bail!(
                    "target.jump_fingerprint: required with target.jump and target.fingerprint (or \
                     target.jump_known_hosts): target.fingerprint pins the target only, each host is pinned on its own"
                );
            }
        }
        if !t.hosts.is_empty() && t.host.is_none() {
            bail!("target.hosts: needs target.host (the primary host, where migrations and pg_dump run)");
        }
        let mut seen = vec![t.host_name()];
        for (i, h) in t.hosts.iter().enumerate() {
            let key = format!("target.hosts[{i}]");
            if h.host.trim().is_empty() {
                bail!("{key}.host: required");
            }
            let ht = t.for_host(h);
            if ht.known_hosts.is_none() && ht.fingerprint.is_none() && !ht.insecure_accept_any_host_key {
                bail!("{key}.known_hosts: required (or {key}.fingerprint, or target.known_hosts with its line)");
            }
            if seen.contains(&ht.host_name()) {
                bail!("{key}: {} is named twice", ht.host_name());
            }
            seen.push(ht.host_name());
        }
        if t.connect_timeout.is_zero() {
            bail!("target.connect_timeout: must be more than 0");
        }
        Ok(())
    }

    fn validate_app(&self) -> Result<()> {
        let a = &self.app;
        if !self.target.hosts.is_empty() && matches!(a.runtime, RuntimeKind::Swarm | RuntimeKind::Kubernetes) {
            bail!(
                "target.hosts: only with app.runtime: shell or compose (a swarm or a cluster spreads the app over its \
                 nodes itself: name one manager in target.host, or none for kubernetes)"
            );
        }
        match a.runtime {
            RuntimeKind::Shell => {
                if a.commands.deploy.is_none() {
                    bail!("app.commands.deploy: required with app.runtime: shell (a command with {{tag}})");
                }
                if !a.services.is_empty() {
                    bail!("app.services: only with app.runtime: compose or swarm (with shell, app.commands.deploy and stop drive every service)");
                }
                if a.commands.current_tag.is_none() {
                    bail!("app.commands.current_tag: required with app.runtime: shell (prints the running tag)");
                }
                if !a.commands.deploy.as_deref().unwrap_or("").contains("{tag}") {
                    bail!("app.commands.deploy: must contain {{tag}}, where the image tag goes");
                }
            }
            RuntimeKind::Kubernetes => {
                let Some(k) = &a.kubernetes else {
                    bail!("app.kubernetes: required with app.runtime: kubernetes (namespace, deployments, container, image)");
                };
                k.validate()?;
                if self.target.host.is_some() {
                    bail!("target.host: not with app.runtime: kubernetes (kubectl and the migration tool run on this machine)");
                }
                if let Some(target) = &self.database.service {
                    super::kubernetes::check_exec_target("database.service", target)?;
                }
                if a.compose_file.is_some() || a.tag_variable.is_some() || !a.services.is_empty() {
                    bail!("app.compose_file, app.tag_variable, app.services: only with app.runtime: compose");
                }
                if a.commands.deploy.is_some() || a.commands.pause_writes.is_some() {
                    bail!(
                        "app.commands: only with app.runtime: shell or compose (kubernetes: app.kubernetes.pause_env)"
                    );
                }
            }
            RuntimeKind::Compose => {
                for (key, v) in [
                    ("app.compose_file", &a.compose_file),
                    ("app.service", &a.service),
                    ("app.tag_variable", &a.tag_variable),
                ] {
                    if v.is_none() {
                        bail!("{key}: required with app.runtime: compose");
                    }
                }
                for s in &a.services {
                    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                        bail!("app.services: {s:?} is not a compose service name");
                    }
                }
                if !a.services.is_empty() && !a.services.iter().any(|s| Some(s) == a.service.as_ref()) {
                    bail!(
                        "app.services: must include app.service ({}), the service whose image runs the migrations",
                        a.service.as_deref().unwrap_or("")
                    );
                }
                if self.database.service.is_none() && self.database.url.is_none() && self.database.host.is_none() {
                    bail!("database.service: required with app.runtime: compose (the compose service running PostgreSQL), or database.url");
                }
            }
            RuntimeKind::Swarm => {
                let Some(service) = &a.service else {
                    bail!("app.service: required with app.runtime: swarm (the swarm service whose image runs the migrations, e.g. station_backend)");
                };
                for s in std::iter::once(service).chain(&a.services) {
                    let mut b = s.bytes();
                    let ok = b.next().is_some_and(|c| c.is_ascii_alphanumeric())
                        && b.all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
                    if !ok || s.len() > 63 {
                        bail!("app.services: {s:?} is not a swarm service name (as `docker service ls` shows it: STACK_SERVICE)");
                    }
                }
                if !a.services.is_empty() && !a.services.contains(service) {
                    bail!("app.services: must include app.service ({service}), the service whose image runs the migrations");
                }
                for (key, set) in
                    [("app.compose_file", a.compose_file.is_some()), ("app.tag_variable", a.tag_variable.is_some())]
                {
                    if set {
                        bail!("{key}: not used with app.runtime: swarm (each service's image is updated with `docker service update`)");
                    }
                }
                if let Some(db) = &self.database.service {
                    let mut b = db.bytes();
                    if !(b.next().is_some_and(|c| c.is_ascii_alphanumeric())
                        && b.all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)))
                    {
                        bail!("database.service: {db:?} is not a swarm service name");
                    }
                } else if self.database.url.is_none() && self.database.host.is_none() {
                    bail!(
                        "database.service: required with app.runtime: swarm (the swarm service running PostgreSQL, its task \
                         on the manager), or database.url"
                    );
                }
            }
        }
        if a.runtime != RuntimeKind::Kubernetes && a.kubernetes.is_some() {
            bail!("app.kubernetes: only with app.runtime: kubernetes");
        }
        if a.runtime != RuntimeKind::Kubernetes && self.migrations.location == super::MigrateWhere::Job {
            bail!("migrations.where: job needs app.runtime: kubernetes (the Job runs in its cluster)");
        }
        if a.commands.resume_writes.is_some() != a.commands.pause_writes.is_some() {
            bail!("app.commands.pause_writes and resume_writes: set both or neither (writes paused must be resumed)");
        }
        let h = &a.health;
        match (&h.url, &h.command) {
            // Kubernetes: the rollout's readiness is the check; a URL can add to it.
            (None, None) if a.runtime == RuntimeKind::Kubernetes => {}
            (None, None) => bail!("app.health: set url (answers 2xx when healthy) or command (exits 0 when healthy)"),
            (Some(_), Some(_)) => bail!("app.health: set url or command, not both"),
            (Some(u), None) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                bail!("app.health.url: {u:?} must start with http:// or https://")
            }
            _ => {}
        }
        if h.timeout.is_zero() {
            bail!("app.health.timeout: must be more than 0");
        }
        if h.interval.is_zero() {
            bail!("app.health.interval: must be more than 0");
        }
        Ok(())
    }

    fn validate_database(&self) -> Result<()> {
        let d = &self.database;
        match &d.name {
            Some(n) => check_db_name("database.name", n)?,
            None if d.url.is_none() => {
                bail!("database.name: required (or database.url with the name in its path)")
            }
            None => {}
        }
        if let Some(url) = &d.url {
            crate::model::ConnInfo::parse_url(url).map_err(|e| anyhow::anyhow!("database.url: {e}"))?;
        }
        if d.url.is_some() && d.host.is_some() {
            bail!("database.url and database.host: set one, not both");
        }
        if let Some(u) = &d.user {
            if !is_var_ref(u) && u.chars().any(|c| c.is_whitespace() || c == '\'') {
                bail!("database.user: {u:?} must not contain spaces or quotes");
            }
        }
        check_identifier("database.maintenance_db", &d.maintenance_db)?;
        if d.stream_timeout.is_zero() {
            bail!("database.stream_timeout: must be more than 0");
        }
        Ok(())
    }

    fn validate_migrations(&self) -> Result<()> {
        let m = &self.migrations;
        if m.timeout.is_zero() {
            bail!("migrations.timeout: must be more than 0");
        }
        if m.tool == Tool::Command && m.run.is_none() {
            bail!("migrations.run: required with migrations.tool: command (or choose a preset: typeorm)");
        }
        if let Some(t) = &m.table {
            for part in t.split('.') {
                check_identifier("migrations.table", part)?;
            }
        }
        if let Some(o) = &m.order_by {
            check_identifier("migrations.order_by", o)?;
        }
        if m.tool == Tool::Command && m.dirty_sql.is_some() && m.table.is_none() {
            bail!("migrations.dirty_sql: needs migrations.table (the table it reads) with migrations.tool: command");
        }
        Ok(())
    }

    fn validate_backup(&self) -> Result<()> {
        let b = &self.backup;
        let url = crate::model::StoreUrl::parse(&b.store).map_err(|e| anyhow::anyhow!("backup.store: {e}"))?;
        if let Some(copy) = &b.copy_to {
            let parsed = crate::model::StoreUrl::parse(copy).map_err(|e| anyhow::anyhow!("backup.copy_to: {e}"))?;
            if !matches!(parsed, crate::model::StoreUrl::S3 { .. }) {
                bail!("backup.copy_to: {copy:?} must be s3://bucket/prefix (an offsite copy; S3, B2, R2, MinIO)");
            }
            if *copy == b.store {
                bail!("backup.copy_to: is backup.store itself; name a second bucket or prefix");
            }
        }
        let s3 = matches!(url, crate::model::StoreUrl::S3 { .. }) || b.copy_to.is_some();
        if !s3 {
            for (key, set) in [
                ("backup.endpoint", b.endpoint.is_some()),
                ("backup.region", b.region.is_some()),
                ("backup.path_style", b.path_style.is_some()),
                ("backup.sse", b.sse.is_some()),
                ("backup.sse_kms_key_id", b.sse_kms_key_id.is_some()),
                ("backup.checksums", b.checksums.is_some()),
            ] {
                if set {
                    bail!("{key}: only applies to an s3:// backup.store or backup.copy_to (the store is {})", b.store);
                }
            }
        }
        if let Some(e) = &b.endpoint {
            if !(e.starts_with("https://") || e.starts_with("http://")) || e.len() < 10 {
                bail!("backup.endpoint: {e:?} must be a URL starting with https:// (e.g. https://s3.us-west-004.backblazeb2.com)");
            }
        }
        const MIB: u64 = 1 << 20;
        if b.part_size < 5 * MIB || b.part_size > 5 * 1024 * MIB {
            bail!("backup.part_size: {} bytes is outside S3's limits for a multipart part (5MiB to 5GiB)", b.part_size);
        }
        if !(1..=64).contains(&b.parts_in_flight) {
            bail!("backup.parts_in_flight: {} must be 1 to 64", b.parts_in_flight);
        }
        if let Some(sse) = &b.sse {
            if !["AES256", "aws:kms", "aws:kms:dsse"].contains(&sse.as_str()) {
                bail!("backup.sse: {sse:?} must be AES256, aws:kms or aws:kms:dsse");
            }
        }
        if b.sse_kms_key_id.is_some() && !b.sse.as_deref().is_some_and(|s| s.starts_with("aws:kms")) {
            bail!("backup.sse_kms_key_id: needs backup.sse: aws:kms");
        }
        if b.max_age.is_some_and(|a| a.is_zero()) {
            bail!("backup.max_age: must be more than 0");
        }
        let (codec, level) = (b.compression.codec, b.compression.level());
        if !codec.levels().contains(&level) {
            let (lo, hi) = (codec.levels().start().to_owned(), codec.levels().end().to_owned());
            bail!("backup.compression: {level} is not a {codec} level ({lo} to {hi})");
        }
        if !(1..=64).contains(&b.jobs) {
            bail!("backup.jobs: {} must be 1 to 64", b.jobs);
        }
        if b.keep == Some(0) {
            bail!("backup.keep: must be at least 1 (the newest verified backup is always kept)");
        }
        Ok(())
    }
}
