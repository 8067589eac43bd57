// Twinport status page: polls GET /v1/status every second with the admin
// token and redraws; no page reload is ever needed. The token comes from
// the URL fragment (#token=..., never sent to the server) or the form, and
// stays in this tab's sessionStorage.
"use strict";
(function () {
  const KEY = "twinport-admin-token";
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem(KEY, fromHash);
    history.replaceState(null, "", location.pathname);
  }
  const $ = (id) => document.getElementById(id);
  window.twinportLoadedAt = Date.now();
  let previous = null;

  function text(tag, value, cls) {
    const el = document.createElement(tag);
    el.textContent = value === null || value === undefined ? "–" : String(value);
    if (cls) el.className = cls;
    return el;
  }

  function rate(node, now) {
    if (!previous) return "–";
    const before = previous.nodes.find((n) => n.name === node.name);
    if (!before || !before.requests || !node.requests) return "–";
    const dt = (now.at - previous.at) / 1000;
    const total = (r) => Object.values(r).reduce((a, b) => a + b, 0);
    const reqs = (total(node.requests) - total(before.requests)) / dt;
    const errs = ((node.requests["5xx"] || 0) - (before.requests["5xx"] || 0)) / dt;
    return reqs.toFixed(1) + " req/s, " + errs.toFixed(1) + " 5xx/s";
  }

  function drawNode(n, status) {
    const card = document.createElement("article");
    const health = n.health === "up" ? (n.eligible ? "up" : "out") : n.health === "down" ? "down" : "";
    card.className = "node " + health;
    card.id = "node-" + n.name;
    const h = text("h2", "node " + n.name);
    h.appendChild(text("span", n.role, "badge " + n.role));
    card.appendChild(h);
    const dl = document.createElement("dl");
    const rows = [
      ["health", n.health],
      ["state", n.soft_drain ? n.state + " (soft drain until " + n.soft_drain.until + ")" : n.state],
      ["admin", n.admin],
      ["weight", n.effective_weight + " / " + n.weight], ["in flight", n.inflight],
      ["traffic", rate(n, status)],
      ["sessions", status.affinity && status.affinity.mode !== "none" ? n.sessions : null],
      ["version", n.version],
      ["address", n.address + " (agent " + n.agent + ")"],
      ["last check", n.last_check ? n.last_check.result + " — " + n.last_check.detail : null],
      ["last change", n.last_transition ? n.last_transition.event + " — " + n.last_transition.reason : null],
    ];
    for (const [k, v] of rows) {
      dl.appendChild(text("dt", k));
      dl.appendChild(text("dd", v));
    }
    card.appendChild(dl);
    const hist = document.createElement("div");
    hist.className = "history";
    hist.title = "last readiness checks, oldest first";
    for (const r of n.history || []) hist.appendChild(text("i", "", r));
    card.appendChild(hist);
    return card;
  }

  function draw(status) {
    $("mode").textContent = status.mode;
    $("primary").textContent = status.primary || (status.mode === "active-active" ? "both active" : "none");
    $("generation").textContent = status.config_generation;
    const aff = status.affinity || { mode: "none" };
    $("affinity").textContent = aff.mode;
    $("affinity").title = aff.note || "";
    // The gateway pair: this gateway's VRRP state and its peer.
    const pair = status.pair;
    let gw = status.vrrp === "UNKNOWN" ? "single" : status.vrrp;
    if (pair) {
      const peer = pair.peer || {};
      gw = pair.name + " " + status.vrrp + " · peer " + (peer.name || peer.url) + " " +
        (peer.reachable ? (peer.vrrp || "") + (peer.same_state ? ", in step" : ", NOT in step") : "NOT REACHABLE");
    }
    $("vrrp").textContent = gw;
    $("vrrp").className = pair && !(pair.peer || {}).reachable ? "error" : "";
    $("updated").textContent = "updated " + new Date(status.at).toLocaleTimeString();
    const nodes = $("nodes");
    nodes.replaceChildren(...status.nodes.map((n) => drawNode(n, status)));
    const rows = status.transitions.map((t) => {
      const tr = document.createElement("tr");
      tr.append(text("td", t.at), text("td", t.node), text("td", t.event), text("td", t.reason));
      return tr;
    });
    $("transitions").replaceChildren(...rows);
  }

  async function poll() {
    const token = sessionStorage.getItem(KEY);
    if (!token) {
      $("login").hidden = false;
      return;
    }
    try {
      const r = await fetch("/v1/status", { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
      if (r.status === 401) {
        sessionStorage.removeItem(KEY);
        $("error").textContent = "The token was refused.";
        $("error").hidden = false;
        $("login").hidden = false;
        return;
      }
      const status = await r.json();
      status.at = Date.now();
      draw(status);
      previous = status;
      $("error").hidden = true;
    } catch (e) {
      $("error").textContent = "Cannot reach the gateway: " + e;
      $("error").hidden = false;
    }
    setTimeout(poll, 1000);
  }

  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("login").hidden = true;
    poll();
  });
  poll();
})();
