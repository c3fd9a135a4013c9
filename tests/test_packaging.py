"""What `pip install .` (a non-editable install, as in a cluster image) gives: the study specs
travel inside the package, and both CLIs say their version."""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def test_the_specs_are_package_data_and_the_checkout_folder_is_the_same_one():
    shipped = importlib.resources.files("sweep").joinpath("studies")
    names = sorted(p.name for p in shipped.iterdir() if p.name.endswith(".yaml"))
    assert {"demo.yaml", "loss-search.yaml", "model-search.yaml"} <= set(names)
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "studies/*.yaml" in data["package-data"]["sweep"]
    assert (ROOT / "studies").resolve() == Path(str(shipped)).resolve(), "one copy, not two"


def test_an_installed_wheel_finds_its_studies(tmp_path):
    """Build the wheel from a copy of the sources, install it into a bare folder and ask the
    installed `sweep` for its specs from a directory without any studies/ folder."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for package in ("cloudseg", "sweep"):
        shutil.copytree(ROOT / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert {"cloudseg/py.typed", "sweep/py.typed"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(names)[-8:]
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import sweep.study.spec as s; "
             "print(s.__file__); print(','.join(s.available_studies())); "
             "print(s.load_spec('demo').name)")
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    out = subprocess.run([sys.executable, "-I", "-c", probe, str(site)], cwd=empty,
                         capture_output=True, text=True)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and lines, out.stderr[-2000:]
    assert lines[0].startswith(str(site)), "the probe must import the installed copy"
    assert {"demo", "loss-search", "model-search"} <= set(lines[1].split(","))
    assert lines[2] == "demo"


def test_both_clis_say_their_version():
    from importlib.metadata import version

    from sweep.cli import app

    expected = version("cloudsweep")
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"sweep {expected}"
    done = subprocess.run([sys.executable, "-c", "import sys; from cloudseg.cli import main; "
                           "sys.exit(main(['--version']))"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"cloudseg {expected}", done.stderr
