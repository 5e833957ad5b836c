"""Judge functions, a registry keyed by the name templates use.

A judge runs at episode end, while the page is still open, and returns a
Verdict. It is an async function `judge(ctx, **params)`; the parameters are the
judge spec's fields in the template (expected values):

    judge: {type: string_match, expected: "42", mode: normalised}

Parameters are typed and checked. Each judge's parameters are checked against
its signature and its type hints (pydantic: one TypeAdapter per parameter,
built from `inspect.signature` and the annotations): an unknown or missing
name, or a value of the wrong type, is an error that names the field
(`check_spec`). Templates check a judge when they load, for the fields written
literally, and again for every instantiated task, for the fields rendered from
slots (`"{{ product.id }}"` alone keeps the slot's type: an int stays an int);
`run_judge` checks once more, so a judge given a wrong type returns a failed
verdict saying why instead of crashing at episode end. A plugin's judge gets
the same checking from its own annotations; an unannotated parameter takes
anything.

Conversions: pydantic's lax mode (an int where a float is expected, "2" where
an int is), plus one of synth's: an **int (not a bool) where a string is
expected becomes its decimal text** (42 -> "42"). That one is lossless, and
it is what a template means by `expected: "{{ product.id }}"`. A float or a
bool where a string is expected is refused: their text is not what a template
means (19.9 is "$19.90" on the page, True is "yes" or "true"): format them in
the template (`"{{ product.price | money }}"`, `"{{ flag | string }}"`).

A package adds judges with `@register_judge("name")` in a module it declares
as a `synth.judges` entry point (see `synth.plugins`).
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import json
import re
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from typing import Annotated, Any, Awaitable, Callable, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from playwright.async_api import Page
from pydantic import BeforeValidator, TypeAdapter, ValidationError

from synth.plugins import Registry
from synth.schema import JudgeSpec, Step, Task, Verdict
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
    steps: list[Step] = field(default_factory=list)
    """The episode's recorded steps (judges that read the whole trajectory: llm_judge)."""
    instruction: str | None = None
    """The goal the agent was given (a site may set it at reset: MiniWoB's utterance)."""

    async def state(self) -> dict[str, Any]:
        return await self.site.state(self.page, self.task)


def register_judge(name: str) -> Callable[[JudgeFn], JudgeFn]:
    return JUDGES.decorator(name)


class JudgeParamError(ValueError):
    """A judge parameter of the wrong type. `field` is its place in the judge
    spec (`expected`, `query.page`, `judges[1].expected`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class _Param:
    annotation: Any
    adapter: TypeAdapter


def _int_as_text(value: Any) -> Any:
    return str(value) if type(value) is int else value


_TEXT = Annotated[str, BeforeValidator(_int_as_text)]


def _lenient(tp: Any) -> Any:
    """`tp` with every `str` in it taking an int as its text (see the module doc)."""
    if tp is str:
        return _TEXT
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if not args or origin is Literal:
        return tp
    if origin is Annotated:
        return Annotated[(_lenient(args[0]), *tp.__metadata__)]
    new = tuple(_lenient(a) for a in args)
    if new == args:
        return tp
    if origin in (typing.Union, types.UnionType):
        return typing.Union[new]
    try:
        return origin[new if len(new) > 1 else new[0]]
    except TypeError:
        return tp


def _resolve(fn: JudgeFn, name: str, annotation: Any) -> Any:
    """One parameter's type hint (a string under `from __future__ import
    annotations` is evaluated in the judge's module, parameter by parameter,
    so a context annotated with a TYPE_CHECKING-only import does not matter)."""
    if annotation is inspect.Parameter.empty:
        return Any
    if not isinstance(annotation, str):
        return annotation
    holder = types.SimpleNamespace(__annotations__={name: annotation})
    try:
        return typing.get_type_hints(holder, globalns=getattr(fn, "__globals__", {}), include_extras=True)[name]
    except Exception as e:  # noqa: BLE001 - any failure to resolve is the plugin's to fix
        raise TypeError(
            f"judge {getattr(fn, '__qualname__', fn)}: parameter {name}: its type hint {annotation!r} "
            f"cannot be resolved ({type(e).__name__}: {e})"
        ) from None


@functools.lru_cache(maxsize=None)
def judge_params(fn: JudgeFn) -> dict[str, _Param]:
    """The parameters a judge takes (all but the context), each with its type
    hint and the pydantic TypeAdapter that checks it."""
    out = {}
    for name, p in list(inspect.signature(fn).parameters.items())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        tp = _resolve(fn, name, p.annotation)
        out[name] = _Param(tp, TypeAdapter(_lenient(tp)))
    return out


def check_spec(
    spec: JudgeSpec,
    sources: dict[str, Any] | None = None,
    pending: Callable[[Any], bool] | None = None,
) -> JudgeSpec:
    """The spec with its parameters checked (and converted, see the module
    doc); ValueError if the judge is unknown or a name is missing or unknown,
    JudgeParamError (a ValueError) naming the field if a value's type is wrong.

    `pending(value)`: parameters it is true of are left unchecked (a template
    field still to be rendered from slots). `sources`: the parameters as the
    template wrote them, quoted in errors ("from '{{ product.id }}'")."""
    if spec.type not in JUDGES:
        raise ValueError(JUDGES.unknown(spec.type))
    fn = JUDGES[spec.type]
    params = judge_params(fn)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    unknown = sorted(set(spec.params) - set(params))
    if unknown and not takes_any:
        raise ValueError(
            f"judge {spec.type!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(params) or 'nothing'}"
        )
    missing = [
        n for n, p in list(inspect.signature(fn).parameters.items())[1:]
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and n not in spec.params
    ]
    if missing:
        raise ValueError(f"judge {spec.type!r} needs {', '.join(missing)}")
    sources = sources or {}
    checked = dict(spec.params)
    for name, value in spec.params.items():
        if name not in params or (pending is not None and pending(value)):
            continue
        try:
            checked[name] = params[name].adapter.validate_python(value)
        except ValidationError as e:
            raise _param_error(spec.type, name, params[name].annotation, value, sources.get(name), e) from None
    if spec.type == "all_of" and isinstance(checked.get("judges"), list):
        # each inner judge is checked as its own spec, also when the list as
        # a whole waits for slots (its literal fields are checked now)
        raw = sources.get("judges") if isinstance(sources.get("judges"), list) else []
        subs = []
        for i, sub in enumerate(checked["judges"]):
            if not isinstance(sub, dict):
                subs.append(sub)
                continue
            source = raw[i] if i < len(raw) and isinstance(raw[i], dict) else None
            try:
                if "type" not in sub:
                    raise ValueError("a judge needs a type")
                subs.append(check_spec(JudgeSpec.model_validate(sub), source, pending).model_dump())
            except JudgeParamError as e:
                raise JudgeParamError(f"judges[{i}].{e.field}", e.message) from None
            except ValueError as e:
                raise ValueError(f"judges[{i}]: {e}") from None
        checked["judges"] = subs
    return JudgeSpec.model_validate({"type": spec.type, **checked})


def _param_error(judge: str, name: str, annotation: Any, value: Any, source: Any, e: ValidationError) -> JudgeParamError:
    """The error of one parameter: the innermost wrong value (pydantic's
    deepest error; a union reports one per member), its type, and where the
    template wrote it."""
    best: tuple[list[str | int], Any, Any] = ([], value, source)
    for err in e.errors():
        path, leaf, src = [], value, source
        for token in err["loc"]:
            if isinstance(leaf, dict) and token in leaf:
                leaf = leaf[token]
                src = src.get(token) if isinstance(src, dict) else src
            elif isinstance(leaf, list) and isinstance(token, int) and -len(leaf) <= token < len(leaf):
                leaf = leaf[token]
                src = src[token] if isinstance(src, list) and -len(src) <= token < len(src) else src
            else:
                continue  # a union member's tag
            path.append(token)
        if len(path) > len(best[0]):
            best = (path, leaf, src)
    path, leaf, src = best
    field = name + "".join(f"[{t}]" if isinstance(t, int) else f".{t}" for t in path)
    shown = repr(leaf)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    what = "null" if leaf is None else type(leaf).__name__
    message = f"{judge} expects {describe_type(annotation)}" + (f" for {name}" if path else "")
    message += f", got {what} {shown}" if leaf is not None else ", got null"
    if isinstance(src, str) and "{" in src:
        message += f" from {json.dumps(src, ensure_ascii=False)}"
    if type(leaf) in (float, bool) and _mentions_str(annotation):
        message += " (format it as text in the template, e.g. with `| money` or `| string`)"
    return JudgeParamError(field, message)


def _mentions_str(tp: Any) -> bool:
    return tp is str or any(_mentions_str(a) for a in typing.get_args(tp))


_NAMES = {
    str: ("a string", "strings"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("a boolean", "booleans"),
    type(None): ("null", "nulls"),
}


def describe_type(tp: Any, plural: bool = False) -> str:
    """A type hint in words: `str | list[str]` -> "a string or a list of strings"."""
    if tp is Any:
        return "anything"
    if tp in _NAMES:
        return _NAMES[tp][plural]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return describe_type(args[0], plural)
    if origin is Literal:
        return ("one of " if len(args) > 1 else "") + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        some = [describe_type(a, plural) for a in args if a is not type(None)]
        text = " or ".join(some)
        return text + (", or null" if len(some) < len(args) else "")
    if origin in (list, tuple, set, frozenset, collections.abc.Sequence) and args:
        inner = _grouped(describe_type(args[0], True))
        return f"lists of {inner}" if plural else f"a list of {inner}"
    if origin in (dict, collections.abc.Mapping) and len(args) == 2:
        inner = f"from {_grouped(describe_type(args[0], True))} to {_grouped(describe_type(args[1], True))}"
        return f"mappings {inner}" if plural else f"a mapping {inner}"
    if origin in (dict, collections.abc.Mapping) or tp is dict:
        return "mappings" if plural else "a mapping"
    if origin in (list, tuple) or tp in (list, tuple):
        return "lists" if plural else "a list"
    return getattr(tp, "__name__", str(tp))


def _grouped(text: str) -> str:
    return f"({text})" if " or " in text else text


async def run_judge(spec: JudgeSpec, ctx: JudgeContext) -> Verdict:
    """Run the judge on the ended episode. Its parameters are checked first:
    a spec that does not fit its judge is a failed verdict saying why, never
    an exception at episode end."""
    try:
        spec = check_spec(spec)
    except (ValueError, TypeError) as e:
        return Verdict(passed=False, score=0.0, reason=f"judge {spec.type}: bad parameters: {e}")
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
    shown: bool = False,
    shown_with: list[str] | None = None,
) -> Verdict:
    """The agent's answer against the expected value(s).

    exact: equal after stripping whitespace. normalised: equal after
    `normalise_text`. must_include: every expected string occurs in the answer
    (normalised). A list for exact/normalised means any one may match.

    shown: the answer must also be shown on the page it was submitted from
    (the answer step's observation; the open page where no steps were
    recorded): its words, in order, among the page's words, both normalised.
    A right value given where the page does not show it was read elsewhere
    or guessed (a run that went to another row and kept the answer): as
    training data it teaches answering without evidence. WebArena's
    string_match reads the answer alone; this is its program_html on the
    last page, for the answer.

    shown_with (implies `shown`): that page must also show each of these (the
    entities the task names: a restaurant, a day). A small number is on many
    pages; shown beside what it is about, it was read where the evidence is,
    not off another restaurant's inspections or another cuisine's count."""
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
    reason = f"answer {got!r} {'matches' if ok else 'does not match'} {mode} {wanted!r}"
    if ok and (shown or shown_with):
        where, text = await _answer_page(ctx)
        page = f" {normalise_text(text)} "
        ok = f" {normalise_text(got)} " in page
        reason += f"; {'shown' if ok else 'not shown'} on the page it was submitted from ({where})"
        missing = [w for w in shown_with or [] if f" {normalise_text(w)} " not in page]
        if ok and missing:
            ok = False
            reason += f", which does not show {missing!r}"
    return Verdict(passed=ok, score=float(ok), reason=reason)


async def _answer_page(ctx: JudgeContext) -> tuple[str, str]:
    """The URL and text of the page the answer was submitted from."""
    from synth.quality.consistency import page_text

    answering = [s for s in ctx.steps if s.action.name == "answer"]
    if answering:
        return answering[-1].observation.url, page_text(answering[-1].observation)
    if ctx.page is None or ctx.page.is_closed():
        return ctx.final_url, ""
    return ctx.page.url, await ctx.page.inner_text("body")


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
    return Verdict(
        passed=ok, score=float(ok), reason=" & ".join(v.reason for v in verdicts),
        tokens_in=sum(v.tokens_in for v in verdicts), tokens_out=sum(v.tokens_out for v in verdicts),
        cost_usd=sum(v.cost_usd for v in verdicts),
    )
