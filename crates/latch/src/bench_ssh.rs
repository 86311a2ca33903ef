//! `latch bench ssh`: how fast latch signs SSH certificates — in process
//! (the CA alone), and end to end over HTTP with each signature's record
//! and audit event durably committed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use crate::bench::pct;
use crate::bench_jit::{agent, post, start_dev_server_in};
use crate::cli::Global;
use crate::out::emit;

fn seed() -> anyhow::Result<[u8; 32]> {
    latch_crypto::random_bytes(32)?.try_into().map_err(|_| anyhow::anyhow!("short read from the OS CSPRNG"))
}

pub fn run(g: &Global, certs: usize, concurrency: usize) -> anyhow::Result<()> {
    // In process: sign `certs` certificates for one subject key.
    let ca = latch_ssh::UserCa::from_seed(&seed()?);
    let (_, public) = latch_ssh::user_key_pair(&seed()?, "bench")?;
    let subject = latch_ssh::parse_user_key(&public)?;
    let mut lat = Vec::with_capacity(certs);
    let t0 = Instant::now();
    for i in 0..certs {
        let req = latch_ssh::CertRequest {
            serial: u64::try_from(i).unwrap_or(0) + 1,
            key_id: format!("bench grant=grt_{i}"),
            principals: vec!["root".into(), "deploy".into()],
            valid_after: 1_700_000_000,
            valid_before: 1_700_003_600,
            force_command: None,
            source_address: None,
            extensions: vec!["permit-pty".into()],
            nonce: [7; 32],
        };
        let t = Instant::now();
        ca.sign(&subject, &req)?;
        lat.push(t.elapsed());
    }
    let in_process = certs as f64 / t0.elapsed().as_secs_f64();
    lat.sort();

    // Over HTTP: a dev server, one grant, `certs` signatures from `concurrency` clients.
    let dir = tempfile::Builder::new().prefix("latch-bench-ssh-").tempdir()?;
    let srv = start_dev_server_in(&dir.path().join("data"), &[])?;
    let a = agent();
    let bundle = json!({ "files": {
        "roles/ssh.toml": "name = \"ssh\"\nmax_duration = \"1h\"\n[approval]\nrequired = 1\napprovers = [\"group:admins\"]\n[credentials.ssh]\nprincipals = [\"root\"]\n",
        "policies/ssh.cedar": "@id(\"admins\")\npermit(principal in Group::\"admins\", action in [Action::\"request\", Action::\"activate\"], resource);\n",
    }});
    post(&a, &format!("{}/v1/policy/apply", srv.addr), &srv.token, &bundle)?;
    let v = post(&a, &format!("{}/v1/requests", srv.addr), &srv.token, &json!({ "role": "ssh", "reason": "bench" }))?;
    let grant = v["grant"]["id"].as_str().context("the request was not auto-approved")?.to_string();
    let url = format!("{}/v1/grants/{grant}/ssh", srv.addr);
    let next = AtomicUsize::new(0);
    let http_lat = Mutex::new(Vec::with_capacity(certs));
    let failure = Mutex::new(None);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| {
                let a = agent();
                let mut mine = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < certs {
                    let t = Instant::now();
                    match post(&a, &url, &srv.token, &json!({ "public_key": public })) {
                        Ok(_) => mine.push(t.elapsed()),
                        Err(e) => {
                            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            return;
                        }
                    }
                }
                http_lat.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let over_http = certs as f64 / t0.elapsed().as_secs_f64();
    let mut http_lat = http_lat.into_inner().unwrap_or_else(|p| p.into_inner());
    http_lat.sort();
    let v = json!({
        "certs": certs, "concurrency": concurrency,
        "in_process_per_sec": in_process.round(), "in_process_us_p50": pct(&lat, 0.5) * 1000.0, "in_process_us_p99": pct(&lat, 0.99) * 1000.0,
        "http_per_sec": over_http.round(), "http_ms_p50": pct(&http_lat, 0.5), "http_ms_p99": pct(&http_lat, 0.99),
    });
    emit(g, &v, |v| {
        println!(
            "SSH certificate signing in process: {} certs/s on one core (p50 {:.1} µs, p99 {:.1} µs)",
            v["in_process_per_sec"],
            v["in_process_us_p50"].as_f64().unwrap_or_default(),
            v["in_process_us_p99"].as_f64().unwrap_or_default()
        );
        println!(
            "over HTTP with durable record + audit: {} certs/s with {} clients (p50 {:.2} ms, p99 {:.2} ms)",
            v["http_per_sec"],
            v["concurrency"],
            v["http_ms_p50"].as_f64().unwrap_or_default(),
            v["http_ms_p99"].as_f64().unwrap_or_default()
        );
    });
    Ok(())
}
