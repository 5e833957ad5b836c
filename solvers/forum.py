"""Programmatic solvers for the bundled forum (templates/tasks/forum).

Each reads only the instruction and the page and acts only through
BrowserEnv, clicking through the forum's own links, forms and buttons, so
every step is recorded. Answers are read off the page. They are checked by
`synth tasks validate templates/tasks/forum` (tests/test_validate.py).
"""

from __future__ import annotations

from synth.solver import register_solver
from synth.toolkit import fill, parse, search
from synth.env import BrowserEnv
from synth.schema import Observation


async def open_post(env: BrowserEnv, obs: Observation, title: str) -> Observation:
    """Search for the post's title and open it from the results."""
    obs = await search(env, obs, title)
    while True:
        found = obs.find_all(title, role="link", html_class="post-title")
        if found:
            return await env.click(found[0])
        nxt = obs.find_all("Next", role="link")
        if not nxt:
            raise LookupError(f"no post titled {title!r} in the search results")
        obs = await env.click(nxt[0])


def expect(obs: Observation, notice: str, what: str) -> None:
    """Check the page confirms the change (the site's notice), or say what it shows."""
    if not obs.find_all(notice, exact=False):
        errors = [e.name for e in obs.find_all(html_class="error")]
        raise RuntimeError(f"{what} failed: {errors or obs.title}")


@register_solver("forum.create-post")
async def create_post(env: BrowserEnv, obs: Observation) -> None:
    """Open the forum, New post, fill title and body, publish."""
    forum, title, body = parse(
        r'Create a new post in the (.+) forum titled "(.+)" with the text: (.+)', env.instruction
    ).groups()
    obs = await env.click(obs.find(forum, role="link"))
    obs = await env.click(obs.find("New post", role="link"))
    obs = await fill(env, obs.find("Title", role="textbox"), title)
    obs = await fill(env, obs.find("Body", role="textbox"), body)
    obs = await env.click(obs.find("Publish post", role="button"))
    expect(obs, "Your post is live", "publishing the post")
    await env.done()


@register_solver("forum.edit-own-post")
async def edit_own_post(env: BrowserEnv, obs: Observation) -> None:
    """From one's own profile: open the post, Edit post, replace the title, save."""
    old, new = parse(
        r'Change the title of your post "(.+)" to "(.+)"\. Keep its text as it is\.', env.instruction
    ).groups()
    obs = await env.click(obs.find("Signed in as", role="link", exact=False))
    obs = await env.click(obs.find(old, role="link", html_class="post-title"))
    obs = await env.click(obs.find("Edit post", role="link"))
    obs = await fill(env, obs.find("Title", role="textbox"), new)
    obs = await env.click(obs.find("Save changes", role="button"))
    expect(obs, "Your changes were saved", "editing the post")
    await env.done()


@register_solver("forum.comment-on-post")
async def comment_on_post(env: BrowserEnv, obs: Observation) -> None:
    """Find the post, write the comment, post it."""
    title, _author, _forum, text = parse(
        r'Reply to the post "(.+)" by (\S+) in (.+) with the comment: (.+)', env.instruction
    ).groups()
    obs = await open_post(env, obs, title)
    obs = await fill(env, obs.find("Add a comment", role="textbox"), text)
    obs = await env.click(obs.find("Post comment", role="button"))
    expect(obs, "Comment posted", "posting the comment")
    await env.done()


@register_solver("forum.vote-post")
async def vote_post(env: BrowserEnv, obs: Observation) -> None:
    """Find the post, click its up or down arrow."""
    verb, title, _forum = parse(r'(Upvote|Downvote) the post "(.+)" in the (.+) forum\.', env.instruction).groups()
    obs = await open_post(env, obs, title)
    await env.click(obs.find(f"{verb} post", role="button"))
    await env.done()


@register_solver("forum.delete-own-comment")
async def delete_own_comment(env: BrowserEnv, obs: Observation) -> None:
    """Find the post, Delete comment on one's own comment, confirm."""
    title = parse(r'Delete the comment you wrote on the post "(.+)"\.', env.instruction)[1]
    obs = await open_post(env, obs, title)
    obs = await env.click(obs.find("Delete comment", role="link"))
    obs = await env.click(obs.find("Yes, delete comment", role="button"))
    expect(obs, "Your comment was deleted", "deleting the comment")
    await env.done()


@register_solver("forum.subscribe-forum")
async def subscribe_forum(env: BrowserEnv, obs: Observation) -> None:
    """Find the post, go to its forum, Subscribe."""
    _author, title = parse(r'Subscribe to the forum in which (\S+) posted "(.+)"\.', env.instruction).groups()
    obs = await open_post(env, obs, title)
    obs = await env.click(obs.find(role="link", html_class="post-forum"))
    obs = await env.click(obs.find("Subscribe", role="button"))
    expect(obs, "You are now subscribed", "subscribing")
    await env.done()


@register_solver("forum.top-comment-author")
async def top_comment_author(env: BrowserEnv, obs: Observation) -> None:
    """Find the post; comments sorted by Top: the first one's author."""
    title = parse(
        r'Who wrote the highest-scored comment on the post "(.+)"\? Answer with their username\.', env.instruction
    )[1]
    obs = await open_post(env, obs, title)
    sort = obs.find_all("Top", role="link")  # a link only when another sort is shown
    if sort:
        obs = await env.click(sort[0])
    await env.submit_answer(obs.find(html_class="comment-author").name)


@register_solver("forum.author-karma")
async def author_karma(env: BrowserEnv, obs: Observation) -> None:
    """Find the post, open its author's profile, read the karma."""
    title = parse(
        r'How much karma does the author of the post "(.+)" have\? Answer with the number\.', env.instruction
    )[1]
    obs = await open_post(env, obs, title)
    obs = await env.click(obs.find(role="link", html_class="author"))
    await env.submit_answer(obs.find(html_class="karma").name)
