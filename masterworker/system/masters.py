"""The three masters, by the name ``mw master --impl`` uses: one protocol, three ways to write it.

- ``default`` (``master.py``, chapters 3-5): its own thread, blocking calls, one-time watches.
- ``async`` (``master_async.py``, chapter 7): completion callbacks only, like the book's master.c.
- ``recipes`` (``master_recipes.py``, chapter 8): kazoo's Election and ChildrenWatch recipes.
"""

import enum

from masterworker.system.master import Master
from masterworker.system.master_async import AsyncMaster
from masterworker.system.master_recipes import RecipesMaster

IMPLEMENTATIONS = {"default": Master, "async": AsyncMaster, "recipes": RecipesMaster}

# The same names as a type, for the command line (typer lists and checks the choices).
Impl = enum.StrEnum("Impl", {name: name for name in IMPLEMENTATIONS})
