"""The dataset's Glue Data Catalog table through an Airflow AWS connection: Hive partitions or an Iceberg table."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.glue_catalog import GlueCatalogHook

from ndjson_pipeline.catalog import DatasetCatalog, DatasetTable
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline_airflow.hooks import RecordsRequests


class CatalogHook(RecordsRequests, GlueCatalogHook):
    """The provider's ``GlueCatalogHook`` that also hands out the dataset's table, as ``table_format`` says.

    Arguments are those of ``GlueCatalogHook`` (such as ``aws_conn_id``).
    """

    def get_catalog(self, settings: PipelineSettings) -> DatasetTable:
        if settings.table_format == "iceberg":
            # pyiceberg (and its Arrow file IO) loads in tasks of the Iceberg format only.
            from pyiceberg.catalog.glue import GlueCatalog

            from ndjson_pipeline.iceberg_table import IcebergDataset

            catalog = GlueCatalog(settings.names.catalog_database, client=self.conn, **self.file_io_properties())
            return IcebergDataset(catalog, settings.names.catalog_database, settings.layout)
        return DatasetCatalog(self.conn, settings.names.catalog_database, settings.layout)

    def file_io_properties(self) -> dict[str, Any]:
        """pyiceberg's S3 file IO as the connection's identity (and endpoint, on the local stack).

        The table's metadata and the data files' footers are read and written with these credentials: the task's
        own, frozen for the task's duration.
        """
        credentials = self.get_credentials()
        properties = {
            "s3.region": self.conn_region_name,
            "s3.access-key-id": credentials.access_key,
            "s3.secret-access-key": credentials.secret_key,
        }
        if credentials.token:
            properties["s3.session-token"] = credentials.token
        if self.conn_config.endpoint_url:
            properties["s3.endpoint"] = self.conn_config.endpoint_url
        return properties
