"""Pipeline configuration (`pipelines/*.yaml`) as pydantic models.

`load_yaml(path, Model)` is shared by pipelines and task templates: a YAML
error or a field that does not validate becomes a ConfigError whose message
names the file, the line and the field path, e.g.

    pipelines/web.yaml:12: sources.solver.actors: Input should be greater than 0 (got 0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from synth.env import BrowserConfig

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """Bad configuration: the message says where and what to change."""


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at a pydantic error location."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if match is None:
                # Unknown field: point at its key.
                match_key = next((k for k, _ in node.value if getattr(k, "value", None) == key), None)
                return match_key.start_mark.line + 1 if match_key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line


def format_validation_error(path: Path | str, err: ValidationError, root: yaml.Node | None) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        field = ".".join(str(x) for x in loc) or "(top level)"
        line = _line_of(root, loc)
        where = f"{path}:{line}" if line else str(path)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the documented fields)"
        elif (
            "input" in e and e["type"] != "missing" and not isinstance(e["input"], (dict, list))
            and not getattr(e.get("ctx", {}).get("error"), "hides_input", False)  # a URI with credentials
        ):
            msg += f" (got {e['input']!r})"
        lines.append(f"{where}: {field}: {msg}")
    return "\n".join(lines)


def load_yaml(path: Path | str, model: type[M]) -> M:
    """Read a YAML file into `model`; every problem raises ConfigError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(path, e, root)) from None


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    actors: int = Field(1, gt=0, description="Ray actors, each with one browser")
    contexts_per_actor: int = Field(4, gt=0, description="episodes each actor runs at once")
    num_cpus: float = Field(1.0, ge=0, description="CPUs Ray reserves per actor")
    memory_mb: int | None = Field(None, gt=0, description="memory Ray reserves per actor")
    episode_timeout_s: float = Field(120.0, gt=0)
    episode_retries: int = Field(
        2, ge=0, description="retries of an episode lost to the browser (crash, hang), each on a fresh browser"
    )
    max_failure_share: float = Field(
        0.5, gt=0, le=1, description="stop the run when more than this share of episodes end in an error"
    )


class SolverSourceConfig(SourceConfig):
    """Programmatic solvers: every selected task that names a solver."""


class BootstrapSourceConfig(SourceConfig):
    """The LLM agent (bootstrap/): an OpenAI-compatible endpoint.

    Budget and limits are for the whole source: each of its `actors` worker
    processes takes an equal share (budget_usd / actors, and so on)."""

    enabled: bool = False
    contexts_per_actor: int = Field(8, gt=0, description="episodes each actor runs at once (mostly waiting on the model)")
    episode_timeout_s: float = Field(600.0, gt=0)
    # the endpoint
    base_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. http://localhost:8000/v1; default $OPENAI_BASE_URL, else OpenAI's")
    model: str = Field("gpt-4o", min_length=1)
    api_key: SecretStr | None = Field(None, description="prefer api_key_env; never logged or stored")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="environment variable holding the key")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="extra HTTP headers (values kept secret)")
    # the agent
    use_tools: bool = Field(False, description="act through the API's tool calling instead of text function calls")
    tool_choice: str | None = Field("auto", description="auto | required | none (with use_tools)")
    memory: bool = Field(True, description="a running note the model updates each step")
    hints: bool = Field(False, description="give a privileged hint (hint_text, else the template's solver doc); marks trajectories hinted")
    hint_text: dict[str, str] = Field(default_factory=dict, description="hint per template id or glob, jinja2 with the task's params")
    history_window: int = Field(8, ge=0, description="previous actions shown in each prompt")
    screenshots: bool = Field(True, description="attach the screenshot (off for text-only models)")
    screenshot_max_width: int = Field(1024, gt=0, description="screenshots wider than this are scaled down")
    image_detail: Literal["auto", "low", "high"] | None = Field(None, description="OpenAI image detail; null: not sent")
    max_prompt_elements: int = Field(200, gt=0, description="element lines per prompt")
    max_failed_steps: int = Field(2, gt=0, description="unparseable steps in a row (after repair) that end an episode")
    temperature: float | None = Field(0.0, ge=0)
    max_tokens: int | None = Field(512, gt=0, description="reply token cap per call")
    prompts_dir: str | None = Field(None, description="folder with agent_*.j2 (default templates/prompts)")
    templates: list[str] | None = Field(None, description="template ids or globs this source runs (default: all)")
    # cost, retries, limits, cache
    prices: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="USD per million tokens by model (or model prefix): {input_per_mtok, output_per_mtok}; "
        "gpt-4o and gpt-4o-mini are built in",
    )
    budget_usd: float | None = Field(None, gt=0, description="stop the source once this much is spent (whole source)")
    max_concurrency: int = Field(64, gt=0, description="requests in flight to the endpoint (whole source)")
    requests_per_minute: int | None = Field(None, gt=0)
    tokens_per_minute: int | None = Field(None, gt=0)
    request_timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(6, ge=0, description="retries of 429, 5xx, timeouts and connection errors")
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    cache_path: str | None = Field(
        "auto",
        description="SQLite reply cache: a path, 'auto' (<cache_dir>/llm.sqlite, see the pipeline's cache_dir) "
        "or null (off)",
    )

    @field_validator("prices")
    @classmethod
    def _price_keys(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for model, price in v.items():
            unknown = sorted(set(price) - {"input_per_mtok", "output_per_mtok"})
            if unknown:
                raise ValueError(f"{model}: unknown keys {unknown}; use input_per_mtok and output_per_mtok")
        return v

    @model_validator(mode="after")
    def _from_environment(self) -> "BootstrapSourceConfig":
        import os

        if self.base_url is None and os.environ.get("OPENAI_BASE_URL"):
            self.base_url = os.environ["OPENAI_BASE_URL"]
        if self.api_key is None and self.api_key_env and os.environ.get(self.api_key_env):
            self.api_key = SecretStr(os.environ[self.api_key_env])
        return self


class HumanSourceConfig(BaseModel):
    """People (annotation_ui/): tasks go to a queue, finished ones are harvested.

    `synth run` enqueues the tasks `select` picks (idempotently) and harvests
    the trajectories labelers submitted since the last run into staging;
    `synth annotate serve` reads the same queue file (`db`)."""

    model_config = ConfigDict(extra="forbid")

    class Select(BaseModel):
        """Which planned tasks go to people (a task qualifies if any rule picks it)."""

        model_config = ConfigDict(extra="forbid")
        no_solver: bool = Field(True, description="tasks whose template names no solver")
        bootstrap_failed: bool = Field(True, description="tasks the LLM agent's trajectory in staging failed")
        templates: list[str] = Field(
            default_factory=list, description="template ids (fnmatch patterns, e.g. 'miniwob/click-*') whose tasks all go to people"
        )
        sample: float = Field(0.0, ge=0, le=1, description="fraction of the other planned tasks (chosen by task id)")

    enabled: bool = False
    db: str = Field(
        "annotations.db",
        description="the queue's SQLite file, relative to the pipeline's output_dir (to its cache_dir when "
        "output_dir is remote: SQLite needs a local disk)",
    )
    lease_seconds: float = Field(600.0, gt=0, description="a task taken by a labeler returns to the queue after this long without a heartbeat")
    max_skips: int = Field(3, gt=0, description="a task skipped by this many labelers leaves the queue")
    select: Select = Field(default_factory=lambda: HumanSourceConfig.Select())
    overlap: float = Field(0.0, ge=0, le=1, description="fraction of the enqueued tasks done by several labelers (agreement)")
    overlap_labelers: int = Field(2, ge=2, description="labelers per overlap task")
    max_new_tasks: int | None = Field(None, gt=0, description="enqueue at most this many new tasks per run")
    guidelines: str = Field(
        "- Read the instruction, then do the task **as a careful user would**: no detours, no extra clicks.\n"
        "- Click on the page picture to click in the browser; type into the focused field with *Type*.\n"
        "- Add a short thought before an action when the reason is not obvious.\n"
        "- Made a wrong move? **Undo** (U) replays the task without your last step.\n"
        "- Questions: put the answer in *Answer* before you submit.\n"
        "- Skip (S) a task that is unclear, impossible or broken, and say why.\n",
        description="markdown shown to labelers (rendered without raw HTML)",
    )
    guidelines_file: str | None = Field(None, description="a markdown file, relative to the pipeline file; replaces guidelines")
    site_options: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"miniwob": {"episode_max_time_ms": 3_600_000}},
        description="site options for labelers' episodes (people need more than MiniWoB's 10 s)",
    )


class SourcesConfig(BaseModel):
    """The bundled sources' sections, and one per plugin source (a
    `synth.sources` entry point) under its kind, checked against that
    source's `config_model` when the pipeline is prepared."""

    model_config = ConfigDict(extra="allow")
    solver: SolverSourceConfig = Field(default_factory=SolverSourceConfig)
    bootstrap: BootstrapSourceConfig = Field(default_factory=BootstrapSourceConfig)
    human: HumanSourceConfig = Field(default_factory=HumanSourceConfig)

    def plugin_sections(self) -> dict[str, Any]:
        """The sections of plugin sources, as written."""
        return dict(self.model_extra or {})


class TaskSelection(BaseModel):
    """Which templates to instantiate and how many seeds of each."""

    model_config = ConfigDict(extra="forbid")
    templates: str = Field(description="a template file or a folder of them, relative to the pipeline file")
    include: list[str] | None = Field(None, description="template ids to keep (default: all)")
    seeds_per_template: int | None = Field(None, gt=0, description="override each template's seed count")
    site_options: dict[str, Any] = Field(default_factory=dict)


class RayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str | None = Field(None, description="join a cluster; default $RAY_ADDRESS or a local Ray")
    num_cpus: int | None = Field(None, gt=0, description="CPUs for a local Ray (default: all)")
    batch_size: int = Field(8, gt=0, description="tasks per actor call (and per staging file)")


def _sft_format_names() -> list[str]:
    from synth.export.formats import FORMATS

    return list(FORMATS)


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows_per_shard: int = Field(20000, gt=0, description="steps rows (and SFT samples) per shard")
    row_group_mb: int = Field(64, gt=0, description="target size of a row group in image configs")
    license: str = "apache-2.0"
    formats: list[str] = Field(
        default_factory=_sft_format_names,
        description="SFT views of the accepted trajectories, each written to data/sft-<format>/: "
        "aguvis-grounding, aguvis-planning, cogagent, messages (ms-swift, LLaMA-Factory), openai (JSONL); "
        "[] for none",
    )

    native: list[str] = Field(
        default_factory=list,
        description="native files each trainer's own code reads, written to <output_dir>/native/<name>/ on every "
        "run: aguvis (stage1/stage2 JSON + images/), cogagent (finetune.py's train/dev JSONL + images/)",
    )
    images: Literal["inline", "files"] = Field(
        "inline",
        description="how the Parquet SFT views hold screenshots: inline (each config self-contained: `datasets` "
        "decodes them, the Hub's viewer shows them) or files (each distinct screenshot once under data/images/, "
        "the views name it by a path from the dataset root: LLaMA-Factory and ms-swift (ROOT_IMAGE_DIR) read "
        "them, `datasets` gives the path); steps and sft-openai stay inline",
    )

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, v: list[str]) -> list[str]:
        from synth.export.formats import check_names

        return check_names(v)

    @field_validator("native")
    @classmethod
    def _known_native(cls, v: list[str]) -> list[str]:
        from synth.export.native import check_native

        return check_native(v)


class DedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    threshold: float | None = Field(0.8, gt=0, le=1, description="MinHash LSH Jaccard threshold; null: exact only")
    num_perm: int = Field(128, ge=16, le=1024)
    tolerance: float = Field(
        0.02, ge=0, le=1,
        description="near duplicates click within this distance of each other (a fraction of the screenshot); "
        "further apart, a click is a different grounding sample",
    )
    reference: list[str] = Field(
        default_factory=list,
        description="previously accepted data to dedup against: `data/trajectories` folders or Parquet files, "
        "relative to the pipeline file",
    )


class ReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    sample_rate: float = Field(1.0, ge=0, le=1, description="share of trajectories replayed (a stable sample)")
    actors: int = Field(2, gt=0)
    contexts_per_actor: int = Field(3, gt=0)
    num_cpus: float = Field(1.0, ge=0)
    episode_timeout_s: float | None = Field(
        None, gt=0,
        description="time for one replay; default: sources.solver's episode_timeout_s, at least 60 s. A replay acts the recorded "
        "steps as a solver does: a budget shorter than the recording had rejects trajectories for the machine's "
        "load (at load 90, two 32-step shop replays overran a 60 s budget their recordings were not held to)",
    )
    ahead: bool = Field(
        True,
        description="replay accepted trajectories on replay actors while recording goes on, instead of all "
        "after it (those actors reserve no CPU: they use what recording leaves and never hold a source back)",
    )
    relocated: Literal["flag", "reject"] = Field(
        "flag",
        description="a replay that passed only by finding a step's target by its selector (the layout moved "
        "from the recorded point): flag it (`replay_relocated`, still accepted) or reject it",
    )


class ConsistencyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    ignore: list[str] = Field(default_factory=list, description="flags recorded but not rejecting")

    @field_validator("ignore")
    @classmethod
    def _known_flags(cls, v: list[str]) -> list[str]:
        from synth.quality.consistency import FLAGS

        unknown = sorted(set(v) - set(FLAGS))
        if unknown:
            raise ValueError(f"unknown flags {unknown}; known: {', '.join(FLAGS)}")
        return v


class MinimalityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["off", "flag", "drop"] = Field(
        "flag", description="flag: reject trajectories with unnecessary steps; drop: remove those steps (re-verified)"
    )
    exhaustive: bool = Field(False, description="try every step, not only the steps that changed nothing")


class MistakesConfig(BaseModel):
    """Real mistakes and their corrections, found and labelled in the
    trajectories of sources where someone acts and can err (synth/quality/mistakes.py)."""

    model_config = ConfigDict(extra="forbid")
    sources: list[str] = Field(
        default_factory=lambda: ["bootstrap", "human"],
        description="source kinds whose trajectories are searched (the LLM agent, labelers; [] turns it off); "
        "solvers' and exploration's steps are a program's choices, recovery variants come labelled",
    )


class MonologueConfig(BaseModel):
    """Inner monologue written by an LLM for steps without one (Aguvis); the
    client fields are the bootstrap client's (bootstrap/client.py)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint; default $OPENAI_BASE_URL or OpenAI")
    model: str = "gpt-4o"
    api_key: SecretStr | None = Field(None, description="prefer api_key_env: a key in a YAML file is easy to leak")
    api_key_env: str | None = "OPENAI_API_KEY"
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    concurrency: int = Field(8, gt=0)
    request_timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(6, ge=0)

    def unavailable(self) -> str | None:
        import os

        if not (self.base_url or os.environ.get("OPENAI_BASE_URL")):
            if not (self.api_key or (self.api_key_env and os.environ.get(self.api_key_env))):
                return f"no endpoint or key (set quality.monologue.base_url or ${self.api_key_env})"
        return None


LLM_JUDGE_ENV = "SYNTH_LLM_JUDGE"
"""Where a pipeline leaves `judges.llm` for its workers (JudgesConfig.export_env)."""


class LLMJudgeConfig(BaseModel):
    """The endpoint the `llm_judge` judge type asks (synth/llm_judge.py); the
    client fields are the bootstrap client's (bootstrap/client.py): the same
    retries, limits, reply cache and prices. Limits are per worker process."""

    model_config = ConfigDict(extra="forbid")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint; default $OPENAI_BASE_URL or OpenAI")
    model: str = Field("gpt-4o", min_length=1)
    api_key: SecretStr | None = Field(None, description="prefer api_key_env: a key in a YAML file is easy to leak")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="environment variable holding the key")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="extra HTTP headers (values kept secret)")
    prices: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="USD per million tokens by model (or prefix): {input_per_mtok, output_per_mtok}"
    )
    temperature: float | None = Field(0.0, ge=0)
    max_tokens: int | None = Field(300, gt=0, description="reply token cap per call")
    request_timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(6, ge=0, description="retries of 429, 5xx, timeouts and connection errors")
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    max_concurrency: int = Field(16, gt=0, description="judge requests in flight per worker process")
    requests_per_minute: int | None = Field(None, gt=0)
    tokens_per_minute: int | None = Field(None, gt=0)
    cache_path: str | None = Field(
        "auto", description="SQLite reply cache: a path, 'auto' (<cache_dir>/llm.sqlite) or null (off)"
    )
    repairs: int = Field(1, ge=0, description="re-asks after a reply that is not a verdict, each quoting the problem")
    screenshots: int = Field(2, ge=0, le=6, description="screenshots sent: the final page, then the last steps' before it")
    screenshot_max_width: int = Field(1024, gt=0, description="screenshots wider than this are scaled down")
    max_actions: int = Field(40, gt=0, description="actions listed in the prompt (the last ones)")
    page_text_chars: int = Field(3000, ge=0, description="visible text of the final page sent (0: none)")

    _price_keys = field_validator("prices")(BootstrapSourceConfig._price_keys.__func__)

    def unavailable(self) -> str | None:
        """Why the judge cannot ask anyone (None: it can)."""
        import os

        if self.base_url or os.environ.get("OPENAI_BASE_URL"):
            return None
        if self.api_key or (self.api_key_env and os.environ.get(self.api_key_env)):
            return None
        return f"no endpoint or key (set judges.llm.base_url in the pipeline, or ${self.api_key_env})"


class JudgesConfig(BaseModel):
    """What judges need beyond their template's parameters."""

    model_config = ConfigDict(extra="forbid")
    llm: LLMJudgeConfig = Field(default_factory=LLMJudgeConfig, description="the llm_judge judge type's endpoint")

    def export_env(self, cache_dir: str | None) -> None:
        """Hand `llm` to the judges of this process and of the Ray workers it
        starts (they inherit the environment, as with $SYNTH_PLUGINS): the
        config as JSON in $SYNTH_LLM_JUDGE, `cache_path: auto` resolved to
        `<cache_dir>/llm.sqlite`. A key written in the YAML travels in it too:
        prefer `api_key_env`."""
        import json
        import os

        data = self.llm.model_dump(mode="python")
        data["api_key"] = self.llm.api_key.get_secret_value() if self.llm.api_key else None
        data["headers"] = {k: v.get_secret_value() for k, v in self.llm.headers.items()}
        if data["cache_path"] == "auto":
            data["cache_path"] = os.path.join(cache_dir, "llm.sqlite") if cache_dir else None
        os.environ[LLM_JUDGE_ENV] = json.dumps(data)


class JudgeAccuracyConfig(BaseModel):
    """Trust a template's judge only as far as it was measured
    (`synth judges eval PIPELINE --json FILE`)."""

    model_config = ConfigDict(extra="forbid")
    report: str | None = Field(
        None, description="a `synth judges eval --json` report, relative to the pipeline file; null: no gate"
    )
    min_precision: float = Field(1.0, ge=0, le=1, description="templates whose judge measured lower are rejected")
    unmeasured: Literal["accept", "reject"] = Field(
        "accept", description="templates the report does not cover (or with no accepts measured)"
    )


class QualityConfig(BaseModel):
    """The gates between staging and the shards (synth/quality)."""

    model_config = ConfigDict(extra="forbid")
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    consistency: ConsistencyConfig = Field(default_factory=ConsistencyConfig)
    minimality: MinimalityConfig = Field(default_factory=MinimalityConfig)
    mistakes: MistakesConfig = Field(default_factory=MistakesConfig)
    monologue: MonologueConfig = Field(default_factory=MonologueConfig)
    judge_accuracy: JudgeAccuracyConfig = Field(default_factory=JudgeAccuracyConfig)


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    output_dir: str = Field(
        description="a local folder (relative to the working directory) or a URI pyarrow opens, shared by every "
        "node: s3://bucket/prefix (?region=..., ?endpoint_override=host:port&scheme=http for MinIO), gs://bucket/prefix"
    )
    cache_dir: str | None = Field(
        None,
        description="a local folder for the SQLite files that cannot live on an object store (LLM reply caches; the "
        "annotation queue when output_dir is remote); default <output_dir>/cache for a local output_dir, "
        "~/.cache/synth/<hash of output_dir> for a remote one",
    )
    plugins: list[str] = Field(
        default_factory=list,
        description="modules to import in the driver and every worker before names are looked up (their "
        "@register_site, @register_solver, ... run); importable from the installed packages, the pipeline's "
        "folder or the working directory. Installed packages can instead declare entry points (synth.plugins)",
    )
    tasks: list[TaskSelection] = Field(min_length=1)
    browser: BrowserConfig = Field(default_factory=BrowserConfig)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    judges: JudgesConfig = Field(default_factory=JudgesConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    @field_validator("output_dir")
    @classmethod
    def _openable(cls, v: str) -> str:
        from synth.storage import check

        check(v)  # a StorageError (a ValueError) says what is wrong
        return v


def load_pipeline(path: Path | str) -> PipelineConfig:
    return load_yaml(path, PipelineConfig)
