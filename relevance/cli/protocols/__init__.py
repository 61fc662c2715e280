"""The runners of ``relevance evaluate --protocol NAME``, one module each (see :mod:`relevance.cli.evaluate`)."""

from __future__ import annotations

import argparse
from typing import Any, Callable


def run_on_runtime(args: argparse.Namespace, body: Callable[[argparse.Namespace, Any], int]) -> int:
    """Start this process's distributed runtime (one process, or a ``torchrun`` rank), run a protocol's body on it
    and close it; a usage problem or shards of another run become ``relevance evaluate: error: ...`` (exit status 2).

    Parameters
    ----------
    args:
        The parsed options of ``relevance evaluate`` (``args.device`` picks the device).
    body:
        ``body(args, runtime) -> exit status``: the protocol itself.

    Returns
    -------
    int
        The exit status.
    """
    from relevance.cli.evaluate import error
    from relevance.cli.protocols.images import UsageError
    from relevance.evaluation.sharding import ShardMismatchError, init_runtime

    try:
        runtime = init_runtime(args.device)
    except (ValueError, RuntimeError) as problem:
        return error(str(problem))
    try:
        return body(args, runtime)
    except (UsageError, ShardMismatchError) as problem:
        return error(str(problem))
    finally:
        runtime.close()
