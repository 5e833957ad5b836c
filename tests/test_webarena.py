"""WebArena's evaluators (synth.webarena) and `synth tasks import webarena`
(synth.webarena_import).

Evaluator semantics are checked against WebArena's own rules
(evaluation_harness/evaluators.py, helper_functions.py of
github.com/web-arena-x/webarena), partly on real entries of its
config_files/test.raw.json (tests/fixtures/webarena/test_raw_sample.json,
copied unchanged, Apache-2.0). Configs written in WebArena's format for the
bundled shop and the real Trac and Datasette applications are imported and run
end to end in real Chromium: a solver's trajectory passes the imported judge,
a wrong one fails it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from synth.config import ConfigError
from synth.env import BrowserEnv
from synth.episode import run_episode
from synth.judges import JudgeContext, run_judge
from synth.schema import JudgeSpec, Task
from synth.sites import get_site
from synth.solver import get_solver
from synth.tasks import instantiate, load_templates
from synth.webarena import (
    WebArenaConfigError,
    WebArenaSite,
    check_config,
    clean_answer,
    exact_match,
    must_include,
    parse_func,
    reddit_get_post_url,
    set_llm,
    string_score,
    url_score,
    word_tokenize,
)
from synth.webarena_import import import_configs, load_configs, parse_site_map, write_checked, dump

FIXTURES = Path(__file__).parent / "fixtures" / "webarena"
RAW = {c["task_id"]: c for c in load_configs(FIXTURES / "test_raw_sample.json")}
FAKE = {
    "SHOPPING": "http://shop.test:7770", "SHOPPING_ADMIN": "http://admin.test:7780/admin",
    "GITLAB": "http://gitlab.test:8023", "REDDIT": "http://reddit.test:9999", "MAP": "http://map.test:3000",
    "WIKIPEDIA": "http://wiki.test:8888", "HOMEPAGE": "http://home.test:4399",
}
FAKE_MAP = [f"{k}={v}" for k, v in FAKE.items()]


def no_llm() -> Any:
    raise AssertionError("this approach must not ask the LLM")


class Grader:
    """A stand-in LLM: answers each prompt with a fixed reply and records it."""

    def __init__(self, reply: str) -> None:
        self.reply, self.prompts = reply, []

    async def __call__(self, messages: list[dict[str, str]]) -> str:
        self.prompts.append(messages[-1]["content"])
        return self.reply


# ---------------------------------------------------------------- strings


def test_clean_answer_strips_one_pair_of_quotes_and_lowercases():
    assert clean_answer("  'Quest Lumaflex Band' ") == "quest lumaflex band"
    assert clean_answer('"Sprite"') == "sprite"
    assert clean_answer("'Sprite\"") == "'sprite\""  # mismatched quotes stay
    assert exact_match("Sprite", "  SPRITE ") == 1.0
    assert exact_match("Sprite", "Sprite.") == 0.0  # no punctuation folding in WebArena


def test_must_include_tokenizes_one_character_references():
    assert must_include("6", "16 reviews", tokenize=True) == 0.0
    assert must_include("6", "There are 6.", tokenize=True) == 1.0
    assert must_include("6", "16 reviews", tokenize=False) == 1.0  # a list of several refs: plain substring
    assert must_include("ab", "xaby", tokenize=True) == 1.0  # only one-character refs are tokenized
    # nltk's word_tokenize, token for token (checked against nltk 3.10 on every
    # reference answer and intent of test.raw.json and 5,000 made-up sentences)
    assert word_tokenize("It costs $0.5, isn't it? 6.") == ["It", "costs", "$", "0.5", ",", "is", "n't", "it", "?", "6", "."]
    assert word_tokenize("there are 5. then 6 more") == ["there", "are", "5.", "then", "6", "more"]  # no break: "5." stays
    assert word_tokenize("there are 5. Then 6.") == ["there", "are", "5", ".", "Then", "6", "."]
    assert word_tokenize('n/a, "x=1" (j. smith)') == ["n/a", ",", "``", "x=1", "''", "(", "j.", "smith", ")"]
    assert must_include("5", "there are 5. then more", tokenize=True) == 0.0  # as WebArena scores it


async def test_string_match_on_real_configs():
    # task 0: exact_match "Quest Lumaflex™ Band"; the answer is cleaned twice, as WebArena does
    assert (await string_score(RAW[0], "\"'quest lumaflex™ band'\"", no_llm)).value == 1.0
    assert (await string_score(RAW[0], "Quest Lumaflex™ Band, with 14 sold", no_llm)).value == 0.0
    # task 11: must_include ["6"], a single reference of one character: a whole token
    assert (await string_score(RAW[11], "6", no_llm)).value == 1.0
    assert (await string_score(RAW[11], "The store received 6 such reviews.", no_llm)).value == 1.0
    assert (await string_score(RAW[11], "16", no_llm)).value == 0.0


async def test_fuzzy_match_and_unachievable_tasks():
    # task 8: fuzzy_match against a list: each reference asked, "partially correct" fails
    for reply, score in (("Correct.", 1.0), ("partially correct", 0.0), ("INCORRECT", 0.0)):
        grader = Grader(reply)
        assert (await string_score(RAW[8], "No airport is that close", lambda: grader)).value == score
        assert "reference answer: There is no airport within 5 km" in grader.prompts[0]
        assert "student answer: no airport is that close" in grader.prompts[0]  # the cleaned answer
    # task 22: fuzzy_match "N/A": an exact N/A passes without asking; otherwise the
    # reported reason is compared with string_note (ua_match)
    assert (await string_score(RAW[22], "n/a", no_llm)).value == 1.0
    for reply, score in (("same", 1.0), ("Different.", 0.0)):
        grader = Grader(reply)
        assert (await string_score(RAW[22], "N/A: nobody reviewed under-water photos", lambda: grader)).value == score
        assert "actual unachievable reason: There is no review about under water photo" in grader.prompts[0]
    with pytest.raises(ValueError, match="neither correct nor incorrect"):
        await string_score(RAW[8], "x", lambda: Grader("maybe"))


async def test_fuzzy_match_through_the_openai_client_and_the_mock_server():
    """The real openai client against the bundled mock server, which grades by
    a rule (the reference's words all in the student's answer)."""
    from bootstrap.mock_server import MockServer
    from synth.webarena import LLMSettings

    def grade(request: dict[str, Any]) -> str | None:
        text = request["messages"][-1]["content"]
        if "reference answer:" not in text:
            return None
        ref = text.split("reference answer: ")[1].split("\n")[0].lower()
        student = text.split("student answer: ")[1].split("\n")[0].lower()
        return "correct" if all(w in student for w in ref.split()) else "incorrect"

    with MockServer(responders=[grade]) as server:
        ask = LLMSettings(base_url=server.url, model="mock-agent").ask()
        good = "there is no airport within 5 km of carnegie mellon university, sadly"
        assert (await string_score(RAW[8], good, lambda: ask)).value == 1.0
        assert (await string_score(RAW[8], "Pittsburgh International Airport", lambda: ask)).value == 0.0
        assert server.count() == 2


# ---------------------------------------------------------------- URLs


def test_url_match_gold_in_pred():
    ref = RAW[45]["eval"]["reference_url"].replace("__GITLAB__", "http://gitlab.test:8023")
    base = "http://gitlab.test:8023/a11yproject/a11yproject.com/-/issues"
    assert url_score(ref, f"{base}/?state=opened&sort=created_asc&page=2").value == 1.0  # order, extras: fine
    assert url_score(ref, f"{base}/?sort=created_asc&state=opened/").value == 1.0  # the trailing / is stripped first
    # WebArena's quirk, kept: only the URL's trailing / is stripped, so the
    # reference's path ends ".../issues/" and a final URL without that / fails
    assert url_score(ref, f"{base}?sort=created_asc&state=opened").value == 0.0
    assert url_score(ref, f"{base}/?sort=created_asc").value == 0.0  # a reference parameter missing
    assert url_score(ref, f"{base}/?sort=created_desc&state=opened").value == 0.0
    assert url_score(ref, "http://other.test/a11yproject/a11yproject.com/-/issues?sort=created_asc&state=opened").value == 0.0
    # the host+path test is a substring one (WebArena's `ref in pred`): deeper pages match
    assert url_score("http://r.test/f/consoles", "http://r.test/f/consoles/123/my-post").value == 1.0
    # alternatives joined by |OR|; their queries pool per parameter
    assert url_score("http://s.test/a?x=1 |OR| http://s.test/b?x=2", "http://s.test/b?x=1").value == 1.0
    with pytest.raises(ValueError, match="unknown url_note"):
        url_score("http://s.test/a", "http://s.test/a", "EXACT")


def test_helpers():
    assert reddit_get_post_url("http://r.test/f/books/59421/my-title/comment/7") == "http://r.test/f/books/59421/"
    assert reddit_get_post_url("http://r.test/user/x") == "http://r.test/user/x"
    assert parse_func("reddit_get_post_url('http://x/f/a/1/b')")[0] == "reddit_get_post_url"
    for bad, why in (("__import__('os').system('id')", "one helper call"), ("open('/etc/passwd')", "unknown helper"),
                     ("shopping_get_latest_order_url()", "not supported"),
                     ("reddit_get_post_url(x.y)", "not a literal")):
        with pytest.raises(ValueError, match=why):
            parse_func(bad)


# ---------------------------------------------------------------- bad configs


def bad(config: dict[str, Any], **patch: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(config))
    for path, value in patch.items():
        node = out
        *parents, last = path.split("__")
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(last) if isinstance(node, list) else last] = value
    return out


@pytest.mark.parametrize(
    "task_id,patch,field,message",
    [
        (0, {"eval__eval_types": ["string_match", "html_match"]}, "eval.eval_types[1]", "unknown eval type 'html_match'"),
        (0, {"eval__reference_answers": {"regex": "x"}}, "eval.reference_answers.regex", "unknown approach"),
        (45, {"eval__url_note": "EXACT"}, "eval.url_note", "unknown matching rule"),
        (118, {"eval__program_html__0__locator": "$('#main').text()"}, "eval.program_html[0].locator",
         "unknown locator"),
        (600, {"eval__program_html__0__url": "func:os.system('id')"}, "eval.program_html[0].url", "one helper call"),
        (118, {"eval__program_html__0__required_contents": {"regex": "x"}}, "eval.program_html[0].required_contents",
         "exact_match or must_include"),
        (436, {}, "eval.program_html[0].url", "shopping_get_latest_order_url is not supported"),
    ],
)
def test_bad_configs_name_the_task_and_field(task_id, patch, field, message):
    config = bad(RAW[task_id], **patch)
    with pytest.raises(WebArenaConfigError) as e:
        check_config(config)
    assert e.value.task_id == task_id and e.value.field == field, str(e.value)
    assert str(e.value).startswith(f"task {task_id}: {field}: ") and message in str(e.value)


def test_a_missing_site_mapping_names_the_task_and_field():
    with pytest.raises(ConfigError) as e:
        import_configs([RAW[600]], parse_site_map(["GITLAB=http://g.test"]))
    assert "task 600: start_url: site __REDDIT__ has no mapping (give --site-map REDDIT=URL" in str(e.value)
    config = bad(RAW[600], start_url="http://reddit.test:9999")
    with pytest.raises(ConfigError, match=r"task 600: eval.reference_url: site __REDDIT__ has no mapping"):
        import_configs([config], {})
    with pytest.raises(ConfigError, match="neither a URL nor a synth site"):
        parse_site_map(["REDDIT=no-such-site"])


# ---------------------------------------------------------------- importing WebArena's own configs


def test_import_real_configs_to_fake_urls(tmp_path):
    configs = list(RAW.values())
    with pytest.raises(ConfigError, match=r"task 436: eval.program_html\[0\].url: helper shopping_get_latest"):
        import_configs(configs, parse_site_map(FAKE_MAP))
    done = import_configs(configs, parse_site_map(FAKE_MAP), skip_unsupported=True)
    assert done.tasks == 12 and len(done.skipped) == 1 and list(done.files) == ["webarena"]
    path = tmp_path / "webarena.yaml"
    assert write_checked(dump(done.files["webarena"], "test_raw_sample.json"), path) == 12
    pairs = load_templates(path)
    by_id = {t.id: t for _, t in pairs}
    assert by_id["webarena-279"].seeds.count == 2 and len(pairs) == 11  # one per intent_template_id (0, 1 share 279)
    tasks = {t.judge.params["config"]["task_id"]: t for _, tpl in pairs for t in instantiate("webarena", tpl)}
    assert sorted(tasks) == sorted(k for k in RAW if k != 436)
    t600 = tasks[600]
    assert t600.site == "webarena" and t600.start_url == "http://reddit.test:9999"
    assert t600.instruction == RAW[600]["intent"]
    assert t600.judge.params["config"]["eval"]["reference_url"] == "http://reddit.test:9999/f/consoles"
    assert tasks[0].start_url == "http://admin.test:7780/admin" and tasks[0].params["storage_state"] == \
        "./.auth/shopping_admin_state.json"
    assert tasks[431].start_url.endswith("tall-pink-taper-candles-4-piece-orange-colored-tapered-candles-gradient-"
                                         "candles-10-6-inches-tall-tie-dye-candle-set-large-dripless-long-burning-"
                                         "candlesticks-two-color-taper-candles-candlesticks.html")  # its first tab


def test_import_command_writes_templates_that_load(tmp_path):
    from synth.cli import app

    out = tmp_path / "wa"
    result = CliRunner().invoke(app, ["tasks", "import", "webarena", str(FIXTURES / "test_raw_sample.json"),
                                      *[a for m in FAKE_MAP for a in ("--site-map", m)], "--skip-unsupported",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped task 436: eval.program_html[0].url" in result.output
    assert len(load_templates(out / "webarena-webarena.yaml")) == 11
    result = CliRunner().invoke(app, ["tasks", "import", "webarena", str(FIXTURES / "test_raw_sample.json"),
                                      "--site-map", "REDDIT=http://r.test"])
    assert result.exit_code == 2 and "task 0: start_url: site __SHOPPING_ADMIN__ has no mapping" in result.output


# ---------------------------------------------------------------- judging imported real configs in Chromium


def fake_host(pages: dict[str, str]):
    """A route handler serving fixed HTML for the fake WebArena hosts."""

    async def handle(route):
        url = route.request.url
        body = next((html for prefix, html in pages.items() if url.startswith(prefix)), None)
        if body is None:
            await route.fulfill(status=404, body="<html><body>not found</body></html>", content_type="text/html")
        else:
            await route.fulfill(body=body, content_type="text/html")

    return handle


def imported(task_id: int) -> Task:
    done = import_configs([RAW[task_id]], parse_site_map(FAKE_MAP))
    (tpl,) = done.files["webarena"]["templates"]
    from synth.tasks import Template, instantiate_seed

    return instantiate_seed("webarena", Template.model_validate(tpl), 0)


async def judge_on(browser, task: Task, url: str, pages: dict[str, str], answer: str | None = None):
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.route("**/*", fake_host(pages))
        await page.goto(url)
        ctx = JudgeContext(page=page, site=WebArenaSite(), task=task, answer=answer, final_url=page.url)
        return await run_judge(task.judge, ctx)
    finally:
        await context.close()


async def test_imported_reddit_post_is_judged_with_the_helper_and_url(browser):
    """Task 600: url_match on the forum, then program_html on the post page
    that reddit_get_post_url('__last_url__') derives from the final URL."""
    task = imported(600)
    post = ("<html><body><div class='submission__inner'>what is the recommended console to buy these days"
            "<p>submitted by MarvelsGrantMan136</p></div></body></html>")
    pages = {"http://reddit.test:9999/f/consoles/4242/": post}
    v = await judge_on(browser, task, "http://reddit.test:9999/f/consoles/4242/what-is-the-recommended", pages)
    assert v.passed and v.score == 1.0, v.reason
    v = await judge_on(browser, task, "http://reddit.test:9999/f/gaming/4242/what-is-the-recommended",
                       {"http://reddit.test:9999/f/gaming/4242/": post})
    assert not v.passed and "url_match 0" in v.reason, v.reason  # posted in the wrong forum
    v = await judge_on(browser, task, "http://reddit.test:9999/f/consoles/4242/x", {"http://reddit.test": "<p>x</p>"})
    assert not v.passed and "task 600" in v.reason and "eval.program_html[0].locator threw" in v.reason, v.reason


async def test_imported_cart_target_url_and_or_alternatives(browser):
    """Task 431: the target URL is opened whatever page the episode ended on;
    the whole page is read (empty locator) and one |OR| alternative suffices."""
    task = imported(431)
    cart = "<html><body><table><tr><td>SPAAS White Taper Candles - 4 Pack</td></tr></table></body></html>"
    pages = {"http://shop.test:7770/checkout/cart": cart, "http://shop.test:7770/": "<p>home</p>"}
    assert (await judge_on(browser, task, "http://shop.test:7770/", pages)).passed
    pages["http://shop.test:7770/checkout/cart"] = "<html><body>Tall pink taper candles</body></html>"
    v = await judge_on(browser, task, "http://shop.test:7770/", pages)
    assert not v.passed and "must_include" in v.reason


async def test_imported_map_route_reads_form_values(browser):
    """Task 356: `document.querySelector(...).selectedIndex` and `.value`
    read in the page; exact_match compares str() of the result ("1")."""
    task = imported(356)
    form = ("<select class='routing_engines'><option>bike</option><option {sel}>car</option></select>"
            "<input name='route_from' value='Gates and Hillman Centers, Pittsburgh'>"
            "<input name='route_to' value='Independence Hall, Philadelphia'>")
    page = "<html><body><div id='content'>" + form + "</div></body></html>"
    assert (await judge_on(browser, task, "http://map.test:3000/directions",
                           {"http://map.test": page.format(sel="selected")})).passed
    v = await judge_on(browser, task, "http://map.test:3000/directions", {"http://map.test": page.format(sel="")})
    assert not v.passed and "eval.program_html[0] exact_match '1': 0" in v.reason, v.reason


async def test_string_and_url_combine_as_a_product(browser):
    """Task 173: string_match (fuzzy) times url_match."""
    task = imported(173)
    issue = "http://gitlab.test:8023/byteblaze/empathy-prompts/-/issues/8"
    set_llm(Grader("correct"))
    try:
        assert (await judge_on(browser, task, issue, {"http://gitlab.test": "<p>open</p>"}, "It is still open")).passed
        v = await judge_on(browser, task, issue.replace("/8", "/9"), {"http://gitlab.test": "<p/>"}, "It is open")
        assert not v.passed and v.score == 0.0 and "url_match 0" in v.reason
    finally:
        set_llm(None)


# ---------------------------------------------------------------- configs for synth's sites, end to end


def import_for(name: str, mapping: str, tmp_path: Path) -> list[Task]:
    """Import a fixture through the CLI, then instantiate what it wrote."""
    from synth.cli import app

    out = tmp_path / f"{name}.yaml"
    result = CliRunner().invoke(app, ["tasks", "import", "webarena", str(FIXTURES / f"{name}.json"),
                                      "--site-map", mapping, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return [t for site, tpl in load_templates(out) for t in instantiate(site, tpl)]


def by_task_id(tasks: list[Task]) -> dict[int, Task]:
    return {t.judge.params["config"]["task_id"]: t for t in tasks}


async def noop(env, obs) -> None:
    await env.done()


def answering(text: str):
    async def policy(env, obs) -> None:
        await env.submit_answer(text)

    return policy


async def run(browser, site, task: Task, policy) -> Any:
    env = BrowserEnv(browser, site)
    return await run_episode(env, task, policy, source="solver", source_detail="test")


async def test_shop_configs_end_to_end(browser, tmp_path):
    tasks = by_task_id(import_for("shop", "SHOPPING=shop", tmp_path))
    assert set(tasks) == {1001, 1002, 1003}
    assert tasks[1001].site == "shop" and tasks[1001].start_url == "/"
    assert tasks[1001].judge.params["on_site"] == ["__SHOPPING__"]
    site = get_site("shop")
    t = await run(browser, site, tasks[1001], get_solver("shop.product-price"))
    assert t.status == "accepted" and t.verdict.score == 1.0, t.verdict.reason
    assert "/product/2128" in t.final_url
    t = await run(browser, site, tasks[1001], answering("$149.49"))  # a wrong answer, on the home page
    assert t.status == "rejected" and "string_match 0" in t.verdict.reason and "url_match 0" in t.verdict.reason
    t = await run(browser, site, tasks[1003], get_solver("shop.add-to-cart"))
    assert t.status == "accepted", t.verdict.reason
    t = await run(browser, site, tasks[1003], noop)  # nothing added: the cart table is not there
    assert t.status == "rejected" and "task 1003" in t.verdict.reason
    assert "eval.program_html[0].locator threw" in t.verdict.reason, t.verdict.reason


@pytest.mark.timeout(600)
async def test_trac_configs_end_to_end(browser, tmp_path):
    pytest.importorskip("trac", reason="Trac is installed by the test extra")
    tasks = by_task_id(import_for("trac", "TRAC=trac", tmp_path))
    site = get_site("trac")
    try:
        t = await run(browser, site, tasks[2001], get_solver("trac.ticket-owner"))
        assert t.status == "accepted" and t.final_url.endswith("/ticket/79"), t.verdict.reason
        t = await run(browser, site, tasks[2001], answering("Ravi Patel"))
        assert t.status == "rejected" and "exact_match 'Mei Chen': 0" in t.verdict.reason
        t = await run(browser, site, tasks[2002], get_solver("trac.resolve-ticket"))
        assert t.status == "accepted", t.verdict.reason
        t = await run(browser, site, tasks[2002], noop)  # the ticket stays open (the instance was reset)
        assert t.status == "rejected" and "exact_match 'closed': 0" in t.verdict.reason, t.verdict.reason
        assert "eval.program_html[1].locator threw" in t.verdict.reason  # no resolution shown
    finally:
        await site.stop()


@pytest.mark.timeout(600)
async def test_datasette_url_match_end_to_end(browser, tmp_path):
    pytest.importorskip("datasette", reason="Datasette is not installed")
    (task,) = import_for("datasette", "DATASETTE=datasette", tmp_path)
    assert task.start_url == "/city" and task.params.get("role", "unset") is None
    site = get_site("datasette")
    try:
        t = await run(browser, site, task, get_solver("datasette.filter-sort"))
        assert t.status == "accepted", (t.verdict.reason, t.final_url)
        t = await run(browser, site, task, noop)
        assert t.status == "rejected" and "url_match 0" in t.verdict.reason
    finally:
        await site.stop()


def test_imported_yaml_is_readable(tmp_path):
    done = import_configs(load_configs(FIXTURES / "shop.json"), parse_site_map(["SHOPPING=shop"]))
    doc = yaml.safe_load(dump(done.files["shop"], "shop.json"))
    (first, second) = doc["templates"]
    assert first["id"] == "webarena-9001" and first["seeds"] == {"start": 0, "count": 2}
    assert first["judge"] == {"type": "webarena", "config": "{{ webarena[seed] }}", "on_site": ["__SHOPPING__"]}
    assert [i["task_id"] for i in first["params"]["webarena"]] == [1001, 1002]
    assert first["params"]["role"] is None  # require_login: false


def test_judge_spec_loads_through_the_registry():
    spec = JudgeSpec.model_validate({"type": "webarena", "config": RAW[0]})
    from synth.judges import check_spec

    assert check_spec(spec).params["config"]["task_id"] == 0


async def test_gitlab_member_role_helper(browser):
    """The gitlab_get_project_memeber_role helper (WebArena's spelling) as a
    `func:` locator, on a members table shaped like GitLab's."""
    config = {
        "task_id": 9301, "intent": "Make byteblaze a maintainer", "eval": {
            "eval_types": ["program_html"], "program_html": [{
                "url": "last", "locator": "func:gitlab_get_project_memeber_role(__page__, 'byteblaze')",
                "required_contents": {"must_include": ["Maintainer"]}}]}}
    task = Task(task_id="t", template_id="webarena/x", site="webarena", seed=0,
                judge=JudgeSpec.model_validate({"type": "webarena", "config": config}))
    row = ("<tr><td data-label='Account'><span class='gl-avatar-labeled-sublabel'>@{who}</span></td>"
           "<td class='col-max-role'><span>{role}</span></td></tr>")
    members = "<table>" + row.format(who="root", role="Owner") + row.format(who="byteblaze", role="{r}") + "</table>"
    url = "http://gitlab.test:8023/a/b/-/project_members"
    assert (await judge_on(browser, task, url, {"http://gitlab.test": members.replace("{r}", "Maintainer")})).passed
    v = await judge_on(browser, task, url, {"http://gitlab.test": members.replace("{r}", "Developer")})
    assert not v.passed and "must_include 'Maintainer': 0" in v.reason


async def test_webarena_site_logs_in_with_the_storage_state(browser, tmp_path):
    """The `webarena` site opens the absolute start URL with the cookies of
    the config's storage_state file (WebArena's .auth/*.json)."""
    state = tmp_path / "reddit_state.json"
    state.write_text(json.dumps({"cookies": [{"name": "PHPSESSID", "value": "s3cret", "domain": "reddit.test",
                                              "path": "/", "expires": -1, "httpOnly": True, "secure": False,
                                              "sameSite": "Lax"}], "origins": []}))
    seen: list[str] = []

    async def handle(route):
        seen.append(await route.request.header_value("cookie") or "")
        await route.fulfill(body="<p>front page</p>", content_type="text/html")

    task = Task(task_id="t", template_id="webarena/webarena-1", site="webarena", seed=0,
                start_url="http://reddit.test:9999/forums", params={"storage_state": str(state)},
                judge=JudgeSpec(type="webarena", config=RAW[600]))
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.route("**/*", handle)
        await WebArenaSite().setup(page, task)
        assert page.url == "http://reddit.test:9999/forums" and seen == ["PHPSESSID=s3cret"]
        missing = task.model_copy(update={"params": {"storage_state": str(tmp_path / "none.json")}})
        with pytest.raises(FileNotFoundError, match="storage_state"):
            await WebArenaSite().setup(page, missing)
    finally:
        await context.close()


async def test_imported_fuzzy_match_asks_the_configured_endpoint(browser):
    """--llm-base-url/--llm-model reach the judge: task 8 (fuzzy_match)
    imported with the mock server as its endpoint, judged by the real client."""
    from bootstrap.mock_server import MockServer

    def grade(request: dict[str, Any]) -> str | None:
        text = request["messages"][-1]["content"]
        return "correct" if "student answer: there is no airport" in text else "incorrect"

    with MockServer(responders=[grade]) as server:
        llm = {"base_url": server.url, "model": "mock-agent"}
        done = import_configs([RAW[8]], parse_site_map(FAKE_MAP), llm=llm)
        (tpl,) = done.files["webarena"]["templates"]
        assert tpl["judge"]["llm"] == llm
        from synth.tasks import Template, instantiate_seed

        task = instantiate_seed("webarena", Template.model_validate(tpl), 0)
        pages = {"http://map.test": "<p>map</p>"}
        good = await judge_on(browser, task, "http://map.test:3000/", pages, "There is no airport within 5 km")
        assert good.passed, good.reason
        wrong = await judge_on(browser, task, "http://map.test:3000/", pages, "Pittsburgh International Airport")
        assert not wrong.passed and "fuzzy_match" in wrong.reason
        assert server.count() == 2


async def test_a_null_locator_reads_as_none(browser):
    """WebArena takes str() of what the locator returns: null is "None"
    (so must_include "none" passes on a page without the element)."""
    config = {"task_id": 9302, "intent": "x", "eval": {"eval_types": ["program_html"], "program_html": [
        {"url": "last", "locator": "document.querySelector('#missing')", "required_contents": {"exact_match": "None"}},
        {"url": "last", "locator": "[...document.querySelectorAll('li')].map(e => e.innerText)",
         "required_contents": {"exact_match": "['a', 'b']"}}]}}
    task = Task(task_id="t", template_id="webarena/x", site="webarena", seed=0,
                judge=JudgeSpec.model_validate({"type": "webarena", "config": config}))
    v = await judge_on(browser, task, "http://x.test/", {"http://x.test": "<ul><li>a</li><li>b</li></ul>"})
    assert v.passed, v.reason


async def test_an_llm_error_never_shows_the_key(monkeypatch):
    from bootstrap.mock_server import MockServer
    from synth.webarena import LLMSettings

    monkeypatch.setenv("WA_TEST_KEY", "sk-test-0123456789")
    with MockServer(api_key="another-key") as server:  # a 401 for our key
        ask = LLMSettings(base_url=server.url, model="mock-agent", api_key_env="WA_TEST_KEY").ask()
        with pytest.raises(RuntimeError) as e:
            await string_score(RAW[8], "x", lambda: ask)
    assert "sk-test-0123456789" not in str(e.value) and "AuthenticationError" in str(e.value)
