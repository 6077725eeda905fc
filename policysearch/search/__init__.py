"""The search: an Optuna study of policies, scored by the proxy, decided by a race.

Modules, one job each: ``record`` (the typed study and trial records in Optuna storage),
``store`` (create, join and check a study; samplers and pruners), ``worker`` (the claim loop,
heartbeat, signals, worker processes), ``race`` (candidates, the race on the selection split,
the export rule), ``provenance`` (the exported policy and its evidence) and ``orchestrate``
(the whole run).
"""
