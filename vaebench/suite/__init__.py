"""The suite: it owns every loop over settings, seeds and checkpoints, and all orchestration.

- :mod:`.units`: the plan (which units exist, in which order); :mod:`.context`: what they share;
  :mod:`.execute`: how each unit is computed (the loops over the grid, one setting at a time to the measures);
- :mod:`.store`, :mod:`.integrity`: a unit's files on disk and their manifests; :mod:`.ownership`: the lock
  on a results folder and resuming;
- :mod:`.runner`: :func:`run_suite`, every unit saved as it finishes, resumable and interruptible;
  :mod:`.dispatch`: the one loop over units and its pools (this process, worker processes), and
  :mod:`.ray_engine` (Ray, optional);
- :mod:`.cost`: the one cost model (a unit's seconds, a step's bytes), its rates measured for the dry run by
  :mod:`.calibration` or guessed for the progress bar; :mod:`.rebuild`: a folder's tables rebuilt from its
  verified units.

The suite does not import the report: :func:`run_suite` and :func:`~vaebench.suite.rebuild.rebuild` take the
function that writes it.
"""

from vaebench.suite.ownership import saved_config
from vaebench.suite.runner import SuiteResult, default_out, run_suite
from vaebench.suite.units import Unit, plan

__all__ = ["SuiteResult", "Unit", "default_out", "plan", "run_suite", "saved_config"]
