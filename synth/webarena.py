"""WebArena's evaluators as a synth judge, and a site for WebArena deployments.

WebArena (github.com/web-arena-x/webarena) judges an episode with the `eval`
block of its task config: `eval_types` lists evaluators whose scores are
multiplied, and the task passes when the product is 1.0:

* `string_match` on the final answer, by each approach of `reference_answers`:
  `exact_match`, `must_include` (every phrase), `fuzzy_match` (an LLM grades
  the answer against each reference; the reference `"N/A"` means "not
  achievable": an exact "N/A" passes, anything else goes to `ua_match`, an
  LLM comparing the reported reason with `string_note`).
* `url_match`: the final URL against `reference_url` (alternatives joined by
  ` |OR| `), "GOLD in PRED": some reference's host+path occurs in the final
  URL's host+path, and every reference query parameter has one of its
  reference values in the final URL's query.
* `program_html`: for each target, a page (`last`, a URL, or `func:` helper),
  a locator (empty: the whole HTML; `document.`... JavaScript evaluated in the
  page; `func:` helper) and `required_contents` (`exact_match`, or
  `must_include` with ` |OR| ` alternatives).

This module re-states `evaluation_harness/evaluators.py` and
`helper_functions.py` in synth's terms with the same semantics, their quirks
included (the answer is cleaned twice; a throwing locator reads as ""; a
locator's `null` reads as "None" because WebArena takes `str()` of it; nltk's
tokenizer decides a one-character `must_include`, ported here), so a
trajectory scores here what it scores there. Two deliberate differences: after
opening a target URL the page is waited for (load and network idle, at most
3 s) instead of WebArena's fixed 3 s sleep; and `func:` expressions are parsed
(one call of a known helper with literal arguments), never `eval`-ed.

The judge is registered as `webarena`; its one required parameter is the task
config (at least `task_id`, `intent` and `eval`). Site placeholders
(`__SHOPPING__` ...) listed in `on_site` stand for the site the episode runs
on and are replaced by its base URL at episode end, textually, as WebArena's
`generate_test_data.py` does; `synth tasks import webarena`
(synth.webarena_import) writes such templates.
"""

from __future__ import annotations

import ast
import asyncio
import html
import json
import os
import re
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from playwright.async_api import Page

from synth.judges import JudgeContext, register_judge
from synth.schema import Task, Verdict
from synth.sites.base import Setup, Site, register_site

EVAL_TYPES = ("string_match", "url_match", "program_html")
STRING_APPROACHES = ("exact_match", "must_include", "fuzzy_match")
CONTENT_APPROACHES = ("exact_match", "must_include")
URL_NOTES = ("GOLD in PRED",)
OR = " |OR| "

PLACEHOLDER = re.compile(r"__[A-Z]+(?:_[A-Z]+)*__")
"""WebArena's site placeholders: __SHOPPING__, __SHOPPING_ADMIN__, __GITLAB__ ..."""

class WebArenaConfigError(ValueError):
    """A task config synth cannot judge as WebArena would. The message starts
    with the task id and the field: `task 7: eval.eval_types[1]: ...`."""

    def __init__(self, task_id: Any, field: str, message: str) -> None:
        super().__init__(f"task {task_id}: {field}: {message}")
        self.task_id, self.field, self.message = task_id, field, message


# ---------------------------------------------------------------- strings


def clean_answer(answer: str) -> str:
    """WebArena's `StringEvaluator.clean_answer`: strip spaces, then one pair
    of enclosing single or double quotes, then lower-case."""
    answer = answer.strip()
    if answer.startswith("'") and answer.endswith("'"):
        answer = answer[1:-1]
    elif answer.startswith('"') and answer.endswith('"'):
        answer = answer[1:-1]
    return answer.lower()


def exact_match(ref: str, pred: str) -> float:
    return float(clean_answer(pred) == clean_answer(ref))


def must_include(ref: str, pred: str, tokenize: bool = False) -> float:
    """The cleaned reference occurs in the cleaned prediction. With `tokenize`
    and a one-character reference it must be a whole token ("0" is not in
    "10"), as WebArena does to avoid false positives."""
    clean_ref, clean_pred = clean_answer(ref), clean_answer(pred)
    if tokenize and len(clean_ref) == 1 and len(word_tokenize(clean_ref)) == 1:
        return float(clean_ref in word_tokenize(clean_pred))
    return float(clean_ref in clean_pred)


def word_tokenize(text: str) -> list[str]:
    """nltk's `word_tokenize` (WebArena's tokenizer for one-character
    references), without nltk: Punkt sentences, then nltk's Treebank word
    tokenizer. nltk is not a dependency of synth and its Punkt model is a
    separate download, so sentences are split as an untrained Punkt splits
    them (`_sentences`); the Treebank rules are nltk 3.x's `NLTKWordTokenizer`,
    rule for rule."""
    return [token for sentence in _sentences(text) for token in _treebank(sentence)]


_NUMBER_TOKEN = re.compile(r"-?[.,]?\d[\d,.-]*\.?$")
_INITIAL = re.compile(r"[^\W\d]\.$")
_NEXT_TOKEN = re.compile(r"\s+(\S+)")


def _sentences(text: str) -> list[str]:
    """Sentences as Punkt without a trained model splits them: after a word
    ending in . ? or ! (closing quotes and brackets after it included), but
    never after an ellipsis or a single-letter initial ("J. Smith"), and not
    after a number when the next word starts in lower case ("5. then")."""
    out, start = [], 0
    for m in re.finditer(r"\S+", text):
        word, nxt = m.group(), _NEXT_TOKEN.match(text, m.end())
        if nxt is None or not word.rstrip("\"')]}").endswith((".", "?", "!")):
            continue
        following, word = nxt.group(1), word.lstrip("(\"`{[:;&#*@)}]-,")  # what Punkt splits off a word's start
        if word.endswith("."):
            quiet = following in (";", ":", ",", ".", "!", "?") or following[0].islower()
            if word.endswith("..") or _INITIAL.match(word) and (quiet or following[0].isupper()):
                continue
            if _NUMBER_TOKEN.match(word) and quiet:
                continue
        out.append(text[start:m.end()])
        start = nxt.start(1)
    out.append(text[start:])
    return out


def _rules(*pairs: tuple[str, str]) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(rx), sub) for rx, sub in pairs]


# nltk.tokenize.destructive.NLTKWordTokenizer (Apache-2.0), in its order
_STARTING_QUOTES = _rules(
    ("([«“‘„]|[`]+)", r" \1 "), (r'^"', "``"), (r"(``)", r" \1 "), (r"([ \(\[{<])(\"|\'{2})", r"\1 `` "),
    (r"(?i)(?<!\w)(\')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", r"\1 "),
)
_PUNCTUATION = _rules(
    (r'([^\.])(\.)([\]\)}>"\'»”’ ]*+)\s*$', r"\1 \2 \3 "), (r"([:,])([^\d])", r" \1 \2"), (r"([:,])$", r" \1 "),
    (r"\.{2,}", r" \g<0> "), (r"[;@#$%&]", r" \g<0> "), ("[\u2012-\u2015]", r" \g<0> "),
    (r'([^\.])(\.)([\]\)}>"\']*)\s*$', r"\1 \2\3 "), (r"[?!]", r" \g<0> "), (r"([^'])' ", r"\1 ' "),
    (r"[*]", r" \g<0> "), (r"[\]\[\(\)\{\}\<\>]", r" \g<0> "), (r"--", r" -- "),
)
_ENDING_QUOTES = _rules(
    ("([»”’])", r" \1 "), (r"''", " '' "), (r'"', " '' "), (r"\s+", " "),
    (r"([^' ])('[sS]|'[mM]|'[dD]|') ", r"\1 \2 "), (r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", r"\1 \2 "),
)
_CONTRACTIONS = [re.compile(rx) for rx in (
    r"(?i)\b(can)(?#X)(not)\b", r"(?i)\b(d)(?#X)('ye)\b", r"(?i)\b(gim)(?#X)(me)\b", r"(?i)\b(gon)(?#X)(na)\b",
    r"(?i)\b(got)(?#X)(ta)\b", r"(?i)\b(lem)(?#X)(me)\b", r"(?i)\b(more)(?#X)('n)\b", r"(?i)\b(wan)(?#X)(na)(?=\s)",
    r"(?i) ('t)(?#X)(is)\b", r"(?i) ('t)(?#X)(was)\b",
)]


def _treebank(text: str) -> list[str]:
    for rx, sub in _STARTING_QUOTES + _PUNCTUATION:
        text = rx.sub(sub, text)
    text = f" {text} "
    for rx, sub in _ENDING_QUOTES:
        text = rx.sub(sub, text)
    for rx in _CONTRACTIONS:
        text = rx.sub(r" \1 \2 ", text)
    return text.split()


# ---------------------------------------------------------------- the LLM


AskLLM = Callable[[list[dict[str, str]]], Awaitable[str]]
"""One chat completion: messages in, the reply's text out."""

DEFAULT_MODEL = "gpt-4-1106-preview"
"""The model WebArena's helpers ask."""


@dataclass
class LLMSettings:
    """Where fuzzy_match and ua_match ask: any OpenAI-compatible endpoint.
    Defaults from the environment: SYNTH_WEBARENA_LLM_BASE_URL,
    SYNTH_WEBARENA_LLM_MODEL, and the key in OPENAI_API_KEY (or the variable
    named by `api_key_env`)."""

    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"

    def ask(self) -> AskLLM:
        import openai

        base_url = self.base_url or os.environ.get("SYNTH_WEBARENA_LLM_BASE_URL")
        model = self.model or os.environ.get("SYNTH_WEBARENA_LLM_MODEL") or DEFAULT_MODEL
        key = os.environ.get(self.api_key_env) or ("unused" if base_url else None)
        client = openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=3)

        async def ask(messages: list[dict[str, str]]) -> str:
            # WebArena's parameters: temperature 0, top_p 1, 768 tokens
            try:
                reply = await client.chat.completions.create(
                    model=model, messages=messages, temperature=0, top_p=1.0, max_tokens=768  # type: ignore[arg-type]
                )
            except openai.OpenAIError as e:  # its text goes into a verdict's reason: never the key
                text = f"{type(e).__name__}: {e}"
                raise RuntimeError(text.replace(key, "***") if key else text) from None
            return reply.choices[0].message.content or ""

        return ask


_ASK_OVERRIDE: AskLLM | None = None


def set_llm(ask: AskLLM | None) -> None:
    """Make fuzzy_match and ua_match ask `ask` instead of the configured
    endpoint (tests; None restores the default)."""
    global _ASK_OVERRIDE
    _ASK_OVERRIDE = ask


def fuzzy_messages(pred: str, reference: str, question: str) -> list[dict[str, str]]:
    """WebArena's `llm_fuzzy_match` prompt, word for word."""
    message = (
        "Help a teacher to grade the answer of a student given a question. Keep in mind that the student may use "
        "different phrasing or wording to answer the question. The goal is to evaluate whether the answer is "
        "semantically equivalent to the reference answer.\n"
        f"question: {question}\n"
        f"reference answer: {reference}\n"
        "all the string 'N/A' that you see is a special sequence that means 'not achievable'\n"
        f"student answer: {pred}\n"
        "Conclude the judgement by correct/incorrect/partially correct."
    )
    return [{"role": "system", "content": "You are a helpful assistant"}, {"role": "user", "content": message}]


def ua_messages(pred: str, reference: str, question: str) -> list[dict[str, str]]:
    """WebArena's `llm_ua_match` prompt, word for word."""
    message = (
        f"task: {question}\n"
        f"actual unachievable reason: {reference}\n"
        f"reported unachievable reason: {pred}\n"
        "The task described above is inherently unachievable due to the reason specified under 'actual "
        "unachievable reason'. An individual previously attempted this task and was unable to complete it. They "
        "provided a reason for their failure, which is listed under 'reported unachievable reason'. Your role is to "
        "review both the actual and reported reasons. Determine if the reported reason aligns with the actual "
        "reason, even if implicitly. If the stated reason is in line with the actual reason, respond with 'same'. "
        "Otherwise, respond with 'different'."
    )
    return [{"role": "system", "content": "You are a helpful assistant"}, {"role": "user", "content": message}]


async def fuzzy_match(ask: AskLLM, ref: str, pred: str, intent: str) -> float:
    reply = (await ask(fuzzy_messages(pred, ref, intent))).lower()
    if "partially correct" in reply or "incorrect" in reply:
        return 0.0
    if "correct" not in reply:
        raise ValueError(f"fuzzy_match: the LLM's reply says neither correct nor incorrect: {reply[:200]!r}")
    return 1.0


async def ua_match(ask: AskLLM, ref: str, pred: str, intent: str) -> float:
    reply = (await ask(ua_messages(pred, ref, intent))).lower()
    if "different" in reply:
        return 0.0
    if "same" not in reply:
        raise ValueError(f"ua_match: the LLM's reply says neither same nor different: {reply[:200]!r}")
    return 1.0


# ---------------------------------------------------------------- evaluators


@dataclass
class Score:
    """One evaluator's score and what decided it (for the verdict's reason)."""

    value: float
    notes: list[str] = field(default_factory=list)


async def string_score(config: dict[str, Any], answer: str, ask: Callable[[], AskLLM]) -> Score:
    """WebArena's StringEvaluator. `ask()` gives the LLM, built only when an
    approach needs one."""
    pred = clean_answer(answer)  # cleaned here and again by each approach, as WebArena does
    score, notes = 1.0, []
    for approach, value in config["eval"]["reference_answers"].items():
        if approach == "exact_match":
            s = exact_match(value, pred)
            score *= s
            notes.append(f"exact_match {value!r}: {s:g}")
        elif approach == "must_include":
            for ref in value:
                s = must_include(ref, pred, tokenize=len(value) == 1)
                score *= s
                notes.append(f"must_include {ref!r}: {s:g}")
        elif approach == "fuzzy_match":
            intent = config["intent"]
            if value == "N/A":
                score *= exact_match(value, pred)
                if score != 1:  # WebArena replaces the score: the reported reason decides
                    score = 1.0 * await ua_match(ask(), config["eval"].get("string_note", ""), pred, intent)
                notes.append(f"N/A (unachievable): {score:g}")
            else:
                for ref in value:
                    s = await fuzzy_match(ask(), ref, pred, intent)
                    score *= s
                    notes.append(f"fuzzy_match {ref!r}: {s:g}")
    return Score(score, notes)


def _clean_url(url: str) -> str:
    return str(url).rstrip("/")


def _parse_url(url: str) -> tuple[str, dict[str, list[str]]]:
    """(host + path, query) of a URL, as WebArena's URLEvaluator splits it."""
    parsed = urllib.parse.urlparse(url)
    return parsed.netloc + parsed.path, urllib.parse.parse_qs(parsed.query)


def url_score(reference_url: str, page_url: str, url_note: str = "GOLD in PRED") -> Score:
    """WebArena's URLEvaluator. Note its test is a substring one: a
    reference's host+path must occur *in* the final URL's host+path."""
    if url_note != "GOLD in PRED":
        raise ValueError(f"unknown url_note {url_note!r}")
    pred = _clean_url(page_url)
    refs = [_clean_url(u) for u in reference_url.split(OR)]
    ref_paths, ref_queries = [], defaultdict(set)
    for ref in refs:
        path, query = _parse_url(ref)
        ref_paths.append(path)
        for k, v in query.items():
            ref_queries[k].update(v)
    pred_path, pred_query = _parse_url(pred)
    base = float(any(ref in pred_path for ref in ref_paths))
    query = 1.0
    for k, values in ref_queries.items():
        query *= float(any(v in pred_query.get(k, []) for v in values))
    return Score(base * query, [f"url {pred!r} vs {reference_url!r}: path {base:g}, query {query:g}"])


# ---------------------------------------------------------------- helpers (func:)


def reddit_get_post_url(url: str) -> str:
    """WebArena's helper: a Postmill comment URL's post URL (else the URL)."""
    parsed = urllib.parse.urlparse(url)
    parts = parsed.path.split("/")
    if len(parts) < 4 or parts[1] != "f":
        return url
    return f"{parsed.scheme}://{parsed.netloc}/f/{parts[2]}/{parts[3]}/"


async def gitlab_get_project_memeber_role(page: Page, account_name: str) -> str:
    """WebArena's helper (its spelling): an account's role on a GitLab project
    members page, "" when it cannot be read."""
    try:
        index = await page.evaluate(
            """(name) => {
                const els = document.querySelectorAll("td[data-label='Account'] span.gl-avatar-labeled-sublabel");
                for (let i = 0; i < els.length; i++) if (els[i].outerText === '@' + name) return i;
                return -1;
            }""",
            account_name,
        )
        return str(await page.evaluate(
            "(i) => document.querySelectorAll('td.col-max-role span')[i].outerText", index
        ))
    except Exception:  # noqa: BLE001 - WebArena's helper reads any failure as ""
        return ""


HELPERS: dict[str, Callable[..., Any]] = {
    "reddit_get_post_url": reddit_get_post_url,
    "gitlab_get_project_memeber_role": gitlab_get_project_memeber_role,
}
"""The `func:` helpers synth runs. WebArena's shopping_* helpers ask Magento's
admin REST API with its admin account; they are not here (a config using one
is refused at import, naming the task and field)."""

UNSUPPORTED_HELPERS = {
    "shopping_get_latest_order_url",
    "shopping_get_sku_latest_review_author",
    "shopping_get_sku_latest_review_rating",
}


def parse_func(expr: str) -> tuple[str, list[Any]]:
    """`reddit_get_post_url('http://x/f/a/1/c')` -> (name, args): one call of
    a known helper with literal arguments, `__page__` (or `page`) for the page.
    ValueError otherwise."""
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"not a Python call: {e.msg}") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.keywords:
        raise ValueError("expected one helper call such as reddit_get_post_url('...')")
    name = node.func.id
    if name in UNSUPPORTED_HELPERS:
        raise ValueError(f"helper {name} is not supported (it asks Magento's admin REST API)")
    if name not in HELPERS:
        raise ValueError(f"unknown helper {name!r} (synth has {', '.join(sorted(HELPERS))})")
    args: list[Any] = []
    for arg in node.args:
        if isinstance(arg, ast.Name) and arg.id in ("__page__", "page"):
            args.append(PAGE)
        else:
            try:
                args.append(ast.literal_eval(arg))
            except ValueError:
                raise ValueError(f"helper {name}: argument {ast.unparse(arg)!r} is not a literal") from None
    return name, args


PAGE = object()
"""Stands for the live page among a helper's arguments."""


async def call_func(expr: str, page: Page) -> Any:
    name, args = parse_func(expr)
    out = HELPERS[name](*[page if a is PAGE else a for a in args])
    return await out if asyncio.iscoroutine(out) else out


# ---------------------------------------------------------------- program_html


async def _open(page: Page, url: str) -> None:
    """Open a target URL and let it settle (WebArena sleeps 3 s)."""
    await page.goto(url, wait_until="load")
    try:
        await page.wait_for_load_state("networkidle", timeout=3000)
    except Exception:  # noqa: BLE001 - a page that keeps polling is read as it is
        pass


async def _select(page: Page, target: dict[str, Any], where: str, notes: list[str]) -> str:
    """What a target's locator selects, as text (WebArena's rules)."""
    locator: str = target["locator"]
    if not locator.strip():
        return await page.content()
    if locator.startswith(("document.", "[...document.")):
        for prep in target.get("prep_actions", []):
            try:
                await page.evaluate(f"() => {prep}")
            except Exception:  # noqa: BLE001 - WebArena ignores failing prep actions
                notes.append(f"{where}.prep_actions failed (ignored)")
                break
        try:
            return str(await page.evaluate(f"() => {locator}")) or ""
        except Exception as e:  # noqa: BLE001 - WebArena reads a throwing locator as ""
            notes.append(f"{where}.locator threw {_first_line(e)}; read as ''")
            return ""
    if locator.startswith("func:"):
        return str(await call_func(locator.split("func:", 1)[1].replace("__page__", "page"), page))
    raise ValueError(f"{where}.locator: unknown locator {locator!r}")


async def program_html_score(config: dict[str, Any], page: Page) -> Score:
    """WebArena's HTMLContentEvaluator, target by target on the live page."""
    score, notes = 1.0, []
    for i, target in enumerate(config["eval"]["program_html"]):
        where = f"eval.program_html[{i}]"
        url: str = target["url"]
        if url.startswith("func"):
            url = str(await call_func(url.split("func:", 1)[1].replace("__last_url__", page.url), page))
        if url != "last":
            await _open(page, url)
        selected = html.unescape(await _select(page, target, where, notes))
        required = target["required_contents"]
        if "exact_match" in required:
            s = exact_match(required["exact_match"], selected)
            score *= s
            notes.append(f"{where} exact_match {required['exact_match']!r}: {s:g}")
        elif "must_include" in required:
            for content in required["must_include"]:
                s = float(any(must_include(c, selected) for c in content.split(OR)))
                score *= s
                notes.append(f"{where} must_include {content!r}: {s:g}")
        else:
            raise ValueError(f"{where}.required_contents: unknown keys {sorted(required)}")
    if score != 1.0:
        notes.append(f"(selected: {_short(selected)})")
    return Score(score, notes)


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= n else text[: n - 3] + "...")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]


# ---------------------------------------------------------------- checking a config


def check_config(config: dict[str, Any], placeholders: dict[str, str] | None = None) -> None:
    """Raise WebArenaConfigError (task id and field) for what synth cannot
    judge as WebArena would: an unknown eval type, approach, url_note or
    locator, a missing reference, an unsupported or malformed `func:`, a
    site placeholder without a mapping (`placeholders`: those that are
    mapped; None skips that check)."""
    tid = config.get("task_id", "?")
    ev = config.get("eval")
    if not isinstance(ev, dict):
        raise WebArenaConfigError(tid, "eval", "missing (a mapping with eval_types)")
    types_ = ev.get("eval_types")
    if not isinstance(types_, list) or not types_:
        raise WebArenaConfigError(tid, "eval.eval_types", "missing (a list of string_match, url_match, program_html)")
    for i, t in enumerate(types_):
        if t not in EVAL_TYPES:
            raise WebArenaConfigError(tid, f"eval.eval_types[{i}]", f"unknown eval type {t!r} ({', '.join(EVAL_TYPES)})")
    if "string_match" in types_:
        _check_answers(tid, ev.get("reference_answers"))
        if not isinstance(config.get("intent"), str):
            raise WebArenaConfigError(tid, "intent", "missing (string_match's LLM approaches ask about it)")
    if "url_match" in types_:
        if not isinstance(ev.get("reference_url"), str) or not ev["reference_url"].strip():
            raise WebArenaConfigError(tid, "eval.reference_url", "missing (url_match compares the final URL with it)")
        if ev.get("url_note", "GOLD in PRED") not in URL_NOTES:
            raise WebArenaConfigError(tid, "eval.url_note", f"unknown matching rule {ev['url_note']!r} (GOLD in PRED)")
    if "program_html" in types_:
        targets = ev.get("program_html")
        if not isinstance(targets, list) or not targets:
            raise WebArenaConfigError(tid, "eval.program_html", "missing (a list of url, locator, required_contents)")
        for i, target in enumerate(targets):
            _check_target(tid, f"eval.program_html[{i}]", target)
    if placeholders is not None:
        _check_placeholders(tid, config, set(placeholders))


def _check_answers(tid: Any, answers: Any) -> None:
    if not isinstance(answers, dict) or not answers:
        raise WebArenaConfigError(tid, "eval.reference_answers", "missing (string_match needs reference answers)")
    for approach, value in answers.items():
        where = f"eval.reference_answers.{approach}"
        if approach not in STRING_APPROACHES:
            raise WebArenaConfigError(tid, where, f"unknown approach ({', '.join(STRING_APPROACHES)})")
        ok = (isinstance(value, str) if approach == "exact_match" else
              _strings(value) or (approach == "fuzzy_match" and value == "N/A"))
        if not ok:
            want = "a string" if approach == "exact_match" else "a list of strings"
            raise WebArenaConfigError(tid, where, f"expected {want}, got {json.dumps(value)[:80]}")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_target(tid: Any, where: str, target: Any) -> None:
    if not isinstance(target, dict):
        raise WebArenaConfigError(tid, where, "expected a mapping with url, locator, required_contents")
    for key in ("url", "locator"):
        if not isinstance(target.get(key), str):
            raise WebArenaConfigError(tid, f"{where}.{key}", "missing (a string)")
    url, locator = target["url"], target["locator"]
    if not url.strip():
        raise WebArenaConfigError(tid, f"{where}.url", "empty (last, a URL, or func:...)")
    if url.startswith("func"):
        _check_func(tid, f"{where}.url", url.split("func:", 1)[-1].replace("__last_url__", "http://x/"))
    if locator.startswith("func:"):
        _check_func(tid, f"{where}.locator", locator.split("func:", 1)[1])
    elif locator.strip() and not locator.startswith(("document.", "[...document.")):
        raise WebArenaConfigError(
            tid, f"{where}.locator", f"unknown locator {locator[:60]!r} (empty, document...., [...document...., func:)"
        )
    required = target.get("required_contents")
    if not isinstance(required, dict) or not any(k in required for k in CONTENT_APPROACHES):
        raise WebArenaConfigError(tid, f"{where}.required_contents", "expected exact_match or must_include")
    if "exact_match" in required and not isinstance(required["exact_match"], str):
        raise WebArenaConfigError(tid, f"{where}.required_contents.exact_match", "expected a string")
    if "exact_match" not in required and not _strings(required["must_include"]):
        raise WebArenaConfigError(tid, f"{where}.required_contents.must_include", "expected a list of strings")


def _check_func(tid: Any, where: str, expr: str) -> None:
    try:
        parse_func(expr.replace("__page__", "page"))
    except ValueError as e:
        raise WebArenaConfigError(tid, where, str(e)) from None


def _check_placeholders(tid: Any, config: dict[str, Any], mapped: set[str]) -> None:
    for where, text in _texts(config):
        for name in PLACEHOLDER.findall(text):
            if name not in mapped:
                key = name.strip("_")
                raise WebArenaConfigError(
                    tid, where, f"site {name} has no mapping (give --site-map {key}=URL or {key}=SYNTH_SITE)"
                )


def _texts(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(field path, string) for every string in a config."""
    if isinstance(value, str):
        return [(prefix, value)]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _texts(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _texts(v, f"{prefix}[{i}]")]
    return []


def substitute(config: dict[str, Any], urls: dict[str, str]) -> dict[str, Any]:
    """The config with each placeholder replaced by its base URL, textually
    over the whole config, as WebArena's `generate_test_data.py` does."""
    raw = json.dumps(config)
    for name, url in urls.items():
        raw = raw.replace(name, json.dumps(url.rstrip("/"))[1:-1])
    return json.loads(raw)


# ---------------------------------------------------------------- the judge


def site_base_url(site: Site, page: Page) -> str:
    """The base URL of the site serving this episode's page, which stands for
    the placeholders in `on_site`."""
    by_page = getattr(site, "_by_page", None)  # an AppSite: one leased instance per page
    if isinstance(by_page, dict) and page in by_page:
        return by_page[page].url("/").rstrip("/")
    url = getattr(site, "url", None)
    if callable(url):
        return str(url("/")).rstrip("/")
    raise ValueError(f"site {site.name!r} does not say its base URL, so {type(site).__name__} cannot resolve on_site")


async def evaluate(config: dict[str, Any], page: Page, answer: str, final_url: str, llm: LLMSettings) -> Verdict:
    """Score an ended episode as WebArena's `evaluator_router` would: the
    product of the `eval_types` evaluators' scores; passed when it is 1."""
    tid = config.get("task_id", "?")
    asker: list[AskLLM] = []

    def ask() -> AskLLM:
        if not asker:
            asker.append(_ASK_OVERRIDE or llm.ask())
        return asker[0]

    score, notes = 1.0, []
    for i, kind in enumerate(config["eval"]["eval_types"]):
        try:
            if kind == "string_match":
                s = await string_score(config, answer, ask)
            elif kind == "url_match":  # the page's URL now: a program_html before it may have moved it
                ev, url = config["eval"], page.url if page is not None else final_url
                s = url_score(ev["reference_url"], url, ev.get("url_note", "GOLD in PRED"))
            else:
                s = await program_html_score(config, page)
        except Exception as e:  # noqa: BLE001 - the verdict names the task and the evaluator
            return Verdict(passed=False, score=0.0, reason=f"webarena task {tid}: eval.eval_types[{i}] {kind}: "
                           f"{_first_line(e)}")
        score *= s.value
        notes.append(f"{kind} {s.value:g} ({'; '.join(s.notes)})")
    return Verdict(passed=score == 1.0, score=score, reason=f"webarena task {tid}: score {score:g}: " + " · ".join(notes))


@register_judge("webarena")
async def webarena(
    ctx: JudgeContext,
    config: dict[str, Any],
    on_site: list[str] | None = None,
    llm: dict[str, str] | None = None,
) -> Verdict:
    """WebArena's evaluators on the ended episode. `config`: the WebArena
    task config (task_id, intent, eval). `on_site`: placeholders standing for
    this episode's site. `llm`: base_url, model, api_key_env for fuzzy_match
    and ua_match (default: the environment, see LLMSettings)."""
    try:
        check_config(config)
        if on_site:
            config = substitute(config, {name: site_base_url(ctx.site, ctx.page) for name in on_site})
        _check_placeholders(config.get("task_id", "?"), config, set())
    except (WebArenaConfigError, ValueError) as e:
        return Verdict(passed=False, score=0.0, reason=f"webarena {e}")
    final_url = ctx.page.url if ctx.page is not None and not ctx.page.is_closed() else ctx.final_url
    return await evaluate(config, ctx.page, ctx.answer or "", final_url, LLMSettings(**(llm or {})))


# ---------------------------------------------------------------- a WebArena deployment as a site


@register_site
class WebArenaSite(Site):
    """A site already running elsewhere (a WebArena deployment): the task's
    start URL is absolute, and its login is a Playwright storage state file
    (`params.storage_state`, WebArena's `.auth/*.json`), read relative to the
    working directory. It keeps no state synth can read: its tasks are judged
    by what the page shows (the `webarena` judge)."""

    name = "webarena"

    async def setup(self, page: Page, task: Task) -> Setup:
        state = task.params.get("storage_state")
        if state and task.params.get("require_login", True):
            path = Path(state)
            if not path.is_file():
                raise FileNotFoundError(f"webarena task {task.template_id}: storage_state {state} not found "
                                        f"(WebArena's auto_login.py writes it)")
            saved = json.loads(path.read_text())
            if saved.get("cookies"):
                await page.context.add_cookies(saved["cookies"])
        if not task.start_url:
            raise ValueError(f"webarena task {task.template_id}: no start_url")
        await page.goto(task.start_url, wait_until="load")
        return Setup(instruction=task.instruction or "")
