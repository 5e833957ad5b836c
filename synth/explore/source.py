"""The exploration source: `sources.explore` in a pipeline.

A BrowserSource like the others (browser, sites, page pool). In `synth run`
it plans its own tasks: `walks` walks per site (`explore/<site>`, seed
`seed + i`), each `segments` segments long from a fresh memory and a random
generator seeded by the walk, so the same walk always makes the same
segments. `run_all(walk)` returns one trajectory per segment, recorded with
the task it proposes (its `task_config`; the seed task when it proposes
nothing), and the actor stages the walk as one batch: after a kill a walk
is either staged whole or run again whole, to the same ids. The quality
stage treats each proposal as a task of the run: judge, consistency, dedup
of instructions against the templates' and the other proposals', replay on
a cold page with the derived judge, minimality.

`run(task)` explores one segment from a seed task; `explore()` is the whole
route for one site outside a pipeline: segments, proposals, feasibility
(cold replay trimmed by minimality, dedup against existing instructions),
the accepted trajectories and the rejected proposals with their reasons.
"""

from __future__ import annotations

import copy
import random
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Sequence

from pydantic import Field

from synth.config import SourceConfig
from synth.env import BrowserConfig
from synth.explore import feasibility
from synth.quality.consistency import ungrounded_typing
from synth.explore.propose import Proposal, Writer, explore_segment, seed_task, template_free
from synth.explore.walk import Memory, Walker, candidates
from synth.quality.replay import Replayer
from synth.episode import lost_to_infrastructure
from synth.schema import JudgeSpec, Task, Trajectory, stable_id
from synth.sources import BrowserSource, register_source

if TYPE_CHECKING:
    from synth.explore.check import InstructionCheck
    from synth.tasks import TaskList, TaskSet


class ExploreConfig(SourceConfig):
    """Exploration with hindsight tasks (synth.explore)."""

    sites: list[str] = Field(default_factory=list, description="sites to explore (default: the planned tasks' sites)")
    segments: int = Field(50, gt=0, description="segments (episodes) per walk (`explore()`: per site)")
    walks: int = Field(1, gt=0, description="`synth run`: walks per site, each from a fresh memory, seeded "
                       "seed, seed + 1, ...; a walk is one task (its segments are staged together)")
    budget_steps: int = Field(8, gt=0, description="steps a segment may take before it stops")
    seed: int = Field(0, description="the walk's random seed")
    content_seed: int = Field(0, description="the sites' content seed")
    form_share: float = Field(0.5, ge=0, le=1, description="chance that a segment starts where a form was seen "
                              "and fills it first")
    answer_share: float = Field(0.5, ge=0, le=1, description="chance that a segment which changed nothing answers "
                                "a question about a value its last page shows")
    writer: Literal["evidence", "llm"] = Field("evidence", description="who writes instructions; llm falls back to "
                                               "evidence when no endpoint is configured")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint of the llm writer")
    model: str = "gpt-4o-mini"
    api_key_env: str | None = None
    cache_path: str | None = "auto"
    dedup_threshold: float = Field(0.8, gt=0, le=1)
    exhaustive_minimality: bool = Field(False, description="try leaving out every step, not only the no-ops")
    check: bool = Field(True, description="with an endpoint (base_url), a model checks that each proposal's "
                        "instruction and trajectory agree (synth.explore.check); a proposal it finds disagreeing, "
                        "or whose check got no usable reply, is rejected with the reason")


@register_source
class ExploreSource(BrowserSource):
    kind = "explore"
    config_model = ExploreConfig

    def __init__(
        self,
        browser: BrowserConfig | None = None,
        site_options: dict[str, dict[str, Any]] | None = None,
        run_id: str = "",
        config: SourceConfig | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(browser, site_options, run_id, config, cache_dir)
        self.config: ExploreConfig = self.config  # typed_config made it one
        self.memories: dict[str, Memory] = {}
        self.rng = random.Random(self.config.seed)
        self.writer: Writer = template_free
        self.check: InstructionCheck | None = None

    @classmethod
    def selects(cls, task: Task, config: SourceConfig) -> bool:
        """Seeds: tasks of `explore/<site>` (its site, seed and content seed
        start one segment)."""
        return task.template_id.startswith("explore/")

    proposes: ClassVar[bool] = True

    @classmethod
    def plan(cls, config: SourceConfig, planned: "TaskSet") -> "TaskList":
        """`walks` walks of each site (`sites`, else the planned tasks' sites)."""
        from synth.tasks import TaskList

        c = cls.typed_config(config)
        assert isinstance(c, ExploreConfig)
        sites = c.sites or sorted({t.site for t in planned.first_tasks})
        return TaskList([walk_task(site, c.seed + i, c.content_seed, c.segments) for site in sites
                         for i in range(c.walks)])

    @classmethod
    def planned(cls, task_id: str, template_id: str, seed: int) -> tuple[str, str, int]:
        """A segment's trajectory (`explore/<site>[/<kind>]`, the walk's seed)
        belongs to the walk `explore/<site>` of that seed."""
        site = template_id.split("/")[1]
        return walk_id(site, seed), f"explore/{site}", seed

    def detail(self, task: Task) -> str:
        return "explore"

    async def setup(self) -> None:
        await super().setup()
        if self.config.writer == "llm" and self.config.base_url:
            from bootstrap.source import resolve_cache_path
            from synth.explore.llm import LLMWriter

            self.writer = LLMWriter(self.config, resolve_cache_path(self.config, self.cache_dir))  # type: ignore[arg-type]
        if self.config.check and self.config.base_url:
            from bootstrap.source import resolve_cache_path
            from synth.explore.check import InstructionCheck

            self.check = InstructionCheck(self.config, resolve_cache_path(self.config, self.cache_dir))

    async def teardown(self) -> None:
        for client in (self.writer, self.check):
            close = getattr(client, "aclose", None)
            if close is not None:
                await close()
        self.writer, self.check = template_free, None
        await super().teardown()

    def walker(self, site: str, memory: Memory | None = None, rng: random.Random | None = None) -> Walker:
        memory = memory if memory is not None else self.memories.setdefault(site, Memory())
        return Walker(memory, rng or self.rng, self.config.budget_steps, extra_words=self._content_words(site))

    def _content_words(self, site: str) -> list[str]:
        """Short text values of a sandbox site's content tables (none for the others)."""
        from synth.sites import SITES

        content = getattr(SITES[site], "content", None)
        if content is None:
            return []
        try:
            tables = content(self.config.content_seed)
        except Exception:  # noqa: BLE001 - a site without content tables explores with what it shows
            return []
        words = [str(v) for rows in tables.values() for row in rows[:40] for v in row.values() if isinstance(v, str)]
        return random.Random(self.config.seed).sample(words, min(200, len(words)))

    async def propose(self, task: Task, memory: Memory | None = None, rng: random.Random | None = None,
                      segment: str | None = None) -> Proposal:
        """One segment from `task` (a seed), sharing `memory` and `rng` (the
        source's own per site by default); `segment` names it in its ids."""
        memory = memory if memory is not None else self.memories.setdefault(task.site, Memory())
        rng = rng or self.rng
        walker = self.walker(task.site, memory, rng)
        walker.form_mode = rng.random() < self.config.form_share and bool(memory.form_routes)
        own = task.template_id.startswith("explore/")
        start = (task.start_url if own else None) or memory.start_url(rng, form=walker.form_mode)
        params = {"content_seed": task.params.get("content_seed", self.config.content_seed)}
        seed = seed_task(task.site, start, task.seed, params, segment)
        proposal = await explore_segment(await self.env(seed), seed, walker, self.writer, run_id=self.run_id,
                                         timeout_s=self.episode_timeout_s, answer_share=self.config.answer_share)
        if proposal.status == "proposed" and ungrounded_typing(proposal.segment):
            replayer = self.replayer()
            try:
                proposal = await feasibility.drop_stray_typing(replayer, proposal)
            finally:
                await replayer._pages.close()
        if self.check is not None:
            proposal = await self.check(proposal)
        return proposal

    async def run_all(self, task: Task) -> list[Trajectory]:
        """A walk: `segments` segments from a fresh memory and a generator
        seeded by the walk, one trajectory each (see `run`). A segment lost
        to the browser is run again on a fresh one from the same memory and
        generator state, so a retry does not change the walk."""
        memory, rng = Memory(), random.Random(stable_id("explore-walk-rng", task.site, task.seed))
        walk, walks = task.seed - self.config.seed, self.config.walks
        if walks > 1 and 0 <= walk < walks:
            await self.share_first_pages(task, memory, walk, walks)
        out = []
        for i in range(int(task.params.get("segments", self.config.segments))):
            for attempt in range(self.config.episode_retries + 1):
                saved, state, generation = copy.deepcopy(memory), rng.getstate(), self.generation
                t = self.recorded(await self.propose(task, memory, rng, segment=f"{task.task_id}/{i}"))
                if not lost_to_infrastructure(t) or attempt == self.config.episode_retries:
                    break
                memory = saved
                rng.setstate(state)
                await self.recover(generation)
            out.append(t)
        return out

    async def share_first_pages(self, task: Task, memory: Memory, walk: int, walks: int) -> list[str]:
        """Open the site's start page (nothing recorded) and give `memory`
        the routes it links to but this walk's share (Memory.share_first_pages).
        A browser lost meanwhile is replaced and the page opened again."""
        seed = seed_task(task.site, task.start_url, task.seed, {"content_seed": task.params.get(
            "content_seed", self.config.content_seed)})
        for attempt in range(self.config.episode_retries + 1):
            generation = self.generation
            try:
                async with await self.env(seed) as env:
                    obs = await env.reset(seed)
                    links = [c.href for c in await candidates(env, obs) if c.kind == "link" and c.href]
                return memory.share_first_pages(links, walk, walks)
            except Exception:
                if attempt == self.config.episode_retries:
                    raise
                await self.recover(generation)
        return []

    async def run(self, task: Task) -> Trajectory:
        return self.recorded(await self.propose(task))

    @staticmethod
    def recorded(proposal: Proposal) -> Trajectory:
        """The segment's trajectory, rejected with the proposal's reason when
        it proposes nothing the quality stage could accept (an episode that
        errored keeps its error)."""
        t = proposal.segment
        if proposal.status == "rejected" and t.error is None and proposal.reason:
            # a segment that proposed nothing failed only its seed's judge, which never passes: say why instead
            t = t.model_copy(update={"status": "rejected", "reject_reason": proposal.reason})
        return t

    async def explore(self, site: str, segments: int | None = None, existing: Sequence[str] = ()) -> list[Proposal]:
        """Explore `site` for `segments` segments; verify and dedup the proposals."""
        params = {"content_seed": self.config.content_seed}
        proposals = []
        for i in range(segments or self.config.segments):
            seed = Task(task_id=f"explore-{site}-{i}", template_id=f"explore/{site}", site=site, params=params,
                        seed=self.config.content_seed, judge={"type": "url_match"})
            proposals.append(await self.propose(seed))
        feasibility.dedup(proposals, existing, self.config.dedup_threshold)
        replayer = self.replayer()
        for p in proposals:
            await feasibility.verify(replayer, p, self.config.exhaustive_minimality)
        await replayer._pages.close()
        return proposals

    def replayer(self) -> Replayer:
        """The replay gate's Replayer, on this source's browser and sites."""
        replayer = Replayer(self.browser_config, self.site_options, self.run_id, SourceConfig(
            episode_timeout_s=self.episode_timeout_s))
        replayer._playwright, replayer._browser, replayer._sites = self._playwright, self._browser, self._sites
        return replayer


def walk_id(site: str, seed: int) -> str:
    return stable_id("explore-walk", site, seed)


def walk_task(site: str, seed: int, content_seed: int, segments: int) -> Task:
    """A walk of `site` (a task of the explore source's own plan): its seed
    seeds the walk; its judge never passes (a walk is judged segment by segment)."""
    return Task(task_id=walk_id(site, seed), template_id=f"explore/{site}", site=site, seed=seed,
                params={"content_seed": content_seed, "segments": segments},
                judge=JudgeSpec(type="state_match", path="$.__explore__", expected=True))
