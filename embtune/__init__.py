"""embtune: tune a pretrained text encoder into a sentence-embedding model and evaluate it.

Layout (data -> encoders -> objectives -> training -> evaluation -> interfaces):

- ``embtune.data``        reading training files, named datasets, duplicate-free batching
- ``embtune.encoders``    transformer encoders with the SimCSE poolers; save/load as sentence-transformers folders
- ``embtune.objectives``  training objectives (one file each), registered by name
- ``embtune.training``    the one training loop
- ``embtune.search``      one exact top-k engine (trec_eval's tie-break), quantized/faiss search, ``Index``
- ``embtune.evaluation``  SentEval-exact STS evaluation and reports
- ``embtune.adaptation``  ``embtune adapt``: recipes (stage chains), selection on the user's task, the report
- ``embtune.cli``         the ``embtune`` command
"""

from __future__ import annotations

__version__ = "0.1.0"


def load(name_or_path: str, device: str | None = None, backend: str = "torch", allow_pickle: bool = False):
    """Load a sentence-embedding model: a built-in name (``minilm-l6``), a local folder or a Hugging Face id.

    >>> model = embtune.load("minilm-l6")
    >>> model.encode(["a sentence"]).shape
    (1, 384)
    """
    from embtune.encoders import load_encoder

    return load_encoder(name_or_path, device=device, backend=backend, allow_pickle=allow_pickle)


def mine(model, pairs, corpus, output=None, **options):
    """Hard negatives for the (query, positive) pairs of ``pairs`` from ``corpus``, ranked with ``model``;
    returns the ``(sent0, sent1, hard_neg)`` rows and a report, and writes them to ``output`` when given.
    Options: ``range_min``, ``range_max``, ``num_negatives``, ``margin`` (see :mod:`embtune.training.mining`).

    >>> rows, report = embtune.mine("minilm-l6", "pairs.csv", "corpus.txt", "triples.csv", range_min=10, range_max=50)
    """
    from embtune.training.mining import mine as _mine

    return _mine(model, pairs, corpus, output, **options)


def adapt(model=None, corpus=None, output=None, **options):
    """Adapt ``model`` to the domain of ``corpus`` in one call (``embtune adapt``): the measured-best chain of
    stages for the data given, each selected on the user's own task with the starting model as a candidate;
    returns the report (also in ``output/report.json`` and ``report.md``), the model in ``output/model``.
    Options: ``pairs=``, ``scored=``, ``classes=``, ``teacher=``, ``eval_task=``, ``steps=``, ... (see
    :class:`embtune.adaptation.AdaptConfig`).

    >>> report = embtune.adapt("minilm-l6", "titles.txt", "runs/adapted", pairs="pairs.tsv", teacher="mpnet-base")
    """
    from embtune.adaptation import adapt as _adapt

    return _adapt(model, corpus, output, **options)


def __getattr__(name: str):
    if name == "Index":  # imported on first use: ``import embtune`` stays light
        from embtune.search.index import Index

        return Index
    raise AttributeError(f"module 'embtune' has no attribute {name!r}")


__all__ = ["load", "mine", "adapt", "Index", "__version__"]
