"""Many models: one model per data partition, trained, gated, registered and scored as a set.

A spec with ``partition_keys`` trains one model per partition with the same
steps as a single model (validate, split, train, evaluate, gate). Work is
chunked over the partitioned Parquet dataset's shards and run by an engine
(:mod:`ml_service.many.engines`: joblib on this machine, Ray on a cluster);
each worker reads its own shards. One registered version holds the whole set
(:mod:`ml_service.sets`).
"""
