// synth report: draws the plots, lists trajectories, and opens one on #t/<id>.
// Everything it shows comes from JSON embedded in this file; it fetches nothing.
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  };
  const SVG = "http://www.w3.org/2000/svg";
  const svgEl = (tag, attrs) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };

  const index = JSON.parse($("#index").textContent);
  const byId = new Map(index.map((r) => [r.id, r]));

  // --- plots -------------------------------------------------------------
  const specs = JSON.parse($("#specs").textContent);
  for (const [id, spec] of Object.entries(specs)) {
    vegaEmbed("#" + id, spec, { renderer: "svg", actions: false })
      .catch((e) => console.error("plot " + id + ": " + e));
  }

  // --- trajectory list ---------------------------------------------------
  const PAGE = 100;
  let shown = PAGE, matches = index;
  const filters = ["source", "template", "status", "stage"];
  const fill = (name, values) => {
    const select = $("#f-" + name);
    for (const v of [...new Set(values)].filter(Boolean).sort()) select.append(el("option", { value: v, text: v }));
  };
  fill("source", index.map((r) => r.source));
  fill("template", index.map((r) => r.template));
  fill("stage", index.map((r) => r.stage));

  function applyFilters() {
    const want = Object.fromEntries(filters.map((f) => [f, $("#f-" + f).value]));
    const q = $("#f-q").value.trim().toLowerCase();
    matches = index.filter((r) =>
      filters.every((f) => !want[f] || r[f] === want[f]) &&
      (!q || [r.id, r.instruction, r.reason, r.detail].some((s) => (s || "").toLowerCase().includes(q))));
    renderList();
  }

  function renderList() {
    const body = $("#list tbody");
    body.replaceChildren();
    const current = location.hash.startsWith("#t/") ? decodeURIComponent(location.hash.slice(3)) : null;
    for (const r of matches.slice(0, shown)) {
      const tr = el("tr", { class: "row" + (r.id === current ? " sel" : ""), "data-id": r.id },
        el("td", {}, el("a", { href: "#t/" + r.id, text: r.id })),
        el("td", { text: r.template }), el("td", { text: r.source + (r.detail ? " · " + r.detail : "") }),
        el("td", {}, el("span", { class: "pill " + r.status, text: r.status })),
        el("td", { class: "n", text: String(r.steps) }), el("td", { text: r.reason }),
        el("td", { text: r.instruction }));
      body.append(tr);
    }
    $("#f-count").textContent = matches.length + " of " + index.length + " trajectories";
    $("#more").hidden = matches.length <= shown;
  }

  for (const f of filters) $("#f-" + f).addEventListener("change", () => { shown = PAGE; applyFilters(); });
  $("#f-q").addEventListener("input", () => { shown = PAGE; applyFilters(); });
  $("#more").addEventListener("click", () => { shown += PAGE; renderList(); });

  // --- one trajectory ----------------------------------------------------
  function overlay(step) {
    const o = step.overlay || {}, w = step.w, h = step.h;
    const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none", class: "overlay" });
    const stroke = Math.max(1.5, w / 200), r = Math.max(4, w / 45);
    if (o.box) {
      const [bx, by, bw, bh] = o.box;
      svg.append(svgEl("rect", { x: bx * w, y: by * h, width: bw * w, height: bh * h, fill: "rgba(31,95,168,.12)",
        stroke: "#1f5fa8", "stroke-width": stroke, class: "target" }));
    }
    if (o.x !== undefined) {
      const x = o.x * w, y = o.y * h;
      if (o.x2 !== undefined) {
        svg.append(svgEl("line", { x1: x, y1: y, x2: o.x2 * w, y2: o.y2 * h, stroke: "#e8590c", "stroke-width": stroke * 1.5 }));
      }
      if (o.dx !== undefined) {
        svg.append(svgEl("line", { x1: x, y1: y, x2: x + o.dx * w, y2: y + o.dy * h, stroke: "#e8590c",
          "stroke-width": stroke * 1.5, "stroke-dasharray": `${stroke * 3}` }));
      }
      svg.append(svgEl("circle", { cx: x, cy: y, r: r, fill: "rgba(232,89,12,.35)", stroke: "#e8590c",
        "stroke-width": stroke, class: "point" }));
    }
    return svg;
  }

  function stepView(s) {
    let shot;
    if (s.img) {
      const zoom = s.w < 320 ? 2 : 1;  // a task's own small area (MiniWoB's 160x210) is shown twice its size
      shot = el("div", { class: "shot" }, el("img", { src: s.img, width: s.w * zoom, height: s.h * zoom, alt: "step " + s.i + " before " + s.action }));
      shot.append(overlay(s));
    } else {
      shot = el("div", { class: "shot none", text: "screenshot " + (s.missing || "none recorded") });
    }
    const args = Object.entries(s.args || {}).map(([k, v]) => k + "=" + JSON.stringify(v)).join(" ");
    const dl = el("dl", {},
      el("dt", { text: "action" }), el("dd", {}, el("b", { text: s.action || "" }), args ? " " + args : ""),
      el("dt", { text: "target" }), el("dd", { text: s.element || "-" }),
      el("dt", { text: "as trained" }), el("dd", {}, el("code", { text: s.text || "" })),
      el("dt", { text: "url" }), el("dd", { text: s.url || "" }));
    if (s.thought) dl.append(el("dt", { text: "thought" }), el("dd", { text: s.thought }));
    if (s.error) dl.append(el("dt", { text: "error" }), el("dd", { class: "err", text: s.error }));
    return el("div", { class: "step", "data-step": String(s.i) }, shot, el("div", {}, el("b", { text: "step " + s.i }), dl));
  }

  function verdicts(t) {
    const dl = el("dl", {});
    const row = (k, v) => { if (v !== null && v !== undefined && v !== "") dl.append(el("dt", { text: k }), el("dd", {}, v)); };
    row("template", t.template);
    row("source", t.source + (t.detail ? " · " + t.detail : ""));
    row("instruction", t.instruction);
    row("status", el("span", { class: "pill " + t.status, text: t.status }));
    row("rejected because", t.reason);
    if (t.verdict) row("judge", (t.verdict.passed ? "passed" : "failed") + " · score " + t.verdict.score + (t.verdict.reason ? " · " + t.verdict.reason : ""));
    row("error", t.error);
    row("answer", t.answer);
    if (t.duplicate_of) row("duplicate of", el("a", { href: "#t/" + t.duplicate_of, text: t.duplicate_of }));
    row("replay", t.replay_passed === null ? "not replayed" : t.replay_passed ? "passed" : "failed");
    row("consistency flags", (t.consistency_flags || []).join(", ") || "none");
    if (t.review) row("review", `${t.review.verdict} by ${t.review.reviewer}` + (t.review.comment ? ": " + t.review.comment : "") +
      ((t.review.tags || []).length ? " [" + t.review.tags.join(", ") + "]" : ""));
    row("final url", t.final_url);
    return dl;
  }

  function open(id) {
    const viewer = $("#viewer");
    const data = document.getElementById("d-" + id);
    viewer.replaceChildren();
    viewer.hidden = false;
    if (!data) {
      viewer.append(el("p", { class: "err", text: "No trajectory " + id + " in this report." }));
      return;
    }
    const t = JSON.parse(data.textContent);  // parsed only when opened: the page loads fast
    const pos = matches.findIndex((r) => r.id === id);
    const nav = el("div", { class: "note" });
    if (pos > 0) nav.append(el("a", { href: "#t/" + matches[pos - 1].id, text: "← previous" }), " ");
    if (pos >= 0 && pos < matches.length - 1) nav.append(el("a", { href: "#t/" + matches[pos + 1].id, text: "next →" }));
    viewer.append(el("h3", {}, "Trajectory ", el("code", { class: "tid", text: id })), nav, verdicts(t),
      el("div", { class: "steps" }, ...(t.steps.length ? t.steps.map(stepView) : [el("p", { text: "No steps recorded." })])));
    document.querySelectorAll("#list tr.sel").forEach((tr) => tr.classList.remove("sel"));
    const tr = document.querySelector(`#list tr[data-id="${CSS.escape(id)}"]`);
    if (tr) tr.classList.add("sel");
    viewer.scrollIntoView({ block: "start" });
  }

  // --- routes: #t/<id> opens a trajectory, #list?k=v filters the list ------
  function route() {
    const h = location.hash;
    if (h.startsWith("#t/")) {
      open(decodeURIComponent(h.slice(3)));
    } else if (h.startsWith("#list?")) {
      const p = new URLSearchParams(h.slice(6));
      for (const f of filters) $("#f-" + f).value = p.get(f) || "";
      $("#f-q").value = p.get("q") || "";
      shown = PAGE;
      applyFilters();
      $("#browser").scrollIntoView({ block: "start" });
    }
  }
  window.addEventListener("hashchange", route);
  // a link to the hash already shown fires no hashchange: open it again anyway
  document.addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest('a[href^="#"]');
    if (a && a.getAttribute("href") === location.hash) route();
  });
  applyFilters();
  route();
})();
