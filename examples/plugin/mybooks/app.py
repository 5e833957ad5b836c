"""The mybooks web app: a catalogue with search and paging, book pages, and a
reading list kept in SQLite. `python -m mybooks.app --port P --db FILE`.

It stands for the user's own application: synth starts it as a separate
process (site.yaml), knows nothing of its code, and talks to it only through
the browser and its database."""

from __future__ import annotations

import argparse
import sqlite3
from html import escape
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import Route

PAGE = 10
DB = "books.db"


def db() -> sqlite3.Connection:
    con = sqlite3.connect(DB, timeout=30)
    con.row_factory = sqlite3.Row
    return con


def layout(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} - MyBooks</title>
<style>body{{font-family:sans-serif;margin:0}} header{{background:#234;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}}
header a{{color:#fff}} main{{padding:20px}} li{{margin:6px 0}} .price{{font-weight:bold}}</style></head>
<body><header><a href="/">MyBooks</a><form action="/" method="get" role="search">
<input type="search" name="q" aria-label="Search books" placeholder="Title or author"> <button>Search</button></form>
<a href="/list">Reading list</a></header><main>{body}</main></body></html>""")


async def catalogue(request: Request) -> HTMLResponse:
    q = request.query_params.get("q", "").strip()
    page = max(1, int(request.query_params.get("page", "1") or 1))
    with db() as con:
        rows = con.execute(
            "SELECT id, title, author, year FROM books WHERE title LIKE ?1 OR author LIKE ?1 ORDER BY title LIMIT ? OFFSET ?",
            (f"%{q}%", PAGE + 1, (page - 1) * PAGE),
        ).fetchall()
    items = "".join(
        f'<li><a class="title" href="/book/{r["id"]}">{escape(r["title"])}</a> by {escape(r["author"])} ({r["year"]})</li>'
        for r in rows[:PAGE]
    )
    nav = ""
    if len(rows) > PAGE:
        nav = f'<a href="/?{urlencode({"q": q, "page": page + 1})}">Next</a>'
    heading = f"Results for “{escape(q)}”" if q else "All books"
    return layout(heading, f"<h1>{heading}</h1><ul>{items or '<li>No books found.</li>'}</ul>{nav}")


async def book(request: Request) -> HTMLResponse:
    with db() as con:
        r = con.execute("SELECT * FROM books WHERE id = ?", (request.path_params["id"],)).fetchone()
        listed = r is not None and con.execute("SELECT 1 FROM reading_list WHERE book_id = ?", (r["id"],)).fetchone()
    if r is None:
        return layout("Not found", "<h1>No such book</h1>")
    action = (
        "<p>On your reading list.</p>" if listed else
        f'<form method="post" action="/list/add"><input type="hidden" name="book" value="{r["id"]}">'
        f'<button type="submit">Add to reading list</button></form>'
    )
    return layout(r["title"], f"""<h1>{escape(r["title"])}</h1>
<dl><dt>Author</dt><dd class="author">{escape(r["author"])}</dd><dt>Year</dt><dd>{r["year"]}</dd>
<dt>Genre</dt><dd>{escape(r["genre"])}</dd><dt>Price</dt><dd class="price">${r["price"]:.2f}</dd></dl>{action}""")


async def reading_list(request: Request) -> HTMLResponse:
    with db() as con:
        rows = con.execute(
            "SELECT b.id, b.title FROM reading_list r JOIN books b ON b.id = r.book_id ORDER BY r.rowid"
        ).fetchall()
    items = "".join(
        f'<li>{escape(r["title"])} <form method="post" action="/list/remove" style="display:inline">'
        f'<input type="hidden" name="book" value="{r["id"]}"><button aria-label="Remove {escape(r["title"])}">Remove</button></form></li>'
        for r in rows
    )
    return layout("Reading list", f"<h1>Reading list</h1><ul>{items or '<li>Nothing yet.</li>'}</ul>")


async def add(request: Request) -> RedirectResponse:
    book_id = int((await request.form())["book"])
    with db() as con:
        con.execute("INSERT OR IGNORE INTO reading_list VALUES (?)", (book_id,))
    return RedirectResponse("/list", status_code=303)


async def remove(request: Request) -> RedirectResponse:
    book_id = int((await request.form())["book"])
    with db() as con:
        con.execute("DELETE FROM reading_list WHERE book_id = ?", (book_id,))
    return RedirectResponse("/list", status_code=303)


app = Starlette(routes=[
    Route("/", catalogue), Route("/book/{id:int}", book), Route("/list", reading_list),
    Route("/list/add", add, methods=["POST"]), Route("/list/remove", remove, methods=["POST"]),
])

if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    DB = args.db
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
