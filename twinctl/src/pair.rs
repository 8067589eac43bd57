//! `twinctl` against a gateway pair: several admin URLs.
//!
//! `status` asks each gateway and shows, above the node table of the one
//! holding the virtual IP, one line per gateway (its name, VRRP state,
//! primary, whether it reaches its peer) and whether their views agree.
//! A change goes to each gateway in turn and is reported per gateway; a
//! gateway that cannot be reached is said so, and the change still holds
//! on the pair once it comes back (the gateways keep their operator state
//! in step), so that alone is no failure.

use crate::{change_call, describe_change, render_status, s, table, Api, Cli, Command, Failure};
use serde_json::Value;

/// The gateways named on the command line (`--admin`, repeated or
/// comma-separated) or in `--gateways FILE`.
pub fn gateways(cli: &Cli) -> Result<Vec<Api>, Failure> {
    let urls: Vec<String> = match &cli.gateways {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        None => cli
            .admin
            .iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect(),
    };
    if urls.is_empty() {
        return Err(Failure::Usage("no gateway admin URL given".into()));
    }
    urls.iter().map(|u| Api::gateway(cli, u)).collect()
}

/// The gateway to drive a procedure through: the one holding the virtual
/// IP, else the first that answers.
pub fn serving(gateways: &[Api]) -> Result<&Api, Failure> {
    if gateways.len() == 1 {
        return Ok(&gateways[0]);
    }
    let views: Vec<_> = gateways.iter().map(|g| g.get("/v1/status")).collect();
    let master = views
        .iter()
        .position(|v| v.as_ref().is_ok_and(|v| v["vrrp"] == "MASTER"));
    let first = views.iter().position(Result::is_ok);
    match master.or(first) {
        Some(i) => Ok(&gateways[i]),
        None => Err(Failure::Unreachable(
            "no gateway of the pair answers".into(),
        )),
    }
}

pub fn run(gateways: &[Api], command: &Command) -> Result<(), Failure> {
    match command {
        Command::Status { json } => {
            let views: Vec<(String, Result<Value, String>)> = gateways
                .iter()
                .map(|g| {
                    (
                        g.base().to_string(),
                        g.get("/v1/status").map_err(|f| why(&f)),
                    )
                })
                .collect();
            if views.iter().all(|(_, v)| v.is_err()) {
                return Err(Failure::Unreachable(render_pair(&views)));
            }
            if *json {
                let all: Vec<Value> = views
                    .iter()
                    .map(|(url, v)| match v {
                        Ok(v) => serde_json::json!({ "gateway": url, "status": v }),
                        Err(e) => serde_json::json!({ "gateway": url, "error": e }),
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
            } else {
                print!("{}", render_pair(&views));
            }
            Ok(())
        }
        change => {
            let (path, body) = change_call(change);
            let mut applied = 0;
            let mut refused = None;
            for g in gateways {
                match g.post(&path, body.clone()) {
                    Ok(v) => {
                        applied += 1;
                        println!("{}: {}", g.base(), describe_change(change, &v));
                    }
                    Err(Failure::Unreachable(e)) => {
                        println!("{}: not reached ({e}); it takes the change from its peer when it is back", g.base());
                    }
                    Err(f) => {
                        println!("{}: {}", g.base(), why(&f));
                        refused.get_or_insert(f);
                    }
                }
            }
            match (refused, applied) {
                (Some(f), _) => Err(f),
                (None, 0) => Err(Failure::Unreachable(
                    "no gateway of the pair answers".into(),
                )),
                _ => Ok(()),
            }
        }
    }
}

fn why(f: &Failure) -> String {
    match f {
        Failure::Refused(m) => format!("refused: {m}"),
        Failure::Unreachable(m) => format!("not reached: {m}"),
        Failure::Unauthorized => "unauthorized: check the token".into(),
        Failure::UnknownNode(m) | Failure::Usage(m) => m.clone(),
    }
}

/// What each gateway says of the nodes, for comparing views: primary and
/// each node's health, admin state and role.
fn view(v: &Value) -> Vec<String> {
    let mut out = vec![format!("primary {}", s(&v["primary"]))];
    for n in v["nodes"].as_array().into_iter().flatten() {
        out.push(format!(
            "{} {} {} {}",
            s(&n["name"]),
            s(&n["health"]),
            s(&n["admin"]),
            s(&n["role"])
        ));
    }
    out
}

/// One line per gateway, whether they agree, then the node table of the
/// gateway holding the virtual IP (or the first that answered).
pub fn render_pair(views: &[(String, Result<Value, String>)]) -> String {
    let mut rows = vec![["GATEWAY", "NAME", "VRRP", "PRIMARY", "PEER", "SAME STATE"]
        .map(String::from)
        .to_vec()];
    for (url, v) in views {
        match v {
            Ok(v) => {
                let peer = &v["pair"]["peer"];
                rows.push(vec![
                    url.clone(),
                    s(&v["pair"]["name"]),
                    s(&v["vrrp"]),
                    s(&v["primary"]),
                    match peer["reachable"].as_bool() {
                        Some(true) => "reachable".into(),
                        Some(false) => "NOT REACHABLE".into(),
                        None => "-".into(),
                    },
                    match peer["same_state"].as_bool() {
                        Some(true) => "yes".into(),
                        Some(false) => "NO".into(),
                        None => "-".into(),
                    },
                ]);
            }
            Err(e) => rows.push(vec![
                url.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("unreachable: {e}"),
                "-".into(),
            ]),
        }
    }
    let mut out = table(&rows);
    let answered: Vec<&Value> = views.iter().filter_map(|(_, v)| v.as_ref().ok()).collect();
    let masters = answered.iter().filter(|v| v["vrrp"] == "MASTER").count();
    let agree = answered.windows(2).all(|w| view(w[0]) == view(w[1]));
    out.push('\n');
    out.push_str(&match (answered.len(), agree) {
        (n, _) if n < views.len() => "views: not every gateway answered\n".to_string(),
        (_, true) => "views agree: same primary, same node states\n".to_string(),
        (_, false) => {
            "VIEWS DIFFER: the gateways disagree on the primary or a node's state\n".to_string()
        }
    });
    if masters > 1 {
        out.push_str("SPLIT BRAIN: more than one gateway holds the virtual IP\n");
    }
    let shown = answered
        .iter()
        .find(|v| v["vrrp"] == "MASTER")
        .or(answered.first());
    if let Some(v) = shown {
        out.push_str(&format!(
            "\nnodes as {} sees them:\n{}",
            s(&v["pair"]["name"]),
            render_status(v)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gw(name: &str, vrrp: &str, primary: &str, a_admin: &str) -> Value {
        json!({
            "mode": "active-standby", "primary": primary, "config_generation": 1, "config_file": "g.yaml",
            "vrrp": vrrp,
            "pair": {"name": name, "peer": {"reachable": true, "same_state": true}},
            "nodes": [
                {"name": "a", "role": "primary", "health": "up", "state": "ready", "admin": a_admin,
                 "weight": 100, "effective_weight": 100, "inflight": 0, "version": "1"},
                {"name": "b", "role": "standby", "health": "up", "state": "ready", "admin": "active",
                 "weight": 100, "effective_weight": 100, "inflight": 0, "version": "1"}
            ],
            "transitions": []
        })
    }

    #[test]
    fn the_pair_shows_each_gateway_and_whether_they_agree() {
        let views = vec![
            (
                "https://gw1:9180".to_string(),
                Ok(gw("gw1", "MASTER", "a", "active")),
            ),
            (
                "https://gw2:9180".to_string(),
                Ok(gw("gw2", "BACKUP", "a", "active")),
            ),
        ];
        let t = render_pair(&views);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("GATEWAY"), "{t}");
        assert!(
            lines[1].starts_with("https://gw1:9180  gw1   MASTER  a"),
            "{t}"
        );
        assert!(
            lines[2].contains("BACKUP") && lines[2].contains("reachable"),
            "{t}"
        );
        assert!(t.contains("views agree"), "{t}");
        assert!(t.contains("nodes as gw1 sees them"), "{t}");

        let views = vec![
            (
                "https://gw1:9180".to_string(),
                Ok(gw("gw1", "MASTER", "a", "drain")),
            ),
            (
                "https://gw2:9180".to_string(),
                Ok(gw("gw2", "MASTER", "a", "active")),
            ),
        ];
        let t = render_pair(&views);
        assert!(t.contains("VIEWS DIFFER"), "{t}");
        assert!(t.contains("SPLIT BRAIN"), "{t}");

        let views = vec![
            (
                "https://gw1:9180".to_string(),
                Err("connection refused".to_string()),
            ),
            (
                "https://gw2:9180".to_string(),
                Ok(gw("gw2", "MASTER", "b", "active")),
            ),
        ];
        let t = render_pair(&views);
        assert!(t.contains("unreachable: connection refused"), "{t}");
        assert!(t.contains("not every gateway answered"), "{t}");
        assert!(t.contains("nodes as gw2 sees them"), "{t}");
    }
}
