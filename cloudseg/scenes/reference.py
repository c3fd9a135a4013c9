"""Published per-scene results shipped with cloudseg, to put measured results beside.

`REFERENCES` names each table (`cloudnet`: Cloud-Net on the 20 38-Cloud test scenes at 12/255,
Apache-2.0, provenance in `published/PROVENANCE.md`). A table is read with the same
`read_scene_table` as any per-scene CSV, so published and measured figures go through one
reduction (`mean_over_scenes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from cloudseg.errors import ConfigError

if TYPE_CHECKING:
    from cloudseg.scenes.evaluate import EvaluationReport

REFERENCES = {"cloudnet": "cloudnet_38cloud_test_per_scene.csv"}
LABELS = {"cloudnet": "Cloud-Net (Mohajerani & Saeedi, IGARSS 2019)"}


@dataclass(frozen=True)
class Reference:
    """A published per-scene table: scene → {metric: fraction} (precision, recall, ...)."""

    name: str
    label: str
    scenes: dict[str, dict[str, float]]

    def matches(self, scenes: list[str] | tuple[str, ...]) -> list[str]:
        """The given scenes this table has a row for, in the given order."""
        return [s for s in scenes if s in self.scenes]


def reference_path(name: str) -> Path:
    """The shipped CSV of reference table `name`."""
    if name not in REFERENCES:
        raise ConfigError(f"reference {name!r}: unknown; choose from {sorted(REFERENCES)}")
    return Path(str(resources.files("cloudseg.scenes") / "published" / REFERENCES[name]))


def load_reference(name: str = "cloudnet") -> Reference:
    """Reference table `name` as shipped with the package."""
    from cloudseg.scenes.evaluate import read_scene_table

    rows = read_scene_table(reference_path(name))
    return Reference(name, LABELS[name], dict(rows))


def cloudnet_scene_ids() -> list[str]:
    """The 20 real 38-Cloud test scene ids, in the published table's order."""
    return list(load_reference("cloudnet").scenes)


@dataclass(frozen=True)
class Comparison:
    """Measured per-scene figures beside a reference table's, on the scenes both have."""

    reference: Reference
    scenes: tuple[str, ...]  # the scenes both have, in the evaluation's order
    ours: dict[str, dict[str, float]]  # scene → {metric: fraction}
    unmatched: tuple[str, ...]  # evaluated scenes the table has no row for

    @property
    def theirs(self) -> dict[str, dict[str, float]]:
        """The reference's rows for the shared scenes."""
        return {s: self.reference.scenes[s] for s in self.scenes}

    def means(self) -> tuple[dict[str, float], dict[str, float]]:
        """(ours, theirs): per-scene means over the shared scenes (fractions)."""
        from cloudseg.scenes.evaluate import mean_over_scenes

        if not self.scenes:
            raise ConfigError(f"no evaluated scene is in the {self.reference.label} table")
        return (mean_over_scenes(self.ours[s] for s in self.scenes),
                mean_over_scenes(self.theirs[s] for s in self.scenes))


def compare_with_reference(report: EvaluationReport, name: str = "cloudnet") -> Comparison:
    """`report`'s scenes beside reference table `name` (scenes matched by id)."""
    from cloudseg.scenes.evaluate import SCENE_METRICS

    ref = load_reference(name)
    ours = {s.scene: {a: float(getattr(s.metrics, a)) for a, _ in SCENE_METRICS}
            for s in report.scenes}
    shared = tuple(ref.matches(list(ours)))
    return Comparison(ref, shared, ours, tuple(s for s in ours if s not in ref.scenes))
