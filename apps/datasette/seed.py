#!/usr/bin/env python
"""Port Alder's open data on food safety, deterministic from a seed:

    python apps/datasette/seed.py DEST [--seed N]     # writes DEST/city.db

A small city's restaurant inspection programme, the kind of database cities
publish through Datasette:

    wards             (id, name, councillor)                                7
    neighbourhoods    (id, name, ward_id -> wards, population, area_km2)   14
    inspectors        (id, name, badge)                                    10
    violation_codes   (code, description, risk)                            24
    restaurants       (id, name, cuisine, address, neighbourhood_id -> neighbourhoods,
                       seats, opened, phone)                               420
    inspections       (id, restaurant_id -> restaurants, date, inspector_id -> inspectors,
                       score, result)                                      ~2,300
    violations        (id, inspection_id -> inspections, code -> violation_codes,
                       risk, corrected_on_site)                            ~4,000

plus `restaurants_fts` (FTS5 over name, cuisine and address), which gives the
restaurants table Datasette's search box. Restaurant names and addresses are
unique; no restaurant has two inspections on one day. Everything comes from
`random.Random(seed)`: the same seed gives the same file's rows. No network.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sqlite3
from pathlib import Path

WARDS = [
    ("Ward 1", "Margaret Osei"), ("Ward 2", "Daniel Kowalczyk"), ("Ward 3", "Priya Raman"),
    ("Ward 4", "Thomas Beaulieu"), ("Ward 5", "Aisha Abdullahi"), ("Ward 6", "Connor MacLeod"),
    ("Ward 7", "Yuki Hashimoto"),
]
NEIGHBOURHOODS = [
    "Harbourside", "Old Town", "Millbrook", "Cedar Heights", "Riverside", "Foundry District", "Kingsgate",
    "Larkspur", "North Quay", "Bellwood", "St. Anne's", "Ferncliff", "Ashgrove", "Eastwater",
]
INSPECTORS = [
    "Helen Achterberg", "Marcus Delgado", "Ruth Nakamura", "Samuel Okonkwo", "Ingrid Solberg",
    "Victor Petrenko", "Leila Haddad", "Owen Gallagher", "Beatriz Cunha", "Nathan Whitfield",
]
VIOLATION_CODES = [
    ("101", "Food held at improper temperature", "High"),
    ("102", "Raw food stored above ready-to-eat food", "High"),
    ("103", "Inadequate handwashing facilities", "High"),
    ("104", "Evidence of rodents or insects", "High"),
    ("105", "Food from an unapproved source", "High"),
    ("106", "Employee handling food while ill", "High"),
    ("107", "Improper cooling of cooked food", "High"),
    ("108", "Contaminated food contact surfaces", "High"),
    ("201", "Inadequate date marking of prepared food", "Moderate"),
    ("202", "Thermometer missing or inaccurate", "Moderate"),
    ("203", "Wiping cloths improperly stored", "Moderate"),
    ("204", "Sanitizer concentration too low", "Moderate"),
    ("205", "No certified food protection manager on duty", "Moderate"),
    ("206", "Improper thawing method", "Moderate"),
    ("207", "Chemicals stored near food", "Moderate"),
    ("208", "Hair restraints not worn", "Moderate"),
    ("301", "Floors, walls or ceilings not clean", "Low"),
    ("302", "Lighting inadequate in food preparation area", "Low"),
    ("303", "Garbage area not maintained", "Low"),
    ("304", "Ventilation hood not clean", "Low"),
    ("305", "Food handler permit not posted", "Low"),
    ("306", "Single-use items stored improperly", "Low"),
    ("307", "Plumbing in disrepair", "Low"),
    ("308", "Inspection report not displayed", "Low"),
]
CUISINES = [
    "Italian", "Chinese", "Mexican", "Indian", "Japanese", "Thai", "Vietnamese", "Greek", "Lebanese",
    "Ethiopian", "American", "French", "Korean", "Caribbean", "Bakery", "Cafe",
]
CUISINE_WORDS = {
    "Italian": ["Trattoria", "Osteria", "Pizzeria", "Pasta Bar"],
    "Chinese": ["Dumpling House", "Noodle Bar", "Kitchen", "Garden"],
    "Mexican": ["Taqueria", "Cantina", "Cocina", "Tortilleria"],
    "Indian": ["Tandoor", "Curry House", "Masala Kitchen", "Dhaba"],
    "Japanese": ["Sushi Bar", "Ramen Shop", "Izakaya", "Bento"],
    "Thai": ["Thai Kitchen", "Noodle House", "Thai Garden", "Street Food"],
    "Vietnamese": ["Pho House", "Banh Mi", "Noodle Shop", "Kitchen"],
    "Greek": ["Taverna", "Souvlaki", "Grill", "Kouzina"],
    "Lebanese": ["Grill", "Falafel", "Mezze House", "Bakery"],
    "Ethiopian": ["Kitchen", "Cafe", "Injera House", "Restaurant"],
    "American": ["Diner", "Burger Joint", "Grill", "Smokehouse"],
    "French": ["Bistro", "Brasserie", "Cafe", "Creperie"],
    "Korean": ["BBQ", "Kitchen", "Chicken", "Tofu House"],
    "Caribbean": ["Jerk Shack", "Roti Shop", "Kitchen", "Grill"],
    "Bakery": ["Bakery", "Bake Shop", "Patisserie", "Bread Co."],
    "Cafe": ["Cafe", "Coffee House", "Espresso Bar", "Tea Room"],
}
NAME_FIRST = [
    "Golden", "Blue", "Red", "Little", "Lucky", "Happy", "Silver", "Green", "Old", "Royal", "Sunny", "Twin", "Copper",
    "Jade", "Olive", "Harbour", "Corner", "Lantern", "Saffron", "Maple", "Pearl", "Iron", "Velvet", "Crimson", "Wild",
]
NAME_OWNERS = [
    "Rosa's", "Mama Lin's", "Nonna's", "Ahmed's", "Kim's", "Papa Joe's", "Sofia's", "Uncle Tan's", "Marco's",
    "Abebe's", "Yiayia's", "Carmen's", "Hana's", "Raj's", "Pierre's", "Nadia's", "Tomas's", "Mei's",
]
STREETS = [
    "Water Street", "King Street", "Queen Street", "Mill Road", "Cedar Avenue", "Harbour Road", "Front Street",
    "Church Street", "Elm Street", "Birch Lane", "Foundry Lane", "Station Road", "Park Avenue", "Lake Drive",
    "Bridge Street", "Market Square", "Orchard Way", "Bay Street", "Hill Road", "Granite Street",
]
START, END = dt.date(2022, 1, 3), dt.date(2024, 12, 20)

SCHEMA = """
CREATE TABLE wards (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, councillor TEXT NOT NULL);
CREATE TABLE neighbourhoods (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, ward_id INTEGER NOT NULL REFERENCES wards(id),
  population INTEGER, area_km2 REAL);
CREATE TABLE inspectors (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, badge TEXT NOT NULL);
CREATE TABLE violation_codes (code TEXT PRIMARY KEY, description TEXT NOT NULL, risk TEXT NOT NULL);
CREATE TABLE restaurants (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, cuisine TEXT NOT NULL, address TEXT NOT NULL UNIQUE,
  neighbourhood_id INTEGER NOT NULL REFERENCES neighbourhoods(id), seats INTEGER, opened TEXT, phone TEXT);
CREATE TABLE inspections (
  id INTEGER PRIMARY KEY, restaurant_id INTEGER NOT NULL REFERENCES restaurants(id), date TEXT NOT NULL,
  inspector_id INTEGER NOT NULL REFERENCES inspectors(id), score INTEGER NOT NULL, result TEXT NOT NULL,
  UNIQUE(restaurant_id, date));
CREATE TABLE violations (
  id INTEGER PRIMARY KEY, inspection_id INTEGER NOT NULL REFERENCES inspections(id),
  code TEXT NOT NULL REFERENCES violation_codes(code), risk TEXT NOT NULL, corrected_on_site INTEGER NOT NULL);
CREATE INDEX inspections_restaurant ON inspections(restaurant_id);
CREATE INDEX inspections_date ON inspections(date);
CREATE INDEX violations_inspection ON violations(inspection_id);
CREATE INDEX restaurants_neighbourhood ON restaurants(neighbourhood_id);
CREATE VIRTUAL TABLE restaurants_fts USING FTS5(name, cuisine, address, content="restaurants", content_rowid="id");
"""


def restaurant_name(rng: random.Random, cuisine: str) -> str:
    word = rng.choice(CUISINE_WORDS[cuisine])
    form = rng.random()
    if form < 0.4:
        first = rng.choice(NAME_FIRST)
        second = f"{rng.choice(NAME_FIRST[::-1])} " if rng.random() < 0.2 else ""
        return f"{first} {second}{word}"
    if form < 0.75:
        return f"{rng.choice(NAME_OWNERS)} {word}"
    return f"The {rng.choice(NAME_FIRST)} {word}"


def result_of(score: int) -> str:
    return "Pass" if score >= 85 else "Conditional Pass" if score >= 70 else "Fail"


def build(dest: Path, seed: int = 0, restaurants: int = 420) -> Path:
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    db = dest / "city.db"
    db.unlink(missing_ok=True)
    con = sqlite3.connect(db)
    con.executescript(SCHEMA)
    con.executemany("INSERT INTO wards VALUES (?, ?, ?)", [(i, n, c) for i, (n, c) in enumerate(WARDS, 1)])
    con.executemany(
        "INSERT INTO neighbourhoods VALUES (?, ?, ?, ?, ?)",
        [(i, n, (i - 1) // 2 + 1, rng.randrange(4_000, 38_000, 10), round(rng.uniform(0.8, 9.5), 1))
         for i, n in enumerate(NEIGHBOURHOODS, 1)],
    )
    con.executemany("INSERT INTO inspectors VALUES (?, ?, ?)",
                    [(i, n, f"EH-{rng.randrange(1000, 9999)}") for i, n in enumerate(INSPECTORS, 1)])
    con.executemany("INSERT INTO violation_codes VALUES (?, ?, ?)", VIOLATION_CODES)

    names: set[str] = set()
    addresses: set[str] = set()
    rows = []
    # Busier neighbourhoods get more restaurants, cuisines are not equally common.
    hood_weights = [rng.uniform(0.4, 2.5) for _ in NEIGHBOURHOODS]
    cuisine_weights = [rng.uniform(0.5, 2.0) for _ in CUISINES]
    while len(rows) < restaurants:
        cuisine = rng.choices(CUISINES, cuisine_weights)[0]
        name = restaurant_name(rng, cuisine)
        address = f"{rng.randrange(1, 1999)} {rng.choice(STREETS)}"
        if name in names or address in addresses:
            continue
        names.add(name)
        addresses.add(address)
        hood = rng.choices(range(1, len(NEIGHBOURHOODS) + 1), hood_weights)[0]
        seats = rng.choice([rng.randrange(8, 40), rng.randrange(20, 90), rng.randrange(40, 220)])
        opened = dt.date(rng.randrange(1978, 2022), rng.randrange(1, 13), rng.randrange(1, 29)).isoformat()
        phone = f"(506) 555-{rng.randrange(0, 10000):04d}"
        rows.append((len(rows) + 1, name, cuisine, address, hood, seats, opened, phone))
    con.executemany("INSERT INTO restaurants VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.execute("INSERT INTO restaurants_fts (rowid, name, cuisine, address) "
                "SELECT id, name, cuisine, address FROM restaurants")

    inspections, violations = [], []
    span = (END - START).days
    codes_by_risk = {r: [c for c, _, risk in VIOLATION_CODES if risk == r] for r in ("High", "Moderate", "Low")}
    risk_of = {c: r for c, _, r in VIOLATION_CODES}
    for rid, *_ in rows:
        quality = rng.gauss(86, 7)  # some kitchens are consistently better than others
        days = sorted(rng.sample(range(span), rng.randrange(2, 9)))
        for day in days:
            date = START + dt.timedelta(days=day)
            if date.weekday() >= 5:  # inspectors work weekdays
                date -= dt.timedelta(days=date.weekday() - 4)
            if any(i[1] == rid and i[2] == date.isoformat() for i in inspections[-8:]):
                continue
            score = max(48, min(100, round(rng.gauss(quality, 6))))
            iid = len(inspections) + 1
            inspections.append((iid, rid, date.isoformat(), rng.randrange(1, len(INSPECTORS) + 1), score,
                                result_of(score)))
            # lower scores come with more (and more serious) violations
            deficit = 100 - score
            n = min(12, max(0, round(deficit / 5 + rng.uniform(-1.5, 1.5))))
            for code in rng.sample([c for c, _, _ in VIOLATION_CODES], n):
                if deficit < 12 and risk_of[code] == "High":
                    code = rng.choice(codes_by_risk["Low"])
                violations.append((len(violations) + 1, iid, code, risk_of[code], int(rng.random() < 0.35)))
    # distinct (inspection, code) pairs only
    seen, unique = set(), []
    for v in violations:
        if (v[1], v[2]) not in seen:
            seen.add((v[1], v[2]))
            unique.append((len(unique) + 1, *v[1:]))
    con.executemany("INSERT INTO inspections VALUES (?, ?, ?, ?, ?, ?)", inspections)
    con.executemany("INSERT INTO violations VALUES (?, ?, ?, ?, ?)", unique)
    con.commit()
    con.execute("VACUUM")
    con.close()
    return db


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.dest, args.seed)
