"""The warehouse_batch dbt package (macros only), shipped inside the Python package as
`warehouse_batch.dbt_package`: `warehouse-batch dbt package-path` prints where it is installed."""
