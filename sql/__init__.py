"""SQL files of warehouse_batch, shipped inside the package as `warehouse_batch.sql` (see sqlfiles.py)."""
