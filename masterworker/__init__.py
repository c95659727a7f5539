"""masterworker: the master-worker example of *ZooKeeper: Distributed Process Coordination*.

Masters, backup masters, workers and clients coordinate only through ZooKeeper znodes
(``/master``, ``/workers``, ``/tasks``, ``/assign``, ``/status``), as the book's running
example does from chapter 3 on. ``protocol.py`` is the place to start reading.
"""

__version__ = "0.1.0"
