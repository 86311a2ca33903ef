//! `latch`: one binary for the server and every client command.
//!
//! Exit codes: 0 success, 1 error, 2 usage error, 3 denied (HTTP 403).
#![forbid(unsafe_code)]

mod audit_cmd;
mod bench;
mod bench_cluster;
mod bench_jit;
mod bench_kv;
mod bench_ssh;
mod cli;
mod client;
mod commands;
mod db_cmd;
mod exchange_cmd;
mod gateway_cmd;
mod jit_cmd;
mod oidc_cmd;
mod out;
mod seal_cmd;
mod server_cmd;
mod sessions_cmd;
mod slo_cmd;
mod ssh_cmd;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::client::{ApiFailure, ClientError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = cli.global.clone();
    let result = match cli.command {
        Command::Server(args) => server_cmd::run(args),
        Command::Operator(cmd) => seal_cmd::operator(cmd, &g),
        Command::Ssh(cmd) => ssh_cmd::run(cmd, &g),
        Command::Db(cmd) => db_cmd::run(cmd, &g),
        Command::Bench(b) => bench::run(b, &g),
        Command::Audit(a) => audit_cmd::run(a, &g),
        Command::Sessions(a) => sessions_cmd::run(a, &g),
        Command::Gateway(a) => gateway_cmd::run(a, &g),
        Command::Replay { id, speed } => sessions_cmd::replay(&id, speed, &g),
        Command::Exchange(a) => exchange_cmd::run(a, &g),
        Command::Slo { window } => slo_cmd::run(&window, &g),
        Command::Inventory => slo_cmd::inventory(&g),
        c @ (Command::Apply { .. }
        | Command::Roles
        | Command::Policy(_)
        | Command::Request(_)
        | Command::Requests { .. }
        | Command::Show { .. }
        | Command::Approve { .. }
        | Command::Deny { .. }
        | Command::Cancel { .. }
        | Command::Grants { .. }
        | Command::Revoke { .. }
        | Command::Token { .. }
        | Command::Introspect { .. }
        | Command::Breakglass { .. }
        | Command::Review { .. }) => jit_cmd::run(c, &g),
        other => commands::run(other, &g),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            if g.output == cli::Output::Json {
                let (status, kind) = api_failure(&e).map_or((0, "error".to_string()), |f| (f.status, f.code.clone()));
                let v = serde_json::json!({ "error": { "code": kind, "status": status, "message": format!("{e:#}") } });
                eprintln!("{v}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}

fn api_failure(e: &anyhow::Error) -> Option<&ApiFailure> {
    e.chain().find_map(|c| match c.downcast_ref::<ClientError>() {
        Some(ClientError::Api(f)) => Some(f),
        _ => c.downcast_ref::<ApiFailure>(),
    })
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.downcast_ref::<UsageError>().is_some()) {
        return 2;
    }
    match api_failure(e) {
        Some(f) if f.status == 403 => 3,
        _ => 1,
    }
}

/// A mistake in how the command was invoked (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
