"""The built wheel, installed on its own: namespaced imports, the embedded weights as package data, offline use.

The wheel is built from a copy of the checkout (so no build folder lands in it) with the venv's setuptools,
installed with ``pip install --no-deps --target SITE`` (torch and the other dependencies come from this venv),
and used by a fresh interpreter started with ``-S`` (so the editable install's path finder of this venv is not
active) from a folder outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Left out of the copy the wheel is built from: build products and local state, not sources.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "out", "relevance_out", "*.egg-info",
                                     "__pycache__", ".pytest_cache", "*.pyc", ".whl", ".gl")

INSIDE_THE_WHEEL = r"""
import json, os, sys
import numpy as np

result = {}
for name in ("models", "demos", "assets"):
    try:
        __import__(name)
        result[name] = "importable"
    except ModuleNotFoundError:
        result[name] = "missing"

import relevance
from relevance.cli import main
from relevance.data import render_scene
from relevance.models import domain_warning
from relevance.models.embedded import EMBEDDED_DIR, load_embedded

model = load_embedded()
scene = render_scene(10_000_000)
explanation = relevance.explain(model, scene.image)
occlusion = relevance.explain(model, scene.image, method="occlusion")  # relevance.attribution, through captum
result.update(
    relevance_file=relevance.__file__,
    embedded_dir=str(EMBEDDED_DIR),
    class_names=model.class_names,
    relevance_shape=list(explanation.relevance.shape),
    occlusion_shape=list(occlusion.relevance.shape),
    finite=bool(np.isfinite(explanation.relevance.numpy()).all()),
    explained=explanation.class_name(0),
    scene_labels=scene.names,
    overlay_shape=list(explanation.overlay(0).shape),
    photo_warning=domain_warning(model, np.asarray(__import__("PIL.Image").Image.open(sys.argv[1]).convert("RGB"))),
    demo_exit=main(["demo"]),  # the demo runs from a checkout only: a clear message, status 2
    sys_path_has_repo=any(os.path.abspath(p) == sys.argv[2] for p in sys.path),
)
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout."""
    source = tmp_path_factory.mktemp("source") / "relevance"
    shutil.copytree(REPO, source, ignore=NOT_SOURCES)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", str(source), "-w", str(dist)], check=True, capture_output=True, text=True)
    (built,) = dist.glob("relevance-*.whl")
    return built


def test_the_wheel_holds_only_the_relevance_package_and_its_weights(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"relevance", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for generic in ("models/", "demos/", "assets/", "tests/", "benchmarks/"):
        assert not any(name.startswith(generic) for name in names), generic
    for data in ("relevance/assets/shapes_vit/model.safetensors", "relevance/assets/shapes_vit/config.json",
                 "relevance/assets/shapes_vit/MODEL_CARD.md", "relevance/models/embedded.py",
                 "relevance/labels.py", "relevance/__main__.py"):
        assert data in names, data
    # every package of the checkout is in the wheel (a new sub-package must be listed in pyproject.toml)
    packages = {path.parent.relative_to(REPO).as_posix() for path in (REPO / "relevance").rglob("__init__.py")}
    assert all(f"{package}/__init__.py" in names for package in packages), packages
    assert {f"relevance/models/{path.name}" for path in (REPO / "models").glob("*.py")} <= set(names)
    assert "relevance = relevance.cli:main" in entry_points


def test_the_installed_wheel_explains_offline_from_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target",
                    str(site), str(wheel)], check=True, capture_output=True, text=True)
    assert (site / "relevance" / "assets" / "shapes_vit" / "model.safetensors").is_file()
    assert not (site / "models").exists() and not (site / "demos").exists()
    outer = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))  # torch, timm, numpy...
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), *outer]), HF_HUB_OFFLINE="1", PYTHONNOUSERSITE="1")
    photo = REPO / "assets" / "samples" / "chelsea.jpg"
    completed = subprocess.run([sys.executable, "-S", "-c", INSIDE_THE_WHEEL, str(photo), str(REPO)],
                               cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert Path(result["relevance_file"]).is_relative_to(site)
    assert Path(result["embedded_dir"]).is_relative_to(site)
    assert not result["sys_path_has_repo"]
    assert {result[name] for name in ("models", "demos", "assets")} == {"missing"}
    assert result["class_names"] == ["circle", "square", "triangle", "cross", "star", "ring"]
    assert result["relevance_shape"] == [1, 8, 8] and result["finite"]
    assert result["occlusion_shape"] == [1, 8, 8]  # on the patch grid
    assert result["explained"] in result["scene_labels"]  # the shipped weights, not random ones
    assert result["overlay_shape"] == [64, 64, 3]
    assert result["photo_warning"] and "mean nothing" in result["photo_warning"]
    assert result["demo_exit"] == 2 and "runs from a source checkout" in completed.stderr
