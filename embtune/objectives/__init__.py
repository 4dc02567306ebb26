"""Training objectives, one file each. To add one: write a subclass of :class:`Objective` in its
own file and add it to ``OBJECTIVES`` below."""

from __future__ import annotations

from embtune.errors import EmbtuneError
from embtune.objectives.base import Batch, Objective
from embtune.objectives.cosent import CoSENT
from embtune.objectives.distill import Distill
from embtune.objectives.guided_contrastive import GuidedContrastive
from embtune.objectives.listwise_distill import ListwiseDistill
from embtune.objectives.multiview_am import MultiViewAMSoftmax
from embtune.objectives.sup_simcse import SupSimCSE
from embtune.objectives.supcon import SupCon
from embtune.objectives.tsdae import TSDAE
from embtune.objectives.unsup_simcse import UnsupSimCSE

OBJECTIVES: dict[str, type[Objective]] = {
    UnsupSimCSE.name: UnsupSimCSE,
    SupSimCSE.name: SupSimCSE,
    MultiViewAMSoftmax.name: MultiViewAMSoftmax,
    TSDAE.name: TSDAE,
    Distill.name: Distill,
    ListwiseDistill.name: ListwiseDistill,
    GuidedContrastive.name: GuidedContrastive,
    CoSENT.name: CoSENT,
    SupCon.name: SupCon,
}


def get_objective_class(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise EmbtuneError(f"unknown objective {name!r}; expected one of: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


__all__ = ["Batch", "Objective", "OBJECTIVES", "get_objective_class", "UnsupSimCSE", "SupSimCSE", "MultiViewAMSoftmax", "TSDAE", "Distill", "ListwiseDistill", "GuidedContrastive", "CoSENT", "SupCon"]
