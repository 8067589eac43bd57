//! Assembles the pingora server from a validated configuration.
//!
//! Operators write one file; pingora's own `ServerConf` is derived from it
//! here (threads, grace periods, pid file, upgrade socket), with the retry
//! budget fixed to what two twins need.

use crate::accept::DeferUntilRequest;
use crate::admin;
use crate::config::GatewayConfig;
use crate::controller::{run_checker, Controller, Event, Shared};
use crate::dns;
use crate::health::Checker;
use crate::metrics::MetricsApp;
use crate::proxy::Gateway;
use crate::reload::Reloader;
use crate::tls::{self, CertResolver, HandshakeCounter};
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::info;
use twinport_ops::audit::AuditLog;

/// Pingora's settings, derived from ours.
pub fn server_conf(c: &GatewayConfig) -> ServerConf {
    ServerConf {
        threads: c.server.threads,
        grace_period_seconds: Some(c.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(c.server.graceful_shutdown_timeout.as_secs()),
        pid_file: c.server.pid_file.display().to_string(),
        upgrade_sock: c.server.upgrade_socket.display().to_string(),
        max_retries: crate::config::MAX_ATTEMPTS as usize,
        // One single-threaded runtime per worker thread, each connection
        // on one of them for its life: no task migration, no cross-thread
        // wake-ups on the request path (bench/RESULTS.md, "what each
        // change gave").
        work_stealing: false,
        // Idle connections to the nodes wait in the worker thread that
        // used them (vendor/README.md, patch 2): taking one back is a pop,
        // not a lock and a hand-back from an idle-watch task.
        upstream_keepalive_per_thread: true,
        ..ServerConf::default()
    }
}

/// HTTP/2 settings of the HTTPS listener: pingora's bounded defaults (64 KiB
/// of decoded headers, 100 streams per connection) with a stream window of
/// `window` bytes and a connection window of 4 × `window`. The protocol's
/// 64 KiB windows make an upload wait for a round trip every 64 KiB: over
/// a 30 ms round trip 2.0 MiB/s, with 256 KiB 5.9 MiB/s, with 1 MiB 21 MiB/s
/// (bench/UPLOAD-RTT.md). A larger window is more a stalled node can make
/// the gateway hold per connection (up to 4 × `window`).
pub fn h2_options(window: u32) -> pingora::protocols::http::v2::server::H2Options {
    let mut o = pingora::protocols::http::v2::server::default_h2_options();
    o.initial_window_size(window);
    o.initial_connection_window_size(window.saturating_mul(4));
    o
}

/// Options from the command line that pingora itself acts on.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessOptions {
    /// Take the listening sockets over from a running gateway.
    pub upgrade: bool,
    pub daemon: bool,
}

/// Runs the health checkers, the controller, config reloads and the admin
/// API inside pingora's lifecycle.
struct ControlPlane {
    parts: Mutex<Option<(Controller, mpsc::UnboundedReceiver<Event>, dns::Cache)>>,
    shared: Arc<Shared>,
    reloader: Arc<Reloader>,
    audit: Option<Arc<AuditLog>>,
    admin_addr: Option<std::net::SocketAddr>,
    /// The proxy listeners; systemd hears READY=1 once all accept.
    serving: Vec<std::net::SocketAddr>,
    /// The plain HTTP listener the self-check goes through.
    self_check: Option<std::net::SocketAddr>,
}

#[async_trait]
impl BackgroundService for ControlPlane {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some((controller, events, names)) = self.parts.lock().ok().and_then(|mut p| p.take())
        else {
            return;
        };
        tokio::spawn(dns::run(self.shared.clone(), names, shutdown.clone()));
        let checker = Arc::new(Checker::new());
        for node in 0..2 {
            tokio::spawn(run_checker(
                node,
                self.shared.clone(),
                checker.clone(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(self.reloader.clone().on_sighup(shutdown.clone()));
        let config = self.shared.snapshot.load().config.clone();
        if let Some(path) = config.server.state_file.clone() {
            tokio::spawn(crate::pair::persist(
                path,
                self.shared.operator_state(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(crate::pair::run(
            self.shared.clone(),
            self.shared.operator_state(),
            shutdown.clone(),
        ));
        let health = self.shared.self_health.clone();
        match self.self_check {
            Some(addr) => {
                let to = if addr.ip().is_unspecified() {
                    std::net::SocketAddr::new(loopback_of(addr.ip()), addr.port())
                } else {
                    addr
                };
                tokio::spawn(crate::selfcheck::run(
                    self.shared.clone(),
                    to,
                    shutdown.clone(),
                ));
            }
            None => {
                tracing::warn!("no plain HTTP listener: the proxy is not self-checked; /healthz and the watchdog follow the control loop only");
                tokio::spawn(beat_without_proxy_check(health.clone(), shutdown.clone()));
            }
        }
        tokio::spawn(crate::selfcheck::watchdog(health));
        tokio::spawn(crate::pair::vrrp_track(
            self.shared.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(notify_ready_when_serving(self.serving.clone()));
        tokio::spawn(self.reloader.clone().watch(shutdown.clone()));
        if let (Some(addr), Some(audit)) = (self.admin_addr, self.audit.clone()) {
            match admin::bind(addr) {
                Ok(listener) => {
                    let app = admin::AdminApp {
                        shared: self.shared.clone(),
                        reloader: self.reloader.clone(),
                        audit,
                    };
                    let tls = self
                        .shared
                        .snapshot
                        .load()
                        .config
                        .admin
                        .as_ref()
                        .and_then(|a| a.tls.clone());
                    tokio::spawn(admin::serve(listener, app, tls, shutdown.clone()));
                    info!(%addr, "admin API listening");
                }
                Err(e) => {
                    tracing::error!(%addr, error = %e, "cannot open the admin listener; stopping");
                    std::process::exit(1);
                }
            }
        }
        controller.run(events, shutdown).await;
    }
}

/// The loopback address of `ip`'s family (for a listener on 0.0.0.0 or ::).
fn loopback_of(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    }
}

/// With no listener to check through, the proxy counts as answering.
async fn beat_without_proxy_check(
    health: Arc<crate::selfcheck::SelfHealth>,
    mut shutdown: ShutdownWatch,
) {
    loop {
        health.proxy_answered();
        tokio::select! {
            _ = tokio::time::sleep(crate::selfcheck::EVERY) => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return; }
            }
        }
    }
}

fn write_pid_file(path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| anyhow::anyhow!("cannot write the pid file {}: {e}", path.display()))
}

/// Tells systemd the gateway is ready once every proxy listener accepts
/// connections (pingora binds them, or receives them from the process it
/// replaces, in its own time).
async fn notify_ready_when_serving(listeners: Vec<std::net::SocketAddr>) {
    for addr in listeners {
        // A wildcard listener is reached through loopback.
        let target = match addr.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
            }
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
                std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
            }
            _ => addr,
        };
        while tokio::net::TcpStream::connect(target).await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    info!("serving: every listener accepts connections");
    twinport_ops::systemd::ready();
}

/// Marks the process as leaving as soon as pingora starts handing its
/// sockets to a new process (SIGQUIT) or stopping (SIGTERM), so that
/// responses from then on close their connections (see `Shared::leaving`).
fn watch_leaving(server: &Server, shared: Arc<Shared>) {
    use pingora::server::ExecutionPhase;
    let mut phases = server.watch_execution_phase();
    let spawned = std::thread::Builder::new()
        .name("twinport-phase".into())
        .spawn(move || {
            use tokio::sync::broadcast::error::RecvError;
            // A process that handed its sockets over goes through the
            // shutdown phases too; it is not the gateway stopping.
            let mut handed_over = false;
            loop {
                let phase = match phases.blocking_recv() {
                    Ok(p) => p,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                if matches!(
                    phase,
                    ExecutionPhase::GracefulUpgradeTransferringFds
                        | ExecutionPhase::GracefulTerminate
                        | ExecutionPhase::ShutdownStarted
                ) {
                    info!(
                        ?phase,
                        "leaving: closing downstream connections after each response"
                    );
                    twinport_ops::systemd::stopping();
                    shared
                        .leaving
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    handed_over |= matches!(phase, ExecutionPhase::GracefulUpgradeTransferringFds);
                    if !handed_over {
                        shared
                            .stopping
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch pingora's execution phase");
    }
}

/// A starting gateway's first exchange with its peer, within
/// `pair.start_timeout`: what the peer knows (and it learns what this one
/// kept). Without an answer the gateway serves with the state it kept.
async fn start_exchange(
    controller: &mut Controller,
    pair: &crate::config::Pair,
) -> Option<crate::pair::Exchange> {
    let deadline = tokio::time::Instant::now() + pair.start_timeout;
    loop {
        let ours = controller.exchange(&pair.name);
        match tokio::time::timeout_at(deadline, crate::pair::exchange(pair, &ours)).await {
            Ok(Ok(theirs)) => {
                controller.restore(&theirs.state, tokio::time::Instant::now());
                info!(peer = %theirs.from, primary = ?theirs.primary, vrrp = theirs.vrrp.as_str(), "operator state taken from the peer gateway");
                return Some(theirs);
            }
            Ok(Err(e)) if tokio::time::Instant::now() + Duration::from_millis(200) < deadline => {
                tracing::debug!(error = %e, "the peer gateway does not answer yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "starting without the peer gateway's operator state");
                return None;
            }
            Err(_) => {
                tracing::warn!(peer = %pair.peer, timeout = ?pair.start_timeout, "the peer gateway did not answer in time; starting with the operator state kept here");
                return None;
            }
        }
    }
}

/// Resolves the nodes' host names and checks both nodes once, so that the
/// first request already knows which node is healthy; the DNS cache goes
/// on to the control plane.
fn initial_state(
    controller: &mut Controller,
    config: &GatewayConfig,
) -> anyhow::Result<dns::Cache> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut names = dns::Cache::default();
    let now = tokio::time::Instant::now;
    // The operator's state before anything is checked: a node drained
    // before a restart, or on the peer gateway, never gets a request.
    if let Some(path) = &config.server.state_file {
        let kept = crate::pair::OperatorState::load(path)?;
        if !kept.entries.is_empty() {
            info!(file = %path.display(), entries = kept.entries.len(), "operator state restored");
        }
        controller.restore(&kept, now());
        if let Some(v) = crate::pair::kept_vrrp(path) {
            // Until keepalived says otherwise (it says nothing when
            // nothing changed, as in a binary upgrade).
            controller.shared().pair.set_vrrp(v);
        }
    }
    let peer = config
        .pair
        .as_ref()
        .and_then(|pair| rt.block_on(start_exchange(controller, pair)));
    rt.block_on(async {
        if dns::has_hosts(config) {
            let resolved = names.refresh(&dns::resolver(&config.dns), config).await;
            for (node, resolved) in resolved.into_iter().enumerate() {
                controller.apply(
                    Event::Resolved { node, resolved },
                    tokio::time::Instant::now(),
                );
            }
        }
        controller.initial_checks(&Checker::new()).await;
        controller.restore_primary(now());
        if let Some(theirs) = &peer {
            controller.follow(theirs, now());
        }
    });
    drop(rt);
    let c = controller.cluster();
    info!(
        mode = config.mode.as_str(),
        primary = c
            .primary()
            .map(|p| config.nodes[p].name.as_str())
            .unwrap_or("none"),
        a = c.node(0).health.as_str(),
        b = c.node(1).health.as_str(),
        "initial checks done"
    );
    Ok(names)
}

/// Builds the server: checks both nodes once, then sets up the proxy,
/// metrics and control-plane services. Blocks until the server stops.
pub fn run(
    config: GatewayConfig,
    config_path: PathBuf,
    opts: ProcessOptions,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let cert = config
        .listeners
        .https
        .as_ref()
        .map(|h| Arc::new(CertResolver::new(h.cert.clone())));
    let (mut controller, shared, events) =
        Controller::new(config.clone(), config_path, cert.clone());

    // Learn the nodes' health before the first request arrives.
    let names = initial_state(&mut controller, &config)?;

    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&config));
    server.bootstrap();
    let conf = server.configuration.clone();

    // The proxy sees a connection only once its request has begun to
    // arrive (see `accept`): nothing is dropped at an upgrade's hand-over.
    let mut proxy = Service::new(
        "twinport gateway".to_string(),
        DeferUntilRequest::new({
            let mut app = pingora::proxy::http_proxy(&conf, Gateway::new(shared.clone()));
            if let Some(https) = &config.listeners.https {
                app.h2_options = Some(h2_options(https.http2_window));
            }
            app
        }),
    );
    if let Some(addr) = config.listeners.http {
        proxy.add_tcp(&addr.to_string());
    }
    if let (Some(https), Some(resolver)) = (&config.listeners.https, cert) {
        let mut tls = TlsSettings::with_callbacks(Box::new(HandshakeCounter))?;
        let rustls = tls::listener_server_config(resolver, https.http2, https.resumption)
            .map_err(|e| anyhow::anyhow!("{}: {e}", e.field()))?;
        tls.set_server_config(Arc::new(rustls));
        proxy.add_tls_with_settings(&https.address.to_string(), None, tls);
        proxy
            .endpoints()
            .set_pre_tls_callback(Arc::new(HandshakeCounter));
    }
    server.add_service(proxy);

    if let Some(addr) = config.listeners.metrics {
        let mut metrics = Service::new(
            "twinport metrics".to_string(),
            MetricsApp {
                health: shared.self_health.clone(),
            },
        );
        metrics.add_tcp(&addr.to_string());
        server.add_service(metrics);
    }

    let audit = match &config.admin {
        Some(a) => Some(Arc::new(AuditLog::open(&a.audit_log).map_err(|e| {
            anyhow::anyhow!("cannot open the audit log {}: {e}", a.audit_log.display())
        })?)),
        None => None,
    };
    let shared_for_phase = shared.clone();
    let control = ControlPlane {
        parts: Mutex::new(Some((controller, events, names))),
        reloader: Arc::new(Reloader::new(shared.clone(), config.clone())),
        shared,
        audit,
        admin_addr: config.listeners.admin,
        self_check: config.listeners.http,
        serving: config
            .listeners
            .http
            .into_iter()
            .chain(config.listeners.https.as_ref().map(|h| h.address))
            .collect(),
    };
    server.add_service(background_service("twinport control plane", control));
    watch_leaving(&server, shared_for_phase);
    info!(
        http = ?config.listeners.http,
        https = ?config.listeners.https.as_ref().map(|h| h.address),
        metrics = ?config.listeners.metrics,
        "gateway starting"
    );
    if !opts.daemon {
        // Pingora writes the pid file only when it daemonizes; operators,
        // systemd and the upgrade procedure need it either way. Written
        // after the sockets were bound or taken over from the old process.
        write_pid_file(&config.server.pid_file)?;
    }
    server.run_forever();
}
