"""``import arpo_core.report`` must stay light: no torch, and the optional packages only when used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def test_import_report_imports_no_heavy_package() -> None:
    code = (
        "import sys, arpo_core.report, arpo_core.report.metrics, arpo_core.report.plot, arpo_core.report.summary; "
        "print(sorted({m.split('.')[0] for m, mod in sys.modules.items() if mod is not None} & "
        "{'torch', 'matplotlib', 'tensorboard', 'tensorboardX', 'wandb', 'tensorflow', 'rich'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tensorboard_sink_needs_no_torch(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    code = (
        "import sys; from arpo_core.report import TensorBoardSink; "
        "s = TensorBoardSink(sys.argv[1]); s.log(1, {'reward_mean': 0.5}); s.close(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'tensorflow'}))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert list(tmp_path.glob("events.out.tfevents.*"))
