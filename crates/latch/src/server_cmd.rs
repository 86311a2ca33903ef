//! `latch server`.

use std::io::Write;

use anyhow::Context;
use latch_server::config::{Config, LogFormat, Storage};
use latch_server::serve::{self, Ready, ServeOptions};
use latch_server::state::{AuthSettings, JitSettings, MetricsSettings, SloSettings};
use latch_store::PgOptions;
use tracing_subscriber::EnvFilter;

use crate::UsageError;
use crate::cli::{OperatorCmd, ServerArgs};

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut _tmp = None;
    let config = if args.dev {
        if !args.listen.ip().is_loopback() && !args.insecure_allow_plain_http {
            return Err(UsageError(format!(
                "--listen {} is not a loopback address and dev mode serves plain HTTP: \
                 use 127.0.0.1, or add --insecure-allow-plain-http if you really mean it",
                args.listen
            ))
            .into());
        }
        let data_dir = match args.data {
            Some(d) => d,
            None => {
                let t = tempfile::Builder::new()
                    .prefix("latch-dev-")
                    .tempdir()
                    .context("cannot create a temporary data directory")?;
                let p = t.path().to_path_buf();
                _tmp = Some(t);
                p
            }
        };
        Config {
            listen: args.listen,
            data_dir,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            tls: None,
            allow_plain_http: args.insecure_allow_plain_http,
            auth: AuthSettings::default(),
            checkpoint_interval: latch_core::parse_duration(&args.checkpoint_interval)
                .map_err(|e| UsageError(format!("--checkpoint-interval: {e}")))?,
            public_url: None,
            storage: match &args.storage {
                Some(dsn) => {
                    Storage::from_dsn(dsn, PgOptions::default()).map_err(|e| UsageError(format!("--storage: {e}")))?
                }
                None => Storage::Sqlite,
            },
            jit: JitSettings {
                request_timeout: latch_core::parse_duration(&args.request_timeout)
                    .map_err(|e| UsageError(format!("--request-timeout: {e}")))?,
                webhook: args.webhook.clone(),
            },
            metrics: MetricsSettings { public: args.metrics_public },
            siem: dev_sinks(&args.siem)?,
            oidc: match &args.oidc {
                Some(f) => {
                    latch_server::oidc_providers::load_file(f).map_err(|e| UsageError(format!("--oidc: {e}")))?
                }
                None => Vec::new(),
            },
            alerts: latch_server::alerts::AlertSettings {
                interval: latch_core::parse_duration(&args.alert_interval)
                    .map_err(|e| UsageError(format!("--alert-interval: {e}")))?,
                approval_sla: latch_core::parse_duration(&args.approval_sla)
                    .map_err(|e| UsageError(format!("--approval-sla: {e}")))?,
                ..Default::default()
            },
            slo: SloSettings::default(),
        }
    } else {
        let path = args.config.ok_or_else(|| UsageError("give --dev or --config latch.toml".into()))?;
        Config::load(&path)?
    };
    init_logging(&config);
    let rt =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let dev = args.dev;
    let opts = ServeOptions { config, dev, test_clock: args.test_clock, auto_unseal: dev && !args.dev_sealed };
    rt.block_on(serve::run(opts, move |ready: Ready| {
        // stdout carries only these machine-readable lines; logs go to stderr.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "LATCH_ADDR={}", ready.url);
        if let Some(t) = &ready.bootstrap_token {
            let _ = writeln!(out, "LATCH_TOKEN={}", t.expose());
        }
        let _ = out.flush();
        if dev {
            eprintln!(
                "latch dev server: {}. Not for production.\n  export LATCH_ADDR={}{}",
                ready.storage,
                ready.url,
                if ready.bootstrap_token.is_some() { " LATCH_TOKEN=<the token above>" } else { "" }
            );
        }
    }))?;
    Ok(())
}

fn init_logging(cfg: &Config) {
    let filter = EnvFilter::try_from_env("LATCH_LOG").unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

/// `latch operator migrate`.
pub fn operator(cmd: OperatorCmd) -> anyhow::Result<()> {
    match cmd {
        OperatorCmd::Migrate { storage } => {
            let Storage::Postgres { dsn, options } =
                Storage::from_dsn(&storage, PgOptions::default()).map_err(|e| UsageError(format!("--storage: {e}")))?
            else {
                return Err(UsageError("--storage must be a postgres:// URL".into()).into());
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(async {
                let store =
                    latch_store::SqlStore::open_postgres(&dsn, options, std::sync::Arc::new(latch_core::SystemClock))
                        .await
                        .context("cannot migrate the database")?;
                store.close();
                println!("schema is at version {}", latch_store::migrations::LATEST);
                Ok(())
            })
        }
        _ => Err(anyhow::anyhow!("not a local operator command")),
    }
}

/// `--siem KIND=TARGET` sinks, named after their kind (`jsonl`, `jsonl-2`, …).
fn dev_sinks(specs: &[String]) -> Result<Vec<latch_server::siem::SiemSink>, UsageError> {
    let mut sinks: Vec<latch_server::siem::SiemSink> = Vec::new();
    for spec in specs {
        let mut sink = latch_server::siem::SiemSink::parse_spec(spec).map_err(UsageError)?;
        let base = sink.name.clone();
        let mut n = 1;
        while sinks.iter().any(|s| s.name == sink.name) {
            n += 1;
            sink.name = format!("{base}-{n}");
        }
        sinks.push(sink);
    }
    Ok(sinks)
}
