"""The CI gate's report in JUnit XML, the format GitHub Actions, GitLab CI and Jenkins display.

One test case per budget of each validated model (``hilnas.validate.<device>`` / ``<model>
<metric> <= <value>``): passed when the budget is met, a ``failure`` when the measurement's upper
95 % bound is over it, an ``error`` when the model could not be measured. A validation without
budgets is one case that passes when the model was measured. The measurement summary goes into
each case's ``system-out``.
"""
from __future__ import annotations

import os
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from hilnas.server.validation import ValidationReport


def check_junit_path(path: Path | str) -> Path:
    """Make sure the JUnit file can be written before anything is measured; PermissionError naming it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "is a folder")
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as err:
        raise PermissionError(f"cannot write the JUnit report to {path}: {err.strerror or err}; give a writable "
                              "path with --junit (e.g. --junit reports/hilnas.xml)") from None
    return path


def junit_xml(reports: Sequence[ValidationReport], *, seconds: float = 0.0, suite: str = "hilnas validate") -> str:
    cases = []
    for r in reports:
        classname = f"hilnas.validate.{r.device_key}"
        checks = r.checks or (None,)
        for check in checks:
            name = f"{r.model} measured" if check is None else \
                f"{r.model} {check.budget.metric} <= {check.budget.value:g}"
            case = ET.Element("testcase", classname=classname, name=name, time=f"{seconds / max(len(checks), 1):.3f}")
            if r.measured_ms is None or (check is not None and check.met is None):
                why = f"{r.status}: {r.error}" if r.measured_ms is None else check.note
                ET.SubElement(case, "error", message=f"not measured: {why}", type="NotMeasured").text = r.summary()
            elif check is not None and not check.met:
                ET.SubElement(case, "failure", message=check.summary(), type="OverBudget").text = r.summary()
            ET.SubElement(case, "system-out").text = r.summary()
            cases.append(case)
    failures = sum(1 for c in cases if c.find("failure") is not None)
    errors = sum(1 for c in cases if c.find("error") is not None)
    root = ET.Element("testsuites", name=suite, tests=str(len(cases)), failures=str(failures), errors=str(errors),
                      time=f"{seconds:.3f}")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures),
                       errors=str(errors), skipped="0", time=f"{seconds:.3f}", hostname=socket.gethostname(),
                       timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"))
    ts.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path | str, reports: Sequence[ValidationReport], *, seconds: float = 0.0) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(junit_xml(reports, seconds=seconds), encoding="utf-8")
    os.replace(tmp, path)
    return path
