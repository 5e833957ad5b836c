"""A web application configured by YAML (synth/sites/app.py), on a real app
process, real SQLite and real Chromium: instances per concurrent episode,
per-episode reset, state for judges, slots from the app's data, and clear
errors for bad configuration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from synth.config import ConfigError
from synth.env import BrowserEnv
from synth.schema import JudgeSpec, Task
from synth.sites.app import configured_site

ROOT = Path(__file__).resolve().parents[1]
MYBOOKS = ROOT / "examples" / "plugin" / "mybooks" / "site.yaml"


@pytest.fixture(scope="module")
def mybooks_cls():
    return configured_site(MYBOOKS)


def task(n: int, **params) -> Task:
    return Task(task_id=f"t{n}", template_id="mybooks/test", site="mybooks", seed=n, params=params,
                judge=JudgeSpec(type="string_match", expected="x"))


async def add_book(env: BrowserEnv, title: str) -> None:
    obs = env.obs
    await env.click(obs.find(role="searchbox"))
    await env.type(title)
    obs = await env.press("Enter")
    obs = await env.click(obs.find(title, role="link"))
    await env.click(obs.find("Add to reading list", role="button"))


async def test_concurrent_writing_episodes_never_see_each_other(browser, mybooks_cls):
    """Four episodes at once each add a different book: each one's state
    (read from its own instance's database) holds exactly its own book, four
    instances ran, and a later episode on a reused instance starts empty."""
    site = mybooks_cls()
    titles = [row["title"] for row in mybooks_cls.content(0)["books"][:4]]
    try:
        async def episode(i: int) -> list[str]:
            env = BrowserEnv(browser, site)
            await env.reset(task(i))
            await add_book(env, titles[i])
            state = await site.state(env.page, env.task)
            await env.close()
            return [r["title"] for r in state["reading_list"]]

        lists = await asyncio.gather(*(episode(i) for i in range(4)))
        assert lists == [[t] for t in titles]
        assert len(site._all) == 4
        env = BrowserEnv(browser, site)
        await env.reset(task(9))
        assert (await site.state(env.page, env.task))["reading_list"] == []  # reset, not the last writer's list
        obs = await env.click(env.obs.find("Reading list", role="link"))
        assert obs.find_all("Nothing yet.") and not obs.find_all("Remove", role="button")
        await env.close()
        assert len(site._all) == 4  # reused, not a fifth instance
    finally:
        await site.stop()


async def test_instance_limit_makes_episodes_wait_their_turn(browser, tmp_path):
    """`instances: 1`: two concurrent episodes share one instance in turn,
    and the second still starts from the pristine data."""
    cfg = MYBOOKS.read_text() + "instances: 1\n"
    path = MYBOOKS.parent / "_limit1_test.yaml"
    path.write_text(cfg)
    try:
        cls = configured_site(path)
    finally:
        path.unlink()
    site = cls()
    title = cls.content(0)["books"][0]["title"]
    try:
        async def episode(i: int) -> list[str]:
            env = BrowserEnv(browser, site)
            await env.reset(task(i))
            before = [r["title"] for r in (await site.state(env.page, env.task))["reading_list"]]
            await add_book(env, title)
            await env.close()
            return before

        assert await asyncio.gather(episode(0), episode(1)) == [[], []]
        assert len(site._all) == 1
    finally:
        await site.stop()


def test_slots_come_from_the_apps_pristine_data(mybooks_cls):
    books = mybooks_cls.content(0)["books"]
    assert len(books) == 60 and {"id", "title", "author", "price"} <= set(books[0])
    assert mybooks_cls.content(1)["books"] != books  # another content seed, another catalogue
    assert mybooks_cls.pristine(0) == mybooks_cls.pristine(0)  # built once, cached


@pytest.mark.parametrize("text, expected", [
    ("name: x\n", "give exactly one of command"),
    ("name: x\ncommand: [a]\nurl: http://h\n", "give exactly one of command"),
    ("name: x\ncommand: [a]\nreset: {sqllite: [a.db]}\n", "reset.sqllite"),
    ("name: x\ncommand: [a]\nready: {timeout_s: -1}\n", "ready.timeout_s"),
])
def test_bad_configuration_names_the_file_and_field(tmp_path, text, expected):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        configured_site(path)
    assert str(path) in str(e.value) and expected in str(e.value)


async def test_an_app_that_does_not_start_says_why(browser, tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text('name: broken\ncommand: ["{python}", -c, "import sys; print(\'no database\'); sys.exit(3)"]\n')
    site = configured_site(path)()
    with pytest.raises(RuntimeError, match=r"broken: .* exited 3: no database"):
        await BrowserEnv(browser, site).reset(Task(task_id="t", template_id="broken/x", site="broken", seed=0,
                                                   judge=JudgeSpec(type="string_match", expected="x")))
    await site.stop()
