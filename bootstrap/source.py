"""The bootstrap source: an OpenAI-compatible model acts as the web agent.

`sources.bootstrap` in a pipeline turns it on. Every episode records through
BrowserEnv like any source and is judged at the end; the pipeline keeps the
judge's verdict: a passing trajectory is accepted, a failing one is stored as
rejected with the judge's reason (or the error that ended it). Each
trajectory carries its tokens and cost, and `hinted` when the model was given
a privileged hint; `source_detail` is the model name.

Budget: `budget_usd` is for the whole source, split evenly over its actors
(worker processes). A worker checks its share before starting each episode;
once spent, `run` raises SourceExhausted and the pipeline stops feeding the
source. Episodes already running finish, so the total can pass the budget
by at most what those in-flight episodes cost. (A worker that Ray replaces
starts its count afresh; cached replies cost nothing.)

An endpoint that refuses the client outright (HTTP 401, 403, 404: a bad key,
no access, an unknown model) stops the source the same way after the episode
that found out, instead of failing every remaining task.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2

from synth.config import BootstrapSourceConfig, SourceConfig
from synth.env import BrowserConfig
from synth.episode import run_episode
from synth.schema import Task, Trajectory
from synth.sources import BrowserSource, SourceExhausted, register_source

from bootstrap.agent import Agent, AgentSettings
from bootstrap.client import ClientConfig, LLMClient
from bootstrap.prompts import Prompts

DEFAULT_CACHE = "~/.cache/synth/llm.sqlite"
MINIWOB_TIME_MS = 600_000
"""MiniWoB++ tasks end themselves after 10 s, meant for scripted agents; a
model takes seconds per step, so this source gives them the episode timeout
(unless the pipeline sets `episode_max_time_ms` for the site itself)."""

_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


def template_matches(template_id: str, patterns: list[str]) -> bool:
    """'miniwob/click-button' matches 'miniwob/click-button', 'click-button',
    'miniwob/*' or 'click-*'."""
    short = template_id.split("/", 1)[-1]
    return any(fnmatch.fnmatchcase(template_id, p) or fnmatch.fnmatchcase(short, p) for p in patterns)


def resolve_cache_path(config: BootstrapSourceConfig, cache_dir: str | None) -> str | None:
    """The reply cache file: `cache_path`, else `<cache_dir>/llm.sqlite` (the
    pipeline's local cache folder), else `$SYNTH_LLM_CACHE` or ~/.cache/synth."""
    if config.cache_path in (None, "", "off", "none"):
        return None
    if config.cache_path != "auto":
        return str(Path(config.cache_path).expanduser())
    if cache_dir:
        return str(Path(cache_dir).expanduser() / "llm.sqlite")
    return os.path.expanduser(os.environ.get("SYNTH_LLM_CACHE", DEFAULT_CACHE))


@register_source
class BootstrapSource(BrowserSource):
    kind = "bootstrap"
    config_model = BootstrapSourceConfig

    def __init__(
        self,
        browser: BrowserConfig | None = None,
        site_options: dict[str, dict[str, Any]] | None = None,
        run_id: str = "",
        config: SourceConfig | None = None,
        cache_dir: str | None = None,
    ) -> None:
        config = self.typed_config(config)
        site_options = {k: dict(v) for k, v in (site_options or {}).items()}
        site_options.setdefault("miniwob", {}).setdefault(
            "episode_max_time_ms", int(min(MINIWOB_TIME_MS, config.episode_timeout_s * 1000))
        )
        super().__init__(browser, site_options, run_id, config, cache_dir)
        self.config: BootstrapSourceConfig = config
        self.budget = config.budget_usd / config.actors if config.budget_usd else None
        self.client: LLMClient | None = None
        self.fatal: str | None = None
        self.prompts = Prompts(config.prompts_dir)
        self.settings = AgentSettings.from_config(config)

    # ---------------------------------------------------------------- pipeline hooks

    @classmethod
    def unavailable(cls, config: SourceConfig) -> str | None:
        assert isinstance(config, BootstrapSourceConfig)
        env = config.api_key_env or "OPENAI_API_KEY"
        has_key = config.api_key is not None or bool(ClientConfig.from_config(config).key())
        if not config.base_url and not has_key:
            return (
                "no endpoint configured: set sources.bootstrap.base_url (or $OPENAI_BASE_URL) "
                f"and/or an API key in ${env}"
            )
        host = urlsplit(config.base_url or "https://api.openai.com/v1").hostname or ""
        if not has_key and (host == "api.openai.com" or host.endswith(".openai.azure.com")):
            return f"no API key for {host}: set ${env} (or sources.bootstrap.api_key_env)"
        return None

    @classmethod
    def selects(cls, task: Task, config: SourceConfig) -> bool:
        assert isinstance(config, BootstrapSourceConfig)
        return config.templates is None or template_matches(task.template_id, config.templates)

    # ---------------------------------------------------------------- lifecycle

    def detail(self, task: Task) -> str:
        return self.config.model

    async def setup(self) -> None:
        await super().setup()
        self.start_client()

    def start_client(self) -> LLMClient:
        if self.client is None:
            client_config = ClientConfig.from_config(
                self.config, cache_path=resolve_cache_path(self.config, self.cache_dir)
            )
            self.client = LLMClient(client_config, share=1.0 / self.config.actors)
        return self.client

    @property
    def spent_usd(self) -> float:
        return self.client.stats.cost_usd if self.client is not None else 0.0

    def hint(self, task: Task, instruction: str | None = None) -> str | None:
        """The privileged hint for a task: `hint_text` (by template id or glob),
        else the first paragraph of its solver's docstring; None if hints are off."""
        if not self.config.hints:
            return None
        for pattern, text in self.config.hint_text.items():
            if template_matches(task.template_id, [pattern]):
                values = {
                    **task.params,
                    "template_id": task.template_id,
                    "seed": task.seed,
                    "instruction": instruction or task.instruction or "",
                }
                return _JINJA.from_string(text).render(**values).strip() or None
        if task.solver:
            try:
                from synth.solver import get_solver

                doc = (get_solver(task.solver).__doc__ or "").strip()
            except (KeyError, ImportError):
                doc = ""
            if doc:
                return doc.split("\n\n")[0].strip()
        return None

    async def run(self, task: Task) -> Trajectory:
        self.start_client()
        if self.fatal is not None:
            raise SourceExhausted(f"the endpoint refused the client: {self.fatal}")
        if self.budget is not None and self.spent_usd >= self.budget:
            total = self.config.budget_usd
            raise SourceExhausted(
                f"budget of ${total:g} spent (this worker's share ${self.budget:.4f}, spent ${self.spent_usd:.4f})"
            )
        agent = Agent(self.client, self.prompts, self.settings, hint=self.hint(task))
        trajectory = await run_episode(
            await self.env(task),
            task,
            agent,
            source=self.kind,
            source_detail=self.config.model,
            run_id=self.run_id,
            timeout_s=self.episode_timeout_s,
        )
        if agent.fatal is not None:
            self.fatal = agent.fatal  # every further task would fail alike: stop taking them
        update: dict[str, Any] = {
            "tokens_in": agent.tokens_in,
            "tokens_out": agent.tokens_out,
            "cost_usd": round(agent.cost_usd, 8),
            "hinted": agent.hinted,
        }
        if trajectory.error:
            update["error"] = self.client.redact(trajectory.error)
            if trajectory.reject_reason:
                update["reject_reason"] = self.client.redact(trajectory.reject_reason)
        return trajectory.model_copy(update=update)

    async def teardown(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        await super().teardown()
