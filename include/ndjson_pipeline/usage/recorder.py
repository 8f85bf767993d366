"""Counting what clients send, through botocore's event hooks: nothing at the call sites changes.

``attach(client)`` registers three handlers on a (sync or aiobotocore) client:

- ``before-send``: one count per HTTP request, by ``<service>.<Operation>``;
  botocore's retries pass here each time, and each is billed;
- for DynamoDB, ``before-parameter-build`` asks for ``ReturnConsumedCapacity:
  TOTAL`` (free; it changes nothing else), and ``after-call`` adds the units
  DynamoDB reports. DynamoDB reports none for a refused conditional write or a
  cancelled transaction, which it bills all the same; ``computed`` capacity
  (``capacity.py``) counts those too, from item sizes, on sync clients.

A recorder is picklable (the Glue job hands one to each Spark task's storage).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

from ndjson_pipeline.usage import capacity
from ndjson_pipeline.usage.record import Usage

_UNIQUE = "ndjson-pipeline-usage"


class RequestRecorder:
    """Counts the requests, and DynamoDB capacity, of every client attached to it.

    :param computed_capacity: compute DynamoDB units from item sizes instead of
        trusting the endpoint's report (for emulators, which report constants).
    """

    def __init__(self, *, computed_capacity: bool = False) -> None:
        self.usage = Usage()
        self.computed_capacity = computed_capacity
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {"usage": self.usage, "computed_capacity": self.computed_capacity}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.usage = state["usage"]
        self.computed_capacity = state["computed_capacity"]
        self._local = threading.local()

    def take(self) -> Usage:
        """What was recorded so far; the recorder starts again from zero."""
        taken, self.usage = self.usage, Usage()
        return taken

    def attach(self, client: Any) -> Any:
        """Count ``client``'s requests from now on (attaching twice counts once); returns the client."""
        events = client.meta.events
        events.register("before-send", self._count, unique_id=f"{_UNIQUE}-{id(self)}-send")
        if client.meta.service_model.service_name == "dynamodb":
            meter = capacity.ItemMeter(client, self._quietly, synchronous=_is_sync(client))
            events.register("before-parameter-build.dynamodb", _ask_for_capacity, unique_id=f"{_UNIQUE}-capacity")
            events.register(
                "before-parameter-build.dynamodb", self._before_call(meter), unique_id=f"{_UNIQUE}-{id(self)}-before"
            )
            events.register("after-call.dynamodb", self._after_call(meter), unique_id=f"{_UNIQUE}-{id(self)}-after")
        return client

    # ------------------------------------------------------------------ handlers

    @property
    def _quiet(self) -> bool:
        return getattr(self._local, "quiet", False)

    def _quietly(self, call: Any, **kwargs: Any) -> Any:
        """A request the meter makes to size items: neither counted nor metered."""
        self._local.quiet = True
        try:
            return call(**kwargs)
        finally:
            self._local.quiet = False

    def _count(self, event_name: str, **_kwargs: Any) -> None:
        if not self._quiet:
            _, service, operation = event_name.split(".", 2)
            self.usage.requests[f"{service}.{operation}"] += 1

    def _before_call(self, meter: capacity.ItemMeter) -> Callable[..., None]:
        def handler(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            if self.computed_capacity and not self._quiet and meter.synchronous:
                context[_UNIQUE] = meter.before(model.name, params)

        return handler

    def _after_call(self, meter: capacity.ItemMeter) -> Callable[..., None]:
        def handler(model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            if self._quiet:
                return
            if self.computed_capacity and meter.synchronous:
                units = meter.after(model.name, context.pop(_UNIQUE, None), parsed)
            else:
                units = capacity.reported_units(parsed)
            if model.name in capacity.WRITES:
                self.usage.write_units += units
            else:
                self.usage.read_units += units

        return handler


def _ask_for_capacity(params: dict[str, Any], model: Any, **_: Any) -> None:
    if "ReturnConsumedCapacity" in model.input_shape.members:
        params.setdefault("ReturnConsumedCapacity", "TOTAL")


def _is_sync(client: Any) -> bool:
    return not inspect.iscoroutinefunction(client._make_api_call)
