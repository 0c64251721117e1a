"""The search-space config (YAML `search_space:`) and its binding to a teacher's stages.

The space is composed from the techniques it enables: each brings the dimensions of its
`Params`, with defaults from its `space`. In YAML they sit flat beside `techniques`:

    search_space:
      techniques: [depth, channels, weight_quant]
      channel_keep: {type: float, low: 0.25, high: 1.0, step: 0.125}   # channels, per stage
      blocks: {type: int}                                              # depth, per stage
      bits: [8, 8, {type: choice, values: [4, 8]}, 4]                  # weight_quant, per stage
      criterion: l2                                                    # channels, global

Sampling goes stage by stage (each technique's per-stage fields, techniques in name order),
then the global fields in the same order, then the distillation recipe. That is the order in
which architectures were drawn before techniques were plugins, so seeded searches of the
default techniques draw what they drew then.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    TypeAdapter,
    field_validator,
    model_serializer,
    model_validator,
)

from automl.compress import (
    LEGACY_TECHNIQUES,
    Technique,
    list_techniques,
    owner_of,
    techniques_in_order,
)
from automl.compress._base import check_field_values
from automl.compress._criteria import known_criterion
from automl.stages import Stage
from search_spaces.architecture import RECIPE, Architecture
from search_spaces.dimensions import Dimension, FixedDim, FloatDim, IntDim, Suggester


def _shape(raw: Any) -> str:
    return PER_STAGE if isinstance(raw, list) else ONE


# A list is one dimension per stage, anything else one dimension for all: chosen by shape, so
# a mistake inside a list is reported inside the list, not as a fixed value that is a list.
ONE, PER_STAGE = "one", "per_stage"
StageDimension = Annotated[
    Annotated[Dimension, Tag(ONE)]
    | Annotated[list[Dimension], Field(min_length=1), Tag(PER_STAGE)],
    Discriminator(_shape),
]
_STAGE_DIMENSION = TypeAdapter(StageDimension)
_OWN_FIELDS = (
    "name",
    "techniques",
    "shared_stages",
    "sensitivity_max_drop",
    "sensitivity_criterion",
    "sensitivity_epochs",
    *RECIPE,
    "dimensions",
)


class SearchSpaceConfig(BaseModel):
    """What the search may vary. `name` picks a registered preset whose values fill what the YAML
    leaves out; each technique's dimensions default to the technique's own. A per-stage
    dimension takes one spec for every stage, or a list with one spec per stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "stagewise"
    techniques: tuple[str, ...] = Field(
        default=LEGACY_TECHNIQUES,
        min_length=1,
        validate_default=True,
        description="compression techniques to search",
    )
    shared_stages: bool = Field(
        default=False,
        description="one value of each per-stage dimension for every stage, where stages can "
        "share one (a stage's blocks cannot)",
    )
    sensitivity_max_drop: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="narrow each stage's channel_keep and blocks to what a sensitivity scan "
        "allows: pruning one stage alone costs at most this much validation accuracy (0.01: "
        "one point); null: no narrowing",
    )
    sensitivity_criterion: Annotated[str, AfterValidator(known_criterion)] = Field(
        default="l2", description="the channel criterion of that scan"
    )
    sensitivity_epochs: int = Field(
        default=0, ge=0, le=100, description="distillation epochs per scanned change (0: none)"
    )
    kd_temperature: Dimension = FloatDim(low=1.0, high=8.0)
    kd_alpha: Dimension = FloatDim(low=0.3, high=1.0)
    # FitNets' stage-output loss: off unless a config asks (automl/feature_kd.py)
    kd_feature_weight: Dimension = FixedDim(value=0.0)
    # The techniques' dimensions; flat beside the fields above in YAML and JSON.
    dimensions: dict[str, StageDimension] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _preset_then_gather_dimensions(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        from search_spaces import SEARCH_SPACES

        name = raw.get("name", "stagewise")
        if not isinstance(name, str) or name not in SEARCH_SPACES:
            raise ValueError(
                f"unknown search space {str(name)[:100]!r}; registered: {sorted(SEARCH_SPACES)}"
            )
        merged = {**SEARCH_SPACES[name], **raw}
        own = {k: v for k, v in merged.items() if k in _OWN_FIELDS}
        dims = {**own.pop("dimensions", {}), **{k: v for k, v in merged.items() if k not in own}}
        dims.pop("dimensions", None)
        return {**own, "dimensions": dims}

    @field_validator("techniques")
    @classmethod
    def _known_techniques(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in list_techniques()]
        if unknown:
            raise ValueError(f"unknown technique(s) {unknown}; registered: {list_techniques()}")
        if len(set(names)) != len(names):
            raise ValueError(f"a technique is listed twice: {list(names)}")
        return tuple(t.name for t in techniques_in_order(names))

    @model_validator(mode="after")
    def _dimensions_of_enabled_techniques(self) -> SearchSpaceConfig:
        for name in RECIPE:
            _check_recipe(name, getattr(self, name))
        enabled = techniques_in_order(self.techniques)
        fields = {f: t for t in enabled for f in t.Params.model_fields}
        for key in self.dimensions:
            if key not in fields:
                raise ValueError(_unknown_dimension(key, self.techniques, sorted(fields)))
        for t in enabled:
            for f in t.Params.model_fields:
                if f not in self.dimensions:
                    self.dimensions[f] = _STAGE_DIMENSION.validate_python(t.space[f])
                dims = self.dimensions[f]
                if isinstance(dims, list) and f in t.global_fields():
                    raise ValueError(f"{f}: one dimension for the whole network, not a list")
                shared = self.shared_stages and t.shareable(f)
                if shared and isinstance(dims, list) and len({repr(d) for d in dims}) > 1:
                    raise ValueError(
                        f"{f}: the stages share one value (shared_stages, as in the "
                        f"{self.name!r} space), so give one dimension, not one per stage"
                    )
                for dim in dims if isinstance(dims, list) else [dims]:
                    _check_dimension(t, f, dim)
        return self

    @model_serializer(mode="wrap")
    def _flat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        doc = handler(self)
        return {**{k: v for k, v in doc.items() if k != "dimensions"}, **doc["dimensions"]}

    def bind(self, stages: list[Stage]) -> BoundSearchSpace:
        """Resolve per-stage dimensions against a teacher's stages; errors name the stage."""
        return BoundSearchSpace(self, stages)


def _unknown_dimension(key: str, enabled: tuple[str, ...], allowed: list[str]) -> str:
    owner = owner_of(key)
    if owner is not None:
        return (
            f"{key}: a dimension of technique {owner.name!r}, which is not enabled "
            f"(techniques: {list(enabled)}); add it to `techniques` or drop {key}"
        )
    return f"{key}: unknown key; allowed: {', '.join([*allowed, *_OWN_FIELDS[:-1]])}"


def _unbounded(dim: Any) -> bool:
    return isinstance(dim, IntDim) and (dim.low is None or dim.high is None)


def _needs_bounds(field: str) -> ValueError:
    return ValueError(
        f"{field}: an int dimension needs low and high here (only a per-stage count with a "
        "range of its own, like blocks, may leave them out)"
    )


def _check_dimension(t: Technique, field: str, dim: Any) -> None:
    """Every value `dim` can give must be allowed by the technique (ends of a long range)."""
    if _unbounded(dim):
        if field in t.global_fields():
            raise _needs_bounds(field)
        return  # bound per stage by the technique's stage_range, checked when binding
    try:
        t.check_values(field, dim.probe())
    except ValueError as exc:
        raise ValueError(f"{exc} (technique {t.name!r})") from None


def _check_recipe(name: str, dim: Any) -> None:
    if _unbounded(dim):
        raise _needs_bounds(name)
    check_field_values(Architecture.model_fields[name], name, dim.probe(), per_stage=False)


class BoundSearchSpace:
    """A SearchSpaceConfig resolved against the stages of one teacher; it samples Architectures."""

    def __init__(self, config: SearchSpaceConfig, stages: list[Stage]) -> None:
        self.config = config
        self.stages = stages
        # Name order: the order in which dimensions are sampled (see the module docstring).
        self.techniques = sorted(techniques_in_order(config.techniques), key=lambda t: t.name)
        self.stage_dims: list[dict[str, Any]] = [{} for _ in stages]
        for t in self.techniques:
            for f in t.stage_fields():
                per_stage = _per_stage(config.dimensions[f], len(stages), f)
                for i, (dim, stage) in enumerate(zip(per_stage, stages, strict=True)):
                    self.stage_dims[i][f] = _bind(t, f, dim, stage)
        self.global_dims = {
            f: config.dimensions[f] for t in self.techniques for f in t.global_fields()
        }

    def sample(self, s: Suggester) -> Architecture:
        """Draw one Architecture; parameter names are `stage{i}.<field>` (`all.<field>` when
        stages share it) and the plain field names for the rest."""
        c = self.config
        shared: dict[str, Any] = {}
        stage_values: list[dict[str, Any]] = []
        for i, dims in enumerate(self.stage_dims):
            values = {}
            for t in self.techniques:
                for f in t.stage_fields():
                    if c.shared_stages and t.shareable(f):
                        if f not in shared:
                            shared[f] = self.stage_dims[0][f].sample(f"all.{f}", s)
                        values[f] = shared[f]
                    else:
                        values[f] = dims[f].sample(f"stage{i}.{f}", s)
            stage_values.append(values)
        global_values = {f: dim.sample(f, s) for f, dim in self.global_dims.items()}
        return Architecture(
            techniques=c.techniques,
            stages=stage_values,
            **global_values,
            **{name: getattr(c, name).sample(name, s) for name in RECIPE},
        )

    def fixed_params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The Optuna parameters that fix some dimensions at `values`, for an enqueued trial (the
        sampler draws the rest). A per-stage field takes one value for every stage or a list of
        one per stage; `low` and `high` name a numeric dimension's ends, in each stage. Fixed
        dimensions are checked and left out, as `sample` never asks for them. Raises ValueError
        naming the field, the stage and what the dimension allows."""
        owners = {f: t for t in self.techniques for f in t.stage_fields()}
        recipe = {name: getattr(self.config, name) for name in RECIPE}
        named = {**self.global_dims, **recipe}
        params: dict[str, Any] = {}
        for field, value in values.items():
            if field in named:
                _fix(params, field, named[field], value, field)
            elif field in owners:
                n = len(self.stages)
                if isinstance(value, list) and len(value) != n:
                    raise ValueError(
                        f"{field}: the teacher has {n} stages, the list has {len(value)}"
                    )
                per_stage = value if isinstance(value, list) else [value] * n
                shared = self.config.shared_stages and owners[field].shareable(field)
                if shared and len({repr(v) for v in per_stage}) > 1:
                    raise ValueError(f"{field}: the stages share one value (shared_stages)")
                for i, (v, dims) in enumerate(zip(per_stage, self.stage_dims, strict=True)):
                    where = f"{field} (stage {i}, {self.stages[i].name})"
                    name = f"all.{field}" if shared else f"stage{i}.{field}"
                    _fix(params, name, dims[field], v, where)
            else:
                allowed = ", ".join([*owners, *named])
                raise ValueError(f"{field}: no dimension of the search space; allowed: {allowed}")
        return params

    def describe(self) -> list[dict[str, Any]]:
        """One row per stage: its name, channels and reduction, and what each per-stage
        dimension allows there; for run.json and the `teacher` command."""
        return [
            {
                "stage": stage.name,
                "channels": stage.channels,
                "reduction": stage.reduction,
                **{f: dim.describe() for f, dim in dims.items()},
            }
            for stage, dims in zip(self.stages, self.stage_dims, strict=True)
        ]


def _fix(params: dict[str, Any], name: str, dim: Any, value: Any, where: str) -> None:
    """Record `value` of `dim` under the Optuna parameter `name`, checked against `dim`."""
    if value in ("low", "high") and isinstance(dim, IntDim | FloatDim):
        value = dim.ends()[0 if value == "low" else 1]
    if isinstance(dim, FloatDim) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not dim.allows(value):
        raise ValueError(f"{where}: {value!r} is not allowed; the dimension is {dim.describe()}")
    if not dim.is_fixed:
        params[name] = value


def _per_stage(dim: Any, n: int, field: str) -> list[Any]:
    if not isinstance(dim, list):
        return [dim] * n
    if len(dim) != n:
        raise ValueError(
            f"search_space.{field}: the teacher has {n} stages, the list has {len(dim)}"
        )
    return list(dim)


def _bind(t: Technique, field: str, dim: Any, stage: Stage) -> Any:
    """`dim` for one stage: omitted int bounds take the stage's range, and every value the
    dimension can give must lie in that range."""
    bounds = t.stage_range(field, stage)
    if bounds is None:
        if _unbounded(dim):
            raise _needs_bounds(f"search_space.{field}")
        return dim
    lo, hi = bounds
    if isinstance(dim, IntDim):
        dim = IntDim(
            low=lo if dim.low is None else dim.low,
            high=hi if dim.high is None else dim.high,
            step=dim.step,
        )
        _check_dimension(t, field, dim)
    bad = [v for v in dim.probe() if not lo <= v <= hi]
    if bad:
        raise ValueError(
            f"search_space.{field}: stage {stage.index} ({stage.name}) allows {lo} to {hi}, "
            f"got {bad}"
        )
    return dim


__all__ = ["BoundSearchSpace", "SearchSpaceConfig", "StageDimension"]
