"""`cloudseg`'s public names: cheap to import, each one the object it names, never a module.

A package's submodule becomes an attribute of the package once imported, so a lazily exported
name equal to a submodule's name turns into that module as soon as anything imports the module
(trials once failed with "'module' object is not callable" that way).
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from types import ModuleType

import pytest

import cloudseg

PACKAGES = [
    "cloudseg", "cloudseg.data", "cloudseg.nets", "cloudseg.scenes", "cloudseg.training",
    "cloudseg.cli", "sweep", "sweep.study", "sweep.execution", "sweep.mirror",
]


def import_everything(package: ModuleType) -> list[str]:
    """Import every module under `package`; their names."""
    names = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    for name in names:
        importlib.import_module(name)
    return names


def names_that_are_modules(package: ModuleType) -> list[str]:
    """Public names of `package` that resolve to a module."""
    return [n for n in package.__all__ if isinstance(getattr(package, n), ModuleType)]


def test_import_cloudseg_loads_neither_torch_nor_numpy():
    code = ("import sys, cloudseg; heavy = [m for m in ('torch', 'numpy', 'cloudseg.training') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", PACKAGES)
def test_no_public_name_shares_a_submodules_name(name):
    package = importlib.import_module(name)
    submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    assert not submodules & set(getattr(package, "__all__", ()))


def test_no_public_name_is_a_module_after_every_submodule_is_imported():
    import_everything(cloudseg)
    assert names_that_are_modules(cloudseg) == []
    for name in cloudseg.__all__:  # each name resolves, and to what its module defines
        assert getattr(cloudseg, name) is not None
    assert set(cloudseg.__all__) <= set(dir(cloudseg))


def test_the_check_sees_a_name_shadowed_by_its_submodule(tmp_path, monkeypatch):
    pkg = tmp_path / "shadowpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "__all__ = ['normalise']\n"
        "def __getattr__(name):\n"
        "    import importlib\n"
        "    return getattr(importlib.import_module('shadowpkg.normalise'), name)\n"
    )
    (pkg / "normalise.py").write_text("def normalise(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    package = importlib.import_module("shadowpkg")
    try:
        assert names_that_are_modules(package) == []  # before: the function
        assert import_everything(package) == ["shadowpkg.normalise"]
        assert names_that_are_modules(package) == ["normalise"]  # after: the module
    finally:
        for name in ("shadowpkg", "shadowpkg.normalise"):
            sys.modules.pop(name, None)


def test_lazy_names_resolve_to_their_modules_objects():
    from cloudseg.models import MODELS
    from cloudseg.normalisation import normalise
    from cloudseg.training.callbacks import Callback
    from cloudseg.training.results import FitResult

    assert cloudseg.MODELS is MODELS and cloudseg.normalise is normalise
    assert cloudseg.Callback is Callback and cloudseg.FitResult is FitResult
    assert callable(cloudseg.normalise)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cloudseg.nope  # noqa: B018
