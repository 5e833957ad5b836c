"""Programmatic solvers for MiniWoB++ tasks.

Each reads the instruction (MiniWoB's utterance) and the compact snapshot, and
acts only through BrowserEnv, so every click and keystroke is recorded. They
are checked against MiniWoB's own reward code (tests/test_solvers_miniwob.py).
"""

from __future__ import annotations

import calendar
import re
from typing import Callable

from synth.solver import register_solver
from synth.env import BrowserEnv
from synth.schema import Element, Observation

Finder = Callable[[Observation], Element]


def quoted(instruction: str) -> list[str]:
    """The double-quoted strings of an instruction, in order."""
    return re.findall(r'"([^"]*)"', instruction)


def parse(pattern: str, instruction: str) -> re.Match[str]:
    """Match the whole instruction against `pattern`, or say clearly that it does not."""
    m = re.fullmatch(pattern, instruction.strip())
    if m is None:
        raise ValueError(f"instruction {instruction!r} does not match {pattern!r}")
    return m


def after(obs: Observation, anchor: Element, **criteria) -> Element:
    """The first element after `anchor` in document order matching `criteria`
    (find_all's): e.g. the star icon of the email whose sender is `anchor`."""
    later = [e for e in obs.find_all(**criteria) if obs.elements.index(e) > obs.elements.index(anchor)]
    if not later:
        raise LookupError(f"no element matches {criteria} after [{anchor.id}] {anchor.name!r}")
    return later[0]


def following(name: str, name_class: str, **criteria) -> Finder:
    """A finder for the first element matching `criteria` after the element named
    `name` of class `name_class`: e.g. the star icon of the email from "Cora"."""
    return lambda obs: after(obs, obs.find(name, html_class=name_class), **criteria)


def before(obs: Observation, anchor: Element, **criteria) -> Element:
    """The last element before `anchor` in document order matching `criteria`."""
    earlier = [e for e in obs.find_all(**criteria) if obs.elements.index(e) < obs.elements.index(anchor)]
    if not earlier:
        raise LookupError(f"no element matches {criteria} before [{anchor.id}] {anchor.name!r}")
    return earlier[-1]


async def appear(env: BrowserEnv, find: Finder, timeout_ms: int = 3000, poll_ms: int = 100) -> Element:
    """Wait (re-observing) until `find` succeeds: for delayed content and menus."""
    for _ in range(timeout_ms // poll_ms):
        try:
            return find(env.obs)
        except LookupError:
            await env.wait(poll_ms)
    return find(env.obs)


async def vanish(env: BrowserEnv, criteria: dict, timeout_ms: int = 3000, poll_ms: int = 100) -> Observation:
    """Wait (re-observing) until no element matches `criteria`: a popup closing."""
    for _ in range(timeout_ms // poll_ms):
        if not env.obs.find_all(**criteria):
            break
        await env.wait(poll_ms)
    return env.obs


async def steady(env: BrowserEnv, find: Finder, timeout_ms: int = 3000, poll_ms: int = 60) -> Element:
    """Wait until `find` succeeds and its element has stopped moving (an animation ended)."""
    last = None
    for _ in range(timeout_ms // poll_ms):
        await env.wait(poll_ms)
        try:
            el = find(env.obs)
        except LookupError:
            last = None
            continue
        if last is not None and el.box == last.box:
            return el
        last = el
    return find(env.obs)


def on_screen(obs: Observation, el: Element) -> bool:
    """Whether the element's centre is in the observed area (clickable without scrolling)."""
    return obs.area.contains(*el.box.center)


def by_id(element_id: int) -> Finder:
    """A finder for one element by its snapshot id (stable within a page)."""

    def find(obs: Observation) -> Element:
        el = obs.element(element_id)
        if el is None:
            raise LookupError(f"element [{element_id}] is not shown")
        return el

    return find


async def point_and_click(env: BrowserEnv, icon: Element) -> Observation:
    """Point at an icon, then click it once its hover image has loaded (until it
    has, the icon collapses under the pointer and the click misses it)."""
    await env.hover(icon)
    return await env.click(await steady(env, by_id(icon.id)))


async def fill(env: BrowserEnv, field: Element, text: str) -> Observation:
    """Click into a text field and type, as a person would."""
    await env.click(field)
    return await env.type(text)


@register_solver("miniwob.click-button")
async def click_button(env: BrowserEnv, obs: Observation) -> None:
    """click-button: click the button the instruction names."""
    (label,) = quoted(env.instruction)
    await env.click(obs.find(label, role="button"))


@register_solver("miniwob.click-link")
async def click_link(env: BrowserEnv, obs: Observation) -> None:
    """click-link: click the link (a highlighted word) the instruction quotes."""
    word = parse(r'Click on the link "(.+)"\.', env.instruction)[1]
    await env.click(obs.find(word, html_class="alink"))


@register_solver("miniwob.click-dialog")
async def click_dialog(env: BrowserEnv, obs: Observation) -> None:
    """click-dialog: close the dialog with its "x" button."""
    parse(r'Close the dialog box by clicking the "x"\.', env.instruction)
    await env.click(obs.find("Close", role="button"))


@register_solver("miniwob.click-test-2")
async def click_test_2(env: BrowserEnv, obs: Observation) -> None:
    """click-test-2: click the named one of two buttons."""
    label = parse(r"Click button (\w+)\.", env.instruction)[1]
    await env.click(obs.find(label, role="button"))


@register_solver("miniwob.focus-text")
async def focus_text(env: BrowserEnv, obs: Observation) -> None:
    """focus-text: click into the text box."""
    parse(r"Focus into the textbox\.", env.instruction)
    await env.click(obs.find(role="textbox"))


@register_solver("miniwob.click-option")
async def click_option(env: BrowserEnv, obs: Observation) -> None:
    """click-option: pick the named radio button, then Submit."""
    label = parse(r"Select (.+) and click Submit\.", env.instruction)[1]
    await env.click(obs.find(label, role="radio"))
    await env.click(obs.find("Submit", role="button"))


@register_solver("miniwob.click-tab")
async def click_tab(env: BrowserEnv, obs: Observation) -> None:
    """click-tab: click the named tab."""
    tab = parse(r"Click on (Tab #\d+)\.", env.instruction)[1]
    await env.click(obs.find(tab, role="tab"))


@register_solver("miniwob.click-button-sequence")
async def click_button_sequence(env: BrowserEnv, obs: Observation) -> None:
    """click-button-sequence: click two buttons in the order given."""
    first, second = parse(r"Click button (\w+), then click button (\w+)\.", env.instruction).groups()
    obs = await env.click(obs.find(first, role="button"))
    await env.click(obs.find(second, role="button"))


async def tick_and_submit(env: BrowserEnv, obs: Observation) -> None:
    """'Select a, b, c and click Submit.' (or 'nothing'): tick those boxes, Submit."""
    listed = parse(r"Select (.+) and click Submit\.", env.instruction)[1]
    names = [] if listed == "nothing" else listed.split(", ")
    for name in names:
        box = obs.find(name, role="checkbox")
        if not box.checked:
            obs = await env.click(box)
    await env.click(obs.find("Submit", role="button"))


@register_solver("miniwob.click-checkboxes")
async def click_checkboxes(env: BrowserEnv, obs: Observation) -> None:
    """click-checkboxes: tick the listed boxes, then Submit."""
    await tick_and_submit(env, obs)


@register_solver("miniwob.click-checkboxes-transfer")
async def click_checkboxes_transfer(env: BrowserEnv, obs: Observation) -> None:
    """click-checkboxes-transfer: click-checkboxes with a different number to tick."""
    await tick_and_submit(env, obs)


@register_solver("miniwob.login-user")
async def login_user(env: BrowserEnv, obs: Observation) -> None:
    """login-user: type the username and password, then Login."""
    user, password = parse(
        r'Enter the username "(.+)" and the password "(.+)" into the text fields and press login\.',
        env.instruction,
    ).groups()
    await fill(env, obs.find("Username", role="textbox"), user)
    await fill(env, obs.find("Password", role="textbox"), password)
    await env.click(obs.find("Login", role="button"))


@register_solver("miniwob.enter-text")
async def enter_text(env: BrowserEnv, obs: Observation) -> None:
    """enter-text: type the quoted text into the field, then Submit."""
    text = parse(r'Enter "(.+)" into the text field and press Submit\.', env.instruction)[1]
    await fill(env, obs.find(role="textbox"), text)
    await env.click(obs.find("Submit", role="button"))


@register_solver("miniwob.enter-text-2")
async def enter_text_2(env: BrowserEnv, obs: Observation) -> None:
    """enter-text-2: type the quoted text in the case asked for, then Submit."""
    text, case = parse(
        r'Type "(.+)" in all (upper|lower) case letters in the text input and press Submit\.', env.instruction
    ).groups()
    await fill(env, obs.find(role="textbox"), text.upper() if case == "upper" else text.lower())
    await env.click(obs.find("Submit", role="button"))


@register_solver("miniwob.enter-password")
async def enter_password(env: BrowserEnv, obs: Observation) -> None:
    """enter-password: type the password into both fields, then Submit."""
    password = parse(
        r'Enter the password "(.+)" into both text fields and press submit\.', env.instruction
    )[1]
    await fill(env, obs.find("Password", role="textbox"), password)
    await fill(env, obs.find("Verify password", role="textbox"), password)
    await env.click(obs.find("Submit", role="button"))


@register_solver("miniwob.enter-date")
async def enter_date(env: BrowserEnv, obs: Observation) -> None:
    """enter-date: type the date (mm/dd/yyyy) into the date field, then Submit."""
    date = parse(r"Enter (\d\d/\d\d/\d{4}) as the date and hit submit\.", env.instruction)[1]
    field = obs.find(role="date").box
    # Click the month part (the field's left end), so typing fills month, day, year in turn.
    await env.click(obs.normalise(field.x + 12, field.y + field.height / 2))
    await env.type(date)
    await env.click(obs.find("Submit", role="button"))


@register_solver("miniwob.choose-list")
async def choose_list(env: BrowserEnv, obs: Observation) -> None:
    """choose-list: pick the named entry of the drop-down list, then Submit."""
    item = parse(r"Select (.+) from the list and click Submit\.", env.instruction)[1]
    await env.select(obs.find(role="combobox"), item)
    await env.click(obs.find("Submit", role="button"))


@register_solver("miniwob.click-tab-2")
async def click_tab_2(env: BrowserEnv, obs: Observation) -> None:
    """click-tab-2: look through the tabs for the quoted link, click it."""
    word = parse(r'Switch between the tabs to find and click on the link "(.+)"\.', env.instruction)[1]
    for tab in obs.find_all(role="tab"):
        if obs.find_all(word, html_class="alink"):
            break
        if "ui-tabs-active" not in tab.html_class.split():
            obs = await env.click(tab)
    await env.click(obs.find(word, html_class="alink"))


@register_solver("miniwob.click-collapsible")
async def click_collapsible(env: BrowserEnv, obs: Observation) -> None:
    """click-collapsible: expand the section, then Submit once it has opened."""
    parse(r"Expand the section below and click submit\.", env.instruction)
    header = next((t for t in obs.find_all(role="tab") if t.name.startswith("Section #")), None)
    if header is None:
        raise LookupError("no 'Section #' header to expand")
    await env.click(header)
    await steady(env, lambda o: o.find(role="tabpanel"))
    await env.click(env.obs.find("Submit", role="button"))


@register_solver("miniwob.navigate-tree")
async def navigate_tree(env: BrowserEnv, obs: Observation) -> None:
    """navigate-tree: open folders (in order) until the named file or folder shows, click it."""
    name = parse(
        r'Navigate through the file tree\. Find and click on the folder or file named "(.+)"\.', env.instruction
    )[1]
    opened: set[int] = set()
    while True:
        items = obs.find_all(name, html_class="file") + obs.find_all(name, html_class="folder")
        if items:
            await env.click(min(items, key=obs.elements.index))
            return
        closed = [f for f in obs.find_all(html_class="folder") if f.id not in opened]
        if not closed:
            raise LookupError(f"{name!r} is in no folder of the tree")
        opened.add(closed[0].id)
        obs = await env.click(closed[0])


SOCIAL_ACTIONS = {
    "Reply": "reply", "Retweet": "retweet", "Like": "like", "Share via DM": "share",
    "Copy link to Tweet": "copy", "Embed Tweet": "embed", "Mute": "menu-user",
    "Block": "block-user", "Report": "report",
}
"""social-media: the button a label names (its html class); the last six are in the "more" menu."""


@register_solver("miniwob.social-media")
async def social_media(env: BrowserEnv, obs: Observation) -> None:
    """social-media: on a post by the given user, click the named button (opening "more" if needed)."""
    user, label = parse(r'For the user (@\S+), click on the "(.+)" button\.', env.instruction).groups()
    if label not in SOCIAL_ACTIONS:
        raise ValueError(f"unknown social-media button {label!r}")
    cls = SOCIAL_ACTIONS[label]
    icon = cls if cls in ("reply", "retweet", "like") else "more"
    # The icons are images that may still be loading when the page is first observed.
    obs = await point_and_click(env, await appear(env, following(user, "username", html_class=icon)))
    if icon == "more":
        await env.click(following(user, "username", html_class=cls)(obs))


@register_solver("miniwob.search-engine")
async def search_engine(env: BrowserEnv, obs: Observation) -> None:
    """search-engine: search for the name, page to the n-th result, click it."""
    query, nth = parse(
        r'Use the textbox to enter "(.+)" and press "Search", '
        r"then find and click the (\d+)(?:st|nd|rd|th) search result\.",
        env.instruction,
    ).groups()
    await fill(env, obs.find(role="textbox"), query)
    obs = await env.click(obs.find("Search", role="button"))
    page, index = divmod(int(nth) - 1, 3)  # three results a page
    if page > 0:
        obs = await env.click(obs.find(str(page + 1), html_class="page-link"))
    await env.click(obs.find_all(html_class="search-title")[index])


SUGGEST_DELAY_MS = 350


def suggestions(obs: Observation, typed: str) -> list[Element]:
    """The open autocomplete menu's items, once it has caught up with what was typed."""
    items = obs.find_all(html_class="ui-menu-item-wrapper")
    if not items or not all(typed.lower() in e.name.lower() for e in items):
        raise LookupError(f"no autocomplete menu for {typed!r} yet")
    return items


async def choose_suggestion(env: BrowserEnv, typed: str, wanted: Callable[[str], bool]) -> Observation:
    """After typing `typed` into an autocomplete field, click the first suggestion
    `wanted` accepts. If the menu runs off the screen before it, type on (more of
    that suggestion) until the narrowed menu shows it."""
    # The menu searches 300 ms after the last keystroke (jQuery UI's delay); a
    # slow typist may already have a menu for part of the text up until then.
    await env.wait(SUGGEST_DELAY_MS)
    await appear(env, lambda o: suggestions(o, typed)[0])
    items = suggestions(env.obs, typed)
    target = next((e for e in items if wanted(e.name)), None)
    if target is None:
        raise LookupError(f"no suggestion for {typed!r} fits: {[e.name for e in items]}")
    if not on_screen(env.obs, target):
        shown = sum(on_screen(env.obs, e) for e in items)
        names = [e.name.lower() for e in items]
        name = target.name
        at = name.lower().index(typed.lower())
        term = typed
        while [n for n in names if term.lower() in n].index(name.lower()) >= shown:
            term = name[at : at + len(term) + 1]
        await env.type(term[len(typed) :])
        await env.wait(SUGGEST_DELAY_MS)
        await appear(env, lambda o: suggestions(o, term)[0])
        target = env.obs.find(name, html_class="ui-menu-item-wrapper")
    return await env.click(target)


@register_solver("miniwob.use-autocomplete")
async def use_autocomplete(env: BrowserEnv, obs: Observation) -> None:
    """use-autocomplete: type the start, pick a suggestion with the right end, Submit."""
    start, end = parse(
        r'Enter an item that starts with "(.+?)"(?: and ends with "(.+)")?\.', env.instruction
    ).groups()
    await fill(env, obs.find(role="textbox"), start)
    obs = await choose_suggestion(env, start, lambda name: name.startswith(start) and name.endswith(end or ""))
    await env.click(obs.find("Submit", role="button"))


@register_solver("miniwob.email-inbox")
async def email_inbox(env: BrowserEnv, obs: Observation) -> None:
    """email-inbox: find the sender's email and reply to it, forward it, trash it or star it."""
    name, reply, forward, icon = parse(
        r'Find the email by (.+?) and (?:reply to them with the text "(.*)"|forward that email to (.+)'
        r"|click the (trash|star) icon to (?:delete it|mark it as important))\.",
        env.instruction,
    ).groups()
    if icon:
        # The icons are images that may still be loading when the page is first observed.
        await env.click(await appear(env, following(name, "email-sender", html_class=icon)))
        return
    obs = await env.click(obs.find(name, html_class="email-sender"))
    if reply is not None:
        obs = await env.click(obs.find("Reply"))
        await fill(env, obs.find(html_id="reply-text"), reply)
        await env.click(await appear(env, lambda o: o.find(html_id="send-reply")))
    else:
        obs = await env.click(obs.find("Forward"))
        await fill(env, obs.find(html_class="forward-sender"), forward)
        await env.click(await appear(env, lambda o: o.find(html_id="send-forward")))


async def pick_date(env: BrowserEnv, field: Element, month: int, day: int, year: int) -> Observation:
    """Open a jQuery UI date picker from its field, page to the month, click the day."""
    await env.click(field)
    # The picker fades in and is then moved into place: wait until it stands still.
    await steady(env, lambda o: o.find(html_class="ui-datepicker-month"))
    want = (year, month)
    for _ in range(24):
        obs = env.obs
        shown = (
            int(obs.find(html_class="ui-datepicker-year").name),
            list(calendar.month_name).index(obs.find(html_class="ui-datepicker-month").name),
        )
        if shown == want:
            break
        await env.click(obs.find(html_class="ui-datepicker-prev" if want < shown else "ui-datepicker-next"))
    else:
        raise LookupError(f"the date picker does not reach {month}/{year}")
    await env.click(obs.find(str(day), role="link", html_class="ui-state-default"))
    return await vanish(env, {"html_class": "ui-datepicker-month"})  # it fades out


@register_solver("miniwob.book-flight")
async def book_flight(env: BrowserEnv, obs: Observation) -> None:
    """book-flight: fill in from, to (via their suggestions) and the date, search, book the cheapest or shortest."""
    which, origin, destination, month, day, year = parse(
        r"Book the (cheapest|shortest) one-way flight from: (.+) to: (.+) on (\d+)/(\d+)/(\d{4})\.",
        env.instruction,
    ).groups()
    for field, place in (("flight-from", origin), ("flight-to", destination)):
        # `place` is a city ("Anvik, AK") or an airport code ("MOT") of "Anvik, AK (ANV)".
        await fill(env, env.obs.find(html_id=field), place)
        await choose_suggestion(env, place, lambda n, p=place: n.startswith(p + " (") or n.endswith(f"({p})"))
    obs = await pick_date(env, env.obs.find(html_id="datepicker"), int(month), int(day), int(year))
    obs = await env.click(obs.find("Search", role="button"))

    def cost(button: Element) -> int:
        """A flight's price, or its duration (shown above its Book button) in minutes."""
        if which == "cheapest":
            return int(parse(r"Book flight for \$(\d+)", button.name)[1])
        hours, minutes = parse(r"(\d+)h (\d+)m", before(obs, button, html_class="time-duration").name).groups()
        return int(hours) * 60 + int(minutes)

    buttons = obs.find_all(html_class="flight-price")
    if not buttons:
        raise LookupError("the search found no flights")
    await env.click(min(buttons, key=cost))


@register_solver("miniwob.choose-date")
async def choose_date(env: BrowserEnv, obs: Observation) -> None:
    """choose-date: pick the date in the date picker, then Submit."""
    month, day, year = parse(r"Select (\d+)/(\d+)/(\d{4}) as the date and hit submit\.", env.instruction).groups()
    obs = await pick_date(env, obs.find(html_id="datepicker"), int(month), int(day), int(year))
    await env.click(obs.find("Submit", role="button"))
