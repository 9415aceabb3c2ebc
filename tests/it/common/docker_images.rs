//! The compose tests' images, built locally FROM the base image scripts/docker-setup makes (no
//! registry is reachable) and named by a content hash of their inputs so later runs reuse them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::docker::{docker, docker_ready, fixture, inputs, ok, root, run, INSTALL};

/// Adds every file under `paths` (sorted, with its path relative to the repository) to `h`.
fn hash_tree(h: &mut Sha256, paths: &[PathBuf]) {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else {
            files.push(p);
        }
    }
    files.sort();
    for f in files {
        h.update(f.strip_prefix(root()).unwrap_or(&f).to_string_lossy().as_bytes());
        h.update([0]);
        h.update(std::fs::read(&f).unwrap());
        h.update([0]);
    }
}

/// The base image's tag: scripts/docker-setup names it by the hash of its package list.
pub fn base_image() -> String {
    let text = std::fs::read(inputs().join("base.packages")).unwrap();
    format!("deploy-guard-base:{}", &hex::encode(Sha256::digest(&text))[..12])
}

/// A backend release: the fixture's CreateUsers, then its AddNickname as is or with `down()`
/// broken, or another migration; its entrypoint; whether its health endpoint fails.
struct Release {
    name: &'static str,
    second: Second,
    entrypoint: &'static str,
    broken: bool,
}

enum Second {
    None,
    AddNickname,
    /// AddNickname whose `down()` drops a misspelt column: it errors.
    AddNicknameBadDown,
    /// AddNickname whose `down()` only drops the index: it "succeeds" and leaves the column.
    AddNicknameLyingDown,
    /// A file of tests/compose/docker/migrations/.
    File(&'static str),
}

const NORMAL: &str = "entrypoint.sh";

const RELEASES: &[Release] = &[
    Release { name: "v1", second: Second::None, entrypoint: NORMAL, broken: false },
    Release { name: "v2", second: Second::AddNickname, entrypoint: NORMAL, broken: false },
    Release {
        name: "v2-notnull",
        second: Second::File("1700000000001-AddLoyaltyTier.js"),
        entrypoint: NORMAL,
        broken: false,
    },
    Release { name: "v2-crash", second: Second::AddNickname, entrypoint: "entrypoint-crash.sh", broken: false },
    Release { name: "v2-bad-down", second: Second::AddNicknameBadDown, entrypoint: NORMAL, broken: true },
    Release { name: "v2-lying-down", second: Second::AddNicknameLyingDown, entrypoint: NORMAL, broken: true },
    Release {
        name: "v2-drop-name",
        second: Second::File("1700000000001-DropName.js"),
        entrypoint: NORMAL,
        broken: true,
    },
    Release {
        name: "v2-slow",
        second: Second::File("1700000000001-SlowLateChange.js"),
        entrypoint: NORMAL,
        broken: false,
    },
    Release {
        name: "v2-slow-down",
        second: Second::File("1700000000001-SlowDown.js"),
        entrypoint: NORMAL,
        broken: true,
    },
    Release {
        name: "v2-rename-name",
        second: Second::File("1700000000001-RenameName.js"),
        entrypoint: NORMAL,
        broken: true,
    },
    Release {
        name: "v2-rewrite-name",
        second: Second::File("1700000000001-UpperNames.js"),
        entrypoint: NORMAL,
        broken: true,
    },
    // Its server writes backend/writes/v2-app-writes.sql when it starts, after the backup.
    Release {
        name: "v2-app-writes",
        second: Second::File("1700000000001-DropOrderNote.js"),
        entrypoint: NORMAL,
        broken: true,
    },
    // Its server writes a nickname into the column its migration adds (backend/writes/).
    Release { name: "v2-additive", second: Second::AddNickname, entrypoint: NORMAL, broken: true },
    Release {
        name: "v2-unique-first-name",
        second: Second::File("1700000000001-OneUserPerFirstName.js"),
        entrypoint: NORMAL,
        broken: false,
    },
    Release {
        name: "v2-half-applied",
        second: Second::File("1700000000001-AddFirstNameConcurrently.js"),
        entrypoint: NORMAL,
        broken: false,
    },
];

const ADD_NICKNAME: &str = "migrations/1700000000001-AddNickname.js";
const DROP_COLUMN: &str = "    await queryRunner.query(`ALTER TABLE \"users\" DROP COLUMN \"nickname\"`);\n";

/// The release's second migration: file name and text.
fn second_migration(s: &Second) -> Option<(String, String)> {
    let add_nickname = || std::fs::read_to_string(fixture().join(ADD_NICKNAME)).unwrap();
    let edited = |to: &str| {
        let text = add_nickname();
        assert!(text.contains(DROP_COLUMN), "the fixture's AddNickname changed: update tests/common/docker.rs");
        text.replace(DROP_COLUMN, to)
    };
    let name = || ADD_NICKNAME.rsplit('/').next().unwrap().to_string();
    match s {
        Second::None => None,
        Second::AddNickname => Some((name(), add_nickname())),
        Second::AddNicknameBadDown => Some((name(), edited(&DROP_COLUMN.replace("\"nickname\"", "\"nick_name\"")))),
        Second::AddNicknameLyingDown => Some((name(), edited(""))),
        Second::File(f) => Some((f.to_string(), std::fs::read_to_string(inputs().join("migrations").join(f)).unwrap())),
    }
}

/// The images one run of the tests uses.
pub struct Images {
    /// `dg-backend-HASH`: tagged with each release's name (`:v1`, `:v2-crash`, …).
    pub backend_repo: String,
    pub postgres: String,
}

fn copy(from: &Path, to: &Path) {
    ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// Builds (once per content hash) and returns the test images; prunes those of older hashes.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        docker_ready();
        let base = base_image();
        if run(&mut docker(&["image", "inspect", &base])).is_err() {
            panic!("the base image {base} is missing: {INSTALL}");
        }
        let fixture = fixture();
        assert!(
            fixture.join("node_modules/.bin/typeorm").exists(),
            "TypeORM is not installed for the fixture: run `npm ci --prefix tests/fixtures/typeorm` (scripts/test does)"
        );
        let mut h = Sha256::new();
        h.update(base.as_bytes());
        hash_tree(
            &mut h,
            &[
                inputs().join("backend"),
                inputs().join("postgres"),
                inputs().join("migrations"),
                fixture.join("package-lock.json"),
                fixture.join("data-source.js"),
                fixture.join("migrations"),
            ],
        );
        let hash = hex::encode(h.finalize())[..12].to_string();
        let images =
            Images { backend_repo: format!("dg-backend-{hash}"), postgres: format!("dg-postgres-{hash}:latest") };
        let have = |image: &str| run(&mut docker(&["image", "inspect", image])).is_ok();
        let all_there =
            have(&images.postgres) && RELEASES.iter().all(|r| have(&format!("{}:{}", images.backend_repo, r.name)));
        if !all_there {
            let started = Instant::now();
            eprintln!("building the compose test images {} and {} (about 15 s)", images.backend_repo, images.postgres);
            build(&images, &base);
            eprintln!("built the compose test images in {:.1} s", started.elapsed().as_secs_f64());
        }
        prune(&hash);
        images
    })
}

fn docker_build(context: &Path, dockerfile: &str, tag: &str, args: &[(&str, &str)]) {
    let mut c = docker(&["build", "-q", "-f"]);
    c.arg(context.join(dockerfile)).args(["-t", tag]);
    for (k, v) in args {
        c.arg("--build-arg").arg(format!("{k}={v}"));
    }
    c.arg(context);
    ok(&mut c);
}

fn build(images: &Images, base: &str) {
    let tmp = tempfile::Builder::new().prefix("dg-images-").tempdir().unwrap();
    let backend = inputs().join("backend");
    docker_build(&inputs().join("postgres"), "Dockerfile", &images.postgres, &[("BASE", base)]);

    // The app: the fixture's package with its node_modules, the server (with what releases write
    // when they start), the worker.
    let app = tmp.path().join("app");
    std::fs::create_dir(&app).unwrap();
    for f in ["package.json", "package-lock.json", "data-source.js", "node_modules"] {
        copy(&fixture().join(f), &app.join(f));
    }
    for f in ["Dockerfile", "server.js", "worker.js", "entrypoint.sh", "writes"] {
        copy(&backend.join(f), &app.join(f));
    }
    let app_image = format!("{}:app", images.backend_repo);
    docker_build(&app, "Dockerfile", &app_image, &[("BASE", base)]);

    for r in RELEASES {
        let ctx = tmp.path().join(r.name);
        let migrations = ctx.join("migrations");
        std::fs::create_dir_all(&migrations).unwrap();
        copy(&fixture().join("migrations/1700000000000-CreateUsers.js"), &migrations);
        if let Some((name, text)) = second_migration(&r.second) {
            std::fs::write(migrations.join(name), text).unwrap();
        }
        copy(&backend.join(r.entrypoint), &ctx.join("entrypoint.sh"));
        copy(&backend.join("Dockerfile.release"), &ctx.join("Dockerfile.release"));
        let tag = format!("{}:{}", images.backend_repo, r.name);
        docker_build(
            &ctx,
            "Dockerfile.release",
            &tag,
            &[("APP", &app_image), ("RELEASE", r.name), ("BROKEN", if r.broken { "1" } else { "0" })],
        );
    }
}

/// Removes the test images of other content hashes (an image a container still uses stays).
fn prune(hash: &str) {
    let listed = ok(&mut docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]));
    for image in listed.lines() {
        let repo = image.split(':').next().unwrap_or("");
        let old = ["dg-backend-", "dg-postgres-"]
            .iter()
            .any(|p| repo.strip_prefix(p).is_some_and(|h| h.len() == 12 && h != hash));
        if old {
            let _ = run(&mut docker(&["image", "rm", image]));
        }
    }
}
