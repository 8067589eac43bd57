//! DNS discovery against a real DNS server (hickory-server on loopback):
//! a node given by host name follows its A record within one TTL, and a
//! failing DNS server keeps the last good address.

use devtools::harness::gateway::*;
use devtools::{free_port, TempDir};
use hickory_server::authority::{Catalog, ZoneType};
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A DNS server for the zone `twin.test.` on 127.0.0.1, whose records the
/// test can change.
struct Dns {
    addr: SocketAddr,
    zone: Arc<InMemoryAuthority>,
    serial: u32,
    server: Option<ServerFuture<Catalog>>,
}

impl Dns {
    async fn start() -> Dns {
        let origin = Name::from_str("twin.test.").unwrap();
        let zone = InMemoryAuthority::empty(origin.clone(), ZoneType::Primary, false);
        let soa = SOA::new(
            Name::from_str("ns.twin.test.").unwrap(),
            Name::from_str("admin.twin.test.").unwrap(),
            1,
            60,
            60,
            600,
            1,
        );
        zone.upsert(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1)
            .await;
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![zone.clone()]);
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let mut server = ServerFuture::new(catalog);
        server.register_socket(socket);
        Dns {
            addr,
            zone,
            serial: 1,
            server: Some(server),
        }
    }

    /// Replaces the A records of `host` (in twin.test.) with one address.
    async fn set_a(&mut self, host: &str, ip: Ipv4Addr, ttl: u32) {
        let name = Name::from_str(&format!("{host}.twin.test.")).unwrap();
        self.serial += 1;
        self.zone
            .records_mut()
            .await
            .remove(&RrKey::new(LowerName::new(&name), RecordType::A));
        self.zone
            .upsert(Record::from_rdata(name, ttl, RData::A(A(ip))), self.serial)
            .await;
    }

    async fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.shutdown_gracefully().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_given_by_host_name_follows_its_a_record_within_one_ttl() {
    let dir = TempDir::new("dns");
    let mut dns = Dns::start().await;
    dns.set_a("portal-a", Ipv4Addr::new(127, 0, 0, 1), 1).await;
    // Node a, first on 127.0.0.1 (version 1), later on 127.0.0.2 (version 2),
    // same ports.
    let (app_port, agent_port) = (free_port(), free_port());
    let at = |ip: [u8; 4], port| SocketAddr::from((ip, port));
    let a1 = Node::start_at(
        &dir,
        "a",
        at([127, 0, 0, 1], app_port),
        at([127, 0, 0, 1], agent_port),
        "1.0.0",
    );
    let a2 = Node::start_at(
        &dir,
        "a",
        at([127, 0, 0, 2], app_port),
        at([127, 0, 0, 2], agent_port),
        "2.0.0",
    );
    let b = Node::start(&dir, "b");
    let targets = [
        (
            "a".to_string(),
            format!("portal-a.twin.test:{app_port}"),
            format!("portal-a.twin.test:{agent_port}"),
        ),
        ("b".to_string(), b.app.to_string(), b.agent.to_string()),
    ];
    let extra = format!(
        "dns:\n  servers: [{}]\n  timeout: 500ms\n  min_ttl: 200ms\n",
        dns.addr
    );
    let gw = Gateway::start_with(&dir, targets, &GwOpts::default(), &extra);

    let before = load(gw.url("/whoami"), 2, Duration::from_secs(5), 20).await;
    assert!(
        before
            .iter()
            .all(|o| o.ok && o.node == "a" && o.version == "1.0.0"),
        "{}",
        summary(&before)
    );
    let (_, status) = gw.admin_call("GET", "/v1/status", None).await;
    assert_eq!(
        status["nodes"][0]["address"],
        format!("portal-a.twin.test:{app_port} (127.0.0.1:{app_port})")
    );

    // The record moves; within one TTL (1 s) traffic follows, failing nothing.
    let load_task = tokio::spawn(load(
        gw.url("/whoami"),
        4,
        Duration::from_millis(3000),
        100_000,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let changed_at = Instant::now();
    dns.set_a("portal-a", Ipv4Addr::new(127, 0, 0, 2), 1).await;
    let out = load_task.await.unwrap();
    assert!(out.iter().all(|o| o.ok), "{}", summary(&out));
    let first_v2 = out
        .iter()
        .filter(|o| o.version == "2.0.0")
        .map(|o| o.at.duration_since(changed_at))
        .min()
        .expect("traffic reached the new address");
    assert!(
        first_v2 <= Duration::from_millis(1300),
        "followed after {first_v2:?}"
    );
    let late = out
        .iter()
        .filter(|o| o.at > changed_at + Duration::from_millis(1500));
    assert!(late.clone().count() > 50);
    assert!(
        late.into_iter().all(|o| o.version == "2.0.0"),
        "{}",
        summary(&out)
    );
    assert!(gw.log_text().contains("node address changed"));
    assert!(
        gw.metric(r#"twinport_dns_resolutions_total{node="a",result="ok"}"#)
            .await
            >= Some(2.0)
    );
    println!("DNS change followed after {first_v2:?}: {}", summary(&out));

    // The DNS server goes away: the last good address stays in use and the
    // failures are counted.
    dns.stop().await;
    let failed = r#"twinport_dns_resolutions_total{node="a",result="failed"}"#;
    let end = Instant::now() + Duration::from_secs(5);
    while gw.metric(failed).await.unwrap_or(0.0) < 1.0 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gw.metric(failed).await >= Some(1.0));
    let after = load(gw.url("/whoami"), 2, Duration::from_secs(5), 20).await;
    assert!(
        after.iter().all(|o| o.ok && o.version == "2.0.0"),
        "{}",
        summary(&after)
    );
    drop(a1);
    drop(a2);
}
