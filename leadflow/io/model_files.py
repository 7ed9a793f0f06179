"""Model files of `leadflow scoring train`: versioned joblib files with readable metadata and a JSON card beside."""

from __future__ import annotations

import json
import pickle
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from leadflow.domain.scoring_model import MODEL_FORMAT, ModelError, TrainedModel

SUFFIX = ".joblib"


def library_versions() -> dict[str, str]:
    """Versions of the libraries a model file depends on."""
    found = {"python": platform.python_version()}
    for name in ("scikit-learn", "numpy", "pandas", "scipy", "leadflow"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "unknown"
    return found


def _minor(text: str) -> str:
    return ".".join(text.split(".")[:2])


def save_model(model: TrainedModel, folder: Path) -> Path:
    """Write `<folder>/<version>.joblib` and its card `<version>.json` (metrics, features, windows, libraries)."""
    import joblib

    folder.mkdir(parents=True, exist_ok=True)
    meta, payload = model.to_file_parts()
    path = folder / f"{model.version}{SUFFIX}"
    tmp = path.with_suffix(".tmp")
    joblib.dump({"meta": meta, "payload": payload}, tmp, compress=3)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    return path


def resolve_model(name_or_path: str, folder: Path) -> Path:
    """A model file from a path, or from a name (a version) in the models folder."""
    path = Path(name_or_path)
    if path.suffix != SUFFIX:
        path = folder / f"{name_or_path}{SUFFIX}"
    if not path.is_file():
        raise ModelError(f"no model file {path} (train one with `leadflow scoring train`)")
    return path


def read_meta(path: Path) -> dict[str, Any]:
    """A model file's metadata, checked for a format and scikit-learn version this leadflow can use."""
    import joblib

    try:
        stored = joblib.load(path)
        meta = stored["meta"]
    except Exception as exc:
        raise ModelError(f"{path.name} is not a leadflow model file ({type(exc).__name__})") from exc
    if meta.get("kind") != "leadflow-scoring-model" or meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{path.name} has model format {meta.get('format')}, this leadflow reads {MODEL_FORMAT}: "
                         "train it again with `leadflow scoring train`")
    written = meta.get("libraries", {}).get("scikit-learn", "unknown")
    running = library_versions()["scikit-learn"]
    if _minor(written) != _minor(running):
        raise ModelError(f"{path.name} was written with scikit-learn {written} and this is {running}: train it "
                         "again with `leadflow scoring train`")
    return meta


def load_model(path: Path) -> TrainedModel:
    """A trained model from its file (only open files you trust: the estimator is a pickle)."""
    import joblib

    meta = read_meta(path)
    parts = pickle.loads(joblib.load(path)["payload"])
    rest = {k: v for k, v in meta.items() if k not in ("format", "kind", "version", "config", "metrics")}
    return TrainedModel(meta["version"], meta["config"], parts["spec"], parts["estimator"], meta["metrics"], rest)
