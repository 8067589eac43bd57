// Twinport ticketing pages: kiosk, board, desk, tracking, statistics.
// One script; the page kind is <body data-page>. No framework: the DOM is
// built with textContent only, so no data is ever parsed as HTML.
"use strict";

const LANG = new URLSearchParams(location.search).get("lang") === "en" ? "en" : "pl";
const T = {
  pl: {
    take: "Pobierz numerek", booking: "Mam rezerwację", code: "Kod rezerwacji", checkin: "Potwierdź przybycie",
    your: "Twój numer", ahead: "Przed Tobą", wait: "Szacowany czas oczekiwania", min: "min", print: "Drukuj",
    done: "Gotowe", waiting: "oczekuje", closed: "Oddział jest teraz zamknięty", priority: "Pierwszeństwo",
    none: "Brak", board: "Zapraszamy", desk: "Stanowisko", number: "Numer", sound: "Włącz dźwięk",
    callNext: "Wezwij następny", recall: "Wezwij ponownie", start: "Rozpocznij obsługę", finish: "Zakończ",
    noShow: "Nie przyszedł", transfer: "Przekaż", open: "Otwórz stanowisko", close: "Zamknij stanowisko",
    current: "Obsługiwany", nobody: "Nikt nie czeka", token: "Token", save: "Zapisz", calledTo: "Zapraszamy do stanowiska",
    status: { waiting: "Oczekuje", called: "Wezwany", serving: "W obsłudze", done: "Obsłużony", no_show: "Nieobecny", not_served: "Nieobsłużony (dzień zamknięty)" },
    stats: "Statystyki", service: "Usługa", issued: "Wydane", served: "Obsłużone", noShows: "Nieobecni",
    meanWait: "Śr. oczekiwanie", maxWait: "Maks. oczekiwanie", meanService: "Śr. obsługa", within: "W celu", hour: "Godzina",
    error: "Błąd", retry: "Spróbuj ponownie", qr: "Zeskanuj, aby śledzić kolejkę", lang: "English",
    noDesk: "Żadne stanowisko tej usługi nie jest teraz otwarte", notServed: "Nieobsłużeni", dayClosed: "Dzień zamknięty",
  },
  en: {
    take: "Take a number", booking: "I have a booking", code: "Booking code", checkin: "Check in",
    your: "Your number", ahead: "Before you", wait: "Estimated wait", min: "min", print: "Print",
    done: "Done", waiting: "waiting", closed: "The branch is closed now", priority: "Priority",
    none: "None", board: "Now serving", desk: "Desk", number: "Number", sound: "Turn sound on",
    callNext: "Call next", recall: "Recall", start: "Start service", finish: "Finish",
    noShow: "No-show", transfer: "Transfer", open: "Open desk", close: "Close desk",
    current: "Current", nobody: "Nobody is waiting", token: "Token", save: "Save", calledTo: "Please go to desk",
    status: { waiting: "Waiting", called: "Called", serving: "Being served", done: "Served", no_show: "No-show", not_served: "Not served (day closed)" },
    stats: "Statistics", service: "Service", issued: "Issued", served: "Served", noShows: "No-shows",
    meanWait: "Mean wait", maxWait: "Max wait", meanService: "Mean service", within: "Within target", hour: "Hour",
    error: "Error", retry: "Try again", qr: "Scan to follow the queue", lang: "Polski",
    noDesk: "No desk for this service is open now", notServed: "Not served", dayClosed: "Day closed",
  },
}[LANG];

const $app = document.getElementById("app");
const page = document.body.dataset.page;
const branch = document.body.dataset.branch;
const item = document.body.dataset.item;

// Text for a value that may be missing: never the words null, undefined
// or NaN on a screen.
function text(v) {
  if (v === null || v === undefined || (typeof v === "number" && !Number.isFinite(v))) return "—";
  return String(v);
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") e.addEventListener("click", v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : text(c));
  return e;
}

// Puts `nodes` into `parent` (missing ones, such as a message that does
// not apply, are left out rather than written as "null").
function fill(parent, ...nodes) {
  parent.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined));
}

function show(...nodes) {
  fill($app, ...nodes);
}

function minutes(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "—";
  return Math.max(0, Math.round(s / 60)) + " " + T.min;
}

// The wait a visitor is told: minutes while a desk serves the service,
// else that none is open (no promise of minutes nobody will keep).
function waitText(seconds) {
  return seconds === null || seconds === undefined ? T.noDesk : "~" + minutes(seconds);
}

function langLink() {
  const u = new URL(location.href);
  u.searchParams.set("lang", LANG === "en" ? "pl" : "en");
  return el("a", { href: u.toString(), class: "lang" }, T.lang);
}

// The token of a kiosk, desk or manager page: from #token=... (kept in
// the browser's storage, never sent in a URL), or typed in.
function token(kind) {
  const key = "twinport-" + kind + "-" + branch;
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    localStorage.setItem(key, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem(key);
}

function askToken(kind, then) {
  const input = el("input", { type: "password", id: "token", autocomplete: "off" });
  show(el("section", { class: "card" }, el("h1", {}, T.token), input,
    el("button", { onclick: () => { localStorage.setItem("twinport-" + kind + "-" + branch, input.value); then(); } }, T.save)));
}

async function api(method, path, body, tok, headers) {
  const h = Object.assign({ "Accept": "application/json" }, headers || {});
  if (tok) h["Authorization"] = "Bearer " + tok;
  if (body !== undefined) h["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const err = new Error(data.message || r.statusText);
    err.status = r.status;
    throw err;
  }
  return data;
}

function uuid() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return "k-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

// ---------------------------------------------------------------- kiosk
async function kiosk() {
  const tok = token("kiosk");
  if (!tok) return askToken("kiosk", kiosk);
  let info;
  try {
    info = await api("GET", "/api/v1/branches/" + branch);
  } catch (e) {
    return show(el("p", { class: "error" }, T.error + ": " + e.message));
  }
  let group = null;
  const groups = el("div", { class: "groups" }, el("span", {}, T.priority + ": "),
    [{ id: null, name: { pl: T.none, en: T.none } }].concat(info.priority_groups).map((g) =>
      el("button", { class: "group" + (g.id === null ? " on" : ""), "data-group": g.id || "", onclick: (ev) => {
        group = g.id;
        for (const b of groups.querySelectorAll("button")) b.classList.toggle("on", b === ev.currentTarget);
      } }, g.name[LANG])));
  const services = info.services.map((s) =>
    el("button", { class: "service", "data-service": s.prefix, onclick: () => issue({ service: s.prefix, priority_group: group || undefined }) },
      el("span", { class: "prefix" }, s.prefix), el("span", { class: "name" }, s.name[LANG]),
      el("span", { class: "meta" }, s.waiting + " " + T.waiting + " · " + waitText(s.estimated_wait_seconds))));
  const code = el("input", { id: "booking-code", maxlength: "16", autocomplete: "off", placeholder: T.code });
  show(el("header", {}, el("h1", {}, info.name), langLink()),
    info.open ? null : el("p", { class: "error" }, T.closed),
    el("h2", {}, T.take), el("div", { class: "services" }, services), groups,
    el("section", { class: "booking" }, el("h2", {}, T.booking), code,
      el("button", { id: "check-in", onclick: () => issue({ booking_code: code.value }) }, T.checkin)));

  // One key per touch: a retry after a lost answer gets the same ticket.
  async function issue(body) {
    const key = uuid();
    let last;
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        const t = await api("POST", "/api/v1/branches/" + branch + "/tickets", body, tok, { "Idempotency-Key": key });
        return printed(t);
      } catch (e) {
        last = e;
        if (e.status && e.status < 500) break;
        await new Promise((r) => setTimeout(r, 300 * (attempt + 1)));
      }
    }
    show(el("p", { class: "error", id: "error" }, T.error + ": " + last.message), el("button", { onclick: kiosk }, T.retry));
  }

  function printed(t) {
    const back = setTimeout(kiosk, 20000);
    show(el("section", { class: "ticket", id: "ticket" },
      el("p", {}, info.name), el("p", {}, T.your), el("p", { class: "number", id: "ticket-number" }, t.display),
      el("p", {}, t.service_name[LANG]),
      el("p", { class: "wait" }, T.ahead + ": " + t.position + " · " + T.wait + ": " + waitText(t.estimated_wait_seconds)),
      el("img", { src: "/api/v1/tickets/" + t.id + "/qr.svg", alt: t.tracking_url, class: "qr" }),
      el("p", { class: "small" }, T.qr),
      el("p", { class: "small" }, new Date(t.issued_at).toLocaleString(LANG === "en" ? "en-GB" : "pl-PL"))),
    el("div", { class: "noprint" },
      el("button", { onclick: () => window.print() }, T.print),
      el("button", { onclick: () => { clearTimeout(back); kiosk(); } }, T.done)));
  }
}

// ---------------------------------------------------------------- board
function board() {
  let last = null;
  let sound = false;
  const soundBtn = el("button", { class: "sound", onclick: () => { sound = true; soundBtn.remove(); chime(); } }, T.sound);
  const calls = el("ol", { class: "calls", id: "calls" });
  const waiting = el("p", { class: "waiting", id: "waiting" });
  const title = el("h1", {}, T.board);
  show(el("header", {}, title, soundBtn, langLink()), calls, waiting);
  const es = new EventSource("/api/v1/branches/" + branch + "/board/events");
  es.addEventListener("board", (ev) => {
    const b = JSON.parse(ev.data);
    title.textContent = b.name + " — " + T.board;
    fill(calls, b.calls.map((c, i) =>
      el("li", { class: i === 0 ? "newest" : "", "data-display": c.display },
        el("span", { class: "number" }, c.display), el("span", { class: "arrow" }, "→"),
        el("span", { class: "desk" }, T.desk + " " + text(c.desk)))));
    waiting.textContent = Object.entries(b.waiting).map(([s, n]) => s + ": " + n + " " + T.waiting).join(" · ");
    const newest = b.calls[0];
    const sig = newest ? newest.display + "/" + newest.called_at + "/" + newest.recalls : null;
    if (last !== null && sig && sig !== last && sound) announce(newest);
    last = sig;
  });
}

function chime() {
  try {
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    [660, 880].forEach((f, i) => {
      const o = ctx.createOscillator();
      const g = ctx.createGain();
      o.frequency.value = f;
      o.connect(g);
      g.connect(ctx.destination);
      const t0 = ctx.currentTime + i * 0.35;
      g.gain.setValueAtTime(0.25, t0);
      g.gain.exponentialRampToValueAtTime(0.001, t0 + 0.3);
      o.start(t0);
      o.stop(t0 + 0.32);
    });
  } catch (e) { /* no audio on this device */ }
}

function announce(c) {
  chime();
  if (!window.speechSynthesis) return;
  const spelled = c.display.replace(/^([A-Z]+)0*(\d+)$/, "$1 $2");
  const u = new SpeechSynthesisUtterance(T.number + " " + spelled + ", " + T.desk.toLowerCase() + " " + c.desk);
  u.lang = LANG === "en" ? "en-GB" : "pl-PL";
  setTimeout(() => speechSynthesis.speak(u), 800);
}

// ---------------------------------------------------------------- desk
async function desk() {
  const tok = token("desk");
  if (!tok) return askToken("desk", desk);
  const base = "/api/v1/branches/" + branch + "/desks/" + item;
  const status = el("p", { class: "status", id: "desk-status" });
  const current = el("section", { class: "card", id: "current" });
  const queues = el("p", { id: "queues" });
  const select = el("select", { id: "transfer-to" });
  // One key per press: the gateway may replay it on the twin after a
  // failover, and the press still acts once (no visitor skipped).
  const act = (name, body) => async () => {
    try {
      const r = await api("POST", base + "/" + name, body, tok, { "Idempotency-Key": uuid() });
      status.textContent = name === "call-next" && !r.called ? T.nobody : "";
      render(await api("GET", base, undefined, tok));
    } catch (e) {
      status.textContent = T.error + ": " + e.message;
    }
  };
  const buttons = el("div", { class: "actions" },
    el("button", { id: "call-next", class: "primary", onclick: act("call-next") }, T.callNext),
    el("button", { id: "recall", onclick: act("recall") }, T.recall),
    el("button", { id: "start", onclick: act("start") }, T.start),
    el("button", { id: "finish", onclick: act("finish") }, T.finish),
    el("button", { id: "no-show", onclick: act("no-show") }, T.noShow),
    select,
    el("button", { id: "transfer", onclick: () => {
      const [kind, v] = select.value.split(":");
      act("transfer", kind === "s" ? { service: v } : { desk: v })();
    } }, T.transfer));
  const openBtn = el("button", { id: "open-close" });
  show(el("header", {}, el("h1", {}, T.desk + " " + item), openBtn, langLink()), current, buttons, queues, status);

  function render(d) {
    openBtn.textContent = d.open ? T.close : T.open;
    openBtn.onclick = act(d.open ? "close" : "open");
    fill(current, el("h2", {}, T.current),
      d.current ? el("p", { class: "number" }, d.current.display + " · " + text(T.status[d.current.status] || d.current.status)) : el("p", {}, "—"));
    queues.textContent = d.queues.map((q) => q.service + ": " + q.waiting + " " + T.waiting).join(" · ");
    if (!select.options.length) {
      for (const s of d.transfer_services) select.append(el("option", { value: "s:" + s.prefix }, T.service + " " + s.prefix + " — " + s.name[LANG]));
      for (const x of d.transfer_desks) select.append(el("option", { value: "d:" + x }, T.desk + " " + x));
    }
  }
  render(await api("GET", base, undefined, tok));
  follow(base + "/events", tok, "desk", render);
}

// Server-sent events over fetch, so that the desk's token goes in a
// header and never in a URL. Reconnects after a break.
async function follow(url, tok, event, onData) {
  for (;;) {
    try {
      const r = await fetch(url, { headers: { "Authorization": "Bearer " + tok, "Accept": "text/event-stream" } });
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const msg = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = (msg.match(/^event: ?(.*)$/m) || [])[1];
          const data = msg.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
          if (ev === event && data) onData(JSON.parse(data));
        }
      }
    } catch (e) { /* reconnect below */ }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// ---------------------------------------------------------------- tracking
function track() {
  const box = el("section", { class: "ticket", id: "track" });
  show(el("header", {}, langLink()), box);
  const es = new EventSource("/api/v1/tickets/" + item + "/events");
  es.addEventListener("ticket", (ev) => {
    const t = JSON.parse(ev.data);
    if (t.error) return fill(box, el("p", { class: "error" }, t.message));
    fill(box, el("p", {}, T.your), el("p", { class: "number" }, t.display), el("p", {}, t.service_name[LANG]),
      el("p", { class: "status", id: "track-status" }, text(T.status[t.status] || t.status)),
      t.status === "waiting" ? el("p", { class: "wait" }, T.ahead + ": " + t.position + " · " + T.wait + ": " + waitText(t.estimated_wait_seconds)) : null,
      t.status === "called" ? el("p", { class: "called" }, T.calledTo + " " + text(t.desk)) : null);
  });
}

// ---------------------------------------------------------------- stats
async function stats() {
  const tok = token("manager");
  if (!tok) return askToken("manager", stats);
  const day = new URLSearchParams(location.search).get("day");
  let s;
  try {
    s = await api("GET", "/api/v1/branches/" + branch + "/stats" + (day ? "?day=" + encodeURIComponent(day) : ""), undefined, tok);
  } catch (e) {
    return show(el("p", { class: "error" }, T.error + ": " + e.message));
  }
  const secs = (v) => (v === null || v === undefined ? "—" : minutes(v));
  const pct = (v) => (v === null || v === undefined ? "—" : Math.round(v * 100) + " %");
  show(el("header", {}, el("h1", {}, T.stats + " — " + s.branch + " — " + s.day + (s.closed ? " (" + T.dayClosed + ")" : "")), langLink()),
    el("table", { id: "stats-services" },
      el("tr", {}, [T.service, T.issued, T.served, T.noShows, T.notServed, T.meanWait, T.maxWait, T.meanService, T.within].map((h) => el("th", {}, h))),
      s.services.map((x) => el("tr", {}, [x.service + " " + x.name[LANG], x.issued, x.served, x.no_shows, x.not_served,
        secs(x.mean_wait_seconds), secs(x.max_wait_seconds), secs(x.mean_service_seconds), pct(x.within_target_share)].map((c) => el("td", {}, c))))),
    el("table", { id: "stats-hours" },
      el("tr", {}, [T.hour, T.issued, T.noShows, T.notServed].map((h) => el("th", {}, h))),
      s.per_hour.map((h) => el("tr", {}, [h.hour + ":00", h.issued, h.no_shows, h.not_served].map((c) => el("td", {}, c))))));
}

// ---------------------------------------------------------------- index
function index() {
  show(el("h1", {}, "Twinport"), el("p", {}, "/kiosk/{branch} · /board/{branch} · /desk/{branch}/{desk} · /stats/{branch}"));
}

({ kiosk, board, desk, track, stats, index })[page]();
