"""What a solver sees on a page, and what the browser says about the same
elements.

`print_snapshot` opens a site's page (a MiniWoB++ task, a template of the
site, a path or a URL) through BrowserEnv, exactly as an episode does, and
prints the compact snapshot a solver reads: element ids, roles, names (and
where a name does not come from the browser's accessible-name computation),
values and boxes. With `compare=True` each element also shows Chromium's own
role and name for the same DOM node when they differ (read through the Chrome
DevTools Protocol, `browser_nodes`), which is how bench/snapshot.py measures
the snapshot against the browser.

    from synth.probe import print_snapshot_sync
    print_snapshot_sync("miniwob", "click-tab", seed=3)
    print_snapshot_sync("shop", "/cart", compare=True)
    print_snapshot_sync("shop", "product-price")        # a template's start page
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from playwright.async_api import Page, async_playwright

from synth.schema import Element, JudgeSpec, Observation, Task, stable_id

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates" / "tasks"

# Chromium's role names where they are not ARIA's, in synth's vocabulary.
CHROMIUM_ROLES = {
    "image": "img",
    "LabelText": "label",
    "DisclosureTriangle": "button",
    "DisclosureTriangleGrouped": "button",
    "Date": "date",
    "DateTime": "datetime",
    "InputTime": "time",
    "ColorWell": "color",
    "Iframe": "iframe",
    "IframePresentational": "iframe",
    "Canvas": "canvas",
    "Video": "video",
    "Audio": "audio",
    "MenuListOption": "option",
    "ListBoxOption": "option",
    "PopUpButton": "button",
    "ToggleButton": "button",
    "TextFieldWithComboBox": "combobox",
    "ComboBoxSelect": "combobox",
    "ComboBoxMenuButton": "combobox",
    "SvgRoot": "graphics-document",
    "LayoutTable": "table",
    "LayoutTableRow": "row",
    "LayoutTableCell": "cell",
    "none": "generic",
    "StaticText": "text",
}

INTERACTIVE_ROLES = frozenset({
    "button", "checkbox", "combobox", "link", "listbox", "menuitem", "menuitemcheckbox", "menuitemradio",
    "option", "radio", "searchbox", "slider", "spinbutton", "switch", "tab", "textbox", "treeitem",
    "date", "datetime", "time", "color",
})
"""Roles of elements one acts on: the ones bench/snapshot.py compares."""

CONTROL_TAGS = frozenset({"a", "button", "input", "select", "textarea", "option", "summary"})


def chromium_role(raw: str) -> str:
    """Chromium's role string in synth's vocabulary."""
    return CHROMIUM_ROLES.get(raw, raw.lower() if raw[:1].isupper() else raw)


def plain_role(role: str) -> str:
    """A role with synth's "text" (a generic element with text of its own) and
    presentational roles read as "generic", for comparing roles."""
    return "generic" if role in ("text", "none", "presentation") else role


def clean(text: str) -> str:
    """Whitespace collapsed the way the snapshot does (no-break spaces too)."""
    return " ".join((text or "").split())


@dataclass
class BrowserNode:
    """Chromium's accessibility node for one DOM element."""

    role: str
    """In synth's vocabulary (`chromium_role`); "generic" when Chromium ignores the node."""
    name: str
    raw_role: str
    ignored: bool
    clickable: bool | None = None
    """The element has a click, mousedown or mouseup listener of its own (with `listeners=True`)."""

    def same_role(self, role: str) -> bool:
        return plain_role(role) == plain_role(self.role)

    def same_name(self, name: str) -> bool:
        """`name` (as the snapshot has it: whitespace collapsed, at most 120
        characters) is Chromium's name."""
        theirs = clean(self.name)
        if name == theirs:
            return True
        return len(name) >= 100 and theirs.startswith(name)


async def browser_nodes(page: Page, ids: list[int], listeners: bool = False) -> dict[int, BrowserNode | None]:
    """Chromium's accessibility node for each snapshot element id (by DOM node:
    the element's backend node id in `Accessibility.getFullAXTree`; nodes the
    full tree leaves out are asked for one by one). None when the element is
    gone. `listeners`: also whether each has click listeners of its own."""
    session = await page.context.new_cdp_session(page)
    try:
        res = await session.send("Runtime.evaluate", {
            "expression": f"{json.dumps(ids)}.map((i) => window.__synth.byId(i))",
        })
        array_id = res["result"]["objectId"]
        props = await session.send("Runtime.getProperties", {"objectId": array_id, "ownProperties": True})
        handles = {int(p["name"]): p["value"]["objectId"] for p in props["result"]
                   if p["name"].isdigit() and "objectId" in p.get("value", {})}
        await session.send("DOM.getDocument", {"depth": 0})

        async def describe(index: int, object_id: str) -> tuple[int, int, bool | None]:
            d = await session.send("DOM.describeNode", {"objectId": object_id})
            clickable = None
            if listeners:
                found = await session.send("DOMDebugger.getEventListeners", {"objectId": object_id, "depth": 0})
                clickable = any(x["type"] in ("click", "mousedown", "mouseup") for x in found["listeners"])
            return index, d["node"]["backendNodeId"], clickable

        described = await asyncio.gather(*(describe(i, o) for i, o in handles.items()))
        tree = await session.send("Accessibility.getFullAXTree", {})
        by_backend = {n["backendDOMNodeId"]: n for n in tree["nodes"] if "backendDOMNodeId" in n}
        out: dict[int, BrowserNode | None] = {i: None for i in ids}
        for index, backend, clickable in described:
            node = by_backend.get(backend)
            if node is None:
                part = await session.send("Accessibility.getPartialAXTree",
                                          {"backendNodeId": backend, "fetchRelatives": False})
                node = next((n for n in part["nodes"] if n.get("backendDOMNodeId") == backend), None)
            if node is None:
                out[ids[index]] = BrowserNode("generic", "", "", True, clickable)
                continue
            raw = (node.get("role") or {}).get("value", "") or ""
            ignored = bool(node.get("ignored"))
            name = str((node.get("name") or {}).get("value", "") or "")
            out[ids[index]] = BrowserNode("generic" if ignored else chromium_role(raw), "" if ignored else name,
                                          raw, ignored, clickable)
        return out
    finally:
        await session.detach()


def is_interactive(el: Element, node: BrowserNode | None) -> bool:
    """An element one acts on, by either side's role, its tag, or (when known)
    a click listener of its own."""
    if el.role in INTERACTIVE_ROLES or (node is not None and node.role in INTERACTIVE_ROLES):
        return True
    if el.tag in CONTROL_TAGS and not (el.tag == "a" and el.role == "generic"):
        return el.tag != "input" or el.role != "none"
    return node is not None and bool(node.clickable)


# ---------------------------------------------------------------- opening a page


def site_templates(site: str, templates: Path | str | None = None) -> list[Any]:
    """The site's templates: from `templates` (a file or folder), else those
    of templates/tasks, else an app's own (apps/<site>/templates)."""
    from synth.tasks import load_templates

    if templates is not None:
        return [tpl for s, tpl in load_templates(templates) if s == site]
    found = [tpl for s, tpl in load_templates(TEMPLATES) if s == site]
    app = ROOT / "apps" / site / "templates"
    if not found and app.is_dir():
        found = [tpl for s, tpl in load_templates(app) if s == site]
    return found


def task_for(site: str, target: str, seed: int = 0, templates: Path | str | None = None) -> Task:
    """The task that opens `target` on `site`: a MiniWoB++ task name, a template
    id of the site (its start page for `seed`), or a path or URL."""
    if target.startswith(("http://", "https://", "/")):
        return Task(task_id=stable_id("task", f"{site}/probe", {"url": target}, seed), template_id=f"{site}/probe",
                    site=site, start_url=target, judge=JudgeSpec(type="none"), seed=seed)
    if site == "miniwob":
        from synth.sites.miniwob import make_task

        return make_task(target, seed)
    from synth.tasks import instantiate_seed

    tid = target.split("/", 1)[1] if target.startswith(f"{site}/") else target
    for tpl in site_templates(site, templates):
        if tpl.id == tid:
            return instantiate_seed(site, tpl, seed)
    raise ValueError(f"{target!r} is neither a path, a URL nor a template id of site {site!r}")


def element_line(el: Element, depth: int, node: BrowserNode | None = None) -> str:
    """One element as `print_snapshot` shows it: the agent's line, then the
    box, where a name comes from when not from the browser, and (with a node)
    Chromium's role and name where they differ."""
    b = el.box
    line = "  " * depth + el.line() + f" @({b.x:.0f},{b.y:.0f} {b.width:.0f}x{b.height:.0f})"
    if el.name and el.name_from not in ("", "accname"):
        line += f" (name from {el.name_from})"
    if node is not None:
        diff = []
        if not node.same_role(el.role):
            diff.append(f"role {node.role}")
        if clean(node.name) and not node.same_name(el.name):
            diff.append(f"name {json.dumps(clean(node.name), ensure_ascii=False)}")
        elif el.name and not clean(node.name) and el.name_from == "accname":
            diff.append("no name")
        if diff:
            line += "   <- chromium: " + ", ".join(diff)
    return line


def snapshot_text(obs: Observation, nodes: dict[int, BrowserNode | None] | None = None) -> str:
    """The snapshot as indented lines (see `element_line`)."""
    depth: dict[int, int] = {}
    lines = []
    for el in obs.elements:
        d = depth.get(el.parent, -1) + 1 if el.parent is not None else 0
        depth[el.id] = d
        lines.append(element_line(el, d, nodes.get(el.id) if nodes is not None else None))
    return "\n".join(lines)


async def print_snapshot(
    site: str,
    target: str,
    *,
    seed: int = 0,
    compare: bool = False,
    templates: Path | str | None = None,
    file: TextIO | None = None,
    browser: Any = None,
) -> Observation:
    """Open `target` on `site` (see `task_for`) through BrowserEnv and print
    the snapshot a solver sees there; returns the observation. `compare`: also
    show Chromium's role and name where they differ from the snapshot's.
    `browser`: a Playwright browser to use (else one is launched)."""
    from synth.env import BrowserConfig, BrowserEnv, launch_browser
    from synth.sites import get_site

    out = file or sys.stdout
    task = task_for(site, target, seed, templates)
    if browser is None:
        async with async_playwright() as p:
            b = await launch_browser(p, BrowserConfig())
            try:
                return await print_snapshot(site, target, seed=seed, compare=compare, templates=templates,
                                            file=out, browser=b)
            finally:
                await b.close()
    the_site = get_site(site)
    await the_site.start()
    env = BrowserEnv(browser, the_site, BrowserConfig(screenshots=False))
    try:
        obs = await env.reset(task)
        nodes = await browser_nodes(env.page, [e.id for e in obs.elements]) if compare else None
        a = obs.area
        print(f"{obs.url}  {obs.title!r}", file=out)
        if env.instruction:
            print(f"instruction: {env.instruction}", file=out)
        print(f"area: ({a.x:.0f},{a.y:.0f} {a.width:.0f}x{a.height:.0f}); {len(obs.elements)} elements", file=out)
        print(snapshot_text(obs, nodes), file=out)
        return obs
    finally:
        await env.close()
        await the_site.stop()  # an application site's instances are processes of their own


def print_snapshot_sync(site: str, target: str, **kwargs: Any) -> Observation:
    """`print_snapshot` for callers outside an event loop (the CLI)."""
    return asyncio.run(print_snapshot(site, target, **kwargs))
