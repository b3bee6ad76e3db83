"""The suite: units of work (:mod:`.units`), their files on disk (:mod:`.store`) and the runner (:mod:`.runner`).

``run_suite(config, out, resume=...)`` runs every unit of a configuration into a results folder, saving each
as it finishes, so an interrupted run resumes where it stopped; see :mod:`vaebench.suite.runner`.
"""

from vaebench.suite.runner import SuiteResult, default_out, run_suite, saved_config
from vaebench.suite.units import Unit, plan

__all__ = ["SuiteResult", "Unit", "default_out", "plan", "run_suite", "saved_config"]
