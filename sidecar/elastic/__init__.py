"""Talking to the Elasticsearch cluster a node sits next to: inference endpoints for the ingest callback,
ingest pipeline references, and the cluster's verdict on each caller's credentials."""

from sidecar.elastic.client import call, connect

__all__ = ["call", "connect"]
