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
    from vaebench import registry

    registry.unload()
