"""Finding an installed Apache ZooKeeper and a Java to run it (book chapter 10, "Running ZooKeeper").

The project never ships or downloads ZooKeeper: it runs the one the machine has, so that what
a reader sees is the real server. Three layouts are known:

- an unpacked Apache release pointed to by ``$ZOOKEEPER_HOME`` (jars in ``lib/``),
- Debian/Ubuntu's ``zookeeper`` package (jars in ``/usr/share/java``, scripts in
  ``/usr/share/zookeeper/bin``),
- Homebrew's formula (``libexec/`` under its prefix).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEBIAN_JARS = Path("/usr/share/java")
DEBIAN_SCRIPTS = Path("/usr/share/zookeeper/bin")
HOMEBREW_PREFIXES = (Path("/opt/homebrew/opt/zookeeper/libexec"), Path("/usr/local/opt/zookeeper/libexec"))

INSTALL_HINT = (
    "install it with 'apt-get install -y zookeeper' (Debian/Ubuntu), 'brew install zookeeper', "
    "or unpack an Apache ZooKeeper release and set ZOOKEEPER_HOME"
)


class ZooKeeperNotInstalled(RuntimeError):
    """No usable ZooKeeper or Java: the message says what to install."""


@dataclass(frozen=True)
class ZooKeeperInstall:
    """What it takes to start a server: a java binary and a classpath."""

    java: str
    classpath: tuple[str, ...]
    layout: str  # "apache", "debian" or "homebrew"
    scripts_dir: Path | None  # where zkCli.sh lives, for the tutorials

    @property
    def cli_script(self) -> Path | None:
        if self.scripts_dir is None:
            return None
        script = self.scripts_dir / "zkCli.sh"
        return script if script.exists() else None


def find_java(env: Mapping[str, str] = os.environ) -> str:
    java_home = env.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java", path=env.get("PATH"))
    if not found:
        raise ZooKeeperNotInstalled(
            "java was not found: install a Java runtime (Debian/Ubuntu: 'apt-get install -y "
            "default-jre-headless') or set JAVA_HOME"
        )
    return found


def _apache_release(home: Path) -> tuple[str, ...]:
    """Jars of an unpacked Apache release, plus its conf/ so its logging config is found."""
    jars = sorted(str(p) for p in (home / "lib").glob("*.jar"))
    jars += sorted(str(p) for p in home.glob("zookeeper-*.jar"))  # releases before 3.5
    if not any("zookeeper" in Path(j).name for j in jars):
        return ()
    return tuple(jars)


def _debian(jars_dir: Path) -> tuple[str, ...]:
    """Debian's zookeeper.jar names its dependencies in its manifest; add a logging binding."""
    main_jar = jars_dir / "zookeeper.jar"
    if not main_jar.is_file():
        return ()
    classpath = [str(main_jar)]
    # slf4j needs a binding, or the server logs nothing at all; log4j 1.2 writes to our file.
    for binding in (("slf4j-log4j12.jar", "log4j-1.2.jar"), ("slf4j-simple.jar",)):
        if all((jars_dir / name).is_file() for name in binding):
            classpath += [str(jars_dir / name) for name in binding]
            break
    return tuple(classpath)


def find_install(env: Mapping[str, str] = os.environ, debian_jars: Path = DEBIAN_JARS) -> ZooKeeperInstall:
    """Find ZooKeeper and Java, or raise ZooKeeperNotInstalled with what to install."""
    java = find_java(env)
    home = env.get("ZOOKEEPER_HOME")
    if home:
        classpath = _apache_release(Path(home))
        if not classpath:
            raise ZooKeeperNotInstalled(f"ZOOKEEPER_HOME={home} holds no ZooKeeper jars in lib/: {INSTALL_HINT}")
        return ZooKeeperInstall(java, classpath, "apache", Path(home) / "bin")
    classpath = _debian(debian_jars)
    if classpath:
        return ZooKeeperInstall(java, classpath, "debian", DEBIAN_SCRIPTS)
    for prefix in HOMEBREW_PREFIXES:
        classpath = _apache_release(prefix)
        if classpath:
            return ZooKeeperInstall(java, classpath, "homebrew", prefix / "bin")
    raise ZooKeeperNotInstalled(f"no ZooKeeper installation was found: {INSTALL_HINT}")
