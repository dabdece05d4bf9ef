"""`ganfast info` and `python -m ganfast` on the command line."""

import json
import subprocess
import sys


def test_info_prints_json_with_every_op_backend():
    out = subprocess.run([sys.executable, "-m", "ganfast", "info", "--json"], check=True,
                         capture_output=True, text=True).stdout
    report = json.loads(out)
    assert report["torch"]
    assert report["ops"]["gradient_penalty"]["auto"] in ("torch", "triton", "cuda")
    assert set(report["extension"]) >= {"built", "loaded", "reason"}


def test_info_human_readable():
    out = subprocess.run([sys.executable, "-m", "ganfast", "info"], check=True,
                         capture_output=True, text=True).stdout
    assert "gradient_penalty" in out and "extension" in out
