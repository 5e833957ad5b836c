"""Snapshot agreement: synth's roles and names against Chromium's own
accessibility tree, element by element.

    .venv/bin/python bench/snapshot.py                       # MiniWoB++, shop, forum; ~5 min on 2 cores
    .venv/bin/python bench/snapshot.py --check               # exit 1 below --target (99.5%) on any site
    .venv/bin/python bench/snapshot.py --sites miniwob --seeds 1 --tasks click-tab,login-user
    .venv/bin/python bench/snapshot.py --sites none --site trac --url http://127.0.0.1:8000/timeline

The corpus is every observation a solver sees, plus start pages:

* miniwob: every task the `miniwob` package ships (`--tasks` to choose),
  seeds 0..`--seeds`-1; tasks with a solver (templates/tasks/miniwob.yaml's)
  are solved through BrowserEnv and every observation on the way is measured
  (open menus, date pickers, dialogs), the others at their start page.
* shop, forum (and any `--site NAME`): every template of the site
  (`--templates`; by default templates/tasks, else the app's own
  apps/<site>/templates) for `--seeds` seeds, its solver run
  when it has one (listings, product pages, cart, checkout and address forms,
  posts, comment forms, ...), then a crawl of the site's own links from its
  start page (`--crawl` pages; two per URL shape, no logout/delete links).
* `--url URL` (repeatable): pages opened as they are, in a fresh context.

For each page, synth's snapshot is taken through BrowserEnv (the recorded
path), each element is mapped to its DOM node and Chromium's node for that
node is read through CDP (`Accessibility.getFullAXTree`, by backend node id:
`synth.probe.browser_nodes`). Compared are the interactive elements: those
either side gives a widget role (link, button, textbox, checkbox, option,
...), native controls (a[href], button, input, select, textarea, option,
summary), and elements with a click listener of their own. Roles compare in
synth's vocabulary (Chromium's image is img, LabelText is label,
DisclosureTriangle is button, InputTime is time; synth's "text", a generic
element with text of its own, is generic); names compare where Chromium's is
not empty, whitespace collapsed, up to synth's 120-character cap; a name
synth gives where Chromium gives none is counted as "unflagged" unless its
`name_from` says it is synth's own. Identical states (same URL, same roles and
names) are measured once.

Printed: per site the pages, elements compared, role agreement, names
compared and name agreement; the disagreements grouped by kind with examples;
the names synth gives where Chromium gives none, by where they come from
(`name_from`: only "hidden-label" and "nearby-label" on fields and "text" on
text elements are expected); and the check that no control is ever named from another
control's <label>. `--check` exits 1 if a site's role or name agreement is
below `--target`, a name is unflagged, or a control is named from another
control's label.
`--snapshot-js FILE` measures another version of synth/snapshot.js (e.g.
`git show <commit>:synth/snapshot.js > /tmp/old.js`). `--cost` also times,
on each page, the snapshot (one evaluate, as BrowserEnv takes it) against
Chromium's full tree over CDP (`Accessibility.getFullAXTree`, a document's
first request and the next): what reading the browser's own tree instead
would cost, before even mapping it to elements and boxes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load, machine_note  # noqa: E402
from playwright.async_api import Browser, async_playwright  # noqa: E402

import synth.env  # noqa: E402
from synth.env import BrowserConfig, BrowserEnv, launch_browser  # noqa: E402
from synth.probe import BrowserNode, browser_nodes, clean, is_interactive, plain_role, site_templates, task_for  # noqa: E402
from synth.schema import Element, Observation, Task  # noqa: E402
from synth.sites import get_site  # noqa: E402

SKIP_LINKS = re.compile(r"log.?out|sign.?out|delete|remove|/__", re.I)


def get_solver(name: str) -> Any:
    try:
        from synth.solver import get_solver as get
    except ImportError:  # before synth.solver existed
        from solvers import SOLVERS, load_all

        load_all()
        return SOLVERS[name]
    return get(name)


# ---------------------------------------------------------------- the tally


@dataclass
class Example:
    where: str
    tag: str
    synth: str
    chromium: str


@dataclass
class Tally:
    pages: int = 0
    elements: int = 0
    roles_ok: int = 0
    names: int = 0
    names_ok: int = 0
    extra: Counter = field(default_factory=Counter)  # (name_from, role) of names Chromium leaves empty
    kinds: dict[str, list[Example]] = field(default_factory=lambda: defaultdict(list))
    borrowed: list[Example] = field(default_factory=list)  # controls named from another control's label
    episodes: int = 0
    solved: int = 0
    unflagged: int = 0  # interactive elements named where Chromium gives no name, not marked as synth's own
    unmapped: int = 0
    cost: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # --cost, ms
    failed: list[str] = field(default_factory=list)

    @property
    def role_rate(self) -> float:
        return self.roles_ok / self.elements if self.elements else 1.0

    @property
    def name_rate(self) -> float:
        return self.names_ok / self.names if self.names else 1.0


BORROWED_JS = """(items) => items.map(([id, name]) => {
  const el = window.__synth.byId(id);
  if (!el) return null;
  const clean = (s) => (s || "").replace(/\\s+/g, " ").trim();
  const own = el.labels ? Array.from(el.labels) : [];
  for (const l of document.querySelectorAll("label")) {
    if (l.control && l.control !== el && !own.includes(l) && clean(l.innerText) === name) return l.control.outerHTML.slice(0, 80);
  }
  return null;
})"""


def _q(s: str) -> str:
    s = clean(s)
    return json.dumps(s if len(s) <= 60 else s[:57] + "...", ensure_ascii=False)


class Meter:
    """Measures pages into one tally per site, each distinct state once."""

    def __init__(self, cost: bool = False) -> None:
        self.tallies: dict[str, Tally] = defaultdict(Tally)
        self.seen: set[str] = set()
        self.cost = cost

    async def measure(self, site: str, where: str, page: Any, obs: Observation, env: Any = None) -> None:
        key = hashlib.sha1(json.dumps([obs.url, [(e.role, e.name) for e in obs.elements]]).encode()).hexdigest()
        if key in self.seen:
            return
        self.seen.add(key)
        tally = self.tallies[site]
        if self.cost and env is not None:
            await self.time_both(tally, page, env)
        nodes = await browser_nodes(page, [e.id for e in obs.elements], listeners=True)
        tally.pages += 1
        suspects: list[tuple[Element, BrowserNode]] = []
        for el in obs.elements:
            node = nodes.get(el.id)
            if node is None:  # the node went away (a navigation) between the snapshot and the tree
                tally.unmapped += 1
                continue
            if el.name and not clean(node.name):
                tally.extra[(el.name_from or "?", plain_role(el.role))] += 1
            if not is_interactive(el, node):
                continue
            tally.elements += 1
            if node.same_role(el.role):
                tally.roles_ok += 1
            else:
                tally.kinds[f"role: synth {el.role}, chromium {node.role} ({node.raw_role or 'no node'})"].append(
                    Example(where, el.tag, f"{el.role} {_q(el.name)}", f"{node.role} {_q(node.name)}"))
            if clean(node.name):
                tally.names += 1
                if node.same_name(el.name):
                    tally.names_ok += 1
                else:
                    kind = "empty" if not el.name else "differs"
                    tally.kinds[f"name {kind}: <{el.tag}> {plain_role(node.role)}"].append(
                        Example(where, el.tag, _q(el.name), _q(node.name)))
            elif el.name and el.name_from not in ("hidden-label", "nearby-label", "text"):
                # a name synth does not say is its own, which the browser does not give
                tally.unflagged += 1
                tally.kinds[f"name only synth's ({el.name_from or 'no name_from'}): <{el.tag}> {plain_role(el.role)}"].append(
                    Example(where, el.tag, _q(el.name), '""'))
            if el.tag in ("input", "select", "textarea", "button") and el.name and not node.same_name(el.name):
                suspects.append((el, node))
        if suspects:
            found = await page.evaluate(BORROWED_JS, [[el.id, el.name] for el, _ in suspects])
            for (el, node), other in zip(suspects, found):
                if other:
                    tally.borrowed.append(Example(where, el.tag, _q(el.name), f"{_q(node.name)}; the label's control: {other}"))


    async def time_both(self, tally: Tally, page: Any, env: BrowserEnv) -> None:
        """--cost: the snapshot as BrowserEnv takes it (one evaluate) against
        Chromium's full tree over CDP, on the same page: the first tree
        request of a document (the renderer builds its tree) and the next."""
        area = env._area()
        for _ in range(3):
            t0 = time.perf_counter()
            await env._snapshot_json(page, area)
            tally.cost["snapshot"].append((time.perf_counter() - t0) * 1000)
        session = await page.context.new_cdp_session(page)
        try:
            for i in range(4):
                t0 = time.perf_counter()
                await session.send("Accessibility.getFullAXTree", {})
                tally.cost["cdp first" if i == 0 else "cdp again"].append((time.perf_counter() - t0) * 1000)
            await session.send("Accessibility.disable")
        finally:
            await session.detach()


class MeasuredEnv(BrowserEnv):
    """BrowserEnv that measures every observation it makes."""

    def __init__(self, *args: Any, meter: Meter, site_name: str, where: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.meter, self.site_name, self.where = meter, site_name, where

    async def observe(self) -> Observation:
        obs = await super().observe()
        await self.meter.measure(self.site_name, f"{self.where} step {len(self.steps)}", self.page, obs, self)
        return obs


# ---------------------------------------------------------------- the corpus

CONFIG = BrowserConfig(screenshots=False)


async def run_task(browser: Browser, meter: Meter, site: Any, site_name: str, task: Task, timeout: float) -> None:
    """The task's start page, and every observation of its solver's episode."""
    where = f"{task.template_id} seed {task.seed}"
    env = MeasuredEnv(browser, site, CONFIG, meter=meter, site_name=site_name, where=where)
    tally = meter.tallies[site_name]
    try:
        obs = await env.reset(task)
        if task.solver:
            tally.episodes += 1
            try:
                await asyncio.wait_for(get_solver(task.solver)(env, obs), timeout)
                tally.solved += 1
            except Exception as e:  # noqa: BLE001 - a failed solver is reported, the pages it saw still count
                tally.failed.append(f"{where}: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
    except Exception as e:  # noqa: BLE001
        tally.failed.append(f"{where}: could not open: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    finally:
        await env.close()


def url_shape(url: str) -> str:
    parts = urlsplit(url)
    keys = sorted(k.split("=")[0] for k in parts.query.split("&") if k)
    return re.sub(r"\d+", "#", parts.path) + "?" + "&".join(keys)


async def crawl(browser: Browser, meter: Meter, site: Any, site_name: str, pages: int, start: str = "/") -> None:
    """The site's own pages, breadth first from `start`: at most two of each
    URL shape (digits and query values aside), `pages` in all."""
    if pages <= 0:
        return
    task = task_for(site_name, start)
    env = MeasuredEnv(browser, site, CONFIG, meter=meter, site_name=site_name, where=f"{site_name} crawl")
    try:
        obs = await env.reset(task)
        origin = urlsplit(obs.url)[:2]
        queue, seen, shapes = [obs.url], {obs.url.split("#")[0]}, Counter([url_shape(obs.url)])
        visited = 1
        while queue and visited < pages:
            url = queue.pop(0)
            if url != env.page.url:
                try:
                    env.where = f"{site_name} crawl {urlsplit(url).path}"
                    await env.navigate(url)
                    visited += 1
                except Exception as e:  # noqa: BLE001
                    meter.tallies[site_name].failed.append(f"crawl {url}: {type(e).__name__}")
                    continue
            hrefs = await env.page.evaluate("() => Array.from(document.querySelectorAll('a[href]'), (a) => a.href)")
            for href in hrefs:
                href = urljoin(url, href).split("#")[0]
                if urlsplit(href)[:2] != origin or href in seen or SKIP_LINKS.search(href):
                    continue
                seen.add(href)
                shape = url_shape(href)
                if shapes[shape] >= 2:
                    continue
                shapes[shape] += 1
                queue.append(href)
    except Exception as e:  # noqa: BLE001
        meter.tallies[site_name].failed.append(f"crawl {start}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    finally:
        await env.close()


async def open_url(browser: Browser, meter: Meter, url: str) -> None:
    """A page as it is, in a fresh context with synth's snapshot script."""
    from synth.sites.base import Setup, Site

    class Bare(Site):
        name = "url"

        async def setup(self, page: Any, task: Task) -> Setup:
            await page.goto(task.start_url or url, wait_until="load")
            return Setup(instruction="")

    host = urlsplit(url).netloc or url
    env = MeasuredEnv(browser, Bare(), CONFIG, meter=meter, site_name=f"url {host}", where=url)
    try:
        await env.reset(task_for("url", url))
    except Exception as e:  # noqa: BLE001
        meter.tallies[f"url {host}"].failed.append(f"{url}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    finally:
        await env.close()


async def measure_site(browser: Browser, meter: Meter, name: str, args: argparse.Namespace) -> None:
    site = get_site(name)
    await site.start()
    meter.tallies[name]  # listed even if nothing could be opened
    if name == "miniwob":
        from synth.sites.miniwob import make_task, task_names

        try:
            solvers = {tpl.params.get("task"): tpl.solver for tpl in site_templates("miniwob", args.templates)}
        except Exception as e:  # noqa: BLE001 - start pages only
            meter.tallies[name].failed.append(f"templates: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            solvers = {}
        names = args.tasks.split(",") if args.tasks else task_names()
        for i, task_name in enumerate(names):
            for seed in range(args.seeds):
                await run_task(browser, meter, site, name, make_task(task_name, seed, solver=solvers.get(task_name)),
                               args.timeout)
            progress(name, meter, i + 1, len(names))
        return
    try:
        templates = site_templates(name, args.templates)
    except Exception as e:  # noqa: BLE001 - a broken template file: the crawl still measures the site
        meter.tallies[name].failed.append(f"templates: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        templates = []
    for i, tpl in enumerate(templates):
        from synth.tasks import instantiate_seed

        for seed in range(tpl.seeds.start, tpl.seeds.start + args.seeds):
            await run_task(browser, meter, site, name, instantiate_seed(name, tpl, seed), args.timeout)
        progress(name, meter, i + 1, len(templates))
    await crawl(browser, meter, site, name, args.crawl)
    progress(name, meter, len(templates), len(templates), done=True)


def progress(name: str, meter: Meter, i: int, n: int, done: bool = False) -> None:
    t = meter.tallies[name]
    if done or i == n or i % 10 == 0:
        print(f"  {name}: {i}/{n} {'tasks' if name == 'miniwob' else 'templates'}, {t.pages} pages, "
              f"{t.elements} elements{' (and the crawl)' if done else ''}", flush=True)


# ---------------------------------------------------------------- report


def report(meter: Meter, target: float, examples: int) -> bool:
    """Print the tables; True if every site meets the target and no control borrows a label."""
    head = (f"{'site':<22}{'pages':>7}{'elements':>10}{'roles agree':>14}{'names':>8}{'names agree':>14}"
            f"{'unflagged':>11}{'solver eps':>12}")
    print()
    print(head)
    print("-" * len(head))
    ok = True
    for name, t in meter.tallies.items():
        met = t.role_rate * 100 >= target and t.name_rate * 100 >= target and t.elements > 0 and not t.unflagged
        ok &= met
        eps = f"{t.solved}/{t.episodes}"
        print(f"{name:<22}{t.pages:>7}{t.elements:>10}{t.role_rate * 100:>13.2f}%{t.names:>8}{t.name_rate * 100:>13.2f}%"
              f"{t.unflagged:>11}{eps:>12}{'' if met else '   < target'}")
    print("(names: where Chromium gives one; unflagged: names synth gives where Chromium gives none, "
          "without saying they are its own)")
    all_kinds: dict[str, list[tuple[str, Example]]] = defaultdict(list)
    for name, t in meter.tallies.items():
        for kind, exs in t.kinds.items():
            all_kinds[kind] += [(name, e) for e in exs]
    print()
    if all_kinds:
        print("disagreements by kind (count; examples):")
        for kind, exs in sorted(all_kinds.items(), key=lambda kv: -len(kv[1])):
            sites = Counter(n for n, _ in exs)
            print(f"  {len(exs):>5}  {kind}   [{', '.join(f'{s} {c}' for s, c in sites.items())}]")
            for _, e in exs[:examples]:
                print(f"           {e.where}: <{e.tag}> synth {e.synth}, chromium {e.chromium}")
    else:
        print("disagreements: none")
    extra = Counter()
    for t in meter.tallies.values():
        extra.update(t.extra)
    print()
    print("names synth gives where Chromium's is empty (all elements), by name_from and role:")
    for (src, role), n in sorted(extra.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {n:>6}  {src:<14}{role}")
    unexpected = {k: n for k, n in extra.items() if k[0] not in ("hidden-label", "nearby-label", "text")}
    print()
    borrowed = [(n, e) for n, t in meter.tallies.items() for e in t.borrowed]
    print(f"controls named from another control's label: {len(borrowed)}")
    for n, e in borrowed[:examples * 2]:
        print(f"    {n} {e.where}: <{e.tag}> synth {e.synth}, chromium {e.chromium}")
    ok &= not borrowed
    unmapped = sum(t.unmapped for t in meter.tallies.values())
    if unmapped:
        print(f"elements not measured (their node went away before Chromium's tree was read): {unmapped}")
    failed = [(n, f) for n, t in meter.tallies.items() for f in t.failed]
    if failed:
        print()
        print(f"solver episodes or pages that failed ({len(failed)}; their pages up to the failure count):")
        for n, f in failed[:20]:
            print(f"    {n} {f}")
    if any(t.cost for t in meter.tallies.values()):
        print()
        print("--cost: median ms per page, the snapshot (one evaluate, as BrowserEnv) against CDP's full tree:")
        print(f"  {'site':<22}{'snapshot':>10}{'cdp first':>11}{'cdp again':>11}")
        for name, t in meter.tallies.items():
            if t.cost:
                med = {k: statistics.median(v) for k, v in t.cost.items()}
                print(f"  {name:<22}{med['snapshot']:>10.1f}{med['cdp first']:>11.1f}{med['cdp again']:>11.1f}")
    if unexpected:
        print()
        print(f"note: {sum(unexpected.values())} names where Chromium has none that are not synth's own: "
              f"{dict(list(unexpected.items())[:6])}")
    return ok


async def main(args: argparse.Namespace) -> int:
    if args.snapshot_js:
        synth.env.SNAPSHOT_JS = Path(args.snapshot_js).read_text()
    sites = [s for s in args.sites.split(",") if s and s != "none"] + args.site
    started, load0 = time.perf_counter(), load()
    meter = Meter(cost=args.cost)
    async with async_playwright() as p:
        browser = await launch_browser(p, BrowserConfig())
        try:
            for name in sites:
                print(f"{name} ...", flush=True)
                try:
                    await measure_site(browser, meter, name, args)
                except Exception as e:  # noqa: BLE001 - one site's failure does not lose the others' figures
                    meter.tallies[name].failed.append(f"site: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            for url in args.url:
                await open_url(browser, meter, url)
        finally:
            await browser.close()
    ok = report(meter, args.target, args.examples)
    lowest = min(((min(t.role_rate, t.name_rate), n) for n, t in meter.tallies.items()), default=(1.0, "-"))
    print()
    print(f"({time.perf_counter() - started:.0f} s; {machine_note(load0)}; "
          f"snapshot.js: {args.snapshot_js or 'synth/snapshot.js'})")
    print(f"lowest agreement {lowest[0] * 100:.2f}% ({lowest[1]}) (target >= {args.target:g}% on every site, "
          f"roles and names)")
    if args.check and not ok:
        print("FAIL: a site is below the target, has unflagged names, or names a control from another control's label",
              file=sys.stderr)
        return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", default="miniwob,shop,forum", help="bundled sites to measure (default miniwob,shop,forum; 'none')")
    ap.add_argument("--site", action="append", default=[], metavar="NAME",
                    help="also a registered site by its templates and a crawl (repeatable)")
    ap.add_argument("--url", action="append", default=[], metavar="URL", help="also this page as it is (repeatable)")
    ap.add_argument("--templates", default=None,
                    help="template file or folder (default templates/tasks, else apps/<site>/templates)")
    ap.add_argument("--tasks", default="", help="MiniWoB++ tasks (comma-separated; default all the package ships)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per MiniWoB++ task and per template (default 3)")
    ap.add_argument("--crawl", type=int, default=25, help="pages of each site's own crawl (default 25; 0: none)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per solver episode (default 60)")
    ap.add_argument("--target", type=float, default=99.5, help="agreement in %% --check enforces per site (default 99.5)")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 below --target, on an unflagged name, or if a control borrows a label")
    ap.add_argument("--examples", type=int, default=3, help="examples printed per kind of disagreement (default 3)")
    ap.add_argument("--cost", action="store_true",
                    help="also time the snapshot against CDP's full accessibility tree on each page")
    ap.add_argument("--snapshot-js", default="", metavar="FILE", help="measure this snapshot.js instead of synth's")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
