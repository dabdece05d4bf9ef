import os
import zlib

import pytest
import torch
from hypothesis import settings

# Hypothesis draws the same examples on every run, derived from each test as the inputs below
# are seeded by its name: a CI failure reproduces anywhere. HYPOTHESIS_PROFILE=explore draws
# fresh examples on each run, to search for new failures.
settings.register_profile("ganfast", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ganfast"))


@pytest.fixture(autouse=True)
def _fresh_seed_and_backend(request):
    """Each test draws its own random inputs (seeded by its name, so a failure reproduces)
    and starts from the default backend."""
    import ganfast

    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    ganfast.set_backend(None)
    yield
    ganfast.set_backend(None)


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_interp = pytest.mark.skip(reason="needs TRITON_INTERPRET=1 set before triton is "
                                          "imported (make test runs these in their own process)")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "interpreter" in item.keywords and os.environ.get("TRITON_INTERPRET") != "1":
            item.add_marker(skip_interp)
