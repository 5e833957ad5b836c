"""Solvers for the Datasette templates (apps/datasette/templates).

Each reads only the instruction and the pages, and acts only through
BrowserEnv as a person uses Datasette: the table links of the database page,
the search box, the filter form, facet links, column headers (sorting), the
foreign key links of a table's rows, a row page's "Links from other tables",
and the custom SQL editor. No typed URLs; answers are read off the page.

Datasette's table pages are a plain <table>; in the snapshot a row's cells
are siblings, so `table_rows` puts them back into rows: each cell under its
column's header (by position), a new row wherever the columns start over.
"""

from __future__ import annotations

import datetime as dt
import re

from synth import toolkit
from synth.env import BrowserEnv
from synth.schema import Element, Observation
from synth.solver import register_solver

ROWS = re.compile(r"(\d[\d,]*) rows?\b")


# ---------------------------------------------------------------- reading pages


def table_rows(obs: Observation) -> list[dict[str, list[Element]]]:
    """The rows of a table page's table: each a mapping from column name to
    the elements in that cell (a link, a foreign key's label link and its id,
    or the cell itself)."""
    headers: list[tuple[str, Element]] = []
    for i, el in enumerate(obs.elements[:-1]):
        nxt = obs.elements[i + 1]
        if el.role == "link" and "dropdown-menu-icon" in nxt.html_class.split():
            headers.append((re.sub(r"\s*[▲▼]$", "", el.name), el))
    if not headers:
        return []
    starts = [h.box.x - 6 for _, h in headers]
    last = obs.elements.index(headers[-1][1]) + 1  # its menu icon
    rows: list[dict[str, list[Element]]] = []
    previous = -1
    for el in obs.elements[last + 1:]:
        if el.parent != headers[0][1].parent:
            continue
        if el.role not in ("link", "cell", "text") or el.name == "Next page":
            break  # past the table: pagination, the export form, the schema
        column = max((i for i, s in enumerate(starts) if s <= el.box.x), default=0)
        # cells come in column order: going back to an earlier column (or the
        # first one again) starts the next row
        if not rows or column < previous or column == previous == 0:
            rows.append({})
        previous = column
        rows[-1].setdefault(headers[column][0], []).append(el)
    return rows


def cell(row: dict[str, list[Element]], column: str) -> Element:
    """A row's cell (or, for a key column, its link)."""
    if column not in row:
        raise LookupError(f"no {column!r} in the row ({', '.join(row)})")
    return row[column][0]


def find_row(obs: Observation, column: str, text: str) -> dict[str, list[Element]]:
    """The first row whose `column` shows `text`."""
    for row in table_rows(obs):
        if column in row and cell(row, column).name == text:
            return row
    raise LookupError(f"no row with {column} = {text!r} on {obs.url}")


def row_page(obs: Observation) -> dict[str, str]:
    """A row page's fields: column name -> value."""
    heads = [e for e in obs.elements if e.role == "columnheader"]
    cells = [e for e in obs.elements if e.role == "cell"]
    return {h.name: c.name for h, c in zip(heads, cells)}


def heading_count(obs: Observation) -> int:
    """The row count a table page states above its table ("12 rows where ...")."""
    for el in obs.find_all(role="heading"):
        m = ROWS.match(el.name)
        if m:
            return int(m[1].replace(",", ""))
    raise LookupError(f"no row count on {obs.url}")


def iso(day: str) -> str:
    """"May 4, 2023" -> "2023-05-04", as the tables show dates."""
    return dt.datetime.strptime(day, "%B %d, %Y").date().isoformat()


# ---------------------------------------------------------------- acting


async def open_table(env: BrowserEnv, obs: Observation, table: str) -> Observation:
    """From the database page, the table's link."""
    return await env.click(obs.find(table, role="link"))


async def apply_filter(env: BrowserEnv, obs: Observation, column: str, op: str, value: str) -> Observation:
    """Fill the filter form's empty (last) row: column, operator, value; Apply."""
    obs = await env.select(obs.find_all(role="combobox")[-2 - _sort_selects(obs)], column)
    if op != "=":
        obs = await env.select(obs.find_all(role="combobox")[-1 - _sort_selects(obs)], op)
    obs = await toolkit.fill(env, obs.find_all(role="textbox", html_class="filter-value")[-1], value)
    return await env.click(obs.find("Apply", role="button"))


def _sort_selects(obs: Observation) -> int:
    """Comboboxes after the filter rows (none on a wide screen: Datasette
    shows its sort select only on small ones)."""
    boxes = obs.find_all(role="combobox")
    value = obs.find_all(role="textbox", html_class="filter-value")
    if not value:
        return 0
    at = obs.elements.index(value[-1])
    return sum(1 for b in boxes if obs.elements.index(b) > at)


async def sort_by(env: BrowserEnv, obs: Observation, column: str, descending: bool) -> Observation:
    """Click the column's header: once ascending, again descending."""
    obs = await env.click(_header(obs, column))
    if descending:
        obs = await env.click(_header(obs, column))
    return obs


def _header(obs: Observation, column: str) -> Element:
    for i, el in enumerate(obs.elements[:-1]):
        if (el.role == "link" and re.sub(r"\s*[▲▼]$", "", el.name) == column
                and "dropdown-menu-icon" in obs.elements[i + 1].html_class.split()):
            return el
    raise LookupError(f"no column {column!r} on {obs.url}")


async def facet(env: BrowserEnv, obs: Observation, value: str) -> Observation:
    """Click a facet value (the link in a facet's list)."""
    for el in obs.find_all(value, role="link"):
        parent = obs.element(el.parent) if el.parent is not None else None
        if parent is not None and parent.role == "listitem":
            return await env.click(el)
    raise LookupError(f"no facet value {value!r} on {obs.url}")


async def open_restaurant(env: BrowserEnv, obs: Observation, name: str) -> Observation:
    """Search the restaurants table for the name; the restaurant's row page."""
    obs = await open_table(env, obs, "restaurants")
    obs = await toolkit.search(env, obs, name)
    return await env.click(cell(find_row(obs, "name", name), "id"))


async def inspections_of(env: BrowserEnv, obs: Observation, name: str) -> Observation:
    """The restaurant's row page, then its inspections (Links from other tables)."""
    obs = await open_restaurant(env, obs, name)
    item = obs.find_all("from restaurant_id in inspections", role="listitem", exact=False)[0]
    return await env.click(toolkit.after(obs, item, role="link"))


async def inspection_row(env: BrowserEnv, obs: Observation, name: str, day: str) -> tuple[Observation, dict]:
    obs = await inspections_of(env, obs, name)
    return obs, find_row(obs, "date", iso(day))


# ---------------------------------------------------------------- solvers


@register_solver("datasette.restaurant-phone")
async def restaurant_phone(env: BrowserEnv, obs: Observation) -> None:
    name = toolkit.parse(r"What is the phone number of the restaurant (.+)\? Answer with the number as listed\.",
                         env.instruction)[1]
    obs = await open_table(env, obs, "restaurants")
    obs = await toolkit.search(env, obs, name)
    await env.submit_answer(cell(find_row(obs, "name", name), "phone").name)


@register_solver("datasette.neighbourhood-population")
async def neighbourhood_population(env: BrowserEnv, obs: Observation) -> None:
    name = toolkit.parse(r"What is the population of the neighbourhood the restaurant (.+) is in\? "
                         r"Answer with the number\.", env.instruction)[1]
    obs = await open_table(env, obs, "restaurants")
    obs = await toolkit.search(env, obs, name)
    obs = await env.click(cell(find_row(obs, "name", name), "neighbourhood_id"))
    await env.submit_answer(row_page(obs)["population"])


@register_solver("datasette.inspection-score")
async def inspection_score(env: BrowserEnv, obs: Observation) -> None:
    name, day = toolkit.parse(r"What score did (.+) receive at its inspection on (\w+ \d+, \d{4})\? "
                              r"Answer with the score\.", env.instruction).groups()
    obs, row = await inspection_row(env, obs, name, day)
    await env.submit_answer(cell(row, "score").name)


@register_solver("datasette.inspector-badge")
async def inspector_badge(env: BrowserEnv, obs: Observation) -> None:
    name, day = toolkit.parse(r"What is the badge number of the inspector who inspected (.+) on (\w+ \d+, \d{4})\? "
                              r"Answer with the badge number\.", env.instruction).groups()
    obs, row = await inspection_row(env, obs, name, day)
    obs = await env.click(cell(row, "inspector_id"))
    await env.submit_answer(row_page(obs)["badge"])


async def open_inspection(env: BrowserEnv, obs: Observation, name: str, day: str) -> Observation:
    """The inspection's row page (from the restaurant's inspections)."""
    obs, row = await inspection_row(env, obs, name, day)
    return await env.click(cell(row, "id"))


def _violations_link(obs: Observation) -> Element | None:
    items = obs.find_all("from inspection_id in violations", role="listitem", exact=False)
    return toolkit.after(obs, items[0], role="link") if items else None


@register_solver("datasette.violation-count")
async def violation_count(env: BrowserEnv, obs: Observation) -> None:
    name, day = toolkit.parse(r"How many violations were recorded at the inspection of (.+) on (\w+ \d+, \d{4})\? "
                              r"Answer with a number\.", env.instruction).groups()
    obs = await open_inspection(env, obs, name, day)
    link = _violations_link(obs)
    await env.submit_answer(ROWS.match(link.name)[1] if link is not None else "0")


@register_solver("datasette.high-risk-violation")
async def high_risk_violation(env: BrowserEnv, obs: Observation) -> None:
    day, name = toolkit.parse(r"At its inspection on (\w+ \d+, \d{4}), (.+) was cited for exactly one high-risk "
                              r"violation\. What was it\? Answer with the violation's description\.",
                              env.instruction).groups()
    obs = await open_inspection(env, obs, name, day)
    obs = await env.click(_violations_link(obs))
    high = [r for r in table_rows(obs) if cell(r, "risk").name == "High"]
    if len(high) != 1:
        raise LookupError(f"{len(high)} high-risk violations at that inspection")
    await env.submit_answer(cell(high[0], "code").name)


ORDERS = {
    "number of seats, fewest first": ("seats", False),
    "number of seats, most first": ("seats", True),
    "opening date, oldest first": ("opened", False),
    "opening date, newest first": ("opened", True),
    "name, from Z to A": ("name", True),
}


@register_solver("datasette.filter-sort")
async def filter_sort(env: BrowserEnv, obs: Observation) -> None:
    cuisine, order = toolkit.parse(r"In the restaurants table, show only the restaurants whose cuisine is (.+), "
                                   r"sorted by (.+)\.", env.instruction).groups()
    column, descending = ORDERS[order]
    obs = await open_table(env, obs, "restaurants")
    obs = await apply_filter(env, obs, "cuisine", "=", cuisine)
    if column == "name":  # already sorted by name (ascending): one click makes it descending
        obs = await env.click(_header(obs, column))
    else:
        obs = await sort_by(env, obs, column, descending)
    await env.done()


@register_solver("datasette.cuisine-count")
async def cuisine_count(env: BrowserEnv, obs: Observation) -> None:
    hood, cuisine = toolkit.parse(r"How many restaurants in (.+) are listed with the cuisine (.+)\? "
                                  r"Answer with a number\.", env.instruction).groups()
    obs = await open_table(env, obs, "restaurants")
    obs = await facet(env, obs, hood)
    obs = await facet(env, obs, cuisine)
    await env.submit_answer(str(heading_count(obs)))


@register_solver("datasette.most-seats")
async def most_seats(env: BrowserEnv, obs: Observation) -> None:
    hood, cuisine, most = toolkit.parse(r"Which restaurant in (.+) with the cuisine (.+) has the (most|fewest) "
                                        r"seats\? Answer with its name\.", env.instruction).groups()
    obs = await open_table(env, obs, "restaurants")
    obs = await facet(env, obs, hood)
    obs = await facet(env, obs, cuisine)
    obs = await sort_by(env, obs, "seats", descending=most == "most")
    await env.submit_answer(cell(table_rows(obs)[0], "name").name)


@register_solver("datasette.inspector-lowest")
async def inspector_lowest(env: BrowserEnv, obs: Observation) -> None:
    inspector, month = toolkit.parse(r"Which restaurant did inspector (.+) give the lowest score to in (\w+ \d{4})\? "
                                     r"Answer with the restaurant's name\.", env.instruction).groups()
    prefix = dt.datetime.strptime(month, "%B %Y").strftime("%Y-%m")
    obs = await open_table(env, obs, "inspections")
    obs = await facet(env, obs, inspector)
    obs = await apply_filter(env, obs, "date", "starts with", prefix)
    obs = await sort_by(env, obs, "score", descending=False)
    await env.submit_answer(cell(table_rows(obs)[0], "restaurant_id").name)


@register_solver("datasette.average-score")
async def average_score(env: BrowserEnv, obs: Observation) -> None:
    name = toolkit.parse(r"What is the average score of all inspections of (.+), rounded to one decimal place\? "
                         r"Answer with the number\.", env.instruction)[1]
    quoted = "'" + name.replace("'", "''") + "'"
    sql = ("select round(avg(score), 1) from inspections where restaurant_id = "
           f"(select id from restaurants where name = {quoted})")
    editor = obs.find_all(role="textbox")[0]  # the custom SQL query editor (CodeMirror) on the database page
    await env.click(editor)
    await env.press("Control+A")
    await env.type(sql)
    obs = await env.click(env.obs.find("Run SQL", role="button"))
    cells = obs.find_all(role="cell")
    if len(cells) != 1:
        raise LookupError(f"the query gave {len(cells)} cells")
    await env.submit_answer(cells[0].name)
