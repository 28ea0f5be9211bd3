// The pipeline dashboard's script: it polls /stats twice a second, writes
// the figures into the page the server rendered (elements marked
// data-stage and data-field), fills the graph's nodes by depth/capacity,
// and draws the charts of the last minutes, starting from /history.
// Controller and NATS figures show when /stats carries them. Each stage's
// health is in its row, on its graph node, and, for a stage that is down,
// in the banner under the header with its last error.
"use strict";
(() => {
  const POLL_MS = 500;
  const WINDOW_MS = 5 * 60 * 1000;
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#2f6fdf", "#d64545", "#3fa46a", "#e0a024", "#7a5af5", "#1aa0a8", "#c2509b", "#6b7383", "#8a6d3b", "#0b7a3b"];

  const rows = new Map(); // stage name -> its table row
  document.querySelectorAll("tr[data-stage]").forEach((tr) => rows.set(tr.dataset.stage, tr));
  const nodes = new Map(); // stage name -> its graph node
  document.querySelectorAll("#graph g[data-node]").forEach((g) => nodes.set(g.dataset.node, g));
  const names = [...rows.keys()];
  const color = (name) => COLORS[names.indexOf(name) % COLORS.length];

  // series[name] = {t: [], depth: [], out: [], p99: []}: the charts' points.
  const series = new Map(names.map((n) => [n, { t: [], depth: [], out: [], p99: [] }]));
  let prev = null; // the last /stats, with .at (ms)
  let inline = new Set();

  const num = (v) => (Number.isFinite(v) ? String(v) : "0");
  const ms = (v) => (Number.isFinite(v) ? String(Math.round(v * 1000) / 1000) : "0");
  // A quantile is null when nothing finished in its window (a stalled
  // stage): no latency to tell, so a dash, and no point in the chart
  // (the line joins the points either side), not a 0.
  const quantile = (v) => (v === null ? "–" : ms(v));
  const quantilePoint = (v) => (v === null ? NaN : v || 0);
  const rate = (v) => (Number.isFinite(v) ? String(Math.round(v)) : "–");
  const human = (v) => {
    if (!Number.isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(a >= 1e10 ? 0 : 1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
    if (a > 0 && a < 10 && !Number.isInteger(v)) return String(Number(v.toPrecision(2)));
    return String(Math.round(v));
  };
  const level = (f) => (f >= 0.9 ? "full" : f >= 0.5 ? "warn" : "ok");
  const fillOf = (q) => (q && q.capacity > 0 ? Math.min(Math.max(q.depth / q.capacity, 0), 1) : 0);

  function set(row, field, text) {
    const el = row.querySelector(`[data-field="${field}"]`);
    if (el && el.textContent !== text) el.textContent = text;
  }

  // digits writes a count into a row's field as groups of three digits,
  // each group after the first in a span that CSS sets apart: people read
  // "1 234 567", and the text stays the number ("1234567") for scripts.
  function digits(row, field, v) {
    const el = row.querySelector(`[data-field="${field}"]`);
    if (!el) return;
    const text = Number.isFinite(v) ? String(Math.round(v)) : "0";
    if (el.textContent === text && el.dataset.grouped === "1") return;
    const sign = text.startsWith("-") ? "-" : "";
    const d = text.slice(sign.length);
    const head = d.length % 3 || 3;
    const parts = [sign + d.slice(0, head)];
    for (let i = head; i < d.length; i += 3) {
      const g = document.createElement("span");
      g.className = "g";
      g.textContent = d.slice(i, i + 3);
      parts.push(g);
    }
    el.replaceChildren(...parts);
    el.dataset.grouped = "1";
  }

  // poolMode says how a stage's pool is sized, as pipectl top does: auto
  // or pinned (pipectl scale changes it), fixed (a source's own pool,
  // sized once at start), remote (its workers run in other processes).
  function poolMode(st) {
    if (st.remote) return "remote";
    if (st.inline || !st.pool || !st.pool.workers) return "";
    const w = st.control && st.control.workers;
    if (!w) return "fixed";
    return w.auto ? "auto" : "pinned";
  }

  // memoryText is the header's memory figure: the bytes of records held
  // against memory_limit, and the doors' refusals past it.
  function memoryText(m) {
    if (!m || !m.limit_bytes) return "";
    const mib = (n) => (n / 1048576).toFixed(n < 10485760 ? 1 : 0) + " MiB";
    let t = "memory " + mib(m.held_bytes || 0) + " / " + mib(m.limit_bytes) +
      " (" + Math.round((100 * (m.held_bytes || 0)) / m.limit_bytes) + "%)";
    if (m.refused) t += ", refused " + m.refused;
    if (m.waits) t += ", waits " + m.waits;
    return t;
  }

  function perSecond(cur, old, dt) {
    if (old === undefined || dt <= 0 || cur < old) return NaN;
    return ((cur - old) * 1000) / dt;
  }

  function update(s, at) {
    document.getElementById("state").textContent = s.state || "";
    document.getElementById("state").className = "state " + (s.state || "");
    document.getElementById("uptime").textContent = "up " + duration(s.uptime_s || 0);
    document.getElementById("memory").textContent = memoryText(s.memory);
    const old = new Map(prev ? prev.stages.map((st) => [st.name, st]) : []);
    const dt = prev ? at - prev.at : 0;
    let sources = [];
    let ctl = false, adm = false;
    const down = [];
    inline = new Set();
    for (const st of s.stages || []) {
      const row = rows.get(st.name);
      if (!row) continue; // a stage the page was not rendered with
      if (st.inline) inline.add(st.name);
      const q = st.queue || {};
      const pool = st.pool || {};
      const o = old.get(st.name);
      const inRate = o ? perSecond(st.in, o.in, dt) : NaN;
      const outRate = o ? perSecond(st.out, o.out, dt) : NaN;
      digits(row, "depth", q.depth);
      digits(row, "capacity", q.capacity);
      const mode = poolMode(st);
      set(row, "workers_mode", mode);
      // A remote stage's workers are in other processes, and an inline
      // stage runs in its upstream's: none of its own here.
      const none = st.remote || st.inline;
      set(row, "running", none ? "–" : num(pool.running));
      set(row, "workers", none ? "–" : num(pool.workers));
      set(row, "blocked", none ? "–" : num(pool.blocked));
      digits(row, "in", st.in);
      digits(row, "out", st.out);
      set(row, "in_rate", rate(inRate));
      set(row, "out_rate", rate(outRate));
      set(row, "p50", quantile(st.latency_ms && st.latency_ms.p50));
      set(row, "p99", quantile(st.latency_ms && st.latency_ms.p99));
      set(row, "oldest", ms(st.latency_ms && st.latency_ms.oldest_ms));
      health(row, st.health);
      if (st.health && st.health.state === "down") down.push(st);
      digits(row, "errors", st.errors);
      digits(row, "rejected", st.rejected);
      const f = fillOf(q);
      const bar = row.querySelector(".bar-fill");
      if (bar) {
        bar.style.width = (f * 100).toFixed(1) + "%";
        bar.className = "bar-fill " + level(f);
      }
      if (st.control) {
        ctl = true;
        adm = adm || !!st.control.admission;
        control(row, st.control, o && o.control, dt);
      }
      node(st, f);
      if (st.source) sources.push({ st, o, dt });
      const sr = series.get(st.name);
      sr.t.push(at);
      sr.depth.push(q.depth || 0);
      sr.out.push(outRate);
      sr.p99.push(quantilePoint(st.latency_ms && st.latency_ms.p99));
      trim(sr, at);
    }
    document.getElementById("stages").classList.toggle("has-ctl", ctl);
    document.getElementById("stages").classList.toggle("has-adm", adm);
    drawSources(sources);
    banner(down, at);
    drawCharts(at);
  }

  // health writes a stage's health into its row: the state, coloured by
  // CSS, with the last error as the cell's title.
  function health(row, h) {
    const el = row.querySelector('[data-field="health"]');
    if (!el) return;
    const state = (h && h.state) || "";
    if (el.textContent !== (state || "–")) el.textContent = state || "–";
    el.className = "hs " + state;
    el.title = h && h.error ? h.error : "";
  }

  // banner shows, under the header, each stage that is down: since when
  // (the time here, and how long) and its last error, as text (an error
  // may hold anything). It is hidden while no stage is down.
  function banner(down, at) {
    const el = document.getElementById("health-banner");
    el.hidden = down.length === 0;
    const lines = down.map((st) => {
      const h = st.health;
      const since = Date.parse(h.since);
      const p = document.createElement("p");
      p.dataset.down = st.name;
      const b = document.createElement("b");
      b.textContent = `${st.name} is down`;
      const why = document.createElement("span");
      why.className = "why";
      why.textContent = h.error || "no error said";
      const when = Number.isFinite(since)
        ? ` since ${new Date(since).toLocaleTimeString()} (${duration(Math.max(at - since, 0) / 1000)}), ${h.failures || 0} failed calls: `
        : ": ";
      p.append(b, when, why);
      return p;
    });
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = "/readyz answers 503 while a stage is down.";
    el.replaceChildren(...lines, note);
  }

  // control writes the controllers' figures (stage.ControlStats): the
  // batch size, auto or pinned; the admission's admitted rate and p99
  // against its target; the latest change and why.
  function control(row, c, old, dt) {
    const knob = (k) => (k ? `${k.now}${k.auto ? " auto" : ""}` : "");
    set(row, "batch", knob(c.batch));
    const w = row.querySelector('[data-field="workers"]');
    if (w) w.title = c.workers ? `${c.workers.auto ? "auto" : "pinned"}, ${c.workers.min}–${c.workers.max}` : "";
    const a = c.admission;
    const oa = old && old.admission;
    set(row, "admitted_rate", a ? rate(perSecond(a.admitted, oa && oa.admitted, dt)) : "");
    set(row, "admission_p99", a ? ms(a.p99_ms) : "");
    set(row, "target", a ? " / " + ms(a.target_ms) : "");
    const cell = row.querySelector('[data-field="decision"]');
    const l = c.last;
    const text = l ? `${l.knob} ${human(l.from)} → ${human(l.to)}, ${duration(l.age_s)} ago` : "";
    if (cell.textContent !== text) cell.textContent = text;
    cell.title = l ? l.reason || "" : "";
  }

  // node redraws a stage's node in the graph: fill, figure, NATS mark.
  function node(st, f) {
    const g = nodes.get(st.name);
    if (!g) return;
    const box = g.querySelector(".box");
    const fill = g.querySelector(".fill");
    const w = Number(box.getAttribute("width")) - 2;
    fill.setAttribute("width", String(Math.round(w * f)));
    fill.setAttribute("class", "fill " + level(f));
    const q = st.queue || {};
    if (!st.inline) g.querySelector(".figure").textContent = `${q.depth || 0} / ${q.capacity || 0}`;
    const nats = isNats(st);
    g.classList.toggle("nats", nats);
    g.querySelector(".badge").textContent = nats ? (st.remote ? "NATS · elsewhere" : "NATS") : "";
    const state = st.health && st.health.state;
    g.classList.toggle("down", state === "down");
    g.classList.toggle("degraded", state === "degraded");
  }

  // isNats tells a stage whose queue is a NATS JetStream stream.
  function isNats(st) {
    const q = st.queue || {};
    return q.transport === "nats" || q.kind === "nats" || !!st.nats || !!(st.remote && st.remote.transport === "nats");
  }

  function drawSources(list) {
    const sec = document.getElementById("sources-section");
    sec.hidden = list.length === 0;
    if (!list.length) return;
    const body = document.querySelector("#sources tbody");
    for (const { st, o, dt } of list) {
      let tr = body.querySelector(`tr[data-source="${CSS.escape(st.name)}"]`);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.source = st.name;
        for (const f of ["name", "open", "accepted", "closed", "refused", "bytes_rate", "nacks", "protocol_errors", "drops"]) {
          const td = document.createElement("td");
          td.dataset.field = f;
          if (!["name", "nacks", "protocol_errors", "drops"].includes(f)) td.className = "num";
          if (f === "name") td.className = "name";
          tr.appendChild(td);
        }
        body.appendChild(tr);
      }
      const src = st.source;
      const c = src.connections || {};
      set(tr, "name", st.name);
      digits(tr, "open", (c.accepted || 0) - (c.closed || 0));
      digits(tr, "accepted", c.accepted || 0);
      digits(tr, "closed", c.closed || 0);
      digits(tr, "refused", c.refused || 0);
      const ob = o && o.source ? o.source.bytes_in : undefined;
      set(tr, "bytes_rate", human(perSecond(src.bytes_in || 0, ob, dt)));
      pairs(tr, "nacks", src.nacks);
      pairs(tr, "protocol_errors", src.protocol_errors);
      pairs(tr, "drops", src.drops);
    }
  }

  // pairs writes "name N" for each count of m that is not zero.
  function pairs(tr, field, m) {
    const td = tr.querySelector(`[data-field="${field}"]`);
    const text = Object.entries(m || {})
      .filter(([, v]) => v > 0)
      .map(([k, v]) => `${k.replace(/_/g, " ")} ${v}`)
      .join(" · ");
    if (td.textContent !== (text || "none")) td.textContent = text || "none";
  }

  function trim(sr, at) {
    let k = 0;
    while (k < sr.t.length && sr.t[k] < at - WINDOW_MS) k++;
    if (k > 0) for (const key of Object.keys(sr)) sr[key].splice(0, k);
  }

  function drawCharts(now) {
    // Only the rate chart gets a robust scale: a rate's spike is the
    // catch-up after a stall (the stall itself shows as a gap), while a
    // peak of depth or latency is the news.
    chart("chart-depth", "depth", now, (n) => !inline.has(n), false);
    chart("chart-out", "out", now, () => true, true);
    chart("chart-p99", "p99", now, () => true, false);
    const legend = document.getElementById("chart-legend");
    if (!legend.childElementCount) {
      for (const n of names) {
        const k = document.createElement("span");
        k.className = "key";
        const i = document.createElement("i");
        i.style.background = color(n);
        i.style.height = lineWidth(n) + "px";
        k.append(i, n);
        legend.appendChild(k);
      }
    }
  }

  // lineWidth is a stage's line width in the charts: wider for the stages
  // drawn first, so that a line drawn later over the same points (parse's
  // rate is accept's, store's p99 near accept's) leaves the one below it
  // showing on both sides.
  function lineWidth(n) {
    return 1.5 + 1.25 * Math.min(names.length - 1 - names.indexOf(n), 4);
  }

  // scale returns a chart's top for its values, and the peak left above
  // it (0 when none is). The top is the largest value, unless the few
  // largest (2%, at least two: a second is two polls) stand more than
  // twice as high as the rest, as one catch-up second after a stall, or
  // the backlog of a load's first second, does: the top is then the rest's
  // largest with a quarter more, the peak is drawn cut at the top, and the
  // chart says how high it went. So one spike does not flatten the rest.
  function scale(vals) {
    if (!vals.length) return { top: 0, cut: 0 };
    const s = vals.slice().sort((a, b) => a - b);
    const peak = s[s.length - 1];
    if (s.length < 20) return { top: peak, cut: 0 };
    const rest = s[s.length - 1 - Math.max(2, Math.ceil(s.length * 0.02))];
    if (rest > 0 && peak > 2 * rest) return { top: rest * 1.25, cut: peak };
    return { top: peak, cut: 0 };
  }

  // chart draws one figure per stage over the last WINDOW_MS as lines,
  // with a robust scale (see scale) or one up to the largest value.
  function chart(id, key, now, wanted, robust) {
    const svg = document.getElementById(id);
    const r = svg.getBoundingClientRect();
    const W = Math.max(Math.round(r.width), 200);
    const H = Math.max(Math.round(r.height), 100);
    const left = 44, right = 8, top = 10, bottom = 20;
    const vals = [];
    for (const [n, sr] of series) {
      if (!wanted(n)) continue;
      for (const v of sr[key]) if (Number.isFinite(v)) vals.push(v);
    }
    const sc = robust ? scale(vals) : { top: Math.max(0, ...vals), cut: 0 };
    const [peak, steps] = nice(sc.top);
    const x = (t) => left + ((t - (now - WINDOW_MS)) / WINDOW_MS) * (W - left - right);
    const y = (v) => top + (1 - Math.min(v, peak) / peak) * (H - top - bottom);
    const parts = [];
    for (let i = 0; i <= steps; i++) {
      const v = (peak * i) / steps;
      parts.push(`<line class="grid" x1="${left}" x2="${W - right}" y1="${y(v)}" y2="${y(v)}"></line>`);
      parts.push(`<text class="tick" x="${left - 4}" y="${y(v) + 3}" text-anchor="end">${human(v)}</text>`);
    }
    parts.push(`<text x="${left}" y="${H - 5}">−5 min</text><text x="${W - right}" y="${H - 5}" text-anchor="end">now</text>`);
    if (sc.cut > peak) {
      parts.push(`<text class="cut" x="${W - right - 2}" y="${top + 10}" text-anchor="end">peak ${human(sc.cut)}, above the scale ↑</text>`);
    }
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.innerHTML = parts.join("");
    for (const [n, sr] of series) {
      if (!wanted(n)) continue;
      const pts = [];
      sr[key].forEach((v, i) => {
        if (Number.isFinite(v)) pts.push(`${x(sr.t[i]).toFixed(1)},${y(v).toFixed(1)}`);
      });
      if (pts.length < 2) continue;
      const pl = document.createElementNS(SVG, "polyline");
      pl.setAttribute("points", pts.join(" "));
      pl.setAttribute("stroke", color(n));
      pl.style.strokeWidth = String(lineWidth(n));
      pl.dataset.series = n;
      const title = document.createElementNS(SVG, "title");
      title.textContent = n;
      pl.appendChild(title);
      svg.appendChild(pl);
    }
  }

  // nice rounds a chart's top up to 1, 2 or 5 times a power of ten, and
  // gives the number of grid steps that make round labels.
  function nice(v) {
    if (!(v > 0)) return [5, 5];
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5]) if (v <= m * p) return [m * p, m === 2 ? 4 : 5];
    return [10 * p, 5];
  }

  function duration(s) {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s % 60}s`;
    return `${s}s`;
  }

  // history turns /history's samples into the charts' first points.
  async function history() {
    const res = await fetch("/history", { cache: "no-store", credentials: "same-origin" });
    if (!res.ok) return;
    const h = await res.json();
    const samples = h.history || [];
    for (let k = 0; k < samples.length; k++) {
      const smp = samples[k], before = samples[k - 1];
      names.forEach((n, i) => {
        const sr = series.get(n);
        sr.t.push(smp.t);
        sr.depth.push(smp.depth[i] || 0);
        sr.out.push(before ? perSecond(smp.out[i], before.out[i], smp.t - before.t) : NaN);
        sr.p99.push(quantilePoint(smp.p99[i]));
      });
    }
  }

  const live = document.getElementById("live");
  async function poll() {
    try {
      const res = await fetch("/stats", { cache: "no-store", credentials: "same-origin" });
      if (res.status === 401) throw new Error("unauthorized: reload to log in");
      if (!res.ok) throw new Error(`/stats: ${res.status}`);
      const s = await res.json();
      const at = Date.now();
      update(s, at);
      s.at = at;
      prev = s;
      live.textContent = "live";
      live.className = "live on";
      live.title = "updated " + new Date(at).toLocaleTimeString();
    } catch (e) {
      live.textContent = "no answer: " + e.message;
      live.className = "live off";
    }
    setTimeout(poll, POLL_MS);
  }

  history().catch(() => {}).finally(poll);
})();
