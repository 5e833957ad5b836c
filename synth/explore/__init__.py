"""Tasks beyond templates: explore a site, then write the task afterwards.

The route (after OS-Genesis and NNetNav's hindsight relabelling, with a
Go-Browse-style feasibility check):

1. `walk`: a seeded policy walks a site through BrowserEnv, preferring
   elements and pages it has not touched, filling forms with text the site
   itself shows; a *segment* ends after a step budget, on a page it had not
   reached before, or when the site's state changed.
2. `evidence`: what the segment did, read from the site, not from a model:
   the records that changed (a diff of `site.state` before and after), the
   view it reached (the final URL), or a value it read. The judge is derived
   from that evidence (`state_match` / `url_match` / `string_match`), and a
   template-free writer phrases the instruction from the same evidence
   (`llm` does it with a model when an endpoint is configured).
3. `feasibility`: a proposal is kept only if its judge passes on the
   segment's end state and fails on its start state, a cold replay (trimmed
   by the minimality gate) passes it again, and its instruction is no near
   duplicate of another task's. Rejected proposals keep their reason.
4. `diversity`: distinct instructions, distinct 3-grams, near-duplicate
   clusters and route coverage, per source and site.
"""
