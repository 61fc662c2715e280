"""Evaluations at scale: deterministic shards, atomic shard files, and PyTorch's distributed runtime.

A protocol over ``N`` samples is cut into contiguous **shards** of ``shard_size`` samples (the last one may be
shorter): shard ``k`` holds samples ``[k S, min((k + 1) S, N))``. Rank ``r`` of ``W`` processes computes the
shards ``k`` with ``k mod W == r`` that are not done yet. A shard's results (arrays with one row per sample, or per
object of a shapes scene) go to ``<folder>/shard-00007.npz`` **atomically**: written to a temporary file in the
same folder and renamed over the final name, so a shard file exists only when it is complete. A run that
dies is resumed by running the same command again: shards whose file exists are not computed again. After a
barrier, rank 0 alone merges: the arrays of every shard are concatenated in shard order.

Because batches are cut inside shards, never across them, every shard is computed the same way whichever process
computes it, and the merged arrays (and every table computed from them) are identical for 1 and for W processes, on
the same kind of device and, on CPU, with the same number of threads per process (matrix products round
differently with 1 and 2 threads; ``torchrun`` gives each of several processes one, ``OMP_NUM_THREADS=1``).
The folder's ``manifest.json`` records the settings that shape the results (model, data, methods, shard and batch
size, ...); shards written under other settings are refused instead of being mixed in.

Processes are started by ``torchrun`` (``torch.distributed.run``), which sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; without them the run is a single process and no process group is created.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

__all__ = [
    "ShardPlan",
    "Runtime",
    "ShardStore",
    "ShardMismatchError",
    "init_runtime",
    "run_shards",
]

#: How long a rank waits at the barrier for the others (the slowest rank may still hold several shards).
BARRIER_TIMEOUT = timedelta(hours=48)


@dataclass(frozen=True)
class ShardPlan:
    """Contiguous shards of ``shard_size`` samples over ``total`` samples.

    Parameters
    ----------
    total:
        Number of samples ``N``.
    shard_size:
        Samples per shard ``S`` (the last shard holds the remainder).
    """

    total: int
    shard_size: int

    def __post_init__(self) -> None:
        if self.total < 1 or self.shard_size < 1:
            raise ValueError(f"need at least one sample and a positive shard size, got {self.total}, "
                             f"{self.shard_size}")

    @property
    def num_shards(self) -> int:
        return -(-self.total // self.shard_size)

    def indices(self, shard: int) -> range:
        """The sample indices of ``shard``."""
        if not 0 <= shard < self.num_shards:
            raise IndexError(f"shard {shard} of {self.num_shards}")
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.total))

    def owned_by(self, rank: int, world_size: int) -> list[int]:
        """The shards rank ``rank`` of ``world_size`` computes: ``k mod world_size == rank``."""
        return list(range(rank, self.num_shards, world_size))


@dataclass
class Runtime:
    """This process's place in the run.

    Attributes
    ----------
    rank, world_size, local_rank:
        From ``torchrun``'s environment (0, 1, 0 for a plain process).
    device:
        The device this process computes on (``cuda:LOCAL_RANK`` when ``cuda`` was asked for).
    distributed:
        Whether a process group was created (``world_size > 1``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process got here (a no-op for a single process)."""
        if not self.distributed:
            return
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[self.local_rank])
        else:
            dist.barrier()

    def all_agree(self, ok: bool) -> bool:
        """True when ``ok`` holds on every process (one all-reduce; a single process returns ``ok``)."""
        if not self.distributed:
            return ok
        import torch.distributed as dist

        device = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
        flag = torch.tensor([0 if ok else 1], device=device)
        dist.all_reduce(flag)
        return int(flag.item()) == 0

    def close(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.distributed = False


def _environment_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as error:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from error


def init_runtime(device: str = "cpu") -> Runtime:
    """This process's :class:`Runtime`; under ``torchrun`` with several processes, a process group too.

    Parameters
    ----------
    device:
        ``"cpu"``, ``"cuda"`` (each process takes ``cuda:LOCAL_RANK``) or an explicit ``"cuda:N"`` (single process).

    Returns
    -------
    Runtime
        ``gloo`` process group on CPU, ``nccl`` on CUDA, when ``WORLD_SIZE > 1``.
    """
    rank = _environment_int("RANK", 0)
    world_size = _environment_int("WORLD_SIZE", 1)
    local_rank = _environment_int("LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} does not lie in 0..WORLD_SIZE-1={world_size - 1}")
    chosen = torch.device(device)
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for, but CUDA is not available")
        if chosen.index is None:
            chosen = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        elif world_size > 1:
            raise ValueError("with several processes, pass --device cuda (each process takes cuda:LOCAL_RANK)")
        torch.cuda.set_device(chosen)
    runtime = Runtime(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen)
    if world_size > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if chosen.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, timeout=BARRIER_TIMEOUT)
        runtime.distributed = True
    return runtime


class ShardMismatchError(RuntimeError):
    """The shard folder holds shards of a run with other settings."""


class ShardStore:
    """The shard files of one run: ``<folder>/manifest.json`` and ``<folder>/shard-KKKKK.npz``.

    Parameters
    ----------
    folder:
        Where the shards live (created if missing).
    manifest:
        JSON-serialisable settings that shape the results; a folder written under other settings is refused.
    """

    def __init__(self, folder: str | Path, manifest: Mapping[str, Any]):
        self.folder = Path(folder)
        self.manifest = json.loads(json.dumps(dict(manifest), sort_keys=True))  # normalised, JSON-typed

    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.json"

    def check(self, runtime: Runtime | None = None) -> None:
        """Refuse a folder written under other settings; rank 0 writes the manifest of a new folder.

        Raises
        ------
        ShardMismatchError
            Naming the settings that differ.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.manifest_path.is_file():
            stored = json.loads(self.manifest_path.read_text())
            if stored != self.manifest:
                keys = sorted(k for k in set(stored) | set(self.manifest) if stored.get(k) != self.manifest.get(k))
                raise ShardMismatchError(
                    f"{self.folder} holds shards of a run with other settings (differing: {', '.join(keys)}); "
                    "pass another --out, or delete that folder to start afresh")
        elif runtime is None or runtime.is_main:
            _write_atomically(self.manifest_path, lambda f: f.write(
                (json.dumps(self.manifest, indent=2, sort_keys=True) + "\n").encode()))

    def path(self, shard: int) -> Path:
        return self.folder / f"shard-{shard:05d}.npz"

    def done(self, shard: int) -> bool:
        return self.path(shard).is_file()

    def write(self, shard: int, arrays: Mapping[str, np.ndarray]) -> Path:
        """Write one shard's arrays atomically (temporary file + rename)."""
        clean = {key: np.asarray(value) for key, value in arrays.items()}
        for key, value in clean.items():
            if value.dtype == object:
                raise TypeError(f"shard array {key!r} has dtype object; only plain numeric arrays are stored")
        _write_atomically(self.path(shard), lambda f: np.savez(f, **clean))
        return self.path(shard)

    def read(self, shard: int) -> dict[str, np.ndarray]:
        try:
            with np.load(self.path(shard), allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as error:
            raise RuntimeError(f"cannot read {self.path(shard)} ({error}); delete it and run again") from error

    def merge(self, plan: ShardPlan) -> dict[str, np.ndarray]:
        """Every shard's arrays concatenated in shard order (the order of the samples)."""
        missing = [k for k in range(plan.num_shards) if not self.done(k)]
        if missing:
            raise RuntimeError(f"shards {missing[:10]} of {plan.num_shards} are missing in {self.folder}")
        parts = [self.read(k) for k in range(plan.num_shards)]
        keys = list(parts[0])
        for k, part in enumerate(parts):
            if sorted(part) != sorted(keys):
                raise RuntimeError(f"{self.path(k)} holds other arrays than shard 0")
            if len({len(part[key]) for key in keys}) > 1:
                raise RuntimeError(f"the arrays of {self.path(k)} differ in length")
        return {key: np.concatenate([part[key] for part in parts]) for key in keys}


def _write_atomically(path: Path, write: Callable[[Any], Any]) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run_shards(
    plan: ShardPlan,
    store: ShardStore,
    runtime: Runtime,
    compute: Callable[[range, Callable[[int], Any]], Mapping[str, np.ndarray]],
    *,
    progress: bool = True,
    desc: str = "evaluate",
    log: Callable[[str], None] = print,
) -> dict[str, np.ndarray] | None:
    """Compute this rank's missing shards, wait for the others, and merge on rank 0.

    Parameters
    ----------
    plan, store, runtime:
        The shards, their files and this process's place.
    compute:
        ``(sample indices, advance) -> {name: array with one row per result}`` for one shard; ``advance(n)``
        reports ``n`` more samples done (a progress bar's ``update``).
    progress:
        Show a progress bar (rank 0 only; it counts rank 0's own samples).
    desc:
        The progress bar's label.
    log:
        Where rank 0 writes its one-line messages.

    Returns
    -------
    dict or None
        The merged arrays on rank 0; ``None`` on the other ranks.
    """
    from tqdm import tqdm

    mismatch: ShardMismatchError | None = None
    try:
        store.check(runtime)
    except ShardMismatchError as error:
        mismatch = error
    if not runtime.all_agree(mismatch is None):  # every rank stops, not only the one that saw it
        raise mismatch or ShardMismatchError(f"{store.folder} holds shards of another run (see rank 0's message)")
    mine = plan.owned_by(runtime.rank, runtime.world_size)
    todo = [k for k in mine if not store.done(k)]
    if runtime.is_main:
        done = sum(store.done(k) for k in range(plan.num_shards))
        resumed = f"; resuming: {done} of {plan.num_shards} shards already done" if done else ""
        log(f"{plan.total} samples in {plan.num_shards} shards of {plan.shard_size}, "
            f"{runtime.world_size} process(es){resumed}")
    label = desc if runtime.world_size == 1 else f"{desc} (rank 0 of {runtime.world_size})"
    bar = tqdm(total=sum(len(plan.indices(k)) for k in todo), unit="sample", desc=label,
               disable=not (progress and runtime.is_main), dynamic_ncols=True)
    for shard in todo:
        store.write(shard, compute(plan.indices(shard), bar.update))
    bar.close()
    runtime.barrier()
    if not runtime.is_main:
        return None
    return store.merge(plan)
