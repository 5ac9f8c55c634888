"""quiet: the exporters are silenced through their own loggers and warning filters, never by
switching off the application's logging or warnings (the export runs on a worker thread)."""

import logging
import threading
import warnings
from pathlib import Path

from SAMZeroShotLib import quiet

LIBRARY = Path(quiet.__file__).parent


def _in_thread(fn):
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as error:  # handed back to the test
            box["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_an_export_on_a_worker_thread_leaves_the_applications_logging_alone(caplog):
    application = logging.getLogger("Slicer.SomeOtherModule")
    exporter = logging.getLogger("torch.onnx")
    exporter_level = exporter.level
    filters_before = list(warnings.filters)

    def export():
        with quiet.exporters_quiet():
            seen = {
                "disable": logging.root.manager.disable,
                "exporter passes warnings": exporter.isEnabledFor(logging.WARNING),
            }
            application.warning("another module's warning")
            exporter.warning("tracer note")
            return seen

    with caplog.at_level(logging.INFO):
        seen = _in_thread(export)
    assert seen["disable"] == 0, "logging.disable switched off every logger of the application"
    assert not seen["exporter passes warnings"]
    assert "another module's warning" in caplog.text
    assert "tracer note" not in caplog.text
    assert exporter.level == exporter_level, "the exporter's logger level was not put back"
    added = [f for f in warnings.filters if f not in filters_before]
    assert all(f[2] is not None or f[1] is not None for f in added), (
        f"a filter that ignores every warning of every module: {added}"
    )


def test_only_the_exporters_warnings_are_filtered():
    quiet.install_warning_filters()
    with warnings.catch_warnings(record=True) as caught:  # the test's own thread, to observe
        warnings.simplefilter("always")
        quiet._FILTERS_SET[0] = False
        quiet.install_warning_filters()
        warnings.warn_explicit("exporter", UserWarning, "utils.py", 1, module="torch.onnx.utils")
        warnings.warn_explicit("timm", FutureWarning, "layers.py", 1, module="timm.models.layers")
        warnings.warn_explicit("user code", UserWarning, "script.py", 1, module="SegmentEditor")
        warnings.warn_explicit("numpy", RuntimeWarning, "core.py", 1, module="numpy.core")
    assert sorted(str(w.message) for w in caught) == ["numpy", "user code"]


def test_nested_and_concurrent_quiet_blocks_restore_the_level_once():
    exporter = logging.getLogger("openvino")
    exporter.setLevel(logging.INFO)
    entered, release = threading.Event(), threading.Event()

    def hold():
        with quiet.exporters_quiet():
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    entered.wait(30)
    with quiet.exporters_quiet():
        assert exporter.level == logging.ERROR
    assert exporter.level == logging.ERROR, "the other thread's export is still running"
    release.set()
    thread.join()
    assert exporter.level == logging.INFO
    exporter.setLevel(logging.NOTSET)


def test_no_process_wide_switch_is_used_anywhere_in_the_module_or_library():
    sources = list(LIBRARY.glob("*.py")) + [LIBRARY.parent / "SAMZeroShot.py"]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for switch in ("logging.disable(", "warnings.catch_warnings(", "warnings.simplefilter("):
            assert switch not in text, f"{path.name} uses {switch}"
