"""Training objectives, one file each. To add one: write a subclass of :class:`Objective` in its
own file and add it to ``OBJECTIVES`` below."""

from __future__ import annotations

from embtune.errors import EmbtuneError
from embtune.objectives.base import Objective
from embtune.objectives.sup_simcse import SupSimCSE
from embtune.objectives.unsup_simcse import UnsupSimCSE

OBJECTIVES: dict[str, type[Objective]] = {
    UnsupSimCSE.name: UnsupSimCSE,
    SupSimCSE.name: SupSimCSE,
}


def get_objective_class(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise EmbtuneError(f"unknown objective {name!r}; expected one of: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


__all__ = ["Objective", "OBJECTIVES", "get_objective_class", "UnsupSimCSE", "SupSimCSE"]
