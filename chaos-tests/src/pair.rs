//! The gateway pair on a network of its own, for real: Linux network
//! namespaces, a bridge, keepalived's VRRP moving a virtual IP between two
//! gateway "hosts", and both twins (node-agent + ticketing, one SQLite
//! store) behind them.
//!
//! ```text
//!  namespace <p>c (clients, twins)            namespace <p>1 / <p>2 (gateway hosts)
//!  ┌──────────────────────────────────┐       ┌───────────────────────────────┐
//!  │ load, twinctl, admin calls       │       │ gateway  http 0.0.0.0:8080     │
//!  │ twin a, b on 198.18.0.254:ports  │       │          admin .N:9180 (mTLS)  │
//!  │ br0 198.18.0.254/24 ── g1p ──────┼─veth──┤ eth0 198.18.0.N/24            │
//!  │                    └── g2p ──────┼─veth──┤ keepalived: VIP 198.18.0.100   │
//!  └──────────────────────────────────┘       └───────────────────────────────┘
//! ```
//!
//! Addresses exist only inside these namespaces (198.18.0.0/15 is the
//! benchmarking range; no route leads out), and everything is removed on
//! drop. The code that talks to the lab runs on a thread that entered the
//! client namespace ([`in_client_namespace`]); processes it starts there
//! inherit it, and the gateways and keepalived are started in their own
//! namespaces with `ip netns exec`.
//!
//! Each gateway runs as its systemd unit would run it: under a shell that
//! writes `-254` to the VRRP track file when the process ends other than
//! cleanly (the unit's `ExecStopPost`, as the ansible role writes it), so
//! keepalived moves the address the moment a gateway dies.

use crate::appliance::{self, Node, Options, Store, ADMIN_TOKEN, DESK_TOKEN};
use anyhow::{bail, Context};
use devtools::{write_secret, Proc, TempDir};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
pub const BRIDGE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
pub const HTTP_PORT: u16 = 8080;
pub const ADMIN_PORT: u16 = 9180;
pub const METRICS_PORT: u16 = 9100;
pub const PAIR_TOKEN: &str = "chaos-pair-token-0123456789abcdef";
/// VRRP advertisement interval (VRRPv3 allows sub-second ones).
pub const ADVERT_INT: &str = "0.2";

/// Gateway host `i`'s address (0 → 198.18.0.1).
pub fn host(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, i as u8 + 1)
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("run ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn nft(ns: &str, script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("run nft")?;
    use std::io::Write;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The three namespaces and the links between them; removed on drop.
pub struct Net {
    prefix: String,
}

impl Net {
    /// Builds the network. Needs root (CAP_NET_ADMIN) and iproute2; says
    /// so plainly when it cannot.
    pub fn create(tag: &str) -> anyhow::Result<Net> {
        let prefix = format!("tp{}{tag}", std::process::id() % 100_000);
        let net = Net { prefix };
        net.build().with_context(|| {
            "cannot build the gateway pair's network namespaces (these tests need root and iproute2, \
             as CI has; see docs/gateway-pair.md)"
        })?;
        Ok(net)
    }

    pub fn client(&self) -> String {
        format!("{}c", self.prefix)
    }

    pub fn gateway(&self, i: usize) -> String {
        format!("{}{}", self.prefix, i + 1)
    }

    fn build(&self) -> anyhow::Result<()> {
        let cli = self.client();
        for ns in [cli.clone(), self.gateway(0), self.gateway(1)] {
            let _ = ip(&["netns", "del", &ns]);
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        ip(&["-n", &cli, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &cli,
            "addr",
            "add",
            &format!("{BRIDGE}/24"),
            "dev",
            "br0",
        ])?;
        ip(&["-n", &cli, "link", "set", "br0", "up"])?;
        for i in 0..2 {
            let gw = self.gateway(i);
            let port = format!("g{}p", i + 1);
            ip(&[
                "-n", &gw, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &cli,
            ])?;
            ip(&[
                "-n",
                &gw,
                "addr",
                "add",
                &format!("{}/24", host(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &gw, "link", "set", "eth0", "up"])?;
            ip(&["-n", &cli, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &cli, "link", "set", &port, "up"])?;
            nft(&gw, &vip_guard_nft(VIP, &[HTTP_PORT]))?;
        }
        Ok(())
    }

    /// Cuts the link between the two gateway hosts (VRRP adverts and the
    /// peer link); clients still reach both.
    pub fn cut_between_gateways(&self) -> anyhow::Result<()> {
        nft(
            &self.client(),
            "table bridge twinport_cut {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n  iifname \"g1p\" oifname \"g2p\" drop\n  iifname \"g2p\" oifname \"g1p\" drop\n }\n}\n",
        )
    }

    pub fn heal_between_gateways(&self) -> anyhow::Result<()> {
        nft(&self.client(), "delete table bridge twinport_cut\n")
    }

    /// Which gateway host holds the virtual IP (both, in a split brain).
    pub fn vip_holders(&self) -> Vec<usize> {
        (0..2)
            .filter(|&i| {
                Command::new("ip")
                    .args(["-n", &self.gateway(i), "-br", "addr", "show", "dev", "eth0"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&VIP.to_string()))
            })
            .collect()
    }

    /// Moves the calling thread into the client namespace: sockets it
    /// opens, threads and processes it starts from now on live there.
    pub fn enter_client(&self) -> anyhow::Result<()> {
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.client()))?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)?;
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [self.client(), self.gateway(0), self.gateway(1)] {
            let _ = ip(&["netns", "del", &ns]);
        }
    }
}

/// Runs `f` on a thread of its own in the client namespace, with a tokio
/// runtime whose workers live there too.
pub fn in_client_namespace<T: Send + 'static>(
    net: &Net,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let path = format!("/var/run/netns/{}", net.client());
    std::thread::spawn(move || -> anyhow::Result<T> {
        let file = std::fs::File::open(&path)?;
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the client thread panicked"))?
}

/// One gateway host: its gateway (under the `ExecStopPost` shell) and its
/// keepalived.
pub struct GatewayHost {
    pub i: usize,
    pub ns: String,
    pub dir: PathBuf,
    pub gateway: Option<Proc>,
    pub keepalived: Option<Proc>,
}

impl GatewayHost {
    pub fn track_file(&self) -> PathBuf {
        self.dir.join("vrrp-track")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("gateway.pid")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("gateway.log")
    }

    /// The gateway's own pid (not the shell's).
    pub fn gateway_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Starts the gateway as its unit runs it: in its host's namespace,
    /// under a shell that marks the track file when the process ends other
    /// than cleanly (the unit's `ExecStopPost`), with `extra` arguments.
    fn spawn_unit(&self, bin_dir: &Path, what: &str, extra: &[&str]) -> Proc {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "sh", "-c"])
            .arg("\"$@\" || echo -254 > \"$TRACK\"")
            .arg("gateway-unit")
            .arg(bin_dir.join("gateway"))
            .arg("--config")
            .arg(self.dir.join("gateway.yaml"))
            .args(extra)
            .env("TRACK", self.track_file());
        Proc::spawn(
            &format!("gateway {}{what}", self.i + 1),
            cmd,
            Some(&self.log()),
        )
    }

    pub fn start_gateway(&mut self, bin_dir: &Path) {
        let _ = std::fs::remove_file(self.pid_file());
        self.gateway = Some(self.spawn_unit(bin_dir, "", &[]));
    }

    /// kill -9 of the gateway process: its "unit" notices, as systemd would.
    pub fn kill_gateway(&mut self) -> anyhow::Result<()> {
        let pid = self
            .gateway_pid()
            .context("the gateway wrote no pid file")?;
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        if let Some(mut p) = self.gateway.take() {
            let _ = p.wait_exit(Duration::from_secs(5));
        }
        Ok(())
    }

    /// The binary upgrade in place, as `gateway-upgrade.yml` does it: a new
    /// process with `--upgrade` takes the listening sockets over from the
    /// running one (SIGQUIT), which finishes its requests and exits; the
    /// VIP stays where it is.
    pub fn upgrade_gateway(&mut self, bin_dir: &Path) -> anyhow::Result<()> {
        let old_pid = self.gateway_pid().context("no running gateway")?;
        let old = self.gateway.take();
        self.gateway = Some(self.spawn_unit(bin_dir, " (upgraded)", &["--upgrade"]));
        // The new process waits on the upgrade socket for the old one's
        // listeners (its first health checks come first).
        std::thread::sleep(Duration::from_secs(1));
        Command::new("kill")
            .args(["-QUIT", &old_pid.to_string()])
            .status()?;
        let end = Instant::now() + Duration::from_secs(30);
        while self.gateway_pid() == Some(old_pid) || self.gateway_pid().is_none() {
            anyhow::ensure!(
                Instant::now() < end,
                "the new gateway did not take over; log:\n{}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(mut p) = old {
            let _ = p.wait_exit(Duration::from_secs(15));
        }
        Ok(())
    }

    pub fn start_keepalived(&mut self) {
        let d = &self.dir;
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.ns,
            "keepalived",
            "-n",
            "-l",
            "-D",
            "-f",
        ])
        .arg(d.join("keepalived.conf"))
        .arg("-p")
        .arg(d.join("keepalived.pid"))
        .arg("-r")
        .arg(d.join("vrrp.pid"))
        .arg("-c")
        .arg(d.join("checkers.pid"));
        self.keepalived = Some(Proc::spawn(
            &format!("keepalived {}", self.i + 1),
            cmd,
            Some(&d.join("keepalived.log")),
        ));
    }

    /// The whole host dies: keepalived and the gateway, kill -9.
    pub fn kill_host(&mut self) -> anyhow::Result<()> {
        if let Some(mut k) = self.keepalived.take() {
            k.signal("KILL");
            k.kill();
        }
        // keepalived's VRRP child has a pid file of its own.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("vrrp.pid")) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        self.kill_gateway()
    }
}

impl Drop for GatewayHost {
    fn drop(&mut self) {
        if let Some(k) = &mut self.keepalived {
            k.signal("TERM");
            let _ = k.wait_exit(Duration::from_secs(5));
        }
        if let (Some(pid), Some(_)) = (self.gateway_pid(), &self.gateway) {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
        if let Some(g) = &mut self.gateway {
            let _ = g.wait_exit(Duration::from_secs(5));
        }
    }
}

/// The running pair: twins, two gateway hosts, the virtual IP.
pub struct PairLab {
    pub gateways: [GatewayHost; 2],
    pub nodes: [Node; 2],
    pub database: String,
    pub bin_dir: PathBuf,
    client: reqwest::Client,
    // Last: removed once every process is gone.
    pub dir: TempDir,
}

/// The nftables table each gateway host loads (the ansible role's
/// `twinport-vip.nft`): a connection attempt to the VIP's proxy `ports`
/// that finds no listening socket is dropped, not reset. Between a
/// gateway's death and the VIP leaving its host the client's SYN goes
/// unanswered and is sent again a second later — to the new holder —
/// instead of failing at once with "connection refused".
pub fn vip_guard_nft(vip: Ipv4Addr, ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let ports = ports.join(", ");
    format!(
        "table inet twinport_vip {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip daddr {vip} tcp dport {{ {ports} }} tcp flags & (syn | ack) == syn socket transparent 0 accept
    ip daddr {vip} tcp dport {{ {ports} }} tcp flags & (syn | ack) == syn drop
  }}
}}
"
    )
}

/// The keepalived configuration of gateway host `i`, as the ansible role
/// writes it (`ansible/roles/keepalived/templates/keepalived.conf.j2`).
pub fn keepalived_conf(i: usize, dir: &Path) -> String {
    format!(
        "global_defs {{
    router_id gw{n}
    enable_script_security
    script_user root
    vrrp_version 3
}}

vrrp_script check_gateway {{
    script \"{dir}/check-gateway\"
    interval 1
    timeout 2
    fall 2
    rise 2
}}

vrrp_track_file gateway_track {{
    file \"{dir}/vrrp-track\"
    weight 1
}}

vrrp_instance twinport {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int {ADVERT_INT}
    nopreempt
    garp_lower_prio_repeat 3
    garp_master_refresh 1
    virtual_ipaddress {{
        {VIP}/24 dev eth0
    }}
    track_script {{
        check_gateway
    }}
    track_file {{
        gateway_track
    }}
    notify \"{dir}/notify-gateway\"
}}
",
        n = i + 1,
        dir = dir.display(),
        priority = 150 - 50 * i,
    )
}

fn gateway_yaml(lab_dir: &Path, i: usize, nodes: &[Node; 2]) -> String {
    let d = lab_dir.display();
    let g = lab_dir.join(format!("gw{}", i + 1));
    let g = g.display();
    let me = i + 1;
    let node = |n: &Node| {
        format!(
            "  - name: {}\n    address: {}\n    agent: {}\n    weight: 100\n",
            n.name, n.app, n.ready
        )
    };
    format!(
        "listeners:
  http: 0.0.0.0:{HTTP_PORT}
  metrics: 0.0.0.0:{METRICS_PORT}
  admin: {host}:{ADMIN_PORT}
admin:
  token_file: {d}/admin.token
  audit_log: {g}/audit.log
  tls:
    certificate: {d}/pki/gw{me}.crt
    key: {d}/pki/gw{me}.key
    client_ca: {d}/pki/ca.crt
watch_config: false
mode: active-standby
primary: a
nodes:
{a}{b}failback:
  preempt: false
timeouts:
  connect: 500ms
  read: 30s
  write: 30s
server:
  threads: 2
  grace_period: 2s
  graceful_shutdown_timeout: 5s
  pid_file: {g}/gateway.pid
  upgrade_socket: {g}/upgrade.sock
  state_file: {g}/operator-state.json
pair:
  name: gw{me}
  peer: https://{peer}:{ADMIN_PORT}
  token_file: {d}/pair.token
  ca: {d}/pki/ca.crt
  client_certificate: {d}/pki/gw{me}.crt
  client_key: {d}/pki/gw{me}.key
  sync_interval: 200ms
  start_timeout: 3s
  vrrp_track_file: {g}/vrrp-track
",
        host = host(i),
        peer = host(1 - i),
        a = node(&nodes[0]),
        b = node(&nodes[1]),
    )
}

fn write_script(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// keepalived's health check and notify hook for gateway host `i`, as the
/// ansible role installs them.
fn host_scripts(lab_dir: &Path, i: usize) -> anyhow::Result<()> {
    let g = lab_dir.join(format!("gw{}", i + 1));
    let d = lab_dir.display();
    write_script(
        &g.join("check-gateway"),
        &format!(
            "#!/bin/sh\nexec curl -fsS -o /dev/null --max-time 1 http://127.0.0.1:{METRICS_PORT}/healthz\n"
        ),
    )?;
    write_script(
        &g.join("notify-gateway"),
        &format!(
            "#!/bin/sh
# keepalived: notify TYPE NAME STATE PRIORITY
exec curl -fsS -o /dev/null --max-time 2 --cacert {d}/pki/ca.crt --cert {d}/pki/gw{me}.crt --key {d}/pki/gw{me}.key \\
  -H \"Authorization: Bearer $(cat {d}/admin.token)\" -H 'Content-Type: application/json' \\
  --data \"{{\\\"state\\\":\\\"$3\\\"}}\" https://{host}:{ADMIN_PORT}/v1/pair/vrrp
",
            me = i + 1,
            host = host(i),
        ),
    )?;
    Ok(())
}

impl PairLab {
    /// Starts the twins (in the calling thread's namespace: call it from
    /// [`in_client_namespace`]), both gateways and both keepalived, and
    /// returns once gateway 1 holds the virtual IP, both gateways see both
    /// twins up and every desk is open.
    pub async fn start(net: &Net, bin_dir: &Path) -> anyhow::Result<PairLab> {
        let dir = TempDir::new("pair-lab");
        let d = dir.path().to_path_buf();
        for (file, token) in [
            ("admin.token", ADMIN_TOKEN),
            ("agent.token", appliance::AGENT_TOKEN),
            ("kiosk.token", appliance::KIOSK_TOKEN),
            ("desk.token", DESK_TOKEN),
            ("manager.token", appliance::MANAGER_TOKEN),
            ("pair.token", PAIR_TOKEN),
        ] {
            write_secret(&d.join(file), token);
        }
        let names = |i: usize| vec![host(i).to_string()];
        devtools::write_test_pki(
            &d.join("pki"),
            &[
                ("gw1", &names(0)[..]),
                ("gw2", &names(1)[..]),
                ("operator", &["localhost".to_string()][..]),
            ],
        )?;
        let opts = Options {
            bin_dir: bin_dir.to_path_buf(),
            store: Store::Sqlite(None),
            health: Default::default(),
            proxied: false,
        };
        let database = format!("sqlite://{}", d.join("ticketing.db").display());
        let public = SocketAddr::new(VIP.into(), HTTP_PORT);
        // The agents ask both gateways whether they still route to the
        // node (mutual TLS, the operator's certificate).
        let link = format!(
            "gateway:\n  admin: [https://{}:{ADMIN_PORT}, https://{}:{ADMIN_PORT}]\n  token_file: {d}/admin.token\n  ca: {d}/pki/ca.crt\n  client_certificate: {d}/pki/operator.crt\n  client_key: {d}/pki/operator.key\n",
            host(0),
            host(1),
            d = d.display()
        );
        let mut nodes = Vec::new();
        for name in ["a", "b"] {
            let node = appliance::install_node(
                &d,
                name,
                &opts,
                &database,
                IpAddr::V4(BRIDGE),
                public,
                &link,
            )
            .await?;
            nodes.push(node);
        }
        let nodes: [Node; 2] = nodes.try_into().ok().expect("two nodes");
        let gateways = [0, 1].map(|i| GatewayHost {
            i,
            ns: net.gateway(i),
            dir: d.join(format!("gw{}", i + 1)),
            gateway: None,
            keepalived: None,
        });
        for (i, g) in gateways.iter().enumerate() {
            std::fs::create_dir_all(&g.dir)?;
            std::fs::write(g.dir.join("gateway.yaml"), gateway_yaml(&d, i, &nodes))?;
            std::fs::write(g.dir.join("keepalived.conf"), keepalived_conf(i, &g.dir))?;
            host_scripts(&d, i)?;
        }
        let pem = |f: &str| std::fs::read(d.join("pki").join(f));
        let mut identity = pem("operator.crt")?;
        identity.extend(pem("operator.key")?);
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem("ca.crt")?)?)
            .identity(reqwest::Identity::from_pem(&identity)?)
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()?;
        let mut lab = PairLab {
            gateways,
            nodes,
            database,
            bin_dir: bin_dir.to_path_buf(),
            client,
            dir,
        };
        for n in 0..2 {
            lab.nodes[n].start_agent(bin_dir)?;
        }
        // Gateway 1 first, with its keepalived: it takes the address.
        for i in 0..2 {
            lab.gateways[i].start_gateway(bin_dir);
            lab.wait_serving(i, Duration::from_secs(30)).await?;
            lab.gateways[i].start_keepalived();
            if i == 0 {
                lab.wait_vip(net, 0, Duration::from_secs(10)).await?;
            }
        }
        for i in 0..2 {
            lab.wait_vrrp(i, ["MASTER", "BACKUP"][i], Duration::from_secs(10))
                .await?;
        }
        appliance::open_desks(&lab.client, &lab.base()).await?;
        Ok(lab)
    }

    /// `twinctl` against both gateways (mutual TLS, operator token): its
    /// exit code and output.
    pub fn twinctl(&self, args: &[&str]) -> (Option<i32>, String) {
        let d = self.dir.path();
        let mut cmd = Command::new(self.bin_dir.join("twinctl"));
        cmd.arg("--admin")
            .arg(format!(
                "https://{}:{ADMIN_PORT},https://{}:{ADMIN_PORT}",
                host(0),
                host(1)
            ))
            .arg("--ca-cert")
            .arg(d.join("pki/ca.crt"))
            .arg("--client-cert")
            .arg(d.join("pki/operator.crt"))
            .arg("--client-key")
            .arg(d.join("pki/operator.key"))
            .arg("--token-file")
            .arg(d.join("admin.token"))
            .env_remove("TWINPORT_ADMIN")
            .env_remove("TWINPORT_TOKEN")
            .args(args);
        appliance::exit_and_output(cmd, "twinctl")
    }

    /// A URL on the virtual IP.
    pub fn url(&self, path: &str) -> String {
        format!("http://{VIP}:{HTTP_PORT}{path}")
    }

    pub fn base(&self) -> String {
        self.url("")
    }

    /// An admin call to gateway `i` (mutual TLS, operator token).
    pub async fn admin_call(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .client
            .request(
                method.parse()?,
                format!("https://{}:{ADMIN_PORT}{path}", host(i)),
            )
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let code = r.status().as_u16();
        Ok((code, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn status(&self, i: usize) -> anyhow::Result<Value> {
        Ok(self.admin_call(i, "GET", "/v1/status", None).await?.1)
    }

    /// Polls gateway `i`'s status until `done` holds (or `timeout`).
    pub async fn wait_status(
        &self,
        i: usize,
        timeout: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let end = Instant::now() + timeout;
        loop {
            let s = self.status(i).await.unwrap_or(Value::Null);
            if done(&s) {
                return Ok(s);
            }
            if Instant::now() >= end {
                bail!(
                    "gateway {} did not get there in {timeout:?}; status: {s}",
                    i + 1
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Gateway `i` answers its admin API and sees both twins up.
    pub async fn wait_serving(&self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let up = |s: &Value| {
            ["a", "b"]
                .iter()
                .all(|n| appliance::node_field(s, n, "health") == Some("up"))
        };
        self.wait_status(i, timeout, up)
            .await
            .map(|_| ())
            .with_context(|| {
                format!(
                    "gateway {} log:\n{}",
                    i + 1,
                    std::fs::read_to_string(self.gateways[i].log()).unwrap_or_default()
                )
            })
    }

    /// Gateway `i` reports the VRRP state keepalived told it.
    pub async fn wait_vrrp(&self, i: usize, state: &str, timeout: Duration) -> anyhow::Result<()> {
        self.wait_status(i, timeout, |s| s["vrrp"] == state)
            .await
            .map(|_| ())
    }

    /// Host `i` holds the virtual IP (and only it).
    pub async fn wait_vip(&self, net: &Net, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + timeout;
        while net.vip_holders() != vec![i] {
            if Instant::now() >= end {
                bail!(
                    "host {} does not hold {VIP} after {timeout:?} (holders: {:?}); keepalived log:\n{}",
                    i + 1,
                    net.vip_holders(),
                    std::fs::read_to_string(self.gateways[i].dir.join("keepalived.log"))
                        .unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// Waits until exactly host `i` holds the VIP; the time it took, measured
/// from `since` (polled every 5 ms), or `None` after `timeout`.
pub fn time_vip_move(net: &Net, i: usize, since: Instant, timeout: Duration) -> Option<Duration> {
    loop {
        if net.vip_holders() == vec![i] {
            return Some(since.elapsed());
        }
        if since.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How a kill of the MASTER gateway went: when it was killed and how long
/// the VIP took to move, both from the load's start.
#[derive(Debug, Clone, Copy)]
pub struct Kill {
    pub at: Duration,
    pub moved: Duration,
}

/// Failed requests against the kills: `[on a connection to the gateway
/// that died (in flight at a kill, or sent on such a connection before
/// the client saw it close), a new connection refused between a kill and
/// the VIP's move, anything after the move]`.
pub fn classify_failures(records: &[crate::load::Record], kills: &[Kill]) -> [usize; 3] {
    let mut out = [0; 3];
    for r in records.iter().filter(|r| !r.ok) {
        let in_flight = kills.iter().any(|k| r.start <= k.at && r.end() >= k.at);
        let gap = kills
            .iter()
            .any(|k| r.start >= k.at && r.start < k.at + k.moved);
        let refused = r.failure.as_deref() == Some("connect");
        out[if in_flight || (gap && !refused) {
            0
        } else if gap {
            1
        } else {
            2
        }] += 1;
    }
    out
}

/// Waits (polling every 5 ms, up to 5 s) until exactly host `i` holds the
/// VIP; how long that took since `since`.
pub async fn vip_moves_to(net: &Net, i: usize, since: Instant) -> Option<Duration> {
    while since.elapsed() < Duration::from_secs(5) {
        if net.vip_holders() == vec![i] {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

impl PairLab {
    /// kill -9 of the gateway holding the VIP, once the other is BACKUP
    /// and in step with it; returns when the VIP has moved, with the kill
    /// measured against `t0`. The killed gateway is started again and
    /// waited for as BACKUP (what systemd's `Restart=` does).
    pub async fn kill_master(&mut self, net: &Net, t0: Instant) -> anyhow::Result<Kill> {
        let holders = net.vip_holders();
        anyhow::ensure!(holders.len() == 1, "VIP holders: {holders:?}");
        let (dead, next) = (holders[0], 1 - holders[0]);
        self.wait_status(next, Duration::from_secs(10), |s| {
            s["vrrp"] == "BACKUP" && s["pair"]["peer"]["reachable"] == true
        })
        .await?;
        let t = Instant::now();
        let at = t0.elapsed();
        self.gateways[dead].kill_gateway()?;
        let moved = vip_moves_to(net, next, t)
            .await
            .ok_or_else(|| anyhow::anyhow!("the VIP did not move to host {}", next + 1))?;
        self.wait_vrrp(next, "MASTER", Duration::from_secs(5))
            .await?;
        self.gateways[dead].start_gateway(&self.bin_dir);
        self.wait_serving(dead, Duration::from_secs(30)).await?;
        self.wait_vrrp(dead, "BACKUP", Duration::from_secs(10))
            .await?;
        Ok(Kill { at, moved })
    }
}
