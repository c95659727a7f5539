"""The book's own Java system under the bench, so that both systems are measured with one driver (ch. 3-4).

The authors' companion code (github.com/fpj/zookeeper-book-example: ``Master``, ``Worker``,
``RecoveredAssignments``), compiled by ``tools/book-example.sh``, runs as real JVMs on the bench's
embedded ZooKeeper: 3 workers, then 1 master and 1 backup, each ``main(connect string)``. Its
classes use absolute paths (``/master``, ``/tasks``...), so it runs on a server of its own, never
under the chroot the bench takes on a shared ``--zk``. Its JVMs are stopped by PID with the rest
of the system, and ``BenchSystem.cpu`` counts them like every other process.

They log at WARN (the bench's mw processes run at WARNING): the book's INFO lines, several per
task on a console, would measure log4j rather than the system.

``--client book-java`` drives either system with the book's own ``Client`` class, in one JVM
(``tools/BookDriver.java``, built with the rest): started once per system, it runs a round per
line it reads and answers each with one JSON line; it is one of the system's processes, so its
CPU is counted over each round like every other, and the warm-up round warms its JIT too.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path

from masterworker.lab.bench.system import BenchSystem
from masterworker.lab.processes import MwProcess
from masterworker.system.errors import BadInput
from masterworker.system.protocol import MASTER, WORKERS
from masterworker.zk.server import _die_with_parent

PACKAGE = "org.apache.zookeeper.book"
LOG4J = "log4j.rootLogger=WARN, FILE\nlog4j.appender.FILE=org.apache.log4j.ConsoleAppender\n" + (
    "log4j.appender.FILE.layout=org.apache.log4j.PatternLayout\n"
    "log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1} - %m%n\n"
)
# Small heaps and the serial collector: five JVMs share 2 cores with ZooKeeper and the client.
JVM_OPTIONS = ("-Xmx128m", "-XX:+UseSerialGC")


def book_java(classpath: str | None, main: str = "Master", what: str = "the book's system") -> str:
    """The java binary to run the book's classes, or BadInput saying in one line what is missing."""
    if not classpath:
        raise BadInput(f"{what} needs --book-classpath (or MW_BOOK_CLASSPATH): see tools/book-example.sh")
    first = Path(classpath.split(":", 1)[0])
    if not (first / PACKAGE.replace(".", "/") / f"{main}.class").is_file() and not first.suffix == ".jar":
        raise BadInput(f"no compiled {PACKAGE}.{main} under {first}: build it with tools/book-example.sh")
    java = shutil.which("java")
    if java is None:
        raise BadInput(f"{what} needs java on PATH (apt-get install -y default-jre-headless)")
    return java


class JavaProcess(MwProcess):
    """One JVM of the book's system, its output in a log file; stopped by PID like an mw process.
    ``piped``: its standard input and output are pipes to us, and only its standard error is logged."""

    def __init__(self, command: list[str], log: Path, piped: bool = False) -> None:  # noqa: D107 - runs java
        self.args = command
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        if piped:
            streams = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": self._log}
        else:
            streams = {"stdin": subprocess.DEVNULL, "stdout": self._log, "stderr": subprocess.STDOUT}
        self.proc = subprocess.Popen(
            command,
            **streams,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - as the ZooKeeper JVMs: none outlives the bench
        )


class BookDriverProcess(JavaProcess):
    """The book's client in one JVM (``tools/BookDriver.java``): a round per request, its JSON line back."""

    def __init__(self, command: list[str], log: Path) -> None:  # noqa: D107 - pipes, not a log, on stdout
        super().__init__(command, log, piped=True)
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, name="book-client-stdout", daemon=True).start()

    def answer(self, timeout: float) -> dict:
        """The driver's next JSON line (its client's own lines, session events, are skipped)."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"the book's client (Java) said nothing for {timeout:g} s") from None
        if line is None:
            raise RuntimeError(f"the book's client (Java) exited: see {self.log_path}")
        return json.loads(line)

    def _read(self) -> None:
        """A thread reads the driver's stdout to its end, so that a line already read is never waited for."""
        for line in self.proc.stdout:
            if line.startswith(b"{"):
                self._lines.put(line)
        self._lines.put(None)

    def round(self, n: int, timeout: float) -> list[float]:
        """Submit n tasks, wait for all n results collected; seconds from the round's start to each."""
        self.proc.stdin.write(f"{n} {timeout}\n".encode())
        self.proc.stdin.flush()
        result = self.answer(timeout + 30)
        if "error" in result:
            raise TimeoutError(f"{result['left']} of {n} tasks were not collected within {timeout:g} s")
        return [ms / 1000 for ms in result["done_ms"]]


def _java_command(system: BenchSystem, java: str, classpath: str) -> list[str]:
    """java with the book's JVM options, logging at WARN to its standard output, and the classpath."""
    config = system.log_dir / "book-log4j.properties"
    config.write_text(LOG4J)
    return [java, *JVM_OPTIONS, f"-Dlog4j.configuration=file:{config}", "-cp", classpath]


def start_book_driver(system: BenchSystem, classpath: str | None) -> BookDriverProcess:
    """The book's client in one JVM, connected to the system's server (its chroot too, in the connect string)."""
    command = _java_command(system, book_java(classpath, "BookDriver", "--client book-java"), classpath)
    driver = BookDriverProcess([*command, f"{PACKAGE}.BookDriver", system.hosts], system.log_dir / "book-client")
    system.processes["book-client"] = driver
    driver.answer(60)  # connected
    return driver


def start_book_system(system: BenchSystem, classpath: str, workers: int = 3) -> None:
    """Workers first (the book's master draws among the workers it knows, and knows none until it lists them),
    then the master, then the backup once the master holds ``/master``."""
    if system.embedded is None:
        raise BadInput("--system book runs on the bench's own ZooKeeper (its classes use absolute paths): drop --zk")
    command = _java_command(system, book_java(classpath), classpath)

    def start(name: str, role: str) -> None:
        system.processes[name] = JavaProcess([*command, f"{PACKAGE}.{role}", system.hosts], system.log_dir / name)

    for n in range(1, workers + 1):
        start(f"book-worker-{n}", "Worker")
    system.wait(lambda: len(system.client.get_children(WORKERS)) >= workers, 60, "the book's workers")
    start("book-master-1", "Master")
    system.wait(lambda: system.client.exists(MASTER), 60, "the book's master")
    start("book-master-2", "Master")
