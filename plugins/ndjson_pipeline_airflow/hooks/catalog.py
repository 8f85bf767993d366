"""The dataset's Glue Data Catalog table through an Airflow AWS connection."""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.glue_catalog import GlueCatalogHook

from ndjson_pipeline.catalog import DatasetCatalog
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline_airflow.hooks import RecordsRequests


class CatalogHook(RecordsRequests, GlueCatalogHook):
    """The provider's ``GlueCatalogHook`` that also hands out the pipeline's ``DatasetCatalog``.

    Arguments are those of ``GlueCatalogHook`` (such as ``aws_conn_id``).
    """

    def get_catalog(self, settings: PipelineSettings) -> DatasetCatalog:
        return DatasetCatalog(self.conn, settings.names.catalog_database, settings.layout)
