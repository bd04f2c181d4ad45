"""Serving: endpoints with traffic split, shadow and sticky routing; online and batch prediction;
request logs and A/B comparisons."""
