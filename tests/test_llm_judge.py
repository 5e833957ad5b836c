"""The `llm_judge` judge type: the bootstrap client against the mock server,
whose judge responder decides by rules over the prompt (the answer on the
final page, the rubric's `must show`), in real Chromium on the shop site.
The figures these tests see only test the harness, not a model's judgement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from bootstrap.mock_server import MockServer
from bootstrap.mock_server.responders import load_responders
from synth import llm_judge
from synth.config import LLMJudgeConfig, load_pipeline
from synth.env import BrowserEnv
from synth.episode import run_episode
from synth.judges import JudgeContext, run_judge
from synth.llm_judge import LLMJudgeError, ask_judge, parse_verdict
from synth.query import stats_tables
from synth.schema import Action, JudgeSpec, Task, Verdict
from synth.sites import get_site
from synth.solver import get_solver
from synth.tasks import tasks_from

PRICES = {"mock-judge": {"input_per_mtok": 2.0, "output_per_mtok": 8.0}}
KEY = "sk-judge-test-0123456789"

TEMPLATE = """\
site: shop
templates:
  - id: product-price-llm
    max_steps: 15
    slots:
      product: "SELECT id, name, price FROM products"
    intent: "What is the price of the {{ product.name }}? Answer with its price."
    judge:
      type: llm_judge
      rubric: 'The answer must be the price the product page lists. answer: "{{ product.price | money }}"'
    solver: shop.product-price
"""


class Recorder:
    """The mock server's responders, keeping every request body they see."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.responders = load_responders()

    def __call__(self, request: dict[str, Any]) -> Any:
        self.requests.append(request)
        return next(out for fn in self.responders if (out := fn(request)) is not None)


@pytest.fixture
def server():
    recorder = Recorder()
    with MockServer(responders=[recorder], api_key=KEY, hang_s=5) as s:
        s.recorder = recorder
        yield s


@pytest.fixture
def configured(server, tmp_path, monkeypatch):
    """The judge pointed at the mock server, with a fresh reply cache."""
    monkeypatch.setenv("JUDGE_TEST_KEY", KEY)
    config = LLMJudgeConfig(
        base_url=server.url, model="mock-judge", api_key_env="JUDGE_TEST_KEY", prices=PRICES,
        cache_path=str(tmp_path / "llm.sqlite"), backoff_initial_s=0.05, backoff_max_s=0.2, request_timeout_s=2,
        max_retries=3,
    )
    llm_judge.configure(config)
    yield config
    llm_judge.configure(None)


@pytest.fixture(autouse=True)
async def closed_clients():
    yield
    await llm_judge.close_clients()


def shop_task(tmp_path: Path) -> Task:
    path = tmp_path / "shop.yaml"
    path.write_text(TEMPLATE)
    (task,) = tasks_from(path, seeds=1)
    return task


def answering(text: str):
    async def policy(env, obs):
        await env.step(Action(name="answer", text=text))

    return policy


async def run(browser, task: Task, policy) -> Any:
    return await run_episode(BrowserEnv(browser, get_site("shop")), task, policy, source="solver", source_detail="test")


PAGE = "<html><head><title>Order placed</title></head><body><h1>Thanks!</h1><p>Order #1042 placed: 2 x Blue Mug, $19.90</p></body></html>"


async def judge_static(browser, rubric: str | None = None, answer: str | None = None, html: str = PAGE) -> Verdict:
    """The judge on a static page: deterministic screenshots, so a repeat is a cache hit."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.set_content(html)
        task = Task(task_id="t-static", template_id="test/static", site="shop", seed=0, instruction='Buy two "Blue Mug"',
                    judge=JudgeSpec.model_validate({"type": "llm_judge", **({"rubric": rubric} if rubric else {})}))
        ctx = JudgeContext(page=page, site=None, task=task, answer=answer, final_url="http://127.0.0.1:1/done")
        return await run_judge(task.judge, ctx)
    finally:
        await context.close()


# ---------------------------------------------------------------- real episodes


async def test_a_passing_and_a_failing_shop_trajectory(browser, server, configured, tmp_path):
    task = shop_task(tmp_path)
    assert task.judge.params["rubric"].startswith("The answer must be") and '"$' in task.judge.params["rubric"]
    good = await run(browser, task, get_solver("shop.product-price"))
    assert good.status == "accepted", good.reject_reason
    assert good.verdict.reason.startswith("llm_judge (mock-judge): the answer") and good.verdict.score == 1.0
    # cost: the mock's usage at the configured prices, on the verdict (not the source's cost)
    v = good.verdict
    assert v.tokens_in > 0 and v.tokens_out > 0 and good.cost_usd == 0.0
    assert v.cost_usd == pytest.approx((v.tokens_in * 2.0 + v.tokens_out * 8.0) / 1e6)
    # what the model saw: instruction, rubric, actions as text, answer, final page, screenshots
    body = server.recorder.requests[-1]
    text = body["messages"][1]["content"][0]["text"]
    assert f"## Task\n{task.instruction}" in text and "## Rubric\n" in text
    assert "pyautogui" in text and f"## Answer\n{good.answer}" in text and "/product/" in text
    images = [p for p in body["messages"][1]["content"] if p["type"] == "image_url"]
    assert len(images) == 2 and all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in images)

    bad = await run(browser, task, answering("$1.00"))  # a wrong answer, on the home page
    assert bad.status == "rejected" and bad.verdict.passed is False
    assert "the answer '$1.00' does not appear on the final page" in bad.reject_reason
    assert bad.verdict.cost_usd > 0 and KEY not in bad.verdict.model_dump_json()


async def test_a_failed_endpoint_names_the_task(browser, server, configured, tmp_path):
    task = shop_task(tmp_path)
    server.set_faults(["500"])
    t = await run(browser, task, answering("$1.00"))
    assert t.status == "rejected" and t.error is None  # a judge failure, not a browser one (no retry)
    assert f"llm_judge on task {task.task_id} (shop/product-price-llm): the endpoint failed" in t.reject_reason
    assert "HTTP 500" in t.reject_reason and "4 attempts" in t.reject_reason and server.count() == 4
    assert KEY not in t.reject_reason


# ---------------------------------------------------------------- faults, cache, parsing


async def test_retries_on_500_and_timeouts(browser, server, configured):
    server.set_faults(["500:on=1", "hang:on=2"])
    v = await judge_static(browser)
    assert v.passed and server.count() == 3, v.reason  # 500, timeout, answer
    assert [e["fault"] for e in server.log] == ["500", "hang", None]


async def test_a_malformed_reply_is_repaired_or_rejected(browser, server, configured):
    server.set_faults(["malformed:on=1"])  # not JSON; the repair turn quotes the problem
    v = await judge_static(browser)
    assert v.passed and server.count() == 2, v.reason
    (repair,) = server.recorder.requests  # the fault answered the first request itself
    assert repair["messages"][-1]["content"].startswith("Your reply could not be used: no JSON object in the reply")
    assert repair["messages"][-2]["content"].startswith("Thought: I will click")  # the bad reply, quoted back
    paid = v.tokens_in

    server.reset()
    server.set_faults(["malformed"])  # every reply: rejected with the reason, no exception
    v = await judge_static(browser, rubric="Any order confirmation.")
    assert not v.passed and server.count() == 2
    assert v.reason.startswith("llm_judge: no usable verdict after 2 replies: no JSON object in the reply; last reply:")
    assert v.cost_usd > 0

    server.reset()
    server.set_faults([])
    v = await judge_static(browser, rubric="mock: no reason")
    assert not v.passed and 'the reply gives no "reason"' in v.reason and server.count() == 2
    v = await judge_static(browser, rubric="mock: broken json")
    assert not v.passed and server.count() == 4
    assert "no usable verdict after 2 replies: the reply's JSON object is not closed (cut off by max_tokens?); last reply: '{\"verdict\": \"pass\"" in v.reason
    v = await judge_static(browser, rubric="mock: prose")  # prose first, JSON after the repair
    assert v.passed, v.reason
    single = (await judge_static(browser, rubric="Any confirmation page.")).tokens_in
    assert paid > 2 * single  # both calls of a repaired verdict are counted (the second quotes the first)


async def test_the_second_call_is_a_cache_hit(browser, server, configured):
    first = await judge_static(browser, answer="$19.90")
    assert first.passed and first.cost_usd > 0 and server.count() == 1
    again = await judge_static(browser, answer="$19.90")
    assert server.count() == 1  # no second request
    assert again.passed == first.passed and again.reason == first.reason
    assert again.cost_usd == 0.0 and again.tokens_in == first.tokens_in  # nobody paid twice


async def test_rubric_and_wrong_fault_decide(browser, server, configured):
    assert (await judge_static(browser, rubric='must show: "Order #1042"')).passed
    v = await judge_static(browser, rubric='must show: "Order #9999"')
    assert not v.passed and '"Order #9999" is not on the final page' in v.reason
    server.set_faults(["wrong"])
    v = await judge_static(browser, rubric='must show: "Thanks!"')  # (a new request: not from the cache)
    assert not v.passed and "(deliberately wrong)" in v.reason


def test_parse_verdict():
    assert parse_verdict('```json\n{"verdict": "PASS", "reason": "ok"}\n```') == (True, "ok")
    assert parse_verdict('{"passed": false, "reason": "no"}') == (False, "no")
    for bad, problem in (("yes", "no JSON object"), ('{"verdict": "maybe", "reason": "x"}', '"verdict" must be'),
                         ('{"verdict": "pass",}', "does not parse"), ('{"verdict": "fail"}', 'no "reason"'),
                         ('{"verdict": "fail", "reason": "cut', "not closed")):
        with pytest.raises(ValueError, match=problem):
            parse_verdict(bad)


# ---------------------------------------------------------------- config, reuse, stats


async def test_ask_judge_is_reusable(server, configured):
    reply = await ask_judge([{"role": "user", "content": "reference answer: x\nstudent answer: x"}])
    assert reply.text == "OK." and reply.cost_usd > 0 and server.count() == 1


async def test_no_endpoint_is_a_clear_error(browser, monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SYNTH_LLM_JUDGE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(LLMJudgeError, match=r"llm_judge on task t-static \(test/static\): no endpoint or key "
                                            r"\(set judges.llm.base_url in the pipeline, or \$OPENAI_API_KEY\)"):
        await judge_static(browser)


def test_the_pipeline_section_reaches_the_judge(tmp_path, monkeypatch):
    monkeypatch.delenv("SYNTH_LLM_JUDGE", raising=False)
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: t\noutput_dir: out\ntasks: [{templates: t.yaml}]\n"
        "judges:\n  llm: {base_url: 'http://127.0.0.1:9/v1', model: judge-m, prices: {judge-m: {input_per_mtok: 1}}}\n"
    )
    config = load_pipeline(path)
    config.judges.export_env(str(tmp_path / "cache"))  # what `synth run` does before starting workers
    seen = llm_judge.current_config()
    assert seen.model == "judge-m" and seen.base_url == "http://127.0.0.1:9/v1"
    assert seen.cache_path == str(tmp_path / "cache" / "llm.sqlite")
    path.write_text(path.read_text().replace("input_per_mtok", "input_per_tok"))
    with pytest.raises(Exception, match=r"p.yaml:5: judges.llm.prices: Value error, judge-m: unknown keys"):
        load_pipeline(path)


def test_stats_show_judge_cost():
    verdict = pa.struct([("passed", pa.bool_()), ("score", pa.float64()), ("reason", pa.string()),
                         ("tokens_in", pa.int64()), ("tokens_out", pa.int64()), ("cost_usd", pa.float64())])
    rows = [
        {"source": "solver", "status": "accepted", "num_steps": 2, "cost_usd": 0.0, "template_id": "a", "reject_reason": None,
         "task_config": json.dumps({"judge": {"type": "llm_judge"}}),
         "verdict": {"passed": True, "score": 1.0, "reason": "", "tokens_in": 1000, "tokens_out": 20, "cost_usd": 0.00216}},
        {"source": "solver", "status": "accepted", "num_steps": 2, "cost_usd": 0.0, "template_id": "b", "reject_reason": None,
         "task_config": json.dumps({"judge": {"type": "string_match"}}),
         "verdict": {"passed": True, "score": 1.0, "reason": "", "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}},
    ]
    schema = pa.schema([("source", pa.string()), ("status", pa.string()), ("num_steps", pa.int32()),
                        ("cost_usd", pa.float64()), ("template_id", pa.string()), ("reject_reason", pa.string()),
                        ("task_config", pa.string()), ("verdict", verdict)])
    con = duckdb.connect()
    con.register("trajectories", pa.Table.from_pylist(rows, schema=schema))
    cols, out = stats_tables(con)["judge cost by source"]
    assert cols == ["source", "judge", "judged", "tokens_in", "tokens_out", "cost_usd"]
    assert out == [("solver", "llm_judge", 1, 1000, 20, 0.0022)]
    # data written before judges had a cost: no such table, no error
    old = pa.schema([f if f.name != "verdict" else pa.field("verdict", pa.struct(list(verdict)[:3])) for f in schema])
    con = duckdb.connect()
    con.register("trajectories", pa.Table.from_pylist(rows, schema=old))
    assert "judge cost by source" not in stats_tables(con)
