"""Metadata and lineage: an ML-Metadata-style graph of artifacts, executions and events.

* :mod:`shipyard.metadata.entities` — the pydantic objects every face returns (light);
* :mod:`shipyard.metadata.service` — :class:`~shipyard.metadata.service.MetadataService`:
  record an execution with its inputs and outputs, walk the graph upstream or downstream.

Capabilities record their edges through the service (``CREATE MODEL``, SQL table writes, table
loads); it imports only the store and the warehouse's naming, so every capability may use it.
"""
