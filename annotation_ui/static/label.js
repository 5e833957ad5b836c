// The labeler page: take a task, act on the screenshot, submit.
// Every action is a POST to the server, which runs it in its own browser
// (BrowserEnv) and answers with the new state; the screenshot is then
// reloaded. Text from the server is only ever written with textContent.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const app = $("app");
  let state = null;      // the lease state from the server (null: no task)
  let mode = "click";
  let busy = false;
  let heartbeat = null;
  let expiresAt = 0;
  let lost = null;       // the lease this labeler lost (from the server), for the banner
  let lostNote = "";     // what the server said when it refused a request on a lost lease
  let lastActive = Date.now();
  let lastBeat = Date.now();
  const warnS = Number(app.dataset.warn);

  // Several requests can be refused at once (a key press and the lease heartbeat):
  // navigate to the login page once, or the second navigation aborts the first.
  let sessionEnded = false;

  async function api(path, body) {
    const opts = body === undefined
      ? { credentials: "same-origin" }
      : {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
          body: JSON.stringify(body),
        };
    const r = await fetch(path, opts);
    if (r.status === 401) {
      if (!sessionEnded) { sessionEnded = true; location.replace("/login?expired=1"); }
      throw new Error("your session ended"); }
    let data = {};
    try { data = await r.json(); } catch (e) { data = { error: `HTTP ${r.status}` }; }
    if (!r.ok) { const err = new Error(data.error || `HTTP ${r.status}`); err.status = r.status; throw err; }
    return data;
  }

  function showError(msg) {
    const el = $("error");
    el.textContent = msg || "";
    el.hidden = !msg;
  }

  function setBusy(on) {
    busy = on;
    $("busy").hidden = !on;
    app.classList.toggle("is-busy", on);
  }

  async function run(fn) {
    if (busy) return;
    setBusy(true);
    showError("");
    try { await fn(); }
    catch (e) {
      showError(e.message);
      if (e.status === 409) { lostNote = e.message; await refresh(); }
    }
    finally { setBusy(false); }
  }

  function renderProgress(p) {
    if (!p) return;
    for (const dd of document.querySelectorAll("#progress dd")) {
      const v = p[dd.dataset.k];
      dd.textContent = v === undefined ? "0" : String(v);
    }
  }

  function render(data) {
    renderProgress(data.progress);
    const lease = data.lease;
    state = lease;
    $("workspace").hidden = !lease;
    $("empty").hidden = !!lease;
    clearInterval(heartbeat);
    lost = lease ? null : (data.lost || null);
    renderLost();
    const done = !!(lease && lease.done);
    $("done-banner").hidden = !done;
    app.classList.toggle("is-done", done);
    if (!lease) {
      $("lease-warning").hidden = true;
      $("template").textContent = "no task";
      $("instruction").textContent = "Press N or “Next task” to start.";
      $("lease-timer").textContent = "";
      $("steps").replaceChildren();
      $("step-count").textContent = "";
      return;
    }
    $("template").textContent = lease.template_id;
    $("instruction").textContent = lease.instruction || "(no instruction)";
    $("url").textContent = lease.url || "";
    expiresAt = Date.now() + (lease.expires_in || 0) * 1000;
    heartbeat = setInterval(beat, Number(app.dataset.heartbeat) * 1000);
    if (lease.broken) { showError(lease.broken); }
    const img = $("shot");
    if (lease.area) {
      img.style.aspectRatio = `${lease.area.width} / ${lease.area.height}`;
    }
    if (lease.version !== undefined) {
      img.src = `/api/screenshot?v=${encodeURIComponent(lease.version)}&t=${Date.now()}`;
    }
    const ol = $("steps");
    ol.replaceChildren();
    for (const s of lease.steps || []) {
      const li = document.createElement("li");
      const code = document.createElement("code");
      code.textContent = s.action;
      li.append(code);
      if (s.element) { const e = document.createElement("span"); e.className = "muted"; e.textContent = ` ${s.element}`; li.append(e); }
      if (s.thought) { const t = document.createElement("div"); t.className = "thought"; t.textContent = s.thought; li.append(t); }
      if (s.error) { const t = document.createElement("div"); t.className = "bad small"; t.textContent = s.error; li.append(t); li.classList.add("err"); }
      ol.append(li);
    }
    $("step-count").textContent = `${(lease.steps || []).length} / ${lease.max_steps || "?"}`;
    const last = (lease.steps || []).at(-1);
    if (last && last.error) showError(`last step: ${last.error}`);
    tick();
  }

  // ---------------------------------------------------------- the lease
  // Heartbeats extend the lease only while the labeler is active (a left
  // tab lets the task go back to the queue); an idle labeler is warned
  // before it ends, and a lost lease shows a banner with its draft.

  const clock = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;

  function renderLost() {
    const banner = $("lost-banner");
    const show = !!(lost || (lostNote && !state));
    banner.hidden = !show;
    if (!show) { lostNote = ""; return; }
    const steps = lost ? `${lost.steps} step${lost.steps === 1 ? "" : "s"}` : "";
    $("lost-text").textContent = lost && lost.reclaimable
      ? `Your lease on this task (${lost.template_id}) ended and it went back to the queue. Your draft (${steps}) is saved: reclaim it to go on.`
      : lost
        ? `Your lease on this task (${lost.template_id}) ended and someone else took it; your draft (${steps}) is gone.`
        : `This task is no longer yours: ${lostNote}`;
    $("reclaim").hidden = !(lost && lost.reclaimable);
    $("empty-text").textContent = "No task open: your lease ended.";
  }

  function tick() {
    if (!state) { $("lease-warning").hidden = true; return; }
    const s = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
    $("lease-timer").textContent = `lease ${clock(s)}`;
    const warn = s <= warnS;
    $("lease-warning").hidden = !warn;
    $("lease-timer").classList.toggle("bad", warn);
    if (warn) $("lease-warning-text").textContent = `Your lease on this task ends in ${clock(s)}: move the mouse or press a key to keep it.`;
    if (s === 0 && !busy) refresh().catch((e) => showError(e.message));
  }
  setInterval(tick, 1000);

  async function beat() {
    if (!state || lastActive <= lastBeat) return;  // idle since the last beat: let the lease run down
    lastBeat = Date.now();
    try {
      const r = await api("/api/heartbeat", { item_id: state.item_id });
      expiresAt = Date.now() + r.expires_in * 1000;
      tick();
    } catch (e) {
      showError(e.message);
      if (e.status === 409) { lostNote = e.message; await refresh(); }
    }
  }

  function active() {
    lastActive = Date.now();
    if (state && !$("lease-warning").hidden) beat();  // warned: extend at once
  }
  for (const ev of ["mousemove", "mousedown", "keydown", "wheel", "input", "touchstart"]) {
    document.addEventListener(ev, active, { passive: true, capture: true });
  }

  $("reclaim").addEventListener("click", () => {
    if (!lost) return;
    const item = lost.item_id;
    run(async () => { lostNote = ""; render(await api("/api/reclaim", { item_id: item })); });
  });

  async function refresh() {
    render(await api("/api/state"));
  }

  function takeThought() {
    const t = $("thought").value.trim();
    return t;
  }

  async function act(action) {
    if (!state) return;
    if (pending) { showError("A submit is under way: undo it (Esc) to go on acting."); return; }
    if (state.done) {  // the site ended the episode: a click now would start a new one
      $("marker").hidden = true;
      showError("The task is complete: submit it, or undo the last step.");
      return;
    }
    await run(async () => {
      const data = await api("/api/act", { ...action, item_id: state.item_id, thought: takeThought() });
      $("thought").value = "";
      render(data);
    });
  }

  // ---------------------------------------------------------- the screenshot

  const img = $("shot");
  const wrap = $("shot-wrap");

  function pointOf(ev) {
    const r = img.getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
    const y = Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height));
    return { x: Math.round(x * 10000) / 10000, y: Math.round(y * 10000) / 10000 };
  }

  function elementAt(p) {
    if (!state || !state.elements) return null;
    let best = null;
    for (const el of state.elements) {
      const [x, y, w, h] = el.box;
      if (el.role === "option") continue;
      if (p.x >= x && p.x <= x + w && p.y >= y && p.y <= y + h) {
        if (!best || w * h <= best.box[2] * best.box[3]) best = el;
      }
    }
    return best;
  }

  function place(div, box) {
    const r = img.getBoundingClientRect();
    const wr = wrap.getBoundingClientRect();
    div.style.left = `${r.left - wr.left + box[0] * r.width}px`;
    div.style.top = `${r.top - wr.top + box[1] * r.height}px`;
    div.style.width = `${box[2] * r.width}px`;
    div.style.height = `${box[3] * r.height}px`;
  }

  function showMarker(p) {
    const m = $("marker");
    const r = img.getBoundingClientRect();
    const wr = wrap.getBoundingClientRect();
    m.style.left = `${r.left - wr.left + p.x * r.width}px`;
    m.style.top = `${r.top - wr.top + p.y * r.height}px`;
    m.hidden = false;
  }
  img.addEventListener("load", () => { $("marker").hidden = true; });

  img.addEventListener("mousemove", (ev) => {
    const el = elementAt(pointOf(ev));
    const box = $("hover-box"), tip = $("hover-tip");
    if (!el) { box.hidden = true; tip.hidden = true; return; }
    place(box, el.box);
    box.hidden = false;
    tip.textContent = `${el.role}${el.name ? ` “${el.name}”` : ""}`;
    const wr = wrap.getBoundingClientRect();
    tip.style.left = `${ev.clientX - wr.left + 12}px`;
    tip.style.top = `${ev.clientY - wr.top + 12}px`;
    tip.hidden = false;
  });
  img.addEventListener("mouseleave", () => { $("hover-box").hidden = true; $("hover-tip").hidden = true; });

  function openSelect(el, p) {
    const menu = $("select-menu");
    menu.replaceChildren();
    const title = document.createElement("div");
    title.className = "menu-title";
    title.textContent = `choose an option of ${el.name || "the list"}`;
    menu.append(title);
    for (const o of state.elements.filter((e) => e.parent === el.id && e.role === "option")) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = o.name || o.value;
      b.addEventListener("click", () => {
        menu.hidden = true;
        act({ name: "select", x: p.x, y: p.y, text: o.value || o.name });
      });
      menu.append(b);
    }
    const r = img.getBoundingClientRect();
    const wr = wrap.getBoundingClientRect();
    menu.style.left = `${r.left - wr.left + p.x * r.width}px`;
    menu.style.top = `${r.top - wr.top + p.y * r.height}px`;
    menu.hidden = false;
  }

  img.addEventListener("click", (ev) => {
    if (busy || !state) return;
    const p = pointOf(ev);
    const el = elementAt(p);
    if (mode === "click" && el && el.tag === "select") { openSelect(el, p); return; }
    showMarker(p);
    act({ name: mode, x: p.x, y: p.y });
  });
  img.addEventListener("contextmenu", (ev) => {
    ev.preventDefault();
    if (busy || !state) return;
    const p = pointOf(ev);
    showMarker(p);
    act({ name: "right_click", x: p.x, y: p.y });
  });
  let wheelAt = 0;
  img.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    if (busy || !state || Date.now() - wheelAt < 400) return;
    wheelAt = Date.now();
    const p = pointOf(ev);
    act({ name: "scroll", x: p.x, y: p.y, dy: ev.deltaY > 0 ? 0.5 : -0.5 });
  }, { passive: false });

  // ---------------------------------------------------------- controls

  function setMode(m) {
    mode = m;
    for (const b of document.querySelectorAll(".mode")) b.classList.toggle("on", b.dataset.mode === m);
  }
  for (const b of document.querySelectorAll(".mode")) b.addEventListener("click", () => setMode(b.dataset.mode));

  $("type-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("type-text").value;
    if (!text) return;
    act({ name: "type", text }).then(() => {
      if (!$("error").textContent) $("type-text").value = "";
      // back to the page: the next keys are shortcuts again, not more text
      $("type-text").blur();
    });
  });
  $("key-form").addEventListener("submit", (ev) => { ev.preventDefault(); act({ name: "press", key: $("key").value }); });
  $("scroll-up").addEventListener("click", () => act({ name: "scroll", dy: -0.5 }));
  $("scroll-down").addEventListener("click", () => act({ name: "scroll", dy: 0.5 }));
  $("back").addEventListener("click", () => act({ name: "go_back" }));

  async function next() {
    await run(async () => {
      $("result").hidden = true;
      const data = await api("/api/next", {});
      render(data);
      if (!data.lease) $("empty-text").textContent = "The queue has no task for you right now.";
    });
  }
  async function undo() {
    if (!state) return;
    await run(async () => render(await api("/api/undo", { item_id: state.item_id })));
  }
  // Submitting is safe: an empty or one-step trajectory (on a task the site
  // did not say is complete) asks first, and a submit waits `undoMs` with
  // an Undo before it is sent.
  const undoMs = Number(app.dataset.undoMs || 0);
  let pending = null;

  function submit() {
    if (!state || busy || pending) return;
    const n = (state.steps || []).length;
    if (n === 0 || (n < 2 && !state.done)) {
      $("confirm-text").textContent = n === 0
        ? "This trajectory has no steps. Submit it anyway?"
        : "This trajectory has only one step and the task did not end. Submit it anyway?";
      $("confirm-submit").hidden = false;
      $("confirm-no").focus();  // the safe choice is the default
      return;
    }
    schedule();
  }

  function schedule() {
    $("confirm-submit").hidden = true;
    const until = Date.now() + undoMs;
    const show = () => {
      const s = Math.max(0, (until - Date.now()) / 1000);
      $("pending-text").textContent = `Submitting in ${s.toFixed(1)} s…`;
    };
    show();
    $("submit-pending").hidden = false;
    $("submit-undo").focus();
    const ticker = setInterval(show, 100);
    pending = { ticker, timer: setTimeout(() => { stopPending(); send(); }, undoMs) };
  }

  function stopPending() {
    if (!pending) return;
    clearTimeout(pending.timer);
    clearInterval(pending.ticker);
    pending = null;
    $("submit-pending").hidden = true;
    document.activeElement.blur();
  }

  function cancelSubmit() {
    const was = !!pending || !$("confirm-submit").hidden;
    stopPending();
    $("confirm-submit").hidden = true;
    return was;
  }
  $("confirm-yes").addEventListener("click", schedule);
  $("confirm-no").addEventListener("click", cancelSubmit);
  $("submit-undo").addEventListener("click", cancelSubmit);

  async function send() {
    if (!state) return;
    await run(async () => {
      const answer = $("answer").value;
      const r = await api("/api/submit", { item_id: state.item_id, answer, thought: takeThought() });
      $("answer").value = "";
      $("thought").value = "";
      render({ lease: null, progress: r.progress });
      const res = $("result");
      res.textContent = r.passed
        ? `Submitted (${r.steps} steps): the judge passed it.`
        : `Submitted (${r.steps} steps), but the judge did not pass it: ${r.reason}`;
      res.className = `flash ${r.passed ? "ok" : "bad"}`;
      res.hidden = false;
      $("empty-text").textContent = "Done. Take the next task when ready.";
    });
  }
  function askSkip() {
    if (!state) return;
    $("skip-form").hidden = false;
    $("skip-reason").focus();
  }
  $("skip-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!state) return;
    const note = $("skip-note").value.trim();
    const reason = $("skip-reason").value + (note ? `: ${note}` : "");
    await run(async () => {
      const r = await api("/api/skip", { item_id: state.item_id, reason });
      $("skip-form").hidden = true;
      $("skip-note").value = "";
      render({ lease: null, progress: r.progress });
      $("empty-text").textContent = "Skipped. Take the next task when ready.";
    });
  });
  $("skip-cancel").addEventListener("click", () => { $("skip-form").hidden = true; });
  $("next").addEventListener("click", next);
  $("undo").addEventListener("click", undo);
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", askSkip);

  // ---------------------------------------------------------- keyboard

  document.addEventListener("keydown", (ev) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") { ev.preventDefault(); submit(); return; }
    if (ev.key === "Escape") {
      if (cancelSubmit()) { ev.preventDefault(); return; }
      $("select-menu").hidden = true;
      $("skip-form").hidden = true;
      if (typing) document.activeElement.blur();
      return;
    }
    if (typing || ev.altKey) return;
    if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "z") { ev.preventDefault(); undo(); return; }
    if (ev.ctrlKey || ev.metaKey) return;
    const k = ev.key.toLowerCase();
    const keys = {
      n: next, u: undo, s: askSkip, b: () => act({ name: "go_back" }),
      t: () => $("type-text").focus(), k: () => $("key").focus(),
      "1": () => setMode("click"), "2": () => setMode("double_click"),
      "3": () => setMode("right_click"), "4": () => setMode("hover"),
      "?": () => { const d = document.querySelector(".shortcuts"); d.open = !d.open; },
    };
    if (keys[k]) { ev.preventDefault(); keys[k](); }
  });

  window.addEventListener("resize", () => { $("hover-box").hidden = true; $("select-menu").hidden = true; });
  refresh().catch((e) => showError(e.message));
})();
