"""The dbt-duckdb plugin: how the `llm_batch` materialization reaches the library.

Declare it in profiles.yml (values may use env_var; they arrive as strings and are coerced):

    plugins:
      - module: warehouse_batch.dbt.plugin
        alias: warehouse_batch
        config:
          submit: "{{ env_var('WAREHOUSE_BATCH_SUBMIT', 'true') }}"   # false: collect only
          poll_interval: 5

When dbt opens the database, the plugin registers one side-effecting scalar function,
`warehouse_batch_sync(request_json) -> report_json`. The materialization calls it once per model
(`select warehouse_batch_sync('...')`); it runs `sync.sync_model` on a cursor of the database's
own connection, so spend records commit independently of dbt's transaction. The API key comes
from OPENAI_API_KEY only and is never part of the config.
"""

from __future__ import annotations

import json
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.events.logging import AdapterLogger
from dbt_common.exceptions import DbtRuntimeError
from duckdb import DuckDBPyConnection

try:
    from duckdb.sqltypes import VARCHAR
except ImportError:  # duckdb < 1.4
    from duckdb.typing import VARCHAR

from warehouse_batch.dbt.busy import wait_until_free
from warehouse_batch.dbt.config_keys import dbt_config_keys as config_keys
from warehouse_batch.dbt.messages import for_dbt
from warehouse_batch.dbt.operations import run_operation
from warehouse_batch.dbt.sync import Settings, sync_model
from warehouse_batch.errors import WarehouseBusyError

UDF_NAME = "warehouse_batch_sync"
OPERATION_UDF = "warehouse_batch_operation"
#: Progress while a model waits (wait_timeout) goes to dbt's own log, as the adapter's messages do.
LOGGER = AdapterLogger("warehouse_batch")


def dbt_config_keys() -> frozenset[str]:
    """The model config keys the installed dbt-core and dbt-duckdb define."""
    from dbt.adapters.duckdb.impl import DuckDBConfig

    return config_keys(DuckDBConfig)


class Plugin(BasePlugin):
    """dbt-duckdb plugin: registers `warehouse_batch_sync` on every database dbt opens."""

    settings: Settings

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        # Without a `config:` entry dbt-duckdb passes the profile's DuckDB `settings` instead: not ours.
        if self.creds is not None and plugin_config is getattr(self.creds, "settings", None):
            plugin_config = {}
        self.settings = Settings.from_config(plugin_config)

    def update_connection_config(self, creds: Any, config: dict[str, Any]) -> None:
        # Runs just before dbt-duckdb opens the file: wait here while another process holds it, and
        # refuse in one line when it stays busy (dbt's own failure is a long traceback).
        path = str(getattr(creds, "path", "") or "")
        if path and path != ":memory:" and not path.startswith(("md:", "motherduck:")):
            try:
                wait_until_free(path, self.settings.busy_timeout, config)
            except WarehouseBusyError as exc:  # a dbt error: dbt prints its message, not a traceback
                raise DbtRuntimeError(str(exc)) from None

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        settings = self.settings
        dbt_keys = dbt_config_keys()

        def warehouse_batch_sync(request: str) -> str:
            # Runs on a DuckDB worker thread while dbt's cursor waits on this query; `conn` is the
            # database's parent connection, of which sync_model takes a cursor of its own.
            try:
                return json.dumps(sync_model(conn, request, settings, dbt_keys=dbt_keys, progress=LOGGER.info),
                                  default=str)
            except Exception as exc:  # noqa: BLE001 - raised by the materialization as a dbt error
                return json.dumps(for_dbt(exc, settings.base_url))

        def warehouse_batch_operation(request: str) -> str:
            try:
                return json.dumps(run_operation(conn, request, settings), default=str)
            except Exception as exc:  # noqa: BLE001 - raised by the run-operation macro as a dbt error
                return json.dumps(for_dbt(exc, settings.base_url))

        conn.create_function(UDF_NAME, warehouse_batch_sync, [VARCHAR], VARCHAR, side_effects=True)
        conn.create_function(OPERATION_UDF, warehouse_batch_operation, [VARCHAR], VARCHAR, side_effects=True)
