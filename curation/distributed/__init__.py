"""Larger-than-memory pairwise subset selection (Böther et al., MLSys 2025) and sharded scoring on Dask
(docs/distributed.md).

    run.select_distributed     a catalog version -> registered, tracked plan (`curation select --engine dask`)
    scoring.scores_on_dask     a train split scored by parts (whole row groups) (`curation score --engine dask`)
    selection.select           any partitioned Parquet on any Dask client -> plan parts + Selection
    selection.Params           the method's parameters
    cluster.open_client        a LocalCluster, or an existing scheduler by address
    source.Source              a column of partitioned Parquet

Stages: graph.py (k-NN graph by partitions, on disk), blocks.py (a partition's rows in memory and the
exchange with its neighbours), bounding.py, partition_greedy.py, plan.py; order.py (exact order
statistics that never gather), cells.py (two-level k-means), files.py (atomic writes).
This package needs the ``dask`` extra (dask[distributed], prefect-dask); nothing else imports it.
"""
