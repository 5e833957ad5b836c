"""Judge parameters are typed and checked: when templates load (literal
fields), for every instantiated task (fields rendered from slots), and once
more at episode end, where a wrong type is a verdict, never a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from synth.config import ConfigError
from synth.episode import run_episode
from synth.judges import JUDGES, JudgeContext, register_judge, run_judge
from synth.schema import JudgeSpec, Verdict
from synth.sites import Setup, Site
from synth.tasks import instantiate, instantiate_seed, load_templates


def _shop_template(tmp_path: Path, judge: str, slots: str = "product: 'SELECT id, name, price FROM products'") -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(
        "site: shop\n"
        "templates:\n"
        "  - id: fine\n"
        "    slots: {product: 'SELECT name FROM products'}\n"
        "    intent: 'Price of {{ product }}?'\n"
        "    judge: {type: string_match, expected: '{{ product }}'}\n"
        "  - id: product-price\n"
        f"    slots: {{{slots}}}\n"
        "    intent: 'What is the price of the {{ product.name }}?'\n"
        f"    judge: {judge}\n"
    )
    return path


def test_a_literal_judge_field_of_the_wrong_type_fails_when_the_template_loads(tmp_path):
    path = _shop_template(tmp_path, "{type: string_match, expected: 19.99}")
    with pytest.raises(ConfigError) as e:
        load_templates(path)
    assert str(e.value).startswith(
        f"{path}: templates[1] (product-price): judge.expected: string_match expects a string or a list of "
        "strings, got float 19.99"
    ), e.value
    path = _shop_template(tmp_path, "{type: string_match, expected: '{{ product.name }}', mode: fuzzy}")
    with pytest.raises(ConfigError, match=r"\(product-price\): judge\.mode: string_match expects one of "
                                          r"'exact', 'must_include', 'normalised', got str 'fuzzy'"):
        load_templates(path)
    # inside all_of, the inner judge's field is named by its place
    path = _shop_template(tmp_path, "{type: all_of, judges: [{type: url_match, path: /}, "
                                    "{type: url_match, query: {page: [1, 2.5]}}]}")
    with pytest.raises(ConfigError, match=r"judge\.judges\[1\]\.query\.page\[1\]: url_match expects .*got float 2\.5"):
        load_templates(path)


def test_a_slot_of_the_wrong_type_fails_when_its_task_is_instantiated(tmp_path):
    """`"{{ product.price }}"` alone keeps the slot's type: a float, which
    string_match cannot compare with an answer. The file loads (the type is
    not known yet); instantiating says where, which field, what and why."""
    path = _shop_template(tmp_path, "{type: string_match, expected: '{{ product.price }}'}")
    (_, fine), (site, tpl) = load_templates(path)
    assert instantiate(site, fine, seeds=3)
    with pytest.raises(ConfigError) as e:
        instantiate_seed(site, tpl, 0)
    message = str(e.value)
    assert message.startswith(
        f"{path}: templates[1] (product-price): judge.expected: string_match expects a string or a list of "
        "strings, got float "
    ), message
    assert 'from "{{ product.price }}"' in message and "(seed 0)" in message and "| money" in message
    # formatted in the template, it is text
    path = _shop_template(tmp_path, "{type: string_match, expected: '{{ product.price | money }}'}")
    task = instantiate_seed(*load_templates(path)[1], 0)
    assert task.judge.params["expected"].startswith("$")


async def test_an_int_where_text_is_expected_is_its_decimal_text(tmp_path):
    """The one conversion synth adds to pydantic's: lossless and meant."""
    path = _shop_template(tmp_path, "{type: string_match, expected: '{{ product.id }}', mode: exact}")
    task = instantiate_seed(*load_templates(path)[1], 0)
    product_id = task.params["slots"]["product"]["id"]
    assert isinstance(product_id, int) and task.judge.params["expected"] == str(product_id)
    ctx = JudgeContext(page=None, site=None, task=task, answer=f" {product_id} ", final_url="")
    assert (await run_judge(task.judge, ctx)).passed
    # and a bool is not text: refused
    path = _shop_template(tmp_path, "{type: string_match, expected: '{{ product.id > 0 }}'}")
    with pytest.raises(ConfigError, match=r"judge\.expected: .*got bool True from"):
        instantiate_seed(*load_templates(path)[1], 0)


@pytest.fixture
def plugin_judge():
    """A judge as another package would register it: its context annotated
    with a name that package imports only for type checkers."""

    @register_judge("test_types.at_least")
    async def at_least(ctx: NotImportedAtRuntime, count: int, unit: Literal["items", "pages"] = "items") -> Verdict:  # noqa: F821
        return Verdict(passed=count >= 0, reason=f"{count} {unit}")

    yield "test_types.at_least"
    del JUDGES["test_types.at_least"]


def test_plugin_judges_are_checked_from_their_own_annotations(tmp_path, plugin_judge):
    path = _shop_template(tmp_path, f"{{type: {plugin_judge}, count: many}}")
    with pytest.raises(ConfigError, match=r"\(product-price\): judge\.count: test_types\.at_least expects an integer, "
                                          r"got str 'many'"):
        load_templates(path)
    path = _shop_template(tmp_path, f"{{type: {plugin_judge}, count: '{{{{ product.name }}}}'}}")
    (_, tpl) = load_templates(path)[1]
    with pytest.raises(ConfigError, match=r"judge\.count: test_types\.at_least expects an integer, got str .* "
                                          r"from \"\{\{ product\.name \}\}\" \(seed 2\)"):
        instantiate_seed("shop", tpl, 2)
    path = _shop_template(tmp_path, f"{{type: {plugin_judge}, count: '{{{{ product.id }}}}', unit: pages}}")
    task = instantiate_seed("shop", load_templates(path)[1][1], 0)
    assert task.judge.params == {"count": task.params["slots"]["product"]["id"], "unit": "pages"}


class _BlankSite(Site):
    name = "blank-test"

    async def setup(self, page, task):
        await page.set_content("<button>OK</button>")
        return Setup(instruction="Say 19.99.")


async def test_a_wrong_type_at_episode_end_is_a_failed_verdict_not_a_crash(browser, make_task):
    """A task built around the templates (by hand, from old staging) still
    reaches the judge with a float: the episode ends rejected, saying why."""
    from synth.env import BrowserEnv

    task = make_task("click-button", 0).model_copy(
        update={"site": "blank-test", "judge": JudgeSpec(type="string_match", expected=19.99)}
    )

    async def answer(env, obs):
        await env.submit_answer("19.99")

    t = await run_episode(BrowserEnv(browser, _BlankSite()), task, answer, source="solver", source_detail="test")
    assert t.error is None and t.status == "rejected"
    assert t.verdict.reason.startswith("judge string_match: bad parameters: expected: string_match expects a string"), \
        t.verdict.reason
