//! `latch operator init|unseal|seal|status|rotate-master`: the seal, through
//! the server's Vault-compatible `sys/` routes.

use serde_json::{Value, json};

use crate::cli::{Global, OperatorCmd};
use crate::client::Client;
use crate::out;

pub fn operator(cmd: OperatorCmd, g: &Global) -> anyhow::Result<()> {
    let c = || Client::new(g);
    match cmd {
        OperatorCmd::Migrate { .. } => crate::server_cmd::operator(cmd),
        OperatorCmd::Init { shares, threshold } => {
            let v: Value =
                c()?.put("/v1/sys/init", &json!({ "secret_shares": shares, "secret_threshold": threshold }))?;
            out::emit(g, &v, |v| {
                for (i, k) in v["keys"].as_array().into_iter().flatten().enumerate() {
                    println!("Unseal share {}: {}", i + 1, k.as_str().unwrap_or(""));
                }
                println!();
                println!("latch is initialized and this server is unsealed. The shares are shown once:");
                println!("give each to a different person. After a restart, {threshold} of the {shares}");
                println!("shares unseal the server (`latch operator unseal`); latch never stores them.");
            });
            Ok(())
        }
        OperatorCmd::Unseal { share, reset } => {
            let share = match (share, reset) {
                (Some(s), _) => Some(s),
                (None, true) => None,
                (None, false) => Some(crate::commands::read_secret_line("unseal share")?),
            };
            let mut body = json!({ "reset": reset });
            if let Some(s) = share {
                body["key"] = json!(s.trim());
            }
            let v: Value = c()?.put("/v1/sys/unseal", &body)?;
            out::emit(g, &v, print_status);
            Ok(())
        }
        OperatorCmd::Seal => {
            c()?.call::<Value>("PUT", "/v1/sys/seal", None::<&()>)?;
            println!("sealed: secrets are unavailable until `latch operator unseal`");
            Ok(())
        }
        OperatorCmd::Status => {
            let v: Value = c()?.get("/v1/sys/seal-status")?;
            out::emit(g, &v, print_status);
            Ok(())
        }
        OperatorCmd::RotateMaster => {
            let c = c()?;
            c.call::<Value>("PUT", "/v1/sys/rotate", None::<&()>)?;
            let v: Value = c.get("/v1/sys/key-status")?;
            out::emit(g, &v, |v| {
                println!(
                    "master key version {} is active; {} wrapped keys (secrets, issuer keys, connection \
                     passwords) are being re-wrapped in the background",
                    v["data"]["term"], v["data"]["pending_rewrap"]
                );
            });
            Ok(())
        }
    }
}

fn print_status(v: &Value) {
    if v["initialized"] != json!(true) {
        println!("not initialized: run `latch operator init`");
        return;
    }
    if v["sealed"] == json!(true) {
        println!("sealed: {} of {} shares submitted (threshold {})", v["progress"], v["t"], v["t"]);
    } else {
        println!("unsealed (threshold {} of {} shares)", v["t"], v["n"]);
    }
}
