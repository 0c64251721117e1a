"""The export folder of a picked model: everything needed to run it without this tool.

model.onnx          int8 QDQ (every weight at most 8 bits) or fp32, checked against PyTorch
model.safetensors   the fp32 PyTorch weights (fake-quant folded)
model.packed        every tensor as the packed size counts it (integer codes at their bits,
                    sparse weights as non-zeros and positions): the packed size as a file;
                    `automl.student.packed.load_packed_student` rebuilds the dense model
architecture.json   the Architecture; `cli.py train` retrains it
card.json, card.md  metrics, teacher, data, `preprocess`, and the command that reproduces it
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from automl.compress import DeployForm, get_technique
from automl.data import DataBundle
from automl.data.bundle import head
from automl.deploy.check import DeployedOnnx, deploy_onnx
from automl.deploy.onnx import INPUT_NAME, OUTPUT_NAME, session
from automl.deploy.remeasure import MeasureSettings
from automl.errors import UserError
from automl.experiment import library_versions
from automl.files import WriteFailed, check_writable, write_file, write_json
from automl.measure import batch_of, interleaved_latency_ms
from automl.paths import file_in_the_way, missing_folders, remove_empty
from automl.run.documents import FrontMember
from automl.run.finished import SearchRun
from automl.run.lock import run_lock
from automl.student.build import deploy_form
from automl.student.files import skeleton
from automl.student.packed import write_packed
from search_spaces import Architecture

OWNER = "owner"  # in a staging folder: the PID of the export writing it
FILES = (
    "model.onnx",
    "model.safetensors",
    "model.packed",
    "architecture.json",
    "card.json",
    "card.md",
)


def check_out_dir(out: Path) -> None:
    """Raise UserError, before any work, unless `out` can become the export folder."""
    if out.name in ("", ".", ".."):
        raise UserError(
            f"--out {out} is no new folder (the export is written as a folder of its own); "
            "name one, e.g. --out export/model"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(
            f"--out {out} already exists and is not empty; choose a new folder (an export "
            "never writes over files)"
        )
    blocked = file_in_the_way(out)
    if blocked is not None:
        raise UserError(f"--out {out}: {blocked} is a file, not a folder; choose another --out")
    check_writable(out.parent)  # not a read-only mount, not /proc


def remove_stale_staging(out: Path) -> list[Path]:
    """Delete the staging folders of exports to `out` whose process died (a killed `pick`
    leaves `.NAME.*` beside `out`, tens of MB); returns them. A folder whose `owner` file
    names a live process is another export's, and stays."""
    removed = []
    for stage in out.parent.glob(f".{glob.escape(out.name)}.*"):
        if not stage.is_dir() or _alive(stage / OWNER):
            continue
        shutil.rmtree(stage, ignore_errors=True)
        removed.append(stage)
    return removed


def _alive(owner: Path) -> bool:
    try:
        pid = int(owner.read_text())
    except (OSError, ValueError):
        return False  # written first thing, so a folder without it is a dead export's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def export_trial(
    run: SearchRun, trial: int, out: Path, settings: MeasureSettings, command: str
) -> dict[str, Any]:
    """Write the export folder of front trial `trial` to `out` and return its card. The folder
    appears whole or not at all (it is staged beside `out`, then renamed). Holds the run's
    lock."""
    with run_lock(run.run_dir.path):
        return _export(run, trial, out, settings, command)


def _export(
    run: SearchRun, trial: int, out: Path, settings: MeasureSettings, command: str
) -> dict[str, Any]:
    check_out_dir(out)
    member = run.member(trial)
    made = missing_folders(out.parent)
    try:
        return _staged(run, member, out, settings, command)
    except OSError as exc:  # the folder cannot be written: a read-only mount, /proc, ...
        raise WriteFailed(Path(exc.filename or out), exc) from None
    finally:
        remove_empty(made)  # the export's parents stay only around a finished export


def _staged(
    run: SearchRun, member: FrontMember, out: Path, settings: MeasureSettings, command: str
) -> dict[str, Any]:
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    trial = member.trial
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        (Path(tmp) / OWNER).write_text(f"{os.getpid()}\n")
        data = run.load_data()
        model, arch = run.load_model(member, data)
        stage = Path(tmp) / "export"
        stage.mkdir()
        fp32 = Path(tmp) / "fp32.onnx"
        form = deploy_form(arch)
        dep = deploy_onnx(
            model,
            form,
            data,
            stage / "model.onnx",
            seed=run.trial_seed(trial),
            threads=settings.threads,
            keep_fp32=fp32,
        )
        latency = _latency(
            dep.path,
            fp32 if fp32.exists() else None,
            head(data.test, max(settings.batch_sizes)),
            settings,
        )
        write_file(stage / "model.safetensors", run.weights_of(member).read_bytes())
        teacher = run.config.teacher
        _, stages = skeleton(
            arch,
            teacher.model,
            data.in_chans,
            data.num_classes,
            data.image_size,
            teacher.small_input,
        )
        packed = write_packed(
            stage / "model.packed", model, stages, arch, {"trial": trial, "teacher": teacher.model}
        )
        write_file(stage / "architecture.json", arch.model_dump_json(indent=2) + "\n")
        card = _card(run, member, arch, form, dep, latency, data, command, packed)
        write_json(stage / "card.json", card)
        write_file(stage / "card.md", card_markdown(card))
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(stage, out)
    return card


def _latency(onnx: Path, fp32: Path | None, images: torch.Tensor, settings: MeasureSettings):
    """ONNX Runtime latency of model.onnx (and, for int8, of its fp32 export beside it)."""
    runners = {}
    for name, path in (("model.onnx", onnx), ("fp32 export", fp32)):
        if path is None:
            continue
        sess = session(path, settings.threads)
        for b in settings.batch_sizes:
            x = batch_of(images, b).numpy()
            runners[f"{name}|batch_{b}"] = lambda s=sess, x=x: s.run(None, {INPUT_NAME: x})
    times = interleaved_latency_ms(
        runners, rounds=settings.rounds, calls=settings.calls, warmup=settings.warmup
    )
    doc: dict[str, Any] = {}
    for key, ms in times.items():
        name, batch = key.split("|")
        doc.setdefault(name, {})[batch] = round(ms, 5)
    return doc


def _card(
    run: SearchRun,
    member: FrontMember,
    arch: Architecture,
    form: DeployForm,
    dep: DeployedOnnx,
    latency: dict[str, dict[str, float]],
    data: DataBundle,
    command: str,
    packed_bytes: int,
) -> dict[str, Any]:
    teacher = run.pareto.teacher
    return {
        "trial": member.trial,
        "run": str(run.run_dir.path),
        "format": dep.format,
        "files": list(FILES),
        "metrics": {
            "val_accuracy": member.val_accuracy,
            "test_accuracy": dep.torch_test_accuracy,
            "onnx_test_accuracy": dep.onnx_test_accuracy,
            "packed_size_bytes": member.size_bytes,
            "packed_file_bytes": packed_bytes,
            "onnx_bytes": dep.onnx_bytes,
            "fp32_onnx_bytes": dep.fp32_onnx_bytes,
            "params": member.params,
            "macs": member.macs,
            "search_latency_ms": member.latency_ms,
        },
        "onnxruntime_latency_ms": latency,
        # Measured, not assumed: tiny int8 models can be slower than fp32 (quantize and
        # dequantize steps cost more than narrow integer convolutions save).
        "int8_speedup_vs_fp32": {
            batch: round(latency["fp32 export"][batch] / ms, 3)
            for batch, ms in latency["model.onnx"].items()
        }
        if "fp32 export" in latency
        else None,
        "latency_settings": {
            "threads": run.config.latency.threads,
            "note": "ONNX Runtime CPU execution provider, median of interleaved rounds, "
            "measured at export on this machine",
        },
        # What each technique made of the student: its values, and the same in words.
        "compression": {
            name: {
                "params": arch.params(name).model_dump(mode="json"),
                "summary": get_technique(name).describe(arch.params(name)),
            }
            for name in arch.techniques
        },
        "deployment": {
            "onnx": _int8_words(dep) if dep.format == "int8" else "fp32",
            "widest_weight_bits": form.weight_bits,
            "reduce_range": dep.reduce_range,
            "fallback": dep.fallback,
            "test_images_disagreeing_with_pytorch": dep.disagree,
            "notes": list(form.notes),
        },
        "teacher": teacher.model_dump(
            include={"model", "val_accuracy", "test_accuracy", "latency_ms", "size_bytes"}
        ),
        "data": {
            "name": data.name,
            "fingerprint": data.fingerprint,
            "splits": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
            "classes": data.class_names,
        },
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", data.in_chans, *data.image_size],
            "dtype": "float32",
        },
        "output": {"name": OUTPUT_NAME, "shape": ["batch", data.num_classes]},
        "preprocess": data.preprocess,
        "reproduce": command,
        "versions": library_versions(),
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _int8_words(dep: DeployedOnnx) -> str:
    what = "int8 weights (per channel) and uint8 activations, QDQ, static"
    if dep.trained_tensors:
        return (
            f"{what}; {dep.trained_tensors} tensors at the ranges and scales the student "
            "trained with, the others calibrated on training images"
        )
    return f"{what}, calibrated on training images"


def card_markdown(card: dict[str, Any]) -> str:
    m, t = card["metrics"], card["teacher"]
    lat = card["onnxruntime_latency_ms"]
    batches = list(next(iter(lat.values())))
    header = "| file | " + " | ".join(b.replace("_", " ") for b in batches) + " |"
    rule = "|---" * (len(batches) + 1) + "|"
    rows = "\n".join(
        f"| {name} | " + " | ".join(f"{figures[b]:.3f} ms" for b in batches) + " |"
        for name, figures in lat.items()
    )
    pre = card["preprocess"]
    compression = "\n".join(
        f"- {name}: " + ", ".join(f"{label} {value}" for label, value in c["summary"].items())
        for name, c in card["compression"].items()
    )
    notes = "".join(f" {note}" for note in card["deployment"]["notes"])
    ratio = card["int8_speedup_vs_fp32"]
    speedup = (
        "\nint8 against its fp32 export, measured: "
        + ", ".join(f"{b.replace('_', ' ')} {x:.2f}x" for b, x in ratio.items())
        + (" (below 1: slower; the int8 file is still smaller)" if min(ratio.values()) < 1 else "")
        + "\n"
        if ratio
        else ""
    )
    fallback = card["deployment"].get("fallback")
    fallback = f" {fallback[0].upper()}{fallback[1:]}." if fallback else ""
    return f"""# Model card: trial {card["trial"]} of {card["run"]}

An {card["format"]} ONNX student of `{t["model"]}`, distilled on `{card["data"]["name"]}`.

| metric | student | teacher |
|---|---|---|
| validation accuracy | {m["val_accuracy"]:.4f} | {t["val_accuracy"]:.4f} |
| test accuracy (PyTorch) | {m["test_accuracy"]:.4f} | {t["test_accuracy"]:.4f} |
| test accuracy (ONNX Runtime) | {m["onnx_test_accuracy"]:.4f} | |
| size, packed bits | {m["packed_size_bytes"] / 1000:.1f} kB | {t["size_bytes"] / 1000:.1f} kB |
| model.packed | {m["packed_file_bytes"] / 1000:.1f} kB | |
| model.onnx | {m["onnx_bytes"] / 1000:.1f} kB | |
| fp32 ONNX export | {m["fp32_onnx_bytes"] / 1000:.1f} kB | |
| parameters | {m["params"]:,} | |
| MACs per image | {m["macs"]:,} | |

ONNX Runtime latency ({card["latency_settings"]["threads"]} thread(s)):

{header}
{rule}
{rows}
{speedup}

## Input

`{card["input"]["name"]}`: float32 of shape {card["input"]["shape"]}. From a raw image:
resize to {pre.get("resize")} ({pre.get("interpolation")}), divide by {pre.get("divide_by")},
subtract mean {pre.get("mean")} and divide by std {pre.get("std")} per channel
({pre.get("channels")} channel(s)). Output `{card["output"]["name"]}`: one logit per class,
classes {card["data"]["classes"]}.

## Reproduce

```
{card["reproduce"]}
```

## Compression

{compression}

ONNX form: {card["deployment"]["onnx"]}.{fallback}{notes}
"""
