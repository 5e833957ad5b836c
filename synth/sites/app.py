"""Any web application as a site, described by configuration (a YAML file),
not code.

    name: trac
    command: [tracd, --port, "{port}", -s, "{data}/env"]   # how to start one instance
    ready: {path: /, timeout_s: 60}                        # polled until it answers < 400
    data:
      build: [python, "{here}/seed.py", "{data}", --seed, "{seed}"]   # the pristine data, built once
    reset:                       # before every episode, back to the pristine data
      sqlite: [env/db/trac.db]   # restored in place (SQLite's backup API), the app keeps running
      sql: ["UPDATE cache SET generation = generation + 1"]
    login:
      default: developer
      roles:
        developer: {http_basic: {username: dev, password: dev}, steps: [{goto: /login}]}
    state:                       # what state_match judges read: named SQL queries
      sqlite: env/db/trac.db
      queries: {tickets: "SELECT id, summary, status FROM ticket"}
    content:                     # what template slots draw from (DuckDB SQL over these tables)
      sqlite: env/db/trac.db
      tables: [ticket, milestone, component]

Isolation: each concurrent episode leases an instance of its own (its own
process, port and copy of the data), reset to the pristine data before the
episode starts, so episodes that write never see each other's changes. An
app that is already running (`url:` instead of `command:`) is one instance:
its episodes take turns. The pristine data of a content seed is built once per
machine (under `~/.cache/synth/apps/`, keyed by the configuration) and copied
for each instance.

`configured_site(path)` makes a Site class from such a file; a plugin
module registers it (`register_site(configured_site(...))`) or a pipeline
lists the file under `plugins:`.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from playwright.async_api import Page
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synth.config import load_yaml
from synth.schema import Task
from synth.sites.base import Setup, Site

Command = list[str] | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Ready(_Strict):
    path: str = Field("/", description="polled until it answers with a status below 400")
    timeout_s: float = Field(60.0, gt=0)


class Data(_Strict):
    build: Command | None = Field(None, description="a command that writes the pristine data into {data} ({seed}: the content seed)")
    copy_from: str | None = Field(None, description="a folder (relative to this file) copied as the pristine data")


class Reset(_Strict):
    sqlite: list[str] = Field(default_factory=list, description="SQLite files under {data}, restored in place from the pristine copy")
    folders: list[str] = Field(default_factory=list, description="folders under {data}, replaced by their pristine copy")
    sql: list[str] = Field(default_factory=list, description="statements run on the first sqlite file after the restore")
    hook: str | None = Field(
        None, description="`module:function` called as function(data, pristine) (two Paths) after the restore, in "
        "the worker process: for what an app needs beyond files (e.g. invalidating its caches)",
    )
    command: Command | None = Field(None, description="run after the restore")
    url: str | None = Field(None, description="a path POSTed to after the restore")


class LoginStep(_Strict):
    goto: str | None = None
    fill: dict[str, str] = Field(default_factory=dict, description="CSS selector -> text")
    click: str | None = None
    wait_for: str | None = Field(None, description="a CSS selector that shows the login worked")


class Role(_Strict):
    http_basic: dict[str, str] | None = Field(None, description="{username, password}: sent as HTTP Basic auth on every request")
    steps: list[LoginStep] = Field(default_factory=list, description="scripted login, not recorded")
    storage_state: str | None = Field(None, description="a Playwright storage state file (cookies) for this role")


class Login(_Strict):
    default: str | None = Field(None, description="the role of tasks that name none (params.role)")
    roles: dict[str, Role] = Field(default_factory=dict)


class State(_Strict):
    sqlite: str | None = Field(None, description="a SQLite file under {data}")
    queries: dict[str, str] = Field(default_factory=dict, description="name -> SQL; the state is {name: rows}")
    url: str | None = Field(None, description="a path answering JSON, merged into the state")
    js: str | None = Field(None, description="a JavaScript expression on the page, merged into the state as `page`")


class Content(_Strict):
    sqlite: str = Field(description="a SQLite file of the pristine data")
    tables: list[str] | None = Field(None, description="tables templates may query (default: all)")


class AppConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    command: Command | None = Field(None, description="starts one instance: {port}, {data}, {here} are filled in")
    url: str | None = Field(None, description="an instance that is already running (instead of command)")
    cwd: str | None = Field(None, description="where commands run, relative to this file (default: its folder)")
    env: dict[str, str] = Field(default_factory=dict)
    ready: Ready = Field(default_factory=Ready)
    start_path: str = "/"
    data: Data = Field(default_factory=Data)
    reset: Reset = Field(default_factory=Reset)
    instances: int | None = Field(None, gt=0, description="most instances per worker process (default: one per concurrent episode)")
    login: Login = Field(default_factory=Login)
    state: State = Field(default_factory=State)
    content: Content | None = None
    viewport: dict[str, int] = Field(default_factory=lambda: {"width": 1280, "height": 720})

    @model_validator(mode="after")
    def _one_way_to_run(self) -> "AppConfig":
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (synth starts instances) and url (one already running)")
        return self


def _fill(command: Command, **values: Any) -> list[str]:
    """The command's arguments with {port}, {data}, {here}, {seed} and
    {python} (this interpreter, whose packages the app may share) filled in."""
    args = shlex.split(command) if isinstance(command, str) else list(command)
    return [a.format(python=sys.executable, **values) for a in args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    """One running copy of the application with its own data folder."""

    def __init__(self, site: "AppSite", port: int | None, data: Path | None, proc: subprocess.Popen | None,
                 base_url: str) -> None:
        self.site, self.port, self.data, self.proc, self.base_url = site, port, data, proc, base_url
        self.content_seed: int | None = None

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    async def reset(self, content_seed: int) -> None:
        """Back to the pristine data of `content_seed`, the app still running."""
        cfg = self.site.config.reset
        if self.data is not None:
            pristine = await asyncio.to_thread(self.site.pristine, content_seed)
            await asyncio.to_thread(_restore, pristine, self.data, cfg)
            if cfg.hook is not None:
                await asyncio.to_thread(self.site.hook(cfg.hook), self.data, pristine)
        if cfg.command is not None:
            await _run(_fill(cfg.command, data=self.data, port=self.port, here=self.site.here, seed=content_seed),
                       f"{self.site.name}: reset command")
        if cfg.url is not None:
            await asyncio.to_thread(_http, self.url(cfg.url), "POST")
        self.content_seed = content_seed

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None

    def stop(self) -> None:
        _running.discard(self)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.data is not None:
            shutil.rmtree(self.data, ignore_errors=True)


_running: set[Instance] = set()
"""Instances this process started and has not stopped: stopped at exit, so
a run that ends without `site.stop()` leaves no app behind."""


@atexit.register
def _stop_all() -> None:
    for inst in list(_running):
        inst.stop()


try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: preexec_fn must not import or load
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_parent() -> None:
    """In the app's process before exec (Linux): SIGTERM when the thread that
    started it ends, even by SIGKILL (a killed Ray actor), which atexit does
    not see. Only a foreign call, nothing that takes a Python lock."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _restore(pristine: Path, data: Path, cfg: Reset) -> None:
    for rel in cfg.sqlite:
        src, dst = sqlite3.connect(pristine / rel), sqlite3.connect(data / rel, timeout=30)
        try:
            src.backup(dst)  # page by page, in one transaction: the app's own connections see the new file
        finally:
            src.close()
            dst.close()
    if cfg.sql and cfg.sqlite:
        con = sqlite3.connect(data / cfg.sqlite[0], timeout=30)
        try:
            with con:
                for statement in cfg.sql:
                    con.execute(statement)
        finally:
            con.close()
    for rel in cfg.folders:
        shutil.rmtree(data / rel, ignore_errors=True)
        if (pristine / rel).exists():
            shutil.copytree(pristine / rel, data / rel)


async def _run(args: list[str], what: str) -> None:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{what} {shlex.join(args)} exited {proc.returncode}: {out.decode(errors='replace')[-500:]}")


def _http(url: str, method: str = "GET") -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class AppSite(Site):
    """A site configured by an `AppConfig` (see the module docstring)."""

    config: ClassVar[AppConfig]
    here: ClassVar[Path]
    """The folder of the configuration file: relative paths start there."""

    def __init__(self) -> None:
        self._free: list[Instance] = []
        self._all: list[Instance] = []
        self._by_page: dict[Page, Instance] = {}
        self._count = 0
        """Instances running or starting."""
        self._changed = asyncio.Condition()

    # ---------------------------------------------------------------- pristine data

    @classmethod
    def hook(cls, spec: str) -> Any:
        """The function a `module:function` names, importable from `workdir`."""
        module, _, name = spec.partition(":")
        if str(cls.workdir()) not in sys.path:
            sys.path.insert(0, str(cls.workdir()))
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise RuntimeError(f"{cls.config.name}: reset.hook {spec!r}: {e}") from None

    @classmethod
    def workdir(cls) -> Path:
        """Where commands run: `cwd` relative to the configuration file's folder."""
        return (cls.here / cls.config.cwd).resolve() if cls.config.cwd else cls.here

    @classmethod
    def fingerprint(cls) -> str:
        """What the pristine data depends on: the data section and the files it names."""
        h = hashlib.sha256(cls.config.data.model_dump_json().encode())
        args = _fill(cls.config.data.build or [], data="", port=0, here=cls.here, seed=0)
        for i, arg in enumerate(args):
            p = cls.here / arg
            if i and args[i - 1] == "-m":  # python -m package.module: hash the module's file
                p = cls.workdir() / (arg.replace(".", "/") + ".py")
                if not p.is_file():
                    try:
                        spec = importlib.util.find_spec(arg)
                    except ImportError:
                        spec = None
                    p = Path(spec.origin) if spec is not None and spec.origin else p
            if p.is_file():
                h.update(p.read_bytes())
        return h.hexdigest()[:16]

    @classmethod
    def pristine(cls, content_seed: int = 0) -> Path:
        """The pristine data folder of a content seed, built once per machine
        (built into a temporary folder, then renamed: concurrent builders do
        not see half a folder)."""
        cache = Path(os.environ.get("SYNTH_APP_CACHE", Path.home() / ".cache" / "synth" / "apps"))
        dest = cache / f"{cls.config.name}-{cls.fingerprint()}-seed{content_seed}"
        if dest.exists():
            return dest
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=cache))
        data = cls.config.data
        try:
            if data.copy_from is not None:
                shutil.copytree(cls.here / data.copy_from, tmp, dirs_exist_ok=True)
            if data.build is not None:
                args = _fill(data.build, data=tmp, port=0, here=cls.here, seed=content_seed)
                done = subprocess.run(args, cwd=cls.workdir(), capture_output=True, text=True)
                if done.returncode:
                    raise RuntimeError(
                        f"{cls.config.name}: data.build {shlex.join(args)} exited {done.returncode}: "
                        f"{(done.stdout + done.stderr)[-800:]}"
                    )
            try:
                tmp.rename(dest)
            except OSError:  # another process finished first: use theirs
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    @classmethod
    def content(cls, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
        """The content tables templates draw slots from: rows of the pristine data."""
        if cls.config.content is None:
            raise ValueError(f"site {cls.config.name!r} declares no content tables (content: in its configuration)")
        con = sqlite3.connect(f"file:{cls.pristine(seed) / cls.config.content.sqlite}?mode=ro", uri=True)
        con.row_factory = sqlite3.Row
        try:
            tables = cls.config.content.tables or [
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            ]
            return {t: [dict(r) for r in con.execute(f'SELECT * FROM "{t}"')] for t in tables}
        finally:
            con.close()

    # ---------------------------------------------------------------- instances

    async def stop(self) -> None:
        for inst in self._all:
            await asyncio.to_thread(inst.stop)
        self._all, self._free, self._by_page, self._count = [], [], {}, 0

    async def _lease(self) -> Instance:
        """A free instance, or a new one while under the limit, else wait for one."""
        limit = 1 if self.config.url is not None else self.config.instances
        async with self._changed:
            while True:
                if self._free:
                    inst = self._free.pop()
                    if inst.alive():
                        return inst
                    self._all.remove(inst)  # it died between episodes: start another
                    self._count -= 1
                    await asyncio.to_thread(inst.stop)
                    continue
                if limit is None or self._count < limit:
                    self._count += 1  # counted while it starts
                    break
                await self._changed.wait()
        try:
            inst = await self._launch()
        except BaseException:
            async with self._changed:
                self._count -= 1
                self._changed.notify()
            raise
        self._all.append(inst)
        return inst

    async def _release(self, inst: Instance) -> None:
        async with self._changed:
            self._free.append(inst)
            self._changed.notify()

    async def _launch(self) -> Instance:
        cfg = self.config
        if cfg.url is not None:
            return Instance(self, None, None, None, cfg.url)
        pristine = await asyncio.to_thread(self.pristine, 0)
        data = Path(tempfile.mkdtemp(prefix=f"synth-{cfg.name}-"))
        await asyncio.to_thread(shutil.copytree, pristine, data, dirs_exist_ok=True)
        port = _free_port()
        args = _fill(cfg.command, port=port, data=data, here=self.here)  # type: ignore[arg-type]
        log = open(data / ".synth-app.log", "wb")  # noqa: SIM115 - the process owns it
        try:
            proc = subprocess.Popen(
                args, cwd=self.workdir(), stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **{k: v.format(port=port, data=data, here=self.here) for k, v in cfg.env.items()}},
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        except OSError as e:
            shutil.rmtree(data, ignore_errors=True)
            raise RuntimeError(f"{cfg.name}: cannot start {shlex.join(args)}: {e}") from None
        finally:
            log.close()
        inst = Instance(self, port, data, proc, f"http://127.0.0.1:{port}")
        _running.add(inst)
        try:
            await self._wait_ready(inst, args)
        except BaseException:
            await asyncio.to_thread(inst.stop)
            raise
        inst.content_seed = 0
        return inst

    async def _wait_ready(self, inst: Instance, args: list[str]) -> None:
        deadline = time.monotonic() + self.config.ready.timeout_s
        while True:
            if not inst.alive():
                tail = (inst.data / ".synth-app.log").read_text(errors="replace")[-800:] if inst.data else ""
                raise RuntimeError(f"{self.name}: {shlex.join(args)} exited {inst.proc.returncode}: {tail}")  # type: ignore[union-attr]
            try:
                status, _ = await asyncio.to_thread(_http, inst.url(self.config.ready.path))
                if status < 400:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name}: {inst.url(self.config.ready.path)} not ready after {self.config.ready.timeout_s:.0f} s "
                    f"(ready.timeout_s)"
                )
            await asyncio.sleep(0.1)

    # ---------------------------------------------------------------- the site contract

    async def setup(self, page: Page, task: Task) -> Setup:
        inst = await self._lease()
        self._by_page[page] = inst
        await inst.reset(int(task.params.get("content_seed", 0)))
        await self._login(page, inst, task)
        start = task.start_url or self.config.start_path
        await page.goto(inst.url(start), wait_until="load")
        return Setup(instruction=task.instruction or "")

    async def _login(self, page: Page, inst: Instance, task: Task) -> None:
        name = task.params.get("role", self.config.login.default)
        if name is None:
            return
        role = self.config.login.roles.get(name)
        if role is None:
            raise ValueError(f"{self.name}: task {task.template_id} asks for role {name!r}; login.roles has "
                             f"{', '.join(self.config.login.roles) or 'none'}")
        if role.http_basic is not None:
            import base64

            token = base64.b64encode(f"{role.http_basic['username']}:{role.http_basic['password']}".encode()).decode()
            await page.set_extra_http_headers({"Authorization": f"Basic {token}"})
        if role.storage_state is not None:
            state = json.loads((self.here / role.storage_state).read_text())
            host = inst.url("/").split("//", 1)[1].split("/", 1)[0].split(":")[0]
            await page.context.add_cookies([{**c, "domain": host} for c in state.get("cookies", [])])
        for step in role.steps:
            if step.goto is not None:
                await page.goto(inst.url(step.goto), wait_until="load")
            for selector, text in step.fill.items():
                await page.fill(selector, text)
            if step.click is not None:
                await page.click(selector=step.click)
                await page.wait_for_load_state("load")
            if step.wait_for is not None:
                await page.wait_for_selector(step.wait_for)

    async def teardown(self, page: Page) -> None:
        inst = self._by_page.pop(page, None)
        if inst is not None:
            await self._release(inst)

    async def state(self, page: Page, task: Task) -> dict[str, Any]:
        inst = self._by_page.get(page)
        if inst is None:
            raise RuntimeError(f"{self.name}: no instance for this page (state read after the episode ended?)")
        cfg, out = self.config.state, {}
        if cfg.queries:
            if cfg.sqlite is None or inst.data is None:
                raise ValueError(f"{self.name}: state.queries needs state.sqlite and an instance synth started")
            out.update(await asyncio.to_thread(_query, inst.data / cfg.sqlite, cfg.queries))
        if cfg.url is not None:
            response = await page.context.request.get(inst.url(cfg.url))
            if not response.ok:
                raise RuntimeError(f"{self.name}: state.url answered {response.status}")
            out.update(await response.json())
        if cfg.js is not None:
            out["page"] = await page.evaluate(cfg.js)
        return out


def _query(db: Path, queries: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    con.row_factory = sqlite3.Row
    try:
        return {name: [dict(r) for r in con.execute(sql)] for name, sql in queries.items()}
    finally:
        con.close()


def configured_site(path: Path | str) -> type[AppSite]:
    """A Site class for the application configured in `path` (YAML);
    a bad field raises ConfigError naming the file and field."""
    path = Path(path).resolve()
    config = load_yaml(path, AppConfig)
    return type(f"AppSite_{config.name}", (AppSite,), {
        "name": config.name, "config": config, "here": path.parent, "viewport": config.viewport,
        "__module__": __name__, "__doc__": f"{config.name}, configured in {path}",
    })
