"""What the probe stages (classify, retrieval, geometry, report) share: the metrics and
their intervals, the metric-learning head, and the figures."""
