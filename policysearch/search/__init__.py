"""The search: trials scored by the proxy, decided by a race, proven by an experiment.

Modules, one job each: ``worker`` (the claim loop, heartbeat, signals, worker processes),
``race`` (candidates, the race on the selection split, the export rule), ``provenance`` (the
exported policy and its evidence), ``orchestrate`` (the whole run) and ``proof`` (``make
experiment``: fidelity, the search, then ``validate``, and the results files).
"""
