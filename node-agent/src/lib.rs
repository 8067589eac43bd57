//! Twinport's node-agent: runs beside the portal application on each twin
//! node and is the gateway's source of truth about that node.
//!
//! # Layout
//!
//! | module | job | IO? |
//! | --- | --- | --- |
//! | [`config`] | YAML file → validated [`config::AgentConfig`] | reads the file |
//! | [`state`] | the node's state machine: starting, ready, unhealthy, draining, maintenance, upgrading | none (pure) |
//! | [`probe`] | HTTP, TCP, command and disk probes; rise/fall tracking | probes the app |
//! | [`agent`] | the shared core: state behind a short lock, probe tasks, the precomputed `/ready` answer | spawns tasks |
//! | [`supervisor`] | runs the app as a child (restart with backoff, graceful stop) or a systemd unit | processes |
//! | [`release`] | release directories and the atomically switched `current` link | file system |
//! | [`upgrade`] | drain → stop → switch → start → verify → smoke, or roll back | all of the above |
//! | [`record`] | the upgrade record (data the agent keeps and the upgrade writes; no import circle) | none |
//! | [`gateway`] | asks the gateway's admin API whether the node still has traffic | HTTP |
//! | [`api`] | `/ready`, `/live`, `/metrics` and the control API (axum) | HTTP |
//! | [`metrics`] | Prometheus metrics (`twinport_agent_*`) | none |
//!
//! [`serve`] is the whole agent given its two bound listeners and a
//! shutdown signal, so tests run it on ephemeral ports.
#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod config;
pub mod gateway;
pub mod metrics;
pub mod probe;
pub mod record;
pub mod release;
pub mod state;
pub mod supervisor;
pub mod upgrade;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// Runs the agent on `readiness` and `control` until `shutdown` resolves,
/// then stops the app gracefully.
pub async fn serve(
    config: config::AgentConfig,
    config_path: std::path::PathBuf,
    readiness: tokio::net::TcpListener,
    control: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let version = release::Store::new(&config.state_dir).require_current()?;
    let audit = twinport_ops::audit::AuditLog::open(&config.control.audit_log).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the audit log {}: {e}",
            config.control.audit_log.display()
        )
    })?;
    let agent = agent::Agent::new(config, version, audit);
    agent.start().await.map_err(anyhow::Error::msg)?;
    tracing::info!(
        node = %agent.config.node,
        version = %agent.version(),
        readiness = %readiness.local_addr()?,
        control = %control.local_addr()?,
        "node-agent serving"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let ready_srv = axum::serve(readiness, api::readiness_router(agent.clone()))
        .with_graceful_shutdown(wait(stop_rx.clone()));
    let control_srv = axum::serve(
        control,
        api::control_router(agent.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(wait(stop_rx));
    let servers = tokio::spawn(async move { tokio::try_join!(ready_srv, control_srv) });
    let reloading = agent.clone();
    tokio::spawn(twinport_ops::cli::reread_tokens_on_sighup(
        config_path,
        move |path| reloading.reload_tokens(path),
    ));
    tokio::spawn(twinport_ops::systemd::watchdog());
    twinport_ops::systemd::ready();
    shutdown.await;
    twinport_ops::systemd::stopping();
    tracing::info!("stopping: the app first, then the listeners");
    let stopped: Arc<agent::Agent> = agent.clone();
    stopped.supervisor.stop().await;
    let _ = stop_tx.send(true);
    servers.await??;
    Ok(())
}
