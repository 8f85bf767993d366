"""The orchestration steps as plain functions, one module per step.

``intake`` (notifications into the ledger), ``reconcile`` (the day's listing),
``planning`` (claims into manifests), ``converting`` (whether a manifest needs a
run), ``finalising`` (outcome or compensation), ``sweeping`` (expired claims)
and ``reporting`` (the day report). Airflow tasks call them with clients from
the hooks; tests call them with clients of the local moto server. Every step is
keyed by content (day, manifest id, file identity) and is safe to repeat.
"""

from __future__ import annotations


class PipelineError(RuntimeError):
    """A step found the pipeline's recorded state inconsistent; the message names the manifest or day."""
