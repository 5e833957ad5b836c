"""Judge functions, a registry keyed by the name templates use.

A judge runs at episode end, while the page is still open, and returns a
Verdict. It is an async function `judge(ctx, **params)`; the parameters are the
judge spec's fields in the template (expected values), checked against the
function's signature when templates load, so a typo fails before anything runs.

    judge: {type: string_match, expected: "42", mode: normalised}

A package adds judges with `@register_judge("name")` in a module it declares
as a `synth.judges` entry point (see `synth.plugins`).
"""

from __future__ import annotations

import inspect
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from playwright.async_api import Page

from synth.plugins import Registry
from synth.schema import JudgeSpec, Task, Verdict
from synth.sites.base import Site

JudgeFn = Callable[..., Awaitable[Verdict]]
JUDGES: Registry[JudgeFn] = Registry("judge", "synth.judges")


@dataclass
class JudgeContext:
    """What a judge may look at: the live page, the site, the task, the answer."""

    page: Page
    site: Site
    task: Task
    answer: str | None
    final_url: str

    async def state(self) -> dict[str, Any]:
        return await self.site.state(self.page, self.task)


def register_judge(name: str) -> Callable[[JudgeFn], JudgeFn]:
    return JUDGES.decorator(name)


def check_spec(spec: JudgeSpec) -> None:
    """Raise ValueError if the judge is unknown or its parameters do not fit."""
    if spec.type not in JUDGES:
        raise ValueError(JUDGES.unknown(spec.type))
    sig = inspect.signature(JUDGES[spec.type])
    accepted = [p for p in list(sig.parameters)[1:]]
    unknown = sorted(set(spec.params) - set(accepted))
    if unknown:
        raise ValueError(
            f"judge {spec.type!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(accepted) or 'nothing'}"
        )
    missing = [
        n
        for n, p in list(sig.parameters.items())[1:]
        if p.default is inspect.Parameter.empty and n not in spec.params
    ]
    if missing:
        raise ValueError(f"judge {spec.type!r} needs {', '.join(missing)}")
    if spec.type == "all_of":
        for sub in spec.params.get("judges", []):
            check_spec(JudgeSpec.model_validate(sub))


async def run_judge(spec: JudgeSpec, ctx: JudgeContext) -> Verdict:
    return await JUDGES[spec.type](ctx, **spec.params)


# ---------------------------------------------------------------- MiniWoB++


@register_judge("miniwob_reward")
async def miniwob_reward(ctx: JudgeContext, min_reward: float = 1.0) -> Verdict:
    """MiniWoB's own reward code decides. Reads the raw reward
    (WOB_RAW_REWARD_GLOBAL), not the time-discounted one: how fast a solver
    clicked says nothing about whether the trajectory is right."""
    from synth.sites.miniwob import reward_state

    s = await reward_state(ctx.page)
    if not s["done"]:
        return Verdict(passed=False, score=0.0, reason="MiniWoB episode did not end (no reward given)")
    passed = s["raw_reward"] >= min_reward
    why = f"MiniWoB raw reward {s['raw_reward']:g}" + (f" ({s['reason']})" if s["reason"] else "")
    return Verdict(passed=passed, score=s["raw_reward"], reason=why)


# ---------------------------------------------------------------- answers

_NUMBER = re.compile(r"^[-+]?[$€£¥]?\s*[-+]?\d[\d,\s]*(\.\d+)?%?$")
_EMBEDDED_NUMBER = re.compile(
    r"(?<![\w.,])[-+]?[$€£¥]?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?(?![\w]|[.,]\d)"
)
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}


def _canonical_number(text: str) -> str | None:
    """"$1,299.00" -> "1299", "0.50" -> "0.5"; None if it is not a number."""
    digits = re.sub(r"[$€£¥%,\s]", "", text)
    try:
        value = float(digits)
    except ValueError:
        return None
    if value == int(value):
        return str(int(value))
    return f"{value:.10g}"


def normalise_text(text: str) -> str:
    """Fold the differences that make exact matching reject right answers
    (WebArena's evaluators' known false negatives): case, accents, spacing,
    quotes, trailing punctuation, currency signs and thousands separators in
    numbers ("$0.00" == "0", "$1,299.00" == "1299", also inside a sentence:
    "It costs $1,299." == "it costs 1299"), number words up to twenty ("three"
    == "3"), "&" for "and", and plurals ("racing cars" == "Racing car",
    "categories" == "category", "boxes" == "box")."""
    t = unicodedata.normalize("NFKC", text)
    t = "".join(c for c in unicodedata.normalize("NFKD", t) if not unicodedata.combining(c))
    t = t.strip().lower()
    t = t.strip("\"'`“”‘’ ")
    t = re.sub(r"[.!?;:,]+$", "", t).strip()
    if _NUMBER.match(t):
        number = _canonical_number(t)
        if number is not None:
            return number
    t = _EMBEDDED_NUMBER.sub(lambda m: _canonical_number(m.group(0)) or m.group(0), t)
    t = t.replace("&", " and ")
    words = re.findall(r"[\w']+(?:\.\d+)?", t)
    return " ".join(_singular(_NUMBER_WORDS.get(w, w)) for w in words)


def _singular(word: str) -> str:
    if not word.isalpha() or len(word) <= 3:
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@register_judge("string_match")
async def string_match(
    ctx: JudgeContext,
    expected: str | list[str],
    mode: Literal["exact", "must_include", "normalised"] = "normalised",
) -> Verdict:
    """The agent's answer against the expected value(s).

    exact: equal after stripping whitespace. normalised: equal after
    `normalise_text`. must_include: every expected string occurs in the answer
    (normalised). A list for exact/normalised means any one may match."""
    if ctx.answer is None:
        return Verdict(passed=False, reason="no answer was given")
    wanted = [expected] if isinstance(expected, str) else list(expected)
    got = ctx.answer
    if mode == "exact":
        ok = got.strip() in [w.strip() for w in wanted]
    elif mode == "normalised":
        ok = normalise_text(got) in [normalise_text(w) for w in wanted]
    elif mode == "must_include":
        g = normalise_text(got)
        ok = all(normalise_text(w) in g for w in wanted)
    else:
        raise ValueError(f"string_match: unknown mode {mode!r} (exact, must_include, normalised)")
    return Verdict(
        passed=ok, score=float(ok), reason=f"answer {got!r} {'matches' if ok else 'does not match'} {mode} {wanted!r}"
    )


# ---------------------------------------------------------------- URLs


@register_judge("url_match")
async def url_match(
    ctx: JudgeContext,
    path: str | None = None,
    query: dict[str, str | list[str]] | None = None,
    ignore_extra_query: bool = True,
) -> Verdict:
    """The final URL's path equals `path` (not a prefix: /cart does not match
    /cart/checkout) and its query has the given parameters."""
    final = urlsplit(ctx.final_url)
    problems = []
    if path is not None and unquote(final.path).rstrip("/") != unquote(path).rstrip("/"):
        problems.append(f"path {final.path!r} != {path!r}")
    if query is not None:
        got = parse_qs(final.query)
        for key, want in query.items():
            want_list = [want] if isinstance(want, str) else list(want)
            if sorted(got.get(key, [])) != sorted(map(str, want_list)):
                problems.append(f"query {key}={got.get(key)} != {want_list}")
        if not ignore_extra_query:
            extra = set(got) - set(query)
            if extra:
                problems.append(f"unexpected query parameters {sorted(extra)}")
    ok = not problems
    return Verdict(passed=ok, score=float(ok), reason=f"final URL {ctx.final_url}: " + ("; ".join(problems) or "matches"))


# ---------------------------------------------------------------- site state


def json_path(doc: Any, path: str) -> list[Any]:
    """Values at a small JSONPath subset: `$.a.b`, `a[0]`, `a[*].b`, `a[-1]`."""
    tokens = re.findall(r"\.?([^.\[\]]+)|\[(\*|-?\d+)\]", path.removeprefix("$"))
    values = [doc]
    for key, index in tokens:
        nxt: list[Any] = []
        for v in values:
            if key:
                if isinstance(v, dict) and key in v:
                    nxt.append(v[key])
            elif index == "*":
                if isinstance(v, list):
                    nxt.extend(v)
                elif isinstance(v, dict):
                    nxt.extend(v.values())
            elif isinstance(v, list):
                i = int(index)
                if -len(v) <= i < len(v):
                    nxt.append(v[i])
        values = nxt
    return values


def _same(actual: Any, expected: Any) -> bool:
    """Whether a state value matches an expected one. A mapping matches when
    every expected key matches (other keys may exist); a list matches when
    every expected element matches some element of it; strings compare
    normalised (`normalise_text`), numbers within 1e-6, a number and a string
    by their normalised text ("1,299" == 1299); booleans only booleans."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _same(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and all(any(_same(a, e) for a in actual) for e in expected)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and actual == expected
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)):
        return abs(actual - expected) < 1e-6
    if isinstance(actual, (str, int, float)) and isinstance(expected, (str, int, float)):
        return normalise_text(str(actual)) == normalise_text(str(expected))
    return actual == expected


@register_judge("state_match")
async def state_match(
    ctx: JudgeContext,
    path: str,
    expected: Any = None,
    mode: Literal["any", "all", "none", "count"] = "any",
    count: int | None = None,
) -> Verdict:
    """The site's JSON state at `path` against `expected`: any value matches
    it, all values do (and there is at least one), none does, or (count)
    exactly `count` values exist (or, with `expected` too, exactly `count`
    values match it). Matching is `_same`: a mapping is a subset of keys, a
    list a subset of elements, strings compare normalised."""
    values = json_path(await ctx.state(), path)
    if mode == "count":
        if count is None:
            ok = len(values) == expected
        elif expected is None:
            ok = len(values) == count
        else:
            ok = sum(_same(v, expected) for v in values) == count
    elif mode == "any":
        ok = any(_same(v, expected) for v in values)
    elif mode == "all":
        ok = bool(values) and all(_same(v, expected) for v in values)
    elif mode == "none":
        ok = not any(_same(v, expected) for v in values)
    else:
        raise ValueError(f"state_match: unknown mode {mode!r} (any, all, none, count)")
    shown = values if len(values) <= 5 else values[:5] + ["..."]
    return Verdict(passed=ok, score=float(ok), reason=f"state {path} = {shown!r}; {mode} {expected!r}: {'ok' if ok else 'no'}")


@register_judge("all_of")
async def all_of(ctx: JudgeContext, judges: list[dict[str, Any]]) -> Verdict:
    """Every listed judge must pass; the reasons are joined."""
    verdicts = [await run_judge(JudgeSpec.model_validate(j), ctx) for j in judges]
    ok = all(v.passed for v in verdicts)
    return Verdict(passed=ok, score=float(ok), reason=" & ".join(v.reason for v in verdicts))
