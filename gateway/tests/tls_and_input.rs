//! HTTPS and HTTP/2 through the gateway, bad configuration files and
//! malformed HTTP, against the real binaries.

use devtools::harness::gateway::*;
use devtools::{bin, TempDir};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn tls_client(gw: &Gateway, http1_only: bool, tls12_only: bool) -> reqwest::Client {
    let pem = std::fs::read(&gw.cert).unwrap();
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("localhost", gw.https.unwrap())
        .timeout(Duration::from_secs(10));
    if http1_only {
        b = b.http1_only();
    }
    if tls12_only {
        b = b.max_tls_version(reqwest::tls::Version::TLS_1_2);
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_http2_and_http1_and_tls12() {
    let (dir, a, b) = twins("tls");
    let opts = GwOpts {
        https: true,
        ..GwOpts::default()
    };
    let gw = Gateway::start(&dir, &[&a, &b], &opts);
    let url = format!("https://localhost:{}/whoami", gw.https.unwrap().port());

    // ALPN picks h2 when the client offers it.
    let r = tls_client(&gw, false, false)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "a");

    // HTTP/1.1 over TLS 1.2 works too.
    let r = tls_client(&gw, true, true).get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.text().await.unwrap(), "a");

    // Many h2 streams on one connection.
    let c = tls_client(&gw, false, false);
    let futs: Vec<_> = (0..50).map(|_| c.get(&url).send()).collect();
    for r in futures_join(futs).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    // A client that trusts another CA is refused.
    let other = TempDir::new("other-ca");
    let (other_cert, _) = devtools::write_dev_cert(other.path(), &["localhost".into()]).unwrap();
    let pem = std::fs::read(other_cert).unwrap();
    let stranger = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .resolve("localhost", gw.https.unwrap())
        .build()
        .unwrap();
    assert!(stranger.get(&url).send().await.is_err());
}

async fn futures_join<F>(fs: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// A client that keeps the sessions and tickets the gateway gives it, as a
/// browser does, speaking only `version`.
fn resuming_client(
    gw: &Gateway,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(&gw.cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// One request on a new TLS connection; how its handshake went.
fn handshake_of_one_request(
    gw: &Gateway,
    config: &Arc<rustls::ClientConfig>,
) -> rustls::HandshakeKind {
    let name = "localhost".try_into().unwrap();
    let mut conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut tcp = TcpStream::connect(gw.https.unwrap()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    // The gateway may close without a close_notify: what was read counts.
    let _ = tls.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    conn.handshake_kind().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sessions_resume_as_configured_and_are_counted() {
    use rustls::HandshakeKind::{Full, Resumed};
    let (dir, a, b) = twins("resume");
    // (the `https:` lines, what the second connection of TLS 1.3 and of
    // TLS 1.2 should be)
    let cases = [
        ("", Resumed, Resumed),
        ("    session_tickets: false\n", Resumed, Resumed),
        (
            "    session_cache: 0\n    session_tickets: false\n",
            Full,
            Full,
        ),
    ];
    for (https_extra, tls13, tls12) in cases {
        let opts = GwOpts {
            https: true,
            https_extra: https_extra.into(),
            ..GwOpts::default()
        };
        let gw = Gateway::start(&dir, &[&a, &b], &opts);
        let mut expected_resumed = 0.0;
        for (version, second) in [
            (&rustls::version::TLS13, tls13),
            (&rustls::version::TLS12, tls12),
        ] {
            let client = resuming_client(&gw, version);
            assert_eq!(
                handshake_of_one_request(&gw, &client),
                Full,
                "{https_extra:?} {version:?}"
            );
            assert_eq!(
                handshake_of_one_request(&gw, &client),
                second,
                "{https_extra:?} {version:?}"
            );
            if second == Resumed {
                expected_resumed += 1.0;
            }
        }
        let resumed = gw
            .metric("twinport_tls_handshakes_total{stage=\"resumed\"}")
            .await;
        assert_eq!(resumed, Some(expected_resumed), "{https_extra:?}");
    }
}

/// How much of a request body an HTTP/2 client may send on a new stream
/// before the gateway grants more: the stream window it announces.
async fn http2_upload_window(gw: &Gateway) -> usize {
    let config = resuming_client(gw, &rustls::version::TLS13);
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gw.https.unwrap())
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    // A first exchange: the gateway's SETTINGS and window updates are in.
    let get = http::Request::get("https://localhost/whoami")
        .body(())
        .unwrap();
    let (answer, _) = client.send_request(get, true).unwrap();
    assert_eq!(answer.await.unwrap().status(), 200);
    let mut client = client.ready().await.unwrap();
    let post = http::Request::post("https://localhost/upload")
        .body(())
        .unwrap();
    let (_answer, mut body) = client.send_request(post, false).unwrap();
    body.reserve_capacity(8 << 20);
    std::future::poll_fn(|cx| body.poll_capacity(cx))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http2_window_is_256_kib_or_as_configured() {
    let (dir, a, b) = twins("h2window");
    for (https_extra, window) in [
        ("", 256 << 10),
        ("    http2_window_bytes: 100000\n", 100_000),
    ] {
        let opts = GwOpts {
            https: true,
            https_extra: https_extra.into(),
            ..GwOpts::default()
        };
        let gw = Gateway::start(&dir, &[&a, &b], &opts);
        assert_eq!(http2_upload_window(&gw).await, window, "{https_extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_gets_a_4xx_and_the_gateway_keeps_serving() {
    let (dir, a, b) = twins("badhttp");
    let gw = Gateway::start(&dir, &[&a, &b], &GwOpts::default());
    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /\x01\x02 HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(gw.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(garbage).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 4"), "{garbage:?} got {text:?}");
    }
    let r = reqwest::get(gw.url("/whoami")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "a");
}

fn check(config: &std::path::Path) -> (Option<i32>, String) {
    devtools::check_config("gateway", config)
}

#[test]
fn a_malformed_config_refuses_to_start_naming_file_and_field() {
    let dir = TempDir::new("badconfig");
    let cases = [
        (
            "listeners:\n  http: 127.0.0.1:1\nnodes:\n  - name: a\n    adress: 127.0.0.1:2\n",
            "nodes[0]: unknown field `adress`",
        ),
        (
            "listeners:\n  http: 127.0.0.1:1\nnodes:\n  - name: a\n    address: nowhere\n  - name: b\n    address: 127.0.0.1:3\n",
            "nodes[0].address (line 5): `nowhere` is not an address",
        ),
        (
            "listeners:\n  http: 127.0.0.1:1\nnodes:\n  - name: a\n    address: 127.0.0.1:2\n",
            "nodes (line 3): exactly two twin nodes are needed, found 1",
        ),
        (
            "listeners:\n  http: 127.0.0.1:1\nprimary: c\nhealth_check:\n  rise: 0\n  interval: 1ms\nnodes:\n  - name: a\n    address: 127.0.0.1:2\n  - name: b\n    address: 127.0.0.1:3\n",
            "health_check.rise (line 5): 0 is out of range",
        ),
        (
            "listeners:\n  https:\n    address: 127.0.0.1:1\n    certificate: c.pem\n    key: k.pem\n    http2_window_bytes: 10\nnodes:\n  - name: a\n    address: 127.0.0.1:2\n  - name: b\n    address: 127.0.0.1:3\n",
            "listeners.https.http2_window_bytes (line 6): 10 is out of range (65535 to 4194304)",
        ),
        ("listeners: [\n", "listeners: invalid type: sequence"),
        ("listeners:\n  http: \"open\n  metrics: x\n", "at line 2"),
    ];
    for (i, (yaml, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let (code, text) = check(&path);
        assert_eq!(code, Some(64), "case {i}: {text}");
        assert!(
            text.contains(&path.display().to_string()),
            "case {i} names the file: {text}"
        );
        assert!(text.contains(want), "case {i}: want {want:?} in {text}");
    }
    // Several errors are reported at once.
    let (_, text) = check(&dir.path().join("bad-3.yaml"));
    assert!(
        text.contains("primary (line 3): `c` is not the name of a node"),
        "{text}"
    );
    assert!(text.contains("health_check.interval (line 6)"), "{text}");
    // A missing file is reported as such.
    let (code, text) = check(&dir.path().join("missing.yaml"));
    assert_eq!(code, Some(64));
    assert!(text.contains("cannot read the file"), "{text}");
    // And the gateway really does not start: it exits with 64.
    let out = Command::new(bin("gateway"))
        .arg("--config")
        .arg(dir.path().join("bad-0.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

/// Every file in configs/ passes `gateway --check` once the certificate it
/// names exists (copied beside a generated key pair, as on a real host).
#[test]
fn shipped_configs_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = 0;
    for entry in walk(&root) {
        if entry.file_name().and_then(|n| n.to_str()) != Some("gateway.yaml") {
            continue;
        }
        let dir = TempDir::new("shipped");
        let text = std::fs::read_to_string(&entry).unwrap();
        let copy = dir.path().join("conf/gateway.yaml");
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::write(&copy, &text).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        if let Some(https) = v["listeners"].get("https") {
            let cert = copy
                .parent()
                .unwrap()
                .join(https["certificate"].as_str().unwrap());
            let key = copy.parent().unwrap().join(https["key"].as_str().unwrap());
            let tmp = TempDir::new("pair");
            let (c, k) = devtools::write_dev_cert(tmp.path(), &["localhost".into()]).unwrap();
            std::fs::create_dir_all(cert.parent().unwrap()).unwrap();
            std::fs::create_dir_all(key.parent().unwrap()).unwrap();
            std::fs::copy(c, &cert).unwrap();
            std::fs::copy(k, &key).unwrap();
        }
        if let Some(token) = v["admin"].get("token_file") {
            let path = copy.parent().unwrap().join(token.as_str().unwrap());
            devtools::write_secret(&path, "a-generated-token-0123456789\n");
        }
        if let Some(key) = v.get("affinity").and_then(|a| a.get("secret_file")) {
            let path = copy.parent().unwrap().join(key.as_str().unwrap());
            devtools::write_secret(&path, "a-generated-affinity-key-0123456789abcdef\n");
        }
        let (code, text) = check(&copy);
        assert_eq!(code, Some(0), "{}: {text}", entry.display());
        checked += 1;
    }
    assert!(checked >= 2, "found {checked} gateway configs");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
