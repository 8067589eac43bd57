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
//! | [`calendar`] | the branch-local day (numbers restart at local midnight), opening hours, when a day ends | none (pure) |
//! | [`queue`] | which ticket a desk calls next; estimated waits; simulated days | none (pure) |
//! | [`store`] | sqlx on SQLite or PostgreSQL: exactly-once issuing, desk actions, bookings, the day close | database |
//! | [`app`] | shared state and the views (ticket, board, desk, statistics) | database |
//! | [`live`] | notices changes made through either twin and wakes the event streams | database |
//! | [`api`] | the JSON API, server-sent events, `/ready`; `/metrics` on its own listener (axum) | HTTP |
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
pub mod views;

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
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (metrics_listen): {e}"))?,
        ),
        None => None,
    };
    let store = store::Store::connect(&config.database, config.max_connections).await?;
    let app = Arc::new(app::App::new(config, store, app::Clock::system()));
    // A branch that was down at its closing time starts the day clean.
    if let Err(e) = app.close_ended_days().await {
        tracing::warn!(error = %e, "cannot close ended days at start (trying again shortly)");
    }
    tokio::spawn(live::run(app.clone()));
    tokio::spawn(day_close(app.clone()));
    tracing::info!(
        node = %app.config.node,
        address = %listener.local_addr()?,
        metrics = ?app.config.metrics_listen,
        branches = app.config.branches.len(),
        "ticketing serving"
    );
    if let Some(l) = metrics_listener {
        let router = api::metrics_router(app.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, router).await {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
    }
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

/// How often each instance looks for an ended day to close.
pub const DAY_CLOSE_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// Closes each branch's day once it has ended (both twins look; the first
/// closes it).
async fn day_close(app: Arc<app::App>) {
    let mut tick = tokio::time::interval(DAY_CLOSE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = app.close_ended_days().await {
            tracing::warn!(error = %e, "cannot close the branch day (trying again)");
        }
    }
}
