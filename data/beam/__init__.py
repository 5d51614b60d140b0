"""The data build as an Apache Beam pipeline (extra `beam`), run by any Beam
runner: the DirectRunner here; Flink, Spark or Dataflow at scale. Each builds
exactly the cache entry the local build writes, as shards plus a manifest
(data/sharded.py reads them as one split).

  pipeline.py      what every build shares: stage figures, byte ranges, a
                   shard written, the manifest last, the entry renamed into place whole
  movielens.py     raw MovieLens, sequential protocol: shards by user range
  amazon.py        Amazon in the DIN authors' protocol: shards by user range
  dataset_file.py  CSVs through a dataset file (and the tutorial's split): shards by byte range
"""
