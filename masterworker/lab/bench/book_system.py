"""The book's own Java system under the bench, so that both systems are measured with one driver (ch. 3-4).

The authors' companion code (github.com/fpj/zookeeper-book-example: ``Master``, ``Worker``,
``RecoveredAssignments``), compiled by ``tools/book-example.sh``, runs as real JVMs on the bench's
embedded ZooKeeper: 3 workers, then 1 master and 1 backup, each ``main(connect string)``. Its
classes use absolute paths (``/master``, ``/tasks``...), so it runs on a server of its own, never
under the chroot the bench takes on a shared ``--zk``. Its JVMs are stopped by PID with the rest
of the system, and ``BenchSystem.cpu`` counts them like every other process.

They log at WARN (the bench's mw processes run at WARNING): the book's INFO lines, several per
task on a console, would measure log4j rather than the system.
"""

from __future__ import annotations

import shutil
import subprocess
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


def book_java(classpath: str | None) -> str:
    """The java binary to run the book's classes, or BadInput saying in one line what is missing."""
    if not classpath:
        raise BadInput("the book's system needs --book-classpath (or MW_BOOK_CLASSPATH): see tools/book-example.sh")
    first = Path(classpath.split(":", 1)[0])
    if not (first / PACKAGE.replace(".", "/") / "Master.class").is_file() and not first.suffix == ".jar":
        raise BadInput(f"no compiled {PACKAGE}.Master under {first}: build it with tools/book-example.sh")
    java = shutil.which("java")
    if java is None:
        raise BadInput("the book's system needs java on PATH (apt-get install -y default-jre-headless)")
    return java


class JavaProcess(MwProcess):
    """One JVM of the book's system, its output in a log file; stopped by PID like an mw process."""

    def __init__(self, command: list[str], log: Path) -> None:  # noqa: D107 - MwProcess runs `mw`; this runs java
        self.args = command
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - as the ZooKeeper JVMs: none outlives the bench
        )


def start_book_system(system: BenchSystem, classpath: str, workers: int = 3) -> None:
    """Workers first (the book's master draws among the workers it knows, and knows none until it lists them),
    then the master, then the backup once the master holds ``/master``."""
    if system.embedded is None:
        raise BadInput("--system book runs on the bench's own ZooKeeper (its classes use absolute paths): drop --zk")
    java = book_java(classpath)
    config = system.log_dir / "book-log4j.properties"
    config.write_text(LOG4J)

    def start(name: str, role: str) -> None:
        command = [java, *JVM_OPTIONS, f"-Dlog4j.configuration=file:{config}", "-cp", classpath]
        system.processes[name] = JavaProcess([*command, f"{PACKAGE}.{role}", system.hosts], system.log_dir / name)

    for n in range(1, workers + 1):
        start(f"book-worker-{n}", "Worker")
    system.wait(lambda: len(system.client.get_children(WORKERS)) >= workers, 60, "the book's workers")
    start("book-master-1", "Master")
    system.wait(lambda: system.client.exists(MASTER), 60, "the book's master")
    start("book-master-2", "Master")
