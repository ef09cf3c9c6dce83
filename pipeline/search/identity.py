"""A study's identity: everything a trial's score depends on but the values it draws. A study is
named by its entry and a digest of it, so that a change to any of them starts a new study (the old
one stays in the file) rather than mixing trials scored on different data or training.

The parts: the prepared data (the md5 DVC records for data/prepared/<dataset> in dvc.lock, or one
computed from the split files a trial reads where dvc.lock has none), `preprocess:` (the validation
split, the normalization), the entry but for its count of trials and its result's name (more trials
continue the study; naming the result apart scores nothing differently), and the setting a trial
trains (the base with the entry's budget, every train: and model value) but for the keys the space
draws.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import yaml

from pipeline.params.schema import Params, resolve
from pipeline.params.space import SearchEntry

WHAT = {"data": "the prepared data", "preprocess": "preprocess:", "entry": "search.{name}",
        "setting": "the base setting or train:"}  # each part, in the line that says why a study is new


def _locked_stages(lock: Path) -> list:
    """dvc.lock's stage records; none where it is missing or unreadable (a broken lock is DVC's to
    report: the digest is then computed from the files)."""
    try:
        document = yaml.safe_load(lock.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    stages = document.get("stages") if isinstance(document, dict) else None
    return list(stages.values()) if isinstance(stages, dict) else []


def prepared_data_digest(root: Path, dataset: str) -> str:
    """The md5 DVC recorded for data/prepared/<dataset>, else one of the files a trial reads."""
    from pipeline.search.trial import SPLIT_FILES

    out = f"data/prepared/{dataset}"
    lock = root / "dvc.lock"
    for stage in _locked_stages(lock):
        for recorded in stage.get("outs", []) if isinstance(stage, dict) else []:
            if isinstance(recorded, dict) and recorded.get("path") == out and recorded.get("md5"):
                return recorded["md5"]
    digest = hashlib.md5()
    for file in sorted((root / out).glob("**/*.npy")):
        if file.name in SPLIT_FILES:
            digest.update(str(file.relative_to(root)).encode())
            with open(file, "rb") as data:
                for chunk in iter(lambda: data.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def identity(entry: SearchEntry, params: Params, data: str) -> dict:
    """The parts of the study's identity, as JSON data (as stored with the study)."""
    base = params.settings[entry.base]
    own, train, model = resolve(replace(base, epochs=entry.epochs, subset=entry.subset), params.train,
                                getattr(params.models, base.dataset))
    setting = {k: v for k, v in {**asdict(own), **asdict(train), **asdict(model)}.items() if k not in entry.space}
    parts = {"data": data, "preprocess": asdict(params.preprocess),
             "entry": {k: v for k, v in asdict(entry).items() if k not in ("trials", "result")}, "setting": setting}
    return json.loads(json.dumps(parts, sort_keys=True, default=list))


def study_name(name: str, parts: dict) -> str:
    return f"{name}-{hashlib.md5(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:8]}"


def why_new(name: str, parts: dict, earlier) -> str:
    """One line: why a new study starts where `earlier` (Optuna's FrozenStudy) was."""
    before = earlier.user_attrs.get("identity")
    if before is None:
        return f"{name}: a new study: {earlier.study_name} recorded not what its trials were scored on"
    changed = [WHAT[part].format(name=name) for part in parts if before.get(part) != parts[part]]
    return f"{name}: a new study: {', '.join(changed)} changed since study {earlier.study_name}"
