"""The bookstore's catalogue, deterministic from a seed:
`python -m mybooks.seed DEST [--seed N]` writes DEST/books.db."""

from __future__ import annotations

import argparse
import random
import sqlite3
from pathlib import Path

FIRST = ["Ada", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemi", "Luca"]
LAST = ["Marsh", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Alvarez", "Novak", "Brennan", "Sato", "Weiss"]
ADJ = ["Silent", "Burning", "Northern", "Hidden", "Last", "Paper", "Glass", "Winter", "Crooked", "Distant", "Salt"]
NOUN = ["Harbour", "Orchard", "Lantern", "Archive", "Garden", "Frontier", "Bridge", "Cartographer", "River", "Tower"]
GENRES = ["Fiction", "Mystery", "History", "Science", "Poetry", "Travel"]


def build(dest: Path, seed: int = 0, count: int = 60) -> Path:
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    db = dest / "books.db"
    db.unlink(missing_ok=True)
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT UNIQUE, author TEXT, year INTEGER, genre TEXT, price REAL);"
        "CREATE TABLE reading_list (book_id INTEGER REFERENCES books(id), UNIQUE(book_id));"
    )
    titles: set[str] = set()
    while len(titles) < count:
        titles.add(f"The {rng.choice(ADJ)} {rng.choice(NOUN)}")
    for i, title in enumerate(sorted(titles), start=1):
        con.execute(
            "INSERT INTO books VALUES (?, ?, ?, ?, ?, ?)",
            (i, title, f"{rng.choice(FIRST)} {rng.choice(LAST)}", rng.randint(1950, 2025), rng.choice(GENRES),
             round(rng.uniform(6, 40), 2)),
        )
    con.commit()
    con.close()
    return db


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.dest, args.seed)
