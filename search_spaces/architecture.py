"""An Architecture: one point of a search space, everything needed to build and train a student.

It holds the values of every enabled compression technique, one dict per stage for the
per-stage fields and top-level fields for the global ones, and the distillation recipe:

    {"techniques": ["depth", "channels", "weight_quant"],
     "stages": [{"channel_keep": 0.5, "blocks": 2, "bits": 8}, ...],
     "criterion": "l2", "stem_head_bits": 8, "kd_temperature": 4.0, "kd_alpha": 0.7,
     "kd_feature_weight": 0.0}

Each technique's `Params` validates its values. A file without `techniques` was written before
techniques were plugins and used `LEGACY_TECHNIQUES`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from automl.compress import (
    LEGACY_TECHNIQUES,
    Technique,
    TechniqueParams,
    get_technique,
    techniques_in_order,
)
from automl.stages import Stage

RECIPE = ("kd_temperature", "kd_alpha", "kd_feature_weight")  # how a student is distilled
_OWN_FIELDS = ("techniques", "stages", *RECIPE)
_FLAT_STAGE_KEY = re.compile(r"^stage(\d+)\.(.+)$")


class Architecture(BaseModel):
    """A student: per-stage and global values of its techniques, and the KD recipe."""

    # Global technique values are extra fields, checked by their technique's Params.
    model_config = ConfigDict(extra="allow", frozen=True)

    techniques: tuple[str, ...] = Field(description="enabled techniques, in the order applied")
    stages: tuple[dict[str, Any], ...] = Field(min_length=1)
    kd_temperature: Annotated[float, Field(gt=0)] = 4.0
    kd_alpha: Annotated[float, Field(ge=0, le=1, description="weight of the KD term")] = 0.7
    kd_feature_weight: Annotated[
        float,
        Field(ge=0, le=1000, description="weight of the stage-output loss (FitNets); 0: none"),
    ] = 0.0

    @model_validator(mode="before")
    @classmethod
    def _validate_technique_values(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        names = raw.get("techniques", LEGACY_TECHNIQUES)
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"techniques: a list of technique names, got {str(names)[:100]!r}")
        techniques = techniques_in_order(list(names))
        stages = raw.get("stages")
        if not isinstance(stages, list | tuple) or not all(isinstance(s, dict) for s in stages):
            return raw  # the field validation names the problem
        own = {k: raw[k] for k in _OWN_FIELDS if k in raw}
        values = {k: v for k, v in raw.items() if k not in _OWN_FIELDS}
        _reject_unknown(techniques, stages, values)
        new_stages: list[dict[str, Any]] = [{} for _ in stages]
        new_globals: dict[str, Any] = {}
        for t in sorted(techniques, key=lambda t: t.name):  # the sampling order (search space)
            params = _params(t, stages, values)
            for name in t.stage_fields():
                for stage, value in zip(new_stages, getattr(params, name), strict=True):
                    stage[name] = value
            new_globals.update({name: getattr(params, name) for name in t.global_fields()})
        own["techniques"] = tuple(t.name for t in techniques)
        own["stages"] = tuple(new_stages)
        return {**own, **new_globals}

    def params(self, technique: str) -> TechniqueParams:
        """The values of one enabled technique, as its `Params`."""
        if technique not in self.techniques:
            raise ValueError(f"technique {technique!r} is not enabled in this architecture")
        t = get_technique(technique)
        return _params(t, list(self.stages), self.model_extra or {})

    def check_fits(self, stages: list[Stage]) -> None:
        """Raise ValueError when the architecture does not fit a teacher with these stages."""
        if len(self.stages) != len(stages):
            raise ValueError(
                f"the architecture has {len(self.stages)} stages, the teacher {len(stages)}"
            )
        for t in techniques_in_order(self.techniques):
            for name in t.stage_fields():
                for stage, values in zip(stages, self.stages, strict=True):
                    bounds = t.stage_range(name, stage)
                    if bounds is not None and not bounds[0] <= values[name] <= bounds[1]:
                        raise ValueError(
                            f"{name}: stage {stage.index} ({stage.name}) allows {bounds[0]} to "
                            f"{bounds[1]}, got {values[name]}"
                        )

    def flat(self) -> dict[str, Any]:
        """One column per dimension (`stage0.channel_keep`, ..., `criterion`), as in trials.csv."""
        row: dict[str, Any] = {}
        for i, stage in enumerate(self.stages):
            row.update({f"stage{i}.{key}": value for key, value in stage.items()})
        row.update(self.model_extra or {})
        row.update({name: getattr(self, name) for name in RECIPE})
        return row

    @classmethod
    def compose(
        cls, params: dict[str, TechniqueParams], num_stages: int | None = None, **recipe: float
    ) -> Architecture:
        """The architecture of chosen techniques' values, e.g. one technique along its ladder;
        `num_stages` is needed only when no technique has a per-stage field; `recipe` may set
        the fields of RECIPE."""
        techniques = techniques_in_order(list(params))
        n = {len(getattr(params[t.name], f)) for t in techniques for f in t.stage_fields()}
        if not n and num_stages is not None:
            n = {num_stages}
        if len(n) != 1:
            raise ValueError(f"per-stage values must have one length, got lengths {sorted(n)}")
        stages: list[dict[str, Any]] = [{} for _ in range(n.pop())]
        values: dict[str, Any] = {}
        for t in techniques:
            doc = params[t.name].model_dump()
            for f in t.stage_fields():
                for stage, value in zip(stages, doc[f], strict=True):
                    stage[f] = value
            values.update({f: doc[f] for f in t.global_fields()})
        return cls.model_validate(
            {"techniques": [t.name for t in techniques], "stages": stages, **values, **recipe}
        )

    @classmethod
    def from_flat(
        cls, row: dict[str, Any], techniques: tuple[str, ...] | None = None
    ) -> Architecture:
        """The inverse of `flat`; files written before techniques were plugins stored this form."""
        stages: dict[int, dict[str, Any]] = {}
        rest: dict[str, Any] = {}
        for key, value in row.items():
            match = _FLAT_STAGE_KEY.match(key)
            if match:
                stages.setdefault(int(match[1]), {})[match[2]] = value
            else:
                rest[key] = value
        doc = {**rest, "stages": [stages[i] for i in sorted(stages)]}
        if techniques is not None:
            doc["techniques"] = techniques
        return cls.model_validate(doc)


def _params(t: Technique, stages: list[dict[str, Any]], values: dict[str, Any]) -> TechniqueParams:
    doc = {name: [s.get(name) for s in stages] for name in t.stage_fields()}
    doc.update({name: values[name] for name in t.global_fields() if name in values})
    try:
        return t.Params.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ValueError(f"technique {t.name!r}: {problems}") from None


def _reject_unknown(
    techniques: list[Technique], stages: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    stage_fields = {f for t in techniques for f in t.stage_fields()}
    global_fields = {f for t in techniques for f in t.global_fields()}
    enabled = [t.name for t in techniques]
    for i, stage in enumerate(stages):
        unknown = sorted(set(stage) - stage_fields)
        if unknown:
            raise ValueError(
                f"stage {i}: unknown value(s) {unknown}; techniques {enabled} take per stage: "
                f"{sorted(stage_fields)}"
            )
    unknown = sorted(set(values) - global_fields)
    if unknown:
        raise ValueError(
            f"unknown value(s) {unknown}; techniques {enabled} take globally: "
            f"{sorted(global_fields)}"
        )
