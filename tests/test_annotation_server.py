"""The annotation server as it runs: `synth annotate serve` in its own process
with its own Chromium, driven over HTTP. Sessions, roles, CSRF, escaping,
paths, rate limits, logs; twenty labelers at once on real MiniWoB episodes;
a lease that expires."""

from __future__ import annotations

import http.client
import json
import re
import secrets
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import requests

from annotation_ui.store import Store, hash_secret
from annotation_ui.testing import ROOT, ServerProcess, login
from synth import staging
from synth.schema import Action, Box, Element, Observation, Step, Trajectory, Verdict, trajectory_id
from synth.sites.miniwob import make_task

TOKEN = re.compile(r"syn_[A-Za-z0-9_\-]{8,32}\.[A-Za-z0-9_\-]{40,}")
PAYLOAD = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'
N_TASKS = 30
N_LABELERS = 20


def staged(source: str, detail: str, seed: int, passed: bool) -> Trajectory:
    """A trajectory another source wrote to staging (the review pages read staging)."""
    task = make_task("click-test", 500 + seed)
    obs = Observation(url="http://x/", area=Box(x=0, y=0, width=160, height=210), screenshot=b"PNG-" + detail.encode())
    el = Element(id=3, tag="button", role="button", name="Click Me!", box=Box(x=50, y=90, width=60, height=30))
    return Trajectory(
        trajectory_id=trajectory_id(task.task_id, source, detail), task_id=task.task_id,
        template_id=task.template_id, site="miniwob", seed=task.seed, source=source, source_detail=detail,
        instruction=f"{source} {detail}: " + PAYLOAD,
        steps=[Step(index=0, observation=obs, action=Action(name="click", x=0.5, y=0.5, element_id=3), element=el)],
        verdict=Verdict(passed=passed, reason="test"), status="accepted" if passed else "rejected",
        reject_reason=None if passed else "judge: test",
    )


def assert_escaped(html: str) -> None:
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert" in html


@pytest.fixture(scope="module")
def main_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("annotate")
    pipeline = tmp / "pipeline.yaml"
    guidelines = json.dumps("## Rules\n\n" + PAYLOAD + "\n\n[a link](javascript:alert(1))")
    pipeline.write_text(
        f"""
name: annotate-test
output_dir: {tmp / 'out'}
tasks:
  - templates: {ROOT / 'templates/tasks/miniwob.yaml'}
    include: [click-test]
sources:
  human:
    enabled: true
    guidelines: {guidelines}
"""
    )
    db = tmp / "out" / "annotations.db"
    # one user through the CLI: the token is printed once, on stdout only
    r = subprocess.run(
        [sys.executable, "-m", "synth.cli", "annotate", "add-user", "root", "--role", "admin", "-p", str(pipeline)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    tokens = {"root": r.stdout.strip()}
    assert TOKEN.fullmatch(tokens["root"]) and tokens["root"] not in r.stderr
    store = Store(db)
    for name, role in [("lab", "labeler"), ("xss", "labeler"), ("rev", "reviewer")] + [
        (f"sim{i:02d}", "labeler") for i in range(N_LABELERS)
    ]:
        tokens[name] = store.add_user(name, role)
    xss_tasks = [make_task("click-test", 1000 + i).model_copy(update={"instruction": PAYLOAD}) for i in range(2)]
    store.enqueue_many([(t, 1, "manual", 10) for t in xss_tasks])
    store.enqueue_many([(make_task("click-test", seed), 1, "manual", 0) for seed in range(N_TASKS)])
    store.close()
    staging.write_batch(tmp / "out" / "staging", [
        staged("solver", "miniwob.click-test", 0, True), staged("bootstrap", "gpt-4o", 1, True),
        staged("bootstrap", "gpt-4o", 2, False), staged("solver", "miniwob.click-test", 3, False),
    ], "run-solver0-000000")
    server = ServerProcess("-p", str(pipeline), "--login-attempts", "200", "--lease-seconds", "120",
                           log_path=tmp / "server.log")
    yield server, tokens, db
    server.stop()


@pytest.fixture(scope="module")
def short_server(tmp_path_factory):
    """Leases of 6 s and 5 logins a minute."""
    tmp = tmp_path_factory.mktemp("annotate-short")
    db = tmp / "q.db"
    store = Store(db)
    tokens = {n: store.add_user(n, "labeler") for n in ("a", "b")}
    store.enqueue(make_task("click-test", 0))
    store.close()
    server = ServerProcess("--db", str(db), "--lease-seconds", "6", "--login-attempts", "5",
                           log_path=tmp / "server.log")
    yield server, tokens
    server.stop()


@pytest.fixture(scope="module")
def user_server(tmp_path_factory):
    """A server behind a (pretend) TLS proxy on 127.0.0.1, users added by the CLI."""
    tmp = tmp_path_factory.mktemp("annotate-users")
    db = tmp / "q.db"
    Store(db).enqueue(make_task("click-test", 0))
    server = ServerProcess("--db", str(db), "--forwarded-allow-ips", "127.0.0.1", "--login-attempts-per-user", "3",
                           log_path=tmp / "server.log")
    yield server, db
    server.stop()


def annotate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synth.cli", "annotate", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def raw_get(url: str, path: str, cookie: str = "") -> int:
    """GET a path exactly as written (no client-side normalisation)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    status = conn.getresponse().status
    conn.close()
    return status


def button_center(lease: dict) -> tuple[float, float]:
    buttons = [e for e in lease["elements"] if e["role"] == "button"]
    x, y, w, h = buttons[0]["box"]
    return x + w / 2, y + h / 2


# ---------------------------------------------------------------- access control


def test_every_endpoint_needs_a_session(main_server):
    server, _, _ = main_server
    url = server.url
    for path in ["/", "/label", "/review", "/review/0123456789abcdef", "/admin"]:
        r = requests.get(url + path, allow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    for path in ["/api/state", "/api/screenshot", "/review/0123456789abcdef/step/0.png"]:
        assert requests.get(url + path).status_code == 401, path
    for path in ["/api/next", "/api/act", "/api/undo", "/api/submit", "/api/skip", "/api/heartbeat",
                 "/review/0123456789abcdef", "/logout"]:
        assert requests.post(url + path, json={}).status_code == 401, path
    # a forged or stale session cookie is no session
    assert requests.get(url + "/api/state", cookies={"synth_session": "x" * 43}).status_code == 401
    assert requests.get(url + "/login").status_code == 200
    assert requests.get(url + "/static/app.css").status_code == 200  # the login page's own style


def test_roles_are_enforced_on_the_server(main_server):
    server, tokens, _ = main_server
    url = server.url
    lab, rev, root = login(url, tokens["lab"]), login(url, tokens["rev"]), login(url, tokens["root"])
    for path in ["/review", "/admin", "/review/0123456789abcdef"]:
        assert lab.get(url + path).status_code == 403, path
    assert lab.post(url + "/review/0123456789abcdef", data={"verdict": "reject"}).status_code == 403
    assert lab.get(url + "/review/0123456789abcdef/step/0.png").status_code == 403
    for path in ["/label", "/admin"]:
        assert rev.get(url + path).status_code == 403, path
    for path in ["/api/next", "/api/skip", "/api/submit"]:
        assert rev.post(url + path, json={}).status_code == 403, path
    assert rev.get(url + "/api/state").status_code == 403
    for path in ["/label", "/review", "/admin"]:
        assert root.get(url + path).status_code == 200, path
    assert lab.get(url + "/api/state").json()["lease"] is None


def test_state_changes_need_the_csrf_token_and_the_same_origin(main_server):
    server, tokens, _ = main_server
    url = server.url
    s = login(url, tokens["lab"])
    good = s.headers.pop("X-CSRF-Token")
    assert s.post(url + "/api/heartbeat", json={"item_id": 1}).status_code == 403
    assert s.post(url + "/api/heartbeat", json={"item_id": 1}, headers={"X-CSRF-Token": "nope"}).status_code == 403
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Referer": "http://evil.example/page"}, {"Origin": "null"}):
        r = s.post(url + "/api/heartbeat", json={"item_id": 1}, headers={"X-CSRF-Token": good, **headers})
        assert r.status_code == 403, headers
    # with the token and from the page's own origin it goes through (409: no lease on item 1)
    r = s.post(url + "/api/heartbeat", json={"item_id": 1}, headers={"X-CSRF-Token": good, "Origin": url})
    assert r.status_code == 409
    # the login form is protected too (double-submit token), and logout needs the token
    r = requests.post(url + "/login", data={"token": tokens["lab"]}, allow_redirects=False)
    assert r.status_code == 403
    assert s.post(url + "/logout").status_code == 403
    # the session cookie is HttpOnly and SameSite=Strict
    r = requests.Session()
    page = r.get(url + "/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    resp = r.post(url + "/login", data={"csrf": csrf, "token": tokens["lab"]}, allow_redirects=False)
    cookie = resp.headers["set-cookie"].lower()
    assert "synth_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert "script-src 'self'" in resp.headers["content-security-policy"]


def test_no_path_or_parameter_reaches_the_filesystem(main_server):
    server, tokens, _ = main_server
    url = server.url
    s = login(url, tokens["rev"])
    cookie = f"synth_session={s.cookies['synth_session']}"
    for path in [
        "/static/../server.py", "/static/..%2fserver.py", "/static/%2e%2e%2fstore.py", "/static/label.js%00",
        "/static/templates", "/static/", "/static/.", "/review/..%2f..%2fetc%2fpasswd/step/0.png",
        "/review/../../etc/passwd", "/review/0123456789abcdef/step/0.png", "/review/0123456789ABCDEF",
        "/review/0123456789abcdef/step/-1.png", "/review/../annotations.db", "/annotations.db",
        "/out/staging", "/login/../../etc/passwd",
    ]:
        assert raw_get(url, path, cookie) == 404, path
    assert raw_get(url, "/static/label.js", cookie) == 200


def test_malformed_requests_are_refused_with_400(main_server):
    """Deep JSON, numbers SQLite or float() cannot hold: a 400 with a reason, never a 500."""
    server, tokens, _ = main_server
    url = server.url
    s = login(url, tokens["lab"])
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/api/act", "/api/heartbeat", "/api/skip", "/api/submit", "/api/undo"):
        r = s.post(url + path, data=deep[:60_000], headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (path, r.status_code)
        r = s.post(url + path, data='{"a":' * 10_000 + "1" + "}" * 10_000,
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (path, r.status_code)
    for item_id in (2**70, -(2**70), 0, True, 2**63, "1"):
        assert s.post(url + "/api/heartbeat", json={"item_id": item_id}).status_code == 400, item_id
        r = s.post(url + "/api/skip", json={"item_id": item_id, "reason": "page broken"})
        assert r.status_code == 400, item_id
    for v in (10**400, -(10**400), 2**70):
        r = s.post(url + "/api/act", json={"item_id": 1, "name": "click", "x": v, "y": 0.5})
        assert r.status_code == 400, v
    assert s.get(url + "/api/state").status_code == 200  # and the server is fine


# ---------------------------------------------------------------- escaping


def test_script_payloads_are_escaped_everywhere(main_server):
    server, tokens, _ = main_server
    url = server.url
    lab = login(url, tokens["xss"])
    page = lab.get(url + "/label").text
    assert_escaped(page)  # the guidelines markdown
    assert "href=\"javascript:" not in page.lower()  # markdown-it refuses the link
    state = lab.post(url + "/api/next", json={})
    assert state.headers["content-type"].startswith("application/json")
    lease = state.json()["lease"]
    assert lease["instruction"] == PAYLOAD  # data for textContent, never HTML
    x, y = button_center(lease)
    r = lab.post(url + "/api/act", json={"item_id": lease["item_id"], "name": "click", "x": x, "y": y, "thought": PAYLOAD})
    assert r.status_code == 200 and r.json()["lease"]["steps"][0]["thought"] == PAYLOAD
    done = lab.post(url + "/api/submit", json={"item_id": lease["item_id"], "answer": PAYLOAD})
    assert done.status_code == 200, done.text
    tid = done.json()["trajectory_id"]
    second = lab.post(url + "/api/next", json={}).json()["lease"]
    assert lab.post(url + "/api/skip", json={"item_id": second["item_id"], "reason": PAYLOAD}).json()["state"] == "queued"

    rev = login(url, tokens["rev"])
    assert_escaped(rev.get(url + "/review?source=human").text)
    r = rev.post(url + f"/review/{tid}", data={"verdict": "reject", "tags": ["wrong-element", "<script>"],
                                               "extra_tags": PAYLOAD, "comment": PAYLOAD, "next": "0"},
                 allow_redirects=False)
    assert r.status_code == 303
    detail = rev.get(url + f"/review/{tid}").text
    assert_escaped(detail)
    assert detail.count("&lt;script&gt;alert") >= 4  # instruction, thought, answer, comment, tag
    assert_escaped(login(url, tokens["root"]).get(url + "/admin").text)  # the skip reason
    stored = Store(main_server[2]).reviews(tid)
    assert stored[0]["comment"] == PAYLOAD and stored[0]["tags"][0] == "wrong-element"
    assert "<script>" not in stored[0]["tags"]  # only known tags from the checkboxes


def test_reviewers_see_every_source_rejected_bootstrap_first(main_server):
    server, tokens, _ = main_server
    url = server.url
    rev = login(url, tokens["rev"])
    listing = rev.get(url + "/review").text
    ids = re.findall(r'href="/review/([0-9a-f]{16})"', listing)
    failed_agent = staged("bootstrap", "gpt-4o", 2, False)
    assert ids[0] == failed_agent.trajectory_id
    assert {staged(s, d, i, p).trajectory_id for s, d, i, p in [
        ("solver", "miniwob.click-test", 0, True), ("bootstrap", "gpt-4o", 1, True),
        ("solver", "miniwob.click-test", 3, False)]} <= set(ids)
    only_solver = rev.get(url + "/review?source=solver&status=rejected").text
    assert re.findall(r'href="/review/([0-9a-f]{16})"', only_solver) == [
        staged("solver", "miniwob.click-test", 3, False).trajectory_id
    ]
    detail = rev.get(url + f"/review/{failed_agent.trajectory_id}")
    assert detail.status_code == 200 and "bootstrap gpt-4o: &lt;script&gt;" in detail.text
    assert 'class="point" cx="80.0" cy="105.0"' in detail.text  # the click, on the screenshot
    assert '<rect class="target" x="50.0" y="90.0" width="60.0" height="30.0">' in detail.text
    shot = rev.get(url + f"/review/{failed_agent.trajectory_id}/step/0.png")
    assert shot.content == b"PNG-gpt-4o" and shot.headers["content-type"] == "image/png"
    assert rev.get(url + f"/review/{failed_agent.trajectory_id}/step/1.png").status_code == 404


# ---------------------------------------------------------------- concurrency


def test_twenty_labelers_at_once_on_real_episodes(main_server):
    server, tokens, db = main_server
    url = server.url
    leases: list[tuple[int, str, str]] = []
    submitted: dict[str, bool] = {}
    errors: list[str] = []
    reopened: list[str] = []
    lock = threading.Lock()
    sessions = [login(url, tokens[f"sim{i:02d}"]) for i in range(N_LABELERS)]
    start = threading.Barrier(N_LABELERS)

    def labeler(i: int, s: requests.Session) -> None:
        name = f"sim{i:02d}"
        try:
            start.wait()
            while True:
                lease = s.post(url + "/api/next", json={}, timeout=120).json()["lease"]
                if lease is None:
                    return
                for _ in range(3):  # as the page does: a task that failed to open is reloaded
                    if not lease.get("broken"):
                        break
                    with lock:
                        reopened.append(lease["broken"])
                    lease = s.get(url + "/api/state", timeout=120).json()["lease"]
                with lock:
                    leases.append((lease["item_id"], name, lease["template_id"]))
                x, y = button_center(lease)
                r = s.post(url + "/api/act", json={"item_id": lease["item_id"], "name": "click", "x": x, "y": y},
                           timeout=120)
                assert r.status_code == 200, r.text
                r = s.post(url + "/api/submit", json={"item_id": lease["item_id"]}, timeout=120)
                assert r.status_code == 200, r.text
                with lock:
                    submitted[r.json()["trajectory_id"]] = r.json()["passed"]
        except BaseException as e:  # noqa: BLE001
            errors.append(f"{name}: {e!r}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=labeler, args=(i, s)) for i, s in enumerate(sessions)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(240)
    elapsed = time.perf_counter() - t0
    assert not errors, errors[:3]
    items = [item for item, _, _ in leases]
    assert len(items) == len(set(items)), "an item was leased twice"
    assert len(items) == N_TASKS + 1  # the 40 tasks and the one skipped earlier
    assert len({name for _, name, _ in leases}) >= 10, "the work was not shared"
    assert all(submitted.values()), "every click-test episode passes MiniWoB's reward"
    store = Store(db)
    stored = {s["trajectory_id"]: s for s in store.trajectory_summaries()}
    assert set(submitted) <= set(stored), "a submission was lost"
    assert all(stored[t]["labeler"].startswith("sim") and stored[t]["num_steps"] == 1 for t in submitted)
    assert store.counts() == {"queued": 0, "leased": 0, "done": N_TASKS + 2, "dropped": 0}
    by_item: dict[int, list[dict]] = {}
    for row in store.lease_log():
        by_item.setdefault(row["item_id"], []).append(row)
    for item in items:  # the server's own audit: one lease at a time, ending in a submission
        rows = by_item[item]
        assert rows[-1]["outcome"] == "submitted"
        for earlier, later in zip(rows, rows[1:]):
            assert earlier["ended_at"] is not None and earlier["ended_at"] <= later["leased_at"]
    print(f"{len(items)} episodes by {N_LABELERS} labelers in {elapsed:.1f} s; reopened: {reopened}")


# ---------------------------------------------------------------- leases and logins


def test_an_expired_lease_returns_the_task_to_the_queue(short_server):
    server, tokens = short_server
    url = server.url
    a, b = login(url, tokens["a"]), login(url, tokens["b"])
    lease = a.post(url + "/api/next", json={}).json()["lease"]
    assert lease is not None and lease["expires_in"] > 1
    assert b.post(url + "/api/next", json={}).json()["lease"] is None  # never two holders
    time.sleep(lease["expires_in"] + 0.5)  # no heartbeat from a
    again = b.post(url + "/api/next", json={}).json()["lease"]
    assert again is not None and again["item_id"] == lease["item_id"]
    x, y = button_center(lease)
    r = a.post(url + "/api/act", json={"item_id": lease["item_id"], "name": "click", "x": x, "y": y})
    assert r.status_code == 409
    assert a.post(url + "/api/heartbeat", json={"item_id": lease["item_id"]}).status_code == 409
    assert a.post(url + "/api/submit", json={"item_id": lease["item_id"]}).status_code == 409


def test_successful_logins_are_not_rate_limited(short_server):
    """Many labelers behind one proxy (one address) all log in, well past
    the limit of 5 attempts a minute: only failures count."""
    server, tokens = short_server
    for i in range(8):
        assert login(server.url, tokens["ab"[i % 2]]).get(server.url + "/api/state").status_code == 200


def test_login_attempts_are_rate_limited(short_server):
    server, tokens = short_server
    url = server.url
    statuses = []
    for _ in range(6):
        s = requests.Session()
        csrf = re.search(r'name="csrf" value="([^"]+)"', s.get(url + "/login").text).group(1)
        r = s.post(url + "/login", data={"csrf": csrf, "token": "syn_wrong"}, allow_redirects=False)
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) > 0
            break
    assert statuses[-1] == 429 and len(statuses) <= 6, statuses
    with pytest.raises(PermissionError):  # even the right token waits now
        login(url, tokens["a"])


def test_tokens_never_reach_the_logs(main_server, short_server):
    login(main_server[0].url, main_server[1]["lab"])
    # a token pasted into a URL reaches the access log, masked whole: key id and secret
    requests.get(main_server[0].url + "/login", params={"t": main_server[1]["lab"]})
    assert "syn_[redacted]" in main_server[0].log()
    for server, tokens in ((main_server[0], main_server[1]), short_server):
        text = server.log()
        assert '"msg": "login"' in text  # the log is there and says who logged in
        for token in tokens.values():
            assert token not in text and token[4:20] not in text and token.split(".")[1][:16] not in text
        for line in text.splitlines():
            if line.startswith("{"):
                json.loads(line)


# ---------------------------------------------------------------- user management and TLS


def proxied_login(url: str, token: str, client: str) -> requests.Response:
    """A login through the trusted proxy from `client` (X-Forwarded-For)."""
    headers = {"X-Forwarded-For": client}
    s = requests.Session()
    csrf = re.search(r'name="csrf" value="([^"]+)"', s.get(url + "/login", headers=headers).text).group(1)
    return s.post(url + "/login", data={"csrf": csrf, "token": token}, headers=headers, allow_redirects=False)


def outcome(r: requests.Response) -> str:
    return {303: r.headers.get("location", ""), 429: "limited"}.get(r.status_code, str(r.status_code))


def test_failed_logins_are_limited_per_user_from_any_address(user_server):
    """One user's key id failed from four addresses is refused once the
    per-user limit (3) is reached, even with the right token from a fifth;
    another user still logs in from all of them (only one key id is blocked,
    no address is), and so does a token from before key ids."""
    server, db = user_server
    url = server.url
    victim = annotate("add-user", "vic", "--role", "labeler", "--db", str(db)).stdout.strip()
    other = annotate("add-user", "oth", "--role", "labeler", "--db", str(db)).stdout.strip()
    assert TOKEN.fullmatch(victim) and TOKEN.fullmatch(other)
    addresses = [f"198.51.100.{i}" for i in range(1, 5)]
    wrong = victim.split(".")[0] + ".not-the-secret"
    assert [outcome(proxied_login(url, wrong, a)) for a in addresses] == ["/login?error=1"] * 3 + ["limited"]
    r = proxied_login(url, victim, "198.51.100.99")
    assert outcome(r) == "limited" and int(r.headers["retry-after"]) > 0
    assert [outcome(proxied_login(url, other, a)) for a in addresses] == ["/label"] * 4
    # an unknown key id names no user: it counts against its address only
    assert {outcome(proxied_login(url, "syn_nobodyatall." + "x" * 43, a)) for a in addresses} == {"/login?error=1"}

    legacy = "syn_" + secrets.token_urlsafe(32)  # a token made before key ids, in a file from then
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO users (name, role, token_hash, created_at) VALUES ('old', 'reviewer', ?, 0)",
                  (hash_secret(legacy),))
    assert outcome(proxied_login(url, legacy, addresses[0])) == "/review"
    assert victim not in server.log() and victim.split(".")[1] not in server.log()


def test_users_can_be_disabled_enabled_rotated_and_revoked(user_server):
    server, db = user_server
    url = server.url
    r = annotate("add-user", "kim", "--role", "labeler", "--db", str(db))
    token = r.stdout.strip()
    s = login(url, token)
    lease = s.post(url + "/api/next", json={}).json()["lease"]
    assert lease is not None

    assert annotate("disable", "kim", "--db", str(db)).returncode == 0
    assert s.get(url + "/api/state").status_code == 401  # the open session ends at once
    with pytest.raises(PermissionError):
        login(url, token)
    assert "disabled" in annotate("users", "--db", str(db)).stdout
    assert Store(db).counts()["queued"] == 1  # the task went back to the queue
    assert annotate("enable", "kim", "--db", str(db)).returncode == 0
    s = login(url, token)  # the same token again
    assert s.get(url + "/api/state").json()["lost"]["item_id"] == lease["item_id"]  # and the draft is reclaimable

    r = annotate("rotate", "kim", "--db", str(db))
    assert r.returncode == 0
    new = r.stdout.strip()
    assert new != token and new.startswith("syn_") and new not in r.stderr
    assert s.get(url + "/api/state").status_code == 401
    with pytest.raises(PermissionError):
        login(url, token)
    s = login(url, new)

    assert annotate("revoke", "kim", "--db", str(db)).returncode == 0
    assert s.get(url + "/api/state").status_code == 401
    with pytest.raises(PermissionError):
        login(url, new)
    bad = annotate("disable", "nobody", "--db", str(db))
    assert bad.returncode == 2 and "no user 'nobody'" in bad.stderr
    assert token not in server.log() and new not in server.log()


def test_behind_a_tls_proxy_cookies_are_secure_and_https_origins_pass(user_server):
    """What a reverse proxy terminating TLS sends: X-Forwarded-Proto https,
    the browser's https Origin. The session cookie must be Secure and the
    page's own POSTs must pass the same-origin check."""
    server, db = user_server
    url = server.url
    token = annotate("add-user", "tls", "--role", "labeler", "--db", str(db)).stdout.strip()
    host = url.removeprefix("http://")
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    page = requests.get(url + "/login", headers=proxied)
    assert "secure" in page.headers["set-cookie"].lower()  # the login form's cookie too
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = requests.post(url + "/login", data={"csrf": csrf, "token": token}, allow_redirects=False,
                      cookies={"synth_login": csrf}, headers={**proxied, "Origin": f"https://{host}"})
    assert r.status_code == 303 and r.headers["location"] == "/label", r.text
    assert "secure" in r.headers["set-cookie"].lower()
    sid = re.search(r"synth_session=([^;]+)", r.headers["set-cookie"]).group(1)
    home = requests.get(url + "/label", headers=proxied, cookies={"synth_session": sid})
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', home.text).group(1)
    r = requests.post(url + "/api/next", json={}, cookies={"synth_session": sid},
                      headers={**proxied, "Origin": f"https://{host}", "X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    r = requests.post(url + "/api/next", json={}, cookies={"synth_session": sid},
                      headers={**proxied, "Origin": f"http://{host}", "X-CSRF-Token": csrf})
    assert r.status_code == 403  # plain http is not this server's origin any more
    assert '"client": "203.0.113.7"' in server.log() or "203.0.113.7" in server.log()
