"""edgefleet's models: pure data, no I/O.

``records`` and ``telemetry`` (SQLModel tables), ``inputs`` (validated requests),
``states`` (deployment states and transitions, edge availability), ``groups`` (deployment
group states and moves, rollout options), ``policies`` (update policies), ``connections``
(how to reach an engine), ``plans`` and ``readings`` (what flows and tasks pass each
other). Import the module you need: this package imports none of them, so the pure ones
stay free of SQLModel.
"""
