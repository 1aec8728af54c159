"""A pytest plugin for scripts/dev/gpu_check.sh (`pytest -p gpu_test_log`): each test's outcome as one JSON line in
the file GPU_CHECK_TEST_LOG names, written as the test ends, with its recorded properties (`record_property`) and,
for a skip or failure, its reason; first a line with the numbers collected and deselected. A test part stopped by its
time limit keeps the results it had (pytest's junit file is written only at the end)."""

import json
import os


def _write(record: dict) -> None:
    with open(os.environ["GPU_CHECK_TEST_LOG"], "a") as f:
        f.write(json.dumps(record, default=str) + "\n")


def pytest_deselected(items) -> None:
    _write({"deselected": len(items)})


def pytest_collection_finish(session) -> None:
    _write({"collected": len(session.items)})


def pytest_runtest_logreport(report) -> None:
    """The call's outcome; a setup that did not pass (a skip, a fixture error); a teardown that failed."""
    if not (report.when == "call" or (report.when == "setup" and not report.passed)
            or (report.when == "teardown" and report.failed)):
        return
    message = None
    if report.skipped and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2])  # (file, line, "Skipped: <reason>")
    elif report.failed:
        message = str(report.longrepr)[-2000:]
    _write({"name": report.nodeid, "when": report.when, "outcome": report.outcome,
            "seconds": round(report.duration, 2), "message": message, "properties": dict(report.user_properties)})
