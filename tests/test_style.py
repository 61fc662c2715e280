"""One docstring style (numpy: ``Parameters`` / ``Returns`` with dashed underlines) across the package, the models,
the demos and the benchmarks: a Google-style section header (``Args:``) in any of them fails here."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOOGLE_SECTION = re.compile(r"^\s*(Args|Arguments|Returns|Raises|Attributes|Yields|Example|Examples):\s*$")


def test_every_docstring_uses_the_numpy_sections():
    offending = []
    for folder in ("relevance", "models", "demos", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if GOOGLE_SECTION.match(line):
                    offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offending, "Google-style docstring sections (use numpy's):\n" + "\n".join(offending)
