"""Executable tutorials: parse a chapter's markdown and run its commands in a real shell.

A tutorial shows commands the way a terminal does, in ```` ```console ```` blocks::

    $ mw submit -- echo hello
    task-...
    hello

A line starting with ``$ `` is a command (a trailing ``\\`` or a ``<<'EOF'`` here-document
continues it); the lines after it are output the reader should see. Each expected line must
appear, in order, within the command's output (spaces are squeezed; ``...`` stands for
anything). Commands run one after another in one bash, so ``export`` behaves as in a terminal.
Other code blocks are for reading only.

**One terminal per process.** A reader runs ``mw master --id master-1`` in a terminal of its
own; a tutorial writes ``$ mw master --id master-1 &`` and the runner gives that process its
own "terminal": a log named after it (``master-1.log``: the ``--id``, or ``zk`` for
``mw zk start``, ``submit`` for ``mw submit``, else ``job-N``), which later steps may read.
What a reader would do in another terminal is a comment line, harmless if typed, that the
runner carries out::

    $ # in master-1's terminal: Ctrl-C          (SIGINT to that process)
    $ # kill -9 master-1                        (also kill -STOP / kill -CONT / kill -TERM)
    $ # wait until master-2's terminal shows: is a backup
    $ # wait until mw status shows: active master: master-2

The test suite runs every tutorial this way (tests/integration/test_tutorials.py), so a
tutorial that drifts from the code fails CI; ``mw tutorial run N`` runs one for a reader.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"
_HEREDOC = re.compile(r"<<-?\s*'?\"?(\w+)'?\"?\s*$")


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)
    line: int = 0


@dataclass
class Outcome:
    step: Step
    output: str
    missing: str | None  # the first expected line not found, or None

    @property
    def ok(self) -> bool:
        return self.missing is None


def chapters() -> list[Path]:
    return sorted(TUTORIALS.glob("[0-9][0-9]-*.md"))


def title(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def parse(text: str) -> list[Step]:
    """The commands and expected outputs of every ```console block, in order."""
    steps: list[Step] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```console":
            index += 1
            continue
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            line = lines[index]
            if line.startswith("$ "):
                start, command = index + 1, line[2:]
                heredoc = _HEREDOC.search(command)
                while command.endswith("\\") or heredoc:
                    index += 1
                    command += "\n" + lines[index]
                    if heredoc and lines[index].strip() == heredoc.group(1):
                        heredoc = None
                steps.append(Step(command, line=start))
            elif steps and line.strip():
                steps[-1].expected.append(line)
            index += 1
        index += 1
    return steps


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def first_missing(expected: list[str], output: str) -> str | None:
    """Each expected line must be found in order; '...' matches anything."""
    haystack = [_squeeze(line) for line in output.splitlines()]
    position = 0
    for want in expected:
        wanted = _squeeze(want)
        if wanted in ("...", ""):
            continue
        parts = [p.strip() for p in wanted.split("...") if p.strip()]
        while position < len(haystack) and not _matches(parts, haystack[position]):
            position += 1
        if position == len(haystack):
            return want
        position += 1
    return None


def _matches(parts: list[str], line: str) -> bool:
    at = 0
    for part in parts:
        found = line.find(part, at)
        if found < 0:
            return False
        at = found + len(part)
    return True


class Shell:
    """One bash for a whole tutorial; each command's output ends at a unique marker."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.marker = f"__mw_step_done_{uuid.uuid4().hex}__"
        self.cwd = cwd
        self.background = 0
        self.terminals: dict[str, str] = {}  # a process's name -> the shell variable holding its pid
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True,
        )  # fmt: skip
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._send("exec 2>&1; set +m")

    def _read(self) -> None:
        """A reader thread, so a step that hangs silently still meets its timeout."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def run(self, command: str, timeout: float = 120.0) -> str:
        stripped = command.rstrip()
        directive = _DIRECTIVE.match(stripped)
        if directive:
            command = self._directive(directive)
        elif stripped.endswith("&") and not stripped.endswith("&&"):
            self.background += 1
            name = terminal_name(stripped, self.background)
            self.terminals[name] = f"__mw_pid_{len(self.terminals)}"
            command = f"{stripped[:-1].rstrip()} > {name}.log 2>&1 & {self.terminals[name]}=$!"
        self._send("(exit ${__mw_status:-0})")  # so that $? means the previous step's status, as in a terminal
        self._send(command)
        self._send(f'__mw_status=$?; echo "{self.marker}"')
        output: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(
                    f"{command.splitlines()[0]!r} did not finish within {timeout:g} s{self._terminal_tails()}"
                ) from None
            if line is None:
                raise RuntimeError("the tutorial's shell exited")
            if line.rstrip("\n") == self.marker:
                return "".join(output)
            output.append(line)

    def _terminal_tails(self, lines: int = 6) -> str:
        """The last lines of every background process's log: what a reader would look at in its terminal."""
        tails = []
        for name in self.terminals:
            try:
                text = (self.cwd / f"{name}.log").read_text(errors="replace")
            except OSError:
                continue
            shown = "".join(f"\n    {line}" for line in text.splitlines()[-lines:])
            tails.append(f"\n  {name}'s terminal:{shown or ' (nothing)'}")
        return "".join(tails)

    def _directive(self, match: re.Match) -> str:
        """The shell command that does what the reader would do in another terminal."""
        action, rest = match.group(1), match.group(2).strip()
        if action in ("in", "kill"):  # in NAME's terminal: Ctrl-C / kill -9 NAME, kill -STOP NAME...
            if action == "in":
                signal_name, name = "-INT", rest.split("'s terminal", 1)[0]
            else:
                signal_name, name = (word.strip() for word in rest.split(None, 1))
            pid = self._pid(name)
            if signal_name in ("-STOP", "-CONT"):
                return f"kill {signal_name} ${pid}"
            return f"kill {signal_name} ${pid}; wait ${pid} 2>/dev/null"  # as a terminal's prompt comes back
        where, _, text = rest.partition(" shows: ")
        quoted = "'" + text.replace("'", "'\\''") + "'"
        if where.endswith("'s terminal"):
            probe = f"grep -qF -- {quoted} {where.removesuffix(chr(39) + 's terminal')}.log"
        elif where == "mw status":
            probe = f"mw status 2>/dev/null | grep -qF -- {quoted}"
        else:
            raise ValueError(f"cannot wait until {where!r} shows something")
        return f"until {probe}; do sleep 0.2; done"  # in vain: the step's timeout fails the tutorial

    def _pid(self, name: str) -> str:
        if name not in self.terminals:
            raise ValueError(f"no process named {name!r} runs in the background (known: {', '.join(self.terminals)})")
        return self.terminals[name]

    def close(self) -> None:
        """Stop the shell and everything it started (SIGTERM first, so servers stop cleanly)."""
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self.proc.poll()  # reap our bash: a zombie still counts as a member of its group
                if not _group_alive(self.proc.pid):
                    break
                time.sleep(0.1)
        self.proc.wait(10)


_DIRECTIVE = re.compile(r"^#\s*(in|kill|wait until)\s+(.*)$")


def terminal_name(command: str, number: int) -> str:
    """The name of a background process's terminal (its log): its --id, zk, submit, or job-N."""
    words = command.split()
    if "--id" in words[:-1]:
        return words[words.index("--id") + 1]
    if words[:3] == ["mw", "zk", "start"]:
        return "zk"
    if words[:2] == ["mw", "submit"]:
        return "submit"
    return f"job-{number}"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def tutorial_env(bin_dir: Path, zk_port: int) -> dict[str, str]:
    env = dict(os.environ)
    scripts = "/usr/share/zookeeper/bin"
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{scripts}{os.pathsep}{env.get('PATH', '')}",
            "ZK_PORT": str(zk_port),
            "COLUMNS": "100",
            "PYTHONUNBUFFERED": "1",
            "MW_LOG_LEVEL": "INFO",
            "TERM": "dumb",
        }
    )
    for name in ("MW_ZK", "MW_SESSION_TIMEOUT", "MW_AUTH", "MW_RUN_DIR"):
        env.pop(name, None)
    return env


def run_tutorial(
    path: Path,
    bin_dir: Path,
    zk_port: int,
    on_step: Callable[[Outcome], None] | None = None,
    before_step: Callable[[Step], None] | None = None,
) -> Iterator[Outcome]:
    """Run every step of one tutorial in a fresh directory; yields each outcome (stops at the first failure)."""
    steps = parse(path.read_text())
    with tempfile.TemporaryDirectory(prefix="mw-tutorial-") as workdir:
        shell = Shell(Path(workdir), tutorial_env(bin_dir, zk_port))
        try:
            for step in steps:
                if before_step:
                    before_step(step)
                output = shell.run(step.command)
                outcome = Outcome(step, output, first_missing(step.expected, output))
                if on_step:
                    on_step(outcome)
                yield outcome
                if not outcome.ok:
                    return
        finally:
            shell.close()
