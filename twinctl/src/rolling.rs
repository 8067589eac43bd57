//! `twinctl rolling-upgrade`: both twins upgraded one at a time while the
//! portal serves, through the gateway's admin API and each node's agent.
//!
//! For each node, the standby first (so the primary role moves once):
//!
//! ```text
//! 1 switch traffic away   POST gateway /v1/switchover {"to": twin}   (if the node is primary)
//! 2 drain                 POST gateway /v1/nodes/N/drain
//! 3 wait for in-flight    gateway status: the node has 0 requests in flight
//!                         (and its soft drain is over)
//! 4 upgrade               POST agent /v1/upgrade; every step of the agent shown as it happens
//! 5 verify                agent: ready on the new version; gateway: the node is up on it
//! 6 undrain               POST gateway /v1/nodes/N/undrain
//! ```
//!
//! The first failure stops the roll-out: the agent has rolled the node
//! back, the node stays drained at the gateway, traffic stays on its twin,
//! and twinctl says why (exit code 1). A node already on the version is
//! skipped, so the command can be run again after a fix.
//!
//! With session affinity on (the gateway's `affinity.mode`), step 1 is
//! left out and step 2 is a soft drain: new visitors go to the twin at once
//! (in active-standby the drained primary hands its role over), visitors
//! with a session on the node finish there, and step 3 also waits until
//! their requests stop or the gateway's `affinity.drain_timeout` passes.

use crate::{Api, Failure};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The new release: an executable or a directory, present at this path on every node.
    #[arg(long)]
    release: PathBuf,
    /// The new release's version.
    #[arg(long)]
    version: String,
    /// A node's agent control API, as NODE=URL (once per node).
    #[arg(long = "agent", value_name = "NODE=URL", required = true)]
    agents: Vec<String>,
    /// File holding the agents' control token.
    #[arg(long, env = "TWINPORT_AGENT_TOKEN_FILE")]
    agent_token_file: PathBuf,
    /// How long each waiting step may take.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    step_timeout: Duration,
}

/// Prints one line per step, with the time it took.
struct Progress {
    started: Instant,
}

impl Progress {
    fn line(&self, node: &str, text: &str) {
        println!(
            "[{:>6.1}s] node {node}: {text}",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn step<T>(
        &self,
        node: &str,
        n: usize,
        name: &str,
        f: impl FnOnce() -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let t = Instant::now();
        self.line(node, &format!("[{n}/6] {name} …"));
        let r = f();
        let took = t.elapsed().as_secs_f64();
        match &r {
            Ok(_) => self.line(node, &format!("[{n}/6] {name}: done in {took:.1}s")),
            Err(_) => self.line(node, &format!("[{n}/6] {name}: FAILED after {took:.1}s")),
        }
        r
    }
}

fn s_u64(v: Option<u64>) -> String {
    v.map_or("?".into(), |n| n.to_string())
}

fn node_of<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == name)
}

/// Polls `check` every 100 ms until it gives a value or `timeout` passes;
/// the error then says what was last seen.
fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Result<T, String>, Failure>,
) -> Result<T, Failure> {
    let end = Instant::now() + timeout;
    loop {
        match check()? {
            Ok(v) => return Ok(v),
            Err(seen) if Instant::now() >= end => {
                return Err(Failure::Refused(format!(
                    "{what} did not happen within {}: {seen}",
                    humantime::format_duration(timeout)
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

pub fn run(gw: &Api, args: &Args) -> Result<(), Failure> {
    let release = std::fs::canonicalize(&args.release)
        .map_err(|e| Failure::Usage(format!("release {}: {e}", args.release.display())))?;
    let token = crate::read_token_file(&args.agent_token_file)?;
    let mut agents = Vec::new();
    for a in &args.agents {
        let (node, url) = a
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("--agent {a}: expected NODE=URL")))?;
        agents.push((node.to_string(), Api::new(url, token.clone())?));
    }

    // Preflight: every node known to the gateway, healthy, with an agent.
    let status = gw.get("/v1/status")?;
    let names: Vec<String> = status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect();
    for n in &names {
        let Some(node) = node_of(&status, n) else {
            continue;
        };
        if !agents.iter().any(|(a, _)| a == n) {
            return Err(Failure::Usage(format!("no --agent given for node {n}")));
        }
        if node["health"] != "up" {
            return Err(Failure::Refused(format!(
                "node {n} is {}: both twins must be healthy before a rolling upgrade",
                node["health"].as_str().unwrap_or("unknown")
            )));
        }
    }
    for (a, _) in &agents {
        if !names.contains(a) {
            return Err(Failure::UnknownNode(format!("the gateway has no node {a}")));
        }
    }
    // The standby first: the primary role then moves only once.
    let primary = status["primary"].as_str().map(str::to_string);
    agents.sort_by_key(|(n, _)| Some(n) == primary.as_ref());

    let p = Progress {
        started: Instant::now(),
    };
    println!(
        "rolling upgrade to {} from {} over {} (order: {})",
        args.version,
        release.display(),
        names.join(", "),
        agents
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (node, agent) in &agents {
        let twin = names
            .iter()
            .find(|n| *n != node)
            .cloned()
            .unwrap_or_default();
        let current = agent.get("/v1/status")?;
        if current["version"] == args.version.as_str() && current["state"] == "ready" {
            p.line(node, &format!("already on {}, skipped", args.version));
            continue;
        }
        upgrade_node(gw, agent, node, &twin, &release, args, &p).map_err(|f| match f {
            Failure::Refused(why) => Failure::Refused(format!(
                "roll-out stopped at node {node}: {why}\n\
                 node {node} stays drained at the gateway and traffic is on {twin}; \
                 once it is checked, `twinctl undrain {node}` puts it back"
            )),
            other => other,
        })?;
    }
    println!(
        "rolling upgrade done in {:.1}s: every node runs {}",
        p.started.elapsed().as_secs_f64(),
        args.version
    );
    Ok(())
}

/// Steps 1 to 3: traffic away from `node` and drained at the gateway (a
/// soft drain with session affinity), nothing in flight on it any more.
fn take_out_of_service(
    gw: &Api,
    node: &str,
    twin: &str,
    args: &Args,
    p: &Progress,
) -> Result<(), Failure> {
    let timeout = args.step_timeout;
    let status = gw.get("/v1/status")?;
    let sticky = !status["affinity"].is_null() && status["affinity"]["mode"] != "none";
    let soft_timeout =
        Duration::from_secs(status["affinity"]["drain_timeout_s"].as_u64().unwrap_or(0));
    p.step(node, 1, &format!("switch traffic away (to {twin})"), || {
        if sticky {
            p.line(
                node,
                "      session affinity is on: the soft drain moves new visitors instead",
            );
            return Ok(());
        }
        let s = gw.get("/v1/status")?;
        if s["mode"] == "active-standby" && s["primary"] == node {
            gw.post("/v1/switchover", Some(json!({ "to": twin })))?;
        }
        Ok(())
    })?;
    let drain = if sticky {
        "soft drain at the gateway (sessions finish)"
    } else {
        "drain at the gateway"
    };
    p.step(node, 2, drain, || {
        let q = if sticky { "?soft=true" } else { "" };
        gw.post(&format!("/v1/nodes/{node}/drain{q}"), None)
            .map(|_| ())
    })?;
    let wait = if sticky {
        "wait until the node's sessions end and no request is in flight"
    } else {
        "wait until no request is in flight"
    };
    p.step(node, 3, wait, || {
        let mut shown = None;
        wait_until(timeout + soft_timeout, "the drain", || {
            let s = gw.get("/v1/status")?;
            let n = node_of(&s, node).cloned().unwrap_or_default();
            if !n["soft_drain"].is_null() {
                let sessions = n["sessions"].as_u64();
                if shown != sessions {
                    p.line(
                        node,
                        &format!("      {} sessions still on the node", s_u64(sessions)),
                    );
                    shown = sessions;
                }
                return Ok(Err(format!(
                    "soft drain: {} sessions on the node",
                    s_u64(sessions)
                )));
            }
            Ok(match n["inflight"].as_i64() {
                Some(0) => Ok(()),
                other => Err(format!("{other:?} requests in flight")),
            })
        })
    })?;
    Ok(())
}

fn upgrade_node(
    gw: &Api,
    agent: &Api,
    node: &str,
    twin: &str,
    release: &std::path::Path,
    args: &Args,
    p: &Progress,
) -> Result<(), Failure> {
    let timeout = args.step_timeout;
    take_out_of_service(gw, node, twin, args, p)?;
    p.step(
        node,
        4,
        &format!("upgrade to {} through the agent", args.version),
        || {
            agent.post(
                "/v1/upgrade",
                Some(json!({ "release": release, "version": args.version })),
            )?;
            let mut shown = 0;
            let record = wait_until(timeout, "the upgrade", || {
                let u = agent.get("/v1/upgrade")?;
                let steps = u["steps"].as_array().cloned().unwrap_or_default();
                for s in steps.iter().skip(shown) {
                    p.line(
                        node,
                        &format!(
                            "      agent: {} {} — {}",
                            s["step"].as_str().unwrap_or("?"),
                            s["result"].as_str().unwrap_or("?"),
                            s["detail"].as_str().unwrap_or("")
                        ),
                    );
                }
                shown = steps.len();
                Ok(if u["result"] == "running" {
                    Err("still running".to_string())
                } else {
                    Ok(u)
                })
            })?;
            if record["result"] == "succeeded" {
                Ok(())
            } else {
                Err(Failure::Refused(format!(
                    "the upgrade to {} ended {}: {}",
                    args.version,
                    record["result"].as_str().unwrap_or("?"),
                    record["error"].as_str().unwrap_or("no details")
                )))
            }
        },
    )?;
    p.step(
        node,
        5,
        "verify (agent ready, gateway sees the node up on the new version)",
        || {
            wait_until(timeout, "the verification", || {
                let a = agent.get("/v1/status")?;
                let g = gw.get("/v1/status")?;
                let n = node_of(&g, node).cloned().unwrap_or_default();
                let seen = format!(
                    "agent {} on {}, gateway health {} on {}",
                    a["state"], a["version"], n["health"], n["version"]
                );
                Ok(
                    if a["state"] == "ready"
                        && a["version"] == args.version.as_str()
                        && n["health"] == "up"
                        && n["version"] == args.version.as_str()
                    {
                        Ok(())
                    } else {
                        Err(seen)
                    },
                )
            })
        },
    )?;
    p.step(node, 6, "undrain at the gateway", || {
        gw.post(&format!("/v1/nodes/{node}/undrain"), None)?;
        wait_until(timeout, "the undrain", || {
            let s = gw.get("/v1/status")?;
            let n = node_of(&s, node).cloned().unwrap_or_default();
            Ok(if n["eligible"] == true {
                Ok(())
            } else {
                Err(format!("eligible {}", n["eligible"]))
            })
        })
    })
}
