"""``relevance evaluate --protocol eraser --data MOVIES_DIR``: the CVPR 2021 token-F1 curve (spec §5.4).

An extension point until the BERT family lands (``relevance.models.bert``, the embedded ``reviews-bert``,
``relevance.evaluation.rationales``). The protocol to implement here, on the runner pattern of
:mod:`relevance.cli.protocols.imagenet_seg` (one row per document, so that :func:`run_sharded` shards, resumes and
merges it exactly):

* the ERASER Movie Reviews test split (199 documents, ``MOVIES_DIR/test.jsonl`` and ``MOVIES_DIR/docs/``);
* each document's map for the **ground-truth** class (``target=label``), clamped at 0; transformer attribution with
  its BERT start layer (the reference's default 11, spec §6.1 #9, stated in the output);
* word-pieces mapped to words by the **max** over each word's pieces (``TextMap.words(i, reduce="max")``);
  [CLS], [SEP], [UNK], [PAD] skipped;
* for k = 5, 10, ..., 80 the top-k words form a hard rationale; token-level precision / recall / F1 against the human
  rationales (ERASER's ``token_prf``, instance-macro F1), per document, stored as rows;
* the table: F1 per k and method; the figure: ``relevance.figures.perturbation.curves_figure``'s layout with k on
  the x axis (the paper's plot has no numeric table, spec §5.4).
"""

from __future__ import annotations

import argparse

from relevance.cli.evaluate import error


def run(args: argparse.Namespace) -> int:
    try:
        import relevance.evaluation.rationales  # noqa: F401  (the BERT family's ERASER metrics)
        import relevance.models.bert  # noqa: F401
    except ModuleNotFoundError:
        return error("the 'eraser' protocol is not available in this installation: it needs the BERT family "
                     "(relevance.models.bert) and relevance.evaluation.rationales")
    return error("the 'eraser' protocol runner is not written yet; see relevance/cli/protocols/eraser.py")
