"""The book's system (chapters 3 to 8): the znode protocol, the three masters, the worker, the
client, the admin view, security, and the ZooKeeper idioms they share.

Start reading at ``protocol.py`` (the znodes and their data), then ``master.py`` (chapter 3-5's
master: election, assignment, recovery), ``worker.py`` and ``client.py``. Nothing here imports
from the lab next door (``masterworker.lab``: demo, tutorials, live view, chaos, bench).
"""
