"""The tutorial format: commands, continuations, here-documents, and matching expected output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from masterworker.lab.tutorial import Shell, first_missing, parse

TEXT = """# x

```console
$ echo one \\
    two
one two
$ python - <<'PY'
print("hi")
PY
hi
$ true
```

```text
$ not a step
```
"""


def test_parse_console_blocks_only_with_continuations_and_heredocs() -> None:
    steps = parse(TEXT)
    assert [s.command for s in steps] == ["echo one \\\n    two", "python - <<'PY'\nprint(\"hi\")\nPY", "true"]
    assert steps[0].expected == ["one two"] and steps[1].expected == ["hi"] and steps[2].expected == []


def test_expected_lines_in_order_with_ellipsis_and_squeezed_spaces() -> None:
    output = "alpha   beta\nnoise\ngamma: 42 tasks done\n"
    assert first_missing(["alpha beta", "gamma: ... done"], output) is None
    assert first_missing(["... 42 ...", "alpha"], output) == "alpha"  # order matters
    assert first_missing(["delta"], output) == "delta"


def test_a_background_process_gets_a_terminal_named_after_it() -> None:
    from masterworker.lab.tutorial import terminal_name

    assert terminal_name("mw master --id master-2 --impl async &", 3) == "master-2"
    assert terminal_name("mw zk start --port $ZK_PORT &", 1) == "zk"
    assert terminal_name("mw submit --file tasks.txt &", 7) == "submit"
    assert terminal_name("zkCli.sh -server x | tee out.txt &", 2) == "job-2"


def test_a_step_that_times_out_shows_the_last_lines_of_every_terminal(tmp_path: Path) -> None:
    """A tutorial failing in CI says what its background processes printed, not only which step hung."""
    shell = Shell(tmp_path, dict(os.environ))
    try:
        shell.run("printf 'a\\nb\\nlast words\\n' &")
        with pytest.raises(TimeoutError) as raised:
            shell.run("until false; do sleep 0.2; done", timeout=1.0)
    finally:
        shell.close()
    assert "did not finish within 1 s" in str(raised.value)
    assert "job-1's terminal:" in str(raised.value) and "last words" in str(raised.value)
