"""The NDJSON -> Parquet conversion job: converts the files of one batch manifest into date-partitioned Parquet.

Glue runs the entry script ``ndjson_to_parquet.py``; this package ships beside
``ndjson_pipeline`` as ``--extra-py-files`` (its own zip), so the driver and
every executor import the same code. Flow (``job.convert_manifest``):

1. load the manifest and the declared schema (``schema``); split the files into
   output groups of about ``--target_file_mb`` of Parquet each (``groups``);
2. one Spark task per group (``groups.convert_group``) streams each file, only
   the manifest's version of it (``reading``: S3 If-Match; otherwise the file
   is QUARANTINED as "superseded"), gunzipping ``.gz`` files as it goes: a file
   that cannot be read or decoded as a whole is quarantined as a file with its
   reason, the others still convert;
3. every line is parsed once against the declared schema (never inferred) by
   Arrow's JSON reader, in chunks of whole lines with no Python loop over them
   (``bulk``); the few lines it must not see or refuses are looked at one by
   one (``lines.classify_line``) and loaded, rescued (unknown fields or type
   mismatches kept in ``_rescued_data``; ``--read_mode rescue``) or quarantined
   with their line number and a reason;
4. the task writes its group's rows, one Parquet file per dt sorted by
   ``--sort_by`` in row groups of ``--row_group_mb`` (``output``, ``sorting``),
   and its quarantined lines, on local disk, then stages them under a
   per-attempt prefix;
5. the driver publishes staged files under names derived from the manifest id,
   deletes this manifest's stale files and the staging prefix, and writes the
   job result last (``publication``). **The result object's presence is the
   completion marker**: the job deletes an earlier result before it touches
   published files, so a reader that sees a result sees the complete output it
   lists.

Every object name comes from ``ndjson_pipeline.layout.LakeLayout``. Groups
depend only on the manifest and ``--target_file_mb``, so every attempt writes
each row into the file of the same name: a rerun that dies half way through
publishing leaves old and new files holding the same rows, never duplicates.

The package imports the contract modules of ``ndjson_pipeline`` (conversion,
files, layout, logs, manifest, storage), pyarrow and pyspark; never
Airflow, and ``awsglue`` only in the entry script. The driver and every task log
as ``--log_format`` and ``--log_level`` say (``logs``).
"""
