//! Twinport ticketing: the queue system of a branch office. Kiosks issue
//! tickets (or check in bookings), desks call them, display boards show
//! them live, managers see waiting and service times. Both twins run it on
//! one store, so either can serve any request.
//!
//! # Layout
//!
//! | module | job | IO? |
//! | --- | --- | --- |
//! | [`config`] | YAML file → validated [`config::Config`] | reads the file |
//! | [`calendar`] | the branch-local day (numbers restart at local midnight), opening hours | none (pure) |
//! | [`queue`] | which ticket a desk calls next; estimated waits | none (pure) |
//! | [`store`] | sqlx on SQLite or PostgreSQL: exactly-once issuing, desk actions, bookings | database |
//! | [`app`] | shared state and the views (ticket, board, desk, statistics) | database |
//! | [`live`] | notices changes made through either twin and wakes the event streams | database |
//! | [`api`] | the JSON API, server-sent events, `/ready`, `/metrics` (axum) | HTTP |
//! | [`pages`] | kiosk, board, desk, tracking and statistics pages | HTTP |
//! | [`metrics`] | `twinport_ticketing_*` | none |
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod calendar;
pub mod config;
pub mod live;
pub mod metrics;
pub mod pages;
pub mod queue;
pub mod store;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

/// Connects the store (migrating it), then serves on `listener` until
/// `shutdown` resolves. `config_path` is the file `config` came from: a
/// SIGHUP re-reads its token files. Readiness, reloads, the watchdog and
/// the stop are reported to systemd when it started the service.
pub async fn serve(
    config: config::Config,
    config_path: std::path::PathBuf,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = store::Store::connect(&config.database, config.max_connections).await?;
    let changes = config
        .branches
        .keys()
        .map(|b| (b.clone(), tokio::sync::broadcast::channel(16).0))
        .collect::<HashMap<_, _>>();
    let metrics = metrics::Metrics::new(&config.node);
    for b in config.branches.values() {
        metrics.init_branch(b);
    }
    let app = Arc::new(app::App {
        tokens: arc_swap::ArcSwap::from_pointee(app::App::tokens_of(&config)),
        kiosk_rate: pingora_limits::rate::Rate::new(std::time::Duration::from_secs(1)),
        metrics,
        store,
        changes,
        config,
    });
    tokio::spawn(live::run(app.clone()));
    tracing::info!(
        node = %app.config.node,
        address = %listener.local_addr()?,
        branches = app.config.branches.len(),
        "ticketing serving"
    );
    let reloading = app.clone();
    tokio::spawn(twinport_ops::cli::reread_tokens_on_sighup(
        config_path,
        move |path| reloading.reload_tokens(path),
    ));
    tokio::spawn(twinport_ops::systemd::watchdog());
    twinport_ops::systemd::ready();
    axum::serve(
        listener,
        api::router(app).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        shutdown.await;
        twinport_ops::systemd::stopping();
    })
    .await?;
    Ok(())
}
