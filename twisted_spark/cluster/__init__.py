# -*- test-case-name: tests.test_cluster_e2e -*-
"""Cluster mode (``--redis``): several nodes share Redis and the database.

See ``docs/cluster.rst`` for the design and :mod:`twisted_spark.cluster.node`
for the entry point.
"""
