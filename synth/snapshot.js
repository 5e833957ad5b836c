// synth's in-page helper, installed in every document by BrowserEnv
// (context.add_init_script). It keeps element ids stable for the life of a
// document, takes the compact accessibility snapshot, and resolves an action's
// target (by id or by point) in one round trip, and tells when the page has
// settled (see `settle`).
(() => {
  if (window.__synth) return;
  const pending = watchPendingWork();
  const ids = new WeakMap();
  const nodes = new Map();
  let next = 1;

  const INTERACTIVE = new Set([
    "A", "BUTTON", "INPUT", "SELECT", "TEXTAREA", "SUMMARY", "LABEL", "IMG",
    "SVG", "CANVAS", "VIDEO", "IFRAME", "OPTION",
  ]);
  const HEADINGS = new Set(["H1", "H2", "H3", "H4", "H5", "H6"]);
  const TAG_ROLES = {
    BUTTON: "button", SELECT: "combobox", TEXTAREA: "textbox", OPTION: "option",
    IMG: "img", SVG: "img", UL: "list", OL: "list", LI: "listitem", TABLE: "table",
    TR: "row", TD: "cell", TH: "columnheader", LABEL: "label", NAV: "navigation",
    FORM: "form", P: "paragraph", SUMMARY: "button", DIALOG: "dialog", CANVAS: "canvas",
    MAIN: "main", HEADER: "banner", FOOTER: "contentinfo", ASIDE: "complementary",
  };
  const INPUT_ROLES = {
    checkbox: "checkbox", radio: "radio", submit: "button", button: "button",
    reset: "button", image: "button", range: "slider", search: "searchbox",
    number: "spinbutton",
  };
  const FULL_TEXT_ROLES = new Set([
    "link", "button", "option", "heading", "label", "listitem", "cell",
    "columnheader", "tab", "menuitem", "treeitem",
  ]);

  const clean = (s, n = 120) => (s || "").replace(/\s+/g, " ").trim().slice(0, n);

  function idOf(el) {
    let id = ids.get(el);
    if (id === undefined) {
      id = next++;
      ids.set(el, id);
      nodes.set(id, el);
    }
    return id;
  }

  function role(el) {
    const explicit = el.getAttribute("role");
    if (explicit) return explicit.split(" ")[0];
    const tag = el.tagName;
    if (tag === "A") return el.hasAttribute("href") ? "link" : "generic";
    if (tag === "INPUT") return INPUT_ROLES[el.type] || "textbox";
    if (tag === "SELECT" && el.multiple) return "listbox";
    if (HEADINGS.has(tag)) return "heading";
    return TAG_ROLES[tag] || (ownText(el) ? "text" : "generic");
  }

  function ownText(el) {
    let t = "";
    for (const c of el.childNodes) if (c.nodeType === 3) t += c.data;
    return clean(t);
  }

  function name(el, r) {
    const aria = el.getAttribute("aria-label");
    if (aria) return clean(aria);
    const by = el.getAttribute("aria-labelledby");
    if (by) {
      const t = by.split(/\s+/).map((i) => document.getElementById(i)).filter(Boolean)
        .map((e) => e.innerText).join(" ");
      if (t.trim()) return clean(t);
    }
    const tag = el.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") {
      if (el.labels && el.labels.length) return clean(el.labels[0].innerText);
      const prev = el.previousElementSibling;
      if (prev && prev.tagName === "LABEL" && !prev.htmlFor) return clean(prev.innerText);
      if (tag === "INPUT" && ["submit", "button", "reset"].includes(el.type)) return clean(el.value);
      return clean(el.getAttribute("placeholder") || el.getAttribute("title") || "");
    }
    if (tag === "IMG") return clean(el.getAttribute("alt") || el.getAttribute("title") || "");
    if (FULL_TEXT_ROLES.has(r)) return clean(el.innerText || el.textContent);
    // Text with inline markup ("Enter <b>bob</b> ...") reads as one sentence.
    if (ownText(el)) return clean(el.innerText || el.textContent, 200);
    return clean(el.getAttribute("title") || "");
  }

  function value(el) {
    const tag = el.tagName;
    if (tag === "SELECT") {
      const o = el.options[el.selectedIndex];
      return o ? clean(o.text) : "";
    }
    if (tag === "TEXTAREA") return el.value;
    if (tag === "INPUT" && !["checkbox", "radio", "submit", "button", "reset"].includes(el.type)) {
      return el.type === "password" ? "*".repeat(el.value.length) : el.value;
    }
    return null;
  }

  function keep(el, rect) {
    if (INTERACTIVE.has(el.tagName.toUpperCase())) return true;
    if (el.hasAttribute("role") || el.hasAttribute("tabindex") || el.hasAttribute("onclick")) return true;
    if (el.isContentEditable || HEADINGS.has(el.tagName)) return true;
    if (ownText(el)) return true;
    if (el.childElementCount === 0 && (el.id || el.className)) return true;
    return false;
  }

  function visible(el, rect) {
    if (rect.width <= 0 || rect.height <= 0) return false;
    const s = getComputedStyle(el);
    return s.visibility !== "hidden" && s.display !== "none";
  }

  const intersects = (r, a) =>
    r.right > a.x && r.bottom > a.y && r.left < a.x + a.width && r.top < a.y + a.height;

  function info(el, parent, rect, withSelector, area) {
    const r = role(el);
    const v = value(el);
    const checkable = el.tagName === "INPUT" && (el.type === "checkbox" || el.type === "radio");
    return {
      id: idOf(el),
      parent: parent,
      tag: el.tagName.toLowerCase(),
      role: r,
      name: name(el, r),
      value: v,
      checked: checkable ? el.checked : null,
      focused: document.activeElement === el,
      html_id: el.id || "",
      html_class: typeof el.className === "string" ? el.className : (el.getAttribute("class") || ""),
      box: { x: rect.left, y: rect.top, width: rect.width, height: rect.height },
      in_view: area ? intersects(rect, area) : true,
      selector: withSelector ? selector(el) : "",
    };
  }

  function selector(el) {
    const parts = [];
    for (let e = el; e && e.nodeType === 1 && e !== document.documentElement; e = e.parentElement) {
      if (e.id && document.querySelectorAll("#" + CSS.escape(e.id)).length === 1) {
        parts.unshift("#" + CSS.escape(e.id));
        break;
      }
      let part = e.tagName.toLowerCase();
      const parent = e.parentElement;
      if (parent) {
        const same = Array.from(parent.children).filter((c) => c.tagName === e.tagName);
        if (same.length > 1) part += `:nth-of-type(${same.indexOf(e) + 1})`;
      }
      parts.unshift(part);
    }
    return parts.join(" > ");
  }

  // Every visible element worth naming under `root` (the whole document by
  // default), in document order, each flagged with whether it is in `area`.
  // Popups that widgets attach to <body> outside `root` (autocomplete menus,
  // date pickers, tooltips) are kept too when they are drawn over `area`.
  function snapshot(area, maxElements, rootSelector) {
    const out = [];
    // outside: el is outside `root`, and so is kept only if it (or a kept
    // ancestor of it) is drawn over `area`.
    const walk = (el, parentId, outside = false) => {
      if (out.length >= maxElements) return;
      const rect = el.getBoundingClientRect();
      let myId = parentId;
      if (el.tagName === "SELECT") {
        if (visible(el, rect)) {
          const sel = info(el, parentId, rect, false, area);
          out.push(sel);
          for (const o of el.options) {
            const oi = info(o, sel.id, rect, false, area);
            oi.checked = null;
            oi.value = o.value;
            out.push(oi);
          }
        }
        return;
      }
      const s = getComputedStyle(el);
      if (s.display === "none") return;
      if (rect.width > 0 && rect.height > 0 && s.visibility !== "hidden" && keep(el, rect) &&
          (!outside || intersects(rect, area))) {
        const i = info(el, parentId, rect, false, area);
        out.push(i);
        myId = i.id;
        outside = false;
      }
      for (const c of el.children) walk(c, myId, outside);
    };
    const root = (rootSelector && document.querySelector(rootSelector)) || document.body;
    if (root) walk(root, null);
    if (root && root !== document.body && document.body && area) {
      for (const c of document.body.children) if (!c.contains(root)) walk(c, null, true);
    }
    return { title: document.title, url: location.href, elements: out };
  }

  function keptAncestor(el) {
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      const rect = e.getBoundingClientRect();
      if (keep(e, rect) && visible(e, rect)) return e;
    }
    return el;
  }

  function parentIdOf(el) {
    for (let e = el.parentElement; e; e = e.parentElement) if (ids.has(e)) return ids.get(e);
    return null;
  }

  function scrollable(el) {
    for (let e = el.parentElement; e && e !== document.body; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (/(auto|scroll)/.test(s.overflowY + s.overflowX) &&
          (e.scrollHeight > e.clientHeight || e.scrollWidth > e.clientWidth)) return e;
    }
    return null;
  }

  // How to bring `rect` into `area`: wheel deltas and the point to wheel at
  // (inside the element's scroll container), or null when it is already in.
  // An element whose centre is in view is clicked where it is, as a person
  // clicks a button that is only a little cut off, without scrolling first.
  function scrollNeeded(el, rect, area) {
    const box = scrollable(el);
    let view = { x: area.x, y: area.y, width: area.width, height: area.height };
    if (box) {
      const b = box.getBoundingClientRect();
      const x0 = Math.max(b.left, area.x), y0 = Math.max(b.top, area.y);
      const x1 = Math.min(b.right, area.x + area.width), y1 = Math.min(b.bottom, area.y + area.height);
      if (x1 > x0 && y1 > y0) view = { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
    }
    const mx = rect.left + rect.width / 2, my = rect.top + rect.height / 2;
    if (mx >= view.x && mx <= view.x + view.width && my >= view.y && my <= view.y + view.height) return null;
    const cx = view.x + view.width / 2, cy = view.y + view.height / 2;
    return {
      x: cx, y: cy,
      dx: rect.width > view.width ? 0 : Math.round(rect.left + rect.width / 2 - cx),
      dy: Math.round(rect.top + Math.min(rect.height, view.height) / 2 - cy),
    };
  }

  // Where to click `el`: its centre, unless something else (an overlapping
  // element) is on top there; then the visible point of it nearest the centre,
  // as a person would click the part of it they can see.
  function aimPoint(el, rect, area) {
    const cx = rect.left + rect.width / 2, cy = rect.top + rect.height / 2;
    const hits = (px, py) => {
      const h = document.elementFromPoint(px, py);
      return h !== null && (h === el || el.contains(h));
    };
    // prefer a point a few pixels away from any edge of what covers the
    // element: input hit-testing and elementFromPoint may round differently
    const clear = (px, py, d) => hits(px, py) && hits(px - d, py - d) && hits(px + d, py + d) &&
      hits(px - d, py + d) && hits(px + d, py - d);
    if (clear(cx, cy, 4)) return [cx, cy];
    const x0 = Math.max(rect.left, area ? area.x : 0, 0);
    const y0 = Math.max(rect.top, area ? area.y : 0, 0);
    const x1 = Math.min(rect.right, area ? area.x + area.width : innerWidth, innerWidth);
    const y1 = Math.min(rect.bottom, area ? area.y + area.height : innerHeight, innerHeight);
    const points = [];
    const n = 8;
    for (let i = 0; i <= n; i++) {
      for (let j = 0; j <= n; j++) {
        // inset by a pixel so a point is never on the element's very edge
        const px = x0 + 1 + (x1 - x0 - 2) * i / n, py = y0 + 1 + (y1 - y0 - 2) * j / n;
        points.push([px, py, (px - cx) ** 2 + (py - cy) ** 2]);
      }
    }
    points.sort((a, b) => a[2] - b[2]);
    for (const d of [4, 2]) for (const [px, py] of points) if (clear(px, py, d)) return [px, py];
    for (const [px, py] of points) if (hits(px, py)) return [px, py];
    return [cx, cy];
  }

  // Resolve the target of an action: by element id (aim at its centre; if it
  // is outside the observed area, say how to scroll to it) or by point (the
  // element under it).
  function resolve(req) {
    let el, x, y;
    if (req.id !== null && req.id !== undefined) {
      el = nodes.get(req.id);
      if (!el || !el.isConnected) return { error: `element [${req.id}] is not on the page any more` };
      let rect = el.getBoundingClientRect();
      if (el.tagName === "OPTION" && el.closest("select")) rect = el.closest("select").getBoundingClientRect();
      if (rect.width <= 0 || rect.height <= 0) return { error: `element [${req.id}] is not visible` };
      const scroll = req.area ? scrollNeeded(el, rect, req.area) : null;
      if (scroll && (scroll.dx || scroll.dy)) return { scroll };
      const target = el.tagName === "OPTION" && el.closest("select") || el;
      [x, y] = aimPoint(target, rect, req.area);
      // Record what is really under the point: if something covers the
      // target there, that is what the click will hit.
      const hit = document.elementFromPoint(x, y);
      if (hit && hit !== target && !target.contains(hit)) el = keptAncestor(hit);
    } else {
      x = req.x;
      y = req.y;
      const hit = document.elementFromPoint(x, y);
      if (!hit) return { x, y, element: null };
      el = keptAncestor(hit);
    }
    const rect = el.getBoundingClientRect();
    return { x, y, element: info(el, parentIdOf(el), rect, true, req.area) };
  }

  function byId(id) {
    const el = nodes.get(id);
    return el && el.isConnected ? el : null;
  }


  // ------------------------------------------------------------ settling
  // An action is taken, and an observation recorded, only on a settled page,
  // during recording and replay alike, so neither depends on the machine's
  // load: no document loading, no finite animation running (Web Animations,
  // CSS transitions, jQuery's effect queue), no fetch/XHR the page started
  // still in flight, no short timer pending (a debounce, a `setTimeout(fn, 0)`
  // that moves a popup into place), no visible image still loading, and the
  // boxes of the interactive elements the same in two consecutive frames (as
  // Playwright's own "stable" actionability check).

  // Installed before any page script runs (an init script): counts the page's
  // in-flight requests and pending short timers. Timers re-armed from their
  // own callbacks more than twice (polling loops, clocks) are not waited for.
  function watchPendingWork() {
    const SHORT_TIMER_MS = 1000;
    const state = { requests: 0, timers: new Map(), frames: new Set(), depth: 0 };
    const native = { setTimeout: window.setTimeout.bind(window), clearTimeout: window.clearTimeout.bind(window),
                     raf: window.requestAnimationFrame.bind(window) };
    window.setTimeout = function (fn, delay, ...args) {
      const depth = state.depth + 1;
      let id;
      const wrapped = typeof fn === "function" ? function () {
        state.timers.delete(id);
        const outer = state.depth;
        state.depth = depth;
        try { return fn.apply(this, args); } finally { state.depth = outer; }
      } : fn;
      id = native.setTimeout(wrapped, delay);
      if (typeof fn === "function" && (Number(delay) || 0) <= SHORT_TIMER_MS && depth <= 2) state.timers.set(id, depth);
      return id;
    };
    window.clearTimeout = function (id) { state.timers.delete(id); return native.clearTimeout(id); };
    // Frame callbacks likewise: a change scheduled for the next frame is pending work.
    window.requestAnimationFrame = function (fn) {
      const depth = state.depth + 1;
      let id;
      id = native.raf(function (t) {
        state.frames.delete(id);
        const outer = state.depth;
        state.depth = depth;
        try { return fn(t); } finally { state.depth = outer; }
      });
      if (depth <= 2) state.frames.add(id);
      return id;
    };
    const cancelFrame = window.cancelAnimationFrame.bind(window);
    window.cancelAnimationFrame = function (id) { state.frames.delete(id); return cancelFrame(id); };
    if (window.fetch) {
      const fetch = window.fetch;
      window.fetch = function (...args) {
        state.requests++;
        const done = () => { state.requests--; };
        const p = fetch.apply(this, args);
        p.then(done, done);
        return p;
      };
    }
    const send = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.send = function (...args) {
      state.requests++;
      this.addEventListener("loadend", () => { state.requests--; }, { once: true });
      return send.apply(this, args);
    };
    return { state, native };
  }

  const SIGNATURE_SELECTOR = "a,button,input,select,textarea,label,img,svg,canvas,iframe,summary,li,td,th," +
    "h1,h2,h3,h4,h5,h6,[role],[onclick],[tabindex],[contenteditable]";

  function busy(area) {
    if (document.readyState !== "complete") return "document loading";
    if (pending.state.requests > 0) return `${pending.state.requests} request(s) in flight`;
    if (pending.state.timers.size > 0) return `${pending.state.timers.size} short timer(s) pending`;
    if (pending.state.frames.size > 0) return "a frame callback pending";
    const jq = window.jQuery;
    if (jq && jq.timers && jq.timers.length) return "jQuery animation running";
    if (document.getAnimations) {
      for (const a of document.getAnimations()) {
        if (a.playState !== "running") continue;
        const end = a.effect && a.effect.getComputedTiming ? a.effect.getComputedTiming().endTime : Infinity;
        if (Number.isFinite(end)) return "animation running";
      }
    }
    for (const img of document.images) {
      if (img.complete || img.loading === "lazy") continue;
      const r = img.getBoundingClientRect();
      if (r.width > 0 && r.height > 0 && (!area || intersects(r, area))) return "image loading";
    }
    return null;
  }

  function layoutSignature(root) {
    const els = (root || document.body || document.documentElement).querySelectorAll(SIGNATURE_SELECTOR);
    const parts = [window.scrollX, window.scrollY];
    const n = Math.min(els.length, 2000);
    for (let i = 0; i < n; i++) {
      const r = els[i].getBoundingClientRect();
      parts.push(Math.round(r.left), Math.round(r.top), Math.round(r.width), Math.round(r.height));
    }
    return parts.join(",");
  }

  // One rendered frame (or 100 ms where frames do not come: a hidden page).
  const nextFrame = () => new Promise((resolve) => {
    let done = false;
    const go = () => { if (!done) { done = true; resolve(); } };
    pending.native.raf(go);
    pending.native.setTimeout(go, 100);
  });

  // Whether the recorded target is at the point: the element hit there or one
  // of its ancestors has its role and name, and, when it has no name (an icon,
  // a bare <span>), its size too (within 2 px), since a nameless role alone
  // matches any container.
  function targetAt(x, y, expected) {
    for (let e = document.elementFromPoint(x, y); e && e.nodeType === 1; e = e.parentElement) {
      const r = role(e);
      if (r === expected.role && name(e, r) === expected.name) {
        if (expected.name) return true;
        const rect = e.getBoundingClientRect();
        if (Math.abs(rect.width - expected.width) <= 2 && Math.abs(rect.height - expected.height) <= 2) return true;
      }
      if (e === document.body) break;
    }
    return false;
  }

  // The recorded target found by its selector when it is not at the recorded
  // point (the layout moved): where to aim instead, or null.
  function relocate(expected, area) {
    if (!expected.selector) return null;
    let el;
    try { el = document.querySelector(expected.selector); } catch (e) { return null; }
    if (!el) return null;
    const rect = el.getBoundingClientRect();
    if (rect.width <= 0 || rect.height <= 0) return null;
    const [x, y] = aimPoint(el, rect, area);
    return { x, y };
  }

  // Wait until the page has settled (see above) and, given `req.point` and
  // `req.expected` ({role, name, selector}), until the expected element is at
  // the point. Never longer than `req.timeout` ms: then say what was still busy.
  // The layout when the page last settled: if nothing is pending and the
  // layout is still that one, the page has not moved since, and no frame
  // needs waiting for (a pointer move with no hover effect, a replay's
  // pre-action check right after an observation).
  let settledSignature = null;

  async function settle(req) {
    const t0 = performance.now();
    const root = req.root ? document.querySelector(req.root) : null;
    let last = settledSignature;
    let why = "layout moving";
    while (true) {
      // the signature first: the layout it forces starts CSS transitions a
      // style change asked for, which busy() then sees
      let sig = layoutSignature(root);
      const reason = busy(req.area);
      if (reason) sig = null;
      const still = sig !== null && sig === last;
      const onTarget = !req.expected || targetAt(req.point.x, req.point.y, req.expected);
      if (still && onTarget) {
        settledSignature = sig;
        return { settled: true, ms: performance.now() - t0 };
      }
      why = reason || (still ? "the recorded target is not at the point" : "layout moving");
      if (performance.now() - t0 >= req.timeout) break;
      last = sig;
      await nextFrame();
    }
    const out = { settled: false, ms: performance.now() - t0, why };
    if (req.expected && !targetAt(req.point.x, req.point.y, req.expected)) {
      out.target = false;
      out.relocated = relocate(req.expected, req.area);
    }
    return out;
  }

  window.__synth = { snapshot, resolve, byId, settle };
})();
