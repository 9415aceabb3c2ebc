//! Every integration test, in one binary: one link of the crate instead of one per file. A module
//! per area; `common` is the shared testkit (the PostgreSQL cluster, sshd, the S3 server, Docker).
//! Run one area with a filter: `scripts/test --test it -- s3::` (see CONTRIBUTING.md).

// The testkit signals and inspects the processes it starts with libc.
#![allow(unsafe_code)]

#[macro_use]
mod common;
mod action;
mod backup_restore;
mod commands;
mod compose;
mod compose_docker;
mod compose_services;
mod compression;
mod config_errors;
mod data_safety;
mod deploy;
mod directory_format;
mod docs;
mod faults;
mod github;
mod hardening;
mod hosts;
mod hosts_compose;
mod init;
mod kubernetes;
mod layers;
mod lint_squawk;
mod lock;
mod meta_filter;
mod neon;
mod pause_writes;
mod plan_covers_run;
mod pr_check;
mod release;
mod s3;
mod simulate;
mod ssh;
mod ssh_deploy;
mod swarm;
mod target_store;
mod tools_alembic;
mod tools_dbmate;
mod tools_drizzle;
mod tools_golang_migrate;
mod tools_goose;
mod tools_knex;
mod tools_node_pg_migrate;
mod tools_prisma;
mod tools_sqlx;
mod typeorm;
mod workflow_permissions;
