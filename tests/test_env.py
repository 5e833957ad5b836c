"""BrowserEnv on real MiniWoB++ pages in real Chromium."""

from __future__ import annotations

import io

from PIL import Image

from synth.env import BrowserEnv
from synth.episode import run_episode
from synth.sites import Setup, Site
from synth.schema import Action


async def test_reset_observes_the_task_area(env, make_task):
    obs = await env.reset(make_task("click-checkboxes", seed=1))
    assert env.instruction.startswith("Select ") and env.instruction.endswith("click Submit.")
    assert (obs.area.width, obs.area.height) == (160, 210)
    assert Image.open(io.BytesIO(obs.screenshot)).size == (160, 210)
    boxes = obs.find_all(role="checkbox")
    assert boxes and all(b.checked is False and b.name for b in boxes)
    assert obs.find("Submit", role="button").box.width > 0
    assert obs.url.endswith("/miniwob/click-checkboxes.html") and obs.title
    # ids are stable across steps within an episode
    first = boxes[0]
    obs2 = await env.click(first)
    again = obs2.element(first.id)
    assert again is not None and again.name == first.name and again.checked is True


async def test_step_records_observation_before_action_and_target(env, make_task):
    obs = await env.reset(make_task("click-button", seed=5))
    label = env.instruction.split('"')[1]
    target = obs.find(label, role="button")
    await env.click(target)
    (step,) = env.steps
    assert step.observation is obs  # the observation the action was taken on
    assert step.action.name == "click" and step.action.element_id == target.id
    x, y = obs.denormalise(step.action.x, step.action.y)
    assert target.box.contains(x, y)
    assert step.element.name == label and step.element.role == "button"
    assert step.element.selector and step.error is None


async def test_click_by_point_finds_the_element_under_it(env, make_task):
    obs = await env.reset(make_task("click-button", seed=5))
    label = env.instruction.split('"')[1]
    target = obs.find(label, role="button")
    await env.click(obs.normalise(*target.box.center))
    assert env.steps[-1].element.id == target.id
    assert env.steps[-1].element.box == target.box


async def test_typing_records_the_focused_field(env, make_task):
    obs = await env.reset(make_task("login-user", seed=2))
    obs = await env.click(obs.find(html_id="username"))
    obs = await env.type("alice")
    assert obs.find(html_id="username").value == "alice"
    assert env.steps[-1].element.html_id == "username"
    await env.click(obs.find(html_id="password"))
    obs = await env.type("secret")
    assert obs.find(html_id="password").value == "******"  # password values are masked


async def test_failed_action_is_the_steps_error_not_a_crash(env, make_task):
    await env.reset(make_task("click-button", seed=1))
    obs = await env.step(Action(name="click", element_id=99999))
    assert "not on the page" in env.steps[-1].error
    assert obs is env.obs  # the episode goes on
    await env.step(Action(name="select", x=0.01, y=0.01, text="nothing"))
    assert env.steps[-1].error


class LongPage(Site):
    """A test site: 40 buttons in a column, most below the 400x300 viewport."""

    name = "long-page"
    viewport = {"width": 400, "height": 300}

    async def setup(self, page, task):
        buttons = "".join(
            f'<button style="display:block;height:50px" onclick="document.title=\'clicked {i}\'">b{i}</button>'
            for i in range(40)
        )
        await page.set_content(f"<title>none</title><body>{buttons}</body>")
        return Setup(instruction="click b35")


async def test_offscreen_target_is_reached_by_a_recorded_scroll(browser, make_task):
    async with BrowserEnv(browser, LongPage()) as env:
        obs = await env.reset(make_task("click-button"))
        target = obs.find("b35")
        assert not target.in_view and obs.find("b0").in_view
        assert "(off-screen)" in obs.axtree()
        await env.hover(obs.find("b0"))
        assert env.steps[-1].element.name == "b0"
        obs = await env.click(target)
        names = [s.action.name for s in env.steps]
        assert names[-1] == "click" and "scroll" in names[1:-1]
        scroll = next(s for s in env.steps if s.action.name == "scroll")
        assert scroll.action.dy > 0 and scroll.error is None
        assert env.steps[-1].element.name == "b35" and obs.title == "clicked 35"
        x, y = env.steps[-1].observation.denormalise(env.steps[-1].action.x, env.steps[-1].action.y)
        assert 0 <= y <= 300  # the click landed inside what the screenshot showed


async def test_solver_exception_becomes_a_rejected_trajectory(env, make_task):
    async def broken(env, obs):
        await env.click(obs.find("Submit", role="button"))
        raise RuntimeError("solver bug")

    t = await run_episode(env, make_task("click-checkboxes", seed=0), broken, source="solver", source_detail="broken")
    assert t.status == "rejected" and "RuntimeError: solver bug" in t.error
    assert "error:" in t.reject_reason and len(t.steps) == 1  # steps made so far are kept


async def test_crashed_page_becomes_a_rejected_trajectory(env, make_task, browser):
    async def crash(env, obs):
        await env.click(obs.find_all(role="checkbox")[0])
        try:
            await env.page.goto("chrome://crash")  # kill the renderer
        except Exception:
            pass
        await env.click(obs.find("Submit", role="button"))

    from synth.episode import lost_to_infrastructure

    t = await run_episode(env, make_task("click-checkboxes", seed=0), crash, source="solver", source_detail="crash")
    assert t.status == "rejected" and t.error and len(t.steps) >= 1
    assert lost_to_infrastructure(t)  # an error the source actor retries on a fresh browser (test_faults.py)
    assert browser.is_connected()  # the worker's browser survives


async def test_timeout_becomes_a_rejected_trajectory(env, make_task):
    import asyncio

    async def slow(env, obs):
        await asyncio.sleep(5)

    t = await run_episode(env, make_task("click-button", seed=0), slow, source="solver", source_detail="slow", timeout_s=0.5)
    assert t.status == "rejected" and "timed out" in t.error


async def test_max_steps_ends_the_episode(env, make_task):
    task = make_task("click-checkboxes", seed=0).model_copy(update={"max_steps": 2})

    async def restless(env, obs):
        while True:
            obs = await env.click(obs.find_all(role="checkbox")[0])

    t = await run_episode(env, task, restless, source="solver", source_detail="restless")
    assert len(t.steps) == 2 and t.status == "rejected" and "step limit reached: 2" in t.error


async def test_reusable_pages_come_back_clean_and_broken_ones_do_not(browser, miniwob_site, make_task):
    from synth.env import PagePool

    pool = PagePool()
    env = BrowserEnv(browser, miniwob_site, pages=pool)
    obs = await env.reset(make_task("login-user", seed=1))
    await env.page.context.add_cookies([{"name": "leak", "value": "1", "url": obs.url}])
    await env.click(obs.find(html_id="username"))
    await env.type("carried-over")
    first_page = env.page
    await env.close()
    obs = await env.reset(make_task("login-user", seed=2))
    assert env.page is first_page  # the page was reused...
    assert obs.find(html_id="username").value == ""  # ...with a new document
    assert await env.page.context.cookies() == []  # and no cookies
    assert len(env.steps) == 0 and env.instruction != ""

    async def crash(env, obs):
        raise RuntimeError("boom")

    await run_episode(env, make_task("login-user", seed=3), crash, source="solver", source_detail="crash")
    assert pool.take("miniwob") is None  # an episode that failed does not give its page back
    await pool.close()


async def test_browser_lost_under_the_judge_is_an_error_worth_a_retry(env, make_task):
    from synth.episode import lost_to_infrastructure

    async def crash_before_the_judge(env, obs):
        try:
            await env.page.goto("chrome://crash")  # the renderer dies; the judge reads this page next
        except Exception:
            pass

    t = await run_episode(env, make_task("click-button", seed=0), crash_before_the_judge, source="solver", source_detail="x")
    assert t.status == "rejected" and t.error and t.error.startswith("judge miniwob_reward failed")
    assert lost_to_infrastructure(t)  # retried on a fresh browser by the actor, not kept as a judge's rejection
