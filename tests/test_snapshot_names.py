"""The snapshot's roles and names against Chromium's own accessibility tree,
node by node (CDP `Accessibility.getFullAXTree`, see synth.probe), on small
pages that each hold a case the snapshot once got wrong, and on MiniWoB++."""

from __future__ import annotations

import pytest
import pytest_asyncio

from synth.env import SNAPSHOT_JS, BrowserConfig, BrowserEnv
from synth.probe import BrowserNode, browser_nodes, is_interactive
from synth.schema import Element

URL = "http://synth.test/page.html"
AREA = {"x": 0, "y": 0, "width": 1280, "height": 720}


@pytest_asyncio.fixture
async def page(browser):
    context = await browser.new_context()
    await context.add_init_script(SNAPSHOT_JS)
    html: dict[str, str] = {}

    async def serve(route):
        await route.fulfill(status=200, content_type="text/html", body=html["body"])

    await context.route("http://synth.test/**", serve)
    p = await context.new_page()

    async def load(body: str):
        html["body"] = f"<!doctype html><html><head><title>t</title></head><body>{body}</body></html>"
        await p.goto(URL)
        return p

    p.load = load
    yield p
    await context.close()


async def snapshot(page) -> list[Element]:
    snap = await page.evaluate("(a) => window.__synth.snapshot(a, 1500, null)", AREA)
    return [Element.model_validate(e) for e in snap["elements"]]


async def compared(page, body: str) -> list[tuple[Element, BrowserNode]]:
    """Each element of the page's snapshot with Chromium's node for it."""
    await page.load(body)
    elements = await snapshot(page)
    nodes = await browser_nodes(page, [e.id for e in elements], listeners=True)
    return [(e, nodes[e.id]) for e in elements]


def by_id(pairs, html_id: str) -> tuple[Element, BrowserNode]:
    for el, node in pairs:
        if el.html_id == html_id:
            return el, node
    raise LookupError(f"#{html_id} is not in the snapshot")


def agrees(el: Element, node: BrowserNode) -> bool:
    return node.same_role(el.role) and (not node.name.strip() or node.same_name(el.name))


# ---------------------------------------------------------------- the cases


@pytest.mark.parametrize("kind", ["submit", "button", "reset"])
async def test_a_button_input_after_a_label_is_named_by_its_value(page, kind):
    pairs = await compared(page, f"""
        <label>Filter</label><input id="t" type="{kind}" value="Apply">
        <label>Size <select><option>S</option></select></label><input id="u" type="{kind}" value="Go">
    """)
    for html_id, expected in (("t", "Apply"), ("u", "Go")):
        el, node = by_id(pairs, html_id)
        assert (el.role, el.name) == ("button", expected)
        assert (node.role, node.name) == ("button", expected)
        assert el.name_from == "accname"


async def test_an_image_input_is_named_by_its_alt(page):
    pairs = await compared(page, '<input id="t" type="image" alt="Search" src="/none.png" width="24" height="24">')
    el, node = by_id(pairs, "t")
    assert (el.role, el.name) == (node.role, node.name) == ("button", "Search")


async def test_a_focusable_link_keeps_its_role_under_role_presentation(page):
    # MiniWoB++'s click-tab: <li role="tab"><a href="#tabs-1" role="presentation">Tab #1</a></li>
    pairs = await compared(page, """
        <ul role="tablist"><li role="tab" id="tab"><a id="t" href="#p" role="presentation">Tab #1</a></li></ul>
        <span id="s" role="presentation">plain</span>
    """)
    el, node = by_id(pairs, "t")
    assert (el.role, el.name) == (node.role, node.name) == ("link", "Tab #1")
    el, node = by_id(pairs, "tab")
    assert (el.role, el.name) == (node.role, node.name) == ("tab", "Tab #1")
    el, node = by_id(pairs, "s")
    assert node.same_role(el.role) and el.role != "presentation"


async def test_an_anchor_without_href_is_a_link_when_it_listens_for_clicks(page):
    pairs = await compared(page, """
        <a id="c">listens</a><a id="m">on mousedown</a><a id="p">by property</a><a id="n">does not</a>
        <a id="r">listened, then not</a><a id="k">keydown only</a>
        <script>
          const f = () => 0;
          document.getElementById("c").addEventListener("click", f);
          document.getElementById("m").addEventListener("mousedown", () => 0, {capture: true});
          document.getElementById("p").onclick = f;
          document.getElementById("r").addEventListener("click", f);
          document.getElementById("r").removeEventListener("click", f);
          document.getElementById("k").addEventListener("keydown", f);
        </script>
    """)
    expected = {"c": "link", "m": "link", "p": "link", "n": "generic", "r": "generic", "k": "generic"}
    for html_id, role in expected.items():
        el, node = by_id(pairs, html_id)
        assert node.same_role(role), (html_id, node)
        assert node.same_role(el.role), (html_id, el.role, node.role)
    el, node = by_id(pairs, "c")
    assert el.name == node.name == "listens"


async def test_what_the_tree_hides_the_snapshot_leaves_out(page):
    pairs = await compared(page, """
        <button id="shown">Shown</button>
        <button id="hidden" aria-hidden="true">Hidden</button>
        <div aria-hidden="true"><button id="inside">Inside</button></div>
        <div inert><button id="inert">Inert</button></div>
        <button id="icon"><i class="fa" aria-hidden="true">*</i>Save</button>
    """)
    ids = {el.html_id for el, _ in pairs}
    assert "shown" in ids and not {"hidden", "inside", "inert"} & ids
    el, node = by_id(pairs, "icon")
    assert el.name == node.name == "Save"
    assert not any(el.tag == "i" for el, _ in pairs)
    for selector in ("#hidden", "#inside", "#inert", "i.fa"):
        assert await ignored_by_chromium(page, selector), selector
    assert not await ignored_by_chromium(page, "#shown")


async def ignored_by_chromium(page, selector: str) -> bool:
    session = await page.context.new_cdp_session(page)
    try:
        doc = await session.send("DOM.getDocument", {"depth": 0})
        found = await session.send("DOM.querySelector", {"nodeId": doc["root"]["nodeId"], "selector": selector})
        backend = (await session.send("DOM.describeNode", {"nodeId": found["nodeId"]}))["node"]["backendNodeId"]
        tree = await session.send("Accessibility.getPartialAXTree", {"backendNodeId": backend, "fetchRelatives": False})
        node = next(n for n in tree["nodes"] if n.get("backendDOMNodeId") == backend)
        return bool(node.get("ignored"))
    finally:
        await session.detach()


async def test_a_point_on_a_hidden_icon_lands_on_its_button(page):
    await page.load('<button id="b" style="font-size:40px"><i aria-hidden="true" class="icon">X</i></button>')
    await snapshot(page)
    box = await page.evaluate("() => { const r = document.querySelector('i').getBoundingClientRect(); "
                              "return [r.x + r.width / 2, r.y + r.height / 2]; }")
    res = await page.evaluate("([x, y]) => window.__synth.resolve({x, y, id: null})", box)
    assert res["element"]["tag"] == "button"


@pytest.mark.parametrize(
    "kind,role",
    [("date", "date"), ("time", "time"), ("datetime-local", "datetime"), ("month", None), ("week", None),
     ("color", "color"), ("file", "button"), ("number", "spinbutton"), ("range", "slider"), ("search", "searchbox")],
)
async def test_input_types_have_chromiums_roles(page, kind, role):
    pairs = await compared(page, f'<label>When <input id="t" type="{kind}"></label>')
    el, node = by_id(pairs, "t")
    assert el.role == node.role, (kind, el.role, node.raw_role)
    if role is not None:
        assert el.role == role
    assert node.same_name(el.name)


async def test_a_nearby_label_names_an_unlabelled_field_and_says_so(page):
    pairs = await compared(page, """
        <p><label>Username</label><input id="u" type="text"></p>
        <p><label>Remember <input id="cb" type="checkbox"></label><input id="v" type="text"></p>
        <p><label for="elsewhere">For another</label><input id="w" type="text"><input id="elsewhere"></p>
        <p><label for="h" style="display:none">Search:</label><input id="h" type="text"></p>
    """)
    el, node = by_id(pairs, "u")
    assert (el.name, el.name_from) == ("Username", "nearby-label") and node.name == ""
    # a label that labels another control never names this one
    el, node = by_id(pairs, "v")
    assert el.name == node.name == ""
    el, node = by_id(pairs, "w")
    assert el.name == node.name == ""
    el, node = by_id(pairs, "elsewhere")
    assert el.name == node.name == "For another"
    el, node = by_id(pairs, "cb")
    assert el.name == node.name == "Remember"
    # a field's own label, hidden: the browser names it nothing; synth says whose name it gives
    el, node = by_id(pairs, "h")
    assert (el.name, el.name_from) == ("Search:", "hidden-label") and node.name == ""


ACCNAME_CASES = {
    "labels": """
        <label for="a1">First</label><label for="a1">second</label><input id="a1">
        <label for="b1">Lab <input value="typed"> after</label><input id="b1">
        <label>Size <select id="c1"><option>S</option><option selected>M</option></select> here</label>
        <label for="d1">Q <span aria-hidden="true">*</span></label><input id="d1">
        <label for="e1">Named by label</label><button id="e1">Own text</button>
        <label>Wrapping <input id="f1" type="checkbox"></label>
    """,
    "aria": """
        <span id="r1">Ref</span><span id="r2" style="display:none">hidden ref</span>
        <button id="a2" aria-labelledby="r1 r2">x</button>
        <button id="b2" aria-label="  ">whitespace label</button>
        <button id="c2" aria-label="AL" aria-labelledby="missing">y</button>
        <input id="d2" aria-label="Field" value="v">
        <div id="e2" role="button" tabindex="0">Role button <input value="embedded"></div>
    """,
    "content": """
        <style>.b::before { content: "PRE "; } .up { text-transform: uppercase; } .x::after { content: attr(data-x); }</style>
        <a id="a3" href="#"><span class="b">bb</span></a>
        <a id="b3" href="#">vis<span style="display:none">dn</span><span style="visibility:hidden">vh</span><span aria-hidden="true">ah</span></a>
        <a id="c3" href="#">in<span>line</span><div>block</div><span style="display:block">sb</span>end</a>
        <button id="d3">x<img src="/n.png" alt="pic" width="5" height="5">y</button>
        <button id="e3" class="up">abc def</button>
        <a id="f3" href="#" class="x" data-x="DX">link</a>
        <a id="g3" href="#">a<button>b</button>c</a>
        <a id="h3" href="#">lead<nav>nav text</nav></a>
        <button id="i3"><span style="display:inline-block">ib1</span><span style="display:inline-block">ib2</span></button>
        <a id="j3" href="#">one<br>two</a>
        <h2 id="k3">he<img src="/n.png" alt="im" width="5" height="5">llo</h2>
        <a id="l3" href="#" title="tooltip"></a><a id="m3" href="#"><img src="/n.png" alt="icon" width="5" height="5"></a>
    """,
    "natives": """
        <input id="a4" type="submit"><input id="b4" type="reset"><input id="c4" type="submit" value="">
        <input id="d4" type="button" title="tb"><input id="e4" placeholder="ph" title="tt"><input id="f4" placeholder="only">
        <select id="g4" title="st"><option label="LAB">text</option></select>
        <fieldset id="h4"><legend>Legend</legend><input type="radio" id="i4"></fieldset>
        <span id="j4" title="Sunday">Su</span>
        <img id="k4" src="/n.png" alt="" title="tt" width="5" height="5">
        <input id="l4" type="image" src="/n.png" value="IV" width="5" height="5">
        <div role="option" id="m4">outside a listbox</div><div role="listbox"><div role="option" id="n4">inside</div></div>
        <div role="foo button" id="o4">first valid token</div>
        <table><tr><th id="p4">Head</th><td>cell</td></tr><tr><th>A</th><th>B</th></tr></table>
        <details><summary id="q4">More</summary>body</details>
    """,
}


@pytest.mark.parametrize("case", sorted(ACCNAME_CASES))
async def test_every_element_agrees_with_chromium(page, case):
    pairs = await compared(page, ACCNAME_CASES[case])
    wrong = [(el.tag, el.html_id, el.role, el.name, node.raw_role, node.name)
             for el, node in pairs if el.html_id and not agrees(el, node)]
    assert not wrong
    assert sum(1 for el, _ in pairs if el.html_id) >= 6


MINIWOB = ["click-tab", "login-user", "click-checkboxes", "click-option", "enter-date", "choose-list",
           "use-autocomplete", "click-collapsible", "social-media", "book-flight"]


@pytest.mark.parametrize("name", MINIWOB)
async def test_miniwob_snapshots_agree_with_chromium(browser, miniwob_site, make_task, name):
    env = BrowserEnv(browser, miniwob_site, BrowserConfig(screenshots=False))
    try:
        obs = await env.reset(make_task(name, seed=1))
        nodes = await browser_nodes(env.page, [e.id for e in obs.elements], listeners=True)
        interactive = [(el, nodes[el.id]) for el in obs.elements if is_interactive(el, nodes[el.id])]
        assert interactive
        wrong = [(el.tag, el.role, el.name, node.raw_role, node.name) for el, node in interactive if not agrees(el, node)]
        assert not wrong
        # a name the browser does not give is synth's own, and says where it comes from
        extra = [(el.tag, el.role, el.name, el.name_from) for el in obs.elements
                 if el.name and not nodes[el.id].name.strip() and el.name_from not in ("hidden-label", "nearby-label", "text")]
        assert not extra
    finally:
        await env.close()
