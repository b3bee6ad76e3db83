"""Settings shared by every test."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    # The tests use tiny models, which gain nothing from intra-op threads; on a busy machine threads waiting
    # for each other make them many times slower. The previous count is restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_plugins_left_behind():
    # A test that loads plugins (a CLI run with --plugin, `list` finding installed entry points such as the
    # example package CI installs) must not change what the next test sees in the registries.
    yield
    from vaebench.plugins import registry

    registry.unload()


RAY_MODULES = ("test_ray", "test_plugins_ray")
"""Modules whose tests start a local Ray cluster (beside the ``ray``-marked tests of other modules)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Under pytest-xdist (`--dist loadgroup`, the project's default) the tests of one module run in one worker,
    # so a module-scoped fixture (a shared baseline run) is built once; every test that starts a Ray cluster
    # runs in one worker, one after another, since two clusters would share ~/.ray and the session folders.
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else item.nodeid
        ray = module in RAY_MODULES or item.get_closest_marker("ray") is not None
        item.add_marker(pytest.mark.xdist_group("ray" if ray else module))
