"""Metadata and lineage: an ML-Metadata-style graph of artifacts, executions, events and
contexts (experiments, pipelines).

* :mod:`shipyard.metadata.entities` — the pydantic objects every face returns (light);
* :mod:`shipyard.metadata.service` — :class:`~shipyard.metadata.service.MetadataService`:
  record an execution with its inputs and outputs, walk the graph upstream or downstream
  (narrowed to a context when asked), group nodes in contexts.

Capabilities record their edges through the service (``CREATE MODEL``, SQL table writes, table
loads, runs and their inputs); it imports only the store and the warehouse's naming, so every
capability may use it.
"""
