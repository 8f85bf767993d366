"""What a conversion leaves in the lake and the quarantine, found by its manifest: read, and removed.

The manifest document and the job's result live under the lake's ``_pipeline/``
(``layout``); a run's output is listed in its publish log before it is
published, so whatever a failed or late run wrote can be removed whole.
"""

from __future__ import annotations

from ndjson_pipeline.layout import LakeLayout, PublishLog
from ndjson_pipeline.manifest import JobResult, Manifest, ManifestRef
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.storage import Storage


def read_result(
    storage: Storage, settings: PipelineSettings, ref: ManifestRef, layout: LakeLayout | None = None
) -> JobResult | None:
    """The manifest's job result in the lake (or in ``layout``, a reprocess's), None while it has none."""
    body = storage.read_bytes_if_exists((layout or settings.layout).result_uri(ref.day, ref.manifest_id))
    return None if body is None else JobResult.from_json(body)


def read_manifest(storage: Storage, settings: PipelineSettings, ref: ManifestRef) -> Manifest:
    return Manifest.from_json(storage.read_bytes(settings.layout.manifest_uri(ref.day, ref.manifest_id)))


def discard_output(storage: Storage, settings: PipelineSettings, ref: ManifestRef) -> int:
    """Delete whatever runs of this manifest wrote, so its files can be converted again; the objects deleted.

    The result goes first (nobody may trust output being removed), then every
    object the publish log lists (the job lists what it is about to publish
    before it publishes any, so partial output is found under any partition),
    then the staging prefix, then the log. A delete that fails for any object
    raises ``StorageError`` (or the service's error) and the caller releases nothing.
    """
    layout = settings.layout
    log_uri = layout.publish_log_uri(ref.day, ref.manifest_id)
    published = PublishLog.read(storage, log_uri)
    staged = sorted(storage.list(layout.staging_uri(ref.manifest_id) + "/"))
    storage.delete([layout.result_uri(ref.day, ref.manifest_id)])
    uris = sorted(published.uris) if published else []
    storage.delete([*uris, *staged])
    storage.delete([log_uri])
    return len(uris) + len(staged)
