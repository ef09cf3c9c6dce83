"""Does `train.deterministic: true` cost speed on this machine, and is a rerun identical without it?

Trains one setting twice with each value of train.deterministic on the prepared data of the
project (run `dvc repro preprocess@mnist` first) and prints s/epoch and the final metrics.

    python -m bench.determinism [--setting mnist-k5-s3] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def train_once(setting: str, epochs: int, deterministic: bool, work: Path, tag: str) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(epochs=epochs, deterministic=deterministic)
    params_file = work / f"params-{tag}.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    out = work / tag
    dataset = params["settings"][setting]["dataset"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'store.db'}"}
    subprocess.run([sys.executable, "-m", "pipeline.job", setting, str(ROOT / "data" / "prepared" / dataset),
                    str(out / "job.json"), "--params", str(params_file)], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    command = [sys.executable, "-m", "pipeline.train", str(out / "job.json"), "0", str(out / "model.keras"),
               str(out / "run.json"), str(out / "metrics.json"), str(out / "history.csv")]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default="mnist-k5-s3")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    print(f"{'deterministic':>13} {'run':>3} {'s/epoch':>8} {'train_loss':>12} {'val_accuracy':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for deterministic in (False, True):
            results = [train_once(args.setting, args.epochs, deterministic, Path(tmp), f"{deterministic}-{i}")
                       for i in range(2)]
            for i, m in enumerate(results):
                print(f"{deterministic!s:>13} {i:>3} {m['seconds_per_epoch']:>8.2f} {m['train_loss']:>12.8f} "
                      f"{m['val_accuracy']:>12.8f}")
            same = results[0]["train_loss"] == results[1]["train_loss"]
            print(f"{'':>13} rerun identical: {same}")


if __name__ == "__main__":
    main()
