"""`cloudseg` data commands; registered on import by cloudseg.cli."""

from __future__ import annotations
