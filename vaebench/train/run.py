"""The loop itself, for one seed or S seeds trained as one program: steps, stops, records, reads and resumes.

:func:`vaebench.train.train` and :func:`vaebench.train.train_seeds` both run :class:`Run` over a program
(:class:`~vaebench.train.program.SeedProgram`, :class:`~vaebench.train.seeds.StackedProgram`), so one seed
and S stacked seeds go through the same schedule, the same stops and the same records. Each seed has a
:class:`Lane`: its counts, its recorder and how it ended. All live lanes take every step together (they have
one schedule: the same training-set size, batch size and length), so they share the step count; a lane that
diverges ends there and the others go on.

The clock. A step's seconds (noise, estimator, backward, divergence check, optimizer step; not data loading,
evaluation, recording or the bookkeeping of a seed that ends) are shared equally by the seeds the step
trained: each gets elapsed / S, the seeds having done the same arithmetic. A step that compiled
(:mod:`vaebench.train.compiled`) goes to ``compile`` instead, shared the same way.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from vaebench.errors import VaebenchError
from vaebench.progress import bar as progress_bar
from vaebench.train.checkpoints import Checkpointer
from vaebench.train.divergence import Latch
from vaebench.train.recording import Counts, Recorder, cpu_copy
from vaebench.train.spec import TrainSpec, learning_rate

_DEFAULT_EVALS = 20  # evaluations per run when eval_every is not given and the length is known in steps


@dataclass
class Lane:
    """One seed of a run: its counts and recorder, and how it ended.

    Attributes:
        seed: the seed.
        recorder: its history rows and kept states (its ``counts`` are the lane's).
        recorded_at: the step of its last record.
        diverged_step: the update at which it diverged (not applied), or None.
        stop: why it stopped ("" while it trains).
        final_state, estimator_state: its final states (CPU copies), set when it stops.
        pending: (latent samples, seconds) of each step since the last read of a latched check.
    """

    seed: int
    recorder: Recorder
    recorded_at: int = 0
    diverged_step: int | None = None
    stop: str = ""
    final_state: dict = field(default_factory=dict)
    estimator_state: dict = field(default_factory=dict)
    pending: list[tuple[int, float]] = field(default_factory=list)

    @property
    def counts(self) -> Counts:
        return self.recorder.counts


@dataclass(frozen=True)
class Schedule:
    """How long a run is and when it records: steps per epoch, total steps (None: by budget) and cadence."""

    per_epoch: int
    total: int | None
    eval_every: int

    @classmethod
    def of(cls, dataset, spec: TrainSpec) -> Schedule:
        per_epoch = steps_per_epoch(dataset, spec.batch_size, spec.drop_last)
        limits = [
            s for s in (spec.steps, None if spec.epochs is None else spec.epochs * per_epoch) if s is not None
        ]
        total = min(limits) if limits else None
        eval_every = spec.eval_every or (
            per_epoch if (spec.epochs is not None or total is None) else max(1, total // _DEFAULT_EVALS)
        )
        return cls(per_epoch, total, eval_every)


def steps_per_epoch(dataset, batch_size: int, drop_last: bool) -> int:
    """Minibatches per pass over the training set."""
    n_train = dataset.train.shape[0]
    if n_train == 0:
        raise VaebenchError(f"data set {dataset.name!r} has no training examples")
    per_epoch = n_train // batch_size if drop_last else math.ceil(n_train / batch_size)
    if per_epoch == 0:
        raise VaebenchError(f"batch_size {batch_size} exceeds the {n_train} training examples with drop_last")
    return per_epoch


class Run:
    """A program's run over its lanes (see the module docstring); `run` returns the lanes, ended."""

    def __init__(self, program, lanes: list[Lane], dataset, spec: TrainSpec, num_samples: int):
        self.program, self.lanes, self.data, self.spec, self.k = (
            program,
            list(lanes),
            dataset,
            spec,
            num_samples,
        )
        self.alive = list(lanes)
        self.schedule = Schedule.of(dataset, spec)
        self.latch = Latch(len(lanes), program.device) if spec.check_every > 1 else None

    def run(self, checkpoint: Checkpointer | None) -> list[Lane]:
        program, spec = self.program, self.spec
        program.train_mode()
        bar = progress_bar(self.schedule.total, spec.progress, unit="step", leave=False, desc="train")
        saved = checkpoint.load() if checkpoint is not None else None
        position = None if saved is None else program.restore(saved, self.lanes)
        if position is None:
            epoch, skip = 0, 0
            self._record()
            self._snapshot()
        else:  # continue a preempted run where its checkpoint left it
            epoch, skip = position
            self.alive = [lane for lane in self.lanes if not lane.stop]
            if self.latch is not None:
                self.latch.keep(range(len(self.alive)))
        stop = ""
        while not stop:
            batches = [
                iter(
                    self.data.batches(spec.batch_size, seed=lane.seed, epoch=epoch, drop_last=spec.drop_last)
                )
                for lane in self.alive
            ]
            for batch in range(self.schedule.per_epoch):
                xs = [next(b) for b in batches]
                if batch < skip:  # drawn before the checkpoint: the data order's generator replays them
                    continue
                stop = self._stop_reason() or self._step(xs, batches)
                save = checkpoint is not None and checkpoint.due()  # decided once: a save follows a read
                if not stop and self.latch is not None and self._read_due(save):
                    stop = self._read(batches)
                if stop:
                    break
                bar.update(1)
                self._after_step(epoch, batch, checkpoint if save else None, bar)
            epoch, skip = epoch + 1, 0
        for lane in list(self.alive):
            self._end(lane, stop)
        bar.close()
        program.train_mode()
        return self.lanes

    def _after_step(self, epoch: int, batch: int, checkpoint: Checkpointer | None, bar) -> None:
        """Record, keep and save (``checkpoint``: the one to save to now, or None) after a step."""
        step = self.alive[0].counts.step
        if step % self.schedule.eval_every == 0:
            self._record()
            bar.set_postfix(test_elbo=f"{self.alive[0].recorder.last_elbo:.2f}", refresh=False)
        self._snapshot()
        if checkpoint is not None:
            checkpoint.save(self.program.capture(self.lanes, epoch, batch + 1))

    def _record(self) -> None:
        for lane, elbo in zip(self.alive, self.program.evaluate(), strict=True):
            lane.recorder.record_elbo(elbo)
            lane.recorded_at = lane.counts.step

    def _snapshot(self) -> None:
        if self.alive[0].counts.step in self.spec.keep:
            for position, lane in enumerate(self.alive):
                lane.recorder.keep(*self.program.states(position))

    def _step(self, xs, batches) -> str:
        """One update of every live seed; "diverged" when none is left, else ""."""
        program, seeds = self.program, len(self.alive)
        if self.spec.lr_schedule != "constant":  # a function of the step alone: a resumed run continues it
            lr = learning_rate(self.spec, self.alive[0].counts.step, self.schedule.total or 0)
            for group in program.opt.param_groups:
                group["lr"] = lr
        x = program.batch(xs)
        start = time.perf_counter()
        loss, norm = program.forward_backward(x)
        start += program.excluded  # a one-off check inside the step is not training
        program.excluded = 0.0
        compiling, bound = program.compiling, self.spec.divergence_bound
        if self.latch is None:
            # One host read per step: the check must come before the update it would refuse, and the same
            # read brings the losses for the record. NaN compares False: out of bounds.
            losses, bad_positions = read_check(loss, norm, bound)
            elapsed = time.perf_counter() - start
            for i in bad_positions:
                self.alive[i].diverged_step = self.alive[i].counts.step + 1
            self._stop_lanes(bad_positions, "diverged", batches)
            if not self.alive:
                return "diverged"
            start = time.perf_counter()
            program.update(None)
            elapsed += time.perf_counter() - start
            kept = [loss for i, loss in enumerate(losses) if i not in bad_positions]
            for lane, value in zip(self.alive, kept, strict=True):
                lane.recorder.window.append(-value)
        else:
            bad = ~((loss.abs() <= bound) & (norm.to(loss.dtype) <= bound))
            frozen_before = self.latch.observe(bad, self.alive[0].counts.step + 1, loss)
            program.restore_state(frozen_before)
            program.update(self.latch.frozen)
            elapsed = time.perf_counter() - start
        self._count(x.shape[0] // seeds * self.k, elapsed / seeds, compiling)
        return ""

    def _count(self, samples: int, share: float, compiling: bool) -> None:
        for lane in self.alive:
            counts = lane.counts
            if compiling:
                counts.compile += share
            else:
                counts.wall += share
            counts.step += 1
            counts.samples += samples
            if self.latch is not None:
                lane.pending.append((samples, 0.0 if compiling else share))

    def _read_due(self, save: bool) -> bool:
        """Whether the latched check must be read now: every N steps and before anything reads the run."""
        step = self.alive[0].counts.step
        return (
            step % self.spec.check_every == 0
            or step % self.schedule.eval_every == 0
            or step in self.spec.keep
            or save
            or bool(self._stop_reason())
        )

    def _read(self, batches) -> str:
        """Read the latched check; cut every seed that went bad back to the step before it; "diverged" if none is left."""
        start = time.perf_counter()
        first, losses = self.latch.read()
        waited = (time.perf_counter() - start) / len(self.alive)
        bad_positions = []
        for position, lane in enumerate(self.alive):
            counts, steps = lane.counts, len(losses)
            if lane.pending:
                counts.wall += waited  # the device's work the read waited for
            good = steps if not first[position] else first[position] - (counts.step - steps) - 1
            lane.recorder.window.extend(-row[position] for row in losses[:good])
            for samples, seconds in lane.pending[good:]:  # computed after its first bad step: discarded
                counts.step, counts.samples, counts.wall = (
                    counts.step - 1,
                    counts.samples - samples,
                    counts.wall - seconds,
                )
            lane.pending.clear()
            if first[position]:
                lane.diverged_step = first[position]
                bad_positions.append(position)
        self._stop_lanes(bad_positions, "diverged", batches)
        if self.alive:
            self.latch.keep([i for i in range(len(first)) if i not in bad_positions])
        return "" if self.alive else "diverged"

    def _stop_lanes(self, positions: list[int], reason: str, batches) -> None:
        """End the lanes at ``positions`` (of the live ones) and take them out of the program."""
        if not positions:
            return
        for position in positions:
            self._end(self.alive[position], reason, position)
        self.program.drop(positions)
        keep = [i for i in range(len(self.alive)) if i not in positions]
        self.alive = [self.alive[i] for i in keep]
        batches[:] = [batches[i] for i in keep]

    def _end(self, lane: Lane, reason: str, position: int | None = None) -> None:
        """A lane's last record (if its last step has none) and its final states."""
        position = self.alive.index(lane) if position is None else position
        if lane.recorded_at != lane.counts.step:
            lane.recorder.record_elbo(self.program.evaluate_one(position))
            lane.recorded_at = lane.counts.step
        model_state, estimator_state = self.program.states(position)
        lane.final_state, lane.estimator_state = cpu_copy(model_state), cpu_copy(estimator_state)
        lane.stop = reason

    def _stop_reason(self) -> str:
        """Why the run should stop before the next update, or "" to go on."""
        counts, spec, total = self.alive[0].counts, self.spec, self.schedule.total
        if total is not None and counts.step >= total:
            return "steps" if spec.steps is not None and counts.step >= spec.steps else "epochs"
        reached = {"grad_evals": counts.step, "latent_samples": counts.samples, "seconds": counts.wall}
        for key, limit in (spec.budget or {}).items():
            if reached[key] >= limit:
                return f"budget:{key}"
        return ""


def read_check(loss: Tensor, norm: Tensor, bound: float) -> tuple[list[float], list[int]]:
    """The per-step divergence check, one host read: the losses [S] and the seeds out of bounds.

    A seed is out of bounds when its loss or its gradient norm is NaN, Inf or beyond ``bound``.
    """
    seeds = loss.shape[0]
    values = torch.cat([loss, norm.to(loss.dtype)]).tolist()
    losses, norms = values[:seeds], values[seeds:]
    return losses, [i for i in range(seeds) if not (abs(losses[i]) <= bound and norms[i] <= bound)]
