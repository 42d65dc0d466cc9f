"""marketsync: one place to run a multi-marketplace FBS seller's business.

This package holds only the command line (cli.py), the demo orchestrator (demo.py) and the fault soak
that runs the demo under faults and judges it from outside (soak.py, soak_link.py, soak_judge.py).
Each part of the system is imported lazily, so an edge box needs none of the cloud's dependencies.
"""

__version__ = "0.1.0"
