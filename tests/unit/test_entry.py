"""The ``mw`` command's entry point: a Ctrl-C while the command line loads is no traceback.

Found driving ``mw submit --file`` from a script that stopped it at once: loading the modules
takes about 0.3 s, and a SIGINT then printed a traceback of imports, exit 1.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The same moment, made certain: the import of the command line raises KeyboardInterrupt.
INTERRUPTED_IMPORT = """
import sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "masterworker.cli":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
from masterworker.__main__ import main
main()
"""


def test_ctrl_c_while_loading_exits_130_and_prints_nothing() -> None:
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_IMPORT], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "")


def test_the_console_script_goes_through_the_same_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["mw"] == "masterworker.__main__:main"
