"""The experiment's small JSON files (summary.json, params.json, budget.jsonl, confirm.jsonl), read by the
driver, the results side and the command's start-up alike: so this module imports neither Ray nor Lightning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; {} where the file is missing, cut short, or holds no object."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}
