"""A long training run that survives preemption: its whole state saved atomically every so often, and resumed.

`vaebench.train.loop.train` calls a :class:`Checkpointer` at two places: once before the first step
(:meth:`Checkpointer.load`: continue from a saved state if there is one), and after every step
(:meth:`Checkpointer.due`, then :meth:`Checkpointer.save` at most every ``every_s`` seconds). The saved
state is everything the rest of the run depends on, so a resumed run gives exactly the rows an
uninterrupted one gives (timing columns aside):

- the model's, the estimator's (baselines, running statistics) and the optimizer's state_dicts;
- every random stream the run draws from: the latent-noise generator's state (the data order and the
  dynamic binarization come from generators seeded by (seed, epoch), replayed up to the saved batch; the
  test ELBO's generator is reseeded at every evaluation);
- the step, the epoch and the batch within it, the cost counters, the partial curve rows, the running
  window of the training objective and the variance checkpoints kept so far.

A checkpoint belongs to one unit of one configuration (its file name and a key of the configuration's hash
are checked on load; a checkpoint of another configuration is ignored). It is written with the same atomic
rename as every file vaebench writes (:mod:`vaebench.files`), so a kill while saving leaves the previous
checkpoint.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import torch

from vaebench import faults, files

FORMAT = 1
"""Version of the saved state's layout; a checkpoint of another version is ignored (the unit starts over)."""


class Checkpointer:
    """Saves and restores one training run's state at ``path``.

    Args:
        path: the checkpoint file.
        every_s: seconds of running between two saves (a run shorter than this never writes one).
        key: what the checkpoint must have been saved for (e.g. the configuration's hash and the unit's name);
            a file with another key is ignored.
    """

    def __init__(self, path: str | Path, every_s: float, key: str = ""):
        self.path = Path(path)
        self.every_s = float(every_s)
        self.key = key
        self.last = time.monotonic()
        self.saves = 0
        self.children: list[Checkpointer] = []

    def for_seed(self, seed: int) -> Checkpointer:
        """A checkpoint beside this one for seed ``seed`` of a unit whose seeds train one at a time
        (``unit.pt`` -> ``unit.seed<seed>.pt``, its key extended by the seed); `discard` removes it too."""
        child = Checkpointer(
            self.path.with_name(f"{self.path.stem}.seed{seed}{self.path.suffix}"),
            self.every_s,
            key=f"{self.key}:seed{seed}",
        )
        self.children.append(child)
        return child

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None (no file, an unreadable one, or one saved for something else)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged checkpoint costs the work since the start, never a wrong number
            return None
        if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("key") != self.key:
            return None
        self.last = time.monotonic()
        return state["state"]

    def due(self) -> bool:
        """Whether ``every_s`` seconds have passed since the last save (or the start)."""
        return time.monotonic() - self.last >= self.every_s

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically (:func:`vaebench.files.write_bytes`)."""
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "key": self.key, "state": state}, buffer)
        files.write_bytes(self.path, buffer.getvalue())
        faults.point("checkpointed")
        self.saves += 1
        self.last = time.monotonic()

    def discard(self) -> None:
        """Remove the checkpoint and those of its seeds (its unit is saved)."""
        self.path.unlink(missing_ok=True)
        for child in self.children:
            child.discard()


def capture(*, model, estimator, optimizer, generator, progress: dict[str, Any]) -> dict[str, Any]:
    """The state of a training run between two steps (``progress``: its counters, rows and position)."""
    return {
        "model": model.state_dict(),
        "estimator": estimator.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "progress": progress,
    }


def restore(saved: dict[str, Any], *, model, estimator, optimizer, generator) -> dict[str, Any]:
    """Put a captured state back into the run's objects; return its ``progress``."""
    model.load_state_dict(saved["model"])
    estimator.load_state_dict(saved["estimator"])
    optimizer.load_state_dict(saved["optimizer"])
    generator.set_state(saved["generator"])
    return saved["progress"]
