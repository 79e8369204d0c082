"""The registry of reference implementations: a static table, importable without torch.

Each entry maps a registry id (the id users type, equal to the catalog id of the paper, or a
paper id plus a suffix when one paper has several methods: ``imtl-l``, ``imtl-g``) to the module
and class that implement it. ``modl validate`` reads this table to check the ``implementation``
field of records, so it must stay free of torch imports; :func:`create` imports lazily.

To add a method: write ``reference_impls/<family>/<module>.py``, add one line to ``_ENTRIES``,
list the id in the paper's record, and add ``tests/reference_impls/test_<module>.py``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MethodInfo:
    name: str  # registry id, e.g. "imtl-g"
    paper: str  # catalog id of the paper, e.g. "imtl"
    family: str  # taxonomy leaf id, e.g. "gradient-weighting"
    module: str  # dotted module path inside reference_impls
    cls: str  # class name in that module
    interface: str  # "aggregator" | "weighting" | "loss-weighting" | "set" | "pareto-model"

    @property
    def source_path(self) -> str:
        """Path of the module file relative to the repository root."""
        return "reference_impls/" + self.module.replace(".", "/") + ".py"


# (name, paper, family, module, class, interface)
_ENTRIES: list[tuple[str, str, str, str, str, str]] = [
    # Gradient weighting (Finding a Single Solution > Gradient Balancing)
    ("gradnorm", "gradnorm", "gradient-weighting", "gradient_weighting.gradnorm", "GradNorm", "weighting"),
    ("mgda", "mgda", "gradient-weighting", "gradient_weighting.mgda", "MGDA", "gramian-weighting"),
    ("imtl-g", "imtl", "gradient-weighting", "gradient_weighting.imtl_g", "IMTLG", "gramian-weighting"),
    ("cagrad", "cagrad", "gradient-weighting", "gradient_weighting.cagrad", "CAGrad", "gramian-weighting"),
    ("nash-mtl", "nash-mtl", "gradient-weighting", "gradient_weighting.nash_mtl", "NashMTL", "gramian-weighting"),
    ("moco", "moco", "gradient-weighting", "gradient_weighting.moco", "MoCo", "aggregator"),
    ("aligned-mtl", "aligned-mtl", "gradient-weighting", "gradient_weighting.aligned_mtl", "AlignedMTL", "gramian-weighting"),
    ("famo", "famo", "gradient-weighting", "gradient_weighting.famo", "FAMO", "weighting"),
    ("sdmgrad", "sdmgrad", "gradient-weighting", "gradient_weighting.sdmgrad", "SDMGrad", "gramian-weighting"),
    ("db-mtl", "db-mtl", "gradient-weighting", "gradient_weighting.db_mtl", "DBMTL", "aggregator"),
    ("fairgrad", "fairgrad", "gradient-weighting", "gradient_weighting.fairgrad", "FairGrad", "gramian-weighting"),
    ("upgrad", "upgrad", "gradient-weighting", "gradient_weighting.upgrad", "UPGrad", "gramian-weighting"),
    ("smg", "smg", "gradient-weighting", "gradient_weighting.smg", "SMG", "gramian-weighting"),
    ("psmgd", "psmgd", "gradient-weighting", "gradient_weighting.psmgd", "PSMGD", "gramian-weighting"),
    ("mgda-gs", "mgda-gs", "gradient-weighting", "gradient_weighting.mgda_gs", "MGDAGS", "gramian-weighting"),
    ("cr-mogm", "cr-mogm", "gradient-weighting", "gradient_weighting.cr_mogm", "CRMOGM", "weighting"),
    ("modo", "modo", "gradient-weighting", "gradient_weighting.modo", "MoDo", "weighting"),
    # Gradient manipulation
    ("graddrop", "graddrop", "gradient-manipulation", "gradient_manipulation.graddrop", "GradDrop", "aggregator"),
    ("pcgrad", "pcgrad", "gradient-manipulation", "gradient_manipulation.pcgrad", "PCGrad", "gramian-weighting"),
    ("gradvac", "gradvac", "gradient-manipulation", "gradient_manipulation.gradvac", "GradVac", "gramian-weighting"),
    # Loss balancing
    ("imtl-l", "imtl", "loss-balancing", "loss_balancing.imtl_l", "IMTLL", "loss-weighting"),
    ("ew", "rlw", "loss-balancing", "loss_balancing.ew", "EW", "loss-weighting"),
    ("uw", "uw", "loss-balancing", "loss_balancing.uw", "UW", "loss-weighting"),
    ("dwa", "mtan", "loss-balancing", "loss_balancing.dwa", "DWA", "loss-weighting"),
    ("rlw", "rlw", "loss-balancing", "loss_balancing.rlw", "RLW", "loss-weighting"),
    ("stch", "stch", "loss-balancing", "loss_balancing.stch", "STCH", "loss-weighting"),
    ("stch-mtl", "stch", "loss-balancing", "loss_balancing.stch", "STCHMTL", "loss-weighting"),
    ("auto-lambda", "auto-lambda", "loss-balancing", "loss_balancing.auto_lambda", "AutoLambda", "loss-weighting"),
    ("moml", "moml", "loss-balancing", "loss_balancing.moml", "MOML", "loss-weighting"),
    ("forum", "forum", "loss-balancing", "loss_balancing.forum", "FORUM", "loss-weighting"),
    ("pareto-mtl", "pareto-mtl", "preference-vector-based", "finite_set.pareto_mtl", "ParetoMTL", "set"),
    ("epo", "epo", "preference-vector-based", "finite_set.epo", "EPO", "set"),
    ("epo-search", "epo-search", "preference-vector-based", "finite_set.epo_search", "EPOSearch", "set"),
    ("xwc-mgda", "xwc-mgda", "preference-vector-based", "finite_set.xwc_mgda", "XWCMGDA", "set"),
    ("pmgda", "pmgda", "preference-vector-based", "finite_set.pmgda", "PMGDA", "set"),
    ("ferero", "ferero", "preference-vector-based", "finite_set.ferero", "FERERO", "set"),
    ("adaptive-reference-vectors", "adaptive-reference-vectors", "preference-vector-based", "finite_set.adaptive_reference_vectors", "AdaptiveReferenceVectors", "set"),
    ("umod", "umod", "preference-vector-based", "finite_set.umod", "UMOD", "set"),
    # the baselines of every preference-vector paper (recorded with Pareto MTL, which compares with LS first)
    ("ls", "pareto-mtl", "preference-vector-based", "finite_set.ls", "LS", "set"),
    ("tch", "pareto-mtl", "preference-vector-based", "finite_set.tch", "TCH", "set"),
    # Finite set, preference-vector-free
    ("uhv-gradient", "uhv-gradient", "preference-vector-free", "finite_set.uhv_gradient", "UHVGradient", "set"),
    ("hv-maximization", "hv-maximization", "preference-vector-free", "finite_set.hv_maximization", "HVMaximization", "set"),
    ("moo-svgd", "moo-svgd", "preference-vector-free", "finite_set.moo_svgd", "MOOSVGD", "set"),
    ("sum-of-minimum", "sum-of-minimum", "preference-vector-free", "finite_set.sum_of_minimum", "SumOfMinimum", "set"),
    ("tch-set", "stch-set", "preference-vector-free", "finite_set.stch_set", "TCHSet", "set"),
    ("stch-set", "stch-set", "preference-vector-free", "finite_set.stch_set", "STCHSet", "set"),
    ("most", "most", "preference-vector-free", "finite_set.most", "MosT", "set"),
    # Infinite set: Pareto-set models (one model maps a preference to a solution)
    ("phn-ls", "phn", "hypernetwork", "pareto_set.phn", "PHNLS", "pareto-model"),
    ("phn-epo", "phn", "hypernetwork", "pareto_set.phn", "PHNEPO", "pareto-model"),
    ("controllable-pareto-mtl", "controllable-pareto-mtl", "hypernetwork", "pareto_set.controllable_pareto_mtl", "ControllablePMTL", "pareto-model"),
    ("pareto-manifold-extractor", "pareto-manifold-extractor", "hypernetwork", "pareto_set.pareto_manifold_extractor", "ParetoManifoldExtractor", "pareto-model"),
    ("phn-hvi", "phn-hvi", "hypernetwork", "pareto_set.phn_hvi", "PHNHVI", "pareto-model"),
    ("hyper-transformer", "hyper-transformer", "hypernetwork", "pareto_set.hyper_transformer", "HyperTransformer", "pareto-model"),
    ("cosmos", "cosmos", "preference-conditioned", "pareto_set.cosmos", "COSMOS", "pareto-model"),
    ("yoto", "yoto", "preference-conditioned", "pareto_set.yoto", "YOTO", "pareto-model"),
    ("controllable-dynamic-mtl", "controllable-dynamic-mtl", "preference-conditioned", "pareto_set.controllable_dynamic_mtl", "ControllableDynamicMTL", "pareto-model"),
    ("pamal", "pamal", "model-combination", "pareto_set.pamal", "PaMaL", "pareto-model"),
    ("lorpman", "lorpman", "model-combination", "pareto_set.lorpman", "LORPMAN", "pareto-model"),
    ("pareto-merging", "yomo", "model-combination", "pareto_set.pareto_merging", "ParetoMerging", "pareto-model"),
    ("moe-fusion", "moe-fusion", "model-combination", "pareto_set.moe_fusion", "MoEFusion", "pareto-model"),
    ("moe-fusion-epo", "moe-fusion", "model-combination", "pareto_set.moe_fusion", "MoEFusionEPO", "pareto-model"),
    ("palora", "palora", "model-combination", "pareto_set.palora", "PaLoRA", "pareto-model"),
    ("panacea", "panacea", "model-combination", "pareto_set.panacea", "Panacea", "pareto-model"),
]

REGISTRY: dict[str, MethodInfo] = {
    name: MethodInfo(name, paper, family, module, cls, interface)
    for name, paper, family, module, cls, interface in _ENTRIES
}


def names() -> list[str]:
    """Registry ids of every reference implementation, sorted."""
    return sorted(REGISTRY)


def info(name: str) -> MethodInfo:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(names())}") from None


def load_class(name: str) -> type:
    entry = info(name)
    module = importlib.import_module(f"reference_impls.{entry.module}")
    return getattr(module, entry.cls)


def implements(method: Any, base: type, interface: str) -> bool:
    """Whether ``method`` (a registry id, a class or an instance) is a ``base``: an instance or subclass of it, or a
    registry id whose entry has ``interface`` or whose class subclasses ``base`` (a broken entry: False; create() says why)."""
    if isinstance(method, base):
        return True
    if isinstance(method, type):
        return issubclass(method, base)
    if isinstance(method, str) and method in REGISTRY:
        if REGISTRY[method].interface == interface:
            return True
        try:
            return issubclass(load_class(method), base)
        except (ImportError, AttributeError):
            return False
    return False


def create(name: str, **hyperparameters: Any) -> Any:
    """Build the method registered as ``name`` with the given hyperparameters (paper defaults otherwise)."""
    return load_class(name)(**hyperparameters)
