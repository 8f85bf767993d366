"""Output groups: how files are grouped, and that Spark tasks import the job the way Glue's executors do."""

from __future__ import annotations

import pytest

from ndjson_job.groups import files_for_size, plan_groups
from ndjson_pipeline.files import FileVersion

MiB = 1024 * 1024


def _make_file(n: int, size: int, **overrides) -> FileVersion:
    return FileVersion(**{"bucket": "landing", "key": f"in/{n:03d}.ndjson", "etag": f"e{n}", "size": size, **overrides})


def test_file_count_follows_input_size():
    assert files_for_size(10 * 1024 * 1024, 128) == 1
    assert files_for_size(99 * int(3.5 * 1024 * 1024), 128) == 3


def test_groups_are_near_equal_and_do_not_depend_on_manifest_order():
    files = [_make_file(n, (n % 7 + 1) * MiB) for n in range(40)]
    groups = plan_groups(files, target_file_mb=40)
    assert plan_groups(reversed(files), target_file_mb=40) == groups
    assert sorted(f.uri for group in groups for f in group) == sorted(f.uri for f in files)
    loads = [sum(f.size for f in group) for group in groups]
    assert len(groups) == files_for_size(sum(f.size for f in files), 40)
    assert max(loads) - min(loads) <= 7 * MiB
    assert all(list(group) == sorted(group, key=lambda f: f.uri) for group in groups)


def test_there_are_never_more_groups_than_files():
    assert len(plan_groups([_make_file(0, 900 * MiB), _make_file(1, 800 * MiB)], target_file_mb=1)) == 2
    assert plan_groups([], target_file_mb=1) == []


@pytest.mark.spark
def test_tasks_import_the_job_from_its_zip_not_from_the_source_tree(spark):
    def where(_):
        import ndjson_job.groups
        import ndjson_pipeline.manifest

        return ndjson_job.groups.__file__, ndjson_pipeline.manifest.__file__

    [(job, contract)] = spark.sparkContext.parallelize([0], 1).map(where).collect()
    assert job.endswith("ndjson_job.zip/ndjson_job/groups.py")
    assert contract.endswith("ndjson_pipeline.zip/ndjson_pipeline/manifest.py")
