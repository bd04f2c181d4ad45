"""Experiment tracking: experiments, runs, params, tags and metric series, searchable at scale.

* :mod:`shipyard.tracking.entities` — the pydantic objects every face returns (light);
* :mod:`shipyard.tracking.filters` — the search filter language, compiled to SQL;
* :mod:`shipyard.tracking.tensorboard` — runs to TensorBoard event files and back (the
  ``tensorboard`` package, imported lazily);
* :mod:`shipyard.tracking.service` — :class:`~shipyard.tracking.service.TrackingService`.

The fluent API (``sy.start_run()``, ``sy.log_metric()``…) lives in :mod:`shipyard.client.fluent`:
it works over a workspace, embedded or remote.
"""
