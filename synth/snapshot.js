// synth's in-page helper, installed in every document by BrowserEnv
// (context.add_init_script). It keeps element ids stable for the life of a
// document, takes the compact accessibility snapshot, and resolves an action's
// target (by id or by point) in one round trip, and tells when the page has
// settled (see `settle`).
(() => {
  if (window.__synth) return;
  const pending = watchPendingWork();
  const clickListeners = watchClickListeners();
  const ids = new WeakMap();
  const nodes = new Map();
  let next = 1;

  const INTERACTIVE = new Set([
    "A", "BUTTON", "INPUT", "SELECT", "TEXTAREA", "SUMMARY", "LABEL", "IMG",
    "SVG", "CANVAS", "VIDEO", "IFRAME", "OPTION",
  ]);
  const HEADINGS = new Set(["H1", "H2", "H3", "H4", "H5", "H6"]);

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

  // ------------------------------------------------------------ roles and names
  // Roles and accessible names as Chromium computes them for its accessibility
  // tree (HTML-AAM and accname 1.2, with Chromium's own choices where the specs
  // leave room), so that an element of the snapshot reads as it does to a
  // screen reader and in a CDP accessibility tree. bench/snapshot.py measures
  // the agreement, element by element, on every bundled site. Roles use ARIA's
  // names; where Chromium has its own (image, LabelText, DisclosureTriangle,
  // InputTime, ...) synth says img, label, button, time, ... (probe.py's
  // CHROMIUM_ROLES maps one to the other).

  const ARIA_ROLES = new Set((
    "alert alertdialog application article banner blockquote button caption cell checkbox code columnheader " +
    "combobox comment complementary contentinfo definition deletion dialog directory document emphasis feed " +
    "figure form generic grid gridcell group heading image img insertion link list listbox listitem log main " +
    "mark marquee math menu menubar menuitem menuitemcheckbox menuitemradio meter navigation none note option " +
    "paragraph presentation progressbar radio radiogroup region row rowgroup rowheader scrollbar search " +
    "searchbox separator slider spinbutton status strong subscript suggestion superscript switch tab table " +
    "tablist tabpanel term textbox time timer toolbar tooltip tree treegrid treeitem").split(" "));
  // ARIA attributes that keep an element's role when it says role="none"
  const GLOBAL_ARIA = ["aria-label", "aria-labelledby", "aria-describedby", "aria-details", "aria-live",
    "aria-controls", "aria-owns", "aria-flowto", "aria-haspopup", "aria-keyshortcuts", "aria-roledescription",
    "aria-errormessage", "aria-invalid", "aria-busy", "aria-atomic", "aria-relevant", "aria-current",
    "aria-disabled", "aria-dropeffect", "aria-grabbed"];
  // roles that exist only inside one of these (else Chromium exposes a generic)
  const CONTEXT = { option: ["listbox", "group", "combobox"], treeitem: ["tree", "group"],
                    listitem: ["list", "group", "directory"] };
  const INPUT_ROLES = {
    checkbox: "checkbox", radio: "radio", submit: "button", button: "button", reset: "button",
    image: "button", file: "button", range: "slider", search: "searchbox", number: "spinbutton",
    date: "date", month: "datetime", week: "datetime", "datetime-local": "datetime", time: "time",
    color: "color", hidden: "none",
  };
  const TAG_ROLES = {
    BUTTON: "button", TEXTAREA: "textbox", OPTION: "option", UL: "list", OL: "list", MENU: "list",
    LI: "listitem", TABLE: "table", TR: "row", TD: "cell", THEAD: "rowgroup", TBODY: "rowgroup",
    TFOOT: "rowgroup", LABEL: "label", NAV: "navigation", FORM: "form", P: "paragraph", DIALOG: "dialog",
    CANVAS: "canvas", MAIN: "main", ARTICLE: "article", DETAILS: "group", FIELDSET: "group", HR: "separator",
    PROGRESS: "progressbar", METER: "meter", OUTPUT: "status", DT: "term", DD: "definition", IFRAME: "iframe",
    VIDEO: "video", AUDIO: "audio", SEARCH: "search", OPTGROUP: "group", FIGURE: "figure",
    BLOCKQUOTE: "blockquote", CAPTION: "caption", ADDRESS: "group",
  };
  // Chromium names these from their content (and a labelled control, a
  // heading, ... from its label, aria-label, title first)
  const NAME_FROM_CONTENT = new Set([
    "button", "cell", "checkbox", "columnheader", "rowheader", "gridcell", "heading", "link", "menuitem",
    "menuitemcheckbox", "menuitemradio", "option", "radio", "switch", "tab", "treeitem", "tooltip", "term",
    "comment", "caption",
  ]);
  // containers whose content never counts towards an ancestor's name
  const NO_CONTENT_IN_NAME = new Set([
    "navigation", "main", "banner", "contentinfo", "complementary", "region", "search", "form", "dialog",
    "alertdialog", "application", "document", "feed", "log", "marquee", "timer", "toolbar", "tablist",
    "tabpanel", "tree", "treegrid", "grid", "menu", "menubar", "listbox", "radiogroup", "article", "note",
    "math", "img", "iframe", "video", "audio", "canvas", "meter", "progressbar", "scrollbar", "separator",
    "figure", "status", "alert",
  ]);
  // roles Chromium names from aria-label and aria-labelledby only, never a title
  const NAME_PROHIBITED = new Set(["generic", "text", "none", "paragraph", "code", "deletion", "emphasis",
    "insertion", "strong", "subscript", "superscript", "caption", "mark", "time"]);
  const TEXT_CONTROL = new Set(["textbox", "searchbox", "combobox", "listbox", "slider", "spinbutton"]);
  // what a name falls back to, where Chromium computes none, for these
  const TEXT_ROLES = new Set(["text", "label", "listitem", "paragraph", "term", "definition", "status",
    "alert", "caption", "row", "cell"]);
  const REPLACED = new Set(["IMG", "INPUT", "SELECT", "TEXTAREA", "BUTTON", "VIDEO", "AUDIO", "CANVAS",
    "IFRAME", "svg", "OBJECT", "EMBED", "METER", "PROGRESS"]);
  // input types that take a list of suggestions (a combobox then)
  const LIST_INPUTS = new Set(["text", "email", "tel", "url", "search"]);

  // While one snapshot is taken, styles and roles are computed once per element.
  let cache = null;
  function styleOf(el) {
    if (!cache) return getComputedStyle(el);
    let s = cache.styles.get(el);
    if (s === undefined) { s = getComputedStyle(el); cache.styles.set(el, s); }
    return s;
  }

  function focusable(el) {
    if (el.hasAttribute("tabindex") || el.isContentEditable) return true;
    switch (el.tagName) {
      case "A": case "AREA": return el.hasAttribute("href");
      case "INPUT": return el.type !== "hidden";
      case "BUTTON": case "SELECT": case "TEXTAREA": case "IFRAME": case "SUMMARY": return true;
      case "AUDIO": case "VIDEO": return el.hasAttribute("controls");
    }
    return false;
  }

  function role(el) {
    if (cache) {
      let r = cache.roles.get(el);
      if (r === undefined) { r = computeRole(el); cache.roles.set(el, r); }
      return r;
    }
    return computeRole(el);
  }

  function computeRole(el) {
    const r = explicitRole(el) || implicitRole(el);
    if (r === "generic" || r === "none") return ownText(el) ? "text" : "generic";
    return r;
  }

  // the first role token Chromium knows; role="none" only where nothing keeps
  // the element's own role (focus, a global ARIA attribute)
  function explicitRole(el) {
    const attr = el.getAttribute("role");
    if (!attr) return null;
    for (let t of attr.trim().toLowerCase().split(/\s+/)) {
      if (!ARIA_ROLES.has(t) && !t.startsWith("doc-") && !t.startsWith("graphics-")) continue;
      if (t === "presentation") t = "none";
      if (t === "image") t = "img";
      if (t === "none" && (focusable(el) || GLOBAL_ARIA.some((a) => el.hasAttribute(a)))) return null;
      if (t === "none" && (el.tagName === "IMG" || el.tagName === "svg")) return "none";
      const context = CONTEXT[t];
      if (context && !inContext(el, context)) return "generic";
      return t;
    }
    return null;
  }

  // whether the nearest ancestor with a role of its own has one of `roles`
  function inContext(el, roles) {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const r = role(p);
      if (r === "generic" || r === "text") continue;
      return roles.includes(r);
    }
    return false;
  }

  function implicitRole(el) {
    const tag = el.tagName;
    switch (tag) {
      case "A": case "AREA":
        return el.hasAttribute("href") || clickable(el) ? "link" : "generic";
      case "INPUT": {
        const type = (el.getAttribute("type") || "text").toLowerCase();
        if (el.hasAttribute("list") && LIST_INPUTS.has(type)) {
          return "combobox";
        }
        return INPUT_ROLES[type] || "textbox";
      }
      case "SELECT": return el.multiple || el.size > 1 ? "listbox" : "combobox";
      case "IMG": return el.getAttribute("alt") === "" && !el.hasAttribute("title") &&
        !GLOBAL_ARIA.some((a) => el.hasAttribute(a)) ? "none" : "img";
      case "TH": return headerRole(el);
      case "SUMMARY": {
        const d = el.parentElement;
        return d && d.tagName === "DETAILS" && d.querySelector(":scope > summary") === el ? "button" : "generic";
      }
      case "HEADER": case "FOOTER": {
        const scoped = el.parentElement && el.parentElement.closest("article, aside, main, nav, section");
        if (scoped) return tag === "HEADER" ? "sectionheader" : "sectionfooter";
        return tag === "HEADER" ? "banner" : "contentinfo";
      }
      case "ASIDE": return "complementary";
      case "SECTION": return hasOwnLabel(el) ? "region" : "generic";
    }
    if (HEADINGS.has(tag)) return "heading";
    if (el instanceof SVGElement) return svgRole(el);
    const r = TAG_ROLES[tag];
    if (r) return r;
    // an element whose content is an image (`content: url(...)`) is one
    return /^url\(/.test(styleOf(el).content) ? "img" : "generic";
  }

  const SVG_SHAPES = new Set(["circle", "ellipse", "line", "path", "polygon", "polyline", "rect", "use", "image"]);

  // SVG as Chromium exposes it: an <svg> with a name or nothing the tree
  // shows inside is an image, any other a graphics document; a shape is a
  // graphics symbol when it is named or one can act on it
  function svgRole(el) {
    const tag = el.tagName;
    const named = () => hasOwnLabel(el) || !!el.querySelector(":scope > title");
    if (tag === "svg") {
      if (named()) return "img";
      // with nothing inside that the tree shows (text, a shape one can act
      // on, a link), an <svg> is one image
      for (const d of el.querySelectorAll("*")) {
        const t = d.tagName;
        if (t === "text" && d.textContent.trim() || t === "a" || t === "foreignObject" ||
            SVG_SHAPES.has(t) && svgRole(d) === "graphics-symbol") return "graphics-document";
      }
      return "img";
    }
    if (SVG_SHAPES.has(tag)) return named() || clickable(el) || focusable(el) ? "graphics-symbol" : "generic";
    if (tag === "g") return named() ? "group" : "generic";
    return "generic";
  }

  const hasOwnLabel = (el) => !!(el.getAttribute("aria-label") || el.getAttribute("title") || "").trim() ||
    el.hasAttribute("aria-labelledby");

  // <th>: a row header when a non-empty <td> is beside it in its row, as Chromium decides
  function headerRole(el) {
    const scope = (el.getAttribute("scope") || "").toLowerCase();
    if (scope === "row" || scope === "rowgroup") return "rowheader";
    if (scope === "col" || scope === "colgroup") return "columnheader";
    const cell = (c) => c && c.tagName === "TD" && c.textContent.trim() !== "";
    const header = (c) => c && c.tagName === "TH";
    const prev = el.previousElementSibling, nxt = el.nextElementSibling;
    if (!prev && !nxt) return "columnheader";
    if (header(prev) && header(nxt)) return "columnheader";
    if (cell(prev) || cell(nxt)) return "rowheader";
    const row = el.parentElement;
    if (!row || row.tagName !== "TR") return "columnheader";
    const first = row.firstElementChild, last = row.lastElementChild;
    if (cell(first) || cell(last)) return "rowheader";
    if (cell(first && first.nextElementSibling) || cell(last && last.previousElementSibling)) return "rowheader";
    return "columnheader";
  }

  function ownText(el) {
    let t = "";
    for (const c of el.childNodes) if (c.nodeType === 3) t += c.data;
    return clean(t);
  }

  // [name, where it came from]: "accname" (as the browser computes it), or
  // synth's own where the browser names nothing: "hidden-label" (a field's
  // own <label>, hidden), "nearby-label" (an unlabelled field named after
  // the <label> just before it, a label that labels no other control),
  // "text" (a text element's visible text).
  function nameOf(el, r) {
    const n = clean(accName(el, r));
    if (n) return [n, "accname"];
    if (isField(el)) {
      // its own <label>, hidden (display:none labels name nothing in the tree)
      const labels = el.labels ? Array.from(el.labels).filter(hidden) : [];
      const own = clean(labels.map((l) => l.textContent).join(" "));
      if (own) return [own, "hidden-label"];
      const prev = el.previousElementSibling;
      if (prev && prev.tagName === "LABEL" && !prev.htmlFor && !prev.control) {
        const t = clean(prev.innerText);
        if (t) return [t, "nearby-label"];
      }
    }
    if (TEXT_ROLES.has(r)) {
      const t = clean(el.innerText || el.textContent, 200);
      if (t) return [t, "text"];
    }
    return ["", ""];
  }

  const isField = (el) => el.tagName === "SELECT" || el.tagName === "TEXTAREA" ||
    el.tagName === "INPUT" && !["submit", "reset", "button", "image", "hidden"].includes(el.type);

  function name(el, r) { return nameOf(el, r)[0]; }

  function accName(el, r) {
    return textAlternative(el, { root: el, recursive: false, inLabelledBy: false, showHidden: false,
                                 visited: new Set() }, r);
  }

  // accname 1.2's text alternative of `el` (steps 2B-2I), Chromium's way
  function textAlternative(el, ctx, r = role(el)) {
    if (ctx.visited.has(el)) return "";
    ctx.visited.add(el);
    if (!ctx.inLabelledBy) {
      const by = el.getAttribute("aria-labelledby");
      if (by) {
        const parts = [];
        for (const id of by.trim().split(/\s+/)) {
          const ref = document.getElementById(id);
          if (!ref) continue;
          parts.push(textAlternative(ref, { root: ctx.root, recursive: true, inLabelledBy: true,
            showHidden: ctx.showHidden || hidden(ref), visited: new Set([...ctx.visited].filter((v) => v !== ref)) }));
        }
        const t = parts.join(" ").trim();
        if (t) return t;
      }
    }
    if (ctx.recursive) {
      if (el === ctx.root) return "";
      if (TEXT_CONTROL.has(r) && el !== ctx.root) return controlValue(el, r);
    }
    const label = (el.getAttribute("aria-label") || "").trim();
    if (label) return label;
    const native = nativeName(el, r, ctx);
    if (native !== null) return native;
    if (ctx.recursive ? !NO_CONTENT_IN_NAME.has(r) : NAME_FROM_CONTENT.has(r) || r === "row" && el.closest("[role=grid],[role=treegrid]")) {
      const t = ctx.recursive ? contents(el, ctx) : contents(el, ctx).trim();
      if (t.trim()) return t;
    }
    const title = NAME_PROHIBITED.has(r) ? "" : (el.getAttribute("title") || "").trim();
    if (title) return title;
    if (!ctx.recursive && (el.tagName === "INPUT" || el.tagName === "TEXTAREA")) {
      return (el.getAttribute("placeholder") || el.getAttribute("aria-placeholder") || "").trim();
    }
    if (!ctx.recursive && el.hasAttribute("aria-placeholder")) return el.getAttribute("aria-placeholder").trim();
    return "";
  }

  // the host language's own text alternative (labels, value, alt, legend, ...):
  // a string, or null to go on to the content and the title
  function nativeName(el, r, ctx) {
    const tag = el.tagName;
    if (!ctx.recursive && el.labels && el.labels.length) {
      // a hidden <label> names nothing (Trac's display:none "Search:")
      const t = Array.from(el.labels, (l) => hidden(l) ? "" : textAlternative(l, { ...ctx, recursive: true }))
        .join(" ").trim();
      if (t) return t;
    }
    if (tag === "INPUT") {
      const type = el.type;
      if (type === "submit" || type === "reset" || type === "button") {
        if (el.hasAttribute("value")) return el.getAttribute("value");
        if (type !== "button") return type === "submit" ? "Submit" : "Reset";
        return null;
      }
      if (type === "image") {
        return el.getAttribute("alt") || el.getAttribute("value") || el.getAttribute("title") || "Submit";
      }
      if (type === "file") return el.multiple ? "Choose Files" : "Choose File";
      return null;
    }
    if (tag === "IMG" || tag === "AREA") return el.getAttribute("alt");
    if (el instanceof SVGElement) {
      const t = el.querySelector(":scope > title");
      return t ? t.textContent : null;
    }
    if (r === "img" && tag !== "IMG") {
      const content = styleOf(el).content;  // content: url(...) / "alt text"
      const alt = content.indexOf(" / ");
      if (alt > 0) return content.slice(alt + 3).replace(/^["']|["']$/g, "");
    }
    if (tag === "OPTION") {
      // its label attribute, but only over text of its own (Chromium names
      // <option label="(unset)"></option> nothing)
      const l = el.getAttribute("label");
      return l && l.trim() && el.text.trim() ? l : null;
    }
    if (tag === "OPTGROUP") return el.getAttribute("label");
    const first = { FIELDSET: "LEGEND", FIGURE: "FIGCAPTION", TABLE: "CAPTION" }[tag];
    if (first && !ctx.recursive) {
      const c = Array.from(el.children).find((e) => e.tagName === first);
      if (c) {
        const t = textAlternative(c, { ...ctx, recursive: true }).trim();
        if (t) return t;
      }
    }
    return null;
  }

  // what an embedded control says inside another element's name
  function controlValue(el, r) {
    if (el.tagName === "SELECT") {
      return Array.from(el.selectedOptions, (o) => o.label || o.text).join(" ");
    }
    if (r === "slider" || r === "spinbutton") {
      return el.getAttribute("aria-valuetext") || el.getAttribute("aria-valuenow") || el.value || "";
    }
    if (el.tagName === "INPUT" || el.tagName === "TEXTAREA") return el.value;
    if (r === "combobox" || r === "listbox") {
      const sel = el.querySelector("[aria-selected=true]");
      return sel ? textAlternative(sel, { root: el, recursive: true, inLabelledBy: false, showHidden: false,
                                          visited: new Set() }) : (r === "combobox" ? el.textContent : "");
    }
    return el.textContent;
  }

  // hidden from the accessibility tree (display none, visibility hidden, aria-hidden, inert)
  function hidden(el) {
    if (el.closest(HIDDEN_SUBTREE)) return true;
    return !el.checkVisibility({ visibilityProperty: true });
  }

  // Chromium puts a space between the text of two children unless both are
  // inline parts of the same block of text
  function separate(el, s) {
    return REPLACED.has(el.tagName) || (s.display !== "inline");
  }

  function transform(text, s) {
    switch (s.textTransform) {
      case "uppercase": return text.toUpperCase();
      case "lowercase": return text.toLowerCase();
      case "capitalize": return text.replace(/(^|\s)(\S)/g, (m, a, b) => a + b.toUpperCase());
    }
    return text;
  }

  // Which elements may have a ::before or ::after box with content: a selector
  // made of the page's own rules that give one (their selectors without the
  // pseudo-element), so that asking the style of every element's pseudo-
  // elements (slow) is only done for those. Recomputed when the style sheets
  // change; true (ask every element) when a sheet cannot be read.
  let pseudoRules = { key: null, selector: "" };
  function pseudoSelector() {
    const sheets = [...document.styleSheets, ...(document.adoptedStyleSheets || [])];
    const counts = [];
    try {
      for (const sheet of sheets) counts.push(sheet.cssRules.length);
    } catch (e) {
      return true;  // a cross-origin sheet
    }
    const key = counts.join(",");
    if (pseudoRules.key === key) return pseudoRules.selector;
    const parts = [];
    const scan = (rules) => {
      for (const rule of rules) {
        if (rule.styleSheet) { scan(rule.styleSheet.cssRules); continue; }  // @import
        if (rule.cssRules && !(rule instanceof CSSStyleRule)) { scan(rule.cssRules); continue; }
        if (!(rule instanceof CSSStyleRule) || !/:(before|after)/i.test(rule.selectorText)) continue;
        const content = rule.style.getPropertyValue("content");
        if (content === "none" || content === "normal") continue;
        for (const sel of rule.selectorText.split(",")) {
          if (/:(before|after)/i.test(sel)) parts.push(sel.replace(/::?(before|after)\b.*$/i, "").trim() || "*");
        }
        if (rule.cssRules && rule.cssRules.length) scan(rule.cssRules);
      }
    };
    let selector;
    try {
      for (const sheet of sheets) scan(sheet.cssRules);
      selector = parts.length ? parts.join(", ") : "";
      if (selector) document.documentElement.matches(selector);  // throws if it does not parse
    } catch (e) {
      selector = true;
    }
    pseudoRules = { key, selector };
    return selector;
  }

  function mayHavePseudo(el) {
    if (el.tagName === "Q") return true;  // the UA's quotes
    let selector = cache ? cache.pseudo : undefined;
    if (selector === undefined) {
      selector = pseudoSelector();
      if (cache) cache.pseudo = selector;
    }
    if (selector === true) return true;
    if (!selector) return false;
    try { return el.matches(selector); } catch (e) { return true; }
  }

  // the text of a ::before or ::after box: its strings and attr()s, or its alt text
  function pseudoText(el, which) {
    const s = getComputedStyle(el, which);
    const content = s.content;
    if (!content || content === "none" || content === "normal" || s.display === "none") return null;
    const alt = content.lastIndexOf(" / ");
    const strings = (src) => {
      let out = "";
      const re = /"((?:[^"\\]|\\.)*)"|attr\(\s*([^)\s]+)\s*\)/g;
      let m;
      while ((m = re.exec(src))) {
        out += m[1] !== undefined ? m[1].replace(/\\([0-9a-fA-F]{1,6}\s?|.)/g, (x, e) =>
          /^[0-9a-fA-F]/.test(e) ? String.fromCodePoint(parseInt(e, 16)) : e) : (el.getAttribute(m[2]) || "");
      }
      return out;
    };
    if (alt > 0 && content.slice(alt + 3).match(/^["a]/)) return [strings(content.slice(alt + 3)), true];
    return [transform(strings(content), s), s.display !== "inline"];
  }

  function contents(el, ctx) {
    let out = "";
    let prevSeparate = false;
    const push = (text, sep) => {
      if (!text) { prevSeparate = sep; return; }
      if (out && !/\s$/.test(out) && !/^\s/.test(text) && (sep || prevSeparate)) out += " ";
      out += text;
      prevSeparate = sep;
    };
    const s = styleOf(el);
    const shown = ctx.showHidden || s.visibility === "visible";
    const pseudo = shown && mayHavePseudo(el);
    const before = pseudo && pseudoText(el, "::before");
    if (before) push(...before);
    for (const c of el.childNodes) {
      if (c.nodeType === 3) {
        if (shown) push(transform(c.data, s), false);
        continue;
      }
      if (c.nodeType !== 1) continue;
      let cs = null;
      if (!ctx.showHidden) {
        if (c.getAttribute("aria-hidden") === "true" || c.hasAttribute("inert")) continue;
        cs = styleOf(c);
        if (cs.display === "none") continue;
      } else {
        cs = styleOf(c);
      }
      if (c.tagName === "BR") { push("\n", true); continue; }
      if (c.tagName === "SCRIPT" || c.tagName === "STYLE" || c.tagName === "TEMPLATE") continue;
      push(textAlternative(c, { ...ctx, recursive: true }), separate(c, cs));
    }
    const after = pseudo && pseudoText(el, "::after");
    if (after) push(...after);
    return out;
  }

  // <a> elements with a click, mousedown or mouseup listener of their own are
  // links to Chromium; the page's listeners are watched from the start
  // (`watchClickListeners`, installed before any page script runs).
  function clickable(el) {
    return el.onclick !== null || el.onmousedown !== null || el.onmouseup !== null || clickListeners.has(el);
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
    if (el.hasAttribute("role") || el.hasAttribute("tabindex") || clickable(el)) return true;
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
    const [n, from] = nameOf(el, r);
    return {
      id: idOf(el),
      parent: parent,
      tag: el.tagName.toLowerCase(),
      role: r,
      name: n,
      name_from: from,
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
      // what the accessibility tree leaves out, the snapshot does too
      if (el.getAttribute("aria-hidden") === "true" || el.hasAttribute("inert")) return;
      const s = styleOf(el);
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
    cache = { styles: new Map(), roles: new Map() };
    try {
      if (root && !(root.parentElement && root.parentElement.closest(HIDDEN_SUBTREE))) walk(root, null);
      if (root && root !== document.body && document.body && area) {
        for (const c of document.body.children) if (!c.contains(root)) walk(c, null, true);
      }
    } finally {
      cache = null;
    }
    return { title: document.title, url: location.href, elements: out };
  }

  const HIDDEN_SUBTREE = "[aria-hidden=true], [inert]";

  // the element a point lands on, as the snapshot has it: `el` or the nearest
  // ancestor it keeps (never one in a subtree hidden from the accessibility tree)
  function keptAncestor(el) {
    for (let h = el.closest(HIDDEN_SUBTREE); h; h = el.closest(HIDDEN_SUBTREE)) {
      if (!h.parentElement) return el;
      el = h.parentElement;
    }
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

  // Installed before any page script runs: which elements have a click,
  // mousedown or mouseup listener of their own (Chromium makes such an <a> a
  // link). `has(el)`.
  function watchClickListeners() {
    const TYPES = new Set(["click", "mousedown", "mouseup"]);
    const registered = new WeakMap();  // element -> [[type, listener, capture], ...]
    const proto = EventTarget.prototype;
    const add = proto.addEventListener, remove = proto.removeEventListener;
    const captureOf = (o) => typeof o === "boolean" ? o : !!(o && o.capture);
    const find = (list, type, listener, c) => list.findIndex((x) => x[0] === type && x[1] === listener && x[2] === c);
    proto.addEventListener = function (type, listener, options) {
      if (listener && TYPES.has(type) && this instanceof Element) {
        let list = registered.get(this);
        if (!list) registered.set(this, list = []);
        const c = captureOf(options);
        if (find(list, type, listener, c) < 0) list.push([type, listener, c]);
      }
      return add.call(this, type, listener, options);
    };
    proto.removeEventListener = function (type, listener, options) {
      const list = TYPES.has(type) && registered.get(this);
      if (list) {
        const i = find(list, type, listener, captureOf(options));
        if (i >= 0) list.splice(i, 1);
      }
      return remove.call(this, type, listener, options);
    };
    return { has: (el) => { const list = registered.get(el); return !!(list && list.length); } };
  }

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

  // null while the document has no element yet: a navigation's new document
  // seen before its parser made <html> (or a page that removed it)
  function layoutSignature(root) {
    const base = root || document.body || document.documentElement;
    if (!base) return null;
    const els = base.querySelectorAll(SIGNATURE_SELECTOR);
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
      why = reason || (sig === null ? "no document element" :
                       still ? "the recorded target is not at the point" : "layout moving");
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
