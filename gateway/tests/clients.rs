//! The gateway and its clients, over real sockets: forwarding headers a
//! node can believe (a spoofed `X-Forwarded-For` replaced), hop-by-hop
//! headers kept from the node, a per-address rate limit (429 for the
//! address over it, the others unaffected, changed live by a reload), the
//! body size limit (413), HSTS on HTTPS answers.

use devtools::harness::gateway::{twins, Gateway, GwOpts};
use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The headers the node received for a request built by `req`.
async fn seen_by_node(req: reqwest::RequestBuilder) -> Value {
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn targets(
    a: &devtools::harness::gateway::Node,
    b: &devtools::harness::gateway::Node,
) -> [(String, String, String); 2] {
    [a, b].map(|n| (n.name.clone(), n.app.to_string(), n.agent.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_forwarding_headers_they_can_believe_and_no_hop_by_hop_header() {
    let (dir, a, b) = twins("gw-clients-fwd");
    let opts = GwOpts {
        https: true,
        ..GwOpts::default()
    };
    let gw = Gateway::start_with(&dir, targets(&a, &b), &opts, "");
    let c = client_from("127.0.0.3");
    let h = seen_by_node(
        c.get(gw.url("/headers"))
            .header("X-Forwarded-For", "6.6.6.6")
            .header("X-Real-IP", "6.6.6.6")
            .header("Forwarded", "for=6.6.6.6")
            .header("X-Forwarded-Proto", "https")
            .header("Connection", "keep-alive, X-Secret")
            .header("X-Secret", "only for the gateway")
            .header("Keep-Alive", "timeout=5")
            .header("Proxy-Authorization", "Basic eA==")
            .header("Proxy-Connection", "keep-alive"),
    )
    .await;
    assert_eq!(
        h["x-forwarded-for"],
        serde_json::json!(["127.0.0.3"]),
        "{h}"
    );
    assert_eq!(h["x-real-ip"], serde_json::json!(["127.0.0.3"]), "{h}");
    assert_eq!(h["x-forwarded-proto"], serde_json::json!(["http"]), "{h}");
    let fwd = h["forwarded"][0].as_str().unwrap();
    assert!(fwd.starts_with("for=127.0.0.3;proto=http;host="), "{fwd}");
    assert!(
        h.get("x-secret").is_none(),
        "a hop-by-hop header reached the node: {h}"
    );
    for hop in ["keep-alive", "proxy-authorization", "proxy-connection"] {
        assert!(h.get(hop).is_none(), "{hop} reached the node: {h}");
    }

    // Over HTTPS: proto https, and HSTS on the answer.
    let r = c
        .get(format!("https://{}/headers", gw.https.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["x-forwarded-proto"], serde_json::json!(["https"]), "{h}");
    // TLS: 1.2 and 1.3 with AEAD suites only.
    let https_addr = gw.https.unwrap();
    for (args, ok) in [
        (vec!["-tls1_3"], true),
        (vec!["-tls1_2"], true),
        (vec!["-tls1_1"], false),
        (vec!["-tls1"], false),
        (vec!["-tls1_2", "-cipher", "AES128-SHA"], false),
        (vec!["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"], false),
    ] {
        assert_eq!(
            tls_handshake(https_addr, &args),
            ok,
            "openssl s_client {args:?}"
        );
    }
    // The admin status page: no framing, no sniffing, own scripts only.
    let r = reqwest::get(format!("http://{}/", gw.admin)).await.unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    // Plain HTTP answers carry no HSTS (it would be ignored, and wrong).
    let r = c.get(gw.url("/whoami")).send().await.unwrap();
    assert!(r.headers().get("strict-transport-security").is_none());

    // Behind a trusted proxy (127.0.0.4 here) the chain is kept and the
    // client is the address the proxy saw.
    gw.write_config(&opts, "clients:\n  trusted_proxies: [127.0.0.4/32]\n");
    let (s, v) = gw.admin_call("POST", "/v1/config/reload", None).await;
    assert_eq!(s, 200, "{v}");
    let h = seen_by_node(
        client_from("127.0.0.4")
            .get(gw.url("/headers"))
            .header("X-Forwarded-For", "6.6.6.6, 198.51.100.7"),
    )
    .await;
    assert_eq!(
        h["x-forwarded-for"],
        serde_json::json!(["6.6.6.6, 198.51.100.7, 127.0.0.4"]),
        "{h}"
    );
    assert_eq!(h["x-real-ip"], serde_json::json!(["198.51.100.7"]), "{h}");
    // The same claim from an untrusted address is still replaced.
    let h = seen_by_node(
        c.get(gw.url("/headers"))
            .header("X-Forwarded-For", "6.6.6.6, 198.51.100.7"),
    )
    .await;
    assert_eq!(
        h["x-forwarded-for"],
        serde_json::json!(["127.0.0.3"]),
        "{h}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_and_the_others_are_served() {
    let (dir, a, b) = twins("gw-clients-rate");
    let opts = GwOpts::default();
    let gw = Gateway::start_with(
        &dir,
        targets(&a, &b),
        &opts,
        "clients:\n  rate_limit: 20\n  max_body_bytes: 100000\n",
    );
    let greedy = client_from("127.0.0.5");
    let polite = client_from("127.0.0.6");
    let mut codes = std::collections::BTreeMap::<u16, u32>::new();
    let mut retry_after = None;
    // Bounded: 100 requests as fast as they go (well within one second).
    for _ in 0..100 {
        let r = greedy.get(gw.url("/whoami")).send().await.unwrap();
        let status = r.status().as_u16();
        if status == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "too_many_requests");
        }
        *codes.entry(status).or_default() += 1;
    }
    assert!(codes.get(&429).copied().unwrap_or(0) >= 50, "{codes:?}");
    assert!(codes.get(&200).copied().unwrap_or(0) >= 20, "{codes:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Another address at the same moment: served.
    for _ in 0..10 {
        let r = polite.get(gw.url("/whoami")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(gw.metric("twinport_rate_limited_total").await.unwrap() >= 50.0);

    // Bodies over max_body_bytes: 413, announced or streamed.
    let r = polite
        .post(gw.url("/record?id=big"))
        .body(vec![b'x'; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        chunked_post(gw.http, 200_000).await,
        "413",
        "a streamed body"
    );
    // Headers over max_header_bytes (64 KiB by default): 431.
    let r = polite
        .get(gw.url("/whoami"))
        .header("X-Big", "z".repeat(70_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let r = polite
        .post(gw.url("/record?id=small"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // An announced body over the limit never reaches a node. (A streamed
    // one is cut at the limit: the node sees the start of a request whose
    // body then fails, as behind any streaming proxy.)
    assert!(!a
        .journal()
        .iter()
        .chain(b.journal().iter())
        .any(|l| l.contains("big")));

    // The limit is lifted live by a reload.
    gw.write_config(&opts, "clients:\n  rate_limit: 0\n");
    let (s, v) = gw.admin_call("POST", "/v1/config/reload", None).await;
    assert_eq!(s, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..100 {
        let r = greedy.get(gw.url("/whoami")).send().await.unwrap();
        assert_eq!(r.status(), 200, "no limit after the reload");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ocsp_response_is_stapled_and_changes_with_a_reload() {
    let (dir, a, b) = twins("gw-clients-ocsp");
    let opts = GwOpts {
        https: true,
        ..GwOpts::default()
    };
    let gw = Gateway::start_with(&dir, targets(&a, &b), &opts, "");
    let https = gw.https.unwrap();
    let status = || {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &https.to_string(),
                "-servername",
                "localhost",
                "-status",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(status().contains("OCSP response: no response sent"));
    // A CA-signed certificate with its OCSP response, put in by a reload.
    let pki = pki(dir.path());
    let with_ocsp = GwOpts {
        https_extra: format!("    ocsp_response: {}\n", pki.join("resp.der").display()),
        ..opts.clone()
    };
    gw.write_config_with_cert(
        &with_ocsp,
        "",
        &pki.join("chain.pem"),
        &pki.join("server.key"),
    );
    let (s, v) = gw.admin_call("POST", "/v1/config/reload", None).await;
    assert_eq!(s, 200, "{v}");
    let out = status();
    assert!(out.contains("OCSP Response Status: successful"), "{out}");
    assert!(out.contains("Cert Status: good"), "{out}");
}

/// Builds the test PKI (CA, server, OCSP response, client certificates).
fn pki(dir: &std::path::Path) -> std::path::PathBuf {
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let made = std::process::Command::new("sh")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pki-fixture.sh"))
        .current_dir(&pki)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    pki
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_over_mutual_tls_wants_a_client_certificate_of_its_ca_and_the_token() {
    let (dir, a, b) = twins("gw-admin-mtls");
    let pki = pki(dir.path());
    let opts = GwOpts {
        admin_extra: format!(
            "  tls:\n    certificate: {}\n    key: {}\n    client_ca: {}\n",
            pki.join("chain.pem").display(),
            pki.join("server.key").display(),
            pki.join("ca.crt").display()
        ),
        ..GwOpts::default()
    };
    let gw = Gateway::start_with(&dir, targets(&a, &b), &opts, "");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.crt")).unwrap()).unwrap();
    let client = |who: Option<&str>| {
        let mut c = reqwest::Client::builder()
            .add_root_certificate(ca.clone())
            .timeout(Duration::from_secs(5));
        if let Some(who) = who {
            let mut pem = std::fs::read(pki.join(format!("{who}.crt"))).unwrap();
            pem.extend(std::fs::read(pki.join(format!("{who}.key"))).unwrap());
            c = c.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        c.build().unwrap()
    };
    let url = format!("https://localhost:{}/v1/status", gw.admin.port());
    // The operator's certificate and token: served.
    let r = client(Some("client"))
        .get(&url)
        .bearer_auth(&gw.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 2);
    // The certificate without the token: 401.
    let r = client(Some("client")).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // No certificate, or one of another CA: no TLS session at all.
    for who in [None, Some("stranger")] {
        let r = client(who).get(&url).bearer_auth(&gw.token).send().await;
        assert!(r.is_err(), "{who:?} got through: {r:?}");
    }
    // Plain HTTP on the admin port gets nothing either.
    let plain = reqwest::get(format!("http://{}/v1/status", gw.admin)).await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    // twinctl with the CA and the client certificate.
    let out = std::process::Command::new(devtools::bin("twinctl"))
        .args(["--admin", &format!("https://localhost:{}", gw.admin.port())])
        .arg("--token-file")
        .arg(dir.path().join("admin.token"))
        .arg("--ca-cert")
        .arg(pki.join("ca.crt"))
        .arg("--client-cert")
        .arg(pki.join("client.crt"))
        .arg("--client-key")
        .arg(pki.join("client.key"))
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 2);
    // An admin listener off loopback needs mutual TLS.
    let bad = dir.path().join("remote-admin.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&gw.config)
            .unwrap()
            .replace(&format!("admin: {}", gw.admin), "admin: 0.0.0.0:19999")
            .replace(
                &format!("    client_ca: {}\n", pki.join("ca.crt").display()),
                "",
            ),
    )
    .unwrap();
    let (code, text) = devtools::check_config("gateway", &bad);
    assert_eq!(code, Some(64), "{text}");
    assert!(
        text.contains("listeners.admin") && text.contains("mutual TLS"),
        "{text}"
    );
}

/// Whether `openssl s_client` with `args` completes a handshake.
fn tls_handshake(addr: std::net::SocketAddr, args: &[&str]) -> bool {
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
        ])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs (Debian package openssl)");
    let text = String::from_utf8_lossy(&out.stdout);
    // A completed handshake names its cipher; a refused one says "(NONE)".
    text.lines()
        .any(|l| l.contains("Cipher is ") && !l.contains("(NONE)"))
}

/// POSTs `n` bytes in 10 kB chunks without a Content-Length (chunked
/// transfer coding) over a raw socket; the answer's status code. The
/// node is asked to wait 3 s before answering, so that the answer is the
/// gateway's (a node that answers at once would win the race).
async fn chunked_post(addr: std::net::SocketAddr, n: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /record?id=streamed&ms=3000 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = format!("2710\r\n{}\r\n", "y".repeat(10_000));
    for _ in 0..n / 10_000 {
        // The gateway may answer and close before the body is all sent.
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while let Ok(Ok(k)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        if k == 0 {
            break;
        }
        got.extend_from_slice(&buf[..k]);
        if got.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    text.split_whitespace().nth(1).unwrap_or("").to_string()
}
