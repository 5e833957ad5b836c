#!/usr/bin/env python
"""Hand check of the seeded Trac with a real tracd and a real headless Chromium.

    python apps/trac/check.py [--seed N] [--keep]

1. builds an environment (seed.build) in a temp dir, starts tracd, times the
   first HTTP 200 and reads its memory;
2. as developer `mchen` (HTTP basic auth via Playwright's http_credentials on
   /login) creates a ticket, comments, accepts one ticket and resolves another,
   edits a wiki page, adds a milestone, attaches a file; as `admin` renames the
   project (written to trac.ini) - all through the pages' own forms;
3. resets with seed.Resetter (timed) and checks in a fresh browser context that
   the UI shows the seed state again;
4. shows why the reset bumps the cache generations: a plain restore followed by
   a write from another process (same generation number as before) leaves tracd
   serving its stale milestone list; after Resetter.reset it does not.
Prints timings; exits non-zero on the first failed expectation.
"""
from __future__ import annotations

import argparse
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed  # noqa: E402

CHROMIUM = dict(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])


def step(msg: str, t0: float) -> float:
    t = time.monotonic()
    print(f"  {t - t0:6.2f}s  {msg}", flush=True)
    return t


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tracd(env: Path, port: int) -> tuple[subprocess.Popen, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen(seed.tracd_command(env, port), stdout=subprocess.DEVNULL,
                            stderr=open(env / "log" / "tracd.err", "w"))
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                if r.status == 200:
                    return proc, time.monotonic() - t0
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"tracd exited: {(env / 'log' / 'tracd.err').read_text()}")
            time.sleep(0.02)


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def login(page: Page, base: str, name: str) -> None:
    """/login answers 401; the context's http_credentials answer it; Trac sets the
    trac_auth cookie and redirects back to the referer (here: /)."""
    page.goto(base + "/login")
    expect(f"logged in as {name}" in page.locator("#metanav").inner_text(), f"logged in as {name}")


def roadmap_milestones(page: Page, base: str) -> list[str]:
    page.goto(base + "/roadmap")
    return page.locator("div.milestone h2 a em").all_inner_texts()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (env and logs)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="trac-check-"))
    proc = None
    try:
        t0 = time.monotonic()
        env = seed.build(tmp / "env", a.seed)
        t = step(f"seed.build -> {env}", t0)
        shutil.copy(env / "db" / "trac.db", tmp / "pristine.db")  # for the plain-restore comparison
        resetter = seed.Resetter(env)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc, startup = start_tracd(env, port)
        t = step(f"tracd first HTTP 200 after {startup:.2f}s; RSS {rss_mb(proc.pid):.0f} MB, "
                 f"CPU {cpu_s(proc.pid):.2f}s", t)
        with sync_playwright() as p:
            browser = p.chromium.launch(**CHROMIUM)
            dev = browser.new_context(http_credentials={"username": "mchen", "password": seed.password("mchen")})
            dev.set_default_timeout(60_000)
            page = dev.new_page()
            login(page, base, "Mei Chen")
            t = step("developer logged in via /login (HTTP basic auth)", t)

            # -- new ticket
            page.goto(base + "/newticket")
            page.get_by_label("Summary:").fill("Scheduler skips runs after NTP clock jump")
            page.locator("#field-description").fill("After `ntpd` stepped the clock back 2 min, "
                                                    "no job ran for 2 min.\n\nSeen on 1.1.")
            page.get_by_label("Component:").select_option("scheduler")
            page.get_by_label("Milestone:").select_option("1.2")
            page.get_by_label("Priority:").select_option("high")
            page.get_by_role("button", name="Create ticket").click()
            page.wait_for_url(re.compile(r"/ticket/121(#.*)?$"))  # keeps the form's #ticket
            expect("new" in page.locator("span.trac-status").inner_text(), "new ticket status")
            t = step(f"created ticket -> {page.url}", t)

            # -- comment on #2
            page.goto(base + "/ticket/2")
            page.locator("#comment").fill("Reproduced on PostgreSQL 16 as well.")
            page.get_by_role("button", name="Submit changes").click()
            page.wait_for_url("**/ticket/2#comment:*")
            expect(page.get_by_text("Reproduced on PostgreSQL 16 as well.").count() == 1, "comment shown")
            t = step(f"commented -> {page.url}", t)

            # -- accept #2: the action radios sit in the folded "Modify Ticket" section
            page.get_by_role("link", name="Modify Ticket").click()
            page.get_by_label("accept").check()
            page.get_by_role("button", name="Submit changes").click()
            page.wait_for_url("**/ticket/2#comment:*")
            expect("accepted" in page.locator("span.trac-status").inner_text(), "#2 accepted")
            t = step(f"accepted #2 -> {page.url}", t)

            # -- resolve #6 as wontfix with a comment
            page.goto(base + "/ticket/6")
            page.get_by_role("link", name="Modify Ticket").click()
            page.get_by_label("resolve").check()
            page.locator("#action_resolve_resolve_resolution").select_option("wontfix")
            page.locator("#comment").fill("Out of scope for 1.x.")
            page.get_by_role("button", name="Submit changes").click()
            page.wait_for_url("**/ticket/6#comment:*")
            status = page.locator("span.trac-status").inner_text()
            expect("closed" in status and "wontfix" in page.locator("span.trac-resolution").inner_text(),
                   f"#6 closed as wontfix ({status})")
            t = step(f"resolved #6 -> {page.url}", t)

            # -- edit a wiki page
            page.goto(base + "/wiki/SchedulerInternals")
            page.get_by_role("button", name="Edit this page").click()
            page.wait_for_url("**/wiki/SchedulerInternals?action=edit")
            text = page.locator("#text").input_value()
            page.locator("#text").fill(text + "\n== Clock jumps ==\nSee #121.\n")
            page.locator("input[name=comment]").fill("Clock jumps")
            page.get_by_role("button", name="Submit changes").click()
            page.wait_for_url("**/wiki/SchedulerInternals")
            expect(page.locator("#Clockjumps").count() == 1, "wiki edit shown")
            t = step(f"edited wiki page -> {page.url}", t)

            # -- new milestone (developer has MILESTONE_CREATE)
            page.goto(base + "/roadmap")
            page.get_by_role("button", name="Add new milestone").click()
            page.get_by_label("Name:").fill("3.0")
            page.get_by_role("button", name="Add milestone").click()
            page.wait_for_url("**/milestone/3.0")
            page.goto(base + "/newticket")
            expect("3.0" in page.locator("#field-milestone").inner_text(), "3.0 in the new-ticket form")
            t = step("added milestone 3.0 (roadmap and new-ticket form show it)", t)

            # -- attachment (files under ENV/files)
            page.goto(base + "/attachment/ticket/2/?action=new")
            page.locator("input[name=attachment]").set_input_files(
                {"name": "worker.log", "mimeType": "text/plain", "buffer": b"lease lost\n"})
            page.get_by_role("button", name="Add attachment").click()
            page.wait_for_url("**/attachment/ticket/2/")       # the ticket's attachment list
            expect(len(list((env / "files").rglob("*.log"))) == 1, "attachment file on disk")
            t = step(f"attached worker.log -> {page.url}", t)

            # -- admin renames the project (trac.ini)
            adm = browser.new_context(http_credentials={"username": "admin", "password": seed.password("admin")})
            adm.set_default_timeout(60_000)
            apage = adm.new_page()
            login(apage, base, "Dana Whitfield")
            apage.goto(base + "/admin/general/basics")
            apage.get_by_label("Name:").fill("Driftwood TEST")
            apage.get_by_role("button", name="Apply changes").click()
            apage.wait_for_load_state()
            expect("Driftwood TEST" in (env / "conf" / "trac.ini").read_text(), "trac.ini written")
            t = step("admin renamed the project (trac.ini)", t)
            print(f"  tracd RSS after the workload: {rss_mb(proc.pid):.0f} MB, CPU {cpu_s(proc.pid):.2f}s")

            # -- reset and check the seed state in a fresh context
            r0 = time.perf_counter()
            resetter.reset()
            first = time.perf_counter() - r0
            t = step(f"Resetter.reset() took {first * 1000:.1f} ms (with changes to undo)", t)
            fresh = browser.new_context(http_credentials={"username": "mchen", "password": seed.password("mchen")})
            fresh.set_default_timeout(60_000)
            page = fresh.new_page()
            login(page, base, "Mei Chen")
            expect(page.goto(base + "/ticket/121").status == 404, "#121 gone")
            page.goto(base + "/ticket/2")
            expect("new" in page.locator("span.trac-status").inner_text(), "#2 new again")
            expect(page.get_by_text("Reproduced on PostgreSQL 16").count() == 0, "comment gone")
            expect(page.locator("#attachments").get_by_text("worker.log").count() == 0, "attachment gone")
            page.goto(base + "/ticket/6")
            expect("closed" not in page.locator("span.trac-status").inner_text(), "#6 open again")
            page.goto(base + "/wiki/SchedulerInternals")
            expect(page.locator("#Clockjumps").count() == 0, "wiki edit gone")
            expect("3.0" not in roadmap_milestones(page, base), "3.0 gone from roadmap")
            page.goto(base + "/newticket")
            expect("3.0" not in page.locator("#field-milestone").inner_text(), "3.0 gone from new-ticket form")
            expect(page.title().endswith("– Driftwood"), f"project name restored ({page.title()})")
            expect(not list((env / "files").rglob("*.log")), "attachment file removed")
            # the developer's old cookie died with the restored auth_cookie table; /login renews it
            page = dev.new_page()
            page.goto(base + "/")
            expect("Login" in page.locator("#metanav").inner_text(), "old session logged out")
            login(page, base, "Mei Chen")
            t = step("UI shows the seed state again (ticket, comment, status, wiki, milestone, "
                     "attachment, trac.ini); old session logged out, /login works", t)

            # -- why the generations are bumped: plain restore + a write from another process
            def add_milestone_elsewhere(name: str) -> None:
                other = sqlite3.connect(env / "db" / "trac.db")  # what a 2nd process's Milestone.insert
                with other:                                     # + cache invalidation writes
                    other.execute("INSERT INTO milestone (name, due, completed, description) "
                                  "VALUES (?, 0, 0, '')", (name,))
                    other.execute("UPDATE cache SET generation=generation+1 "
                                  "WHERE key='trac.ticket.model.MilestoneCache.milestones'")
                other.close()

            def plain_restore() -> None:
                with sqlite3.connect(tmp / "pristine.db") as src, \
                        sqlite3.connect(env / "db" / "trac.db") as dst:
                    src.backup(dst)

            for mode, restore in (("plain sqlite backup", plain_restore), ("Resetter.reset", resetter.reset)):
                restore()                                       # episode 1 starts from the seed
                login(page, base, "Mei Chen")                   # (a restore logs everyone out),
                page.goto(base + "/roadmap")                    # adds 3.0 (generation +1) and
                page.get_by_role("button", name="Add new milestone").click()
                page.get_by_label("Name:").fill("3.0")
                page.get_by_role("button", name="Add milestone").click()
                page.wait_for_url("**/milestone/3.0")
                roadmap_milestones(page, base)                  # tracd caches the list with 3.0
                restore()                                       # episode 2: seed again, and another
                add_milestone_elsewhere("2.1")                  # process bumps the generation +1
                shown = roadmap_milestones(page, base)
                stale = "3.0" in shown or "2.1" not in shown
                print(f"  {mode}, then another process adds 2.1: roadmap shows {shown} -> "
                      f"{'STALE' if stale else 'fresh'}")
                expect(stale == (restore is plain_restore), f"expected outcome for {mode}")
            resetter.reset()

            # -- reset timings with nothing to undo, tracd idle
            times = []
            for _ in range(20):
                r0 = time.perf_counter()
                resetter.reset()
                times.append((time.perf_counter() - r0) * 1000)
            print(f"  Resetter.reset() x20: median {statistics.median(times):.1f} ms, "
                  f"max {max(times):.1f} ms")
            browser.close()
        print("OK")
    finally:
        if proc:
            proc.terminate()
            proc.wait()
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
