"""Experiment configuration: strict pydantic models, loaded from YAML plus CLI overrides."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from automl.data import DataConfig, list_data_sources
from automl.data.digits import DigitsConfig
from automl.errors import UserError
from automl.paths import GivenPath, not_a_file
from search_spaces import ChoiceDim, FixedDim, FloatDim, IntDim, SearchSpaceConfig
from search_spaces.architecture import RECIPE
from search_spaces.space import ONE, PER_STAGE
from teachers import TeacherConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "digits.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainingConfig(Strict):
    """How each student is trained by distillation."""

    epochs: Annotated[int, Field(ge=1, le=1000, description="KD epochs per trial")] = 3
    batch_size: Annotated[int, Field(ge=2, le=4096, description="2 at least: batch norm")] = 64
    lr: Annotated[float, Field(gt=0, le=10)] = 2e-3
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 1e-4
    threads: Annotated[int, Field(ge=0, le=1024, description="torch threads; 0: all cores")] = 0
    train_subset: Annotated[int, Field(ge=10)] | None = Field(
        default=None,
        description="proxy search: train each student on this many training images "
        "(stratified, fixed by data.split_seed); null: all",
    )
    augment: bool = Field(
        default=False,
        description="students train on data.augment's views too (the teacher always does); "
        "off by default: see BENCHMARKS.md, augmentation",
    )
    kd_targets: Literal["auto", "cached", "online"] = Field(
        default="auto",
        description="teacher logits cached for kd_views fixed views per image (cheap on a "
        "CPU), or a teacher forward per batch (online); auto: online on CUDA, else cached",
    )
    kd_views: Annotated[int, Field(ge=1, le=64, description="cached augmented views per image")] = 4
    amp: bool = Field(default=True, description="bfloat16 autocast on CUDA")
    final_epochs: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        default=None,
        description="finalize: epochs of each front model's retraining on every training "
        "image; null: `epochs`",
    )
    final_max_epochs: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        default=None,
        description="finalize at equal compute: a front model of fewer MACs than the "
        "retrained models' median trains for more epochs, so that it costs about the median's "
        "MACs x final_epochs (Scratch-B, Liu et al. 2019), at most this many; null: "
        "final_epochs for every model",
    )
    final_models: Annotated[int, Field(ge=2, le=10_000)] | None = Field(
        default=None,
        description="finalize retrains at most this many proxy-front models, spread evenly "
        "over log MACs (the smallest and largest always among them); null: the whole front",
    )
    final_params_limits: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list,
        description="finalize also retrains, for each limit, the search's best student of at "
        "most that many parameters (by proxy validation accuracy, on the front or not), "
        "besides the final_models it spreads over the front",
    )

    @model_validator(mode="after")
    def _max_covers_final(self) -> TrainingConfig:
        base = self.final_epochs or self.epochs
        if self.final_max_epochs is not None and self.final_max_epochs < base:
            raise ValueError(
                f"final_max_epochs ({self.final_max_epochs}) must be at least the epochs of "
                f"the front's larger models, final_epochs or epochs ({base})"
            )
        return self

    @property
    def is_proxy(self) -> bool:
        """Trials train at lower fidelity than `finalize` retrains the front at."""
        longest = self.final_max_epochs or self.final_epochs or self.epochs
        return self.train_subset is not None or longest != self.epochs


class LatencyConfig(Strict):
    """How latency is measured: median of timed forward passes after warm-up, on the device
    the model will be deployed on (never silently on the training device)."""

    device: Literal["cpu", "cuda"] = Field(
        default="cpu", description="the deployment device latency is measured on"
    )
    runtime: Literal["onnxruntime", "torch"] = Field(
        default="onnxruntime",
        description="what the search times: the form pick ships (ONNX Runtime, int8 QDQ for "
        "students of at most 8 bits) or PyTorch eager",
    )
    batch_size: Annotated[int, Field(ge=1, le=1024, description="images per timed call")] = 1
    warmup: Annotated[int, Field(ge=0, le=10_000)] = 10
    repeats: Annotated[
        int, Field(ge=30, le=100_000, description="timed runs; the median is reported")
    ] = 50
    threads: Annotated[int, Field(ge=1, le=1024, description="fixed torch thread count")] = 1

    @model_validator(mode="after")
    def _onnxruntime_on_the_cpu(self) -> LatencyConfig:
        if self.runtime == "onnxruntime" and self.device != "cpu":
            raise ValueError(
                "runtime onnxruntime times the CPU execution provider; for latency on cuda set "
                "latency.runtime: torch"
            )
        return self


def _registered_sampler(name: str) -> str:
    from automl.controllers.samplers import list_samplers

    if name not in list_samplers():
        raise ValueError(f"unknown sampler {name!r}; registered: {', '.join(list_samplers())}")
    return name


def _registered_backend(name: str) -> str:
    from automl.controllers import list_controllers

    if name not in list_controllers():
        raise ValueError(f"unknown backend {name!r}; registered: {', '.join(list_controllers())}")
    return name


def _duration(value: Any) -> Any:
    from automl.controllers.time_budget import parse_duration

    return None if value is None else parse_duration(value)


class SearchConfig(Strict):
    """The controller: which sampler, how many completed trials, how long."""

    budget: Annotated[
        int, Field(ge=1, description="trials to train (those early stopping stops count)")
    ] = 100
    time_budget: Annotated[float | None, BeforeValidator(_duration)] = Field(
        default=None,
        description="seconds the search may take (90s, 30m, 2h), finalize included: no trial "
        "starts that would not end in time; with budget, whichever comes first; a resume "
        "counts the time already spent; null: no time limit",
    )
    sampler: Annotated[str, AfterValidator(_registered_sampler)] = "tpe"
    backend: Annotated[str, AfterValidator(_registered_backend)] = "optuna"
    max_failed_trials: Annotated[
        int, Field(ge=0, description="stop when this many trials have failed")
    ] = 50
    finalize: bool = Field(
        default=True,
        description="after a proxy search (training.train_subset or final_epochs), retrain "
        "the front at full fidelity",
    )
    max_latency_ms: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None,
        description="keep no student slower than this (the search's latency, latency.device); "
        "checked before training",
    )
    max_size_kb: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None,
        description="keep no student whose packed size exceeds this many kB (1000 bytes); "
        "checked before training",
    )
    min_accuracy: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="keep no student below this validation accuracy"
    )
    early_stop: Literal["none", "asha", "mo_asha"] = Field(
        default="none",
        description="stop trials at rungs of epochs (1, eta, eta**2, ... below training.epochs) "
        "that rank below the best 1/eta of their rung: by validation accuracy (asha) or by "
        "non-dominated sorting of every objective (mo_asha); both backends",
    )
    reduction_factor: Annotated[int, Field(ge=2, description="eta of early_stop")] = 3
    enqueue: list[dict[str, Any]] = Field(
        default_factory=list,
        description="architectures to evaluate before the sampler's own, e.g. the space's "
        "smallest corner: each fixes some dimensions (a per-stage one: a value for every "
        "stage, a list of one per stage, or low/high for a range's ends) and the sampler draws "
        "the rest; each start queues those the study has not seen",
    )


class RayConfig(Strict):
    """The Ray Tune backend (`search.backend: ray`): where it runs and how trials share it."""

    address: str | None = Field(
        default=None,
        description="HOST:PORT of a running cluster (or 'auto'); none starts a local instance "
        "on 127.0.0.1",
    )
    max_concurrent: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="trials at once; default: as many as the cluster's CPUs fit"
    )
    cpus_per_trial: Annotated[float, Field(gt=0)] = 1.0
    gpus_per_trial: Annotated[float, Field(ge=0)] = 0.0
    max_retries: Annotated[
        int, Field(ge=0, description="retries of a trial whose worker died (node failure)")
    ] = 3
    dashboard: bool = Field(default=False, description="start Ray's dashboard (local only)")


class ExperimentConfig(Strict):
    """Everything a search needs; round-trips through JSON into run.json."""

    plugins: list[str] = Field(
        default_factory=list,
        description="modules to import first: techniques registered outside the package",
    )
    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            pattern=r"^[A-Za-z0-9_.-]+$",
            description="run and study name: one folder name under runs/ (letters, digits, "
            "_ . -), not . or ..",
        ),
    ] = "digits"
    seed: Annotated[
        int, Field(ge=0, lt=2**31, description="trial i is seeded seed + i (numpy takes < 2**32)")
    ] = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    out: GivenPath | None = Field(default=None, description="run directory; default runs/<name>")
    data: DataConfig = Field(default_factory=DigitsConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    search_space: SearchSpaceConfig = Field(default_factory=SearchSpaceConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="before")
    @classmethod
    def _import_plugins(cls, raw: Any) -> Any:
        """Plugins register their techniques on import, before `search_space` is checked."""
        plugins = raw.get("plugins") if isinstance(raw, dict) else None
        for module in plugins if isinstance(plugins, list) else []:
            try:
                importlib.import_module(str(module))
            except SystemExit as exc:  # would end the command with its status, silently
                raise ValueError(
                    f"plugins: importing {module!r} called sys.exit({exc.code!r}); a plugin "
                    "registers techniques and returns"
                ) from None
            except Exception as exc:
                raise ValueError(
                    f"plugins: cannot import {module!r} ({type(exc).__name__}: {exc}); a plugin "
                    "is a module on the Python path, e.g. my_techniques for my_techniques.py"
                ) from None
        return raw

    @model_validator(mode="before")
    @classmethod
    def _ray_early_stop(cls, raw: Any) -> Any:
        """`ray.early_stop: asha` (Tune's ASHAScheduler, Ray only, eta 2) became
        `search.early_stop`, one implementation for both backends; old configs and run.json
        files read as that, with the reduction factor they had."""
        ray = raw.get("ray") if isinstance(raw, dict) else None
        if not isinstance(ray, dict) or "early_stop" not in ray:
            return raw
        ray = dict(ray)
        old = ray.pop("early_stop")
        search = dict(raw.get("search") or {})
        if old not in ("none", "asha"):
            raise ValueError(
                f"ray.early_stop: {old!r} is not allowed; early stopping is search.early_stop "
                "now (none | asha | mo_asha), for both backends"
            )
        if old == "asha":
            if search.get("early_stop", "none") not in ("none", "asha"):
                raise ValueError(
                    f"ray.early_stop: asha and search.early_stop: {search['early_stop']} both "
                    "stop trials early; keep search.early_stop only"
                )
            search = {"early_stop": "asha", "reduction_factor": 2, **search}
        return {**raw, "ray": ray, "search": search}

    @field_validator("name")
    @classmethod
    def _one_folder(cls, name: str) -> str:
        """runs/<name> must be a folder of its own: `.` and `..` are the current folder and
        its parent, where a run would be written among the user's files."""
        if set(name) == {"."}:
            raise ValueError(
                f"{name!r} is no folder of its own (. is the current folder, .. its parent); "
                "use letters, digits, _ . - with at least one that is not a dot"
            )
        return name

    @model_validator(mode="after")
    def _early_stop_has_rungs(self) -> ExperimentConfig:
        if self.search.early_stop != "none" and self.training.epochs < 2:
            raise ValueError(
                f"search.early_stop: {self.search.early_stop} compares trials after epoch 1, "
                f"2, ... below the last, and training.epochs is {self.training.epochs}; train "
                "for at least 2 epochs or set early_stop: none"
            )
        return self

    @model_validator(mode="after")
    def _enqueue_names_dimensions(self) -> ExperimentConfig:
        """Values are checked per stage once the teacher's stages are known (run_search)."""
        names = [*self.search_space.dimensions, *RECIPE]
        for i, entry in enumerate(self.search.enqueue):
            unknown = [k for k in entry if k not in names]
            if unknown:
                raise ValueError(
                    f"search.enqueue.{i}: {', '.join(unknown)} is no dimension of the search "
                    f"space; allowed: {', '.join(names)}"
                )
        return self

    @property
    def run_dir(self) -> Path:
        return self.out if self.out is not None else Path("runs") / self.name


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `dotted` (`search.budget`) in a raw config mapping, making sections as needed."""
    node = raw
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise UserError(f"cannot set {dotted}: {key} is not a section")
        node = child
    node[leaf] = value


# What a config may expand to: far above any real config (the shipped ones hold about 100
# values), far below what would hang the validator or fill a screen with one error.
MAX_YAML_VALUES = 10_000
MAX_YAML_DEPTH = 32


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (the last would win
    silently, and a bad first value would never be reported)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, path: Path) -> Any:
    """`text` as YAML, bounded: no key twice in a mapping, at most `MAX_YAML_DEPTH` levels and
    `MAX_YAML_VALUES` values once aliases are expanded (a few lines of aliases can stand for
    billions); a UserError names the file and the problem."""
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: builds no Python objects
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {_capped(str(exc))}") from None
    except RecursionError:
        raise UserError(f"{path}: nests too deeply (at most {MAX_YAML_DEPTH} levels)") from None
    _check_bounds(raw, path)
    return raw


def _check_bounds(raw: Any, path: Path) -> None:
    count = 0
    stack = [(raw, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_YAML_VALUES:
            raise UserError(
                f"{path}: holds more than {MAX_YAML_VALUES:,} values once its aliases (*name) "
                "are expanded; a config is a few hundred at most"
            )
        if depth > MAX_YAML_DEPTH:
            raise UserError(f"{path}: nests more than {MAX_YAML_DEPTH} levels deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _capped(text: str, limit: int = 500) -> str:
    """`text` cut to `limit` characters: an error message quotes what it was given, and a
    value can be megabytes long."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, or raise UserError naming the file and the problem."""
    if path.is_dir():
        raise UserError(f"config file {path} is a directory; name a YAML file in it")
    if not path.exists():
        raise UserError(f"config file not found: {path}")
    problem = not_a_file(path)
    if problem is not None:
        raise UserError(f"config file: {problem}")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (a YAML config is UTF-8 text)") from None
    raw = parse_yaml(text, path)
    if raw is None:
        raise UserError(
            f"{path} is empty; leave out --config to run the defaults ({DEFAULT_CONFIG.name}), "
            "or write the sections to change"
        )
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the top level must be a mapping of sections, got {type(raw)}")
    return raw


def validate_config(
    raw: dict[str, Any], source: str, flags: dict[str, str] | None = None
) -> ExperimentConfig:
    """Validate a raw mapping; errors become one UserError naming each bad field, and the
    command-line flag a value came from (`flags`: dotted key -> flag)."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source, flags)) from None


def load_config(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    said_as: dict[str, str] | None = None,
) -> ExperimentConfig:
    """Load `path` (default configs/digits.yaml), apply dotted-key overrides (the command's
    flags), validate. An error names an override as `said_as` does (dotted key -> how the
    user wrote it), else as the flag `--budget` for `search.budget`."""
    path = path or DEFAULT_CONFIG
    raw = read_yaml(path)
    flags = {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_dotted(raw, dotted, value)
            flags[dotted] = (said_as or {}).get(dotted) or flag_of(dotted)
    return validate_config(raw, str(path), flags)


def flag_of(dotted: str) -> str:
    """The command-line flag that sets a config key: `--budget` for `search.budget`."""
    return "--" + dotted.rsplit(".", 1)[-1].replace("_", "-")


def format_validation_error(
    exc: ValidationError, source: str, flags: dict[str, str] | None = None
) -> str:
    """One line per problem: the dotted field (and the flag that set it), what is wrong, the
    value given."""
    lines = [f"invalid configuration in {source}" + (" and the command's flags:" if flags else ":")]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not _is_tag(p) and p != "dimensions")
        msg = err["msg"].removeprefix("Value error, ")
        named = _NAMED.match(msg)  # "bits: ..." from a validator names a key below `loc`
        if named:
            loc, text = ".".join(filter(None, [loc, named["key"]])), named["rest"]
        elif err["type"] == "extra_forbidden":
            allowed = _allowed_keys(err["loc"][:-1])
            text = "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        else:
            given = err.get("input")
            text = msg + ("" if isinstance(given, dict) else f" (got {_capped(repr(given), 200)})")
        where = f"{flags[loc]} ({loc})" if flags and loc in flags else loc
        lines.append(f"  {where}: {_capped(text)}")
    if len(lines) > MAX_PROBLEMS + 1:
        lines[MAX_PROBLEMS + 1 :] = [f"  ... and {len(lines) - MAX_PROBLEMS - 1} more problems"]
    return "\n".join(lines)


MAX_PROBLEMS = 20  # problems listed in one error message


_NAMED = re.compile(r"^(?P<key>[A-Za-z_][\w.]*): (?P<rest>.+)$", re.DOTALL)


def _is_tag(part: Any) -> bool:
    """Discriminated unions add the tag value to error locations; it is no field name."""
    return isinstance(part, str) and part in _TAGS


_DIMENSIONS = {"float": FloatDim, "int": IntDim, "choice": ChoiceDim, "fixed": FixedDim}
_TAGS = {*list_data_sources(), *_DIMENSIONS, ONE, PER_STAGE}


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model at `loc`, for an 'unknown key' message."""
    if loc and loc[-1] in _DIMENSIONS:  # inside a search-space dimension, tagged by its type
        return sorted(_DIMENSIONS[loc[-1]].model_fields)
    node: Any = ExperimentConfig
    for part in loc:
        members = _models_in(node)
        if _is_tag(part):
            node = next((m for m in members if _tag_of(m) == part), None)
            continue
        if len(members) != 1 or part not in members[0].model_fields:
            return []
        node = members[0].model_fields[part].annotation
    members = _models_in(node)
    return sorted(members[0].model_fields) if len(members) == 1 else []


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) + tuple(getattr(annotation, "__metadata__", ())):
        found.extend(_models_in(arg))
    return found


def _tag_of(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("type")
    return field.default if field is not None else None
