"""The engine factory: callers own their engines, kept by settings, never shared by accident."""

import threading

import pytest

from SAMZeroShotLib import accuracy_guard
from SAMZeroShotLib.engines import EngineFactory
from SAMZeroShotLib.parameters import Parameters


class Built:
    """Stands in for an engine (building a real one loads the model: tested elsewhere)."""

    def __init__(self, parameters):
        self.parameters = parameters
        self.cache = "not set"


@pytest.fixture
def factory(monkeypatch):
    made = []

    def build(self, parameters, progress=None, cancel=None, log=None):
        made.append(parameters)
        return Built(parameters)

    monkeypatch.setattr(EngineFactory, "build", build)
    factory = EngineFactory(keep=2)
    factory.made = made
    return factory


def test_one_engine_per_setting_kept_and_reused(factory):
    first = factory.get(Parameters())
    assert factory.get(Parameters()) is first
    assert len(factory.made) == 1 and len(factory) == 1


def test_the_embedding_cache_setting_does_not_rebuild_the_engine(factory):
    on = factory.get(Parameters())
    cache = on.cache
    assert cache is not None and cache != "not set"
    off = factory.get(Parameters(embedding_cache=False))
    assert off is on and off.cache is None
    assert factory.get(Parameters()).cache is cache, "the embeddings are kept for later runs"
    assert len(factory.made) == 1


def test_other_model_settings_get_another_engine_and_the_oldest_is_dropped(factory):
    default = factory.get(Parameters())
    fp32 = factory.get(Parameters(precision="fp32"))
    assert fp32 is not default and len(factory) == 2
    factory.get(Parameters())  # the default is now the most recently used
    factory.get(Parameters(backend="torch"))
    assert len(factory) == 2
    assert factory.get(Parameters()) is default
    assert factory.get(Parameters(precision="fp32")) is not fp32, "fp32 was dropped and rebuilt"


def test_two_factories_never_share_an_engine(monkeypatch, factory):
    other = EngineFactory()
    assert factory.get(Parameters()) is not other.get(Parameters())


def test_release_drops_the_engine_and_its_cache(factory):
    first = factory.get(Parameters())
    factory.release(Parameters())
    assert len(factory) == 0
    assert factory.get(Parameters()) is not first
    factory.get(Parameters(precision="fp32"))
    factory.release()
    assert len(factory) == 0


def test_concurrent_callers_build_one_engine(factory):
    got = []
    threads = [
        threading.Thread(target=lambda: got.append(factory.get(Parameters()))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(factory.made) == 1 and all(engine is got[0] for engine in got)


def test_the_accuracy_guard_is_the_default_check_and_keep_is_checked():
    assert EngineFactory().check is accuracy_guard.GUARD
    assert EngineFactory(check=None).check is None
    with pytest.raises(ValueError, match="at least one engine"):
        EngineFactory(keep=0)


def test_making_a_factory_imports_no_torch():
    # The Slicer module makes its factory when it opens, before its packages may be installed.
    import subprocess
    import sys
    from pathlib import Path

    library = Path(__file__).resolve().parents[1] / "SAMZeroShot"
    code = (
        f"import sys; sys.path.insert(0, {str(library)!r}); "
        "from SAMZeroShotLib.engines import EngineFactory; EngineFactory(); "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
