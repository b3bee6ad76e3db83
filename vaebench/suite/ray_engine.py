"""The units as Ray tasks, on a local Ray cluster or an existing one (``--engine ray [--address auto]``).

Ray (https://docs.ray.io) is an optional dependency (``pip install -e ".[ray]"``), imported only here and only
when this engine is asked for. The driver (``python -m vaebench run``) keeps every guarantee of a local run:
it holds the results folder's lock and is its only writer; each Ray task computes one unit and returns its
rows (:class:`vaebench.suite.dispatch.Outcome`) through Ray's object store; the driver saves them atomically
in its own output folder. The scheduling rules are those of :mod:`vaebench.suite.dispatch` (variance units
after the anchor run, throughput units alone).

Each task asks Ray for ``threads`` CPUs (one for ``threads = 0``) and, on a CUDA device, ``num_gpus`` GPUs
(a fraction such as 0.25 lets small models share a GPU). A task whose worker process dies (killed, out of
memory, a node lost) is retried by Ray, up to `RETRIES` times; a unit's exception is not retried (it
would recur) but recorded as a failure like in a local run.

Workers need the data where the driver has them (or the embedded digits set) and the variance units need
the anchor run's checkpoints: those are sent through the object store, so the workers need no shared
file system. A unit's preemption checkpoints (:mod:`vaebench.train.checkpoints`) go to the results folder when a
worker sees it (one machine, or shared storage), else to a temporary folder of the worker's node.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import torch

from vaebench import faults, files
from vaebench import plugins as vaebench_plugins
from vaebench.config import SuiteConfig
from vaebench.errors import VaebenchError
from vaebench.plugins import registry
from vaebench.suite import dispatch
from vaebench.suite.context import Context
from vaebench.suite.units import MEASURED_AT_ANCHOR, Unit, anchor_unit

RETRIES = 2
"""Times Ray starts a task again whose worker process died."""


CONNECT_TIMEOUT_S = 5.0
"""How long ``--address`` is given to accept a connection before the run is refused (nothing written)."""


def check_address(address: str) -> None:
    """Refuse an ``--address`` that is malformed or where nothing listens, after at most `CONNECT_TIMEOUT_S`.

    Accepted: ``auto`` (the cluster ``ray start --head`` started here), ``HOST:PORT`` (the GCS of a cluster)
    and ``ray://HOST:PORT`` (a Ray Client server). A TCP connection is tried first, so an address where nothing
    listens is an error in seconds instead of Ray's long wait.

    Raises:
        VaebenchError: naming the address and what is wrong with it.
    """
    if address == "auto":
        return
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")  # an IPv6 address in brackets
    if (
        not sep
        or not host
        or not port.isdigit()
        or not 0 < int(port) < 65536
        or any(c in host for c in "/ @")
    ):
        raise VaebenchError(
            f"--address {address!r} is not a Ray address: use HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:PORT "
            "(a Ray Client server, port 10001 by default) or auto"
        )
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise VaebenchError(
            f"--address {address!r}: nothing accepts a connection at {host}:{port} ({reason}); start the cluster "
            "(ray start --head), check the host and port, or leave --address out to start a local one"
        ) from None


def require_ray():
    try:
        import ray
    except ImportError:
        raise VaebenchError(
            "--engine ray needs Ray, which is not installed: pip install -e \".[ray]\" (or pip install 'ray>=2.60')"
        ) from None
    return ray


class RayEngine:
    """Runs units as Ray tasks (see the module docstring).

    Args:
        address: an existing cluster's address (``auto``: the one ``ray start --head`` started on this machine);
            None starts a local cluster for the run (stopped at the end).
        num_cpus: CPUs of that local cluster (default: all).
        num_gpus: GPUs per unit on a CUDA device (default 1; a fraction shares a GPU between units).
        runtime_env: passed to Ray (e.g. ``{"working_dir": "."}`` where the workers lack the code).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        num_gpus: float = 1.0,
        runtime_env: dict | None = None,
    ):
        if address is not None:
            check_address(address)
        self.address, self.num_cpus, self.num_gpus, self.runtime_env = (
            address,
            num_cpus,
            num_gpus,
            runtime_env,
        )
        self.workers = 0
        self.worker_errors: tuple[type[BaseException], ...] = ()
        self.started = False

    def start(
        self, config: SuiteConfig, out: Path, plugins: list = (), data_sha256: str | None = None
    ) -> RayEngine:
        """Connect to (or start) the cluster; after this, ``workers`` is how many units run at once.

        The run's plugins are shipped to the workers with Ray's runtime environment (``py_modules``: each
        plugin's package folder, so a cluster needs nothing installed), and each task re-loads them from their
        records, refusing a copy whose source differs (:func:`vaebench.plugins.registry.reload`). A cluster this
        engine did not start (``ray.init`` called before) must have them importable already.
        """
        ray = require_ray()
        self.plugins, self.data_sha256 = list(plugins), data_sha256
        if not ray.is_initialized():
            shipped = {"py_modules": vaebench_plugins.py_modules(self.plugins)} if self.plugins else None
            if self.address is None:
                ray.init(
                    num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False, runtime_env=shipped
                )
            else:
                try:
                    ray.init(address=self.address, log_to_driver=False, runtime_env=shipped)
                except Exception as err:  # a cluster that is not there, or not a Ray one: one line
                    raise VaebenchError(
                        f"--address {self.address!r}: cannot connect to a Ray cluster there "
                        f"({type(err).__name__}: {' '.join(str(err).split())[:200]}); start one with `ray start "
                        "--head`, or leave --address out to start a local one"
                    ) from None
            self.started = True
        cpus = config.threads or 1
        gpus = self.num_gpus if config.device.startswith("cuda") else 0
        total = ray.cluster_resources()
        self.workers = max(1, int(total.get("CPU", 1) // cpus))
        if gpus:
            self.workers = min(self.workers, max(1, int(total.get("GPU", 0) // gpus)))
        options = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": RETRIES, "retry_exceptions": False}
        if self.runtime_env:
            options["runtime_env"] = self.runtime_env
        self.task = ray.remote(_compute_task).options(**options)
        self.config, self.out = config, str(out)
        self.anchors: dict = {}  # problem -> the anchor run's bytes in the object store
        self.worker_errors = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)
        self.refs = []
        return self

    def submit(self, unit: Unit):
        ray = require_ray()
        anchor = None
        if unit.kind in MEASURED_AT_ANCHOR:
            if unit.problem not in self.anchors:
                path = Path(self.out) / anchor_unit(unit.problem).path
                self.anchors[unit.problem] = ray.put(path.read_bytes())
            anchor = self.anchors[unit.problem]
        ref = self.task.remote(self.config, self.out, unit, anchor, self.plugins, self.data_sha256)
        self.refs.append(ref)
        return ref.future()

    def restart(self) -> None:
        """Nothing to do: Ray replaces a dead worker by itself."""

    def close(self) -> None:
        """Cancel the tasks still running; stop the cluster if this run started it."""
        ray = require_ray()
        for ref in self.refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # finished already, or its worker is gone: nothing to cancel
                pass
        self.refs = []
        if self.started:
            ray.shutdown()
            self.started = False


_contexts: dict[tuple, Context] = {}


def _compute_task(
    config: SuiteConfig, out: str, unit: Unit, anchor, plugins, data_sha256
) -> dispatch.Outcome:
    """One unit in a Ray worker process (a context per configuration, kept between the tasks of one worker)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    # cheap when loaded already; refuses a copy whose source differs from the driver's
    registry.reload(plugins)
    key = (repr(config), out)
    if key not in _contexts:
        # the driver's folder where this node sees it; else a folder of this node for the anchor's copy
        folder = out if Path(out).is_dir() else tempfile.mkdtemp(prefix="vaebench-")
        _contexts[key] = Context(config, folder, data_sha256)
    ctx = _contexts[key]
    if anchor is not None and ctx.out != Path(out):
        files.write_bytes(ctx.out / anchor_unit(unit.problem).path, anchor)
    faults.point("worker")
    return dispatch.compute(unit, ctx)
