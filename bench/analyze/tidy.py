"""Results as pandas DataFrames, read back from a results folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd


def load_runs(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "runs.csv", keep_default_na=True)


def load_meta(folder: Path) -> dict[str, Any]:
    path = folder / "meta.json"
    if not path.is_file():
        return {}
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta
