"""Installed layout: one `gpulens` namespace, no generic top-level names like `exporters` or `alerts`."""

from __future__ import annotations

import subprocess
import sys


def test_code_folders_install_under_the_gpulens_namespace(tmp_path) -> None:
    code = (
        "import importlib.util as u\n"
        "print([n for n in ('exporters', 'alerts', 'probes', 'dashboards', 'sim') if u.find_spec(n)])\n"
        "import gpulens.exporters.gpu.nvml, gpulens.probes, gpulens.dashboards, gpulens.alerts, gpulens.sim\n"
        "print(gpulens.exporters.gpu.nvml.__name__)\n"
    )
    # run outside the checkout so the source tree's folders are not on sys.path
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "gpulens.exporters.gpu.nvml"]


def test_console_script_is_installed() -> None:
    from importlib.metadata import entry_points

    [script] = [e for e in entry_points(group="console_scripts") if e.name == "gpulens"]
    assert script.value == "gpulens.cli:main"
