"""The README's Python examples run as written, offline, from the repository root."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_every_python_example_in_the_readme_runs_offline(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert blocks, "the README has Python examples"
    script = tmp_path / "readme_examples.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    environment = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg", RELEVANCE_README_OUT=str(tmp_path))
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
