"""What the pipeline uses of AWS, and what that costs.

- ``record``: ``Usage``, the counts of one task, job run or day (requests by
  service and operation, DynamoDB capacity units, Glue DPU-seconds, bytes), and
  where the records of a day live;
- ``recorder``: ``RequestRecorder``, botocore event hooks that count every
  request a client sends (retries included) and the capacity DynamoDB reports;
- ``capacity``: DynamoDB's capacity rules applied to item sizes, for endpoints
  that report none (emulators);
- ``prices``: the one price table, with its source and date;
- ``costs``: a day's cost from its usage, by component and per file.

Shipped to Glue with the job, so it imports nothing but the standard library
and its own modules (botocore only through the clients it is handed).
"""

from __future__ import annotations

from ndjson_pipeline.usage.record import Usage, read_day_usage, write_usage
from ndjson_pipeline.usage.recorder import RequestRecorder

__all__ = ["RequestRecorder", "Usage", "read_day_usage", "write_usage"]
