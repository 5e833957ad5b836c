#!/usr/bin/env python
"""Seeded Trac 1.6 environment for "Driftwood", a fictional distributed job scheduler.

    python apps/trac/seed.py DEST [--seed N]      # build an environment at DEST

`build(dest, seed)` creates the environment with Trac's own CLI and models
(trac-admin initenv/permission/session/..., Ticket, Milestone, Component,
Version, WikiPage): 11 users in 3 roles, 8 components, 5 milestones, 4
versions, ~120 tickets with histories (triage, comments, assign, accept,
resolve, reopen) and 20 wiki pages, some with several versions. Everything is
generated from `random.Random(seed)` and fixed timestamps (June 2025 - March
2026), so the same seed gives the same database content. No network.

Also here, for check.py and for synth's Trac site:
  * `tracd_command(env, port)` - the tracd command line (HTTP basic auth on /login),
  * `Resetter(env)`             - puts a running instance back to the seed state
                                  in ~10 ms (see NOTES.md, "Reset per episode").
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import random
import shlex
import shutil
import sqlite3
import sys
from datetime import datetime, timedelta
from pathlib import Path

from trac.admin.api import AdminCommandManager
from trac.admin.console import run as trac_admin
from trac.env import Environment
from trac.ticket.api import TicketSystem
from trac.ticket.model import Component, Milestone, Ticket, Version
from trac.util import md5crypt
from trac.util.datefmt import utc
from trac.wiki.model import WikiPage

PROJECT = "Driftwood"
DESCRIPTION = "Driftwood - a distributed job scheduler"
DOMAIN = "driftwood.example"
START = datetime(2025, 6, 2, 9, 0, tzinfo=utc)   # first ticket
NOW = datetime(2026, 3, 13, 17, 0, tzinfo=utc)   # "today" of the seeded history
REALM = "Driftwood"                              # HTTP auth realm

# (login, full name, role). Password of every user: f"{login}-pass" (see password()).
# admin: TRAC_ADMIN; developer: the `developer` group (TICKET_MODIFY, WIKI_MODIFY,
# MILESTONE_*, ...); reporter: only what `authenticated` has (create tickets, comment, attach).
USERS = [
    ("admin", "Dana Whitfield", "admin"),
    ("mchen", "Mei Chen", "developer"),          # project lead, triages
    ("pkowalski", "Piotr Kowalski", "developer"),
    ("sdiaz", "Sofia Diaz", "developer"),
    ("nokafor", "Ngozi Okafor", "developer"),
    ("rpatel", "Ravi Patel", "developer"),
    ("ebrandt", "Erik Brandt", "developer"),
    ("lnguyen", "Linh Nguyen", "developer"),
    ("tmorgan", "Tom Morgan", "reporter"),
    ("hsato", "Haruki Sato", "reporter"),
    ("agarcia", "Ana Garcia", "reporter"),
]
LEAD = "mchen"
DEVS = [u for u, _, r in USERS if r == "developer"]
NAMES = {u: n for u, n, _ in USERS}
OUTSIDERS = ["k.lindqvist@example.net", "ops-team@example.com", "anonymous"]  # unregistered reporters

PERMISSIONS = {  # subject -> actions (anonymous keeps Trac's default *_VIEW set)
    "developer": ["TICKET_MODIFY", "TICKET_BATCH_MODIFY", "TICKET_EDIT_CC", "WIKI_CREATE",
                  "WIKI_MODIFY", "MILESTONE_CREATE", "MILESTONE_MODIFY", "REPORT_CREATE",
                  "REPORT_MODIFY"],
}
# initenv gives `authenticated` TICKET_CREATE, TICKET_MODIFY, WIKI_CREATE, WIKI_MODIFY;
# reporters keep TICKET_CREATE and may comment/attach (TICKET_APPEND), nothing more
AUTHENTICATED_REVOKE = ["TICKET_MODIFY", "WIKI_CREATE", "WIKI_MODIFY"]
AUTHENTICATED_GRANT = ["TICKET_APPEND"]

COMPONENTS = [  # name, owner, description
    ("scheduler", "mchen", "Cron parser, queues, leases and leader election."),
    ("worker", "pkowalski", "The `drift worker` process: claiming, running and reporting jobs."),
    ("api", "sdiaz", "REST API (`/api/v1`) and webhooks."),
    ("web-ui", "lnguyen", "The dashboard: job lists, run history, log viewer."),
    ("cli", "rpatel", "The `drift` command line client."),
    ("storage", "nokafor", "PostgreSQL/SQLite backends, migrations, retention."),
    ("docs", "ebrandt", "User and developer documentation."),
    ("packaging", "rpatel", "Wheels, Docker image, Debian package, Helm chart."),
]
THINGS = {  # what tickets of a component are about
    "scheduler": ["cron expression parser", "job queue", "retry backoff", "lease renewal",
                  "misfire policy", "leader election", "priority queue"],
    "worker": ["worker heartbeat", "graceful shutdown", "concurrency limiter", "task timeout",
               "memory watchdog", "subprocess runner", "result serializer"],
    "api": ["/api/v1/jobs endpoint", "pagination cursor", "API token auth", "rate limiter",
            "OpenAPI schema", "webhook delivery", "error responses"],
    "web-ui": ["job detail page", "dashboard charts", "run history table", "log viewer",
               "search box", "queue overview page", "settings page"],
    "cli": ["submit command", "log follow mode", "shell completion", "config file loader",
            "progress output", "status table"],
    "storage": ["PostgreSQL backend", "SQLite backend", "migration runner", "connection pool",
                "retention cleanup", "Redis lock backend"],
    "docs": ["installation guide", "configuration reference", "API tutorial", "upgrade notes",
             "FAQ page", "architecture overview"],
    "packaging": ["Docker image", "Debian package", "Helm chart", "PyPI wheel", "systemd unit file",
                  "Homebrew formula"],
}
MODULES = {"scheduler": ["scheduler/lease", "scheduler/cron", "core/retry"],
           "worker": ["worker/runner", "worker/heartbeat"], "api": ["api/jobs", "api/hooks"],
           "web-ui": ["web/views", "web/static"], "cli": ["cli/main", "core/config"],
           "storage": ["storage/pg", "storage/sqlite"], "docs": ["docs/conf"],
           "packaging": ["setup", "packaging/debian"]}
MILESTONES = [  # name, due, completed, description
    ("0.9", datetime(2025, 8, 29, tzinfo=utc), datetime(2025, 9, 3, 14, tzinfo=utc),
     "First public beta. Focus: '''stable job leases''' and the SQLite backend."),
    ("1.0", datetime(2025, 10, 31, tzinfo=utc), datetime(2025, 11, 7, 16, tzinfo=utc),
     "First stable release.\n\n * API frozen (see ApiReference)\n * PostgreSQL backend\n"
     " * Docker image"),
    ("1.1", datetime(2026, 1, 16, tzinfo=utc), datetime(2026, 1, 22, 11, tzinfo=utc),
     "Web dashboard improvements, webhooks, `drift logs --follow`."),
    ("1.2", datetime(2026, 4, 17, tzinfo=utc), None,
     "Job dependencies, per-queue concurrency limits, Prometheus metrics.\n\n"
     "Release manager: [wiki:ReleaseProcess mchen]."),
    ("2.0", datetime(2026, 9, 30, tzinfo=utc), None,
     "Multi-region scheduling and the new plugin API (see PluginApi). Breaking changes allowed."),
]
VERSIONS = [("0.8", datetime(2025, 5, 16, tzinfo=utc)), ("0.9", MILESTONES[0][2]),
            ("1.0", MILESTONES[1][2]), ("1.1", MILESTONES[2][2])]
PRIORITIES = ["highest", "high", "normal", "low", "lowest"]       # replaces blocker..trivial
SEVERITIES = ["blocker", "critical", "major", "normal", "minor", "trivial"]
PLATFORMS = ["Any", "Linux", "macOS", "Windows"]                   # custom field `platform`
KEYWORDS = ["regression", "performance", "ux", "security", "timezone", "postgres", "memory",
            "easy", "needinfo", "api-break", "flaky-test", "docs"]

CONDS = ["the job name contains non-ASCII characters", "the queue is empty",
         "the database restarts", "two workers claim the same job",
         "a schedule crosses a DST change", "the config file is missing",
         "more than 10,000 jobs are pending", "the network drops for a few seconds",
         "a job is cancelled while running", "the worker runs with --concurrency 1",
         "running under Python 3.13", "the disk is full"]
SETTINGS = ["max_retries", "lease_timeout", "log_level", "queue.default_priority",
            "worker.heartbeat_interval", "storage.pool_size", "api.page_size", "retention_days"]
EXCS = ["KeyError", "TimeoutError", "UnicodeDecodeError", "sqlite3.OperationalError",
        "ConnectionResetError", "ValueError"]
FEATURES = ["filtering by tag", "JSON output", "per-queue concurrency limits", "bulk cancel",
            "a dry-run mode", "custom job labels", "CSV export", "pausing a queue",
            "job dependencies", "cron jitter", "OAuth login", "keyboard shortcuts"]
DEFECT_SUMMARIES = ["{Thing} crashes when {cond}", "{Thing} ignores the {setting} setting",
                    "Memory leak in {thing} after long uptime", "{Thing} fails with {exc} when {cond}",
                    "Race condition in {thing} when {cond}", "{Thing} shows wrong timestamps when {cond}",
                    "{Thing} is very slow when {cond}", "{Thing} does not work on {platform}",
                    "Unhandled {exc} in {thing}", "{Thing} does not retry when {cond}"]
ENH_SUMMARIES = ["Add {feature} to the {thing}", "Support {feature} in the {thing}",
                 "Make the {thing} configurable per queue", "Expose {thing} metrics to Prometheus",
                 "{Thing}: allow {feature}"]
TASK_SUMMARIES = ["Write integration tests for the {thing}", "Refactor the {thing}",
                  "Document the {thing}", "Benchmark the {thing} against 1.0",
                  "Remove deprecated options from the {thing}", "Update the {thing} for Python 3.13",
                  "Clean up logging in the {thing}"]
COMMENTS = ["I can reproduce this on {platform} with {version}.",
            "Could you attach the worker log with `log_level = debug`?",
            "Same here, this bites us in production every few days.",
            "Looks related to #{other}.",
            "I had a quick look: the problem is in `{module}.py`, the lease is not reset "
            "after a retry.",
            "+1, we need this for our nightly batch jobs.",
            "Is this still an issue with {version}?",
            "Added a failing test case on the branch `fix/{slug}`.",
            "Not sure this belongs in core, a plugin hook may be enough. See PluginApi.",
            "Workaround until this is fixed: set `{setting}` explicitly in `driftwood.toml`.",
            "The fix should also cover the {thing2}, it has the same pattern."]
RESOLVE_COMMENTS = {
    "fixed": ["Fixed in {sha}.", "Fixed in {sha}, will be part of {milestone}.",
              "Merged {sha}, thanks for the report!", "Done in {sha}. Docs updated as well."],
    "wontfix": ["Working as designed, see SchedulerInternals. Closing.",
                "We will not support this in core; it can be done with a plugin (PluginApi)."],
    "duplicate": ["Duplicate of #{other}."],
    "worksforme": ["Cannot reproduce with {version} on {platform}. Please reopen with a minimal "
                   "`driftwood.toml` if it still happens."],
    "invalid": ["This is a problem of the deployment (proxy timeout), not of Driftwood. "
                "Please ask on the mailing list, see [wiki:FAQ]."],
}


def password(login: str) -> str:
    return f"{login}-pass"


def htpasswd_line(login: str, seed: int) -> str:
    """Apache MD5 ($apr1$) entry, the `htpasswd -m` format tracd's --basic-auth verifies
    without the deprecated `crypt` module; the salt is derived so the file is reproducible."""
    salt = hashlib.sha1(f"{seed}:{login}".encode()).hexdigest()[:8]
    return f"{login}:{md5crypt(password(login), salt, '$apr1$')}"


def admin(env, *args: str) -> None:
    """Run one trac-admin command: in-process on an open Environment (the command
    implementations the `trac-admin ENV ...` CLI dispatches to), or, for `initenv`,
    the CLI entry point itself. Each Environment open costs ~0.5 s CPU here (Trac
    scans every installed distribution for plugins), so the build opens one."""
    if isinstance(env, Environment):
        AdminCommandManager(env).execute_command(*args)
        return
    with contextlib.redirect_stdout(io.StringIO()):
        if trac_admin([str(env), *args]):
            raise RuntimeError(f"trac-admin {' '.join(args)} failed")


def wiki(text: str) -> str:
    return text.strip("\n") + "\n"


# ---------------------------------------------------------------- tickets

class TicketPlan:
    """One ticket: its initial values and its later changes [(when, author, {field: value}, comment)]."""

    def __init__(self, tid: int, created: datetime, values: dict, events: list):
        self.id, self.created, self.values, self.events = tid, created, values, events


def plan_tickets(rng: random.Random, n: int) -> list[TicketPlan]:
    created = sorted(START + timedelta(seconds=rng.randrange(int((NOW - START).total_seconds()) - 3 * 86400))
                     for _ in range(n))
    reporters = [u for u, _, _ in USERS if u != "admin"] * 3 + OUTSIDERS
    plans = []
    for tid, t0 in enumerate(created, 1):
        ttype = rng.choices(["defect", "enhancement", "task"], [5, 3, 2])[0]
        comp, owner, _ = rng.choice(COMPONENTS)
        thing, thing2 = rng.sample(THINGS[comp], 2)
        released = [v for v, when in VERSIONS if when <= t0]
        version = released[-1] if released else ""
        f = dict(thing=thing, Thing=thing[0].upper() + thing[1:], thing2=thing2, cond=rng.choice(CONDS),
                 setting=rng.choice(SETTINGS), exc=rng.choice(EXCS), feature=rng.choice(FEATURES),
                 platform=rng.choice(PLATFORMS[1:]), version=version or "0.8",
                 module=rng.choice(MODULES[comp]), other=rng.randint(1, max(1, tid - 1)),
                 slug=thing.split()[0].strip("/-").replace("/", "-") + f"-{tid}",
                 sha=hashlib.sha1(f"{tid}".encode()).hexdigest()[:9])
        summary = rng.choice({"defect": DEFECT_SUMMARIES, "enhancement": ENH_SUMMARIES,
                              "task": TASK_SUMMARIES}[ttype]).format(**f)
        reporter = rng.choice(reporters)
        age = (NOW - t0).days
        p_closed = 0.85 if age > 120 else 0.55 if age > 40 else 0.2
        if rng.random() < p_closed:
            final = "closed"
        else:
            final = rng.choices(["new", "assigned", "accepted", "reopened"], [45, 25, 25, 5])[0]
        resolution = ""
        if final == "closed":
            resolution = "fixed" if ttype == "task" else rng.choices(
                ["fixed", "wontfix", "duplicate", "worksforme", "invalid"], [70, 8, 8, 7, 7])[0]
            if ttype != "defect" and resolution in ("worksforme", "invalid"):
                resolution = "wontfix"
        worker = owner if rng.random() < 0.6 else rng.choice(DEVS)

        # the sequence of steps, then their times
        steps = []  # (kind, author)
        triage = rng.random() < 0.6
        if triage:
            steps.append(("triage", LEAD))
        for _ in range(rng.choices([0, 1, 2, 3], [35, 35, 20, 10])[0]):
            steps.append(("comment", rng.choice([reporter, owner, rng.choice(DEVS)])))
        if final in ("assigned", "accepted", "reopened") or (final == "closed" and resolution == "fixed"):
            if worker != owner or final == "assigned":
                steps.append(("assign", LEAD))
            if final in ("accepted", "reopened") or (final == "closed" and rng.random() < 0.5):
                steps.append(("accept", worker))
        if final in ("closed", "reopened"):
            steps.append(("resolve", worker if resolution in ("fixed", "") else LEAD))
        if final == "reopened":
            steps.append(("reopen", reporter if reporter not in OUTSIDERS else LEAD))
        span = (NOW - t0).total_seconds() * 0.9
        delays = [rng.uniform(0.1, 6) * 86400 for _ in steps]
        scale = min(1.0, span / sum(delays)) if delays else 1.0
        times, t = [], t0
        for d in delays:
            t = t + timedelta(seconds=max(60, int(d * scale)))
            times.append(t)

        # milestone: fixed tickets land in the first milestone completed after the fix
        resolved_at = next((tm for (k, _), tm in zip(steps, times) if k == "resolve"), None)
        if final == "closed" and resolution == "fixed":
            milestone = next((m for m, _, done, _ in MILESTONES if done and done >= resolved_at), "1.2")
        elif final == "closed":
            milestone = ""
        else:
            milestone = rng.choices(["1.2", "2.0", ""], [55, 25, 20])[0]
        priority = rng.choices(PRIORITIES, [5, 20, 50, 20, 5])[0]
        values = dict(type=ttype, component=comp, summary=summary, reporter=reporter, owner=owner,
                      status="new", priority=priority,
                      severity=rng.choices(SEVERITIES, [3, 8, 20, 45, 17, 7])[0] if ttype == "defect"
                      else rng.choice(["normal", "minor"]),
                      milestone="" if triage else milestone, version=version if ttype == "defect" else "",
                      keywords=" ".join(rng.sample(KEYWORDS, rng.choice([0, 0, 1, 1, 2]))),
                      cc=", ".join(rng.sample([u for u in DEVS if u != owner], rng.choice([0, 0, 1, 2]))),
                      platform=f["platform"] if ttype == "defect" else "Any",
                      description=describe(ttype, f, rng))
        events = []
        for (kind, author), when in zip(steps, times):
            f["milestone"] = milestone or "the next release"
            ch, text = {}, ""
            if kind == "triage":
                ch = {"milestone": milestone}
                if rng.random() < 0.3:
                    ch["priority"] = rng.choice(PRIORITIES[:3])
                text = rng.choice(["", f"Triaged for {milestone}." if milestone else "Needs more info.",
                                   "Confirmed."])
            elif kind == "comment":
                text = rng.choice(COMMENTS).format(**f)
            elif kind == "assign":
                ch = {"owner": worker, "status": "assigned"}
                text = rng.choice(["", f"{NAMES[worker].split()[0]}, can you take this one?"])
            elif kind == "accept":
                ch = {"owner": worker, "status": "accepted"}
                text = rng.choice(["", "", "Working on it."])
            elif kind == "resolve":
                ch = {"status": "closed", "resolution": resolution or "fixed"}
                text = rng.choice(RESOLVE_COMMENTS[resolution or "fixed"]).format(**f)
            elif kind == "reopen":
                ch = {"status": "reopened", "resolution": ""}
                text = f"Still happens with {version or '1.1'} after upgrading, reopening."
            if kind in ("assign", "accept") and worker != owner and rng.random() < 0.3:
                ch["estimate"] = str(rng.choice([2, 4, 8, 16]))
            events.append((when, author, ch, text))
        plans.append(TicketPlan(tid, t0, values, events))
    return plans


def describe(ttype: str, f: dict, rng: random.Random) -> str:
    """A ticket description in WikiFormatting."""
    if ttype == "defect":
        line = rng.randint(40, 400)
        return wiki(f"""
When {f['cond']}, the {f['thing']} misbehaves.

=== Steps to reproduce ===
 1. Start a worker: `drift worker --queue default --concurrency 4`
 2. Submit a job: `drift submit nightly-report --every "0 2 * * *"`
 3. Wait until {f['cond']}.

=== Expected ===
The job runs once and is marked ''succeeded''.

=== Actual ===
{{{{{{
Traceback (most recent call last):
  File "driftwood/{f['module']}.py", line {line}, in handle
{f['exc']}: {f['thing']} failed
}}}}}}

Seen on '''{f['platform']}''' with Driftwood {f['version']}. Maybe related to #{f['other']}.
""")
    if ttype == "enhancement":
        return wiki(f"""
It would be useful to have {f['feature']} in the {f['thing']}.

'''Use case:''' we run ~300 jobs per night and need to tell them apart quickly.

Proposal:
 * add an option `{f['setting']}` (default off)
 * show it in the web UI and in `drift status`
 * document it in [wiki:Configuration]

See also #{f['other']}.
""")
    return wiki(f"""
Part of the work for the next release, see the roadmap.

 * [ ] go through the {f['thing']} code in `{f['module']}.py`
 * [ ] add tests
 * [ ] update [wiki:DeveloperGuide]
""")


# ---------------------------------------------------------------- wiki

def wiki_pages(rng: random.Random, plans: list[TicketPlan]) -> dict[str, list[str]]:
    """Page name -> sections; version k of a page is the first few sections (see build)."""
    open_defects = [p.id for p in plans if p.values["type"] == "defect"
                    and p.events[-1:] and p.events[-1][2].get("status") != "closed"][:4] or [1]
    first = lambda s: NAMES[s].split()[0]
    return {
        "WikiStart": [
            "= Driftwood =\n\nDriftwood is a distributed job scheduler: define jobs with cron "
            "expressions, run them on a pool of workers, watch them in a web dashboard.\n\n"
            "[[TOC]]\n",
            "== For users ==\n * GettingStarted - install and run your first job\n"
            " * [wiki:Installation] and [wiki:Configuration]\n * CliUsage, ApiReference\n"
            " * [wiki:FAQ] and [wiki:Troubleshooting]\n",
            "== For developers ==\n * DeveloperGuide, CodingStyle, ContributingGuide\n"
            " * SchedulerInternals, StorageBackends, PluginApi\n * ReleaseProcess, MeetingNotes\n",
            "== Project status ==\nThe current release is '''1.1''' (January 2026). Next: "
            "milestone:1.2, see the [/roadmap roadmap] and [report:1 active tickets].\n",
        ],
        "GettingStarted": [
            "= Getting started =\n\n{{{\npip install driftwood\ndrift init\ndrift worker &\n"
            "drift submit hello --every \"*/5 * * * *\" -- echo hello\n}}}\n",
            "Open http://localhost:8400/ to see the dashboard. Next: [wiki:Configuration].\n",
        ],
        "Installation": [
            "= Installation =\n\n== PyPI ==\n{{{\npip install driftwood[postgres]\n}}}\n",
            "== Docker ==\n{{{\ndocker run -p 8400:8400 driftwood/driftwood:1.1\n}}}\n",
            "== Debian ==\nPackages are built for bookworm, see ReleaseProcess.\n",
        ],
        "Configuration": [
            "= Configuration =\n\nDriftwood reads `driftwood.toml` from the working directory.\n\n"
            "||= Setting =||= Default =||= Meaning =||\n"
            "|| `max_retries` || 3 || retries before a job is failed ||\n"
            "|| `lease_timeout` || 30s || see SchedulerInternals ||\n"
            "|| `retention_days` || 14 || runs older than this are deleted ||\n",
            "See WorkerConfiguration for the `[worker]` section.\n",
        ],
        "WorkerConfiguration": [
            "= Worker configuration =\n\n{{{\n[worker]\nconcurrency = 4\nheartbeat_interval = \"10s\"\n"
            "queues = [\"default\", \"reports\"]\n}}}\n",
            "== Memory watchdog ==\nWorkers restart themselves above `max_rss_mb` (since 1.1, #"
            f"{rng.randint(1, 60)}).\n",
        ],
        "SchedulerInternals": [
            "= Scheduler internals =\n\n[[TOC]]\n\n== Leases ==\nA worker claims a job by taking a "
            "lease in storage; it renews it every `lease_timeout / 3`.\n",
            "== Leader election ==\nOne scheduler instance is the leader; the others stand by.\n",
            "== Misfires ==\nIf the leader was down, missed runs are skipped unless "
            "`misfire = \"run_once\"`.\n",
        ],
        "StorageBackends": [
            "= Storage backends =\n\n * SQLite - default, single host\n * PostgreSQL - recommended "
            "for production (since milestone:1.0)\n",
            "== Known issues ==\n" + "".join(f" * #{t}\n" for t in open_defects),
        ],
        "ApiReference": [
            "= REST API =\n\nBase URL: `/api/v1`. Authenticate with `Authorization: Bearer TOKEN`.\n\n"
            "||= Method =||= Path =||= Purpose =||\n|| GET || /jobs || list jobs ||\n"
            "|| POST || /jobs || create a job ||\n|| DELETE || /jobs/{id} || cancel ||\n",
            "== Webhooks ==\nConfigured per queue; payloads are signed with HMAC-SHA256.\n",
        ],
        "CliUsage": [
            "= drift command line =\n\n{{{\ndrift submit NAME --every CRON -- COMMAND\ndrift status\n"
            "drift logs JOB [--follow]\ndrift cancel JOB\n}}}\n",
        ],
        "PluginApi": [
            "= Plugin API (draft for 2.0) =\n\nPlugins register hooks with an entry point "
            "`driftwood.plugins`.\n",
            "Open questions are tracked in milestone:2.0.\n",
        ],
        "DeveloperGuide": [
            "= Developer guide =\n\n{{{\ngit clone https://git.driftwood.example/driftwood.git\n"
            "make dev\nmake test\n}}}\n",
            "Read CodingStyle before sending a patch, and ContributingGuide for the review process.\n",
        ],
        "CodingStyle": [
            "= Coding style =\n\n * PEP 8, line length 100\n * type hints on public functions\n"
            " * one test module per source module\n",
        ],
        "ContributingGuide": [
            "= Contributing =\n\n 1. Open a ticket ([/newticket new ticket])\n 2. Send a pull request "
            "referencing it (`Refs #123`)\n 3. A developer reviews it within a week\n",
        ],
        "ReleaseProcess": [
            f"= Release process =\n\nRelease manager for 1.2: {first('mchen')}.\n\n"
            " 1. Close or move all tickets of the milestone\n 2. Tag `vX.Y` and build packages\n",
            " 3. Update WikiStart and mark the milestone completed on the [/roadmap roadmap]\n",
        ],
        "Troubleshooting": [
            "= Troubleshooting =\n\n== Jobs stay queued ==\nCheck that a worker listens on the queue: "
            "`drift status --workers`.\n",
            "== database is locked ==\nSQLite allows one writer; use PostgreSQL for more than "
            "two workers (StorageBackends).\n",
        ],
        "FAQ": [
            "= FAQ =\n\n'''Does Driftwood run on Windows?'''\n\nThe worker does, the scheduler is "
            "tested on Linux and macOS only.\n",
            "'''Can jobs depend on other jobs?'''\n\nNot yet, planned for milestone:1.2.\n",
        ],
        "Glossary": [
            "= Glossary =\n\n job:: a command plus a schedule\n run:: one execution of a job\n"
            " lease:: a worker's time-limited claim on a run\n",
        ],
        "MeetingNotes": [
            "= Meeting notes =\n\n * [wiki:MeetingNotes/2026-02-09]\n",
            " * [wiki:MeetingNotes/2026-03-09]\n",
        ],
        "MeetingNotes/2026-02-09": [
            f"= Developer meeting 2026-02-09 =\n\nPresent: {', '.join(first(u) for u in DEVS[:5])}\n\n"
            f" * 1.1 retrospective: webhook retries were late (#{rng.randint(1, 80)})\n"
            " * 1.2 scope agreed, see milestone:1.2\n",
        ],
        "MeetingNotes/2026-03-09": [
            f"= Developer meeting 2026-03-09 =\n\nPresent: {', '.join(first(u) for u in DEVS[2:])}\n\n"
            f" * open defects for 1.2: {', '.join(f'#{t}' for t in open_defects)}\n"
            " * decide on Python 3.9 support (drop it)\n",
        ],
    }


# ---------------------------------------------------------------- build

def build(dest: Path, seed: int = 0, n_tickets: int = 120) -> Path:
    """Create the Trac environment at `dest` (must not exist) and return it."""
    dest = Path(dest).resolve()
    if dest.exists():
        raise FileExistsError(dest)
    rng = random.Random(seed)
    # synchronous=off while seeding (hundreds of small transactions; 50 s -> a few s
    # on a slow disk); the normal connection string is put back at the end
    admin(dest, "initenv", PROJECT, "sqlite:db/trac.db?synchronous=off")

    # --- configuration (trac.ini): project, custom fields, logging, display
    env = Environment(str(dest))
    c = env.config
    for sec, key, val in [
        ("project", "descr", DESCRIPTION), ("project", "url", f"https://{DOMAIN}/"),
        ("project", "footer", "Driftwood issue tracker"),
        ("header_logo", "src", "common/trac_banner.png"), ("header_logo", "alt", PROJECT),
        ("header_logo", "link", "/"), ("header_logo", "width", "236"), ("header_logo", "height", "73"),
        ("logging", "log_level", "WARNING"), ("trac", "default_timezone", "UTC"),
        ("ticket", "default_priority", "normal"), ("ticket", "default_severity", "normal"),
        ("ticket-custom", "platform", "select"), ("ticket-custom", "platform.label", "Platform"),
        ("ticket-custom", "platform.options", "|".join(PLATFORMS)),
        ("ticket-custom", "platform.value", "Any"), ("ticket-custom", "platform.order", "1"),
        ("ticket-custom", "estimate", "text"), ("ticket-custom", "estimate.label", "Estimate (hours)"),
        ("ticket-custom", "estimate.order", "2"),
    ]:
        c.set(sec, key, val)
    c.save()
    TicketSystem(env).reset_ticket_fields()

    # --- enums, components, milestones, versions, users, permissions (trac-admin)
    for name in ("component1", "component2"):
        admin(env, "component", "remove", name)
    for name in ("milestone1", "milestone2", "milestone3", "milestone4"):
        admin(env, "milestone", "remove", name)
    for name in ("1.0", "2.0"):
        admin(env, "version", "remove", name)
    for name in ("blocker", "critical", "major", "minor", "trivial"):
        admin(env, "priority", "remove", name)
    for name in PRIORITIES:
        admin(env, "priority", "add", name)
    for name in SEVERITIES:
        admin(env, "severity", "add", name)
    admin(env, "permission", "remove", "authenticated", *AUTHENTICATED_REVOKE)
    admin(env, "permission", "add", "authenticated", *AUTHENTICATED_GRANT)
    admin(env, "permission", "add", "developer", *PERMISSIONS["developer"])
    for login, name, role in USERS:
        admin(env, "session", "add", f"{login}:1", name, f"{login}@{DOMAIN}")
        if role != "reporter":
            admin(env, "permission", "add", login, "TRAC_ADMIN" if role == "admin" else "developer")
    (dest / "conf" / "htpasswd").write_text("".join(htpasswd_line(u, seed) + "\n" for u, _, _ in USERS))

    with env.db_transaction as db:  # initenv and `session add` stamp rows with the wall clock
        db("UPDATE wiki SET time=%s", (int((START - timedelta(days=30)).timestamp()) * 10**6,))
        db("UPDATE session SET last_visit=%s", (int(NOW.timestamp()),))
    for name, owner, descr in COMPONENTS:
        comp = Component(env)
        comp.name, comp.owner, comp.description = name, owner, descr
        comp.insert()
    for name, due, done, descr in MILESTONES:
        m = Milestone(env)
        m.name, m.due, m.completed, m.description = name, due, done, descr
        m.insert()
    for name, when in VERSIONS:
        v = Version(env)
        v.name, v.time = name, when
        v.insert()

    # --- tickets with their histories
    plans = plan_tickets(rng, n_tickets)
    for p in plans:
        t = Ticket(env)
        t.populate(p.values)
        assert t.insert(when=p.created) == p.id
        for when, author, changes, comment in p.events:
            for k, v in changes.items():
                t[k] = v
            t.save_changes(author, comment, when=when)

    # --- wiki: version k of a page = its first sections; authors and times vary
    for name, sections in wiki_pages(rng, plans).items():
        page = WikiPage(env, name)          # WikiStart exists already (initenv)
        n_versions = rng.randint(1, len(sections))
        cuts = sorted(rng.sample(range(1, len(sections)), n_versions - 1)) + [len(sections)]
        when = START + timedelta(days=rng.randint(0, 200), hours=rng.randint(0, 9))
        for k, cut in enumerate(cuts):
            page.text = wiki("\n".join(sections[:cut]))
            author = rng.choice(DEVS) if k else rng.choice(DEVS[:4])
            comment = "Initial version" if page.version == 0 else rng.choice(
                ["", "Add section", "Update for 1.1", "typo", "More details"])
            page.save(author, comment, when)
            when = min(NOW, when + timedelta(days=rng.randint(1, 40), minutes=rng.randint(0, 600)))
    env.config.set("trac", "database", "sqlite:db/trac.db")
    env.config.save()
    env.shutdown()
    db = sqlite3.connect(dest / "db" / "trac.db")
    db.execute("VACUUM")                                  # compact, so copies are small
    db.close()
    for log in (dest / "log").glob("*"):
        log.unlink()
    return dest


# ---------------------------------------------------------------- serving and reset

# tracd, started through a few lines of Python instead of the `tracd` script:
# 1. Trac 1.6 on Python < 3.13 tries `import multipart` (defnull's package) and else
#    uses the stdlib `cgi`. In synth's venv `multipart` is python-multipart's shim (a
#    synth dependency) without `parse_options_header`, so every POST fails (empty
#    response; AttributeError in trac.log). Blocking the name makes Trac use `cgi`.
# 2. Trac runs a full gc.collect() after every request; with the heap of a venv's
#    worth of pkg_resources metadata that is ~30 ms CPU per request, static files
#    included. Opening the environment before serving (tracd reuses the cached one)
#    and gc.freeze() take that heap out of collections: a static file 35 -> 2 ms CPU,
#    /ticket/N 57 -> 23 ms.
TRACD = ("import gc, sys; sys.modules['multipart'] = None; "
         "from trac.env import open_environment; from trac.web.standalone import main; "
         "open_environment(sys.argv[-1], use_cache=True); gc.freeze(); main()")


def tracd_command(env: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """The tracd command line: one environment at /, HTTP basic auth on /login only
    (tracd's AuthenticationMiddleware challenges just that path; the login then sets
    the `trac_auth` cookie). `*` applies the password file to any env name."""
    env = Path(env).resolve()
    return [sys.executable, "-c", TRACD, "--single-env", "--hostname", host, "--port", str(port),
            "--basic-auth", f"*,{env / 'conf' / 'htpasswd'},{REALM}", str(env)]


class Resetter:
    """Put an environment back to the state it had when the Resetter was made, while
    tracd keeps running: the database is overwritten in place with SQLite's backup API
    (one step, under SQLite's own exclusive lock), then attachments and trac.ini are
    restored. Trac's CacheManager keeps a generation number per cache in the `cache`
    table and refetches when it differs from the one it cached with; a restore puts
    old generation numbers back, which could equal ones the running tracd cached
    stale data under (ABA), so the restored copy gets every generation set past the
    live maximum. See NOTES.md for the measurements."""

    def __init__(self, env: Path):
        self.env = Path(env).resolve()
        self.db_path = self.env / "db" / "trac.db"
        self.pristine = sqlite3.connect(":memory:", check_same_thread=False)
        with sqlite3.connect(self.db_path) as src:
            src.backup(self.pristine)
        self.ini = (self.env / "conf" / "trac.ini").read_bytes()
        self.files = self.env / "files"
        self.seed_files = {p for p in self.files.rglob("*")} if self.files.exists() else set()

    def reset(self) -> None:
        live = sqlite3.connect(self.db_path, timeout=10)
        try:
            live.execute("PRAGMA synchronous=OFF")     # no fsync: 3-4x faster; a reset need
                                                       # not survive a power cut, only be atomic
            (top,) = live.execute("SELECT COALESCE(MAX(generation), 0) FROM cache").fetchone()
            with self.pristine:
                self.pristine.execute("UPDATE cache SET generation=?", (top + 1,))
            # pages=-1: all pages in one step under SQLite's lock; if tracd holds the
            # database, retry every 5 ms (Python's default is 250 ms)
            self.pristine.backup(live, sleep=0.005)
        finally:
            live.close()
        if self.files.exists():                        # attachments added during the episode
            for p in sorted(self.files.rglob("*"), reverse=True):
                if p not in self.seed_files:
                    p.unlink() if p.is_file() or p.is_symlink() else p.rmdir()
        ini = self.env / "conf" / "trac.ini"
        if ini.read_bytes() != self.ini:               # admin panels write trac.ini; a new
            ini.write_bytes(self.ini)                  # mtime makes tracd reload it


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="replace DEST if it exists")
    a = ap.parse_args()
    if a.force and a.dest.exists():
        shutil.rmtree(a.dest)
    env = build(a.dest, a.seed)
    with sqlite3.connect(env / "db" / "trac.db") as db:
        counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                  for t in ("ticket", "ticket_change", "wiki", "milestone", "component")}
    print(f"built {env} (seed {a.seed}): {counts}")
    print(f"serve: {shlex.join(tracd_command(env, 8000))}")


if __name__ == "__main__":
    main()
