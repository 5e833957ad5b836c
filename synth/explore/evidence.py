"""Evidence of what an exploration segment did, the judge it implies, and a
template-free instruction written from the same evidence.

The judge never comes from a model's words: it is the records that changed
(`state_match` on the site's JSON state), the view the segment reached
(`url_match`, or `state_match` on a site whose state *is* its view, as
Datasette's), or a value read from the page (`string_match`). The writer
mentions every field the judge checks and nothing else, so instruction and
judge agree by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from synth.schema import JudgeSpec

AUTO_FIELDS = re.compile(r"^(id|time|changetime|created|updated|modified|date|new|edited|is_default|unit_price"
                         r"|subtotal|total|score|num_comments|version|content_seed|site)$")
"""Fields a site fills in itself: a new record's judge does not ask for them."""

IDENTITY = ("id", "number", "name", "title", "summary", "label", "sku")


@dataclass
class Change:
    """One record that a segment added, changed or removed, in a list at `path`."""

    kind: str  # added | changed | removed | set (a scalar)
    path: str  # JSON path of the list (or the scalar)
    record: Any
    before: Any = None
    fields: list[str] = field(default_factory=list)
    """The fields the instruction names and the judge checks."""
    identity: dict[str, Any] = field(default_factory=dict)
    """The fields that say which record (kept by a change, named by the writer)."""


# ---------------------------------------------------------------- state diff


def _lists(state: Any, path: str = "$") -> dict[str, Any]:
    """Every list and top-level scalar of a state, by JSON path."""
    out: dict[str, Any] = {}
    if isinstance(state, dict):
        for k, v in state.items():
            p = f"{path}.{k}"
            if isinstance(v, dict):
                out.update(_lists(v, p))
            else:
                out[p] = v
    return out


def _key(record: Any) -> str:
    import json

    return json.dumps(record, sort_keys=True, default=str)


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    for k in IDENTITY:
        if k in record and record[k] not in (None, ""):
            return {k: record[k]}
    refs = {k: v for k, v in record.items() if k.endswith("_id") or k in ("target", "post", "ticket")}
    return refs or {k: v for k, v in list(record.items())[:1]}


def record_changes(before: Any, after: Any) -> list[Change]:
    """The records that differ between two site states: added, removed, or
    changed (an added and a removed record with the same identity), and
    changed top-level scalars. Lists are compared as multisets of records."""
    a, b = _lists(before), _lists(after)
    changes: list[Change] = []
    for path in [p for p in b if p in a] + [p for p in b if p not in a]:
        old, new = a.get(path), b[path]
        if isinstance(new, list) or isinstance(old, list):
            changes += _list_changes(path, old if isinstance(old, list) else [], new if isinstance(new, list) else [])
        elif old != new:
            changes.append(Change("set", path, new, old, fields=[path.rsplit(".", 1)[-1]]))
    return changes


def _list_changes(path: str, old: list[Any], new: list[Any]) -> list[Change]:
    old_keys = [_key(r) for r in old]
    new_keys = [_key(r) for r in new]
    gone = [r for r, k in zip(old, old_keys) if k not in new_keys]
    added = [r for r, k in zip(new, new_keys) if k not in old_keys]
    out: list[Change] = []
    for r in added:
        twin = next((g for g in gone if isinstance(g, dict) and isinstance(r, dict) and _identity(g) == _identity(r)
                     and _identity(r)), None)
        if twin is not None:
            gone.remove(twin)
            diff = [k for k in r if r.get(k) != twin.get(k)]
            out.append(Change("changed", path, r, twin, fields=diff, identity=_identity(r)))
        else:
            fields = [k for k in r if not AUTO_FIELDS.match(k)] if isinstance(r, dict) else []
            out.append(Change("added", path, r, fields=fields))
    out += [Change("removed", path, r, identity=_identity(r) if isinstance(r, dict) else {}) for r in gone]
    return out


def primary_change(changes: list[Change], typed: list[str]) -> Change | None:
    """The change a task is about: a changed record before an added one before
    a removed one before a scalar (totals and logs follow from records), and
    within a kind the first whose values the segment typed or selected."""
    order = {"changed": 0, "added": 1, "removed": 2, "set": 3}

    def rank(c: Change) -> tuple[int, int]:
        values = c.record.values() if isinstance(c.record, dict) else [c.record]
        traced = any(str(v).strip() and str(v).strip() in typed for v in values)
        log = bool(re.search(r"change|log|history|event", c.path))
        return order[c.kind] + 4 * log, 0 if traced else 1

    return min(changes, key=rank, default=None)


def trim_fields(change: Change, typed: list[str]) -> Change:
    """An added record's judge keeps what the segment chose: the fields with
    a typed or selected value and what names the record, else short text
    and small numbers (what a person would be asked for), never long bodies
    it did not type. A changed record keeps, where the segment typed or
    selected any of them, only the fields it did: a Trac wiki edit also
    moves the page's version and author, which nobody asks a person to set."""
    if change.kind == "changed" and isinstance(change.record, dict):
        chosen = [k for k in change.fields if _traced(change.record.get(k), typed)]
        change.fields = chosen or change.fields
        return change
    if change.kind != "added" or not isinstance(change.record, dict):
        return change
    typed_fields = [k for k in change.fields if str(change.record[k]).strip() in typed]
    if typed_fields:
        named = [k for k in _identity(change.record) if k in change.fields and k not in typed_fields]
        if not named:  # a record named by its own new id (a comment): say what it belongs to
            named = [k for k in change.fields if (k.endswith("_id") or k in ("post", "ticket", "target"))
                     and k not in typed_fields]
        chosen = named + typed_fields
    else:
        chosen = [k for k in change.fields if _describable(change.record[k])]
    change.fields = chosen[:5]
    return change


def _traced(v: Any, typed: list[str]) -> bool:
    """The value was typed or selected, or holds text that was (typed into a
    longer body, as a wiki page's text)."""
    text = str(v).strip() if v is not None else ""
    return bool(text) and (text in typed or any(len(t) >= 3 and t in text for t in typed))


def _describable(v: Any) -> bool:
    if isinstance(v, bool) or v is None:
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, str) and 0 < len(v) <= 40


# ---------------------------------------------------------------- judges


def state_judge(change: Change) -> JudgeSpec:
    """`state_match` on the changed records: the record with its identity and
    the fields the instruction names (added, changed), or none left with its
    identity (removed), or the scalar's new value."""
    if change.kind == "set":
        return JudgeSpec(type="state_match", path=change.path, expected=change.record, mode="any")
    items = f"{change.path}[*]"
    if not isinstance(change.record, dict):
        mode = "none" if change.kind == "removed" else "any"
        return JudgeSpec(type="state_match", path=items, expected=change.record, mode=mode)
    if change.kind == "removed":
        return JudgeSpec(type="state_match", path=items, expected=change.identity, mode="none")
    expected = {**change.identity, **{k: change.record[k] for k in change.fields}}
    return JudgeSpec(type="state_match", path=items, expected=expected, mode="any")


_DATES = re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}|\b\d{1,2}/\d{1,2}/(?:\d{4}|\d{2})\b|\b[A-Z][a-z]{2,8}\.? \d{1,2}, \d{4}\b")
_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%y", "%d/%m/%y", "%m/%d/%Y", "%d/%m/%Y", "%b %d, %Y", "%B %d, %Y")
NEAR_TODAY_DAYS = 62


def near_today(text: str, today: date | None = None, days: int = NEAR_TODAY_DAYS) -> str | None:
    """The first date in `text` within `days` of today (ISO, US m/d/y or
    d/m/y, 'Dec 3, 2026'), else None. A view or value dated near the day it
    was recorded is one the site computed from its clock (Trac's timeline
    form defaults `from` to today, its "Previous period" link to a month
    ago): the same actions reach another date tomorrow, so a judge that
    names it would fail every later replay."""
    today = today or date.today()
    for m in _DATES.finditer(unquote(text)):
        if any(abs((when - today).days) <= days for when in _readings(m.group(0).replace(".", ""))):
            return m.group(0)
    return None


def _readings(text: str) -> list[date]:
    """Every date `text` can be read as (12/03/26 is both 3 December and 12 March)."""
    out = []
    for fmt in _DATE_FORMATS:
        try:
            out.append(datetime.strptime(text, fmt).date())
        except ValueError:
            continue
    return out


def url_judge(url: str) -> JudgeSpec:
    """`url_match` on the final URL's path and query parameters."""
    parts = urlsplit(url)
    query: dict[str, list[str]] = {}
    for k, v in parse_qsl(parts.query, keep_blank_values=False):
        query.setdefault(k, []).append(v)
    spec: dict[str, Any] = {"path": unquote(parts.path) or "/"}
    if query:
        spec["query"] = {k: v[0] if len(v) == 1 else v for k, v in query.items()}
    return JudgeSpec(type="url_match", **spec)


def answer_judge(value: str, url: str) -> JudgeSpec:
    """The value read, on the page it was read from (an answer given from
    anywhere else is not grounded in the page: judge_eval's answer_ungrounded)."""
    return JudgeSpec(type="all_of", judges=[
        {"type": "string_match", "expected": value, "mode": "normalised"},
        {"type": "url_match", "path": unquote(urlsplit(url).path) or "/"},
    ])


@dataclass(frozen=True)
class Fact:
    """A value the page shows under a label: a row header and its cell
    (Trac's ticket fields), or a table cell under its column header in the
    row its first cell names."""

    label: str
    value: str
    row: str = ""


def facts(elements: list[Any]) -> list[Fact]:
    """The label/value pairs of a page's snapshot (`Observation.elements`)."""
    out: list[Fact] = []
    by_parent: dict[Any, list[Any]] = {}
    for e in elements:
        by_parent.setdefault(e.parent, []).append(e)
    headers = [e.name.strip() for e in elements if e.role == "columnheader"]
    row_keys: list[str] = []
    for siblings in by_parent.values():
        cells = [e for e in siblings if e.role in ("cell", "gridcell", "rowheader")]
        for a, b in zip(cells, cells[1:]):
            if a.role == "rowheader" and b.role == "cell" and _fact_value(b.name):
                out.append(Fact(a.name.strip().rstrip(":").strip(), b.name.strip()))
        data = [e for e in siblings if e.role in ("cell", "gridcell")]
        if headers and len(data) == len(headers) and _fact_value(data[0].name):
            row_keys.append(data[0].name.strip())
            for header, cell in list(zip(headers, data))[1:]:
                if header and _fact_value(cell.name):
                    out.append(Fact(header, cell.name.strip(), data[0].name.strip()))
    labels = [f.label for f in out if not f.row]
    # a row named twice, or a label shown twice, does not say which value is meant
    return [f for f in out if (row_keys.count(f.row) == 1 if f.row else labels.count(f.label) == 1)]


def _fact_value(text: str) -> bool:
    text = text.strip()
    return 0 < len(text) <= 40 and "\n" not in text


def write_question(fact: Fact, title: str) -> str:
    """'What is the priority of "#3 (Unhandled KeyError ...)"?'"""
    label = _field(fact.label.lower()) if fact.label.isupper() or fact.label.istitle() else _field(fact.label)
    label = label[:1].lower() + label[1:] if label[:2] != label[:2].upper() else label
    of = f'{_value(fact.row)} on the "{title}" page' if fact.row else f'"{title}"'
    return f"What is the {label} of {of}?"


# ---------------------------------------------------------------- the template-free writer


def _singular(word: str) -> str:
    word = word.replace("_", " ")
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("sses") or word.endswith("ches"):
        return word[:-2]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def entity(path: str) -> tuple[str, str]:
    """('ticket', '') for $.tickets; ('item', 'the cart') for $.cart.items."""
    keys = [k for k in path.removeprefix("$").split(".") if k]
    noun = _singular(keys[-1]) if keys else "record"
    where = f"the {_singular(keys[-2])}" if len(keys) > 1 else ""
    return noun, where


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:g}" if isinstance(v, float) else str(v)
    text = str(v).strip().replace("\n", " ")
    return f'"{text}"' if len(text) > 24 or " " in text else text or '""'  # whole: the judge checks all of it


def _name(noun: str, identity: dict[str, Any]) -> str:
    if not identity:
        return f"the {noun}"
    (k, v), *rest = identity.items()
    if k in ("id", "number") and isinstance(v, int):
        return f"{noun} #{v}"
    if k.endswith("_id") or rest:
        ids = ", ".join(f"{a.replace('_', ' ')} {_value(b)}" for a, b in identity.items())
        return f"the {noun} with {ids}"
    return f"the {noun} {_value(v)}"


def _field(k: str) -> str:
    return {"qty": "quantity"}.get(k, k.replace("_", " "))


def write_change(change: Change) -> str:
    """'Set the priority of ticket #12 to major', 'Add an item to the cart
    with name "X", color Blue and quantity 2', 'Remove the post #4'."""
    noun, where = entity(change.path)
    if change.kind == "set":
        return f"Set the {_field(change.path.rsplit('.', 1)[-1])} to {_value(change.record)}"
    if not isinstance(change.record, dict):
        verb = "Remove" if change.kind == "removed" else "Add"
        return f"{verb} {_value(change.record)} {'from' if verb == 'Remove' else 'to'} the {_field(noun)}s"
    if change.kind == "removed":
        return f"Remove {_name(noun, change.identity)}" + (f" from {where}" if where else "")
    pairs = [(_field(k), _value(change.record[k])) for k in change.fields]
    if change.kind == "changed":
        first, *rest = pairs or [("record", "")]
        text = f"Set the {first[0]} of {_name(noun, change.identity)} to {first[1]}"
        return text + "".join(f"{' and' if i == len(rest) - 1 else ','} its {k} to {v}" for i, (k, v) in enumerate(rest))
    article = "an" if noun[:1] in "aeiou" else "a"
    text = f"Add {article} {noun}" + (f" to {where}" if where else "")
    if pairs:
        listed = ", ".join(f"{k} {v}" for k, v in pairs[:-1])
        text += " with " + (f"{listed} and " if listed else "") + f"{pairs[-1][0]} {pairs[-1][1]}"
    return text


def _view_phrase(path: str, query: list[tuple[str, str]], title: str) -> str:
    parts = [p for p in unquote(path).split("/") if p]
    where = f'the "{title}" page' if title else ("the home page" if not parts else f"the {' / '.join(parts)} page")
    conditions = []
    for k, v in query:
        if k in ("_sort", "sort", "order"):
            conditions.append(f"sorted by {v}")
        elif k in ("_sort_desc", "desc"):
            conditions.append(f"sorted by {v} descending" if k == "_sort_desc" else "in descending order")
        elif k in SEARCH_KEYS:
            conditions.append(f"searching for {_value(v)}")
        elif k in ("page", "_next", "_size", "_facet"):
            continue
        else:
            column, _, op = k.partition("__")
            conditions.append(f"where {_field(column)} {'is' if op in ('', 'exact') else op} {_value(v)}")
    return where + (" " + ", ".join(conditions) if conditions else "")


SEARCH_KEYS = ("_search", "q", "search", "query")


def _open(path: str, query: list[tuple[str, str]], title: str) -> str:
    title = title.replace('"', "").strip()
    searched = [v for k, v in query if k in SEARCH_KEYS]
    if searched and len(query) == 1:
        return f"Search for {_value(searched[0])}"
    return "Open " + _view_phrase(path, query, title)


def write_view(url: str, title: str = "") -> str:
    """'Open the "Laptops" page', 'Search for Novabyte', 'Open the city /
    restaurants page where cuisine is Thai'."""
    parts = urlsplit(url)
    return _open(parts.path, parse_qsl(parts.query), title)


def write_view_state(state: dict[str, Any], title: str = "") -> str:
    """The same for a site whose state is its view (path and canonical query)."""
    query = parse_qsl(str(state.get("query", "")))
    return _open(str(state.get("path", "/")), query, title)


def write_answer(question: str) -> str:
    return question
