"""Ids in the shape Elasticsearch uses for clusters and nodes."""

import base64
import uuid


def new_id() -> str:
    """A random 22-character URL-safe id."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
