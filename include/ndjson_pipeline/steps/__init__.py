"""The orchestration steps as plain functions, one module per step.

``intake`` (notifications into the ledger), ``reconcile`` (the day's listing),
``planning`` (claims into manifests), ``converting`` (whether a manifest needs a
run), ``redoing`` (a cleared conversion's successor), ``finalising`` (outcome
or compensation), ``sweeping`` (expired claims), ``reporting`` (the day
report), and the operator actions ``maintenance`` (requeue, replay) and
``reprocessing`` (rebuild a day and swap it in). Airflow tasks call them with clients from
the hooks; tests call them with clients of the local moto server. Every step is
keyed by content (day, manifest id, file identity) and is safe to repeat.
"""

from __future__ import annotations


class PipelineError(RuntimeError):
    """A step found the pipeline's recorded state inconsistent; the message names the manifest or day."""
