"""Settings: bad values stop start-up with a message that says what to write."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("value, expected", [
    ("text=abc", "write modality=weight pairs"),
    ("text=0,image=0", "search.E002"),
    ("colour=1", "search.E002"),
])
def test_bad_fusion_weights_stop_start_up_with_the_fix(value, expected):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SEARCH_FUSION_WEIGHTS": value, "DJANGO_SETTINGS_MODULE": "shop_search.settings"}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and expected in done.stdout + done.stderr
