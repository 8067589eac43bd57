//! The request path: pingora's `ProxyHttp` hooks.
//!
//! ```text
//!  request ─▶ upstream_peer ──▶ connect ──▶ send ──▶ response header ──▶ body ──▶ logging
//!              │ pick from the     │ fail_to_connect:      │ upstream_response_filter:
//!              │ routing snapshot  │   passive failure,    │   5xx counts toward ejection,
//!              │ (tried nodes in   │   always retry (the   │   no retry from here on
//!              │ the ctx)          │   request was not     │
//!              ▼                   │   sent; the same node │
//!                                  │   if the twin is out) ▼
//!         503 page when            └ error_while_proxy: retry on the twin only if the method
//!         no node can serve          is idempotent, the body fits the retry buffer and no
//!                                    response header has arrived
//! ```

use crate::affinity;
use crate::clients::{self, RateLimiter};
use crate::config::AffinityMode;
use crate::controller::Shared;
use crate::failover::NodeId;
use crate::metrics::{code_class_index, metrics, CODE_CLASSES};
use crate::node::NodeRuntime;
use crate::routing::Snapshot;
use crate::selfcheck;
use crate::unavailable;
use async_trait::async_trait;
use pingora::prelude::*;
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyWarnLogContext};
use pingora::{ErrorSource, ErrorType};
use prometheus::{Histogram, IntCounter};
use std::os::unix::io::RawFd;
use std::sync::Arc;
use std::time::Instant;

pub struct Gateway {
    shared: Arc<Shared>,
    limiter: RateLimiter,
    /// Counters for requests that no node answered.
    none_requests: [IntCounter; 5],
    none_duration: Histogram,
}

impl Gateway {
    pub fn new(shared: Arc<Shared>) -> Self {
        let m = metrics();
        Gateway {
            shared,
            limiter: RateLimiter::default(),
            none_requests: CODE_CLASSES.map(|c| m.requests.with_label_values(&["none", c])),
            none_duration: m.request_duration.with_label_values(&["none"]),
        }
    }

    fn soft_failure(&self, node: &NodeRuntime, limit: u32, kind: &'static str) {
        metrics()
            .passive_failures
            .with_label_values(&[node.name.as_str(), kind])
            .inc();
        if limit == 0 {
            return;
        }
        let n = node
            .soft_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if n >= limit {
            node.soft_failures
                .store(0, std::sync::atomic::Ordering::Relaxed);
            self.shared
                .passive_failure(node.index, format!("{n} consecutive errors, last: {kind}"));
        }
    }

    /// The gateway's own self-check (see [`selfcheck`]): answered 204 here
    /// when it carries this process's token; anything else on that path
    /// goes on like any request.
    async fn self_check(&self, session: &mut Session) -> bool {
        let token = self.shared.self_health.token().as_bytes();
        let ours = session
            .req_header()
            .headers
            .get(selfcheck::HEADER)
            .is_some_and(|v| v.as_bytes() == token);
        if ours {
            session.set_keepalive(None);
            if let Ok(h) = ResponseHeader::build(204, Some(0)) {
                if let Err(err) = session.write_response_header(Box::new(h), true).await {
                    tracing::debug!(%err, "could not answer the self-check");
                }
            }
        }
        ours
    }

    /// The request's valid affinity: the gateway cookie checked, or the
    /// application cookie looked up in the table.
    fn bound(&self, snap: &Snapshot, req: &RequestHeader) -> Option<Bound> {
        let a = &snap.config.affinity;
        if !a.enabled() {
            return None;
        }
        let value = affinity::request_cookie(&req.headers, &a.cookie)?;
        let table = &self.shared.affinity;
        match (a.mode, &a.codec) {
            (AffinityMode::Cookie, Some(codec)) => {
                let now = affinity::unix_now();
                let names = [0, 1].map(|n| snap.config.nodes[n].name.as_str());
                match codec.decode(value, names, now) {
                    Ok((node, expires)) => Some(Bound {
                        node,
                        key: table.key(value),
                        renew: expires.saturating_sub(now) < a.max_age.as_secs() / 2,
                    }),
                    Err(why) => {
                        metrics()
                            .affinity_rejected
                            .with_label_values(&[why.as_str()])
                            .inc();
                        None
                    }
                }
            }
            (AffinityMode::AppCookie, _) => {
                let key = table.key(value);
                table.lookup(key, a.idle_timeout).map(|node| Bound {
                    node,
                    key,
                    renew: false,
                })
            }
            _ => None,
        }
    }

    /// After node `node` answered: the affinity follows it. A request
    /// bound elsewhere moved (counted, and never flips back); in `cookie`
    /// mode a missing, moved or ageing cookie is replaced; in `app-cookie`
    /// mode the sessions the node sets or deletes are learned.
    fn follow_affinity(
        &self,
        snap: &Snapshot,
        https: bool,
        resp: &mut ResponseHeader,
        node: NodeId,
        ctx: &RequestCtx,
    ) {
        let a = &snap.config.affinity;
        let table = &self.shared.affinity;
        let moved = ctx.bound.filter(|b| b.node != node);
        if moved.is_some() {
            metrics()
                .affinity_moved
                .with_label_values(&[ctx.moved.unwrap_or("retry")])
                .inc();
        }
        match (a.mode, &a.codec) {
            (AffinityMode::Cookie, Some(codec)) => {
                let keep = ctx.bound.filter(|b| b.node == node && !b.renew);
                if let Some(b) = keep {
                    table.bind(b.key, node, a.max_entries);
                    return;
                }
                if let Some(b) = ctx.bound {
                    table.forget(b.key);
                }
                let expires = affinity::unix_now() + a.max_age.as_secs();
                // Counted as a session once a request brings it back (an
                // API client that keeps no cookies is no session).
                let value = codec.encode(&snap.config.nodes[node].name, expires);
                let _ = resp.append_header(
                    http::header::SET_COOKIE,
                    affinity::set_cookie(&a.cookie, &value, https),
                );
                if !resp.headers.contains_key(http::header::CACHE_CONTROL) {
                    // A shared cache must not hand this cookie to others.
                    let _ = resp.insert_header(http::header::CACHE_CONTROL, "private");
                }
            }
            (AffinityMode::AppCookie, _) => {
                let set = affinity::response_cookie(&resp.headers, &a.cookie);
                if let Some(Some(v)) = &set {
                    table.bind(table.key(v), node, a.max_entries);
                }
                match (ctx.bound, set) {
                    // The application ended the session.
                    (Some(b), Some(None)) => table.forget(b.key),
                    // The old session now lives on the twin: no flip back.
                    (Some(b), _) if b.node != node => table.bind(b.key, node, a.max_entries),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn hard_failure(&self, node: &NodeRuntime, kind: &'static str) {
        metrics()
            .passive_failures
            .with_label_values(&[node.name.as_str(), kind])
            .inc();
        self.shared
            .passive_failure(node.index, kind.replace('_', " "));
    }
}

/// One attempt on one node: counted in flight until dropped.
struct Attempt {
    node: Arc<NodeRuntime>,
    slot: Option<usize>,
}

impl Attempt {
    fn new(node: Arc<NodeRuntime>) -> Self {
        node.inflight.inc();
        Attempt { node, slot: None }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.node.inflight.dec();
        if let Some(slot) = self.slot.take() {
            self.node.sessions.release(slot);
        }
    }
}

pub struct RequestCtx {
    started: Instant,
    /// Attempts made so far.
    attempts: u32,
    /// Bit set of node ids already tried.
    tried: u8,
    attempt: Option<Attempt>,
    /// The node of the latest attempt (for the request metrics).
    node: Option<Arc<NodeRuntime>>,
    /// Why the next `upstream_peer` call is a retry.
    retry_reason: Option<&'static str>,
    /// The retry may go back to the same node when no untried node serves:
    /// the request never reached it (a connection that could not be made,
    /// or a kept-alive one the node had closed).
    retry_same_node: bool,
    /// A response header arrived: from here on nothing can be retried.
    response_started: bool,
    /// Request body bytes received so far (for `clients.max_body_bytes`).
    body_bytes: u64,
    /// The session affinity the request carried, if valid.
    bound: Option<Bound>,
    /// Why the bound node could not take the request (it went by weight).
    moved: Option<&'static str>,
    /// The gateway's own self-check: not counted as a request.
    internal: bool,
}

/// A request's valid session affinity: its node and the session's key in
/// the affinity table.
#[derive(Debug, Clone, Copy)]
struct Bound {
    node: NodeId,
    key: u64,
    /// The gateway cookie is past half its life: send a fresh one.
    renew: bool,
}

/// The peer's IP address (none for a Unix socket).
fn peer_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// Whether the client came over TLS.
fn is_https(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// Writes one of the gateway's own answers (see [`unavailable`]), HTML or
/// JSON by the request's `Accept`; the connection is not kept alive.
async fn answer(session: &mut Session, code: u16, retry_after: Option<u64>) {
    session.set_keepalive(None);
    let html = unavailable::wants_html(
        session
            .req_header()
            .headers
            .get(http::header::ACCEPT)
            .map(|v| v.as_bytes()),
    );
    let (header, body) = unavailable::build(code, html, retry_after);
    let head_only = session.req_header().method == http::Method::HEAD;
    let written = async {
        session
            .write_response_header(Box::new(header), head_only)
            .await?;
        if !head_only {
            session.write_response_body(Some(body), true).await?;
        }
        Ok::<_, Box<Error>>(())
    }
    .await;
    if let Err(err) = written {
        tracing::debug!(%err, "could not write the gateway's answer");
    }
}

fn node_id(ctx: &RequestCtx) -> Option<NodeId> {
    ctx.node.as_ref().map(|n| n.index)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            attempts: 0,
            tried: 0,
            attempt: None,
            node: None,
            retry_reason: None,
            retry_same_node: false,
            response_started: false,
            body_bytes: 0,
            bound: None,
            moved: None,
            internal: false,
        }
    }

    /// No downstream modules: pingora's default adds a (disabled) response
    /// compression module, which every request would still pass through.
    /// The gateway does not compress; the nodes do where they want to.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    /// Before anything else: the client's rate, the announced body size.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if session.req_header().uri.path() == selfcheck::PATH && self.self_check(session).await {
            ctx.internal = true;
            return Ok(true);
        }
        let snap = self.shared.snapshot.load();
        let c = &snap.config.clients;
        // No limit configured: no client address to work out.
        if let Some(peer) = peer_ip(session).filter(|_| c.rate_limit > 0) {
            let client = clients::client_ip(peer, session.req_header(), &c.trusted_proxies);
            if !self.limiter.allow(client, c.rate_limit) {
                metrics().rate_limited.inc();
                answer(session, 429, Some(1)).await;
                return Ok(true);
            }
        }
        let req = session.req_header();
        // Counted without copying: the request target as sent, each header
        // line with its ": " and CRLF.
        let target = req.uri.path_and_query().map_or(1, |p| p.as_str().len())
            + req.uri.authority().map_or(0, |a| a.as_str().len());
        let header_bytes: usize = target
            + req
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>();
        if header_bytes as u64 > c.max_header_bytes {
            answer(session, 431, None).await;
            return Ok(true);
        }
        let announced = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if announced.is_some_and(|n| n > c.max_body_bytes) {
            metrics().bodies_too_large.inc();
            answer(session, 413, None).await;
            return Ok(true);
        }
        Ok(false)
    }

    /// A body without a (truthful) length is counted as it arrives.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            if ctx.body_bytes > self.shared.snapshot.load().config.clients.max_body_bytes {
                metrics().bodies_too_large.inc();
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body too large");
            }
        }
        Ok(())
    }

    /// The node gets no hop-by-hop header and forwarding headers it can
    /// believe (see [`clients`]).
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(peer) = peer_ip(session) {
            let snap = self.shared.snapshot.load();
            clients::prepare_upstream_request(
                upstream_request,
                peer,
                is_https(session),
                &snap.config.clients.trusted_proxies,
            );
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let snap = self.shared.snapshot.load();
        let pick = if ctx.tried == 0 {
            ctx.bound = self.bound(&snap, session.req_header());
            match ctx.bound {
                Some(b) => {
                    let (pick, moved) = snap.pick_bound(b.node);
                    ctx.moved = moved;
                    pick
                }
                None => snap.pick(),
            }
        } else {
            let same = node_id(ctx).filter(|n| ctx.retry_same_node && snap.order.contains(n));
            snap.pick_retry(ctx.tried).or(same)
        };
        ctx.retry_same_node = false;
        let Some(n) = pick else {
            return Error::e_explain(ErrorType::HTTPStatus(503), "no twin node can serve");
        };
        if let Some(reason) = ctx.retry_reason.take() {
            metrics().retries.with_label_values(&[reason]).inc();
        }
        let node = snap.nodes[n].clone();
        ctx.tried |= 1 << n;
        ctx.attempts += 1;
        // Replacing the previous attempt ends it (in flight -1).
        ctx.attempt = Some(Attempt::new(node.clone()));
        let peer = Box::new(node.peer.clone());
        ctx.node = Some(node);
        Ok(peer)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        fd: RawFd,
        _digest: Option<&Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(a) = ctx.attempt.as_mut() {
            if self
                .shared
                .snapshot
                .load()
                .config
                .health
                .shutdown_sessions_on_down
            {
                a.slot = a.node.sessions.register(fd);
            }
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(a) = ctx.attempt.take() {
            let limit = self.shared.snapshot.load().config.passive.error_limit;
            let kind = match e.etype() {
                ErrorType::ConnectRefused => {
                    self.hard_failure(&a.node, "connect_refused");
                    "connect_refused"
                }
                ErrorType::ConnectTimedout => {
                    self.soft_failure(&a.node, limit, "connect_timeout");
                    "connect_timeout"
                }
                _ => {
                    self.hard_failure(&a.node, "connect_error");
                    "connect_error"
                }
            };
            ctx.retry_reason = Some(kind);
        }
        // Nothing reached the node: any method may go to the twin, or back
        // to this node when the twin is out of service (HAProxy's
        // `retry-on conn-failure`); a node ejected meanwhile is not taken.
        ctx.retry_same_node = true;
        let max = self.shared.snapshot.load().config.retries.max_attempts;
        e.set_retry(ctx.attempts < max);
        e
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if upstream_response.status.is_informational() {
            return Ok(());
        }
        ctx.response_started = true;
        if let Some(a) = ctx.attempt.as_mut() {
            // The node answered: the connection no longer needs cutting.
            if let Some(slot) = a.slot.take() {
                a.node.sessions.release(slot);
            }
            if upstream_response.status.is_server_error() {
                let limit = self.shared.snapshot.load().config.passive.error_limit;
                self.soft_failure(&a.node, limit, "status_5xx");
            } else if a
                .node
                .soft_failures
                .load(std::sync::atomic::Ordering::Relaxed)
                != 0
            {
                a.node
                    .soft_failures
                    .store(0, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let snap = self.shared.snapshot.load();
        if snap.config.affinity.enabled() && !upstream_response.status.is_informational() {
            if let Some(node) = node_id(ctx) {
                self.follow_affinity(&snap, is_https(session), upstream_response, node, ctx);
            }
        }
        let hsts = snap.config.clients.hsts_max_age;
        if !hsts.is_zero()
            && is_https(session)
            && upstream_response
                .headers
                .get("strict-transport-security")
                .is_none()
        {
            let _ = upstream_response.insert_header(
                "Strict-Transport-Security",
                format!("max-age={}", hsts.as_secs()),
            );
        }
        // A connection whose node is being drained (or has left service) is
        // closed after this response, so the client reconnects and is
        // balanced afresh; so is every connection while this process hands
        // over to a new one. A node in a soft drain keeps its sessions'
        // connections: their requests come back to it anyway.
        let leaving = self
            .shared
            .leaving
            .load(std::sync::atomic::Ordering::Relaxed);
        let node_out =
            node_id(ctx).is_some_and(|n| !snap.order.contains(&n) && !snap.bindings().serves[n]);
        if leaving || node_out {
            session.set_keepalive(None);
        }
        Ok(())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let Some(a) = ctx.attempt.take() else {
            e.set_retry(false);
            return e;
        };
        if *e.esource() != ErrorSource::Upstream {
            // The client went away or sent garbage: nothing to retry.
            e.set_retry(false);
            return e;
        }
        let snap = self.shared.snapshot.load();
        let still_serving = snap.order.contains(&a.node.index);
        let kind = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                self.soft_failure(&a.node, snap.config.passive.error_limit, "timeout");
                "timeout"
            }
            _ if !still_serving => "node_down",
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
                if client_reused =>
            {
                // A kept-alive connection the node had closed: not a node
                // failure, and the same node may be tried again.
                ctx.retry_same_node = true;
                "stale_keepalive"
            }
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError => {
                self.hard_failure(&a.node, "connection_reset");
                "connection_reset"
            }
            _ => {
                self.soft_failure(&a.node, snap.config.passive.error_limit, "protocol_error");
                "protocol_error"
            }
        };
        let policy = snap.config.retries;
        let req = session.req_header();
        let idempotent = req.method.is_idempotent()
            || (policy.idempotency_key && req.headers.contains_key("idempotency-key"));
        let replayable = policy.idempotent
            && ctx.attempts < policy.max_attempts
            && idempotent
            && !session.as_ref().retry_buffer_truncated()
            && !ctx.response_started;
        e.set_retry(replayable);
        if replayable {
            ctx.retry_reason = Some(kind);
        } else {
            ctx.retry_same_node = false;
        }
        e
    }

    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
        error: &Error,
        _context: ProxyWarnLogContext,
    ) -> bool {
        // Retries are counted in twinport_retries_total; a failover under
        // load would otherwise log one warning per request.
        tracing::debug!(%error, "retrying on the twin");
        true
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        ctx.attempt = None;
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Upstream => match e.etype() {
                    ErrorType::ReadTimedout | ErrorType::ConnectTimedout => 504,
                    _ => 502,
                },
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code == 0 {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        // The connection is not reused after an error: say so, or a client
        // would send its next request on a socket about to be closed.
        session.set_keepalive(None);
        if code < 500 {
            let _ = session.respond_error(code).await;
            return FailToProxy {
                error_code: code,
                can_reuse_downstream: false,
            };
        }
        let retry_after = (code == 503).then(|| {
            self.shared
                .snapshot
                .load()
                .config
                .unavailable
                .retry_after
                .as_secs()
                .max(1)
        });
        answer(session, code, retry_after).await;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.attempt = None;
        if ctx.internal {
            return;
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let class = code_class_index(status);
        let elapsed = ctx.started.elapsed().as_secs_f64();
        match &ctx.node {
            Some(n) if ctx.response_started => {
                n.requests[class].inc();
                n.duration.observe(elapsed);
            }
            _ => {
                self.none_requests[class].inc();
                self.none_duration.observe(elapsed);
            }
        }
    }
}
