"""The lab around the book's system: the demo, the tutorial runner, the live view, processes for
real failures, the chaos nemesis and checker, and the benchmarks. It drives
``masterworker.system``; the system never imports from here.
"""
