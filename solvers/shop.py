"""Programmatic solvers for the bundled shop (templates/tasks/shop).

Each reads only the instruction (parsed like a person reads it) and the page,
and acts only through BrowserEnv, clicking through the site's own links,
forms and buttons (no typed URLs), so every step is recorded. Answers are read
off the page, never from the task's expected values. They are checked by
`synth tasks validate templates/tasks/shop` (tests/test_validate.py).
"""

from __future__ import annotations

from synth.solver import register_solver
from synth.toolkit import after, click_through_pages, fill, parse, search
from synth.env import BrowserEnv
from synth.schema import Observation

SIZE = r"\S+(?: (?:GB|TB|L|mm|in))?"
"""An option value as the shop writes it: "XL", "10", "512 GB", "42 mm", "55 in"."""


async def open_product(env: BrowserEnv, obs: Observation, name: str) -> Observation:
    """Search for the product by name and open its page."""
    obs = await search(env, obs, name)
    return await click_through_pages(env, obs, name, html_class="card-name")


async def choose_options(env: BrowserEnv, obs: Observation, color: str | None, size: str | None, qty: int) -> Observation:
    """On a product page: pick colour and size, set the quantity, add to cart."""
    if color is not None:
        radio = obs.find(color, role="radio")
        if not radio.checked:
            obs = await env.click(radio)
    if size is not None:
        obs = await env.select(obs.find(role="combobox", html_id="size"), size)
    if qty != 1:
        obs = await fill(env, obs.find("Quantity", role="spinbutton"), str(qty))
    obs = await env.click(obs.find("Add to cart", role="button"))
    if "/cart" not in obs.url:
        errors = [e.name for e in obs.find_all(html_class="error")]
        raise RuntimeError(f"the product was not added to the cart: {errors}")
    return obs


async def filter_category(
    env: BrowserEnv, obs: Observation, category: str, brand: str, sort: str, rating: str | None = None
) -> Observation:
    """Open a department from the category bar, set brand, rating and sort, apply."""
    obs = await env.click(obs.find(category, role="link"))
    obs = await env.select(obs.find("Brand", role="combobox"), brand)
    if rating is not None:
        obs = await env.select(obs.find("Customer rating", role="combobox"), rating)
    obs = await env.select(obs.find("Sort by", role="combobox"), sort)
    return await env.click(obs.find("Apply filters", role="button"))


@register_solver("shop.product-price")
async def product_price(env: BrowserEnv, obs: Observation) -> None:
    """Search the product, open its page, read the price."""
    name = parse(r"What is the price of the (.+)\? Answer with its price\.", env.instruction)[1]
    obs = await open_product(env, obs, name)
    await env.submit_answer(obs.find(html_class="product-price").name)


@register_solver("shop.cheapest-match")
async def cheapest_match(env: BrowserEnv, obs: Observation) -> None:
    """Department, brand and rating filters, sorted by price: the first result."""
    brand, category, stars = parse(
        r"Which is the cheapest (.+) product in the (.+) department with a customer rating of (\d) stars "
        r"or more\? Answer with the product's name\.",
        env.instruction,
    ).groups()
    obs = await filter_category(env, obs, category, brand, "Price: low to high", rating=f"{stars} stars & up")
    first = obs.find(html_class="card-name")
    await env.submit_answer(first.name)


SORT_LABELS = {
    "price, lowest first": "Price: low to high",
    "price, highest first": "Price: high to low",
    "customer rating": "Customer rating",
    "number of reviews": "Most reviewed",
}


@register_solver("shop.filter-listing")
async def filter_listing(env: BrowserEnv, obs: Observation) -> None:
    """Open the department, filter by brand, sort, apply, and stop there."""
    brand, category, order = parse(
        r"Show all (.+) products in the (.+) department, sorted by (.+)\.", env.instruction
    ).groups()
    await filter_category(env, obs, category, brand, SORT_LABELS[order])
    await env.done()


@register_solver("shop.add-to-cart")
async def add_to_cart(env: BrowserEnv, obs: Observation) -> None:
    """Open the product, choose colour and size, set the quantity, add to cart."""
    qty, name, color, size = parse(
        rf"Add (\d+) units? of the (.+) in ([^,]+), .+? ({SIZE}), to your cart\.", env.instruction
    ).groups()
    obs = await open_product(env, obs, name)
    await choose_options(env, obs, color, size, int(qty))
    await env.done()


@register_solver("shop.place-order")
async def place_order(env: BrowserEnv, obs: Observation) -> None:
    """Cart, then checkout to a new address with the given shipping and card."""
    m = parse(
        rf"Buy one (?P<name>.+) \((?P<color>[^,]+), .+? (?P<size>{SIZE})\) and ship it to a new address with "
        r"(?P<shipping>Standard|Express) shipping: (?P<person>[^,]+), (?P<street>[^,]+), (?P<city>[^,]+), "
        r"(?P<state>[A-Z]{2}) (?P<zip>\d{5}), phone (?P<phone>[^.]+)\. Pay with card (?P<card>[\d ]+), "
        r"expiry (?P<expiry>\d\d/\d\d), CVC (?P<cvc>\d{3}), name on card (?P<card_name>.+)\.",
        env.instruction,
    )
    obs = await open_product(env, obs, m["name"])
    obs = await choose_options(env, obs, m["color"], m["size"], 1)
    obs = await env.click(obs.find("Proceed to checkout", role="link"))
    obs = await env.click(obs.find("Ship to a new address", role="radio"))
    for label, key in (("Full name", "person"), ("Street address", "street"), ("City", "city")):
        obs = await fill(env, obs.find(label, role="textbox"), m[key])
    obs = await env.select(obs.find("State", role="combobox"), m["state"])
    obs = await fill(env, obs.find("ZIP code", role="textbox"), m["zip"])
    obs = await fill(env, obs.find("Phone", role="textbox"), m["phone"])
    method = obs.find_all(m["shipping"], role="radio", exact=False)[0]
    if not method.checked:
        obs = await env.click(method)
    for label, key in (("Name on card", "card_name"), ("Card number", "card"), ("Expiry (MM/YY)", "expiry"),
                       ("Security code (CVC)", "cvc")):
        obs = await fill(env, obs.find(label, role="textbox"), m[key])
    obs = await env.click(obs.find("Place order", role="button"))
    if not obs.find_all("Thank you", exact=False):
        errors = [e.name for e in obs.find_all(html_class="error")]
        raise RuntimeError(f"checkout did not go through: {errors}")
    await env.done()


@register_solver("shop.order-total")
async def order_total(env: BrowserEnv, obs: Observation) -> None:
    """Order history, page by page, until the order of that day: its total."""
    day = parse(r"What was the total of the order you placed on (.+)\? Answer with the amount\.", env.instruction)[1]
    obs = await env.click(obs.find("Orders", role="link"))
    while True:
        dates = obs.find_all(day, html_class="order-date")
        if dates:
            await env.submit_answer(after(obs, dates[0], html_class="order-total").name)
            return
        nxt = obs.find_all("Next", role="link")
        if not nxt:
            raise LookupError(f"no order placed on {day} in the order history")
        obs = await env.click(nxt[0])


@register_solver("shop.add-address")
async def add_address(env: BrowserEnv, obs: Observation) -> None:
    """Account, address book, new address form, save."""
    m = parse(
        r'Add a new address labelled "(?P<label>.+)" to your address book: (?P<person>[^,]+), '
        r"(?P<street>[^,]+), (?P<city>[^,]+), (?P<state>[A-Z]{2}) (?P<zip>\d{5}), phone (?P<phone>[^.]+)\."
        r"(?P<default> Make it your default address\.)?",
        env.instruction,
    )
    obs = await env.click(obs.find("Account", role="link"))
    obs = await env.click(obs.find("Manage addresses", role="link"))
    obs = await env.click(obs.find("Add a new address", role="link"))
    for label, key in (("Label", "label"), ("Full name", "person"), ("Street address", "street"), ("City", "city")):
        obs = await fill(env, obs.find(label, role="textbox"), m[key])
    obs = await env.select(obs.find("State", role="combobox"), m["state"])
    obs = await fill(env, obs.find("ZIP code", role="textbox"), m["zip"])
    obs = await fill(env, obs.find("Phone", role="textbox"), m["phone"])
    if m["default"]:
        obs = await env.click(obs.find("Make this my default address", role="checkbox"))
    obs = await env.click(obs.find("Save address", role="button"))
    if not obs.find_all("Address saved"):
        errors = [e.name for e in obs.find_all(html_class="error")]
        raise RuntimeError(f"the address was not saved: {errors}")
    await env.done()
